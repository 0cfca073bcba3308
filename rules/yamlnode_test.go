package rules

import (
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestValuePos checks that an offset inside each kind of scalar maps to the
// file position where that character is written: every value below holds
// one '^', and its mapped position must point at a '^' in the raw text.
func TestValuePos(t *testing.T) {
	src := strings.Join([]string{
		`plain: x ^ y`,
		`double: "x \t \u00e9 ^"`,
		`single: 'it''s ^'`,
		`literal: |`,
		`  line one`,
		``,
		`    more ^ indented`,
		`folded: >`,
		`  folded one`,
		`  two ^`,
		`nested:`,
		`  - deep: "é ^"`,
	}, "\n") + "\n"
	var errs Errors
	root, s := parseYAML("t.yaml", []byte(src), &errs)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	d := &decoder{src: s, errs: &errs}
	lines := strings.Split(src, "\n")
	var walk func(n *yaml.Node)
	checked := 0
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "^") {
			off := len([]rune(n.Value[:strings.Index(n.Value, "^")]))
			p := d.valuePos(n, off)
			raw := []rune(lines[p.Line-1])
			if p.Col < 1 || p.Col > len(raw) || raw[p.Col-1] != '^' {
				t.Errorf("value %q: offset %d mapped to %d:%d (%q), not to the '^'", n.Value, off, p.Line, p.Col, lines[p.Line-1])
			}
			checked++
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	if checked != 6 {
		t.Errorf("checked %d values, want 6", checked)
	}
}
