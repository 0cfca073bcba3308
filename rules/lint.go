package rules

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/templates"
)

// atWhen is where a byte offset of the rule's condition is written.
func (r *Rule) atWhen(src string, byteOff int) Pos {
	if r.whenAt == nil {
		return r.pos["when"]
	}
	return r.whenAt(utf8.RuneCountInString(src[:byteOff]))
}

// standardMissingCodes are the missing-data codes REDCap offers every
// project; a condition may compare any field with them.
var standardMissingCodes = map[string]bool{
	"NI": true, "INV": true, "UNK": true, "NASK": true, "ASKU": true, "NAV": true, "MSK": true, "NA": true,
	"NAVU": true, "NP": true, "QS": true, "QI": true, "TRC": true, "UNC": true, "DER": true, "PINF": true,
	"NINF": true, "OTH": true,
}

// checkboxStates are what a checkbox choice [field(code)] holds.
var checkboxStates = []dict.Choice{{Code: "1", Label: "checked"}, {Code: "0", Label: "unchecked"}}

// checkChoiceComparisons reports each comparison in the project's rule
// conditions of a multiple-choice field (radio, dropdown, yesno, truefalse,
// or a checkbox choice) with = or <> against a literal that is not one of
// its codes: such a comparison is never true (or, with <>, always true).
func (s *Study) checkChoiceComparisons(project string, d *dict.Dictionary) Errors {
	var errs Errors
	for _, r := range s.Rules {
		if r.Project != project || r.When == nil {
			continue
		}
		src := r.When.String()
		for _, fc := range fieldComparisons(src) {
			if msg := choiceComparison(d, fc); msg != "" {
				errs = append(errs, &Error{Pos: r.atWhen(src, fc.pos), Rule: r.Name, Msg: "when: " + msg})
			}
		}
	}
	return errs
}

// choiceComparison checks one comparison, returning "" when it can be true.
func choiceComparison(d *dict.Dictionary, fc fieldComparison) string {
	var outcome string
	switch fc.op {
	case "=", "==":
		outcome = "can never be true"
	case "<>", "!=":
		outcome = "is true for every participant, so it excludes no one"
	default:
		return ""
	}
	f, ok := d.Field(fc.ref.Field)
	if !ok || fc.lit.value == "" || standardMissingCodes[fc.lit.value] {
		return ""
	}
	var codes []dict.Choice
	var kind string
	switch {
	case fc.ref.Code != "":
		if f.Type != "checkbox" {
			return "" // reported by the field checks
		}
		codes = checkboxStates
		kind = fmt.Sprintf("a checkbox choice such as %s is '1' when checked and '0' when not", fc.ref)
	case f.Type == "yesno" || f.Type == "truefalse":
		codes = f.Choices
		kind = fmt.Sprintf("%s codes are %s", f.Type, describeCodes(codes))
	case f.Type == "radio" || f.Type == "dropdown":
		codes = f.Choices
		kind = fmt.Sprintf("[%s] is a %s field whose codes are %s", f.Name, f.Type, describeCodes(codes))
	default:
		return ""
	}
	for _, c := range codes {
		if sameCode(c.Code, fc.lit.value) {
			return ""
		}
	}
	msg := fmt.Sprintf("%s %s: %s", fc.text, outcome, kind)
	if code := likelyCode(fc.lit.value, codes); code != "" {
		q := "'"
		if strings.HasPrefix(fc.lit.text, `"`) {
			q = `"`
		}
		return msg + fmt.Sprintf("; did you mean %s %s %s%s%s?", fc.ref, fc.op, q, code, q)
	}
	return msg + fmt.Sprintf("; compare %s with one of its codes", fc.ref)
}

// sameCode reports whether a literal equals a choice code as REDCap
// compares them: as numbers when both are numbers, else as text.
func sameCode(code, lit string) bool {
	if code == lit {
		return true
	}
	a, errA := strconv.ParseFloat(code, 64)
	b, errB := strconv.ParseFloat(lit, 64)
	return errA == nil && errB == nil && a == b
}

