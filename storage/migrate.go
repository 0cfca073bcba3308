package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the schema changes, in order: migrations[i] takes the
// schema from version i to version i+1. Never edit a released migration;
// append a new one.
var migrations = []string{
	migration1,
	migration2,
	migration3,
	migrationWriteBack,
	migrationOncePer,
	migrationNumberPauses,
	migrationTexts,
	migrationQueryIndexes,
	migrationSkipWarnings,
	migrationMonitor,
	migrationRetention,
	migrationSkipLog,
}

// SchemaVersion is the schema version this nudge writes.
func SchemaVersion() int { return len(migrations) }

const sqlCreateSchemaVersion = `
CREATE TABLE IF NOT EXISTS schema_version (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL
);
INSERT OR IGNORE INTO schema_version (id, version) VALUES (1, 0);`

const (
	sqlSchemaVersion    = `SELECT version FROM schema_version WHERE id = 1`
	sqlSetSchemaVersion = `UPDATE schema_version SET version = ? WHERE id = 1`
)

// migration1 is the first schema. Times are unix nanoseconds (UTC), NULL
// when unset. Empty strings are stored as empty text, except where a UNIQUE index
// needs NULL (messages.sid).
const migration1 = `
CREATE TABLE runs (
	id          INTEGER PRIMARY KEY,
	kind        TEXT    NOT NULL,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER,
	outcome     TEXT    NOT NULL DEFAULT '',
	summary     TEXT             -- JSON
);

CREATE TABLE messages (
	id              INTEGER PRIMARY KEY,
	key             TEXT    NOT NULL UNIQUE, -- project/rule/record/event/instance/occurrence
	run_id          INTEGER REFERENCES runs (id),
	project         TEXT    NOT NULL,
	rule            TEXT    NOT NULL,
	record          TEXT    NOT NULL,
	event           TEXT    NOT NULL DEFAULT '',
	instrument      TEXT    NOT NULL DEFAULT '',
	instance        INTEGER NOT NULL DEFAULT 0,
	occurrence      INTEGER NOT NULL DEFAULT 0,
	channel         TEXT    NOT NULL CHECK (channel IN ('sms', 'email')),
	to_addr         TEXT    NOT NULL,
	from_addr       TEXT    NOT NULL DEFAULT '',
	subject         TEXT    NOT NULL DEFAULT '',
	body            TEXT    NOT NULL DEFAULT '',
	html            TEXT    NOT NULL DEFAULT '', -- email only: the HTML part
	zone            TEXT    NOT NULL DEFAULT '', -- time zone of the rule's allowed hours
	state           TEXT    NOT NULL CHECK (state IN ('planned', 'sending', 'sent', 'delivered',
	                                                  'undelivered', 'failed', 'skipped', 'retry')),
	status          TEXT    NOT NULL DEFAULT '',
	sid             TEXT    UNIQUE,
	error_code      INTEGER NOT NULL DEFAULT 0,
	reason          TEXT    NOT NULL DEFAULT '',
	segments        INTEGER NOT NULL DEFAULT 0,
	attempts        INTEGER NOT NULL DEFAULT 0,
	not_before      INTEGER,
	next_poll       INTEGER,
	created_at      INTEGER NOT NULL,
	sent_at         INTEGER,
	final_at        INTEGER,
	updated_at      INTEGER NOT NULL,
	reported_status TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX messages_due ON messages (state, channel, not_before);
CREATE INDEX messages_poll ON messages (state, channel, next_poll);
CREATE INDEX messages_participant ON messages (project, rule, record, event, instance);
CREATE INDEX messages_run ON messages (run_id);
CREATE INDEX messages_unreported ON messages (id) WHERE status <> reported_status;

CREATE TABLE status_history (
	id         INTEGER PRIMARY KEY,
	message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
	status     TEXT    NOT NULL,
	error_code INTEGER NOT NULL DEFAULT 0,
	source     TEXT    NOT NULL DEFAULT '',
	at         INTEGER NOT NULL
);
CREATE INDEX status_history_message ON status_history (message_id, id);

CREATE TABLE writebacks (
	id                INTEGER PRIMARY KEY,
	project           TEXT    NOT NULL,
	record            TEXT    NOT NULL,
	event             TEXT    NOT NULL DEFAULT '',
	repeat_instrument TEXT    NOT NULL DEFAULT '',
	instance          INTEGER NOT NULL DEFAULT 0,
	fields            TEXT    NOT NULL, -- JSON object of field name to value
	state             TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
	attempts          INTEGER NOT NULL DEFAULT 0,
	last_error        TEXT    NOT NULL DEFAULT '',
	not_before        INTEGER,
	created_at        INTEGER NOT NULL,
	done_at           INTEGER
);
CREATE INDEX writebacks_pending ON writebacks (project, state, not_before);

CREATE TABLE optouts (
	phone      TEXT    PRIMARY KEY, -- E.164
	opted_out  INTEGER NOT NULL CHECK (opted_out IN (0, 1)),
	source     TEXT    NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL
);

CREATE TABLE inbound (
	id          INTEGER PRIMARY KEY,
	message_sid TEXT    NOT NULL UNIQUE,
	from_number TEXT    NOT NULL,
	to_number   TEXT    NOT NULL,
	body        TEXT    NOT NULL DEFAULT '',
	received_at INTEGER NOT NULL
);
CREATE INDEX inbound_from ON inbound (from_number, received_at);

CREATE TABLE locks (
	name       TEXT    PRIMARY KEY,
	owner      TEXT    NOT NULL,
	expires_at INTEGER NOT NULL
);`

