package ota

import (
	"strings"
	"testing"
	"time"
)

// A description once took any text: a terminal escape or a newline in it
// went into the state file and back out raw in `firmware show`.
func TestValidateDescription(t *testing.T) {
	tests := []struct {
		name, desc string
		wantErr    string // substring; empty means valid
	}{
		{"empty", "", ""},
		{"text", "first build, 2× faster — für alle", ""},
		{"longest", strings.Repeat("é", MaxDescriptionLen), ""},
		{"escape", "\x1b[2Jgone", `--desc contains the control character '\x1b' at character 1`},
		{"newline", "one\ntwo", `control character '\n' at character 4`},
		{"tab", "a\tb", `control character '\t' at character 2`},
		{"carriage return", "ok\r", `control character '\r' at character 3`},
		{"del", "a\x7f", `control character '\x7f'`},
		{"C1 CSI", "é\u009b2J", `control character '\u009b' at character 2`},
		{"invalid utf-8", "a\xffb", "--desc is not valid UTF-8"},
		{"too long", strings.Repeat("d", MaxDescriptionLen+1),
			"is 1025 characters long; the limit is 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateDescription("--desc", tt.desc)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ValidateDescription(%q) = %v, want nil", tt.desc, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ValidateDescription(%q) = %v, want error containing %q",
					tt.desc, err, tt.wantErr)
			case err != nil && KindOf(err) != KindInvalid:
				t.Errorf("ValidateDescription(%q) kind = %v, want invalid", tt.desc, KindOf(err))
			}
		})
	}
}

func TestNewFirmwareRefusesControlCharacterInDescription(t *testing.T) {
	spec := FirmwareSpec{ProductKey: "pk1", Version: "2.0.0", Sign: strings.Repeat("0", 64),
		Size: 1, StoredFile: "x", Description: "ok\nfake row"}
	_, err := NewFirmware(spec, time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	if err == nil || !strings.Contains(err.Error(), "description contains the control character") {
		t.Errorf("NewFirmware(desc %q) = %v, want a control character error",
			spec.Description, err)
	}
}