// describeCodes lists choices as "1 (Yes) and 0 (No)", at most ten.
func describeCodes(codes []dict.Choice) string {
	var parts []string
	for i, c := range codes {
		if i == 10 {
			parts = append(parts, fmt.Sprintf("… (%d in all)", len(codes)))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", c.Code, c.Label))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// likelyCode is the code a literal most likely meant: the code whose label
// it spells (ignoring case), or whose label or code it nearly spells.
func likelyCode(lit string, codes []dict.Choice) string {
	l := strings.ToLower(strings.TrimSpace(lit))
	for _, c := range codes {
		if strings.ToLower(c.Label) == l {
			return c.Code
		}
	}
	switch l {
	case "y", "yes", "true", "checked", "t":
		for _, c := range codes {
			if c.Code == "1" && len(codes) == 2 {
				return c.Code
			}
		}
	case "n", "no", "false", "unchecked", "f":
		for _, c := range codes {
			if c.Code == "0" && len(codes) == 2 {
				return c.Code
			}
		}
	}
	labels := make([]string, len(codes))
	for i, c := range codes {
		labels[i] = strings.ToLower(c.Label)
	}
	if best := suggest(l, labels); best != "" {
		for _, c := range codes {
			if strings.ToLower(c.Label) == best {
				return c.Code
			}
		}
	}
	return ""
}

// unitNames names datediff's units for messages.
var unitNames = map[string]string{"y": "years", "M": "months", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}

// unquote strips one pair of quotes from a literal as written.
func unquote(s string) string {
	if len(s) >= 2 && (s[0] == '\'' || s[0] == '"') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// signedForm returns the call with returnSignedValue set to true, or ""
// when the call is already signed or its sign cannot be told from the
// text (a field gives it).
func (dc datediffComparison) signedForm() string {
	base := dc.args
	switch len(dc.args) {
	case 3:
	case 4, 5:
		last := strings.ToLower(unquote(dc.args[len(dc.args)-1]))
		switch {
		case len(dc.args) == 4 && (last == "ymd" || last == "mdy" || last == "dmy"):
		case last == "true" || last == "1":
			return ""
		case last == "false" || last == "0":
			base = dc.args[:len(dc.args)-1]
		default:
			return ""
		}
	default:
		return ""
	}
	return "datediff(" + strings.Join(base, ", ") + ", true)"
}

// checkDatediffSigns warns of each unsigned datediff compared with = or
// </<= against a positive number: datediff then measures the distance
// either way, so "= 7 days after the quit date" also fires 7 days before.
func (s *Study) checkDatediffSigns() Errors {
	var errs Errors
	for _, r := range s.Rules {
		if r.When == nil {
			continue
		}
		src := r.When.String()
		for _, dc := range datediffComparisons(src) {
			if msg := datediffSign(dc); msg != "" {
				errs = append(errs, &Error{Pos: r.atWhen(src, dc.pos), Rule: r.Name, Msg: "when: " + msg, Warning: true})
			}
		}
	}
	return errs
}

// datediffSign describes the sign trap of one comparison, or "".
func datediffSign(dc datediffComparison) string {
	if dc.n <= 0 {
		return ""
	}
	signed := dc.signedForm()
	if signed == "" {
		return ""
	}
	unit := unitNames[unquote(dc.args[2])]
	if unit == "" {
		unit = "units"
	}
	from, to := dc.args[0], dc.args[1]
	written := dc.call + " " + dc.op + " " + dc.lit
	why := "without returnSignedValue true, datediff counts the distance either way"
	switch dc.op {
	case "=", "==":
		return fmt.Sprintf("%s is also true when %s is %s %s before %s: %s; to mean only after, write %s %s %s",
			written, to, dc.lit, unit, from, why, signed, dc.op, dc.lit)
	case "<", "<=":
		upTo := "up to"
		if dc.op == "<" {
			upTo = "less than"
		}
		return fmt.Sprintf("%s is also true when %s is %s %s %s before %s: %s; to mean only after, write %s >= 0 and %s %s %s",
			written, to, upTo, dc.lit, unit, from, why, signed, signed, dc.op, dc.lit)
	}
	return ""
}

// gsmReplacements are GSM-7 stand-ins for characters word processors put
// in texts that would make a whole SMS UCS-2.
var gsmReplacements = map[rune]string{
	'‘': "'", '’': "'", '‚': "'", '′': "'",
	'“': `"`, '”': `"`, '„': `"`, '″': `"`,
	'–': "-", '—': "-", '‑': "-", '−': "-",
	'…': "...", '\u00a0': " ", '\u2009': " ", '\u202f': " ", '•': "-",
}

// maxOddCharacters is how many characters without a GSM-7 form check
// names one by one; a text with more (one written in another script) is
// meant to be UCS-2 and only its encoding is reported.
const maxOddCharacters = 3

// checkSMSEncoding warns of the characters that turn an SMS template from
// GSM-7 into UCS-2, which holds 70 characters a segment instead of 160,
// naming each with its position and a GSM-7 replacement where one exists.
func (s *Study) checkSMSEncoding() Errors {
	var errs Errors
	seen := map[string]bool{}
	for _, r := range s.Rules {
		if r.SMS == nil || len(r.tmplFiles) == 0 || seen[r.tmplFiles[0]] {
			continue
		}
		file := r.tmplFiles[0]
		seen[file] = true
		errs = append(errs, smsEncodingWarnings(file, r.SMS.Body.Source())...)
	}
	return errs
}

// smsEncodingWarnings checks one SMS body read from file.
func smsEncodingWarnings(file, body string) Errors {
	seg := templates.Count(body)
	if seg.Encoding != templates.UCS2 {
		return nil
	}
	type odd struct {
		r    rune
		line int
		col  int
	}
	var odds []odd
	allReplaceable := true
	var fixed strings.Builder
	line, col := 1, 1
	for _, c := range body {
		if templates.Count(string(c)).Encoding == templates.UCS2 {
			odds = append(odds, odd{c, line, col})
			rep, ok := gsmReplacements[c]
			allReplaceable = allReplaceable && ok
			fixed.WriteString(rep)
		} else {
			fixed.WriteRune(c)
		}
		col++
		if c == '\n' {
			line, col = line+1, 1
		}
	}
	if !allReplaceable && len(odds) > maxOddCharacters {
		return nil
	}
	gsm := ""
	if fs := templates.Count(fixed.String()); allReplaceable && fs.Encoding == templates.GSM7 {
		gsm = fmt.Sprintf(", %d as GSM-7 once every such character is replaced", fs.Count)
	}
	var errs Errors
	for _, o := range odds {
		todo := "remove it, or use a character of the GSM-7 alphabet"
		if rep, ok := gsmReplacements[o.r]; ok {
			todo = fmt.Sprintf("replace it with %s", rep)
			if rep == " " {
				todo = "replace it with an ordinary space"
			}
		}
		errs = append(errs, &Error{Pos: Pos{File: file, Line: o.line, Col: o.col}, Warning: true, Msg: fmt.Sprintf(
			"%q (U+%04X) makes the whole text UCS-2, 70 characters a segment instead of 160 (%d segment(s) before piping%s): %s",
			string(o.r), o.r, seg.Count, gsm, todo)})
	}
	return errs
}

// Warnings lists what does not stop nudge but likely is not what the
// coordinator meant: datediff comparisons that also fire before a date,
// characters that make an SMS template UCS-2, and reply matches that match
// STOP, START or HELP words. Sorted by position.
func (s *Study) Warnings() Errors {
	errs := append(s.checkDatediffSigns(), s.checkSMSEncoding()...)
	errs = append(errs, s.checkToleratedSyntax()...)
	errs = append(errs, s.checkReplyMatches()...)
	sortErrors(errs, append([]string{s.Config.Path}, s.Files...))
	return errs
}

// checkToleratedSyntax warns of the constructs REDCap accepts though its
// documentation never teaches them (==, && and ||) in each rule's
// condition, at their position, with the form to write instead.
func (s *Study) checkToleratedSyntax() Errors {
	var errs Errors
	for _, r := range s.Rules {
		if r.When == nil {
			continue
		}
		for _, n := range r.When.Notes() {
			pos := r.pos["when"]
			if r.whenAt != nil {
				pos = r.whenAt(n.Col - 1)
			}
			errs = append(errs, &Error{Pos: pos, Rule: r.Name, Warning: true,
				Msg: fmt.Sprintf("when: %s works but is not REDCap's documented syntax: write %s", n.Found, n.Canonical)})
		}
	}
	return errs
}