// migration2 adds what `nudge serve` needs: the answer given to each inbound
// SMS (so a webhook Twilio retries gets the same answer), the participants'
// phone numbers (to match an inbound SMS to its records without asking
// REDCap), the durable queue of REDCap Data Entry Triggers, and an index to
// find the latest message a rule sent to a number.
const migration2 = `
ALTER TABLE inbound ADD COLUMN reply   TEXT NOT NULL DEFAULT '';
ALTER TABLE inbound ADD COLUMN handled TEXT NOT NULL DEFAULT ''; -- '' = not handled yet

CREATE TABLE participants (
	phone      TEXT    NOT NULL, -- E.164
	project    TEXT    NOT NULL,
	record     TEXT    NOT NULL,
	event      TEXT    NOT NULL DEFAULT '', -- event of the phone field
	updated_at INTEGER NOT NULL,
	UNIQUE (phone, project, record, event)
);
CREATE INDEX participants_project ON participants (project);

CREATE TABLE triggers (
	id          INTEGER PRIMARY KEY,
	project     TEXT    NOT NULL,
	record      TEXT    NOT NULL,
	event       TEXT    NOT NULL DEFAULT '',
	instrument  TEXT    NOT NULL DEFAULT '',
	instance    INTEGER NOT NULL DEFAULT 0,
	received_at INTEGER NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	last_error  TEXT    NOT NULL DEFAULT '',
	not_before  INTEGER,
	done_at     INTEGER
);
CREATE INDEX triggers_pending ON triggers (received_at, id) WHERE done_at IS NULL;

CREATE INDEX messages_sent_to ON messages (to_addr, rule, sent_at) WHERE sid IS NOT NULL;`

