package storage

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helper processes: the test binary runs itself again with one of these
// variables set to a database path, and then does only that job.
const (
	// envLeaseHolder: take the "pass" lease at t0, say "held" and wait to
	// be killed.
	envLeaseHolder = "NUDGE_TEST_LEASE_HOLDER"
	// envWriter: hold the database's write lock (BEGIN IMMEDIATE), say
	// "locked", and roll back once stdin closes.
	envWriter = "NUDGE_TEST_DB_WRITER"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envLeaseHolder); path != "" {
		os.Exit(holdLease(path))
	}
	if path := os.Getenv(envWriter); path != "" {
		os.Exit(holdWriteLock(path))
	}
	os.Exit(m.Run())
}

func holdLease(path string) int {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ok, err := s.TryLock(context.Background(), "pass", NewOwner(), time.Minute, t0)
	if err != nil || !ok {
		fmt.Fprintln(os.Stderr, "lease not taken:", ok, err)
		return 2
	}
	fmt.Println("held")
	time.Sleep(time.Hour) // until killed
	return 0
}

func holdWriteLock(path string) int {
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	conn, err := db.Conn(context.Background())
	if err == nil {
		_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) // until the test closes stdin
	conn.ExecContext(context.Background(), "ROLLBACK")
	return 0
}

// helper starts the test binary as a helper process with env set to path
// and waits for its first line (want). Closing the returned writer ends a
// writer helper; the process is killed at the end of the test.
func helper(t *testing.T, env, path, want string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != want {
		t.Fatalf("helper process said %q (%v), want %q", line, err, want)
	}
	return cmd, stdin
}

// TestSafetyLeaseOfKilledProcess: a nudge killed with SIGKILL keeps its
// lease in the database; the next process takes it over at once instead of
// waiting for it to expire, but never takes it from a holder that runs.
func TestSafetyLeaseOfKilledProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("takeover needs /proc")
	}
	s, path := openTemp(t)
	ctx := context.Background()
	cmd, _ := helper(t, envLeaseHolder, path, "held")
	next := NewOwner()
	if ok, err := s.TryLock(ctx, "pass", next, time.Minute, t0.Add(time.Second)); ok || err != nil {
		t.Fatalf("took the lease of a running holder: %v, %v", ok, err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	ok, err := s.TryLock(ctx, "pass", next, time.Minute, t0.Add(time.Second))
	if err != nil || !ok {
		t.Fatalf("the lease of a killed process was not taken over: %v, %v", ok, err)
	}
	if holder, _, err := s.LockHolder(ctx, "pass"); err != nil || holder != next {
		t.Errorf("holder %q, %v; want %q", holder, err, next)
	}
}

// TestSafetyLeaseOwnerGone: which holders count as provably gone. Only a
// holder on this host, in this PID namespace, whose PID is not running or
// runs another process (started at another time) is.
func TestSafetyLeaseOwnerGone(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("takeover needs /proc")
	}
	me := thisProcess()
	// A process that has ended: the test binary running no test.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	parent := os.Getppid()
	pstart, ok := procStart(parent)
	if !ok {
		t.Fatal("cannot read the parent's start time")
	}
	own := func(host string, pid int, start, scope string) string {
		return host + ":" + strconv.Itoa(pid) + ":" + start + "." + scope + ":RANDOMRANDOMRAND"
	}
	tests := []struct {
		name  string
		owner string
		gone  bool
	}{
		{"this process", NewOwner(), false},
		{"this pid, started earlier", own(me.host, me.pid, "1", me.scope), true},
		{"a running process", own(me.host, parent, pstart, me.scope), false},
		{"a reused pid", own(me.host, parent, pstart+"7", me.scope), true},
		{"an ended process", own(me.host, dead, "12345", me.scope), true},
		{"an ended process, start unknown", own(me.host, dead, "0", me.scope), true},
		{"another host", own(me.host+"x", dead, "12345", me.scope), false},
		{"another pid namespace or boot", own(me.host, dead, "12345", "0123456789ab"), false},
		{"scope unknown", own(me.host, dead, "12345", "-"), false},
		{"an older nudge's owner", me.host + ":" + strconv.Itoa(dead) + ":1:RANDOMRANDOMRAND", false},
		{"a plain name", "a", false},
	}
	for _, tt := range tests {
		if got := ownerGone(tt.owner); got != tt.gone {
			t.Errorf("%s: ownerGone(%q) = %v, want %v", tt.name, tt.owner, got, tt.gone)
		}
	}
}

