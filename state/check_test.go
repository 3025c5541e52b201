package state

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

// openFixture makes a store whose records keep every invariant: device
// pk/dk holds in-progress job-1 of round-1 of fw-1, which has a push
// waiting; device pk/dk2 finished job-2 of task-1, whose queue set holds
// another member; an agent holds the lease. Tests break its records and
// indexes, so its cleanup checks its pages alone.
func openFixture(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state.db"), Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	checkPages(t, s.Path())
	t.Cleanup(func() { _ = s.Close() }) // runs first: cleanups run last-in first-out
	edit(t, s, func(tx ota.Tx) error {
		for _, err := range []error{
			tx.PutFirmware(&ota.Firmware{ID: "fw-1", ProductKey: "pk", Version: "2.0"}),
			tx.PutDevice(&ota.Device{ProductKey: "pk", DeviceKey: "dk", ActiveJob: "job-1"}),
			tx.PutDevice(&ota.Device{ProductKey: "pk", DeviceKey: "dk2"}),
			tx.PutRound(&ota.Round{ID: "round-1", FirmwareID: "fw-1", JobIDs: []string{"job-1"}}),
			tx.PutJob(fixtureJob()),
			tx.PutPush(&ota.Push{ID: "push-1", JobID: "job-1"}),
			tx.AppendEvent(&ota.Event{Subject: "job/job-1", Action: "created"}),
			tx.PutTask(&ota.Task{ID: "task-1", FirmwareID: "fw-1", Status: ota.TaskRunning}),
			tx.PutJob(&ota.Job{ID: "job-2", FirmwareID: "fw-1", TaskID: "task-1",
				ProductKey: "pk", DeviceKey: "dk2", Status: ota.JobSucceeded}),
			tx.SetAdd("task-1/queue", "job-3"),
			tx.PutLease(&ota.Lease{Holder: "host:1", Host: "host", PID: 1}),
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	return s
}

func fixtureJob() *ota.Job {
	return &ota.Job{ID: "job-1", FirmwareID: "fw-1", RoundID: "round-1", ProductKey: "pk",
		DeviceKey: "dk", Status: ota.JobInProgress}
}

func edit(t *testing.T, s *Store, fn func(ota.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// editRaw changes the file below the Tx methods, to break what they keep
// consistent.
func editRaw(t *testing.T, s *Store, fn func(b *bolt.Tx) error) {
	t.Helper()
	if err := s.db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

func TestCheckSoundFile(t *testing.T) {
	s := openFixture(t)
	if errs := s.Check(); len(errs) != 0 {
		t.Errorf("Check() = %v, want no problems", errs)
	}
}

func TestCheckFindsProblems(t *testing.T) {
	job := func(change func(j *ota.Job)) func(ota.Tx) error {
		return func(tx ota.Tx) error {
			j := fixtureJob()
			change(j)
			return tx.PutJob(j)
		}
	}
	device := func(dk, active string) func(ota.Tx) error {
		return func(tx ota.Tx) error {
			return tx.PutDevice(&ota.Device{ProductKey: "pk", DeviceKey: dk, ActiveJob: active})
		}
	}
	records := []struct {
		name    string
		breakIt func(ota.Tx) error
		want    string
	}{
		{"active job missing", device("dk", "job-9"),
			"device pk/dk: active job job-9 does not exist"},
		{"active job not held", device("dk", ""), `job job-1 is in-progress but device pk/dk has`},
		{"active job finished", job(func(j *ota.Job) { j.Status = ota.JobSucceeded }),
			"device pk/dk: active job job-1 is succeeded"},
		{"active job of another device", device("dk2", "job-1"),
			"device pk/dk2: active job job-1 belongs to device pk/dk"},
		{"active job of unknown device", job(func(j *ota.Job) { j.DeviceKey = "ghost" }),
			"job job-1 is in-progress for unknown device pk/ghost"},
		{"round job missing", func(tx ota.Tx) error {
			return tx.PutRound(&ota.Round{ID: "round-1", FirmwareID: "fw-1",
				JobIDs: []string{"job-1", "job-7"}})
		}, "round round-1: job job-7 does not exist"},
		{"round job of other firmware", job(func(j *ota.Job) { j.FirmwareID = "fw-2" }),
			"round round-1 of firmware fw-1: job job-1 belongs to round"},
		{"push to missing job", func(tx ota.Tx) error {
			return tx.PutPush(&ota.Push{ID: "push-2", JobID: "job-5"})
		}, "push push-2: job job-5 does not exist"},
		{"job of missing task", func(tx ota.Tx) error {
			return tx.PutJob(&ota.Job{ID: "job-4", TaskID: "task-9", Status: ota.JobFailed})
		}, "job job-4: task task-9 does not exist"},
		// "task/task-5/planned" is ota's name for the set of a task's planned
		// devices (ota.EachPlanned).
		{"planned count off", plannedTask(ota.TaskRunning, 2, "dk"),
			"task task-5 counts 2 planned devices, its planned set holds 1"},
		{"finished task still planning", plannedTask(ota.TaskCompleted, 1, "dk"),
			"task task-5 is completed with 1 planned and 0 canceled devices, " +
				"its planned set holds 1"},
	}
	for _, c := range records {
		t.Run(c.name, func(t *testing.T) {
			s := openFixture(t)
			edit(t, s, c.breakIt)
			wantProblem(t, s.Check(), c.want)
		})
	}
	for _, c := range rawBreaks {
		t.Run(c.name, func(t *testing.T) {
			s := openFixture(t)
			editRaw(t, s, c.breakIt)
			wantProblem(t, s.Check(), c.want)
		})
	}
}

// plannedTask stores task-5 with a planned count and its planned set.
func plannedTask(status ota.TaskStatus, planned int, keys ...string) func(ota.Tx) error {
	return func(tx ota.Tx) error {
		for _, k := range keys {
			if err := tx.SetAdd("task/task-5/planned", k); err != nil {
				return err
			}
		}
		return tx.PutTask(&ota.Task{ID: "task-5", ProductKey: "pk", Status: status,
			Counts: ota.TaskCounts{Targets: planned, Planned: planned}})
	}
}

// rawBreaks damage the indexes and encoding, which Tx methods never do.
var rawBreaks = []struct {
	name    string
	breakIt func(b *bolt.Tx) error
	want    string
}{
	{"firmware missing from index", func(b *bolt.Tx) error {
		return b.Bucket(bucketFwVersion).Delete(versionKey("pk", "2.0"))
	}, "firmware fw-1: missing from the version index"},
	{"stale firmware index entry", func(b *bolt.Tx) error {
		return b.Bucket(bucketFwVersion).Put(versionKey("pk", "1.0"), u64(1))
	}, `names firmware fw-1 of version "2.0"`},
	{"round missing from index", func(b *bolt.Tx) error {
		return b.Bucket(bucketRoundFw).Delete(join("fw-1", u64(1)))
	}, "round round-1: missing from the firmware index"},
	{"event missing from index", func(b *bolt.Tx) error {
		return b.Bucket(bucketHistorySub).Delete(join("job/job-1", u64(1)))
	}, "history 1: missing from the subject index"},
	{"index names missing event", func(b *bolt.Tx) error {
		return b.Bucket(bucketHistorySub).Put(join("job/job-2", u64(99)), nil)
	}, "no such event of subject"},
	{"history sequence behind", func(b *bolt.Tx) error {
		return b.Bucket(bucketHistory).SetSequence(0)
	}, "history: sequence 0 is behind event 1"},
	{"record under another ID's key", func(b *bolt.Tx) error {
		return b.Bucket(bucketJob).Put(u64(2), []byte(`{"id":"job-3"}`))
	}, `record ID "job-3" does not match its key`},
	{"undecodable record", func(b *bolt.Tx) error {
		return b.Bucket(bucketPush).Put(u64(5), []byte(`{"id":`))
	}, "undecodable record"},
	{"task under another ID's key", func(b *bolt.Tx) error {
		return b.Bucket(bucketTask).Put(u64(1), []byte(`{"id":"task-2"}`))
	}, `task 0000000000000001: record ID "task-2" does not match its key`},
	{"set key without separator", func(b *bolt.Tx) error {
		return b.Bucket(bucketSet).Put([]byte("task-1/queue"), nil)
	}, `set key "task-1/queue": malformed`},
	{"set key with empty member", func(b *bolt.Tx) error {
		return b.Bucket(bucketSet).Put(join("task-1/queue", nil), nil)
	}, `set key "task-1/queue\x00": malformed`},
	{"set key with empty set name", func(b *bolt.Tx) error {
		return b.Bucket(bucketSet).Put(join("", []byte("job-3")), nil)
	}, `set key "\x00job-3": malformed`},
	{"set key with two separators", func(b *bolt.Tx) error {
		return b.Bucket(bucketSet).Put(join("task-1", join("queue", []byte("job-3"))), nil)
	}, `set key "task-1\x00queue\x00job-3": malformed`},
	{"set key with a value", func(b *bolt.Tx) error {
		return b.Bucket(bucketSet).Put(setKey("task-1/queue", "job-3"), []byte("x"))
	}, `set key "task-1/queue\x00job-3": holds a value`},
	{"undecodable lease", func(b *bolt.Tx) error {
		return b.Bucket(bucketLease).Put(keyLease, []byte(`{"holder":`))
	}, "lease 6c65617365: undecodable record"},
	{"second lease", func(b *bolt.Tx) error {
		return b.Bucket(bucketLease).Put([]byte("other"), []byte(`{}`))
	}, `lease "other": unexpected key`},
}

func wantProblem(t *testing.T, errs []error, want string) {
	t.Helper()
	for _, err := range errs {
		if strings.Contains(err.Error(), want) {
			return
		}
	}
	t.Errorf("Check() = %v, want a problem mentioning %q", errs, want)
}

func TestCheckStopsAfterMaxProblems(t *testing.T) {
	s := openFixture(t)
	edit(t, s, func(tx ota.Tx) error {
		for i := range 2 * maxProblems {
			d := &ota.Device{ProductKey: "pk", DeviceKey: fmt.Sprint("x", i), ActiveJob: "job-9"}
			if err := tx.PutDevice(d); err != nil {
				return err
			}
		}
		return nil
	})
	errs := s.Check()
	if len(errs) != maxProblems+1 {
		t.Errorf("Check() found %d problems, want %d and a note", len(errs), maxProblems+1)
	}
}

// Check runs in a read transaction, so it works on a read-only open too.
func TestCheckReadOnly(t *testing.T) {
	path := newFile(t)
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if errs := s.Check(); len(errs) != 0 {
		t.Errorf("Check() = %v, want none", errs)
	}
}

// Regression: bbolt panics on a page that does not hold what it should. A
// damaged file must give errors naming it, from Check and from reads, and
// never crash otactl.
func TestDamagedPagesGiveErrorsNotPanics(t *testing.T) {
	path := newUncheckedFile(t)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	edit(t, s, func(tx ota.Tx) error {
		for i := range 3000 {
			if err := tx.PutDevice(newTestDevice(i)); err != nil {
				return err
			}
		}
		return nil
	})
	_ = s.Close()
	damagePages(t, path)

	s, err = Open(path, Options{ReadOnly: true})
	if err != nil {
		wantKind(t, "Open(damaged)", err, ota.KindState, path)
		return
	}
	defer s.Close()
	if errs := s.Check(); len(errs) == 0 {
		t.Errorf("Check() of a damaged file found nothing")
	}
	err = s.View(func(tx ota.Tx) error {
		return tx.EachDevice("", func(*ota.Device) error { return nil })
	})
	if err != nil {
		wantKind(t, "EachDevice(damaged)", err, ota.KindState, path, "damaged")
	}
}

// damagePages overwrites the second half of the pages in use, which hold
// most of the device records.
func damagePages(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pageSize := int(binary.LittleEndian.Uint32(b[16+8:]))
	highWater := int(binary.LittleEndian.Uint64(b[16+40:]))
	for i := highWater / 2 * pageSize; i < highWater*pageSize; i++ {
		b[i] = 0xab
	}
	writeFile(t, path, b)
}

// A set key that SetAdd cannot write, met during a walk, is reported as
// damage naming the file, as undecodable records are.
func TestSetEachReportsDamagedKey(t *testing.T) {
	s := openFixture(t)
	editRaw(t, s, func(b *bolt.Tx) error {
		return b.Bucket(bucketSet).Put(join("task-1/queue", nil), nil)
	})
	err := s.View(func(tx ota.Tx) error {
		return tx.SetEach("task-1/queue", "", func(string) error { return nil })
	})
	wantKind(t, "SetEach(damaged set)", err, ota.KindState, s.Path(), "empty member")
}
