package main

import (
	"context"
	"fmt"
	"io"
)

const simUsage = `Usage:
  nudge sim all --config nudge.yaml [--dir DIR]  every simulator the study needs, and the environment to export
  nudge sim redcap --listen ADDR --project PATH [--project PATH …] [--token-env PROJECT=VAR] [--user PROJECT=RIGHTS]
                                              the REDCap API for projects read from files (PATH: a folder
                                              holding dictionary.csv, or a prefix such as redcap/site_a for
                                              site_a.dictionary.csv and site_a.records.json); imports are saved back
  nudge sim smtp --listen ADDR --maildir DIR   a real SMTP server on loopback; each message to DIR/new
  nudge sim twilio --listen ADDR --journal FILE [--faults FILE] [--service MG…=+1…,+1…] [--callbacks]
                                              Twilio's Messages API; every create is appended to the journal (JSONL)

Simulators listen on loopback only. They print the environment to export so
that nudge check, preview, run and serve use them instead of the real services.
`

// cmdSim runs one of nudge's simulators as its own process until it is
// stopped (SIGINT/SIGTERM).
func cmdSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, simUsage)
		return errUsage
	}
	switch args[0] {
	case "all":
		return cmdSimAll(ctx, args[1:], stdout, stderr)
	case "redcap":
		return cmdSimREDCap(ctx, args[1:], stdout, stderr)
	case "smtp":
		return cmdSimSMTP(ctx, args[1:], stdout, stderr)
	case "twilio":
		return cmdSimTwilio(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, simUsage)
		return nil
	}
	fmt.Fprintf(stderr, "nudge sim: unknown simulator %q\n\n%s", args[0], simUsage)
	return errUsage
}
