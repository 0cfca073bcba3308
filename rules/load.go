package rules

import (
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/templates"
)

// maxReplyPause is the longest pause a reply may set.
const maxReplyPause = 30 * 24 * time.Hour

// cronParser accepts exactly the 5 classic cron fields.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// Load reads the config file, every rule file its globs match and every
// template the rules name, and validates them. On bad input it returns
// Errors holding every problem found; the Study is then partial (Files
// still lists every rule file read, for reporting) and must not be run.
func Load(configPath string) (*Study, error) {
	var errs Errors
	cfg := loadConfig(configPath, &errs)
	if cfg == nil {
		return nil, errs
	}
	l := &loader{
		study: &Study{Config: cfg},
		errs:  &errs,
		names: map[string]*Rule{},
		tmpls: map[string]any{},
	}
	for _, f := range l.ruleFiles() {
		l.loadRuleFile(f)
	}
	l.crossCheck()
	sortErrors(errs, append([]string{configPath}, l.study.Files...))
	return l.study, errs.Err()
}

type loader struct {
	study *Study
	errs  *Errors
	names map[string]*Rule
	tmpls map[string]any // template path → *templates.SMS / *templates.Email, or nil after an error
}

// ruleFiles expands the config's rule globs relative to the config file.
func (l *loader) ruleFiles() []string {
	c := l.study.Config
	seen := map[string]bool{}
	var files []string
	for i, g := range c.RuleGlobs {
		pattern := c.display(g)
		matches, err := filepath.Glob(pattern)
		if err == nil && len(matches) == 0 {
			err = fmt.Errorf("matches no file: create a rule file there or fix the pattern")
		}
		if err != nil {
			p := Pos{File: c.Path}
			if i < len(c.ruleGlobPos) {
				p = c.ruleGlobPos[i]
			}
			*l.errs = append(*l.errs, &Error{Pos: p, Msg: fmt.Sprintf("rules: %q %v", g, err)})
			continue
		}
		sort.Strings(matches)
		for _, m := range matches {
			if !seen[m] {
				seen[m] = true
				files = append(files, m)
			}
		}
	}
	l.study.Files = files
	return files
}

func (l *loader) loadRuleFile(file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		*l.errs = append(*l.errs, &Error{Pos: Pos{File: file}, Msg: fmt.Sprintf("cannot read the rule file: %v", unwrapPathError(err))})
		return
	}
	root, src := parseYAML(file, data, l.errs)
	if root == nil {
		return
	}
	d := &decoder{src: src, errs: l.errs}
	m := d.mapping(root, "a rule file", "project", "rules", "replies")
	if m == nil {
		return
	}
	project := ""
	if n := m.get("project"); n != nil {
		project = l.project(d, n)
	}
	if n := m.get("rules"); n != nil {
		if items, ok := d.list(n, "rules"); ok {
			for _, it := range items {
				if r := l.decodeRule(d, it, project); r != nil {
					l.study.Rules = append(l.study.Rules, r)
				}
			}
		}
	}
	if n := m.get("replies"); n != nil {
		if items, ok := d.list(n, "replies"); ok {
			for _, it := range items {
				if r := l.decodeReply(d, it, project); r != nil {
					l.study.Replies = append(l.study.Replies, r)
				}
			}
		}
	}
}

// project decodes a project name and checks the config defines it.
func (l *loader) project(d *decoder, n *yaml.Node) string {
	s, ok := d.str(n, "project")
	if !ok {
		return ""
	}
	c := l.study.Config
	if c.Project(s) == nil {
		d.errorf(n, "unknown project %q%s: projects in %s are: %s", s,
			didYouMean(s, c.ProjectNames(), "'%s'"), c.Path, strings.Join(c.ProjectNames(), ", "))
		return ""
	}
	return s
}

// defaultProject is the project used when neither the file nor the rule
// names one: the only project, if there is exactly one.
func (l *loader) defaultProject(d *decoder, at *yaml.Node, fileProject string) string {
	if fileProject != "" {
		return fileProject
	}
	c := l.study.Config
	if len(c.Projects) == 1 {
		return c.Projects[0].Name
	}
	if len(c.Projects) > 1 {
		d.errorf(at, "no project: add 'project: <name>' at the top of the file or in the entry (one of %s)",
			strings.Join(c.ProjectNames(), ", "))
	}
	return ""
}

