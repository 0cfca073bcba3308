package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine"
)

// TestProgressText: the line's counts, rate and ETA.
func TestProgressText(t *testing.T) {
	for _, tc := range []struct {
		name           string
		n, done, total int
		elapsed        time.Duration
		want           string
	}{
		{"nothing sent yet", 0, 0, 2000, 0, "sending 0/2000"},
		{"one send, no time yet", 0, 1, 2000, 0, "sending 1/2000"},
		{"0.95 per second", 412, 412, 2000, 433684210526 * time.Nanosecond /* 412 sends at 0.95/s */, "sending 412/2000 · 0.95/s · ETA 27m52s"},
		{"resumed count", 100, 300, 400, 100 * time.Second, "sending 300/400 · 1.00/s · ETA 1m40s"},
		{"done", 10, 10, 10, 5 * time.Second, "sending 10/10 · 2.00/s · ETA 0s"},
	} {
		if got := progressText(tc.n, tc.done, tc.total, tc.elapsed); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestSendMeter: with a fake clock, the meter measures the rate from the
// first send it sees, redraws one line and ends it once; other stages draw
// nothing.
func TestSendMeter(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	m := newSendMeter(&buf, func() time.Time { return now })
	m.Progress(engine.Progress{Stage: "export"})
	m.Progress(engine.Progress{Stage: "dispatch", Done: 1, Total: 2000})
	for i := 2; i <= 20; i++ {
		now = now.Add(time.Second)
		m.Progress(engine.Progress{Stage: "dispatch", Done: i, Total: 2000})
	}
	m.Done()
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("want one line ended once, got %q", out)
	}
	last := out[strings.LastIndex(out, "\r\033[K")+len("\r\033[K"):]
	if want := "sending 20/2000 · 1.00/s · ETA 33m0s\n"; last != want {
		t.Errorf("last draw %q, want %q", last, want)
	}
	if strings.Contains(out, "export") {
		t.Errorf("a stage other than sending was drawn: %q", out)
	}
	buf.Reset()
	newSendMeter(&buf, time.Now).Done()
	if buf.Len() != 0 {
		t.Errorf("a meter that drew nothing wrote %q", buf.String())
	}
}
