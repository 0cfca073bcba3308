package engine_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// alertRules is the alert rules file nudge ships for Prometheus.
var alertRules = filepath.Join("..", "cmd", "nudge", "deploy", "prometheus", "nudge.rules.yml")

// promRule is one rule of a Prometheus rules file.
type promRule struct {
	Alert string `yaml:"alert"`
	Expr  string `yaml:"expr"`
	For   string `yaml:"for"`
}

// seriesName matches the metric names in a PromQL expression: nudge's own
// all start with nudge_.
var seriesName = regexp.MustCompile(`\bnudge_[a-zA-Z0-9_]+`)

// TestAlertRulesUseExportedMetrics: every metric the shipped alert rules
// read is one a real `nudge serve` exports on /metrics, so no alert is
// silently dead; and the alerts the README promises are there.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile(alertRules)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string     `yaml:"name"`
			Rules []promRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("%s: %v", alertRules, err)
	}
	s := serveMetrics(t)
	// A refused send, so that the error counter has a series.
	if _, err := s.e.SMS.Send(s.ctx, "+14155550100", "+1555", "hello", 0); err == nil {
		t.Fatal("a send to +1555 succeeded")
	}
	fams := scrape(t, s.base)
	alerts := map[string]bool{}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("group %s: a rule without alert or expr: %+v", g.Name, r)
			}
			for _, name := range seriesName.FindAllString(r.Expr, -1) {
				if fams[name] == nil {
					t.Errorf("alert %s reads %s, which /metrics does not export", r.Alert, name)
				}
			}
		}
	}
	for _, want := range []string{"NudgeDown", "NudgeUnhealthy", "NudgeNoSuccessfulPass", "NudgeQueueGrowing",
		"NudgeSenderPaused", "NudgeWritebackFailures", "NudgeSendErrors"} {
		if !alerts[want] {
			t.Errorf("the rules file has no alert %s", want)
		}
	}
}

// TestAlertRulesPromtool runs promtool's own checks and the unit tests
// beside the rules file when promtool is installed (Debian: prometheus).
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed")
	}
	for _, args := range [][]string{
		{"check", "rules", alertRules},
		{"test", "rules", strings.TrimSuffix(alertRules, ".yml") + ".test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
