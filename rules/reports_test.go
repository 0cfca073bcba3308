package rules

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReportsSettings(t *testing.T) {
	const smtp = "smtp: { host: smtp.example.edu, from: \"Study <study@example.edu>\" }\n"
	tests := []struct {
		name    string
		config  string
		want    Reports // Dir relative to the config's folder; checked when wantErr is ""
		wantErr string
	}{
		{name: "defaults", config: smtp + "reports: { to: [team@example.edu] }",
			want: Reports{To: []string{"team@example.edu"}, When: ReportOnChanges, DailyAt: 8 * 60, Keep: 30}},
		{name: "all set", config: smtp + `reports: { to: [a@example.edu, b@example.edu], when: daily, daily_at: "07:30", dir: reports, keep: 5 }`,
			want: Reports{To: []string{"a@example.edu", "b@example.edu"}, When: ReportDaily, DailyAt: 7*60 + 30, Dir: "reports", Keep: 5}},
		{name: "files only, no smtp", config: "reports: { dir: out/reports }",
			want: Reports{When: ReportOnChanges, DailyAt: 8 * 60, Dir: "out/reports", Keep: 30}},
		{name: "email without smtp", config: "reports: { to: [team@example.edu] }",
			wantErr: "reports.to needs an smtp: section"},
		{name: "not an address", config: smtp + "reports: { to: [team] }",
			wantErr: `reports.to: "team" is not an email address`},
		{name: "bad when", config: smtp + "reports: { to: [team@example.edu], when: hourly }",
			wantErr: `reports.when: "hourly" is not one of changes`},
		{name: "bad daily_at", config: smtp + `reports: { to: [team@example.edu], daily_at: "8am" }`,
			wantErr: `reports.daily_at: "8am" is not a time of day`},
		{name: "keep 0", config: "reports: { dir: r, keep: 0 }", wantErr: "reports.keep: 0 is not a positive count"},
		{name: "neither to nor dir", config: "reports: { when: daily }", wantErr: "reports: give to"},
		{name: "unknown key", config: "reports: { dir: r, kep: 3 }", wantErr: "unknown key 'kep' in reports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeStudy(t, studyHead+tt.config+"\n")
			s, err := Load(path)
			if tt.wantErr != "" {
				var errs Errors
				if !errors.As(err, &errs) || len(errs) != 1 || !strings.Contains(errs.Error(), tt.wantErr) {
					t.Fatalf("Load error = %v\nwant one error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := *s.Config.Reports
			if tt.want.Dir != "" {
				tt.want.Dir = filepath.Join(filepath.Dir(path), tt.want.Dir)
			}
			if !slices.Equal(got.To, tt.want.To) || got.When != tt.want.When || got.DailyAt != tt.want.DailyAt ||
				got.Dir != tt.want.Dir || got.Keep != tt.want.Keep {
				t.Errorf("reports = %+v\nwant %+v", got, tt.want)
			}
			if uses := s.Uses(ChannelEmail); uses != (len(tt.want.To) > 0) {
				t.Errorf("Uses(email) = %v with reports.to %v", uses, tt.want.To)
			}
		})
	}
}
