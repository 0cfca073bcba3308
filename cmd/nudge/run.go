package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

var errUsage = errors.New("usage")

const usage = `nudge sends study participants the messages their REDCap rules call for.

Usage:
  nudge init    --redcap-url URL --token-env VAR [--dir DIR] [--name NAME] [--force]
                                              a study folder (nudge.yaml, dictionary, an example rule) from a REDCap project
  nudge check   [--config nudge.yaml]          validate config, rule files and templates
  nudge preview [--config nudge.yaml] [--rule NAME] [--record ID] [--all] [--as-of TIME] [--records [PROJECT=]FILE] [--json]
                                              who would get which message (rendered), who is excluded and why; --records: no REDCap needed
  nudge test rules FILE...                     rule tests: records, moments, expected messages (testdata/demo/tests/README.md)
  nudge run     [--config nudge.yaml] [-v] [--wait DURATION]
                                              one full pass (for cron: quiet on success unless -v or a terminal)
  nudge serve   [--config nudge.yaml] [--listen ADDR]
                                              the daemon: webhooks, schedules, status poller, write-back
  nudge pause   [--config nudge.yaml] [--rule NAME | --project NAME] [--reason TEXT]
                                              the kill switch: send nothing (of that rule or project) until resumed
  nudge resume  [--config nudge.yaml] [--rule NAME | --project NAME]
                                              lift the kill switch (no flag: everything, paused senders too)
  nudge status  [--config nudge.yaml] [--record ID [--project NAME] | --phone NUMBER | --email ADDR | --rule NAME [--last N] | --runs N]
                [--json] [--show-contact] [--show-body]
                                              a participant's messages, statuses, replies and opt-out; a rule's counts and failures; the last runs
  nudge audit   [--config nudge.yaml] --since DATE [--until DATE] [--csv | --json] [--show-contact]
                                              every decision and event in a period, one row each (for an IRB)
  nudge logic   --dictionary DICT.csv [--record REC.json] [--as-of TIME] 'EXPR' | --all
                                              check REDCap logic against a dictionary, explain it on a record, or parse all of the dictionary's
  nudge sim     all|redcap|twilio|smtp ...     nudge's simulators as their own processes (nudge sim help)
  nudge demo    [--json] [--db FILE] [--serve ADDR]
                                              the bundled demo study against built-in simulators
  nudge backup  [--config nudge.yaml | --db FILE] BACKUP-FILE
                                              a consistent copy of the database (0600), safe while nudge serve runs
  nudge ui hash-password                       read a password from standard input, print its bcrypt hash (server.ui.users)
  nudge version                                version, VCS revision and Go version of this binary

Secrets (REDCap tokens, Twilio and SMTP credentials) come from the environment
variables (*_env) or files (*_file) the config names. Exit status: 0 fine,
1 problems found (or the pass failed), 2 usage, 4 sending was held back (a
paused sender or kill switch, Twilio or REDCap out of reach; the log says
why; the queue is kept), 5 another nudge is making a pass (nudge run did
nothing; --wait waits for it).
`

// run is the whole command line; main only turns signals into ctx.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version":
		printVersion(stdout)
		return nil
	case "backup":
		return cmdBackup(ctx, rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "init":
		return cmdInit(ctx, rest, stdout, stderr)
	case "preview":
		return cmdPreview(ctx, rest, stdout, stderr)
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "sim":
		return cmdSim(ctx, rest, stdout, stderr)
	case "logic":
		return cmdLogic(ctx, rest, stdout, stderr)
	case "test":
		if len(rest) > 0 && rest[0] == "rules" {
			return cmdTestRules(ctx, rest[1:], stdout, stderr)
		}
		fmt.Fprint(stderr, "nudge test: say what to test: nudge test rules FILE...\n")
		return errUsage
	case "status":
		return cmdStatus(ctx, rest, stdout, stderr)
	case "audit":
		return cmdAudit(ctx, rest, stdout, stderr)
	case "ui":
		return cmdUI(rest, stdout, stderr)
	case "pause":
		return cmdPause(ctx, rest, stdout, stderr)
	case "resume":
		return cmdResume(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "nudge: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

type common struct {
	config   string
	logLevel string
	logJSON  bool
}

func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet("nudge "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &common{}
	fs.StringVar(&c.config, "config", "nudge.yaml", "the config file")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&c.logJSON, "log-json", false, "log as JSON lines")
	return fs, c
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0}
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

func (c *common) logger(stderr io.Writer) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(stderr)
	lvl, err := logrus.ParseLevel(c.logLevel)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	l.SetLevel(lvl)
	if c.logJSON {
		l.SetFormatter(&logrus.JSONFormatter{})
	} else {
		l.SetFormatter(&logrus.TextFormatter{DisableColors: true, FullTimestamp: true})
	}
	return l, nil
}

// loadStudy loads and checks a study; problems are printed one per line as
// FILE:LINE:COL: message and end the command with exit status 1. Field
// names are checked even when the rule files have other problems, so a
// coordinator sees everything to fix at once.
func loadStudy(path string, stdout io.Writer) (*rules.Study, error) {
	study, err := rules.Load(path)
	var errs rules.Errors
	if err != nil && !errors.As(err, &errs) {
		return nil, err
	}
	if study != nil {
		dicts, err := engine.LoadDictionaries(study.Config)
		if err != nil && len(errs) == 0 {
			return nil, err
		}
		errs = append(errs, study.CheckFields(dicts)...)
	}
	if len(errs) > 0 {
		errs.Sort()
		return nil, printProblems(errs, stdout)
	}
	return study, nil
}

