package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/cmd"
	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
	"github.com/otactl/otactl/transport"
)

// batchPushTimeout bounds a whole rollout's pushing; a healthy one takes
// seconds.
const batchPushTimeout = 5 * time.Minute

// batchPushPhases is where otactl's time goes while it pushes a whole task.
type batchPushPhases struct {
	// reconcile is the reconcile steps: every job dispatched, its push
	// queued, while the outbox is sent beside them.
	reconcile time.Duration
	// reconcileCommit is the part of reconcile spent committing.
	reconcileCommit time.Duration
	// flush is what is left of transport.FlushOutbox after the last step:
	// publishing and recording the acknowledgements until the outbox is
	// empty.
	flush time.Duration
	wall  time.Duration // from the first step to an empty outbox
}

func (p batchPushPhases) total() time.Duration { return p.wall }

func (p *batchPushPhases) add(q batchPushPhases) {
	p.reconcile += q.reconcile
	p.reconcileCommit += q.reconcileCommit
	p.flush += q.flush
	p.wall += q.wall
}

// BenchmarkBatchPush is the first measurement: pushing a batch
// upgrade to 100,000 devices with no rate and no concurrency limit,
// against a bare paho publisher sending the same 100,000 messages at QoS 1
// with the same window of unacknowledged publishes (transport.PushWindow), on one broker in
// the same run. Nobody subscribes to the device topics: the broker
// acknowledges each publish and drops it, alike for both.
//
// otactl's side is measured twice, each on its own copy of a state file
// that holds the fleet and a verified firmware:
//
//   - loop: the task is created first (untimed); the clock runs from the
//     first reconcile step until the outbox is empty. As in cmd, each step
//     (ota.ReconcileStep) dispatches ota.DispatchStep jobs while a flusher
//     sends the pushes of the steps before it (transport.FlushOutbox).
//   - command: `otactl batch-upgrade FW --all --max-concurrent 0`, run
//     in-process through cmd.Main, timed whole: opening the state file
//     and the session, planning and creating the task, and pushing.
//
// The target is loop/paho at 0.5 or more. Run:
//
//	go test ./bench -run '^$' -bench BatchPush -benchtime 1x -count 5
func BenchmarkBatchPush(b *testing.B) {
	dir := b.TempDir()
	template := filepath.Join(dir, "template.db")
	fwID := seedBatchState(b, template, writeBatchImage(b, dir), batchDevices, batchDeviceKey)
	broker := mosquitto.Start(b)
	var paho, command time.Duration
	var loop batchPushPhases
	n := 0
	file := func(kind string) string { return filepath.Join(dir, fmt.Sprintf("%s-%d.db", kind, n)) }
	for b.Loop() {
		n++
		msgs := batchTaskPushes(b, template, file("msgs"), fwID)
		paho += bareBatchPublish(b, broker, msgs)
		loop.add(batchPushLoop(b, broker, template, file("loop"), fwID))
		command += batchPushCommand(b, broker, template, file("cmd"), fwID)
	}
	perRun := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	pushes := float64(batchDevices * n)
	b.ReportMetric(pushes/paho.Seconds(), "paho-msgs/s")
	b.ReportMetric(pushes/loop.total().Seconds(), "loop-msgs/s")
	b.ReportMetric(pushes/command.Seconds(), "command-msgs/s")
	b.ReportMetric(paho.Seconds()/loop.total().Seconds(), "loop/paho")
	b.ReportMetric(paho.Seconds()/command.Seconds(), "command/paho")
	b.ReportMetric(perRun(loop.reconcile), "reconcile-s")
	b.ReportMetric(perRun(loop.reconcileCommit), "reconcile-commit-s")
	b.ReportMetric(perRun(loop.flush), "flush-s")
}

// reconcileBatch is one reconcile step, as cmd's advance runs it.
func reconcileBatch(tx ota.Tx) error { return ota.ReconcileTasks(tx, batchEnv()) }

// batchPushMsg is one publish of the bare side.
type batchPushMsg struct {
	topic   string
	payload []byte
}

// batchTaskPushes creates the task on a copy of the template, dispatches
// it, and returns the upgrade commands otactl would publish, byte for byte,
// for the bare publisher to send.
func batchTaskPushes(tb testing.TB, template, path, fwID string) []batchPushMsg {
	tb.Helper()
	copyBatchState(tb, template, path)
	st := openBatchState(tb, path)
	defer st.Close()
	createBatchTask(tb, st, batchSpec(fwID, 0))
	if err := st.Update(reconcileBatch); err != nil {
		tb.Fatalf("ReconcileTasks() = %v", err)
	}
	msgs := make([]batchPushMsg, 0, batchDevices)
	err := st.View(func(tx ota.Tx) error {
		return tx.EachPush(func(p *ota.Push) error {
			params := p.Params
			if params.JobID == "" {
				params.JobID = p.JobID
			}
			msgs = append(msgs, batchPushMsg{
				topic:   transport.DeviceTopic(p.ProductKey, p.DeviceKey, transport.SuffixUpgrade),
				payload: transport.EncodeUpgrade(p.ID, params),
			})
			return nil
		})
	})
	if err != nil || len(msgs) != batchDevices {
		tb.Fatalf("outbox after dispatch: %d pushes, err %v; want %d", len(msgs), err, batchDevices)
	}
	return msgs
}

