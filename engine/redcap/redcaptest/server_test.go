package redcaptest

import (
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules/dict"
)

const (
	classicToken = "0123456789ABCDEF0123456789ABCDEF"
	longToken    = "FEDCBA9876543210FEDCBA9876543210"
)

const classicDict = `field_name,form_name,field_type,field_label,select_choices_or_calculations,text_validation_type_or_show_slider_number
record_id,contact,text,ID,,
mobile,contact,text,Mobile,,phone
consent,contact,yesno,Consent,,
race,contact,checkbox,Race,"1, White | 2, Black | -1, Refused",
visit_ok,contact,dropdown,Visit OK,"1, OK | 2, Not OK",
note,contact,descriptive,Note,,
bp_date,bp,text,Date,,date_ymd
bp_sys,bp,text,Systolic,,integer
bp_w,bp,text,Weight,,number
`

func mustDict(t testing.TB, src string) *dict.Dictionary {
	t.Helper()
	d, err := dict.ParseCSV(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func classic(t testing.TB) *Project {
	return &Project{Token: classicToken, ID: 12, Title: "Classic", Dict: mustDict(t, classicDict),
		Repeating: []redcap.Repeating{{Form: "bp"}}, MissingCodes: "UNK, Unknown | NA, Not applicable"}
}

func longitudinal(t testing.TB) *Project {
	return &Project{Token: longToken, ID: 13, Title: "Long", Dict: mustDict(t, classicDict),
		Events: []redcap.Event{
			{Name: "Baseline", UniqueName: "baseline_arm_1", Arm: 1, ID: 41},
			{Name: "Visit", UniqueName: "visit_arm_1", Arm: 1, ID: 42},
		},
		FormEvents: []redcap.FormEvent{
			{Arm: 1, Event: "baseline_arm_1", Form: "contact"},
			{Arm: 1, Event: "visit_arm_1", Form: "bp"},
		},
		Repeating: []redcap.Repeating{{Event: "visit_arm_1", Form: "bp"}},
	}
}

// post sends a form to the server and returns the status and body.
func post(t *testing.T, h http.Handler, form url.Values) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func form(token, content string, kv ...string) url.Values {
	v := url.Values{"token": {token}, "content": {content}, "format": {"json"}, "returnFormat": {"json"}}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func importForm(token string, rows any, kv ...string) url.Values {
	data, _ := json.Marshal(rows)
	return form(token, "record", append([]string{"action", "import", "type", "flat", "data", string(data)}, kv...)...)
}

func TestErrorsAndStructure(t *testing.T) {
	s := New(classic(t), longitudinal(t))
	tests := []struct {
		name       string
		form       url.Values
		wantStatus int
		wantBody   string
	}{
		{"unknown token", form("nope", "record"), 403, `{"error":"You do not have permissions to use the API"}`},
		{"no token", form("", "version"), 403, `{"error":"You do not have permissions to use the API"}`},
		{"version", form(classicToken, "version"), 200, Version},
		{"events classic", form(classicToken, "event"), 400, `{"error":"You cannot export events for classic projects"}`},
		{"arms classic", form(classicToken, "arm"), 400, `{"error":"You cannot export arms for classic projects"}`},
		{"mapping classic", form(classicToken, "formEventMapping"), 400, `{"error":"You cannot export form/event mappings for classic projects"}`},
		{"events", form(longToken, "event"), 200, `[{"event_name":"Baseline","arm_num":1,"unique_event_name":"baseline_arm_1","custom_event_label":"","event_id":41},{"event_name":"Visit","arm_num":1,"unique_event_name":"visit_arm_1","custom_event_label":"","event_id":42}]`},
		{"arms", form(longToken, "arm"), 200, `[{"arm_num":1,"name":"Arm 1"}]`},
		{"mapping", form(longToken, "formEventMapping"), 200, `[{"arm_num":1,"unique_event_name":"baseline_arm_1","form":"contact"},{"arm_num":1,"unique_event_name":"visit_arm_1","form":"bp"}]`},
		{"repeating classic", form(classicToken, "repeatingFormsEvents"), 200, `[{"form_name":"bp","custom_form_label":""}]`},
		{"repeating long", form(longToken, "repeatingFormsEvents"), 200, `[{"event_name":"visit_arm_1","form_name":"bp","custom_form_label":""}]`},
		{"field names", form(classicToken, "exportFieldNames", "field", "race"), 200, `[{"original_field_name":"race","choice_value":"1","export_field_name":"race___1"},{"original_field_name":"race","choice_value":"2","export_field_name":"race___2"},{"original_field_name":"race","choice_value":"-1","export_field_name":"race____1"}]`},
		{"unknown field in export", form(classicToken, "record", "fields[0]", "mobile", "fields[1]", "x"), 400, `{"error":"The following values in the parameter fields are not valid: 'x'"}`},
		{"pseudo field in export", form(longToken, "record", "fields[0]", "redcap_event_name"), 400, `{"error":"The following values in the parameter fields are not valid: 'redcap_event_name'"}`},
		{"checkbox column in export", form(classicToken, "record", "fields[0]", "race___1"), 400, `{"error":"The following values in the parameter fields are not valid: 'race___1'"}`},
		{"unknown form", form(classicToken, "record", "forms[0]", "zz"), 400, `{"error":"The following values in the parameter forms are not valid: 'zz'"}`},
		{"unknown event", form(longToken, "record", "events[0]", "visit_arm_9"), 400, `{"error":"The following values in the parameter events are not valid: 'visit_arm_9'"}`},
		{"filterLogic", form(classicToken, "record", "filterLogic", "[consent] = '1'"), 400, `{"error":"redcaptest does not support the parameter filterLogic; export without it and filter the rows in the caller"}`},
		{"bad content", form(classicToken, "bogus"), 400, `{"error":"The value of the parameter 'content' (bogus) is not valid"}`},
		{"empty export", form(classicToken, "record"), 200, `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, s, tt.form)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %s\nwant %d %s", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}

	// A project without repeating instruments says so with a 400.
	plain := New(&Project{Token: classicToken, ID: 1, Dict: mustDict(t, classicDict)})
	status, body := post(t, plain, form(classicToken, "repeatingFormsEvents"))
	if status != 400 || !strings.Contains(body, "does not contain any repeating instruments and events") {
		t.Errorf("repeatingFormsEvents without any: %d %s", status, body)
	}
}

func TestProjectInfo(t *testing.T) {
	s := New(classic(t), longitudinal(t))
	for _, tc := range []struct {
		token    string
		longi    float64
		missings string
	}{{classicToken, 0, "UNK, Unknown | NA, Not applicable"}, {longToken, 1, ""}} {
		status, body := post(t, s, form(tc.token, "project"))
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); status != 200 || err != nil {
			t.Fatalf("%d %s %v", status, body, err)
		}
		if m["is_longitudinal"] != tc.longi || m["has_repeating_instruments_or_events"] != 1.0 || m["missing_data_codes"] != tc.missings {
			t.Errorf("project = %v", m)
		}
		if _, isNum := m["project_id"].(float64); !isNum {
			t.Errorf("project_id is %T, want a JSON number", m["project_id"])
		}
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	p := classic(t)
	s := New(p)
	status, body := post(t, s, form(classicToken, "metadata"))
	if status != 200 {
		t.Fatal(status, body)
	}
	var rows []map[string]string
	if err := json.Unmarshal([]byte(body), &rows); err != nil {
		t.Fatal(err)
	}
	d, err := dict.FromMetadata(rows)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Fields, p.Dict.Fields) {
		t.Errorf("metadata round trip\n got %+v\nwant %+v", d.Fields, p.Dict.Fields)
	}
	if !strings.HasPrefix(body, `[{"field_name":"record_id","form_name":"contact",`) {
		t.Errorf("metadata key order: %.80s", body)
	}
}

func TestImportValidation(t *testing.T) {
	tests := []struct {
		name  string
		token string
		rows  []map[string]string
		want  string // the error message; "" = accepted
	}{
		{"good", classicToken, []map[string]string{{"record_id": "1", "mobile": "+1415", "consent": "1", "race___2": "1", "bp_date": ""}}, ""},
		{"missing code anywhere", classicToken, []map[string]string{{"record_id": "1", "visit_ok": "UNK"}}, ""},
		{"unknown fields", classicToken, []map[string]string{{"record_id": "1", "foo": "1"}, {"record_id": "2", "bar": "", "mobile": "x"}},
			"The following fields were not found in the project as real data fields: bar, foo"},
		{"descriptive is no data field", classicToken, []map[string]string{{"record_id": "1", "note": "x"}},
			"The following fields were not found in the project as real data fields: note"},
		{"checkbox base name", classicToken, []map[string]string{{"record_id": "1", "race": "1"}},
			"The following fields were not found in the project as real data fields: race"},
		{"bad category", classicToken, []map[string]string{{"record_id": "1", "visit_ok": "7"}},
			`"1","visit_ok","7","The value is not a valid category for visit_ok"`},
		{"two bad values", classicToken, []map[string]string{{"record_id": "1", "consent": "2", "race____1": "yes"}, {"record_id": "2", "contact_complete": "3"}},
			`"1","consent","2","The value is not a valid category for consent"` + "\n" +
				`"1","race____1","yes","The value is not a valid category for race____1"` + "\n" +
				`"2","contact_complete","3","The value is not a valid category for contact_complete"`},
		{"integer", classicToken, []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "12.5"}},
			`"1","bp_sys","12.5","` + msgNotValidated + `"`},
		{"number ok", classicToken, []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_w": "-.5", "bp_sys": "+120", "bp_date": "2026-02-28"}}, ""},
		{"number", classicToken, []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_w": "1,5"}},
			`"1","bp_w","1,5","` + msgNotValidated + `"`},
		{"date", classicToken, []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_date": "2026-02-30"}},
			`"1","bp_date","2026-02-30","` + msgNotValidated + `"`},
		{"repeating form on base row", classicToken, []map[string]string{{"record_id": "1", "bp_sys": "120"}},
			`"1","bp_sys","120","The instrument bp repeats: give redcap_repeat_instrument and redcap_repeat_instance"`},
		{"other form on instance row", classicToken, []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "2", "mobile": "1"}},
			`"1","mobile","1","The field is not on the repeating instrument bp"`},
		{"instance missing", classicToken, []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp"}},
			`"1","redcap_repeat_instance","","The repeat instance must be a whole number of 1 or more"`},
		{"not repeating", classicToken, []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "contact", "redcap_repeat_instance": "1"}},
			`"1","redcap_repeat_instrument","contact","The instrument is not set up as a repeating instrument in this event"`},
		{"no record id", classicToken, []map[string]string{{"mobile": "1"}},
			"Record 1 of the data has no value for the record ID field (record_id)"},
		{"event required", longToken, []map[string]string{{"record_id": "1", "mobile": "1"}},
			"The redcap_event_name field is required in a longitudinal project, but record 1 has none"},
		{"bad events", longToken, []map[string]string{{"record_id": "1", "redcap_event_name": "visit_9_arm_1"}, {"record_id": "2", "redcap_event_name": "x_arm_1"}},
			"The following values of redcap_event_name are invalid: visit_9_arm_1, x_arm_1"},
		{"form not in event", longToken, []map[string]string{{"record_id": "1", "redcap_event_name": "visit_arm_1", "mobile": "1"}},
			`"1","mobile","1","This field ('mobile') exists on an instrument that is not designated for the event named 'Visit (Arm 1: Arm 1)'. You are not allowed to import data for this field into this event."`},
		{"longitudinal good", longToken, []map[string]string{{"record_id": "1", "redcap_event_name": "baseline_arm_1", "mobile": "1"},
			{"record_id": "1", "redcap_event_name": "visit_arm_1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "3", "bp_sys": "1"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(classic(t), longitudinal(t))
			status, body := post(t, s, importForm(tt.token, tt.rows))
			if tt.want == "" {
				if status != 200 {
					t.Fatalf("refused: %d %s", status, body)
				}
				return
			}
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

func TestImportSemantics(t *testing.T) {
	s := New(classic(t))
	imp := func(rows []map[string]string, kv ...string) string {
		t.Helper()
		status, body := post(t, s, importForm(classicToken, rows, kv...))
		if status != 200 {
			t.Fatalf("import: %d %s", status, body)
		}
		return body
	}
	if got := imp([]map[string]string{{"record_id": "2", "mobile": "a"}, {"record_id": "10", "race___1": "1"}, {"record_id": "2", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "120"}}); got != `{"count":2}` {
		t.Errorf("count answer = %s", got)
	}
	// normal: a blank does not erase.
	if got := imp([]map[string]string{{"record_id": "2", "mobile": "", "consent": "1"}}, "returnContent", "ids"); got != `["2"]` {
		t.Errorf("ids answer = %s", got)
	}
	// overwrite: a blank erases; an unchecked box is "0".
	imp([]map[string]string{{"record_id": "10", "race___1": "0", "visit_ok": "", "mobile": "b"}}, "overwriteBehavior", "overwrite")
	imp([]map[string]string{{"record_id": "3"}})

	status, body := post(t, s, form(classicToken, "record"))
	if status != 200 {
		t.Fatal(body)
	}
	want := `[` +
		`{"record_id":"2","redcap_repeat_instrument":"","redcap_repeat_instance":"","mobile":"a","consent":"1","race___1":"0","race___2":"0","race____1":"0","visit_ok":"","contact_complete":"0","bp_date":"","bp_sys":"","bp_w":"","bp_complete":""},` +
		`{"record_id":"2","redcap_repeat_instrument":"bp","redcap_repeat_instance":1,"mobile":"","consent":"","race___1":"","race___2":"","race____1":"","visit_ok":"","contact_complete":"","bp_date":"","bp_sys":"120","bp_w":"","bp_complete":"0"},` +
		`{"record_id":"3","redcap_repeat_instrument":"","redcap_repeat_instance":"","mobile":"","consent":"","race___1":"0","race___2":"0","race____1":"0","visit_ok":"","contact_complete":"0","bp_date":"","bp_sys":"","bp_w":"","bp_complete":""},` +
		`{"record_id":"10","redcap_repeat_instrument":"","redcap_repeat_instance":"","mobile":"b","consent":"","race___1":"0","race___2":"0","race____1":"0","visit_ok":"","contact_complete":"0","bp_date":"","bp_sys":"","bp_w":"","bp_complete":""}` +
		`]`
	if body != want {
		t.Errorf("export\n got %s\nwant %s", body, want)
	}

	// Filters: fields of one form leave out the instance rows of another; records and forms.
	tests := []struct {
		name string
		form url.Values
		want string
	}{
		{"fields", form(classicToken, "record", "fields[0]", "mobile", "fields[1]", "record_id", "records[0]", "2"),
			`[{"record_id":"2","redcap_repeat_instrument":"","redcap_repeat_instance":"","mobile":"a"}]`},
		{"forms", form(classicToken, "record", "forms[0]", "bp", "fields[0]", "record_id", "records[0]", "2"),
			`[{"record_id":"2","redcap_repeat_instrument":"","redcap_repeat_instance":"","bp_date":"","bp_sys":"","bp_w":"","bp_complete":""},` +
				`{"record_id":"2","redcap_repeat_instrument":"bp","redcap_repeat_instance":1,"bp_date":"","bp_sys":"120","bp_w":"","bp_complete":"0"}]`},
		{"comma list and complete column", form(classicToken, "record", "fields", "contact_complete,record_id", "records", "10,3", "exportBlankForGrayFormStatus", "true"),
			`[{"record_id":"3","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":""},` +
				`{"record_id":"10","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":"0"}]`},
	}
	for _, tt := range tests {
		status, body := post(t, s, tt.form)
		if status != 200 || body != tt.want {
			t.Errorf("%s: got %d %s\nwant %s", tt.name, status, body, tt.want)
		}
	}
}

func TestLongitudinalExport(t *testing.T) {
	s := New(longitudinal(t))
	err := s.Load(longToken, []map[string]string{
		{"record_id": "1", "redcap_event_name": "visit_arm_1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "2", "bp_sys": "130"},
		{"record_id": "1", "redcap_event_name": "visit_arm_1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "120"},
		{"record_id": "1", "redcap_event_name": "baseline_arm_1", "mobile": "m", "race___2": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	status, body := post(t, s, form(longToken, "record", "fields[0]", "race", "fields[1]", "bp_sys", "fields[2]", "record_id", "events[0]", "visit_arm_1", "events[1]", "baseline_arm_1"))
	want := `[{"record_id":"1","redcap_event_name":"baseline_arm_1","redcap_repeat_instrument":"","redcap_repeat_instance":"","race___1":"0","race___2":"1","race____1":"0","bp_sys":""},` +
		`{"record_id":"1","redcap_event_name":"visit_arm_1","redcap_repeat_instrument":"bp","redcap_repeat_instance":1,"race___1":"","race___2":"","race____1":"","bp_sys":"120"},` +
		`{"record_id":"1","redcap_event_name":"visit_arm_1","redcap_repeat_instrument":"bp","redcap_repeat_instance":2,"race___1":"","race___2":"","race____1":"","bp_sys":"130"}]`
	if status != 200 || body != want {
		t.Errorf("got %d %s\nwant %s", status, body, want)
	}
	if err := s.Load(longToken, []map[string]string{{"record_id": "2", "redcap_event_name": "nope"}}); err == nil || !strings.Contains(err.Error(), "redcap_event_name are invalid: nope") {
		t.Errorf("Load of a bad row: %v", err)
	}
	if err := s.Load("unknown", nil); err == nil {
		t.Error("Load with an unknown token succeeded")
	}
}

func TestFaultsAndCalls(t *testing.T) {
	s := New(classic(t))
	s.Fault(Fault{Content: "metadata", Status: 503, Times: 2})
	s.Fault(Fault{HTML: true})
	s.Fault(Fault{Status: 502, HTML: true})

	steps := []struct {
		content    string
		wantStatus int
		wantHTML   bool
	}{
		{"version", 200, true},   // the HTML fault matches any content
		{"metadata", 503, false}, // the first fault matches metadata only
		{"project", 502, true},   // the 502 page
		{"metadata", 503, false}, // second time of the first fault
		{"metadata", 200, false}, // faults used up
		{"version", 200, false},  // plain text again
	}
	for i, st := range steps {
		status, body := post(t, s, form(classicToken, st.content))
		if status != st.wantStatus || strings.HasPrefix(body, "<!DOCTYPE") != st.wantHTML {
			t.Errorf("step %d (%s): got %d %.40s", i, st.content, status, body)
		}
	}
	calls := s.Calls()
	if len(calls) != len(steps) {
		t.Fatalf("%d calls recorded, want %d", len(calls), len(steps))
	}
	for i, c := range calls {
		if c.Content != steps[i].content || c.Status != steps[i].wantStatus || c.Params.Has("token") || c.Params.Get("format") != "json" {
			t.Errorf("call %d = %+v", i, c)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s := New(classic(t))
	url, err := s.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := importForm(classicToken, []map[string]string{{"record_id": fmt.Sprint(i), "mobile": "x"}})
			resp, err := http.PostForm(url, f)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			resp, err = http.PostForm(url, form(classicToken, "record"))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if got := len(s.Export(classicToken)); got != 8 {
		t.Errorf("%d records after 8 concurrent imports", got)
	}
	if got := len(s.Calls()); got != 16 {
		t.Errorf("%d calls recorded, want 16", got)
	}
}

func TestExportRights(t *testing.T) {
	p := classic(t)
	p.Identifiers = []string{"mobile"}
	p.Users = map[string]Rights{
		"R1": {Default: RemoveIdentifiers},
		"R2": {Default: DeIdentified},
		"R3": {Forms: map[string]ExportRight{"bp": NoAccess}},
		"R4": {Default: NoAccess, Forms: map[string]ExportRight{"contact": FullDataSet}},
	}
	s := New(p)
	if err := s.Load(classicToken, []map[string]string{
		{"record_id": "1", "mobile": "m", "consent": "1"},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_date": "2026-10-14", "bp_sys": "120"},
	}); err != nil {
		t.Fatal(err)
	}
	cols := func(tok string, kv ...string) (string, []string) {
		t.Helper()
		status, body := post(t, s, form(tok, "record", kv...))
		var rows []map[string]any
		if status != 200 || json.Unmarshal([]byte(body), &rows) != nil || len(rows) == 0 {
			t.Fatalf("%s: %d %s", tok, status, body)
		}
		var names []string
		for k := range rows[0] {
			names = append(names, k)
		}
		sort.Strings(names)
		return rows[0]["record_id"].(string), names
	}
	hashedOne := fmt.Sprintf("%x", md5.Sum([]byte("redcaptest:12:1")))
	tests := []struct {
		tok    string
		wantID string
		want   string
	}{
		{classicToken, "1", "bp_complete bp_date bp_sys bp_w consent contact_complete mobile race___1 race___2 race____1 record_id redcap_repeat_instance redcap_repeat_instrument visit_ok"},
		{"R1", "1", "bp_complete bp_date bp_sys bp_w consent contact_complete race___1 race___2 race____1 record_id redcap_repeat_instance redcap_repeat_instrument visit_ok"},
		{"R2", hashedOne, "bp_complete bp_sys bp_w consent contact_complete race___1 race___2 race____1 record_id redcap_repeat_instance redcap_repeat_instrument visit_ok"},
		{"R3", "1", "consent contact_complete mobile race___1 race___2 race____1 record_id redcap_repeat_instance redcap_repeat_instrument visit_ok"},
		{"R4", "1", "consent contact_complete mobile race___1 race___2 race____1 record_id redcap_repeat_instance redcap_repeat_instrument visit_ok"},
	}
	for _, tt := range tests {
		id, names := cols(tt.tok)
		if id != tt.wantID || strings.Join(names, " ") != tt.want {
			t.Errorf("%s: id %s, columns\n got %s\nwant %s", tt.tok, id, strings.Join(names, " "), tt.want)
		}
	}
	// A records filter matches real ids only: a hashed id finds nothing, a real one the
	// hashed row.
	if status, body := post(t, s, form("R2", "record", "records[0]", hashedOne)); status != 200 || body != "[]" {
		t.Errorf("filter by hashed id: %d %s", status, body)
	}
	if id, _ := cols("R2", "records[0]", "1"); id != hashedOne {
		t.Errorf("filter by real id: id %s", id)
	}
	// The metadata marks identifiers.
	_, body := post(t, s, form("R1", "metadata"))
	if !strings.Contains(body, `"field_name":"mobile","form_name":"contact","section_header":"","field_type":"text","field_label":"Mobile","select_choices_or_calculations":"","field_note":"","text_validation_type_or_show_slider_number":"phone","text_validation_min":"","text_validation_max":"","identifier":"y"`) {
		t.Errorf("metadata: %s", body)
	}
	if err := s.AddUser(classicToken, "R1", Rights{}); err == nil {
		t.Error("AddUser took a token in use")
	}
	if err := s.MarkIdentifiers(classicToken, "nope"); err == nil {
		t.Error("MarkIdentifiers took an unknown field")
	}
}

// Refusals that name no record: a locked record, and (with PlainRefusals) a bad value of a
// validated field and a field on a form not designated for the event, in REDCap's wordings.
func TestPlainRefusalsAndLocks(t *testing.T) {
	plain := func(p *Project) *Project { p.PlainRefusals = true; return p }
	tests := []struct {
		name   string
		token  string
		locked string
		rows   []map[string]string
		want   string
	}{
		{"validated field", classicToken, "", []map[string]string{{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "12.5"}},
			"The value you provided could not be validated because it does not follow the expected format. Please try again."},
		{"form not designated for the event", longToken, "", []map[string]string{{"record_id": "1", "redcap_event_name": "visit_arm_1", "mobile": "1"}},
			"This field ('mobile') exists on an instrument that is not designated for the event named 'Visit'. You are not allowed to import data for this field into this event."},
		{"category errors keep their lines", classicToken, "", []map[string]string{{"record_id": "1", "visit_ok": "7"}},
			`"1","visit_ok","7","The value is not a valid category for visit_ok"`},
		{"locked record", classicToken, "2", []map[string]string{{"record_id": "1", "mobile": "1"}, {"record_id": "2", "mobile": "2"}}, msgLocked},
		{"another record is not locked", classicToken, "9", []map[string]string{{"record_id": "1", "mobile": "1"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(plain(classic(t)), plain(longitudinal(t)))
			if tt.locked != "" {
				s.LockRecord(tt.token, tt.locked, true)
			}
			status, body := post(t, s, importForm(tt.token, tt.rows))
			if tt.want == "" {
				if status != 200 {
					t.Fatalf("refused: %d %s", status, body)
				}
				return
			}
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

	// Unlocked again, the import goes in; a deleted record is gone from exports.
	s := New(classic(t))
	s.LockRecord(classicToken, "1", true)
	s.LockRecord(classicToken, "1", false)
	if status, body := post(t, s, importForm(classicToken, []map[string]string{{"record_id": "1", "mobile": "1"}})); status != 200 {
		t.Fatalf("after unlocking: %d %s", status, body)
	}
	s.Delete(classicToken, "1")
	if got := s.Export(classicToken); len(got) != 0 {
		t.Errorf("after DeleteRecord: %v", got)
	}
}
