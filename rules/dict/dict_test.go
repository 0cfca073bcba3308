package dict

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseChoices(t *testing.T) {
	tests := []struct {
		spec    string
		want    []Choice
		wantErr string
	}{
		{spec: "1, Yes | 0, No", want: []Choice{{"1", "Yes"}, {"0", "No"}}},
		{spec: "1, Street, City, State|2,Other", want: []Choice{{"1", "Street, City, State"}, {"2", "Other"}}},
		{spec: " -1 , Refused |  | 99, Don't know ", want: []Choice{{"-1", "Refused"}, {"99", "Don't know"}}},
		{spec: "abc | def", want: []Choice{{"abc", "abc"}, {"def", "def"}}},
		{spec: "", want: nil},
		{spec: "1, a | 1, b", wantErr: `choice code "1" is listed twice`},
		{spec: ", nothing", wantErr: "has no code"},
	}
	for _, tt := range tests {
		got, err := ParseChoices(tt.spec)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseChoices(%q) error = %v, want containing %q", tt.spec, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseChoices(%q) = %v, %v; want %v", tt.spec, got, err, tt.want)
		}
	}
}

func TestCheckboxColumn(t *testing.T) {
	tests := []struct{ field, code, want string }{
		{"race", "2", "race___2"},
		{"race", "-1", "race____1"},
		{"x", "A.b", "x___a_b"},
		{"x", "abc_9", "x___abc_9"},
		{"x", "UNK", "x___unk"},
		{"x", "a b-c", "x___a_b_c"},
	}
	for _, tt := range tests {
		if got := CheckboxColumn(tt.field, tt.code); got != tt.want {
			t.Errorf("CheckboxColumn(%q, %q) = %q, want %q", tt.field, tt.code, got, tt.want)
		}
	}
}

const sampleDict = "\ufeff" + `"Variable / Field Name","Form Name","Section Header","Field Type","Field Label","Choices, Calculations, OR Slider Labels","Field Note","Text Validation Type OR Show Slider Number","Text Validation Min","Text Validation Max",Identifier?,"Branching Logic (Show field only if...)","Required Field?"
record_id,contact,,text,"Record ID",,,,,,,,
mobile,contact,,text,"Mobile",,,phone,,,y,,
intro,contact,,descriptive,"Welcome",,,,,,,,
race,contact,,checkbox,"Race","1, White | 2, Black, or African American | -1, Refused",,,,,,,
,,,,,,,,,,,,
consent,contact,,yesno,"Consent?",,,,,,,,
bp_date,bp,,text,"Date",,,date_ymd,,,,"[consent] = '1'",
bp_sys,bp,,text,"Systolic",,,integer,0,300,,,
mood,bp,,slider,"Mood","Sad | Happy",,number,,,,,
ok,bp,,truefalse,"OK?",,,,,,,,
bmi,bp,,calc,"BMI","round([bp_sys]/2,1)",,,,,,,
`

