package transport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/otactl/otactl/ota"
)

// MaxPayload is the largest device message otactl reads (DESIGN.md section
// 3). Anything bigger is reported invalid without being decoded, and only
// its start is kept (see Parse), so a misbehaving device cannot make otactl
// spend memory or disk on it.
const MaxPayload = 512 << 10

// envelopeVersion is the protocol version otactl writes into requests.
const envelopeVersion = "1.0"

// acceptedMethods lists, per report kind, the method spellings a device may
// use, in lower case: the canonical EnOS names and the Python SDK's. Parse
// compares case-insensitively because the SDK writes "Ota.device.getversion".
var acceptedMethods = map[ota.ReportKind][]string{
	ota.ReportInform:     {MethodInform, "ota.inform"},
	ota.ReportProgress:   {MethodProgress, "ota.progress"},
	ota.ReportGetVersion: {MethodGetVersion},
}

// request is the device-to-cloud request envelope, and the one otactl
// writes for upgrades. ID stays raw on the way in because devices send it
// as a string or a number.
type request struct {
	ID      json.RawMessage `json:"id"`
	Version string          `json:"version"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// reply is the answer envelope, both the upgrade_reply devices send and the
// replies otactl sends to device requests.
type reply struct {
	ID      json.RawMessage `json:"id"`
	Code    json.RawMessage `json:"code"`
	Data    json.RawMessage `json:"data"`
	Message json.RawMessage `json:"message"`
}

// Parse turns one received MQTT message into a report. It never fails and
// never panics: a message that breaks a rule of the protocol comes back with
// Report.Invalid set to a one-line reason, plus whatever could be read before
// the rule broke (always Topic and Payload; the keys and kind once the topic
// is valid), so that the history can record it without it changing state.
//
// payload is kept, not copied: the caller must not reuse it. A payload over
// MaxPayload is the exception: the report holds a copy of its first
// ota.MaxRecordedPayload bytes, more than the history keeps of it, and its
// Size, so that the received buffer is garbage as soon as the caller drops
// it rather than waiting in the ingest queue for its batch.
func Parse(topic string, payload []byte, dup, retained bool, received time.Time) ota.Report {
	r := ota.Report{
		Topic:      topic,
		Payload:    payload,
		Size:       len(payload),
		Dup:        dup,
		Retained:   retained,
		ReceivedAt: received,
	}
	if len(payload) > MaxPayload {
		r.Payload = bytes.Clone(payload[:ota.MaxRecordedPayload])
	}
	pk, dk, kind, err := SplitTopic(topic)
	if err != nil {
		r.Invalid = err.Error()
		return r
	}
	r.ProductKey, r.DeviceKey, r.Kind = pk, dk, kind

	if err := parsePayload(&r, payload); err != nil {
		r.Invalid = err.Error()
	}
	return r
}

// parsePayload checks the payload against the rules for r.Kind and fills
// the fields it carries. It returns the first rule broken.
func parsePayload(r *ota.Report, payload []byte) error {
	switch {
	case len(payload) > MaxPayload:
		return fmt.Errorf("payload is %d bytes; the limit is %d", len(payload), MaxPayload)
	case !utf8.Valid(payload):
		return fmt.Errorf("payload is not valid UTF-8")
	case !isObject(payload):
		return fmt.Errorf("payload is not a JSON object")
	}
	if r.Kind == ota.ReportUpgradeReply {
		return parseReply(r, payload)
	}

	var env request
	if err := json.Unmarshal(payload, &env); err != nil {
		return fmt.Errorf("payload is not valid JSON: %v", err)
	}
	id, err := parseID(env.ID)
	if err != nil {
		return err
	}
	r.ID = id
	if err := parseMethod(r, env.Method); err != nil {
		return err
	}
	switch r.Kind {
	case ota.ReportInform:
		return parseInform(r, env.Params)
	case ota.ReportProgress:
		return parseProgress(r, env.Params)
	}
	// getversion carries nothing otactl needs; its params may be absent.
	return nil
}

// isObject reports whether the payload's first non-space byte opens a JSON
// object, so that "null", arrays and bare strings get a clear reason rather
// than decoding into an empty envelope.
func isObject(payload []byte) bool {
	p := bytes.TrimLeft(payload, " \t\r\n")
	return len(p) > 0 && p[0] == '{'
}

func parseReply(r *ota.Report, payload []byte) error {
	var env reply
	if err := json.Unmarshal(payload, &env); err != nil {
		return fmt.Errorf("payload is not valid JSON: %v", err)
	}
	id, err := parseID(env.ID)
	if err != nil {
		return err
	}
	r.ID = id
	if isNull(env.Code) {
		return fmt.Errorf("reply has no code")
	}
	code, err := parseInt(env.Code)
	if err != nil {
		return fmt.Errorf("reply code %s is not an integer", clip(env.Code))
	}
	r.Code = code
	// Devices that echo the push's jobId put it in data; take it when it is
	// there and ignore data otherwise, as devices that ignore jobId must
	// keep working.
	jobID, err := optionalJobID(env.Data)
	if err != nil {
		return err
	}
	r.JobID = jobID
	return nil
}

// parseID reads the envelope id, which devices send as a string or a
// number. A missing id is accepted: only requests that need a reply use it.
func parseID(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	s, ok := stringOrNumber(raw)
	if !ok {
		return "", fmt.Errorf("id %s is neither a string nor a number", clip(raw))
	}
	return s, nil
}

func parseMethod(r *ota.Report, raw json.RawMessage) error {
	if isNull(raw) {
		return fmt.Errorf("payload has no method")
	}
	var m string
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("method %s is not a string", clip(raw))
	}
	r.Method = m
	lower := strings.ToLower(m)
	for _, accepted := range acceptedMethods[r.Kind] {
		if lower == accepted {
			return nil
		}
	}
	for kind, names := range acceptedMethods {
		for _, name := range names {
			if lower == name {
				return fmt.Errorf("method %q is for %s topics, not %s", m, kind, r.Kind)
			}
		}
	}
	return fmt.Errorf("unknown method %q", m)
}

func parseInform(r *ota.Report, raw json.RawMessage) error {
	var p struct {
		Version json.RawMessage `json:"version"`
	}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if isNull(p.Version) {
		return fmt.Errorf("inform has no version")
	}
	// An empty version is kept: it is what the device said, and it simply
	// matches no firmware. A number is refused because "1.10" and 1.1 would
	// be the same JSON number, which would lose the version's text.
	if err := json.Unmarshal(p.Version, &r.Version); err != nil {
		return fmt.Errorf("inform version %s is not a string", clip(p.Version))
	}
	// The version ends up in tables and in `device list | cut` pipelines: a
	// control character or a tab in it would forge rows.
	return ota.ValidateReportedVersion(r.Version)
}

func parseProgress(r *ota.Report, raw json.RawMessage) error {
	var p struct {
		Step  json.RawMessage `json:"step"`
		Desc  json.RawMessage `json:"desc"`
		JobID json.RawMessage `json:"jobId"`
	}
	if err := decodeParams(raw, &p); err != nil {
		return err
	}
	if isNull(p.Step) {
		return fmt.Errorf("progress has no step")
	}
	step, err := parseInt(p.Step)
	if err != nil {
		return fmt.Errorf("progress step %s is not an integer", clip(p.Step))
	}
	if step > 100 {
		return fmt.Errorf("progress step %d is above 100", step)
	}
	r.Step = step
	if !isNull(p.Desc) {
		if err := json.Unmarshal(p.Desc, &r.Desc); err != nil {
			return fmt.Errorf("progress desc %s is not a string", clip(p.Desc))
		}
	}
	if !isNull(p.JobID) {
		id, ok := stringOrNumber(p.JobID)
		if !ok {
			return fmt.Errorf("jobId %s is neither a string nor a number", clip(p.JobID))
		}
		r.JobID = id
	}
	return nil
}

// decodeParams decodes a params object. Missing params decode as empty, so
// the caller reports which field is missing rather than that params is.
func decodeParams(raw json.RawMessage, v any) error {
	if isNull(raw) {
		return nil
	}
	if !isObject(raw) {
		return fmt.Errorf("params %s is not an object", clip(raw))
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("params: %v", err)
	}
	return nil
}

// optionalJobID reads data.jobId when data is an object that has one.
func optionalJobID(data json.RawMessage) (string, error) {
	if !isObject(data) {
		return "", nil
	}
	var d struct {
		JobID json.RawMessage `json:"jobId"`
	}
	if err := json.Unmarshal(data, &d); err != nil || isNull(d.JobID) {
		return "", nil
	}
	id, ok := stringOrNumber(d.JobID)
	if !ok {
		return "", fmt.Errorf("jobId %s is neither a string nor a number", clip(d.JobID))
	}
	return id, nil
}

// stringOrNumber returns a JSON string's text or a JSON number's literal.
func stringOrNumber(raw json.RawMessage) (string, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		return n.String(), true
	}
	return "", false
}

// parseInt reads an integer sent as a JSON number or as a string holding
// one ("42", "-3"), which is how the EnOS SDKs send progress steps. An
// integral value written as a float (42.0) is accepted because some device
// languages only have floats; 42.5, hex and NaN are not.
func parseInt(raw json.RawMessage) (int, error) {
	var text string
	var n json.Number
	switch {
	case json.Unmarshal(raw, &text) == nil:
		text = strings.TrimSpace(text)
	case json.Unmarshal(raw, &n) == nil:
		text = n.String()
	default:
		return 0, fmt.Errorf("not a number")
	}
	if i, err := strconv.ParseInt(text, 10, 32); err == nil {
		return int(i), nil
	}
	if strings.Trim(text, "0123456789.eE+-") != "" {
		return 0, fmt.Errorf("not a decimal number")
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || f > math.MaxInt32 || f < math.MinInt32 {
		return 0, fmt.Errorf("not an integer")
	}
	return int(f), nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// clip keeps a quoted piece of a payload short enough for a one-line reason.
func clip(raw json.RawMessage) string {
	const keep = 40
	s := strings.Join(strings.Fields(string(raw)), " ")
	if utf8.RuneCountInString(s) <= keep {
		return s
	}
	return string([]rune(s)[:keep]) + "…"
}

// EncodeUpgrade builds the ota.device.upgrade request that pushes firmware
// to a device. id is echoed by the device in its upgrade_reply.
func EncodeUpgrade(id string, p ota.UpgradeParams) []byte {
	return EncodeRequest(id, MethodUpgrade, p)
}

// EncodeRequest builds a request envelope with protocol version "1.0". The
// simulator uses it for device-side messages. params must be encodable as
// JSON; anything else is a programming error and panics.
func EncodeRequest(id, method string, params any) []byte {
	if params == nil {
		params = struct{}{}
	}
	return encode(struct {
		ID      string `json:"id"`
		Version string `json:"version"`
		Method  string `json:"method"`
		Params  any    `json:"params"`
	}{id, envelopeVersion, method, params})
}

// EncodeReply builds a reply envelope. data must be encodable as JSON;
// anything else is a programming error and panics.
func EncodeReply(id string, code int, data any, message string) []byte {
	return encode(struct {
		ID      string `json:"id"`
		Code    int    `json:"code"`
		Data    any    `json:"data"`
		Message string `json:"message"`
	}{id, code, data, message})
}

// encode writes v as compact JSON without HTML escaping: devices parse
// these payloads with small JSON libraries, and a fileUrl with "&" should
// reach them as written rather than as \u0026.
func encode(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("transport: encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
