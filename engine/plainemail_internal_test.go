package engine

import (
	"net/mail"
	"testing"
)

// TestPlainEmailAsParseAddress checks that every address plainEmail takes
// as it is, mail.ParseAddress also takes, unchanged: the planner's short
// cut for plain addresses reads them as before.
func TestPlainEmailAsParseAddress(t *testing.T) {
	for _, raw := range []string{
		"p1@example.org", "Ana.Lopez+study@Mail.Example.EDU", "a_b-c@x-y.z", "x@y", "1@2.3",
		"a..b@example.org", ".a@example.org", "a.@example.org", "a@.example.org", "a@example..org", "a@example.org.",
		"a@b@c", "@example.org", "a@", "a b@example.org", "Ana <a@example.org>", "a@exa_mple.org", "a+@ex+ample.org",
		"é@example.org", "a@example.org ", "\"a\"@example.org", "a@[127.0.0.1]", "a(c)@example.org", "",
	} {
		if !plainEmail(raw) {
			continue
		}
		addr, err := mail.ParseAddress(raw)
		if err != nil || addr.Address != raw {
			t.Errorf("plainEmail(%q) is true, ParseAddress gives %v, %v", raw, addr, err)
		}
	}
	for _, raw := range []string{"a..b@example.org", "a@b@c", "Ana <a@example.org>", "a@exa_mple.org", "é@example.org"} {
		if plainEmail(raw) {
			t.Errorf("plainEmail(%q) is true", raw)
		}
	}
	if !plainEmail("p1@example.org") {
		t.Error("plainEmail(p1@example.org) is false")
	}
}
