package sim

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

func TestOptionsValidate(t *testing.T) {
	valid := Options{Broker: "tcp://localhost:1883", ProductKey: "pk", Devices: 10,
		Version: "1.0.0"}
	cases := []struct {
		name   string
		change func(*Options)
		want   string // in the error; "" for none
	}{
		{"valid", func(*Options) {}, ""},
		{"no broker", func(o *Options) { o.Broker = "" }, "--broker"},
		{"broker scheme", func(o *Options) { o.Broker = "http://h:1" }, "--broker"},
		{"broker host", func(o *Options) { o.Broker = "tcp://" }, "no host"},
		{"broker without port", func(o *Options) { o.Broker = "ssl://h" }, ""},
		{"wss broker", func(o *Options) { o.Broker = "wss://h/mqtt" }, ""},
		{"client cert on tcp", func(o *Options) { o.CertFile, o.KeyFile = "c", "k" },
			"ssl://"},
		{"CA on tcp, for downloads", func(o *Options) { o.CAFile = "ca.pem" }, ""},
		{"no product", func(o *Options) { o.ProductKey = "" }, "--product"},
		{"product with slash", func(o *Options) { o.ProductKey = "a/b" }, "--product"},
		{"no devices", func(o *Options) { o.Devices = 0 }, "--devices 0"},
		{"too many devices", func(o *Options) { o.Devices = MaxDevices + 1 }, "--devices"},
		{"no version", func(o *Options) { o.Version = " " }, "--version"},
		{"prefix with space", func(o *Options) { o.KeyPrefix = "a b" }, "--key-prefix"},
		{"prefix with plus", func(o *Options) { o.KeyPrefix = "a+" }, "--key-prefix"},
		{"prefix too long", func(o *Options) { o.KeyPrefix = strings.Repeat("x", 63) },
			"--key-prefix"},
		{"prefix non-ASCII", func(o *Options) { o.KeyPrefix = "温湿度-" }, ""},
		{"rate above 1", func(o *Options) { o.FailRate, o.FailMode = 1.5, FailFlash },
			"--fail-rate 1.5"},
		{"rate NaN", func(o *Options) { o.FailRate = math.NaN() }, "--fail-rate"},
		{"rate without mode", func(o *Options) { o.FailRate = 0.1 }, "needs --fail-mode"},
		{"unknown mode", func(o *Options) { o.FailMode = "explode" }, `"explode"`},
		{"mode without rate", func(o *Options) { o.FailMode = FailSilence }, ""},
		{"negative step", func(o *Options) { o.StepDelay = -time.Second }, "--step-delay"},
		{"negative conns", func(o *Options) { o.Connections = -1 }, "--connections"},
		{"more conns than devices", func(o *Options) { o.Connections = 11 },
			"--connections 11"},
		{"negative spread", func(o *Options) { o.ConnectSpread = -1 }, "--connect-spread"},
		{"cert without key", func(o *Options) {
			o.Broker, o.CertFile = "ssl://h", "c.pem"
		}, "--tls-cert"},
		{"too many conns", func(o *Options) {
			o.Devices, o.Connections = 20_000, MaxConnections+1
		}, "--connections"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := valid
			tc.change(&o)
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want == "":
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			case ota.KindOf(err) != ota.KindInvalid:
				t.Errorf("Validate() kind = %v, want invalid", ota.KindOf(err))
			case strings.Contains(err.Error(), "\n"):
				t.Errorf("Validate() = %q, want one line", err)
			}
		})
	}
}

// A broker URL that does not parse must not put its password in an error
// that may end up in a CI log.
func TestBrokerErrorHidesPassword(t *testing.T) {
	o := Options{Broker: "tcp://u:secret@h:%zz", ProductKey: "pk", Devices: 1, Version: "1"}
	if err := o.Validate(); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Validate() = %v, want an error without the password", err)
	}
}

func TestBrokerURLAddsPort(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://h":         "tcp://h:1883",
		"ssl://h":         "ssl://h:8883",
		"tcp://h:1":       "tcp://h:1",
		"ws://h/mqtt":     "ws://h/mqtt",
		"tcp://[::1]":     "tcp://[::1]:1883",
		"ssl://u:p@h:999": "ssl://u:p@h:999",
	} {
		u, err := brokerURL(in)
		if err != nil || u.String() != want {
			t.Errorf("brokerURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
}

func TestDefaultConnections(t *testing.T) {
	for _, tc := range []struct{ devices, want int }{
		{1, 1}, {500, 1}, {501, 2}, {10_000, 20}, {10_001, 21},
	} {
		o := Options{Devices: tc.devices}.withDefaults()
		if o.Connections != tc.want {
			t.Errorf("connections for %d devices = %d, want %d", tc.devices, o.Connections,
				tc.want)
		}
	}
}

func TestShardKeepsEveryDevice(t *testing.T) {
	devs := plan(Options{Devices: 1001, KeyPrefix: "k", Version: "1"})
	groups := shard(devs, 3)
	n := 0
	for _, g := range groups {
		if len(g) < 333 || len(g) > 334 {
			t.Errorf("group of %d devices, want 333 or 334", len(g))
		}
		n += len(g)
	}
	if n != 1001 || groups[0][0].key != "k1" || groups[2][len(groups[2])-1].key != "k1001" {
		t.Errorf("shard lost or reordered devices")
	}
}

func TestPlanSpreadIsSeeded(t *testing.T) {
	o := Options{Devices: 100, KeyPrefix: "k", Version: "1", Seed: 5,
		ConnectSpread: time.Minute}
	a, b := plan(o), plan(o)
	o.Seed = 6
	c := plan(o)
	same, differ := true, false
	for i := range a {
		if a[i].onlineAt < 0 || a[i].onlineAt >= time.Minute {
			t.Errorf("%s comes online at %v, outside the spread", a[i].key, a[i].onlineAt)
		}
		same = same && a[i].onlineAt == b[i].onlineAt
		differ = differ || a[i].onlineAt != c[i].onlineAt
	}
	if !same || !differ {
		t.Errorf("online moments: same seed equal = %v, other seed differ = %v; want both",
			same, differ)
	}
}
