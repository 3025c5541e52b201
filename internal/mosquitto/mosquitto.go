// Package mosquitto starts a private Mosquitto broker on a free loopback
// port, for otactl's tests and benchmarks. Each broker gets its own config
// file and persistence folder under a temp dir and is stopped on cleanup.
package mosquitto

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Broker is a running Mosquitto process.
type Broker struct {
	Addr string // host:port on loopback
	dir  string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// URL returns the broker's address as otactl's --broker takes it.
func (b *Broker) URL() string { return "tcp://" + b.Addr }

// Start runs a broker for the test and stops it on cleanup. Without a
// mosquitto binary the test is skipped, unless the CI environment variable is
// set: there a missing broker is a failure, never a silent skip.
func Start(tb testing.TB) *Broker {
	tb.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("mosquitto is required when CI is set: %v", err)
		}
		tb.Skipf("mosquitto not installed (apt-get install -y mosquitto): %v", err)
	}
	b, err := Run(tb.TempDir())
	if err != nil {
		tb.Fatalf("start mosquitto: %v", err)
	}
	tb.Cleanup(func() {
		b.Stop()
		if tb.Failed() {
			tb.Logf("mosquitto log (%s):\n%s", b.Addr, b.Log())
		}
	})
	return b
}

// Run starts a broker whose config, log and persistence live in dir. The
// caller stops it with Stop.
func Run(dir string) (*Broker, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("find a free port: %w", err)
	}
	b := &Broker{Addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir}
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\n"+
		"persistence true\npersistence_location %s/\nmax_queued_messages 0\n"+
		"max_inflight_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\n"+
		// information: the line saying the broker listens, which start waits for
		"log_type information\n",
		port, b.dir)
	if os.Geteuid() == 0 {
		// Run as root, Mosquitto drops to the mosquitto user, which cannot
		// write its persistence file into a root-owned temp dir: sessions
		// and queued messages would not survive Restart.
		conf += "user root\n"
	}
	if err := os.WriteFile(filepath.Join(b.dir, "mosquitto.conf"), []byte(conf), 0o600); err != nil {
		return nil, fmt.Errorf("write mosquitto config: %w", err)
	}
	if err := b.start(bin); err != nil {
		return nil, err
	}
	return b, nil
}

// Binary finds the mosquitto executable: $PATH, then /usr/sbin where Debian
// installs it (often outside a non-root $PATH).
func Binary() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	const debian = "/usr/sbin/mosquitto"
	if _, err := os.Stat(debian); err == nil {
		return debian, nil
	}
	return "", fmt.Errorf("mosquitto not found in $PATH or /usr/sbin")
}

func (b *Broker) start(bin string) error {
	logPath := filepath.Join(b.dir, "mosquitto.log")
	// The log is appended to across restarts: this start is done when one
	// more listening line than before is there.
	listening := func() int {
		out, _ := os.ReadFile(logPath)
		return strings.Count(string(out), "listen socket on port "+b.port()+".")
	}
	before := listening()
	cmd := exec.Command(bin, "-c", filepath.Join(b.dir, "mosquitto.conf"))
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); log.Close(); close(done) }()
	b.cmd, b.done = cmd, done
	// A successful dial alone is not proof: on Restart, another test's
	// broker may have taken the port while this one was down, and this one
	// then fails to bind and exits. So the broker's own log must say it
	// listens, and the port must answer.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			deadline = time.Now()
			continue
		default:
		}
		if listening() > before {
			if c, err := net.DialTimeout("tcp", b.Addr, 200*time.Millisecond); err == nil {
				c.Close()
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Stop()
	out, _ := os.ReadFile(logPath)
	return fmt.Errorf("broker did not listen on %s within 10s; log: %s", b.Addr, strings.TrimSpace(string(out)))
}

func (b *Broker) port() string {
	_, port, _ := net.SplitHostPort(b.Addr)
	return port
}

// Log returns what the broker has logged so far.
func (b *Broker) Log() string {
	out, _ := os.ReadFile(filepath.Join(b.dir, "mosquitto.log"))
	return string(out)
}

// Stop ends the broker; its persistence file keeps queued session messages
// for a later Restart.
func (b *Broker) Stop() {
	if b.cmd == nil || b.cmd.Process == nil {
		return
	}
	b.cmd.Process.Signal(os.Interrupt)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
	}
	b.cmd = nil
}

// Restart stops the broker and starts it again on the same port, as a broker
// restart in production would. Sessions and queued messages survive.
func (b *Broker) Restart() error {
	b.Stop()
	bin, err := Binary()
	if err != nil {
		return err
	}
	return b.start(bin)
}

// freePort picks a free loopback port for a broker below the kernel's
// ephemeral range, where no port-0 bind or outgoing connection of another
// test process lands. A broker that restarts gives its port up for a
// moment, and a port from the ephemeral range could be handed to someone
// else in that moment. Port 0 is the fallback.
func freePort() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				low = n
			}
		}
	}
	const from = 10000
	for range 100 {
		if low <= from+1000 {
			break
		}
		port := from + rand.IntN(low-from)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
