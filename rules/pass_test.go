package rules

import (
	"fmt"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// A Pass shared by many records decides exactly as Rule.Evaluate does on
// each record alone: a remembered verdict is reused only for the same
// values, a blank column is not taken for an absent one, and evaluation
// errors still name their own record.
func TestPassMatchesEvaluate(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	classic := func(id string, kv ...string) *Record {
		return GroupRows("record_id", []map[string]string{exportRow(id, "-", "", "", kv...)})[0]
	}
	recs := []*Record{
		classic("1", "consent", "1", "sms", "1", "age", "30", "name", "Ann"),
		classic("2", "consent", "1", "sms", "0", "age", "30", "name", "Ann"),
		classic("3", "consent", "1", "sms", "", "age", "12", "name", "Ben"),
		classic("4", "consent", "1", "age", "12", "name", "Ben"), // no sms column at all
		classic("5", "consent", "1", "sms", "1", "age", "x", "name", "Cy"),
		classic("6", "consent", "1", "sms", "1", "age", "x", "name", "Cy"),
		classic("7", "consent", "0", "sms", "1", "age", "UNK", "name", ""),
		classic("8", "consent", "1", "sms", "1", "age", "30", "name", "Ann"),
		classic("a/b", "consent", "1", "sms", "1", "age", "30", "name", "1"),
	}
	recs = append(recs, GroupRows("record_id", longitudinal())...)
	conds := []string{
		"[consent] = '1' and [sms] = '1' and [age] >= 18",
		"[sms] = '' and [consent] = '1'",
		"isblankormissingcode([sms]) or [age] * 2 > 30",
		"[age] * 2 > 30",
		"contains([name], 'n') and [record-name] <> '8'",
		"[name]",
		"datediff('2026-06-01', 'today', 'd') > 5 and [consent] = '1'",
		"[baseline_arm_1][consent] = '1' and [event-name] <> 'week_1_arm_1'",
	}
	missing := []string{"UNK"}
	for _, cond := range conds {
		r := mustRule(t, Rule{Enabled: true}, cond)
		pass := NewPass(now, missing)
		for round := 0; round < 2; round++ {
			for _, rec := range recs {
				got := pass.Evaluate(r, rec, nil)
				want := r.Evaluate(rec, now, missing)
				if g, w := describeDecisions(got), describeDecisions(want); g != w {
					t.Errorf("%s, record %s, round %d:\npass     %s\nevaluate %s", cond, rec.ID, round, g, w)
				}
			}
		}
	}
	// Every condition twice over (two rules each), evaluated record by
	// record in rule order as the planner does, the rules numbered for
	// EvaluateNth by their place, all alike (a caller's mistake), or not.
	var rs []*Rule
	for k := range 2 {
		for i, cond := range conds {
			rs = append(rs, mustRule(t, Rule{Name: fmt.Sprintf("r%d-%d", i, k), Enabled: true}, cond))
		}
	}
	for _, numbering := range []string{"by place", "all 0", "none"} {
		pass := NewPass(now, missing)
		for round := 0; round < 2; round++ {
			for _, rec := range recs {
				for i, r := range rs {
					n := map[string]int{"by place": i, "all 0": 0, "none": -1}[numbering]
					got := pass.EvaluateNth(n, r, rec, nil)
					want := r.Evaluate(rec, now, missing)
					if g, w := describeDecisions(got), describeDecisions(want); g != w {
						t.Errorf("numbered %s: rule %s (%s), record %s, round %d:\npass     %s\nevaluate %s", numbering, r.Name, r.When, rec.ID, round, g, w)
					}
				}
			}
		}
	}
}

func describeDecisions(ds []Decision) string {
	s := ""
	for _, d := range ds {
		s += fmt.Sprintf("{%s %s/%d sel=%v to=%q reason=%q err=%v} ", d.Record, d.Row.Event, d.Row.Instance, d.Selected, d.To, d.Reason, d.Err)
	}
	return s
}

// TestPassSharesVerdictsPerZone checks that rules with the same condition
// share a Pass's remembered verdicts only when they read 'today' in the
// same zone: at 03:00 UTC it is still the day before in Chicago.
func TestPassSharesVerdictsPerZone(t *testing.T) {
	chicago, err := time.LoadLocation("America/Chicago")
	if err != nil {
		t.Fatal(err)
	}
	rec := GroupRows("record_id", []map[string]string{{"record_id": "1", "d": "2026-11-23"}})[0]
	now := time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)
	rule := func(zone *time.Location) *Rule {
		when, err := logic.Parse("datediff([d], 'today', 'd', true) = 0")
		if err != nil {
			t.Fatal(err)
		}
		return &Rule{Name: "r-" + zone.String(), When: when, Enabled: true, zone: zone}
	}
	p := NewPass(now, nil)
	for _, c := range []struct {
		zone *time.Location
		want bool
	}{{chicago, false}, {time.UTC, true}, {chicago, false}} {
		ds := p.Evaluate(rule(c.zone), rec, nil)
		if len(ds) != 1 || ds[0].Selected != c.want {
			t.Errorf("zone %s: %+v, want selected %v", c.zone, ds, c.want)
		}
	}
}

// TestPassBeyondMemoMax checks that rules with the same condition decide
// as Rule.Evaluate does also once a Pass remembers no more verdicts (more
// distinct values than memoMax), explained or not (LeaveUnexplained).
func TestPassBeyondMemoMax(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	var recs []*Record
	for i := range memoMax + 50 {
		id := fmt.Sprint(i)
		recs = append(recs, GroupRows("record_id", []map[string]string{{"record_id": id, "email": "p" + id + "@x.org", "n": fmt.Sprint(i % 7)}})[0])
	}
	cond := "[email] <> '' and [n] > 2"
	r1 := mustRule(t, Rule{Name: "a", Enabled: true}, cond)
	r2 := mustRule(t, Rule{Name: "b", Enabled: true}, cond)
	for _, unexplained := range []bool{false, true} {
		pass := NewPass(now, nil)
		if unexplained {
			pass.LeaveUnexplained()
		}
		for _, rec := range recs {
			want := r1.Evaluate(rec, now, nil)
			if unexplained {
				want[0].Reason = ""
			}
			for _, r := range []*Rule{r1, r2} {
				if g, w := describeDecisions(pass.Evaluate(r, rec, nil)), describeDecisions(want); g != w {
					t.Fatalf("rule %s, record %s, unexplained %v:\npass     %s\nevaluate %s", r.Name, rec.ID, unexplained, g, w)
				}
			}
		}
	}
}
