package storetest

import (
	"testing"

	"github.com/otactl/otactl/ota"
)

// historySubjects are appended in this order; the queries below pick them
// out by position (seq = index + 1).
var historySubjects = []string{
	"job/job-1",     // 1
	"job/job-10",    // 2
	"firmware/fw-1", // 3
	"job/job-1",     // 4
	"jobs/x",        // 5
	"device/pk/dk",  // 6
	"job/job-2",     // 7
	"device/pk/dk2", // 8
	"device/pk2/dk", // 9
	"device/pk/温湿度", // 10
	"",              // 11: no subject at all
}

var historyTests = []test{
	{"history/AppendEvent sets increasing Seq", func(t *testing.T, s ota.Store) {
		var seqs []uint64
		for range 3 {
			update(t, s, func(tx ota.Tx) error {
				for range 2 {
					e := newEvent("job/job-1")
					must(t, tx.AppendEvent(e))
					seqs = append(seqs, e.Seq)
				}
				return nil
			})
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] <= seqs[i-1] {
				t.Fatalf("AppendEvent Seq values %v are not increasing", seqs)
			}
		}
		view(t, s, func(tx ota.Tx) error {
			var got []uint64
			for _, e := range events(t, tx, "") {
				got = append(got, e.Seq)
			}
			equal(t, `EachEvent("") Seq values`, got, seqs)
			return nil
		})
	}},
	{"history/events round-trip", func(t *testing.T, s ota.Store) {
		want := &ota.Event{Time: t0, Subject: "device/温湿度/café_2", Action: "dropped",
			Detail: "payload over 512 KiB", Topic: "/sys/温湿度/café_2/ota/device/inform",
			Payload: `{"id":"1","params":{"version":"1.0"}}`}
		update(t, s, func(tx ota.Tx) error { return tx.AppendEvent(want) })
		view(t, s, func(tx ota.Tx) error {
			got := events(t, tx, want.Subject)
			if len(got) != 1 {
				t.Fatalf("EachEvent(%q) visited %d events, want 1", want.Subject, len(got))
			}
			sameJSON(t, "event", got[0], want)
			return nil
		})
	}},
	{"history/EachEvent filters by exact subject or prefix/", testEventFilter},
}

func testEventFilter(t *testing.T, s ota.Store) {
	var seq []uint64 // seq[i] is the Seq of historySubjects[i]
	update(t, s, func(tx ota.Tx) error {
		for _, subj := range historySubjects {
			e := newEvent(subj)
			must(t, tx.AppendEvent(e))
			seq = append(seq, e.Seq)
		}
		return nil
	})
	cases := []struct {
		subject string
		want    []int // positions in historySubjects, in order
	}{
		{"job/job-1", []int{0, 3}},
		{"job/job-10", []int{1}},
		{"job/", []int{0, 1, 3, 6}}, // time order across subjects
		{"job", nil},
		{"jobs/", []int{4}},
		{"device/pk/", []int{5, 7, 9}},
		{"device/", []int{5, 7, 8, 9}},
		{"device/pk", nil},
		{"", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"nothing/", nil},
	}
	view(t, s, func(tx ota.Tx) error {
		for _, c := range cases {
			var got, want []uint64
			for _, e := range events(t, tx, c.subject) {
				got = append(got, e.Seq)
			}
			for _, i := range c.want {
				want = append(want, seq[i])
			}
			equal(t, "EachEvent("+c.subject+") Seq values", got, want)
		}
		return nil
	})
}
