package redcap

import "context"

// MetadataRows exports the project's data dictionary as REDCap lists it
// (content=metadata): one row per field, in form order, keyed by the API's
// column names (field_name, form_name, section_header, field_type, …), every
// value as REDCap gave it. Unlike Metadata it keeps the columns nudge does not
// use (section headers, notes, annotations), so that the dictionary can be
// written out again as the file REDCap's web UI downloads.
func (c *Client) MetadataRows(ctx context.Context) ([]map[string]string, error) {
	body, err := c.call(ctx, "metadata", nil, jsonBody)
	if err != nil {
		return nil, err
	}
	rows, err := decodeRows(body)
	if err != nil {
		return nil, c.wrap("metadata", err)
	}
	out := make([]map[string]string, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	return out, nil
}
