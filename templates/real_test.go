package templates

import (
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

// sharedDir is the folder of real REDCap dictionaries beside the repository.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../shared/redcap-dictionaries")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("real REDCap dictionaries not available: %v", err)
	}
	return dir
}

// row is one exported record row as a Source: checkbox choices are read
// from their field___code columns.
type row map[string]string

func (r row) Lookup(ref logic.Ref) (string, bool) {
	if ref.Event != "" || ref.Instance != "" {
		return "", false
	}
	col := ref.Field
	if ref.Code != "" {
		col = dict.CheckboxColumn(ref.Field, ref.Code)
	}
	v, ok := r[col]
	return v, ok
}

// TestRealProject pipes the records of a real REDCap project (dictionary
// and data export) through a template and compares with a golden file. Its
// data holds "TRUE"/"FALSE" in a radio field coded 0/1, which must be an
// error rather than a wrong word in a message.
func TestRealProject(t *testing.T) {
	dir := sharedDir(t)
	const project = "OuhscBbmc__REDCapR__inst__test-data__projects__simple__"
	f, err := os.Open(filepath.Join(dir, project+"metadata.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, err := dict.ParseCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.Open(filepath.Join(dir, "records", project+"data.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	rows, err := csv.NewReader(data).ReadAll()
	if err != nil {
		t.Fatal(err)
	}

	texts := map[string]string{
		"greeting": "Dear [name_first] [name_last] ([record_id]), race: [race]; not: [race:unchecked]; " +
			"codes [race:value]; ethnicity: [ethnicity] ([ethnicity:value]); white? [race(5)]; " +
			"comments: [comments|none]",
		"sex": "Gender: [sex]",
	}
	var b strings.Builder
	for _, name := range []string{"greeting", "sex"} {
		tmpl, err := Parse(name, texts[name])
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range rows[1:] {
			r := row{}
			for i, col := range rows[0] {
				r[col] = rec[i]
			}
			out, err := tmpl.Render(r, d)
			if err != nil {
				out = "error: " + err.Error()
			}
			fmt.Fprintf(&b, "%s %s: %s\n", name, r["record_id"], out)
		}
	}

	checkGolden(t, filepath.Join("testdata", "real-simple.golden"), b.String())
}
