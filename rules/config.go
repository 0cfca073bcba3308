package rules

import (
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the administrator's file (nudge.yaml): the study time zone,
// storage, where rules and templates live, the REDCap projects and the
// message channels. Paths are resolved to absolute paths.
type Config struct {
	Path         string // the config file as given
	Dir          string // absolute directory of the config file
	Study        string // display name (optional)
	Timezone     string // IANA name of the study time zone
	Location     *time.Location
	Storage      Storage
	RuleGlobs    []string // as written, relative to Dir
	TemplatesDir string   // absolute
	Projects     []Project
	Twilio       *Twilio // nil when not configured
	SMTP         *SMTP   // nil when not configured
	Server       Server

	displayDir  string // Dir as the user typed it, for error positions
	ruleGlobPos []Pos  // where each rule glob is written
}

// Project is one REDCap project nudge reads from and writes back to.
type Project struct {
	Name       string
	RedcapURL  string
	TokenEnv   string // name of the environment variable holding the API token
	Dictionary string // absolute path of a data dictionary CSV, "" if none
	SMSFrom    string // the project's own E.164 sending number, "" = twilio.from
	Pos        Pos
}

// Twilio configures SMS sending. Credentials are environment variable names.
type Twilio struct {
	AccountSIDEnv  string
	AuthTokenEnv   string
	From           string  // E.164 sending number
	Region         string  // ISO 3166 country assumed for phone numbers written without +, e.g. "US"
	RatePerSecond  float64 // messages (segments) per second for each sending number
	APIBaseURL     string  // "" = Twilio's API; set only for simulators
	StatusCallback string  // URL Twilio posts status changes to, "" = none
	Pos            Pos
}

// SMTP configures email sending. Credentials are environment variable names.
type SMTP struct {
	Host        string
	Port        int
	UsernameEnv string // "" = no authentication
	PasswordEnv string
	From        string // RFC 5322 address, e.g. "Study Team <study@example.edu>"
	TLS         string // mandatory, opportunistic or none
	Pos         Pos
}

// Storage says where nudge keeps its state.
type Storage struct {
	Path string // absolute path of the SQLite database
	Pos  Pos
}

// Server configures `nudge serve`.
type Server struct {
	Listen    string
	PublicURL string
	Pos       Pos
}

// Defaults for optional config settings.
const (
	DefaultRatePerSecond = 0.95
	DefaultRegion        = "US"
	DefaultListen        = ":8080"
	DefaultSMTPPort      = 587
	DefaultStorage       = "nudge.db"
	DefaultTemplates     = "templates"
)

// DefaultRuleGlobs is where rule files are looked for when the config does
// not say.
var DefaultRuleGlobs = []string{"rules/*.yaml"}

var (
	projectNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	e164RE        = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	regionRE      = regexp.MustCompile(`^[A-Z]{2}$`)
)

// Project returns the project with the given name, or nil.
func (c *Config) Project(name string) *Project {
	for i := range c.Projects {
		if c.Projects[i].Name == name {
			return &c.Projects[i]
		}
	}
	return nil
}

// SenderFor is the number a project's SMS are sent from: the project's
// sms_from, else twilio.from ("" when SMS is not configured).
func (c *Config) SenderFor(project string) string {
	if p := c.Project(project); p != nil && p.SMSFrom != "" {
		return p.SMSFrom
	}
	if c.Twilio == nil {
		return ""
	}
	return c.Twilio.From
}

// ProjectNames lists the configured projects' names in order.
func (c *Config) ProjectNames() []string {
	names := make([]string, len(c.Projects))
	for i, p := range c.Projects {
		names[i] = p.Name
	}
	return names
}

// Secret reads the secret held by the environment variable envName. The
// error names the variable but never a value.
func (c *Config) Secret(envName string) (string, error) {
	if envName == "" {
		return "", fmt.Errorf("no environment variable configured for this secret: set the *_env key in %s", c.Path)
	}
	v, ok := os.LookupEnv(envName)
	if !ok || v == "" {
		return "", fmt.Errorf("environment variable %s is not set: export it before running nudge (its name comes from %s)", envName, c.Path)
	}
	return v, nil
}

// loadConfig reads and validates the config file. It returns nil when the
// file cannot be read or parsed at all.
func loadConfig(path string, errs *Errors) *Config {
	data, err := os.ReadFile(path)
	if err != nil {
		*errs = append(*errs, &Error{Pos: Pos{File: path}, Msg: fmt.Sprintf("cannot read the config file: %v", unwrapPathError(err))})
		return nil
	}
	absDir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		*errs = append(*errs, &Error{Pos: Pos{File: path}, Msg: fmt.Sprintf("cannot resolve the config directory: %v", err)})
		return nil
	}
	root, src := parseYAML(path, data, errs)
	if root == nil {
		if len(*errs) == 0 {
			*errs = append(*errs, &Error{Pos: Pos{File: path}, Msg: "the config file is empty: it needs at least timezone: and projects:"})
		}
		return nil
	}
	d := &decoder{src: src, errs: errs}
	c := &Config{Path: path, Dir: absDir, displayDir: filepath.Dir(path)}
	c.decode(d, root)
	return c
}

