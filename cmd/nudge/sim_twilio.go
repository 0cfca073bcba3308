package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/nudge-study/nudge/engine/sms/twiliotest"
)

// Defaults of `nudge sim twilio`: test credentials, not secrets.
const (
	simAccountSID = "ACnudgesimulator"
	simAuthToken  = "nudgesimtoken"
)

// serviceFlags collects repeated --service MG…=+1…,+1… flags.
type serviceFlags map[string][]string

func (f serviceFlags) String() string { return "" }

func (f serviceFlags) Set(v string) error {
	sid, list, ok := strings.Cut(v, "=")
	if !ok || sid == "" || list == "" {
		return errors.New("want MG…=+14155550100,+14155550101")
	}
	f[sid] = strings.Split(list, ",")
	return nil
}

// cmdSimTwilio serves the Twilio simulator on a loopback address until ctx
// ends: `nudge sim twilio --listen ADDR --journal FILE`.
func cmdSimTwilio(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge sim twilio", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8089", "the loopback address to serve on (port 0: any free port)")
	journal := fs.String("journal", "", "append every create request to this file as a JSON line (required)")
	sid := fs.String("account-sid", simAccountSID, "the account SID requests must carry")
	tokenEnv := fs.String("auth-token-env", "", "the environment variable holding the auth token requests must carry (default: the token "+simAuthToken+")")
	callbacks := fs.Bool("callbacks", false, "POST status callbacks, signed like Twilio's, to each message's loopback StatusCallback")
	setup := fs.String("faults", "", "a JSON file of outcomes per number, faults and Messaging Service pools (the shape of testdata/demo/twilio.json, extended)")
	services := serviceFlags{}
	fs.Var(services, "service", "a Messaging Service and its pool, MG…=+14155550100,+14155550101 (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *journal == "" {
		fmt.Fprintln(stderr, "nudge sim twilio: --journal FILE is required")
		return errUsage
	}
	if err := loopbackAddr(*listen); err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--listen %s: %w", *listen, err)}
	}
	token := simAuthToken
	if *tokenEnv != "" {
		token = os.Getenv(*tokenEnv)
		if token == "" {
			return fmt.Errorf("--auth-token-env: the environment variable %s is empty; export the auth token there", *tokenEnv)
		}
	}
	var cfg twiliotest.Setup
	if *setup != "" {
		var err error
		if cfg, err = twiliotest.LoadSetup(*setup); err != nil {
			return fmt.Errorf("--faults %w", err)
		}
	}
	for id, pool := range services {
		if err := twiliotest.CheckService(id, pool); err != nil {
			return fmt.Errorf("--service: %w", err)
		}
	}

	f, err := os.OpenFile(*journal, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("--journal: %w", err)
	}
	defer f.Close()
	srv := twiliotest.New(twiliotest.Options{AccountSID: *sid, AuthToken: token, Callbacks: *callbacks, Journal: f})
	srv.Apply(cfg)
	srv.Apply(twiliotest.Setup{Services: services})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	base, err := srv.Serve(ln)
	if err != nil {
		ln.Close()
		return err
	}
	fmt.Fprintf(stdout, "nudge sim twilio: serving %s (journal %s)\n", base, *journal)
	fmt.Fprintf(stdout, "# set twilio.api_base_url: %s in nudge.yaml, and export:\n", base)
	fmt.Fprintf(stdout, "export NUDGE_SIM_TWILIO_URL=%s\n", base)
	fmt.Fprintf(stdout, "export TWILIO_ACCOUNT_SID=%s\n", *sid)
	if *tokenEnv == "" {
		fmt.Fprintf(stdout, "export TWILIO_AUTH_TOKEN=%s\n", token)
	} else {
		fmt.Fprintf(stdout, "# the auth token is the one in $%s\n", *tokenEnv)
	}

	<-ctx.Done()
	if err := srv.Close(); err != nil {
		return err
	}
	if err := srv.JournalErr(); err != nil {
		return fmt.Errorf("--journal %s: a create could not be recorded: %w", *journal, err)
	}
	return f.Close()
}

// loopbackAddr accepts HOST:PORT only when HOST is a loopback address or
// localhost: the simulator is never reachable from another machine.
func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return errors.New("the simulator listens only on a loopback address (127.0.0.1, [::1] or localhost)")
	}
	return nil
}
