package transport

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/otactl/otactl/ota"
)

// DefaultConnectTimeout bounds the first connection to the broker when
// Config.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

const (
	qos1 = 1
	// quiesce is how long Close lets acknowledgements already handed to paho
	// reach the broker before the connection goes.
	quiesce = 250 * time.Millisecond
	// maxReconnectInterval caps paho's back-off, so that an agent is back
	// within half a minute of a broker restart.
	maxReconnectInterval = 30 * time.Second
	// resubscribeTimeout bounds the resubscription after a reconnect, which
	// runs on paho's goroutine with no caller context.
	resubscribeTimeout = 30 * time.Second
	// subFailure is the SUBACK return code of a refused subscription.
	subFailure = 0x80
)

// Handler receives the device messages of a subscribing Client. It runs on
// paho's delivery goroutine, one message at a time in the order the broker
// sent them, and nothing else is received while it runs, not even the
// broker's acknowledgements of this client's own publishes: a Handler may
// block to slow delivery down, but must never wait for anything that waits
// for this client's acknowledgements (Push, Drain, Flush).
type Handler func(m Message)

// Message is one received device message. The broker keeps it, and sends it
// again with the DUP flag after a reconnect, until Ack is called: call Ack
// only once the report is committed to the state file.
type Message struct {
	Report ota.Report
	ack    func()
}

// Ack acknowledges the message to the broker. Calling it more than once,
// or after the connection it came on was lost, does nothing.
func (m Message) Ack() {
	if m.ack != nil {
		m.ack()
	}
}

// Client is an MQTT connection speaking the device protocol. A subscribing
// client (Dial with a Handler) holds otactl's persistent session: clean
// session off, QoS 1 subscriptions to the device topics, messages
// acknowledged only when the caller says so. A publish-only client (Dial
// with a nil Handler) has a clean session and subscribes to nothing; it is
// for commands that push while an agent holds the session.
//
// The methods of a Client are safe for concurrent use.
type Client struct {
	mc      mqtt.Client
	url     string // for messages: the password, if any, redacted
	log     *slog.Logger
	handler Handler
	marker  string // the topic on which Drain's markers come back

	connects  atomic.Int32
	closeOnce sync.Once

	mu      sync.Mutex
	waiters map[string]chan struct{} // Drain nonces waiting for their marker
	replies []mqtt.Token             // reply publishes not yet known to be written
	pruneAt int                      // len(replies) at which to prune finished ones
}

// Dial connects to the broker and, when h is not nil, subscribes to the
// device topics and the client's marker topic, waiting for the broker to
// confirm. h is registered before the connection so that nothing the broker
// queued is missed. Dial fails instead of retrying: a broker that cannot be
// reached or refuses the session gives an *ota.Error of KindBroker, a bad
// URL or TLS setting one of KindInvalid. Once connected, the client
// reconnects on its own and subscribes again each time.
func Dial(ctx context.Context, cfg Config, h Handler) (*Client, error) {
	c, err := newClient(cfg, h)
	if err != nil {
		return nil, err
	}
	if err := c.start(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// newClient validates cfg and builds the client without connecting, so
// that Session can start consuming before the first message can arrive.
func newClient(cfg Config, h Handler) (*Client, error) {
	u, err := brokerURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	tlsCfg, err := cfg.tlsConfig(u)
	if err != nil {
		return nil, err
	}
	if err := cfg.checkClientID(h != nil); err != nil {
		return nil, err
	}
	c := &Client{
		url:     u.Redacted(),
		log:     cfg.Logger,
		handler: h,
		marker:  "otactl/" + cfg.ClientID + "/marker",
		waiters: make(map[string]chan struct{}),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.mc = mqtt.NewClient(c.options(cfg, u, tlsCfg))
	return c, nil
}

func (c *Client) options(cfg Config, u *url.URL, tlsCfg *tls.Config) *mqtt.ClientOptions {
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	o := mqtt.NewClientOptions().
		AddBroker(u.String()).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetTLSConfig(tlsCfg).
		// An explicit 3.1.1 stops paho from retrying a refused CONNECT as
		// MQTT 3.1, whose answer would hide the broker's real reason.
		SetProtocolVersion(4).
		SetCleanSession(c.handler == nil).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetConnectTimeout(timeout).
		SetDialer(&net.Dialer{Timeout: timeout}).
		SetCustomOpenConnectionFn(openConn).
		SetWriteTimeout(timeout).
		SetConnectRetry(false).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(maxReconnectInterval).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn("lost connection to broker", "url", c.url, "err", err)
		}).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
			c.log.Info("reconnecting to broker", "url", c.url)
		})
	if c.handler != nil {
		o.SetDefaultPublishHandler(c.receive)
	}
	return o
}

