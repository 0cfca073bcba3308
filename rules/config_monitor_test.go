package rules

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestServerMonitorSettings(t *testing.T) {
	tests := []struct {
		name    string
		server  string
		admin   string
		proxies []netip.Prefix
		health  HealthLimits
		wantErr string
	}{
		{name: "defaults", health: HealthLimits{MaxPassAge: time.Hour, MaxPassDuration: 30 * time.Minute, MaxDueAge: 30 * time.Minute}},
		{name: "max_pass_age follows run_every", server: `server: { run_every: 1h }`,
			health: HealthLimits{MaxPassAge: 4 * time.Hour, MaxPassDuration: 30 * time.Minute, MaxDueAge: 30 * time.Minute}},
		{name: "no run_every, no pass age", server: `server: { run_every: 0 }`,
			health: HealthLimits{MaxPassDuration: 30 * time.Minute, MaxDueAge: 30 * time.Minute}},
		{name: "all set", server: `server: { admin_listen: "127.0.0.1:9090", trusted_proxies: ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"],
  health: { max_pass_age: 2h, max_pass_duration: 10m, max_due_age: 0, max_writeback_failures: 5 } }`,
			admin:   "127.0.0.1:9090",
			proxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")},
			health:  HealthLimits{MaxPassAge: 2 * time.Hour, MaxPassDuration: 10 * time.Minute, MaxWritebackFailures: 5}},
		{name: "admin on the public port", server: `server: { listen: ":8080", admin_listen: ":8080" }`,
			wantErr: `server.admin_listen: ":8080" is also server.listen`},
		{name: "admin without port", server: `server: { admin_listen: localhost }`, wantErr: `server.admin_listen: "localhost" needs a port`},
		{name: "bad proxy", server: `server: { trusted_proxies: [10.0.0.0/33] }`, wantErr: `:7:29: server.trusted_proxies: "10.0.0.0/33" is not a network or an address`},
		{name: "bad duration", server: `server: { health: { max_due_age: 30 } }`, wantErr: `server.health.max_due_age: "30" is not a duration`},
		{name: "negative failures", server: `server: { health: { max_writeback_failures: -1 } }`, wantErr: `server.health.max_writeback_failures: -1 is negative`},
		{name: "unknown key", server: `server: { health: { max_due: 1h } }`, wantErr: `unknown key 'max_due' in server.health`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Load(writeStudy(t, studyHead+tt.server+"\n"))
			if tt.wantErr != "" {
				var errs Errors
				if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v\nwant one error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := s.Config.Server
			got.Health.Pos = Pos{}
			if got.AdminListen != tt.admin || !reflect.DeepEqual(got.TrustedProxies, tt.proxies) || got.Health != tt.health {
				t.Errorf("admin %q, proxies %v, health %+v\nwant %q, %v, %+v", got.AdminListen, got.TrustedProxies, got.Health, tt.admin, tt.proxies, tt.health)
			}
		})
	}
}
