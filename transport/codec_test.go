package transport

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/otactl/otactl/ota"
)

var received = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func informTopic(pk, dk string) string   { return DeviceTopic(pk, dk, SuffixInform) }
func progressTopic(pk, dk string) string { return DeviceTopic(pk, dk, SuffixProgress) }

func TestParseValid(t *testing.T) {
	tests := []struct {
		name    string
		topic   string
		payload string
		want    ota.Report // only the protocol fields are compared
	}{
		{
			name:  "inform",
			topic: informTopic("pk", "dk"),
			payload: `{"id":"7","version":"1.0","method":"ota.device.inform",` +
				`"params":{"version":"1.2.0"}}`,
			want: ota.Report{Kind: ota.ReportInform, ID: "7", Method: "ota.device.inform",
				Version: "1.2.0"},
		},
		{
			name:    "inform with numeric id and SDK method",
			topic:   informTopic("pk", "dk"),
			payload: `{"id":12345678901234567890,"method":"ota.inform","params":{"version":"v2"}}`,
			want: ota.Report{Kind: ota.ReportInform, ID: "12345678901234567890",
				Method: "ota.inform", Version: "v2"},
		},
		{
			// An empty version is a report like any other; it matches nothing.
			name:    "inform with empty version",
			topic:   informTopic("pk", "dk"),
			payload: `{"id":"1","method":"ota.device.inform","params":{"version":""}}`,
			want:    ota.Report{Kind: ota.ReportInform, ID: "1", Method: "ota.device.inform"},
		},
		{
			name:    "inform without id",
			topic:   informTopic("pk", "dk"),
			payload: `{"method":"OTA.DEVICE.INFORM","params":{"version":"3"}}`,
			want:    ota.Report{Kind: ota.ReportInform, Method: "OTA.DEVICE.INFORM", Version: "3"},
		},
		{
			name:  "progress with string step and jobId",
			topic: progressTopic("pk", "dk"),
			payload: `{"id":"2","method":"ota.device.progress",` +
				`"params":{"step":"42","desc":"downloading","jobId":"job-9"}}`,
			want: ota.Report{Kind: ota.ReportProgress, ID: "2", Method: "ota.device.progress",
				Step: 42, Desc: "downloading", JobID: "job-9"},
		},
		{
			name:    "progress with number step",
			topic:   progressTopic("pk", "dk"),
			payload: `{"id":"3","method":"ota.progress","params":{"step":100}}`,
			want: ota.Report{Kind: ota.ReportProgress, ID: "3", Method: "ota.progress",
				Step: 100},
		},
		{
			name:  "progress failure as string",
			topic: progressTopic("pk", "dk"),
			payload: `{"id":"4","method":"ota.device.progress",` +
				`"params":{"step":"-3","desc":"bad"}}`,
			want: ota.Report{Kind: ota.ReportProgress, ID: "4", Method: "ota.device.progress",
				Step: -3, Desc: "bad"},
		},
		{
			name:    "progress step as integral float",
			topic:   progressTopic("pk", "dk"),
			payload: `{"id":"5","method":"ota.device.progress","params":{"step":42.0}}`,
			want: ota.Report{Kind: ota.ReportProgress, ID: "5", Method: "ota.device.progress",
				Step: 42},
		},
		{
			name:    "getversion without params",
			topic:   DeviceTopic("pk", "dk", SuffixGetVersion),
			payload: `{"id":"6","method":"Ota.device.getversion"}`,
			want: ota.Report{Kind: ota.ReportGetVersion, ID: "6",
				Method: "Ota.device.getversion"},
		},
		{
			name:    "upgrade reply with echoed jobId",
			topic:   DeviceTopic("pk", "dk", SuffixUpgradeReply),
			payload: `{"id":"push-3","code":200,"data":{"jobId":"job-3"},"message":"ok"}`,
			want: ota.Report{Kind: ota.ReportUpgradeReply, ID: "push-3", Code: 200,
				JobID: "job-3"},
		},
		{
			name:    "upgrade reply without data",
			topic:   DeviceTopic("pk", "dk", SuffixUpgradeReply),
			payload: `{"id":8,"code":400}`,
			want:    ota.Report{Kind: ota.ReportUpgradeReply, ID: "8", Code: 400},
		},
		{
			name:    "non-ASCII keys",
			topic:   informTopic("温湿度-01", "café_2"),
			payload: `{"id":"1","method":"ota.device.inform","params":{"version":"1"}}`,
			want: ota.Report{Kind: ota.ReportInform, ID: "1", Method: "ota.device.inform",
				Version: "1", ProductKey: "温湿度-01", DeviceKey: "café_2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.topic, []byte(tt.payload), true, false, received)
			if got.Invalid != "" {
				t.Fatalf("Parse(%s, %s).Invalid = %q, want valid",
					tt.topic, tt.payload, got.Invalid)
			}
			want := tt.want
			if want.ProductKey == "" {
				want.ProductKey, want.DeviceKey = "pk", "dk"
			}
			want.Topic, want.Payload = tt.topic, []byte(tt.payload)
			want.Dup, want.ReceivedAt = true, received
			if !sameReport(got, want) {
				t.Errorf("Parse(%s, %s) =\n%+v\nwant\n%+v", tt.topic, tt.payload, got, want)
			}
		})
	}
}