// scalarKey returns the value of key in mapping node n when it is a
// scalar, without reporting anything (used to name a rule before decoding).
func scalarKey(n *yaml.Node, key string) string {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && resolve(n.Content[i+1]).Kind == yaml.ScalarNode {
			return resolve(n.Content[i+1]).Value
		}
	}
	return ""
}

func (l *loader) decodeRule(d *decoder, n *yaml.Node, fileProject string) *Rule {
	d.rule = scalarKey(n, "name")
	defer func() { d.rule = "" }()
	m := d.mapping(n, "a rule", "name", "description", "enabled", "project", "when", "event",
		"instrument", "channel", "to", "template", "schedule", "repeat", "once_per", "window", "expires", "write_back",
		"start", "every", "remind", "fallback")
	if m == nil {
		return nil
	}
	r := &Rule{Pos: d.pos(n), Enabled: true, Repeat: Repeat{Max: 1}, pos: map[string]Pos{}, zone: l.study.Config.Location}
	at := func(key string, v *yaml.Node) { r.pos[key] = d.pos(v) }

	if v := m.get("name"); v != nil {
		if s, ok := d.str(v, "name"); ok {
			r.Name = s
			switch first := l.names[s]; {
			case !ruleNameRE.MatchString(s):
				d.errorf(v, "rule name %q: start with a-z or 0-9 and use only a-z, 0-9, '_' and '-'", s)
			case first != nil:
				d.errorf(v, "duplicate rule name %q: already defined at %s; rule names must be unique across all rule files", s, first.Pos)
			default:
				l.names[s] = r
			}
		}
	} else {
		d.errorf(n, "a rule needs a name")
	}
	if v := m.get("description"); v != nil {
		r.Description, _ = d.str(v, "description")
	}
	if v := m.get("enabled"); v != nil {
		if b, ok := d.boolean(v, "enabled"); ok {
			r.Enabled = b
		}
	}
	if v := m.get("project"); v != nil {
		r.Project = l.project(d, v)
	} else {
		r.Project = l.defaultProject(d, n, fileProject)
	}
	if v := m.get("when"); v != nil {
		at("when", v)
		r.When, r.whenRefs = l.parseWhen(d, v)
		r.whenAt = func(offset int) Pos { return d.valuePos(v, offset) }
	}
	for _, key := range []string{"event", "instrument"} {
		v := m.get(key)
		if v == nil {
			continue
		}
		at(key, v)
		s, ok := d.str(v, key)
		if !ok {
			continue
		}
		if !eventNameRE.MatchString(s) {
			d.errorf(v, "%s: %q is not a REDCap unique %s name (a-z, 0-9, '_')", key, s, key)
		}
		switch {
		case key == "event" && s == AnyEvent:
			r.AnyEvent = true
		case key == "event":
			r.Event = s
		default:
			r.Instrument = s
		}
	}
	if v := m.get("channel"); v != nil {
		at("channel", v)
		if s, ok := d.str(v, "channel"); ok {
			if s != ChannelSMS && s != ChannelEmail {
				d.errorf(v, "channel: %q is not a channel: use sms or email", s)
			} else {
				r.Channel = s
			}
		}
	} else {
		d.errorf(n, "channel is required: sms or email")
	}
	if v := m.get("to"); v != nil {
		at("to", v)
		r.To, r.ToAddress = decodeTo(d, v, r.Channel)
	} else {
		d.errorf(n, "to is required: the field holding the phone number or email address, e.g. to: \"[mobile_phone]\"")
	}
	if v := m.get("template"); v != nil {
		at("template", v)
		if s, ok := d.str(v, "template"); ok {
			r.Template = s
			l.loadTemplate(d, v, r)
		}
	} else {
		d.errorf(n, "template is required: the name of a file in %s (without .sms.txt/.email.txt)", l.study.Config.display(l.templatesRel()))
	}
	if v := m.get("schedule"); v != nil {
		at("schedule", v)
		if s, ok := d.str(v, "schedule"); ok {
			decodeSchedule(d, v, s, r)
		}
	}
	if v := m.get("repeat"); v != nil {
		r.Repeat = decodeRepeat(d, v)
	}
	if v := m.get("once_per"); v != nil {
		at("once_per", v)
		r.OncePer = decodeRef(d, v, "once_per", "[visit_date]")
	}
	if v := m.get("window"); v != nil {
		r.Window = decodeWindow(d, v, r)
	}
	if v := m.get("expires"); v != nil {
		at("expires", v)
		if s, ok := d.str(v, "expires"); ok {
			if dur, err := parseDuration(s); err != nil {
				d.errorf(v, "expires: %v", err)
			} else {
				r.Expires = dur
			}
		}
	}
	if v := m.get("write_back"); v != nil {
		r.WriteBack = decodeWriteBack(d, v, r)
	}
	r.tz = &zoneState{}
	switch p := l.study.Config.Project(r.Project); {
	case r.Window != nil && r.Window.TimezoneField.Field != "":
		r.TimezoneField = r.Window.TimezoneField
	case p != nil && p.TimezoneField.Field != "":
		r.TimezoneField = p.TimezoneField
		r.pos["window.timezone_field"] = p.tzPos
	}
	l.decodeTiming(d, n, m, r)
	if v := m.get("fallback"); v != nil {
		r.pos["fallback"] = d.pos(v)
		r.Fallback = l.decodeFallback(d, v, r)
	}
	return r
}

