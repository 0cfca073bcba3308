package twiliotest

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// callbackTimeout bounds one callback POST, connection included.
	callbackTimeout = 2 * time.Second
	// callbackRetries is how many times a callback that could not be
	// delivered (no connection, or no answer in time) is tried again, one
	// tick apart, before it is dropped. A callback that got an HTTP answer,
	// even a 5xx, is never tried again: that is Twilio's default.
	callbackRetries = 3
)

// CallbackAttempt is one status callback POST made by the sender.
type CallbackAttempt struct {
	Time        time.Time // the Clock's time when the POST was made
	SID, Status string    // the message and the status reported
	URL         string    // the StatusCallback called
	HTTPStatus  int       // the receiver's answer; 0 when none came
	// Token is the I-Twilio-Idempotency-Token header sent, the same on
	// every try of one status change.
	Token string
	// Err is empty when the receiver took the callback (HTTP 2xx);
	// otherwise it says what went wrong, and ends in "dropped after N
	// attempts" when the change will not be sent again.
	Err string
}

// Callbacks returns every status callback POST made so far, in order.
func (s *Server) Callbacks() []CallbackAttempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]CallbackAttempt(nil), s.callbacks...)
}

// report is the callback progress of one step.
type report struct {
	done  bool // taken by the receiver, or dropped
	fails int
}

// callbackJob is one callback to POST.
type callbackJob struct {
	m     *message
	step  int // index in the message's timeline
	url   string
	form  url.Values
	token string // I-Twilio-Idempotency-Token
}

// sendCallbacks is the callback sender: every CallbackEvery it POSTs the
// changes that are due, until ctx ends. It closes done when it returns.
func (s *Server) sendCallbacks(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	dialer := &net.Dialer{Timeout: callbackTimeout, Control: dialLoopbackOnly}
	transport := &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}
	defer transport.CloseIdleConnections()
	hc := &http.Client{
		Transport: transport,
		Timeout:   callbackTimeout,
		// A redirect is an answer like any other non-2xx: not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tick := time.NewTicker(s.opts.CallbackEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.flushCallbacks(ctx, hc)
		}
	}
}

// flushCallbacks POSTs every due change once. A message's changes go in
// timeline order (reversed with ShuffleCallbacks); the first one that
// could not be delivered holds back the message's later ones until the
// next tick.
func (s *Server) flushCallbacks(ctx context.Context, hc *http.Client) {
	for _, jobs := range s.dueCallbacks() {
		for _, j := range jobs {
			at := s.opts.Clock.Now()
			status, err := postCallback(ctx, hc, j, s.authToken())
			if ctx.Err() != nil {
				return // closing: the change stays unreported
			}
			if !s.recordCallback(j, at, status, err) {
				break
			}
		}
	}
}

// dueCallbacks returns, per message, the callbacks due on the clock now.
func (s *Server) dueCallbacks() [][]callbackJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Clock.Now()
	var out [][]callbackJob
	for _, m := range s.messages {
		if m.base.StatusCallback == "" {
			continue
		}
		steps := s.timeline(m)
		if m.reports == nil {
			m.reports = make([]report, len(steps))
			m.reports[0].done = true // the create's own status has no callback
		}
		var jobs []callbackJob
		for i, st := range steps {
			if m.reports[i].done || st.at.After(now) {
				continue
			}
			jobs = append(jobs, callbackJob{m: m, step: i, url: m.base.StatusCallback,
				form: callbackForm(s.state(m, st.at), st), token: idempotencyToken(m.base.SID, i, st.status)})
		}
		if len(jobs) == 0 {
			continue
		}
		if s.opts.ShuffleCallbacks {
			slices.Reverse(jobs)
		}
		out = append(out, jobs)
	}
	return out
}

