package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
)

// initOptions are the choices `nudge init` makes beyond the project itself.
type initOptions struct {
	Name  string    // the project's name in nudge.yaml; "" = from its title
	Zone  string    // the machine's IANA zone; "" = none
	Today time.Time // written in the header comment
}

// Names `nudge init` gives what it writes.
const (
	initRule         = "example-reminder"
	initDefaultZone  = "America/New_York"
	initWriteBackCSV = "write_back_fields.csv"
	initFromNumber   = "+15555550100" // a fictional number (555-01xx), to be replaced
	initStaffAddress = "coordinator@example.edu"
)

// dictionaryColumns are the columns of the data dictionary REDCap's web UI
// downloads, in its order, with the API metadata key of each.
var dictionaryColumns = []struct{ Header, Key string }{
	{"Variable / Field Name", "field_name"},
	{"Form Name", "form_name"},
	{"Section Header", "section_header"},
	{"Field Type", "field_type"},
	{"Field Label", "field_label"},
	{"Choices, Calculations, OR Slider Labels", "select_choices_or_calculations"},
	{"Field Note", "field_note"},
	{"Text Validation Type OR Show Slider Number", "text_validation_type_or_show_slider_number"},
	{"Text Validation Min", "text_validation_min"},
	{"Text Validation Max", "text_validation_max"},
	{"Identifier?", "identifier"},
	{"Branching Logic (Show field only if...)", "branching_logic"},
	{"Required Field?", "required_field"},
	{"Custom Alignment", "custom_alignment"},
	{"Question Number (surveys only)", "question_number"},
	{"Matrix Group Name", "matrix_group_name"},
	{"Matrix Ranking?", "matrix_ranking"},
	{"Field Annotation", "field_annotation"},
}

// dictionaryCSV writes metadata rows as REDCap's Data Dictionary file.
func dictionaryCSV(rows []map[string]string) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	header := make([]string, len(dictionaryColumns))
	for i, c := range dictionaryColumns {
		header[i] = c.Header
	}
	w.Write(header)
	for _, r := range rows {
		rec := make([]string, len(dictionaryColumns))
		for i, c := range dictionaryColumns {
			rec[i] = r[c.Key]
		}
		w.Write(rec)
	}
	w.Flush()
	return b.String()
}

// initPlan is what the example rule is built from.
type initPlan struct {
	p       *initProject
	name    string // project name in nudge.yaml
	fields  initFields
	event   string // the rule's event ("" in a classic project)
	channel string // sms or email
	to      string // the rule's to: a field reference or the staff address
	form    string // where the fields to create go

	writeBack     [][2]string // key → field name, in write_back order
	missing       []string    // write-back (and opt-out) fields the project lacks
	proposeOptOut string      // the opt-out field to create, "" when one exists or no texts
}

// ref writes a field for the rule's event: bare when its form is
// designated there (or in a classic project), else with the first event
// its form is designated for.
func (pl *initPlan) ref(field string) string {
	if pl.event == "" {
		return "[" + field + "]"
	}
	f, _ := pl.p.Dict.Field(field)
	if pl.p.designated(pl.event, f.Form) {
		return "[" + field + "]"
	}
	return "[" + pl.p.firstEvent(f.Form) + "][" + field + "]"
}

