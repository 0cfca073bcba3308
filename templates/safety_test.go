package templates

import (
	"strings"
	"testing"

	"github.com/nudge-study/nudge/rules/dict"
)

// TestSafetyRenderErrorsNameFieldNotValue proves that piping errors, which
// become the logged reason a participant was skipped, name the field and the
// problem but never quote the participant's value.
func TestSafetyRenderErrorsNameFieldNotValue(t *testing.T) {
	d := dict.New(append(testDict().Fields,
		dict.Field{Name: "clinic", Form: "enrol", Type: "dropdown", Choices: []dict.Choice{{Code: "1", Label: "North"}}}))
	tests := []struct {
		src, field, value, want string
	}{
		{"See you at [clinic]", "[clinic]", "Dr Ana Secretname's office", "[clinic] holds a code that is not one of its choices"},
		{"Your arm: [arm:label]", "[arm]", "415-555-0101", "[arm] holds a code that is not one of its choices"},
		{"[sms_ok]", "[sms_ok]", "ana@example.org", "[sms_ok] holds a code that is not one of its choices"},
	}
	for _, tt := range tests {
		text, err := Parse("t.sms.txt", tt.src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.src, err)
		}
		rec := testRecord()
		rec[tt.field] = tt.value
		_, err = text.Render(rec, d)
		if err == nil {
			t.Fatalf("Render(%q) with %s = %q: no error", tt.src, tt.field, tt.value)
		}
		if strings.Contains(err.Error(), tt.value) {
			t.Errorf("Render(%q) error %q quotes the value", tt.src, err)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Render(%q) error %q does not say %q", tt.src, err, tt.want)
		}
	}
}