// unwrapPathError drops the path from an *os.PathError: callers already
// print the path as the position.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (c *Config) decode(d *decoder, root *yaml.Node) {
	m := d.mapping(root, "the config", "study", "timezone", "storage", "rules", "templates",
		"projects", "twilio", "smtp", "server")
	if m == nil {
		return
	}
	if n := m.get("study"); n != nil {
		c.Study, _ = d.str(n, "study")
	}
	if n := m.get("timezone"); n != nil {
		if tz, ok := d.str(n, "timezone"); ok {
			loc, err := loadZone(tz)
			if err != nil {
				d.errorf(n, "timezone: %v", err)
			}
			c.Timezone, c.Location = tz, loc
		}
	} else {
		d.errorAt(d.pos(root), "timezone is required: add the study time zone, e.g. timezone: America/Los_Angeles")
	}

	c.Storage = Storage{Path: filepath.Join(c.Dir, DefaultStorage), Pos: d.pos(root)}
	if n := m.get("storage"); n != nil {
		c.Storage.Pos = d.pos(n)
		if sm := d.mapping(n, "storage", "path"); sm != nil {
			if pn := sm.get("path"); pn != nil {
				if p, ok := d.str(pn, "storage.path"); ok && p != "" {
					c.Storage.Path = c.abs(p)
				}
			}
		}
	}

	c.RuleGlobs = DefaultRuleGlobs
	c.ruleGlobPos = []Pos{d.pos(root)}
	if n := m.get("rules"); n != nil {
		if items, ok := d.list(n, "rules"); ok {
			c.RuleGlobs, c.ruleGlobPos = nil, nil
			for _, it := range items {
				if g, ok := d.str(it, "rules"); ok {
					if _, err := filepath.Match(g, ""); err != nil {
						d.errorf(it, "rules: bad glob %q: %v", g, err)
						continue
					}
					c.RuleGlobs = append(c.RuleGlobs, g)
					c.ruleGlobPos = append(c.ruleGlobPos, d.pos(it))
				}
			}
		}
	}

	c.TemplatesDir = c.abs(DefaultTemplates)
	if n := m.get("templates"); n != nil {
		if t, ok := d.str(n, "templates"); ok && t != "" {
			c.TemplatesDir = c.abs(t)
		}
	}

	if n := m.get("projects"); n != nil {
		c.decodeProjects(d, n)
	} else {
		d.errorAt(d.pos(root), "projects is required: list the REDCap projects (name, redcap_url, token_env)")
	}
	if n := m.get("twilio"); n != nil {
		c.Twilio = decodeTwilio(d, n)
	}
	if n := m.get("smtp"); n != nil {
		c.SMTP = decodeSMTP(d, n)
	}
	c.Server = Server{Listen: DefaultListen, Pos: d.pos(root)}
	if n := m.get("server"); n != nil {
		c.Server = decodeServer(d, n)
	}
}

// abs resolves p against the config directory.
func (c *Config) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.Dir, p)
}

// display resolves p against the config directory as the user typed it,
// for messages.
func (c *Config) display(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.displayDir, p)
}

// loadZone loads an IANA zone, refusing the machine-dependent "Local" and
// the empty name.
func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("%q is not an IANA time zone name: use e.g. America/Chicago", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q: use an IANA name such as America/Chicago", name)
	}
	return loc, nil
}

