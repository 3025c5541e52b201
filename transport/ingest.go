package transport

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/otactl/otactl/ota"
)

// Batching defaults: bbolt pays one disk sync per commit, so reports are
// applied up to five thousand at a time (DESIGN.md section 10: a thousand
// per commit was measured at 26k records/s; five thousand measured 35 %
// faster on otactl's own records), while a lone message
// waits at most a few milliseconds.
const (
	DefaultMaxBatch = 5000
	DefaultMaxDelay = 20 * time.Millisecond
	DefaultMaxIdle  = 2 * time.Millisecond
)

// replyFlushTimeout bounds how long Close waits for replies to reach the
// broker.
const replyFlushTimeout = 2 * time.Second

// ApplyFunc records a batch of reports, normally in one store write
// transaction, and returns the replies to send to devices. It is the
// caller's side of a Session.
//
// Contract: ApplyFunc is called from one goroutine, never concurrently with
// itself, with reports in the order the broker delivered them (Invalid,
// Dup and Retained ones included: recording them is the caller's decision).
// It returns nil only once the batch is durable: the session then
// acknowledges the messages, and the broker forgets them. On error nothing
// is acknowledged, the session stops, and the broker delivers the messages
// again, with DUP set, to the next session. ApplyFunc must not wait for the
// broker (no Push, Drain or Flush inside it): while it runs, the client
// receives nothing, acknowledgements included. Hand pushes to another
// goroutine instead.
type ApplyFunc func(reports []ota.Report) ([]ota.Reply, error)

// Option tunes a Session.
type Option func(*Session)

// WithMaxBatch sets the most reports per ApplyFunc call (DefaultMaxBatch).
func WithMaxBatch(n int) Option { return func(s *Session) { s.maxBatch = max(n, 1) } }

// WithMaxDelay sets how long the first report of a batch may wait for
// others (DefaultMaxDelay).
func WithMaxDelay(d time.Duration) Option { return func(s *Session) { s.maxDelay = d } }

// WithMaxIdle sets how long a batch waits for the next report before it is
// applied early (DefaultMaxIdle; zero turns it off). Brokers bound the unacknowledged messages
// they send a client (Mosquitto's max_inflight_messages is 20 by default);
// once that many are waiting, no more come until these are applied and
// acknowledged, and waiting out MaxDelay would cap ingest at a few hundred
// messages a second.
func WithMaxIdle(d time.Duration) Option { return func(s *Session) { s.maxIdle = d } }

// WithQueue sets how many received messages may wait for the apply loop
// (4 × MaxBatch). When it is full, delivery from the broker pauses.
func WithQueue(n int) Option { return func(s *Session) { s.queue = max(n, 1) } }

// Session is otactl's receiving side of the broker: a subscribing Client
// whose messages pass through one loop that applies them in batches and
// acknowledges them after each successful apply. A command uses it as:
//
//	s, err := transport.Open(ctx, cfg, apply) // connect and subscribe
//	defer s.Close()
//	err = s.Drain(ctx)                        // everything queued is applied
//	... act: s.PushAll(ctx, pushes, 100, markPushed) ...
//	err = s.Run(ctx)                          // agent and --wait: until ctx ends
//
// The apply loop runs from Open to Close, not only inside Drain and Run: a
// message arriving at any time is applied as it comes, so delivery never
// stalls waiting for the command (that would also stall the broker's
// acknowledgements of its pushes). After an ApplyFunc error the loop stops,
// Drain and Run return that error, and later messages are left
// unacknowledged for the next session.
type Session struct {
	client   *Client
	apply    ApplyFunc
	log      *slog.Logger
	maxBatch int
	maxDelay time.Duration
	maxIdle  time.Duration
	queue    int

	items     chan item
	stop      chan struct{} // closed by Close
	done      chan struct{} // closed when the loop has returned
	err       error         // why the loop stopped; read only after done is closed
	closeOnce sync.Once
}

// item is a received message or, when barrier is not nil, a Drain barrier:
// the loop closes it once everything queued before it is applied.
type item struct {
	msg     Message
	barrier chan struct{}
}

