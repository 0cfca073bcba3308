// Package demo runs the bundled demo study end to end on nudge's real code
// paths: the REDCap API client against the in-process REDCap simulator,
// twilio-go against the Twilio simulator, go-mail against a real SMTP server
// on loopback, and the SQLite outbox in between.
package demo

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/email/smtptest"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/engine/sms/twiliotest"
	"github.com/nudge-study/nudge/rules"
)

// StudyTime is the moment the demo study lives in: Monday 23 November 2026,
// 10:00 in the study's time zone. The demo's clock starts there and runs at
// real speed, so quiet hours, datediff and repeat schedules give the same
// answers whatever the time of day the demo is run.
var StudyTime = time.Date(2026, 11, 23, 10, 0, 0, 0, mustZone("America/Los_Angeles"))

// Twilio credentials of the demo's simulator (not secrets: they open only
// the in-process simulator).
const (
	AccountSID = "ACd3m0000000000000000000000000000a"
	AuthToken  = "d3m0t0k3n0000000000000000000000a"
)

// Options tune a demo run.
type Options struct {
	Dir      string // the demo study folder (default testdata/demo)
	DBPath   string // keep the outbox here; "" = a temporary file
	Log      logrus.FieldLogger
	Progress func(engine.Progress)
	Settle   time.Duration // how long to wait for final statuses (default 30 s)
	// Clock, when set, drives the engine and the Twilio simulator instead
	// of the real-speed study clock; tests pass an sms.FakeClock so the
	// whole demo runs without waiting.
	Clock engine.Clock
	// AsOf is the moment the study lives in when Clock is nil: the clock
	// starts there and runs at real speed (default StudyTime).
	AsOf time.Time
	// Timeout bounds each call to a simulator (default 10 s).
	Timeout time.Duration
	// AuthToken is the Twilio simulator's auth token, which also signs
	// webhooks in `demo --serve` (default the demo's own).
	AuthToken string
	// StatusCallback, when set, is the URL the Twilio simulator posts
	// signed status callbacks to (a loopback URL), as Twilio would.
	StatusCallback string
	// ShuffleCallbacks makes the simulator send callbacks that are due
	// together newest first, as they sometimes arrive from Twilio.
	ShuffleCallbacks bool
}

// Summary is what `nudge demo --json` prints.
type Summary struct {
	Study       string       `json:"study"`    // the config's study name, or its folder's
	Projects    int          `json:"projects"` // REDCap projects
	Rules       []RuleResult `json:"rules"`
	Emails      EmailResult  `json:"emails"`
	WrittenBack int          `json:"written_back"`
	Duplicates  int          `json:"duplicates"`
	Pacing      []Pacing     `json:"pacing"`
	WallSeconds float64      `json:"wall_seconds"`
	Skips       []Skip       `json:"skips"`
}

// RuleResult counts one rule's messages in this demo run.
type RuleResult struct {
	Name        string `json:"name"`
	Channel     string `json:"channel"`
	Selected    int    `json:"selected"`
	Sent        int    `json:"sent"`
	Delivered   int    `json:"delivered"`
	Undelivered int    `json:"undelivered"`
	Failed      int    `json:"failed"`
	Review      int    `json:"review"` // sent, then set aside for a person (carrier filtering)
	Skipped     int    `json:"skipped"`
	Deferred    int    `json:"deferred"`
	// FallbackEmails are the emails an SMS rule sent instead of a text
	// that could not go (fallback); they are not in Sent.
	FallbackEmails int `json:"fallback_emails"`
}

// EmailResult compares what nudge sent with what the SMTP server received.
type EmailResult struct {
	Sent           int `json:"sent"`
	Fallback       int `json:"fallback"` // of Sent, emails sent as an SMS rule's fallback
	ReceivedBySMTP int `json:"received_by_smtp"`
}

// Pacing is the Twilio simulator's own measure of one sender's sends, from
// the times it recorded for its create calls. RatePerSecond is the highest
// rate between two consecutive creates (segments of the earlier message
// over the gap), so MinIntervalS ≥ 1/RatePerSecond and RatePerSecond < 1
// together say the number never went above Twilio's limit of one segment
// per second; MeanRatePerSecond is over the whole run.
type Pacing struct {
	From              string  `json:"from"` // the sending number, masked (engine.Redact)
	Sends             int     `json:"sends"`
	MinIntervalS      float64 `json:"min_interval_s"`
	RatePerSecond     float64 `json:"rate_per_second"`
	MeanRatePerSecond float64 `json:"mean_rate_per_second"`
	ConfiguredRate    float64 `json:"configured_rate_per_second"`
}

