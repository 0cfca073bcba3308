package redcap

import (
	"bytes"
	"encoding/json"
	"runtime"
)

// flatDecoder reads REDCap's flat JSON export without encoding/json's
// generic values, into a Table: column names are interned (one string per
// column for the whole export) and the values of a run of rows share one
// string.
type flatDecoder struct {
	b       []byte
	i       int
	t       *Table
	buf     []byte // the values of the rows not yet given their text, end to end
	pending []span // those rows
	cells   []cell // the current row's columns
}

// span is a row of the table and where its values lie in flatDecoder.buf.
type span struct {
	row, start, end int
}

// chunk is about how many bytes of values the rows of one string hold.
const chunk = 64 << 10

// cell is one column of the row being read: its number in the table and
// where its value lies in flatDecoder.buf.
type cell struct {
	col        int
	start, end int
}

// decodeFlat decodes body when it is an array of flat objects; ok is false
// when it is anything else (or not valid JSON), for decodeGeneric to read.
func decodeFlat(body []byte) (rows []Row, ok bool) {
	t, ok := decodeFlatTable(body)
	if !ok {
		return nil, false
	}
	return t.Rows(), true
}

// decodeFlatTable is decodeFlat into a table. A large body is decoded in
// two parts at once (see decodeHalves).
func decodeFlatTable(body []byte) (t *Table, ok bool) {
	if len(body) >= halvesFrom && runtime.GOMAXPROCS(0) > 1 {
		if t, ok := decodeHalves(body); ok {
			return t, true
		}
	}
	return decodeFlatPart(body, true, true)
}

// halvesFrom is the size of a body from which decodeFlatTable decodes it
// in two parts at once.
const halvesFrom = 1 << 20

// decodeHalves decodes body in two parts at once, split between two rows
// near its middle (see splitRows), and joins them. ok is false when no
// split is found or either part is not rows: the body is then decoded
// whole, so the outcome never depends on the split. A split that falls in
// a value's text cannot be taken for one between rows: the first part
// must end where its last row closes, and that row's text would not.
func decodeHalves(body []byte) (t *Table, ok bool) {
	end, start := splitRows(body)
	if end < 0 {
		return nil, false
	}
	var second *Table
	var secondOK bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		second, secondOK = decodeFlatPart(body[start:], false, true)
	}()
	t, ok = decodeFlatPart(body[:end], true, false)
	<-done
	if !ok || !secondOK {
		return nil, false
	}
	t.Append(second)
	return t, true
}

