package sms_test

import (
	"errors"
	"testing"

	"github.com/nudge-study/nudge/engine/sms"
)

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  *sms.Error
		want string
	}{
		{
			&sms.Error{Code: 21211, HTTPStatus: 400, Kind: sms.Permanent, Message: "The 'To' number +14155550101 is not a valid phone number."},
			"twilio error 21211 (HTTP 400): The 'To' number **********01 is not a valid phone number; the participant's number is not a valid phone number; correct it in REDCap [permanent: do not resend unchanged]",
		},
		{
			&sms.Error{Code: 20404, HTTPStatus: 404, Kind: sms.Permanent, Message: "The requested resource /2010-04-01/Accounts/ACtest/Messages/SM68c544c6354748df1639286aa5cf4e9d.json was not found"},
			"twilio error 20404 (HTTP 404): The requested resource /2010-04-01/Accounts/ACtest/Messages/SM68c544c6354748df1639286aa5cf4e9d.json was not found; no such message on this account [permanent: do not resend unchanged]",
		},
		{
			&sms.Error{Kind: sms.Ambiguous, Message: "no answer after the request was sent: Post: timeout"},
			"twilio: no answer after the request was sent: Post: timeout [ambiguous: Twilio may have taken the message; look it up before any resend]",
		},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
}

func TestErrorUnwrap(t *testing.T) {
	cause := errors.New("cause")
	var err error = &sms.Error{Kind: sms.Retryable, Err: cause}
	if !errors.Is(err, cause) || !sms.IsKind(err, sms.Retryable) || sms.IsKind(err, sms.Ambiguous) || sms.IsKind(cause, sms.Retryable) {
		t.Error("Unwrap or IsKind do not follow the wrapped error and kind")
	}
	if s := sms.Kind(0).String(); s != "Kind(0)" {
		t.Errorf("zero Kind prints %q", s)
	}
}