// templatesRel is the templates directory relative to the config dir, for
// messages.
func (l *loader) templatesRel() string {
	c := l.study.Config
	rel, err := filepath.Rel(c.Dir, c.TemplatesDir)
	if err != nil {
		return c.TemplatesDir
	}
	return rel
}

// parseWhen parses a condition and records where each reference is
// written, so later field checks can point at it.
func (l *loader) parseWhen(d *decoder, v *yaml.Node) (*logic.Expr, map[logic.Ref]Pos) {
	s, ok := d.str(v, "when")
	if !ok || strings.TrimSpace(s) == "" {
		if ok {
			d.errorf(v, "when is empty: write a REDCap condition, or remove when to select every participant")
		}
		return nil, nil
	}
	e, err := logic.Parse(s)
	if err != nil {
		var se *logic.SyntaxError
		if errors.As(err, &se) {
			d.errorAt(d.valuePos(v, se.Col-1), "when: %s", se.Msg)
		} else {
			d.errorf(v, "when: %v", err)
		}
		return nil, nil
	}
	refs := map[logic.Ref]Pos{}
	for _, ref := range e.Refs() {
		refs[ref] = d.valuePos(v, refOffset(s, ref))
	}
	return e, refs
}

// refOffset finds the rune offset where ref is written in src (at its
// opening bracket), or 0 when it cannot be found.
func refOffset(src string, ref logic.Ref) int {
	return max(refIndex(src, ref), 0)
}

// refIndex is the rune offset of ref's opening bracket in src, or -1.
func refIndex(src string, ref logic.Ref) int {
	needle := "[" + ref.Field
	from, first := 0, -1
	for {
		i := strings.Index(src[from:], needle)
		if i < 0 {
			return first
		}
		i += from
		end := i + len(needle)
		if end == len(src) || !isNameByte(src[end]) {
			qualifier := "[" + ref.Event + "]"
			qualified := i >= len(qualifier) && src[i-len(qualifier):i] == qualifier
			switch {
			case ref.Event == "" && (i == 0 || src[i-1] != ']'):
				return len([]rune(src[:i]))
			case ref.Event != "" && qualified:
				return len([]rune(src[:i-len(qualifier)]))
			case first < 0:
				// The field written with another qualifier: where it is
				// written, unless the exact reference comes later.
				first = len([]rune(src[:i]))
			}
		}
		from = end
	}
}

func isNameByte(b byte) bool {
	return b == '_' || b == '-' || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || (b >= 'A' && b <= 'Z')
}

