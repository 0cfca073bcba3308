package storage

// migrationOncePer adds the digest of the value a rule with `once_per` was
// planned for (empty for every other rule): its messages are counted per
// value, so a new value (a rescheduled visit) gets its own messages. The
// participant index gains it, for the occurrence counts.
const migrationOncePer = `
ALTER TABLE messages ADD COLUMN once_per TEXT NOT NULL DEFAULT '';
DROP INDEX messages_participant;
CREATE INDEX messages_participant ON messages (project, rule, record, event, instance, once_per);`
