package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/rules/dict"
)

const initToken = "0123456789ABCDEF0123456789ABCDEF"

// sharedDictionaries returns ../shared/redcap-dictionaries from the module
// root, skipping the test when it is absent.
func sharedDictionaries(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "redcap-dictionaries"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("real dictionaries not available: %v", err)
	}
	return dir
}

func parseDict(t *testing.T, src string) *dict.Dictionary {
	t.Helper()
	d, err := dict.ParseCSV(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const dictHeader = "field_name,form_name,section_header,field_type,field_label,select_choices_or_calculations,field_note,text_validation_type_or_show_slider_number\n"

// The example rule's fields are found by validation first, then by name;
// a participant's own number beats an emergency contact's; consent needs a
// "yes" code; an sms_opt_in field is the opt-out field, not the consent.
func TestInitDetectFields(t *testing.T) {
	for _, c := range []struct {
		name, rows string
		want       initFields
	}{
		{"validation beats name", `id,f,,text,ID,,,
cell_note,f,,notes,Cell notes,,,
home_phone,f,,text,Home phone,,,
mobile,f,,text,Mobile,,,phone
contact_email,f,,text,Email,,,
mail,f,,text,Mail,,,email
`, initFields{Phone: "mobile", Email: "mail"}},
		{"by name, not an emergency contact", `id,f,,text,ID,,,
ec_phone,f,,text,Emergency contact phone,,,
phone_number,f,,text,Phone,,,
email_yn,f,,yesno,Has email,,,
email,f,,text,E-mail,,,
first_name,f,,text,First name,,,
`, initFields{Phone: "phone_number", Email: "email", Name: "first_name"}},
		{"emergency contact only", `id,f,,text,ID,,,
ec_phone,f,,text,Emergency contact phone,,,phone
`, initFields{Phone: "ec_phone"}},
		{"consent radio with a yes-like label", `id,f,,text,ID,,,
consent_signed,f,,radio,Signed?,"0, No | 1, I agree",,
`, initFields{Consent: "consent_signed", ConsentYes: "1"}},
		{"consent by label, code not 1", `id,f,,text,ID,,,
agree,f,,dropdown,Did the participant give consent?,"N, No | Y, Yes",,
`, initFields{Consent: "agree", ConsentYes: "Y"}},
		{"consent without a yes is no consent field", `id,f,,text,ID,,,
consent_date,f,,text,Consent date,,,date_ymd
consent_version,f,,radio,Consent version,"1, v1 | 2, v2",,
`, initFields{}},
		{"opt-in and opt-out fields", `id,f,,text,ID,,,
sms_consent,f,,yesno,May we text you?,,,
`, initFields{OptOut: "sms_consent", OptOutStop: "0", OptOutStart: "1", OptOutIsOptIn: true}},
		{"opt-out field", `id,f,,text,ID,,,
consent,f,,yesno,Consented,,,
sms_opt_out,f,,yesno,Opted out,,,
`, initFields{Consent: "consent", ConsentYes: "1", OptOut: "sms_opt_out", OptOutStop: "1", OptOutStart: "0"}},
		{"nothing to find", `id,f,,text,ID,,,
weight,f,,text,Weight,,,number
`, initFields{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := detectFields(parseDict(t, dictHeader+c.rows), nil)
			if got != c.want {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// A field of a repeating instrument is not used: the rule reads base rows.
func TestInitDetectSkipsRepeating(t *testing.T) {
	d := parseDict(t, dictHeader+`id,f,,text,ID,,,
diary_phone,diary,,text,Phone,,,phone
cell,f,,text,Cell,,,
`)
	got := detectFields(d, func(f dict.Field) bool { return f.Form != "diary" })
	if got.Phone != "cell" {
		t.Errorf("phone = %q, want cell", got.Phone)
	}
}

// initCase is one REDCap project `nudge init` is run against.
type initCase struct {
	name    string
	project func(t *testing.T) *redcaptest.Project
	// record is a participant the example rule selects once enabled;
	// nil when the project has no contact field to text.
	record map[string]string
	// want are lines the generated files must hold (file → substrings).
	want map[string][]string
}

func sharedProject(file string, longitudinal bool) func(t *testing.T) *redcaptest.Project {
	return func(t *testing.T) *redcaptest.Project {
		src, err := os.ReadFile(filepath.Join(sharedDictionaries(t), file))
		if err != nil {
			t.Fatal(err)
		}
		d, err := dict.ParseCSV(strings.NewReader(string(src)))
		if err != nil {
			t.Fatal(err)
		}
		p := &redcaptest.Project{Token: initToken, ID: 4242, Title: "Shared: " + file, Dict: d}
		if longitudinal {
			// Two events: every form in the first, the last form again in the second.
			p.Events = []redcap.Event{{Name: "Baseline", Arm: 1, UniqueName: "baseline_arm_1", ID: 1}, {Name: "Follow-up", Arm: 1, UniqueName: "followup_arm_1", ID: 2}}
			forms := d.Forms()
			for _, f := range forms {
				p.FormEvents = append(p.FormEvents, redcap.FormEvent{Arm: 1, Event: "baseline_arm_1", Form: f})
			}
			p.FormEvents = append(p.FormEvents, redcap.FormEvent{Arm: 1, Event: "followup_arm_1", Form: forms[len(forms)-1]})
		}
		return p
	}
}

// TestInitAgainstSimulator runs `nudge init` against the REDCap simulator
// serving real projects' dictionaries: the study folder it writes passes
// `nudge check` with no warning, `nudge preview` runs on it, and once the
// example rule is enabled preview plans its message for a participant.
func TestInitAgainstSimulator(t *testing.T) {
	cases := []initCase{
		{name: "classic with phone and email (REDCapR dag-write)",
			project: sharedProject("OuhscBbmc__REDCapR__inst__test-data__projects__dag-write__dictionary.csv", false),
			record:  map[string]string{"record_id": "1", "telephone": "(405) 555-0101"},
			want: map[string][]string{
				"rules/*.yaml":   {`to: "[telephone]"   # validated as a phone number in REDCap`, "channel: sms", "# write_back: { status: nudge_sms_status"},
				initWriteBackCSV: {"nudge_sms_status,demographics,,text", "sms_opt_out,demographics,,yesno"},
			}},
		{name: "validation types (REDCapR validation-types-1)",
			project: sharedProject("OuhscBbmc__REDCapR__inst__test-data__projects__validation-types-1__dictionary.csv", false),
			record:  map[string]string{"record_id": "1", "v_phone": "(405) 555-0101"},
			want:    map[string][]string{"rules/*.yaml": {`to: "[v_phone]"`}}},
		{name: "redcapAPI test project",
			project: sharedProject("vubiostat__redcapAPI__inst__extdata__offlineConnectionFiles__TestRedcapAPI_DataDictionary.csv", false),
			record:  map[string]string{"record_id": "1", "phone_test": "(615) 555-0101"},
			want:    map[string][]string{"rules/*.yaml": {`to: "[phone_test]"`}}},
		{name: "email only (harmonist PEOPLE)",
			project: sharedProject("vanderbilt-redcap__harmonist-hub__csv__PEOPLE.csv", false),
			record:  map[string]string{"record_id": "1", "email": "someone@example.org"},
			want:    map[string][]string{"rules/*.yaml": {`to: "[email]"`, "channel: email"}, "nudge.yaml": {"smtp:\n  host: smtp.example.edu", "# twilio:"}}},
		{name: "no contact field (REDCapR decimal-dot)",
			project: sharedProject("OuhscBbmc__REDCapR__inst__test-data__projects__decimal-dot__dictionary.csv", false),
			want:    map[string][]string{"rules/*.yaml": {"to: " + initStaffAddress}}},
		{name: "longitudinal (REDCapR longitudinal dictionary, two events)",
			project: sharedProject("OuhscBbmc__REDCapR__inst__test-data__projects__longitudinal__dictionary.csv", true),
			record:  map[string]string{"study_id": "1", "redcap_event_name": "baseline_arm_1", "telephone_1": "(405) 555-0101"},
			want: map[string][]string{
				"nudge.yaml":   {"events: redcap/", "instrument_events: redcap/"},
				"rules/*.yaml": {"event: baseline_arm_1", `to: "[telephone_1]"`},
			}},
		{name: "longitudinal with surveys (demo site_b)",
			project: func(t *testing.T) *redcaptest.Project {
				f, err := redcaptest.FindFiles(filepath.Join(demoDir, "redcap", "site_b"))
				if err != nil {
					t.Fatal(err)
				}
				p, _, err := redcaptest.LoadFiles(f, 1002)
				if err != nil {
					t.Fatal(err)
				}
				p.Token = initToken
				return p
			},
			record: map[string]string{"participant_id": "B-1", "redcap_event_name": "enrollment_arm_1", "cell": "(415) 555-0101", "given_name": "Ana", "enrolled": "1"},
			want: map[string][]string{
				"nudge.yaml":                         {"surveys: [daily_diary, mood_check]", "events: redcap/site_b.events.csv", "project_id: 1002"},
				"rules/*.yaml":                       {"event: enrollment_arm_1", `to: "[cell]"`},
				"templates/example-reminder.sms.txt": {"Hello [given_name|there],"},
			}},
	}
	initClientOptions = []redcap.Option{redcap.WithRate(0)}
	defer func() { initClientOptions = nil }()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.project(t)
			srv := redcaptest.New(p)
			url, err := srv.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			t.Setenv("INIT_TEST_TOKEN", initToken)
			t.Setenv("TZ", "America/Chicago")
			dir := t.TempDir()

			out, errOut, code := nudge(t, "init", "--redcap-url", url, "--token-env", "INIT_TEST_TOKEN", "--dir", dir)
			if code != 0 {
				t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
			}
			if !strings.Contains(out, "Next steps:") || strings.Contains(out+errOut, initToken) {
				t.Errorf("init output lacks next steps or shows the token:\n%s", out)
			}
			for file, wants := range c.want {
				matches, _ := filepath.Glob(filepath.Join(dir, file))
				if len(matches) != 1 {
					t.Fatalf("%s: %d files", file, len(matches))
				}
				b, _ := os.ReadFile(matches[0])
				for _, w := range wants {
					if !strings.Contains(string(b), w) {
						t.Errorf("%s lacks %q:\n%s", file, w, b)
					}
				}
			}
			cfg := filepath.Join(dir, "nudge.yaml")
			if b, _ := os.ReadFile(cfg); !strings.Contains(string(b), "timezone: America/Chicago\n") {
				t.Errorf("nudge.yaml does not take the machine's zone:\n%s", b)
			}
			out, errOut, code = nudge(t, "check", "--config", cfg)
			if code != 0 || strings.Contains(out, "warning") {
				b, _ := os.ReadFile(cfg)
				rb, _ := os.ReadFile(filepath.Join(dir, "rules", filepath.Base(firstGlob(t, dir, "rules/*.yaml"))))
				t.Fatalf("check: exit %d\n%s%s\n--- nudge.yaml\n%s\n--- rule\n%s", code, out, errOut, b, rb)
			}

			if c.record != nil {
				if err := srv.Load(initToken, []map[string]string{c.record}); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("NUDGE_SIM_REDCAP_URL", url)
			out, errOut, code = nudge(t, "preview", "--config", cfg, "--log-level", "error")
			if code != 0 {
				t.Fatalf("preview: exit %d\n%s%s", code, out, errOut)
			}
			if c.record == nil {
				return
			}
			// Enabled, the example rule plans its message for the participant.
			rule := firstGlob(t, dir, "rules/*.yaml")
			b, _ := os.ReadFile(rule)
			if err := os.WriteFile(rule, []byte(strings.Replace(string(b), "enabled: false", "enabled: true", 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, errOut, code = nudge(t, "check", "--config", cfg); code != 0 {
				t.Fatalf("check of the enabled rule: exit %d\n%s%s", code, out, errOut)
			}
			out, errOut, code = nudge(t, "preview", "--config", cfg, "--log-level", "error", "--as-of", "2027-01-15 10:00")
			if code != 0 || !strings.Contains(out, initRule+" → record ") {
				t.Fatalf("preview of the enabled rule: exit %d, want its message\n%s%s", code, out, errOut)
			}
			initWithCreatedFields(t, p, dir)
		})
	}
}

// initWithCreatedFields creates the fields write_back_fields.csv lists in
// the project, as the team would, and runs init again: the example rule's
// write_back (and the opt_out entry) are then active and check is clean.
func initWithCreatedFields(t *testing.T, p *redcaptest.Project, dir string) {
	t.Helper()
	snippet, err := os.ReadFile(filepath.Join(dir, initWriteBackCSV))
	if err != nil {
		t.Fatal(err)
	}
	added := parseDict(t, string(snippet))
	fields := append(append([]dict.Field(nil), p.Dict.Fields...), added.Fields...)
	p.Dict = dict.New(fields)
	srv := redcaptest.New(p)
	url, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Setenv("NUDGE_SIM_REDCAP_URL", "")
	out, errOut, code := nudge(t, "init", "--redcap-url", url, "--token-env", "INIT_TEST_TOKEN", "--dir", dir, "--force")
	if code != 0 {
		t.Fatalf("init again: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "Create the fields") || strings.Contains(out, initWriteBackCSV) {
		t.Errorf("init with the fields in place still asks to create them:\n%s", out)
	}
	rule, _ := os.ReadFile(firstGlob(t, dir, "rules/*.yaml"))
	cfgText, _ := os.ReadFile(filepath.Join(dir, "nudge.yaml"))
	if !strings.Contains(string(rule), "\n    write_back: {") {
		t.Errorf("write_back still commented out:\n%s", rule)
	}
	if strings.Contains(string(rule), "channel: sms") && !strings.Contains(string(cfgText), "\n    opt_out: { field: sms_opt_out") {
		t.Errorf("opt_out still commented out:\n%s", cfgText)
	}
	out, errOut, code = nudge(t, "check", "--config", filepath.Join(dir, "nudge.yaml"))
	if code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("check with write_back: exit %d\n%s%s\n%s", code, out, errOut, rule)
	}
}

// init refuses to overwrite a study's files (writing none of them) unless
// --force, and refuses a token given where its variable's name is due.
func TestInitRefusesToOverwrite(t *testing.T) {
	d := parseDict(t, dictHeader+"id,f,,text,ID,,,\ncell,f,,text,Cell,,,phone\n")
	srv := redcaptest.New(&redcaptest.Project{Token: initToken, ID: 7, Title: "Small study", Dict: d})
	url, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	initClientOptions = []redcap.Option{redcap.WithRate(0)}
	defer func() { initClientOptions = nil }()
	t.Setenv("INIT_TEST_TOKEN", initToken)
	dir := t.TempDir()
	mine := filepath.Join(dir, "rules", "small_study.yaml")
	os.MkdirAll(filepath.Dir(mine), 0o755)
	os.WriteFile(mine, []byte("# my edits\n"), 0o644)

	_, errOut, code := nudge(t, "init", "--redcap-url", url, "--token-env", "INIT_TEST_TOKEN", "--dir", dir)
	if code != 1 || !strings.Contains(errOut, mine) || !strings.Contains(errOut, "--force") {
		t.Errorf("init over an existing file: exit %d\n%s", code, errOut)
	}
	if b, _ := os.ReadFile(mine); string(b) != "# my edits\n" {
		t.Errorf("the existing file was changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "nudge.yaml")); err == nil {
		t.Error("init wrote nudge.yaml although it refused")
	}
	if _, _, code = nudge(t, "init", "--redcap-url", url, "--token-env", "INIT_TEST_TOKEN", "--dir", dir, "--force"); code != 0 {
		t.Errorf("init --force: exit %d", code)
	}
	if b, _ := os.ReadFile(mine); !strings.Contains(string(b), "name: "+initRule) {
		t.Errorf("--force did not write the rule file:\n%s", b)
	}

	_, errOut, code = nudge(t, "init", "--redcap-url", url, "--token-env", initToken, "--dir", t.TempDir())
	if code != 2 || strings.Contains(errOut, initToken) {
		t.Errorf("a token as --token-env: exit %d, want 2 without the token\n%s", code, errOut)
	}
	_, errOut, code = nudge(t, "init", "--redcap-url", url, "--token-env", "INIT_UNSET_VARIABLE", "--dir", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "INIT_UNSET_VARIABLE is not set") {
		t.Errorf("an unset variable: exit %d\n%s", code, errOut)
	}
}

func firstGlob(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	return m[0]
}
