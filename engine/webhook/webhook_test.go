package webhook_test

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/webhook"
	"github.com/nudge-study/nudge/engine/webhook/webhooktest"
)

const (
	authToken = "token123"
	// triggerSecret is the Data Entry Trigger secret of the test servers;
	// triggerPath is the trigger URL's path and query REDCap is given.
	triggerSecret = "s3cret-of-the-trigger-url"
	triggerPath   = "/redcap/trigger?secret=" + triggerSecret
	publicURL     = "https://nudge.example.edu/hooks"
	formType      = "application/x-www-form-urlencoded"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a webhook server on 127.0.0.1 in front of a fake handler.
type env struct {
	t       *testing.T
	fake    *fakeHandler
	srv     *webhook.Server
	ts      *httptest.Server
	log     *syncBuffer
	metrics *metrics.Metrics
}

func newEnv(t *testing.T, configure ...func(*webhook.Config)) *env {
	t.Helper()
	e := &env{t: t, fake: newFake(), log: &syncBuffer{}, metrics: metrics.New(nil)}
	l := logrus.New()
	l.Out = e.log
	l.Formatter = &logrus.JSONFormatter{}
	l.Level = logrus.DebugLevel
	cfg := webhook.Config{PublicURL: publicURL, AuthToken: authToken, Log: l, Metrics: e.metrics, TriggerSecret: triggerSecret}
	for _, c := range configure {
		c(&cfg)
	}
	srv, err := webhook.New(cfg, e.fake)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(e.ts.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request to the test server.
func (e *env) do(method, path, contentType string, body io.Reader, header map[string]string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// signedPost posts params to path, signed for signedFor (a full URL).
func (e *env) signedPost(path string, params url.Values, signedFor string) response {
	e.t.Helper()
	sig := webhooktest.Sign(authToken, signedFor, params)
	return e.do(http.MethodPost, path, formType, strings.NewReader(params.Encode()), map[string]string{"X-Twilio-Signature": sig})
}

// twiML is a messaging TwiML answer.
type twiML struct {
	XMLName  xml.Name `xml:"Response"`
	Messages []string `xml:"Message"`
}

func parseTwiML(t *testing.T, s string) twiML {
	t.Helper()
	var doc twiML
	if err := xml.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatalf("answer is not TwiML: %v\n%s", err, s)
	}
	return doc
}

func inboundParams(sid, body string) url.Values {
	return webhooktest.InboundParams(sid, "+14155550123", "+14155550100", body)
}

func TestInboundAnswersWithTwiML(t *testing.T) {
	tests := []struct {
		name      string
		reply     string
		wantReply []string
	}{
		{"reply with markup characters", `Thanks <Ana> & "you" — reply STOP to opt out`, []string{`Thanks <Ana> & "you" — reply STOP to opt out`}},
		{"plain reply", "Got it!", []string{"Got it!"}},
		{"no reply", "", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.reply = tt.reply
			sid := fmt.Sprintf("SM%032d", i)
			p := inboundParams(sid, "yes please")
			p.Set("NumMedia", "2")
			r := e.signedPost("/twilio/inbound", p, publicURL+"/twilio/inbound")
			if r.status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "text/xml" {
				t.Errorf("Content-Type %q, want text/xml", ct)
			}
			doc := parseTwiML(t, r.body)
			if !reflect.DeepEqual(doc.Messages, tt.wantReply) {
				t.Errorf("TwiML messages %q, want %q", doc.Messages, tt.wantReply)
			}
			if tt.reply == "" && strings.Contains(r.body, "<Message") {
				t.Errorf("empty reply still has a <Message>: %s", r.body)
			}
			if strings.Contains(tt.reply, "<") && strings.Contains(r.body, "<Ana>") {
				t.Errorf("reply text not escaped: %s", r.body)
			}
			got, ok := e.fake.Got(sid)
			if !ok {
				t.Fatalf("handler did not get message %s", sid)
			}
			want := webhook.Inbound{MessageSID: sid, AccountSID: "ACtest", From: "+14155550123", To: "+14155550100", Body: "yes please", NumMedia: 2}
			if city := got.Params.Get("FromCity"); city != "SAN FRANCISCO" {
				t.Errorf("Params lost an extra parameter: FromCity = %q", city)
			}
			got.Params = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("handler got %+v, want %+v", got, want)
			}
		})
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestTwiMLGolden(t *testing.T) {
	tests := []struct{ reply, golden string }{
		{`Thanks <Ana> & "you" — reply STOP to opt out`, "reply.xml"},
		{"", "empty.xml"},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			got, err := webhook.TwiML(tt.reply)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("TwiML(%q) =\n%s\nwant (%s)\n%s", tt.reply, got, path, want)
			}
		})
	}
}

