package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otactl/otactl/cmd"
	"github.com/otactl/otactl/internal/mosquitto"
	"github.com/otactl/otactl/ota"
)

// The rollout of the memory benchmark: the default concurrency limit, and
// simulated devices that take a few milliseconds a step.
const (
	rolloutConcurrent = ota.DefaultMaxConcurrent
	rolloutStepDelay  = 5 * time.Millisecond
	rolloutDevicesPer = 500 // devices per simulator connection (sim's default)
	rolloutEvery      = 100 * time.Millisecond
	rolloutTimeout    = 30 * time.Minute
	rolloutHeapLimit  = 64 << 20 // the bound on the heap in use
	rolloutKeyPrefix  = "sim-"
)

// rolloutLiveHeap is the runtime metric of the heap the latest garbage
// collection found reachable: what the program holds, without the garbage
// that HeapInuse also counts until the next collection.
const rolloutLiveHeap = "/gc/heap/live:bytes"

// BenchmarkRolloutMemory is the third measurement: a batch upgrade
// of 100,000 simulated devices with --max-concurrent 300, driven through
// cmd.Main in this process (`otactl batch-upgrade FW --all --wait`) while
// a goroutine samples runtime.MemStats.HeapInuse every 100 ms. The devices
// run in a child process (`otactl simulate`, built from this module), so
// that their memory is not counted; the state file knows them already, as
// seedBatchState writes them.
//
// It reports the peak heap in use over the whole command, and apart: up to
// the moment the task is created (opening, draining, PlanBatch and
// CreateTask), and after it (the rollout). Beside each, the peak live heap
// (rolloutLiveHeap), which tells what the program held from what the
// collector had not yet freed. The target is a heap in use under 64 MiB.
// Run:
//
//	go test ./bench -run '^$' -bench RolloutMemory -benchtime 1x -count 3
func BenchmarkRolloutMemory(b *testing.B) {
	rolloutMemory(b, batchDevices)
}

// BenchmarkRolloutMemorySmall is the same rollout over a tenth of the fleet,
// to show what of the peak grows with the fleet and what does not.
func BenchmarkRolloutMemorySmall(b *testing.B) {
	rolloutMemory(b, batchDevices/10)
}

func rolloutMemory(b *testing.B, devices int) {
	otactl := buildSimulator(b)
	var sum rolloutRun
	n := 0
	for b.Loop() {
		n++
		r := runRollout(b, otactl, devices)
		sum.create.max(r.create)
		sum.rollout.max(r.rollout)
		sum.createTook += r.createTook
		sum.rolloutTook += r.rolloutTook
	}
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	peak := max(sum.create.inuse, sum.rollout.inuse)
	b.ReportMetric(mib(peak), "peak-heap-MiB")
	b.ReportMetric(mib(sum.create.inuse), "create-heap-MiB")
	b.ReportMetric(mib(sum.create.live), "create-live-MiB")
	b.ReportMetric(mib(sum.rollout.inuse), "rollout-heap-MiB")
	b.ReportMetric(mib(sum.rollout.live), "rollout-live-MiB")
	b.ReportMetric(sum.createTook.Seconds()/float64(n), "create-s")
	b.ReportMetric(sum.rolloutTook.Seconds()/float64(n), "rollout-s")
	b.ReportMetric(float64(devices*n)/(sum.createTook+sum.rolloutTook).Seconds(), "jobs/s")
	if peak >= rolloutHeapLimit {
		b.Logf("peak heap in use %.1f MiB is over the %d MiB target", mib(peak),
			rolloutHeapLimit>>20)
	}
}

// rolloutPeak is the highest heap in use and live heap seen, in bytes.
type rolloutPeak struct{ inuse, live uint64 }

func (p *rolloutPeak) max(q rolloutPeak) {
	p.inuse, p.live = max(p.inuse, q.inuse), max(p.live, q.live)
}

// rolloutRun is what one rollout measured: the peaks until the command
// said it created the task, and after.
type rolloutRun struct {
	create, rollout         rolloutPeak
	createTook, rolloutTook time.Duration
}

func runRollout(b *testing.B, otactl string, devices int) rolloutRun {
	dir := b.TempDir()
	path := filepath.Join(dir, "state.db")
	fwID := seedBatchState(b, path, writeBatchImage(b, dir), devices, rolloutKey)
	broker := mosquitto.Start(b)
	defer broker.Stop()

	// The devices come online before otactl's session exists, so the
	// broker drops their first version reports: the state file knows them
	// already, and the command measured starts with an empty queue.
	stop := startRolloutFleet(b, otactl, broker, dir, devices)
	defer stop()

	runtime.GC()
	sampler := startRolloutSampler()
	created := &rolloutStderr{}
	var stdout bytes.Buffer
	streams := &cmd.IO{In: &bytes.Buffer{}, Out: &stdout, Err: created}
	args := []string{"--state", path, "--broker", broker.URL(), "batch-upgrade", fwID, "--all",
		"--max-concurrent", strconv.Itoa(rolloutConcurrent),
		"--wait", "--wait-timeout", rolloutTimeout.String()}
	start := time.Now()
	code := cmd.Main(args, streams)
	end := time.Now()
	samples := sampler.stop()
	if code != 0 {
		b.Fatalf("otactl %v: exit %d\nstdout: %s\nstderr: %s", args, code, &stdout, created.text())
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("%d succeeded", devices)) {
		b.Fatalf("batch-upgrade did not report %d jobs succeeded:\n%s", devices, &stdout)
	}

	at := created.at()
	if at.IsZero() {
		b.Fatalf("batch-upgrade never said it created the task; stderr: %s", created.text())
	}
	var r rolloutRun
	for _, s := range samples {
		p := &r.rollout
		if s.at.Before(at) {
			p = &r.create
		}
		p.max(rolloutPeak{s.inuse, s.live})
	}
	r.createTook, r.rolloutTook = at.Sub(start), end.Sub(at)
	b.Logf("%d devices: task created after %v; MiB per 5 s from the start, heap in use: %s; "+
		"live: %s", devices, r.createTook.Round(time.Millisecond),
		rolloutWindows(samples, start, func(s rolloutSample) uint64 { return s.inuse }),
		rolloutWindows(samples, start, func(s rolloutSample) uint64 { return s.live }))
	return r
}

