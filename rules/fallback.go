package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/templates"
)

// The reasons an SMS rule falls back to email (fallback.on).
const (
	// FallbackMissing: the rule's phone field is blank.
	FallbackMissing = "missing"
	// FallbackInvalid: the number is not a valid phone number, Twilio
	// flagged it as unable to get texts, or refused it at create for that.
	FallbackInvalid = "invalid"
	// FallbackUndelivered: the text ended undelivered.
	FallbackUndelivered = "undelivered"
	// FallbackFailed: the text ended failed (Twilio never handed it to a
	// carrier, or refused it at create).
	FallbackFailed = "failed"
)

// FallbackReasons lists every reason, in the order a rule file writes them.
var FallbackReasons = []string{FallbackMissing, FallbackInvalid, FallbackUndelivered, FallbackFailed}

// FallbackKeySuffix ends the outbox key of a fallback email: the key of the
// text it stands in for, plus this. One occurrence of a rule thus has at
// most one text and one fallback email, and the email exists only when the
// text could not be sent or did not arrive.
const FallbackKeySuffix = "/email"

// IsFallbackKey reports whether an outbox key is a fallback email's.
func IsFallbackKey(key string) bool { return strings.HasSuffix(key, FallbackKeySuffix) }

// Fallback is an SMS rule's email fallback: where the email goes, what it
// says and when it is sent instead of the text.
type Fallback struct {
	To logic.Ref // the field holding the email address
	// Template names the email template (<name>.email.txt); "" when the
	// email is the SMS text under Subject.
	Template string
	// Subject is the subject when the email is the SMS text: fallback.subject
	// or the study's default.
	Subject *templates.Text
	Email   *templates.Email // what the email says
	On      []string         // the reasons it is sent for (FallbackReasons)

	files []string // the template files, for positions of their references
}

// Applies reports whether the fallback is sent for the reason why.
func (f *Fallback) Applies(why string) bool {
	return f != nil && slices.Contains(f.On, why)
}

// DefaultFallbackSubject is the subject of a fallback email made of the SMS
// text when the rule sets no fallback.subject.
func DefaultFallbackSubject(c *Config) string {
	if c != nil && c.Study != "" {
		return "A message from " + c.Study
	}
	return "A message from your study team"
}

// FallbackRule returns the rule as its email fallback sends: the same
// rule (name, condition, rows, schedule, allowed hours, expiry) on the
// email channel, to fallback.to, with the fallback's email, and without
// write-back (the rule's fields keep the text's outcome). nil when the rule
// has no fallback.
func (r *Rule) FallbackRule() *Rule {
	if r.Fallback == nil {
		return nil
	}
	f := *r
	f.Channel = ChannelEmail
	f.To, f.ToAddress = r.Fallback.To, ""
	f.SMS, f.Email = nil, r.Fallback.Email
	if r.Fallback.Template != "" {
		f.Template = r.Fallback.Template
	}
	f.tmplFiles = r.Fallback.files
	f.WriteBack = WriteBack{}
	f.Fallback = nil
	f.IsFallback = true
	return &f
}

