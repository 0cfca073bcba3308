package sms

import "fmt"

// Action is what nudge does about a failed send or a failed message. The
// split that matters: a problem of the account or of a sending number is
// nobody's message's fault, so it pauses the sender and keeps the queue; only
// a problem of the message itself (its number, its recipient's opt-out)
// settles that message.
type Action int

const (
	// Backoff: Twilio did not take the message for now (429, a network
	// failure before the request was written). The message waits without
	// counting an attempt; its sender backs off (with jitter, honouring
	// Retry-After). Retries end at the message's expiry.
	Backoff Action = iota + 1
	// Settle: nobody knows whether Twilio took the message (a timeout or
	// reset after the request was written, a 5xx at create). The message
	// stays "sending" until repeated lookups settle it; it is resent only
	// when they prove Twilio never took it.
	Settle
	// PauseAccount: the credentials are wrong or the account is suspended.
	// Every sender pauses; the queue is kept.
	PauseAccount
	// PauseSender: this sending number cannot send. It pauses; the queue is
	// kept.
	PauseSender
	// SlowSender: this sending number is over its limits at Twilio. It
	// pauses for a while; the queue is kept.
	SlowSender
	// BadNumber: the participant's number cannot get texts. The message
	// fails, the number is flagged (and plans skip it) until REDCap holds
	// another.
	BadNumber
	// OptedOut: the participant opted out at Twilio (replied STOP). The
	// message fails; the opt-out is recorded and written back to REDCap.
	OptedOut
	// Fail: a problem of this message alone; it fails, with advice.
	Fail
	// Review: a person should look before anything else is sent (carrier
	// filtering). No blind retry.
	Review
)

var actionNames = map[Action]string{
	Backoff: "back off", Settle: "settle by lookups", PauseAccount: "pause every sender",
	PauseSender: "pause the sender", SlowSender: "pause the sender for a while", BadNumber: "flag the number",
	OptedOut: "record the opt-out", Fail: "fail the message", Review: "set aside for review",
}

// String names the action.
func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Policy is one line of the error policy: a Twilio error code, when it
// happens, what nudge does and what a person should do.
type Policy struct {
	Code   int
	When   string // "create" or "status"
	Action Action
	Advice string
}

// Policies is nudge's error policy, code by code. The README prints the
// same table; a code not listed takes the default of its kind (see Decide).
var Policies = []Policy{
	{20003, "create", PauseAccount, "the account SID or auth token is wrong (rotated?): set the right ones in the environment and restart nudge"},
	{20005, "create", PauseAccount, "the Twilio account is suspended or closed: see the Twilio console"},
	{20429, "create", Backoff, "Twilio is rate limiting the account: nudge waits and tries again"},
	{21211, "create", BadNumber, "the participant's number is not a valid phone number: correct it in REDCap"},
	{21408, "create", Fail, "SMS to this country is not enabled on the account: enable the region in the Twilio console"},
	{21606, "create", PauseSender, "this sending number cannot send SMS to this destination: check the number's capabilities in the console"},
	{21608, "create", Fail, "a trial account can text only verified numbers: verify this number in the console or upgrade the account"},
	{21610, "create", OptedOut, "the participant replied STOP to this number: nudge records the opt-out"},
	{21611, "create", SlowSender, "this number's queue at Twilio holds more than 10 hours of messages: nudge pauses it for a while"},
	{21612, "create", BadNumber, "the number cannot be reached by SMS from this sender: use another channel"},
	{21614, "create", BadNumber, "the number is not a mobile number: correct it in REDCap or use email"},
	{21617, "create", Fail, "the message is over 1,600 characters: shorten the template"},
	{30001, "status", SlowSender, "the sender's queue overflowed: nudge pauses it for a while"},
	{30003, "status", BadNumber, "the handset is unreachable (off, or out of service): check the number with the participant"},
	{30004, "status", Fail, "the message was blocked by the participant's carrier or handset"},
	{30005, "status", BadNumber, "the number is unknown to the carrier: correct it in REDCap"},
	{30006, "status", BadNumber, "the number is a landline or unreachable by SMS: use another channel"},
	{30007, "status", Review, "the carrier filtered the message as spam: review the template's wording before sending more"},
	{30022, "status", SlowSender, "the sender went over its A2P 10DLC throughput: nudge pauses it for a while"},
	{30023, "status", SlowSender, "the sender reached its daily A2P 10DLC cap: nudge pauses it for a while"},
	{30032, "status", PauseSender, "the toll-free number is not verified: finish its verification in the console"},
	{30034, "status", PauseSender, "the sending number is not registered for A2P 10DLC: register it in the console"},
}

var policyByCode = func() map[int]Policy {
	m := make(map[int]Policy, len(Policies))
	for _, p := range Policies {
		m[p.Code] = p
	}
	return m
}()

// Decide returns what to do about a failed create.
func Decide(e *Error) Policy {
	if p, ok := policyByCode[e.Code]; ok {
		return p
	}
	switch {
	case e.HTTPStatus == 401 || e.HTTPStatus == 403 && e.Code == 0:
		return policyByCode[20003]
	case e.Kind == Ambiguous:
		return Policy{Code: e.Code, When: "create", Action: Settle, Advice: "nudge looks the message up before anything is sent again"}
	case e.Kind == Retryable:
		return Policy{Code: e.Code, When: "create", Action: Backoff, Advice: "Twilio could not take the message now: nudge waits and tries again"}
	}
	return Policy{Code: e.Code, When: "create", Action: Fail, Advice: "Twilio refused the message"}
}

// DecideStatus returns what to do about a message that ended undelivered
// or failed with an error code; ok is false when nothing more than storing
// the status is called for.
func DecideStatus(code int) (Policy, bool) {
	p, ok := policyByCode[code]
	if !ok || p.When != "status" || p.Action == Fail {
		return Policy{}, false
	}
	return p, true
}
