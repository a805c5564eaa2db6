-- Proxy v1 (number masking): services, their pools of numbers, sessions, participants and
-- interactions. Portable SQL, as 0001: times are BIGINT microseconds, SIDs and enums TEXT.

CREATE TABLE proxy_services (
    sid                         TEXT PRIMARY KEY,
    account_sid                 TEXT NOT NULL REFERENCES accounts (sid),
    unique_name                 TEXT NOT NULL,
    default_ttl                 BIGINT NOT NULL,
    callback_url                TEXT,
    intercept_callback_url      TEXT,
    out_of_session_callback_url TEXT,
    number_selection_behavior   TEXT NOT NULL,
    geo_match_level             TEXT NOT NULL,
    chat_instance_sid           TEXT,
    date_created                BIGINT NOT NULL,
    date_updated                BIGINT NOT NULL,
    UNIQUE (account_sid, unique_name)
);
CREATE INDEX proxy_services_by_account ON proxy_services (account_sid, date_created, sid);

-- The pool: a number of the account (its PN SID) in at most one service. Releasing the number
-- takes it out of the pool.
CREATE TABLE proxy_numbers (
    sid          TEXT PRIMARY KEY REFERENCES phone_numbers (sid) ON DELETE CASCADE,
    account_sid  TEXT NOT NULL REFERENCES accounts (sid),
    service_sid  TEXT NOT NULL REFERENCES proxy_services (sid) ON DELETE CASCADE,
    is_reserved  BIGINT NOT NULL,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL
);
CREATE INDEX proxy_numbers_by_service ON proxy_numbers (account_sid, service_sid, date_created, sid);

CREATE TABLE proxy_sessions (
    sid                   TEXT PRIMARY KEY,
    account_sid           TEXT NOT NULL REFERENCES accounts (sid),
    service_sid           TEXT NOT NULL REFERENCES proxy_services (sid) ON DELETE CASCADE,
    -- Unique within the service when set (NULLs are distinct in a unique index).
    unique_name           TEXT,
    status                TEXT NOT NULL,
    closed_reason         TEXT,
    ttl                   BIGINT NOT NULL,
    mode                  TEXT NOT NULL,
    -- Set by the client; wins over ttl.
    date_expiry           BIGINT,
    date_started          BIGINT,
    date_ended            BIGINT,
    date_last_interaction BIGINT,
    date_created          BIGINT NOT NULL,
    date_updated          BIGINT NOT NULL
);
CREATE UNIQUE INDEX proxy_sessions_unique_name ON proxy_sessions (service_sid, unique_name);
CREATE INDEX proxy_sessions_by_service ON proxy_sessions (account_sid, service_sid, date_created, sid);
CREATE INDEX proxy_sessions_by_status ON proxy_sessions (status);

CREATE TABLE proxy_participants (
    sid                  TEXT PRIMARY KEY,
    account_sid          TEXT NOT NULL REFERENCES accounts (sid),
    service_sid          TEXT NOT NULL,
    session_sid          TEXT NOT NULL REFERENCES proxy_sessions (sid) ON DELETE CASCADE,
    identifier           TEXT NOT NULL,
    friendly_name        TEXT,
    proxy_identifier     TEXT NOT NULL,
    proxy_identifier_sid TEXT NOT NULL,
    -- 1 while the session is open (or in progress), NULL once it is closed: the unique index
    -- below then holds (identifier, proxy number) unique among open sessions only, which is
    -- what routes a call from the identifier to that number.
    is_open              BIGINT,
    date_created         BIGINT NOT NULL,
    date_updated         BIGINT NOT NULL
);
CREATE UNIQUE INDEX proxy_participants_open_pair ON proxy_participants (identifier, proxy_identifier, is_open);
CREATE INDEX proxy_participants_by_session ON proxy_participants (account_sid, session_sid, date_created, sid);
CREATE INDEX proxy_participants_open ON proxy_participants (is_open, session_sid);

CREATE TABLE proxy_interactions (
    sid                      TEXT PRIMARY KEY,
    account_sid              TEXT NOT NULL REFERENCES accounts (sid),
    service_sid              TEXT NOT NULL,
    session_sid              TEXT NOT NULL REFERENCES proxy_sessions (sid) ON DELETE CASCADE,
    -- voice or message
    kind                     TEXT NOT NULL,
    data                     TEXT,
    -- Set on a message interaction made through a participant's MessageInteractions.
    participant_sid          TEXT,
    inbound_participant_sid  TEXT,
    inbound_resource_sid     TEXT,
    inbound_resource_status  TEXT,
    outbound_participant_sid TEXT,
    outbound_resource_sid    TEXT,
    outbound_resource_status TEXT,
    date_created             BIGINT NOT NULL,
    date_updated             BIGINT NOT NULL
);
CREATE INDEX proxy_interactions_by_session ON proxy_interactions (account_sid, session_sid, date_created, sid);
CREATE INDEX proxy_interactions_by_participant ON proxy_interactions (account_sid, participant_sid, date_created, sid);

-- An interaction's outbound call is the child of its inbound call.
CREATE INDEX calls_by_parent ON calls (parent_call_sid);
