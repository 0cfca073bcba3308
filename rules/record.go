package rules

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nudge-study/nudge/rules/dict"
	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/templates"
)

// REDCap's export pseudo-columns.
const (
	ColEvent            = "redcap_event_name"
	ColRepeatInstrument = "redcap_repeat_instrument"
	ColRepeatInstance   = "redcap_repeat_instance"
)

// Row is one exported row of a record: an event's base row (Instance 0),
// a repeating instrument's instance (RepeatInstrument set) or a repeating
// event's instance (RepeatInstrument "", Instance ≥ 1).
type Row struct {
	Event            string // unique event name, "" in a classic project
	RepeatInstrument string
	Instance         int // 0 = base row
	// Values holds the row's values by column, for rows built by hand.
	// Rows GroupRows and GroupTable build leave it nil and hold their
	// values in the compact form of a Table (one string and the offsets
	// of each column's value in it), by the column's place in a column
	// list their export's rows share: read a row's values with Value and
	// Columns.
	Values map[string]string
	cols   *columns
	text   string
	offs   []uint32 // by the column's place in cols: start, end (see Table)
}

// columns is a column list rows share, with each column's place in it.
type columns struct {
	names []string
	index map[string]int
}

// Absent is the start offset of a column a Table row does not have.
const Absent = ^uint32(0)

// Table is a flat REDCap export in compact form, as GroupTable reads it:
// columns shared by every row and, for each row, its values end to end in
// one string with where each column's value lies in it.
type Table interface {
	// Columns are the names of the columns, each once.
	Columns() []string
	// Len is the number of rows.
	Len() int
	// Row returns row i's values and their offsets: column c's value is
	// text[offsets[2c]:offsets[2c+1]]. A column the row does not have has
	// Absent as its start or lies past the end of offsets.
	Row(i int) (text string, offsets []uint32)
}

// at is the row's value of the column at place i in its column list.
func (r *Row) at(i int) (string, bool) {
	if i < 0 || 2*i+1 >= len(r.offs) || r.offs[2*i] == Absent {
		return "", false
	}
	return r.text[r.offs[2*i]:r.offs[2*i+1]], true
}

// Value returns the row's value of column col; ok is false when the row
// has no such column.
func (r *Row) Value(col string) (string, bool) {
	if r.cols != nil {
		if i, ok := r.cols.index[col]; ok {
			return r.at(i)
		}
		return "", false
	}
	v, ok := r.Values[col]
	return v, ok
}

// Columns returns the names of the row's columns, in no particular order.
// The slice may be shared: do not change it.
func (r *Row) Columns() []string {
	if r.cols != nil {
		all := len(r.offs) == 2*len(r.cols.names)
		for i := 0; all && i < len(r.offs); i += 2 {
			all = r.offs[i] != Absent
		}
		if all {
			return r.cols.names
		}
		var names []string
		for i, name := range r.cols.names {
			if _, ok := r.at(i); ok {
				names = append(names, name)
			}
		}
		return names
	}
	names := make([]string, 0, len(r.Values))
	for c := range r.Values {
		names = append(names, c)
	}
	return names
}

// plainColumn is the place in cols of the column a reference reads on
// the row being evaluated, when the reference is a plain one (the row's
// own event and instance, no modifier, not a smart variable) and cols
// has its column; otherwise -1: its value then comes from Scope.Lookup.
func plainColumn(cols *columns, r logic.Ref) int {
	if cols == nil || r.Event != "" || r.Instance != "" || r.Modifier != "" {
		return -1
	}
	switch r.Field {
	case smartRecordName, smartEventName, smartCurrentInstance, smartPreviousInstance, smartLastInstance, smartFirstInstance:
		return -1
	}
	col := r.Field
	if r.Code != "" {
		col = dict.CheckboxColumn(r.Field, r.Code)
	}
	if i, ok := cols.index[col]; ok {
		return i
	}
	return -1
}

// Record is one REDCap record with every exported row of it.
type Record struct {
	ID   string
	Rows []*Row
}

