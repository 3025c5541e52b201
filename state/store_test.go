package state

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/ota/storetest"
)

// TestStore holds the bbolt store to the ota.Store contract.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) ota.Store { return openTest(t) })
}

// An Update that wrote nothing still committed, and every commit rewrites
// a meta page: a command that received only messages it had recorded
// before changed the state file's bytes, even when it was refused.
func TestUpdateWithoutWritesLeavesTheFile(t *testing.T) {
	s := openTest(t)
	d := &ota.Device{ProductKey: "pk5", DeviceKey: "r-2", Version: "1.0.0"}
	if err := s.Update(func(tx ota.Tx) error { return tx.PutDevice(d) }); err != nil {
		t.Fatalf("Update(PutDevice): %v", err)
	}
	before := fileSum(t, s.Path())
	err := s.Update(func(tx ota.Tx) error {
		if _, err := tx.Device("pk5", "r-2"); err != nil {
			return err
		}
		return tx.SetEach("retained", "", func(string) error { return nil })
	})
	if err != nil {
		t.Fatalf("Update(reads only): %v", err)
	}
	if fileSum(t, s.Path()) != before {
		t.Errorf("Update(reads only) changed the file's bytes, want them unchanged")
	}
	if err := s.Update(func(tx ota.Tx) error { return tx.PutDevice(d) }); err != nil {
		t.Fatalf("Update(PutDevice): %v", err)
	}
	if fileSum(t, s.Path()) == before {
		t.Errorf("Update(PutDevice) left the file's bytes unchanged, want the write committed")
	}
}

// openTest creates a state file in a temporary folder. Its cleanup closes
// the store, reopens the file read-only and fails the test if bbolt's page
// check or the store's index checks find anything: every test database is
// checked, not only those of tests about checking.
func openTest(t *testing.T) *Store {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state", "state.db")
	s, err := Open(path, Options{Create: true, LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { checkFile(t, s) })
	reserve(t, s)
	return s
}

// reserve grows a new file to 1 MiB and frees the space again. bbolt makes
// a commit wait for open read transactions when the file outgrows its
// memory map; on a tiny new file nearly every commit does, which would hide
// from the suite whether a View really keeps its snapshot while another
// transaction commits.
func reserve(t *testing.T, s *Store) {
	t.Helper()
	key := []byte("test-reserve")
	for _, v := range [][]byte{make([]byte, 1<<20), nil} {
		err := s.db.Update(func(b *bolt.Tx) error {
			if v == nil {
				return b.Bucket(bucketMeta).Delete(key)
			}
			return b.Bucket(bucketMeta).Put(key, v)
		})
		if err != nil {
			t.Fatalf("reserve space: %v", err)
		}
	}
}

// checkFile closes s and checks its file's structure.
func checkFile(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	r, err := Open(s.Path(), Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		t.Errorf("reopen %s for checking: %v", s.Path(), err)
		return
	}
	defer r.Close()
	for _, err := range r.check(false) {
		t.Errorf("check %s: %v", s.Path(), err)
	}
}

// checkPages makes the test's cleanup run bbolt's own consistency check
// on the file at path, for test databases whose records or indexes are
// broken on purpose (or that are not current otactl files) and so cannot
// go through checkFile. Only a test that damages pages may skip it.
func checkPages(t *testing.T, path string) {
	t.Helper()
	t.Cleanup(func() {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Errorf("reopen %s for checking: %v", path, err)
			return
		}
		defer db.Close()
		_ = db.View(func(b *bolt.Tx) error {
			for err := range b.Check() {
				t.Errorf("check %s: %v", path, err)
			}
			return nil
		})
	})
}

// fileSum identifies a file's exact bytes, for tests that must not write.
func fileSum(t *testing.T, path string) [sha256.Size]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sha256.Sum256(b)
}

// wantKind checks that err is an *ota.Error of kind k whose message
// contains every one of parts.
func wantKind(t *testing.T, what string, err error, k ota.Kind, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s = nil, want a %s error", what, k)
	}
	if got := ota.KindOf(err); got != k {
		t.Errorf("%s = %v (kind %s), want kind %s", what, err, got, k)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s = %q, want it to mention %q", what, err, p)
		}
	}
}