// recordCallback notes the outcome of j and reports whether the message's
// next change may be sent now.
func (s *Server) recordCallback(j callbackJob, at time.Time, status int, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := CallbackAttempt{Time: at, SID: j.m.base.SID, Status: j.form.Get("MessageStatus"), URL: j.url, HTTPStatus: status, Token: j.token}
	if j.step >= len(j.m.reports) {
		return false // the message was canceled meanwhile: its timeline changed
	}
	r := &j.m.reports[j.step]
	switch {
	case err != nil:
		a.Err = err.Error()
	case status < 200 || status > 299:
		a.Err = fmt.Sprintf("callback answered HTTP %d; not retried", status)
		r.done = true
	default:
		r.done = true
	}
	if !r.done {
		r.fails++
		if r.fails > callbackRetries {
			r.done = true
			a.Err += fmt.Sprintf("; dropped after %d attempts", r.fails)
		}
	}
	s.callbacks = append(s.callbacks, a)
	return r.done
}

// callbackForm is the form Twilio posts for message m, in its state at
// step st, reaching that step.
func callbackForm(m Message, st step) url.Values {
	f := url.Values{
		"MessageSid":    {m.SID},
		"SmsSid":        {m.SID},
		"AccountSid":    {m.AccountSID},
		"From":          {m.From},
		"To":            {m.To},
		"MessageStatus": {st.status},
		"SmsStatus":     {st.status},
		"ApiVersion":    {"2010-04-01"},
	}
	if m.MessagingServiceSID != "" {
		f.Set("MessagingServiceSid", m.MessagingServiceSID)
	}
	if (st.status == "failed" || st.status == "undelivered") && st.errorCode != 0 {
		f.Set("ErrorCode", strconv.Itoa(st.errorCode))
	}
	return f
}

// postCallback POSTs j's form to its URL, signed with token, and returns
// the HTTP status of the answer.
func postCallback(ctx context.Context, hc *http.Client, j callbackJob, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, strings.NewReader(j.form.Encode()))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Agent", "TwilioProxy/1.1")
	req.Header.Set("I-Twilio-Idempotency-Token", j.token)
	req.Header.Set("X-Twilio-Signature", signature(token, j.url, j.form))
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) //nolint:errcheck // only drained for reuse
	return resp.StatusCode, nil
}

// idempotencyToken is the I-Twilio-Idempotency-Token of the callback for
// step i of message sid: the same on every try of that callback, different
// for every other.
func idempotencyToken(sid string, i int, status string) string {
	sum := sha256.Sum256([]byte(sid + "/" + strconv.Itoa(i) + "/" + status))
	return hex.EncodeToString(sum[:16])
}

// signature is Twilio's X-Twilio-Signature: base64 of the HMAC-SHA1, keyed
// with the auth token, of the URL followed by each parameter's name and
// value in name order.
func signature(token, u string, form url.Values) string {
	var b strings.Builder
	b.WriteString(u)
	for _, k := range slices.Sorted(maps.Keys(form)) {
		b.WriteString(k)
		b.WriteString(form.Get(k))
	}
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// loopbackURL reports whether raw is an absolute http(s) URL whose host is
// localhost or a loopback address.
func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// callbackRefusal is the 21609 message for a StatusCallback that is not
// on loopback. It names the host only, never the whole URL.
func callbackRefusal(raw string) string {
	msg := "StatusCallback must be a loopback URL in the simulator (http://127.0.0.1, http://[::1] or http://localhost)"
	if u, err := url.Parse(raw); err == nil && u.Host != "" {
		return msg + "; got host " + u.Hostname()
	}
	return msg + "; got a URL without a host"
}

// dialLoopbackOnly refuses connections to anything but a loopback
// address, whatever a name resolved to.
func dialLoopbackOnly(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.Unmap().IsLoopback() {
		return fmt.Errorf("twiliotest: refusing to send a status callback to %s, which is not a loopback address", host)
	}
	return nil
}

// authToken is the auth token callbacks are signed with.
func (s *Server) authToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts.AuthToken
}
