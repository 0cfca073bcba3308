package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/nudge-study/nudge/engine"
	"github.com/nudge-study/nudge/engine/redcap/redcaptest"
	"github.com/nudge-study/nudge/engine/sms"
	"github.com/nudge-study/nudge/rules"
)

// offline is an engine over records given offline, with its own temporary
// database: what it plans is never sent and never reaches the study's real
// database.
type offline struct {
	*engine.Engine
	Clock   *sms.FakeClock
	Sources map[string]*engine.OfflineRecords // by project, every project of the config
	dir     string
}

// openOffline connects a loaded study to records (by project, in REDCap's
// flat export shape) and a fresh database in a temporary directory; the
// data dictionaries come from the config's dictionary files.
func openOffline(study *rules.Study, records map[string][]map[string]string, log logrus.FieldLogger) (*offline, error) {
	dicts, err := engine.LoadDictionaries(study.Config)
	if err != nil {
		return nil, err
	}
	srcs := make(map[string]*engine.OfflineRecords, len(records))
	for name, rows := range records {
		if d := dicts[name]; d != nil && len(rows) > 0 {
			if _, ok := rows[0][d.RecordID()]; !ok {
				return nil, fmt.Errorf("the records of project %s have no %s column: export them from REDCap as raw data with variable names as headers (not labels), in flat format", name, d.RecordID())
			}
		}
		srcs[name] = &engine.OfflineRecords{Rows: rows}
	}
	for i := range study.Config.Projects {
		p := &study.Config.Projects[i]
		// The form-event mapping, when the project lists it, tells where a
		// bare timezone field is read, as REDCap's does online; a mistake
		// in it is check's to report.
		if st, err := rules.ReadStructure(p); err == nil && st.Designated != nil {
			study.ResolveTimezoneFields(p.Name, dicts[p.Name], st.Designated)
		}
		if srcs[p.Name] == nil {
			srcs[p.Name] = &engine.OfflineRecords{}
		}
	}
	dir, err := os.MkdirTemp("", "nudge-offline-")
	if err != nil {
		return nil, err
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = l
	}
	clk := sms.NewFakeClock(time.Now())
	e, err := engine.NewOffline(study, dicts, srcs, engine.Options{Log: log, Clock: clk, DBPath: filepath.Join(dir, "nudge.db")})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &offline{Engine: e, Clock: clk, Sources: srcs, dir: dir}, nil
}

// Close closes the engine and removes its temporary database.
func (o *offline) Close() error {
	err := o.Engine.Close()
	if rerr := os.RemoveAll(o.dir); err == nil {
		err = rerr
	}
	return err
}

// recordsFlag collects --records [PROJECT=]FILE values.
type recordsFlag []string

func (r *recordsFlag) String() string     { return strings.Join(*r, ",") }
func (r *recordsFlag) Set(v string) error { *r = append(*r, v); return nil }

// read reads every file given, by project. A file without PROJECT= belongs
// to the study's only project.
func (r recordsFlag) read(study *rules.Study) (map[string][]map[string]string, error) {
	out := make(map[string][]map[string]string)
	for _, v := range r {
		project, path, named := strings.Cut(v, "=")
		if !named || study.Config.Project(project) == nil {
			project, path = "", v
		}
		if project == "" {
			if len(study.Config.Projects) != 1 {
				names := study.Config.ProjectNames()
				return nil, fmt.Errorf("--records %s: the study has %d projects (%s): name one, e.g. --records %s=%s",
					v, len(names), strings.Join(names, ", "), names[0], v)
			}
			project = study.Config.Projects[0].Name
		}
		rows, err := redcaptest.ReadRecords(path)
		if err != nil {
			return nil, fmt.Errorf("--records: %w (give REDCap's flat export, CSV or JSON, with raw values)", err)
		}
		out[project] = append(out[project], rows...)
	}
	return out, nil
}
