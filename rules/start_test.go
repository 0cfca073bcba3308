package rules

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// WallTime: ordinary days, the spring gap (moved to when the clock jumps)
// and the autumn repeated hour (the first), north and south.
func TestWallTime(t *testing.T) {
	ny, akl := zone(t, "America/New_York"), zone(t, "Pacific/Auckland")
	for _, c := range []struct {
		name string
		loc  *time.Location
		y    int
		mo   time.Month
		d    int
		at   string
		want string // RFC 3339
	}{
		{"NY winter", ny, 2027, 1, 15, "10:00", "2027-01-15T10:00:00-05:00"},
		{"NY summer", ny, 2027, 7, 15, "10:00", "2027-07-15T10:00:00-04:00"},
		{"NY gap 02:30", ny, 2027, 3, 14, "02:30", "2027-03-14T03:00:00-04:00"},
		{"NY repeated 01:30 is the first", ny, 2027, 11, 7, "01:30", "2027-11-07T01:30:00-04:00"},
		{"NY day after change", ny, 2027, 3, 15, "10:00", "2027-03-15T10:00:00-04:00"},
		{"Auckland gap 02:30", akl, 2027, 9, 26, "02:30", "2027-09-26T03:00:00+13:00"},
		{"Auckland repeated 02:30 is the first", akl, 2027, 4, 4, "02:30", "2027-04-04T02:30:00+13:00"},
		{"Auckland after autumn change", akl, 2027, 4, 4, "10:00", "2027-04-04T10:00:00+12:00"},
		{"day overflow", ny, 2027, 1, 32, "09:00", "2027-02-01T09:00:00-05:00"},
		{"day underflow", ny, 2027, 3, 0, "18:00", "2027-02-28T18:00:00-05:00"},
	} {
		m, _ := parseClock(c.at)
		got := WallTime(c.y, c.mo, c.d, m, c.loc)
		if got.Format(time.RFC3339) != c.want {
			t.Errorf("%s: WallTime = %s, want %s", c.name, got.Format(time.RFC3339), c.want)
		}
	}
}

func clocks(s ...string) []int {
	var out []int
	for _, x := range s {
		m, _ := parseClock(x)
		out = append(out, m)
	}
	return out
}

// ScheduleFrom: day offsets (negative ones before the date), several
// times, a datetime field's own time, an EMA series, across DST changes.
func TestScheduleFrom(t *testing.T) {
	ny, akl := zone(t, "America/New_York"), zone(t, "Pacific/Auckland")
	quit := &Rule{Start: &Start{Field: logic.Ref{Field: "quit_date"}, Days: []int{7, 14, 28}, At: clocks("10:00")}}
	visit := &Rule{Start: &Start{Field: logic.Ref{Field: "visit_date"}, Days: []int{-1}, At: clocks("18:00")}}
	appt := &Rule{Start: &Start{Field: logic.Ref{Field: "visit_dt"}, Days: []int{-1}}}
	ema := &Rule{Start: &Start{Field: logic.Ref{Field: "ema_start"}}, Every: &Every{Days: 14, At: clocks("09:00", "14:00", "19:00")}}
	emaLater := &Rule{Start: &Start{Field: logic.Ref{Field: "ema_start"}, Days: []int{1}}, Every: &Every{Days: 2, At: clocks("09:00")}}
	for _, c := range []struct {
		name  string
		r     *Rule
		value string
		loc   *time.Location
		want  []string
	}{
		{"quit date across the NY spring change", quit, "2027-03-07", ny,
			[]string{"2027-03-14T10:00:00-04:00", "2027-03-21T10:00:00-04:00", "2027-04-04T10:00:00-04:00"}},
		{"quit date before the NY change", quit, "2027-03-01", ny,
			[]string{"2027-03-08T10:00:00-05:00", "2027-03-15T10:00:00-04:00", "2027-03-29T10:00:00-04:00"}},
		{"quit date across the Auckland autumn change", quit, "2027-03-28", akl,
			[]string{"2027-04-04T10:00:00+12:00", "2027-04-11T10:00:00+12:00", "2027-04-25T10:00:00+12:00"}},
		{"negative offset: the evening before", visit, "2027-03-01", ny, []string{"2027-02-28T18:00:00-05:00"}},
		{"datetime field without at: its own time", appt, "2027-06-10 14:30", ny, []string{"2027-06-09T14:30:00-04:00"}},
		{"series starting a day after the date", emaLater, "2027-01-10", ny,
			[]string{"2027-01-11T09:00:00-05:00", "2027-01-12T09:00:00-05:00"}},
	} {
		occs, err := c.r.ScheduleFrom(c.value, c.loc)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []string
		for i, o := range occs {
			got = append(got, o.Due.Format(time.RFC3339))
			if o.N != i+1 || o.Total != len(occs) {
				t.Errorf("%s: occurrence %d numbered %d of %d", c.name, i, o.N, o.Total)
			}
		}
		if strings.Join(got, " ") != strings.Join(c.want, " ") {
			t.Errorf("%s:\n got %v\nwant %v", c.name, got, c.want)
		}
	}
	occs, err := ema.ScheduleFrom("2027-03-01", ny)
	if err != nil || len(occs) != 42 {
		t.Fatalf("EMA: %d occurrences, %v; want 42", len(occs), err)
	}
	if got := occs[0].Due.Format(time.RFC3339); got != "2027-03-01T09:00:00-05:00" {
		t.Errorf("EMA occurrence 1 = %s: day 0 is the date itself", got)
	}
	if got := occs[41].Due.Format(time.RFC3339); got != "2027-03-14T19:00:00-04:00" {
		t.Errorf("EMA occurrence 42 = %s, want day 13 at 19:00 EDT", got)
	}
	if got := occs[2].Describe(zone(t, "Pacific/Honolulu")); got != "occurrence 3 of 42, due 2027-03-01 14:00 HST" {
		t.Errorf("Describe = %q", got)
	}
	if _, err := quit.ScheduleFrom("03/07/2027", ny); err == nil || !strings.Contains(err.Error(), "[quit_date] does not hold a date") {
		t.Errorf("a non-date: %v", err)
	}
	if _, err := appt.ScheduleFrom("2027-06-10", ny); err == nil || !strings.Contains(err.Error(), "give start.at") {
		t.Errorf("a date without at: %v", err)
	}
}

