package main

import (
	"regexp"
	"slices"
	"strings"

	"github.com/nudge-study/nudge/rules/dict"
)

// initFields are the fields of a project `nudge init` builds its example
// rule from; a blank name means the project has no such field.
type initFields struct {
	Phone, Email, Name string
	// Consent is a field that records consent and ConsentYes its code for
	// "yes" (the code the example rule's condition compares it with).
	Consent, ConsentYes string
	// OptOut is an existing field saying whether a participant may be
	// texted: OptOutStop is the value nudge writes on STOP, OptOutStart
	// the one on START, and OptOutOK the value that allows texts.
	OptOut, OptOutStop, OptOutStart string
	OptOutIsOptIn                   bool // the field says yes to texts (sms_opt_in), not no (sms_opt_out)
}

var (
	phoneNameRE   = regexp.MustCompile(`(?i)(phone|mobile|cell)`)
	emailNameRE   = regexp.MustCompile(`(?i)e_?mail`)
	consentRE     = regexp.MustCompile(`(?i)consent`)
	givenNameRE   = regexp.MustCompile(`(?i)^(first_?name|given_?name|fname|name_?first|first)$`)
	optInNameRE   = regexp.MustCompile(`(?i)^(sms|text)_?(opt_?in|ok|consent)$|^opt_?in_?(sms|text)?$`)
	optOutNameRE  = regexp.MustCompile(`(?i)^(sms|text)_?opt_?out$|^opt_?out(_?(sms|text))?$`)
	notContactRE  = regexp.MustCompile(`(?i)(emergency|kin|^ec_|_ec_|contact_|physician|doctor|provider|work|home|fax)`)
	notAnEmailRE  = regexp.MustCompile(`(?i)(no_?email|_yn$|_y$|_n$)`)
	yesLikeLabels = []string{"yes", "y", "i agree", "agree", "agreed", "i consent", "consented", "consent given", "true"}
)

// detectFields finds the example rule's fields in a data dictionary. usable
// reports whether a field may be read on the rule's base rows (not on a
// repeating instrument); nil allows every field.
func detectFields(d *dict.Dictionary, usable func(dict.Field) bool) initFields {
	if usable == nil {
		usable = func(dict.Field) bool { return true }
	}
	text := func(f dict.Field) bool { return f.Type == "text" && usable(f) }
	var out initFields
	out.Phone = pick(d, func(f dict.Field) bool { return text(f) && f.Validation == "phone" },
		func(f dict.Field) bool { return text(f) && f.Validation == "" && phoneNameRE.MatchString(f.Name) })
	out.Email = pick(d, func(f dict.Field) bool { return text(f) && f.Validation == "email" },
		func(f dict.Field) bool {
			return text(f) && f.Validation == "" && emailNameRE.MatchString(f.Name) && !notAnEmailRE.MatchString(f.Name)
		})
	out.Name = pick(d, func(f dict.Field) bool { return text(f) && f.Validation == "" && givenNameRE.MatchString(f.Name) })

	consentByName := func(f dict.Field) bool { return usable(f) && consentRE.MatchString(f.Name) && yesCode(f) != "" }
	consentByLabel := func(f dict.Field) bool { return usable(f) && consentRE.MatchString(f.Text) && yesCode(f) != "" }
	if out.Consent = pick(d, consentByName, consentByLabel); out.Consent != "" {
		f, _ := d.Field(out.Consent)
		out.ConsentYes = yesCode(f)
	}

	yesno := func(f dict.Field) bool { return usable(f) && (f.Type == "yesno" || f.Type == "truefalse") }
	if n := pick(d, func(f dict.Field) bool { return yesno(f) && optInNameRE.MatchString(f.Name) }); n != "" {
		out.OptOut, out.OptOutStop, out.OptOutStart, out.OptOutIsOptIn = n, "0", "1", true
	} else if n := pick(d, func(f dict.Field) bool { return yesno(f) && optOutNameRE.MatchString(f.Name) }); n != "" {
		out.OptOut, out.OptOutStop, out.OptOutStart = n, "1", "0"
	}
	if out.OptOut != "" && out.OptOut == out.Consent {
		out.Consent, out.ConsentYes = "", "" // an "sms_consent" field is the opt-in, not the study consent
	}
	return out
}

// pick returns the first field that the first test accepts, else the
// first the second accepts, and so on; among fields a test accepts, one
// that looks like a participant's own contact beats one that looks like
// someone else's (an emergency contact, next of kin, a physician).
func pick(d *dict.Dictionary, tests ...func(dict.Field) bool) string {
	for _, ok := range tests {
		var other string
		for _, f := range d.Fields {
			if !ok(f) {
				continue
			}
			if !notContactRE.MatchString(f.Name) {
				return f.Name
			}
			if other == "" {
				other = f.Name
			}
		}
		if other != "" {
			return other
		}
	}
	return ""
}

// yesCode returns the code of a field's "yes" choice: 1 for a yes/no or
// true/false field, the code of a choice labelled like "Yes" or "I agree"
// for a radio button or drop-down list, "" for anything else.
func yesCode(f dict.Field) string {
	switch f.Type {
	case "yesno", "truefalse":
		return "1"
	case "radio", "dropdown":
		for _, c := range f.Choices {
			label := strings.ToLower(strings.TrimSpace(c.Label))
			label = strings.TrimRight(label, ".!")
			if slices.Contains(yesLikeLabels, label) || strings.HasPrefix(label, "yes,") || strings.HasPrefix(label, "yes ") {
				return c.Code
			}
		}
	}
	return ""
}
