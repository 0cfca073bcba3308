package storage

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// queryPlan returns the EXPLAIN QUERY PLAN lines of query.
func queryPlan(t testing.TB, s *Store, query string, args ...any) []string {
	t.Helper()
	rows, err := s.db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("EXPLAIN %s: %v", query, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// TestSafetyMonitorQueriesScanNoTable: every query /healthz and /metrics
// make is answered from an index or the counts table; none reads a table
// that grows with the study row by row (a scrape every 15 s would cost a
// scan of the outbox each time).
func TestSafetyMonitorQueriesScanNoTable(t *testing.T) {
	s, _ := openTemp(t)
	tests := []struct {
		name, query string
		args        []any
	}{
		{"Depths", sqlDepths, nil},
		{"StatusCounts", sqlStatusCounts, nil},
		{"Watch", sqlWatch, []any{t0.UnixNano(), WriteBackRetryAttempts}},
		{"LastRun", sqlLastRun, nil},
		{"OptOutCount", sqlOptOutCount, nil},
	}
	// The only scans allowed walk an index that holds just the rows
	// counted (a partial index) or stop at the first row (LIMIT 1 in the
	// index's order).
	allowed := map[string]bool{
		"SCAN triggers USING INDEX triggers_pending":    true, // triggers not done
		"SCAN runs USING INDEX runs_started":            true, // the latest run, LIMIT 1
		"SCAN optouts USING COVERING INDEX optouts_out": true, // the numbers opted out
		"SCAN message_counts":                           true, // one row per channel and status
	}
	for _, tt := range tests {
		plan := queryPlan(t, s, tt.query, tt.args...)
		for _, step := range plan {
			if strings.HasPrefix(step, "SCAN ") && step != "SCAN CONSTANT ROW" && !allowed[step] {
				t.Errorf("%s: %q reads a table row by row: %q", tt.name, step, plan)
			}
		}
		if p := strings.Join(plan, "; "); strings.Contains(p, "SCAN messages") {
			t.Errorf("%s scans messages: %q", tt.name, plan)
		}
	}
}

// TestMessageCountsFollowTheMessages: the counts table agrees with a count
// of the messages themselves through inserts, status and state changes,
// channel changes and deletes.
func TestMessageCountsFollowTheMessages(t *testing.T) {
	s, _ := openTemp(t)
	queueFixture(t, s)
	ctx := context.Background()
	check := func(when string) {
		t.Helper()
		got, err := s.StatusCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := countByScan(t, s)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: StatusCounts =\n%v\nwant (counted)\n%v", when, got, want)
		}
	}
	check("after the fixture, none folded")
	if err := s.FoldCounts(ctx); err != nil {
		t.Fatal(err)
	}
	check("after folding")
	if _, err := s.db.ExecContext(ctx, `UPDATE messages SET channel = 'email' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	check("after a channel change")
	if _, err := s.db.ExecContext(ctx, `DELETE FROM status_history; DELETE FROM messages WHERE id IN (2, 6)`); err != nil {
		t.Fatal(err)
	}
	check("after deletes")
	id := mustEnqueue(t, s, newMsg("new", 1))
	check("a message newer than the mark")
	if err := s.Claim(ctx, id, t0, nil); err != nil {
		t.Fatal(err)
	}
	check("a message newer than the mark, claimed")
	if err := s.FoldCounts(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSent(ctx, id, "SM-new", "queued", 1, t0); err != nil {
		t.Fatal(err)
	}
	check("folded, then sent")
	for i := range countsFoldAt {
		mustEnqueue(t, s, newMsg(fmt.Sprint("bulk", i), 1))
	}
	check("many new messages (the read folds them)")
	var uncounted int
	if err := s.db.QueryRow(sqlUncounted).Scan(&uncounted); err != nil || uncounted != 0 {
		t.Errorf("after a read with %d new messages, %d are left unfolded (%v)", countsFoldAt, uncounted, err)
	}
	check("after the fold by the read")
}

// countByScan counts messages by channel and status the slow way.
func countByScan(t *testing.T, s *Store) []StatusCount {
	t.Helper()
	rows, err := s.db.Query(`SELECT channel, CASE WHEN status = '' THEN state ELSE status END AS st, count(*)
FROM messages GROUP BY channel, st ORDER BY channel, st`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []StatusCount
	for rows.Next() {
		var c StatusCount
		if err := rows.Scan(&c.Channel, &c.Status, &c.N); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// The monitor migration counts the messages already in the database.
func TestMigrationMonitorCountsExistingMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nudge.db")
	k := slices.Index(migrations, migrationMonitor)
	s, err := open(ctx, path, migrations[:k], Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		mustEnqueue(t, s, newMsg(fmt.Sprint(i), 1))
	}
	s.Close()
	s, err = open(ctx, path, migrations, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.StatusCounts(ctx)
	if want := []StatusCount{{ChannelSMS, "planned", 3}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("StatusCounts after the migration = %v, %v; want %v", got, err, want)
	}
}

func TestWatch(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if w, err := s.Watch(ctx, t0); err != nil || w != (Watch{}) {
		t.Errorf("Watch of an empty store = %+v, %v", w, err)
	}
	queueFixture(t, s)
	held := newMsg("held", 1)
	held.NotBefore = t0.Add(2 * time.Hour) // held for the allowed hours: not due
	mustEnqueue(t, s, held)
	wbs, err := s.PendingWriteBacks(ctx, "main", t0, 0)
	if err != nil || len(wbs) != 2 {
		t.Fatalf("PendingWriteBacks = %d, %v", len(wbs), err)
	}
	for range WriteBackRetryAttempts {
		if err := s.RetryWriteBacks(ctx, []WriteBackRef{wbs[0].Ref()}, "REDCap down", t0); err != nil {
			t.Fatal(err)
		}
	}
	id, err := s.StartRun(ctx, "run", t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, id, t0.Add(time.Minute), "ok", nil); err != nil {
		t.Fatal(err)
	}
	id, err = s.StartRun(ctx, "run", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.FinishRun(ctx, id, t0.Add(61*time.Minute), "failed: REDCap", nil); err != nil {
		t.Fatal(err)
	}
	w, err := s.Watch(ctx, t0.Add(time.Hour))
	want := Watch{Retrying: 1, OldestDue: t0, WriteBacksRetrying: 1, LastOK: t0.Add(time.Minute)}
	if err != nil || w != want {
		t.Errorf("Watch = %+v, %v\nwant %+v", w, err, want)
	}
}

func TestLeases(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	if ok, err := s.TryLock(ctx, "pass", "web1:42:1.x:abc", time.Minute, t0); err != nil || !ok {
		t.Fatal(ok, err)
	}
	got, err := s.Leases(ctx, t0)
	if want := []Lease{{"pass", "web1:42:1.x:abc"}}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Leases = %v, %v; want %v", got, err, want)
	}
	if got, _ := s.Leases(ctx, t0.Add(time.Hour)); len(got) != 0 {
		t.Errorf("an expired lease is listed: %v", got)
	}
	if h := OwnerHost("web1:42:1.x:abc"); h != "web1:42" {
		t.Errorf("OwnerHost = %q", h)
	}
}

// BenchmarkMonitorAt400k reads everything a /metrics scrape and a /healthz
// read from the database, with 400,000 messages in the outbox.
func BenchmarkMonitorAt400k(b *testing.B) {
	s, _ := openTemp(b)
	ctx := context.Background()
	const rows, batch = 400000, 20000
	for i := 0; i < rows; i += batch {
		ms := make([]*Message, batch)
		for j := range ms {
			ms[j] = newMsg(fmt.Sprint(i+j), 1)
		}
		if _, err := s.EnqueueBatch(ctx, ms); err != nil {
			b.Fatal(err)
		}
	}
	// Most of a real outbox is settled: mark all but 1,000 delivered.
	if _, err := s.db.ExecContext(ctx, `UPDATE messages SET state = 'delivered', status = 'delivered' WHERE id > 1000`); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.StatusCounts(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Depths(ctx); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Watch(ctx, t0); err != nil {
			b.Fatal(err)
		}
		if _, err := s.LastRun(ctx); err != nil && !strings.Contains(err.Error(), "no run") {
			b.Fatal(err)
		}
		if _, err := s.OptOutCount(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
