package redcap

import (
	"reflect"
	"testing"
)

// The fast decoder of flat exports gives exactly what encoding/json gives,
// and refuses (leaving the body to encoding/json) whatever it does not read.
func TestDecodeFlatMatchesEncodingJSON(t *testing.T) {
	for _, c := range decodeCases {
		want, wantErr := decodeGeneric([]byte(c.body))
		got, ok := decodeFlat([]byte(c.body))
		if ok != c.fast {
			t.Errorf("%q: fast path read it = %v, want %v", c.body, ok, c.fast)
		}
		if ok {
			if wantErr != nil {
				t.Errorf("%q: the fast path read what encoding/json refuses: %v", c.body, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%q: fast %#v, encoding/json %#v", c.body, got, want)
			}
		}
		all, err := decodeRows([]byte(c.body))
		if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(all, want) {
			t.Errorf("%q: decodeRows = %#v, %v; want %#v, %v", c.body, all, err, want, wantErr)
		}
	}
}

// decodeCases are bodies of record exports, REDCap's usual ones and others.
var decodeCases = []struct {
	body string
	fast bool // the fast path reads it
}{
	{`[]`, true},
	{` [ ] `, true},
	{`[{}]`, true},
	{`[{"record_id":"1","sms_ok":"1","phone":"+13125550100"},{"record_id":"2","sms_ok":"","phone":""}]`, true},
	{"[\n {\"a\" : \"x\" ,\n \"b\":\"y\"}\n]\n", true},
	{`[{"n":12,"f":-1.5e3,"t":true,"u":false,"z":null}]`, true},
	{`[{"a":"caf\u00e9 \"q\" \\ \/ \n"}]`, true},
	{`[{"a":"café ☕"}]`, true},
	{"[{\"a\":\"bad \xff utf8\"}]", true},
	{`[{"a":"1","a":"2"}]`, true},
	{`[{"a":"1","b":"2"},{"b":"3"},{"c":"4","a":"5"},{"b":"6","a":"7","c":""}]`, true},
	{`[{"a":"é","b":"x"},{"b":"\u00fc","a":""}]`, true},
	{`[{"k\u0065y":"v"}]`, true},
	{`[{"a":{"b":1}}]`, false},
	{`[{"a":[1,2]}]`, false},
	{`[null]`, false},
	{`null`, false},
	{`[{"a":"1"}] trailing`, false},
	{`[{"a":01}]`, false},
	{`[{"a":"1"}`, false},
	{`[{"a":"1",}]`, false},
	{"[{\"a\":\"tab\there\"}]", false},
	{`{"error":"You do not have permissions to use the API"}`, false},
	{``, false},
}

// FuzzDecodeFlat checks on any body that the fast path, when it reads one,
// agrees with encoding/json.
func FuzzDecodeFlat(f *testing.F) {
	f.Add(`[{"record_id":"1","x":"caf\u00e9","n":1.5,"b":true,"z":null}]`)
	f.Add(`[{"a":"1"},{"a":"2","b":""}]`)
	f.Fuzz(func(t *testing.T, body string) {
		got, ok := decodeFlat([]byte(body))
		if !ok {
			return
		}
		want, err := decodeGeneric([]byte(body))
		if err != nil {
			t.Fatalf("%q: the fast path read what encoding/json refuses: %v", body, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast %#v, encoding/json %#v", body, got, want)
		}
	})
}
