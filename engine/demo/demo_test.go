package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/storage"
)

var studyDir = filepath.Join("..", "..", "testdata", "demo")

// start runs the demo study on a fake clock that starts at StudyTime, so
// pacing and delivery reports take no real time.
func start(t *testing.T, db string, log logrus.FieldLogger) *Env {
	t.Helper()
	env, err := Start(Options{Dir: studyDir, DBPath: db, Clock: sms.NewFakeClock(StudyTime), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env
}

func pass(t *testing.T, env *Env) *Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sum, err := env.Pass(ctx, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

func TestDemoEndToEnd(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	env := start(t, db, nil)
	sum := pass(t, env)

	totalSent := 0
	smsRules := 0
	for _, r := range sum.Rules {
		totalSent += r.Sent
		if r.Channel != "sms" || env.Study.Rule(r.Name).OnSave {
			continue
		}
		smsRules++
		if r.Sent == 0 {
			t.Errorf("rule %s sent nothing", r.Name)
		}
		if r.Sent != r.Delivered+r.Undelivered+r.Failed+r.Review {
			t.Errorf("rule %s: sent %d != delivered %d + undelivered %d + failed %d + review %d", r.Name, r.Sent, r.Delivered, r.Undelivered, r.Failed, r.Review)
		}
	}
	if smsRules < 2 {
		t.Fatalf("want at least 2 SMS rules in the demo, got %d", smsRules)
	}
	// Each fallback email (an SMS rule's email to a participant without a
	// number that can get texts) is marked reported too, with its text's
	// outcome left to the text.
	if sum.Emails.Fallback == 0 {
		t.Errorf("the demo sent no fallback email: %+v", sum.Emails)
	}
	totalSent += sum.Emails.Fallback
	if sum.WrittenBack != totalSent {
		t.Errorf("written back %d, want every message sent (%d)", sum.WrittenBack, totalSent)
	}
	if sum.Emails.Sent == 0 || sum.Emails.ReceivedBySMTP != sum.Emails.Sent {
		t.Errorf("emails: sent %d, received by SMTP %d", sum.Emails.Sent, sum.Emails.ReceivedBySMTP)
	}
	if sum.Duplicates != 0 {
		t.Errorf("duplicates = %d", sum.Duplicates)
	}
	if len(sum.Pacing) < 2 {
		t.Errorf("want two sending numbers, got %+v", sum.Pacing)
	}
	for _, p := range sum.Pacing {
		// On the fake clock the Twilio simulator sees the pacer's schedule
		// exactly: no two creates closer than 1/0.95 s.
		if p.RatePerSecond >= 1 || p.MinIntervalS < 1/p.RatePerSecond || p.MinIntervalS < 1/p.ConfiguredRate-0.001 {
			t.Errorf("pacing %s: peak rate %.3f/s, min interval %.3f s, configured %.2f/s", p.From, p.RatePerSecond, p.MinIntervalS, p.ConfiguredRate)
		}
	}
	// Some participants must be skipped with a reason the coordinator can act on.
	reasons := map[string]bool{}
	for _, s := range sum.Skips {
		for _, want := range []string{"invalid phone number", "no phone number", "no value for", "invalid email address"} {
			if strings.Contains(s.Reason, want) {
				reasons[want] = true
			}
		}
	}
	if len(reasons) != 4 {
		t.Errorf("skip reasons seen: %v; skips: %+v", reasons, sum.Skips)
	}

	// The statuses really are in REDCap: export them again from the
	// simulator and compare with the outbox.
	checked := 0
	for _, p := range env.Study.Config.Projects {
		byKey := map[string]map[string]string{}
		for _, row := range env.REDCap.Export(env.tokens[p.Name]) {
			id := row[env.Engine.Dicts[p.Name].RecordID()]
			byKey[id+"|"+row["redcap_event_name"]+"|"+row["redcap_repeat_instance"]] = row
		}
		for _, r := range env.Study.Rules {
			if r.Project != p.Name || r.WriteBack.Status == "" {
				continue
			}
			msgs := messagesOf(t, env, r.Name)
			for _, m := range msgs {
				if m.Channel != r.Channel {
					continue // a fallback email: only the text's outcome is written back
				}
				inst := ""
				if m.Instance > 0 {
					inst = strconv.Itoa(m.Instance)
				}
				row := byKey[m.Record+"|"+m.Event+"|"+inst]
				if row == nil {
					t.Errorf("%s: no REDCap row for record %s event %q instance %q", r.Name, m.Record, m.Event, inst)
					continue
				}
				if got := row[r.WriteBack.Status]; got != m.Status {
					t.Errorf("%s record %s: REDCap %s = %q, outbox status %q", r.Name, m.Record, r.WriteBack.Status, got, m.Status)
				}
				if r.WriteBack.SID != "" && row[r.WriteBack.SID] != m.SID {
					t.Errorf("%s record %s: REDCap %s = %q, outbox SID %q", r.Name, m.Record, r.WriteBack.SID, row[r.WriteBack.SID], m.SID)
				}
				checked++
			}
		}
	}
	if want := totalSent - sum.Emails.Fallback; checked != want {
		t.Errorf("checked %d written-back rows in REDCap, want %d", checked, want)
	}

	// A second pass on the same database sends nothing new.
	again := pass(t, env)
	for _, r := range again.Rules {
		if r.Sent != 0 {
			t.Errorf("second pass: rule %s sent %d", r.Name, r.Sent)
		}
	}
	before := len(env.Twilio.Creates())
	env.Close()

	// Nor does a fresh demo (new simulators) on the same database file.
	env2 := start(t, db, nil)
	third := pass(t, env2)
	for _, r := range third.Rules {
		if r.Sent != 0 {
			t.Errorf("new process, same database: rule %s sent %d", r.Name, r.Sent)
		}
	}
	if n := len(env2.Twilio.Creates()); n != 0 || before == 0 {
		t.Errorf("creates: first demo %d, second demo %d (want >0 then 0)", before, n)
	}
}

// TestLogsRedacted runs the demo with info-level JSON logs and checks that no
// log line holds a full phone number, an API token or a message body.
func TestLogsRedacted(t *testing.T) {
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	log.SetLevel(logrus.InfoLevel)
	log.SetFormatter(&logrus.JSONFormatter{})
	env := start(t, filepath.Join(t.TempDir(), "demo.db"), log)
	pass(t, env)
	out := buf.String()
	for _, want := range []string{`"msg":"sms sent"`, `"msg":"participant skipped"`, `"reason":"invalid phone number in [mobile_phone]`} {
		if !strings.Contains(out, want) {
			t.Fatalf("expected a log line with %s, got:\n%.2000s", want, out)
		}
	}
	var secrets []string
	for _, tok := range env.tokens {
		secrets = append(secrets, tok)
	}
	secrets = append(secrets, AuthToken)
	for _, c := range env.Twilio.Creates() {
		secrets = append(secrets, c.To, strings.TrimPrefix(c.To, "+1"), c.Body)
	}
	for _, m := range env.SMTP.Messages() {
		secrets = append(secrets, m.To...)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(out, s) {
			t.Errorf("log output contains %q", s)
		}
	}
	// Every line is valid JSON (structured fields, not interpolated text).
	digits := regexp.MustCompile(`\d{7,}`)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("not a JSON log line: %q", line)
		}
		if d := digits.FindString(line); d != "" && !strings.Contains(line, `"sid"`) && !strings.Contains(line, `"time"`) {
			t.Errorf("log line holds a long digit run %q: %s", d, line)
		}
	}
}

func messagesOf(t *testing.T, env *Env, rule string) []storage.Message {
	t.Helper()
	all, err := env.Engine.Store.ByRule(context.Background(), rule)
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.Message
	for _, m := range all {
		if m.State != storage.StatePlanned && m.State != storage.StateSkipped {
			out = append(out, m)
		}
	}
	return out
}