// start makes the first connection and subscription.
func (c *Client) start(ctx context.Context) error {
	tok := c.mc.Connect()
	if err := waitToken(ctx, tok); err != nil {
		// A connection that completes after ctx gave up must not linger.
		go func() { <-tok.Done(); c.mc.Disconnect(0) }()
		return c.connectError(tok, err)
	}
	c.log.Debug("connected to broker", "url", c.url,
		"sessionPresent", tok.(*mqtt.ConnectToken).SessionPresent())
	if c.handler == nil {
		return nil
	}
	if err := c.subscribe(ctx); err != nil {
		c.mc.Disconnect(0)
		return err
	}
	return nil
}

func (c *Client) connectError(tok mqtt.Token, err error) error {
	ct, _ := tok.(*mqtt.ConnectToken)
	if ct != nil && tok.Error() != nil {
		switch rc := ct.ReturnCode(); rc {
		case packets.Accepted, packets.ErrNetworkError:
		default:
			return ota.Errorf(ota.KindBroker, "broker %s refused the session: %w", c.url, err).
				WithHint("check the username, password and client id for this broker")
		}
	}
	return ota.Errorf(ota.KindBroker, "cannot connect to broker %s: %w", c.url, err).
		WithHint("check --broker and that the broker is running and reachable")
}

// subscribe subscribes to the device topics and the marker topic at QoS 1
// and waits for the broker's SUBACK: a marker published before that could
// overtake the subscription and never come back.
func (c *Client) subscribe(ctx context.Context) error {
	filters := map[string]byte{c.marker: qos1}
	for _, f := range Subscriptions() {
		filters[f] = qos1
	}
	tok := c.mc.SubscribeMultiple(filters, nil)
	if err := waitToken(ctx, tok); err != nil {
		return ota.Errorf(ota.KindBroker, "subscribe to device topics on broker %s: %w",
			c.url, err)
	}
	for topic, granted := range tok.(*mqtt.SubscribeToken).Result() {
		switch {
		case granted == subFailure:
			return ota.Errorf(ota.KindBroker, "broker %s refused the subscription to %s",
				c.url, topic).WithHint("allow this client to subscribe in the broker's ACL")
		case granted < qos1:
			// Messages still arrive, but are not kept while otactl is away.
			c.log.Warn("broker granted QoS 0 only", "url", c.url, "topic", topic)
		}
	}
	return nil
}

// onConnect resubscribes after every reconnect: a broker that lost its
// sessions (no persistence, a failover) would otherwise send nothing more.
// The first connection is left to start, which waits for the SUBACK.
func (c *Client) onConnect(mqtt.Client) {
	if c.connects.Add(1) == 1 {
		return
	}
	c.log.Info("reconnected to broker", "url", c.url)
	if c.handler == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), resubscribeTimeout)
	defer cancel()
	if err := c.subscribe(ctx); err != nil {
		c.log.Error("resubscribe after reconnect", "url", c.url, "err", err)
		return
	}
	c.log.Info("resubscribed to device topics", "url", c.url)
}

// receive is paho's default publish handler: every message of a
// subscription arrives here, in order.
func (c *Client) receive(_ mqtt.Client, m mqtt.Message) {
	if m.Topic() == c.marker {
		m.Ack()
		c.markerArrived(string(m.Payload()))
		return
	}
	r := Parse(m.Topic(), m.Payload(), m.Duplicate(), m.Retained(), time.Now().UTC())
	if r.Invalid != "" {
		c.log.Debug("invalid device message", "topic", r.Topic, "reason", r.Invalid)
	}
	c.handler(Message{Report: r, ack: m.Ack})
}

