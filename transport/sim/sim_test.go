package sim

import (
	"crypto/md5"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
)

func TestFleetReportsVersionOnConnect(t *testing.T) {
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 50)
	opt.Connections = 3
	r := startFleet(t, opt)

	w.waitOnline("sim-", 50, "1.0.0")
	time.Sleep(50 * time.Millisecond) // let any stray report arrive
	keys := informedKeys(w.reports(""), "", "1.0.0")
	if len(keys) != 50 {
		t.Errorf("distinct keys reporting 1.0.0 = %d, want 50", len(keys))
	}
	for i := 1; i <= 50; i++ {
		if k := "sim-" + itoa(i); !keys[k] {
			t.Errorf("%s did not report", k)
		}
	}
	if n := len(w.reports("")); n != 50 {
		t.Errorf("messages = %d, want 50 (one report per device)", n)
	}

	// A push reaches only the connection of its device: one reply, and no
	// other connection sees the message.
	w.push("sim-25", "p1", firmware(t, "1.0.0", []byte("same version")))
	w.waitFor("sim-25", 5*time.Second, "a second report", func(rs []ota.Report) bool {
		return countInforms(rs, "1.0.0") == 2
	})
	time.Sleep(50 * time.Millisecond) // time for a stray reply to arrive
	replies := 0
	for _, r := range w.reports("") {
		if r.Kind == ota.ReportUpgradeReply {
			replies++
		}
	}
	if replies != 1 || strings.Contains(r.log.String(), "ignored") {
		t.Errorf("replies to one push = %d, want 1; log:\n%s", replies, r.log.String())
	}

	s := r.stop(t)
	if s.Devices != 50 || s.Connections != 3 || s.Online != 50 || s.InformsSent != 51 ||
		s.PushesReceived != 1 {
		t.Errorf("Summary = %+v, want 50 devices, 3 connections, 50 online, 51 informs, "+
			"1 push", s)
	}
	if s.Versions["1.0.0"] != 50 {
		t.Errorf("Summary.Versions = %v, want 1.0.0: 50", s.Versions)
	}
}

func TestUpgradeSucceeds(t *testing.T) {
	b := mosquitto.Start(t)
	content := []byte(strings.Repeat("firmware 1.1.0\n", 1000))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(content)
	}))
	defer srv.Close()

	fileParams := firmware(t, "1.1.0", content)
	httpParams := fileParams
	httpParams.FileURL = srv.URL + "/fw.bin"
	httpParams.JobID = "job-http"
	// md5 in upper case: devices must accept signMethod in any case.
	md5Params := httpParams
	sum := md5.Sum(content)
	md5Params.SignMethod, md5Params.Sign = "MD5", strings.ToUpper(hex.EncodeToString(sum[:]))
	md5Params.JobID = ""

	w := newWatcher(t, b, "pk1")
	startFleet(t, fleetOptions(b, "pk1", 3))
	w.waitOnline("sim-", 3, "1.0.0")

	for i, p := range []ota.UpgradeParams{fileParams, httpParams, md5Params} {
		dk := "sim-" + itoa(i+1)
		t.Run(p.FileURL[:4]+"-"+p.SignMethod, func(t *testing.T) {
			w.t = t
			w.push(dk, "push-"+dk, p)
			rs := w.waitInform(dk, "1.1.0")
			checkSuccess(t, rs, "push-"+dk, p.JobID)
		})
	}
	w.t = t
}

