package state

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/otactl/otactl/ota"
)

// get decodes the record stored under k, or returns nil when there is none.
// Decoding into a fresh value is what hands the caller its own copy.
func get[T any](t *tx, bucket []byte, k []byte) (_ *T, err error) {
	defer t.guard(&err)
	v := t.bucket(bucket).Get(k)
	if v == nil {
		return nil, nil
	}
	rec := new(T)
	if err := decodeRecord(v, rec); err != nil {
		return nil, t.corrupt("record %x in bucket %s: %v", k, bucket, err)
	}
	return rec, nil
}

// put stores rec under k. Encoding is what copies the caller's record.
func put(t *tx, bucket, k []byte, rec any) error {
	v, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	return t.bucket(bucket).Put(k, v)
}

// each decodes and visits every record of the bucket whose key starts with prefix.
func each[T any](t *tx, bucket, prefix []byte, fn func(*T) error) error {
	return walk(t, bucket, prefix, func(k, v []byte) error {
		rec := new(T)
		if err := decodeRecord(v, rec); err != nil {
			return t.corrupt("record %x in bucket %s: %v", k, bucket, err)
		}
		return fn(rec)
	})
}

// walk visits the keys of the bucket that start with prefix, in order, marking the
// transaction as iterating so that writes from fn are refused.
func walk(t *tx, bucket, prefix []byte, fn func(k, v []byte) error) error {
	return walkFrom(t, bucket, prefix, prefix, fn)
}

// walkFrom is walk beginning at the first key not before start, which a
// cursor finds in O(log n) without reading the keys before it.
func walkFrom(t *tx, bucket, prefix, start []byte, fn func(k, v []byte) error) error {
	t.iterating++
	defer func() { t.iterating-- }()
	c := t.bucket(bucket).Cursor()
	k, v, err := t.move(func() ([]byte, []byte) { return c.Seek(start) })
	for ; err == nil && k != nil && bytes.HasPrefix(k, prefix); k, v, err = t.move(c.Next) {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return err
}

// move runs one cursor step under guard. Only the step is guarded: a
// panic in fn is the caller's and must stay one.
func (t *tx) move(step func() ([]byte, []byte)) (k, v []byte, err error) {
	defer t.guard(&err)
	k, v = step()
	return k, v, nil
}

// guard turns a panic of bbolt's into an error naming the file. bbolt
// trusts the pages it reads and panics on one that a disk fault or another
// program damaged; otactl must report that, not crash. Every Tx method that
// calls bbolt defers it, except around callbacks to the caller.
func (t *tx) guard(err *error) {
	if r := recover(); r != nil {
		*err = t.corrupt("%v", r)
	}
}

// decodeU64 reads a big-endian sequence number.
func decodeU64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// corrupt reports a record or index entry that cannot be what this package
// wrote: the file was damaged or edited by something else.
func (t *tx) corrupt(format string, args ...any) error {
	return ota.Errorf(ota.KindState, "state file %s is damaged: %s",
		t.path, fmt.Sprintf(format, args...)).
		WithHint("run otactl state check, and restore a backup if it reports problems")
}
