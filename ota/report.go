package ota

import "time"

// ReportKind is the kind of a message a device sent.
type ReportKind string

// Report kinds, one per device topic of DESIGN.md section 3.
const (
	ReportInform       ReportKind = "inform"        // the device's current version
	ReportProgress     ReportKind = "progress"      // a step of an upgrade, or its failure
	ReportUpgradeReply ReportKind = "upgrade_reply" // the device acknowledged a push
	ReportGetVersion   ReportKind = "getversion"    // the device asks for pending firmware
)

// Report is one device message as the transport parsed and validated it.
// Reports whose topic or payload failed validation still reach ota, with
// Invalid set, so that they are recorded in the history; they change no
// state.
type Report struct {
	Kind       ReportKind
	ProductKey string
	DeviceKey  string
	ID         string // the envelope's id, echoed in the reply
	Method     string // as the device spelled it
	Version    string // inform: the reported version
	Step       int    // progress: percent done, or a negative failure code
	Desc       string // progress: the device's description
	Code       int    // upgrade_reply: the device's code
	JobID      string // upgrade_reply, progress: the jobId a device echoed, if any

	Topic      string
	Payload    []byte // the raw message, kept for the history
	Size       int    // the payload's length as received; more than len(Payload) when cut
	Dup        bool   // the broker flagged it as a redelivery
	Retained   bool   // a retained message: stale by definition (truth rule 6)
	ReceivedAt time.Time
	Invalid    string // why the message was rejected; empty when valid
}

// Reply is an answer otactl sends to a device request on the request's
// topic with "_reply" appended.
type Reply struct {
	To      *Report
	Code    int
	Data    any
	Message string
}

// StepReason maps a negative progress step to the failure reason recorded
// on the job.
func StepReason(step int) string {
	switch step {
	case -1:
		return "upgrade failed"
	case -2:
		return "download failed"
	case -3:
		return "verification failed"
	case -4:
		return "flash write failed"
	case -5:
		return "device declined"
	}
	return "device-specific failure"
}

// The history keeps at most this much of a device message's payload, so
// that no device can fill the disk through it.
const (
	// MaxRejectedPayload is what a rejected message keeps: enough to see
	// what the device sent, never the whole of a payload that a size or
	// depth limit refused.
	MaxRejectedPayload = 256
	// MaxRecordedPayload is what an accepted message keeps. Protocol
	// messages are a few hundred bytes; the limit only stops a device from
	// storing the 512 KiB a message may have (DESIGN.md section 3) with
	// every report.
	MaxRecordedPayload = 4 << 10
)
