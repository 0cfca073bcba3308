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
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/demo"
	"github.com/nudge-study/nudge/rules"
	"github.com/sirupsen/logrus"
)

// cmdDemo runs the bundled demo study against the built-in simulators.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("demo", stderr)
	asJSON := fs.Bool("json", false, "print the summary as one JSON object")
	db := fs.String("db", "", "keep the demo's SQLite database in this file (a second run then sends nothing new)")
	dir := fs.String("dir", "testdata/demo", "the study folder (its nudge.yaml, rule files, templates and redcap/ records)")
	asOf := fs.String("as-of", "", `the moment the study lives in ("2026-11-23 10:00" in the study time zone, or RFC 3339; default that time for the bundled demo, now for another folder)`)
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
	if *asOf != "" || flagSet(fs, "dir") {
		study, err := rules.Load(filepath.Join(*dir, "nudge.yaml"))
		var errs rules.Errors
		if errors.As(err, &errs) {
			return printProblems(errs, stdout)
		}
		if err != nil {
			return err
		}
		opt.AsOf = time.Now()
		if *asOf != "" {
			if opt.AsOf, err = parseTime(*asOf, study.Config.Location); err != nil {
				return &exitError{code: 2, err: fmt.Errorf("--as-of: %w", err)}
			}
		}
	}
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
	fmt.Fprintf(w, "nudge demo: the %s study, %d REDCap project(s), against the built-in REDCap, Twilio and SMTP simulators\n\n", s.Study, s.Projects)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tCHANNEL\tSELECTED\tSENT\tDELIVERED\tUNDELIVERED\tFAILED\tREVIEW\tSKIPPED\tDEFERRED")
	for _, r := range s.Rules {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", r.Name, r.Channel, r.Selected, r.Sent, r.Delivered, r.Undelivered, r.Failed, r.Review, r.Skipped, r.Deferred)
	}
	tw.Flush()
	fallback := ""
	if s.Emails.Fallback > 0 {
		fallback = fmt.Sprintf(" (%d instead of a text, by a rule's fallback)", s.Emails.Fallback)
	}
	fmt.Fprintf(w, "\nemails: %d sent%s, %d received by the SMTP server\n", s.Emails.Sent, fallback, s.Emails.ReceivedBySMTP)
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
