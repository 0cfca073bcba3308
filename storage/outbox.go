package storage

import "strings"

// State is a message's place in the outbox. Every state and every move
// between states is listed here, in transitions; every UPDATE that changes
// a message's state is guarded by the states it may come from, so two
// workers (in any process) can never both move a row, and no code path can
// make a move the table does not allow.
//
//	planned ─┬─▶ sending ─▶ sent ─▶ delivered | undelivered | failed | canceled | unknown
//	retry  ◀─┤      │         └───▶ review (the carrier filtered it: a person looks first)
//	         │      ├─▶ retry   (the provider provably did not take it, or the sender is paused)
//	         │      ├─▶ review  (nobody can tell whether it was sent: never resent blind)
//	         │      ├─▶ failed  (refused for a reason of its own) · expired
//	         └─▶ canceled (withdrawn, number gone, rule disabled …) · expired (not sent in time)
type State string

// The message states.
const (
	StatePlanned     State = "planned"     // queued, due at NotBefore
	StateRetry       State = "retry"       // queued again after an attempt or a snooze, due at NotBefore
	StateSending     State = "sending"     // claimed; the provider may or may not have it
	StateSent        State = "sent"        // the provider took it (SID known); status not final yet
	StateDelivered   State = "delivered"   // final: delivered (also read, partially_delivered)
	StateUndelivered State = "undelivered" // final: the carrier could not deliver it
	StateFailed      State = "failed"      // final: refused, or failed at the provider
	StateCanceled    State = "canceled"    // final: not sent because it no longer applied (Reason says why)
	StateExpired     State = "expired"     // final: not sent before its expiry
	StateReview      State = "review"      // final until a person acts: outcome unclear, never resent blind
	StateUnknown     State = "unknown"     // final: sent, but no final status came in time
	StateSkipped     State = "skipped"     // final: never sent (rows from earlier nudge versions)
)

// States lists every message state, queued states first.
var States = []State{StatePlanned, StateRetry, StateSending, StateSent, StateDelivered,
	StateUndelivered, StateFailed, StateCanceled, StateExpired, StateReview, StateUnknown, StateSkipped}

// transitions lists, for each state, the states a message may move to.
// States absent as keys are final.
var transitions = map[State][]State{
	StatePlanned: {StateSending, StateRetry, StateCanceled, StateExpired, StateFailed, StateSkipped},
	StateRetry:   {StateSending, StateRetry, StateCanceled, StateExpired, StateFailed, StateSkipped},
	StateSending: {StateSent, StateDelivered, StateUndelivered, StateFailed, StateCanceled, StateUnknown,
		StateRetry, StateReview, StateExpired},
	StateSent: {StateDelivered, StateUndelivered, StateFailed, StateCanceled, StateUnknown, StateReview},
	// A final status that calls for a person (carrier filtering) moves to
	// review after it is recorded.
	StateUndelivered: {StateReview},
	StateFailed:      {StateReview},
}

// CanMove reports whether a message may move from one state to another.
func CanMove(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Final reports whether the state is terminal for sending: the message will
// never be sent (again). A final state may still move to review.
func (s State) Final() bool {
	return s != StatePlanned && s != StateRetry && s != StateSending && s != StateSent
}

// Queued reports whether a message in this state waits to be sent.
func (s State) Queued() bool { return s == StatePlanned || s == StateRetry }

// guard returns the SQL list of the states an UPDATE moving a row to `to`
// may start from. It panics (when the package loads) if the transitions
// table does not allow one of those moves.
func guard(to State, from ...State) string {
	list := make([]string, len(from))
	for i, f := range from {
		if !CanMove(f, to) {
			panic("storage: the outbox does not allow " + string(f) + " → " + string(to))
		}
		list[i] = "'" + string(f) + "'"
	}
	return "(" + strings.Join(list, ", ") + ")"
}
