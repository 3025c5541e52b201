package ota

// Store is the persistence otactl needs: one consistent snapshot per View,
// one atomic write per Update. Implementations: state.Store (bbolt) and the
// in-memory fake of package otatest; storetest checks both against the same
// contract.
//
// A Store is safe for concurrent use by several goroutines of one process.
// Update calls are serialised. No transaction may be opened inside another:
// fn must not call View or Update on the same Store.
type Store interface {
	// View runs fn with a read-only transaction. Tx write methods return an
	// error inside View.
	View(fn func(Tx) error) error
	// Update runs fn in a write transaction, committed when fn returns nil
	// and rolled back, leaving no trace, when it returns an error (which
	// Update returns unchanged).
	Update(fn func(Tx) error) error
}

// Tx is one transaction. Records passed to Put methods are copied: the
// caller may change them afterwards. Records returned by getters belong to
// the caller. Getters return (nil, nil) when the record does not exist.
// Each* methods stop at, and return, the first error fn returns; fn must not
// write to the transaction while iterating.
type Tx interface {
	// NextSeq returns the next value, from 1, of the named sequence
	// ("firmware", "job", "round", ...). Values are never reused, even when
	// the records made with them are deleted.
	NextSeq(name string) (uint64, error)

	Firmware(id string) (*Firmware, error)
	// FirmwareByVersion finds a product's firmware by exact version text.
	FirmwareByVersion(productKey, version string) (*Firmware, error)
	// EachFirmware visits every firmware, in ID creation order.
	EachFirmware(fn func(*Firmware) error) error
	PutFirmware(f *Firmware) error
	// DeleteFirmware removes the firmware; deleting a missing one is no error.
	DeleteFirmware(id string) error

	Device(productKey, deviceKey string) (*Device, error)
	PutDevice(d *Device) error
	// EachDevice visits the product's devices ordered by device key (bytes),
	// all products ordered by product key when productKey is "". It must not
	// hold every device in memory at once.
	EachDevice(productKey string, fn func(*Device) error) error

	Round(id string) (*Round, error)
	PutRound(r *Round) error
	// EachRound visits a firmware's rounds in creation order.
	EachRound(firmwareID string, fn func(*Round) error) error

	Job(id string) (*Job, error)
	PutJob(j *Job) error
	// EachJob visits every job in creation order.
	EachJob(fn func(*Job) error) error

	// PutPush adds or replaces an outbox entry.
	PutPush(p *Push) error
	// DeletePush removes an outbox entry; deleting a missing one is no error.
	DeletePush(id string) error
	// EachPush visits the outbox in creation order.
	EachPush(fn func(*Push) error) error

	Task(id string) (*Task, error)
	PutTask(t *Task) error
	// EachTask visits every task in creation order.
	EachTask(fn func(*Task) error) error

	// Sets are named, ordered sets of strings: indexes that ota keeps for
	// itself, such as a task's queue of jobs waiting to be pushed. Members
	// are ordered by their bytes; ota formats them so that byte order is
	// the order it needs. Set names and members are non-empty and contain
	// no NUL byte.

	// SetAdd adds member to set; adding a member twice is no error.
	SetAdd(set, member string) error
	// SetRemove removes member from set; removing a missing one is no error.
	SetRemove(set, member string) error
	// SetEach visits the members of set greater than after ("" for all), in
	// order. Writes are refused while it runs, so a caller that drains a set
	// reads a batch, stops, writes, and resumes after the last member seen.
	SetEach(set, after string, fn func(member string) error) error
	// SetHas reports whether member is in set. A name or member that SetAdd
	// refuses is in no set.
	SetHas(set, member string) (bool, error)

	// Lease returns the agent's lease, nil when none is recorded.
	Lease() (*Lease, error)
	// PutLease records the agent's lease, replacing any other; nil is refused.
	PutLease(l *Lease) error
	// DeleteLease removes the lease; deleting a missing one is no error.
	DeleteLease() error

	// AppendEvent adds e to the history, setting e.Seq to a value greater
	// than every earlier event's.
	AppendEvent(e *Event) error
	// EachEvent visits the subject's events in order; every event when
	// subject is "". A subject ending in "/" matches every subject with that
	// prefix.
	EachEvent(subject string, fn func(*Event) error) error
}
