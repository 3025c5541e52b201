package cmd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/otactl/otactl/ota"
)

// Settings are the values every command may need, resolved once per run
// with the precedence flag > OTACTL_* environment > config file > default
// (docs/configuration.md lists them all).
type Settings struct {
	StatePath   string
	Broker      string
	ConfigFile  string
	JSON        bool
	Quiet       bool
	Debug       bool
	LockTimeout time.Duration
	Username    string
	Password    string // env or config file only, never a flag
	TLSCA       string
	TLSCert     string
	TLSKey      string
	TLSInsecure bool
	FilesURL    string // files.base-url: where devices fetch stored firmware
}

// Setting keys. A key's env name is OTACTL_ + the key in upper case with
// "-" and "." as "_".
const (
	keyState       = "state"
	keyBroker      = "broker"
	keyConfig      = "config"
	keyJSON        = "json"
	keyQuiet       = "quiet"
	keyDebug       = "debug"
	keyLockTimeout = "lock-timeout"
	keyUsername    = "broker-username"
	keyPassword    = "broker-password"
	keyTLSCA       = "tls-ca"
	keyTLSCert     = "tls-cert"
	keyTLSKey      = "tls-key"
	keyTLSInsecure = "tls-insecure"
	keyFilesURL    = "files.base-url"
)

// DefaultBroker is the broker used when none is configured.
const DefaultBroker = "tcp://127.0.0.1:1883"

func addGlobalFlags(root *cobra.Command) {
	f := root.PersistentFlags()
	f.String(keyState, "", "state file `path` (default $XDG_STATE_HOME/otactl/state.db)")
	f.String(keyBroker, DefaultBroker, "MQTT broker `url`: tcp://, ssl://, ws:// or wss://")
	f.String(keyConfig, "", "config `file` (default $XDG_CONFIG_HOME/otactl/config.yaml)")
	f.Bool(keyJSON, false, "print exactly one JSON document on stdout")
	f.BoolP(keyQuiet, "q", false, "print only data and errors")
	f.Bool(keyDebug, false, "trace protocol and storage details on stderr")
	f.Duration(keyLockTimeout, 5*time.Second, "how long to wait for a state file in use")
	f.String(keyUsername, "", "broker user name (password: OTACTL_BROKER_PASSWORD or config)")
	f.String(keyTLSCA, "", "CA certificate `file` for ssl:// and wss:// brokers")
	f.String(keyTLSCert, "", "client certificate `file`")
	f.String(keyTLSKey, "", "client key `file`")
	f.Bool(keyTLSInsecure, false, "skip verification of the broker's certificate (testing only)")
}

// loadSettings resolves the settings for one run. A missing default config
// file is fine; a named one that is missing, or any broken one, is an error.
func loadSettings(root *cobra.Command) (Settings, error) {
	v := viper.New()
	v.SetEnvPrefix("OTACTL")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_", ".", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(root.PersistentFlags()); err != nil {
		return Settings{}, err
	}
	v.SetDefault(keyFilesURL, "")
	v.SetDefault(keyPassword, "")

	if err := readConfigFile(v); err != nil {
		return Settings{}, err
	}
	lockTimeout, err := time.ParseDuration(v.GetString(keyLockTimeout))
	if err != nil {
		return Settings{}, ota.Invalid("lock-timeout %q (from --lock-timeout, OTACTL_LOCK_TIMEOUT or "+
			"the config file) is not a duration such as 5s", v.GetString(keyLockTimeout))
	}
	s := Settings{
		StatePath:   v.GetString(keyState),
		Broker:      v.GetString(keyBroker),
		ConfigFile:  v.ConfigFileUsed(),
		JSON:        v.GetBool(keyJSON),
		Quiet:       v.GetBool(keyQuiet),
		Debug:       v.GetBool(keyDebug),
		LockTimeout: lockTimeout,
		Username:    v.GetString(keyUsername),
		Password:    v.GetString(keyPassword),
		TLSCA:       v.GetString(keyTLSCA),
		TLSCert:     v.GetString(keyTLSCert),
		TLSKey:      v.GetString(keyTLSKey),
		TLSInsecure: v.GetBool(keyTLSInsecure),
		FilesURL:    v.GetString(keyFilesURL),
	}
	if s.StatePath == "" {
		p, err := defaultStatePath()
		if err != nil {
			return Settings{}, err
		}
		s.StatePath = p
	}
	if s.LockTimeout <= 0 {
		return Settings{}, ota.Invalid("--lock-timeout %s must be positive", s.LockTimeout)
	}
	return s, nil
}

func readConfigFile(v *viper.Viper) error {
	name := v.GetString(keyConfig)
	if name != "" {
		v.SetConfigFile(name)
		if err := v.ReadInConfig(); err != nil {
			return ota.Invalid("config file %s: %v", name, err)
		}
		return nil
	}
	dir, err := xdgDir("XDG_CONFIG_HOME", ".config")
	if err != nil {
		return nil // no home folder: there is no default config file either
	}
	def := filepath.Join(dir, "otactl", "config.yaml")
	if _, err := os.Stat(def); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	v.SetConfigFile(def)
	if err := v.ReadInConfig(); err != nil {
		return ota.Invalid("config file %s: %v", def, err)
	}
	return nil
}

func defaultStatePath() (string, error) {
	dir, err := xdgDir("XDG_STATE_HOME", filepath.Join(".local", "state"))
	if err != nil {
		return "", ota.Invalid("no state file given and no home folder to default to: use --state")
	}
	return filepath.Join(dir, "otactl", "state.db"), nil
}

// xdgDir returns $env when it is an absolute path, else ~/fallback.
func xdgDir(env, fallback string) (string, error) {
	if d := os.Getenv(env); filepath.IsAbs(d) {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, fallback), nil
}
