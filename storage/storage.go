// Package storage is nudge's SQLite store: the outbox of messages (which is
// also the dedupe log and the work queue for sending, status polling and
// write-back), the status history, the REDCap write-back queue, opt-outs,
// runs and leases.
//
// Every stage of a run reads its input from here and writes its output here,
// so a crashed run can be repeated and picks up where it stopped. Two
// guarantees rest on this package:
//
//   - never lose a queued message: every change is committed before the
//     caller acts on it, and the database runs in WAL mode with
//     synchronous=FULL so a commit survives a power cut;
//   - never send one twice: a message's idempotency key is UNIQUE, and a row
//     moves from planned/retry to sending in one committed statement
//     (Claim) that only one worker, in any process, can win.
//
// All times are stored as UTC unix nanoseconds; the zero time.Time is stored
// as NULL and read back as the zero time. Times read back are in UTC.
// The store never reads the clock: callers pass the time of every change.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	sqlite3 "github.com/mattn/go-sqlite3" // also registers the "sqlite3" driver
)

// Sentinel errors. Use errors.Is: returned errors wrap these with details.
var (
	// ErrTooNew is returned by Open when the database was migrated by a newer
	// nudge than this one.
	ErrTooNew = errors.New("storage: database schema is newer than this nudge understands; upgrade nudge to open it")
	// ErrNotFound is returned when the requested row does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrNotClaimable is returned by Claim when the message is no longer
	// planned or retry and due (another worker claimed it, or it finished).
	ErrNotClaimable = errors.New("storage: message cannot be claimed: another worker took it, it is finished, or it is not due yet")
	// ErrWrongState is returned when a change does not fit the row's current
	// state, e.g. MarkSent on a message that was never claimed.
	ErrWrongState = errors.New("storage: message is not in a state that allows this change")
	// ErrUnknownStatus is returned for a provider status nudge does not know.
	ErrUnknownStatus = errors.New("storage: unknown provider status")
	// ErrInvalid is returned when an argument is missing or malformed.
	ErrInvalid = errors.New("storage: invalid argument")
	// ErrLockNotHeld is returned by Unlock when the lease is not held by the
	// given owner (it expired and was taken, or was never taken).
	ErrLockNotHeld = errors.New("storage: lock is not held by this owner")
	// ErrPermissions is returned by Open when the database file (or its
	// -wal or -shm file) can be read or written by other users, or its
	// directory can be written by anyone.
	ErrPermissions = errors.New("storage: unsafe file permissions")
	// ErrLocked is returned when another process kept the database locked
	// for longer than the busy timeout: the change was not made.
	ErrLocked = errors.New("storage: the database is locked by another process")
	// ErrFull is returned when the database could not grow (SQLITE_FULL):
	// the disk is full, or the database reached its size limit. The change
	// was not made; what was stored before is intact.
	ErrFull = errors.New("storage: the disk is full or the database reached its size limit")
)

// dsnParams are the connection settings of every connection in the pool
// (the busy timeout is added by open).
// mattn/go-sqlite3 applies them as PRAGMAs when it opens a connection:
// busy_timeout first, so that concurrent openers wait instead of failing.
// WAL lets readers run beside the single writer; synchronous=FULL (the
// driver would pick NORMAL for WAL) makes each commit durable against power
// loss, which a claimed-then-sent message needs; _txlock=immediate makes every
// transaction take the write lock at BEGIN, so two read-then-write
// transactions can never deadlock on a lock upgrade.
const dsnParams = "_journal_mode=WAL&_synchronous=FULL&_foreign_keys=on&_txlock=immediate"

// DefaultBusyTimeout is how long a change waits for another process that
// holds the database's write lock before it fails with ErrLocked. It is
// long because the other process may be a backup tool or a person's sqlite3
// shell holding a write transaction for half a minute: nudge waits it out
// instead of failing a pass. A claim that still fails sends nothing.
const DefaultBusyTimeout = time.Minute

// outcomeRounds is how many more busy timeouts MarkSent waits for the
// database: the message has gone out, and a lost mark would leave the row
// "sending" until lookups settle it.
const outcomeRounds = 3

// Options tune OpenWith.
type Options struct {
	// BusyTimeout is how long a change waits for another process's write
	// lock (0 = DefaultBusyTimeout).
	BusyTimeout time.Duration
}

// Store is nudge's database. It is safe for concurrent use by many
// goroutines, and several processes may open the same file.
type Store struct {
	db       *sql.DB
	path     string
	busy     time.Duration
	warnings []string
}

// Open opens (creating it if needed) the SQLite database at path, and brings
// its schema up to date. It refuses a database written by a newer nudge
// (ErrTooNew).
//
// The database holds phone numbers, message bodies and participants'
// texts, so only nudge's own user may read it: a missing directory is
// created 0700 and a new file 0600 (SQLite gives its -wal and -shm files
// the mode of the main file). Open refuses (ErrPermissions) a database,
// -wal or -shm file that other users may read or write, and a directory
// anyone may write to (they could replace the files), with the chmod that
// fixes it. A directory that others may read is accepted with a warning
// (see Warnings): the files' own mode keeps their content private, and the
// directory shows only their names.
func Open(path string) (*Store, error) {
	return open(context.Background(), path, migrations, Options{})
}

