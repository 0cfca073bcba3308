package ui

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nudge-study/nudge/storage"
)

// How far back the pages look.
const (
	RecentDays   = 7  // recent sends and replies
	WorklistDays = 14 // the "not reached" worklist and opt-outs
	recentRows   = 50
)

// sendRow is one send or status event.
type sendRow struct {
	At                            time.Time
	Project, Record, Rule, Status string
	Contact                       string // unmasked: the template masks it
}

// ruleCount is one rule's messages today.
type ruleCount struct {
	Rule                                 string
	Planned, Sent, Delivered, NotReached int
}

// overviewPage is the start page.
type overviewPage struct {
	Held     []string
	Today    []ruleCount
	Sends    []sendRow
	Replies  []sendRow
	OptOuts  []sendRow
	Projects []string
}

// detail returns the value of key=… in an audit event's detail.
func detail(d, key string) string {
	for _, f := range strings.Fields(d) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

// audit reads the events of the last days days, oldest first.
func (u *UI) audit(r *http.Request, days int) ([]storage.AuditEvent, error) {
	now := u.now()
	return u.cfg.Store.Audit(r.Context(), now.AddDate(0, 0, -days), now.Add(time.Minute))
}

func (u *UI) overview(w http.ResponseWriter, r *http.Request, s session) {
	evs, err := u.audit(r, WorklistDays)
	if err != nil {
		u.fail(w, s, err)
		return
	}
	p := overviewPage{Projects: u.cfg.Projects}
	if u.cfg.Held != nil {
		if p.Held, err = u.cfg.Held(r.Context()); err != nil {
			u.fail(w, s, err)
			return
		}
	}
	now := u.now().In(u.cfg.Location)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, u.cfg.Location)
	recent := now.AddDate(0, 0, -RecentDays)
	counts := map[string]*ruleCount{}
	count := func(rule string) *ruleCount {
		c, ok := counts[rule]
		if !ok {
			c = &ruleCount{Rule: rule}
			counts[rule] = c
		}
		return c
	}
	for i := len(evs) - 1; i >= 0; i-- { // newest first
		e := evs[i]
		row := sendRow{At: e.At, Project: e.Project, Record: e.Record, Rule: e.Rule, Contact: e.Contact}
		if !e.At.Before(today) && e.Rule != "" {
			switch st := detail(e.Detail, "status"); {
			case e.Kind == storage.AuditPlanned:
				count(e.Rule).Planned++
			case e.Kind == storage.AuditSent && st != "retry":
				count(e.Rule).Sent++
			case e.Kind == storage.AuditStatus && st == "delivered":
				count(e.Rule).Delivered++
			case notReached(e) != "" && st != "retry":
				count(e.Rule).NotReached++
			}
		}
		switch {
		case e.At.Before(recent):
		case e.Kind == storage.AuditSent && len(p.Sends) < recentRows:
			row.Status = detail(e.Detail, "status")
			p.Sends = append(p.Sends, row)
		case e.Kind == storage.AuditReply && len(p.Replies) < recentRows:
			row.Status = detail(e.Detail, "handled")
			p.Replies = append(p.Replies, row)
		}
		if (e.Kind == storage.AuditOptedOut || e.Kind == storage.AuditOptedIn) && len(p.OptOuts) < recentRows {
			row.Status = e.Kind
			p.OptOuts = append(p.OptOuts, row)
		}
	}
	for _, c := range counts {
		p.Today = append(p.Today, *c)
	}
	slices.SortFunc(p.Today, func(a, b ruleCount) int { return strings.Compare(a.Rule, b.Rule) })
	u.render(w, http.StatusOK, "overview", u.page(s, "Overview", p))
}

// notReached names why an event means a participant was not reached, or
// "" when it does not.
func notReached(e storage.AuditEvent) string {
	switch e.Kind {
	case storage.AuditFailed:
		return "failed"
	case storage.AuditExpired:
		return "expired"
	case storage.AuditReview:
		return "needs review"
	case storage.AuditBadNumber:
		return "bad number"
	case storage.AuditOptedOut:
		return "opted out"
	case storage.AuditWriteBackFailed:
		return "write-back failed"
	case storage.AuditSent, storage.AuditStatus:
		switch detail(e.Detail, "status") {
		case "undelivered":
			return "undelivered"
		case "failed":
			return "failed"
		case "retry":
			return "deferred"
		case storage.StatusUnknown:
			return "no final status"
		}
	}
	return ""
}

