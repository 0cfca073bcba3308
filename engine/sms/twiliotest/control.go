package twiliotest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// The control API lives under /_sim/, a path Twilio never uses, and takes
// the same Basic auth as the Messages API. Bodies are JSON in the shapes of
// a setup file (see Setup):
//
//	POST   /_sim/outcome  {"to": "+1…" or "*", "create_error": 21610, "final": "undelivered", "error_code": 30003, "queue_delay": "30s"}
//	POST   /_sim/fault    {"status": 503, "times": 5, "for": "1m", "delay": "2s", "html": false, "after_create": false, "land": "30s", "retry_after": "7"}
//	DELETE /_sim/fault    drops every queued fault
//	POST   /_sim/service  {"sid": "MG…", "numbers": ["+1…", "+1…"]}
//	GET    /_sim/state    counts of attempts and creates, queued faults and every message's status
//
// Each answers 200 with the state, or 400 with Twilio's error shape.
const controlPrefix = "/_sim/"

func (s *Server) control() {
	s.mux.HandleFunc("POST "+controlPrefix+"outcome", s.controlOutcome)
	s.mux.HandleFunc("POST "+controlPrefix+"fault", s.controlFault)
	s.mux.HandleFunc("DELETE "+controlPrefix+"fault", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		s.controlState(w, r)
	})
	s.mux.HandleFunc("POST "+controlPrefix+"service", s.controlService)
	s.mux.HandleFunc("GET "+controlPrefix+"state", s.controlState)
}

// Setup is what a setup file (or the control API) sets: per-number
// outcomes, faults queued at start and Messaging Service pools. Its JSON
// form extends the demo's twilio.json:
//
//	{"about": "…",
//	 "outcomes": {"+13125550112": {"final": "undelivered", "error_code": 30003}, "*": {"queue_delay": "2s"}},
//	 "faults":   [{"status": 503, "for": "30s"}, {"delay": "15s", "land": "1m"}],
//	 "services": {"MG0123456789abcdef0123456789abcdef": ["+14155550100", "+14155550101"]}}
//
// Durations are Go durations in strings ("1m30s").
type Setup struct {
	Outcomes map[string]Outcome
	Faults   []Fault
	Services map[string][]string
}

// Apply sets everything setup holds, as SetOutcome, Fault and SetService.
func (s *Server) Apply(setup Setup) {
	for to, o := range setup.Outcomes {
		s.SetOutcome(to, o)
	}
	for _, f := range setup.Faults {
		s.Fault(f)
	}
	for sid, pool := range setup.Services {
		s.SetService(sid, pool)
	}
}

// duration is a time.Duration written as a Go duration string.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`a duration must be a string such as "30s" or "1m30s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration such as \"30s\" or \"1m30s\"", s)
	}
	*d = duration(v)
	return nil
}

type outcomeJSON struct {
	To          string   `json:"to,omitempty"` // control API only
	CreateError int      `json:"create_error"`
	Final       string   `json:"final"`
	ErrorCode   int      `json:"error_code"`
	QueueDelay  duration `json:"queue_delay"`
}

func (o outcomeJSON) outcome() Outcome {
	return Outcome{CreateError: o.CreateError, Final: o.Final, ErrorCode: o.ErrorCode, QueueDelay: time.Duration(o.QueueDelay)}
}

type faultJSON struct {
	Status      int      `json:"status"`
	Delay       duration `json:"delay"`
	HTML        bool     `json:"html"`
	Times       int      `json:"times"`
	For         duration `json:"for"`
	AfterCreate bool     `json:"after_create"`
	Land        duration `json:"land"`
	RetryAfter  string   `json:"retry_after"`
}

func (f faultJSON) fault() (Fault, error) {
	if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
		return Fault{}, fmt.Errorf("fault status %d: want 0 (answer normally) or an HTTP error status from 400 to 599", f.Status)
	}
	if f.Times < 0 {
		return Fault{}, fmt.Errorf("fault times %d: want a count from 1, or 0 for one", f.Times)
	}
	return Fault{Status: f.Status, Delay: time.Duration(f.Delay), HTML: f.HTML, Times: f.Times, For: time.Duration(f.For),
		AfterCreate: f.AfterCreate, Land: time.Duration(f.Land), RetryAfter: f.RetryAfter}, nil
}

type serviceJSON struct {
	SID     string   `json:"sid"`
	Numbers []string `json:"numbers"`
}

type setupJSON struct {
	About    string                 `json:"about"`
	Outcomes map[string]outcomeJSON `json:"outcomes"`
	Faults   []faultJSON            `json:"faults"`
	Services map[string][]string    `json:"services"`
}

// ParseSetup reads a setup file's JSON. A syntax or type error names its
// line and column.
func ParseSetup(data []byte) (Setup, error) {
	var raw setupJSON
	if err := decodeStrict(data, &raw); err != nil {
		return Setup{}, err
	}
	setup := Setup{Outcomes: make(map[string]Outcome), Services: make(map[string][]string)}
	for _, to := range sortedKeys(raw.Outcomes) {
		if to != AnyNumber && !e164.MatchString(to) {
			return Setup{}, fmt.Errorf("outcomes: %q is not an E.164 number (+14155550100) or %q", to, AnyNumber)
		}
		setup.Outcomes[to] = raw.Outcomes[to].outcome()
	}
	for i, fj := range raw.Faults {
		f, err := fj.fault()
		if err != nil {
			return Setup{}, fmt.Errorf("faults[%d]: %w", i, err)
		}
		setup.Faults = append(setup.Faults, f)
	}
	for _, sid := range sortedKeys(raw.Services) {
		if err := CheckService(sid, raw.Services[sid]); err != nil {
			return Setup{}, fmt.Errorf("services: %w", err)
		}
		setup.Services[sid] = raw.Services[sid]
	}
	return setup, nil
}

