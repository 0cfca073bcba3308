package twiliotest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// wireMessage is a message exactly as Twilio's JSON has it: every field
// present, null where Twilio sends null, counts and prices as strings.
type wireMessage struct {
	AccountSID          string            `json:"account_sid"`
	APIVersion          string            `json:"api_version"`
	Body                string            `json:"body"`
	DateCreated         string            `json:"date_created"`
	DateSent            *string           `json:"date_sent"`
	DateUpdated         string            `json:"date_updated"`
	Direction           string            `json:"direction"`
	ErrorCode           *int              `json:"error_code"`
	ErrorMessage        *string           `json:"error_message"`
	From                *string           `json:"from"`
	MessagingServiceSID *string           `json:"messaging_service_sid"`
	NumMedia            string            `json:"num_media"`
	NumSegments         string            `json:"num_segments"`
	Price               *string           `json:"price"`
	PriceUnit           string            `json:"price_unit"`
	SID                 string            `json:"sid"`
	Status              string            `json:"status"`
	SubresourceURIs     map[string]string `json:"subresource_uris"`
	To                  string            `json:"to"`
	URI                 string            `json:"uri"`
}

// wirePage is one page of a message list.
type wirePage struct {
	End             int           `json:"end"`
	FirstPageURI    string        `json:"first_page_uri"`
	Messages        []wireMessage `json:"messages"`
	NextPageURI     *string       `json:"next_page_uri"`
	Page            int           `json:"page"`
	PageSize        int           `json:"page_size"`
	PreviousPageURI *string       `json:"previous_page_uri"`
	Start           int           `json:"start"`
	URI             string        `json:"uri"`
}