// OpenWith is Open with options.
func OpenWith(path string, opt Options) (*Store, error) {
	return open(context.Background(), path, migrations, opt)
}

// Warnings are problems Open found that do not stop nudge, in plain words
// for the log.
func (s *Store) Warnings() []string { return s.warnings }

// private is the permission bits other users must not have on a database
// file: group and others, read and write (execute is meaningless here).
const private fs.FileMode = 0o066

// prepareFile makes sure the database's directory and file exist with
// private modes, and checks existing ones. It returns warnings.
func prepareFile(path string) ([]string, error) {
	if runtime.GOOS == "windows" {
		return nil, nil // no Unix permission bits to check
	}
	dir := filepath.Dir(path)
	var warnings []string
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("storage: creating the database directory %s: %w", dir, err)
		}
	case err != nil:
		return nil, fmt.Errorf("storage: database directory %s: %w", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("%w: %s is not a directory", ErrInvalid, dir)
	case fi.Mode().Perm()&0o002 != 0:
		return nil, fmt.Errorf("%w: the database directory %s can be written by every user (mode %04o), who could replace the database: run `chmod o-w %s` (or `chmod 700 %s`), or keep the database elsewhere",
			ErrPermissions, dir, fi.Mode().Perm(), dir, dir)
	case fi.Mode().Perm()&0o077 != 0:
		warnings = append(warnings, fmt.Sprintf("the database directory %s is open to other users (mode %04o); the database files are private, but `chmod 700 %s` hides even their names",
			dir, fi.Mode().Perm(), dir))
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("storage: creating %s: %w", path, err)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("storage: creating %s: %w", path, err)
	}
	var loose, names []string
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != path {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("storage: %s: %w", p, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalid, p)
		}
		if fi.Mode().Perm()&private != 0 {
			loose = append(loose, fmt.Sprintf("%s (mode %04o)", p, fi.Mode().Perm()))
			names = append(names, p)
		}
	}
	if len(loose) > 0 {
		return nil, fmt.Errorf("%w: %s can be read or written by other users, and the database holds participants' phone numbers and texts: run `chmod 600 %s` as the user nudge runs as, then start nudge again",
			ErrPermissions, strings.Join(loose, ", "), strings.Join(names, " "))
	}
	return warnings, nil
}

func open(ctx context.Context, path string, migs []string, opt Options) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("%w: database path %q: give a plain file path without '?' or a file: prefix", ErrInvalid, path)
	}
	warnings, err := prepareFile(path)
	if err != nil {
		return nil, err
	}
	busy := opt.BusyTimeout
	if busy <= 0 {
		busy = DefaultBusyTimeout
	}
	db, err := sql.Open("sqlite3", fmt.Sprintf("%s?%s&_busy_timeout=%d", path, dsnParams, busy.Milliseconds()))
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	s := &Store{db: db, path: path, busy: busy, warnings: warnings}
	if err := firstConnect(ctx, db, min(busy, busyWait)); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	if err := s.migrate(ctx, migs); err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	return s, nil
}

// busyWait bounds how long firstConnect retries a busy brand-new file.
const busyWait = 5 * time.Second

// firstConnect opens the pool's first connection, which switches the file to
// WAL. On a brand-new file that switch fails with SQLITE_BUSY at once, without
// the busy timeout, when another process is creating the same file at the
// same moment; retry that case for up to wait. Once the file is in WAL
// mode, later connections do not meet it.
func firstConnect(ctx context.Context, db *sql.DB, wait time.Duration) error {
	delay, waited := 5*time.Millisecond, time.Duration(0)
	for {
		err := db.PingContext(ctx)
		var se sqlite3.Error
		if err == nil || !errors.As(err, &se) || se.Code != sqlite3.ErrBusy || waited >= wait {
			return err
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		waited += delay
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// Close closes the database.
func (s *Store) Close() error {
	return s.db.Close()
}

// limitArg turns a caller's limit into SQLite's: ≤ 0 means no limit.
func limitArg(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}

// dbTime converts a time to its stored form: unix nanoseconds, NULL for zero.
func dbTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

// goTime converts a stored time back: NULL is the zero time.
func goTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// nullString stores "" as NULL (for columns with a UNIQUE index).
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullID stores 0 as NULL (for optional foreign keys).
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// inTx runs fn in one (immediate) transaction, committing if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.explain(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return s.explain(err)
	}
	return s.explain(tx.Commit())
}

// explain turns SQLite's "busy" and "full" errors into ErrLocked and
// ErrFull, in words a coordinator can act on; other errors are returned
// as they are.
func (s *Store) explain(err error) error {
	var se sqlite3.Error
	if err == nil || !errors.As(err, &se) || errors.Is(err, ErrLocked) || errors.Is(err, ErrFull) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		return fmt.Errorf("%w: another program (a backup tool, an sqlite3 shell, another nudge) kept %s locked for more than %v, so this change was not made and nothing depending on it was sent; nothing queued is lost: find that program and end it, then run nudge again (%w)",
			ErrLocked, s.path, s.busy, err)
	case sqlite3.ErrFull:
		return fmt.Errorf("%w: %s could not grow, so this change was not made and nothing depending on it was sent; what was stored before is intact: free space on the disk that holds it, then run nudge again (%w)",
			ErrFull, s.path, err)
	}
	return err
}
