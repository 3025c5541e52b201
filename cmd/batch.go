package cmd

import (
	"bufio"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

type batchOptions struct {
	spec        ota.BatchSpec
	devicesFile string
	dryRun      bool
	wait        bool
	waitTimeout time.Duration
	timeout     time.Duration
	start       time.Duration
}

func newBatchCmd(app *App) *cobra.Command {
	var o batchOptions
	c := &cobra.Command{
		Use: "batch-upgrade <firmware> (--from-version <v>... | --device <dk>... | " +
			"--devices-file <f> | --all) [flags]",
		Short: "Roll a verified firmware out to a fleet, with safety controls",
		Long: `Roll a firmware out to many devices. Refused unless the firmware is verified
with verdict passed (--allow-failed-verification overrides the verdict, never
the status), while it has a verification round or another task running, and
when a source version among the targets was not upgraded from successfully in
the verification (--allow-unverified-source overrides).

Devices already on the target, busy with another job, on a newer version
(unless --allow-downgrade), with no version reported, or (when named one by
one) not on a chosen source version are skipped and reported. --dry-run
prints the plan and changes nothing.

The rollout keeps at most --max-concurrent jobs pushed and unfinished, pushes
at most --rate per minute (saving up at most 5 seconds' worth while nothing
advances it), fails a job that has not finished --timeout after its first
progress report (or not started --start-timeout after its latest push),
retries failed jobs --retries times as new jobs, and aborts once at least
--abort-min-finished jobs finished and the share of them that failed exceeds
--abort-failure-rate. It advances whenever otactl receives device messages:
keep the agent running, or 'batch-upgrade status --wait'; an occasional
'sync' from cron advances it one step at a time.`,
		Example: `  $ otactl batch-upgrade pk1/2.0.0 --from-version 1.0.0 --dry-run
  $ otactl batch-upgrade pk1/2.0.0 --all --max-concurrent 200 --rate 600 --retries 1 \
      --abort-failure-rate 0.05 --abort-min-finished 100
  $ otactl batch-upgrade pk1/2.0.0 --devices-file canary.txt --wait --wait-timeout 2h`,
		Args: oneArg("firmware"),
		RunE: func(c *cobra.Command, args []string) error {
			o.spec.Firmware = args[0]
			o.spec.Controls.Timeout = ota.Duration(o.timeout)
			o.spec.Controls.StartTimeout = ota.Duration(o.start)
			return runBatch(app, &o)
		},
	}
	addBatchFlags(c, &o)
	c.AddCommand(newBatchStatusCmd(app), newBatchListCmd(app), newBatchCancelCmd(app),
		newBatchJobsCmd(app))
	return c
}

func addBatchFlags(c *cobra.Command, o *batchOptions) {
	ctl := &o.spec.Controls
	f := c.Flags()
	f.StringSliceVar(&o.spec.FromVersions, "from-version", nil,
		"source `versions`; with --all or --device, only devices on these")
	f.StringSliceVar(&o.spec.Devices, "device", nil, "only these device `keys`, comma-separated")
	f.StringVar(&o.devicesFile, "devices-file", "", "only the devices in `file`, one key a line (- for stdin)")
	f.BoolVar(&o.spec.All, "all", false, "every device of the product")
	f.BoolVar(&o.spec.AllowFailedVerification, "allow-failed-verification", false, "accept a failed verdict")
	f.BoolVar(&o.spec.AllowUnverifiedSource, "allow-unverified-source", false,
		"accept source versions the verification did not cover")
	f.BoolVar(&o.spec.AllowDowngrade, "allow-downgrade", false, "upgrade devices on a newer version too")
	f.IntVar(&ctl.MaxConcurrent, "max-concurrent", ota.DefaultMaxConcurrent,
		"jobs pushed and unfinished at once (0: no limit)")
	f.IntVar(&ctl.Rate, "rate", 0, "pushes per minute (0: no limit)")
	f.DurationVar(&o.timeout, "timeout", ota.DefaultBatchTimeout,
		"fail a job this long after its first progress report")
	f.DurationVar(&o.start, "start-timeout", ota.DefaultStartTimeout,
		"fail a pushed job that has not started after this long")
	f.IntVar(&ctl.Retries, "retries", 0, "push failed and timed-out jobs again this many times")
	f.Float64Var(&ctl.AbortFailureRate, "abort-failure-rate", 0,
		"abort when this share (0 to 1) of finished jobs failed (0: never)")
	f.IntVar(&ctl.AbortMinFinished, "abort-min-finished", 10, "finished jobs before the abort rule applies")
	f.BoolVar(&ctl.Incremental, "incremental", false,
		"devices that later report a source version join the task")
	f.BoolVar(&o.dryRun, "dry-run", false, "print the plan and change nothing")
	f.BoolVar(&o.wait, "wait", false, "wait until nothing is queued or unfinished, or the task ends")
	f.DurationVar(&o.waitTimeout, "wait-timeout", 24*time.Hour, "with --wait, give up after this long (exit 7)")
}

func runBatch(app *App, o *batchOptions) error {
	if err := readDevicesFile(app, o); err != nil {
		return err
	}
	if !o.spec.All && len(o.spec.FromVersions) == 0 && len(o.spec.Devices) == 0 {
		return ota.Invalid("choose the devices: --from-version, --device, --devices-file or --all")
	}
	if o.wait && o.waitTimeout <= 0 {
		return ota.Invalid("--wait-timeout %s must be positive", o.waitTimeout)
	}
	if err := ota.ValidateControls(&o.spec.Controls); err != nil {
		return err
	}
	if o.dryRun {
		return runBatchPlan(app, o)
	}
	l, err := app.openLive()
	if err != nil {
		return err
	}
	defer l.close()

	var plan *ota.BatchPlan
	var task *ota.Task
	err = l.update(func(tx ota.Tx) error {
		var err error
		if plan, err = ota.PlanBatch(tx, o.spec); err != nil {
			return err
		}
		task, err = ota.CreateTask(tx, plan, o.spec, l.env())
		return err
	})
	if err != nil {
		return err
	}
	app.infof("created batch task %s: %s to %s (skipped: %s)", task.ID, devices(task.Counts.Targets),
		task.TargetVersion, ota.CountSummary(task.Skipped))
	if err := l.advance(app.Context); err != nil {
		return err
	}
	if o.wait {
		return l.waitTask(task.ID, o.waitTimeout)
	}
	return app.printTask(l.task(task.ID))
}

// runBatchPlan prints what a batch upgrade would do. It reads the state file
// as it is, without receiving from the broker, and changes nothing.
func runBatchPlan(app *App, o *batchOptions) error {
	var plan *ota.BatchPlan
	found, err := app.view(func(tx ota.Tx) error {
		var err error
		plan, err = ota.PlanBatch(tx, o.spec)
		return err
	})
	if err != nil {
		return err
	}
	if !found {
		return ota.Invalid("firmware %q not found: no state file yet at %s", o.spec.Firmware, app.Settings.StatePath)
	}
	if err := app.printPlan(plan, o.spec.Controls); err != nil {
		return err
	}
	if plan.Targets == 0 { // the real run would be refused: say so the same way
		return shownError{ota.Refused("no device to upgrade to %s: %s", plan.Firmware.Version,
			ota.CountSummary(plan.Skipped))}
	}
	return nil
}

// readDevicesFile adds the keys of --devices-file to the spec. One bad key
// fails the whole command, naming its line, before anything changes.
func readDevicesFile(app *App, o *batchOptions) error {
	if o.devicesFile == "" {
		return nil
	}
	var r io.Reader = app.IO.In
	if o.devicesFile != "-" {
		f, err := os.Open(o.devicesFile)
		if err != nil {
			return ota.Invalid("--devices-file %s: %v", o.devicesFile, unwrapPath(err))
		}
		defer f.Close()
		r = f
	}
	named := len(o.spec.Devices) // by --device
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		key := strings.TrimSuffix(sc.Text(), "\r")
		if strings.TrimSpace(key) == "" || strings.HasPrefix(key, "#") {
			continue
		}
		if err := ota.ValidateKey("device key", key); err != nil {
			return ota.Invalid("--devices-file %s line %d: %v", o.devicesFile, n, err)
		}
		o.spec.Devices = append(o.spec.Devices, key)
	}
	if err := sc.Err(); err != nil {
		return ota.Invalid("--devices-file %s: %v", o.devicesFile, err)
	}
	if len(o.spec.Devices) == named {
		return ota.Invalid("--devices-file %s names no device", o.devicesFile)
	}
	return nil
}

