package ota

import (
	"fmt"
	"slices"
	"time"
)

// expireEvery is how often a task's jobs in flight are checked for their
// timeouts: they are counted in minutes and hours, and a task without a
// concurrency limit may have every device in flight.
const expireEvery = 2 * time.Second

// maxFailureReasons bounds the failure tally of a task; rarer reasons are
// counted under "other".
const maxFailureReasons = 50

// ReconcileTasks advances every running task one step: it applies timeouts
// to the jobs in flight, the abort rule, and dispatches the queued jobs that
// the rate and concurrency controls allow (their pushes go to the outbox),
// then completes tasks that have nothing left to do. Every otactl command
// that receives device messages runs it.
func ReconcileTasks(tx Tx, env Env) error {
	_, err := ReconcileStep(tx, env, 0)
	return err
}

// DispatchStep is how many pushes a reconcile step queues when the caller
// sends them while it takes the next (ReconcileStep): enough that each write
// transaction is worth its commit, few enough that the broker has work from
// the first second of a rollout to 100,000 devices. Measured with
// BenchmarkBatchPush: the whole batch-upgrade command went from 0.35 – 0.44
// of a bare publisher's rate to 0.53 – 0.54.
const DispatchStep = 5000

// ReconcileStep is ReconcileTasks pushing at most limit jobs in all (0: no
// limit beyond the tasks' own controls), and returns how many it pushed. A
// caller that sends the outbox while it takes the next step keeps the
// broker busy while the rest of a large rollout is dispatched, rather than
// dispatching 100,000 jobs before the first push goes out; when it pushed
// limit, there may be more.
func ReconcileStep(tx Tx, env Env, limit int) (int, error) {
	running, err := ActiveTasks(tx)
	if err != nil {
		return 0, err
	}
	w := newWork(tx, env)
	w.budget = limit
	for _, id := range running {
		t, err := w.task(id)
		if err != nil {
			return 0, err
		}
		if err := w.reconcile(t); err != nil {
			return 0, err
		}
	}
	return w.launched, w.finish()
}

// ActiveTasks returns the IDs of the tasks that still have something to do,
// oldest first: running tasks, and finished ones (aborted, canceled) whose
// jobs in progress still need their timeouts applied.
func ActiveTasks(tx Tx) ([]string, error) {
	var active []string
	err := tx.EachTask(func(t *Task) error {
		if t.Status == TaskRunning || t.Counts.InProgress > 0 || t.Counts.Pushed > 0 {
			active = append(active, t.ID)
		}
		return nil
	})
	return active, err
}

func (w *work) reconcile(t *Task) error {
	if err := w.expireTask(t); err != nil {
		return err
	}
	if t.Status != TaskRunning {
		return nil // the abort rule stopped it
	}
	if err := w.dispatch(t); err != nil {
		return err
	}
	c := t.Counts
	idle := c.Planned == 0 && c.Queued == 0 && c.Pushed == 0 && c.InProgress == 0
	if idle && !t.Controls.Incremental {
		return w.finishTask(t, TaskCompleted, "")
	}
	return nil
}

