package ota

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Defaults of the rollout controls (DESIGN.md 5.4).
const (
	DefaultMaxConcurrent = 300
	DefaultBatchTimeout  = 2 * time.Hour
	DefaultStartTimeout  = 24 * time.Hour
)

// Reasons a device is left out of a batch task.
const (
	SkipOnTarget    = "already on target"
	SkipBusy        = "active job"
	SkipDowngrade   = "downgrade"
	SkipUnknown     = "no version reported"
	SkipOtherSource = "not a chosen source version"
)

// maxSkipExamples is how many skipped devices a plan names; the rest are
// counted by reason.
const maxSkipExamples = 20

// BatchSpec is a request for a batch upgrade.
type BatchSpec struct {
	Firmware     string   // id or PK/VERSION
	FromVersions []string // source versions; empty: every reported version but the target
	Devices      []string // only these devices, when given
	All          bool     // every device of the product

	AllowFailedVerification bool // overrides a failed verdict, never the status
	AllowUnverifiedSource   bool // allows source versions the verification did not cover
	AllowDowngrade          bool // allows devices on a newer version than the target

	Controls TaskControls
}

// Skip is a device left out of a plan, and why.
type Skip struct {
	DeviceKey string `json:"deviceKey"`
	Version   string `json:"version"`
	Reason    string `json:"reason"`
	Detail    string `json:"detail,omitempty"`
}

// BatchPlan is what a batch upgrade would do: its targets by source version
// and the devices it leaves out. It holds the target devices' keys, not
// their records.
type BatchPlan struct {
	Firmware  *Firmware
	Sources   []VersionCount // targets by source version
	Targets   int
	Skipped   map[string]int // by reason
	Examples  []Skip         // the first skipped devices
	Uncovered []string       // target source versions the verification did not cover
	targets   []planTarget
	planning  []string // running tasks of the product with devices reserved (PlanningTasks)
}

type planTarget struct{ deviceKey, version string }

// ExpectedDuration is how long pushing every target takes at the plan's
// rate; zero when there is no rate limit.
func (p *BatchPlan) ExpectedDuration(c TaskControls) time.Duration {
	if c.Rate <= 0 || p.Targets == 0 {
		return 0
	}
	return time.Duration(float64(p.Targets) / float64(c.Rate) * float64(time.Minute))
}

// ValidateControls checks the rollout controls and fills in the defaults of
// the timeouts.
func ValidateControls(c *TaskControls) error {
	switch {
	case c.MaxConcurrent < 0:
		return Invalid("--max-concurrent %d must not be negative (0: no limit)", c.MaxConcurrent)
	case c.Rate < 0:
		return Invalid("--rate %d must not be negative (0: no limit)", c.Rate)
	case c.Retries < 0:
		return Invalid("--retries %d must not be negative", c.Retries)
	case math.IsNaN(c.AbortFailureRate) || c.AbortFailureRate < 0 || c.AbortFailureRate > 1:
		return Invalid("--abort-failure-rate %g must be between 0 and 1", c.AbortFailureRate)
	case c.AbortMinFinished < 0:
		return Invalid("--abort-min-finished %d must not be negative", c.AbortMinFinished)
	case c.Timeout < 0 || c.StartTimeout < 0:
		return Invalid("--timeout and --start-timeout must not be negative")
	}
	if c.Timeout == 0 {
		c.Timeout = Duration(DefaultBatchTimeout)
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = Duration(DefaultStartTimeout)
	}
	return nil
}

// PlanBatch checks the gate and chooses the targets of a batch upgrade. It
// changes nothing: CreateTask turns the plan into a task.
func PlanBatch(tx Tx, spec BatchSpec) (*BatchPlan, error) {
	if err := ValidateControls(&spec.Controls); err != nil {
		return nil, err
	}
	f, err := ResolveFirmware(tx, spec.Firmware)
	if err != nil {
		return nil, err
	}
	if err := checkGate(tx, f, spec); err != nil {
		return nil, err
	}
	spec.FromVersions = dedupe(spec.FromVersions)
	p := &BatchPlan{Firmware: f, Skipped: map[string]int{}}
	if err := chooseTargets(tx, f, spec, p); err != nil {
		return nil, err
	}
	return p, checkCoverage(tx, f, spec, p)
}

