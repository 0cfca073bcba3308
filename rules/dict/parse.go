package dict

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// humanHeaders maps the column headers of REDCap's downloadable Data Dictionary to the keys
// of the API's metadata export.
var humanHeaders = map[string]string{
	"variable / field name": "field_name",
	"form name":             "form_name",
	"section header":        "section_header",
	"field type":            "field_type",
	"field label":           "field_label",
	"choices, calculations, or slider labels": "select_choices_or_calculations",
	"field note": "field_note",
	"text validation type or show slider number": "text_validation_type_or_show_slider_number",
	"text validation min":                        "text_validation_min",
	"text validation max":                        "text_validation_max",
	"identifier?":                                "identifier",
	"branching logic (show field only if...)":    "branching_logic",
	"required field?":                            "required_field",
	"custom alignment":                           "custom_alignment",
	"question number (surveys only)":             "question_number",
	"matrix group name":                          "matrix_group_name",
	"matrix ranking?":                            "matrix_ranking",
	"field annotation":                           "field_annotation",
}

// ParseCSV reads a data dictionary in either of REDCap's CSV shapes: the Data Dictionary file
// downloaded from the web UI (header "Variable / Field Name","Form Name",…) or the API metadata
// export (header field_name,form_name,…). Unknown columns are ignored; blank lines are skipped.
func ParseCSV(r io.Reader) (*Dictionary, error) {
	br := bufio.NewReader(r)
	if bom, err := br.Peek(3); err == nil && string(bom) == "\ufeff" {
		br.Discard(3) // spreadsheet programs prepend a UTF-8 byte-order mark
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("data dictionary: the file is empty; export the Data Dictionary (or the API metadata) from REDCap as CSV")
	}
	if err != nil {
		return nil, fmt.Errorf("data dictionary: %w", err)
	}
	keys := make([]string, len(header))
	for i, h := range header {
		h = strings.TrimSpace(h)
		if k, ok := humanHeaders[strings.ToLower(h)]; ok {
			keys[i] = k
		} else {
			keys[i] = strings.ToLower(h)
		}
	}
	if !slices.Contains(keys, "field_name") || !slices.Contains(keys, "form_name") || !slices.Contains(keys, "field_type") {
		return nil, fmt.Errorf("data dictionary: header %q lacks the field name, form name or field type column; is this a REDCap Data Dictionary CSV?", strings.Join(header, ","))
	}

	var rows []map[string]string
	var lines []int
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("data dictionary: %w", err)
		}
		if blank(rec) {
			continue
		}
		row := make(map[string]string, len(keys))
		for i, v := range rec {
			if i < len(keys) && keys[i] != "" {
				row[keys[i]] = v
			}
		}
		line, _ := cr.FieldPos(0)
		rows = append(rows, row)
		lines = append(lines, line)
	}
	d, err := fromRows(rows, func(i int) string { return fmt.Sprintf("line %d", lines[i]) })
	if err != nil {
		return nil, fmt.Errorf("data dictionary: %w", err)
	}
	return d, nil
}

// FromMetadata builds a dictionary from the rows of REDCap's API metadata export
// (content=metadata), each a map of field_name, form_name, field_type, field_label,
// select_choices_or_calculations, text_validation_type_or_show_slider_number, branching_logic, ….
func FromMetadata(rows []map[string]string) (*Dictionary, error) {
	d, err := fromRows(rows, func(i int) string { return fmt.Sprintf("metadata row %d", i+1) })
	if err != nil {
		return nil, fmt.Errorf("REDCap metadata: %w", err)
	}
	return d, nil
}

func fromRows(rows []map[string]string, where func(int) string) (*Dictionary, error) {
	if len(rows) == 0 {
		return nil, errors.New("no fields: a REDCap project has at least its record-id field")
	}
	fields := make([]Field, 0, len(rows))
	seen := make(map[string]string, len(rows))
	for i, row := range rows {
		f, err := fieldFromRow(row)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where(i), err)
		}
		if prev, dup := seen[f.Name]; dup {
			return nil, fmt.Errorf("%s: field %q is defined twice (first at %s); field names must be unique", where(i), f.Name, prev)
		}
		seen[f.Name] = where(i)
		fields = append(fields, f)
	}
	return New(fields), nil
}

func fieldFromRow(row map[string]string) (Field, error) {
	get := func(k string) string { return strings.TrimSpace(row[k]) }
	f := Field{
		Name:           get("field_name"),
		Form:           get("form_name"),
		Type:           strings.ToLower(get("field_type")),
		Text:           row["field_label"],
		Validation:     notNA(get("text_validation_type_or_show_slider_number")),
		BranchingLogic: notNA(get("branching_logic")),
	}
	if f.Name == "" {
		return Field{}, errors.New("the field name is blank")
	}
	if f.Form == "" {
		return Field{}, fmt.Errorf("field %q has no form name", f.Name)
	}
	if !knownTypes[f.Type] {
		return Field{}, fmt.Errorf("field %q has unknown type %q (want one of text, notes, dropdown, radio, checkbox, yesno, truefalse, calc, file, slider, descriptive, sql)", f.Name, f.Type)
	}
	spec := notNA(get("select_choices_or_calculations"))
	switch {
	case hasListedChoices(f.Type):
		cs, err := ParseChoices(spec)
		if err != nil {
			return Field{}, fmt.Errorf("field %q: %w", f.Name, err)
		}
		if len(cs) == 0 {
			return Field{}, fmt.Errorf("%s field %q has no choices", f.Type, f.Name)
		}
		f.Choices = cs
	case f.Type == "yesno":
		f.Choices = []Choice{{"1", "Yes"}, {"0", "No"}}
	case f.Type == "truefalse":
		f.Choices = []Choice{{"1", "True"}, {"0", "False"}}
	case f.Type == "calc":
		f.Calculation = spec
	}
	if f.Type == "slider" {
		// For sliders this column holds "number" (show the value), not a validation type.
		f.Validation = ""
	}
	return f, nil
}

// notNA blanks the literal NA that R writes for missing values in dictionaries saved by
// REDCap client libraries; no REDCap validation, choice list or logic is spelled "NA".
func notNA(s string) string {
	if s == "NA" {
		return ""
	}
	return s
}

func blank(rec []string) bool {
	for _, v := range rec {
		if strings.TrimSpace(v) != "" {
			return false
		}
	}
	return true
}
