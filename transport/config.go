package transport

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/otactl/otactl/ota"
)

// Config says how to reach the broker. Secrets (Password, the key file)
// come from the environment or the config file, never from flags.
type Config struct {
	URL      string // tcp://, ssl://, ws:// or wss://; tcp and ssl default to ports 1883 and 8883
	ClientID string // the persistent session's id: see ClientIDFor
	Username string
	Password string

	CAFile             string // PEM certificates to trust instead of the system's
	CertFile           string // PEM client certificate, with KeyFile
	KeyFile            string
	InsecureSkipVerify bool // accept any server certificate; for tests only

	ConnectTimeout time.Duration // first connection; DefaultConnectTimeout when zero
	Logger         *slog.Logger  // connection events; discarded when nil
}

// ClientIDFor derives the session's client id from the state file: the same
// state file on the same host always gets the same persistent session, and
// two state files never share one. It is "otactl-" and 16 hex digits, 23
// bytes, the longest id MQTT 3.1.1 obliges every broker to accept.
func ClientIDFor(statePath string) string {
	if abs, err := filepath.Abs(statePath); err == nil {
		statePath = abs
	}
	host, _ := os.Hostname()
	// The NUL keeps "/a"+"bhost" and "/ab"+"host" apart.
	sum := sha256.Sum256([]byte(statePath + "\x00" + host))
	return "otactl-" + hex.EncodeToString(sum[:8])
}

// brokerURL parses and checks --broker. Ports are added where MQTT has a
// well-known one, because paho dials the host as given.
func brokerURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, ota.Invalid("broker URL %q is not a URL: %v", redactRaw(raw), err)
	}
	switch u.Scheme {
	case "tcp", "ssl", "ws", "wss":
	default:
		return nil, ota.Invalid("broker URL %s has scheme %q; use tcp://, ssl://, ws:// or wss://",
			u.Redacted(), u.Scheme).WithHint("--broker tcp://localhost:1883")
	}
	if u.Hostname() == "" {
		return nil, ota.Invalid("broker URL %s has no host", u.Redacted())
	}
	if u.Port() == "" {
		switch u.Scheme {
		case "tcp":
			u.Host = net.JoinHostPort(u.Hostname(), "1883")
		case "ssl":
			u.Host = net.JoinHostPort(u.Hostname(), "8883")
		}
	}
	return u, nil
}

// redactRaw hides a password in a URL that did not parse, since the error
// may end up in a CI log.
func redactRaw(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	at := strings.LastIndex(rest, "@")
	if !ok || at < 0 {
		return raw
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// tlsConfig builds the TLS settings for ssl:// and wss://. TLS files given
// for a plain URL are an error rather than ignored: the user asked for an
// encrypted connection and would not get one.
func (cfg Config) tlsConfig(u *url.URL) (*tls.Config, error) {
	files := cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	if u.Scheme != "ssl" && u.Scheme != "wss" {
		if files {
			return nil, ota.Invalid("TLS files are set but broker URL %s is not ssl:// or wss://",
				u.Redacted()).WithHint("--broker ssl://%s", u.Hostname())
		}
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, ota.Invalid("read CA file %s: %w", cfg.CAFile, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, ota.Invalid("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, ota.Invalid("a client certificate needs both a certificate file " +
			"and a key file")
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, ota.Invalid("load client certificate %s with key %s: %w",
				cfg.CertFile, cfg.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// checkClientID requires an id for a persistent session and keeps it usable
// as a topic level, since the marker topic is built from it.
func (cfg Config) checkClientID(persistent bool) error {
	if cfg.ClientID == "" && !persistent {
		return nil // the broker assigns one to a clean session
	}
	if cfg.ClientID == "" {
		return ota.Invalid("a receiving MQTT session needs a client id")
	}
	return ota.ValidateKey("MQTT client id", cfg.ClientID)
}
