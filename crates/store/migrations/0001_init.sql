-- Dialtone schema. Portable SQL (SQLite and PostgreSQL): times are BIGINT microseconds since the
-- Unix epoch (UTC), SIDs and enums are TEXT, methods are 'GET'/'POST'.

CREATE TABLE accounts (
    sid           TEXT PRIMARY KEY,
    friendly_name TEXT NOT NULL,
    auth_token    TEXT NOT NULL,
    status        TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);

CREATE TABLE phone_numbers (
    sid                    TEXT PRIMARY KEY,
    account_sid            TEXT NOT NULL REFERENCES accounts (sid),
    -- The routing key: one number belongs to one account system-wide.
    phone_number           TEXT NOT NULL UNIQUE,
    friendly_name          TEXT NOT NULL,
    voice_url              TEXT,
    voice_method           TEXT NOT NULL,
    voice_fallback_url     TEXT,
    voice_fallback_method  TEXT NOT NULL,
    status_callback        TEXT,
    status_callback_method TEXT NOT NULL,
    date_created           BIGINT NOT NULL,
    date_updated           BIGINT NOT NULL
);
CREATE INDEX phone_numbers_by_account ON phone_numbers (account_sid, date_created, sid);

CREATE TABLE calls (
    sid              TEXT PRIMARY KEY,
    account_sid      TEXT NOT NULL REFERENCES accounts (sid),
    parent_call_sid  TEXT,
    phone_number_sid TEXT,
    from_address     TEXT NOT NULL,
    to_address       TEXT NOT NULL,
    status           TEXT NOT NULL,
    direction        TEXT NOT NULL,
    start_time       BIGINT,
    end_time         BIGINT,
    duration         BIGINT,
    answered_by      TEXT,
    date_created     BIGINT NOT NULL,
    date_updated     BIGINT NOT NULL
);
CREATE INDEX calls_by_account ON calls (account_sid, date_created, sid);
CREATE INDEX calls_by_status ON calls (status);

CREATE TABLE recordings (
    sid          TEXT PRIMARY KEY,
    account_sid  TEXT NOT NULL REFERENCES accounts (sid),
    call_sid     TEXT NOT NULL,
    duration     BIGINT NOT NULL,
    channels     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    source       TEXT NOT NULL,
    start_time   BIGINT NOT NULL,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL,
    file_name    TEXT NOT NULL
);
CREATE INDEX recordings_by_account ON recordings (account_sid, date_created, sid);
CREATE INDEX recordings_by_call ON recordings (account_sid, call_sid);

CREATE TABLE notifications (
    sid            TEXT PRIMARY KEY,
    account_sid    TEXT NOT NULL REFERENCES accounts (sid),
    call_sid       TEXT,
    error_code     BIGINT NOT NULL,
    log            BIGINT NOT NULL,
    message_text   TEXT NOT NULL,
    message_date   BIGINT NOT NULL,
    request_url    TEXT,
    request_method TEXT,
    response_body  TEXT,
    date_created   BIGINT NOT NULL,
    date_updated   BIGINT NOT NULL
);
CREATE INDEX notifications_by_account ON notifications (account_sid, date_created, sid);
CREATE INDEX notifications_by_call ON notifications (account_sid, call_sid);
