package rules

import (
	"net/netip"
	"strings"
	"time"
)

// HealthLimits are the limits past which `nudge serve`'s /healthz answers
// 503 unhealthy (server.health in nudge.yaml). A zero duration turns its
// check off.
type HealthLimits struct {
	// MaxPassAge: no successful pass for this long (default 4 × run_every;
	// off when run_every is 0 and it is not set).
	MaxPassAge time.Duration
	// MaxPassDuration: a pass still running after this long.
	MaxPassDuration time.Duration
	// MaxDueAge: a message due for this long and still not sent.
	MaxDueAge time.Duration
	// MaxWritebackFailures: more write-backs than this failed for good or
	// retrying.
	MaxWritebackFailures int
	Pos                  Pos
}

// Defaults of server.health.
const (
	DefaultPassAgeRuns     = 4 // max_pass_age = this many × run_every
	DefaultMaxPassDuration = 30 * time.Minute
	DefaultMaxDueAge       = 30 * time.Minute
)

// defaultHealth is server.health when nudge.yaml leaves it out.
func defaultHealth(runEvery time.Duration) HealthLimits {
	return HealthLimits{MaxPassAge: DefaultPassAgeRuns * runEvery, MaxPassDuration: DefaultMaxPassDuration,
		MaxDueAge: DefaultMaxDueAge}
}

// decodeMonitor reads server.admin_listen, server.trusted_proxies and
// server.health into s, whose run_every is already read.
func decodeMonitor(d *decoder, m *mapping, s *Server) {
	s.Health = defaultHealth(s.RunEvery)
	if v := m.get("admin_listen"); v != nil {
		if l, ok := d.str(v, "server.admin_listen"); ok && l != "" {
			switch {
			case !strings.Contains(l, ":"):
				d.errorf(v, "server.admin_listen: %q needs a port, e.g. \"127.0.0.1:9090\"", l)
			case l == s.Listen:
				d.errorf(v, "server.admin_listen: %q is also server.listen: give the admin endpoints an address of their own, e.g. \"127.0.0.1:9090\", or leave admin_listen out", l)
			}
			s.AdminListen = l
		}
	}
	if v := m.get("trusted_proxies"); v != nil {
		if items, ok := d.list(v, "server.trusted_proxies"); ok {
			for _, it := range items {
				str, ok := d.str(it, "server.trusted_proxies")
				if !ok {
					continue
				}
				p, err := netip.ParsePrefix(str)
				if err != nil {
					a, aerr := netip.ParseAddr(str)
					if aerr != nil {
						d.errorf(it, "server.trusted_proxies: %q is not a network or an address: write one like \"10.0.0.0/8\" or \"192.0.2.7\"", str)
						continue
					}
					p = netip.PrefixFrom(a, a.BitLen())
				}
				s.TrustedProxies = append(s.TrustedProxies, p.Masked())
			}
		}
	}
	n := m.get("health")
	if n == nil {
		return
	}
	s.Health.Pos = d.pos(n)
	hm := d.mapping(n, "server.health", "max_pass_age", "max_pass_duration", "max_due_age", "max_writeback_failures")
	if hm == nil {
		return
	}
	for key, dst := range map[string]*time.Duration{"max_pass_age": &s.Health.MaxPassAge,
		"max_pass_duration": &s.Health.MaxPassDuration, "max_due_age": &s.Health.MaxDueAge} {
		v := hm.get(key)
		if v == nil {
			continue
		}
		if str, ok := d.str(v, "server.health."+key); ok {
			dur, err := parseInterval(str, true)
			if err != nil {
				d.errorf(v, "server.health.%s: %v", key, err)
				continue
			}
			*dst = dur
		}
	}
	if v := hm.get("max_writeback_failures"); v != nil {
		if k, ok := d.integer(v, "server.health.max_writeback_failures"); ok {
			if k < 0 {
				d.errorf(v, "server.health.max_writeback_failures: %d is negative: write 0 to be told of the first failure", k)
			} else {
				s.Health.MaxWritebackFailures = k
			}
		}
	}
}
