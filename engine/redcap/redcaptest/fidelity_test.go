package redcaptest

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// REDCap's own clients never send action=import: a content=record request carrying data is an
// import. Treating it as an export would answer 200 with the records and store nothing, so a
// client would believe a write-back landed that never did.
func TestSafetyImportWithoutAction(t *testing.T) {
	s := New(classic(t))
	data, _ := json.Marshal([]map[string]string{{"record_id": "7", "mobile": "+14155550101"}})
	f := form(classicToken, "record", "type", "flat", "data", string(data), "returnContent", "count")
	status, body := post(t, s, f)
	if status != 200 || body != `{"count":1}` {
		t.Fatalf("import without action: %d %s", status, body)
	}
	got := s.Export(classicToken)
	if len(got) != 1 || got[0]["mobile"] != "+14155550101" {
		t.Errorf("stored %v", got)
	}
	calls := s.Calls()
	if calls[len(calls)-1].Action != "import" {
		t.Errorf("call logged with action %q, want import", calls[len(calls)-1].Action)
	}
	// A fault for imports applies to an import sent without action.
	s.Fault(Fault{Action: "import", Status: 503})
	if status, _ := post(t, s, f); status != 503 {
		t.Errorf("import fault on an import without action: status %d", status)
	}
	// Another action is refused rather than taken for an export.
	if status, body := post(t, s, form(classicToken, "record", "action", "delete", "records[0]", "7")); status != 400 || !strings.Contains(body, "action=delete") {
		t.Errorf("action=delete: %d %s", status, body)
	}
	if len(s.Export(classicToken)) != 1 {
		t.Error("action=delete changed the records")
	}
}

