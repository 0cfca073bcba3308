package rules

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// quietStudy loads a study whose config ends with extra and whose one SMS
// rule has the given window line ("" = none).
func quietStudy(t *testing.T, extra, window string) (*Study, error) {
	t.Helper()
	rule := "rules:\n  - name: remind\n    channel: sms\n    to: \"[mobile]\"\n    template: t\n"
	if window != "" {
		rule += "    window: " + window + "\n"
	}
	dir := writeFiles(t, map[string]string{
		"nudge.yaml": "timezone: America/Los_Angeles\nprojects:\n  - { name: main, redcap_url: https://redcap.example.edu/api/, token_env: T }\n" +
			"twilio: { account_sid_env: S, auth_token_env: A, from: \"+14155550100\" }\n" + extra,
		"rules/r.yaml":        rule,
		"templates/t.sms.txt": "Hello\n",
	})
	return Load(filepath.Join(dir, "nudge.yaml"))
}

// TestSafetyOvernightWindowRefused proves a window written from 21:00 to
// 08:00, which would send only at night, is refused at load with its
// position and the ways out, unless overnight: true says it is meant; and
// that overnight: true on a day window is refused too.
func TestSafetyOvernightWindowRefused(t *testing.T) {
	cases := []struct {
		window string
		want   []string // "" = loads
	}{
		{`{ from: "21:00", to: "08:00" }`, []string{"r.yaml:6:13", "would send only between 21:00 and 08:00", `from "08:00" to "21:00"`, "quiet_hours", "overnight: true"}},
		{`{ from: "21:00", to: "08:00", overnight: true }`, nil},
		{`{ from: "09:00", to: "20:00", overnight: true }`, []string{"r.yaml:6:54", "does not cross midnight"}},
		{`{ from: "09:00", to: "20:00" }`, nil},
		{`{ from: "09:00", to: "00:00" }`, nil}, // until midnight
	}
	for _, c := range cases {
		s, err := quietStudy(t, "", c.window)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", c.window, err)
				continue
			}
			r := s.Rules[0]
			if got := r.Window.Contains(time.Date(2026, 1, 5, 23, 0, 0, 0, time.UTC), time.UTC); got != (r.Window.From > r.Window.To) {
				t.Errorf("%s: 23:00 allowed = %v", c.window, got)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: loaded", c.window)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.window, err, w)
			}
		}
	}
}

// TestSafetyQuietHoursInherited proves every SMS rule keeps the study's
// quiet hours, with or without a window of its own, email being exempt; a
// window wholly inside them is refused; and bad quiet_hours and caps are
// refused with their positions.
func TestSafetyQuietHoursInherited(t *testing.T) {
	const quiet = "quiet_hours: { from: \"21:00\", to: \"08:00\" }\ncaps: { per_day: 1, per_week: 5 }\n"
	la, _ := time.LoadLocation("America/Los_Angeles")
	at := func(h, m int) time.Time { return time.Date(2026, 3, 8, h, m, 0, 0, la) } // spring forward in LA
	for _, window := range []string{"", `{ from: "06:00", to: "22:00" }`} {
		s, err := quietStudy(t, quiet, window)
		if err != nil {
			t.Fatal(err)
		}
		r, c := s.Rules[0], s.Config
		if c.Caps.PerDay != 1 || c.Caps.PerWeek != 5 {
			t.Fatalf("caps %+v", c.Caps)
		}
		q := c.QuietFor(r)
		for _, tc := range []struct {
			t    time.Time
			want bool
		}{{at(7, 59), false}, {at(8, 0), true}, {at(20, 59), true}, {at(21, 0), false}, {at(23, 30), false}, {at(1, 0), false}} {
			if got := r.Allowed(tc.t, la, q); got != tc.want {
				t.Errorf("window %q: allowed at %s = %v", window, tc.t.Format("15:04"), got)
			}
		}
		next, ok := r.NextAllowed(at(21, 30), la, q)
		if want := time.Date(2026, 3, 9, 8, 0, 0, 0, la); !ok || !next.Equal(want) {
			t.Errorf("window %q: next allowed after 21:30 = %s %v, want %s", window, next, ok, want)
		}
		r.Channel = ChannelEmail
		if c.QuietFor(r) != nil {
			t.Error("email keeps quiet hours")
		}
	}
	_, err := quietStudy(t, quiet, `{ from: "22:00", to: "06:00", overnight: true }`)
	if err == nil || !strings.Contains(err.Error(), "wholly inside the study's quiet hours") || !strings.Contains(err.Error(), "r.yaml:6:13") {
		t.Errorf("window inside quiet hours: %v", err)
	}
	for extra, want := range map[string]string{
		"quiet_hours: { from: \"21:00\" }\n":                      "quiet_hours needs to",
		"quiet_hours: { from: \"21:00\", to: \"8\" }\n":           "nudge.yaml:5:35: quiet_hours.to",
		"quiet_hours: { from: \"21:00\", to: \"08:00\", x: 1 }\n": "quiet_hours",
		"caps: { per_day: 0 }\n":                                  "caps.per_day: 0 is not a positive count",
		"caps: { per_day: 3, per_week: 2 }\n":                     "per_week 2 is less than per_day 3",
		"caps: { per_month: 3 }\n":                                "per_day",
	} {
		if _, err := quietStudy(t, extra, ""); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", extra, err, want)
		}
	}
}

// TestCapsAllowsByLocalDay proves caps count by the participant's local
// calendar day and the seven local days ending with it, across a
// daylight-saving change.
func TestCapsAllowsByLocalDay(t *testing.T) {
	lh, err := time.LoadLocation("Australia/Lord_Howe")
	if err != nil {
		t.Skip(err)
	}
	at := func(d, h int) time.Time { return time.Date(2026, 4, d, h, 0, 0, 0, lh) } // DST ends 5 April
	c := Caps{PerDay: 1, PerWeek: 3}
	if ok, _ := c.Allows(at(5, 23), lh, []time.Time{at(5, 1)}); ok {
		t.Error("second text on one local day allowed")
	}
	if ok, _ := c.Allows(at(6, 0), lh, []time.Time{at(5, 23)}); !ok {
		t.Error("text on the next local day refused")
	}
	ok, why := c.Allows(at(8, 9), lh, []time.Time{at(2, 9), at(4, 9), at(6, 9)})
	if ok || why != "cap reached: 3 texts in 7 days" {
		t.Errorf("week cap: %v %q", ok, why)
	}
	if ok, _ := c.Allows(at(9, 9), lh, []time.Time{at(2, 9), at(4, 9), at(6, 9)}); !ok {
		t.Error("text on the 8th day after the first refused")
	}
}
