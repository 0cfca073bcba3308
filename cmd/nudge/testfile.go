package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/rules"
)

// ruleTestFile is one `nudge test rules` file: a study, its records and
// the tests run over them.
type ruleTestFile struct {
	path    string
	config  string                         // the study's nudge.yaml, relative to the test file
	records map[string][]map[string]string // by project; project "" = the study's only project
	tests   []ruleTest
}

// ruleTest is a series of moments over one fresh outbox: what is planned
// at a moment is enqueued as `nudge run` enqueues it, so it counts at the
// later moments (repeats, "already messaged").
type ruleTest struct {
	name    string
	pos     rules.Pos
	rules   []string                       // only these rules; none = as `nudge run`
	records map[string][]map[string]string // replaces the file's records of these projects
	moments []moment
}

// moment is one pass at one time and the messages expected of it.
type moment struct {
	at      string
	pos     rules.Pos
	update  map[string][]map[string]string // rows merged into the records before the pass
	optOut  []string                       // phone numbers that texted STOP before the pass
	expect  []expectedMessage              // every message the moment plans; none = expect: none
	notSent []expectedMiss
}

// expectedMessage is a message a moment must plan; blank fields match any.
type expectedMessage struct {
	pos        rules.Pos
	rule       string
	record     string
	event      string
	instance   int
	channel    string
	text       string // the whole rendered text (surrounding blanks ignored)
	contains   string // or a part of it
	subject    string // email: the subject, exactly
	deferredTo string // planned for this later time (quiet hours); "" = sent now
}

// expectedMiss is a participant row a moment must not message, with the
// planner's reason.
type expectedMiss struct {
	pos      rules.Pos
	rule     string
	record   string
	event    string
	instance int
	outcome  string // excluded, skipped or done; "" = any of them
	reason   string // a part of the reason
}

// Keys of a rule test file, listed in errors about unknown keys.
var (
	keysFile     = []string{"config", "records", "tests"}
	keysTest     = []string{"name", "rules", "records", "moments"}
	keysMoment   = []string{"at", "update", "opt_out", "expect", "not_sent"}
	keysExpect   = []string{"rule", "record", "event", "instance", "channel", "text", "contains", "subject", "deferred_to"}
	keysNotSent  = []string{"rule", "record", "event", "instance", "outcome", "reason"}
	missOutcomes = []string{"excluded", "skipped", "done"}
)

// testParser reads a test file's YAML nodes, collecting every problem with
// its position.
type testParser struct {
	file string
	dir  string
	errs rules.Errors
}

func (p *testParser) pos(n *yaml.Node) rules.Pos {
	return rules.Pos{File: p.file, Line: n.Line, Col: n.Column}
}

func (p *testParser) fail(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &rules.Error{Pos: p.pos(n), Msg: fmt.Sprintf(format, args...)})
}

// mapping returns a mapping node's values by key, refusing keys not in
// allowed (the error lists the valid ones).
func (p *testParser) mapping(n *yaml.Node, what string, allowed []string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.fail(n, "%s must be a mapping (key: value lines); valid keys: %s", what, strings.Join(allowed, ", "))
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !slices.Contains(allowed, k.Value):
			p.fail(k, "unknown key %q in %s; valid keys: %s", k.Value, what, strings.Join(allowed, ", "))
		case out[k.Value] != nil:
			p.fail(k, "%s is given twice in %s", k.Value, what)
		default:
			out[k.Value] = v
		}
	}
	return out
}

func (p *testParser) scalar(n *yaml.Node, what string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.fail(n, "%s must be a single value", what)
		return ""
	}
	return n.Value
}

func (p *testParser) strings(n *yaml.Node, what string) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, "%s must be a list, e.g. [a, b]", what)
		return nil
	}
	var out []string
	for _, c := range n.Content {
		out = append(out, p.scalar(c, what))
	}
	return out
}

