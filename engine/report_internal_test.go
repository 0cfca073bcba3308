package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
)

// TestSafetySentAtFitsFieldValidation: sent_at is written in the form the
// target field's validation accepts, so REDCap takes it (a datetime_ymd
// field refuses seconds).
func TestSafetySentAtFitsFieldValidation(t *testing.T) {
	d, err := dict.ParseCSV(strings.NewReader(`field_name,form_name,field_type,field_label,select_choices_or_calculations,text_validation_type_or_show_slider_number
record_id,f,text,ID,,
d,f,text,D,,date_ymd
dmdy,f,text,D,,date_mdy
dt,f,text,DT,,datetime_ymd
dts,f,text,DTS,,datetime_seconds_ymd
plain,f,text,P,,
`))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 23, 10, 4, 5, 0, time.UTC)
	for field, want := range map[string]string{
		"d": "2026-11-23", "dmdy": "2026-11-23", "dt": "2026-11-23 10:04", "dts": "2026-11-23 10:04:05",
		"plain": "2026-11-23 10:04:05", "unknown": "2026-11-23 10:04:05",
	} {
		if got := at.Format(sentAtLayout(d, field)); got != want {
			t.Errorf("sent_at into %s = %q, want %q", field, got, want)
		}
	}
}
