package sim

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport"
)

// push is an upgrade command as a device understood it.
type push struct {
	id     string // the envelope id, echoed in the reply
	params ota.UpgradeParams
}

// identity tells a repeated push of an upgrade apart from a new one. The
// jobId does when otactl sent one; other senders are recognised by what
// they ask for.
func (p push) identity() string {
	if p.params.JobID != "" {
		return "job:" + p.params.JobID
	}
	return "fw:" + p.params.Version + "\x00" + p.params.Sign
}

// The wire form, with pointers so that a missing field is told apart from a
// zero one.
type pushEnvelope struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type pushParams struct {
	Version    *string `json:"version"`
	Sign       *string `json:"sign"`
	SignMethod *string `json:"signMethod"`
	FileURL    *string `json:"fileUrl"`
	FileSize   *int64  `json:"fileSize"`
	JobID      string  `json:"jobId"`
}

// parsePush decodes and checks an upgrade push. The payload comes from
// whoever can publish to the topic, so every field is checked before the
// device acts on it. On error, id is the envelope's id when it could be
// read, so that the rejection can still be addressed to the request.
func parsePush(payload []byte) (p push, err error) {
	// The limit otactl applies to what devices send serves devices as well:
	// a push is a few hundred bytes, so anything near it is garbage.
	if len(payload) > transport.MaxPayload {
		return p, fmt.Errorf("payload of %d bytes exceeds %d", len(payload), transport.MaxPayload)
	}
	// encoding/json would quietly turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(payload) {
		return p, errors.New("payload is not valid UTF-8")
	}
	var env pushEnvelope
	if err := json.Unmarshal(payload, &env); err != nil {
		return p, fmt.Errorf("invalid JSON: %v", err)
	}
	p.id = envelopeID(env.ID)
	if !strings.EqualFold(env.Method, transport.MethodUpgrade) {
		return p, fmt.Errorf("method %q is not %s", env.Method, transport.MethodUpgrade)
	}
	if len(env.Params) == 0 || string(env.Params) == "null" {
		return p, errors.New("params are missing")
	}
	var raw pushParams
	if err := json.Unmarshal(env.Params, &raw); err != nil {
		return p, fmt.Errorf("invalid params: %v", err)
	}
	p.params, err = checkParams(raw)
	return p, err
}

// envelopeID reads the id as text. The EnOS SDKs send a string; a number is
// tolerated because some brokers' tools send one.
func envelopeID(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

func checkParams(raw pushParams) (ota.UpgradeParams, error) {
	// The jobId is kept even when a later check fails, so that the device's
	// failure report can still be tied to the job.
	p := ota.UpgradeParams{JobID: raw.JobID}
	required := []struct {
		name string
		v    *string
	}{{"version", raw.Version}, {"sign", raw.Sign}, {"signMethod", raw.SignMethod},
		{"fileUrl", raw.FileURL}}
	for _, r := range required {
		if r.v == nil {
			return p, fmt.Errorf("params.%s is missing", r.name)
		}
	}
	if raw.FileSize == nil {
		return p, errors.New("params.fileSize is missing")
	}
	p = ota.UpgradeParams{Version: *raw.Version, Sign: strings.ToLower(*raw.Sign),
		SignMethod: strings.ToLower(*raw.SignMethod), FileURL: *raw.FileURL,
		FileSize: *raw.FileSize, JobID: raw.JobID}
	if err := ota.ValidateLabel("params.version", p.Version); err != nil {
		return p, err
	}
	if p.FileSize < 0 {
		return p, fmt.Errorf("params.fileSize %d is negative", p.FileSize)
	}
	if err := checkSign(p.SignMethod, p.Sign); err != nil {
		return p, err
	}
	if _, err := parseFileURL(p.FileURL); err != nil {
		return p, err
	}
	return p, nil
}

func checkSign(method, sign string) error {
	var n int
	switch method {
	case ota.SignSHA256:
		n = 64
	case ota.SignMD5:
		n = 32
	default:
		return fmt.Errorf("params.signMethod %q is not sha256 or md5", method)
	}
	if _, err := hex.DecodeString(sign); err != nil || len(sign) != n {
		return fmt.Errorf("params.sign %q is not a %s digest in hex", sign, method)
	}
	return nil
}

// parseFileURL accepts the schemes a device can fetch from: file:// for a
// file on this machine (DESIGN.md 5.1), http:// and https://.
func parseFileURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("params.fileUrl %q is not a URL", s)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("params.fileUrl %q names another host", s)
		}
		if u.Path == "" {
			return nil, fmt.Errorf("params.fileUrl %q has no path", s)
		}
	case "http", "https":
		if u.Host == "" {
			return nil, fmt.Errorf("params.fileUrl %q has no host", s)
		}
	default:
		return nil, fmt.Errorf("params.fileUrl %q: scheme must be file, http or https", s)
	}
	return u, nil
}
