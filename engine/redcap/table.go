package redcap

import (
	"slices"
)

// Absent is the start offset of a column a table row does not have (see
// Table.Row).
const Absent = ^uint32(0)

// offsetBlock is how many offsets a table allocates at a time.
const offsetBlock = 1 << 16

// Table is a flat record export in compact form: the column names, shared by
// every row, and for each row its values end to end in one string with the
// start and end of each column's value in it. A table holds two pointers per
// row where a Row holds a string per column, which leaves the garbage
// collector far less to scan.
type Table struct {
	cols  []string
	index map[string]int
	texts []string
	offs  [][]uint32
	block []uint32 // offsets not yet handed to a row
}

// newTable is an empty table.
func newTable() *Table {
	return &Table{cols: []string{}, index: map[string]int{}, texts: []string{}, offs: [][]uint32{}}
}

// Columns returns the names of the table's columns. The slice is shared: do
// not change it.
func (t *Table) Columns() []string { return t.cols }

// Len is the number of rows.
func (t *Table) Len() int { return len(t.texts) }

// Row returns row i's values end to end and where each column's value lies
// in them: column c's value is text[offsets[2c]:offsets[2c+1]]. A column the
// row does not have has Absent as its start, or lies past the end of offsets
// (a column first seen after the row).
func (t *Table) Row(i int) (text string, offsets []uint32) { return t.texts[i], t.offs[i] }

// Value returns row i's value of column col; ok is false when the row has no
// such column.
func (t *Table) Value(i int, col string) (string, bool) {
	c, ok := t.index[col]
	if !ok {
		return "", false
	}
	return t.valueAt(i, c)
}

// valueAt is row i's value of column number c.
func (t *Table) valueAt(i, c int) (string, bool) {
	offs := t.offs[i]
	if 2*c+1 >= len(offs) || offs[2*c] == Absent {
		return "", false
	}
	return t.texts[i][offs[2*c]:offs[2*c+1]], true
}

// has reports whether row i has column number c.
func (t *Table) has(i, c int) bool {
	offs := t.offs[i]
	return 2*c+1 < len(offs) && offs[2*c] != Absent
}

// Rows returns the table as rows, one map each.
func (t *Table) Rows() []Row {
	rows := make([]Row, t.Len())
	for i := range rows {
		text, offs := t.Row(i)
		r := make(Row, len(offs)/2)
		for c := 0; 2*c+1 < len(offs); c++ {
			if offs[2*c] != Absent {
				r[t.cols[c]] = text[offs[2*c]:offs[2*c+1]]
			}
		}
		rows[i] = r
	}
	return rows
}

// column is the number of column name, added when the table lacks it.
func (t *Table) column(name string) int {
	c, ok := t.index[name]
	if !ok {
		c = len(t.cols)
		t.index[name] = c
		t.cols = append(t.cols, name)
	}
	return c
}

// offsets hands out the offsets of a row with n columns, each Absent.
func (t *Table) offsets(n int) []uint32 {
	if len(t.block) < 2*n {
		t.block = make([]uint32, max(offsetBlock, 2*n))
	}
	o := t.block[: 2*n : 2*n]
	t.block = t.block[2*n:]
	for i := range o {
		o[i] = Absent
	}
	return o
}

// add appends a row.
func (t *Table) add(text string, offs []uint32) {
	t.texts = append(t.texts, text)
	t.offs = append(t.offs, offs)
}

// Append adds u's rows to t. When u has t's columns in the same order (or
// t has no rows yet) the rows are taken as they are; otherwise their
// offsets are put in the order of t's columns.
func (t *Table) Append(u *Table) {
	if t.Len() == 0 && len(t.cols) == 0 {
		*t = *u
		t.block = nil
		return
	}
	if len(u.cols) <= len(t.cols) && slices.Equal(u.cols, t.cols[:len(u.cols)]) {
		t.texts = append(t.texts, u.texts...)
		t.offs = append(t.offs, u.offs...)
		return
	}
	to := make([]int, len(u.cols))
	for c, name := range u.cols {
		to[c] = t.column(name)
	}
	for i := range u.texts {
		text, from := u.Row(i)
		offs := t.offsets(len(t.cols))
		for c := 0; 2*c+1 < len(from); c++ {
			offs[2*to[c]], offs[2*to[c]+1] = from[2*c], from[2*c+1]
		}
		t.add(text, offs)
	}
}

// TableOf is the table of rows, with each row's columns (when new) added in
// name order.
func TableOf(rows []Row) *Table {
	t := newTable()
	var buf []byte
	var names []string
	for _, r := range rows {
		names = names[:0]
		for name := range r {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			t.column(name)
		}
		offs := t.offsets(len(t.cols))
		buf = buf[:0]
		for _, name := range names {
			c := t.index[name]
			offs[2*c] = uint32(len(buf))
			buf = append(buf, r[name]...)
			offs[2*c+1] = uint32(len(buf))
		}
		t.add(string(buf), offs)
	}
	return t
}

// DecodeTable decodes the body of a flat JSON record export (an array of
// objects) into a table of raw values, as ExportTable does with each answer.
func DecodeTable(body []byte) (*Table, error) {
	if t, ok := decodeFlatTable(body); ok {
		return t, nil
	}
	rows, err := decodeGeneric(body)
	if err != nil {
		return nil, err
	}
	return TableOf(rows), nil
}