// Open connects with a persistent session (cfg.ClientID is required),
// subscribes, and starts the apply loop. Errors are those of Dial.
func Open(ctx context.Context, cfg Config, apply ApplyFunc, opts ...Option) (*Session, error) {
	s := &Session{
		apply:    apply,
		log:      cfg.Logger,
		maxBatch: DefaultMaxBatch,
		maxDelay: DefaultMaxDelay,
		maxIdle:  DefaultMaxIdle,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, o := range opts {
		o(s)
	}
	if s.queue == 0 {
		s.queue = 4 * s.maxBatch
	}
	if s.maxIdle <= 0 || s.maxIdle > s.maxDelay {
		s.maxIdle = s.maxDelay // an idle limit past MaxDelay never fires first
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.items = make(chan item, s.queue)

	c, err := newClient(cfg, s.enqueue)
	if err != nil {
		return nil, err
	}
	s.client = c
	// The loop must consume before the connection exists: the broker sends
	// queued messages right after accepting it, and a full queue would hold
	// up the SUBACK that start waits for.
	go s.loop()
	if err := c.start(ctx); err != nil {
		close(s.stop)
		<-s.done
		return nil, err
	}
	return s, nil
}

// enqueue is the client's Handler. It blocks while the queue is full, which
// pauses delivery: that is the back-pressure. Once the session is closing
// or its loop has stopped, messages are dropped unacknowledged, and the
// broker keeps them for the next session.
func (s *Session) enqueue(m Message) {
	select {
	case s.items <- item{msg: m}:
	case <-s.stop:
	case <-s.done:
	}
}

// Drain returns once every message the broker queued for the session before
// the call has been applied and acknowledged. ctx bounds the wait; its end
// gives a KindBroker error.
func (s *Session) Drain(ctx context.Context) error {
	// Stop waiting for the marker as soon as the loop fails: its error is
	// the one to report.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	err := s.client.Drain(ctx)
	if s.stopped() {
		return s.loopErr()
	}
	if err != nil {
		return err
	}
	// Every message before the marker is in the queue now; a barrier behind
	// them comes out of the loop once they are applied.
	barrier := make(chan struct{})
	select {
	case s.items <- item{barrier: barrier}:
	case <-s.done:
		return s.loopErr()
	case <-ctx.Done():
		return s.drainTimeout(ctx)
	}
	select {
	case <-barrier:
		return nil
	case <-s.done:
		return s.loopErr()
	case <-ctx.Done():
		return s.drainTimeout(ctx)
	}
}

func (s *Session) drainTimeout(ctx context.Context) error {
	return ota.Errorf(ota.KindBroker, "apply queued messages from broker %s: %w",
		s.client.url, ctx.Err())
}

// Run keeps applying messages until ctx ends, then returns nil; or until the
// apply loop stops, and returns its error.
func (s *Session) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-s.done:
		return s.loopErr()
	}
}

// Push sends one upgrade and waits for the broker's acknowledgement; see
// Client.Push.
func (s *Session) Push(ctx context.Context, p *ota.Push) error { return s.client.Push(ctx, p) }

// PushAll sends upgrades pipelined; see Client.PushAll.
func (s *Session) PushAll(ctx context.Context, pushes []*ota.Push, window int,
	sent func(*ota.Push)) error {
	return s.client.PushAll(ctx, pushes, window, sent)
}

// Close stops the loop once the batch being applied (if any) is done,
// waits briefly for replies to reach the broker, and disconnects. Messages
// received but not applied stay unacknowledged: the broker delivers them to
// the next session. Close is idempotent.
func (s *Session) Close() {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		ctx, cancel := context.WithTimeout(context.Background(), replyFlushTimeout)
		defer cancel()
		if err := s.client.Flush(ctx); err != nil {
			s.log.Warn("replies not confirmed by the broker", "err", err)
		}
		s.client.Close()
	})
}

func (s *Session) stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Session) loopErr() error {
	if s.err != nil {
		return s.err
	}
	return ota.Errorf(ota.KindInternal, "the MQTT session is closed")
}

// loop collects messages into batches and applies them until Close or an
// apply error.
func (s *Session) loop() {
	defer close(s.done)
	for {
		var first item
		select {
		case first = <-s.items:
		case <-s.stop:
			return
		}
		if first.barrier != nil {
			close(first.barrier) // nothing pending: everything before it is applied
			continue
		}
		batch, barrier, ok := s.collect(first.msg)
		if !ok {
			return
		}
		if err := s.flush(batch); err != nil {
			s.err = err
			return
		}
		if barrier != nil {
			close(barrier)
		}
	}
}

// collect gathers a batch that starts with first: it ends at MaxBatch
// messages, MaxDelay after first, MaxIdle after the latest message, or at a
// Drain barrier, which the caller closes after applying the batch. ok is
// false when Close interrupted it.
func (s *Session) collect(first Message) (batch []Message, barrier chan struct{}, ok bool) {
	batch = append(make([]Message, 0, min(s.maxBatch, s.queue)), first)
	delay := time.NewTimer(s.maxDelay)
	defer delay.Stop()
	idle := time.NewTimer(s.maxIdle)
	defer idle.Stop()
	for len(batch) < s.maxBatch {
		select {
		case it := <-s.items:
			if it.barrier != nil {
				return batch, it.barrier, true
			}
			batch = append(batch, it.msg)
			idle.Reset(s.maxIdle)
		case <-delay.C:
			return batch, nil, true
		case <-idle.C:
			return batch, nil, true
		case <-s.stop:
			return nil, nil, false
		}
	}
	return batch, nil, true
}

// flush applies one batch, sends its replies, then acknowledges it. Replies
// go first: if otactl dies between the two, the device gets its answer
// twice on redelivery, which is harmless, rather than never.
func (s *Session) flush(batch []Message) error {
	reports := make([]ota.Report, len(batch))
	for i, m := range batch {
		reports[i] = m.Report
	}
	replies, err := s.apply(reports)
	if err != nil {
		return fmt.Errorf("record %d device messages: %w", len(batch), err)
	}
	for _, r := range replies {
		if r.To == nil {
			continue
		}
		err := s.client.Reply(context.Background(), r.To, r.Code, r.Data, r.Message)
		if err != nil {
			s.log.Warn("reply not sent", "topic", r.To.Topic, "err", err)
		}
	}
	for _, m := range batch {
		m.Ack()
	}
	return nil
}
