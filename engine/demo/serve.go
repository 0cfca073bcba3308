package demo

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/webhook/webhooktest"
)

// Serve runs the demo study as `nudge serve` would, with its simulators, on
// l until ctx ends: public_url is http://<l's address>, so anyone can post
// signed webhooks to it. It prints how; the server makes the study's first
// pass at once.
func Serve(ctx context.Context, opt Options, l net.Listener, out io.Writer) error {
	public := "http://" + l.Addr().String()
	opt.StatusCallback = public + "/twilio/status"
	env, err := Start(opt)
	if err != nil {
		return err
	}
	defer env.Close()
	env.Study.Config.Server.PublicURL = public
	e := env.Engine
	if err := e.Prepare(ctx); err != nil {
		return err
	}
	e.Instrument(metrics.New(e.Stats))
	// A fresh Data Entry Trigger secret for each demo server.
	secret := rand.Text()
	env.printTryIt(out, public, secret)

	fmt.Fprintln(out, "The first pass over the demo study starts now (texts paced at 0.95/s per number); Ctrl-C stops the server.")
	return e.Serve(ctx, l, engine.ServeOptions{AuthToken: env.authToken, TriggerSecret: secret})
}

// printTryIt shows ready-to-paste requests: a signed STOP from a demo
// participant, a signed HELP, a Data Entry Trigger and the read-only pages.
func (env *Env) printTryIt(out io.Writer, public, triggerSecret string) {
	curl := func(path string, form url.Values, signed bool) string {
		var b strings.Builder
		b.WriteString("curl -s")
		if signed {
			fmt.Fprintf(&b, " -H 'X-Twilio-Signature: %s'", webhooktest.Sign(env.authToken, public+path, form))
		}
		for _, k := range sortedKeys(form) {
			fmt.Fprintf(&b, " -d '%s=%s'", k, url.QueryEscape(form.Get(k)))
		}
		fmt.Fprintf(&b, " %s%s", public, path)
		return b.String()
	}
	const alice = "+13125550104" // record 5 of site_a
	sms := func(sid, body string) url.Values {
		return url.Values{"MessageSid": {sid}, "AccountSid": {AccountSID}, "From": {alice}, "To": {"+14155550100"}, "Body": {body}}
	}
	stop := sms("SM00000000000000000000000000000001", "STOP")
	help := sms("SM00000000000000000000000000000002", "help")
	det := url.Values{"redcap_url": {strings.TrimSuffix(env.REDCapURL, "api/")}, "project_id": {"1001"},
		"record": {"5"}, "instrument": {"baseline"}, "baseline_complete": {"2"}, "username": {"coordinator"}}
	fmt.Fprintf(out, `nudge demo --serve: the demo study's webhooks are at %[1]s (public_url)

A participant (record 5 of site_a) replies STOP; nudge answers with TwiML, records the opt-out
and writes sms_opt_in = 0 back to the REDCap simulator:
  %[2]s

The same participant asks for help:
  %[3]s

REDCap's Data Entry Trigger for that record (it is read again through the API; the URL carries
this server's trigger secret, without which every trigger is refused):
  %[4]s

Health and metrics:
  curl -s %[1]s/healthz
  curl -s %[1]s/metrics | grep ^nudge_

Signatures use the Twilio auth token %[5]q (set TWILIO_AUTH_TOKEN to choose your own).

`, public, curl("/twilio/inbound", stop, true), curl("/twilio/inbound", help, true), curl("/redcap/trigger?secret="+triggerSecret, det, false), env.authToken)
}

func sortedKeys(v url.Values) []string { return slices.Sorted(maps.Keys(v)) }
