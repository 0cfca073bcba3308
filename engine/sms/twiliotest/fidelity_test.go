package twiliotest_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/templates"
)

const service = "MG0123456789abcdef0123456789abcdef"

// startWith serves a simulator with opts (credentials and a fake clock
// filled in) for the test's lifetime.
func startWith(t *testing.T, opts twiliotest.Options) (*twiliotest.Server, *sms.FakeClock, *openapi.ApiService) {
	t.Helper()
	clk := sms.NewFakeClock(epoch)
	opts.AccountSID, opts.AuthToken, opts.Clock = account, token, clk
	srv := twiliotest.New(opts)
	base, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, clk, api(base)
}

// twilioCode returns the Twilio error code and HTTP status of err, which
// must be twilio-go's *client.TwilioRestError.
func twilioCode(t *testing.T, err error) (int, int) {
	t.Helper()
	var te *client.TwilioRestError
	if !errors.As(err, &te) {
		t.Fatalf("error %v (%T), want a *client.TwilioRestError", err, err)
	}
	if te.MoreInfo == "" || te.Message == "" {
		t.Errorf("error body %+v lacks message or more_info", te)
	}
	return te.Code, te.Status
}

func str(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// TestSafetySegmentsAgreeWithTemplates: the simulator bills the segments
// nudge's templates package counts. It used to keep its own count, which
// split a two-unit character (€) across a part boundary: 152 "a" + "€" +
// 152 "a" is 3 segments, not 2, and a pacing test built on the
// simulator's figure would have let nudge send faster than Twilio allows.
func TestSafetySegmentsAgreeWithTemplates(t *testing.T) {
	_, _, svc := startWith(t, twiliotest.Options{})
	a := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name string
		body string
		want int
	}{
		{"two-unit character on a part boundary", a(152) + "€" + a(152), 3},
		{"short GSM", "Hi Ana, your visit is at 10:00.", 1},
		{"160 GSM", a(160), 1},
		{"161 GSM", a(161), 2},
		{"306 GSM", a(306), 2},
		{"307 GSM", a(307), 3},
		{"80 extension chars = 160 units", strings.Repeat("{", 80), 1},
		{"81 extension chars = 162 units", strings.Repeat("€", 81), 2},
		{"70 UCS-2", strings.Repeat("ó", 70), 1},
		{"71 UCS-2", strings.Repeat("ó", 71), 2},
		{"134 UCS-2", strings.Repeat("ó", 134), 2},
		{"135 UCS-2", strings.Repeat("ó", 135), 3},
		{"curly quote turns GSM into UCS-2", a(100) + "’", 2},
		{"emoji across a UCS-2 part boundary", strings.Repeat("ó", 66) + "😀" + strings.Repeat("ó", 66), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(alice).SetBody(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got, nudge := str(m.NumSegments), templates.Count(tt.body).Count; got != strconv.Itoa(tt.want) || nudge != tt.want {
				t.Errorf("num_segments %s, templates.Count %d, want %d", got, nudge, tt.want)
			}
		})
	}
}

