package storage

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"time"
)

// migrationQueryIndexes adds the indexes `nudge status` and `nudge audit`
// read through: a record's messages, the messages to one address (by its
// lower case: an email address is found however it was typed, and the
// sender's own lookups by exact address keep their partial indexes), a
// rule's messages by state, and every table's rows by the time of what
// they record (for the audit trail over a date range).
const migrationQueryIndexes = `
CREATE INDEX messages_record ON messages (record, project);
CREATE INDEX messages_to ON messages (lower(to_addr));
CREATE INDEX messages_rule ON messages (rule, state);
CREATE INDEX messages_created ON messages (created_at);
CREATE INDEX status_history_at ON status_history (at);
CREATE INDEX inbound_received ON inbound (received_at);
CREATE INDEX writebacks_done ON writebacks (done_at) WHERE done_at IS NOT NULL;`

// NumberState is what nudge holds about one phone number: its latest
// opt-out choice, whether Twilio called it unable to get texts, and the
// pause a participant's reply set on it.
type NumberState struct {
	Phone string // E.164
	// OptOutKnown says whether the number ever opted out or in; OptedOut
	// is its latest choice, OptOutSource how it was learnt and OptOutAt
	// when.
	OptOutKnown  bool
	OptedOut     bool
	OptOutSource string
	OptOutAt     time.Time
	// Bad is Twilio's verdict on the number; nil = none.
	Bad *BadNumber
	// PausedUntil is the end of the latest pause of texts to the number
	// (zero = never paused; it may lie in the past), set by PauseSource.
	PausedUntil time.Time
	PauseSource string
}

// RuleStatus is where one rule's messages stand.
type RuleStatus struct {
	Rule     string
	Counts   []Count   // per project and channel, how many messages are in each state
	Last     []Message // the newest messages, newest first
	Failures []Message // the newest failed, undelivered, review and unknown messages, newest first
}

// AuditEvent is one entry of the audit trail: something nudge decided,
// did or learnt, at a time. Detail never holds a message body or a
// contact; Contact is the phone number or address concerned, for the
// caller to show or mask.
type AuditEvent struct {
	At        time.Time
	Kind      string // one of the Audit… kinds
	Project   string
	Record    string
	Rule      string
	Key       string // the message's idempotency key, when the event concerns a message
	MessageID int64
	RunID     int64 // AuditRun: the run
	Detail    string
	Contact   string
	// Summary is an AuditRun's stored run summary (JSON), nil for others.
	Summary []byte
}

// The kinds of audit events, in the order events of one instant are listed.
const (
	AuditRun              = "run"               // a pass started (Detail: kind and outcome; Summary: its counts)
	AuditPlanned          = "planned"           // a message was planned
	AuditSkipped          = "skipped"           // a participant was skipped, with the reason (first seen; or a message stored as skipped by earlier nudge versions)
	AuditSent             = "sent"              // the provider took a message
	AuditFailed           = "failed"            // a message failed at send
	AuditCanceled         = "canceled"          // a queued message no longer applied
	AuditExpired          = "expired"           // a queued message was not sent before its expiry
	AuditReview           = "review"            // a message was set aside for a person
	AuditStatus           = "status"            // the provider reported a status (poll or callback)
	AuditWrittenBack      = "written back"      // REDCap accepted a value
	AuditWriteBackFailed  = "write-back failed" // REDCap rejected a value for good
	AuditWriteBackDropped = "write-back dropped"
	AuditReply            = "reply received" // an inbound text (Detail: how it was handled)
	AuditOptedOut         = "opted out"
	AuditOptedIn          = "opted in"
	AuditBadNumber        = "bad number" // Twilio called the number unable to get texts
	AuditNumberPaused     = "number paused"
)

