// Package redcaptest is an in-memory REDCap API for tests and for `nudge demo`: records with
// events and repeat instances, the data dictionary and project structure, REDCap's import
// semantics and error answers, a log of the calls it received and injectable faults.
//
// What it imitates and where it differs from REDCap is listed in the README beside this file.
package redcaptest

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules/dict"
)

// Version is what content=version answers.
const Version = "14.5.1"

// Project is one simulated REDCap project. A project with Events is longitudinal.
type Project struct {
	Token      string
	ID         int
	Title      string
	Dict       *dict.Dictionary
	Events     []redcap.Event     // empty: a classic project
	FormEvents []redcap.FormEvent // empty in a longitudinal project: every form in every event
	Repeating  []redcap.Repeating // Event "" in a classic project; Form "" for a repeating event
	// MissingCodes is the project's missing-data codes as REDCap lists them, e.g.
	// "UNK, Unknown | NA, Not applicable".
	MissingCodes string
	// Identifiers names the fields marked as identifiers (metadata identifier "y").
	Identifiers []string
	// Users holds further API tokens of the project, each with its user's data export rights;
	// Token itself has full rights.
	Users map[string]Rights
	// PlainRefusals makes the import refuse a bad value of a validated text field, and a
	// value on a form that is not designated for the row's event, with REDCap's plain-text
	// wordings, which name no record (as some REDCap versions answer), instead of CSV lines.
	PlainRefusals bool
	// Locked lists records locked from the start (see Server.LockRecord).
	Locked []string
	// Surveys names the instruments enabled as surveys: content=surveyLink
	// answers for these only.
	Surveys []string
	// SurveyBase is the start of the survey links content=surveyLink answers,
	// "" = https://redcap.example.edu/surveys/?s=
	SurveyBase string
	// RecordsFile, when set, is where every import is persisted: after each import the
	// server writes all the project's records there (see LoadFiles). An import it cannot
	// persist is undone and answered with HTTP 500.
	RecordsFile string
}

// Longitudinal reports whether the project has events.
func (p *Project) Longitudinal() bool { return len(p.Events) > 0 }

// Call is one request the server received; Params never holds the token. Action is the
// action the server took: "import" for a content=record request carrying data, whether or
// not the client sent action=import (REDCap's own clients never do).
type Call struct {
	Time    time.Time
	Content string
	Action  string
	Params  url.Values
	Status  int
}

// Fault makes the server misbehave for the next Times requests (0 counts as 1) whose content
// is Content ("" for any) and whose action is Action ("" for any; "import" for imports only,
// with or without an action parameter):
// wait Delay first (or until the client gives up), then answer with Status (0: answer
// normally) and, when HTML is set, an HTML page instead of JSON. Error, when set, is the
// message of a {"error": …} answer (HTTP Status, or 200 when Status is 0), and RetryAfter the
// value of a Retry-After header on the answer (as REDCap's rate limit sends with HTTP 429).
type Fault struct {
	Content    string
	Action     string
	Status     int
	Delay      time.Duration
	HTML       bool
	Error      string
	RetryAfter string
	Times      int
}

// Server is the simulated REDCap API. It implements http.Handler; Start serves it on a local
// port. It is safe for concurrent use.
type Server struct {
	mu       sync.Mutex
	projects map[string]*user // by token
	calls    []Call
	faults   []Fault
	now      func() time.Time
	hs       *http.Server
}

// New returns a server holding the given projects. It panics when a project has no
// dictionary or two projects share a token: both are mistakes in the caller's set-up.
func New(projects ...*Project) *Server {
	s := &Server{projects: map[string]*user{}, now: time.Now}
	for _, p := range projects {
		if p.Dict == nil || len(p.Dict.Fields) == 0 {
			panic(fmt.Sprintf("redcaptest: project %d (%q) has no data dictionary", p.ID, p.Title))
		}
		st := newState(p)
		tokens := map[string]Rights{p.Token: {}}
		for tok, r := range p.Users {
			tokens[tok] = r
		}
		for tok, r := range tokens {
			if _, dup := s.projects[tok]; dup {
				panic(fmt.Sprintf("redcaptest: two users share a token (project %d)", p.ID))
			}
			s.projects[tok] = &user{st: st, rights: r}
		}
	}
	return s
}

