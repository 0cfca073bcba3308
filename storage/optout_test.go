package storage

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestOptOutAndIn(t *testing.T) {
	type event struct {
		phone string
		out   bool
		at    time.Duration // after t0
	}
	tests := []struct {
		name   string
		events []event
		want   map[string]bool
	}{
		{"stop", []event{{"+1555", true, 0}}, map[string]bool{"+1555": true}},
		{"stop then start", []event{{"+1555", true, 0}, {"+1555", false, time.Minute}}, map[string]bool{}},
		{"start then stop", []event{{"+1555", false, 0}, {"+1555", true, time.Minute}}, map[string]bool{"+1555": true}},
		{"late older stop is ignored", []event{{"+1555", false, time.Minute}, {"+1555", true, 0}}, map[string]bool{}},
		{"several numbers", []event{{"+1555", true, 0}, {"+1666", true, 0}, {"+1777", false, 0}},
			map[string]bool{"+1555": true, "+1666": true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			for _, e := range tt.events {
				f := s.OptIn
				if e.out {
					f = s.OptOut
				}
				if err := f(ctx, e.phone, "sms", t0.Add(e.at)); err != nil {
					t.Fatal(err)
				}
			}
			got, err := s.OptedOut(ctx)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("OptedOut = %v, %v; want %v", got, err, tt.want)
			}
			for _, phone := range []string{"+1555", "+1666", "+1777", "+1888"} {
				if out, err := s.IsOptedOut(ctx, phone); err != nil || out != tt.want[phone] {
					t.Errorf("IsOptedOut(%s) = %v, %v; want %v", phone, out, err, tt.want[phone])
				}
			}
		})
	}
}

func TestOptOutRejectsEmpty(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.OptOut(context.Background(), "", "sms", t0); !errors.Is(err, ErrInvalid) {
		t.Errorf("OptOut of empty number: %v, want ErrInvalid", err)
	}
}
