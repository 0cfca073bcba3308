package email

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/email/smtptest"
)

const testFrom = "Study Team <study@example.edu>"

// startServer runs a loopback SMTP server for one test.
func startServer(t *testing.T, opts ...smtptest.Option) *smtptest.Server {
	t.Helper()
	srv, err := smtptest.Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
	})
	return srv
}

// newSender returns a Sender for srv with plain-text SMTP.
func newSender(t *testing.T, srv *smtptest.Server, edit func(*Config)) *Sender {
	t.Helper()
	host, port := srv.Addr()
	cfg := Config{Host: host, Port: port, From: testFrom, TLS: TLSNone, Timeout: 10 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSendParts(t *testing.T) {
	tests := []struct {
		name        string
		msg         Message
		contentType string
	}{
		{
			name: "text and html",
			msg: Message{
				To: "ana@example.org", Subject: "Your visit – Monday",
				Text: "Hi Ana,\nsee you Monday.", HTML: "<p>Hi Ana,</p><p>see you Monday.</p>",
				Headers: map[string]string{"X-Nudge-Key": "main/reminder/7/baseline_arm_1/0/1"},
			},
			contentType: "multipart/alternative",
		},
		{
			name:        "text only",
			msg:         Message{To: "Ana Díaz <ana@example.org>", Subject: "Reminder", Text: "Grüße 👍"},
			contentType: "text/plain",
		},
		{
			name:        "html only",
			msg:         Message{To: "ana@example.org", Subject: "Reminder", HTML: "<b>Hi</b>"},
			contentType: "text/html",
		},
		{
			name:        "subject line breaks folded",
			msg:         Message{To: "ana@example.org", Subject: "Hi\r\nBcc: x@example.com", Text: "x"},
			contentType: "text/plain",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t)
			s := newSender(t, srv, nil)
			id, err := s.Send(context.Background(), tt.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.edu>") {
				t.Errorf("message ID %q, want <…@example.edu>", id)
			}
			got := srv.Messages()
			if len(got) != 1 {
				t.Fatalf("server received %d messages, want 1", len(got))
			}
			r := got[0]
			if r.From != "study@example.edu" || len(r.To) != 1 || r.To[0] != "ana@example.org" {
				t.Errorf("envelope from %q to %q", r.From, r.To)
			}
			if want := strings.Join(strings.Fields(tt.msg.Subject), " "); r.Subject != want {
				t.Errorf("subject %q, want %q", r.Subject, want)
			}
			if r.Header.Get("Bcc") != "" {
				t.Errorf("a subject injected a Bcc header")
			}
			if r.Text != tt.msg.Text || r.HTML != tt.msg.HTML {
				t.Errorf("parts text %q html %q, want %q and %q", r.Text, r.HTML, tt.msg.Text, tt.msg.HTML)
			}
			if got := r.Header.Get("Message-Id"); got != id {
				t.Errorf("Message-ID header %q, Send returned %q", got, id)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
			for k, v := range tt.msg.Headers {
				if got := r.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestSendRecipientRejected(t *testing.T) {
	tests := []struct {
		code      int
		permanent bool
	}{
		{550, true},
		{553, true},
		{450, false},
		{452, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			srv := startServer(t)
			srv.Reject("Gone@Example.org", tt.code)
			s := newSender(t, srv, nil)
			_, err := s.Send(context.Background(), Message{To: "gone@example.org", Subject: "x", Text: "x"})
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Send error %v (%T), want *Error", err, err)
			}
			if e.Code != tt.code || IsPermanent(err) != tt.permanent {
				t.Errorf("code %d permanent %v, want %d %v (%v)", e.Code, IsPermanent(err), tt.code, tt.permanent, err)
			}
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("server stored %d messages for a rejected recipient", n)
			}
			if strings.Contains(strings.ToLower(err.Error()), "gone@example.org") {
				t.Errorf("error names the recipient: %v", err)
			}
		})
	}
}

func TestSendInvalidMessage(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
		want string
	}{
		{"bad address", Message{To: "not an address", Text: "x"}, "recipient address"},
		{"no body", Message{To: "ana@example.org", Subject: "x"}, "neither a text nor an HTML body"},
		{"header injection", Message{To: "ana@example.org", Text: "x",
			Headers: map[string]string{"X-Nudge-Key": "a\r\nBcc: b@example.com"}}, "line break"},
		{"reserved header", Message{To: "ana@example.org", Text: "x",
			Headers: map[string]string{"to": "b@example.com"}}, "cannot be overridden"},
		{"bad header name", Message{To: "ana@example.org", Text: "x",
			Headers: map[string]string{"X Key": "1"}}, "printable ASCII"},
	}
	srv := startServer(t)
	s := newSender(t, srv, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Send(context.Background(), tt.msg)
			if !IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Send error %v, want a permanent error containing %q", err, tt.want)
			}
		})
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d invalid messages", n)
	}
}

func TestSendServerDown(t *testing.T) {
	srv, err := smtptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	host, port := srv.Addr()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Host: host, Port: port, From: testFrom, TLS: TLSNone, Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Send(context.Background(), Message{To: "ana@example.org", Text: "x"})
	var e *Error
	if !errors.As(err, &e) || e.Permanent || e.Code != 0 {
		t.Errorf("Send to a closed port: %v, want a temporary *Error without code", err)
	}
}

