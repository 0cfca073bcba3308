package redcap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/nudge-study/nudge/rules/dict"
)

// Metadata exports the project's data dictionary.
func (c *Client) Metadata(ctx context.Context) (*dict.Dictionary, error) {
	plain, err := c.MetadataRows(ctx)
	if err != nil {
		return nil, err
	}
	d, err := dict.FromMetadata(plain)
	if err != nil {
		return nil, c.wrap("metadata", err)
	}
	c.mu.Lock()
	c.dict = d
	c.mu.Unlock()
	return d, nil
}

// Project describes a REDCap project's settings.
type Project struct {
	ID           int
	Title        string
	Longitudinal bool
	HasRepeating bool
	MissingCodes []string // the project's missing-data codes (codes only, e.g. "UNK", "NA")
}

// Project exports the project's settings.
func (c *Client) Project(ctx context.Context) (Project, error) {
	body, err := c.call(ctx, "project", nil, jsonBody)
	if err != nil {
		return Project{}, err
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return Project{}, c.wrap("project", fmt.Errorf("the answer is not a JSON object: %w", err))
	}
	id, err := strconv.Atoi(text(m["project_id"]))
	if err != nil {
		return Project{}, c.wrap("project", fmt.Errorf("project_id %q is not a number", text(m["project_id"])))
	}
	p := Project{
		ID:           id,
		Title:        text(m["project_title"]),
		Longitudinal: text(m["is_longitudinal"]) == "1",
		HasRepeating: text(m["has_repeating_instruments_or_events"]) == "1",
	}
	p.MissingCodes = missingCodes(text(m["missing_data_codes"]))
	return p, nil
}

// missingCodes takes the codes of a "UNK, Unknown | NA, Not applicable" specification.
func missingCodes(spec string) []string {
	var codes []string
	for _, part := range strings.Split(spec, "|") {
		code, _, _ := strings.Cut(part, ",")
		if code = strings.TrimSpace(code); code != "" {
			codes = append(codes, code)
		}
	}
	return codes
}

// Event is one event of a longitudinal project.
type Event struct {
	Name       string // the label, e.g. "Baseline"
	UniqueName string // e.g. "baseline_arm_1", the value of redcap_event_name
	Arm        int
	ID         int
}

// Events exports the events of a longitudinal project; a classic project has none (REDCap's
// refusal for classic projects is turned into an empty list).
func (c *Client) Events(ctx context.Context) ([]Event, error) {
	var raw []struct {
		Name   string      `json:"event_name"`
		Arm    json.Number `json:"arm_num"`
		Unique string      `json:"unique_event_name"`
		ID     json.Number `json:"event_id"`
	}
	if err := c.structure(ctx, "event", &raw); err != nil {
		return nil, err
	}
	out := make([]Event, 0, len(raw))
	for _, e := range raw {
		arm, _ := strconv.Atoi(e.Arm.String())
		id, _ := strconv.Atoi(e.ID.String())
		out = append(out, Event{Name: e.Name, UniqueName: e.Unique, Arm: arm, ID: id})
	}
	return out, nil
}

// FormEvent says that a form is used in an event of a longitudinal project.
type FormEvent struct {
	Arm   int
	Event string // unique event name
	Form  string
}

// FormEvents exports which forms each event uses; a classic project has none.
func (c *Client) FormEvents(ctx context.Context) ([]FormEvent, error) {
	var raw []struct {
		Arm    json.Number `json:"arm_num"`
		Unique string      `json:"unique_event_name"`
		Form   string      `json:"form"`
	}
	if err := c.structure(ctx, "formEventMapping", &raw); err != nil {
		return nil, err
	}
	out := make([]FormEvent, 0, len(raw))
	for _, fe := range raw {
		arm, _ := strconv.Atoi(fe.Arm.String())
		out = append(out, FormEvent{Arm: arm, Event: fe.Unique, Form: fe.Form})
	}
	return out, nil
}

// Repeating names a repeating instrument (Form, in Event for a longitudinal project) or a
// repeating event (Form == "").
type Repeating struct{ Event, Form string }

// Repeating exports the project's repeating instruments and events; a project without any has
// an empty list.
func (c *Client) Repeating(ctx context.Context) ([]Repeating, error) {
	var raw []struct {
		Event string `json:"event_name"`
		Form  string `json:"form_name"`
	}
	if err := c.structure(ctx, "repeatingFormsEvents", &raw); err != nil {
		return nil, err
	}
	out := make([]Repeating, 0, len(raw))
	for _, r := range raw {
		out = append(out, Repeating{Event: r.Event, Form: r.Form})
	}
	return out, nil
}

// structure exports a list describing the project's structure into out, leaving it empty when
// REDCap answers that the project has no such thing (classic projects have no events; most
// projects have no repeating instruments).
func (c *Client) structure(ctx context.Context, content string, out any) error {
	body, err := c.call(ctx, content, nil, jsonBody)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && noneToExport(ae.Message) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, out); err != nil {
		return c.wrap(content, fmt.Errorf("unexpected answer: %w", err))
	}
	return nil
}

func noneToExport(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "classic project") || strings.Contains(m, "does not contain any repeating")
}

// Version returns the REDCap version, such as "14.5.1".
func (c *Client) Version(ctx context.Context) (string, error) {
	body, err := c.call(ctx, "version", nil, versionBody)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(body)), nil
}

// versionBody accepts a body such as "14.5.1".
func versionBody(body []byte) error {
	s := strings.TrimSpace(string(body))
	for _, part := range strings.Split(s, ".") {
		if _, err := strconv.Atoi(part); err != nil {
			return fmt.Errorf("the answer %s is not a version number", snippet(body))
		}
	}
	return nil
}
