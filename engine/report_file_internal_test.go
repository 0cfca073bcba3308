package engine

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReportFileModeAndRotation: each report is a 0600 file in a 0700
// folder, and only the newest keep are kept.
func TestReportFileModeAndRotation(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "reports")
	at := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	for i := range 4 {
		rep := &PassReport{Study: "s", RunID: int64(i + 1), At: at.Add(time.Duration(i) * time.Minute), Outcome: "ok"}
		if err := writeReportFile(dir, 2, rep); err != nil {
			t.Fatal(err)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("folder mode %v, want 0700", st.Mode().Perm())
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
		info, err := en.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", en.Name(), info.Mode().Perm())
		}
	}
	want := []string{"report-20261123T180200.000000000Z-run3.json", "report-20261123T180300.000000000Z-run4.json"}
	if len(names) != 2 || names[0] != want[0] || names[1] != want[1] {
		t.Errorf("kept %v, want the newest two %v", names, want)
	}
}