func TestSendCancelled(t *testing.T) {
	srv := startServer(t)
	s := newSender(t, srv, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Send(ctx, Message{To: "ana@example.org", Text: "x"})
	if !errors.Is(err, context.Canceled) || IsPermanent(err) {
		t.Errorf("Send with a cancelled context: %v, want temporary context.Canceled", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d messages", n)
	}
}

// TestSendCancelledMidway cancels while the client waits for a server that
// accepted the connection but never greets: Send must return at once rather
// than wait for its (long) timeout.
func TestSendCancelledMidway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		cancel()
		<-t.Context().Done()
	}()

	const timeout = time.Minute
	addr := ln.Addr().(*net.TCPAddr)
	s, err := New(Config{Host: "127.0.0.1", Port: addr.Port, From: testFrom, TLS: TLSNone, Timeout: timeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = s.Send(ctx, Message{To: "ana@example.org", Text: "x"})
	if !errors.Is(err, context.Canceled) || IsPermanent(err) {
		t.Errorf("Send: %v, want temporary context.Canceled", err)
	}
	if d := time.Since(start); d > timeout/2 {
		t.Errorf("Send took %s after cancel; it waited for the timeout", d)
	}
}

func TestSendAuth(t *testing.T) {
	const user, pass = "nudge", "s3cret-Pa55"
	tests := []struct {
		name     string
		password string
		ok       bool
	}{
		{"right password", pass, true},
		{"wrong password", "wrong-" + pass, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, smtptest.WithAuth(user, pass))
			s := newSender(t, srv, func(c *Config) {
				c.Username, c.Password, c.InsecureAuth = user, tt.password, true
			})
			_, err := s.Send(context.Background(), Message{To: "ana@example.org", Text: "x"})
			if tt.ok {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if m := srv.Messages(); len(m) != 1 || m[0].AuthUser != user {
					t.Errorf("received %+v, want one message from %s", m, user)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Permanent || e.Code != 535 {
				t.Errorf("Send with a wrong password: %v, want temporary *Error code 535", err)
			}
			if err != nil && strings.Contains(err.Error(), tt.password) {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}

func TestSendWithoutAuthToAuthServer(t *testing.T) {
	srv := startServer(t, smtptest.WithAuth("nudge", "pw"))
	s := newSender(t, srv, nil)
	_, err := s.Send(context.Background(), Message{To: "ana@example.org", Text: "x"})
	var e *Error
	if !errors.As(err, &e) || e.Code != 502 || !e.Permanent {
		t.Errorf("Send without AUTH: %v, want a 5xx reply to MAIL FROM", err)
	}
}

func TestSendTLSMandatoryWithoutSTARTTLS(t *testing.T) {
	srv := startServer(t)
	s := newSender(t, srv, func(c *Config) { c.TLS = TLSMandatory })
	_, err := s.Send(context.Background(), Message{To: "ana@example.org", Text: "x"})
	if err == nil || IsPermanent(err) || !strings.Contains(err.Error(), "STARTTLS") {
		t.Errorf("Send: %v, want a temporary STARTTLS error", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("server received %d messages over plain text", n)
	}
}

func TestNew(t *testing.T) {
	valid := Config{Host: "smtp.example.edu", From: testFrom}
	tests := []struct {
		name string
		edit func(*Config)
		want string // error substring; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no host", func(c *Config) { c.Host = "" }, "host is empty"},
		{"bad port", func(c *Config) { c.Port = 70000 }, "out of range"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "negative"},
		{"bad tls", func(c *Config) { c.TLS = "starttls" }, `"starttls" is not one of`},
		{"bad from", func(c *Config) { c.From = "study team" }, "not an email address"},
		{"auth without tls", func(c *Config) { c.Username, c.Password, c.TLS = "u", "hunter22", TLSNone }, "without TLS"},
		{"insecure auth off loopback", func(c *Config) {
			c.Username, c.Password, c.TLS, c.InsecureAuth = "u", "hunter22", TLSNone, true
		}, "without TLS"},
		{"insecure auth on loopback", func(c *Config) {
			c.Host, c.Username, c.Password, c.TLS, c.InsecureAuth = "127.0.0.1", "u", "hunter22", TLSNone, true
		}, ""},
		{"auth with tls", func(c *Config) { c.Username, c.Password = "u", "hunter22" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			_, err := New(cfg, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter22") {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}

	s, err := New(valid, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Config()
	if got.Port != DefaultPort || got.TLS != TLSMandatory || got.Timeout != DefaultTimeout {
		t.Errorf("defaults: %+v", got)
	}
}

func TestConfigStringHidesPassword(t *testing.T) {
	c := Config{Host: "smtp.example.edu", Username: "u", Password: "hunter22", From: testFrom}
	for _, s := range []string{c.String(), fmtV(c)} {
		if strings.Contains(s, "hunter22") {
			t.Errorf("%q reveals the password", s)
		}
	}
}

func fmtV(c Config) string { return fmt.Sprintf("%v %+v", c, c) }
