package rules

import (
	"fmt"
	"hash/fnv"
	"math"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nudge-study/nudge/rules/logic"
)

// Config is the administrator's file (nudge.yaml): the study time zone,
// storage, where rules and templates live, the REDCap projects and the
// message channels. Paths are resolved to absolute paths.
type Config struct {
	Path     string // the config file as given
	Dir      string // absolute directory of the config file
	Study    string // display name (optional)
	Timezone string // IANA name of the study time zone
	Location *time.Location
	Storage  Storage
	// Simulators lists the outside services the environment redirected to
	// nudge's simulators (see EnvSimREDCap), in words; empty in production.
	Simulators   []string
	RuleGlobs    []string // as written, relative to Dir
	TemplatesDir string   // absolute
	Projects     []Project
	Twilio       *Twilio // nil when not configured
	SMTP         *SMTP   // nil when not configured
	Server       Server
	// QuietHours are the local hours (in each participant's zone) no text
	// goes out, whatever the rule's window says; nil = none. Email is
	// exempt.
	QuietHours *Window
	// Caps limit the texts one phone number gets across every rule and
	// project; zero values = no limit.
	Caps Caps
	// Reports configures the run reports to the study team; nil = none.
	Reports *Reports
	// Privacy says what nudge forgets, and when (defaultPrivacy when the
	// config has no privacy section).
	Privacy Privacy

	displayDir  string // Dir as the user typed it, for error positions
	ruleGlobPos []Pos  // where each rule glob is written
	pools       []poolNumber
}

// poolNumber is a number listed in a Messaging Service's pool, where it is
// written.
type poolNumber struct {
	number, service string
	pos             Pos
}

// Project is one REDCap project nudge reads from and writes back to.
type Project struct {
	Name       string
	RedcapURL  string
	TokenEnv   string // name of the environment variable holding the API token
	TokenFile  string // or the file holding it (token_file), see ReadSecretFile
	Dictionary string // absolute path of a data dictionary CSV, "" if none
	SMSFrom    string // the project's own sending number, "" = twilio's sender
	// SMSService is the project's own Messaging Service (MG…) and
	// SMSNumbers the numbers of its pool; "" = twilio's sender.
	SMSService string
	SMSNumbers []string
	ProjectID  int     // REDCap's project id (PID), 0 = not configured: Data Entry Triggers are refused
	OptOut     *OptOut // nil = STOP and START are not written back to REDCap
	// TimezoneField is the field holding participants' IANA zones that
	// every rule of the project reads unless its window names its own
	// (zero = the study zone).
	TimezoneField logic.Ref
	// Events and InstrumentEvents are the absolute paths of the project's
	// events and instrument-event mappings as downloaded from REDCap (CSV,
	// or the API's JSON), for checks offline; "" = none.
	Events, InstrumentEvents string
	Pos                      Pos
	// Surveys lists the instruments enabled as surveys in REDCap, for
	// `nudge check` without REDCap; nil = not listed (then only a check
	// against REDCap itself can tell).
	Surveys []string

	tzPos      Pos // where timezone_field is written
	surveysPos Pos
}

// OptOut names the REDCap field nudge writes when a participant of the
// project texts STOP (Value) or START (OptInValue).
type OptOut struct {
	Field      string
	Value      string // written on STOP, never blank
	OptInValue string // written on START, "" = nothing is written
	Pos        Pos    // the opt_out entry

	pos map[string]Pos // value positions: "field", "value", "opt_in_value"
}

// Twilio configures SMS sending. Credentials are environment variable names.
// Texts go out from one number (From) or from the numbers of a Messaging
// Service's pool (MessagingServiceSID and Numbers); projects may have their
// own sender.
type Twilio struct {
	AccountSIDEnv       string
	AuthTokenEnv        string
	AccountSIDFile      string   // account_sid_file, instead of AccountSIDEnv
	AuthTokenFile       string   // auth_token_file, instead of AuthTokenEnv
	From                string   // sending number (E.164 or a short code), "" when a Messaging Service sends
	MessagingServiceSID string   // MG…, "" when From sends
	Numbers             []string // the Messaging Service's numbers
	Region              string   // ISO 3166 country assumed for phone numbers written without +, e.g. "US"
	// RatePerSecond is the pace, in segments per second, of each long code
	// (an ordinary number). Toll-free numbers and short codes go at
	// DefaultTollFreeRate and DefaultShortCodeRate.
	RatePerSecond float64
	// Rates sets the pace of single numbers, overriding their kind's rate.
	Rates          map[string]float64
	APIBaseURL     string // "" = Twilio's API; set only for simulators
	StatusCallback string // URL Twilio posts status changes to, "" = none
	// LookupAfter is when an unanswered create is first looked up at
	// Twilio, and ResendAfter how long after the attempt the lookups must
	// have found nothing before it may be sent again.
	LookupAfter, ResendAfter time.Duration
	Pos                      Pos
}

