package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/metrics"
)

// owner names this process in the database's pass lock.
func owner() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid())
}

// cmdServe runs the daemon until SIGINT or SIGTERM.
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("serve", stderr)
	listen := fs.String("listen", "", "address to listen on (default: server.listen in the config)")
	if err := parse(fs, args); err != nil {
		return err
	}
	e, err := open(ctx, c, stdout, stderr, false)
	if err != nil {
		return err
	}
	defer e.Close()
	cfg := e.Study.Config
	if cfg.Server.PublicURL == "" {
		return &exitError{code: 1, err: fmt.Errorf("%s: server.public_url is not set: Twilio signs its webhooks for the URL it calls, so nudge must know it", cfg.Path)}
	}
	var token string
	if cfg.Twilio != nil {
		if token, err = cfg.Secret(cfg.Twilio.AuthTokenEnv); err != nil {
			return err
		}
	}
	addr := *listen
	if addr == "" {
		addr = cfg.Server.Listen
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	e.Instrument(metrics.New(e.Stats))
	return e.Serve(ctx, l, engine.ServeOptions{Owner: owner(), AuthToken: token})
}