// migration3 makes the outbox safe with real participants. It rebuilds
// messages (SQLite cannot change a CHECK constraint in place) with the new
// states canceled, expired, review and unknown, each message's expiry, and
// the bookkeeping of an unanswered create; it adds the kill switch
// (pauses), paused senders, numbers Twilio called bad, and an index to find
// each sending number's last send (the pacer resumes from it).
const migration3 = `
CREATE TABLE messages_new (
	id              INTEGER PRIMARY KEY,
	key             TEXT    NOT NULL UNIQUE,
	run_id          INTEGER REFERENCES runs (id),
	project         TEXT    NOT NULL,
	rule            TEXT    NOT NULL,
	record          TEXT    NOT NULL,
	event           TEXT    NOT NULL DEFAULT '',
	instrument      TEXT    NOT NULL DEFAULT '',
	instance        INTEGER NOT NULL DEFAULT 0,
	occurrence      INTEGER NOT NULL DEFAULT 0,
	channel         TEXT    NOT NULL CHECK (channel IN ('sms', 'email')),
	to_addr         TEXT    NOT NULL,
	from_addr       TEXT    NOT NULL DEFAULT '',
	subject         TEXT    NOT NULL DEFAULT '',
	body            TEXT    NOT NULL DEFAULT '',
	html            TEXT    NOT NULL DEFAULT '',
	zone            TEXT    NOT NULL DEFAULT '',
	state           TEXT    NOT NULL CHECK (state IN ('planned', 'retry', 'sending', 'sent', 'delivered',
	                                                  'undelivered', 'failed', 'canceled', 'expired',
	                                                  'review', 'unknown', 'skipped')),
	status          TEXT    NOT NULL DEFAULT '',
	sid             TEXT    UNIQUE,
	error_code      INTEGER NOT NULL DEFAULT 0,
	reason          TEXT    NOT NULL DEFAULT '',
	segments        INTEGER NOT NULL DEFAULT 0,
	attempts        INTEGER NOT NULL DEFAULT 0,
	not_before      INTEGER,
	next_poll       INTEGER,
	created_at      INTEGER NOT NULL,
	sent_at         INTEGER,
	final_at        INTEGER,
	updated_at      INTEGER NOT NULL,
	reported_status TEXT    NOT NULL DEFAULT '',
	expires_at      INTEGER,          -- not sent by then: expired, never sent late
	ambiguous_at    INTEGER,          -- the first unanswered create of a sending row
	lookups         INTEGER NOT NULL DEFAULT 0
);
INSERT INTO messages_new (id, key, run_id, project, rule, record, event, instrument, instance, occurrence,
	channel, to_addr, from_addr, subject, body, html, zone, state, status, sid, error_code, reason, segments,
	attempts, not_before, next_poll, created_at, sent_at, final_at, updated_at, reported_status)
SELECT id, key, run_id, project, rule, record, event, instrument, instance, occurrence,
	channel, to_addr, from_addr, subject, body, html, zone, state, status, sid, error_code, reason, segments,
	attempts, not_before, next_poll, created_at, sent_at, final_at, updated_at, reported_status
FROM messages;
DROP TABLE messages;
ALTER TABLE messages_new RENAME TO messages;
CREATE INDEX messages_due ON messages (state, channel, not_before);
CREATE INDEX messages_poll ON messages (state, channel, next_poll);
CREATE INDEX messages_participant ON messages (project, rule, record, event, instance);
CREATE INDEX messages_run ON messages (run_id);
CREATE INDEX messages_unreported ON messages (id) WHERE status <> reported_status;
CREATE INDEX messages_sent_to ON messages (to_addr, rule, sent_at) WHERE sid IS NOT NULL;
CREATE INDEX messages_last_send ON messages (from_addr, sent_at) WHERE channel = 'sms' AND sent_at IS NOT NULL;

CREATE TABLE pauses (
	scope      TEXT    NOT NULL CHECK (scope IN ('all', 'project', 'rule')),
	name       TEXT    NOT NULL DEFAULT '', -- the project or rule; '' for all
	reason     TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (scope, name)
);

CREATE TABLE senders (
	sender     TEXT    PRIMARY KEY, -- a sending number, MG… service, or '*' for the whole account
	reason     TEXT    NOT NULL,    -- why it is paused, in words
	code       INTEGER NOT NULL DEFAULT 0,
	paused_at  INTEGER NOT NULL,
	retry_at   INTEGER NOT NULL     -- when one message may be tried to see if the cause is gone
);

CREATE TABLE bad_numbers (
	phone      TEXT    PRIMARY KEY, -- E.164
	code       INTEGER NOT NULL,
	reason     TEXT    NOT NULL,
	flagged_at INTEGER NOT NULL
);`

// migrate brings the schema to len(migs). Each migration runs in its own
// immediate transaction together with the version update, and re-reads the
// version inside it, so two processes opening a fresh file at once apply
// each migration exactly once. Foreign keys are off while a migration runs
// (SQLite's procedure for rebuilding a table: otherwise dropping the old
// table would cascade into the rows that refer to it) and checked before it
// commits.
func (s *Store) migrate(ctx context.Context, migs []string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, sqlCreateSchemaVersion)
		return err
	})
	if err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON")
	for {
		done := false
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		err = func() error {
			var v int
			if err := tx.QueryRowContext(ctx, sqlSchemaVersion).Scan(&v); err != nil {
				return fmt.Errorf("read schema version: %w", err)
			}
			switch {
			case v > len(migs):
				return fmt.Errorf("%w (database schema version %d, this nudge knows up to %d)", ErrTooNew, v, len(migs))
			case v == len(migs):
				done = true
				return nil
			}
			if _, err := tx.ExecContext(ctx, migs[v]); err != nil {
				return fmt.Errorf("apply migration %d: %w", v+1, err)
			}
			if err := foreignKeyCheck(ctx, tx); err != nil {
				return fmt.Errorf("apply migration %d: %w", v+1, err)
			}
			if _, err := tx.ExecContext(ctx, sqlSetSchemaVersion, v+1); err != nil {
				return fmt.Errorf("record schema version %d: %w", v+1, err)
			}
			return nil
		}()
		if err != nil {
			tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// foreignKeyCheck fails when a migration left a row referring to one that
// does not exist.
func foreignKeyCheck(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		return fmt.Errorf("storage: the migration broke a foreign key")
	}
	return rows.Err()
}

// schemaVersion reports the database's current schema version.
func (s *Store) schemaVersion(ctx context.Context) (int, error) {
	var v int
	err := s.db.QueryRowContext(ctx, sqlSchemaVersion).Scan(&v)
	return v, err
}
