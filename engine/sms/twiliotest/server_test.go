package twiliotest_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	account = "ACtest"
	token   = "token123"
	sender  = "+14155550100"
	alice   = "+14155550101"
)

var epoch = time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)

// start serves a simulator on a fake clock for the test's lifetime.
func start(t *testing.T) (*twiliotest.Server, *sms.FakeClock, string) {
	t.Helper()
	clk := sms.NewFakeClock(epoch)
	srv := twiliotest.New(twiliotest.Options{AccountSID: account, AuthToken: token, Clock: clk})
	base, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, clk, base
}

// do sends one raw request with the test credentials and returns the
// status and body.
func do(t *testing.T, method, u string, form url.Values) (int, []byte) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(account, token)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// golden compares got, indented, with testdata/name.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, got, "", "  "); err != nil {
		t.Fatalf("%s: response is not JSON: %v\n%s", name, err, got)
	}
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from the golden file:\n%s", name, buf.Bytes())
	}
}

func TestWireShapes(t *testing.T) {
	srv, clk, base := start(t)
	msgs := base + "/2010-04-01/Accounts/" + account + "/Messages"

	status, body := do(t, "POST", msgs+".json", url.Values{"From": {sender}, "To": {alice}, "Body": {"Hi Ana"}})
	if status != http.StatusCreated {
		t.Fatalf("create: HTTP %d %s", status, body)
	}
	golden(t, "create.json", body)
	var created struct{ SID string }
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}

	clk.Advance(2 * time.Second)
	status, body = do(t, "GET", msgs+"/"+created.SID+".json", nil)
	if status != http.StatusOK {
		t.Fatalf("fetch: HTTP %d %s", status, body)
	}
	golden(t, "fetch-delivered.json", body)

	status, body = do(t, "GET", msgs+".json?To="+url.QueryEscape(alice), nil)
	if status != http.StatusOK {
		t.Fatalf("list: HTTP %d %s", status, body)
	}
	golden(t, "list.json", body)

	status, body = do(t, "GET", msgs+"/SM00000000000000000000000000000000.json", nil)
	if status != http.StatusNotFound {
		t.Fatalf("fetch unknown: HTTP %d", status)
	}
	golden(t, "not-found.json", body)

	status, body = do(t, "POST", msgs+".json", url.Values{"From": {sender}, "To": {"555-0101"}, "Body": {"Hi"}})
	if status != http.StatusBadRequest {
		t.Fatalf("invalid To: HTTP %d", status)
	}
	golden(t, "invalid-to.json", body)

	status, body = do(t, "POST", msgs+".json", url.Values{"MessagingServiceSid": {"MG0123456789abcdef0123456789abcdef"}, "To": {alice}, "Body": {"Hi Ana"}})
	if status != http.StatusCreated {
		t.Fatalf("create through a service: HTTP %d %s", status, body)
	}
	golden(t, "create-service.json", body)

	status, body = do(t, "POST", msgs+".json", url.Values{"From": {sender}, "To": {alice}, "Body": {"Hi Ana"}, "ValidityPeriod": {"0"}})
	if status != http.StatusBadRequest {
		t.Fatalf("ValidityPeriod 0: HTTP %d", status)
	}
	golden(t, "invalid-validity.json", body)

	srv.SetOutcome("+14155550103", twiliotest.Outcome{Final: "undelivered", ErrorCode: 30003})
	status, body = do(t, "POST", msgs+".json", url.Values{"From": {sender}, "To": {"+14155550103"}, "Body": {"Hi Ana"}})
	if status != http.StatusCreated {
		t.Fatalf("create: HTTP %d %s", status, body)
	}
	if err := json.Unmarshal(body, &created); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	status, body = do(t, "GET", msgs+"/"+created.SID+".json", nil)
	if status != http.StatusOK {
		t.Fatalf("fetch: HTTP %d %s", status, body)
	}
	golden(t, "fetch-undelivered.json", body)

	status, body = do(t, "GET", msgs+"/"+created.SID+"/Media.json", nil)
	if status != http.StatusOK {
		t.Fatalf("media: HTTP %d %s", status, body)
	}
	golden(t, "media-empty.json", body)

	for _, path := range []string{"/2010-04-01/Accounts/" + account + "/Calls.json", "/"} {
		status, body = do(t, "GET", base+path, nil)
		var e struct{ Code int }
		if err := json.Unmarshal(body, &e); status != http.StatusNotFound || err != nil || e.Code != 20404 {
			t.Errorf("GET %s: HTTP %d %s, want 404 with code 20404", path, status, body)
		}
	}
}

