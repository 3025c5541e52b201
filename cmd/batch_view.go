package cmd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/otactl/otactl/ota"
)

func itoa(n int) string { return strconv.Itoa(n) }

// devices is a device count for a sentence: "1 device", "39 devices".
func devices(n int) string {
	if n == 1 {
		return "1 device"
	}
	return strconv.Itoa(n) + " devices"
}

// unwrapPath drops the path an *os.PathError repeats, for messages that
// name the file themselves.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func limitNote(maxConcurrent int) string {
	if maxConcurrent == 0 {
		return " (no limit)"
	}
	return " (limit " + itoa(maxConcurrent) + ")"
}

// taskView is a task as commands print it: its record without the rate
// limiter's and the timeout check's bookkeeping.
type taskView struct {
	ID             string           `json:"id"`
	FirmwareID     string           `json:"firmwareId"`
	ProductKey     string           `json:"productKey"`
	TargetVersion  string           `json:"targetVersion"`
	FromVersions   []string         `json:"fromVersions"`
	Status         ota.TaskStatus   `json:"status"`
	Reason         string           `json:"reason,omitempty"`
	Controls       ota.TaskControls `json:"controls"`
	AllowDowngrade bool             `json:"allowDowngrade"`
	Counts         ota.TaskCounts   `json:"counts"`
	Skipped        map[string]int   `json:"skipped"`
	Failures       map[string]int   `json:"failures"`
	CreatedAt      timeJSON         `json:"createdAt"`
	UpdatedAt      timeJSON         `json:"updatedAt"`
	FinishedAt     *timeJSON        `json:"finishedAt,omitempty"`
}

func newTaskView(t *ota.Task) taskView {
	v := taskView{ID: t.ID, FirmwareID: t.FirmwareID, ProductKey: t.ProductKey,
		TargetVersion: t.TargetVersion, FromVersions: t.FromVersions, Status: t.Status,
		Reason: t.Reason, Controls: t.Controls, AllowDowngrade: t.AllowDowngrade, Counts: t.Counts,
		Skipped: t.Skipped, Failures: t.Failures, CreatedAt: timeJSON(t.CreatedAt),
		UpdatedAt: timeJSON(t.UpdatedAt), FinishedAt: optTime(t.FinishedAt)}
	if v.Skipped == nil {
		v.Skipped = map[string]int{}
	}
	if v.Failures == nil {
		v.Failures = map[string]int{}
	}
	return v
}

// printTask prints a task: its settings, counts and failure reasons.
func (a *App) printTask(t *ota.Task) error {
	if a.Settings.JSON {
		return writeJSON(a.IO.Out, newTaskView(t))
	}
	c := t.Counts
	err := fields(a.IO.Out,
		"task", t.ID, "firmware", t.FirmwareID, "target", t.ProductKey+"/"+t.TargetVersion,
		"from", strings.Join(t.FromVersions, ", "), "status", string(t.Status), "reason", t.Reason,
		"jobs", fmt.Sprintf("%d (%d succeeded, %d failed, %d canceled, %d in progress, "+
			"%d pushed, %d queued, %d retried)", c.Targets, c.Succeeded, c.Failed, c.Canceled,
			c.InProgress, c.Pushed, c.Queued+c.Planned, c.Retried),
		"peak in flight", itoa(c.PeakInFlight)+limitNote(t.Controls.MaxConcurrent),
		"skipped", ota.CountSummary(t.Skipped), "failures", ota.CountSummary(t.Failures),
		"created", timeCell(t.CreatedAt, false, a.Now()), "finished", timeCell(t.FinishedAt, false, a.Now()))
	return err
}

// planView is a dry run's plan as --json prints it.
type planView struct {
	FirmwareID       string             `json:"firmwareId"`
	TargetVersion    string             `json:"targetVersion"`
	Targets          int                `json:"targets"`
	Sources          []ota.VersionCount `json:"sources"`
	Skipped          map[string]int     `json:"skipped"`
	Examples         []ota.Skip         `json:"skippedDevices"`
	Uncovered        []string           `json:"uncoveredSources,omitempty"`
	ExpectedDuration string             `json:"expectedDuration,omitempty"`
}

func (a *App) printPlan(p *ota.BatchPlan, c ota.TaskControls) error {
	v := planView{FirmwareID: p.Firmware.ID, TargetVersion: p.Firmware.Version, Targets: p.Targets,
		Sources: p.Sources, Skipped: p.Skipped, Examples: p.Examples, Uncovered: p.Uncovered}
	if d := p.ExpectedDuration(c); d > 0 {
		v.ExpectedDuration = d.Round(time.Second).String()
	}
	if v.Sources == nil {
		v.Sources = []ota.VersionCount{}
	}
	if v.Examples == nil {
		v.Examples = []ota.Skip{}
	}
	if a.Settings.JSON {
		return writeJSON(a.IO.Out, v)
	}
	w := a.IO.Out
	fmt.Fprintf(w, "dry run: would upgrade %s of %s to %s\n", devices(p.Targets),
		p.Firmware.ProductKey, p.Firmware.Version)
	for _, s := range p.Sources {
		fmt.Fprintf(w, "  from %s: %s\n", s.Version, devices(s.Devices))
	}
	if len(p.Uncovered) > 0 {
		fmt.Fprintf(w, "not covered by the verification (allowed): %s\n", strings.Join(p.Uncovered, ", "))
	}
	fmt.Fprintf(w, "skipped: %s\n", ota.CountSummary(p.Skipped))
	for _, s := range p.Examples {
		line := "  " + s.DeviceKey
		if s.Version != "" {
			line += " (" + s.Version + ")"
		}
		line += ": " + s.Reason
		if s.Detail != "" {
			line += ", " + s.Detail
		}
		fmt.Fprintln(w, line)
	}
	total := 0
	for _, n := range p.Skipped {
		total += n
	}
	if more := total - len(p.Examples); more > 0 {
		fmt.Fprintf(w, "  and %d more\n", more)
	}
	if v.ExpectedDuration != "" {
		fmt.Fprintf(w, "expected duration at %d pushes a minute: %s\n", c.Rate, v.ExpectedDuration)
	}
	return nil
}
