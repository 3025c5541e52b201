package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
)

// These tests run against a real Mosquitto (internal/mosquitto): the
// properties they guard (queued messages, DUP redelivery, reconnects) are
// the broker's as much as otactl's, and a fake would only restate our
// assumptions about it.

func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func sessionConfig(b *mosquitto.Broker, t *testing.T) Config {
	return Config{
		URL:            b.URL(),
		ClientID:       "otactl-" + strings.ReplaceAll(t.Name(), "/", "-"),
		ConnectTimeout: 5 * time.Second,
	}
}

// recorder is an ApplyFunc that keeps every report and batch size.
type recorder struct {
	mu      sync.Mutex
	reports []ota.Report
	batches []int
	fail    error                                 // returned by every call when set
	replyTo func(r *ota.Report) (ota.Reply, bool) // builds a reply for a report
}

func (rec *recorder) apply(reports []ota.Report) ([]ota.Reply, error) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.reports = append(rec.reports, reports...)
	rec.batches = append(rec.batches, len(reports))
	if rec.fail != nil {
		return nil, rec.fail
	}
	var replies []ota.Reply
	for i := range reports {
		if rec.replyTo == nil {
			break
		}
		if r, ok := rec.replyTo(&reports[i]); ok {
			replies = append(replies, r)
		}
	}
	return replies, nil
}

func (rec *recorder) snapshot() []ota.Report {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]ota.Report(nil), rec.reports...)
}

func openSession(t *testing.T, ctx context.Context, cfg Config, rec *recorder,
	opts ...Option) *Session {
	t.Helper()
	s, err := Open(ctx, cfg, rec.apply, opts...)
	if err != nil {
		t.Fatalf("Open(%s) = %v", cfg.URL, err)
	}
	t.Cleanup(s.Close)
	return s
}

// createSession makes the broker hold a persistent session with otactl's
// subscriptions, then leaves, as a first `otactl sync` would.
func createSession(t *testing.T, ctx context.Context, cfg Config) {
	t.Helper()
	s := openSession(t, ctx, cfg, &recorder{})
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	s.Close()
}

var rawClients atomic.Int64

// rawClient is a plain paho client with a clean session, standing in for
// devices and for watchers of the broker's traffic.
func rawClient(t testing.TB, url string) mqtt.Client {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker(url).
		SetClientID(fmt.Sprintf("raw-%d", rawClients.Add(1))).
		SetProtocolVersion(4).SetAutoReconnect(false)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect raw client to %s: %v", url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

type rawMessage struct {
	topic   string
	payload []byte
}

// publishAll publishes at QoS 1 with every publish in flight at once and
// waits for all acknowledgements.
func publishAll(t testing.TB, c mqtt.Client, msgs []rawMessage) {
	t.Helper()
	toks := make([]mqtt.Token, len(msgs))
	for i, m := range msgs {
		toks[i] = c.Publish(m.topic, 1, false, m.payload)
	}
	for i, tok := range toks {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", msgs[i].topic, tok.Error())
		}
	}
}

// watcher records every topic the broker carries, to assert what was and
// was not published.
type watcher struct {
	c      mqtt.Client
	mu     sync.Mutex
	topics []string
	seen   map[string]chan struct{}
}

func watch(t *testing.T, url string) *watcher {
	t.Helper()
	w := &watcher{c: rawClient(t, url), seen: map[string]chan struct{}{}}
	tok := w.c.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.topics = append(w.topics, m.Topic())
		if ch := w.seen[m.Topic()]; ch != nil {
			close(ch)
			delete(w.seen, m.Topic())
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}
	return w
}

// settle returns once the broker has delivered to the watcher everything
// published before the call: a sentinel sent after it comes back behind it.
func (w *watcher) settle(t *testing.T) []string {
	t.Helper()
	topic := "test/sentinel/" + newNonce()
	ch := make(chan struct{})
	w.mu.Lock()
	w.seen[topic] = ch
	w.mu.Unlock()
	publishAll(t, w.c, []rawMessage{{topic, []byte("x")}})
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("watcher sentinel did not come back within 10s")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.topics...)
}

func progressMessage(dk string, n int) rawMessage {
	return rawMessage{
		topic: progressTopic("pk", dk),
		payload: EncodeRequest(fmt.Sprintf("m-%d", n), MethodProgress,
			map[string]any{"step": n % 101, "desc": "downloading"}),
	}
}

