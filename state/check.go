package state

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

// maxProblems caps Check's report: past a hundred, the file needs a backup
// restored, not a longer list.
const maxProblems = 100

// errEnough stops Check's walks once maxProblems have been found.
var errEnough = errors.New("too many problems")

// Check verifies the state file: bbolt's own page checks, that every index
// agrees with its records and every set key is well formed, and otactl's
// invariants between records (a device's active job is an active job of
// that device and the other way round, a round's jobs exist and belong to
// its firmware, every outbox push names an existing job, every task job
// names an existing task, a task's planned devices agree with its counts).
// A round's or task's firmware may be missing: deleting a firmware keeps
// them as history. It returns the problems found, at most about a hundred;
// none means the file is sound. It runs in one read transaction, so it sees
// one consistent snapshot while others keep working.
func (s *Store) Check() []error { return s.check(true) }

// check runs the structural checks, and the record invariants when records
// is set. Tests run the structural part alone on every database they make,
// because some of them store deliberately unrelated records.
func (s *Store) check(records bool) []error {
	var c checker
	err := s.db.View(func(b *bolt.Tx) error {
		c.t = &tx{b: b, path: s.path}
		steps := []func() error{c.pages, c.firmware, c.firmwareIndex, c.rounds,
			c.roundIndex, c.devices, c.jobs, c.pushes, c.history, c.historyIndex,
			c.tasks, c.sets, c.lease}
		if records {
			steps = append(steps, c.activeJobs, c.deviceJobs, c.roundJobs, c.pushJobs,
				c.taskJobs, c.taskPlans)
		}
		for _, step := range steps {
			if err := c.run(step); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		c.errs = append(c.errs, err)
	}
	return c.errs
}

// checker collects problems found in one transaction.
type checker struct {
	t    *tx
	errs []error
}

// run runs one step, reporting a panic of bbolt's on a damaged page as a
// problem so that the remaining steps still run.
func (c *checker) run(step func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = c.addf("damaged page: %v", r)
		}
	}()
	return step()
}

// addf records a problem, and returns errEnough once there are too many.
func (c *checker) addf(format string, args ...any) error {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
	if len(c.errs) >= maxProblems {
		c.errs = append(c.errs, fmt.Errorf("stopped after %d problems", maxProblems))
		return errEnough
	}
	return nil
}

// pages runs bbolt's consistency check of the B+tree and free list. The
// channel must be drained even after errEnough, or its goroutine leaks.
func (c *checker) pages() error {
	var stop error
	for err := range c.t.b.Check() {
		if stop == nil {
			stop = c.addf("bbolt: %v", err)
		}
	}
	return stop
}

// scan decodes every record of a bucket, reporting undecodable ones.
func scan[T any](c *checker, bucket []byte, fn func(k []byte, rec *T) error) error {
	return c.t.bucket(bucket).ForEach(func(k, v []byte) error {
		rec := new(T)
		if err := decodeRecord(v, rec); err != nil {
			return c.addf("%s %x: undecodable record: %v", bucket, k, err)
		}
		return fn(k, rec)
	})
}

// keyOf checks that a record is stored under the key its ID gives.
func (c *checker) keyOf(bucket []byte, prefix, id string, k []byte) error {
	if want, ok := idKey(prefix, id); !ok || !bytes.Equal(want, k) {
		return c.addf("%s %x: record ID %q does not match its key", bucket, k, id)
	}
	return nil
}

func (c *checker) firmware() error {
	idx := c.t.bucket(bucketFwVersion)
	return scan(c, bucketFirmware, func(k []byte, f *ota.Firmware) error {
		if err := c.keyOf(bucketFirmware, ota.FirmwarePrefix, f.ID, k); err != nil {
			return err
		}
		if !bytes.Equal(idx.Get(versionKey(f.ProductKey, f.Version)), k) {
			return c.addf("firmware %s: missing from the version index", f.ID)
		}
		return nil
	})
}

func (c *checker) firmwareIndex() error {
	return c.t.bucket(bucketFwVersion).ForEach(func(k, v []byte) error {
		f, err := get[ota.Firmware](c.t, bucketFirmware, v)
		switch {
		case err != nil:
			return c.addf("firmware index %q: %v", k, err)
		case f == nil:
			return c.addf("firmware index %q: names missing firmware %x", k, v)
		case !bytes.Equal(k, versionKey(f.ProductKey, f.Version)):
			return c.addf("firmware index %q: names firmware %s of version %q",
				k, f.ID, f.Version)
		}
		return nil
	})
}