// GroupRows groups REDCap flat export rows (with the redcap_event_name,
// redcap_repeat_instrument and redcap_repeat_instance pseudo-columns when
// present) into records, in the order records first appear. The rows
// keep the values by column (see Row.Value) in the compact form of
// GroupTable, not the maps.
func GroupRows(idField string, rows []map[string]string) []*Record {
	return GroupTable(idField, tableOf(rows))
}

// groupBlock is how many records or rows GroupTable allocates at a time.
const groupBlock = 1024

// GroupTable groups a REDCap flat export in compact form into records, as
// GroupRows does. The rows keep the table's strings and offsets and share
// its column list.
func GroupTable(idField string, t Table) []*Record {
	names := t.Columns()
	cols := &columns{names: names, index: make(map[string]int, len(names))}
	for i, name := range names {
		cols.index[name] = i
	}
	place := func(col string) int {
		if i, ok := cols.index[col]; ok {
			return i
		}
		return -1
	}
	idAt, eventAt, instrumentAt, instanceAt := place(idField), place(ColEvent), place(ColRepeatInstrument), place(ColRepeatInstance)

	// First each row's record and each record's number of rows, so that
	// the records' lists of rows are carved from blocks.
	n := t.Len()
	recOf := make([]int32, n)
	var recs []*Record
	var counts []int
	byID := make(map[string]int32, n)
	var recBlock []Record
	for i := range n {
		r := Row{cols: cols}
		r.text, r.offs = t.Row(i)
		id, _ := r.at(idAt)
		k, ok := byID[id]
		if !ok {
			k = int32(len(recs))
			byID[id] = k
			if len(recBlock) == 0 {
				recBlock = make([]Record, groupBlock)
			}
			rec := &recBlock[0]
			recBlock = recBlock[1:]
			rec.ID = id
			recs = append(recs, rec)
			counts = append(counts, 0)
		}
		recOf[i] = k
		counts[k]++
	}
	var ptrs []*Row
	for k, rec := range recs {
		c := counts[k]
		if len(ptrs) < c {
			ptrs = make([]*Row, max(groupBlock, c))
		}
		rec.Rows = ptrs[:0:c]
		ptrs = ptrs[c:]
	}
	var block []Row
	for i := range n {
		if len(block) == 0 {
			block = make([]Row, min(groupBlock, n-i))
		}
		r := &block[0]
		block = block[1:]
		r.cols = cols
		r.text, r.offs = t.Row(i)
		r.Event, _ = r.at(eventAt)
		r.RepeatInstrument, _ = r.at(instrumentAt)
		if inst, _ := r.at(instanceAt); inst != "" { // Atoi's error for "" would be allocated
			r.Instance, _ = strconv.Atoi(strings.TrimSpace(inst))
		}
		rec := recs[recOf[i]]
		rec.Rows = append(rec.Rows, r)
	}
	return recs
}

// mapTable is rows given as maps in the form of a Table.
type mapTable struct {
	names []string
	texts []string
	offs  [][]uint32
}

func (t *mapTable) Columns() []string            { return t.names }
func (t *mapTable) Len() int                     { return len(t.texts) }
func (t *mapTable) Row(i int) (string, []uint32) { return t.texts[i], t.offs[i] }

// tableOf is rows as a Table, with each row's columns (when new) added in
// name order.
func tableOf(rows []map[string]string) *mapTable {
	t := &mapTable{texts: make([]string, len(rows)), offs: make([][]uint32, len(rows))}
	index := map[string]int{}
	var keys []string
	var buf []byte
	var block []uint32
	for i, values := range rows {
		keys = keys[:0]
		for c := range values {
			keys = append(keys, c)
		}
		slices.Sort(keys)
		for _, c := range keys {
			if _, ok := index[c]; !ok {
				index[c] = len(t.names)
				t.names = append(t.names, c)
			}
		}
		w := 2 * len(t.names)
		if len(block) < w {
			block = make([]uint32, max(w*256, 4096))
		}
		offs := block[:w:w]
		block = block[w:]
		for j := range offs {
			offs[j] = Absent
		}
		buf = buf[:0]
		for _, c := range keys {
			at := index[c]
			offs[2*at] = uint32(len(buf))
			buf = append(buf, values[c]...)
			offs[2*at+1] = uint32(len(buf))
		}
		t.texts[i], t.offs[i] = string(buf), offs
	}
	return t
}