// TestDrainAppliesEverythingQueuedWhileAway guards the core promise of
// DESIGN.md section 6: what devices sent while otactl was not running is
// all recorded, once each, before the command acts, and acknowledged so
// that the next run does not see it again.
func TestDrainAppliesEverythingQueuedWhileAway(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 60*time.Second)
	cfg := sessionConfig(b, t)
	createSession(t, ctx, cfg)

	const n = 5000
	msgs := make([]rawMessage, n)
	for i := range msgs {
		msgs[i] = progressMessage(fmt.Sprintf("dev-%d", i%10), i)
		if i%3 == 0 {
			msgs[i] = rawMessage{informTopic("pk", fmt.Sprintf("dev-%d", i%10)),
				EncodeRequest(fmt.Sprintf("m-%d", i), MethodInform,
					map[string]string{"version": "1"})}
		}
	}
	publishAll(t, rawClient(t, b.URL()), msgs)

	rec := &recorder{}
	start := time.Now()
	s := openSession(t, ctx, cfg, rec, WithMaxBatch(500))
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	t.Logf("drained %d queued messages in %v, %d batches", n, time.Since(start), len(rec.batches))

	counts := map[string]int{}
	for _, r := range rec.snapshot() {
		if r.Invalid != "" {
			t.Errorf("queued message %s came back invalid: %s", r.Payload, r.Invalid)
		}
		counts[r.ID]++
	}
	for i := range n {
		if c := counts[fmt.Sprintf("m-%d", i)]; c != 1 {
			t.Errorf("message m-%d applied %d times before Drain returned, want 1", i, c)
		}
	}
	for _, size := range rec.batches {
		if size > 500 {
			t.Errorf("apply got a batch of %d reports, want at most MaxBatch 500", size)
		}
	}
	s.Close()

	// Everything was acknowledged: the next session receives nothing.
	again := &recorder{}
	s2 := openSession(t, ctx, cfg, again)
	if err := s2.Drain(ctx); err != nil {
		t.Fatalf("second Drain() = %v", err)
	}
	if got := len(again.snapshot()); got != 0 {
		t.Errorf("second session received %d messages, want 0 (all were acknowledged)", got)
	}
}

// TestUnappliedMessageIsRedeliveredWithDup guards acknowledging only after
// the caller committed: a message whose apply failed comes back in the
// next session, flagged as a redelivery.
func TestUnappliedMessageIsRedeliveredWithDup(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 30*time.Second)
	cfg := sessionConfig(b, t)
	createSession(t, ctx, cfg)
	msg := progressMessage("dev-1", 42)
	publishAll(t, rawClient(t, b.URL()), []rawMessage{msg})

	errDisk := errors.New("disk full")
	failing := &recorder{fail: errDisk}
	s := openSession(t, ctx, cfg, failing)
	if err := s.Drain(ctx); !errors.Is(err, errDisk) {
		t.Fatalf("Drain() with a failing apply = %v, want %v", err, errDisk)
	}
	if err := s.Run(ctx); !errors.Is(err, errDisk) {
		t.Errorf("Run() after the apply failed = %v, want %v", err, errDisk)
	}
	s.Close()
	first := failing.snapshot()
	if len(first) != 1 || first[0].Dup {
		t.Fatalf("first delivery = %+v, want one report without Dup", first)
	}

	rec := &recorder{}
	s2 := openSession(t, ctx, cfg, rec)
	if err := s2.Drain(ctx); err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	got := rec.snapshot()
	if len(got) != 1 {
		t.Fatalf("redelivery: got %d reports, want 1", len(got))
	}
	if !got[0].Dup || string(got[0].Payload) != string(msg.payload) || got[0].Step != 42 {
		t.Errorf("redelivery = %+v, want the same progress report with Dup set", got[0])
	}
}

// syncBuffer is a log destination that tests read while the client writes.
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

