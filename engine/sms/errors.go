package sms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"
)

// Kind says what the engine may do after a failed call.
type Kind int

const (
	// Permanent: Twilio refused the request (an invalid or opted-out number,
	// bad credentials, a body too long …). Do not resend it unchanged.
	Permanent Kind = iota + 1
	// Retryable: Twilio provably did not take the request (429, 5xx, a
	// connection that failed before the request was written). Retry later.
	Retryable
	// Ambiguous: the request was written but no answer came back (timeout,
	// reset connection, 504, unreadable success response). Twilio may have
	// accepted the message: look it up with Find before any resend.
	Ambiguous
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case Permanent:
		return "permanent"
	case Retryable:
		return "retryable"
	case Ambiguous:
		return "ambiguous"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a failed Twilio call, classified.
type Error struct {
	Code       int    // Twilio's error code (21211, 20429 …); 0 when Twilio gave none
	HTTPStatus int    // HTTP status of Twilio's answer; 0 when there was none
	Message    string // what went wrong, as Twilio or the network said it
	Kind       Kind
	// RetryAfter is how long Twilio asked the client to wait (its
	// Retry-After header); 0 when it did not say.
	RetryAfter time.Duration
	Err        error // the underlying error, if any
}

// Error describes the failure and what to do about it. Phone numbers in
// Twilio's message are masked.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("twilio")
	if e.Code != 0 {
		fmt.Fprintf(&b, " error %d", e.Code)
	}
	if e.HTTPStatus != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.HTTPStatus)
	}
	b.WriteString(": ")
	b.WriteString(strings.TrimRight(MaskNumbers(e.Message), ". "))
	if h := codeHints[e.Code]; h != "" {
		b.WriteString("; ")
		b.WriteString(h)
	}
	b.WriteString(" [")
	b.WriteString(e.Kind.String())
	b.WriteString(": ")
	b.WriteString(kindHints[e.Kind])
	b.WriteString("]")
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

var kindHints = map[Kind]string{
	Permanent: "do not resend unchanged",
	Retryable: "Twilio did not take the request; retry later",
	Ambiguous: "Twilio may have taken the message; look it up before any resend",
}

var codeHints = map[int]string{
	20003: "check the Twilio account SID and auth token",
	20404: "no such message on this account",
	21211: "the participant's number is not a valid phone number; correct it in REDCap",
	21408: "SMS to this region is not enabled on the Twilio account; enable it in the console",
	21610: "the participant replied STOP; record the opt-out",
	21612: "the number cannot receive SMS from this sender",
	21614: "the number is not a mobile number; use another channel",
	21617: "the message is over 1,600 characters; shorten the template",
}

var phoneNumber = regexp.MustCompile(`\+?\b\d{7,15}\b`)

// MaskNumbers hides all but the last two digits of anything that looks like
// a phone number, so errors can be logged.
func MaskNumbers(s string) string {
	return phoneNumber.ReplaceAllStringFunc(s, func(n string) string {
		return strings.Repeat("*", len(n)-2) + n[len(n)-2:]
	})
}

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// classify turns what a call returned into an *Error. create is true for
// the one call that is not safe to repeat (creating a message).
func classify(err error, att *attempt, create bool) *Error {
	e := classifyCall(err, att, create)
	att.mu.Lock()
	e.RetryAfter = retryAfter(att.retryAfter, time.Now())
	att.mu.Unlock()
	return e
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(h); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

func classifyCall(err error, att *attempt, create bool) *Error {
	wrote, status := att.result()

	var tre *client.TwilioRestError
	if errors.As(err, &tre) {
		if status == 0 { // refused locally, e.g. credentials with illegal characters
			status = tre.Status
		}
		return &Error{Code: tre.Code, HTTPStatus: status, Message: tre.Message, Kind: statusKind(status, tre.Code, create), Err: err}
	}
	if status >= 400 {
		return &Error{HTTPStatus: status, Message: fmt.Sprintf("HTTP %d with a body that is not Twilio's error JSON (a proxy or gateway answered)", status), Kind: statusKind(status, 0, create), Err: err}
	}

	msg := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) { // drop the URL: it may hold phone numbers
		msg = ue.Op + ": " + ue.Err.Error()
	}
	switch {
	case status != 0:
		msg = fmt.Sprintf("HTTP %d but the response could not be read: %s", status, msg)
	case !wrote:
		msg = "the request was not sent: " + msg
	default:
		msg = "no answer after the request was sent: " + msg
	}
	kind := Retryable
	if create && wrote {
		kind = Ambiguous
	}
	return &Error{HTTPStatus: status, Message: msg, Kind: kind, Err: err}
}

// statusKind classifies an HTTP error status and Twilio code.
func statusKind(status, code int, create bool) Kind {
	switch {
	case code == 20429 || status == 429:
		return Retryable // refused before anything was created
	case status >= 500 && create:
		// Twilio's edge can fail after the message was created: a 500,
		// 502, 503 or 504 at create is no proof either way.
		return Ambiguous
	case status >= 500 || status == 408:
		return Retryable
	}
	return Permanent
}

// ctxError wraps a context error from before a call: nothing was sent.
func ctxError(err error) *Error {
	msg := "canceled before the request was sent"
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "deadline passed before the request was sent"
	}
	return &Error{Message: msg, Kind: Retryable, Err: err}
}
