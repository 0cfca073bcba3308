package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/storage"
)

// statusTime is how status and audit show a time in the study's zone.
const statusTime = "2006-01-02 15:04:05 MST"

// viewer turns what the store holds into what a command may show: phone
// numbers and addresses are masked, and bodies left out, unless asked for.
type viewer struct {
	loc         *time.Location
	showContact bool
	showBody    bool
}

// contact shows a phone number or address, masked unless --show-contact.
func (v viewer) contact(s string) string {
	if v.showContact || s == "" {
		return s
	}
	return engine.Redact(s)
}

// body shows a message body only with --show-body.
func (v viewer) body(s string) string {
	if !v.showBody {
		return ""
	}
	return s
}

// when shows a time in the study's zone, "-" for none.
func (v viewer) when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(v.loc).Format(statusTime)
}

// statusStudy is what status and audit need of the study: its database,
// zone and phone region.
type statusStudy struct {
	db     string
	loc    *time.Location
	region string
}

// loadStatusStudy reads the config for the database path (unless db is
// given), the study's zone and its phone region.
func loadStatusStudy(config, db string, stdout io.Writer) (statusStudy, error) {
	study, err := rules.Load(config)
	var errs rules.Errors
	if errors.As(err, &errs) {
		return statusStudy{}, printProblems(errs, stdout)
	}
	if err != nil {
		return statusStudy{}, err
	}
	s := statusStudy{db: study.Config.Storage.Path, loc: study.Config.Location}
	if db != "" {
		s.db = db
	}
	if s.loc == nil {
		s.loc = time.Local
	}
	if study.Config.Twilio != nil {
		s.region = study.Config.Twilio.Region
	}
	return s, nil
}

// openStore opens the study's database for status and audit; one that does
// not exist is not created.
func (s statusStudy) openStore() (*storage.Store, error) {
	if _, err := os.Stat(s.db); errors.Is(err, fs.ErrNotExist) {
		return nil, &exitError{code: 1, err: fmt.Errorf("no database at %s: nudge has not run with this config yet (or give --db FILE)", s.db)}
	}
	return storage.Open(s.db)
}

// cmdStatus shows where messages stand: one participant's (by record,
// phone number or email address), one rule's, or the last runs.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("status", stderr)
	db := fs.String("db", "", "the database (default: the config's storage path)")
	record := fs.String("record", "", "one participant: this record id")
	project := fs.String("project", "", "with --record: only this project")
	phone := fs.String("phone", "", "one participant: this phone number (as typed in REDCap)")
	email := fs.String("email", "", "one participant: this email address")
	rule := fs.String("rule", "", "one rule: counts per state, its last messages and failures")
	runs := fs.Int("runs", 10, "the last N runs (the default view)")
	last := fs.Int("last", 10, "with --rule: how many of the last messages and failures to list")
	asJSON := fs.Bool("json", false, "print one JSON object")
	showContact := fs.Bool("show-contact", false, "show phone numbers and addresses in full")
	showBody := fs.Bool("show-body", false, "show message bodies and the texts participants sent")
	if err := parse(fs, args); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{*record != "", *phone != "", *email != "", *rule != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		fmt.Fprintln(stderr, "nudge status: give one of --record, --phone, --email or --rule")
		return errUsage
	}
	if *project != "" && *record == "" {
		fmt.Fprintln(stderr, "nudge status: --project goes with --record")
		return errUsage
	}
	study, err := loadStatusStudy(c.config, *db, stdout)
	if err != nil {
		return err
	}
	q := participantQuery{Project: *project, Record: *record, Email: *email}
	if *phone != "" {
		e164, err := engine.NormalizePhone(*phone, study.region)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("--phone %s: %v", engine.Redact(*phone), err)}
		}
		q.Phone = e164
	}
	st, err := study.openStore()
	if err != nil {
		return err
	}
	defer st.Close()
	v := viewer{loc: study.loc, showContact: *showContact, showBody: *showBody}
	var out any
	switch {
	case *rule != "":
		out, err = ruleStatus(ctx, st, v, *rule, *last)
	case *record != "" || *phone != "" || *email != "":
		out, err = participantStatusOf(ctx, st, v, q)
	default:
		out, err = runsStatus(ctx, st, *runs)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	switch o := out.(type) {
	case *participantStatus:
		printParticipant(stdout, v, o)
	case *ruleStatusView:
		printRuleStatus(stdout, v, o)
	case *runsView:
		printRuns(stdout, v, o)
	}
	return nil
}

