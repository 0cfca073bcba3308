// Package redcap is nudge's client for the REDCap API: it exports records and project
// structure and imports status fields back, with retries, a per-host rate limit and errors that
// never carry the API token.
package redcap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/nudge-study/nudge/rules/dict"
)

// Defaults of a Client.
const (
	DefaultAttempts      = 4                      // tries per call, the first one included
	DefaultBackoff       = 500 * time.Millisecond // wait before the second try; doubles after that
	DefaultTimeout       = 30 * time.Second       // per HTTP request, except record exports and imports
	DefaultRecordTimeout = 5 * time.Minute        // per record export or import request
	DefaultRate          = 10.0                   // requests per second per REDCap host
	DefaultBatchSize     = 500                    // records per export request
	// MaxRetryAfter is the longest wait a Retry-After header may ask for: an HTTP 429 asking
	// for more is not retried.
	MaxRetryAfter    = 2 * time.Minute
	maxResponseBytes = 512 << 20
)

// Row is one flat record row as REDCap exports and imports it: column name → value, all strings.
type Row map[string]string

// Client talks to one REDCap project through its API URL and token. It is safe for concurrent
// use.
type Client struct {
	apiURL   string
	host     string
	token    string
	hc       *http.Client
	log      logrus.FieldLogger
	attempts int
	backoff  time.Duration
	timeout  time.Duration
	recordTO time.Duration
	batch    int
	limiter  *rate.Limiter
	recordID string

	// wait pauses between retries and now tells the time (for Retry-After dates); tests
	// replace both so they need not sleep.
	wait func(ctx context.Context, d time.Duration) error
	now  func() time.Time

	metaMu sync.Mutex // one metadata fetch at a time for the cache
	mu     sync.Mutex // guards dict
	dict   *dict.Dictionary
}

// Option configures a Client.
type Option func(*Client) error

// WithHTTPClient sets the HTTP client (default: a new http.Client; the per-request timeout is
// applied through the request context either way).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("redcap: WithHTTPClient: the HTTP client is nil")
		}
		c.hc = hc
		return nil
	}
}

// WithLogger sets the logger; each API call is logged at debug level (nil discards).
func WithLogger(l logrus.FieldLogger) Option {
	return func(c *Client) error {
		if l != nil {
			c.log = l
		}
		return nil
	}
}

// WithRetry sets how many times a call is tried (at least 1) and the wait before the second
// try, which doubles for each later try, with random jitter.
func WithRetry(attempts int, base time.Duration) Option {
	return func(c *Client) error {
		if attempts < 1 {
			return fmt.Errorf("redcap: WithRetry: attempts must be at least 1, got %d", attempts)
		}
		if base < 0 {
			return fmt.Errorf("redcap: WithRetry: negative backoff %v", base)
		}
		c.attempts, c.backoff = attempts, base
		return nil
	}
}

// WithRate gives this client its own limit of perSecond requests per second instead of the
// limit it shares with every other Client of the same REDCap host. perSecond <= 0 means no
// limit; meant for tests against a local simulator.
func WithRate(perSecond float64) Option {
	return func(c *Client) error {
		if perSecond <= 0 {
			c.limiter = rate.NewLimiter(rate.Inf, 1)
		} else {
			c.limiter = rate.NewLimiter(rate.Limit(perSecond), 1)
		}
		return nil
	}
}

// WithTimeout sets the timeout of each HTTP request other than record exports and imports
// (default 30 s).
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("redcap: WithTimeout: the timeout must be positive, got %v", d)
		}
		c.timeout = d
		return nil
	}
}

// WithRecordTimeout sets the timeout of each record export or import request (default 5
// minutes: REDCap takes that long over a batch of a big project).
func WithRecordTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("redcap: WithRecordTimeout: the timeout must be positive, got %v", d)
		}
		c.recordTO = d
		return nil
	}
}

// WithBatchSize sets how many records one export request asks for (default DefaultBatchSize).
func WithBatchSize(n int) Option {
	return func(c *Client) error {
		if n < 1 {
			return fmt.Errorf("redcap: WithBatchSize: the batch size must be at least 1, got %d", n)
		}
		c.batch = n
		return nil
	}
}

