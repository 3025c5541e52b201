package cmd

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

// addDeviceCommands adds the commands that talk to devices or read what they
// reported: sync, device, versions, simulate.
func addDeviceCommands(root *cobra.Command, app *App) {
	device := groupCmd("device <command>", "List the devices otactl has learned")
	device.AddCommand(newDeviceListCmd(app))
	root.AddCommand(newSyncCmd(app), device, newVersionsCmd(app), newSimulateCmd(app))
}

func newSyncCmd(app *App) *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Record what devices reported since the last run, then exit",
		Long: `Connect to the broker with otactl's persistent session, receive every message
the broker queued while otactl was away, record it, send pending pushes, time
out overdue jobs, and exit. Run it from cron, or once before devices connect:
the broker keeps messages only for a session that exists, so the first sync
creates it. The broker's per-session queue limit (Mosquitto's
max_queued_messages, 1000 by default) bounds what is kept between runs.`,
		Example: `  $ otactl sync
  # in a crontab, every five minutes:
  */5 * * * * otactl sync --quiet`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error {
			l, err := app.openLive()
			if err != nil {
				return err
			}
			defer l.close()
			var devices int
			err = l.view(func(tx ota.Tx) error {
				return tx.EachDevice("", func(*ota.Device) error { devices++; return nil })
			})
			if err != nil {
				return err
			}
			received, rejected := l.received.Load(), l.rejected.Load()
			if app.Settings.JSON {
				doc := map[string]any{"broker": app.Settings.Broker,
					"messages": received, "rejected": rejected, "devices": devices}
				if l.agent != nil {
					doc["agent"] = l.agent.Holder
				}
				return writeJSON(app.IO.Out, doc)
			}
			app.infof("synced with %s: %d messages received (%d rejected), %d devices known",
				app.Settings.Broker, received, rejected, devices)
			return nil
		},
	}
}

// deviceView is a device as device list prints it.
type deviceView struct {
	ProductKey string   `json:"productKey"`
	DeviceKey  string   `json:"deviceKey"`
	Version    string   `json:"version"`
	FirstSeen  timeJSON `json:"firstSeen"`
	LastSeen   timeJSON `json:"lastSeen"`
	ActiveJob  string   `json:"activeJob,omitempty"`
}

func newDeviceListCmd(app *App) *cobra.Command {
	var product, version string
	c := &cobra.Command{
		Use:   "list [--product <pk>] [--version <v>]",
		Short: "List devices with their reported version and last seen time",
		Long: `List the devices otactl learned from their version reports, as recorded by the
last sync (or a running agent). Rows are printed as they are read, so the
list of a product with 100,000 devices does not need them all in memory.`,
		Example: `  $ otactl device list --product pk1 --version 1.0.0
  $ otactl device list --product pk1 | cut -f2 > devices.txt`,
		Args: noArgs,
		RunE: func(*cobra.Command, []string) error { return runDeviceList(app, product, version) },
	}
	c.Flags().StringVar(&product, "product", "", "only this product `key`")
	c.Flags().StringVar(&version, "version", "", "only devices reporting this `version`")
	return c
}

func runDeviceList(app *App, product, version string) error {
	if product != "" {
		if err := ota.ValidateKey("product key", product); err != nil {
			return err
		}
	}
	out, tty, now := app.IO.Out, app.IO.OutTTY, app.Now()
	match := func(d *ota.Device) bool { return version == "" || ota.SameVersion(d.Version, version) }
	if app.Settings.JSON {
		return streamJSONArray(out, func(emit func(any) error) error {
			_, err := app.view(func(tx ota.Tx) error {
				return tx.EachDevice(product, func(d *ota.Device) error {
					if !match(d) {
						return nil
					}
					return emit(deviceView{d.ProductKey, d.DeviceKey, d.Version,
						timeJSON(d.FirstSeen), timeJSON(d.LastSeen), d.ActiveJob})
				})
			})
			return err
		})
	}
	t := table{header: []string{"PRODUCT", "DEVICE", "VERSION", "LAST SEEN", "ACTIVE JOB"}}
	n := 0
	_, err := app.view(func(tx ota.Tx) error {
		return tx.EachDevice(product, func(d *ota.Device) error {
			if !match(d) {
				return nil
			}
			n++
			row := []string{d.ProductKey, d.DeviceKey, d.Version, timeCell(d.LastSeen, tty, now), d.ActiveJob}
			if tty {
				t.add(row...) // a terminal shows a table; nobody reads 100,000 rows there
				return nil
			}
			_, err := fmt.Fprintln(out, joinTab(row))
			return err
		})
	})
	if err != nil {
		return err
	}
	if n == 0 {
		app.infof("no devices%s", productSuffix(product))
	}
	return t.render(out, tty)
}

func newVersionsCmd(app *App) *cobra.Command {
	var product string
	c := &cobra.Command{
		Use:   "versions --product <pk>",
		Short: "List the versions a product's devices report, with device counts",
		Long: `List the version numbers reported by the product's devices, oldest first, with
the number of devices reporting each. These are the source versions that
'verify start --from-version' accepts. Exits 8 with the message "No version
number is escalated by the devices" when no device has reported one yet.`,
		Example: `  $ otactl sync && otactl versions --product pk1`,
		Args:    noArgs,
		RunE:    func(*cobra.Command, []string) error { return runVersions(app, product) },
	}
	c.Flags().StringVar(&product, "product", "", "product `key` (required)")
	return c
}

func runVersions(app *App, product string) error {
	if product == "" {
		return ota.Invalid("--product is required")
	}
	if err := ota.ValidateKey("product key", product); err != nil {
		return err
	}
	var counts []ota.VersionCount
	_, err := app.view(func(tx ota.Tx) error {
		var err error
		counts, err = ota.ReportedVersions(tx, product)
		return err
	})
	if err != nil {
		return err
	}
	if len(counts) == 0 {
		return ota.Errorf(ota.KindNoVersions, "%s (product %s)", ota.NoVersionsMessage, product).
			WithHint("devices report their version when they connect; run otactl sync to record them")
	}
	if app.Settings.JSON {
		return writeJSON(app.IO.Out, map[string]any{"productKey": product, "versions": counts})
	}
	t := table{header: []string{"VERSION", "DEVICES"}}
	for _, c := range counts {
		t.add(c.Version, strconv.Itoa(c.Devices))
	}
	return t.render(app.IO.Out, app.IO.OutTTY)
}
