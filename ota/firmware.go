package ota

import (
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxDescriptionLen is the longest firmware description, in characters.
const MaxDescriptionLen = 1024

// FirmwareSpec is what a user gives to register a firmware. Exactly one of
// a stored file (StoredFile, with Sign and Size computed from it) and a URL
// (with Sign and Size given) locates the image.
type FirmwareSpec struct {
	ProductKey  string
	Version     string
	Name        string // defaults to Version
	SignMethod  string // defaults to sha256
	Sign        string
	Size        int64
	URL         string
	StoredFile  string
	Description string
}

// NormalizeSignMethod lowercases a sign method and applies the default
// (sha256); an unknown method is an error naming it.
func NormalizeSignMethod(m string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(m)) {
	case "", SignSHA256:
		return SignSHA256, nil
	case SignMD5:
		return SignMD5, nil
	}
	return "", Invalid("sign method %q is not supported; use sha256 or md5", m)
}

// NormalizeSign checks that sign is a hex digest of the method's length and
// returns it lowercase.
func NormalizeSign(method, sign string) (string, error) {
	want := 64
	if method == SignMD5 {
		want = 32
	}
	s := strings.ToLower(strings.TrimSpace(sign))
	if len(s) != want {
		return "", Invalid("sign %q is %d characters long; a %s digest has %d hex digits",
			sign, len(s), method, want)
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", Invalid("sign %q is not hexadecimal", sign)
	}
	return s, nil
}

