package engine_test

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

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/storage"
)

// Helper processes: the test binary runs itself again with one of these
// variables set to a database path, and then does only that job.
const (
	// envPassHolder: take the pass lease at the time in envAt, say "held"
	// and wait to be killed.
	envPassHolder = "NUDGE_TEST_PASS_HOLDER"
	envAt         = "NUDGE_TEST_AT"
	// envWriter: hold the database's write lock, say "locked", and roll
	// back once stdin closes.
	envWriter = "NUDGE_TEST_DB_WRITER"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(envPassHolder); path != "" {
		os.Exit(holdPass(path))
	}
	if path := os.Getenv(envWriter); path != "" {
		os.Exit(holdWriteLock(path))
	}
	os.Exit(m.Run())
}

func holdPass(path string) int {
	s, err := storage.Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	at, _ := strconv.ParseInt(os.Getenv(envAt), 10, 64)
	ok, err := s.TryLock(context.Background(), "pass", storage.NewOwner(), time.Minute, time.Unix(0, at))
	if err != nil || !ok {
		fmt.Fprintln(os.Stderr, "pass lease not taken:", ok, err)
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
	io.Copy(io.Discard, os.Stdin)
	conn.ExecContext(context.Background(), "ROLLBACK")
	return 0
}

// startHelper runs the test binary as a helper process (env=path plus
// extra) and waits for its first line (want). Closing the returned writer
// ends a writer helper; the process is killed at the end of the test.
func startHelper(t *testing.T, want string, env ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
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

// TestSafetyRunAfterKill: a nudge killed with SIGKILL in the middle of a
// pass leaves its pass lease behind; the very next `nudge run` proceeds
// instead of failing with "another nudge process is making a pass" until
// the lease expires. A running holder still keeps it.
func TestSafetyRunAfterKill(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("takeover needs /proc")
	}
	f := newFixture(t)
	cmd, _ := startHelper(t, "held", envPassHolder+"="+f.dbPath(), envAt+"="+strconv.FormatInt(f.clk.Now().UnixNano(), 10))
	next := storage.NewOwner()
	_, err := f.e.RunLocked(f.ctx, next, engine.PlanOptions{})
	if !errors.Is(err, engine.ErrBusy) || !strings.Contains(err.Error(), "process "+strconv.Itoa(cmd.Process.Pid)) {
		t.Fatalf("pass beside a running holder: %v; want ErrBusy naming the holder", err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	res, err := f.e.RunLocked(f.ctx, next, engine.PlanOptions{})
	if err != nil {
		t.Fatalf("the pass after the holder was killed: %v", err)
	}
	if res.Dispatch.Sent == 0 {
		t.Errorf("the pass sent nothing: %+v", res.Dispatch)
	}
	if _, _, err := f.e.Store.LockHolder(f.ctx, "pass"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("pass lease after the pass: %v; want it released", err)
	}
	f.assertNoDuplicates(t)
}

// TestSafetyDispatchWhileDatabaseLocked: another process (a backup tool)
// holds the database's write lock for longer than the busy timeout. The
// dispatch fails cleanly with ErrLocked before anything is sent; once the
// lock is gone, every message is sent exactly once.
func TestSafetyDispatchWhileDatabaseLocked(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "diary-reminder")
	old := f.e.Store
	st, err := storage.OpenWith(f.dbPath(), storage.Options{BusyTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.e.Store = st
	t.Cleanup(func() { old.Close() })

	_, release := startHelper(t, "locked", envWriter+"="+f.dbPath())
	_, err = f.e.Dispatch(f.ctx)
	if !errors.Is(err, storage.ErrLocked) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("dispatch while locked: %v; want ErrLocked", err)
	}
	if n := len(f.env.Twilio.Creates()); n != 0 {
		t.Fatalf("%d texts sent while the database was locked", n)
	}
	release.Close()
	f.settle(t)
	if _, err := f.e.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	ms := f.messages(t, "diary-reminder")
	sent := 0
	for _, m := range ms {
		if m.State.Queued() || m.State == storage.StateSending {
			t.Errorf("message %d still %s", m.ID, m.State)
		}
		if m.SID != "" {
			sent++
		}
	}
	if sent == 0 || len(f.env.Twilio.Creates()) != sent {
		t.Errorf("%d messages sent, %d creates; want every one once", sent, len(f.env.Twilio.Creates()))
	}
	f.assertNoDuplicates(t)
}

// TestSafetySMTPRefusesThenAccepts: the SMTP server refuses a recipient
// for a while (450 at RCPT TO), then accepts it: the email is kept queued,
// and sent exactly once once the server takes it.
func TestSafetySMTPRefusesThenAccepts(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "welcome-email")
	ms := f.messages(t, "welcome-email")
	if len(ms) == 0 {
		t.Fatal("no welcome email planned")
	}
	for _, m := range ms {
		f.env.SMTP.Reject(m.To, 450)
	}
	st, err := f.e.Dispatch(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent != 0 || st.Retried == 0 || len(f.env.SMTP.Messages()) != 0 {
		t.Fatalf("while refused: %+v, %d received", st, len(f.env.SMTP.Messages()))
	}
	for _, m := range f.messages(t, "welcome-email") {
		if !m.State.Queued() {
			t.Errorf("message %d is %s after a temporary refusal, want queued", m.ID, m.State)
		}
	}
	for _, m := range ms {
		f.env.SMTP.Reject(m.To, 0)
	}
	for range 10 { // past the sender's backoff
		f.clk.Advance(10 * time.Minute)
		if _, err := f.e.Dispatch(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for _, r := range f.env.SMTP.Messages() {
		got[strings.ToLower(strings.Join(r.To, ","))]++
	}
	for _, m := range ms {
		if n := got[strings.ToLower(m.To)]; n != 1 {
			t.Errorf("%d emails to participant %s after the refusal, want 1", n, m.Record)
		}
	}
	for _, m := range f.messages(t, "welcome-email") {
		if m.State != storage.StateSent && m.State != storage.StateDelivered {
			t.Errorf("message %d is %s, want sent", m.ID, m.State)
		}
	}
}
