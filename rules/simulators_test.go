package rules

import (
	"strings"
	"testing"
)

// TestSafetySimulatorOverridesLoopbackOnly: the environment can point a
// study at nudge's simulators, and only at a loopback address.
func TestSafetySimulatorOverridesLoopbackOnly(t *testing.T) {
	tests := []struct {
		env, value string
		wantErr    string // "" = accepted
	}{
		{EnvSimREDCap, "http://127.0.0.1:8081/api/", ""},
		{EnvSimREDCap, "https://redcap.example.edu/api/", "must be a loopback URL"},
		{EnvSimTwilio, "http://localhost:8082", ""},
		{EnvSimTwilio, "http://10.0.0.5:8082", "must be a loopback URL"},
		{EnvSimSMTP, "127.0.0.1:2525", ""},
		{EnvSimSMTP, "smtp.example.edu:25", "must be a loopback address"},
	}
	for _, tt := range tests {
		t.Run(tt.env+"="+tt.value, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			study, err := Load("../testdata/demo/nudge.yaml")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.env) {
					t.Fatalf("Load = %v, want an error naming %s", err, tt.env)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := study.Config
			switch tt.env {
			case EnvSimREDCap:
				for _, p := range c.Projects {
					if p.RedcapURL != tt.value {
						t.Errorf("project %s: %s", p.Name, p.RedcapURL)
					}
				}
			case EnvSimTwilio:
				if c.Twilio.APIBaseURL != tt.value {
					t.Errorf("twilio: %s", c.Twilio.APIBaseURL)
				}
			case EnvSimSMTP:
				if c.SMTP.Host != "127.0.0.1" || c.SMTP.Port != 2525 || c.SMTP.TLS != "none" {
					t.Errorf("smtp: %+v", c.SMTP)
				}
			}
			if len(c.Simulators) != 1 {
				t.Errorf("Simulators = %q", c.Simulators)
			}
		})
	}
}
