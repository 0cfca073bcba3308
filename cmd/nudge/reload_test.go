package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nudge-study/nudge/storage"
)

// TestSafetyReloadOnSIGHUP: a real `nudge serve` process receives SIGHUP.
// It keeps serving; a rule added before the signal takes effect; a broken
// rule file keeps the running rules (the new rule goes on sending, the
// broken one sends nothing) and the log names the problem FILE:LINE:COL;
// SIGTERM then leaves no message `sending`.
func TestSafetyReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nudge and runs it with its simulators")
	}
	bin := filepath.Join(t.TempDir(), "nudge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	st := newFaultStudy(t, bin, "reload", 1, 3, 31)
	st.startSims(t)
	p := st.startServe(t)
	defer p.stop()
	lines := make(chan faultLine, 4096)
	go func() {
		for l := range p.lines {
			lines <- l
		}
		close(lines)
	}()
	waitLog := func(what string) faultLine {
		t.Helper()
		deadline := time.After(90 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("nudge serve ended waiting for %q: %v\n%s", what, p.err, p.tail())
				}
				if strings.Contains(l.Msg, what) {
					return l
				}
			case <-deadline:
				t.Fatalf("no %q in the log of nudge serve:\n%s", what, p.tail())
			}
		}
	}
	// creates counts the texts created per number.
	creates := func() map[string]int {
		n := map[string]int{}
		for _, e := range st.journal(t) {
			if e.SID != "" {
				n[e.To]++
			}
		}
		return n
	}
	waitCreates := func(want int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			n := creates()
			ok := len(n) == st.per
			for _, c := range n {
				ok = ok && c == want
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("texts per number = %v, want %d each\n%s", n, want, p.tail())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitCreates(1)

	// A new rule, then SIGHUP: it sends to everyone once.
	faultWrite(t, filepath.Join(st.dir, "rules", "more.yaml"), `project: p00
rules:
  - name: again-p00
    description: A second text to every participant.
    channel: sms
    to: "[mobile]"
    template: again
`)
	faultWrite(t, filepath.Join(st.dir, "templates", "again.sms.txt"), "Hi [first_name], one more reminder.\n")
	hup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hup()
	waitLog("reload: the rules and templates were read again and are in force")
	waitCreates(2)

	// A rule file with an unknown field: refused with FILE:LINE:COL, the
	// running rules kept, nothing sent by the broken rule.
	broken := filepath.Join(st.dir, "rules", "broken.yaml")
	faultWrite(t, broken, `project: p00
rules:
  - name: broken-p00
    description: Uses a field the project does not have.
    channel: sms
    to: "[mobile]"
    when: "[no_such_field] = '1'"
    template: again
`)
	hup()
	waitLog("reload refused")
	if log := p.stderr.String(); !strings.Contains(log, "broken.yaml:7:") || !strings.Contains(log, "no_such_field") {
		t.Errorf("the log does not name broken.yaml:7:COL and the field:\n%s", p.tail())
	}
	// Still serving: the next passes run and the old rules stay in force.
	waitLog("exported records")
	waitLog("exported records")
	if n := creates(); len(n) != st.per {
		t.Errorf("texts per number after the refused reload = %v", n)
	}
	for to, c := range creates() {
		if c != 2 {
			t.Errorf("%s got %d texts, want 2 (hello and again)", redactForTest(to), c)
		}
	}

	// A config change only a restart applies is refused too.
	cfg := filepath.Join(st.dir, "nudge.yaml")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(broken)
	faultWrite(t, cfg, strings.Replace(string(b), "path: nudge.db", "path: other.db", 1))
	hup()
	l := waitLog("reload refused")
	_ = l
	if log := p.stderr.String(); !strings.Contains(log, "storage.path") {
		t.Errorf("the refusal does not name storage.path:\n%s", p.tail())
	}

	p.stop()
	if p.err != nil {
		t.Errorf("nudge serve after SIGTERM: %v\n%s", p.err, p.tail())
	}
	s, err := storage.Open(filepath.Join(st.dir, "nudge.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d, err := s.Depths(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d.Sending != 0 {
		t.Errorf("%d message(s) left sending", d.Sending)
	}
}

// redactForTest keeps the last digits of a number for a failure message.
func redactForTest(s string) string {
	if len(s) > 4 {
		return "…" + s[len(s)-4:]
	}
	return s
}
