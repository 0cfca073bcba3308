package redcap_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/rules/dict"
)

// sharedDir returns the real dictionaries folder, "shared/redcap-dictionaries" beside the
// module root, or skips the test.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Skip("module root not found")
		}
		dir = filepath.Dir(dir)
	}
	d := filepath.Join(filepath.Dir(dir), "shared", "redcap-dictionaries")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("real dictionaries not available: %v", err)
	}
	return d
}

func readCSV(t *testing.T, path string) (header []string, rows []map[string]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	all, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header = all[0]
	for _, rec := range all[1:] {
		row := map[string]string{}
		for i, h := range header {
			row[h] = rec[i]
		}
		rows = append(rows, row)
	}
	return header, rows
}

var armSuffix = regexp.MustCompile(`_arm_(\d+)$`)

// structureFromRows works out a longitudinal project's events (in order of first appearance)
// and which forms each event uses (those with a value in some row of that event).
func structureFromRows(d *dict.Dictionary, rows []map[string]string) ([]redcap.Event, []redcap.FormEvent) {
	var events []redcap.Event
	used := map[string]map[string]bool{}
	for _, r := range rows {
		ev := r["redcap_event_name"]
		if used[ev] == nil {
			used[ev] = map[string]bool{}
			arm := 1
			if m := armSuffix.FindStringSubmatch(ev); m != nil {
				arm, _ = strconv.Atoi(m[1])
			}
			events = append(events, redcap.Event{Name: ev, UniqueName: ev, Arm: arm, ID: 100 + len(events)})
		}
		for col, v := range r {
			if c, ok := d.Column(col); ok && v != "" && col != d.RecordID() {
				used[ev][c.Form] = true
			}
		}
	}
	var fe []redcap.FormEvent
	for _, e := range events {
		for _, f := range d.Forms() {
			if used[e.UniqueName][f] {
				fe = append(fe, redcap.FormEvent{Arm: e.Arm, Event: e.UniqueName, Form: f})
			}
		}
	}
	return events, fe
}

// TestRealRoundTrip loads real REDCap exports into the simulator and checks that the client
// exports exactly the same rows back, and that the raw answer keeps REDCap's column order.
func TestRealRoundTrip(t *testing.T) {
	dir := sharedDir(t)
	const prefix = "OuhscBbmc__REDCapR__inst__test-data__projects__"
	tests := []struct {
		name      string
		repeating []redcap.Repeating
		longi     bool
	}{
		{name: "repeating-instruments-sparse", repeating: []redcap.Repeating{{Form: "bp"}}},
		{name: "longitudinal", longi: true},
		{name: "metadata-write"},
		{name: "validation-types-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, prefix+tt.name+"__dictionary.csv"))
			if err != nil {
				t.Skip(err)
			}
			d, err := dict.ParseCSV(f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			header, rows := readCSV(t, filepath.Join(dir, "records", prefix+tt.name+"__data.csv"))
			p := &redcaptest.Project{Token: token, ID: 1, Title: tt.name, Dict: d, Repeating: tt.repeating}
			if tt.longi {
				p.Events, p.FormEvents = structureFromRows(d, rows)
			}
			srv := redcaptest.New(p)
			if err := srv.Load(token, rows); err != nil {
				t.Fatal(err)
			}
			c, _ := start(t, srv, token)
			got, err := c.ExportRecords(context.Background(), redcap.ExportParams{})
			if err != nil {
				t.Fatal(err)
			}
			want := make([]redcap.Row, len(rows))
			for i, r := range rows {
				delete(r, "redcap_data_access_group") // the simulator has no data access groups
				want[i] = r
			}
			if len(got) != len(want) {
				t.Fatalf("exported %d rows, want %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					for k, v := range want[i] {
						if got[i][k] != v {
							t.Errorf("row %d column %s = %q, want %q", i+1, k, got[i][k], v)
						}
					}
				}
			}

			// The raw answer lists the columns in the order of the real export's header.
			keys := rawKeys(t, srv, token)
			var wantKeys []string
			for _, h := range header {
				if h != "redcap_data_access_group" {
					wantKeys = append(wantKeys, h)
				}
			}
			if !reflect.DeepEqual(keys, wantKeys) {
				t.Errorf("column order\n got %v\nwant %v", keys, wantKeys)
			}
		})
	}
}

// rawKeys exports through the simulator's handler and returns the keys of the first row in
// the order the answer lists them.
func rawKeys(t *testing.T, srv *redcaptest.Server, tok string) []string {
	t.Helper()
	form := url.Values{"token": {tok}, "content": {"record"}, "format": {"json"}}
	req := httptest.NewRequest(http.MethodPost, "/api/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	dec := json.NewDecoder(rec.Body)
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			depth++
			continue
		case json.Delim('}'):
			return keys
		}
		if depth == 2 && dec.More() {
			keys = append(keys, tok.(string))
			if _, err := dec.Token(); err != nil { // the value
				t.Fatal(err)
			}
		}
	}
}
