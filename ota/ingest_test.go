package ota_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/otactl/otactl/ota"
)

// events returns the subject's history.
func (f *fleet) events(subject string) []*ota.Event {
	f.t.Helper()
	var events []*ota.Event
	f.view(func(tx ota.Tx) error {
		return tx.EachEvent(subject, func(e *ota.Event) error {
			events = append(events, e)
			return nil
		})
	})
	return events
}

// countActions counts the subject's events with the given action.
func (f *fleet) countActions(subject, action string) int {
	f.t.Helper()
	n := 0
	for _, e := range f.events(subject) {
		if e.Action == action {
			n++
		}
	}
	return n
}

// A rejected message was stored whole: three device messages of 20,000,000
// bytes grew the state file from 1 MB to 98 MB, although their size was
// what rejected them. The history keeps the reason and a short prefix of
// the payload, with its size.
func TestRejectedMessageKeepsOnlyAPrefix(t *testing.T) {
	nested := `{"id":"1","method":"ota.device.inform","params":` +
		strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "}"
	tests := []struct {
		name    string
		payload string
		reason  string
	}{
		{"oversized", strings.Repeat("A", 20000000),
			"payload is 20000000 bytes; the limit is 524288"},
		{"too deep", nested, "payload is not valid JSON: exceeded max depth"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t)
			r := ota.Report{Kind: ota.ReportInform, ProductKey: "pk1", DeviceKey: "sim-8",
				Topic: "/sys/pk1/sim-8/ota/device/inform", Payload: []byte(tt.payload),
				Invalid: tt.reason}
			f.send(r, r, r)
			events := f.events("message")
			if len(events) != 3 {
				t.Fatalf("rejected messages recorded = %d, want 3", len(events))
			}
			e := events[0]
			if len(e.Payload) > ota.MaxRejectedPayload {
				t.Errorf("Apply(%d-byte rejected payload) kept %d bytes, want at most %d",
					len(tt.payload), len(e.Payload), ota.MaxRejectedPayload)
			}
			if e.Payload == "" || !strings.HasPrefix(tt.payload, e.Payload) {
				t.Errorf("Apply(rejected payload) kept %.40q, want a prefix of the payload",
					e.Payload)
			}
			size := fmt.Sprintf("%d bytes", len(tt.payload))
			if !strings.Contains(e.Detail, tt.reason) || !strings.Contains(e.Detail, size) {
				t.Errorf("Apply(rejected payload) detail = %q, want the reason and %q",
					e.Detail, size)
			}
		})
	}
}

// A transport that read only the start of an oversized payload says how
// big it was; the history states that size, not the length it was given.
func TestRejectedMessageStatesTheSizeReceived(t *testing.T) {
	f := newFleet(t)
	f.send(ota.Report{Topic: "/sys/pk1/sim-8/ota/device/inform",
		Payload: []byte(strings.Repeat("A", 1000)), Size: 20000000,
		Invalid: "payload is 20000000 bytes; the limit is 524288"})
	e := f.events("message")[0]
	kept := len(e.Payload)
	if !strings.Contains(e.Detail, "of 20000000 bytes") || kept > ota.MaxRejectedPayload {
		t.Errorf("Apply(cut payload) = detail %q, %d bytes kept; want the size received "+
			"and at most %d bytes", e.Detail, kept, ota.MaxRejectedPayload)
	}
}

// Accepted messages are at most 512 KiB, but a device repeating that much
// with every report would still fill the disk through the history: their
// payload is kept up to MaxRecordedPayload, far above any protocol message.
func TestAcceptedPayloadIsBounded(t *testing.T) {
	f := newFleet(t)
	small := f.inform("d1", "1.0.0")
	big := f.inform("d1", "1.0.1")
	big.Payload = []byte(`{"id":"9","params":{"version":"1.0.1","pad":"` +
		strings.Repeat("x", 500<<10) + `"}}`)
	f.send(small, big)
	events := f.events(ota.DeviceSubject("pk1", "d1"))
	if len(events) != 2 {
		t.Fatalf("events = %d, want 2", len(events))
	}
	if events[0].Payload != string(small.Payload) {
		t.Errorf("small payload kept as %q, want %q whole", events[0].Payload, small.Payload)
	}
	e := events[1]
	kept := len(e.Payload)
	if kept > ota.MaxRecordedPayload || !strings.HasPrefix(string(big.Payload), e.Payload) {
		t.Errorf("Apply(%d-byte inform) kept %d bytes, want a prefix of at most %d",
			len(big.Payload), kept, ota.MaxRecordedPayload)
	}
	if size := fmt.Sprintf("%d bytes", len(big.Payload)); !strings.Contains(e.Detail, size) {
		t.Errorf("Apply(%d-byte inform) detail = %q, want the size", len(big.Payload), e.Detail)
	}
	var d *ota.Device
	f.view(func(tx ota.Tx) error { d, _ = tx.Device("pk1", "d1"); return nil })
	if d.Version != "1.0.1" {
		t.Errorf("version after a large inform = %q, want 1.0.1: it was applied", d.Version)
	}
}