// LoadSetup reads a setup file; an error starts with the file's name
// (and FILE:LINE:COL for a syntax error).
func LoadSetup(path string) (Setup, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Setup{}, err
	}
	setup, err := ParseSetup(data)
	var pe *posError
	switch {
	case errors.As(err, &pe):
		return Setup{}, fmt.Errorf("%s:%w", path, err)
	case err != nil:
		return Setup{}, fmt.Errorf("%s: %w", path, err)
	}
	return setup, nil
}

// CheckService checks a Messaging Service SID (MG and 32 hex digits) and
// the numbers of its pool (E.164 numbers or short codes).
func CheckService(sid string, numbers []string) error {
	if !serviceSID.MatchString(sid) {
		return fmt.Errorf("%q is not a Messaging Service SID (MG and 32 hex digits)", sid)
	}
	for _, n := range numbers {
		if !e164.MatchString(n) && !shortCode.MatchString(n) {
			return fmt.Errorf("%s: %q is not an E.164 number or a short code", sid, n)
		}
	}
	return nil
}

// posError is a JSON error at a place in the input: "LINE:COL: message".
type posError struct {
	pos string
	err error
}

func (e *posError) Error() string { return e.pos + ": " + e.err.Error() }
func (e *posError) Unwrap() error { return e.err }

// decodeStrict decodes one JSON value, refusing unknown keys; a syntax or
// type error is a *posError.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("more than one JSON value")
		}
	}
	if err == nil {
		return nil
	}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &posError{position(data, syn.Offset), err}
	case errors.As(err, &typ):
		return &posError{position(data, typ.Offset), fmt.Errorf("%s: want a JSON %s", typ.Field, typ.Type)}
	}
	return err
}

// position is the LINE:COL of byte offset off in data.
func position(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := int(off) - (bytes.LastIndexByte(before, '\n') + 1)
	return fmt.Sprintf("%d:%d", line, max(col, 1))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// readControl decodes a control request's JSON body, answering 400 when it
// is not what the endpoint takes.
func readControl(w http.ResponseWriter, r *http.Request, v any) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = decodeStrict(data, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, 20001, "control: "+strings.TrimSpace(err.Error()))
		return false
	}
	return true
}

func (s *Server) controlOutcome(w http.ResponseWriter, r *http.Request) {
	var o outcomeJSON
	if !readControl(w, r, &o) {
		return
	}
	if o.To != AnyNumber && !e164.MatchString(o.To) {
		writeError(w, http.StatusBadRequest, 20001, fmt.Sprintf("control: to %q is not an E.164 number (+14155550100) or %q", o.To, AnyNumber))
		return
	}
	s.SetOutcome(o.To, o.outcome())
	s.controlState(w, r)
}

func (s *Server) controlFault(w http.ResponseWriter, r *http.Request) {
	var fj faultJSON
	if !readControl(w, r, &fj) {
		return
	}
	f, err := fj.fault()
	if err != nil {
		writeError(w, http.StatusBadRequest, 20001, "control: "+err.Error())
		return
	}
	s.Fault(f)
	s.controlState(w, r)
}

func (s *Server) controlService(w http.ResponseWriter, r *http.Request) {
	var sj serviceJSON
	if !readControl(w, r, &sj) {
		return
	}
	if err := CheckService(sj.SID, sj.Numbers); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "control: "+err.Error())
		return
	}
	s.SetService(sj.SID, sj.Numbers)
	s.controlState(w, r)
}

// State is what GET /_sim/state answers.
type State struct {
	Attempts int            `json:"attempts"` // create requests so far
	Creates  int            `json:"creates"`  // messages created so far
	Faults   int            `json:"faults"`   // faults queued
	Statuses map[string]int `json:"statuses"` // messages per current status
	Messages []StateMessage `json:"messages"` // in create order
}

// StateMessage is one message in State.
type StateMessage struct {
	SID       string `json:"sid"`
	From      string `json:"from,omitempty"`
	To        string `json:"to"`
	Status    string `json:"status"`
	ErrorCode int    `json:"error_code,omitempty"`
}

// State returns the counts and statuses the control API shows.
func (s *Server) State() State {
	msgs := s.Messages()
	s.mu.Lock()
	st := State{Attempts: len(s.attempts), Creates: len(s.creates), Faults: len(s.faults),
		Statuses: make(map[string]int), Messages: make([]StateMessage, 0, len(msgs))}
	s.mu.Unlock()
	for _, m := range msgs {
		st.Statuses[m.Status]++
		st.Messages = append(st.Messages, StateMessage{SID: m.SID, From: m.From, To: m.To, Status: m.Status, ErrorCode: m.ErrorCode})
	}
	return st
}

func (s *Server) controlState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.State())
}
