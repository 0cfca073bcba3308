package redcap_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
)

// Tokens of API users with restricted data export rights in rightsProject.
const (
	noIDToken   = "11111111111111111111111111111111"
	deIDToken   = "22222222222222222222222222222222"
	noBPToken   = "33333333333333333333333333333333"
	noFormToken = "44444444444444444444444444444444"
)

func rightsProject(t *testing.T) *redcaptest.Server {
	t.Helper()
	p := testProject(t)
	p.Identifiers = []string{"mobile"}
	p.Users = map[string]redcaptest.Rights{
		noIDToken:   {Default: redcaptest.RemoveIdentifiers},
		deIDToken:   {Default: redcaptest.DeIdentified},
		noBPToken:   {Forms: map[string]redcaptest.ExportRight{"bp": redcaptest.NoAccess}},
		noFormToken: {Forms: map[string]redcaptest.ExportRight{"contact": redcaptest.NoAccess}},
	}
	srv := redcaptest.New(p)
	if err := srv.Load(token, []map[string]string{
		{"record_id": "1", "mobile": "+14155550101", "race___1": "1", "visit_ok": "1"},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "120"},
		{"record_id": "2", "mobile": "+14155550102"},
	}); err != nil {
		t.Fatal(err)
	}
	return srv
}

// REDCap leaves out, with HTTP 200, the columns the token's user may not export. An export
// that lacks a requested column must fail and say why, never pass as blanks ("no phone
// number" for everyone).
func TestSafetyExportRightsDropColumns(t *testing.T) {
	fields := []string{"record_id", "mobile", "race", "visit_ok", "bp_sys", "bp_complete"}
	tests := []struct {
		name, tok string
		records   []string
		wantIs    error
		wantMsg   []string
	}{
		{"full data set", token, nil, nil, nil},
		{"remove identifiers", noIDToken, nil, redcap.ErrMissingColumns,
			[]string{"left out mobile, which nudge asked for (form contact)", "Remove All Identifier Fields", "Full Data Set"}},
		{"no access to a form", noBPToken, nil, redcap.ErrMissingColumns,
			[]string{"left out bp_sys, bp_complete, which nudge asked for (form bp)", "No Access"}},
		{"no access to the form of a checkbox", noFormToken, nil, redcap.ErrMissingColumns,
			[]string{"left out mobile, race, visit_ok, which nudge asked for (form contact)"}},
		{"de-identified: hashed record ids", deIDToken, nil, redcap.ErrMissingRecords,
			[]string{"REDCap lists 2 records that its export left out", "look hashed", "De-Identified", "Full Data Set"}},
		{"de-identified, records named", deIDToken, []string{"1", "2"}, redcap.ErrMissingRecords,
			[]string{"records that were not asked for", "look hashed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := start(t, rightsProject(t), tt.tok)
			rows, err := c.ExportRecords(context.Background(), redcap.ExportParams{Fields: fields, Records: tt.records})
			if tt.wantIs == nil {
				if err != nil || len(rows) != 3 || rows[0]["mobile"] != "+14155550101" || rows[0]["race___1"] != "1" {
					t.Fatalf("full rights: %v, %v", rows, err)
				}
				return
			}
			if !errors.Is(err, tt.wantIs) {
				t.Fatalf("err = %v (rows %d), want %v", err, len(rows), tt.wantIs)
			}
			for _, m := range tt.wantMsg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error lacks %q:\n%v", m, err)
				}
			}
			if strings.Contains(err.Error(), "+1415") || strings.Contains(err.Error(), tt.tok) {
				t.Errorf("the error shows a value or the token: %v", err)
			}
		})
	}
}

// With no rows there are no columns to check: an empty project (or an export whose records
// were all deleted meanwhile) is accepted as empty, whatever the user's rights.
func TestExportEmptyProject(t *testing.T) {
	for _, tok := range []string{token, noIDToken} {
		p := testProject(t)
		p.Identifiers = []string{"mobile"}
		p.Users = map[string]redcaptest.Rights{noIDToken: {Default: redcaptest.RemoveIdentifiers}}
		c, _ := start(t, redcaptest.New(p), tok)
		rows, err := c.ExportRecords(context.Background(), redcap.ExportParams{Fields: []string{"record_id", "mobile"}})
		if err != nil || rows == nil || len(rows) != 0 {
			t.Errorf("empty project: %#v, %v", rows, err)
		}
	}
}