// checkSuccess checks what a device sent for a successful upgrade: a 200
// reply to the push, increasing steps ending at 100, then the new version,
// each progress and the reply echoing the jobId.
func checkSuccess(t *testing.T, rs []ota.Report, pushID, jobID string) {
	t.Helper()
	rs = after(rs, ota.ReportInform) // skip the report made on connect
	if len(rs) == 0 || rs[0].Kind != ota.ReportUpgradeReply {
		t.Fatalf("first message after the push is not an upgrade_reply:\n%s", dump(rs))
	}
	if rs[0].Code != 200 || rs[0].ID != pushID || rs[0].JobID != jobID {
		t.Errorf("reply = code %d id %q jobId %q, want 200 %q %q",
			rs[0].Code, rs[0].ID, rs[0].JobID, pushID, jobID)
	}
	got := steps(rs)
	if len(got) < 2 || got[len(got)-1] != 100 || !slices.IsSorted(got) || hasRepeat(got) {
		t.Errorf("steps = %v, want increasing and ending at 100", got)
	}
	for _, r := range rs {
		if r.Kind == ota.ReportProgress && r.JobID != jobID {
			t.Errorf("progress %d jobId = %q, want %q", r.Step, r.JobID, jobID)
		}
		if r.Kind == ota.ReportProgress && r.Desc == "" {
			t.Errorf("progress %d has no desc", r.Step)
		}
	}
	last := rs[len(rs)-1]
	if last.Kind != ota.ReportInform || last.Version != "1.1.0" {
		t.Errorf("last message = %s %s, want inform 1.1.0", last.Topic, last.Payload)
	}
}

func hasRepeat(s []int) bool {
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return true
		}
	}
	return false
}

func TestUpgradeFailsOnBadFile(t *testing.T) {
	b := mosquitto.Start(t)
	content := []byte("firmware 2.0.0")
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()

	good := firmware(t, "2.0.0", content)
	badSign := good
	badSign.Sign = strings.Repeat("0", 64)
	missing := good
	missing.FileURL = "file://" + filepath.Join(t.TempDir(), "gone.bin")
	short := good
	short.FileSize++
	notFound := good
	notFound.FileURL = srv.URL + "/fw.bin"

	cases := []struct {
		name string
		p    ota.UpgradeParams
		want int
	}{
		{"digest mismatch", badSign, -3},
		{"missing file", missing, -2},
		{"size mismatch", short, -2},
		{"http 404", notFound, -2},
	}
	w := newWatcher(t, b, "pk1")
	r := startFleet(t, fleetOptions(b, "pk1", len(cases)))
	w.waitOnline("sim-", len(cases), "1.0.0")
	for i, tc := range cases {
		dk := "sim-" + itoa(i+1)
		w.push(dk, "p"+itoa(i), tc.p)
		rs := w.waitFor(dk, 10*time.Second, tc.name+" fails", func(rs []ota.Report) bool {
			s, ok := lastStep(rs)
			return ok && s < 0
		})
		if s, _ := lastStep(rs); s != tc.want {
			t.Errorf("%s: last step = %d, want %d", tc.name, s, tc.want)
		}
	}
	time.Sleep(20 * testStep)
	for i := range cases {
		dk := "sim-" + itoa(i+1)
		if n := countInforms(w.reports(dk), "2.0.0"); n != 0 {
			t.Errorf("%s reported 2.0.0 after a failed upgrade", dk)
		}
	}
	s := r.stop(t)
	if s.DigestMismatches != 1 || s.DownloadErrors != 3 || s.Succeeded != 0 {
		t.Errorf("Summary = %+v, want 1 digest mismatch, 3 download errors", s)
	}
	if s.Versions["1.0.0"] != len(cases) {
		t.Errorf("Summary.Versions = %v, want every device still on 1.0.0", s.Versions)
	}
}

