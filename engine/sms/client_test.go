package sms_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

const (
	account = "ACtest"
	token   = "token123"
	sender  = "+14155550100"
	alice   = "+14155550101"
)

var epoch = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

// setup serves a simulator on a fake clock and returns a Client pointed at it.
func setup(t *testing.T, timeout time.Duration) (*twiliotest.Server, *sms.FakeClock, *sms.Client) {
	t.Helper()
	clk := sms.NewFakeClock(epoch)
	srv := twiliotest.New(twiliotest.Options{AccountSID: account, AuthToken: token, Clock: clk})
	base, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := sms.NewClient(sms.Config{AccountSID: account, AuthToken: token, BaseURL: base, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return srv, clk, c
}

// smsError asserts err is an *sms.Error and returns it.
func smsError(t *testing.T, err error) *sms.Error {
	t.Helper()
	var e *sms.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *sms.Error", err, err)
	}
	return e
}

func TestSendFetchFind(t *testing.T) {
	srv, clk, c := setup(t, 5*time.Second)
	ctx := context.Background()
	body := strings.Repeat("Please complete your survey. ", 6) // 174 GSM characters

	m, err := c.Send(ctx, sender, alice, body, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := sms.Message{SID: m.SID, Status: "queued", From: sender, To: alice, Body: body, Segments: 2, Created: epoch}
	if !strings.HasPrefix(m.SID, "SM") || len(m.SID) != 34 {
		t.Errorf("SID %q is not SM + 32 hex", m.SID)
	}
	if !equalMessage(m, want) {
		t.Errorf("Send returned %+v\nwant %+v", m, want)
	}
	if creates := srv.Creates(); len(creates) != 1 || creates[0].SID != m.SID || creates[0].Body != body {
		t.Errorf("simulator recorded %+v", creates)
	}

	clk.Advance(2 * time.Second)
	got, err := c.Fetch(ctx, m.SID)
	if err != nil {
		t.Fatal(err)
	}
	want.Status, want.Sent = "delivered", epoch // 500ms later, to the second
	if !equalMessage(got, want) {
		t.Errorf("Fetch returned %+v\nwant %+v", got, want)
	}

	tests := []struct {
		name  string
		from  string
		to    string
		after time.Time
		want  int
	}{
		{"created at after", sender, alice, epoch, 1},
		{"after is truncated to the second", sender, alice, epoch.Add(900 * time.Millisecond), 1},
		{"created before after", sender, alice, epoch.Add(time.Second), 0},
		{"other recipient", sender, "+14155550199", epoch.Add(-time.Hour), 0},
		{"other sender", "+14155550199", alice, epoch.Add(-time.Hour), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			found, err := c.Find(ctx, tt.from, tt.to, tt.after)
			if err != nil {
				t.Fatal(err)
			}
			if len(found) != tt.want {
				t.Fatalf("found %d messages, want %d: %+v", len(found), tt.want, found)
			}
			if tt.want == 1 && !equalMessage(found[0], want) {
				t.Errorf("Find returned %+v\nwant %+v", found[0], want)
			}
		})
	}
}

func equalMessage(a, b sms.Message) bool {
	return a.SID == b.SID && a.Status == b.Status && a.From == b.From && a.To == b.To && a.Body == b.Body &&
		a.ErrorCode == b.ErrorCode && a.Segments == b.Segments && a.Created.Equal(b.Created) && a.Sent.Equal(b.Sent)
}

// TestSendThroughMessagingService: a send from a number of a Messaging
// Service's pool names the service and the number; a send or lookup by the
// service's SID alone is refused without a request.
func TestSendThroughMessagingService(t *testing.T) {
	const service = "MG0123456789abcdef0123456789abcdef"
	srv, clk, c := serviceSetup(t, service)
	m, err := c.Send(context.Background(), sender, alice, "hi", 0)
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Second) // accepted, then queued from the pool number
	got, _ := srv.Message(m.SID)
	if got.MessagingServiceSID != service || got.From != sender {
		t.Errorf("simulator saw service %q from %q, want %q from %q", got.MessagingServiceSID, got.From, service, sender)
	}
	// A number outside every pool sends alone.
	m, err = c.Send(context.Background(), "+14155550199", alice, "hi", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := srv.Message(m.SID); got.MessagingServiceSID != "" {
		t.Errorf("a number outside the pool sent through service %q", got.MessagingServiceSID)
	}

	before := len(srv.Attempts())
	_, err = c.Send(context.Background(), service, alice, "hi", 0)
	if e := smsError(t, err); !errors.Is(err, sms.ErrServiceSender) || e.Kind != sms.Permanent {
		t.Errorf("send from the service SID: %v (kind %v), want ErrServiceSender, permanent", err, e.Kind)
	}
	if _, err := c.Find(context.Background(), service, alice, epoch); !errors.Is(err, sms.ErrServiceSender) {
		t.Errorf("lookup by the service SID: %v, want ErrServiceSender", err)
	}
	if n := len(srv.Attempts()) - before; n != 0 {
		t.Errorf("%d requests reached Twilio for a service SID as sender", n)
	}
	for _, bad := range []map[string]string{{sender: "PN0123"}, {service: service}} {
		if _, err := sms.NewClient(sms.Config{AccountSID: account, AuthToken: token, Services: bad}); err == nil {
			t.Errorf("NewClient accepted services %v", bad)
		}
	}
}

// serviceSetup is setup with the number sender in the pool of a Messaging
// Service.
func serviceSetup(t *testing.T, service string) (*twiliotest.Server, *sms.FakeClock, *sms.Client) {
	t.Helper()
	clk := sms.NewFakeClock(epoch)
	srv := twiliotest.New(twiliotest.Options{AccountSID: account, AuthToken: token, Clock: clk})
	srv.SetService(service, []string{sender})
	base, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := sms.NewClient(sms.Config{AccountSID: account, AuthToken: token, BaseURL: base, Timeout: 5 * time.Second,
		Services: map[string]string{sender: service}})
	if err != nil {
		t.Fatal(err)
	}
	return srv, clk, c
}

// TestSafetyServiceSendIsFound: a create through a Messaging Service that
// Twilio took but never answered is found by the lookup, by the number
// that sent it. (Sent by the service's SID alone, as nudge once did, the
// message's From was not known and a lookup by From=MG… found nothing,
// which would have sent it again.)
func TestSafetyServiceSendIsFound(t *testing.T) {
	srv, clk, c := serviceSetup(t, "MG0123456789abcdef0123456789abcdef")
	ctx := context.Background()
	at := clk.Now()
	srv.Fault(twiliotest.Fault{Status: 500, AfterCreate: true})
	_, err := c.Send(ctx, sender, alice, "Your survey is ready.", 0)
	if e := smsError(t, err); e.Kind != sms.Ambiguous {
		t.Fatalf("unanswered create: kind %v, want ambiguous", e.Kind)
	}
	clk.Advance(time.Minute)
	found, err := c.Find(ctx, sender, alice, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Body != "Your survey is ready." || found[0].From != sender {
		t.Fatalf("lookup found %+v, want the one message from the pool number", found)
	}
}

// TestSafetyFindBoundedByDate: a participant with more than 500 earlier
// texts from the study number. The lookup of an unanswered create reads
// only the pages back to the attempt's time (the list is newest first),
// finds the new message, and never gives up for the count.
func TestSafetyFindBoundedByDate(t *testing.T) {
	srv, clk, c := setup(t, 5*time.Second)
	ctx := context.Background()
	for range 620 {
		if _, err := c.Send(ctx, sender, alice, "older", 0); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	clk.Advance(time.Hour)
	attempt := clk.Now()
	srv.Fault(twiliotest.Fault{Status: 503, AfterCreate: true})
	if _, err := c.Send(ctx, sender, alice, "the new one", 0); !sms.IsKind(err, sms.Ambiguous) {
		t.Fatalf("create answered 503 after creating: %v, want ambiguous", err)
	}
	found, err := c.Find(ctx, sender, alice, attempt.Add(-time.Minute))
	if err != nil {
		t.Fatalf("Find with 621 messages to the number: %v", err)
	}
	if len(found) != 1 || found[0].Body != "the new one" {
		t.Fatalf("found %d messages (%v), want just the new one", len(found), found)
	}
}

func TestFindFollowsPages(t *testing.T) {
	srv, clk, c := setup(t, 5*time.Second)
	ctx := context.Background()
	const n = 120 // three pages of 50
	for range n {
		if _, err := c.Send(ctx, sender, alice, "hi", 0); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	found, err := c.Find(ctx, sender, alice, epoch)
	if err != nil {
		t.Fatal(err)
	}
	creates := srv.Creates()
	if len(found) != n {
		t.Fatalf("found %d messages, want %d", len(found), n)
	}
	for i, m := range found { // newest first
		if want := creates[n-1-i].SID; m.SID != want {
			t.Fatalf("message %d is %s, want %s", i, m.SID, want)
		}
	}
}

// TestSafetySendErrors classifies every kind of failed create; a 5xx at
// create is ambiguous (Twilio's edge can fail after the message was
// created), never retryable, and a 429 carries Twilio's Retry-After.
func TestSafetySendErrors(t *testing.T) {
	tests := []struct {
		name       string
		outcome    *twiliotest.Outcome
		fault      *twiliotest.Fault
		to, body   string
		kind       sms.Kind
		code, http int
	}{
		{"invalid number", nil, nil, "4155550101", "hi", sms.Permanent, 21211, 400},
		{"opted out", &twiliotest.Outcome{CreateError: 21610}, nil, alice, "hi", sms.Permanent, 21610, 400},
		{"not reachable", &twiliotest.Outcome{CreateError: 21612}, nil, alice, "hi", sms.Permanent, 21612, 400},
		{"landline", &twiliotest.Outcome{CreateError: 21614}, nil, alice, "hi", sms.Permanent, 21614, 400},
		{"region disabled", &twiliotest.Outcome{CreateError: 21408}, nil, alice, "hi", sms.Permanent, 21408, 400},
		{"body too long", nil, nil, alice, strings.Repeat("x", 1601), sms.Permanent, 21617, 400},
		{"rate limited", nil, &twiliotest.Fault{Status: 429, RetryAfter: "7"}, alice, "hi", sms.Retryable, 20429, 429},
		{"server error", nil, &twiliotest.Fault{Status: 500}, alice, "hi", sms.Ambiguous, 20500, 500},
		{"unavailable", nil, &twiliotest.Fault{Status: 503}, alice, "hi", sms.Ambiguous, 20503, 503},
		{"proxy HTML 502", nil, &twiliotest.Fault{Status: 502, HTML: true}, alice, "hi", sms.Ambiguous, 0, 502},
		{"gateway timeout", nil, &twiliotest.Fault{Status: 504, HTML: true}, alice, "hi", sms.Ambiguous, 0, 504},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _, c := setup(t, 5*time.Second)
			if tt.outcome != nil {
				srv.SetOutcome(tt.to, *tt.outcome)
			}
			if tt.fault != nil {
				srv.Fault(*tt.fault)
			}
			_, err := c.Send(context.Background(), sender, tt.to, tt.body, 0)
			e := smsError(t, err)
			t.Log(err)
			if e.Kind != tt.kind || e.Code != tt.code || e.HTTPStatus != tt.http {
				t.Errorf("got %v/%d/HTTP %d, want %v/%d/HTTP %d: %v", e.Kind, e.Code, e.HTTPStatus, tt.kind, tt.code, tt.http, err)
			}
			if !sms.IsKind(err, tt.kind) {
				t.Errorf("IsKind(err, %v) = false", tt.kind)
			}
			if tt.fault != nil && tt.fault.RetryAfter != "" && e.RetryAfter != 7*time.Second {
				t.Errorf("RetryAfter = %v, want 7s", e.RetryAfter)
			}
			if strings.Contains(err.Error(), tt.to) && len(tt.to) > 8 {
				t.Errorf("error shows the full number: %v", err)
			}
			if n := len(srv.Creates()); n != 0 {
				t.Errorf("%d messages created, want 0", n)
			}
		})
	}
}

// TestAmbiguousTimeoutThenFind: Twilio takes the message but the answer
// never arrives. The send is Ambiguous, and Find shows the message exists.
func TestAmbiguousTimeoutThenFind(t *testing.T) {
	srv, _, c := setup(t, 100*time.Millisecond)
	srv.Fault(twiliotest.Fault{Delay: 10 * time.Second}) // released when the client hangs up
	ctx := context.Background()

	_, err := c.Send(ctx, sender, alice, "hi", 0)
	t.Log(err)
	if e := smsError(t, err); e.Kind != sms.Ambiguous {
		t.Fatalf("kind %v, want ambiguous: %v", e.Kind, err)
	}
	creates := srv.Creates()
	if len(creates) != 1 {
		t.Fatalf("%d creates, want 1", len(creates))
	}
	found, err := c.Find(ctx, sender, alice, epoch.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].SID != creates[0].SID {
		t.Fatalf("Find returned %+v, want the created %s", found, creates[0].SID)
	}
}

func TestCallerContext(t *testing.T) {
	srv, _, c := setup(t, 5*time.Second)

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Send(canceled, sender, alice, "hi", 0)
	if e := smsError(t, err); e.Kind != sms.Retryable || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled before: %v/%v, want retryable wrapping context.Canceled", e.Kind, err)
	}
	if n := len(srv.Attempts()); n != 0 {
		t.Errorf("%d requests reached the simulator, want 0", n)
	}

	// The caller's deadline ends the request after it was written.
	srv.Fault(twiliotest.Fault{Delay: 10 * time.Second})
	short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Send(short, sender, alice, "hi", 0)
	if e := smsError(t, err); e.Kind != sms.Ambiguous {
		t.Errorf("deadline during the call: kind %v, want ambiguous: %v", e.Kind, err)
	}
}

func TestNetworkFailures(t *testing.T) {
	// A port with nothing listening: the request is never written.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	reset := resetServer(t)

	tests := []struct {
		name  string
		base  string
		fetch bool
		kind  sms.Kind
	}{
		{"send refused", refused, false, sms.Retryable},
		{"send reset after write", reset, false, sms.Ambiguous},
		{"fetch reset after write", reset, true, sms.Retryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := sms.NewClient(sms.Config{AccountSID: account, AuthToken: token, BaseURL: tt.base, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if tt.fetch {
				_, err = c.Fetch(context.Background(), "SM00000000000000000000000000000000")
			} else {
				_, err = c.Send(context.Background(), sender, alice, "hi", 0)
			}
			t.Log(err)
			if e := smsError(t, err); e.Kind != tt.kind || e.HTTPStatus != 0 {
				t.Errorf("kind %v HTTP %d, want %v and no status: %v", e.Kind, e.HTTPStatus, tt.kind, err)
			}
		})
	}
}

// resetServer accepts connections, reads one whole request from each and
// resets the connection without answering.
func resetServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			if req, err := http.ReadRequest(bufio.NewReader(conn)); err == nil {
				req.ParseForm()
			}
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}()
	return "http://" + ln.Addr().String()
}

