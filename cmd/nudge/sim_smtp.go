package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nudge-study/nudge/engine/email/smtptest"
	"github.com/nudge-study/nudge/rules"
)

// cmdSimSMTP runs a real SMTP server on loopback that keeps every message
// it accepts in a maildir folder, until ctx ends.
func cmdSimSMTP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge sim smtp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:2525", "loopback address to listen on")
	maildir := fs.String("maildir", "", "folder the messages are written to (in its new/ folder)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *maildir == "" {
		fmt.Fprintln(stderr, "nudge sim smtp: --maildir is required: the folder the messages are written to")
		return errUsage
	}
	srv, err := smtptest.Start(smtptest.WithAddr(*listen), smtptest.WithMaildir(*maildir))
	if err != nil {
		return err
	}
	defer srv.Close()
	host, port := srv.Addr()
	fmt.Fprintf(stdout, "SMTP simulator on %s:%d; messages are written to %s\n", host, port, *maildir)
	fmt.Fprintf(stdout, "export %s=%s:%d\n", rules.EnvSimSMTP, host, port)
	<-ctx.Done()
	return nil
}