// WithRecordIDField names the project's record-id field, which ImportRecords needs to count
// records. Without it the client reads it from the project's metadata once.
func WithRecordIDField(name string) Option {
	return func(c *Client) error {
		c.recordID = name
		return nil
	}
}

// hostLimiters holds one rate limiter per REDCap host, shared by every Client of that host in
// the process, so that several projects on one server together stay under its limit.
var hostLimiters = struct {
	sync.Mutex
	m map[string]*rate.Limiter
}{m: map[string]*rate.Limiter{}}

func sharedLimiter(host string) *rate.Limiter {
	hostLimiters.Lock()
	defer hostLimiters.Unlock()
	l, ok := hostLimiters.m[host]
	if !ok {
		l = rate.NewLimiter(rate.Limit(DefaultRate), 1)
		hostLimiters.m[host] = l
	}
	return l
}

// New returns a client for the project at apiURL (usually ending in /api/) with the given API
// token.
func New(apiURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := redactURL(apiURL)
		if t := strings.TrimSpace(token); t != "" {
			shown = strings.ReplaceAll(shown, t, "[token]")
		}
		return nil, fmt.Errorf("redcap: API URL %q is not an http(s) URL; set it to the project's API address, e.g. https://redcap.example.edu/api/", shown)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, errors.New("redcap: the API token is empty; set the environment variable named by the project's token_env")
	}
	c := &Client{
		apiURL:   u.String(),
		host:     strings.ToLower(u.Host),
		token:    token,
		hc:       &http.Client{},
		log:      discard(),
		attempts: DefaultAttempts,
		backoff:  DefaultBackoff,
		timeout:  DefaultTimeout,
		recordTO: DefaultRecordTimeout,
		batch:    DefaultBatchSize,
		wait:     sleepCtx,
		now:      time.Now,
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	// A redirect turns the API's POST into a GET (or loses the body), so none is followed:
	// once reports it with the address to configure instead.
	hc := *c.hc
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &hc
	if c.limiter == nil {
		c.limiter = sharedLimiter(c.host)
	}
	return c, nil
}

func discard() logrus.FieldLogger {
	l := logrus.New()
	l.SetOutput(io.Discard)
	return l
}

// redactURL drops user info and the query of a URL for use in messages.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// APIError is an error answer from REDCap: the HTTP status and REDCap's message.
type APIError struct {
	Status  int
	Message string
}

// Error returns "REDCap said: <message> (HTTP <status>)", with advice for a refused token.
func (e *APIError) Error() string {
	s := fmt.Sprintf("REDCap said: %s (HTTP %d)", e.Message, e.Status)
	if e.Status == http.StatusForbidden {
		s += "; the API token was refused: check the project's token and the user's API rights in REDCap"
	}
	return s
}

// callError is a failed call: a message safe to show (no token) and the underlying error for
// errors.Is / errors.As.
type callError struct {
	msg         string
	err         error
	unavailable bool // the last of the client's retries failed too
}

func (e *callError) Error() string { return e.msg }
func (e *callError) Unwrap() error { return e.err }

// ErrRedirect is the cause of the error a call returns when REDCap's address answers with a
// redirect, which nudge never follows.
var ErrRedirect = errors.New("the REDCap API URL redirects")

// retryable marks an attempt's failure as worth another try, after the given wait (0: the
// client's backoff).
type retryable struct {
	error
	after time.Duration
}

func (r retryable) Unwrap() error { return r.error }

// redact removes the token from s.
func (c *Client) redact(s string) string {
	return strings.ReplaceAll(s, c.token, "[token]")
}

