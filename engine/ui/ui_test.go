package ui_test

import (
	"context"

	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/ui"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// The fixture's people and numbers.
const (
	testUser     = "ana"
	testPassword = "correct horse battery"
	stopPhone    = "+16175550113" // site_a record 14, texts STOP
)

var demoDir = filepath.Join("..", "..", "testdata", "demo")

// fixture is a database the real engine filled: one demo pass against the
// simulators on a fake clock, then a STOP from record 14's number.
type fixture struct {
	store *storage.Store
	study *rules.Study
	now   time.Time
}

var (
	fixtureOnce  sync.Once
	fixtureDB    string
	fixtureErr   error
	fixtureNow   time.Time
	fixtureStudy *rules.Study
	hashOnce     sync.Once
	testHash     string
)

func newFixture(t *testing.T) fixture {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := tempDir()
		if err != nil {
			fixtureErr = err
			return
		}
		fixtureDB = filepath.Join(dir, "nudge.db")
		clk := sms.NewFakeClock(demo.StudyTime)
		env, err := demo.Start(demo.Options{Dir: demoDir, DBPath: fixtureDB, Clock: clk})
		if err != nil {
			fixtureErr = err
			return
		}
		defer env.Close()
		fixtureStudy = env.Study
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, fixtureErr = env.Pass(ctx, 10*time.Minute); fixtureErr != nil {
			return
		}
		clk.Set(demo.StudyTime.Add(time.Hour))
		if _, fixtureErr = env.Engine.HandleInbound(ctx, engine.InboundSMS{MessageSID: "SM" + strings.Repeat("a", 32),
			From: stopPhone, To: "+14155550100", Body: "STOP"}); fixtureErr != nil {
			return
		}
		fixtureNow = clk.Now().Add(time.Minute)
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
	st, err := storage.Open(fixtureDB)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return fixture{store: st, study: fixtureStudy, now: fixtureNow}
}

func hash(t *testing.T) string {
	hashOnce.Do(func() {
		h, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		testHash = string(h)
	})
	return testHash
}

// server serves the web page over the fixture on a loopback test server.
func server(t *testing.T, f fixture, edit func(*ui.Config)) *httptest.Server {
	t.Helper()
	var projects []string
	for _, p := range f.study.Config.Projects {
		projects = append(projects, p.Name)
	}
	cfg := ui.Config{Store: f.store, Users: []rules.UIUser{{Name: testUser, PasswordHash: hash(t)}},
		Location: f.study.Config.Location, Projects: projects, Mask: engine.Redact,
		Now: func() time.Time { return f.now }}
	if edit != nil {
		edit(&cfg)
	}
	page, err := ui.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(ui.Prefix, page)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// client keeps cookies and does not follow redirects.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)

// login fetches the form and posts name and password with its token.
func login(t *testing.T, c *http.Client, base, name, password string) (int, string) {
	t.Helper()
	_, body, _ := get(t, c, base+"/ui/login")
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no token in the sign-in form:\n%s", body)
	}
	resp, err := c.PostForm(base+"/ui/login", url.Values{"token": {m[1]}, "name": {name}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestLoginRequired(t *testing.T) {
	f := newFixture(t)
	srv := server(t, f, nil)
	c := client(t)
	for _, p := range []string{"/ui/", "/ui/worklist", "/ui/participant?project=site_a&record=14"} {
		code, body, h := get(t, c, srv.URL+p)
		if code != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
			t.Errorf("GET %s signed out: %d %q, want 303 to /ui/login", p, code, h.Get("Location"))
		}
		if strings.Contains(body, "site_a") {
			t.Errorf("GET %s signed out shows study data", p)
		}
	}
	if code, _ := login(t, c, srv.URL, testUser, testPassword); code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d, want 303", code)
	}
	code, body, h := get(t, c, srv.URL+"/ui/")
	if code != http.StatusOK || !strings.Contains(body, "Signed in as ana") {
		t.Fatalf("overview after sign-in: %d\n%s", code, body)
	}
	if h.Get("Cache-Control") != "no-store" || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("headers: %v", h)
	}
}

func TestSessionCookie(t *testing.T) {
	f := newFixture(t)
	srv := server(t, f, func(c *ui.Config) { c.Secure = true })
	_, body, _ := get(t, client(t), srv.URL+"/ui/login")
	token := tokenRE.FindStringSubmatch(body)[1]
	// The login cookie is Secure now, so the jar does not send it over
	// http: post it by hand.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {token},
		"name": {testUser}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp0, _ := client(t).Get(srv.URL + "/ui/login")
	resp0.Body.Close()
	var login *http.Cookie
	for _, c := range resp0.Cookies() {
		if c.Name == "nudge_ui_login" {
			login = c
		}
	}
	body0 := ""
	_ = body0
	if login == nil {
		t.Fatal("no login cookie")
	}
	// A token from another form does not match this cookie.
	req.AddCookie(login)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-in with another form's token: %d, want 403", resp.StatusCode)
	}
	c := client(t)
	resp, err = c.Get(srv.URL + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token = tokenRE.FindStringSubmatch(string(b))[1]
	var lc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "nudge_ui_login" {
			lc = ck
		}
	}
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/ui/login", strings.NewReader(url.Values{"token": {token},
		"name": {testUser}, "password": {testPassword}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(lc)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var sess *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "nudge_ui" {
			sess = ck
		}
	}
	if sess == nil {
		t.Fatalf("no session cookie after sign-in (%d)", resp.StatusCode)
	}
	if !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteStrictMode || sess.Path != "/ui/" {
		t.Errorf("session cookie %+v: want HttpOnly, Secure, SameSite=Strict, Path /ui/", sess)
	}
	// A forged cookie (another user's name, the same signature) is refused.
	parts := strings.Split(sess.Value, ".")
	parts[0] = "Ym9i" // "bob"
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/ui/", nil)
	req.AddCookie(&http.Cookie{Name: "nudge_ui", Value: strings.Join(parts, ".")})
	resp, err = client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("forged session cookie: %d, want 303 to the sign-in", resp.StatusCode)
	}
}

