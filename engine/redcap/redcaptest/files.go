package redcaptest

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/nudge-study/nudge/engine/redcap"
	"github.com/nudge-study/nudge/rules/dict"
)

// Files names the files of a project kept on disk, all beside one another: the data
// dictionary (required), the records (JSON or CSV, REDCap's flat export shape; created by
// the first import when absent), the structure (events, form-event mapping and repeating
// instruments as REDCap's API lists them), the project information and the API tokens.
type Files struct {
	Name       string // the project's short name: the directory's or the files' prefix
	Dictionary string
	Records    string
	Structure  string
	Info       string
	Tokens     string
}

// FindFiles resolves a project path: a directory holding dictionary.csv (with records.json or
// records.csv, structure.json, project.json and tokens.json beside it), a directory holding
// exactly one NAME.dictionary.csv, or a prefix DIR/NAME of NAME.dictionary.csv,
// NAME.records.json (or .csv), NAME.structure.json, NAME.project.json and NAME.tokens.json.
func FindFiles(path string) (Files, error) {
	path = filepath.Clean(path)
	dir, prefix := path, ""
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "dictionary.csv")); err != nil {
			found, _ := filepath.Glob(filepath.Join(path, "*.dictionary.csv"))
			if len(found) != 1 {
				return Files{}, fmt.Errorf("%s: no project here: put the data dictionary in %s (or one NAME.dictionary.csv), or name a project by its prefix, e.g. %s",
					path, filepath.Join(path, "dictionary.csv"), filepath.Join(path, "site_a"))
			}
			prefix = strings.TrimSuffix(filepath.Base(found[0]), ".dictionary.csv") + "."
		}
	} else {
		dir, prefix = filepath.Dir(path), filepath.Base(path)+"."
		if _, err := os.Stat(path + ".dictionary.csv"); err != nil {
			return Files{}, fmt.Errorf("%s: neither a directory nor the prefix of %s.dictionary.csv", path, path)
		}
	}
	f := Files{
		Name:       strings.TrimSuffix(prefix, "."),
		Dictionary: filepath.Join(dir, prefix+"dictionary.csv"),
		Records:    filepath.Join(dir, prefix+"records.json"),
		Structure:  filepath.Join(dir, prefix+"structure.json"),
		Info:       filepath.Join(dir, prefix+"project.json"),
		Tokens:     filepath.Join(dir, prefix+"tokens.json"),
	}
	if f.Name == "" {
		abs, _ := filepath.Abs(dir)
		f.Name = filepath.Base(abs)
	}
	if _, err := os.Stat(f.Records); errors.Is(err, os.ErrNotExist) {
		if csvRecords := filepath.Join(dir, prefix+"records.csv"); exists(csvRecords) {
			f.Records = csvRecords
		}
	}
	return f, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Info is a project's information file (NAME.project.json): what content=project answers and
// the records locked against imports. Every key is optional.
type Info struct {
	ID            int      `json:"project_id"`
	Title         string   `json:"project_title"`
	MissingCodes  string   `json:"missing_data_codes"`
	LockedRecords []string `json:"locked_records"`
	// PlainRefusals: see Project.PlainRefusals.
	PlainRefusals bool `json:"plain_refusals"`
}

// TokensFile is a project's tokens file (NAME.tokens.json): the full-rights API token and
// further users' tokens with their data export rights ("full", "remove_identifiers",
// "de_identified" or "no_access", by default and per form).
type TokensFile struct {
	Token string      `json:"token"`
	Users []TokenUser `json:"users"`
}

// TokenUser is one further API user of a tokens file.
type TokenUser struct {
	Token  string            `json:"token"`
	Export string            `json:"export"`
	Forms  map[string]string `json:"forms"`
}

var tokenRE = regexp.MustCompile(`^[0-9A-Fa-f]{32}$`)

