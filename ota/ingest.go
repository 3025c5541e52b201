package ota

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"unicode/utf8"
)

// recentMessages is how many message hashes a device keeps for spotting
// redeliveries; a broker redelivers only the unacknowledged tail of what it sent, and the
// ingest loop acknowledges at most a batch at a time.
const recentMessages = 32

// Apply records a batch of device reports in one transaction: it learns
// devices from version reports, moves their jobs by the truth rules, queues
// pushes for devices that came back with a job still To be upgraded, and
// writes every change and every rejected message to the history. It returns
// the replies to send once the transaction has committed.
//
// Apply is idempotent for redeliveries: a report flagged Dup whose message
// the device already delivered is skipped whole, and so is a retained
// message already recorded (see applyRetained), without a write, so that a
// batch with nothing new leaves the store as it was.
func Apply(tx Tx, reports []Report, env Env) ([]Reply, error) {
	var replies []Reply
	w := newWork(tx, env)
	for i := range reports {
		r := &reports[i]
		reply, err := w.applyOne(r)
		if err != nil {
			return nil, err
		}
		if reply != nil {
			replies = append(replies, *reply)
		}
	}
	return replies, w.finish()
}

func (w *work) applyOne(r *Report) (*Reply, error) {
	tx, env := w.tx, w.env
	if r.Retained {
		return nil, w.applyRetained(r)
	}
	if r.Invalid != "" {
		return nil, messageEvent(tx, r, env, "rejected", r.Invalid)
	}
	d, err := tx.Device(r.ProductKey, r.DeviceKey)
	if err != nil {
		return nil, err
	}
	h := messageHash(r)
	if r.Dup && d != nil && slices.Contains(d.Recent, h) {
		// A QoS 1 redelivery of a message already recorded.
		return nil, nil
	}
	switch r.Kind {
	case ReportInform:
		return w.applyInform(d, r, h)
	case ReportProgress:
		return w.applyProgress(d, r, h)
	case ReportUpgradeReply:
		return nil, applyUpgradeReply(tx, d, r, h, env)
	case ReportGetVersion:
		return applyGetVersion(tx, d, r, h, env)
	}
	return nil, messageEvent(tx, r, env, "rejected", "unknown report kind "+string(r.Kind))
}

// messageHash identifies a message for duplicate detection.
func messageHash(r *Report) uint64 {
	f := fnv.New64a()
	f.Write([]byte(r.Topic))
	f.Write([]byte{0})
	f.Write(r.Payload)
	if r.Size > len(r.Payload) {
		// Only the start of an oversized payload is at hand; its size tells
		// apart two that start alike.
		fmt.Fprintf(f, "\x00%d", r.Size)
	}
	return f.Sum64()
}

func remember(d *Device, h uint64) {
	d.Recent = append(d.Recent, h)
	if len(d.Recent) > recentMessages {
		d.Recent = d.Recent[len(d.Recent)-recentMessages:]
	}
}

// messageEvent records a message that changed nothing but must be kept.
func messageEvent(tx Tx, r *Report, env Env, action, detail string) error {
	subject := "message"
	if r.ProductKey != "" && r.DeviceKey != "" && r.Invalid == "" {
		subject = DeviceSubject(r.ProductKey, r.DeviceKey)
	}
	return tx.AppendEvent(withMessage(&Event{Time: env.now(), Subject: subject,
		Action: action, Detail: detail}, r))
}

// withMessage attaches the message r to e: its topic and what the history
// keeps of its payload, the detail saying so when that is not all of it.
func withMessage(e *Event, r *Report) *Event {
	payload, note := historyPayload(r)
	e.Topic, e.Payload = r.Topic, payload
	switch {
	case note == "":
	case e.Detail == "":
		e.Detail = note
	default:
		e.Detail += "; " + note
	}
	return e
}

// historyPayload returns what the history keeps of r's payload: all of it
// up to MaxRecordedPayload, or MaxRejectedPayload for a rejected message,
// and otherwise its start with a note of the size it had. A device that
// sends large messages must not be able to fill the disk through the
// history, least of all with messages rejected for their size.
func historyPayload(r *Report) (payload, note string) {
	limit := MaxRecordedPayload
	if r.Invalid != "" {
		limit = MaxRejectedPayload
	}
	size := max(r.Size, len(r.Payload))
	if size <= limit {
		return string(r.Payload), ""
	}
	n := min(limit, len(r.Payload))
	// Cut before a character rather than through it, so that a payload of
	// valid UTF-8 stays valid.
	for i := n; i > 0 && i > n-utf8.UTFMax; i-- {
		if i == len(r.Payload) || utf8.RuneStart(r.Payload[i]) {
			n = i
			break
		}
	}
	return string(r.Payload[:n]), fmt.Sprintf("first %d of %d bytes kept", n, size)
}

func (w *work) applyInform(d *Device, r *Report, h uint64) (*Reply, error) {
	tx, env := w.tx, w.env
	now := env.now()
	action, detail := "reported", "version "+r.Version
	if d == nil {
		d = &Device{ProductKey: r.ProductKey, DeviceKey: r.DeviceKey, FirstSeen: now}
		action = "discovered"
	} else if d.Version != r.Version {
		detail = "version " + d.Version + " -> " + r.Version
	}
	d.Version, d.LastSeen = r.Version, now
	remember(d, h)
	if err := messageEvent(tx, r, env, action, detail); err != nil {
		return nil, err
	}
	if err := w.informJob(d, r); err != nil {
		return nil, err
	}
	if err := w.joinTasks(d); err != nil {
		return nil, err
	}
	if err := tx.PutDevice(d); err != nil {
		return nil, err
	}
	return &Reply{To: r, Code: 200}, nil
}

