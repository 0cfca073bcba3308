package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/templates"
)

// Channels a rule can send on.
const (
	ChannelSMS   = "sms"
	ChannelEmail = "email"
)

// Rule is one messaging rule from a rule file: who (when, event,
// instrument), how (channel, to, template), when it runs (schedule,
// repeat, window) and what is written back to REDCap.
type Rule struct {
	Name        string
	Description string
	Project     string
	Pos         Pos // the rule's entry in its file
	// IsFallback marks the email rule FallbackRule derives from an SMS
	// rule: its messages' keys end in FallbackKeySuffix.
	IsFallback bool

	When       *logic.Expr // nil = every candidate row is selected
	Event      string      // unique event name, "" = any event (a classic project, or AnyEvent)
	AnyEvent   bool        // `event: any`: evaluated on every event, at most one message per participant (see KeyEvent)
	Instrument string      // repeating instrument, "" = base rows
	Channel    string      // ChannelSMS or ChannelEmail
	To         logic.Ref   // the field holding the phone number or email address
	// ToAddress is a fixed staff email address written literally in `to`
	// (email rules only); To is then empty.
	ToAddress string
	Template  string // the template's name
	SMS       *templates.SMS
	Email     *templates.Email

	// Schedule is the 5-field cron expression (study time zone) saying when
	// the rule is evaluated; "" with OnSave false means every run. OnSave
	// rules run when REDCap reports a saved record; Schedule is then "".
	Schedule string
	OnSave   bool
	Repeat   Repeat
	// OncePer is the field whose value keys the rule's messages: each value
	// (a rescheduled visit date) gets its own message, or its own repeat
	// series. Zero = once (or Repeat.Max times) per participant row.
	OncePer logic.Ref
	Window  *Window // nil = any time
	// Start makes the rule timed: its messages are due at moments computed
	// from a date field (see Start, Occurrences); nil = due when selected.
	Start *Start
	// Every makes a timed rule an EMA series (see Every); nil = none.
	Every *Every
	// Remind sends a reminder after each timed occurrence (see Remind).
	Remind *Remind
	// TimezoneField is the field holding the participant's IANA zone, as
	// written in the rule's window or else the project's timezone_field
	// (zero = the study zone); Location reads it.
	TimezoneField logic.Ref
	// Expires is how long after it is due a message may still be sent;
	// 0 = until its allowed hours end (see ExpiresAt).
	Expires   time.Duration
	WriteBack WriteBack
	// Fallback is an SMS rule's email fallback (nil = none): the email is
	// sent when the number is missing or invalid, or the text did not
	// arrive (see Fallback.On).
	Fallback *Fallback
	Enabled  bool

	// zone is the study time zone, set by Load: conditions read 'today' and
	// 'now' there, whatever the zone of the time Evaluate is given.
	zone *time.Location

	pos       map[string]Pos       // value positions by key ("when", "to", "write_back.sid", …)
	whenRefs  map[logic.Ref]Pos    // where each reference of When is written
	whenAt    func(offset int) Pos // where a rune offset of When's source is written
	tmplFiles []string             // the template files, for positions of their references
	tz        *zoneState           // where TimezoneField resolved to (see ResolveTimezoneFields)
}

// AnyEvent is what a rule file writes as its event for a rule of a
// longitudinal project that may select a participant on any event but sends
// them at most one message (or one per repeat) in all: `event: any`.
const AnyEvent = "any"

// AnyEventKey is the event part of the message key of AnyEvent rules.
const AnyEventKey = "*"

// KeyEvent is the event part of the idempotency key of a message the rule
// sends for row: the row's event, or "*" for an `event: any` rule, so that
// whichever event's row selects a participant, and however many do, the
// key is the same and the participant is messaged once.
func (r *Rule) KeyEvent(row *Row) string {
	if r.AnyEvent {
		return AnyEventKey
	}
	return row.Event
}

