// Package sms sends text messages through Twilio with twilio-go, classifies
// failures so that nudge never sends a message twice, and paces sends per
// sending number. Package twiliotest holds a Twilio API simulator for tests
// and the demo.
package sms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// DefaultTimeout bounds each HTTP request to Twilio when Config.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// MaxValidity is the longest ValidityPeriod Twilio accepts.
const MaxValidity = 36000 * time.Second

// Config configures a Client.
type Config struct {
	AccountSID string
	AuthToken  string
	// BaseURL replaces https://api.twilio.com, e.g. a twiliotest simulator's
	// address. Empty means the real Twilio API.
	BaseURL string
	// Timeout bounds every HTTP request (DefaultTimeout when 0). A create
	// that times out after it was written is reported as Ambiguous.
	Timeout time.Duration
	// StatusCallback, when set, is the URL Twilio posts status changes to.
	StatusCallback string
	// Services maps each number of a Messaging Service's pool to the
	// service's SID (MG…). A send from such a number names the service
	// too, so the service's features apply, while the number stays the
	// sender: it is paced on its own and an unanswered create is found by
	// listing its messages.
	Services map[string]string
}

// ErrServiceSender is returned for a send or a lookup whose sender is a
// Messaging Service SID instead of a number. Twilio would choose the number
// itself, so nudge could neither pace that number nor find the message
// again after an unanswered create (and would then send it twice): a
// service sends through the numbers of its pool (Config.Services).
var ErrServiceSender = errors.New("a Messaging Service SID is not a sending number: list the numbers of the service's pool and send from one of them")

// Message is a message as Twilio reports it.
type Message struct {
	SID, Status, From, To string
	Body                  string
	ErrorCode             int // Twilio's error code for undelivered/failed, else 0
	Segments              int
	Created, Sent         time.Time // zero when Twilio has not set them
}

// Client sends and looks up messages. It is safe for concurrent use.
// twilio-go's calls take no context: each call checks ctx first and carries
// it into the HTTP requests, which also end after Config.Timeout.
type Client struct {
	cfg       Config
	base      *url.URL
	transport http.RoundTripper
}

