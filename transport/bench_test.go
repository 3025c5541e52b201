package transport

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
)

// benchMessages is the size of one ingest run: large enough that connection
// set-up is noise, small enough for a 2-core machine to run in seconds.
const benchMessages = 100_000

// BenchmarkIngest measures how fast device messages get through a local
// Mosquitto to (a) a bare paho subscriber that only counts and (b) a
// Session whose apply only counts, and reports both rates, so that the cost
// of the session's batching and acknowledgements shows next to the broker's
// own limit. Run it with:
//
//	go test ./transport -run '^$' -bench Ingest -benchtime 1x
//
// To measure the store as well, call ingestSession with an ApplyFunc that
// writes to it.
func BenchmarkIngest(b *testing.B) {
	broker := mosquitto.Start(b)
	msgs := ingestMessages(benchMessages)
	var paho, session time.Duration
	for b.Loop() {
		paho += ingestPaho(b, broker, msgs)
		session += ingestSession(b, broker, msgs, func([]ota.Report) ([]ota.Reply, error) {
			return nil, nil
		})
	}
	total := float64(len(msgs) * b.N)
	b.ReportMetric(total/paho.Seconds(), "paho-msgs/s")
	b.ReportMetric(total/session.Seconds(), "session-msgs/s")
	b.ReportMetric(session.Seconds()/paho.Seconds(), "session/paho")
}

// ingestMessages spreads n inform and progress reports over 1,000 devices.
func ingestMessages(n int) []rawMessage {
	msgs := make([]rawMessage, n)
	for i := range msgs {
		dk := fmt.Sprintf("dev-%d", i%1000)
		msgs[i] = progressMessage(dk, i)
		if i%4 == 0 {
			msgs[i] = rawMessage{informTopic("pk", dk), EncodeRequest(fmt.Sprint(i),
				MethodInform, map[string]string{"version": "1.0.0"})}
		}
	}
	return msgs
}

// publishPipelined publishes at QoS 1 with up to 1,000 acknowledgements
// outstanding, as DESIGN.md section 10 measured the broker.
func publishPipelined(tb testing.TB, c mqtt.Client, msgs []rawMessage) {
	const window = 1000
	toks := make([]mqtt.Token, 0, window)
	wait := func(tok mqtt.Token) {
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			tb.Fatalf("benchmark publish: %v", tok.Error())
		}
	}
	for _, m := range msgs {
		if len(toks) == window {
			wait(toks[0])
			toks = toks[1:]
		}
		toks = append(toks, c.Publish(m.topic, 1, false, m.payload))
	}
	for _, tok := range toks {
		wait(tok)
	}
}

// ingestPaho times msgs from the first publish until a plain QoS 1
// subscriber (paho's automatic acknowledgements) has counted them all.
func ingestPaho(b *testing.B, broker *mosquitto.Broker, msgs []rawMessage) time.Duration {
	b.Helper()
	var count atomic.Int64
	all := make(chan struct{})
	sub := rawClient(b, broker.URL())
	want := int64(len(msgs))
	tok := sub.SubscribeMultiple(subscriptionFilters(), func(mqtt.Client, mqtt.Message) {
		if count.Add(1) == want {
			close(all)
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatalf("subscribe: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	return timeIngest(b, broker, msgs, all)
}

// ingestSession times msgs from the first publish until a Session has
// applied them all with apply.
func ingestSession(b *testing.B, broker *mosquitto.Broker, msgs []rawMessage,
	apply ApplyFunc) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		measuring atomic.Bool
		count     atomic.Int64
		all       = make(chan struct{})
		want      = int64(len(msgs))
	)
	counting := func(reports []ota.Report) ([]ota.Reply, error) {
		replies, err := apply(reports)
		if err == nil && measuring.Load() && count.Add(int64(len(reports))) == want {
			close(all)
		}
		return replies, err
	}
	// One client id for every run, drained before timing, so that no
	// earlier run's session on the broker keeps collecting copies.
	cfg := Config{URL: broker.URL(), ClientID: "otactl-bench", ConnectTimeout: 5 * time.Second}
	s, err := Open(ctx, cfg, counting)
	if err != nil {
		b.Fatalf("Open() = %v", err)
	}
	defer s.Close()
	if err := s.Drain(ctx); err != nil {
		b.Fatalf("Drain() = %v", err)
	}
	measuring.Store(true)
	return timeIngest(b, broker, msgs, all)
}

func subscriptionFilters() map[string]byte {
	filters := map[string]byte{}
	for _, f := range Subscriptions() {
		filters[f] = 1
	}
	return filters
}

func timeIngest(b *testing.B, broker *mosquitto.Broker, msgs []rawMessage,
	all <-chan struct{}) time.Duration {
	b.Helper()
	pub := rawClient(b, broker.URL())
	defer pub.Disconnect(100)
	start := time.Now()
	publishPipelined(b, pub, msgs)
	select {
	case <-all:
	case <-time.After(5 * time.Minute):
		b.Fatalf("not every message arrived within 5 minutes")
	}
	return time.Since(start)
}