func (c *checker) rounds() error {
	idx := c.t.bucket(bucketRoundFw)
	return scan(c, bucketRound, func(k []byte, r *ota.Round) error {
		if err := c.keyOf(bucketRound, ota.RoundPrefix, r.ID, k); err != nil {
			return err
		}
		if idx.Get(join(r.FirmwareID, k)) == nil {
			return c.addf("round %s: missing from the firmware index", r.ID)
		}
		return nil
	})
}

func (c *checker) roundIndex() error {
	return c.t.bucket(bucketRoundFw).ForEach(func(k, _ []byte) error {
		i := bytes.IndexByte(k, sep)
		if i < 0 || len(k) != i+9 {
			return c.addf("round index %q: malformed key", k)
		}
		r, err := get[ota.Round](c.t, bucketRound, k[i+1:])
		switch {
		case err != nil:
			return c.addf("round index %q: %v", k, err)
		case r == nil || r.FirmwareID != string(k[:i]):
			return c.addf("round index %q: no such round of firmware %s", k, k[:i])
		}
		return nil
	})
}

func (c *checker) devices() error {
	return scan(c, bucketDevice, func(k []byte, d *ota.Device) error {
		if !bytes.Equal(k, devKey(d.ProductKey, d.DeviceKey)) {
			return c.addf("device %q: record names device %s/%s", k, d.ProductKey, d.DeviceKey)
		}
		return nil
	})
}

func (c *checker) jobs() error {
	return scan(c, bucketJob, func(k []byte, j *ota.Job) error {
		return c.keyOf(bucketJob, ota.JobPrefix, j.ID, k)
	})
}

func (c *checker) pushes() error {
	return scan(c, bucketPush, func(k []byte, p *ota.Push) error {
		return c.keyOf(bucketPush, ota.PushPrefix, p.ID, k)
	})
}

// history also checks the bucket's sequence: were it behind the newest
// event, the next AppendEvent would overwrite history.
func (c *checker) history() error {
	h := c.t.bucket(bucketHistory)
	if k, _ := h.Cursor().Last(); k != nil && decodeU64(k) > h.Sequence() {
		if err := c.addf("history: sequence %d is behind event %d", h.Sequence(),
			decodeU64(k)); err != nil {
			return err
		}
	}
	idx := c.t.bucket(bucketHistorySub)
	return scan(c, bucketHistory, func(k []byte, e *ota.Event) error {
		if len(k) != 8 || decodeU64(k) != e.Seq {
			return c.addf("history %x: event says seq %d", k, e.Seq)
		}
		if idx.Get(join(e.Subject, k)) == nil {
			return c.addf("history %d: missing from the subject index", e.Seq)
		}
		return nil
	})
}

func (c *checker) historyIndex() error {
	return c.t.bucket(bucketHistorySub).ForEach(func(k, _ []byte) error {
		n := len(k) - 8
		if n < 1 || k[n-1] != sep {
			return c.addf("history index %q: malformed key", k)
		}
		e, err := get[ota.Event](c.t, bucketHistory, k[n:])
		switch {
		case err != nil:
			return c.addf("history index %q: %v", k, err)
		case e == nil || e.Subject != string(k[:n-1]):
			return c.addf("history index %q: no such event of subject %q", k, k[:n-1])
		}
		return nil
	})
}

func (c *checker) tasks() error {
	return scan(c, bucketTask, func(k []byte, task *ota.Task) error {
		return c.keyOf(bucketTask, ota.TaskPrefix, task.ID, k)
	})
}

// sets checks that every key is a non-empty set name, the separator and a
// non-empty member, with the empty value SetAdd writes. Members are not
// decoded, so this costs a walk of the keys alone.
func (c *checker) sets() error {
	return c.t.bucket(bucketSet).ForEach(func(k, v []byte) error {
		i := bytes.IndexByte(k, sep)
		switch {
		case i <= 0 || i == len(k)-1 || bytes.IndexByte(k[i+1:], sep) >= 0:
			return c.addf("set key %q: malformed", k)
		case len(v) != 0:
			return c.addf("set key %q: holds a value", k)
		}
		return nil
	})
}

