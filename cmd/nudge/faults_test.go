package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

// The fault suite: `nudge run` and `nudge serve` as real processes against
// `nudge sim twilio` and `nudge sim redcap` processes, killed with SIGKILL
// at many points and restarted until every participant is texted and every
// final status is in REDCap. What happened is then judged from outside
// nudge: the Twilio simulator's journal (one line per create request) and
// REDCap's saved records. It runs only with NUDGE_FAULT_SUITE=1 (.ci/run
// sets it): it takes a few minutes of wall time.

const (
	faultRate      = 0.95                   // twilio.rate_per_second of the generated studies
	faultTolerance = 5 * time.Millisecond   // clock and scheduling slack allowed in the pacing check
	faultDeadline  = 300 * time.Second      // per scenario: the time to get everything done
	faultRunPause  = 700 * time.Millisecond // between two `nudge run`s, as a fast cron
)

// faultSlot is the least time between two creates from one number.
var faultSlot = time.Duration(math.Ceil(float64(time.Second) / faultRate))

// The kill points of the main scenario, in order; each `nudge run` is
// killed at the next one it reaches.
var faultKillPlan = []string{
	"startup", "export", "plan", "inflight", "dispatch", "inflight",
	"export", "plan", "dispatch", "inflight", "startup", "dispatch",
	"export", "inflight", "plan", "dispatch",
	"track", "writeback", "writeback", "track", "writeback", "writeback",
	"startup", "export", "plan", "writeback", "export", "plan",
}

func TestFaultSuite(t *testing.T) {
	if os.Getenv("NUDGE_FAULT_SUITE") != "1" {
		t.Skip("the process-level fault suite runs with NUDGE_FAULT_SUITE=1 (as .ci/run does)")
	}
	start := time.Now()
	bin := filepath.Join(t.TempDir(), "nudge")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var (
		mu      sync.Mutex
		figures []string
	)
	report := func(lines ...string) {
		mu.Lock()
		defer mu.Unlock()
		figures = append(figures, lines...)
	}
	t.Run("group", func(t *testing.T) {
		t.Run("kills", func(t *testing.T) {
			t.Parallel()
			report(faultKills(t, bin)...)
		})
		t.Run("storm", func(t *testing.T) {
			t.Parallel()
			report(faultStorm(t, bin)...)
		})
		t.Run("redcap-down", func(t *testing.T) {
			t.Parallel()
			report(faultREDCapDown(t, bin)...)
		})
		t.Run("serve", func(t *testing.T) {
			t.Parallel()
			report(faultServe(t, bin)...)
		})
	})
	sort.Strings(figures)
	var b strings.Builder
	b.WriteString("fault suite figures:\n")
	for _, f := range figures {
		b.WriteString("  " + f + "\n")
	}
	fmt.Fprintf(&b, "  wall time: %s\n", time.Since(start).Round(time.Second))
	t.Log(b.String())
}

// faultKills is the main scenario: 500 messages over 10 numbers, nudge
// run killed at every point of faultKillPlan, then run until done.
func faultKills(t *testing.T, bin string) []string {
	st := newFaultStudy(t, bin, "kills", 10, 50, 0)
	st.startSims(t)
	kills := map[string]int{}
	total := 0
	deadline := time.Now().Add(faultDeadline)
	plan := faultKillPlan
	for {
		if time.Now().After(deadline) {
			t.Fatalf("not done after %s (%d kills so far, %v): %s; a row left \"sending\" with no create at Twilio "+
				"waits for the lookups (unanswered_resend_after) before it is sent", faultDeadline, total, kills, st.progress(t))
		}
		target := ""
		if len(plan) > 0 {
			target = plan[0]
		}
		r := st.run(t, target)
		if r.phase != "" {
			kills[r.phase]++
			total++
		}
		if len(plan) > 0 {
			plan = plan[1:] // a point a run did not reach is not tried again
		}
		if r.busy {
			t.Fatalf("a `nudge run` after a kill -9 found the pass lease still held (%q): the suite needs leases "+
				"taken over from a dead holder (issue 8 part 4)", r.tail)
		}
		if len(plan) == 0 && st.done(t) {
			break
		}
		if r.phase == "" {
			time.Sleep(faultRunPause)
		}
	}
	v := st.verify(t)
	phases := make([]string, 0, len(kills))
	for p, n := range kills {
		phases = append(phases, fmt.Sprintf("%s %d", p, n))
	}
	sort.Strings(phases)
	if total < 20 || len(kills) < 5 {
		t.Errorf("only %d kills in %d phases (%s): want at least 20 in 5", total, len(kills), strings.Join(phases, ", "))
	}
	return append([]string{
		fmt.Sprintf("kills: kill -9 of nudge run %d times, %d distinct phases (%s); %d runs",
			total, len(kills), strings.Join(phases, ", "), st.runs),
	}, v.lines("kills")...)
}

