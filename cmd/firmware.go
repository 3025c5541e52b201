package cmd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/otactl/otactl/ota"
)

func newFirmwareCmd(app *App) *cobra.Command {
	c := groupCmd("firmware <command>", "Register, list, show and delete firmware images")
	c.AddCommand(newFirmwareAddCmd(app), newFirmwareListCmd(app),
		newFirmwareShowCmd(app), newFirmwareDeleteCmd(app))
	return c
}

type firmwareAddOptions struct {
	spec ota.FirmwareSpec
	file string
}

func newFirmwareAddCmd(app *App) *cobra.Command {
	var o firmwareAddOptions
	c := &cobra.Command{
		Use:   "add --product <pk> --version <v> (--file <path> | --url <url> --sign <hex> --size <n>)",
		Short: "Register a firmware image",
		Long: `Register a firmware image for a product.

With --file, otactl computes the file's size and digest (sha256 unless
--sign-method md5) and keeps a copy in the file store beside the state file;
a --sign given as well must match. With --url, the image is hosted elsewhere
and --sign, --sign-method and --size describe it.

A product cannot have two firmware with the same version or the same name.
New firmware is unverified: it must pass 'otactl verify' before any batch
upgrade may use it.`,
		Example: `  $ otactl firmware add --product pk1 --version 2.0.0 --file build/fw.bin
  $ otactl firmware add --product pk1 --version 2.0.1 --url https://cdn.example/fw.bin \
      --sign-method md5 --sign 9e107d9d372bb6826bd81d3542a419d6 --size 1048576`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runFirmwareAdd(app, &o, c.Flags().Changed("size"))
		},
	}
	f := c.Flags()
	f.StringVar(&o.spec.ProductKey, "product", "", "product `key` (required)")
	f.StringVar(&o.spec.Version, "version", "", "firmware `version`, unique in the product (required)")
	f.StringVar(&o.file, "file", "", "image `file` to store and digest")
	f.StringVar(&o.spec.Name, "name", "", "firmware `name`, unique in the product (default: the version)")
	f.StringVar(&o.spec.SignMethod, "sign-method", ota.SignSHA256, "digest `method`: sha256 or md5")
	_ = c.RegisterFlagCompletionFunc("sign-method", oneOf(ota.SignSHA256, ota.SignMD5))
	f.StringVar(&o.spec.Sign, "sign", "", "expected `hex` digest of the image")
	f.StringVar(&o.spec.URL, "url", "", "where devices fetch an image hosted elsewhere")
	f.Int64Var(&o.spec.Size, "size", 0, "image size in `bytes` (with --url)")
	f.StringVar(&o.spec.Description, "desc", "", "one line of `text` describing the image")
	return c
}

func runFirmwareAdd(app *App, o *firmwareAddOptions, sizeGiven bool) error {
	if err := checkFirmwareSource(o, sizeGiven); err != nil {
		return err
	}
	now := app.Now().UTC()
	if o.file != "" {
		// Validate everything but the digest first, so that a bad product
		// key or version does not cost a copy of the image.
		probe := o.spec
		probe.StoredFile, probe.Size = "probe", 1
		probe.Sign = strings.Repeat("0", signLen(probe.SignMethod))
		if _, err := ota.NewFirmware(probe, now); err != nil {
			return err
		}
		if err := storeFirmwareFile(app, o); err != nil {
			return err
		}
	}
	fw, err := ota.NewFirmware(o.spec, now)
	if err != nil {
		return err
	}
	err = app.update(func(tx ota.Tx) error { return ota.AddFirmware(tx, fw, now) })
	if err != nil {
		app.dropUnusedFile(o.spec.StoredFile)
		return err
	}
	return app.printFirmware(fw, nil)
}

// checkFirmwareSource checks what needs neither the file nor the state: the
// choice between --file and --url, and --desc.
func checkFirmwareSource(o *firmwareAddOptions, sizeGiven bool) error {
	switch {
	case o.spec.ProductKey == "":
		return ota.Invalid("--product is required")
	case o.spec.Version == "":
		return ota.Invalid("--version is required")
	case o.file == "" && o.spec.URL == "":
		return ota.Invalid("one of --file and --url is required")
	case o.file != "" && o.spec.URL != "":
		return ota.Invalid("--file and --url exclude each other: a stored file's URL is derived")
	case o.file != "" && sizeGiven:
		return ota.Invalid("--size goes with --url; with --file the size is measured")
	case o.spec.URL != "" && (o.spec.Sign == "" || !sizeGiven):
		return ota.Invalid("--url needs --sign and --size (and --sign-method unless sha256)")
	}
	// Checked here as well as in ota.NewFirmware so that the error names the
	// flag the user typed.
	if err := ota.ValidateDescription("--desc", o.spec.Description); err != nil {
		return err
	}
	if o.spec.URL != "" {
		return checkImageURL(o.spec.URL)
	}
	return nil
}

