package rules

import (
	"fmt"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/templates"
)

// CheckSurveys checks every survey link the templates pipe
// ([survey-url:…], [survey-link:…]): its instrument is one of the
// project's, and it is enabled as a survey. surveys gives, by project and
// instrument, whether REDCap says the instrument is a survey; an instrument
// missing there is checked against the project's `surveys:` list in the
// config, and without one only for its name. Projects missing from dicts
// are not checked. A reply cannot pipe a survey link: it answers at once,
// with no REDCap call.
func (s *Study) CheckSurveys(dicts map[string]*dict.Dictionary, surveys map[string]map[string]bool) Errors {
	var errs Errors
	for _, p := range s.Config.Projects {
		d := dicts[p.Name]
		if d == nil {
			continue
		}
		forms := d.Forms()
		for _, r := range s.Rules {
			if r.Project != p.Name {
				continue
			}
			for _, ref := range r.Surveys() {
				pos := Pos{File: ref.File, Line: ref.Line, Col: ref.Col}
				if !contains(forms, ref.Instrument) {
					errs = append(errs, &Error{Pos: pos, Rule: r.Name, Msg: fmt.Sprintf(
						"%s: no instrument %s in project %s%s: use the instrument's unique name (the data dictionary's Form Name)",
						ref, ref.Instrument, p.Name, didYouMean(ref.Instrument, forms, "%s"))})
					continue
				}
				is, known := surveys[p.Name][ref.Instrument]
				how := "REDCap refuses survey links for it"
				if !known && p.Surveys != nil {
					is, known = contains(p.Surveys, ref.Instrument), true
					how = fmt.Sprintf("it is not in the surveys list of project %s at %s:%d:%d", p.Name, p.surveysPos.File, p.surveysPos.Line, p.surveysPos.Col)
				}
				if known && !is {
					errs = append(errs, &Error{Pos: pos, Rule: r.Name, Msg: fmt.Sprintf(
						"%s: instrument %s is not a survey (%s): enable it as a survey in REDCap's Online Designer and list it under surveys: in nudge.yaml, or link to another instrument",
						ref, ref.Instrument, how)})
				}
			}
		}
		for _, rep := range s.Replies {
			if rep.Project != p.Name || rep.Reply == nil {
				continue
			}
			for _, ref := range rep.Reply.Surveys() {
				errs = append(errs, &Error{Pos: rep.pos["reply"], Msg: fmt.Sprintf(
					"reply %s: %s: a reply cannot pipe a survey link; send it with a rule's template", rep.Name, ref)})
			}
		}
	}
	sortErrors(errs, append([]string{s.Config.Path}, s.Files...))
	return errs
}

// Surveys lists the survey links of every part of the rule's template.
func (r *Rule) Surveys() []templates.SurveyRef {
	var out []templates.SurveyRef
	if r.SMS != nil && r.SMS.Body != nil {
		out = append(out, r.SMS.Body.Surveys()...)
	}
	if r.Email != nil {
		for _, t := range []*templates.Text{r.Email.Subject, r.Email.Text, r.Email.HTML} {
			if t != nil {
				out = append(out, t.Surveys()...)
			}
		}
	}
	return out
}
