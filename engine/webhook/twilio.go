package webhook

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
	"github.com/twilio/twilio-go/twiml"
)

// twilioHandler handles a Twilio request whose signature has been checked;
// params holds the signed parameters.
type twilioHandler func(w http.ResponseWriter, r *http.Request, params url.Values)

// twilio parses the form and checks X-Twilio-Signature before calling next.
// A missing or wrong signature gets 403 and a warning in the log.
func (s *Server) twilio(next twilioHandler) http.Handler {
	return s.form(func(w http.ResponseWriter, r *http.Request) {
		params, ok := s.verify(w, r)
		if !ok {
			http.Error(w, "the request is not signed by Twilio for this URL", http.StatusForbidden)
			return
		}
		next(w, r, params)
	})
}

// verify checks the request's signature against the public URL plus the
// request URI, as Twilio saw them. It returns the signed parameters: the
// first value of each key in the body, which is what Twilio signs and all
// that is handed on.
func (s *Server) verify(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	signed := make(map[string]string, len(r.PostForm))
	params := make(url.Values, len(r.PostForm))
	for k, vs := range r.PostForm {
		signed[k] = vs[0]
		params[k] = vs[:1]
	}
	sig := r.Header.Get("X-Twilio-Signature")
	fields := logrus.Fields{"path": r.URL.Path, "remote": s.clientAddr(r)}
	if sig == "" {
		setOutcome(w, outcomeNoSignature)
		s.log.WithFields(fields).Warn("webhook: refused a request without X-Twilio-Signature")
		return nil, false
	}
	if !s.validator.Validate(s.publicURL+r.URL.RequestURI(), signed, sig) {
		setOutcome(w, outcomeBadSignature)
		s.log.WithFields(fields).Warn("webhook: refused a request whose X-Twilio-Signature does not match public_url and the auth token")
		return nil, false
	}
	return params, true
}

// inbound answers a participant's message with TwiML.
func (s *Server) inbound(w http.ResponseWriter, r *http.Request, p url.Values) {
	in := Inbound{
		MessageSID: messageSID(p),
		AccountSID: p.Get("AccountSid"),
		From:       p.Get("From"),
		To:         p.Get("To"),
		Body:       p.Get("Body"),
		OptOutType: strings.ToUpper(strings.TrimSpace(p.Get("OptOutType"))),
		Params:     p,
	}
	if in.MessageSID == "" {
		http.Error(w, "MessageSid is missing", http.StatusBadRequest)
		return
	}
	if n := p.Get("NumMedia"); n != "" {
		var err error
		if in.NumMedia, err = strconv.Atoi(n); err != nil || in.NumMedia < 0 {
			http.Error(w, "NumMedia is not a count", http.StatusBadRequest)
			return
		}
	}
	reply, err := s.h.Inbound(r.Context(), in)
	if err != nil {
		s.log.WithError(err).WithField("message_sid", in.MessageSID).Error("webhook: inbound message not handled; Twilio may retry it")
		http.Error(w, "the message could not be handled", http.StatusInternalServerError)
		return
	}
	doc, err := TwiML(reply)
	if err != nil {
		s.log.WithError(err).WithField("message_sid", in.MessageSID).Error("webhook: building the TwiML answer")
		http.Error(w, "the answer could not be built", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(doc))
}

// TwiML returns the messaging TwiML document that answers with reply, or an
// empty <Response/> when reply is "".
func TwiML(reply string) (string, error) {
	if reply == "" {
		return twiml.Messages(nil)
	}
	return twiml.Messages([]twiml.Element{twiml.MessagingMessage{Body: reply}})
}

// status records a delivery status callback.
func (s *Server) status(w http.ResponseWriter, r *http.Request, p url.Values) {
	cb := StatusCallback{
		MessageSID: messageSID(p),
		Status:     p.Get("MessageStatus"),
		Params:     p,
	}
	if cb.Status == "" {
		cb.Status = p.Get("SmsStatus")
	}
	if cb.MessageSID == "" || cb.Status == "" {
		http.Error(w, "MessageSid or MessageStatus is missing", http.StatusBadRequest)
		return
	}
	if c := p.Get("ErrorCode"); c != "" {
		var err error
		if cb.ErrorCode, err = strconv.Atoi(c); err != nil {
			http.Error(w, "ErrorCode is not a number", http.StatusBadRequest)
			return
		}
	}
	if err := s.h.StatusCallback(r.Context(), cb); err != nil {
		s.log.WithError(err).WithFields(logrus.Fields{"message_sid": cb.MessageSID, "status": cb.Status}).
			Error("webhook: status callback not recorded; the poller will catch up")
		http.Error(w, "the status could not be recorded", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// messageSID reads MessageSid, falling back to the older SmsSid.
func messageSID(p url.Values) string {
	if sid := p.Get("MessageSid"); sid != "" {
		return sid
	}
	return p.Get("SmsSid")
}
