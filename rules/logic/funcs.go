package logic

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// builtin is a REDCap function. Arguments are evaluated by call itself, so
// if() evaluates only the branch it takes and nothing allocates a slice.
type builtin struct {
	name     string
	min, max int // number of arguments; max < 0: any number from min
	call     func(n *node, env Env) (Value, error)
	check    func(src string, args []*node) error // optional parse-time checks of literal arguments
}

func (b *builtin) arity() string {
	plural := func(k int) string {
		if k == 1 {
			return "1 argument"
		}
		return fmt.Sprintf("%d arguments", k)
	}
	switch {
	case b.max < 0:
		return "at least " + plural(b.min)
	case b.min == b.max:
		return plural(b.min)
	case b.max == b.min+1:
		return fmt.Sprintf("%d or %s", b.min, plural(b.max))
	}
	return fmt.Sprintf("%d to %s", b.min, plural(b.max))
}

var builtins = func() map[string]*builtin {
	m := map[string]*builtin{}
	for _, b := range []*builtin{
		{name: "datediff", min: 3, max: 5, call: fnDatediff, check: checkDatediff},
		{name: "if", min: 3, max: 3, call: fnIf},
		{name: "sum", min: 1, max: -1, call: fnAggregate},
		{name: "mean", min: 1, max: -1, call: fnAggregate},
		{name: "min", min: 1, max: -1, call: fnAggregate},
		{name: "max", min: 1, max: -1, call: fnAggregate},
		{name: "round", min: 1, max: 2, call: fnRound},
		{name: "rounddown", min: 1, max: 2, call: fnRound},
		{name: "roundup", min: 1, max: 2, call: fnRound},
		{name: "abs", min: 1, max: 1, call: fnMath},
		{name: "sqrt", min: 1, max: 1, call: fnMath},
		{name: "mod", min: 2, max: 2, call: fnMod},
		{name: "isnumber", min: 1, max: 1, call: fnIsNumber},
		{name: "isinteger", min: 1, max: 1, call: fnIsNumber},
		{name: "median", min: 1, max: -1, call: fnStats},
		{name: "stdev", min: 1, max: -1, call: fnStats},
		{name: "log", min: 1, max: 2, call: fnLog},
		{name: "exponential", min: 1, max: 1, call: fnMath},
		{name: "isblankormissingcode", min: 1, max: 1, call: fnIsBlankOrMissing},
		{name: "isblanknotmissingcode", min: 1, max: 1, call: fnIsBlankOrMissing},
		{name: "ismissingcode", min: 1, max: 1, call: fnIsBlankOrMissing},
		{name: "hasmissingcode", min: 2, max: 2, call: fnHasMissingCode},
		{name: "year", min: 1, max: 1, call: fnDatePart},
		{name: "month", min: 1, max: 1, call: fnDatePart},
		{name: "day", min: 1, max: 1, call: fnDatePart},
		{name: "contains", min: 2, max: 2, call: fnMatch},
		{name: "not_contain", min: 2, max: 2, call: fnMatch},
		{name: "not_contains", min: 2, max: 2, call: fnMatch},
		{name: "starts_with", min: 2, max: 2, call: fnMatch},
		{name: "ends_with", min: 2, max: 2, call: fnMatch},
		{name: "find", min: 2, max: 2, call: fnFind},
		{name: "left", min: 2, max: 2, call: fnSlice},
		{name: "right", min: 2, max: 2, call: fnSlice},
		{name: "mid", min: 3, max: 3, call: fnSlice},
		{name: "length", min: 1, max: 1, call: fnLength},
		{name: "concat", min: 1, max: -1, call: fnConcat},
		{name: "concat_ws", min: 2, max: -1, call: fnConcat},
		{name: "replace_text", min: 3, max: 3, call: fnReplace},
		{name: "lower", min: 1, max: 1, call: fnText},
		{name: "upper", min: 1, max: 1, call: fnText},
		{name: "trim", min: 1, max: 1, call: fnText},
	} {
		m[b.name] = b
	}
	return m
}()

// lookupBuiltin finds a function by name, ignoring case as REDCap does.
func lookupBuiltin(name string) *builtin {
	if b, ok := builtins[name]; ok {
		return b
	}
	return builtins[strings.ToLower(name)]
}

