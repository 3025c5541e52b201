package state

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/otactl/otactl/ota"
)

func TestBackupIsAnOpenableCopy(t *testing.T) {
	s := openTest(t)
	edit(t, s, func(tx ota.Tx) error { return tx.PutDevice(newTestDevice(1)) })
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("Backup = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "copy.db")
	writeFile(t, path, buf.Bytes())
	c, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open(backup): %v", err)
	}
	defer c.Close()
	if errs := c.Check(); len(errs) != 0 {
		t.Errorf("Check(backup) = %v", errs)
	}
	wantDevices(t, c, 1)
}

// The backup is online: writers keep committing while it runs, and the
// copy is one consistent snapshot.
func TestBackupWhileWriting(t *testing.T) {
	s := openTest(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			err := s.Update(func(tx ota.Tx) error {
				if err := tx.PutDevice(newTestDevice(i)); err != nil {
					return err
				}
				return tx.AppendEvent(&ota.Event{Subject: "device/pk/x", Action: "seen"})
			})
			if err != nil {
				t.Errorf("Update during backup: %v", err)
				return
			}
		}
	}()
	dst := filepath.Join(t.TempDir(), "backup.db")
	for i := range 5 {
		if err := s.BackupFile(dst, i > 0); err != nil {
			t.Fatalf("BackupFile: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	c, err := Open(dst, Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("Open(backup): %v", err)
	}
	defer c.Close()
	if errs := c.Check(); len(errs) != 0 {
		t.Errorf("Check(backup taken during writes) = %v", errs)
	}
}

func TestBackupFile(t *testing.T) {
	s := openTest(t)
	dir := t.TempDir()
	dst := filepath.Join(dir, "backup.db")
	if err := s.BackupFile(dst, false); err != nil {
		t.Fatalf("BackupFile(new): %v", err)
	}
	wantMode(t, dst, 0o600)
	before := fileSum(t, dst)

	edit(t, s, func(tx ota.Tx) error { return tx.PutDevice(newTestDevice(1)) })
	err := s.BackupFile(dst, false)
	wantKind(t, "BackupFile(existing)", err, ota.KindRefused, dst, "exists")
	if fileSum(t, dst) != before {
		t.Errorf("a refused BackupFile changed %s", dst)
	}
	if err := s.BackupFile(dst, true); err != nil {
		t.Fatalf("BackupFile(existing, force): %v", err)
	}
	if fileSum(t, dst) == before {
		t.Errorf("BackupFile(force) did not replace %s", dst)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("backup folder holds %d entries, want 1: temporary files left", len(entries))
	}
}

// Regression guard: "state backup --force" pointed at the state file itself
// would replace the live file with a copy of itself mid-use.
func TestBackupFileRefusesTheStateFile(t *testing.T) {
	s := openTest(t)
	before := fileSum(t, s.Path())
	err := s.BackupFile(s.Path(), true)
	wantKind(t, "BackupFile(state file, force)", err, ota.KindInvalid, "the state file itself")
	if fileSum(t, s.Path()) != before {
		t.Errorf("BackupFile changed the state file")
	}
}

func wantDevices(t *testing.T, s *Store, want int) {
	t.Helper()
	n := 0
	err := s.View(func(tx ota.Tx) error {
		return tx.EachDevice("", func(*ota.Device) error { n++; return nil })
	})
	if err != nil || n != want {
		t.Errorf("devices = %d, %v; want %d", n, err, want)
	}
}

// A backup that cannot be written (here a folder where no file can be
// created, even by root) is a failed write of the backup, exit 1: it once
// came back as KindState, exit 4, "state file unusable", though the state
// file was fine.
func TestBackupFileWriteFailureIsNotTheStateFiles(t *testing.T) {
	s := openTest(t)
	dst := "/proc/self/backup.db"
	err := s.BackupFile(dst, false)
	wantKind(t, "BackupFile(/proc/self/backup.db)", err, ota.KindInternal, dst)
}

func TestBackupWriterErrorsAreKept(t *testing.T) {
	w := &dstWriter{w: failingWriter{}}
	if _, err := w.Write([]byte("x")); err == nil || w.err != err {
		t.Errorf("dstWriter.Write = %v, kept %v; want the writer's error kept", err, w.err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }
