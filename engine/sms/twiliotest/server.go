// Package twiliotest is an in-memory simulator of Twilio's 2010-04-01
// Messages API (create, fetch, list, update, delete and the media list) for
// tests, the demo and `nudge sim twilio`. twilio-go talks to it as it would
// to api.twilio.com: same paths, form parameters, Basic auth, JSON shapes
// and error bodies. Message statuses advance over the injected clock,
// failures can be injected per number or for the next creates, and every
// create is recorded with its clock time so that tests can prove pacing;
// Options.Journal also writes each create request as a JSON line, for a
// test that watches the simulator from outside the process.
//
// Messaging Services (MG…) have a pool of numbers: a create through one
// answers "accepted" with no From, and the message is queued shortly after
// from a number of the pool. Scheduled messages (ScheduleType=fixed,
// SendAt) wait as "scheduled" and can be canceled; ValidityPeriod is
// honoured (a message still queued when it lapses fails with 30036).
//
// Status callbacks are off by default: a StatusCallback given at create is
// only stored on the message. With Options.Callbacks a started server POSTs
// each status change to it, signed as Twilio signs them (see callbacks.go).
//
// A small control API under /_sim/ (a path Twilio never uses; see
// control.go) changes outcomes, faults and pools while the server runs.
package twiliotest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
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
	// first (queued after accepted, sending, sent, delivered, undelivered,
	// failed, canceled) to the message's StatusCallback, as Twilio does.
	// It also makes creates refuse a StatusCallback that is not a loopback
	// URL (code 21609), so that the simulator never sends traffic off the
	// machine. Off by default.
	Callbacks bool
	// CallbackEvery is how often, in real time, the callback sender looks
	// at the clock for changes to report; default 100ms.
	CallbackEvery time.Duration
	// ShuffleCallbacks sends a message's changes newest first when several
	// are due at once, as Twilio's callbacks may arrive out of order.
	ShuffleCallbacks bool

	// Services maps each Messaging Service SID (MG…) to the numbers of its
	// pool. A create through a service not listed here is refused with
	// 21705, except while no service is configured at all: then any MG…
	// SID is taken, with DefaultPoolNumber as its only number.
	Services map[string][]string
	// Journal, when set, receives one JSON line (a JournalEntry) per create
	// request, accepted or refused, written with a single Write; when it
	// has a Sync method (an *os.File) that is called after each line.
	Journal io.Writer
}

// DefaultPoolNumber is the only number of a Messaging Service while no
// service is configured (Options.Services).
const DefaultPoolNumber = "+15005550006"

// Timing says when a message's status changes. Sending, Sent and Final are
// offsets from when the message is queued: its create, or Queued after it
// through a Messaging Service, or its SendAt when scheduled. A later step
// is never taken before an earlier one.
type Timing struct {
	Queued  time.Duration // accepted → queued through a Messaging Service; default 100ms
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
	// "failed", or any other word, such as "partially_delivered", to try a
	// client on a status it does not know. A failed message never reaches
	// "sent"; "sent" leaves the message sent, never confirmed.
	Final string
	// ErrorCode is reported with an undelivered or failed status (30003,
	// 30005, 30006, 30007 …).
	ErrorCode int
	// QueueDelay keeps messages to the number queued this much longer
	// (Clock time) before they are sent, as a busy sender's queue does. A
	// message whose validity period lapses first ends failed with 30036.
	QueueDelay time.Duration
}

// AnyNumber is the number of the outcome that applies to every number
// without its own (SetOutcome(AnyNumber, …)).
const AnyNumber = "*"

// Fault disturbs the next creates, whoever they are for.
type Fault struct {
	// Status is the HTTP status to answer with (429 with code 20429, 500,
	// 502, 503 …); 0 means create the message normally.
	Status int
	// Delay holds the answer back this long (in real time, since it is
	// meant to outlast a client's timeout). With Status 0 the message is
	// created before the delay, as when Twilio takes a message and the
	// answer is lost, or simply answers slowly.
	Delay time.Duration
	// HTML answers with an HTML page instead of Twilio's error JSON, as a
	// proxy in front of Twilio would.
	HTML bool
	// Times is how many creates the fault applies to; 0 means one.
	Times int
	// For makes the fault apply to every create for this long (Clock time)
	// from when it was queued, instead of Times creates: a storm.
	For time.Duration
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
	MessagingServiceSID string
	// Sender is the number that sends the message: From, or the number of
	// the Messaging Service's pool chosen for it.
	Sender string
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
	SendAt                          time.Time // zero unless scheduled
}

