package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nudge-study/nudge/rules"
)

const simAllUsage = `Usage: nudge sim all --config nudge.yaml [--dir DIR] [--redcap ADDR] [--twilio ADDR] [--smtp ADDR]

Starts the REDCap, Twilio and SMTP simulators a study config needs, on
loopback, and prints the environment to export so that nudge check, preview,
run and serve run unchanged against them. Each REDCap project is served from
the config's dictionary file and the records file beside it (NAME.records.json
or .csv, copied into DIR so the study's files are never changed); texts are
journalled and emails kept in DIR (default .nudge-sim beside the config).
`

// cmdSimAll runs every simulator a study config needs until ctx ends.
func cmdSimAll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge sim all", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, simAllUsage) }
	config := fs.String("config", "nudge.yaml", "the study config")
	dir := fs.String("dir", "", "the simulators' folder (default .nudge-sim beside the config)")
	redcapAddr := fs.String("redcap", "127.0.0.1:8091", "the REDCap simulator's loopback address")
	twilioAddr := fs.String("twilio", "127.0.0.1:8092", "the Twilio simulator's loopback address")
	smtpAddr := fs.String("smtp", "127.0.0.1:2525", "the SMTP simulator's loopback address")
	if err := parse(fs, args); err != nil {
		return err
	}
	study, err := loadStudy(*config, stdout)
	if err != nil {
		return err
	}
	cfg := study.Config
	if *dir == "" {
		*dir = filepath.Join(cfg.Dir, ".nudge-sim")
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}

	type sim struct {
		name string
		run  func(context.Context, []string, io.Writer, io.Writer) error
		args []string
	}
	redcapArgs := []string{"--listen", *redcapAddr}
	tokenUnset := map[string]bool{} // the REDCap simulator generates these
	for _, p := range cfg.Projects {
		tokenUnset[p.TokenEnv] = os.Getenv(p.TokenEnv) == ""
		prefix, err := simProjectFiles(p, *dir)
		if err != nil {
			return err
		}
		redcapArgs = append(redcapArgs, "--project", prefix, "--token-env", filepath.Base(prefix)+"="+p.TokenEnv)
	}
	sims := []sim{{"redcap", cmdSimREDCap, redcapArgs}}
	var extra []string // exports sim all adds itself
	if t := cfg.Twilio; t != nil {
		args := []string{"--listen", *twilioAddr, "--journal", filepath.Join(*dir, "twilio.journal.jsonl")}
		sid := os.Getenv(t.AccountSIDEnv)
		if !regexp.MustCompile(`^AC[0-9A-Za-z]+$`).MatchString(sid) {
			sid = simAccountSID
			extra = append(extra, fmt.Sprintf("export %s=%s", t.AccountSIDEnv, sid))
		}
		args = append(args, "--account-sid", sid)
		if os.Getenv(t.AuthTokenEnv) == "" {
			// The simulator reads the token from the config's own variable.
			if err := os.Setenv(t.AuthTokenEnv, simAuthToken); err != nil {
				return err
			}
			extra = append(extra, fmt.Sprintf("export %s=%s", t.AuthTokenEnv, simAuthToken))
		}
		args = append(args, "--auth-token-env", t.AuthTokenEnv)
		if faults := filepath.Join(cfg.Dir, "twilio.json"); fileExists(faults) {
			args = append(args, "--faults", faults)
		}
		pools := map[string][]string{}
		for number, service := range cfg.Services() {
			pools[service] = append(pools[service], number)
		}
		for service, numbers := range pools {
			sort.Strings(numbers)
			args = append(args, "--service", service+"="+strings.Join(numbers, ","))
		}
		sims = append(sims, sim{"twilio", cmdSimTwilio, args})
	}
	if cfg.SMTP != nil {
		sims = append(sims, sim{"smtp", cmdSimSMTP, []string{"--listen", *smtpAddr, "--maildir", filepath.Join(*dir, "mail")}})
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(sims))
	// The Twilio simulator names generic variables; sim all exports the
	// config's own instead (extra).
	out := &exportLines{seen: map[string]string{}, changed: make(chan struct{}, 16),
		skip: map[string]bool{"TWILIO_ACCOUNT_SID": true, "TWILIO_AUTH_TOKEN": true}}
	for _, s := range sims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.run(ctx, s.args, out, stderr); err != nil {
				errs <- fmt.Errorf("nudge sim %s: %w", s.name, err)
				cancel()
			}
		}()
	}
	defer wg.Wait()

	// Wait until each simulator has said where it listens, and the REDCap
	// simulator has printed the tokens it generated.
	want := []string{rules.EnvSimREDCap}
	for _, p := range cfg.Projects {
		if tokenUnset[p.TokenEnv] {
			want = append(want, p.TokenEnv)
		}
	}
	if cfg.Twilio != nil {
		want = append(want, rules.EnvSimTwilio)
	}
	if cfg.SMTP != nil {
		want = append(want, rules.EnvSimSMTP)
	}
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for !out.has(want...) {
		select {
		case err := <-errs:
			return err
		case <-deadline.C:
			return errors.New("the simulators did not start within 30 s")
		case <-out.changed:
		}
	}
	fmt.Fprintf(stdout, "# simulators for %s (folder %s); stop them with Ctrl-C\n", *config, *dir)
	for _, l := range append(out.exports(), extra...) {
		fmt.Fprintln(stdout, l)
	}
	select {
	case <-ctx.Done():
	case err := <-errs:
		return err
	}
	return nil
}

