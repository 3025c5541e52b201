package ota_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/ota/otatest"
)

// fleet is a fixture: an in-memory store, a clock that only moves when told,
// and helpers that speak for devices.
type fleet struct {
	t   *testing.T
	st  ota.Store
	now time.Time
	seq int
}

func newFleet(t *testing.T) *fleet {
	return &fleet{t: t, st: otatest.New(), now: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)}
}

func (f *fleet) env() ota.Env {
	return ota.Env{Now: f.now, FileURL: func(fw *ota.Firmware) string { return "file:///fw/" + fw.Sign }}
}

func (f *fleet) tick(d time.Duration) { f.now = f.now.Add(d) }

// send delivers device messages, as the transport would have parsed them.
func (f *fleet) send(reports ...ota.Report) []ota.Reply {
	f.t.Helper()
	var replies []ota.Reply
	err := f.st.Update(func(tx ota.Tx) error {
		var err error
		replies, err = ota.Apply(tx, reports, f.env())
		return err
	})
	if err != nil {
		f.t.Fatalf("Apply: %v", err)
	}
	return replies
}

func (f *fleet) report(kind ota.ReportKind, dk string, params string) ota.Report {
	f.seq++
	return ota.Report{Kind: kind, ProductKey: "pk1", DeviceKey: dk, ID: fmt.Sprint(f.seq),
		Topic:   "/sys/pk1/" + dk + "/ota/device/" + string(kind),
		Payload: []byte(fmt.Sprintf(`{"id":"%d","params":%s}`, f.seq, params))}
}

func (f *fleet) inform(dk, version string) ota.Report {
	r := f.report(ota.ReportInform, dk, fmt.Sprintf(`{"version":%q}`, version))
	r.Version = version
	return r
}

func (f *fleet) progress(dk string, step int) ota.Report {
	r := f.report(ota.ReportProgress, dk, fmt.Sprintf(`{"step":"%d"}`, step))
	r.Step = step
	return r
}

func (f *fleet) firmware(version string) *ota.Firmware {
	f.t.Helper()
	fw, err := ota.NewFirmware(ota.FirmwareSpec{ProductKey: "pk1", Version: version,
		Sign: strings.Repeat("a", 64), Size: 100, StoredFile: strings.Repeat("a", 64)}, f.now)
	if err != nil {
		f.t.Fatal(err)
	}
	f.update(func(tx ota.Tx) error { return ota.AddFirmware(tx, fw, f.now) })
	return fw
}

func (f *fleet) update(fn func(tx ota.Tx) error) {
	f.t.Helper()
	if err := f.st.Update(fn); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) start(fwID string, from string, devices ...string) (*ota.RoundReport, error) {
	var rep *ota.RoundReport
	err := f.st.Update(func(tx ota.Tx) error {
		var err error
		rep, err = ota.StartVerification(tx, ota.VerifySpec{Firmware: fwID,
			FromVersions: strings.Split(from, ","), Devices: devices}, f.env())
		return err
	})
	return rep, err
}

func (f *fleet) mustStart(fwID string, from string, devices ...string) *ota.RoundReport {
	f.t.Helper()
	rep, err := f.start(fwID, from, devices...)
	if err != nil {
		f.t.Fatalf("StartVerification: %v", err)
	}
	return rep
}

func (f *fleet) job(dk string) *ota.Job {
	f.t.Helper()
	var j *ota.Job
	f.view(func(tx ota.Tx) error {
		d, err := tx.Device("pk1", dk)
		if err != nil || d == nil {
			return fmt.Errorf("device %s: %v", dk, err)
		}
		id := d.ActiveJob
		if id == "" {
			id = d.LastJob
		}
		j, err = tx.Job(id)
		return err
	})
	if j == nil {
		f.t.Fatalf("device %s has no job", dk)
	}
	return j
}

func (f *fleet) fw(id string) *ota.Firmware {
	f.t.Helper()
	var fw *ota.Firmware
	f.view(func(tx ota.Tx) error {
		var err error
		fw, err = tx.Firmware(id)
		return err
	})
	return fw
}