func TestWrongPasswordAndRateLimit(t *testing.T) {
	f := newFixture(t)
	srv := server(t, f, nil)
	c := client(t)
	for i := range ui.LoginBurst {
		code, body := login(t, c, srv.URL, testUser, "wrong password")
		if code != http.StatusUnauthorized || !strings.Contains(body, "The name or password is wrong.") {
			t.Fatalf("wrong password #%d: %d", i+1, code)
		}
		if strings.Contains(body, "wrong password") {
			t.Fatal("the page shows the password typed")
		}
	}
	if code, _ := login(t, c, srv.URL, "nobody", testPassword); code != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429", ui.LoginBurst, code)
	}
	// Even the right password waits: the limit is per address.
	code, body := login(t, c, srv.URL, testUser, testPassword)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins") {
		t.Errorf("right password while limited: %d, want 429", code)
	}
	if code, _, _ := get(t, c, srv.URL+"/ui/"); code != http.StatusSeeOther {
		t.Errorf("overview: %d, want still signed out", code)
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t)
	srv := server(t, f, nil)
	c := client(t)
	login(t, c, srv.URL, testUser, testPassword)
	_, body, _ := get(t, c, srv.URL+"/ui/")
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no sign-out form")
	}
	u, _ := url.Parse(srv.URL + "/ui/")
	cookies := c.Jar.Cookies(u)
	// A sign-out without the page's token is refused (cross-site forms).
	resp, err := c.PostForm(srv.URL+"/ui/logout", url.Values{"token": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out with a forged token: %d, want 403", resp.StatusCode)
	}
	resp, err = c.PostForm(srv.URL+"/ui/logout", url.Values{"token": {m[1]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	// The old cookie, replayed, no longer works.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/", nil)
	for _, ck := range cookies {
		req.AddCookie(ck)
	}
	resp, err = client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("replayed cookie after sign-out: %d, want 303", resp.StatusCode)
	}
}

func TestTrustedHeader(t *testing.T) {
	f := newFixture(t)
	loop := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	other := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	for _, tc := range []struct {
		name    string
		proxies []netip.Prefix
		want    int
	}{
		{"from a trusted proxy", loop, http.StatusOK},
		{"from an address not trusted", other, http.StatusSeeOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := server(t, f, func(c *ui.Config) { c.TrustedHeader, c.TrustedProxies = "X-Remote-User", tc.proxies })
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/", nil)
			req.Header.Set("X-Remote-User", "bea")
			resp, err := client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK && !strings.Contains(string(b), "Signed in as bea") {
				t.Errorf("the proxy's user is not shown")
			}
		})
	}
	if _, err := ui.New(ui.Config{Store: f.store, TrustedHeader: "X-Remote-User"}); err != ui.ErrHeaderNoProxies {
		t.Errorf("trusted_header without proxies: %v, want ErrHeaderNoProxies", err)
	}
}

// phoneRE finds a phone number shown unmasked (10 digits or more in a row).
var phoneRE = regexp.MustCompile(`\d{10,}`)

func TestPagesMaskNumbersAndListWhoWasNotReached(t *testing.T) {
	f := newFixture(t)
	srv := server(t, f, nil)
	c := client(t)
	login(t, c, srv.URL, testUser, testPassword)
	pages := map[string]string{}
	for _, p := range []string{"/ui/", "/ui/worklist", "/ui/worklist?project=site_a", "/ui/participant?project=site_a&record=14"} {
		code, body, _ := get(t, c, srv.URL+p)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d\n%s", p, code, body)
		}
		if m := phoneRE.FindString(body); m != "" {
			t.Errorf("GET %s shows a phone number unmasked: %s", p, m)
		}
		pages[p] = body
	}
	wl := pages["/ui/worklist?project=site_a"]
	// Record 14 texted STOP: on the worklist as opted out, linked.
	if !strings.Contains(wl, "opted out") || !strings.Contains(wl, `href="participant?project=site_a&record=14"`) {
		t.Errorf("site_a's worklist does not list record 14 as opted out:\n%s", wl)
	}
	if strings.Contains(wl, "site_b /") {
		t.Errorf("site_a's worklist lists site_b's records")
	}
	if !strings.Contains(wl, strings.ReplaceAll(engine.Redact(stopPhone), "+", "&#43;")) {
		t.Errorf("the worklist does not show record 14's masked number %s", engine.Redact(stopPhone))
	}
	part := pages["/ui/participant?project=site_a&record=14"]
	for _, want := range []string{"<strong>opted out</strong>", "STOP", "Status history of this message"} {
		if !strings.Contains(part, want) {
			t.Errorf("record 14's page lacks %q", want)
		}
	}
	ov := pages["/ui/"]
	for _, want := range []string{"Recent sends", "opted out", "Nothing is paused"} {
		if !strings.Contains(ov, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
}
