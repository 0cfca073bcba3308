package storage

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestOpenMigratesFromEmpty(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	v, err := s.schemaVersion(ctx)
	if err != nil || v != SchemaVersion() {
		t.Fatalf("schema version = %d, %v; want %d", v, err, SchemaVersion())
	}
	for _, table := range []string{"schema_version", "runs", "messages", "status_history", "writebacks", "optouts", "inbound", "locks", "participants", "triggers"} {
		var n int
		if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: found %d, %v", table, n, err)
		}
	}
}

func TestOpenPragmas(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	tests := []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "60000"}, // DefaultBusyTimeout
		{"synchronous", "2"},      // FULL
	}
	for _, tt := range tests {
		var got string
		if err := s.db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q, want %q", tt.pragma, got, tt.want)
		}
	}
}

func TestReopenKeepsDataAndVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nudge.db")
	ctx := context.Background()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m := newMsg("1", 1)
	mustEnqueue(t, s, m)
	s.Close()

	for range 2 {
		s, err = Open(path)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if v, err := s.schemaVersion(ctx); err != nil || v != SchemaVersion() {
			t.Errorf("schema version after reopen = %d, %v; want %d", v, err, SchemaVersion())
		}
		got, err := s.ByKey(ctx, m.Key)
		if err != nil || got.ID != m.ID {
			t.Errorf("ByKey after reopen = %+v, %v; want ID %d", got, err, m.ID)
		}
		if ok, err := s.Enqueue(ctx, newMsg("1", 1)); ok || err != nil {
			t.Errorf("Enqueue of a stored key after reopen = %v, %v; want false, nil", ok, err)
		}
		s.Close()
	}
}

func TestMigrateStepwise(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nudge.db")
	ctx := context.Background()
	m2 := `CREATE TABLE extra (x TEXT); INSERT INTO extra VALUES ('from migration 2');`

	s, err := open(ctx, path, migrations[:1], Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = open(ctx, path, []string{migrations[0], m2}, Options{})
	if err != nil {
		t.Fatalf("open with a new migration: %v", err)
	}
	if v, _ := s.schemaVersion(ctx); v != 2 {
		t.Errorf("version = %d, want 2", v)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM extra`).Scan(&n); err != nil || n != 1 {
		t.Errorf("migration 2 rows = %d, %v; want 1 (applied once)", n, err)
	}
	s.Close()

	// The older code must refuse the newer database, and leave it intact.
	if _, err := open(ctx, path, migrations[:1], Options{}); !errors.Is(err, ErrTooNew) {
		t.Fatalf("older code opening newer database: err = %v, want ErrTooNew", err)
	}
}

func TestMigrationFailureRollsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nudge.db")
	ctx := context.Background()
	bad := `CREATE TABLE half (x TEXT); THIS IS NOT SQL;`
	if _, err := open(ctx, path, []string{migrations[0], bad}, Options{}); err == nil {
		t.Fatal("open with a broken migration succeeded")
	}
	s, err := open(ctx, path, migrations[:1], Options{})
	if err != nil {
		t.Fatalf("reopen after failed migration: %v", err)
	}
	defer s.Close()
	if v, _ := s.schemaVersion(ctx); v != 1 {
		t.Errorf("version = %d, want 1", v)
	}
	var n int
	s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'half'`).Scan(&n)
	if n != 0 {
		t.Error("a failed migration left its first statement applied")
	}
}

func TestOpenTooNew(t *testing.T) {
	s, path := openTemp(t)
	if _, err := s.db.Exec(sqlSetSchemaVersion, SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := Open(path)
	if !errors.Is(err, ErrTooNew) {
		t.Fatalf("err = %v, want ErrTooNew", err)
	}
	if !strings.Contains(err.Error(), "upgrade nudge") {
		t.Errorf("error %q does not tell the user to upgrade nudge", err)
	}
}

func TestOpenRejectsDSNPaths(t *testing.T) {
	for _, p := range []string{"", "a.db?mode=ro", "file:a.db"} {
		if _, err := Open(p); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%q) err = %v, want ErrInvalid", p, err)
		}
	}
}

// Several processes starting at once on a fresh file must each apply the
// migrations at most once and all succeed.
func TestConcurrentOpenOfFreshFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nudge.db")
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := Open(path)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("opener %d: %v", i, err)
		}
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, _ := s.schemaVersion(context.Background()); v != SchemaVersion() {
		t.Errorf("version = %d, want %d", v, SchemaVersion())
	}
}
