package sim

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/otactl/otactl/transport"
)

const (
	// subscribeChunk is how many topics go in one SUBSCRIBE packet: small
	// enough for any broker's packet limit, large enough that 500 devices
	// subscribe in a handful of round trips.
	subscribeChunk = 100
	// ackTimeout bounds every wait for the broker, so that a broker that
	// stops answering stalls one device's step rather than the run.
	ackTimeout = 30 * time.Second
	// stopGrace is how long acknowledgements may still arrive once the run
	// ends.
	stopGrace = 200 * time.Millisecond
	// quiesce is how long Disconnect lets in-flight packets finish, in ms.
	quiesce = 250
)

// conn is one MQTT connection and the devices it carries. Its mutex guards
// the devices' mutable fields and its connect count.
type conn struct {
	f       *fleet
	index   int
	client  mqtt.Client
	devices []*device
	// byTopic finds a device by its upgrade topic, the only topic the
	// connection subscribes to.
	byTopic map[string]*device

	mu       sync.Mutex
	connects int

	ready     chan struct{} // closed once the first connect has been handled
	readyOnce sync.Once
}

func newConn(f *fleet, index int, devices []*device) *conn {
	c := &conn{f: f, index: index, devices: devices, ready: make(chan struct{}),
		byTopic: make(map[string]*device, len(devices))}
	for _, d := range devices {
		c.byTopic[c.topic(d, transport.SuffixUpgrade)] = d
	}
	return c
}

func (c *conn) connect(brokerTLS *tls.Config) error {
	o := c.f.opt
	opts := mqtt.NewClientOptions().
		AddBroker(o.Broker).
		SetClientID(fmt.Sprintf("otactl-sim-%s-%d", c.f.runID, c.index)).
		SetUsername(o.Username).
		SetPassword(o.Password).
		SetCleanSession(true).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetAutoReconnect(true).
		SetMaxReconnectInterval(10 * time.Second).
		// Routing by topic in one handler, set before connecting, instead of
		// a route per subscription: paho matches routes one by one, which
		// costs 500 comparisons a message on a full connection.
		SetDefaultPublishHandler(c.onMessage).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(c.onLost)
	if brokerTLS != nil {
		opts.SetTLSConfig(brokerTLS)
	}
	c.client = mqtt.NewClient(opts)
	tok := c.client.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return errors.New("no answer within 15s")
	}
	return tok.Error()
}

func (c *conn) disconnect() {
	if c.client != nil {
		c.client.Disconnect(quiesce)
	}
}

// onConnect runs on paho's goroutine after every connect. Clean sessions
// forget subscriptions, so the online devices subscribe again and, as real
// devices do, report their version again.
func (c *conn) onConnect(mqtt.Client) {
	c.f.work.run(func() {
		c.mu.Lock()
		c.connects++
		first := c.connects == 1
		c.mu.Unlock()
		if !first {
			c.f.stats.add(func(s *Summary) { s.Reconnects++ })
			c.f.log.printf("connection %d: reconnected", c.index)
		}
		spread := c.f.opt.ConnectSpread > 0
		if first && !spread {
			c.markOnline(c.devices)
		}
		c.bringOnline(c.onlineDevices())
		if first && spread {
			start := time.Now()
			c.f.work.start(func() { c.scheduleOnline(start) })
		}
		c.readyOnce.Do(func() { close(c.ready) })
	})
}

func (c *conn) onLost(_ mqtt.Client, err error) {
	c.f.log.printf("connection %d: lost (%v); reconnecting", c.index, err)
}

func (c *conn) markOnline(devs []*device) {
	c.mu.Lock()
	for _, d := range devs {
		d.online = true
	}
	c.mu.Unlock()
	c.f.stats.add(func(s *Summary) { s.Online += len(devs) })
}

func (c *conn) onlineDevices() []*device {
	c.mu.Lock()
	defer c.mu.Unlock()
	var devs []*device
	for _, d := range c.devices {
		if d.online {
			devs = append(devs, d)
		}
	}
	return devs
}

