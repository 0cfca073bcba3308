package rules

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/templates"
)

// usedRef is one field reference somewhere in the study, with where it is
// written and who uses it.
type usedRef struct {
	ref     logic.Ref
	pos     Pos
	rule    string
	what    string // "" for logic/piping references; else the key, e.g. "write_back.sid"
	channel string // for "to": the rule's channel
	from    string // "when" or "template" for a rule's condition or template references, else ""
}

// refs lists every field reference of the project's rules and replies.
func (s *Study) refs(project string) []usedRef {
	var out []usedRef
	for _, r := range s.Rules {
		if r.Project != project {
			continue
		}
		if r.When != nil {
			for _, ref := range r.When.Refs() {
				p, ok := r.whenRefs[ref]
				if !ok {
					p = r.pos["when"]
				}
				out = append(out, usedRef{ref: ref, pos: p, rule: r.Name, from: "when"})
			}
		}
		if r.To.Field != "" {
			out = append(out, usedRef{ref: r.To, pos: r.pos["to"], rule: r.Name, what: "to", channel: r.Channel})
		}
		if f := r.Fallback; f != nil {
			if f.To.Field != "" {
				out = append(out, usedRef{ref: f.To, pos: r.pos["fallback.to"], rule: r.Name, what: "fallback.to", channel: ChannelEmail})
			}
			for _, ref := range f.refs() {
				p := r.pos["fallback.subject"]
				if f.Template != "" || p == (Pos{}) {
					p = findRef(f.files, ref, r.pos["fallback"])
				}
				out = append(out, usedRef{ref: ref, pos: p, rule: r.Name})
			}
		}
		if r.OncePer.Field != "" {
			out = append(out, usedRef{ref: r.OncePer, pos: r.pos["once_per"], rule: r.Name, what: "once_per"})
		}
		for _, ref := range r.templateRefs() {
			out = append(out, usedRef{ref: ref, pos: findRef(r.tmplFiles, ref, r.pos["template"]), rule: r.Name, from: "template"})
		}
		if r.Start != nil && r.Start.Field.Field != "" {
			what := "start.field"
			if r.Every == nil && len(r.Start.At) == 0 {
				what = "start.field (no at)"
			}
			out = append(out, usedRef{ref: r.Start.Field, pos: r.pos["start.field"], rule: r.Name, what: what})
		}
		if r.Remind != nil {
			for _, ref := range r.Remind.Refs {
				out = append(out, usedRef{ref: ref, pos: r.pos["remind.unless"], rule: r.Name})
			}
		}
		if r.TimezoneField.Field != "" {
			out = append(out, usedRef{ref: r.TimezoneField, pos: r.pos["window.timezone_field"], rule: r.Name, what: r.timezoneKey()})
		}
		for key, field := range map[string]string{"status": r.WriteBack.Status, "sid": r.WriteBack.SID,
			"sent_at": r.WriteBack.SentAt, "error": r.WriteBack.Error} {
			if field != "" {
				out = append(out, usedRef{ref: logic.Ref{Field: field}, pos: r.pos["write_back."+key],
					rule: r.Name, what: "write_back." + key, channel: r.Channel})
			}
		}
	}
	for _, rep := range s.Replies {
		if rep.Project != project {
			continue
		}
		for field := range rep.Set {
			out = append(out, usedRef{ref: logic.Ref{Field: field}, pos: rep.pos["set."+field], what: "set"})
		}
		if rep.Reply != nil {
			for _, ref := range rep.Reply.Refs() {
				out = append(out, usedRef{ref: ref, pos: rep.pos["reply"]})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].pos.Before(out[j].pos) })
	return out
}

// timezoneKey names where the rule's timezone field is written, for
// messages: its window's, or its project's.
func (r *Rule) timezoneKey() string {
	if r.Window != nil && r.Window.TimezoneField.Field != "" {
		return "window.timezone_field"
	}
	return "timezone_field"
}