func TestAuth(t *testing.T) {
	_, _, base := start(t)
	u := base + "/2010-04-01/Accounts/" + account + "/Messages.json"
	tests := []struct {
		name       string
		user, pass string
		basic      bool
	}{
		{"no credentials", "", "", false},
		{"wrong token", account, "wrong", true},
		{"wrong account", "ACother", token, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", u, nil)
			if tt.basic {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct{ Code, Status int }
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 401 || e.Code != 20003 || e.Status != 401 {
				t.Errorf("got HTTP %d code %d status %d, want 401/20003/401", resp.StatusCode, e.Code, e.Status)
			}
		})
	}
	// The right credentials but another account in the path.
	status, _ := do(t, "GET", base+"/2010-04-01/Accounts/ACother/Messages.json", nil)
	if status != http.StatusNotFound {
		t.Errorf("other account's path: HTTP %d, want 404", status)
	}
}

// api returns twilio-go's Messages API pointed at base.
func api(base string) *openapi.ApiService {
	c := &client.Client{
		Credentials: client.NewCredentials(account, token),
		HTTPClient:  &http.Client{Timeout: 5 * time.Second, Transport: rewrite{base: base}},
	}
	c.SetAccountSid(account)
	return openapi.NewApiServiceWithClient(c)
}

// rewrite sends api.twilio.com requests to the simulator.
type rewrite struct{ base string }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	u, _ := url.Parse(r.base)
	out := req.Clone(req.Context())
	out.URL.Scheme, out.URL.Host, out.Host = u.Scheme, u.Host, ""
	return http.DefaultTransport.RoundTrip(out)
}

func TestListPagingAndFilters(t *testing.T) {
	srv, clk, base := start(t)
	svc := api(base)
	bob := "+14155550102"
	// 7 messages to alice one minute apart, 2 to bob in between.
	for i := range 7 {
		if _, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(alice).SetBody("a")); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			if _, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(bob).SetBody("b")); err != nil {
				t.Fatal(err)
			}
		}
		clk.Advance(time.Minute)
	}
	var aliceSIDs []string // newest first
	for _, c := range srv.Creates() {
		if c.To == alice {
			aliceSIDs = append([]string{c.SID}, aliceSIDs...)
		}
	}

	tests := []struct {
		name   string
		params *openapi.ListMessageParams
		want   []string
	}{
		{"all of alice's over pages of 2", (&openapi.ListMessageParams{}).SetTo(alice).SetPageSize(2), aliceSIDs},
		{"limit stops early", (&openapi.ListMessageParams{}).SetTo(alice).SetPageSize(2).SetLimit(3), aliceSIDs[:3]},
		{"sent at or after minute 4", (&openapi.ListMessageParams{}).SetTo(alice).SetDateSentAfter(epoch.Add(4 * time.Minute)), aliceSIDs[:3]},
		{"sent at or before minute 1", (&openapi.ListMessageParams{}).SetTo(alice).SetDateSentBefore(epoch.Add(time.Minute + time.Second)), aliceSIDs[5:]},
		{"from another sender", (&openapi.ListMessageParams{}).SetFrom("+14155550199"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := svc.ListMessage(tt.params)
			if err != nil {
				t.Fatal(err)
			}
			var sids []string
			for _, m := range got {
				sids = append(sids, *m.Sid)
			}
			if strings.Join(sids, ",") != strings.Join(tt.want, ",") {
				t.Errorf("got %v\nwant %v", sids, tt.want)
			}
		})
	}
}

