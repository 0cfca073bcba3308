package templates

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/rules/logic"
)

func TestParseSurveyTags(t *testing.T) {
	tests := []struct {
		src  string
		want SurveyRef
	}{
		{"[survey-url:baseline]", SurveyRef{Instrument: "baseline", File: "t", Line: 1, Col: 1}},
		{"x [survey-link:baseline]", SurveyRef{Instrument: "baseline", Link: true, File: "t", Line: 1, Col: 3}},
		{"[survey-link:baseline:Take the survey, please]", SurveyRef{Instrument: "baseline", Link: true, Text: "Take the survey, please", File: "t", Line: 1, Col: 1}},
		{"\n [visit_arm_1][survey-url:visit]", SurveyRef{Instrument: "visit", Event: "visit_arm_1", File: "t", Line: 2, Col: 2}},
		{"[survey-url:diary][2]", SurveyRef{Instrument: "diary", Instance: "2", File: "t", Line: 1, Col: 1}},
		{"[survey-url:diary][current-instance]", SurveyRef{Instrument: "diary", Instance: "current-instance", File: "t", Line: 1, Col: 1}},
		{"[v_arm_1][survey-link:diary:Go][previous-instance]", SurveyRef{Instrument: "diary", Event: "v_arm_1", Instance: "previous-instance", Text: "Go", Link: true, File: "t", Line: 1, Col: 1}},
	}
	for _, tt := range tests {
		text, err := Parse("t", tt.src)
		if err != nil {
			t.Errorf("%q: %v", tt.src, err)
			continue
		}
		if got := text.Surveys(); len(got) != 1 || !reflect.DeepEqual(got[0], tt.want) {
			t.Errorf("%q: Surveys = %+v, want %+v", tt.src, got, tt.want)
		}
		if refs := text.Refs(); len(refs) != 0 {
			t.Errorf("%q: a survey tag is not a field reference, got Refs %v", tt.src, refs)
		}
	}
	for _, bad := range []struct{ src, msg string }{
		{"[survey-url]", "name the survey's instrument"},
		{"[survey-link:]", "name the survey's instrument"},
		{"[survey-url:base line]", "name the survey's instrument"},
		{"[survey-url:baseline:Text]", "name the survey's instrument"},
		{"[survey-link:baseline:]", "name the survey's instrument"},
		{"[previous-event-name][survey-url:baseline]", "unique event name"},
		{"[survey-url:diary][soon]", "is not an event name"},
	} {
		_, err := Parse("t", bad.src)
		var pe *Error
		if !errors.As(err, &pe) || !strings.Contains(pe.Msg, bad.msg) && !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("%q: err = %v, want one saying %q", bad.src, err, bad.msg)
		}
	}
}

// links is a Source and Linker: each link names what it was asked for.
type links struct {
	src
	err error
}

func (l links) SurveyLink(s SurveyRef) (string, error) {
	if l.err != nil {
		return "", l.err
	}
	return "https://r.example/surveys/?s=" + s.Instrument + "&x=<" + s.Event + ">" + s.Instance, nil
}

type src map[string]string

func (s src) Lookup(r logic.Ref) (string, bool) { v, ok := s[r.Field]; return v, ok }

func TestRenderSurveyLinks(t *testing.T) {
	vals := src{"first_name": "Ana"}
	tests := []struct {
		src  string
		html bool
		want string
	}{
		{"Hi [first_name]: [survey-url:baseline]", false, "Hi Ana: https://r.example/surveys/?s=baseline&x=<>"},
		{"[survey-link:baseline:Go <now>]", false, "https://r.example/surveys/?s=baseline&x=<>"},
		{"[e_arm_1][survey-url:diary][2]", false, "https://r.example/surveys/?s=diary&x=<e_arm_1>2"},
		{"<p>[survey-link:baseline:Go & <now>]</p>", true, `<p><a href="https://r.example/surveys/?s=baseline&amp;x=&lt;&gt;">Go &amp; &lt;now&gt;</a></p>`},
		{"[survey-link:baseline_survey]", true, `<a href="https://r.example/surveys/?s=baseline_survey&amp;x=&lt;&gt;">Baseline survey</a>`},
		{"[survey-url:baseline]", true, `https://r.example/surveys/?s=baseline&amp;x=&lt;&gt;`},
	}
	for _, tt := range tests {
		parse := Parse
		if tt.html {
			parse = ParseHTML
		}
		text, err := parse("t", tt.src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := text.Render(links{src: vals}, nil)
		if err != nil || got != tt.want {
			t.Errorf("%q: Render = %q, %v; want %q", tt.src, got, err, tt.want)
		}
	}
}

func TestSafetyNoMessageWithoutItsSurveyLink(t *testing.T) {
	text, err := Parse("t", "Hi [first_name], take it: [survey-url:baseline]")
	if err != nil {
		t.Fatal(err)
	}
	down := errors.New("REDCap is down")
	if got, err := text.Render(links{src: src{"first_name": "Ana"}, err: down}, nil); !errors.Is(err, down) || got != "" {
		t.Errorf("a failed link rendered %q, %v; want no text and the error", got, err)
	}
	if got, err := text.Render(src{"first_name": "Ana"}, nil); !errors.Is(err, ErrNoLinks) || got != "" {
		t.Errorf("a Source without links rendered %q, %v; want ErrNoLinks", got, err)
	}
	blank := linkFunc(func(SurveyRef) (string, error) { return " ", nil })
	if got, err := text.Render(struct {
		Source
		Linker
	}{src{"first_name": "Ana"}, blank}, nil); err == nil {
		t.Errorf("a blank link rendered %q", got)
	}
}

type linkFunc func(SurveyRef) (string, error)

func (f linkFunc) SurveyLink(s SurveyRef) (string, error) { return f(s) }
