package main

import (
	"fmt"
	"io"

	"github.com/nudge-study/nudge/templates"
)

// cmdCheck validates the study offline, like promtool check rules.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs, c := newFlags("check", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	study, err := loadStudy(c.config, stdout)
	if err != nil {
		return err
	}
	checked := 0
	for _, p := range study.Config.Projects {
		if p.Dictionary != "" {
			checked++
		}
	}
	fmt.Fprintf(stdout, "%s: SUCCESS: %d rule(s) in %d file(s); fields checked against %d of %d data dictionaries\n",
		c.config, len(study.Rules), len(study.Files), checked, len(study.Config.Projects))
	for _, r := range study.Rules {
		if r.SMS == nil {
			continue
		}
		seg := templates.Count(r.SMS.Body.Source())
		fmt.Fprintf(stdout, "  %s: template %s is %s, %d segment(s) before piping\n", r.Name, r.SMS.Name, seg.Encoding, seg.Count)
	}
	return nil
}