func TestSignatureRefused(t *testing.T) {
	inboundURL := publicURL + "/twilio/inbound"
	tests := []struct {
		name    string
		path    string
		sig     func(e *env, p url.Values) string // "" = no header
		outcome string
	}{
		{"missing signature", "/twilio/inbound", func(*env, url.Values) string { return "" }, "no_signature"},
		{"garbage signature", "/twilio/inbound", func(*env, url.Values) string { return "not-a-signature" }, "bad_signature"},
		{"other auth token", "/twilio/inbound", func(_ *env, p url.Values) string { return webhooktest.Sign("othertoken", inboundURL, p) }, "bad_signature"},
		{"signed for the internal URL", "/twilio/inbound", func(e *env, p url.Values) string {
			return webhooktest.Sign(authToken, e.ts.URL+"/twilio/inbound", p)
		}, "bad_signature"},
		{"signed for the public host without the path prefix", "/twilio/inbound", func(_ *env, p url.Values) string {
			return webhooktest.Sign(authToken, "https://nudge.example.edu/twilio/inbound", p)
		}, "bad_signature"},
		{"signed for another endpoint", "/twilio/inbound", func(_ *env, p url.Values) string {
			return webhooktest.Sign(authToken, publicURL+"/twilio/status", p)
		}, "bad_signature"},
		{"signed for other parameters", "/twilio/inbound", func(_ *env, p url.Values) string {
			q := url.Values{}
			for k, v := range p {
				q[k] = v
			}
			q.Set("Body", "START")
			return webhooktest.Sign(authToken, inboundURL, q)
		}, "bad_signature"},
		{"query dropped from the signed URL", "/twilio/inbound?site=a", func(_ *env, p url.Values) string {
			return webhooktest.Sign(authToken, inboundURL, p)
		}, "bad_signature"},
		{"status callback unsigned", "/twilio/status", func(*env, url.Values) string { return "" }, "no_signature"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			p := inboundParams(fmt.Sprintf("SM%032d", i), "STOP")
			p.Set("MessageStatus", "delivered")
			hdr := map[string]string{}
			if sig := tt.sig(e, p); sig != "" {
				hdr["X-Twilio-Signature"] = sig
			}
			r := e.do(http.MethodPost, tt.path, formType, strings.NewReader(p.Encode()), hdr)
			if r.status != http.StatusForbidden {
				t.Errorf("status %d, want 403", r.status)
			}
			if n := e.fake.Calls(); n != 0 {
				t.Errorf("handler called %d times for a refused request", n)
			}
			endpoint := strings.TrimPrefix(strings.SplitN(tt.path, "?", 2)[0], "/twilio/")
			if got := testutil.ToFloat64(e.metrics.Webhook.WithLabelValues(endpoint, tt.outcome)); got != 1 {
				t.Errorf("nudge_webhook_requests_total{endpoint=%q,outcome=%q} = %v, want 1", endpoint, tt.outcome, got)
			}
			if !strings.Contains(e.log.String(), "refused a request") {
				t.Errorf("refusal not logged:\n%s", e.log)
			}
		})
	}
}

