package twiliotest

import (
	"cmp"
	"time"
)

// errExpired is Twilio's code for a message whose validity period lapsed
// before it could be sent.
const errExpired = 30036

// step is one status of a message's timeline.
type step struct {
	status    string
	at        time.Time
	errorCode int
}

// timeline lists every status m takes, in order: the first is the one its
// create answered with. Both what a fetch shows (state) and the status
// callbacks follow it, so they always agree.
//
// A message through a Messaging Service is "accepted", then "queued" with
// a number of the pool; a scheduled one is "scheduled" until its SendAt,
// then "queued". From queued on, the outcome's QueueDelay and the Timing
// offsets lead to sending, sent and the final status, unless the validity
// period (counted from the create, or from SendAt) lapses before sending:
// then the message fails with 30036 when it lapses. A canceled message
// ends "canceled".
func (s *Server) timeline(m *message) []step {
	t, created := s.opts.Timing, m.base.Created
	first, queued := "queued", created
	switch {
	case !m.base.SendAt.IsZero():
		first, queued = "scheduled", m.base.SendAt
	case m.base.MessagingServiceSID != "":
		first, queued = "accepted", created.Add(t.Queued)
	}
	steps := []step{{status: first, at: created}}
	if !m.canceled.IsZero() {
		return append(steps, step{status: "canceled", at: m.canceled})
	}
	if first != "queued" {
		steps = append(steps, step{status: "queued", at: queued})
	}
	validFrom := created
	if first == "scheduled" {
		validFrom = m.base.SendAt
	}
	deadline := validFrom.Add(cmp.Or(m.validity, maxValidity))
	start := queued.Add(m.outcome.QueueDelay)
	if start.Add(t.Sending).After(deadline) {
		return append(steps, step{status: "failed", at: later(deadline, queued), errorCode: errExpired})
	}
	final := cmp.Or(m.outcome.Final, "delivered")
	steps = append(steps, step{status: "sending", at: start.Add(t.Sending)})
	if final != "failed" {
		steps = append(steps, step{status: "sent", at: start.Add(t.Sent)})
	}
	if final == "sent" || final == "sending" {
		return steps // never confirmed
	}
	last := step{status: final, at: start.Add(t.Final)}
	if final != "delivered" {
		last.errorCode = m.outcome.ErrorCode
	}
	return append(steps, last)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// state derives m's status at now from its timeline. The caller holds mu.
func (s *Server) state(m *message, now time.Time) Message {
	out := m.base
	for _, st := range s.timeline(m) {
		if st.at.After(now) {
			break
		}
		out.Status, out.Updated, out.ErrorCode = st.status, st.at, st.errorCode
		switch st.status {
		case "queued":
			out.From = m.sender
		case "sent":
			out.Sent = st.at
		}
	}
	if m.touched.After(out.Updated) {
		out.Updated = m.touched
	}
	return out
}

// inProgress reports whether a message with this status is still on its
// way: Twilio refuses to delete it (20009).
func inProgress(status string) bool {
	switch status {
	case "accepted", "scheduled", "queued", "sending":
		return true
	}
	return false
}
