package storetest

import (
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

var taskTests = []test{
	{"tasks/round-trip and EachTask visits in creation order", func(t *testing.T, s ota.Store) {
		want := newTask(10, "fw-1")
		want.ProductKey, want.FromVersions = "温湿度", []string{"v1.0-β"}
		want.Status, want.Reason = ota.TaskAborted, "failure rate 30% over 25%"
		want.Controls.StartTimeout, want.Controls.AbortMinFinished = ota.Duration(time.Minute), 4
		want.Controls.Incremental = true
		want.Counts = ota.TaskCounts{Targets: 8, Queued: 1, Pushed: 2, InProgress: 3,
			Succeeded: 4, Failed: 5, Canceled: 6, Retried: 7}
		want.Failures = map[string]int{"timed out": 3, "download failed": 2}
		want.FinishedAt = t0.Add(time.Hour)
		update(t, s, func(tx ota.Tx) error {
			for _, n := range []uint64{2, 1, 11} {
				must(t, tx.PutTask(newTask(n, "fw-1")))
			}
			return tx.PutTask(want)
		})
		view(t, s, func(tx ota.Tx) error {
			got, err := tx.Task("task-10")
			must(t, err)
			sameJSON(t, "Task(task-10)", got, want)
			equal(t, "EachTask", taskIDs(t, tx),
				[]string{"task-1", "task-2", "task-10", "task-11"})
			return nil
		})
	}},
	{"tasks/PutTask replaces the record", func(t *testing.T, s ota.Store) {
		task := newTask(1, "fw-1")
		update(t, s, func(tx ota.Tx) error { return tx.PutTask(task) })
		task.Status, task.Skipped, task.Failures = ota.TaskCompleted, nil, map[string]int{"x": 1}
		task.Counts.Queued, task.Counts.Succeeded = 0, 7
		update(t, s, func(tx ota.Tx) error { return tx.PutTask(task) })
		view(t, s, func(tx ota.Tx) error {
			got, err := tx.Task("task-1")
			must(t, err)
			sameJSON(t, "Task(task-1)", got, task)
			equal(t, "EachTask", taskIDs(t, tx), []string{"task-1"})
			return nil
		})
	}},
}

var leaseTests = []test{
	{"lease/Lease is nil, nil when none is recorded", func(t *testing.T, s ota.Store) {
		view(t, s, func(tx ota.Tx) error {
			l, err := tx.Lease()
			missing(t, "Lease() of a new store", l, err)
			return nil
		})
	}},
	{"lease/PutLease replaces any other, DeleteLease removes it", testLease},
}

func testLease(t *testing.T, s ota.Store) {
	lease := func(tx ota.Tx) *ota.Lease {
		t.Helper()
		l, err := tx.Lease()
		must(t, err)
		return l
	}
	update(t, s, func(tx ota.Tx) error { return tx.PutLease(newLease(1)) })
	view(t, s, func(tx ota.Tx) error {
		sameJSON(t, "Lease()", lease(tx), newLease(1))
		return nil
	})
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.PutLease(newLease(2)))
		sameJSON(t, "Lease() after a second PutLease in the same Update", lease(tx),
			newLease(2))
		return nil
	})
	view(t, s, func(tx ota.Tx) error {
		sameJSON(t, "Lease() after PutLease replaced it", lease(tx), newLease(2))
		return nil
	})
	update(t, s, func(tx ota.Tx) error {
		must(t, tx.DeleteLease())
		l, err := tx.Lease()
		missing(t, "Lease() after DeleteLease in the same Update", l, err)
		return tx.DeleteLease() // a missing lease: no error
	})
	view(t, s, func(tx ota.Tx) error {
		l, err := tx.Lease()
		missing(t, "Lease() after DeleteLease", l, err)
		refused(t, "DeleteLease() of no lease inside View", tx.DeleteLease())
		return nil
	})
}