func checkImageURL(u string) error {
	for _, p := range []string{"http://", "https://", "file://"} {
		if strings.HasPrefix(u, p) && len(u) > len(p) {
			return nil
		}
	}
	return ota.Invalid("--url %q must be an http://, https:// or file:// URL", u)
}

func signLen(method string) int {
	if m, _ := ota.NormalizeSignMethod(method); m == ota.SignMD5 {
		return 32
	}
	return 64
}

// storeFirmwareFile copies the image into the file store and fills in its
// digest and size; a --sign given must match the computed digest.
func storeFirmwareFile(app *App, o *firmwareAddOptions) error {
	method, err := ota.NormalizeSignMethod(o.spec.SignMethod)
	if err != nil {
		return err
	}
	if st, err := os.Stat(o.file); err != nil {
		return ota.Invalid("--file %s: %v", o.file, errors.Unwrap(err))
	} else if !st.Mode().IsRegular() {
		return ota.Invalid("--file %s is not a regular file", o.file)
	} else if st.Size() == 0 {
		return ota.Invalid("--file %s is empty", o.file)
	}
	var given string
	if o.spec.Sign != "" {
		if given, err = ota.NormalizeSign(method, o.spec.Sign); err != nil {
			return err
		}
	}
	name, sign, size, err := app.files().Put(o.file, method)
	if err != nil {
		return fmt.Errorf("store %s: %w", o.file, err)
	}
	if given != "" && given != sign {
		app.dropUnusedFile(name)
		return ota.Invalid("--sign %s does not match the %s of %s (%s)", o.spec.Sign, method, o.file, sign)
	}
	o.spec.SignMethod, o.spec.Sign, o.spec.Size, o.spec.StoredFile = method, sign, size, name
	return nil
}

// dropUnusedFile removes a stored image that no firmware refers to, after a
// registration failed. Errors are ignored: a leftover file costs only space.
func (a *App) dropUnusedFile(name string) {
	if name == "" {
		return
	}
	used := true
	_, err := a.view(func(tx ota.Tx) error {
		var err error
		used, err = ota.FileReferenced(tx, name)
		return err
	})
	if err == nil && !used {
		a.files().Remove(name)
	}
}

// firmwareView is a firmware as commands print it; Rounds only in show.
type firmwareView struct {
	*ota.Firmware
	FileURL   string      `json:"fileUrl"`
	CreatedAt timeJSON    `json:"createdAt"` // to the second, as every time otactl prints
	UpdatedAt timeJSON    `json:"updatedAt"`
	Rounds    []roundView `json:"rounds,omitempty"`
}

func newFirmwareView(a *App, f *ota.Firmware) firmwareView {
	return firmwareView{Firmware: f, FileURL: a.fileURL(f), CreatedAt: timeJSON(f.CreatedAt),
		UpdatedAt: timeJSON(f.UpdatedAt)}
}

func (a *App) printFirmware(f *ota.Firmware, rounds []*ota.RoundReport) error {
	v := newFirmwareView(a, f)
	for _, r := range rounds {
		v.Rounds = append(v.Rounds, newRoundView(r))
	}
	if a.Settings.JSON {
		return writeJSON(a.IO.Out, v)
	}
	verdict := string(f.Verdict)
	err := fields(a.IO.Out,
		"id", f.ID, "product", f.ProductKey, "name", f.Name, "version", f.Version,
		"status", string(f.Status), "verdict", verdict,
		"size", strconv.FormatInt(f.Size, 10)+" bytes ("+sizeCell(f.Size)+")",
		"signMethod", f.SignMethod, "sign", f.Sign, "fileUrl", v.FileURL,
		"description", f.Description, "created", timeCell(f.CreatedAt, false, a.Now()))
	for _, r := range rounds {
		if err != nil {
			return err
		}
		c := r.Counts()
		_, err = fmt.Fprintf(a.IO.Out, "\nround %d (%s, from %s): %d succeeded, %d failed, %d canceled, %d active\n",
			r.Round.Number, timeCell(r.Round.CreatedAt, false, a.Now()), strings.Join(r.Round.FromVersions, ", "),
			c[ota.JobSucceeded], c[ota.JobFailed], c[ota.JobCanceled], c[ota.JobToBeUpgraded]+c[ota.JobInProgress])
		if err == nil {
			err = a.renderRound(r, false)
		}
	}
	return err
}

func noArgs(c *cobra.Command, args []string) error {
	if len(args) > 0 {
		return ota.Invalid("%s takes no arguments, got %q", c.CommandPath(), args[0])
	}
	return nil
}

func oneArg(what string) cobra.PositionalArgs {
	return func(c *cobra.Command, args []string) error {
		if len(args) != 1 {
			return ota.Invalid("%s takes one %s, got %d arguments", c.CommandPath(), what, len(args))
		}
		return nil
	}
}
