package transport

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otactl/otactl/ota"
)

func TestClientIDFor(t *testing.T) {
	id := ClientIDFor("state.db")
	if len(id) != 23 || !strings.HasPrefix(id, "otactl-") {
		t.Errorf("ClientIDFor(state.db) = %q, want otactl- and 16 hex digits", id)
	}
	abs, err := filepath.Abs("state.db")
	if err != nil {
		t.Fatal(err)
	}
	if got := ClientIDFor(abs); got != id {
		t.Errorf("ClientIDFor(%s) = %q, want %q as for the relative path", abs, got, id)
	}
	if other := ClientIDFor("other.db"); other == id {
		t.Errorf("ClientIDFor(other.db) = ClientIDFor(state.db) = %q", id)
	}
	if err := ota.ValidateKey("client id", id); err != nil {
		t.Errorf("ClientIDFor() = %q, not usable in the marker topic: %v", id, err)
	}
}

// TestDialRefusesBadSettings checks the errors that come before any network
// traffic: each names what is wrong, and has KindInvalid (exit code 2).
func TestDialRefusesBadSettings(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.txt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		cfg  Config
		want string // a piece of the message
	}{
		{"unknown scheme", Config{URL: "mqtt://h:1883", ClientID: "c"}, `mqtt://h:1883`},
		{"http scheme", Config{URL: "http://h", ClientID: "c"}, `scheme "http"`},
		{"no host", Config{URL: "tcp://:1883", ClientID: "c"}, "has no host"},
		{"not a URL", Config{URL: "tcp://u:secret@h:x", ClientID: "c"}, "u:xxxxx@h:x"},
		{"missing CA file", Config{URL: "ssl://h", ClientID: "c", CAFile: missing}, missing},
		{"CA file not PEM", Config{URL: "wss://h", ClientID: "c", CAFile: notPEM}, notPEM},
		{"cert without key", Config{URL: "ssl://h", ClientID: "c", CertFile: missing},
			"both a certificate file and a key file"},
		{"missing cert", Config{URL: "ssl://h", ClientID: "c", CertFile: missing,
			KeyFile: missing}, missing},
		{"TLS files on tcp", Config{URL: "tcp://h", ClientID: "c", CAFile: notPEM},
			"not ssl:// or wss://"},
		{"no client id", Config{URL: "tcp://h"}, "needs a client id"},
		{"client id with slash", Config{URL: "tcp://h", ClientID: "a/b"}, "a/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Dial(context.Background(), tt.cfg, func(Message) {})
			if ota.KindOf(err) != ota.KindInvalid || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Dial(%+v) = %v, want a KindInvalid error containing %q",
					tt.cfg, err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("Dial(%+v) = %v, which shows the password", tt.cfg, err)
			}
		})
	}
}

func TestBrokerURLDefaultPorts(t *testing.T) {
	tests := []struct{ in, want string }{
		{"tcp://broker", "tcp://broker:1883"},
		{"ssl://broker", "ssl://broker:8883"},
		{"tcp://broker:1884", "tcp://broker:1884"},
		{"ws://broker/mqtt", "ws://broker/mqtt"},
		{"TCP://[::1]", "tcp://[::1]:1883"},
	}
	for _, tt := range tests {
		u, err := brokerURL(tt.in)
		if err != nil || u.String() != tt.want {
			t.Errorf("brokerURL(%q) = %v, %v, want %s", tt.in, u, err, tt.want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"tcp://host:1883", "tcp://host:1883"},
		{"ws://", "ws://"},
		{"tcp://otactl:s3cret@host:99999", "tcp://otactl:xxxxx@host:99999"},
		{"tcp://otactl:s3cret@bad host", "tcp://otactl:xxxxx@bad host"},
		{"otactl:s3cret@host:1883", "otactl:xxxxx@host:1883"},
		{"tcp://otactl@host", "tcp://otactl@host"},
		{"wss://host/a:b@c", "wss://host/a:b@c"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
