package rules

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/rules/dict"
)

func TestCheckSurveys(t *testing.T) {
	d, err := dict.ParseCSV(strings.NewReader("field_name,form_name,field_type,field_label\n" +
		"record_id,contact,text,ID\nmobile_phone,contact,text,Mobile\nfirst_name,contact,text,Name\nmood,baseline,text,Mood\n"))
	if err != nil {
		t.Fatal(err)
	}
	dicts := map[string]*dict.Dictionary{"main": d}
	tests := []struct {
		name, surveys, template string
		online                  map[string]map[string]bool
		want                    string // "" = no error
	}{
		{"a listed survey", "    surveys: [baseline]\n", "Go: [survey-url:baseline]", nil, ""},
		{"no list: names only", "", "Go: [survey-url:baseline]", nil, ""},
		{"misspelt", "", "Go: [survey-url:baselin]",
			nil, "templates/remind.sms.txt:1:5: rule \"remind\": [survey-url:baselin]: no instrument baselin in project main (did you mean baseline?)"},
		{"not listed", "    surveys: [baseline]\n", "Hi\n [survey-link:contact:Tap]",
			nil, "templates/remind.sms.txt:2:2: rule \"remind\": [survey-link:contact]: instrument contact is not a survey (it is not in the surveys list of project main at "},
		{"REDCap says no", "    surveys: [contact]\n", "[survey-url:contact]",
			map[string]map[string]bool{"main": {"contact": false}}, "instrument contact is not a survey (REDCap refuses survey links for it): enable it as a survey in REDCap's Online Designer"},
		{"REDCap says yes", "    surveys: []\n", "[survey-url:contact]",
			map[string]map[string]bool{"main": {"contact": true}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeStudy(t, strings.Replace(studyHead, "    token_env: REDCAP_TOKEN_MAIN\n", "    token_env: REDCAP_TOKEN_MAIN\n"+tt.surveys, 1))
			if err := os.WriteFile(filepath.Join(filepath.Dir(path), "templates", "remind.sms.txt"), []byte(tt.template), 0o644); err != nil {
				t.Fatal(err)
			}
			s, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			errs := s.CheckSurveys(dicts, tt.online)
			switch {
			case tt.want == "" && len(errs) > 0:
				t.Errorf("unexpected: %v", errs)
			case tt.want != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), tt.want)):
				t.Errorf("got %v\nwant one containing %s", errs, tt.want)
			}
		})
	}
}