// faultStorm: a 429 storm, then a 503 storm in which Twilio took every
// message before failing (both longer than any retry within a run), then
// cleared. Everything goes out once.
func faultStorm(t *testing.T, bin string) []string {
	st := newFaultStudy(t, bin, "storm", 3, 10, 6)
	st.startSims(t)
	st.control(t, "POST", "fault", `{"status": 429, "for": "6s", "retry_after": "1"}`)
	st.control(t, "POST", "fault", `{"status": 503, "for": "6s", "after_create": true}`)
	stormEnd := time.Now().Add(12 * time.Second)
	held := 0
	deadline := time.Now().Add(faultDeadline)
	for !st.done(t) {
		if time.Now().After(deadline) {
			t.Fatalf("not done after %s: %s", faultDeadline, st.progress(t))
		}
		r := st.run(t, "")
		if r.exit == exitHeld && time.Now().Before(stormEnd) {
			held++
		}
		time.Sleep(faultRunPause)
	}
	if held == 0 {
		t.Errorf("no `nudge run` during the storm exited %d (held back)", exitHeld)
	}
	refused := 0
	for _, e := range st.journal(t) {
		if e.HTTPStatus == http.StatusTooManyRequests || e.HTTPStatus >= 500 {
			refused++
		}
	}
	if refused == 0 {
		t.Error("the storm refused no create")
	}
	v := st.verify(t)
	return append([]string{fmt.Sprintf("storm: %d creates answered 429/503, %d runs held back (exit %d)", refused, held, exitHeld)},
		v.lines("storm")...)
}

// faultREDCapDown stops the REDCap simulator while nudge is between
// tracking and write-back, runs nudge against nothing, then starts REDCap
// again on the same port and files: every status still arrives.
func faultREDCapDown(t *testing.T, bin string) []string {
	st := newFaultStudy(t, bin, "redcapdown", 3, 10, 12)
	st.startSims(t)
	// The first pass sends everything; REDCap goes away at its first
	// status change, before its write-back.
	r := st.runWatch(t, func(tr *runTracker) bool {
		if tr.statusChanged > 0 && st.redcap != nil {
			st.redcap.kill()
			st.redcap = nil
		}
		return false
	})
	if st.redcap != nil {
		t.Fatalf("the first pass never tracked a status: %s", r.tail)
	}
	if !strings.Contains(r.log, "write-back to REDCap failed") && !strings.Contains(r.log, "could not check which records exist") {
		t.Errorf("REDCap down during write-back: no warning in the log:\n%s", r.tail)
	}
	down := st.run(t, "")
	if down.exit != exitHeld {
		t.Errorf("nudge run with REDCap down exited %d, want %d:\n%s", down.exit, exitHeld, down.tail)
	}
	st.startREDCap(t)
	deadline := time.Now().Add(faultDeadline)
	for !st.done(t) {
		if time.Now().After(deadline) {
			t.Fatalf("not done after %s: %s", faultDeadline, st.progress(t))
		}
		st.run(t, "")
		time.Sleep(faultRunPause)
	}
	v := st.verify(t)
	return append([]string{fmt.Sprintf("redcap-down: REDCap killed during a pass's write-back, a run while down exited %d, then restarted on its port", down.exit)},
		v.lines("redcap-down")...)
}

