package storage

// migrationWriteBack turns the write-back queue into one row per REDCap
// target: a field of one record, event and repeat instance. Queueing a new
// value for a target replaces the value it holds and raises its seq, so
// REDCap only ever receives a target's newest value, and an import that
// was under way for an older value cannot mark the newer one done (its
// completion names the seq it imported). origin says who queued the value
// ("status", "opt-out", "opt-in", "reply:NAME"), so that START only
// reverts an opt-out nudge itself wrote. A 'dropped' row is one REDCap
// could not take because its record no longer exists.
//
// The pending, done and failed rows of the old queue are carried over,
// one row per field, the newest queued value of each target winning.
const migrationWriteBack = `
ALTER TABLE writebacks RENAME TO writebacks_old;

CREATE TABLE writebacks (
	id                INTEGER PRIMARY KEY,
	project           TEXT    NOT NULL,
	record            TEXT    NOT NULL,
	event             TEXT    NOT NULL DEFAULT '',
	repeat_instrument TEXT    NOT NULL DEFAULT '',
	instance          INTEGER NOT NULL DEFAULT 0,
	field             TEXT    NOT NULL,
	value             TEXT    NOT NULL,
	origin            TEXT    NOT NULL DEFAULT '',
	seq               INTEGER NOT NULL DEFAULT 1, -- raised each time a new value is queued
	state             TEXT    NOT NULL DEFAULT 'pending'
	                          CHECK (state IN ('pending', 'done', 'failed', 'dropped')),
	attempts          INTEGER NOT NULL DEFAULT 0, -- imports of the current value tried
	refusals          INTEGER NOT NULL DEFAULT 0, -- of those, refused by REDCap for this row alone
	last_error        TEXT    NOT NULL DEFAULT '',
	not_before        INTEGER,
	created_at        INTEGER NOT NULL, -- when the current value was queued
	done_at           INTEGER,
	UNIQUE (project, record, event, repeat_instrument, instance, field)
);
CREATE INDEX writebacks_due ON writebacks (project, state, not_before);

INSERT INTO writebacks (project, record, event, repeat_instrument, instance, field, value,
	state, attempts, last_error, not_before, created_at, done_at)
SELECT w.project, w.record, w.event, w.repeat_instrument, w.instance, f.key, CAST(f.value AS TEXT),
	w.state, w.attempts, w.last_error, w.not_before, w.created_at, w.done_at
FROM writebacks_old AS w, json_each(w.fields) AS f
WHERE true
ORDER BY w.id
ON CONFLICT (project, record, event, repeat_instrument, instance, field) DO UPDATE SET
	value = excluded.value, seq = writebacks.seq + 1, state = excluded.state,
	attempts = excluded.attempts, last_error = excluded.last_error, not_before = excluded.not_before,
	created_at = excluded.created_at, done_at = excluded.done_at;

DROP TABLE writebacks_old;`
