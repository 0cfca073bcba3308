package webhook_test

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/nudge-study/nudge/engine/webhook"
)

func det() url.Values {
	return url.Values{"redcap_url": {"https://redcap.example.edu/"}, "project_id": {"1001"}, "record": {"17"},
		"instrument": {"bp"}, "bp_complete": {"2"}, "username": {"coordinator"}}
}

// TestSafetyTriggerNeedsSecret: a Data Entry Trigger reaches the engine only
// when its URL carries the configured secret; without a configured secret
// every trigger is refused. Refusals never show the secret in the log.
func TestSafetyTriggerNeedsSecret(t *testing.T) {
	const wrong = "not-the-secret-but-long-enough"
	tests := []struct {
		name   string
		secret string // configured
		target string
		body   url.Values
		want   int
	}{
		{"right secret", triggerSecret, triggerPath, det(), http.StatusOK},
		{"no secret in the URL", triggerSecret, "/redcap/trigger", det(), http.StatusForbidden},
		{"empty secret", triggerSecret, "/redcap/trigger?secret=", det(), http.StatusForbidden},
		{"wrong secret", triggerSecret, "/redcap/trigger?secret=" + wrong, det(), http.StatusForbidden},
		{"secret as a prefix", triggerSecret, "/redcap/trigger?secret=" + triggerSecret[:10], det(), http.StatusForbidden},
		{"secret twice", triggerSecret, triggerPath + "&secret=" + wrong, det(), http.StatusForbidden},
		{"secret in the body only", triggerSecret, "/redcap/trigger", func() url.Values { p := det(); p.Set("secret", triggerSecret); return p }(), http.StatusForbidden},
		{"nothing configured, no secret", "", "/redcap/trigger", det(), http.StatusForbidden},
		{"nothing configured, any secret", "", "/redcap/trigger?secret=" + wrong, det(), http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *webhook.Config) { c.TriggerSecret = tt.secret })
			r := e.do(http.MethodPost, tt.target, formType, strings.NewReader(tt.body.Encode()), nil)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if got, want := len(e.fake.Triggers()), map[bool]int{true: 1, false: 0}[tt.want == http.StatusOK]; got != want {
				t.Errorf("the engine got %d triggers, want %d", got, want)
			}
			out := e.log.String()
			for _, s := range []string{triggerSecret, wrong, "secret="} {
				if strings.Contains(out, s) {
					t.Errorf("the log shows %q:\n%s", s, out)
				}
			}
			if tt.want == http.StatusForbidden && !strings.Contains(out, "refused a Data Entry Trigger") {
				t.Errorf("the refusal is not logged:\n%s", out)
			}
		})
	}
}

// TestSafetyTriggerSecretTooShort: a guessable secret is refused at start.
func TestSafetyTriggerSecretTooShort(t *testing.T) {
	_, err := webhook.New(webhook.Config{PublicURL: publicURL, AuthToken: authToken, TriggerSecret: "redcap"}, newFake())
	if err == nil || !strings.Contains(err.Error(), "at least 16") || strings.Contains(err.Error(), "redcap") {
		t.Errorf("error %v, want one asking for at least 16 characters without showing the secret", err)
	}
}

// TestSafetyTriggerRateLimited: beyond the burst, triggers get 429 and do
// not reach the engine, whether or not they carry the secret.
func TestSafetyTriggerRateLimited(t *testing.T) {
	e := newEnv(t, func(c *webhook.Config) { c.TriggerRate, c.TriggerBurst = rate.Every(time.Hour), 3 })
	for i := 0; i < 3; i++ {
		if r := e.do(http.MethodPost, triggerPath, formType, strings.NewReader(det().Encode()), nil); r.status != http.StatusOK {
			t.Fatalf("trigger %d: status %d", i+1, r.status)
		}
	}
	for _, target := range []string{triggerPath, "/redcap/trigger?secret=forged-forged-forged"} {
		r := e.do(http.MethodPost, target, formType, strings.NewReader(det().Encode()), nil)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
			t.Errorf("beyond the burst: status %d (Retry-After %q), want 429", r.status, r.header.Get("Retry-After"))
		}
	}
	if n := len(e.fake.Triggers()); n != 3 {
		t.Errorf("the engine got %d triggers, want 3", n)
	}
}

// TestSafetyHealthzHidesInternalErrors: /healthz says healthy or unhealthy
// in plain words; the health check's own error (a path, a host, SQLite's
// message) goes to the log only.
func TestSafetyHealthzHidesInternalErrors(t *testing.T) {
	e := newEnv(t)
	e.fake.health = webhook.Health{OK: true, Database: "unreachable: open /var/lib/nudge/nudge.db: disk I/O error"}
	e.fake.healthErr = errors.New("depths: open /var/lib/nudge/nudge.db: database is locked (redcap.example.edu)")
	r := e.do(http.MethodGet, "/healthz", "", nil, nil)
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", r.status)
	}
	for _, leak := range []string{"/var/lib", "nudge.db", "locked", "redcap.example.edu", "I/O"} {
		if strings.Contains(r.body, leak) {
			t.Errorf("/healthz publishes %q: %s", leak, r.body)
		}
	}
	if !strings.Contains(r.body, `"status":"unhealthy"`) || !strings.Contains(r.body, "the health check failed") {
		t.Errorf("/healthz does not say unhealthy and why: %s", r.body)
	}
	if !strings.Contains(e.log.String(), "database is locked") {
		t.Error("the detail is not in the log")
	}
}

// TestSafetyInboundOptOutType: Twilio's OptOutType reaches the engine, so a
// custom opt-out keyword counts.
func TestSafetyInboundOptOutType(t *testing.T) {
	e := newEnv(t)
	p := inboundParams("SM42", "PARAR")
	p.Set("OptOutType", "stop")
	if r := e.signedPost("/twilio/inbound", p, publicURL+"/twilio/inbound"); r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	if in, ok := e.fake.Got("SM42"); !ok || in.OptOutType != "STOP" {
		t.Errorf("OptOutType %q, want STOP", in.OptOutType)
	}
}
