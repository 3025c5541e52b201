package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
	"github.com/otactl/otactl/transport"
)

// ingestTimeout bounds every wait of a run. A healthy run takes seconds;
// the bound is generous because a slow one is a figure worth recording.
// go test's own -timeout (10 minutes by default) must cover all the runs.
const ingestTimeout = 10 * time.Minute

// publishWindow is how many publishes await the broker's acknowledgement
// at once: the pipelining DESIGN.md section 10 measured.
const publishWindow = 1000

// BenchmarkIngest is the measurement: the fleet's 100,000 messages
// wait in the broker, queued in two persistent sessions created before
// they were published, and are drained in turn by (a) a bare paho
// subscriber that only counts and acknowledges, and (b) otactl's own path,
// a transport.Session applying them with ota.Apply to a bbolt state file,
// until Drain returns with every message committed and acknowledged. Run:
//
//	go test ./bench -run '^$' -bench 'Ingest$' -benchtime 1x -count 3 -timeout 60m
func BenchmarkIngest(b *testing.B) {
	msgs := fleetTraffic()
	var paho, otactl, publish time.Duration
	for b.Loop() {
		p, o, pub := ingestBacklog(b, msgs)
		paho, otactl, publish = paho+p, otactl+o, publish+pub
	}
	reportIngestRates(b, len(msgs)*b.N, paho, otactl)
	b.ReportMetric(float64(len(msgs)*b.N)/publish.Seconds(), "publish-msgs/s")
}

// BenchmarkIngestLive is the case of a running agent: each consumer is
// connected while the publisher sends, and is timed from the first publish
// until it has counted, or committed, the last message. The publisher and
// the consumer share the machine's cores, so both rates are bounded by how
// fast the broker takes the messages in. Run:
//
//	go test ./bench -run '^$' -bench IngestLive -benchtime 1x -count 3 -timeout 60m
func BenchmarkIngestLive(b *testing.B) {
	msgs := fleetTraffic()
	var paho, otactl time.Duration
	for b.Loop() {
		p, o := ingestLive(b, msgs)
		paho, otactl = paho+p, otactl+o
	}
	reportIngestRates(b, len(msgs)*b.N, paho, otactl)
}

// reportIngestRates reports both consumers' rates, and otactl's as a
// fraction of the bare subscriber's: the target is 0.5 or more.
func reportIngestRates(b *testing.B, n int, paho, otactl time.Duration) {
	b.ReportMetric(float64(n)/paho.Seconds(), "paho-msgs/s")
	b.ReportMetric(float64(n)/otactl.Seconds(), "otactl-msgs/s")
	b.ReportMetric(paho.Seconds()/otactl.Seconds(), "otactl/paho")
}

// ingestBacklog runs one backlog measurement on a broker of its own and
// returns the time each consumer took to drain the backlog, and the time
// the publisher took to hand it to the broker.
func ingestBacklog(b *testing.B, msgs []fleetMsg) (paho, otactl, publish time.Duration) {
	broker := mosquitto.Start(b)
	defer broker.Stop()
	st := seedFleet(b)

	// Both sessions exist before the first publish, as DESIGN.md section 6
	// tells users to arrange: the broker keeps nothing for a session that
	// does not exist yet.
	const otactlID, pahoID = "otactl-bench", "paho-bench"
	s, err := transport.Open(context.Background(), ingestSessionConfig(broker, otactlID),
		func(r []ota.Report) ([]ota.Reply, error) {
			return nil, fmt.Errorf("%d messages before the backlog was published", len(r))
		})
	if err != nil {
		b.Fatalf("transport.Open() = %v", err)
	}
	s.Close()
	sub := pahoSubscriber(b, broker, pahoID, false, nil)
	subscribeDevices(b, sub)
	sub.Disconnect(100)

	pub := connectPaho(b, broker, "bench-publisher", true, nil)
	start := time.Now()
	publishPipelined(b, pub, msgs)
	publish = time.Since(start)
	pub.Disconnect(100)

	paho = drainPaho(b, broker, pahoID, len(msgs))
	otactl = drainOtactl(b, broker, otactlID, st, len(msgs))
	checkFleet(b, st)
	return paho, otactl, publish
}

// drainPaho times a bare subscriber from its connection until it has counted
// n messages. Its session holds the subscriptions, so it subscribes to
// nothing; paho acknowledges each message when the handler returns.
func drainPaho(b *testing.B, broker *mosquitto.Broker, id string, n int) time.Duration {
	var count atomic.Int64
	all := make(chan struct{})
	start := time.Now()
	c := pahoSubscriber(b, broker, id, false, func(mqtt.Client, mqtt.Message) {
		if count.Add(1) == int64(n) {
			close(all)
		}
	})
	defer c.Disconnect(100)
	waitFor(b, all, "the bare subscriber to count the backlog")
	return time.Since(start)
}

// drainOtactl times otactl's receiving path from Open until Drain returned,
// which is when every message queued for the session is committed to the
// state file and acknowledged to the broker.
func drainOtactl(b *testing.B, broker *mosquitto.Broker, id string, st *state.Store,
	n int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), ingestTimeout)
	defer cancel()
	apply, applied := applyToStore(st, 0, nil)
	start := time.Now()
	s, err := transport.Open(ctx, ingestSessionConfig(broker, id), apply)
	if err != nil {
		b.Fatalf("transport.Open() = %v", err)
	}
	defer s.Close()
	if err := s.Drain(ctx); err != nil {
		b.Fatalf("Drain() = %v", err)
	}
	took := time.Since(start)
	if got := applied.Load(); got != int64(n) {
		b.Fatalf("Drain() returned after %d messages were applied, want %d", got, n)
	}
	return took
}

