package cmd

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

// A malformed broker URL once got as far as the dial and failed as an
// unreachable broker (exit 5).
func TestCheckBroker(t *testing.T) {
	tests := []struct {
		name, url string
		wantErr   string // substring; empty means valid
	}{
		{"default", DefaultBroker, ""},
		{"tls", "ssl://mqtt.example.net:8883", ""},
		{"no port", "tcp://localhost", ""},
		{"websocket path", "wss://mqtt.example.net/mqtt", ""},
		{"ipv6", "tcp://[::1]:1883", ""},
		{"user", "tcp://otactl:pw@host:1883", ""},
		{"port too big", "tcp://127.0.0.1:99999", "has port 99999; a port is 1 to 65535"},
		{"port zero", "tcp://127.0.0.1:0", "has port 0"},
		{"port not a number", "tcp://127.0.0.1:x", `is not a URL: invalid port ":x"`},
		{"no host", "tcp://:1883", "has no host"},
		{"only scheme", "ws://", "has no host"},
		{"unknown scheme", "mqtt://host:1883", `has scheme "mqtt"; use tcp://`},
		{"no scheme", "127.0.0.1:1883", "has no scheme"},
		{"empty", "", "is empty"},
		{"space in host", "tcp://a b:1883", "is not a URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkBroker(tt.url, "--broker")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("checkBroker(%q) = %v, want nil", tt.url, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("checkBroker(%q) = %v, want error containing %q", tt.url, err, tt.wantErr)
			case err != nil && ota.KindOf(err) != ota.KindInvalid:
				t.Errorf("checkBroker(%q) kind = %v, want invalid", tt.url, ota.KindOf(err))
			case err != nil && !strings.Contains(err.Error(), "(from --broker)"):
				t.Errorf("checkBroker(%q) = %v, want the source named", tt.url, err)
			}
		})
	}
}

// Every boolean setting was read with viper's GetBool, which takes what it
// cannot parse as false.
func TestLoadSettingsRefusesBadBooleans(t *testing.T) {
	for _, env := range []string{"OTACTL_JSON", "OTACTL_QUIET", "OTACTL_DEBUG",
		"OTACTL_TLS_INSECURE"} {
		t.Run(env, func(t *testing.T) {
			t.Setenv("XDG_CONFIG_HOME", t.TempDir())
			t.Setenv(env, "maybe")
			root := &cobra.Command{Use: "otactl"}
			addGlobalFlags(root)
			_, err := loadSettings(root)
			key := strings.ToLower(strings.TrimPrefix(env, "OTACTL_"))
			key = strings.ReplaceAll(key, "_", "-")
			want := key + ` "maybe" (from ` + env + `) is not a boolean`
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("loadSettings() with %s=maybe = %v, want error containing %q",
					env, err, want)
			}
		})
	}
}
