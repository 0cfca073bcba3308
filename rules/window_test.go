package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/nudge-study/nudge/rules/logic"
)

func TestWindowNext(t *testing.T) {
	la, err := time.LoadLocation("America/Los_Angeles")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, mo time.Month, d, h, m int) time.Time { return time.Date(y, mo, d, h, m, 0, 0, la) }
	utc := func(y int, mo time.Month, d, h, m int) time.Time { return time.Date(y, mo, d, h, m, 0, 0, time.UTC) }
	day := &Window{From: 9 * 60, To: 20 * 60}
	night := &Window{From: 22 * 60, To: 6 * 60}
	early := &Window{From: 2*60 + 30, To: 4 * 60}

	tests := []struct {
		name string
		w    *Window
		now  time.Time
		want time.Time
	}{
		{"inside", day, at(2026, 6, 10, 12, 0), at(2026, 6, 10, 12, 0)},
		{"at the start", day, at(2026, 6, 10, 9, 0), at(2026, 6, 10, 9, 0)},
		{"before", day, at(2026, 6, 10, 7, 30), at(2026, 6, 10, 9, 0)},
		{"at the end (exclusive)", day, at(2026, 6, 10, 20, 0), at(2026, 6, 11, 9, 0)},
		{"after", day, at(2026, 6, 10, 21, 15), at(2026, 6, 11, 9, 0)},
		{"after, across a month end", day, at(2026, 6, 30, 23, 59), at(2026, 7, 1, 9, 0)},
		{"overnight, late evening", night, at(2026, 6, 10, 23, 0), at(2026, 6, 10, 23, 0)},
		{"overnight, early morning", night, at(2026, 6, 11, 3, 0), at(2026, 6, 11, 3, 0)},
		{"overnight, daytime", night, at(2026, 6, 10, 12, 0), at(2026, 6, 10, 22, 0)},
		{"overnight, at its end", night, at(2026, 6, 11, 6, 0), at(2026, 6, 11, 22, 0)},
		// 2026-03-08: clocks go from 02:00 PST to 03:00 PDT.
		{"spring forward, before dawn", day, utc(2026, 3, 8, 9, 0) /* 01:00 PST */, utc(2026, 3, 8, 16, 0) /* 09:00 PDT */},
		{"spring forward, evening before", day, utc(2026, 3, 8, 5, 0) /* 21:00 PST on the 7th */, utc(2026, 3, 8, 16, 0)},
		{"spring forward, start in the skipped hour", early, utc(2026, 3, 8, 9, 0), utc(2026, 3, 8, 10, 0) /* 03:00 PDT */},
		// 2026-11-01: clocks go from 02:00 PDT back to 01:00 PST.
		{"fall back", day, utc(2026, 11, 1, 7, 30) /* 00:30 PDT */, utc(2026, 11, 1, 17, 0) /* 09:00 PST */},
		{"fall back, evening before", day, utc(2026, 11, 1, 4, 0) /* 21:00 PDT on Oct 31 */, utc(2026, 11, 1, 17, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.w.Next(tt.now, la)
			if !got.Equal(tt.want) {
				t.Errorf("Next(%v) = %v, want %v", tt.now.In(la), got.In(la), tt.want.In(la))
			}
			if !tt.w.Contains(got, la) {
				t.Errorf("Next returned %v, outside the window", got.In(la))
			}
		})
	}
}

// TestWindowMidnightGap: in America/Santiago the clock jumps from 00:00 to
// 01:00 on 2026-09-06, so a window opening at midnight opens at 01:00.
func TestWindowMidnightGap(t *testing.T) {
	scl, err := time.LoadLocation("America/Santiago")
	if err != nil {
		t.Skip("no tzdata for America/Santiago")
	}
	w := &Window{From: 0, To: 6 * 60}
	now := time.Date(2026, 9, 5, 12, 0, 0, 0, scl)
	want := time.Date(2026, 9, 6, 4, 0, 0, 0, time.UTC) // 01:00 -03
	if got := w.Next(now, scl); !got.Equal(want) {
		t.Errorf("Next = %v, want %v", got.In(scl), want.In(scl))
	}
}

func TestWindowNilAndUTC(t *testing.T) {
	now := time.Date(2026, 6, 10, 3, 0, 0, 0, time.UTC)
	var none *Window
	if got := none.Next(now, nil); !got.Equal(now) {
		t.Errorf("nil window: Next = %v, want now", got)
	}
	w := &Window{From: 9 * 60, To: 17 * 60}
	if got, want := w.Next(now, nil), time.Date(2026, 6, 10, 9, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("nil location: Next = %v, want %v (UTC)", got, want)
	}
}

func TestRuleLocation(t *testing.T) {
	study, _ := time.LoadLocation("America/Los_Angeles")
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	scope := func(tz string) *Scope {
		rec := GroupRows("record_id", []map[string]string{exportRow("1", "-", "", "", "tz", tz)})[0]
		return NewScope(rec, rec.Rows[0], now, nil)
	}
	withField := &Rule{Window: &Window{From: 540, To: 1200, TimezoneField: logic.Ref{Field: "tz"}}, To: logic.Ref{Field: "mobile"}}
	tests := []struct {
		name    string
		rule    *Rule
		tz      string
		want    string
		wantErr string
	}{
		{"participant zone", withField, "America/Chicago", "America/Chicago", ""},
		{"blank uses the study zone", withField, "  ", "America/Los_Angeles", ""},
		{"no timezone field", &Rule{Window: &Window{From: 540, To: 1200}}, "America/Chicago", "America/Los_Angeles", ""},
		{"no window", &Rule{}, "America/Chicago", "America/Los_Angeles", ""},
		{"bad zone", withField, "Mars/Olympus_Mons", "", `[tz] does not hold an IANA time zone name`},
		{"Local is refused", withField, "Local", "", `[tz] does not hold an IANA time zone name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc, err := tt.rule.Location(scope(tt.tz), study)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || loc.String() != tt.want {
				t.Errorf("Location = %v, %v; want %s", loc, err, tt.want)
			}
		})
	}
}
