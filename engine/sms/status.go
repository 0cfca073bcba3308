package sms

// Message statuses reported by Twilio that nudge acts on.
const (
	StatusAccepted    = "accepted"
	StatusScheduled   = "scheduled"
	StatusQueued      = "queued"
	StatusSending     = "sending"
	StatusSent        = "sent"
	StatusDelivered   = "delivered"
	StatusUndelivered = "undelivered"
	StatusFailed      = "failed"
	StatusCanceled    = "canceled"
	StatusReceiving   = "receiving"
	StatusReceived    = "received"
	StatusRead        = "read"
)

// statusRank orders the lifecycle of a message; final statuses share the
// highest rank. Unknown statuses rank 0.
var statusRank = map[string]int{
	StatusAccepted:    1,
	StatusScheduled:   1,
	StatusQueued:      2,
	StatusReceiving:   2,
	StatusSending:     3,
	StatusSent:        4,
	StatusDelivered:   5,
	StatusUndelivered: 5,
	StatusFailed:      5,
	StatusCanceled:    5,
	StatusReceived:    5,
	StatusRead:        5,
}

// IsFinal reports whether status is one Twilio never moves on from:
// delivered, undelivered, failed, canceled, received (inbound) or read.
// "sent" is not final even though some carriers never confirm it.
func IsFinal(status string) bool {
	return statusRank[status] == 5
}

// IsStatusAfter reports whether a message whose stored status is old may
// move to next. Callbacks and polls arrive out of order and twice, so a
// status only ever moves forward in the lifecycle
// accepted/queued < sending < sent < delivered|undelivered|failed|canceled,
// a final status never changes, and an unknown status never replaces a
// known one. Any known status replaces an empty one.
func IsStatusAfter(old, next string) bool {
	if IsFinal(old) {
		return false
	}
	return statusRank[next] > statusRank[old]
}
