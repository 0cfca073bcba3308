// Package email sends nudge's email messages through an SMTP server with
// go-mail. Each Send opens its own connection, so a Sender is safe for
// concurrent use and holds no connection between runs.
//
// # Where a send fails
//
// An SMTP server takes responsibility for a message when it reads the "."
// line that ends the message's data, and says so with its reply (250). A
// failed Send is therefore one of three kinds, told apart by where in the
// exchange it failed:
//
//   - Before the terminating "." was sent (connecting, TLS, AUTH, MAIL FROM,
//     RCPT TO, the DATA command, writing the message): the server cannot have
//     accepted the message. A 5xx reply to MAIL FROM, RCPT TO or DATA, or an
//     invalid message, is permanent (IsPermanent); anything else, a 5xx reply
//     during connecting or AUTH included, is temporary and worth retrying.
//   - A reply to the "." with a 4xx or 5xx code: the server refused the
//     message. 5xx is permanent, 4xx temporary, as above.
//   - Anything else once the "." was handed to the connection: no reply, the
//     connection closed or reset, a timeout, a cancelled context, or a reply
//     that cannot be read. The server may or may not have accepted the
//     message, and sending it again may deliver it twice: IsAmbiguous. A
//     failure while writing the "." line itself counts here too, as part of
//     it may have reached the server.
//
// A message keeps its Message-ID across attempts when the caller sets
// Message.MessageID (see MessageID), so a server or mailbox that has seen the
// message already can recognise the copy.
package email

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	netmail "net/mail"
	"net/textproto"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/wneessen/go-mail"
)

// TLS modes of Config.TLS.
const (
	TLSMandatory     = "mandatory"     // STARTTLS required
	TLSImplicit      = "implicit"      // TLS from the first byte; the mode of port 465
	TLSOpportunistic = "opportunistic" // STARTTLS when the server offers it
	TLSNone          = "none"          // plain text; only for loopback test servers
)

// Defaults applied by New.
const (
	DefaultPort     = 587
	DefaultTimeout  = 30 * time.Second
	implicitTLSPort = 465
)

// Config says how to reach the SMTP server.
type Config struct {
	Host     string
	Port     int           // 0 = DefaultPort
	Username string        // "" = no SMTP AUTH
	Password string        // never logged or put in an error
	From     string        // "Study Team <study@example.edu>"
	TLS      string        // TLSMandatory (default), TLSImplicit, TLSOpportunistic or TLSNone; on port 465 all but TLSNone mean TLSImplicit
	Timeout  time.Duration // per SMTP command; 0 = DefaultTimeout

	// InsecureAuth allows SMTP AUTH over a plain-text connection (TLS "none").
	// It is honoured only for a loopback host (127.0.0.1, ::1, localhost),
	// where nudge's own test server runs.
	InsecureAuth bool
}

// String describes the configuration without the password.
func (c Config) String() string {
	auth := "no auth"
	if c.Username != "" {
		auth = "user " + c.Username
	}
	return fmt.Sprintf("smtp %s:%d tls=%s %s from %s", c.Host, c.Port, c.TLS, auth, c.From)
}

// Message is one email to one recipient. At least one of Text and HTML must
// be set; with both, the message is multipart/alternative.
type Message struct {
	To      string
	Subject string // line breaks are folded into spaces
	Text    string
	HTML    string
	Headers map[string]string // extra headers, e.g. "X-Nudge-Key"

	// MessageID is the Message-ID header to send, with angle brackets, as
	// made by MessageID; give every attempt to send the same message the
	// same one. "" = a new random one for this attempt.
	MessageID string
}

// MessageID returns the Message-ID for the message whose idempotency key is
// key, sent from the address from (as in Config.From): "<hash@domain>",
// where hash is a SHA-256 digest of key and the From address (neither
// appears in the ID) and domain is the From address's domain, lower-cased.
// The same key and From address always give the same ID.
//
// A Message-ID should be unique in the world, and mail systems may drop a
// second message with an ID they have seen. key must therefore name one
// message among all that are sent from this From address, by every nudge
// installation using it; and since the digest has no secret in it, anyone who
// can guess key can check the guess against the ID. Prefixing key with a
// secret unique to the installation solves both.
//
// A From domain that cannot appear in a Message-ID (not ASCII, or not an
// email address at all) is replaced by "nudge.invalid".
func MessageID(key, from string) string {
	addr := from
	if a, err := netmail.ParseAddress(from); err == nil {
		addr = a.Address
	}
	addr = strings.ToLower(strings.TrimSpace(addr))
	domain := addr[strings.LastIndexByte(addr, '@')+1:]
	if !isDotAtom(domain) && !isDomainLiteral(domain) {
		domain = "nudge.invalid"
	}
	sum := sha256.Sum256([]byte("nudge message-id\x00" + addr + "\x00" + key))
	return "<" + hex.EncodeToString(sum[:16]) + "@" + domain + ">"
}