// templateRefs lists the references of every part of the rule's template.
func (r *Rule) templateRefs() []logic.Ref {
	var texts []*templates.Text
	if r.SMS != nil {
		texts = append(texts, r.SMS.Body)
	}
	if r.Email != nil {
		texts = append(texts, r.Email.Subject, r.Email.Text, r.Email.HTML)
	}
	var refs []logic.Ref
	for _, t := range texts {
		if t != nil {
			refs = append(refs, t.Refs()...)
		}
	}
	return refs
}

// findRef locates where ref is written in the first of files that holds
// it, or returns fallback.
func findRef(files []string, ref logic.Ref, fallback Pos) Pos {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for i, line := range strings.Split(string(data), "\n") {
			if off := refIndex(line, ref); off >= 0 {
				return Pos{File: f, Line: i + 1, Col: off + 1}
			}
		}
	}
	return fallback
}

// CheckFields checks every field the rules, templates, replies and
// projects' opt_out entries use against their project's data dictionary:
// the field exists, holds data, a checkbox code is one of its choices, a
// field nudge writes can be written, a value written to a multiple-choice
// field is one of its codes, and a condition compares a multiple-choice
// field only with its codes. Projects missing from dicts
// are not checked. Instruments are checked against the dictionary's forms.
func (s *Study) CheckFields(dicts map[string]*dict.Dictionary) Errors {
	var errs Errors
	seen := map[string]bool{}
	add := func(e *Error) {
		key := e.Error()
		if !seen[key] {
			seen[key] = true
			errs = append(errs, e)
		}
	}
	for _, p := range s.Config.Projects {
		d := dicts[p.Name]
		if d == nil {
			continue
		}
		names := dataFieldNames(d)
		for _, u := range s.refs(p.Name) {
			if u.ref.IsSmart() {
				continue
			}
			if msg := checkRef(d, names, u, p.Name); msg != "" {
				add(&Error{Pos: u.pos, Rule: u.rule, Msg: msg})
			}
		}
		for _, e := range s.checkChoiceComparisons(p.Name, d) {
			add(e)
		}
		if o := p.OptOut; o != nil && o.Field != "" {
			u := usedRef{ref: logic.Ref{Field: o.Field}, pos: o.pos["field"], what: "opt_out.field"}
			if msg := checkRef(d, names, u, p.Name); msg != "" {
				add(&Error{Pos: u.pos, Msg: msg})
			} else {
				for _, key := range []string{"value", "opt_in_value"} {
					v := o.Value
					if key == "opt_in_value" {
						v = o.OptInValue
					}
					if msg := checkChoice(d, o.Field, v, "opt_out."+key); msg != "" {
						add(&Error{Pos: o.pos[key], Msg: msg})
					}
				}
			}
		}
		for _, rep := range s.Replies {
			if rep.Project != p.Name {
				continue
			}
			for field, v := range rep.Set {
				if msg := checkSetValue(d, field, v); msg != "" {
					add(&Error{Pos: rep.pos["set."+field], Msg: msg})
				}
			}
		}
		forms := d.Forms()
		for _, r := range s.Rules {
			if r.Project != p.Name || r.Instrument == "" || !contains(forms, r.Instrument) {
				continue
			}
			for _, wf := range r.writeBackFields() {
				if f, ok := d.Field(wf.field); ok && f.Type != "descriptive" && f.Form != r.Instrument {
					add(&Error{Pos: r.pos["write_back."+wf.key], Rule: r.Name, Msg: fmt.Sprintf(
						"write_back.%s: [%s] is on the instrument %s, but the rule writes to instances of %s: "+
							"REDCap would refuse it; use a field of %s", wf.key, wf.field, f.Form, r.Instrument, r.Instrument)})
				}
			}
		}
		for _, r := range s.Rules {
			if r.Project == p.Name && r.Every != nil && r.Every.Instrument != "" && !contains(forms, r.Every.Instrument) {
				add(&Error{Pos: r.pos["every.instrument"], Rule: r.Name, Msg: fmt.Sprintf(
					"every.instrument: unknown instrument '%s' in project %s%s: use the repeating instrument's unique name (the data dictionary's Form Name)",
					r.Every.Instrument, p.Name, didYouMean(r.Every.Instrument, forms, "'%s'"))})
			}
		}
		for _, r := range s.Rules {
			if r.Project == p.Name && r.Instrument != "" && !contains(forms, r.Instrument) {
				add(&Error{Pos: r.pos["instrument"], Rule: r.Name, Msg: fmt.Sprintf(
					"unknown instrument '%s' in project %s%s: use the instrument's unique name (the data dictionary's Form Name)",
					r.Instrument, p.Name, didYouMean(r.Instrument, forms, "'%s'"))})
			}
		}
	}
	sortErrors(errs, append([]string{s.Config.Path}, s.Files...))
	return errs
}