// decodeTo reads `to`: a field reference, "[field]" or "[event][field]",
// or for an email rule a fixed address written as it stands
// ("coordinator@example.edu"), for messages to staff. An SMS rule always
// names a field: inbound texts are matched to participants by the numbers
// in the rules' `to` fields, so a fixed number would make its owner every
// record's participant.
func decodeTo(d *decoder, v *yaml.Node, channel string) (logic.Ref, string) {
	if s := strings.TrimSpace(v.Value); v.Kind == yaml.ScalarNode && s != "" && !strings.Contains(s, "[") {
		switch {
		case channel == ChannelSMS:
			d.errorf(v, "to: %q is not a field reference: an sms rule names the field holding the phone number, e.g. \"[mobile_phone]\" "+
				"(a fixed number is not allowed: replies from it would be taken for every participant's)", s)
		case channel == ChannelEmail && !isBareAddress(s):
			d.errorf(v, "to: %q is neither a field reference nor an email address: write the field in brackets, e.g. \"[email]\", "+
				"or one staff address, e.g. \"coordinator@example.edu\"", s)
		case channel == ChannelEmail:
			return logic.Ref{}, s
		default:
			d.errorf(v, "to: %q is not a single field reference: write the field in brackets, e.g. \"[mobile_phone]\"", s)
		}
		return logic.Ref{}, ""
	}
	return decodeRef(d, v, "to", "[mobile_phone]"), ""
}

// decodeRef reads the value of key as one field reference, "[field]" or
// "[event][field]"; example is one for the error messages.
func decodeRef(d *decoder, v *yaml.Node, key, example string) logic.Ref {
	if v.Kind == yaml.SequenceNode && len(v.Content) == 1 && v.Content[0].Kind == yaml.ScalarNode {
		d.errorf(v, "%s: [%s] without quotes is a YAML list: quote it, %s: \"[%s]\"", key, v.Content[0].Value, key, v.Content[0].Value)
		return logic.Ref{}
	}
	s, ok := d.str(v, key)
	if !ok {
		return logic.Ref{}
	}
	m := toRE.FindStringSubmatch(s)
	if m == nil {
		d.errorf(v, "%s: %q is not a single field reference: write the field in brackets, e.g. \"%s\"", key, s, example)
		return logic.Ref{}
	}
	return logic.Ref{Event: m[1], Field: m[2]}
}

// isBareAddress reports whether s is one email address without a display
// name, e.g. coordinator@example.edu.
func isBareAddress(s string) bool {
	s = strings.TrimSpace(s)
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndex(s, "@")
	return at > 0 && strings.Contains(s[at+1:], ".")
}

// loadTemplate loads the rule's template for its channel, once per file.
func (l *loader) loadTemplate(d *decoder, v *yaml.Node, r *Rule) {
	if !tmplNameRE.MatchString(r.Template) {
		d.errorf(v, "template: %q is not a template name: use the file name without directory or extension, e.g. baseline-reminder", r.Template)
		return
	}
	if r.Channel == "" {
		return // the channel error is reported already
	}
	c := l.study.Config
	dir := c.display(l.templatesRel())
	ext := "." + r.Channel + ".txt"
	path := filepath.Join(dir, r.Template+ext)
	r.tmplFiles = []string{path}
	if r.Channel == ChannelEmail {
		html := filepath.Join(dir, r.Template+".email.html")
		if _, err := os.Stat(html); err == nil {
			r.tmplFiles = append(r.tmplFiles, html)
		}
	}
	t, seen := l.tmpls[path]
	if !seen {
		t = l.readTemplate(d, v, path, dir, ext, r)
		l.tmpls[path] = t
	}
	switch t := t.(type) {
	case *templates.SMS:
		r.SMS = t
	case *templates.Email:
		r.Email = t
	}
}

func (l *loader) readTemplate(d *decoder, v *yaml.Node, path, dir, ext string, r *Rule) any {
	if _, err := os.Stat(path); err != nil {
		var names []string
		if entries, err := os.ReadDir(dir); err == nil {
			for _, e := range entries {
				if name, ok := strings.CutSuffix(e.Name(), ext); ok {
					names = append(names, name)
				}
			}
		}
		d.errorf(v, "unknown template %q: %s does not exist%s; create it or fix the name",
			r.Template, path, didYouMean(r.Template, names, "'%s'"))
		return nil
	}
	var (
		t   any
		err error
	)
	if r.Channel == ChannelSMS {
		var s *templates.SMS
		s, err = templates.LoadSMS(path)
		t = s
	} else {
		var e *templates.Email
		e, err = templates.LoadEmail(path)
		t = e
	}
	if err != nil {
		l.templateErrors(err, d.pos(v), r.Name)
		return nil
	}
	return t
}

