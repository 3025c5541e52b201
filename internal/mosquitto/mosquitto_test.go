package mosquitto

import (
	"net"
	"testing"
)

func TestStartRestartListens(t *testing.T) {
	b := Start(t)
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatalf("dial %s after restart: %v", b.Addr, err)
	}
	c.Close()
}
