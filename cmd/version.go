package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// buildVersion describes the binary from the module's build information:
// the module version (set by go install) and the VCS commit when known.
func buildVersion() (version, commit string) {
	version, commit = "(devel)", ""
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if info.Main.Version != "" {
		version = info.Main.Version
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			commit = s.Value
		}
	}
	return
}

func newVersionCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print otactl's version, commit and Go version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			v, commit := buildVersion()
			if app.Settings.JSON {
				return writeJSON(app.IO.Out, map[string]string{
					"version": v, "commit": commit, "go": runtime.Version()})
			}
			_, err := fmt.Fprintf(app.IO.Out, "otactl %s %s %s\n", v, commit, runtime.Version())
			return err
		},
	}
}
