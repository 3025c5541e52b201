// Package otatest provides an in-memory ota.Store for unit tests of the
// ota package and of the commands built on it.
//
// The fake keeps the promises of the ota.Store contract, checked by the same
// storetest suite as the bbolt store: Update is atomic, a View sees one
// snapshot, records are copied in and out, iteration is in creation order.
// It is map-based and copies its maps on every Update, which is fine for
// tests and nothing else. Sets are the exception: a task's queue may hold
// 100,000 members, so they are persistent trees, shared between versions.
package otatest

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"

	"github.com/otactl/otactl/ota"
)

// Store is an in-memory ota.Store. The zero value is not usable; call New.
type Store struct {
	write sync.Mutex // serialises Updates
	mu    sync.Mutex // guards cur
	cur   *data
}

var _ ota.Store = (*Store)(nil)

// New returns an empty Store.
func New() *Store { return &Store{cur: newData()} }

// View implements ota.Store. fn reads the snapshot that was current when
// View began; Updates committed meanwhile are not visible to it.
func (s *Store) View(fn func(ota.Tx) error) error {
	s.mu.Lock()
	d := s.cur
	s.mu.Unlock()
	return fn(&tx{d: d})
}

// Update implements ota.Store. fn works on a copy of the current data,
// which replaces it only when fn returns nil: a failed fn leaves no trace.
func (s *Store) Update(fn func(ota.Tx) error) error {
	s.write.Lock()
	defer s.write.Unlock()
	s.mu.Lock()
	d := s.cur.clone()
	s.mu.Unlock()
	if err := fn(&tx{d: d, writable: true}); err != nil {
		return err
	}
	s.mu.Lock()
	s.cur = d
	s.mu.Unlock()
	return nil
}

// data is one version of the store's contents. Values are JSON and never
// changed in place, so a clone need only copy the maps, not the records.
type data struct {
	seqs     map[string]uint64
	firmware map[uint64][]byte
	devices  map[string][]byte // productKey NUL deviceKey, as state sorts them
	rounds   map[uint64][]byte
	jobs     map[uint64][]byte
	pushes   map[uint64][]byte
	events   [][]byte // in Seq order; Seq i+1 is at index i
	tasks    map[uint64][]byte
	sets     map[string]*node // set name -> root; no entry for an empty set
	lease    []byte           // nil when there is none
}

func newData() *data {
	return &data{
		seqs:     map[string]uint64{},
		firmware: map[uint64][]byte{},
		devices:  map[string][]byte{},
		rounds:   map[uint64][]byte{},
		jobs:     map[uint64][]byte{},
		pushes:   map[uint64][]byte{},
		tasks:    map[uint64][]byte{},
		sets:     map[string]*node{},
	}
}

func (d *data) clone() *data {
	return &data{
		seqs:     maps.Clone(d.seqs),
		firmware: maps.Clone(d.firmware),
		devices:  maps.Clone(d.devices),
		rounds:   maps.Clone(d.rounds),
		jobs:     maps.Clone(d.jobs),
		pushes:   maps.Clone(d.pushes),
		// The three-index slice makes the next append copy, so an Update
		// never writes into the array that older snapshots share.
		events: d.events[:len(d.events):len(d.events)],
		tasks:  maps.Clone(d.tasks),
		sets:   maps.Clone(d.sets), // the trees themselves are never changed
		lease:  d.lease,
	}
}

// encode copies a record in; decode copies one out.
func encode(rec any) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("otatest: encode record: %w", err)
	}
	return b, nil
}

func decode[T any](b []byte) (*T, error) {
	if b == nil {
		return nil, nil
	}
	rec := new(T)
	if err := json.Unmarshal(b, rec); err != nil {
		return nil, fmt.Errorf("otatest: decode record: %w", err)
	}
	return rec, nil
}
