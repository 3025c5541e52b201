package transport

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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

// BrokerURLError is a broker URL that no connection could use. Problem
// reads after the URL ("has no host"), so that a caller can say where the
// URL came from in between.
type BrokerURLError struct {
	URL     string // as given, its password hidden
	Problem string
}

func (e *BrokerURLError) Error() string { return fmt.Sprintf("broker URL %q %s", e.URL, e.Problem) }

// ParseBrokerURL parses and checks a broker URL as --broker takes it. An
// unusable one is a *BrokerURLError. Ports are added where MQTT has a
// well-known one, because paho dials the host as given.
func ParseBrokerURL(raw string) (*url.URL, error) {
	bad := func(format string, args ...any) error {
		return &BrokerURLError{URL: RedactURL(raw), Problem: fmt.Sprintf(format, args...)}
	}
	const schemes = "use tcp://, ssl://, ws:// or wss://"
	if raw == "" {
		return nil, bad("is empty; %s", schemes)
	}
	if !strings.Contains(raw, "://") {
		return nil, bad("has no scheme; %s", schemes)
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, bad("is not a URL: %v", err)
	}
	switch u.Scheme {
	case "tcp", "ssl", "ws", "wss":
	default:
		return nil, bad("has scheme %q; %s", u.Scheme, schemes)
	}
	if u.Hostname() == "" {
		return nil, bad("has no host")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, bad("has port %s; a port is 1 to 65535", p)
		}
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

// brokerURL is ParseBrokerURL for Dial: an unusable URL is invalid input.
func brokerURL(raw string) (*url.URL, error) {
	u, err := ParseBrokerURL(raw)
	if err != nil {
		return nil, ota.Invalid("%v", err).WithHint("--broker tcp://localhost:1883")
	}
	return u, nil
}

// RedactURL hides the password of a broker URL, parsed or not, since an
// error naming it may end up in a CI log. Anything else is left as written.
func RedactURL(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	at := strings.LastIndex(authority, "@")
	if at < 0 {
		return raw
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	if !hasPassword {
		return raw
	}
	return prefix + user + ":xxxxx" + rest[at:]
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
