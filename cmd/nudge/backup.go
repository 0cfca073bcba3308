package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// cmdBackup writes a consistent copy of the study's database to FILE, safe
// while nudge serve or nudge run use it (see storage.Backup).
func cmdBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "nudge.yaml", "the config file (its storage.path is the database)")
	db := fs.String("db", "", "the database to back up (default: storage.path in the config)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0}
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: nudge backup [--config nudge.yaml | --db FILE] BACKUP-FILE")
		return errUsage
	}
	dest := fs.Arg(0)
	src := *db
	if src == "" {
		// Problems in the rule files do not stop a backup: only the
		// config's storage path is needed.
		study, err := rules.Load(*config)
		if study == nil || study.Config == nil {
			return err
		}
		src = study.Config.Storage.Path
	}
	if err := storage.Backup(ctx, src, dest); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s (integrity checked)\n", src, dest)
	return nil
}
