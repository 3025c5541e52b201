package otatest

import (
	"maps"
	"slices"
	"strings"

	"github.com/otactl/otactl/ota"
)

// The fake refuses what the bbolt store refuses, with the same kinds of
// error, so that a test passing against it does not fail against state.
var (
	errReadOnlyTx = ota.Errorf(ota.KindInternal, "otatest: write in a read-only transaction")
	errIterating  = ota.Errorf(ota.KindInternal, "otatest: write while iterating")
)

// tx implements ota.Tx on one version of the data.
type tx struct {
	d         *data
	writable  bool
	iterating int // Each* calls in progress; writes are refused meanwhile
}

var _ ota.Tx = (*tx)(nil)

func (t *tx) canWrite() error {
	switch {
	case !t.writable:
		return errReadOnlyTx
	case t.iterating > 0:
		return errIterating
	}
	return nil
}

// seqOf returns the sequence number of an ID made with prefix.
func seqOf(prefix, id string) (uint64, bool) {
	p, seq, ok := ota.ParseID(id)
	return seq, ok && p == prefix
}

// putSeq is seqOf for Put methods, where a malformed ID is a bug.
func (t *tx) putSeq(prefix, id string) (uint64, error) {
	if err := t.canWrite(); err != nil {
		return 0, err
	}
	seq, ok := seqOf(prefix, id)
	if !ok {
		return 0, ota.Errorf(ota.KindInternal,
			"otatest: record ID %q is not of the form %s-N", id, prefix)
	}
	return seq, nil
}