func newInitPlan(p *initProject, opt initOptions) *initPlan {
	pl := &initPlan{p: p, name: opt.Name}
	if pl.name == "" {
		pl.name = projectSlug(p.Info.Title)
	}
	usable := func(f dict.Field) bool {
		if !p.Info.Longitudinal {
			return !p.repeats("", f.Form)
		}
		ev := p.firstEvent(f.Form)
		return ev != "" && !p.repeats(ev, f.Form)
	}
	pl.fields = detectFields(p.Dict, usable)
	anchor := p.Dict.RecordID()
	switch {
	case pl.fields.Phone != "":
		pl.channel, anchor = "sms", pl.fields.Phone
	case pl.fields.Email != "":
		pl.channel, anchor = "email", pl.fields.Email
	default:
		pl.channel = "email"
	}
	af, _ := p.Dict.Field(anchor)
	pl.form = af.Form
	if p.Info.Longitudinal {
		pl.event = p.firstEvent(af.Form)
		if pl.event == "" && len(p.Events) > 0 {
			pl.event = p.Events[0].UniqueName
		}
	}
	switch {
	case pl.fields.Phone != "":
		pl.to = `"` + pl.ref(pl.fields.Phone) + `"`
	case pl.fields.Email != "":
		pl.to = `"` + pl.ref(pl.fields.Email) + `"`
	default:
		pl.to = initStaffAddress
	}

	prefix := "nudge_" + pl.channel
	keys := []string{"status", "sid", "sent_at", "error"}
	if pl.channel == "email" {
		keys = []string{"status", "sent_at", "error"}
	}
	for _, k := range keys {
		name := prefix + "_" + k
		pl.writeBack = append(pl.writeBack, [2]string{k, name})
		if _, ok := p.Dict.Field(name); !ok {
			pl.missing = append(pl.missing, name)
		}
	}
	if pl.channel == "sms" && pl.fields.OptOut == "" {
		pl.proposeOptOut = "sms_opt_out"
		if _, ok := p.Dict.Field(pl.proposeOptOut); !ok {
			pl.missing = append(pl.missing, pl.proposeOptOut)
		}
	}
	return pl
}

var slugRE = regexp.MustCompile(`[^a-z0-9]+`)

// projectSlug turns a project title into a project name for nudge.yaml.
func projectSlug(title string) string {
	s := strings.Trim(slugRE.ReplaceAllString(strings.ToLower(title), "_"), "_")
	if len(s) > 30 {
		s = strings.TrimRight(s[:30], "_")
	}
	if s == "" {
		return "main"
	}
	return s
}

// yamlString quotes s as a YAML double-quoted scalar.
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// initSteps are the next steps `nudge init` prints.
type initSteps []string

func (s initSteps) render(dir string) string {
	var b strings.Builder
	b.WriteString("Next steps:\n")
	for i, step := range s {
		fmt.Fprintf(&b, "%d. %s\n", i+1, strings.ReplaceAll(step, "DIR", dir))
	}
	return b.String()
}

// buildInit renders the study folder's files and the next steps.
func buildInit(p *initProject, opt initOptions) ([]initFile, initSteps) {
	pl := newInitPlan(p, opt)
	dictPath := filepath.ToSlash(filepath.Join("redcap", pl.name+".dictionary.csv"))
	files := []initFile{{Path: "nudge.yaml"}, {Path: dictPath, Content: dictionaryCSV(p.Metadata)}}
	var eventsPath, mapPath string
	if p.Info.Longitudinal {
		eventsPath = "redcap/" + pl.name + ".events.csv"
		mapPath = "redcap/" + pl.name + ".instrument-events.csv"
		files = append(files, initFile{Path: eventsPath, Content: eventsCSV(p)}, initFile{Path: mapPath, Content: formEventsCSV(p)})
	}
	files[0].Content = pl.config(opt, dictPath, eventsPath, mapPath)
	files = append(files, initFile{Path: "rules/" + pl.name + ".yaml", Content: pl.ruleFile()})
	if pl.channel == "sms" {
		files = append(files, initFile{Path: "templates/" + initRule + ".sms.txt", Content: pl.smsTemplate()})
	} else {
		files = append(files, initFile{Path: "templates/" + initRule + ".email.txt", Content: pl.emailTemplate()})
	}
	if len(pl.missing) > 0 {
		files = append(files, initFile{Path: initWriteBackCSV, Content: pl.writeBackCSV()})
	}

	var steps initSteps
	steps = append(steps, fmt.Sprintf("Keep the API token in %s for every nudge command (export %s=…, or token_file: in nudge.yaml); never write it into the study folder.", p.TokenEnv, p.TokenEnv))
	if len(pl.missing) > 0 {
		steps = append(steps, fmt.Sprintf("Create the fields %s in REDCap (form %s), as DIR/%s lists them: in the Online Designer, or append its rows (without the header) to the data dictionary "+
			"and upload that (a Data Dictionary upload replaces the whole dictionary). Then download the data dictionary again into DIR/%s "+
			"and remove the # before write_back in DIR/rules/%s.yaml.",
			strings.Join(pl.missing, ", "), pl.form, initWriteBackCSV, dictPath, pl.name))
	}
	if pl.proposeOptOut != "" {
		steps = append(steps, fmt.Sprintf("Once %s exists, remove the # before opt_out in DIR/nudge.yaml (STOP then writes it) and add \"and [%s] <> '1'\" to the example rule's condition.", pl.proposeOptOut, pl.proposeOptOut))
	}
	steps = append(steps, fmt.Sprintf("Edit the example rule DIR/rules/%s.yaml and its template in DIR/templates/ to say what your protocol wants; it is disabled until you set enabled: true.", pl.name))
	if opt.Zone == "" {
		steps = append(steps, "Set timezone: in DIR/nudge.yaml to the study's zone (it says "+initDefaultZone+" for now).")
	}
	if pl.channel == "sms" {
		steps = append(steps, "Put your Twilio number in twilio.from in DIR/nudge.yaml (it holds a fictional number) and the Account SID and Auth Token in TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN.")
	} else {
		steps = append(steps, "Set smtp: host and from in DIR/nudge.yaml to your mail server and sender.")
	}
	steps = append(steps, "Run nudge check --config DIR/nudge.yaml after each edit, then nudge preview --config DIR/nudge.yaml --all to see who would get what (it sends nothing).")
	return files, steps
}

