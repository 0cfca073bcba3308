package smtptest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// send delivers raw with the standard library's client, independent of the
// go-mail sender that nudge uses.
func send(s *Server, auth smtp.Auth, from string, to []string, raw string) error {
	host, port := s.Addr()
	return smtp.SendMail(fmt.Sprintf("%s:%d", host, port), auth, from, to, []byte(raw))
}

func start(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

const multipartMsg = "From: a@example.edu\r\n" +
	"To: b@example.org\r\n" +
	"Subject: =?UTF-8?q?Gr=C3=BC=C3=9Fe?= from nudge\r\n" +
	"X-Nudge-Key: k1\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/alternative; boundary=BB\r\n" +
	"\r\n" +
	"--BB\r\n" +
	"Content-Type: text/plain; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Gr=C3=BC=C3=9Fe,\r\nline two\r\n" +
	"--BB\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+SGk8L3A+\r\n" +
	"--BB--\r\n"

func TestReceive(t *testing.T) {
	s := start(t)
	if err := send(s, nil, "a@example.edu", []string{"b@example.org", "c@example.org"}, multipartMsg); err != nil {
		t.Fatal(err)
	}
	if err := send(s, nil, "a@example.edu", []string{"d@example.org"}, "Subject: plain\r\n\r\nJust text\r\n"); err != nil {
		t.Fatal(err)
	}
	got := s.Messages()
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
	m := got[0]
	if m.From != "a@example.edu" || strings.Join(m.To, ",") != "b@example.org,c@example.org" {
		t.Errorf("envelope %q → %q", m.From, m.To)
	}
	if m.Subject != "Grüße from nudge" || m.Header.Get("X-Nudge-Key") != "k1" {
		t.Errorf("subject %q, key %q", m.Subject, m.Header.Get("X-Nudge-Key"))
	}
	if m.Text != "Grüße,\nline two" || m.HTML != "<p>Hi</p>" {
		t.Errorf("text %q html %q", m.Text, m.HTML)
	}
	if !strings.Contains(string(m.Data), "X-Nudge-Key: k1") {
		t.Errorf("Data lacks the raw header")
	}
	if p := got[1]; p.Subject != "plain" || p.Text != "Just text" || p.HTML != "" {
		t.Errorf("plain message: subject %q text %q html %q", p.Subject, p.Text, p.HTML)
	}
}

func TestReject(t *testing.T) {
	s := start(t)
	s.Reject("Gone@Example.org", 550)
	err := send(s, nil, "a@example.edu", []string{"gone@example.org"}, "Subject: x\r\n\r\nx\r\n")
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 550 {
		t.Fatalf("send to a rejected address: %v, want a 550 reply", err)
	}
	s.Reject("gone@example.org", 0)
	if err := send(s, nil, "a@example.edu", []string{"gone@example.org"}, "Subject: x\r\n\r\nx\r\n"); err != nil {
		t.Fatalf("send after lifting the rejection: %v", err)
	}
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestAuth(t *testing.T) {
	s := start(t, WithAuth("nudge", "pw"))
	host, _ := s.Addr()
	tests := []struct {
		name string
		auth smtp.Auth
		code int // 0 = accepted
	}{
		{"no auth", nil, 502},
		{"wrong password", smtp.PlainAuth("", "nudge", "nope", host), 535},
		{"right password", smtp.PlainAuth("", "nudge", "pw", host), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := send(s, tt.auth, "a@example.edu", []string{"b@example.org"}, "Subject: x\r\n\r\nx\r\n")
			var te *textproto.Error
			switch {
			case tt.code == 0 && err != nil:
				t.Errorf("send: %v", err)
			case tt.code != 0 && (!errors.As(err, &te) || te.Code != tt.code):
				t.Errorf("send: %v, want reply %d", err, tt.code)
			}
		})
	}
	if m := s.Messages(); len(m) != 1 || m[0].AuthUser != "nudge" {
		t.Errorf("messages %+v, want one from user nudge", m)
	}
}

func TestCloseTwice(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := send(s, nil, "a@example.edu", []string{"b@example.org"}, "x"); err == nil {
		t.Error("send after Close succeeded")
	}
}

// sendWithin is send over a connection that gives up after d, for the faults
// that leave the client waiting.
func sendWithin(t *testing.T, s *Server, d time.Duration, raw string) error {
	t.Helper()
	host, port := s.Addr()
	conn, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	if err := c.Mail("a@example.edu"); err != nil {
		return err
	}
	if err := c.Rcpt("b@example.org"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, raw); err != nil {
		return err
	}
	return w.Close() // writes the terminating "." and reads the reply
}

func TestRejectData(t *testing.T) {
	for _, code := range []int{451, 554} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			s := start(t)
			s.RejectData(code)
			err := sendWithin(t, s, 5*time.Second, "Subject: x\r\n\r\nx\r\n")
			var te *textproto.Error
			if !errors.As(err, &te) || te.Code != code {
				t.Fatalf("send: %v, want a %d reply to the data", err, code)
			}
			if n := len(s.Messages()); n != 0 {
				t.Errorf("%d messages kept after refusing them", n)
			}
			s.RejectData(0)
			if err := sendWithin(t, s, 5*time.Second, "Subject: x\r\n\r\nx\r\n"); err != nil {
				t.Fatalf("send after lifting the refusal: %v", err)
			}
		})
	}
}

// TestFaults: in every fault the message is kept but the client gets no
// reply it can read.
func TestFaults(t *testing.T) {
	for _, f := range []Fault{FaultDrop, FaultHang, FaultGarble} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			s := start(t)
			s.SetFault(f)
			err := sendWithin(t, s, 500*time.Millisecond, "Subject: lost\r\n\r\nx\r\n")
			var te *textproto.Error
			if err == nil || errors.As(err, &te) {
				t.Fatalf("send: %v, want an error without an SMTP reply", err)
			}
			if m := s.Messages(); len(m) != 1 || m[0].Subject != "lost" {
				t.Fatalf("messages %+v, want the one whose reply was lost", m)
			}
			s.SetFault(FaultNone)
			if err := sendWithin(t, s, 5*time.Second, "Subject: ok\r\n\r\nx\r\n"); err != nil {
				t.Fatalf("send after the fault: %v", err)
			}
		})
	}
}

func TestWaitMessages(t *testing.T) {
	s := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.WaitMessages(ctx, 1) }()
	if err := send(s, nil, "a@example.edu", []string{"b@example.org"}, "Subject: x\r\n\r\nx\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("WaitMessages: %v", err)
	}
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := s.WaitMessages(short, 2); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitMessages for a message that never comes: %v, want context.Canceled", err)
	}
}
