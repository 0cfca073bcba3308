package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// --as-of takes a time as a coordinator writes it, with a T or a blank,
// in the study's zone, or RFC 3339.
func TestPreviewParseTime(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2027, 1, 15, 10, 0, 0, 0, la)
	for _, c := range []struct {
		in  string
		ok  bool
		out time.Time
	}{
		{"2027-01-15T10:00", true, want},
		{"2027-01-15 10:00", true, want},
		{" 2027-01-15 10:00 ", true, want},
		{"2027-01-15T10:00:00", true, want},
		{"2027-01-15T10:00:00-08:00", true, want},
		{"2027-01-15T18:00:00Z", true, want},
		{"2027-01-15", true, time.Date(2027, 1, 15, 0, 0, 0, 0, la)},
		{"15/01/2027 10:00", false, time.Time{}},
		{"tomorrow", false, time.Time{}},
	} {
		got, err := parseTime(c.in, la)
		if (err == nil) != c.ok || (c.ok && !got.Equal(c.out)) {
			t.Errorf("parseTime(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.out, c.ok)
		}
	}
}

var demoRecordsB = "site_b=" + filepath.Join(demoDir, "redcap", "site_b.records.json")

// With --records, preview needs no REDCap server: it plans over the
// exported records and shows, per rule, who gets which text (deferred to
// when) and who is skipped or excluded and why; both --as-of forms agree.
func TestPreviewRecordsOffline(t *testing.T) {
	cfg := filepath.Join(demoDir, "nudge.yaml")
	var first string
	for _, asOf := range []string{"2026-11-23 07:00", "2026-11-23T07:00"} {
		out, errOut, code := nudge(t, "preview", "--config", cfg, "--records", demoRecordsB, "--as-of", asOf,
			"--rule", "diary-reminder", "--log-level", "error")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		for _, want := range []string{
			"diary-reminder  B-003   week_1_arm_1  3         deferred  outside the allowed hours; planned for 2026-11-23 08:00 PST",
			"diary-reminder  B-004   week_1_arm_1  1         skipped   template diary-reminder: no value for [diary_date]",
			"diary-reminder  B-002   week_1_arm_1  2         excluded  [enrollment_arm_1][contact_pref(1)] = '1' is false",
			"diary-reminder → record B-003, week_1_arm_1, instance 3 (sms, deferred to 2026-11-23 08:00 PST, 1 segment(s))",
			"  | Hi Cyrus, your sleep diary for 2026-11-18 is not finished yet (entry 3). Two minutes is all it takes!",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("--as-of %q: output lacks %q:\n%s", asOf, want, out)
			}
		}
		if first == "" {
			first = out
		} else if out != first {
			t.Errorf("the two --as-of forms differ:\n%s\n---\n%s", first, out)
		}
	}
}

