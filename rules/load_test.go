package rules

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// loadDicts parses the data dictionary of every project that names one.
func loadDicts(t *testing.T, c *Config) map[string]*dict.Dictionary {
	t.Helper()
	dicts := map[string]*dict.Dictionary{}
	for _, p := range c.Projects {
		if p.Dictionary == "" {
			continue
		}
		f, err := os.Open(p.Dictionary)
		if err != nil {
			t.Fatal(err)
		}
		d, err := dict.ParseCSV(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p.Dictionary, err)
		}
		dicts[p.Name] = d
	}
	return dicts
}

// checkStructureFiles checks the study against the events and
// instrument-event files its projects name, as nudge check does.
func checkStructureFiles(t *testing.T, s *Study, dicts map[string]*dict.Dictionary) Errors {
	t.Helper()
	var errs Errors
	for i := range s.Config.Projects {
		p := &s.Config.Projects[i]
		st, err := ReadStructure(p)
		if err != nil {
			t.Fatal(err)
		}
		errs = append(errs, s.CheckStructure(p.Name, dicts[p.Name], st)...)
	}
	return errs
}

// TestBadFixtures loads every testdata/bad/<case>/nudge.yaml and compares
// the errors (load errors, or else field errors against the case's data
// dictionary followed by warnings) with testdata/bad/<case>/errors.golden.
func TestBadFixtures(t *testing.T) {
	dirs, err := filepath.Glob("testdata/bad/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			s, err := Load(filepath.Join(dir, "nudge.yaml"))
			var errs Errors
			if err != nil {
				if !errors.As(err, &errs) {
					t.Fatalf("Load returned %T, want Errors: %v", err, err)
				}
			}
			if err == nil && s != nil {
				dicts := loadDicts(t, s.Config)
				errs = append(s.CheckFields(dicts), s.Warnings()...)
				if structureErrs := checkStructureFiles(t, s, dicts); len(structureErrs) > 0 {
					errs = append(errs, structureErrs...)
					errs.Sort()
				}
			}
			if len(errs) == 0 {
				t.Fatal("no errors for a bad fixture")
			}
			got := errs.Error() + "\n"
			golden := filepath.Join(dir, "errors.golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
			for _, e := range errs {
				if strings.Contains(e.Msg, "0123456789ABCDEF") || strings.Contains(e.Msg, "hunter2") || strings.Contains(e.Msg, "abc123") {
					t.Errorf("error leaks a secret: %v", e)
				}
			}
		})
	}
}

