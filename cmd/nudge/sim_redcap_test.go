package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nudge-study/nudge/engine/redcap"
)

// simProcess is `nudge sim redcap` running in the test: its announced environment and a way
// to stop it.
type simProcess struct {
	env    map[string]string
	stdout string
	stderr *bytes.Buffer
	stop   func() error
}

// startSimREDCap runs cmdSimREDCap until its announcement ends and parses the export lines.
func startSimREDCap(t *testing.T, args ...string) *simProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	sp := &simProcess{env: map[string]string{}, stderr: &bytes.Buffer{}}
	done := make(chan error, 1)
	go func() {
		err := cmdSimREDCap(ctx, args, pw, sp.stderr)
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	var out strings.Builder
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		line := lines.Text()
		out.WriteString(line + "\n")
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && strings.HasPrefix(line, "export ") {
			sp.env[k] = v
		}
		if line == "# serving until interrupted" {
			break
		}
	}
	go io.Copy(io.Discard, pr)
	sp.stdout = out.String()
	var once sync.Once
	var stopErr error
	sp.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(10 * time.Second):
				t.Error("the simulator did not stop")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { sp.stop() })
	if sp.env["NUDGE_SIM_REDCAP_URL"] == "" {
		t.Fatalf("no API URL announced (%v); stdout:\n%s\nstderr:\n%s", sp.stop(), sp.stdout, sp.stderr)
	}
	return sp
}

