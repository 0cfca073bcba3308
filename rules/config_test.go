package rules

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeStudy writes a study with one SMS rule and the given config text
// into a temporary directory and returns the config's path.
func writeStudy(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"nudge.yaml": config,
		"rules/r.yaml": "rules:\n  - name: remind\n    channel: sms\n    to: \"[mobile_phone]\"\n    template: remind\n    event: any\n" +
			"replies:\n  - name: confirm\n    keywords: [yes]\n    event: visit_arm_1\n    set: { visit_confirmed: \"1\" }\n",
		"templates/remind.sms.txt": "Hi [first_name], time for your survey.\n",
	}
	for name, text := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "nudge.yaml")
}

const studyHead = `timezone: America/Los_Angeles
projects:
  - name: main
    redcap_url: https://redcap.example.edu/api/
    token_env: REDCAP_TOKEN_MAIN
twilio: { account_sid_env: TWILIO_ACCOUNT_SID, auth_token_env: TWILIO_AUTH_TOKEN, from: "+14155550100" }
`

func TestServerSettings(t *testing.T) {
	const help = `help_text: "Study: reply STOP to stop texts."`
	tests := []struct {
		name    string
		server  string // the server section, "" = none
		want    Server // checked when wantErr is ""
		wantErr string
	}{
		{name: "defaults without a server section",
			want: Server{Listen: ":8080", RunEvery: 15 * time.Minute, PollEvery: 15 * time.Second, WritebackEvery: 15 * time.Second}},
		{name: "defaults in an empty-ish section", server: `server: { listen: "127.0.0.1:9000" }`,
			want: Server{Listen: "127.0.0.1:9000", RunEvery: 15 * time.Minute, PollEvery: 15 * time.Second, WritebackEvery: 15 * time.Second}},
		{name: "all set", server: `server: { public_url: "https://nudge.example.edu/sms", ` + help + `, run_every: 1h30m, poll_every: 5s, writeback_every: 2m }`,
			want: Server{Listen: ":8080", PublicURL: "https://nudge.example.edu/sms", HelpText: "Study: reply STOP to stop texts.",
				RunEvery: 90 * time.Minute, PollEvery: 5 * time.Second, WritebackEvery: 2 * time.Minute}},
		{name: "run_every 0 means never", server: `server: { run_every: 0 }`,
			want: Server{Listen: ":8080", RunEvery: 0, PollEvery: 15 * time.Second, WritebackEvery: 15 * time.Second}},
		{name: "run_every 0m means never", server: `server: { run_every: 0m }`,
			want: Server{Listen: ":8080", RunEvery: 0, PollEvery: 15 * time.Second, WritebackEvery: 15 * time.Second}},
		{name: "poll_every 0", server: `server: { poll_every: 0s }`,
			wantErr: `:7:23: server.poll_every: "0s" is zero: the interval must be positive, e.g. 15s`},
		{name: "writeback_every 0", server: `server: { writeback_every: 0 }`,
			wantErr: `server.writeback_every: "0" is zero: the interval must be positive, e.g. 15s`},
		{name: "no unit", server: `server: { run_every: 15 }`,
			wantErr: `server.run_every: "15" is not a duration: write a whole number with d, h, m or s, e.g. 15m, 15s or 1h30m, or 0 for never`},
		{name: "Go spelling", server: `server: { poll_every: 1.5s }`, wantErr: `server.poll_every: "1.5s" is not a duration`},
		{name: "overflow", server: `server: { poll_every: 9999999999999999d }`, wantErr: `server.poll_every: "9999999999999999d" is too long: write at most 106751d`},
		{name: "not a URL", server: `server: { public_url: nudge.example.edu, ` + help + ` }`,
			wantErr: `server.public_url: "nudge.example.edu" is not an absolute http(s) URL`},
		{name: "relative URL", server: `server: { public_url: /twilio, ` + help + ` }`,
			wantErr: `server.public_url: "/twilio" is not an absolute http(s) URL`},
		{name: "ftp URL", server: `server: { public_url: "ftp://nudge.example.edu", ` + help + ` }`,
			wantErr: `server.public_url: "ftp://nudge.example.edu" is not an absolute http(s) URL`},
		{name: "URL with query", server: `server: { public_url: "https://nudge.example.edu/?a=1", ` + help + ` }`,
			wantErr: `has a query or fragment`},
		{name: "URL with password", server: `server: { public_url: "https://u:hunter2@nudge.example.edu", ` + help + ` }`,
			wantErr: `server.public_url: the URL must not hold a user name or password`},
		{name: "help_text optional (Twilio answers HELP itself)", server: `server: { public_url: "https://nudge.example.edu" }`,
			want: Server{Listen: ":8080", PublicURL: "https://nudge.example.edu", RunEvery: 15 * time.Minute, PollEvery: 15 * time.Second, WritebackEvery: 15 * time.Second}},
		{name: "trigger secret", server: `server: { trigger_secret_env: NUDGE_TRIGGER_SECRET }`,
			want: Server{Listen: ":8080", TriggerSecretEnv: "NUDGE_TRIGGER_SECRET", RunEvery: 15 * time.Minute, PollEvery: 15 * time.Second, WritebackEvery: 15 * time.Second}},
		{name: "trigger secret in the file", server: `server: { trigger_secret_env: "3f9a-secret!" }`,
			wantErr: `server.trigger_secret_env: "3f9a-secret!" is not an environment variable name`},
		{name: "help_text blank", server: `server: { public_url: "https://nudge.example.edu", help_text: " " }`,
			wantErr: `server.help_text is blank`},
		{name: "help_text too long", server: `server: { help_text: "` + strings.Repeat("a", MaxHelpText+1) + `" }`,
			wantErr: `server.help_text is 1601 characters long: Twilio sends at most 1600 in one message`},
		{name: "unknown key", server: `server: { run_evry: 1m }`, wantErr: `unknown key 'run_evry' in server (did you mean 'run_every'?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeStudy(t, studyHead+tt.server+"\n")
			s, err := Load(path)
			if tt.wantErr != "" {
				var errs Errors
				if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v\nwant one error containing %q", err, tt.wantErr)
				}
				if strings.Contains(errs.Error(), "hunter2") {
					t.Errorf("error leaks a password: %v", errs)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := s.Config.Server
			got.Pos = Pos{}
			got.Health = HealthLimits{} // TestServerMonitorSettings checks it
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("server = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestReplyEvent(t *testing.T) {
	path := writeStudy(t, studyHead)
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Replies) != 1 || s.Replies[0].Event != "visit_arm_1" {
		t.Fatalf("replies = %+v", s.Replies)
	}
	if errs := s.CheckEvents("main", []string{"visit_arm_1"}); len(errs) != 0 {
		t.Errorf("known reply event reported: %v", errs)
	}
	errs := s.CheckEvents("main", []string{"visit_arm_2", "baseline_arm_1"})
	want := filepath.Join(filepath.Dir(path), "rules", "r.yaml") + ":10:12: unknown event 'visit_arm_1' in project main (did you mean 'visit_arm_2'?): use a unique event name such as visit_arm_2"
	if errs.Error() != want {
		t.Errorf("CheckEvents = %v\nwant %s", errs, want)
	}
}

func TestProjectForTrigger(t *testing.T) {
	c := &Config{Projects: []Project{
		{Name: "plain", RedcapURL: "https://redcap.example.edu/api/", ProjectID: 12},
		{Name: "prefixed", RedcapURL: "https://example.edu/redcap/api/", ProjectID: 12},
		{Name: "test-install", RedcapURL: "https://example.edu/redcap-test/api/", ProjectID: 12},
		{Name: "root", RedcapURL: "https://example.edu/api/", ProjectID: 12},
		{Name: "ported", RedcapURL: "http://127.0.0.1:8081/api/", ProjectID: 7},
		{Name: "default-port", RedcapURL: "https://redcap.example.edu:443/api/", ProjectID: 13},
		{Name: "no-id", RedcapURL: "https://redcap.example.edu/api/"},
	}}
	tests := []struct {
		url  string
		id   int
		want string // "" = refused
	}{
		{"https://redcap.example.edu/", 12, "plain"},
		{"https://redcap.example.edu", 12, "plain"},
		{"HTTPS://REDCap.Example.EDU/", 12, "plain"},
		{"https://redcap.example.edu:443/", 12, "plain"},
		{"https://redcap.example.edu/", 13, "default-port"},
		{"https://redcap.example.edu/api/", 12, "plain"},
		{"https://redcap.example.edu/api", 12, "plain"},
		{"http://redcap.example.edu/", 12, ""},
		{"https://redcap.example.edu:8443/", 12, ""},
		{"https://redcap.example.edu/", 99, ""},
		{"https://redcap.example.edu/", 0, ""},
		{"https://redcap.example.edu/other/", 12, ""},
		{"https://redcap.example.org/", 12, ""},
		{"https://evil.example.edu/redcap.example.edu/", 12, ""},
		{"https://example.edu/redcap/", 12, "prefixed"},
		{"https://example.edu/redcap", 12, "prefixed"},
		{"https://example.edu/redcap//", 12, "prefixed"},
		{"https://example.edu/redcap-test/", 12, "test-install"},
		{"https://example.edu/red/", 12, ""},
		{"https://example.edu/", 12, "root"},
		{"http://127.0.0.1:8081/", 7, "ported"},
		{"http://127.0.0.1/", 7, ""},
		{"http://127.0.0.1:80/", 7, ""},
		{"not a url", 12, ""},
		{"", 12, ""},
		{"ftp://redcap.example.edu/", 12, ""},
	}
	for _, tt := range tests {
		p, ok := c.ProjectForTrigger(tt.url, tt.id)
		got := ""
		if p != nil {
			got = p.Name
		}
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("ProjectForTrigger(%q, %d) = %q, %v; want %q", tt.url, tt.id, got, ok, tt.want)
		}
	}
	if p, _ := c.ProjectForTrigger("https://redcap.example.edu/", 12); p != &c.Projects[0] {
		t.Errorf("ProjectForTrigger returned a copy, want a pointer into Config.Projects")
	}
}

func TestParseInterval(t *testing.T) {
	tests := []struct {
		in     string
		zeroOK bool
		want   time.Duration
		ok     bool
	}{
		{"15s", false, 15 * time.Second, true},
		{"15m", false, 15 * time.Minute, true},
		{"1h30m", false, 90 * time.Minute, true},
		{"1d", false, 24 * time.Hour, true},
		{"2m30s", false, 150 * time.Second, true},
		{"0", true, 0, true},
		{"0s", true, 0, true},
		{"0", false, 0, false},
		{"0s", false, 0, false},
		{"15", false, 0, false},
		{"15 s", false, 0, false},
		{"-5s", false, 0, false},
		{"1.5s", false, 0, false},
		{"15ms", false, 0, false},
		{"", true, 0, false},
		{"106751d", false, 106751 * 24 * time.Hour, true},
		{"106752d", false, 0, false},
		{"106751d23h59m59s", false, 0, false},
	}
	for _, tt := range tests {
		got, err := parseInterval(tt.in, tt.zeroOK)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseInterval(%q, %v) = %v, %v; want %v, ok=%v", tt.in, tt.zeroOK, got, err, tt.want, tt.ok)
		}
	}
}

// TestSafetyHelpTextOptional: a study that texts needs no help_text (Twilio
// answers HELP itself on most numbers), but a blank one is still an error.
func TestSafetyHelpTextOptional(t *testing.T) {
	s, err := Load(writeStudy(t, studyHead+`server: { public_url: "https://nudge.example.edu" }`+"\n"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s.Config.Server.HelpText != "" {
		t.Errorf("help_text %q, want none", s.Config.Server.HelpText)
	}
	if _, err := Load(writeStudy(t, studyHead+`server: { help_text: "" }`+"\n")); err == nil || !strings.Contains(err.Error(), "server.help_text is blank") {
		t.Errorf("blank help_text: %v", err)
	}
}

// TestSafetyOnSaveNeedsTriggerSecret: a rule that runs on save, in a study
// without a trigger secret, would never run (every trigger is refused):
// loading says so at the rule's schedule.
func TestSafetyOnSaveNeedsTriggerSecret(t *testing.T) {
	onSave := "rules:\n  - name: remind\n    channel: sms\n    to: \"[mobile_phone]\"\n    template: remind\n    schedule: on_save\n"
	tests := []struct {
		name, server, rule string
		wantErr            string
	}{
		{"on_save without a secret", "", onSave, `r.yaml:6:15: rule "remind": schedule: on_save needs server.trigger_secret_env`},
		{"on_save with a secret", "server: { trigger_secret_env: NUDGE_TRIGGER_SECRET }\n", onSave, ""},
		{"disabled on_save rule", "", onSave + "    enabled: false\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeStudy(t, studyHead+tt.server)
			if err := os.WriteFile(filepath.Join(filepath.Dir(path), "rules", "r.yaml"), []byte(tt.rule), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "?secret=") {
				t.Errorf("Load error = %v\nwant one containing %q and how to set the URL", err, tt.wantErr)
			}
		})
	}
}

// The timing of an unanswered create's lookups: defaults, a study's own,
// and the floors that keep a late-landing create from being sent twice.
func TestUnansweredTiming(t *testing.T) {
	tests := []struct {
		yaml           string
		lookup, resend time.Duration
		wantErr        string
	}{
		{"", DefaultLookupAfter, DefaultResendAfter, ""},
		{"  unanswered_lookup_after: 10s\n  unanswered_resend_after: 2m\n", 10 * time.Second, 2 * time.Minute, ""},
		{"  unanswered_resend_after: 10s\n", 0, 0, "too short"},
		{"  unanswered_lookup_after: 5m\n  unanswered_resend_after: 4m\n", 0, 0, "must be longer"},
	}
	for _, tt := range tests {
		dir := t.TempDir()
		cfg := "timezone: UTC\nprojects:\n  - name: main\n    redcap_url: https://redcap.example.edu/api/\n    token_env: TOKEN\n" +
			"twilio:\n  account_sid_env: SID\n  auth_token_env: TOK\n  from: \"+14155550100\"\n" + tt.yaml
		path := filepath.Join(dir, "nudge.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		var errs Errors
		c := loadConfig(path, &errs)
		if tt.wantErr != "" {
			if len(errs) == 0 || !strings.Contains(errs.Error(), tt.wantErr) {
				t.Errorf("%q: errors %v, want %q", tt.yaml, errs, tt.wantErr)
			}
			continue
		}
		if len(errs) > 0 || c.Twilio.LookupAfter != tt.lookup || c.Twilio.ResendAfter != tt.resend {
			t.Errorf("%q: %v, %v, %v", tt.yaml, c.Twilio.LookupAfter, c.Twilio.ResendAfter, errs)
		}
	}
}

func TestPrivacySettings(t *testing.T) {
	def := Privacy{RedactAtTwilio: true, KeepBodies: DefaultKeepBodies, KeepHistory: DefaultKeepHistory, KeepInbound: DefaultKeepInbound}
	tests := []struct {
		name, section string
		want          Privacy
		wantErr       string
	}{
		{name: "defaults without a section", want: def},
		{name: "all set", section: `privacy: { redact_at_twilio: false, keep_bodies: 7d, keep_history: 180d, keep_inbound: 12h }`,
			want: Privacy{KeepBodies: 7 * 24 * time.Hour, KeepHistory: 180 * 24 * time.Hour, KeepInbound: 12 * time.Hour}},
		{name: "forever", section: `privacy: { keep_bodies: forever }`,
			want: Privacy{RedactAtTwilio: true, KeepHistory: DefaultKeepHistory, KeepInbound: DefaultKeepInbound}},
		{name: "zero", section: `privacy: { keep_bodies: 0d }`, wantErr: `privacy.keep_bodies: "0d" is zero: a duration must be positive, or forever to keep it`},
		{name: "not a duration", section: `privacy: { keep_inbound: 3 months }`, wantErr: `:7:26: privacy.keep_inbound: "3 months" is not a duration`},
		{name: "not a bool", section: `privacy: { redact_at_twilio: yes please }`, wantErr: `privacy.redact_at_twilio: expected true or false`},
		{name: "unknown key", section: `privacy: { keep_body: 3d }`, wantErr: `unknown key 'keep_body' in privacy (did you mean 'keep_bodies'?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(writeStudy(t, studyHead+tt.section+"\n"))
			if tt.wantErr != "" {
				var errs Errors
				if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v\nwant one error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := s.Config.Privacy
			got.Pos = Pos{}
			if got != tt.want {
				t.Errorf("Privacy = %+v\nwant %+v", got, tt.want)
			}
		})
	}
}
