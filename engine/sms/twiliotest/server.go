// Package twiliotest is an in-memory simulator of Twilio's 2010-04-01
// Messages API (create, fetch, list) for tests and the demo. twilio-go
// talks to it as it would to api.twilio.com: same paths, form parameters,
// Basic auth, JSON shapes and error bodies. Message statuses advance over
// the injected clock, failures can be injected per number or for the next
// creates, and every create is recorded with its clock time so that tests
// can prove pacing.
//
// Status callbacks are off by default: a StatusCallback given at create is
// only stored on the message. With Options.Callbacks a started server POSTs
// each status change to it, signed as Twilio signs them (see callbacks.go).
package twiliotest

import (
	"context"
	"crypto/md5"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Options configures a Server.
type Options struct {
	AccountSID, AuthToken string // the credentials every request must carry
	// Clock is the simulator's time source for create times and status
	// changes; nil means the wall clock.
	Clock interface{ Now() time.Time }
	// Timing sets when statuses change; zero fields take the defaults.
	Timing Timing

	// Callbacks makes a started server POST every status change after the
	// first (sending, sent, delivered, undelivered, failed) to the
	// message's StatusCallback, as Twilio does. It also makes creates
	// refuse a StatusCallback that is not a loopback URL (code 21609), so
	// that the simulator never sends traffic off the machine. Off by
	// default.
	Callbacks bool
	// CallbackEvery is how often, in real time, the callback sender looks
	// at the clock for changes to report; default 100ms.
	CallbackEvery time.Duration
	// ShuffleCallbacks sends a message's changes newest first when several
	// are due at once, as Twilio's callbacks may arrive out of order.
	ShuffleCallbacks bool
}

// Timing says when a message's status changes, as offsets from its create;
// a later step is never taken before an earlier one.
type Timing struct {
	Sending time.Duration // queued → sending; default 200ms
	Sent    time.Duration // → sent; default 500ms
	Final   time.Duration // → delivered, undelivered or failed; default 1.5s
}

// Outcome is what happens to messages sent to one number.
type Outcome struct {
	// CreateError makes every create to the number fail with this Twilio
	// code (21211, 21610, 21612, 21614, 21408 …) and HTTP 400.
	CreateError int
	// Final is the last status: "delivered" (default), "undelivered" or
	// "failed". A failed message never reaches "sent".
	Final string
	// ErrorCode is reported with an undelivered or failed status (30003,
	// 30005, 30006, 30007 …).
	ErrorCode int
}

// Fault disturbs the next creates, whoever they are for.
type Fault struct {
	// Status is the HTTP status to answer with (429 with code 20429, 500,
	// 502, 503 …); 0 means create the message normally.
	Status int
	// Delay holds the answer back this long (in real time, since it is
	// meant to outlast a client's timeout). With Status 0 the message is
	// created before the delay, as when Twilio takes a message and the
	// answer is lost.
	Delay time.Duration
	// HTML answers with an HTML page instead of Twilio's error JSON, as a
	// proxy in front of Twilio would.
	HTML bool
	// Times is how many creates the fault applies to; 0 means one.
	Times int
	// AfterCreate creates the message before answering with Status, as
	// when Twilio's edge fails after the message was taken.
	AfterCreate bool
	// Land hides a created message from fetch and list until this long
	// (Clock time) after the request: a create that lands at Twilio only
	// after the client gave up.
	Land time.Duration
	// RetryAfter is sent as the Retry-After header with Status.
	RetryAfter string
}

// Create is one accepted create.
type Create struct {
	Time                time.Time // the Clock's time when the request arrived
	SID, From, To, Body string
	Segments            int
	ValidityPeriod      string // the ValidityPeriod parameter, "" when not sent
}

// Attempt is one create request, accepted or not.
type Attempt struct {
	Time       time.Time
	From, To   string
	HTTPStatus int    // 201 when accepted
	Code       int    // Twilio's error code when refused
	SID        string // when accepted
}

// Message is a message's current state.
type Message struct {
	SID, AccountSID, From, To, Body string
	MessagingServiceSID             string
	StatusCallback                  string
	Status                          string
	ErrorCode                       int
	Segments                        int
	Created, Updated                time.Time
	Sent                            time.Time // zero until the message is sent
}

// Server is the simulator. It is an http.Handler; Start serves it on a
// loopback port. All methods are safe for concurrent use.
type Server struct {
	opts Options
	mux  *http.ServeMux

	mu       sync.Mutex
	outcomes map[string]Outcome
	faults   []Fault
	messages []*message // in create order
	bySID    map[string]*message
	creates  []Create
	attempts []Attempt
	srv      *http.Server

	callbacks     []CallbackAttempt
	stopCallbacks context.CancelFunc // nil unless the sender runs
	callbacksDone chan struct{}      // closed when the sender has stopped
}

// message is the stored part of a message; its status is derived from the
// clock on every read.
type message struct {
	seq     int
	base    Message // SID, numbers, body, created, segments
	outcome Outcome
	visible time.Time // fetch and list show it from then on
	// reports follows the callbacks of each step of the message's
	// timeline; nil until the sender first looks at the message.
	reports []report
}

type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now() }