func sameReport(a, b ota.Report) bool {
	return string(a.Payload) == string(b.Payload) && a.Kind == b.Kind &&
		a.ProductKey == b.ProductKey && a.DeviceKey == b.DeviceKey && a.ID == b.ID &&
		a.Method == b.Method && a.Version == b.Version && a.Step == b.Step &&
		a.Desc == b.Desc && a.Code == b.Code && a.JobID == b.JobID && a.Topic == b.Topic &&
		a.Dup == b.Dup && a.Retained == b.Retained && a.ReceivedAt.Equal(b.ReceivedAt) &&
		a.Invalid == b.Invalid
}

func TestParseInvalid(t *testing.T) {
	inform := informTopic("pk", "dk")
	progress := progressTopic("pk", "dk")
	reply := DeviceTopic("pk", "dk", SuffixUpgradeReply)
	long := strings.Repeat("k", 300)
	tests := []struct {
		name     string
		topic    string
		payload  string
		reason   string // a piece the one-line reason must contain
		keysKept bool   // the topic was valid, so keys and kind are set
	}{
		{"not /sys", "sys/pk/dk/ota/device/inform", `{}`, "does not start with /sys/", false},
		{"unknown suffix", "/sys/pk/dk/ota/device/upgrade", `{}`, "not a device report", false},
		{"too few levels", "/sys/pk", `{}`, "no product key", false},
		{"long device key", informTopic("pk", long), `{}`, "device key", false},
		{"space in key", informTopic("pk", "bad key"), `{}`, "contains a space", false},
		{"tab in key", informTopic("p\tk", "dk"), `{}`, "product key", false},
		{"empty key", informTopic("", "dk"), `{}`, "product key is empty", false},
		{"invalid UTF-8 key", informTopic("pk", "d\xffk"), `{}`, "not valid UTF-8", false},
		{"invalid UTF-8 payload", inform, "{\"id\":\"\xff\"}", "not valid UTF-8", true},
		{"not JSON", inform, `{"id":`, "not valid JSON", true},
		{"trailing garbage", inform, `{} x`, "not valid JSON", true},
		{"array", inform, `[1]`, "not a JSON object", true},
		{"null", inform, `null`, "not a JSON object", true},
		{"empty", inform, ``, "not a JSON object", true},
		{"no method", inform, `{"id":"1","params":{"version":"1"}}`, "no method", true},
		{"unknown method", inform, `{"id":"1","method":"x.y"}`, "unknown method", true},
		{"method of another topic", inform, `{"method":"ota.progress","params":{}}`,
			"is for progress topics, not inform", true},
		{"upgrade method from device", inform, `{"method":"ota.device.upgrade"}`,
			"unknown method", true},
		{"method not a string", inform, `{"method":1}`, "method 1 is not a string", true},
		{"id is an object", inform, `{"id":{},"method":"ota.inform"}`, "id {}", true},
		{"inform without params", inform, `{"method":"ota.inform"}`, "no version", true},
		{"inform params not object", inform, `{"method":"ota.inform","params":"1"}`,
			"not an object", true},
		{"inform numeric version", inform, `{"method":"ota.inform","params":{"version":1.1}}`,
			"not a string", true},
		{"progress without step", progress, `{"method":"ota.progress","params":{}}`,
			"no step", true},
		{"progress fractional step", progress,
			`{"method":"ota.progress","params":{"step":"42.5"}}`, "not an integer", true},
		{"progress word step", progress,
			`{"method":"ota.progress","params":{"step":"half"}}`, "not an integer", true},
		{"progress hex step", progress,
			`{"method":"ota.progress","params":{"step":"0x10"}}`, "not an integer", true},
		{"progress huge step", progress,
			`{"method":"ota.progress","params":{"step":-1e300}}`, "not an integer", true},
		{"progress step above 100", progress,
			`{"method":"ota.progress","params":{"step":101}}`, "above 100", true},
		{"progress bool step", progress,
			`{"method":"ota.progress","params":{"step":true}}`, "not an integer", true},
		{"progress desc not string", progress,
			`{"method":"ota.progress","params":{"step":1,"desc":{}}}`, "desc", true},
		{"progress jobId bool", progress,
			`{"method":"ota.progress","params":{"step":1,"jobId":false}}`, "jobId", true},
		{"reply without code", reply, `{"id":"1"}`, "no code", true},
		{"reply code text", reply, `{"id":"1","code":"ok"}`, "not an integer", true},
		{"reply jobId bool", reply, `{"id":"1","code":200,"data":{"jobId":true}}`,
			"jobId", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Parse(tt.topic, []byte(tt.payload), false, true, received)
			if !strings.Contains(got.Invalid, tt.reason) {
				t.Errorf("Parse(%q, %q).Invalid = %q, want it to contain %q",
					tt.topic, tt.payload, got.Invalid, tt.reason)
			}
			if strings.ContainsAny(got.Invalid, "\r\n") {
				t.Errorf("Parse(%q, %q).Invalid = %q spans lines",
					tt.topic, tt.payload, got.Invalid)
			}
			if got.Topic != tt.topic || string(got.Payload) != tt.payload || !got.Retained {
				t.Errorf("Parse(%q, %q) lost topic, payload or flags: %+v",
					tt.topic, tt.payload, got)
			}
			if keys := got.ProductKey != "" && got.Kind != ""; keys != tt.keysKept {
				t.Errorf("Parse(%q, %q) keys kept = %v, want %v",
					tt.topic, tt.payload, keys, tt.keysKept)
			}
		})
	}
}