// A create through a Messaging Service answers accepted with no From and 0
// segments; the message is queued shortly after from a number of the
// service's pool, the same number for the same recipient.
func TestMessagingService(t *testing.T) {
	const n1, n2 = "+14155550190", "+14155550191"
	srv, clk, svc := startWith(t, twiliotest.Options{Services: map[string][]string{service: {n1, n2}}})
	bob := "+14155550102"
	create := func(from, to string) (*openapi.ApiV2010Message, error) {
		p := (&openapi.CreateMessageParams{}).SetMessagingServiceSid(service).SetTo(to).SetBody("hi")
		if from != "" {
			p.SetFrom(from)
		}
		return svc.CreateMessage(p)
	}
	m, err := create("", alice)
	if err != nil {
		t.Fatal(err)
	}
	if str(m.Status) != "accepted" || m.From != nil || str(m.NumSegments) != "0" || str(m.MessagingServiceSid) != service {
		t.Errorf("create: status %s from %s segments %s service %s, want accepted, null, 0, %s",
			str(m.Status), str(m.From), str(m.NumSegments), str(m.MessagingServiceSid), service)
	}
	clk.Advance(100 * time.Millisecond)
	got, err := svc.FetchMessage(*m.Sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	if str(got.Status) != "queued" || str(got.From) != n1 || str(got.NumSegments) != "1" {
		t.Errorf("after 100ms: status %s from %s segments %s, want queued from %s, 1", str(got.Status), str(got.From), str(got.NumSegments), n1)
	}
	// Listed by the pool's number once queued.
	if l, err := svc.ListMessage((&openapi.ListMessageParams{}).SetFrom(n1)); err != nil || len(l) != 1 || *l[0].Sid != *m.Sid {
		t.Errorf("list From=%s: %d messages, %v", n1, len(l), err)
	}

	// Sticky sender: alice again gets n1; bob gets the next number; a
	// From in the pool is used as given.
	for _, tt := range []struct{ from, to, want string }{{"", alice, n1}, {"", bob, n2}, {n1, bob, n1}} {
		m, err := create(tt.from, tt.to)
		if err != nil {
			t.Fatal(err)
		}
		if m.From != nil || str(m.Status) != "accepted" {
			t.Errorf("create from %q to %s: from %s status %s, want null and accepted", tt.from, tt.to, str(m.From), str(m.Status))
		}
		if c := srv.Creates(); c[len(c)-1].Sender != tt.want {
			t.Errorf("create from %q to %s: sent from %s, want %s", tt.from, tt.to, c[len(c)-1].Sender, tt.want)
		}
	}

	for _, tt := range []struct {
		name, service, from string
		code                int
	}{
		{"From outside the pool", service, "+14155550199", 21606},
		{"unknown service", "MGffffffffffffffffffffffffffffffff", "", 21705},
	} {
		_, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetMessagingServiceSid(tt.service).SetFrom(tt.from).SetTo(alice).SetBody("hi"))
		if code, status := twilioCode(t, err); code != tt.code || status != 400 {
			t.Errorf("%s: code %d HTTP %d, want %d/400", tt.name, code, status, tt.code)
		}
	}
	srv.SetService(service, nil)
	if _, err := create("", alice); err == nil {
		t.Error("a service without numbers took a message")
	} else if code, _ := twilioCode(t, err); code != 21704 {
		t.Errorf("empty pool: code %d, want 21704", code)
	}
}

// TestSafetyValidityPeriodLapses: a message still queued when its
// validity period lapses is never sent: it fails with 30036, and
// error_message says why. nudge relies on this to let a reminder expire
// rather than arrive hours late.
func TestSafetyValidityPeriodLapses(t *testing.T) {
	srv, clk, svc := startWith(t, twiliotest.Options{})
	slow := "+14155550130"
	srv.SetOutcome(slow, twiliotest.Outcome{QueueDelay: 2 * time.Hour})
	tests := []struct {
		name     string
		validity int // 0: not sent
		at       time.Duration
		status   string
		code     int
	}{
		{"still queued before it lapses", 3600, 59 * time.Minute, "queued", 0},
		{"failed when it lapses", 3600, time.Hour, "failed", 30036},
		{"default validity outlasts the queue", 0, 2*time.Hour + 2*time.Second, "delivered", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.Set(epoch)
			p := (&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(slow).SetBody("hi")
			if tt.validity > 0 {
				p.SetValidityPeriod(tt.validity)
			}
			m, err := svc.CreateMessage(p)
			if err != nil {
				t.Fatal(err)
			}
			clk.Set(epoch.Add(tt.at))
			got, err := svc.FetchMessage(*m.Sid, nil)
			if err != nil {
				t.Fatal(err)
			}
			code := 0
			if got.ErrorCode != nil {
				code = *got.ErrorCode
			}
			if str(got.Status) != tt.status || code != tt.code {
				t.Errorf("status %s code %d, want %s %d", str(got.Status), code, tt.status, tt.code)
			}
			if tt.code != 0 && (str(got.ErrorMessage) != "Validity Period Expired" || got.DateSent != nil || got.Price != nil) {
				t.Errorf("expired: error_message %s date_sent %s price %s, want a message and no send", str(got.ErrorMessage), str(got.DateSent), str(got.Price))
			}
		})
	}
	for _, v := range []int{0, -1, 36001} {
		_, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(alice).SetBody("hi").SetValidityPeriod(v))
		if code, status := twilioCode(t, err); code != 21624 || status != 400 {
			t.Errorf("ValidityPeriod %d: code %d HTTP %d, want 21624/400", v, code, status)
		}
	}
}

