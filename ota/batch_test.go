package ota_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

// verified registers a firmware and passes its verification from each
// source version on a verifier device of its own ("ver-<source>").
func (f *fleet) verified(version string, sources ...string) *ota.Firmware {
	f.t.Helper()
	fw := f.firmware(version)
	var keys []string
	for _, s := range sources {
		k := "ver-" + s
		keys = append(keys, k)
		f.send(f.inform(k, s))
	}
	f.mustStart(fw.ID, strings.Join(sources, ","), keys...)
	f.ackPushes()
	f.upgrade(version, keys...)
	if got := f.fw(fw.ID); got.Verdict != ota.VerdictPassed {
		f.t.Fatalf("verification of %s: verdict %q, want passed", version, got.Verdict)
	}
	return fw
}

func (f *fleet) plan(spec ota.BatchSpec) (*ota.BatchPlan, error) {
	var p *ota.BatchPlan
	err := f.st.View(func(tx ota.Tx) error {
		var err error
		p, err = ota.PlanBatch(tx, spec)
		return err
	})
	return p, err
}

func (f *fleet) createTask(spec ota.BatchSpec) (*ota.Task, error) {
	var t *ota.Task
	err := f.st.Update(func(tx ota.Tx) error {
		p, err := ota.PlanBatch(tx, spec)
		if err != nil {
			return err
		}
		t, err = ota.CreateTask(tx, p, spec, f.env())
		return err
	})
	return t, err
}

func (f *fleet) mustTask(spec ota.BatchSpec) *ota.Task {
	f.t.Helper()
	t, err := f.createTask(spec)
	if err != nil {
		f.t.Fatalf("CreateTask: %v", err)
	}
	return t
}

// reconcile runs one reconcile step and acknowledges every push it queued,
// returning the devices pushed.
func (f *fleet) reconcile() []string {
	f.t.Helper()
	f.update(func(tx ota.Tx) error { return ota.ReconcileTasks(tx, f.env()) })
	var keys []string
	for _, p := range f.pushes() {
		keys = append(keys, p.DeviceKey)
	}
	f.ackPushes()
	return keys
}

func (f *fleet) task(id string) *ota.Task {
	f.t.Helper()
	var t *ota.Task
	f.view(func(tx ota.Tx) error {
		var err error
		t, err = tx.Task(id)
		return err
	})
	return t
}

func (f *fleet) devices(n int, prefix, version string) []string {
	var keys []string
	var reports []ota.Report
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf("%s%d", prefix, i)
		keys = append(keys, k)
		reports = append(reports, f.inform(k, version))
	}
	f.send(reports...)
	return keys
}

// upgrade has each device report progress 100, then the version it took.
func (f *fleet) upgrade(version string, keys ...string) {
	f.t.Helper()
	for _, k := range keys {
		f.send(f.progress(k, 100), f.inform(k, version))
	}
}

// upgradePushed has every device with a push in the outbox upgrade to
// version, and acknowledges the pushes.
func (f *fleet) upgradePushed(version string) {
	f.t.Helper()
	for _, p := range f.pushes() {
		f.upgrade(version, p.DeviceKey)
	}
	f.ackPushes()
}

func controls() ota.TaskControls {
	return ota.TaskControls{MaxConcurrent: ota.DefaultMaxConcurrent}
}

