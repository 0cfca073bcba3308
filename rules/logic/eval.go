package logic

import (
	"fmt"
	"math"
)

// eval evaluates n. It does not allocate unless it fails or a string
// function builds new text.
func (n *node) eval(env Env) (Value, error) {
	switch n.op {
	case opLit:
		return n.val, nil
	case opRef:
		s, ok := env.Lookup(n.ref)
		if !ok {
			return Value{}, nil
		}
		return StringValue(s), nil
	case opParen:
		return n.kids[0].eval(env)
	case opNeg, opPos:
		v, err := n.kids[0].eval(env)
		if err != nil || v.IsBlank() {
			return Value{}, err
		}
		f, ok := v.Number()
		if !ok {
			return Value{}, n.notNumber(n.kids[0])
		}
		if n.op == opNeg {
			f = -f
		}
		return NumberValue(f), nil
	case opAnd, opOr:
		return n.evalLogical(env)
	case opEq, opNe, opLt, opLe, opGt, opGe:
		a, err := n.kids[0].eval(env)
		if err != nil {
			return Value{}, err
		}
		b, err := n.kids[1].eval(env)
		if err != nil {
			return Value{}, err
		}
		return BoolValue(compare(n.op, a, b)), nil
	case opAdd, opSub, opMul, opDiv, opPow:
		return n.evalArith(env)
	case opCall:
		return n.fn.call(n, env)
	}
	panic(fmt.Sprintf("logic: unknown node %d", n.op))
}

// evalLogical evaluates and / or, left to right, stopping as soon as the
// answer is known (so the right side's errors do not matter then).
func (n *node) evalLogical(env Env) (Value, error) {
	for i, k := range n.kids {
		v, err := k.eval(env)
		if err != nil {
			return Value{}, err
		}
		b, ok := truth(v)
		if !ok {
			return Value{}, k.noTruth()
		}
		if n.op == opAnd && !b || n.op == opOr && b || i == len(n.kids)-1 {
			return BoolValue(b), nil
		}
	}
	return Value{}, nil
}

// evalArith carries out + - * / ^. As in REDCap calculated fields, a blank
// operand makes the result blank ([a] + [b] is blank while b is empty; use
// sum() to skip blanks), and so do division by zero and results that are not
// finite numbers. Text that is not a number is an error.
func (n *node) evalArith(env Env) (Value, error) {
	a, err := n.kids[0].eval(env)
	if err != nil {
		return Value{}, err
	}
	b, err := n.kids[1].eval(env)
	if err != nil || a.IsBlank() || b.IsBlank() {
		return Value{}, err
	}
	x, ok := a.Number()
	if !ok {
		return Value{}, n.notNumber(n.kids[0])
	}
	y, ok := b.Number()
	if !ok {
		return Value{}, n.notNumber(n.kids[1])
	}
	switch n.op {
	case opAdd:
		return NumberValue(x + y), nil
	case opSub:
		return NumberValue(x - y), nil
	case opMul:
		return NumberValue(x * y), nil
	case opDiv:
		if y == 0 {
			return Value{}, nil
		}
		return NumberValue(x / y), nil
	}
	return NumberValue(math.Pow(x, y)), nil
}

// Errors name the operand that failed by its source text and say what is
// wrong with it; they never quote the value, because they end up in logs
// and a value is a participant's data.

// notNumber reports that operand k of n is not a number.
func (n *node) notNumber(k *node) error {
	return &EvalError{Expr: n.text, Msg: k.isNot("a number")}
}

// noTruth reports that n, used as a condition, is neither a number nor a
// truth value.
func (n *node) noTruth() error {
	return &EvalError{Expr: n.text, Msg: n.isNot("a number or true/false") + ", so it cannot be a condition: compare it, e.g. " + n.text + " = '1'"}
}

// isNot says that operand k is not what: "[weight] does not hold a
// number", "'abc' is not a number", "concat([a], [b]) does not give a
// number".
func (k *node) isNot(what string) string {
	switch k.op {
	case opRef:
		return k.text + " does not hold " + what
	case opLit:
		return k.text + " is not " + what
	}
	return k.text + " does not give " + what
}