// templateErrors reports a template's errors at the template file's own
// positions (or at fallback when the error carries none).
func (l *loader) templateErrors(err error, fallback Pos, rule string) {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		var te *templates.Error
		if errors.As(e, &te) {
			*l.errs = append(*l.errs, &Error{Pos: Pos{File: te.File, Line: te.Line, Col: te.Col}, Rule: rule, Msg: te.Msg})
			continue
		}
		*l.errs = append(*l.errs, &Error{Pos: fallback, Rule: rule, Msg: "template: " + e.Error()})
	}
}

func decodeSchedule(d *decoder, v *yaml.Node, s string, r *Rule) {
	s = strings.TrimSpace(s)
	switch {
	case s == "on_save":
		r.OnSave = true
		return
	case strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ="):
		d.errorf(v, "schedule: remove the time zone prefix: schedules run in the study time zone")
		return
	}
	if _, err := cronParser.Parse(s); err != nil {
		d.errorf(v, "schedule: %q is not a cron schedule (%v): write 5 fields, minute hour day-of-month month day-of-week, e.g. \"0 10 * * *\", or on_save", s, err)
		return
	}
	r.Schedule = s
}

func decodeRepeat(d *decoder, v *yaml.Node) Repeat {
	rep := Repeat{Max: 1}
	m := d.mapping(v, "repeat", "every", "max")
	if m == nil {
		return rep
	}
	if n := m.get("every"); n != nil {
		if s, ok := d.str(n, "repeat.every"); ok {
			every, err := parseDuration(s)
			if err != nil {
				d.errorf(n, "repeat.every: %v", err)
			}
			rep.Every = every
		}
	}
	if n := m.get("max"); n != nil {
		if mx, ok := d.integer(n, "repeat.max"); ok {
			if mx < 1 {
				d.errorf(n, "repeat.max: %d is too small: the total number of messages is at least 1", mx)
			} else {
				rep.Max = mx
			}
		}
	}
	if rep.Max > 1 && rep.Every == 0 && !m.has("every") {
		d.errorf(v, "repeat: max %d needs every: how long to wait between messages, e.g. every: 3d", rep.Max)
	}
	return rep
}

func decodeWindow(d *decoder, v *yaml.Node, r *Rule) *Window {
	m := d.mapping(v, "window", "from", "to", "overnight", "timezone_field")
	if m == nil {
		return nil
	}
	w := decodeClocks(d, v, m, "window")
	// A window to 00:00 ends at midnight: it does not run into the night.
	if w.From > w.To && w.To != 0 && !w.Overnight {
		d.errorf(v, "window: from %s to %s would send only between %s and %s (overnight): for a day window write from %q to %q, "+
			"to keep texts out of the night set quiet_hours in the config, or add overnight: true if night-time sending is really meant",
			formatClock(w.From), formatClock(w.To), formatClock(w.From), formatClock(w.To), formatClock(w.To), formatClock(w.From))
	}
	if n := m.get("timezone_field"); n != nil {
		r.pos["window.timezone_field"] = d.pos(n)
		w.TimezoneField = decodeZoneField(d, n, "window.timezone_field")
	}
	return w
}

