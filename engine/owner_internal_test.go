package engine

import "testing"

// TestSafetyLeaseOwnersUnique: two nudge containers that share a host name
// and are both PID 1 (so host and pid are the same) still get different lease
// owners, so one can never release or renew the other's lease.
func TestSafetyLeaseOwnersUnique(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		o := (&Engine{}).owner()
		if seen[o] {
			t.Fatalf("owner %q given twice", o)
		}
		seen[o] = true
	}
}
