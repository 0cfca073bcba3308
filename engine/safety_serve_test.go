package engine_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/redcap"
)

// maintenance stands in front of the REDCap simulator: while down it
// answers every request with a 503 maintenance page, as REDCap does during
// an upgrade; otherwise it passes requests through.
type maintenance struct {
	down  atomic.Bool
	calls atomic.Int64
	srv   *httptest.Server
}

func newMaintenance(t *testing.T, redcapURL string) *maintenance {
	t.Helper()
	target, err := url.Parse(redcapURL)
	if err != nil {
		t.Fatal(err)
	}
	target.Path = ""
	proxy := httputil.NewSingleHostReverseProxy(target)
	m := &maintenance{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.calls.Add(1)
		if m.down.Load() {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "<html><body><h1>REDCap is offline for maintenance</h1></body></html>")
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// TestSafetyServeWithREDCapDown: nudge serve starts while REDCap is down
// for maintenance; a STOP through the real server is answered and stored,
// HELP is answered and a Data Entry Trigger is queued, all without REDCap.
// When REDCap is back, nudge catches up: the data dictionary check, the
// first pass (which texts others but not the participant who said STOP),
// the opt-out written to REDCap and the queued trigger worked.
func TestSafetyServeWithREDCapDown(t *testing.T) {
	f := newFixture(t)
	// An earlier nudge run filled the participant index.
	if _, err := f.e.Export(f.ctx); err != nil {
		t.Fatal(err)
	}
	mt := newMaintenance(t, f.env.REDCapURL)
	mt.down.Store(true)

	// The restarted `nudge serve`: not prepared, REDCap reached through
	// the maintenance page.
	e, err := engine.New(f.env.Study, engine.Options{DBPath: f.dbPath(), Clock: f.clk, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	for _, p := range f.env.Study.Config.Projects {
		c, err := redcap.New(mt.srv.URL+"/api/", f.env.Token(p.Name), redcap.WithRetry(1, 0))
		if err != nil {
			t.Fatal(err)
		}
		e.REDCap[p.Name] = c
	}
	f.env.Study.Config.Server.PublicURL = publicURL
	f.env.Study.Config.Server.RunEvery = time.Hour // one pass as soon as REDCap answers

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runServe(t, f.ctx, e, l, engine.ServeOptions{AuthToken: demo.AuthToken, TriggerSecret: triggerSecret,
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	s := &served{fixture: f, base: "http://" + l.Addr().String()}
	s.e = e
	s.eventually(t, "the server answers /healthz while REDCap is down", func() bool {
		_, status := s.health()
		return status == http.StatusOK
	})
	s.eventually(t, "nudge has tried REDCap", func() bool { return mt.calls.Load() > 0 })

	h, _ := s.health()
	if h.Status != "degraded" || h.REDCap != "waiting" || len(h.Problems) == 0 || !strings.Contains(h.Problems[0], "REDCap") {
		t.Errorf("health while REDCap is down: %+v; want degraded, redcap waiting, and why", h)
	}
	body := strings.Join(h.Problems, " ")
	for _, leak := range []string{"127.0.0.1", "503", "maintenance", "http"} {
		if strings.Contains(body, leak) {
			t.Errorf("/healthz publishes %q: %s", leak, body)
		}
	}

	// STOP from a participant, through the real server.
	status, ctype, answer := s.post(t, "/twilio/inbound", inbound(alice, "STOP"), publicURL+"/twilio/inbound")
	if status != 200 || !strings.HasPrefix(ctype, "text/xml") || !strings.Contains(answer, "<Response") {
		t.Fatalf("STOP while REDCap is down: %d %q %q", status, ctype, answer)
	}
	if out, err := e.Store.IsOptedOut(f.ctx, alice); err != nil || !out {
		t.Fatalf("STOP while REDCap is down: opted out = %v, %v", out, err)
	}
	if _, _, answer := s.post(t, "/twilio/inbound", inbound(alice, "HELP"), publicURL+"/twilio/inbound"); !strings.Contains(answer, "reply STOP") {
		t.Errorf("HELP while REDCap is down: %q", answer)
	}
	redcapBase := strings.TrimSuffix(f.env.REDCapURL, "api/")
	det := url.Values{"redcap_url": {redcapBase}, "project_id": {"1001"}, "record": {"10"}, "instrument": {"baseline"}}
	if status, _, body := s.post(t, "/redcap/trigger?secret="+triggerSecret, det, ""); status != 200 {
		t.Fatalf("trigger while REDCap is down: %d %s", status, body)
	}
	if n := len(f.env.Twilio.Creates()); n != 0 {
		t.Fatalf("%d texts sent before nudge reached REDCap", n)
	}

	// REDCap is back.
	mt.down.Store(false)
	s.eventually(t, "nudge has caught up with REDCap", func() bool {
		h, status := s.health()
		return status == http.StatusOK && h.REDCap == "ok"
	})
	s.eventually(t, "the first pass has texted participants", func() bool { return len(f.env.Twilio.Creates()) > 0 })
	s.eventually(t, "REDCap has sms_opt_in = 0 for the participant who said STOP", func() bool {
		return s.redcapValue("site_a", "5", "", "sms_opt_in") == "0"
	})
	s.eventually(t, "the queued trigger is worked", func() bool {
		d, err := e.Store.Depths(f.ctx)
		return err == nil && d.Triggers == 0
	})
	for _, c := range f.env.Twilio.Creates() {
		if c.To == alice {
			t.Error("the participant who said STOP during the maintenance was texted")
		}
	}
}

// TestSafetyForgedTriggersSendNothing: Data Entry Triggers without the
// secret, or with a wrong one, are refused with 403 and queue nothing;
// with the secret they work.
func TestSafetyForgedTriggersSendNothing(t *testing.T) {
	s := serve(t)
	redcapBase := strings.TrimSuffix(s.env.REDCapURL, "api/")
	if err := s.env.REDCap.Load(s.env.Token("site_a"), []map[string]string{{"record_id": "5", "steps_goal": "12500"}}); err != nil {
		t.Fatal(err)
	}
	det := url.Values{"redcap_url": {redcapBase}, "project_id": {"1001"}, "record": {"5"}, "instrument": {"baseline"}}
	for _, path := range []string{"/redcap/trigger", "/redcap/trigger?secret=", "/redcap/trigger?secret=forged-forged-forged-forged"} {
		for i := 0; i < 20; i++ {
			if status, _, _ := s.post(t, path, det, ""); status != http.StatusForbidden {
				t.Fatalf("%s: HTTP %d, want 403", path, status)
			}
		}
	}
	var queued int
	ts, err := s.e.Store.PendingTriggers(s.ctx, s.clk.Now().Add(time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	queued = len(ts)
	if queued != 0 || len(s.env.Twilio.Attempts()) != 0 {
		t.Fatalf("forged triggers: %d queued, %d texts", queued, len(s.env.Twilio.Attempts()))
	}
	if status, _, _ := s.post(t, "/redcap/trigger?secret="+triggerSecret, det, ""); status != http.StatusOK {
		t.Fatalf("genuine trigger: HTTP %d", status)
	}
	s.eventually(t, "the genuine trigger texts", func() bool { return len(s.env.Twilio.Attempts()) == 1 })

	// Handled triggers are pruned after the retention, not before.
	if n, err := s.e.PruneTriggers(s.ctx); err != nil || n != 0 {
		t.Fatalf("pruned %d (%v) right after handling", n, err)
	}
	s.clk.Advance(engine.TriggerRetention + time.Hour)
	if n, err := s.e.PruneTriggers(s.ctx); err != nil || n != 1 {
		t.Fatalf("pruned %d (%v) after the retention, want 1", n, err)
	}
}

// TestSafetyOptOutType: with Twilio's Advanced Opt-Out a custom keyword
// arrives with OptOutType; nudge records it like STOP and START, and
// answers HELP with the help text.
func TestSafetyOptOutType(t *testing.T) {
	s := serve(t)
	send := func(body, optOutType string) string {
		t.Helper()
		form := inbound(alice, body)
		if optOutType != "" {
			form.Set("OptOutType", optOutType)
		}
		status, _, answer := s.post(t, "/twilio/inbound", form, publicURL+"/twilio/inbound")
		if status != 200 {
			t.Fatalf("%s: HTTP %d", body, status)
		}
		return answer
	}
	send("PARAR", "STOP")
	if out, _ := s.e.Store.IsOptedOut(s.ctx, alice); !out {
		t.Fatal("PARAR with OptOutType=STOP did not opt out")
	}
	s.eventually(t, "REDCap has sms_opt_in = 0", func() bool { return s.redcapValue("site_a", "5", "", "sms_opt_in") == "0" })
	send("COMENZAR", "START")
	if out, _ := s.e.Store.IsOptedOut(s.ctx, alice); out {
		t.Fatal("COMENZAR with OptOutType=START did not opt back in")
	}
	if answer := send("AYUDA", "HELP"); !strings.Contains(answer, "reply STOP") {
		t.Errorf("AYUDA with OptOutType=HELP: %q, want the help text", answer)
	}
	// Without OptOutType the same word is no keyword.
	send("PARAR", "")
	if out, _ := s.e.Store.IsOptedOut(s.ctx, alice); out {
		t.Error("PARAR without OptOutType opted out")
	}
}

// TestSafetyHelpWithoutHelpText: where Twilio answers HELP itself the study
// sets no help_text, and nudge answers with an empty <Response/> instead of
// a second reply.
func TestSafetyHelpWithoutHelpText(t *testing.T) {
	s := serve(t)
	s.env.Study.Config.Server.HelpText = ""
	status, _, answer := s.post(t, "/twilio/inbound", inbound(alice, "HELP"), publicURL+"/twilio/inbound")
	if status != 200 || !strings.Contains(answer, "<Response") || strings.Contains(answer, "<Message") {
		t.Fatalf("HELP without help_text: %d %q; want an empty Response", status, answer)
	}
	if n, _ := s.e.Store.InboundCount(s.ctx); n != 1 {
		t.Errorf("%d inbound texts stored, want 1", n)
	}
}
