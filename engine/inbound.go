package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// Keyword families Twilio itself acts on for long codes and toll-free
// numbers (see TWILIO.md): a message that is one of these words, in any
// case, with spaces and punctuation around it ignored.
var (
	stopWords  = wordSet(rules.StopKeywords...)
	startWords = wordSet(rules.StartKeywords...)
	helpWords  = wordSet(rules.HelpKeywords...)
)

func wordSet(ws ...string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// keyword returns the message as a bare upper-case word, or "" when it is
// more than one word.
func keyword(body string) string {
	w := strings.TrimFunc(body, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
	if w == "" || strings.ContainsFunc(w, unicode.IsSpace) {
		return ""
	}
	return strings.ToUpper(w)
}

// InboundSMS is a text a participant sent to one of the study's numbers.
type InboundSMS struct {
	MessageSID, From, To, Body string
	// OptOutType is Twilio's reading of the text (STOP, START or HELP)
	// when the sending number's Messaging Service has Advanced Opt-Out; it
	// makes a custom keyword (e.g. "PARAR") count. "" when Twilio sent none.
	OptOutType string
}

// Twilio's OptOutType values.
const (
	optOutStop  = "STOP"
	optOutStart = "START"
	optOutHelp  = "HELP"
)

// HandleInbound stores an inbound SMS and decides the answer: STOP-family
// words (or Twilio's OptOutType STOP) record an opt-out, START-family words
// (or OptOutType START) an opt-in, HELP (or OptOutType HELP) the study's
// help text when it has one (an empty answer otherwise: Twilio answers HELP
// itself on most numbers), anything else the first matching reply rule. The message, its
// answer and its effects (opt-out, REDCap fields to write) are committed in
// one transaction before HandleInbound returns, so nothing is lost if the
// process dies after answering; REDCap itself is written later from the
// durable queue. A webhook Twilio retries gets the stored answer again and
// changes nothing.
func (e *Engine) HandleInbound(ctx context.Context, in InboundSMS) (string, error) {
	now := e.now()
	from, err := NormalizePhone(in.From, e.region())
	if err != nil {
		from = in.From
	}
	row := &storage.Inbound{MessageSID: in.MessageSID, From: from, To: in.To, Body: in.Body, ReceivedAt: now}
	if row.Handled, row.Reply, row.Effects, err = e.answer(ctx, in.MessageSID, from, in.Body, strings.ToUpper(strings.TrimSpace(in.OptOutType)), now); err != nil {
		return "", err
	}
	inserted, err := e.inboundWriter().Save(ctx, row)
	if err != nil {
		return "", err
	}
	log := e.log().WithFields(map[string]any{"sid": in.MessageSID, "from": redact(from), "handled": row.Handled})
	if !inserted {
		log.Info("inbound sms seen before; same answer")
		return row.Reply, nil
	}
	log.Info("inbound sms")
	if row.Effects != nil && len(row.Effects.WriteBacks) > 0 {
		e.kickReport()
	}
	return row.Reply, nil
}

// answer classifies an inbound text and works out what it changes.
// optOutType is Twilio's OptOutType, upper case ("" when absent); a STOP
// from either Twilio or nudge's own keywords wins over everything else.
func (e *Engine) answer(ctx context.Context, sid, from, body, optOutType string, now time.Time) (handled, reply string, fx *storage.InboundEffects, err error) {
	word := keyword(body)
	if optOutType != optOutStop && optOutType != optOutStart && optOutType != optOutHelp {
		optOutType = "" // a value nudge does not know: its own keywords decide
	}
	optedOut := false
	if word == "YES" {
		var err error
		if optedOut, err = e.Store.IsOptedOut(ctx, from); err != nil {
			return "", "", nil, err
		}
	}
	source := "sms " + word
	if optOutType != "" {
		source = strings.TrimSpace(source + " (Twilio OptOutType " + optOutType + ")")
	}
	switch {
	case optOutType == optOutStop || stopWords[word]:
		wbs, err := e.optOutWriteBacks(ctx, from, now, false)
		return "stop", "", &storage.InboundEffects{OptOut: true, Source: source, WriteBacks: wbs}, err
	case optOutType == optOutStart || (startWords[word] && (word != "YES" || optedOut)):
		// YES opts back in only someone who opted out; otherwise it is an
		// ordinary answer that reply rules may use.
		wbs, err := e.optOutWriteBacks(ctx, from, now, true)
		return "start", "", &storage.InboundEffects{OptIn: true, Source: source, WriteBacks: wbs}, err
	case optOutType == optOutHelp || helpWords[word]:
		return "help", e.study().Config.Server.HelpText, nil, nil
	}
	return e.replyRule(ctx, sid, from, body, now)
}

// optOutWriteBacks builds the REDCap writes an opt-out (or opt-in) causes:
// the project's opt_out field for every participant with that number.
//
// An opt-out writes the opt-out value unless the study team set it already
// (the record, as last exported, holds it and nudge never wrote the field):
// nudge then has nothing to record, and nothing a START could revert. An opt-in writes
// opt_in_value only over an opt-out nudge itself wrote for that participant
// (the condition is applied in the transaction that stores the text): it
// never flips a consent field the study team set.
func (e *Engine) optOutWriteBacks(ctx context.Context, phone string, now time.Time, optIn bool) ([]storage.WriteBack, error) {
	ps, err := e.Store.ParticipantsByPhone(ctx, phone)
	if err != nil {
		return nil, err
	}
	var out []storage.WriteBack
	for _, p := range ps {
		cfg := e.study().Config.Project(p.Project)
		if cfg == nil || cfg.OptOut == nil || cfg.OptOut.Field == "" {
			continue
		}
		field := cfg.OptOut.Field
		wb := storage.WriteBack{Project: p.Project, Record: p.Record, Event: p.Event, CreatedAt: now}
		switch {
		case optIn && cfg.OptOut.OptInValue != "":
			wb.Fields = map[string]string{field: cfg.OptOut.OptInValue}
			wb.Origin, wb.IfOrigin = storage.OriginOptIn, storage.OriginOptOut
		case !optIn && cfg.OptOut.Value != "":
			set, err := e.setByStudyTeam(ctx, p, field, cfg.OptOut.Value)
			if err != nil {
				return nil, err
			}
			if set {
				continue
			}
			wb.Fields = map[string]string{field: cfg.OptOut.Value}
			wb.Origin = storage.OriginOptOut
		default:
			continue
		}
		out = append(out, wb)
	}
	return out, nil
}

// setByStudyTeam reports whether a participant's field holds value, as last
// exported, without nudge ever having written it.
func (e *Engine) setByStudyTeam(ctx context.Context, p storage.Participant, field, value string) (bool, error) {
	if v, ok := e.cachedValue(p.Project, p.Record, p.Event, field); !ok || v != value {
		return false, nil
	}
	_, err := e.Store.WriteBackTargetOf(ctx, p.Project, p.Record, p.Event, "", 0, field)
	if errors.Is(err, storage.ErrNotFound) {
		return true, nil
	}
	return false, err
}

// cachedValue returns a field of a record's base row in an event (any
// event when event is ""), as last exported; ok is false when the record
// or the field was not exported.
func (e *Engine) cachedValue(project, record, event, field string) (string, bool) {
	rec, _ := e.cachedRecord(project, record)
	if rec == nil {
		return "", false
	}
	for _, row := range rec.Rows {
		if row.Instance != 0 || (event != "" && row.Event != event) {
			continue
		}
		if v, ok := row.Value(field); ok {
			return v, true
		}
	}
	return "", false
}

// replyRule finds the first reply rule that matches the text and applies
// to one of the sender's participant records, and works out its effects:
// the fields it sets, the pause of the sender's texts, the staff
// notification (an email in the outbox, keyed by the text's MessageSid so
// that a retried webhook never queues it twice).
func (e *Engine) replyRule(ctx context.Context, sid, from, body string, now time.Time) (string, string, *storage.InboundEffects, error) {
	var ps []storage.Participant
	for _, r := range e.study().Replies {
		if !r.Matches(body) {
			continue
		}
		if ps == nil {
			var err error
			if ps, err = e.Store.ParticipantsByPhone(ctx, from); err != nil {
				return "", "", nil, err
			}
		}
		for _, p := range ps {
			if p.Project != r.Project {
				continue
			}
			if r.OnlyAfterRule != "" {
				m, err := e.Store.LastSentTo(ctx, r.OnlyAfterRule, from)
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				if err != nil {
					return "", "", nil, err
				}
				if r.Within > 0 && now.Sub(m.SentAt) > r.Within {
					continue
				}
			}
			event := p.Event
			if r.Event != "" {
				event = r.Event
			}
			fx := &storage.InboundEffects{Source: storage.OriginReply(r.Name)}
			if len(r.Set) > 0 {
				fx.WriteBacks = []storage.WriteBack{{Project: p.Project, Record: p.Record, Event: event, Fields: e.setValues(r, p.Project, now),
					Origin: storage.OriginReply(r.Name), CreatedAt: now}}
			}
			if r.Pause > 0 {
				fx.PauseUntil = now.Add(r.Pause)
			}
			if r.Notify != "" {
				fx.Notify = []storage.Message{e.notification(r, p, event, sid, body, now)}
			}
			return "reply:" + r.Name, e.renderReply(r, p, event, now), fx, nil
		}
	}
	return "none", "", nil, nil
}

// setValues are the values a reply rule writes: literals as they stand,
// [now] and [today] as the time and date the text arrived in the study time
// zone, formatted as the field's validation expects (see sentAtLayout;
// [today] is always a date).
func (e *Engine) setValues(r *rules.Reply, project string, now time.Time) map[string]string {
	out := make(map[string]string, len(r.Set))
	local := now.In(e.study().Config.Location)
	for field, v := range r.Set {
		switch v {
		case rules.SetNow:
			v = local.Format(sentAtLayout(e.Dicts[project], field))
		case rules.SetToday:
			v = local.Format(time.DateOnly)
		}
		out[field] = v
	}
	return out
}

// notificationRule prefixes the Rule of a staff notification in the outbox:
// "reply:NAME" names the reply rule that asked for it (rule names hold no
// ':', so it never clashes with a rule's).
const notificationRule = "reply:"

// isNotification reports whether an outbox message is a reply rule's staff
// notification or a run report to the team: its recipient and text are
// fixed when it is queued.
func isNotification(m storage.Message) bool {
	return strings.HasPrefix(m.Rule, notificationRule) || isReport(m)
}

// notification is the email telling staff of a participant's text: the
// record id and the text as received, for the address the reply rule names.
// Its key holds the text's MessageSid, so it is queued once whatever
// Twilio retries.
func (e *Engine) notification(r *rules.Reply, p storage.Participant, event, sid, body string, now time.Time) storage.Message {
	study := e.study().Config.Study
	if study == "" {
		study = "nudge"
	}
	local := now.In(e.study().Config.Location)
	text := fmt.Sprintf("A participant texted the study number and the reply rule %s asked to tell you.\n\n"+
		"Project: %s\nRecord: %s\nReceived: %s\n\nTheir text:\n%s\n",
		r.Name, p.Project, p.Record, local.Format("2006-01-02 15:04:05 MST"), body)
	if r.Pause > 0 {
		text += fmt.Sprintf("\nTheir texts are paused until %s.\n", local.Add(r.Pause).Format("2006-01-02 15:04 MST"))
	}
	from := ""
	if c := e.study().Config.SMTP; c != nil {
		from = c.From
	}
	return storage.Message{
		Key:     fmt.Sprintf("%s/%s%s/%s/notify/%s", p.Project, notificationRule, r.Name, p.Record, sid),
		Project: p.Project, Rule: notificationRule + r.Name, Record: p.Record, Event: event,
		Channel: storage.ChannelEmail, To: r.Notify, From: from,
		Subject: fmt.Sprintf("%s: a text from record %s (%s)", study, p.Record, r.Name), Body: text,
		State: storage.StatePlanned, NotBefore: now, CreatedAt: now,
	}
}

// renderReply pipes a reply rule's answer from the participant's record as
// last exported. A reply that cannot be piped is not sent (never a blank
// in a participant's text); the fields are still set.
func (e *Engine) renderReply(r *rules.Reply, p storage.Participant, event string, now time.Time) string {
	if r.Reply == nil {
		return ""
	}
	rec, missing := e.cachedRecord(p.Project, p.Record)
	if rec == nil {
		e.log().WithFields(map[string]any{"reply": r.Name, "record": p.Record}).Warn("reply not sent: the record has not been exported yet")
		return ""
	}
	row := baseRow(rec, event)
	text, err := r.Reply.Render(rules.NewScope(rec, row, now, missing), e.Dicts[p.Project])
	if err != nil {
		e.log().WithFields(map[string]any{"reply": r.Name, "record": p.Record, "reason": err.Error()}).Warn("reply not sent")
		return ""
	}
	return text
}

// baseRow is a record's non-repeating row of an event (the first row when
// the event has none).
func baseRow(rec *rules.Record, event string) *rules.Row {
	for _, row := range rec.Rows {
		if row.Instance == 0 && (event == "" || row.Event == event) {
			return row
		}
	}
	if len(rec.Rows) > 0 {
		return rec.Rows[0]
	}
	return &rules.Row{Values: map[string]string{}}
}

// HandleStatus stores a Twilio status callback. Callbacks arrive late, twice
// or out of order: the store only ever moves a status forward.
func (e *Engine) HandleStatus(ctx context.Context, sid, status string, errorCode int) error {
	m, err := e.Store.GetBySID(ctx, sid)
	if errors.Is(err, storage.ErrNotFound) {
		e.log().WithField("sid", sid).Info("status callback for a message nudge did not send; ignored")
		return nil
	}
	if err != nil {
		return err
	}
	changed, err := e.Store.RecordStatus(ctx, m.ID, status, errorCode, e.now(), storage.SourceCallback)
	if errors.Is(err, storage.ErrUnknownStatus) {
		e.log().WithFields(map[string]any{"sid": sid, "status": status}).Warn("status callback with a status nudge does not know; ignored")
		return nil
	}
	if err != nil {
		return err
	}
	if changed {
		e.log().WithFields(map[string]any{"sid": sid, "status": status, "error_code": errorCode}).Info("sms status changed (callback)")
		if err := e.afterStatus(ctx, m, status, errorCode); err != nil {
			return err
		}
		e.kickReport()
	}
	return nil
}

func (e *Engine) region() string {
	if e.study().Config.Twilio == nil {
		return ""
	}
	return e.study().Config.Twilio.Region
}
