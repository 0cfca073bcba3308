// Package ui is the coordinator web page `nudge serve` serves at /ui/: a
// read-only view of what nudge sent, what came back and who was not
// reached, behind a sign-in. Pages are rendered on the server
// (html/template, no script); phone numbers are always masked.
package ui

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

//go:embed templates/*.html templates/style.css
var files embed.FS

// Prefix is the path the web page is served under.
const Prefix = "/ui/"

// Config configures the web page.
type Config struct {
	// Store is the study's database; the page only reads it.
	Store *storage.Store
	// Users may sign in with their password (bcrypt hashes).
	Users []rules.UIUser
	// TrustedHeader names the header a reverse proxy names the signed-in
	// user in; believed only from TrustedProxies. "" = none.
	TrustedHeader  string
	TrustedProxies []netip.Prefix
	// SessionKey signs the cookies; empty = a random key (sessions end
	// with the process).
	SessionKey []byte
	// Secure marks the cookies Secure (the public URL is https).
	Secure bool
	// Location is the study's time zone, for dates and "today".
	Location *time.Location
	// Held lists the pauses in force in plain words (the kill switch and
	// paused senders); nil = none shown.
	Held func(context.Context) ([]string, error)
	// Projects are the study's project names, for the worklists.
	Projects []string
	// Mask hides most of a phone number or address (engine.Redact); nil
	// hides all of it.
	Mask func(string) string
	// Log receives sign-ins and errors (nil = discard).
	Log logrus.FieldLogger
	// Now is the clock (nil = time.Now).
	Now func() time.Time
}

// UI serves the web page; it is an http.Handler for paths under Prefix.
type UI struct {
	cfg     Config
	users   map[string][]byte
	sign    signer
	revoked *revocations
	logins  *limiter
	pages   map[string]*template.Template
	mux     *http.ServeMux
}

// Errors of New.
var (
	ErrNoSignIn         = errors.New("ui: nobody can sign in: list server.ui.users or set server.ui.trusted_header")
	ErrHeaderNoProxies  = errors.New("ui: server.ui.trusted_header is set but server.trusted_proxies is empty: the header would be believed from nobody; list the proxy's address in server.trusted_proxies")
	ErrShortSessionKey  = errors.New("ui: the session key is shorter than 32 bytes: use e.g. the output of `openssl rand -hex 32`")
	errNoStore          = errors.New("ui: no store given")
	pageNames           = []string{"login", "overview", "worklist", "participant", "error"}
	minSessionKeyLength = 32
)

