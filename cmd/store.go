package cmd

import (
	"errors"
	"os"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
)

// openStore opens the state file for writing, creating it when missing.
func (a *App) openStore() (*state.Store, error) {
	return state.Open(a.Settings.StatePath, state.Options{
		LockTimeout: a.Settings.LockTimeout,
		Create:      true,
	})
}

// update runs fn in one write transaction on the state file.
func (a *App) update(fn func(ota.Tx) error) error {
	st, err := a.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(fn)
}

// modify is update for commands that change existing records: it refuses
// to create a state file that is not there yet.
func (a *App) modify(fn func(ota.Tx) error) error {
	if _, err := os.Stat(a.Settings.StatePath); errors.Is(err, os.ErrNotExist) {
		return ota.Invalid("no state file at %s yet: nothing to change", a.Settings.StatePath).
			WithHint("register firmware first: otactl firmware add --help")
	}
	return a.update(fn)
}

// view runs fn in a read-only transaction, opening the file read-only so
// that it stays byte-for-byte unchanged. found is false, and fn is not
// called, when the state file does not exist yet.
func (a *App) view(fn func(ota.Tx) error) (found bool, err error) {
	st, err := state.Open(a.Settings.StatePath, state.Options{
		ReadOnly:    true,
		LockTimeout: a.Settings.LockTimeout,
	})
	if errors.Is(err, state.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer st.Close()
	return true, st.View(fn)
}

// files is the folder of stored firmware images beside the state file.
func (a *App) files() *state.Files { return state.FilesFor(a.Settings.StatePath) }

// fileURL is where devices fetch the firmware's image.
func (a *App) fileURL(f *ota.Firmware) string {
	return ota.FileURL(f, a.Settings.FilesURL, a.files().Path)
}