func TestSignatureBehindProxy(t *testing.T) {
	e := newEnv(t) // public URL https://nudge.example.edu/hooks, server on http://127.0.0.1:port
	tests := []struct {
		name      string
		path      string
		signedFor string
		host      string // Host header sent (what a proxy might pass on)
		want      int
	}{
		{"signed for the public URL", "/twilio/inbound", publicURL + "/twilio/inbound", "", http.StatusOK},
		{"public URL with the default port", "/twilio/inbound", "https://nudge.example.edu:443/hooks/twilio/inbound", "", http.StatusOK},
		{"query string included", "/twilio/inbound?site=a&x=%2B1", publicURL + "/twilio/inbound?site=a&x=%2B1", "", http.StatusOK},
		{"signed for the internal URL", "/twilio/inbound", e.ts.URL + "/twilio/inbound", "", http.StatusForbidden},
		{"Host header is not trusted", "/twilio/inbound", "http://evil.example.com/twilio/inbound", "evil.example.com", http.StatusForbidden},
		{"public URL over http", "/twilio/inbound", "http://nudge.example.edu/hooks/twilio/inbound", "", http.StatusForbidden},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := inboundParams(fmt.Sprintf("SM%032d", 100+i), "hi")
			sig := webhooktest.Sign(authToken, tt.signedFor, p)
			req, err := http.NewRequest(http.MethodPost, e.ts.URL+tt.path, strings.NewReader(p.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", formType)
			req.Header.Set("X-Twilio-Signature", sig)
			if tt.host != "" {
				req.Host = tt.host
				req.Header.Set("X-Forwarded-Host", tt.host)
			}
			resp, err := e.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
			_, stored := e.fake.Got(p.Get("MessageSid"))
			if stored != (tt.want == http.StatusOK) {
				t.Errorf("handler called = %v, want %v", stored, tt.want == http.StatusOK)
			}
		})
	}
}

func TestBodyLimit(t *testing.T) {
	tests := []struct {
		name     string
		maxBody  int64
		size     int
		chunked  bool
		tooLarge bool
	}{
		{"default limit exceeded", 0, 64<<10 + 1, false, true},
		{"default limit exceeded, chunked", 0, 64<<10 + 1, true, true},
		{"configured limit exceeded", 1024, 1025, false, true},
		{"at the configured limit", 1024, 1024, false, false}, // read, then refused for other reasons
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *webhook.Config) { c.MaxBody = tt.maxBody })
			body := "Body=" + strings.Repeat("a", tt.size-len("Body="))
			for _, path := range []string{"/twilio/inbound", "/twilio/status", triggerPath} {
				var r io.Reader = strings.NewReader(body)
				if tt.chunked {
					r = io.MultiReader(r) // unknown length: sent chunked
				}
				resp := e.do(http.MethodPost, path, formType, r, map[string]string{"X-Twilio-Signature": "x"})
				if got := resp.status == http.StatusRequestEntityTooLarge; got != tt.tooLarge {
					t.Errorf("%s: status %d, want 413: %v", path, resp.status, tt.tooLarge)
				}
			}
			if n := e.fake.Calls(); n != 0 {
				t.Errorf("handler called %d times", n)
			}
		})
	}
}

func TestMethodsAndMediaTypes(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		method, path, contentType string
		want                      int
		allow                     string
	}{
		{http.MethodGet, "/twilio/inbound", "", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPut, "/twilio/inbound", formType, http.StatusMethodNotAllowed, "POST"},
		{http.MethodGet, "/twilio/status", "", http.StatusMethodNotAllowed, "POST"},
		{http.MethodDelete, "/redcap/trigger", "", http.StatusMethodNotAllowed, "POST"},
		{http.MethodPost, "/healthz", formType, http.StatusMethodNotAllowed, "GET"},
		{http.MethodPost, "/metrics", formType, http.StatusMethodNotAllowed, "GET"},
		{http.MethodPost, "/twilio/inbound", "application/json", http.StatusUnsupportedMediaType, ""},
		{http.MethodPost, "/twilio/inbound", "", http.StatusUnsupportedMediaType, ""},
		{http.MethodPost, triggerPath, "multipart/form-data; boundary=x", http.StatusUnsupportedMediaType, ""},
		{http.MethodPost, "/nope", formType, http.StatusNotFound, ""},
		{http.MethodHead, "/healthz", "", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.contentType, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.contentType, strings.NewReader("record=1&project_id=1"), nil)
			if r.status != tt.want {
				t.Errorf("status %d, want %d", r.status, tt.want)
			}
			if got := r.header.Get("Allow"); got != tt.allow {
				t.Errorf("Allow %q, want %q", got, tt.allow)
			}
		})
	}
	if n := e.fake.Calls(); n != 0 {
		t.Errorf("handler called %d times", n)
	}
}

func TestInboundRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(p url.Values)
		fake   func(f *fakeHandler)
		want   int
		stored bool
	}{
		{"handler error", nil, func(f *fakeHandler) { f.inboundErr = errors.New("database is locked") }, http.StatusInternalServerError, false},
		{"handler panic", nil, func(f *fakeHandler) { f.panicWith = "boom" }, http.StatusInternalServerError, false},
		{"no MessageSid", func(p url.Values) { p.Del("MessageSid"); p.Del("SmsSid") }, nil, http.StatusBadRequest, false},
		{"SmsSid only", func(p url.Values) { p.Del("MessageSid") }, nil, http.StatusOK, true},
		{"NumMedia not a number", func(p url.Values) { p.Set("NumMedia", "two") }, nil, http.StatusBadRequest, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.fake != nil {
				tt.fake(e.fake)
			}
			sid := fmt.Sprintf("SM%032d", 200+i)
			p := inboundParams(sid, "hello")
			if tt.change != nil {
				tt.change(p)
			}
			r := e.signedPost("/twilio/inbound", p, publicURL+"/twilio/inbound")
			if r.status != tt.want {
				t.Errorf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if _, ok := e.fake.Got(sid); ok != tt.stored {
				t.Errorf("stored = %v, want %v", ok, tt.stored)
			}
			// The server keeps working after an error or a panic.
			if h := e.do(http.MethodGet, "/healthz", "", nil, nil); h.status != http.StatusOK {
				t.Errorf("healthz after the request: %d", h.status)
			}
		})
	}
}

func TestStatusCallback(t *testing.T) {
	base := url.Values{
		"MessageSid": {"SM0123"}, "SmsSid": {"SM0123"}, "AccountSid": {"ACtest"},
		"MessageStatus": {"delivered"}, "SmsStatus": {"delivered"},
		"From": {"+14155550100"}, "To": {"+14155550123"}, "ApiVersion": {"2010-04-01"},
	}
	tests := []struct {
		name       string
		change     func(p url.Values)
		handlerErr error
		want       int
		wantCB     *webhook.StatusCallback
	}{
		{"delivered", nil, nil, http.StatusNoContent, &webhook.StatusCallback{MessageSID: "SM0123", Status: "delivered"}},
		{"undelivered with an error code", func(p url.Values) {
			p.Set("MessageStatus", "undelivered")
			p.Set("ErrorCode", "30003")
		}, nil, http.StatusNoContent, &webhook.StatusCallback{MessageSID: "SM0123", Status: "undelivered", ErrorCode: 30003}},
		{"empty error code", func(p url.Values) { p.Set("ErrorCode", "") }, nil, http.StatusNoContent,
			&webhook.StatusCallback{MessageSID: "SM0123", Status: "delivered"}},
		{"only the older SmsStatus", func(p url.Values) {
			p.Del("MessageStatus")
			p.Set("SmsStatus", "sent")
		}, nil, http.StatusNoContent, &webhook.StatusCallback{MessageSID: "SM0123", Status: "sent"}},
		{"error code not a number", func(p url.Values) { p.Set("ErrorCode", "3000x") }, nil, http.StatusBadRequest, nil},
		{"no status", func(p url.Values) { p.Del("MessageStatus"); p.Del("SmsStatus") }, nil, http.StatusBadRequest, nil},
		{"no sid", func(p url.Values) { p.Del("MessageSid"); p.Del("SmsSid") }, nil, http.StatusBadRequest, nil},
		{"handler error", nil, errors.New("disk full"), http.StatusInternalServerError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.statusErr = tt.handlerErr
			p := url.Values{}
			for k, v := range base {
				p[k] = append([]string(nil), v...)
			}
			if tt.change != nil {
				tt.change(p)
			}
			r := e.signedPost("/twilio/status", p, publicURL+"/twilio/status")
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			cbs := e.fake.Statuses()
			if tt.wantCB == nil {
				if len(cbs) != 0 {
					t.Errorf("handler recorded %+v", cbs)
				}
				return
			}
			if len(cbs) != 1 {
				t.Fatalf("handler got %d callbacks, want 1", len(cbs))
			}
			got := cbs[0]
			if got.Params.Get("ApiVersion") != "2010-04-01" {
				t.Errorf("Params lost ApiVersion: %v", got.Params)
			}
			got.Params = nil
			if !reflect.DeepEqual(got, *tt.wantCB) {
				t.Errorf("callback %+v, want %+v", got, *tt.wantCB)
			}
		})
	}
}

