package sms

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
)

// attempt records what happened on the wire during one call, so that a
// failure can be classified: was the request written, did an answer come.
type attempt struct {
	mu         sync.Mutex
	wrote      bool
	status     int
	retryAfter string // the Retry-After header of an error answer
}

func (a *attempt) result() (wrote bool, status int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.wrote, a.status
}

// callTransport carries one call's context and trace into the requests
// twilio-go makes (twilio-go builds them without a context) and, for a
// simulator, sends them to base instead of api.twilio.com.
type callTransport struct {
	ctx  context.Context
	base *url.URL // nil: leave the URL alone
	next http.RoundTripper
	att  *attempt
}

func (t *callTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// Stop the request when either the HTTP client's timeout (in req's
	// context) or the caller's context ends.
	ctx, cancel := context.WithCancelCause(req.Context())
	stop := context.AfterFunc(t.ctx, func() { cancel(context.Cause(t.ctx)) })
	release := func() { stop(); cancel(nil) }

	trace := &httptrace.ClientTrace{
		// Called even when writing fails part-way; such a request may
		// still have reached Twilio, so it counts as written.
		WroteRequest: func(httptrace.WroteRequestInfo) {
			t.att.mu.Lock()
			t.att.wrote = true
			t.att.mu.Unlock()
		},
	}
	out := req.Clone(httptrace.WithClientTrace(ctx, trace))
	if t.base != nil {
		u := *out.URL
		u.Scheme = t.base.Scheme
		u.Host = t.base.Host
		u.Path = strings.TrimSuffix(t.base.Path, "/") + u.Path
		u.RawPath = ""
		out.URL = &u
		out.Host = ""
	}

	resp, err := t.next.RoundTrip(out)
	if err != nil {
		release()
		return nil, err
	}
	t.att.mu.Lock()
	t.att.status = resp.StatusCode
	if resp.StatusCode >= 400 {
		t.att.retryAfter = resp.Header.Get("Retry-After")
	}
	t.att.mu.Unlock()
	if resp.StatusCode >= 400 {
		// twilio-go decodes error bodies without closing them: read the
		// body here so the connection and the context are freed at once.
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		release()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(b))
		return resp, nil
	}
	resp.Body = &releaseBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 1 << 20

// releaseBody frees the request's context once the body is closed.
type releaseBody struct {
	io.ReadCloser
	once    sync.Once
	release func()
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.release)
	return err
}
