package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/otactl/otactl/ota"
)

// setMembers are added out of order; byte order puts "0010" after "0009",
// "job-10" before "job-9", capitals before small letters, "a" before "a-1"
// and "ab", and multi-byte UTF-8 and a byte that is not UTF-8 at the end.
var setMembers = []string{
	"job-9", "0010", "ab", "温湿度", "job-10", "a", "Zeta", "\x01", "0009", "a-1",
	"café", "\xffend", "job-1",
}

var setTests = []test{
	{"sets/SetAdd of a member already there adds nothing", testSetAddTwice},
	{"sets/SetRemove of a missing member is no error", testSetRemoveMissing},
	{"sets/SetEach visits the members after after, in byte order", testSetOrder},
	{"sets/sets never mix, even when one name starts with another", testSetsApart},
	{"sets/walks resume after the last member seen", testSetResume},
	{"sets/SetHas finds exactly the members added and not removed", testSetHas},
	{"sets/SetEach of a name no set can have visits nothing", func(t *testing.T,
		s ota.Store) {
		update(t, s, func(tx ota.Tx) error { return tx.SetAdd("a", "b") })
		view(t, s, func(tx ota.Tx) error {
			for _, set := range []string{"", "a\x00", "a\x00b", "\x00"} {
				equal(t, fmt.Sprintf("SetEach(%q)", set), members(t, tx, set, ""), nil)
			}
			return nil
		})
	}},
}

func testSetAddTwice(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.SetAdd("q", "a"))
		must(t, tx.SetAdd("q", "b"))
		return tx.SetAdd("q", "a")
	})
	update(t, s, func(tx ota.Tx) error { return tx.SetAdd("q", "a") })
	view(t, s, func(tx ota.Tx) error {
		equal(t, "SetEach(q) after adding a twice", members(t, tx, "q", ""),
			[]string{"a", "b"})
		return nil
	})
	// One member, not a count: a single remove takes it out.
	update(t, s, func(tx ota.Tx) error { return tx.SetRemove("q", "a") })
	view(t, s, func(tx ota.Tx) error {
		equal(t, "SetEach(q) after one SetRemove", members(t, tx, "q", ""), []string{"b"})
		return nil
	})
}

func testSetRemoveMissing(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.SetAdd("q", "a"))
		return tx.SetAdd("q", "c")
	})
	update(t, s, func(tx ota.Tx) error {
		for _, c := range [][2]string{{"q", "b"}, {"q", "c"}, {"q", "c"}, {"never", "a"}} {
			if err := tx.SetRemove(c[0], c[1]); err != nil {
				t.Errorf("SetRemove(%q, %q) = %v, want nil", c[0], c[1], err)
			}
		}
		return nil
	})
	view(t, s, func(tx ota.Tx) error {
		equal(t, "SetEach(q)", members(t, tx, "q", ""), []string{"a"})
		equal(t, "SetEach(never)", members(t, tx, "never", ""), nil)
		return nil
	})
}

func testSetOrder(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		for _, m := range setMembers {
			must(t, tx.SetAdd("q", m))
		}
		return nil
	})
	sorted := slices.Sorted(slices.Values(setMembers))
	afters := []string{
		"",                    // every member
		sorted[0],             // a member: not itself, the rest
		"a-0",                 // between members
		"a\x00",               // a NUL byte: members after "a", from "a-1" on
		"job-10",              // in the middle
		"job-1\xff",           // just after job-1, before job-10
		sorted[len(sorted)-1], // the last member: nothing
		"\xff\xff",            // after every member
	}
	view(t, s, func(tx ota.Tx) error {
		for _, after := range afters {
			var want []string
			for _, m := range sorted {
				if m > after {
					want = append(want, m)
				}
			}
			equal(t, fmt.Sprintf("SetEach(q, %q)", after), members(t, tx, "q", after), want)
		}
		return nil
	})
}

