package rules

import (
	"strings"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// UI configures the coordinator web page `nudge serve` serves at /ui/
// (server.ui in nudge.yaml). Coordinators sign in with a name and password
// from Users, or are named by a reverse proxy in TrustedHeader.
type UI struct {
	Users []UIUser
	// TrustedHeader is the request header a trusted reverse proxy names the
	// signed-in user in (e.g. X-Remote-User); "" = none. It is believed only
	// from the addresses in server.trusted_proxies.
	TrustedHeader string
	// SessionKeyEnv and SessionKeyFile name the secret session cookies are
	// signed with; both "" = a random key per process (sessions end when
	// nudge serve restarts).
	SessionKeyEnv, SessionKeyFile string
	Pos                           Pos
}

// UIUser is one coordinator who may sign in to the web page.
type UIUser struct {
	Name string
	// PasswordHash is the bcrypt hash of the password (`nudge ui
	// hash-password` makes one); never the password.
	PasswordHash string
	Pos          Pos
}

// decodeUI reads server.ui.
func (c *Config) decodeUI(d *decoder, n *yaml.Node) *UI {
	ui := &UI{Pos: d.pos(n)}
	m := d.mapping(n, "server.ui", "users", "trusted_header", "session_key_env", "session_key_file")
	if m == nil {
		return ui
	}
	if v := m.get("trusted_header"); v != nil {
		if h, ok := d.str(v, "server.ui.trusted_header"); ok {
			if h == "" || strings.ContainsAny(h, " :\t") {
				d.errorf(v, "server.ui.trusted_header: %q is not a header name: write one like X-Remote-User", h)
			}
			ui.TrustedHeader = h
		}
	}
	ui.SessionKeyEnv, ui.SessionKeyFile, _ = c.decodeSecret(d, m, "session_key", "server.ui.session_key")
	if v := m.get("users"); v != nil {
		if items, ok := d.list(v, "server.ui.users"); ok {
			seen := map[string]bool{}
			for _, it := range items {
				um := d.mapping(it, "server.ui.users[]", "name", "password_hash")
				if um == nil {
					continue
				}
				u := UIUser{Pos: d.pos(it)}
				if nv := um.get("name"); nv == nil {
					d.errorf(it, "server.ui.users: a user has no name: add name: ana")
				} else if s, ok := d.str(nv, "server.ui.users[].name"); ok {
					switch {
					case strings.TrimSpace(s) == "" || strings.ContainsAny(s, "|\n\r\t"):
						d.errorf(nv, "server.ui.users[].name: %q: write a plain name such as ana", s)
					case seen[s]:
						d.errorf(nv, "server.ui.users[].name: %q is listed twice", s)
					}
					seen[s], u.Name = true, s
				}
				if hv := um.get("password_hash"); hv == nil {
					d.errorf(it, "server.ui.users: user %q has no password_hash: make one with `nudge ui hash-password` (it reads the password from standard input)", u.Name)
				} else if s, ok := d.str(hv, "server.ui.users[].password_hash"); ok {
					if _, err := bcrypt.Cost([]byte(s)); err != nil {
						// Not quoted: it may be a password pasted by mistake.
						d.errorf(hv, "server.ui.users[].password_hash is not a bcrypt hash: make one with `nudge ui hash-password` and paste its output (quoted: it holds $ signs)")
					}
					u.PasswordHash = s
				}
				ui.Users = append(ui.Users, u)
			}
		}
	}
	if len(ui.Users) == 0 && ui.TrustedHeader == "" {
		d.errorf(n, "server.ui: nobody can sign in: list users (name and password_hash) or set trusted_header, or leave server.ui out")
	}
	return ui
}