// ParseRight reads a data export right as tokens files and flags write it.
func ParseRight(s string) (ExportRight, error) {
	switch s {
	case "", "full":
		return FullDataSet, nil
	case "remove_identifiers":
		return RemoveIdentifiers, nil
	case "de_identified":
		return DeIdentified, nil
	case "no_access":
		return NoAccess, nil
	}
	return 0, fmt.Errorf("unknown export right %q: use full, remove_identifiers, de_identified or no_access", s)
}

// LoadFiles reads a project from its files: the dictionary (fields marked "y" in its
// Identifier? column become Project.Identifiers), the structure, the information (defaults:
// id defaultID, the project's name as title) and the tokens (Project.Token stays "" when
// there is no tokens file). It returns the project, ready for New with RecordsFile set to
// the records file, the records to Load and the locked records.
func LoadFiles(f Files, defaultID int) (*Project, []map[string]string, error) {
	src, err := os.ReadFile(f.Dictionary)
	if err != nil {
		return nil, nil, err
	}
	d, err := dict.ParseCSV(bytes.NewReader(src))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.Dictionary, err)
	}
	p := &Project{ID: defaultID, Title: f.Name, Dict: d, RecordsFile: f.Records}
	if p.Identifiers, err = identifiers(src); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", f.Dictionary, err)
	}

	var info Info
	if err := readOptionalJSON(f.Info, &info, true); err != nil {
		return nil, nil, err
	}
	if info.ID != 0 {
		p.ID = info.ID
	}
	if info.Title != "" {
		p.Title = info.Title
	}
	p.MissingCodes, p.PlainRefusals = info.MissingCodes, info.PlainRefusals
	p.Locked = info.LockedRecords

	var structure struct {
		Events []struct {
			Name   string `json:"event_name"`
			Arm    int    `json:"arm_num"`
			Unique string `json:"unique_event_name"`
			ID     int    `json:"event_id"`
		} `json:"events"`
		FormEvents []struct {
			Arm   int    `json:"arm_num"`
			Event string `json:"unique_event_name"`
			Form  string `json:"form"`
		} `json:"form_events"`
		Repeating []struct {
			Event string `json:"event_name"`
			Form  string `json:"form_name"`
		} `json:"repeating"`
		Surveys []string `json:"surveys"` // instruments enabled as surveys
	}
	if err := readOptionalJSON(f.Structure, &structure, false); err != nil {
		return nil, nil, err
	}
	for _, ev := range structure.Events {
		p.Events = append(p.Events, redcap.Event{Name: ev.Name, UniqueName: ev.Unique, Arm: ev.Arm, ID: ev.ID})
	}
	for _, fe := range structure.FormEvents {
		p.FormEvents = append(p.FormEvents, redcap.FormEvent{Arm: fe.Arm, Event: fe.Event, Form: fe.Form})
	}
	for _, r := range structure.Repeating {
		p.Repeating = append(p.Repeating, redcap.Repeating{Event: r.Event, Form: r.Form})
	}
	for _, form := range structure.Surveys {
		if !slices.Contains(d.Forms(), form) {
			return nil, nil, fmt.Errorf("%s: surveys: the dictionary has no form %q", f.Structure, form)
		}
	}
	p.Surveys = structure.Surveys

	var tokens TokensFile
	if err := readOptionalJSON(f.Tokens, &tokens, true); err != nil {
		return nil, nil, err
	}
	if tokens.Token != "" && !tokenRE.MatchString(tokens.Token) {
		return nil, nil, fmt.Errorf("%s: token: a REDCap API token is 32 hexadecimal characters", f.Tokens)
	}
	p.Token = tokens.Token
	for i, u := range tokens.Users {
		if !tokenRE.MatchString(u.Token) {
			return nil, nil, fmt.Errorf("%s: users[%d].token: a REDCap API token is 32 hexadecimal characters", f.Tokens, i)
		}
		r := Rights{}
		if r.Default, err = ParseRight(u.Export); err != nil {
			return nil, nil, fmt.Errorf("%s: users[%d].export: %w", f.Tokens, i, err)
		}
		for form, s := range u.Forms {
			if !slices.Contains(d.Forms(), form) {
				return nil, nil, fmt.Errorf("%s: users[%d].forms: the dictionary has no form %q", f.Tokens, i, form)
			}
			if r.Forms == nil {
				r.Forms = map[string]ExportRight{}
			}
			if r.Forms[form], err = ParseRight(s); err != nil {
				return nil, nil, fmt.Errorf("%s: users[%d].forms.%s: %w", f.Tokens, i, form, err)
			}
		}
		if p.Users == nil {
			p.Users = map[string]Rights{}
		}
		p.Users[u.Token] = r
	}

	rows, err := ReadRecords(f.Records)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil, nil
	}
	return p, rows, err
}

