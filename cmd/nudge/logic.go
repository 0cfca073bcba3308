package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules"
	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

// logicUsage is the line for nudge's usage text.
const logicUsage = `  nudge logic   --dictionary DICT.csv [--record REC.json] [--as-of TIME] 'EXPR' | --all
                                              check REDCap logic against a dictionary, explain it on a record, or parse all of the dictionary's`

// cmdLogic is `nudge logic`: it checks one expression against a data
// dictionary (fields, checkbox codes, choice codes), explains its value on
// a record given as REDCap's flat JSON export rows, or with --all parses
// every branching-logic and calculation expression of the dictionary.
// Exit status 1 when anything is wrong.
func cmdLogic(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nudge logic", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dictFile := fs.String("dictionary", "", "the project's data dictionary (CSV from the web UI or the API metadata export)")
	recordFile := fs.String("record", "", "a record as REDCap's flat JSON export: an array of rows (or one row)")
	all := fs.Bool("all", false, "parse every branching logic and calculation in the dictionary")
	asOf := fs.String("as-of", "", "the moment 'today' and 'now' mean, e.g. 2027-01-15T10:00 (default: now)")
	zone := fs.String("tz", "Local", "the time zone of --as-of, 'today' and 'now' (the study's zone, e.g. America/New_York)")
	missing := fs.String("missing-codes", "", "the project's missing-data codes, comma-separated, e.g. UNK,NASK")
	// Flags may come before or after the expression.
	var exprs []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return &exitError{code: 0}
			}
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		exprs = append(exprs, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch {
	case *all && (len(exprs) > 0 || *recordFile != ""):
		fmt.Fprintln(stderr, "nudge logic: --all takes no expression and no --record")
		return errUsage
	case *all && *dictFile == "":
		fmt.Fprintln(stderr, "nudge logic: --all needs --dictionary DICT.csv")
		return errUsage
	case *all:
		return logicAll(*dictFile, stdout)
	case len(exprs) != 1:
		fmt.Fprintf(stderr, "nudge logic: give one expression in quotes, e.g. nudge logic --dictionary dict.csv \"[consent] = '1'\" (got %d)\n", len(exprs))
		return errUsage
	}
	loc, err := time.LoadLocation(*zone)
	if err != nil {
		return &exitError{code: 2, err: fmt.Errorf("--tz: %w", err)}
	}
	now := time.Now().In(loc)
	if *asOf != "" {
		t, err := parseAsOf(*asOf, loc)
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		now = t
	}
	var d *dict.Dictionary
	if *dictFile != "" {
		f, err := os.Open(*dictFile)
		if err != nil {
			return err
		}
		d, err = dict.ParseCSV(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", *dictFile, err)
		}
	}
	src := exprs[0]
	x, err := logic.Parse(src)
	if err != nil {
		var se *logic.SyntaxError
		if errors.As(err, &se) {
			fmt.Fprintf(stdout, "error: col %d: %s\n%s\n", se.Col, se.Msg, caret(src, se.Col))
			return &exitError{code: 1}
		}
		return err
	}
	problems := 0
	for _, n := range x.Notes() {
		fmt.Fprintf(stdout, "warning: %s\n", n)
	}
	if d != nil {
		for _, p := range checkAgainstDictionary(x, d) {
			fmt.Fprintf(stdout, "error: %s\n", p)
			problems++
		}
	}
	if *recordFile != "" {
		idField := "record_id"
		if d != nil {
			idField = d.RecordID()
		}
		if err := explainOnRecord(x, *recordFile, idField, now, splitCodes(*missing), stdout); err != nil {
			return err
		}
	}
	if problems > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%d problem(s) in the expression", problems)}
	}
	if *recordFile == "" {
		fmt.Fprintln(stdout, "OK: the expression parses"+map[bool]string{true: " and matches the dictionary", false: ""}[d != nil])
	}
	return nil
}

// parseAsOf reads 2027-01-15T10:00 or 2027-01-15 10:00 (seconds optional)
// in loc.
func parseAsOf(s string, loc *time.Location) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--as-of %q: write a date and time such as 2027-01-15T10:00", s)
}

