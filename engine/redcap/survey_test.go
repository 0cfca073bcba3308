package redcap_test

import (
	"context"
	"errors"
	"regexp"
	"testing"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
)

func TestSurveyLink(t *testing.T) {
	p := testProject(t)
	p.Surveys = []string{"bp"}
	srv := redcaptest.New(p)
	if err := srv.Load(token, []map[string]string{{"record_id": "1"}, {"record_id": "2"}}); err != nil {
		t.Fatal(err)
	}
	c, _ := start(t, srv, token)
	ctx := context.Background()
	link := func(rec string, inst int) string {
		t.Helper()
		u, err := c.SurveyLink(ctx, redcap.SurveyLinkParams{Record: rec, Instrument: "bp", Instance: inst})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	a, again, b, a2 := link("1", 0), link("1", 1), link("2", 1), link("1", 2)
	if !regexp.MustCompile(`^https://redcap\.example\.edu/surveys/\?s=[A-Za-z0-9]{10}$`).MatchString(a) {
		t.Errorf("link %q does not look like REDCap's", a)
	}
	if a != again {
		t.Errorf("instance 0 and 1 gave %q and %q: 0 must count as 1", a, again)
	}
	if a == b || a == a2 {
		t.Errorf("links are not per record and instance: %q %q %q", a, b, a2)
	}
	calls := srv.Calls()
	last := calls[len(calls)-1]
	if last.Content != "surveyLink" || last.Params.Get("repeat_instance") != "2" || last.Params.Get("instrument") != "bp" || last.Params.Get("record") != "1" {
		t.Errorf("request params = %v", last.Params)
	}

	_, err := c.SurveyLink(ctx, redcap.SurveyLinkParams{Record: "1", Instrument: "contact"})
	if !errors.Is(err, redcap.ErrNotSurvey) {
		t.Errorf("non-survey instrument: err = %v, want ErrNotSurvey", err)
	}
	for _, bad := range []redcap.SurveyLinkParams{{Record: "9", Instrument: "bp"}, {Record: "1", Instrument: "bpx"}} {
		_, err := c.SurveyLink(ctx, bad)
		var ae *redcap.APIError
		if !errors.As(err, &ae) || ae.Status != 400 || errors.Is(err, redcap.ErrNotSurvey) || redcap.IsUnavailable(err) {
			t.Errorf("%+v: err = %v, want a 400 that is neither ErrNotSurvey nor unavailable", bad, err)
		}
	}

	srv.Fault(redcaptest.Fault{Content: "surveyLink", Status: 503, Times: 4})
	if _, err := c.SurveyLink(ctx, redcap.SurveyLinkParams{Record: "1", Instrument: "bp"}); !redcap.IsUnavailable(err) {
		t.Errorf("503: err = %v, want unavailable", err)
	}
	srv.Fault(redcaptest.Fault{Content: "surveyLink", Status: 200, HTML: true, Times: 4})
	if u, err := c.SurveyLink(ctx, redcap.SurveyLinkParams{Record: "1", Instrument: "bp"}); err == nil {
		t.Errorf("an HTML page was taken for a link: %q", u)
	}
}
