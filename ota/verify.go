package ota

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// DefaultJobTimeout is how long a verification job may go without a result
// after its push before it fails as timed out.
const DefaultJobTimeout = 30 * time.Minute

// NoVersionsMessage is the console's wording for a product whose devices
// have reported no version yet.
const NoVersionsMessage = "No version number is escalated by the devices"

// VerifySpec is a request to verify a firmware on a few devices.
type VerifySpec struct {
	Firmware     string // id or PK/VERSION
	FromVersions []string
	Devices      []string
	MinSuccess   int // jobs that must succeed; 0 means every job not canceled
	MaxFailures  int // failed jobs the verdict tolerates
	JobTimeout   time.Duration
}

// RoundReport is a round with its firmware and jobs, in the round's order.
type RoundReport struct {
	Firmware *Firmware
	Round    *Round
	Jobs     []*Job
}

// StartVerification starts the first verification round of a firmware. It
// refuses, with the existing round's report, when the firmware has one.
func StartVerification(tx Tx, spec VerifySpec, env Env) (*RoundReport, error) {
	for _, k := range dedupe(spec.Devices) {
		if err := ValidateKey("device key", k); err != nil {
			return nil, err
		}
	}
	f, err := ResolveFirmware(tx, spec.Firmware)
	if err != nil {
		return nil, err
	}
	last, err := NewestRound(tx, f)
	if err != nil {
		return nil, err
	}
	if last != nil {
		return last, Refused("firmware %s already has verification round %d", f.ID, last.Round.Number).
			WithHint("otactl verify reverify %s --from-version ... --device ...", f.ID)
	}
	return startRound(tx, f, spec, 1, env)
}

// Reverify cancels the newest round's jobs that are still To be upgraded and
// starts a new round, in which canceled and failed devices may be chosen
// again. Nothing changes when the new round is refused.
func Reverify(tx Tx, spec VerifySpec, env Env) (*RoundReport, []*Job, error) {
	f, err := ResolveFirmware(tx, spec.Firmware)
	if err != nil {
		return nil, nil, err
	}
	// A new round would make the firmware verifying again, and perhaps
	// failed, under a rollout that the gate let through as passed.
	if t, err := RunningTask(tx, f.ID); err != nil {
		return nil, nil, err
	} else if t != nil {
		return nil, nil, Refused("firmware %s has a running batch task %s: verify it again "+
			"once the task is finished or canceled", f.ID, t.ID).
			WithHint("otactl batch-upgrade cancel %s", t.ID)
	}
	last, err := NewestRound(tx, f)
	if err != nil {
		return nil, nil, err
	}
	number := 1
	var canceled []*Job
	if last != nil {
		number = last.Round.Number + 1
		for _, j := range last.Jobs {
			if j.Status == JobToBeUpgraded {
				if err := cancelJob(tx, j, "canceled by reverify", env); err != nil {
					return nil, nil, err
				}
				canceled = append(canceled, j)
			}
		}
	}
	rep, err := startRound(tx, f, spec, number, env)
	return rep, canceled, err
}

func startRound(tx Tx, f *Firmware, spec VerifySpec, number int, env Env) (*RoundReport, error) {
	devices, err := checkRoundSpec(tx, f, &spec)
	if err != nil {
		return nil, err
	}
	seq, err := tx.NextSeq(RoundPrefix)
	if err != nil {
		return nil, err
	}
	now := env.now()
	r := &Round{ID: FormatID(RoundPrefix, seq), FirmwareID: f.ID, Number: number,
		FromVersions: spec.FromVersions, MinSuccess: spec.MinSuccess,
		MaxFailures: spec.MaxFailures, JobTimeout: Duration(spec.JobTimeout), CreatedAt: now}
	rep := &RoundReport{Firmware: f, Round: r}
	for _, d := range devices {
		j, err := newJob(tx, f, d, now)
		if err != nil {
			return nil, err
		}
		j.RoundID, j.DispatchedAt = r.ID, now
		if err := assignJob(tx, d, j, env); err != nil {
			return nil, err
		}
		r.JobIDs = append(r.JobIDs, j.ID)
		rep.Jobs = append(rep.Jobs, j)
	}
	if err := tx.PutRound(r); err != nil {
		return nil, err
	}
	f.Status, f.Verdict, f.UpdatedAt = FirmwareVerifying, VerdictNone, now
	if err := tx.PutFirmware(f); err != nil {
		return nil, err
	}
	detail := fmt.Sprintf("verification round %d started on %d devices from %s",
		number, len(devices), strings.Join(spec.FromVersions, ", "))
	if err := tx.AppendEvent(&Event{Time: now, Subject: FirmwareSubject(f.ID),
		Action: "verifying", Detail: detail}); err != nil {
		return nil, err
	}
	return rep, tx.AppendEvent(&Event{Time: now, Subject: RoundSubject(r.ID), Action: "started", Detail: detail})
}

func newJob(tx Tx, f *Firmware, d *Device, now time.Time) (*Job, error) {
	seq, err := tx.NextSeq(JobPrefix)
	if err != nil {
		return nil, err
	}
	return &Job{ID: FormatID(JobPrefix, seq), FirmwareID: f.ID, ProductKey: d.ProductKey,
		DeviceKey: d.DeviceKey, SourceVersion: d.Version, TargetVersion: f.Version,
		Status: JobToBeUpgraded, Attempt: 1, CreatedAt: now}, nil
}