// wireError is Twilio's error body.
type wireError struct {
	Code     int    `json:"code"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

// pricePerSegment is what the simulator charges, in Twilio's format.
const pricePerSegment = 0.0079

func date(t time.Time) string { return t.UTC().Format(time.RFC1123Z) }

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// wire renders m's state at now. The caller holds mu.
func (s *Server) wire(m *message, now time.Time) wireMessage {
	st := s.state(m, now)
	uri := "/2010-04-01/Accounts/" + st.AccountSID + "/Messages/" + st.SID
	w := wireMessage{
		AccountSID:          st.AccountSID,
		APIVersion:          "2010-04-01",
		Body:                st.Body,
		DateCreated:         date(st.Created),
		DateUpdated:         date(st.Updated),
		Direction:           "outbound-api",
		From:                optional(st.From),
		MessagingServiceSID: optional(st.MessagingServiceSID),
		NumMedia:            "0",
		NumSegments:         strconv.Itoa(st.Segments),
		PriceUnit:           "USD",
		SID:                 st.SID,
		Status:              st.Status,
		SubresourceURIs:     map[string]string{"media": uri + "/Media.json"},
		To:                  st.To,
		URI:                 uri + ".json",
	}
	if !st.Sent.IsZero() {
		w.DateSent = optional(date(st.Sent))
		w.Price = optional(strconv.FormatFloat(-pricePerSegment*float64(st.Segments), 'f', 5, 64))
	}
	if st.MessagingServiceSID != "" && st.From == "" {
		w.NumSegments = "0" // until a number of the pool is assigned
	}
	if st.ErrorCode != 0 {
		code := st.ErrorCode
		w.ErrorCode = &code
		w.ErrorMessage = optional(errorMessage(code))
	}
	return w
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // Twilio writes & in URIs as is
	enc.Encode(v)            //nolint:errcheck // the client may have gone
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, wireError{
		Code:     code,
		Message:  msg,
		MoreInfo: "https://www.twilio.com/docs/errors/" + strconv.Itoa(code),
		Status:   status,
	})
}

// dateFilter is one of the DateSent, DateSent> and DateSent< parameters
// (twilio-go sends "DateSent>=…" as the key "DateSent>"). A value is a day
// (2006-01-02) or an RFC 3339 time.
type dateFilter struct {
	op    string // "=", ">", "<"
	t     time.Time
	isDay bool
}

func parseDateFilters(q url.Values) ([]dateFilter, string) {
	var out []dateFilter
	for key, op := range map[string]string{"DateSent": "=", "DateSent>": ">", "DateSent<": "<"} {
		v := q.Get(key)
		if v == "" {
			continue
		}
		f := dateFilter{op: op}
		if t, err := time.Parse("2006-01-02", v); err == nil {
			f.t, f.isDay = t, true
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			f.t = t
		} else {
			return nil, key + " must be a date (YYYY-MM-DD) or an RFC 3339 time, got " + strconv.Quote(v)
		}
		out = append(out, f)
	}
	return out, ""
}

// match compares a message's date against the filter: by day for a day
// value or the "=" form, to the second otherwise.
func (f dateFilter) match(t time.Time) bool {
	t = t.UTC().Truncate(time.Second)
	a, b := t, f.t.UTC()
	if f.isDay || f.op == "=" {
		a, b = t.Truncate(24*time.Hour), b.Truncate(24*time.Hour)
	}
	switch f.op {
	case ">":
		return !a.Before(b)
	case "<":
		return !a.After(b)
	}
	return a.Equal(b)
}

// list answers a message list, newest first. From matches the number that
// sends a message: for a Messaging Service, only once a number of its pool
// is assigned (an accepted message is found by To alone). Date filters apply to
// date_sent, or to date_created while a message has not been sent yet
// (how Twilio treats unsent messages here is not known). Paging follows
// PageToken ("PA" + the last SID of the previous page) when present,
// otherwise Page × PageSize.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	if !s.account(w, r) {
		return
	}
	q := r.URL.Query()
	filters, bad := parseDateFilters(q)
	if bad != "" {
		writeError(w, http.StatusBadRequest, 20001, bad)
		return
	}
	size, page := 50, 0
	if v := q.Get("PageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, 20001, "PageSize must be a whole number from 1 to 1000")
			return
		}
		size = n
	}
	if v := q.Get("Page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, 20001, "Page must be a whole number from 0")
			return
		}
		page = n
	}

	s.mu.Lock()
	now := s.opts.Clock.Now()
	var all []*message
	for _, m := range s.messages {
		if to := q.Get("To"); to != "" && m.base.To != to {
			continue
		}
		if now.Before(m.visible) {
			continue
		}
		st := s.state(m, now)
		if from := q.Get("From"); from != "" && st.From != from {
			continue
		}
		when := st.Sent
		if when.IsZero() {
			when = st.Created
		}
		ok := true
		for _, f := range filters {
			ok = ok && f.match(when)
		}
		if ok {
			all = append(all, m)
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i].base.Created, all[j].base.Created
		if !a.Equal(b) {
			return a.After(b)
		}
		return all[i].seq > all[j].seq
	})
	start := page * size
	if tok := strings.TrimPrefix(q.Get("PageToken"), "PA"); tok != "" {
		for i, m := range all {
			if m.base.SID == tok {
				start = i + 1
			}
		}
	}
	end := min(start+size, len(all))
	resp := wirePage{Messages: []wireMessage{}, Page: page, PageSize: size, Start: start, End: start}
	for _, m := range all[min(start, end):end] {
		resp.Messages = append(resp.Messages, s.wire(m, now))
	}
	s.mu.Unlock()

	if n := len(resp.Messages); n > 0 {
		resp.End = start + n - 1
	}
	resp.URI = pageURI(r.URL.Path, q, page, size, "")
	resp.FirstPageURI = pageURI(r.URL.Path, q, 0, size, "")
	if end < len(all) {
		next := pageURI(r.URL.Path, q, page+1, size, "PA"+resp.Messages[len(resp.Messages)-1].SID)
		resp.NextPageURI = &next
	}
	if page > 0 {
		prev := pageURI(r.URL.Path, q, page-1, size, "")
		resp.PreviousPageURI = &prev
	}
	writeJSON(w, http.StatusOK, resp)
}

// pageURI is a host-relative URI of one page with the same filters.
func pageURI(path string, q url.Values, page, size int, token string) string {
	v := url.Values{}
	for _, k := range []string{"To", "From", "DateSent", "DateSent>", "DateSent<"} {
		if x := q.Get(k); x != "" {
			v.Set(k, x)
		}
	}
	v.Set("PageSize", strconv.Itoa(size))
	v.Set("Page", strconv.Itoa(page))
	if token != "" {
		v.Set("PageToken", token)
	}
	return path + "?" + v.Encode()
}
