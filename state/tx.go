package state

import (
	"bytes"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

// Errors of write methods called where writing is not allowed. They are
// bugs in the caller, hence KindInternal.
var (
	errReadOnlyTx = ota.Errorf(ota.KindInternal, "store: write in a read-only transaction")
	errIterating  = ota.Errorf(ota.KindInternal, "store: write while iterating")
)

// tx implements ota.Tx on a bbolt transaction.
type tx struct {
	b    *bolt.Tx
	path string // of the state file, for error messages
	// iterating counts the Each* calls in progress: a bbolt cursor may skip
	// or repeat keys when its bucket changes underneath, so writes are
	// refused instead of silently corrupting the walk.
	iterating int
	// wrote is set by the first write, so that Store.Update commits only a
	// transaction that may have changed something.
	wrote bool
}

var _ ota.Tx = (*tx)(nil)

func (t *tx) bucket(name []byte) *bolt.Bucket { return t.b.Bucket(name) }

// writable reports why the transaction may not be written now, if it may
// not. Every write method asks it first, so it is also where a write is
// noted.
func (t *tx) writable() error {
	switch {
	case !t.b.Writable():
		return errReadOnlyTx
	case t.iterating > 0:
		return errIterating
	}
	t.wrote = true
	return nil
}

// NextSeq implements ota.Tx.
func (t *tx) NextSeq(name string) (n uint64, err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return 0, err
	}
	if name == "" {
		return 0, ota.Errorf(ota.KindInternal, "store: empty sequence name")
	}
	b := t.bucket(bucketSeq)
	n = 1
	if v := b.Get([]byte(name)); len(v) == 8 {
		n = decodeU64(v) + 1
	}
	return n, b.Put([]byte(name), u64(n))
}

// Firmware implements ota.Tx.
func (t *tx) Firmware(id string) (f *ota.Firmware, err error) {
	defer t.guard(&err)
	k, ok := idKey(ota.FirmwarePrefix, id)
	if !ok {
		return nil, nil
	}
	return get[ota.Firmware](t, bucketFirmware, k)
}

// FirmwareByVersion implements ota.Tx.
func (t *tx) FirmwareByVersion(productKey, version string) (f *ota.Firmware, err error) {
	defer t.guard(&err)
	if hasSep(productKey, version) {
		return nil, nil
	}
	k := t.bucket(bucketFwVersion).Get(versionKey(productKey, version))
	if k == nil {
		return nil, nil
	}
	return get[ota.Firmware](t, bucketFirmware, k)
}

// EachFirmware implements ota.Tx.
func (t *tx) EachFirmware(fn func(*ota.Firmware) error) error {
	return each(t, bucketFirmware, nil, fn)
}

// PutFirmware implements ota.Tx. It refuses a second firmware with the
// same product and version, because the version index can hold only one.
func (t *tx) PutFirmware(f *ota.Firmware) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	k, err := putKey(ota.FirmwarePrefix, f.ID)
	if err != nil {
		return err
	}
	if hasSep(f.ProductKey, f.Version) {
		return sepError("firmware product key or version")
	}
	idx := t.bucket(bucketFwVersion)
	vk := versionKey(f.ProductKey, f.Version)
	if other := idx.Get(vk); other != nil && !bytes.Equal(other, k) {
		return ota.Refused("store: product %s already has firmware %s with version %q",
			f.ProductKey, ota.FormatID(ota.FirmwarePrefix, decodeU64(other)), f.Version)
	}
	if err := t.dropFirmwareIndex(k); err != nil {
		return err
	}
	if err := put(t, bucketFirmware, k, f); err != nil {
		return err
	}
	return idx.Put(vk, k)
}

// dropFirmwareIndex removes the version index entry of the firmware stored
// under k, if there is one.
func (t *tx) dropFirmwareIndex(k []byte) error {
	old, err := get[ota.Firmware](t, bucketFirmware, k)
	if old == nil || err != nil {
		return err
	}
	idx := t.bucket(bucketFwVersion)
	vk := versionKey(old.ProductKey, old.Version)
	if bytes.Equal(idx.Get(vk), k) {
		return idx.Delete(vk)
	}
	return nil
}

