package templates

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/render")

// TestGolden renders every template in testdata/render against the fixture
// record and compares the output with <template>.golden.
func TestGolden(t *testing.T) {
	paths, err := filepath.Glob("testdata/render/*.txt")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no templates in testdata/render (%v)", err)
	}
	d, rec := testDict(), testRecord()
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			var b strings.Builder
			switch {
			case strings.HasSuffix(path, SMSExt):
				s, err := LoadSMS(path)
				if err != nil {
					t.Fatal(err)
				}
				body, err := s.Body.Render(rec, d)
				if err != nil {
					t.Fatal(err)
				}
				seg := Count(body)
				fmt.Fprintf(&b, "name: %s\nsegments: %s, %d units, %d\n---\n%s\n", s.Name, seg.Encoding, seg.Units, seg.Count, body)
			case strings.HasSuffix(path, EmailExt):
				e, err := LoadEmail(path)
				if err != nil {
					t.Fatal(err)
				}
				subject, err := e.Subject.Render(rec, d)
				if err != nil {
					t.Fatal(err)
				}
				text, err := e.Text.Render(rec, d)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "name: %s\nsubject: %s\n--- text\n%s\n", e.Name, subject, text)
				if e.HTML != nil {
					html, err := e.HTML.Render(rec, d)
					if err != nil {
						t.Fatal(err)
					}
					fmt.Fprintf(&b, "--- html\n%s\n", html)
				}
			default:
				t.Fatalf("%s is neither %s nor %s", path, SMSExt, EmailExt)
			}
			checkGolden(t, path+".golden", b.String())
		})
	}
}

func TestLoadSMS(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		file, content, want string
	}{
		{"a.sms.txt", "Hi [first_name]\n", "Hi Ana"},
		{"crlf.sms.txt", "Hi\r\n[first_name]\r\n", "Hi\nAna"},
		{"two-newlines.sms.txt", "Hi\n\n", "Hi\n"},
		{"no-newline.sms.txt", "Hi", "Hi"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join(dir, tt.file)
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := LoadSMS(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.TrimSuffix(tt.file, SMSExt); s.Name != want {
				t.Errorf("Name = %q, want %q", s.Name, want)
			}
			got, err := s.Body.Render(testRecord(), testDict())
			if err != nil || got != tt.want {
				t.Errorf("body renders %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestLoadEmailWithoutHTML(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "plain.email.txt")
	if err := os.WriteFile(path, []byte("subject:Hi [first_name]\r\n\r\nBody\r\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := LoadEmail(path)
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "plain" || e.HTML != nil || e.Subject.Source() != "Hi [first_name]" || e.Text.Source() != "Body" {
		t.Errorf("got name %q subject %q text %q html %v", e.Name, e.Subject.Source(), e.Text.Source(), e.HTML)
	}
}

// TestLoadErrors loads one fixture per bad input and checks every reported
// position and message.
func TestLoadErrors(t *testing.T) {
	tests := []struct {
		file string
		want []string // FILE:LINE:COL: message prefix, one per error
	}{
		{"no-subject.email.txt", []string{`no-subject.email.txt:1:1: an email template starts with a "Subject: …" line`}},
		{"empty-subject.email.txt", []string{"empty-subject.email.txt:1:12: the subject is empty"}},
		{"no-blank-line.email.txt", []string{"no-blank-line.email.txt:2:1: leave line 2 blank"}},
		{"two-errors.email.txt", []string{
			"two-errors.email.txt:1:13: unclosed [",
			"two-errors.email.txt:3:6: unclosed [",
		}},
		{"no-body.email.txt", []string{"no-body.email.txt:3:1: the email has no body"}},
		{"bad-html.email.txt", []string{"bad-html.email.html:2:16: unknown modifier :lable"}},
		{"unclosed.sms.txt", []string{"unclosed.sms.txt:2:10: unclosed ["}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tt.file)
			var err error
			if strings.HasSuffix(path, SMSExt) {
				_, err = LoadSMS(path)
			} else {
				_, err = LoadEmail(path)
			}
			if err == nil {
				t.Fatal("loaded without error")
			}
			var list []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			} else {
				list = []error{err}
			}
			if len(list) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(list), len(tt.want), err)
			}
			for i, e := range list {
				var te *Error
				if !errors.As(e, &te) {
					t.Fatalf("error %v is %T, want *Error", e, e)
				}
				if want := filepath.Join("testdata", "bad", tt.want[i]); !strings.HasPrefix(te.Error(), want) {
					t.Errorf("error %d = %q\nwant prefix %q", i, te.Error(), want)
				}
			}
		})
	}
}

func TestLoadWrongName(t *testing.T) {
	if _, err := LoadSMS("testdata/render/visit.email.txt"); err == nil || !strings.Contains(err.Error(), "<name>.sms.txt") {
		t.Errorf("LoadSMS of an email file: %v", err)
	}
	if _, err := LoadEmail("testdata/render/baseline-reminder.sms.txt"); err == nil || !strings.Contains(err.Error(), "<name>.email.txt") {
		t.Errorf("LoadEmail of an SMS file: %v", err)
	}
	if _, err := LoadSMS("testdata/render/missing.sms.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSMS of a missing file: %v, want ErrNotExist", err)
	}
}

// checkGolden compares got with a golden file, or rewrites the file under
// -update.
func checkGolden(t *testing.T, golden, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
	}
}
