package ota

import "time"

// queuePush puts an upgrade command for j in the outbox, unless one is
// already waiting there, and stores j. The caller's transaction commits it
// together with whatever made the push necessary; the sender delivers it
// after commit.
func queuePush(tx Tx, j *Job, env Env) error { return newWork(tx, env).queuePush(j) }

func (w *work) queuePush(j *Job) error {
	if j.PushID != "" {
		return nil
	}
	params, err := w.jobParams(j)
	if err != nil {
		return err
	}
	seq, err := w.tx.NextSeq(PushPrefix)
	if err != nil {
		return err
	}
	j.PushID = FormatID(PushPrefix, seq)
	if err := w.tx.PutJob(j); err != nil {
		return err
	}
	return w.tx.PutPush(&Push{ID: j.PushID, JobID: j.ID, ProductKey: j.ProductKey,
		DeviceKey: j.DeviceKey, Params: params, CreatedAt: w.env.now()})
}

// jobParams is the upgrade command for a job: its firmware's image, and the
// job's ID so that devices which echo it tie late messages to this job.
func jobParams(tx Tx, j *Job, env Env) (UpgradeParams, error) {
	return newWork(tx, env).jobParams(j)
}

func (w *work) jobParams(j *Job) (UpgradeParams, error) {
	f, err := w.firmware(j.FirmwareID)
	if err != nil {
		return UpgradeParams{}, err
	}
	if f == nil {
		return UpgradeParams{}, Errorf(KindInternal, "job %s names firmware %s, which does not exist",
			j.ID, j.FirmwareID)
	}
	return UpgradeParams{Version: f.Version, Sign: f.Sign, SignMethod: f.SignMethod,
		FileURL: w.env.FileURL(f), FileSize: f.Size, JobID: j.ID}, nil
}

// dropPush takes j's command out of the outbox, for a job that finished or
// was canceled before the command was sent.
func dropPush(tx Tx, j *Job) error {
	if j.PushID == "" {
		return nil
	}
	id := j.PushID
	j.PushID = ""
	return tx.DeletePush(id)
}

// PendingPushes returns up to limit commands from the outbox, oldest first,
// that are still worth sending: stale ones, whose job is no longer To be
// upgraded or has another command queued, are returned apart so that the
// caller can drop them with DropStalePushes instead of pushing a finished
// device again.
func PendingPushes(tx Tx, limit int) (send, stale []*Push, err error) {
	err = tx.EachPush(func(p *Push) error {
		j, err := tx.Job(p.JobID)
		if err != nil {
			return err
		}
		if j == nil || j.Status != JobToBeUpgraded || j.PushID != p.ID {
			stale = append(stale, p)
		} else {
			send = append(send, p)
		}
		if len(send) >= limit {
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return send, stale, err
}

// DropStalePushes deletes outbox entries that PendingPushes found stale.
func DropStalePushes(tx Tx, stale []*Push) error {
	for _, p := range stale {
		if err := tx.DeletePush(p.ID); err != nil {
			return err
		}
	}
	return nil
}

// MarkPushed records that the broker acknowledged a push: the entry leaves
// the outbox and its job, when still To be upgraded, counts as pushed from
// now (a job's start timeout runs from its latest push).
func MarkPushed(tx Tx, p *Push, env Env) error {
	if err := tx.DeletePush(p.ID); err != nil {
		return err
	}
	j, err := tx.Job(p.JobID)
	if err != nil || j == nil || j.PushID != p.ID {
		return err
	}
	j.PushID = ""
	// A device may report progress before its push's acknowledgement is
	// recorded: the job still counts as pushed, so that its timeout runs.
	if j.Status == JobToBeUpgraded || (j.Status.Active() && j.PushedAt.IsZero()) {
		j.PushedAt = env.now()
	}
	if err := tx.PutJob(j); err != nil {
		return err
	}
	if j.Status != JobToBeUpgraded {
		return nil
	}
	return tx.AppendEvent(&Event{Time: env.now(), Subject: JobSubject(j.ID), Action: "pushed",
		Detail: "upgrade to " + j.TargetVersion + " sent to " + j.DeviceKey})
}

// ExpireJobs fails the active verification jobs whose timeout has passed
// since their latest push (truth rule 4), and settles their rounds.
func ExpireJobs(tx Tx, env Env) error {
	due, err := overdueJobs(tx, env)
	if err != nil {
		return err
	}
	w := newWork(tx, env)
	for _, j := range due {
		d, err := tx.Device(j.ProductKey, j.DeviceKey)
		if err != nil {
			return err
		}
		if d == nil {
			d = &Device{ProductKey: j.ProductKey, DeviceKey: j.DeviceKey}
		}
		prev := j.Status
		change := jobTimeout(j, env.now())
		if err := w.saveJob(d, j, prev, nil, change); err != nil {
			return err
		}
		if err := tx.PutDevice(d); err != nil {
			return err
		}
	}
	return w.finish()
}

// HasOverdueJobs reports whether ExpireJobs would change anything, so that
// a caller can leave the state file untouched when it would not.
func HasOverdueJobs(tx Tx, env Env) (bool, error) {
	due, err := overdueJobs(tx, env)
	return len(due) > 0, err
}

func overdueJobs(tx Tx, env Env) ([]*Job, error) {
	var rounds []*Round
	if err := tx.EachFirmware(func(f *Firmware) error {
		return tx.EachRound(f.ID, func(r *Round) error {
			rounds = append(rounds, r)
			return nil
		})
	}); err != nil {
		return nil, err
	}
	var due []*Job
	for _, r := range rounds {
		for _, id := range r.JobIDs {
			j, err := tx.Job(id)
			if err != nil {
				return nil, err
			}
			if j == nil {
				continue
			}
			// The clock runs from the push; a job whose device started before
			// the push's acknowledgement was recorded runs from its start.
			since := j.PushedAt
			if since.IsZero() {
				since = j.StartedAt
			}
			if j.Status.Active() && !since.IsZero() &&
				env.now().Sub(since) >= timeoutOf(r) {
				due = append(due, j)
			}
		}
	}
	return due, nil
}

func timeoutOf(r *Round) time.Duration {
	if r.JobTimeout <= 0 {
		return DefaultJobTimeout
	}
	return time.Duration(r.JobTimeout)
}
