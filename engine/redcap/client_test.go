package redcap_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/rules/dict"
)

const token = "0123456789ABCDEF0123456789ABCDEF"

const testDict = `field_name,form_name,field_type,field_label,select_choices_or_calculations,text_validation_type_or_show_slider_number
record_id,contact,text,ID,,
mobile,contact,text,Mobile,,phone
race,contact,checkbox,Race,"1, White | -1, Refused",
visit_ok,contact,dropdown,Visit OK,"1, OK | 2, Not OK",
sent_status,contact,text,Status,,
bp_sys,bp,text,Systolic,,integer
`

func testProject(t *testing.T) *redcaptest.Project {
	d, err := dict.ParseCSV(strings.NewReader(testDict))
	if err != nil {
		t.Fatal(err)
	}
	return &redcaptest.Project{Token: token, ID: 7, Title: "Test", Dict: d,
		Repeating: []redcap.Repeating{{Form: "bp"}}, MissingCodes: "UNK, Unknown | NA, Not applicable"}
}

// waits records the pauses a client asked for instead of sleeping.
type waits struct {
	mu sync.Mutex
	d  []time.Duration
}

func (w *waits) wait(ctx context.Context, d time.Duration) error {
	w.mu.Lock()
	w.d = append(w.d, d)
	w.mu.Unlock()
	return ctx.Err()
}

// start serves the simulator and returns a client for it that does not sleep between tries.
func start(t *testing.T, srv *redcaptest.Server, tok string, opts ...redcap.Option) (*redcap.Client, *waits) {
	t.Helper()
	url, err := srv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	opts = append([]redcap.Option{redcap.WithRate(0), redcap.WithRetry(4, 100*time.Millisecond)}, opts...)
	c, err := redcap.New(url, tok, opts...)
	if err != nil {
		t.Fatal(err)
	}
	w := &waits{}
	redcap.SetWait(c, w.wait)
	return c, w
}