// checkMessageID accepts a Message-ID of RFC 5322's form "<left@right>",
// left a dot-atom and right a dot-atom or a domain literal.
func checkMessageID(id string) error {
	inner, ok := strings.CutPrefix(id, "<")
	if ok {
		inner, ok = strings.CutSuffix(inner, ">")
	}
	at := strings.LastIndexByte(inner, '@')
	if !ok || at < 0 || !isDotAtom(inner[:at]) ||
		!(isDotAtom(inner[at+1:]) || isDomainLiteral(inner[at+1:])) {
		return fmt.Errorf("message ID %q is not of the form <left@right> (make it with email.MessageID)", id)
	}
	return nil
}

// isDotAtom reports whether s is RFC 5322 dot-atom-text: atoms of printable
// ASCII without specials, joined by single dots.
func isDotAtom(s string) bool {
	for _, atom := range strings.Split(s, ".") {
		if atom == "" {
			return false
		}
		for _, r := range atom {
			if r <= ' ' || r > '~' || strings.ContainsRune(`()<>[]:;@\,."`, r) {
				return false
			}
		}
	}
	return true
}

// isDomainLiteral reports whether s is an RFC 5322 no-fold-literal such as
// "[192.0.2.1]".
func isDomainLiteral(s string) bool {
	inner, ok := strings.CutPrefix(s, "[")
	if ok {
		inner, ok = strings.CutSuffix(inner, "]")
	}
	if !ok {
		return false
	}
	for _, r := range inner {
		if r <= ' ' || r > '~' || r == '[' || r == ']' || r == '\\' {
			return false
		}
	}
	return true
}

// Error is a failed send. Permanent is true when sending the same message
// again cannot succeed: the server answered the message's MAIL, RCPT or DATA
// or the end of its data with a 5xx code, or the message itself is invalid
// (bad address, no body). Failures before the message is offered —
// connection, TLS, authentication — are never permanent, even with a 5xx
// code: the sender's setup must be fixed, not the message, and the message
// can go out once it is.
//
// Ambiguous is true when the failure came after the message's data was
// complete and the server did not answer with a refusal: it may have
// accepted the message (see the package documentation). Such a message must
// not be sent again without a person checking. Permanent and Ambiguous are
// never both true.
//
// Its message says "recipient" where go-mail or the server quoted the address, so
// it can be logged and stored like the rest of a message's status.
type Error struct {
	Code      int  // SMTP reply code, 0 when the server gave none
	Permanent bool // see above
	Ambiguous bool // see above
	Err       error

	msg string // Err's text with the recipient's address replaced
}

