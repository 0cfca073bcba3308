package storage

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestParticipants(t *testing.T) {
	const ana, ben, cy = "+14155550101", "+14155550102", "+14155550103"
	type replace struct {
		project string
		ps      []Participant
		at      time.Duration // after t0
		wantErr error
	}
	tests := []struct {
		name     string
		replaces []replace
		want     map[string][]Participant // phone → ParticipantsByPhone
	}{
		{
			name: "one phone in two projects",
			replaces: []replace{
				{project: "site_a", ps: []Participant{{Phone: ana, Record: "1", Event: "baseline_arm_1"}, {Phone: ben, Record: "2"}}},
				{project: "site_b", ps: []Participant{{Phone: ana, Project: "site_b", Record: "9"}}, at: time.Minute},
			},
			want: map[string][]Participant{
				ana: {
					{Phone: ana, Project: "site_a", Record: "1", Event: "baseline_arm_1", UpdatedAt: t0},
					{Phone: ana, Project: "site_b", Record: "9", UpdatedAt: t0.Add(time.Minute)},
				},
				ben: {{Phone: ben, Project: "site_a", Record: "2", UpdatedAt: t0}},
				cy:  nil,
			},
		},
		{
			name: "a later export replaces only its own project",
			replaces: []replace{
				{project: "site_a", ps: []Participant{{Phone: ana, Record: "1"}, {Phone: ben, Record: "2"}}},
				{project: "site_b", ps: []Participant{{Phone: ben, Record: "5"}}},
				{project: "site_a", ps: []Participant{{Phone: cy, Record: "2"}}, at: time.Hour},
			},
			want: map[string][]Participant{
				ana: nil,
				ben: {{Phone: ben, Project: "site_b", Record: "5", UpdatedAt: t0}},
				cy:  {{Phone: cy, Project: "site_a", Record: "2", UpdatedAt: t0.Add(time.Hour)}},
			},
		},
		{
			name: "siblings sharing a phone, repeated rows stored once",
			replaces: []replace{
				{project: "site_a", ps: []Participant{{Phone: ana, Record: "2"}, {Phone: ana, Record: "1"}, {Phone: ana, Record: "2"}}},
			},
			want: map[string][]Participant{
				ana: {
					{Phone: ana, Project: "site_a", Record: "1", UpdatedAt: t0},
					{Phone: ana, Project: "site_a", Record: "2", UpdatedAt: t0},
				},
			},
		},
		{
			name: "an empty export clears the project",
			replaces: []replace{
				{project: "site_a", ps: []Participant{{Phone: ana, Record: "1"}}},
				{project: "site_a", ps: nil},
			},
			want: map[string][]Participant{ana: nil},
		},
		{
			name: "an invalid list changes nothing",
			replaces: []replace{
				{project: "site_a", ps: []Participant{{Phone: ana, Record: "1"}}},
				{project: "site_a", ps: []Participant{{Phone: ben, Record: "2"}, {Phone: "", Record: "3"}}, wantErr: ErrInvalid},
				{project: "site_a", ps: []Participant{{Phone: ben, Project: "site_b", Record: "2"}}, wantErr: ErrInvalid},
				{project: "", ps: []Participant{{Phone: ben, Record: "2"}}, wantErr: ErrInvalid},
			},
			want: map[string][]Participant{
				ana: {{Phone: ana, Project: "site_a", Record: "1", UpdatedAt: t0}},
				ben: nil,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			for i, r := range tt.replaces {
				err := s.ReplaceParticipants(ctx, r.project, r.ps, t0.Add(r.at))
				if !errors.Is(err, r.wantErr) {
					t.Fatalf("replace %d: err = %v, want %v", i, err, r.wantErr)
				}
			}
			for phone, want := range tt.want {
				got, err := s.ParticipantsByPhone(ctx, phone)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("ParticipantsByPhone(%s) =\n%+v, %v\nwant\n%+v", phone, got, err, want)
				}
			}
		})
	}
}
