package ota

import (
	"fmt"
	"strconv"
	"time"
)

// The job transitions of the truth rules (DESIGN.md section 3). Each returns
// a sentence for the history when the job changed, "" when it did not; none
// moves a job backwards.

// jobProgress applies a progress step to j.
func jobProgress(j *Job, step int, desc string, now time.Time) string {
	if !j.Status.Active() {
		return "" // finished: only a later version report may change it
	}
	if step < 0 {
		j.Step, j.Desc = &step, desc
		return jobFail(j, StepReason(step)+" (step "+strconv.Itoa(step)+")", now)
	}
	if step > 100 {
		step = 100
	}
	changed := ""
	if j.Status == JobToBeUpgraded {
		j.Status, j.StartedAt = JobInProgress, now
		changed = "started"
	}
	if j.Step != nil && step < *j.Step {
		return changed // a late or reordered step: recorded, never applied
	}
	j.Step, j.Desc = &step, desc
	if step == 100 {
		j.ReachedFull = true
	}
	if changed != "" {
		return fmt.Sprintf("started, step %d", step)
	}
	return fmt.Sprintf("step %d", step)
}

// jobVersion applies a version report of the job's device to j.
func jobVersion(j *Job, version string, now time.Time) string {
	if SameVersion(version, j.TargetVersion) {
		switch j.Status {
		case JobSucceeded, JobCanceled:
			return ""
		case JobFailed:
			reason := j.Reason
			j.Status, j.Reason, j.FinishedAt = JobSucceeded, "", now
			return "corrected to success: the device reported the target after " + reason
		}
		j.Status, j.Reason, j.FinishedAt = JobSucceeded, "", now
		return "succeeded: the device reported " + j.TargetVersion
	}
	if j.Status != JobInProgress || !j.ReachedFull {
		return ""
	}
	if SameVersion(version, j.SourceVersion) {
		return jobFail(j, "rolled back", now)
	}
	return jobFail(j, fmt.Sprintf("version mismatch: expected %s, got %s", j.TargetVersion, version), now)
}

func jobFail(j *Job, reason string, now time.Time) string {
	j.Status, j.Reason, j.FinishedAt = JobFailed, reason, now
	return "failed: " + reason
}

// jobTimeout fails an active job that has had no result in time.
func jobTimeout(j *Job, now time.Time) string {
	step := 0
	if j.Step != nil {
		step = *j.Step
	}
	return jobFail(j, fmt.Sprintf("timed out at step %d", step), now)
}