// Start serves the API on 127.0.0.1 at a free port and returns its URL, ending in /api/.
func (s *Server) Start() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("redcaptest: listening on 127.0.0.1: %w", err)
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.hs = hs
	s.mu.Unlock()
	go hs.Serve(ln)
	return "http://" + ln.Addr().String() + "/api/", nil
}

// Close stops a server started with Start.
func (s *Server) Close() error {
	s.mu.Lock()
	hs := s.hs
	s.hs = nil
	s.mu.Unlock()
	if hs == nil {
		return nil
	}
	return hs.Close()
}

// Load seeds a project with flat rows shaped like an export (blank values are ignored). The
// rows are checked like an import (locked records excepted) and nothing is stored when one
// is bad.
func (s *Server) Load(token string, rows []map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.projects[token]
	if !ok {
		return errors.New("redcaptest: Load: no project has that token")
	}
	locked := u.st.locked
	u.st.locked = map[string]bool{} // seeding is no import: locks do not apply
	_, err := u.st.importRows(rows, false)
	u.st.locked = locked
	if err != nil {
		return fmt.Errorf("redcaptest: Load into project %d: %s", u.st.p.ID, err.msg)
	}
	return nil
}

// AddUser gives the project that token opens a further API user, with the given token and
// data export rights. It fails when token opens no project or userToken is taken.
func (s *Server) AddUser(token, userToken string, r Rights) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.projects[token]
	if !ok {
		return errors.New("redcaptest: AddUser: no project has that token")
	}
	if _, taken := s.projects[userToken]; taken {
		return errors.New("redcaptest: AddUser: the new token is taken")
	}
	s.projects[userToken] = &user{st: u.st, rights: r}
	return nil
}

// MarkIdentifiers marks fields of the project that token opens as identifiers, as
// Project.Identifiers does.
func (s *Server) MarkIdentifiers(token string, fields ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.projects[token]
	if !ok {
		return errors.New("redcaptest: MarkIdentifiers: no project has that token")
	}
	for _, f := range fields {
		if _, ok := u.st.d.Field(f); !ok {
			return fmt.Errorf("redcaptest: MarkIdentifiers: the project has no field %q", f)
		}
		u.st.identifier[f] = true
	}
	return nil
}

// Delete deletes a record of a project, as a coordinator may between two requests, and
// reports whether it existed.
func (s *Server) Delete(token, record string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.projects[token]
	if !ok {
		return false
	}
	_, had := u.st.records[record]
	delete(u.st.records, record)
	return had
}

// LockRecord locks a record of a project (or unlocks it): REDCap then refuses every import
// that brings it a value, with one CSV line per value in REDCap's wording (or, with
// PlainRefusals, a text that names no record).
func (s *Server) LockRecord(token, record string, locked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.projects[token]; ok {
		if locked {
			u.st.locked[record] = true
		} else {
			delete(u.st.locked, record)
		}
	}
}

// SetPlainRefusals sets Project.PlainRefusals of the project that token opens: imports are
// then refused with texts that name no record (as some REDCap versions answer).
func (s *Server) SetPlainRefusals(token string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u, ok := s.projects[token]; ok {
		u.st.p.PlainRefusals = on
	}
}

// Export returns every record of a project as an unfiltered export would, in export order.
func (s *Server) Export(token string) []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.projects[token]
	if !ok {
		return nil
	}
	ordered := u.st.export(exportRequest{})
	out := make([]map[string]string, len(ordered))
	for i, r := range ordered {
		m := make(map[string]string, len(r))
		for _, kv := range r {
			m[kv.key] = kv.value
		}
		out[i] = m
	}
	return out
}

