package state

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/otactl/otactl/ota"
)

// The records written with every device message (devices, jobs, pushes and
// history events) are stored in a compact binary form; the rest (firmware,
// rounds, tasks, the lease) stay JSON. Recording a message reads and
// rewrites a device and a job and appends an event, and decoding and
// encoding them as JSON took half the time of recording (docs/performance.md).
//
// A binary record is one format byte, then its fields in declaration order:
// strings as a uvarint length and their bytes, integers as varints, times
// as Unix seconds (varint) and nanoseconds (uvarint), read back in UTC. A
// JSON record starts with '{', which no format byte is, so files of schema
// version 2, whose records are all JSON, are read as they are and each
// record takes the binary form when it is next written.

// formatV1 is the first binary record format. A field added later needs a
// new format byte and a decoder that still reads this one.
const formatV1 byte = 1

var errShortRecord = errors.New("record ends early")

// encodeRecord returns rec's stored form.
func encodeRecord(rec any) ([]byte, error) {
	var w recWriter
	switch r := rec.(type) {
	case *ota.Device:
		w.device(r)
	case *ota.Job:
		w.job(r)
	case *ota.Push:
		w.push(r)
	case *ota.Event:
		w.event(r)
	default:
		v, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("store: encode record: %w", err)
		}
		return v, nil
	}
	return w.b, nil
}

// RecordBytes returns the bytes the store keeps for rec, a *ota.Device,
// *ota.Job, *ota.Push, *ota.Event or any other record. It exists for
// measurements that compare the store with bare bbolt writing the same
// bytes (bench/).
func RecordBytes(rec any) ([]byte, error) { return encodeRecord(rec) }

// decodeRecord fills rec from its stored form, binary or JSON.
func decodeRecord(v []byte, rec any) error {
	if len(v) == 0 || v[0] == '{' {
		return json.Unmarshal(v, rec)
	}
	if v[0] != formatV1 {
		return fmt.Errorf("unknown record format %d", v[0])
	}
	r := recReader{b: v[1:]}
	switch rec := rec.(type) {
	case *ota.Device:
		r.device(rec)
	case *ota.Job:
		r.job(rec)
	case *ota.Push:
		r.push(rec)
	case *ota.Event:
		r.event(rec)
	default:
		return fmt.Errorf("a %T is never stored in binary form", rec)
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the record's last field", len(r.b))
	}
	return r.err
}

// recWriter appends fields to a record.
type recWriter struct{ b []byte }

func (w *recWriter) start(size int) {
	w.b = make([]byte, 1, size)
	w.b[0] = formatV1
}