// decodeFallback reads an SMS rule's fallback:
//
//	fallback: { to: "[email]", template: visit-reminder, subject: "…", on: [missing, invalid, undelivered, failed] }
//
// Without template, the rule's template's .email.txt is used when it
// exists, else the SMS text with subject (or the study's default subject).
func (l *loader) decodeFallback(d *decoder, v *yaml.Node, r *Rule) *Fallback {
	m := d.mapping(v, "fallback", "to", "template", "subject", "on")
	if m == nil {
		return nil
	}
	if r.Channel != ChannelSMS {
		if r.Channel != "" {
			d.errorf(v, "fallback: only an sms rule falls back (to email); this rule's channel is %s: remove fallback", r.Channel)
		}
		return nil
	}
	f := &Fallback{On: FallbackReasons}
	if n := m.get("to"); n != nil {
		r.pos["fallback.to"] = d.pos(n)
		f.To = decodeRef(d, n, "fallback.to", "[email]")
	} else {
		d.errorf(v, "fallback.to is required: the field holding the email address, e.g. fallback: { to: \"[email]\" }")
	}
	if n := m.get("on"); n != nil {
		r.pos["fallback.on"] = d.pos(n)
		f.On = nil
		if items, ok := d.list(n, "fallback.on"); ok {
			for _, it := range items {
				s, ok := d.str(it, "fallback.on")
				switch {
				case !ok:
				case !slices.Contains(FallbackReasons, s):
					d.errorf(it, "fallback.on: %q is not a reason%s: use %s", s,
						didYouMean(s, FallbackReasons, "'%s'"), strings.Join(FallbackReasons, ", "))
				case !slices.Contains(f.On, s):
					f.On = append(f.On, s)
				}
			}
			if len(items) == 0 {
				d.errorf(n, "fallback.on is empty: list when the email is sent (%s), or remove fallback", strings.Join(FallbackReasons, ", "))
			}
		}
	}
	var subject *yaml.Node
	if n := m.get("subject"); n != nil {
		r.pos["fallback.subject"] = d.pos(n)
		subject = n
	}
	name, explicit := r.Template, false
	tn := m.get("template")
	if tn != nil {
		r.pos["fallback.template"] = d.pos(tn)
		s, ok := d.str(tn, "fallback.template")
		if !ok {
			return f
		}
		name, explicit = s, true
	}
	at := tn
	if at == nil {
		at = v
	}
	if name == "" || !tmplNameRE.MatchString(name) {
		if explicit {
			d.errorf(tn, "fallback.template: %q is not a template name: use the file name without directory or extension", name)
		}
		return f
	}
	path := filepath.Join(l.study.Config.display(l.templatesRel()), name+templates.EmailExt)
	if _, err := os.Stat(path); err == nil || explicit {
		if subject != nil {
			d.errorf(subject, "fallback.subject: the email template %s has its own Subject: line; remove fallback.subject", path)
		}
		tmp := &Rule{Name: r.Name, Template: name, Channel: ChannelEmail}
		l.loadTemplate(d, at, tmp)
		f.Template, f.Email, f.files = name, tmp.Email, tmp.tmplFiles
		return f
	}
	// The email is the SMS text under a subject.
	src, subjPos := DefaultFallbackSubject(l.study.Config), d.pos(v)
	if subject != nil {
		s, ok := d.str(subject, "fallback.subject")
		if !ok {
			return f
		}
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "\r\n") {
			d.errorf(subject, "fallback.subject: write one line of text, e.g. \"Your visit on [visit_date]\"")
			return f
		}
		src, subjPos = s, d.pos(subject)
	}
	t, err := templates.Parse(subjPos.String(), src)
	if err != nil {
		d.errorAt(subjPos, "fallback.subject: %v", err)
		return f
	}
	f.Subject = t
	if r.SMS != nil {
		f.Email = &templates.Email{Name: r.Template, Subject: t, Text: r.SMS.Body}
		f.files = r.tmplFiles
	}
	return f
}

// fallbackRefs lists the references of the fallback email that the rule's
// own template does not hold: its template's, or its subject's.
func (f *Fallback) refs() []logic.Ref {
	if f == nil || f.Email == nil {
		return nil
	}
	if f.Template == "" {
		if f.Subject != nil {
			return f.Subject.Refs()
		}
		return nil
	}
	var refs []logic.Ref
	for _, t := range []*templates.Text{f.Email.Subject, f.Email.Text, f.Email.HTML} {
		if t != nil {
			refs = append(refs, t.Refs()...)
		}
	}
	return refs
}

// fallbackError describes a fallback that cannot work with the config.
func fallbackError(r *Rule, c *Config) *Error {
	return &Error{Pos: r.pos["fallback.to"], Rule: r.Name,
		Msg: fmt.Sprintf("fallback sends email: it needs an smtp: section in %s (host, from)", c.Path)}
}

// FallbackWarnings lists the fallbacks whose to field the data dictionary
// does not validate as an email address: a typo in it is only found when
// the email fails. Projects missing from dicts are not checked.
func (s *Study) FallbackWarnings(dicts map[string]*dict.Dictionary) Errors {
	var errs Errors
	for _, r := range s.Rules {
		f, d := r.Fallback, dicts[r.Project]
		if f == nil || f.To.Field == "" || d == nil {
			continue
		}
		if fd, ok := d.Field(f.To.Field); ok && fd.Type != "descriptive" && fd.Validation == "" {
			errs = append(errs, &Error{Pos: r.pos["fallback.to"], Rule: r.Name, Warning: true, Msg: fmt.Sprintf(
				"fallback.to: [%s] is not validated as email in the data dictionary: a mistyped address is found only when the email fails; set its validation to email",
				f.To.Field)})
		}
	}
	sortErrors(errs, append([]string{s.Config.Path}, s.Files...))
	return errs
}
