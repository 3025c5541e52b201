package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

var txTests = []test{
	{"Update/returns fn's error unchanged and leaves no trace", testRollback},
	{"View/write methods fail and write nothing", testViewWrites},
	{"Tx/records passed to Put are copied", testCopyIn},
	{"Tx/records returned belong to the caller", testCopyOut},
	{"Tx/Each methods stop at fn's first error", testEachStops},
	{"Tx/writes while iterating are refused", testWriteWhileIterating},
	{"Tx/malformed input is refused", testBadInput},
	{"View/sees one snapshot while an Update commits", testSnapshot},
	{"Update/concurrent callers are serialised", testSerialised},
}

// seqNames are the sequences seed starts.
var seqNames = []string{"firmware", "round", "job", "push", "task"}

// seed stores one record of every kind, made with NextSeq, two members of
// set task/1 and one of task/10, and a lease.
func seed(t *testing.T, s ota.Store) {
	t.Helper()
	update(t, s, func(tx ota.Tx) error {
		for _, name := range seqNames {
			if n, err := tx.NextSeq(name); n != 1 || err != nil {
				t.Fatalf("NextSeq(%s) = %d, %v; want 1", name, n, err)
			}
		}
		must(t, tx.PutFirmware(newFirmware(1, "pk", "1.0")))
		must(t, tx.PutDevice(newDevice("pk", "dk")))
		must(t, tx.PutRound(newRound(1, "fw-1", "job-1")))
		must(t, tx.PutJob(newJob(1, "fw-1", "dk")))
		must(t, tx.PutPush(newPush(1, "job-1")))
		must(t, tx.PutTask(newTask(1, "fw-1")))
		must(t, tx.SetAdd("task/1", "job-1"))
		must(t, tx.SetAdd("task/1", "job-2"))
		must(t, tx.SetAdd("task/10", "job-1"))
		must(t, tx.PutLease(newLease(1)))
		return tx.AppendEvent(newEvent("job/job-1"))
	})
}

// snapSets are the sets a snapshot holds: those the tests of this file use.
var snapSets = []string{"task/1", "task/10", "task/2"}

// snapshot is everything a store holds, in the JSON form a store keeps.
type snapshot struct {
	Firmware []*ota.Firmware
	Devices  []*ota.Device
	Rounds   []*ota.Round
	Jobs     []*ota.Job
	Pushes   []*ota.Push
	Events   []*ota.Event
	ByVer    []*ota.Firmware
	Tasks    []*ota.Task
	Sets     map[string][]string // the members of snapSets; nil when all are empty
	Lease    *ota.Lease
}

func takeSnapshot(t *testing.T, s ota.Store) snapshot {
	t.Helper()
	var sn snapshot
	view(t, s, func(tx ota.Tx) error {
		must(t, tx.EachFirmware(func(f *ota.Firmware) error {
			sn.Firmware = append(sn.Firmware, f)
			byVer, err := tx.FirmwareByVersion(f.ProductKey, f.Version)
			sn.ByVer = append(sn.ByVer, byVer)
			return err
		}))
		must(t, tx.EachDevice("", func(d *ota.Device) error {
			sn.Devices = append(sn.Devices, d)
			return nil
		}))
		must(t, tx.EachRound("fw-1", func(r *ota.Round) error {
			sn.Rounds = append(sn.Rounds, r)
			return nil
		}))
		sn.Jobs, sn.Pushes = jobsAndPushes(t, tx)
		sn.Events = events(t, tx, "")
		sn.Tasks, sn.Sets, sn.Lease = tasksSetsLease(t, tx)
		return nil
	})
	return sn
}

// tasksSetsLease reads the tasks, the snapSets and the lease.
func tasksSetsLease(t *testing.T, tx ota.Tx) ([]*ota.Task, map[string][]string, *ota.Lease) {
	t.Helper()
	var tasks []*ota.Task
	must(t, tx.EachTask(func(task *ota.Task) error {
		tasks = append(tasks, task)
		return nil
	}))
	var sets map[string][]string
	for _, set := range snapSets {
		if ms := members(t, tx, set, ""); ms != nil {
			if sets == nil {
				sets = map[string][]string{}
			}
			sets[set] = ms
		}
	}
	l, err := tx.Lease()
	must(t, err)
	return tasks, sets, l
}

