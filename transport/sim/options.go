package sim

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/otactl/otactl/ota"
)

// FailMode is how the failing share of a simulated fleet fails an upgrade.
type FailMode string

// The fail modes, each a way real devices have been seen to fail.
const (
	// FailDownload reports a little progress, then step -2.
	FailDownload FailMode = "download"
	// FailVerify downloads the file, then reports step -3 whatever its digest.
	FailVerify FailMode = "verify"
	// FailFlash gets through verification, then reports step -4.
	FailFlash FailMode = "flash"
	// FailDecline acknowledges the push, then reports step -5.
	FailDecline FailMode = "decline"
	// FailSilence acknowledges the push, reports a first step and then
	// nothing more, as a device that hung or lost power would.
	FailSilence FailMode = "silence"
	// FailRollback reports progress up to 100, then its old version, as a
	// device whose new image failed to boot.
	FailRollback FailMode = "rollback"
	// FailWrongVersion reports progress up to 100, then a version that is
	// neither the old one nor the target.
	FailWrongVersion FailMode = "wrong-version"
)

// FailModes lists every fail mode, in the order help texts show them.
func FailModes() []FailMode {
	return []FailMode{FailDownload, FailVerify, FailFlash, FailDecline, FailSilence,
		FailRollback, FailWrongVersion}
}

// Defaults applied by Run to zero-valued options.
const (
	DefaultKeyPrefix       = "sim-"
	DefaultStepDelay       = 200 * time.Millisecond
	DefaultDownloadTimeout = 2 * time.Minute
	// DevicesPerConnection is how many devices share a connection when
	// Options.Connections is zero: enough to keep the connection count low,
	// few enough that one connection's burst of informs stays short.
	DevicesPerConnection = 500
)

// MaxDevices bounds a fleet, so that a typo in --devices fails fast instead
// of exhausting memory.
const MaxDevices = 1_000_000

// MaxConnections bounds Options.Connections; it also keeps client ids within
// the 23 bytes every MQTT 3.1.1 broker must accept.
const MaxConnections = 9999

// Options configure a simulated fleet. The zero value of a field means its
// default where one is documented.
type Options struct {
	// Broker is the MQTT broker URL: tcp://, ssl://, ws:// or wss://.
	Broker   string
	Username string
	Password string
	// CAFile is a PEM bundle trusted instead of the system roots for the
	// broker's certificate and in addition to them for https:// firmware
	// downloads, so that one private CA can serve both; it is allowed with
	// a plain broker for the downloads' sake. CertFile and KeyFile are the
	// client certificate presented to an ssl:// or wss:// broker.
	CAFile   string
	CertFile string
	KeyFile  string
	// TLSInsecure skips verification of the broker's certificate; for
	// tests only. Downloads are always verified.
	TLSInsecure bool

	ProductKey string
	Devices    int    // fleet size, from 1 to MaxDevices
	Version    string // the version every device runs at start
	KeyPrefix  string // device keys are KeyPrefix + 1..Devices; default "sim-"

	// FailRate is the share of devices, from 0 to 1, that fail every
	// upgrade in FailMode. The count is FailRate*Devices rounded.
	FailRate float64
	FailMode FailMode

	StepDelay time.Duration // between progress reports; default 200ms
	// Connections is how many MQTT connections carry the fleet; default
	// enough that none carries more than DevicesPerConnection devices.
	Connections int
	// Seed decides which devices fail and when each comes online. The same
	// seed with the same keys gives the same choices; zero is a seed like
	// any other.
	Seed int64
	// ConnectSpread, when positive, brings each device online at a seeded
	// random moment within this duration after its connection is up,
	// instead of all at once.
	ConnectSpread time.Duration
	// DownloadTimeout bounds each http(s) download; default 2 minutes.
	DownloadTimeout time.Duration
}

// withDefaults returns o with the documented defaults filled in.
func (o Options) withDefaults() Options {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.StepDelay == 0 {
		o.StepDelay = DefaultStepDelay
	}
	if o.DownloadTimeout == 0 {
		o.DownloadTimeout = DefaultDownloadTimeout
	}
	if o.Connections == 0 && o.Devices > 0 {
		o.Connections = (o.Devices + DevicesPerConnection - 1) / DevicesPerConnection
	}
	return o
}

// Validate checks every option after defaults, returning the first problem
// as an ota.KindInvalid error that names the flag to fix.
func (o Options) Validate() error {
	o = o.withDefaults()
	u, err := brokerURL(o.Broker)
	if err != nil {
		return err
	}
	if !isTLS(u) && (o.CertFile != "" || o.KeyFile != "" || o.TLSInsecure) {
		return ota.Invalid("--tls-cert, --tls-key and --tls-insecure need an ssl:// or "+
			"wss:// broker").WithHint("--broker ssl://%s", u.Hostname())
	}
	if err := ota.ValidateKey("--product", o.ProductKey); err != nil {
		return err
	}
	if o.Devices < 1 || o.Devices > MaxDevices {
		return ota.Invalid("--devices %d is out of range: give 1 to %d", o.Devices, MaxDevices)
	}
	if err := ota.ValidateLabel("--version", o.Version); err != nil {
		return err
	}
	if err := validateKeys(o.KeyPrefix, o.Devices); err != nil {
		return err
	}
	if err := validateFailure(o.FailRate, o.FailMode); err != nil {
		return err
	}
	return validateTiming(o)
}

