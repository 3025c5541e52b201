package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
)

// outboxState is a real state file whose outbox holds n upgrade commands,
// one per job To be upgraded, and one stale command whose job finished.
func outboxState(t *testing.T, n int) *state.Store {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Update(func(tx ota.Tx) error {
		for i := 1; i <= n+1; i++ {
			j := &ota.Job{ID: fmt.Sprintf("job-%d", i), FirmwareID: "fw-1", ProductKey: "pk",
				DeviceKey: fmt.Sprintf("dev-%d", i), TargetVersion: "2.0", Status: ota.JobToBeUpgraded,
				PushID: fmt.Sprintf("push-%d", i)}
			if i == n+1 {
				j.Status = ota.JobSucceeded // its command is stale
			}
			if err := tx.PutJob(j); err != nil {
				return err
			}
			if err := tx.PutPush(&ota.Push{ID: j.PushID, JobID: j.ID, ProductKey: "pk",
				DeviceKey: j.DeviceKey, Params: ota.UpgradeParams{Version: "2.0"}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// outboxReceiver counts the upgrade commands devices receive, by push ID.
func outboxReceiver(t *testing.T, b *mosquitto.Broker) func() map[string]int {
	var mu sync.Mutex
	got := map[string]int{}
	dev := rawClient(t, b.URL())
	tok := dev.Subscribe(DeviceTopic("pk", "+", SuffixUpgrade), 1, func(_ mqtt.Client, m mqtt.Message) {
		var req struct{ ID string }
		json.Unmarshal(m.Payload(), &req)
		mu.Lock()
		got[req.ID]++
		mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device subscribe: %v", tok.Error())
	}
	return func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := make(map[string]int, len(got))
		for k, v := range got {
			out[k] = v
		}
		return out
	}
}

// outboxAfter reads which jobs count as pushed and which commands are left.
func outboxAfter(t *testing.T, st *state.Store, n int) (pushed map[string]bool, left map[string]bool) {
	t.Helper()
	pushed, left = map[string]bool{}, map[string]bool{}
	err := st.View(func(tx ota.Tx) error {
		for i := 1; i <= n; i++ {
			j, err := tx.Job(fmt.Sprintf("job-%d", i))
			if err != nil {
				return err
			}
			if !j.PushedAt.IsZero() {
				pushed[j.ID] = true
			}
		}
		return tx.EachPush(func(p *ota.Push) error { left[p.JobID] = true; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return pushed, left
}

// Every command of an outbox larger than one read is sent once and
// recorded as pushed; the stale one is dropped unsent; the outbox ends
// empty.
func TestFlushOutboxSendsAndRecordsEverything(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 60*time.Second)
	n := OutboxChunk + 1500
	st := outboxState(t, n)
	received := outboxReceiver(t, b)
	c, err := Dial(ctx, Config{URL: b.URL(), ConnectTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	if err := FlushOutbox(ctx, st, c, func() ota.Env { return ota.Env{Now: time.Now()} }); err != nil {
		t.Fatalf("FlushOutbox() = %v", err)
	}
	pushed, left := outboxAfter(t, st, n)
	if len(pushed) != n || len(left) != 0 {
		t.Errorf("after FlushOutbox: %d of %d jobs pushed, %d commands left; want all pushed, none left",
			len(pushed), n, len(left))
	}
	waitFor(t, 20*time.Second, "devices to receive every command", func() bool {
		return len(received()) >= n
	})
	got := received()
	for id, count := range got {
		if count != 1 {
			t.Errorf("command %s received %d times, want once", id, count)
		}
	}
	if got[fmt.Sprintf("push-%d", n+1)] != 0 || len(got) != n {
		t.Errorf("devices received %d distinct commands, stale one included: %v; want the %d live ones",
			len(got), got[fmt.Sprintf("push-%d", n+1)] != 0, n)
	}
}

// cancelAfter is a Pusher that ends the sending once k pushes were
// acknowledged, as a command interrupted part way would.
type cancelAfter struct {
	p      Pusher
	k      int
	cancel context.CancelFunc
}

func (c *cancelAfter) PushAll(ctx context.Context, pushes []*ota.Push, window int, sent func(*ota.Push)) error {
	n := 0
	return c.p.PushAll(ctx, pushes, window, func(p *ota.Push) {
		sent(p)
		if n++; n == c.k {
			c.cancel()
		}
	})
}

// Sending that stops part way leaves every job either recorded as pushed
// with its command gone, or unrecorded with its command still queued:
// nothing lost, nothing counted that the broker did not acknowledge.
func TestFlushOutboxInterrupted(t *testing.T) {
	b := mosquitto.Start(t)
	ctx := testContext(t, 60*time.Second)
	n := 3000
	st := outboxState(t, n)
	c, err := Dial(ctx, Config{URL: b.URL(), ConnectTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	short, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &cancelAfter{p: c, k: 1000, cancel: cancel}
	err = FlushOutbox(short, st, p, func() ota.Env { return ota.Env{Now: time.Now()} })
	if err == nil {
		t.Fatal("FlushOutbox() canceled part way = nil error, want the cancellation")
	}
	pushed, left := outboxAfter(t, st, n)
	if len(pushed) < 1000 || len(pushed) == n {
		t.Errorf("%d jobs recorded as pushed, want at least the 1000 acknowledged and not all %d",
			len(pushed), n)
	}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("job-%d", i)
		if pushed[id] == left[id] {
			t.Fatalf("%s: recorded as pushed %v, command still queued %v; want exactly one",
				id, pushed[id], left[id])
		}
	}
}
