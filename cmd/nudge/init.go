package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules/dict"
)

const initUsage = `Usage: nudge init --redcap-url URL --token-env VAR [--dir DIR] [--name NAME] [--force]

Reads a REDCap project through its API (the token comes from the environment
variable VAR) and writes a study folder for it into DIR (default: the current
directory): nudge.yaml, the data dictionary (and, for a longitudinal project,
its events and instrument-event mappings) under redcap/, an example rule in
rules/ and its template in templates/ built from the project's own phone,
email and consent fields, and write_back_fields.csv: the REDCap fields to
create for the example rule's status. Existing files are never overwritten
unless --force is given. Then run nudge check --config DIR/nudge.yaml.
`

// initClientOptions are added to the REDCap client of `nudge init`; tests
// lift its rate limit.
var initClientOptions []redcap.Option

// initProject is what `nudge init` learned of a REDCap project.
type initProject struct {
	URL, TokenEnv string
	Info          redcap.Project
	Metadata      []map[string]string
	Dict          *dict.Dictionary
	Events        []redcap.Event
	FormEvents    []redcap.FormEvent
	Repeating     []redcap.Repeating
	// Surveys lists the instruments enabled as surveys; SurveysKnown is
	// false when REDCap would not say (the API user lacks the Survey
	// Distribution Tools right).
	Surveys      []string
	SurveysKnown bool
}

// cmdInit runs `nudge init`: a study folder from a REDCap project.
func cmdInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, initUsage) }
	apiURL := fs.String("redcap-url", "", "the project's REDCap API URL, e.g. https://redcap.example.edu/api/")
	tokenEnv := fs.String("token-env", "", "the environment variable holding the project's API token")
	dir := fs.String("dir", ".", "the folder to write the study into")
	name := fs.String("name", "", "the project's name in nudge.yaml (default: from the project's title)")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *apiURL == "" || *tokenEnv == "" {
		fmt.Fprint(stderr, "nudge init: give --redcap-url and --token-env\n\n"+initUsage)
		return errUsage
	}
	if !envNameRE.MatchString(*tokenEnv) {
		return &exitError{code: 2, err: fmt.Errorf("--token-env %q: give the name of an environment variable (e.g. REDCAP_TOKEN), not the token itself", redactMaybeToken(*tokenEnv))}
	}
	if *name != "" && !projectNameRE.MatchString(*name) {
		return &exitError{code: 2, err: fmt.Errorf("--name %q: use lowercase letters, digits, _ and - (e.g. site_a)", *name)}
	}
	token := strings.TrimSpace(os.Getenv(*tokenEnv))
	if token == "" {
		return fmt.Errorf("the environment variable %s is not set: export %s=<the project's API token> (REDCap → API) and run nudge init again", *tokenEnv, *tokenEnv)
	}
	p, err := fetchInitProject(ctx, *apiURL, token, *tokenEnv)
	if err != nil {
		return err
	}
	files, steps := buildInit(p, initOptions{Name: *name, Zone: machineZone(), Today: time.Now()})
	if err := writeInitFiles(*dir, files, *force); err != nil {
		return err
	}
	for _, f := range files {
		fmt.Fprintf(stdout, "wrote %s\n", filepath.Join(*dir, f.Path))
	}
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, steps.render(*dir))
	return nil
}

var (
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	projectNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	hexTokenRE    = regexp.MustCompile(`[0-9A-Fa-f]{32}`)
)

// redactMaybeToken hides what looks like an API token pasted where a
// variable name was due.
func redactMaybeToken(s string) string { return hexTokenRE.ReplaceAllString(s, "[token]") }

