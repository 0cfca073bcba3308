package rules

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const projectsHead = `timezone: America/Los_Angeles
projects:
  - name: main
    redcap_url: https://redcap.example.edu/api/
    token_env: REDCAP_TOKEN_MAIN
  - name: site-2
    redcap_url: https://redcap.example.edu/api/
    token_env: REDCAP_TOKEN_SITE2
`

const (
	svcA = "MG0123456789abcdef0123456789abcdef"
	svcB = "MGfedcba9876543210fedcba9876543210"
)

// writeSenderStudy writes a study of two projects whose rule file names
// its project.
func writeSenderStudy(t *testing.T, config string) string {
	t.Helper()
	path := writeStudy(t, config)
	rule := filepath.Join(filepath.Dir(path), "rules", "r.yaml")
	text, err := os.ReadFile(rule)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rule, append([]byte("project: main\n"), text...), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSenders(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		main     Sender
		site2    Sender
		services map[string]string
		rates    map[string]float64
	}{
		{name: "one number",
			config: projectsHead + `twilio: { account_sid_env: SID, auth_token_env: TOKEN, from: "+14155550100" }`,
			main:   Sender{Numbers: []string{"+14155550100"}}, site2: Sender{Numbers: []string{"+14155550100"}},
			services: map[string]string{}, rates: map[string]float64{"+14155550100": 0.95}},
		{name: "a messaging service",
			config: projectsHead + `twilio:
  account_sid_env: SID
  auth_token_env: TOKEN
  messaging_service_sid: ` + svcA + `
  numbers: ["+14155550100", "+18885550100", "54321"]
  rate_per_second: 0.5
`,
			main:     Sender{Service: svcA, Numbers: []string{"+14155550100", "+18885550100", "54321"}},
			site2:    Sender{Service: svcA, Numbers: []string{"+14155550100", "+18885550100", "54321"}},
			services: map[string]string{"+14155550100": svcA, "+18885550100": svcA, "54321": svcA},
			rates:    map[string]float64{"+14155550100": 0.5, "+18885550100": DefaultTollFreeRate, "54321": DefaultShortCodeRate}},
		{name: "a project's own service, rates per number",
			config: strings.Replace(projectsHead, "token_env: REDCAP_TOKEN_SITE2\n",
				"token_env: REDCAP_TOKEN_SITE2\n    sms_service: "+svcB+"\n    sms_numbers: [\"+18445550100\", \"+14155550199\"]\n", 1) + `twilio:
  account_sid_env: SID
  auth_token_env: TOKEN
  from: "+14155550100"
  rates: { "+18445550100": 1.5, "+14155550199": 0.9 }
`,
			main:     Sender{Numbers: []string{"+14155550100"}},
			site2:    Sender{Service: svcB, Numbers: []string{"+18445550100", "+14155550199"}},
			services: map[string]string{"+18445550100": svcB, "+14155550199": svcB},
			rates:    map[string]float64{"+14155550100": 0.95, "+18445550100": 1.5, "+14155550199": 0.9}},
		{name: "a project's own short code",
			config: strings.Replace(projectsHead, "token_env: REDCAP_TOKEN_SITE2\n", "token_env: REDCAP_TOKEN_SITE2\n    sms_from: \"123456\"\n", 1) +
				`twilio: { account_sid_env: SID, auth_token_env: TOKEN, from: "+14155550100", rates: { "123456": 50 } }`,
			main: Sender{Numbers: []string{"+14155550100"}}, site2: Sender{Numbers: []string{"123456"}},
			services: map[string]string{}, rates: map[string]float64{"+14155550100": 0.95, "123456": 50}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(writeSenderStudy(t, tt.config+"\n"))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			c := s.Config
			if got := c.SenderFor("main"); !reflect.DeepEqual(got, tt.main) {
				t.Errorf("SenderFor(main) = %+v, want %+v", got, tt.main)
			}
			if got := c.SenderFor("site-2"); !reflect.DeepEqual(got, tt.site2) {
				t.Errorf("SenderFor(site-2) = %+v, want %+v", got, tt.site2)
			}
			if got := c.Services(); !reflect.DeepEqual(got, tt.services) {
				t.Errorf("Services = %v, want %v", got, tt.services)
			}
			if got := c.Rates(); !reflect.DeepEqual(got, tt.rates) {
				t.Errorf("Rates = %v, want %v", got, tt.rates)
			}
			for n, r := range c.Rates() {
				if r >= KindOf(n).Limit() {
					t.Errorf("%s paced at %v, at or above its limit %v", n, r, KindOf(n).Limit())
				}
			}
		})
	}
}

