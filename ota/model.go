package ota

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FirmwareStatus is where a firmware stands in verification.
type FirmwareStatus string

// Firmware statuses, in the only order a firmware moves through them.
const (
	FirmwareUnverified FirmwareStatus = "unverified"
	FirmwareVerifying  FirmwareStatus = "verifying"
	FirmwareVerified   FirmwareStatus = "verified"
)

// Verdict is the outcome of a firmware's newest finished verification round.
type Verdict string

// Verdicts; the zero value means no round has finished.
const (
	VerdictNone   Verdict = ""
	VerdictPassed Verdict = "passed"
	VerdictFailed Verdict = "failed"
)

// Sign methods accepted for firmware digests.
const (
	SignSHA256 = "sha256"
	SignMD5    = "md5"
)

// Firmware is a registered image. Its JSON form is both the stored record
// and the document that commands print.
type Firmware struct {
	ID          string         `json:"id"`
	ProductKey  string         `json:"productKey"`
	Name        string         `json:"name"`
	Version     string         `json:"version"`
	SignMethod  string         `json:"signMethod"`
	Sign        string         `json:"sign"`
	Size        int64          `json:"fileSize"`
	URL         string         `json:"url,omitempty"`        // hosted elsewhere (firmware add --url)
	StoredFile  string         `json:"storedFile,omitempty"` // name in the file store (firmware add --file)
	Description string         `json:"description,omitempty"`
	Status      FirmwareStatus `json:"status"`
	Verdict     Verdict        `json:"verdict,omitempty"`
	CreatedAt   time.Time      `json:"createdAt"`
	UpdatedAt   time.Time      `json:"updatedAt"`
}

// Device is a device learned from its version reports.
type Device struct {
	ProductKey string    `json:"productKey"`
	DeviceKey  string    `json:"deviceKey"`
	Version    string    `json:"version"` // as last reported, untrimmed
	FirstSeen  time.Time `json:"firstSeen"`
	LastSeen   time.Time `json:"lastSeen"`
	// ActiveJob is the ID of the device's to-be-upgraded or in-progress job.
	ActiveJob string `json:"activeJob,omitempty"`
	// LastJob is the ID of the device's newest finished job, kept so that a
	// late report of the target version can still correct it (truth rule 5).
	LastJob string `json:"lastJob,omitempty"`
	// Recent holds hashes of the device's latest messages, so that a QoS 1
	// redelivery (DUP flag) of a message already recorded is recognised.
	Recent Hashes `json:"recent,omitempty"`
}

// JobStatus is one device's progress within a round or task.
type JobStatus string

// Job statuses. To-be-upgraded and in-progress are active; the rest are
// finished.
const (
	JobToBeUpgraded JobStatus = "to-be-upgraded"
	JobInProgress   JobStatus = "in-progress"
	JobSucceeded    JobStatus = "succeeded"
	JobFailed       JobStatus = "failed"
	JobCanceled     JobStatus = "canceled"
)

// Active reports whether a job in status s still holds its device.
func (s JobStatus) Active() bool { return s == JobToBeUpgraded || s == JobInProgress }

// Label is the status as the OTA consoles spell it in tables.
func (s JobStatus) Label() string {
	switch s {
	case JobToBeUpgraded:
		return "To be upgraded"
	case JobInProgress:
		return "In progress"
	case JobSucceeded:
		return "Upgraded successfully"
	case JobFailed:
		return "Upgrade failed"
	case JobCanceled:
		return "Canceled"
	}
	return string(s)
}

