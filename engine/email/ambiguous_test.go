package email

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/email/smtptest"
)

// testKey is an outbox idempotency key as nudge makes them.
const testKey = "main/reminder/7/baseline_arm_1/0/1"

// quickSender is newSender with a short SMTP timeout, so a server that
// never answers costs a test well under a second.
func quickSender(t *testing.T, srv *smtptest.Server) *Sender {
	t.Helper()
	return newSender(t, srv, func(c *Config) { c.Timeout = 300 * time.Millisecond })
}

// bounded returns a context that ends the test's wait for Send.
func bounded(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSafetyEmailLostFinalReplyIsAmbiguous: the server reads the whole
// message, terminating "." included, and its reply never arrives. It may have
// accepted the message, so the error must be ambiguous, never "temporary"
// (which the engine would resend) nor "permanent" (which would record a
// failure for a message that may have been delivered).
func TestSafetyEmailLostFinalReplyIsAmbiguous(t *testing.T) {
	for _, f := range []smtptest.Fault{smtptest.FaultDrop, smtptest.FaultHang, smtptest.FaultGarble} {
		t.Run(f.String(), func(t *testing.T) {
			srv := startServer(t)
			srv.SetFault(f)
			s := quickSender(t, srv)
			want := MessageID(testKey, testFrom)
			id, err := s.Send(bounded(t), Message{To: "ana@example.org", Subject: "x", Text: "x", MessageID: want})
			if !IsAmbiguous(err) || IsPermanent(err) {
				t.Fatalf("Send: %v, want an ambiguous error that is not permanent", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != 0 {
				t.Errorf("error %v, want *Error without a reply code", err)
			}
			if id != want {
				t.Errorf("Send returned message ID %q with the error, want %q", id, want)
			}
			got := srv.Messages()
			if len(got) != 1 || got[0].Header.Get("Message-Id") != want {
				t.Fatalf("server holds %d messages, want the one whose reply was lost", len(got))
			}
			if strings.Contains(err.Error(), "ana@example.org") {
				t.Errorf("error names the recipient: %v", err)
			}
		})
	}
}

// TestSafetyEmailCancelledAwaitingFinalReplyIsAmbiguous: a run cancelled
// while nudge waits for the reply to a message's data (shutdown, lost
// sending lease) leaves the outcome just as unknown as a dropped connection.
func TestSafetyEmailCancelledAwaitingFinalReplyIsAmbiguous(t *testing.T) {
	srv := startServer(t)
	srv.SetFault(smtptest.FaultHang)
	s := newSender(t, srv, func(c *Config) { c.Timeout = time.Minute })
	ctx, cancel := context.WithCancel(bounded(t))
	go func() {
		defer cancel()
		_ = srv.WaitMessages(ctx, 1) // the server has read the "."
	}()
	start := time.Now()
	_, err := s.Send(ctx, Message{To: "ana@example.org", Text: "x"})
	if !IsAmbiguous(err) || IsPermanent(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Send: %v, want an ambiguous context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Send took %s after cancel", d)
	}
}

// TestSafetyEmailRefusalIsNotAmbiguous: a failure that proves the server did
// not take the message (a refusal, at RCPT or at the end of the data, or no
// connection at all) is retryable or permanent as its code says, never
// ambiguous, so the message is not held for review needlessly.
func TestSafetyEmailRefusalIsNotAmbiguous(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(*smtptest.Server)
		code      int
		permanent bool
	}{
		{"550 at RCPT", func(s *smtptest.Server) { s.Reject("ana@example.org", 550) }, 550, true},
		{"451 at RCPT", func(s *smtptest.Server) { s.Reject("ana@example.org", 451) }, 451, false},
		{"554 after the data", func(s *smtptest.Server) { s.RejectData(554) }, 554, true},
		{"451 after the data", func(s *smtptest.Server) { s.RejectData(451) }, 451, false},
		{"connection refused", func(s *smtptest.Server) {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t)
			s := quickSender(t, srv)
			tt.setup(srv)
			_, err := s.Send(bounded(t), Message{To: "ana@example.org", Text: "x", MessageID: MessageID(testKey, testFrom)})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Send: %v (%T), want *Error", err, err)
			}
			if e.Code != tt.code || IsPermanent(err) != tt.permanent || IsAmbiguous(err) {
				t.Errorf("code %d permanent %v ambiguous %v, want %d %v false (%v)",
					e.Code, IsPermanent(err), IsAmbiguous(err), tt.code, tt.permanent, err)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("server kept %d refused messages", n)
			}
		})
	}
}