// dataFieldNames lists the dictionary's fields that hold data.
func dataFieldNames(d *dict.Dictionary) []string {
	var names []string
	for _, f := range d.Fields {
		if f.Type != "descriptive" {
			names = append(names, f.Name)
		}
	}
	return names
}

// checkRef checks one reference, returning "" when it is fine.
func checkRef(d *dict.Dictionary, names []string, u usedRef, project string) string {
	ref := u.ref
	prefix := ""
	if u.what != "" {
		prefix = u.what + ": "
	}
	f, known := d.Field(ref.Field)
	if !known && !d.HasColumn(ref.Field) {
		return fmt.Sprintf("%sunknown field [%s] in project %s%s: use a Variable / Field Name of the project's data dictionary",
			prefix, ref.Field, project, didYouMean(ref.Field, names, "[%s]"))
	}
	if !known {
		return "" // a <form>_complete status field
	}
	if f.Type == "descriptive" {
		return fmt.Sprintf("%s[%s] is a descriptive field and holds no data: use a data field", prefix, ref.Field)
	}
	if ref.Code != "" {
		if f.Type != "checkbox" {
			return fmt.Sprintf("%s is not a checkbox ([%s] is a %s field): compare its value instead, e.g. [%s] = '%s'",
				ref, ref.Field, f.Type, ref.Field, ref.Code)
		}
		var codes []string
		for _, c := range f.Choices {
			if c.Code == ref.Code {
				return ""
			}
			codes = append(codes, c.Code)
		}
		return fmt.Sprintf("%s: [%s] has no choice '%s': use one of its codes, %s", ref, ref.Field, ref.Code, strings.Join(codes, ", "))
	}
	if (u.what == "to" || u.what == "fallback.to") && f.Validation != "" {
		if u.channel == ChannelSMS && f.Validation == "email" {
			return fmt.Sprintf("to: [%s] holds email addresses, but the channel is sms: name the phone number field", ref.Field)
		}
		if u.channel == ChannelEmail && f.Validation != "email" {
			return fmt.Sprintf("%s: [%s] is validated as %s, but the channel is email: name the email address field", u.what, ref.Field, f.Validation)
		}
	}
	if strings.HasPrefix(u.what, "start.field") {
		return checkStartField(f, u.what != "start.field")
	}
	if writes(u.what) {
		switch f.Type {
		case "checkbox", "calc", "file":
			return fmt.Sprintf("%s[%s] is a %s field and cannot be written: use a text field", prefix, ref.Field, f.Type)
		}
		if msg := checkWriteBackType(f, u.what, u.channel); msg != "" {
			return prefix + msg
		}
	}
	return ""
}

// checkStartField checks that a timed rule's start field holds dates:
// a text field validated as a date or datetime. needClock is set when the
// rule gives no at, so the field must hold a time of day too.
func checkStartField(f dict.Field, needClock bool) string {
	date := f.Type == "text" && strings.HasPrefix(f.Validation, "date_")
	datetime := f.Type == "text" && strings.HasPrefix(f.Validation, "datetime_")
	switch {
	case !date && !datetime:
		return fmt.Sprintf("start.field: [%s] is %s, not a date: name a text field validated as a date or datetime (e.g. date_ymd)", f.Name, typeName(f))
	case needClock && date:
		return fmt.Sprintf("start.field: [%s] holds a date without a time of day: give start.at, e.g. at: \"10:00\"", f.Name)
	}
	return ""
}