func splitCodes(s string) []string {
	var out []string
	for _, c := range strings.Split(s, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// caret shows src with a ^ under rune column col.
func caret(src string, col int) string {
	line := strings.ReplaceAll(src, "\n", " ")
	return "  " + line + "\n  " + strings.Repeat(" ", max(col-1, 0)) + "^"
}

// checkAgainstDictionary lists what the dictionary says cannot work: fields
// it does not have, checkbox codes and choice codes it does not list, and
// comparisons with a value a field can never hold.
func checkAgainstDictionary(x *logic.Expr, d *dict.Dictionary) []string {
	var out []string
	for _, r := range x.Refs() {
		if r.IsSmart() {
			continue
		}
		f, ok := d.Field(r.Field)
		if !ok {
			if d.HasColumn(r.Field) {
				continue // a <form>_complete status or a checkbox export column
			}
			msg := fmt.Sprintf("%s: the dictionary has no field %s", r, r.Field)
			if s := closestField(r.Field, d); s != "" {
				msg += fmt.Sprintf(" (did you mean [%s]?)", s)
			}
			out = append(out, msg)
			continue
		}
		switch {
		case r.Code != "" && f.Type != "checkbox":
			out = append(out, fmt.Sprintf("%s: %s is a %s field, not a checkbox: write [%s] = 'code'", r, r.Field, f.Type, r.Field))
		case r.Code != "":
			if _, ok := f.Label(r.Code); !ok {
				out = append(out, fmt.Sprintf("%s: checkbox %s has no choice %s; its codes are %s", r, r.Field, r.Code, codeList(f)))
			}
		case r.Modifier != "" && f.Type != "checkbox":
			out = append(out, fmt.Sprintf("%s: :%s needs a checkbox field, and %s is a %s field", r, r.Modifier, r.Field, f.Type))
		case r.Modifier == "" && f.Type == "checkbox":
			out = append(out, fmt.Sprintf("%s: a checkbox has no single value: write [%s(code)] = '1' for one choice (codes: %s)", r, r.Field, codeList(f)))
		}
	}
	for _, c := range x.Comparisons() {
		f, ok := d.Field(c.Ref.Field)
		if !ok || c.Ref.IsSmart() || c.Ref.Modifier != "" || c.Literal.IsBlank() {
			continue
		}
		var codes []string
		switch {
		case c.Ref.Code != "" && f.Type == "checkbox":
			codes = []string{"1", "0"}
		case c.Ref.Code == "" && len(f.Choices) > 0 && f.Type != "checkbox":
			for _, ch := range f.Choices {
				codes = append(codes, ch.Code)
			}
		default:
			continue
		}
		if c.Op != "=" && c.Op != "==" && c.Op != "<>" && c.Op != "!=" {
			continue
		}
		if matchesCode(c.Literal, codes) {
			continue
		}
		never := "can never be true"
		if c.Op != "=" && c.Op != "==" {
			never = "is always true"
		}
		msg := fmt.Sprintf("col %d: %s %s: %s holds only the codes %s", c.Col, c.Text, never, c.Ref, strings.Join(codes, ", "))
		if c.Ref.Code == "" {
			msg = fmt.Sprintf("col %d: %s %s: %s is a %s field whose codes are %s", c.Col, c.Text, never, c.Ref, f.Type, codeList(f))
			for _, ch := range f.Choices {
				if strings.EqualFold(ch.Label, c.Literal.String()) {
					msg += fmt.Sprintf("; compare with the code, not the label: %s %s '%s'", c.Ref, c.Op, ch.Code)
					break
				}
			}
		}
		out = append(out, msg)
	}
	return out
}

// matchesCode reports whether lit equals one of codes as logic compares
// them: as numbers when both are numbers ('1.0' = 1), otherwise as text.
func matchesCode(lit logic.Value, codes []string) bool {
	lf, lnum := lit.Number()
	for _, code := range codes {
		if cf, err := strconv.ParseFloat(code, 64); err == nil && lnum {
			if cf == lf {
				return true
			}
			continue
		}
		if code == lit.String() {
			return true
		}
	}
	return false
}

// codeList shows a field's choices as 1 (Yes), 0 (No).
func codeList(f dict.Field) string {
	parts := make([]string, len(f.Choices))
	for i, c := range f.Choices {
		parts[i] = fmt.Sprintf("%s (%s)", c.Code, c.Label)
	}
	return strings.Join(parts, ", ")
}

// closestField suggests the dictionary field nearest to name, or "".
func closestField(name string, d *dict.Dictionary) string {
	best, bestD := "", 3
	for _, f := range d.Fields {
		if dd := logic.EditDistance(strings.ToLower(name), strings.ToLower(f.Name)); dd < bestD {
			best, bestD = f.Name, dd
		}
	}
	return best
}

// explainOnRecord evaluates x on every row of the records in file and
// shows each part's value.
func explainOnRecord(x *logic.Expr, file, idField string, now time.Time, missing []string, stdout io.Writer) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var rows []map[string]string
	if err := json.Unmarshal(data, &rows); err != nil {
		var one map[string]string
		if err1 := json.Unmarshal(data, &one); err1 != nil {
			return fmt.Errorf("%s: expected REDCap's flat JSON export (an array of rows with text values): %w", file, err)
		}
		rows = []map[string]string{one}
	}
	if len(rows) == 0 {
		return fmt.Errorf("%s: no rows", file)
	}
	fmt.Fprintf(stdout, "'today' is %s and 'now' %s (%s)\n", now.Format("2006-01-02"), now.Format("2006-01-02 15:04:05"), now.Location())
	for _, rec := range rules.GroupRows(idField, rows) {
		for _, row := range rec.Rows {
			scope := rules.NewScope(rec, row, now, missing)
			fmt.Fprintf(stdout, "\nrecord %s%s:\n", rec.ID, rowName(row))
			for _, s := range x.Explain(scope) {
				fmt.Fprintf(stdout, "  %s%s  →  %s\n", strings.Repeat("    ", s.Depth), flatLine(s.Text), showValue(s))
			}
		}
	}
	return nil
}

func rowName(row *rules.Row) string {
	var parts []string
	if row.Event != "" {
		parts = append(parts, "event "+row.Event)
	}
	if row.Instance > 0 {
		parts = append(parts, strings.TrimSpace(row.RepeatInstrument+" #"+fmt.Sprint(row.Instance)))
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}

func flatLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func showValue(s logic.Step) string {
	switch {
	case s.Err != nil:
		return "error: " + s.Err.Error()
	case s.Value.IsBlank():
		return "blank"
	case s.Value.Kind() == logic.KindString:
		return fmt.Sprintf("%q", s.Value.String())
	}
	return s.Value.String()
}

// logicAll parses every branching logic and calculation of the dictionary
// file and lists, with file:line, spreadsheet row and column, each one
// nudge cannot handle. R's literal NA counts as blank.
func logicAll(file string, stdout io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	cr := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(data), "\ufeff")))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	col := func(names ...string) int {
		for i, h := range header {
			h = strings.ToLower(strings.TrimSpace(h))
			for _, n := range names {
				if h == n {
					return i
				}
			}
		}
		return -1
	}
	nameCol := col("variable / field name", "field_name")
	branchCol := col("branching logic (show field only if...)", "branching_logic")
	calcCol := col("choices, calculations, or slider labels", "select_choices_or_calculations")
	typeCol := col("field type", "field_type")
	if nameCol < 0 || (branchCol < 0 && calcCol < 0) {
		return &exitError{code: 1, err: fmt.Errorf("%s: not a data dictionary: no Variable / Field Name and Branching Logic columns", file)}
	}
	get := func(rec []string, i int) string {
		if i < 0 || i >= len(rec) {
			return ""
		}
		return rec[i]
	}
	total, bad, notes := 0, 0, 0
	for row := 2; ; row++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		check := func(i int, kind string) {
			src := get(rec, i)
			if t := strings.TrimSpace(src); t == "" || t == "NA" {
				return
			}
			total++
			line, _ := cr.FieldPos(i)
			where := fmt.Sprintf("%s:%d: row %d, column %s (%s of %s)", file, line, row, columnLetter(i), kind, get(rec, nameCol))
			x, err := logic.Parse(src)
			if err != nil {
				bad++
				var se *logic.SyntaxError
				if errors.As(err, &se) && strings.Contains(src, "\n") {
					// Logic over several lines: name the line of the file and the column within it.
					k, c := lineCol(src, se.Col)
					where = fmt.Sprintf("%s:%d: row %d, column %s (%s of %s)", file, line+k, row, columnLetter(i), kind, get(rec, nameCol))
					err = fmt.Errorf("line %d of the logic, col %d: %s", k+1, c, se.Msg)
				}
				fmt.Fprintf(stdout, "%s: %v\n", where, err)
				return
			}
			for _, n := range x.Notes() {
				notes++
				fmt.Fprintf(stdout, "%s: warning: %s\n", where, n)
			}
		}
		check(branchCol, "branching logic")
		if strings.TrimSpace(get(rec, typeCol)) == "calc" {
			check(calcCol, "calculation")
		}
	}
	if bad > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s: %d of %d expressions cannot be handled", file, bad, total)}
	}
	fmt.Fprintf(stdout, "OK: %s: all %d expressions parse (%d warning(s))\n", file, total, notes)
	return nil
}

// lineCol turns a 1-based rune column of src into the 0-based line of src
// it falls on and the 1-based rune column within that line.
func lineCol(src string, col int) (line, c int) {
	c = 1
	for i, r := range []rune(src) {
		if i == col-1 {
			break
		}
		if r == '\n' {
			line, c = line+1, 1
			continue
		}
		c++
	}
	return line, c
}

// columnLetter is a spreadsheet's name for the 0-based column i: A, B, …, Z, AA.
func columnLetter(i int) string {
	s := ""
	for i++; i > 0; i = (i - 1) / 26 {
		s = string(rune('A'+(i-1)%26)) + s
	}
	return s
}