func (p *testParser) instance(n *yaml.Node) int {
	s := p.scalar(n, "instance")
	if s == "" {
		return 0
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 1 {
		p.fail(n, "instance must be a repeat instance number (1, 2, …), not %q", s)
	}
	return i
}

// parseTestFile reads a rule test file.
func parseTestFile(path string) (*ruleTestFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p := &testParser{file: path, dir: filepath.Dir(path)}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, rules.Errors{{Pos: rules.Pos{File: path}, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	if len(doc.Content) == 0 {
		return nil, rules.Errors{{Pos: rules.Pos{File: path}, Msg: "the file is empty; it needs config:, records: and tests:"}}
	}
	root := doc.Content[0]
	m := p.mapping(root, "the test file", keysFile)
	f := &ruleTestFile{path: path}
	if n := m["config"]; n != nil {
		f.config = p.scalar(n, "config")
		if !filepath.IsAbs(f.config) {
			f.config = filepath.Join(p.dir, f.config)
		}
	} else {
		p.fail(root, "config: is missing: name the study's nudge.yaml, relative to this file")
	}
	if n := m["records"]; n != nil {
		f.records = p.records(n)
	}
	if n := m["tests"]; n != nil && n.Kind == yaml.SequenceNode {
		for _, tn := range n.Content {
			f.tests = append(f.tests, p.test(tn))
		}
	} else {
		p.fail(root, "tests: is missing or not a list: give a list of tests, each with a name and moments")
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return f, nil
}

// records reads records: by project (PROJECT: rows or file), or for a
// study of one project just the rows or the file.
func (p *testParser) records(n *yaml.Node) map[string][]map[string]string {
	out := map[string][]map[string]string{}
	if n.Kind != yaml.MappingNode {
		out[""] = p.rows(n)
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		out[n.Content[i].Value] = p.rows(n.Content[i+1])
	}
	return out
}

// rows reads rows in REDCap's flat export shape: a list of field: value
// mappings, or the name of a JSON or CSV file (relative to the test file).
func (p *testParser) rows(n *yaml.Node) []map[string]string {
	switch n.Kind {
	case yaml.ScalarNode:
		rows, err := redcaptest.ReadRecords(filepath.Join(p.dir, n.Value))
		if err != nil {
			p.fail(n, "records: %v", err)
		}
		return rows
	case yaml.SequenceNode:
		var out []map[string]string
		for _, rn := range n.Content {
			if rn.Kind != yaml.MappingNode {
				p.fail(rn, "a record row must be a mapping of field: value, as REDCap exports it")
				continue
			}
			row := map[string]string{}
			for i := 0; i+1 < len(rn.Content); i += 2 {
				k, v := rn.Content[i], rn.Content[i+1]
				switch {
				case v.Kind != yaml.ScalarNode:
					p.fail(v, "the value of %s must be a single value", k.Value)
				case v.Tag == "!!null":
					row[k.Value] = ""
				default:
					row[k.Value] = v.Value
				}
			}
			out = append(out, row)
		}
		return out
	}
	p.fail(n, "records must be a list of rows (field: value) or the name of a JSON or CSV file exported from REDCap")
	return nil
}

func (p *testParser) test(n *yaml.Node) ruleTest {
	m := p.mapping(n, "a test", keysTest)
	t := ruleTest{pos: p.pos(n), name: p.scalar(m["name"], "name")}
	if t.name == "" {
		t.name = fmt.Sprintf("test at line %d", n.Line)
	}
	t.rules = p.strings(m["rules"], "rules")
	if rn := m["records"]; rn != nil {
		t.records = p.records(rn)
	}
	mn := m["moments"]
	if mn == nil || mn.Kind != yaml.SequenceNode || len(mn.Content) == 0 {
		p.fail(n, "test %q: moments: is missing or empty: give a list of moments, each with at: and expect:", t.name)
		return t
	}
	for _, c := range mn.Content {
		t.moments = append(t.moments, p.moment(c))
	}
	return t
}

func (p *testParser) moment(n *yaml.Node) moment {
	m := p.mapping(n, "a moment", keysMoment)
	mo := moment{pos: p.pos(n), at: p.scalar(m["at"], "at")}
	if mo.at == "" {
		p.fail(n, `at: is missing: give the moment's time, e.g. at: "2026-11-23 10:00" (study time zone)`)
	}
	if u := m["update"]; u != nil {
		mo.update = p.records(u)
	}
	mo.optOut = p.strings(m["opt_out"], "opt_out")
	en := m["expect"]
	switch {
	case en == nil:
		p.fail(n, "expect: is missing: list the messages expected at this moment, or write expect: none")
	case en.Kind == yaml.ScalarNode && (en.Value == "none" || en.Value == ""):
		// Nothing is expected.
	case en.Kind == yaml.SequenceNode:
		for _, c := range en.Content {
			mo.expect = append(mo.expect, p.expected(c))
		}
	default:
		p.fail(en, "expect must be a list of messages (rule:, record:, text: or contains:, …) or none")
	}
	if nn := m["not_sent"]; nn != nil {
		if nn.Kind != yaml.SequenceNode {
			p.fail(nn, "not_sent must be a list of rule:, record:, reason:")
		} else {
			for _, c := range nn.Content {
				p.miss(c, &mo)
			}
		}
	}
	return mo
}

func (p *testParser) expected(n *yaml.Node) expectedMessage {
	m := p.mapping(n, "an expected message", keysExpect)
	x := expectedMessage{pos: p.pos(n),
		rule: p.scalar(m["rule"], "rule"), record: p.scalar(m["record"], "record"), event: p.scalar(m["event"], "event"),
		instance: p.instance(m["instance"]), channel: p.scalar(m["channel"], "channel"),
		text: p.scalar(m["text"], "text"), contains: p.scalar(m["contains"], "contains"),
		subject: p.scalar(m["subject"], "subject"), deferredTo: p.scalar(m["deferred_to"], "deferred_to")}
	if x.rule == "" || x.record == "" {
		p.fail(n, "an expected message needs rule: and record:")
	}
	if x.channel != "" && x.channel != rules.ChannelSMS && x.channel != rules.ChannelEmail {
		p.fail(m["channel"], "channel must be sms or email, not %q", x.channel)
	}
	return x
}

func (p *testParser) miss(n *yaml.Node, mo *moment) {
	m := p.mapping(n, "a not_sent entry", keysNotSent)
	x := expectedMiss{pos: p.pos(n), rule: p.scalar(m["rule"], "rule"), record: p.scalar(m["record"], "record"),
		event: p.scalar(m["event"], "event"), instance: p.instance(m["instance"]),
		outcome: p.scalar(m["outcome"], "outcome"), reason: p.scalar(m["reason"], "reason")}
	if x.rule == "" || x.record == "" {
		p.fail(n, "a not_sent entry needs rule: and record:")
	}
	if x.outcome != "" && !slices.Contains(missOutcomes, x.outcome) {
		p.fail(m["outcome"], "outcome must be one of %s, not %q", strings.Join(missOutcomes, ", "), x.outcome)
	}
	mo.notSent = append(mo.notSent, x)
}
