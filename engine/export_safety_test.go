package engine_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
)

// An API user whose export rights drop columns (identifiers, a whole form) or hash the record
// ids gets HTTP 200 with less data. Export must refuse the project and say why, not plan
// "no phone number" for everyone or messages for records that do not exist.
func TestSafetyExportRefusesRestrictedRights(t *testing.T) {
	const restricted = "5555555555555555555555555555AAAA"
	tests := []struct {
		name   string
		rights redcaptest.Rights
		is     error
		want   []string
	}{
		{"identifiers removed", redcaptest.Rights{Default: redcaptest.RemoveIdentifiers}, redcap.ErrMissingColumns,
			[]string{"project site_a: exporting records:", "left out first_name, last_name, mobile_phone, email,", "(form enrollment)", "Remove All Identifier Fields", "Full Data Set"}},
		{"no access to a form", redcaptest.Rights{Forms: map[string]redcaptest.ExportRight{"consent": redcaptest.NoAccess}}, redcap.ErrMissingColumns,
			[]string{"left out consent_date, consent_given, consent_complete,", "(form consent)", "No Access"}},
		{"de-identified", redcaptest.Rights{Default: redcaptest.DeIdentified}, redcap.ErrMissingRecords,
			[]string{"project site_a: exporting records:", "look hashed", "De-Identified"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			srv, full := f.env.REDCap, f.env.Token("site_a")
			if err := srv.MarkIdentifiers(full, "first_name", "last_name", "mobile_phone", "email"); err != nil {
				t.Fatal(err)
			}
			if err := srv.AddUser(full, restricted, tt.rights); err != nil {
				t.Fatal(err)
			}
			c, err := redcap.New(f.env.REDCapURL, restricted, redcap.WithRate(0))
			if err != nil {
				t.Fatal(err)
			}
			f.e.REDCap["site_a"] = c
			snaps, err := f.e.Export(f.ctx)
			if !errors.Is(err, tt.is) || snaps != nil {
				t.Fatalf("Export = %d snapshots, %v; want %v", len(snaps), err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