// auditOrder ranks the kinds for events at the same instant.
var auditOrder = map[string]int{
	AuditRun: 0, AuditPlanned: 1, AuditSkipped: 1, AuditSent: 2, AuditFailed: 2, AuditCanceled: 2,
	AuditExpired: 2, AuditReview: 2, AuditStatus: 3, AuditWrittenBack: 4, AuditWriteBackFailed: 4,
	AuditWriteBackDropped: 4, AuditReply: 5, AuditOptedOut: 6, AuditOptedIn: 6, AuditBadNumber: 7,
	AuditNumberPaused: 7,
}

// AuditLess orders audit events by time, then kind, then message.
func AuditLess(a, b AuditEvent) bool {
	if !a.At.Equal(b.At) {
		return a.At.Before(b.At)
	}
	if auditOrder[a.Kind] != auditOrder[b.Kind] {
		return auditOrder[a.Kind] < auditOrder[b.Kind]
	}
	if a.MessageID != b.MessageID {
		return a.MessageID < b.MessageID
	}
	if a.Project != b.Project {
		return a.Project < b.Project
	}
	if a.Record != b.Record {
		return a.Record < b.Record
	}
	return a.Detail < b.Detail
}

const (
	sqlRecordMessages = `
SELECT ` + messageColumns + ` FROM messages WHERE record = ? AND (? = '' OR project = ?) ORDER BY id`

	sqlMessagesTo = `SELECT ` + messageColumns + ` FROM messages WHERE lower(to_addr) = lower(?) ORDER BY id`

	sqlInboundFrom = `
SELECT ` + inboundColumns + ` FROM inbound WHERE from_number = ? ORDER BY received_at, id`

	sqlOptOutOf    = `SELECT opted_out, source, updated_at FROM optouts WHERE phone = ?`
	sqlBadNumberOf = `SELECT code, reason, flagged_at FROM bad_numbers WHERE phone = ?`
	sqlPauseOf     = `SELECT until, source FROM number_pauses WHERE phone = ?`

	sqlRuleCounts = `
SELECT project, channel, state, count(*) FROM messages WHERE rule = ?
GROUP BY project, channel, state ORDER BY project, channel, state`

	sqlRuleLast = `SELECT ` + messageColumns + ` FROM messages WHERE rule = ? ORDER BY id DESC LIMIT ?`

	sqlRuleFailures = `
SELECT ` + messageColumns + ` FROM messages
WHERE rule = ? AND state IN ('failed', 'undelivered', 'review', 'unknown') ORDER BY id DESC LIMIT ?`

	sqlRuns = `
SELECT id, kind, started_at, finished_at, outcome, summary FROM runs ORDER BY id DESC LIMIT ?`

	sqlAuditRuns = `
SELECT id, kind, started_at, outcome, summary FROM runs WHERE started_at >= ? AND started_at < ?`

	sqlAuditCreated = `
SELECT id, key, project, rule, record, channel, to_addr, state, reason, occurrence, created_at
FROM messages WHERE created_at >= ? AND created_at < ?`

	sqlAuditHistory = `
SELECT h.status, h.error_code, h.source, h.at, m.id, m.key, m.project, m.rule, m.record, m.channel,
	m.to_addr, coalesce(m.sid, ''), m.reason
FROM status_history AS h JOIN messages AS m ON m.id = h.message_id
WHERE h.at >= ? AND h.at < ?`

	sqlAuditWriteBacks = `
SELECT project, record, event, instance, field, value, origin, state, last_error, done_at
FROM writebacks WHERE done_at >= ? AND done_at < ?`

	sqlAuditInbound = `
SELECT from_number, handled, received_at FROM inbound WHERE received_at >= ? AND received_at < ?`

	sqlAuditOptOuts = `
SELECT phone, opted_out, source, updated_at FROM optouts WHERE updated_at >= ? AND updated_at < ?`

	sqlAuditBadNumbers = `
SELECT phone, code, reason, flagged_at FROM bad_numbers WHERE flagged_at >= ? AND flagged_at < ?`

	sqlAuditSkips = `
SELECT at, project, rule, record, event, instance, reason FROM skip_log WHERE at >= ? AND at < ?`

	sqlAuditPauses = `
SELECT phone, until, source, updated_at FROM number_pauses WHERE updated_at >= ? AND updated_at < ?`
)