func TestAuthFailure(t *testing.T) {
	srv := twiliotest.New(twiliotest.Options{AccountSID: account, AuthToken: "othertoken"})
	base, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err := sms.NewClient(sms.Config{AccountSID: account, AuthToken: token, BaseURL: base, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Send(context.Background(), sender, alice, "hi", 0)
	e := smsError(t, err)
	if e.Kind != sms.Permanent || e.Code != 20003 || e.HTTPStatus != 401 {
		t.Errorf("got %v/%d/%d, want permanent/20003/401", e.Kind, e.Code, e.HTTPStatus)
	}
	if msg := err.Error(); strings.Contains(msg, token) || !strings.Contains(msg, "auth token") {
		t.Errorf("message %q should name the auth token as the cause, never its value", msg)
	}
	_, err = c.Fetch(context.Background(), "SM00000000000000000000000000000000")
	if e := smsError(t, err); e.Code != 20003 {
		t.Errorf("fetch: code %d, want 20003", e.Code)
	}
}

func TestFetchUnknown(t *testing.T) {
	_, _, c := setup(t, 5*time.Second)
	_, err := c.Fetch(context.Background(), "SM00000000000000000000000000000000")
	if e := smsError(t, err); e.Kind != sms.Permanent || e.Code != 20404 || e.HTTPStatus != 404 {
		t.Errorf("got %v/%d/%d, want permanent/20404/404", e.Kind, e.Code, e.HTTPStatus)
	}
}

func TestStatusesAdvance(t *testing.T) {
	srv, clk, c := setup(t, 5*time.Second)
	ctx := context.Background()
	tests := []struct {
		to      string
		outcome twiliotest.Outcome
		status  string
		code    int
	}{
		{"+14155550111", twiliotest.Outcome{}, "delivered", 0},
		{"+14155550112", twiliotest.Outcome{Final: "undelivered", ErrorCode: 30003}, "undelivered", 30003},
		{"+14155550113", twiliotest.Outcome{Final: "undelivered", ErrorCode: 30007}, "undelivered", 30007},
		{"+14155550114", twiliotest.Outcome{Final: "failed", ErrorCode: 30005}, "failed", 30005},
	}
	sids := make([]string, len(tests))
	for i, tt := range tests {
		srv.SetOutcome(tt.to, tt.outcome)
		m, err := c.Send(ctx, sender, tt.to, "hi", 0)
		if err != nil {
			t.Fatal(err)
		}
		sids[i] = m.SID
	}
	clk.Advance(time.Second)
	for i, tt := range tests {
		m, err := c.Fetch(ctx, sids[i])
		if err != nil {
			t.Fatal(err)
		}
		if sms.IsFinal(m.Status) || m.ErrorCode != 0 {
			t.Errorf("%s after 1s: %s code %d, want a non-final status and no code", tt.to, m.Status, m.ErrorCode)
		}
	}
	clk.Advance(time.Second)
	for i, tt := range tests {
		m, err := c.Fetch(ctx, sids[i])
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != tt.status || m.ErrorCode != tt.code || !sms.IsFinal(m.Status) {
			t.Errorf("%s after 2s: %s code %d, want %s %d", tt.to, m.Status, m.ErrorCode, tt.status, tt.code)
		}
	}
}

func TestNewClientConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  sms.Config
		want string // in the error; "" = valid
	}{
		{"valid", sms.Config{AccountSID: account, AuthToken: token}, ""},
		{"no account", sms.Config{AuthToken: token}, "account SID"},
		{"token with symbols", sms.Config{AccountSID: account, AuthToken: "se/cret"}, "auth token"},
		{"base URL without scheme", sms.Config{AccountSID: account, AuthToken: token, BaseURL: "127.0.0.1:8080"}, "base URL"},
		{"negative timeout", sms.Config{AccountSID: account, AuthToken: token, Timeout: -time.Second}, "negative"},
		{"relative callback", sms.Config{AccountSID: account, AuthToken: token, StatusCallback: "/twilio/status"}, "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sms.NewClient(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			case err != nil && tt.cfg.AuthToken != "" && strings.Contains(err.Error(), tt.cfg.AuthToken):
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
}

// Redact empties a final message's body at Twilio; a message still on its
// way is refused (to try again later) and one Twilio no longer has says so.
func TestRedact(t *testing.T) {
	_, clk, c := setup(t, 5*time.Second)
	ctx := context.Background()
	m, err := c.Send(ctx, sender, alice, "Hi Ana, your survey: https://redcap.example.edu/s/XYZ", 0)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Redact(ctx, m.SID)
	if e := smsError(t, err); e.Code != 20009 || e.Kind != sms.Retryable || !errors.Is(err, sms.ErrNotFinal) {
		t.Errorf("redact while queued: %v (code %d, kind %v); want 20009, retryable, ErrNotFinal", err, e.Code, e.Kind)
	}
	clk.Advance(time.Hour)
	if err := c.Redact(ctx, m.SID); err != nil {
		t.Fatalf("redact after delivery: %v", err)
	}
	got, err := c.Fetch(ctx, m.SID)
	if err != nil || got.Body != "" || got.Status != "delivered" {
		t.Errorf("after redaction: %+v, %v; want the body gone and the status kept", got, err)
	}
	if err := c.Redact(ctx, m.SID); err != nil {
		t.Errorf("redact twice: %v; want nil", err)
	}
	err = c.Redact(ctx, "SM00000000000000000000000000000000")
	if e := smsError(t, err); e.Code != 20404 || e.Kind != sms.Permanent {
		t.Errorf("redact an unknown message: code %d kind %v, want 20404 permanent", e.Code, e.Kind)
	}
}