// A scheduled message waits as "scheduled" until SendAt and can be
// canceled until then; creates that cannot be scheduled are refused with
// Twilio's codes.
func TestScheduleAndCancel(t *testing.T) {
	_, clk, svc := startWith(t, twiliotest.Options{Services: map[string][]string{service: {sender}}})
	schedule := func(at time.Duration) (*openapi.ApiV2010Message, error) {
		return svc.CreateMessage((&openapi.CreateMessageParams{}).SetMessagingServiceSid(service).SetTo(alice).SetBody("hi").
			SetScheduleType("fixed").SetSendAt(epoch.Add(at)))
	}
	kept, err := schedule(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := schedule(time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if str(kept.Status) != "scheduled" || kept.From != nil || str(kept.NumSegments) != "0" {
		t.Errorf("create: status %s from %s segments %s, want scheduled, null, 0", str(kept.Status), str(kept.From), str(kept.NumSegments))
	}
	clk.Advance(30 * time.Minute)
	c, err := svc.UpdateMessage(*dropped.Sid, (&openapi.UpdateMessageParams{}).SetStatus("canceled"))
	if err != nil {
		t.Fatal(err)
	}
	if str(c.Status) != "canceled" {
		t.Errorf("cancel answered status %s", str(c.Status))
	}
	clk.Set(epoch.Add(time.Hour + 2*time.Second))
	for sid, want := range map[string]string{*kept.Sid: "delivered", *dropped.Sid: "canceled"} {
		got, err := svc.FetchMessage(sid, nil)
		if err != nil {
			t.Fatal(err)
		}
		if str(got.Status) != want {
			t.Errorf("%s at SendAt+2s: %s, want %s", sid, str(got.Status), want)
		}
	}
	_, err = svc.UpdateMessage(*kept.Sid, (&openapi.UpdateMessageParams{}).SetStatus("canceled"))
	if code, status := twilioCode(t, err); code != 30409 || status != 400 {
		t.Errorf("cancel after sending: code %d HTTP %d, want 30409/400", code, status)
	}

	clk.Set(epoch)
	for _, tt := range []struct {
		name   string
		params *openapi.CreateMessageParams
		code   int
	}{
		{"without a service", (&openapi.CreateMessageParams{}).SetFrom(sender).SetScheduleType("fixed").SetSendAt(epoch.Add(time.Hour)), 35118},
		{"too soon", (&openapi.CreateMessageParams{}).SetMessagingServiceSid(service).SetScheduleType("fixed").SetSendAt(epoch.Add(time.Minute)), 35114},
		{"too late", (&openapi.CreateMessageParams{}).SetMessagingServiceSid(service).SetScheduleType("fixed").SetSendAt(epoch.Add(36 * 24 * time.Hour)), 35114},
		{"no SendAt", (&openapi.CreateMessageParams{}).SetMessagingServiceSid(service).SetScheduleType("fixed"), 35111},
		{"another ScheduleType", (&openapi.CreateMessageParams{}).SetMessagingServiceSid(service).SetScheduleType("optimize").SetSendAt(epoch.Add(time.Hour)), 35126},
	} {
		_, err := svc.CreateMessage(tt.params.SetTo(alice).SetBody("hi"))
		if code, _ := twilioCode(t, err); code != tt.code {
			t.Errorf("%s: code %d, want %d", tt.name, code, tt.code)
		}
	}
}

// Redaction, delete and the media list, through twilio-go.
func TestRedactDeleteAndMedia(t *testing.T) {
	_, clk, svc := startWith(t, twiliotest.Options{})
	m, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(alice).SetBody("Hi Ana"))
	if err != nil {
		t.Fatal(err)
	}
	media, err := svc.ListMedia(*m.Sid, nil)
	if err != nil || len(media) != 0 {
		t.Errorf("media list: %d items, %v; want an empty list", len(media), err)
	}
	if _, err := svc.ListMedia("SM00000000000000000000000000000000", nil); err == nil {
		t.Error("media list of an unknown message: no error")
	} else if code, status := twilioCode(t, err); code != 20404 || status != 404 {
		t.Errorf("media list of an unknown message: %d/%d, want 20404/404", code, status)
	}

	for _, p := range []*openapi.UpdateMessageParams{
		(&openapi.UpdateMessageParams{}).SetBody("other text"),
		(&openapi.UpdateMessageParams{}).SetStatus("sent"),
		(&openapi.UpdateMessageParams{}).SetBody("").SetStatus("canceled"),
		{},
	} {
		_, err := svc.UpdateMessage(*m.Sid, p)
		if code, status := twilioCode(t, err); code != 30400 || status != 400 {
			t.Errorf("update %+v: code %d HTTP %d, want 30400/400", p, code, status)
		}
	}
	// Redaction is for post-flight messages only.
	_, err = svc.UpdateMessage(*m.Sid, (&openapi.UpdateMessageParams{}).SetBody(""))
	if code, status := twilioCode(t, err); code != 20009 || status != 409 {
		t.Errorf("redact while queued: code %d HTTP %d, want 20009/409", code, status)
	}
	if got, _ := svc.FetchMessage(*m.Sid, nil); got == nil || str(got.Body) != "Hi Ana" {
		t.Errorf("a refused redaction changed the body: %v", got)
	}

	err = svc.DeleteMessage(*m.Sid, nil)
	if code, status := twilioCode(t, err); code != 20009 || status != 409 {
		t.Errorf("delete while queued: code %d HTTP %d, want 20009/409", code, status)
	}
	clk.Advance(time.Hour)
	r, err := svc.UpdateMessage(*m.Sid, (&openapi.UpdateMessageParams{}).SetBody(""))
	if err != nil {
		t.Fatalf("redact after delivery: %v", err)
	}
	got, _ := svc.FetchMessage(*m.Sid, nil)
	if str(r.Body) != "" || got == nil || str(got.Body) != "" || str(got.Status) != "delivered" {
		t.Errorf("after redaction: answer body %q, fetched %v; want the body gone, the status kept", str(r.Body), got)
	}
	if list, err := svc.ListMessage((&openapi.ListMessageParams{}).SetTo(alice)); err != nil || len(list) != 1 || str(list[0].Body) != "" {
		t.Errorf("list after redaction: %v, %v; want the body gone there too", list, err)
	}
	if err := svc.DeleteMessage(*m.Sid, nil); err != nil {
		t.Fatalf("delete after delivery: %v", err)
	}
	if _, err := svc.FetchMessage(*m.Sid, nil); err == nil {
		t.Error("fetch after delete: no error")
	} else if code, _ := twilioCode(t, err); code != 20404 {
		t.Errorf("fetch after delete: code %d, want 20404", code)
	}
	if l, err := svc.ListMessage((&openapi.ListMessageParams{}).SetTo(alice)); err != nil || len(l) != 0 {
		t.Errorf("list after delete: %d messages, %v", len(l), err)
	}
}

// error_message is filled whenever error_code is, including for codes the
// simulator has no wording for and statuses nudge does not know.
func TestErrorMessageWithErrorCode(t *testing.T) {
	srv, clk, svc := startWith(t, twiliotest.Options{})
	tests := []struct {
		to      string
		outcome twiliotest.Outcome
		status  string
		message string
	}{
		{"+14155550141", twiliotest.Outcome{Final: "undelivered", ErrorCode: 30003}, "undelivered", "Unreachable destination handset"},
		{"+14155550142", twiliotest.Outcome{Final: "failed", ErrorCode: 30034}, "failed", "US A2P 10DLC - Message from an Unregistered Number"},
		{"+14155550143", twiliotest.Outcome{Final: "partially_delivered", ErrorCode: 30099}, "partially_delivered", "Error 30099"},
		{"+14155550144", twiliotest.Outcome{}, "delivered", ""},
	}
	for _, tt := range tests {
		srv.SetOutcome(tt.to, tt.outcome)
		m, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(tt.to).SetBody("hi"))
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Hour)
		got, err := svc.FetchMessage(*m.Sid, nil)
		if err != nil {
			t.Fatal(err)
		}
		if str(got.Status) != tt.status || (got.ErrorCode != nil) != (tt.message != "") || (tt.message != "" && str(got.ErrorMessage) != tt.message) ||
			(tt.message == "" && got.ErrorMessage != nil) {
			t.Errorf("%s: status %s error_code %v error_message %s, want %s %q", tt.to, str(got.Status), got.ErrorCode, str(got.ErrorMessage), tt.status, tt.message)
		}
	}
}