func jobsAndPushes(t *testing.T, tx ota.Tx) (jobs []*ota.Job, pushes []*ota.Push) {
	t.Helper()
	must(t, tx.EachJob(func(j *ota.Job) error {
		jobs = append(jobs, j)
		return nil
	}))
	must(t, tx.EachPush(func(p *ota.Push) error {
		pushes = append(pushes, p)
		return nil
	}))
	return jobs, pushes
}

// scribble changes, adds and deletes records of every kind.
func scribble(t *testing.T, tx ota.Tx) {
	t.Helper()
	for _, name := range slices.Concat(seqNames, []string{"new"}) {
		_, err := tx.NextSeq(name)
		must(t, err)
	}
	must(t, tx.PutFirmware(newFirmware(2, "pk", "2.0")))
	must(t, tx.DeleteFirmware("fw-1"))
	d := newDevice("pk", "dk")
	d.Version = "9.9"
	must(t, tx.PutDevice(d))
	must(t, tx.PutDevice(newDevice("pk", "dk2")))
	must(t, tx.PutRound(newRound(1, "fw-2")))
	must(t, tx.PutRound(newRound(2, "fw-1")))
	j := newJob(1, "fw-1", "dk")
	j.Status = ota.JobFailed
	must(t, tx.PutJob(j))
	must(t, tx.PutJob(newJob(2, "fw-1", "dk2")))
	must(t, tx.DeletePush("push-1"))
	must(t, tx.PutPush(newPush(2, "job-2")))
	task := newTask(1, "fw-1")
	task.Status, task.Skipped = ota.TaskCanceled, nil
	must(t, tx.PutTask(task))
	must(t, tx.PutTask(newTask(2, "fw-1")))
	must(t, tx.SetAdd("task/1", "job-3"))
	must(t, tx.SetRemove("task/1", "job-1"))
	must(t, tx.SetRemove("task/10", "job-1")) // its last member
	must(t, tx.SetAdd("task/2", "job-1"))     // a new set
	must(t, tx.PutLease(newLease(2)))
	must(t, tx.DeleteLease())
	must(t, tx.AppendEvent(newEvent("job/job-2")))
}

func testRollback(t *testing.T, s ota.Store) {
	seed(t, s)
	before := takeSnapshot(t, s)
	want := ota.Refused("a rule said no")
	err := s.Update(func(tx ota.Tx) error {
		scribble(t, tx)
		return want
	})
	if err != want { // the contract says unchanged: not even wrapped
		t.Errorf("Update returned %v (%T), want fn's error unchanged", err, err)
	}
	sameJSON(t, "store after a failed Update", takeSnapshot(t, s), before)
	update(t, s, func(tx ota.Tx) error {
		for _, name := range seqNames {
			if n, err := tx.NextSeq(name); n != 2 || err != nil {
				t.Errorf("NextSeq(%s) after rollback = %d, %v; want 2", name, n, err)
			}
		}
		if n, err := tx.NextSeq("new"); n != 1 || err != nil {
			t.Errorf("NextSeq(new) after rollback = %d, %v; want 1", n, err)
		}
		e := newEvent("x")
		must(t, tx.AppendEvent(e))
		if e.Seq <= before.Events[len(before.Events)-1].Seq {
			t.Errorf("AppendEvent after rollback: Seq %d is not after the last event", e.Seq)
		}
		return nil
	})
}

