package logic

import "testing"

// BenchmarkEval evaluates a typical rule condition, parsed once.
func BenchmarkEval(b *testing.B) {
	x, err := Parse("[consent_complete] = '2' and [sms_opt_in] = '1' and datediff([enroll_date],'today','d') >= 7")
	if err != nil {
		b.Fatal(err)
	}
	// The Env is converted to the interface once, as a caller does; a
	// struct converted inside the loop would allocate on every call.
	var env Env = newEnv(b, map[string]string{
		"[consent_complete]": "2",
		"[sms_opt_in]":       "1",
		"[enroll_date]":      "2026-11-10",
	})
	b.ReportAllocs()
	for b.Loop() {
		ok, err := x.True(env)
		if err != nil || !ok {
			b.Fatalf("True = %v, %v; want true", ok, err)
		}
	}
}
