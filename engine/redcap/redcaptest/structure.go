package redcaptest

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/nudge-study/nudge/rules/dict"
)

// metadata answers content=metadata: one object per field in dictionary order.
func (st *state) metadata(fields, forms []string) answer {
	var bad []string
	for _, f := range fields {
		if _, ok := st.d.Field(f); !ok {
			bad = append(bad, f)
		}
	}
	if len(bad) > 0 {
		return errAnswer(http.StatusBadRequest, "The following values in the parameter fields are not valid: "+quoteList(bad))
	}
	want := func(f dict.Field) bool {
		if len(fields) == 0 && len(forms) == 0 {
			return true
		}
		for _, n := range fields {
			if n == f.Name {
				return true
			}
		}
		for _, n := range forms {
			if n == f.Form {
				return true
			}
		}
		return false
	}
	var rows [][]kv
	for _, f := range st.d.Fields {
		if !want(f) {
			continue
		}
		rows = append(rows, []kv{
			{"field_name", f.Name},
			{"form_name", f.Form},
			{"section_header", ""},
			{"field_type", f.Type},
			{"field_label", f.Text},
			{"select_choices_or_calculations", choicesSpec(f)},
			{"field_note", ""},
			{"text_validation_type_or_show_slider_number", f.Validation},
			{"text_validation_min", ""},
			{"text_validation_max", ""},
			{"identifier", yes(st.identifier[f.Name])},
			{"branching_logic", f.BranchingLogic},
			{"required_field", ""},
			{"custom_alignment", ""},
			{"question_number", ""},
			{"matrix_group_name", ""},
			{"matrix_ranking", ""},
			{"field_annotation", ""},
		})
	}
	return rawJSON(encodeRows(rows))
}

func yes(b bool) string {
	if b {
		return "y"
	}
	return ""
}

// choicesSpec writes a field's choices column back in REDCap's "1, Yes | 0, No" form.
func choicesSpec(f dict.Field) string {
	switch f.Type {
	case "calc":
		return f.Calculation
	case "dropdown", "radio", "checkbox":
		parts := make([]string, len(f.Choices))
		for i, c := range f.Choices {
			parts[i] = c.Code + ", " + c.Label
		}
		return strings.Join(parts, " | ")
	}
	return ""
}

// projectInfo answers content=project; numbers are JSON numbers, as in REDCap.
func (st *state) projectInfo() answer {
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	return jsonAnswer(struct {
		ProjectID                 int    `json:"project_id"`
		ProjectTitle              string `json:"project_title"`
		CreationTime              string `json:"creation_time"`
		ProductionTime            string `json:"production_time"`
		InProduction              int    `json:"in_production"`
		ProjectLanguage           string `json:"project_language"`
		Purpose                   int    `json:"purpose"`
		IsLongitudinal            int    `json:"is_longitudinal"`
		HasRepeating              int    `json:"has_repeating_instruments_or_events"`
		SurveysEnabled            int    `json:"surveys_enabled"`
		SchedulingEnabled         int    `json:"scheduling_enabled"`
		RecordAutonumbering       int    `json:"record_autonumbering_enabled"`
		RandomizationEnabled      int    `json:"randomization_enabled"`
		DisplayTodayNowButton     int    `json:"display_today_now_button"`
		MissingDataCodes          string `json:"missing_data_codes"`
		BypassBranchingErasePromp int    `json:"bypass_branching_erase_field_prompt"`
	}{
		ProjectID:             st.p.ID,
		ProjectTitle:          st.p.Title,
		CreationTime:          "2026-01-05 09:00:00",
		ProjectLanguage:       "English",
		IsLongitudinal:        b(st.p.Longitudinal()),
		HasRepeating:          b(st.hasRepeating()),
		SurveysEnabled:        b(len(st.p.Surveys) > 0),
		DisplayTodayNowButton: 1,
		MissingDataCodes:      st.p.MissingCodes,
	})
}

// events answers content=event.
func (st *state) events() answer {
	if !st.p.Longitudinal() {
		return errAnswer(http.StatusBadRequest, "You cannot export events for classic projects")
	}
	type event struct {
		EventName        string `json:"event_name"`
		ArmNum           int    `json:"arm_num"`
		UniqueEventName  string `json:"unique_event_name"`
		CustomEventLabel string `json:"custom_event_label"`
		EventID          int    `json:"event_id"`
	}
	out := make([]event, 0, len(st.p.Events))
	for _, e := range st.p.Events {
		out = append(out, event{e.Name, e.Arm, e.UniqueName, "", e.ID})
	}
	return jsonAnswer(out)
}

// arms answers content=arm.
func (st *state) arms() answer {
	if !st.p.Longitudinal() {
		return errAnswer(http.StatusBadRequest, "You cannot export arms for classic projects")
	}
	type arm struct {
		ArmNum int    `json:"arm_num"`
		Name   string `json:"name"`
	}
	var out []arm
	seen := map[int]bool{}
	for _, e := range st.p.Events {
		if !seen[e.Arm] {
			seen[e.Arm] = true
			out = append(out, arm{e.Arm, fmt.Sprintf("Arm %d", e.Arm)})
		}
	}
	return jsonAnswer(out)
}

// formEventMapping answers content=formEventMapping.
func (st *state) formEventMapping() answer {
	if !st.p.Longitudinal() {
		return errAnswer(http.StatusBadRequest, "You cannot export form/event mappings for classic projects")
	}
	type mapping struct {
		ArmNum          int    `json:"arm_num"`
		UniqueEventName string `json:"unique_event_name"`
		Form            string `json:"form"`
	}
	var out []mapping
	for _, e := range st.p.Events {
		for _, f := range st.d.Forms() {
			if st.isDesignated(e.UniqueName, f) {
				out = append(out, mapping{e.Arm, e.UniqueName, f})
			}
		}
	}
	return jsonAnswer(out)
}

// repeating answers content=repeatingFormsEvents.
func (st *state) repeating() answer {
	if !st.hasRepeating() {
		return errAnswer(http.StatusBadRequest, "You cannot export repeating instruments and events because the project does not contain any repeating instruments and events")
	}
	var rows [][]kv
	for _, r := range st.p.Repeating {
		var row []kv
		if st.p.Longitudinal() {
			row = append(row, kv{"event_name", r.Event})
		}
		rows = append(rows, append(row, kv{"form_name", r.Form}, kv{"custom_form_label", ""}))
	}
	return rawJSON(encodeRows(rows))
}

// exportFieldNames answers content=exportFieldNames: one row per export column of each data
// field (not the <form>_complete columns), optionally for one field.
func (st *state) exportFieldNames(field string) answer {
	if field != "" {
		if _, ok := st.d.Field(field); !ok {
			return errAnswer(http.StatusBadRequest, fmt.Sprintf("The field '%s' does not exist in the project", field))
		}
	}
	var rows [][]kv
	for _, c := range st.d.ExportColumns() {
		if c.Complete || (field != "" && c.Field != field) {
			continue
		}
		rows = append(rows, []kv{{"original_field_name", c.Field}, {"choice_value", c.Code}, {"export_field_name", c.Name}})
	}
	return rawJSON(encodeRows(rows))
}