// TestSafetyEmailMessageIDStable: every attempt to send an outbox row carries
// the Message-ID made from its key, so a resend after a lost reply is
// recognisable as the same message; the ID reveals neither key nor address.
func TestSafetyEmailMessageIDStable(t *testing.T) {
	srv := startServer(t)
	s := quickSender(t, srv)
	want := MessageID(testKey, testFrom)
	msg := Message{To: "ana@example.org", Subject: "x", Text: "x", MessageID: want}

	srv.SetFault(smtptest.FaultDrop)
	if _, err := s.Send(bounded(t), msg); !IsAmbiguous(err) {
		t.Fatalf("first send: %v, want ambiguous", err)
	}
	srv.SetFault(smtptest.FaultNone)
	id, err := s.Send(bounded(t), msg)
	if err != nil {
		t.Fatalf("second send: %v", err)
	}
	if id != want {
		t.Errorf("Send returned %q, want %q", id, want)
	}
	got := srv.Messages()
	if len(got) != 2 {
		t.Fatalf("server holds %d messages, want 2", len(got))
	}
	for i, r := range got {
		if h := r.Header.Get("Message-Id"); h != want {
			t.Errorf("send %d: server got Message-ID %q, want %q", i+1, h, want)
		}
	}

	if !regexp.MustCompile(`^<[0-9a-f]{32}@example\.edu>$`).MatchString(want) {
		t.Errorf("MessageID = %q, want <32 hex digits@example.edu>", want)
	}
	for _, part := range []string{"main", "reminder", "baseline", "study@"} {
		if strings.Contains(want, part) {
			t.Errorf("MessageID %q reveals %q", want, part)
		}
	}
	same := []string{"study@example.edu", "Other Name <Study@Example.EDU>"}
	for _, from := range same {
		if got := MessageID(testKey, from); got != want {
			t.Errorf("MessageID(key, %q) = %q, want %q", from, got, want)
		}
	}
	differ := map[string]string{
		"other key":        MessageID(testKey+"0", testFrom),
		"next occurrence":  MessageID("main/reminder/7/baseline_arm_1/0/2", testFrom),
		"other from":       MessageID(testKey, "lab@example.edu"),
		"other domain":     MessageID(testKey, "study@example.org"),
		"key split moved":  MessageID("main/reminder/7/baseline_arm_1/0/1x", "study@example.edu"),
		"address with key": MessageID("", "study@example.edu\x00"+testKey),
	}
	for name, id := range differ {
		if id == want {
			t.Errorf("%s: MessageID %q equals the original's", name, id)
		}
	}
	if got := MessageID(testKey, "not an address"); !strings.HasSuffix(got, "@nudge.invalid>") {
		t.Errorf("MessageID with an invalid From = %q, want …@nudge.invalid>", got)
	}
}

// TestSendMessageIDChecked: a Message-ID that would break the header or is
// not of RFC 5322's form is refused before connecting.
func TestSendMessageIDChecked(t *testing.T) {
	srv := startServer(t)
	s := quickSender(t, srv)
	for _, id := range []string{
		"abc@example.edu",
		"<abc>",
		"<a b@example.edu>",
		"<abc@example.edu>\r\nBcc: x@example.com",
		"<abc@exa mple.edu>",
		"<a..b@example.edu>",
		"<@example.edu>",
	} {
		_, err := s.Send(bounded(t), Message{To: "ana@example.org", Text: "x", MessageID: id})
		if !IsPermanent(err) || !strings.Contains(err.Error(), "message ID") {
			t.Errorf("Send with Message-ID %q: %v, want a permanent error about the message ID", id, err)
		}
	}
	for _, id := range []string{"<abc.def@example.edu>", "<x@[192.0.2.1]>", MessageID(testKey, testFrom)} {
		if _, err := s.Send(bounded(t), Message{To: "ana@example.org", Text: "x", MessageID: id}); err != nil {
			t.Errorf("Send with Message-ID %q: %v", id, err)
		}
	}
	if n := len(srv.Messages()); n != 3 {
		t.Errorf("server holds %d messages, want 3", n)
	}
}
