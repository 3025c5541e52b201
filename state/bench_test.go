package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

// The sizes DESIGN.md section 10 measured bbolt with: commits of a
// thousand records, a hundred thousand in all.
const (
	benchRecords = 100_000
	benchBatch   = 1_000
)

// benchDevices returns devices of four products with keys in random
// order, as version reports from a fleet arrive.
func benchDevices() []*ota.Device {
	r := rand.New(rand.NewPCG(1, 2))
	devs := make([]*ota.Device, benchRecords)
	for i := range devs {
		devs[i] = &ota.Device{
			ProductKey: fmt.Sprintf("product-%d", i%4),
			DeviceKey:  fmt.Sprintf("sensor-%016x", r.Uint64()),
			Version:    "1.2.0",
			FirstSeen:  time.Unix(1_800_000_000, 0).UTC(),
			LastSeen:   time.Unix(1_800_000_000, 0).UTC(),
			Recent:     []uint64{r.Uint64(), r.Uint64()},
		}
	}
	return devs
}

// benchEvents returns history entries about a thousand jobs in turn, so
// that the subject index is written out of order while history is not.
func benchEvents() []*ota.Event {
	evs := make([]*ota.Event, benchRecords)
	for i := range evs {
		evs[i] = &ota.Event{
			Time:    time.Unix(1_800_000_000+int64(i), 0).UTC(),
			Subject: ota.JobSubject(ota.FormatID(ota.JobPrefix, uint64(i%1000+1))),
			Action:  "progress",
			Detail:  "step 42: downloading",
			Topic:   "/sys/product-1/sensor-1/ota/device/progress",
			Payload: `{"id":"1","version":"1.0","params":{"step":"42","desc":"downloading"}}`,
		}
	}
	return evs
}

// benchWrite writes recs into a new store in transactions of benchBatch
// and reports records per second of the writing alone.
func benchWrite[T any](b *testing.B, recs []T, put func(ota.Tx, T) error) {
	var took time.Duration
	for range b.N {
		b.StopTimer()
		s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{Create: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		fill(b, s, recs, put)
		took += time.Since(start)
		b.StopTimer()
		_ = s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(recs)*b.N)/took.Seconds(), "records/s")
}

// fill writes recs in transactions of benchBatch records. One transaction
// for everything would be far slower, not faster: with random keys, 100,000
// devices in one Update took 24 s against 1.3 s in batches of 1,000,
// because bbolt keeps a transaction's changed nodes as sorted slices in
// memory and every insert shifts them.
func fill[T any](b *testing.B, s *Store, recs []T, put func(ota.Tx, T) error) {
	for i := 0; i < len(recs); i += benchBatch {
		err := s.Update(func(tx ota.Tx) error {
			for _, r := range recs[i:min(i+benchBatch, len(recs))] {
				if err := put(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPutDevices(b *testing.B) {
	benchWrite(b, benchDevices(), func(tx ota.Tx, d *ota.Device) error {
		return tx.PutDevice(d)
	})
}

func BenchmarkAppendEvents(b *testing.B) {
	benchWrite(b, benchEvents(), func(tx ota.Tx, e *ota.Event) error {
		return tx.AppendEvent(e)
	})
}

// BenchmarkEachDevice reads back every device of a file of benchRecords,
// the shape of "device list" on a large fleet (with the file cached).
func BenchmarkEachDevice(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{Create: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	devs := benchDevices()
	fill(b, s, devs, func(tx ota.Tx, d *ota.Device) error { return tx.PutDevice(d) })
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		n := 0
		err := s.View(func(tx ota.Tx) error {
			return tx.EachDevice("", func(*ota.Device) error { n++; return nil })
		})
		if err != nil || n != len(devs) {
			b.Fatalf("EachDevice: %d devices, %v", n, err)
		}
	}
	b.ReportMetric(float64(len(devs)*b.N)/time.Since(start).Seconds(), "records/s")
}

// benchMembers returns the members of a task's queue of n jobs, formatted
// so that byte order is creation order, as ota formats them.
func benchMembers(n int) []string {
	ms := make([]string, n)
	for i := range ms {
		ms[i] = fmt.Sprintf("job-%010d", i+1)
	}
	return ms
}

func BenchmarkSetAdd(b *testing.B) {
	benchWrite(b, benchMembers(benchRecords), func(tx ota.Tx, m string) error {
		return tx.SetAdd("task-1/queue", m)
	})
}

// BenchmarkSetEachFrom walks 100 members from a random point of queues of
// a thousand and of a hundred thousand: a walk that seeks costs about the
// same in both, one that scanned from the start would cost a hundred
// times more in the larger.
func BenchmarkSetEachFrom(b *testing.B) {
	for _, n := range []int{1_000, benchRecords} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{Create: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ms := benchMembers(n)
			fill(b, s, ms, func(tx ota.Tx, m string) error {
				return tx.SetAdd("task-1/queue", m)
			})
			r := rand.New(rand.NewPCG(5, 6))
			b.ResetTimer()
			for range b.N {
				seen := 0
				err := s.View(func(tx ota.Tx) error {
					after := ms[r.IntN(n-100)]
					return tx.SetEach("task-1/queue", after, func(string) error {
						if seen++; seen == 100 {
							return errBenchStop
						}
						return nil
					})
				})
				if err != errBenchStop {
					b.Fatalf("SetEach: %d members, %v", seen, err)
				}
			}
		})
	}
}

// BenchmarkSetDrain empties a queue of benchRecords as a task does: a
// transaction per batch of benchBatch members, each walk resuming after
// the last member removed.
func BenchmarkSetDrain(b *testing.B) {
	ms := benchMembers(benchRecords)
	var took time.Duration
	for range b.N {
		b.StopTimer()
		s, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{Create: true})
		if err != nil {
			b.Fatal(err)
		}
		fill(b, s, ms, func(tx ota.Tx, m string) error { return tx.SetAdd("task-1/queue", m) })
		b.StartTimer()
		start := time.Now()
		drain(b, s, "task-1/queue")
		took += time.Since(start)
		b.StopTimer()
		_ = s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(len(ms)*b.N)/took.Seconds(), "members/s")
}

// errBenchStop ends a benchmark's walk early.
var errBenchStop = errors.New("stop")

// drain removes every member of set, benchBatch per transaction.
func drain(b *testing.B, s *Store, set string) {
	for after := ""; ; {
		var batch []string
		err := s.Update(func(tx ota.Tx) error {
			err := tx.SetEach(set, after, func(m string) error {
				if batch = append(batch, m); len(batch) == benchBatch {
					return errBenchStop
				}
				return nil
			})
			if err != nil && err != errBenchStop {
				return err
			}
			for _, m := range batch {
				if err := tx.SetRemove(set, m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if len(batch) == 0 {
			return
		}
		after = batch[len(batch)-1]
	}
}
