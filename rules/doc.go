// Package rules is the coordinator's and administrator's interface to
// nudge: the config file (nudge.yaml), the rule files and their templates.
//
// Load reads them strictly — unknown keys, wrong types, duplicate keys and
// literal secrets are errors — and returns every problem at once as Errors,
// each with its file:line:col and rule name. CheckFields, CheckEvents and
// CheckWriteEvents then check the rules against a REDCap project's data
// dictionary, events and the instruments designated for each event.
//
// Evaluation is pure: GroupTable (or GroupRows) turns a REDCap export into
// Records, a Scope answers field references for one row, and Rule.Evaluate
// decides which rows a rule selects at a given time and says why the others
// were not.
package rules
