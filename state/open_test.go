package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

func TestOpenCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "folder")
	path := filepath.Join(dir, "state.db")
	s, err := Open(path, Options{Create: true})
	if err != nil {
		t.Fatalf("Open(Create): %v", err)
	}
	t.Cleanup(func() { checkFile(t, s) })
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	wantMode(t, dir, 0o700)
	wantMode(t, path, 0o600)
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("folder holds %v (%v), want the state file alone", entries, err)
	}
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

// Regression: a read-only command on a machine that never ran otactl must
// not create a state file, and must be able to tell that case apart.
func TestOpenMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "state.db")
	for _, opt := range []Options{{ReadOnly: true}, {}, {ReadOnly: true, Create: true}} {
		_, err := Open(path, opt)
		if !errors.Is(err, ErrNotExist) || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Open(missing, %+v) = %v, want ErrNotExist", opt, err)
		}
		wantKind(t, "Open(missing)", err, ota.KindState, path)
	}
	if _, err := os.Stat(filepath.Dir(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open without Create made %s", filepath.Dir(path))
	}
}

func TestOpenConcurrentCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := Open(path, Options{Create: true, LockTimeout: 5 * time.Second})
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	checkPages(t, path)
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d of 4 at once: %v", i, err)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries after concurrent creation, want 1", len(entries))
	}
}

// foreignFiles are files otactl must refuse without writing a byte.
var foreignFiles = []struct {
	name string
	make func(t *testing.T, path string)
}{
	{"garbage", func(t *testing.T, path string) {
		b := make([]byte, 64<<10)
		r := rand.NewChaCha8([32]byte{1})
		_, _ = r.Read(b)
		writeFile(t, path, b)
	}},
	{"short garbage", func(t *testing.T, path string) { writeFile(t, path, []byte("hello\n")) }},
	{"empty file", func(t *testing.T, path string) { writeFile(t, path, nil) }},
	{"bbolt file of another program", func(t *testing.T, path string) {
		rawBolt(t, path, nil, func(b *bolt.Tx) error {
			_, err := b.CreateBucket([]byte("widgets"))
			return err
		})
	}},
	{"bbolt file without free list", func(t *testing.T, path string) {
		// bbolt writes a free list on a writable open of such a file
		// unless told not to.
		rawBolt(t, path, &bolt.Options{NoFreelistSync: true}, func(b *bolt.Tx) error {
			_, err := b.CreateBucket([]byte("widgets"))
			return err
		})
	}},
	{"empty bbolt file", func(t *testing.T, path string) { rawBolt(t, path, nil, nil) }},
	{"bbolt file with another marker", func(t *testing.T, path string) {
		rawBolt(t, path, nil, func(b *bolt.Tx) error {
			m, err := b.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return m.Put(keyApp, []byte("otherapp"))
		})
	}},
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	for _, ff := range foreignFiles {
		t.Run(ff.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			ff.make(t, path)
			before := fileSum(t, path)
			for _, opt := range []Options{{}, {Create: true}, {ReadOnly: true}} {
				s, err := Open(path, opt)
				if err == nil {
					_ = s.Close()
				}
				wantKind(t, "Open", err, ota.KindState, path, "not an otactl state file")
			}
			if fileSum(t, path) != before {
				t.Errorf("Open changed the bytes of %s", path)
			}
		})
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := newFile(t)
	cur := schemaVersion()
	setMeta(t, path, keySchema, fmt.Sprint(cur+1))
	before := fileSum(t, path)
	for _, opt := range []Options{{}, {ReadOnly: true}} {
		s, err := Open(path, opt)
		if err == nil {
			_ = s.Close()
		}
		wantKind(t, "Open(newer schema)", err, ota.KindState, path,
			fmt.Sprintf("has schema version %d, newer than this otactl supports (%d); "+
				"upgrade otactl", cur+1, cur))
	}
	if fileSum(t, path) != before {
		t.Errorf("Open changed the bytes of a newer file")
	}
}

// Every bucket of the current schema is checked, those a migration added
// as well as those of a new file.
func TestOpenRefusesMissingBucket(t *testing.T) {
	for _, name := range recordBuckets {
		t.Run(string(name), func(t *testing.T) {
			path := newFile(t)
			rawBolt(t, path, nil, func(b *bolt.Tx) error { return b.DeleteBucket(name) })
			s, err := Open(path, Options{})
			if err == nil {
				_ = s.Close()
			}
			wantKind(t, "Open(no "+string(name)+" bucket)", err, ota.KindState, path,
				"damaged", "bucket "+string(name)+" is missing")
		})
	}
}

