package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/engine/webhook"
	"github.com/nudge-study/nudge/engine/webhook/webhooktest"
	"github.com/nudge-study/nudge/storage"
)

// The public URL Twilio is configured with; the server itself listens on
// 127.0.0.1 behind an imagined proxy that strips /hooks.
const publicURL = "https://nudge.example.edu/hooks"

// triggerSecret is the Data Entry Trigger secret of the test servers.
const triggerSecret = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"

type served struct {
	*fixture
	base string // where the server really listens
}

func serve(t testing.TB) *served { return serveWith(t, false) }

// runServe runs e.Serve on l until the test ends, and then checks that it
// stopped cleanly.
func runServe(t testing.TB, ctx context.Context, e *engine.Engine, l net.Listener, opt engine.ServeOptions) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx, l, opt) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Serve did not stop within 30 s of its context ending")
		}
	})
}

// serveWith starts the server; with callbacks the Twilio simulator posts
// status callbacks to it, and public_url is the server's own address.
func serveWith(t testing.TB, callbacks bool) *served {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opt, public := demo.Options{}, publicURL
	if callbacks {
		public = "http://" + l.Addr().String()
		opt.StatusCallback, opt.ShuffleCallbacks = public+"/twilio/status", true
	}
	f := newFixtureWith(t, opt)
	f.env.Study.Config.Server.PublicURL = public
	f.env.Study.Config.Server.RunEvery = 0 // the tests make their own passes
	runServe(t, f.ctx, f.e, l, engine.ServeOptions{AuthToken: demo.AuthToken, TriggerSecret: triggerSecret})
	s := &served{fixture: f, base: "http://" + l.Addr().String()}
	s.eventually(t, "the server has caught up with REDCap", func() bool {
		h, status := s.health()
		return status == http.StatusOK && h.REDCap == "ok"
	})
	return s
}

// health reads /healthz.
func (s *served) health() (webhook.Health, int) {
	var h webhook.Health
	resp, err := http.Get(s.base + "/healthz")
	if err != nil {
		return h, 0
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return h, 0
	}
	return h, resp.StatusCode
}

func sign(fullURL string, form url.Values) string {
	return webhooktest.Sign(demo.AuthToken, fullURL, form)
}

