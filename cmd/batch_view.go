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

// printTask prints a task: its settings, counts and failure reasons.
func (a *App) printTask(t *ota.Task) error {
	if a.Settings.JSON {
		return writeJSON(a.IO.Out, t)
	}
	c := t.Counts
	err := fields(a.IO.Out,
		"task", t.ID, "firmware", t.FirmwareID, "target", t.ProductKey+"/"+t.TargetVersion,
		"from", strings.Join(t.FromVersions, ", "), "status", string(t.Status), "reason", t.Reason,
		"jobs", fmt.Sprintf("%d (%d succeeded, %d failed, %d canceled, %d in progress, "+
			"%d pushed, %d queued, %d retried)", c.Targets, c.Succeeded, c.Failed, c.Canceled,
			c.InProgress, c.Pushed, c.Queued, c.Retried),
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
	fmt.Fprintf(w, "dry run: would upgrade %d devices of %s to %s\n", p.Targets,
		p.Firmware.ProductKey, p.Firmware.Version)
	for _, s := range p.Sources {
		fmt.Fprintf(w, "  from %s: %d devices\n", s.Version, s.Devices)
	}
	if len(p.Uncovered) > 0 {
		fmt.Fprintf(w, "not covered by the verification (allowed): %s\n", strings.Join(p.Uncovered, ", "))
	}
	fmt.Fprintf(w, "skipped: %s\n", ota.CountSummary(p.Skipped))
	for _, s := range p.Examples {
		line := fmt.Sprintf("  %s (%s): %s", s.DeviceKey, s.Version, s.Reason)
		if s.Detail != "" {
			line += ", " + s.Detail
		}
		fmt.Fprintln(w, line)
	}
	if v.ExpectedDuration != "" {
		fmt.Fprintf(w, "expected duration at %d pushes a minute: %s\n", c.Rate, v.ExpectedDuration)
	}
	return nil
}
