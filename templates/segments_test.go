package templates

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCount(t *testing.T) {
	r := strings.Repeat
	tests := []struct {
		name string
		body string
		want Segments
	}{
		{"empty", "", Segments{GSM7, 0, 0}},
		{"short ascii", "Hi Ana, see you at 10:00.", Segments{GSM7, 25, 1}},
		{"gsm basic accents", "Grüße, Año, ¿qué? £5 @ 10", Segments{GSM7, 25, 1}},
		{"newline is basic", "a\nb\r", Segments{GSM7, 4, 1}},
		{"160 single", r("a", 160), Segments{GSM7, 160, 1}},
		{"161 splits", r("a", 161), Segments{GSM7, 161, 2}},
		{"306 two parts", r("a", 306), Segments{GSM7, 306, 2}},
		{"307 three parts", r("a", 307), Segments{GSM7, 307, 3}},
		{"extension counts two", "{x}", Segments{GSM7, 5, 1}},
		{"every extension char", "^{}\\[~]|€\f", Segments{GSM7, 20, 1}},
		{"159 plus extension is 161", r("a", 159) + "€", Segments{GSM7, 161, 2}},
		{"158 plus extension fits 160", r("a", 158) + "€", Segments{GSM7, 160, 1}},
		// 152 septets then a two-septet character: it cannot straddle the
		// 153 boundary, so it opens the second part; 2+151 fills it exactly.
		{"extension not split at part boundary", r("a", 152) + "€" + r("a", 151), Segments{GSM7, 305, 2}},
		{"extension pushes third part", r("a", 152) + "€" + r("a", 152), Segments{GSM7, 306, 3}},
		{"extension ends first part", r("a", 151) + "€" + r("a", 153), Segments{GSM7, 306, 2}},
		{"curly quote forces ucs2", "It’s time", Segments{UCS2, 9, 1}},
		{"en dash forces ucs2", "9–5", Segments{UCS2, 3, 1}},
		{"70 ucs2 single", "–" + r("a", 69), Segments{UCS2, 70, 1}},
		{"71 ucs2 splits", "–" + r("a", 70), Segments{UCS2, 71, 2}},
		{"134 ucs2 two parts", "–" + r("a", 133), Segments{UCS2, 134, 2}},
		{"135 ucs2 three parts", "–" + r("a", 134), Segments{UCS2, 135, 3}},
		{"emoji is two units", "ok 👍", Segments{UCS2, 5, 1}},
		{"68 plus emoji fits 70", r("a", 68) + "👍", Segments{UCS2, 70, 1}},
		{"69 plus emoji is 71", r("a", 69) + "👍", Segments{UCS2, 71, 2}},
		{"emoji not split at part boundary", r("a", 66) + "👍" + r("a", 65), Segments{UCS2, 133, 2}},
		{"emoji pushes third part", r("a", 66) + "👍" + r("a", 66), Segments{UCS2, 134, 3}},
		{"extension char in ucs2 is one unit", "–{", Segments{UCS2, 2, 1}},
		{"cyrillic", "Привет", Segments{UCS2, 6, 1}},
		{"ascii without gsm form forces ucs2", "a`b", Segments{UCS2, 3, 1}},
		{"ascii then accent then extension", "Hi Zoé {x}", Segments{GSM7, 12, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Count(tt.body); got != tt.want {
				t.Errorf("Count(%q) = %+v, want %+v", tt.body, got, tt.want)
			}
			got, chars := Measure(tt.body)
			if got != tt.want || chars != utf8.RuneCountInString(tt.body) {
				t.Errorf("Measure(%q) = %+v, %d; want %+v, %d", tt.body, got, chars, tt.want, utf8.RuneCountInString(tt.body))
			}
		})
	}
}

// TestCountPartSizes checks the multipart arithmetic against the simple
// formula for bodies made of one-unit characters only.
func TestCountPartSizes(t *testing.T) {
	for n := 1; n <= 700; n++ {
		gsm := Count(strings.Repeat("a", n))
		ucs := Count(strings.Repeat("Ж", n))
		if want := expectCount(n, 160, 153); gsm.Count != want {
			t.Fatalf("GSM-7 %d chars: %d segments, want %d", n, gsm.Count, want)
		}
		if want := expectCount(n, 70, 67); ucs.Count != want {
			t.Fatalf("UCS-2 %d chars: %d segments, want %d", n, ucs.Count, want)
		}
	}
}

func expectCount(n, single, part int) int {
	if n <= single {
		return 1
	}
	return (n + part - 1) / part
}

func BenchmarkCount(b *testing.B) {
	bodies := map[string]string{
		"gsm":  strings.Repeat("Hi Ana, your visit is on 2026-03-01 [room 4]. ", 8),
		"ucs2": strings.Repeat("Hi Ana, it’s time for your visit 👍 ", 8),
	}
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				Count(body)
			}
		})
	}
}
