package cmd

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/olekukonko/tablewriter"
	"github.com/spf13/cobra"
)

// table is rows shaped for output: a tablewriter table with a header on a
// terminal, tab-separated rows without a header when piped (for cut, awk).
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) render(w io.Writer, tty bool) error {
	if !tty {
		for _, r := range t.rows {
			if _, err := fmt.Fprintln(w, joinTab(r)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tablewriter.NewTable(w)
	tw.Header(toAny(t.header)...)
	for _, r := range t.rows {
		if err := tw.Append(toAny(r)...); err != nil {
			return err
		}
	}
	return tw.Render()
}

// toAny turns a row into tablewriter's cells, each one made safe by cell.
func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = cell(v)
	}
	return out
}

// joinTab is a row as a pipe gets it: its cells, made safe by cell, joined
// by tabs.
func joinTab(cells []string) string {
	safe := make([]string, len(cells))
	for i, c := range cells {
		safe[i] = cell(c)
	}
	return strings.Join(safe, "\t")
}

// cell is a value as a table or a "key: value" line shows it. Much of what
// tables print comes from devices (progress descriptions, raw payloads in
// history) or from old state files, and none of it may act on the reader's
// terminal or break the layout: a terminal escape could clear the screen, a
// tab add columns for cut and awk, a newline fake a row, a bidi override
// reverse what follows. So every rune that is not graphic (control and
// format characters, line separators), and every byte that is not UTF-8,
// is shown as a Go escape (\x1b, \t, \n, \u202e); other text, non-ASCII
// letters and spaces included, is unchanged. JSON output is not shaped
// here: it carries the exact text.
func cell(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !strconv.IsGraphic(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case strconv.IsGraphic(r):
			b.WriteString(s[i : i+n])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

// oneOf completes a flag whose value is one of choices, and never a file
// name.
func oneOf(choices ...string) cobra.CompletionFunc {
	return cobra.FixedCompletions(choices, cobra.ShellCompDirectiveNoFileComp)
}

// fields prints "key: value" lines, the shape of one record on a terminal
// and in a pipe alike.
func fields(w io.Writer, kv ...string) error {
	width := 0
	for i := 0; i < len(kv); i += 2 {
		width = max(width, len(kv[i]))
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			continue
		}
		if _, err := fmt.Fprintf(w, "%-*s  %s\n", width+1, kv[i]+":", cell(kv[i+1])); err != nil {
			return err
		}
	}
	return nil
}

// timeCell formats a time for a table: relative on a terminal ("3m ago"),
// RFC 3339 UTC in a pipe; empty for the zero time.
func timeCell(t time.Time, tty bool, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	if !tty {
		return t.UTC().Format(time.RFC3339)
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.UTC().Format(time.RFC3339)
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// sizeCell prints a byte count the way people read it.
func sizeCell(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// timeJSON is a time printed as RFC 3339 in UTC, the one time format of
// otactl's JSON output.
type timeJSON time.Time

// MarshalJSON writes t as RFC 3339 UTC.
func (t timeJSON) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format(time.RFC3339) + `"`), nil
}

func optTime(t time.Time) *timeJSON {
	if t.IsZero() {
		return nil
	}
	v := timeJSON(t)
	return &v
}

// streamJSONArray writes one JSON array whose elements come from produce,
// one at a time, so that a long listing never sits whole in memory.
func streamJSONArray(w io.Writer, produce func(emit func(any) error) error) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	first := true
	err := produce(func(v any) error {
		b, err := json.MarshalIndent(v, "  ", "  ")
		if err != nil {
			return err
		}
		sep := ",\n  "
		if first {
			sep, first = "\n  ", false
		}
		_, err = io.WriteString(w, sep+string(b))
		return err
	})
	if err != nil {
		return err
	}
	end := "\n]\n"
	if first {
		end = "]\n"
	}
	_, err = io.WriteString(w, end)
	return err
}