// The statuses a rule's write_back.status field must be able to hold, by
// channel: a dropdown or radio field needs each of them among its codes.
var writtenStatuses = map[string][]string{
	ChannelSMS:   {"queued", "sending", "sent", "delivered", "undelivered", "failed"},
	ChannelEmail: {"accepted", "failed"},
}

// sentAtValidations are the text validations a write_back.sent_at field
// may have: nudge writes the time in the form each accepts.
var sentAtValidations = map[string]bool{"": true,
	"date_ymd": true, "date_mdy": true, "date_dmy": true,
	"datetime_ymd": true, "datetime_mdy": true, "datetime_dmy": true,
	"datetime_seconds_ymd": true, "datetime_seconds_mdy": true, "datetime_seconds_dmy": true,
}

// checkWriteBackType checks that a write_back field can hold what nudge
// writes into it: a status word, a Twilio SID, a time, an error code. It
// returns "" when it can (or what is not a write_back).
func checkWriteBackType(f dict.Field, what, channel string) string {
	key, ok := strings.CutPrefix(what, "write_back.")
	if !ok || f.Type == "notes" {
		return ""
	}
	choice := f.Type == "dropdown" || f.Type == "radio" || f.Type == "yesno" || f.Type == "truefalse" || f.Type == "slider"
	switch key {
	case "status":
		if f.Type == "dropdown" || f.Type == "radio" {
			var missing []string
			for _, st := range writtenStatuses[channel] {
				if _, ok := f.Label(st); !ok {
					missing = append(missing, st)
				}
			}
			if len(missing) == 0 {
				return ""
			}
			return fmt.Sprintf("[%s] is a %s field without the statuses %s among its codes: REDCap would refuse them; "+
				"use a text field, or add those codes", f.Name, f.Type, strings.Join(missing, ", "))
		}
		if choice || (f.Validation != "" && f.Validation != "alpha_only") {
			return fmt.Sprintf("[%s] is a %s field and cannot hold a status such as 'delivered': use a text field without validation",
				f.Name, typeName(f))
		}
	case "sid":
		if choice || f.Validation != "" {
			return fmt.Sprintf("[%s] is a %s field and cannot hold a message id such as 'SM…': use a text field without validation",
				f.Name, typeName(f))
		}
	case "sent_at":
		if choice || !sentAtValidations[f.Validation] {
			return fmt.Sprintf("[%s] is a %s field and cannot hold a time: use a text field validated as "+
				"datetime_seconds_ymd (or date_ymd, datetime_ymd, or no validation)", f.Name, typeName(f))
		}
	case "error":
		if choice || (f.Validation != "" && f.Validation != "integer" && f.Validation != "number") {
			return fmt.Sprintf("[%s] is a %s field and cannot hold an error code such as 30003: "+
				"use a text field validated as integer (or without validation)", f.Name, typeName(f))
		}
	}
	return ""
}

// typeName describes a field's type for a message, e.g. "text (integer)".
func typeName(f dict.Field) string {
	if f.Type == "text" && f.Validation != "" {
		return "text (" + f.Validation + ")"
	}
	return f.Type
}

// writes reports whether a reference of kind what names a field nudge
// writes to.
func writes(what string) bool {
	return strings.HasPrefix(what, "write_back.") || what == "set" || what == "opt_out.field"
}

// checkChoice checks a value nudge writes to a multiple-choice field (yesno,
// truefalse, radio, dropdown) is one of its codes, as REDCap would refuse the
// import otherwise. It returns "" when the value is fine, blank (nothing is
// written or the field is cleared) or the field is unknown or free text.
func checkChoice(d *dict.Dictionary, field, value, what string) string {
	f, ok := d.Field(field)
	if !ok || value == "" || f.Type == "checkbox" {
		return ""
	}
	if len(f.Choices) == 0 {
		if f.Type == "text" && !fitsValidation(f.Validation, value) {
			return fmt.Sprintf("%s: '%s' is not a valid %s value for [%s]: REDCap would refuse it", what, value, f.Validation, field)
		}
		return ""
	}
	codes := make([]string, len(f.Choices))
	for i, c := range f.Choices {
		if c.Code == value {
			return ""
		}
		codes[i] = c.Code
	}
	return fmt.Sprintf("%s: '%s' is not a choice of [%s] (its codes are %s): REDCap would refuse it", what, value, field, strings.Join(codes, ", "))
}

