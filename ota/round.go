package ota

import (
	"fmt"
	"strings"
)

// NewestRound returns the firmware's newest verification round with its
// jobs, or nil when it has none. Only the newest round counts for the
// firmware's status and verdict.
func NewestRound(tx Tx, f *Firmware) (*RoundReport, error) {
	var last *Round
	err := tx.EachRound(f.ID, func(r *Round) error {
		last = r
		return nil
	})
	if err != nil || last == nil {
		return nil, err
	}
	return loadRound(tx, f, last)
}

// Rounds returns every round of the firmware with its jobs, oldest first.
func Rounds(tx Tx, f *Firmware) ([]*RoundReport, error) {
	var rounds []*Round
	if err := tx.EachRound(f.ID, func(r *Round) error {
		rounds = append(rounds, r)
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]*RoundReport, 0, len(rounds))
	for _, r := range rounds {
		rep, err := loadRound(tx, f, r)
		if err != nil {
			return nil, err
		}
		out = append(out, rep)
	}
	return out, nil
}

func loadRound(tx Tx, f *Firmware, r *Round) (*RoundReport, error) {
	rep := &RoundReport{Firmware: f, Round: r}
	for _, id := range r.JobIDs {
		j, err := tx.Job(id)
		if err != nil {
			return nil, err
		}
		if j == nil {
			return nil, fmt.Errorf("round %s names job %s, which does not exist", r.ID, id)
		}
		rep.Jobs = append(rep.Jobs, j)
	}
	return rep, nil
}

// Counts tallies a round's jobs by status.
func (rep *RoundReport) Counts() map[JobStatus]int {
	c := map[JobStatus]int{}
	for _, j := range rep.Jobs {
		c[j.Status]++
	}
	return c
}

// Finished reports whether no job of the round is active.
func (rep *RoundReport) Finished() bool {
	c := rep.Counts()
	return c[JobToBeUpgraded] == 0 && c[JobInProgress] == 0
}

// Verdict is the round's verdict by the rule of DESIGN.md section 5.3: at
// least MinSuccess jobs succeeded, at least one did, and no more than
// MaxFailures failed. MinSuccess defaults to every job not canceled less the
// failures MaxFailures tolerates, so that --max-failures alone means what it
// says. It is VerdictNone while jobs are active or when every job was
// canceled.
func (rep *RoundReport) Verdict() Verdict {
	c := rep.Counts()
	if !rep.Finished() || c[JobSucceeded]+c[JobFailed] == 0 {
		return VerdictNone
	}
	need := rep.Round.MinSuccess
	if need == 0 {
		need = c[JobSucceeded] + c[JobFailed] - rep.Round.MaxFailures
	}
	if c[JobSucceeded] >= need && c[JobSucceeded] > 0 && c[JobFailed] <= rep.Round.MaxFailures {
		return VerdictPassed
	}
	return VerdictFailed
}

// settleRound brings the firmware's status and verdict in line with its
// newest round after one of the round's jobs changed.
func settleRound(tx Tx, roundID string, env Env) error {
	r, err := tx.Round(roundID)
	if err != nil || r == nil {
		return err
	}
	f, err := tx.Firmware(r.FirmwareID)
	if err != nil || f == nil {
		return err // a deleted firmware keeps its rounds as history only
	}
	newest, err := NewestRound(tx, f)
	if err != nil || newest == nil || newest.Round.ID != roundID {
		return err
	}
	status, verdict := FirmwareVerifying, VerdictNone
	if newest.Finished() {
		status, verdict = FirmwareVerified, newest.Verdict()
		if verdict == VerdictNone {
			status = FirmwareUnverified // every job canceled: nothing was verified
		}
	}
	if status == f.Status && verdict == f.Verdict {
		return nil
	}
	f.Status, f.Verdict, f.UpdatedAt = status, verdict, env.now()
	if err := tx.PutFirmware(f); err != nil {
		return err
	}
	detail := string(status)
	if verdict != VerdictNone {
		c := newest.Counts()
		detail = fmt.Sprintf("verified, verdict %s: round %d had %d succeeded, %d failed, %d canceled",
			verdict, r.Number, c[JobSucceeded], c[JobFailed], c[JobCanceled])
	}
	return tx.AppendEvent(&Event{Time: env.now(), Subject: FirmwareSubject(f.ID),
		Action: string(status), Detail: detail})
}

// CancelVerification cancels jobs of the firmware's newest round that are
// still To be upgraded. It is all or nothing: when any named device's job
// cannot be canceled, every such device is named and nothing changes.
func CancelVerification(tx Tx, ref string, devices []string, env Env) ([]*Job, error) {
	keys := dedupe(devices)
	if len(keys) == 0 {
		return nil, Invalid("no device given: --device takes the devices to cancel")
	}
	for _, k := range keys {
		if err := ValidateKey("device key", k); err != nil {
			return nil, err
		}
	}
	f, err := ResolveFirmware(tx, ref)
	if err != nil {
		return nil, err
	}
	rep, err := NewestRound(tx, f)
	if err != nil {
		return nil, err
	}
	if rep == nil {
		return nil, Refused("firmware %s has no verification round", f.ID)
	}
	var jobs []*Job
	var problems []string
	for _, k := range keys {
		j := findJob(rep.Jobs, k)
		switch {
		case j == nil:
			problems = append(problems, fmt.Sprintf("%s (no job in round %d, the newest)", k,
				rep.Round.Number))
		case j.Status != JobToBeUpgraded:
			problems = append(problems, fmt.Sprintf("%s (%s)", k, j.Status.Label()))
		default:
			jobs = append(jobs, j)
		}
	}
	if len(problems) > 0 {
		return nil, Refused("only To be upgraded jobs can be canceled: %s", strings.Join(problems, "; "))
	}
	for _, j := range jobs {
		if err := cancelJob(tx, j, "canceled by user", env); err != nil {
			return nil, err
		}
	}
	return jobs, settleRound(tx, rep.Round.ID, env)
}

func findJob(jobs []*Job, deviceKey string) *Job {
	for _, j := range jobs {
		if j.DeviceKey == deviceKey {
			return j
		}
	}
	return nil
}

// cancelJob cancels a job, frees its device and drops its queued pushes.
func cancelJob(tx Tx, j *Job, reason string, env Env) error {
	j.Status, j.Reason, j.FinishedAt = JobCanceled, reason, env.now()
	d, err := tx.Device(j.ProductKey, j.DeviceKey)
	if err != nil {
		return err
	}
	if d != nil && d.ActiveJob == j.ID {
		d.ActiveJob, d.LastJob = "", j.ID
		if err := tx.PutDevice(d); err != nil {
			return err
		}
	}
	if err := dropPush(tx, j); err != nil {
		return err
	}
	if err := tx.PutJob(j); err != nil {
		return err
	}
	return tx.AppendEvent(&Event{Time: env.now(), Subject: JobSubject(j.ID), Action: string(j.Status), Detail: reason})
}
