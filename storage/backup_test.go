package storage

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestSafetyBackupWhileWriting backs up a database while another
// connection keeps writing to it: the backup is a private, intact copy that
// holds every change committed before it started, although those changes
// still sit in the -wal file, which a plain copy of the database file
// misses.
func TestSafetyBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	const before = 50
	for i := 0; i < before; i++ {
		if err := s.OptOut(ctx, fmt.Sprintf("+1415555%04d", i), "test", t0); err != nil {
			t.Fatal(err)
		}
	}

	// A plain copy of the main file lacks what is still in the WAL.
	plain := filepath.Join(t.TempDir(), "plain.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plain, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := countOptOuts(plain); err == nil && n >= before {
		t.Fatalf("plain copy of a serving database has all %d rows; the test no longer shows the WAL gap", n)
	}

	// Another connection writes while the backup runs.
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	written := 0
	go func() {
		defer wg.Done()
		for i := before; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := w.OptOut(ctx, fmt.Sprintf("+1415555%04d", i), "test", t0); err != nil {
				t.Errorf("write during backup: %v", err)
				return
			}
			written++
		}
	}()
	dest := filepath.Join(t.TempDir(), "backup.db")
	for i := 0; i < 3; i++ { // again over an older backup
		if err := Backup(ctx, path, dest); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("Backup: %v", err)
		}
	}
	close(stop)
	wg.Wait()

	fi, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("backup mode %04o, want 0600", perm)
	}
	if err := CheckIntegrity(ctx, dest); err != nil {
		t.Fatal(err)
	}
	n, err := countOptOuts(dest)
	if err != nil {
		t.Fatal(err)
	}
	if n < before || n > before+written {
		t.Errorf("backup holds %d opt-outs, want between %d and %d", n, before, before+written)
	}
	b, err := Open(dest) // a restored backup opens as nudge's database
	if err != nil {
		t.Fatalf("open the backup as a store: %v", err)
	}
	defer b.Close()
	if out, err := b.IsOptedOut(ctx, "+14155550000"); err != nil || !out {
		t.Errorf("backup: IsOptedOut = %v, %v; want true", out, err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(dest), ".backup.db.*"))
	if len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// TestBackupRefusesItself refuses to write a backup over the database.
func TestBackupRefusesItself(t *testing.T) {
	_, path := openTemp(t)
	if err := Backup(context.Background(), path, path); err == nil {
		t.Fatal("Backup onto the database itself succeeded")
	}
	if err := Backup(context.Background(), filepath.Join(t.TempDir(), "missing.db"), filepath.Join(t.TempDir(), "b.db")); err == nil {
		t.Fatal("Backup of a missing database succeeded")
	}
}

func countOptOuts(path string) (int, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int
	err = db.QueryRow(`SELECT count(*) FROM optouts WHERE opted_out = 1`).Scan(&n)
	return n, err
}
