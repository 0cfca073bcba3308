package sms_test

import (
	"testing"

	"github.com/nudge-study/nudge/engine/sms"
)

func TestIsFinal(t *testing.T) {
	final := map[string]bool{
		"delivered": true, "undelivered": true, "failed": true, "canceled": true, "received": true, "read": true,
		"accepted": false, "scheduled": false, "queued": false, "sending": false, "sent": false, "receiving": false,
		"": false, "something-new": false,
	}
	for status, want := range final {
		if got := sms.IsFinal(status); got != want {
			t.Errorf("IsFinal(%q) = %v, want %v", status, got, want)
		}
	}
}

func TestIsStatusAfter(t *testing.T) {
	tests := []struct {
		old, next string
		want      bool
	}{
		{"", "queued", true},
		{"", "something-new", false},
		{"accepted", "queued", true},
		{"queued", "sending", true},
		{"queued", "sent", true},
		{"queued", "delivered", true},
		{"sending", "sent", true},
		{"sent", "delivered", true},
		{"sent", "undelivered", true},
		{"sending", "failed", true},
		{"sent", "sending", false},
		{"sent", "queued", false},
		{"sent", "sent", false},
		{"delivered", "undelivered", false},
		{"undelivered", "delivered", false},
		{"failed", "sent", false},
		{"delivered", "read", false},
		{"sent", "something-new", false},
		{"something-new", "sent", true},
	}
	for _, tt := range tests {
		if got := sms.IsStatusAfter(tt.old, tt.next); got != tt.want {
			t.Errorf("IsStatusAfter(%q, %q) = %v, want %v", tt.old, tt.next, got, tt.want)
		}
	}
}
