package redcaptest

import (
	"crypto/sha256"
	"fmt"
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
	switch {
	case form == "":
		return errAnswer(http.StatusBadRequest, "The parameter 'instrument' is missing")
	case record == "":
		return errAnswer(http.StatusBadRequest, "The parameter 'record' is missing")
	}
	if _, ok := st.formIdx[form]; !ok {
		return errAnswer(http.StatusBadRequest, fmt.Sprintf("The value of the parameter 'instrument' (%s) is not a valid instrument name", form))
	}
	if !slices.Contains(st.p.Surveys, form) {
		return errAnswer(http.StatusBadRequest, fmt.Sprintf("The instrument '%s' is not enabled as a survey in this project", form))
	}
	if st.p.Longitudinal() {
		if _, ok := st.eventIdx[event]; !ok {
			return errAnswer(http.StatusBadRequest, fmt.Sprintf("The value of the parameter 'event' (%s) is not a valid unique event name", event))
		}
		if !st.isDesignated(event, form) {
			return errAnswer(http.StatusBadRequest, fmt.Sprintf("The instrument '%s' is not designated for the event '%s'", form, event))
		}
	} else {
		event = ""
	}
	if _, ok := st.records[record]; !ok {
		return errAnswer(http.StatusBadRequest, fmt.Sprintf("The record '%s' does not exist", record))
	}
	base := st.p.SurveyBase
	if base == "" {
		base = defaultSurveyBase
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{strconv.Itoa(st.p.ID), record, form, event, strconv.Itoa(inst)}, "\x00")))
	hash := make([]byte, 10)
	for i := range hash {
		hash[i] = surveyHashChars[int(sum[i])%len(surveyHashChars)]
	}
	return answer{http.StatusOK, "text/html; charset=UTF-8", []byte(base + string(hash))}
}