// faultServe kills `nudge serve` with SIGKILL while it sends, three times,
// and lets the last one finish.
func faultServe(t *testing.T, bin string) []string {
	st := newFaultStudy(t, bin, "serve", 3, 10, 18)
	st.startSims(t)
	kills := 0
	deadline := time.Now().Add(faultDeadline)
	for kills < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("serve not killed 3 times in %s: %s", faultDeadline, st.progress(t))
		}
		p := st.startServe(t)
		want := 2 + 2*kills
		sent := 0
		timer := time.AfterFunc(time.Minute, p.stop)
		p.watch(func(line faultLine) bool {
			if line.Msg == "sms sent" {
				sent++
			}
			return sent >= want
		})
		timer.Stop()
		if err := p.wait(); err != nil && !p.killed {
			t.Fatalf("nudge serve ended early: %v\n%s", err, p.tail())
		}
		if p.killed {
			kills++
		}
	}
	p := st.startServe(t)
	for !st.done(t) {
		if time.Now().After(deadline) {
			p.stop()
			t.Fatalf("not done after %s: %s\n%s", faultDeadline, st.progress(t), p.tail())
		}
		time.Sleep(time.Second)
	}
	p.stop()
	v := st.verify(t)
	return append([]string{fmt.Sprintf("serve: nudge serve killed -9 %d times while sending, then finished", kills)}, v.lines("serve")...)
}

// faultStudy is one generated study with its simulators.
type faultStudy struct {
	bin, dir, name string
	projects, per  int
	phoneBase      int
	tokens         []string
	env            []string
	twilio         *faultProc
	twilioURL      string
	redcap         *faultProc
	redcapAddr     string
	runs           int
}

// senderOf is the sending number of project p.
func (st *faultStudy) senderOf(p int) string {
	return fmt.Sprintf("+1415555%02d%02d", st.phoneBase, p)
}

func (st *faultStudy) phoneOf(p, i int) string {
	return fmt.Sprintf("+1312%03d%04d", 200+st.phoneBase, p*100+i)
}

func newFaultStudy(t *testing.T, bin, name string, projects, per, phoneBase int) *faultStudy {
	t.Helper()
	dir := t.TempDir()
	st := &faultStudy{bin: bin, dir: dir, name: name, projects: projects, per: per, phoneBase: phoneBase}
	for _, d := range []string{"rules", "templates", "redcap"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `study: Fault suite %s
timezone: UTC
storage: { path: nudge.db }
rules: [rules/*.yaml]
templates: templates
projects:
`, name)
	const dictionary = `"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number","Text Validation Min","Text Validation Max","Identifier?"
record_id,contact,,text,"Participant ID",,,,,,
first_name,contact,,text,"First name",,,,,,y
mobile,contact,,text,"Mobile phone",,,,,,y
sms_status,contact,,text,"SMS status",,,,,,
sms_sid,contact,,text,"SMS SID",,,,,,
sms_sent_at,contact,,text,"SMS sent at",,,,,,
`
	outcomes := map[string]map[string]any{}
	for p := 0; p < projects; p++ {
		pn := fmt.Sprintf("p%02d", p)
		token := strings.ToUpper(fmt.Sprintf("%032x", 0xfa017000+phoneBase*100+p))
		st.tokens = append(st.tokens, token)
		fmt.Fprintf(&cfg, `  - name: %s
    redcap_url: https://redcap.example.edu/api/
    token_env: FAULT_TOKEN_%s
    sms_from: "%s"
`, pn, strings.ToUpper(pn), st.senderOf(p))
		var recs []map[string]string
		for i := 1; i <= per; i++ {
			recs = append(recs, map[string]string{"record_id": fmt.Sprint(i), "first_name": fmt.Sprintf("P%s-%d", pn, i),
				"mobile": st.phoneOf(p, i), "contact_complete": "0"})
			if i%20 == 7 {
				outcomes[st.phoneOf(p, i)] = map[string]any{"final": "undelivered", "error_code": 30003}
			}
		}
		faultWrite(t, filepath.Join(dir, "redcap", pn+".dictionary.csv"), dictionary)
		faultWriteJSON(t, filepath.Join(dir, "redcap", pn+".records.json"), recs)
		faultWriteJSON(t, filepath.Join(dir, "redcap", pn+".tokens.json"), map[string]string{"token": token})
		faultWrite(t, filepath.Join(dir, "rules", pn+".yaml"), fmt.Sprintf(`project: %s
rules:
  - name: hello-%s
    description: Text every participant once.
    channel: sms
    to: "[mobile]"
    template: hello
    write_back: { status: sms_status, sid: sms_sid, sent_at: sms_sent_at }
`, pn, pn))
		st.env = append(st.env, fmt.Sprintf("FAULT_TOKEN_%s=%s", strings.ToUpper(pn), token))
	}
	fmt.Fprintf(&cfg, `twilio:
  account_sid_env: TWILIO_ACCOUNT_SID
  auth_token_env: TWILIO_AUTH_TOKEN
  from: "+14155559999"
  rate_per_second: %v
  # A row left "sending" by a kill before its create reached Twilio is
  # resent only after lookups this long after the attempt found nothing.
  unanswered_lookup_after: 5s
  unanswered_resend_after: 30s
server:
  listen: "127.0.0.1:0"
  public_url: "http://127.0.0.1:9"
  run_every: 2s
  poll_every: 1s
  writeback_every: 1s
`, faultRate)
	faultWrite(t, filepath.Join(dir, "nudge.yaml"), cfg.String())
	faultWrite(t, filepath.Join(dir, "templates", "hello.sms.txt"), "Hi [first_name], a reminder from the study team.\n")
	faultWriteJSON(t, filepath.Join(dir, "twilio.json"), map[string]any{"outcomes": outcomes})
	st.env = append(st.env, "TWILIO_ACCOUNT_SID="+simAccountSID, "TWILIO_AUTH_TOKEN="+simAuthToken)
	return st
}