// A big project is exported as a list of record ids, then the records in batches by id.
func TestSafetyExportBatches(t *testing.T) {
	srv := redcaptest.New(testProject(t))
	var seed []map[string]string
	for i := range 1201 {
		seed = append(seed, map[string]string{"record_id": fmt.Sprint(i + 1), "mobile": fmt.Sprintf("+1415555%04d", i)})
	}
	if err := srv.Load(token, seed); err != nil {
		t.Fatal(err)
	}
	c, _ := start(t, srv, token, redcap.WithBatchSize(500))
	rows, err := c.ExportRecords(context.Background(), redcap.ExportParams{Fields: []string{"mobile"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1201 || rows[1200]["record_id"] != "1201" || rows[1200]["mobile"] != "+14155551200" {
		t.Fatalf("%d rows; last %v", len(rows), rows[len(rows)-1])
	}
	calls := recordCalls(srv)
	var sizes []int
	for i, call := range calls {
		n := 0
		for k := range call.Params {
			if strings.HasPrefix(k, "records[") {
				n++
			}
		}
		sizes = append(sizes, n)
		wantFields := "record_id,mobile"
		if i == 0 {
			wantFields = "record_id"
		}
		if got := call.Params.Get("fields[0]") + "," + call.Params.Get("fields[1]"); strings.TrimSuffix(got, ",") != wantFields {
			t.Errorf("call %d fields = %s, want %s", i, got, wantFields)
		}
	}
	if !reflect.DeepEqual(sizes, []int{0, 500, 500, 201}) {
		t.Errorf("records per call = %v, want the id list then 500, 500, 201", sizes)
	}
}

// A record deleted between the list of ids and its batch is left out; a record REDCap still
// lists but did not export fails the export.
func TestSafetyExportRecordGoesMissing(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(srv *redcaptest.Server, form url.Values)
		wantErr string
		wantIDs []string
	}{
		{"deleted meanwhile", func(srv *redcaptest.Server, form url.Values) {
			if form.Get("records[1]") == "2" {
				srv.Delete(token, "2")
			}
		}, "", []string{"1", "3"}},
		{"lost by the server", func(srv *redcaptest.Server, form url.Values) {
			if form.Get("records[1]") == "2" {
				form.Set("records[1]", "1") // the batch answer lacks record 2
			}
		}, "REDCap lists 1 records that its export left out (2)", nil},
		{"a batch answered with nothing", func(srv *redcaptest.Server, form url.Values) {
			if form.Has("records[0]") {
				form.Set("records[0]", "99")
				form.Set("records[1]", "99")
				form.Set("records[2]", "99")
			}
		}, "REDCap lists 3 records that its export left out (1, 2, 3)", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redcaptest.New(testProject(t))
			if err := srv.Load(token, []map[string]string{{"record_id": "1"}, {"record_id": "2"}, {"record_id": "3"}}); err != nil {
				t.Fatal(err)
			}
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				r.ParseForm()
				if r.PostForm.Get("content") == "record" {
					tt.tamper(srv, r.PostForm)
				}
				r.Body, r.ContentLength = http.NoBody, 0
				body := r.PostForm.Encode()
				r2 := httptest.NewRequest(http.MethodPost, "/api/", strings.NewReader(body))
				r2.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				srv.ServeHTTP(w, r2)
			}))
			defer hs.Close()
			c, err := redcap.New(hs.URL+"/api/", token, redcap.WithRate(0))
			if err != nil {
				t.Fatal(err)
			}
			rows, err := c.ExportRecords(context.Background(), redcap.ExportParams{Fields: []string{"record_id", "mobile"}})
			if tt.wantErr != "" {
				if !errors.Is(err, redcap.ErrMissingRecords) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range rows {
				ids = append(ids, r["record_id"])
			}
			if !reflect.DeepEqual(ids, tt.wantIDs) {
				t.Errorf("ids = %v, want %v", ids, tt.wantIDs)
			}
		})
	}
}