// New returns a Server for opts.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = wallClock{}
	}
	if opts.Timing.Sending <= 0 {
		opts.Timing.Sending = 200 * time.Millisecond
	}
	if opts.Timing.Sent <= 0 {
		opts.Timing.Sent = 500 * time.Millisecond
	}
	if opts.Timing.Final <= 0 {
		opts.Timing.Final = 1500 * time.Millisecond
	}
	if opts.CallbackEvery <= 0 {
		opts.CallbackEvery = 100 * time.Millisecond
	}
	// Statuses never go backwards, even with offsets given out of order.
	opts.Timing.Sent = max(opts.Timing.Sent, opts.Timing.Sending)
	opts.Timing.Final = max(opts.Timing.Final, opts.Timing.Sent)
	s := &Server{
		opts:     opts,
		outcomes: make(map[string]Outcome),
		bySID:    make(map[string]*message),
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("POST /2010-04-01/Accounts/{account}/Messages.json", s.create)
	s.mux.HandleFunc("GET /2010-04-01/Accounts/{account}/Messages.json", s.list)
	s.mux.HandleFunc("GET /2010-04-01/Accounts/{account}/Messages/{file}", s.fetch)
	return s
}

// Start serves the simulator on 127.0.0.1 at a free port and returns its
// base URL (http://127.0.0.1:PORT), to be used as sms.Config.BaseURL. With
// Options.Callbacks it also starts the status callback sender.
func (s *Server) Start() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return "", errors.New("twiliotest: server already started")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("twiliotest: listen on 127.0.0.1: %w", err)
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	if s.opts.Callbacks {
		ctx, cancel := context.WithCancel(context.Background())
		s.stopCallbacks, s.callbacksDone = cancel, make(chan struct{})
		go s.sendCallbacks(ctx, s.callbacksDone)
	}
	return "http://" + ln.Addr().String(), nil
}

// Close stops a started server: it stops the callback sender, waiting for
// it to end (a callback in flight is abandoned), and drops the server's
// connections.
func (s *Server) Close() error {
	s.mu.Lock()
	srv, stop, done := s.srv, s.stopCallbacks, s.callbacksDone
	s.stopCallbacks, s.callbacksDone = nil, nil
	s.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// SetAuthToken changes the auth token requests must carry, as rotating
// it in the Twilio console does.
func (s *Server) SetAuthToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.AuthToken = token
}

// SetOutcome sets what happens to messages created to the number to from now on.
func (s *Server) SetOutcome(to string, o Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outcomes[to] = o
}

// Fault queues f; it applies to the next f.Times creates after the faults
// queued before it.
func (s *Server) Fault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// ClearFaults drops every queued fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Creates returns every accepted create, in order.
func (s *Server) Creates() []Create {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Create(nil), s.creates...)
}

// Attempts returns every create request, accepted or refused, in order.
func (s *Server) Attempts() []Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Attempt(nil), s.attempts...)
}

// Messages returns the current state of every message, in create order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	out := make([]Message, 0, len(s.messages))
	for _, m := range s.messages {
		if !now.Before(m.visible) {
			out = append(out, s.state(m, now))
		}
	}
	return out
}

// Message returns the current state of the message with the given SID.
func (s *Server) Message(sid string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.bySID[sid]
	if !ok {
		return Message{}, false
	}
	return s.state(m, s.opts.Clock.Now()), true
}

