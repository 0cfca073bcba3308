package twiliotest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"

	"github.com/nudge-study/nudge/templates"
)

// JournalEntry is one line of the journal (Options.Journal): one create
// request, accepted or refused. It carries no body, only its digest, so
// that a test can count duplicates without the journal holding texts.
type JournalEntry struct {
	Time string `json:"time"` // the Clock's time of the request, RFC 3339 with nanoseconds
	// SID is the created message's, empty when nothing was created.
	SID                 string `json:"sid,omitempty"`
	From                string `json:"from,omitempty"` // the From parameter
	To                  string `json:"to"`
	MessagingServiceSID string `json:"messaging_service_sid,omitempty"`
	// Sender is the number that sends the message: From, or the number
	// of the service's pool chosen for it.
	Sender     string `json:"sender,omitempty"`
	BodySHA256 string `json:"body_sha256"` // hex SHA-256 of the Body parameter
	Segments   int    `json:"segments"`    // as nudge's templates.Count counts them
	HTTPStatus int    `json:"http_status"` // the answer: 201 when created
	Code       int    `json:"code,omitempty"`
	// Fault says an injected fault shaped the answer (Fault): a refusal,
	// a delay, or a message that lands late.
	Fault bool `json:"fault,omitempty"`
}

// syncer is a journal that can be flushed to disk.
type syncer interface{ Sync() error }

// attempt records one create request and writes its journal line; m is
// the message created, if any. The caller holds mu, so lines are in the
// order of the requests.
func (s *Server) attempt(a Attempt, d draft, m *message, fault bool) {
	s.attempts = append(s.attempts, a)
	if s.opts.Journal == nil {
		return
	}
	sum := sha256.Sum256([]byte(d.p.body))
	e := JournalEntry{
		Time:                a.Time.UTC().Format(time.RFC3339Nano),
		SID:                 a.SID,
		From:                d.p.from,
		To:                  d.p.to,
		MessagingServiceSID: d.p.service,
		BodySHA256:          hex.EncodeToString(sum[:]),
		Segments:            templates.Count(d.p.body).Count,
		HTTPStatus:          a.HTTPStatus,
		Code:                a.Code,
		Fault:               fault,
	}
	if m != nil {
		e.Sender = m.sender
	}
	line, err := json.Marshal(e)
	if err == nil {
		_, err = s.opts.Journal.Write(append(line, '\n'))
	}
	if f, ok := s.opts.Journal.(syncer); ok && err == nil {
		err = f.Sync()
	}
	if err != nil && s.journErr == nil {
		s.journErr = err
	}
}
