package rules

import (
	"sync/atomic"

	"github.com/nudge-study/nudge/rules/logic"
	"github.com/nudge-study/nudge/templates"
)

// RefList is a fixed list of references whose values are read from many
// rows, as a template's are: for each column list the rows share, it
// works out once where each plain reference's value lies (see
// plainColumn), and reads the value there; other references are looked
// up through Scope.Lookup. A RefList is safe for concurrent use.
type RefList struct {
	refs []logic.Ref
	// places is the placement for the column list last read from. It is
	// never changed once stored: a row of another column list stores a
	// new one.
	places atomic.Pointer[refPlaces]
}

// refPlaces is where the references' values lie in the rows of one
// column list: at[i] is plainColumn(cols, refs[i]).
type refPlaces struct {
	cols *columns
	at   []int
}

// NewRefList returns the list of refs, which it keeps: do not change them.
func NewRefList(refs []logic.Ref) *RefList {
	return &RefList{refs: refs}
}

// Ref returns the list's i-th reference.
func (l *RefList) Ref(i int) logic.Ref { return l.refs[i] }

// Len is the number of references in the list.
func (l *RefList) Len() int { return len(l.refs) }

// Lookup returns scope.Lookup(l.Ref(i)), reading a plain reference's value
// straight from the row.
func (l *RefList) Lookup(scope *Scope, i int) (string, bool) {
	return lookupAt(scope, l.refs[i], l.placesFor(scope.row.cols).at[i])
}

// placesFor returns the placement of the references in rows of cols.
func (l *RefList) placesFor(cols *columns) *refPlaces {
	if p := l.places.Load(); p != nil && p.cols == cols {
		return p
	}
	p := &refPlaces{cols: cols, at: make([]int, len(l.refs))}
	for i, ref := range l.refs {
		p.at[i] = plainColumn(cols, ref)
	}
	l.places.Store(p)
	return p
}

// PrepareRefs makes refs a RefList, for templates to read with LookupRef.
func (s *Scope) PrepareRefs(refs []logic.Ref) templates.PreparedRefs {
	return NewRefList(refs)
}

// LookupRef returns the value of p's i-th reference on the scope's row, as
// Lookup does; p is best a RefList (from PrepareRefs).
func (s *Scope) LookupRef(p templates.PreparedRefs, i int) (string, bool) {
	if l, ok := p.(*RefList); ok {
		return l.Lookup(s, i)
	}
	return s.Lookup(p.Ref(i))
}

// A Scope reads a template's references by their place in a RefList.
var _ templates.RefSource = (*Scope)(nil)
