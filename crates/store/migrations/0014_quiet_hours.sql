-- Quiet hours: a deferred call's placing time and the request that places it, an account's
-- time-zone overrides and its calling window. Portable SQL, as 0001: times are BIGINT
-- microseconds, SIDs and enums TEXT.

-- Set while a call is `scheduled`: when it will be placed, and its Calls-create request (JSON)
-- so it can be placed after a restart.
ALTER TABLE calls ADD COLUMN date_scheduled BIGINT;
ALTER TABLE calls ADD COLUMN scheduled_request TEXT;
CREATE INDEX calls_scheduled ON calls (status, date_scheduled);

CREATE TABLE time_zone_overrides (
    sid          TEXT PRIMARY KEY,
    account_sid  TEXT NOT NULL REFERENCES accounts (sid),
    -- Exactly one of the two: an E.164 number, or a prefix of numbers ('+1212').
    phone_number TEXT,
    prefix       TEXT,
    time_zone    TEXT NOT NULL,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL
);
CREATE UNIQUE INDEX time_zone_overrides_number ON time_zone_overrides (account_sid, phone_number);
CREATE UNIQUE INDEX time_zone_overrides_prefix ON time_zone_overrides (account_sid, prefix);

CREATE TABLE calling_windows (
    account_sid  TEXT PRIMARY KEY REFERENCES accounts (sid),
    hours        TEXT NOT NULL,
    -- Comma-separated YYYY-MM-DD, in order.
    dates_off    TEXT NOT NULL,
    policy       TEXT NOT NULL,
    dial_policy  TEXT NOT NULL,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL
);
