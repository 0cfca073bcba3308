package rules

import (
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

// TestScopeCheckedModifiers checks [field:checked] and [field:unchecked]:
// the codes of a checkbox's checked or unchecked choices, in numeric order
// (10 after 2), read from the right event and row.
func TestScopeCheckedModifiers(t *testing.T) {
	recs := GroupRows("record_id", []map[string]string{
		exportRow("1", "baseline_arm_1", "", "", "cb___1", "1", "cb___2", "0", "cb___10", "1", "name", "x"),
		exportRow("1", "week_1_arm_1", "", "", "cb___1", "0", "cb___2", "1", "cb___10", "0", "name", "y"),
	})
	rec := recs[0]
	scope := NewScope(rec, rec.Rows[0], time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil)
	tests := []struct {
		src, want string
		ok        bool
	}{
		{"[cb:checked]", "1, 10", true},
		{"[cb:unchecked]", "2", true},
		{"[week_1_arm_1][cb:checked]", "2", true},
		{"[week_1_arm_1][cb:unchecked]", "1, 10", true},
		{"[name:checked]", "", false}, // not a checkbox
	}
	for _, tt := range tests {
		x, err := logic.Parse(tt.src)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := scope.Lookup(x.Refs()[0])
		if got != tt.want || ok != tt.ok {
			t.Errorf("Lookup(%s) = %q, %v; want %q, %v", tt.src, got, ok, tt.want, tt.ok)
		}
	}
	x, err := logic.Parse("contains([cb:checked], '10') and [cb:unchecked] = '2' and [name:value] = 'x'")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := x.True(scope); !ok || err != nil {
		t.Errorf("True = %v, %v; want true", ok, err)
	}
}
