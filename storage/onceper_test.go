package storage

import (
	"context"
	"path/filepath"
	"testing"
)

// Messages of a rule with once_per are counted per value digest; messages
// without one keep being counted as before.
func TestSafetyOncePerOccurrencesPerValue(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	plain := newMsg("7", 1)
	mustEnqueue(t, s, plain)
	a := newMsg("7", 1)
	a.Key, a.OncePer = "main/reminder/7/baseline_arm_1/0/vaaaa/1", "aaaa"
	mustEnqueue(t, s, a)
	a2 := newMsg("7", 2)
	a2.Key, a2.OncePer = "main/reminder/7/baseline_arm_1/0/vaaaa/2", "aaaa"
	mustEnqueue(t, s, a2)
	b := newMsg("7", 1)
	b.Key, b.OncePer = "main/reminder/7/baseline_arm_1/0/vbbbb/1", "bbbb"
	id := mustEnqueue(t, s, b)
	must(t, s.Cancel(ctx, id, "the visit moved", t0))

	for _, c := range []struct {
		value      string
		count, nxt int
	}{{"", 1, 2}, {"aaaa", 2, 3}, {"bbbb", 0, 2}, {"cccc", 0, 1}} {
		n, _, next, err := s.OccurrencesPer(ctx, "main", "reminder", "7", "baseline_arm_1", 0, c.value)
		if err != nil || n != c.count || next != c.nxt {
			t.Errorf("OccurrencesPer(%q) = %d, next %d, %v; want %d, next %d", c.value, n, next, err, c.count, c.nxt)
		}
	}
	if n, _, next, _ := s.Occurrences(ctx, "main", "reminder", "7", "baseline_arm_1", 0); n != 1 || next != 2 {
		t.Errorf("Occurrences = %d, next %d; want the message without once_per alone: 1, next 2", n, next)
	}

	all, err := s.AllOccurrences(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Occurrence{}
	for _, o := range all {
		got[o.OncePer] = o
	}
	if len(all) != 3 || got[""].Count != 1 || got["aaaa"].Count != 2 || got["aaaa"].Next != 3 ||
		got["bbbb"].Count != 0 || got["bbbb"].Next != 2 {
		t.Errorf("AllOccurrences = %+v; want one row per value", all)
	}
	if m := mustGet(t, s, a.ID); m.OncePer != "aaaa" {
		t.Errorf("stored OncePer = %q, want aaaa", m.OncePer)
	}
}

// The once_per migration keeps every message, each counted as planned
// without a once_per value.
func TestMigrationOncePerKeepsMessages(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nudge.db")
	s, err := open(ctx, path, migrations[:len(migrations)-1], Options{})
	if err != nil {
		t.Fatal(err)
	}
	const ins = `INSERT INTO messages (key, project, rule, record, event, channel, to_addr, state, occurrence, created_at, updated_at)
VALUES ('main/reminder/7/ev/0/1', 'main', 'reminder', '7', 'ev', 'sms', '+14155550101', 'sent', 1, ?, ?)`
	if _, err := s.db.ExecContext(ctx, ins, t0.UnixNano(), t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = open(ctx, path, migrations, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, _, next, err := s.Occurrences(ctx, "main", "reminder", "7", "ev", 0); err != nil || n != 1 || next != 2 {
		t.Errorf("Occurrences after migration = %d, next %d, %v; want 1, next 2", n, next, err)
	}
}
