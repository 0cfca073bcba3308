package templates

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
)

// record is a Source keyed by the REDCap form of a reference.
type record map[string]string

func (r record) Lookup(ref logic.Ref) (string, bool) {
	v, ok := r[ref.String()]
	return v, ok
}

// testDict is a small project: text, dropdown, radio, yesno, truefalse and
// checkbox fields.
func testDict() *dict.Dictionary {
	return dict.New([]dict.Field{
		{Name: "record_id", Form: "enrol", Type: "text"},
		{Name: "first_name", Form: "enrol", Type: "text"},
		{Name: "visit_date", Form: "enrol", Type: "text", Validation: "date_ymd"},
		{Name: "arm", Form: "enrol", Type: "radio", Choices: []dict.Choice{{Code: "1", Label: "Walking"}, {Code: "2", Label: "Yoga & Tai chi"}}},
		{Name: "site", Form: "enrol", Type: "dropdown", Choices: []dict.Choice{{Code: "bos", Label: "Boston"}, {Code: "sfo", Label: "San Francisco"}}},
		{Name: "sms_ok", Form: "enrol", Type: "yesno"},
		{Name: "fasting", Form: "enrol", Type: "truefalse"},
		{Name: "race", Form: "enrol", Type: "checkbox", Choices: []dict.Choice{{Code: "1", Label: "Asian"}, {Code: "2", Label: "Black"}, {Code: "3", Label: "White"}}},
		{Name: "bp_sys", Form: "vitals", Type: "text"},
	})
}

func testRecord() record {
	return record{
		"[record-name]":             "1001",
		"[event-name]":              "baseline_arm_1",
		"[first_name]":              "Ana",
		"[visit_date]":              "2026-03-02",
		"[arm]":                     "2",
		"[site]":                    "sfo",
		"[sms_ok]":                  "1",
		"[fasting]":                 "0",
		"[race(1)]":                 "1",
		"[race(2)]":                 "0",
		"[race(3)]":                 "1",
		"[bp_sys][2]":               "128",
		"[bp_sys][last-instance]":   "131",
		"[visit_arm_1][visit_date]": "2026-04-06",
		"[visit_arm_1][bp_sys][1]":  "119",
		"[blank_name]":              "  ",
		"[html_name]":               `<b>Ana</b> & "co"`,
	}
}

func TestRender(t *testing.T) {
	tests := []struct {
		src, want string
	}{
		{"Hi [first_name]!", "Hi Ana!"},
		{"no tags at all", "no tags at all"},
		{"[first_name]", "Ana"},
		{"Arm: [arm]", "Arm: Yoga & Tai chi"},
		{"Arm: [arm:label]", "Arm: Yoga & Tai chi"},
		{"Arm code: [arm:value]", "Arm code: 2"},
		{"Site: [site] ([site:value])", "Site: San Francisco (sfo)"},
		{"OK? [sms_ok]; fasting? [fasting]", "OK? Yes; fasting? False"},
		{"Race: [race]", "Race: Asian, White"},
		{"Race: [race:checked]", "Race: Asian, White"},
		{"Not: [race:unchecked]", "Not: Black"},
		{"Codes: [race:value]", "Codes: 1, 3"},
		{"Black? [race(2)] White? [race(3)]", "Black? 0 White? 1"},
		{"Visit [visit_arm_1][visit_date]", "Visit 2026-04-06"},
		{"BP [bp_sys][2] last [bp_sys][last-instance]", "BP 128 last 131"},
		{"BP [visit_arm_1][bp_sys][1]", "BP 119"},
		{"Record [record-name] at [event-name]", "Record 1001 at baseline_arm_1"},
		{"Hi [nickname|there]", "Hi there"},
		{"Hi [blank_name|there]", "Hi there"},
		{"Hi [first_name|there]", "Hi Ana"},
		{"Hi[middle_name|]!", "Hi!"},
		{"Hi [first_name:hideunderscore]", "Hi Ana"},
		{"On [visit_arm_1][visit_date:value|soon]", "On 2026-04-06"},
		{"On [visit_arm_2][visit_date:value|soon]", "On soon"},
		{"BP [bp_sys|?][7]", "BP ?"},
		{"Literal [ bracket, [1] and [*] and a[", "Literal [ bracket, [1] and [*] and a["},
		{"Two [first_name] [first_name]", "Two Ana Ana"},
		{"Dates as stored: [visit_date]", "Dates as stored: 2026-03-02"},
		{"Multi\nline [first_name]\n", "Multi\nline Ana\n"},
		{"Unicode ✓ [first_name] ’", "Unicode ✓ Ana ’"},
	}
	d, rec := testDict(), testRecord()
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			text, err := Parse("t.sms.txt", tt.src)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := text.Render(rec, d)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
			if text.Source() != tt.src {
				t.Errorf("Source = %q", text.Source())
			}
		})
	}
}

