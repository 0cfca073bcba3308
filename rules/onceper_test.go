package rules

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

const oncePerHead = "timezone: America/Los_Angeles\nprojects:\n  - { name: main, redcap_url: https://redcap.example.edu/api/, token_env: T }\n" +
	"twilio: { account_sid_env: S, auth_token_env: A, from: \"+14155550100\" }\n"

// loadOncePer loads a study whose one rule has the given once_per line
// (line 7 of rules/r.yaml, the value at column 15).
func loadOncePer(t *testing.T, oncePer string) (*Study, string, error) {
	t.Helper()
	rule := "rules:\n  - name: visit\n    event: visit_arm_1\n    channel: sms\n    to: \"[mobile]\"\n    template: t\n" + oncePer + "\n"
	dir := writeFiles(t, map[string]string{"nudge.yaml": oncePerHead, "rules/r.yaml": rule, "templates/t.sms.txt": "Hi\n"})
	s, err := Load(filepath.Join(dir, "nudge.yaml"))
	return s, filepath.Join(dir, "rules", "r.yaml"), err
}

func TestOncePerDecode(t *testing.T) {
	for _, c := range []struct {
		line string
		want logic.Ref
	}{
		{`    once_per: "[visit_date]"`, logic.Ref{Field: "visit_date"}},
		{`    once_per: "[enrollment_arm_1][visit_date]"`, logic.Ref{Event: "enrollment_arm_1", Field: "visit_date"}},
	} {
		s, _, err := loadOncePer(t, c.line)
		if err != nil {
			t.Fatalf("%s: %v", c.line, err)
		}
		if got := s.Rule("visit").OncePer; got != c.want {
			t.Errorf("%s: OncePer = %+v, want %+v", c.line, got, c.want)
		}
		if f := s.Fields("main"); !contains(f, "visit_date") {
			t.Errorf("%s: Fields = %v; the once_per field must be exported", c.line, f)
		}
	}
	s, _, err := loadOncePer(t, "")
	if err != nil || s.Rule("visit").OncePer != (logic.Ref{}) {
		t.Errorf("without once_per: OncePer = %+v, %v; want none", s.Rule("visit").OncePer, err)
	}
}

func TestOncePerErrors(t *testing.T) {
	for _, c := range []struct{ line, want string }{
		{`    once_per: [visit_date]`, `:7:15: rule "visit": once_per: [visit_date] without quotes is a YAML list: quote it, once_per: "[visit_date]"`},
		{`    once_per: visit_date`, `:7:15: rule "visit": once_per: "visit_date" is not a single field reference: write the field in brackets, e.g. "[visit_date]"`},
		{`    once_per: "[a] [b]"`, `:7:15: rule "visit": once_per: "[a] [b]" is not a single field reference`},
	} {
		_, file, err := loadOncePer(t, c.line)
		if err == nil || !strings.HasPrefix(err.Error(), file+c.want) {
			t.Errorf("%s: Load error:\n%v\nwant it to start with\n%s%s", c.line, err, file, c.want)
		}
	}
}

// check names the once_per field a dictionary lacks, and where.
func TestOncePerCheckFields(t *testing.T) {
	const csv = "Variable / Field Name,Form Name,Section Header,Field Type,Field Label,\"Choices, Calculations, OR Slider Labels\",Field Note,Text Validation Type OR Show Slider Number\n" +
		"record_id,enrollment,,text,ID,,,\nmobile,enrollment,,text,Mobile,,,phone\nvisit_date,visit,,text,Visit,,,date_ymd\n"
	d, err := dict.ParseCSV(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := loadOncePer(t, `    once_per: "[visit_date]"`)
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.CheckFields(map[string]*dict.Dictionary{"main": d}); len(errs) != 0 {
		t.Errorf("CheckFields = %v, want none", errs)
	}
	s, file, err := loadOncePer(t, `    once_per: "[visit_dat]"`)
	if err != nil {
		t.Fatal(err)
	}
	want := file + `:7:15: rule "visit": once_per: unknown field [visit_dat] in project main (did you mean [visit_date]?): ` +
		"use a Variable / Field Name of the project's data dictionary"
	if errs := s.CheckFields(map[string]*dict.Dictionary{"main": d}); errs.Error() != want {
		t.Errorf("CheckFields:\n%v\nwant\n%s", errs, want)
	}
	if errs := s.CheckEvents("main", []string{"visit_arm_1"}); len(errs) != 0 {
		t.Errorf("CheckEvents = %v", errs)
	}
	s, file, _ = loadOncePer(t, `    once_per: "[enrolment_arm_1][visit_date]"`)
	if errs := s.CheckEvents("main", []string{"enrollment_arm_1", "visit_arm_1"}); len(errs) != 1 ||
		!strings.HasPrefix(errs.Error(), file+`:7:15: rule "visit": [enrolment_arm_1][visit_date]: unknown event 'enrolment_arm_1'`) {
		t.Errorf("CheckEvents = %v, want the once_per event named", errs)
	}
}

// The digest stands for the value, never shows it, and a blank value (or a
// missing-data code) stops the rule, naming the field.
func TestOncePerDigest(t *testing.T) {
	r := &Rule{OncePer: logic.Ref{Field: "visit_date"}}
	scope := func(v string) *Scope {
		rec := GroupRows("record_id", []map[string]string{exportRow("1", "-", "", "", "visit_date", v)})[0]
		return NewScope(rec, rec.Rows[0], time.Time{}, []string{"NA"})
	}
	a, reason := r.OncePerDigest(scope("2027-01-15"))
	if reason != "" || a == "" || strings.Contains(a, "2027") || len(a) != 16 {
		t.Fatalf("digest = %q, %q; want 16 hex digits without the value", a, reason)
	}
	if again, _ := r.OncePerDigest(scope(" 2027-01-15 ")); again != a {
		t.Errorf("digest of the same value = %q, want %q (stable)", again, a)
	}
	if b, _ := r.OncePerDigest(scope("2027-01-22")); b == a {
		t.Errorf("two values share the digest %q", a)
	}
	for _, v := range []string{"", "  ", "NA"} {
		if d, reason := r.OncePerDigest(scope(v)); d != "" || !strings.Contains(reason, "[visit_date] is blank") {
			t.Errorf("value %q: digest %q, reason %q; want none and the field named", v, d, reason)
		}
	}
	if d, reason := (&Rule{}).OncePerDigest(scope("")); d != "" || reason != "" {
		t.Errorf("no once_per: %q, %q; want nothing", d, reason)
	}
}