func TestBatchGate(t *testing.T) {
	f := newFleet(t)
	f.devices(3, "d", "1.0.0")
	unverified := f.firmware("3.0.0")
	_, err := f.plan(ota.BatchSpec{Firmware: unverified.ID, All: true})
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "is unverified") {
		t.Fatalf("unverified firmware: err = %v, want refusal", err)
	}

	failed := f.firmware("2.0.0")
	f.send(f.inform("bad", "1.0.0"))
	f.mustStart(failed.ID, "1.0.0", "bad")
	f.ackPushes()
	f.send(f.progress("bad", -2))
	_, err = f.plan(ota.BatchSpec{Firmware: failed.ID, All: true})
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "failed its verification") {
		t.Fatalf("failed verdict: err = %v, want refusal", err)
	}
	// The override takes the verdict, never the status; coverage still holds:
	// nothing was upgraded from 1.0.0.
	_, err = f.plan(ota.BatchSpec{Firmware: failed.ID, All: true, AllowFailedVerification: true})
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "covered no upgrade from 1.0.0") {
		t.Fatalf("failed verdict overridden: err = %v, want coverage refusal", err)
	}
	p, err := f.plan(ota.BatchSpec{Firmware: failed.ID, All: true, AllowFailedVerification: true,
		AllowUnverifiedSource: true})
	if err != nil || p.Targets != 4 { // d1-d3 and the device that failed
		t.Fatalf("both overrides: plan %v err %v, want 4 targets", p, err)
	}
}

func TestBatchNeedsChosenDevices(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	_, err := f.plan(ota.BatchSpec{Firmware: fw.ID})
	if ota.KindOf(err) != ota.KindInvalid {
		t.Fatalf("no targets named: err = %v, want invalid", err)
	}
}

// Coverage: a fleet on an old branch is not upgraded with an image verified
// only from the new one.
func TestBatchCoverage(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("3.0.0", "2.0.0")
	f.devices(2, "new", "2.0.0")
	f.devices(2, "old", "1.0.0")
	_, err := f.plan(ota.BatchSpec{Firmware: fw.ID, All: true})
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "covered no upgrade from 1.0.0") {
		t.Fatalf("uncovered 1.0.0: err = %v", err)
	}
	p, err := f.plan(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"2.0.0"}})
	if err != nil || p.Targets != 2 {
		t.Fatalf("covered source only: plan %+v, err %v; want 2 targets", p, err)
	}
}

// Field case 3: 2.1.0 is a downgrade, 2.0.0 is on target, 1.0.0 upgrades.
func TestBatchDowngradeAndOnTarget(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.send(f.inform("newer", "2.1.0"), f.inform("same", "2.0.0"), f.inform("older", "1.0.0"))
	spec := ota.BatchSpec{Firmware: fw.ID, Devices: []string{"newer", "same", "older"},
		AllowUnverifiedSource: true, Controls: controls()}
	p, err := f.plan(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Targets != 1 || p.Skipped[ota.SkipDowngrade] != 1 || p.Skipped[ota.SkipOnTarget] != 1 {
		t.Fatalf("plan: %d targets, skipped %v; want 1 target, 1 downgrade, 1 on target", p.Targets, p.Skipped)
	}
	spec.AllowDowngrade = true
	task := f.mustTask(spec)
	if task.Counts.Targets != 2 || task.Skipped[ota.SkipOnTarget] != 1 {
		t.Fatalf("with --allow-downgrade: %+v skipped %v; want 2 targets", task.Counts, task.Skipped)
	}
	if pushed := f.reconcile(); strings.Join(pushed, ",") != "newer,older" {
		t.Fatalf("pushed %v, want newer and older", pushed)
	}
}

// Field case 2: a device with a pending verification job for 2.0.0 is
// skipped by a task for 3.0.0 and receives exactly one command.
func TestBatchSkipsBusyDevice(t *testing.T) {
	f := newFleet(t)
	fw3 := f.verified("3.0.0", "1.0.0")
	f.send(f.inform("busy", "1.0.0"), f.inform("free", "1.0.0"))
	fw2 := f.firmware("2.0.0")
	f.mustStart(fw2.ID, "1.0.0", "busy")
	f.ackPushes()
	p, _ := f.plan(ota.BatchSpec{Firmware: fw3.ID, Devices: []string{"busy"}, AllowUnverifiedSource: true})
	if p == nil || len(p.Examples) != 1 || !strings.Contains(p.Examples[0].Detail, "firmware "+fw2.ID) {
		t.Fatalf("skip detail = %+v, want the busy job's firmware named", p)
	}
	task := f.mustTask(ota.BatchSpec{Firmware: fw3.ID, FromVersions: []string{"1.0.0"}, Controls: controls()})
	if task.Skipped[ota.SkipBusy] != 1 || task.Counts.Targets != 1 {
		t.Fatalf("task: %+v skipped %v; want busy skipped, 1 target", task.Counts, task.Skipped)
	}
	if pushed := f.reconcile(); len(pushed) != 1 || pushed[0] != "free" {
		t.Fatalf("pushed %v, want only free", pushed)
	}
}

// Field case 1: a device offline when the task starts reports 40 minutes
// later: To be upgraded while away, pushed on its report, and its start
// timeout runs from that push.
func TestBatchOfflineDeviceIsPushedOnReport(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.send(f.inform("away", "1.0.0"))
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{StartTimeout: ota.Duration(time.Hour)}})
	f.reconcile() // pushed at once; the device is not there to receive it
	f.tick(40 * time.Minute)
	f.reconcile()
	wantStatus(t, f.job("away"), ota.JobToBeUpgraded, "")
	f.send(f.inform("away", "1.0.0"))
	if ps := f.pushes(); len(ps) != 1 || ps[0].DeviceKey != "away" {
		t.Fatalf("after its report: outbox %v, want one push to away", ps)
	}
	f.ackPushes()
	f.tick(50 * time.Minute) // 90 minutes after the first push, 50 after the second
	f.reconcile()
	wantStatus(t, f.job("away"), ota.JobToBeUpgraded, "")
	f.tick(11 * time.Minute)
	f.reconcile()
	wantStatus(t, f.job("away"), ota.JobFailed, "timed out at step 0")
	if got := f.task(task.ID); got.Status != ota.TaskCompleted || got.Counts.Failed != 1 {
		t.Fatalf("task = %s %+v, want completed with 1 failed", got.Status, got.Counts)
	}
}

