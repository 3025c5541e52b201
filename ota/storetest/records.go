package storetest

import (
	"cmp"
	"errors"
	"slices"
	"testing"

	"github.com/otactl/otactl/ota"
)

var seqTests = []test{
	{"NextSeq/starts at 1 and counts per name", func(t *testing.T, s ota.Store) {
		var got []uint64
		next := func(tx ota.Tx, name string) {
			n, err := tx.NextSeq(name)
			must(t, err)
			got = append(got, n)
		}
		update(t, s, func(tx ota.Tx) error {
			next(tx, "firmware")
			next(tx, "firmware")
			next(tx, "job")
			return nil
		})
		update(t, s, func(tx ota.Tx) error {
			next(tx, "job")
			next(tx, "firmware")
			next(tx, "jobs") // a name that merely starts like another
			return nil
		})
		equal(t, "NextSeq values", got, []uint64{1, 2, 1, 2, 3, 1})
	}},
	{"NextSeq/never reuses a value after a delete", func(t *testing.T, s ota.Store) {
		update(t, s, func(tx ota.Tx) error {
			n, err := tx.NextSeq("firmware")
			must(t, err)
			return tx.PutFirmware(newFirmware(n, "pk", "1.0"))
		})
		update(t, s, func(tx ota.Tx) error { return tx.DeleteFirmware("fw-1") })
		update(t, s, func(tx ota.Tx) error {
			if n, err := tx.NextSeq("firmware"); n != 2 || err != nil {
				t.Errorf("NextSeq(firmware) after delete = %d, %v; want 2, nil", n, err)
			}
			return nil
		})
	}},
}

var firmwareTests = []test{
	{"getters/return nil, nil for missing records", func(t *testing.T, s ota.Store) {
		update(t, s, func(tx ota.Tx) error {
			must(t, tx.PutFirmware(newFirmware(1, "pk", "1.0")))
			must(t, tx.PutJob(newJob(1, "fw-1", "dk")))
			return nil
		})
		view(t, s, func(tx ota.Tx) error {
			f, err := tx.Firmware("fw-2")
			missing(t, "Firmware(fw-2)", f, err)
			f, err = tx.Firmware("job-1") // right number, other kind
			missing(t, "Firmware(job-1)", f, err)
			f, err = tx.Firmware("not an id")
			missing(t, "Firmware(not an id)", f, err)
			f, err = tx.FirmwareByVersion("pk", "2.0")
			missing(t, "FirmwareByVersion(pk, 2.0)", f, err)
			d, err := tx.Device("pk", "dk")
			missing(t, "Device(pk, dk)", d, err)
			r, err := tx.Round("round-1")
			missing(t, "Round(round-1)", r, err)
			j, err := tx.Job("job-2")
			missing(t, "Job(job-2)", j, err)
			task, err := tx.Task("task-1")
			missing(t, "Task(task-1)", task, err)
			task, err = tx.Task("job-1") // an existing record of another kind
			missing(t, "Task(job-1)", task, err)
			return nil
		})
	}},
	{"firmware/round-trips every field", func(t *testing.T, s ota.Store) {
		want := newFirmware(7, "温湿度", "v2.0-β")
		want.URL, want.Description = "https://example.com/x.bin", "déjà vu"
		want.Status, want.Verdict = ota.FirmwareVerified, ota.VerdictPassed
		update(t, s, func(tx ota.Tx) error { return tx.PutFirmware(want) })
		view(t, s, func(tx ota.Tx) error {
			got, err := tx.Firmware(want.ID)
			must(t, err)
			sameJSON(t, "Firmware(fw-7)", got, want)
			return nil
		})
	}},
	{"firmware/FirmwareByVersion matches exact version text", testFirmwareByVersion},
	{"firmware/FirmwareByVersion follows changes and deletes", func(t *testing.T, s ota.Store) {
		f := newFirmware(1, "pk", "1.0")
		update(t, s, func(tx ota.Tx) error { return tx.PutFirmware(f) })
		f.Version = "1.1"
		update(t, s, func(tx ota.Tx) error { return tx.PutFirmware(f) })
		view(t, s, func(tx ota.Tx) error {
			old, err := tx.FirmwareByVersion("pk", "1.0")
			missing(t, "FirmwareByVersion(pk, 1.0) after the version changed", old, err)
			cur, err := tx.FirmwareByVersion("pk", "1.1")
			if cur == nil || cur.ID != "fw-1" || err != nil {
				t.Errorf("FirmwareByVersion(pk, 1.1) = %+v, %v; want fw-1", cur, err)
			}
			return nil
		})
		update(t, s, func(tx ota.Tx) error { return tx.DeleteFirmware("fw-1") })
		view(t, s, func(tx ota.Tx) error {
			got, err := tx.FirmwareByVersion("pk", "1.1")
			missing(t, "FirmwareByVersion after DeleteFirmware", got, err)
			got, err = tx.Firmware("fw-1")
			missing(t, "Firmware after DeleteFirmware", got, err)
			return nil
		})
	}},
	{"firmware/PutFirmware refuses a second firmware of the same version", func(t *testing.T,
		s ota.Store) {
		put := func(f *ota.Firmware) func(ota.Tx) error {
			return func(tx ota.Tx) error { return tx.PutFirmware(f) }
		}
		update(t, s, put(newFirmware(1, "pk", "1.0")))
		err := s.Update(put(newFirmware(2, "pk", "1.0")))
		if ota.KindOf(err) != ota.KindRefused {
			t.Errorf("PutFirmware(duplicate version) = %v; want an error of KindRefused", err)
		}
		update(t, s, put(newFirmware(3, "pk2", "1.0")))
	}},
	{"firmware/EachFirmware visits in creation order", func(t *testing.T, s ota.Store) {
		// Stored out of order: 2 must come before 10, whatever the text order.
		update(t, s, func(tx ota.Tx) error {
			for _, n := range []uint64{10, 2, 12, 1, 3, 11, 9} {
				must(t, tx.PutFirmware(newFirmware(n, "pk", ota.FormatID("v", n))))
			}
			return tx.DeleteFirmware("fw-3")
		})
		view(t, s, func(tx ota.Tx) error {
			equal(t, "EachFirmware", firmwareIDs(t, tx),
				[]string{"fw-1", "fw-2", "fw-9", "fw-10", "fw-11", "fw-12"})
			return nil
		})
	}},
	{"firmware/DeleteFirmware of a missing firmware is no error", func(t *testing.T,
		s ota.Store) {
		update(t, s, func(tx ota.Tx) error {
			for _, id := range []string{"fw-1", "fw-x", ""} {
				if err := tx.DeleteFirmware(id); err != nil {
					t.Errorf("DeleteFirmware(%q) = %v, want nil", id, err)
				}
			}
			return nil
		})
	}},
}

