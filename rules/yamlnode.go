package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// source is one YAML file: its display path and raw lines, kept to map
// offsets inside a scalar back to file columns.
type source struct {
	file  string
	lines []string
}

// decoder walks yaml.v3 nodes strictly, collecting every error with its
// position instead of stopping at the first.
type decoder struct {
	src  *source
	rule string // name of the rule being decoded, for error context
	errs *Errors
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses data as a single YAML document. It returns the document's
// root node (nil for an empty file).
func parseYAML(file string, data []byte, errs *Errors) (*yaml.Node, *source) {
	src := &source{file: file, lines: strings.Split(string(data), "\n")}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, src
		}
		*errs = append(*errs, yamlError(file, err))
		return nil, src
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		*errs = append(*errs, &Error{Pos: Pos{File: file, Line: extra.Line, Col: extra.Column},
			Msg: "a second YAML document ('---') is not allowed: keep one document per file"})
	} else if !errors.Is(err, io.EOF) {
		*errs = append(*errs, yamlError(file, err))
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0], src
	}
	return nil, src
}

// yamlError turns a yaml.v3 syntax error into an Error with its line.
func yamlError(file string, err error) *Error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 reports the line where the enclosing block starts, so the
		// mistake may be further down.
		return &Error{Pos: Pos{File: file, Line: line}, Msg: "invalid YAML at or below this line: " + m[2] +
			" (check the indentation, and quote values that start with [ { * & or contain ': ')"}
	}
	return &Error{Pos: Pos{File: file}, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func (d *decoder) pos(n *yaml.Node) Pos {
	return Pos{File: d.src.file, Line: n.Line, Col: n.Column}
}

func (d *decoder) errorAt(p Pos, format string, args ...any) {
	*d.errs = append(*d.errs, &Error{Pos: p, Rule: d.rule, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errorAt(d.pos(n), format, args...)
}

// secretKeys are keys that would hold a literal secret, mapped to the
// environment-variable form that must be used instead.
var secretKeys = map[string]string{
	"token":       "token_env",
	"password":    "password_env",
	"auth_token":  "auth_token_env",
	"account_sid": "account_sid_env",
}

// mapping is a decoded YAML mapping: each known key's key and value node.
type mapping struct {
	keys    map[string]*yaml.Node
	vals    map[string]*yaml.Node
	secrets map[string]bool // *_env keys whose literal secret form was given (and reported)
}

// get returns the value node of key, or nil when the key is absent or null.
func (m *mapping) get(key string) *yaml.Node {
	if m == nil {
		return nil
	}
	v := m.vals[key]
	if v == nil || (v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null") {
		return nil
	}
	return v
}

// has reports whether key is present with a non-null value.
func (m *mapping) has(key string) bool { return m.get(key) != nil }

// missing reports whether a required key is absent and not already
// reported as a literal secret given in its place.
func (m *mapping) missing(key string) bool { return !m.has(key) && !m.secrets[key] }

// mapping checks that n is a mapping whose keys are all known and unique.
// Unknown keys, duplicate keys and literal secrets are reported. It
// returns nil when n is not a mapping.
func (d *decoder) mapping(n *yaml.Node, what string, known ...string) *mapping {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping (key: value), got %s", what, describe(n))
		return nil
	}
	m := &mapping{keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}, secrets: map[string]bool{}}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, "%s: keys must be plain names, got %s", what, describe(k))
			continue
		}
		key := k.Value
		if prev, dup := m.keys[key]; dup {
			d.errorf(k, "duplicate key '%s' in %s (first at line %d): remove one", key, what, prev.Line)
			continue
		}
		if !contains(known, key) {
			if env, secret := secretKeys[key]; secret {
				m.secrets[env] = true
				d.errorf(k, "literal secret '%s' is not allowed: put it in an environment variable and name that variable with '%s'", key, env)
			} else {
				d.errorf(k, "unknown key '%s' in %s%s: use one of %s", key, what, didYouMean(key, known, "'%s'"), strings.Join(known, ", "))
			}
			continue
		}
		m.keys[key], m.vals[key] = k, v
	}
	return m
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// describe names a node's kind for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "nothing"
		case "!!bool":
			return n.Value
		case "!!int", "!!float":
			return "the number " + n.Value
		default:
			return strconv.Quote(n.Value)
		}
	}
	return "something else"
}

