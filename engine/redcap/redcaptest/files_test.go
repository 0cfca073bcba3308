package redcaptest

import (
	"os"
	"path/filepath"
	"testing"
)

// An import the server cannot persist is undone and answered with a 500: a client must never
// be told a write-back landed that a restart would lose.
func TestSafetyUnsavedImportIsUndone(t *testing.T) {
	p := classic(t)
	p.RecordsFile = filepath.Join(t.TempDir(), "missing-dir", "records.json")
	s := New(p)
	if err := s.Load(classicToken, []map[string]string{{"record_id": "1", "mobile": "old"}}); err != nil {
		t.Fatal(err)
	}
	status, body := post(t, s, importForm(classicToken, []map[string]string{{"record_id": "1", "mobile": "new"}, {"record_id": "2", "mobile": "x"}}))
	if status != 500 {
		t.Fatalf("import into an unwritable file: %d %s", status, body)
	}
	got := s.Export(classicToken)
	if len(got) != 1 || got[0]["mobile"] != "old" {
		t.Errorf("after the failed save: %v", got)
	}
}

// Records saved as JSON read back to the same project, repeat instances (JSON numbers)
// included, and forms never entered stay never entered.
func TestSavedRecordsReadBack(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"records.json", "records.csv"} {
		p := classic(t)
		p.RecordsFile = filepath.Join(dir, name)
		s := New(p)
		rows := []map[string]string{
			{"record_id": "1", "mobile": "m", "race___2": "1"},
			{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "2", "bp_sys": "120", "bp_complete": "2"},
			{"record_id": "2"},
		}
		if status, body := post(t, s, importForm(classicToken, rows)); status != 200 {
			t.Fatalf("%s: %d %s", name, status, body)
		}
		read, err := ReadRecords(p.RecordsFile)
		if err != nil {
			t.Fatal(err)
		}
		q := classic(t)
		s2 := New(q)
		if err := s2.Load(classicToken, read); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, got := s.Export(classicToken), s2.Export(classicToken)
		if len(got) != len(want) {
			t.Fatalf("%s: %d rows read back, want %d", name, len(got), len(want))
		}
		for i := range want {
			for k, v := range want[i] {
				if got[i][k] != v {
					t.Errorf("%s: row %d %s = %q, want %q", name, i, k, got[i][k], v)
				}
			}
		}
		// Record 2 has only its id: its contact form was never entered and stays so.
		if status, body := post(t, s2, form(classicToken, "record", "records", "2", "fields", "record_id,contact_complete", "exportBlankForGrayFormStatus", "true")); status != 200 ||
			body != `[{"record_id":"2","redcap_repeat_instrument":"","redcap_repeat_instance":"","contact_complete":""}]` {
			t.Errorf("%s: record 2 read back as %s", name, body)
		}
		if tmp, _ := filepath.Glob(filepath.Join(dir, ".*")); len(tmp) != 0 {
			t.Errorf("temporary files left: %v", tmp)
		}
		os.Remove(p.RecordsFile)
	}
}