// config renders nudge.yaml.
func (pl *initPlan) config(opt initOptions, dictPath, eventsPath, mapPath string) string {
	p := pl.p
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# nudge.yaml for %s (REDCap project %d), written by `nudge init` on %s.", yamlString(p.Info.Title), p.Info.ID, opt.Today.Format("2006-01-02"))
	w("# Every key is described in nudge's README (Config reference). Run `nudge check` after each edit.")
	w("study: %s", yamlString(p.Info.Title))
	if opt.Zone != "" {
		w("timezone: %s", opt.Zone)
	} else {
		w("timezone: %s   # CHANGE to the study's zone (an IANA name such as America/Chicago): 'today', 'now' and schedules use it", initDefaultZone)
	}
	w("# No text between 21:00 and 08:00 in each participant's zone, whatever a rule's window says.")
	w(`quiet_hours: { from: "21:00", to: "08:00" }`)
	w("# At most this many texts to one number, across every rule (per local day, per 7 days);")
	w("# a text past a cap waits for the next day. Uncomment and set to your protocol:")
	w("# caps: { per_day: 2, per_week: 10 }")
	w("storage: { path: nudge.db }   # the outbox (created 0600); on a server e.g. /var/lib/nudge/nudge.db")
	w("rules: [rules/*.yaml]")
	w("templates: templates")
	w("projects:")
	w("  - name: %s", pl.name)
	w("    redcap_url: %s", yamlString(p.URL))
	w("    token_env: %s   # the environment variable holding the API token", p.TokenEnv)
	w("    dictionary: %s   # for offline `nudge check`: download it again after changing the project", dictPath)
	if eventsPath != "" {
		w("    events: %s", eventsPath)
		w("    instrument_events: %s", mapPath)
	}
	w("    project_id: %d   # for REDCap's Data Entry Trigger", p.Info.ID)
	switch {
	case !p.SurveysKnown:
		w("    # REDCap did not say which instruments are surveys (the API user needs the Survey")
		w("    # Distribution Tools right); list them for offline checks of survey links:")
		w("    # surveys: [%s]", strings.Join(p.Dict.Forms(), ", "))
	case len(p.Surveys) > 0:
		w("    surveys: [%s]   # the instruments enabled as surveys", strings.Join(p.Surveys, ", "))
	default:
		w("    # No instrument is enabled as a survey; list them here once some are: surveys: [NAME, …]")
	}
	f := pl.fields
	switch {
	case f.OptOut != "":
		w("    # Written when a participant texts STOP (value) or START (opt_in_value).")
		w(`    opt_out: { field: %s, value: "%s", opt_in_value: "%s" }`, f.OptOut, f.OptOutStop, f.OptOutStart)
	case pl.proposeOptOut != "":
		w("    # Written when a participant texts STOP (value) or START (opt_in_value); create the")
		w("    # field first (%s), then remove the #:", initWriteBackCSV)
		w(`    # opt_out: { field: %s, value: "1", opt_in_value: "0" }`, pl.proposeOptOut)
	}
	if pl.channel == "sms" {
		w("twilio:")
		w("  account_sid_env: TWILIO_ACCOUNT_SID   # environment variables holding the credentials")
		w("  auth_token_env: TWILIO_AUTH_TOKEN")
		w(`  from: "%s"   # CHANGE to your Twilio number (E.164); this one is fictional`, initFromNumber)
		w("  rate_per_second: 0.95")
		w("# Email (for email rules and fallbacks):")
		w("# smtp:")
		w("#   host: smtp.example.edu")
		w("#   port: 587")
		w("#   username_env: SMTP_USER")
		w("#   password_env: SMTP_PASSWORD")
		w(`#   from: "Study Team <study@example.edu>"`)
	} else {
		w("# Texts (for SMS rules):")
		w("# twilio:")
		w("#   account_sid_env: TWILIO_ACCOUNT_SID")
		w("#   auth_token_env: TWILIO_AUTH_TOKEN")
		w(`#   from: "+14155550100"`)
		w("smtp:")
		w("  host: smtp.example.edu   # CHANGE to your mail server")
		w("  port: 587")
		w("  username_env: SMTP_USER   # environment variables holding the login")
		w("  password_env: SMTP_PASSWORD")
		w(`  from: "Study Team <study@example.edu>"   # CHANGE to your sender`)
	}
	w("server:   # for `nudge serve`")
	w(`  listen: "127.0.0.1:8080"`)
	w("  # public_url: https://nudge.example.edu   # the URL Twilio calls")
	w("  # trigger_secret_env: NUDGE_TRIGGER_SECRET   # REDCap's Data Entry Trigger URL ends in ?secret=<its value>")
	return b.String()
}