// task reads a task as it is now.
func (l *live) task(id string) *ota.Task {
	var t *ota.Task
	l.view(func(tx ota.Tx) error {
		var err error
		t, err = tx.Task(id)
		return err
	})
	return t
}

func newBatchStatusCmd(app *App) *cobra.Command {
	var wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "status <task> [--wait] [--timeout <duration>]",
		Short: "Show a batch task's progress, counts and failure reasons",
		Long: `Record what devices reported, advance the rollout one step, and print the task:
its status, counts per job status and failure reasons. With --wait, keep
receiving and advancing until no job is queued or unfinished, with a progress
line on stderr when it is a terminal. Exit codes with --wait: 0 when no job
failed, 6 when any failed or the task aborted, 7 on timeout.`,
		Example: `  $ otactl batch-upgrade status task-1
  $ otactl batch-upgrade status task-1 --wait --timeout 3h`,
		Args: oneArg("task"),
		RunE: func(_ *cobra.Command, args []string) error {
			if wait && timeout <= 0 {
				return ota.Invalid("--timeout %s must be positive", timeout)
			}
			l, err := app.openLive()
			if err != nil {
				return err
			}
			defer l.close()
			t := l.task(args[0])
			if t == nil {
				return ota.Invalid("batch task %q not found", args[0]).WithHint("otactl batch-upgrade list")
			}
			if wait {
				return l.waitTask(t.ID, timeout)
			}
			return app.printTask(t)
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "wait until nothing is queued or unfinished, or the task ends")
	c.Flags().DurationVar(&timeout, "timeout", 24*time.Hour, "with --wait, give up after this long (exit 7)")
	return c
}

func newBatchListCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List batch tasks",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			tasks := []*ota.Task{}
			_, err := app.view(func(tx ota.Tx) error {
				return tx.EachTask(func(t *ota.Task) error {
					tasks = append(tasks, t)
					return nil
				})
			})
			if err != nil {
				return err
			}
			if app.Settings.JSON {
				views := make([]taskView, 0, len(tasks))
				for _, t := range tasks {
					views = append(views, newTaskView(t))
				}
				return writeJSON(app.IO.Out, views)
			}
			tb := table{header: []string{"TASK", "FIRMWARE", "TARGET", "STATUS", "JOBS",
				"SUCCEEDED", "FAILED", "IN FLIGHT", "QUEUED", "CREATED"}}
			for _, t := range tasks {
				c := t.Counts
				tb.add(t.ID, t.FirmwareID, t.ProductKey+"/"+t.TargetVersion, string(t.Status),
					itoa(c.Targets), itoa(c.Succeeded), itoa(c.Failed), itoa(c.Pushed+c.InProgress),
					itoa(c.Queued+c.Planned), timeCell(t.CreatedAt, app.IO.OutTTY, app.Now()))
			}
			if len(tasks) == 0 {
				app.infof("no batch tasks")
			}
			return tb.render(app.IO.Out, app.IO.OutTTY)
		},
	}
}

func newBatchCancelCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel <task>",
		Short: "Cancel a running batch task",
		Long: `Cancel a running task: its jobs that are still To be upgraded are canceled
and nothing more is pushed; jobs in progress run to their end.`,
		Example: "  $ otactl batch-upgrade cancel task-1",
		Args:    oneArg("task"),
		RunE: func(_ *cobra.Command, args []string) error {
			l, err := app.openLive()
			if err != nil {
				return err
			}
			defer l.close()
			var t *ota.Task
			if err := l.update(func(tx ota.Tx) error {
				var err error
				t, err = ota.CancelTask(tx, args[0], l.env())
				return err
			}); err != nil {
				return err
			}
			return app.printTask(t)
		},
	}
}
