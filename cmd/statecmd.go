package cmd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
)

func newStateCmd(app *App) *cobra.Command {
	c := groupCmd("state <command>", "Back up and check the state file")
	var force bool
	backup := &cobra.Command{
		Use:   "backup <file>",
		Short: "Write a consistent copy of the state file while otactl keeps working",
		Long: `Write a consistent copy of the state file to <file>, a file name in a folder
that exists. The copy is taken in a read transaction, so it is safe while
other otactl commands run. An existing <file> is refused unless --force is
given. Stored firmware images are not part of the copy: back up the files
folder beside the state file too.`,
		Example: "  $ otactl state backup /var/backups/otactl-$(date +%F).db",
		Args:    oneArg("file"),
		RunE: func(_ *cobra.Command, args []string) error {
			return runStateBackup(app, args[0], force)
		},
	}
	backup.Flags().BoolVar(&force, "force", false, "replace an existing backup file")
	check := &cobra.Command{
		Use:   "check",
		Short: "Check the state file's structure and otactl's own invariants",
		Long: `Check the state file: bbolt's page-level consistency check, then otactl's own
invariants (every active job is its device's active job, every round's jobs
exist, every queued push names a job, indexes agree with records). Exits 4
and lists the problems when any is found.`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return runStateCheck(app) },
	}
	c.AddCommand(backup, check)
	return c
}

func (a *App) openReadOnly() (*state.Store, error) {
	return state.Open(a.Settings.StatePath, state.Options{ReadOnly: true, LockTimeout: a.Settings.LockTimeout})
}

func runStateBackup(app *App, dst string, force bool) error {
	if err := checkBackupPath(dst, app.Settings.StatePath); err != nil {
		return err
	}
	st, err := app.openReadOnly()
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.BackupFile(dst, force); err != nil {
		return err
	}
	if app.Settings.JSON {
		return writeJSON(app.IO.Out, map[string]string{"backup": dst, "state": app.Settings.StatePath})
	}
	app.infof("backed up %s to %s", app.Settings.StatePath, dst)
	return nil
}

// checkBackupPath refuses a destination that cannot become a file, before
// the state file is opened: an empty <file> once reached the store and
// failed as "link ./...tmp" (exit 4), and a folder was "the file exists",
// with a hint to --force that could not work either.
func checkBackupPath(dst, statePath string) error {
	if dst == "" {
		return ota.Invalid("state backup needs a file to write, got an empty path %q", dst)
	}
	if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
		return ota.Invalid("backup %s: that is a folder, not a file", dst).
			WithHint("otactl state backup %s", filepath.Join(dst, filepath.Base(statePath)))
	}
	dir := filepath.Dir(dst)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ota.Invalid("backup %s: folder %s does not exist", dst, dir)
	case err != nil:
		return ota.Invalid("backup %s: folder %s: %v", dst, dir, unwrapPath(err))
	case !fi.IsDir():
		return ota.Invalid("backup %s: %s is not a folder", dst, dir)
	}
	return nil
}

func runStateCheck(app *App) error {
	st, err := app.openReadOnly()
	if err != nil {
		return err
	}
	defer st.Close()
	problems := st.Check()
	msgs := make([]string, len(problems))
	for i, p := range problems {
		msgs[i] = p.Error()
	}
	if app.Settings.JSON && len(problems) == 0 {
		return writeJSON(app.IO.Out, map[string]any{"state": app.Settings.StatePath, "ok": true})
	}
	if len(problems) == 0 {
		app.infof("state file %s is consistent", app.Settings.StatePath)
		return nil
	}
	if !app.Settings.JSON {
		for _, m := range msgs {
			fmt.Fprintln(app.IO.Out, m)
		}
	}
	return ota.Errorf(ota.KindState, "state file %s has %d problems: %s",
		app.Settings.StatePath, len(problems), strings.Join(msgs, "; "))
}
