package cmd

import (
	"fmt"
	"time"

	"github.com/otactl/otactl/ota"
)

// waitPoll is how often --wait advances timeouts and rollouts and looks at
// the jobs; device messages themselves are recorded as they arrive.
const waitPoll = 250 * time.Millisecond

// waitLoop keeps the session receiving and advancing until check reports
// done, the timeout passes (KindWaitTimeout) or the command is interrupted.
// check returns a progress line, shown on stderr when it is a terminal.
func (l *live) waitLoop(timeout time.Duration, check func() (bool, string, error)) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	progress := l.app.IO.ErrTTY && !l.app.Settings.Quiet
	defer func() {
		if progress {
			fmt.Fprintln(l.app.IO.Err)
		}
	}()
	for {
		if err := l.advance(l.app.Context); err != nil {
			return err
		}
		done, line, err := check()
		if err != nil || done {
			return err
		}
		if progress {
			fmt.Fprintf(l.app.IO.Err, "\r\033[K%s", line)
		}
		select {
		case <-l.app.Context.Done():
			return ota.Errorf(ota.KindWaitTimeout, "interrupted with jobs unfinished")
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return ota.Errorf(ota.KindWaitTimeout, "timed out after %s: %s", timeout, line)
		}
	}
}

// waitFor waits for a verification round to finish. A finished round with a
// failed job is KindJobsFailed.
func (l *live) waitFor(round func() (*ota.RoundReport, error), timeout time.Duration) (*ota.RoundReport, error) {
	var rep *ota.RoundReport
	err := l.waitLoop(timeout, func() (bool, string, error) {
		var err error
		if rep, err = round(); err != nil {
			return false, "", err
		}
		return rep.Finished(), roundProgress(rep), nil
	})
	if err != nil {
		return rep, err
	}
	if n := rep.Counts()[ota.JobFailed]; n > 0 {
		return rep, ota.Errorf(ota.KindJobsFailed, "%d of %d jobs failed", n, len(rep.Jobs))
	}
	if rep.Verdict() == ota.VerdictNone {
		return rep, ota.Errorf(ota.KindJobsFailed, "no job of round %d ran: every one was canceled",
			rep.Round.Number)
	}
	return rep, nil
}

func roundProgress(rep *ota.RoundReport) string {
	c := rep.Counts()
	done := c[ota.JobSucceeded] + c[ota.JobFailed] + c[ota.JobCanceled]
	return fmt.Sprintf("round %d: %d/%d finished (%d succeeded, %d failed, %d in progress, "+
		"%d to be upgraded)", rep.Round.Number, done, len(rep.Jobs), c[ota.JobSucceeded],
		c[ota.JobFailed], c[ota.JobInProgress], c[ota.JobToBeUpgraded])
}

// waitTask waits until a batch task has no job queued or unfinished, then
// prints it. Failed jobs or an aborted task are KindJobsFailed.
func (l *live) waitTask(id string, timeout time.Duration) error {
	var t *ota.Task
	err := l.waitLoop(timeout, func() (bool, string, error) {
		t = l.task(id)
		if t == nil {
			return false, "", ota.Invalid("batch task %q not found", id)
		}
		c := t.Counts
		idle := c.Planned == 0 && c.Queued == 0 && c.Pushed == 0 && c.InProgress == 0
		return t.Status != ota.TaskRunning || idle, taskProgress(t), nil
	})
	if t == nil {
		return err
	}
	if perr := l.app.printTask(t); perr != nil {
		return perr
	}
	switch {
	case err != nil:
	case t.Status == ota.TaskAborted:
		err = ota.Errorf(ota.KindJobsFailed, "batch task %s aborted: %s", t.ID, t.Reason)
	case t.Counts.Failed > 0:
		err = ota.Errorf(ota.KindJobsFailed, "%d of %d jobs failed", t.Counts.Failed, t.Counts.Targets)
	default:
		return nil
	}
	return shownError{err}
}

func taskProgress(t *ota.Task) string {
	c := t.Counts
	done := c.Succeeded + c.Failed + c.Canceled
	return fmt.Sprintf("%s: %d/%d finished (%d succeeded, %d failed), %d in progress, %d pushed, "+
		"%d queued", t.ID, done, c.Targets, c.Succeeded, c.Failed, c.InProgress, c.Pushed,
		c.Queued+c.Planned)
}