// decodeClocks reads the from, to and overnight keys of a window or of the
// quiet hours (what names it in messages). overnight: true must come with
// a from after to.
func decodeClocks(d *decoder, v *yaml.Node, m *mapping, what string) *Window {
	w := &Window{Pos: d.pos(v)}
	clock := func(key string) (int, bool) {
		n := m.get(key)
		if n == nil {
			d.errorf(v, "%s needs %s: a local time like \"09:00\"", what, key)
			return 0, false
		}
		s, ok := d.str(n, what+"."+key)
		if !ok {
			return 0, false
		}
		t, ok := parseClock(s)
		if !ok {
			d.errorf(n, "%s.%s: %q is not a time of day: write HH:MM on a 24-hour clock, e.g. \"09:00\" (quoted)", what, key, s)
		}
		return t, ok
	}
	from, okFrom := clock("from")
	to, okTo := clock("to")
	w.From, w.To = from, to
	if okFrom && okTo && from == to {
		d.errorf(v, "%s: from and to are both %s, so it is empty: widen it or remove %s", what, formatClock(from), what)
	}
	if n := m.get("overnight"); n != nil {
		w.Overnight, _ = d.boolean(n, what+".overnight")
		if w.Overnight && okFrom && okTo && from < to {
			d.errorf(n, "%s.overnight: true, but from %s to %s does not cross midnight: remove overnight", what, formatClock(from), formatClock(to))
		}
	}
	if !okFrom || !okTo {
		w.From, w.To = 0, 24*60 // keep a broken entry from looking overnight
	}
	return w
}

func decodeWriteBack(d *decoder, v *yaml.Node, r *Rule) WriteBack {
	var wb WriteBack
	m := d.mapping(v, "write_back", "status", "sid", "sent_at", "error")
	if m == nil {
		return wb
	}
	for key, dst := range map[string]*string{"status": &wb.Status, "sid": &wb.SID, "sent_at": &wb.SentAt, "error": &wb.Error} {
		n := m.get(key)
		if n == nil {
			continue
		}
		r.pos["write_back."+key] = d.pos(n)
		s, ok := d.str(n, "write_back."+key)
		if !ok {
			continue
		}
		if !fieldNameRE.MatchString(s) {
			d.errorf(n, "write_back.%s: %q is not a REDCap field name: write it without brackets, e.g. bl_sms_status", key, s)
			continue
		}
		*dst = s
	}
	return wb
}

func (l *loader) decodeReply(d *decoder, n *yaml.Node, fileProject string) *Reply {
	m := d.mapping(n, "a reply", "name", "match", "keywords", "only_after_rule", "within", "event", "set", "reply",
		"pause", "notify")
	if m == nil {
		return nil
	}
	r := &Reply{Pos: d.pos(n), pos: map[string]Pos{}}
	r.Project = l.defaultProject(d, n, fileProject)
	if v := m.get("name"); v != nil {
		if s, ok := d.str(v, "name"); ok {
			if !ruleNameRE.MatchString(s) {
				d.errorf(v, "reply name %q: start with a-z or 0-9 and use only a-z, 0-9, '_' and '-'", s)
			}
			for _, other := range l.study.Replies {
				if other.Name == s {
					d.errorf(v, "duplicate reply name %q: already defined at %s", s, other.Pos)
				}
			}
			r.Name = s
		}
	} else {
		d.errorf(n, "a reply needs a name")
	}
	switch {
	case m.has("match") && m.has("keywords"):
		d.errorf(m.keys["keywords"], "use either match or keywords in a reply, not both")
	case !m.has("match") && !m.has("keywords"):
		d.errorf(n, "a reply needs match (a regular expression) or keywords (a list of words)")
	}
	if v := m.get("match"); v != nil {
		if s, ok := d.str(v, "match"); ok {
			re, err := regexp.Compile("(?i)" + s)
			if err != nil {
				d.errorf(v, "match: %q is not a regular expression: %v", s, err)
			}
			r.Match = re
			r.pos["match"] = d.pos(v)
		}
	}
	if v := m.get("keywords"); v != nil {
		if items, ok := d.list(v, "keywords"); ok {
			for _, it := range items {
				if s, ok := d.str(it, "keywords"); ok {
					if strings.TrimSpace(s) == "" {
						d.errorf(it, "keywords: a keyword cannot be blank")
						continue
					}
					if why := reservedKeyword(strings.TrimSpace(s)); why != "" {
						d.errorf(it, "keywords: %q is %s before any reply rule, so this reply never sees it: use another word", strings.TrimSpace(s), why)
					}
					r.Keywords = append(r.Keywords, strings.TrimSpace(s))
				}
			}
			if len(items) == 0 {
				d.errorf(v, "keywords: list at least one keyword")
			}
		}
	}
	if v := m.get("only_after_rule"); v != nil {
		r.pos["only_after_rule"] = d.pos(v)
		r.OnlyAfterRule, _ = d.str(v, "only_after_rule")
	}
	if v := m.get("within"); v != nil {
		if s, ok := d.str(v, "within"); ok {
			w, err := parseDuration(s)
			if err != nil {
				d.errorf(v, "within: %v", err)
			}
			r.Within = w
		}
		if !m.has("only_after_rule") {
			d.errorf(v, "within needs only_after_rule: the rule whose message the reply must follow")
		}
	}
	if v := m.get("event"); v != nil {
		r.pos["event"] = d.pos(v)
		if s, ok := d.str(v, "event"); ok {
			if !eventNameRE.MatchString(s) {
				d.errorf(v, "event: %q is not a REDCap unique event name (a-z, 0-9, '_')", s)
			} else {
				r.Event = s
			}
		}
		if !m.has("set") {
			d.errorf(v, "event without set: event names where a reply's set fields are written; add set or remove event")
		}
	}
	if v := m.get("set"); v != nil {
		r.Set = decodeSet(d, v, r)
	}
	if v := m.get("pause"); v != nil {
		if s, ok := d.str(v, "pause"); ok {
			p, err := parseDuration(s)
			switch {
			case err != nil:
				d.errorf(v, "pause: %v", err)
			case p > maxReplyPause:
				d.errorf(v, "pause: %s is longer than %s: to stop texts for good the participant texts STOP; otherwise pause for at most 30d", s, "30d")
			default:
				r.Pause = p
			}
		}
	}
	if v := m.get("notify"); v != nil {
		r.pos["notify"] = d.pos(v)
		if s, ok := d.str(v, "notify"); ok {
			if isBareAddress(s) {
				r.Notify = strings.TrimSpace(s)
			} else {
				d.errorf(v, "notify: %q is not an email address: write one staff address, e.g. notify: coordinator@example.edu", s)
			}
		}
	}
	if v := m.get("reply"); v != nil {
		r.pos["reply"] = d.pos(v)
		if s, ok := d.str(v, "reply"); ok {
			t, err := templates.Parse(d.src.file, s)
			if err != nil {
				var te *templates.Error
				if errors.As(err, &te) {
					d.errorAt(d.valuePos(v, textOffset(s, te.Line, te.Col)), "reply: %s", te.Msg)
				} else {
					d.errorf(v, "reply: %v", err)
				}
			}
			r.Reply = t
		}
	}
	return r
}

