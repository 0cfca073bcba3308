// Package dict reads REDCap data dictionaries: the fields of a project, their forms, types,
// validations and choices, and the export columns REDCap derives from them (checkbox columns
// and the <form>_complete status of each form).
package dict

import (
	"fmt"
	"strings"
)

// Choice is one option of a multiple-choice field: the raw code stored in REDCap and the label
// shown to people.
type Choice struct{ Code, Label string }

// Field is one row of a data dictionary.
type Field struct {
	Name, Form, Type, Validation string // Type: text, notes, dropdown, radio, checkbox, yesno, truefalse, calc, file, slider, descriptive, sql

	// Text is the field label shown on the form (REDCap's field_label). It is not called Label
	// because Go does not allow a field and a method of the same name, and Label(code) is the
	// choice-label lookup.
	Text string

	// Choices holds the options of dropdown, radio and checkbox fields (from the choices
	// column) and the implicit options of yesno (1 Yes, 0 No) and truefalse (1 True, 0 False).
	Choices []Choice

	// Calculation is the formula of a calc field ("" for other types).
	Calculation string
	// BranchingLogic is the field's show-if condition, in REDCap logic ("" when always shown).
	BranchingLogic string
}

// Field types REDCap knows.
var knownTypes = map[string]bool{
	"text": true, "notes": true, "dropdown": true, "radio": true, "checkbox": true,
	"yesno": true, "truefalse": true, "calc": true, "file": true, "slider": true,
	"descriptive": true, "sql": true,
}

// hasListedChoices reports whether a field type takes its options from the choices column.
func hasListedChoices(typ string) bool {
	return typ == "dropdown" || typ == "radio" || typ == "checkbox"
}

// Label returns the label of the choice with the given code.
func (f Field) Label(code string) (string, bool) {
	for _, c := range f.Choices {
		if c.Code == code {
			return c.Label, true
		}
	}
	return "", false
}

// Column describes one column of a record export.
type Column struct {
	Name     string // the column name, e.g. "race___2" or "demographics_complete"
	Form     string // the form the column belongs to
	Field    string // the dictionary field; "" for a <form>_complete column
	Code     string // the checkbox choice code for a checkbox column, "" otherwise
	Complete bool   // a <form>_complete column
}

// Dictionary is a project's data dictionary.
type Dictionary struct {
	Fields []Field // in form order, as REDCap lists them

	byName  map[string]int
	forms   []string
	columns []Column
	byCol   map[string]int
}

// New builds a dictionary from fields listed in form order. The first field is the record id.
// Later duplicates of a field name are ignored by the lookups; ParseCSV and FromMetadata reject
// them instead.
func New(fields []Field) *Dictionary {
	d := &Dictionary{
		Fields: fields,
		byName: make(map[string]int, len(fields)),
		byCol:  make(map[string]int, len(fields)),
	}
	seenForm := map[string]bool{}
	for i, f := range fields {
		if _, dup := d.byName[f.Name]; !dup {
			d.byName[f.Name] = i
		}
		if !seenForm[f.Form] {
			seenForm[f.Form] = true
			d.forms = append(d.forms, f.Form)
		}
	}
	for _, form := range d.forms {
		for _, f := range fields {
			if f.Form != form || f.Type == "descriptive" {
				continue
			}
			if f.Type == "checkbox" {
				for _, c := range f.Choices {
					d.addColumn(Column{Name: CheckboxColumn(f.Name, c.Code), Form: form, Field: f.Name, Code: c.Code})
				}
				continue
			}
			d.addColumn(Column{Name: f.Name, Form: form, Field: f.Name})
		}
		d.addColumn(Column{Name: form + "_complete", Form: form, Complete: true})
	}
	return d
}

func (d *Dictionary) addColumn(c Column) {
	if _, dup := d.byCol[c.Name]; dup {
		return
	}
	d.byCol[c.Name] = len(d.columns)
	d.columns = append(d.columns, c)
}

// Field returns the field with the given name.
func (d *Dictionary) Field(name string) (Field, bool) {
	i, ok := d.byName[name]
	if !ok {
		return Field{}, false
	}
	return d.Fields[i], true
}

// RecordID returns the name of the record-id field: the first field of the dictionary.
func (d *Dictionary) RecordID() string {
	if len(d.Fields) == 0 {
		return ""
	}
	return d.Fields[0].Name
}

// Forms returns the form (instrument) names in dictionary order.
func (d *Dictionary) Forms() []string {
	return append([]string(nil), d.forms...)
}

// HasColumn reports whether col is a column of a record export or import: a data field (not a
// descriptive one), a checkbox column field___code, or a <form>_complete column.
func (d *Dictionary) HasColumn(col string) bool {
	_, ok := d.byCol[col]
	return ok
}

// Column describes the export column with the given name.
func (d *Dictionary) Column(col string) (Column, bool) {
	i, ok := d.byCol[col]
	if !ok {
		return Column{}, false
	}
	return d.columns[i], true
}

// ExportColumns lists every export column in REDCap's order: each form's fields (checkboxes
// expanded, descriptive fields left out) followed by its <form>_complete column. The pseudo
// columns redcap_event_name, redcap_repeat_instrument and redcap_repeat_instance are not included.
func (d *Dictionary) ExportColumns() []Column {
	return append([]Column(nil), d.columns...)
}

// Columns returns the export columns of a field: one field___code column per choice of a
// checkbox, the field name itself for other data fields, and none for descriptive or unknown
// fields.
func (d *Dictionary) Columns(field string) []string {
	f, ok := d.Field(field)
	if !ok || f.Type == "descriptive" {
		return nil
	}
	if f.Type != "checkbox" {
		return []string{f.Name}
	}
	cols := make([]string, 0, len(f.Choices))
	for _, c := range f.Choices {
		cols = append(cols, CheckboxColumn(f.Name, c.Code))
	}
	return cols
}

// CheckboxColumn returns REDCap's export column name for one choice of a checkbox field: the
// field name, three underscores, then the code lower-cased with every character other than a
// letter, digit or underscore turned into an underscore. So code "-1" of field "x" becomes
// "x____1" (four underscores) and code "A.b" becomes "x___a_b".
func CheckboxColumn(field, code string) string {
	var b strings.Builder
	b.Grow(len(field) + 3 + len(code))
	b.WriteString(field)
	b.WriteString("___")
	for _, r := range strings.ToLower(code) {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// ParseChoices splits a choices specification such as "1, Yes | 0, No" into choices: options
// are separated by "|", and each option's code is the text before its first comma (the label
// may itself contain commas). An option without a comma uses its text as both code and label.
func ParseChoices(spec string) ([]Choice, error) {
	var out []Choice
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, "|") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		code, label, found := strings.Cut(part, ",")
		code = strings.TrimSpace(code)
		label = strings.TrimSpace(label)
		if !found {
			label = code
		}
		if code == "" {
			return nil, fmt.Errorf("choice %q has no code before its comma", part)
		}
		if seen[code] {
			return nil, fmt.Errorf("choice code %q is listed twice", code)
		}
		seen[code] = true
		out = append(out, Choice{Code: code, Label: label})
	}
	return out, nil
}