// brokerURL checks --broker and adds the well-known port where it is
// missing, since paho dials the host exactly as given.
func brokerURL(broker string) (*url.URL, error) {
	if broker == "" {
		return nil, ota.Invalid("--broker is empty: give a URL such as tcp://localhost:1883")
	}
	u, err := url.Parse(broker)
	if err != nil {
		// The inner error only: url.Error repeats the URL, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, ota.Invalid("--broker is not a URL: %v", err)
	}
	switch u.Scheme {
	case "tcp", "ssl", "ws", "wss":
	default:
		return nil, ota.Invalid("--broker %s: scheme must be tcp, ssl, ws or wss", u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, ota.Invalid("--broker %s has no host", u.Redacted())
	}
	if u.Port() == "" && (u.Scheme == "tcp" || u.Scheme == "ssl") {
		port := map[string]string{"tcp": "1883", "ssl": "8883"}[u.Scheme]
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	return u, nil
}

func isTLS(u *url.URL) bool { return u.Scheme == "ssl" || u.Scheme == "wss" }

// validateKeys checks the first and the last key: they share every
// character but the digits, and the last is the longest.
func validateKeys(prefix string, n int) error {
	for _, k := range []string{prefix + "1", prefix + strconv.Itoa(n)} {
		if err := ota.ValidateKey("device key", k); err != nil {
			return ota.Invalid("--key-prefix %q makes a bad device key: %w", prefix, err)
		}
	}
	return nil
}

func validateFailure(rate float64, mode FailMode) error {
	if math.IsNaN(rate) || rate < 0 || rate > 1 {
		return ota.Invalid("--fail-rate %v is out of range: give 0 to 1", rate)
	}
	if mode == "" {
		if rate > 0 {
			return ota.Invalid("--fail-rate %v needs --fail-mode (one of %s)", rate, modeList())
		}
		return nil
	}
	for _, m := range FailModes() {
		if m == mode {
			return nil
		}
	}
	return ota.Invalid("--fail-mode %q is unknown: use one of %s", string(mode), modeList())
}

func modeList() string {
	var names []string
	for _, m := range FailModes() {
		names = append(names, string(m))
	}
	return strings.Join(names, ", ")
}

func validateTiming(o Options) error {
	switch {
	case o.StepDelay < 0:
		return ota.Invalid("--step-delay %v is negative", o.StepDelay)
	case o.Connections < 1 || o.Connections > MaxConnections:
		return ota.Invalid("--connections %d is out of range: give 1 to %d",
			o.Connections, MaxConnections)
	case o.Connections > o.Devices:
		return ota.Invalid("--connections %d exceeds --devices %d: a connection needs a device",
			o.Connections, o.Devices)
	case o.ConnectSpread < 0:
		return ota.Invalid("--connect-spread %v is negative", o.ConnectSpread)
	case o.DownloadTimeout < 0:
		return ota.Invalid("--download-timeout %v is negative", o.DownloadTimeout)
	case (o.CertFile == "") != (o.KeyFile == ""):
		return ota.Invalid("--tls-cert and --tls-key go together: give both or neither")
	}
	return nil
}

// tlsConfigs loads the TLS files: the config for an ssl:// or wss://
// broker, nil otherwise, and a root pool for downloads, nil for the
// system's.
func tlsConfigs(o Options, broker *url.URL) (*tls.Config, *x509.CertPool, error) {
	var conf *tls.Config
	if isTLS(broker) {
		conf = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.TLSInsecure}
	}
	var downloads *x509.CertPool
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, nil, ota.Invalid("--tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, ota.Invalid("--tls-ca %s holds no PEM certificate", o.CAFile)
		}
		if conf != nil {
			conf.RootCAs = pool
		}
		// Downloads keep the system roots: firmware is often hosted on a
		// public CDN even when the broker uses a private CA.
		if downloads, err = x509.SystemCertPool(); err != nil || downloads == nil {
			downloads = x509.NewCertPool()
		}
		downloads.AppendCertsFromPEM(pem)
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, nil, ota.Invalid("--tls-cert %s with --tls-key %s: %w",
				o.CertFile, o.KeyFile, err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, downloads, nil
}

// describe is the one-line account of the options logged at start.
func (o Options) describe() string {
	s := fmt.Sprintf("%s %s1..%s%d of product %s at version %s on %s",
		count(o.Devices, "device"), o.KeyPrefix, o.KeyPrefix, o.Devices, o.ProductKey, o.Version,
		count(o.Connections, "connection"))
	if o.FailRate > 0 {
		s += fmt.Sprintf(", fail-rate %v in mode %s", o.FailRate, o.FailMode)
	}
	if o.ConnectSpread > 0 {
		s += fmt.Sprintf(", coming online over %v", o.ConnectSpread)
	}
	return s + fmt.Sprintf(", seed %d", o.Seed)
}