func TestParseOversizedPayload(t *testing.T) {
	version := strings.Repeat("9", MaxPayload)
	payload := `{"method":"ota.inform","params":{"version":"` + version + `"}}`
	got := Parse(informTopic("pk", "dk"), []byte(payload), false, false, received)
	if !strings.Contains(got.Invalid, "the limit is 524288") {
		t.Errorf("Parse(%d bytes).Invalid = %q, want the size limit", len(payload), got.Invalid)
	}
	if got.Version != "" {
		t.Errorf("Parse(%d bytes) decoded the version of an oversized payload", len(payload))
	}
}

// A 20,000,000-byte message was rejected for its size but kept whole, in
// memory until it was recorded and then in the state file. Parse keeps only
// the start of it, a copy, so that the received buffer can be freed at once,
// and the size it had.
func TestParseOversizedPayloadKeepsOnlyItsStart(t *testing.T) {
	payload := bytes.Repeat([]byte("A"), 20000000)
	got := Parse(informTopic("pk1", "sim-8"), payload, false, false, received)
	if got.Invalid != "payload is 20000000 bytes; the limit is 524288" {
		t.Errorf("Parse(20000000 bytes).Invalid = %q, want the size limit", got.Invalid)
	}
	if got.Size != len(payload) {
		t.Errorf("Parse(20000000 bytes).Size = %d, want %d", got.Size, len(payload))
	}
	if n := len(got.Payload); n == 0 || n > ota.MaxRecordedPayload {
		t.Errorf("Parse(20000000 bytes) kept %d bytes of payload, want 1 to %d",
			n, ota.MaxRecordedPayload)
	}
	payload[0] = 'B'
	if got.Payload[0] != 'A' {
		t.Errorf("Parse(20000000 bytes) kept the received buffer, want a copy of its start")
	}
}

