// Package templates holds nudge's message templates: SMS and email text
// written in REDCap's piping syntax, parsed when the study is loaded and
// rendered per participant, and the SMS segment counter.
//
// # Piping
//
// A template is literal text with piping tags, as in REDCap:
//
//	[first_name]               the field's value; for a multiple-choice field
//	                           (dropdown, radio, yesno, truefalse) its choice label
//	[arm:value]                the raw value (the choice code)
//	[arm:label]                the choice label
//	[race] or [race:checked]   checkbox: labels of the checked choices, "A, B"
//	[race:unchecked]           checkbox: labels of the unchecked choices
//	[race:value]               checkbox: codes of the checked choices, "1, 3"
//	[race(2)]                  checkbox: one choice's raw 0 or 1
//	[visit_arm_1][visit_date]  a field of another event
//	[bp_sys][2]                a repeating instance: a number, current-instance,
//	                           previous-instance, next-instance, first-instance
//	                           or last-instance; [event][field][instance] for both
//	[record-name]              a smart variable (any name with a dash), looked
//	                           up through Source as written
//
// # Survey links
//
//	[survey-url:baseline]              the participant's own link to the
//	                                   survey baseline, as a bare URL
//	[survey-link:baseline]             the same link; in an email's HTML part
//	                                   a clickable link whose text is the
//	                                   instrument's name ("Baseline")
//	[survey-link:baseline:Take it]     in HTML the link text is "Take it"
//	[visit_arm_1][survey-url:visit]    the survey of another event
//	[survey-url:diary][2]              of a repeat instance: a number,
//	                                   current-instance, previous-instance,
//	                                   next-instance, first-instance or
//	                                   last-instance
//
// In an SMS and an email's text part both pipe the bare URL: a text shows
// no link text, and the custom text is for HTML only. Links come from the
// Source, when it is a Linker (the engine asks REDCap for each); a Source
// that is not one cannot render a template with a survey link.
//
// REDCap's :hideunderscore modifier is accepted and ignored: nudge never pipes
// REDCap's "______" for a blank.
//
// Render's errors name the field and the problem, never the value piped, so
// they may be logged.
//
// A blank value is an error at render time (*MissingError): a participant
// must never receive a message with a hole in it. nudge adds one thing to
// REDCap's syntax for this, a fallback after a bar: [first_name|there]
// pipes "there" when first_name is blank. The fallback is literal text up to
// the closing bracket and goes inside the field's brackets, after any
// modifier: [visit_arm_1][visit_date:value|soon], [bp_sys|?][2]. An empty
// fallback, [middle_name|], allows a blank on purpose.
//
// REDCap has no escape for a literal "[". nudge reads "[" as the start of a
// tag only when a letter follows it; "[" followed by anything else (a space,
// a digit, punctuation, the end of the text) is literal text, so "[ ]",
// "[1]" and "[*]" need no escaping. A "[" followed by a letter must form a
// valid tag closed on the same line, or the template does not load.
package templates

import (
	"errors"
	"fmt"
	"html"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

// Source supplies piped values; rules.Scope satisfies it. ok is false when
// the record has no such field, event or instance (piped as blank).
type Source interface {
	Lookup(r logic.Ref) (value string, ok bool)
}

// RefSource is a Source that reads a template's references faster than
// one Lookup each; rules.Scope satisfies it. Render has it prepare the
// list of references a template reads once per template and data
// dictionary, keeps the list with the template, and reads each value by
// its place in the list.
type RefSource interface {
	Source
	// PrepareRefs prepares refs (which it may keep: they do not change)
	// for LookupRef. The result is used by many goroutines at once, with
	// many sources: it must be safe for concurrent use.
	PrepareRefs(refs []logic.Ref) PreparedRefs
	// LookupRef returns Lookup(p.Ref(i)). p may come from another
	// RefSource's PrepareRefs.
	LookupRef(p PreparedRefs, i int) (value string, ok bool)
}

// PreparedRefs is a list of references a RefSource prepared.
type PreparedRefs interface {
	// Ref returns the list's i-th reference.
	Ref(i int) logic.Ref
}

// Error is a piping syntax error at a position of a template file. Line and
// Col are 1-based; Col counts characters (runes), not bytes.
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *Error) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// SurveyRef is one survey link a template pipes, as written.
type SurveyRef struct {
	Instrument string
	Event      string // unique event name, "" = the row's event
	Instance   string // a number or an instance smart variable, "" = the row's instance when it is one of this instrument (or of a repeating event), else 1
	Text       string // the link text of [survey-link:instrument:Text], "" = none
	Link       bool   // [survey-link:…] rather than [survey-url:…]
	File       string // the template file
	Line, Col  int    // where the tag starts in File
}