// simProjectFiles copies a project's data dictionary and the records and
// layout files beside it (NAME.records.json, NAME.structure.json, …) into
// dir the first time, so the simulator saves its imports there and never in
// the study's own files, and returns the prefix `nudge sim redcap` takes.
func simProjectFiles(p rules.Project, dir string) (string, error) {
	if p.Dictionary == "" {
		return "", fmt.Errorf("project %s has no dictionary: in nudge.yaml: download its data dictionary (CSV) from REDCap and name it there to simulate the project", p.Name)
	}
	src := strings.TrimSuffix(p.Dictionary, ".dictionary.csv")
	if src == p.Dictionary {
		return "", fmt.Errorf("project %s: the dictionary file %s must be named NAME.dictionary.csv for the simulator (records then go in NAME.records.json beside it)", p.Name, p.Dictionary)
	}
	dst := filepath.Join(dir, p.Name)
	for _, suffix := range []string{".dictionary.csv", ".records.json", ".records.csv", ".structure.json", ".project.json"} {
		if fileExists(dst+suffix) || !fileExists(src+suffix) {
			continue
		}
		b, err := os.ReadFile(src + suffix)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			return "", err
		}
	}
	return dst, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// exportLines collects the `export NAME=VALUE` lines the simulators print
// (comments and other lines are dropped).
type exportLines struct {
	mu      sync.Mutex
	buf     []byte
	order   []string
	seen    map[string]string
	skip    map[string]bool // names not to pass on
	changed chan struct{}
}

func (x *exportLines) Write(p []byte) (int, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.buf = append(x.buf, p...)
	complete := strings.LastIndexByte(string(x.buf), '\n') + 1
	rest := x.buf[complete:]
	sc := bufio.NewScanner(strings.NewReader(string(x.buf[:complete])))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, _, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !strings.HasPrefix(line, "export ") || !ok || x.skip[name] {
			continue
		}
		if _, dup := x.seen[name]; !dup {
			x.order = append(x.order, name)
		}
		x.seen[name] = line
	}
	x.buf = append([]byte(nil), rest...)
	select {
	case x.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (x *exportLines) has(names ...string) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, n := range names {
		if _, ok := x.seen[n]; !ok {
			return false
		}
	}
	return true
}

func (x *exportLines) exports() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	out := make([]string, len(x.order))
	for i, n := range x.order {
		out[i] = x.seen[n]
	}
	return out
}