// state derives m's status at now from its create time and outcome.
func (s *Server) state(m *message, now time.Time) Message {
	out := m.base
	t := s.opts.Timing
	age := now.Sub(out.Created)
	final := m.outcome.Final
	if final == "" {
		final = "delivered"
	}
	switch {
	case age < t.Sending:
		// as created
	case age >= t.Final:
		out.Status, out.Updated = final, out.Created.Add(t.Final)
		if final != "failed" {
			out.Sent = out.Created.Add(t.Sent)
		}
		if final != "delivered" {
			out.ErrorCode = m.outcome.ErrorCode
		}
	case age < t.Sent || final == "failed":
		out.Status, out.Updated = "sending", out.Created.Add(t.Sending)
	default:
		out.Status, out.Updated = "sent", out.Created.Add(t.Sent)
		out.Sent = out.Updated
	}
	return out
}

// ServeHTTP checks the credentials and the account in the path, then
// answers like Twilio.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	s.mu.Lock()
	token := s.opts.AuthToken
	s.mu.Unlock()
	if !ok || !equal(user, s.opts.AccountSID) || !equal(pass, token) {
		w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
		writeError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	s.mux.ServeHTTP(&notFoundWriter{ResponseWriter: w, path: r.URL.Path}, r)
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// notFoundWriter replaces the mux's plain-text 404 and 405 with Twilio's
// error JSON.
type notFoundWriter struct {
	http.ResponseWriter
	path    string
	swapped bool
}

func (w *notFoundWriter) WriteHeader(code int) {
	if (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) && w.Header().Get("Content-Type") == "text/plain; charset=utf-8" {
		w.swapped = true
		writeError(w.ResponseWriter, http.StatusNotFound, 20404, notFound(w.path))
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *notFoundWriter) Write(b []byte) (int, error) {
	if w.swapped {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func notFound(path string) string {
	return "The requested resource " + path + " was not found"
}

// account answers 404 unless the path names the configured account.
func (s *Server) account(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("account") != s.opts.AccountSID {
		writeError(w, http.StatusNotFound, 20404, notFound(r.URL.Path))
		return false
	}
	return true
}

var (
	e164      = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	shortCode = regexp.MustCompile(`^[0-9]{5,6}$`)
	alphaID   = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
)

// createError is a refused create: Twilio's code and message, HTTP 400.
type createError struct {
	code int
	msg  string
}

// validate checks a create's parameters as Twilio does.
func validate(from, service, to, body string, o Outcome) *createError {
	switch {
	case to == "":
		return &createError{21604, "A 'To' phone number is required."}
	case from == "" && service == "":
		return &createError{21603, "A 'From' phone number is required."}
	case body == "":
		return &createError{21602, "Message body is required."}
	case !e164.MatchString(to):
		return &createError{21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", to)}
	case from != "" && !e164.MatchString(from) && !shortCode.MatchString(from) && !alphaID.MatchString(from):
		return &createError{21212, fmt.Sprintf("The 'From' number %s is not a valid phone number, shortcode, or alphanumeric sender ID.", from)}
	case utf8.RuneCountInString(body) > 1600:
		return &createError{21617, "The concatenated message body exceeds the 1600 character limit."}
	case o.CreateError != 0:
		return &createError{o.CreateError, createMessages(o.CreateError, from, to)}
	}
	return nil
}

// createMessages gives Twilio's wording for refusals that depend on the number.
func createMessages(code int, from, to string) string {
	switch code {
	case 21211:
		return fmt.Sprintf("The 'To' number %s is not a valid phone number.", to)
	case 21408:
		return fmt.Sprintf("Permission to send an SMS has not been enabled for the region indicated by the 'To' number: %s.", to)
	case 21610:
		return "Attempt to send to unsubscribed recipient"
	case 21612:
		return fmt.Sprintf("The 'To' phone number: %s, is not currently reachable using the 'From' phone number: %s via SMS.", to, from)
	case 21614:
		return fmt.Sprintf("'To' number %s is not a valid mobile number", to)
	}
	return fmt.Sprintf("Error %d", code)
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "Could not parse the form body: "+err.Error())
		return
	}
	from, to, body := r.PostForm.Get("From"), r.PostForm.Get("To"), r.PostForm.Get("Body")
	service := r.PostForm.Get("MessagingServiceSid")

	s.mu.Lock()
	now := s.opts.Clock.Now()
	att := Attempt{Time: now, From: from, To: to}
	fault, faulty := s.nextFault()
	if faulty && fault.Status != 0 {
		if fault.AfterCreate {
			m := s.add(now, from, service, to, body, r.PostForm.Get("StatusCallback"), r.PostForm.Get("ValidityPeriod"))
			m.visible = now.Add(fault.Land)
			att.SID = m.base.SID
		}
		att.HTTPStatus = fault.Status
		if !fault.HTML {
			att.Code = faultCode(fault.Status)
		}
		s.attempts = append(s.attempts, att)
		s.mu.Unlock()
		if wait(r, fault.Delay) {
			writeFault(w, fault)
		}
		return
	}
	if cerr := validate(from, service, to, body, s.outcomes[to]); cerr != nil {
		att.HTTPStatus, att.Code = http.StatusBadRequest, cerr.code
		s.attempts = append(s.attempts, att)
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, cerr.code, cerr.msg)
		return
	}
	callback := r.PostForm.Get("StatusCallback")
	if s.opts.Callbacks && callback != "" && !loopbackURL(callback) {
		att.HTTPStatus, att.Code = http.StatusBadRequest, 21609
		s.attempts = append(s.attempts, att)
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, 21609, callbackRefusal(callback))
		return
	}
	m := s.add(now, from, service, to, body, callback, r.PostForm.Get("ValidityPeriod"))
	if faulty {
		m.visible = now.Add(fault.Land)
	}
	att.HTTPStatus, att.SID = http.StatusCreated, m.base.SID
	s.attempts = append(s.attempts, att)
	resp := s.wire(m, now)
	s.mu.Unlock()

	if faulty && !wait(r, fault.Delay) {
		return // the client gave up: the message stays created
	}
	writeJSON(w, http.StatusCreated, resp)
}

// nextFault takes one use of the first queued fault. The caller holds mu.
func (s *Server) nextFault() (Fault, bool) {
	if len(s.faults) == 0 {
		return Fault{}, false
	}
	f := s.faults[0]
	s.faults[0].Times--
	if s.faults[0].Times <= 0 {
		s.faults = s.faults[1:]
	}
	return f, true
}

// add stores a new message. The caller holds mu.
func (s *Server) add(now time.Time, from, service, to, body, callback, validity string) *message {
	seq := len(s.messages) + 1
	sum := md5.Sum([]byte(s.opts.AccountSID + "/" + strconv.Itoa(seq)))
	status := "queued"
	if service != "" {
		status = "accepted"
	}
	m := &message{
		seq: seq,
		base: Message{
			SID:                 "SM" + hex.EncodeToString(sum[:]),
			AccountSID:          s.opts.AccountSID,
			From:                from,
			To:                  to,
			Body:                body,
			MessagingServiceSID: service,
			StatusCallback:      callback,
			Status:              status,
			Segments:            segments(body),
			Created:             now,
			Updated:             now,
		},
		outcome: s.outcomes[to],
	}
	s.messages = append(s.messages, m)
	s.bySID[m.base.SID] = m
	s.creates = append(s.creates, Create{Time: now, SID: m.base.SID, From: from, To: to, Body: body,
		Segments: m.base.Segments, ValidityPeriod: validity})
	return m
}

// wait holds the answer back for d and reports whether the client is still
// there to receive it.
func wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func faultCode(status int) int {
	if status == http.StatusTooManyRequests {
		return 20429
	}
	return 20000 + status
}

func writeFault(w http.ResponseWriter, f Fault) {
	if f.HTML {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		fmt.Fprintf(w, "<html><head><title>%d %s</title></head><body><h1>%[1]d %[2]s</h1></body></html>\n", f.Status, http.StatusText(f.Status))
		return
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	msg := http.StatusText(f.Status)
	if f.Status == http.StatusTooManyRequests {
		msg = "Too Many Requests"
	}
	writeError(w, f.Status, faultCode(f.Status), msg)
}

func (s *Server) fetch(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	sid, ok := cutSuffix(r.PathValue("file"), ".json")
	s.mu.Lock()
	m, found := s.bySID[sid]
	found = found && !s.opts.Clock.Now().Before(m.visible)
	var resp wireMessage
	if ok && found {
		resp = s.wire(m, s.opts.Clock.Now())
	}
	s.mu.Unlock()
	if !ok || !found {
		writeError(w, http.StatusNotFound, 20404, notFound(r.URL.Path))
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return "", false
}
