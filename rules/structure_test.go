package rules

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// The events and instrument-event files a coordinator downloads from
// REDCap's Project Setup page (or exports through the API) are read by
// their column names, whatever their order, with a byte order mark, and
// in the API's JSON shape or the REDCap simulator's structure file.
func TestReadStructureFiles(t *testing.T) {
	tests := []struct {
		name, file, content string
		instruments         bool // read as an instrument-event file
		want                any
		wantErr             string
	}{
		{name: "events download", file: "e.csv",
			content: "event_name,arm_num,unique_event_name,custom_event_label,event_id\nEnrollment,1,enrollment_arm_1,,101\n\"Week 1, diary\",1,week_1_arm_1,,102\n",
			want:    []string{"enrollment_arm_1", "week_1_arm_1"}},
		{name: "events with offsets and a BOM", file: "e.csv",
			content: "\ufeffevent_name,arm_num,day_offset,offset_min,offset_max,unique_event_name\nBaseline,1,0,0,0,baseline_arm_1\nBaseline,2,0,0,0,baseline_arm_2\n\n",
			want:    []string{"baseline_arm_1", "baseline_arm_2"}},
		{name: "events without unique names", file: "e.csv",
			content: "event_name,arm_num\nBaseline,1\n", wantErr: "e.csv:1: no unique_event_name column"},
		{name: "events JSON from the API", file: "e.json",
			content: `[{"event_name":"Baseline","arm_num":1,"unique_event_name":"baseline_arm_1","custom_event_label":"","event_id":41}]`,
			want:    []string{"baseline_arm_1"}},
		{name: "mappings download", file: "m.csv", instruments: true,
			content: "arm_num,unique_event_name,form\n1,enrollment_arm_1,contact\n1,enrollment_arm_1,consent\n1,week_1_arm_1,daily_diary\n",
			want:    map[string][]string{"enrollment_arm_1": {"contact", "consent"}, "week_1_arm_1": {"daily_diary"}}},
		{name: "mappings with form_name, other order", file: "m.csv", instruments: true,
			content: "form_name,unique_event_name,arm_num\ncontact,enrollment_arm_1,1\n",
			want:    map[string][]string{"enrollment_arm_1": {"contact"}}},
		{name: "mappings without a form column", file: "m.csv", instruments: true,
			content: "arm_num,unique_event_name\n1,enrollment_arm_1\n", wantErr: "m.csv:1: no form column"},
		{name: "mappings row without a form", file: "m.csv", instruments: true,
			content: "arm_num,unique_event_name,form\n1,enrollment_arm_1,contact\n1,week_1_arm_1,\n", wantErr: "m.csv:3: a row without"},
		{name: "simulator structure file", file: "s.structure.json", instruments: true,
			content: `{"events":[],"form_events":[{"arm_num":1,"unique_event_name":"enrollment_arm_1","form":"contact"}]}`,
			want:    map[string][]string{"enrollment_arm_1": {"contact"}}},
		{name: "empty file", file: "e.csv", content: "", wantErr: "is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.file)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			var got any
			var err error
			if tt.instruments {
				got, err = ReadInstrumentEvents(path)
			} else {
				got, err = ReadEvents(path)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				if strings.Contains(tt.wantErr, "unique_event_name") && !errors.Is(err, ErrNoEventColumn) {
					t.Errorf("err = %v, want ErrNoEventColumn", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestSafetyBareTimezoneBlankHereSetElsewhere proves that, before the
// form-event mapping is known, a bare timezone field that is blank on the
// rule's event but holds a zone on another event skips the participant
// with an error naming the way to write it, instead of using the study
// zone; once resolved to that event, the zone is read there.
func TestSafetyBareTimezoneBlankHereSetElsewhere(t *testing.T) {
	study, _ := time.LoadLocation("America/Los_Angeles")
	rec := GroupRows("record_id", []map[string]string{
		exportRow("1", "enrollment_arm_1", "", "", "tz", "Pacific/Honolulu"),
		exportRow("1", "week_1_arm_1", "", "", "tz", ""),
	})[0]
	scope := NewScope(rec, rec.Rows[1], time.Now(), nil)
	r := &Rule{Event: "week_1_arm_1", TimezoneField: logic.Ref{Field: "tz"}, tz: &zoneState{}}
	if loc, err := r.Location(scope, study); err == nil || !strings.Contains(err.Error(), `"[enrollment_arm_1][tz]"`) {
		t.Fatalf("Location = %v, %v; want an error naming [enrollment_arm_1][tz]", loc, err)
	}
	r.resolveTimezone(logic.Ref{Event: "enrollment_arm_1", Field: "tz"})
	if loc, err := r.Location(scope, study); err != nil || loc.String() != "Pacific/Honolulu" {
		t.Fatalf("resolved: Location = %v, %v; want Pacific/Honolulu", loc, err)
	}
	// Blank everywhere: the study zone, as before.
	blank := GroupRows("record_id", []map[string]string{
		exportRow("1", "enrollment_arm_1", "", "", "tz", ""),
		exportRow("1", "week_1_arm_1", "", "", "tz", ""),
	})[0]
	r2 := &Rule{Event: "week_1_arm_1", TimezoneField: logic.Ref{Field: "tz"}}
	if loc, err := r2.Location(NewScope(blank, blank.Rows[1], time.Now(), nil), study); err != nil || loc != study {
		t.Fatalf("blank everywhere: Location = %v, %v; want the study zone", loc, err)
	}
}

// The export includes every field read from another event, the project's
// timezone_field among them.
func TestFieldsIncludeOtherEventsAndProjectZone(t *testing.T) {
	s, err := Load(filepath.Join("testdata", "bad", "longitudinal-reads", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := s.Fields("main")
	for _, f := range []string{"cell", "daily_diary_complete", "diary_date", "enrolled", "given_name", "tz"} {
		if !contains(got, f) {
			t.Errorf("Fields = %v, want %s among them", got, f)
		}
	}
	if r := s.Rule("week-one"); r.TimezoneField != (logic.Ref{Field: "tz"}) {
		t.Errorf("week-one inherits timezone_field %v, want [tz]", r.TimezoneField)
	}
}
