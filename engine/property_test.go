package engine_test

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
)

// propertyZones are the participants' and studies' zones of the property
// test: half-hour offsets, a 30-minute daylight-saving change (Lord Howe),
// southern-hemisphere changes, and zones without any.
var propertyZones = []string{"America/Los_Angeles", "Pacific/Auckland", "Australia/Lord_Howe", "Asia/Kolkata",
	"Europe/London", "America/Sao_Paulo", "Pacific/Honolulu", "America/New_York", "Europe/Berlin", "Asia/Tokyo"}

// dstDays are days around which some of those zones change their clocks
// in 2026.
var dstDays = []time.Time{
	time.Date(2026, 3, 7, 0, 0, 0, 0, time.UTC),   // US spring forward on the 8th
	time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC),  // Europe on the 29th
	time.Date(2026, 4, 4, 0, 0, 0, 0, time.UTC),   // Australia, Lord Howe, New Zealand back on the 5th
	time.Date(2026, 9, 26, 0, 0, 0, 0, time.UTC),  // New Zealand forward on the 27th
	time.Date(2026, 10, 3, 0, 0, 0, 0, time.UTC),  // Australia, Lord Howe forward on the 4th
	time.Date(2026, 10, 24, 0, 0, 0, 0, time.UTC), // Europe back on the 25th
	time.Date(2026, 10, 31, 0, 0, 0, 0, time.UTC), // US back on 1 November
}

// clockSpan is a from-to pair of minutes after midnight.
type clockSpan struct{ From, To int }

// yaml writes the span as a window (marked overnight when it crosses
// midnight) or as quiet hours (which may cross midnight unmarked).
func (c clockSpan) yaml(extra string, window bool) string {
	s := fmt.Sprintf("{ from: %q, to: %q%s", hhmm(c.From), hhmm(c.To), extra)
	if window && c.From > c.To {
		s += ", overnight: true"
	}
	return s + " }"
}

