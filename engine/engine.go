// Package engine runs nudge's pipeline: export participant records from
// REDCap, select who each rule applies to, plan and enqueue messages in the
// SQLite outbox, dispatch them through Twilio and SMTP, track their delivery
// status and report it back to REDCap.
//
// Every stage reads its input from the store and writes its output there, so
// a pass interrupted at any point can simply be run again: the outbox's
// idempotency keys make enqueueing repeatable, a row is claimed in a
// committed transaction before it is sent, and a row left "sending" by a
// crash is looked up at Twilio before anything is sent again.
package engine

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine/email"
	"github.com/nudge-study/nudge/engine/metrics"
	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/storage"
)

// REDCap is what the engine needs from one REDCap project.
type REDCap interface {
	ExportRecords(ctx context.Context, p redcap.ExportParams) ([]redcap.Row, error)
	Project(ctx context.Context) (redcap.Project, error)
	Metadata(ctx context.Context) (*dict.Dictionary, error)
	Events(ctx context.Context) ([]redcap.Event, error)
	FormEvents(ctx context.Context) ([]redcap.FormEvent, error)
	ImportRecords(ctx context.Context, rows []redcap.Row) (redcap.ImportResult, error)
}

// repeatingLister is a REDCap that lists the project's repeating
// instruments (the API client does), for checks of fields read from rows
// where they cannot have a value.
type repeatingLister interface {
	Repeating(ctx context.Context) ([]redcap.Repeating, error)
}

// SMSSender sends text messages and looks them up again.
type SMSSender interface {
	// Send creates a message; a positive validity is how long Twilio may
	// still hand it to a carrier.
	Send(ctx context.Context, from, to, body string, validity time.Duration) (sms.Message, error)
	Fetch(ctx context.Context, sid string) (sms.Message, error)
	Find(ctx context.Context, from, to string, after time.Time) ([]sms.Message, error)
}

// EmailSender hands one email to an SMTP server.
type EmailSender interface {
	Send(ctx context.Context, m email.Message) (messageID string, err error)
}

// Clock tells the time and waits; tests and the demo inject their own.
type Clock interface {
	Now() time.Time
	Sleep(ctx context.Context, d time.Duration) error
}

// Engine wires a loaded study to its outside world. Fields left nil are
// simply not used: preview needs no senders, check needs no store.
type Engine struct {
	// Study is the study as loaded. A reload while Serve runs (SIGHUP)
	// replaces it as a whole without changing this field: the engine reads
	// the study in force through CurrentStudy.
	Study  *rules.Study
	Store  *storage.Store
	REDCap map[string]REDCap // by project name
	SMS    SMSSender
	Pacer  *sms.Pacer
	Email  EmailSender
	Clock  Clock
	Log    logrus.FieldLogger

	// Progress, when set, is told about each message handed to a provider.
	Progress func(Progress)

	// Owner names this engine in the database's leases (default
	// storage.NewOwner(): host, pid, process start and a random part, so
	// that two containers that are both PID 1 differ, and a lease left by a
	// killed process is taken over); two engines on one database must
	// differ.
	Owner string

	// Metrics, when set, counts what the engine does for /metrics.
	Metrics *metrics.Metrics

	// Dicts holds each project's data dictionary once Prepare has run.
	Dicts map[string]*dict.Dictionary
	infos map[string]redcap.Project

	mu       sync.Mutex
	records  map[string]map[string]*rules.Record // project → record id → the record as last read
	exported map[string]time.Time                // project → when its last full export began
	fetched  map[string]map[string]time.Time     // project → record id → when it was last read alone
	missing  map[string][]string                 // project → missing-data codes
	backoffs map[string]*backoffState            // sender → its temporary failures
	inbound  *storage.InboundWriter

	reloaded atomic.Pointer[rules.Study] // the study a reload put in force, nil = Study
	// parsed holds the addresses the last plan parsed, for the next to
	// reuse: parsing a phone number is a plan's costliest step, and from
	// one pass to the next a study's numbers seldom change.
	parsed atomic.Pointer[parsedAddresses]
	// studyMu is held for reading by Serve's jobs and catch-up while they
	// work, and for writing by a reload, so that no pass reads records
	// exported for one study and plans them with another. The webhooks do
	// not take it.
	studyMu sync.RWMutex
	checked *checkData // what Prepare read from REDCap to check a study against

	dispatchMu  sync.Mutex                 // one dispatch at a time in a process
	capMu       sync.Mutex                 // held from a text's cap check through its claim
	reportJob   gocron.Job                 // the write-back job (serve)
	reportDirty atomic.Bool                // a write-back run has been asked for and not started
	triggerWake chan struct{}              // wakes the Data Entry Trigger worker (serve)
	leaseRenew  time.Duration              // how often held leases are renewed (0 = leaseRenew)
	serving     atomic.Pointer[serveState] // what Serve knows, for /metrics' nudge_healthy
}

