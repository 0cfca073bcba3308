package twiliotest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

// tick is the callback sender's period in these tests; waits are bounded
// by waitLimit.
const (
	tick      = 5 * time.Millisecond
	waitLimit = 5 * time.Second
)

// received is one callback as the receiver saw it.
type received struct {
	form      url.Values
	body, sig string
	signed    bool   // twilio-go's validator accepted the signature
	token     string // the I-Twilio-Idempotency-Token header
}

// receiver is a fake status callback endpoint that checks signatures with
// twilio-go's RequestValidator.
type receiver struct {
	srv  *httptest.Server
	url  string // the StatusCallback to give at create
	fail int    // answer 500 to this many requests before answering 204
	drop int    // close the connection without an answer on this many requests first
	hold bool   // keep every request until the client gives up

	mu  sync.Mutex
	got []received
	n   int // requests seen, including failed ones
}

func newReceiver(t *testing.T, fail int, hold bool) *receiver {
	t.Helper()
	rc := &receiver{fail: fail, hold: hold}
	release := make(chan struct{})
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve(release)))
	rc.url = rc.srv.URL + "/twilio/status?study=demo"
	t.Cleanup(func() { close(release); rc.srv.Close() })
	return rc
}

func (rc *receiver) serve(release <-chan struct{}) http.HandlerFunc {
	validator := client.NewRequestValidator(token)
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sig := r.Header.Get("X-Twilio-Signature")
		form, _ := url.ParseQuery(string(body))
		rc.mu.Lock()
		rc.n++
		n := rc.n
		if n > rc.fail+rc.drop && !rc.hold {
			rc.got = append(rc.got, received{form: form, body: string(body), sig: sig,
				signed: validator.ValidateBody(rc.url, body, sig), token: r.Header.Get("I-Twilio-Idempotency-Token")})
		}
		rc.mu.Unlock()
		switch {
		case n <= rc.drop:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		case rc.hold:
			select {
			case <-r.Context().Done():
			case <-release:
			}
		case n <= rc.drop+rc.fail:
			http.Error(w, "try again", http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

// taken returns the callbacks answered with 2xx, in arrival order.
func (rc *receiver) taken() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

func (rc *receiver) requests() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.n
}

// startCallbacks serves a simulator that sends callbacks every tick.
func startCallbacks(t *testing.T, shuffle bool) (*twiliotest.Server, *sms.FakeClock, string) {
	t.Helper()
	clk := sms.NewFakeClock(epoch)
	srv := twiliotest.New(twiliotest.Options{AccountSID: account, AuthToken: token, Clock: clk,
		Callbacks: true, CallbackEvery: tick, ShuffleCallbacks: shuffle})
	base, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeWithin(t, srv) })
	return srv, clk, base
}

// closeWithin closes srv, failing the test if that takes over waitLimit.
func closeWithin(t *testing.T, srv *twiliotest.Server) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(waitLimit):
		t.Errorf("Close did not return within %v", waitLimit)
	}
}

// createWith creates a message and returns the HTTP status and the SID or
// the error code.
func createWith(t *testing.T, base string, form url.Values) (int, string, int) {
	t.Helper()
	status, body := do(t, "POST", base+"/2010-04-01/Accounts/"+account+"/Messages.json", form)
	var resp struct {
		SID  string
		Code int
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		t.Fatalf("create: %v: %s", err, body)
	}
	return status, resp.SID, resp.Code
}

func sendTo(t *testing.T, base, to, callback string) string {
	t.Helper()
	status, sid, code := createWith(t, base, url.Values{"From": {sender}, "To": {to}, "Body": {"hi"}, "StatusCallback": {callback}})
	if status != http.StatusCreated {
		t.Fatalf("create to %s: HTTP %d code %d", to, status, code)
	}
	return sid
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", waitLimit, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle lets the sender run a few ticks, to show that nothing more comes.
func settle() { time.Sleep(4 * tick) }

func statuses(rs []received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.form.Get("MessageStatus")
	}
	return out
}

