package cmd

import (
	"io"
	"os"

	"golang.org/x/term"
)

// IO is where a command reads and writes. Tests pass buffers; the terminal
// flags decide between tables with relative times and plain rows.
type IO struct {
	In     io.Reader
	Out    io.Writer // data
	Err    io.Writer // progress and diagnostics
	OutTTY bool
	ErrTTY bool
}

// SystemIO returns the process's standard streams.
func SystemIO() *IO {
	return &IO{
		In:     os.Stdin,
		Out:    os.Stdout,
		Err:    os.Stderr,
		OutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		ErrTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
}