// Scope is one record and the row being evaluated: it answers field
// references for logic (logic.Env) and piping (templates.Source).
type Scope struct {
	rec     *Record
	row     *Row
	now     time.Time
	missing map[string]bool
}

// NewScope returns the scope of row within rec at time now; missing lists
// the project's missing-data codes.
func NewScope(rec *Record, row *Row, now time.Time, missing []string) *Scope {
	return &Scope{rec: rec, row: row, now: now, missing: missingSet(missing)}
}

// missingSet is the set of missing-data codes; nil (which answers every
// lookup with false) when there are none.
func missingSet(missing []string) map[string]bool {
	if len(missing) == 0 {
		return nil
	}
	set := make(map[string]bool, len(missing))
	for _, m := range missing {
		set[m] = true
	}
	return set
}

// Record is the record in scope.
func (s *Scope) Record() *Record { return s.rec }

// Row is the row in scope.
func (s *Scope) Row() *Row { return s.row }

// Now is the evaluation time ('today' and 'now' in logic), in the zone it
// was given to NewScope: Rule.Evaluate gives it in the study time zone.
func (s *Scope) Now() time.Time { return s.now }

// IsMissingCode reports whether v is one of the project's missing-data codes.
func (s *Scope) IsMissingCode(v string) bool { return s.missing[v] }

// Smart variables the scope answers.
const (
	smartRecordName       = "record-name"
	smartEventName        = "event-name"
	smartCurrentInstance  = "current-instance"
	smartPreviousInstance = "previous-instance"
	smartLastInstance     = "last-instance"
	smartFirstInstance    = "first-instance"
)

// Lookup returns the value a reference names. ok is false when there is no
// such column or row (the value is then blank). An unqualified reference on
// an instance row falls back to the event's base row when blank there,
// because fields of non-repeating forms live on the base row.
func (s *Scope) Lookup(r logic.Ref) (string, bool) {
	event := r.Event
	if event == "" {
		event = s.row.Event
	}
	if v, ok, smart := s.smart(r.Field, event); smart {
		return v, ok
	}
	if r.Modifier == logic.ModChecked || r.Modifier == logic.ModUnchecked {
		return s.lookupChecked(r)
	}
	col := r.Field
	if r.Code != "" {
		col = dict.CheckboxColumn(r.Field, r.Code)
	}
	if r.Instance == "" {
		return s.lookupDefault(event, col)
	}
	group, ok := s.repeatGroup(event, col)
	if !ok {
		return "", false
	}
	n, ok := s.instanceNumber(r.Instance, group)
	if !ok {
		return "", false
	}
	for _, row := range group {
		if row.Instance == n {
			return row.Value(col)
		}
	}
	return "", false
}

// lookupChecked answers [field:checked] and [field:unchecked]: the codes
// of the checkbox's checked (or unchecked) choices, joined by ", ". The
// export holds one column field___code per choice; codes come from those
// column names, in numeric order when all are numbers, else text order.
// ok is false when the record has no column of the field.
func (s *Scope) lookupChecked(r logic.Ref) (string, bool) {
	prefix := r.Field + "___"
	seen := map[string]bool{}
	var codes []string
	for _, row := range s.rec.Rows {
		for _, col := range row.Columns() {
			if code, found := strings.CutPrefix(col, prefix); found && !seen[code] {
				seen[code] = true
				codes = append(codes, code)
			}
		}
	}
	if len(codes) == 0 {
		return "", false
	}
	sortCodes(codes)
	want := "1"
	if r.Modifier == logic.ModUnchecked {
		want = "0"
	}
	var out []string
	for _, code := range codes {
		v, _ := s.Lookup(logic.Ref{Event: r.Event, Field: r.Field, Code: code, Instance: r.Instance})
		if v == want {
			out = append(out, code)
		}
	}
	return strings.Join(out, ", "), true
}

// sortCodes orders checkbox codes numerically when every one is a number,
// otherwise as text.
func sortCodes(codes []string) {
	numeric := true
	for _, c := range codes {
		if _, err := strconv.ParseFloat(c, 64); err != nil {
			numeric = false
		}
	}
	slices.SortFunc(codes, func(a, b string) int {
		if numeric {
			x, _ := strconv.ParseFloat(a, 64)
			y, _ := strconv.ParseFloat(b, 64)
			return cmp.Compare(x, y)
		}
		return strings.Compare(a, b)
	})
}

