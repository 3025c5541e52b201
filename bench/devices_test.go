package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
)

// listProduct is the product whose devices the read benchmarks walk; a
// second, smaller product shares the file so that the walk has to stop at
// the product's end.
const (
	listProduct  = "bench-fleet"
	otherProduct = "bench-other"
	otherDevices = 1_000
	heapSampling = 5_000 // devices between two samples of the heap
)

// BenchmarkFleetRead walks a product of 10,000 and of 100,000 devices the
// way "device list" and "versions" do, in a read-only transaction of a
// state file opened read-only. It reports the heap the walk keeps live
// (sampled after a forced collection every 5,000 devices, less the heap
// before the walk) and the walk's rate without the sampling. Flat means the
// same live heap for both sizes: the walk holds one device at a time. The
// collect case keeps every device, as a walk that loaded the product
// would; it shows what growth looks like. Run:
//
//	go test ./bench -run '^$' -bench FleetRead -benchtime 3x
func BenchmarkFleetRead(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		path := seedDevices(b, n)
		st, err := state.Open(path, state.Options{ReadOnly: true})
		if err != nil {
			b.Fatalf("state.Open(%s, read-only) = %v", path, err)
		}
		b.Run(fmt.Sprintf("list/devices=%d", n), func(b *testing.B) {
			walkFleetHeap(b, st, n, listDevices)
		})
		b.Run(fmt.Sprintf("versions/devices=%d", n), func(b *testing.B) {
			walkFleetHeap(b, st, n, countVersions)
		})
		b.Run(fmt.Sprintf("collect/devices=%d", n), func(b *testing.B) {
			walkFleetHeap(b, st, n, collectDevices)
		})
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// fleetWalker walks the list product's devices in tx, calling sample after each
// device it visits, and returns how many it visited.
type fleetWalker func(tx ota.Tx, sample func()) (int, error)

// listDevices prints what "device list" prints when piped, to io.Discard.
func listDevices(tx ota.Tx, sample func()) (int, error) {
	n := 0
	err := tx.EachDevice(listProduct, func(d *ota.Device) error {
		n++
		row := []string{d.ProductKey, d.DeviceKey, d.Version,
			d.LastSeen.Format(time.RFC3339), d.ActiveJob}
		_, err := fmt.Fprintln(io.Discard, strings.Join(row, "\t"))
		sample()
		return err
	})
	return n, err
}

// countVersions is "versions": ota.ReportedVersions, whose walk is sampled
// through a Tx that wraps the real one.
func countVersions(tx ota.Tx, sample func()) (int, error) {
	counts, err := ota.ReportedVersions(sampledFleetTx{tx, sample}, listProduct)
	n := 0
	for _, c := range counts {
		n += c.Devices
	}
	return n, err
}

// collectDevices keeps every device it visits: the control case.
func collectDevices(tx ota.Tx, sample func()) (int, error) {
	var all []*ota.Device
	err := tx.EachDevice(listProduct, func(d *ota.Device) error {
		all = append(all, d)
		sample()
		return nil
	})
	runtime.KeepAlive(all)
	return len(all), err
}

// sampledFleetTx calls sample after each device EachDevice hands on.
type sampledFleetTx struct {
	ota.Tx
	sample func()
}

func (t sampledFleetTx) EachDevice(pk string, fn func(*ota.Device) error) error {
	return t.Tx.EachDevice(pk, func(d *ota.Device) error {
		err := fn(d)
		t.sample()
		return err
	})
}

// walkFleetHeap runs walk b.N times and reports the largest growth of the live
// heap seen during a walk, in KiB, next to the walk's rate.
func walkFleetHeap(b *testing.B, st *state.Store, want int, walk fleetWalker) {
	b.ReportAllocs()
	var peak uint64
	var took, sampling time.Duration
	for b.Loop() {
		base := liveHeapInUse()
		seen := 0
		sample := func() {
			if seen++; seen%heapSampling == 0 {
				start := time.Now()
				if h := liveHeapInUse(); h > base && h-base > peak {
					peak = h - base
				}
				sampling += time.Since(start)
			}
		}
		start := time.Now()
		var n int
		err := st.View(func(tx ota.Tx) error {
			var err error
			n, err = walk(tx, sample)
			return err
		})
		took += time.Since(start)
		if err != nil || n != want {
			b.Fatalf("walk visited %d devices, err %v; want %d, nil", n, err, want)
		}
	}
	b.ReportMetric(float64(peak)/1024, "live-heap-KiB")
	// The rate leaves out the forced collections, which only measure.
	b.ReportMetric(float64(want*b.N)/(took-sampling).Seconds(), "devices/s")
}

// liveHeapInUse is the heap in use right after a full collection.
func liveHeapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// seedDevices writes a state file with n devices of listProduct, reporting
// a dozen versions, each with the hashes of its earlier messages as a
// device that has reported for a while has, and returns its path.
func seedDevices(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "state.db")
	st, err := state.Open(path, state.Options{Create: true})
	if err != nil {
		b.Fatalf("state.Open() = %v", err)
	}
	r := rand.New(rand.NewPCG(uint64(n), 1))
	now := time.Now().UTC()
	put := func(pk string, count int) {
		for start := 0; start < count; start += 10_000 {
			err := st.Update(func(tx ota.Tx) error {
				for i := start; i < min(start+10_000, count); i++ {
					d := &ota.Device{ProductKey: pk, DeviceKey: fmt.Sprintf("unit-%06d", i),
						Version: fmt.Sprintf("3.%d.0", r.IntN(12)), FirstSeen: now, LastSeen: now}
					for range earlierMessages {
						d.Recent = append(d.Recent, r.Uint64())
					}
					if err := tx.PutDevice(d); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatalf("seed %d devices: %v", count, err)
			}
		}
	}
	put(listProduct, n)
	put(otherProduct, otherDevices)
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}
