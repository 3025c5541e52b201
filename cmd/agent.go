package cmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport"
)

// DefaultTick is how often the agent renews its lease and advances timeouts
// and rollouts.
const DefaultTick = 5 * time.Second

type agentOptions struct {
	tick       time.Duration
	logFormat  string
	serveFiles string
}

func newAgentCmd(app *App) *cobra.Command {
	var o agentOptions
	c := &cobra.Command{
		Use:   "agent [--tick <duration>] [--serve-files <host:port>] [--log-format text|json]",
		Short: "Keep the MQTT session and run the fleet continuously",
		Long: `Run until stopped: record every device message as it arrives, answer device
requests, push to devices the moment they report their version, and every
--tick renew the agent's lease, time out overdue jobs and advance batch
rollouts. Other otactl commands keep working beside it: they see its lease,
leave receiving to it and publish their pushes with a client of their own.

Logs go to stderr (text on a terminal, JSON otherwise or with --log-format
json). SIGINT or SIGTERM finishes the batch of messages in hand, commits it
and exits 0. A broker outage is retried with backoff, each attempt logged.
A lease whose heartbeat is older than three ticks is stale: a new agent
takes it over with a warning naming the old holder. See docs/agent.md.`,
		Example: `  $ otactl agent
  $ otactl agent --tick 2s --serve-files 0.0.0.0:8080 --log-format json`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return runAgent(app, o) },
	}
	c.Flags().DurationVar(&o.tick, "tick", DefaultTick, "how often to renew the lease and advance rollouts")
	c.Flags().StringVar(&o.logFormat, "log-format", "", "text or json (default: text on a terminal, else json)")
	_ = c.RegisterFlagCompletionFunc("log-format", oneOf("text", "json"))
	c.Flags().StringVar(&o.serveFiles, "serve-files", "", "also serve stored firmware files on `host:port`")
	return c
}

// agent is the state of a running agent.
type agent struct {
	app *App
	log *slog.Logger
	me  *ota.Lease
	l   *live
}

func runAgent(app *App, o agentOptions) error {
	if o.tick < 100*time.Millisecond {
		return ota.Invalid("--tick %s is too short; use 100ms or more", o.tick)
	}
	if o.serveFiles != "" {
		if _, _, err := net.SplitHostPort(o.serveFiles); err != nil {
			return ota.Invalid("--serve-files %q is not host:port: %v", o.serveFiles, err)
		}
	}
	log, err := agentLogger(app, o.logFormat)
	if err != nil {
		return err
	}
	app.Log = log // the session's connection events and per-batch traces too
	host, _ := os.Hostname()
	me := &ota.Lease{Holder: fmt.Sprintf("%s:%d", host, os.Getpid()), Host: host, PID: os.Getpid(),
		Tick: ota.Duration(o.tick)}
	ag := &agent{app: app, log: log, me: me,
		l: &live{app: app, st: app.shortStore(), kick: make(chan struct{}, 1)}}
	if err := ag.acquire(); err != nil {
		return err
	}
	defer ag.release()
	ctx := app.Context
	if o.serveFiles != "" {
		srv, err := startFileServer(app, o.serveFiles, log)
		if err != nil {
			return err
		}
		defer srv.Shutdown(context.Background())
	}
	for ctx.Err() == nil {
		if err := ag.session(ctx, o.tick); err != nil {
			if ota.KindOf(err) == ota.KindRefused { // lost the lease
				return err
			}
			log.Error("session ended; starting again", "err", err)
			sleepCtx(ctx, o.tick)
		}
	}
	log.Info("stopped", "holder", me.Holder)
	return nil
}

func agentLogger(app *App, format string) (*slog.Logger, error) {
	switch format {
	case "":
		if app.IO.ErrTTY {
			format = "text"
		} else {
			format = "json"
		}
	case "text", "json":
	default:
		return nil, ota.Invalid("--log-format %q is not text or json", format)
	}
	level := slog.LevelInfo
	if app.Settings.Debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(app.IO.Err, opts)), nil
	}
	return slog.New(slog.NewTextHandler(app.IO.Err, opts)), nil
}