// ingestLive runs one live measurement on a broker of its own: first the
// bare subscriber, then otactl, each fed the whole traffic by a publisher
// while connected.
func ingestLive(b *testing.B, msgs []fleetMsg) (paho, otactl time.Duration) {
	broker := mosquitto.Start(b)
	defer broker.Stop()
	st := seedFleet(b)

	var count atomic.Int64
	all := make(chan struct{})
	// A clean session: once disconnected, it must not keep collecting
	// copies of what is published for otactl next.
	sub := pahoSubscriber(b, broker, "paho-live", true, func(mqtt.Client, mqtt.Message) {
		if count.Add(1) == int64(len(msgs)) {
			close(all)
		}
	})
	subscribeDevices(b, sub)
	paho = timeLiveIngest(b, broker, msgs, all)
	sub.Disconnect(100)

	ctx, cancel := context.WithTimeout(context.Background(), ingestTimeout)
	defer cancel()
	done := make(chan struct{})
	apply, _ := applyToStore(st, len(msgs), done)
	s, err := transport.Open(ctx, ingestSessionConfig(broker, "otactl-live"), apply)
	if err != nil {
		b.Fatalf("transport.Open() = %v", err)
	}
	defer s.Close()
	otactl = timeLiveIngest(b, broker, msgs, done)
	checkFleet(b, st)
	return paho, otactl
}

func timeLiveIngest(b *testing.B, broker *mosquitto.Broker, msgs []fleetMsg,
	all <-chan struct{}) time.Duration {
	pub := connectPaho(b, broker, "bench-publisher", true, nil)
	defer pub.Disconnect(100)
	start := time.Now()
	publishPipelined(b, pub, msgs)
	waitFor(b, all, "every published message to be consumed")
	return time.Since(start)
}

// applyToStore is the ApplyFunc that cmd gives a Session (cmd/live.go): one
// write transaction per batch, ota.Apply inside it. It counts the messages
// committed and, when want is positive, closes done once there are want.
func applyToStore(st *state.Store, want int,
	done chan struct{}) (transport.ApplyFunc, *atomic.Int64) {
	var applied atomic.Int64
	apply := func(reports []ota.Report) ([]ota.Reply, error) {
		var replies []ota.Reply
		err := st.Update(func(tx ota.Tx) error {
			var err error
			replies, err = ota.Apply(tx, reports, fleetEnv())
			return err
		})
		if err != nil {
			return nil, err
		}
		if n := applied.Add(int64(len(reports))); want > 0 && n == int64(want) {
			close(done)
		}
		return replies, nil
	}
	return apply, &applied
}

func ingestSessionConfig(broker *mosquitto.Broker, id string) transport.Config {
	return transport.Config{URL: broker.URL(), ClientID: id, ConnectTimeout: 10 * time.Second}
}

// pahoSubscriber connects the bare subscriber. Its handler is paho's
// default publish handler, registered before the connection, so that the
// messages the broker sends right after accepting it are all counted.
func pahoSubscriber(b *testing.B, broker *mosquitto.Broker, id string, clean bool,
	h mqtt.MessageHandler) mqtt.Client {
	if h == nil {
		h = func(mqtt.Client, mqtt.Message) {}
	}
	return connectPaho(b, broker, id, clean, h)
}

func connectPaho(b *testing.B, broker *mosquitto.Broker, id string, clean bool,
	h mqtt.MessageHandler) mqtt.Client {
	b.Helper()
	o := mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID(id).
		SetProtocolVersion(4).SetCleanSession(clean).SetAutoReconnect(false).
		SetDefaultPublishHandler(h)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("connect %s to %s: %v", id, broker.URL(), tok.Error())
	}
	return c
}

// subscribeDevices subscribes c at QoS 1 to the device topics otactl
// receives.
func subscribeDevices(b *testing.B, c mqtt.Client) {
	b.Helper()
	filters := map[string]byte{}
	for _, f := range transport.Subscriptions() {
		filters[f] = 1
	}
	tok := c.SubscribeMultiple(filters, nil)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
}

// publishPipelined publishes msgs at QoS 1, in order, with up to
// publishWindow acknowledgements outstanding, and returns once the broker
// has them all.
func publishPipelined(b *testing.B, c mqtt.Client, msgs []fleetMsg) {
	b.Helper()
	toks := make([]mqtt.Token, 0, publishWindow)
	await := func(tok mqtt.Token) {
		if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
			b.Fatalf("publish: %v", tok.Error())
		}
	}
	for _, m := range msgs {
		if len(toks) == publishWindow {
			await(toks[0])
			toks = toks[1:]
		}
		toks = append(toks, c.Publish(m.topic, 1, false, m.payload))
	}
	for _, tok := range toks {
		await(tok)
	}
}

func waitFor(b *testing.B, ch <-chan struct{}, what string) {
	b.Helper()
	select {
	case <-ch:
	case <-time.After(ingestTimeout):
		b.Fatalf("waited %s for %s", ingestTimeout, what)
	}
}
