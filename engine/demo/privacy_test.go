package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/metrics"
)

// piiNeedles reads the demo's REDCap records and returns every value no
// log line, metric or error text may hold: each phone number as written,
// in E.164 and as ten digits, each email address, and each name (matched
// as a whole word).
func piiNeedles(t *testing.T) (plain []string, names []string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(studyDir, "redcap", "*.records.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("demo records: %v", err)
	}
	nonDigit := regexp.MustCompile(`\D`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var rows []map[string]string
		if err := json.Unmarshal(b, &rows); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			for field, v := range r {
				if v == "" {
					continue
				}
				switch field {
				case "mobile_phone", "cell":
					plain = append(plain, v)
					d := nonDigit.ReplaceAllString(v, "")
					switch {
					case len(d) == 10:
						plain = append(plain, "+1"+d, d)
					case len(d) == 11 && d[0] == '1':
						plain = append(plain, "+"+d, d[1:])
					}
				case "email":
					plain = append(plain, v)
				case "first_name", "last_name", "given_name":
					names = append(names, v)
				}
			}
		}
	}
	return plain, names
}

// TestSafetyNoPIIInLogs runs the demo with debug logs, then texts from
// participants (a reply, STOP, free text) and more passes, and checks that
// no log line, /metrics label or error text a coordinator sees holds a
// phone number, an email address, a participant's name, a message body or
// a secret.
func TestSafetyNoPIIInLogs(t *testing.T) {
	var logs bytes.Buffer
	log := logrus.New()
	log.SetOutput(&logs)
	log.SetLevel(logrus.DebugLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	env := start(t, filepath.Join(t.TempDir(), "demo.db"), log)
	m := metrics.New(env.Engine.Stats)
	env.Engine.Instrument(m)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	sum := pass(t, env)
	// Participants text in: a free text, STOP, HELP, and an answer to a
	// reply rule; each is stored, handled and answered.
	creates := env.Twilio.Creates()
	if len(creates) < 3 {
		t.Fatalf("the demo sent %d texts", len(creates))
	}
	var inbound []string
	for i, body := range []string{"my diary is done, thank you", "STOP", "HELP", "yes"} {
		c := creates[i%len(creates)]
		in := engine.InboundSMS{MessageSID: "SM" + strings.Repeat(string(rune('a'+i)), 32), From: c.To, To: c.From, Body: body}
		reply, err := env.Engine.HandleInbound(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		inbound = append(inbound, body, reply)
	}
	env.Engine.Clock.(interface{ Advance(time.Duration) }).Advance(time.Hour)
	sum2 := pass(t, env)

	// What a coordinator reads: the logs, the demo's summaries, /metrics
	// and every stored reason and error.
	var seen strings.Builder
	seen.Write(logs.Bytes())
	for _, s := range []*Summary{sum, sum2} {
		b, _ := json.Marshal(s)
		seen.Write(b)
		seen.WriteByte('\n')
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	seen.Write(rec.Body.Bytes())
	var bodies []string
	for _, r := range env.Study.Rules {
		ms, err := env.Engine.Store.ByRule(ctx, r.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			seen.WriteString(m.Reason + "\n")
			bodies = append(bodies, m.Body, m.Subject)
		}
	}
	out := seen.String()
	if !strings.Contains(out, `"level":"debug"`) || !strings.Contains(out, `"msg":"sms sent"`) {
		t.Fatalf("the demo logged no debug or send lines:\n%.2000s", out)
	}

	plain, names := piiNeedles(t)
	for _, tok := range env.tokens {
		plain = append(plain, tok)
	}
	plain = append(plain, env.authToken)
	for _, c := range env.Twilio.Creates() {
		plain = append(plain, c.Body)
	}
	for _, r := range env.SMTP.Messages() {
		plain = append(plain, r.To...)
		plain = append(plain, strings.TrimSpace(r.Text), r.Subject)
	}
	plain = append(plain, bodies...)
	for _, s := range inbound {
		if len(s) > 4 { // "yes", "STOP", "HELP" are words logs may say
			plain = append(plain, s)
		}
	}
	reported := map[string]bool{}
	for _, s := range plain {
		if s = strings.TrimSpace(s); s != "" && !reported[s] && strings.Contains(out, s) {
			reported[s] = true
			t.Errorf("a log line, metric or error text holds %q:\n%s", s, lineWith(out, s))
		}
	}
	for _, n := range names {
		re := regexp.MustCompile(`\b` + regexp.QuoteMeta(n) + `\b`)
		if loc := re.FindStringIndex(out); loc != nil && !reported[n] {
			reported[n] = true
			t.Errorf("a log line, metric or error text holds the name %q:\n%s", n, lineWith(out, n))
		}
	}
}

// lineWith returns the first line of out that holds s.
func lineWith(out, s string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