func (f *fleet) pushes() []*ota.Push {
	var ps []*ota.Push
	f.view(func(tx ota.Tx) error {
		var err error
		ps, _, err = ota.PendingPushes(tx, 1<<20)
		return err
	})
	return ps
}

// ackPushes plays the sender: every queued push is acknowledged by the broker.
func (f *fleet) ackPushes() int {
	ps := f.pushes()
	f.update(func(tx ota.Tx) error {
		for _, p := range ps {
			if err := ota.MarkPushed(tx, p, f.env()); err != nil {
				return err
			}
		}
		return nil
	})
	return len(ps)
}

func (f *fleet) view(fn func(tx ota.Tx) error) {
	f.t.Helper()
	if err := f.st.View(fn); err != nil {
		f.t.Fatal(err)
	}
}

func wantStatus(t *testing.T, j *ota.Job, status ota.JobStatus, reason string) {
	t.Helper()
	if j.Status != status || j.Reason != reason {
		t.Fatalf("job %s of %s = %s %q, want %s %q", j.ID, j.DeviceKey, j.Status, j.Reason, status, reason)
	}
}

func TestVerifySuccessNeedsTheTargetVersion(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1")
	if n := f.ackPushes(); n != 1 {
		t.Fatalf("pushes queued = %d, want 1", n)
	}
	f.send(f.progress("d1", 30), f.progress("d1", 100))
	wantStatus(t, f.job("d1"), ota.JobInProgress, "") // progress 100 alone is not success
	f.send(f.inform("d1", "2.0.0"))
	wantStatus(t, f.job("d1"), ota.JobSucceeded, "")
	if got := f.fw(fw.ID); got.Status != ota.FirmwareVerified || got.Verdict != ota.VerdictPassed {
		t.Fatalf("firmware = %s/%s, want verified/passed", got.Status, got.Verdict)
	}
}

// Field case 1: progress 30, a broker restart, progress 100, a late 60, then
// the target version: never backwards, ends Upgraded successfully.
func TestVerifyLateProgressNeverGoesBackwards(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1")
	f.ackPushes()
	f.send(f.progress("d1", 30))
	f.send(f.progress("d1", 100))
	f.send(f.progress("d1", 60))
	if j := f.job("d1"); *j.Step != 100 || j.Status != ota.JobInProgress {
		t.Fatalf("after late 60: step %d status %s, want 100 in-progress", *j.Step, j.Status)
	}
	f.send(f.inform("d1", "2.0.0"))
	wantStatus(t, f.job("d1"), ota.JobSucceeded, "")
}

// Field case 2: versions are not numbers.
func TestVerifyVersionsAreNotNumbers(t *testing.T) {
	for _, tc := range []struct{ from, to string }{{"3.9", "3.10"}, {"1.6.0", "1.11.0"}} {
		f := newFleet(t)
		f.send(f.inform("d1", tc.from))
		fw := f.firmware(tc.to)
		f.mustStart(fw.ID, tc.from, "d1")
		f.ackPushes()
		f.send(f.progress("d1", 100), f.inform("d1", tc.to))
		wantStatus(t, f.job("d1"), ota.JobSucceeded, "")
	}
}

// Field case 3: "v1.6.0" and "1.6.0 " count as 1.6.0; odd versions never do.
func TestVerifyTargetMatchingTrimsOneV(t *testing.T) {
	for _, tc := range []struct {
		reported string
		want     ota.JobStatus
	}{
		{"v1.6.0", ota.JobSucceeded},
		{"1.6.0 ", ota.JobSucceeded},
		{"matcha-1.6.0-RC-4", ota.JobFailed},
		{"", ota.JobFailed},
	} {
		f := newFleet(t)
		f.send(f.inform("d1", "1.5.0"))
		fw := f.firmware("1.6.0")
		f.mustStart(fw.ID, "1.5.0", "d1")
		f.ackPushes()
		f.send(f.progress("d1", 100), f.inform("d1", tc.reported))
		if j := f.job("d1"); j.Status != tc.want {
			t.Errorf("reported %q: job %s, want %s", tc.reported, j.Status, tc.want)
		}
	}
}

