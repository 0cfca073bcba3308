package sms

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// DefaultRate is the pacing rate, in segments per second per sending number,
// used when none is configured: just under the 1 segment/s that Twilio
// accepts from a US long code, so Twilio's own queue never grows.
const DefaultRate = 0.95

// ValidateRate checks a configured pacing rate in segments per second.
// The rate must be a finite number above zero; for a long code (a normal
// 10-digit number) it must also stay below 1, Twilio's limit for those
// senders. Toll-free numbers (3/s) and short codes (100/s) pass longCode
// false.
func ValidateRate(rate float64, longCode bool) error {
	switch {
	case math.IsNaN(rate) || math.IsInf(rate, 0) || rate <= 0:
		return fmt.Errorf("sms rate %v: must be a number of segments per second above 0, e.g. %v", rate, DefaultRate)
	case longCode && rate >= 1:
		return fmt.Errorf("sms rate %v: a long-code sender takes at most 1 segment per second; use a rate below 1, e.g. %v", rate, DefaultRate)
	}
	return nil
}

// Pacer spaces out sends so that each sending number stays under its rate.
// Every number has its own rate (SetRate; the pacer's default otherwise)
// and its own schedule: a k-segment message takes k slots of 1/rate
// seconds, and the next send from that number waits until those
// slots have passed. Numbers that have been idle do not bank credit, so a
// burst never exceeds the rate. A Pacer is safe for concurrent use; waiters
// on the same number are served in the order they reserved their slots.
type Pacer struct {
	clk  Clock
	slot time.Duration // length of one segment's slot at the default rate

	mu    sync.Mutex
	slots map[string]time.Duration // per sender with its own rate: its slot
	next  map[string]time.Time     // per sender: earliest start of the next send
}

// NewPacer returns a Pacer allowing rate segments per second per sending
// number. A rate that ValidateRate would reject as non-positive falls back
// to DefaultRate (callers validate configured rates with ValidateRate); a
// nil clk means RealClock.
func NewPacer(rate float64, clk Clock) *Pacer {
	if ValidateRate(rate, false) != nil {
		rate = DefaultRate
	}
	if clk == nil {
		clk = RealClock{}
	}
	return &Pacer{
		clk:   clk,
		slot:  slotOf(rate),
		slots: make(map[string]time.Duration),
		next:  make(map[string]time.Time),
	}
}

// slotOf is one segment's slot at rate: never shorter than 1/rate.
func slotOf(rate float64) time.Duration {
	return time.Duration(math.Ceil(float64(time.Second) / rate))
}

// SetRate gives one sending number its own rate in segments per second
// (a toll-free number or a short code goes faster than the default
// long-code rate). The caller checks the rate against the sender's limit;
// a rate that is not a positive number is refused.
func (p *Pacer) SetRate(from string, rate float64) error {
	if err := ValidateRate(rate, false); err != nil {
		return err
	}
	p.mu.Lock()
	p.slots[from] = slotOf(rate)
	p.mu.Unlock()
	return nil
}

// slotFor is the slot of one segment from a number. The caller holds mu.
func (p *Pacer) slotFor(from string) time.Duration {
	if d, ok := p.slots[from]; ok {
		return d
	}
	return p.slot
}

// Wait blocks until from's next slot, then reserves segments slots for the
// message about to be sent (a count below 1 counts as 1). The first send
// from a number goes at once. When ctx ends first Wait returns its error
// and, if no later send has reserved behind it, gives the slot back.
func (p *Pacer) Wait(ctx context.Context, from string, segments int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if segments < 1 {
		segments = 1
	}
	p.mu.Lock()
	now := p.clk.Now()
	start := now
	if n, ok := p.next[from]; ok && n.After(now) {
		start = n
	}
	end := start.Add(time.Duration(segments) * p.slotFor(from))
	p.next[from] = end
	p.mu.Unlock()

	if err := p.clk.Sleep(ctx, start.Sub(now)); err != nil {
		p.mu.Lock()
		if p.next[from].Equal(end) {
			p.next[from] = start
		}
		p.mu.Unlock()
		return err
	}
	return nil
}

// Done tells the pacer that Twilio has answered the create it last let
// through from a number. The next send from that number then starts no
// earlier than segments slots after this answer. The request certainly
// reached Twilio before its answer came back, so measured at Twilio's side
// two creates from one number are never closer than the rate allows,
// however much the network delayed either of them. The price is one round
// trip per message: at 0.95/s and a 150 ms round trip a number sends about
// 0.83 messages per second. Senders that wait on one number from several
// goroutines get this guarantee for the sends they serialise.
func (p *Pacer) Done(from string, segments int) {
	if segments < 1 {
		segments = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	floor := p.clk.Now().Add(time.Duration(segments) * p.slotFor(from))
	if floor.After(p.next[from]) {
		p.next[from] = floor
	}
}

// Seed tells the pacer that a number last sent a message of segments
// segments at last, before this pacer existed (another process, or this
// one before a restart): its next send waits for that message's slots as if
// this pacer had let it through. A seed older than what the pacer knows
// changes nothing.
func (p *Pacer) Seed(from string, last time.Time, segments int) {
	if segments < 1 {
		segments = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if floor := last.Add(time.Duration(segments) * p.slotFor(from)); floor.After(p.next[from]) {
		p.next[from] = floor
	}
}
