//go:build unix

package storage

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// withUmask runs the test under the common default umask 022, with which
// files are created world-readable unless nudge asks otherwise.
func withUmask(t *testing.T) {
	old := syscall.Umask(0o022)
	t.Cleanup(func() { syscall.Umask(old) })
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestSafetyDatabaseCreatedPrivate: a new database (and its -wal and -shm,
// and a missing directory) can be read by nudge's user only.
func TestSafetyDatabaseCreatedPrivate(t *testing.T) {
	withUmask(t)
	dir := filepath.Join(t.TempDir(), "var", "nudge")
	path := filepath.Join(dir, "nudge.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.EnqueueTrigger(context.Background(), &Trigger{Project: "p", Record: "1", ReceivedAt: t0}); err != nil {
		t.Fatal(err) // a write, so that the -wal and -shm files exist
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s: mode %04o, want 0600", filepath.Base(p), m)
		}
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if m := mode(t, d); m != 0o700 {
			t.Errorf("created directory %s: mode %04o, want 0700", d, m)
		}
	}
}

// TestSafetyDatabaseRefusesOpenModes: a database file, -wal or -shm that
// other users may read or write is refused, and the error says the chmod
// to run; nothing is read from it.
func TestSafetyDatabaseRefusesOpenModes(t *testing.T) {
	withUmask(t)
	tests := []struct {
		name string
		file string // "", "-wal" or "-shm"
		mode os.FileMode
		ok   bool
	}{
		{"private", "", 0o600, true},
		{"read-only for the owner", "", 0o400, true},
		{"world-readable", "", 0o644, false},
		{"group-readable", "", 0o640, false},
		{"group-writable", "", 0o620, false},
		{"world-writable", "", 0o602, false},
		{"world-readable -wal", "-wal", 0o644, false},
		{"group-readable -shm", "-shm", 0o640, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nudge.db")
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.EnqueueTrigger(context.Background(), &Trigger{Project: "p", Record: "1", ReceivedAt: t0}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			target := path + tt.file
			if tt.file != "" {
				// An old nudge left them behind with a loose mode.
				if err := os.WriteFile(target, nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Chmod(target, tt.mode); err != nil {
				t.Fatal(err)
			}
			s, err = Open(path)
			if tt.ok {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				s.Close()
				return
			}
			if err == nil {
				s.Close()
				t.Fatal("Open accepted a database other users can read or write")
			}
			if !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "chmod 600 "+target) {
				t.Errorf("error %v, want ErrPermissions saying `chmod 600 %s`", err, target)
			}
		})
	}
}

// TestSafetyDatabaseDirectory: a directory anyone may write to is refused
// (its files could be swapped); one others may only read is accepted with
// a warning, since the file's own mode keeps the data private.
func TestSafetyDatabaseDirectory(t *testing.T) {
	withUmask(t)
	tests := []struct {
		name     string
		mode     os.FileMode
		refused  bool
		warnings int
	}{
		{"private", 0o700, false, 0},
		{"readable by all (t.TempDir, /var/lib)", 0o755, false, 1},
		{"writable by all", 0o777, true, 0},
		{"sticky and writable by all (/tmp)", 0o777 | os.ModeSticky, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "db")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.mode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "nudge.db")
			s, err := Open(path)
			if tt.refused {
				if err == nil {
					s.Close()
					t.Fatal("Open accepted a directory every user can write to")
				}
				if !errors.Is(err, ErrPermissions) || !strings.Contains(err.Error(), "chmod o-w "+dir) {
					t.Errorf("error %v, want ErrPermissions saying `chmod o-w %s`", err, dir)
				}
				if _, err := os.Stat(path); err == nil {
					t.Error("the database file was created anyway")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if n := len(s.Warnings()); n != tt.warnings {
				t.Errorf("warnings %q, want %d", s.Warnings(), tt.warnings)
			}
		})
	}
}

// TestSafetyPruneTriggers: handled triggers older than the retention go;
// pending ones and recent ones stay.
func TestSafetyPruneTriggers(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	add := func(rec string, done time.Time) int64 {
		tr := &Trigger{Project: "p", Record: rec, ReceivedAt: t0}
		if err := s.EnqueueTrigger(ctx, tr); err != nil {
			t.Fatal(err)
		}
		if !done.IsZero() {
			if err := s.CompleteTrigger(ctx, tr.ID, done); err != nil {
				t.Fatal(err)
			}
		}
		return tr.ID
	}
	old := add("old", t0.Add(time.Minute))
	recent := add("recent", t0.Add(8*24*time.Hour))
	pending := add("pending", time.Time{})
	n, err := s.PruneTriggers(ctx, t0.Add(7*24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	if _, err := s.GetTrigger(ctx, old); !errors.Is(err, ErrNotFound) {
		t.Errorf("the old handled trigger is still there: %v", err)
	}
	for _, id := range []int64{recent, pending} {
		if _, err := s.GetTrigger(ctx, id); err != nil {
			t.Errorf("trigger %d: %v", id, err)
		}
	}
}
