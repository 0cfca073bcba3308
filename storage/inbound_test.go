package storage

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// newInbound returns a valid inbound SMS with the given MessageSid.
func newInbound(sid string) *Inbound {
	return &Inbound{
		MessageSID: sid,
		From:       "+14155550101",
		To:         "+14155550100",
		Body:       "YES " + sid,
		ReceivedAt: t0,
	}
}

// failOnBody makes every insert of an inbound row with this body fail, so
// tests can break a transaction in the middle of a batch.
func failOnBody(t testing.TB, s *Store, body string) {
	t.Helper()
	_, err := s.db.Exec(fmt.Sprintf(`CREATE TRIGGER inbound_fail BEFORE INSERT ON inbound
WHEN NEW.body = '%s' BEGIN SELECT RAISE(ABORT, 'refused by test'); END`, body))
	if err != nil {
		t.Fatal(err)
	}
}

func TestMigrateFromVersion1KeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nudge.db")
	ctx := context.Background()

	old, err := open(ctx, path, migrations[:1], Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A sent message with its history, written as version 1 wrote them: the
	// rebuild of messages in migration 3 must keep both.
	m := newMsg("7", 1)
	res, err := old.db.Exec(`INSERT INTO messages (key, project, rule, record, event, instance, occurrence,
	channel, to_addr, from_addr, body, state, status, sid, segments, created_at, sent_at, updated_at)
VALUES (?, 'main', 'reminder', '7', 'baseline_arm_1', 0, 1, 'sms', ?, '+14155550100', 'Hi', 'sent', 'queued',
	'SM-old', 1, ?, ?, ?)`, m.Key, m.To, t0.UnixNano(), t0.UnixNano(), t0.UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	m.ID, _ = res.LastInsertId()
	if _, err := old.db.Exec(`INSERT INTO status_history (message_id, status, source, at) VALUES (?, 'queued', 'send', ?)`,
		m.ID, t0.UnixNano()); err != nil {
		t.Fatal(err)
	}
	if err := old.OptOut(ctx, "+14155550199", "sms", t0); err != nil {
		t.Fatal(err)
	}
	_, err = old.db.Exec(`INSERT INTO inbound (message_sid, from_number, to_number, body, received_at)
VALUES ('SM-in-1', '+14155550101', '+14155550100', 'STOP', ?)`, t0.UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := old.schemaVersion(ctx); v != 1 {
		t.Fatalf("fixture is at version %d, want 1", v)
	}
	old.Close()

	s, err := Open(path)
	if err != nil {
		t.Fatalf("open a version 1 database: %v", err)
	}
	defer s.Close()
	if v, err := s.schemaVersion(ctx); err != nil || v != SchemaVersion() {
		t.Fatalf("version = %d, %v; want %d", v, err, SchemaVersion())
	}

	// Old rows are all there.
	if got, err := s.ByKey(ctx, m.Key); err != nil || got.SID != "SM-old" || got.State != StateSent {
		t.Errorf("message after migration = %+v, %v", got, err)
	}
	if h, err := s.History(ctx, m.ID); err != nil || len(h) != 1 || h[0].Status != "queued" {
		t.Errorf("status history after migration = %+v, %v; want the queued row", h, err)
	}
	if out, err := s.IsOptedOut(ctx, "+14155550199"); err != nil || !out {
		t.Errorf("opt-out after migration = %v, %v; want true", out, err)
	}
	in, err := s.InboundBySID(ctx, "SM-in-1")
	want := Inbound{ID: in.ID, MessageSID: "SM-in-1", From: "+14155550101", To: "+14155550100", Body: "STOP", ReceivedAt: t0}
	if err != nil || in != want {
		t.Errorf("inbound after migration =\n%+v, %v\nwant\n%+v", in, err, want)
	}

	// The new columns and tables work on the old rows.
	if err := s.SetInboundReply(ctx, in.ID, HandledStop, "You are unsubscribed."); err != nil {
		t.Errorf("SetInboundReply on a migrated row: %v", err)
	}
	dup := newInbound("SM-in-1")
	if ins, err := s.SaveInbound(ctx, []*Inbound{dup}); err != nil || ins[0] || dup.Reply != "You are unsubscribed." {
		t.Errorf("SaveInbound of a migrated SID = %v, %v, reply %q", ins, err, dup.Reply)
	}
	if got, err := s.LastSentTo(ctx, "reminder", m.To); err != nil || got.ID != m.ID {
		t.Errorf("LastSentTo on a migrated message = %d, %v; want %d", got.ID, err, m.ID)
	}
	if err := s.ReplaceParticipants(ctx, "main", []Participant{{Phone: "+14155550101", Record: "7"}}, t0); err != nil {
		t.Errorf("ReplaceParticipants: %v", err)
	}
	if err := s.EnqueueTrigger(ctx, &Trigger{Project: "main", Record: "7", ReceivedAt: t0}); err != nil {
		t.Errorf("EnqueueTrigger: %v", err)
	}
	s.Close()

	// Version 1 code refuses the migrated file.
	if _, err := open(ctx, path, migrations[:1], Options{}); !errors.Is(err, ErrTooNew) {
		t.Errorf("version 1 code opening the migrated file: %v, want ErrTooNew", err)
	}
}

func TestSaveInbound(t *testing.T) {
	type stored struct{ sid, reply, handled string }
	tests := []struct {
		name         string
		before       []stored // rows stored (and answered) before the batch
		batch        []string // SIDs of the batch, in order
		wantInserted []bool
		wantReply    []string // Reply of each item after the call
		wantCount    int
	}{
		{
			name:         "all new",
			batch:        []string{"SM1", "SM2", "SM3"},
			wantInserted: []bool{true, true, true},
			wantReply:    []string{"", "", ""},
			wantCount:    3,
		},
		{
			name:         "a retried webhook gets the stored answer",
			before:       []stored{{"SM1", "Thanks!", "reply:thanks"}},
			batch:        []string{"SM1", "SM2"},
			wantInserted: []bool{false, true},
			wantReply:    []string{"Thanks!", ""},
			wantCount:    2,
		},
		{
			name:         "the same SID twice in one batch",
			batch:        []string{"SM1", "SM2", "SM1"},
			wantInserted: []bool{true, true, false},
			wantReply:    []string{"", "", ""},
			wantCount:    2,
		},
		{
			name:  "empty batch",
			batch: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			ids := map[string]int64{}
			for _, b := range tt.before {
				in := newInbound(b.sid)
				in.Body = "stored first"
				if _, err := s.SaveInbound(ctx, []*Inbound{in}); err != nil {
					t.Fatal(err)
				}
				if err := s.SetInboundReply(ctx, in.ID, b.handled, b.reply); err != nil {
					t.Fatal(err)
				}
				ids[b.sid] = in.ID
			}
			batch := make([]*Inbound, len(tt.batch))
			for i, sid := range tt.batch {
				batch[i] = newInbound(sid)
			}
			inserted, err := s.SaveInbound(ctx, batch)
			if err != nil {
				t.Fatal(err)
			}
			for i, in := range batch {
				if inserted[i] != tt.wantInserted[i] {
					t.Errorf("item %d (%s): inserted = %v, want %v", i, in.MessageSID, inserted[i], tt.wantInserted[i])
				}
				if in.Reply != tt.wantReply[i] {
					t.Errorf("item %d (%s): Reply = %q, want %q", i, in.MessageSID, in.Reply, tt.wantReply[i])
				}
				if in.ID == 0 {
					t.Errorf("item %d (%s): no ID", i, in.MessageSID)
				}
				if id, ok := ids[in.MessageSID]; ok && id != in.ID {
					t.Errorf("item %d (%s): ID %d, but the SID is stored as %d", i, in.MessageSID, in.ID, id)
				}
				ids[in.MessageSID] = in.ID
				got, err := s.InboundBySID(ctx, in.MessageSID)
				if err != nil || got != *in {
					t.Errorf("item %d: stored\n%+v, %v\nreturned\n%+v", i, got, err, *in)
				}
			}
			if n, err := s.InboundCount(ctx); err != nil || n != tt.wantCount {
				t.Errorf("InboundCount = %d, %v; want %d", n, err, tt.wantCount)
			}
		})
	}
}

func TestSaveInboundIsAtomic(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	failOnBody(t, s, "boom")
	batch := []*Inbound{newInbound("SM1"), newInbound("SM2"), newInbound("SM3")}
	batch[2].Body = "boom"
	if _, err := s.SaveInbound(ctx, batch); err == nil {
		t.Fatal("SaveInbound of a failing batch succeeded")
	}
	if n, _ := s.InboundCount(ctx); n != 0 {
		t.Errorf("a failed batch stored %d rows, want 0", n)
	}
	if batch[0].ID != 0 {
		t.Errorf("a failed batch set ID %d on its first item; callers' values must change only after the commit", batch[0].ID)
	}
}

func TestSaveInboundRejectsInvalid(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Inbound)
	}{
		{"no SID", func(in *Inbound) { in.MessageSID = "" }},
		{"no sender", func(in *Inbound) { in.From = "" }},
		{"no time", func(in *Inbound) { in.ReceivedAt = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			bad := newInbound("SM2")
			tt.edit(bad)
			_, err := s.SaveInbound(context.Background(), []*Inbound{newInbound("SM1"), bad})
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if n, _ := s.InboundCount(context.Background()); n != 0 {
				t.Errorf("stored %d rows of an invalid batch", n)
			}
		})
	}
}