// writeCalls call every write method of Tx, some in the way that writes
// nothing (a member already there, a missing record), on a store made by
// seed. Where writing is not allowed, each must fail all the same.
var writeCalls = map[string]func(ota.Tx) error{
	"NextSeq": func(tx ota.Tx) error {
		_, err := tx.NextSeq("firmware")
		return err
	},
	"PutFirmware": func(tx ota.Tx) error {
		return tx.PutFirmware(newFirmware(2, "pk", "2"))
	},
	"DeleteFirmware": func(tx ota.Tx) error {
		return tx.DeleteFirmware("fw-1")
	},
	"DeleteFirmware(missing)": func(tx ota.Tx) error {
		return tx.DeleteFirmware("fw-9")
	},
	"PutDevice": func(tx ota.Tx) error {
		return tx.PutDevice(newDevice("pk", "new"))
	},
	"PutRound": func(tx ota.Tx) error {
		return tx.PutRound(newRound(2, "fw-1"))
	},
	"PutJob": func(tx ota.Tx) error {
		return tx.PutJob(newJob(2, "fw-1", "dk"))
	},
	"PutPush": func(tx ota.Tx) error {
		return tx.PutPush(newPush(2, "job-1"))
	},
	"DeletePush": func(tx ota.Tx) error {
		return tx.DeletePush("push-1")
	},
	"DeletePush(missing)": func(tx ota.Tx) error {
		return tx.DeletePush("push-9")
	},
	"PutTask": func(tx ota.Tx) error {
		return tx.PutTask(newTask(2, "fw-1"))
	},
	"SetAdd": func(tx ota.Tx) error {
		return tx.SetAdd("task/1", "job-9")
	},
	"SetAdd(member already there)": func(tx ota.Tx) error {
		return tx.SetAdd("task/1", "job-1")
	},
	"SetRemove": func(tx ota.Tx) error {
		return tx.SetRemove("task/1", "job-1")
	},
	"SetRemove(missing)": func(tx ota.Tx) error {
		return tx.SetRemove("task/1", "job-9")
	},
	"PutLease": func(tx ota.Tx) error {
		return tx.PutLease(newLease(2))
	},
	"DeleteLease": func(tx ota.Tx) error {
		return tx.DeleteLease()
	},
	"AppendEvent": func(tx ota.Tx) error {
		return tx.AppendEvent(newEvent("x"))
	},
}

// refused checks that a write was refused as a bug in the caller.
func refused(t *testing.T, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s = nil, want an error of KindInternal", what)
	case ota.KindOf(err) != ota.KindInternal:
		t.Errorf("%s = %v (kind %s), want KindInternal", what, err, ota.KindOf(err))
	}
}

func testViewWrites(t *testing.T, s ota.Store) {
	seed(t, s)
	before := takeSnapshot(t, s)
	for name, write := range writeCalls {
		_ = s.View(func(tx ota.Tx) error {
			refused(t, name+" inside View", write(tx))
			return nil
		})
	}
	sameJSON(t, "store after writes inside View", takeSnapshot(t, s), before)
}

func testCopyIn(t *testing.T, s ota.Store) {
	f := newFirmware(1, "pk", "1.0")
	d := newDevice("pk", "dk")
	r := newRound(1, "fw-1", "job-1")
	j := newJob(1, "fw-1", "dk")
	p := newPush(1, "job-1")
	e := newEvent("job/job-1")
	task := newTask(1, "fw-1")
	l := newLease(1)
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.PutFirmware(f))
		must(t, tx.PutDevice(d))
		must(t, tx.PutRound(r))
		must(t, tx.PutJob(j))
		must(t, tx.PutPush(p))
		must(t, tx.AppendEvent(e))
		must(t, tx.PutTask(task))
		must(t, tx.PutLease(l))
		// Changed within the same transaction, after Put.
		f.Name, d.Recent[0], r.JobIDs[0], *j.Step, p.Params.Sign = "x", 0, "x", 0, "x"
		task.FromVersions[0], task.Skipped["on target"], l.Holder = "x", 0, "x"
		return nil
	})
	// And after commit.
	e.Detail, d.Version = "x", "x"
	task.Skipped["new"], task.Counts.Queued, l.Heartbeat = 1, 0, t0
	want := snapshot{
		Firmware: []*ota.Firmware{newFirmware(1, "pk", "1.0")},
		Devices:  []*ota.Device{newDevice("pk", "dk")},
		Rounds:   []*ota.Round{newRound(1, "fw-1", "job-1")},
		Jobs:     []*ota.Job{newJob(1, "fw-1", "dk")},
		Pushes:   []*ota.Push{newPush(1, "job-1")},
		Events: []*ota.Event{{Seq: e.Seq, Time: t0, Subject: "job/job-1", Action: "status",
			Detail: "a sentence"}},
		ByVer: []*ota.Firmware{newFirmware(1, "pk", "1.0")},
		Tasks: []*ota.Task{newTask(1, "fw-1")},
		Lease: newLease(1),
	}
	sameJSON(t, "store after changing records passed to Put", takeSnapshot(t, s), want)
}