// checkGate enforces the rule otactl exists for: no batch upgrade of a
// firmware that has not passed verification.
func checkGate(tx Tx, f *Firmware, spec BatchSpec) error {
	if f.Status != FirmwareVerified {
		err := Refused("firmware %s is %s: a batch upgrade needs a firmware that passed verification",
			f.ID, f.Status)
		if f.Status == FirmwareVerifying {
			return err.WithHint("otactl verify status %s --wait", f.ID)
		}
		return err.WithHint("otactl verify start %s --from-version ... --device ...", f.ID)
	}
	if f.Verdict != VerdictPassed && !spec.AllowFailedVerification {
		return Refused("firmware %s failed its verification", f.ID).
			WithHint("otactl firmware show %s; --allow-failed-verification overrides the verdict", f.ID)
	}
	rounds, err := Rounds(tx, f)
	if err != nil {
		return err
	}
	for _, r := range rounds {
		if !r.Finished() {
			return Refused("firmware %s has verification round %d still running: %s", f.ID,
				r.Round.Number, activeJobs(r)).
				WithHint("otactl verify status %s --wait (a job ends when its device reports, "+
					"or fails once its timeout passes)", f.ID)
		}
	}
	t, err := RunningTask(tx, f.ID)
	if err != nil || t == nil {
		return err
	}
	return Refused("firmware %s already has a running batch task %s", f.ID, t.ID).
		WithHint("otactl batch-upgrade status %s", t.ID)
}

