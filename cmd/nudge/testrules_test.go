package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// testRules runs `nudge test rules` with files and returns its output and
// exit status.
func testRules(t *testing.T, files ...string) (string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := cmdTestRules(context.Background(), files, &out, &errOut)
	return out.String() + errOut.String(), exitCode(err, &errOut)
}

// The demo study's rule tests pass: what they expect is what the planner
// of `nudge run` decides over their records.
func TestTestRulesDemo(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(demoDir, "tests", "*.yaml"))
	if err != nil || len(files) < 2 {
		t.Fatalf("demo tests: %v %v", files, err)
	}
	out, code := testRules(t, files...)
	if code != 0 || strings.Count(out, "SUCCESS") != len(files) {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// writeTest writes a rule test file for the demo study beside a copy of it.
func writeTest(t *testing.T, body string) (path, dir string) {
	t.Helper()
	dir = copyStudy(t, nil)
	path = filepath.Join(dir, "tests", "t.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, dir
}

const anaAndBen = `config: ../nudge.yaml
records:
  site_a:
    - {record_id: "1", first_name: Ana, mobile_phone: "+14155550100", tz: America/New_York, sms_opt_in: "1",
       study_arm: "1", consent_given: "1", consent_complete: "2", consent_date: "2026-11-01", baseline_complete: "0"}
    - {record_id: "2", first_name: Ben, mobile_phone: "(510) 555-0101", tz: Pacific/Honolulu, sms_opt_in: "1",
       study_arm: "2", consent_given: "1", consent_complete: "2", consent_date: "2026-11-01", baseline_complete: "0"}
`

// A failing test prints, per moment, each expected message that was not
// planned with what was planned or decided instead, and each planned
// message that was not expected; the exit status is 1.
func TestTestRulesFailureDiff(t *testing.T) {
	path, _ := writeTest(t, anaAndBen+`tests:
  - name: wrong expectations
    rules: [welcome-sms]
    moments:
      - at: "2026-11-23 10:00"
        expect:
          - {rule: welcome-sms, record: "1", contains: "Hi Anna"}
          - {rule: welcome-sms, record: "3", contains: "Hi"}
      - at: "2026-11-23 12:00"
        expect:
          - {rule: welcome-sms, record: "1", contains: "Hi Ana"}
        not_sent:
          - {rule: welcome-sms, record: "2", outcome: excluded}
`)
	out, code := testRules(t, path)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		`FAILED:`,
		`moment 1 (at 2026-11-23 10:00 PST):`,
		`t.yaml:14:13: expected welcome-sms record 1 (sent now) containing "Hi Anna"`,
		`got welcome-sms record 1 (sms, sent now): "Hi Ana, welcome to Healthy Steps! You are in the Morning walks group.`,
		`expected welcome-sms record 3 (sent now) containing "Hi"`,
		`got no message: the rule was not evaluated on this row`,
		// Ben is in Honolulu (08:00 there): deferred, and not expected.
		`+ not expected: welcome-sms record 2 (sms, deferred to 2026-11-23 11:00): "Hi Ben,`,
		// Moment 2: Ana was messaged at moment 1, and that counts.
		`moment 2 (at 2026-11-23 12:00 PST):`,
		`got no message: done (already messaged (1 of 1))`,
		`expected welcome-sms record 2 not messaged (excluded), but got done (already messaged (1 of 1))`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// Mistakes in a test file are reported with FILE:LINE:COL, the valid keys
// and what to write, all at once; the exit status is 1.
func TestTestRulesFileErrors(t *testing.T) {
	path, _ := writeTest(t, anaAndBen+`tests:
  - name: mistakes
    rules: [no-such-rule]
    moments:
      - at: "2026-11-23 10:00"
        expect:
          - {rule: welcome-sms, record: "1", txt: "Hi"}
          - {rule: welcome-sms, record: "2", channel: fax}
      - at: "tomorrow"
`)
	out, code := testRules(t, path)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, re := range []string{
		`t\.yaml:14:46: unknown key "txt" in an expected message; valid keys: rule, record, event, instance, channel, text, contains, subject, deferred_to`,
		`t\.yaml:15:55: channel must be sms or email, not "fax"`,
		`t\.yaml:16:9: expect: is missing: list the messages expected at this moment, or write expect: none`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output lacks %s:\n%s", re, out)
		}
	}

	path, _ = writeTest(t, anaAndBen+`tests:
  - name: unknown rule
    rules: [no-such-rule]
    moments:
      - {at: "2026-11-23 10:00", expect: none}
`)
	if out, code := testRules(t, path); code != 1 || !strings.Contains(out, `t.yaml:9:5: test "unknown rule": no rule named "no-such-rule"`) {
		t.Errorf("exit %d\n%s", code, out)
	}
	path, _ = writeTest(t, anaAndBen+`tests:
  - name: bad time
    moments:
      - {at: "tomorrow", expect: none}
`)
	if out, code := testRules(t, path); code != 1 || !strings.Contains(out, `t.yaml:11:9: at: "tomorrow" is not a time like`) {
		t.Errorf("exit %d\n%s", code, out)
	}
	if _, code := testRules(t); code != 2 {
		t.Errorf("no file: exit %d, want 2", code)
	}
}

// Records given without a project belong to a study's only project; a
// study of several projects asks for them by project.
func TestTestRulesRecordsByProject(t *testing.T) {
	path, _ := writeTest(t, `config: ../nudge.yaml
records:
  - {record_id: "1"}
tests:
  - name: t
    moments:
      - {at: "2026-11-23 10:00", expect: none}
`)
	if out, code := testRules(t, path); code != 1 || !strings.Contains(out, "the study has 2 projects (site_a, site_b): give the records by project") {
		t.Errorf("exit %d\n%s", code, out)
	}
}

// TestSafetyTestRulesOffline: rule tests (and an offline preview) never
// write to the study's real database, need no REDCap token, Twilio or SMTP
// credentials, and reach no server: what they plan is only compared.
func TestSafetyTestRulesOffline(t *testing.T) {
	path, dir := writeTest(t, anaAndBen+`tests:
  - name: sends
    rules: [welcome-sms]
    moments:
      - at: "2026-11-23 10:00"
        expect:
          - {rule: welcome-sms, record: "1", contains: "Hi Ana"}
          - {rule: welcome-sms, record: "2", contains: "Hi Ben", deferred_to: "2026-11-23 11:00"}
`)
	for _, env := range []string{"NUDGE_DEMO_TOKEN_SITE_A", "NUDGE_DEMO_TOKEN_SITE_B", "NUDGE_DEMO_TWILIO_SID", "NUDGE_DEMO_TWILIO_TOKEN", "NUDGE_DEMO_SMTP_USER", "NUDGE_DEMO_SMTP_PASSWORD"} {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	if out, code := testRules(t, path); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	out, errOut, code := nudge(t, "preview", "--config", filepath.Join(dir, "nudge.yaml"), "--records", "site_a="+filepath.Join(dir, "redcap", "site_a.records.json"))
	if code != 0 {
		t.Fatalf("preview: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "demo.db")); !os.IsNotExist(err) {
		t.Errorf("the study's database was touched: %v", err)
	}
}

// A timed rule's test: at 09:59 the day before, the 10:00 text is not yet
// within the planning horizon; at 10:00 it is planned for 10:00 the next
// day; later moments find it queued, and after its expiry a missed one.
func TestTestRulesTimed(t *testing.T) {
	dir := copyStudy(t, map[string][][2]string{"rules/site_a.yaml": {{"rules:\n", `rules:
  - name: quit-support
    when: "[consent_given] = '1'"
    channel: sms
    to: "[mobile_phone]"
    template: baseline-reminder
    start: { field: "[baseline_date]", days: [7, 14], at: "10:00" }
`}}})
	path := filepath.Join(dir, "tests", "t.yaml")
	body := `config: ../nudge.yaml
records:
  site_a:
    - {record_id: "1", first_name: Ana, mobile_phone: "+14155550100", sms_opt_in: "1",
       consent_given: "1", baseline_date: "2027-03-01"}
tests:
  - name: quit texts at 10:00
    rules: [quit-support]
    moments:
      - at: "2027-03-07 09:59"
        expect: none
        not_sent:
          - {rule: quit-support, record: "1", outcome: done, reason: "next: occurrence 1 of 2, due 2027-03-08 10:00 PST"}
      - at: "2027-03-07 10:00"
        expect:
          - {rule: quit-support, record: "1", deferred_to: "2027-03-08 10:00"}
      - at: "2027-03-08 09:00"
        expect: none
        not_sent:
          - {rule: quit-support, record: "1", outcome: done, reason: "occurrence 1 of 2, due 2027-03-08 10:00 PST, is queued"}
      - at: "2027-03-15 13:00"
        expect: none
        not_sent:
          - {rule: quit-support, record: "1", outcome: skipped, reason: "missed: occurrence 2 of 2, due 2027-03-15 10:00 PDT"}
`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := testRules(t, path)
	if code != 0 || !strings.Contains(out, "SUCCESS") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}
