package logic

import (
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dictDir holds real projects' data dictionaries (see its README); it lives
// outside the repository, so the test skips when it is absent.
const dictDir = "../../../shared/redcap-dictionaries"

type dictExpr struct {
	file, field, kind, src string
}

// realExpressions reads every branching logic and calc expression from the
// data dictionaries in dir, in both the CSV download's and the API's
// column names.
func realExpressions(t testing.TB, dir string) []dictExpr {
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	var out []dictExpr
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(data), "\ufeff")))
		r.FieldsPerRecord = -1
		rows, err := r.ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(rows) == 0 {
			continue
		}
		col := func(names ...string) int {
			for i, h := range rows[0] {
				for _, n := range names {
					if strings.TrimSpace(h) == n {
						return i
					}
				}
			}
			return -1
		}
		name := col("Variable / Field Name", "field_name")
		branch := col("Branching Logic (Show field only if...)", "branching_logic")
		calc := col("Choices, Calculations, OR Slider Labels", "select_choices_or_calculations")
		typ := col("Field Type", "field_type")
		if branch < 0 || name < 0 {
			continue // not a data dictionary
		}
		get := func(row []string, i int) string {
			if i < 0 || i >= len(row) {
				return ""
			}
			return row[i]
		}
		for _, row := range rows[1:] {
			base := filepath.Base(f)
			if s := get(row, branch); strings.TrimSpace(s) != "" {
				out = append(out, dictExpr{base, get(row, name), "branching logic", s})
			}
			if s := get(row, calc); get(row, typ) == "calc" && strings.TrimSpace(s) != "" {
				out = append(out, dictExpr{base, get(row, name), "calculation", s})
			}
		}
	}
	return out
}

// knownBad are real expressions that are not valid REDCap logic, with the
// error nudge gives for each.
var knownBad = map[string]string{
	// A dictionary where someone typed NA for "no branching logic".
	"NA": "col 1: unexpected word 'NA': put field names in [brackets] and text in 'quotes'",
}

func TestRealDictionaries(t *testing.T) {
	if _, err := os.Stat(dictDir); err != nil {
		t.Skipf("no real dictionaries at %s: %v", dictDir, err)
	}
	exprs := realExpressions(t, dictDir)
	if len(exprs) == 0 {
		t.Fatalf("found no expressions in %s", dictDir)
	}
	parsed, distinct := 0, map[string]bool{}
	for _, e := range exprs {
		distinct[e.src] = true
		x, err := Parse(e.src)
		if want, bad := knownBad[strings.TrimSpace(e.src)]; bad {
			if err == nil || err.Error() != want {
				t.Errorf("%s %s %s %q: got error %v, want %q", e.file, e.field, e.kind, e.src, err, want)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("%q: error %T is not a *SyntaxError", e.src, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s field %s, %s %q: %v", e.file, e.field, e.kind, e.src, err)
			continue
		}
		parsed++
		if x.String() != e.src {
			t.Errorf("%q: String() = %q", e.src, x.String())
		}
		if len(x.Refs()) == 0 && !strings.ContainsAny(e.src, "0123456789") {
			t.Errorf("%q: no refs", e.src)
		}
		// Every expression must evaluate without panicking against an empty
		// record, and a blank record must not make a type error.
		if _, err := x.Eval(mapEnv{}); err != nil {
			t.Errorf("%q on an empty record: %v", e.src, err)
		}
	}
	t.Logf("%d expressions (%d distinct) in %s: %d parse, %d known bad", len(exprs), len(distinct), dictDir, parsed, len(exprs)-parsed)
}