// Field case 4, on the rules alone: 10,000 devices, at most 200 in flight,
// 1% failing downloads.
func TestBatchConcurrencyAndCounts(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	keys := f.devices(10000, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{MaxConcurrent: 200}})
	failing := map[string]bool{}
	for i := 0; i < len(keys); i += 100 {
		failing[keys[i]] = true
	}
	for round := 0; ; round++ {
		pushed := f.reconcile()
		got := f.task(task.ID)
		if inFlight := got.Counts.Pushed + got.Counts.InProgress; inFlight > 200 {
			t.Fatalf("round %d: %d jobs in flight, limit 200", round, inFlight)
		}
		if len(pushed) == 0 {
			break
		}
		var reports []ota.Report
		for _, k := range pushed {
			reports = append(reports, f.progress(k, 10))
			if failing[k] {
				reports = append(reports, f.progress(k, -2))
			} else {
				reports = append(reports, f.progress(k, 100), f.inform(k, "2.0.0"))
			}
		}
		f.send(reports...)
	}
	got := f.task(task.ID)
	c := got.Counts
	if got.Status != ota.TaskCompleted || c.Succeeded != 9900 || c.Failed != 100 ||
		c.Succeeded+c.Failed != 10000 || got.Failures["download failed (step -2)"] != 100 {
		t.Fatalf("task = %s %+v failures %v; want completed, 9900 + 100 download failures",
			got.Status, c, got.Failures)
	}
}

func TestBatchRateLimit(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(100, "d", "1.0.0")
	f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{Rate: 60}})
	if n := len(f.reconcile()); n != 5 {
		t.Fatalf("first step pushed %d, want a burst of 5 (5 s at 60/min)", n)
	}
	total := 5
	for i := 0; i < 60; i++ {
		f.tick(time.Second)
		total += len(f.reconcile())
	}
	if total < 60 || total > 66 {
		t.Fatalf("pushed %d in a minute at 60/min, want 60 to 66", total)
	}
}