// post sends a form to path; signedFor is the URL to sign for ("" = no signature).
func (s *served) post(t *testing.T, path string, form url.Values, signedFor string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if signedFor != "" {
		req.Header.Set("X-Twilio-Signature", sign(signedFor, form))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(body)
}

var sidSeq struct {
	sync.Mutex
	n int
}

func inbound(from, body string) url.Values {
	sidSeq.Lock()
	sidSeq.n++
	n := sidSeq.n
	sidSeq.Unlock()
	return url.Values{"MessageSid": {fmt.Sprintf("SM%032x", n)}, "AccountSid": {demo.AccountSID},
		"From": {from}, "To": {"+14155550100"}, "Body": {body}, "NumMedia": {"0"}, "ApiVersion": {"2010-04-01"}}
}

func (s *served) eventually(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// redcapValue reads a field of a record (and event) from the REDCap simulator.
func (s *served) redcapValue(project, record, event, field string) string {
	id := s.e.Dicts[project].RecordID()
	for _, row := range s.env.REDCap.Export(s.env.Token(project)) {
		if row[id] == record && row["redcap_event_name"] == event && row["redcap_repeat_instance"] == "" {
			return row[field]
		}
	}
	return ""
}

// Record 5 of site A: consented, agreed to texts, +1 312 555 0104.
const alice = "+13125550104"

func TestServeStopAndStart(t *testing.T) {
	s := serve(t)
	status, ctype, body := s.post(t, "/twilio/inbound", inbound(alice, " Stop. "), publicURL+"/twilio/inbound")
	if status != 200 || !strings.HasPrefix(ctype, "text/xml") || !strings.Contains(body, "<Response") || strings.Contains(body, "<Message") {
		t.Fatalf("STOP: %d %q %q; want 200, text/xml, an empty Response", status, ctype, body)
	}
	if out, err := s.e.Store.IsOptedOut(s.ctx, alice); err != nil || !out {
		t.Fatalf("after STOP: opted out = %v, %v", out, err)
	}
	s.eventually(t, "REDCap has sms_opt_in = 0 for record 5", func() bool { return s.redcapValue("site_a", "5", "", "sms_opt_in") == "0" })

	// The next run skips the participant with the reason.
	res, err := s.e.Run(s.ctx, engine.PlanOptions{Rules: map[string]bool{"welcome-sms": true}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range res.Plan.Decisions {
		if d.Record == "5" && (d.Outcome != engine.Skipped || d.Reason != "opted out") {
			t.Errorf("record 5 after STOP: %s %q, want skipped: opted out", d.Outcome, d.Reason)
		}
	}
	// The REDCap write-back reached sms_opt_in = 0, so the condition now excludes them.
	for _, c := range s.env.Twilio.Creates() {
		if c.To == alice {
			t.Error("a text went to a participant who replied STOP")
		}
	}

	form := inbound(alice, "start")
	if status, _, _ := s.post(t, "/twilio/inbound", form, publicURL+"/twilio/inbound"); status != 200 {
		t.Fatalf("START: %d", status)
	}
	if out, _ := s.e.Store.IsOptedOut(s.ctx, alice); out {
		t.Error("START did not opt back in")
	}
	s.eventually(t, "REDCap has sms_opt_in = 1 again", func() bool { return s.redcapValue("site_a", "5", "", "sms_opt_in") == "1" })

	// Twilio retries a webhook: same answer, nothing stored twice.
	before, _ := s.e.Store.InboundCount(s.ctx)
	if status, _, _ := s.post(t, "/twilio/inbound", form, publicURL+"/twilio/inbound"); status != 200 {
		t.Fatalf("retried START: %d", status)
	}
	if after, _ := s.e.Store.InboundCount(s.ctx); after != before {
		t.Errorf("a retried webhook was stored again: %d → %d", before, after)
	}

	// YES from someone who opted out opts them back in too.
	for _, word := range []string{"QUIT", "Yes"} {
		if status, _, _ := s.post(t, "/twilio/inbound", inbound(alice, word), publicURL+"/twilio/inbound"); status != 200 {
			t.Fatalf("%s: %d", word, status)
		}
	}
	if out, _ := s.e.Store.IsOptedOut(s.ctx, alice); out {
		t.Error("YES after QUIT did not opt back in")
	}

	status, _, body = s.post(t, "/twilio/inbound", inbound(alice, "help"), publicURL+"/twilio/inbound")
	if status != 200 || !strings.Contains(body, "reply STOP to stop texts") {
		t.Errorf("HELP: %d %q; want the help text", status, body)
	}
}

func TestServeRejectsBadSignatures(t *testing.T) {
	s := serve(t)
	cases := []struct {
		name      string
		signedFor string
		tamper    bool
	}{
		{"unsigned", "", false},
		{"signed for the internal address (Host header)", s.base + "/twilio/inbound", false},
		{"body changed after signing", publicURL + "/twilio/inbound", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			form := inbound(alice, "STOP")
			req, _ := http.NewRequest(http.MethodPost, s.base+"/twilio/inbound", nil)
			sig := ""
			if tc.signedFor != "" {
				sig = sign(tc.signedFor, form)
			}
			if tc.tamper {
				form.Set("Body", "START")
			}
			req.Body = io.NopCloser(strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if sig != "" {
				req.Header.Set("X-Twilio-Signature", sig)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status %d, want 403", resp.StatusCode)
			}
		})
	}
	if n, _ := s.e.Store.InboundCount(s.ctx); n != 0 {
		t.Errorf("%d inbound messages stored from rejected requests", n)
	}
	if out, _ := s.e.Store.IsOptedOut(s.ctx, alice); out {
		t.Error("a rejected STOP opted the participant out")
	}
}

// A reply rule sets a REDCap field (in the rule's event) and answers with
// piped text.
func TestServeReplyRule(t *testing.T) {
	s := serve(t)
	const abebe = "+12065550150" // B-001 of site B, who has a week 4 visit
	status, _, body := s.post(t, "/twilio/inbound", inbound(abebe, "Yes!"), publicURL+"/twilio/inbound")
	if status != 200 || !strings.Contains(body, "<Message>Thanks Abebe, your visit is confirmed.</Message>") {
		t.Fatalf("reply: %d %q", status, body)
	}
	s.eventually(t, "REDCap has visit_confirmed = 1 in week_4_arm_1", func() bool {
		return s.redcapValue("site_b", "B-001", "week_4_arm_1", "visit_confirmed") == "1"
	})
	// Someone unknown gets no answer and changes nothing.
	status, _, body = s.post(t, "/twilio/inbound", inbound("+16175550999", "yes"), publicURL+"/twilio/inbound")
	if status != 200 || strings.Contains(body, "<Message") {
		t.Errorf("unknown sender: %d %q", status, body)
	}
}

// Status callbacks that arrive out of order (delivered before sent) leave
// the message delivered.
func TestServeStatusCallbacksOutOfOrder(t *testing.T) {
	s := serve(t)
	s.enqueue(t, "diary-reminder")
	if _, err := s.e.Dispatch(s.ctx); err != nil {
		t.Fatal(err)
	}
	var m storage.Message
	for _, x := range s.messages(t, "diary-reminder") {
		if x.SID != "" && x.State == storage.StateSent {
			m = x
			break
		}
	}
	if m.SID == "" {
		t.Fatal("no sent message")
	}
	for _, st := range []string{"delivered", "sent", "sending", "delivered"} {
		form := url.Values{"MessageSid": {m.SID}, "SmsSid": {m.SID}, "MessageStatus": {st}, "SmsStatus": {st},
			"AccountSid": {demo.AccountSID}, "From": {m.From}, "To": {m.To}, "ApiVersion": {"2010-04-01"}}
		if status, _, _ := s.post(t, "/twilio/status", form, publicURL+"/twilio/status"); status/100 != 2 {
			t.Fatalf("callback %s: HTTP %d", st, status)
		}
	}
	got, err := s.e.Store.Get(s.ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "delivered" || got.State != storage.StateDelivered {
		t.Errorf("after delivered, sent, sending, delivered: status %s state %s; want delivered", got.Status, got.State)
	}
	hist, _ := s.e.Store.History(s.ctx, m.ID)
	delivered := 0
	for _, h := range hist {
		if h.Status == "delivered" {
			delivered++
		}
	}
	if delivered != 1 {
		t.Errorf("history has %d delivered rows, want 1: %+v", delivered, hist)
	}
}

// A Data Entry Trigger for a record that now meets an on-save rule sends
// that message once, even when the trigger arrives twice; a trigger from an
// unknown project is refused. It also measures trigger → Twilio create.
func TestServeDataEntryTrigger(t *testing.T) {
	s := serve(t)
	redcapBase := strings.TrimSuffix(s.env.REDCapURL, "api/")
	trigger := func(project, record string) (int, string) {
		form := url.Values{"redcap_url": {redcapBase}, "project_url": {redcapBase + "redcap_v14.5.1/index.php?pid=" + project},
			"project_id": {project}, "username": {"coordinator"}, "record": {record}, "instrument": {"baseline"}, "baseline_complete": {"2"}}
		status, _, body := s.post(t, "/redcap/trigger?secret="+triggerSecret, form, "")
		return status, body
	}
	// Coordinators record big step goals for consented texters.
	records := []string{"5", "10", "25", "31", "41", "1"}
	var latencies []time.Duration
	for _, rec := range records {
		if err := s.env.REDCap.Load(s.env.Token("site_a"), []map[string]string{{"record_id": rec, "steps_goal": "12500"}}); err != nil {
			t.Fatal(err)
		}
		before := len(s.env.Twilio.Attempts())
		start := time.Now()
		if status, body := trigger("1001", rec); status != 200 {
			t.Fatalf("trigger: %d %s", status, body)
		}
		s.eventually(t, "the on-save text is sent for record "+rec, func() bool { return len(s.env.Twilio.Attempts()) > before })
		latencies = append(latencies, time.Since(start))
		// The same save reported again sends nothing more.
		if status, _ := trigger("1001", rec); status != 200 {
			t.Fatal("second trigger refused")
		}
		s.eventually(t, "the repeated trigger is processed", func() bool {
			d, err := s.e.Store.Depths(s.ctx)
			return err == nil && d.Triggers == 0
		})
		// Saves by a coordinator are seconds apart; leave the REDCap
		// client's limiter (10 requests/s per host) the time it would have.
		time.Sleep(150 * time.Millisecond)
	}
	// Let the repeated triggers be processed.
	s.eventually(t, "the trigger queue is empty", func() bool {
		d, err := s.e.Store.Depths(s.ctx)
		return err == nil && d.Triggers == 0
	})
	sent := map[string]int{}
	for _, a := range s.env.Twilio.Attempts() {
		sent[a.To]++
	}
	for to, n := range sent {
		if n != 1 {
			t.Errorf("%d texts to %s", n, to)
		}
	}
	if len(sent) != len(records) {
		t.Errorf("%d participants texted, want %d", len(sent), len(records))
	}
	if status, _ := trigger("9999", "5"); status != http.StatusForbidden {
		t.Errorf("unknown project: HTTP %d, want 403", status)
	}
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	t.Logf("Data Entry Trigger → Twilio create: p50 %v, max %v over %d saves", latencies[len(latencies)/2], latencies[len(latencies)-1], len(latencies))
}

// Two engines on one database (two `nudge serve`) plus a third pass (cron's
// `nudge run`), all at once: every message is sent once.
func TestTwoServersAndCronOnOneDatabase(t *testing.T) {
	f := newFixture(t)
	others := make([]*engine.Engine, 2)
	for i := range others {
		e, err := engine.New(f.env.Study, engine.Options{DBPath: f.dbPath(), Clock: f.clk, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		if err := e.Prepare(f.ctx); err != nil {
			t.Fatal(err)
		}
		others[i] = e
	}
	engines := append([]*engine.Engine{f.e}, others...)
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		for _, e := range engines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.RunLocked(f.ctx, e.Owner+"-pass", engine.PlanOptions{}); err != nil && !errors.Is(err, engine.ErrBusy) {
					t.Error(err)
				}
				if _, err := e.Dispatch(f.ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	f.assertNoDuplicates(t)
	keys := 0
	for _, r := range f.env.Study.Rules {
		for _, m := range f.messages(t, r.Name) {
			if m.Channel == "sms" && m.SID != "" {
				keys++
			}
		}
	}
	if n := len(f.env.Twilio.Creates()); n != keys || n == 0 {
		t.Errorf("%d creates at Twilio for %d sent messages", n, keys)
	}
}

// Cancelling a dispatch in the middle (SIGTERM) loses nothing: every
// message is either sent or still queued, and the next start sends the rest
// exactly once.
func TestInterruptedDispatchResumes(t *testing.T) {
	f := newFixture(t)
	f.enqueue(t, "welcome-sms", "diary-reminder")
	f.env.Twilio.Fault(twiliotest.Fault{Delay: 20 * time.Millisecond, Times: 1000}) // each create takes a moment
	ctx, cancel := context.WithCancel(f.ctx)
	go func() {
		for len(f.env.Twilio.Creates()) < 4 {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := f.e.Dispatch(ctx); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	first := len(f.env.Twilio.Creates())
	for _, r := range []string{"welcome-sms", "diary-reminder"} {
		for _, m := range f.messages(t, r) {
			if m.State == storage.StateSending {
				t.Errorf("record %s left in sending after a clean shutdown", m.Record)
			}
		}
	}
	// The next start: a new engine on the same database.
	if err := f.e.Close(); err != nil {
		t.Fatal(err)
	}
	next, err := engine.New(f.env.Study, engine.Options{DBPath: f.dbPath(), Clock: f.clk, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	if err := next.Prepare(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.e = next
	f.clk.Advance(time.Minute)
	if _, err := next.Dispatch(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.assertNoDuplicates(t)
	total := 0
	for _, r := range []string{"welcome-sms", "diary-reminder"} {
		for _, m := range f.messages(t, r) {
			if m.State == storage.StatePlanned || m.State == storage.StateRetry || m.State == storage.StateSending {
				if m.NotBefore.After(f.clk.Now()) {
					continue // held for the allowed hours
				}
				t.Errorf("record %s still %s after resuming", m.Record, m.State)
			}
			if m.SID != "" {
				total++
			}
		}
	}
	if first >= total {
		t.Errorf("the interruption did not interrupt: %d creates before, %d after", first, total)
	}
}

// BenchmarkServeInbound drives the real server — signature check, answer,
// group-committed SQLite write — with 20,000 signed inbound texts from 32
// keep-alive clients on loopback, and checks that every one was stored.
func BenchmarkServeInbound(b *testing.B) {
	s := serve(b)
	const requests, clients = 20000, 32
	b.ResetTimer()
	var last webhooktest.Result
	for i := 0; i < b.N; i++ {
		before, _ := s.e.Store.InboundCount(s.ctx)
		prefix := fmt.Sprintf("SM%02x", i)
		res, err := webhooktest.Load{ServerURL: s.base, PublicURL: publicURL, AuthToken: demo.AuthToken,
			Requests: requests, Clients: clients, Message: func(n int) url.Values {
				return webhooktest.InboundParams(fmt.Sprintf("%s%030x", prefix, n), fmt.Sprintf("+1415555%04d", n%1000), "+14155550100", "Running late, sorry")
			}}.Run(s.ctx)
		if err != nil {
			b.Fatal(err)
		}
		if res.Failures > 0 {
			b.Fatalf("%d failures: %v", res.Failures, res.FirstErr)
		}
		after, _ := s.e.Store.InboundCount(s.ctx)
		if after-before != requests {
			b.Fatalf("%d stored of %d answered", after-before, requests)
		}
		last = res
	}
	b.ReportMetric(last.PerSecond(), "req/s")
	b.ReportMetric(float64(last.P50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(last.P99.Microseconds())/1000, "p99-ms")
}

// A reply rule limited to participants a rule texted recently ignores
// everyone else.
func TestServeReplyOnlyAfterRule(t *testing.T) {
	s := serve(t)
	r := s.env.Study.Replies[0]
	r.OnlyAfterRule, r.Within = "diary-reminder", 48*time.Hour
	s.enqueue(t, "diary-reminder")
	if _, err := s.e.Dispatch(s.ctx); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		who, phone string
		confirmed  bool
	}{
		{"B-001, no diary reminder", "+12065550150", false},
		{"B-003, reminded just now", "+13125550152", true},
	}
	for _, tc := range cases {
		status, _, body := s.post(t, "/twilio/inbound", inbound(tc.phone, "yes"), publicURL+"/twilio/inbound")
		if status != 200 || strings.Contains(body, "confirmed") != tc.confirmed {
			t.Errorf("%s: %d %q", tc.who, status, body)
		}
	}
	// Two days later the reminder no longer counts.
	s.clk.Advance(49 * time.Hour)
	if _, _, body := s.post(t, "/twilio/inbound", inbound("+13125550152", "yes"), publicURL+"/twilio/inbound"); strings.Contains(body, "confirmed") {
		t.Errorf("49 h after the reminder: %q", body)
	}
}

// Twilio's own status callbacks (signed, some out of order) bring every
// text to its final status without the poller, and the statuses reach REDCap.
func TestServeStatusCallbacksFromTwilio(t *testing.T) {
	s := serveWith(t, true)
	s.enqueue(t, "diary-reminder")
	if _, err := s.e.Dispatch(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.clk.Advance(5 * time.Second) // past the simulator's delivery time
	final := func(m storage.Message) bool { return m.State.Final() }
	s.eventually(t, "every diary reminder has a final status", func() bool {
		for _, m := range s.messages(t, "diary-reminder") {
			if m.SID != "" && !final(m) {
				return false
			}
		}
		return true
	})
	callbacks := 0
	for _, m := range s.messages(t, "diary-reminder") {
		if m.SID == "" {
			continue
		}
		hist, err := s.e.Store.History(s.ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hist {
			if h.Source == storage.SourceCallback {
				callbacks++
			}
		}
		if last := hist[len(hist)-1].Status; last != m.Status || !storage.IsFinalStatus(last) {
			t.Errorf("%s: history ends in %s, message is %s", m.Record, last, m.Status)
		}
	}
	if callbacks == 0 {
		t.Fatal("no status came from a callback")
	}
	for _, a := range s.env.Twilio.Callbacks() {
		if a.HTTPStatus/100 != 2 {
			t.Errorf("callback %s %s answered %d %s", a.SID, a.Status, a.HTTPStatus, a.Err)
		}
	}
	s.eventually(t, "the final statuses are in REDCap", func() bool {
		n, err := s.e.Store.Outstanding(s.ctx)
		return err == nil && n == 0
	})
}
