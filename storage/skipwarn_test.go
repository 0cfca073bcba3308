package storage

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSafetyAuditListsEachSkipWithItsReason: a skipped participant enters
// the audit trail with the rule and the reason the first time a pass skips
// them, not again on every pass while the skip lasts, and again when it
// comes back after being forgotten.
func TestSafetyAuditListsEachSkipWithItsReason(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	t0 := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	skip := Skip{Digest: "d1", Project: "site_a", Rule: "welcome-sms", Record: "7", Reason: "no phone number in [mobile_phone]"}
	other := Skip{Digest: "d2", Project: "site_b", Rule: "diary", Record: "B-4", Event: "week_1_arm_1", Instance: 2,
		Reason: "template diary: no value for [diary_date]"}
	passes := []struct {
		at    time.Time
		skips []Skip
	}{
		{t0, []Skip{skip}},
		{t0.Add(15 * time.Minute), []Skip{skip, other}},
		{t0.Add(30 * time.Minute), []Skip{skip, other}},
		{t0.Add(30*time.Minute + 25*time.Hour), []Skip{skip}}, // forgotten, back again
	}
	for _, p := range passes {
		if _, err := s.FirstSkips(ctx, p.skips, p.at); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Audit(ctx, t0.Add(-time.Hour), t0.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range evs {
		if e.Kind == AuditSkipped {
			got = append(got, e.At.Sub(t0).String()+" "+e.Project+" "+e.Record+" "+e.Rule+" "+e.Detail)
		}
	}
	want := []string{
		"0s site_a 7 welcome-sms reason=no phone number in [mobile_phone]",
		"15m0s site_b B-4 diary event=week_1_arm_1 instance=2 reason=template diary: no value for [diary_date]",
		"25h30m0s site_a 7 welcome-sms reason=no phone number in [mobile_phone]",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("skips in the audit:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