func TestBatchRetriesThenFails(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(1, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{Retries: 1}})
	f.reconcile()
	first := f.job("d1")
	f.send(f.progress("d1", -4))
	if pushed := f.reconcile(); len(pushed) != 1 {
		t.Fatalf("retry pushed %v, want d1 again", pushed)
	}
	second := f.job("d1")
	if second.ID == first.ID || second.Attempt != 2 || second.Status != ota.JobToBeUpgraded {
		t.Fatalf("second attempt = %+v, want a new job with attempt 2", second)
	}
	f.send(f.progress("d1", -4))
	f.reconcile()
	got := f.task(task.ID)
	if got.Status != ota.TaskCompleted || got.Counts.Failed != 1 || got.Counts.Retried != 1 {
		t.Fatalf("task = %s %+v, want completed, 1 failed after 1 retry", got.Status, got.Counts)
	}
}

func TestBatchAbortsOnFailureRate(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(20, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{MaxConcurrent: 5, AbortFailureRate: 0.5, AbortMinFinished: 4}})
	pushed := f.reconcile()
	f.send(f.progress(pushed[0], 10)) // still running when the task aborts
	f.send(f.progress(pushed[1], -3), f.progress(pushed[2], -3), f.progress(pushed[3], -3))
	f.send(f.progress(pushed[4], 100), f.inform(pushed[4], "2.0.0"))
	got := f.task(task.ID)
	if got.Status != ota.TaskAborted || !strings.Contains(got.Reason, "failure rate 75.0% passed 50.0%") {
		t.Fatalf("task = %s %q, want aborted on the failure rate", got.Status, got.Reason)
	}
	if n := len(f.reconcile()); n != 0 || got.Counts.Canceled != 15 {
		t.Fatalf("after abort: %d pushed, %d canceled; want 0 pushed, 15 queued jobs canceled",
			n, got.Counts.Canceled)
	}
	f.send(f.progress(pushed[0], 100), f.inform(pushed[0], "2.0.0"))
	if got := f.task(task.ID); got.Counts.Succeeded != 2 {
		t.Fatalf("in-progress job after abort: %+v, want it to run to success", got.Counts)
	}
}

func TestBatchInProgressTimeout(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(1, "d", "1.0.0")
	f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{Timeout: ota.Duration(2 * time.Hour)}})
	f.reconcile()
	f.tick(3 * time.Hour) // not started yet: the start timeout (24 h) applies
	f.send(f.progress("d1", 20))
	f.tick(119 * time.Minute)
	f.reconcile()
	wantStatus(t, f.job("d1"), ota.JobInProgress, "")
	f.tick(time.Minute)
	f.reconcile()
	wantStatus(t, f.job("d1"), ota.JobFailed, "timed out at step 20")
}

func TestBatchCancel(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(10, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{MaxConcurrent: 3}})
	pushed := f.reconcile()
	f.send(f.progress(pushed[0], 50))
	f.update(func(tx ota.Tx) error {
		_, err := ota.CancelTask(tx, task.ID, f.env())
		return err
	})
	got := f.task(task.ID)
	if got.Status != ota.TaskCanceled || got.Counts.Canceled != 9 || got.Counts.InProgress != 1 {
		t.Fatalf("canceled task = %s %+v, want 9 canceled, 1 in progress", got.Status, got.Counts)
	}
	if n := len(f.reconcile()); n != 0 {
		t.Fatalf("pushed %d after cancel", n)
	}
	// A canceled device is free for the next task.
	if j := f.job(pushed[1]); j.Status != ota.JobCanceled {
		t.Fatalf("pushed, unstarted job after cancel = %s, want canceled", j.Status)
	}
}

func TestBatchIncrementalJoin(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(1, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{Incremental: true}})
	f.reconcile()
	f.send(f.progress("d1", 100), f.inform("d1", "2.0.0"))
	f.reconcile()
	if got := f.task(task.ID); got.Status != ota.TaskRunning {
		t.Fatalf("incremental task = %s after its jobs finished, want running", got.Status)
	}
	f.send(f.inform("late", "1.0.0"), f.inform("other", "0.5.0"))
	if pushed := f.reconcile(); len(pushed) != 1 || pushed[0] != "late" {
		t.Fatalf("pushed %v, want the device that reported a source version", pushed)
	}
	if got := f.task(task.ID); got.Counts.Targets != 2 {
		t.Fatalf("targets = %d, want 2", got.Counts.Targets)
	}
}

