package rules

import (
	"fmt"
	"sort"
	"strings"

	"github.com/nudge-study/nudge/rules/logic"
)

// Pos is a position in a config, rule or template file. Line and Col are
// 1-based; zero means unknown.
type Pos struct {
	File      string
	Line, Col int
}

// Before orders positions by file name, then line, then column.
func (p Pos) Before(q Pos) bool {
	if p.File != q.File {
		return p.File < q.File
	}
	if p.Line != q.Line {
		return p.Line < q.Line
	}
	return p.Col < q.Col
}

// Sort orders the errors by position, stably.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Pos.Before(es[j].Pos) })
}

// String formats the position as FILE:LINE:COL, leaving out unknown parts.
func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	default:
		return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
	}
}

// Error is one problem in the study's files: where it is, the rule it
// belongs to (if any) and what is wrong. A warning (from Study.Warnings)
// does not stop nudge; an error does.
type Error struct {
	Pos     Pos
	Rule    string
	Msg     string
	Warning bool
}

// Severity is "warning" or "error".
func (e *Error) Severity() string {
	if e.Warning {
		return "warning"
	}
	return "error"
}

// Error formats the problem as `FILE:LINE:COL: rule "name": msg`, with
// "warning: " after the position for a warning.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	if e.Warning {
		b.WriteString("warning: ")
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, "rule %q: ", e.Rule)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found at once; loading and checking never stop
// at the first one.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or nil when there are none (avoiding a
// non-nil error interface holding an empty list).
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// sortErrors orders errors by file (in the order the files were first
// seen), then line and column.
func sortErrors(es Errors, fileOrder []string) {
	rank := make(map[string]int, len(fileOrder))
	for i, f := range fileOrder {
		if _, ok := rank[f]; !ok {
			rank[f] = i
		}
	}
	fileRank := func(f string) int {
		if r, ok := rank[f]; ok {
			return r
		}
		return len(fileOrder)
	}
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if ra, rb := fileRank(a.File), fileRank(b.File); ra != rb {
			return ra < rb
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// suggest returns the candidate closest to word by edit distance, or ""
// when none is close enough to be a likely typo.
func suggest(word string, candidates []string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := logic.EditDistance(word, c)
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := 2
	if l := len([]rune(word)) / 3; l > limit {
		limit = l
	}
	if bestDist < 0 || bestDist > limit || bestDist >= len([]rune(word)) {
		return ""
	}
	return best
}

// didYouMean formats a suggestion as " (did you mean 'x'?)", or "" when
// there is none. quote wraps the suggestion (e.g. "'%s'" or "[%s]").
func didYouMean(word string, candidates []string, quote string) string {
	s := suggest(word, candidates)
	if s == "" {
		return ""
	}
	return " (did you mean " + fmt.Sprintf(quote, s) + "?)"
}
