package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
	"github.com/otactl/otactl/transport"
)

// The fleet of the batch benchmarks: a product of batchDevices devices on
// batchSource, all of them targets of one batch upgrade to batchTarget,
// and one more device, batchVerifier, on which the firmware passed its
// verification (it is on the target by then, so the plan skips it).
const (
	batchProduct  = "bench-batch"
	batchDevices  = 100_000
	batchSource   = "1.0.0"
	batchTarget   = "2.0.0"
	batchVerifier = "verifier-1"
	// batchCommit is how many records the bare bbolt writer puts in one
	// transaction: the batching DESIGN.md section 10 recommends.
	batchCommit = 1_000
	// batchRecent is how many message hashes a device that has reported for
	// a while carries (ota.Device.Recent keeps the latest 32).
	batchRecent = 32
)

func batchDeviceKey(i int) string { return fmt.Sprintf("dev-%06d", i) }

// batchImage is the firmware file of the batch benchmarks: a small file
// whose file:// URL, digest and size are real, so that simulated devices
// can download and check it.
type batchImage struct {
	url, sign string
	size      int64
}

func writeBatchImage(tb testing.TB, dir string) batchImage {
	tb.Helper()
	data := make([]byte, 4096)
	for i := range data {
		data[i] = byte(i * 7)
	}
	path := filepath.Join(dir, "fw-"+batchTarget+".bin")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatalf("write firmware image: %v", err)
	}
	sum := sha256.Sum256(data)
	u := (&url.URL{Scheme: "file", Path: path}).String()
	return batchImage{url: u, sign: hex.EncodeToString(sum[:]), size: int64(len(data))}
}

// batchEnv is what cmd gives the rules: the clock, and the firmware's URL
// as registered.
func batchEnv() ota.Env {
	return ota.Env{Now: time.Now(), FileURL: func(f *ota.Firmware) string { return f.URL }}
}

