package cmd

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

func newVerifyCmd(app *App) *cobra.Command {
	c := groupCmd("verify <command>", "Verify a firmware on at most 5 devices before any batch upgrade")
	c.Long = `A firmware must pass verification on a few real devices before a batch upgrade
may use it. 'verify start' pushes it to at most 5 devices that report the
chosen source versions; 'verify status' shows each device as To be upgraded,
In progress, Upgraded successfully or Upgrade failed. Once the round has no
active job the firmware is verified, with verdict passed or failed.`
	c.Example = `  $ otactl verify start pk1/2.0.0 --from-version 1.0.0 --device d1,d2,d3
  $ otactl verify status pk1/2.0.0 --wait --timeout 30m && echo passed
  $ otactl verify cancel pk1/2.0.0 --device d3
  $ otactl verify reverify pk1/2.0.0 --from-version 1.0.0 --device d1,d3`
	c.AddCommand(newVerifyStartCmd(app, false), newVerifyStartCmd(app, true),
		newVerifyStatusCmd(app), newVerifyCancelCmd(app))
	return c
}

func newVerifyStartCmd(app *App, reverify bool) *cobra.Command {
	var spec ota.VerifySpec
	c := &cobra.Command{
		Use:   "start <firmware> --from-version <v>[,<v>...] --device <dk>[,<dk>...]",
		Short: "Push a firmware to at most 5 devices to verify it",
		Long: `Start the verification of a firmware (its id or PK/VERSION): each device, at
most 5, must be of the firmware's product, report one of the source versions,
not already run the target, and have no active job. The upgrade is pushed now
and again whenever a device whose job is still To be upgraded reports its
version, so a device that is offline gets it when it returns.

The round passes when at least --min-success jobs succeed (default: every job
not canceled) and no more than --max-failures fail. A job with no result
within --job-timeout of its push fails as timed out.`,
		Example: `  $ otactl verify start fw-3 --from-version 1.0.0,1.1.0 --device d1,d2
  $ otactl verify start pk1/2.0.0 --from-version 1.0.0 --device d1,d2,d3 --min-success 2 --max-failures 1`,
		Args: oneArg("firmware"),
		RunE: func(_ *cobra.Command, args []string) error {
			spec.Firmware = args[0]
			return runVerifyStart(app, spec, reverify)
		},
	}
	if reverify {
		c.Use = "reverify <firmware> --from-version <v>[,<v>...] --device <dk>[,<dk>...]"
		c.Short = "Cancel what is still pending and start a new verification round"
		c.Long = `Cancel the newest round's jobs that are still To be upgraded, then start a new
round as 'verify start' does. The new round may include the devices just
canceled and those that failed. Nothing changes when the new round is refused.`
		c.Example = `  $ otactl verify reverify pk1/2.0.0 --from-version 1.0.0 --device d1,d4`
	}
	f := c.Flags()
	f.StringSliceVar(&spec.FromVersions, "from-version", nil, "source `versions`, comma-separated (required)")
	f.StringSliceVar(&spec.Devices, "device", nil, "device `keys`, comma-separated, at most 5 (required)")
	f.IntVar(&spec.MinSuccess, "min-success", 0, "jobs that must succeed to pass (default: all not canceled)")
	f.IntVar(&spec.MaxFailures, "max-failures", 0, "failed jobs the verdict tolerates")
	f.DurationVar(&spec.JobTimeout, "job-timeout", ota.DefaultJobTimeout,
		"fail a job with no result this long after its push")
	return c
}

func runVerifyStart(app *App, spec ota.VerifySpec, reverify bool) error {
	if len(spec.FromVersions) == 0 {
		return ota.Invalid("--from-version is required")
	}
	if len(spec.Devices) == 0 {
		return ota.Invalid("--device is required")
	}
	if spec.JobTimeout <= 0 {
		return ota.Invalid("--job-timeout %s must be positive", spec.JobTimeout)
	}
	l, err := app.openLive()
	if err != nil {
		return err
	}
	defer l.close()

	var rep *ota.RoundReport
	var canceled []*ota.Job
	err = l.update(func(tx ota.Tx) error {
		var err error
		if reverify {
			rep, canceled, err = ota.Reverify(tx, spec, l.env())
		} else {
			rep, err = ota.StartVerification(tx, spec, l.env())
		}
		return err
	})
	if err != nil {
		if rep != nil && !app.Settings.JSON { // the existing round, for the refusal
			app.renderRound(rep, true)
		}
		return err
	}
	for _, j := range canceled {
		app.infof("canceled %s on %s (was To be upgraded)", j.ID, j.DeviceKey)
	}
	if err := l.flush(app.Context); err != nil {
		return err
	}
	return app.printRound(l.reloadRound(rep))
}