func TestBatchRefusesSecondRunningTask(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(2, "d", "1.0.0")
	f.mustTask(ota.BatchSpec{Firmware: fw.ID, Devices: []string{"d1"}})
	_, err := f.createTask(ota.BatchSpec{Firmware: fw.ID, Devices: []string{"d2"}})
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "already has a running batch task task-1") {
		t.Fatalf("second task: err = %v, want refusal naming task-1", err)
	}
}

// A device that rolls back in an incremental task reports its old, source,
// version: it must not join the same task again and again.
func TestBatchIncrementalDoesNotRejoinAFailedDevice(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(1, "rb", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{Incremental: true, Retries: 1}})
	for attempt := 1; attempt <= 2; attempt++ {
		if pushed := f.reconcile(); len(pushed) != 1 {
			t.Fatalf("attempt %d: pushed %v, want rb1", attempt, pushed)
		}
		f.send(f.progress("rb1", 100), f.inform("rb1", "1.0.0"))
	}
	if pushed := f.reconcile(); len(pushed) != 0 {
		t.Fatalf("after the last attempt rolled back: pushed %v, want nothing", pushed)
	}
	if got := f.task(task.ID); got.Counts.Failed != 1 || got.Counts.Targets != 1 {
		t.Fatalf("task counts = %+v, want 1 target failed once after 1 retry", got.Counts)
	}
}

// An incremental task takes later devices only from covered source versions
// and never downgrades without the flag.
func TestBatchIncrementalKeepsTheGate(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(1, "d", "1.0.0")
	_, err := f.createTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0", "0.9.0"},
		Controls: ota.TaskControls{Incremental: true}})
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), "covered no upgrade from 0.9.0") {
		t.Fatalf("incremental with an uncovered source nobody reports yet: err = %v", err)
	}
	f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0", "3.0.0"},
		AllowUnverifiedSource: true, Controls: ota.TaskControls{Incremental: true}})
	f.reconcile()
	f.send(f.inform("newer", "3.0.0"))
	if pushed := f.reconcile(); len(pushed) != 0 {
		t.Fatalf("a device on 3.0.0 joined a task to 2.0.0 without --allow-downgrade: %v", pushed)
	}
}

// The jobs in progress of an aborted task still time out, so that their
// devices are freed.
func TestBatchAbortedTaskStillTimesOut(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(3, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{Timeout: ota.Duration(time.Hour), AbortFailureRate: 0.1,
			AbortMinFinished: 1}})
	f.reconcile()
	f.send(f.progress("d1", 10), f.progress("d2", -2))
	got := f.task(task.ID)
	if got.Status != ota.TaskAborted || got.Counts.InProgress != 1 || got.Counts.Canceled != 1 {
		t.Fatalf("task = %s %+v, want aborted, d1 in progress, d3 canceled", got.Status, got.Counts)
	}
	f.tick(time.Hour)
	f.reconcile()
	wantStatus(t, f.job("d1"), ota.JobFailed, "timed out at step 10")
}

// unjobbed lists the devices among keys that have no job at all yet: the
// planned targets of a task that have not had their turn.
func (f *fleet) unjobbed(keys []string) []string {
	f.t.Helper()
	var out []string
	f.view(func(tx ota.Tx) error {
		for _, k := range keys {
			d, err := tx.Device("pk1", k)
			if err != nil {
				return err
			}
			if d.ActiveJob == "" && d.LastJob == "" {
				out = append(out, k)
			}
		}
		return nil
	})
	return out
}