func (c *Config) decodeProjects(d *decoder, n *yaml.Node) {
	items, ok := d.list(n, "projects")
	if !ok {
		return
	}
	if len(items) == 0 {
		d.errorf(n, "projects: list at least one REDCap project")
	}
	seen := map[string]Pos{}
	for _, it := range items {
		m := d.mapping(it, "a project", "name", "redcap_url", "token_env", "dictionary", "sms_from")
		if m == nil {
			continue
		}
		p := Project{Pos: d.pos(it)}
		if v := m.get("name"); v != nil {
			if s, ok := d.str(v, "name"); ok {
				switch {
				case !projectNameRE.MatchString(s):
					d.errorf(v, "project name %q: use only a-z, 0-9, '_' and '-'", s)
				case seen[s] != Pos{}:
					d.errorf(v, "duplicate project name %q (first at line %d): names must be unique", s, seen[s].Line)
				default:
					seen[s] = p.Pos
				}
				p.Name = s
			}
		} else {
			d.errorf(it, "a project needs a name")
		}
		if v := m.get("redcap_url"); v != nil {
			if s, ok := d.str(v, "redcap_url"); ok {
				if err := checkURL(s); err != nil {
					d.errorf(v, "redcap_url: %v", err)
				}
				p.RedcapURL = s
			}
		} else {
			d.errorf(it, "project %q needs redcap_url (the REDCap API URL, e.g. https://redcap.example.edu/api/)", p.Name)
		}
		if v := m.get("token_env"); v != nil {
			p.TokenEnv = envName(d, v, "token_env")
		} else if m.missing("token_env") {
			d.errorf(it, "project %q needs token_env: the name of the environment variable holding its API token", p.Name)
		}
		if v := m.get("dictionary"); v != nil {
			if s, ok := d.str(v, "dictionary"); ok {
				p.Dictionary = c.abs(s)
			}
		}
		if v := m.get("sms_from"); v != nil {
			p.SMSFrom = e164(d, v, "sms_from")
		}
		c.Projects = append(c.Projects, p)
	}
}

// envName decodes the name of an environment variable.
func envName(d *decoder, n *yaml.Node, what string) string {
	s, ok := d.str(n, what)
	if !ok {
		return ""
	}
	if !envNameRE.MatchString(s) {
		d.errorf(n, "%s: %q is not an environment variable name (letters, digits, '_'); put the secret in the environment and its name here", what, s)
	}
	return s
}