// lease checks that the lease bucket holds at most the one lease.
func (c *checker) lease() error {
	return scan(c, bucketLease, func(k []byte, _ *ota.Lease) error {
		if !bytes.Equal(k, keyLease) {
			return c.addf("lease %q: unexpected key", k)
		}
		return nil
	})
}

// activeJobs checks each device's ActiveJob from the device's side.
func (c *checker) activeJobs() error {
	return scan(c, bucketDevice, func(_ []byte, d *ota.Device) error {
		if d.ActiveJob == "" {
			return nil
		}
		name := d.ProductKey + "/" + d.DeviceKey
		j, err := c.t.Job(d.ActiveJob)
		switch {
		case err != nil:
			return c.addf("device %s: active job %s: %v", name, d.ActiveJob, err)
		case j == nil:
			return c.addf("device %s: active job %s does not exist", name, d.ActiveJob)
		case j.ProductKey != d.ProductKey || j.DeviceKey != d.DeviceKey:
			return c.addf("device %s: active job %s belongs to device %s/%s",
				name, j.ID, j.ProductKey, j.DeviceKey)
		case !j.Status.Active():
			return c.addf("device %s: active job %s is %s", name, j.ID, j.Status)
		}
		return nil
	})
}

// deviceJobs checks from the job's side that every active job holds its
// device.
func (c *checker) deviceJobs() error {
	return scan(c, bucketJob, func(_ []byte, j *ota.Job) error {
		if !j.Status.Active() {
			return nil
		}
		d, err := c.t.Device(j.ProductKey, j.DeviceKey)
		switch {
		case err != nil:
			return c.addf("job %s: device: %v", j.ID, err)
		case d == nil:
			return c.addf("job %s is %s for unknown device %s/%s",
				j.ID, j.Status, j.ProductKey, j.DeviceKey)
		case d.ActiveJob != j.ID:
			return c.addf("job %s is %s but device %s/%s has active job %q",
				j.ID, j.Status, j.ProductKey, j.DeviceKey, d.ActiveJob)
		}
		return nil
	})
}

// roundJobs checks that a round's jobs exist and belong to it.
func (c *checker) roundJobs() error {
	return scan(c, bucketRound, func(_ []byte, r *ota.Round) error {
		for _, id := range r.JobIDs {
			j, err := c.t.Job(id)
			switch {
			case err != nil:
				err = c.addf("round %s: job %s: %v", r.ID, id, err)
			case j == nil:
				err = c.addf("round %s: job %s does not exist", r.ID, id)
			case j.FirmwareID != r.FirmwareID || j.RoundID != r.ID:
				err = c.addf("round %s of firmware %s: job %s belongs to round %q of firmware %s",
					r.ID, r.FirmwareID, id, j.RoundID, j.FirmwareID)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// pushJobs checks that every outbox entry names an existing job.
func (c *checker) pushJobs() error {
	return scan(c, bucketPush, func(_ []byte, p *ota.Push) error {
		if j, err := c.t.Job(p.JobID); err != nil || j == nil {
			return c.addf("push %s: job %s does not exist", p.ID, p.JobID)
		}
		return nil
	})
}

// taskJobs checks that every job of a task names an existing task. Tasks
// are never deleted, so a job that names a missing one was written wrong.
// taskPlans checks each task's planned devices against its counts, by
// ota's own rule (ota.PlannedProblems).
func (c *checker) taskPlans() error {
	return scan(c, bucketTask, func(_ []byte, task *ota.Task) error {
		problems, err := ota.PlannedProblems(c.t, task)
		if err != nil {
			return c.addf("task %s: planned devices: %v", task.ID, err)
		}
		for _, p := range problems {
			if err := c.addf("%s", p); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *checker) taskJobs() error {
	return scan(c, bucketJob, func(_ []byte, j *ota.Job) error {
		if j.TaskID == "" {
			return nil
		}
		if task, err := c.t.Task(j.TaskID); err != nil || task == nil {
			return c.addf("job %s: task %s does not exist", j.ID, j.TaskID)
		}
		return nil
	})
}
