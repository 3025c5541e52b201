package state

import (
	"encoding/binary"
	"strings"

	"github.com/otactl/otactl/ota"
)

// Bucket names. They are private to this package: nothing outside state
// may depend on the file's layout.
var (
	bucketMeta       = []byte("meta")
	bucketSeq        = []byte("seq")
	bucketFirmware   = []byte("firmware")
	bucketFwVersion  = []byte("firmware-by-version") // productKey 0 version -> seq
	bucketDevice     = []byte("device")              // productKey 0 deviceKey -> record
	bucketRound      = []byte("round")
	bucketRoundFw    = []byte("round-by-firmware") // firmwareID 0 seq -> empty
	bucketJob        = []byte("job")
	bucketPush       = []byte("push")
	bucketHistory    = []byte("history")
	bucketHistorySub = []byte("history-by-subject") // subject 0 seq -> empty
	bucketTask       = []byte("task")
	bucketSet        = []byte("set")   // set name 0 member -> empty
	bucketLease      = []byte("lease") // keyLease -> the agent's lease
)

// keyLease is the only key of the lease bucket: there is one lease at most.
var keyLease = []byte("lease")

// recordBuckets are the buckets of the current schema; Open refuses a file
// that claims the current version but lacks one of them.
var recordBuckets = [][]byte{
	bucketSeq, bucketFirmware, bucketFwVersion, bucketDevice, bucketRound,
	bucketRoundFw, bucketJob, bucketPush, bucketHistory, bucketHistorySub,
	bucketTask, bucketSet, bucketLease,
}

// sep joins the parts of composite keys. Keys, versions and subjects never
// contain it (the Put methods refuse them), and it sorts before every other
// byte, so "pk" and its devices come before "pk2" and its devices.
const sep = 0

// u64 encodes n big-endian, so that byte order is numeric order.
func u64(n uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), n)
}

// idKey returns the key of a record ID made by ota.FormatID with the given
// prefix, and false for any other text.
func idKey(prefix, id string) ([]byte, bool) {
	p, seq, ok := ota.ParseID(id)
	if !ok || p != prefix {
		return nil, false
	}
	return u64(seq), true
}

// putKey is idKey for the Put methods, where a malformed ID is a bug in
// the caller rather than a record that does not exist.
func putKey(prefix, id string) ([]byte, error) {
	k, ok := idKey(prefix, id)
	if !ok {
		return nil, ota.Errorf(ota.KindInternal,
			"store: record ID %q is not of the form %s-N", id, prefix)
	}
	return k, nil
}

// join builds a composite key: s, the separator, then tail.
func join(s string, tail []byte) []byte {
	k := make([]byte, 0, len(s)+1+len(tail))
	k = append(k, s...)
	k = append(k, sep)
	return append(k, tail...)
}

// devKey is the key of a device record.
func devKey(pk, dk string) []byte { return join(pk, []byte(dk)) }

// versionKey is the key of a firmware-by-version index entry.
func versionKey(pk, version string) []byte { return join(pk, []byte(version)) }

// setKey is the key of a set member. Neither part contains the separator,
// so a set's members are one run of keys in member byte order, which no
// other set's keys enter, even when one set's name starts with another's.
func setKey(set, member string) []byte { return join(set, []byte(member)) }

// hasSep reports whether any of the strings would break a composite key.
func hasSep(ss ...string) bool {
	for _, s := range ss {
		if strings.IndexByte(s, sep) >= 0 {
			return true
		}
	}
	return false
}

// sepError is the error of a Put whose text would break a composite key.
func sepError(what string) error {
	return ota.Invalid("store: %s contains a NUL byte", what)
}