func (e *Error) Error() string {
	kind := "temporary failure"
	switch {
	case e.Ambiguous:
		kind = "ambiguous failure (the server may have accepted the message)"
	case e.Permanent:
		kind = "permanent failure"
	}
	msg := e.msg
	if msg == "" {
		msg = e.Err.Error()
	}
	return fmt.Sprintf("email: %s: %s", kind, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err (or an error it wraps) is a permanent
// send failure; such a message should be marked failed, not retried.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// IsAmbiguous reports whether err (or an error it wraps) is a send whose
// outcome is unknown: the message's data went out in full and no refusal
// came back, so the server may have accepted it. Sending it again risks a
// duplicate; such a message should be marked for review, not retried.
func IsAmbiguous(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Ambiguous
}

// Sender sends messages with one SMTP configuration.
type Sender struct {
	cfg    Config
	domain string // of the From address, for Message-IDs
	log    logrus.FieldLogger
	roots  *x509.CertPool // trusted CAs; nil = the system's (tests set their own)
}

// New validates cfg, fills in defaults and returns a Sender. log may be nil.
func New(cfg Config, log logrus.FieldLogger) (*Sender, error) {
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	if cfg.Host == "" {
		return nil, errors.New("email: smtp host is empty; set smtp.host in the config")
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("email: smtp port %d is out of range 1-65535", cfg.Port)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("email: smtp timeout %s is negative", cfg.Timeout)
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSMandatory
	}
	switch cfg.TLS {
	case TLSMandatory, TLSImplicit, TLSOpportunistic, TLSNone:
	default:
		return nil, fmt.Errorf("email: smtp tls %q is not one of %q, %q, %q, %q",
			cfg.TLS, TLSMandatory, TLSImplicit, TLSOpportunistic, TLSNone)
	}
	if cfg.Port == implicitTLSPort && cfg.TLS != TLSNone {
		cfg.TLS = TLSImplicit
	}
	from, err := netmail.ParseAddress(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("email: smtp from %q is not an email address (%v); write it like \"Study Team <study@example.edu>\"", cfg.From, err)
	}
	if cfg.Username != "" && cfg.TLS == TLSNone {
		if !cfg.InsecureAuth || !isLoopback(cfg.Host) {
			return nil, fmt.Errorf("email: refusing to send the smtp password to %s without TLS; set smtp tls to %q or %q",
				cfg.Host, TLSMandatory, TLSOpportunistic)
		}
	}
	return &Sender{cfg: cfg, domain: from.Address[strings.LastIndexByte(from.Address, '@')+1:], log: log}, nil
}

// Config returns the configuration in use, defaults filled in.
func (s *Sender) Config() Config { return s.cfg }

// Send delivers m to the SMTP server and returns the Message-ID header it set
// (with angle brackets, e.g. "<…@example.edu>"): m.MessageID when set. The
// Message-ID is returned with an error too, once the message is built, so an
// ambiguous send can be looked up in the server's logs. Errors are *Error;
// IsAmbiguous tells a send that may have been accepted, and IsPermanent a
// failure not worth retrying, from one worth retrying (see the package
// documentation). When ctx is cancelled the connection is dropped at once;
// if that happens while Send waits for the reply to the message's data, the
// error is ambiguous.
func (s *Sender) Send(ctx context.Context, m Message) (messageID string, err error) {
	msg, err := s.build(m)
	if err != nil {
		return "", scrub(&Error{Permanent: true, Err: err}, m.To)
	}
	messageID = msg.GetMessageID()
	if err := ctx.Err(); err != nil {
		return messageID, &Error{Err: err}
	}
	log := s.log.WithFields(logrus.Fields{"message_id": messageID, "to_domain": domainOf(m.To)})

	var conns []*ctxConn
	defer func() {
		for _, c := range conns {
			c.release()
		}
	}()
	client, err := s.client(func(dctx context.Context, network, addr string) (net.Conn, error) {
		c, err := s.dial(ctx, dctx, network, addr)
		if c != nil {
			conns = append(conns, c)
		}
		if err != nil {
			return nil, err
		}
		if s.implicitTLS() {
			tc := tls.Client(c, s.tlsConfig())
			if err := tc.HandshakeContext(dctx); err != nil {
				return nil, err
			}
			return tc, nil
		}
		return c, nil
	})
	if err != nil {
		return messageID, &Error{Err: err}
	}

	err = client.DialAndSendWithContext(ctx, msg)
	if msg.IsDelivered() {
		if err != nil {
			// The server accepted the message; only the goodbye failed.
			log.WithField("error", scrub(&Error{Err: err}, m.To).msg).Warn("email accepted, closing the connection failed")
		}
		log.Debug("email sent")
		return messageID, nil
	}
	var e *Error
	if err == nil { // cannot happen: no error means delivered
		e = &Error{Ambiguous: true, Err: errors.New("go-mail reported neither delivery nor an error")}
	} else {
		e = classify(ctx, err)
	}
	scrub(e, m.To)
	if e.Ambiguous {
		log.WithField("error", e.msg).Warn("email may have been accepted: no reply after its data")
	}
	return messageID, e
}

// scrub replaces the recipient's address in e's message: go-mail and SMTP
// servers quote it in their errors.
func scrub(e *Error, to string) *Error {
	e.msg = e.Err.Error()
	addrs := []string{strings.TrimSpace(to)}
	if a, err := netmail.ParseAddress(to); err == nil {
		addrs = append(addrs, a.Address)
	}
	for _, a := range addrs {
		if a != "" {
			e.msg = strings.ReplaceAll(e.msg, a, "recipient")
		}
	}
	return e
}

// build turns m into a go-mail message.
func (s *Sender) build(m Message) (*mail.Msg, error) {
	if m.Text == "" && m.HTML == "" {
		return nil, errors.New("message has neither a text nor an HTML body")
	}
	msg := mail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return nil, fmt.Errorf("sender address: %w", err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("recipient address is not valid: %w", err)
	}
	for name, value := range m.Headers {
		if err := checkHeader(name, value); err != nil {
			return nil, err
		}
		msg.SetGenHeader(mail.Header(name), value)
	}
	msg.Subject(strings.Join(strings.Fields(m.Subject), " "))
	msg.SetDate()
	if m.MessageID != "" {
		if err := checkMessageID(m.MessageID); err != nil {
			return nil, err
		}
		msg.SetMessageIDWithValue(m.MessageID[1 : len(m.MessageID)-1]) // go-mail adds the brackets
	} else {
		msg.SetMessageIDWithValue(rand.Text() + "@" + s.domain)
	}
	msg.SetUserAgent("nudge")
	switch {
	case m.Text != "" && m.HTML != "":
		msg.SetBodyString(mail.TypeTextPlain, m.Text)
		msg.AddAlternativeString(mail.TypeTextHTML, m.HTML)
	case m.Text != "":
		msg.SetBodyString(mail.TypeTextPlain, m.Text)
	default:
		msg.SetBodyString(mail.TypeTextHTML, m.HTML)
	}
	return msg, nil
}

// reserved headers are set by Send itself and may not be overridden.
var reserved = map[string]bool{
	"from": true, "to": true, "cc": true, "bcc": true, "subject": true, "date": true,
	"message-id": true, "mime-version": true, "content-type": true,
	"content-transfer-encoding": true, "sender": true, "reply-to": true,
}

// checkHeader rejects header names and values that would break the message
// or let a value inject further headers.
func checkHeader(name, value string) error {
	if name == "" {
		return errors.New("header with an empty name")
	}
	for _, r := range name {
		if r <= ' ' || r > '~' || r == ':' {
			return fmt.Errorf("header name %q may contain only printable ASCII without spaces or colons", name)
		}
	}
	if reserved[strings.ToLower(name)] {
		return fmt.Errorf("header %q is set by nudge and cannot be overridden", name)
	}
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Errorf("header %q value contains a line break", name)
	}
	return nil
}

// client builds a go-mail client that dials through dial.
func (s *Sender) client(dial mail.DialContextFunc) (*mail.Client, error) {
	opts := []mail.Option{
		mail.WithPort(s.cfg.Port),
		mail.WithTimeout(s.cfg.Timeout),
		mail.WithDialContextFunc(dial),
		mail.WithTLSConfig(s.tlsConfig()),
	}
	switch {
	case s.implicitTLS(), s.cfg.TLS == TLSNone:
		// Implicit TLS is done by the dialer, so go-mail must not STARTTLS.
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case s.cfg.TLS == TLSOpportunistic:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if s.cfg.Username != "" {
		// The strongest mechanism the server offers. go-mail's PLAIN and
		// LOGIN refuse to send the password over a connection without TLS
		// (except to localhost), so opportunistic TLS cannot leak it.
		opts = append(opts,
			mail.WithUsername(s.cfg.Username),
			mail.WithPassword(s.cfg.Password),
			mail.WithOpportunisticSMTPAuth(
				mail.SMTPAuthSCRAMSHA256PLUS, mail.SMTPAuthSCRAMSHA256,
				mail.SMTPAuthSCRAMSHA1PLUS, mail.SMTPAuthSCRAMSHA1,
				mail.SMTPAuthCramMD5, mail.SMTPAuthPlain, mail.SMTPAuthLogin),
		)
	}
	c, err := mail.NewClient(s.cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("set up smtp client for %s: %w", s.cfg.Host, err)
	}
	return c, nil
}

func (s *Sender) implicitTLS() bool { return s.cfg.TLS == TLSImplicit }

func (s *Sender) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: s.cfg.Host, MinVersion: tls.VersionTLS12, RootCAs: s.roots}
}