func TestCallbacksFollowStatuses(t *testing.T) {
	type step struct {
		at   time.Duration // clock offset from the create
		want []string      // every status taken by then, in arrival order
	}
	tests := []struct {
		name     string
		outcome  twiliotest.Outcome
		service  bool
		shuffle  bool
		steps    []step
		wantCode string // ErrorCode of the final status
	}{
		{name: "delivered, one change at a time", steps: []step{
			{100 * time.Millisecond, nil}, // still queued: no callback
			{200 * time.Millisecond, []string{"sending"}},
			{500 * time.Millisecond, []string{"sending", "sent"}},
			{1500 * time.Millisecond, []string{"sending", "sent", "delivered"}},
		}},
		{name: "undelivered carries its error code", outcome: twiliotest.Outcome{Final: "undelivered", ErrorCode: 30003},
			steps: []step{{time.Hour, []string{"sending", "sent", "undelivered"}}}, wantCode: "30003"},
		{name: "failed skips sent", outcome: twiliotest.Outcome{Final: "failed", ErrorCode: 30034},
			steps: []step{{time.Second, []string{"sending"}}, {2 * time.Second, []string{"sending", "failed"}}}, wantCode: "30034"},
		{name: "messaging service: no callback for accepted, then queued from the pool", service: true, steps: []step{
			{0, nil},
			{100 * time.Millisecond, []string{"queued"}},
			{2 * time.Second, []string{"queued", "sending", "sent", "delivered"}},
		}},
		{name: "shuffled: changes due together arrive newest first", shuffle: true, steps: []step{
			{2 * time.Second, []string{"delivered", "sent", "sending"}},
		}},
		{name: "shuffled: a single due change is unaffected", shuffle: true, steps: []step{
			{200 * time.Millisecond, []string{"sending"}},
			{2 * time.Second, []string{"sending", "delivered", "sent"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, clk, base := startCallbacks(t, tt.shuffle)
			rc := newReceiver(t, 0, false)
			to := "+14155550120"
			srv.SetOutcome(to, tt.outcome)
			form := url.Values{"From": {sender}, "To": {to}, "Body": {"hi"}, "StatusCallback": {rc.url}}
			if tt.service {
				form.Del("From")
				form.Set("MessagingServiceSid", "MG0123456789abcdef0123456789abcdef")
			}
			status, sid, code := createWith(t, base, form)
			if status != http.StatusCreated {
				t.Fatalf("create: HTTP %d code %d", status, code)
			}

			for _, st := range tt.steps {
				clk.Set(epoch.Add(st.at))
				eventually(t, "callbacks "+strings.Join(st.want, ","), func() bool { return len(rc.taken()) >= len(st.want) })
				if len(st.want) == 0 {
					settle()
				}
				if got := statuses(rc.taken()); !slices.Equal(got, st.want) {
					t.Fatalf("at +%v: callbacks %v, want %v", st.at, got, st.want)
				}
			}
			settle()
			got := rc.taken()
			if n := len(tt.steps[len(tt.steps)-1].want); len(got) != n {
				t.Fatalf("%d callbacks after the last change, want %d: %v", len(got), n, statuses(got))
			}

			for _, r := range got {
				f, st := r.form, r.form.Get("MessageStatus")
				if !r.signed {
					t.Errorf("%s: twilio-go rejects signature %q", st, r.sig)
				}
				wantForm := map[string]string{"MessageSid": sid, "SmsSid": sid, "AccountSid": account,
					"From": form.Get("From"), "To": to, "SmsStatus": st, "ApiVersion": "2010-04-01"}
				if tt.service {
					wantForm["MessagingServiceSid"] = form.Get("MessagingServiceSid")
					wantForm["From"] = twiliotest.DefaultPoolNumber
				}
				for k, v := range wantForm {
					if f.Get(k) != v {
						t.Errorf("%s: %s = %q, want %q", st, k, f.Get(k), v)
					}
				}
				wantCode := ""
				if st == "failed" || st == "undelivered" {
					wantCode = tt.wantCode
				}
				if f.Has("ErrorCode") != (wantCode != "") || f.Get("ErrorCode") != wantCode {
					t.Errorf("%s: ErrorCode %q (present %v), want %q", st, f.Get("ErrorCode"), f.Has("ErrorCode"), wantCode)
				}
			}

			// The signature covers the URL and every parameter.
			v := client.NewRequestValidator("othertoken")
			if v.ValidateBody(rc.url, []byte(got[0].body), got[0].sig) {
				t.Error("signature also valid for another auth token")
			}
			v = client.NewRequestValidator(token)
			if v.ValidateBody(rc.srv.URL+"/twilio/status", []byte(got[0].body), got[0].sig) {
				t.Error("signature also valid without the callback's query")
			}
			tampered := strings.Replace(got[0].body, "MessageStatus=", "MessageStatus=x", 1)
			if v.ValidateBody(rc.url, []byte(tampered), got[0].sig) {
				t.Error("signature also valid for a changed status")
			}

			// What Callbacks() recorded matches what was taken.
			var recorded []string
			for _, a := range srv.Callbacks() {
				if a.SID != sid || a.URL != rc.url || a.HTTPStatus != http.StatusNoContent || a.Err != "" {
					t.Errorf("attempt %+v, want SID %s, URL %s, HTTP 204, no error", a, sid, rc.url)
				}
				recorded = append(recorded, a.Status)
			}
			if !slices.Equal(recorded, statuses(got)) {
				t.Errorf("Callbacks() statuses %v, receiver took %v", recorded, statuses(got))
			}
		})
	}
}

func TestCallbacksOnlyForCreatedMessages(t *testing.T) {
	srv, clk, base := startCallbacks(t, false)
	rc := newReceiver(t, 0, false)
	optedOut, plain := "+14155550121", "+14155550122"
	srv.SetOutcome(optedOut, twiliotest.Outcome{CreateError: 21610})
	status, _, code := createWith(t, base, url.Values{"From": {sender}, "To": {optedOut}, "Body": {"hi"}, "StatusCallback": {rc.url}})
	if status != http.StatusBadRequest || code != 21610 {
		t.Fatalf("create to an opted-out number: HTTP %d code %d, want 400/21610", status, code)
	}
	// Without a StatusCallback nothing is sent either.
	sendTo(t, base, plain, "")
	// A message with a callback, created last, shows the sender has
	// looked at the earlier ones once its final callback arrives.
	last := sendTo(t, base, alice, rc.url)
	clk.Advance(time.Hour)
	eventually(t, "the delivered callback", func() bool { return len(rc.taken()) == 3 })
	for _, a := range srv.Callbacks() {
		if a.SID != last {
			t.Errorf("callback for %s, want only %s's", a.SID, last)
		}
	}
	if n := rc.requests(); n != 3 {
		t.Errorf("receiver saw %d requests, want 3", n)
	}
}

// TestSafetyCallbacksRetriedOnlyOnConnectionFailure: like Twilio by
// default, the simulator tries a status callback again only when it got no
// answer; an HTTP 5xx is an answer and is never retried (a receiver that
// relies on a retry after its own 500 would lose the status). Every try of
// one change carries the same I-Twilio-Idempotency-Token; other changes
// carry other tokens.
func TestSafetyCallbacksRetriedOnlyOnConnectionFailure(t *testing.T) {
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL + "/twilio/status"
	refused.Close() // nothing listens there any more

	type try struct {
		status string
		http   int // 0: no answer
	}
	tests := []struct {
		name    string
		fail    int           // 500s before 204s
		drop    int           // connections closed without an answer first
		closed  bool          // call a port where nothing listens
		at      time.Duration // clock offset from the create
		want    []try
		dropped bool // the last attempt gives the change up
	}{
		{name: "a 500 is not retried", fail: 2, at: 200 * time.Millisecond, want: []try{{"sending", 500}}},
		{name: "a 500 does not hold back later changes", fail: 1, at: time.Hour,
			want: []try{{"sending", 500}, {"sent", 204}, {"delivered", 204}}},
		{name: "a connection closed without an answer is retried, later changes wait", drop: 2, at: time.Hour,
			want: []try{{"sending", 0}, {"sending", 0}, {"sending", 204}, {"sent", 204}, {"delivered", 204}}},
		{name: "connection refused: three retries, then dropped", closed: true, at: 200 * time.Millisecond,
			want: []try{{"sending", 0}, {"sending", 0}, {"sending", 0}, {"sending", 0}}, dropped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, clk, base := startCallbacks(t, false)
			rc := newReceiver(t, tt.fail, false)
			rc.drop = tt.drop
			cb := rc.url
			if tt.closed {
				cb = refusedURL
			}
			sid := sendTo(t, base, alice, cb)
			clk.Set(epoch.Add(tt.at))
			eventually(t, "the attempts", func() bool { return len(srv.Callbacks()) >= len(tt.want) })
			settle()
			got := srv.Callbacks()
			if len(got) != len(tt.want) {
				t.Fatalf("%d attempts %+v, want %d", len(got), got, len(tt.want))
			}
			tokens := map[string]string{} // status → token
			for i, a := range got {
				last := i == len(got)-1
				wantErr := a.HTTPStatus != http.StatusNoContent
				if a.Status != tt.want[i].status || a.SID != sid || a.HTTPStatus != tt.want[i].http || (a.Err != "") != wantErr ||
					!a.Time.Equal(epoch.Add(tt.at)) {
					t.Errorf("attempt %d: %+v, want %s HTTP %d at +%v, error %v", i, a, tt.want[i].status, tt.want[i].http, tt.at, wantErr)
				}
				if strings.Contains(a.Err, "dropped after 4 attempts") != (tt.dropped && last) {
					t.Errorf("attempt %d: error %q, dropped should be %v", i, a.Err, tt.dropped && last)
				}
				if a.Token == "" {
					t.Errorf("attempt %d: no idempotency token", i)
				}
				if tok, seen := tokens[a.Status]; seen && tok != a.Token {
					t.Errorf("attempt %d: token %q, an earlier try of %s had %q", i, a.Token, a.Status, tok)
				}
				tokens[a.Status] = a.Token
			}
			distinct := map[string]bool{}
			for _, tok := range tokens {
				distinct[tok] = true
			}
			if len(distinct) != len(tokens) {
				t.Errorf("two status changes share a token: %v", tokens)
			}
			// What the receiver took carries the header the simulator recorded.
			for _, r := range rc.taken() {
				if want := tokens[r.form.Get("MessageStatus")]; r.token != want {
					t.Errorf("%s: receiver saw token %q, want %q", r.form.Get("MessageStatus"), r.token, want)
				}
			}
		})
	}
}

func TestCloseStopsCallbacks(t *testing.T) {
	srv, clk, base := startCallbacks(t, false)
	rc := newReceiver(t, 0, true)
	sendTo(t, base, alice, rc.url)
	clk.Advance(time.Hour)
	eventually(t, "a callback in flight", func() bool { return rc.requests() > 0 })

	closeWithin(t, srv)
	if t.Failed() {
		t.FailNow()
	}
	n := rc.requests()
	if got := srv.Callbacks(); len(got) != 0 {
		t.Errorf("the abandoned callback was recorded: %+v", got)
	}
	settle()
	if rc.requests() != n {
		t.Errorf("callbacks went on after Close: %d requests, then %d", n, rc.requests())
	}
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := twiliotest.New(twiliotest.Options{Callbacks: true}).Close(); err != nil {
		t.Errorf("Close of a server never started: %v", err)
	}
}

func TestStatusCallbackMustBeLoopback(t *testing.T) {
	tests := []struct {
		callback  string
		callbacks bool // Options.Callbacks
		want      int  // HTTP status of the create
	}{
		{"http://127.0.0.1:9/twilio/status", true, 201},
		{"http://127.0.0.2:9/twilio/status", true, 201},
		{"https://[::1]:9/twilio/status", true, 201},
		{"http://LOCALHOST:9/twilio/status?a=b", true, 201},
		{"https://study.example.org/twilio/status", true, 400},
		{"http://10.0.0.1/twilio/status", true, 400},
		{"http://127.0.0.1.example.org/twilio/status", true, 400},
		{"http://localhost.example.org/twilio/status", true, 400},
		{"http://[::ffff:10.0.0.1]/twilio/status", true, 400},
		{"ftp://127.0.0.1/twilio/status", true, 400},
		{"/twilio/status", true, 400},
		// Without callbacks nothing is ever sent: any URL is only stored.
		{"https://study.example.org/twilio/status", false, 201},
	}
	for _, tt := range tests {
		t.Run(tt.callback, func(t *testing.T) {
			clk := sms.NewFakeClock(epoch)
			srv := twiliotest.New(twiliotest.Options{AccountSID: account, AuthToken: token, Clock: clk, Callbacks: tt.callbacks})
			base, err := srv.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer closeWithin(t, srv)
			status, body := do(t, "POST", base+"/2010-04-01/Accounts/"+account+"/Messages.json",
				url.Values{"From": {sender}, "To": {alice}, "Body": {"hi"}, "StatusCallback": {tt.callback}})
			if status != tt.want {
				t.Fatalf("HTTP %d, want %d: %s", status, tt.want, body)
			}
			if status == http.StatusBadRequest {
				var resp struct {
					Message      string
					Code, Status int
				}
				if err := json.Unmarshal(body, &resp); err != nil {
					t.Fatal(err)
				}
				if resp.Code != 21609 || resp.Status != 400 || !strings.Contains(resp.Message, "StatusCallback must be a loopback URL in the simulator") {
					t.Errorf("refusal %s, want code 21609 saying StatusCallback must be a loopback URL", body)
				}
				if len(srv.Creates()) != 0 {
					t.Error("a refused create was stored")
				}
				if a := srv.Attempts(); len(a) != 1 || a[0].Code != 21609 {
					t.Errorf("attempts %+v, want one with code 21609", a)
				}
				return
			}
			var created struct{ SID string }
			if err := json.Unmarshal(body, &created); err != nil {
				t.Fatal(err)
			}
			if m, _ := srv.Message(created.SID); m.StatusCallback != tt.callback {
				t.Errorf("stored StatusCallback %q, want %q", m.StatusCallback, tt.callback)
			}
		})
	}
}