func TestRenderHTMLEscapes(t *testing.T) {
	text, err := ParseHTML("t.email.html", `<p title="x">Hi [html_name], [nope|<i>friend</i>] & co</p>`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := text.Render(testRecord(), testDict())
	if err != nil {
		t.Fatal(err)
	}
	want := `<p title="x">Hi &lt;b&gt;Ana&lt;/b&gt; &amp; &#34;co&#34;, <i>friend</i> & co</p>`
	if got != want {
		t.Errorf("Render = %q, want %q", got, want)
	}
	plain, _ := Parse("t.txt", "Hi [html_name]")
	if got, _ := plain.Render(testRecord(), testDict()); got != `Hi <b>Ana</b> & "co"` {
		t.Errorf("plain text part escaped: %q", got)
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		src     string
		missing string // the Ref of a *MissingError, or ""
		want    string // substring of another error
	}{
		{"Hi [nickname]", "[nickname]", ""},
		{"Hi [blank_name]", "[blank_name]", ""},
		{"On [visit_arm_2][visit_date]", "[visit_arm_2][visit_date]", ""},
		{"BP [bp_sys][9]", "[bp_sys][9]", ""},
		{"[first_name] [race(9)]", "[race(9)]", ""},
		{"[unknown_cb:checked]", "", "is for checkbox fields"},
		{"[first_name:unchecked]", "", "is for checkbox fields"},
		{"[bad_arm]", "", `[bad_arm] holds a code that is not one of its choices`},
	}
	d := dict.New(append(testDict().Fields,
		dict.Field{Name: "bad_arm", Form: "enrol", Type: "radio", Choices: []dict.Choice{{Code: "1", Label: "A"}}}))
	rec := testRecord()
	rec["[bad_arm]"] = "7"
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			text, err := Parse("t.sms.txt", tt.src)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := text.Render(rec, d)
			if err == nil {
				t.Fatalf("Render = %q, want an error", got)
			}
			var me *MissingError
			if tt.missing != "" {
				if !errors.As(err, &me) || me.Ref.String() != tt.missing {
					t.Fatalf("Render error %v, want MissingError for %s", err, tt.missing)
				}
				if want := "no value for " + tt.missing; err.Error() != want {
					t.Errorf("Error() = %q, want %q", err, want)
				}
				return
			}
			if errors.As(err, &me) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Render error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestRenderUncheckedNoData: with no data for a checkbox, neither its checked
// nor its unchecked choices can be piped.
func TestRenderCheckboxNoData(t *testing.T) {
	for _, src := range []string{"[race]", "[race:unchecked]"} {
		text, err := Parse("t", src)
		if err != nil {
			t.Fatal(err)
		}
		_, err = text.Render(record{}, testDict())
		var me *MissingError
		if !errors.As(err, &me) || me.Ref != (logic.Ref{Field: "race"}) {
			t.Errorf("%s on an empty record: %v, want MissingError for [race]", src, err)
		}
	}
}

func TestRenderWithoutDictionary(t *testing.T) {
	text, err := Parse("t", "[arm] [sms_ok] [first_name]")
	if err != nil {
		t.Fatal(err)
	}
	got, err := text.Render(testRecord(), nil)
	if err != nil || got != "2 1 Ana" {
		t.Errorf("Render without dictionary = %q, %v; want raw values", got, err)
	}
}

func TestRefs(t *testing.T) {
	text, err := Parse("t", "[first_name] [arm:label] [race] [race(2)] [first_name|x] "+
		"[visit_arm_1][visit_date] [bp_sys][2] [v_arm_1][bp_sys][last-instance] [record-name] [survey-link:consent]")
	if err != nil {
		t.Fatal(err)
	}
	want := []logic.Ref{
		{Field: "first_name"},
		{Field: "arm"},
		{Field: "race"},
		{Field: "race", Code: "2"},
		{Event: "visit_arm_1", Field: "visit_date"},
		{Field: "bp_sys", Instance: "2"},
		{Event: "v_arm_1", Field: "bp_sys", Instance: "last-instance"},
		{Field: "record-name"},
	}
	if got := text.Refs(); !reflect.DeepEqual(got, want) {
		t.Errorf("Refs =\n%v\nwant\n%v", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		src       string
		line, col int
		msg       string
	}{
		{"Hi [first_name", 1, 4, "unclosed ["},
		{"Hi [first_name\n]", 1, 4, "unclosed ["},
		{"ok\nline two [a [b]", 2, 10, "unclosed ["},
		{"Héllo ✓ [first name]", 1, 15, `unexpected ' ' in [first name]`},
		{"[Note: bring ID]", 1, 7, "unknown modifier : bring ID"},
		{"[arm:lable]", 1, 6, "unknown modifier :lable"},
		{"[arm:value:label]", 1, 12, "two modifiers"},
		{"[race(2):label]", 1, 2, "single checkbox choice"},
		{"[race()]", 1, 7, "not a checkbox choice code"},
		{"[race(a b)]", 1, 7, "not a checkbox choice code"},
		{"[race(2]", 1, 6, "unclosed ("},
		{"[a][b][c][1]", 1, 10, "too many [ ]"},
		{"[ev][fi][x]", 1, 10, "[x] is not an instance"},
		{"[ev:label][fi]", 1, 2, "is not an event name"},
		{"[first_name][2|x]", 1, 14, "is an instance number"},
		{"[record-name(2)]", 1, 2, "not a field name or smart variable"},
		{"x\n\n  [a$b]", 3, 5, `unexpected '$'`},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			_, err := Parse("rules/t.sms.txt", tt.src)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %v (%T), want *Error", err, err)
			}
			if e.File != "rules/t.sms.txt" || e.Line != tt.line || e.Col != tt.col || !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("got %v, want rules/t.sms.txt:%d:%d: …%s…", e, tt.line, tt.col, tt.msg)
			}
			if !strings.HasPrefix(e.Error(), "rules/t.sms.txt:") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
}