// Defaults and floors of the timing of an unanswered create's lookups: a
// create Twilio took late needs time to show in its list.
const (
	DefaultLookupAfter = time.Minute
	DefaultResendAfter = 10 * time.Minute
	MinLookupAfter     = 5 * time.Second
	MinResendAfter     = 30 * time.Second
)

// SMTP configures email sending. Credentials are environment variable names.
type SMTP struct {
	Host         string
	Port         int
	UsernameEnv  string // "" (and UsernameFile "") = no authentication
	PasswordEnv  string
	UsernameFile string // username_file, instead of UsernameEnv
	PasswordFile string // password_file, instead of PasswordEnv
	From         string // RFC 5322 address, e.g. "Study Team <study@example.edu>"
	TLS          string // mandatory, opportunistic or none
	Pos          Pos
}

// Storage says where nudge keeps its state.
type Storage struct {
	Path string // absolute path of the SQLite database
	Pos  Pos
}

// Server configures `nudge serve`.
type Server struct {
	Listen    string
	PublicURL string // the address Twilio and REDCap post to, "" = not set
	// HelpText answers HELP and INFO; "" (not set) answers with an empty
	// TwiML response, for numbers where Twilio answers HELP itself.
	HelpText string
	// TriggerSecretEnv names the environment variable holding the secret
	// REDCap's Data Entry Trigger URL carries (?secret=…); "" = triggers
	// are refused.
	TriggerSecretEnv string
	// TriggerSecretFile is the file holding it instead
	// (trigger_secret_file).
	TriggerSecretFile string

	RunEvery       time.Duration // how often rules without a schedule are evaluated, 0 = never
	PollEvery      time.Duration // how often delivery statuses are polled
	WritebackEvery time.Duration // how often the write-back queue is sent to REDCap

	// AdminListen, when set, is the address /healthz and /metrics are
	// served on instead of Listen, e.g. "127.0.0.1:9090"; "" = on Listen.
	AdminListen string
	// TrustedProxies are the networks of the reverse proxies whose
	// X-Forwarded-For header names the client; nil = none, the TCP peer
	// is the client.
	TrustedProxies []netip.Prefix
	// Health holds the limits past which /healthz says unhealthy.
	Health HealthLimits
	// UI is the coordinator web page at /ui/; nil = not served.
	UI  *UI
	Pos Pos
}

// Defaults for optional config settings.
const (
	DefaultRatePerSecond = 0.95
	DefaultTollFreeRate  = 2.85 // just under a toll-free number's 3 segments/s
	DefaultShortCodeRate = 95   // just under a short code's 100 segments/s
	DefaultRegion        = "US"
	DefaultListen        = ":8080"
	DefaultSMTPPort      = 587
	DefaultStorage       = "nudge.db"
	DefaultTemplates     = "templates"

	DefaultRunEvery       = 15 * time.Minute
	DefaultPollEvery      = 15 * time.Second
	DefaultWritebackEvery = 15 * time.Second

	// MaxHelpText is the longest help_text Twilio accepts as one message body.
	MaxHelpText = 1600
)

// DefaultRuleGlobs is where rule files are looked for when the config does
// not say.
var DefaultRuleGlobs = []string{"rules/*.yaml"}