func TestLoadGood(t *testing.T) {
	path := filepath.Join("testdata", "good", "nudge.yaml")
	s, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	c := s.Config
	absDir, _ := filepath.Abs(filepath.Join("testdata", "good"))
	if c.Study != "Good study" || c.Timezone != "America/Los_Angeles" || c.Location.String() != "America/Los_Angeles" {
		t.Errorf("config header = %q %q %v", c.Study, c.Timezone, c.Location)
	}
	if want := filepath.Join(absDir, "data", "nudge.db"); c.Storage.Path != want {
		t.Errorf("Storage.Path = %q, want %q", c.Storage.Path, want)
	}
	if want := filepath.Join(absDir, "templates"); c.TemplatesDir != want {
		t.Errorf("TemplatesDir = %q, want %q", c.TemplatesDir, want)
	}
	if p := c.Project("main"); p == nil || p.TokenEnv != "REDCAP_TOKEN_MAIN" || p.Dictionary != filepath.Join(absDir, "dictionaries", "main.csv") {
		t.Errorf("project main = %+v", p)
	}
	if c.Twilio == nil || c.Twilio.From != "+14155550100" || c.Twilio.RatePerSecond != 0.5 || c.Twilio.AuthTokenEnv != "TWILIO_AUTH_TOKEN" {
		t.Errorf("twilio = %+v", c.Twilio)
	}
	if c.Twilio.Region != "US" || c.SenderFor("main").Pick("+15035550100") != "+14155550100" || c.SenderFor("site-2").Pick("+15035550100") != "+14155550199" {
		t.Errorf("region %q, senders %+v %+v", c.Twilio.Region, c.SenderFor("main"), c.SenderFor("site-2"))
	}
	if !s.Uses(ChannelSMS) || !s.Uses(ChannelEmail) || s.Uses("fax") {
		t.Errorf("Uses: sms=%v email=%v fax=%v", s.Uses(ChannelSMS), s.Uses(ChannelEmail), s.Uses("fax"))
	}
	if c.SMTP == nil || c.SMTP.Port != 587 || c.SMTP.TLS != "mandatory" || c.SMTP.PasswordEnv != "SMTP_PASSWORD" {
		t.Errorf("smtp = %+v", c.SMTP)
	}
	wantServer := Server{Listen: ":8080", PublicURL: "https://nudge.example.edu",
		HelpText: "Good study: reply STOP to stop texts, START to resume. Questions? Call (415) 555-0100.",
		RunEvery: 10 * time.Minute, PollEvery: 30 * time.Second, WritebackEvery: 90 * time.Second,
		TriggerSecretEnv: "NUDGE_TRIGGER_SECRET", Health: defaultHealth(10 * time.Minute), Pos: Pos{File: path, Line: 24, Col: 3}}
	if !reflect.DeepEqual(c.Server, wantServer) {
		t.Errorf("server = %+v\nwant %+v", c.Server, wantServer)
	}
	main, site2 := c.Project("main"), c.Project("site-2")
	if main.ProjectID != 12 || site2.ProjectID != 12 {
		t.Errorf("project ids = %d, %d; want 12, 12", main.ProjectID, site2.ProjectID)
	}
	if o := main.OptOut; o == nil || o.Field != "sms_opt_in" || o.Value != "0" || o.OptInValue != "1" ||
		o.Pos != (Pos{File: path, Line: 12, Col: 14}) || o.pos["field"] != (Pos{File: path, Line: 12, Col: 23}) {
		t.Errorf("main opt_out = %+v", main.OptOut)
	}
	if o := site2.OptOut; o == nil || o.Field != "texts_ok" || o.Value != "no" || o.OptInValue != "" {
		t.Errorf("site-2 opt_out = %+v", site2.OptOut)
	}
	wantFiles := []string{"testdata/good/rules/baseline.yaml", "testdata/good/rules/diary.yaml"}
	if !reflect.DeepEqual(s.Files, wantFiles) {
		t.Errorf("Files = %q, want %q", s.Files, wantFiles)
	}

	if len(s.Rules) != 3 {
		t.Fatalf("got %d rules, want 3", len(s.Rules))
	}
	bl := s.Rule("baseline-reminder")
	if bl == nil {
		t.Fatal("no rule baseline-reminder")
	}
	if bl.Project != "main" || bl.Event != "baseline_arm_1" || bl.Channel != ChannelSMS || !bl.Enabled ||
		bl.To != (logic.Ref{Field: "mobile_phone"}) || bl.Schedule != "0 10 * * *" || bl.OnSave {
		t.Errorf("baseline-reminder = %+v", bl)
	}
	if bl.Pos != (Pos{File: "testdata/good/rules/baseline.yaml", Line: 3, Col: 5}) {
		t.Errorf("Pos = %v", bl.Pos)
	}
	if bl.Repeat != (Repeat{Every: 72 * time.Hour, Max: 3}) {
		t.Errorf("Repeat = %+v", bl.Repeat)
	}
	if w := bl.Window; w == nil || w.From != 9*60 || w.To != 20*60 || w.TimezoneField != (logic.Ref{Field: "tz"}) {
		t.Errorf("Window = %+v", bl.Window)
	}
	if bl.WriteBack != (WriteBack{Status: "bl_sms_status", SID: "bl_sms_sid", SentAt: "bl_sms_sent_at", Error: "bl_sms_error"}) {
		t.Errorf("WriteBack = %+v", bl.WriteBack)
	}
	if bl.SMS == nil || bl.Email != nil || bl.When == nil || len(bl.When.Conjuncts()) != 3 {
		t.Errorf("template/when not loaded: %+v", bl)
	}

	diary := s.Rule("diary-followup")
	if diary == nil || !diary.OnSave || diary.Schedule != "" || diary.Instrument != "diary" || diary.Email == nil || diary.Repeat.Max != 1 {
		t.Errorf("diary-followup = %+v", diary)
	}
	if paused := s.Rule("paused"); paused == nil || paused.Enabled || paused.When != nil || paused.Window.From != 22*60 || !paused.AnyEvent || paused.Event != "" {
		t.Errorf("paused = %+v", paused)
	}

	if len(s.Replies) != 2 {
		t.Fatalf("got %d replies, want 2", len(s.Replies))
	}
	confirm, help := s.Replies[0], s.Replies[1]
	if confirm.Name != "confirm" || confirm.OnlyAfterRule != "baseline-reminder" || confirm.Within != 48*time.Hour ||
		confirm.Set["visit_confirmed"] != "1" || confirm.Reply == nil || confirm.Project != "main" || confirm.Event != "baseline_arm_1" {
		t.Errorf("confirm = %+v", confirm)
	}
	if help.Event != "" {
		t.Errorf("help.Event = %q, want none", help.Event)
	}
	for body, want := range map[string]bool{"YES": true, " y ": true, "yes please": false, "no": false} {
		if got := confirm.Matches(body); got != want {
			t.Errorf("confirm.Matches(%q) = %v, want %v", body, got, want)
		}
	}
	for body, want := range map[string]bool{"Question": true, "QUESTIONS!": true, "question me": false} {
		if got := help.Matches(body); got != want {
			t.Errorf("help.Matches(%q) = %v, want %v", body, got, want)
		}
	}

	if errs := s.CheckFields(loadDicts(t, c)); len(errs) > 0 {
		t.Errorf("CheckFields on the good study:\n%v", errs)
	}
	wantFields := []string{"baseline_complete", "consent_complete", "diary_mood", "email", "first_name",
		"mobile_phone", "race", "sms_opt_in", "tz", "visit_date"}
	if got := s.Fields("main"); !reflect.DeepEqual(got, wantFields) {
		t.Errorf("Fields(main) = %q,\nwant %q", got, wantFields)
	}
	if got := s.Fields("other"); len(got) != 0 {
		t.Errorf("Fields(other) = %q, want none", got)
	}
}

