package state

import (
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

// appMarker in the meta bucket tells otactl's files from other bbolt files.
const appMarker = "otactl"

var (
	keyApp    = []byte("app")
	keySchema = []byte("schema")
)

// migration moves a file from one schema version to the next, inside the
// write transaction that also records the new version.
type migration func(*bolt.Tx) error

// migrations[v] moves version v to v+1; the current version is their
// count. Version 0 is a file holding only the meta bucket, which is how
// create starts every file: new files and old ones go through the same
// steps. Append to the table; never edit an entry that has shipped.
var migrations = []migration{
	createBucketsV1,
	createBucketsV2,
	allowBinaryRecords,
}

// schemaVersion is the version this otactl writes.
func schemaVersion() uint64 { return uint64(len(migrations)) }

// createBucketsV1 creates the buckets of schema version 1. It lists them
// itself, rather than using recordBuckets, because a migration must keep
// doing what it did when later versions change the layout.
func createBucketsV1(b *bolt.Tx) error {
	names := []string{
		"seq", "firmware", "firmware-by-version", "device", "round",
		"round-by-firmware", "job", "push", "history", "history-by-subject",
	}
	for _, n := range names {
		if _, err := b.CreateBucketIfNotExists([]byte(n)); err != nil {
			return fmt.Errorf("create bucket %s: %w", n, err)
		}
	}
	return nil
}

// createBucketsV2 adds the buckets of batch tasks, of ota's sets and of
// the agent's lease. Like createBucketsV1, it names them itself.
func createBucketsV2(b *bolt.Tx) error {
	for _, n := range []string{"task", "set", "lease"} {
		if _, err := b.CreateBucketIfNotExists([]byte(n)); err != nil {
			return fmt.Errorf("create bucket %s: %w", n, err)
		}
	}
	return nil
}

// allowBinaryRecords marks a file whose devices, jobs, pushes and history
// events may be stored in the binary form of record.go. It rewrites
// nothing: the JSON records of version 2 stay readable and each takes the
// binary form when it is next written. Its purpose is the version itself,
// which makes an otactl that reads only JSON refuse the file instead of
// reporting it damaged.
func allowBinaryRecords(*bolt.Tx) error { return nil }

// writeMarker makes b's file an otactl file of schema version 0.
func writeMarker(b *bolt.Tx) error {
	m, err := b.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := m.Put(keyApp, []byte(appMarker)); err != nil {
		return err
	}
	return m.Put(keySchema, []byte("0"))
}

// migrate runs table[from:] in order and records the resulting version. A
// failing step fails the transaction, so the file keeps its old version and
// contents.
func migrate(b *bolt.Tx, from uint64, table []migration) error {
	for v := from; v < uint64(len(table)); v++ {
		if err := table[v](b); err != nil {
			return fmt.Errorf("migrate schema version %d to %d: %w", v, v+1, err)
		}
	}
	v := strconv.FormatUint(uint64(len(table)), 10)
	return b.Bucket(bucketMeta).Put(keySchema, []byte(v))
}

// readSchema returns the schema version of an otactl file, and the reason
// the file is not one otherwise.
func readSchema(b *bolt.Tx) (uint64, error) {
	m := b.Bucket(bucketMeta)
	if m == nil {
		return 0, errors.New("no otactl marker in it")
	}
	if app := m.Get(keyApp); string(app) != appMarker {
		return 0, fmt.Errorf("its marker is %q", app)
	}
	raw := m.Get(keySchema)
	v, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("unreadable schema version %q", raw)
	}
	return v, nil
}

// prepare checks that the opened file is otactl's and of a schema this
// otactl can use, migrating it when it is older and writable.
func (s *Store) prepare(readOnly bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = notOtactl(s.path, fmt.Errorf("%v", r))
		}
	}()
	var v uint64
	if err := s.db.View(func(b *bolt.Tx) (err error) {
		v, err = readSchema(b)
		return err
	}); err != nil {
		return notOtactl(s.path, err)
	}
	if err := s.upgrade(v, readOnly); err != nil {
		return err
	}
	return s.checkLayout()
}

// upgrade refuses a newer schema and migrates an older one. It is the
// first point where the file may be written, so it is also where the free
// list goes back to being synced on every commit (see openBolt).
func (s *Store) upgrade(v uint64, readOnly bool) error {
	cur := schemaVersion()
	switch {
	case v > cur:
		return ota.Errorf(ota.KindState,
			"state file %s has schema version %d, newer than this otactl supports (%d); "+
				"upgrade otactl", s.path, v, cur)
	case readOnly && v < cur:
		return ota.Errorf(ota.KindState,
			"state file %s has schema version %d and needs migrating to %d, "+
				"which a read-only command may not do", s.path, v, cur).
			WithHint("run a command that writes, such as otactl sync, to migrate it")
	case readOnly:
		return nil
	}
	s.db.NoFreelistSync = false
	if v == cur {
		return nil
	}
	err := s.db.Update(func(b *bolt.Tx) error { return migrate(b, v, migrations) })
	if err != nil {
		return stateErr(err, "state file %s: %v", s.path, err)
	}
	return nil
}

// checkLayout refuses a file that claims the current schema but lacks one
// of its buckets, which every Tx method relies on.
func (s *Store) checkLayout() error {
	return s.db.View(func(b *bolt.Tx) error {
		for _, name := range recordBuckets {
			if b.Bucket(name) == nil {
				return ota.Errorf(ota.KindState, "state file %s is damaged: bucket %s is missing",
					s.path, name).WithHint("restore a backup")
			}
		}
		return nil
	})
}
