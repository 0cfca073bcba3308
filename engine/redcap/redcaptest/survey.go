package redcaptest

import (
	"crypto/sha256"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// defaultSurveyBase starts the survey links of a project without SurveyBase.
const defaultSurveyBase = "https://redcap.example.edu/surveys/?s="

// surveyHashChars are the characters of a survey hash, as REDCap's.
const surveyHashChars = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

// surveyLink answers content=surveyLink: the participant's link to a survey
// as plain text, stable per project, record, instrument, event and instance.
func (st *state) surveyLink(p url.Values) answer {
	record, form, event := p.Get("record"), p.Get("instrument"), p.Get("event")
	inst := 1
	if v := p.Get("repeat_instance"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return errAnswer(http.StatusBadRequest, fmt.Sprintf("The value of the parameter 'repeat_instance' (%s) is not valid", v))
		}
		inst = n
	}
	if record == "" {
		return errAnswer(http.StatusBadRequest, "The parameter 'record' is missing")
	}
	event, refused, bad := st.surveyOf(form, event)
	if bad {
		return refused
	}
	if _, ok := st.records[record]; !ok {
		return errAnswer(http.StatusBadRequest, fmt.Sprintf("The record '%s' does not exist", record))
	}
	return answer{http.StatusOK, "text/html; charset=UTF-8", []byte(st.surveyURL(record, form, event, inst))}
}

// surveyOf checks that form is a survey of the project and, in a
// longitudinal project, that event is an event form is designated for. It
// returns the event to link ("" in a classic project) or REDCap's refusal.
func (st *state) surveyOf(form, event string) (string, answer, bool) {
	if form == "" {
		return "", errAnswer(http.StatusBadRequest, "The parameter 'instrument' is missing"), true
	}
	if _, ok := st.formIdx[form]; !ok {
		return "", errAnswer(http.StatusBadRequest, fmt.Sprintf("The value of the parameter 'instrument' (%s) is not a valid instrument name", form)), true
	}
	if !slices.Contains(st.p.Surveys, form) {
		return "", errAnswer(http.StatusBadRequest, fmt.Sprintf("The instrument '%s' is not enabled as a survey in this project", form)), true
	}
	if !st.p.Longitudinal() {
		return "", answer{}, false
	}
	if _, ok := st.eventIdx[event]; !ok {
		return "", errAnswer(http.StatusBadRequest, fmt.Sprintf("The value of the parameter 'event' (%s) is not a valid unique event name", event)), true
	}
	if !st.isDesignated(event, form) {
		return "", errAnswer(http.StatusBadRequest, fmt.Sprintf("The instrument '%s' is not designated for the event '%s'", form, event)), true
	}
	return event, answer{}, false
}

// surveyURL is a record's link to a survey: stable per project, record,
// instrument, event and instance.
func (st *state) surveyURL(record, form, event string, inst int) string {
	base := st.p.SurveyBase
	if base == "" {
		base = defaultSurveyBase
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{strconv.Itoa(st.p.ID), record, form, event, strconv.Itoa(inst)}, "\x00")))
	hash := make([]byte, 10)
	for i := range hash {
		hash[i] = surveyHashChars[int(sum[i])%len(surveyHashChars)]
	}
	return base + string(hash)
}

// participantList answers content=participantList: one entry per record
// for a survey (none invited: nudge never invites through REDCap), REDCap's
// refusal for an instrument that is not one.
func (st *state) participantList(p url.Values) answer {
	form := p.Get("instrument")
	event, refused, bad := st.surveyOf(form, p.Get("event"))
	if bad {
		return refused
	}
	type participant struct {
		Email           string `json:"email"`
		EmailOccurrence int    `json:"email_occurrence"`
		Identifier      string `json:"identifier"`
		Record          string `json:"record"`
		InvitationSent  int    `json:"invitation_sent_status"`
		InvitationTime  string `json:"invitation_send_time"`
		ResponseStatus  int    `json:"response_status"`
		AccessCode      string `json:"survey_access_code"`
		Link            string `json:"survey_link"`
	}
	out := []participant{}
	ids := slices.Sorted(maps.Keys(st.records))
	for _, id := range ids {
		out = append(out, participant{EmailOccurrence: 1, Record: id, Link: st.surveyURL(id, form, event, 1)})
	}
	return jsonAnswer(out)
}
