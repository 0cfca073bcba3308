package rules

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// replyStudy writes a study whose rule file is rulesYAML (with an SMTP
// section when smtp) and loads it.
func replyStudy(t *testing.T, rulesYAML string, smtp bool) (*Study, error) {
	t.Helper()
	config := studyHead
	if smtp {
		config += "smtp: { host: smtp.example.edu, port: 587, from: \"Study <study@example.edu>\" }\n"
	}
	dir := writeFiles(t, map[string]string{
		"nudge.yaml":            config,
		"rules/r.yaml":          rulesYAML,
		"templates/t.sms.txt":   "Hello\n",
		"templates/t.email.txt": "Subject: Hi\n\nRecord [record_id] is due.\n",
	})
	return Load(filepath.Join(dir, "nudge.yaml"))
}

// TestReplyActions: set takes [now] and [today], pause a duration and
// notify one staff address; the values load as the engine applies them.
func TestReplyActions(t *testing.T) {
	s, err := replyStudy(t, `replies:
  - name: pause-me
    keywords: [PAUSE, Later]
    set: { paused_at: "[NOW]", paused_on: "[today]", reason: "asked" }
    pause: 24h
    notify: coordinator@example.edu
`, true)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Replies[0]
	if r.Pause != 24*time.Hour || r.Notify != "coordinator@example.edu" {
		t.Errorf("pause %v, notify %q", r.Pause, r.Notify)
	}
	want := map[string]string{"paused_at": SetNow, "paused_on": SetToday, "reason": "asked"}
	for k, v := range want {
		if r.Set[k] != v {
			t.Errorf("set.%s = %q, want %q", k, r.Set[k], v)
		}
	}
}

// TestSafetyReplyMistakesRefused: every reply mistake is refused at load
// with FILE:LINE:COL and what to do — a keyword Twilio and nudge handle
// before any reply rule (the reply would never fire), a bracketed value that
// is not [now]/[today] (it would be written literally into REDCap), a bad
// or overlong pause, a notify that is not one address, and notify without
// an SMTP server (staff would never be told).
func TestSafetyReplyMistakesRefused(t *testing.T) {
	for _, tc := range []struct {
		name, rules string
		smtp        bool
		want        string
	}{
		{"stop keyword", "replies:\n  - name: r\n    keywords: [yes, Stop]\n", true,
			`r.yaml:3:21: keywords: "Stop" is a STOP keyword: Twilio stops every text to the sender and nudge records the opt-out before any reply rule`},
		{"start keyword", "replies:\n  - name: r\n    keywords: [unstop]\n", true, `r.yaml:3:16: keywords: "unstop" is a START keyword`},
		{"help keyword", "replies:\n  - name: r\n    keywords: [INFO]\n", true, `r.yaml:3:16: keywords: "INFO" is a HELP keyword`},
		{"piped set value", "replies:\n  - name: r\n    keywords: [done]\n    set: { done_at: \"[visit_date]\" }\n", true,
			`r.yaml:4:21: set.done_at: "[visit_date]": a set value is written as it stands; the only bracketed values are [now] and [today]`},
		{"bad pause", "replies:\n  - name: r\n    keywords: [later]\n    pause: 1 day\n", true, `r.yaml:4:12: pause: "1 day" is not a duration`},
		{"long pause", "replies:\n  - name: r\n    keywords: [later]\n    pause: 40d\n", true, `r.yaml:4:12: pause: 40d is longer than 30d`},
		{"notify a field", "replies:\n  - name: r\n    keywords: [later]\n    notify: \"[email]\"\n", true,
			`r.yaml:4:13: notify: "[email]" is not an email address: write one staff address`},
		{"notify with a name", "replies:\n  - name: r\n    keywords: [later]\n    notify: \"Coord <c@example.edu>\"\n", true,
			`notify: "Coord <c@example.edu>" is not an email address`},
		{"notify without smtp", "replies:\n  - name: r\n    keywords: [later]\n    notify: c@example.edu\n", false,
			`r.yaml:4:13: notify needs an smtp: section in`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := replyStudy(t, tc.rules, tc.smtp)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v\nwant an error containing %s", err, tc.want)
			}
		})
	}
}

// TestSafetyYesIsAReply: YES reaches reply rules (it opts back in only
// someone who opted out), so a YES keyword is not refused.
func TestSafetyYesIsAReply(t *testing.T) {
	if _, err := replyStudy(t, "replies:\n  - name: r\n    keywords: [YES, Y]\n", false); err != nil {
		t.Fatal(err)
	}
}

