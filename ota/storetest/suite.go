// Package storetest is the conformance suite of ota.Store: one set of
// subtests, one or more per sentence of the contract in ota/store.go, run
// against every implementation (the in-memory fake of package otatest and
// the bbolt store of package state), so that tests written against the fake
// hold for the real thing.
package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

// Run runs the suite. open must return a new, empty store for each subtest
// and arrange for its cleanup.
func Run(t *testing.T, open func(t *testing.T) ota.Store) {
	groups := [][]test{seqTests, firmwareTests, deviceTests, roundJobPushTests,
		taskTests, setTests, leaseTests, historyTests, txTests}
	for _, g := range groups {
		for _, tc := range g {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
		}
	}
}

// test is one subtest of the suite.
type test struct {
	name string
	fn   func(t *testing.T, s ota.Store)
}

// errStop is what test callbacks return to make a transaction fail or an
// iteration stop.
var errStop = errors.New("storetest: stop")

// t0 is the suite's clock. JSON keeps times to the nanosecond in UTC, so
// records with these times compare equal after a round trip.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 890, time.UTC)

func update(t *testing.T, s ota.Store, fn func(ota.Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, s ota.Store, fn func(ota.Tx) error) {
	t.Helper()
	if err := s.View(fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// must fails the test at once when a store call inside a transaction fails.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

// sameJSON compares records by their JSON form, which is what a store keeps.
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err1 := json.Marshal(got)
	w, err2 := json.Marshal(want)
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: cannot encode: %v %v", what, err1, err2)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s = %s, want %s", what, g, w)
	}
}

// missing checks a getter's answer for a record that does not exist.
func missing[T any](t *testing.T, what string, rec *T, err error) {
	t.Helper()
	if rec != nil || err != nil {
		t.Errorf("%s = %+v, %v; want nil, nil", what, rec, err)
	}
}

func step(n int) *int { return &n }

func newFirmware(seq uint64, pk, version string) *ota.Firmware {
	return &ota.Firmware{
		ID: ota.FormatID(ota.FirmwarePrefix, seq), ProductKey: pk,
		Name: "image " + version, Version: version, SignMethod: ota.SignSHA256,
		Sign: "00ff", Size: 1 << 20, StoredFile: "abc", Status: ota.FirmwareUnverified,
		CreatedAt: t0, UpdatedAt: t0.Add(time.Second),
	}
}

func newDevice(pk, dk string) *ota.Device {
	return &ota.Device{ProductKey: pk, DeviceKey: dk, Version: "1.0",
		FirstSeen: t0, LastSeen: t0.Add(time.Minute), Recent: []uint64{7, 9}}
}

func newRound(seq uint64, fwID string, jobIDs ...string) *ota.Round {
	return &ota.Round{ID: ota.FormatID(ota.RoundPrefix, seq), FirmwareID: fwID, Number: 1,
		FromVersions: []string{"1.0"}, JobIDs: jobIDs, MaxFailures: 1,
		JobTimeout: ota.Duration(time.Hour), CreatedAt: t0}
}

func newJob(seq uint64, fwID, dk string) *ota.Job {
	return &ota.Job{ID: ota.FormatID(ota.JobPrefix, seq), FirmwareID: fwID,
		RoundID: "round-1", ProductKey: "pk", DeviceKey: dk, SourceVersion: "1.0",
		TargetVersion: "2.0", Status: ota.JobInProgress, Step: step(42), Desc: "downloading",
		Attempt: 1, CreatedAt: t0, PushedAt: t0.Add(time.Second)}
}

func newPush(seq uint64, jobID string) *ota.Push {
	return &ota.Push{ID: ota.FormatID(ota.PushPrefix, seq), JobID: jobID,
		ProductKey: "pk", DeviceKey: "dk",
		Params: ota.UpgradeParams{Version: "2.0", Sign: "00ff", SignMethod: ota.SignSHA256,
			FileURL: "file:///x", FileSize: 10, JobID: jobID},
		CreatedAt: t0}
}

func newTask(seq uint64, fwID string) *ota.Task {
	return &ota.Task{ID: ota.FormatID(ota.TaskPrefix, seq), FirmwareID: fwID,
		ProductKey: "pk", TargetVersion: "2.0", FromVersions: []string{"1.0", "1.1"},
		Status: ota.TaskRunning,
		Controls: ota.TaskControls{MaxConcurrent: 300, Rate: 60,
			Timeout: ota.Duration(time.Hour), Retries: 2, AbortFailureRate: 0.25},
		Counts:  ota.TaskCounts{Targets: 10, Queued: 7, Pushed: 3},
		Skipped: map[string]int{"on target": 2},
		Tokens:  1.5, TokensAt: t0, CreatedAt: t0, UpdatedAt: t0.Add(time.Second)}
}

func newLease(pid int) *ota.Lease {
	return &ota.Lease{Holder: "host:" + strconv.Itoa(pid), Host: "host", PID: pid,
		Tick: ota.Duration(5 * time.Second), Since: t0, Heartbeat: t0.Add(time.Minute)}
}

func newEvent(subject string) *ota.Event {
	return &ota.Event{Time: t0, Subject: subject, Action: "status", Detail: "a sentence"}
}

// firmwareIDs and the functions after it list what an Each* call visits,
// in the order it visits them.
func firmwareIDs(t *testing.T, tx ota.Tx) []string {
	t.Helper()
	var ids []string
	must(t, tx.EachFirmware(func(f *ota.Firmware) error {
		ids = append(ids, f.ID)
		return nil
	}))
	return ids
}

func jobIDs(t *testing.T, tx ota.Tx) []string {
	t.Helper()
	var ids []string
	must(t, tx.EachJob(func(j *ota.Job) error {
		ids = append(ids, j.ID)
		return nil
	}))
	return ids
}

func pushIDs(t *testing.T, tx ota.Tx) []string {
	t.Helper()
	var ids []string
	must(t, tx.EachPush(func(p *ota.Push) error {
		ids = append(ids, p.ID)
		return nil
	}))
	return ids
}

func roundIDs(t *testing.T, tx ota.Tx, fwID string) []string {
	t.Helper()
	var ids []string
	must(t, tx.EachRound(fwID, func(r *ota.Round) error {
		ids = append(ids, r.ID)
		return nil
	}))
	return ids
}

func taskIDs(t *testing.T, tx ota.Tx) []string {
	t.Helper()
	var ids []string
	must(t, tx.EachTask(func(task *ota.Task) error {
		ids = append(ids, task.ID)
		return nil
	}))
	return ids
}

// members lists what SetEach(set, after) visits.
func members(t *testing.T, tx ota.Tx, set, after string) []string {
	t.Helper()
	var ms []string
	must(t, tx.SetEach(set, after, func(m string) error {
		ms = append(ms, m)
		return nil
	}))
	return ms
}

// deviceNames lists visited devices as "pk/dk".
func deviceNames(t *testing.T, tx ota.Tx, pk string) []string {
	t.Helper()
	var names []string
	must(t, tx.EachDevice(pk, func(d *ota.Device) error {
		names = append(names, d.ProductKey+"/"+d.DeviceKey)
		return nil
	}))
	return names
}

// events returns the events EachEvent(subject) visits.
func events(t *testing.T, tx ota.Tx, subject string) []*ota.Event {
	t.Helper()
	var evs []*ota.Event
	must(t, tx.EachEvent(subject, func(e *ota.Event) error {
		evs = append(evs, e)
		return nil
	}))
	return evs
}

func equal[E comparable](t *testing.T, what string, got, want []E) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
