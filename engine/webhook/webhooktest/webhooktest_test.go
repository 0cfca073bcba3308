package webhooktest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"
)

// Sign must agree with twilio-go's validator, which is what nudge checks
// signatures with; each case is checked both ways (valid, and invalid once
// anything changes).
func TestSignAgreesWithTwilioValidator(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		params url.Values
	}{
		{"no parameters", "https://nudge.example.edu/twilio/status", url.Values{}},
		{"inbound", "https://nudge.example.edu/hooks/twilio/inbound", InboundParams("SM1", "+14155550123", "+14155550100", "Stop & go <now>")},
		{"query and port", "https://nudge.example.edu:8443/twilio/inbound?site=a&b=%2B1", url.Values{"Body": {"ñandú 🎉"}, "From": {"+14155550123"}}},
		{"keys sort bytewise", "http://127.0.0.1:8080/twilio/status", url.Values{"b": {"1"}, "B": {"2"}, "a_": {"3"}, "aZ": {"4"}}},
	}
	v := client.NewRequestValidator("token123")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flat := make(map[string]string)
			for k, vs := range tt.params {
				flat[k] = vs[0]
			}
			sig := Sign("token123", tt.url, tt.params)
			if !v.Validate(tt.url, flat, sig) {
				t.Errorf("twilio-go rejects Sign's signature %q", sig)
			}
			if other := Sign("token124", tt.url, tt.params); v.Validate(tt.url, flat, other) {
				t.Error("a signature made with another token validates")
			}
			if v.Validate(tt.url+"x", flat, sig) {
				t.Error("the signature validates for another URL")
			}
			flat["Extra"] = "1"
			if v.Validate(tt.url, flat, sig) {
				t.Error("the signature validates with an added parameter")
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var d []time.Duration
		for _, n := range ns {
			d = append(d, time.Duration(n)*time.Millisecond)
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      int
		want   time.Duration
	}{
		{"empty", nil, 99, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"max", ms(hundred...), 100, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(p%d) = %s, want %s", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestLoadRun(t *testing.T) {
	var hits, bad atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if err := r.ParseForm(); err != nil {
			bad.Add(1)
		}
		want := Sign("token123", "https://nudge.example.edu/twilio/inbound", r.PostForm)
		if r.URL.Path != "/twilio/inbound" || r.Header.Get("X-Twilio-Signature") != want {
			bad.Add(1)
		}
		if r.PostForm.Get("MessageSid") == fmt.Sprintf("SM%032x", 7) {
			http.Error(w, "no", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		w.Write([]byte("<Response/>"))
	}))
	defer ts.Close()

	res, err := Load{ServerURL: ts.URL, PublicURL: "https://nudge.example.edu", AuthToken: "token123",
		Requests: 50, Clients: 4}.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 50 || bad.Load() != 0 {
		t.Errorf("server saw %d requests (%d wrongly signed), want 50 signed", hits.Load(), bad.Load())
	}
	if res.Requests != 49 || res.Failures != 1 || res.FirstErr == nil {
		t.Errorf("result %+v, want 49 answered and 1 failure", res)
	}
	if res.P99 < res.P50 || res.Max < res.P99 || res.PerSecond() <= 0 {
		t.Errorf("inconsistent figures: %+v", res)
	}

	if _, err := (Load{ServerURL: ts.URL}).Run(context.Background()); err == nil {
		t.Error("a load of zero requests ran")
	}
}
