package ota

import "time"

// TaskStatus is where a batch task stands.
type TaskStatus string

// Task statuses. A running task pushes as its controls allow; the others
// are final and push nothing more (jobs already pushed run to their end).
const (
	TaskRunning   TaskStatus = "running"
	TaskCompleted TaskStatus = "completed"
	TaskAborted   TaskStatus = "aborted"
	TaskCanceled  TaskStatus = "canceled"
)

// TaskControls are the safety controls of a rollout (DESIGN.md 5.4).
type TaskControls struct {
	MaxConcurrent    int      `json:"maxConcurrent"`    // jobs pushed and unfinished at once; 0: no limit
	Rate             int      `json:"rate"`             // pushes per minute; 0: no limit
	Timeout          Duration `json:"timeout"`          // per job, from its first progress report
	StartTimeout     Duration `json:"startTimeout"`     // per job, from its latest push, until it starts
	Retries          int      `json:"retries"`          // new attempts for a failed or timed-out job
	AbortFailureRate float64  `json:"abortFailureRate"` // 0..1; 0: never abort
	AbortMinFinished int      `json:"abortMinFinished"` // finished jobs before the abort rule applies
	Incremental      bool     `json:"incremental"`      // devices that later report a source version join
}

// TaskCounts tally a task's jobs. Failed counts only final failures: a job
// that is retried is counted in Retried, and its next attempt in the rest.
type TaskCounts struct {
	Targets    int `json:"targets"`    // devices chosen; their first attempts
	Planned    int `json:"planned"`    // chosen, their job not created yet (CreateTask)
	Queued     int `json:"queued"`     // waiting for their turn to be pushed
	Pushed     int `json:"pushed"`     // pushed, not started yet
	InProgress int `json:"inProgress"` // reported progress
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	Canceled   int `json:"canceled"`
	Retried    int `json:"retried"`
	// PeakInFlight is the most jobs pushed and unfinished at once, the
	// figure that --max-concurrent bounds.
	PeakInFlight int `json:"peakInFlight"`
}

// Task is a batch upgrade: a rollout of a verified firmware to many devices,
// one job each. Its jobs are found through two sets (see taskQueue and
// taskFlight): those waiting for their turn, and those pushed and not
// finished, never by scanning every job.
type Task struct {
	ID            string   `json:"id"`
	FirmwareID    string   `json:"firmwareId"`
	ProductKey    string   `json:"productKey"`
	TargetVersion string   `json:"targetVersion"`
	FromVersions  []string `json:"fromVersions"`
	// AllowDowngrade lets devices on a newer version join an incremental
	// task, as it let them into the task at creation.
	AllowDowngrade bool           `json:"allowDowngrade,omitempty"`
	Status         TaskStatus     `json:"status"`
	Reason         string         `json:"reason,omitempty"` // why it aborted or was canceled
	Controls       TaskControls   `json:"controls"`
	Counts         TaskCounts     `json:"counts"`
	Skipped        map[string]int `json:"skipped,omitempty"`  // devices left out at creation, by reason
	Failures       map[string]int `json:"failures,omitempty"` // final failures by reason
	Tokens         float64        `json:"tokens"`             // rate limiter: pushes allowed now
	TokensAt       time.Time      `json:"tokensAt"`
	CheckedAt      time.Time      `json:"checkedAt,omitzero"` // timeouts last applied
	CreatedAt      time.Time      `json:"createdAt"`
	UpdatedAt      time.Time      `json:"updatedAt"`
	FinishedAt     time.Time      `json:"finishedAt,omitzero"`
}

// Lease is the record of the agent that holds the receiving session
// (DESIGN.md section 6). Other commands leave receiving to a live holder.
type Lease struct {
	Holder    string    `json:"holder"` // host:pid, for people
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Tick      Duration  `json:"tick"` // the agent's heartbeat period
	Since     time.Time `json:"since"`
	Heartbeat time.Time `json:"heartbeat"`
}