func (w *recWriter) str(s string) {
	w.b = binary.AppendUvarint(w.b, uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *recWriter) int(n int64) { w.b = binary.AppendVarint(w.b, n) }

func (w *recWriter) time(t time.Time) {
	w.b = binary.AppendVarint(w.b, t.Unix())
	w.b = binary.AppendUvarint(w.b, uint64(t.Nanosecond()))
}

func (w *recWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

func (w *recWriter) device(d *ota.Device) {
	w.start(64 + len(d.ProductKey) + len(d.DeviceKey) + 8*len(d.Recent))
	w.str(d.ProductKey)
	w.str(d.DeviceKey)
	w.str(d.Version)
	w.time(d.FirstSeen)
	w.time(d.LastSeen)
	w.str(d.ActiveJob)
	w.str(d.LastJob)
	w.b = binary.AppendUvarint(w.b, uint64(len(d.Recent)))
	for _, h := range d.Recent {
		w.b = binary.BigEndian.AppendUint64(w.b, h)
	}
}

func (w *recWriter) job(j *ota.Job) {
	w.start(160 + len(j.Desc) + len(j.Reason))
	w.str(j.ID)
	w.str(j.FirmwareID)
	w.str(j.RoundID)
	w.str(j.TaskID)
	w.str(j.ProductKey)
	w.str(j.DeviceKey)
	w.str(j.SourceVersion)
	w.str(j.TargetVersion)
	w.str(string(j.Status))
	w.bool(j.Step != nil)
	if j.Step != nil {
		w.int(int64(*j.Step))
	}
	w.str(j.Desc)
	w.str(j.Reason)
	w.int(int64(j.Attempt))
	w.bool(j.ReachedFull)
	w.time(j.CreatedAt)
	w.time(j.DispatchedAt)
	w.str(j.PushID)
	w.time(j.PushedAt)
	w.time(j.StartedAt)
	w.time(j.FinishedAt)
}

func (w *recWriter) push(p *ota.Push) {
	w.start(128 + len(p.Params.FileURL))
	w.str(p.ID)
	w.str(p.JobID)
	w.str(p.ProductKey)
	w.str(p.DeviceKey)
	w.str(p.Params.Version)
	w.str(p.Params.Sign)
	w.str(p.Params.SignMethod)
	w.str(p.Params.FileURL)
	w.int(p.Params.FileSize)
	w.str(p.Params.JobID)
	w.time(p.CreatedAt)
}

func (w *recWriter) event(e *ota.Event) {
	w.start(48 + len(e.Subject) + len(e.Detail) + len(e.Topic) + len(e.Payload))
	w.b = binary.AppendUvarint(w.b, e.Seq)
	w.time(e.Time)
	w.str(e.Subject)
	w.str(e.Action)
	w.str(e.Detail)
	w.str(e.Topic)
	w.str(e.Payload)
}

// recReader reads fields from a record. After the first error every read
// returns a zero value and the error stays.
type recReader struct {
	b   []byte
	err error
}

func (r *recReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	n, size := binary.Uvarint(r.b)
	if size <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[size:]
	return n
}

func (r *recReader) int() int64 {
	if r.err != nil {
		return 0
	}
	n, size := binary.Varint(r.b)
	if size <= 0 {
		r.err = errShortRecord
		return 0
	}
	r.b = r.b[size:]
	return n
}

func (r *recReader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShortRecord
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *recReader) str() string { return string(r.bytes(r.uvarint())) }

func (r *recReader) time() time.Time {
	sec, nsec := r.int(), r.uvarint()
	if r.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		r.err = fmt.Errorf("time with %d nanoseconds", nsec)
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

func (r *recReader) bool() bool {
	v := r.bytes(1)
	if r.err != nil {
		return false
	}
	if v[0] > 1 {
		r.err = fmt.Errorf("flag byte %d", v[0])
	}
	return v[0] == 1
}

func (r *recReader) device(d *ota.Device) {
	d.ProductKey = r.str()
	d.DeviceKey = r.str()
	d.Version = r.str()
	d.FirstSeen = r.time()
	d.LastSeen = r.time()
	d.ActiveJob = r.str()
	d.LastJob = r.str()
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.b))/8 {
		r.err = errShortRecord
	}
	raw := r.bytes(8 * n)
	if r.err != nil || n == 0 {
		return
	}
	d.Recent = make(ota.Hashes, n)
	for i := range d.Recent {
		d.Recent[i] = binary.BigEndian.Uint64(raw[8*i:])
	}
}

func (r *recReader) job(j *ota.Job) {
	j.ID = r.str()
	j.FirmwareID = r.str()
	j.RoundID = r.str()
	j.TaskID = r.str()
	j.ProductKey = r.str()
	j.DeviceKey = r.str()
	j.SourceVersion = r.str()
	j.TargetVersion = r.str()
	j.Status = ota.JobStatus(r.str())
	if r.bool() {
		step := int(r.int())
		j.Step = &step
	}
	j.Desc = r.str()
	j.Reason = r.str()
	j.Attempt = int(r.int())
	j.ReachedFull = r.bool()
	j.CreatedAt = r.time()
	j.DispatchedAt = r.time()
	j.PushID = r.str()
	j.PushedAt = r.time()
	j.StartedAt = r.time()
	j.FinishedAt = r.time()
}

func (r *recReader) push(p *ota.Push) {
	p.ID = r.str()
	p.JobID = r.str()
	p.ProductKey = r.str()
	p.DeviceKey = r.str()
	p.Params.Version = r.str()
	p.Params.Sign = r.str()
	p.Params.SignMethod = r.str()
	p.Params.FileURL = r.str()
	p.Params.FileSize = r.int()
	p.Params.JobID = r.str()
	p.CreatedAt = r.time()
}

func (r *recReader) event(e *ota.Event) {
	e.Seq = r.uvarint()
	e.Time = r.time()
	e.Subject = r.str()
	e.Action = r.str()
	e.Detail = r.str()
	e.Topic = r.str()
	e.Payload = r.str()
}