// DeleteFirmware implements ota.Tx.
func (t *tx) DeleteFirmware(id string) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	k, ok := idKey(ota.FirmwarePrefix, id)
	if !ok {
		return nil
	}
	if err := t.dropFirmwareIndex(k); err != nil {
		return err
	}
	return t.bucket(bucketFirmware).Delete(k)
}

// Device implements ota.Tx.
func (t *tx) Device(productKey, deviceKey string) (d *ota.Device, err error) {
	defer t.guard(&err)
	if hasSep(productKey, deviceKey) {
		return nil, nil
	}
	return get[ota.Device](t, bucketDevice, devKey(productKey, deviceKey))
}

// PutDevice implements ota.Tx.
func (t *tx) PutDevice(d *ota.Device) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	if d.ProductKey == "" || d.DeviceKey == "" {
		return ota.Invalid("store: device with an empty product or device key")
	}
	if hasSep(d.ProductKey, d.DeviceKey) {
		return sepError("product or device key")
	}
	return put(t, bucketDevice, devKey(d.ProductKey, d.DeviceKey), d)
}

// EachDevice implements ota.Tx. The bucket is ordered by product key, the
// separator, then device key, so a prefix walk gives the contract's order
// while holding one record at a time.
func (t *tx) EachDevice(productKey string, fn func(*ota.Device) error) error {
	if hasSep(productKey) {
		return nil
	}
	var prefix []byte
	if productKey != "" {
		prefix = join(productKey, nil)
	}
	return each(t, bucketDevice, prefix, fn)
}

// Round implements ota.Tx.
func (t *tx) Round(id string) (r *ota.Round, err error) {
	defer t.guard(&err)
	k, ok := idKey(ota.RoundPrefix, id)
	if !ok {
		return nil, nil
	}
	return get[ota.Round](t, bucketRound, k)
}

// PutRound implements ota.Tx.
func (t *tx) PutRound(r *ota.Round) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	k, err := putKey(ota.RoundPrefix, r.ID)
	if err != nil {
		return err
	}
	if hasSep(r.FirmwareID) {
		return sepError("round firmware ID")
	}
	old, err := get[ota.Round](t, bucketRound, k)
	if err != nil {
		return err
	}
	idx := t.bucket(bucketRoundFw)
	if old != nil {
		if err := idx.Delete(join(old.FirmwareID, k)); err != nil {
			return err
		}
	}
	if err := put(t, bucketRound, k, r); err != nil {
		return err
	}
	return idx.Put(join(r.FirmwareID, k), nil)
}

// EachRound implements ota.Tx, walking the round-by-firmware index so that
// a firmware's few rounds are found without reading everyone else's.
func (t *tx) EachRound(firmwareID string, fn func(*ota.Round) error) error {
	if hasSep(firmwareID) {
		return nil
	}
	return t.eachIndexed(bucketRoundFw, join(firmwareID, nil), func(k []byte) error {
		r, err := get[ota.Round](t, bucketRound, k)
		if err != nil {
			return err
		}
		if r == nil {
			return t.corrupt("round index names missing round %d", decodeU64(k))
		}
		return fn(r)
	})
}

// Job implements ota.Tx.
func (t *tx) Job(id string) (j *ota.Job, err error) {
	defer t.guard(&err)
	k, ok := idKey(ota.JobPrefix, id)
	if !ok {
		return nil, nil
	}
	return get[ota.Job](t, bucketJob, k)
}

// PutJob implements ota.Tx.
func (t *tx) PutJob(j *ota.Job) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	k, err := putKey(ota.JobPrefix, j.ID)
	if err != nil {
		return err
	}
	return put(t, bucketJob, k, j)
}

// EachJob implements ota.Tx.
func (t *tx) EachJob(fn func(*ota.Job) error) error {
	return each(t, bucketJob, nil, fn)
}

// PutPush implements ota.Tx.
func (t *tx) PutPush(p *ota.Push) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	k, err := putKey(ota.PushPrefix, p.ID)
	if err != nil {
		return err
	}
	return put(t, bucketPush, k, p)
}

// DeletePush implements ota.Tx.
func (t *tx) DeletePush(id string) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	k, ok := idKey(ota.PushPrefix, id)
	if !ok {
		return nil
	}
	return t.bucket(bucketPush).Delete(k)
}

