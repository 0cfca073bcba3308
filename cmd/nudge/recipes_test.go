package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recipesDir holds the ready-made study recipes (testdata/recipes).
var recipesDir = filepath.Join("..", "..", "testdata", "recipes")

// Every recipe passes `nudge check` with no error and no warning, and its
// rule tests pass: the protocols they implement are proven by the same
// code path as `nudge run`.
func TestRecipes(t *testing.T) {
	configs, err := filepath.Glob(filepath.Join(recipesDir, "*", "nudge.yaml"))
	if err != nil || len(configs) < 3 {
		t.Fatalf("recipes: %v %v", configs, err)
	}
	for _, cfg := range configs {
		name := filepath.Base(filepath.Dir(cfg))
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := cmdCheck([]string{"--config", cfg}, &out, &errOut)
			if code := exitCode(err, &errOut); code != 0 || strings.Contains(out.String(), "warning") {
				t.Fatalf("nudge check --config %s: exit %d\n%s%s", cfg, code, out.String(), errOut.String())
			}
			files, err := filepath.Glob(filepath.Join(filepath.Dir(cfg), "tests", "*.yaml"))
			if err != nil || len(files) == 0 {
				t.Fatalf("recipe %s has no rule tests: %v", name, err)
			}
			got, code := testRules(t, files...)
			if code != 0 || strings.Count(got, "SUCCESS") != len(files) {
				t.Fatalf("exit %d\n%s", code, got)
			}
		})
	}
}

// A timed rule's texts keep the study's caps when they are planned: two
// participants sharing a phone number, both due at the same 10:00, get one
// text between them that day (before, both were planned "sent now" and
// only the dispatcher held the second back, so preview and rule tests
// showed two texts).
func TestSafetyTimedRulePlansWithinCaps(t *testing.T) {
	dir := t.TempDir()
	test := `config: ` + filepath.Join(mustAbs(t, recipesDir), "smoking-cessation", "nudge.yaml") + `
records:
  - {record_id: "1", first_name: Ada, mobile_phone: "+14155550111", consent_given: "1", sms_opt_in: "1", quit_date: "2027-05-01"}
  - {record_id: "2", first_name: Ben, mobile_phone: "+14155550111", consent_given: "1", sms_opt_in: "1", quit_date: "2027-05-01"}
tests:
  - name: one text a day to one number
    moments:
      - at: "2027-05-08 10:00"
        expect: [{rule: quit-followup, record: "1"}]
        not_sent: [{rule: quit-followup, record: "2", outcome: skipped, reason: "cap reached: 1 text a day"}]
`
	path := filepath.Join(dir, "caps.yaml")
	if err := os.WriteFile(path, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := testRules(t, path); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

// The email that stands in for a timed rule's text (no phone number) is
// the email template, with its subject and the survey link, for every
// prompt and reminder; each has its own /email key, so the next pass
// plans none of them again (before, the survey-link pass rendered the
// SMS text with no subject, and the later occurrences were stored under
// the texts' keys while the first was planned again at every pass).
func TestSafetyTimedFallbackEmail(t *testing.T) {
	dir := t.TempDir()
	test := `config: ` + filepath.Join(mustAbs(t, recipesDir), "ema-diary", "nudge.yaml") + `
records:
  - {record_id: "3", first_name: Mo, mobile_phone: "", email: mo@example.org, consent_given: "1", sms_opt_in: "1", ema_start: "2027-03-01"}
tests:
  - name: emails instead of texts
    moments:
      - at: "2027-03-01 13:00"
        expect:
          - {rule: ema-prompt, record: "3", instance: 2, channel: email, deferred_to: "2027-03-01 14:00", subject: "Daily Moods: prompt 2 of 42", contains: "Hi Mo,"}
          - {rule: ema-prompt, record: "3", instance: 2, channel: email, deferred_to: "2027-03-01 14:30", subject: "Daily Moods: prompt 2 of 42"}
          - {rule: ema-prompt, record: "3", instance: 3, channel: email, deferred_to: "2027-03-01 19:00", subject: "Daily Moods: prompt 3 of 42"}
          - {rule: ema-prompt, record: "3", instance: 3, channel: email, deferred_to: "2027-03-01 19:30"}
          - {rule: ema-prompt, record: "3", instance: 4, channel: email, deferred_to: "2027-03-02 09:00"}
          - {rule: ema-prompt, record: "3", instance: 4, channel: email, deferred_to: "2027-03-02 09:30"}
      - at: "2027-03-01 13:30"
        expect: none
`
	path := filepath.Join(dir, "fallback.yaml")
	if err := os.WriteFile(path, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := testRules(t, path); code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
