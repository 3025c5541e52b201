package mosquitto

import (
	"net"
	"testing"
)

func TestStartRestartListens(t *testing.T) {
	b := Start(t)
	b.Restart()
	c, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatalf("dial %s after restart: %v", b.Addr, err)
	}
	c.Close()
}
