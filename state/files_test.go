package state

import (
	"bytes"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otactl/otactl/ota"
)

// newImage writes a firmware image to a temporary file.
func newImage(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.bin")
	writeFile(t, path, []byte(content))
	return path
}

func hexSum(content string, method string) string {
	if method == ota.SignMD5 {
		s := md5.Sum([]byte(content))
		return hex.EncodeToString(s[:])
	}
	s := sha256.Sum256([]byte(content))
	return hex.EncodeToString(s[:])
}

func TestFilesFor(t *testing.T) {
	f := FilesFor("/var/lib/otactl/state.db")
	if f.Dir() != filepath.FromSlash("/var/lib/otactl/files") {
		t.Errorf("FilesFor(/var/lib/otactl/state.db).Dir() = %q", f.Dir())
	}
}

func TestFilesPut(t *testing.T) {
	const content = "firmware image \x00\xff bytes"
	for _, method := range []string{ota.SignSHA256, ota.SignMD5, "SHA256", "Md5"} {
		t.Run(method, func(t *testing.T) {
			f := FilesFor(filepath.Join(t.TempDir(), "state.db"))
			name, sign, size, err := f.Put(newImage(t, content), method)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			lower := strings.ToLower(method)
			if name != hexSum(content, ota.SignSHA256) || sign != hexSum(content, lower) ||
				size != int64(len(content)) {
				t.Errorf("Put = %s, %s, %d; want sha256 name, %s sign, size %d",
					name, sign, size, lower, len(content))
			}
			wantMode(t, f.Dir(), 0o700)
			wantMode(t, f.Path(name), 0o600)
			wantContent(t, f, name, content)
			if err := f.Verify(name, method, strings.ToUpper(sign)); err != nil {
				t.Errorf("Verify(upper-case sign) = %v", err)
			}
		})
	}
}

func wantContent(t *testing.T, f *Files, name, want string) {
	t.Helper()
	r, err := f.Open(name)
	if err != nil {
		t.Fatalf("Open(%s): %v", name, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, []byte(want)) {
		t.Errorf("stored content = %q, %v; want %q", got, err, want)
	}
}

func TestFilesPutSameContentTwice(t *testing.T) {
	f := FilesFor(filepath.Join(t.TempDir(), "state.db"))
	n1, _, _, err1 := f.Put(newImage(t, "same"), ota.SignSHA256)
	n2, _, _, err2 := f.Put(newImage(t, "same"), ota.SignMD5)
	if err1 != nil || err2 != nil || n1 != n2 {
		t.Fatalf("Put twice = %s, %v and %s, %v; want one name", n1, err1, n2, err2)
	}
	entries, _ := os.ReadDir(f.Dir())
	if len(entries) != 1 {
		t.Errorf("store holds %d entries, want 1: a duplicate or a temporary file", len(entries))
	}
}

// A damaged copy already in the store must be replaced, not reused.
func TestFilesPutRepairsDamagedCopy(t *testing.T) {
	f := FilesFor(filepath.Join(t.TempDir(), "state.db"))
	name, _, _, err := f.Put(newImage(t, "good"), ota.SignSHA256)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.Path(name), []byte("bad"))
	if _, _, _, err := f.Put(newImage(t, "good"), ota.SignSHA256); err != nil {
		t.Fatal(err)
	}
	wantContent(t, f, name, "good")
}

func TestFilesVerifyMismatch(t *testing.T) {
	f := FilesFor(filepath.Join(t.TempDir(), "state.db"))
	name, sign, _, err := f.Put(newImage(t, "image"), ota.SignMD5)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Verify(name, ota.SignMD5, sign); err != nil {
		t.Fatalf("Verify(intact) = %v", err)
	}
	writeFile(t, f.Path(name), []byte("imagE"))
	err = f.Verify(name, ota.SignMD5, sign)
	wantKind(t, "Verify(tampered)", err, ota.KindState, f.Path(name), "does not match")
}

// Regression guard: names come from records and URLs; none may reach
// outside the store's folder.
func TestFilesRefuseForeignNames(t *testing.T) {
	f := FilesFor(filepath.Join(t.TempDir(), "state.db"))
	valid := hexSum("x", ota.SignSHA256)
	for _, name := range []string{"", "../state.db", "..", strings.ToUpper(valid),
		valid[:32], valid + "0", "/" + valid[1:], valid[:63] + "g"} {
		if p := f.Path(name); p != "" {
			t.Errorf("Path(%q) = %q, want \"\"", name, p)
		}
		if _, err := f.Open(name); ota.KindOf(err) != ota.KindInvalid {
			t.Errorf("Open(%q) = %v, want a KindInvalid error", name, err)
		}
		if err := f.Remove(name); ota.KindOf(err) != ota.KindInvalid {
			t.Errorf("Remove(%q) = %v, want a KindInvalid error", name, err)
		}
		if err := f.Verify(name, ota.SignSHA256, valid); ota.KindOf(err) != ota.KindInvalid {
			t.Errorf("Verify(%q) = %v, want a KindInvalid error", name, err)
		}
	}
}

func TestFilesRemove(t *testing.T) {
	f := FilesFor(filepath.Join(t.TempDir(), "state.db"))
	name, _, _, err := f.Put(newImage(t, "image"), ota.SignSHA256)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time, the file is gone: still no error
		if err := f.Remove(name); err != nil {
			t.Errorf("Remove = %v", err)
		}
	}
	if _, err := os.Stat(f.Path(name)); !os.IsNotExist(err) {
		t.Errorf("file still there after Remove: %v", err)
	}
}

func TestFilesPutBadInput(t *testing.T) {
	f := FilesFor(filepath.Join(t.TempDir(), "state.db"))
	_, _, _, err := f.Put(newImage(t, "x"), "crc32")
	wantKind(t, "Put(crc32)", err, ota.KindInvalid, "crc32")
	missing := filepath.Join(t.TempDir(), "missing.bin")
	_, _, _, err = f.Put(missing, ota.SignSHA256)
	wantKind(t, "Put(missing)", err, ota.KindInvalid, missing)
	_, _, _, err = f.Put(t.TempDir(), ota.SignSHA256)
	wantKind(t, "Put(folder)", err, ota.KindInvalid)
	if entries, _ := os.ReadDir(f.Dir()); len(entries) != 0 {
		t.Errorf("failed Puts left %d files in the store", len(entries))
	}
}