// Field case 4: -3 then the old version fails that device; the firmware is
// verified with verdict failed, and the failed device is not pushed again.
func TestVerifyChecksumFailureFailsTheVerdict(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"), f.inform("d2", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1", "d2")
	f.ackPushes()
	f.send(f.progress("d1", -3), f.inform("d1", "1.0.0"))
	f.send(f.progress("d2", 100), f.inform("d2", "2.0.0"))
	wantStatus(t, f.job("d1"), ota.JobFailed, "verification failed (step -3)")
	wantStatus(t, f.job("d2"), ota.JobSucceeded, "")
	if got := f.fw(fw.ID); got.Status != ota.FirmwareVerified || got.Verdict != ota.VerdictFailed {
		t.Fatalf("firmware = %s/%s, want verified/failed", got.Status, got.Verdict)
	}
	if ps := f.pushes(); len(ps) != 0 {
		t.Fatalf("outbox = %d pushes after the failure, want none", len(ps))
	}
}

// Field case 8 and 9: after 100, the old version is a rollback, another
// version a mismatch.
func TestVerifyRollbackAndMismatch(t *testing.T) {
	for _, tc := range []struct{ reported, reason string }{
		{"1.0.0", "rolled back"},
		{"1.9.9", "version mismatch: expected 2.0.0, got 1.9.9"},
	} {
		f := newFleet(t)
		f.send(f.inform("d1", "1.0.0"))
		fw := f.firmware("2.0.0")
		f.mustStart(fw.ID, "1.0.0", "d1")
		f.ackPushes()
		f.send(f.progress("d1", 100), f.inform("d1", tc.reported))
		wantStatus(t, f.job("d1"), ota.JobFailed, tc.reason)
	}
}

// Field case 10: six devices are refused and nothing is pushed.
func TestVerifyAtMostFiveDevices(t *testing.T) {
	f := newFleet(t)
	var keys []string
	for i := 1; i <= 6; i++ {
		keys = append(keys, fmt.Sprintf("d%d", i))
		f.send(f.inform(keys[i-1], "1.0.0"))
	}
	fw := f.firmware("2.0.0")
	_, err := f.start(fw.ID, "1.0.0", keys...)
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "at most 5 devices, got 6") {
		t.Fatalf("six devices: err = %v, want refused at most 5", err)
	}
	if ps := f.pushes(); len(ps) != 0 || f.fw(fw.ID).Status != ota.FirmwareUnverified {
		t.Fatalf("after refusal: %d pushes, firmware %s; want none, unverified", len(ps), f.fw(fw.ID).Status)
	}
}

func TestVerifyStartNamesEveryOffendingDevice(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("ok", "1.0.0"), f.inform("old", "0.9.0"), f.inform("done", "2.0.0"))
	fw := f.firmware("2.0.0")
	_, err := f.start(fw.ID, "1.0.0", "ok", "old", "done", "ghost")
	want := "cannot verify on old (reports 0.9.0, not one of the chosen versions); " +
		"done (already on 2.0.0); ghost (no such device of product pk1 has reported a version)"
	if ota.KindOf(err) != ota.KindRefused || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestVerifyNeedsReportedVersions(t *testing.T) {
	f := newFleet(t)
	fw := f.firmware("2.0.0")
	_, err := f.start(fw.ID, "1.0.0", "d1")
	if ota.KindOf(err) != ota.KindNoVersions || !strings.Contains(err.Error(), ota.NoVersionsMessage) {
		t.Fatalf("err = %v, want %q", err, ota.NoVersionsMessage)
	}
	f.send(f.inform("d1", "1.1.0"))
	_, err = f.start(fw.ID, "1.0.0", "d1")
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "reports version 1.0.0") {
		t.Fatalf("unreported source: err = %v", err)
	}
}