// A task records its targets and gives each its job only when its turn to
// be pushed comes. Until then the device is reserved: a verification round
// and another task's plan see it as busy, naming the task. When its turn
// comes it is looked at again, and one that reached the target or moved to
// another version meanwhile is skipped as the plan would have skipped it.
func TestBatchPlannedDevicesAreReservedAndCheckedAgain(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	keys := f.devices(6, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{MaxConcurrent: 2}})
	if c := task.Counts; c.Planned != 6 || c.Queued != 0 || len(f.unjobbed(keys)) != 6 {
		t.Fatalf("after CreateTask: counts %+v, %d devices without a job; want 6 planned, no job",
			c, len(f.unjobbed(keys)))
	}
	first := f.reconcile()
	if len(first) != 2 {
		t.Fatalf("first step pushed %v, want 2 (--max-concurrent 2)", first)
	}
	planned := f.unjobbed(keys)
	if len(planned) != 4 {
		t.Fatalf("%d devices without a job after the first step, want 4", len(planned))
	}

	other := f.firmware("1.5.0")
	_, err := f.start(other.ID, "1.0.0", planned[0])
	want := planned[0] + " (planned in batch task " + task.ID + ", not pushed yet)"
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), want) {
		t.Fatalf("verify start on a planned device: err = %v, want refusal naming %q", err, want)
	}
	f.verified("3.0.0", "1.0.0") // a second firmware, verified on a device of its own
	p, err := f.plan(ota.BatchSpec{Firmware: "pk1/3.0.0", Devices: planned[:1],
		AllowUnverifiedSource: true})
	if err != nil || p.Targets != 0 || p.Skipped[ota.SkipBusy] != 1 ||
		!strings.Contains(p.Examples[0].Detail, "planned in batch task "+task.ID) {
		t.Fatalf("another task's plan of a planned device = %+v, %v; want it skipped as busy",
			p, err)
	}

	f.send(f.inform(planned[1], "2.0.0"), f.inform(planned[2], "1.2.0"))
	for pushed := first; len(pushed) > 0; pushed = f.reconcile() {
		f.upgrade("2.0.0", pushed...)
	}
	f.reconcile()
	got := f.task(task.ID)
	c := got.Counts
	if got.Status != ota.TaskCompleted || c.Planned != 0 || c.Targets != 4 || c.Succeeded != 4 ||
		got.Skipped[ota.SkipOnTarget] != task.Skipped[ota.SkipOnTarget]+1 ||
		got.Skipped[ota.SkipOtherSource] != 1 {
		t.Fatalf("task = %s, counts %+v, skipped %v; want completed, 4 of 4 succeeded, one more "+
			"on target than %v and one on another source", got.Status, c, got.Skipped, task.Skipped)
	}
	if len(f.unjobbed(planned[1:3])) != 2 {
		t.Fatalf("the devices skipped at their turn got a job, want none")
	}
}

// Canceling a task before its planned devices had their jobs counts them
// canceled and leaves them free for the next task.
func TestBatchCancelWithPlannedDevices(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	keys := f.devices(5, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{MaxConcurrent: 1}})
	f.reconcile()
	f.update(func(tx ota.Tx) error {
		_, err := ota.CancelTask(tx, task.ID, f.env())
		return err
	})
	got := f.task(task.ID)
	if got.Status != ota.TaskCanceled || got.Counts.Planned != 0 || got.Counts.Canceled != 5 {
		t.Fatalf("canceled task = %s %+v, want all 5 devices canceled, none planned",
			got.Status, got.Counts)
	}
	next := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: controls()})
	if next.Counts.Targets != len(keys) {
		t.Fatalf("next task targets %d devices, want all %d", next.Counts.Targets, len(keys))
	}
}

// A running task keeps its firmware, even between pushes when no job of it
// is active and devices still wait in its plan.
func TestDeleteFirmwareRefusedWhileATaskRuns(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(3, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: controls()})
	err := f.st.Update(func(tx ota.Tx) error {
		_, err := ota.DeleteFirmware(tx, fw.ID, f.now)
		return err
	})
	want := "running batch task " + task.ID
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), want) {
		t.Fatalf("DeleteFirmware with a running task: err = %v, want refusal naming %q", err, want)
	}
}