// readOptionalJSON decodes a JSON file when it exists; strict refuses keys v does not have.
func readOptionalJSON(path string, v any, strict bool) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// identifiers lists the fields a dictionary CSV marks "y" in its Identifier? column.
func identifiers(src []byte) ([]string, error) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(src, []byte("\ufeff"))))
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return nil, err
	}
	col := slices.IndexFunc(header, func(h string) bool {
		h = strings.ToLower(strings.TrimSpace(h))
		return h == "identifier?" || h == "identifier"
	})
	if col < 0 {
		return nil, nil
	}
	var out []string
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if col < len(rec) && len(rec) > 0 && strings.EqualFold(strings.TrimSpace(rec[col]), "y") {
			out = append(out, strings.TrimSpace(rec[0]))
		}
	}
}

// ReadRecords reads records in REDCap's flat export shape from a .json file (an array of
// objects whose values are strings, numbers or null) or a .csv file (a header row of column
// names).
func ReadRecords(path string) ([]map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(filepath.Ext(path), ".csv") {
		rows, err := readCSVRecords(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return rows, nil
	}
	rows, err := decodeRows(bytes.NewReader(b))
	var bad *badValue
	switch {
	case errors.As(err, &bad):
		return nil, fmt.Errorf("%s: row %d: the value of %s is neither text nor a number", path, bad.row, bad.field)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, nil
}

func readCSVRecords(b []byte) ([]map[string]string, error) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(b, []byte("\ufeff"))))
	all, err := r.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, nil
	}
	header := all[0]
	rows := make([]map[string]string, 0, len(all)-1)
	for _, rec := range all[1:] {
		m := make(map[string]string, len(header))
		for i, h := range header {
			m[h] = rec[i]
		}
		rows = append(rows, m)
	}
	return rows, nil
}

// saveRecords writes every record of the project to its RecordsFile, in REDCap's flat export
// shape (JSON or CSV by the file's extension), with the forms never entered left blank so
// that a restart reads them back as never entered. It writes a temporary file beside it and
// renames it over the old one, so the file is never half written.
func (st *state) saveRecords() error {
	rows := st.export(exportRequest{blankGray: true})
	var b bytes.Buffer
	if strings.EqualFold(filepath.Ext(st.p.RecordsFile), ".csv") {
		w := csv.NewWriter(&b)
		header := []string{st.idField}
		if st.p.Longitudinal() {
			header = append(header, colEvent)
		}
		if st.hasRepeating() {
			header = append(header, colInstrument, colInstance)
		}
		for _, c := range st.d.ExportColumns() {
			if c.Name != st.idField {
				header = append(header, c.Name)
			}
		}
		w.Write(header)
		for _, r := range rows {
			rec := make([]string, len(r))
			for i, c := range r {
				rec[i] = c.value
			}
			w.Write(rec)
		}
		w.Flush()
		if err := w.Error(); err != nil {
			return err
		}
	} else {
		b.WriteString("[\n")
		for i, r := range rows {
			if i > 0 {
				b.WriteString(",\n")
			}
			b.Write(bytes.TrimSuffix(bytes.TrimPrefix(encodeRows([][]kv{r}), []byte("[")), []byte("]")))
		}
		b.WriteString("\n]\n")
	}
	return writeAtomic(st.p.RecordsFile, b.Bytes())
}

// writeAtomic replaces path with data through a temporary file in the same directory.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