func testFirmwareByVersion(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.PutFirmware(newFirmware(1, "pk", "1.0")))
		must(t, tx.PutFirmware(newFirmware(2, "pk", "v1.0")))
		must(t, tx.PutFirmware(newFirmware(3, "pk2", "1.0")))
		must(t, tx.PutFirmware(newFirmware(4, "pk", "1.0.1")))
		return nil
	})
	cases := []struct{ pk, version, want string }{
		{"pk", "1.0", "fw-1"},
		{"pk", "v1.0", "fw-2"},
		{"pk2", "1.0", "fw-3"},
		{"pk", "1.0.1", "fw-4"},
		{"pk", "1.0 ", ""}, // no trimming: that is ota's job
		{"pk", "1", ""},
		{"pk", "", ""},
		{"pk3", "1.0", ""},
		{"p", "k1.0", ""},
	}
	view(t, s, func(tx ota.Tx) error {
		for _, c := range cases {
			f, err := tx.FirmwareByVersion(c.pk, c.version)
			got := ""
			if f != nil {
				got = f.ID
			}
			if got != c.want || err != nil {
				t.Errorf("FirmwareByVersion(%q, %q) = %q, %v; want %q", c.pk, c.version,
					got, err, c.want)
			}
		}
		return nil
	})
}

// devicePairs are stored out of order; the expected order is computed by
// comparing product keys, then device keys, as bytes.
var devicePairs = [][2]string{
	{"pk", "温湿度-01"}, {"pk", "café_2"}, {"pk2", "a"}, {"pk", "Zeta"}, {"pk", "alpha"},
	{"pk-b", "x"}, {"pk", "a"}, {"pk", "ab"}, {"pk", "a-1"}, {"pk", "10"}, {"pk", "9"},
	{"温湿度", "ü"}, {"PK", "z"},
}

var deviceTests = []test{
	{"devices/EachDevice orders by product key then device key bytes", testDeviceOrder},
	{"devices/non-ASCII keys round-trip unchanged", func(t *testing.T, s ota.Store) {
		update(t, s, func(tx ota.Tx) error {
			for _, p := range devicePairs {
				must(t, tx.PutDevice(newDevice(p[0], p[1])))
			}
			return nil
		})
		view(t, s, func(tx ota.Tx) error {
			for _, p := range devicePairs {
				d, err := tx.Device(p[0], p[1])
				must(t, err)
				sameJSON(t, "Device("+p[0]+", "+p[1]+")", d, newDevice(p[0], p[1]))
			}
			d, err := tx.Device("pk", "cafe\u0301_2") // the same text, decomposed
			missing(t, "Device(pk, decomposed café_2)", d, err)
			return nil
		})
	}},
	{"devices/PutDevice replaces the record", func(t *testing.T, s ota.Store) {
		d := newDevice("pk", "dk")
		update(t, s, func(tx ota.Tx) error { return tx.PutDevice(d) })
		d.Version, d.ActiveJob, d.Recent = "2.0", "job-3", nil
		update(t, s, func(tx ota.Tx) error { return tx.PutDevice(d) })
		view(t, s, func(tx ota.Tx) error {
			got, err := tx.Device("pk", "dk")
			must(t, err)
			sameJSON(t, "Device(pk, dk)", got, d)
			equal(t, "EachDevice", deviceNames(t, tx, ""), []string{"pk/dk"})
			return nil
		})
	}},
}

