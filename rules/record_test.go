package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// exportRow builds one flat export row: record id, event, repeat
// instrument, instance, then field/value pairs.
func exportRow(id, event, instrument, instance string, kv ...string) map[string]string {
	m := map[string]string{"record_id": id}
	if event != "-" {
		m[ColEvent] = event
	}
	m[ColRepeatInstrument] = instrument
	m[ColRepeatInstance] = instance
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// longitudinal is a longitudinal project with a repeating instrument (bp)
// in baseline_arm_1 and a repeating event (visit_arm_1). Every row has
// every column, as REDCap exports them.
func longitudinal() []map[string]string {
	cols := func(kv ...string) []string {
		all := map[string]string{"consent": "", "mobile": "", "race___1": "", "race___2": "",
			"bp_sys": "", "wk_score": "", "visit_note": "", "tz": ""}
		for i := 0; i+1 < len(kv); i += 2 {
			all[kv[i]] = kv[i+1]
		}
		var out []string
		for k, v := range all {
			out = append(out, k, v)
		}
		return out
	}
	return []map[string]string{
		exportRow("1", "baseline_arm_1", "", "", cols("consent", "1", "mobile", "+14155550101", "race___1", "0", "race___2", "1")...),
		exportRow("1", "baseline_arm_1", "bp", "1", cols("bp_sys", "110")...),
		exportRow("2", "baseline_arm_1", "", "", cols("consent", "0", "mobile", "+14155550102")...),
		exportRow("1", "baseline_arm_1", "bp", "2", cols("bp_sys", "125")...),
		exportRow("1", "week_1_arm_1", "", "", cols("wk_score", "7")...),
		exportRow("1", "visit_arm_1", "", "1", cols("visit_note", "first")...),
		exportRow("1", "visit_arm_1", "", "2", cols("visit_note", "second")...),
	}
}

func TestGroupRows(t *testing.T) {
	recs := GroupRows("record_id", longitudinal())
	if len(recs) != 2 || recs[0].ID != "1" || recs[1].ID != "2" {
		t.Fatalf("records = %+v", recs)
	}
	type shape struct {
		event, instrument string
		instance          int
	}
	want := []shape{{"baseline_arm_1", "", 0}, {"baseline_arm_1", "bp", 1}, {"baseline_arm_1", "bp", 2},
		{"week_1_arm_1", "", 0}, {"visit_arm_1", "", 1}, {"visit_arm_1", "", 2}}
	if len(recs[0].Rows) != len(want) {
		t.Fatalf("record 1 has %d rows, want %d", len(recs[0].Rows), len(want))
	}
	for i, w := range want {
		r := recs[0].Rows[i]
		if (shape{r.Event, r.RepeatInstrument, r.Instance}) != w {
			t.Errorf("row %d = %+v, want %+v", i, shape{r.Event, r.RepeatInstrument, r.Instance}, w)
		}
	}
	if got, _ := recs[1].Rows[0].Value("consent"); got != "0" {
		t.Errorf("record 2 consent = %q", got)
	}
}

func TestScopeLookup(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	long := GroupRows("record_id", longitudinal())[0]
	classic := GroupRows("record_id", []map[string]string{
		exportRow("7", "-", "", "", "consent", "1", "race___2", "1", "race___3", "0"),
	})[0]
	row := func(rec *Record, event, instrument string, instance int) *Row {
		for _, r := range rec.Rows {
			if r.Event == event && r.RepeatInstrument == instrument && r.Instance == instance {
				return r
			}
		}
		t.Fatalf("no row %s/%s/%d", event, instrument, instance)
		return nil
	}
	base := row(long, "baseline_arm_1", "", 0)
	bp2 := row(long, "baseline_arm_1", "bp", 2)
	visit2 := row(long, "visit_arm_1", "", 2)

	tests := []struct {
		name   string
		rec    *Record
		row    *Row
		ref    logic.Ref
		want   string
		wantOK bool
	}{
		{"classic field", classic, classic.Rows[0], logic.Ref{Field: "consent"}, "1", true},
		{"classic checkbox checked", classic, classic.Rows[0], logic.Ref{Field: "race", Code: "2"}, "1", true},
		{"classic checkbox unchecked", classic, classic.Rows[0], logic.Ref{Field: "race", Code: "3"}, "0", true},
		{"classic no such column", classic, classic.Rows[0], logic.Ref{Field: "nope"}, "", false},
		{"classic event-name is blank", classic, classic.Rows[0], logic.Ref{Field: "event-name"}, "", false},
		{"record-name", classic, classic.Rows[0], logic.Ref{Field: "record-name"}, "7", true},

		{"base row field", long, base, logic.Ref{Field: "consent"}, "1", true},
		{"checkbox code", long, base, logic.Ref{Field: "race", Code: "2"}, "1", true},
		{"checkbox code absent", long, base, logic.Ref{Field: "race", Code: "9"}, "", false},
		{"other event", long, base, logic.Ref{Event: "week_1_arm_1", Field: "wk_score"}, "7", true},
		{"unknown event", long, base, logic.Ref{Event: "week_9_arm_1", Field: "wk_score"}, "", false},
		{"event-name", long, base, logic.Ref{Field: "event-name"}, "baseline_arm_1", true},
		{"numbered instance from base", long, base, logic.Ref{Field: "bp_sys", Instance: "2"}, "125", true},
		{"missing instance", long, base, logic.Ref{Field: "bp_sys", Instance: "5"}, "", false},
		{"last-instance from base", long, base, logic.Ref{Field: "bp_sys", Instance: "last-instance"}, "125", true},
		{"first-instance from base", long, base, logic.Ref{Field: "bp_sys", Instance: "first-instance"}, "110", true},
		{"current-instance on base row", long, base, logic.Ref{Field: "current-instance"}, "1", true},

		{"instance row field", long, bp2, logic.Ref{Field: "bp_sys"}, "125", true},
		{"instance row falls back to base row", long, bp2, logic.Ref{Field: "consent"}, "1", true},
		{"instance row checkbox falls back", long, bp2, logic.Ref{Field: "race", Code: "2"}, "1", true},
		{"previous-instance field", long, bp2, logic.Ref{Field: "bp_sys", Instance: "previous-instance"}, "110", true},
		{"current-instance field", long, bp2, logic.Ref{Field: "bp_sys", Instance: "current-instance"}, "125", true},
		{"current-instance", long, bp2, logic.Ref{Field: "current-instance"}, "2", true},
		{"previous-instance", long, bp2, logic.Ref{Field: "previous-instance"}, "1", true},
		{"last-instance", long, bp2, logic.Ref{Field: "last-instance"}, "2", true},
		{"other event from instance row", long, bp2, logic.Ref{Event: "week_1_arm_1", Field: "wk_score"}, "7", true},

		{"repeating event row", long, visit2, logic.Ref{Field: "visit_note"}, "second", true},
		{"repeating event numbered", long, visit2, logic.Ref{Field: "visit_note", Instance: "1"}, "first", true},
		{"repeating event previous", long, visit2, logic.Ref{Field: "visit_note", Instance: "previous-instance"}, "first", true},
		{"repeating event to other event", long, visit2, logic.Ref{Event: "baseline_arm_1", Field: "consent"}, "1", true},
		{"repeating event current-instance", long, visit2, logic.Ref{Field: "current-instance"}, "2", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScope(tt.rec, tt.row, now, nil)
			got, ok := s.Lookup(tt.ref)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("Lookup(%s) = %q, %v; want %q, %v", tt.ref, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestScopeEnv(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	rec := GroupRows("record_id", []map[string]string{exportRow("1", "-", "", "", "x", "UNK")})[0]
	s := NewScope(rec, rec.Rows[0], now, []string{"UNK", "NA"})
	if !s.Now().Equal(now) || !s.IsMissingCode("UNK") || s.IsMissingCode("1") || s.IsMissingCode("") {
		t.Errorf("scope env wrong: now=%v", s.Now())
	}
	var _ logic.Env = s
}

func mustRule(t *testing.T, r Rule, when string) *Rule {
	t.Helper()
	if when != "" {
		e, err := logic.Parse(when)
		if err != nil {
			t.Fatalf("Parse(%q): %v", when, err)
		}
		r.When = e
	}
	if r.Name == "" {
		r.Name = "test-rule"
	}
	return &r
}

func TestEvaluate(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	classic := func(kv ...string) *Record {
		return GroupRows("record_id", []map[string]string{exportRow("9", "-", "", "", kv...)})[0]
	}
	long := GroupRows("record_id", longitudinal())[0]
	to := logic.Ref{Field: "mobile"}

	type want struct {
		event    string
		instance int
		selected bool
		reason   string // substring; "" = must be empty
		err      bool
	}
	tests := []struct {
		name    string
		rule    *Rule
		rec     *Record
		missing []string
		want    []want
		wantTo  string
	}{
		{
			name:   "classic selected",
			rule:   mustRule(t, Rule{Enabled: true, To: to}, "[sms_opt_in] = '1'"),
			rec:    classic("sms_opt_in", "1", "mobile", "+14155550109"),
			want:   []want{{selected: true}},
			wantTo: "+14155550109",
		},
		{
			name:   "classic excluded with the value",
			rule:   mustRule(t, Rule{Enabled: true, To: to}, "[sms_opt_in] = '1'"),
			rec:    classic("sms_opt_in", "0", "mobile", "+14155550109"),
			want:   []want{{reason: `[sms_opt_in] = '1' is false ([sms_opt_in] is "0")`}},
			wantTo: "+14155550109",
		},
		{
			name: "first false conjunct, blank value",
			rule: mustRule(t, Rule{Enabled: true, To: to}, "[consent] = '1' and [sms_opt_in] = '1' and [age] >= 18"),
			rec:  classic("consent", "1", "sms_opt_in", "", "age", "12"),
			want: []want{{reason: `[sms_opt_in] = '1' is false ([sms_opt_in] is blank)`}},
		},
		{
			name: "conjunct with two fields",
			rule: mustRule(t, Rule{Enabled: true, To: to}, "[consent] = '1' and [age] >= [min_age]"),
			rec:  classic("consent", "1", "age", "12", "min_age", "18"),
			want: []want{{reason: `[age] >= [min_age] is false ([age] is "12", [min_age] is "18")`}},
		},
		{
			name: "no condition selects",
			rule: mustRule(t, Rule{Enabled: true, To: to}, ""),
			rec:  classic("mobile", ""),
			want: []want{{selected: true}},
		},
		{
			name: "disabled rule selects nobody",
			rule: mustRule(t, Rule{Enabled: false, To: to}, ""),
			rec:  classic(),
			want: []want{{reason: "disabled"}},
		},
		{
			name:    "missing-data codes",
			rule:    mustRule(t, Rule{Enabled: true, To: to}, "isblankormissingcode([dob])"),
			rec:     classic("dob", "UNK"),
			missing: []string{"UNK"},
			want:    []want{{selected: true}},
		},
		{
			name: "evaluation error",
			rule: mustRule(t, Rule{Enabled: true, To: to}, "[first_name] * 2 > 1"),
			rec:  classic("first_name", "Ann"),
			want: []want{{err: true, reason: "could not be evaluated"}},
		},
		{
			name: "repeating instrument rows",
			rule: mustRule(t, Rule{Enabled: true, To: to, Event: "baseline_arm_1", Instrument: "bp"}, "[consent] = '1' and [bp_sys] > 120"),
			rec:  long,
			want: []want{
				{event: "baseline_arm_1", instance: 1, reason: `[bp_sys] > 120 is false ([bp_sys] is "110")`},
				{event: "baseline_arm_1", instance: 2, selected: true},
			},
			wantTo: "+14155550101",
		},
		{
			name: "one event",
			rule: mustRule(t, Rule{Enabled: true, To: to, Event: "week_1_arm_1"}, "[wk_score] > 5"),
			rec:  long,
			want: []want{{event: "week_1_arm_1", selected: true}},
		},
		{
			name: "any event: rows outside repeating instruments",
			rule: mustRule(t, Rule{Enabled: true, To: to}, "[baseline_arm_1][consent] = '1' and [event-name] <> 'week_1_arm_1'"),
			rec:  long,
			want: []want{
				{event: "baseline_arm_1", selected: true},
				{event: "week_1_arm_1", reason: `[event-name] <> 'week_1_arm_1' is false ([event-name] is "week_1_arm_1")`},
				{event: "visit_arm_1", instance: 1, selected: true},
				{event: "visit_arm_1", instance: 2, selected: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.rule.Evaluate(tt.rec, now, tt.missing)
			if len(got) != len(tt.want) {
				t.Fatalf("%d decisions, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, w := range tt.want {
				d := got[i]
				if d.Record != tt.rec.ID || d.Row.Event != w.event || d.Row.Instance != w.instance {
					t.Errorf("decision %d is for %s/%s/%d", i, d.Record, d.Row.Event, d.Row.Instance)
				}
				if d.Selected != w.selected || (d.Err != nil) != w.err {
					t.Errorf("decision %d: selected=%v err=%v, want selected=%v err=%v (reason %q)", i, d.Selected, d.Err, w.selected, w.err, d.Reason)
				}
				if (w.reason == "") != (d.Reason == "") || !strings.Contains(d.Reason, w.reason) {
					t.Errorf("decision %d: reason %q, want %q", i, d.Reason, w.reason)
				}
				if tt.wantTo != "" && d.To != tt.wantTo {
					t.Errorf("decision %d: To = %q, want %q", i, d.To, tt.wantTo)
				}
			}
		})
	}
}

// TestPassColumnsMatchMaps checks that rules decide the same over rows
// GroupRows keeps by column (read straight from the row where the
// reference allows) as over the same rows kept as maps (read through
// Scope.Lookup): every reference form, on base, instance and repeating
// event rows, with blanks that fall back to the base row.
func TestPassColumnsMatchMaps(t *testing.T) {
	conds := []string{
		"[consent] = '1'",
		"[bp_sys] > 115",
		"[mobile] <> '' and [race(2)] = '1'",
		"[race:checked] = '2'",
		"[baseline_arm_1][consent] = '1' and [visit_note] <> ''",
		"[bp_sys][last-instance] = '125'",
		"[record-name] = '1' and [event-name] = 'baseline_arm_1'",
		"[wk_score] = '' or [tz] = ''",
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	byColumn := GroupRows("record_id", longitudinal())
	var byMap []*Record
	for _, rec := range byColumn {
		c := &Record{ID: rec.ID}
		for _, row := range rec.Rows {
			values := map[string]string{}
			for _, col := range row.Columns() {
				values[col], _ = row.Value(col)
			}
			c.Rows = append(c.Rows, &Row{Event: row.Event, RepeatInstrument: row.RepeatInstrument, Instance: row.Instance, Values: values})
		}
		byMap = append(byMap, c)
	}
	for _, cond := range conds {
		for _, instrument := range []string{"", "bp"} {
			when, err := logic.Parse(cond)
			if err != nil {
				t.Fatal(err)
			}
			r := &Rule{Name: "r", Instrument: instrument, When: when, Enabled: true, To: logic.Ref{Field: "mobile"}}
			colPass, mapPass := NewPass(now, nil), NewPass(now, nil)
			for i := range byColumn {
				got := colPass.Evaluate(r, byColumn[i], nil)
				want := mapPass.Evaluate(r, byMap[i], nil)
				if len(got) != len(want) {
					t.Fatalf("%s on record %s: %d decisions, want %d", cond, byColumn[i].ID, len(got), len(want))
				}
				for j := range got {
					g, w := got[j], want[j]
					if g.Selected != w.Selected || g.Reason != w.Reason || g.To != w.To || (g.Err == nil) != (w.Err == nil) {
						t.Errorf("%s (instrument %q) on record %s row %d: got %v %q to %q, want %v %q to %q",
							cond, instrument, byColumn[i].ID, j, g.Selected, g.Reason, g.To, w.Selected, w.Reason, w.To)
					}
				}
			}
		}
	}
}