// bareBatchPublish times a paho client that publishes msgs at QoS 1 with up to
// transport.PushWindow unacknowledged, from the first publish until the broker
// acknowledged the last.
func bareBatchPublish(tb testing.TB, broker *mosquitto.Broker,
	msgs []batchPushMsg) time.Duration {
	tb.Helper()
	o := mqtt.NewClientOptions().AddBroker(broker.URL()).SetClientID("bare-pusher").
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false)
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("connect the bare publisher to %s: %v", broker.URL(), tok.Error())
	}
	defer c.Disconnect(100)
	await := func(tok mqtt.Token) {
		if !tok.WaitTimeout(time.Minute) || tok.Error() != nil {
			tb.Fatalf("bare publish: %v", tok.Error())
		}
	}
	window := make([]mqtt.Token, 0, transport.PushWindow)
	start := time.Now()
	for _, m := range msgs {
		if len(window) == transport.PushWindow {
			await(window[0])
			window = window[1:]
		}
		window = append(window, c.Publish(m.topic, 1, false, m.payload))
	}
	for _, tok := range window {
		await(tok)
	}
	return time.Since(start)
}

// batchPushLoop creates the task on a copy of the template (untimed), then
// times what cmd does next: reconcile steps of ota.DispatchStep pushes, a
// flusher sending each step's pushes while the next is taken, then outbox
// flushes until nothing is left to send.
func batchPushLoop(tb testing.TB, broker *mosquitto.Broker, template, path,
	fwID string) batchPushPhases {
	tb.Helper()
	copyBatchState(tb, template, path)
	st := openBatchState(tb, path)
	defer st.Close()
	task := createBatchTask(tb, st, batchSpec(fwID, 0))

	ctx, cancel := context.WithTimeout(context.Background(), batchPushTimeout)
	defer cancel()
	sess := openBatchSession(tb, ctx, broker, st, path)
	defer sess.Close()

	var mu sync.Mutex // one flush at a time, as cmd's flushMu
	flush := func() error {
		mu.Lock()
		defer mu.Unlock()
		return transport.FlushOutbox(ctx, st, sess, batchEnv)
	}
	kick, flusherDone := make(chan struct{}, 1), make(chan error, 1)
	go func() {
		var err error
		for range kick {
			err = errors.Join(err, flush())
		}
		flusherDone <- err
	}()

	var ph batchPushPhases
	start := time.Now()
	for {
		var pushed int
		var fnDone time.Time
		stepStart := time.Now()
		if err := st.Update(func(tx ota.Tx) (err error) {
			defer func() { fnDone = time.Now() }()
			pushed, err = ota.ReconcileStep(tx, batchEnv(), ota.DispatchStep)
			return err
		}); err != nil {
			tb.Fatalf("ReconcileStep() = %v", err)
		}
		ph.reconcile += time.Since(stepStart)
		ph.reconcileCommit += time.Since(fnDone)
		if pushed < ota.DispatchStep {
			break
		}
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	close(kick)
	tail := time.Now()
	if err := errors.Join(flush(), <-flusherDone); err != nil {
		tb.Fatalf("flush the outbox: %v", err)
	}
	ph.flush = time.Since(tail)
	ph.wall = time.Since(start)
	checkBatchPushed(tb, st, task.ID)
	return ph
}

// openBatchSession opens otactl's session for the state file as cmd does,
// recording device messages (there are none here) with ota.Apply.
func openBatchSession(tb testing.TB, ctx context.Context, broker *mosquitto.Broker,
	st *state.Store, path string) *transport.Session {
	tb.Helper()
	cfg := transport.Config{URL: broker.URL(), ClientID: transport.ClientIDFor(path),
		ConnectTimeout: 10 * time.Second}
	sess, err := transport.Open(ctx, cfg, func(reports []ota.Report) ([]ota.Reply, error) {
		var replies []ota.Reply
		err := st.Update(func(tx ota.Tx) error {
			var err error
			replies, err = ota.Apply(tx, reports, batchEnv())
			return err
		})
		return replies, err
	})
	if err != nil {
		tb.Fatalf("transport.Open() = %v", err)
	}
	if err := sess.Drain(ctx); err != nil {
		sess.Close()
		tb.Fatalf("Drain() = %v", err)
	}
	return sess
}

// checkBatchPushed fails unless every job of the task is pushed and the outbox
// is empty.
func checkBatchPushed(tb testing.TB, st *state.Store, taskID string) {
	tb.Helper()
	var t *ota.Task
	left := 0
	err := st.View(func(tx ota.Tx) error {
		var err error
		if t, err = tx.Task(taskID); err != nil {
			return err
		}
		return tx.EachPush(func(*ota.Push) error { left++; return nil })
	})
	if err != nil || t == nil || t.Counts.Pushed != batchDevices || t.Counts.Queued != 0 ||
		t.Counts.Planned != 0 || left != 0 {
		tb.Fatalf("after pushing: task %+v, %d pushes left, err %v; want %d pushed, none left",
			t, left, err, batchDevices)
	}
}

// batchPushCommand runs batch-upgrade in-process on a copy of the template and
// times it whole.
func batchPushCommand(tb testing.TB, broker *mosquitto.Broker, template, path,
	fwID string) time.Duration {
	tb.Helper()
	copyBatchState(tb, template, path)
	var stdout, stderr bytes.Buffer
	streams := &cmd.IO{In: &bytes.Buffer{}, Out: &stdout, Err: &stderr}
	args := []string{"--state", path, "--broker", broker.URL(), "--json",
		"batch-upgrade", fwID, "--all", "--max-concurrent", "0"}
	start := time.Now()
	code := cmd.Main(args, streams)
	took := time.Since(start)
	if code != 0 {
		tb.Fatalf("otactl %v: exit %d\nstdout: %s\nstderr: %s", args, code, &stdout, &stderr)
	}
	st := openBatchState(tb, path)
	defer st.Close()
	var taskID string
	if err := st.View(func(tx ota.Tx) error {
		return tx.EachTask(func(t *ota.Task) error { taskID = t.ID; return nil })
	}); err != nil {
		tb.Fatal(err)
	}
	checkBatchPushed(tb, st, taskID)
	return took
}
