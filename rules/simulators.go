package rules

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
)

// The environment variables that point a study at nudge's simulators
// (`nudge sim all` prints them), so that `check`, `preview`, `run` and
// `serve` run unchanged against them before go-live. Each accepts only a
// loopback address: they can never send a study's traffic elsewhere.
const (
	EnvSimREDCap = "NUDGE_SIM_REDCAP_URL" // every project's REDCap API URL
	EnvSimTwilio = "NUDGE_SIM_TWILIO_URL" // Twilio's API base URL
	EnvSimSMTP   = "NUDGE_SIM_SMTP_ADDR"  // the SMTP server's host:port (plain SMTP)
)

// applySimulators points the config at the simulators named in the
// environment; a value that is not a loopback address is an error at the
// config's position. Simulators then lists what was redirected.
func (c *Config) applySimulators(d *decoder) {
	bad := func(env, v, kind, example string) {
		*d.errs = append(*d.errs, &Error{Pos: Pos{File: c.Path}, Msg: fmt.Sprintf(
			"environment variable %s is %q: it must be a loopback %s (a nudge simulator), e.g. %s; unset it to use the real service",
			env, v, kind, example)})
	}
	if v := os.Getenv(EnvSimREDCap); v != "" {
		if !loopbackURL(v) {
			bad(EnvSimREDCap, v, "URL", "http://127.0.0.1:8081/api/")
		} else {
			for i := range c.Projects {
				c.Projects[i].RedcapURL = v
			}
			c.Simulators = append(c.Simulators, "REDCap at "+v)
		}
	}
	if v := os.Getenv(EnvSimTwilio); v != "" {
		switch {
		case !loopbackURL(v):
			bad(EnvSimTwilio, v, "URL", "http://127.0.0.1:8082")
		case c.Twilio != nil:
			c.Twilio.APIBaseURL = v
			c.Simulators = append(c.Simulators, "Twilio at "+v)
		}
	}
	if v := os.Getenv(EnvSimSMTP); v != "" {
		host, port, err := net.SplitHostPort(v)
		n, perr := strconv.Atoi(port)
		switch {
		case err != nil || perr != nil || !loopbackHost(host):
			bad(EnvSimSMTP, v, "address", "127.0.0.1:2525")
		case c.SMTP != nil:
			// The simulator speaks plain SMTP without AUTH: no credentials
			// are needed (or sent) to try a study.
			c.SMTP.Host, c.SMTP.Port, c.SMTP.TLS = host, n, "none"
			c.SMTP.UsernameEnv, c.SMTP.PasswordEnv, c.SMTP.UsernameFile, c.SMTP.PasswordFile = "", "", "", ""
			c.Simulators = append(c.Simulators, "SMTP at "+v)
		}
	}
}

func loopbackURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && loopbackHost(u.Hostname())
}

func loopbackHost(h string) bool {
	ip := net.ParseIP(h)
	return h == "localhost" || ip != nil && ip.IsLoopback()
}
