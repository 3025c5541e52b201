package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

// App carries what every command shares: the streams, the resolved
// settings, the clock and the logger. One App serves one run.
type App struct {
	IO       *IO
	Settings Settings
	Now      func() time.Time
	Log      *slog.Logger // debugging traces; discarded unless --debug
	Context  context.Context

	args   []string
	ran    bool // a command's RunE started: later errors are not usage errors
	loaded bool // Settings are resolved
}

// Main runs otactl with args and returns the process exit code
// (docs/exit-codes.md). It never calls os.Exit, so tests run it in-process.
func Main(args []string, streams *IO) int {
	ctx, stop := signalContext()
	defer stop()
	app := &App{IO: streams, Now: time.Now, Context: ctx, args: args,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	root := newRootCmd(app)
	root.SetArgs(args)
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	err := root.ExecuteContext(ctx)
	return app.finish(err)
}

func newRootCmd(app *App) *cobra.Command {
	root := &cobra.Command{
		Use:   "otactl <command> [flags]",
		Short: "Verify firmware on a few devices before upgrading a fleet over MQTT",
		Long: `otactl registers firmware images, learns a fleet from the devices' own version
reports over MQTT, verifies a firmware on at most 5 devices, and refuses any
batch upgrade of a firmware that has not passed that verification.

Settings come from flags, then OTACTL_* environment variables, then the config
file, then defaults (docs/configuration.md). Exit codes are listed in
docs/exit-codes.md: 0 ok, 1 unexpected, 2 invalid input, 3 refused by a rule,
4 state file busy or unusable, 5 broker unreachable, 6 jobs failed, 7 timeout,
8 no version reported.`,
		Example: `  $ otactl firmware add --product pk1 --version 2.0.0 --file fw-2.0.0.bin
  $ otactl sync && otactl versions --product pk1
  $ otactl verify start pk1/2.0.0 --from-version 1.0.0 --device d1,d2
  $ otactl verify status pk1/2.0.0 --wait --timeout 30m`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			app.ran = true
			return app.load(c.Root())
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return ota.Invalid("%v", err)
	})
	addGlobalFlags(root)
	root.AddCommand(
		newFirmwareCmd(app),
		newStateCmd(app),
		newVersionCmd(app),
		newVerifyCmd(app),
		newBatchCmd(app),
		newAgentCmd(app),
		newServeFilesCmd(app),
		newHistoryCmd(app),
	)
	addDeviceCommands(root, app)
	return root
}

func (a *App) load(root *cobra.Command) error {
	s, err := loadSettings(root)
	if err != nil {
		a.Settings.JSON = s.JSON // how finish prints the error, when json is known
		return err
	}
	a.Settings, a.loaded = s, true
	if s.Debug {
		a.Log = slog.New(slog.NewTextHandler(a.IO.Err, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// finish turns the outcome of a run into output and an exit code. It is the
// only place that maps errors to exit codes.
func (a *App) finish(err error) int {
	if err == nil {
		return 0
	}
	kind := ota.KindOf(err)
	if !a.ran && kind == ota.KindInternal {
		kind = ota.KindInvalid // cobra refused the command line before any command ran
	}
	var shown shownError
	if a.Settings.JSON && errors.As(err, &shown) {
		// The command's one JSON document is out already; the reason goes
		// with the diagnostics.
		fmt.Fprintf(a.IO.Err, "otactl: %v\n", err)
		return ExitCode(kind)
	}
	if a.Settings.JSON || (!a.loaded && wantsJSON(a.args)) {
		doc := map[string]any{"error": map[string]string{"code": kind.String(), "message": err.Error()}}
		if h := ota.HintOf(err); h != "" {
			doc["error"].(map[string]string)["hint"] = h
		}
		writeJSON(a.IO.Out, doc)
	} else {
		fmt.Fprintf(a.IO.Err, "otactl: %v\n", err)
		if h := ota.HintOf(err); h != "" {
			fmt.Fprintf(a.IO.Err, "hint: %s\n", h)
		} else if kind == ota.KindInvalid && !a.ran {
			fmt.Fprintln(a.IO.Err, "Run 'otactl help' for usage.")
		}
	}
	return ExitCode(kind)
}

// groupCmd is a command that only holds subcommands. A mistyped subcommand
// is a usage error (exit 2), never help and success: a typo in a CI gate
// must stop the pipeline.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 0 {
				return c.Help()
			}
			return ota.Invalid("unknown command %q for %q", args[0], c.CommandPath()).
				WithHint("otactl %s --help", c.Name())
		},
	}
}

// shownError is an outcome that the command has already printed as its JSON
// document (a round or task that waited and failed, say): with --json, finish
// gives its exit code and prints no second document.
type shownError struct{ error }

func (e shownError) Unwrap() error { return e.error }

// ExitCode is the process exit code for an error kind.
func ExitCode(k ota.Kind) int { return int(k) + 1 }

// wantsJSON reports whether --json was asked for when the command line
// failed before settings were resolved (a bad flag next to --json). It
// reads booleans as the settings do; a value that is not one, such as
// OTACTL_JSON=maybe, asks for nothing, and the error is a line on stderr.
func wantsJSON(args []string) bool {
	value := os.Getenv("OTACTL_JSON")
	for _, a := range args {
		if a == "--json" {
			value = "true"
		} else if v, ok := strings.CutPrefix(a, "--json="); ok {
			value = v // the last one wins, as with any flag
		}
	}
	b, err := strconv.ParseBool(value)
	return err == nil && b
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// infof prints a progress or status line on stderr unless --quiet.
func (a *App) infof(format string, args ...any) {
	if a.Settings.Quiet {
		return
	}
	fmt.Fprintf(a.IO.Err, format+"\n", args...)
}