func testCopyOut(t *testing.T, s ota.Store) {
	seed(t, s)
	before := takeSnapshot(t, s)
	// Change every record a getter or Each* returns, in a View and in an
	// Update that commits without writing.
	mutate := func(tx ota.Tx) error {
		sn := takeSnapshotTx(t, tx)
		for _, f := range sn.Firmware {
			f.Name = "x"
		}
		sn.Devices[0].Recent[0] = 0
		sn.Rounds[0].JobIDs[0] = "x"
		*sn.Jobs[0].Step = 0
		sn.Pushes[0].Params.Sign = "x"
		sn.Events[0].Detail = "x"
		sn.Tasks[0].FromVersions[0], sn.Tasks[0].Skipped["on target"] = "x", 0
		sn.Lease.Holder = "x"
		f, _ := tx.Firmware("fw-1")
		f.Version = "x"
		d, _ := tx.Device("pk", "dk")
		d.Recent[1] = 0
		r, _ := tx.Round("round-1")
		r.JobIDs = append(r.JobIDs[:0], "y")
		j, _ := tx.Job("job-1")
		*j.Step = -1
		task, _ := tx.Task("task-1")
		task.Skipped["new"], task.FromVersions[1] = 1, "y"
		l, _ := tx.Lease()
		l.PID = 0
		return nil
	}
	_ = s.View(mutate)
	update(t, s, mutate)
	sameJSON(t, "store after changing returned records", takeSnapshot(t, s), before)
}

// takeSnapshotTx reads the records of an open transaction.
func takeSnapshotTx(t *testing.T, tx ota.Tx) snapshot {
	var sn snapshot
	must(t, tx.EachFirmware(func(f *ota.Firmware) error {
		sn.Firmware = append(sn.Firmware, f)
		return nil
	}))
	must(t, tx.EachDevice("pk", func(d *ota.Device) error {
		sn.Devices = append(sn.Devices, d)
		return nil
	}))
	must(t, tx.EachRound("fw-1", func(r *ota.Round) error {
		sn.Rounds = append(sn.Rounds, r)
		return nil
	}))
	sn.Jobs, sn.Pushes = jobsAndPushes(t, tx)
	sn.Events = events(t, tx, "job/")
	sn.Tasks, sn.Sets, sn.Lease = tasksSetsLease(t, tx)
	return sn
}

// iterators call every Each* method of tx, with fn as their callback.
func iterators(tx ota.Tx) map[string]func(fn func() error) error {
	its := map[string]func(fn func() error) error{
		"EachFirmware": func(fn func() error) error {
			return tx.EachFirmware(func(*ota.Firmware) error { return fn() })
		},
		"EachDevice": func(fn func() error) error {
			return tx.EachDevice("", func(*ota.Device) error { return fn() })
		},
		"EachDevice(pk)": func(fn func() error) error {
			return tx.EachDevice("pk", func(*ota.Device) error { return fn() })
		},
		"EachRound": func(fn func() error) error {
			return tx.EachRound("fw-1", func(*ota.Round) error { return fn() })
		},
		"EachJob": func(fn func() error) error {
			return tx.EachJob(func(*ota.Job) error { return fn() })
		},
		"EachPush": func(fn func() error) error {
			return tx.EachPush(func(*ota.Push) error { return fn() })
		},
		"EachTask": func(fn func() error) error {
			return tx.EachTask(func(*ota.Task) error { return fn() })
		},
		"SetEach": func(fn func() error) error {
			return tx.SetEach("task/1", "", func(string) error { return fn() })
		},
		"SetEach(after)": func(fn func() error) error {
			return tx.SetEach("task/1", "job-0", func(string) error { return fn() })
		},
	}
	for _, subj := range []string{"", "job/job-1", "job/"} {
		its["EachEvent("+subj+")"] = func(fn func() error) error {
			return tx.EachEvent(subj, func(*ota.Event) error { return fn() })
		}
	}
	return its
}

