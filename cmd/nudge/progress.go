package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nudge-study/nudge/engine"
)

// sendMeter draws `nudge run`'s progress line on a terminal: one line,
// redrawn in place, with the sending rate and the time left, e.g.
// "sending 412/2000 · 0.95/s · ETA 27m50s".
type sendMeter struct {
	w   io.Writer
	now func() time.Time

	mu      sync.Mutex
	start   time.Time // the first send seen
	base    int       // Done at start
	drawn   bool
	lastLen int
}

// newSendMeter draws on w, reading the time from now.
func newSendMeter(w io.Writer, now func() time.Time) *sendMeter {
	return &sendMeter{w: w, now: now}
}

// Progress is the engine's progress hook.
func (m *sendMeter) Progress(p engine.Progress) {
	if p.Stage != "dispatch" || p.Total == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if m.start.IsZero() || p.Done < m.base {
		m.start, m.base = now, p.Done
	}
	fmt.Fprint(m.w, "\r\033[K"+progressText(p.Done-m.base, p.Done, p.Total, now.Sub(m.start)))
	m.drawn = true
}

// Done ends the line, if one was drawn.
func (m *sendMeter) Done() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.drawn {
		fmt.Fprintln(m.w)
		m.drawn = false
	}
}

// progressText is the progress line: done of total, and, once n sends took
// elapsed, the rate and the time the rest will take at that rate.
func progressText(n, done, total int, elapsed time.Duration) string {
	s := fmt.Sprintf("sending %d/%d", done, total)
	if n <= 0 || elapsed <= 0 {
		return s
	}
	rate := float64(n) / elapsed.Seconds()
	left := time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second)
	return s + fmt.Sprintf(" · %.2f/s · ETA %s", rate, left)
}
