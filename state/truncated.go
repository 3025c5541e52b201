package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
)

// A bbolt file maps its pages into memory; a file cut short (a full disk, a
// broken copy) makes reads of the missing pages fault, which no recover can
// catch. checkLength reads the file's two meta pages first and refuses a
// file shorter than the pages they say it holds.
//
// The offsets follow bbolt's on-disk meta page: a 16-byte page header, then
// magic, version, page size, flags (4 bytes each), the root bucket (16),
// the free list page (8), the page high-water mark (8), the transaction id
// (8) and a checksum of everything before it (8), in the machine's byte
// order (little-endian on every platform otactl is built for).
const (
	pageHeader   = 16
	metaMagic    = 0xED0CDAED
	offPageSize  = pageHeader + 8
	offPgid      = pageHeader + 40
	offTxid      = pageHeader + 48
	offChecksum  = pageHeader + 56
	metaReadSize = offChecksum + 8
)

var errTruncated = errors.New("the file is shorter than its own pages: it was cut short")

func checkLength(f *os.File, size int64) error {
	first, ok := readMeta(f, 0)
	pageSize := int64(os.Getpagesize())
	if ok {
		pageSize = int64(first.pageSize)
	}
	second, ok2 := readMeta(f, pageSize)
	var best *meta
	for _, m := range []*meta{first, second} {
		if m != nil && (best == nil || m.txid > best.txid) {
			best = m
		}
	}
	if !ok && !ok2 || best == nil {
		return nil // not a bbolt file: bbolt's own checks say so
	}
	if need := int64(best.pgid) * int64(best.pageSize); size < need {
		return fmt.Errorf("%w (%d bytes, its pages need %d)", errTruncated, size, need)
	}
	return nil
}

type meta struct {
	pageSize   uint32
	pgid, txid uint64
}

// readMeta reads the meta page at off; ok is false when it is not a valid
// one (wrong magic or checksum, or beyond the end of the file).
func readMeta(f *os.File, off int64) (*meta, bool) {
	buf := make([]byte, metaReadSize)
	if _, err := f.ReadAt(buf, off); err != nil {
		return nil, false
	}
	le := binary.LittleEndian
	if le.Uint32(buf[pageHeader:]) != metaMagic {
		return nil, false
	}
	h := fnv.New64a()
	h.Write(buf[pageHeader:offChecksum])
	if h.Sum64() != le.Uint64(buf[offChecksum:]) {
		return nil, false
	}
	m := &meta{pageSize: le.Uint32(buf[offPageSize:]), pgid: le.Uint64(buf[offPgid:]),
		txid: le.Uint64(buf[offTxid:])}
	if m.pageSize < 512 {
		return nil, false
	}
	return m, true
}
