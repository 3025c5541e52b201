package cmd

import (
	"fmt"
	"time"

	"github.com/otactl/otactl/ota"
)

// waitPoll is how often --wait looks at the jobs and applies timeouts; the
// messages themselves are recorded as they arrive.
const waitPoll = 250 * time.Millisecond

// waitFor keeps the session receiving until the round has no active job, the
// timeout passes (KindWaitTimeout) or the command is interrupted. A finished
// round with a failed job is KindJobsFailed.
func (l *live) waitFor(round func() (*ota.RoundReport, error), timeout time.Duration) (*ota.RoundReport, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	progress := l.app.IO.ErrTTY && !l.app.Settings.Quiet
	for {
		if err := l.expire(); err != nil {
			return nil, err
		}
		rep, err := round()
		if err != nil {
			return nil, err
		}
		if progress {
			fmt.Fprintf(l.app.IO.Err, "\r\033[K%s", progressLine(rep))
		}
		if rep.Finished() {
			if progress {
				fmt.Fprintln(l.app.IO.Err)
			}
			if n := rep.Counts()[ota.JobFailed]; n > 0 {
				return rep, ota.Errorf(ota.KindJobsFailed, "%d of %d jobs failed", n, len(rep.Jobs))
			}
			return rep, nil
		}
		select {
		case <-l.app.Context.Done():
			return rep, ota.Errorf(ota.KindWaitTimeout, "interrupted with jobs unfinished")
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			if progress {
				fmt.Fprintln(l.app.IO.Err)
			}
			c := rep.Counts()
			return rep, ota.Errorf(ota.KindWaitTimeout, "timed out after %s with %d jobs unfinished",
				timeout, c[ota.JobToBeUpgraded]+c[ota.JobInProgress])
		}
	}
}

func progressLine(rep *ota.RoundReport) string {
	c := rep.Counts()
	done := c[ota.JobSucceeded] + c[ota.JobFailed] + c[ota.JobCanceled]
	return fmt.Sprintf("round %d: %d/%d finished (%d succeeded, %d failed, %d in progress, %d to be upgraded)",
		rep.Round.Number, done, len(rep.Jobs), c[ota.JobSucceeded], c[ota.JobFailed],
		c[ota.JobInProgress], c[ota.JobToBeUpgraded])
}