// A job of an older round still in progress keeps the gate shut even once
// a newer round passed; the refusal names the device and when its job
// times out, since it cannot be canceled, only waited for.
func TestBatchGateNamesTheUnfinishedJobOfAnOlderRound(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("slow", "1.0.0"), f.inform("d1", "1.0.0"))
	fw := f.firmware("2.0.0")
	f.mustStart(fw.ID, "1.0.0", "slow")
	f.ackPushes()
	f.send(f.progress("slow", 40))
	f.update(func(tx ota.Tx) error {
		spec := ota.VerifySpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
			Devices: []string{"d1"}, JobTimeout: time.Hour}
		_, _, err := ota.Reverify(tx, spec, f.env())
		return err
	})
	f.ackPushes()
	f.send(f.progress("d1", 100), f.inform("d1", "2.0.0"))
	if got := f.fw(fw.ID); got.Verdict != ota.VerdictPassed {
		t.Fatalf("verdict after round 2 = %q, want passed", got.Verdict)
	}
	_, err := f.plan(ota.BatchSpec{Firmware: fw.ID, All: true})
	pushed := f.job("slow").PushedAt
	due := pushed.Add(time.Duration(f.round1Timeout(fw.ID))).Format(time.RFC3339)
	want := "round 1 still running: slow In progress, times out at " + due
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), want) {
		t.Fatalf("plan with round 1 unfinished: err = %v, want refusal containing %q", err, want)
	}
}

func (f *fleet) round1Timeout(fwID string) ota.Duration {
	f.t.Helper()
	var d ota.Duration
	f.view(func(tx ota.Tx) error {
		fw, err := tx.Firmware(fwID)
		if err != nil {
			return err
		}
		rounds, err := ota.Rounds(tx, fw)
		if err != nil || len(rounds) == 0 {
			return fmt.Errorf("rounds of %s: %v", fwID, err)
		}
		d = rounds[0].Round.JobTimeout
		return nil
	})
	return d
}

// A retry waits behind the targets not yet pushed, first come first served:
// pushed first, failing devices once made up the first finished jobs, and
// a rollout with --abort-min-finished 10 aborted on three bad devices out
// of 46 (docs/batch-upgrade.md's worked example).
func TestBatchRetryWaitsBehindPlannedDevices(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.send(f.inform("a1", "1.0.0"), f.inform("b1", "1.0.0"), f.inform("b2", "1.0.0"))
	f.mustTask(ota.BatchSpec{Firmware: fw.ID, Devices: []string{"a1", "b1", "b2"},
		Controls: ota.TaskControls{MaxConcurrent: 1, Retries: 1}})
	var order []string
	for pushed := f.reconcile(); len(pushed) > 0; pushed = f.reconcile() {
		for _, k := range pushed {
			order = append(order, k)
			if k == "a1" {
				f.send(f.progress(k, -2))
			} else {
				f.upgrade("2.0.0", k)
			}
		}
	}
	if want := []string{"a1", "b1", "b2", "a1"}; !slices.Equal(order, want) {
		t.Fatalf("pushed in the order %v, want %v", order, want)
	}
}