func TestFailModes(t *testing.T) {
	b := mosquitto.Start(t)
	p := firmware(t, "1.1.0", []byte("firmware 1.1.0"))
	cases := []struct {
		mode   FailMode
		steps  []int
		inform string // version reported after the push; "" for none
	}{
		{FailDownload, []int{10, -2}, ""},
		{FailVerify, []int{10, 40, -3}, ""},
		{FailFlash, []int{10, 40, 70, -4}, ""},
		{FailDecline, []int{-5}, ""},
		{FailSilence, []int{10}, ""},
		{FailRollback, []int{10, 40, 70, 100}, "1.0.0"},
		{FailWrongVersion, []int{10, 40, 70, 100}, "1.1.0-wrong"},
	}
	for _, tc := range cases {
		t.Run(string(tc.mode), func(t *testing.T) {
			t.Parallel()
			pk := "pk-" + string(tc.mode)
			w := newWatcher(t, b, pk)
			opt := fleetOptions(b, pk, 1)
			opt.FailRate, opt.FailMode = 1, tc.mode
			r := startFleet(t, opt)
			w.waitOnline("sim-", 1, "1.0.0")

			w.push("sim-1", "push-1", p)
			w.waitFor("sim-1", 5*time.Second, "reply", func(rs []ota.Report) bool {
				return len(after(rs, ota.ReportUpgradeReply)) >= len(tc.steps)
			})
			// Long enough for every remaining step of a device that goes on.
			time.Sleep(40 * testStep)
			rs := after(w.reports("sim-1"), ota.ReportInform)
			if rs[0].Kind != ota.ReportUpgradeReply || rs[0].Code != 200 {
				t.Errorf("first message after the push = %s, want a 200 reply", rs[0].Payload)
			}
			if got := steps(rs); !slices.Equal(got, tc.steps) {
				t.Errorf("steps = %v, want %v", got, tc.steps)
			}
			var informs []string
			for _, r := range rs {
				if r.Kind == ota.ReportInform {
					informs = append(informs, r.Version)
				}
			}
			var want []string
			if tc.inform != "" {
				want = []string{tc.inform}
			}
			if !slices.Equal(informs, want) {
				t.Errorf("version reports after the push = %q, want %q", informs, want)
			}

			s := r.stop(t)
			failed := s.Failed[tc.mode]
			if tc.mode == FailDecline {
				failed = s.Declined
			}
			if failed != 1 || s.Succeeded != 0 || s.Versions["1.0.0"] != 1 {
				t.Errorf("Summary = %+v, want one %s failure and 1.0.0 kept", s, tc.mode)
			}
		})
	}
}

func TestFailingDevicesFollowSeed(t *testing.T) {
	opt := Options{Broker: "tcp://127.0.0.1:1", ProductKey: "pk1", Devices: 200,
		Version: "1.0.0", FailRate: 0.25, FailMode: FailDecline, Seed: 7}
	a, err := FailingKeys(opt)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := FailingKeys(opt)
	if len(a) != 50 || !slices.Equal(a, again) {
		t.Errorf("FailingKeys twice with seed 7 = %d keys %v and %v, want the same 50",
			len(a), a, again)
	}
	opt.Seed = 8
	other, _ := FailingKeys(opt)
	if len(other) != 50 || slices.Equal(a, other) {
		t.Errorf("FailingKeys with seeds 7 and 8 are both %v, want different sets", a)
	}
	// A higher rate fails a superset, so raising it never spares a device.
	opt.FailRate = 0.5
	more, _ := FailingKeys(opt)
	for _, k := range other {
		if !slices.Contains(more, k) {
			t.Errorf("%s fails at rate 0.25 but not at 0.5", k)
		}
	}
}

// TestFailingDevicesObserved checks end to end that the devices that fail
// are the ones FailingKeys names.
func TestFailingDevicesObserved(t *testing.T) {
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 20)
	opt.FailRate, opt.FailMode, opt.Seed = 0.3, FailDecline, 42
	want, err := FailingKeys(opt)
	if err != nil {
		t.Fatal(err)
	}
	startFleet(t, opt)
	w.waitOnline("sim-", 20, "1.0.0")

	p := firmware(t, "1.1.0", []byte("firmware"))
	for i := 1; i <= 20; i++ {
		w.push("sim-"+itoa(i), "p"+itoa(i), p)
	}
	var got []string
	for i := 1; i <= 20; i++ {
		dk := "sim-" + itoa(i)
		rs := w.waitFor(dk, 10*time.Second, dk+" finishes", func(rs []ota.Report) bool {
			s, ok := lastStep(rs)
			return ok && s < 0 || countInforms(rs, "1.1.0") > 0
		})
		if s, _ := lastStep(rs); s == -5 {
			got = append(got, dk)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("declining devices = %v, want FailingKeys() = %v", got, want)
	}
}