// A redirect (an API URL without its trailing slash, http to https) turns the POST into a GET
// or replays it elsewhere: it is never followed, and the error names the right URL.
func TestSafetyRedirectRefused(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			var followed atomic.Int32
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/api" {
					http.Redirect(w, r, "/api/", status)
					return
				}
				followed.Add(1)
				fmt.Fprint(w, redcaptest.Version)
			}))
			defer hs.Close()
			c, err := redcap.New(hs.URL+"/api", token, redcap.WithRate(0), redcap.WithRetry(3, 0))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Version(context.Background())
			if !errors.Is(err, redcap.ErrRedirect) {
				t.Fatalf("err = %v, want a refused redirect", err)
			}
			if want := "set the project's redcap_url to " + hs.URL + "/api/"; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
			if n := followed.Load(); n != 0 {
				t.Errorf("the redirect was followed %d times", n)
			}
		})
	}
}

// HTTP 429 is retried after the wait Retry-After asks for (seconds or a date), within
// MaxRetryAfter; a longer wait fails at once.
func TestSafetyRetryAfter(t *testing.T) {
	now := time.Date(2026, 10, 14, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		retryAfter string
		wantWaits  []time.Duration
		wantErr    string
	}{
		{"seconds", "7", []time.Duration{7 * time.Second}, ""},
		{"HTTP date", now.Add(30 * time.Second).Format(http.TimeFormat), []time.Duration{30 * time.Second}, ""},
		{"past date", now.Add(-time.Minute).Format(http.TimeFormat), []time.Duration{time.Millisecond}, ""},
		{"too long", "600", nil, "asks to wait 10m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redcaptest.New(testProject(t))
			srv.Fault(redcaptest.Fault{Status: http.StatusTooManyRequests, Error: "Too many requests", RetryAfter: tt.retryAfter})
			c, w := start(t, srv, token)
			redcap.SetNow(c, func() time.Time { return now })
			_, err := c.Project(context.Background())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if !reflect.DeepEqual(w.d, tt.wantWaits) {
				t.Errorf("waits = %v, want %v", w.d, tt.wantWaits)
			}
			if n, want := len(srv.Calls()), len(tt.wantWaits)+1; n != want {
				t.Errorf("%d calls, want %d", n, want)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		srv := redcaptest.New(testProject(t))
		srv.Fault(redcaptest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Times: 9})
		c, w := start(t, srv, token)
		_, err := c.Project(context.Background())
		if err == nil || !strings.Contains(err.Error(), "HTTP 429") || !strings.Contains(err.Error(), "gave up after 4 attempts") {
			t.Errorf("err = %v", err)
		}
		if len(srv.Calls()) != 4 || len(w.d) != 3 {
			t.Errorf("%d calls, %d waits", len(srv.Calls()), len(w.d))
		}
	})
}

// REDCap's {"error": …} is an error even with HTTP 200, and is not retried.
func TestSafetyErrorWithStatus200(t *testing.T) {
	calls := map[string]func(c *redcap.Client) error{
		"project": func(c *redcap.Client) error { _, err := c.Project(context.Background()); return err },
		"export": func(c *redcap.Client) error {
			_, err := c.ExportRecords(context.Background(), redcap.ExportParams{Records: []string{"1"}})
			return err
		},
		"import": func(c *redcap.Client) error {
			_, err := c.ImportRecords(context.Background(), []redcap.Row{{"record_id": "1", "sent_status": "sent"}})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			srv := redcaptest.New(testProject(t))
			srv.Fault(redcaptest.Fault{Content: map[string]string{"project": "project", "export": "record", "import": "record"}[name], Error: "The project is offline"})
			c, w := start(t, srv, token, redcap.WithRecordIDField("record_id"))
			err := call(c)
			var ae *redcap.APIError
			if !errors.As(err, &ae) || ae.Status != 200 || ae.Message != "The project is offline" {
				t.Fatalf("err = %v, want REDCap's message with HTTP 200", err)
			}
			if len(w.d) != 0 {
				t.Errorf("an error answer was retried")
			}
			if name == "import" && len(srv.Export(token)) != 0 {
				t.Errorf("records stored after a refused import")
			}
		})
	}
}
