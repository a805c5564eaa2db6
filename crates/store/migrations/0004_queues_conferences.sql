-- Call queues, conferences, and conference recordings. Portable SQL, as 0001: times are BIGINT
-- microseconds, SIDs and enums TEXT. Who waits in a queue and who is in a conference is live
-- state the runtime holds; only the resources themselves are stored.

CREATE TABLE queues (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL REFERENCES accounts (sid),
    -- <Enqueue> names a queue by this, so it is unique within the account.
    friendly_name TEXT NOT NULL,
    max_size      BIGINT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL,
    UNIQUE (account_sid, friendly_name)
);
CREATE INDEX queues_by_account ON queues (account_sid, date_created, sid);

CREATE TABLE conferences (
    sid                        TEXT PRIMARY KEY,
    account_sid                TEXT NOT NULL REFERENCES accounts (sid),
    -- Not unique: each run of a room is a conference of its own with the room's name.
    friendly_name              TEXT NOT NULL,
    status                     TEXT NOT NULL,
    region                     TEXT NOT NULL,
    reason_conference_ended    TEXT,
    call_sid_ending_conference TEXT,
    date_created               BIGINT NOT NULL,
    date_updated               BIGINT NOT NULL
);
CREATE INDEX conferences_by_account ON conferences (account_sid, date_created, sid);
CREATE INDEX conferences_by_name ON conferences (account_sid, friendly_name, status);

-- Set on a recording of a conference's mix; its call_sid names the participant call that
-- started the recording, so that column stays NOT NULL.
ALTER TABLE recordings ADD COLUMN conference_sid TEXT;
CREATE INDEX recordings_by_conference ON recordings (account_sid, conference_sid);
