package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
)

// cmdFreePort sets an environment variable to a free loopback port:
// freeport PORT
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport <VAR>")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ts.Setenv(args[0], fmt.Sprint(port))
}

// cmdFetch GETs a URL, retrying while nothing listens yet, and prints the
// status code on the first line and the body after it:
// fetch <url> [<range header value>]
func cmdFetch(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: fetch <url> [<range>]")
	}
	req, err := http.NewRequest(http.MethodGet, args[0], nil)
	ts.Check(err)
	if len(args) == 2 {
		req.Header.Set("Range", args[1])
	}
	var resp *http.Response
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err = http.DefaultClient.Do(req)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Check(err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "%d\n%s", resp.StatusCode, body)
}

// cmdTermAgent sends SIGTERM to the agent that holds the script's state
// file's lease, as systemd would stop it (testscript's kill knows only INT
// and KILL).
func cmdTermAgent(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: termagent")
	}
	st, err := state.Open(ts.Getenv("STATE"), state.Options{ReadOnly: true})
	ts.Check(err)
	defer st.Close()
	var lease *ota.Lease
	ts.Check(st.View(func(tx ota.Tx) error {
		var err error
		lease, err = tx.Lease()
		return err
	}))
	if lease == nil {
		ts.Fatalf("termagent: no agent holds the lease")
	}
	p, err := os.FindProcess(lease.PID)
	ts.Check(err)
	ts.Check(p.Signal(syscall.SIGTERM))
}