func testDeviceOrder(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		for _, p := range devicePairs {
			must(t, tx.PutDevice(newDevice(p[0], p[1])))
		}
		return nil
	})
	sorted := slices.Clone(devicePairs)
	slices.SortFunc(sorted, func(a, b [2]string) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]))
	})
	var all, pk []string
	for _, p := range sorted {
		all = append(all, p[0]+"/"+p[1])
		if p[0] == "pk" {
			pk = append(pk, p[0]+"/"+p[1])
		}
	}
	view(t, s, func(tx ota.Tx) error {
		equal(t, `EachDevice("")`, deviceNames(t, tx, ""), all)
		equal(t, `EachDevice("pk")`, deviceNames(t, tx, "pk"), pk)
		equal(t, `EachDevice("p")`, deviceNames(t, tx, "p"), nil)
		equal(t, `EachDevice("温湿度")`, deviceNames(t, tx, "温湿度"), []string{"温湿度/ü"})
		return nil
	})
}

var roundJobPushTests = []test{
	{"rounds/EachRound visits a firmware's rounds in creation order", testRounds},
	{"jobs/round-trip and EachJob visits in creation order", func(t *testing.T, s ota.Store) {
		want := newJob(10, "fw-1", "温湿度-01")
		want.TaskID, want.Reason, want.ReachedFull = "task-3", "timed out at step 42", true
		want.StartedAt, want.FinishedAt = t0.Add(2e9), t0.Add(3e9)
		update(t, s, func(tx ota.Tx) error {
			for _, n := range []uint64{2, 1, 11} {
				must(t, tx.PutJob(newJob(n, "fw-1", "dk")))
			}
			return tx.PutJob(want)
		})
		view(t, s, func(tx ota.Tx) error {
			got, err := tx.Job("job-10")
			must(t, err)
			sameJSON(t, "Job(job-10)", got, want)
			equal(t, "EachJob", jobIDs(t, tx), []string{"job-1", "job-2", "job-10", "job-11"})
			return nil
		})
	}},
	{"outbox/PutPush adds or replaces, DeletePush removes", testOutbox},
}

func testRounds(t *testing.T, s ota.Store) {
	want := newRound(2, "fw-1", "job-1", "job-2")
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.PutRound(newRound(10, "fw-1")))
		must(t, tx.PutRound(want))
		must(t, tx.PutRound(newRound(3, "fw-10")))
		must(t, tx.PutRound(newRound(1, "fw-2")))
		return tx.PutRound(newRound(4, "fw-1"))
	})
	view(t, s, func(tx ota.Tx) error {
		got, err := tx.Round("round-2")
		must(t, err)
		sameJSON(t, "Round(round-2)", got, want)
		equal(t, "EachRound(fw-1)", roundIDs(t, tx, "fw-1"),
			[]string{"round-2", "round-4", "round-10"})
		equal(t, "EachRound(fw-10)", roundIDs(t, tx, "fw-10"), []string{"round-3"})
		equal(t, "EachRound(fw-3)", roundIDs(t, tx, "fw-3"), nil)
		return nil
	})
	// A round moved to another firmware is found under that one only.
	update(t, s, func(tx ota.Tx) error { return tx.PutRound(newRound(4, "fw-2")) })
	view(t, s, func(tx ota.Tx) error {
		equal(t, "EachRound(fw-1) after move", roundIDs(t, tx, "fw-1"),
			[]string{"round-2", "round-10"})
		equal(t, "EachRound(fw-2) after move", roundIDs(t, tx, "fw-2"),
			[]string{"round-1", "round-4"})
		return nil
	})
}

func testOutbox(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		for _, n := range []uint64{10, 2, 1} {
			must(t, tx.PutPush(newPush(n, "job-1")))
		}
		return nil
	})
	changed := newPush(2, "job-7")
	changed.Params.FileURL = "https://example.com/fw.bin"
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.PutPush(changed))
		must(t, tx.DeletePush("push-1"))
		must(t, tx.DeletePush("push-1"))
		return tx.DeletePush("push-99")
	})
	view(t, s, func(tx ota.Tx) error {
		equal(t, "EachPush", pushIDs(t, tx), []string{"push-2", "push-10"})
		return tx.EachPush(func(p *ota.Push) error {
			if p.ID == "push-2" {
				sameJSON(t, "push-2", p, changed)
			}
			return nil
		})
	})
}

// eachStops checks that an Each* method stops at fn's first error and
// returns it.
func eachStops(t *testing.T, what string, each func(fn func() error) error) {
	t.Helper()
	calls := 0
	err := each(func() error {
		calls++
		if calls == 2 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || calls != 2 {
		t.Errorf("%s: %d calls, error %v; want 2 calls and errStop", what, calls, err)
	}
}