// A payload cut inside a multi-byte character would leave invalid UTF-8 in
// the history; the cut moves back to the character's start.
func TestPayloadCutKeepsWholeCharacters(t *testing.T) {
	f := newFleet(t)
	payload := "{" + strings.Repeat("é", 1000) + "}" // 2 bytes each, cut at an odd offset
	f.send(ota.Report{Topic: "/sys/pk1/d1/ota/device/inform", Payload: []byte(payload),
		Invalid: "payload is not valid JSON"})
	e := f.events("message")[0]
	if !strings.HasPrefix(payload, e.Payload) || !strings.HasSuffix(e.Payload, "é") {
		t.Errorf("Apply(rejected payload) kept %d bytes ending in %q, want whole characters",
			len(e.Payload), e.Payload[max(0, len(e.Payload)-4):])
	}
}

// Retained messages come again with every subscription, so with every
// command: a retained progress report from a device otactl does not know
// was recorded once per run, without end.
func TestRetainedMessageOfUnknownDeviceRecordedOnce(t *testing.T) {
	f := newFleet(t)
	r := ota.Report{Kind: ota.ReportProgress, ProductKey: "pk5", DeviceKey: "r-2", ID: "1",
		Method: "ota.device.progress", Step: 5, Retained: true,
		Topic:   "/sys/pk5/r-2/ota/device/progress",
		Payload: []byte(`{"id":"1","method":"ota.device.progress","params":{"step":5}}`)}
	for range 3 {
		f.send(r)
	}
	if n := f.countActions(ota.DeviceSubject("pk5", "r-2"), "retained"); n != 1 {
		t.Fatalf("retained message of an unknown device recorded %d times, want 1", n)
	}
}

// A retained message that fails validation is recorded once too.
func TestRetainedInvalidMessageRecordedOnce(t *testing.T) {
	f := newFleet(t)
	r := ota.Report{Topic: "/sys/pk5/bad key/ota/device/inform", Payload: []byte("not json"),
		Retained: true, Invalid: "device key contains a space"}
	for range 3 {
		f.send(r)
	}
	if n := f.countActions("message", "rejected"); n != 1 {
		t.Fatalf("retained invalid message recorded %d times, want 1", n)
	}
}

// A known device's retained message was recognised only while its hash
// was among the device's latest 32 messages; after more traffic it was
// recorded again.
func TestRetainedMessageRecordedOnceAfterMoreTraffic(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	r := f.progress("d1", 5)
	r.Retained = true
	f.send(r)
	for range 40 {
		f.send(f.inform("d1", "1.0.0"))
	}
	f.send(r)
	if n := f.countActions(ota.DeviceSubject("pk1", "d1"), "retained"); n != 1 {
		t.Fatalf("retained message recorded %d times, want 1", n)
	}
}

// A message published retained while otactl is subscribed arrives as an
// ordinary one and is acted on; the copy the broker hands out with the
// next subscription is the same message, already recorded.
func TestRetainedCopyOfARecordedMessageIsNotRecorded(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	live := f.progress("d1", 5)
	f.send(live)
	stored := live
	stored.Retained = true
	f.send(stored)
	if n := len(f.events(ota.DeviceSubject("pk1", "d1"))); n != 2 {
		t.Fatalf("events after the retained copy = %d, want 2 (inform, progress)", n)
	}
}

// A new retained message on a topic replaces the old one at the broker:
// it is recorded once, and the old one, should it come back, once more.
func TestNewRetainedMessageOnATopicIsRecorded(t *testing.T) {
	f := newFleet(t)
	first := f.progress("d9", 5)
	first.Retained = true
	second := f.progress("d9", 6)
	second.Retained = true
	f.send(first, first)
	f.send(second, second)
	if n := f.countActions(ota.DeviceSubject("pk1", "d9"), "retained"); n != 2 {
		t.Fatalf("two retained messages on one topic recorded %d times, want 2", n)
	}
}

// A batch holding only retained messages already recorded writes nothing
// at all, so that a command with no new device traffic leaves the state
// file as it was. The in-memory store refuses writes inside View.
func TestRecordedRetainedMessagesWriteNothing(t *testing.T) {
	f := newFleet(t)
	f.send(f.inform("d1", "1.0.0"))
	known := f.progress("d1", 5)
	known.Retained = true
	unknown := f.progress("r-2", 5)
	unknown.Retained = true
	discovered := f.inform("d7", "0.9.0")
	discovered.Retained = true
	bad := ota.Report{Topic: "/sys/pk1/bad key/ota/device/inform", Payload: []byte("{"),
		Retained: true, Invalid: "device key contains a space"}
	batch := []ota.Report{known, unknown, discovered, bad}
	f.send(batch...)
	err := f.st.View(func(tx ota.Tx) error {
		_, err := ota.Apply(tx, batch, f.env())
		return err
	})
	if err != nil {
		t.Fatalf("Apply(recorded retained messages) in a read-only transaction: %v", err)
	}
}
