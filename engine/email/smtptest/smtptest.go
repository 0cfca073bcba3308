// Package smtptest runs a real SMTP server on the loopback interface that
// keeps every message it accepts in memory. nudge's email tests send to it,
// and `nudge demo` uses it as the study's mail server. It speaks plain SMTP
// (or, when asked, STARTTLS or implicit TLS) and can require AUTH PLAIN,
// refuse chosen recipients, refuse messages at the end of their data, and
// lose the reply to a message it has read (see Fault).
package smtptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Received is one message the server accepted.
type Received struct {
	From     string      // envelope sender (MAIL FROM)
	To       []string    // envelope recipients (RCPT TO)
	AuthUser string      // the user that authenticated, "" without AUTH
	Data     []byte      // the message exactly as transmitted after DATA
	Header   mail.Header // parsed header of Data; nil when Data is not a valid message
	Subject  string      // Subject header with encoded words decoded
	Text     string      // decoded text/plain part, "" when there is none
	HTML     string      // decoded text/html part, "" when there is none
}

// Option configures a Server.
type Option func(*Server)

// WithAuth makes the server advertise AUTH PLAIN and accept mail only from a
// client that authenticated with this username and password.
func WithAuth(username, password string) Option {
	return func(s *Server) { s.user, s.pass = username, password }
}

// WithTLS makes the server offer STARTTLS with cfg. With WithAuth, AUTH is
// then accepted only after STARTTLS, as a real submission server does.
func WithTLS(cfg *tls.Config) Option {
	return func(s *Server) { s.tls = cfg }
}

// WithImplicitTLS makes the server speak TLS from the first byte (as on port
// 465) with cfg.
func WithImplicitTLS(cfg *tls.Config) Option {
	return func(s *Server) { s.tls, s.implicit = cfg, true }
}

// WithAddr makes the server listen on addr (a loopback host and port, e.g.
// 127.0.0.1:2525) instead of a free port of 127.0.0.1.
func WithAddr(addr string) Option {
	return func(s *Server) { s.addr = addr }
}

// WithMaildir makes the server also write each message it accepts, before
// it answers, to a file in dir's new/ folder in maildir style (written in
// tmp/, then renamed). A message that cannot be written is refused with a
// temporary error (451).
func WithMaildir(dir string) Option {
	return func(s *Server) { s.maildir = dir }
}

// Server is a running SMTP server on 127.0.0.1. It is safe for concurrent use.
type Server struct {
	smtp *smtp.Server
	ln   net.Listener
	done chan struct{}

	user, pass string
	tls        *tls.Config
	implicit   bool
	addr       string // "" = a free port of 127.0.0.1
	maildir    string // "" = memory only
	seq        int    // messages written to maildir

	mu       sync.Mutex
	msgs     []Received
	stored   chan struct{} // closed and replaced whenever a message is kept
	reject   map[string]int
	dataCode int
	fault    Fault
}

// Fault is what the server does once it has read a message's data up to and
// including the terminating "." line, in place of its reply. In every fault
// the server keeps the message (Messages lists it), as a real server may
// have queued it before the reply got lost: the client cannot know.
type Fault int

// Faults for SetFault.
const (
	FaultNone   Fault = iota // answer 250: the message is accepted
	FaultDrop                // close the connection without a reply
	FaultHang                // never reply; wait until the client hangs up or Close
	FaultGarble              // answer with a line that is not an SMTP reply, then close
)

func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultDrop:
		return "drop"
	case FaultHang:
		return "hang"
	case FaultGarble:
		return "garble"
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Start listens on a free port of 127.0.0.1 (or WithAddr's address, which
// must be a loopback one) and serves SMTP until Close.
func Start(opts ...Option) (*Server, error) {
	s := &Server{done: make(chan struct{}), stored: make(chan struct{}), reject: map[string]int{}}
	for _, o := range opts {
		o(s)
	}
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || net.ParseIP(host) == nil || !net.ParseIP(host).IsLoopback() {
		return nil, fmt.Errorf("smtptest: %q is not a loopback address and port, e.g. 127.0.0.1:2525", addr)
	}
	if s.maildir != "" {
		for _, sub := range []string{"tmp", "new", "cur"} {
			if err := os.MkdirAll(filepath.Join(s.maildir, sub), 0o700); err != nil {
				return nil, fmt.Errorf("smtptest: maildir: %w", err)
			}
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtptest: listen on loopback: %w", err)
	}
	s.ln = ln
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{srv: s, conn: c.Conn()}, nil
	}))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = s.user != "" && s.tls == nil
	if s.tls != nil && !s.implicit {
		srv.TLSConfig = s.tls
	}
	if s.implicit {
		ln = tls.NewListener(ln, s.tls)
		s.ln = ln
	}
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.ErrorLog = quietLog{}
	s.smtp = srv
	go func() {
		defer close(s.done)
		_ = srv.Serve(ln) // returns smtp.ErrServerClosed after Close
	}()
	return s, nil
}

// Addr returns the host and port the server listens on.
func (s *Server) Addr() (host string, port int) {
	a := s.ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// Messages returns a copy of the messages accepted so far, oldest first.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.msgs))
	copy(out, s.msgs)
	return out
}

