package cmd

import (
	"sort"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

func newFirmwareListCmd(app *App) *cobra.Command {
	var product, status string
	c := &cobra.Command{
		Use:   "list [--product <pk>] [--status unverified|verifying|verified]",
		Short: "List registered firmware",
		Example: `  $ otactl firmware list --product pk1
  $ otactl firmware list --status verified --json`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			return runFirmwareList(app, product, status)
		},
	}
	c.Flags().StringVar(&product, "product", "", "only this product `key`")
	c.Flags().StringVar(&status, "status", "", "only firmware in this `status`")
	_ = c.RegisterFlagCompletionFunc("status", oneOf(string(ota.FirmwareUnverified),
		string(ota.FirmwareVerifying), string(ota.FirmwareVerified)))
	return c
}

func runFirmwareList(app *App, product, status string) error {
	if product != "" {
		if err := ota.ValidateKey("product key", product); err != nil {
			return err
		}
	}
	switch ota.FirmwareStatus(status) {
	case "", ota.FirmwareUnverified, ota.FirmwareVerifying, ota.FirmwareVerified:
	default:
		return ota.Invalid("--status %q is not one of unverified, verifying, verified", status)
	}
	list := []firmwareView{}
	_, err := app.view(func(tx ota.Tx) error {
		return tx.EachFirmware(func(f *ota.Firmware) error {
			if (product == "" || f.ProductKey == product) &&
				(status == "" || string(f.Status) == status) {
				list = append(list, newFirmwareView(app, f))
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].ProductKey < list[j].ProductKey })
	if app.Settings.JSON {
		return writeJSON(app.IO.Out, list)
	}
	t := table{header: []string{"ID", "PRODUCT", "NAME", "VERSION", "STATUS", "VERDICT", "SIZE", "CREATED"}}
	for _, f := range list {
		t.add(f.ID, f.ProductKey, f.Name, f.Version, string(f.Status), string(f.Verdict),
			sizeCell(f.Size), timeCell(f.Firmware.CreatedAt, app.IO.OutTTY, app.Now()))
	}
	if len(list) == 0 && !app.Settings.Quiet {
		app.infof("no firmware registered%s", productSuffix(product))
	}
	return t.render(app.IO.Out, app.IO.OutTTY)
}

func productSuffix(pk string) string {
	if pk == "" {
		return ""
	}
	return " for product " + pk
}

func newFirmwareShowCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "show <firmware>",
		Short: "Show a firmware and its verification rounds",
		Long: `Show a firmware by the id that 'firmware add' printed or as PK/VERSION.

The output includes the firmware's status and verdict and the results of
each of its verification rounds.`,
		Example: `  $ otactl firmware show fw-1
  $ otactl firmware show pk1/2.0.0 --json`,
		Args: oneArg("firmware"),
		RunE: func(_ *cobra.Command, args []string) error {
			var f *ota.Firmware
			var rounds []*ota.RoundReport
			found, err := app.view(func(tx ota.Tx) error {
				var err error
				if f, err = ota.ResolveFirmware(tx, args[0]); err != nil {
					return err
				}
				rounds, err = ota.Rounds(tx, f)
				return err
			})
			if err != nil {
				return err
			}
			if !found {
				return ota.Invalid("firmware %q not found: no state file yet at %s",
					args[0], app.Settings.StatePath)
			}
			return app.printFirmware(f, rounds)
		},
	}
}

func newFirmwareDeleteCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "delete <firmware>",
		Short: "Delete a firmware that has no active job",
		Long: `Delete a firmware by id or PK/VERSION. Refused while any job of the firmware
is still To be upgraded or In progress. Its stored image is removed when no
other firmware uses it; its history stays.`,
		Example: "  $ otactl firmware delete pk1/2.0.0",
		Args:    oneArg("firmware"),
		RunE: func(_ *cobra.Command, args []string) error {
			var f *ota.Firmware
			err := app.modify(func(tx ota.Tx) error {
				var err error
				f, err = ota.DeleteFirmware(tx, args[0], app.Now().UTC())
				return err
			})
			if err != nil {
				return err
			}
			app.dropUnusedFile(f.StoredFile)
			if app.Settings.JSON {
				return writeJSON(app.IO.Out, map[string]any{"deleted": f.ID})
			}
			app.infof("deleted firmware %s (%s/%s)", f.ID, f.ProductKey, f.Version)
			return nil
		},
	}
}
