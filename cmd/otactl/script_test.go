package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otactl/otactl/cmd"
	"github.com/otactl/otactl/internal/mosquitto"
)

// TestMain lets the test binary act as the otactl command inside scripts,
// so every script runs the real command tree in a real process.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"otactl": func() { os.Exit(cmd.Main(os.Args[1:], cmd.SystemIO())) },
	})
}

// TestScripts runs the end-to-end scripts in testdata/script: the real
// binary against a real state file and, where a script starts one, a real
// Mosquitto on a loopback port.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("HOME", filepath.Join(env.WorkDir, "home"))
			env.Setenv("XDG_STATE_HOME", filepath.Join(env.WorkDir, "xdg-state"))
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, "xdg-config"))
			env.Setenv("STATE", filepath.Join(env.WorkDir, "xdg-state", "otactl", "state.db"))
			env.Values[brokerKey{}] = new(mosquitto.Broker)
			return nil
		},
		// [mosquitto] holds where a broker can be started, and always under
		// CI, so that there a missing broker fails the script instead of
		// skipping it.
		Condition: func(cond string) (bool, error) {
			if cond != "mosquitto" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			_, err := mosquitto.Binary()
			return err == nil || os.Getenv("CI") != "", nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":   cmdExitCode,
			"broker":     cmdBroker,
			"eventually": cmdEventually,
			"device":     cmdDevice,
			"freeport":   cmdFreePort,
			"fetch":      cmdFetch,
			"termagent":  cmdTermAgent,
			"maxsize":    cmdMaxSize,
			"sleep": func(ts *testscript.TestScript, _ bool, args []string) {
				d, err := time.ParseDuration(args[0])
				ts.Check(err)
				time.Sleep(d)
			},
		},
	})
}

// cmdExitCode runs a command and checks its exact exit code:
// exitcode 3 otactl firmware add ...
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode <code> <command> [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %v", err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: run %s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// cmdMaxSize fails unless a file is at most the given number of bytes, for
// scripts that guard against a state file growing with what devices send:
// maxsize $STATE 2000000
func cmdMaxSize(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: maxsize <file> <bytes>")
	}
	limit, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	fi, err := os.Stat(ts.MkAbs(args[0]))
	ts.Check(err)
	if fi.Size() > limit {
		ts.Fatalf("%s is %d bytes, want at most %d", args[0], fi.Size(), limit)
	}
}

// brokerKey finds the script's broker among the script's values.
type brokerKey struct{}

// cmdBroker starts a private Mosquitto for the script and points otactl at
// it through OTACTL_BROKER ("broker start"), or restarts it ("broker
// restart"). The broker stops when the script ends.
func cmdBroker(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: broker start|restart")
	}
	switch args[0] {
	case "start":
		dir := ts.MkAbs("broker")
		ts.Check(os.MkdirAll(dir, 0o700))
		b, err := mosquitto.Run(dir)
		if err != nil {
			ts.Fatalf("start mosquitto: %v", err)
		}
		held := ts.Value(brokerKey{}).(*mosquitto.Broker)
		*held = *b
		ts.Defer(held.Stop)
		ts.Setenv("OTACTL_BROKER", b.URL())
		ts.Setenv("BROKER_ADDR", b.Addr)
	case "restart":
		b := ts.Value(brokerKey{}).(*mosquitto.Broker)
		if b.Addr == "" {
			ts.Fatalf("broker restart: no broker started")
		}
		if err := b.Restart(); err != nil {
			ts.Fatalf("restart mosquitto: %v", err)
		}
	default:
		ts.Fatalf("usage: broker start|restart")
	}
}

// cmdEventually re-runs a command until its stdout matches a pattern, for
// state that other processes (simulated devices) change:
// eventually 20s '^1.0.0\t5$' otactl versions --product pk1
func cmdEventually(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: eventually <timeout> <regexp> <command> [args...]")
	}
	timeout, err := time.ParseDuration(args[0])
	ts.Check(err)
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	deadline := time.Now().Add(timeout)
	for {
		err := ts.Exec(args[2], args[3:]...)
		out := ts.ReadFile("stdout")
		if err == nil && re.MatchString(out) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("after %s, %s printed no match for %q; last stdout:\n%s\nlast stderr:\n%s",
				timeout, args[2], args[1], out, ts.ReadFile("stderr"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