// A payload nested past encoding/json's depth limit is rejected with that
// reason, keeping its size.
func TestParseTooDeepPayload(t *testing.T) {
	payload := `{"id":"1","method":"ota.device.inform","params":` +
		strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "}"
	got := Parse(informTopic("pk1", "sim-8"), []byte(payload), false, false, received)
	if !strings.Contains(got.Invalid, "exceeded max depth") || got.Size != len(payload) {
		t.Errorf("Parse(%d nested bytes) = Invalid %q, Size %d; want the depth limit and %d",
			len(payload), got.Invalid, got.Size, len(payload))
	}
}

func TestEncodeUpgrade(t *testing.T) {
	p := ota.UpgradeParams{Version: "2.0", Sign: "ab12", SignMethod: "sha256",
		FileURL: "https://h/f?a=1&b=2", FileSize: 1024, JobID: "job-1"}
	got := string(EncodeUpgrade("push-1", p))
	want := `{"id":"push-1","version":"1.0","method":"ota.device.upgrade","params":` +
		`{"version":"2.0","sign":"ab12","signMethod":"sha256","fileUrl":"https://h/f?a=1&b=2",` +
		`"fileSize":1024,"jobId":"job-1"}}`
	if got != want {
		t.Errorf("EncodeUpgrade() =\n%s\nwant\n%s", got, want)
	}
}