func (c *Client) markerArrived(nonce string) {
	c.mu.Lock()
	ch := c.waiters[nonce]
	delete(c.waiters, nonce)
	c.mu.Unlock()
	// A marker nobody waits for is left over from an earlier run that
	// stopped before it came back; acknowledging it is all it needs.
	if ch != nil {
		close(ch)
	}
}

// Drain returns once the Handler has returned for every message the broker
// sent before Drain was called, including everything queued in the session
// while otactl was away. It publishes a unique marker to the client's own
// topic and waits for it to come back: the broker delivers in order, and
// paho hands messages to the Handler in order, so the marker's arrival means
// all before it were handled. The ctx deadline bounds the wait.
func (c *Client) Drain(ctx context.Context) error {
	if c.handler == nil {
		return ota.Errorf(ota.KindInternal, "drain on a publish-only client")
	}
	nonce := newNonce()
	back := make(chan struct{})
	c.mu.Lock()
	c.waiters[nonce] = back
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, nonce)
		c.mu.Unlock()
	}()

	tok := c.mc.Publish(c.marker, qos1, false, nonce)
	if err := waitToken(ctx, tok); err != nil {
		return ota.Errorf(ota.KindBroker, "publish the drain marker to broker %s: %w", c.url, err)
	}
	select {
	case <-back:
		return nil
	case <-ctx.Done():
		return ota.Errorf(ota.KindBroker,
			"receive queued messages from broker %s: the marker did not come back: %w",
			c.url, ctx.Err())
	}
}

func newNonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported systems
	return hex.EncodeToString(b[:])
}

// Push sends one upgrade command to its device and returns once the broker
// acknowledged it (QoS 1, never retained), so that the caller may mark the
// job pushed. The keys are validated first; an invalid one gives a
// KindInvalid error and nothing is sent. The envelope id is the push's ID,
// and params.jobId defaults to the push's JobID.
func (c *Client) Push(ctx context.Context, p *ota.Push) error {
	topic, payload, err := pushMessage(p)
	if err != nil {
		return err
	}
	if err := waitToken(ctx, c.mc.Publish(topic, qos1, false, payload)); err != nil {
		return pushError(c.url, p, err)
	}
	return nil
}

// PushAll sends pushes with up to window of them awaiting the broker's
// acknowledgement at once (at least 1), which is several times faster than
// Push in a loop. sent is called, on the caller's goroutine, for each push
// once the broker acknowledged it. A push with an invalid key is skipped
// and reported in the returned error; the first publish failure, or ctx
// ending, stops the sending and is returned too. Pushes for which sent was
// not called may or may not have reached the broker: send them again.
func (c *Client) PushAll(ctx context.Context, pushes []*ota.Push, window int,
	sent func(*ota.Push)) error {
	if window < 1 {
		window = 1
	}
	if sent == nil {
		sent = func(*ota.Push) {}
	}
	type pending struct {
		p   *ota.Push
		tok mqtt.Token
	}
	var (
		inflight []pending // in publish order; the broker acknowledges in that order
		invalid  []error
	)
	for _, p := range pushes {
		if err := ctx.Err(); err != nil {
			return joinErrors(pushError(c.url, p, err), invalid)
		}
		topic, payload, err := pushMessage(p)
		if err != nil {
			invalid = append(invalid, err)
			continue
		}
		if len(inflight) == window {
			head := inflight[0]
			if err := waitToken(ctx, head.tok); err != nil {
				return joinErrors(pushError(c.url, head.p, err), invalid)
			}
			sent(head.p)
			inflight = inflight[1:]
		}
		inflight = append(inflight, pending{p, c.mc.Publish(topic, qos1, false, payload)})
	}
	for _, head := range inflight {
		if err := waitToken(ctx, head.tok); err != nil {
			return joinErrors(pushError(c.url, head.p, err), invalid)
		}
		sent(head.p)
	}
	return joinErrors(nil, invalid)
}