// The default expiry of a timed occurrence: two hours, cut at the next
// occurrence and at the end of the allowed hours; expires overrides.
func TestExpiresAtTimed(t *testing.T) {
	ny := zone(t, "America/New_York")
	due := time.Date(2027, 1, 10, 9, 0, 0, 0, ny)
	r := &Rule{}
	if got := r.ExpiresAtTimed(due, time.Time{}, ny); !got.Equal(due.Add(2 * time.Hour)) {
		t.Errorf("default = %s", got)
	}
	if got := r.ExpiresAtTimed(due, due.Add(time.Hour), ny); !got.Equal(due.Add(time.Hour)) {
		t.Errorf("next occurrence sooner = %s", got)
	}
	r.Window = &Window{From: 8 * 60, To: 9*60 + 30}
	if got := r.ExpiresAtTimed(due, time.Time{}, ny); !got.Equal(due.Add(30 * time.Minute)) {
		t.Errorf("window end sooner = %s", got)
	}
	r.Expires = 6 * time.Hour
	if got := r.ExpiresAtTimed(due, due.Add(time.Hour), ny); !got.Equal(due.Add(6 * time.Hour)) {
		t.Errorf("expires = %s", got)
	}
}

// loadTimed loads a study whose one rule has the given extra lines (from
// line 7 of rules/r.yaml).
func loadTimed(t *testing.T, extra string) (*Study, string, error) {
	t.Helper()
	rule := "rules:\n  - name: quit\n    event: baseline_arm_1\n    channel: sms\n    to: \"[mobile]\"\n    template: t\n" + extra + "\n"
	dir := writeFiles(t, map[string]string{"nudge.yaml": oncePerHead, "rules/r.yaml": rule, "templates/t.sms.txt": "Hi\n"})
	s, err := Load(filepath.Join(dir, "nudge.yaml"))
	return s, filepath.Join(dir, "rules", "r.yaml"), err
}

func TestTimedDecode(t *testing.T) {
	s, _, err := loadTimed(t, "    start: { field: \"[enrollment_arm_1][quit_date]\", days: [28, 7, 14], at: \"10:00\" }\n"+
		"    remind: { after: 30m, unless: \"[ema_complete] = '2'\" }")
	if err != nil {
		t.Fatal(err)
	}
	r := s.Rule("quit")
	if !r.Timed() || r.Start.Field != (logic.Ref{Event: "enrollment_arm_1", Field: "quit_date"}) ||
		len(r.Start.Days) != 3 || r.Start.At[0] != 600 || r.Remind.After != 30*time.Minute || r.Remind.Unless == nil {
		t.Errorf("decoded %+v %+v", r.Start, r.Remind)
	}
	if f := s.Fields("main"); !contains(f, "quit_date") || !contains(f, "ema_complete") {
		t.Errorf("Fields = %v: the start field and remind.unless fields must be exported", f)
	}
	s, _, err = loadTimed(t, "    start: { field: \"[ema_start]\" }\n    every: { days: 14, at: [\"19:00\", \"09:00\", \"14:00\"], instrument: ema }")
	if err != nil {
		t.Fatal(err)
	}
	// A reminder once per visit date: a moved date gets its own reminder.
	v, _, err := loadTimed(t, "    start: { field: \"[visit_date]\", days: -1, at: \"18:00\" }\n    once_per: \"[visit_date]\"")
	if err != nil || v.Rule("quit").OncePer != (logic.Ref{Field: "visit_date"}) {
		t.Errorf("start with once_per: %v %+v", err, v)
	}
	if e := s.Rule("quit").Every; e.Days != 14 || len(e.At) != 3 || e.At[0] != 540 || e.Instrument != "ema" {
		t.Errorf("every = %+v; times sorted", e)
	}
}

