package sim

import (
	"strings"
	"testing"

	"github.com/otactl/otactl/ota"
	"github.com/otactl/otactl/transport"
)

func TestParsePush(t *testing.T) {
	sha := strings.Repeat("ab", 32)
	good := ota.UpgradeParams{Version: "2.0", Sign: sha, SignMethod: "sha256",
		FileURL: "https://example.com/fw.bin", FileSize: 10, JobID: "job-1"}
	with := func(change func(*ota.UpgradeParams)) []byte {
		p := good
		change(&p)
		return transport.EncodeUpgrade("7", p)
	}
	cases := []struct {
		name    string
		payload []byte
		want    string // in the error; "" for none
	}{
		{"valid", transport.EncodeUpgrade("7", good), ""},
		{"upper-case sign method", with(func(p *ota.UpgradeParams) {
			p.SignMethod, p.Sign = "SHA256", strings.ToUpper(sha)
		}), ""},
		{"md5", with(func(p *ota.UpgradeParams) {
			p.SignMethod, p.Sign = "md5", sha[:32]
		}), ""},
		{"file url", with(func(p *ota.UpgradeParams) { p.FileURL = "file:///tmp/fw" }), ""},
		{"empty file", with(func(p *ota.UpgradeParams) { p.FileSize = 0 }), ""},
		{"not JSON", []byte(`{"id":`), "invalid JSON"},
		{"not UTF-8", []byte("{\"id\":\"\xff\"}"), "UTF-8"},
		{"too big", make([]byte, transport.MaxPayload+1), "exceeds"},
		{"wrong method", []byte(`{"id":"1","method":"ota.device.inform","params":{}}`),
			"method"},
		{"no params", []byte(`{"id":"1","method":"ota.device.upgrade"}`), "params"},
		{"params not object", []byte(`{"id":"1","method":"ota.device.upgrade","params":1}`),
			"invalid params"},
		{"no fileSize", []byte(`{"id":"1","method":"ota.device.upgrade","params":` +
			`{"version":"2","sign":"` + sha + `","signMethod":"sha256","fileUrl":"file:///a"}}`),
			"fileSize is missing"},
		{"no sign", []byte(`{"id":"1","method":"ota.device.upgrade","params":{"version":"2"}}`),
			"sign is missing"},
		{"empty version", with(func(p *ota.UpgradeParams) { p.Version = "" }), "version"},
		{"negative size", with(func(p *ota.UpgradeParams) { p.FileSize = -1 }), "negative"},
		{"sha1", with(func(p *ota.UpgradeParams) { p.SignMethod = "sha1" }), "sha1"},
		{"short sign", with(func(p *ota.UpgradeParams) { p.Sign = "abc" }), "digest"},
		{"md5 length for sha256", with(func(p *ota.UpgradeParams) { p.Sign = sha[:32] }),
			"digest"},
		{"ftp url", with(func(p *ota.UpgradeParams) { p.FileURL = "ftp://h/f" }), "scheme"},
		{"relative url", with(func(p *ota.UpgradeParams) { p.FileURL = "fw.bin" }), "scheme"},
		{"http without host", with(func(p *ota.UpgradeParams) { p.FileURL = "http:///f" }),
			"no host"},
		{"file on another host", with(func(p *ota.UpgradeParams) {
			p.FileURL = "file://other/f"
		}), "another host"},
		{"bad URL", with(func(p *ota.UpgradeParams) { p.FileURL = "http://h/%zz" }),
			"not a URL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parsePush(tc.payload)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("parsePush() = %v, want nil", err)
			case tc.want == "":
				if p.id != "7" || p.params.JobID != "job-1" || p.params.Sign !=
					strings.ToLower(p.params.Sign) {
					t.Errorf("parsePush() = %+v, want id 7, jobId job-1, lower-case sign", p)
				}
			case err == nil || !strings.Contains(err.Error(), tc.want):
				t.Errorf("parsePush() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// A rejection is addressed to the push when its id could be read, with a
// number id kept as its text.
func TestParsePushKeepsIDOnError(t *testing.T) {
	p, err := parsePush([]byte(`{"id":42,"method":"ota.device.upgrade","params":` +
		`{"jobId":"j9"}}`))
	if err == nil || p.id != "42" || p.params.JobID != "j9" {
		t.Errorf("parsePush() = %+v, %v; want id 42, jobId j9 and an error", p, err)
	}
}

func TestPushIdentity(t *testing.T) {
	a := push{params: ota.UpgradeParams{Version: "2", Sign: "aa", JobID: "job-1"}}
	b := push{params: ota.UpgradeParams{Version: "2", Sign: "aa", JobID: "job-2"}}
	c := push{params: ota.UpgradeParams{Version: "2", Sign: "aa"}}
	if a.identity() == b.identity() || c.identity() == a.identity() {
		t.Errorf("identities %q %q %q, want all different", a.identity(), b.identity(),
			c.identity())
	}
}