func decodeSet(d *decoder, v *yaml.Node, r *Reply) map[string]string {
	v = resolve(v)
	if v.Kind != yaml.MappingNode {
		d.errorf(v, "set: expected a mapping of field: value, got %s", describe(v))
		return nil
	}
	set := map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := resolve(v.Content[i]), resolve(v.Content[i+1])
		field := k.Value
		if _, dup := set[field]; dup {
			d.errorf(k, "duplicate key '%s' in set: remove one", field)
			continue
		}
		if !fieldNameRE.MatchString(field) {
			d.errorf(k, "set: %q is not a REDCap field name: write it without brackets", field)
			continue
		}
		s := ""
		if !(val.Kind == yaml.ScalarNode && val.ShortTag() == "!!null") {
			var ok bool
			if s, ok = d.str(val, "set."+field); !ok {
				continue
			}
		}
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "[") {
			switch strings.ToLower(t) {
			case SetNow, SetToday:
				s = strings.ToLower(t)
			default:
				d.errorf(val, "set.%s: %q: a set value is written as it stands; the only bracketed values are [now] and [today] "+
					"(the time and date the text arrived, study time zone): write a literal value or one of those", field, s)
				continue
			}
		}
		set[field] = s
		r.pos["set."+field] = d.pos(k)
	}
	return set
}

// textOffset converts a 1-based line and column inside text into a rune
// offset.
func textOffset(text string, line, col int) int {
	off := 0
	for i, l := range strings.Split(text, "\n") {
		if i+1 == line {
			return off + col - 1
		}
		off += len([]rune(l)) + 1
	}
	return 0
}