func TestExportRecords(t *testing.T) {
	srv := redcaptest.New(testProject(t))
	if err := srv.Load(token, []map[string]string{
		{"record_id": "1", "mobile": "+14155550101", "race____1": "1"},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "120"},
		{"record_id": "2", "mobile": "+14155550102"},
	}); err != nil {
		t.Fatal(err)
	}
	c, _ := start(t, srv, token)

	rows, err := c.ExportRecords(context.Background(), redcap.ExportParams{Fields: []string{"record_id", "race", "bp_sys"}, Records: []string{"1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []redcap.Row{
		{"record_id": "1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "", "race___1": "0", "race____1": "1", "bp_sys": ""},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "race___1": "", "race____1": "", "bp_sys": "120"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Errorf("rows\n got %v\nwant %v", rows, want)
	}
	calls := recordCalls(srv)
	if len(calls) != 1 {
		t.Fatalf("%d record calls", len(calls))
	}
	p := calls[0].Params
	for k, v := range map[string]string{"content": "record", "format": "json", "returnFormat": "json", "type": "flat",
		"rawOrLabel": "raw", "fields[0]": "record_id", "fields[1]": "race", "fields[2]": "bp_sys", "records[0]": "1"} {
		if p.Get(k) != v {
			t.Errorf("param %s = %q, want %q", k, p.Get(k), v)
		}
	}

	_, err = c.ExportRecords(context.Background(), redcap.ExportParams{Fields: []string{"record_id", "nope"}})
	var ae *redcap.APIError
	if !errors.As(err, &ae) || ae.Status != 400 {
		t.Fatalf("unknown field: %v", err)
	}
	if got, want := err.Error(), "REDCap said: The following values in the parameter fields are not valid: 'nope' (HTTP 400)"; got != want {
		t.Errorf("error = %q\nwant %q", got, want)
	}
	_, err = c.ExportRecords(context.Background(), redcap.ExportParams{FilterLogic: "[mobile] <> ''"})
	if !errors.As(err, &ae) || !strings.Contains(ae.Message, "filterLogic") {
		t.Errorf("filterLogic: %v", err)
	}
	// One for record 1; the list of ids then the refused batch for "nope"; the refused list of
	// ids for filterLogic.
	if n := len(recordCalls(srv)); n != 4 {
		t.Errorf("%d record calls; a 400 must not be retried", n)
	}
}

// recordCalls returns the content=record requests the simulator received.
func recordCalls(srv *redcaptest.Server) []redcaptest.Call {
	var out []redcaptest.Call
	for _, c := range srv.Calls() {
		if c.Content == "record" {
			out = append(out, c)
		}
	}
	return out
}

func TestImportRejectsBadRows(t *testing.T) {
	srv := redcaptest.New(testProject(t))
	c, _ := start(t, srv, token, redcap.WithRecordIDField("record_id"))
	rows := []redcap.Row{
		{"record_id": "1", "sent_status": "sent"},
		{"record_id": "2", "visit_ok": "7"},
		{"record_id": "3", "sent_status": "sent", "visit_ok": "1"},
		{"record_id": "4", "nope": "x"},
		{"record_id": "5", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "high"},
	}
	res, err := c.ImportRecords(context.Background(), rows)
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != 2 {
		t.Errorf("Imported = %d, want 2", res.Imported)
	}
	want := []redcap.Rejection{
		{Row: rows[3], Reason: `field "nope" is not in the project`},
		{Row: rows[1], Reason: `visit_ok = "7": The value is not a valid category for visit_ok`},
		{Row: rows[4], Reason: `bp_sys = "high": The value you provided could not be validated because it does not follow the expected format. Please try again.`},
	}
	if !reflect.DeepEqual(res.Rejected, want) {
		t.Errorf("Rejected\n got %v\nwant %v", res.Rejected, want)
	}
	got := srv.Export(token)
	if len(got) != 2 || got[0]["record_id"] != "1" || got[1]["record_id"] != "3" || got[1]["visit_ok"] != "1" {
		t.Errorf("stored = %v", got)
	}
	var statuses []int
	for _, call := range srv.Calls() {
		statuses = append(statuses, call.Status)
	}
	if !reflect.DeepEqual(statuses, []int{400, 400, 200}) {
		t.Errorf("statuses = %v, want an unknown-field refusal, a value refusal, then success", statuses)
	}
}

func TestImportOtherRefusals(t *testing.T) {
	p := testProject(t)
	p.Events = []redcap.Event{{Name: "Baseline", UniqueName: "baseline_arm_1", Arm: 1, ID: 41}}
	p.Repeating = nil
	srv := redcaptest.New(p)
	c, _ := start(t, srv, token, redcap.WithRecordIDField("record_id"))
	ctx := context.Background()
	rows := []redcap.Row{
		{"record_id": "1", "redcap_event_name": "baseline_arm_1", "sent_status": "sent"},
		{"record_id": "2", "redcap_event_name": "visit_9_arm_1", "sent_status": "sent"},
	}
	res, err := c.ImportRecords(ctx, rows)
	want := []redcap.Rejection{{Row: rows[1], Reason: `event "visit_9_arm_1" is not in the project`}}
	if err != nil || res.Imported != 1 || !reflect.DeepEqual(res.Rejected, want) {
		t.Errorf("bad event: %+v, %v", res, err)
	}

	if _, err := c.ImportRecords(ctx, []redcap.Row{{"mobile": "1"}}); err == nil || !strings.Contains(err.Error(), "no record id") {
		t.Errorf("row without id: %v", err)
	}

	// A refusal that names no row fails the batch.
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprint(w, `{"error":"The data being imported is not formatted correctly"}`)
	}))
	defer hs.Close()
	c2, err := redcap.New(hs.URL, token, redcap.WithRate(0), redcap.WithRecordIDField("record_id"))
	if err != nil {
		t.Fatal(err)
	}
	res, err = c2.ImportRecords(ctx, rows)
	if err == nil || err.Error() != "importing 2 rows: REDCap said: The data being imported is not formatted correctly (HTTP 400)" || res.Imported != 0 {
		t.Errorf("unmapped refusal: %+v, %v", res, err)
	}
}