// layouts are the buckets of each schema version, written out, not taken
// from the code under test: a migration that shipped must go on making
// exactly these.
var layouts = [][]string{
	{"meta"},
	{"meta", "seq", "firmware", "firmware-by-version", "device", "round",
		"round-by-firmware", "job", "push", "history", "history-by-subject"},
	{"meta", "seq", "firmware", "firmware-by-version", "device", "round",
		"round-by-firmware", "job", "push", "history", "history-by-subject",
		"task", "set", "lease"},
	// Version 3 changed how records may be encoded, not the buckets.
	{"meta", "seq", "firmware", "firmware-by-version", "device", "round",
		"round-by-firmware", "job", "push", "history", "history-by-subject",
		"task", "set", "lease"},
}

func TestSchemaLayouts(t *testing.T) {
	if len(layouts) != len(migrations)+1 {
		t.Fatalf("layouts lists %d versions, migrations make %d: add the new layout",
			len(layouts), len(migrations)+1)
	}
	for v, want := range layouts {
		path := versionN(t, v)
		checkPages(t, path)
		if got := bucketNames(t, path); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
			t.Errorf("buckets of schema version %d = %v, want %v", v, got, want)
		}
	}
	var cur []string
	for _, b := range recordBuckets {
		cur = append(cur, string(b))
	}
	cur = append(cur, string(bucketMeta))
	if want := layouts[len(layouts)-1]; !slices.Equal(slices.Sorted(slices.Values(cur)),
		slices.Sorted(slices.Values(want))) {
		t.Errorf("recordBuckets and meta = %v, want the current layout %v", cur, want)
	}
}

// versionN makes a file of schema version v the way an otactl of that
// version made it: the marker, then the first v migrations.
func versionN(t *testing.T, v int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	rawBolt(t, path, nil, func(b *bolt.Tx) error {
		if err := writeMarker(b); err != nil {
			return err
		}
		return migrate(b, 0, migrations[:v])
	})
	return path
}

// bucketNames lists the top-level buckets of the file at path, sorted.
func bucketNames(t *testing.T, path string) []string {
	t.Helper()
	var names []string
	rawBolt(t, path, nil, func(b *bolt.Tx) error {
		return b.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
	})
	return names
}

func TestOpenRefusesDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir, Options{Create: true})
	wantKind(t, "Open(folder)", err, ota.KindState, dir)
}

// version0 makes the file create starts from: the marker, no buckets.
func version0(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "state.db")
	rawBolt(t, path, nil, writeMarker)
	return path
}

// A version 1 file, as otactl wrote it before batch tasks, is refused by a
// read-only open with a hint and left alone; a write open migrates it to
// the current version, adding the buckets of tasks, sets and the lease, and keeps
// every record.
func TestOpenMigratesVersion1(t *testing.T) {
	path := versionN(t, 1)
	rawBolt(t, path, nil, func(b *bolt.Tx) error {
		v1 := &tx{b: b, path: path}
		if err := v1.PutFirmware(&ota.Firmware{ID: "fw-1", ProductKey: "pk",
			Version: "1.0"}); err != nil {
			return err
		}
		return putJSON(b, bucketDevice, devKey("pk", "dk"), &ota.Device{ProductKey: "pk", DeviceKey: "dk"})
	})
	before := fileSum(t, path)
	_, err := Open(path, Options{ReadOnly: true})
	wantKind(t, "Open(schema 1, read-only)", err, ota.KindState, path,
		"has schema version 1 and needs migrating to 3")
	if h := ota.HintOf(err); !strings.Contains(h, "otactl sync") {
		t.Errorf("hint of Open(schema 1, read-only) = %q, want one naming otactl sync", h)
	}
	if fileSum(t, path) != before {
		t.Fatalf("read-only Open changed the bytes of a version 1 file")
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(schema 1): %v", err)
	}
	t.Cleanup(func() { checkFile(t, s) })
	if v := readVersion(t, s); v != 3 {
		t.Errorf("schema after migration = %d, want 3", v)
	}
	edit(t, s, func(tx ota.Tx) error {
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(tx.PutTask(&ota.Task{ID: "task-1", FirmwareID: "fw-1"}))
		must(tx.SetAdd("task/1", "job-1"))
		must(tx.PutLease(&ota.Lease{Holder: "h:1"}))
		f, err := tx.Firmware("fw-1")
		if f == nil || err != nil {
			t.Errorf("Firmware(fw-1) after migration = %v, %v; want it", f, err)
		}
		d, err := tx.Device("pk", "dk")
		if d == nil || err != nil {
			t.Errorf("Device(pk, dk) after migration = %v, %v; want it", d, err)
		}
		return nil
	})
	if errs := s.Check(); len(errs) != 0 {
		t.Errorf("Check() after migration = %v, want no problems", errs)
	}
}