// assignJob stores a new job, makes it its device's active job and queues
// its push, all in the caller's transaction (the outbox rule).
func assignJob(tx Tx, d *Device, j *Job, env Env) error {
	d.ActiveJob = j.ID
	if err := tx.PutDevice(d); err != nil {
		return err
	}
	if err := tx.PutJob(j); err != nil {
		return err
	}
	if err := tx.AppendEvent(&Event{Time: env.now(), Subject: JobSubject(j.ID), Action: string(j.Status),
		Detail: "created for " + d.DeviceKey + " from " + j.SourceVersion + " to " + j.TargetVersion}); err != nil {
		return err
	}
	return queuePush(tx, j, env)
}

// checkRoundSpec validates a round request against the product's devices and
// returns the chosen devices. Every offending device is named at once.
func checkRoundSpec(tx Tx, f *Firmware, spec *VerifySpec) ([]*Device, error) {
	keys := dedupe(spec.Devices)
	if len(keys) == 0 {
		return nil, Invalid("no device given: --device takes 1 to %d device keys", MaxRoundDevices)
	}
	if len(keys) > MaxRoundDevices {
		return nil, Refused("a verification round takes at most %d devices, got %d", MaxRoundDevices, len(keys))
	}
	for _, k := range keys {
		if err := ValidateKey("device key", k); err != nil {
			return nil, err
		}
	}
	if err := checkFromVersions(tx, f, spec); err != nil {
		return nil, err
	}
	if spec.MinSuccess < 0 || spec.MinSuccess > len(keys) {
		return nil, Invalid("--min-success %d must be between 0 and the number of devices (%d)",
			spec.MinSuccess, len(keys))
	}
	if spec.MaxFailures < 0 || spec.MaxFailures >= len(keys) && spec.MaxFailures > 0 {
		return nil, Invalid("--max-failures %d must be between 0 and one less than the number of "+
			"devices (%d)", spec.MaxFailures, len(keys))
	}
	if spec.JobTimeout <= 0 {
		spec.JobTimeout = DefaultJobTimeout
	}
	planning, err := PlanningTasks(tx, f.ProductKey)
	if err != nil {
		return nil, err
	}
	var devices []*Device
	var problems []string
	for _, k := range keys {
		d, problem, err := checkRoundDevice(tx, f, spec.FromVersions, planning, k)
		if err != nil {
			return nil, err
		}
		if problem != "" {
			problems = append(problems, k+" ("+problem+")")
		}
		devices = append(devices, d)
	}
	if len(problems) > 0 {
		return nil, Refused("cannot verify on %s", strings.Join(problems, "; "))
	}
	return devices, nil
}

func checkRoundDevice(tx Tx, f *Firmware, from, planning []string,
	key string) (*Device, string, error) {
	d, err := tx.Device(f.ProductKey, key)
	if err != nil {
		return nil, "", err
	}
	switch {
	case d == nil:
		return nil, "no such device of product " + f.ProductKey + " has reported a version", nil
	case SameVersion(d.Version, f.Version):
		return d, "already on " + f.Version, nil
	case !slices.ContainsFunc(from, func(v string) bool { return SameVersion(v, d.Version) }):
		return d, "reports " + d.Version + ", not one of the chosen versions", nil
	case d.ActiveJob != "":
		j, err := tx.Job(d.ActiveJob)
		if err != nil {
			return nil, "", err
		}
		if j != nil {
			return d, "busy with job " + j.ID + ", " + j.Status.Label(), nil
		}
	}
	if id, err := PlannedIn(tx, planning, key); err != nil || id != "" {
		return d, "planned in batch task " + id + ", not pushed yet", err
	}
	return d, "", nil
}

// checkFromVersions requires source versions that the product's devices
// reported, and none equal to the target.
func checkFromVersions(tx Tx, f *Firmware, spec *VerifySpec) error {
	from := dedupe(spec.FromVersions)
	if len(from) == 0 {
		return Invalid("no source version given: --from-version takes one or more versions")
	}
	reported, err := ReportedVersions(tx, f.ProductKey)
	if err != nil {
		return err
	}
	if len(reported) == 0 {
		return Errorf(KindNoVersions, "%s (product %s)", NoVersionsMessage, f.ProductKey).
			WithHint("devices report their version when they connect; run otactl sync first")
	}
	for _, v := range from {
		if SameVersion(v, f.Version) {
			return Refused("source version %s is the firmware's own version", v)
		}
		if !slices.ContainsFunc(reported, func(rv VersionCount) bool { return SameVersion(rv.Version, v) }) {
			return Refused("no device of product %s reports version %s", f.ProductKey, v).
				WithHint("otactl versions --product %s", f.ProductKey)
		}
	}
	spec.FromVersions = from
	return nil
}

// dedupe trims the strings and drops empty and repeated ones, keeping the
// first occurrence's place; a devices file may hold 100,000 keys.
func dedupe(in []string) []string {
	var out []string
	seen := make(map[string]bool, len(in))
	for _, s := range in {
		if s = strings.TrimSpace(s); s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// VersionCount is a reported version with the number of devices reporting it.
type VersionCount struct {
	Version string `json:"version"`
	Devices int    `json:"devices"`
}

// ReportedVersions counts the product's devices by reported version, in
// version order. Versions equal after trimming are counted together under
// the first spelling seen. It holds one entry per version, never every
// device.
func ReportedVersions(tx Tx, productKey string) ([]VersionCount, error) {
	index := map[string]int{}
	var out []VersionCount
	err := tx.EachDevice(productKey, func(d *Device) error {
		n := NormalizeVersion(d.Version)
		if i, ok := index[n]; ok {
			out[i].Devices++
			return nil
		}
		index[n] = len(out)
		out = append(out, VersionCount{Version: d.Version, Devices: 1})
		return nil
	})
	slices.SortStableFunc(out, func(a, b VersionCount) int {
		if c, ok := CompareVersions(a.Version, b.Version); ok && c != 0 {
			return c
		}
		return strings.Compare(a.Version, b.Version)
	})
	return out, err
}