// OncePerDigest is the part of a message key that stands for the current
// value of the rule's once_per field in scope: a digest, so keys, which are
// logged, never hold the value. It is "" when the rule has no once_per.
// reason says why nothing may be sent: the field is blank (or holds a
// missing-data code).
func (r *Rule) OncePerDigest(scope *Scope) (digest, reason string) {
	if r.OncePer.Field == "" {
		return "", ""
	}
	v, _ := scope.Lookup(r.OncePer)
	v = strings.TrimSpace(v)
	if v == "" || scope.IsMissingCode(v) {
		return "", fmt.Sprintf("once_per: %s is blank: the rule sends once per value of %s, so nothing is sent until it has one",
			r.OncePer, r.OncePer)
	}
	return ValueDigest(v), ""
}

// ValueDigest is the stable digest of a once_per value: the first 16 hex
// digits of its SHA-256.
func ValueDigest(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:8])
}

// Repeat says how often a selected participant is messaged again while the
// rule keeps selecting them.
type Repeat struct {
	Every time.Duration // 0 = no repeat
	Max   int           // total messages, at least 1
}

// WriteBack names the REDCap fields nudge fills with the message's outcome
// ("" = not written).
type WriteBack struct {
	Status, SID, SentAt, Error string
}

// Reply is a rule for inbound SMS: a pattern, optionally only shortly after
// a rule's message, the REDCap fields to set and the answer to send.
type Reply struct {
	Name          string
	Project       string
	Pos           Pos
	Match         *regexp.Regexp // case-insensitive; nil when Keywords are used
	Keywords      []string       // whole-message keywords, matched case-insensitively
	Event         string         // unique event the Set fields are written to, "" = the event of the participant's phone field
	OnlyAfterRule string         // "" = any time
	Within        time.Duration  // with OnlyAfterRule: how long after that message
	// Set holds the REDCap fields to set: a literal value, or SetNow or
	// SetToday, formatted when the reply is applied (see SetValue).
	Set   map[string]string
	Reply *templates.Text // nil = no answer
	// Pause, when positive, pauses every text to the sender's number for
	// that long after their message.
	Pause time.Duration
	// Notify is a staff email address told of the text, with the record
	// id and what the participant wrote ("" = nobody).
	Notify string

	pos map[string]Pos // value positions ("set.<field>", "reply", "event", …)
}

// The dynamic values a reply's set may hold: the time and the date the
// participant's text arrived, in the study time zone.
const (
	SetNow   = "[now]"
	SetToday = "[today]"
)

// The keywords Twilio itself acts on for long codes and toll-free numbers
// (see TWILIO.md), matched as the whole text in any case. nudge handles
// them before any reply rule: a STOP word opts the sender out, a START word
// opts them back in (YES only from someone who opted out: otherwise it is
// an ordinary answer), a HELP word gets the study's help text.
var (
	StopKeywords  = []string{"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
	StartKeywords = []string{"START", "UNSTOP", "YES"}
	HelpKeywords  = []string{"HELP", "INFO"}
)

// reservedKeyword says what Twilio and nudge do with a word that a reply
// rule never sees, or "" for a word reply rules get (YES included).
func reservedKeyword(w string) string {
	w = strings.ToUpper(w)
	switch {
	case slices.Contains(StopKeywords, w):
		return "a STOP keyword: Twilio stops every text to the sender and nudge records the opt-out"
	case w != "YES" && slices.Contains(StartKeywords, w):
		return "a START keyword: Twilio and nudge opt the sender back in"
	case slices.Contains(HelpKeywords, w):
		return "a HELP keyword: Twilio (or nudge's server.help_text) answers it"
	}
	return ""
}

// Matches reports whether an inbound message body triggers the reply.
func (r *Reply) Matches(body string) bool {
	body = strings.TrimSpace(body)
	if r.Match != nil {
		return r.Match.MatchString(body)
	}
	// A keyword is the whole message, with the spaces and punctuation
	// people put around a one-word answer ("Yes!", "y.") ignored.
	word := strings.TrimFunc(body, func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsDigit(c) })
	for _, k := range r.Keywords {
		if strings.EqualFold(word, k) {
			return true
		}
	}
	return false
}

