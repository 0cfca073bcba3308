package twiliotest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nudge-study/nudge/templates"
)

var (
	e164       = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)
	shortCode  = regexp.MustCompile(`^[0-9]{5,6}$`)
	alphaID    = regexp.MustCompile(`^[A-Za-z0-9 ]{1,11}$`)
	serviceSID = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
)

const (
	// maxValidity is Twilio's longest (and default) ValidityPeriod.
	maxValidity = 36000 * time.Second
	// Scheduling windows: SendAt must be this far ahead of the create.
	minScheduleAhead = 300 * time.Second
	maxScheduleAhead = 35 * 24 * time.Hour
)

// createError is a refused create: Twilio's code and message, HTTP 400.
type createError struct {
	code int
	msg  string
}

// createParams are a create's form parameters.
type createParams struct {
	from, to, body, service, callback string
	validity                          string // ValidityPeriod as sent
	scheduleType, sendAt              string
}

func readCreate(r *http.Request) createParams {
	f := r.PostForm
	p := createParams{from: f.Get("From"), to: f.Get("To"), body: f.Get("Body"), service: f.Get("MessagingServiceSid"),
		callback: f.Get("StatusCallback"), validity: f.Get("ValidityPeriod"),
		scheduleType: f.Get("ScheduleType"), sendAt: f.Get("SendAt")}
	// A Messaging Service SID may also be given as From.
	if p.service == "" && strings.HasPrefix(p.from, "MG") {
		p.service, p.from = p.from, ""
	}
	return p
}

// draft is a create that passed every check, before it is stored.
type draft struct {
	p        createParams
	sender   string
	validity time.Duration
	sendAt   time.Time
	outcome  Outcome
}