// String is the tag as a coordinator would write it, without link text.
func (s SurveyRef) String() string {
	kind := "survey-url"
	if s.Link {
		kind = "survey-link"
	}
	out := "[" + kind + ":" + s.Instrument + "]"
	if s.Event != "" {
		out = "[" + s.Event + "]" + out
	}
	if s.Instance != "" {
		out += "[" + s.Instance + "]"
	}
	return out
}

// Linker supplies survey links: Render asks a Source that is also a Linker
// for the link of each survey tag. An error stops the render: a message is
// never sent without its link.
type Linker interface {
	SurveyLink(s SurveyRef) (string, error)
}

// ErrNoLinks is the error Render returns for a survey tag when its Source
// is not a Linker.
var ErrNoLinks = errors.New("survey links cannot be piped here")

// MissingError reports a piped value that is blank in the record while the
// tag has no fallback. The message must not be sent.
type MissingError struct {
	Ref logic.Ref
}

func (e *MissingError) Error() string { return "no value for " + e.Ref.String() }

// ChoiceError reports a multiple-choice field whose value is not one of the
// choices the data dictionary lists, so it has no label to pipe. It names
// the field, never the value: the error ends up in logs.
type ChoiceError struct {
	Ref logic.Ref
}

func (e *ChoiceError) Error() string {
	return fmt.Sprintf("%s holds a code that is not one of its choices in the data dictionary; pipe [%s:value] or fix the record",
		e.Ref, e.Ref.Field)
}

// Text is a parsed template. It is immutable and safe for concurrent use.
type Text struct {
	src     string
	parts   []part
	refs    []logic.Ref
	surveys []SurveyRef
	html    bool // escape piped values for HTML
	// fields holds the data dictionary's field of each tag for the
	// dictionary last rendered with: dictionaries change only on a reload.
	fields atomic.Pointer[tagFields]
}

// tagFields is the data dictionary's field of each part's tag, by the
// part's place; nil where the tag's field is not in the dictionary (or the
// part is not a field tag). It also lists the references the tags read:
// a checkbox tag's one per choice, [race(1)], [race(2)], …, any other
// field tag its own; first holds where each part's lie in refs.
type tagFields struct {
	d      *dict.Dictionary
	fields []*dict.Field
	refs   []logic.Ref
	first  []int
	// prepared is refs prepared by the first RefSource rendered with.
	prepared atomic.Pointer[preparedRefs]
}

type preparedRefs struct{ p PreparedRefs }

// fieldsFor returns the fields of t's tags in d.
func (t *Text) fieldsFor(d *dict.Dictionary) *tagFields {
	if tf := t.fields.Load(); tf != nil && tf.d == d {
		return tf
	}
	tf := &tagFields{d: d, fields: make([]*dict.Field, len(t.parts)), first: make([]int, len(t.parts))}
	for i, p := range t.parts {
		tf.first[i] = -1
		if p.tag == nil || p.tag.survey != nil {
			continue
		}
		tf.first[i] = len(tf.refs)
		var field *dict.Field
		if d != nil {
			if f, ok := d.Field(p.tag.ref.Field); ok {
				field = &f
				tf.fields[i] = field
			}
		}
		if p.tag.readsChoices(field) {
			for _, c := range field.Choices {
				cr := p.tag.ref
				cr.Code = c.Code
				tf.refs = append(tf.refs, cr)
			}
			continue
		}
		tf.refs = append(tf.refs, p.tag.ref)
	}
	t.fields.Store(tf)
	return tf
}

// preparedFor returns the tags' references prepared by src.
func (tf *tagFields) preparedFor(src RefSource) PreparedRefs {
	if p := tf.prepared.Load(); p != nil {
		return p.p
	}
	tf.prepared.CompareAndSwap(nil, &preparedRefs{p: src.PrepareRefs(tf.refs)})
	return tf.prepared.Load().p
}

// reader reads the references of a template's tags (tagFields.refs) by
// their place: through a RefSource's prepared list, or through Lookup.
type reader struct {
	src  Source
	rs   RefSource // nil when src is not one
	p    PreparedRefs
	refs []logic.Ref
}