// New checks cfg and returns the web page.
func New(cfg Config) (*UI, error) {
	if cfg.Store == nil {
		return nil, errNoStore
	}
	if len(cfg.Users) == 0 && cfg.TrustedHeader == "" {
		return nil, ErrNoSignIn
	}
	if cfg.TrustedHeader != "" && len(cfg.TrustedProxies) == 0 {
		return nil, ErrHeaderNoProxies
	}
	if n := len(cfg.SessionKey); n > 0 && n < minSessionKeyLength {
		return nil, ErrShortSessionKey
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Mask == nil {
		cfg.Mask = func(string) string { return "••••" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		l := logrus.New()
		l.Out = discard{}
		cfg.Log = l
	}
	key := cfg.SessionKey
	if len(key) == 0 {
		key = []byte(randomToken(32))
	}
	u := &UI{cfg: cfg, users: map[string][]byte{}, sign: signer{key},
		revoked: &revocations{set: map[string]time.Time{}}, logins: &limiter{byIP: map[string]*rate.Limiter{}}, pages: map[string]*template.Template{}}
	for _, us := range cfg.Users {
		if _, err := bcrypt.Cost([]byte(us.PasswordHash)); err != nil {
			return nil, errors.New("ui: user " + strconv.Quote(us.Name) + ": the password hash is not a bcrypt hash")
		}
		u.users[us.Name] = []byte(us.PasswordHash)
	}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(u.funcs()).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		u.pages[name] = t
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ui/style.css", u.style)
	mux.HandleFunc("GET /ui/login", u.loginForm)
	mux.HandleFunc("POST /ui/login", u.login)
	mux.HandleFunc("POST /ui/logout", u.signedIn(u.logout))
	mux.HandleFunc("GET /ui/{$}", u.signedIn(u.overview))
	mux.HandleFunc("GET /ui/worklist", u.signedIn(u.worklist))
	mux.HandleFunc("GET /ui/participant", u.signedIn(u.participant))
	u.mux = mux
	return u, nil
}

// ServeHTTP serves the web page.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	u.mux.ServeHTTP(w, r)
}

func (u *UI) now() time.Time { return u.cfg.Now() }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// signedIn sends whoever is not signed in to the sign-in form.
func (u *UI) signedIn(next func(http.ResponseWriter, *http.Request, session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, ok := u.user(r)
		if !ok {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		next(w, r, s)
	}
}

func (u *UI) style(w http.ResponseWriter, r *http.Request) {
	b, _ := files.ReadFile("templates/style.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Write(b)
}

// loginPage is what the sign-in form shows.
type loginPage struct {
	Token, Error, Name string
}

func (u *UI) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := u.user(r); ok {
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	u.showLogin(w, http.StatusOK, "", "")
}

// showLogin renders the form with a fresh anti-forgery token, kept in a
// cookie and signed into the form.
func (u *UI) showLogin(w http.ResponseWriter, status int, msg, name string) {
	nonce := randomToken(18)
	http.SetCookie(w, u.cookie(loginCookie, nonce, int(loginTTL/time.Second)))
	u.render(w, status, "login", page{Title: "Sign in", Data: loginPage{Token: u.sign.mac("login", nonce), Error: msg, Name: name}})
}

func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "the sign-in form could not be read", http.StatusBadRequest)
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostForm.Get("token"), u.sign.mac("login", c.Value)) {
		u.showLogin(w, http.StatusForbidden, "The sign-in form had expired. Please sign in again.", "")
		return
	}
	addr, now := u.clientAddr(r), u.now()
	if !u.logins.allowed(addr, now) {
		w.Header().Set("Retry-After", strconv.Itoa(int(LoginEvery/time.Second)))
		u.cfg.Log.WithField("remote", addr).Warn("ui: sign-in refused: too many failed attempts")
		u.showLogin(w, http.StatusTooManyRequests, "Too many failed sign-ins from here. Wait a minute and try again.", "")
		return
	}
	name, password := r.PostForm.Get("name"), r.PostForm.Get("password")
	if !u.checkPassword(name, password) {
		u.logins.failed(addr, now)
		u.cfg.Log.WithField("remote", addr).Warn("ui: failed sign-in")
		u.showLogin(w, http.StatusUnauthorized, "The name or password is wrong.", name)
		return
	}
	s := session{user: name, expires: now.Add(SessionTTL), nonce: randomToken(18)}
	http.SetCookie(w, u.cookie(sessionCookie, u.sign.encode(s), int(SessionTTL/time.Second)))
	http.SetCookie(w, u.cookie(loginCookie, "", -1))
	u.cfg.Log.WithFields(logrus.Fields{"remote": addr, "user": name}).Info("ui: signed in")
	http.Redirect(w, r, Prefix, http.StatusSeeOther)
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request, s session) {
	if s.nonce == "" { // named by the proxy: nothing to end here
		http.Redirect(w, r, Prefix, http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil || !sameToken(r.PostForm.Get("token"), u.sign.mac("logout", s.nonce)) {
		http.Error(w, "the sign-out form was not sent by this page", http.StatusForbidden)
		return
	}
	u.revoked.revoke(s.nonce, s.expires, u.now())
	http.SetCookie(w, u.cookie(sessionCookie, "", -1))
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// page is what the layout needs besides a page's own data.
type page struct {
	Title       string
	User        string
	LogoutToken string // "" = no sign-out button
	Data        any
}

func (u *UI) page(s session, title string, data any) page {
	p := page{Title: title, User: s.user, Data: data}
	if s.nonce != "" {
		p.LogoutToken = u.sign.mac("logout", s.nonce)
	}
	return p
}

func (u *UI) render(w http.ResponseWriter, status int, name string, p page) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := u.pages[name].Execute(w, p); err != nil {
		u.cfg.Log.WithError(err).WithField("page", name).Error("ui: rendering a page")
	}
}

// fail logs err and shows a page that says only that reading failed.
func (u *UI) fail(w http.ResponseWriter, s session, err error) {
	u.cfg.Log.WithError(err).Error("ui: reading the database")
	u.render(w, http.StatusInternalServerError, "error", u.page(s, "Error", "The database could not be read; nudge's log says why."))
}

func (u *UI) funcs() template.FuncMap {
	return template.FuncMap{
		"mask": u.cfg.Mask,
		"when": func(t time.Time) string {
			if t.IsZero() {
				return "—"
			}
			return t.In(u.cfg.Location).Format("2006-01-02 15:04 MST")
		},
	}
}