// Job is one device's upgrade within a verification round or a batch task.
type Job struct {
	ID            string    `json:"id"`
	FirmwareID    string    `json:"firmwareId"`
	RoundID       string    `json:"roundId,omitempty"`
	TaskID        string    `json:"taskId,omitempty"`
	ProductKey    string    `json:"productKey"`
	DeviceKey     string    `json:"deviceKey"`
	SourceVersion string    `json:"sourceVersion"`
	TargetVersion string    `json:"targetVersion"`
	Status        JobStatus `json:"status"`
	Step          *int      `json:"step,omitempty"` // last progress step reported
	Desc          string    `json:"desc,omitempty"` // last progress description
	Reason        string    `json:"reason,omitempty"`
	Attempt       int       `json:"attempt"`
	ReachedFull   bool      `json:"reachedFull,omitempty"` // progress 100 was reported
	CreatedAt     time.Time `json:"createdAt"`
	// DispatchedAt is when the job was first allowed to be pushed: at once
	// for verification jobs, when its turn came for batch jobs. Only
	// dispatched jobs are pushed again when their device reports.
	DispatchedAt time.Time `json:"dispatchedAt,omitzero"`
	// PushID names the job's upgrade command waiting in the outbox, if any.
	PushID     string    `json:"pushId,omitempty"`
	PushedAt   time.Time `json:"pushedAt,omitzero"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// Round is one verification round of a firmware: up to MaxRoundDevices jobs.
type Round struct {
	ID           string    `json:"id"`
	FirmwareID   string    `json:"firmwareId"`
	Number       int       `json:"number"` // 1 for the firmware's first round
	FromVersions []string  `json:"fromVersions"`
	JobIDs       []string  `json:"jobIds"`
	MinSuccess   int       `json:"minSuccess,omitempty"` // 0: every job not canceled
	MaxFailures  int       `json:"maxFailures"`
	JobTimeout   Duration  `json:"jobTimeout"`
	CreatedAt    time.Time `json:"createdAt"`
}

// MaxRoundDevices is the most devices a verification round may hold.
const MaxRoundDevices = 5

// UpgradeParams are the params of an ota.device.upgrade command and the
// entries of a getversion reply (DESIGN.md section 3).
type UpgradeParams struct {
	Version    string `json:"version"`
	Sign       string `json:"sign"`
	SignMethod string `json:"signMethod"`
	FileURL    string `json:"fileUrl"`
	FileSize   int64  `json:"fileSize"`
	JobID      string `json:"jobId,omitempty"`
}

// Push is an upgrade command waiting in the outbox. It is written in the
// same transaction as its job, sent after commit, and deleted once the
// broker acknowledged it.
type Push struct {
	ID         string        `json:"id"`
	JobID      string        `json:"jobId"`
	ProductKey string        `json:"productKey"`
	DeviceKey  string        `json:"deviceKey"`
	Params     UpgradeParams `json:"params"`
	CreatedAt  time.Time     `json:"createdAt"`
}

// Event is one entry of the append-only history: a change to a firmware,
// round, task, job or device, or a device message that changed nothing.
type Event struct {
	Seq     uint64    `json:"seq"`               // assigned by the store, increasing
	Time    time.Time `json:"time"`              // otactl's clock when it happened
	Subject string    `json:"subject"`           // "firmware/fw-1", "job/job-7", "device/pk/dk", ...
	Action  string    `json:"action"`            // "added", "status", "dropped", ...
	Detail  string    `json:"detail,omitempty"`  // a sentence for people
	Topic   string    `json:"topic,omitempty"`   // of the message that caused it
	Payload string    `json:"payload,omitempty"` // the raw message that caused it, or its start
}

// Subject names, so that history queries agree with history writers.
func FirmwareSubject(id string) string   { return "firmware/" + id }
func JobSubject(id string) string        { return "job/" + id }
func RoundSubject(id string) string      { return "round/" + id }
func DeviceSubject(pk, dk string) string { return "device/" + pk + "/" + dk }

// ID prefixes. Every record ID is a prefix, a dash and a decimal sequence
// number from Tx.NextSeq, so that stores can keep records in creation order.
const (
	FirmwarePrefix = "fw"
	RoundPrefix    = "round"
	JobPrefix      = "job"
	PushPrefix     = "push"
	TaskPrefix     = "task"
)

// FormatID builds a record ID from a prefix and a sequence number.
func FormatID(prefix string, seq uint64) string {
	return prefix + "-" + strconv.FormatUint(seq, 10)
}

// ParseID splits a record ID made by FormatID. ok is false for any other text.
func ParseID(id string) (prefix string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 || FormatID(id[:i], seq) != id {
		return "", 0, false
	}
	return id[:i], seq, true
}

// Hashes are message hashes, stored as one base64 string of 8-byte values:
// a device record is rewritten with every message, and as a JSON array of
// numbers the hashes were three quarters of its size.
type Hashes []uint64

// MarshalJSON writes the hashes as a base64 string.
func (h Hashes) MarshalJSON() ([]byte, error) {
	raw := make([]byte, 0, 8*len(h))
	for _, v := range h {
		raw = binary.BigEndian.AppendUint64(raw, v)
	}
	out := append(make([]byte, 0, base64.StdEncoding.EncodedLen(len(raw))+2), '"')
	out = base64.StdEncoding.AppendEncode(out, raw)
	return append(out, '"'), nil
}

// UnmarshalJSON reads the base64 form, and the array of numbers that state
// files written before it hold.
func (h *Hashes) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '[' {
		return json.Unmarshal(data, (*[]uint64)(h))
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw)%8 != 0 {
		return fmt.Errorf("message hashes %q are not base64 of 8-byte values", s)
	}
	*h = make(Hashes, 0, len(raw)/8)
	for i := 0; i < len(raw); i += 8 {
		*h = append(*h, binary.BigEndian.Uint64(raw[i:]))
	}
	return nil
}