func TestImportBatches(t *testing.T) {
	srv := redcaptest.New(testProject(t))
	c, _ := start(t, srv, token) // no WithRecordIDField: read from the metadata
	var rows []redcap.Row
	for i := range 1201 {
		rows = append(rows, redcap.Row{"record_id": fmt.Sprint(i + 1), "sent_status": "queued"})
	}
	rows = append(rows, redcap.Row{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "1"})
	res, err := c.ImportRecords(context.Background(), rows)
	if err != nil {
		t.Fatal(err)
	}
	// Record 1 is in the first and the last batch, so REDCap counts it twice.
	if res.Imported != 1202 || len(res.Rejected) != 0 {
		t.Errorf("result = %d imported, %d rejected", res.Imported, len(res.Rejected))
	}
	var sizes []int
	for _, call := range srv.Calls() {
		if call.Content == "metadata" {
			continue
		}
		var data []map[string]string
		if err := json.Unmarshal([]byte(call.Params.Get("data")), &data); err != nil {
			t.Fatal(err)
		}
		if call.Action != "import" || call.Params.Get("overwriteBehavior") != "normal" || call.Params.Get("returnContent") != "count" {
			t.Errorf("call %+v", call.Params)
		}
		sizes = append(sizes, len(data))
	}
	if !reflect.DeepEqual(sizes, []int{500, 500, 202}) {
		t.Errorf("batch sizes = %v", sizes)
	}
	if n := len(srv.Export(token)); n != 1202 {
		t.Errorf("%d rows stored", n)
	}
}