// EachPush implements ota.Tx.
func (t *tx) EachPush(fn func(*ota.Push) error) error {
	return each(t, bucketPush, nil, fn)
}

// Task implements ota.Tx.
func (t *tx) Task(id string) (_ *ota.Task, err error) {
	defer t.guard(&err)
	k, ok := idKey(ota.TaskPrefix, id)
	if !ok {
		return nil, nil
	}
	return get[ota.Task](t, bucketTask, k)
}

// PutTask implements ota.Tx.
func (t *tx) PutTask(task *ota.Task) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	k, err := putKey(ota.TaskPrefix, task.ID)
	if err != nil {
		return err
	}
	return put(t, bucketTask, k, task)
}

// EachTask implements ota.Tx.
func (t *tx) EachTask(fn func(*ota.Task) error) error {
	return each(t, bucketTask, nil, fn)
}

// Lease implements ota.Tx.
func (t *tx) Lease() (*ota.Lease, error) {
	return get[ota.Lease](t, bucketLease, keyLease)
}

// PutLease implements ota.Tx. A nil lease is refused: it would be stored
// as JSON null and read back as an empty lease, not as none.
func (t *tx) PutLease(l *ota.Lease) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	if l == nil {
		return ota.Errorf(ota.KindInternal, "store: nil lease; use DeleteLease")
	}
	return put(t, bucketLease, keyLease, l)
}

// DeleteLease implements ota.Tx.
func (t *tx) DeleteLease() (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	return t.bucket(bucketLease).Delete(keyLease)
}

// AppendEvent implements ota.Tx. The history bucket's own sequence numbers
// the events, so they are keyed in time order and appended cheaply.
func (t *tx) AppendEvent(e *ota.Event) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	if hasSep(e.Subject) {
		return sepError("event subject")
	}
	seq, err := t.bucket(bucketHistory).NextSequence()
	if err != nil {
		return err
	}
	k := u64(seq)
	rec := *e
	rec.Seq = seq
	if err := put(t, bucketHistory, k, &rec); err != nil {
		return err
	}
	if err := t.bucket(bucketHistorySub).Put(join(e.Subject, k), nil); err != nil {
		return err
	}
	e.Seq = seq
	return nil
}

// EachEvent implements ota.Tx.
func (t *tx) EachEvent(subject string, fn func(*ota.Event) error) error {
	switch {
	case hasSep(subject):
		return nil
	case subject == "":
		return each(t, bucketHistory, nil, fn)
	case subject[len(subject)-1] == '/':
		return t.eachEventPrefix(subject, fn)
	}
	return t.eachIndexed(bucketHistorySub, join(subject, nil), func(k []byte) error {
		return t.visitEvent(k, fn)
	})
}

// eachEventPrefix visits the events of every subject starting with prefix.
// The index groups them by subject, so their sequence numbers are gathered
// and sorted first: 8 bytes per match, to keep the contract's time order.
func (t *tx) eachEventPrefix(prefix string, fn func(*ota.Event) error) error {
	var seqs []uint64
	err := walk(t, bucketHistorySub, []byte(prefix), func(k, _ []byte) error {
		if len(k) < 9 {
			return t.corrupt("index key %q has no sequence number", k)
		}
		seqs = append(seqs, decodeU64(k[len(k)-8:]))
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(seqs)
	t.iterating++
	defer func() { t.iterating-- }()
	for _, s := range seqs {
		if err := t.visitEvent(u64(s), fn); err != nil {
			return err
		}
	}
	return nil
}

// visitEvent reads the event keyed k and passes it to fn.
func (t *tx) visitEvent(k []byte, fn func(*ota.Event) error) error {
	e, err := get[ota.Event](t, bucketHistory, k)
	if err != nil {
		return err
	}
	if e == nil {
		return t.corrupt("history index names missing event %d", decodeU64(k))
	}
	return fn(e)
}

// eachIndexed calls fn with the trailing sequence key of every entry of
// the index bucket under prefix, in key order.
func (t *tx) eachIndexed(index, prefix []byte, fn func(k []byte) error) error {
	return walk(t, index, prefix, func(k, _ []byte) error {
		if len(k) != len(prefix)+8 {
			return t.corrupt("index key %q has no sequence number", k)
		}
		return fn(k[len(prefix):])
	})
}
