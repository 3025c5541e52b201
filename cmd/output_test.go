package cmd

import (
	"bytes"
	"strings"
	"testing"
)

func TestCell(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"plain", "downloading 42%", "downloading 42%"},
		{"non-ASCII", "温湿度-01 café", "温湿度-01 café"},
		{"empty", "", ""},
		{"escape sequence", "\x1b[2J\x1b[31mPWNED", `\x1b[2J\x1b[31mPWNED`},
		{"tab newline return", "a\tb\nc\rd", `a\tb\nc\rd`},
		{"nul and del", "a\x00b\x7f", `a\x00b\x7f`},
		{"C1 CSI", "a\u009b2J", `a\u009b2J`},
		{"bidi override", "abc\u202edcba", `abc\u202edcba`},
		{"zero width and line separator", "a\u200bb\u2028c", `a\u200bb\u2028c`},
		{"non-ASCII spaces kept", "版本\u3000説明\u00a0ok", "版本\u3000説明\u00a0ok"},
		{"invalid UTF-8", "a\xffb", `a\xffb`},
		{"backslash kept", `C:\fw`, `C:\fw`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cell(tt.in); got != tt.want {
				t.Errorf("cell(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// A device's progress description once reached the table as it was sent:
// its escapes acted on the terminal, and its tabs and newline added columns
// and a fake row. Both shapes of a table must show it escaped, in one row.
func TestTableEscapesDeviceText(t *testing.T) {
	desc := "\x1b[2J\x1b[31mPWNED\tfake\tcols\nsim-9\tUpgraded successfully\r"
	for _, tty := range []bool{false, true} {
		tb := table{header: []string{"DEVICE", "STATUS", "DESCRIPTION"}}
		tb.add("sim-9", "In progress", desc)
		var out bytes.Buffer
		if err := tb.render(&out, tty); err != nil {
			t.Fatalf("render(tty=%v) = %v", tty, err)
		}
		got := out.String()
		if strings.ContainsAny(got, "\x1b\r") {
			t.Errorf("render(tty=%v) = %q, want no ESC or CR", tty, got)
		}
		if !strings.Contains(got, `\x1b[2J\x1b[31mPWNED\tfake\tcols\nsim-9`) {
			t.Errorf("render(tty=%v) = %q, want the description escaped", tty, got)
		}
		if n := strings.Count(got, "Upgraded successfully"); n != 1 {
			t.Errorf("render(tty=%v) shows the fake status %d times, want once, escaped", tty, n)
		}
		if !tty && got != "sim-9\tIn progress\t"+cell(desc)+"\n" {
			t.Errorf("render(tty=false) = %q, want one row of three cells", got)
		}
	}
}

func TestFieldsEscapeValues(t *testing.T) {
	var out bytes.Buffer
	err := fields(&out, "id", "fw-1", "description", "ok\x1b]0;title\x07\nfake: row")
	if err != nil {
		t.Fatalf("fields() = %v", err)
	}
	want := "id:           fw-1\ndescription:  ok\\x1b]0;title\\a\\nfake: row\n"
	if got := out.String(); got != want {
		t.Errorf("fields() = %q, want %q", got, want)
	}
}
