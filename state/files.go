package state

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/otactl/otactl/ota"
)

// Files is the content-addressed store of firmware images: a folder named
// files beside the state file, one file per distinct content, named by the
// lowercase hex SHA-256 of that content.
//
// Names are always SHA-256, whatever sign method a firmware records: MD5
// collisions can be made on purpose, and two different images must never
// share a name. The recorded sign is computed alongside in the same pass.
type Files struct {
	dir string
}

// FilesFor returns the file store that belongs to the state file at
// statePath. The folder is created, 0700, by the first Put.
func FilesFor(statePath string) *Files {
	return &Files{dir: filepath.Join(filepath.Dir(statePath), "files")}
}

// Dir returns the store's folder.
func (f *Files) Dir() string { return f.dir }

// Put copies the file src into the store, reading it once to compute its
// size, its SHA-256 (the name) and its digest by signMethod (ota.SignSHA256
// or ota.SignMD5, in any case), which it returns as sign. When the store
// already holds the same content, that copy is kept and the new one dropped.
func (f *Files) Put(src, signMethod string) (name, sign string, size int64, err error) {
	h, err := newHash(signMethod)
	if err != nil {
		return "", "", 0, err
	}
	in, err := os.Open(src)
	if err != nil {
		return "", "", 0, ota.Errorf(ota.KindInvalid, "read firmware file: %w", err)
	}
	defer in.Close()
	tmp, err := f.tempFile()
	if err != nil {
		return "", "", 0, err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	size, err = io.Copy(io.MultiWriter(tmp, sum, h), in)
	if err != nil {
		_ = tmp.Close()
		return "", "", 0, ota.Errorf(ota.KindInvalid, "copy firmware file %s: %w", src, err)
	}
	if err := syncClose(tmp); err != nil {
		return "", "", 0, stateErr(err, "store firmware file %s: %v", src, err)
	}
	name = hex.EncodeToString(sum.Sum(nil))
	if err := f.keep(tmp.Name(), name); err != nil {
		return "", "", 0, err
	}
	return name, hex.EncodeToString(h.Sum(nil)), size, nil
}

// tempFile makes the store's folder if needed and a new file in it, so
// that the final rename stays within one filesystem.
func (f *Files) tempFile() (*os.File, error) {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return nil, stateErr(err, "create file store %s: %v", f.dir, err)
	}
	tmp, err := os.CreateTemp(f.dir, ".put-*")
	if err != nil {
		return nil, stateErr(err, "create file in %s: %v", f.dir, err)
	}
	return tmp, nil
}

// keep gives the finished temporary file its content name, unless an
// intact copy of that content is already there. A damaged copy is
// replaced rather than trusted.
func (f *Files) keep(tmp, name string) error {
	dst := f.Path(name)
	if err := f.Verify(name, ota.SignSHA256, name); err == nil {
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		return stateErr(err, "store firmware file %s: %v", dst, err)
	}
	return syncDir(f.dir)
}

// Path returns the path of the stored file name, or "" when name is not a
// name this store gives (64 lowercase hex digits), so that no name can
// reach outside the folder.
func (f *Files) Path(name string) string {
	if !validName(name) {
		return ""
	}
	return filepath.Join(f.dir, name)
}

// Open opens the stored file name for reading.
func (f *Files) Open(name string) (*os.File, error) {
	p, err := f.path(name)
	if err != nil {
		return nil, err
	}
	file, err := os.Open(p)
	if err != nil {
		return nil, stateErr(err, "open firmware file: %v", err)
	}
	return file, nil
}

// Verify recomputes the digest of the stored file name by signMethod and
// compares it with sign (hex, any case). A mismatch is an error of
// KindState naming the file: the stored copy was damaged or replaced.
func (f *Files) Verify(name, signMethod, sign string) error {
	h, err := newHash(signMethod)
	if err != nil {
		return err
	}
	file, err := f.Open(name)
	if err != nil {
		return err
	}
	defer file.Close()
	if _, err := io.Copy(h, file); err != nil {
		return stateErr(err, "read firmware file %s: %v", file.Name(), err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != strings.ToLower(sign) {
		return ota.Errorf(ota.KindState,
			"firmware file %s does not match its recorded %s digest (got %s, want %s)",
			file.Name(), strings.ToLower(signMethod), got, sign)
	}
	return nil
}

// Remove deletes the stored file name; removing a missing one is no error,
// so that a retried firmware delete succeeds.
func (f *Files) Remove(name string) error {
	p, err := f.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return stateErr(err, "remove firmware file: %v", err)
	}
	return nil
}

// path is Path with an error for names the store never gives.
func (f *Files) path(name string) (string, error) {
	if p := f.Path(name); p != "" {
		return p, nil
	}
	return "", ota.Invalid("%q is not a stored file name (64 lowercase hex digits)", name)
}

// validName reports whether name is a lowercase hex SHA-256.
func validName(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	for _, c := range []byte(name) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// newHash returns the digest of a sign method named in any case.
func newHash(signMethod string) (hash.Hash, error) {
	switch strings.ToLower(signMethod) {
	case ota.SignSHA256:
		return sha256.New(), nil
	case ota.SignMD5:
		return md5.New(), nil
	}
	return nil, ota.Invalid("unknown sign method %q; use %s or %s",
		signMethod, ota.SignSHA256, ota.SignMD5)
}
