package twiliotest

import (
	"net/http"
	"net/url"
	"strconv"
)

// update answers a message update: Body="" redacts the body, and
// Status=canceled cancels a scheduled message; anything else is refused
// with 30400, as Twilio does. Twilio redacts only "post-flight" messages:
// a message still on its way (accepted, scheduled, queued, sending) is
// refused with 20009 (HTTP 409), as its delete is.
func (s *Server) update(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	sid, ok := cutSuffix(r.PathValue("file"), ".json")
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, 20001, "Could not parse the form body: "+err.Error())
		return
	}
	body, redact := r.PostForm["Body"]
	status, cancel := r.PostForm["Status"]
	var bad string
	switch {
	case redact && cancel:
		bad = "A message cannot be canceled and redacted at the same time."
	case !redact && !cancel:
		bad = "Either Body or Status is required."
	case redact && (len(body) != 1 || body[0] != ""):
		bad = "Message body redaction request does not have an empty Body parameter."
	case cancel && (len(status) != 1 || status[0] != "canceled"):
		bad = "Status must be canceled."
	}

	s.mu.Lock()
	now := s.opts.Clock.Now()
	m, found := s.bySID[sid]
	found = ok && found && !now.Before(m.visible)
	var cerr *createError
	switch {
	case !found:
	case bad != "":
		cerr = &createError{30400, "Parameters are not valid: " + bad}
	case cancel && s.state(m, now).Status != "scheduled":
		cerr = &createError{30409, "This message cannot be canceled"}
	case cancel:
		m.canceled, m.reports = now, nil
	case inProgress(s.state(m, now).Status):
		cerr = &createError{20009, "Cannot redact the body of a message before it is complete"}
	default:
		m.base.Body, m.touched = "", now
	}
	var resp wireMessage
	if found && cerr == nil {
		resp = s.wire(m, now)
	}
	s.mu.Unlock()

	switch {
	case !found:
		writeError(w, http.StatusNotFound, 20404, notFound(r.URL.Path))
	case cerr != nil && cerr.code == 20009:
		writeError(w, http.StatusConflict, cerr.code, cerr.msg)
	case cerr != nil:
		writeError(w, http.StatusBadRequest, cerr.code, cerr.msg)
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}

// remove answers a message delete: 204, and the message is gone from
// fetch and list. A message still on its way is refused with 20009 (HTTP
// 409).
func (s *Server) remove(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	sid, ok := cutSuffix(r.PathValue("file"), ".json")
	s.mu.Lock()
	now := s.opts.Clock.Now()
	m, found := s.bySID[sid]
	found = ok && found && !now.Before(m.visible)
	busy := found && inProgress(s.state(m, now).Status)
	if found && !busy {
		delete(s.bySID, sid)
		for i, x := range s.messages {
			if x == m {
				s.messages = append(s.messages[:i], s.messages[i+1:]...)
				break
			}
		}
	}
	s.mu.Unlock()
	switch {
	case !found:
		writeError(w, http.StatusNotFound, 20404, notFound(r.URL.Path))
	case busy:
		writeError(w, http.StatusConflict, 20009, "Cannot delete this resource before it is complete")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// wireMediaPage is one page of a message's media list.
type wireMediaPage struct {
	End             int        `json:"end"`
	FirstPageURI    string     `json:"first_page_uri"`
	MediaList       []struct{} `json:"media_list"`
	NextPageURI     *string    `json:"next_page_uri"`
	Page            int        `json:"page"`
	PageSize        int        `json:"page_size"`
	PreviousPageURI *string    `json:"previous_page_uri"`
	Start           int        `json:"start"`
	URI             string     `json:"uri"`
}

// media answers a message's media list: always empty, since the
// simulator sends SMS only.
func (s *Server) media(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	s.mu.Lock()
	m, found := s.bySID[r.PathValue("sid")]
	found = found && !s.opts.Clock.Now().Before(m.visible)
	s.mu.Unlock()
	if !found {
		writeError(w, http.StatusNotFound, 20404, notFound(r.URL.Path))
		return
	}
	size := 50
	if n, err := strconv.Atoi(r.URL.Query().Get("PageSize")); err == nil && n >= 1 && n <= 1000 {
		size = n
	}
	q := url.Values{"PageSize": {strconv.Itoa(size)}, "Page": {"0"}}
	uri := r.URL.Path + "?" + q.Encode()
	writeJSON(w, http.StatusOK, wireMediaPage{FirstPageURI: uri, MediaList: []struct{}{}, PageSize: size, URI: uri})
}

// errorMessages are the descriptions Twilio gives with a message's
// error_code.
var errorMessages = map[int]string{
	30001: "Queue overflow",
	30002: "Account suspended",
	30003: "Unreachable destination handset",
	30004: "Message blocked",
	30005: "Unknown destination handset",
	30006: "Landline or unreachable carrier",
	30007: "Message filtered",
	30008: "Unknown error",
	30009: "Missing segment",
	30010: "Message price exceeds max price",
	30022: "US A2P 10DLC - Rate Limits Exceeded",
	30023: "US A2P 10DLC - Daily Message Cap Reached",
	30032: "Toll-Free Number Has Not Been Verified",
	30034: "US A2P 10DLC - Message from an Unregistered Number",
	30036: "Validity Period Expired",
}

// errorMessage is the error_message shown with code.
func errorMessage(code int) string {
	if msg, ok := errorMessages[code]; ok {
		return msg
	}
	return "Error " + strconv.Itoa(code)
}
