package engine_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/storage"
)

// unhealthy checks that /healthz answers 503, says unhealthy and names the
// problem (want, in its words).
func (s *served) unhealthy(t *testing.T, want string) {
	t.Helper()
	h, status := s.health()
	if status != http.StatusServiceUnavailable || h.OK || h.Status != "unhealthy" ||
		!strings.Contains(strings.Join(h.Problems, "\n"), want) {
		t.Errorf("healthz %d ok=%v %s %q; want 503 unhealthy naming %q", status, h.OK, h.Status, h.Problems, want)
	}
}

// healthy checks that /healthz answers 200 healthy.
func (s *served) healthy(t *testing.T, when string) {
	t.Helper()
	h, status := s.health()
	if status != http.StatusOK || !h.OK || h.Status != "healthy" {
		t.Errorf("%s: healthz %d %s %q; want 200 healthy", when, status, h.Status, h.Problems)
	}
}

// run records a pass that started at start and ended with outcome after
// took ("" outcome = still running).
func (s *served) run(t *testing.T, start time.Time, took time.Duration, outcome string) {
	t.Helper()
	id, err := s.e.Store.StartRun(s.ctx, "run", start)
	if err != nil {
		t.Fatal(err)
	}
	if outcome != "" {
		if err := s.e.Store.FinishRun(s.ctx, id, start.Add(took), outcome, nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSafetyHealthzUnhealthyOnFailedPass: a failed last pass is a 503
// until a pass succeeds.
func TestSafetyHealthzUnhealthyOnFailedPass(t *testing.T) {
	s := serve(t)
	s.healthy(t, "at the start")
	s.run(t, s.clk.Now(), time.Second, "failed: REDCap answered 500")
	s.unhealthy(t, "the last pass failed")
	if h, _ := s.health(); strings.Contains(strings.Join(h.Problems, " "), "500") {
		t.Errorf("healthz publishes the error: %q", h.Problems)
	}
	s.clk.Advance(time.Minute)
	s.run(t, s.clk.Now(), time.Second, "ok")
	s.healthy(t, "after a successful pass")
}

// TestSafetyHealthzUnhealthyOnStuckPass: a pass running longer than
// max_pass_duration, and no successful pass for max_pass_age, are 503s.
func TestSafetyHealthzUnhealthyOnStuckPass(t *testing.T) {
	t.Run("running too long", func(t *testing.T) {
		s := serve(t)
		s.env.Study.Config.Server.Health.MaxPassDuration = 30 * time.Minute
		s.run(t, s.clk.Now(), 0, "")
		s.clk.Advance(29 * time.Minute)
		s.healthy(t, "a pass running for 29m")
		s.clk.Advance(2 * time.Minute)
		s.unhealthy(t, "a pass has been running for 31m0s, longer than server.health.max_pass_duration (30m0s)")
	})
	t.Run("no successful pass", func(t *testing.T) {
		s := serve(t)
		s.env.Study.Config.Server.Health.MaxPassAge = time.Hour
		s.clk.Advance(59 * time.Minute)
		s.healthy(t, "59m after the start, no pass yet")
		s.clk.Advance(2 * time.Minute)
		s.unhealthy(t, "no pass has succeeded since nudge started 1h1m0s ago")
		s.run(t, s.clk.Now(), 0, "ok")
		s.healthy(t, "after a successful pass")
		s.clk.Advance(61 * time.Minute)
		s.unhealthy(t, "no pass has succeeded for 1h1m0s")
	})
}

// TestSafetyHealthzUnhealthyOnPausedSender: a paused sender (Twilio
// refused the account) and the kill switch are 503s naming the pause.
func TestSafetyHealthzUnhealthyOnPausedSender(t *testing.T) {
	s := serve(t)
	now := s.clk.Now()
	if err := s.e.Store.PauseSender(s.ctx, storage.SenderPause{Sender: storage.AccountSender, Reason: "Twilio error 20003: check the token", Code: 20003, At: now, RetryAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	s.unhealthy(t, "the Twilio account is paused: Twilio error 20003")
	if err := s.e.Store.ResumeSender(s.ctx, storage.AccountSender); err != nil {
		t.Fatal(err)
	}
	s.healthy(t, "after the sender is resumed")
	if err := s.e.Store.SetPause(s.ctx, storage.Pause{Scope: storage.PauseAll, Reason: "IRB review", At: now}); err != nil {
		t.Fatal(err)
	}
	s.unhealthy(t, "all sending is paused: IRB review")
}

// TestSafetyHealthzUnhealthyOnOldDueMessage: a message due for longer than
// max_due_age and not sent is a 503; once sent, nudge is healthy again.
func TestSafetyHealthzUnhealthyOnOldDueMessage(t *testing.T) {
	s := serve(t)
	s.env.Study.Config.Server.Health.MaxDueAge = 30 * time.Minute
	s.env.Study.Config.Server.Health.MaxPassAge = 0
	s.enqueue(t, "welcome-sms")
	s.clk.Advance(29 * time.Minute)
	h, _ := s.health()
	if h.Queues["planned"] == 0 || h.OldestDueSeconds != (29*time.Minute).Seconds() {
		t.Fatalf("queues %v, oldest due %vs; want planned messages due for 29m", h.Queues, h.OldestDueSeconds)
	}
	s.healthy(t, "due for 29m")
	s.clk.Advance(2 * time.Minute)
	s.unhealthy(t, "a message has been due for 31m0s and is not sent, longer than server.health.max_due_age (30m0s)")
	if _, err := s.e.Dispatch(s.ctx); err != nil {
		t.Fatal(err)
	}
	s.healthy(t, "after the messages were sent")
}

// TestSafetyHealthzUnhealthyOnFailingWriteBacks: more failed write-backs
// than max_writeback_failures is a 503.
func TestSafetyHealthzUnhealthyOnFailingWriteBacks(t *testing.T) {
	s := serve(t)
	s.env.Study.Config.Server.Health.MaxWritebackFailures = 1
	fail := func(record string) {
		t.Helper()
		wb := storage.WriteBack{Project: "site_a", Record: record, Fields: map[string]string{"no_such_field": "1"}, CreatedAt: s.clk.Now()}
		if err := s.e.Store.EnqueueWriteBacks(s.ctx, []storage.WriteBack{wb}, nil); err != nil {
			t.Fatal(err)
		}
		pending, err := s.e.Store.PendingWriteBacks(s.ctx, "site_a", s.clk.Now(), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pending {
			if p.Record == record {
				if err := s.e.Store.FailWriteBacks(s.ctx, []storage.WriteBackRef{p.Ref()}, "no such field", s.clk.Now()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	fail("1")
	s.healthy(t, "one failed write-back, one allowed")
	fail("2")
	s.unhealthy(t, "2 write-backs to REDCap failed for good")
}

// TestSafetyServeAdminListen: with an admin listener (server.admin_listen),
// `nudge serve` answers /healthz and /metrics there and 404 on the public
// port, while the webhooks stay on the public port.
func TestSafetyServeAdminListen(t *testing.T) {
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.env.Study.Config.Server.PublicURL = publicURL
	f.env.Study.Config.Server.RunEvery = 0
	runServe(t, f.ctx, f.e, pub, engine.ServeOptions{AuthToken: demo.AuthToken, TriggerSecret: triggerSecret, Admin: adm})
	admin := &served{fixture: f, base: "http://" + adm.Addr().String()}
	admin.eventually(t, "the admin address answers /healthz", func() bool {
		h, status := admin.health()
		return status == http.StatusOK && h.REDCap == "ok"
	})
	get := func(url string) int {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	public := "http://" + pub.Addr().String()
	for _, path := range []string{"/healthz", "/metrics"} {
		if got := get(public + path); got != http.StatusNotFound {
			t.Errorf("public %s: %d, want 404", path, got)
		}
		if got := get(admin.base + path); got != http.StatusOK {
			t.Errorf("admin %s: %d, want 200", path, got)
		}
	}
	s := &served{fixture: f, base: public}
	if status, _, _ := s.post(t, "/twilio/inbound", inbound(alice, "HELP"), publicURL+"/twilio/inbound"); status != http.StatusOK {
		t.Errorf("inbound on the public port: %d", status)
	}
}
