package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// loopbackPair is a combinedConn wrapping one end of a real loopback TCP
// connection, and the other end.
func loopbackPair(t *testing.T) (*combinedConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { raw.Close(); peer.Close() })
	return newCombinedConn(raw), peer
}

// Every byte written arrives, in order, whether writes are combined or
// not; writes from several goroutines (paho writes from one, but nothing
// may break if that changes) keep each write whole.
func TestCombinedConnDeliversInOrder(t *testing.T) {
	c, peer := loopbackPair(t)
	var want bytes.Buffer
	for i := range 20_000 {
		p := []byte("packet " + strconv.Itoa(i) + ";")
		want.Write(p)
		if n, err := c.Write(p); n != len(p) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	got := make([]byte, want.Len())
	if _, err := io.ReadFull(peer, got); err != nil {
		t.Fatalf("read what was written: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("the peer read %d bytes that differ from the %d written", len(got), want.Len())
	}

	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 1000 {
				c.Write([]byte{'a' + byte(g), 'a' + byte(g), 'a' + byte(g), '\n'})
			}
		})
	}
	wg.Wait()
	lines := make([]byte, 4*4*1000)
	if _, err := io.ReadFull(peer, lines); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(lines); i += 4 {
		if l := lines[i : i+4]; l[0] != l[1] || l[1] != l[2] || l[3] != '\n' {
			t.Fatalf("write %d arrived torn: %q", i/4, l)
		}
	}
}

// Reads go through the buffer: many small packets sent at once are read
// back exactly, including across the buffer's refills.
func TestCombinedConnReads(t *testing.T) {
	c, peer := loopbackPair(t)
	var sent bytes.Buffer
	for i := range 30_000 {
		sent.WriteString(strconv.Itoa(i) + ",")
	}
	go peer.Write(sent.Bytes())
	got := make([]byte, sent.Len())
	for off := 0; off < len(got); {
		n, err := c.Read(got[off:min(off+3, len(got))]) // paho reads in small pieces
		if err != nil {
			t.Fatalf("Read after %d bytes: %v", off, err)
		}
		off += n
	}
	if !bytes.Equal(got, sent.Bytes()) {
		t.Fatal("bytes read differ from bytes sent")
	}
}

// Close hands over what is pending before closing, as paho's DISCONNECT
// must reach the broker; writes after Close fail.
func TestCombinedConnCloseFlushes(t *testing.T) {
	c, peer := loopbackPair(t)
	payload := bytes.Repeat([]byte("x"), 3*maxPending) // more than one hand-over
	go func() {
		c.Write(payload[:maxPending])
		c.Write(payload[maxPending:])
		c.Close()
	}()
	got, err := io.ReadAll(peer)
	if err != nil {
		t.Fatalf("read until close: %v", err)
	}
	if len(got) != len(payload) {
		t.Fatalf("the peer read %d bytes before the close, want %d", len(got), len(payload))
	}
	if _, err := c.Write([]byte("late")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v, want net.ErrClosed", err)
	}
}

// A socket that fails makes later writes fail with its error, so that paho
// notices the broken connection.
func TestCombinedConnReportsWriteError(t *testing.T) {
	c, _ := loopbackPair(t)
	c.Conn.Close() // the socket breaks under the wrapper
	deadline := time.Now().Add(5 * time.Second)
	var err error
	for err == nil && time.Now().Before(deadline) {
		_, err = c.Write([]byte("packet"))
		time.Sleep(time.Millisecond)
	}
	if err == nil {
		t.Fatalf("Write on a broken socket kept succeeding (last error %v)", err)
	}
}
