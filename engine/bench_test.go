package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// benchRecords makes n classic-project records with some variety: consent
// states, phone formats, dates, checkboxes.
func benchRecords(n int) []*rules.Record {
	recs := make([]*rules.Record, n)
	for i := range recs {
		recs[i] = benchRecord(i)
	}
	return recs
}

// benchRecord is benchRecords' record i.
func benchRecord(i int) *rules.Record {
	names := []string{"Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro"}
	{
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
		return &rules.Record{ID: v["record_id"], Rows: []*rules.Row{{Values: v}}}
	}
}

func benchEngine(b *testing.B) (*Engine, map[string]*Snapshot) {
	b.Helper()
	study, err := rules.Load(filepath.Join("testdata", "bench", "nudge.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	snaps := map[string]*Snapshot{"main": {Project: "main", Records: benchRecords(10000)}}
	return benchEngineFor(b, study), snaps
}

// benchEngineFor connects a bench study to its dictionaries and a fresh
// store, checking its fields first.
func benchEngineFor(b testing.TB, study *rules.Study) *Engine {
	b.Helper()
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
	return &Engine{Study: study, Store: st, Dicts: dicts}
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

// benchStudy20 copies the bench study into a temporary directory with its
// five rules four times over (20 rules), and loads it.
func benchStudy20(b testing.TB) *rules.Study {
	b.Helper()
	src := filepath.Join("testdata", "bench")
	dir := b.TempDir()
	for _, f := range []string{"nudge.yaml", "dictionary.csv", "templates/visit.email.txt", "templates/visit.sms.txt", "templates/welcome.sms.txt"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			b.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	data, err := os.ReadFile(filepath.Join(src, "rules", "main.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	head, body, ok := strings.Cut(string(data), "rules:\n")
	if !ok {
		b.Fatal("bench rules: no rules list")
	}
	var out strings.Builder
	out.WriteString(head + "rules:\n")
	for k := 1; k <= 4; k++ {
		out.WriteString(regexp.MustCompile(`(?m)^(  - name: \S+)$`).ReplaceAllString(body, "${1}-"+strconv.Itoa(k)))
	}
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules", "main.yaml"), []byte(out.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	study, err := rules.Load(filepath.Join(dir, "nudge.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	if len(study.Rules) != 20 {
		b.Fatalf("the benchmark study has %d rules, want 20", len(study.Rules))
	}
	return study
}

// benchExportBody is REDCap's answer to a flat JSON export of the records
// benchRecords makes: every value a string, columns in dictionary order.
func benchExportBody(b *testing.B, n int) []byte {
	b.Helper()
	cols := []string{"record_id", "first_name", "phone", "email", "sms_ok", "arm", "enrolled_on", "enrollment_complete",
		"visit_date", "visits_done___1", "visits_done___2", "visits_done___3", "visits_complete"}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := range n {
		rec := benchRecord(i)
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('{')
		for j, c := range cols {
			if j > 0 {
				buf.WriteByte(',')
			}
			k, _ := json.Marshal(c)
			v, _ := json.Marshal(rec.Rows[0].Values[c])
			buf.Write(k)
			buf.WriteByte(':')
			buf.Write(v)
		}
		buf.WriteByte('}')
	}
	buf.WriteByte(']')
	return buf.Bytes()
}

// BenchmarkExportSelectPlan is one pass's work after the HTTP read: it
// decodes a REDCap JSON export of 100,000 records, groups the rows into
// records and plans 20 rules (the bench study's five, four times over)
// over them, streaming the decisions as a pass does (the messages are not
// enqueued). Each pass is a process's first (as `nudge run` from cron):
// every phone number is parsed. Besides time and allocations it reports
// the process's peak resident set size (MB), which includes the
// benchmark's own setup.
func BenchmarkExportSelectPlan(b *testing.B) {
	benchExportSelectPlan(b, false)
}

// BenchmarkExportSelectPlanAgain is BenchmarkExportSelectPlan for a pass
// after the first in one process (as `nudge serve` makes them): the phone
// numbers the last pass parsed are taken as they are.
func BenchmarkExportSelectPlanAgain(b *testing.B) {
	benchExportSelectPlan(b, true)
}

func benchExportSelectPlan(b *testing.B, again bool) {
	const n = 100000
	e := benchEngineFor(b, benchStudy20(b))
	body := benchExportBody(b, n)
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	ctx := context.Background()
	pass := func() int {
		recs := benchDecode(b, body)
		snaps := map[string]*Snapshot{"main": {Project: "main", Records: recs}}
		// As a pass does (see Engine.planAndEnqueue), minus the store:
		// the decisions are counted and the messages handed on as they
		// come.
		plan := &Plan{}
		planned := 0
		opt := PlanOptions{Unexplained: true, CountExcluded: func(rule string, n int) { plan.countExcluded(e, rule, n) }}
		err := e.PlanEach(ctx, snaps, now, opt, func(d *Decision) error {
			plan.keep(e, d)
			if d.Message != nil {
				planned++
			}
			planned += len(d.More)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		return planned
	}
	if again {
		pass()
	}
	runtime.GC()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	var planned int
	for b.Loop() {
		if !again {
			e.parsed.Store(nil) // a new process has parsed nothing
		}
		planned = pass()
	}
	b.ReportMetric(float64(planned), "messages/op")
	reportPeakRSS(b)
	if planned == 0 {
		b.Fatal("the benchmark study planned nothing")
	}
}

// BenchmarkExportSelectPreview is BenchmarkExportSelectPlan as `nudge
// preview` and `nudge test rules` plan: every decision kept (Engine.Plan).
func BenchmarkExportSelectPreview(b *testing.B) {
	const n = 100000
	e := benchEngineFor(b, benchStudy20(b))
	body := benchExportBody(b, n)
	runtime.GC()
	now := time.Date(2026, 11, 23, 16, 0, 0, 0, time.UTC)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	var planned int
	for b.Loop() {
		recs := benchDecode(b, body)
		plan, err := e.Plan(ctx, map[string]*Snapshot{"main": {Project: "main", Records: recs}}, now, PlanOptions{})
		if err != nil {
			b.Fatal(err)
		}
		planned = len(plan.Messages())
	}
	b.ReportMetric(float64(planned), "messages/op")
	reportPeakRSS(b)
}

// BenchmarkExportDecode is BenchmarkExportSelectPlan's decode and grouping
// of the export alone.
func BenchmarkExportDecode(b *testing.B) {
	body := benchExportBody(b, 100000)
	runtime.GC()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	var recs []*rules.Record
	for b.Loop() {
		recs = benchDecode(b, body)
	}
	if len(recs) != 100000 {
		b.Fatalf("%d records, want 100000", len(recs))
	}
}

// benchDecode decodes a REDCap JSON export and groups its rows into
// records, as Engine.Export does.
func benchDecode(b *testing.B, body []byte) []*rules.Record {
	t, err := redcap.DecodeTable(body)
	if err != nil {
		b.Fatal(err)
	}
	return rules.GroupTable("record_id", t)
}

// reportPeakRSS reports the process's peak resident set size in MB, which
// includes the benchmark's own setup.
func reportPeakRSS(b *testing.B) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)/1024, "peak-RSS-MB") // Linux reports kilobytes
	}
}
