package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/templates"
)

var errUsage = errors.New("usage")

const usage = `nudge sends study participants the messages their REDCap rules call for.

Usage:
  nudge check   [--config nudge.yaml]          validate config, rule files and templates
  nudge preview [--config nudge.yaml] [--rule NAME] [--record ID] [--all] [--as-of TIME]
                                              who would get which message, and who is excluded and why
  nudge run     [--config nudge.yaml]          one full pass (for cron)
  nudge serve   [--config nudge.yaml] [--listen ADDR]
                                              the daemon: webhooks, schedules, status poller, write-back
  nudge demo    [--json] [--db FILE] [--serve ADDR]
                                              the bundled demo study against built-in simulators
  nudge version

Secrets (REDCap tokens, Twilio and SMTP credentials) come from the environment
variables the config names. Exit status: 0 fine, 1 problems found, 2 usage.
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
		fmt.Fprintln(stdout, "nudge", version())
		return nil
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "preview":
		return cmdPreview(ctx, rest, stdout, stderr)
	case "run":
		return cmdRun(ctx, rest, stdout, stderr)
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "nudge: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
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

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("check", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	study, err := loadStudy(c.config, stdout)
	if err != nil {
		return err
	}
	checked := 0
	for _, p := range study.Config.Projects {
		if p.Dictionary != "" {
			checked++
		}
	}
	fmt.Fprintf(stdout, "%s: SUCCESS: %d rule(s) in %d file(s); fields checked against %d of %d data dictionaries\n",
		c.config, len(study.Rules), len(study.Files), checked, len(study.Config.Projects))
	for _, r := range study.Rules {
		if r.SMS == nil {
			continue
		}
		seg := templates.Count(r.SMS.Body.Source())
		fmt.Fprintf(stdout, "  %s: template %s is %s, %d segment(s) before piping\n", r.Name, r.SMS.Name, seg.Encoding, seg.Count)
	}
	return nil
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

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("run", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	e, err := open(ctx, c, stdout, stderr, false)
	if err != nil {
		return err
	}
	defer e.Close()
	res, err := e.RunLocked(ctx, owner(), engine.PlanOptions{})
	if errors.Is(err, engine.ErrBusy) {
		return &exitError{code: 1, err: fmt.Errorf("%w; try again later", err)}
	}
	if res != nil && res.Plan != nil {
		printSummaries(stdout, res.Plan.Summaries(e))
		fmt.Fprintf(stdout, "enqueued %d, sent %d, retried %d, failed %d; polled %d (%d final); written back %d (%d refused)\n",
			res.Enqueued, res.Dispatch.Sent, res.Dispatch.Retried, res.Dispatch.Failed,
			res.Track.Polled, res.Track.Final, res.Report.Imported, res.Report.Rejected)
	}
	return err
}

func printSummaries(w io.Writer, sums []engine.RuleSummary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tCHANNEL\tSELECTED\tPLANNED\tDEFERRED\tSKIPPED\tALREADY SENT\tEXCLUDED")
	for _, s := range sums {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Name, s.Channel, s.Selected, s.Planned, s.Deferred, s.Skipped, s.Done, s.Excluded)
	}
	tw.Flush()
}

func cmdPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("preview", stderr)
	rule := fs.String("rule", "", "only this rule")
	record := fs.String("record", "", "only this record id")
	all := fs.Bool("all", false, "also list excluded participants (default: only with --rule or --record)")
	asOf := fs.String("as-of", "", `evaluate as if it were this time ("2026-11-23 10:00" in the study time zone, or RFC 3339)`)
	if err := parse(fs, args); err != nil {
		return err
	}
	e, err := open(ctx, c, stdout, stderr, true)
	if err != nil {
		return err
	}
	defer e.Close()
	snaps, err := e.Export(ctx)
	if err != nil {
		return err
	}
	var opt engine.PlanOptions
	if *rule != "" {
		if e.Study.Rule(*rule) == nil {
			return &exitError{code: 1, err: fmt.Errorf("no rule named %q", *rule)}
		}
		opt.Rules = map[string]bool{*rule: true}
	}
	if *record != "" {
		opt.Records = map[string]bool{*record: true}
	}
	now := e.Clock.Now()
	if *asOf != "" {
		if now, err = parseTime(*asOf, e.Study.Config.Location); err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--as-of: %w", err)}
		}
	}
	plan, err := e.Plan(ctx, snaps, now, opt)
	if err != nil {
		return err
	}
	printPlan(stdout, plan, *all || *rule != "" || *record != "")
	printSummaries(stdout, plan.Summaries(e))
	return nil
}

// parseTime reads a time as a coordinator writes it, in the study's zone,
// or as RFC 3339.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	for _, layout := range []string{"2006-01-02 15:04", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a time like \"2026-11-23 10:00\"", s)
	}
	return t, nil
}

func printPlan(w io.Writer, plan *engine.Plan, withExcluded bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tRECORD\tEVENT\tINSTANCE\tDECISION\tREASON")
	ds := append([]engine.Decision(nil), plan.Decisions...)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].Rule < ds[j].Rule })
	for _, d := range ds {
		if d.Outcome == engine.Excluded && !withExcluded {
			continue
		}
		inst := ""
		if d.Instance > 0 {
			inst = fmt.Sprint(d.Instance)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Rule, d.Record, dash(d.Event), dash(inst), d.Outcome, oneLine(d.Reason))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("demo", stderr)
	asJSON := fs.Bool("json", false, "print the summary as one JSON object")
	db := fs.String("db", "", "keep the demo's SQLite database in this file (a second run then sends nothing new)")
	dir := fs.String("dir", "testdata/demo", "the demo study folder")
	serveAddr := fs.String("serve", "", "also serve the webhooks on this address (e.g. 127.0.0.1:8080) until interrupted")
	c.logLevel = "error"
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	opt := demo.Options{Dir: *dir, DBPath: *db, Log: log}
	if *serveAddr != "" {
		l, err := net.Listen("tcp", *serveAddr)
		if err != nil {
			return err
		}
		if !flagSet(fs, "log-level") {
			log.SetLevel(logrus.InfoLevel) // a daemon logs what it does
		}
		opt.AuthToken = os.Getenv("TWILIO_AUTH_TOKEN")
		return demo.Serve(ctx, opt, l, stdout)
	}
	if isTerminal(stderr) {
		opt.Progress = progressLine(stderr)
	}
	sum, err := demo.Run(ctx, opt)
	if opt.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		var errs rules.Errors
		if errors.As(err, &errs) {
			return printProblems(errs, stdout)
		}
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(sum)
	}
	printDemo(stdout, sum)
	return nil
}

func printDemo(w io.Writer, s *demo.Summary) {
	fmt.Fprintf(w, "nudge demo: the Healthy Steps study, 2 REDCap projects, against the built-in REDCap, Twilio and SMTP simulators\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tCHANNEL\tSELECTED\tSENT\tDELIVERED\tUNDELIVERED\tFAILED\tSKIPPED\tDEFERRED")
	for _, r := range s.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Name, r.Channel, r.Selected, r.Sent, r.Delivered, r.Undelivered, r.Failed, r.Skipped, r.Deferred)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nemails: %d sent, %d received by the SMTP server\n", s.Emails.Sent, s.Emails.ReceivedBySMTP)
	fmt.Fprintf(w, "statuses written back to REDCap: %d; duplicates: %d\n", s.WrittenBack, s.Duplicates)
	for _, p := range s.Pacing {
		fmt.Fprintf(w, "pacing %s: %d sends, %.2f messages/s, shortest gap %.3f s\n", p.From, p.Sends, p.RatePerSecond, p.MinIntervalS)
	}
	if len(s.Skips) > 0 {
		fmt.Fprintln(w, "\nskipped participants:")
		for _, k := range s.Skips {
			fmt.Fprintf(w, "  %s, record %s: %s\n", k.Rule, k.Record, oneLine(k.Reason))
		}
	}
	fmt.Fprintf(w, "\nfinished in %.1f s\n", s.WallSeconds)
}

func flagSet(fs *flag.FlagSet, name string) (set bool) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func progressLine(w io.Writer) func(engine.Progress) {
	var mu sync.Mutex
	return func(p engine.Progress) {
		mu.Lock()
		defer mu.Unlock()
		switch p.Stage {
		case "dispatch":
			fmt.Fprintf(w, "\r\033[Ksending %d/%d (%s)", p.Done, p.Total, p.Message)
		case "track":
			fmt.Fprintf(w, "\r\033[Kwaiting for %d delivery report(s)", p.Total)
		default:
			fmt.Fprintf(w, "\r\033[K%s…", p.Stage)
		}
	}
}