func TestTwilioSenderErrors(t *testing.T) {
	tests := []struct{ name, twilio, want string }{
		{"no sender", `twilio: { account_sid_env: SID, auth_token_env: TOKEN }`,
			`:9:9: twilio needs from (the sending number in E.164 form, e.g. "+14155550100") or messaging_service_sid with numbers`},
		{"both", `twilio: { account_sid_env: SID, auth_token_env: TOKEN, from: "+14155550100", messaging_service_sid: ` + svcA + `, numbers: ["+14155550101"] }`,
			`:9:101: twilio.from and twilio.messaging_service_sid are both set: a sender is one number or one Messaging Service, remove one`},
		{"numbers without a service", `twilio: { account_sid_env: SID, auth_token_env: TOKEN, from: "+14155550100", numbers: ["+14155550101"] }`,
			`:9:87: twilio.numbers lists the numbers of a Messaging Service: set twilio.messaging_service_sid (MG…) too, or write the one number as twilio.from`},
		{"a service without numbers", `twilio: { account_sid_env: SID, auth_token_env: TOKEN, messaging_service_sid: ` + svcA + ` }`,
			`:9:79: twilio.messaging_service_sid needs twilio.numbers: the numbers of the service's pool nudge sends from`},
		{"a service SID too short", `twilio: { account_sid_env: SID, auth_token_env: TOKEN, messaging_service_sid: MG0123, numbers: ["+14155550101"] }`,
			`:9:79: twilio.messaging_service_sid: "MG0123" is not a Messaging Service SID: copy it from the Twilio console (MG followed by 32 hex digits)`},
		{"a toll-free rate at its limit", `twilio: { account_sid_env: SID, auth_token_env: TOKEN, from: "+18335550100", rates: { "+18335550100": 3.0 } }`,
			`:9:103: twilio.rates: 3 for "+18335550100" is too fast: Twilio takes at most 3 segments per second from a toll-free number and nudge stays below that; write a rate below 3, e.g. 2.85`},
		{"rates not a mapping", `twilio: { account_sid_env: SID, auth_token_env: TOKEN, from: "+14155550100", rates: 0.5 }`,
			`:9:85: twilio.rates: expected a mapping of sending numbers to rates`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeSenderStudy(t, projectsHead+tt.twilio+"\n"))
			var errs Errors
			if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs.Error(), tt.want) {
				t.Fatalf("Load error = %v\nwant one error containing %q", err, tt.want)
			}
		})
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		number string
		kind   SenderKind
		limit  float64
	}{
		{"+14155550100", LongCode, 1},
		{"+18005550100", TollFree, 3},
		{"+18335550100", TollFree, 3},
		{"+18445550100", TollFree, 3},
		{"+18555550100", TollFree, 3},
		{"+18665550100", TollFree, 3},
		{"+18775550100", TollFree, 3},
		{"+18885550100", TollFree, 3},
		{"+18995550100", LongCode, 1},  // 899 is not toll-free
		{"+448005550100", LongCode, 1}, // a UK number with 800 in it
		{"+1800555010", LongCode, 1},   // too short to be a toll-free number
		{"12345", ShortCode, 100},
		{"123456", ShortCode, 100},
		{"1234", LongCode, 1},
		{"1234567", LongCode, 1},
	}
	for _, tt := range tests {
		if k := KindOf(tt.number); k != tt.kind || k.Limit() != tt.limit {
			t.Errorf("KindOf(%s) = %s (limit %v), want %s (limit %v)", tt.number, k, k.Limit(), tt.kind, tt.limit)
		}
	}
}

// TestPickIsSticky: the same recipient always gets the same number of a
// pool, every number of a pool is used, and adding a number to the pool
// moves only the recipients the new number takes.
func TestPickIsSticky(t *testing.T) {
	pool := Sender{Service: svcA, Numbers: []string{"+14155550100", "+14155550101", "+14155550102"}}
	bigger := Sender{Service: svcA, Numbers: append(append([]string{}, pool.Numbers...), "+14155550103")}
	reordered := Sender{Service: svcA, Numbers: []string{"+14155550102", "+14155550100", "+14155550101"}}
	used := map[string]int{}
	for i := range 300 {
		to := fmt.Sprintf("+1503555%04d", i)
		n := pool.Pick(to)
		if again := pool.Pick(to); again != n {
			t.Fatalf("Pick(%s) = %s, then %s", to, n, again)
		}
		if r := reordered.Pick(to); r != n {
			t.Errorf("Pick(%s) depends on the order of the pool: %s vs %s", to, n, r)
		}
		if b := bigger.Pick(to); b != n && b != "+14155550103" {
			t.Errorf("adding a number moved %s from %s to %s", to, n, b)
		}
		used[n]++
	}
	for _, n := range pool.Numbers {
		if used[n] < 50 {
			t.Errorf("%s got %d of 300 recipients; the pool is not shared out", n, used[n])
		}
	}
	if got := (Sender{}).Pick("+15035550100"); got != "" {
		t.Errorf("an empty sender picked %q", got)
	}
}