// participantQuery names the participant asked for; Phone is E.164.
type participantQuery struct {
	Project string `json:"project,omitempty"`
	Record  string `json:"record,omitempty"`
	Phone   string `json:"phone,omitempty"`
	Email   string `json:"email,omitempty"`
}

// participantStatus is everything nudge holds about one participant.
type participantStatus struct {
	Query    participantQuery `json:"query"`
	Records  []recordRef      `json:"records"`
	Messages []messageView    `json:"messages"`
	Numbers  []numberView     `json:"numbers"`
}

type recordRef struct {
	Project string `json:"project"`
	Record  string `json:"record"`
}

// messageView is one message as status shows it.
type messageView struct {
	ID         int64      `json:"id"`
	Project    string     `json:"project"`
	Rule       string     `json:"rule"`
	Record     string     `json:"record"`
	Event      string     `json:"event,omitempty"`
	Instance   int        `json:"instance,omitempty"`
	Occurrence int        `json:"occurrence"`
	Key        string     `json:"key"`
	Channel    string     `json:"channel"`
	To         string     `json:"to"`
	State      string     `json:"state"`
	Status     string     `json:"status,omitempty"`
	SID        string     `json:"sid,omitempty"`
	ErrorCode  int        `json:"error_code,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Attempts   int        `json:"attempts"`
	Created    *time.Time `json:"created_at,omitempty"`
	NotBefore  *time.Time `json:"not_before,omitempty"`
	Sent       *time.Time `json:"sent_at,omitempty"`
	Final      *time.Time `json:"final_at,omitempty"`
	Expires    *time.Time `json:"expires_at,omitempty"`
	Subject    string     `json:"subject,omitempty"`
	Body       string     `json:"body,omitempty"`
	// BodySHA256 is what is left of a body blanked after privacy.keep_bodies.
	BodySHA256 string       `json:"body_sha256,omitempty"`
	History    []changeView `json:"history,omitempty"`
}

type changeView struct {
	At        time.Time `json:"at"`
	Status    string    `json:"status"`
	ErrorCode int       `json:"error_code,omitempty"`
	Source    string    `json:"source"`
}

// numberView is what nudge holds about one of the participant's numbers.
type numberView struct {
	Phone        string      `json:"phone"`
	OptedOut     bool        `json:"opted_out"`
	OptOutSource string      `json:"opt_out_source,omitempty"`
	OptOutAt     *time.Time  `json:"opt_out_changed_at,omitempty"`
	BadNumber    *badView    `json:"bad_number,omitempty"`
	PausedUntil  *time.Time  `json:"paused_until,omitempty"`
	PauseSource  string      `json:"pause_source,omitempty"`
	Replies      []replyView `json:"replies"`
}

type badView struct {
	Code   int       `json:"code"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// replyView is a text the participant sent and what nudge made of it.
type replyView struct {
	At        time.Time `json:"at"`
	SID       string    `json:"sid"`
	Handled   string    `json:"handled"`              // stop, start, help, none, reply:NAME
	ReplyRule string    `json:"reply_rule,omitempty"` // the reply rule that matched
	Body      string    `json:"body,omitempty"`       // with --show-body
	Answer    string    `json:"answer,omitempty"`     // with --show-body
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func (v viewer) message(m storage.Message) messageView {
	return messageView{ID: m.ID, Project: m.Project, Rule: m.Rule, Record: m.Record, Event: m.Event,
		Instance: m.Instance, Occurrence: m.Occurrence, Key: m.Key, Channel: m.Channel, To: v.contact(m.To),
		State: string(m.State), Status: m.Status, SID: m.SID, ErrorCode: m.ErrorCode, Reason: m.Reason,
		Attempts: m.Attempts, Created: optTime(m.CreatedAt), NotBefore: optTime(m.NotBefore),
		Sent: optTime(m.SentAt), Final: optTime(m.FinalAt), Expires: optTime(m.ExpiresAt),
		Subject: v.body(m.Subject), Body: v.body(m.Body), BodySHA256: m.BodyDigest}
}

// participantStatusOf gathers a participant's messages (those of the
// record, or to the number or address, and every other message of the
// records they belong to), each message's history, and the state and
// replies of every number the participant was texted at.
func participantStatusOf(ctx context.Context, st *storage.Store, v viewer, q participantQuery) (*participantStatus, error) {
	var seed []storage.Message
	var records []recordRef
	var err error
	switch {
	case q.Record != "":
		seed, err = st.RecordMessages(ctx, q.Project, q.Record)
		if err == nil && q.Project != "" {
			records = append(records, recordRef{q.Project, q.Record})
		}
	case q.Phone != "":
		seed, err = st.MessagesTo(ctx, q.Phone)
		if err == nil {
			var ps []storage.Participant
			ps, err = st.ParticipantsByPhone(ctx, q.Phone)
			for _, p := range ps {
				records = append(records, recordRef{p.Project, p.Record})
			}
		}
	default:
		seed, err = st.MessagesTo(ctx, q.Email)
	}
	if err != nil {
		return nil, err
	}
	for _, m := range seed {
		records = append(records, recordRef{m.Project, m.Record})
	}
	slices.SortFunc(records, func(a, b recordRef) int {
		return strings.Compare(a.Project+"\x00"+a.Record, b.Project+"\x00"+b.Record)
	})
	records = slices.Compact(records)
	byID := make(map[int64]storage.Message)
	for _, m := range seed {
		byID[m.ID] = m
	}
	if q.Record == "" {
		for _, r := range records {
			ms, err := st.RecordMessages(ctx, r.Project, r.Record)
			if err != nil {
				return nil, err
			}
			for _, m := range ms {
				byID[m.ID] = m
			}
		}
	}
	ids := make([]int64, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := &participantStatus{Query: q, Records: records, Messages: []messageView{}, Numbers: []numberView{}}
	out.Query.Phone = v.contact(q.Phone)
	out.Query.Email = v.contact(q.Email)
	phones := []string{}
	if q.Phone != "" {
		phones = append(phones, q.Phone)
	}
	for _, id := range ids {
		m := byID[id]
		mv := v.message(m)
		hist, err := st.History(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, h := range hist {
			mv.History = append(mv.History, changeView{At: h.At, Status: h.Status, ErrorCode: h.ErrorCode, Source: h.Source})
		}
		out.Messages = append(out.Messages, mv)
		if m.Channel == storage.ChannelSMS && m.To != "" && !slices.Contains(phones, m.To) {
			phones = append(phones, m.To)
		}
	}
	for _, p := range phones {
		nv, err := numberStatus(ctx, st, v, p)
		if err != nil {
			return nil, err
		}
		out.Numbers = append(out.Numbers, nv)
	}
	return out, nil
}

func numberStatus(ctx context.Context, st *storage.Store, v viewer, phone string) (numberView, error) {
	ns, err := st.NumberStateOf(ctx, phone)
	if err != nil {
		return numberView{}, err
	}
	nv := numberView{Phone: v.contact(phone), OptedOut: ns.OptedOut, Replies: []replyView{},
		PausedUntil: optTime(ns.PausedUntil), PauseSource: ns.PauseSource}
	if ns.OptOutKnown {
		nv.OptOutSource, nv.OptOutAt = ns.OptOutSource, optTime(ns.OptOutAt)
	}
	if ns.Bad != nil {
		nv.BadNumber = &badView{Code: ns.Bad.Code, Reason: ns.Bad.Reason, At: ns.Bad.At}
	}
	ins, err := st.InboundFrom(ctx, phone)
	if err != nil {
		return numberView{}, err
	}
	for _, in := range ins {
		r := replyView{At: in.ReceivedAt, SID: in.MessageSID, Handled: in.Handled, Body: v.body(in.Body), Answer: v.body(in.Reply)}
		if name, ok := strings.CutPrefix(in.Handled, "reply:"); ok {
			r.ReplyRule = name
		}
		nv.Replies = append(nv.Replies, r)
	}
	return nv, nil
}

func printParticipant(w io.Writer, v viewer, p *participantStatus) {
	var who []string
	for _, r := range p.Records {
		who = append(who, "record "+r.Record+" ("+r.Project+")")
	}
	asked := p.Query.Phone + p.Query.Email
	if asked == "" {
		asked = "record " + p.Query.Record
		if p.Query.Project != "" {
			asked += " (" + p.Query.Project + ")"
		}
	}
	fmt.Fprintf(w, "participant: %s\n", asked)
	if len(who) > 0 {
		fmt.Fprintf(w, "records: %s\n", strings.Join(who, ", "))
	}
	if len(p.Messages) == 0 {
		fmt.Fprintln(w, "\nno messages")
	}
	for _, m := range p.Messages {
		fmt.Fprintf(w, "\nmessage %d: %s, %s, %s\n", m.ID, m.Rule, m.Channel, m.State)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		row := func(k, val string) {
			if val != "" {
				fmt.Fprintf(tw, "  %s\t%s\n", k, oneLine(val))
			}
		}
		row("key", m.Key)
		row("to", m.To)
		row("occurrence", fmt.Sprint(m.Occurrence))
		row("status", m.Status)
		row("created", v.whenPtr(m.Created))
		if m.NotBefore != nil && m.Sent == nil {
			row("not before", v.whenPtr(m.NotBefore))
		}
		if m.Expires != nil && m.Sent == nil {
			row("expires", v.whenPtr(m.Expires))
		}
		if m.Sent != nil {
			row("sent", v.whenPtr(m.Sent))
		}
		if m.Final != nil {
			row("final", v.whenPtr(m.Final))
		}
		row("sid", m.SID)
		if m.ErrorCode != 0 {
			row("error", fmt.Sprint(m.ErrorCode))
		}
		row("reason", m.Reason)
		row("subject", m.Subject)
		row("body", m.Body)
		if m.BodySHA256 != "" {
			row("body", "blanked after privacy.keep_bodies; SHA-256 "+m.BodySHA256)
		}
		tw.Flush()
		if len(m.History) > 0 {
			fmt.Fprintln(w, "  history:")
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			for _, h := range m.History {
				fmt.Fprintf(tw, "    %s\t%s\t%s", v.when(h.At), h.Status, h.Source)
				if h.ErrorCode != 0 {
					fmt.Fprintf(tw, "\terror %d", h.ErrorCode)
				}
				fmt.Fprintln(tw)
			}
			tw.Flush()
		}
	}
	for _, n := range p.Numbers {
		fmt.Fprintf(w, "\nnumber %s\n", n.Phone)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		switch {
		case n.OptOutAt == nil:
			fmt.Fprintf(tw, "  opt-out\tnever opted out\n")
		case n.OptedOut:
			fmt.Fprintf(tw, "  opt-out\topted out %s (%s)\n", v.whenPtr(n.OptOutAt), n.OptOutSource)
		default:
			fmt.Fprintf(tw, "  opt-out\topted back in %s (%s)\n", v.whenPtr(n.OptOutAt), n.OptOutSource)
		}
		if n.BadNumber != nil {
			fmt.Fprintf(tw, "  bad number\tTwilio error %d since %s: %s\n", n.BadNumber.Code, v.when(n.BadNumber.At), oneLine(n.BadNumber.Reason))
		} else {
			fmt.Fprintf(tw, "  bad number\tno\n")
		}
		if n.PausedUntil != nil {
			fmt.Fprintf(tw, "  reply pause\tuntil %s (%s)\n", v.whenPtr(n.PausedUntil), n.PauseSource)
		} else {
			fmt.Fprintf(tw, "  reply pause\tnone\n")
		}
		tw.Flush()
		if len(n.Replies) == 0 {
			fmt.Fprintln(w, "  replies: none")
			continue
		}
		fmt.Fprintln(w, "  replies:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, r := range n.Replies {
			fmt.Fprintf(tw, "    %s\t%s\t%s", v.when(r.At), r.SID, dash(r.Handled))
			if v.showBody {
				fmt.Fprintf(tw, "\t%q\t→ %q", oneLine(r.Body), oneLine(r.Answer))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}

func (v viewer) whenPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return v.when(*t)
}

// ruleStatusView is where one rule's messages stand.
type ruleStatusView struct {
	Rule     string        `json:"rule"`
	Counts   []ruleCount   `json:"counts"`
	Last     []messageView `json:"last"`
	Failures []messageView `json:"failures"`
}

type ruleCount struct {
	Project string         `json:"project"`
	Channel string         `json:"channel"`
	States  map[string]int `json:"states"`
	Total   int            `json:"total"`
}

// stateOrder is the order status lists states in.
var stateOrder = []storage.State{storage.StatePlanned, storage.StateRetry, storage.StateSending, storage.StateSent,
	storage.StateDelivered, storage.StateUndelivered, storage.StateFailed, storage.StateReview, storage.StateUnknown,
	storage.StateCanceled, storage.StateExpired, storage.StateSkipped}

func ruleStatus(ctx context.Context, st *storage.Store, v viewer, rule string, n int) (*ruleStatusView, error) {
	rs, err := st.RuleStatusOf(ctx, rule, n)
	if err != nil {
		return nil, err
	}
	out := &ruleStatusView{Rule: rule, Counts: []ruleCount{}, Last: []messageView{}, Failures: []messageView{}}
	for _, c := range rs.Counts {
		rc := ruleCount{Project: c.Project, Channel: c.Channel, States: make(map[string]int), Total: c.Total}
		for s, k := range c.States {
			rc.States[string(s)] = k
		}
		out.Counts = append(out.Counts, rc)
	}
	for _, m := range rs.Last {
		out.Last = append(out.Last, v.message(m))
	}
	for _, m := range rs.Failures {
		out.Failures = append(out.Failures, v.message(m))
	}
	return out, nil
}

func printRuleStatus(w io.Writer, v viewer, r *ruleStatusView) {
	fmt.Fprintf(w, "rule %s\n\n", r.Rule)
	if len(r.Counts) == 0 {
		fmt.Fprintln(w, "no messages")
		return
	}
	var states []storage.State
	for _, s := range stateOrder {
		for _, c := range r.Counts {
			if c.States[string(s)] > 0 {
				states = append(states, s)
				break
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "PROJECT\tCHANNEL\tTOTAL")
	for _, s := range states {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(string(s)))
	}
	fmt.Fprintln(tw)
	for _, c := range r.Counts {
		fmt.Fprintf(tw, "%s\t%s\t%d", c.Project, c.Channel, c.Total)
		for _, s := range states {
			fmt.Fprintf(tw, "\t%d", c.States[string(s)])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nlast %d message(s):\n", len(r.Last))
	printMessageTable(w, v, r.Last)
	if len(r.Failures) == 0 {
		fmt.Fprintln(w, "\nfailures: none")
		return
	}
	fmt.Fprintf(w, "\nlast %d failure(s):\n", len(r.Failures))
	printMessageTable(w, v, r.Failures)
}

func printMessageTable(w io.Writer, v viewer, ms []messageView) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPROJECT\tRECORD\tOCC\tTO\tSTATE\tCREATED\tSENT\tERROR\tREASON")
	for _, m := range ms {
		code := "-"
		if m.ErrorCode != 0 {
			code = fmt.Sprint(m.ErrorCode)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Project, m.Record, m.Occurrence,
			dash(m.To), m.State, v.whenPtr(m.Created), v.whenPtr(m.Sent), code, dash(oneLine(m.Reason)))
	}
	tw.Flush()
}

// runSummary is the part of a run's stored summary status shows.
type runSummary struct {
	Enqueued int                  `json:"enqueued"`
	Dispatch engine.DispatchStats `json:"dispatch"`
	Track    struct {
		Polled int `json:"polled"`
		Final  int `json:"final"`
	} `json:"track"`
	Report struct {
		Imported int `json:"imported"`
		Rejected int `json:"rejected"`
	} `json:"report"`
	Rules    []engine.RuleSummary `json:"rules"`
	HeldBack []string             `json:"held_back"`
}

// runsView is the last runs, newest first.
type runsView struct {
	Runs []runView `json:"runs"`
}

type runView struct {
	ID       int64           `json:"id"`
	Kind     string          `json:"kind"`
	Started  time.Time       `json:"started_at"`
	Finished *time.Time      `json:"finished_at,omitempty"`
	Outcome  string          `json:"outcome"`
	Summary  json.RawMessage `json:"summary,omitempty"`
	parsed   *runSummary
}

func runsStatus(ctx context.Context, st *storage.Store, n int) (*runsView, error) {
	rs, err := st.Runs(ctx, n)
	if err != nil {
		return nil, err
	}
	out := &runsView{Runs: []runView{}}
	for _, r := range rs {
		rv := runView{ID: r.ID, Kind: r.Kind, Started: r.StartedAt, Finished: optTime(r.FinishedAt), Outcome: r.Outcome, Summary: r.Summary}
		if len(r.Summary) > 0 {
			var s runSummary
			if json.Unmarshal(r.Summary, &s) == nil {
				rv.parsed = &s
			}
		}
		out.Runs = append(out.Runs, rv)
	}
	return out, nil
}

func printRuns(w io.Writer, v viewer, r *runsView) {
	if len(r.Runs) == 0 {
		fmt.Fprintln(w, "no runs yet")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tKIND\tSTARTED\tFINISHED\tOUTCOME\tENQUEUED\tSENT\tFAILED\tCANCELED\tEXPIRED\tREVIEW\tHELD\tPOLLED\tWRITTEN BACK")
	for _, run := range r.Runs {
		outcome := run.Outcome
		if run.Finished == nil {
			outcome = "unfinished"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s", run.ID, run.Kind, v.when(run.Started), v.whenPtr(run.Finished), dash(outcome))
		if s := run.parsed; s != nil {
			d := s.Dispatch
			fmt.Fprintf(tw, "\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Enqueued, d.Sent, d.Failed, d.Canceled, d.Expired,
				d.Review, d.Held, s.Track.Polled, s.Report.Imported)
		} else {
			fmt.Fprintln(tw, "\t-\t-\t-\t-\t-\t-\t-\t-\t-")
		}
	}
	tw.Flush()
	for _, run := range r.Runs {
		if run.parsed == nil || len(run.parsed.HeldBack) == 0 {
			continue
		}
		for _, p := range run.parsed.HeldBack {
			fmt.Fprintf(w, "run %d held back: %s\n", run.ID, oneLine(p))
		}
	}
}