// A retry is looked at again like a planned device. A device that failed
// on a version the task does not take is not retried, and one that moved to
// such a version while its retry waited is not pushed: a retry once pushed
// 2.0.0 to a device on 9.0.0 (a downgrade, without --allow-downgrade) and to
// one on 2.0.0-wrong, which no verification covered.
func TestBatchRetryIsCheckedAgain(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.send(f.inform("a1", "1.0.0"), f.inform("a2", "1.0.0"), f.inform("b1", "1.0.0"),
		f.inform("b2", "1.0.0"))
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, Devices: []string{"a1", "a2", "b1", "b2"},
		Controls: ota.TaskControls{MaxConcurrent: 2, Retries: 1}})
	if pushed := f.reconcile(); !slices.Equal(pushed, []string{"a1", "a2"}) {
		t.Fatalf("first step pushed %v, want a1 and a2", pushed)
	}
	// a1 reports a newer version, then fails: no retry. a2 fails on the
	// source version: its retry waits behind b1 and b2.
	f.send(f.inform("a1", "9.0.0"), f.progress("a1", -2), f.progress("a2", -2))
	if pushed := f.reconcile(); !slices.Equal(pushed, []string{"b1", "b2"}) {
		t.Fatalf("second step pushed %v, want b1 and b2", pushed)
	}
	// While a2's retry waits, a2 moves to a version the task does not take.
	f.send(f.inform("a2", "1.5.0"), f.progress("b1", 100), f.inform("b1", "2.0.0"),
		f.progress("b2", 100), f.inform("b2", "2.0.0"))
	if pushed := f.reconcile(); len(pushed) != 0 {
		t.Fatalf("third step pushed %v, want nothing", pushed)
	}
	wantStatus(t, f.job("a2"), ota.JobCanceled, "not pushed: "+ota.SkipOtherSource)
	got := f.task(task.ID)
	c := got.Counts
	if got.Status != ota.TaskCompleted || c.Succeeded != 2 || c.Failed != 1 || c.Retried != 1 ||
		c.Canceled != 1 {
		t.Fatalf("task = %s %+v, want completed: b1, b2 succeeded, a1 failed, a2 retried, canceled",
			got.Status, c)
	}
}

// A new round while a rollout of the same firmware runs would make the
// firmware verifying again, and perhaps failed, under a rollout the gate
// let through as passed: it once went ahead, and the task kept pushing
// after the new round failed.
func TestReverifyRefusedWhileATaskRuns(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(3, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{Rate: 1}})
	err := f.st.Update(func(tx ota.Tx) error {
		_, _, err := ota.Reverify(tx, ota.VerifySpec{Firmware: fw.ID,
			FromVersions: []string{"1.0.0"}, Devices: []string{"d3"}}, f.env())
		return err
	})
	want := "has a running batch task " + task.ID
	if ota.KindOf(err) != ota.KindRefused || !strings.Contains(err.Error(), want) {
		t.Fatalf("Reverify while %s runs: err = %v, want a refusal containing %q", task.ID, err, want)
	}
	if got := f.fw(fw.ID); got.Status != ota.FirmwareVerified || got.Verdict != ota.VerdictPassed {
		t.Fatalf("firmware after the refusal = %s %s, want verified passed", got.Status, got.Verdict)
	}
}

// ReconcileStep bounds what one step pushes, so that a command can send a
// step's pushes while it takes the next; the task's own controls still
// hold, and the task completes only once every device had its turn.
func TestReconcileStepPushesAtMostItsLimit(t *testing.T) {
	f := newFleet(t)
	fw := f.verified("2.0.0", "1.0.0")
	f.devices(7, "d", "1.0.0")
	task := f.mustTask(ota.BatchSpec{Firmware: fw.ID, FromVersions: []string{"1.0.0"},
		Controls: ota.TaskControls{MaxConcurrent: 5}})
	step := func() int {
		var n int
		f.update(func(tx ota.Tx) (err error) {
			n, err = ota.ReconcileStep(tx, f.env(), 3)
			return err
		})
		return n
	}
	var steps []int
	steps = append(steps, step(), step()) // 3, then 2: 5 in flight at most
	f.upgradePushed("2.0.0")
	steps = append(steps, step()) // the last 2
	f.upgradePushed("2.0.0")
	steps = append(steps, step())
	if want := []int{3, 2, 2, 0}; !slices.Equal(steps, want) {
		t.Fatalf("pushed per step %v, want %v", steps, want)
	}
	if got := f.task(task.ID); got.Status != ota.TaskCompleted || got.Counts.Succeeded != 7 {
		t.Fatalf("task = %s %+v, want completed, 7 succeeded", got.Status, got.Counts)
	}
}
