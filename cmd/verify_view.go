package cmd

import (
	"fmt"
	"strconv"

	"github.com/otactl/otactl/ota"
)

// jobView is a job as the verify and batch commands print it; the JSON
// field names match the table's columns.
type jobView struct {
	DeviceKey     string        `json:"deviceKey"`
	Status        ota.JobStatus `json:"status"`
	StatusLabel   string        `json:"statusLabel"`
	Step          *int          `json:"step,omitempty"`
	Description   string        `json:"description,omitempty"`
	Reason        string        `json:"reason,omitempty"`
	SourceVersion string        `json:"sourceVersion"`
	TargetVersion string        `json:"targetVersion"`
	JobID         string        `json:"jobId"`
	Attempt       int           `json:"attempt"`
	PushedAt      *timeJSON     `json:"pushedAt,omitempty"`
	StartedAt     *timeJSON     `json:"startedAt,omitempty"`
	FinishedAt    *timeJSON     `json:"finishedAt,omitempty"`
}

// roundView is a verification round with its jobs and tallies.
type roundView struct {
	FirmwareID   string         `json:"firmwareId"`
	Round        int            `json:"round"`
	RoundID      string         `json:"roundId"`
	FromVersions []string       `json:"fromVersions"`
	Status       string         `json:"firmwareStatus"`
	Verdict      string         `json:"verdict,omitempty"` // this round's own verdict
	Counts       map[string]int `json:"counts"`
	Jobs         []jobView      `json:"jobs"`
	CreatedAt    timeJSON       `json:"createdAt"`
}

func newJobView(j *ota.Job) jobView {
	return jobView{DeviceKey: j.DeviceKey, Status: j.Status, StatusLabel: j.Status.Label(),
		Step: j.Step, Description: j.Desc, Reason: j.Reason, SourceVersion: j.SourceVersion,
		TargetVersion: j.TargetVersion, JobID: j.ID, Attempt: j.Attempt,
		PushedAt: optTime(j.PushedAt), StartedAt: optTime(j.StartedAt), FinishedAt: optTime(j.FinishedAt)}
}

func newRoundView(rep *ota.RoundReport) roundView {
	v := roundView{FirmwareID: rep.Firmware.ID, Round: rep.Round.Number, RoundID: rep.Round.ID,
		FromVersions: rep.Round.FromVersions, Status: string(rep.Firmware.Status),
		Verdict: string(rep.Verdict()), Counts: map[string]int{},
		CreatedAt: timeJSON(rep.Round.CreatedAt), Jobs: []jobView{}}
	for s, n := range rep.Counts() {
		v.Counts[string(s)] = n
	}
	for _, j := range rep.Jobs {
		v.Jobs = append(v.Jobs, newJobView(j))
	}
	return v
}

// printRound renders a round: a summary line and one row per device.
func (a *App) printRound(rep *ota.RoundReport) error {
	if a.Settings.JSON {
		return writeJSON(a.IO.Out, newRoundView(rep))
	}
	return a.renderRound(rep, true)
}

// renderRound prints a round's table, after a summary line on a terminal
// when title is set.
func (a *App) renderRound(rep *ota.RoundReport, title bool) error {
	tty, now := a.IO.OutTTY, a.Now()
	if tty && title {
		verdict := ""
		if rep.Firmware.Verdict != ota.VerdictNone {
			verdict = ", verdict " + string(rep.Firmware.Verdict)
		}
		fmt.Fprintf(a.IO.Out, "%s %s/%s: round %d, %s%s\n", rep.Firmware.ID, rep.Firmware.ProductKey,
			rep.Firmware.Version, rep.Round.Number, rep.Firmware.Status, verdict)
	}
	t := table{header: []string{"DEVICE", "STATUS", "STEP", "DESCRIPTION", "REASON", "PUSHED", "STARTED", "FINISHED"}}
	for _, j := range rep.Jobs {
		step := ""
		if j.Step != nil {
			step = strconv.Itoa(*j.Step)
		}
		t.add(j.DeviceKey, j.Status.Label(), step, j.Desc, j.Reason, timeCell(j.PushedAt, tty, now),
			timeCell(j.StartedAt, tty, now), timeCell(j.FinishedAt, tty, now))
	}
	return t.render(a.IO.Out, tty)
}