// CurrentStudy is the study in force: Study, or what the last reload of
// Serve put in its place. It is safe for concurrent use and costs one
// atomic load.
func (e *Engine) CurrentStudy() *rules.Study {
	if s := e.reloaded.Load(); s != nil {
		return s
	}
	return e.Study
}

// study is CurrentStudy.
func (e *Engine) study() *rules.Study { return e.CurrentStudy() }

// remember keeps the records of a full export for piping replies and for
// checking queued messages before they are sent, and refreshes the index
// of participants' phone numbers that inbound texts are matched against.
func (e *Engine) remember(snap *Snapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.init()
	byID := make(map[string]*rules.Record, len(snap.Records))
	for _, rec := range snap.Records {
		byID[rec.ID] = rec
	}
	e.records[snap.Project] = byID
	e.exported[snap.Project] = snap.At
	e.fetched[snap.Project] = make(map[string]time.Time)
	e.missing[snap.Project] = snap.Missing
}

// rememberRead keeps the records of a read of some records (ids): those
// that did not come back no longer exist.
func (e *Engine) rememberRead(snap *Snapshot, ids []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.init()
	byID := e.records[snap.Project]
	if byID == nil {
		byID = make(map[string]*rules.Record)
		e.records[snap.Project] = byID
	}
	at := e.fetched[snap.Project]
	if at == nil {
		at = make(map[string]time.Time)
		e.fetched[snap.Project] = at
	}
	for _, id := range ids {
		delete(byID, id)
		at[id] = snap.At
	}
	for _, rec := range snap.Records {
		byID[rec.ID] = rec
		at[rec.ID] = snap.At
	}
	e.missing[snap.Project] = snap.Missing
}

// init makes the caches; the caller holds mu.
func (e *Engine) init() {
	if e.records == nil {
		e.records = make(map[string]map[string]*rules.Record)
		e.exported = make(map[string]time.Time)
		e.fetched = make(map[string]map[string]time.Time)
		e.missing = make(map[string][]string)
	}
}

// cachedRecord returns a record as last exported, with its project's
// missing-data codes.
func (e *Engine) cachedRecord(project, id string) (*rules.Record, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.records[project][id], e.missing[project]
}

// participants lists, for a project's records, the phone numbers its SMS
// rules send to, so that an inbound text can be matched to its sender.
func (e *Engine) participants(snap *Snapshot, now time.Time) []storage.Participant {
	var out []storage.Participant
	seen := map[string]bool{}
	for _, r := range e.study().Rules {
		if r.Project != snap.Project || r.Channel != rules.ChannelSMS {
			continue
		}
		for _, rec := range snap.Records {
			row := baseRow(rec, r.Event)
			raw, _ := rules.NewScope(rec, row, now, nil).Lookup(r.To)
			if strings.TrimSpace(raw) == "" {
				continue
			}
			phone, err := NormalizePhone(raw, e.region())
			if err != nil {
				continue
			}
			event := row.Event
			if r.To.Event != "" {
				event = r.To.Event
			}
			key := phone + "\x00" + rec.ID + "\x00" + event
			if !seen[key] {
				seen[key] = true
				out = append(out, storage.Participant{Phone: phone, Project: snap.Project, Record: rec.ID, Event: event, UpdatedAt: now})
			}
		}
	}
	return out
}

// inboundWriter is the group-commit writer inbound texts are stored through.
func (e *Engine) inboundWriter() *storage.InboundWriter {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.inbound == nil {
		e.inbound = e.Store.NewInboundWriter()
	}
	return e.inbound
}

// msgLog is the logger for one outbox message: its id, rule and record,
// and the recipient masked.
func (e *Engine) msgLog(m storage.Message) logrus.FieldLogger {
	return e.log().WithFields(map[string]any{"message_id": m.ID, "rule": m.Rule, "record": m.Record, "to": redact(m.To)})
}

// recordOptOut records an opt-out nudge learned of other than by an
// inbound STOP (Twilio refusing a send with 21610) and queues its write to
// the project's opt-out field in REDCap.
func (e *Engine) recordOptOut(ctx context.Context, phone, source string, now time.Time) error {
	wbs, err := e.optOutWriteBacks(ctx, phone, now, false)
	if err != nil {
		return err
	}
	if err := e.Store.OptOut(ctx, phone, source, now); err != nil {
		return err
	}
	if len(wbs) == 0 {
		return nil
	}
	if err := e.Store.EnqueueWriteBacks(ctx, wbs, nil); err != nil {
		return err
	}
	e.kickReport()
	return nil
}

// Progress is a snapshot of a pass for a live progress line.
type Progress struct {
	Stage   string
	Done    int
	Total   int
	Message string
}

func (e *Engine) log() logrus.FieldLogger {
	if e.Log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		e.Log = l
	}
	return e.Log
}