// expireTask fails the jobs in flight whose time is up: an in-progress job
// Timeout after its first progress report, a pushed job that never started
// StartTimeout after its latest push.
func (w *work) expireTask(t *Task) error {
	now := w.env.now()
	if now.Sub(t.CheckedAt) < expireEvery {
		return nil
	}
	t.CheckedAt = now
	w.touch(t)
	var due []*Job
	err := w.tx.SetEach(taskFlight(t.ID), "", func(m string) error {
		j, err := w.tx.Job(memberJob(m))
		if err != nil || j == nil {
			return err
		}
		switch {
		case j.Status == JobInProgress && now.Sub(j.StartedAt) >= time.Duration(t.Controls.Timeout):
			due = append(due, j)
		case j.Status == JobToBeUpgraded && !j.PushedAt.IsZero() &&
			now.Sub(j.PushedAt) >= time.Duration(t.Controls.StartTimeout):
			due = append(due, j)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, j := range due {
		if err := w.expireJob(j); err != nil {
			return err
		}
	}
	return nil
}

func (w *work) expireJob(j *Job) error {
	d, err := w.tx.Device(j.ProductKey, j.DeviceKey)
	if err != nil {
		return err
	}
	if d == nil {
		d = &Device{ProductKey: j.ProductKey, DeviceKey: j.DeviceKey}
	}
	prev := j.Status
	if err := w.saveJob(d, j, prev, nil, jobTimeout(j, w.env.now())); err != nil {
		return err
	}
	return w.tx.PutDevice(d)
}

// dispatch moves as many jobs into flight as the controls allow and queues
// their pushes, first come first served: the planned devices, each given
// its job, then the queued jobs (retries and devices that joined), which
// came after the task was created. A retry thus waits behind the targets
// not yet pushed, so that a few failing devices do not make up the first
// finished jobs that the abort rule counts.
func (w *work) dispatch(t *Task) error {
	c, now := t.Controls, w.env.now()
	n := t.Counts.Queued + t.Counts.Planned
	if c.MaxConcurrent > 0 {
		n = min(n, c.MaxConcurrent-t.Counts.Pushed-t.Counts.InProgress)
	}
	if c.Rate > 0 {
		t.Tokens = min(rateBurst(c.Rate), t.Tokens+now.Sub(t.TokensAt).Minutes()*float64(c.Rate))
		t.TokensAt = now
		w.touch(t)
		n = min(n, int(t.Tokens))
	}
	if w.budget > 0 {
		n = min(n, w.budget-w.launched)
	}
	if n <= 0 {
		return nil
	}
	pushed := t.Counts.Pushed
	if err := w.dispatchPlanned(t, n); err != nil {
		return err
	}
	if n -= t.Counts.Pushed - pushed; n <= 0 || t.Counts.Queued == 0 {
		return nil
	}
	members, err := setFirst(w.tx, taskQueue(t.ID), n)
	if err != nil {
		return err
	}
	for _, m := range members {
		if err := w.dispatchJob(t, m, now); err != nil {
			return err
		}
	}
	return nil
}

func (w *work) dispatchJob(t *Task, m string, now time.Time) error {
	j, err := w.tx.Job(memberJob(m))
	if err != nil {
		return err
	}
	if err := w.tx.SetRemove(taskQueue(t.ID), m); err != nil {
		return err
	}
	if j == nil || j.Status != JobToBeUpgraded {
		return nil // a stale member: nothing to push
	}
	// A retry or a joined device waited in the queue: it is looked at again,
	// as a planned device is, and canceled if it no longer qualifies.
	d, err := w.tx.Device(j.ProductKey, j.DeviceKey)
	if err != nil {
		return err
	}
	if reason := plannedSkip(t, d, j.ID); reason != "" {
		if d == nil {
			d = &Device{ProductKey: j.ProductKey, DeviceKey: j.DeviceKey}
		}
		j.Status, j.Reason, j.FinishedAt = JobCanceled, "not pushed: "+reason, now
		if err := w.saveJob(d, j, JobToBeUpgraded, nil, j.Reason); err != nil {
			return err
		}
		return w.tx.PutDevice(d)
	}
	t.Counts.Queued--
	return w.launch(t, j, now)
}

// launch puts a job of t in flight and queues its push, counting it against
// the controls. The caller has taken it out of the queue or the plan.
func (w *work) launch(t *Task, j *Job, now time.Time) error {
	if err := w.tx.SetAdd(taskFlight(t.ID), jobMember(j.ID)); err != nil {
		return err
	}
	j.DispatchedAt = now
	w.launched++
	t.Counts.Pushed++
	t.Counts.PeakInFlight = max(t.Counts.PeakInFlight, t.Counts.Pushed+t.Counts.InProgress)
	if t.Controls.Rate > 0 {
		t.Tokens--
	}
	w.touch(t)
	return w.queuePush(j)
}

// taskJobChanged keeps a task's counts and sets in step with one of its
// jobs, retries a failed job while attempts remain, and applies the abort
// rule. prev is the job's status before the change.
func (w *work) taskJobChanged(d *Device, j *Job, prev JobStatus) error {
	t, err := w.task(j.TaskID)
	if err != nil {
		return err
	}
	c := &t.Counts
	switch prev {
	case JobToBeUpgraded:
		if j.DispatchedAt.IsZero() {
			c.Queued--
		} else {
			c.Pushed--
		}
	case JobInProgress:
		c.InProgress--
	case JobFailed:
		c.Failed-- // a late report of the target corrected it
	case JobCanceled, JobSucceeded:
		return nil
	}
	w.touch(t)
	if j.Status.Active() {
		c.InProgress++ // to-be-upgraded never comes back
		return nil
	}
	m := jobMember(j.ID)
	if err := w.tx.SetRemove(taskQueue(t.ID), m); err != nil {
		return err
	}
	if err := w.tx.SetRemove(taskFlight(t.ID), m); err != nil {
		return err
	}
	switch j.Status {
	case JobSucceeded:
		c.Succeeded++
	case JobCanceled:
		c.Canceled++
		return nil
	case JobFailed:
		if err := w.jobFailed(t, d, j); err != nil {
			return err
		}
	}
	return w.checkAbort(t)
}

// jobFailed retries a failed job while its task runs and attempts remain,
// and otherwise counts the failure and applies the abort rule.
func (w *work) jobFailed(t *Task, d *Device, j *Job) error {
	// A device that failed by moving to a version the task does not take
	// (one it does not upgrade from, or one newer than the target) is not
	// retried: pushing it again would upgrade from a version nobody chose.
	if t.Status == TaskRunning && j.Attempt <= t.Controls.Retries && d.ActiveJob == "" &&
		plannedSkip(t, d, "") == "" {
		f, err := w.tx.Firmware(t.FirmwareID)
		if err != nil || f == nil {
			return err
		}
		t.Counts.Retried++
		t.Counts.Queued++
		return enqueueJob(w.tx, t, f, d, j.Attempt+1, w.env.now())
	}
	t.Counts.Failed++
	if t.Failures == nil {
		t.Failures = map[string]int{}
	}
	reason := j.Reason
	if _, known := t.Failures[reason]; !known && len(t.Failures) >= maxFailureReasons {
		reason = "other"
	}
	t.Failures[reason]++
	return nil
}

// checkAbort stops a running task whose failure rate among finished jobs
// passed its threshold: no more pushes, queued jobs canceled, jobs already
// pushed left to run to their end.
func (w *work) checkAbort(t *Task) error {
	c := t.Controls
	finished := t.Counts.Succeeded + t.Counts.Failed
	if t.Status != TaskRunning || c.AbortFailureRate <= 0 || finished == 0 ||
		finished < c.AbortMinFinished {
		return nil
	}
	rate := float64(t.Counts.Failed) / float64(finished)
	if rate <= c.AbortFailureRate {
		return nil
	}
	reason := fmt.Sprintf("failure rate %.1f%% passed %.1f%% after %d finished %s",
		rate*100, c.AbortFailureRate*100, finished, plural(finished, "job", "jobs"))
	return w.finishTask(t, TaskAborted, reason)
}

// CancelTask cancels a running task: its jobs still To be upgraded are
// canceled, in-progress jobs run to their end.
func CancelTask(tx Tx, id string, env Env) (*Task, error) {
	w := newWork(tx, env)
	t, err := tx.Task(id)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, Invalid("batch task %q not found", id).WithHint("otactl batch-upgrade list")
	}
	if t.Status != TaskRunning {
		return nil, Refused("batch task %s is %s already", t.ID, t.Status)
	}
	w.tasks[t.ID] = t
	if err := w.finishTask(t, TaskCanceled, "canceled by user"); err != nil {
		return nil, err
	}
	return t, w.finish()
}

// finishTask gives a task its final status, canceling the jobs still
// queued, and records it.
func (w *work) finishTask(t *Task, status TaskStatus, reason string) error {
	// Nothing more is pushed: queued jobs and pushed ones that have not
	// started are canceled (a device that starts anyway is recorded, and its
	// version report still counts); jobs in progress run to their end.
	for _, set := range []string{taskQueue(t.ID), taskFlight(t.ID)} {
		if err := w.cancelPending(t, set, "task "+string(status)); err != nil {
			return err
		}
	}
	if err := w.dropPlanned(t); err != nil {
		return err
	}
	now := w.env.now()
	t.Status, t.Reason, t.FinishedAt = status, reason, now
	w.touch(t)
	detail := fmt.Sprintf("%d succeeded, %d failed, %d canceled", t.Counts.Succeeded,
		t.Counts.Failed, t.Counts.Canceled)
	if reason != "" {
		detail = reason + ": " + detail
	}
	return w.tx.AppendEvent(&Event{Time: now, Subject: "task/" + t.ID, Action: string(status),
		Detail: detail})
}

// dropPlanned counts the planned devices of a task that stops before their
// turn as canceled. They stay in the planned set, which a task that is not
// running no longer reserves devices with, so that `batch-upgrade jobs`
// still lists them, canceled, and canceling writes nothing per device.
func (w *work) dropPlanned(t *Task) error {
	t.Counts.Canceled += t.Counts.Planned
	t.Counts.Planned = 0
	return nil
}

// cancelPending cancels the set's jobs that are still To be upgraded.
func (w *work) cancelPending(t *Task, set, reason string) error {
	members, err := setFirst(w.tx, set, -1)
	if err != nil {
		return err
	}
	for _, m := range members {
		j, err := w.tx.Job(memberJob(m))
		if err != nil {
			return err
		}
		if j == nil || j.Status != JobToBeUpgraded {
			continue
		}
		d, err := w.tx.Device(j.ProductKey, j.DeviceKey)
		if err != nil {
			return err
		}
		if d == nil {
			d = &Device{ProductKey: j.ProductKey, DeviceKey: j.DeviceKey}
		}
		j.Status, j.Reason, j.FinishedAt = JobCanceled, reason, w.env.now()
		if err := w.saveJob(d, j, JobToBeUpgraded, nil, reason); err != nil {
			return err
		}
		if err := w.tx.PutDevice(d); err != nil {
			return err
		}
	}
	return nil
}

// loadRunning reads, once per transaction, the running tasks that devices
// may join (incremental ones) and those that reserve devices (with planned
// devices left), by product. A task may finish later in the same
// transaction, so callers look at a cached task's status again.
func (w *work) loadRunning() error {
	if w.joins != nil {
		return nil
	}
	w.joins, w.planning = map[string][]*Task{}, map[string][]string{}
	return w.tx.EachTask(func(t *Task) error {
		if t.Status != TaskRunning {
			return nil
		}
		if t.Controls.Incremental {
			w.joins[t.ProductKey] = append(w.joins[t.ProductKey], t)
		}
		if t.reserves() {
			w.planning[t.ProductKey] = append(w.planning[t.ProductKey], t.ID)
		}
		return nil
	})
}

// joinTasks adds a device that reported a source version to the running
// incremental task of its product that takes that version, if any.
func (w *work) joinTasks(d *Device) error {
	if d.ActiveJob != "" {
		return nil
	}
	if err := w.loadRunning(); err != nil || len(w.joins[d.ProductKey]) == 0 {
		return err
	}
	var planning []string
	for _, id := range w.planning[d.ProductKey] {
		t, err := w.task(id)
		if err != nil {
			return err
		}
		if t.reserves() { // it may have finished in this transaction
			planning = append(planning, id)
		}
	}
	if id, err := PlannedIn(w.tx, planning, d.DeviceKey); err != nil || id != "" {
		return err // a target already, waiting for its turn
	}
	for _, cached := range w.joins[d.ProductKey] {
		t, err := w.task(cached.ID)
		if err != nil {
			return err
		}
		if t.Status != TaskRunning || SameVersion(d.Version, t.TargetVersion) ||
			!slices.ContainsFunc(t.FromVersions, func(v string) bool { return SameVersion(v, d.Version) }) {
			continue
		}
		if c, ok := CompareVersions(d.Version, t.TargetVersion); ok && c > 0 && !t.AllowDowngrade {
			continue
		}
		if done, err := hadJobIn(w.tx, d, t); err != nil || done {
			return err // a device that failed in this task does not join it again
		}
		f, err := w.tx.Firmware(t.FirmwareID)
		if err != nil || f == nil {
			return err
		}
		t.Counts.Targets++
		t.Counts.Queued++
		w.touch(t)
		return enqueueJob(w.tx, t, f, d, 1, w.env.now())
	}
	return nil
}

// hadJobIn reports whether the device's last finished job belongs to t.
func hadJobIn(tx Tx, d *Device, t *Task) (bool, error) {
	if d.LastJob == "" {
		return false, nil
	}
	j, err := tx.Job(d.LastJob)
	if err != nil || j == nil {
		return false, err
	}
	return j.TaskID == t.ID, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