func TestImportCountMismatch(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"count": 1}`)
	}))
	defer hs.Close()
	c, err := redcap.New(hs.URL, token, redcap.WithRate(0), redcap.WithRecordIDField("record_id"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.ImportRecords(context.Background(), []redcap.Row{{"record_id": "1"}, {"record_id": "2"}, {"record_id": "2", "x": "y"}})
	if err == nil || !strings.Contains(err.Error(), "reported importing 1 records but the batch held 2 distinct records") {
		t.Errorf("err = %v", err)
	}
	if res.Imported != 1 {
		t.Errorf("Imported = %d", res.Imported)
	}
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		faults    []redcaptest.Fault
		wantErr   string
		wantCalls []int
	}{
		{"two 5xx then success", []redcaptest.Fault{{Status: 500, Times: 2}}, "", []int{500, 500, 200}},
		{"HTML 200 then success", []redcaptest.Fault{{HTML: true}}, "", []int{200, 200}},
		{"always a proxy page", []redcaptest.Fault{{Status: 502, HTML: true, Times: 9}},
			`REDCap said: no error message (answer: "502 Bad Gateway Bad Gateway The proxy server received an invalid response from an upstream server.") (HTTP 502) (gave up after 4 attempts)`,
			[]int{502, 502, 502, 502}},
		{"always HTML with 200", []redcaptest.Fault{{HTML: true, Times: 9}}, "the answer is not JSON", []int{200, 200, 200, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redcaptest.New(testProject(t))
			for _, f := range tt.faults {
				srv.Fault(f)
			}
			c, w := start(t, srv, token)
			_, err := c.Project(context.Background())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			var statuses []int
			for _, call := range srv.Calls() {
				statuses = append(statuses, call.Status)
			}
			if !reflect.DeepEqual(statuses, tt.wantCalls) {
				t.Errorf("statuses = %v, want %v", statuses, tt.wantCalls)
			}
			if len(w.d) != len(tt.wantCalls)-1 {
				t.Fatalf("%d waits for %d calls", len(w.d), len(tt.wantCalls))
			}
			for i, d := range w.d {
				hi := 100 * time.Millisecond << i
				if d < hi/2 || d > hi {
					t.Errorf("wait %d = %v, want within [%v, %v]", i, d, hi/2, hi)
				}
			}
		})
	}
}

func TestNoRetryOnForbidden(t *testing.T) {
	srv := redcaptest.New(testProject(t))
	other := "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
	c, w := start(t, srv, other)
	_, err := c.Metadata(context.Background())
	var ae *redcap.APIError
	if !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("err = %v", err)
	}
	if want := "REDCap said: You do not have permissions to use the API (HTTP 403); the API token was refused: check the project's token and the user's API rights in REDCap"; err.Error() != want {
		t.Errorf("err = %q", err)
	}
	if len(srv.Calls()) != 1 || len(w.d) != 0 {
		t.Errorf("%d calls, %d waits; a 403 must not be retried", len(srv.Calls()), len(w.d))
	}
	if strings.Contains(err.Error(), other) {
		t.Error("the token is in the error")
	}
}

func TestContext(t *testing.T) {
	t.Run("cancelled before the call", func(t *testing.T) {
		srv := redcaptest.New(testProject(t))
		c, _ := start(t, srv, token)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Version(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
		if n := len(srv.Calls()); n != 0 {
			t.Errorf("%d calls made with a cancelled context", n)
		}
	})
	t.Run("cancelled while waiting to retry", func(t *testing.T) {
		srv := redcaptest.New(testProject(t))
		srv.Fault(redcaptest.Fault{Status: 503})
		c, _ := start(t, srv, token)
		ctx, cancel := context.WithCancel(context.Background())
		redcap.SetWait(c, func(context.Context, time.Duration) error { cancel(); return ctx.Err() })
		_, err := c.Version(ctx)
		if !errors.Is(err, context.Canceled) || len(srv.Calls()) != 1 {
			t.Errorf("err = %v after %d calls", err, len(srv.Calls()))
		}
	})
	t.Run("per-request timeout", func(t *testing.T) {
		srv := redcaptest.New(testProject(t))
		srv.Fault(redcaptest.Fault{Delay: 10 * time.Second})
		c, _ := start(t, srv, token, redcap.WithTimeout(50*time.Millisecond))
		v, err := c.Version(context.Background())
		if err != nil || v != redcaptest.Version {
			t.Errorf("Version = %q, %v; the timed-out try should be retried", v, err)
		}
	})
}

func TestStructure(t *testing.T) {
	p := testProject(t)
	p.Events = []redcap.Event{{Name: "Baseline", UniqueName: "baseline_arm_1", Arm: 1, ID: 41}, {Name: "Visit", UniqueName: "visit_arm_1", Arm: 1, ID: 42}}
	p.FormEvents = []redcap.FormEvent{{Arm: 1, Event: "baseline_arm_1", Form: "contact"}, {Arm: 1, Event: "visit_arm_1", Form: "bp"}}
	p.Repeating = []redcap.Repeating{{Event: "visit_arm_1", Form: "bp"}}
	plain := testProject(t)
	plain.Token, plain.Repeating, plain.ID, plain.MissingCodes = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil, 8, ""
	srv := redcaptest.New(p, plain)
	c, _ := start(t, srv, token)
	ctx := context.Background()

	proj, err := c.Project(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (redcap.Project{ID: 7, Title: "Test", Longitudinal: true, HasRepeating: true, MissingCodes: []string{"UNK", "NA"}}); !reflect.DeepEqual(proj, want) {
		t.Errorf("Project = %+v", proj)
	}
	events, err := c.Events(ctx)
	if err != nil || !reflect.DeepEqual(events, p.Events) {
		t.Errorf("Events = %v, %v", events, err)
	}
	fe, err := c.FormEvents(ctx)
	if err != nil || !reflect.DeepEqual(fe, p.FormEvents) {
		t.Errorf("FormEvents = %v, %v", fe, err)
	}
	rep, err := c.Repeating(ctx)
	if err != nil || !reflect.DeepEqual(rep, p.Repeating) {
		t.Errorf("Repeating = %v, %v", rep, err)
	}
	d, err := c.Metadata(ctx)
	if err != nil || !reflect.DeepEqual(d.Fields, p.Dict.Fields) {
		t.Errorf("Metadata = %v, %v", d, err)
	}
	if v, err := c.Version(ctx); err != nil || v != redcaptest.Version {
		t.Errorf("Version = %q, %v", v, err)
	}

	// A classic project without repeating forms: empty lists, not errors.
	c2, _ := start(t, redcaptest.New(plain), plain.Token)
	if ev, err := c2.Events(ctx); err != nil || len(ev) != 0 {
		t.Errorf("classic Events = %v, %v", ev, err)
	}
	if fe, err := c2.FormEvents(ctx); err != nil || len(fe) != 0 {
		t.Errorf("classic FormEvents = %v, %v", fe, err)
	}
	if rep, err := c2.Repeating(ctx); err != nil || rep == nil || len(rep) != 0 {
		t.Errorf("Repeating without any = %#v, %v", rep, err)
	}
	if proj, err := c2.Project(ctx); err != nil || proj.Longitudinal || proj.HasRepeating || proj.MissingCodes != nil {
		t.Errorf("classic Project = %+v, %v", proj, err)
	}
}

// TestTokenNeverLeaks drives every kind of failure and checks neither errors nor debug logs
// contain the token.
func TestTokenNeverLeaks(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		switch r.PostForm.Get("content") {
		case "metadata":
			w.WriteHeader(400)
			fmt.Fprintf(w, `{"error":"token %s is not valid here"}`, r.PostForm.Get("token"))
		case "project":
			w.WriteHeader(500)
			fmt.Fprintf(w, "<html>token=%s</html>", r.PostForm.Get("token"))
		case "event":
			fmt.Fprintf(w, "<html>token=%s</html>", r.PostForm.Get("token"))
		default:
			fmt.Fprint(w, `[]`)
		}
	}))
	defer echo.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String() + "/api/?token=" + token
	ln.Close()

	var logs bytes.Buffer
	logger := logrus.New()
	logger.SetOutput(&logs)
	logger.SetLevel(logrus.DebugLevel)

	ctx := context.Background()
	check := func(name string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", name)
			return
		}
		if strings.Contains(err.Error(), token) || strings.Contains(fmt.Sprintf("%+v", err), token) {
			t.Errorf("%s: the token is in the error: %v", name, err)
		}
	}
	c, err := redcap.New(echo.URL, token, redcap.WithRate(0), redcap.WithRetry(2, 0), redcap.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Metadata(ctx)
	check("400 echoing the token", err)
	if !strings.Contains(err.Error(), "token [token] is not valid here") {
		t.Errorf("redaction: %v", err)
	}
	_, err = c.Project(ctx)
	check("500 HTML echoing the token", err)
	_, err = c.Events(ctx)
	check("200 HTML echoing the token", err)

	c2, err := redcap.New(refused, token, redcap.WithRate(0), redcap.WithRetry(2, 0), redcap.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c2.ExportRecords(ctx, redcap.ExportParams{})
	check("connection refused (a *url.Error holding the URL)", err)
	var ue interface{ Timeout() bool }
	if !errors.As(err, &ue) {
		t.Errorf("the network error is not reachable with errors.As: %v", err)
	}
	_, err = redcap.New("::bad url "+token, token)
	check("bad URL", err)

	if strings.Contains(logs.String(), token) {
		t.Errorf("the token is in the logs:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "content=metadata") || !strings.Contains(logs.String(), "status=400") {
		t.Errorf("debug logs lack content and status:\n%s", logs.String())
	}
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		url, tok string
		opts     []redcap.Option
		want     string
	}{
		{"ftp://x/api/", token, nil, "is not an http(s) URL"},
		{"https:///api/", token, nil, "is not an http(s) URL"},
		{"https://redcap.example.edu/api/", " ", nil, "the API token is empty"},
		{"https://redcap.example.edu/api/", token, []redcap.Option{redcap.WithRetry(0, 0)}, "attempts must be at least 1"},
		{"https://redcap.example.edu/api/", token, []redcap.Option{redcap.WithTimeout(0)}, "must be positive"},
		{"https://redcap.example.edu/api/", token, []redcap.Option{redcap.WithHTTPClient(nil)}, "HTTP client is nil"},
	}
	for _, tt := range tests {
		_, err := redcap.New(tt.url, tt.tok, tt.opts...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q): %v, want %q", tt.url, err, tt.want)
		}
	}
}
