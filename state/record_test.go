package state

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/otactl/otactl/ota"
)

// putJSON stores rec as schema version 2 and earlier stored every record.
func putJSON(b *bolt.Tx, bucket, k []byte, rec any) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Bucket(bucket).Put(k, v)
}

// binaryRecords has one record of each binary kind with every field set,
// and ones with every field empty.
func binaryRecords() []any {
	at := time.Date(2026, 12, 3, 21, 30, 15, 123456789, time.UTC)
	step := 0
	return []any{
		&ota.Device{ProductKey: "温湿度", DeviceKey: "café_2", Version: "1.6.0 ", FirstSeen: at,
			LastSeen: at.Add(time.Hour), ActiveJob: "job-7", LastJob: "job-3",
			Recent: ota.Hashes{1, 1 << 63, 0xdeadbeef}},
		&ota.Device{},
		&ota.Job{ID: "job-7", FirmwareID: "fw-2", RoundID: "round-1", TaskID: "task-4", ProductKey: "pk",
			DeviceKey: "dk", SourceVersion: "1.0", TargetVersion: "2.0", Status: ota.JobFailed, Step: &step,
			Desc: "下载\n失败", Reason: "download", Attempt: 3, ReachedFull: true, CreatedAt: at,
			DispatchedAt: at.Add(time.Second), PushID: "push-9", PushedAt: at.Add(2 * time.Second),
			StartedAt: at.Add(3 * time.Second), FinishedAt: time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)},
		&ota.Job{},
		&ota.Push{ID: "push-9", JobID: "job-7", ProductKey: "pk", DeviceKey: "dk",
			Params: ota.UpgradeParams{Version: "2.0", Sign: "ab12", SignMethod: "sha256",
				FileURL: "http://h/f?a=1", FileSize: 1 << 40, JobID: "job-7"}, CreatedAt: at},
		&ota.Push{},
		&ota.Event{Seq: 1 << 40, Time: at, Subject: "job/job-7", Action: "failed", Detail: "step -2",
			Topic: "/sys/pk/dk/ota/device/progress", Payload: `{"id":"1","params":{"step":"-2"}}` + "\x00"},
		&ota.Event{},
	}
}

// Each binary record decodes to exactly what was encoded, and to what its
// JSON form decodes to, so switching forms changes no value.
func TestRecordRoundTrip(t *testing.T) {
	for _, rec := range binaryRecords() {
		v, err := encodeRecord(rec)
		if err != nil {
			t.Fatalf("encodeRecord(%+v): %v", rec, err)
		}
		if v[0] != formatV1 {
			t.Errorf("encodeRecord(%T) starts with %d, want the binary format %d", rec, v[0], formatV1)
		}
		got := reflect.New(reflect.TypeOf(rec).Elem()).Interface()
		if err := decodeRecord(v, got); err != nil {
			t.Fatalf("decodeRecord(%T): %v", rec, err)
		}
		if !reflect.DeepEqual(got, rec) {
			t.Errorf("binary round trip:\n got %+v\nwant %+v", got, rec)
		}
		j, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		fromJSON := reflect.New(reflect.TypeOf(rec).Elem()).Interface()
		if err := decodeRecord(j, fromJSON); err != nil {
			t.Fatalf("decodeRecord(JSON %T): %v", rec, err)
		}
		if !reflect.DeepEqual(fromJSON, got) {
			t.Errorf("JSON and binary forms disagree:\nJSON   %+v\nbinary %+v", fromJSON, got)
		}
	}
}

// Records that stay JSON are written as JSON.
func TestRecordJSONKinds(t *testing.T) {
	for _, rec := range []any{&ota.Firmware{ID: "fw-1"}, &ota.Round{ID: "round-1"}, &ota.Task{ID: "task-1"},
		&ota.Lease{Holder: "h"}} {
		v, err := encodeRecord(rec)
		if err != nil || len(v) == 0 || v[0] != '{' {
			t.Errorf("encodeRecord(%T) = %q, %v; want a JSON object", rec, v, err)
		}
	}
}

