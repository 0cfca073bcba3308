package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const (
	// sqlVacuumInto writes a consistent copy of the database, as of one read
	// transaction, into an empty file. In WAL mode it does not block writers.
	sqlVacuumInto = `VACUUM INTO ?`

	sqlIntegrityCheck = `PRAGMA integrity_check`
)

// Backup writes a consistent copy of the database at src to dest while
// other processes (nudge serve, nudge run) keep reading and writing it: the
// copy holds every committed change up to one moment, including those still
// in the -wal file, which a plain file copy would miss. The copy is created
// 0600 next to dest and renamed over it only once complete and checked with
// PRAGMA integrity_check, so dest is never a half-written file. Backup does
// not migrate src: a backup taken before an upgrade keeps the old schema.
func Backup(ctx context.Context, src, dest string) error {
	if src == "" || strings.ContainsRune(src, '?') || strings.HasPrefix(src, "file:") {
		return fmt.Errorf("%w: database path %q: give a plain file path", ErrInvalid, src)
	}
	if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("storage: backup: there is no database at %s: check storage.path in the config (or --db)", src)
	} else if err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	if a, b := absPath(src), absPath(dest); a == b {
		return fmt.Errorf("%w: the backup file %s is the database itself: name another file", ErrInvalid, dest)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*.tmp") // mode 0600
	if err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	done := false
	defer func() {
		if !done {
			os.Remove(tmpName)
		}
	}()
	db, err := sql.Open("sqlite3", fmt.Sprintf("%s?_busy_timeout=%d", src, DefaultBusyTimeout.Milliseconds()))
	if err != nil {
		return fmt.Errorf("storage: backup: open %s: %w", src, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, sqlVacuumInto, tmpName); err != nil {
		return fmt.Errorf("storage: backup of %s: %w", src, err)
	}
	if err := CheckIntegrity(ctx, tmpName); err != nil {
		return err
	}
	if err := syncFile(tmpName); err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	if err := os.Rename(tmpName, dest); err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	done = true
	return syncFile(filepath.Dir(dest))
}

// CheckIntegrity runs SQLite's integrity check on the database file at path
// without changing it.
func CheckIntegrity(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	if err != nil {
		return fmt.Errorf("storage: check %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, sqlIntegrityCheck)
	if err != nil {
		return fmt.Errorf("storage: check %s: %w", path, err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("storage: check %s: %w", path, err)
		}
		if s != "ok" {
			problems = append(problems, s)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("storage: check %s: %w", path, err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("storage: %s failed its integrity check: %s", path, strings.Join(problems, "; "))
	}
	return nil
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		return r
	}
	return a
}

// syncFile flushes a file or directory to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
