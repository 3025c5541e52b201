package state

import (
	"fmt"
	"io/fs"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

// DefaultLockTimeout is how long Open waits for another process to release
// the state file when Options.LockTimeout is zero.
const DefaultLockTimeout = 5 * time.Second

// ErrNotExist is in the chain of the error Open returns when the state file
// does not exist and it was not asked to create it, so that read-only
// commands can print an empty result instead of creating a file. It wraps
// fs.ErrNotExist.
var ErrNotExist = fmt.Errorf("no state file: %w", fs.ErrNotExist)

// Options says how Open treats the state file.
type Options struct {
	// ReadOnly opens the file with a shared lock and never writes it, so
	// that several readers can run at once. Wins over Create.
	ReadOnly bool
	// LockTimeout bounds the wait for another process's lock; zero means
	// DefaultLockTimeout. There is no way to wait forever: a hung command
	// is worse than an error.
	LockTimeout time.Duration
	// Create makes the file, and its folder, when it does not exist.
	Create bool
	// Lazy maps the file without reading it all in first: right for a short
	// transaction that touches a few pages (the agent opens the file for
	// each batch), wrong for a scan of the whole file.
	Lazy bool
}

// Store is an otactl state file opened by Open. It implements ota.Store
// and is safe for concurrent use by the goroutines of one process.
type Store struct {
	db   *bolt.DB
	path string
}

var _ ota.Store = (*Store)(nil)

// Path returns the absolute path of the state file.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock. It waits for transactions in
// progress to finish.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return stateErr(err, "close state file %s: %v", s.path, err)
	}
	return nil
}

// View implements ota.Store.
func (s *Store) View(fn func(ota.Tx) error) error {
	ran := false
	err := s.db.View(func(b *bolt.Tx) error {
		ran = true
		return fn(&tx{b: b, path: s.path})
	})
	if err != nil && !ran {
		return stateErr(err, "read state file %s: %v", s.path, err)
	}
	return err
}

// Update implements ota.Store. An error from fn comes back unchanged; a
// failure to begin or commit (a full disk, a read-only store) is wrapped
// with the file's name.
//
// A transaction in which fn wrote nothing is rolled back instead of
// committed: bbolt's commit would still write a meta page, and a command
// that received only messages it had recorded before, or was refused, must
// leave the file's bytes as they were, as read-only commands do.
func (s *Store) Update(fn func(ota.Tx) error) (err error) {
	b, err := s.db.Begin(true)
	if err != nil {
		return stateErr(err, "write state file %s: %v", s.path, err)
	}
	committed := false
	defer func() {
		if !committed {
			// A failed Commit has rolled back already; this one then only
			// returns ErrTxClosed.
			_ = b.Rollback()
		}
	}()
	t := &tx{b: b, path: s.path}
	if err := fn(t); err != nil {
		return err
	}
	if !t.wrote {
		return nil
	}
	return s.commit(b, &committed)
}

// commit commits b. A panic there is bbolt's, writing pages it read from a
// damaged file (a panic in fn is the caller's and stays one).
func (s *Store) commit(b *bolt.Tx, committed *bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = stateErr(nil, "write state file %s: it is damaged: %v", s.path, r)
		}
	}()
	if err := b.Commit(); err != nil {
		return stateErr(err, "write state file %s: %v", s.path, err)
	}
	*committed = true
	return nil
}

// stateErr returns an error of KindState with a formatted message and cause
// as its underlying error, for messages that phrase the cause their own way.
func stateErr(cause error, format string, args ...any) *ota.Error {
	return &ota.Error{Kind: ota.KindState, Msg: fmt.Sprintf(format, args...), Err: cause}
}