var alphanumeric = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// NewClient checks cfg and returns a Client. It makes no request.
func NewClient(cfg Config) (*Client, error) {
	if !alphanumeric.MatchString(cfg.AccountSID) {
		return nil, errors.New("twilio account SID is empty or has characters other than letters and digits; set it from the Twilio console (AC…)")
	}
	if !alphanumeric.MatchString(cfg.AuthToken) {
		return nil, errors.New("twilio auth token is empty or has characters other than letters and digits; set it from the Twilio console")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("twilio timeout %v is negative; use a positive duration or 0 for %v", cfg.Timeout, DefaultTimeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	c := &Client{cfg: cfg, transport: http.DefaultTransport.(*http.Transport).Clone()}
	if cfg.BaseURL != "" {
		u, err := url.Parse(cfg.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("twilio base URL %q is not an http(s) URL with a host; leave it empty for api.twilio.com", cfg.BaseURL)
		}
		c.base = u
	}
	if cfg.StatusCallback != "" {
		if u, err := url.Parse(cfg.StatusCallback); err != nil || !u.IsAbs() {
			return nil, fmt.Errorf("twilio status callback %q is not an absolute URL; use the public URL of /twilio/status", cfg.StatusCallback)
		}
	}
	for number, sid := range cfg.Services {
		if isService(number) || !isService(sid) {
			return nil, fmt.Errorf("twilio messaging service %q for %s: map each number of a pool to its service's SID (MG…)", sid, MaskNumbers(number))
		}
	}
	return c, nil
}

// api returns a twilio-go service whose requests run under ctx and are
// recorded in the returned attempt.
func (c *Client) api(ctx context.Context) (*openapi.ApiService, *attempt) {
	att := &attempt{}
	hc := &client.Client{
		Credentials: client.NewCredentials(c.cfg.AccountSID, c.cfg.AuthToken),
		HTTPClient: &http.Client{
			Timeout:   c.cfg.Timeout,
			Transport: &callTransport{ctx: ctx, base: c.base, next: c.transport, att: att},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	hc.SetAccountSid(c.cfg.AccountSID)
	return openapi.NewApiServiceWithClient(hc), att
}

// Send asks Twilio to send body from a number to a number. When the number
// belongs to a Messaging Service (Config.Services) the create names the
// service and the number: Twilio sends from that number of the pool. A
// positive validity becomes Twilio's ValidityPeriod (rounded up to a whole
// second, at most MaxValidity): Twilio then never hands the message to a
// carrier after it lapses. On failure the error is an *Error whose Kind
// says whether the message may be sent again; a service SID given as from
// is refused without a request (ErrServiceSender).
func (c *Client) Send(ctx context.Context, from, to, body string, validity time.Duration) (Message, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, ctxError(err)
	}
	if isService(from) {
		return Message{}, &Error{Message: ErrServiceSender.Error(), Kind: Permanent, Err: ErrServiceSender}
	}
	params := &openapi.CreateMessageParams{}
	params.SetTo(to).SetBody(body).SetFrom(from)
	if sid := c.cfg.Services[from]; sid != "" {
		params.SetMessagingServiceSid(sid)
	}
	if c.cfg.StatusCallback != "" {
		params.SetStatusCallback(c.cfg.StatusCallback)
	}
	if validity > 0 {
		secs := int((min(validity, MaxValidity) + time.Second - 1) / time.Second)
		params.SetValidityPeriod(secs)
	}
	api, att := c.api(ctx)
	m, err := api.CreateMessage(params)
	if err != nil {
		return Message{}, classify(err, att, true)
	}
	return fromAPI(m), nil
}

// Fetch returns the current state of the message with the given SID.
func (c *Client) Fetch(ctx context.Context, sid string) (Message, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, ctxError(err)
	}
	api, att := c.api(ctx)
	m, err := api.FetchMessage(sid, nil)
	if err != nil {
		return Message{}, classify(err, att, false)
	}
	return fromAPI(m), nil
}

// ErrNotFinal is returned (wrapped in an *Error) by Redact for a message
// Twilio still has on its way: its body can be redacted once its status is
// final.
var ErrNotFinal = errors.New("the message is still on its way at Twilio; redact it once its status is final")

// Redact removes the body of the message with the given SID from Twilio
// (an update with an empty Body); the message's other fields stay. A
// message Twilio no longer has is reported as an *Error with Code 20404;
// one still on its way (Twilio refuses with 20009) as an *Error wrapping
// ErrNotFinal, to try again later.
func (c *Client) Redact(ctx context.Context, sid string) error {
	if err := ctx.Err(); err != nil {
		return ctxError(err)
	}
	api, att := c.api(ctx)
	_, err := api.UpdateMessage(sid, (&openapi.UpdateMessageParams{}).SetBody(""))
	if err == nil {
		return nil
	}
	e := classify(err, att, false)
	if e.Code == 20009 {
		e.Kind, e.Err = Retryable, fmt.Errorf("%w: %w", ErrNotFinal, err)
	}
	return e
}

// Find lists the messages from one number to another created at or after
// after (to the second). It resolves an Ambiguous send: a message found here
// was taken by Twilio and must not be sent again.
//
// Twilio lists newest first, so Find reads pages only until it meets a
// message created before after: however many texts a participant got
// before, the lookup is bounded by time, not by count. The date is filtered
// here, not by Twilio: Twilio filters on date_sent, which stays empty while
// a message is queued, and a queued message is exactly what an ambiguous
// send may have left behind.
//
// from must be the number sent from, also for a Messaging Service's send:
// a lookup by the service's SID would find nothing and so "prove" a taken
// message absent. It is refused (ErrServiceSender).
func (c *Client) Find(ctx context.Context, from, to string, after time.Time) ([]Message, error) {
	if isService(from) {
		return nil, ErrServiceSender
	}
	after = after.Truncate(time.Second)
	params := &openapi.ListMessageParams{}
	params.SetTo(to).SetFrom(from).SetPageSize(50)
	var out []Message
	token, page := "", ""
	for {
		if err := ctx.Err(); err != nil {
			return nil, ctxError(err)
		}
		api, att := c.api(ctx)
		resp, err := api.PageMessage(params, token, page)
		if err != nil {
			return nil, classify(err, att, false)
		}
		for i := range resp.Messages {
			m := fromAPI(&resp.Messages[i])
			if !m.Created.IsZero() && m.Created.Before(after) {
				return out, nil // newest first: the rest are older still
			}
			out = append(out, m)
		}
		if resp.NextPageUri == nil || *resp.NextPageUri == "" || len(resp.Messages) == 0 {
			return out, nil
		}
		next, err := url.Parse(*resp.NextPageUri)
		if err != nil {
			return nil, fmt.Errorf("twilio: unreadable next page URI: %w", err)
		}
		token, page = next.Query().Get("PageToken"), next.Query().Get("Page")
	}
}

// isService reports whether a sender is a Messaging Service SID.
func isService(sender string) bool {
	return strings.HasPrefix(sender, "MG")
}

// fromAPI converts twilio-go's message, whose fields are all optional
// strings, into a Message. Fields Twilio left out stay zero.
func fromAPI(m *openapi.ApiV2010Message) Message {
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	date := func(p *string) time.Time {
		t, err := time.Parse(time.RFC1123Z, str(p))
		if err != nil {
			return time.Time{}
		}
		return t
	}
	out := Message{
		SID:     str(m.Sid),
		Status:  str(m.Status),
		From:    str(m.From),
		To:      str(m.To),
		Body:    str(m.Body),
		Created: date(m.DateCreated),
		Sent:    date(m.DateSent),
	}
	out.Segments, _ = strconv.Atoi(str(m.NumSegments))
	if m.ErrorCode != nil {
		out.ErrorCode = *m.ErrorCode
	}
	return out
}
