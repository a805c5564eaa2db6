-- Subaccounts, secondary auth tokens, API keys, applications, and numbers that use an
-- application's voice URLs. Portable SQL, as 0001; flags are BIGINT 0/1 (one type on both backends).

-- The parent of a subaccount; a main account names itself (Twilio's owner_account_sid).
ALTER TABLE accounts ADD COLUMN owner_account_sid TEXT REFERENCES accounts (sid);
UPDATE accounts SET owner_account_sid = sid;
ALTER TABLE accounts ADD COLUMN secondary_auth_token TEXT;
ALTER TABLE accounts ADD COLUMN secondary_auth_token_created BIGINT;
CREATE INDEX accounts_by_owner ON accounts (owner_account_sid, date_created, sid);

CREATE TABLE api_keys (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL REFERENCES accounts (sid),
    friendly_name TEXT NOT NULL,
    -- Hex of 16 random bytes, and hex of SHA-256(salt bytes || secret): the secret itself is
    -- shown once at creation and never stored.
    secret_salt   TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);
CREATE INDEX api_keys_by_account ON api_keys (account_sid, date_created, sid);

CREATE TABLE applications (
    sid                                TEXT PRIMARY KEY,
    account_sid                        TEXT NOT NULL REFERENCES accounts (sid),
    friendly_name                      TEXT NOT NULL,
    voice_url                          TEXT,
    voice_method                       TEXT NOT NULL,
    voice_fallback_url                 TEXT,
    voice_fallback_method              TEXT NOT NULL,
    status_callback                    TEXT,
    status_callback_method             TEXT NOT NULL,
    voice_caller_id_lookup             BIGINT NOT NULL,
    sms_url                            TEXT,
    sms_method                         TEXT NOT NULL,
    sms_fallback_url                   TEXT,
    sms_fallback_method                TEXT NOT NULL,
    sms_status_callback                TEXT,
    message_status_callback            TEXT,
    public_application_connect_enabled BIGINT NOT NULL,
    date_created                       BIGINT NOT NULL,
    date_updated                       BIGINT NOT NULL
);
CREATE INDEX applications_by_account ON applications (account_sid, date_created, sid);

-- When set, the number's calls use the application's voice URLs instead of its own.
ALTER TABLE phone_numbers ADD COLUMN voice_application_sid TEXT REFERENCES applications (sid);
CREATE INDEX phone_numbers_by_application ON phone_numbers (voice_application_sid);
