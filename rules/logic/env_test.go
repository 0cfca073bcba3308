package logic

import (
	"testing"
	"time"
)

// mapEnv is a small Env for tests: values keyed by Ref, a fixed clock and
// a set of missing-data codes.
type mapEnv struct {
	vals    map[Ref]string
	now     time.Time
	missing map[string]bool
}

func (e mapEnv) Lookup(r Ref) (string, bool) {
	v, ok := e.vals[r]
	return v, ok
}

func (e mapEnv) Now() time.Time { return e.now }

func (e mapEnv) IsMissingCode(v string) bool { return e.missing[v] }

// testNow is 2026-11-23 14:30:15 in New York.
var testNow = time.Date(2026, 11, 23, 14, 30, 15, 0, mustZone("America/New_York"))

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		return time.FixedZone("EST", -5*3600)
	}
	return loc
}

// newEnv builds a mapEnv from values keyed by references written in REDCap
// syntax, e.g. "[baseline_arm_1][race(2)]".
func newEnv(t testing.TB, vals map[string]string) mapEnv {
	t.Helper()
	env := mapEnv{vals: map[Ref]string{}, now: testNow, missing: map[string]bool{"UNK": true, "NA": true}}
	for k, v := range vals {
		x, err := Parse(k)
		if err != nil {
			t.Fatalf("bad test key %q: %v", k, err)
		}
		refs := x.Refs()
		if len(refs) != 1 || x.root.op != opRef {
			t.Fatalf("test key %q is not one reference", k)
		}
		env.vals[refs[0]] = v
	}
	return env
}