func faultWrite(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func faultWriteJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	faultWrite(t, path, string(b))
}

// baseEnv is the test's environment without anything that would point
// nudge elsewhere.
func (st *faultStudy) baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NUDGE_") || strings.HasPrefix(kv, "TWILIO_") {
			continue
		}
		out = append(out, kv)
	}
	return append(out, st.env...)
}

func (st *faultStudy) startSims(t *testing.T) {
	t.Helper()
	journal := filepath.Join(st.dir, "twilio.jsonl")
	st.twilio = startFaultProc(t, st.bin, st.baseEnv(), "sim", "twilio", "--listen", "127.0.0.1:0",
		"--journal", journal, "--faults", filepath.Join(st.dir, "twilio.json"))
	st.twilioURL = st.twilio.exported(t, "NUDGE_SIM_TWILIO_URL")
	st.startREDCap(t)
	t.Cleanup(func() {
		if st.redcap != nil {
			st.redcap.stop()
		}
		st.twilio.stop()
	})
}

// startREDCap starts the REDCap simulator: on any free port the first
// time, then on the same port again.
func (st *faultStudy) startREDCap(t *testing.T) {
	t.Helper()
	listen := st.redcapAddr
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	args := []string{"sim", "redcap", "--listen", listen}
	for p := 0; p < st.projects; p++ {
		args = append(args, "--project", filepath.Join(st.dir, "redcap", fmt.Sprintf("p%02d", p)))
	}
	st.redcap = startFaultProc(t, st.bin, st.baseEnv(), args...)
	u := st.redcap.exported(t, "NUDGE_SIM_REDCAP_URL")
	st.redcapAddr = strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/api/")
	st.env = append(st.env, "NUDGE_SIM_REDCAP_URL="+u)
}

// nudgeEnv is the environment of nudge processes: the study's secrets and
// the simulators' addresses.
func (st *faultStudy) nudgeEnv() []string {
	return append(st.baseEnv(), "NUDGE_SIM_TWILIO_URL="+st.twilioURL)
}