// Calls returns the requests received so far, oldest first.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls))
	for i, c := range s.calls {
		c.Params = cloneValues(c.Params)
		out[i] = c
	}
	return out
}

// Fault queues a fault; faults apply in the order they were queued.
func (s *Server) Fault(f Fault) {
	if f.Times <= 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// ClearFaults drops every queued fault: REDCap is back.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the first queued fault matching content and uses up one of its times.
func (s *Server) takeFault(content, action string) (Fault, bool) {
	for i := range s.faults {
		f := &s.faults[i]
		if (f.Content != "" && f.Content != content) || (f.Action != "" && f.Action != action) {
			continue
		}
		got := *f
		f.Times--
		if f.Times == 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		return got, true
	}
	return Fault{}, false
}

// answer is an HTTP answer: a status and a body of the given content type.
type answer struct {
	status int
	ctype  string
	body   []byte
}

func jsonAnswer(v any) answer {
	b, err := json.Marshal(v)
	if err != nil {
		return errAnswer(http.StatusInternalServerError, "redcaptest: "+err.Error())
	}
	return answer{http.StatusOK, "application/json", b}
}

func rawJSON(b []byte) answer { return answer{http.StatusOK, "application/json", b} }

func errAnswer(status int, msg string) answer {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return answer{status, "application/json", b}
}

const htmlPage = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><p>The proxy server received an invalid response from an upstream server.</p></body></html>"

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var a answer
	var params url.Values
	if r.Method != http.MethodPost {
		a = errAnswer(http.StatusMethodNotAllowed, "The REDCap API accepts POST requests only")
	} else if err := r.ParseForm(); err != nil {
		a = errAnswer(http.StatusBadRequest, "The request body could not be read: "+err.Error())
	} else {
		params = r.PostForm
	}
	content, action := params.Get("content"), requestAction(params)

	s.mu.Lock()
	f, faulty := s.takeFault(content, action)
	s.mu.Unlock()
	if faulty && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		t.Stop()
	}

	s.mu.Lock()
	switch {
	case a.status != 0:
	case faulty && f.Error != "":
		a = errAnswer(cmp.Or(f.Status, http.StatusOK), f.Error)
	case faulty && f.Status != 0 && f.HTML:
		a = answer{f.Status, "text/html; charset=utf-8", []byte(htmlPage)}
	case faulty && f.Status != 0:
		a = errAnswer(f.Status, fmt.Sprintf("redcaptest: injected fault (HTTP %d)", f.Status))
	case faulty && f.HTML:
		a = answer{http.StatusOK, "text/html; charset=utf-8", []byte(htmlPage)}
	default:
		a = s.handle(params)
	}
	logged := cloneValues(params)
	logged.Del("token")
	s.calls = append(s.calls, Call{Time: s.now(), Content: content, Action: action, Params: logged, Status: a.status})
	s.mu.Unlock()

	w.Header().Set("Content-Type", a.ctype)
	if faulty && f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// handle dispatches a request by content; s.mu is held.
func (s *Server) handle(p url.Values) answer {
	u, ok := s.projects[p.Get("token")]
	if p.Get("token") == "" || !ok {
		return errAnswer(http.StatusForbidden, "You do not have permissions to use the API")
	}
	st := u.st
	content := p.Get("content")
	if f := p.Get("format"); f != "" && f != "json" && content != "version" {
		return errAnswer(http.StatusBadRequest, fmt.Sprintf("redcaptest supports format=json only, not %q", f))
	}
	if a, bad := checkParams(p); bad {
		return a
	}
	switch content {
	case "record":
		switch requestAction(p) {
		case "import":
			return st.handleImport(p)
		case "", "export":
			return st.handleExport(p, u.rights)
		default:
			return errAnswer(http.StatusBadRequest, fmt.Sprintf("redcaptest does not support action=%s for content=record: it exports records, and imports them when the request carries data", p.Get("action")))
		}
	case "metadata":
		return st.metadata(list(p, "fields"), list(p, "forms"))
	case "project":
		return st.projectInfo()
	case "event":
		return st.events()
	case "arm":
		return st.arms()
	case "formEventMapping":
		return st.formEventMapping()
	case "repeatingFormsEvents":
		return st.repeating()
	case "exportFieldNames":
		return st.exportFieldNames(p.Get("field"))
	case "surveyLink":
		return st.surveyLink(p)
	case "participantList":
		return st.participantList(p)
	case "version":
		return answer{http.StatusOK, "text/html; charset=UTF-8", []byte(Version)}
	case "":
		return errAnswer(http.StatusBadRequest, "The parameter 'content' is missing")
	default:
		return errAnswer(http.StatusBadRequest, fmt.Sprintf("The value of the parameter 'content' (%s) is not valid", content))
	}
}