// Skip is one participant a rule selected but could not message.
type Skip struct {
	Rule   string `json:"rule"`
	Record string `json:"record"`
	Reason string `json:"reason"`
}

// Env is a running demo environment: the simulators and a connected engine.
type Env struct {
	Study  *rules.Study
	Engine *engine.Engine
	REDCap *redcaptest.Server
	Twilio *twiliotest.Server
	SMTP   *smtptest.Server
	// REDCapURL and TwilioURL are where the simulators listen.
	REDCapURL, TwilioURL string
	tokens               map[string]string
	authToken            string
	closer               []func()
}

// Start loads the demo study, starts the simulators and connects an engine
// to them.
func Start(opt Options) (*Env, error) {
	if opt.Dir == "" {
		opt.Dir = filepath.Join("testdata", "demo")
	}
	study, err := rules.Load(filepath.Join(opt.Dir, "nudge.yaml"))
	if err != nil {
		return nil, err
	}
	env := &Env{Study: study, tokens: make(map[string]string)}
	ok := false
	defer func() {
		if !ok {
			env.Close()
		}
	}()

	// REDCap: one simulated project per configured project.
	var projects []*redcaptest.Project
	var seeds []func() error
	for i, p := range study.Config.Projects {
		pr, rows, err := loadProject(p, i+1)
		if err != nil {
			return nil, err
		}
		env.tokens[p.Name] = pr.Token
		projects = append(projects, pr)
		seeds = append(seeds, func() error { return env.REDCap.Load(pr.Token, rows) })
	}
	env.REDCap = redcaptest.New(projects...)
	rcURL, err := env.REDCap.Start()
	if err != nil {
		return nil, err
	}
	env.REDCapURL = rcURL
	env.closer = append(env.closer, func() { env.REDCap.Close() })
	for _, seed := range seeds {
		if err := seed(); err != nil {
			return nil, fmt.Errorf("demo records: %w", err)
		}
	}

	// Twilio.
	clock := opt.Clock
	if clock == nil {
		clock = newStudyClock(cmp.Or(opt.AsOf, StudyTime))
	}
	env.authToken = cmp.Or(opt.AuthToken, AuthToken)
	env.Twilio = twiliotest.New(twiliotest.Options{AccountSID: AccountSID, AuthToken: env.authToken, Clock: clock,
		Callbacks: opt.StatusCallback != "", ShuffleCallbacks: opt.ShuffleCallbacks})
	if err := applyOutcomes(filepath.Join(opt.Dir, "twilio.json"), env.Twilio); err != nil {
		return nil, err
	}
	// The simulated account has the study's Messaging Services and pools.
	pools := map[string][]string{}
	for number, service := range study.Config.Services() {
		pools[service] = append(pools[service], number)
	}
	for service, numbers := range pools {
		env.Twilio.SetService(service, numbers)
	}
	twURL, err := env.Twilio.Start()
	if err != nil {
		return nil, err
	}
	env.TwilioURL = twURL
	env.closer = append(env.closer, func() { env.Twilio.Close() })

	// SMTP.
	if env.SMTP, err = smtptest.Start(); err != nil {
		return nil, err
	}
	env.closer = append(env.closer, func() { env.SMTP.Close() })
	host, port := env.SMTP.Addr()

	// Point the study at the simulators. Secrets go through the
	// environment, as in production.
	cfg := study.Config
	for i := range cfg.Projects {
		p := &cfg.Projects[i]
		p.RedcapURL = rcURL
		if err := os.Setenv(p.TokenEnv, env.tokens[p.Name]); err != nil {
			return nil, err
		}
	}
	if cfg.Twilio != nil { // a study may send email only
		cfg.Twilio.APIBaseURL = twURL
		if opt.StatusCallback != "" {
			cfg.Twilio.StatusCallback = opt.StatusCallback
		}
		os.Setenv(cfg.Twilio.AccountSIDEnv, AccountSID)
		os.Setenv(cfg.Twilio.AuthTokenEnv, env.authToken)
	}
	if cfg.SMTP != nil { // … or texts only
		cfg.SMTP.Host, cfg.SMTP.Port, cfg.SMTP.TLS = host, port, "none"
		cfg.SMTP.UsernameEnv, cfg.SMTP.PasswordEnv, cfg.SMTP.UsernameFile, cfg.SMTP.PasswordFile = "", "", "", ""
	}

	db := opt.DBPath
	if db == "" {
		dir, err := os.MkdirTemp("", "nudge-demo-")
		if err != nil {
			return nil, err
		}
		env.closer = append(env.closer, func() { os.RemoveAll(dir) })
		db = filepath.Join(dir, "demo.db")
	}
	env.Engine, err = engine.New(study, engine.Options{Log: opt.Log, Clock: clock, DBPath: db,
		Progress: opt.Progress, Timeout: cmp.Or(opt.Timeout, 10*time.Second)})
	if err != nil {
		return nil, err
	}
	env.closer = append(env.closer, func() { env.Engine.Close() })
	ok = true
	return env, nil
}

