package cmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport"
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
// file is fine; a named one that is missing, or any broken one, is an error,
// and so is a value that its setting cannot take. On such an error the
// Settings returned hold JSON when it was resolved, so that the error comes
// out in the format asked for.
func loadSettings(root *cobra.Command) (Settings, error) {
	v := viper.New()
	v.SetEnvPrefix("OTACTL")
	v.SetEnvKeyReplacer(envKeys)
	v.AutomaticEnv()
	if err := v.BindPFlags(root.PersistentFlags()); err != nil {
		return Settings{}, err
	}
	v.SetDefault(keyFilesURL, "")
	v.SetDefault(keyPassword, "")

	if err := readConfigFile(v); err != nil {
		return Settings{}, err
	}
	r := resolver{v: v, root: root}
	s := Settings{
		StatePath:  v.GetString(keyState),
		Broker:     v.GetString(keyBroker),
		ConfigFile: v.ConfigFileUsed(),
		Username:   v.GetString(keyUsername),
		Password:   v.GetString(keyPassword),
		TLSCA:      v.GetString(keyTLSCA),
		TLSCert:    v.GetString(keyTLSCert),
		TLSKey:     v.GetString(keyTLSKey),
		FilesURL:   v.GetString(keyFilesURL),
	}
	// json first: once it is known, an error about any other setting can
	// be the one JSON document.
	var err error
	if s.JSON, err = r.bool(keyJSON); err != nil {
		return Settings{}, err
	}
	if err := r.resolve(&s); err != nil {
		return Settings{JSON: s.JSON}, err
	}
	return s, nil
}

// resolve fills in and checks the settings that must parse, after json.
func (r resolver) resolve(s *Settings) error {
	var err error
	for _, b := range []struct {
		key string
		dst *bool
	}{{keyQuiet, &s.Quiet}, {keyDebug, &s.Debug}, {keyTLSInsecure, &s.TLSInsecure}} {
		if *b.dst, err = r.bool(b.key); err != nil {
			return err
		}
	}
	s.LockTimeout, err = time.ParseDuration(r.v.GetString(keyLockTimeout))
	if err != nil {
		return ota.Invalid("lock-timeout %q (from %s) is not a duration such as 5s",
			r.v.GetString(keyLockTimeout), r.source(keyLockTimeout))
	}
	if s.LockTimeout <= 0 {
		return ota.Invalid("lock-timeout %s (from %s) must be positive", s.LockTimeout,
			r.source(keyLockTimeout))
	}
	if err := checkBroker(s.Broker, r.source(keyBroker)); err != nil {
		return err
	}
	if s.StatePath == "" {
		if s.StatePath, err = defaultStatePath(); err != nil {
			return err
		}
	}
	return nil
}

// envKeys turns a setting key into the rest of its env name after OTACTL_.
var envKeys = strings.NewReplacer("-", "_", ".", "_")

// resolver reads settings from one run's viper, and says where each value
// came from for the errors about it.
type resolver struct {
	v    *viper.Viper
	root *cobra.Command
}

// bool reads a boolean setting, refusing what strconv.ParseBool refuses.
// viper's GetBool reads such a value as false without a word: OTACTL_JSON=
// maybe printed a table to a program expecting JSON, and a mistyped
// OTACTL_TLS_INSECURE or OTACTL_QUIET was just as silent.
func (r resolver) bool(key string) (bool, error) {
	raw := r.v.Get(key)
	if b, ok := raw.(bool); ok {
		return b, nil
	}
	text := fmt.Sprint(raw) // a string from the environment, or 0 and 1 in YAML
	b, err := strconv.ParseBool(text)
	if err != nil {
		return false, ota.Invalid("%s %q (from %s) is not a boolean: use true or false",
			key, text, r.source(key))
	}
	return b, nil
}

// source names where key's value came from, in the order of precedence:
// "--broker", "OTACTL_BROKER", "config file FILE" or "the default".
func (r resolver) source(key string) string {
	if f := r.root.PersistentFlags().Lookup(key); f != nil && f.Changed {
		return "--" + key
	}
	env := "OTACTL_" + strings.ToUpper(envKeys.Replace(key))
	if os.Getenv(env) != "" { // viper passes over an empty variable too
		return env
	}
	if r.v.InConfig(key) {
		return "config file " + r.v.ConfigFileUsed()
	}
	return "the default"
}

// checkBroker refuses a broker URL that no connection could use, before
// anything opens the state file or dials: a port out of range once failed
// only when dialling, as an unreachable broker (exit 5), and a sync had
// created the state file by then. The error names where the URL came from.
func checkBroker(raw, from string) error {
	_, err := transport.ParseBrokerURL(raw)
	var bad *transport.BrokerURLError
	if errors.As(err, &bad) {
		return ota.Invalid("broker %q (from %s) %s", bad.URL, from, bad.Problem)
	}
	return err
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
