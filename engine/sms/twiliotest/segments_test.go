package twiliotest

import (
	"strings"
	"testing"
)

func TestSegments(t *testing.T) {
	tests := []struct {
		name string
		body string
		want int
	}{
		{"short GSM", "Hi Ana, your visit is at 10:00.", 1},
		{"160 GSM", strings.Repeat("a", 160), 1},
		{"161 GSM", strings.Repeat("a", 161), 2},
		{"306 GSM", strings.Repeat("a", 306), 2},
		{"307 GSM", strings.Repeat("a", 307), 3},
		{"GSM accents stay GSM", strings.Repeat("é", 160), 1},
		{"80 extension chars = 160 units", strings.Repeat("{", 80), 1},
		{"81 extension chars = 162 units", strings.Repeat("€", 81), 2},
		{"70 UCS-2", strings.Repeat("ó", 70), 1},
		{"71 UCS-2", strings.Repeat("ó", 71), 2},
		{"134 UCS-2", strings.Repeat("ó", 134), 2},
		{"135 UCS-2", strings.Repeat("ó", 135), 3},
		{"curly quote turns GSM into UCS-2", strings.Repeat("a", 100) + "’", 2},
		{"35 emoji = 70 UTF-16 units", strings.Repeat("😀", 35), 1},
		{"36 emoji = 72 UTF-16 units", strings.Repeat("😀", 36), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := segments(tt.body); got != tt.want {
				t.Errorf("segments = %d, want %d", got, tt.want)
			}
		})
	}
}
