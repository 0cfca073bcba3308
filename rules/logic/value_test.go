package logic

import (
	"math"
	"testing"
)

func TestValue(t *testing.T) {
	tests := []struct {
		v       Value
		kind    Kind
		str     string
		num     float64
		numeric bool
	}{
		{Value{}, KindBlank, "", 0, false},
		{StringValue(""), KindBlank, "", 0, false},
		{StringValue("12"), KindString, "12", 12, true},
		{StringValue("-0.5"), KindString, "-0.5", -0.5, true},
		{StringValue("1e3"), KindString, "1e3", 1000, true},
		{StringValue(".5"), KindString, ".5", 0.5, true},
		{StringValue("5."), KindString, "5.", 5, true},
		{StringValue("abc"), KindString, "abc", 0, false},
		{StringValue("NaN"), KindString, "NaN", 0, false},
		{StringValue("Inf"), KindString, "Inf", 0, false},
		{StringValue("0x10"), KindString, "0x10", 0, false},
		{StringValue(" 1"), KindString, " 1", 0, false},
		{StringValue("1e"), KindString, "1e", 0, false},
		{StringValue("-"), KindString, "-", 0, false},
		{StringValue("1e999"), KindString, "1e999", 0, false},
		{NumberValue(2.5), KindNumber, "2.5", 2.5, true},
		{NumberValue(1e21), KindNumber, "1000000000000000000000", 1e21, true},
		{NumberValue(math.NaN()), KindBlank, "", 0, false},
		{NumberValue(math.Inf(1)), KindBlank, "", 0, false},
		{BoolValue(true), KindBool, "true", 1, true},
		{BoolValue(false), KindBool, "false", 0, true},
	}
	for _, tt := range tests {
		if tt.v.Kind() != tt.kind || tt.v.IsBlank() != (tt.kind == KindBlank) || tt.v.String() != tt.str {
			t.Errorf("%#v: kind %s blank %v string %q; want %s %q", tt.v, tt.v.Kind(), tt.v.IsBlank(), tt.v.String(), tt.kind, tt.str)
		}
		if f, ok := tt.v.Number(); ok != tt.numeric || f != tt.num {
			t.Errorf("%#v.Number() = %v, %v; want %v, %v", tt.v, f, ok, tt.num, tt.numeric)
		}
	}
}
