package cmd

import (
	"context"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport/sim"
)

func newSimulateCmd(app *App) *cobra.Command {
	var o sim.Options
	var failMode string
	var duration time.Duration
	modes := make([]string, 0, len(sim.FailModes()))
	for _, m := range sim.FailModes() {
		modes = append(modes, string(m))
	}
	c := &cobra.Command{
		Use:   "simulate --product <pk> --devices <n> --version <v> [flags]",
		Short: "Run a fleet of simulated devices that speak the OTA protocol",
		Long: `Run simulated devices against the broker until interrupted (or for --duration).
Each device reports its version, takes upgrade pushes, downloads the image
from its fileUrl (file://, http://, https://), checks size and digest, reports
progress, and reports its new version. A --fail-rate share of the devices,
chosen by --seed, fails every upgrade in --fail-mode instead:
` + "  " + strings.Join(modes, ", ") + `.
Device keys are --key-prefix followed by 1..N. Many devices share each MQTT
connection, so large fleets fit on one machine. A summary is printed on exit
on stderr; with --json it is also the one JSON document on stdout.`,
		Example: `  $ otactl simulate --product pk1 --devices 50 --version 1.0.0 &
  $ otactl simulate --product pk1 --devices 5 --version 1.0.0 --fail-rate 0.2 \
      --fail-mode verify --seed 7 --duration 2m`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			o.FailMode = sim.FailMode(failMode)
			return runSimulate(app, o, duration)
		},
	}
	f := c.Flags()
	f.StringVar(&o.ProductKey, "product", "", "product `key` of the devices (required)")
	f.IntVar(&o.Devices, "devices", 0, "number of devices (required)")
	f.StringVar(&o.Version, "version", "", "`version` the devices run at start (required)")
	f.StringVar(&o.KeyPrefix, "key-prefix", sim.DefaultKeyPrefix, "device keys are `prefix`1..N")
	f.Float64Var(&o.FailRate, "fail-rate", 0, "share of devices, 0 to 1, that fail every upgrade")
	f.StringVar(&failMode, "fail-mode", "", "how failing devices fail: "+strings.Join(modes, ", "))
	_ = c.RegisterFlagCompletionFunc("fail-mode", oneOf(modes...))
	f.DurationVar(&o.StepDelay, "step-delay", sim.DefaultStepDelay, "pause between progress reports")
	f.IntVar(&o.Connections, "connections", 0, "MQTT connections to spread devices over (default: 1 per 500)")
	f.Int64Var(&o.Seed, "seed", 1, "seed for which devices fail and when they connect")
	f.DurationVar(&o.ConnectSpread, "connect-spread", 0, "bring devices online at random moments over this time")
	f.DurationVar(&duration, "duration", 0, "stop after this long (default: until interrupted)")
	return c
}

func runSimulate(app *App, o sim.Options, duration time.Duration) error {
	if o.FailRate > 0 && o.FailMode == "" {
		return ota.Invalid("--fail-rate %g needs --fail-mode", o.FailRate)
	}
	if duration < 0 {
		return ota.Invalid("--duration %s must not be negative", duration)
	}
	s := app.Settings
	o.Broker, o.Username, o.Password = s.Broker, s.Username, s.Password
	o.CAFile, o.CertFile, o.KeyFile, o.TLSInsecure = s.TLSCA, s.TLSCert, s.TLSKey, s.TLSInsecure
	ctx := app.Context
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	var log io.Writer = app.IO.Err
	if s.Quiet {
		log = io.Discard
	}
	sum, err := sim.Run(ctx, o, log)
	if err != nil {
		return err
	}
	if s.JSON {
		return writeJSON(app.IO.Out, sum)
	}
	return nil
}
