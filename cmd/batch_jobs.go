package cmd

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

func newBatchJobsCmd(app *App) *cobra.Command {
	var status string
	c := &cobra.Command{
		Use:   "jobs <task> [--status <status>]",
		Short: "List a batch task's jobs, one row per device and attempt",
		Long: `List the jobs of a batch task as recorded: device, status, step, description,
failure reason, attempt and times. Devices that wait for their turn have no
job yet: they are listed last, To be upgraded, with attempt 0 and the
description "planned, not pushed yet"; once the task is canceled or aborted,
those it never pushed are listed Canceled, "canceled before its turn". It
reads the state file only (run sync or keep the agent running for fresh
records), and prints rows as it reads them, so a task over 100,000 devices
does not sit in memory.`,
		Example: `  $ otactl batch-upgrade jobs task-1 --status failed
  $ otactl batch-upgrade jobs task-1 --json > jobs.json`,
		Args: oneArg("task"),
		RunE: func(_ *cobra.Command, args []string) error {
			switch ota.JobStatus(status) {
			case "", ota.JobToBeUpgraded, ota.JobInProgress, ota.JobSucceeded, ota.JobFailed, ota.JobCanceled:
			default:
				return ota.Invalid("--status %q is not one of to-be-upgraded, in-progress, "+
					"succeeded, failed, canceled", status)
			}
			return runBatchJobs(app, args[0], ota.JobStatus(status))
		},
	}
	c.Flags().StringVar(&status, "status", "", "only jobs in this `status`")
	_ = c.RegisterFlagCompletionFunc("status", oneOf(string(ota.JobToBeUpgraded),
		string(ota.JobInProgress), string(ota.JobSucceeded), string(ota.JobFailed),
		string(ota.JobCanceled)))
	return c
}

// plannedJob is the row of a device of the task's plan, which has no job:
// To be upgraded while the task runs, and canceled before its turn once it
// stopped. It has no job ID, attempt or times.
func plannedJob(tx ota.Tx, t *ota.Task, deviceKey string) (*ota.Job, error) {
	j := &ota.Job{DeviceKey: deviceKey, ProductKey: t.ProductKey, TaskID: t.ID,
		TargetVersion: t.TargetVersion, Status: plannedStatus(t),
		Desc: "planned, not pushed yet"}
	if j.Status == ota.JobCanceled {
		j.Desc, j.Reason = "canceled before its turn", "task "+string(t.Status)
	}
	d, err := tx.Device(t.ProductKey, deviceKey)
	if d != nil {
		j.SourceVersion = d.Version
	}
	return j, err
}

// plannedStatus is the status of the devices in a task's plan.
func plannedStatus(t *ota.Task) ota.JobStatus {
	if t.Status == ota.TaskRunning {
		return ota.JobToBeUpgraded
	}
	return ota.JobCanceled
}

func runBatchJobs(app *App, taskID string, status ota.JobStatus) error {
	out, tty, now := app.IO.Out, app.IO.OutTTY, app.Now()
	// Refuse an unknown task before anything is printed: with --json, the
	// error must be the one document, not follow an opened array.
	var exists bool
	if _, err := app.view(func(tx ota.Tx) error {
		t, err := tx.Task(taskID)
		exists = t != nil
		return err
	}); err != nil {
		return err
	}
	if !exists {
		return ota.Invalid("batch task %q not found", taskID).WithHint("otactl batch-upgrade list")
	}
	each := func(emit func(*ota.Job) error) error {
		found, err := app.view(func(tx ota.Tx) error {
			t, err := tx.Task(taskID)
			if err != nil {
				return err
			}
			if t == nil {
				return ota.Invalid("batch task %q not found", taskID).WithHint("otactl batch-upgrade list")
			}
			err = tx.EachJob(func(j *ota.Job) error {
				if j.TaskID != taskID || (status != "" && j.Status != status) {
					return nil
				}
				return emit(j)
			})
			if err != nil || (status != "" && status != plannedStatus(t)) {
				return err
			}
			return ota.EachPlanned(tx, taskID, func(dk string) error {
				j, err := plannedJob(tx, t, dk)
				if err != nil {
					return err
				}
				return emit(j)
			})
		})
		if err == nil && !found {
			err = ota.Invalid("batch task %q not found: no state file yet", taskID)
		}
		return err
	}
	if app.Settings.JSON {
		return streamJSONArray(out, func(emit func(any) error) error {
			return each(func(j *ota.Job) error { return emit(newJobView(j)) })
		})
	}
	t := table{header: []string{"DEVICE", "STATUS", "STEP", "DESCRIPTION", "REASON", "ATTEMPT",
		"PUSHED", "STARTED", "FINISHED"}}
	err := each(func(j *ota.Job) error {
		step := ""
		if j.Step != nil {
			step = strconv.Itoa(*j.Step)
		}
		row := []string{j.DeviceKey, j.Status.Label(), step, j.Desc, j.Reason, strconv.Itoa(j.Attempt),
			timeCell(j.PushedAt, tty, now), timeCell(j.StartedAt, tty, now), timeCell(j.FinishedAt, tty, now)}
		if tty {
			t.add(row...)
			return nil
		}
		_, err := fmt.Fprintln(out, joinTab(row))
		return err
	})
	if err != nil || !tty {
		return err
	}
	return t.render(out, tty)
}