// ValidateDescription checks a firmware description: valid UTF-8 of at most
// MaxDescriptionLen characters, with no control characters at all. A
// description is one line of text in tables and in `firmware show`; a tab, a
// newline or a terminal escape in it would forge rows or act on the terminal
// of whoever reads it. what names the input in the error ("--desc").
func ValidateDescription(what, s string) error {
	if !utf8.ValidString(s) {
		return Invalid("%s is not valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > MaxDescriptionLen {
		return Invalid("%s is %d characters long; the limit is %d", what, n, MaxDescriptionLen)
	}
	n := 0
	for _, r := range s {
		n++
		if unicode.IsControl(r) {
			return Invalid("%s contains the control character %s at character %d; "+
				"a description is one line of text", what, strconv.QuoteRune(r), n)
		}
	}
	return nil
}

// NewFirmware validates a spec and returns the firmware it describes, not
// yet stored and without an ID.
func NewFirmware(spec FirmwareSpec, now time.Time) (*Firmware, error) {
	if err := ValidateKey("product key", spec.ProductKey); err != nil {
		return nil, err
	}
	if err := ValidateLabel("firmware version", spec.Version); err != nil {
		return nil, err
	}
	if spec.Name == "" {
		spec.Name = spec.Version
	}
	if err := ValidateLabel("firmware name", spec.Name); err != nil {
		return nil, err
	}
	method, err := NormalizeSignMethod(spec.SignMethod)
	if err != nil {
		return nil, err
	}
	sign, err := NormalizeSign(method, spec.Sign)
	if err != nil {
		return nil, err
	}
	if spec.Size <= 0 {
		return nil, Invalid("firmware size %d is not a positive number of bytes", spec.Size)
	}
	if (spec.URL == "") == (spec.StoredFile == "") {
		return nil, Invalid("firmware needs exactly one of a stored file and a URL")
	}
	if err := ValidateDescription("description", spec.Description); err != nil {
		return nil, err
	}
	return &Firmware{
		ProductKey:  spec.ProductKey,
		Name:        spec.Name,
		Version:     spec.Version,
		SignMethod:  method,
		Sign:        sign,
		Size:        spec.Size,
		URL:         spec.URL,
		StoredFile:  spec.StoredFile,
		Description: spec.Description,
		Status:      FirmwareUnverified,
		CreatedAt:   now,
		UpdatedAt:   now,
	}, nil
}

// AddFirmware stores f with a new ID, refusing a second firmware with the
// same version or name in its product, and records the addition.
func AddFirmware(tx Tx, f *Firmware, now time.Time) error {
	var dup *Firmware
	err := tx.EachFirmware(func(o *Firmware) error {
		if o.ProductKey == f.ProductKey && (SameVersion(o.Version, f.Version) || o.Name == f.Name) {
			dup = o
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return err
	}
	if dup != nil {
		what, value := "version", f.Version
		if !SameVersion(dup.Version, f.Version) {
			what, value = "name", f.Name
		}
		return Refused("product %s already has firmware %s with %s %q", f.ProductKey, dup.ID, what, value).
			WithHint("otactl firmware show %s", dup.ID)
	}
	seq, err := tx.NextSeq(FirmwarePrefix)
	if err != nil {
		return err
	}
	f.ID = FormatID(FirmwarePrefix, seq)
	if err := tx.PutFirmware(f); err != nil {
		return err
	}
	return tx.AppendEvent(&Event{Time: now, Subject: FirmwareSubject(f.ID), Action: "added",
		Detail: "firmware " + f.ProductKey + "/" + f.Version + " registered"})
}

// ResolveFirmware finds a firmware by its ID or by "PK/VERSION".
func ResolveFirmware(tx Tx, ref string) (*Firmware, error) {
	var (
		f   *Firmware
		err error
	)
	if pk, version, ok := strings.Cut(ref, "/"); ok {
		f, err = tx.FirmwareByVersion(pk, version)
		if err == nil && f == nil {
			f, err = firmwareBySameVersion(tx, pk, version)
		}
	} else {
		f, err = tx.Firmware(ref)
	}
	if err != nil {
		return nil, err
	}
	if f == nil {
		return nil, Invalid("firmware %q not found", ref).WithHint("otactl firmware list")
	}
	return f, nil
}

// firmwareBySameVersion lets "pk/v1.2.0" find the firmware registered as
// "1.2.0", since versions are equal after trimming.
func firmwareBySameVersion(tx Tx, pk, version string) (*Firmware, error) {
	var found *Firmware
	err := tx.EachFirmware(func(f *Firmware) error {
		if f.ProductKey == pk && SameVersion(f.Version, version) {
			found = f
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return nil, err
	}
	return found, nil
}

// DeleteFirmware removes a firmware that has no active job, recording it in
// the history. Its rounds and finished jobs stay, as history of what ran.
func DeleteFirmware(tx Tx, ref string, now time.Time) (*Firmware, error) {
	f, err := ResolveFirmware(tx, ref)
	if err != nil {
		return nil, err
	}
	var active *Job
	err = tx.EachJob(func(j *Job) error {
		if j.FirmwareID == f.ID && j.Status.Active() {
			active = j
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return nil, err
	}
	if active != nil {
		return nil, Refused("firmware %s has an active job (%s on device %s, %s)",
			f.ID, active.ID, active.DeviceKey, active.Status.Label())
	}
	// A running task may have no active job between its pushes while
	// devices still wait in its plan for theirs.
	if t, err := RunningTask(tx, f.ID); err != nil {
		return nil, err
	} else if t != nil {
		return nil, Refused("firmware %s has a running batch task %s", f.ID, t.ID).
			WithHint("otactl batch-upgrade cancel %s", t.ID)
	}
	if err := tx.DeleteFirmware(f.ID); err != nil {
		return nil, err
	}
	return f, tx.AppendEvent(&Event{Time: now, Subject: FirmwareSubject(f.ID), Action: "deleted",
		Detail: "firmware " + f.ProductKey + "/" + f.Version + " deleted"})
}

// FileReferenced reports whether any firmware still uses the stored file.
func FileReferenced(tx Tx, name string) (bool, error) {
	used := false
	err := tx.EachFirmware(func(f *Firmware) error {
		if f.StoredFile == name {
			used = true
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return used, err
}

// FileURL is where devices fetch a firmware: its own URL when it is hosted
// elsewhere; for a stored file, baseURL followed by the file's name when a
// base URL is configured (files.base-url, see serve-files), and otherwise a
// file:// URL of the stored copy, enough for devices on the same machine.
func FileURL(f *Firmware, baseURL string, storedPath func(name string) string) string {
	if f.URL != "" {
		return f.URL
	}
	if baseURL != "" {
		return strings.TrimRight(baseURL, "/") + "/" + f.StoredFile
	}
	return (&url.URL{Scheme: "file", Path: storedPath(f.StoredFile)}).String()
}