func TestOpenMigratesOlderSchema(t *testing.T) {
	path := version0(t)
	before := fileSum(t, path)
	_, err := Open(path, Options{ReadOnly: true})
	wantKind(t, "Open(schema 0, read-only)", err, ota.KindState, path, "needs migrating")
	if fileSum(t, path) != before {
		t.Fatalf("read-only Open changed the bytes of an old file")
	}

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(schema 0): %v", err)
	}
	t.Cleanup(func() { checkFile(t, s) })
	err = s.Update(func(tx ota.Tx) error {
		return tx.PutDevice(&ota.Device{ProductKey: "pk", DeviceKey: "dk"})
	})
	if err != nil {
		t.Errorf("Update after migration: %v", err)
	}
	if v := readVersion(t, s); v != schemaVersion() {
		t.Errorf("schema after migration = %d, want %d", v, schemaVersion())
	}
}

func TestMigrateRunsStepsFromVersion(t *testing.T) {
	path := version0(t)
	checkPages(t, path)
	var ran []int
	step := func(i int) migration {
		return func(*bolt.Tx) error { ran = append(ran, i); return nil }
	}
	rawBolt(t, path, nil, func(b *bolt.Tx) error {
		return migrate(b, 1, []migration{step(0), step(1), step(2)})
	})
	if len(ran) != 2 || ran[0] != 1 || ran[1] != 2 {
		t.Errorf("migrate from 1 ran steps %v, want [1 2]", ran)
	}
	if v := metaValue(t, path, keySchema); v != "3" {
		t.Errorf("schema after migrate = %q, want 3", v)
	}
}

// A failing step must leave the file as it was: the steps before it are
// rolled back with it.
func TestMigrateFailureLeavesFileAlone(t *testing.T) {
	path := version0(t)
	checkPages(t, path)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	errStep := errors.New("step failed")
	err = db.Update(func(b *bolt.Tx) error {
		return migrate(b, 0, []migration{createBucketsV1, func(*bolt.Tx) error { return errStep }})
	})
	if !errors.Is(err, errStep) {
		t.Errorf("migrate = %v, want the step's error", err)
	}
	_ = db.View(func(b *bolt.Tx) error {
		if b.Bucket(bucketJob) != nil {
			t.Errorf("bucket of step 0 survived the failed migration")
		}
		return nil
	})
	_ = db.Close()
	if v := metaValue(t, path, keySchema); v != "0" {
		t.Errorf("schema after failed migrate = %q, want 0", v)
	}
}

func TestReadOnlyOpen(t *testing.T) {
	path := newFile(t)
	before := fileSum(t, path)
	r1, err := Open(path, Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("first read-only Open: %v", err)
	}
	r2, err := Open(path, Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("second read-only Open at once: %v", err)
	}
	readEverything(t, r1)
	readEverything(t, r2)
	if errs := r1.Check(); len(errs) != 0 {
		t.Errorf("Check: %v", errs)
	}
	err = r2.Update(func(ota.Tx) error { return nil })
	wantKind(t, "Update on a read-only store", err, ota.KindState, path)
	_ = r1.Close()
	_ = r2.Close()
	if fileSum(t, path) != before {
		t.Errorf("read-only opens changed the bytes of %s", path)
	}
}

// newFile makes a closed state file holding a little of everything. Tests
// that spoil it on purpose use it instead of openTest, whose cleanup would
// find the damage; its cleanup runs bbolt's page check alone.
func newFile(t *testing.T) string {
	t.Helper()
	path := newUncheckedFile(t)
	checkPages(t, path)
	return path
}

// newUncheckedFile is newFile for the test that damages pages.
func newUncheckedFile(t *testing.T) string {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx ota.Tx) error {
		f := &ota.Firmware{ID: "fw-1", ProductKey: "pk", Version: "1.0"}
		if err := tx.PutFirmware(f); err != nil {
			return err
		}
		if err := tx.PutDevice(&ota.Device{ProductKey: "pk", DeviceKey: "温湿度-01"}); err != nil {
			return err
		}
		if err := tx.PutTask(&ota.Task{ID: "task-1", FirmwareID: "fw-1"}); err != nil {
			return err
		}
		if err := tx.SetAdd("task/1", "温湿度-01"); err != nil {
			return err
		}
		if err := tx.PutLease(&ota.Lease{Holder: "host:1"}); err != nil {
			return err
		}
		return tx.AppendEvent(&ota.Event{Subject: "firmware/fw-1", Action: "added"})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s.Path()
}