// setNames are sets whose names start with one another's. Each gets the
// member "m", shared by all, and members that would read as another set's
// were the name and member simply joined: "0" of "task/1" next to "task/10",
// "/x" of "task/1" next to "task/1/".
var setNames = map[string][]string{
	"task":    {"/1", "m"},
	"task/1":  {"/x", "0", "m"},
	"task/10": {"m", "x"},
	"task/1/": {"m", "x"},
	"task/2":  {"m"},
}

func testSetsApart(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		for set, ms := range setNames {
			for _, m := range ms {
				must(t, tx.SetAdd(set, m))
			}
		}
		return nil
	})
	view(t, s, func(tx ota.Tx) error {
		for set, ms := range setNames {
			equal(t, "SetEach("+set+")", members(t, tx, set, ""), ms)
			equal(t, "SetEach("+set+", m)", members(t, tx, set, "m"), ms[slices.Index(ms, "m")+1:])
		}
		equal(t, "SetEach(task/)", members(t, tx, "task/", ""), nil)
		return nil
	})
	update(t, s, func(tx ota.Tx) error { return tx.SetRemove("task/1", "m") })
	view(t, s, func(tx ota.Tx) error {
		equal(t, "SetEach(task/1) after removing m", members(t, tx, "task/1", ""),
			[]string{"/x", "0"})
		for _, set := range []string{"task", "task/10", "task/1/", "task/2"} {
			equal(t, "SetEach("+set+") after removing m from task/1",
				members(t, tx, set, ""), setNames[set])
		}
		return nil
	})
}

// testSetResume drains a queue as ota does: a batch at a time, each walk
// stopping early and the next resuming after the last member seen. Every
// other member, the last seen among them, is removed after each walk, so
// the next one starts from a member that is no longer there.
func testSetResume(t *testing.T, s ota.Store) {
	const n, batch = 1500, 100
	var all []string
	update(t, s, func(tx ota.Tx) error {
		for i := range n {
			m := fmt.Sprintf("%06d", i*7919%n) // every number below n, shuffled
			all = append(all, m)
			must(t, tx.SetAdd("queue", m))
		}
		return nil
	})
	slices.Sort(all)
	var seen, kept []string
	for after := ""; ; {
		var got []string
		update(t, s, func(tx ota.Tx) error {
			err := tx.SetEach("queue", after, func(m string) error {
				got = append(got, m)
				if len(got) == batch {
					return errStop
				}
				return nil
			})
			if err != nil && !errors.Is(err, errStop) {
				t.Fatalf("SetEach(queue, %q) = %v", after, err)
			}
			for i := 1; i < len(got); i += 2 {
				must(t, tx.SetRemove("queue", got[i]))
			}
			return nil
		})
		if len(got) == 0 {
			break
		}
		seen = append(seen, got...)
		for i := 0; i < len(got); i += 2 {
			kept = append(kept, got[i])
		}
		after = got[len(got)-1]
	}
	equal(t, "members seen by the resumed walks", seen, all)
	view(t, s, func(tx ota.Tx) error {
		equal(t, "SetEach(queue) after the drain", members(t, tx, "queue", ""), kept)
		return nil
	})
}

func testSetHas(t *testing.T, s ota.Store) {
	update(t, s, func(tx ota.Tx) error {
		for _, m := range setMembers {
			must(t, tx.SetAdd("q", m))
		}
		must(t, tx.SetAdd("q-1", "zz"))
		return tx.SetRemove("q", "ab")
	})
	view(t, s, func(tx ota.Tx) error {
		for _, m := range setMembers {
			ok, err := tx.SetHas("q", m)
			must(t, err)
			if want := m != "ab"; ok != want {
				t.Errorf("SetHas(q, %q) = %v, want %v", m, ok, want)
			}
		}
		// A prefix of a member, a member of another set, and names no set
		// can have are not members.
		for _, c := range [][2]string{{"q", "job-"}, {"q", "zz"}, {"q-1", "a"}, {"q", ""},
			{"", "a"}, {"q\x00", "a"}, {"nothing", "a"}} {
			ok, err := tx.SetHas(c[0], c[1])
			must(t, err)
			if ok {
				t.Errorf("SetHas(%q, %q) = true, want false", c[0], c[1])
			}
		}
		return nil
	})
}