// suggest returns the known function closest to name when it is a likely
// typo (at most two edits away), or "".
func suggest(name string) string {
	name = strings.ToLower(name)
	best, bestD := "", 3
	for k := range builtins {
		if d := EditDistance(name, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b, in runes: the
// measure every "did you mean" suggestion of nudge uses.
func EditDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// numArg evaluates argument i as a number; blank reports a blank argument.
func numArg(n *node, i int, env Env) (f float64, blank bool, err error) {
	v, err := n.kids[i].eval(env)
	if err != nil || v.IsBlank() {
		return 0, true, err
	}
	f, ok := v.Number()
	if !ok {
		return 0, false, &EvalError{Expr: n.text, Msg: n.fn.name + ": " + n.kids[i].isNot("a number")}
	}
	return f, false, nil
}

// textArg evaluates argument i as text; blank is "".
func textArg(n *node, i int, env Env) (string, error) {
	v, err := n.kids[i].eval(env)
	return v.text(), err
}

func fnIf(n *node, env Env) (Value, error) {
	c, err := n.kids[0].eval(env)
	if err != nil {
		return Value{}, err
	}
	b, ok := truth(c)
	if !ok {
		return Value{}, n.kids[0].noTruth()
	}
	if b {
		return n.kids[1].eval(env)
	}
	return n.kids[2].eval(env)
}

// fnAggregate is sum, mean, min and max. Blank arguments are skipped; when
// all are blank the result is blank.
func fnAggregate(n *node, env Env) (Value, error) {
	var acc float64
	count := 0
	for i := range n.kids {
		f, blank, err := numArg(n, i, env)
		if err != nil {
			return Value{}, err
		}
		if blank {
			continue
		}
		switch {
		case count == 0:
			acc = f
		case n.fn.name == "sum", n.fn.name == "mean":
			acc += f
		case n.fn.name == "min":
			acc = math.Min(acc, f)
		case n.fn.name == "max":
			acc = math.Max(acc, f)
		}
		count++
	}
	if count == 0 {
		return Value{}, nil
	}
	if n.fn.name == "mean" {
		acc /= float64(count)
	}
	return NumberValue(acc), nil
}

// fnRound is round (half away from zero), rounddown (towards −∞) and
// roundup (towards +∞), to a number of decimal places (default 0; may be
// negative). Before rounding, x·10^dp is trimmed to 15 significant digits so
// that binary noise does not decide: round(1.005, 2) = 1.01 and
// rounddown(0.29, 2) = 0.29.
func fnRound(n *node, env Env) (Value, error) {
	x, blank, err := numArg(n, 0, env)
	if err != nil || blank {
		return Value{}, err
	}
	dp := 0.0
	if len(n.kids) == 2 {
		if dp, blank, err = numArg(n, 1, env); err != nil || blank {
			return Value{}, err
		}
	}
	dp = math.Max(-15, math.Min(15, math.Trunc(dp)))
	scale := math.Pow(10, dp)
	v := x * scale
	if v != 0 && !math.IsInf(v, 0) {
		p := math.Pow(10, 14-math.Floor(math.Log10(math.Abs(v))))
		if w := math.Round(v*p) / p; !math.IsInf(v*p, 0) {
			v = w
		}
	}
	switch n.fn.name {
	case "rounddown":
		v = math.Floor(v)
	case "roundup":
		v = math.Ceil(v)
	default:
		v = math.Round(v)
	}
	return NumberValue(v / scale), nil
}

// fnMath is abs, sqrt and exponential (e raised to the number); sqrt of a
// negative number is blank.
func fnMath(n *node, env Env) (Value, error) {
	x, blank, err := numArg(n, 0, env)
	if err != nil || blank {
		return Value{}, err
	}
	switch n.fn.name {
	case "abs":
		return NumberValue(math.Abs(x)), nil
	case "exponential":
		return NumberValue(math.Exp(x)), nil
	}
	return NumberValue(math.Sqrt(x)), nil
}

// fnLog is log(number[, base]): the natural logarithm without a base (or
// with a blank one), otherwise the logarithm to that base. A number or base
// that is zero or negative, and base 1, give blank.
func fnLog(n *node, env Env) (Value, error) {
	x, blank, err := numArg(n, 0, env)
	if err != nil || blank {
		return Value{}, err
	}
	if x <= 0 {
		return Value{}, nil
	}
	if len(n.kids) == 1 {
		return NumberValue(math.Log(x)), nil
	}
	b, blank, err := numArg(n, 1, env)
	switch {
	case err != nil:
		return Value{}, err
	case blank:
		return NumberValue(math.Log(x)), nil
	case b <= 0 || b == 1:
		return Value{}, nil
	}
	return NumberValue(math.Log(x) / math.Log(b)), nil
}

// fnStats is median and stdev. Blank arguments are skipped, as in sum and
// mean; with none left the result is blank. median of an even count is the
// mean of the middle two. stdev is the sample standard deviation (divided
// by n − 1), so it needs two numbers: one gives blank.
func fnStats(n *node, env Env) (Value, error) {
	xs := make([]float64, 0, len(n.kids))
	for i := range n.kids {
		f, blank, err := numArg(n, i, env)
		if err != nil {
			return Value{}, err
		}
		if !blank {
			xs = append(xs, f)
		}
	}
	if len(xs) == 0 {
		return Value{}, nil
	}
	if n.fn.name == "median" {
		slices.Sort(xs)
		mid := len(xs) / 2
		if len(xs)%2 == 1 {
			return NumberValue(xs[mid]), nil
		}
		return NumberValue((xs[mid-1] + xs[mid]) / 2), nil
	}
	if len(xs) < 2 {
		return Value{}, nil
	}
	mean := 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	ss := 0.0
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return NumberValue(math.Sqrt(ss / float64(len(xs)-1))), nil
}

// fnMod is the remainder of a / b with the sign of a; b = 0 gives blank.
func fnMod(n *node, env Env) (Value, error) {
	a, blank, err := numArg(n, 0, env)
	if err != nil || blank {
		return Value{}, err
	}
	b, blank, err := numArg(n, 1, env)
	if err != nil || blank || b == 0 {
		return Value{}, err
	}
	return NumberValue(math.Mod(a, b)), nil
}

// fnIsNumber is isnumber and isinteger. Blank and text that is not a number
// give false; isinteger is true for whole numbers, including "5.0".
func fnIsNumber(n *node, env Env) (Value, error) {
	v, err := n.kids[0].eval(env)
	if err != nil {
		return Value{}, err
	}
	f, ok := v.Number()
	if n.fn.name == "isinteger" {
		ok = ok && f == math.Trunc(f)
	}
	return BoolValue(ok), nil
}

// fnIsBlankOrMissing is isblankormissingcode (blank or a missing-data
// code), isblanknotmissingcode (blank: a blank is never a missing-data
// code) and ismissingcode (a missing-data code, so not blank).
func fnIsBlankOrMissing(n *node, env Env) (Value, error) {
	v, err := n.kids[0].eval(env)
	if err != nil {
		return Value{}, err
	}
	missing := !v.IsBlank() && env.IsMissingCode(v.text())
	switch n.fn.name {
	case "isblanknotmissingcode":
		return BoolValue(v.IsBlank()), nil
	case "ismissingcode":
		return BoolValue(missing), nil
	}
	return BoolValue(v.IsBlank() || missing), nil
}

// fnHasMissingCode is hasmissingcode(value, 'CODE1,CODE2'): the value is one
// of the project's missing-data codes and one of those listed.
func fnHasMissingCode(n *node, env Env) (Value, error) {
	v, err := n.kids[0].eval(env)
	if err != nil {
		return Value{}, err
	}
	list, err := textArg(n, 1, env)
	if err != nil || v.IsBlank() || !env.IsMissingCode(v.text()) {
		return BoolValue(false), err
	}
	for _, c := range strings.Split(list, ",") {
		if strings.TrimSpace(c) == v.text() {
			return BoolValue(true), nil
		}
	}
	return BoolValue(false), nil
}

// fnReplace is replace_text(haystack, search, replace): every occurrence of
// search, matched with case, replaced. An empty search changes nothing.
func fnReplace(n *node, env Env) (Value, error) {
	var args [3]string
	for i := range args {
		s, err := textArg(n, i, env)
		if err != nil {
			return Value{}, err
		}
		args[i] = s
	}
	if args[1] == "" {
		return StringValue(args[0]), nil
	}
	return StringValue(strings.ReplaceAll(args[0], args[1], args[2])), nil
}

// fnMatch is contains, not_contain (REDCap's documented name; not_contains
// is accepted too), starts_with and ends_with, all ignoring
// case. A blank haystack contains nothing but the empty text.
func fnMatch(n *node, env Env) (Value, error) {
	h, err := textArg(n, 0, env)
	if err != nil {
		return Value{}, err
	}
	s, err := textArg(n, 1, env)
	if err != nil {
		return Value{}, err
	}
	h, s = strings.ToLower(h), strings.ToLower(s)
	switch n.fn.name {
	case "contains":
		return BoolValue(strings.Contains(h, s)), nil
	case "not_contains", "not_contain":
		return BoolValue(!strings.Contains(h, s)), nil
	case "starts_with":
		return BoolValue(strings.HasPrefix(h, s)), nil
	}
	return BoolValue(strings.HasSuffix(h, s)), nil
}

// fnFind is find(needle, haystack): the 1-based position of the first
// match, ignoring case, or 0 when there is none.
func fnFind(n *node, env Env) (Value, error) {
	s, err := textArg(n, 0, env)
	if err != nil {
		return Value{}, err
	}
	h, err := textArg(n, 1, env)
	if err != nil {
		return Value{}, err
	}
	h, s = strings.ToLower(h), strings.ToLower(s)
	i := strings.Index(h, s)
	if i < 0 {
		return NumberValue(0), nil
	}
	return NumberValue(float64(utf8.RuneCountInString(h[:i]) + 1)), nil
}

// fnSlice is left(text, n), right(text, n) and mid(text, start, n), counting
// characters (not bytes) from 1. Positions outside the text are clamped.
func fnSlice(n *node, env Env) (Value, error) {
	s, err := textArg(n, 0, env)
	if err != nil {
		return Value{}, err
	}
	r := []rune(s)
	k, blank, err := numArg(n, len(n.kids)-1, env)
	if err != nil || blank {
		return Value{}, err
	}
	count := clampInt(k, 0, len(r))
	switch n.fn.name {
	case "left":
		return StringValue(string(r[:count])), nil
	case "right":
		return StringValue(string(r[len(r)-count:])), nil
	}
	start, blank, err := numArg(n, 1, env)
	if err != nil || blank {
		return Value{}, err
	}
	from := clampInt(start-1, 0, len(r))
	to := clampInt(float64(from)+k, from, len(r))
	return StringValue(string(r[from:to])), nil
}

func clampInt(f float64, lo, hi int) int {
	switch {
	case math.IsNaN(f) || f < float64(lo):
		return lo
	case f > float64(hi):
		return hi
	}
	return int(f)
}

func fnLength(n *node, env Env) (Value, error) {
	s, err := textArg(n, 0, env)
	return NumberValue(float64(utf8.RuneCountInString(s))), err
}

// fnConcat is concat, which joins its arguments as text, and
// concat_ws(separator, …), which puts the separator between them. Blanks add
// nothing, and concat_ws leaves them out with their separator:
// concat_ws(', ', 'a', [blank], 'b') = 'a, b'.
func fnConcat(n *node, env Env) (Value, error) {
	var b strings.Builder
	first, sep := 0, ""
	if n.fn.name == "concat_ws" {
		s, err := textArg(n, 0, env)
		if err != nil {
			return Value{}, err
		}
		first, sep = 1, s
	}
	wrote := false
	for i := first; i < len(n.kids); i++ {
		s, err := textArg(n, i, env)
		if err != nil {
			return Value{}, err
		}
		if s == "" {
			continue
		}
		if wrote {
			b.WriteString(sep)
		}
		b.WriteString(s)
		wrote = true
	}
	return StringValue(b.String()), nil
}

// fnText is lower, upper and trim (spaces at both ends).
func fnText(n *node, env Env) (Value, error) {
	s, err := textArg(n, 0, env)
	if err != nil {
		return Value{}, err
	}
	switch n.fn.name {
	case "lower":
		s = strings.ToLower(s)
	case "upper":
		s = strings.ToUpper(s)
	default:
		s = strings.TrimSpace(s)
	}
	return StringValue(s), nil
}
