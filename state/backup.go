package state

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

// Backup writes a consistent copy of the state file to w and returns the
// number of bytes written. It runs in a read transaction, so other
// goroutines and processes keep reading and writing meanwhile; the copy is
// the file as of the transaction's start.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(b *bolt.Tx) (err error) {
		n, err = b.WriteTo(w)
		return err
	})
	if err != nil {
		return n, stateErr(err, "back up state file %s: %v", s.path, err)
	}
	return n, nil
}

// BackupFile writes a backup to the file dst, mode 0600. The copy goes to a
// temporary file in dst's folder, synced before it takes dst's name, so dst
// is never a partial backup. An existing dst is refused unless force is
// set, and dst may never be the state file itself.
func (s *Store) BackupFile(dst string, force bool) error {
	if err := s.checkBackupDst(dst, force); err != nil {
		return err
	}
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".*.tmp")
	if err != nil {
		return dstErr(dst, err)
	}
	defer os.Remove(tmp.Name())
	out := &dstWriter{w: tmp}
	if _, err := s.Backup(out); err != nil {
		_ = tmp.Close()
		if out.err != nil {
			return dstErr(dst, out.err)
		}
		return err
	}
	if err := syncClose(tmp); err != nil {
		return dstErr(dst, err)
	}
	if err := placeFile(tmp.Name(), dst, force); err != nil {
		return err
	}
	return syncDir(dir)
}

// checkBackupDst refuses a destination that would destroy data.
func (s *Store) checkBackupDst(dst string, force bool) error {
	fi, err := os.Stat(dst)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return dstErr(dst, err)
	}
	if self, err := os.Stat(s.path); err == nil && os.SameFile(fi, self) {
		return ota.Invalid("back up to %s: that is the state file itself", dst)
	}
	if !force {
		return ota.Refused("back up to %s: the file exists", dst).
			WithHint("choose another name, or pass --force to replace it")
	}
	if !fi.Mode().IsRegular() {
		return ota.Invalid("back up to %s: not a regular file", dst)
	}
	return nil
}

// placeFile gives the finished temporary file the name dst. Without force
// it links, which fails rather than replace a dst that appeared meanwhile.
func placeFile(tmp, dst string, force bool) error {
	var err error
	if force {
		err = os.Rename(tmp, dst)
	} else {
		err = os.Link(tmp, dst)
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		return ota.Refused("back up to %s: the file exists", dst).
			WithHint("choose another name, or pass --force to replace it")
	case err != nil:
		return dstErr(dst, err)
	}
	return nil
}

// dstErr is a failure to write the backup itself (no permission, a full
// disk): the state file is fine, so it is not the state file's exit code 4
// but an unexpected failure, as any failed write is (docs/exit-codes.md).
func dstErr(dst string, err error) error {
	return ota.Errorf(ota.KindInternal, "back up to %s: %w", dst, err)
}

// dstWriter keeps the first error of writing the backup, to tell it from
// one of reading the state file.
type dstWriter struct {
	w   io.Writer
	err error
}

func (d *dstWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if err != nil && d.err == nil {
		d.err = err
	}
	return n, err
}

// syncClose flushes f to the disk and closes it, reporting the first error.
func syncClose(f *os.File) error {
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