func TestNonASCIIKeys(t *testing.T) {
	b := mosquitto.Start(t)
	const pk, prefix = "温室", "温湿度-"
	w := newWatcher(t, b, pk)
	opt := fleetOptions(b, pk, 3)
	opt.KeyPrefix = prefix
	r := startFleet(t, opt)
	w.waitOnline(prefix, 3, "1.0.0")

	p := firmware(t, "1.1.0", []byte("固件"))
	w.push(prefix+"2", "推送-1", p)
	rs := w.waitInform(prefix+"2", "1.1.0")
	checkSuccess(t, rs, "推送-1", p.JobID)
	if s := r.stop(t); s.Succeeded != 1 || s.Versions["1.1.0"] != 1 {
		t.Errorf("Summary = %+v, want one success", s)
	}
}

func TestRepeatedAndCurrentPushes(t *testing.T) {
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 2)
	opt.StepDelay = 50 * time.Millisecond // long enough to repeat the push mid-upgrade
	r := startFleet(t, opt)
	w.waitOnline("sim-", 2, "1.0.0")

	p := firmware(t, "1.1.0", []byte("firmware"))
	w.push("sim-1", "a", p)
	w.push("sim-1", "b", p) // a redelivery of the same job: ignored
	rs := w.waitInform("sim-1", "1.1.0")
	if got := steps(rs); !slices.Equal(got, []int{10, 40, 70, 100}) {
		t.Errorf("steps with a repeated push = %v, want one upgrade's", got)
	}

	// The version the device runs now: a reply and a report, no download.
	w.push("sim-1", "c", p)
	rs = w.waitFor("sim-1", 5*time.Second, "second report of 1.1.0",
		func(rs []ota.Report) bool { return countInforms(rs, "1.1.0") == 2 })
	if got := steps(rs); len(got) != 4 {
		t.Errorf("steps after a push of the current version = %v, want no new ones", got)
	}

	// Already running: a device on 1.0.0 pushed 1.0.0 (with a "v").
	cur := firmware(t, "v1.0.0", []byte("old"))
	w.push("sim-2", "d", cur)
	w.waitFor("sim-2", 5*time.Second, "second report of 1.0.0",
		func(rs []ota.Report) bool { return countInforms(rs, "1.0.0") == 2 })

	s := r.stop(t)
	if s.PushesReceived != 4 || s.PushesIgnored != 1 || s.AlreadyCurrent != 2 ||
		s.Succeeded != 1 {
		t.Errorf("Summary = %+v, want 4 pushes, 1 ignored, 2 already current, 1 success", s)
	}
}

func TestMalformedPushes(t *testing.T) {
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	r := startFleet(t, fleetOptions(b, "pk1", 1))
	w.waitOnline("sim-", 1, "1.0.0")

	bad := []string{
		`{"id":"1","method":"ota.device.upgrade","params":`,
		`{"id":"2","method":"ota.device.upgrade","params":{"version":"2"}}`,
		`{"id":"3","method":"ota.device.upgrade","params":{"version":"2","sign":"00",` +
			`"signMethod":"sha256","fileUrl":"file:///x","fileSize":1}}`,
		`{"id":"4","method":"ota.device.upgrade","params":{"version":"2","sign":"` +
			strings.Repeat("0", 32) + `","signMethod":"md5","fileUrl":"ftp://h/x",` +
			`"fileSize":1,"jobId":"j4"}}`,
		"\xff\xfe",
		`[]`,
	}
	for _, payload := range bad {
		w.pushRaw("sim-1", []byte(payload))
	}
	rs := w.waitFor("sim-1", 5*time.Second, "every rejection", func(rs []ota.Report) bool {
		return len(steps(rs)) == len(bad)
	})
	for _, r := range rs {
		switch r.Kind {
		case ota.ReportUpgradeReply:
			if r.Code == 200 {
				t.Errorf("reply to a malformed push has code 200: %s", r.Payload)
			}
		case ota.ReportProgress:
			if r.Step != -1 {
				t.Errorf("step after a malformed push = %d, want -1", r.Step)
			}
		}
	}
	if rs := w.reports("sim-1"); !slices.ContainsFunc(rs, func(r ota.Report) bool {
		return r.Kind == ota.ReportProgress && r.JobID == "j4"
	}) {
		t.Errorf("the rejection of a push with a bad URL does not echo its jobId")
	}

	// The device still works.
	p := firmware(t, "1.1.0", []byte("firmware"))
	w.push("sim-1", "ok", p)
	w.waitInform("sim-1", "1.1.0")
	s := r.stop(t)
	if s.Malformed != len(bad) || s.Succeeded != 1 {
		t.Errorf("Summary = %+v, want %d malformed, 1 success", s, len(bad))
	}
	if !strings.Contains(r.log.String(), "malformed push") {
		t.Errorf("log has no line about the malformed pushes:\n%s", r.log.String())
	}
}

