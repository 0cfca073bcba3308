package redcap

import (
	"encoding/json"
)

// flatDecoder reads REDCap's flat JSON export without encoding/json's
// generic values: column names are interned (one string per column for the
// whole export) and each row's values share one string.
type flatDecoder struct {
	b     []byte
	i     int
	names map[string]string // column name as read → its one string
	buf   []byte            // the current row's values, end to end
	cells []cell            // the current row's columns
}

// cell is one column of the row being read: its name and where its value
// lies in flatDecoder.buf.
type cell struct {
	name       string
	start, end int
}

// decodeFlat decodes body when it is an array of flat objects; ok is false
// when it is anything else (or not valid JSON), for decodeGeneric to read.
func decodeFlat(body []byte) (rows []Row, ok bool) {
	d := &flatDecoder{b: body, names: map[string]string{}}
	d.space()
	if !d.eat('[') {
		return nil, false
	}
	rows = []Row{}
	d.space()
	if d.eat(']') {
		return rows, d.end()
	}
	for {
		d.space()
		r, ok := d.object()
		if !ok {
			return nil, false
		}
		rows = append(rows, r)
		d.space()
		if d.eat(']') {
			return rows, d.end()
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
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *flatDecoder) eat(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// object reads one row.
func (d *flatDecoder) object() (Row, bool) {
	if !d.eat('{') {
		return nil, false
	}
	d.buf, d.cells = d.buf[:0], d.cells[:0]
	d.space()
	if !d.eat('}') {
		for {
			d.space()
			key, ok := d.str()
			if !ok {
				return nil, false
			}
			name, known := d.names[string(key)]
			if !known {
				name = string(key)
				d.names[name] = name
			}
			d.space()
			if !d.eat(':') {
				return nil, false
			}
			d.space()
			start := len(d.buf)
			if !d.value() {
				return nil, false
			}
			d.cells = append(d.cells, cell{name: name, start: start, end: len(d.buf)})
			d.space()
			if d.eat('}') {
				break
			}
			if !d.eat(',') {
				return nil, false
			}
		}
	}
	all := string(d.buf)
	r := make(Row, len(d.cells))
	for _, c := range d.cells {
		r[c.name] = all[c.start:c.end]
	}
	return r, true
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