func TestStatusTimeline(t *testing.T) {
	srv, clk, base := start(t)
	svc := api(base)
	srv.SetOutcome("+14155550103", twiliotest.Outcome{Final: "undelivered", ErrorCode: 30003})
	srv.SetOutcome("+14155550104", twiliotest.Outcome{Final: "failed", ErrorCode: 30034})
	type step struct {
		at     time.Duration
		status string
		code   int
		sent   bool
	}
	tests := []struct {
		to    string
		steps []step
	}{
		{alice, []step{{0, "queued", 0, false}, {200 * time.Millisecond, "sending", 0, false}, {500 * time.Millisecond, "sent", 0, true}, {1500 * time.Millisecond, "delivered", 0, true}}},
		{"+14155550103", []step{{100 * time.Millisecond, "queued", 0, false}, {600 * time.Millisecond, "sent", 0, true}, {time.Hour, "undelivered", 30003, true}}},
		{"+14155550104", []step{{300 * time.Millisecond, "sending", 0, false}, {1000 * time.Millisecond, "sending", 0, false}, {1500 * time.Millisecond, "failed", 30034, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.to, func(t *testing.T) {
			clk.Set(epoch)
			m, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(tt.to).SetBody("hello"))
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range tt.steps {
				clk.Set(epoch.Add(st.at))
				got, err := svc.FetchMessage(*m.Sid, nil)
				if err != nil {
					t.Fatal(err)
				}
				code := 0
				if got.ErrorCode != nil {
					code = *got.ErrorCode
				}
				if *got.Status != st.status || code != st.code || (got.DateSent != nil) != st.sent {
					t.Errorf("at %v: status %s code %d date_sent %v, want %s %d sent=%v", st.at, *got.Status, code, got.DateSent, st.status, st.code, st.sent)
				}
				if snap, _ := srv.Message(*m.Sid); snap.Status != st.status {
					t.Errorf("at %v: Message() says %s, want %s", st.at, snap.Status, st.status)
				}
			}
		})
	}
}

func TestCreateErrorsAndFaults(t *testing.T) {
	srv, _, base := start(t)
	msgs := base + "/2010-04-01/Accounts/" + account + "/Messages.json"
	srv.SetOutcome("+14155550110", twiliotest.Outcome{CreateError: 21610})
	ok := url.Values{"From": {sender}, "To": {alice}, "Body": {"hi"}}
	tests := []struct {
		name       string
		fault      *twiliotest.Fault
		form       url.Values
		wantStatus int
		wantCode   int // 0: expect a non-JSON body
	}{
		{"missing To", nil, url.Values{"From": {sender}, "Body": {"hi"}}, 400, 21604},
		{"missing From", nil, url.Values{"To": {alice}, "Body": {"hi"}}, 400, 21603},
		{"missing Body", nil, url.Values{"From": {sender}, "To": {alice}}, 400, 21602},
		{"To not E.164", nil, url.Values{"From": {sender}, "To": {"4155550101"}, "Body": {"hi"}}, 400, 21211},
		{"body over 1600", nil, url.Values{"From": {sender}, "To": {alice}, "Body": {strings.Repeat("x", 1601)}}, 400, 21617},
		{"opted out", nil, url.Values{"From": {sender}, "To": {"+14155550110"}, "Body": {"hi"}}, 400, 21610},
		{"429", &twiliotest.Fault{Status: 429}, ok, 429, 20429},
		{"503", &twiliotest.Fault{Status: 503}, ok, 503, 20503},
		{"HTML 502", &twiliotest.Fault{Status: 502, HTML: true}, ok, 502, 0},
		{"fault used up", nil, ok, 201, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.fault != nil {
				srv.Fault(*tt.fault)
			}
			status, body := do(t, "POST", msgs, tt.form)
			if status != tt.wantStatus {
				t.Fatalf("HTTP %d, want %d: %s", status, tt.wantStatus, body)
			}
			var e struct{ Code, Status int }
			err := json.Unmarshal(body, &e)
			switch {
			case tt.wantCode == 0 && err == nil:
				t.Errorf("body is JSON, want HTML: %s", body)
			case tt.wantCode > 0 && (err != nil || e.Code != tt.wantCode || e.Status != tt.wantStatus):
				t.Errorf("body %s, want code %d", body, tt.wantCode)
			}
		})
	}
	if n, m := len(srv.Creates()), len(srv.Attempts()); n != 1 || m != len(tests) {
		t.Errorf("%d creates and %d attempts, want 1 and %d", n, m, len(tests))
	}
}

func TestFaultTimes(t *testing.T) {
	srv, _, base := start(t)
	msgs := base + "/2010-04-01/Accounts/" + account + "/Messages.json"
	srv.Fault(twiliotest.Fault{Status: 500, Times: 2})
	srv.Fault(twiliotest.Fault{Status: 429})
	form := url.Values{"From": {sender}, "To": {alice}, "Body": {"hi"}}
	var got []int
	for range 4 {
		status, _ := do(t, "POST", msgs, form)
		got = append(got, status)
	}
	want := []int{500, 500, 429, 201}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("statuses %v, want %v", got, want)
		}
	}
}