// lookup returns the value of the i-th reference.
func (r *reader) lookup(i int) (string, bool) {
	if r.rs != nil {
		return r.rs.LookupRef(r.p, i)
	}
	return r.src.Lookup(r.refs[i])
}

// part is literal text or one piping tag.
type part struct {
	lit string
	tag *tag
}

// Modifiers of a field tag.
const (
	modNone      = ""
	modValue     = "value"
	modLabel     = "label"
	modChecked   = "checked"
	modUnchecked = "unchecked"
)

// tag is one piping tag such as [visit_arm_1][visit_date|soon].
type tag struct {
	ref         logic.Ref
	mod         string
	fallback    string
	hasFallback bool
	survey      *SurveyRef // a survey link tag; ref is unused
	smart       bool       // ref is a smart variable (ref.IsSmart)
}

// Parse parses src, a template read from file (used in errors only). Errors
// are *Error with positions in src.
func Parse(file, src string) (*Text, error) {
	return parse(file, src, 1, 1, false)
}

// ParseHTML is Parse for the HTML part of an email: Render escapes piped
// values (not the template's own text or fallbacks) for HTML.
func ParseHTML(file, src string) (*Text, error) {
	return parse(file, src, 1, 1, true)
}

// Source returns the template text as written.
func (t *Text) Source() string { return t.src }

// Refs lists every reference the template pipes, deduplicated, in order of
// appearance; a checkbox tag such as [race] yields Ref{Field: "race"}.
func (t *Text) Refs() []logic.Ref {
	return append([]logic.Ref(nil), t.refs...)
}

// Surveys lists the survey links the template pipes, in order of
// appearance.
func (t *Text) Surveys() []SurveyRef {
	return append([]SurveyRef(nil), t.surveys...)
}

// Render pipes the values of src into the template. d gives field types and
// choice labels; with a nil d every value is piped raw and checkbox labels
// are unavailable. A blank value without a fallback is a *MissingError, a
// multiple-choice code without a label a *ChoiceError.
func (t *Text) Render(src Source, d *dict.Dictionary) (string, error) {
	tf := t.fieldsFor(d)
	rd := reader{src: src, refs: tf.refs}
	if rs, ok := src.(RefSource); ok {
		rd.rs, rd.p = rs, tf.preparedFor(rs)
	}
	// Each part's text is worked out first, so that the result is
	// allocated once, at its size.
	var stack [16]string
	texts := stack[:0]
	if len(t.parts) > len(stack) {
		texts = make([]string, 0, len(t.parts))
	}
	size := 0
	for i, p := range t.parts {
		s := p.lit
		if p.tag != nil {
			var err error
			if s, err = t.piped(p.tag, &rd, tf.fields[i], tf.first[i]); err != nil {
				return "", err
			}
		}
		texts = append(texts, s)
		size += len(s)
	}
	if len(texts) == 1 {
		return texts[0], nil
	}
	var b strings.Builder
	b.Grow(size)
	for _, s := range texts {
		b.WriteString(s)
	}
	return b.String(), nil
}

// piped is the text tag tg pipes: its value, escaped in HTML, or its
// fallback. field is its field in the data dictionary (nil when unknown),
// at the place of its references in rd.
func (t *Text) piped(tg *tag, rd *reader, field *dict.Field, at int) (string, error) {
	if tg.survey != nil {
		return t.link(rd.src, *tg.survey)
	}
	v, err := tg.value(rd, field, at)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(v) == "" {
		if !tg.hasFallback {
			return "", &MissingError{Ref: tg.ref}
		}
		return tg.fallback, nil
	}
	if t.html {
		v = html.EscapeString(v)
	}
	return v, nil
}

// link is what a survey tag pipes: in HTML an <a> element for
// [survey-link:…], otherwise the URL.
func (t *Text) link(src Source, s SurveyRef) (string, error) {
	l, ok := src.(Linker)
	if !ok {
		return "", fmt.Errorf("%s: %w", s, ErrNoLinks)
	}
	u, err := l.SurveyLink(s)
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(u) == "" {
		return "", fmt.Errorf("%s: no survey link", s)
	}
	if !t.html {
		return u, nil
	}
	if !s.Link {
		return html.EscapeString(u), nil
	}
	text := s.Text
	if text == "" {
		text = LinkText(s.Instrument)
	}
	return `<a href="` + html.EscapeString(u) + `">` + html.EscapeString(text) + `</a>`, nil
}

