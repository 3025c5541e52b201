package cmd

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
	"github.com/otactl/otactl/transport"
)

// drainTimeout bounds how long a command waits for the broker to hand over
// what it queued while otactl was away.
const drainTimeout = 60 * time.Second

// live is a command's connection to the fleet. On its own, a command holds
// the state file for its whole run, so that no other process uses the same
// MQTT client id, and records device messages through the persistent
// session as they arrive. Beside a live agent, which holds the receiving
// session, it opens the state file only for each short transaction, leaves
// receiving to the agent, and publishes its pushes with a client of its own.
type live struct {
	app      *App
	st       ota.Store          // the held state file, or short opens beside an agent
	held     *state.Store       // nil beside an agent
	sess     *transport.Session // the receiving session; nil beside an agent
	pub      transport.Pusher   // where pushes go
	agent    *ota.Lease         // the agent that receives for us, if any
	closePub func()             // closes the publish-only client beside an agent

	received, rejected atomic.Int64 // device messages this command received and applied

	flushMu sync.Mutex    // one outbox flush at a time
	kick    chan struct{} // a batch may have queued pushes
	stop    context.CancelFunc
	done    chan struct{}
}

// openLive opens the state file and the broker session, and records
// everything the broker queued for otactl since its last run. Beside a live
// agent it connects only to publish.
func (a *App) openLive() (*live, error) {
	st, err := a.openStore()
	if err != nil {
		return nil, err
	}
	var lease *ota.Lease
	if err := st.View(func(tx ota.Tx) error {
		lease, err = tx.Lease()
		return err
	}); err != nil {
		st.Close()
		return nil, err
	}
	if lease.Live(a.Now()) {
		st.Close()
		return a.openBesideAgent(lease)
	}
	l := &live{app: a, st: st, held: st, kick: make(chan struct{}, 1), done: make(chan struct{})}
	if l.sess, err = transport.Open(a.Context, a.brokerConfig(), l.apply); err != nil {
		st.Close()
		return nil, err
	}
	l.pub = l.sess
	ctx, cancel := context.WithTimeout(a.Context, drainTimeout)
	defer cancel()
	if err := l.sess.Drain(ctx); err != nil {
		l.sess.Close()
		st.Close()
		return nil, err
	}
	return l.start()
}

// openBesideAgent is openLive when an agent holds the receiving session.
func (a *App) openBesideAgent(lease *ota.Lease) (*live, error) {
	cfg := a.brokerConfig()
	cfg.ClientID = "" // never the agent's: a broker disconnects the older of two
	pub, err := transport.Dial(a.Context, cfg, nil)
	if err != nil {
		return nil, err
	}
	a.infof("agent %s is receiving device messages; following its records", lease.Holder)
	l := &live{app: a, st: a.shortStore(), pub: pub, closePub: pub.Close, agent: lease}
	if err := l.advance(a.Context); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *live) start() (*live, error) {
	bg, stop := context.WithCancel(l.app.Context)
	l.stop = stop
	go l.pushLoop(bg)
	if err := l.advance(l.app.Context); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (a *App) brokerConfig() transport.Config {
	return transport.Config{
		URL:                a.Settings.Broker,
		ClientID:           transport.ClientIDFor(a.Settings.StatePath),
		Username:           a.Settings.Username,
		Password:           a.Settings.Password,
		CAFile:             a.Settings.TLSCA,
		CertFile:           a.Settings.TLSCert,
		KeyFile:            a.Settings.TLSKey,
		InsecureSkipVerify: a.Settings.TLSInsecure,
		Logger:             a.Log,
	}
}

func (a *App) env() ota.Env {
	return ota.Env{Now: a.Now(), FileURL: a.fileURL}
}

func (l *live) env() ota.Env { return l.app.env() }

// apply records one batch of device messages in one transaction. It runs on
// the session's loop and must not wait for the broker: pushes the batch
// queued are sent by pushLoop.
func (l *live) apply(reports []ota.Report) ([]ota.Reply, error) {
	var replies []ota.Reply
	err := l.st.Update(func(tx ota.Tx) error {
		var err error
		replies, err = ota.Apply(tx, reports, l.env())
		return err
	})
	if err == nil {
		l.app.Log.Debug("recorded device messages", "count", len(reports), "replies", len(replies))
		l.received.Add(int64(len(reports)))
		for i := range reports {
			if reports[i].Invalid != "" {
				l.rejected.Add(1)
				l.app.Log.Debug("rejected device message", "topic", reports[i].Topic,
					"reason", reports[i].Invalid)
			}
		}
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return replies, err
}

func (l *live) pushLoop(ctx context.Context) {
	defer close(l.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
			if err := l.flush(ctx); err != nil {
				l.app.Log.Debug("flush outbox", "err", err)
			}
		}
	}
}

// flush sends every queued push and records the broker's acknowledgements
// (transport.FlushOutbox), so that a job counts as pushed only once the
// broker has it.
func (l *live) flush(ctx context.Context) error {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	if l.pub == nil {
		return nil // an agent between two sessions: the next tick sends them
	}
	return transport.FlushOutbox(ctx, l.st, l.pub, l.env)
}

// advance applies verification timeouts and the reconcile step of running
// batch tasks, then sends what they queued. It writes only when there is
// something to do, so that a command refused for bad input leaves the state
// file as it was.
func (l *live) advance(ctx context.Context) error {
	var due bool
	var running []string
	if err := l.view(func(tx ota.Tx) error {
		var err error
		if due, err = ota.HasOverdueJobs(tx, l.env()); err != nil {
			return err
		}
		running, err = ota.ActiveTasks(tx)
		return err
	}); err != nil {
		return err
	}
	if due {
		if err := l.update(func(tx ota.Tx) error { return ota.ExpireJobs(tx, l.env()) }); err != nil {
			return err
		}
	}
	for len(running) > 0 && ctx.Err() == nil {
		var pushed int
		if err := l.update(func(tx ota.Tx) (err error) {
			pushed, err = ota.ReconcileStep(tx, l.env(), l.stepLimit())
			return err
		}); err != nil {
			return err
		}
		if pushed < ota.DispatchStep || l.stop == nil {
			break
		}
		// The push loop sends this step's pushes while the next is taken.
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
	return l.flush(ctx)
}

// stepLimit is the bound of one reconcile step: ota.DispatchStep with a
// push loop to send each step's pushes while the next is taken, none
// without one.
func (l *live) stepLimit() int {
	if l.stop == nil {
		return 0
	}
	return ota.DispatchStep
}

func (l *live) update(fn func(ota.Tx) error) error { return l.st.Update(fn) }
func (l *live) view(fn func(ota.Tx) error) error   { return l.st.View(fn) }

// close stops the push loop, closes the session (messages received but not
// yet committed stay with the broker) and releases the state file.
func (l *live) close() {
	if l.stop != nil {
		l.stop()
		<-l.done
	}
	if l.sess != nil {
		l.sess.Close()
	}
	if l.closePub != nil {
		l.closePub()
	}
	if l.held != nil {
		l.held.Close()
	}
}
