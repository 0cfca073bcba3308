package rules

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

// sharedDir is the folder of real REDCap dictionaries and exports beside
// the repository (never copied into it).
var sharedDir = filepath.Join("..", "..", "shared", "redcap-dictionaries")

func openShared(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open(filepath.Join(sharedDir, name))
	if os.IsNotExist(err) {
		t.Skipf("%s is absent", name)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// readExport reads a REDCap flat CSV export into rows.
func readExport(t *testing.T, name string) []map[string]string {
	t.Helper()
	lines, err := csv.NewReader(openShared(t, name)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]string
	for _, l := range lines[1:] {
		row := map[string]string{}
		for i, col := range lines[0] {
			row[col] = l[i]
		}
		rows = append(rows, row)
	}
	return rows
}

// TestRealRepeatingExport evaluates a rule over a real export of a project
// with a repeating instrument (bp): instance rows read their own fields and
// fall back to the base row for demographics.
func TestRealRepeatingExport(t *testing.T) {
	rows := readExport(t, "records/OuhscBbmc__REDCapR__inst__test-data__projects__repeating-instruments-sparse__data.csv")
	recs := GroupRows("record_id", rows)
	if len(recs) == 0 || recs[0].ID != "1" {
		t.Fatalf("records: %+v", recs)
	}
	rec := recs[0]
	when, err := logic.Parse("[bp_systolic] > 110 and [sex] = '0'")
	if err != nil {
		t.Fatal(err)
	}
	r := &Rule{Name: "bp-high", Instrument: "bp", When: when, Enabled: true, To: logic.Ref{Field: "first_name"}}
	ds := r.Evaluate(rec, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil)

	var instances int
	for _, row := range rec.Rows {
		if row.RepeatInstrument == "bp" {
			instances++
		}
	}
	if instances == 0 || len(ds) != instances {
		t.Fatalf("%d decisions for %d bp instances", len(ds), instances)
	}
	for _, d := range ds {
		sys, _ := d.Row.Value("bp_systolic")
		n, err := strconv.Atoi(sys)
		if err != nil {
			t.Fatalf("instance %d: bp_systolic %q", d.Row.Instance, sys)
		}
		sex, _ := rec.Rows[0].Value("sex")
		want := n > 110 && sex == "0"
		if d.Selected != want {
			t.Errorf("instance %d (bp_systolic %s): selected=%v, reason %q", d.Row.Instance, sys, d.Selected, d.Reason)
		}
		if !d.Selected && !strings.Contains(d.Reason, `[bp_systolic] is "`+sys+`"`) {
			t.Errorf("instance %d: reason %q does not show the value", d.Row.Instance, d.Reason)
		}
		if first, _ := rec.Rows[0].Value("first_name"); d.To != first || d.To == "" {
			t.Errorf("instance %d: To = %q, want the base row's first_name", d.Row.Instance, d.To)
		}
	}
}

// TestRealDictionaryCheck checks references against a real longitudinal
// project's dictionary, whose checkbox fields have codes 0-4.
func TestRealDictionaryCheck(t *testing.T) {
	d, err := dict.ParseCSV(openShared(t, "OuhscBbmc__REDCapR__inst__test-data__projects__longitudinal__dictionary.csv"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("nudge.yaml", "timezone: America/Chicago\nprojects:\n  - { name: main, redcap_url: https://r.example.edu/api/, token_env: T }\n"+
		"smtp: { host: mail.example.edu, from: study@example.edu }\n")
	write("rules/r.yaml", `rules:
  - name: gym-monday
    when: "[gym(0)] = '1' and [sex] = '0' and [demographics_complete] = '2'"
    channel: email
    to: "[email]"
    template: hello
  - name: bad-codes
    when: "[gym(7)] = '1' or [race(1)] = '1' or [telephone] <> ''"
    channel: email
    to: "[email]"
    template: hello
`)
	write("templates/hello.email.txt", "Subject: Hello [first_name]\n\nDear [first_name] [last_name],\nsee you soon.\n")
	s, err := Load(filepath.Join(dir, "nudge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	errs := s.CheckFields(map[string]*dict.Dictionary{"main": d})
	var msgs []string
	for _, e := range errs {
		if e.Rule != "bad-codes" {
			t.Errorf("unexpected error for a valid rule: %v", e)
		}
		msgs = append(msgs, e.Msg)
	}
	want := []string{
		"[gym(7)]: [gym] has no choice '7': use one of its codes, 0, 1, 2, 3, 4",
		"[race(1)] is not a checkbox ([race] is a dropdown field): compare its value instead, e.g. [race] = '1'",
		"unknown field [telephone] in project main (did you mean [telephone_1]?): use a Variable / Field Name of the project's data dictionary",
	}
	if strings.Join(msgs, "\n") != strings.Join(want, "\n") {
		t.Errorf("CheckFields:\n%s\nwant\n%s", strings.Join(msgs, "\n"), strings.Join(want, "\n"))
	}
}