// crossCheck runs the checks that need every file loaded.
func (l *loader) crossCheck() {
	s, c := l.study, l.study.Config
	var ruleNames []string
	for _, r := range s.Rules {
		ruleNames = append(ruleNames, r.Name)
	}
	for _, rep := range s.Replies {
		if rep.OnlyAfterRule != "" && s.Rule(rep.OnlyAfterRule) == nil {
			*l.errs = append(*l.errs, &Error{Pos: rep.pos["only_after_rule"],
				Msg: fmt.Sprintf("only_after_rule: no rule is named %q%s", rep.OnlyAfterRule, didYouMean(rep.OnlyAfterRule, ruleNames, "'%s'"))})
		}
	}
	for _, rep := range s.Replies {
		if rep.Notify != "" && c.SMTP == nil {
			*l.errs = append(*l.errs, &Error{Pos: rep.pos["notify"],
				Msg: fmt.Sprintf("notify needs an smtp: section in %s (host, from): staff are told by email", c.Path)})
		}
	}
	l.checkTriggerSecret()
	for _, r := range s.Rules {
		if q := c.QuietFor(r); q != nil && r.Window != nil && !sendableMinutes(r.Window, q) {
			*l.errs = append(*l.errs, &Error{Pos: r.Window.Pos, Rule: r.Name,
				Msg: fmt.Sprintf("window %s lies wholly inside the study's quiet hours %s (%s), so the rule could never text anyone: move the window into the day or narrow quiet_hours",
					r.Window, q, q.Pos)})
		}
	}
	*l.errs = append(*l.errs, s.checkEventless(s.longitudinalByFiles)...)
	needs := map[string]bool{}
	for _, r := range s.Rules {
		if r.Fallback != nil && c.SMTP == nil && !needs[ChannelEmail] {
			needs[ChannelEmail] = true
			*l.errs = append(*l.errs, fallbackError(r, c))
		}
		switch {
		case r.Channel == ChannelSMS && c.Twilio == nil && !needs[ChannelSMS]:
			needs[ChannelSMS] = true
			*l.errs = append(*l.errs, &Error{Pos: r.pos["channel"], Rule: r.Name,
				Msg: fmt.Sprintf("channel sms needs a twilio: section in %s (account_sid_env, auth_token_env, from)", c.Path)})
		case r.Channel == ChannelEmail && c.SMTP == nil && !needs[ChannelEmail]:
			needs[ChannelEmail] = true
			*l.errs = append(*l.errs, &Error{Pos: r.pos["channel"], Rule: r.Name,
				Msg: fmt.Sprintf("channel email needs an smtp: section in %s (host, from)", c.Path)})
		}
	}
}

// checkTriggerSecret requires server.trigger_secret_env when a rule runs
// on save: nudge serve refuses every Data Entry Trigger without a secret,
// so the rule would never run.
func (l *loader) checkTriggerSecret() {
	s, c := l.study, l.study.Config
	if c.Server.TriggerSecretEnv != "" || c.Server.TriggerSecretFile != "" {
		return
	}
	for _, r := range s.Rules {
		if r.OnSave && r.Enabled {
			*l.errs = append(*l.errs, &Error{Pos: r.pos["schedule"], Rule: r.Name, Msg: fmt.Sprintf(
				"schedule: on_save needs server.trigger_secret_env in %s: nudge refuses every Data Entry Trigger without a secret, so this rule would never run; "+
					"add trigger_secret_env: NUDGE_TRIGGER_SECRET under server:, export a long random value in it (e.g. `openssl rand -hex 24`) "+
					"and end the Data Entry Trigger URL in REDCap with ?secret=<that value>", c.Path)})
			return
		}
	}
}

// studyName names the study in suggested texts.
func studyName(c *Config) string {
	if c.Study != "" {
		return c.Study
	}
	return "<study name>"
}

// decodeZoneField reads a timezone_field: a field name (tz), or a
// reference in brackets, "[tz]" or "[enrollment_arm_1][tz]" for a field of
// another event.
func decodeZoneField(d *decoder, v *yaml.Node, key string) logic.Ref {
	if v.Kind == yaml.ScalarNode && fieldNameRE.MatchString(strings.TrimSpace(v.Value)) {
		return logic.Ref{Field: strings.TrimSpace(v.Value)}
	}
	return decodeRef(d, v, key, "[enrollment_arm_1][tz]")
}