// TestReconnectAfterBrokerRestart guards DESIGN.md section 7: after the
// broker goes away and comes back, the client reconnects on its own,
// subscribes again, and receives what devices send next.
func TestReconnectAfterBrokerRestart(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 60*time.Second)
	cfg := sessionConfig(b, t)
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec := &recorder{}
	s := openSession(t, ctx, cfg, rec)
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain() = %v", err)
	}

	if err := b.Restart(); err != nil {
		t.Fatalf("restart broker: %v", err)
	}
	waitFor(t, 30*time.Second, "the client to resubscribe", func() bool {
		return strings.Contains(logs.String(), "resubscribed to device topics")
	})
	if !strings.Contains(logs.String(), "reconnecting to broker") {
		t.Errorf("log has no reconnect attempt:\n%s", logs)
	}

	msg := progressMessage("dev-after-restart", 7)
	publishAll(t, rawClient(t, b.URL()), []rawMessage{msg})
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain() after restart = %v", err)
	}
	got := rec.snapshot()
	if len(got) != 1 || got[0].DeviceKey != "dev-after-restart" {
		t.Errorf("after restart got %+v, want the one message published after it", got)
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKeysOnTheWire guards DESIGN.md section 8 end to end: valid non-ASCII
// keys arrive unchanged, and a message on a topic with an invalid key is
// recorded as invalid, naming the key, and never answered.
func TestKeysOnTheWire(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 30*time.Second)
	w := watch(t, b.URL())
	rec := &recorder{replyTo: func(r *ota.Report) (ota.Reply, bool) {
		// Answer every getversion, invalid ones too: refusing those is the
		// transport's job, and this test checks that it does.
		return ota.Reply{To: r, Code: 200, Data: []ota.UpgradeParams{}}, r.Kind == "" ||
			r.Kind == ota.ReportGetVersion
	}}
	s := openSession(t, ctx, sessionConfig(b, t), rec)

	valid := [][2]string{ // product key, device key
		{"温湿度-01", "café_2"},
		{"pk", "dev-4_x"},
		{"温湿度-01", "dev-4_x"},
	}
	var msgs []rawMessage
	for _, k := range valid {
		getversion := EncodeRequest("g", "Ota.device.getversion", nil)
		msgs = append(msgs,
			rawMessage{informTopic(k[0], k[1]),
				EncodeRequest("i", MethodInform, map[string]string{"version": "1.0"})},
			rawMessage{DeviceTopic(k[0], k[1], SuffixGetVersion), getversion})
	}
	// A tab in a key is covered by TestParseInvalid only: Mosquitto drops a
	// publisher whose topic holds a control character.
	long := strings.Repeat("k", 300)
	invalid := map[string]string{ // topic -> a piece of the reason
		"/sys/pk/" + long + "/ota/device/getversion": `device key "kkkkkkkk`,
		"/sys/pk/bad key/ota/device/getversion":      `device key "bad key" contains a space`,
		"/sys/p k/dk/ota/device/getversion":          `product key "p k" contains a space`,
	}
	for topic := range invalid {
		msgs = append(msgs, rawMessage{topic, EncodeRequest("g", MethodGetVersion, nil)})
	}
	publishAll(t, rawClient(t, b.URL()), msgs)
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	if err := s.client.Flush(ctx); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	// Replies go at QoS 0: Flush means written to the connection, not
	// processed by the broker, and the watcher's sentinel comes over a
	// connection of its own, which the broker may serve first (under load
	// it did, and the test saw no replies). A marker sent behind the
	// replies on the session's own connection is processed after them.
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain() after Flush = %v", err)
	}

	got := map[string]ota.Report{}
	for _, r := range rec.snapshot() {
		got[r.Topic] = r
	}
	for _, k := range valid {
		for _, suffix := range []string{SuffixInform, SuffixGetVersion} {
			r := got[DeviceTopic(k[0], k[1], suffix)]
			if r.Invalid != "" || r.ProductKey != k[0] || r.DeviceKey != k[1] {
				t.Errorf("keys %q/%q via %s came back as %+v", k[0], k[1], suffix, r)
			}
		}
	}
	for topic, reason := range invalid {
		if r := got[topic]; !strings.Contains(r.Invalid, reason) {
			t.Errorf("Report(%.40q).Invalid = %q, want it to contain %q", topic, r.Invalid, reason)
		}
	}

	replies := map[string]bool{}
	for _, topic := range w.settle(t) {
		if strings.HasSuffix(topic, "_reply") {
			replies[topic] = true
		}
	}
	for _, k := range valid {
		if topic := ReplyTopic(DeviceTopic(k[0], k[1], SuffixGetVersion)); !replies[topic] {
			t.Errorf("no reply on %s", topic)
		}
	}
	for topic := range invalid {
		if replies[ReplyTopic(topic)] {
			t.Errorf("a reply was published for invalid topic %.40q", topic)
		}
	}
	if len(replies) != len(valid) {
		t.Errorf("broker carried %d replies, want %d: %v", len(replies), len(valid), replies)
	}
}

// TestRetainedMessageIsFlagged guards truth rule 6 at the transport's end:
// a retained report reaches the caller marked as such.
func TestRetainedMessageIsFlagged(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 30*time.Second)
	dev := rawClient(t, b.URL())
	topic := informTopic("pk", "dk")
	payload := EncodeRequest("1", MethodInform, map[string]string{"version": "0.9"})
	if tok := dev.Publish(topic, 1, true, payload); !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("retained publish not acknowledged")
	}
	rec := &recorder{}
	s := openSession(t, ctx, sessionConfig(b, t), rec)
	if err := s.Drain(ctx); err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	got := rec.snapshot()
	if len(got) != 1 || !got[0].Retained || got[0].Version != "0.9" {
		t.Errorf("retained inform came back as %+v, want one report with Retained set", got)
	}
}

