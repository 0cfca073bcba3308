package storage

// migrationMonitor lets /healthz and /metrics read every figure they need
// without scanning a whole table: message_counts holds how many messages of
// each channel are in each status (the provider's status, or the state name
// before there is one) for the messages up to message_counts_mark.last,
// kept by triggers on messages so that every process writing to the
// database (`nudge serve`, `nudge run` from cron) keeps it right; newer
// messages are counted through the primary key when read; and partial or narrow indexes answer the rest (the oldest waiting
// message, write-backs by state, the latest and the last successful pass,
// the numbers opted out).
//
// A later migration that rebuilds the messages table drops its triggers
// with it and must create them again.
const migrationMonitor = `
CREATE TABLE message_counts (
	channel TEXT    NOT NULL,
	status  TEXT    NOT NULL,
	n       INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (channel, status)
) WITHOUT ROWID;

-- The messages with an id up to last are in message_counts; newer ones are
-- counted when read (StatusCounts) and folded in from time to time. A
-- trigger on every insert would double the time a large batch takes.
CREATE TABLE message_counts_mark (
	id   INTEGER PRIMARY KEY CHECK (id = 1),
	last INTEGER NOT NULL
);

INSERT INTO message_counts (channel, status, n)
SELECT channel, CASE WHEN status = '' THEN state ELSE status END, count(*) FROM messages GROUP BY 1, 2;
INSERT INTO message_counts_mark (id, last) SELECT 1, coalesce(max(id), 0) FROM messages;

CREATE TRIGGER message_counts_delete AFTER DELETE ON messages
WHEN OLD.id <= (SELECT last FROM message_counts_mark WHERE id = 1)
BEGIN
	UPDATE message_counts SET n = n - 1
	WHERE channel = OLD.channel AND status = CASE WHEN OLD.status = '' THEN OLD.state ELSE OLD.status END;
END;

CREATE TRIGGER message_counts_update AFTER UPDATE OF channel, status, state ON messages
WHEN OLD.id <= (SELECT last FROM message_counts_mark WHERE id = 1)
	AND (OLD.channel IS NOT NEW.channel
	OR CASE WHEN OLD.status = '' THEN OLD.state ELSE OLD.status END
	   IS NOT CASE WHEN NEW.status = '' THEN NEW.state ELSE NEW.status END)
BEGIN
	UPDATE message_counts SET n = n - 1
	WHERE channel = OLD.channel AND status = CASE WHEN OLD.status = '' THEN OLD.state ELSE OLD.status END;
	INSERT INTO message_counts (channel, status, n)
	VALUES (NEW.channel, CASE WHEN NEW.status = '' THEN NEW.state ELSE NEW.status END, 1)
	ON CONFLICT (channel, status) DO UPDATE SET n = n + 1;
END;

CREATE INDEX messages_waiting ON messages (coalesce(not_before, created_at)) WHERE state IN ('planned', 'retry');
CREATE INDEX writebacks_state ON writebacks (state, attempts);
CREATE INDEX runs_started ON runs (started_at, id);
CREATE INDEX runs_ok ON runs (finished_at) WHERE outcome = 'ok';
CREATE INDEX optouts_out ON optouts (phone) WHERE opted_out = 1;`
