package cmd

import (
	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
)

// shortStore is the state file opened for each transaction and closed right
// after, so that an agent and the commands beside it take turns instead of
// one holding the file for its whole run.
type shortStore struct {
	path string
	opt  state.Options
}

var _ ota.Store = (*shortStore)(nil)

func (a *App) shortStore() *shortStore {
	return &shortStore{path: a.Settings.StatePath,
		opt: state.Options{LockTimeout: a.Settings.LockTimeout, Create: true, Lazy: true}}
}

// View implements ota.Store with a read-only open.
func (s *shortStore) View(fn func(ota.Tx) error) error {
	opt := s.opt
	opt.ReadOnly, opt.Create = true, false
	st, err := state.Open(s.path, opt)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.View(fn)
}

// Update implements ota.Store.
func (s *shortStore) Update(fn func(ota.Tx) error) error {
	st, err := state.Open(s.path, s.opt)
	if err != nil {
		return err
	}
	defer st.Close()
	return st.Update(fn)
}
