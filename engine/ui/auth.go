package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"

	"github.com/nudge-study/nudge/engine/webhook"
)

// Cookie names and lifetimes.
const (
	sessionCookie = "nudge_ui"
	loginCookie   = "nudge_ui_login"
	// SessionTTL is how long a sign-in lasts.
	SessionTTL = 8 * time.Hour
	loginTTL   = time.Hour
)

// Login rate limit: every client address gets LoginBurst failed sign-ins,
// then one more every LoginEvery.
const (
	LoginBurst = 5
	LoginEvery = time.Minute
)

var (
	errBadSession = errors.New("ui: no valid session")
	// dummyHash is compared against when the name is unknown, so that a
	// wrong name takes as long as a wrong password.
	dummyHash, _ = bcrypt.GenerateFromPassword([]byte("nudge-ui-no-such-user"), bcrypt.DefaultCost)
)

// session is a signed-in coordinator.
type session struct {
	user    string
	expires time.Time
	nonce   string // names this session: logout revokes it
}

// signer signs and checks cookie values with a key.
type signer struct{ key []byte }

func (s signer) mac(parts ...string) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func (s signer) valid(mac string, parts ...string) bool {
	return hmac.Equal([]byte(mac), []byte(s.mac(parts...)))
}

// randomToken returns n random bytes, base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("ui: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// encode is the cookie value of a session: user|expiry|nonce|mac, the user
// name base64url so it cannot hold a separator.
func (s signer) encode(ss session) string {
	u := base64.RawURLEncoding.EncodeToString([]byte(ss.user))
	exp := strconv.FormatInt(ss.expires.Unix(), 10)
	return u + "." + exp + "." + ss.nonce + "." + s.mac("session", u, exp, ss.nonce)
}

// decode checks a session cookie's signature and expiry.
func (s signer) decode(v string, now time.Time) (session, error) {
	p := strings.Split(v, ".")
	if len(p) != 4 || !s.valid(p[3], "session", p[0], p[1], p[2]) {
		return session{}, errBadSession
	}
	u, err := base64.RawURLEncoding.DecodeString(p[0])
	if err != nil {
		return session{}, errBadSession
	}
	exp, err := strconv.ParseInt(p[1], 10, 64)
	if err != nil || !now.Before(time.Unix(exp, 0)) {
		return session{}, errBadSession
	}
	return session{user: string(u), expires: time.Unix(exp, 0), nonce: p[2]}, nil
}

// revocations remembers the sessions signed out before their expiry.
type revocations struct {
	mu  sync.Mutex
	set map[string]time.Time // nonce → the session's expiry
}

func (r *revocations) revoke(nonce string, until, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for n, t := range r.set {
		if !now.Before(t) {
			delete(r.set, n)
		}
	}
	r.set[nonce] = until
}

func (r *revocations) revoked(nonce string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[nonce]
	return ok
}

// limiter limits failed sign-ins per client address.
type limiter struct {
	mu   sync.Mutex
	byIP map[string]*rate.Limiter
}

// allowed reports whether addr may try to sign in now.
func (l *limiter) allowed(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byIP[addr]
	return !ok || lim.TokensAt(now) >= 1
}

// failed counts a failed sign-in from addr.
func (l *limiter) failed(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.byIP) > 10000 {
		for a, lim := range l.byIP {
			if lim.TokensAt(now) >= LoginBurst {
				delete(l.byIP, a)
			}
		}
	}
	lim, ok := l.byIP[addr]
	if !ok {
		lim = rate.NewLimiter(rate.Every(LoginEvery), LoginBurst)
		l.byIP[addr] = lim
	}
	lim.AllowN(now, 1)
}

// checkPassword reports whether password is user's; it takes as long
// whether or not the user exists.
func (u *UI) checkPassword(user, password string) bool {
	hash, ok := u.users[user]
	if !ok {
		_ = bcrypt.CompareHashAndPassword(dummyHash, []byte(password))
		return false
	}
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// clientAddr is the address of the client (see webhook.ClientAddr).
func (u *UI) clientAddr(r *http.Request) string {
	return webhook.ClientAddr(r, u.cfg.TrustedProxies)
}

// fromProxy reports whether the TCP peer is a trusted proxy.
func (u *UI) fromProxy(r *http.Request) bool {
	return webhook.FromTrustedProxy(r, u.cfg.TrustedProxies)
}

// user returns who is signed in: the trusted proxy's header, or a valid,
// unrevoked session cookie.
func (u *UI) user(r *http.Request) (session, bool) {
	if h := u.cfg.TrustedHeader; h != "" && u.fromProxy(r) {
		if name := strings.TrimSpace(r.Header.Get(h)); name != "" {
			return session{user: name}, true
		}
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	s, err := u.sign.decode(c.Value, u.now())
	if err != nil || u.revoked.revoked(s.nonce) {
		return session{}, false
	}
	return s, true
}

// cookie makes a cookie of the web page's: HttpOnly, SameSite=Strict,
// Secure when the public URL is https, scoped to /ui/.
func (u *UI) cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/ui/", MaxAge: maxAge, HttpOnly: true,
		Secure: u.cfg.Secure, SameSite: http.SameSiteStrictMode}
}

// sameToken compares two tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
