package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// owner names this process in the database's pass lock: host, pid and
// process start plus a random part (storage.NewOwner), since two containers
// may share a host name and both be PID 1, and so that the next `nudge run`
// takes over the lock of one that was killed.
func owner() string {
	return storage.NewOwner()
}

// cmdServe runs the daemon until SIGINT or SIGTERM; SIGHUP reads the rules
// and templates again (engine.ServeOptions.Reload). Unlike run and preview
// it starts without REDCap: the webhooks must answer STOP and HELP during
// a REDCap maintenance window, so the data dictionary check and the first
// export happen in the background, once REDCap answers (see engine.Serve).
func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("serve", stderr)
	listen := fs.String("listen", "", "address to listen on (default: server.listen in the config)")
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}
	study, err := loadStudy(c.config, stdout)
	if err != nil {
		return err
	}
	cfg := study.Config
	if cfg.Server.PublicURL == "" {
		return &exitError{code: 1, err: fmt.Errorf("%s: server.public_url is not set: Twilio signs its webhooks for the URL it calls, so nudge must know it", cfg.Path)}
	}
	// Every secret serve needs, reported at once when some are missing.
	var prior rules.SecretProblems
	secret := ""
	if cfg.Server.TriggerSecretEnv != "" || cfg.Server.TriggerSecretFile != "" {
		secret = prior.Read(cfg, "server.trigger_secret", cfg.Server.TriggerSecretEnv, cfg.Server.TriggerSecretFile)
	}
	var uiKey []byte
	if ui := cfg.Server.UI; ui != nil && (ui.SessionKeyEnv != "" || ui.SessionKeyFile != "") {
		uiKey = []byte(prior.Read(cfg, "server.ui.session_key", ui.SessionKeyEnv, ui.SessionKeyFile))
	}
	token := ""
	if cfg.Twilio != nil && !study.Uses("sms") {
		token = prior.Read(cfg, "twilio.auth_token", cfg.Twilio.AuthTokenEnv, cfg.Twilio.AuthTokenFile)
	}
	sec := engine.ReadSecrets(study, false, prior)
	if err := sec.Problems.Err(); err != nil {
		return &exitError{code: 1, err: err}
	}
	if cfg.Twilio != nil && study.Uses("sms") {
		token = sec.AuthToken
	}
	e, err := engine.New(study, engine.Options{Log: log, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer e.Close()
	addr := *listen
	if addr == "" {
		addr = cfg.Server.Listen
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var admin net.Listener
	if cfg.Server.AdminListen != "" {
		if admin, err = net.Listen("tcp", cfg.Server.AdminListen); err != nil {
			l.Close()
			return fmt.Errorf("%s: server.admin_listen: %w", cfg.Path, err)
		}
	}
	e.Instrument(metrics.New(e.Stats))
	reload, stop := hangups(ctx)
	defer stop()
	return e.Serve(ctx, l, engine.ServeOptions{Owner: owner(), AuthToken: token, TriggerSecret: secret, Reload: reload, Admin: admin,
		UISessionKey: uiKey})
}

// hangups turns SIGHUP into reload requests instead of the end of the
// process; a SIGHUP that comes while a reload is pending is folded into it.
// stop restores SIGHUP's default.
func hangups(ctx context.Context) (reload <-chan struct{}, stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case <-sig:
				select {
				case out <- struct{}{}:
				default:
				}
			}
		}
	}()
	return out, func() {
		signal.Stop(sig)
		close(done)
	}
}