func TestEncodeReply(t *testing.T) {
	tests := []struct {
		name    string
		data    any
		message string
		want    string
	}{
		{"list", []ota.UpgradeParams{{Version: "1", FileURL: "u"}}, "",
			`{"id":"9","code":200,"data":[{"version":"1","sign":"","signMethod":"",` +
				`"fileUrl":"u","fileSize":0}],"message":""}`},
		{"nil data", nil, "no pending firmware", `{"id":"9","code":200,"data":null,` +
			`"message":"no pending firmware"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(EncodeReply("9", 200, tt.data, tt.message)); got != tt.want {
				t.Errorf("EncodeReply() =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestEncodeRequestRoundTrip checks that what the simulator sends with
// EncodeRequest is what Parse accepts, for every report kind a device sends.
func TestEncodeRequestRoundTrip(t *testing.T) {
	tests := []struct {
		suffix string
		method string
		params any
		check  func(ota.Report) bool
	}{
		{SuffixInform, MethodInform, map[string]string{"version": "1.0.1"},
			func(r ota.Report) bool { return r.Version == "1.0.1" }},
		{SuffixProgress, MethodProgress, map[string]any{"step": "-2", "desc": "no route"},
			func(r ota.Report) bool { return r.Step == -2 && r.Desc == "no route" }},
		{SuffixGetVersion, MethodGetVersion, nil,
			func(r ota.Report) bool { return r.Kind == ota.ReportGetVersion }},
	}
	for _, tt := range tests {
		payload := EncodeRequest("r-1", tt.method, tt.params)
		r := Parse(DeviceTopic("pk", "dk", tt.suffix), payload, false, false, received)
		if r.Invalid != "" || r.ID != "r-1" || !tt.check(r) {
			t.Errorf("Parse(EncodeRequest(%s)) = %+v", tt.method, r)
		}
	}
	reply := EncodeReply("push-4", 200, map[string]string{"jobId": "job-4"}, "ok")
	r := Parse(DeviceTopic("pk", "dk", SuffixUpgradeReply), reply, false, false, received)
	if r.Invalid != "" || r.ID != "push-4" || r.Code != 200 || r.JobID != "job-4" {
		t.Errorf("Parse(EncodeReply()) = %+v", r)
	}
}

func TestEncodeRequestPanicsOnUnencodable(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("EncodeRequest(chan) did not panic")
		}
	}()
	EncodeRequest("1", MethodInform, make(chan int))
}

// kindSuffix maps a report kind back to its topic suffix, for FuzzParse.
var kindSuffix = map[ota.ReportKind]string{
	ota.ReportInform:       SuffixInform,
	ota.ReportProgress:     SuffixProgress,
	ota.ReportUpgradeReply: SuffixUpgradeReply,
	ota.ReportGetVersion:   SuffixGetVersion,
}

// FuzzParse checks that Parse never panics and that whatever it accepts has
// keys that pass validation and rebuild the topic it came from: a report
// that reaches the store can always be answered on a well-formed topic.
func FuzzParse(f *testing.F) {
	seeds := []struct{ topic, payload string }{
		{informTopic("pk", "dk"), `{"id":"1","method":"ota.inform","params":{"version":"1"}}`},
		{progressTopic("温湿度-01", "café_2"), `{"id":2,"method":"ota.progress","params":{}}`},
		{progressTopic("pk", "dk"), `{"method":"ota.progress","params":{"step":"-3","jobId":7}}`},
		{DeviceTopic("pk", "dk", SuffixUpgradeReply), `{"id":"p","code":200,"data":{}}`},
		{DeviceTopic("pk", "dk", SuffixGetVersion), `{"id":"g","method":"Ota.device.getversion"}`},
		{"/sys/pk/d k/ota/device/inform", `{}`},
		{"/sys/+/#/ota/device/inform", `null`},
	}
	for _, s := range seeds {
		f.Add(s.topic, []byte(s.payload), false, false)
	}
	f.Fuzz(func(t *testing.T, topic string, payload []byte, dup, retained bool) {
		r := Parse(topic, payload, dup, retained, received)
		if r.Topic != topic || r.Dup != dup || r.Retained != retained {
			t.Fatalf("Parse(%q) lost the topic or flags: %+v", topic, r)
		}
		if strings.ContainsAny(r.Invalid, "\r\n") {
			t.Fatalf("Parse(%q, %q).Invalid spans lines: %q", topic, payload, r.Invalid)
		}
		if r.Invalid != "" {
			return
		}
		if err := ota.ValidateKey("product key", r.ProductKey); err != nil {
			t.Fatalf("Parse(%q) accepted product key: %v", topic, err)
		}
		if err := ota.ValidateKey("device key", r.DeviceKey); err != nil {
			t.Fatalf("Parse(%q) accepted device key: %v", topic, err)
		}
		if got := DeviceTopic(r.ProductKey, r.DeviceKey, kindSuffix[r.Kind]); got != topic {
			t.Fatalf("Parse(%q) keys rebuild topic %q", topic, got)
		}
		if !json.Valid(payload) {
			t.Fatalf("Parse(%q, %q) accepted invalid JSON", topic, payload)
		}
	})
}

// A reported version with a control character would forge rows in tables
// and in `device list | cut` pipelines: it is refused like a bad key.
func TestParseRefusesControlCharactersInVersion(t *testing.T) {
	for _, v := range []string{"1.0.0\u001b[31mRED", "1.0\tline", "1.0\r\nfake", strings.Repeat("9", 65)} {
		payload := EncodeRequest("1", MethodInform, map[string]string{"version": v})
		r := Parse(DeviceTopic("pk1", "d1", SuffixInform), payload, false, false, time.Now())
		if r.Invalid == "" || !strings.Contains(r.Invalid, "reported version") {
			t.Errorf("Parse(version %q).Invalid = %q, want the version refused", v, r.Invalid)
		}
	}
}