// A damaged binary record is an error, never a panic and never a value:
// every truncation, a trailing byte, an unknown format, a bad flag.
func TestRecordDamaged(t *testing.T) {
	for _, rec := range binaryRecords() {
		v, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		newRec := func() any { return reflect.New(reflect.TypeOf(rec).Elem()).Interface() }
		for n := 1; n < len(v); n++ {
			if err := decodeRecord(v[:n], newRec()); err == nil {
				t.Errorf("decodeRecord(%T cut to %d of %d bytes) = nil error", rec, n, len(v))
			}
		}
		if err := decodeRecord(append(v[:len(v):len(v)], 0), newRec()); err == nil ||
			!strings.Contains(err.Error(), "after the record's last field") {
			t.Errorf("decodeRecord(%T with a trailing byte) = %v, want the extra bytes named", rec, err)
		}
		bad := append([]byte{9}, v[1:]...)
		if err := decodeRecord(bad, newRec()); err == nil || !strings.Contains(err.Error(), "format 9") {
			t.Errorf("decodeRecord(format 9) = %v, want the unknown format named", err)
		}
	}
	// A device claiming more message hashes than it holds.
	v, _ := encodeRecord(&ota.Device{})
	v[len(v)-1] = 0x7f
	if err := decodeRecord(v, new(ota.Device)); err == nil {
		t.Errorf("decodeRecord(device claiming 127 hashes with none) = nil error")
	}
	// A job whose ReachedFull flag byte is neither 0 nor 1.
	j := &ota.Job{Attempt: 1}
	v, _ = encodeRecord(j)
	w := recWriter{}
	w.start(1)
	for range 9 {
		w.str("")
	}
	w.bool(false)
	w.str("")
	w.str("")
	w.int(1)
	flagAt := len(w.b)
	v[flagAt] = 7
	if err := decodeRecord(v, new(ota.Job)); err == nil || !strings.Contains(err.Error(), "flag byte 7") {
		t.Errorf("decodeRecord(job with flag byte 7) = %v, want the flag named", err)
	}
}

// A version 2 file holds every record as JSON. Opened for writing it is
// migrated to version 3 without rewriting a record; each reads back as it
// was, and takes the binary form when it is written again.
func TestOpenMigratesVersion2(t *testing.T) {
	path := versionN(t, 2)
	recs := binaryRecords()
	dev, job, push, ev := recs[0].(*ota.Device), recs[2].(*ota.Job), recs[4].(*ota.Push), recs[6].(*ota.Event)
	ev.Seq = 1
	rawBolt(t, path, nil, func(b *bolt.Tx) error {
		jk, _ := idKey(ota.JobPrefix, job.ID)
		pushK, _ := idKey(ota.PushPrefix, push.ID)
		for _, put := range []struct {
			bucket, key []byte
			rec         any
		}{
			{bucketDevice, devKey(dev.ProductKey, dev.DeviceKey), dev},
			{bucketJob, jk, job},
			{bucketPush, pushK, push},
			{bucketHistory, u64(1), ev},
		} {
			if err := putJSON(b, put.bucket, put.key, put.rec); err != nil {
				return err
			}
		}
		if _, err := b.Bucket(bucketHistory).NextSequence(); err != nil {
			return err
		}
		return b.Bucket(bucketHistorySub).Put(join(ev.Subject, u64(1)), nil)
	})
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(schema 2): %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if v := readVersion(t, s); v != 3 {
		t.Errorf("schema after migration = %d, want 3", v)
	}
	check := func(when string) {
		t.Helper()
		err := s.View(func(tx ota.Tx) error {
			d, err := tx.Device(dev.ProductKey, dev.DeviceKey)
			if err != nil || !reflect.DeepEqual(d, dev) {
				t.Errorf("%s: Device = %+v, %v; want %+v", when, d, err, dev)
			}
			j, err := tx.Job(job.ID)
			if err != nil || !reflect.DeepEqual(j, job) {
				t.Errorf("%s: Job = %+v, %v; want %+v", when, j, err, job)
			}
			var pushes []*ota.Push
			if err := tx.EachPush(func(p *ota.Push) error { pushes = append(pushes, p); return nil }); err != nil ||
				len(pushes) != 1 || !reflect.DeepEqual(pushes[0], push) {
				t.Errorf("%s: EachPush = %+v, %v; want [%+v]", when, pushes, err, push)
			}
			var events []*ota.Event
			if err := tx.EachEvent(ev.Subject, func(e *ota.Event) error { events = append(events, e); return nil }); err != nil ||
				len(events) != 1 || !reflect.DeepEqual(events[0], ev) {
				t.Errorf("%s: EachEvent = %+v, %v; want [%+v]", when, events, err, ev)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The records are unrelated to each other (the job names a task
		// that is not there), so only the structural checks apply.
		if errs := s.check(false); len(errs) != 0 {
			t.Errorf("%s: check = %v, want no problems", when, errs)
		}
	}
	check("after migration")
	edit(t, s, func(tx ota.Tx) error {
		if err := tx.PutDevice(dev); err != nil {
			return err
		}
		return tx.PutJob(job)
	})
	editRaw(t, s, func(b *bolt.Tx) error {
		jk, _ := idKey(ota.JobPrefix, job.ID)
		for _, v := range [][]byte{b.Bucket(bucketDevice).Get(devKey(dev.ProductKey, dev.DeviceKey)),
			b.Bucket(bucketJob).Get(jk)} {
			if len(v) == 0 || v[0] != formatV1 {
				t.Errorf("a record written after migration starts with %q, want the binary format", v[:1])
			}
		}
		return nil
	})
	check("after rewriting")
}
