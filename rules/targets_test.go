package rules

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestSafetyWriteTargetsCheckedOffline: every field nudge writes is checked
// before the first pass — it exists, can be written, and can hold what
// nudge writes — with FILE:LINE:COL and what to do. Targets that can hold
// nudge's values (a datetime_ymd sent_at, a status dropdown with the
// statuses as codes) pass.
func TestSafetyWriteTargetsCheckedOffline(t *testing.T) {
	s, err := Load(filepath.Join("testdata", "write-targets", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	errs := s.CheckFields(loadDicts(t, s.Config))
	got := errs.Error()
	r := "testdata/write-targets/rules/r.yaml"
	want := []string{
		r + `:7:27: rule "impossible": write_back.status: [st_int] is a text (integer) field and cannot hold a status`,
		r + `:7:40: rule "impossible": write_back.sid: [sid_date] is a text (date_ymd) field and cannot hold a message id`,
		r + `:7:59: rule "impossible": write_back.sent_at: [sent_int] is a text (number) field and cannot hold a time`,
		r + `:7:76: rule "impossible": write_back.error: [err_yesno] is a yesno field and cannot hold an error code`,
		r + `:12:27: rule "choices": write_back.status: [st_yesno_dd] is a dropdown field without the statuses queued, sending, sent, delivered, undelivered, failed among its codes`,
		r + `:23:27: rule "diary": write_back.status: [st_text] is on the instrument messaging, but the rule writes to instances of diary`,
		r + `:27:12: set: [consent_pdf] is a file field and cannot be written`,
		r + `:27:30: set.age: 'abc' is not a valid integer value for [age]`,
		`testdata/write-targets/nudge.yaml:7:38: opt_out.value: 'no' is not a valid integer value for [sms_ok]`,
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("missing error:\n  %s\ngot:\n%s", w, got)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("%d errors, want %d:\n%s", len(errs), len(want), got)
	}
	for _, e := range errs {
		if e.Rule == "fine" || strings.Contains(e.Msg, "diary_sent_at") {
			t.Errorf("a writable target was refused: %v", e)
		}
	}
}

// TestSafetyWriteEventsDesignated: in a longitudinal project, a field nudge
// writes must be on an instrument designated for the event it is written
// to (REDCap's formEventMapping), or REDCap refuses the import.
func TestSafetyWriteEventsDesignated(t *testing.T) {
	s, err := Load(filepath.Join("testdata", "write-targets", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d := loadDicts(t, s.Config)["main"]
	s.Rules[2].Event = "week_1_arm_1" // "fine": its fields are on messaging
	s.Replies[0].Event = "week_1_arm_1"
	designated := map[string][]string{
		"enrollment_arm_1": {"enrollment"},
		"week_1_arm_1":     {"diary", "messaging"},
	}
	s.Rules[0].Event = "enrollment_arm_1" // "impossible": messaging is not designated there
	errs := s.CheckWriteEvents("main", d, designated)
	got := errs.Error()
	for _, w := range []string{
		`rule "impossible": write_back.status: [st_int] is on the instrument messaging, which is not designated for the event enrollment_arm_1`,
		`set: [age] is on the instrument enrollment, which is not designated for the event week_1_arm_1`,
		`opt_out.field: [sms_ok] is on the instrument enrollment, which is not designated for the event week_1_arm_1 (where the participants' phone numbers are)`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing error:\n  %s\ngot:\n%s", w, got)
		}
	}
	if strings.Contains(got, `rule "fine"`) {
		t.Errorf("a designated target was refused:\n%s", got)
	}
	if errs := s.CheckWriteEvents("main", d, nil); len(errs) != 0 {
		t.Errorf("a classic project: %v", errs)
	}
}