// splitRows finds, from the middle of body on, a brace closing a row
// followed by a comma and one opening the next with a key: body[:end]
// would be the rows before, body[start:] those after. end is -1 when there
// is none. The bytes may as well lie inside a value's text (though a quote
// there is escaped): decodeHalves finds out.
func splitRows(body []byte) (end, start int) {
	for i := len(body) / 2; i < len(body); {
		k := bytes.IndexByte(body[i:], '}')
		if k < 0 {
			return -1, -1
		}
		i += k + 1
		j := i
		for j < len(body) && isSpace(body[j]) {
			j++
		}
		if j == len(body) || body[j] != ',' {
			continue
		}
		j++
		for j < len(body) && isSpace(body[j]) {
			j++
		}
		if j == len(body) || body[j] != '{' {
			continue
		}
		// A row opens with a key (or closes at once).
		k = j + 1
		for k < len(body) && isSpace(body[k]) {
			k++
		}
		if k < len(body) && (body[k] == '"' || body[k] == '}') {
			return i, j
		}
	}
	return -1, -1
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// decodeFlatPart decodes rows of a flat export: the whole array when
// first and last, its opening (from '[' to the end of a row) when only
// first, its closing (from a row's '{' to ']') when only last.
func decodeFlatPart(body []byte, first, last bool) (t *Table, ok bool) {
	d := &flatDecoder{b: body, t: newTable()}
	// Every row opens with a brace: their number is at most the braces'.
	rows := min(bytes.Count(body, []byte{'{'}), len(body)/2)
	d.t.texts, d.t.offs = make([]string, 0, rows), make([][]uint32, 0, rows)
	d.space()
	if first {
		if !d.eat('[') {
			return nil, false
		}
		d.space()
		if last && d.eat(']') {
			return d.t, d.end()
		}
	}
	defer d.flush()
	for {
		d.space()
		if !d.object() {
			return nil, false
		}
		d.space()
		if !last && d.i == len(d.b) {
			return d.t, true
		}
		if last && d.eat(']') {
			return d.t, d.end()
		}
		if !d.eat(',') {
			return nil, false
		}
	}
}

// end reports whether only white space follows.
func (d *flatDecoder) end() bool {
	d.space()
	return d.i == len(d.b)
}

func (d *flatDecoder) space() {
	for d.i < len(d.b) && isSpace(d.b[d.i]) {
		d.i++
	}
}

func (d *flatDecoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads one row into the table.
func (d *flatDecoder) object() bool {
	if !d.eat('{') {
		return false
	}
	if len(d.buf) >= chunk {
		d.flush()
	}
	row := len(d.buf)
	d.cells = d.cells[:0]
	d.space()
	if !d.eat('}') {
		for {
			d.space()
			key, ok := d.str()
			if !ok {
				return false
			}
			d.space()
			if !d.eat(':') {
				return false
			}
			d.space()
			start := len(d.buf)
			if !d.value() {
				return false
			}
			d.cells = append(d.cells, cell{col: d.column(key), start: start, end: len(d.buf)})
			d.space()
			if d.eat('}') {
				break
			}
			if !d.eat(',') {
				return false
			}
		}
	}
	offs := d.t.offsets(len(d.t.cols))
	for _, c := range d.cells {
		offs[2*c.col], offs[2*c.col+1] = uint32(c.start-row), uint32(c.end-row)
	}
	d.pending = append(d.pending, span{row: d.t.Len(), start: row, end: len(d.buf)})
	d.t.add("", offs)
	return true
}

// flush gives the pending rows their text, one string for all.
func (d *flatDecoder) flush() {
	all := string(d.buf)
	for _, p := range d.pending {
		d.t.texts[p.row] = all[p.start:p.end]
	}
	d.buf, d.pending = d.buf[:0], d.pending[:0]
}

// column is the table's number of the column key names, added when new.
// Rows usually list their columns in the same order, so the column at the
// key's place in the row is tried first.
func (d *flatDecoder) column(key []byte) int {
	if k := len(d.cells); k < len(d.t.cols) && d.t.cols[k] == string(key) {
		return k
	}
	if c, ok := d.t.index[string(key)]; ok {
		return c
	}
	return d.t.column(string(key))
}

// value appends the text of one scalar value to d.buf as text() gives it.
func (d *flatDecoder) value() bool {
	if d.i >= len(d.b) {
		return false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		s, ok := d.str()
		d.buf = append(d.buf, s...)
		return ok
	case c == 't':
		return d.word("true", "1")
	case c == 'f':
		return d.word("false", "0")
	case c == 'n':
		return d.word("null", "")
	case c == '-' || c >= '0' && c <= '9':
		start := d.i
		for d.i < len(d.b) && isNumberByte(d.b[d.i]) {
			d.i++
		}
		num := d.b[start:d.i]
		if !json.Valid(num) {
			return false
		}
		d.buf = append(d.buf, num...)
		return true
	}
	return false // an object or array: left to encoding/json
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func (d *flatDecoder) word(w, text string) bool {
	if len(d.b)-d.i < len(w) || string(d.b[d.i:d.i+len(w)]) != w {
		return false
	}
	d.i += len(w)
	d.buf = append(d.buf, text...)
	return true
}

// str reads a JSON string. Plain ASCII without escapes is returned as a
// slice of the body; anything else is unquoted by encoding/json, so escapes
// and invalid UTF-8 come out exactly as it gives them.
func (d *flatDecoder) str() ([]byte, bool) {
	if !d.eat('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return d.slowStr(start - 1)
		}
		d.i++
	}
	return nil, false
}

// slowStr reads the string that opens at quote with encoding/json.
func (d *flatDecoder) slowStr(quote int) ([]byte, bool) {
	i := quote + 1
	for i < len(d.b) {
		switch d.b[i] {
		case '\\':
			i += 2
			continue
		case '"':
			var s string
			if err := json.Unmarshal(d.b[quote:i+1], &s); err != nil {
				return nil, false
			}
			d.i = i + 1
			return []byte(s), true
		}
		i++
	}
	return nil, false
}