// owner names this engine in the database's leases (storage.NewOwner):
// host, pid, the process's start time and PID namespace, and a random part,
// so that two containers that share a host name and are both PID 1 still
// differ, and a lease left by a killed process can be taken over.
func (e *Engine) owner() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Owner == "" {
		e.Owner = storage.NewOwner()
	}
	return e.Owner
}

func (e *Engine) now() time.Time {
	if e.Clock == nil {
		return time.Now()
	}
	return e.Clock.Now()
}

func (e *Engine) progress(p Progress) {
	if e.Progress != nil {
		e.Progress(p)
	}
}

// Prepare reads each project's data dictionary and project information and
// checks every field and event the rules use against them, and every field
// nudge writes (write_back, opt_out, a reply's set): it can be written, can
// hold what nudge writes, and (longitudinal projects) is on an instrument
// designated for the event it is written to. A study that
// fails the check must not send anything: the returned error is a
// rules.Errors with one FILE:LINE:COL line per problem.
func (e *Engine) Prepare(ctx context.Context) error {
	cd := &checkData{dicts: make(map[string]*dict.Dictionary), events: make(map[string][]string),
		designated: make(map[string]map[string][]string), repeating: make(map[string]map[string][]string), surveys: make(map[string]map[string]bool)}
	infos := make(map[string]redcap.Project)
	for _, p := range e.study().Config.Projects {
		rc, ok := e.REDCap[p.Name]
		if !ok {
			return fmt.Errorf("project %s: no REDCap connection configured", p.Name)
		}
		d, err := rc.Metadata(ctx)
		if err != nil {
			return fmt.Errorf("project %s: reading the data dictionary: %w", p.Name, err)
		}
		info, err := rc.Project(ctx)
		if err != nil {
			return fmt.Errorf("project %s: reading project information: %w", p.Name, err)
		}
		cd.dicts[p.Name] = d
		infos[p.Name] = info
		if info.Longitudinal {
			evs, err := rc.Events(ctx)
			if err != nil {
				return fmt.Errorf("project %s: reading events: %w", p.Name, err)
			}
			names := make([]string, len(evs))
			for i, ev := range evs {
				names[i] = ev.UniqueName
			}
			cd.events[p.Name] = names
			fes, err := rc.FormEvents(ctx)
			if err != nil {
				return fmt.Errorf("project %s: reading which instruments each event uses: %w", p.Name, err)
			}
			if len(fes) > 0 {
				designated := make(map[string][]string)
				for _, fe := range fes {
					designated[fe.Event] = append(designated[fe.Event], fe.Form)
				}
				cd.designated[p.Name] = designated
			}
		}
		if rr, ok := rc.(repeatingLister); ok && info.HasRepeating {
			reps, err := rr.Repeating(ctx)
			if err != nil {
				return fmt.Errorf("project %s: reading the repeating instruments: %w", p.Name, err)
			}
			repeating := make(map[string][]string)
			for _, r := range reps {
				if r.Form != "" {
					repeating[r.Event] = append(repeating[r.Event], r.Form)
				}
			}
			cd.repeating[p.Name] = repeating
		}
		cd.surveys[p.Name] = e.surveysOf(ctx, p.Name, rc, info.Longitudinal, cd.designated[p.Name])
	}
	// Serve calls Prepare holding studyMu for reading: a reload waits for
	// this check, or this check sees what the reload put in force.
	e.Dicts, e.infos, e.checked = cd.dicts, infos, cd
	if errs := cd.check(e.study()); len(errs) > 0 {
		return errs
	}
	return nil
}

// checkData is what Prepare read from REDCap that a study is checked
// against: each project's data dictionary, events (longitudinal projects)
// and the instruments designated for each event.
type checkData struct {
	dicts      map[string]*dict.Dictionary
	events     map[string][]string            // project → unique event names; absent = not longitudinal
	designated map[string]map[string][]string // project → event → instruments
	repeating  map[string]map[string][]string // project → event ("" classic) → repeating instruments
	surveys    map[string]map[string]bool     // project → instrument a template links to → REDCap says it is a survey
}

// check checks every field and event s uses, and every field it writes.
// Warnings (a condition reading a field that is always blank where it is
// read) do not stop nudge: nudge check shows them.
func (cd *checkData) check(s *rules.Study) rules.Errors {
	var errs rules.Errors
	for _, p := range s.Config.Projects {
		for _, e := range s.CheckStructure(p.Name, cd.dicts[p.Name], rules.Structure{
			Events: cd.events[p.Name], Designated: cd.designated[p.Name], Repeating: cd.repeating[p.Name]}) {
			if !e.Warning {
				errs = append(errs, e)
			}
		}
	}
	errs = append(errs, s.CheckSurveys(cd.dicts, cd.surveys)...)
	return append(errs, s.CheckFields(cd.dicts)...)
}