func TestCancelReturnsSummary(t *testing.T) {
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 10)
	opt.FailRate, opt.FailMode = 0.2, FailFlash
	r := startFleet(t, opt)
	w.waitOnline("sim-", 10, "1.0.0")

	p := firmware(t, "1.1.0", []byte("firmware"))
	for i := 1; i <= 10; i++ {
		w.push("sim-"+itoa(i), "p"+itoa(i), p)
	}
	observed := map[string]int{}
	for i := 1; i <= 10; i++ {
		dk := "sim-" + itoa(i)
		rs := w.waitFor(dk, 10*time.Second, dk+" finishes", func(rs []ota.Report) bool {
			s, ok := lastStep(rs)
			return ok && s < 0 || countInforms(rs, "1.1.0") > 0
		})
		if s, _ := lastStep(rs); s == -4 {
			observed["failed"]++
		} else {
			observed["succeeded"]++
		}
	}

	s := r.stop(t)
	if observed["failed"] != 2 || s.Failed[FailFlash] != 2 || s.Succeeded != 8 ||
		s.PushesReceived != 10 || s.FailingDevices != 2 {
		t.Errorf("Summary = %+v, observed %v; want 10 pushes, 8 succeeded, 2 flash failures",
			s, observed)
	}
	if s.Versions["1.1.0"] != 8 || s.Versions["1.0.0"] != 2 {
		t.Errorf("Summary.Versions = %v, want 1.1.0: 8, 1.0.0: 2", s.Versions)
	}
	if s.InformsSent != 18 {
		t.Errorf("Summary.InformsSent = %d, want 10 on connect and 8 after upgrades",
			s.InformsSent)
	}
	if !strings.Contains(r.log.String(), "summary after") {
		t.Errorf("log has no summary:\n%s", r.log.String())
	}
}

// TestCancelInterruptsUpgrades guards a clean stop: an upgrade in the
// middle of a long step ends at once, its device keeps its version, and no
// goroutine of the run outlives it.
func TestCancelInterruptsUpgrades(t *testing.T) {
	base := runtime.NumGoroutine()
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 4)
	opt.StepDelay = time.Hour
	r := startFleet(t, opt)
	w.waitOnline("sim-", 4, "1.0.0")

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("fw"))
	}))
	defer srv.Close()
	p := firmware(t, "1.1.0", []byte("fw"))
	p.FileURL = srv.URL + "/fw"
	w.push("sim-3", "p", p)
	w.waitFor("sim-3", 5*time.Second, "first step", func(rs []ota.Report) bool {
		return len(steps(rs)) > 0
	})

	start := time.Now()
	s := r.stop(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Run returned %v after cancel, want promptly", d)
	}
	if s.Interrupted != 1 || s.Versions["1.0.0"] != 4 {
		t.Errorf("Summary = %+v, want 1 interrupted and every device on 1.0.0", s)
	}

	srv.Close()
	w.client.Disconnect(0)
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base+1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+1 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the run, %d before:\n%s", n, base,
			buf[:runtime.Stack(buf, true)])
	}
}