// control calls the Twilio simulator's control API.
func (st *faultStudy) control(t *testing.T, method, what, body string) {
	t.Helper()
	req, err := http.NewRequest(method, st.twilioURL+"/_sim/"+what, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(simAccountSID, simAuthToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s /_sim/%s: %s %s", method, what, resp.Status, b)
	}
}

// runResult is one `nudge run`.
type runResult struct {
	phase string // where it was killed; "" when it was not
	exit  int
	busy  bool // it found the pass lease held
	log   string
	tail  string
}

// faultLine is one JSON log line of nudge.
type faultLine struct {
	Msg   string `json:"msg"`
	Level string `json:"level"`
}

// runTracker follows a `nudge run` through its log.
type runTracker struct {
	lines, exported, sent, statusChanged, writtenBack int
	enqueued                                          bool
}

func (tr *runTracker) see(l faultLine) {
	tr.lines++
	switch l.Msg {
	case "exported records":
		tr.exported++
	case "enqueued":
		tr.enqueued = true
	case "sms sent":
		tr.sent++
	case "sms status changed":
		tr.statusChanged++
	case "statuses written back to REDCap":
		tr.writtenBack++
	}
}

// phase names where a run is, from its log lines so far.
func (tr *runTracker) phase(projects int) string {
	switch {
	case tr.writtenBack > 0:
		return "write-back"
	case tr.statusChanged > 0:
		return "status tracking"
	case tr.sent > 0:
		return "dispatch (between creates)"
	case tr.enqueued:
		return "dispatch (before the first create)"
	case tr.exported >= projects:
		return "planning"
	case tr.exported > 0:
		return "export"
	}
	return "startup (config, dictionaries)"
}

// run makes one `nudge run`, killed with SIGKILL when it reaches target
// (one of faultKillPlan's points; "" to let it finish).
func (st *faultStudy) run(t *testing.T, target string) runResult {
	t.Helper()
	var inflight func() bool
	if target == "inflight" {
		// The next create is taken and its answer held back 3 s: a kill
		// as soon as it is in the journal lands with the create in flight.
		before := len(st.journal(t))
		st.control(t, "POST", "fault", `{"delay": "3s", "times": 1}`)
		inflight = func() bool {
			j := st.journal(t)
			for _, e := range j[min(before, len(j)):] {
				if e.Fault && e.HTTPStatus == http.StatusCreated {
					return true
				}
			}
			return false
		}
		defer st.control(t, "DELETE", "fault", "")
	}
	startup := target == "startup"
	sentBefore := 3 + st.runs%7
	trigger := func(tr *runTracker) bool {
		switch target {
		case "startup":
			return false // killed by the timer below
		case "export":
			return tr.exported >= 1 && tr.exported < st.projects
		case "plan":
			return tr.exported >= st.projects
		case "dispatch":
			return tr.sent >= sentBefore
		case "track":
			return tr.statusChanged >= 1
		case "writeback":
			return tr.writtenBack >= 1
		}
		return false
	}
	p := st.startRun(t)
	var (
		mu     sync.Mutex
		tr     runTracker
		phase  string
		killed bool
	)
	kill := func(ph string) {
		if !killed && p.kill() {
			killed, phase = true, ph
		}
	}
	if startup {
		go func() {
			time.Sleep(time.Duration(10+st.runs%5*15) * time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			kill(tr.phase(st.projects))
		}()
	}
	stopPoll := make(chan struct{})
	if inflight != nil {
		go func() {
			for {
				select {
				case <-stopPoll:
					return
				case <-time.After(5 * time.Millisecond):
				}
				if inflight() {
					mu.Lock()
					kill("create in flight")
					mu.Unlock()
					return
				}
			}
		}()
	}
	p.watch(func(l faultLine) bool {
		mu.Lock()
		defer mu.Unlock()
		tr.see(l)
		if trigger(&tr) {
			kill(tr.phase(st.projects))
		}
		return false
	})
	err := p.wait()
	close(stopPoll)
	mu.Lock()
	defer mu.Unlock()
	r := runResult{log: p.stderr.String(), tail: p.tail()}
	if killed {
		r.phase = phase
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	}
	r.busy = strings.Contains(r.log, "another nudge process is making a pass")
	if !killed && r.exit != 0 && r.exit != exitHeld && !r.busy {
		t.Fatalf("nudge run exited %d:\n%s", r.exit, r.tail)
	}
	return r
}

// runWatch makes one `nudge run` calling f on every log line (f may kill
// the simulators; its answer true kills nudge).
func (st *faultStudy) runWatch(t *testing.T, f func(*runTracker) bool) runResult {
	t.Helper()
	p := st.startRun(t)
	var tr runTracker
	p.watch(func(l faultLine) bool {
		tr.see(l)
		return f(&tr)
	})
	err := p.wait()
	r := runResult{log: p.stderr.String(), tail: p.tail()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.exit = ee.ExitCode()
	}
	return r
}

func (st *faultStudy) startRun(t *testing.T) *faultProc {
	st.runs++
	return startFaultProc(t, st.bin, st.nudgeEnv(), "run", "--config", filepath.Join(st.dir, "nudge.yaml"), "--log-json", "--log-level", "info")
}

func (st *faultStudy) startServe(t *testing.T) *faultProc {
	st.runs++
	return startFaultProc(t, st.bin, st.nudgeEnv(), "serve", "--config", filepath.Join(st.dir, "nudge.yaml"), "--log-json",
		"--listen", "127.0.0.1:0")
}

// journal reads the Twilio simulator's journal.
func (st *faultStudy) journal(t *testing.T) []twiliotest.JournalEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(st.dir, "twilio.jsonl"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []twiliotest.JournalEntry
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e twiliotest.JournalEntry
		if err := json.Unmarshal(line, &e); err != nil {
			break // a line being written
		}
		out = append(out, e)
	}
	return out
}

// records reads REDCap's saved records of every project.
func (st *faultStudy) records(t *testing.T) map[string][]map[string]string {
	t.Helper()
	out := map[string][]map[string]string{}
	for p := 0; p < st.projects; p++ {
		pn := fmt.Sprintf("p%02d", p)
		rows, err := redcaptest.ReadRecords(filepath.Join(st.dir, "redcap", pn+".records.json"))
		if err != nil {
			t.Fatal(err)
		}
		out[pn] = rows
	}
	return out
}

var finalStatuses = map[string]bool{"delivered": true, "undelivered": true, "failed": true}

// done reports whether every participant has a final status in REDCap.
func (st *faultStudy) done(t *testing.T) bool {
	t.Helper()
	for _, rows := range st.records(t) {
		if len(rows) < st.per {
			return false
		}
		for _, r := range rows {
			if !finalStatuses[r["sms_status"]] {
				return false
			}
		}
	}
	return true
}

// progress says how far a study got, for a failure message.
func (st *faultStudy) progress(t *testing.T) string {
	created := 0
	for _, e := range st.journal(t) {
		if e.SID != "" {
			created++
		}
	}
	statuses := map[string]int{}
	for _, rows := range st.records(t) {
		for _, r := range rows {
			statuses[r["sms_status"]]++
		}
	}
	outbox := map[string]int{}
	if db, err := sql.Open("sqlite3", "file:"+filepath.Join(st.dir, "nudge.db")+"?mode=ro"); err == nil {
		rows, err := db.Query(`SELECT state || '/' || status, count(*) FROM messages GROUP BY 1`)
		if err == nil {
			for rows.Next() {
				var k string
				var n int
				if rows.Scan(&k, &n) == nil {
					outbox[k] = n
				}
			}
			rows.Close()
		}
		db.Close()
	}
	return fmt.Sprintf("%d creates at Twilio; REDCap statuses %v; outbox %v", created, statuses, outbox)
}

// verdict is what the journal and REDCap show.
type verdict struct {
	messages, lost, duplicates, mismatched int
	minInterval                            map[string]time.Duration
}

func (v verdict) lines(scenario string) []string {
	var ivs []string
	least := time.Duration(0)
	for _, s := range sortedSenders(v.minInterval) {
		iv := v.minInterval[s]
		ivs = append(ivs, fmt.Sprintf("…%s %dms", s[len(s)-4:], iv.Milliseconds()))
		if least == 0 || iv < least {
			least = iv
		}
	}
	return []string{
		fmt.Sprintf("%s: messages %d, lost %d, duplicates %d, REDCap statuses not matching the outbox %d",
			scenario, v.messages, v.lost, v.duplicates, v.mismatched),
		fmt.Sprintf("%s: min interval per number (limit %dms): %s; least %dms",
			scenario, faultSlot.Milliseconds(), strings.Join(ivs, ", "), least.Milliseconds()),
	}
}

func sortedSenders(m map[string]time.Duration) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// verify judges a finished study: every participant has exactly one
// created message, no (to, body) was created twice, creates from one
// number were never closer than the rate allows, and REDCap's status and
// SID of each participant are the outbox's, with a final status that the
// Twilio simulator agrees with.
func (st *faultStudy) verify(t *testing.T) verdict {
	t.Helper()
	v := verdict{minInterval: map[string]time.Duration{}}
	perTo := map[string]int{}
	perToBody := map[string]int{}
	last := map[string]time.Time{}
	for _, e := range st.journal(t) {
		if e.SID == "" {
			continue // refused: nothing was created
		}
		v.messages++
		perTo[e.To]++
		perToBody[e.To+" "+e.BodySHA256]++
		at, err := time.Parse(time.RFC3339Nano, e.Time)
		if err != nil {
			t.Fatalf("journal time %q: %v", e.Time, err)
		}
		if l, ok := last[e.Sender]; ok {
			iv := at.Sub(l)
			if cur, ok := v.minInterval[e.Sender]; !ok || iv < cur {
				v.minInterval[e.Sender] = iv
			}
		}
		last[e.Sender] = at
	}
	for _, n := range perToBody {
		if n > 1 {
			v.duplicates += n - 1
		}
	}
	for p := 0; p < st.projects; p++ {
		for i := 1; i <= st.per; i++ {
			switch n := perTo[st.phoneOf(p, i)]; {
			case n == 0:
				v.lost++
			case n > 1:
				t.Errorf("participant %d of p%02d was texted %d times", i, p, n)
			}
		}
	}
	limit := faultSlot - faultTolerance
	for s, iv := range v.minInterval {
		if iv < limit {
			t.Errorf("sender …%s: two creates %s apart, closer than the rate allows (%s)", s[len(s)-4:], iv, limit)
		}
	}
	if v.lost > 0 || v.duplicates > 0 {
		t.Errorf("%d lost, %d duplicates", v.lost, v.duplicates)
	}

	// REDCap against the outbox and Twilio's own statuses.
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(st.dir, "nudge.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	type row struct{ state, status, sid string }
	outbox := map[string]row{}
	rows, err := db.Query(`SELECT project, record, state, status, coalesce(sid, '') FROM messages`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var project, record string
		var r row
		if err := rows.Scan(&project, &record, &r.state, &r.status, &r.sid); err != nil {
			t.Fatal(err)
		}
		outbox[project+"/"+record] = r
	}
	rows.Close()
	twilio := map[string]string{}
	for _, m := range st.simState(t).Messages {
		twilio[m.SID] = m.Status
	}
	for pn, recs := range st.records(t) {
		for _, rec := range recs {
			key := pn + "/" + rec["record_id"]
			o := outbox[key]
			if !finalStatuses[rec["sms_status"]] || rec["sms_status"] != o.status || rec["sms_sid"] != o.sid || twilio[o.sid] != o.status {
				v.mismatched++
				t.Errorf("%s: REDCap has status %q sid %q; the outbox %q %q; Twilio %q", key,
					rec["sms_status"], rec["sms_sid"], o.status, o.sid, twilio[o.sid])
			}
		}
	}
	return v
}

func (st *faultStudy) simState(t *testing.T) twiliotest.State {
	t.Helper()
	req, _ := http.NewRequest("GET", st.twilioURL+"/_sim/state", nil)
	req.SetBasicAuth(simAccountSID, simAuthToken)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s twiliotest.State
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// faultProc is a child process of the suite.
type faultProc struct {
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	lines  chan faultLine
	done   chan struct{}
	err    error
	killed bool
	mu     sync.Mutex
}

func startFaultProc(t *testing.T, bin string, env []string, args ...string) *faultProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	p := &faultProc{cmd: cmd, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, lines: make(chan faultLine, 4096),
		done: make(chan struct{})}
	cmd.Stdout = p.stdout
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			p.stderr.Write(append(append([]byte(nil), line...), '\n'))
			var l faultLine
			if json.Unmarshal(line, &l) == nil {
				p.lines <- l
			}
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// watch calls f on each log line until the process ends; f returning
// true kills the process.
func (p *faultProc) watch(f func(faultLine) bool) {
	for l := range p.lines {
		if f(l) {
			p.kill()
		}
	}
}

// kill sends SIGKILL; it reports whether the process was still running.
func (p *faultProc) kill() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return false
	default:
	}
	if p.cmd.Process.Signal(syscall.SIGKILL) != nil {
		return false
	}
	p.killed = true
	return true
}

// stop ends a simulator or a server as an operator would (SIGTERM).
func (p *faultProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.kill()
		<-p.done
	}
}

func (p *faultProc) wait() error {
	for range p.lines {
	}
	<-p.done
	return p.err
}

// exported waits for the process to print `export NAME=VALUE` and
// returns VALUE.
func (p *faultProc) exported(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		for _, line := range strings.Split(p.stdout.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "export "+name+"="); ok {
				return v
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s ended: %v\n%s%s", p.cmd.Args, p.err, p.stdout, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s printed no %s:\n%s%s", p.cmd.Args, name, p.stdout, p.stderr)
	return ""
}

// tail is the end of the process's log, for failure messages.
func (p *faultProc) tail() string {
	s := p.stdout.String() + p.stderr.String()
	if len(s) > 4000 {
		s = "…" + s[len(s)-4000:]
	}
	return s
}