// checkSetValue checks a value a reply sets: a literal must be one REDCap
// takes for the field (see checkChoice); [now] and [today] need a field that
// holds a date or time, or free text. [now] is written as the field's
// validation expects (a date field gets the date, a plain text field the
// time to the second); [today] is a date, so not for a datetime field.
func checkSetValue(d *dict.Dictionary, field, value string) string {
	if value != SetNow && value != SetToday {
		return checkChoice(d, field, value, "set."+field)
	}
	f, ok := d.Field(field)
	if !ok {
		return ""
	}
	switch {
	case f.Type == "notes" || (f.Type == "text" && (f.Validation == "" || strings.HasPrefix(f.Validation, "date_"))):
		return ""
	case f.Type == "text" && strings.HasPrefix(f.Validation, "datetime_"):
		if value == SetToday {
			return fmt.Sprintf("set.%s: [today] is a date, but [%s] is validated as %s and needs a time too: write [now], "+
				"or set a field validated as date_ymd", field, field, f.Validation)
		}
		return ""
	}
	return fmt.Sprintf("set.%s: %s is a date, but [%s] is a %s field and cannot hold one: REDCap would refuse it; "+
		"set a text field validated as date_ymd or datetime_ymd (or without validation)", field, value, field, typeName(f))
}

// checkReplyMatches warns of a reply's match that matches a word Twilio
// and nudge act on before any reply rule (STOP, START, HELP and their
// family): the reply never sees that word, which is seldom what its
// author meant. Keywords that clash are load errors (see decodeReply).
func (s *Study) checkReplyMatches() Errors {
	var errs Errors
	for _, rep := range s.Replies {
		if rep.Match == nil {
			continue
		}
		var hit []string
		why := ""
		for _, family := range [][]string{StopKeywords, StartKeywords, HelpKeywords} {
			for _, w := range family {
				if r := reservedKeyword(w); r != "" && rep.Match.MatchString(w) {
					hit = append(hit, w)
					if why == "" {
						why = w + " is " + r
					}
				}
			}
		}
		if len(hit) > 0 {
			errs = append(errs, &Error{Pos: rep.pos["match"], Msg: fmt.Sprintf(
				"match also matches %s: %s before any reply rule, so this reply never sees them; "+
					"anchor the expression to the words you mean, e.g. \"^(yes|y)$\"", strings.Join(hit, ", "), why)})
		}
	}
	return errs
}

var (
	reInteger = regexp.MustCompile(`^[-+]?[0-9]+$`)
	reNumber  = regexp.MustCompile(`^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$`)
)

// fitsValidation reports whether REDCap's API would take v for a text
// field with the given validation (dates and times in YMD order, as the API
// takes them). Validations it does not know are taken as fitting.
func fitsValidation(validation, v string) bool {
	layout := ""
	switch {
	case validation == "integer":
		return reInteger.MatchString(v)
	case validation == "number":
		return reNumber.MatchString(v)
	case strings.HasPrefix(validation, "date_"):
		layout = "2006-01-02"
	case strings.HasPrefix(validation, "datetime_seconds_"):
		layout = "2006-01-02 15:04:05"
	case strings.HasPrefix(validation, "datetime_"):
		layout = "2006-01-02 15:04"
	default:
		return true
	}
	_, err := time.Parse(layout, v)
	return err == nil
}

// writeBackField is one field a rule's write_back names, with its key.
type writeBackField struct{ key, field string }

