package bench

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/state"
	"github.com/otactl/otactl/transport"
)

// The fleet of the ingest benchmark: a product of 20,000 devices that otactl
// knows already, 4,000 of which are in a rollout from 1.0.0 to 2.0.0. While
// otactl was away, the others reconnected and reported their version, and
// every device in the rollout reported 20 progress steps and then its new
// version: 16,000 + 4,000 × 21 = 100,000 messages.
const (
	fleetProduct  = "bench-meter"
	fleetDevices  = 20_000
	rolloutJobs   = 4_000
	progressSteps = 20 // 5, 10, ..., 100
	sourceVersion = "1.0.0"
	targetVersion = "2.0.0"
	fleetMessages = fleetDevices - rolloutJobs + rolloutJobs*(progressSteps+1)
)

// fleetMsg is one MQTT publish of a device.
type fleetMsg struct {
	topic   string
	payload []byte
}

func fleetKey(i int) string { return fmt.Sprintf("meter-%05d", i) }

// fleetJobID is the ID the seeded rollout gives device i's job: jobs are
// created for devices 0 .. rolloutJobs-1 in that order, from sequence
// number 1.
func fleetJobID(i int) string { return ota.FormatID(ota.JobPrefix, uint64(i+1)) }

// fleetTraffic returns the fleet's messages in the order a broker would
// hold them: each device's own messages in order, the devices interleaved
// at random (with a fixed seed, so every run sends the same bytes).
func fleetTraffic() []fleetMsg {
	queues := make([][]fleetMsg, fleetDevices)
	id := 0
	next := func() string { id++; return strconv.Itoa(id) }
	for i := range queues {
		dk := fleetKey(i)
		if i >= rolloutJobs {
			queues[i] = []fleetMsg{fleetInform(dk, next(), sourceVersion)}
			continue
		}
		for s := 1; s <= progressSteps; s++ {
			step := s * 100 / progressSteps
			queues[i] = append(queues[i], fleetProgress(dk, next(), step, fleetJobID(i)))
		}
		queues[i] = append(queues[i], fleetInform(dk, next(), targetVersion))
	}

	r := rand.New(rand.NewPCG(7, 11))
	live := make([]int, fleetDevices) // devices with messages left
	for i := range live {
		live[i] = i
	}
	out := make([]fleetMsg, 0, fleetMessages)
	for len(live) > 0 {
		k := r.IntN(len(live))
		d := live[k]
		out = append(out, queues[d][0])
		if queues[d] = queues[d][1:]; len(queues[d]) == 0 {
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
		}
	}
	return out
}

func fleetInform(dk, id, version string) fleetMsg {
	return fleetMsg{
		topic: transport.DeviceTopic(fleetProduct, dk, transport.SuffixInform),
		payload: transport.EncodeRequest(id, transport.MethodInform,
			map[string]string{"version": version}),
	}
}

// fleetProgress writes progress the way the EnOS SDKs and otactl's
// simulator do: the step as a string, and the push's jobId echoed back.
func fleetProgress(dk, id string, step int, job string) fleetMsg {
	desc := "downloading"
	if step > 50 {
		desc = "flashing"
	}
	return fleetMsg{
		topic: transport.DeviceTopic(fleetProduct, dk, transport.SuffixProgress),
		payload: transport.EncodeRequest(id, transport.MethodProgress, map[string]string{
			"step": strconv.Itoa(step), "desc": desc, "jobId": job}),
	}
}

// earlierMessages is how many message hashes a device that has been
// reporting for a while carries for spotting redeliveries (ota.Device.Recent
// keeps the latest 32).
const earlierMessages = 32

