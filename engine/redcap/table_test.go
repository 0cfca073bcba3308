package redcap

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// DecodeTable gives exactly the values DecodeRows gives, on the fast path and
// the generic one, and fails where it fails.
func TestDecodeTableMatchesDecodeRows(t *testing.T) {
	for _, c := range decodeCases {
		want, wantErr := DecodeRows([]byte(c.body))
		got, err := DecodeTable([]byte(c.body))
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%q: DecodeTable error %v, DecodeRows error %v", c.body, err, wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if rows := got.Rows(); !reflect.DeepEqual(rows, want) {
			t.Errorf("%q: table rows %#v, DecodeRows %#v", c.body, rows, want)
		}
		checkTable(t, c.body, got, want)
	}
}

// checkTable checks each of the table's values, read with Value and Row,
// against rows.
func checkTable(t *testing.T, name string, got *Table, rows []Row) {
	t.Helper()
	if got.Len() != len(rows) {
		t.Errorf("%s: %d rows, want %d", name, got.Len(), len(rows))
		return
	}
	for i, r := range rows {
		text, offs := got.Row(i)
		for c, col := range got.Columns() {
			want, wantOK := r[col]
			v, ok := got.Value(i, col)
			if v != want || ok != wantOK {
				t.Errorf("%s: row %d column %s = %q, %v; want %q, %v", name, i, col, v, ok, want, wantOK)
			}
			if 2*c+1 < len(offs) && offs[2*c] != Absent && text[offs[2*c]:offs[2*c+1]] != want {
				t.Errorf("%s: row %d column %s by offsets = %q, want %q", name, i, col, text[offs[2*c]:offs[2*c+1]], want)
			}
		}
		for col := range r {
			if _, ok := got.Value(i, col); !ok {
				t.Errorf("%s: row %d lacks column %s", name, i, col)
			}
		}
	}
}

// Batches appended into one table keep every row's values, whether a batch
// has the table's columns in the same order, fewer of them, in another order
// or new ones.
func TestTableAppend(t *testing.T) {
	cases := []struct {
		name    string
		batches []string
	}{
		{"same columns", []string{`[{"id":"1","a":"x"}]`, `[{"id":"2","a":"y"},{"id":"3","a":""}]`}},
		{"fewer columns", []string{`[{"id":"1","a":"x","b":"z"}]`, `[{"id":"2","a":"y"}]`}},
		{"other order", []string{`[{"id":"1","a":"x"}]`, `[{"a":"y","id":"2"}]`}},
		{"new column", []string{`[{"id":"1","a":"x"}]`, `[{"id":"2","b":"w","a":"y"}]`, `[{"id":"3"}]`}},
		{"empty batches", []string{`[]`, `[{"id":"1","a":"x"}]`, `[]`, `[{"a":"y","id":"2"}]`}},
		{"generic batch", []string{`[{"id":"1","a":"x"}]`, `[{"id":"2","a":"y","b":{"c":1}}]`}},
	}
	for _, c := range cases {
		all := newTable()
		var want []Row
		for _, body := range c.batches {
			rows, err := DecodeRows([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, rows...)
			batch, err := DecodeTable([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			all.Append(batch)
		}
		if got := all.Rows(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: rows %#v, want %#v", c.name, got, want)
		}
		checkTable(t, c.name, all, want)
	}
}

// TableOf keeps the rows' values.
func TestTableOf(t *testing.T) {
	rows := []Row{{"id": "1", "a": "x"}, {"b": "é", "id": "2"}, {}, {"a": "", "c": "z"}}
	got := TableOf(rows)
	if !reflect.DeepEqual(got.Rows(), rows) {
		t.Errorf("rows %#v, want %#v", got.Rows(), rows)
	}
	checkTable(t, "TableOf", got, rows)
}

// TestDecodeHalvesMatchesWhole checks that a body decoded in two parts at
// once gives exactly the rows decoding it whole gives, and that a split
// falling inside a value's text is refused, never taken for one between
// rows.
func TestDecodeHalvesMatchesWhole(t *testing.T) {
	var big strings.Builder
	big.WriteString("[")
	for i := range 30000 {
		if i > 0 {
			big.WriteString(",\n ")
		}
		fmt.Fprintf(&big, `{"record_id":"%d","name":"P\u00e9 %d","note":"a},{b","phone":"+1312555%04d"}`, i, i, i%10000)
	}
	big.WriteString("]")
	// The middle of this body lies in a value ending in "},{", its closing
	// quote after: the first split found is inside the text.
	tricky := `[{"a":"1"},{"a":"` + strings.Repeat("x", 40) + `},{"},{"a":"2"}]`
	tests := []struct {
		name     string
		body     string
		wantOK   bool // decodeHalves decodes it
		wantRows int
	}{
		{"many rows", big.String(), true, 30000},
		{"split inside a value", tricky, false, 3},
		{"one row", `[{"a":"1"}]`, false, 1},
		{"three rows, spaced", "[{\"a\":\"1\"} , {\"b\":\"2\"} ,\n {\"c\":\"3\"}]", true, 3},
		{"not rows after the split", `[{"a":"1"},{"a":"2"},{"a":[1]}]`, false, 0},
	}
	for _, c := range decodeCases {
		tests = append(tests, struct {
			name     string
			body     string
			wantOK   bool
			wantRows int
		}{"case " + c.body, c.body, false, -1})
	}
	for _, tt := range tests {
		whole, wholeOK := decodeFlatPart([]byte(tt.body), true, true)
		got, ok := decodeHalves([]byte(tt.body))
		if tt.wantRows >= 0 && ok != tt.wantOK {
			t.Errorf("%s: decodeHalves ok %v, want %v", tt.name, ok, tt.wantOK)
		}
		if ok {
			if !wholeOK {
				t.Errorf("%s: decoded in halves, not whole", tt.name)
				continue
			}
			if !reflect.DeepEqual(got.Rows(), whole.Rows()) {
				t.Errorf("%s: rows decoded in halves differ from those decoded whole", tt.name)
			}
		}
		if tt.wantRows > 0 {
			all, err := DecodeTable([]byte(tt.body))
			if err != nil {
				t.Errorf("%s: DecodeTable: %v", tt.name, err)
			} else if all.Len() != tt.wantRows {
				t.Errorf("%s: DecodeTable gives %d rows, want %d", tt.name, all.Len(), tt.wantRows)
			}
		}
	}
}