// requestAction is what a request asks for: REDCap treats a content=record request that
// carries data as an import, whether or not action=import is sent.
func requestAction(p url.Values) string {
	a := p.Get("action")
	if a == "" && p.Get("content") == "record" && p.Has("data") {
		return "import"
	}
	return a
}

// implemented lists, for each REDCap parameter the simulator does not implement in full, the
// values it does implement; a request giving it any other value is refused with a 400
// rather than answered as if the parameter were not there. Absent or empty is always fine.
var implemented = map[string][]string{
	"returnFormat":                 {"json"},
	"type":                         {"flat"},
	"rawOrLabel":                   {"raw"},
	"rawOrLabelHeaders":            {"raw"},
	"exportCheckboxLabel":          {"false", "true"}, // it only changes label exports
	"exportSurveyFields":           {"false"},
	"exportDataAccessGroups":       {"false"},
	"exportBlankForGrayFormStatus": {"false", "true"},
	"decimalCharacter":             {"."},
	"csvDelimiter":                 {","},
	"overwriteBehavior":            {"normal", "overwrite"},
	"forceAutoNumber":              {"false"},
	"backgroundProcess":            {"false"},
	"dateFormat":                   {"YMD"},
	"returnContent":                {"count", "ids", "nothing"},
}

// unimplemented lists REDCap parameters the simulator does not implement at all.
var unimplemented = []string{"filterLogic", "dateRangeBegin", "dateRangeEnd", "combineCheckboxOptions"}

// checkParams refuses a request using a REDCap parameter or a value of one that the
// simulator does not implement, so a client never takes an answer that ignored it for
// REDCap's. Parameters REDCap does not know are ignored, as REDCap ignores them.
func checkParams(p url.Values) (answer, bool) {
	for _, name := range unimplemented {
		if p.Get(name) != "" {
			return errAnswer(http.StatusBadRequest, fmt.Sprintf("redcaptest does not support the parameter %s; export without it and filter the rows in the caller", name)), true
		}
	}
	names := make([]string, 0, len(implemented))
	for name := range implemented {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range p[name] {
			if v != "" && !slices.Contains(implemented[name], v) {
				return errAnswer(http.StatusBadRequest, fmt.Sprintf("The value of the parameter %s (%s) is not supported by redcaptest, which implements %s only", name, v, strings.Join(implemented[name], " or "))), true
			}
		}
	}
	return answer{}, false
}

// list reads an array parameter sent as name[0]=a&name[1]=b, or as name=a,b.
func list(p url.Values, name string) []string {
	type item struct {
		i int
		v string
	}
	var items []item
	for k, vs := range p {
		idx, ok := strings.CutPrefix(k, name+"[")
		if !ok || !strings.HasSuffix(idx, "]") || len(vs) == 0 {
			continue
		}
		i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
		if err != nil {
			i = 1 << 30
		}
		items = append(items, item{i, vs[0]})
	}
	sort.SliceStable(items, func(a, b int) bool { return items[a].i < items[b].i })
	var out []string
	for _, it := range items {
		if v := strings.TrimSpace(it.v); v != "" {
			out = append(out, v)
		}
	}
	for _, v := range p[name] {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