// fetchInitProject reads the project's information, data dictionary,
// structure and surveys through the API.
func fetchInitProject(ctx context.Context, apiURL, token, tokenEnv string) (*initProject, error) {
	c, err := redcap.New(apiURL, token, initClientOptions...)
	if err != nil {
		return nil, err
	}
	p := &initProject{URL: apiURL, TokenEnv: tokenEnv}
	if p.Info, err = c.Project(ctx); err != nil {
		return nil, fmt.Errorf("reading the project's information: %w", err)
	}
	if p.Metadata, err = c.MetadataRows(ctx); err != nil {
		return nil, fmt.Errorf("reading the data dictionary: %w", err)
	}
	if p.Dict, err = dict.FromMetadata(p.Metadata); err != nil {
		return nil, err
	}
	if p.Info.Longitudinal {
		if p.Events, err = c.Events(ctx); err != nil {
			return nil, fmt.Errorf("reading the events: %w", err)
		}
		if p.FormEvents, err = c.FormEvents(ctx); err != nil {
			return nil, fmt.Errorf("reading the instrument-event mappings: %w", err)
		}
	}
	if p.Info.HasRepeating {
		if p.Repeating, err = c.Repeating(ctx); err != nil {
			return nil, fmt.Errorf("reading the repeating instruments: %w", err)
		}
	}
	p.SurveysKnown = true
	for _, form := range p.Dict.Forms() {
		event := ""
		if p.Info.Longitudinal {
			if event = p.firstEvent(form); event == "" {
				continue // designated for no event: no survey link can name it
			}
		}
		ok, err := c.IsSurvey(ctx, form, event)
		var ae *redcap.APIError
		if errors.As(err, &ae) {
			// No Survey Distribution Tools right, or surveys not enabled
			// in the project: REDCap does not say which forms are surveys.
			p.Surveys, p.SurveysKnown = nil, false
			break
		}
		if err != nil {
			return nil, fmt.Errorf("asking whether %s is a survey: %w", form, err)
		}
		if ok {
			p.Surveys = append(p.Surveys, form)
		}
	}
	return p, nil
}

// firstEvent returns the first event (in the project's order) a form is
// designated for, "" when none.
func (p *initProject) firstEvent(form string) string {
	for _, ev := range p.Events {
		if p.designated(ev.UniqueName, form) {
			return ev.UniqueName
		}
	}
	return ""
}

// designated reports whether a form is designated for an event.
func (p *initProject) designated(event, form string) bool {
	for _, fe := range p.FormEvents {
		if fe.Event == event && fe.Form == form {
			return true
		}
	}
	return false
}

// repeats reports whether a form repeats in an event ("" in a classic project).
func (p *initProject) repeats(event, form string) bool {
	for _, r := range p.Repeating {
		if r.Event == event && (r.Form == form || r.Form == "") {
			return true
		}
	}
	return false
}

// initFile is one file `nudge init` writes, relative to the study folder.
type initFile struct {
	Path, Content string
}

// writeInitFiles writes the files into dir; without force it writes
// nothing when any of them exists.
func writeInitFiles(dir string, files []initFile, force bool) error {
	if !force {
		var there []string
		for _, f := range files {
			p := filepath.Join(dir, f.Path)
			if _, err := os.Lstat(p); err == nil {
				there = append(there, p)
			}
		}
		if len(there) > 0 {
			return fmt.Errorf("%s already exist(s): nudge init wrote nothing; move them away, choose another --dir, or give --force to overwrite them",
				strings.Join(there, ", "))
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(f.Content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// machineZone returns the machine's IANA time zone name, "" when it has
// none (TZ unset and /etc/localtime not a link into a zoneinfo folder).
func machineZone() string {
	candidates := []string{strings.TrimPrefix(os.Getenv("TZ"), ":")}
	if link, err := os.Readlink("/etc/localtime"); err == nil {
		if _, after, ok := strings.Cut(link, "zoneinfo/"); ok {
			candidates = append(candidates, after)
		}
	}
	for _, z := range candidates {
		if ianaZone(z) {
			return z
		}
	}
	return ""
}

// ianaZone reports whether z is an IANA zone name such as
// America/Chicago (not UTC, Local or an abbreviation).
func ianaZone(z string) bool {
	if !strings.Contains(z, "/") || strings.HasPrefix(z, "/") || strings.HasPrefix(z, "Etc/") {
		return false
	}
	_, err := time.LoadLocation(z)
	return err == nil
}