// copyFiles copies the named files of testdata/demo/redcap into dir.
func copyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "demo", "redcap", n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func simClient(t *testing.T, sp *simProcess, env string) *redcap.Client {
	t.Helper()
	c, err := redcap.New(sp.env["NUDGE_SIM_REDCAP_URL"], sp.env[env], redcap.WithRate(0))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The simulator serves the demo's two projects (one longitudinal with a repeating form) from
// their files to nudge's own client, keeps an import across a restart, writes the records
// file whole, and prints a generated token once and nowhere else.
func TestSimREDCapServesAndPersists(t *testing.T) {
	dir := t.TempDir()
	copyFiles(t, dir, "site_a.dictionary.csv", "site_a.records.json", "site_b.dictionary.csv", "site_b.records.json", "site_b.structure.json")
	t.Setenv("NUDGE_REDCAP_TOKEN_SITE_A", "")
	os.Unsetenv("NUDGE_REDCAP_TOKEN_SITE_A")
	args := []string{"--listen", "127.0.0.1:0", "--project", filepath.Join(dir, "site_a"), "--project", filepath.Join(dir, "site_b"),
		"--token-env", "site_b=SIM_TEST_TOKEN_B", "--user", "site_a=de_identified"}
	sp := startSimREDCap(t, args...)
	for _, env := range []string{"NUDGE_REDCAP_TOKEN_SITE_A", "SIM_TEST_TOKEN_B", "NUDGE_REDCAP_TOKEN_SITE_A_DE_IDENTIFIED"} {
		tok := sp.env[env]
		if len(tok) != 32 {
			t.Fatalf("%s not announced:\n%s", env, sp.stdout)
		}
		if n := strings.Count(sp.stdout, tok); n != 1 {
			t.Errorf("token of %s printed %d times", env, n)
		}
		if strings.Contains(sp.stderr.String(), tok) {
			t.Errorf("token of %s on stderr", env)
		}
	}
	ctx := context.Background()
	b := simClient(t, sp, "SIM_TEST_TOKEN_B")
	events, err := b.Events(ctx)
	if err != nil || len(events) != 3 {
		t.Fatalf("events = %v, %v", events, err)
	}
	rows, err := b.ExportRecords(ctx, redcap.ExportParams{Fields: []string{"cell", "sleep_hours"}})
	if err != nil || len(rows) == 0 {
		t.Fatalf("export: %d rows, %v", len(rows), err)
	}
	record := rows[0]["participant_id"]
	res, err := b.ImportRecords(ctx, []redcap.Row{{"participant_id": record, "redcap_event_name": "enrollment_arm_1", "given_name": "Changed"}})
	if err != nil || res.Imported != 1 {
		t.Fatalf("import: %+v, %v", res, err)
	}
	// De-identified rights drop the identifier fields the dictionary marks.
	deid := simClient(t, sp, "NUDGE_REDCAP_TOKEN_SITE_A_DE_IDENTIFIED")
	if _, err := deid.ExportRecords(ctx, redcap.ExportParams{Fields: []string{"mobile_phone"}}); err == nil {
		t.Error("a de-identified token exported an identifier field")
	}
	if err := sp.stop(); err != nil {
		t.Fatal(err)
	}

	// The records file holds the import, is valid JSON and left no temporary file behind.
	saved, err := os.ReadFile(filepath.Join(dir, "site_b.records.json"))
	if err != nil || !bytes.Contains(saved, []byte(`"given_name":"Changed"`)) || !bytes.Contains(saved, []byte(`"redcap_repeat_instance":1`)) {
		t.Fatalf("site_b.records.json after the import (%v):\n%.400s", err, saved)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}

	// Restarted with the same token from the environment, the import is still there and no
	// token is printed for that project.
	t.Setenv("SIM_TEST_TOKEN_B", sp.env["SIM_TEST_TOKEN_B"])
	sp2 := startSimREDCap(t, args...)
	if strings.Contains(sp2.stdout, sp.env["SIM_TEST_TOKEN_B"]) || sp2.env["SIM_TEST_TOKEN_B"] != "" {
		t.Errorf("a token taken from the environment was printed:\n%s", sp2.stdout)
	}
	sp2.env["SIM_TEST_TOKEN_B"] = sp.env["SIM_TEST_TOKEN_B"]
	rows, err = simClient(t, sp2, "SIM_TEST_TOKEN_B").ExportRecords(ctx, redcap.ExportParams{Records: []string{record}, Fields: []string{"given_name"}, Events: []string{"enrollment_arm_1"}})
	if err != nil || len(rows) != 1 || rows[0]["given_name"] != "Changed" {
		t.Errorf("after a restart: %v, %v", rows, err)
	}
}

// A project directory with a CSV records file, a tokens file and project information.
func TestSimREDCapDirectoryProject(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("dictionary.csv", "field_name,form_name,field_type,field_label,select_choices_or_calculations,text_validation_type_or_show_slider_number,identifier\n"+
		"record_id,contact,text,ID,,,\nmobile,contact,text,Mobile,,phone,y\nstatus,contact,text,Status,,,\n")
	write("records.csv", "record_id,mobile,status,contact_complete\n1,+14155550101,,2\n2,+14155550102,,\n")
	write("project.json", `{"project_id": 77, "project_title": "Pilot", "locked_records": ["2"]}`)
	const full, partial = "0123456789ABCDEF0123456789ABCDEF", "FEDCBA9876543210FEDCBA9876543210"
	write("tokens.json", `{"token": "`+full+`", "users": [{"token": "`+partial+`", "export": "remove_identifiers"}]}`)

	sp := startSimREDCap(t, "--project", dir)
	if strings.Contains(sp.stdout, full) || strings.Contains(sp.stdout, partial) || !strings.Contains(sp.stdout, `project 77 "Pilot", classic, 2 records`) {
		t.Errorf("announcement:\n%s", sp.stdout)
	}
	sp.env["T"] = full
	c := simClient(t, sp, "T")
	ctx := context.Background()
	res, err := c.ImportRecords(ctx, []redcap.Row{{"record_id": "1", "status": "delivered"}, {"record_id": "2", "status": "delivered"}})
	if err != nil || res.Imported != 1 || len(res.Rejected) != 1 || !strings.Contains(res.Rejected[0].Reason, "locked") {
		t.Fatalf("import with record 2 locked: %+v, %v", res, err)
	}
	sp.stop()
	saved, err := os.ReadFile(filepath.Join(dir, "records.csv"))
	// Record 2 had data but no form status: the import of its data set it to "0", as REDCap does.
	want := "record_id,mobile,status,contact_complete\n1,+14155550101,delivered,2\n2,+14155550102,,0\n"
	if err != nil || string(saved) != want {
		t.Errorf("records.csv = %q, %v; want %q", saved, err, want)
	}
}

func TestSimREDCapRefusals(t *testing.T) {
	dir := t.TempDir()
	copyFiles(t, dir, "site_a.dictionary.csv", "site_a.records.json")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"all interfaces", []string{"--listen", "0.0.0.0:0", "--project", filepath.Join(dir, "site_a")}, "loopback address only"},
		{"no host", []string{"--listen", ":8091", "--project", filepath.Join(dir, "site_a")}, "loopback address only"},
		{"public address", []string{"--listen", "192.0.2.1:8091", "--project", filepath.Join(dir, "site_a")}, "loopback address only"},
		{"no project files", []string{"--project", filepath.Join(dir, "nope")}, "neither a directory nor the prefix"},
		{"same project twice", []string{"--project", filepath.Join(dir, "site_a"), "--project", dir}, "a second project named site_a"},
		{"unknown rights", []string{"--project", dir, "--user", "site_a=everything"}, "unknown export right"},
		{"user of no project", []string{"--project", dir, "--user", "site_z=full"}, "no --project is named site_z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := cmdSimREDCap(context.Background(), tt.args, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
	var out, errOut bytes.Buffer
	if err := cmdSimREDCap(context.Background(), nil, &out, &errOut); err != errUsage {
		t.Errorf("no project: %v", err)
	}
}
