package transport

import (
	"context"
	"errors"
	"sync"

	"github.com/otactl/otactl/ota"
)

// PushWindow is how many pushes may await the broker's acknowledgement at
// once: pipelining is five times faster than waiting for each (DESIGN.md 10).
const PushWindow = 256

// OutboxChunk is how many outbox entries one round of FlushOutbox reads, so
// that a rollout without limits does not hold its whole outbox in memory.
const OutboxChunk = 5000

// Pusher sends upgrade commands pipelined: a Session, or a publish-only
// Client beside an agent.
type Pusher interface {
	PushAll(ctx context.Context, pushes []*ota.Push, window int, sent func(*ota.Push)) error
}

// FlushOutbox sends every upgrade command waiting in st's outbox through p
// and records each one the broker acknowledged (ota.MarkPushed), so that a
// job counts as pushed only once the broker has its command. Stale entries
// (ota.PendingPushes) are dropped unsent. env gives the clock of each
// recording.
//
// The recording runs beside the sending: acknowledgements collect while a
// write transaction records the previous ones, and each transaction takes
// all that collected, so a long rollout pays for its commits while the
// broker works instead of after it. A chunk is fully recorded before the
// next is read, so no command is read twice. Recording failures and the
// first send failure are returned; what was acknowledged before a send
// failure is still recorded.
func FlushOutbox(ctx context.Context, st ota.Store, p Pusher, env func() ota.Env) error {
	for {
		var send, stale []*ota.Push
		if err := st.View(func(tx ota.Tx) error {
			var err error
			send, stale, err = ota.PendingPushes(tx, OutboxChunk)
			return err
		}); err != nil {
			return err
		}
		if len(stale) > 0 {
			if err := st.Update(func(tx ota.Tx) error { return ota.DropStalePushes(tx, stale) }); err != nil {
				return err
			}
		}
		if len(send) == 0 {
			return nil
		}
		if err := sendRecording(ctx, st, p, send, env); err != nil {
			return err
		}
		if len(send) < OutboxChunk {
			return nil
		}
	}
}

// sendRecording pushes one chunk while a ackRecorder goroutine marks the
// acknowledged pushes in batches.
func sendRecording(ctx context.Context, st ota.Store, p Pusher, pushes []*ota.Push,
	env func() ota.Env) error {
	r := &ackRecorder{st: st, env: env}
	r.cond.L = &r.mu
	done := make(chan error, 1)
	go func() { done <- r.run() }()
	err := p.PushAll(ctx, pushes, PushWindow, r.add)
	r.close()
	return errors.Join(err, <-done)
}

// ackRecorder marks acknowledged pushes in write transactions of whatever has
// collected since the last one.
type ackRecorder struct {
	st  ota.Store
	env func() ota.Env

	mu      sync.Mutex
	cond    sync.Cond
	acked   []*ota.Push
	closed  bool
	failed  bool // a recording failed: later acknowledgements are not recorded
	scratch []*ota.Push
}

func (r *ackRecorder) add(p *ota.Push) {
	r.mu.Lock()
	if !r.failed {
		r.acked = append(r.acked, p)
		r.cond.Signal()
	}
	r.mu.Unlock()
}

func (r *ackRecorder) close() {
	r.mu.Lock()
	r.closed = true
	r.cond.Signal()
	r.mu.Unlock()
}

// run records until closed and nothing is left, or a recording fails. A
// failed recording leaves its pushes in the outbox, and the pushes after
// it too: they are sent again later, which devices take as a repeated
// command for the job they already have.
func (r *ackRecorder) run() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		for len(r.acked) == 0 && !r.closed {
			r.cond.Wait()
		}
		if len(r.acked) == 0 {
			return nil
		}
		batch := r.acked
		r.acked = r.scratch[:0]
		r.mu.Unlock()
		env := r.env()
		err := r.st.Update(func(tx ota.Tx) error {
			for _, p := range batch {
				if err := ota.MarkPushed(tx, p, env); err != nil {
					return err
				}
			}
			return nil
		})
		clear(batch)
		r.mu.Lock()
		r.scratch = batch
		if err != nil {
			r.failed = true
			r.acked = nil
			return err
		}
	}
}