// writeBackFields lists the fields the rule's write_back names, in key order.
func (r *Rule) writeBackFields() []writeBackField {
	var out []writeBackField
	for _, wf := range []writeBackField{{"status", r.WriteBack.Status}, {"sid", r.WriteBack.SID},
		{"sent_at", r.WriteBack.SentAt}, {"error", r.WriteBack.Error}} {
		if wf.field != "" {
			out = append(out, wf)
		}
	}
	return out
}

// CheckWriteEvents checks, for a longitudinal project, that every field
// nudge writes is on a form designated for the event it is written to
// (REDCap refuses the import otherwise): a rule's write_back fields in the
// rule's event, the project's opt_out field and a reply's set fields in the
// reply's event or else in the event of each SMS rule's phone field.
// designated maps each unique event name to its forms (REDCap's
// formEventMapping); nil (a classic project) checks nothing. Targets whose
// event is not fixed by the files are not checked.
func (s *Study) CheckWriteEvents(project string, d *dict.Dictionary, designated map[string][]string) Errors {
	if designated == nil || d == nil {
		return nil
	}
	var errs Errors
	seen := map[string]bool{}
	check := func(pos Pos, rule, what, field, event, hint string) {
		f, ok := d.Field(field)
		if !ok || event == "" || contains(designated[event], f.Form) {
			return
		}
		if _, known := designated[event]; !known {
			return // an unknown event is reported by CheckEvents
		}
		e := &Error{Pos: pos, Rule: rule, Msg: fmt.Sprintf("%s: [%s] is on the instrument %s, which is not designated for the event %s%s: "+
			"REDCap would refuse the write; designate %s for %s in REDCap, or use a field of %s",
			what, field, f.Form, event, hint, f.Form, event, strings.Join(designated[event], ", "))}
		if !seen[e.Error()] {
			seen[e.Error()] = true
			errs = append(errs, e)
		}
	}
	// The events participants' phone numbers are read from: the opt_out
	// field and replies without an event are written there.
	var phoneEvents []string
	for _, r := range s.Rules {
		if r.Project != project {
			continue
		}
		for _, wf := range r.writeBackFields() {
			check(r.pos["write_back."+wf.key], r.Name, "write_back."+wf.key, wf.field, r.Event, "")
		}
		if r.Channel != ChannelSMS {
			continue
		}
		ev := r.To.Event
		if ev == "" {
			ev = r.Event
		}
		if ev != "" && !contains(phoneEvents, ev) {
			phoneEvents = append(phoneEvents, ev)
		}
	}
	for _, p := range s.Config.Projects {
		if p.Name != project || p.OptOut == nil {
			continue
		}
		for _, ev := range phoneEvents {
			check(p.OptOut.pos["field"], "", "opt_out.field", p.OptOut.Field, ev, " (where the participants' phone numbers are)")
		}
	}
	for _, rep := range s.Replies {
		if rep.Project != project {
			continue
		}
		fields := make([]string, 0, len(rep.Set))
		for f := range rep.Set {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		for _, f := range fields {
			if rep.Event != "" {
				check(rep.pos["set."+f], "", "set", f, rep.Event, "")
				continue
			}
			for _, ev := range phoneEvents {
				check(rep.pos["set."+f], "", "set", f, ev, " (where the participants' phone numbers are; give the reply an event)")
			}
		}
	}
	sortErrors(errs, append([]string{s.Config.Path}, s.Files...))
	return errs
}

// CheckEvents checks the events the project's rules, replies and
// templates name against the project's unique event names, and that every
// rule of the project names its event (or says event: any). Call it for a
// longitudinal project only.
func (s *Study) CheckEvents(project string, events []string) Errors {
	errs := s.checkEventless(func(p string) (string, bool) {
		return "REDCap lists its events", p == project
	})
	seen := map[string]bool{}
	add := func(p Pos, rule, format string, args ...any) {
		e := &Error{Pos: p, Rule: rule, Msg: fmt.Sprintf(format, args...)}
		if !seen[e.Error()] {
			seen[e.Error()] = true
			errs = append(errs, e)
		}
	}
	known := func(ev string) bool { return contains(events, ev) }
	for _, r := range s.Rules {
		if r.Project != project || r.Event == "" || known(r.Event) {
			continue
		}
		add(r.pos["event"], r.Name, "unknown event '%s' in project %s%s: use a unique event name such as %s",
			r.Event, project, didYouMean(r.Event, events, "'%s'"), firstOr(events, "baseline_arm_1"))
	}
	for _, rep := range s.Replies {
		if rep.Project != project || rep.Event == "" || known(rep.Event) {
			continue
		}
		add(rep.pos["event"], "", "unknown event '%s' in project %s%s: use a unique event name such as %s",
			rep.Event, project, didYouMean(rep.Event, events, "'%s'"), firstOr(events, "baseline_arm_1"))
	}
	for _, u := range s.refs(project) {
		if u.ref.Event == "" || known(u.ref.Event) {
			continue
		}
		add(u.pos, u.rule, "%s: unknown event '%s' in project %s%s: use a unique event name such as %s", u.ref, u.ref.Event, project,
			didYouMean(u.ref.Event, events, "'%s'"), firstOr(events, "baseline_arm_1"))
	}
	sortErrors(errs, append([]string{s.Config.Path}, s.Files...))
	return errs
}

// checkEventless refuses the rules without an event in the projects
// longitudinal reports as longitudinal (with the reason it knows). Such a
// rule is evaluated on every event's row, so one participant could get a
// message per event; the rule must name its event or say event: any.
func (s *Study) checkEventless(longitudinal func(project string) (why string, ok bool)) Errors {
	var errs Errors
	for _, r := range s.Rules {
		if r.Event != "" || r.AnyEvent {
			continue
		}
		why, ok := longitudinal(r.Project)
		if !ok {
			continue
		}
		errs = append(errs, &Error{Pos: r.Pos, Rule: r.Name, Msg: fmt.Sprintf(
			"no event in longitudinal project %s (%s): the rule would run on every event and could message a participant once per event; "+
				"name the event, e.g. event: %s, or write event: %s to run on every event but message each participant at most once",
			r.Project, why, s.exampleEvent(r.Project), AnyEvent)})
	}
	return errs
}

// longitudinalByFiles reports whether the study's own files show that a
// project is longitudinal, which is all an offline check can know: a rule
// or reply of the project names an event, or a condition or template reads
// a field of another event ([event][field]). why says where.
func (s *Study) longitudinalByFiles(project string) (why string, ok bool) {
	var first Pos
	found := false
	seen := func(p Pos) {
		if !found || p.Before(first) {
			first, found = p, true
		}
	}
	for _, r := range s.Rules {
		if r.Project == project && (r.Event != "" || r.AnyEvent) {
			seen(r.pos["event"])
		}
	}
	for _, rep := range s.Replies {
		if rep.Project == project && rep.Event != "" {
			seen(rep.pos["event"])
		}
	}
	for _, u := range s.refs(project) {
		if u.ref.Event != "" {
			seen(u.pos)
		}
	}
	if !found {
		return "", false
	}
	return "an event is named at " + first.String(), true
}

// exampleEvent is an event the project's files name, for suggestions, or
// baseline_arm_1.
func (s *Study) exampleEvent(project string) string {
	for _, r := range s.Rules {
		if r.Project == project && r.Event != "" {
			return r.Event
		}
	}
	for _, u := range s.refs(project) {
		if u.ref.Event != "" {
			return u.ref.Event
		}
	}
	return "baseline_arm_1"
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}

// Fields lists the data fields the project's rules need exported: those
// read by conditions, `to`, `once_per`, templates, window time zones and replies'
// templates. Checkbox references yield the checkbox field's name. Sorted.
func (s *Study) Fields(project string) []string {
	set := map[string]bool{}
	for _, u := range s.refs(project) {
		if u.ref.IsSmart() || writes(u.what) {
			continue
		}
		set[u.ref.Field] = true
	}
	fields := make([]string, 0, len(set))
	for f := range set {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	return fields
}