// seedFleet creates a state file that knows the whole fleet, as it would
// after earlier runs: every device with its version and the hashes of its
// earlier messages, and each device of the rollout with a To be upgraded job
// whose push the broker already took. The jobs are written directly,
// outside any round or task, so that the benchmark measures recording
// messages and none of a rollout's bookkeeping.
func seedFleet(tb testing.TB) *state.Store {
	tb.Helper()
	st, err := state.Open(filepath.Join(tb.TempDir(), "state.db"), state.Options{Create: true})
	if err != nil {
		tb.Fatalf("state.Open() = %v", err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	now := time.Now().UTC()
	var fw *ota.Firmware
	err = st.Update(func(tx ota.Tx) error {
		seq, err := tx.NextSeq(ota.FirmwarePrefix)
		if err != nil {
			return err
		}
		fw = &ota.Firmware{
			ID:         ota.FormatID(ota.FirmwarePrefix, seq),
			ProductKey: fleetProduct,
			Name:       "meter " + targetVersion,
			Version:    targetVersion,
			SignMethod: ota.SignSHA256,
			Sign:       fmt.Sprintf("%064x", 1),
			Size:       1 << 20,
			URL:        "https://files.example/meter-2.0.0.bin",
			Status:     ota.FirmwareVerified,
			Verdict:    ota.VerdictPassed,
			CreatedAt:  now,
			UpdatedAt:  now,
		}
		return tx.PutFirmware(fw)
	})
	if err != nil {
		tb.Fatalf("seed firmware: %v", err)
	}
	r := rand.New(rand.NewPCG(3, 5))
	for start := 0; start < fleetDevices; start += 1000 {
		err := st.Update(func(tx ota.Tx) error {
			for i := start; i < min(start+1000, fleetDevices); i++ {
				if err := seedFleetDevice(tx, fw, i, r, now); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatalf("seed fleet: %v", err)
		}
	}
	return st
}

// seedFleetDevice stores device i, with its rollout job when it has one.
func seedFleetDevice(tx ota.Tx, fw *ota.Firmware, i int, r *rand.Rand, now time.Time) error {
	d := &ota.Device{ProductKey: fleetProduct, DeviceKey: fleetKey(i), Version: sourceVersion,
		FirstSeen: now.Add(-30 * 24 * time.Hour), LastSeen: now.Add(-time.Hour)}
	for range earlierMessages {
		d.Recent = append(d.Recent, r.Uint64())
	}
	if i < rolloutJobs {
		seq, err := tx.NextSeq(ota.JobPrefix)
		if err != nil {
			return err
		}
		j := &ota.Job{ID: ota.FormatID(ota.JobPrefix, seq), FirmwareID: fw.ID,
			ProductKey: fleetProduct, DeviceKey: d.DeviceKey, SourceVersion: sourceVersion,
			TargetVersion: targetVersion, Status: ota.JobToBeUpgraded, Attempt: 1,
			CreatedAt: now, DispatchedAt: now, PushedAt: now}
		if j.ID != fleetJobID(i) {
			return fmt.Errorf("seeded job %s for device %d, want %s", j.ID, i, fleetJobID(i))
		}
		if err := tx.PutJob(j); err != nil {
			return err
		}
		d.ActiveJob = j.ID
	}
	return tx.PutDevice(d)
}

// fleetEnv is what cmd gives ota.Apply, with a fixed file location.
func fleetEnv() ota.Env {
	return ota.Env{Now: time.Now(), FileURL: func(f *ota.Firmware) string { return f.URL }}
}

// checkFleet fails unless the store holds the outcome of every message:
// all devices known, every rollout job succeeded.
func checkFleet(tb testing.TB, st *state.Store) {
	tb.Helper()
	devices, succeeded := 0, 0
	err := st.View(func(tx ota.Tx) error {
		err := tx.EachDevice(fleetProduct, func(*ota.Device) error {
			devices++
			return nil
		})
		if err != nil {
			return err
		}
		return tx.EachJob(func(j *ota.Job) error {
			if j.Status == ota.JobSucceeded {
				succeeded++
			}
			return nil
		})
	})
	if err != nil || devices != fleetDevices || succeeded != rolloutJobs {
		tb.Fatalf("state after ingest: %d devices, %d jobs succeeded, err %v; want %d, %d, nil",
			devices, succeeded, err, fleetDevices, rolloutJobs)
	}
}

// TestFleetTraffic guards the benchmark's input: every message is one
// otactl accepts, and there are as many as the figures claim.
func TestFleetTraffic(t *testing.T) {
	msgs := fleetTraffic()
	if len(msgs) != fleetMessages || fleetMessages != 100_000 {
		t.Fatalf("fleetTraffic() has %d messages, want %d = 100,000", len(msgs), fleetMessages)
	}
	for _, m := range msgs {
		r := transport.Parse(m.topic, m.payload, false, false, time.Now())
		if r.Invalid != "" {
			t.Fatalf("Parse(%s, %s) is invalid: %s", m.topic, m.payload, r.Invalid)
		}
	}
}