func TestTrigger(t *testing.T) {
	det := func() url.Values {
		return url.Values{
			"redcap_url":               {"https://redcap.example.edu/"},
			"project_url":              {"https://redcap.example.edu/redcap_v14.5.1/index.php?pid=1001"},
			"project_id":               {"1001"},
			"username":                 {"[survey respondent]"},
			"record":                   {"17"},
			"instrument":               {"bp"},
			"bp_complete":              {"2"},
			"redcap_event_name":        {"visit_arm_1"},
			"redcap_data_access_group": {"site_a"},
			"redcap_repeat_instrument": {"bp"},
			"redcap_repeat_instance":   {"3"},
			"some_future_param":        {"x"},
		}
	}
	tests := []struct {
		name       string
		change     func(p url.Values)
		handlerErr error
		want       int
		wantT      *webhook.Trigger
	}{
		{"repeating instrument", nil, nil, http.StatusOK, &webhook.Trigger{
			RedcapURL: "https://redcap.example.edu/", ProjectID: 1001, Record: "17", Instrument: "bp",
			Event: "visit_arm_1", RepeatInstrument: "bp", RepeatInstance: 3}},
		{"classic project", func(p url.Values) {
			for _, k := range []string{"redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance", "redcap_data_access_group"} {
				p.Del(k)
			}
			p.Set("instrument", "contact")
		}, nil, http.StatusOK, &webhook.Trigger{
			RedcapURL: "https://redcap.example.edu/", ProjectID: 1001, Record: "17", Instrument: "contact"}},
		{"no record", func(p url.Values) { p.Del("record") }, nil, http.StatusBadRequest, nil},
		{"empty record", func(p url.Values) { p.Set("record", "") }, nil, http.StatusBadRequest, nil},
		{"no project id", func(p url.Values) { p.Del("project_id") }, nil, http.StatusBadRequest, nil},
		{"project id not a number", func(p url.Values) { p.Set("project_id", "10x") }, nil, http.StatusBadRequest, nil},
		{"repeat instance not a number", func(p url.Values) { p.Set("redcap_repeat_instance", "three") }, nil, http.StatusBadRequest, nil},
		{"unknown project", nil, fmt.Errorf("trigger for project 1001 at redcap.example.edu: %w", webhook.ErrUnknownProject), http.StatusForbidden, nil},
		{"queue failure", nil, errors.New("database is locked"), http.StatusInternalServerError, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.triggerErr = tt.handlerErr
			p := det()
			if tt.change != nil {
				tt.change(p)
			}
			r := e.do(http.MethodPost, triggerPath, formType, strings.NewReader(p.Encode()), nil)
			if r.status != tt.want {
				t.Fatalf("status %d, want %d: %s", r.status, tt.want, r.body)
			}
			ts := e.fake.Triggers()
			if tt.wantT == nil {
				if len(ts) != 0 {
					t.Errorf("handler queued %+v", ts)
				}
				return
			}
			if len(ts) != 1 {
				t.Fatalf("handler got %d triggers, want 1", len(ts))
			}
			got := ts[0]
			if !reflect.DeepEqual(got.Params, p) {
				t.Errorf("Params %v, want every parameter sent %v", got.Params, p)
			}
			got.Params = nil
			if !reflect.DeepEqual(got, *tt.wantT) {
				t.Errorf("trigger %+v, want %+v", got, *tt.wantT)
			}
		})
	}
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		name   string
		health webhook.Health
		err    error
		want   int
		wantOK bool
	}{
		{"healthy", webhook.Health{OK: true, Database: "ok", Queues: map[string]int{"writebacks": 3}}, nil, http.StatusOK, true},
		{"unhealthy", webhook.Health{OK: false, Database: "ok", LastRun: map[string]any{"outcome": "failed"}}, nil, http.StatusServiceUnavailable, false},
		{"health check error", webhook.Health{OK: true, Database: "unreachable"}, errors.New("ping: database is locked"), http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.fake.health, e.fake.healthErr = tt.health, tt.err
			r := e.do(http.MethodGet, "/healthz", "", nil, nil)
			if r.status != tt.want {
				t.Errorf("status %d, want %d", r.status, tt.want)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got webhook.Health
			if err := json.Unmarshal([]byte(r.body), &got); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, r.body)
			}
			if tt.err != nil {
				tt.health = webhook.Health{Database: "unknown"} // the handler's figures are not trusted
			}
			if got.OK != tt.wantOK || got.Database != tt.health.Database || !reflect.DeepEqual(got.Queues, tt.health.Queues) {
				t.Errorf("body %+v, want ok=%v and the handler's figures %+v", got, tt.wantOK, tt.health)
			}
			if tt.err != nil && strings.Contains(r.body, "locked") {
				t.Errorf("the health error's text leaked into the answer: %s", r.body)
			}
		})
	}
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t)
	p := inboundParams("SM1", "hi")
	e.signedPost("/twilio/inbound", p, publicURL+"/twilio/inbound")
	e.signedPost("/twilio/inbound", p, "https://wrong.example.edu/twilio/inbound")
	e.do(http.MethodGet, "/twilio/status", "", nil, nil)

	r := e.do(http.MethodGet, "/metrics", "", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	for _, want := range []string{
		`nudge_webhook_requests_total{endpoint="inbound",outcome="ok"} 1`,
		`nudge_webhook_requests_total{endpoint="inbound",outcome="bad_signature"} 1`,
		`nudge_webhook_requests_total{endpoint="status",outcome="method_not_allowed"} 1`,
		`nudge_webhook_request_seconds_count{endpoint="inbound"} 2`,
		`go_goroutines `,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestMetricsOnCallerRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(c *webhook.Config) { c.Metrics = nil; c.Registry = reg })
	e.do(http.MethodGet, "/healthz", "", nil, nil)
	n, err := testutil.GatherAndCount(reg, "nudge_webhook_requests_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("nudge_webhook_requests_total series on the given registry = %d, want 1", n)
	}
	if r := e.do(http.MethodGet, "/metrics", "", nil, nil); !strings.Contains(r.body, `endpoint="healthz"`) {
		t.Errorf("/metrics does not serve the given registry:\n%s", r.body)
	}
}