func printProblems(errs rules.Errors, stdout io.Writer) error {
	for _, e := range errs {
		fmt.Fprintln(stdout, e.Error())
	}
	return &exitError{code: 1, err: fmt.Errorf("%d problem(s) found; nothing was sent", len(errs))}
}

// open loads the study, connects it to REDCap (and, unless noSend, to
// Twilio and SMTP) and checks every field and event against REDCap's own
// data dictionary; any problem ends the command before anything is sent.
func open(ctx context.Context, c *common, stdout, stderr io.Writer, noSend bool) (*engine.Engine, error) {
	log, err := c.logger(stderr)
	if err != nil {
		return nil, err
	}
	study, err := loadStudy(c.config, stdout)
	if err != nil {
		return nil, err
	}
	e, err := engine.New(study, engine.Options{Log: log, NoSend: noSend, Timeout: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	for _, w := range e.Store.Warnings() {
		log.Warn("database: " + w)
	}
	err = e.Prepare(ctx)
	var errs rules.Errors
	if errors.As(err, &errs) {
		err = printProblems(errs, stdout)
	}
	if err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// cmdRun makes one full pass, for cron. When stdout is not a terminal and
// -v is not given, it is quiet on success: logs below warning are dropped
// (unless --log-level says otherwise) and no summary is printed, so cron
// mails only what needs a person.
func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("run", stderr)
	verbose := fs.Bool("v", false, "print the per-rule table and a one-line summary (the default on a terminal)")
	wait := fs.Duration("wait", 0, "when another nudge is making a pass, wait up to this long for it (e.g. 5m) instead of exiting 5")
	if err := parse(fs, args); err != nil {
		return err
	}
	talk := *verbose || isTerminal(stdout)
	if !talk && !flagSet(fs, "log-level") {
		c.logLevel = "warn"
	}
	e, err := open(ctx, c, stdout, stderr, false)
	if err != nil && unreachable(err) {
		return &exitError{code: exitHeld, err: err}
	}
	if err != nil {
		return err
	}
	defer e.Close()
	var meter *sendMeter
	if isTerminal(stderr) {
		// A live line on a terminal only: cron stays quiet.
		meter = newSendMeter(stderr, time.Now)
		e.Progress = meter.Progress
	}
	res, err := runWaiting(ctx, e, *wait)
	if meter != nil {
		meter.Done()
	}
	if errors.Is(err, engine.ErrBusy) {
		return &exitError{code: exitBusy, err: fmt.Errorf("%w; try again later (or give --wait)", err)}
	}
	if res != nil && res.Plan != nil && talk {
		printSummaries(stdout, res.Plan.Summaries(e))
		d := res.Dispatch
		fmt.Fprintf(stdout, "enqueued %d, sent %d, retried %d, failed %d, canceled %d, expired %d, held %d, unsettled %d, for review %d; polled %d (%d final); written back %d (%d refused)\n",
			res.Enqueued, d.Sent, d.Retried, d.Failed, d.Canceled, d.Expired, d.Held, d.Unsettled, d.Review,
			res.Track.Polled, res.Track.Final, res.Report.Imported, res.Report.Rejected)
	}
	if res != nil && err == nil {
		if p := res.Problems(); len(p) > 0 {
			for _, s := range p {
				fmt.Fprintln(stdout, "held back:", s)
			}
			return &exitError{code: exitHeld, err: fmt.Errorf("sending was held back (%d problem(s)); queued messages are kept", len(p))}
		}
	}
	if err != nil && (unreachable(err) || errors.Is(err, engine.ErrLeaseLost) || errors.Is(err, storage.ErrLocked)) {
		return &exitError{code: exitHeld, err: err}
	}
	return err
}

// busyPoll is how often runWaiting tries the pass lease again.
var busyPoll = 5 * time.Second

// runWaiting makes a pass under the pass lease; while another process
// holds it, it tries again every busyPoll for up to wait (0: not at all).
func runWaiting(ctx context.Context, e *engine.Engine, wait time.Duration) (*engine.RunResult, error) {
	deadline := time.Now().Add(wait)
	for {
		res, err := e.RunLocked(ctx, owner(), engine.PlanOptions{})
		left := time.Until(deadline)
		if !errors.Is(err, engine.ErrBusy) || left <= 0 {
			if errors.Is(err, engine.ErrBusy) && wait > 0 {
				err = fmt.Errorf("%w (waited %v)", err, wait)
			}
			return res, err
		}
		t := time.NewTimer(min(busyPoll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Exit statuses of nudge run besides 0 (done), 1 (the pass failed, or
// the study has problems) and 2 (usage).
const (
	// exitHeld: the pass could not send all it should have because a
	// sender or the kill switch is paused, Twilio or REDCap could not be
	// reached, the database was locked by another program, or the pass
	// lost its lease. Nothing queued is lost.
	exitHeld = 4
	// exitBusy: another nudge process (nudge serve, an earlier nudge run)
	// is making a pass on this database; this run did nothing. Harmless
	// now and then; every time means two schedulers run passes.
	exitBusy = 5
)

// unreachable reports whether a pass failed because REDCap could not be
// reached (a network failure or a server error), not because of the study.
func unreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || redcap.IsUnavailable(err)
}

func printSummaries(w io.Writer, sums []engine.RuleSummary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tCHANNEL\tSELECTED\tPLANNED\tDEFERRED\tSKIPPED\tALREADY SENT\tEXCLUDED")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Channel, s.Selected, s.Planned, s.Deferred, s.Skipped, s.Done, s.Excluded)
	}
	tw.Flush()
}