// The form status of a form nobody ever entered, the record id and pseudo-columns, and the
// repeat instance as a JSON number, as REDCap exports them.
func TestSafetyExportShape(t *testing.T) {
	s := New(classic(t), longitudinal(t))
	if err := s.Load(classicToken, []map[string]string{
		{"record_id": "1", "mobile": "m"},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "2", "bp_sys": "120"},
		{"record_id": "2", "consent": "1", "contact_complete": "2"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Load(longToken, []map[string]string{
		{"record_id": "1", "redcap_event_name": "baseline_arm_1"},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		token string
		kv    []string
		want  string
	}{
		{"gray form exports 0", classicToken, []string{"fields", "record_id,contact_complete,bp_complete"},
			`[{"record_id":"1","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":"0","bp_complete":""},` +
				`{"record_id":"1","redcap_repeat_instrument":"bp","redcap_repeat_instance":2,"contact_complete":"","bp_complete":"0"},` +
				`{"record_id":"2","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":"2","bp_complete":""}]`},
		{"gray form with exportBlankForGrayFormStatus", longToken, []string{"fields", "record_id,contact_complete", "exportBlankForGrayFormStatus", "true"},
			`[{"record_id":"1","redcap_event_name":"baseline_arm_1","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":""}]`},
		{"gray form without the flag", longToken, []string{"fields", "record_id,contact_complete", "exportBlankForGrayFormStatus", "false"},
			`[{"record_id":"1","redcap_event_name":"baseline_arm_1","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":"0"}]`},
		{"entered form keeps its status with the flag", classicToken, []string{"fields", "record_id,contact_complete", "records", "2", "exportBlankForGrayFormStatus", "true"},
			`[{"record_id":"2","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":"2"}]`},
		{"no record id without asking", classicToken, []string{"fields", "mobile"},
			`[{"mobile":"m"},{"mobile":""}]`},
		{"no record id for another form", classicToken, []string{"forms", "bp"},
			`[{"bp_date":"","bp_sys":"","bp_w":"","bp_complete":""},{"bp_date":"","bp_sys":"120","bp_w":"","bp_complete":"0"},{"bp_date":"","bp_sys":"","bp_w":"","bp_complete":""}]`},
		{"record id with its form", longToken, []string{"forms", "contact", "fields", "mobile"},
			`[{"record_id":"1","redcap_event_name":"baseline_arm_1","redcap_repeat_instrument":"","redcap_repeat_instance":"","mobile":"","consent":"","race___1":"0","race___2":"0","race____1":"0","visit_ok":"","contact_complete":"0"}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, s, form(tt.token, "record", tt.kv...))
			if status != 200 || body != tt.want {
				t.Errorf("got %d %s\nwant %s", status, body, tt.want)
			}
		})
	}
}

// Parameters REDCap knows but the simulator does not implement are refused with a 400, never
// ignored: an answer that ignored them would not be REDCap's.
func TestSafetyUnimplementedParameters(t *testing.T) {
	s := New(classic(t))
	data := `[{"record_id":"1","mobile":"x"}]`
	tests := []struct {
		name string
		form url.Values
		want string // "" = accepted
	}{
		{"survey fields", form(classicToken, "record", "exportSurveyFields", "true"), "exportSurveyFields (true)"},
		{"survey fields off", form(classicToken, "record", "exportSurveyFields", "false"), ""},
		{"data access groups", form(classicToken, "record", "exportDataAccessGroups", "true"), "exportDataAccessGroups (true)"},
		{"labels", form(classicToken, "record", "rawOrLabel", "label"), "rawOrLabel (label)"},
		{"label headers", form(classicToken, "record", "rawOrLabelHeaders", "label"), "rawOrLabelHeaders (label)"},
		{"decimal comma", form(classicToken, "record", "decimalCharacter", ","), "decimalCharacter (,)"},
		{"eav", form(classicToken, "record", "type", "eav"), "type (eav)"},
		{"xml errors", form(classicToken, "metadata", "returnFormat", "xml"), "returnFormat (xml)"},
		{"gray flag", form(classicToken, "record", "exportBlankForGrayFormStatus", "yes"), "exportBlankForGrayFormStatus (yes)"},
		{"date range", form(classicToken, "record", "dateRangeBegin", "2026-01-01 00:00:00"), "dateRangeBegin"},
		{"auto number", form(classicToken, "record", "data", data, "forceAutoNumber", "true"), "forceAutoNumber (true)"},
		{"auto ids", form(classicToken, "record", "data", data, "returnContent", "auto_ids"), "returnContent (auto_ids)"},
		{"MDY dates", form(classicToken, "record", "data", data, "dateFormat", "MDY"), "dateFormat (MDY)"},
		{"background", form(classicToken, "record", "data", data, "backgroundProcess", "true"), "backgroundProcess (true)"},
		{"overwrite typo", form(classicToken, "record", "data", data, "overwriteBehavior", "overwite"), "overwriteBehavior (overwite)"},
		{"unknown to REDCap too", form(classicToken, "record", "colour", "blue"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, s, tt.form)
			if tt.want == "" {
				if status != 200 {
					t.Fatalf("refused: %d %s", status, body)
				}
				return
			}
			if status != 400 || !strings.Contains(body, tt.want) {
				t.Fatalf("got %d %s\nwant 400 naming %s", status, body, tt.want)
			}
		})
	}
	if len(s.Export(classicToken)) != 0 {
		t.Error("a refused import stored rows")
	}
	// returnContent=nothing answers an empty body and imports.
	status, body := post(t, s, form(classicToken, "record", "data", data, "returnContent", "nothing"))
	if status != 200 || body != "" || len(s.Export(classicToken)) != 1 {
		t.Errorf("returnContent=nothing: %d %q", status, body)
	}
}

// Import refusals in REDCap's wordings and CSV-line shape: a value on a locked record, a bad
// value of a validated field, a field whose form is not designated for the row's event.
func TestSafetyImportRefusalWordings(t *testing.T) {
	tests := []struct {
		name   string
		token  string
		locked string
		rows   []map[string]string
		want   string
	}{
		{"locked record", classicToken, "2", []map[string]string{{"record_id": "1", "mobile": "1"}, {"record_id": "2", "mobile": "2", "consent": "1"}},
			`"2","mobile","2","This field is located on a form that is locked. You must first unlock this form for this record."` + "\n" +
				`"2","consent","1","This field is located on a form that is locked. You must first unlock this form for this record."`},
		{"validated field", classicToken, "", []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_date": "14/10/2026"}},
			`"1","bp_date","14/10/2026","The value you provided could not be validated because it does not follow the expected format. Please try again."`},
		{"form not designated", longToken, "", []map[string]string{{"record_id": "1", "redcap_event_name": "baseline_arm_1", "mobile": "1"}, {"record_id": "1", "redcap_event_name": "visit_arm_1", "mobile": "1"}},
			`"1","mobile","1","This field ('mobile') exists on an instrument that is not designated for the event named 'Visit (Arm 1: Arm 1)'. You are not allowed to import data for this field into this event."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(classic(t), longitudinal(t))
			if tt.locked != "" {
				s.LockRecord(tt.token, tt.locked, true)
			}
			status, body := post(t, s, importForm(tt.token, tt.rows))
			var e struct{ Error string }
			json.Unmarshal([]byte(body), &e)
			if status != 400 || e.Error != tt.want {
				t.Fatalf("got %d %q\nwant 400 %q", status, e.Error, tt.want)
			}
			if got := s.Export(tt.token); len(got) != 0 {
				t.Errorf("a refused import stored rows: %v", got)
			}
		})
	}
}
