package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// cmdPause sets the kill switch: no nudge process sends the messages it
// covers (everything, one project or one rule) until `nudge resume`. The
// messages stay queued; each is still checked against the participant's
// data, and its expiry, when it is finally sent.
func cmdPause(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return pauseOrResume(ctx, "pause", args, stdout, stderr)
}

// cmdResume lifts the kill switch: for one rule or project, or with no
// flag every setting of it and every paused sender.
func cmdResume(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return pauseOrResume(ctx, "resume", args, stdout, stderr)
}

func pauseOrResume(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags(name, stderr)
	rule := fs.String("rule", "", "only this rule")
	project := fs.String("project", "", "only this project")
	reason := fs.String("reason", "", "why (pause only), shown in /healthz and the run summary")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *rule != "" && *project != "" {
		fmt.Fprintf(stderr, "nudge %s: give --rule or --project, not both\n", name)
		return errUsage
	}
	study, err := rules.Load(c.config)
	if err != nil {
		return err
	}
	scope, target := storage.PauseAll, ""
	switch {
	case *rule != "":
		if study.Rule(*rule) == nil {
			return &exitError{code: 1, err: fmt.Errorf("no rule named %q in the rule files of %s", *rule, c.config)}
		}
		scope, target = storage.PauseRule, *rule
	case *project != "":
		if study.Config.Project(*project) == nil {
			return &exitError{code: 1, err: fmt.Errorf("no project named %q in %s", *project, c.config)}
		}
		scope, target = storage.PauseProject, *project
	}
	st, err := storage.Open(study.Config.Storage.Path)
	if err != nil {
		return err
	}
	defer st.Close()
	if name == "pause" {
		if err := st.SetPause(ctx, storage.Pause{Scope: scope, Name: target, Reason: *reason, At: time.Now()}); err != nil {
			return err
		}
	} else {
		if scope == storage.PauseAll {
			scope = "" // everything, paused senders included
		}
		if _, err := st.Resume(ctx, scope, target); err != nil {
			return err
		}
	}
	return printPauses(ctx, st, stdout)
}

// printPauses shows what holds sending back now.
func printPauses(ctx context.Context, st *storage.Store, w io.Writer) error {
	ps, err := st.Pauses(ctx)
	if err != nil {
		return err
	}
	senders, err := st.PausedSenders(ctx)
	if err != nil {
		return err
	}
	if len(ps) == 0 && len(senders) == 0 {
		fmt.Fprintln(w, "sending is not paused")
		return nil
	}
	for _, p := range ps {
		what := "everything"
		if p.Scope != storage.PauseAll {
			what = p.Scope + " " + p.Name
		}
		fmt.Fprintf(w, "paused: %s since %s", what, p.At.Local().Format("2006-01-02 15:04"))
		if p.Reason != "" {
			fmt.Fprintf(w, " (%s)", p.Reason)
		}
		fmt.Fprintln(w)
	}
	for _, p := range senders {
		fmt.Fprintf(w, "sender %s paused by nudge since %s: %s; tried again from %s\n", p.Sender,
			p.At.Local().Format("2006-01-02 15:04"), p.Reason, p.RetryAt.Local().Format("15:04"))
	}
	return nil
}