func TestReconnectReportsAgain(t *testing.T) {
	b := mosquitto.Start(t)
	w := newPersistentWatcher(t, b, "pk1")
	r := startFleet(t, fleetOptions(b, "pk1", 5))
	w.waitOnline("sim-", 5, "1.0.0")
	w.push("sim-1", "p", firmware(t, "1.1.0", []byte("fw")))
	w.waitInform("sim-1", "1.1.0")

	// The watcher's session survives the restart, so the reports the fleet
	// sends when it is back reach it whenever it reconnects itself.
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	w.waitFor("", 30*time.Second, "reports after the restart", func(rs []ota.Report) bool {
		for i := 1; i <= 5; i++ {
			dk, v := "sim-"+itoa(i), "1.0.0"
			if i == 1 {
				v = "1.1.0" // once after its upgrade, once after the restart
			}
			if countInforms(reportsOf(rs, dk), v) != 2 {
				return false
			}
		}
		return true
	})
	if s := r.stop(t); s.Reconnects != 1 {
		t.Errorf("Summary.Reconnects = %d, want 1", s.Reconnects)
	}
}

func reportsOf(rs []ota.Report, dk string) []ota.Report {
	var out []ota.Report
	for _, r := range rs {
		if r.DeviceKey == dk {
			out = append(out, r)
		}
	}
	return out
}

func TestConnectSpread(t *testing.T) {
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 40)
	opt.Connections, opt.ConnectSpread = 2, 600*time.Millisecond
	start := time.Now()
	startFleet(t, opt)

	w.waitFor("", 5*time.Second, "a first report", func(rs []ota.Report) bool {
		return len(rs) > 0
	})
	if n := len(informedKeys(w.reports(""), "", "1.0.0")); n == 40 {
		t.Errorf("all 40 devices reported at once, want them spread over 600ms")
	}
	w.waitOnline("sim-", 40, "1.0.0")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("all devices online after %v, want spread over about 600ms", d)
	}
}

// TestLargeFleetStartsQuickly guards the scale promise: 10,000 devices on
// 20 connections report within a few seconds on a small machine.
func TestLargeFleetComesOnline(t *testing.T) {
	if testing.Short() {
		t.Skip("large fleet")
	}
	b := mosquitto.Start(t)
	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 10_000)
	start := time.Now()
	r := startFleet(t, opt)
	w.waitOnline("sim-", 10_000, "1.0.0")
	// How fast is for a benchmark on a quiet machine; here it must only
	// happen at all on a busy one.
	t.Logf("10,000 devices reported in %v", time.Since(start))
	if s := r.stop(t); s.Connections != 20 || s.InformsSent != 10_000 {
		t.Errorf("Summary = %+v, want 20 connections, 10,000 informs", s)
	}
}

func TestHTTPSDownloadTrustsCAFile(t *testing.T) {
	b := mosquitto.Start(t)
	content := []byte("firmware over https")
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write(content)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pemOf(srv.Certificate().Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	p := firmware(t, "1.1.0", content)
	p.FileURL = srv.URL + "/fw.bin"

	w := newWatcher(t, b, "pk1")
	opt := fleetOptions(b, "pk1", 1)
	opt.CAFile = ca
	startFleet(t, opt)
	w.waitOnline("sim-", 1, "1.0.0")
	w.push("sim-1", "p", p)
	checkSuccess(t, w.waitInform("sim-1", "1.1.0"), "p", p.JobID)
}

func TestRunRejectsBadOptionsAndBroker(t *testing.T) {
	if _, err := Run(t.Context(), Options{}, nil); ota.KindOf(err) != ota.KindInvalid {
		t.Errorf("Run(zero Options) error = %v, want KindInvalid", err)
	}
	opt := Options{Broker: "tcp://127.0.0.1:1", ProductKey: "pk", Devices: 2, Version: "1"}
	_, err := Run(t.Context(), opt, nil)
	if ota.KindOf(err) != ota.KindBroker || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Run(unreachable broker) error = %v, want KindBroker naming it", err)
	}
}
