package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules"
)

// zoneStudy copies the demo study (whose enrollment form, contact, holds
// the tz field) into a temporary directory with Pacific/Honolulu for B-007, and
// the diary reminder's window from 09:00 to 21:00 reading the zone as
// window (e.g. `timezone_field: tz`); config, when given, replaces
// site_b's timezone_field line in nudge.yaml. edit, when given, changes the REDCap structure file.
func zoneStudy(t *testing.T, window, config string, edit func(st map[string]any)) string {
	t.Helper()
	dir := t.TempDir()
	copyDemo(t, dir)
	replace := func(rel, old, new string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), old) {
			t.Fatalf("%s does not hold %q", rel, old)
		}
		if err := os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	replace("redcap/site_b.records.json", `"cell": "+14155550156",`, `"cell": "+14155550156", "tz": "Pacific/Honolulu",`)
	replace("rules/site_b.yaml", `window: { from: "08:00", to: "21:00" }`, `window: { from: "09:00", to: "21:00"`+window+` }`)
	if config != "" {
		replace("nudge.yaml", `    timezone_field: "[enrollment_arm_1][tz]"`, config)
	}
	if edit != nil {
		p := filepath.Join(dir, "redcap", "site_b.structure.json")
		var st map[string]any
		data, err := os.ReadFile(p)
		if err == nil {
			err = json.Unmarshal(data, &st)
		}
		if err != nil {
			t.Fatal(err)
		}
		edit(st)
		if data, err = json.Marshal(st); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startZoneStudy starts the demo environment (REDCap simulator included)
// over dir at 08:00 Pacific time and runs Prepare, returning its error.
func startZoneStudy(t *testing.T, dir string) (*engine.Engine, *sms.FakeClock, error) {
	t.Helper()
	clk := sms.NewFakeClock(time.Date(2026, 11, 23, 8, 0, 0, 0, demo.StudyTime.Location()))
	env, err := demo.Start(demo.Options{Dir: dir, Clock: clk, DBPath: filepath.Join(t.TempDir(), "nudge.db"), Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return env.Engine, clk, env.Engine.Prepare(ctx)
}

// TestSafetyTimezoneFromAnotherEvent proves that a participant's time zone
// held on the enrollment event governs a rule of a day event: the
// Honolulu participant's diary reminder (allowed from 09:00) is planned
// for 09:00 in Honolulu, not 09:00 in the study zone (07:00 for them).
// The zone is named with its event, bare (its instrument is designated for
// enrollment only) or by the project's timezone_field.
func TestSafetyTimezoneFromAnotherEvent(t *testing.T) {
	la := demo.StudyTime.Location()
	tests := []struct {
		name, window, config string
	}{
		{"event-qualified", `, timezone_field: "[enrollment_arm_1][tz]"`, ""},
		{"bare, designated on one event", `, timezone_field: tz`, ""},
		{"project timezone_field", "", ""}, // the demo's site_b has timezone_field: "[enrollment_arm_1][tz]"
		{"project timezone_field, bare", "", "    timezone_field: tz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, clk, err := startZoneStudy(t, zoneStudy(t, tt.window, tt.config, nil))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			snaps, err := e.Export(ctx)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := e.Plan(ctx, snaps, clk.Now(), engine.PlanOptions{Rules: map[string]bool{"diary-reminder": true}})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]time.Time{
				"B-007": time.Date(2026, 11, 23, 11, 0, 0, 0, la), // 09:00 in Honolulu
				"B-016": time.Date(2026, 11, 23, 9, 0, 0, 0, la),  // no zone: the study's
			}
			for _, d := range plan.Decisions {
				w, ok := want[d.Record]
				if !ok {
					continue
				}
				delete(want, d.Record)
				if d.Message == nil {
					t.Errorf("%s: no message (%s: %s)", d.Record, d.Outcome, d.Reason)
					continue
				}
				if !d.Message.NotBefore.Equal(w) {
					t.Errorf("%s: planned for %s, want %s", d.Record, d.Message.NotBefore.In(la), w)
				}
				// The template pipes [enrollment_arm_1][given_name] on the
				// diary instance row of week_1_arm_1.
				if d.Record == "B-007" && !strings.HasPrefix(d.Message.Body, "Hi Goran, your sleep diary for 2026-11-16") {
					t.Errorf("B-007: body does not pipe the enrollment event's given name and the row's diary date")
				}
			}
			if len(want) > 0 {
				t.Errorf("no decision for %v", want)
			}
		})
	}
}

// TestSafetyAmbiguousBareTimezoneRefused proves that a bare timezone field
// whose instrument is designated for two events, neither the rule's own,
// stops Prepare with an error at the field that names both ways to write
// it, rather than reading it where it is always blank.
func TestSafetyAmbiguousBareTimezoneRefused(t *testing.T) {
	dir := zoneStudy(t, `, timezone_field: tz`, "", func(st map[string]any) {
		st["form_events"] = append(st["form_events"].([]any),
			map[string]any{"arm_num": 1, "unique_event_name": "week_4_arm_1", "form": "contact"})
	})
	_, _, err := startZoneStudy(t, dir)
	var errs rules.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Prepare = %v, want rules.Errors", err)
	}
	msg := errs.Error()
	for _, want := range []string{"site_b.yaml:", "window.timezone_field: [tz] is on the instrument contact",
		`"[enrollment_arm_1][tz]" or "[week_4_arm_1][tz]"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not hold %q", msg, want)
		}
	}
}

// A condition reading a field that is always blank where it is read is a
// warning of nudge check, not a reason for nudge run to refuse the study.
func TestPrepareAcceptsConditionReadingBlankField(t *testing.T) {
	dir := zoneStudy(t, "", "", nil)
	p := filepath.Join(dir, "rules", "site_b.yaml")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	old := "[daily_diary_complete] <> '2'"
	if !strings.Contains(string(data), old) {
		t.Fatalf("site_b.yaml does not hold %q", old)
	}
	data = []byte(strings.Replace(string(data), old, old+" and [given_name] <> 'x'", 1))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := startZoneStudy(t, dir); err != nil {
		t.Fatalf("Prepare = %v, want nil (the blank read is only a warning)", err)
	}
}
