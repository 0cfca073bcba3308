package redcaptest

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nudge-study/nudge/rules/dict"
)

// ExportRight is an API user's data export right for one form, as REDCap's User Rights page
// sets it. REDCap applies it to API exports without a word: the columns the user may not
// export are simply left out of an HTTP 200 answer.
type ExportRight int

// The data export rights of REDCap's User Rights page.
const (
	// FullDataSet exports every field of the form.
	FullDataSet ExportRight = iota
	// DeIdentified leaves out fields marked as identifiers, unvalidated text fields, notes
	// fields and date and datetime fields; when it applies to the form holding the record id,
	// record ids are exported hashed (32 hex characters).
	DeIdentified
	// RemoveIdentifiers leaves out fields marked as identifiers.
	RemoveIdentifiers
	// NoAccess leaves out every field of the form and its <form>_complete column.
	NoAccess
)

// Rights are an API user's data export rights: Default for every form not named in Forms.
// The zero value is full rights to every form.
type Rights struct {
	Default ExportRight
	Forms   map[string]ExportRight
}

// form returns the right for one form.
func (r Rights) form(name string) ExportRight {
	if x, ok := r.Forms[name]; ok {
		return x
	}
	return r.Default
}

// user is what a token opens: a project and the export rights of the token's user.
type user struct {
	st     *state
	rights Rights
}

// dropped reports whether the rights leave column c out of an export. The record-id field is
// never left out (it is hashed instead).
func (st *state) dropped(r Rights, c dict.Column) bool {
	if c.Field == st.idField {
		return false
	}
	right := r.form(c.Form)
	switch {
	case right == NoAccess:
		return true
	case c.Complete || right == FullDataSet:
		return false
	case st.identifier[c.Field]:
		return true
	case right == DeIdentified:
		f, _ := st.d.Field(c.Field)
		return f.Type == "notes" || f.Type == "text" && (f.Validation == "" || isDateValidation(f.Validation))
	}
	return false
}

func isDateValidation(v string) bool {
	return strings.HasPrefix(v, "date_") || strings.HasPrefix(v, "datetime_")
}

// hashesIDs reports whether the rights export record ids hashed: De-Identified rights to the
// form holding the record-id field.
func (st *state) hashesIDs(r Rights) bool {
	f, _ := st.d.Field(st.idField)
	return r.form(f.Form) == DeIdentified
}

// hashID is the record id a de-identified export shows: 32 hex characters, the same for a
// record each time, matching no real record id in a records filter.
func (st *state) hashID(id string) string {
	sum := md5.Sum([]byte(fmt.Sprintf("redcaptest:%d:%s", st.p.ID, id)))
	return hex.EncodeToString(sum[:])
}

// restrict applies export rights to the columns of an export.
func (st *state) restrict(r Rights, cols []dict.Column) []dict.Column {
	out := cols[:0:0]
	for _, c := range cols {
		if !st.dropped(r, c) {
			out = append(out, c)
		}
	}
	return out
}
