package redcap

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// SurveyLinkParams names one participant's survey: the record, the
// instrument (enabled as a survey), the unique event name in a longitudinal
// project ("" in a classic one) and the repeat instance (0 counts as 1).
type SurveyLinkParams struct {
	Record, Instrument, Event string
	Instance                  int
}

// ErrNotSurvey is the cause of the error SurveyLink returns when REDCap
// refuses the link because the instrument is not enabled as a survey: a
// mistake in the study's set-up, not an outage.
var ErrNotSurvey = errors.New("the instrument is not enabled as a survey")

// SurveyLink exports the participant's own link to a survey
// (content=surveyLink), such as https://redcap.example.edu/surveys/?s=AbCdE12345.
// REDCap answers it as plain text. The API user needs the Survey Distribution
// Tools right. An instrument that is not a survey is an error wrapping
// ErrNotSurvey; other refusals are *APIError, and an unreachable REDCap an
// error IsUnavailable reports.
func (c *Client) SurveyLink(ctx context.Context, p SurveyLinkParams) (string, error) {
	inst := p.Instance
	if inst < 1 {
		inst = 1
	}
	params := url.Values{}
	params.Set("record", p.Record)
	params.Set("instrument", p.Instrument)
	if p.Event != "" {
		params.Set("event", p.Event)
	}
	params.Set("repeat_instance", strconv.Itoa(inst))
	body, err := c.call(ctx, "surveyLink", params, surveyURLBody)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && notSurvey(ae.Message) {
		return "", &callError{msg: c.redact(fmt.Sprintf("REDCap surveyLink request to %s: %v", c.host, err)), err: fmt.Errorf("%w: %w", ErrNotSurvey, err)}
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(body)), nil
}

// notSurvey reports whether REDCap's message refuses a link because the
// instrument is not a survey. Wordings differ between versions; they all
// speak of a survey and say it is not one or not enabled.
func notSurvey(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "survey") && (strings.Contains(m, "not enabled") || strings.Contains(m, "not a survey"))
}

// surveyURLBody accepts a body that is one absolute http(s) URL: anything
// else (an HTML maintenance page, an empty answer) must never reach a
// participant.
func surveyURLBody(body []byte) error {
	s := strings.TrimSpace(string(body))
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(s, " \t\r\n<>\"") {
		return fmt.Errorf("the answer is not a survey link (%s)", snippet(body))
	}
	return nil
}

// IsSurvey reports whether an instrument is enabled as a survey, by asking
// for its participant list (content=participantList), which REDCap refuses
// for an instrument that is not a survey. event is a unique event name the
// instrument is designated for in a longitudinal project ("" in a classic
// one). Like SurveyLink it needs the Survey Distribution Tools right; any
// answer other than a list or that refusal is an error.
func (c *Client) IsSurvey(ctx context.Context, instrument, event string) (bool, error) {
	params := url.Values{}
	params.Set("instrument", instrument)
	if event != "" {
		params.Set("event", event)
	}
	_, err := c.call(ctx, "participantList", params, jsonBody)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && notSurvey(ae.Message) {
		return false, nil
	}
	return err == nil, err
}
