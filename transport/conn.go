package transport

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/net/proxy"
)

// A session working through a backlog receives a message, acknowledges it
// and replies to it: three MQTT packets of about 100 bytes each. paho reads
// each packet from the socket in two or three reads and writes each packet
// in a write of its own, so the system calls of those small reads and
// writes took 40 % of the CPU of the ingest benchmark (docs/performance.md).
// otactl therefore opens the broker connection itself and hands paho a
// connection that reads through a buffer and combines writes: packets that
// paho writes while the socket is busy with earlier ones go out together
// in the next write. Nothing waits for more to arrive, so a lone packet
// leaves as soon as it would have without the combining.

// readBuffer is how much of the socket one read may take in at once.
const readBuffer = 64 << 10

// maxPending bounds what writes may hand over before the socket has taken
// it: a writer beyond it waits, as it would on a full socket buffer.
const maxPending = 256 << 10

// closeFlush bounds how long Close spends handing pending packets (paho's
// DISCONNECT among them) to a socket that does not take them.
const closeFlush = 2 * time.Second

// openConn is paho's OpenConnectionFunc for otactl's schemes: it dials as
// paho itself would (proxies from the environment for tcp and ssl, TLS with
// the client's configuration, websockets through paho) and wraps the
// connection in a combinedConn.
func openConn(uri *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
	dialer := o.Dialer
	if dialer == nil {
		dialer = &net.Dialer{Timeout: o.ConnectTimeout}
	}
	var conn net.Conn
	var err error
	switch uri.Scheme {
	case "ws", "wss":
		u := *uri
		u.User = nil // the credentials go in CONNECT, not in the websocket URL
		conn, err = mqtt.NewWebsocket(u.String(), o.TLSConfig, o.ConnectTimeout, o.HTTPHeaders,
			o.WebsocketOptions)
	case "tcp":
		conn, err = proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
	case "ssl":
		conn, err = dialTLS(dialer, uri, o.TLSConfig)
	default:
		err = fmt.Errorf("unsupported broker URL scheme %q", uri.Scheme)
	}
	if err != nil {
		return nil, err
	}
	return newCombinedConn(conn), nil
}

// dialTLS opens a TLS connection to uri's host, through the proxy that
// all_proxy names if it is set.
func dialTLS(dialer *net.Dialer, uri *url.URL, tc *tls.Config) (net.Conn, error) {
	if os.Getenv("all_proxy") == "" {
		return tls.DialWithDialer(dialer, "tcp", uri.Host, tc)
	}
	raw, err := proxy.FromEnvironmentUsing(dialer).Dial("tcp", uri.Host)
	if err != nil {
		return nil, err
	}
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.ServerName == "" {
		tc = tc.Clone()
		tc.ServerName = uri.Hostname()
	}
	conn := tls.Client(raw, tc)
	if dialer.Timeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(dialer.Timeout))
	}
	if err := conn.Handshake(); err != nil {
		_ = raw.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// combinedConn reads through a buffer and combines writes. Write copies the
// packet into the pending buffer and returns; a flusher goroutine, started
// when the first packet arrives and ending when nothing is pending, hands
// everything pending to the socket in one write at a time. A write error
// is kept and returned by every later Write, so paho still learns that the
// connection broke, one packet late at most: an upgrade command counts as
// sent only on the broker's PUBACK, which no lost write can produce.
type combinedConn struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	cond    sync.Cond
	pending []byte // handed over by Write, not yet written to the socket
	spare   []byte // the flusher's buffer, reused
	writing bool   // a flusher is running
	closed  bool
	err     error // the socket's first write error
}

func newCombinedConn(conn net.Conn) *combinedConn {
	c := &combinedConn{Conn: conn, r: bufio.NewReaderSize(conn, readBuffer)}
	c.cond.L = &c.mu
	return c
}

// Read reads from the buffer, refilling it from the socket when empty.
// paho reads from one goroutine only.
func (c *combinedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write hands p to the flusher.
func (c *combinedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.pending) >= maxPending {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, p...)
	if !c.writing {
		c.writing = true
		go c.flush()
	}
	return len(p), nil
}

// flush writes what is pending until nothing is, or the socket fails.
func (c *combinedConn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) > 0 && c.err == nil {
		buf := c.pending
		c.pending = c.spare[:0]
		c.mu.Unlock()
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		c.spare = buf
		if err != nil {
			c.err = err
		}
		c.cond.Broadcast()
	}
	c.writing = false
	c.cond.Broadcast()
}

// Close writes what is pending, within closeFlush, then closes the socket.
func (c *combinedConn) Close() error {
	c.mu.Lock()
	c.closed = true
	if c.writing {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
	}
	for c.writing {
		c.cond.Wait()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return c.Conn.Close()
}