// hasNUL reports text the bbolt store cannot put in its composite keys.
func hasNUL(ss ...string) bool {
	for _, s := range ss {
		if strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
	return false
}

func nulError(what string) error { return ota.Invalid("otatest: %s contains a NUL byte", what) }

// NextSeq implements ota.Tx.
func (t *tx) NextSeq(name string) (uint64, error) {
	if err := t.canWrite(); err != nil {
		return 0, err
	}
	if name == "" {
		return 0, ota.Errorf(ota.KindInternal, "otatest: empty sequence name")
	}
	t.d.seqs[name]++
	return t.d.seqs[name], nil
}

// Firmware implements ota.Tx.
func (t *tx) Firmware(id string) (*ota.Firmware, error) {
	seq, ok := seqOf(ota.FirmwarePrefix, id)
	if !ok {
		return nil, nil
	}
	return decode[ota.Firmware](t.d.firmware[seq])
}

// FirmwareByVersion implements ota.Tx with a linear search, which is what a
// fake can afford.
func (t *tx) FirmwareByVersion(productKey, version string) (*ota.Firmware, error) {
	var found *ota.Firmware
	err := t.EachFirmware(func(f *ota.Firmware) error {
		if f.ProductKey == productKey && f.Version == version {
			found = f
		}
		return nil
	})
	return found, err
}

// EachFirmware implements ota.Tx.
func (t *tx) EachFirmware(fn func(*ota.Firmware) error) error {
	return eachSeq(t, t.d.firmware, fn)
}

// PutFirmware implements ota.Tx, refusing a second firmware with the same
// product and version as the bbolt store's version index does.
func (t *tx) PutFirmware(f *ota.Firmware) error {
	seq, err := t.putSeq(ota.FirmwarePrefix, f.ID)
	if err != nil {
		return err
	}
	if hasNUL(f.ProductKey, f.Version) {
		return nulError("firmware product key or version")
	}
	other, err := t.FirmwareByVersion(f.ProductKey, f.Version)
	if err != nil {
		return err
	}
	if other != nil && other.ID != f.ID {
		return ota.Refused("otatest: product %s already has firmware %s with version %q",
			f.ProductKey, other.ID, f.Version)
	}
	return putRec(t.d.firmware, seq, f)
}

// DeleteFirmware implements ota.Tx.
func (t *tx) DeleteFirmware(id string) error {
	if err := t.canWrite(); err != nil {
		return err
	}
	if seq, ok := seqOf(ota.FirmwarePrefix, id); ok {
		delete(t.d.firmware, seq)
	}
	return nil
}

// Device implements ota.Tx.
func (t *tx) Device(productKey, deviceKey string) (*ota.Device, error) {
	return decode[ota.Device](t.d.devices[productKey+"\x00"+deviceKey])
}

// PutDevice implements ota.Tx.
func (t *tx) PutDevice(d *ota.Device) error {
	if err := t.canWrite(); err != nil {
		return err
	}
	if d.ProductKey == "" || d.DeviceKey == "" {
		return ota.Invalid("otatest: device with an empty product or device key")
	}
	if hasNUL(d.ProductKey, d.DeviceKey) {
		return nulError("product or device key")
	}
	return putRec(t.d.devices, d.ProductKey+"\x00"+d.DeviceKey, d)
}

// EachDevice implements ota.Tx. Sorting the joined keys as strings orders
// by product key, then device key, byte by byte, because NUL sorts first.
func (t *tx) EachDevice(productKey string, fn func(*ota.Device) error) error {
	prefix := ""
	if productKey != "" {
		prefix = productKey + "\x00"
	}
	keys := slices.Sorted(maps.Keys(t.d.devices))
	return visit(t, keys, func(k string) error {
		if !strings.HasPrefix(k, prefix) {
			return nil
		}
		return decodeTo(t.d.devices[k], fn)
	})
}

// Round implements ota.Tx.
func (t *tx) Round(id string) (*ota.Round, error) {
	seq, ok := seqOf(ota.RoundPrefix, id)
	if !ok {
		return nil, nil
	}
	return decode[ota.Round](t.d.rounds[seq])
}

// PutRound implements ota.Tx.
func (t *tx) PutRound(r *ota.Round) error {
	seq, err := t.putSeq(ota.RoundPrefix, r.ID)
	if err != nil {
		return err
	}
	if hasNUL(r.FirmwareID) {
		return nulError("round firmware ID")
	}
	return putRec(t.d.rounds, seq, r)
}

// EachRound implements ota.Tx.
func (t *tx) EachRound(firmwareID string, fn func(*ota.Round) error) error {
	return eachSeq(t, t.d.rounds, func(r *ota.Round) error {
		if r.FirmwareID != firmwareID {
			return nil
		}
		return fn(r)
	})
}

// Job implements ota.Tx.
func (t *tx) Job(id string) (*ota.Job, error) {
	seq, ok := seqOf(ota.JobPrefix, id)
	if !ok {
		return nil, nil
	}
	return decode[ota.Job](t.d.jobs[seq])
}

// PutJob implements ota.Tx.
func (t *tx) PutJob(j *ota.Job) error {
	seq, err := t.putSeq(ota.JobPrefix, j.ID)
	if err != nil {
		return err
	}
	return putRec(t.d.jobs, seq, j)
}

// EachJob implements ota.Tx.
func (t *tx) EachJob(fn func(*ota.Job) error) error { return eachSeq(t, t.d.jobs, fn) }

// PutPush implements ota.Tx.
func (t *tx) PutPush(p *ota.Push) error {
	seq, err := t.putSeq(ota.PushPrefix, p.ID)
	if err != nil {
		return err
	}
	return putRec(t.d.pushes, seq, p)
}

// DeletePush implements ota.Tx.
func (t *tx) DeletePush(id string) error {
	if err := t.canWrite(); err != nil {
		return err
	}
	if seq, ok := seqOf(ota.PushPrefix, id); ok {
		delete(t.d.pushes, seq)
	}
	return nil
}

// EachPush implements ota.Tx.
func (t *tx) EachPush(fn func(*ota.Push) error) error { return eachSeq(t, t.d.pushes, fn) }

// Task implements ota.Tx.
func (t *tx) Task(id string) (*ota.Task, error) {
	seq, ok := seqOf(ota.TaskPrefix, id)
	if !ok {
		return nil, nil
	}
	return decode[ota.Task](t.d.tasks[seq])
}

// PutTask implements ota.Tx.
func (t *tx) PutTask(task *ota.Task) error {
	seq, err := t.putSeq(ota.TaskPrefix, task.ID)
	if err != nil {
		return err
	}
	return putRec(t.d.tasks, seq, task)
}

// EachTask implements ota.Tx.
func (t *tx) EachTask(fn func(*ota.Task) error) error { return eachSeq(t, t.d.tasks, fn) }

// checkSet refuses set names and members as the bbolt store does: an
// empty one is a bug in the caller, a NUL byte would break its keys.
func checkSet(set, member string) error {
	switch {
	case set == "" || member == "":
		return ota.Errorf(ota.KindInternal, "otatest: empty set name or member (%q, %q)",
			set, member)
	case hasNUL(set, member):
		return nulError("set name or member")
	}
	return nil
}

// SetAdd implements ota.Tx.
func (t *tx) SetAdd(set, member string) error {
	if err := t.canWrite(); err != nil {
		return err
	}
	if err := checkSet(set, member); err != nil {
		return err
	}
	if root := t.d.sets[set]; !root.has(member) {
		t.d.sets[set] = root.with(member, priority(member))
	}
	return nil
}

// SetRemove implements ota.Tx.
func (t *tx) SetRemove(set, member string) error {
	if err := t.canWrite(); err != nil {
		return err
	}
	if err := checkSet(set, member); err != nil {
		return err
	}
	root := t.d.sets[set]
	if !root.has(member) {
		return nil
	}
	if root = root.without(member); root == nil {
		delete(t.d.sets, set)
	} else {
		t.d.sets[set] = root
	}
	return nil
}

// SetHas implements ota.Tx.
func (t *tx) SetHas(set, member string) (bool, error) {
	return t.d.sets[set].has(member), nil
}

// SetEach implements ota.Tx. A name SetAdd refuses has no entry, so it
// visits nothing, as in the bbolt store.
func (t *tx) SetEach(set, after string, fn func(member string) error) error {
	t.iterating++
	defer func() { t.iterating-- }()
	return t.d.sets[set].each(after, fn)
}

// Lease implements ota.Tx.
func (t *tx) Lease() (*ota.Lease, error) { return decode[ota.Lease](t.d.lease) }

// PutLease implements ota.Tx, refusing a nil lease as the bbolt store does.
func (t *tx) PutLease(l *ota.Lease) error {
	if err := t.canWrite(); err != nil {
		return err
	}
	if l == nil {
		return ota.Errorf(ota.KindInternal, "otatest: nil lease; use DeleteLease")
	}
	b, err := encode(l)
	if err != nil {
		return err
	}
	t.d.lease = b
	return nil
}

// DeleteLease implements ota.Tx.
func (t *tx) DeleteLease() error {
	if err := t.canWrite(); err != nil {
		return err
	}
	t.d.lease = nil
	return nil
}

// AppendEvent implements ota.Tx.
func (t *tx) AppendEvent(e *ota.Event) error {
	if err := t.canWrite(); err != nil {
		return err
	}
	if hasNUL(e.Subject) {
		return nulError("event subject")
	}
	rec := *e
	rec.Seq = uint64(len(t.d.events)) + 1
	b, err := encode(&rec)
	if err != nil {
		return err
	}
	t.d.events = append(t.d.events, b)
	e.Seq = rec.Seq
	return nil
}

// EachEvent implements ota.Tx.
func (t *tx) EachEvent(subject string, fn func(*ota.Event) error) error {
	match := func(s string) bool { return s == subject }
	switch {
	case subject == "":
		match = func(string) bool { return true }
	case strings.HasSuffix(subject, "/"):
		match = func(s string) bool { return strings.HasPrefix(s, subject) }
	}
	return visit(t, t.d.events, func(b []byte) error {
		return decodeTo(b, func(e *ota.Event) error {
			if !match(e.Subject) {
				return nil
			}
			return fn(e)
		})
	})
}

// putRec stores a copy of rec under k.
func putRec[K comparable](m map[K][]byte, k K, rec any) error {
	b, err := encode(rec)
	if err != nil {
		return err
	}
	m[k] = b
	return nil
}

// eachSeq visits the records of m in the order of their sequence numbers,
// which is creation order.
func eachSeq[T any](t *tx, m map[uint64][]byte, fn func(*T) error) error {
	keys := slices.Sorted(maps.Keys(m))
	return visit(t, keys, func(k uint64) error { return decodeTo(m[k], fn) })
}

// visit calls fn for each item, refusing writes until it returns.
func visit[E any](t *tx, items []E, fn func(E) error) error {
	t.iterating++
	defer func() { t.iterating-- }()
	for _, it := range items {
		if err := fn(it); err != nil {
			return err
		}
	}
	return nil
}

// decodeTo decodes one record and passes the copy to fn.
func decodeTo[T any](b []byte, fn func(*T) error) error {
	rec, err := decode[T](b)
	if err != nil {
		return err
	}
	return fn(rec)
}
