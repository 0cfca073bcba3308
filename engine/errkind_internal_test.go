package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/sms"
)

func TestErrorKind(t *testing.T) {
	tests := []struct {
		system string
		err    error
		want   string
	}{
		{metrics.SystemTwilio, nil, ""},
		{metrics.SystemTwilio, context.Canceled, ""},
		{metrics.SystemTwilio, &sms.Error{Code: 21211, HTTPStatus: 400, Kind: sms.Permanent}, "21xxx"},
		{metrics.SystemTwilio, fmt.Errorf("send: %w", &sms.Error{Code: 30003, Kind: sms.Permanent}), "30xxx"},
		{metrics.SystemTwilio, &sms.Error{HTTPStatus: 503, Kind: sms.Retryable}, "http_503"},
		{metrics.SystemTwilio, &sms.Error{Kind: sms.Ambiguous, Err: context.DeadlineExceeded}, "timeout"},
		{metrics.SystemTwilio, &sms.Error{Kind: sms.Retryable, Err: errors.New("connection refused")}, "network"},
		{metrics.SystemREDCap, &redcap.APIError{Status: 403, Message: "token"}, "http_403"},
		{metrics.SystemREDCap, fmt.Errorf("export: %w", redcap.ErrRedirect), "redirect"},
		{metrics.SystemREDCap, redcap.ErrMissingRecords, "missing_records"},
		{metrics.SystemREDCap, &net.OpError{Op: "dial", Err: errors.New("refused")}, "network"},
		{metrics.SystemREDCap, errors.New("invalid character '<'"), "other"},
		{metrics.SystemSMTP, &email.Error{Code: 550, Permanent: true, Err: errors.New("no such user")}, "smtp_5xx"},
		{metrics.SystemSMTP, &email.Error{Err: context.DeadlineExceeded}, "timeout"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.system, tt.err); got != tt.want {
			t.Errorf("errorKind(%s, %v) = %q, want %q", tt.system, tt.err, got, tt.want)
		}
	}
}
