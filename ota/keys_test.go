package ota

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateKey(t *testing.T) {
	tests := []struct {
		name, key string
		wantErr   string // substring; empty means valid
	}{
		{"chinese", "温湿度-01", ""},
		{"accented", "café_2", ""},
		{"ascii", "dev-4_x", ""},
		{"64 chars", strings.Repeat("é", 64), ""},
		{"empty", "", "device key is empty"},
		{"tab", "a\tb", "control character"},
		{"nul", "a\x00b", "control character"},
		{"invalid utf-8", "a\xffb", "not valid UTF-8"},
		{"slash", "a/b", `contains '/'`},
		{"plus", "a+b", `contains '+'`},
		{"hash", "a#b", `contains '#'`},
		{"dollar", "$SYS", `contains '$'`},
		{"space", "a b", "contains a space"},
		{"300 chars", strings.Repeat("k", 300), "is 300 characters long; the limit is 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateKey("device key", tt.key)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateKey(%q) = %v, want nil", tt.key, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateKey(%q) = %v, want error containing %q", tt.key, err, tt.wantErr)
			case err != nil && KindOf(err) != KindInvalid:
				t.Errorf("ValidateKey(%q) kind = %v, want invalid", tt.key, KindOf(err))
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b    string
		cmp     int
		ordered bool
	}{
		{"3.10", "3.9", 1, true},
		{"1.11.0", "1.6.0", 1, true},
		{"1.6.0", "1.11.0", -1, true},
		{"v1.6.0", "1.6.0 ", 0, true},
		{"2.0.0", "2.0.0-rc1", 1, true},
		{"2.0.0-rc1", "2.0.0", -1, true},
		{"2.0.0.1", "2.0.0", 1, true},
		{"2.0.0-rc1", "2.0.0.1", -1, true},
		{"2.0.0+build5", "2.0.0", 0, true},
		{"2.0.0-rc2", "2.0.0-rc10", -1, true},
		{"2.0.0-beta", "2.0.0-alpha", 1, true},
		{"1.0.010", "1.0.9", 1, true},
		{"2.1.0", "2.0.0", 1, true},
		{"1.0.0", "2.0.0", -1, true},
		{"matcha-1.6.0-RC-4", "1.6.0", -1, true},
		{"beta", "1.0.0", 0, false},
		{"", "1.0.0", 0, false},
	}
	for _, tt := range tests {
		cmp, ok := CompareVersions(tt.a, tt.b)
		if cmp != tt.cmp || ok != tt.ordered {
			t.Errorf("CompareVersions(%q, %q) = %d, %v, want %d, %v", tt.a, tt.b, cmp, ok, tt.cmp, tt.ordered)
		}
	}
}

func TestSameVersion(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"v1.6.0", "1.6.0", true},
		{"1.6.0 ", "1.6.0", true},
		{" V1.6.0", "1.6.0", true},
		{"matcha-1.6.0-RC-4", "1.6.0", false},
		{"", "1.6.0", false},
		{"vv1.6.0", "1.6.0", false},
		{"3.10", "3.1", false},
		{"v", "v", true},
	}
	for _, tt := range tests {
		if got := SameVersion(tt.a, tt.b); got != tt.want {
			t.Errorf("SameVersion(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseID(t *testing.T) {
	for _, id := range []string{"fw-1", "job-42", "round-18446744073709551615"} {
		p, seq, ok := ParseID(id)
		if !ok || FormatID(p, seq) != id {
			t.Errorf("ParseID(%q) = %q, %d, %v; does not round-trip", id, p, seq, ok)
		}
	}
	for _, id := range []string{"", "fw", "fw-", "fw-0", "fw-01", "-1", "fw-x", "fw-1a"} {
		if _, _, ok := ParseID(id); ok {
			t.Errorf("ParseID(%q) ok = true, want false", id)
		}
	}
}

func TestHashesRoundTrip(t *testing.T) {
	for _, in := range []string{`{"recent":"AAAAAAAAAAEAAAAAAAAAAg=="}`, `{"recent":[1,2]}`} {
		var d Device
		if err := json.Unmarshal([]byte(in), &d); err != nil || len(d.Recent) != 2 ||
			d.Recent[0] != 1 || d.Recent[1] != 2 {
			t.Errorf("Unmarshal(%s) = %v, %v; want [1 2]", in, d.Recent, err)
		}
		out, _ := json.Marshal(Device{Recent: d.Recent})
		if !strings.Contains(string(out), `"recent":"AAAAAAAAAAEAAAAAAAAAAg=="`) {
			t.Errorf("Marshal = %s, want the base64 form", out)
		}
	}
}