func readEverything(t *testing.T, s *Store) {
	t.Helper()
	err := s.View(func(tx ota.Tx) error {
		visit := func(any) error { return nil }
		_ = tx.EachFirmware(func(f *ota.Firmware) error { return visit(f) })
		_ = tx.EachDevice("", func(d *ota.Device) error { return visit(d) })
		_ = tx.EachJob(func(j *ota.Job) error { return visit(j) })
		_ = tx.EachTask(func(task *ota.Task) error { return visit(task) })
		_ = tx.SetEach("task/1", "", func(m string) error { return visit(m) })
		_, _ = tx.Lease()
		return tx.EachEvent("", func(e *ota.Event) error { return visit(e) })
	})
	if err != nil {
		t.Errorf("View: %v", err)
	}
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rawBolt creates or opens path with bbolt alone and runs fn in a write
// transaction, for files that otactl would not write.
func rawBolt(t *testing.T, path string, opt *bolt.Options, fn func(*bolt.Tx) error) {
	t.Helper()
	if opt == nil {
		opt = &bolt.Options{}
	}
	opt.Timeout = time.Second
	db, err := bolt.Open(path, 0o600, opt)
	if err != nil {
		t.Fatal(err)
	}
	if fn != nil {
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func setMeta(t *testing.T, path string, key []byte, value string) {
	t.Helper()
	rawBolt(t, path, nil, func(b *bolt.Tx) error {
		return b.Bucket(bucketMeta).Put(key, []byte(value))
	})
}

func metaValue(t *testing.T, path string, key []byte) string {
	t.Helper()
	var v string
	rawBolt(t, path, nil, func(b *bolt.Tx) error {
		v = string(b.Bucket(bucketMeta).Get(key))
		return nil
	})
	return v
}

func readVersion(t *testing.T, s *Store) uint64 {
	t.Helper()
	var v uint64
	err := s.db.View(func(b *bolt.Tx) (err error) {
		v, err = readSchema(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// openBolt opens files with the free list unsynced, so that a foreign file
// is not written; upgrade must turn syncing back on, or every later open
// would rebuild the free list by scanning the whole file.
func TestWritesSyncFreeList(t *testing.T) {
	path := newFile(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx ota.Tx) error { return tx.PutDevice(newTestDevice(1)) })
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if freelistPage(t, path) == noFreelist {
		t.Errorf("the last commit through Store did not write a free list")
	}
}

// noFreelist is the free-list page id bbolt's meta page holds when the
// free list is not synced.
const noFreelist = ^uint64(0)

// freelistPage reads the free-list page id from the newest meta page, as
// laid out by bbolt's file format: a 16-byte page header, then magic,
// version, page size and flags (4 bytes each), the root bucket (16 bytes),
// the free-list page id, the high-water page id and the transaction id.
func freelistPage(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(b[16+8:]))
	var freelist, txid uint64
	for _, off := range []int{0, pageSize} {
		m := b[off+16:]
		if id := binary.LittleEndian.Uint64(m[48:]); id >= txid {
			txid, freelist = id, binary.LittleEndian.Uint64(m[32:])
		}
	}
	return freelist
}

func newTestDevice(n int) *ota.Device {
	return &ota.Device{ProductKey: "pk", DeviceKey: fmt.Sprintf("dk-%d", n), Version: "1.0"}
}

// A state file cut short used to crash every command with a fault in
// bbolt's memory map; it must be refused, named, and left as it is.
func TestTruncatedFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path, Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx ota.Tx) error {
		for i := 0; i < 2000; i++ {
			d := &ota.Device{ProductKey: "pk", DeviceKey: fmt.Sprintf("d%05d", i), Version: "1.0.0"}
			if err := tx.PutDevice(d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for _, ro := range []bool{true, false} {
		_, err := Open(path, Options{ReadOnly: ro})
		if ota.KindOf(err) != ota.KindState || !strings.Contains(err.Error(), "cut short") ||
			!strings.Contains(err.Error(), path) {
			t.Errorf("Open(truncated, readOnly %v) = %v, want a KindState error naming the file", ro, err)
		}
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the truncated file was changed")
	}
}