// reloadRound reads a round again, with its jobs as the pushes left them.
func (l *live) reloadRound(rep *ota.RoundReport) *ota.RoundReport {
	var fresh *ota.RoundReport
	err := l.view(func(tx ota.Tx) error {
		f, err := tx.Firmware(rep.Firmware.ID)
		if err != nil || f == nil {
			return err
		}
		fresh, err = ota.NewestRound(tx, f)
		return err
	})
	if err != nil || fresh == nil {
		return rep
	}
	return fresh
}

func newVerifyCancelCmd(app *App) *cobra.Command {
	var devices []string
	c := &cobra.Command{
		Use:   "cancel <firmware> --device <dk>[,<dk>...]",
		Short: "Cancel devices of the newest round that are still To be upgraded",
		Long: `Cancel the jobs of the named devices in the firmware's newest verification
round. Only jobs that are still To be upgraded can be canceled: a device that
has started reports its own outcome. When any named job cannot be canceled,
each such device is named with its status and nothing is canceled.`,
		Example: "  $ otactl verify cancel pk1/2.0.0 --device d3",
		Args:    oneArg("firmware"),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(devices) == 0 {
				return ota.Invalid("--device is required")
			}
			l, err := app.openLive()
			if err != nil {
				return err
			}
			defer l.close()
			var rep *ota.RoundReport
			err = l.update(func(tx ota.Tx) error {
				jobs, err := ota.CancelVerification(tx, args[0], devices, l.env())
				if err == nil && len(jobs) > 0 {
					f, _ := tx.Firmware(jobs[0].FirmwareID)
					rep, err = ota.NewestRound(tx, f)
				}
				return err
			})
			if err != nil {
				return err
			}
			return app.printRound(rep)
		},
	}
	c.Flags().StringSliceVar(&devices, "device", nil, "device `keys` to cancel, comma-separated (required)")
	return c
}

func newVerifyStatusCmd(app *App) *cobra.Command {
	var wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "status <firmware> [--wait] [--timeout <duration>]",
		Short: "Show each device of the newest verification round",
		Long: `Record what devices reported, apply the truth rules, and print the newest
round: each device's status, step, description, failure reason and times.

With --wait, keep receiving until every job is finished or --timeout passes
(with a progress line on stderr when it is a terminal). Exit codes with
--wait: 0 when no job failed, 6 when any failed, 7 on timeout: a CI step
can gate on them.`,
		Example: `  $ otactl verify status pk1/2.0.0
  $ otactl verify status pk1/2.0.0 --wait --timeout 45m --json > round.json`,
		Args: oneArg("firmware"),
		RunE: func(_ *cobra.Command, args []string) error {
			if wait && timeout <= 0 {
				return ota.Invalid("--timeout %s must be positive", timeout)
			}
			return runVerifyStatus(app, args[0], wait, timeout)
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "wait until every job is finished")
	c.Flags().DurationVar(&timeout, "timeout", time.Hour, "with --wait, give up after this long (exit 7)")
	return c
}

func runVerifyStatus(app *App, ref string, wait bool, timeout time.Duration) error {
	l, err := app.openLive()
	if err != nil {
		return err
	}
	defer l.close()
	round := func() (*ota.RoundReport, error) {
		var rep *ota.RoundReport
		err := l.view(func(tx ota.Tx) error {
			f, err := ota.ResolveFirmware(tx, ref)
			if err != nil {
				return err
			}
			rep, err = ota.NewestRound(tx, f)
			if err == nil && rep == nil {
				err = ota.Refused("firmware %s has no verification round", f.ID).
					WithHint("otactl verify start %s --from-version ... --device ...", f.ID)
			}
			return err
		})
		return rep, err
	}
	rep, err := round()
	if err != nil || !wait {
		if err == nil {
			err = app.printRound(rep)
		}
		return err
	}
	rep, err = l.waitFor(round, timeout)
	if rep == nil {
		return err
	}
	if perr := app.printRound(rep); perr != nil {
		return perr
	}
	if err != nil {
		return shownError{err}
	}
	return nil
}
