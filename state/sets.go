package state

import (
	"bytes"

	"github.com/otactl/otactl/ota"
)

// Sets live in one bucket, keyed by setKey, with empty values. A member is
// one B+tree key, so adding and removing cost O(log n) whatever the set's
// size, and SetEach seeks to its start instead of reading the members
// before it: a task's queue of 100,000 jobs is drained in batches, each
// walk resuming after the last member the previous one saw.

// checkSet refuses what the contract rules out for set names and members.
// They are formatted by ota, never typed by a user, so an empty one is a
// bug in the caller; a NUL byte is refused as in every other key.
func checkSet(set, member string) error {
	switch {
	case set == "" || member == "":
		return ota.Errorf(ota.KindInternal, "store: empty set name or member (%q, %q)",
			set, member)
	case hasSep(set, member):
		return sepError("set name or member")
	}
	return nil
}

// SetAdd implements ota.Tx.
func (t *tx) SetAdd(set, member string) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	if err := checkSet(set, member); err != nil {
		return err
	}
	// A member added again is written again, unchanged: a lookup first
	// would cost every add a second search of the bucket.
	return t.bucket(bucketSet).Put(setKey(set, member), nil)
}

// SetRemove implements ota.Tx.
func (t *tx) SetRemove(set, member string) (err error) {
	defer t.guard(&err)
	if err := t.writable(); err != nil {
		return err
	}
	if err := checkSet(set, member); err != nil {
		return err
	}
	return t.bucket(bucketSet).Delete(setKey(set, member))
}

// SetHas implements ota.Tx. Members are stored with empty values, so the
// key itself is looked for rather than a value.
func (t *tx) SetHas(set, member string) (ok bool, err error) {
	defer t.guard(&err)
	if checkSet(set, member) != nil {
		return false, nil
	}
	k := setKey(set, member)
	found, _ := t.bucket(bucketSet).Cursor().Seek(k)
	return bytes.Equal(found, k), nil
}

// SetEach implements ota.Tx. A set name that SetAdd refuses names a set
// that cannot have members, so it visits nothing, as EachDevice does for a
// product key with a NUL byte. after may hold any bytes: members compare
// with it as the keys that hold them compare with setKey(set, after).
func (t *tx) SetEach(set, after string, fn func(member string) error) error {
	if set == "" || hasSep(set) {
		return nil
	}
	prefix := join(set, nil)
	start := setKey(set, after)
	return walkFrom(t, bucketSet, prefix, start, func(k, _ []byte) error {
		m := k[len(prefix):]
		switch {
		case len(m) == 0:
			return t.corrupt("set %q has an empty member", set)
		case string(m) == after:
			return nil // the cursor landed on after itself
		}
		return fn(string(m))
	})
}