// acquire takes the lease, retrying while another process holds the state
// file, and warns when it takes over a stale one.
func (ag *agent) acquire() error {
	for {
		var stale *ota.Lease
		err := ag.l.st.Update(func(tx ota.Tx) error {
			var err error
			stale, err = ota.AcquireLease(tx, ag.me, ag.app.Now())
			return err
		})
		switch {
		case err == nil:
			if stale != nil {
				ag.log.Warn("took over a stale lease", "oldHolder", stale.Holder,
					"lastHeartbeat", stale.Heartbeat.UTC().Format(time.RFC3339))
			}
			ag.log.Info("lease acquired", "holder", ag.me.Holder, "state", ag.app.Settings.StatePath)
			return nil
		case ota.KindOf(err) != ota.KindState:
			return err
		}
		ag.log.Warn("state file busy; retrying", "err", err)
		if !sleepCtx(ag.app.Context, time.Second) {
			return ota.Errorf(ota.KindState, "interrupted while waiting for the state file")
		}
	}
}

func (ag *agent) release() {
	err := ag.l.st.Update(func(tx ota.Tx) error { return ota.ReleaseLease(tx, ag.me) })
	if err != nil {
		ag.log.Error("release lease", "err", err)
	}
}

// session connects, with backoff while the broker is unreachable, and runs
// the receiving session and the tick until ctx ends or the session fails.
func (ag *agent) session(ctx context.Context, tick time.Duration) error {
	sess, err := ag.connect(ctx)
	if err != nil || sess == nil {
		return err
	}
	ag.l.sess, ag.l.pub = sess, sess
	pctx, stopPushes := context.WithCancel(ctx)
	ag.l.done = make(chan struct{})
	go ag.l.pushLoop(pctx)
	defer func() {
		stopPushes()
		<-ag.l.done
		sess.Close() // the batch in hand is committed; the rest stays with the broker
		ag.l.sess, ag.l.pub = nil, nil
	}()
	ag.log.Info("connected", "broker", ag.app.Settings.Broker)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	runErr := make(chan error, 1)
	go func() { runErr <- sess.Run(ctx) }()
	for {
		if err := ag.beat(ctx); err != nil {
			return err
		}
		select {
		case err := <-runErr:
			return err
		case <-ticker.C:
		}
	}
}

func (ag *agent) connect(ctx context.Context) (*transport.Session, error) {
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		// The session's own batching: brokers hold back what they send a
		// client while its window of unacknowledged messages is full (20 by
		// default in Mosquitto), so waiting longer to commit would only make
		// a burst overflow the broker's queue.
		sess, err := transport.Open(ctx, ag.app.brokerConfig(), ag.l.apply)
		if err == nil {
			return sess, nil
		}
		if ota.KindOf(err) != ota.KindBroker {
			return nil, err
		}
		ag.log.Warn("broker unreachable; retrying", "attempt", attempt, "in", backoff.String(), "err", err)
		if !sleepCtx(ctx, backoff) {
			return nil, nil
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// beat renews the lease, applies timeouts and advances rollouts, then sends
// what they queued.
func (ag *agent) beat(ctx context.Context) error {
	if ctx.Err() != nil {
		return nil
	}
	env := ag.app.env()
	err := ag.l.st.Update(func(tx ota.Tx) error {
		if err := ota.RenewLease(tx, ag.me, env.Now); err != nil {
			return err
		}
		if err := ota.ExpireJobs(tx, env); err != nil {
			return err
		}
		return ota.ReconcileTasks(tx, env)
	})
	if ota.KindOf(err) == ota.KindRefused {
		ag.log.Error("lease lost", "err", err)
		return err
	}
	if err != nil {
		ag.log.Warn("tick skipped", "err", err)
		return nil
	}
	if err := ag.l.flush(ctx); err != nil {
		ag.log.Warn("pushes not all sent; retrying next tick", "err", err)
	}
	return nil
}

// sleepCtx waits d or until ctx ends, reporting whether the wait was full.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// startFileServer serves the stored firmware files on addr in the
// background.
func startFileServer(app *App, addr string, log *slog.Logger) (*http.Server, error) {
	srv, ln, err := newFileServer(app, addr, log)
	if err != nil {
		return nil, err
	}
	go srv.Serve(ln)
	log.Info("serving firmware files", "addr", ln.Addr().String())
	return srv, nil
}
