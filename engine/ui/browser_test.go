package ui_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns the path of a Chromium or Chrome binary, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowserSignInWorklistParticipant drives a real headless Chromium on
// a phone-sized window: sign in, see the worklist, follow a participant.
// Screenshots go to $NUDGE_UI_ARTIFACTS (default: a temporary folder).
func TestBrowserSignInWorklistParticipant(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("no chromium, chromium-browser or google-chrome found")
	}
	out := os.Getenv("NUDGE_UI_ARTIFACTS")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	srv := server(t, f, nil)

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin),
		chromedp.Flag("no-sandbox", true), chromedp.WindowSize(375, 812),
		chromedp.Flag("proxy-server", "direct://"), chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(out, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do := func(steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, steps...); err != nil {
			t.Fatal(err)
		}
	}
	// check reads the page's text and whether it scrolls sideways.
	check := func(page string) string {
		t.Helper()
		text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		wide, err := chromedp.Run(bctx, chromedp.Evaluate[bool](
			`document.documentElement.scrollWidth > document.documentElement.clientWidth`))
		if err != nil {
			t.Fatal(err)
		}
		if wide {
			t.Errorf("the %s scrolls sideways at 375 px", page)
		}
		if phoneRE.MatchString(text) {
			t.Errorf("the %s shows a phone number unmasked", page)
		}
		return text
	}

	do(chromedp.Navigate(srv.URL+"/ui/"), chromedp.WaitVisible(chromedp.ID("name")))
	shot("1-sign-in")
	do(chromedp.SendKeys(chromedp.ID("name"), testUser),
		chromedp.SendKeys(chromedp.ID("password"), testPassword),
		chromedp.Click(chromedp.CSS("form.login button")),
		chromedp.WaitVisible(chromedp.ID("today")))
	check("overview")
	shot("2-overview")
	do(chromedp.Click(chromedp.CSS(`a[href="worklist?project=site_a"]`)), chromedp.WaitVisible(chromedp.CSS("ul.worklist")))
	worklist := check("worklist")
	shot("3-worklist")
	if !strings.Contains(worklist, "opted out") || !strings.Contains(worklist, "site_a / record 14") {
		t.Errorf("the worklist does not show record 14 opted out:\n%s", worklist)
	}
	do(chromedp.Click(chromedp.CSS(`a[href="participant?project=site_a&record=14"]`)), chromedp.WaitVisible(chromedp.ID("messages")))
	participant := check("participant page")
	shot("4-participant")
	if !strings.Contains(participant, "Participant 14") || !strings.Contains(participant, "opted out") {
		t.Errorf("record 14's page:\n%s", participant)
	}
	t.Logf("screenshots in %s", out)
}
