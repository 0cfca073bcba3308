package redcap

import "testing"

func TestRateLimiterSharedPerHost(t *testing.T) {
	const tok = "0123456789ABCDEF0123456789ABCDEF"
	mk := func(url string, opts ...Option) *Client {
		t.Helper()
		c, err := New(url, tok, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := mk("https://redcap.example.edu/api/")
	b := mk("https://REDCAP.example.edu/api/")
	other := mk("https://redcap.other.org/api/")
	own := mk("https://redcap.example.edu/api/", WithRate(2))

	if a.limiter != b.limiter {
		t.Error("two clients of one host have different limiters")
	}
	if a.limiter == other.limiter {
		t.Error("clients of different hosts share a limiter")
	}
	if own.limiter == a.limiter || own.limiter.Limit() != 2 {
		t.Errorf("WithRate did not give the client its own limit (limit %v)", own.limiter.Limit())
	}
	if got := float64(a.limiter.Limit()); got != DefaultRate || a.limiter.Burst() != 1 {
		t.Errorf("shared limit = %v/s burst %d, want %v/s burst 1", got, a.limiter.Burst(), DefaultRate)
	}
}
