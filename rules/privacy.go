package rules

import (
	"time"

	"gopkg.in/yaml.v3"
)

// The retention defaults: what nudge keeps, and how long, unless the
// config's privacy section says otherwise.
const (
	DefaultKeepBodies  = 30 * 24 * time.Hour
	DefaultKeepHistory = 365 * 24 * time.Hour
	DefaultKeepInbound = 90 * 24 * time.Hour
)

// keepForever is how a retention that never ends is written.
const keepForever = "forever"

// Privacy says what nudge forgets, and when. A zero duration keeps that
// data forever; the zero Privacy (a Config built in code) forgets nothing.
type Privacy struct {
	// RedactAtTwilio empties each text's body at Twilio once its status is
	// final (Twilio keeps it otherwise).
	RedactAtTwilio bool
	// KeepBodies is how long after a message's final status its body,
	// subject and HTML stay in the outbox; a SHA-256 digest and the row
	// (status, times) stay.
	KeepBodies time.Duration
	// KeepHistory is how long a final message's status history stays.
	KeepHistory time.Duration
	// KeepInbound is how long the body of a handled inbound text (and
	// nudge's answer) stays; the row (SID, number, time, how it was
	// handled) stays.
	KeepInbound time.Duration
	Pos         Pos
}

// defaultPrivacy is the privacy section used when the config has none.
func defaultPrivacy(pos Pos) Privacy {
	return Privacy{RedactAtTwilio: true, KeepBodies: DefaultKeepBodies, KeepHistory: DefaultKeepHistory,
		KeepInbound: DefaultKeepInbound, Pos: pos}
}

// decodePrivacy reads privacy: redact_at_twilio and three retentions, each
// a duration or "forever".
func decodePrivacy(d *decoder, n *yaml.Node) Privacy {
	p := defaultPrivacy(d.pos(n))
	m := d.mapping(n, "privacy", "redact_at_twilio", "keep_bodies", "keep_history", "keep_inbound")
	if m == nil {
		return p
	}
	if v := m.get("redact_at_twilio"); v != nil {
		if b, ok := d.boolean(v, "privacy.redact_at_twilio"); ok {
			p.RedactAtTwilio = b
		}
	}
	for _, kv := range []struct {
		key string
		dst *time.Duration
	}{
		{"keep_bodies", &p.KeepBodies},
		{"keep_history", &p.KeepHistory},
		{"keep_inbound", &p.KeepInbound},
	} {
		v := m.get(kv.key)
		if v == nil {
			continue
		}
		s, ok := d.str(v, "privacy."+kv.key)
		if !ok {
			continue
		}
		if s == keepForever {
			*kv.dst = 0
			continue
		}
		dur, err := parseDuration(s)
		if err != nil {
			d.errorf(v, "privacy.%s: %v, or %s to keep it", kv.key, err, keepForever)
			continue
		}
		*kv.dst = dur
	}
	return p
}