// Server is the simulator. It is an http.Handler; Start serves it on a
// loopback port. All methods are safe for concurrent use.
type Server struct {
	opts Options
	mux  *http.ServeMux

	mu       sync.Mutex
	outcomes map[string]Outcome
	faults   []queuedFault
	services map[string][]string
	sticky   map[string]string // service + "|" + To → the pool's number
	next     map[string]int    // service → the pool's next number for a new To
	messages []*message        // in create order; deleted ones are dropped
	bySID    map[string]*message
	seq      int
	creates  []Create
	attempts []Attempt
	journErr error // the first journal write error
	srv      *http.Server

	callbacks     []CallbackAttempt
	stopCallbacks context.CancelFunc // nil unless the sender runs
	callbacksDone chan struct{}      // closed when the sender has stopped
}

// queuedFault is a Fault waiting for creates; until is set for a Fault
// with For.
type queuedFault struct {
	Fault
	until time.Time
}

// message is the stored part of a message; its status is derived from the
// clock on every read (see timeline).
type message struct {
	seq      int
	base     Message // SID, numbers, body, created, segments, first status
	sender   string  // the number that sends it (the pool's for a service)
	outcome  Outcome
	visible  time.Time     // fetch and list show it from then on
	validity time.Duration // Twilio's ValidityPeriod
	canceled time.Time     // zero unless canceled while scheduled
	touched  time.Time     // the last update (redaction), zero if none
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
	if opts.Timing.Queued <= 0 {
		opts.Timing.Queued = 100 * time.Millisecond
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
		services: make(map[string][]string),
		sticky:   make(map[string]string),
		next:     make(map[string]int),
		bySID:    make(map[string]*message),
	}
	for sid, pool := range opts.Services {
		s.services[sid] = append([]string(nil), pool...)
	}
	s.mux = http.NewServeMux()
	const messages = "/2010-04-01/Accounts/{account}/Messages"
	s.mux.HandleFunc("POST "+messages+".json", s.create)
	s.mux.HandleFunc("GET "+messages+".json", s.list)
	s.mux.HandleFunc("GET "+messages+"/{file}", s.fetch)
	s.mux.HandleFunc("POST "+messages+"/{file}", s.update)
	s.mux.HandleFunc("DELETE "+messages+"/{file}", s.remove)
	s.mux.HandleFunc("GET "+messages+"/{sid}/Media.json", s.media)
	s.control()
	return s
}

// Start serves the simulator on 127.0.0.1 at a free port and returns its
// base URL (http://127.0.0.1:PORT), to be used as sms.Config.BaseURL. With
// Options.Callbacks it also starts the status callback sender.
func (s *Server) Start() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("twiliotest: listen on 127.0.0.1: %w", err)
	}
	base, err := s.Serve(ln)
	if err != nil {
		ln.Close()
	}
	return base, err
}

// Serve serves the simulator on ln, which the caller opened (on a loopback
// address), and returns its base URL; Close stops it. With
// Options.Callbacks it also starts the status callback sender.
func (s *Server) Serve(ln net.Listener) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return "", errors.New("twiliotest: server already started")
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

// SetOutcome sets what happens to messages created to the number to from
// now on; to may be AnyNumber.
func (s *Server) SetOutcome(to string, o Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outcomes[to] = o
}

// outcome is what happens to messages to the number to. The caller holds mu.
func (s *Server) outcome(to string) Outcome {
	if o, ok := s.outcomes[to]; ok {
		return o
	}
	return s.outcomes[AnyNumber]
}

// SetService sets the numbers of a Messaging Service's pool (an empty
// list leaves the service with none, so that creates through it fail with
// 21704).
func (s *Server) SetService(sid string, numbers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[sid] = append([]string(nil), numbers...)
}

// Fault queues f; it applies to the next f.Times creates (or to every
// create during f.For) after the faults queued before it.
func (s *Server) Fault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q := queuedFault{Fault: f}
	if f.For > 0 {
		q.until = s.opts.Clock.Now().Add(f.For)
	}
	s.faults = append(s.faults, q)
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

// JournalErr returns the first error writing the journal, if any.
func (s *Server) JournalErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journErr
}

// Messages returns the current state of every message not deleted, in
// create order.
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