// condition is the example rule's `when`, and the clause to add once the
// proposed opt-out field exists.
func (pl *initPlan) condition() (when, later string) {
	f := pl.fields
	var parts []string
	if f.Consent != "" {
		parts = append(parts, fmt.Sprintf("%s = '%s'", pl.ref(f.Consent), f.ConsentYes))
	}
	switch {
	case f.OptOut != "" && f.OptOutIsOptIn:
		parts = append(parts, fmt.Sprintf("%s = '1'", pl.ref(f.OptOut)))
	case f.OptOut != "":
		parts = append(parts, fmt.Sprintf("%s <> '1'", pl.ref(f.OptOut)))
	}
	if pl.proposeOptOut != "" {
		later = fmt.Sprintf("[%s] <> '1'", pl.proposeOptOut)
	}
	return strings.Join(parts, " and "), later
}

// ruleFile renders the example rule file.
func (pl *initPlan) ruleFile() string {
	p, f := pl.p, pl.fields
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# An example rule written by `nudge init` from the fields of %s.", yamlString(p.Info.Title))
	w("# It is disabled: edit it to say what your protocol wants, set enabled: true, then run")
	w("# `nudge check` and `nudge preview --rule %s --all`. Every key is in nudge's README (Reference).", initRule)
	w("project: %s", pl.name)
	w("rules:")
	w("  - name: %s", initRule)
	switch {
	case pl.channel == "sms":
		w("    description: An example text to each participant with a number in %s.", pl.ref(f.Phone))
	case f.Email != "":
		w("    description: An example email to each participant with an address in %s.", pl.ref(f.Email))
	default:
		w("    description: An example email to the study team about each selected record.")
	}
	w("    enabled: false")
	if pl.event != "" {
		if pl.fields.Phone != "" || pl.fields.Email != "" {
			w("    event: %s   # the first event the contact field's instrument is designated for", pl.event)
		} else {
			w("    event: %s", pl.event)
		}
	}
	when, later := pl.condition()
	if when != "" {
		w("    # Who gets it, in REDCap logic (as in branching logic).")
		w("    when: %s", yamlString(when))
	} else {
		w("    # Who gets it, in REDCap logic (as in branching logic); without when, every record:")
		w(`    # when: "[consent] = '1'"`)
	}
	if later != "" {
		w("    # Once %s exists in REDCap, add to the condition: and %s", pl.proposeOptOut, later)
	}
	w("    channel: %s", pl.channel)
	switch {
	case pl.channel == "sms":
		how := "named like a phone number"
		if fd, _ := p.Dict.Field(f.Phone); fd.Validation == "phone" {
			how = "validated as a phone number in REDCap"
		}
		w("    to: %s   # %s", pl.to, how)
	case f.Email != "":
		w("    to: %s", pl.to)
	default:
		w("    to: %s   # the project has no phone or email field: CHANGE to a staff address", pl.to)
	}
	w("    template: %s   # templates/%s.%s.txt", initRule, initRule, map[string]string{"sms": "sms", "email": "email"}[pl.channel])
	w(`    window: { from: "09:00", to: "20:00" }   # the allowed hours, in the study's time zone`)
	var wb []string
	for _, kv := range pl.writeBack {
		wb = append(wb, kv[0]+": "+kv[1])
	}
	line := "write_back: { " + strings.Join(wb, ", ") + " }"
	if hasAll(pl.missing, pl.writeBack) {
		w("    %s", line)
	} else {
		w("    # The status of each message, written back to REDCap: create these fields first")
		w("    # (%s), then remove the #.", initWriteBackCSV)
		w("    # %s", line)
	}
	return b.String()
}

