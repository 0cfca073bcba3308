package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/rules"
)

const simREDCapUsage = `Usage: nudge sim redcap --listen ADDR --project PATH [--project PATH ...]
                        [--token-env PROJECT=VAR ...] [--user PROJECT=RIGHTS ...]

Serves REDCap projects from files on a loopback address until interrupted.
PATH is a directory holding dictionary.csv (with records.json or records.csv,
structure.json, project.json and tokens.json beside it), or the prefix
DIR/NAME of NAME.dictionary.csv, NAME.records.json, ... Imports are saved back
to the records file. A project's full-rights token comes from its tokens.json,
else from the environment variable --token-env names (default
NUDGE_REDCAP_TOKEN_<PROJECT>), else it is generated and printed once. --user
generates a further token with the export rights full, remove_identifiers,
de_identified or no_access.
`

// repeated is a flag that may be given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ", ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// cmdSimREDCap runs `nudge sim redcap`: the REDCap simulator as a process, serving the
// projects of the given files until ctx ends.
func cmdSimREDCap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge sim redcap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, simREDCapUsage) }
	listen := fs.String("listen", "127.0.0.1:0", "the loopback address to serve on (port 0: any free port)")
	var projects, tokenEnvs, users repeated
	fs.Var(&projects, "project", "a project directory or files prefix (repeatable)")
	fs.Var(&tokenEnvs, "token-env", "PROJECT=VAR: the environment variable of a project's token (repeatable)")
	fs.Var(&users, "user", "PROJECT=RIGHTS: generate a further token with these export rights (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if len(projects) == 0 {
		fmt.Fprint(stderr, "nudge sim redcap: give at least one --project\n\n"+simREDCapUsage)
		return errUsage
	}
	if err := checkLoopback(*listen); err != nil {
		return err
	}

	sim, err := loadSimProjects(projects, tokenEnvs, users)
	if err != nil {
		return err
	}
	srv := redcaptest.New(sim.projects...)
	for _, sp := range sim.list {
		if err := srv.Load(sp.project.Token, sp.rows); err != nil {
			return fmt.Errorf("%s: %w", sp.files.Records, err)
		}
		for _, u := range sp.extra {
			if err := srv.AddUser(sp.project.Token, u.token, u.rights); err != nil {
				return err
			}
		}
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", *listen, err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	apiURL := "http://" + ln.Addr().String() + "/api/"
	sim.announce(stdout, srv, apiURL)

	select {
	case <-ctx.Done():
	case err := <-served:
		return fmt.Errorf("serving the REDCap simulator: %w", err)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil {
		return fmt.Errorf("stopping the REDCap simulator: %w", err)
	}
	return nil
}

// checkLoopback refuses a listen address that is not on the loopback interface: the
// simulator has no authentication worth the name and holds participants' test data.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w (write HOST:PORT, e.g. 127.0.0.1:8091)", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q: the simulator serves on a loopback address only (127.0.0.1 or ::1), e.g. --listen 127.0.0.1:8091", addr)
}

// simProject is one project of `nudge sim redcap`, with where its token comes from.
type simProject struct {
	files    redcaptest.Files
	project  *redcaptest.Project
	rows     []map[string]string
	tokenEnv string
	// tokenFrom says where the full-rights token comes from: "file", "env" or "generated".
	tokenFrom string
	extra     []simUser
}

// simUser is a further token generated at the user's request.
type simUser struct {
	env    string
	token  string
	rights redcaptest.Rights
}

type simSet struct {
	list     []*simProject
	projects []*redcaptest.Project
}

var envUnsafe = regexp.MustCompile(`[^A-Z0-9_]+`)

func defaultTokenEnv(name string) string {
	return "NUDGE_REDCAP_TOKEN_" + envUnsafe.ReplaceAllString(strings.ToUpper(name), "_")
}