// workRow is one participant not reached, for one reason.
type workRow struct {
	At                            time.Time
	Project, Record, Rule, Reason string
	Contact                       string
	Field                         string // write-backs: the REDCap field
}

// worklistPage lists who was not reached, per project.
type worklistPage struct {
	Project  string // "" = every project
	Projects []string
	Days     int
	Rows     []workRow
}

func (u *UI) worklist(w http.ResponseWriter, r *http.Request, s session) {
	project := r.URL.Query().Get("project")
	evs, err := u.audit(r, WorklistDays)
	if err != nil {
		u.fail(w, s, err)
		return
	}
	// A message's latest event decides: one delivered after a retry was
	// reached. Number and write-back events stand for themselves.
	type key struct {
		msg                     int64
		project, record, reason string
		field                   string
	}
	latest := map[key]workRow{}
	var order []key
	for _, e := range evs {
		if project != "" && e.Project != project {
			continue
		}
		reason := notReached(e)
		k := key{msg: e.MessageID, project: e.Project, record: e.Record}
		if e.MessageID == 0 {
			if reason == "" {
				if e.Kind == storage.AuditOptedIn { // opted in again: off the list
					delete(latest, key{project: e.Project, record: e.Record, reason: "opted out"})
				}
				continue
			}
			k.reason = reason
			if e.Kind == storage.AuditWriteBackFailed {
				k.field = detail(e.Detail, "field")
			}
		}
		if reason == "" {
			delete(latest, k)
			continue
		}
		if _, ok := latest[k]; !ok {
			order = append(order, k)
		}
		latest[k] = workRow{At: e.At, Project: e.Project, Record: e.Record, Rule: e.Rule, Reason: reason,
			Contact: e.Contact, Field: k.field}
	}
	p := worklistPage{Project: project, Projects: u.cfg.Projects, Days: WorklistDays}
	for _, k := range order {
		if row, ok := latest[k]; ok {
			p.Rows = append(p.Rows, row)
			delete(latest, k)
		}
	}
	slices.SortStableFunc(p.Rows, func(a, b workRow) int { return b.At.Compare(a.At) })
	title := "Not reached"
	if project != "" {
		title += ": " + project
	}
	u.render(w, http.StatusOK, "worklist", u.page(s, title, p))
}

// messageView is one message on a participant's page.
type messageView struct {
	storage.Message
	History []storage.StatusChange
}

// numberView is one phone number of a participant's.
type numberView struct {
	storage.NumberState
	Replies []storage.Inbound
}

// participantPage is everything nudge holds about one record.
type participantPage struct {
	Project, Record string
	Messages        []messageView
	Numbers         []numberView
}

func (u *UI) participant(w http.ResponseWriter, r *http.Request, s session) {
	q := r.URL.Query()
	p := participantPage{Project: q.Get("project"), Record: q.Get("record")}
	if p.Record == "" {
		http.Redirect(w, r, Prefix+"worklist", http.StatusSeeOther)
		return
	}
	ctx := r.Context()
	ms, err := u.cfg.Store.RecordMessages(ctx, p.Project, p.Record)
	if err != nil {
		u.fail(w, s, err)
		return
	}
	var phones []string
	for _, m := range ms {
		h, err := u.cfg.Store.History(ctx, m.ID)
		if err != nil {
			u.fail(w, s, err)
			return
		}
		p.Messages = append(p.Messages, messageView{Message: m, History: h})
		if m.Channel == storage.ChannelSMS && m.To != "" && !slices.Contains(phones, m.To) {
			phones = append(phones, m.To)
		}
	}
	for _, ph := range phones {
		ns, err := u.cfg.Store.NumberStateOf(ctx, ph)
		if err != nil {
			u.fail(w, s, err)
			return
		}
		ins, err := u.cfg.Store.InboundFrom(ctx, ph)
		if err != nil {
			u.fail(w, s, err)
			return
		}
		p.Numbers = append(p.Numbers, numberView{NumberState: ns, Replies: ins})
	}
	u.render(w, http.StatusOK, "participant", u.page(s, "Participant "+p.Record, p))
}