// A fault with For refuses every create until it is over, then creates
// go through; AnyNumber's outcome applies to numbers without their own.
func TestStormAndDefaultOutcome(t *testing.T) {
	srv, clk, svc := startWith(t, twiliotest.Options{})
	srv.Fault(twiliotest.Fault{Status: 503, For: time.Minute})
	send := func() error {
		_, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo(alice).SetBody("hi"))
		return err
	}
	for i := range 5 {
		if code, status := twilioCode(t, send()); code != 20503 || status != 503 {
			t.Fatalf("create %d in the storm: %d/%d, want 20503/503", i, code, status)
		}
		clk.Advance(10 * time.Second)
	}
	clk.Advance(10 * time.Second) // one minute after the fault was queued
	if err := send(); err != nil {
		t.Fatalf("after the storm: %v", err)
	}
	srv.SetOutcome(twiliotest.AnyNumber, twiliotest.Outcome{CreateError: 21612})
	srv.SetOutcome("+14155550150", twiliotest.Outcome{})
	if code, _ := twilioCode(t, send()); code != 21612 {
		t.Errorf("AnyNumber outcome: code %d, want 21612", code)
	}
	if _, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo("+14155550150").SetBody("hi")); err != nil {
		t.Errorf("a number with its own outcome: %v", err)
	}
	if n := len(srv.Attempts()); n != 8 {
		t.Errorf("%d attempts, want 8", n)
	}
}