// loadSimProjects reads the projects and settles their tokens.
func loadSimProjects(paths, tokenEnvs, users []string) (*simSet, error) {
	set := &simSet{}
	byName := map[string]*simProject{}
	for i, path := range paths {
		f, err := redcaptest.FindFiles(path)
		if err != nil {
			return nil, err
		}
		if _, dup := byName[f.Name]; dup {
			return nil, fmt.Errorf("--project %s: a second project named %s; give each project its own name", path, f.Name)
		}
		p, rows, err := redcaptest.LoadFiles(f, 1001+i)
		if err != nil {
			return nil, err
		}
		sp := &simProject{files: f, project: p, rows: rows, tokenEnv: defaultTokenEnv(f.Name)}
		byName[f.Name] = sp
		set.list = append(set.list, sp)
		set.projects = append(set.projects, p)
	}
	named := func(flagName, v string) (*simProject, string, error) {
		name, val, ok := strings.Cut(v, "=")
		sp := byName[name]
		if !ok || val == "" {
			return nil, "", fmt.Errorf("--%s %q: write PROJECT=VALUE", flagName, v)
		}
		if sp == nil {
			return nil, "", fmt.Errorf("--%s %q: no --project is named %s", flagName, v, name)
		}
		return sp, val, nil
	}
	for _, v := range tokenEnvs {
		sp, env, err := named("token-env", v)
		if err != nil {
			return nil, err
		}
		sp.tokenEnv = env
	}
	for _, sp := range set.list {
		env := os.Getenv(sp.tokenEnv) // set but empty counts as unset
		ok := env != ""
		switch {
		case sp.project.Token != "":
			sp.tokenFrom = "file"
		case ok && redcapTokenRE.MatchString(env):
			sp.project.Token, sp.tokenFrom = env, "env"
		case ok:
			return nil, fmt.Errorf("environment variable %s does not hold a REDCap API token (32 hexadecimal characters): unset it to have one generated", sp.tokenEnv)
		default:
			sp.project.Token, sp.tokenFrom = newSimToken(), "generated"
		}
	}
	for _, v := range users {
		sp, rights, err := named("user", v)
		if err != nil {
			return nil, err
		}
		r, err := redcaptest.ParseRight(rights)
		if err != nil {
			return nil, fmt.Errorf("--user %q: %w", v, err)
		}
		env := sp.tokenEnv + "_" + strings.ToUpper(rights)
		if n := len(sp.extra); n > 0 {
			env += fmt.Sprintf("_%d", n+1)
		}
		sp.extra = append(sp.extra, simUser{env: env, token: newSimToken(), rights: redcaptest.Rights{Default: r}})
	}
	seen := map[string]string{}
	for _, sp := range set.list {
		toks := []string{sp.project.Token}
		for t := range sp.project.Users {
			toks = append(toks, t)
		}
		for _, t := range toks {
			if other, dup := seen[strings.ToUpper(t)]; dup {
				return nil, fmt.Errorf("projects %s and %s share an API token: give each its own in its tokens.json", other, sp.files.Name)
			}
			seen[strings.ToUpper(t)] = sp.files.Name
		}
	}
	return set, nil
}

var redcapTokenRE = regexp.MustCompile(`^[0-9A-Fa-f]{32}$`)

func newSimToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

// announce prints the API URL, each project and the environment to export. Only generated
// tokens are printed, and only here.
func (set *simSet) announce(w io.Writer, srv *redcaptest.Server, apiURL string) {
	fmt.Fprintf(w, "# nudge sim redcap: REDCap %s API at %s\n", redcaptest.Version, apiURL)
	for _, sp := range set.list {
		p := sp.project
		kind := "classic"
		if p.Longitudinal() {
			kind = "longitudinal"
		}
		ids := map[string]bool{}
		idField := p.Dict.RecordID()
		for _, r := range srv.Export(p.Token) {
			ids[r[idField]] = true
		}
		fmt.Fprintf(w, "# %s: project %d %q, %s, %d records; imports are saved to %s\n", sp.files.Name, p.ID, p.Title, kind, len(ids), sp.files.Records)
	}
	fmt.Fprintf(w, "export %s=%s\n", rules.EnvSimREDCap, apiURL)
	for _, sp := range set.list {
		switch sp.tokenFrom {
		case "generated":
			fmt.Fprintf(w, "export %s=%s\n", sp.tokenEnv, sp.project.Token)
		case "env":
			fmt.Fprintf(w, "# %s: the token already in the environment\n", sp.tokenEnv)
		default:
			fmt.Fprintf(w, "# %s: the token in %s\n", sp.tokenEnv, sp.files.Tokens)
		}
		for _, u := range sp.extra {
			fmt.Fprintf(w, "export %s=%s\n", u.env, u.token)
		}
	}
	fmt.Fprintln(w, "# serving until interrupted")
}
