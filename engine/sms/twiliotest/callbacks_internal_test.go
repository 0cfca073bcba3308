package twiliotest

import (
	"net/url"
	"testing"
	"time"

	"github.com/twilio/twilio-go/client"
)

func TestSignatureMatchesTwilioGo(t *testing.T) {
	tests := []struct {
		name, url string
		form      url.Values
	}{
		{"no parameters", "http://127.0.0.1:8080/twilio/status", url.Values{}},
		{"typical callback", "http://127.0.0.1:8080/twilio/status?study=demo",
			url.Values{"MessageSid": {"SM1"}, "MessageStatus": {"delivered"}, "To": {"+14155550101"}, "ApiVersion": {"2010-04-01"}}},
		{"names sort by byte", "https://localhost/s",
			url.Values{"a": {"1"}, "B": {"2"}, "ErrorCode": {"30003"}, "Error": {"x"}}},
		{"values needing escapes", "http://[::1]:9/cb",
			url.Values{"Body": {"Hi Ana & Bob = 100% ✓"}, "From": {"+1 415"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := signature("token123", tt.url, tt.form)
			v := client.NewRequestValidator("token123")
			if !v.ValidateBody(tt.url, []byte(tt.form.Encode()), sig) {
				t.Errorf("twilio-go rejects %q", sig)
			}
			if other := client.NewRequestValidator("token124"); other.ValidateBody(tt.url, []byte(tt.form.Encode()), sig) {
				t.Error("another token accepts the signature")
			}
		})
	}
}

// The callback timeline and the status a fetch shows must agree at every
// moment, whatever the timing.
func TestTimelineAgreesWithState(t *testing.T) {
	created := time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)
	timings := []Timing{{}, {Sending: time.Second, Sent: time.Second, Final: time.Second}, {Sending: 3 * time.Second, Sent: time.Second, Final: 2 * time.Second}}
	outcomes := []Outcome{{}, {Final: "undelivered", ErrorCode: 30003}, {Final: "failed", ErrorCode: 30034},
		{QueueDelay: 2 * time.Second}, {Final: "sent"}}
	for _, tm := range timings {
		s := New(Options{Timing: tm})
		for _, o := range outcomes {
			m := &message{base: Message{Status: "queued", Created: created}, outcome: o}
			steps := s.timeline(m)
			for i := 1; i < len(steps); i++ {
				if steps[i].at.Before(steps[i-1].at) {
					t.Errorf("timing %+v outcome %+v: %s at %v before %s at %v", tm, o, steps[i].status, steps[i].at, steps[i-1].status, steps[i-1].at)
				}
			}
			for age := time.Duration(0); age <= 4*time.Second; age += 100 * time.Millisecond {
				now := created.Add(age)
				want, code := "queued", 0
				for _, st := range steps {
					if !st.at.After(now) {
						want, code = st.status, st.errorCode
					}
				}
				if got := s.state(m, now); got.Status != want || got.ErrorCode != code {
					t.Errorf("timing %+v outcome %+v at +%v: state %s/%d, timeline %s/%d", tm, o, age, got.Status, got.ErrorCode, want, code)
				}
			}
		}
	}
}

func TestDialLoopbackOnly(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:80", true},
		{"127.9.9.9:80", true},
		{"[::1]:80", true},
		{"[::ffff:127.0.0.1]:80", true},
		{"10.0.0.1:80", false},
		{"[2001:db8::1]:443", false},
		{"93.184.216.34:80", false},
		{"example.org:80", false},
	}
	for _, tt := range tests {
		if err := dialLoopbackOnly("tcp", tt.addr, nil); (err == nil) != tt.ok {
			t.Errorf("%s: error %v, want allowed=%v", tt.addr, err, tt.ok)
		}
	}
}