// RecordMessages returns every message of a record, oldest first: of one
// project, or of every project holding a record of that name when project
// is "".
func (s *Store) RecordMessages(ctx context.Context, project, record string) ([]Message, error) {
	return s.queryMessages(ctx, sqlRecordMessages, record, project, project)
}

// MessagesTo returns every message to one phone number (E.164) or email
// address (in any case), oldest first.
func (s *Store) MessagesTo(ctx context.Context, to string) ([]Message, error) {
	return s.queryMessages(ctx, sqlMessagesTo, to)
}

// InboundFrom returns every text received from a phone number (E.164),
// oldest first.
func (s *Store) InboundFrom(ctx context.Context, phone string) ([]Inbound, error) {
	rows, err := s.db.QueryContext(ctx, sqlInboundFrom, phone)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Inbound
	for rows.Next() {
		in, err := scanInbound(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, rows.Err()
}

// NumberStateOf returns what nudge holds about a phone number (E.164).
func (s *Store) NumberStateOf(ctx context.Context, phone string) (NumberState, error) {
	ns := NumberState{Phone: phone}
	var (
		out    int
		at     sql.NullInt64
		bad    BadNumber
		until  sql.NullInt64
		source string
	)
	err := s.db.QueryRowContext(ctx, sqlOptOutOf, phone).Scan(&out, &ns.OptOutSource, &at)
	switch {
	case err == nil:
		ns.OptOutKnown, ns.OptedOut, ns.OptOutAt = true, out == 1, goTime(at)
	case !errors.Is(err, sql.ErrNoRows):
		return NumberState{}, err
	}
	err = s.db.QueryRowContext(ctx, sqlBadNumberOf, phone).Scan(&bad.Code, &bad.Reason, &at)
	switch {
	case err == nil:
		bad.Phone, bad.At = phone, goTime(at)
		ns.Bad = &bad
	case !errors.Is(err, sql.ErrNoRows):
		return NumberState{}, err
	}
	err = s.db.QueryRowContext(ctx, sqlPauseOf, phone).Scan(&until, &source)
	switch {
	case err == nil:
		ns.PausedUntil, ns.PauseSource = goTime(until), source
	case !errors.Is(err, sql.ErrNoRows):
		return NumberState{}, err
	}
	return ns, nil
}

// RuleStatusOf returns where a rule's messages stand: counts per state,
// and its last n messages and last n failures (n ≤ 0: 10).
func (s *Store) RuleStatusOf(ctx context.Context, rule string, n int) (RuleStatus, error) {
	if n <= 0 {
		n = 10
	}
	rs := RuleStatus{Rule: rule}
	rows, err := s.db.QueryContext(ctx, sqlRuleCounts, rule)
	if err != nil {
		return RuleStatus{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			project, channel string
			state            State
			count            int
		)
		if err := rows.Scan(&project, &channel, &state, &count); err != nil {
			return RuleStatus{}, err
		}
		if k := len(rs.Counts) - 1; k < 0 || rs.Counts[k].Project != project || rs.Counts[k].Channel != channel {
			rs.Counts = append(rs.Counts, Count{Project: project, Rule: rule, Channel: channel, States: make(map[State]int)})
		}
		c := &rs.Counts[len(rs.Counts)-1]
		c.States[state] = count
		c.Total += count
	}
	if err := rows.Err(); err != nil {
		return RuleStatus{}, err
	}
	if rs.Last, err = s.queryMessages(ctx, sqlRuleLast, rule, n); err != nil {
		return RuleStatus{}, err
	}
	if rs.Failures, err = s.queryMessages(ctx, sqlRuleFailures, rule, n); err != nil {
		return RuleStatus{}, err
	}
	return rs, nil
}

// Runs returns the last n runs (n ≤ 0: 10), newest first.
func (s *Store) Runs(ctx context.Context, n int) ([]Run, error) {
	if n <= 0 {
		n = 10
	}
	rows, err := s.db.QueryContext(ctx, sqlRuns, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Run
	for rows.Next() {
		var (
			r                 Run
			started, finished sql.NullInt64
			summary           sql.NullString
		)
		if err := rows.Scan(&r.ID, &r.Kind, &started, &finished, &r.Outcome, &summary); err != nil {
			return nil, err
		}
		r.StartedAt, r.FinishedAt = goTime(started), goTime(finished)
		if summary.Valid {
			r.Summary = []byte(summary.String)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Audit returns what the store records happened from since up to (not
// including) until, in the order of AuditLess (see AuditEach).
func (s *Store) Audit(ctx context.Context, since, until time.Time) ([]AuditEvent, error) {
	var out []AuditEvent
	err := s.AuditEach(ctx, since, until, func(e AuditEvent) error {
		out = append(out, e)
		return nil
	})
	return out, err
}

// auditWindow is how much of the trail AuditEach reads and sorts at a time:
// memory stays bounded by one window's events, whatever the range.
const auditWindow = time.Hour

// AuditEach hands fn, in the order of AuditLess, what the store records
// happened from since up to (not including) until: runs, messages planned
// (or stored as skipped), each status a message took, values REDCap
// accepted or refused, texts received, opt-outs and opt-ins, numbers
// flagged as bad and reply pauses. Events about a phone number name every
// record the number belongs to (one event per record), or no record when
// none is known. An error from fn stops it and is returned.
//
// The store keeps each write-back target's and each number's latest state
// only: an older write-back of the same field, or an opt-out undone by a
// later opt-in, no longer appears here (the inbound STOP and START texts
// that caused them do).
func (s *Store) AuditEach(ctx context.Context, since, until time.Time, fn func(AuditEvent) error) error {
	a := auditor{s: s, ctx: ctx, owners: make(map[string][]Participant)}
	for from := since; from.Before(until); from = from.Add(auditWindow) {
		to := from.Add(auditWindow)
		if to.After(until) {
			to = until
		}
		a.from, a.to, a.out = from.UnixNano(), to.UnixNano(), a.out[:0]
		for _, step := range []func() error{a.runs, a.created, a.history, a.writeBacks, a.inbound, a.optOuts, a.badNumbers, a.pauses, a.skips} {
			if err := step(); err != nil {
				return err
			}
		}
		slices.SortStableFunc(a.out, func(x, y AuditEvent) int {
			switch {
			case AuditLess(x, y):
				return -1
			case AuditLess(y, x):
				return 1
			}
			return 0
		})
		for _, e := range a.out {
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// auditor collects the audit events of one window.
type auditor struct {
	s        *Store
	ctx      context.Context
	from, to int64
	out      []AuditEvent
	owners   map[string][]Participant // phone → its records, looked up once
}

// each runs one of the audit queries and hands every row to scan.
func (a *auditor) each(q string, scan func(rows *sql.Rows) error) error {
	rows, err := a.s.db.QueryContext(a.ctx, q, a.from, a.to)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// addForNumber appends e, once for every record the phone number belongs to.
func (a *auditor) addForNumber(e AuditEvent, phone string) error {
	ps, ok := a.owners[phone]
	if !ok {
		var err error
		if ps, err = a.s.ParticipantsByPhone(a.ctx, phone); err != nil {
			return err
		}
		a.owners[phone] = ps
	}
	e.Contact = phone
	if len(ps) == 0 {
		a.out = append(a.out, e)
		return nil
	}
	seen := make(map[[2]string]bool)
	for _, p := range ps {
		if seen[[2]string{p.Project, p.Record}] {
			continue
		}
		seen[[2]string{p.Project, p.Record}] = true
		e.Project, e.Record = p.Project, p.Record
		a.out = append(a.out, e)
	}
	return nil
}

func (a *auditor) runs() error {
	return a.each(sqlAuditRuns, func(rows *sql.Rows) error {
		var (
			e       AuditEvent
			kind    string
			outcome string
			at      sql.NullInt64
			summary sql.NullString
		)
		if err := rows.Scan(&e.RunID, &kind, &at, &outcome, &summary); err != nil {
			return err
		}
		e.Kind, e.At = AuditRun, goTime(at)
		e.Detail = "kind=" + kind + " outcome=" + outcome
		if outcome == "" {
			e.Detail = "kind=" + kind + " outcome=unfinished"
		}
		if summary.Valid {
			e.Summary = []byte(summary.String)
		}
		a.out = append(a.out, e)
		return nil
	})
}

func (a *auditor) created() error {
	return a.each(sqlAuditCreated, func(rows *sql.Rows) error {
		var (
			e              AuditEvent
			channel, state string
			reason         string
			occurrence     int
			at             sql.NullInt64
		)
		if err := rows.Scan(&e.MessageID, &e.Key, &e.Project, &e.Rule, &e.Record, &channel, &e.Contact,
			&state, &reason, &occurrence, &at); err != nil {
			return err
		}
		e.At, e.Kind = goTime(at), AuditPlanned
		e.Detail = "channel=" + channel + " occurrence=" + strconv.Itoa(occurrence)
		if State(state) == StateSkipped {
			e.Kind = AuditSkipped
			e.Detail += " reason=" + reason
		}
		a.out = append(a.out, e)
		return nil
	})
}

func (a *auditor) history() error {
	return a.each(sqlAuditHistory, func(rows *sql.Rows) error {
		var (
			e                       AuditEvent
			status, source, channel string
			sid, reason             string
			code                    int
			at                      sql.NullInt64
		)
		if err := rows.Scan(&status, &code, &source, &at, &e.MessageID, &e.Key, &e.Project, &e.Rule, &e.Record,
			&channel, &e.Contact, &sid, &reason); err != nil {
			return err
		}
		e.At, e.Kind = goTime(at), AuditStatus
		e.Detail = "status=" + status + " source=" + source
		if source == SourceSend {
			switch status {
			case "failed":
				e.Kind = AuditFailed
			case "canceled":
				e.Kind = AuditCanceled
			case "expired":
				e.Kind = AuditExpired
			case "review":
				e.Kind = AuditReview
			default:
				e.Kind = AuditSent
				e.Detail = "channel=" + channel + " status=" + status
				if sid != "" {
					e.Detail += " sid=" + sid
				}
			}
			if e.Kind != AuditSent && reason != "" {
				e.Detail += " reason=" + reason
			}
		}
		if code != 0 {
			e.Detail += " error=" + strconv.Itoa(code)
		}
		a.out = append(a.out, e)
		return nil
	})
}

func (a *auditor) writeBacks() error {
	return a.each(sqlAuditWriteBacks, func(rows *sql.Rows) error {
		var (
			e                        AuditEvent
			event, field, value      string
			origin, state, lastError string
			instance                 int
			at                       sql.NullInt64
		)
		if err := rows.Scan(&e.Project, &e.Record, &event, &instance, &field, &value, &origin, &state, &lastError, &at); err != nil {
			return err
		}
		e.At = goTime(at)
		switch WriteBackState(state) {
		case WriteBackDone:
			e.Kind = AuditWrittenBack
		case WriteBackFailed:
			e.Kind = AuditWriteBackFailed
		default:
			e.Kind = AuditWriteBackDropped
		}
		e.Detail = "field=" + field + " value=" + value + " origin=" + origin
		if event != "" {
			e.Detail += " event=" + event
		}
		if instance != 0 {
			e.Detail += " instance=" + strconv.Itoa(instance)
		}
		if e.Kind != AuditWrittenBack && lastError != "" {
			e.Detail += " error=" + lastError
		}
		a.out = append(a.out, e)
		return nil
	})
}

func (a *auditor) inbound() error {
	type row struct {
		phone, handled string
		at             time.Time
	}
	var rs []row
	err := a.each(sqlAuditInbound, func(rows *sql.Rows) error {
		var r row
		var at sql.NullInt64
		if err := rows.Scan(&r.phone, &r.handled, &at); err != nil {
			return err
		}
		r.at = goTime(at)
		rs = append(rs, r)
		return nil
	})
	if err != nil {
		return err
	}
	for _, r := range rs {
		handled := r.handled
		if handled == "" {
			handled = "not yet"
		}
		if err := a.addForNumber(AuditEvent{At: r.at, Kind: AuditReply, Detail: "handled=" + handled}, r.phone); err != nil {
			return err
		}
	}
	return nil
}

func (a *auditor) optOuts() error {
	var es []AuditEvent
	err := a.each(sqlAuditOptOuts, func(rows *sql.Rows) error {
		var (
			e   AuditEvent
			out int
			at  sql.NullInt64
		)
		if err := rows.Scan(&e.Contact, &out, &e.Detail, &at); err != nil {
			return err
		}
		e.At, e.Kind, e.Detail = goTime(at), AuditOptedIn, "source="+e.Detail
		if out == 1 {
			e.Kind = AuditOptedOut
		}
		es = append(es, e)
		return nil
	})
	if err != nil {
		return err
	}
	return a.addAllForNumbers(es)
}

func (a *auditor) badNumbers() error {
	var es []AuditEvent
	err := a.each(sqlAuditBadNumbers, func(rows *sql.Rows) error {
		var (
			e      AuditEvent
			code   int
			reason string
			at     sql.NullInt64
		)
		if err := rows.Scan(&e.Contact, &code, &reason, &at); err != nil {
			return err
		}
		e.At, e.Kind, e.Detail = goTime(at), AuditBadNumber, "error="+strconv.Itoa(code)+" reason="+reason
		es = append(es, e)
		return nil
	})
	if err != nil {
		return err
	}
	return a.addAllForNumbers(es)
}

// skips are the participants passes skipped, each when first seen, with
// the reason.
func (a *auditor) skips() error {
	return a.each(sqlAuditSkips, func(rows *sql.Rows) error {
		var (
			e        AuditEvent
			at       sql.NullInt64
			event    string
			instance int
			reason   string
		)
		if err := rows.Scan(&at, &e.Project, &e.Rule, &e.Record, &event, &instance, &reason); err != nil {
			return err
		}
		e.At, e.Kind, e.Detail = goTime(at), AuditSkipped, "reason="+reason
		if event != "" || instance > 0 {
			e.Detail = "event=" + event + " instance=" + strconv.Itoa(instance) + " " + e.Detail
		}
		a.out = append(a.out, e)
		return nil
	})
}

func (a *auditor) pauses() error {
	var es []AuditEvent
	err := a.each(sqlAuditPauses, func(rows *sql.Rows) error {
		var (
			e         AuditEvent
			until, at sql.NullInt64
			source    string
		)
		if err := rows.Scan(&e.Contact, &until, &source, &at); err != nil {
			return err
		}
		e.At, e.Kind = goTime(at), AuditNumberPaused
		e.Detail = "until=" + goTime(until).Format(time.RFC3339) + " source=" + source
		es = append(es, e)
		return nil
	})
	if err != nil {
		return err
	}
	return a.addAllForNumbers(es)
}

// addAllForNumbers adds events whose Contact is a phone number, after
// their query's rows are closed (a lookup meanwhile would need a second
// connection).
func (a *auditor) addAllForNumbers(es []AuditEvent) error {
	for _, e := range es {
		if err := a.addForNumber(e, e.Contact); err != nil {
			return err
		}
	}
	return nil
}