// check validates a create as Twilio does and chooses its sender. The
// caller holds mu.
func (s *Server) check(p createParams, now time.Time) (draft, *createError) {
	d := draft{p: p, sender: p.from, validity: maxValidity, outcome: s.outcome(p.to)}
	switch {
	case p.to == "":
		return d, &createError{21604, "A 'To' phone number is required."}
	case p.from == "" && p.service == "":
		return d, &createError{21603, "A 'From' phone number is required."}
	case p.body == "":
		return d, &createError{21602, "Message body is required."}
	case !e164.MatchString(p.to):
		return d, &createError{21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", p.to)}
	case p.from != "" && !e164.MatchString(p.from) && !shortCode.MatchString(p.from) && !alphaID.MatchString(p.from):
		return d, &createError{21212, fmt.Sprintf("The 'From' number %s is not a valid phone number, shortcode, or alphanumeric sender ID.", p.from)}
	case utf8.RuneCountInString(p.body) > 1600:
		return d, &createError{21617, "The concatenated message body exceeds the 1600 character limit."}
	}
	if p.service != "" {
		n, cerr := s.poolNumber(p.service, p.from, p.to)
		if cerr != nil {
			return d, cerr
		}
		d.sender = n
	}
	if p.validity != "" {
		n, err := strconv.Atoi(p.validity)
		if err != nil || n < 1 || n > int(maxValidity/time.Second) {
			return d, &createError{21624, "Validity period can only be set to integers between 1 and 36,000 seconds (10 hours max)."}
		}
		d.validity = time.Duration(n) * time.Second
	}
	if cerr := d.schedule(now); cerr != nil {
		return d, cerr
	}
	if c := d.outcome.CreateError; c != 0 {
		return d, &createError{c, createMessage(c, p.from, p.to)}
	}
	if s.opts.Callbacks && p.callback != "" && !loopbackURL(p.callback) {
		return d, &createError{21609, callbackRefusal(p.callback)}
	}
	return d, nil
}

// schedule checks ScheduleType and SendAt. SendAt without ScheduleType is
// ignored, the message being sent at once.
func (d *draft) schedule(now time.Time) *createError {
	switch d.p.scheduleType {
	case "":
		return nil
	case "fixed":
	default:
		return &createError{35126, "The ScheduleType value provided is not supported for this channel."}
	}
	if d.p.service == "" {
		return &createError{35118, "MessagingServiceSid is required to schedule a message."}
	}
	if d.p.sendAt == "" {
		return &createError{35111, "SendAt timestamp is missing."}
	}
	t, err := time.Parse(time.RFC3339, d.p.sendAt)
	if ahead := t.Sub(now); err != nil || ahead < minScheduleAhead || ahead > maxScheduleAhead {
		return &createError{35114, "SendAt time must be between 300 seconds and 35 days (3024000 seconds) in the future, inclusive."}
	}
	d.sendAt = t
	return nil
}

// poolNumber chooses the number of a Messaging Service's pool that sends
// to to: from when given (it must be in the pool), else the number used
// for to before (Twilio's sticky sender), else the pool's next in turn.
// The caller holds mu.
func (s *Server) poolNumber(service, from, to string) (string, *createError) {
	pool, ok := s.services[service]
	if !ok && len(s.services) == 0 && serviceSID.MatchString(service) {
		pool, ok = []string{DefaultPoolNumber}, true
	}
	switch {
	case !ok:
		return "", &createError{21705, fmt.Sprintf("The Messaging Service Sid %s is invalid.", service)}
	case len(pool) == 0:
		return "", &createError{21704, "The Messaging Service contains no phone numbers"}
	case from != "" && !slices.Contains(pool, from):
		return "", &createError{21606, fmt.Sprintf("The From phone number %s is not a valid, SMS-capable inbound phone number or short code for your account.", from)}
	case from != "":
		return from, nil
	}
	key := service + "|" + to
	if n, ok := s.sticky[key]; ok && slices.Contains(pool, n) {
		return n, nil
	}
	n := pool[s.next[service]%len(pool)]
	s.next[service]++
	s.sticky[key] = n
	return n, nil
}

// createMessage gives Twilio's wording for refusals that depend on the number.
func createMessage(code int, from, to string) string {
	switch code {
	case 21211:
		return fmt.Sprintf("The 'To' number %s is not a valid phone number.", to)
	case 21408:
		return fmt.Sprintf("Permission to send an SMS has not been enabled for the region indicated by the 'To' number: %s.", to)
	case 21606:
		return fmt.Sprintf("The 'From' phone number provided (%s) is not a valid message-capable Twilio phone number for this destination/account.", from)
	case 21608:
		return "The number " + to + " is unverified. Trial accounts may only send messages to verified numbers."
	case 21610:
		return "Attempt to send to unsubscribed recipient"
	case 21611:
		return "This 'From' number has exceeded the maximum number of queued messages"
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
	p := readCreate(r)

	s.mu.Lock()
	now := s.opts.Clock.Now()
	att := Attempt{Time: now, From: p.from, To: p.to}
	d, cerr := s.check(p, now)
	fault, faulty := s.nextFault(now)
	if faulty && fault.Status != 0 {
		var m *message
		if fault.AfterCreate && cerr == nil {
			m = s.add(now, d)
			m.visible = now.Add(fault.Land)
			att.SID = m.base.SID
		}
		att.HTTPStatus = fault.Status
		if !fault.HTML {
			att.Code = faultCode(fault.Status)
		}
		s.attempt(att, d, m, true)
		s.mu.Unlock()
		if wait(r, fault.Delay) {
			writeFault(w, fault.Fault)
		}
		return
	}
	if cerr != nil {
		att.HTTPStatus, att.Code = http.StatusBadRequest, cerr.code
		s.attempt(att, d, nil, false)
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, cerr.code, cerr.msg)
		return
	}
	m := s.add(now, d)
	if faulty {
		m.visible = now.Add(fault.Land)
	}
	att.HTTPStatus, att.SID = http.StatusCreated, m.base.SID
	s.attempt(att, d, m, faulty)
	resp := s.wire(m, now)
	s.mu.Unlock()

	if faulty && !wait(r, fault.Delay) {
		return // the client gave up: the message stays created
	}
	writeJSON(w, http.StatusCreated, resp)
}

// nextFault takes one use of the first queued fault, dropping storms that
// are over. The caller holds mu.
func (s *Server) nextFault(now time.Time) (queuedFault, bool) {
	for len(s.faults) > 0 {
		f := &s.faults[0]
		if f.For > 0 {
			if now.Before(f.until) {
				return *f, true
			}
			s.faults = s.faults[1:]
			continue
		}
		out := *f
		f.Times--
		if f.Times <= 0 {
			s.faults = s.faults[1:]
		}
		return out, true
	}
	return queuedFault{}, false
}

// add stores a new message. The caller holds mu.
func (s *Server) add(now time.Time, d draft) *message {
	s.seq++
	sum := md5.Sum([]byte(s.opts.AccountSID + "/" + strconv.Itoa(s.seq)))
	p := d.p
	m := &message{
		seq:      s.seq,
		sender:   d.sender,
		outcome:  d.outcome,
		validity: d.validity,
		base: Message{
			SID:                 "SM" + hex.EncodeToString(sum[:]),
			AccountSID:          s.opts.AccountSID,
			From:                p.from,
			To:                  p.to,
			Body:                p.body,
			MessagingServiceSID: p.service,
			StatusCallback:      p.callback,
			Segments:            templates.Count(p.body).Count,
			Created:             now,
			Updated:             now,
			SendAt:              d.sendAt,
		},
	}
	if p.service != "" {
		m.base.From = "" // the pool's number shows once queued
	}
	m.base.Status = s.timeline(m)[0].status
	s.messages = append(s.messages, m)
	s.bySID[m.base.SID] = m
	s.creates = append(s.creates, Create{Time: now, SID: m.base.SID, From: p.from, To: p.to, Body: p.body,
		Segments: m.base.Segments, ValidityPeriod: p.validity, MessagingServiceSID: p.service, Sender: d.sender})
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
