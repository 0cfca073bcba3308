package engine_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine"
)

// TestSafetySkipWarnedOnce: a participant skipped for the same reason on
// every pass is warned about on the first pass that skips it only (cron
// mails each warning); later passes log it at debug. A new reason is a new
// warning.
func TestSafetySkipWarnedOnce(t *testing.T) {
	f := newFixture(t)
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetLevel(logrus.WarnLevel)
	l.SetFormatter(&logrus.TextFormatter{DisableColors: true, DisableTimestamp: true})
	f.e.Log = l

	seen := map[string]bool{}
	repeated := 0
	for i := 0; i < 3; i++ {
		buf.Reset()
		res, err := f.e.Run(f.ctx, engine.PlanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fresh := 0
		for _, d := range res.Plan.Decisions {
			if d.Outcome != engine.Skipped {
				continue
			}
			k := fmt.Sprint(d.Rule, d.Project, d.Record, d.Event, d.Instance, d.Reason)
			if seen[k] {
				repeated++
			} else {
				fresh++
			}
			seen[k] = true
		}
		if got := strings.Count(buf.String(), "participant skipped"); got != fresh {
			t.Errorf("pass %d warned %d skips, want the %d new ones:\n%s", i+1, got, fresh, buf.String())
		}
		f.clk.Advance(15 * time.Minute)
	}
	if repeated == 0 {
		t.Fatal("no skip lasted from one pass to the next: the test proves nothing")
	}
}