// LinkText is the text of a [survey-link:instrument] in HTML without a
// text of its own: the instrument's unique name with spaces for
// underscores and a capital first letter, "baseline_survey" → "Baseline survey".
func LinkText(instrument string) string {
	s := strings.ReplaceAll(instrument, "_", " ")
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// readsChoices reports whether the tag reads one reference per choice of
// field (nil when unknown): a checkbox field's tag without a choice code.
func (tg *tag) readsChoices(field *dict.Field) bool {
	return field != nil && field.Type == "checkbox" && !tg.smart && tg.ref.Code == ""
}

// value looks up what the tag pipes, given the data dictionary's field
// (nil when unknown) and where the tag's references lie in rd; "" means
// blank.
func (tg *tag) value(rd *reader, field *dict.Field, at int) (string, error) {
	r := tg.ref
	if tg.smart || r.Code != "" {
		v, _ := rd.lookup(at)
		return v, nil
	}
	if tg.readsChoices(field) {
		return checkbox(rd, at, field, tg.mod), nil
	}
	if tg.mod == modChecked || tg.mod == modUnchecked {
		return "", fmt.Errorf("[%s:%s] is for checkbox fields, and %s is not one in the data dictionary", r.Field, tg.mod, r.Field)
	}
	v, _ := rd.lookup(at)
	v = strings.TrimSpace(v)
	if v == "" || tg.mod == modValue || field == nil {
		return v, nil
	}
	choices := choicesOf(field)
	if choices == nil {
		return v, nil
	}
	for _, c := range choices {
		if c.Code == v {
			return c.Label, nil
		}
	}
	return "", &ChoiceError{Ref: r}
}

// The labels yesno and truefalse fields pipe when the data dictionary
// lists no choices of their own.
var (
	yesNoChoices     = []dict.Choice{{Code: "1", Label: "Yes"}, {Code: "0", Label: "No"}}
	trueFalseChoices = []dict.Choice{{Code: "1", Label: "True"}, {Code: "0", Label: "False"}}
)

// choicesOf returns the choices whose label [field] pipes, nil for a field
// that pipes its value.
func choicesOf(f *dict.Field) []dict.Choice {
	switch f.Type {
	case "dropdown", "radio":
		return f.Choices
	case "yesno":
		if len(f.Choices) == 0 {
			return yesNoChoices
		}
		return f.Choices
	case "truefalse":
		if len(f.Choices) == 0 {
			return trueFalseChoices
		}
		return f.Choices
	}
	return nil
}

// checkbox pipes a checkbox field: labels (or codes, for :value) of the
// checked choices, or labels of the unchecked ones, joined by ", ". The
// value of choice k lies at place at+k of rd.
func checkbox(rd *reader, at int, f *dict.Field, mod string) string {
	var b strings.Builder
	first, n := "", 0
	for k, c := range f.Choices {
		v, ok := rd.lookup(at + k)
		if !ok {
			continue // no data for this choice: neither checked nor unchecked
		}
		checked := strings.TrimSpace(v) == "1"
		var s string
		switch {
		case mod == modUnchecked && !checked:
			s = c.Label
		case mod == modValue && checked:
			s = c.Code
		case mod != modUnchecked && mod != modValue && checked:
			s = c.Label
		default:
			continue
		}
		switch n {
		case 0:
			first = s
		case 1:
			b.WriteString(first)
			fallthrough
		default:
			b.WriteString(", ")
			b.WriteString(s)
		}
		n++
	}
	if n > 1 {
		return b.String()
	}
	return first
}

// parser turns template source into parts. Positions are computed from byte
// offsets only when an error is reported.
type parser struct {
	file      string
	src       string
	line, col int // position of src[0] in the file
	text      *Text
	lit       strings.Builder
	seen      map[logic.Ref]bool
}

// parse parses src whose first byte sits at line:col of file.
func parse(file, src string, line, col int, escapeHTML bool) (*Text, error) {
	p := &parser{file: file, src: src, line: line, col: col,
		text: &Text{src: src, html: escapeHTML}, seen: map[logic.Ref]bool{}}
	for i := 0; i < len(src); {
		if !startsTag(src, i) {
			p.lit.WriteByte(src[i])
			i++
			continue
		}
		tg, end, err := p.tag(i)
		if err != nil {
			return nil, err
		}
		tg.smart = tg.ref.IsSmart()
		p.flush()
		p.text.parts = append(p.text.parts, part{tag: tg})
		if tg.survey != nil {
			tg.survey.File = p.file
			tg.survey.Line, tg.survey.Col = p.pos(i)
			p.text.surveys = append(p.text.surveys, *tg.survey)
		} else if !p.seen[tg.ref] {
			p.seen[tg.ref] = true
			p.text.refs = append(p.text.refs, tg.ref)
		}
		i = end
	}
	p.flush()
	return p.text, nil
}

func (p *parser) flush() {
	if p.lit.Len() > 0 {
		p.text.parts = append(p.text.parts, part{lit: p.lit.String()})
		p.lit.Reset()
	}
}

// startsTag reports whether a tag starts at src[i]: "[" and a letter.
func startsTag(src string, i int) bool {
	return src[i] == '[' && i+1 < len(src) && isLetter(src[i+1])
}

// group is the text between one pair of brackets and its byte offset.
type group struct {
	text string
	off  int
}

// tag parses the tag starting at src[i] and returns it with the offset just
// past it. Up to three adjacent groups form one tag, as in REDCap logic.
func (p *parser) tag(i int) (*tag, int, error) {
	var groups []group
	j := i
	for len(groups) == 0 || j+1 < len(p.src) && p.src[j] == '[' && isAlnum(p.src[j+1]) {
		if len(groups) == 3 {
			return nil, 0, p.errAt(j, "too many [ ] in a row: the most is [event][field][instance]; put a space before a literal [")
		}
		k := j + 1
		for k < len(p.src) && p.src[k] != ']' && p.src[k] != '[' && p.src[k] != '\n' {
			k++
		}
		if k == len(p.src) || p.src[k] != ']' {
			return nil, 0, p.errAt(j, "unclosed [: close the tag with ] on the same line (a literal [ must not be followed by a letter)")
		}
		groups = append(groups, group{text: p.src[j+1 : k], off: j + 1})
		j = k + 1
	}

	var field group
	var event, instance *group
	switch {
	case len(groups) == 1:
		field = groups[0]
	case len(groups) == 2 && logic.IsInstance(groups[1].text):
		field, instance = groups[0], &groups[1]
	case len(groups) == 2:
		event, field = &groups[0], groups[1]
	default:
		event, field, instance = &groups[0], groups[1], &groups[2]
		if !logic.IsInstance(instance.text) {
			return nil, 0, p.errAt(instance.off, "[%s] is not an instance: use a number or current-instance, previous-instance, next-instance, first-instance, last-instance", instance.text)
		}
	}
	tg := &tag{}
	if event != nil {
		if !validName(event.text, true) {
			return nil, 0, p.errAt(event.off, "[%s] is not an event name: use letters, digits and _ as in [baseline_arm_1]", event.text)
		}
		tg.ref.Event = event.text
	}
	if instance != nil {
		tg.ref.Instance = instance.text
	}
	if survey, ok := p.surveySpec(field); ok || survey != nil {
		if survey == nil {
			return nil, 0, p.errAt(field.off, "[%s]: name the survey's instrument, as in [survey-url:baseline] or [survey-link:baseline:Take the survey]", field.text)
		}
		if strings.Contains(tg.ref.Event, "-") {
			return nil, 0, p.errAt(event.off, "[%s][%s]: a survey link needs a unique event name such as [baseline_arm_1], not a smart variable", event.text, field.text)
		}
		survey.Event, survey.Instance = tg.ref.Event, tg.ref.Instance
		tg.survey = survey
		return tg, j, nil
	}
	if err := p.fieldSpec(field, tg); err != nil {
		return nil, 0, err
	}
	return tg, j, nil
}

// surveySpec parses a survey tag's group: survey-link:instrument[:text]
// or survey-url:instrument. ok is true for a survey tag; a nil SurveyRef
// with ok true is one that names no valid instrument.
func (p *parser) surveySpec(g group) (*SurveyRef, bool) {
	kind, rest, _ := strings.Cut(g.text, ":")
	if kind != "survey-link" && kind != "survey-url" {
		return nil, false
	}
	instr, text, hasText := strings.Cut(rest, ":")
	if !validName(instr, false) || hasText && (kind == "survey-url" || strings.TrimSpace(text) == "") {
		return nil, true
	}
	return &SurveyRef{Instrument: instr, Text: strings.TrimSpace(text), Link: kind == "survey-link"}, true
}

// modifiers nudge accepts after a field name.
var modifiers = map[string]bool{
	modValue: true, modLabel: true, modChecked: true, modUnchecked: true, "hideunderscore": true,
}

// fieldSpec parses the field group: name, optional (code), :modifiers and
// |fallback.
func (p *parser) fieldSpec(g group, tg *tag) error {
	spec := g.text
	if k := strings.IndexByte(spec, '|'); k >= 0 {
		tg.fallback, tg.hasFallback = spec[k+1:], true
		spec = spec[:k]
	}
	if isDigit(spec[0]) {
		return p.errAt(g.off, "[%s] is an instance number: put it after a field, as in [field][%s]", spec, spec)
	}
	end := 0
	for end < len(spec) && (isAlnum(spec[end]) || spec[end] == '-') {
		end++
	}
	name := spec[:end]
	if strings.Contains(name, "-") {
		// A smart variable, with any parameters: looked up as written.
		if !validName(name, true) || strings.ContainsAny(spec, "()") {
			return p.errAt(g.off, "[%s] is not a field name or smart variable", g.text)
		}
		for k := end; k < len(spec); k++ {
			if c := spec[k]; !isAlnum(c) && c != '-' && c != ':' && c != '.' {
				return p.errAt(g.off+k, "unexpected %q in [%s]", c, g.text)
			}
		}
		tg.ref.Field = spec
		return nil
	}
	tg.ref.Field = name
	rest := spec[end:]
	off := g.off + end
	if strings.HasPrefix(rest, "(") {
		k := strings.IndexByte(rest, ')')
		if k < 0 {
			return p.errAt(off, "unclosed ( in [%s]: a checkbox choice is written [field(code)], as in [race(2)]", g.text)
		}
		code := rest[1:k]
		if code == "" || strings.IndexFunc(code, func(r rune) bool {
			return r > 127 || !isAlnum(byte(r)) && r != '-' && r != '.'
		}) >= 0 {
			return p.errAt(off+1, "(%s) is not a checkbox choice code: use letters, digits and _", code)
		}
		tg.ref.Code = code
		rest, off = rest[k+1:], off+k+1
	}
	for rest != "" {
		if rest[0] != ':' {
			r, _ := utf8.DecodeRuneInString(rest)
			return p.errAt(off, "unexpected %q in [%s]: a tag is [field], [field:label] or [field|fallback]; a literal [ must not be followed by a letter", r, g.text)
		}
		mod := rest[1:]
		if k := strings.IndexByte(mod, ':'); k >= 0 {
			mod = mod[:k]
		}
		if !modifiers[mod] {
			return p.errAt(off+1, "unknown modifier :%s in [%s]: use :value, :label, :checked or :unchecked", mod, g.text)
		}
		if mod != "hideunderscore" {
			if tg.mod != modNone {
				return p.errAt(off+1, "[%s] has two modifiers, :%s and :%s; keep one", g.text, tg.mod, mod)
			}
			tg.mod = mod
		}
		rest, off = rest[1+len(mod):], off+1+len(mod)
	}
	if tg.ref.Code != "" && tg.mod != modNone && tg.mod != modValue {
		return p.errAt(g.off, "[%s]: a single checkbox choice pipes its 0 or 1; for labels write [%s:%s]", g.text, tg.ref.Field, tg.mod)
	}
	return nil
}

// errAt returns an *Error at byte offset off of p.src.
func (p *parser) errAt(off int, format string, args ...any) *Error {
	line, col := p.pos(off)
	return &Error{File: p.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// pos is the line and column in the file of byte offset off of p.src.
func (p *parser) pos(off int) (line, col int) {
	before := p.src[:off]
	line = p.line + strings.Count(before, "\n")
	start := strings.LastIndexByte(before, '\n') + 1
	col = utf8.RuneCountInString(before[start:]) + 1
	if start == 0 {
		col += p.col - 1
	}
	return line, col
}

// validName reports whether s is a field name (letters, digits and _, not
// starting with a digit) or, with dash, an event or smart variable name.
func validName(s string, dash bool) bool {
	if s == "" || s[0] == '-' || !dash && isDigit(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && !(dash && c == '-') {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isAlnum(c byte) bool  { return isLetter(c) || isDigit(c) || c == '_' }