// Study is everything nudge loads: the config, every rule and reply, and
// the rule files they came from.
type Study struct {
	Config  *Config
	Rules   []*Rule
	Replies []*Reply
	Files   []string // rule files as the user would type them (config dir joined with the glob match)
}

// Rule returns the rule with the given name, or nil.
func (s *Study) Rule(name string) *Rule {
	for _, r := range s.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Uses reports whether any enabled rule sends on channel (an SMS rule's
// email fallback sends email, and so does a reply that notifies staff).
func (s *Study) Uses(channel string) bool {
	for _, r := range s.Rules {
		if r.Enabled && (r.Channel == channel || channel == ChannelEmail && r.Fallback != nil) {
			return true
		}
	}
	if channel == ChannelEmail {
		if s.Config != nil && s.Config.Reports != nil && len(s.Config.Reports.To) > 0 {
			return true
		}
		for _, r := range s.Replies {
			if r.Notify != "" {
				return true
			}
		}
	}
	return false
}

var (
	ruleNameRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	fieldNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	eventNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_]*$`)
	tmplNameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	toRE        = regexp.MustCompile(`^\s*(?:\[([a-z0-9_]+)\])?\[([a-z][a-z0-9_]*)\]\s*$`)
	clockRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)
	durationRE  = regexp.MustCompile(`^(?:[0-9]+[dhm])+$`)
	intervalRE  = regexp.MustCompile(`^(?:[0-9]+[dhms])+$`)
	durationTok = regexp.MustCompile(`([0-9]+)([dhms])`)
)

// durationUnits are the units of rule durations and server intervals.
var durationUnits = map[string]time.Duration{"d": 24 * time.Hour, "h": time.Hour, "m": time.Minute, "s": time.Second}

// maxDuration is the longest duration time.Duration holds.
const maxDuration = time.Duration(1<<63 - 1)

// parseDuration reads durations written with d (days), h and m units,
// e.g. "72h", "3d", "1d12h", "90m".
func parseDuration(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration: write a whole number with d, h or m, e.g. 72h, 3d or 1d12h", s)
	if !durationRE.MatchString(s) {
		return 0, bad
	}
	total, err := sumDuration(s)
	if err != nil {
		return 0, err
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q is zero: a duration must be positive", s)
	}
	return total, nil
}

// parseInterval reads the server's intervals, written like rule durations
// with seconds (s) allowed too, e.g. "15s", "15m" or "1h30m". A zero
// interval ("0", "0m", …) is accepted only when zeroOK.
func parseInterval(s string, zeroOK bool) (time.Duration, error) {
	hint := "write a whole number with d, h, m or s, e.g. 15m, 15s or 1h30m"
	if zeroOK {
		hint += ", or 0 for never"
	}
	if s != "0" && !intervalRE.MatchString(s) {
		return 0, fmt.Errorf("%q is not a duration: %s", s, hint)
	}
	total, err := sumDuration(s)
	if err != nil {
		return 0, err
	}
	if total == 0 && !zeroOK {
		return 0, fmt.Errorf("%q is zero: the interval must be positive, e.g. 15s", s)
	}
	return total, nil
}

// sumDuration adds up the number-unit pairs of a duration that matched
// durationRE or intervalRE, refusing one too long to represent.
func sumDuration(s string) (time.Duration, error) {
	var total time.Duration
	for _, m := range durationTok.FindAllStringSubmatch(s, -1) {
		unit := durationUnits[m[2]]
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n > int64(maxDuration/unit) || total > maxDuration-time.Duration(n)*unit {
			return 0, fmt.Errorf("%q is too long: write at most %dd", s, int64(maxDuration/(24*time.Hour)))
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}

// parseClock reads "HH:MM" as minutes after midnight.
func parseClock(s string) (int, bool) {
	m := clockRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	h, _ := strconv.Atoi(m[1])
	mm, _ := strconv.Atoi(m[2])
	return h*60 + mm, true
}