func TestCheckEvents(t *testing.T) {
	s, err := Load(filepath.Join("testdata", "good", "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.CheckEvents("main", []string{"baseline_arm_1", "week_1_arm_1"}); len(errs) > 0 {
		t.Errorf("known events reported: %v", errs)
	}
	errs := s.CheckEvents("main", []string{"baseline_arm_2", "week_1_arm_1"})
	want := `testdata/good/rules/baseline.yaml:6:12: rule "baseline-reminder": unknown event 'baseline_arm_1' in project main (did you mean 'baseline_arm_2'?): use a unique event name such as baseline_arm_2
testdata/good/rules/baseline.yaml:19:12: unknown event 'baseline_arm_1' in project main (did you mean 'baseline_arm_2'?): use a unique event name such as baseline_arm_2
testdata/good/rules/diary.yaml:7:12: rule "diary-followup": unknown event 'baseline_arm_1' in project main (did you mean 'baseline_arm_2'?): use a unique event name such as baseline_arm_2`
	if errs.Error() != want {
		t.Errorf("CheckEvents:\n%v\nwant\n%s", errs, want)
	}
}

func TestSecret(t *testing.T) {
	c := &Config{Path: "nudge.yaml"}
	t.Setenv("NUDGE_TEST_SECRET", "s3cr3t-value")
	if v, err := c.Secret("NUDGE_TEST_SECRET"); err != nil || v != "s3cr3t-value" {
		t.Errorf("Secret = %q, %v", v, err)
	}
	t.Setenv("NUDGE_TEST_EMPTY", "")
	for _, name := range []string{"NUDGE_TEST_UNSET_VARIABLE", "NUDGE_TEST_EMPTY"} {
		_, err := c.Secret(name)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Secret(%s) error = %v, want one naming the variable", name, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"72h", 72 * time.Hour, true},
		{"3d", 72 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"0d", 0, false},
		{"3 days", 0, false},
		{"2w", 0, false},
		{"1.5h", 0, false},
		{"30s", 0, false},
		{"999999999999d", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "schedule", "when", "window", "write_back"}
	tests := map[string]string{
		"shedule":   "schedule",
		"nmae":      "name",
		"writeback": "write_back",
		"wehn":      "when",
		"colour":    "",
		"x":         "",
	}
	for in, want := range tests {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadUnusableConfig(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.yaml")
	if err := os.WriteFile(empty, []byte("# nothing yet\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{filepath.Join(dir, "missing.yaml"), "missing.yaml: cannot read the config file: no such file or directory"},
		{empty, "empty.yaml: the config file is empty"},
	}
	for _, tt := range tests {
		s, err := Load(tt.path)
		var errs Errors
		if s != nil || !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs.Error(), tt.want) {
			t.Errorf("Load(%s) = %v, %v; want one error containing %q", tt.path, s, err, tt.want)
		}
	}
}