var (
	projectNameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	e164RE        = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	shortCodeRE   = regexp.MustCompile(`^[1-9][0-9]{4,5}$`)
	serviceSIDRE  = regexp.MustCompile(`^MG[0-9a-fA-F]{32}$`)
	// tollFreeRE matches the North American toll-free area codes.
	tollFreeRE = regexp.MustCompile(`^\+1(800|833|844|855|866|877|888)[0-9]{7}$`)
	regionRE   = regexp.MustCompile(`^[A-Z]{2}$`)
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

// Sender is where a project's SMS go out from: one number, or a Messaging
// Service and the numbers of its pool.
type Sender struct {
	Service string   // MG…, "" for a single number
	Numbers []string // the single number, or the service's pool
}

// SenderFor is where a project's SMS go out from: the project's own
// sms_from or sms_service, else twilio's from or messaging_service_sid
// (the zero Sender when SMS is not configured).
func (c *Config) SenderFor(project string) Sender {
	if p := c.Project(project); p != nil {
		switch {
		case p.SMSFrom != "":
			return Sender{Numbers: []string{p.SMSFrom}}
		case p.SMSService != "":
			return Sender{Service: p.SMSService, Numbers: p.SMSNumbers}
		}
	}
	switch {
	case c.Twilio == nil:
		return Sender{}
	case c.Twilio.MessagingServiceSID != "":
		return Sender{Service: c.Twilio.MessagingServiceSID, Numbers: c.Twilio.Numbers}
	case c.Twilio.From != "":
		return Sender{Numbers: []string{c.Twilio.From}}
	}
	return Sender{}
}

// Pick chooses the number a text to the recipient to goes out from. The
// choice is sticky: the same recipient always gets the same number of the
// pool, so a participant's texts stay in one conversation, and adding or
// removing a number moves only the recipients of that number (the number
// with the highest hash of number and recipient wins). "" when the sender
// has no number.
func (s Sender) Pick(to string) string {
	if len(s.Numbers) == 1 {
		return s.Numbers[0]
	}
	best, bestScore := "", uint64(0)
	for _, n := range s.Numbers {
		h := fnv.New64a()
		h.Write([]byte(n))
		h.Write([]byte{0})
		h.Write([]byte(to))
		if score := mix64(h.Sum64()); best == "" || score > bestScore {
			best, bestScore = n, score
		}
	}
	return best
}

// mix64 spreads the bits of an FNV hash (whose high bits barely change
// when only the last characters of its input do) over the whole word.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// Senders lists every configured sending number once: twilio's, then each
// project's, in the order written.
func (c *Config) Senders() []string {
	var out []string
	seen := map[string]bool{}
	add := func(ns ...string) {
		for _, n := range ns {
			if n != "" && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	if c.Twilio != nil {
		add(c.Twilio.From)
		add(c.Twilio.Numbers...)
	}
	for _, p := range c.Projects {
		add(p.SMSFrom)
		add(p.SMSNumbers...)
	}
	return out
}

// Services maps each number of a Messaging Service's pool to the service's
// SID (MG…). Sends from these numbers name the service too.
func (c *Config) Services() map[string]string {
	out := map[string]string{}
	if c.Twilio != nil && c.Twilio.MessagingServiceSID != "" {
		for _, n := range c.Twilio.Numbers {
			out[n] = c.Twilio.MessagingServiceSID
		}
	}
	for _, p := range c.Projects {
		for _, n := range p.SMSNumbers {
			out[n] = p.SMSService
		}
	}
	return out
}

// Rates gives the pace, in segments per second, of every configured
// sending number (see Twilio.RateFor).
func (c *Config) Rates() map[string]float64 {
	out := map[string]float64{}
	if c.Twilio == nil {
		return out
	}
	for _, n := range c.Senders() {
		out[n] = c.Twilio.RateFor(n)
	}
	return out
}

// RateFor is the pace of one sending number: its entry in Rates, else its
// kind's rate (RatePerSecond for a long code).
func (t *Twilio) RateFor(number string) float64 {
	if r, ok := t.Rates[number]; ok {
		return r
	}
	switch KindOf(number) {
	case TollFree:
		return DefaultTollFreeRate
	case ShortCode:
		return DefaultShortCodeRate
	}
	if t.RatePerSecond > 0 {
		return t.RatePerSecond
	}
	return DefaultRatePerSecond
}

// SenderKind is the kind of a sending number, which sets how many segments
// per second Twilio takes from it.
type SenderKind string

// The kinds of sending numbers.
const (
	LongCode  SenderKind = "long code"        // an ordinary number: below 1 segment/s
	TollFree  SenderKind = "toll-free number" // +1 800, 833, 844, 855, 866, 877, 888: up to 3/s
	ShortCode SenderKind = "short code"       // 5 or 6 digits: up to 100/s
)

// KindOf tells a sending number's kind from its form.
func KindOf(number string) SenderKind {
	switch {
	case shortCodeRE.MatchString(number):
		return ShortCode
	case tollFreeRE.MatchString(number):
		return TollFree
	}
	return LongCode
}

// Limit is the rate, in segments per second, Twilio takes from a sender of
// this kind; nudge paces each sender below it.
func (k SenderKind) Limit() float64 {
	switch k {
	case TollFree:
		return 3
	case ShortCode:
		return 100
	}
	return 1
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
		return "", fmt.Errorf("no environment variable or file configured for this secret: set the *_env or *_file key in %s", c.Path)
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
	c.applySimulators(d)
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
		"projects", "twilio", "smtp", "server", "quiet_hours", "caps", "reports", "privacy")
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
		c.decodeTwilio(d, n)
	}
	c.checkPools(d)
	if n := m.get("smtp"); n != nil {
		c.SMTP = c.decodeSMTP(d, n)
	}
	c.Server = defaultServer(d.pos(root))
	if n := m.get("server"); n != nil {
		c.Server = c.decodeServer(d, n)
	}
	if n := m.get("quiet_hours"); n != nil {
		if qm := d.mapping(n, "quiet_hours", "from", "to"); qm != nil {
			c.QuietHours = decodeClocks(d, n, qm, "quiet_hours")
		}
	}
	if n := m.get("caps"); n != nil {
		c.Caps = decodeCaps(d, n)
	}
	if n := m.get("reports"); n != nil {
		c.Reports = c.decodeReports(d, n)
	}
	c.Privacy = defaultPrivacy(d.pos(root))
	if n := m.get("privacy"); n != nil {
		c.Privacy = decodePrivacy(d, n)
	}
}

// decodeCaps reads caps: per_day and per_week, each a positive count.
func decodeCaps(d *decoder, n *yaml.Node) Caps {
	caps := Caps{Pos: d.pos(n)}
	m := d.mapping(n, "caps", "per_day", "per_week")
	if m == nil {
		return caps
	}
	for key, dst := range map[string]*int{"per_day": &caps.PerDay, "per_week": &caps.PerWeek} {
		v := m.get(key)
		if v == nil {
			continue
		}
		if k, ok := d.integer(v, "caps."+key); ok {
			if k < 1 {
				d.errorf(v, "caps.%s: %d is not a positive count of texts: write at least 1, or remove the key for no limit", key, k)
				continue
			}
			*dst = k
		}
	}
	if caps.PerDay > 0 && caps.PerWeek > 0 && caps.PerWeek < caps.PerDay {
		d.errorf(n, "caps: per_week %d is less than per_day %d, so per_day can never be reached: raise per_week or lower per_day", caps.PerWeek, caps.PerDay)
	}
	return caps
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
	pids := map[string]*Project{} // REDCap API endpoint + project id → first project using them
	for _, it := range items {
		m := d.mapping(it, "a project", "name", "redcap_url", "token_env", "token_file", "dictionary", "sms_from",
			"sms_service", "sms_numbers", "project_id", "opt_out",
			"timezone_field", "events", "instrument_events", "surveys")
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
		var given bool
		if p.TokenEnv, p.TokenFile, given = c.decodeSecret(d, m, "token", "token"); !given {
			d.errorf(it, "project %q needs token_env (the name of the environment variable holding its API token) or token_file (the file holding it)", p.Name)
		}
		if v := m.get("dictionary"); v != nil {
			if s, ok := d.str(v, "dictionary"); ok {
				p.Dictionary = c.abs(s)
			}
		}
		for key, dst := range map[string]*string{"events": &p.Events, "instrument_events": &p.InstrumentEvents} {
			if v := m.get(key); v != nil {
				if s, ok := d.str(v, key); ok {
					*dst = c.abs(s)
				}
			}
		}
		if v := m.get("timezone_field"); v != nil {
			p.tzPos = d.pos(v)
			p.TimezoneField = decodeZoneField(d, v, "timezone_field")
		}
		p.SMSFrom, p.SMSService, p.SMSNumbers = c.decodeSender(d, it, m, senderKeys{
			from: "sms_from", service: "sms_service", numbers: "sms_numbers"})
		if v := m.get("project_id"); v != nil {
			p.ProjectID = decodeProjectID(d, v, &p, pids)
		}
		if v := m.get("opt_out"); v != nil {
			p.OptOut = decodeOptOut(d, v, p.Name)
		}
		if v := m.get("surveys"); v != nil {
			p.surveysPos = d.pos(v)
			if items, ok := d.list(v, "surveys"); ok {
				p.Surveys = []string{}
				for _, it := range items {
					if s, ok := d.str(it, "surveys"); ok {
						p.Surveys = append(p.Surveys, s)
					}
				}
			}
		}
		c.Projects = append(c.Projects, p)
	}
}

// decodeProjectID reads a project's REDCap project id. pids holds the
// projects decoded so far by API endpoint and id: two projects of one
// REDCap with the same id could not be told apart by a Data Entry Trigger.
func decodeProjectID(d *decoder, v *yaml.Node, p *Project, pids map[string]*Project) int {
	id, ok := d.integer(v, "project_id")
	if !ok {
		return 0
	}
	if id < 1 {
		d.errorf(v, "project_id: %d is not a REDCap project id: write the positive number REDCap shows as PID (the pid= in the project's address)", id)
		return 0
	}
	if origin, dir, ok := endpoint(p.RedcapURL); ok {
		key := fmt.Sprintf("%s%s#%d", origin, dir, id)
		if first := pids[key]; first != nil {
			d.errorf(v, "project_id %d is already used by project %q (line %d) on the same REDCap: each project has its own id", id, first.Name, first.Pos.Line)
		} else {
			pids[key] = p
		}
	}
	return id
}

// decodeOptOut reads a project's opt_out entry.
func decodeOptOut(d *decoder, n *yaml.Node, project string) *OptOut {
	m := d.mapping(n, "opt_out", "field", "value", "opt_in_value")
	if m == nil {
		return nil
	}
	o := &OptOut{Pos: d.pos(n), pos: map[string]Pos{}}
	if v := m.get("field"); v != nil {
		o.pos["field"] = d.pos(v)
		if s, ok := d.str(v, "opt_out.field"); ok {
			if fieldNameRE.MatchString(s) {
				o.Field = s
			} else {
				d.errorf(v, "opt_out.field: %q is not a REDCap field name: write it without brackets, e.g. sms_opt_in", s)
			}
		}
	} else {
		d.errorf(n, "opt_out needs field: the REDCap field written when a participant of project %q texts STOP or START, e.g. field: sms_opt_in", project)
	}
	if v := m.get("value"); v != nil {
		o.pos["value"] = d.pos(v)
		if s, ok := d.str(v, "opt_out.value"); ok {
			if strings.TrimSpace(s) == "" {
				d.errorf(v, "opt_out.value is blank: write the value stored on STOP, e.g. value: \"0\"")
			}
			o.Value = s
		}
	} else {
		d.errorf(n, "opt_out needs value: the value written to the field when a participant texts STOP, e.g. value: \"0\"")
	}
	if v := m.get("opt_in_value"); v != nil {
		o.pos["opt_in_value"] = d.pos(v)
		if s, ok := d.str(v, "opt_out.opt_in_value"); ok {
			if s != "" && s == o.Value {
				d.errorf(v, "opt_out: value and opt_in_value are both %q, so STOP and START would write the same: use e.g. value: \"0\" and opt_in_value: \"1\"", s)
			}
			o.OptInValue = s
		}
	}
	return o
}

// endpoint reduces an http(s) URL to what identifies a REDCap server: its
// origin (lower-case scheme://host:port with the scheme's default port
// made explicit) and its path ending in "/". Query and fragment are
// ignored.
func endpoint(raw string) (origin, dir string, ok bool) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Host == "" {
		return "", "", false
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch {
	case scheme == "http" && port == "":
		port = "80"
	case scheme == "https" && port == "":
		port = "443"
	case scheme != "http" && scheme != "https":
		return "", "", false
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return "", "", false
	}
	return scheme + "://" + net.JoinHostPort(host, port), strings.TrimRight(u.Path, "/") + "/", true
}

// ProjectForTrigger finds the project a REDCap Data Entry Trigger is for:
// the DET's redcap_url (REDCap's base address, e.g.
// "https://redcap.example.edu/") must have the same scheme, host and port
// as the project's redcap_url, whose path must start with the DET's path,
// and projectID must be the project's project_id. Projects without a
// project_id never match. When several projects match (two REDCaps under
// one host), the one whose API path is closest to the DET's path wins.
func (c *Config) ProjectForTrigger(redcapURL string, projectID int) (*Project, bool) {
	if projectID < 1 {
		return nil, false
	}
	origin, dir, ok := endpoint(redcapURL)
	if !ok {
		return nil, false
	}
	var best *Project
	bestLen := 0
	for i := range c.Projects {
		p := &c.Projects[i]
		if p.ProjectID != projectID {
			continue
		}
		po, pdir, ok := endpoint(p.RedcapURL)
		if !ok || po != origin || !strings.HasPrefix(pdir, dir) {
			continue
		}
		if best == nil || len(pdir) < bestLen {
			best, bestLen = p, len(pdir)
		}
	}
	return best, best != nil
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

// senderNumber decodes a sending number: a phone number in E.164 form or a
// short code.
func senderNumber(d *decoder, n *yaml.Node, what string) string {
	s, ok := d.str(n, what)
	if ok && !e164RE.MatchString(s) && !shortCodeRE.MatchString(s) {
		d.errorf(n, "%s: %q is not an E.164 number: write it like \"+14155550100\" (quoted), or a short code like \"12345\"", what, s)
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

func (c *Config) decodeTwilio(d *decoder, n *yaml.Node) {
	m := d.mapping(n, "twilio", "account_sid_env", "auth_token_env", "account_sid_file", "auth_token_file", "from", "messaging_service_sid", "numbers",
		"region", "rate_per_second", "rates", "api_base_url", "status_callback", "unanswered_lookup_after",
		"unanswered_resend_after")
	if m == nil {
		return
	}
	t := &Twilio{RatePerSecond: DefaultRatePerSecond, LookupAfter: DefaultLookupAfter, ResendAfter: DefaultResendAfter, Pos: d.pos(n)}
	var given bool
	if t.AccountSIDEnv, t.AccountSIDFile, given = c.decodeSecret(d, m, "account_sid", "twilio.account_sid"); !given {
		d.errorf(n, "twilio needs account_sid_env (the environment variable holding the Account SID) or account_sid_file (the file holding it)")
	}
	if t.AuthTokenEnv, t.AuthTokenFile, given = c.decodeSecret(d, m, "auth_token", "twilio.auth_token"); !given {
		d.errorf(n, "twilio needs auth_token_env (the environment variable holding the Auth Token) or auth_token_file (the file holding it)")
	}
	t.From, t.MessagingServiceSID, t.Numbers = c.decodeSender(d, n, m, senderKeys{prefix: "twilio.",
		from: "from", service: "messaging_service_sid", numbers: "numbers", required: true})
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
				d.errorf(v, "twilio.rate_per_second: %v is out of range: a long code sends less than 1 message per second (use e.g. %v; toll-free numbers and short codes have their own rates, see twilio.rates)", r, DefaultRatePerSecond)
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
	durations := []struct {
		key   string
		into  *time.Duration
		floor time.Duration
	}{{"unanswered_lookup_after", &t.LookupAfter, MinLookupAfter}, {"unanswered_resend_after", &t.ResendAfter, MinResendAfter}}
	for _, k := range durations {
		v := m.get(k.key)
		if v == nil {
			continue
		}
		if s, ok := d.str(v, "twilio."+k.key); ok {
			dur, err := parseInterval(s, false)
			switch {
			case err != nil:
				d.errorf(v, "twilio.%s: %v", k.key, err)
			case dur < k.floor:
				d.errorf(v, "twilio.%s: %s is too short: Twilio may show a message it took only after a while; use at least %s", k.key, s, k.floor)
			default:
				*k.into = dur
			}
		}
	}
	if t.ResendAfter <= t.LookupAfter {
		d.errorf(n, "twilio.unanswered_resend_after (%s) must be longer than unanswered_lookup_after (%s): the lookups happen between them", t.ResendAfter, t.LookupAfter)
	}
	c.Twilio = t
	if v := m.get("rates"); v != nil {
		t.Rates = c.decodeRates(d, v)
	}
}

// senderKeys names the keys of a sender in a config section.
type senderKeys struct {
	prefix                 string // "twilio." or "" for a project's keys
	from, service, numbers string
	required               bool // the section must name a sender
}

// decodeSender reads a sender: one number, or a Messaging Service with the
// numbers of its pool.
func (c *Config) decodeSender(d *decoder, n *yaml.Node, m *mapping, k senderKeys) (from, service string, numbers []string) {
	fromNode, serviceNode, numbersNode := m.get(k.from), m.get(k.service), m.get(k.numbers)
	if fromNode != nil {
		from = senderNumber(d, fromNode, k.prefix+k.from)
	}
	if serviceNode != nil {
		if s, ok := d.str(serviceNode, k.prefix+k.service); ok {
			if !serviceSIDRE.MatchString(s) {
				d.errorf(serviceNode, "%s%s: %q is not a Messaging Service SID: copy it from the Twilio console (MG followed by 32 hex digits)", k.prefix, k.service, s)
			}
			service = s
		}
		if fromNode != nil {
			d.errorf(serviceNode, "%s%s and %s%s are both set: a sender is one number or one Messaging Service, remove one", k.prefix, k.from, k.prefix, k.service)
		}
		if numbersNode == nil {
			d.errorf(serviceNode, "%s%s needs %s%s: the numbers of the service's pool nudge sends from, e.g. [\"+14155550100\", \"+14155550101\"]", k.prefix, k.service, k.prefix, k.numbers)
		}
	}
	if numbersNode != nil {
		if serviceNode == nil {
			d.errorf(numbersNode, "%s%s lists the numbers of a Messaging Service: set %s%s (MG…) too, or write the one number as %s%s", k.prefix, k.numbers, k.prefix, k.service, k.prefix, k.from)
		}
		numbers = c.decodePool(d, numbersNode, k.prefix+k.numbers, service)
	}
	if k.required && fromNode == nil && serviceNode == nil && numbersNode == nil {
		d.errorf(n, "twilio needs from (the sending number in E.164 form, e.g. \"+14155550100\") or messaging_service_sid with numbers (a Messaging Service and the numbers of its pool)")
	}
	return from, service, numbers
}

// decodePool reads the numbers of a Messaging Service's pool.
func (c *Config) decodePool(d *decoder, n *yaml.Node, what, service string) []string {
	items, ok := d.list(n, what)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.errorf(n, "%s: list at least one number of the Messaging Service's pool", what)
	}
	var out []string
	seen := map[string]int{}
	for _, it := range items {
		num := senderNumber(d, it, what)
		if num == "" {
			continue
		}
		if line, dup := seen[num]; dup {
			d.errorf(it, "%s: %q is listed twice (first at line %d): remove one", what, num, line)
			continue
		}
		seen[num] = it.Line
		out = append(out, num)
		if service != "" {
			c.pools = append(c.pools, poolNumber{number: num, service: service, pos: d.pos(it)})
		}
	}
	return out
}

// checkPools refuses a number listed in the pools of two different
// Messaging Services: Twilio puts a number in one service only.
func (c *Config) checkPools(d *decoder) {
	first := map[string]poolNumber{}
	for _, p := range c.pools {
		f, ok := first[p.number]
		switch {
		case !ok:
			first[p.number] = p
		case f.service != p.service:
			d.errorAt(p.pos, "%q is already in Messaging Service %s (line %d): a number belongs to one service only, list it under that one", p.number, f.service, f.pos.Line)
		}
	}
}

// decodeRates reads twilio.rates: the pace of single sending numbers. Each
// number must be a configured sender, and its rate below what Twilio takes
// from a sender of its kind.
func (c *Config) decodeRates(d *decoder, n *yaml.Node) map[string]float64 {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "twilio.rates: expected a mapping of sending numbers to rates, e.g. { \"+18885550100\": 2.5 }, got %s", describe(n))
		return nil
	}
	senders := c.Senders()
	out := map[string]float64{}
	lines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		num, ok := d.str(k, "twilio.rates")
		if !ok {
			continue
		}
		if line, dup := lines[num]; dup {
			d.errorf(k, "twilio.rates: %q is listed twice (first at line %d): remove one", num, line)
			continue
		}
		lines[num] = k.Line
		if !contains(senders, num) {
			d.errorf(k, "twilio.rates: %q is not a sending number of this config (from, numbers, sms_from, sms_numbers): correct it or remove it", num)
			continue
		}
		r, ok := d.number(v, "twilio.rates")
		if !ok {
			continue
		}
		kind := KindOf(num)
		limit := kind.Limit()
		switch {
		case math.IsNaN(r) || math.IsInf(r, 0) || r <= 0:
			d.errorf(v, "twilio.rates: %v for %q: write a number of segments per second above 0", r, num)
			continue
		case r >= limit:
			unit := "segments"
			if limit == 1 {
				unit = "segment"
			}
			d.errorf(v, "twilio.rates: %v for %q is too fast: Twilio takes at most %v %s per second from a %s and nudge stays below that; write a rate below %v, e.g. %v",
				r, num, limit, unit, kind, limit, defaultRate(kind))
			continue
		}
		out[num] = r
	}
	return out
}