func TestParseCSV(t *testing.T) {
	d, err := ParseCSV(strings.NewReader(sampleDict))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.RecordID(); got != "record_id" {
		t.Errorf("RecordID() = %q", got)
	}
	if got, want := d.Forms(), []string{"contact", "bp"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Forms() = %v, want %v", got, want)
	}
	race, ok := d.Field("race")
	if !ok {
		t.Fatal("race missing")
	}
	if lbl, ok := race.Label("2"); !ok || lbl != "Black, or African American" {
		t.Errorf("race.Label(2) = %q, %v", lbl, ok)
	}
	if _, ok := race.Label("9"); ok {
		t.Error("race.Label(9) found a label for an unknown code")
	}
	consent, _ := d.Field("consent")
	if want := []Choice{{"1", "Yes"}, {"0", "No"}}; !reflect.DeepEqual(consent.Choices, want) {
		t.Errorf("yesno choices = %v", consent.Choices)
	}
	okf, _ := d.Field("ok")
	if want := []Choice{{"1", "True"}, {"0", "False"}}; !reflect.DeepEqual(okf.Choices, want) {
		t.Errorf("truefalse choices = %v", okf.Choices)
	}
	bmi, _ := d.Field("bmi")
	if bmi.Calculation != "round([bp_sys]/2,1)" || bmi.Choices != nil {
		t.Errorf("calc field = %+v", bmi)
	}
	bpDate, _ := d.Field("bp_date")
	if bpDate.Validation != "date_ymd" || bpDate.BranchingLogic != "[consent] = '1'" || bpDate.Text != "Date" {
		t.Errorf("bp_date = %+v", bpDate)
	}
	mood, _ := d.Field("mood")
	if mood.Validation != "" || mood.Choices != nil {
		t.Errorf("slider = %+v, want no validation and no choices", mood)
	}

	wantCols := []string{"record_id", "mobile", "race___1", "race___2", "race____1", "consent", "contact_complete",
		"bp_date", "bp_sys", "mood", "ok", "bmi", "bp_complete"}
	var gotCols []string
	for _, c := range d.ExportColumns() {
		gotCols = append(gotCols, c.Name)
	}
	if !reflect.DeepEqual(gotCols, wantCols) {
		t.Errorf("ExportColumns() = %v\nwant %v", gotCols, wantCols)
	}

	has := map[string]bool{
		"record_id": true, "race___2": true, "race____1": true, "contact_complete": true, "bp_complete": true,
		"race": false, "intro": false, "race___9": false, "redcap_event_name": false, "nope_complete": false,
	}
	for col, want := range has {
		if got := d.HasColumn(col); got != want {
			t.Errorf("HasColumn(%q) = %v, want %v", col, got, want)
		}
	}
	cols := map[string][]string{
		"race":  {"race___1", "race___2", "race____1"},
		"bp":    nil,
		"intro": nil,
		"bmi":   {"bmi"},
	}
	for f, want := range cols {
		if got := d.Columns(f); !reflect.DeepEqual(got, want) {
			t.Errorf("Columns(%q) = %v, want %v", f, got, want)
		}
	}
	if c, ok := d.Column("race____1"); !ok || c.Field != "race" || c.Code != "-1" || c.Form != "contact" {
		t.Errorf("Column(race____1) = %+v, %v", c, ok)
	}
	if c, ok := d.Column("bp_complete"); !ok || !c.Complete || c.Form != "bp" || c.Field != "" {
		t.Errorf("Column(bp_complete) = %+v, %v", c, ok)
	}
}

