package state

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/otactl/otactl/ota"
)

// errEmptyFile stops bbolt from initialising an existing empty file, which
// it would otherwise take for a new database: an empty file at the state
// path was made by someone else, and is not ours to write.
var errEmptyFile = errors.New("the file is empty")

// Open opens the state file at path, creating it when opt.Create is set and
// it does not exist. Errors are *ota.Error of KindState that name the file:
// the file is locked by another process beyond opt.LockTimeout, it is not an
// otactl state file, or its schema is newer than this otactl. A missing file
// that is not to be created gives an error matching ErrNotExist.
func Open(path string, opt Options) (*Store, error) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if opt.LockTimeout <= 0 {
		opt.LockTimeout = DefaultLockTimeout
	}
	if err := ensureFile(path, opt); err != nil {
		return nil, err
	}
	db, err := openBolt(path, opt)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path}
	if err := s.prepare(opt.ReadOnly); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// ensureFile checks that path is a regular file, or creates it.
func ensureFile(path string, opt Options) error {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Mode().IsRegular():
		return nil
	case err == nil:
		return ota.Errorf(ota.KindState, "state file %s is not a regular file", path)
	case !errors.Is(err, fs.ErrNotExist):
		return stateErr(err, "open state file %s: %v", path, err)
	case opt.ReadOnly || !opt.Create:
		return notExist(path)
	}
	return create(path, opt.LockTimeout)
}

// notExist is the error of a missing state file that was not to be created.
func notExist(path string) error {
	return stateErr(ErrNotExist, "state file %s does not exist", path)
}

// create makes a complete, current state file at path. It builds the file
// under a temporary name and links it into place, so that a crash never
// leaves a half-made file at path (which the next Open would refuse), and
// two processes creating it at once both end up using the same file.
func create(path string, timeout time.Duration) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return stateErr(err, "create folder for state file %s: %v", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.new")
	if err != nil {
		return stateErr(err, "create state file %s: %v", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Close(); err != nil {
		return stateErr(err, "create state file %s: %v", path, err)
	}
	if err := initFile(name, timeout); err != nil {
		return stateErr(err, "create state file %s: %v", path, err)
	}
	if err := linkNew(name, path); err != nil {
		return stateErr(err, "create state file %s: %v", path, err)
	}
	return syncDir(dir)
}

// initFile turns the empty file name into a current, empty state file.
func initFile(name string, timeout time.Duration) error {
	db, err := bolt.Open(name, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		return err
	}
	err = db.Update(func(b *bolt.Tx) error {
		if err := writeMarker(b); err != nil {
			return err
		}
		return migrate(b, 0, migrations)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}

// linkNew gives the file at tmp the name path unless path exists already,
// in which case another process won the race and its file is kept.
func linkNew(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return nil
	}
	// Some filesystems have no hard links. Rename replaces silently, so
	// look first; the window for a lost race is tiny and costs one empty
	// file.
	if _, serr := os.Lstat(path); serr == nil {
		return nil
	}
	return os.Rename(tmp, path)
}

// openBolt opens an existing file with bbolt and classifies its failures.
func openBolt(path string, opt Options) (db *bolt.DB, err error) {
	defer func() {
		// bbolt trusts a file whose meta pages pass their checksum; a
		// damaged one can still make it panic, which must not crash otactl.
		if r := recover(); r != nil {
			db, err = nil, notOtactl(path, fmt.Errorf("%v", r))
		}
	}()
	flags := mmapFlags
	if opt.Lazy {
		flags = 0
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout:   opt.LockTimeout,
		ReadOnly:  opt.ReadOnly,
		MmapFlags: flags,
		OpenFile:  openExisting,
		// A writable open of a file whose free list is not synced commits
		// one at once. Deferring that until prepare has seen otactl's
		// marker keeps a foreign file untouched; prepare turns it back off.
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, openError(path, opt.LockTimeout, err)
	}
	return db, nil
}

// openExisting is bbolt's OpenFile: it never creates the file (create does
// that, completely) and refuses an empty one.
func openExisting(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() == 0 {
		err = errEmptyFile
	}
	if err == nil {
		err = checkLength(f, fi.Size())
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// openError turns a bbolt open failure into an error for the user.
func openError(path string, waited time.Duration, err error) error {
	switch {
	case errors.Is(err, bolterrors.ErrTimeout):
		return stateErr(err, "state file %s is in use by another otactl process (waited %s)",
			path, waited).WithHint("wait for it to finish, or raise --lock-timeout")
	case errors.Is(err, fs.ErrNotExist):
		return notExist(path)
	case errors.Is(err, errEmptyFile),
		errors.Is(err, bolterrors.ErrInvalid),
		errors.Is(err, bolterrors.ErrVersionMismatch),
		errors.Is(err, bolterrors.ErrChecksum):
		return notOtactl(path, err)
	case errors.Is(err, errTruncated):
		return stateErr(err, "state file %s is damaged: %v", path, err).
			WithHint("restore a backup (otactl state backup makes them); otactl never writes to it")
	}
	return stateErr(err, "open state file %s: %v", path, err)
}

// notOtactl is the error of a file that otactl did not write, or that was
// damaged beyond bbolt's own checks. The file is left as it is.
func notOtactl(path string, reason error) error {
	return stateErr(reason, "state file %s: not an otactl state file (%v)", path, reason).
		WithHint("check --state; otactl never overwrites an existing file, " +
			"so move it away or restore a backup")
}

// syncDir makes a new or renamed directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return stateErr(err, "sync folder %s: %v", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return stateErr(err, "sync folder %s: %v", dir, err)
	}
	return nil
}
