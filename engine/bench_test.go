package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// benchRecords makes n classic-project records with some variety: consent
// states, phone formats, dates, checkboxes.
func benchRecords(n int) []*rules.Record {
	recs := make([]*rules.Record, n)
	names := []string{"Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro"}
	for i := range recs {
		v := map[string]string{
			"record_id":           fmt.Sprint(i + 1),
			"first_name":          names[i%len(names)],
			"phone":               fmt.Sprintf("+1312555%04d", i%10000),
			"email":               fmt.Sprintf("p%d@example.org", i),
			"sms_ok":              fmt.Sprint((i + 1) % 2),
			"arm":                 fmt.Sprint(1 + i%2),
			"enrolled_on":         time.Date(2026, 10, 1+i%50, 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
			"enrollment_complete": fmt.Sprint(i % 3),
			"visit_date":          time.Date(2026, 11, 20+i%10, 0, 0, 0, 0, time.UTC).Format("2006-01-02"),
			"visits_done___1":     fmt.Sprint(i % 2),
			"visits_done___2":     fmt.Sprint((i / 2) % 2),
			"visits_done___3":     "0",
			"visits_complete":     "0",
		}
		if i%10 == 3 {
			v["phone"] = "(312) 555-01" + fmt.Sprint(10+i%90)
		}
		recs[i] = &rules.Record{ID: v["record_id"], Rows: []*rules.Row{{Values: v}}}
	}
	return recs
}

func benchEngine(b *testing.B) (*Engine, map[string]*Snapshot) {
	b.Helper()
	study, err := rules.Load(filepath.Join("testdata", "bench", "nudge.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	dicts, err := LoadDictionaries(study.Config)
	if err != nil {
		b.Fatal(err)
	}
	if errs := study.CheckFields(dicts); len(errs) > 0 {
		b.Fatal(errs)
	}
	st, err := storage.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	e := &Engine{Study: study, Store: st, Dicts: dicts}
	snaps := map[string]*Snapshot{"main": {Project: "main", Records: benchRecords(10000)}}
	return e, snaps
}

// BenchmarkSelectPlan evaluates 5 rules over 10,000 records and plans every
// message they select (phone normalisation, piping, segment counting).
func BenchmarkSelectPlan(b *testing.B) {
	e, snaps := benchEngine(b)
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	ctx := context.Background()
	b.ReportAllocs()
	var planned int
	for b.Loop() {
		plan, err := e.Plan(ctx, snaps, now, PlanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		planned = len(plan.Messages())
	}
	b.ReportMetric(float64(planned), "messages/op")
	if planned == 0 {
		b.Fatal("the benchmark study planned nothing")
	}
}

// BenchmarkCheckBeforeSend is the work done for each message right before
// its send (see prepare): the kill switch and expiry, the participant's
// current data (here already fresh, as after a pass's export), the rule's
// condition, the address and the text rendered again.
func BenchmarkCheckBeforeSend(b *testing.B) {
	e, snaps := benchEngine(b)
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	e.Clock = fixedClock{now}
	ctx := context.Background()
	snap := snaps["main"]
	snap.At = now
	e.remember(snap)
	plan, err := e.Plan(ctx, snaps, now, PlanOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var msgs []storage.Message
	for _, m := range plan.Messages() {
		if m.Channel == storage.ChannelSMS && !m.NotBefore.After(now) {
			msgs = append(msgs, *m)
		}
	}
	fresh := &freshness{e: e}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m := msgs[i%len(msgs)]
		i++
		p, err := e.prepare(ctx, m, nil, fresh)
		if err != nil || p.done {
			b.Fatalf("%+v, %v", p.stats, err)
		}
	}
}

// fixedClock is a clock that never moves.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time                             { return c.t }
func (c fixedClock) Sleep(context.Context, time.Duration) error { return nil }

var _ = os.Getenv
