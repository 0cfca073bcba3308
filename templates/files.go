package templates

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"
)

// File name suffixes of templates.
const (
	SMSExt       = ".sms.txt"
	EmailExt     = ".email.txt"
	EmailHTMLExt = ".email.html"
)

// SMS is a text message template loaded from <Name>.sms.txt.
type SMS struct {
	Name string
	Body *Text
}

// Email is an email template loaded from <Name>.email.txt and, when present,
// <Name>.email.html.
type Email struct {
	Name    string
	Subject *Text
	Text    *Text // the text/plain body; may render empty when HTML is set
	HTML    *Text // nil without an .email.html file
}

// LoadSMS reads and parses an SMS template file, <name>.sms.txt. The body is
// the whole file with Windows line ends made "\n" and one trailing line
// break removed.
func LoadSMS(path string) (*SMS, error) {
	name, ok := strings.CutSuffix(filepath.Base(path), SMSExt)
	if !ok || name == "" {
		return nil, fmt.Errorf("%s: an SMS template file is named <name>%s", path, SMSExt)
	}
	src, err := readText(path)
	if err != nil {
		return nil, err
	}
	body, err := Parse(path, trimOneNewline(src))
	if err != nil {
		return nil, err
	}
	return &SMS{Name: name, Body: body}, nil
}

// LoadEmail reads and parses an email template, <name>.email.txt:
//
//	Subject: Your visit on [visit_date]
//
//	Hi [first_name], …
//
// The first line is the subject, the second is blank, the rest is the text
// body (one trailing line break removed). An HTML body may sit beside it in
// <name>.email.html; its piped values are HTML-escaped when rendered. All
// syntax errors of the subject and both bodies are returned, joined.
func LoadEmail(path string) (*Email, error) {
	name, ok := strings.CutSuffix(filepath.Base(path), EmailExt)
	if !ok || name == "" {
		return nil, fmt.Errorf("%s: an email template file is named <name>%s", path, EmailExt)
	}
	src, err := readText(path)
	if err != nil {
		return nil, err
	}
	e := &Email{Name: name}
	var errs []error
	first, rest, _ := strings.Cut(src, "\n")
	label, subject, ok := strings.Cut(first, ":")
	subject = strings.TrimLeft(subject, " \t")
	switch {
	case !ok || !strings.EqualFold(label, "Subject"):
		return nil, &Error{File: path, Line: 1, Col: 1,
			Msg: `an email template starts with a "Subject: …" line, then a blank line, then the text body`}
	case strings.TrimSpace(subject) == "":
		return nil, &Error{File: path, Line: 1, Col: utf8.RuneCountInString(first) + 1, Msg: "the subject is empty: write it after \"Subject:\""}
	}
	col := utf8.RuneCountInString(first[:len(first)-len(subject)]) + 1
	if e.Subject, err = parse(path, subject, 1, col, false); err != nil {
		errs = append(errs, err)
	}
	blank, body, _ := strings.Cut(rest, "\n")
	if strings.TrimSpace(blank) != "" {
		return nil, &Error{File: path, Line: 2, Col: 1,
			Msg: "leave line 2 blank: the text body starts on line 3, after the Subject line and a blank line"}
	}
	body = trimOneNewline(body)
	if e.Text, err = parse(path, body, 3, 1, false); err != nil {
		errs = append(errs, err)
	}

	htmlPath := strings.TrimSuffix(path, EmailExt) + EmailHTMLExt
	hsrc, err := readText(htmlPath)
	switch {
	case err == nil:
		if e.HTML, err = ParseHTML(htmlPath, trimOneNewline(hsrc)); err != nil {
			errs = append(errs, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if strings.TrimSpace(body) == "" && (e.HTML == nil || strings.TrimSpace(e.HTML.Source()) == "") {
		return nil, &Error{File: path, Line: 3, Col: 1,
			Msg: "the email has no body: write the text from line 3 on, or add " + name + EmailHTMLExt}
	}
	return e, nil
}

// readText reads a template file as text with "\r\n" line ends made "\n".
func readText(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read template: %w", err)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n"), nil
}

// trimOneNewline removes the line break that ends a file's last line.
func trimOneNewline(s string) string {
	return strings.TrimSuffix(s, "\n")
}
