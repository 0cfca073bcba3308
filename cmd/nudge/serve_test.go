package main

import "testing"

// TestSafetyOwnerUnique: the pass-lock owner of `nudge serve` and `nudge
// run` differs between processes even with the same host name and PID
// (two containers, both PID 1).
func TestSafetyOwnerUnique(t *testing.T) {
	if a, b := owner(), owner(); a == b {
		t.Errorf("owner() gave %q twice", a)
	}
}