// joinErrors puts the publish failure first, so that the error's kind is
// KindBroker whenever the broker failed.
func joinErrors(first error, rest []error) error {
	if first == nil && len(rest) == 0 {
		return nil
	}
	return errors.Join(append([]error{first}, rest...)...)
}

func pushMessage(p *ota.Push) (topic string, payload []byte, err error) {
	if err := ota.ValidateKey("product key", p.ProductKey); err != nil {
		return "", nil, fmt.Errorf("push %s: %w", p.ID, err)
	}
	if err := ota.ValidateKey("device key", p.DeviceKey); err != nil {
		return "", nil, fmt.Errorf("push %s: %w", p.ID, err)
	}
	params := p.Params
	if params.JobID == "" {
		params.JobID = p.JobID
	}
	return DeviceTopic(p.ProductKey, p.DeviceKey, SuffixUpgrade), EncodeUpgrade(p.ID, params), nil
}

func pushError(url string, p *ota.Push, err error) error {
	return ota.Errorf(ota.KindBroker, "push %s to device %s/%s via broker %s: %w",
		p.ID, p.ProductKey, p.DeviceKey, url, err)
}

// Reply answers a device request on its topic plus "_reply", echoing the
// request's id, at QoS 0. A reply is an acknowledgement a device can do
// without (it reports again on its next connect); at QoS 1 every reply would
// hold one of paho's 65,535 message ids until the broker's acknowledgement
// was read, and while the ingest loop applies a large backlog those ids ran
// out: replies were dropped and each publish scanned the whole id map. It
// does not wait: the publish is handed to paho and tracked, and Flush waits
// until every reply so far is written. A report that failed validation is
// never answered: Reply returns a KindInvalid error and sends nothing.
func (c *Client) Reply(ctx context.Context, to *ota.Report, code int, data any,
	message string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if to.Invalid != "" {
		return ota.Invalid("no reply to an invalid message on %q: %s", to.Topic, to.Invalid)
	}
	// The report's topic was validated by Parse; checking again costs little
	// and guards against a report built elsewhere.
	if _, _, _, err := SplitTopic(to.Topic); err != nil {
		return err
	}
	payload := EncodeReply(to.ID, code, data, message)
	tok := c.mc.Publish(ReplyTopic(to.Topic), 0, false, payload)

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.replies) >= c.pruneAt {
		// Pruning rescans every tracked reply, so it waits until their
		// number has doubled since the last pass.
		c.replies = pruneDone(c.replies)
		c.pruneAt = max(256, 2*len(c.replies))
	}
	c.replies = append(c.replies, tok)
	return nil
}

// Flush waits until every reply sent so far is written to the connection
// (replies go at QoS 0, so the broker acknowledges none), and returns the
// first failure among them.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	toks := c.replies
	c.replies = nil
	c.mu.Unlock()
	var first error
	for i, tok := range toks {
		err := waitToken(ctx, tok)
		if err != nil && ctx.Err() != nil {
			// Give the rest back, so a later Flush still waits for them.
			c.mu.Lock()
			c.replies = append(c.replies, toks[i:]...)
			c.mu.Unlock()
			return ota.Errorf(ota.KindBroker, "send replies via broker %s: %w", c.url, err)
		}
		if err != nil && first == nil {
			first = ota.Errorf(ota.KindBroker, "send a reply via broker %s: %w", c.url, err)
		}
	}
	return first
}

func pruneDone(toks []mqtt.Token) []mqtt.Token {
	kept := toks[:0]
	for _, t := range toks {
		select {
		case <-t.Done():
		default:
			kept = append(kept, t)
		}
	}
	return kept
}

// Close disconnects, giving acknowledgements already handed to paho a
// moment to reach the broker. The persistent session stays on the broker,
// which keeps queuing messages for the next run. Close is idempotent.
func (c *Client) Close() {
	c.closeOnce.Do(func() { c.mc.Disconnect(uint(quiesce / time.Millisecond)) })
}

// waitToken waits for a paho token or the end of ctx.
func waitToken(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