func testEachStops(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		for n := uint64(1); n <= 3; n++ {
			must(t, tx.PutFirmware(newFirmware(n, "pk", ota.FormatID("v", n))))
			must(t, tx.PutDevice(newDevice("pk", ota.FormatID("dk", n))))
			must(t, tx.PutRound(newRound(n, "fw-1")))
			must(t, tx.PutJob(newJob(n, "fw-1", "dk")))
			must(t, tx.PutPush(newPush(n, "job-1")))
			must(t, tx.PutTask(newTask(n, "fw-1")))
			must(t, tx.SetAdd("task/1", ota.FormatID("job", n)))
			must(t, tx.AppendEvent(newEvent("job/job-1")))
		}
		return nil
	})
	view(t, s, func(tx ota.Tx) error {
		for name, each := range iterators(tx) {
			eachStops(t, name, each)
		}
		return nil
	})
}

// testWriteWhileIterating: the contract forbids it; both stores refuse it
// rather than let a cursor skip or repeat records. Every write is tried
// inside every Each* method, its error ignored as a careless caller would:
// the store must be left as it was.
func testWriteWhileIterating(t *testing.T, s ota.Store) {
	seed(t, s)
	before := takeSnapshot(t, s)
	update(t, s, func(tx ota.Tx) error {
		for it, each := range iterators(tx) {
			visits := 0
			err := each(func() error {
				visits++
				for name, write := range writeCalls {
					refused(t, name+" inside "+it, write(tx))
				}
				return errStop
			})
			if visits != 1 || !errors.Is(err, errStop) {
				t.Errorf("%s: %d visits, error %v; want 1 and errStop", it, visits, err)
			}
		}
		return nil
	})
	sameJSON(t, "store after writes while iterating", takeSnapshot(t, s), before)
	update(t, s, func(tx ota.Tx) error {
		for _, each := range iterators(tx) {
			must(t, each(func() error { return nil }))
		}
		for name, write := range writeCalls { // after the walks, writing is fine again
			if err := write(tx); err != nil {
				t.Errorf("%s after iterating = %v, want nil", name, err)
			}
		}
		if n, err := tx.NextSeq("job"); n != 2 || err != nil {
			t.Errorf("NextSeq(job) after refused calls = %d, %v; want 2", n, err)
		}
		return nil
	})
}

// badInput are writes the stores refuse, with the kind of their error: a
// NUL byte, which would break the bbolt store's keys, is invalid input like
// a device key that holds one; a malformed record ID or an empty name that
// ota chooses itself is a bug in the caller. Sets are named after snapSets,
// so that a write let through would show in the snapshot.
var badInput = []struct {
	name  string
	kind  ota.Kind
	write func(ota.Tx) error
}{
	{"NextSeq(empty)", ota.KindInternal, func(tx ota.Tx) error {
		_, err := tx.NextSeq("")
		return err
	}},
	{"PutFirmware(job ID)", ota.KindInternal, func(tx ota.Tx) error {
		f := newFirmware(1, "pk", "1")
		f.ID = "job-1"
		return tx.PutFirmware(f)
	}},
	{"PutFirmware(fw-01)", ota.KindInternal, func(tx ota.Tx) error {
		f := newFirmware(1, "pk", "1")
		f.ID = "fw-01"
		return tx.PutFirmware(f)
	}},
	{"PutFirmware(NUL)", ota.KindInvalid, func(tx ota.Tx) error {
		return tx.PutFirmware(newFirmware(1, "pk", "1\x002"))
	}},
	{"PutDevice(empty)", ota.KindInvalid, func(tx ota.Tx) error {
		return tx.PutDevice(newDevice("pk", ""))
	}},
	{"PutDevice(NUL)", ota.KindInvalid, func(tx ota.Tx) error {
		return tx.PutDevice(newDevice("p\x00k", "d"))
	}},
	{"PutRound(no ID)", ota.KindInternal, func(tx ota.Tx) error {
		return tx.PutRound(&ota.Round{})
	}},
	{"PutJob(push ID)", ota.KindInternal, func(tx ota.Tx) error {
		j := newJob(1, "fw-1", "dk")
		j.ID = "push-1"
		return tx.PutJob(j)
	}},
	{"PutPush(x)", ota.KindInternal, func(tx ota.Tx) error {
		return tx.PutPush(&ota.Push{ID: "x"})
	}},
	{"PutTask(job ID)", ota.KindInternal, func(tx ota.Tx) error {
		task := newTask(1, "fw-1")
		task.ID = "job-1"
		return tx.PutTask(task)
	}},
	{"PutTask(task-0)", ota.KindInternal, func(tx ota.Tx) error {
		return tx.PutTask(newTask(0, "fw-1"))
	}},
	{"SetAdd(empty set)", ota.KindInternal, func(tx ota.Tx) error {
		return tx.SetAdd("", "job-1")
	}},
	{"SetAdd(empty member)", ota.KindInternal, func(tx ota.Tx) error {
		return tx.SetAdd("task/1", "")
	}},
	{"SetAdd(NUL in set)", ota.KindInvalid, func(tx ota.Tx) error {
		return tx.SetAdd("task/1\x00job", "1") // would read as member job\x001 of task/1
	}},
	{"SetAdd(NUL in member)", ota.KindInvalid, func(tx ota.Tx) error {
		return tx.SetAdd("task/1", "job-1\x00")
	}},
	{"SetRemove(empty set)", ota.KindInternal, func(tx ota.Tx) error {
		return tx.SetRemove("", "job-1")
	}},
	{"SetRemove(empty member)", ota.KindInternal, func(tx ota.Tx) error {
		return tx.SetRemove("task/1", "")
	}},
	{"SetRemove(NUL)", ota.KindInvalid, func(tx ota.Tx) error {
		return tx.SetRemove("task/1", "job-1\x00")
	}},
	{"PutLease(nil)", ota.KindInternal, func(tx ota.Tx) error { return tx.PutLease(nil) }},
	{"AppendEvent(NUL)", ota.KindInvalid, func(tx ota.Tx) error {
		return tx.AppendEvent(newEvent("a\x00b"))
	}},
}