func hhmm(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// scenario is one generated study and its simulated days.
type scenario struct {
	Study   string
	Zones   []string     // one per participant
	Quiet   *clockSpan   // nil = no quiet hours
	PerDay  int          // 0 = no cap
	PerWeek int          // 0 = no cap
	Windows []*clockSpan // one per rule; nil = no window
	Every   []int        // each rule's repeat, in hours
	Start   time.Time
	Steps   []int // minutes between passes
}

// Generate draws a scenario: a few participants in random zones, random
// quiet hours and caps, two to four rules with random windows (overnight
// ones too), starting near a daylight-saving change.
func (scenario) Generate(r *rand.Rand, _ int) reflect.Value {
	pick := func(xs []string) string { return xs[r.Intn(len(xs))] }
	span := func() *clockSpan {
		c := &clockSpan{From: r.Intn(48) * 30, To: r.Intn(48) * 30}
		for c.To == c.From {
			c.To = r.Intn(48) * 30
		}
		return c
	}
	s := scenario{Study: pick(propertyZones)}
	for range 2 + r.Intn(4) {
		s.Zones = append(s.Zones, pick(propertyZones))
	}
	if r.Intn(4) > 0 {
		s.Quiet = &clockSpan{From: (18 + r.Intn(6)) * 60, To: (5 + r.Intn(5)) * 60}
		if r.Intn(4) == 0 {
			s.Quiet = span()
		}
	}
	if r.Intn(3) > 0 {
		s.PerDay = 1 + r.Intn(2)
		if r.Intn(2) == 0 {
			s.PerWeek = s.PerDay + r.Intn(4)
		}
	}
	for range 2 + r.Intn(3) {
		var w *clockSpan
		// Caps count in the participant's zone, which only a window with
		// timezone_field sets for now: with caps every rule has one.
		if s.PerDay > 0 || r.Intn(4) > 0 {
			w = span()
			for !sendable(w, s.Quiet) {
				w = span()
			}
		} else if s.Quiet != nil && !sendable(nil, s.Quiet) {
			s.Quiet = nil
		}
		s.Windows = append(s.Windows, w)
		s.Every = append(s.Every, 2+r.Intn(30))
	}
	s.Start = dstDays[r.Intn(len(dstDays))].Add(time.Duration(r.Intn(48*60)) * time.Minute)
	for total := 0; total < 3*24*60; {
		step := 20 + r.Intn(220)
		s.Steps = append(s.Steps, step)
		total += step
	}
	return reflect.ValueOf(s)
}

// sendable reports whether some minute is inside w (nil = all day) and
// outside quiet (nil = none).
func sendable(w, quiet *clockSpan) bool {
	for m := range 24 * 60 {
		if (w == nil || inSpan(w, m)) && (quiet == nil || !inSpan(quiet, m)) {
			return true
		}
	}
	return false
}

// inSpan reports whether minute m of the day falls in c (which may cross
// midnight).
func inSpan(c *clockSpan, m int) bool {
	if c.From < c.To {
		return c.From <= m && m < c.To
	}
	return m >= c.From || m < c.To
}

// TestSafetyPropertyWindowsAndCaps drives the real planner and dispatcher,
// against the REDCap and Twilio simulators on an injected clock, through
// three simulated days of passes for generated studies (zones, quiet hours,
// caps, rule windows, daylight-saving changes), and checks every text
// Twilio took: it went out inside its rule's window and outside the quiet
// hours in the participant's own zone, and no number got more texts than
// the caps allow on any local day or seven local days. testing/quick draws
// the scenarios (no shrinking: each one runs a whole engine for days, and
// a failure prints the scenario and the offending text).
func TestSafetyPropertyWindowsAndCaps(t *testing.T) {
	count, sent := 4, 0
	if testing.Short() {
		count = 2
	}
	cfg := &quick.Config{MaxCount: count, Rand: rand.New(rand.NewSource(time.Now().UnixNano()))}
	err := quick.Check(func(s scenario) bool {
		n, problem := runScenario(t, s)
		sent += n
		if problem != "" {
			t.Log(problem)
			return false
		}
		return true
	}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if sent == 0 {
		t.Fatal("no scenario sent a text: the property was never tested")
	}
}

// runScenario runs one scenario and returns how many texts went out and
// the first broken promise ("" = none).
func runScenario(t *testing.T, s scenario) (int, string) {
	t.Helper()
	var rs strings.Builder
	var names []string
	for i, w := range s.Windows {
		name := fmt.Sprintf("r%d", i+1)
		names = append(names, name)
		extra := fmt.Sprintf("    repeat: { every: %dh, max: 50 }\n", s.Every[i])
		if w != nil {
			extra += "    window: " + w.yaml(", timezone_field: tz", true) + "\n"
		}
		rs.WriteString(smsRule(name, fmt.Sprintf("note%d", i+1), extra))
	}
	var config strings.Builder
	if s.Quiet != nil {
		config.WriteString("quiet_hours: " + s.Quiet.yaml("", false) + "\n")
	}
	if s.PerDay > 0 {
		fmt.Fprintf(&config, "caps: { per_day: %d", s.PerDay)
		if s.PerWeek > 0 {
			fmt.Fprintf(&config, ", per_week: %d", s.PerWeek)
		}
		config.WriteString(" }\n")
	}
	var recs []map[string]string
	for i, z := range s.Zones {
		recs = append(recs, participant(fmt.Sprint(i+1), fmt.Sprintf("+1415555%04d", 101+i), z))
	}
	dir := capStudy(t, config.String(), rs.String(), recs)
	path := filepath.Join(dir, "nudge.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "timezone: America/Los_Angeles", "timezone: "+s.Study, 1))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, demo.Options{Dir: dir})
	f.clk.Set(s.Start)
	// The participants' data does not change: one export serves every
	// pass (the dispatcher still reads each record fresh before a send).
	snaps, err := f.e.Export(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range s.Steps {
		plan, err := f.e.Plan(f.ctx, snaps, f.clk.Now(), engine.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.e.Store.EnqueueBatch(f.ctx, plan.Messages()); err != nil {
			t.Fatal(err)
		}
		if _, err := f.e.Dispatch(f.ctx); err != nil {
			t.Fatal(err)
		}
		f.clk.Advance(time.Duration(step) * time.Minute)
	}

	creates := f.env.Twilio.Creates()
	texts := map[string][]time.Time{} // number → when
	zoneOf := map[string]*time.Location{}
	for _, c := range creates {
		m, err := f.e.Store.GetBySID(f.ctx, c.SID)
		if err != nil {
			return 0, fmt.Sprintf("text %s has no outbox row: %v", c.SID, err)
		}
		var ri int
		fmt.Sscanf(m.Rule, "r%d", &ri)
		w := s.Windows[ri-1]
		zone := s.Study
		if w != nil {
			var rec int
			fmt.Sscan(m.Record, &rec)
			zone = s.Zones[rec-1]
		}
		loc, _ := time.LoadLocation(zone)
		local := c.Time.In(loc)
		minute := local.Hour()*60 + local.Minute()
		if (w != nil && !inSpan(w, minute)) || (s.Quiet != nil && inSpan(s.Quiet, minute)) {
			return 0, fmt.Sprintf("%s texted record %s at %s (%s): outside window %#v / quiet hours %#v",
				m.Rule, m.Record, local.Format("2006-01-02 15:04 MST"), zone, w, s.Quiet)
		}
		texts[c.To] = append(texts[c.To], c.Time)
		zoneOf[c.To] = loc
	}
	if s.PerDay > 0 {
		day := func(t time.Time, loc *time.Location) int {
			y, m, d := t.In(loc).Date()
			return int(time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
		}
		for to, ts := range texts {
			loc := zoneOf[to]
			perDay := map[int]int{}
			for _, t := range ts {
				perDay[day(t, loc)]++
			}
			for d, n := range perDay {
				if n > s.PerDay {
					return 0, fmt.Sprintf("%d texts to %s on local day %s (%s), cap %d a day", n, to[len(to)-2:],
						time.Unix(int64(d)*86400, 0).UTC().Format("2006-01-02"), loc, s.PerDay)
				}
				week := 0
				for k := d - 6; k <= d; k++ {
					week += perDay[k]
				}
				if s.PerWeek > 0 && week > s.PerWeek {
					return 0, fmt.Sprintf("%d texts to %s in the 7 local days to %d (%s), cap %d", week, to[len(to)-2:], d, loc, s.PerWeek)
				}
			}
		}
	}
	return len(creates), ""
}

// GoString shows a span as a failing scenario prints it.
func (c *clockSpan) GoString() string {
	if c == nil {
		return "nil"
	}
	return hhmm(c.From) + "-" + hhmm(c.To)
}