func TestTimedErrors(t *testing.T) {
	for _, c := range []struct{ extra, want string }{
		{`    start: { field: "[quit_date]", day: 7 }`, `:7:36: rule "quit": unknown key 'day' in start (did you mean 'days'?): use one of field, days, at`},
		{`    start: { days: 7, at: "10:00" }`, `:7:12: rule "quit": start needs field`},
		{`    start: { field: "[quit_date]", days: 7, at: "25:00" }`, `:7:49: rule "quit": start.at: "25:00" is not a time of day`},
		{`    start: { field: "[quit_date]", days: [7, 7], at: "10:00" }`, `:7:46: rule "quit": start.days: 7 is listed twice`},
		{`    start: { field: "[quit_date]", days: seven, at: "10:00" }`, `:7:42: rule "quit": start.days: expected a whole number, got "seven"`},
		{"    start: { field: \"[quit_date]\", days: 7, at: \"07:00\" }\n    window: { from: \"09:00\", to: \"20:00\" }",
			`:7:49: rule "quit": start.at: 07:00 is outside the allowed hours 09:00-20:00 (window): move it inside, or widen the window`},
		{`    every: { days: 14, at: "09:00" }`, `:7:12: rule "quit": every needs start`},
		{"    start: { field: \"[s]\" }\n    every: { days: 14 }", `:8:12: rule "quit": every needs at`},
		{"    start: { field: \"[s]\", days: 7, at: \"10:00\" }\n    repeat: { every: 1d, max: 3 }", `:8:13: rule "quit": repeat: a timed rule (start) repeats by start.days or every`},
		{"    start: { field: \"[s]\" }\n    every: { days: 14, at: \"09:00\" }\n    once_per: \"[s]\"", `:9:15: rule "quit": once_per: a series (every) follows its start field`},
		{"    start: { field: \"[s]\" }\n    remind: { after: soon }", `:8:22: rule "quit": remind.after: "soon" is not a duration`},
	} {
		_, file, err := loadTimed(t, c.extra)
		if err == nil || !strings.HasPrefix(err.Error(), file+c.want) {
			t.Errorf("%s:\nLoad error:\n%v\nwant it to start with\n%s%s", c.extra, err, file, c.want)
		}
	}
}

// The start field must hold dates; without at, times of day too.
func TestTimedCheckFields(t *testing.T) {
	const csv = "Variable / Field Name,Form Name,Section Header,Field Type,Field Label,\"Choices, Calculations, OR Slider Labels\",Field Note,Text Validation Type OR Show Slider Number\n" +
		"record_id,enrollment,,text,ID,,,\nmobile,enrollment,,text,Mobile,,,phone\nquit_date,enrollment,,text,Quit,,,date_ymd\n" +
		"quit_note,enrollment,,text,Note,,,\nappt,enrollment,,text,Appt,,,datetime_ymd\n"
	d, err := dict.ParseCSV(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ extra, want string }{
		{`    start: { field: "[quit_date]", days: 7, at: "10:00" }`, ""},
		{`    start: { field: "[appt]", days: -1 }`, ""},
		{`    start: { field: "[quit_note]", days: 7, at: "10:00" }`, `:7:21: rule "quit": start.field: [quit_note] is text, not a date`},
		{`    start: { field: "[quit_date]", days: 7 }`, `:7:21: rule "quit": start.field: [quit_date] holds a date without a time of day: give start.at`},
	} {
		s, file, err := loadTimed(t, c.extra)
		if err != nil {
			t.Fatalf("%s: %v", c.extra, err)
		}
		errs := s.CheckFields(map[string]*dict.Dictionary{"main": d})
		if c.want == "" {
			if len(errs) != 0 {
				t.Errorf("%s: CheckFields = %v, want none", c.extra, errs)
			}
		} else if !strings.HasPrefix(errs.Error(), file+c.want) {
			t.Errorf("%s: CheckFields:\n%v\nwant it to start with\n%s%s", c.extra, errs, file, c.want)
		}
	}
}
