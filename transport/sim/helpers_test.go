package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport"
)

// testStep keeps upgrades short while still exercising the delays.
const testStep = 3 * time.Millisecond

// fleetRun is a Run in the background of a test.
type fleetRun struct {
	cancel context.CancelFunc
	done   chan struct{}
	sum    Summary
	err    error
	log    *syncBuffer
}

// startFleet runs the simulator until the test ends or stop is called.
func startFleet(t *testing.T, opt Options) *fleetRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &fleetRun{cancel: cancel, done: make(chan struct{}), log: &syncBuffer{}}
	go func() {
		defer close(r.done)
		r.sum, r.err = Run(ctx, opt, r.log)
	}()
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("simulator log:\n%s", r.log.String())
		}
	})
	return r
}

// stop cancels the run and returns its summary, failing the test when Run
// does not return promptly or returns an error.
func (r *fleetRun) stop(t *testing.T) Summary {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5s of its context being cancelled")
	}
	if r.err != nil {
		t.Fatalf("Run() error = %v", r.err)
	}
	return r.sum
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// watcher plays otactl's side: it records every device message of a
// product as transport.Parse reads it, and publishes pushes.
type watcher struct {
	t      *testing.T
	pk     string
	client mqtt.Client
	mu     sync.Mutex
	all    []ota.Report
}

func newWatcher(t *testing.T, b *mosquitto.Broker, pk string) *watcher {
	t.Helper()
	return startWatcher(t, b, pk, true)
}

// newPersistentWatcher is a watcher whose session outlives a broker restart:
// the broker keeps what devices report while it reconnects, so nothing is
// missed however fast the fleet comes back.
func newPersistentWatcher(t *testing.T, b *mosquitto.Broker, pk string) *watcher {
	t.Helper()
	return startWatcher(t, b, pk, false)
}

func startWatcher(t *testing.T, b *mosquitto.Broker, pk string, clean bool) *watcher {
	t.Helper()
	w := &watcher{t: t, pk: pk}
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).
		SetClientID("watcher-" + randomHex(4)).SetCleanSession(clean).
		SetConnectRetry(true).SetMaxReconnectInterval(500 * time.Millisecond)
	w.client = mqtt.NewClient(opts)
	if tok := w.client.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { w.client.Disconnect(100) })
	filters := map[string]byte{}
	for _, s := range []string{transport.SuffixInform, transport.SuffixProgress,
		transport.SuffixUpgradeReply} {
		filters[transport.DeviceTopic(pk, "+", s)] = 1
	}
	tok := w.client.SubscribeMultiple(filters, w.record)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}
	return w
}

func (w *watcher) record(_ mqtt.Client, m mqtt.Message) {
	r := transport.Parse(m.Topic(), m.Payload(), m.Duplicate(), m.Retained(), time.Now())
	w.mu.Lock()
	w.all = append(w.all, r)
	w.mu.Unlock()
}

// reports returns the messages of one device, or of all when dk is "".
// Every one must have passed otactl's own parser.
func (w *watcher) reports(dk string) []ota.Report {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ota.Report
	for _, r := range w.all {
		if r.Invalid != "" {
			w.t.Errorf("transport.Parse(%s, %s) is invalid: %s", r.Topic, r.Payload, r.Invalid)
			continue
		}
		if dk == "" || r.DeviceKey == dk {
			out = append(out, r)
		}
	}
	return out
}

// push publishes an upgrade command to a device at QoS 1.
func (w *watcher) push(dk, id string, p ota.UpgradeParams) {
	w.pushRaw(dk, transport.EncodeUpgrade(id, p))
}

func (w *watcher) pushRaw(dk string, payload []byte) {
	w.t.Helper()
	topic := transport.DeviceTopic(w.pk, dk, transport.SuffixUpgrade)
	if tok := w.client.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) ||
		tok.Error() != nil {
		w.t.Fatalf("push to %s: %v", dk, tok.Error())
	}
}

// waitFor polls until ok holds for dk's reports, failing after within.
func (w *watcher) waitFor(dk string, within time.Duration, what string,
	ok func([]ota.Report) bool) []ota.Report {
	w.t.Helper()
	deadline := time.Now().Add(within)
	for {
		rs := w.reports(dk)
		if ok(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not seen within %v; messages of %q:\n%s", what, within, dk, dump(rs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitInform waits until dk reported version, returning all its messages.
func (w *watcher) waitInform(dk, version string) []ota.Report {
	w.t.Helper()
	return w.waitFor(dk, 10*time.Second, dk+" reports "+version, func(rs []ota.Report) bool {
		return countInforms(rs, version) > 0
	})
}

// waitOnline waits for every device of a fleet to report version once.
func (w *watcher) waitOnline(prefix string, n int, version string) {
	w.t.Helper()
	w.waitFor("", 60*time.Second, "every device's first report", func(rs []ota.Report) bool {
		return len(informedKeys(rs, prefix, version)) >= n
	})
}

func informedKeys(rs []ota.Report, prefix, version string) map[string]bool {
	keys := map[string]bool{}
	for _, r := range rs {
		if r.Kind == ota.ReportInform && r.Version == version &&
			strings.HasPrefix(r.DeviceKey, prefix) {
			keys[r.DeviceKey] = true
		}
	}
	return keys
}

// countInforms counts the version reports of version, a report the broker
// delivered twice once: after a broker restart the client sends again what
// the old broker had not acknowledged, with the same envelope id, and a
// count of 2 once met 3 (TestReconnectReportsAgain).
func countInforms(rs []ota.Report, version string) int {
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Kind == ota.ReportInform && r.Version == version {
			seen[r.DeviceKey+"\x00"+r.ID] = true
		}
	}
	return len(seen)
}

// after returns the reports that follow the first report of kind.
func after(rs []ota.Report, kind ota.ReportKind) []ota.Report {
	for i, r := range rs {
		if r.Kind == kind {
			return rs[i+1:]
		}
	}
	return nil
}

func steps(rs []ota.Report) []int {
	var out []int
	for _, r := range rs {
		if r.Kind == ota.ReportProgress {
			out = append(out, r.Step)
		}
	}
	return out
}

func lastStep(rs []ota.Report) (int, bool) {
	s := steps(rs)
	if len(s) == 0 {
		return 0, false
	}
	return s[len(s)-1], true
}

func dump(rs []ota.Report) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString("  " + r.Topic + " " + string(r.Payload) + "\n")
	}
	return b.String()
}

// firmware writes content to a file and returns the push params that
// describe it, with a file:// URL.
func firmware(t *testing.T, version string, content []byte) ota.UpgradeParams {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fw-"+version+".bin")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	u := url.URL{Scheme: "file", Path: path}
	return ota.UpgradeParams{Version: version, Sign: hex.EncodeToString(sum[:]),
		SignMethod: ota.SignSHA256, FileURL: u.String(), FileSize: int64(len(content)),
		JobID: "job-" + version}
}

// fleetOptions are the options every test starts from.
func fleetOptions(b *mosquitto.Broker, pk string, n int) Options {
	return Options{Broker: b.URL(), ProductKey: pk, Devices: n, Version: "1.0.0",
		StepDelay: testStep, Seed: 1}
}
