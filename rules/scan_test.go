package rules

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/rules/dict"
)

// mustDict parses data dictionary rows (after the header and record_id).
func mustDict(t *testing.T, rows string) *dict.Dictionary {
	t.Helper()
	const head = "Variable / Field Name,Form Name,Section Header,Field Type,Field Label,\"Choices, Calculations, OR Slider Labels\"," +
		"Field Note,Text Validation Type OR Show Slider Number,Text Validation Min,Text Validation Max,Identifier?," +
		"Branching Logic (Show field only if...),Required Field?,Custom Alignment,Question Number (surveys only)," +
		"Matrix Group Name,Matrix Ranking?,Field Annotation\n" +
		"record_id,enrollment,,text,\"Record ID\",,,,,,,,,,,,,\n"
	d, err := dict.ParseCSV(strings.NewReader(head + rows))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The comparisons check looks at are found only where a comparison stands
// alone: arithmetic next to an operand, text holding brackets and comments
// never produce one.
func TestFieldComparisons(t *testing.T) {
	tests := []struct {
		src  string
		want []string // "ref op value @offset"
	}{
		{"[a] = 'yes'", []string{"[a] = yes @0"}},
		{"'yes' = [a]", []string{"[a] = yes @0"}},
		{"5 < [a] and [b] <> \"x\"", []string{"[a] > 5 @0", "[b] <> x @12"}},
		{"[a] == 'y' && [b] != -2 || ([c(3)] = '1')", []string{"[a] == y @0", "[b] != -2 @14", "[c(3)] = 1 @28"}},
		{"[ev_arm_1][a][2] = '1'", []string{"[ev_arm_1][a][2] = 1 @0"}},
		{"if([a] = 'x', 1, 0) = 1", []string{"[a] = x @3"}},
		{"[a] + 1 = '2' or 2 * [b] = 4 or [c] = [d] or [e] = 'f' * 2", nil},
		{"[a] = '[b] = 1'", []string{"[a] = [b] = 1 @0"}},
		{"# [a] = 'no'\n[b] = 'x' // [c] = 'no'", []string{"[b] = x @13"}},
		{"[a:value] = 'x' and [record-name] = '1'", nil},
		{"[a] = 'unclosed", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, fc := range fieldComparisons(tt.src) {
			got = append(got, fmt.Sprintf("%s %s %s @%d", fc.ref, fc.op, fc.lit.value, fc.pos))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("fieldComparisons(%q) = %q, want %q", tt.src, got, tt.want)
		}
	}
}

func TestDatediffComparisons(t *testing.T) {
	tests := []struct {
		src  string
		want []string // "call|args|op n" and the signed form
	}{
		{"datediff([q], 'today', 'd') = 7", []string{"datediff([q], 'today', 'd') = 7 → datediff([q], 'today', 'd', true)"}},
		{"3 >= datediff([q],'today','d','ymd')", []string{"datediff([q],'today','d','ymd') <= 3 → datediff([q], 'today', 'd', 'ymd', true)"}},
		{"datediff([q], 'today', 'd', 'ymd', false) < 2", []string{"datediff([q], 'today', 'd', 'ymd', false) < 2 → datediff([q], 'today', 'd', 'ymd', true)"}},
		{"datediff([q], 'today', 'd', true) = 7", []string{"datediff([q], 'today', 'd', true) = 7 → "}},
		{"datediff([q], 'today', 'd', [flag]) = 7", []string{"datediff([q], 'today', 'd', [flag]) = 7 → "}},
		{"datediff(if([a]='1',[q],[r]), 'today', 'd') = 1", []string{"datediff(if([a]='1',[q],[r]), 'today', 'd') = 1 → datediff(if([a]='1',[q],[r]), 'today', 'd', true)"}},
		{"datediff([q], 'today', 'd') * 2 = 7 or datediff([q], 'today', 'd') = [n]", nil},
	}
	for _, tt := range tests {
		var got []string
		for _, dc := range datediffComparisons(tt.src) {
			got = append(got, fmt.Sprintf("%s %s %s → %s", dc.call, dc.op, dc.lit, dc.signedForm()))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("datediffComparisons(%q) =\n%q\nwant\n%q", tt.src, got, tt.want)
		}
	}
}

// A comparison that can never hold is an error that stops nudge: with <>
// it selects everyone, e.g. texting participants who withdrew.
func TestSafetyChoiceComparisonOutcomes(t *testing.T) {
	d := mustDict(t, "withdrawn,enrollment,,yesno,\"Withdrawn\",,,,,,,,,,,,,\n"+
		"site,enrollment,,dropdown,\"Site\",\"1, North | 2, South\",,,,,,,,,,,,\n")
	tests := []struct {
		src  string
		want string
	}{
		{"[withdrawn] <> 'yes'", "[withdrawn] <> 'yes' is true for every participant, so it excludes no one: yesno codes are 1 (Yes) and 0 (No); did you mean [withdrawn] <> '1'?"},
		{"[withdrawn] = 'No'", "[withdrawn] = 'No' can never be true: yesno codes are 1 (Yes) and 0 (No); did you mean [withdrawn] = '0'?"},
		{"[site] = 'south'", "[site] = 'south' can never be true: [site] is a dropdown field whose codes are 1 (North) and 2 (South); did you mean [site] = '2'?"},
		{"[withdrawn] = '0'", ""},
		{"[withdrawn] = 1.0", ""},
		{"[withdrawn] = ''", ""},
		{"[withdrawn] = 'UNK'", ""},
		{"[site] > 'x'", ""},
	}
	for _, tt := range tests {
		fcs := fieldComparisons(tt.src)
		if len(fcs) != 1 {
			t.Fatalf("%q: %d comparisons", tt.src, len(fcs))
		}
		if got := choiceComparison(d, fcs[0]); got != tt.want {
			t.Errorf("%q:\ngot  %q\nwant %q", tt.src, got, tt.want)
		}
	}
}
