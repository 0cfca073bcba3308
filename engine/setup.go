package engine

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/storage"
)

// Options tune how New connects a study to the outside world.
type Options struct {
	Log      logrus.FieldLogger
	Clock    Clock  // nil: the real clock
	DBPath   string // overrides the config's storage path
	NoSend   bool   // preview: connect to REDCap only
	Timeout  time.Duration
	Progress func(Progress)
}

// New connects a loaded study: a REDCap client per project (tokens from the
// environment variables or files the config names; every secret that cannot
// be read is reported at once, see ReadSecrets), Twilio and SMTP when a rule
// uses them, and the SQLite store. Close releases them.
func New(study *rules.Study, opt Options) (*Engine, error) {
	cfg := study.Config
	e := &Engine{Study: study, Log: opt.Log, Clock: opt.Clock, Progress: opt.Progress, REDCap: make(map[string]REDCap)}
	for _, sim := range cfg.Simulators {
		e.log().WithField("simulator", sim).Warn("the environment points nudge at a simulator, not the real service")
	}
	if e.Clock == nil {
		e.Clock = sms.RealClock{}
	}
	sec := ReadSecrets(study, opt.NoSend, nil)
	if err := sec.Problems.Err(); err != nil {
		return nil, err
	}
	for _, p := range cfg.Projects {
		c, err := redcap.New(p.RedcapURL, sec.Tokens[p.Name], redcap.WithLogger(e.log().WithField("project", p.Name)))
		if err != nil {
			return nil, fmt.Errorf("project %s: %w", p.Name, err)
		}
		e.REDCap[p.Name] = c
	}
	if !opt.NoSend && study.Uses("sms") {
		c, err := sms.NewClient(sms.Config{AccountSID: sec.AccountSID, AuthToken: sec.AuthToken, BaseURL: cfg.Twilio.APIBaseURL,
			StatusCallback: cfg.Twilio.StatusCallback, Timeout: opt.Timeout, Services: cfg.Services()})
		if err != nil {
			return nil, fmt.Errorf("twilio: %w", err)
		}
		e.SMS = c
		if e.Pacer, err = newPacer(cfg, e.Clock); err != nil {
			return nil, fmt.Errorf("twilio: %w", err)
		}
	}
	if !opt.NoSend && study.Uses("email") {
		s, err := email.New(email.Config{Host: cfg.SMTP.Host, Port: cfg.SMTP.Port, Username: sec.SMTPUser, Password: sec.SMTPPassword,
			From: cfg.SMTP.From, TLS: cfg.SMTP.TLS, Timeout: opt.Timeout}, e.log())
		if err != nil {
			return nil, fmt.Errorf("smtp: %w", err)
		}
		e.Email = s
	}
	path := cfg.Storage.Path
	if opt.DBPath != "" {
		path = opt.DBPath
	}
	st, err := storage.Open(path)
	if err != nil {
		return nil, err
	}
	e.Store = st
	return e, nil
}

// Secrets are the credentials a study needs, read from the environment
// variables and files its config names.
type Secrets struct {
	Tokens                 map[string]string // REDCap API token by project name
	AccountSID, AuthToken  string            // Twilio, when a rule sends SMS
	SMTPUser, SMTPPassword string            // when a rule sends email and the server wants a login
	Problems               rules.SecretProblems
}

// ReadSecrets reads every secret the study needs (noSend: the REDCap tokens
// only) and records each one that cannot be read in Problems, after those
// already in prior, so that a coordinator fixes them all at once.
func ReadSecrets(study *rules.Study, noSend bool, prior rules.SecretProblems) Secrets {
	cfg := study.Config
	s := Secrets{Tokens: make(map[string]string), Problems: prior}
	p := &s.Problems
	for _, pr := range cfg.Projects {
		s.Tokens[pr.Name] = p.Read(cfg, "project "+pr.Name+": token", pr.TokenEnv, pr.TokenFile)
	}
	if !noSend && study.Uses("sms") {
		s.AccountSID = p.Read(cfg, "twilio.account_sid", cfg.Twilio.AccountSIDEnv, cfg.Twilio.AccountSIDFile)
		s.AuthToken = p.Read(cfg, "twilio.auth_token", cfg.Twilio.AuthTokenEnv, cfg.Twilio.AuthTokenFile)
	}
	if !noSend && study.Uses("email") && (cfg.SMTP.UsernameEnv != "" || cfg.SMTP.UsernameFile != "") {
		s.SMTPUser = p.Read(cfg, "smtp.username", cfg.SMTP.UsernameEnv, cfg.SMTP.UsernameFile)
		s.SMTPPassword = p.Read(cfg, "smtp.password", cfg.SMTP.PasswordEnv, cfg.SMTP.PasswordFile)
	}
	return s
}

// newPacer paces every configured sending number at its own rate (a long
// code below 1 segment/s, a toll-free number below 3, a short code below
// 100; see rules.Twilio.RateFor). A number no longer in the config (texts
// queued before it was removed) goes at the long-code rate, the slowest.
func newPacer(cfg *rules.Config, clk Clock) (*sms.Pacer, error) {
	p := sms.NewPacer(cfg.Twilio.RatePerSecond, clk)
	for number, rate := range cfg.Rates() {
		if err := p.SetRate(number, rate); err != nil {
			return nil, fmt.Errorf("sending number %s: %w", redact(number), err)
		}
	}
	return p, nil
}

// Close flushes the inbound writer and closes the store.
func (e *Engine) Close() error {
	if e.Store == nil {
		return nil
	}
	e.mu.Lock()
	w := e.inbound
	e.inbound = nil
	e.mu.Unlock()
	var err error
	if w != nil {
		err = w.Close()
	}
	return errors.Join(err, e.Store.Close())
}

// LoadDictionaries reads the data dictionary files the config names for
// offline checks; projects without one are left out.
func LoadDictionaries(cfg *rules.Config) (map[string]*dict.Dictionary, error) {
	out := make(map[string]*dict.Dictionary)
	for _, p := range cfg.Projects {
		if p.Dictionary == "" {
			continue
		}
		f, err := os.Open(p.Dictionary)
		if err != nil {
			return nil, fmt.Errorf("project %s: %w", p.Name, err)
		}
		d, err := dict.ParseCSV(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("project %s: data dictionary %s: %w", p.Name, p.Dictionary, err)
		}
		out[p.Name] = d
	}
	return out, nil
}
