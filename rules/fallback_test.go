package rules

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/rules/dict"
)

// fallbackStudy writes a study whose sms rule falls back to email, with a
// data dictionary where email_plain is a text field without validation.
func fallbackStudy(t *testing.T, fallback string, files map[string]string) *Study {
	t.Helper()
	dir := t.TempDir()
	all := map[string]string{
		"nudge.yaml": `timezone: America/Los_Angeles
study: Walk Study
projects:
  - name: main
    redcap_url: https://redcap.example.edu/api/
    token_env: REDCAP_TOKEN_MAIN
twilio: { account_sid_env: TWILIO_ACCOUNT_SID, auth_token_env: TWILIO_AUTH_TOKEN, from: "+14155550100" }
smtp: { host: smtp.example.edu, port: 587, from: "Study <study@example.edu>" }
`,
		"rules/r.yaml":             "rules:\n  - name: remind\n    channel: sms\n    to: \"[mobile_phone]\"\n    template: remind\n    fallback: " + fallback + "\n",
		"templates/remind.sms.txt": "Hi [first_name], time for your survey.\n",
	}
	for k, v := range files {
		all[k] = v
	}
	for name, text := range all {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Load(filepath.Join(dir, "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fallbackDict(t *testing.T) map[string]*dict.Dictionary {
	t.Helper()
	csv := `"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number"
record_id,enrollment,,text,"Record ID",,,
first_name,enrollment,,text,"First name",,,
mobile_phone,enrollment,,text,"Mobile phone",,,phone
email,enrollment,,text,"Email",,,email
email_plain,enrollment,,text,"Email (no validation)",,,
visit_date,enrollment,,text,"Visit",,,date_ymd
`
	d, err := dict.ParseCSV(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*dict.Dictionary{"main": d}
}

// TestFallbackLoads: the email of a fallback is the rule's template's
// .email.txt when there is one, else the SMS text under fallback.subject or
// the study's default subject; on defaults to every reason; the fallback's
// fields are exported and checked, an unvalidated to field is a warning,
// and a phone field as fallback.to an error.
func TestFallbackLoads(t *testing.T) {
	s := fallbackStudy(t, `{ to: "[email]" }`, nil)
	r := s.Rule("remind")
	f := r.Fallback
	if f == nil || f.Email == nil || !slices.Equal(f.On, FallbackReasons) {
		t.Fatalf("fallback %+v, want one on every reason", f)
	}
	if got := f.Email.Subject.Source(); got != "A message from Walk Study" {
		t.Errorf("default subject %q", got)
	}
	if f.Email.Text != r.SMS.Body {
		t.Error("without an email template the email is not the SMS text")
	}
	fr := r.FallbackRule()
	if fr.Channel != ChannelEmail || fr.To != f.To || fr.WriteBack != (WriteBack{}) || fr.Fallback != nil || r.Channel != ChannelSMS {
		t.Errorf("fallback rule %+v", fr)
	}
	if !s.Uses(ChannelEmail) || !slices.Contains(s.Fields("main"), "email") {
		t.Error("the fallback's email field is not used or not exported")
	}
	if errs := s.CheckFields(fallbackDict(t)); len(errs) != 0 {
		t.Errorf("field errors: %v", errs)
	}

	s = fallbackStudy(t, `{ to: "[email]", subject: "Your visit on [visit_dat]", on: [undelivered] }`, nil)
	errs := s.CheckFields(fallbackDict(t))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "r.yaml:6:") || !strings.Contains(errs[0].Msg, "[visit_dat]") {
		t.Errorf("subject with an unknown field: %v", errs)
	}
	if f := s.Rule("remind").Fallback; !slices.Equal(f.On, []string{FallbackUndelivered}) {
		t.Errorf("on = %v", f.On)
	}

	s = fallbackStudy(t, `{ to: "[email_plain]" }`, map[string]string{
		"templates/remind.email.txt": "Subject: Survey for [first_name]\n\nHi [first_name], the survey waits.\n"})
	if f := s.Rule("remind").Fallback; f.Template != "remind" || f.Email.Text.Source() != "Hi [first_name], the survey waits." {
		t.Errorf("the same name's email template was not used: %+v", f)
	}
	if w := s.FallbackWarnings(fallbackDict(t)); len(w) != 1 || !w[0].Warning || !strings.Contains(w[0].Msg, "not validated as email") {
		t.Errorf("warnings %v", w)
	}

	s = fallbackStudy(t, `{ to: "[mobile_phone]" }`, nil)
	if errs := s.CheckFields(fallbackDict(t)); len(errs) != 1 || !strings.Contains(errs[0].Msg, "fallback.to: [mobile_phone] is validated as phone") {
		t.Errorf("phone field as fallback.to: %v", errs)
	}
}