// str decodes a scalar as a string. Any non-null scalar is accepted as
// written (so an unquoted +14155550100 stays text).
func (d *decoder) str(n *yaml.Node, what string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		d.errorf(n, "%s: expected a string, got %s", what, describe(n))
		return "", false
	}
	return n.Value, true
}

// integer decodes a scalar tagged as an integer.
func (d *decoder) integer(n *yaml.Node, what string) (int, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v, err := strconv.Atoi(n.Value)
		if err == nil {
			return v, true
		}
	}
	d.errorf(n, "%s: expected a whole number, got %s", what, describe(n))
	return 0, false
}

// number decodes an integer or decimal scalar.
func (d *decoder) number(n *yaml.Node, what string) (float64, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float") {
		v, err := strconv.ParseFloat(n.Value, 64)
		if err == nil {
			return v, true
		}
	}
	d.errorf(n, "%s: expected a number, got %s", what, describe(n))
	return 0, false
}

// boolean decodes a true/false scalar.
func (d *decoder) boolean(n *yaml.Node, what string) (bool, bool) {
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		return n.Value == "true" || n.Value == "True" || n.Value == "TRUE", true
	}
	d.errorf(n, "%s: expected true or false, got %s", what, describe(n))
	return false, false
}

// list checks that n is a sequence and returns its items.
func (d *decoder) list(n *yaml.Node, what string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s: expected a list, got %s", what, describe(n))
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items, true
}

// valuePos maps a 0-based rune offset inside scalar n's value to its
// position in the file. It accounts for quotes and escapes on one line and
// for literal (|) and folded (>) block scalars; for anything it cannot map
// exactly it points at the value's start.
func (d *decoder) valuePos(n *yaml.Node, offset int) Pos {
	p := d.pos(n)
	if offset <= 0 && n.Style != yaml.LiteralStyle && n.Style != yaml.FoldedStyle {
		if n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle {
			p.Col++
		}
		return p
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		return d.blockPos(n, offset)
	}
	if n.Line < 1 || n.Line > len(d.src.lines) {
		return p
	}
	raw := []rune(d.src.lines[n.Line-1])
	i := n.Column - 1 // index of the value's first rune (or its quote)
	if i < 0 || i >= len(raw) {
		return p
	}
	switch n.Style {
	case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
		i++
	}
	for k := 0; k < offset && i < len(raw); k++ {
		i += rawWidth(raw, i, n.Style)
	}
	if i >= len(raw) {
		// The value continues on later lines; keep the start.
		return d.valuePos(n, 0)
	}
	p.Col = i + 1
	return p
}

// rawWidth is how many raw runes at raw[i] encode one value rune.
func rawWidth(raw []rune, i int, style yaml.Style) int {
	switch style {
	case yaml.SingleQuotedStyle:
		if raw[i] == '\'' && i+1 < len(raw) && raw[i+1] == '\'' {
			return 2
		}
	case yaml.DoubleQuotedStyle:
		if raw[i] == '\\' && i+1 < len(raw) {
			switch raw[i+1] {
			case 'x':
				return 4
			case 'u':
				return 6
			case 'U':
				return 10
			}
			return 2
		}
	}
	return 1
}

// blockPos maps an offset inside a literal or folded block scalar. Content
// lines start on the line after the indicator; each line's block
// indentation is skipped. In a folded scalar blank lines add no character
// (the line break before them became the newline).
func (d *decoder) blockPos(n *yaml.Node, offset int) Pos {
	start := d.pos(n)
	start.Col = 1
	indent := -1
	remaining := offset
	for ln := n.Line + 1; ln <= len(d.src.lines); ln++ {
		raw := d.src.lines[ln-1]
		body := strings.TrimLeft(raw, " ")
		if body == "" {
			if n.Style == yaml.LiteralStyle {
				if remaining == 0 {
					return Pos{File: d.src.file, Line: ln, Col: 1}
				}
				remaining--
			}
			continue
		}
		lead := len(raw) - len(body)
		if indent < 0 {
			indent = lead
		}
		if lead < indent {
			break // the block ended
		}
		content := []rune(raw[indent:])
		if remaining <= len(content) {
			return Pos{File: d.src.file, Line: ln, Col: utf8.RuneCountInString(raw[:indent]) + remaining + 1}
		}
		remaining -= len(content) + 1 // the line break (or folded space)
	}
	return start
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
