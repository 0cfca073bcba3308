package rules

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// referenceSection names the heading of README.md's Reference under which
// the keys of each mapping the loader decodes are listed, by the mapping's
// name in its d.mapping call (the name its errors use). A mapping whose
// name is not here is listed under its own name.
var referenceSection = map[string]string{
	"the config":  "nudge.yaml",
	"a project":   "projects[]",
	"opt_out":     "projects[].opt_out",
	"a rule file": "rule files",
	"a rule":      "rules[]",
	"repeat":      "rules[].repeat",
	"window":      "rules[].window",
	"write_back":  "rules[].write_back",
	"start":       "rules[].start",
	"every":       "rules[].every",
	"remind":      "rules[].remind",
	"fallback":    "rules[].fallback",
	"a reply":     "replies[]",
}

// loaderMappings finds every d.mapping(node, "name", "key", …) call in the
// package's source and returns the keys each accepts, by section.
func loaderMappings(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	out := map[string][]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "mapping" || len(call.Args) < 3 {
				return true
			}
			var lits []string
			for _, a := range call.Args[1:] {
				lit, ok := a.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: the keys of a mapping must be string literals, so that this test can read them", fset.Position(a.Pos()))
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				lits = append(lits, s)
			}
			if call.Ellipsis.IsValid() {
				t.Fatalf("%s: the keys of a mapping must be listed literally", fset.Position(call.Pos()))
			}
			section := lits[0]
			if s, ok := referenceSection[section]; ok {
				section = s
			}
			out[section] = append(out[section], lits[1:]...)
			return true
		})
	}
	if len(out) == 0 {
		t.Fatal("no d.mapping calls found")
	}
	return out
}

var (
	headingRE = regexp.MustCompile("^#{3,4} `([^`]+)`")
	rowRE     = regexp.MustCompile("^\\| `([a-z_]+)` \\|")
)

// readmeReference reads the tables of README.md's "## Reference" section:
// the keys of each "### `section`" or "#### `section`" heading, and
// whether each row fills its type, default and example cells.
func readmeReference(t *testing.T) (keys map[string][]string, incomplete []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	keys = map[string][]string{}
	in, section := false, ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Reference"
			section = ""
			continue
		case !in:
			continue
		}
		if m := headingRE.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		m := rowRE.FindStringSubmatch(line)
		if m == nil || section == "" {
			continue
		}
		keys[section] = append(keys[section], m[1])
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) < 4 || slices.ContainsFunc(cells[1:4], func(c string) bool { return strings.TrimSpace(c) == "" }) {
			incomplete = append(incomplete, section+"."+m[1])
		}
	}
	return keys, incomplete
}

// TestReferenceListsEveryKey: README.md's Reference lists every key
// nudge.yaml and rule files accept (every key of every d.mapping call of
// the loader), each with its type, default and an example, and no key the
// loader refuses.
func TestReferenceListsEveryKey(t *testing.T) {
	loader := loaderMappings(t)
	readme, incomplete := readmeReference(t)
	if len(readme) == 0 {
		t.Fatal("README.md has no \"## Reference\" section with key tables")
	}
	var sections []string
	for s := range loader {
		sections = append(sections, s)
	}
	sort.Strings(sections)
	for _, s := range sections {
		doc, ok := readme[s]
		if !ok {
			t.Errorf("README.md Reference: no table under a heading \"### `%s`\" (keys %s)", s, strings.Join(loader[s], ", "))
			continue
		}
		for _, k := range loader[s] {
			if !slices.Contains(doc, k) {
				t.Errorf("README.md Reference, `%s`: key `%s` is accepted by the loader but not listed", s, k)
			}
		}
		for _, k := range doc {
			if !slices.Contains(loader[s], k) {
				t.Errorf("README.md Reference, `%s`: key `%s` is listed but the loader refuses it", s, k)
			}
		}
	}
	for s := range readme {
		if _, ok := loader[s]; !ok {
			t.Errorf("README.md Reference: section `%s` is no mapping the loader reads", s)
		}
	}
	for _, k := range incomplete {
		t.Errorf("README.md Reference: `%s` needs a type, a default and an example", k)
	}
}