// call posts one API request and returns the response body of the first successful try. A
// body that check refuses (e.g. an HTML page where JSON was due) is a retryable failure.
func (c *Client) call(ctx context.Context, content string, params url.Values, check func([]byte) error) ([]byte, error) {
	form := url.Values{}
	for k, v := range params {
		form[k] = v
	}
	form.Set("token", c.token)
	form.Set("content", content)
	form.Set("format", "json")
	form.Set("returnFormat", "json")
	encoded := form.Encode()
	action := params.Get("action")

	var last error
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			d := c.delay(attempt)
			var r retryable
			if errors.As(last, &r) && r.after > 0 {
				d = r.after
			}
			if err := c.wait(ctx, d); err != nil {
				return nil, c.wrap(content, err)
			}
		}
		body, err := c.once(ctx, content, action, attempt, encoded, check)
		if err == nil {
			return body, nil
		}
		last = err
		var r retryable
		if !errors.As(err, &r) || ctx.Err() != nil {
			break
		}
	}
	var r retryable
	if errors.As(last, &r) {
		last = r.error
		return nil, &callError{msg: fmt.Sprintf("%s (gave up after %d attempts)", last.Error(), c.attempts), err: last, unavailable: true}
	}
	return nil, last
}

// IsUnavailable reports whether err says REDCap could not be reached or
// kept failing (network errors, 5xx, 429, a proxy's page) after the
// client's retries, as opposed to REDCap refusing the request.
func IsUnavailable(err error) bool {
	var ce *callError
	for errors.As(err, &ce) {
		if ce.unavailable {
			return true
		}
		err = ce.err
	}
	return false
}