// informJob applies a version report to the device's active job, or to its
// last finished one (a late success corrects a failure), and re-pushes a
// job that was pushed and is still To be upgraded: devices report on every
// reconnect, so the report is the moment an offline device can receive its
// push. A batch job still waiting for its turn is not pushed early.
func (w *work) informJob(d *Device, r *Report) error {
	tx, env := w.tx, w.env
	id := d.ActiveJob
	if id == "" {
		id = d.LastJob
	}
	if id == "" {
		return nil
	}
	j, err := tx.Job(id)
	if err != nil || j == nil {
		return err
	}
	prev := j.Status
	if change := jobVersion(j, r.Version, env.now()); change != "" {
		return w.saveJob(d, j, prev, r, change)
	}
	if j.Status == JobToBeUpgraded && !j.DispatchedAt.IsZero() {
		return w.queuePush(j)
	}
	return nil
}

func (w *work) applyProgress(d *Device, r *Report, h uint64) (*Reply, error) {
	tx, env := w.tx, w.env
	reply := &Reply{To: r, Code: 200}
	if d == nil {
		return reply, messageEvent(tx, r, env, "ignored", "progress from a device that never reported a version")
	}
	d.LastSeen = env.now()
	remember(d, h)
	j, err := progressJob(tx, d, r)
	if err != nil {
		return nil, err
	}
	var prev JobStatus
	if j != nil {
		prev = j.Status
	}
	if j == nil {
		err = messageEvent(tx, r, env, "ignored", "progress with no matching active job")
	} else if change := jobProgress(j, r.Step, r.Desc, env.now()); change != "" {
		err = w.saveJob(d, j, prev, r, change)
	} else {
		err = tx.AppendEvent(withMessage(&Event{Time: env.now(), Subject: JobSubject(j.ID),
			Action: "late", Detail: "progress recorded, not applied"}, r))
	}
	if err != nil {
		return nil, err
	}
	return reply, tx.PutDevice(d)
}

// progressJob finds the job a progress report is about: the one the device
// echoed in jobId when it belongs to the device, else its active job.
func progressJob(tx Tx, d *Device, r *Report) (*Job, error) {
	id := d.ActiveJob
	if r.JobID != "" {
		id = r.JobID
	}
	if id == "" {
		return nil, nil
	}
	j, err := tx.Job(id)
	if err != nil || j == nil {
		return nil, err
	}
	if j.ProductKey != d.ProductKey || j.DeviceKey != d.DeviceKey {
		return nil, nil
	}
	return j, nil
}

func applyUpgradeReply(tx Tx, d *Device, r *Report, h uint64, env Env) error {
	if d != nil {
		d.LastSeen = env.now()
		remember(d, h)
		if err := tx.PutDevice(d); err != nil {
			return err
		}
	}
	detail := "device acknowledged the push"
	if r.Code != 200 {
		detail = "device answered the push with code " + strconv.Itoa(r.Code)
	}
	return messageEvent(tx, r, env, "acknowledged", detail)
}

// applyGetVersion answers a device that asks for pending firmware with its
// active job's firmware, pushing it as well when the job is To be upgraded.
func applyGetVersion(tx Tx, d *Device, r *Report, h uint64, env Env) (*Reply, error) {
	reply := &Reply{To: r, Code: 200, Data: []UpgradeParams{}}
	if d == nil || d.ActiveJob == "" {
		return reply, messageEvent(tx, r, env, "asked", "no pending firmware")
	}
	d.LastSeen = env.now()
	remember(d, h)
	if err := tx.PutDevice(d); err != nil {
		return nil, err
	}
	j, err := tx.Job(d.ActiveJob)
	if err != nil || j == nil {
		return reply, err
	}
	params, err := jobParams(tx, j, env)
	if err != nil {
		return nil, err
	}
	if j.Status == JobToBeUpgraded && j.DispatchedAt.IsZero() {
		// A batch job waiting for its turn: the device may not take it yet.
		return reply, messageEvent(tx, r, env, "asked", "firmware "+j.TargetVersion+" queued")
	}
	reply.Data = []UpgradeParams{params}
	if j.Status == JobToBeUpgraded {
		if err := queuePush(tx, j, env); err != nil {
			return nil, err
		}
	}
	return reply, messageEvent(tx, r, env, "asked", "pending firmware "+j.TargetVersion)
}

// saveJob stores a changed job, frees its device when it finished, records
// the change with the message that caused it, and updates the job's round
// or task.
func (w *work) saveJob(d *Device, j *Job, prev JobStatus, r *Report, change string) error {
	if !j.Status.Active() && d.ActiveJob == j.ID {
		d.ActiveJob, d.LastJob = "", j.ID
	}
	if j.RoundID != "" {
		w.rounds[j.RoundID] = true
	}
	if !j.Status.Active() {
		if err := dropPush(w.tx, j); err != nil {
			return err
		}
	}
	if err := w.tx.PutJob(j); err != nil {
		return err
	}
	e := &Event{Time: w.env.now(), Subject: JobSubject(j.ID), Action: string(j.Status), Detail: change}
	if r != nil {
		withMessage(e, r)
	}
	if err := w.tx.AppendEvent(e); err != nil {
		return err
	}
	if j.TaskID != "" {
		return w.taskJobChanged(d, j, prev)
	}
	return nil
}
