package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/templates"
)

// Exit codes of nudge check, as promtool's: problems that stop nudge are
// errors; warnings alone do not stop it but still fail the check.
const (
	checkClean    = 0
	checkErrors   = 1
	checkWarnings = 3
)

// checkProblem is one problem as --json prints it.
type checkProblem struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Col      int    `json:"col"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// cmdCheck validates the study offline, like promtool check rules: every
// problem at FILE:LINE:COL, then exit 0 when there is none, 1 when there are
// errors and 3 when there are warnings only. With --json it prints the
// problems as a JSON list instead.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("check", stderr)
	asJSON := fs.Bool("json", false, "print the problems as a JSON list of {file, line, col, severity, message}")
	if err := parse(fs, args); err != nil {
		return err
	}
	study, problems := checkStudy(c.config)
	nErr, nWarn := 0, 0
	for _, p := range problems {
		if p.Warning {
			nWarn++
		} else {
			nErr++
		}
	}
	code := checkClean
	switch {
	case nErr > 0:
		code = checkErrors
	case nWarn > 0:
		code = checkWarnings
	}
	if *asJSON {
		list := make([]checkProblem, len(problems))
		for i, p := range problems {
			msg := p.Msg
			if p.Rule != "" {
				msg = fmt.Sprintf("rule %q: %s", p.Rule, p.Msg)
			}
			list[i] = checkProblem{File: p.Pos.File, Line: p.Pos.Line, Col: p.Pos.Col, Severity: p.Severity(), Message: msg}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return err
		}
		if code == checkClean {
			return nil
		}
		return &exitError{code: code}
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p.Error())
	}
	if nErr > 0 || study == nil {
		return &exitError{code: code, err: fmt.Errorf("%s: %d error(s) and %d warning(s): fix each line above, then run nudge check again",
			c.config, nErr, nWarn)}
	}
	checked := 0
	for _, p := range study.Config.Projects {
		if p.Dictionary != "" {
			checked++
		}
	}
	verdict := "SUCCESS"
	if nWarn > 0 {
		verdict = fmt.Sprintf("SUCCESS with %d warning(s) (nudge would run; fix each warning above, or check exits 3)", nWarn)
	}
	fmt.Fprintf(stdout, "%s: %s: %d rule(s) in %d file(s); fields checked against %d of %d data dictionaries\n",
		c.config, verdict, len(study.Rules), len(study.Files), checked, len(study.Config.Projects))
	for _, r := range study.Rules {
		if r.SMS == nil {
			continue
		}
		src, links := withPreviewLinks(r.SMS.Body.Source())
		seg := templates.Count(src)
		note := ""
		if links > 0 {
			note = fmt.Sprintf(" (%d survey link(s) counted at a link's usual length)", links)
		}
		fmt.Fprintf(stdout, "  %s: template %s is %s, %d segment(s) before piping%s\n", r.Name, r.SMS.Name, seg.Encoding, seg.Count, note)
	}
	if code == checkClean {
		return nil
	}
	return &exitError{code: code}
}

// checkStudy loads the study and checks its fields against the data
// dictionaries the config names, returning every error and warning in file
// order. The study is nil when it could not be loaded.
func checkStudy(path string) (*rules.Study, rules.Errors) {
	study, err := rules.Load(path)
	var problems rules.Errors
	if err != nil && !errors.As(err, &problems) {
		return nil, rules.Errors{{Pos: rules.Pos{File: path}, Msg: err.Error()}}
	}
	if study == nil {
		return nil, problems
	}
	dicts, err := engine.LoadDictionaries(study.Config)
	if err != nil {
		problems = append(problems, &rules.Error{Pos: rules.Pos{File: path},
			Msg: err.Error() + ": fix the project's dictionary path, or export the data dictionary from REDCap again"})
	}
	problems = append(problems, study.CheckFields(dicts)...)
	for i := range study.Config.Projects {
		p := &study.Config.Projects[i]
		st, err := rules.ReadStructure(p)
		if err != nil {
			problems = append(problems, &rules.Error{Pos: p.Pos, Msg: err.Error() + ": download the file from REDCap's Project Setup page again, or fix its path"})
			continue
		}
		problems = append(problems, study.CheckStructure(p.Name, dicts[p.Name], st)...)
	}
	problems = append(problems, study.FallbackWarnings(dicts)...)
	problems = append(problems, study.CheckSurveys(dicts, nil)...)
	problems = append(problems, study.Warnings()...)
	problems.Sort()
	return study, problems
}

// surveyTagRE matches a survey link in a template's source, with its event
// prefix and instance suffix: [survey-url:x], [ev][survey-link:x:Text][2].
var surveyTagRE = regexp.MustCompile(`(?:\[[a-z0-9_]+\])?\[survey-(?:url|link):[^\]]*\](?:\[[a-z0-9-]+\])?`)

// withPreviewLinks replaces the survey links of a template's source by a
// link as long as a real one, so that the segments check counts reflect
// what is sent, and says how many it replaced.
func withPreviewLinks(src string) (string, int) {
	n := 0
	out := surveyTagRE.ReplaceAllStringFunc(src, func(string) string {
		n++
		return engine.PreviewSurveyLink
	})
	return out, n
}