// preview --json gives each rule's counts and decisions, with the rendered
// text and the time a deferred message is planned for.
func TestPreviewJSON(t *testing.T) {
	out, errOut, code := nudge(t, "preview", "--config", filepath.Join(demoDir, "nudge.yaml"), "--records", demoRecordsB,
		"--as-of", "2026-11-23 07:00", "--rule", "diary-reminder", "--json", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	var p previewJSON
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p.AsOf != "2026-11-23T07:00:00-08:00" || !p.Offline || len(p.Rules) != 1 || p.Rules[0].Name != "diary-reminder" {
		t.Fatalf("as_of %s, offline %v, rules %+v", p.AsOf, p.Offline, p.Rules)
	}
	r := p.Rules[0]
	if r.Deferred != 8 || r.Skipped != 2 || r.Excluded != 38 {
		t.Errorf("counts %+v", r.RuleSummary)
	}
	var found, excluded bool
	for _, d := range r.Decisions {
		if d.Record == "B-003" && d.Instance == 3 {
			found = d.Outcome == "deferred" && d.DeferredTo == "2026-11-23T08:00:00-08:00" && d.Event == "week_1_arm_1" &&
				d.Text == "Hi Cyrus, your sleep diary for 2026-11-18 is not finished yet (entry 3). Two minutes is all it takes!" && d.Segments == 1
		}
		if d.Record == "B-010" && d.Outcome == "excluded" {
			excluded = strings.Contains(d.Reason, "[enrollment_arm_1][contact_pref(1)] = '1' is false")
		}
	}
	if !found || !excluded {
		t.Errorf("B-003/3 deferred with its text: %v; B-010 excluded with its reason: %v\n%s", found, excluded, out)
	}
}

// --records FILE without a project is refused for a study of several
// projects, saying how to name one; a file that cannot be read says so.
func TestPreviewRecordsErrors(t *testing.T) {
	cfg := filepath.Join(demoDir, "nudge.yaml")
	_, errOut, code := nudge(t, "preview", "--config", cfg, "--records", filepath.Join(demoDir, "redcap", "site_b.records.json"))
	if code != 2 || !strings.Contains(errOut, "the study has 2 projects (site_a, site_b): name one, e.g. --records site_a=") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
	_, errOut, code = nudge(t, "preview", "--config", cfg, "--records", "site_b=nope.csv")
	if code != 2 || !strings.Contains(errOut, "nope.csv") {
		t.Errorf("exit %d\n%s", code, errOut)
	}
}

// A CSV exported from REDCap's web UI (raw data, with a byte-order mark)
// previews like the API's JSON; an export with labels as headers is
// refused with what to export instead.
func TestPreviewRecordsCSV(t *testing.T) {
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "export.csv")
	csv := "\ufeffrecord_id,first_name,mobile_phone,tz,sms_opt_in,consent_given,consent_complete,study_arm\n" +
		"7,Gia,+14155550107,America/Los_Angeles,1,1,2,3\n"
	if err := os.WriteFile(csvFile, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(demoDir, "nudge.yaml")
	out, errOut, code := nudge(t, "preview", "--config", cfg, "--records", "site_a="+csvFile, "--as-of", "2026-11-23 10:00", "--rule", "welcome-sms")
	if code != 0 || !strings.Contains(out, "welcome-sms  7       -      -         send      to +1••••••••07") ||
		!strings.Contains(out, "  | Hi Gia, welcome to Healthy Steps!") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	labels := filepath.Join(dir, "labels.csv")
	if err := os.WriteFile(labels, []byte("Participant ID,First name\n7,Gia\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = nudge(t, "preview", "--config", cfg, "--records", "site_a="+labels)
	if code != 1 || !strings.Contains(errOut, "have no record_id column: export them from REDCap as raw data with variable names") {
		t.Errorf("labels: exit %d\n%s", code, errOut)
	}
}

// TestSafetyPreviewOfflineReadsZoneOnItsEvent: offline, a bare timezone
// field is read on the event its instrument is designated for (from the
// project's instrument_events file), as online: a Honolulu participant's
// diary reminder on a day event waits for 08:00 in Honolulu, not the study
// zone's 08:00, and is not skipped for want of a zone on the day event.
func TestSafetyPreviewOfflineReadsZoneOnItsEvent(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(demoDir)); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "nudge.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bare := strings.Replace(string(raw), `timezone_field: "[enrollment_arm_1][tz]"`, `timezone_field: tz`, 1)
	if bare == string(raw) {
		t.Fatal("the demo config no longer has site_b's timezone_field")
	}
	if err := os.WriteFile(cfg, []byte(bare), 0o644); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	recs := filepath.Join(dir, "redcap", "site_b.records.json")
	b, err := os.ReadFile(recs)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r["participant_id"] == "B-003" && r["redcap_event_name"] == "enrollment_arm_1" {
			r["tz"] = "Pacific/Honolulu"
		}
	}
	if b, err = json.Marshal(rows); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recs, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := nudge(t, "preview", "--config", cfg, "--records", "site_b="+recs, "--as-of", "2026-11-23 07:00",
		"--rule", "diary-reminder", "--log-level", "error")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	want := "diary-reminder  B-003   week_1_arm_1  3         deferred  outside the allowed hours; planned for 2026-11-23 08:00 HST"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}