// scheduleOnline brings devices online at their seeded moments after start.
// One goroutine per connection sleeps until the next moment, so a fleet
// costs a timer per connection, not a goroutine per device.
func (c *conn) scheduleOnline(start time.Time) {
	pending := append([]*device(nil), c.devices...)
	sort.SliceStable(pending, func(i, j int) bool {
		return pending[i].onlineAt < pending[j].onlineAt
	})
	for len(pending) > 0 {
		if wait := time.Until(start.Add(pending[0].onlineAt)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.f.ctx.Done():
				t.Stop()
				return
			}
		}
		// Everyone whose moment has passed comes online in one batch, which
		// keeps subscriptions few when moments are close together.
		elapsed := time.Since(start)
		n := sort.Search(len(pending), func(i int) bool { return pending[i].onlineAt > elapsed })
		batch := pending[:n]
		pending = pending[n:]
		c.markOnline(batch)
		c.bringOnline(batch)
	}
}

// bringOnline subscribes the devices to their upgrade topics, waiting for
// the broker's acknowledgement because otactl pushes in answer to the
// version report that follows, then publishes the reports. When the
// connection is down it does nothing: the next onConnect covers them.
func (c *conn) bringOnline(devs []*device) {
	for lo := 0; lo < len(devs); lo += subscribeChunk {
		chunk := devs[lo:min(lo+subscribeChunk, len(devs))]
		filters := make(map[string]byte, len(chunk))
		for _, d := range chunk {
			filters[c.topic(d, transport.SuffixUpgrade)] = 1
		}
		if _, err := c.wait(c.client.SubscribeMultiple(filters, nil)); err != nil {
			if c.f.ctx.Err() == nil && c.client.IsConnectionOpen() {
				c.f.log.printf("connection %d: subscribe: %v", c.index, err)
			}
			return
		}
	}
	c.informAll(devs)
}

// informAll publishes every device's version report before waiting for any
// acknowledgement: waiting for each in turn would cap a connection at a few
// thousand reports a second (DESIGN.md section 10).
func (c *conn) informAll(devs []*device) {
	toks := make([]mqtt.Token, 0, len(devs))
	c.mu.Lock()
	for _, d := range devs {
		toks = append(toks, c.publishInform(d, d.version))
	}
	c.mu.Unlock()
	sent, _ := c.wait(toks...)
	c.f.stats.add(func(s *Summary) { s.InformsSent += sent })
}

// publishInform sends a version report. The caller holds c.mu, which keeps
// a report of the old version, sent on a reconnect, from overtaking the
// report of a version an upgrade just switched to.
func (c *conn) publishInform(d *device, version string) mqtt.Token {
	payload := transport.EncodeRequest(c.f.nextID(), transport.MethodInform,
		informParams{Version: version})
	return c.client.Publish(c.topic(d, transport.SuffixInform), 1, false, payload)
}

type informParams struct {
	Version string `json:"version"`
}

func (c *conn) topic(d *device, suffix string) string {
	return transport.DeviceTopic(c.f.opt.ProductKey, d.key, suffix)
}

// wait waits for the broker to acknowledge every token, for at most
// ackTimeout in all. It returns how many were acknowledged and the first
// failure. Once the run ends only a short grace remains, time for the
// acknowledgements already on their way, so that the summary counts what
// the broker really took.
func (c *conn) wait(toks ...mqtt.Token) (acked int, err error) {
	deadline := time.NewTimer(ackTimeout)
	defer deadline.Stop()
	ending := c.f.ctx.Done()
	for _, tok := range toks {
		select {
		case <-tok.Done():
		case <-ending:
			ending = nil
			deadline.Reset(stopGrace)
			select {
			case <-tok.Done():
			case <-deadline.C:
				return acked, c.f.ctx.Err()
			}
		case <-deadline.C:
			if ending == nil {
				return acked, c.f.ctx.Err()
			}
			return acked, fmt.Errorf("no acknowledgement within %v", ackTimeout)
		}
		if tok.Error() != nil {
			err = cmp.Or(err, tok.Error())
			continue
		}
		acked++
	}
	return acked, err
}
