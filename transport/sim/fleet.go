package sim

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"time"
)

// device is one simulated device. key, failing and onlineAt are fixed at
// plan time; the rest is guarded by the mutex of the device's connection.
type device struct {
	key      string
	failing  bool          // fails every upgrade in the fleet's fail mode
	onlineAt time.Duration // after its connection first comes up

	version string
	online  bool
	job     string // identity of the upgrade in progress; "" when idle
}

// Purposes keep the seeded choices of one device independent of each other:
// which devices fail does not shift when ConnectSpread changes.
const (
	purposeFail   = 'f'
	purposeOnline = 'o'
)

// draw returns a number in [0, 1) fixed by the seed, the purpose and the
// key. It hashes instead of drawing from one random stream so that a
// device's choices do not depend on the fleet size or on its position.
func draw(seed int64, purpose byte, key string) float64 {
	h := fnv.New64a()
	var b [9]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(seed))
	b[8] = purpose
	h.Write(b[:])
	h.Write([]byte(key))
	// FNV alone spreads nearby keys ("sim-1", "sim-2") poorly in its high
	// bits; the splitmix64 finaliser mixes every input bit into every output
	// bit.
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// plan builds the fleet's devices in key order (sim-1, sim-2, ...). Exactly
// round(FailRate*Devices) devices fail: the ones with the lowest seeded
// draw, so that a run with a rate of 0.1 fails 100 of 1,000 devices rather
// than about 100, and a higher rate fails a superset of a lower one.
func plan(o Options) []*device {
	devs := make([]*device, o.Devices)
	for i := range devs {
		key := o.KeyPrefix + strconv.Itoa(i+1)
		devs[i] = &device{key: key, version: o.Version}
		if o.ConnectSpread > 0 {
			at := draw(o.Seed, purposeOnline, key) * float64(o.ConnectSpread)
			devs[i].onlineAt = time.Duration(at)
		}
	}
	n := int(math.Round(o.FailRate * float64(o.Devices)))
	if n == 0 {
		return devs
	}
	ranked := make([]*device, len(devs))
	copy(ranked, devs)
	score := make(map[*device]float64, len(devs))
	for _, d := range devs {
		score[d] = draw(o.Seed, purposeFail, d.key)
	}
	sort.Slice(ranked, func(i, j int) bool {
		a, b := ranked[i], ranked[j]
		if score[a] != score[b] {
			return score[a] < score[b]
		}
		return a.key < b.key
	})
	for _, d := range ranked[:n] {
		d.failing = true
	}
	return devs
}

// FailingKeys returns the keys of the devices that Run with the same options
// makes fail, in key order, so that a test or an operator can predict them.
func FailingKeys(o Options) ([]string, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	var keys []string
	for _, d := range plan(o.withDefaults()) {
		if d.failing {
			keys = append(keys, d.key)
		}
	}
	return keys, nil
}

// shard splits the devices into n groups of nearly equal size, keeping
// neighbouring keys together.
func shard(devs []*device, n int) [][]*device {
	groups := make([][]*device, n)
	for i := range groups {
		lo, hi := i*len(devs)/n, (i+1)*len(devs)/n
		groups[i] = devs[lo:hi]
	}
	return groups
}