// Reject makes RCPT TO for the address to (compared case-insensitively) fail
// with the SMTP reply code, e.g. 550 for a permanent or 450 for a temporary
// failure. A code of 0 accepts the address again.
func (s *Server) Reject(to string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(to)
	if code == 0 {
		delete(s.reject, key)
		return
	}
	s.reject[key] = code
}

// WaitMessages blocks until the server has kept at least n messages or ctx
// is done, and returns ctx's error in that case.
func (s *Server) WaitMessages(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, stored := len(s.msgs), s.stored
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-stored:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// RejectData makes the server answer the end of every later message's data
// with the SMTP reply code, e.g. 554 for a permanent or 451 for a temporary
// refusal, and discard the message. A code of 0 accepts messages again.
func (s *Server) RejectData(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dataCode = code
}

// SetFault makes the server end every later message with f instead of a
// reply (FaultNone restores normal replies). RejectData takes precedence.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Close stops the server, drops open connections and waits for it to finish.
func (s *Server) Close() error {
	err := s.smtp.Close()
	// Close the listener too: Serve may not have registered it yet.
	if lerr := s.ln.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) && err == nil {
		err = lerr
	}
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Server) rejectCode(to string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reject[strings.ToLower(to)]
}

func (s *Server) endOfData() (code int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dataCode, s.fault
}

// write puts a message in the maildir, if there is one: a file written in
// tmp/ and renamed into new/, so a reader never sees half a message.
func (s *Server) write(data []byte) error {
	if s.maildir == "" {
		return nil
	}
	s.mu.Lock()
	s.seq++
	name := fmt.Sprintf("%d.%d_%d.nudge-sim", time.Now().Unix(), os.Getpid(), s.seq)
	s.mu.Unlock()
	tmp := filepath.Join(s.maildir, "tmp", name)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.maildir, "new", name))
}

func (s *Server) store(r Received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, r)
	close(s.stored)
	s.stored = make(chan struct{})
}

// session is one SMTP connection's transaction state.
type session struct {
	srv      *Server
	conn     net.Conn // the raw connection, for the faults
	authUser string
	from     string
	to       []string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.srv.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.srv.user == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.srv.user || pass != ss.srv.pass {
			return smtp.ErrAuthFailed
		}
		ss.authUser = user
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.srv.user != "" && ss.authUser == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if code := ss.srv.rejectCode(to); code != 0 {
		return &smtp.SMTPError{
			Code:         code,
			EnhancedCode: smtp.EnhancedCodeNotSet,
			Message:      "recipient refused by smtptest",
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r) // returns once the terminating "." line is read
	if err != nil {
		return err
	}
	code, fault := ss.srv.endOfData()
	if code != 0 {
		return &smtp.SMTPError{
			Code:         code,
			EnhancedCode: smtp.EnhancedCodeNotSet,
			Message:      "message refused by smtptest",
		}
	}
	rec := Received{From: ss.from, To: ss.to, AuthUser: ss.authUser, Data: data}
	parse(&rec)
	if err := ss.srv.write(data); err != nil {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCodeNotSet, Message: "could not store the message: " + err.Error()}
	}
	ss.srv.store(rec)
	switch fault {
	case FaultDrop:
		_ = ss.conn.Close()
	case FaultHang:
		// The client sends nothing while it waits for the reply, so this
		// read returns only when the client hangs up or Close drops the
		// connection. go-smtp's own reply then fails to be written.
		_, _ = ss.conn.Read(make([]byte, 1))
		_ = ss.conn.Close()
	case FaultGarble:
		_, _ = io.WriteString(ss.conn, "this is not an SMTP reply\r\n")
		_ = ss.conn.Close()
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// parse fills the header, subject and body parts of r from r.Data. A message
// that does not parse is still kept, with only Data set.
func parse(r *Received) {
	msg, err := mail.ReadMessage(bytes.NewReader(r.Data))
	if err != nil {
		return
	}
	r.Header = msg.Header
	var dec mime.WordDecoder
	if subj, err := dec.DecodeHeader(msg.Header.Get("Subject")); err == nil {
		r.Subject = subj
	} else {
		r.Subject = msg.Header.Get("Subject")
	}
	walk(r, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	if !strings.HasPrefix(strings.ToLower(msg.Header.Get("Content-Type")), "multipart/") {
		// The line break that ends DATA belongs to the transport, not the body.
		r.Text = strings.TrimSuffix(r.Text, "\n")
		r.HTML = strings.TrimSuffix(r.HTML, "\n")
	}
}

// walk visits a MIME entity and its children, keeping the first text/plain
// and text/html bodies it finds.
func walk(r *Received, contentType, encoding string, body io.Reader) {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if contentType == "" || err != nil {
		mediaType = "text/plain"
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			walk(r, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p)
		}
	}
	var dst *string
	switch mediaType {
	case "text/plain":
		dst = &r.Text
	case "text/html":
		dst = &r.HTML
	default:
		return
	}
	if *dst != "" {
		return
	}
	switch strings.ToLower(encoding) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return
	}
	*dst = strings.ReplaceAll(string(b), "\r\n", "\n")
}

// quietLog discards go-smtp's connection error log; the server is for tests
// and demos, where a client hanging up is not news.
type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}