// defaultRate is the pace of a sender of kind k when nothing is configured.
func defaultRate(k SenderKind) float64 {
	switch k {
	case TollFree:
		return DefaultTollFreeRate
	case ShortCode:
		return DefaultShortCodeRate
	}
	return DefaultRatePerSecond
}

func (c *Config) decodeSMTP(d *decoder, n *yaml.Node) *SMTP {
	m := d.mapping(n, "smtp", "host", "port", "username_env", "password_env", "username_file", "password_file", "from", "tls")
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
	var user, pass bool
	s.UsernameEnv, s.UsernameFile, user = c.decodeSecret(d, m, "username", "smtp.username")
	s.PasswordEnv, s.PasswordFile, pass = c.decodeSecret(d, m, "password", "smtp.password")
	if user != pass {
		d.errorf(n, "smtp: set both a username (username_env or username_file) and a password (password_env or password_file), or neither for a server without authentication")
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

// defaultServer is the server section used when the config has none.
func defaultServer(pos Pos) Server {
	return Server{Listen: DefaultListen, RunEvery: DefaultRunEvery, PollEvery: DefaultPollEvery,
		WritebackEvery: DefaultWritebackEvery, Health: defaultHealth(DefaultRunEvery), Pos: pos}
}

func (c *Config) decodeServer(d *decoder, n *yaml.Node) Server {
	s := defaultServer(d.pos(n))
	m := d.mapping(n, "server", "listen", "public_url", "help_text", "trigger_secret_env", "trigger_secret_file", "run_every", "poll_every", "writeback_every",
		"admin_listen", "trusted_proxies", "health", "ui")
	if m == nil {
		return s
	}
	if v := m.get("ui"); v != nil {
		s.UI = c.decodeUI(d, v)
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
			if err := checkPublicURL(u); err != nil {
				d.errorf(v, "server.public_url: %v", err)
			}
			s.PublicURL = u
		}
	}
	s.TriggerSecretEnv, s.TriggerSecretFile, _ = c.decodeSecret(d, m, "trigger_secret", "server.trigger_secret")
	if v := m.get("help_text"); v != nil {
		if t, ok := d.str(v, "server.help_text"); ok {
			switch n := len([]rune(t)); {
			case strings.TrimSpace(t) == "":
				d.errorf(v, "server.help_text is blank: write the answer to HELP, e.g. \"Healthy Steps study: reply STOP to stop texts. Questions? Call (415) 555-0100.\", or leave help_text out where Twilio answers HELP itself")
			case n > MaxHelpText:
				d.errorf(v, "server.help_text is %d characters long: Twilio sends at most %d in one message, shorten it", n, MaxHelpText)
			default:
				s.HelpText = t
			}
		}
	}
	for _, iv := range []struct {
		key    string
		dst    *time.Duration
		zeroOK bool
	}{
		{"run_every", &s.RunEvery, true},
		{"poll_every", &s.PollEvery, false},
		{"writeback_every", &s.WritebackEvery, false},
	} {
		v := m.get(iv.key)
		if v == nil {
			continue
		}
		if str, ok := d.str(v, "server."+iv.key); ok {
			dur, err := parseInterval(str, iv.zeroOK)
			if err != nil {
				d.errorf(v, "server.%s: %v", iv.key, err)
				continue
			}
			*iv.dst = dur
		}
	}
	decodeMonitor(d, m, &s)
	return s
}

// checkPublicURL checks the base address nudge is reached at from outside.
func checkPublicURL(s string) error {
	u, err := url.Parse(s)
	if err == nil && u.User != nil {
		// Not quoted: it may hold a password.
		return fmt.Errorf("the URL must not hold a user name or password: Twilio requests are authenticated by their signature")
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL: write the address Twilio and REDCap reach nudge at, e.g. https://nudge.example.edu", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "#") {
		return fmt.Errorf("%q has a query or fragment: write only the scheme, host, port and path prefix", s)
	}
	return nil
}
