package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/sms"
)

// Kinds of error in nudge_call_errors_total besides the classes of codes.
const (
	errKindTimeout = "timeout"
	errKindNetwork = "network"
	errKindOther   = "other"
)

// errorKind names the class of a failed call's error for
// nudge_call_errors_total: a Twilio error code class ("21xxx"), an HTTP
// status ("http_503"), an SMTP reply class ("smtp_5xx"), a REDCap problem,
// or timeout, network, other. It is "" for a call cancelled by nudge
// itself (shutdown), which is no error of the outside system.
func errorKind(system string, err error) string {
	if err == nil || errors.Is(err, context.Canceled) {
		return ""
	}
	timeout := errors.Is(err, context.DeadlineExceeded)
	switch system {
	case metrics.SystemTwilio:
		var se *sms.Error
		if errors.As(err, &se) {
			switch {
			case se.Code > 0:
				return fmt.Sprintf("%dxxx", se.Code/1000)
			case se.HTTPStatus > 0:
				return fmt.Sprintf("http_%d", se.HTTPStatus)
			case timeout:
				return errKindTimeout
			case se.Kind == sms.Permanent:
				return errKindOther
			}
			return errKindNetwork
		}
	case metrics.SystemREDCap:
		var ae *redcap.APIError
		switch {
		case errors.As(err, &ae):
			return fmt.Sprintf("http_%d", ae.Status)
		case errors.Is(err, redcap.ErrRedirect):
			return "redirect"
		case errors.Is(err, redcap.ErrMissingColumns):
			return "missing_columns"
		case errors.Is(err, redcap.ErrMissingRecords):
			return "missing_records"
		}
	case metrics.SystemSMTP:
		var ee *email.Error
		if errors.As(err, &ee) && ee.Code > 0 {
			return fmt.Sprintf("smtp_%dxx", ee.Code/100)
		}
	}
	if timeout {
		return errKindTimeout
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) {
		if ne.Timeout() {
			return errKindTimeout
		}
		return errKindNetwork
	}
	return errKindOther
}
