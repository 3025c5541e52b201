package state

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

// Environment of the helper process, which holds a state file open for the
// lock tests: file locks belong to processes, so another process is the
// only honest way to test them.
const (
	helperPathEnv = "OTACTL_STATE_TEST_HOLD"
	helperROEnv   = "OTACTL_STATE_TEST_HOLD_READONLY"
)

// TestHelperProcess is not a test: run by holdFile in a child process, it
// opens the file, says "ready" and holds it until its stdin closes.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperPathEnv)
	if path == "" {
		t.Skip("helper process for the lock tests")
	}
	s, err := Open(path, Options{ReadOnly: os.Getenv(helperROEnv) != ""})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = s.Close()
	os.Exit(0)
}

// holdFile starts a helper process holding path open, and stops it when the
// test ends.
func holdFile(t *testing.T, path string, readOnly bool) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperPathEnv+"="+path)
	if readOnly {
		cmd.Env = append(cmd.Env, helperROEnv+"=1")
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopHelper(t, cmd, stdin) })
	if line := readyLine(stdout); line != "ready" {
		t.Fatalf("helper process: %q, want ready", line)
	}
}

// readyLine returns the helper's first line, or why there is none within
// ten seconds.
func readyLine(r io.Reader) string {
	lines := make(chan string, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil {
			line = "no line: " + err.Error()
		}
		lines <- strings.TrimSpace(line)
	}()
	select {
	case line := <-lines:
		return line
	case <-time.After(10 * time.Second):
		return "nothing within 10s"
	}
}

func stopHelper(t *testing.T, cmd *exec.Cmd, stdin io.Closer) {
	_ = stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("helper process: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Errorf("helper process did not exit; killed it")
	}
}

// Regression: a second otactl process must get a clear "in use" error
// within its lock timeout, never hang.
func TestOpenLockedByAnotherProcess(t *testing.T) {
	for _, held := range []struct {
		name     string
		readOnly bool
		opens    []Options
	}{
		{"writer", false, []Options{{}, {ReadOnly: true}}},
		{"reader", true, []Options{{}}},
	} {
		t.Run(held.name, func(t *testing.T) {
			path := newFile(t)
			holdFile(t, path, held.readOnly)
			for _, opt := range held.opens {
				opt.LockTimeout = 300 * time.Millisecond
				start := time.Now()
				s, err := Open(path, opt)
				took := time.Since(start)
				if err == nil {
					_ = s.Close()
				}
				wantKind(t, "Open(locked)", err, ota.KindState, path,
					"is in use by another otactl process (waited 300ms)")
				if hint := ota.HintOf(err); !strings.Contains(hint, "--lock-timeout") {
					t.Errorf("hint = %q, want it to mention --lock-timeout", hint)
				}
				if took < 250*time.Millisecond || took > 3*time.Second {
					t.Errorf("Open(locked, %+v) took %v, want about 300ms", opt, took)
				}
			}
		})
	}
}

func TestReadOnlyOpenBesideAnotherReader(t *testing.T) {
	path := newFile(t)
	holdFile(t, path, true)
	start := time.Now()
	s, err := Open(path, Options{ReadOnly: true, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("read-only Open beside a reader: %v", err)
	}
	// Waiting for the lock would take the whole timeout; a busy machine
	// takes a fraction of it.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("read-only Open beside a reader took %v", took)
	}
	readEverything(t, s)
	_ = s.Close()
}