// seedBatchState creates a state file at path holding a verified firmware
// and a fleet of devices on batchSource, keyed key(0) .. key(devices-1),
// and returns the firmware's ID. The store is closed on return.
//
// The firmware is verified the honest way, through the rules: a round on
// batchVerifier, its push acknowledged, progress 100 and a report of the
// target. The fleet's devices are written directly, as earlier runs would
// have left them: each has reported for a while, so it carries the full
// list of recent message hashes (batchRecent), most of what a device
// record costs to decode and encode.
func seedBatchState(tb testing.TB, path string, img batchImage, devices int,
	key func(int) string) string {
	tb.Helper()
	st, err := state.Open(path, state.Options{Create: true})
	if err != nil {
		tb.Fatalf("state.Open(%s) = %v", path, err)
	}
	defer st.Close()
	fwID := verifiedBatchFirmware(tb, st, img)
	r := rand.New(rand.NewPCG(5, 8))
	now := time.Now().UTC()
	for start := 0; start < devices; start += batchCommit {
		err := st.Update(func(tx ota.Tx) error {
			for i := start; i < min(start+batchCommit, devices); i++ {
				d := &ota.Device{ProductKey: batchProduct, DeviceKey: key(i),
					Version: batchSource, FirstSeen: now.Add(-30 * 24 * time.Hour),
					LastSeen: now.Add(-time.Hour)}
				for range batchRecent {
					d.Recent = append(d.Recent, r.Uint64())
				}
				if err := tx.PutDevice(d); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("seed devices from %d: %v", start, err)
		}
	}
	return fwID
}

// verifiedBatchFirmware registers the target image and passes its
// verification on batchVerifier, the way devices and the rules would.
func verifiedBatchFirmware(tb testing.TB, st *state.Store, img batchImage) string {
	tb.Helper()
	env := batchEnv()
	fw, err := ota.NewFirmware(ota.FirmwareSpec{ProductKey: batchProduct, Version: batchTarget,
		Sign: img.sign, Size: img.size, URL: img.url}, env.Now.UTC())
	if err != nil {
		tb.Fatalf("NewFirmware() = %v", err)
	}
	steps := []func(tx ota.Tx) error{
		func(tx ota.Tx) error { return ota.AddFirmware(tx, fw, env.Now.UTC()) },
		batchReports(batchInform(batchVerifier, "v1", batchSource)),
		func(tx ota.Tx) error {
			_, err := ota.StartVerification(tx, ota.VerifySpec{Firmware: fw.ID,
				FromVersions: []string{batchSource}, Devices: []string{batchVerifier}}, env)
			return err
		},
		func(tx ota.Tx) error {
			send, _, err := ota.PendingPushes(tx, 10)
			if err != nil || len(send) != 1 {
				return fmt.Errorf("verification pushes: %d, err %v; want 1", len(send), err)
			}
			return ota.MarkPushed(tx, send[0], env)
		},
		batchReports(batchProgress(batchVerifier, "v2", 100),
			batchInform(batchVerifier, "v3", batchTarget)),
	}
	for i, step := range steps {
		if err := st.Update(step); err != nil {
			tb.Fatalf("verify firmware, step %d: %v", i+1, err)
		}
	}
	var got *ota.Firmware
	if err := st.View(func(tx ota.Tx) error {
		var err error
		got, err = tx.Firmware(fw.ID)
		return err
	}); err != nil || got == nil || got.Verdict != ota.VerdictPassed {
		tb.Fatalf("firmware after verification: %+v, err %v; want verdict passed", got, err)
	}
	return fw.ID
}

// batchReports applies device messages as the session would hand them over.
func batchReports(reports ...ota.Report) func(tx ota.Tx) error {
	return func(tx ota.Tx) error {
		_, err := ota.Apply(tx, reports, batchEnv())
		return err
	}
}

func batchInform(dk, id, version string) ota.Report {
	topic := transport.DeviceTopic(batchProduct, dk, transport.SuffixInform)
	payload := transport.EncodeRequest(id, transport.MethodInform,
		map[string]string{"version": version})
	return transport.Parse(topic, payload, false, false, time.Now().UTC())
}

func batchProgress(dk, id string, step int) ota.Report {
	topic := transport.DeviceTopic(batchProduct, dk, transport.SuffixProgress)
	payload := transport.EncodeRequest(id, transport.MethodProgress,
		map[string]string{"step": strconv.Itoa(step), "desc": "rebooting"})
	return transport.Parse(topic, payload, false, false, time.Now().UTC())
}

// batchSpec is the batch upgrade of every device of the fleet, with the
// given concurrency limit and no rate limit.
func batchSpec(fwID string, maxConcurrent int) ota.BatchSpec {
	return ota.BatchSpec{Firmware: fwID, All: true,
		Controls: ota.TaskControls{MaxConcurrent: maxConcurrent}}
}

// createBatchTask plans and creates the task in one write transaction, as
// batch-upgrade does, and returns it.
func createBatchTask(tb testing.TB, st *state.Store, spec ota.BatchSpec) *ota.Task {
	tb.Helper()
	t, _ := timeBatchTask(tb, st, spec)
	return t
}

// batchCreatePhases is where the time of PlanBatch + CreateTask goes.
type batchCreatePhases struct {
	plan, create, commit time.Duration
}

func (p batchCreatePhases) total() time.Duration { return p.plan + p.create + p.commit }

// timeBatchTask is createBatchTask, timing PlanBatch, CreateTask and the
// commit of their transaction apart.
func timeBatchTask(tb testing.TB, st *state.Store,
	spec ota.BatchSpec) (*ota.Task, batchCreatePhases) {
	tb.Helper()
	var t *ota.Task
	var ph batchCreatePhases
	start := time.Now()
	var fnDone time.Time
	err := st.Update(func(tx ota.Tx) error {
		p, err := ota.PlanBatch(tx, spec)
		if err != nil {
			return err
		}
		ph.plan = time.Since(start)
		t, err = ota.CreateTask(tx, p, spec, batchEnv())
		fnDone = time.Now()
		ph.create = fnDone.Sub(start) - ph.plan
		return err
	})
	ph.commit = time.Since(fnDone)
	if err != nil {
		tb.Fatalf("PlanBatch + CreateTask: %v", err)
	}
	return t, ph
}

// copyBatchState copies a closed state file, so that every run starts from
// the same bytes without seeding the fleet again.
func copyBatchState(tb testing.TB, from, to string) {
	tb.Helper()
	src, err := os.Open(from)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		tb.Fatal(err)
	}
	// Synced now, or the first commit on the copy would pay for writing
	// it out.
	if err := dst.Sync(); err != nil {
		tb.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		tb.Fatal(err)
	}
}

func openBatchState(tb testing.TB, path string) *state.Store {
	tb.Helper()
	st, err := state.Open(path, state.Options{})
	if err != nil {
		tb.Fatalf("state.Open(%s) = %v", path, err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	return st
}

// BenchmarkBatchCreate is the second measurement: planning and
// creating a batch task over 100,000 devices (PlanBatch and CreateTask in
// one Update, as batch-upgrade runs them) against a bare bbolt loop that
// writes 100,000 job records, in the store's encoding, in transactions of
// 1,000, in the same run. The target is a ratio (otactl/bare time) of 2 or
// less. CreateTask records the targets and writes no job: each job is
// written when it is dispatched, and BenchmarkBatchPush counts that cost.
// Run:
//
//	go test ./bench -run '^$' -bench BatchCreate -benchtime 1x -count 5
func BenchmarkBatchCreate(b *testing.B) {
	dir := b.TempDir()
	template := filepath.Join(dir, "template.db")
	fwID := seedBatchState(b, template, writeBatchImage(b, dir), batchDevices, batchDeviceKey)
	var otactl batchCreatePhases
	var bare time.Duration
	n := 0
	for b.Loop() {
		n++
		path := filepath.Join(dir, fmt.Sprintf("state-%d.db", n))
		copyBatchState(b, template, path)
		st := openBatchState(b, path)
		t, ph := timeBatchTask(b, st, batchSpec(fwID, 0))
		if t.Counts.Targets != batchDevices {
			b.Fatalf("task %s has %d targets, want %d", t.ID, t.Counts.Targets, batchDevices)
		}
		otactl.plan, otactl.create, otactl.commit = otactl.plan+ph.plan,
			otactl.create+ph.create, otactl.commit+ph.commit
		_ = st.Close()
		barePath := filepath.Join(dir, fmt.Sprintf("bare-%d.db", n))
		bare += bareBatchJobWrites(b, barePath, batchDevices)
	}
	perRun := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	b.ReportMetric(perRun(otactl.total()), "otactl-s")
	b.ReportMetric(perRun(otactl.plan), "plan-s")
	b.ReportMetric(perRun(otactl.create), "create-s")
	b.ReportMetric(perRun(otactl.commit), "commit-s")
	b.ReportMetric(perRun(bare), "bare-s")
	b.ReportMetric(otactl.total().Seconds()/bare.Seconds(), "otactl/bare")
}

// bareBatchJobWrites writes n job records, encoded as the store encodes them, to a new bbolt file
// under increasing keys (as job IDs are), batchCommit per transaction, and
// returns how long the writing took: the floor under CreateTask's cost.
func bareBatchJobWrites(tb testing.TB, path string, n int) time.Duration {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatalf("bolt.Open(%s) = %v", path, err)
	}
	defer db.Close()
	job := bareBatchJob()
	start := time.Now()
	for first := 0; first < n; first += batchCommit {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("job"))
			if err != nil {
				return err
			}
			for i := first; i < min(first+batchCommit, n); i++ {
				job.ID = ota.FormatID(ota.JobPrefix, uint64(i+1))
				job.DeviceKey = batchDeviceKey(i)
				v, err := state.RecordBytes(&job)
				if err != nil {
					return err
				}
				if err := bk.Put(bareBatchKey(uint64(i+1)), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("bare write from %d: %v", first, err)
		}
	}
	return time.Since(start)
}

// bareBatchJob is a job as CreateTask makes it, for its size.
func bareBatchJob() ota.Job {
	now := time.Now().UTC()
	return ota.Job{FirmwareID: "fw-1", TaskID: "task-1", ProductKey: batchProduct,
		SourceVersion: batchSource, TargetVersion: batchTarget, Status: ota.JobToBeUpgraded,
		Attempt: 1, CreatedAt: now}
}

// bareBatchKey is a big-endian sequence number, the form of state's record keys.
func bareBatchKey(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// TestBatchFleet runs the batch benchmarks' setup on a small fleet, so
// that a change to the rules that breaks it fails here, in seconds, rather
// than in a benchmark nobody ran: the firmware passes verification, and
// the task takes every device but the verifier.
func TestBatchFleet(t *testing.T) {
	const devices = 50
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	fwID := seedBatchState(t, path, writeBatchImage(t, dir), devices, batchDeviceKey)
	st := openBatchState(t, path)
	task := createBatchTask(t, st, batchSpec(fwID, 0))
	if task.Counts.Targets != devices || task.Skipped[ota.SkipOnTarget] != 1 {
		t.Fatalf("task: %d targets, skipped %v; want %d targets and the verifier on target",
			task.Counts.Targets, task.Skipped, devices)
	}
}
