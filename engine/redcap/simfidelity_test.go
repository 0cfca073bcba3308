package redcap_test

import (
	"context"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
)

// The client against the simulator's REDCap-faithful answers: repeat instances as JSON
// numbers, gray form statuses as "0", the record id only when asked for, and a locked record
// refused in REDCap's CSV lines, which must set aside that record's rows only.
func TestSafetyClientAgainstFaithfulSimulator(t *testing.T) {
	srv := redcaptest.New(testProject(t))
	if err := srv.Load(token, []map[string]string{
		{"record_id": "1", "mobile": "+14155550101"},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "3", "bp_sys": "120"},
		{"record_id": "2", "mobile": "+14155550102"},
	}); err != nil {
		t.Fatal(err)
	}
	c, _ := start(t, srv, token)
	ctx := context.Background()

	rows, err := c.ExportRecords(ctx, redcap.ExportParams{Fields: []string{"mobile", "bp_sys", "contact_complete"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[1]["redcap_repeat_instance"] != "3" || rows[1]["record_id"] != "1" ||
		rows[0]["contact_complete"] != "0" || rows[0]["redcap_repeat_instance"] != "" {
		t.Errorf("export = %v", rows)
	}

	srv.LockRecord(token, "2", true)
	res, err := c.ImportRecords(ctx, []redcap.Row{
		{"record_id": "1", "sent_status": "delivered"},
		{"record_id": "2", "sent_status": "delivered"},
	})
	if err != nil || res.Imported != 1 || len(res.Rejected) != 1 || res.Rejected[0].Row["record_id"] != "2" ||
		!strings.Contains(res.Rejected[0].Reason, "locked") {
		t.Fatalf("import with a locked record: %+v, %v", res, err)
	}
	for _, r := range srv.Export(token) {
		want := map[string]string{"1": "delivered", "2": ""}[r["record_id"]]
		if r["redcap_repeat_instrument"] == "" && r["sent_status"] != want {
			t.Errorf("record %s: sent_status %q, want %q", r["record_id"], r["sent_status"], want)
		}
	}
}