func TestVerifyStartTwiceIsRefused(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1")
	rep, err := f.start(fw.ID, "1.0.0", "d1")
	if ota.KindOf(err) != ota.KindRefused || rep == nil || rep.Round.Number != 1 ||
		!strings.Contains(ota.HintOf(err), "verify reverify") {
		t.Fatalf("second start: rep %v err %v (hint %q), want refusal with round 1 and reverify hint",
			rep, err, ota.HintOf(err))
	}
}

// Field case 6: a device that reported progress before the cancel was
// processed cannot be canceled; its own reports decide its status.
func TestCancelRefusesStartedJobs(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"), f.inform("d2", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1", "d2")
	f.ackPushes()
	f.send(f.progress("d1", 10))
	err := f.st.Update(func(tx ota.Tx) error {
		_, err := ota.CancelVerification(tx, fw.ID, []string{"d1", "d2"}, f.env())
		return err
	})
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "d1 (In progress)") {
		t.Fatalf("cancel: err = %v, want refusal naming d1 In progress", err)
	}
	wantStatus(t, f.job("d2"), ota.JobToBeUpgraded, "") // all or nothing
	f.send(f.progress("d1", 100), f.inform("d1", "2.0.0"))
	wantStatus(t, f.job("d1"), ota.JobSucceeded, "")
}

// Field case 7: verify d1, cancel it, re-verify d1; a late progress 100 of
// the first round does not finish the new job; the new job succeeds.
func TestReverifyIgnoresTheOldRoundsLateMessages(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	first := f.mustStart(fw.ID, "1.0.0", "d1")
	f.ackPushes()
	f.update(func(tx ota.Tx) error {
		_, err := ota.CancelVerification(tx, fw.ID, []string{"d1"}, f.env())
		return err
	})
	var second *ota.RoundReport
	f.update(func(tx ota.Tx) error {
		var err error
		second, _, err = ota.Reverify(tx, ota.VerifySpec{Firmware: fw.ID,
			FromVersions: []string{"1.0.0"}, Devices: []string{"d1"}}, f.env())
		return err
	})
	f.ackPushes()
	late := f.progress("d1", 100)
	late.JobID = first.Jobs[0].ID
	f.send(late)
	if j := f.job("d1"); j.ID != second.Jobs[0].ID || j.Status != ota.JobToBeUpgraded {
		t.Fatalf("after the late 100: job %s %s, want %s to-be-upgraded", j.ID, j.Status, second.Jobs[0].ID)
	}
	f.send(f.progress("d1", 50), f.progress("d1", 100), f.inform("d1", "2.0.0"))
	wantStatus(t, f.job("d1"), ota.JobSucceeded, "")
	if got := f.fw(fw.ID); got.Verdict != ota.VerdictPassed {
		t.Fatalf("verdict = %q, want passed", got.Verdict)
	}
}

func TestOfflineDeviceIsPushedWhenItReports(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1")
	f.ackPushes()
	f.tick(10 * time.Minute)
	f.send(f.inform("d1", "1.0.0")) // reconnected
	if ps := f.pushes(); len(ps) != 1 || ps[0].Params.JobID != f.job("d1").ID {
		t.Fatalf("after the report: outbox %v, want one push for the job", ps)
	}
}

func TestVerificationJobTimesOut(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1")
	f.ackPushes()
	f.send(f.progress("d1", 40))
	f.tick(29 * time.Minute)
	f.update(func(tx ota.Tx) error { return ota.ExpireJobs(tx, f.env()) })
	wantStatus(t, f.job("d1"), ota.JobInProgress, "")
	f.tick(time.Minute)
	f.update(func(tx ota.Tx) error { return ota.ExpireJobs(tx, f.env()) })
	wantStatus(t, f.job("d1"), ota.JobFailed, "timed out at step 40")
	// Truth rule 5: a later report of the target corrects it.
	f.send(f.inform("d1", "2.0.0"))
	if j := f.job("d1"); j.Status != ota.JobSucceeded {
		t.Fatalf("after late success: %s, want succeeded", j.Status)
	}
	if got := f.fw(fw.ID); got.Verdict != ota.VerdictPassed {
		t.Fatalf("verdict after correction = %q, want passed", got.Verdict)
	}
}