// e164 decodes a phone number that must be in E.164 form.
func e164(d *decoder, n *yaml.Node, what string) string {
	s, ok := d.str(n, what)
	if ok && !e164RE.MatchString(s) {
		d.errorf(n, "%s: %q is not an E.164 number: write it like \"+14155550100\" (quoted)", what, s)
	}
	return s
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

func decodeTwilio(d *decoder, n *yaml.Node) *Twilio {
	m := d.mapping(n, "twilio", "account_sid_env", "auth_token_env", "from", "region", "rate_per_second",
		"api_base_url", "status_callback")
	if m == nil {
		return nil
	}
	t := &Twilio{RatePerSecond: DefaultRatePerSecond, Pos: d.pos(n)}
	if v := m.get("account_sid_env"); v != nil {
		t.AccountSIDEnv = envName(d, v, "twilio.account_sid_env")
	} else if m.missing("account_sid_env") {
		d.errorf(n, "twilio needs account_sid_env: the environment variable holding the Account SID")
	}
	if v := m.get("auth_token_env"); v != nil {
		t.AuthTokenEnv = envName(d, v, "twilio.auth_token_env")
	} else if m.missing("auth_token_env") {
		d.errorf(n, "twilio needs auth_token_env: the environment variable holding the Auth Token")
	}
	if v := m.get("from"); v != nil {
		t.From = e164(d, v, "twilio.from")
	} else {
		d.errorf(n, "twilio needs from: the sending number in E.164 form, e.g. \"+14155550100\"")
	}
	t.Region = DefaultRegion
	if v := m.get("region"); v != nil {
		if s, ok := d.str(v, "twilio.region"); ok {
			if !regionRE.MatchString(s) {
				d.errorf(v, "twilio.region: %q is not a two-letter country code: write e.g. US or GB", s)
			}
			t.Region = s
		}
	}
	if v := m.get("rate_per_second"); v != nil {
		if r, ok := d.number(v, "twilio.rate_per_second"); ok {
			if r <= 0 || r >= 1 {
				d.errorf(v, "twilio.rate_per_second: %v is out of range: a long code sends less than 1 message per second (use e.g. %v)", r, DefaultRatePerSecond)
			}
			t.RatePerSecond = r
		}
	}
	if v := m.get("api_base_url"); v != nil {
		if s, ok := d.str(v, "twilio.api_base_url"); ok && s != "" {
			if err := checkURL(s); err != nil {
				d.errorf(v, "twilio.api_base_url: %v", err)
			}
			t.APIBaseURL = s
		}
	}
	if v := m.get("status_callback"); v != nil {
		if s, ok := d.str(v, "twilio.status_callback"); ok && s != "" {
			if err := checkURL(s); err != nil {
				d.errorf(v, "twilio.status_callback: %v", err)
			}
			t.StatusCallback = s
		}
	}
	return t
}

func decodeSMTP(d *decoder, n *yaml.Node) *SMTP {
	m := d.mapping(n, "smtp", "host", "port", "username_env", "password_env", "from", "tls")
	if m == nil {
		return nil
	}
	s := &SMTP{Port: DefaultSMTPPort, TLS: "mandatory", Pos: d.pos(n)}
	if v := m.get("host"); v != nil {
		s.Host, _ = d.str(v, "smtp.host")
	} else {
		d.errorf(n, "smtp needs host: the mail server's name")
	}
	if v := m.get("port"); v != nil {
		if p, ok := d.integer(v, "smtp.port"); ok {
			if p < 1 || p > 65535 {
				d.errorf(v, "smtp.port: %d is not a TCP port (1-65535)", p)
			}
			s.Port = p
		}
	}
	if v := m.get("username_env"); v != nil {
		s.UsernameEnv = envName(d, v, "smtp.username_env")
	}
	if v := m.get("password_env"); v != nil {
		s.PasswordEnv = envName(d, v, "smtp.password_env")
	}
	if (s.UsernameEnv == "") != (s.PasswordEnv == "") && !m.secrets["password_env"] {
		d.errorf(n, "smtp: set both username_env and password_env, or neither for a server without authentication")
	}
	if v := m.get("from"); v != nil {
		if f, ok := d.str(v, "smtp.from"); ok {
			if _, err := mail.ParseAddress(f); err != nil {
				d.errorf(v, "smtp.from: %q is not an email address: write e.g. \"Study Team <study@example.edu>\"", f)
			}
			s.From = f
		}
	} else {
		d.errorf(n, "smtp needs from: the sender address, e.g. \"Study Team <study@example.edu>\"")
	}
	if v := m.get("tls"); v != nil {
		if t, ok := d.str(v, "smtp.tls"); ok {
			switch t {
			case "mandatory", "opportunistic", "none":
				s.TLS = t
			default:
				d.errorf(v, "smtp.tls: %q is not one of mandatory, opportunistic, none%s", t,
					didYouMean(t, []string{"mandatory", "opportunistic", "none"}, "'%s'"))
			}
		}
	}
	return s
}

func decodeServer(d *decoder, n *yaml.Node) Server {
	s := Server{Listen: DefaultListen, Pos: d.pos(n)}
	m := d.mapping(n, "server", "listen", "public_url")
	if m == nil {
		return s
	}
	if v := m.get("listen"); v != nil {
		if l, ok := d.str(v, "server.listen"); ok {
			if !strings.Contains(l, ":") {
				d.errorf(v, "server.listen: %q needs a port, e.g. \":8080\" or \"127.0.0.1:8080\"", l)
			}
			s.Listen = l
		}
	}
	if v := m.get("public_url"); v != nil {
		if u, ok := d.str(v, "server.public_url"); ok && u != "" {
			if err := checkURL(u); err != nil {
				d.errorf(v, "server.public_url: %v", err)
			}
			s.PublicURL = u
		}
	}
	return s
}