// TestSafetyReplyMatchClashWarned: a match that also matches STOP, START or
// HELP words is warned of at its position, naming the words; an anchored
// match is not.
func TestSafetyReplyMatchClashWarned(t *testing.T) {
	s, err := replyStudy(t, `replies:
  - name: loose
    match: "(yes|stop|help)"
  - name: tight
    match: "^(yes|y)$"
  - name: all
    match: ".*"
`, false)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Warnings().Error()
	for _, w := range []string{
		`r.yaml:3:12: match also matches STOP, STOPALL, UNSTOP, HELP: STOP is a STOP keyword`,
		`r.yaml:7:12: match also matches STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, OPTOUT, REVOKE, START, UNSTOP, HELP, INFO`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing warning\n  %s\ngot:\n%s", w, got)
		}
	}
	if strings.Contains(got, "r.yaml:5:") {
		t.Errorf("an anchored match was warned of:\n%s", got)
	}
}

// TestSafetyFixedToAddress: an email rule may send to one staff address
// written literally; an SMS rule may not (a fixed number would be taken for
// every participant's when its owner texts back), and a literal that is not
// an address is refused. The fixed address is every decision's To.
func TestSafetyFixedToAddress(t *testing.T) {
	s, err := replyStudy(t, `rules:
  - name: staff
    channel: email
    to: coordinator@example.edu
    template: t
`, true)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Rules[0]
	if r.ToAddress != "coordinator@example.edu" || r.To.Field != "" {
		t.Fatalf("to = %+v / %q", r.To, r.ToAddress)
	}
	rec := &Record{ID: "7", Rows: []*Row{{Values: map[string]string{"record_id": "7"}}}}
	ds := r.Evaluate(rec, time.Now(), nil)
	if len(ds) != 1 || ds[0].To != "coordinator@example.edu" {
		t.Errorf("decisions = %+v", ds)
	}
	for _, tc := range []struct{ channel, to, want string }{
		{"sms", `"+14155550123"`, `r.yaml:4:9: rule "staff": to: "+14155550123" is not a field reference: an sms rule names the field holding the phone number`},
		{"email", "coordinator", `r.yaml:4:9: rule "staff": to: "coordinator" is neither a field reference nor an email address`},
		{"email", `"Coord <c@example.edu>"`, `is neither a field reference nor an email address`},
	} {
		_, err := replyStudy(t, "rules:\n  - name: staff\n    channel: "+tc.channel+"\n    to: "+tc.to+"\n    template: t\n", true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("to: %s on %s: got %v\nwant %s", tc.to, tc.channel, err, tc.want)
		}
	}
}

// TestSafetySetValueFitsField: check refuses a set value the target field
// cannot hold — [now] or [today] in a field that holds no date, [today] in
// a datetime field (it has no time), a literal that fails the field's
// validation — and accepts [now] and [today] in date, datetime and plain
// text fields.
func TestSafetySetValueFitsField(t *testing.T) {
	d := mustDict(t, `d_ymd,f,,text,"D",,,date_ymd,,,,,,,,,,
d_mdy,f,,text,"D",,,date_mdy,,,,,,,,,,
dt_ymd,f,,text,"DT",,,datetime_ymd,,,,,,,,,,
dts_ymd,f,,text,"DTS",,,datetime_seconds_ymd,,,,,,,,,,
plain,f,,text,"P",,,,,,,,,,,,,
note,f,,notes,"N",,,,,,,,,,,,,
num,f,,text,"N",,,integer,,,,,,,,,,
yn,f,,yesno,"Y",,,,,,,,,,,,,
`)
	for _, tc := range []struct {
		field, value, want string // want "" = accepted
	}{
		{"d_ymd", SetNow, ""}, {"d_ymd", SetToday, ""}, {"d_mdy", SetToday, ""},
		{"dt_ymd", SetNow, ""}, {"dts_ymd", SetNow, ""}, {"plain", SetNow, ""}, {"plain", SetToday, ""}, {"note", SetNow, ""},
		{"dt_ymd", SetToday, "set.dt_ymd: [today] is a date, but [dt_ymd] is validated as datetime_ymd and needs a time too: write [now]"},
		{"dts_ymd", SetToday, "needs a time too"},
		{"num", SetNow, "set.num: [now] is a date, but [num] is a text (integer) field and cannot hold one"},
		{"yn", SetToday, "[yn] is a yesno field and cannot hold one"},
		{"d_ymd", "2026-13-01", "set.d_ymd: '2026-13-01' is not a valid date_ymd value"},
		{"dt_ymd", "2026-12-01", "is not a valid datetime_ymd value"},
		{"d_ymd", "2026-12-01", ""}, {"dt_ymd", "2026-12-01 09:30", ""},
	} {
		got := checkSetValue(d, tc.field, tc.value)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s = %s: got %q, want %q", tc.field, tc.value, got, tc.want)
		}
	}
}
