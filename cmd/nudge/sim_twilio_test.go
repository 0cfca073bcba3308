package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

// lockedBuffer is a bytes.Buffer safe for the command's goroutine and the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// simRequest sends one request to the simulator with its default credentials.
func simRequest(t *testing.T, method, u, contentType string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(simAccountSID, simAuthToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The simulator as a process: it serves until ctx ends, prints its URL and
// the environment, applies the faults file and --service pools, takes
// faults at runtime through /_sim/, and journals every create request so
// that another process can count them.
func TestSimTwilioServesAndJournals(t *testing.T) {
	dir := t.TempDir()
	journal := filepath.Join(dir, "twilio.jsonl")
	faults := filepath.Join(dir, "faults.json")
	const optedOut, alice, bob = "+14155550110", "+14155550101", "+14155550102"
	const service = "MG0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(faults, []byte(`{"outcomes": {"`+optedOut+`": {"create_error": 21610}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- cmdSimTwilio(ctx, []string{"--listen", "127.0.0.1:0", "--journal", journal, "--faults", faults,
			"--service", service + "=+14155550190,+14155550191"}, &stdout, &stderr)
	}()
	var base string
	deadline := time.Now().Add(5 * time.Second)
	for base == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no URL printed; stdout %q stderr %q", stdout.String(), stderr.String())
		}
		select {
		case err := <-done:
			t.Fatalf("ended early: %v; stderr %q", err, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "export NUDGE_SIM_TWILIO_URL="); ok {
				base = v
			}
		}
	}
	for _, want := range []string{"export TWILIO_ACCOUNT_SID=" + simAccountSID, "export TWILIO_AUTH_TOKEN=" + simAuthToken} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}

	msgs := base + "/2010-04-01/Accounts/" + simAccountSID + "/Messages.json"
	form := func(to, body string) string {
		return url.Values{"From": {"+14155550100"}, "To": {to}, "Body": {body}}.Encode()
	}
	const formType = "application/x-www-form-urlencoded"
	creates := []struct {
		form string
		want int
	}{
		{form("+14155550101", "Hi Ana"), 201},
		{form(optedOut, "Hi"), 400}, // from the faults file
		{url.Values{"MessagingServiceSid": {service}, "To": {bob}, "Body": {"Hi Bo"}}.Encode(), 201},
	}
	for i, c := range creates {
		if status, body := simRequest(t, "POST", msgs, formType, c.form); status != c.want {
			t.Fatalf("create %d: HTTP %d %s, want %d", i, status, body, c.want)
		}
	}
	// A storm set at runtime.
	if status, body := simRequest(t, "POST", base+"/_sim/fault", "application/json", `{"status": 503, "times": 2}`); status != 200 {
		t.Fatalf("POST /_sim/fault: HTTP %d %s", status, body)
	}
	for range 2 {
		if status, _ := simRequest(t, "POST", msgs, formType, form(alice, "Hi Ana")); status != 503 {
			t.Fatalf("create in the storm: HTTP %d, want 503", status)
		}
	}
	if status, _ := simRequest(t, "POST", msgs, formType, form(alice, "Hi Ana")); status != 201 {
		t.Fatalf("create after the storm: HTTP %d, want 201", status)
	}
	status, body := simRequest(t, "GET", base+"/_sim/state", "", "")
	var state twiliotest.State
	if err := json.Unmarshal(body, &state); status != 200 || err != nil || state.Attempts != 6 || state.Creates != 3 {
		t.Errorf("GET /_sim/state: HTTP %d %s, want 6 attempts and 3 creates", status, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("cmdSimTwilio: %v; stderr %q", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("did not stop when ctx ended")
	}

	// The journal, read from outside as a fault suite would.
	f, err := os.Open(journal)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []twiliotest.JournalEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e twiliotest.JournalEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("journal line %q: %v", sc.Text(), err)
		}
		if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
			t.Errorf("journal time %q: %v", e.Time, err)
		}
		got = append(got, e)
	}
	digest := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	want := []struct {
		to, sender, digest string
		status, code       int
		created            bool
	}{
		{alice, "+14155550100", digest("Hi Ana"), 201, 0, true},
		{optedOut, "", digest("Hi"), 400, 21610, false},
		{bob, "+14155550190", digest("Hi Bo"), 201, 0, true},
		{alice, "", digest("Hi Ana"), 503, 20503, false},
		{alice, "", digest("Hi Ana"), 503, 20503, false},
		{alice, "+14155550100", digest("Hi Ana"), 201, 0, true},
	}
	if len(got) != len(want) {
		t.Fatalf("journal has %d lines, want %d: %+v", len(got), len(want), got)
	}
	sids := map[string]bool{}
	for i, w := range want {
		e := got[i]
		if e.To != w.to || e.Sender != w.sender || e.BodySHA256 != w.digest || e.HTTPStatus != w.status || e.Code != w.code ||
			(e.SID != "") != w.created || e.Segments != 1 {
			t.Errorf("journal line %d: %+v, want to %s sender %q HTTP %d code %d created %v", i, e, w.to, w.sender, w.status, w.code, w.created)
		}
		if e.SID != "" {
			sids[e.SID] = true
		}
	}
	if got[2].MessagingServiceSID != service || got[2].From != "" {
		t.Errorf("service create journaled as %+v", got[2])
	}
	if len(sids) != 3 {
		t.Errorf("%d distinct SIDs, want 3", len(sids))
	}
	if strings.Contains(stdout.String()+stderr.String(), "Hi Ana") {
		t.Error("a message body was printed")
	}
}

func TestSimTwilioRefuses(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "j.jsonl")
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte("{\n  \"outcomes\": {\"+14155550101\": {\"final\": 3}}\n}"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int    // exit status
		want string // in the error or stderr
	}{
		{"all interfaces", []string{"--listen", "0.0.0.0:0", "--journal", journal}, 2, "only on a loopback address"},
		{"no host", []string{"--listen", ":0", "--journal", journal}, 2, "only on a loopback address"},
		{"another machine's address", []string{"--listen", "10.0.0.1:0", "--journal", journal}, 2, "only on a loopback address"},
		{"no journal", []string{"--listen", "127.0.0.1:0"}, 2, "--journal FILE is required"},
		{"bad faults file", []string{"--listen", "127.0.0.1:0", "--journal", journal, "--faults", bad}, 1, bad + ":2:"},
		{"bad service", []string{"--listen", "127.0.0.1:0", "--journal", journal, "--service", "MGx=+14155550100"}, 1, "not a Messaging Service SID"},
		{"empty token variable", []string{"--listen", "127.0.0.1:0", "--journal", journal, "--auth-token-env", "NUDGE_TEST_UNSET_TOKEN"}, 1, "NUDGE_TEST_UNSET_TOKEN is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := cmdSimTwilio(context.Background(), tt.args, &stdout, &stderr)
			var msg bytes.Buffer
			code := exitCode(err, &msg)
			if code != tt.code || !strings.Contains(msg.String()+stderr.String(), tt.want) {
				t.Errorf("exit %d, output %q, want exit %d and %q", code, msg.String()+stderr.String(), tt.code, tt.want)
			}
			if errors.Is(err, context.Canceled) {
				t.Error("served instead of refusing")
			}
		})
	}
}