func rolloutKey(i int) string { return rolloutKeyPrefix + strconv.Itoa(i+1) }

// rolloutWindows summarises samples as the peak of a value, in MiB, in
// each window of 5 seconds from start.
func rolloutWindows(samples []rolloutSample, start time.Time,
	value func(rolloutSample) uint64) string {
	const window = 5 * time.Second
	var peaks []uint64
	for _, s := range samples {
		i := max(0, int(s.at.Sub(start)/window))
		for len(peaks) <= i {
			peaks = append(peaks, 0)
		}
		peaks[i] = max(peaks[i], value(s))
	}
	parts := make([]string, len(peaks))
	for i, p := range peaks {
		parts[i] = strconv.FormatUint(p>>20, 10)
	}
	return strings.Join(parts, " ")
}

// rolloutSample is one reading of the heap.
type rolloutSample struct {
	at          time.Time
	inuse, live uint64 // HeapInuse and rolloutLiveHeap
}

type rolloutSampler struct {
	done    chan struct{}
	wg      sync.WaitGroup
	samples []rolloutSample
}

// startRolloutSampler reads the heap every rolloutEvery until stop.
func startRolloutSampler() *rolloutSampler {
	s := &rolloutSampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(rolloutEvery)
		defer tick.Stop()
		var m runtime.MemStats
		live := []metrics.Sample{{Name: rolloutLiveHeap}}
		for {
			runtime.ReadMemStats(&m)
			metrics.Read(live)
			var l uint64
			if live[0].Value.Kind() == metrics.KindUint64 {
				l = live[0].Value.Uint64()
			}
			s.samples = append(s.samples, rolloutSample{time.Now(), m.HeapInuse, l})
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *rolloutSampler) stop() []rolloutSample {
	close(s.done)
	s.wg.Wait()
	return s.samples
}

// rolloutStderr is batch-upgrade's stderr: it notes when the command said
// it created the task, the line between creating and rolling out.
type rolloutStderr struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	when time.Time
}

func (c *rolloutStderr) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.when.IsZero() && bytes.Contains(p, []byte("created batch task")) {
		c.when = time.Now()
	}
	return c.buf.Write(p)
}

func (c *rolloutStderr) at() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.when
}

func (c *rolloutStderr) text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// buildSimulator builds the otactl binary of this module, whose simulate
// command runs the fleet.
func buildSimulator(tb testing.TB) string {
	tb.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		tb.Skipf("no go command to build the simulator: %v", err)
	}
	bin := filepath.Join(tb.TempDir(), "otactl")
	build := exec.Command(gobin, "build", "-o", bin, "github.com/otactl/otactl/cmd/otactl")
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("go build otactl: %v\n%s", err, out)
	}
	return bin
}

// startRolloutFleet runs `otactl simulate` for the fleet in a child
// process, waits until its devices are online, and returns a function that
// interrupts it and waits for it to exit.
func startRolloutFleet(tb testing.TB, otactl string, broker *mosquitto.Broker, dir string,
	devices int) func() {
	tb.Helper()
	log, err := os.Create(filepath.Join(dir, "simulate.log"))
	if err != nil {
		tb.Fatal(err)
	}
	c := exec.Command(otactl, "simulate", "--broker", broker.URL(), "--product", batchProduct,
		"--devices", strconv.Itoa(devices), "--version", batchSource,
		"--key-prefix", rolloutKeyPrefix, "--step-delay", rolloutStepDelay.String(),
		"--connections", strconv.Itoa(max(1, devices/rolloutDevicesPer)))
	c.Stdout, c.Stderr = log, log
	if err := c.Start(); err != nil {
		log.Close()
		tb.Fatalf("start otactl simulate: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = c.Process.Signal(syscall.SIGINT)
			exited := make(chan struct{})
			go func() { _ = c.Wait(); close(exited) }()
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				_ = c.Process.Kill()
				<-exited
			}
			log.Close()
		})
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, _ := os.ReadFile(log.Name())
		if bytes.Contains(out, []byte("devices online on")) {
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			tb.Fatalf("the simulated devices are not online after 2 minutes:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