// hasAll reports whether no write-back field is missing.
func hasAll(missing []string, wb [][2]string) bool {
	for _, kv := range wb {
		for _, m := range missing {
			if m == kv[1] {
				return false
			}
		}
	}
	return true
}

// greeting is "Hello [first_name|there]" or "Hello".
func (pl *initPlan) greeting() string {
	if pl.fields.Name == "" {
		return "Hello"
	}
	ref := pl.ref(pl.fields.Name)
	return "Hello " + strings.TrimSuffix(ref, "]") + "|there]"
}

func (pl *initPlan) smsTemplate() string {
	return pl.greeting() + ", this is an example text from the study team. Edit templates/" + initRule +
		".sms.txt to say what your protocol needs. Reply STOP to stop texts.\n"
}

func (pl *initPlan) emailTemplate() string {
	if pl.fields.Email == "" {
		return "Subject: A record needs attention\n\nA record of the study matched the rule " + initRule +
			". Edit templates/" + initRule + ".email.txt to say what the team should do.\n"
	}
	return "Subject: A message from the study team\n\n" + pl.greeting() + ",\n\nThis is an example email from the study team. Edit templates/" +
		initRule + ".email.txt to say what your protocol needs.\n"
}

// writeBackCSV renders the fields to create as data dictionary rows.
func (pl *initPlan) writeBackCSV() string {
	labels := map[string]string{
		"status": "Status of the last message from nudge", "sid": "Twilio message SID (from nudge)",
		"sent_at": "When nudge sent the last message", "error": "Error code of the last message (from nudge)",
	}
	var rows []map[string]string
	for _, kv := range pl.writeBack {
		if !contains(pl.missing, kv[1]) {
			continue
		}
		r := map[string]string{"field_name": kv[1], "form_name": pl.form, "field_type": "text",
			"field_label": labels[kv[0]], "field_annotation": "@READONLY @HIDDEN-SURVEY"}
		if kv[0] == "sent_at" {
			r["text_validation_type_or_show_slider_number"] = "datetime_seconds_ymd"
		}
		rows = append(rows, r)
	}
	if pl.proposeOptOut != "" && contains(pl.missing, pl.proposeOptOut) {
		rows = append(rows, map[string]string{"field_name": pl.proposeOptOut, "form_name": pl.form, "field_type": "yesno",
			"field_label": "Opted out of texts (nudge sets it on STOP, clears it on START)", "field_annotation": "@HIDDEN-SURVEY"})
	}
	return dictionaryCSV(rows)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// eventsCSV renders the events as REDCap's "Download events (CSV)".
func eventsCSV(p *initProject) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"event_name", "arm_num", "unique_event_name", "custom_event_label", "event_id"})
	for _, ev := range p.Events {
		w.Write([]string{ev.Name, strconv.Itoa(ev.Arm), ev.UniqueName, "", strconv.Itoa(ev.ID)})
	}
	w.Flush()
	return b.String()
}

// formEventsCSV renders the instrument-event mappings as REDCap's
// "Download instrument-event mappings (CSV)".
func formEventsCSV(p *initProject) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write([]string{"arm_num", "unique_event_name", "form"})
	for _, fe := range p.FormEvents {
		w.Write([]string{strconv.Itoa(fe.Arm), fe.Event, fe.Form})
	}
	w.Flush()
	return b.String()
}