// Close stops the simulators and closes the store.
func (env *Env) Close() {
	for i := len(env.closer) - 1; i >= 0; i-- {
		env.closer[i]()
	}
	env.closer = nil
}

// Run starts the demo, makes one full pass, waits for every SMS to reach a
// final status while writing statuses back to REDCap, and summarises.
func Run(ctx context.Context, opt Options) (*Summary, error) {
	started := time.Now()
	env, err := Start(opt)
	if err != nil {
		return nil, err
	}
	defer env.Close()
	sum, err := env.Pass(ctx, opt.Settle)
	if err != nil {
		return nil, err
	}
	sum.WallSeconds = time.Since(started).Seconds()
	return sum, nil
}

// Pass makes one `nudge run` pass, then keeps tracking and reporting until
// every SMS of the pass has a final status (or settle runs out).
func (env *Env) Pass(ctx context.Context, settle time.Duration) (*Summary, error) {
	if settle <= 0 {
		settle = 30 * time.Second
	}
	e := env.Engine
	if err := e.Prepare(ctx); err != nil {
		return nil, err
	}
	res, err := e.Run(ctx, engine.PlanOptions{})
	if err != nil {
		return nil, err
	}
	deadline := e.Clock.Now().Add(settle)
	for {
		if _, err := e.Track(ctx); err != nil {
			return nil, err
		}
		if _, err := e.Report(ctx); err != nil {
			return nil, err
		}
		open, err := e.Store.Outstanding(ctx)
		if err != nil {
			return nil, err
		}
		if open == 0 || e.Clock.Now().After(deadline) {
			break
		}
		if e.Progress != nil {
			e.Progress(engine.Progress{Stage: "track", Total: open})
		}
		if err := e.Clock.Sleep(ctx, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
	return env.summarize(ctx, res)
}

func (env *Env) summarize(ctx context.Context, res *engine.RunResult) (*Summary, error) {
	e := env.Engine
	cfg := env.Study.Config
	sum := &Summary{Study: cmp.Or(cfg.Study, filepath.Base(cfg.Dir)), Projects: len(cfg.Projects)}
	counts, err := e.Store.Counts(ctx, res.RunID)
	if err != nil {
		return nil, err
	}
	// A rule's own channel fills its row; the emails an SMS rule sent as
	// its fallback are counted apart.
	byRule := make(map[string]map[string]int)
	for _, c := range counts {
		key := c.Rule + "\x00" + c.Channel
		if byRule[key] == nil {
			byRule[key] = make(map[string]int)
		}
		for state, n := range c.States {
			byRule[key][string(state)] += n
		}
	}
	for _, s := range res.Plan.Summaries(e) {
		st := byRule[s.Name+"\x00"+s.Channel]
		r := RuleResult{Name: s.Name, Channel: s.Channel, Selected: s.Selected, Skipped: s.Skipped, Deferred: s.Deferred,
			Delivered: st["delivered"], Undelivered: st["undelivered"], Failed: st["failed"], Review: st["review"]}
		r.Sent = r.Delivered + r.Undelivered + r.Failed + r.Review + st["sent"] + st["unknown"]
		if s.Channel == "email" {
			sum.Emails.Sent += st["sent"]
		} else {
			r.FallbackEmails = byRule[s.Name+"\x00email"]["sent"]
			sum.Emails.Sent += r.FallbackEmails
			sum.Emails.Fallback += r.FallbackEmails
		}
		sum.Rules = append(sum.Rules, r)
	}
	for _, d := range res.Plan.Decisions {
		if d.Outcome == engine.Skipped {
			sum.Skips = append(sum.Skips, Skip{Rule: d.Rule, Record: d.Record, Reason: d.Reason})
		}
	}
	sum.Emails.ReceivedBySMTP = len(env.SMTP.Messages())
	if sum.WrittenBack, err = e.Store.WrittenBack(ctx, res.RunID); err != nil {
		return nil, err
	}
	sum.Duplicates = env.duplicates()
	sum.Pacing = env.pacing()
	return sum, nil
}

// duplicates counts messages the simulators received more than once: the
// same body to the same number, or the same subject to the same address.
func (env *Env) duplicates() int {
	seen := make(map[string]int)
	for _, c := range env.Twilio.Creates() {
		seen["sms\x00"+c.To+"\x00"+c.Body]++
	}
	for _, m := range env.SMTP.Messages() {
		seen["email\x00"+fmt.Sprint(m.To)+"\x00"+m.Subject]++
	}
	n := 0
	for _, c := range seen {
		n += c - 1
	}
	return n
}

// pacing measures each sender's rate from the Twilio simulator's record of
// create calls.
func (env *Env) pacing() []Pacing {
	creates := make(map[string][]twiliotest.Create)
	for _, c := range env.Twilio.Creates() {
		creates[c.From] = append(creates[c.From], c)
	}
	var out []Pacing
	for from, cs := range creates {
		sort.Slice(cs, func(i, j int) bool { return cs[i].Time.Before(cs[j].Time) })
		p := Pacing{From: from, Sends: len(cs), ConfiguredRate: env.Study.Config.Twilio.RateFor(from)}
		if len(cs) > 1 {
			minGap := time.Duration(math.MaxInt64)
			var peak float64
			for i := 1; i < len(cs); i++ {
				gap := cs[i].Time.Sub(cs[i-1].Time)
				minGap = min(minGap, gap)
				peak = max(peak, float64(max(cs[i-1].Segments, 1))/gap.Seconds())
			}
			// Round the interval down and the rates up (to 1e-4): the
			// printed figures never look better than what was measured.
			p.MinIntervalS = math.Floor(minGap.Seconds()*1e4) / 1e4
			p.RatePerSecond = math.Ceil(max(peak, 1/p.MinIntervalS)*1e4) / 1e4
			p.MeanRatePerSecond = math.Ceil(float64(len(cs)-1)/cs[len(cs)-1].Time.Sub(cs[0].Time).Seconds()*1e4) / 1e4
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].From < out[j].From })
	for i := range out { // masked as in the logs: the demo prints it
		out[i].From = engine.Redact(out[i].From)
	}
	return out
}

// loadProject reads a project's files for the REDCap simulator: the
// dictionary the config names and, beside it, NAME.records.json and
// NAME.structure.json. The demo never saves imports back to them.
func loadProject(p rules.Project, id int) (*redcaptest.Project, []map[string]string, error) {
	prefix := strings.TrimSuffix(p.Dictionary, ".dictionary.csv")
	if p.Dictionary == "" || prefix == p.Dictionary {
		return nil, nil, fmt.Errorf("demo project %s: configure its data dictionary as dictionary: redcap/%s.dictionary.csv, with %s.records.json beside it", p.Name, p.Name, p.Name)
	}
	files, err := redcaptest.FindFiles(prefix)
	if err != nil {
		return nil, nil, err
	}
	pr, rows, err := redcaptest.LoadFiles(files, 1000+id)
	if err != nil {
		return nil, nil, err
	}
	pr.RecordsFile = "" // the study's files stay as they are
	pr.Token = cmp.Or(pr.Token, newToken())
	pr.Title = "Demo " + p.Name
	pr.MissingCodes = cmp.Or(pr.MissingCodes, "UNK, Unknown | NA, Not applicable")
	return pr, rows, nil
}

// applyOutcomes sets up the Twilio simulator from the study's twilio.json,
// when it has one.
func applyOutcomes(path string, tw *twiliotest.Server) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	setup, err := twiliotest.LoadSetup(path)
	if err != nil {
		return err
	}
	tw.Apply(setup)
	return nil
}

func newToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%X", b)
}

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// studyClock runs at real speed from a moment of the study's life.
type studyClock struct {
	sms.RealClock
	from, start time.Time
}

func newStudyClock(from time.Time) *studyClock { return &studyClock{from: from, start: time.Now()} }

func (c *studyClock) Now() time.Time { return c.from.Add(time.Since(c.start)) }

// Token is the API token of a project in the REDCap simulator.
func (env *Env) Token(project string) string { return env.tokens[project] }