// smart answers smart variables; smart is false when field is a data field.
func (s *Scope) smart(field, event string) (v string, ok, smart bool) {
	switch field {
	case smartRecordName:
		return s.rec.ID, true, true
	case smartEventName:
		return event, event != "", true
	case smartCurrentInstance, smartPreviousInstance, smartLastInstance, smartFirstInstance:
		group := s.sameGroup(s.row)
		n, ok := s.instanceNumber(field, group)
		if !ok {
			return "", false, true
		}
		return strconv.Itoa(n), true, true
	}
	return "", false, false
}

// lookupDefault reads col from the current row when event is the row's
// event, falling back to the event's base row; otherwise from the other
// event's first row.
func (s *Scope) lookupDefault(event, col string) (string, bool) {
	if event == s.row.Event {
		v, ok := s.row.Value(col)
		if v != "" || s.row.Instance == 0 {
			return v, ok
		}
		if base := s.baseRow(event); base != nil && base != s.row {
			if bv, bok := base.Value(col); bok {
				return bv, true
			}
		}
		return v, ok
	}
	base := s.baseRow(event)
	if base == nil {
		return "", false
	}
	return base.Value(col)
}

// baseRow is the event's base row, or for a repeating event (which has no
// base row) its lowest instance.
func (s *Scope) baseRow(event string) *Row {
	var best *Row
	for _, row := range s.rec.Rows {
		if row.Event != event || row.RepeatInstrument != "" {
			continue
		}
		if best == nil || row.Instance < best.Instance {
			best = row
		}
	}
	return best
}

// sameGroup lists the instance rows of the same repeating instrument (or
// repeating event) as row.
func (s *Scope) sameGroup(row *Row) []*Row {
	if row.Instance == 0 {
		return nil
	}
	var group []*Row
	for _, r := range s.rec.Rows {
		if r.Event == row.Event && r.RepeatInstrument == row.RepeatInstrument && r.Instance > 0 {
			group = append(group, r)
		}
	}
	return group
}

// repeatGroup finds the instance rows an instance-qualified reference to
// col in event addresses: the current row's group when the row is an
// instance in that event, else the group whose rows hold col with a value.
func (s *Scope) repeatGroup(event, col string) ([]*Row, bool) {
	if s.row.Event == event && s.row.Instance > 0 {
		if _, has := s.row.Value(col); has {
			return s.sameGroup(s.row), true
		}
	}
	var fallback *Row
	for _, r := range s.rec.Rows {
		if r.Event != event || r.Instance == 0 {
			continue
		}
		v, has := r.Value(col)
		if !has {
			continue
		}
		if v != "" {
			return s.sameGroup(r), true
		}
		if fallback == nil {
			fallback = r
		}
	}
	if fallback != nil {
		return s.sameGroup(fallback), true
	}
	return nil, false
}

// instanceNumber resolves an instance qualifier ("2", "current-instance",
// "previous-instance", "last-instance", "first-instance") within group.
func (s *Scope) instanceNumber(inst string, group []*Row) (int, bool) {
	current := 0
	for _, r := range group {
		if r == s.row {
			current = r.Instance
		}
	}
	switch inst {
	case smartCurrentInstance:
		if current == 0 {
			// Not on an instance row of this group: REDCap treats it as 1.
			return 1, true
		}
		return current, true
	case smartPreviousInstance:
		if current <= 1 {
			return 0, false
		}
		return current - 1, true
	case smartLastInstance, smartFirstInstance:
		n := 0
		for _, r := range group {
			if n == 0 || (inst == smartLastInstance && r.Instance > n) || (inst == smartFirstInstance && r.Instance < n) {
				n = r.Instance
			}
		}
		return n, n > 0
	}
	n, err := strconv.Atoi(inst)
	return n, err == nil && n > 0
}

// Scope answers both conditions and templates.
var (
	_ logic.Env        = (*Scope)(nil)
	_ templates.Source = (*Scope)(nil)
)