// TestAccessLogKeepsPrivateDataOut drives the handler directly so that every
// log line is written before the assertions run.
func TestAccessLogKeepsPrivateDataOut(t *testing.T) {
	e := newEnv(t)
	e.fake.reply = "Thanks, your secret code is 4242"
	const phone, digits, body = "+14155550123", "4155550123", "my secret body text"
	p := webhooktest.InboundParams("SM9", phone, "+14155550100", body)
	serve := func(method, target string, params url.Values, sign bool) int {
		req := httptest.NewRequest(method, "http://127.0.0.1"+target, strings.NewReader(params.Encode()))
		req.Header.Set("Content-Type", formType)
		if sign {
			req.Header.Set("X-Twilio-Signature", webhooktest.Sign(authToken, publicURL+target, params))
		}
		rec := httptest.NewRecorder()
		e.srv.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	steps := []struct {
		method, target string
		params         url.Values
		sign           bool
		want           int
	}{
		{http.MethodPost, "/twilio/inbound?from=" + url.QueryEscape(phone), p, true, http.StatusOK},
		{http.MethodPost, "/twilio/inbound", p, false, http.StatusForbidden},
		{http.MethodPost, "/twilio/status", url.Values{"MessageSid": {"SM9"}, "MessageStatus": {"sent"}, "To": {phone}}, true, http.StatusNoContent},
		{http.MethodPost, triggerPath, url.Values{"record": {digits}, "project_id": {"1001"}}, false, http.StatusOK},
		{http.MethodPost, "/redcap/trigger?secret=wrong-" + triggerSecret, url.Values{"record": {digits}, "project_id": {"1001"}}, false, http.StatusForbidden},
		{http.MethodGet, "/call/" + digits, nil, false, http.StatusNotFound},
	}
	for _, s := range steps {
		if got := serve(s.method, s.target, s.params, s.sign); got != s.want {
			t.Fatalf("%s %s: status %d, want %d", s.method, s.target, got, s.want)
		}
	}

	out := e.log.String()
	for _, secret := range []string{digits, "secret body", "secret code", "from=", triggerSecret} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, line)
		}
		if m["msg"] == "webhook: request" {
			lines = append(lines, m)
		}
	}
	if len(lines) != len(steps) {
		t.Fatalf("%d access log lines, want %d:\n%s", len(lines), len(steps), out)
	}
	for i, s := range steps {
		l := lines[i]
		path := strings.SplitN(s.target, "?", 2)[0]
		if s.want == http.StatusNotFound {
			path = "/call/##########"
		}
		if l["method"] != s.method || l["path"] != path || l["status"] != float64(s.want) {
			t.Errorf("line %d: method=%v path=%v status=%v, want %s %s %d", i, l["method"], l["path"], l["status"], s.method, path, s.want)
		}
		for _, f := range []string{"duration_ms", "bytes", "endpoint", "outcome"} {
			if _, ok := l[f]; !ok {
				t.Errorf("line %d lacks %q: %v", i, f, l)
			}
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  webhook.Config
		h    webhook.Handler
		want string
	}{
		{"no public URL", webhook.Config{AuthToken: authToken}, newFake(), "public_url is empty"},
		{"not http", webhook.Config{PublicURL: "ftp://nudge.example.edu", AuthToken: authToken}, newFake(), "http:// or https://"},
		{"no host", webhook.Config{PublicURL: "https:///hooks", AuthToken: authToken}, newFake(), "with a host"},
		{"query", webhook.Config{PublicURL: "https://nudge.example.edu/?a=1", AuthToken: authToken}, newFake(), "must not carry a query"},
		{"no token", webhook.Config{PublicURL: publicURL}, newFake(), "auth token is empty"},
		{"no handler", webhook.Config{PublicURL: publicURL, AuthToken: authToken}, nil, "no handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(tt.cfg, tt.h)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one mentioning %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), authToken) {
				t.Errorf("error shows the auth token: %v", err)
			}
		})
	}
}

func TestPublicURLTrailingSlash(t *testing.T) {
	e := newEnv(t, func(c *webhook.Config) { c.PublicURL = "https://nudge.example.edu/" })
	p := inboundParams("SM77", "hi")
	if r := e.signedPost("/twilio/inbound", p, "https://nudge.example.edu/twilio/inbound"); r.status != http.StatusOK {
		t.Errorf("status %d, want 200", r.status)
	}
}