// TestPushIsAcknowledgedAndExact guards DESIGN.md section 7: a push
// returns only once the broker holds it, and the device receives exactly
// the upgrade command, not retained.
func TestPushIsAcknowledgedAndExact(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 30*time.Second)
	w := watch(t, b.URL())
	type delivery struct {
		payload  string
		retained bool
	}
	received := make(chan delivery, 100)
	dev := rawClient(t, b.URL())
	upgrades := DeviceTopic("pk", "+", SuffixUpgrade)
	tok := dev.Subscribe(upgrades, 1, func(_ mqtt.Client, m mqtt.Message) {
		received <- delivery{string(m.Payload()), m.Retained()}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	c, err := Dial(ctx, Config{URL: b.URL(), ConnectTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatalf("Dial(publish-only) = %v", err)
	}
	defer c.Close()

	p := &ota.Push{ID: "push-1", JobID: "job-1", ProductKey: "pk", DeviceKey: "café_2",
		Params: ota.UpgradeParams{Version: "2.0", Sign: "ab", SignMethod: "sha256",
			FileURL: "file:///f?a&b", FileSize: 10}}
	if err := c.Push(ctx, p); err != nil {
		t.Fatalf("Push() = %v", err)
	}
	want := p.Params
	want.JobID = "job-1"
	select {
	case d := <-received:
		if d.payload != string(EncodeUpgrade("push-1", want)) || d.retained {
			t.Errorf("device received %s (retained %v), want %s, not retained",
				d.payload, d.retained, EncodeUpgrade("push-1", want))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("device received no upgrade within 5s")
	}

	bad := &ota.Push{ID: "push-2", ProductKey: "pk", DeviceKey: "a+b"}
	if err := c.Push(ctx, bad); ota.KindOf(err) != ota.KindInvalid {
		t.Errorf("Push(key a+b) = %v, want a KindInvalid error", err)
	}
	for _, topic := range w.settle(t) {
		if strings.Contains(topic, "a+b") {
			t.Errorf("broker carried %s for an invalid key", topic)
		}
	}
	if len(received) != 0 {
		t.Errorf("device received %d more messages, want exactly one upgrade", len(received))
	}

	// Without a broker there is no acknowledgement, and Push says so.
	b.Stop()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := c.Push(short, p); ota.KindOf(err) != ota.KindBroker {
		t.Errorf("Push() with the broker down = %v, want a KindBroker error", err)
	}
}

// TestPushAllPipelines checks that every push is sent once and reported
// through sent, with an invalid one skipped and reported.
func TestPushAllPipelines(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 30*time.Second)
	var count atomic.Int64
	dev := rawClient(t, b.URL())
	tok := dev.Subscribe(DeviceTopic("pk", "+", SuffixUpgrade), 1,
		func(mqtt.Client, mqtt.Message) { count.Add(1) })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	rec := &recorder{}
	s := openSession(t, ctx, sessionConfig(b, t), rec)

	const n = 200
	var pushes []*ota.Push
	for i := range n {
		pushes = append(pushes, &ota.Push{ID: fmt.Sprintf("push-%d", i), ProductKey: "pk",
			DeviceKey: fmt.Sprintf("dev-%d", i)})
	}
	pushes = append(pushes, &ota.Push{ID: "push-bad", ProductKey: "pk", DeviceKey: "x y"})
	sent := map[string]bool{}
	err := s.PushAll(ctx, pushes, 16, func(p *ota.Push) { sent[p.ID] = true })
	if ota.KindOf(err) != ota.KindInvalid || !strings.Contains(err.Error(), "push-bad") {
		t.Errorf("PushAll() = %v, want a KindInvalid error naming push-bad", err)
	}
	if len(sent) != n || sent["push-bad"] {
		t.Errorf("sent called for %d pushes (push-bad: %v), want %d",
			len(sent), sent["push-bad"], n)
	}
	waitFor(t, 10*time.Second, "the device to receive every push", func() bool {
		return count.Load() == n
	})
}

// TestDialClosedPortFailsFast guards exit code 5: an unreachable broker fails the
// command promptly, naming the URL, instead of retrying forever.
func TestDialClosedPortFailsFast(t *testing.T) {
	b := mosquitto.Start(t)
	url := b.URL()
	b.Stop()
	ctx := testContext(t, 30*time.Second)
	start := time.Now()
	_, err := Dial(ctx, Config{URL: url, ClientID: "otactl-x", ConnectTimeout: 5 * time.Second},
		func(Message) {})
	if ota.KindOf(err) != ota.KindBroker || !strings.Contains(err.Error(), url) {
		t.Errorf("Dial(closed port) = %v, want a KindBroker error naming %s", err, url)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Dial(closed port) took %v, want a prompt failure", d)
	}
}

func TestDrainDeadline(t *testing.T) {
	b := mosquitto.Start(t)
	s := openSession(t, testContext(t, 10*time.Second), sessionConfig(b, t), &recorder{})
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Drain(expired); ota.KindOf(err) != ota.KindBroker {
		t.Errorf("Drain(canceled ctx) = %v, want a KindBroker error", err)
	}
}