func TestDuplicateDeliveryIsRecordedOnce(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	p := f.progress("d1", 10)
	f.send(p)
	dup := p
	dup.Dup = true
	f.send(dup)
	var n int
	f.view(func(tx ota.Tx) error {
		return tx.EachEvent(ota.DeviceSubject("pk1", "d1"), func(e *ota.Event) error {
			if e.Payload == string(p.Payload) {
				n++
			}
			return nil
		})
	})
	if n != 1 {
		t.Fatalf("progress recorded %d times, want 1", n)
	}
}

func TestRetainedReportChangesNoKnownDevice(t *testing.T) {
	f := newFleet(t)
	r := f.inform("d1", "0.1.0")
	r.Retained = true
	f.send(r) // unknown device: registered
	f.send(f.inform("d1", "1.0.0"))
	stale := f.inform("d1", "0.1.0")
	stale.Retained = true
	f.send(stale)
	var d *ota.Device
	f.view(func(tx ota.Tx) error { d, _ = tx.Device("pk1", "d1"); return nil })
	if d.Version != "1.0.0" {
		t.Fatalf("version after a retained report = %q, want 1.0.0", d.Version)
	}
}

func TestInvalidReportIsRecordedAndChangesNothing(t *testing.T) {
	f := newFleet(t)
	bad := ota.Report{Topic: "/sys/pk1/a b/ota/device/inform", Payload: []byte("{"),
		Invalid: "device key contains a space"}
	if replies := f.send(bad); len(replies) != 0 {
		t.Fatalf("replies to an invalid message: %v", replies)
	}
	var events int
	f.view(func(tx ota.Tx) error {
		return tx.EachEvent("message", func(e *ota.Event) error {
			if e.Action == "rejected" && e.Topic == bad.Topic {
				events++
			}
			return nil
		})
	})
	if events != 1 {
		t.Fatalf("rejected events = %d, want 1", events)
	}
}

// --max-failures alone tolerates that many failures: the default
// --min-success leaves room for them.
func TestMaxFailuresAlone(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"), f.inform("d2", "1.0.0"), f.inform("d3", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.update(func(tx ota.Tx) error {
		_, err := ota.StartVerification(tx, ota.VerifySpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
			Devices: []string{"d1", "d2", "d3"}, MaxFailures: 1}, f.env())
		return err
	})
	f.ackPushes()
	f.send(f.progress("d1", -2), f.progress("d2", 100), f.inform("d2", "2.0.0"),
		f.progress("d3", 100), f.inform("d3", "2.0.0"))
	if got := f.fw(fw.ID); got.Verdict != ota.VerdictPassed {
		t.Fatalf("verdict with 1 failure and --max-failures 1 = %q, want passed", got.Verdict)
	}
}

// A device whose first progress is recorded before its push's
// acknowledgement still times out (the race left it In progress forever).
func TestProgressBeforeAckStillTimesOut(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "d1")
	f.send(f.progress("d1", 10)) // before the sender marked the push
	f.ackPushes()
	f.tick(ota.DefaultJobTimeout)
	f.update(func(tx ota.Tx) error { return ota.ExpireJobs(tx, f.env()) })
	wantStatus(t, f.job("d1"), ota.JobFailed, "timed out at step 10")
}

// A retained message comes again with every subscription: it is recorded
// once, not once per command.
func TestRetainedMessageRecordedOnce(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	r := f.inform("d1", "0.9.0")
	r.Retained = true
	for i := 0; i < 3; i++ {
		f.send(r)
	}
	n := 0
	f.view(func(tx ota.Tx) error {
		return tx.EachEvent(ota.DeviceSubject("pk1", "d1"), func(e *ota.Event) error {
			if e.Action == "retained" {
				n++
			}
			return nil
		})
	})
	if n != 1 {
		t.Fatalf("retained message recorded %d times, want 1", n)
	}
}