// testBadInput commits after each refused write, so that a store that
// reported an error but wrote anyway is caught.
func testBadInput(t *testing.T, s ota.Store) {
	for _, c := range badInput {
		var err error
		update(t, s, func(tx ota.Tx) error {
			err = c.write(tx)
			return nil
		})
		switch {
		case err == nil:
			t.Errorf("%s = nil, want an error of kind %s", c.name, c.kind)
		case ota.KindOf(err) != c.kind:
			t.Errorf("%s = %v (kind %s), want kind %s", c.name, err, ota.KindOf(err), c.kind)
		}
	}
	sameJSON(t, "store after refused writes", takeSnapshot(t, s), snapshot{})
}

func testSnapshot(t *testing.T, s ota.Store) {
	seed(t, s)
	committed := make(chan error, 1)
	view(t, s, func(tx ota.Tx) error {
		first := takeSnapshotTx(t, tx)
		go func() {
			committed <- s.Update(func(tx ota.Tx) error {
				for _, err := range []error{
					tx.DeleteFirmware("fw-1"),
					tx.PutFirmware(newFirmware(2, "pk", "2.0")),
					tx.PutTask(newTask(2, "fw-2")),
					tx.SetRemove("task/1", "job-1"),
					tx.SetAdd("task/1", "job-0"),
					tx.DeleteLease(),
				} {
					if err != nil {
						return err
					}
				}
				return nil
			})
		}()
		// bbolt may need this View to end before it can grow its map, so
		// wait a while for the commit, not forever: either way the second
		// read must see what the first saw.
		select {
		case err := <-committed:
			committed <- err
		case <-time.After(500 * time.Millisecond):
		}
		sameJSON(t, "second read in one View", takeSnapshotTx(t, tx), first)
		return nil
	})
	if err := <-committed; err != nil {
		t.Fatalf("concurrent Update: %v", err)
	}
	view(t, s, func(tx ota.Tx) error {
		if f, err := tx.Firmware("fw-2"); f == nil || err != nil {
			t.Errorf("Firmware(fw-2) after the Update = %v, %v; want it", f, err)
		}
		return nil
	})
}

func testSerialised(t *testing.T, s ota.Store) {
	const workers, each = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				errs <- s.Update(func(tx ota.Tx) error {
					n, err := tx.NextSeq("job")
					if err != nil {
						return err
					}
					return tx.PutJob(newJob(n, "fw-1", "dk"))
				})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Update: %v", err)
		}
	}
	view(t, s, func(tx ota.Tx) error {
		ids := jobIDs(t, tx)
		if len(ids) != workers*each || ids[len(ids)-1] != ota.FormatID("job", workers*each) {
			t.Errorf("after %d concurrent Updates: %d jobs, last %v", workers*each, len(ids),
				ids[len(ids)-1:])
		}
		return nil
	})
}
