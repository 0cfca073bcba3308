package main

import (
	"bytes"
	"context"
	"testing"
)

func TestTestRulesDemoTry(t *testing.T) {
	var out, errb bytes.Buffer
	err := cmdTestRules(context.Background(), []string{"../../testdata/demo/tests/site_a.yaml", "../../testdata/demo/tests/site_b.yaml"}, &out, &errb)
	t.Log(out.String(), errb.String())
	if err != nil {
		t.Fatal(err)
	}
}