// The demo's twilio.json is a valid setup file; errors name the place.
func TestParseSetup(t *testing.T) {
	setup, err := twiliotest.LoadSetup(filepath.Join("..", "..", "..", "testdata", "demo", "twilio.json"))
	if err != nil {
		t.Fatal(err)
	}
	if o := setup.Outcomes["+13125550112"]; o.Final != "undelivered" || o.ErrorCode != 30003 {
		t.Errorf("demo outcome %+v", o)
	}
	good := `{"outcomes": {"*": {"queue_delay": "1m"}}, "faults": [{"status": 429, "for": "30s", "retry_after": "5"}, {"delay": "15s", "land": "1m"}],
	 "services": {"` + service + `": ["+14155550100", "12345"]}}`
	setup, err = twiliotest.ParseSetup([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if setup.Outcomes["*"].QueueDelay != time.Minute || len(setup.Faults) != 2 || setup.Faults[0].For != 30*time.Second ||
		setup.Faults[1].Land != time.Minute || len(setup.Services[service]) != 2 {
		t.Errorf("parsed %+v", setup)
	}
	dir := t.TempDir()
	for _, tt := range []struct{ name, json, want string }{
		{"syntax", "{\n  \"outcomes\": {,}\n}", "bad.json:2:16: "},
		{"type", "{\n\"faults\": [{\"status\": \"503\"}]}", "bad.json:2:"},
		{"unknown key", `{"outcome": {}}`, `bad.json: json: unknown field "outcome"`},
		{"bad duration", `{"faults": [{"for": "soon"}]}`, `"soon" is not a duration`},
		{"bad status", `{"faults": [{"status": 200}]}`, "faults[0]: fault status 200"},
		{"bad number", `{"outcomes": {"4155550100": {}}}`, `"4155550100" is not an E.164 number`},
		{"bad service", `{"services": {"MG1": []}}`, `"MG1" is not a Messaging Service SID`},
	} {
		path := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(path, []byte(tt.json), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := twiliotest.LoadSetup(path)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
}

// The control API changes the running simulator and refuses what it does
// not understand; it needs the account's credentials like every request.
func TestControlAPI(t *testing.T) {
	srv, _, base := start(t)
	tests := []struct {
		method, path, body string
		want               int
	}{
		{"POST", "/_sim/outcome", `{"to": "+14155550160", "create_error": 21610}`, 200},
		{"POST", "/_sim/outcome", `{"to": "*", "final": "partially_delivered"}`, 200},
		{"POST", "/_sim/service", `{"sid": "` + service + `", "numbers": ["+14155550100"]}`, 200},
		{"POST", "/_sim/fault", `{"status": 429, "times": 2, "retry_after": "3"}`, 200},
		{"GET", "/_sim/state", "", 200},
		{"POST", "/_sim/outcome", `{"to": "alice"}`, 400},
		{"POST", "/_sim/fault", `{"status": 200}`, 400},
		{"POST", "/_sim/fault", `{"stauts": 503}`, 400},
		{"POST", "/_sim/service", `{"sid": "MG1"}`, 400},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, base+tt.path, strings.NewReader(tt.body))
		req.SetBasicAuth(account, token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s %s: HTTP %d, want %d", tt.method, tt.path, tt.body, resp.StatusCode, tt.want)
		}
	}
	st := srv.State()
	if st.Faults != 1 {
		t.Errorf("%d faults queued, want 1", st.Faults)
	}
	status, _ := do(t, "DELETE", base+"/_sim/fault", nil)
	if status != 200 || srv.State().Faults != 0 {
		t.Errorf("DELETE /_sim/fault: HTTP %d, %d faults left", status, srv.State().Faults)
	}
	// Without credentials: 401.
	resp, err := http.Post(base+"/_sim/fault", "application/json", strings.NewReader(`{"status": 503}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || srv.State().Faults != 0 {
		t.Errorf("unauthenticated control: HTTP %d, %d faults", resp.StatusCode, srv.State().Faults)
	}
	svc := api(base)
	if _, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetFrom(sender).SetTo("+14155550160").SetBody("hi")); err == nil {
		t.Error("the outcome set through the control API did not apply")
	}
	m, err := svc.CreateMessage((&openapi.CreateMessageParams{}).SetMessagingServiceSid(service).SetTo(alice).SetBody("hi"))
	if err != nil || str(m.Status) != "accepted" {
		t.Errorf("create through the service set by the control API: %v", err)
	}
}