// dial connects to addr within dctx (go-mail's connect timeout) and ties the
// connection to ctx (the caller's), so cancelling ctx aborts the exchange.
func (s *Sender) dial(ctx, dctx context.Context, network, addr string) (*ctxConn, error) {
	var d net.Dialer
	raw, err := d.DialContext(dctx, network, addr)
	if err != nil {
		return nil, err
	}
	return watch(ctx, raw), nil
}

// classify wraps a go-mail error from a send that was not delivered as
// *Error, by where in the exchange it failed (see the package documentation).
//
// go-mail reports a failure of the transaction as a *mail.SendError whose
// Reason names the step; ErrorCode is the server's reply code when the
// server answered with 4xx or 5xx, and 0 otherwise (no reply, a network
// error, a reply that could not be parsed). ErrSMTPDataClose is the step that
// writes the terminating "." and reads the reply to it. Errors that are not a
// SendError come from connecting, TLS or AUTH, before any MAIL FROM.
func classify(ctx context.Context, err error) *Error {
	ctxErr := ctx.Err()
	var se *mail.SendError
	if !errors.As(err, &se) {
		// A failure while connecting, in TLS or in AUTH.
		if ctxErr != nil {
			return &Error{Err: fmt.Errorf("%w (%v)", ctxErr, err)}
		}
		return &Error{Code: replyCode(err), Err: err}
	}
	e := &Error{Code: se.ErrorCode(), Err: err}
	switch se.Reason {
	case mail.ErrSMTPDataClose:
		// After the data: only a 4xx or 5xx reply proves a refusal.
		switch e.Code / 100 {
		case 4:
		case 5:
			e.Permanent = true
		default:
			e.Ambiguous = true
		}
		if ctxErr != nil {
			e.Err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return e
	case mail.ErrGetSender, mail.ErrGetRcpts:
		e.Permanent = true
	case mail.ErrSMTPMailFrom, mail.ErrSMTPRcptTo, mail.ErrSMTPData, mail.ErrWriteContent:
		e.Permanent = e.Code/100 == 5
	case mail.ErrConnCheck, mail.ErrNoUnencoded:
		// Before MAIL FROM; temporary.
	default:
		// ErrSMTPReset follows a delivered message and never reaches here;
		// ErrAmbiguous and reasons this code does not know cannot be placed
		// before the data's end, so they may have been accepted.
		e.Ambiguous = true
		return e
	}
	if ctxErr != nil {
		return &Error{Err: fmt.Errorf("%w (%v)", ctxErr, err)}
	}
	return e
}

// replyCode returns the SMTP reply code in err's chain, 0 when there is none.
func replyCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func domainOf(addr string) string {
	if a, err := netmail.ParseAddress(addr); err == nil {
		addr = a.Address
	}
	return addr[strings.LastIndexByte(addr, '@')+1:]
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ctxConn is a connection that stops working once its context is done: every
// deadline set after that lies in the past, so blocked reads and writes
// return at once.
type ctxConn struct {
	net.Conn
	ctx  context.Context
	stop func() bool

	mu sync.Mutex
}

var past = time.Unix(1, 0)

func watch(ctx context.Context, c net.Conn) *ctxConn {
	cc := &ctxConn{Conn: c, ctx: ctx}
	cc.stop = context.AfterFunc(ctx, func() {
		cc.mu.Lock()
		defer cc.mu.Unlock()
		_ = cc.Conn.SetDeadline(past)
	})
	return cc
}

func (c *ctxConn) deadline(set func(time.Time) error, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx.Err() != nil {
		t = past
	}
	return set(t)
}

func (c *ctxConn) SetDeadline(t time.Time) error { return c.deadline(c.Conn.SetDeadline, t) }

func (c *ctxConn) SetReadDeadline(t time.Time) error { return c.deadline(c.Conn.SetReadDeadline, t) }

func (c *ctxConn) SetWriteDeadline(t time.Time) error {
	return c.deadline(c.Conn.SetWriteDeadline, t)
}

// release detaches the connection from its context and closes it (go-mail
// leaves a connection open when the exchange fails before MAIL FROM).
func (c *ctxConn) release() {
	c.stop()
	_ = c.Conn.Close()
}
