package sim

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/otactl/otactl/ota"
)

// Summary counts what a simulated fleet did. Run returns it and writes it to
// its log; its JSON form is the output of simulate --json.
type Summary struct {
	Devices        int          `json:"devices"`
	Connections    int          `json:"connections"`
	FailMode       FailMode     `json:"failMode,omitempty"`
	FailingDevices int          `json:"failingDevices"` // devices chosen to fail
	Elapsed        ota.Duration `json:"elapsed"`

	Online      int `json:"online"`      // devices that came online
	Reconnects  int `json:"reconnects"`  // connections lost and made again
	InformsSent int `json:"informsSent"` // version reports the broker acknowledged

	PushesReceived int `json:"pushesReceived"`
	// PushesIgnored were repeats of an upgrade in progress, retained
	// messages, or pushes for a device that is not online yet.
	PushesIgnored  int `json:"pushesIgnored"`
	AlreadyCurrent int `json:"alreadyCurrent"` // pushes of the version already running
	Busy           int `json:"busy"`           // refused: another upgrade in progress
	Malformed      int `json:"malformed"`      // refused: could not be understood

	Succeeded int `json:"succeeded"`
	// Failed counts forced failures by fail mode, decline excepted.
	Failed           map[FailMode]int `json:"failed"`
	Declined         int              `json:"declined"`
	DownloadErrors   int              `json:"downloadErrors"`   // real ones: step -2
	DigestMismatches int              `json:"digestMismatches"` // real ones: step -3
	// Interrupted upgrades were cut short by the end of the run; their
	// devices kept the old version.
	Interrupted int `json:"interrupted"`

	Versions map[string]int `json:"versions"` // devices per version at exit
}

// counters is the Summary while the fleet runs, shared by every goroutine.
type counters struct {
	mu sync.Mutex
	s  Summary
}

// add applies fn to the summary under the lock.
func (c *counters) add(fn func(*Summary)) {
	c.mu.Lock()
	fn(&c.s)
	c.mu.Unlock()
}

func (c *counters) snapshot() Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.s
	s.Failed = make(map[FailMode]int, len(c.s.Failed))
	for k, v := range c.s.Failed {
		s.Failed[k] = v
	}
	return s
}

// write prints the summary for people, a few lines of related counts.
func (s Summary) write(w io.Writer) {
	fmt.Fprintf(w, "summary after %v: %s on %s, %d online, "+
		"%d reconnects, %d version reports\n", time.Duration(s.Elapsed).Round(time.Millisecond),
		count(s.Devices, "device"), count(s.Connections, "connection"), s.Online, s.Reconnects,
		s.InformsSent)
	fmt.Fprintf(w, "  pushes: %d received, %d ignored, %d already current, %d busy, "+
		"%d malformed\n", s.PushesReceived, s.PushesIgnored, s.AlreadyCurrent, s.Busy,
		s.Malformed)
	fmt.Fprintf(w, "  upgrades: %d succeeded, %d declined, %d download errors, "+
		"%d digest mismatches, %d interrupted\n", s.Succeeded, s.Declined, s.DownloadErrors,
		s.DigestMismatches, s.Interrupted)
	if len(s.Failed) > 0 {
		var parts []string
		for _, m := range FailModes() {
			if n := s.Failed[m]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", m, n))
			}
		}
		fmt.Fprintf(w, "  forced failures (%d devices chosen): %s\n",
			s.FailingDevices, strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "  versions: %s\n", versionList(s.Versions))
}

func versionList(m map[string]int) string {
	vs := make([]string, 0, len(m))
	for v := range m {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool {
		if c, ok := ota.CompareVersions(vs[i], vs[j]); ok && c != 0 {
			return c < 0
		}
		return vs[i] < vs[j]
	})
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%s %d", v, m[v])
	}
	return strings.Join(parts, ", ")
}

// logger serialises log lines from the fleet's goroutines.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// count writes "1 device", "2 devices".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