func TestParseCSVMetadataHeaderAndNA(t *testing.T) {
	src := `"field_name","form_name","section_header","field_type","field_label","select_choices_or_calculations","text_validation_type_or_show_slider_number","branching_logic"
"study_id","demo",NA,"text","Study ID",NA,NA,NA
"sex","demo",NA,"radio","Sex","0, Female | 1, Male",NA,NA
"dob","demo",NA,"text","DOB",NA,"date_ymd",NA
`
	d, err := ParseCSV(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := d.Field("study_id")
	if id.Validation != "" || id.BranchingLogic != "" {
		t.Errorf("NA not blanked: %+v", id)
	}
	dob, _ := d.Field("dob")
	sex, _ := d.Field("sex")
	if dob.Validation != "date_ymd" || len(sex.Choices) != 2 {
		t.Errorf("dob = %+v, sex = %+v", dob, sex)
	}
}

func TestParseErrors(t *testing.T) {
	head := "field_name,form_name,field_type,select_choices_or_calculations\n"
	tests := []struct{ name, src, want string }{
		{"empty", "", "the file is empty"},
		{"not a dictionary", "a,b,c\n1,2,3\n", "lacks the field name"},
		{"no fields", head, "no fields"},
		{"unknown type", head + "id,f,text,\nx,f,matrix,\n", `line 3: field "x" has unknown type "matrix"`},
		{"duplicate", head + "id,f,text,\nid,f,text,\n", `field "id" is defined twice (first at line 2)`},
		{"no choices", head + "id,f,text,\nc,f,radio,\n", `radio field "c" has no choices`},
		{"bad choices", head + "id,f,text,\nc,f,checkbox,\"1, a | 1, b\"\n", `field "c": choice code "1" is listed twice`},
		{"blank name", head + ",f,text,\n", "line 2: the field name is blank"},
		{"no form", head + "id,,text,\n", `field "id" has no form name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCSV(strings.NewReader(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestFromMetadata(t *testing.T) {
	rows := []map[string]string{
		{"field_name": "record_id", "form_name": "enrol", "field_type": "text", "field_label": "ID"},
		{"field_name": "visit_ok", "form_name": "visit", "field_type": "dropdown", "select_choices_or_calculations": "1, Fine | 2, Not fine"},
	}
	d, err := FromMetadata(rows)
	if err != nil {
		t.Fatal(err)
	}
	f, ok := d.Field("visit_ok")
	if !ok || f.Form != "visit" || len(f.Choices) != 2 {
		t.Errorf("visit_ok = %+v", f)
	}
	if !d.HasColumn("enrol_complete") || !d.HasColumn("visit_complete") {
		t.Error("form status columns missing")
	}
	_, err = FromMetadata([]map[string]string{{"field_name": "x", "form_name": "f", "field_type": "bogus"}})
	if err == nil || !strings.Contains(err.Error(), "REDCap metadata: metadata row 1") {
		t.Errorf("error = %v", err)
	}
}

// sharedDir returns /work/shared/redcap-dictionaries: the folder "shared" beside the module root.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("module root not found")
		}
		dir = parent
	}
	d := filepath.Join(filepath.Dir(dir), "shared", "redcap-dictionaries")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("real dictionaries not available: %v", err)
	}
	return d
}

func TestRealDictionaries(t *testing.T) {
	dir := sharedDir(t)
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil || len(files) == 0 {
		t.Skipf("no dictionaries in %s", dir)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			d, err := ParseCSV(f)
			if err != nil {
				t.Fatal(err)
			}
			if d.RecordID() != d.Fields[0].Name || d.RecordID() == "" {
				t.Errorf("RecordID() = %q", d.RecordID())
			}
			for _, form := range d.Forms() {
				if !d.HasColumn(form + "_complete") {
					t.Errorf("no %s_complete column", form)
				}
			}
			for _, fl := range d.Fields {
				switch fl.Type {
				case "dropdown", "radio", "checkbox", "yesno", "truefalse":
					if len(fl.Choices) == 0 {
						t.Errorf("%s field %s has no choices", fl.Type, fl.Name)
					}
				}
				for _, col := range d.Columns(fl.Name) {
					if !d.HasColumn(col) {
						t.Errorf("Columns(%s) gave %s, which HasColumn denies", fl.Name, col)
					}
				}
			}
		})
	}
}

// TestRealExportHeaders checks the export columns the dictionary predicts against the header of
// the same project's real records export.
func TestRealExportHeaders(t *testing.T) {
	dir := sharedDir(t)
	pairs := map[string]string{
		"OuhscBbmc__REDCapR__inst__test-data__projects__longitudinal__dictionary.csv":                   "OuhscBbmc__REDCapR__inst__test-data__projects__longitudinal__data.csv",
		"OuhscBbmc__REDCapR__inst__test-data__projects__repeating-instruments-sparse__dictionary.csv":   "OuhscBbmc__REDCapR__inst__test-data__projects__repeating-instruments-sparse__data.csv",
		"OuhscBbmc__REDCapR__inst__test-data__projects__simple__metadata.csv":                           "OuhscBbmc__REDCapR__inst__test-data__projects__simple__data.csv",
		"OuhscBbmc__REDCapR__inst__test-data__projects__metadata-write__dictionary.csv":                 "OuhscBbmc__REDCapR__inst__test-data__projects__metadata-write__data.csv",
		"OuhscBbmc__REDCapR__inst__test-data__projects__validation-types-1__dictionary.csv":             "OuhscBbmc__REDCapR__inst__test-data__projects__validation-types-1__data.csv",
		"OuhscBbmc__REDCapR__inst__test-data__projects__decimal-comma-and-dot__dictionary.csv":          "OuhscBbmc__REDCapR__inst__test-data__projects__decimal-comma-and-dot__data.csv",
		"vubiostat__redcapAPI__inst__extdata__offlineConnectionFiles__TestRedcapAPI_DataDictionary.csv": "vubiostat__redcapAPI__inst__extdata__offlineConnectionFiles__TestRedcapAPI_Records.csv",
	}
	pseudo := map[string]bool{"redcap_event_name": true, "redcap_repeat_instrument": true,
		"redcap_repeat_instance": true, "redcap_data_access_group": true}
	for dictName, dataName := range pairs {
		t.Run(dictName, func(t *testing.T) {
			df, err := os.Open(filepath.Join(dir, dictName))
			if err != nil {
				t.Skip(err)
			}
			defer df.Close()
			d, err := ParseCSV(df)
			if err != nil {
				t.Fatal(err)
			}
			rf, err := os.Open(filepath.Join(dir, "records", dataName))
			if err != nil {
				t.Skip(err)
			}
			defer rf.Close()
			header, err := csv.NewReader(rf).Read()
			if err != nil {
				t.Fatal(err)
			}
			var got, want []string
			for _, h := range header {
				if !pseudo[h] {
					got = append(got, h)
				}
			}
			for _, c := range d.ExportColumns() {
				want = append(want, c.Name)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("export header\n got %v\nwant %v", got, want)
			}
		})
	}
}