func TestSetInboundReply(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	in := newInbound("SM1")
	if _, err := s.SaveInbound(ctx, []*Inbound{in}); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		handled, reply string
		wantErr        error
		want           [2]string // stored handled, reply afterwards
	}{
		{HandledReply("mood"), "Thanks, we noted 3.", nil, [2]string{"reply:mood", "Thanks, we noted 3."}},
		{HandledNone, "", nil, [2]string{"none", ""}},
		{"", "x", ErrInvalid, [2]string{"none", ""}},
	}
	for i, st := range steps {
		err := s.SetInboundReply(ctx, in.ID, st.handled, st.reply)
		if !errors.Is(err, st.wantErr) {
			t.Errorf("step %d: err = %v, want %v", i, err, st.wantErr)
		}
		got, _ := s.InboundBySID(ctx, "SM1")
		if [2]string{got.Handled, got.Reply} != st.want {
			t.Errorf("step %d: stored %q, %q; want %q", i, got.Handled, got.Reply, st.want)
		}
	}
	if err := s.SetInboundReply(ctx, in.ID+100, HandledNone, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetInboundReply of an unknown ID: %v, want ErrNotFound", err)
	}
	if _, err := s.InboundBySID(ctx, "SM-none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("InboundBySID of an unknown SID: %v, want ErrNotFound", err)
	}
}

func TestLastSentTo(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	const ana, ben = "+14155550101", "+14155550102"
	msg := func(rule, rec, to string) *Message {
		m := newMsg(rec, 1)
		m.Rule, m.To = rule, to
		m.Key = fmt.Sprintf("main/%s/%s/1", rule, rec)
		return m
	}
	// sent at t0+h with the given status ("" = planned, never sent).
	send := func(m *Message, h int, status string) {
		t.Helper()
		id := mustEnqueue(t, s, m)
		if status == "" {
			return
		}
		if err := s.Claim(ctx, id, t0, nil); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSent(ctx, id, "SM"+m.Key, status, 1, t0.Add(time.Duration(h)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	send(msg("mood", "1", ana), 1, "queued")
	send(msg("mood", "2", ana), 3, "delivered") // latest accepted: the answer for (mood, ana)
	send(msg("mood", "3", ana), 2, "sent")
	send(msg("mood", "4", ana), 5, "failed") // refused: not counted
	send(msg("mood", "5", ana), 0, "")       // planned: not counted
	send(msg("mood", "6", ben), 9, "undelivered")
	send(msg("diary", "7", ben), 0, "")

	tests := []struct {
		rule, phone string
		wantKey     string // "" = ErrNotFound
	}{
		{"mood", ana, "main/mood/2/1"},
		{"mood", ben, "main/mood/6/1"},
		{"diary", ben, ""},
		{"diary", ana, ""},
		{"mood", "+14155550103", ""},
	}
	for _, tt := range tests {
		got, err := s.LastSentTo(ctx, tt.rule, tt.phone)
		if tt.wantKey == "" {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("LastSentTo(%s, %s) = %q, %v; want ErrNotFound", tt.rule, tt.phone, got.Key, err)
			}
			continue
		}
		if err != nil || got.Key != tt.wantKey {
			t.Errorf("LastSentTo(%s, %s) = %q, %v; want %q", tt.rule, tt.phone, got.Key, err, tt.wantKey)
		}
	}
}

func TestSaveInboundEffects(t *testing.T) {
	const from = "+14155550101"
	wb := func(rec string) WriteBack {
		return WriteBack{Project: "site_a", Record: rec, Event: "baseline_arm_1", Fields: map[string]string{"sms_opt_in": "0"}}
	}
	type save struct {
		sid string
		fx  *InboundEffects
		at  time.Duration // ReceivedAt after t0
	}
	tests := []struct {
		name       string
		saves      []save
		viaWriter  bool
		wantOut    bool     // sender opted out afterwards
		wantWBs    []string // records of the pending write-backs, in order
		wantSource string
	}{
		{
			name:    "stop: opt-out and write-backs",
			saves:   []save{{"SM1", &InboundEffects{OptOut: true, Source: "sms STOP", WriteBacks: []WriteBack{wb("1"), wb("2")}}, 0}},
			wantOut: true, wantWBs: []string{"1", "2"},
		},
		{
			name:      "stop through the writer",
			saves:     []save{{"SM1", &InboundEffects{OptOut: true, WriteBacks: []WriteBack{wb("1")}}, 0}},
			viaWriter: true,
			wantOut:   true, wantWBs: []string{"1"},
		},
		{
			name: "a retried webhook applies nothing again",
			saves: []save{
				{"SM1", &InboundEffects{OptOut: true, WriteBacks: []WriteBack{wb("1")}}, 0},
				{"SM1", &InboundEffects{OptIn: true, WriteBacks: []WriteBack{wb("9")}}, time.Minute},
			},
			wantOut: true, wantWBs: []string{"1"},
		},
		{
			name:      "a retried webhook through the writer",
			viaWriter: true,
			saves: []save{
				{"SM1", &InboundEffects{OptOut: true, WriteBacks: []WriteBack{wb("1")}}, 0},
				{"SM1", &InboundEffects{OptIn: true, WriteBacks: []WriteBack{wb("9")}}, time.Minute},
			},
			wantOut: true, wantWBs: []string{"1"},
		},
		{
			name: "stop then start",
			saves: []save{
				{"SM1", &InboundEffects{OptOut: true}, 0},
				{"SM2", &InboundEffects{OptIn: true}, time.Minute},
			},
			wantOut: false,
		},
		{
			name:  "no effects",
			saves: []save{{"SM1", nil, 0}, {"SM2", &InboundEffects{}, 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			ctx := context.Background()
			w := s.NewInboundWriter()
			defer w.Close()
			for _, sv := range tt.saves {
				in := newInbound(sv.sid)
				in.From, in.Effects, in.ReceivedAt = from, sv.fx, t0.Add(sv.at)
				var err error
				if tt.viaWriter {
					_, err = w.Save(ctx, in)
				} else {
					_, err = s.SaveInbound(ctx, []*Inbound{in})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if out, err := s.IsOptedOut(ctx, from); err != nil || out != tt.wantOut {
				t.Errorf("IsOptedOut = %v, %v; want %v", out, err, tt.wantOut)
			}
			wbs, err := s.PendingWriteBacks(ctx, "site_a", t0.Add(time.Hour), 0)
			if err != nil {
				t.Fatal(err)
			}
			var recs []string
			for _, w := range wbs {
				recs = append(recs, w.Record)
				if !w.CreatedAt.Equal(t0) || w.Event != "baseline_arm_1" || w.Field != "sms_opt_in" || w.Value != "0" {
					t.Errorf("write-back %+v: want the inbound's time, event and fields", w)
				}
			}
			if fmt.Sprint(recs) != fmt.Sprint(tt.wantWBs) {
				t.Errorf("pending write-backs for records %v, want %v", recs, tt.wantWBs)
			}
		})
	}
}

func TestSaveInboundEffectsAreAtomic(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	failOnBody(t, s, "boom")
	stop := newInbound("SM1")
	stop.Effects = &InboundEffects{OptOut: true, WriteBacks: []WriteBack{{Project: "p", Record: "1", Fields: map[string]string{"f": "0"}}}}
	bad := newInbound("SM2")
	bad.Body = "boom"
	if _, err := s.SaveInbound(ctx, []*Inbound{stop, bad}); err == nil {
		t.Fatal("a failing batch succeeded")
	}
	if out, _ := s.IsOptedOut(ctx, stop.From); out {
		t.Error("a rolled-back batch left its opt-out")
	}
	if wbs, _ := s.PendingWriteBacks(ctx, "p", t0, 0); len(wbs) != 0 {
		t.Errorf("a rolled-back batch left %d write-backs", len(wbs))
	}
}

func TestSaveInboundRejectsInvalidEffects(t *testing.T) {
	tests := []struct {
		name string
		fx   *InboundEffects
	}{
		{"out and in", &InboundEffects{OptOut: true, OptIn: true}},
		{"write-back without fields", &InboundEffects{WriteBacks: []WriteBack{{Project: "p", Record: "1"}}}},
		{"write-back without record", &InboundEffects{WriteBacks: []WriteBack{{Project: "p", Fields: map[string]string{"f": "1"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := openTemp(t)
			in := newInbound("SM1")
			in.Effects = tt.fx
			if _, err := s.SaveInbound(context.Background(), []*Inbound{in}); !errors.Is(err, ErrInvalid) {
				t.Errorf("SaveInbound: %v, want ErrInvalid", err)
			}
			w := s.NewInboundWriter()
			defer w.Close()
			if _, err := w.Save(context.Background(), in); !errors.Is(err, ErrInvalid) {
				t.Errorf("InboundWriter.Save: %v, want ErrInvalid", err)
			}
		})
	}
}