// delay is the wait before the given attempt: exponential backoff with jitter in [d/2, d).
func (c *Client) delay(attempt int) time.Duration {
	d := c.backoff << (attempt - 2)
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

func (c *Client) wrap(content string, err error) error {
	return &callError{msg: c.redact(fmt.Sprintf("REDCap %s request to %s: %v", content, c.host, err)), err: err}
}

// once makes a single HTTP request.
func (c *Client) once(ctx context.Context, content, action string, attempt int, encoded string, check func([]byte) error) ([]byte, error) {
	if err := c.limiter.Wait(ctx); err != nil {
		return nil, c.wrap(content, err)
	}
	timeout := c.timeout
	if content == "record" {
		timeout = c.recordTO
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, c.apiURL, strings.NewReader(encoded))
	if err != nil {
		return nil, c.wrap(content, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")

	start := time.Now()
	resp, err := c.hc.Do(req)
	fields := logrus.Fields{"content": content, "host": c.host, "attempt": attempt}
	if action != "" {
		fields["action"] = action
	}
	if err != nil {
		fields["duration"] = time.Since(start)
		c.log.WithFields(fields).WithField("error", c.redact(err.Error())).Debug("redcap: request failed")
		if ctx.Err() != nil {
			return nil, c.wrap(content, ctx.Err())
		}
		return nil, retryable{error: c.wrap(content, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	fields["duration"] = time.Since(start)
	fields["status"] = resp.StatusCode
	c.log.WithFields(fields).Debug("redcap: API call")
	if err != nil {
		if ctx.Err() != nil {
			return nil, c.wrap(content, ctx.Err())
		}
		return nil, retryable{error: c.wrap(content, fmt.Errorf("reading the answer: %w", err))}
	}

	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		return nil, c.rateLimited(resp, body)
	case resp.StatusCode >= 500:
		return nil, retryable{error: c.apiError(resp.StatusCode, body)}
	case resp.StatusCode >= 400:
		return nil, c.apiError(resp.StatusCode, body)
	case resp.StatusCode >= 300 && resp.StatusCode < 400 && resp.Header.Get("Location") != "":
		return nil, c.redirected(resp)
	case resp.StatusCode != http.StatusOK:
		return nil, retryable{error: &callError{msg: fmt.Sprintf("REDCap %s request to %s: unexpected HTTP status %d", content, c.host, resp.StatusCode)}}
	}
	if msg, ok := errorAnswer(body); ok {
		return nil, &APIError{Status: resp.StatusCode, Message: c.redact(msg)}
	}
	if err := check(body); err != nil {
		return nil, retryable{error: &callError{msg: c.redact(fmt.Sprintf("REDCap %s request to %s: %v; a proxy or maintenance page may be in the way", content, c.host, err))}}
	}
	return body, nil
}

// errorAnswer returns the message of a {"error": "..."} answer, which REDCap sends with HTTP
// 200 too in some versions and paths.
func errorAnswer(body []byte) (string, bool) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return "", false
	}
	var e struct {
		Error *string `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == nil {
		return "", false
	}
	if *e.Error == "" {
		return "an empty error message", true
	}
	return *e.Error, true
}

// redirected is the error for a redirect: nudge never follows one, since the POST would
// arrive as a GET; the message names the address to configure.
func (c *Client) redirected(resp *http.Response) error {
	to := resp.Header.Get("Location")
	if u, err := resp.Location(); err == nil {
		to = u.String()
	}
	return &callError{
		msg: c.redact(fmt.Sprintf("the REDCap API URL %s answered with a redirect (HTTP %d) to %s; nudge does not follow redirects, which turn the API's POST into a GET: set the project's redcap_url to %s",
			redactURL(c.apiURL), resp.StatusCode, redactURL(to), redactURL(to))),
		err: ErrRedirect,
	}
}

// rateLimited turns an HTTP 429 into a retryable error that waits what REDCap's Retry-After
// header asks (seconds or an HTTP date), or into a final one when it asks for more than
// MaxRetryAfter.
func (c *Client) rateLimited(resp *http.Response, body []byte) error {
	err := c.apiError(resp.StatusCode, body)
	after, ok := retryAfter(resp.Header.Get("Retry-After"), c.now())
	if !ok {
		return retryable{error: err}
	}
	if after > MaxRetryAfter {
		return &callError{msg: fmt.Sprintf("%v; REDCap's rate limit asks to wait %v before the next request, longer than nudge waits (%v): try again later, and ask the REDCap administrators about the API rate limit if it keeps happening",
			err, after.Round(time.Second), MaxRetryAfter), err: err}
	}
	return retryable{error: err, after: max(after, time.Millisecond)}
}

// retryAfter reads a Retry-After header: a number of seconds or an HTTP date.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(h); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// jsonBody accepts a body that is JSON.
func jsonBody(body []byte) error {
	if !json.Valid(body) {
		return fmt.Errorf("the answer is not JSON (%s)", snippet(body))
	}
	return nil
}

// apiError turns an error answer into an *APIError, using REDCap's {"error": "..."} message
// when there is one.
func (c *Client) apiError(status int, body []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	} else {
		msg = "no error message (answer: " + snippet(body) + ")"
	}
	return &APIError{Status: status, Message: c.redact(msg)}
}

var tags = regexp.MustCompile(`<[^>]*>`)

// snippet returns the start of a body for an error message, with HTML tags stripped.
func snippet(body []byte) string {
	s := strings.Join(strings.Fields(tags.ReplaceAllString(string(body), " ")), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	if s == "" {
		return "empty"
	}
	return strconv.Quote(s)
}

// decodeRows decodes a JSON array of objects into rows of strings. REDCap sends strings, but
// numbers and booleans are turned into their text and null into "".
// DecodeRows decodes the body of a flat JSON record export (an array of
// objects) into rows of raw values, as ExportRecords does with each answer.
func DecodeRows(body []byte) ([]Row, error) { return decodeRows(body) }

// decodeRows decodes a flat JSON record export. REDCap's usual answer (an
// array of objects whose values are strings, numbers, booleans or null)
// takes a fast path that builds no generic values; anything else, errors
// included, goes through encoding/json, whose results the fast path
// matches.
func decodeRows(body []byte) ([]Row, error) {
	if rows, ok := decodeFlat(body); ok {
		return rows, nil
	}
	return decodeGeneric(body)
}

func decodeGeneric(body []byte) ([]Row, error) {
	var raw []map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("REDCap's answer is not a JSON array of rows: %w", err)
	}
	rows := make([]Row, len(raw))
	for i, m := range raw {
		r := make(Row, len(m))
		for k, v := range m {
			r[k] = text(v)
		}
		rows[i] = r
	}
	return rows, nil
}

func text(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "1"
		}
		return "0"
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// setList adds an array parameter the way REDCap reads it: name[0]=a&name[1]=b.
func setList(v url.Values, name string, items []string) {
	for i, s := range items {
		v.Set(fmt.Sprintf("%s[%d]", name, i), s)
	}
}