// RunningTask returns the running batch task of a firmware, nil when it has
// none; the gate allows one at a time.
func RunningTask(tx Tx, firmwareID string) (*Task, error) {
	var running *Task
	err := tx.EachTask(func(t *Task) error {
		if t.FirmwareID == firmwareID && t.Status == TaskRunning {
			running = t
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return running, err
}

// activeJobs names a round's unfinished jobs, and when each times out, for
// the operator who must wait for them: an older round's job in progress
// cannot be canceled, only waited for.
func activeJobs(r *RoundReport) string {
	var parts []string
	for _, j := range r.Jobs {
		if !j.Status.Active() {
			continue
		}
		part := j.DeviceKey + " " + j.Status.Label()
		if !j.PushedAt.IsZero() {
			due := j.PushedAt.Add(time.Duration(r.Round.JobTimeout)).UTC()
			part += ", times out at " + due.Format(time.RFC3339)
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "; ")
}

func chooseTargets(tx Tx, f *Firmware, spec BatchSpec, p *BatchPlan) error {
	var err error
	if p.planning, err = PlanningTasks(tx, f.ProductKey); err != nil {
		return err
	}
	if len(spec.Devices) > 0 {
		for _, k := range dedupe(spec.Devices) {
			if err := ValidateKey("device key", k); err != nil {
				return err
			}
		}
		for _, k := range dedupe(spec.Devices) {
			d, err := tx.Device(f.ProductKey, k)
			if err != nil {
				return err
			}
			if d == nil {
				p.skip(Skip{DeviceKey: k, Reason: SkipUnknown})
				continue
			}
			if err := p.consider(tx, f, spec, d, true); err != nil {
				return err
			}
		}
		return nil
	}
	if !spec.All && len(spec.FromVersions) == 0 {
		return Invalid("choose the devices: --from-version, --device, --devices-file or --all")
	}
	return tx.EachDevice(f.ProductKey, func(d *Device) error { return p.consider(tx, f, spec, d, false) })
}

// consider decides one device. Devices on other source versions are only
// reported as skipped when they were named one by one.
func (p *BatchPlan) consider(tx Tx, f *Firmware, spec BatchSpec, d *Device, named bool) error {
	skip := Skip{DeviceKey: d.DeviceKey, Version: d.Version}
	if SameVersion(d.Version, f.Version) {
		skip.Reason = SkipOnTarget
		p.skip(skip)
		return nil
	}
	if len(spec.FromVersions) > 0 &&
		!slices.ContainsFunc(spec.FromVersions, func(v string) bool { return SameVersion(v, d.Version) }) {
		if named {
			skip.Reason = SkipOtherSource
			p.skip(skip)
		}
		return nil
	}
	if d.ActiveJob != "" {
		skip.Reason, skip.Detail = SkipBusy, "busy with "+d.ActiveJob
		if j, err := tx.Job(d.ActiveJob); err != nil {
			return err
		} else if j != nil {
			skip.Detail = fmt.Sprintf("busy with %s (firmware %s, %s)", j.ID, j.FirmwareID, j.Status.Label())
		}
		p.skip(skip)
		return nil
	}
	if id, err := PlannedIn(tx, p.planning, d.DeviceKey); err != nil {
		return err
	} else if id != "" {
		skip.Reason, skip.Detail = SkipBusy, "planned in batch task "+id+", not pushed yet"
		p.skip(skip)
		return nil
	}
	if c, ok := CompareVersions(d.Version, f.Version); ok && c > 0 && !spec.AllowDowngrade {
		skip.Reason, skip.Detail = SkipDowngrade, d.Version+" is newer than "+f.Version
		p.skip(skip)
		return nil
	}
	p.targets = append(p.targets, planTarget{d.DeviceKey, d.Version})
	p.Targets++
	p.countSource(d.Version)
	return nil
}

func (p *BatchPlan) skip(s Skip) {
	p.Skipped[s.Reason]++
	if len(p.Examples) < maxSkipExamples {
		p.Examples = append(p.Examples, s)
	}
}

func (p *BatchPlan) countSource(v string) {
	for i := range p.Sources {
		if SameVersion(p.Sources[i].Version, v) {
			p.Sources[i].Devices++
			return
		}
	}
	p.Sources = append(p.Sources, VersionCount{Version: v, Devices: 1})
}

// checkCoverage requires every target source version to have been upgraded
// from successfully in the firmware's newest, passed, verification round:
// an image verified only from the new branch must not brick the old one.
func checkCoverage(tx Tx, f *Firmware, spec BatchSpec, p *BatchPlan) error {
	rep, err := NewestRound(tx, f)
	if err != nil {
		return err
	}
	var covered []string
	if rep != nil {
		for _, j := range rep.Jobs {
			if j.Status == JobSucceeded {
				covered = append(covered, j.SourceVersion)
			}
		}
	}
	sources := make([]string, 0, len(p.Sources))
	for _, s := range p.Sources {
		sources = append(sources, s.Version)
	}
	if spec.Controls.Incremental {
		// Devices on any chosen source version may join later: each must
		// be covered, whether or not a device reports it now.
		sources = append(sources, spec.FromVersions...)
	}
	for _, v := range dedupe(sources) {
		if !slices.ContainsFunc(covered, func(c string) bool { return SameVersion(c, v) }) &&
			!slices.ContainsFunc(p.Uncovered, func(u string) bool { return SameVersion(u, v) }) {
			p.Uncovered = append(p.Uncovered, v)
		}
	}
	if len(p.Uncovered) == 0 || spec.AllowUnverifiedSource {
		return nil
	}
	return Refused("the verification of firmware %s covered no upgrade from %s",
		f.ID, strings.Join(p.Uncovered, ", ")).
		WithHint("verify from those versions with otactl verify reverify, or pass --allow-unverified-source")
}

// CreateTask turns a plan made in the same transaction into a running task
// that holds every target. Nothing is pushed yet, and no job exists yet:
// the targets are recorded in the task's planned set, and ReconcileTasks
// gives each its job when the controls let it be pushed (dispatchPlanned).
//
// Creating every job up front cost five writes per device before the first
// push, and for a fleet of 100,000 either hundreds of megabytes of dirty
// pages in one transaction or a task that stood half created across many.
// A planned device is reserved all the same: verification rounds and other
// tasks treat it as busy (PlannedIn).
func CreateTask(tx Tx, p *BatchPlan, spec BatchSpec, env Env) (*Task, error) {
	if p.Targets == 0 {
		return nil, Refused("no device to upgrade to %s: %s", p.Firmware.Version, CountSummary(p.Skipped))
	}
	if err := ValidateControls(&spec.Controls); err != nil {
		return nil, err
	}
	seq, err := tx.NextSeq(TaskPrefix)
	if err != nil {
		return nil, err
	}
	now, f := env.now(), p.Firmware
	t := &Task{ID: FormatID(TaskPrefix, seq), FirmwareID: f.ID, ProductKey: f.ProductKey,
		TargetVersion: f.Version, Status: TaskRunning, Controls: spec.Controls,
		Counts: TaskCounts{Targets: p.Targets, Planned: p.Targets}, Skipped: p.Skipped,
		Tokens: rateBurst(spec.Controls.Rate), TokensAt: now, CreatedAt: now, UpdatedAt: now}
	t.FromVersions, t.AllowDowngrade = spec.FromVersions, spec.AllowDowngrade
	if len(t.FromVersions) == 0 {
		for _, s := range p.Sources {
			t.FromVersions = append(t.FromVersions, s.Version)
		}
	}
	for _, target := range p.targets {
		if err := tx.SetAdd(taskPlanned(t.ID), target.deviceKey); err != nil {
			return nil, err
		}
	}
	if err := tx.PutTask(t); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("batch task %s to %s created for %d devices; skipped: %s",
		t.ID, f.Version, p.Targets, CountSummary(p.Skipped))
	if err := tx.AppendEvent(&Event{Time: now, Subject: "task/" + t.ID, Action: "created",
		Detail: detail}); err != nil {
		return nil, err
	}
	return t, tx.AppendEvent(&Event{Time: now, Subject: FirmwareSubject(f.ID), Action: "batch",
		Detail: detail})
}

// PlanningTasks returns the IDs of the running tasks of a product that
// still have planned devices: those whose targets are reserved without a
// job. Callers that check many devices read it once and pass it to
// PlannedIn.
func PlanningTasks(tx Tx, productKey string) ([]string, error) {
	var ids []string
	err := tx.EachTask(func(t *Task) error {
		if t.ProductKey == productKey && t.reserves() {
			ids = append(ids, t.ID)
		}
		return nil
	})
	return ids, err
}

// reserves reports whether t holds devices in its plan that other rounds
// and tasks must leave alone: only a running task does.
func (t *Task) reserves() bool { return t.Status == TaskRunning && t.Counts.Planned > 0 }

// PlannedIn returns the first of the tasks whose planned set holds the
// device, or "" when none does.
func PlannedIn(tx Tx, taskIDs []string, deviceKey string) (string, error) {
	for _, id := range taskIDs {
		ok, err := tx.SetHas(taskPlanned(id), deviceKey)
		if err != nil || ok {
			return id, err
		}
	}
	return "", nil
}

// PlannedProblems checks that a task's planned set agrees with its counts
// and names each disagreement; `state check` runs it over every task. A
// running task's set holds its planned devices; a finished one's, those it
// canceled before their turn, which are among its canceled jobs.
func PlannedProblems(tx Tx, t *Task) ([]string, error) {
	n := 0
	if err := EachPlanned(tx, t.ID, func(string) error { n++; return nil }); err != nil {
		return nil, err
	}
	switch {
	case t.Status == TaskRunning && n != t.Counts.Planned:
		return []string{fmt.Sprintf("task %s counts %d planned devices, its planned set holds %d",
			t.ID, t.Counts.Planned, n)}, nil
	case t.Status != TaskRunning && (t.Counts.Planned != 0 || n > t.Counts.Canceled):
		return []string{fmt.Sprintf("task %s is %s with %d planned and %d canceled devices, "+
			"its planned set holds %d", t.ID, t.Status, t.Counts.Planned, t.Counts.Canceled,
			n)}, nil
	}
	return nil, nil
}

// EachPlanned visits the planned set of a task in key order: the devices
// still waiting for their job while it runs, and once it stopped, those it
// canceled before their turn.
func EachPlanned(tx Tx, taskID string, fn func(deviceKey string) error) error {
	return tx.SetEach(taskPlanned(taskID), "", fn)
}

// dispatchPlanned gives up to n planned devices of t their job and pushes
// them. Each device is looked at again, since it may have changed since it
// was planned: one that no longer qualifies is skipped for the reason the
// plan would have given, and does not count against n.
func (w *work) dispatchPlanned(t *Task, n int) error {
	for n > 0 && t.Counts.Planned > 0 {
		keys, err := setFirst(w.tx, taskPlanned(t.ID), n)
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return Errorf(KindInternal, "task %s counts %d planned devices, its planned set none",
				t.ID, t.Counts.Planned)
		}
		for _, k := range keys {
			if err := w.tx.SetRemove(taskPlanned(t.ID), k); err != nil {
				return err
			}
			t.Counts.Planned--
			started, err := w.startPlanned(t, k)
			if err != nil {
				return err
			}
			if started {
				n--
			}
		}
		w.touch(t)
	}
	return nil
}

// startPlanned gives a planned device of t its job and pushes it, or counts
// it skipped when it no longer qualifies. The caller has taken it out of
// the planned set and count.
func (w *work) startPlanned(t *Task, deviceKey string) (bool, error) {
	f, err := w.firmware(t.FirmwareID)
	if err != nil {
		return false, err
	}
	if f == nil {
		return false, Errorf(KindInternal, "task %s names firmware %s, which does not exist",
			t.ID, t.FirmwareID)
	}
	d, err := w.tx.Device(t.ProductKey, deviceKey)
	if err != nil {
		return false, err
	}
	if reason := plannedSkip(t, d, ""); reason != "" {
		t.Counts.Targets--
		if t.Skipped == nil {
			t.Skipped = map[string]int{}
		}
		t.Skipped[reason]++
		return false, nil
	}
	now := w.env.now()
	j, err := newJob(w.tx, f, d, now)
	if err != nil {
		return false, err
	}
	j.TaskID = t.ID
	d.ActiveJob = j.ID
	if err := w.tx.PutDevice(d); err != nil {
		return false, err
	}
	return true, w.launch(t, j, now)
}

// plannedSkip is why a device of t no longer takes a job, or "": the plan's
// own reasons, applied to the device as it is now. own is the job of t the
// device may hold already (a queued retry), which does not make it busy.
func plannedSkip(t *Task, d *Device, own string) string {
	switch {
	case d == nil || d.Version == "":
		return SkipUnknown
	case SameVersion(d.Version, t.TargetVersion):
		return SkipOnTarget
	case !slices.ContainsFunc(t.FromVersions, func(v string) bool {
		return SameVersion(v, d.Version)
	}):
		return SkipOtherSource
	case d.ActiveJob != "" && d.ActiveJob != own:
		return SkipBusy
	}
	if c, ok := CompareVersions(d.Version, t.TargetVersion); ok && c > 0 && !t.AllowDowngrade {
		return SkipDowngrade
	}
	return ""
}

// enqueueJob creates a job of t for d and puts it in t's queue. It does not
// touch t's counts.
func enqueueJob(tx Tx, t *Task, f *Firmware, d *Device, attempt int, now time.Time) error {
	j, err := newJob(tx, f, d, now)
	if err != nil {
		return err
	}
	j.TaskID, j.Attempt = t.ID, attempt
	d.ActiveJob = j.ID
	if err := tx.PutDevice(d); err != nil {
		return err
	}
	if err := tx.PutJob(j); err != nil {
		return err
	}
	return tx.SetAdd(taskQueue(t.ID), jobMember(j.ID))
}

// CountSummary writes tallies by reason as "2 downgrade, 5 already on
// target", in the reasons' order; "none" when there are none.
func CountSummary(counts map[string]int) string {
	if len(counts) == 0 {
		return "none"
	}
	var parts []string
	for _, reason := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d %s", counts[reason], reason))
	}
	return strings.Join(parts, ", ")
}

// The sets that index a task's jobs: those waiting for their turn, and those
// pushed and not finished. Members are job sequence numbers padded to a
// fixed width, so that byte order is creation order.
func taskQueue(taskID string) string { return "task/" + taskID + "/queue" }

// taskPlanned is the set of a task's targets that have no job yet, by
// device key (see CreateTask).
func taskPlanned(taskID string) string { return "task/" + taskID + "/planned" }
func taskFlight(taskID string) string  { return "task/" + taskID + "/flight" }

func jobMember(jobID string) string {
	_, seq, _ := ParseID(jobID)
	return fmt.Sprintf("%020d", seq)
}

func memberJob(m string) string {
	var seq uint64
	fmt.Sscanf(m, "%d", &seq)
	return FormatID(JobPrefix, seq)
}

// rateBurst is how many pushes a rate limit lets through at once: five
// seconds' worth, at least one.
func rateBurst(rate int) float64 {
	return max(1, float64(rate)/12)
}