// TestSafetyBusyTimeoutCoversBackups: by default a change waits out
// another process holding the write lock for half a minute (a backup).
func TestSafetyBusyTimeoutCoversBackups(t *testing.T) {
	s, _ := openTemp(t)
	var ms int
	if err := s.db.QueryRow("PRAGMA busy_timeout").Scan(&ms); err != nil {
		t.Fatal(err)
	}
	if time.Duration(ms)*time.Millisecond < 30*time.Second {
		t.Errorf("busy timeout %dms: a backup holding the database for 30s would fail nudge's changes", ms)
	}
}

// TestSafetyDatabaseLockedByAnotherProcess: while another process holds the
// write lock, a claim waits for it; past the busy timeout the claim fails
// with ErrLocked in plain words and the message stays queued, unclaimed.
func TestSafetyDatabaseLockedByAnotherProcess(t *testing.T) {
	_, path := openTemp(t)
	s, err := OpenWith(path, Options{BusyTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	m := newMsg("1", 0)
	if _, err := s.Enqueue(ctx, m); err != nil {
		t.Fatal(err)
	}

	_, release := helper(t, envWriter, path, "locked")
	err = s.Claim(ctx, m.ID, t0, nil)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "locked by another process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("claim while locked: %v; want ErrLocked naming the database", err)
	}
	if got, err := s.Get(ctx, m.ID); err != nil || got.State != StatePlanned || got.Attempts != 0 {
		t.Fatalf("after the failed claim: %+v, %v; want planned, no attempt", got.State, err)
	}
	if _, err := s.Enqueue(ctx, newMsg("2", 0)); !errors.Is(err, ErrLocked) {
		t.Errorf("enqueue while locked: %v; want ErrLocked", err)
	}
	release.Close()

	// A lock held for less than the busy timeout is waited out.
	patient, err := OpenWith(path, Options{BusyTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer patient.Close()
	_, release = helper(t, envWriter, path, "locked")
	time.AfterFunc(200*time.Millisecond, func() { release.Close() })
	if err := patient.Claim(ctx, m.ID, t0, nil); err != nil {
		t.Fatalf("claim after the lock was released: %v", err)
	}
	if got, _ := s.Get(ctx, m.ID); got.State != StateSending {
		t.Errorf("state %s after the claim, want sending", got.State)
	}
}

// TestSafetyDiskFull: when the database cannot grow (SQLITE_FULL), an
// enqueue fails with ErrFull naming the cause, nothing of it is stored,
// and the rows stored before are intact.
func TestSafetyDiskFull(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	first := newMsg("1", 0)
	if _, err := s.Enqueue(ctx, first); err != nil {
		t.Fatal(err)
	}
	// One connection, so the size limit below holds for every statement.
	s.db.SetMaxOpenConns(1)
	var pages int
	if err := s.db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	var batch []*Message
	for i := range 200 {
		m := newMsg(strconv.Itoa(100+i), 0)
		m.Body = strings.Repeat("long text ", 100)
		batch = append(batch, m)
	}
	_, err := s.EnqueueBatch(ctx, batch)
	if !errors.Is(err, ErrFull) || !strings.Contains(err.Error(), "the disk is full") {
		t.Fatalf("enqueue into a full database: %v; want ErrFull saying the disk is full", err)
	}
	var n int
	if err := s.db.QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d messages stored (%v), want the 1 from before", n, err)
	}
	got, err := s.Get(ctx, first.ID)
	if err != nil || got.State != StatePlanned || got.Body != first.Body {
		t.Errorf("the earlier message: %+v, %v", got, err)
	}
}
