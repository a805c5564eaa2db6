-- SMS: messages, the SMSC parts they travelled in, the keys that recognise an SMSC's retransmitted
-- deliver_sm, and the numbers' SMS settings. Portable SQL, as 0001: times are BIGINT
-- microseconds, SIDs and enums TEXT, counts BIGINT.

CREATE TABLE messages (
    sid             TEXT PRIMARY KEY,
    account_sid     TEXT NOT NULL REFERENCES accounts (sid),
    from_address    TEXT NOT NULL,
    to_address      TEXT NOT NULL,
    -- Empty once redacted.
    body            TEXT NOT NULL,
    status          TEXT NOT NULL,
    direction       TEXT NOT NULL,
    num_segments    BIGINT NOT NULL,
    num_media       BIGINT NOT NULL,
    error_code      BIGINT,
    error_message   TEXT,
    price           TEXT,
    price_unit      TEXT NOT NULL,
    api_version     TEXT NOT NULL,
    status_callback TEXT,
    -- No foreign key: a message keeps naming the application it was sent with after that goes.
    application_sid TEXT,
    validity_period BIGINT,
    -- The SMSC route that carried or received it (internal).
    smsc            TEXT,
    attempts        BIGINT NOT NULL,
    date_created    BIGINT NOT NULL,
    date_updated    BIGINT NOT NULL,
    date_sent       BIGINT
);
CREATE INDEX messages_by_account ON messages (account_sid, date_created, sid);
-- The outbox: queued and sending messages, oldest first.
CREATE INDEX messages_by_status ON messages (status, date_created, sid);

-- One row per part an SMSC accepted (its submit_sm_resp message_id), so that a delivery receipt,
-- which names only that id, finds its message. A part submitted again replaces its row.
CREATE TABLE message_parts (
    message_sid     TEXT NOT NULL REFERENCES messages (sid) ON DELETE CASCADE,
    part_index      BIGINT NOT NULL,
    smsc            TEXT NOT NULL,
    smsc_message_id TEXT NOT NULL,
    status          TEXT NOT NULL,
    date_created    BIGINT NOT NULL,
    date_updated    BIGINT NOT NULL,
    PRIMARY KEY (message_sid, part_index)
);
CREATE UNIQUE INDEX message_parts_by_smsc_id ON message_parts (smsc, smsc_message_id);

-- What an SMSC's deliver_sm has already been stored as: an SMSC that did not see our
-- deliver_sm_resp sends the same message again, and it must not become a second message.
CREATE TABLE incoming_keys (
    smsc         TEXT NOT NULL,
    dedupe_key   TEXT NOT NULL,
    message_sid  TEXT NOT NULL,
    date_created BIGINT NOT NULL,
    PRIMARY KEY (smsc, dedupe_key)
);
CREATE INDEX incoming_keys_by_age ON incoming_keys (date_created);

-- Twilio's IncomingPhoneNumber SMS settings. When sms_application_sid is set the number's
-- messages use that application's SMS URLs (as voice_application_sid does for calls).
ALTER TABLE phone_numbers ADD COLUMN sms_url TEXT;
ALTER TABLE phone_numbers ADD COLUMN sms_method TEXT NOT NULL DEFAULT 'POST';
ALTER TABLE phone_numbers ADD COLUMN sms_fallback_url TEXT;
ALTER TABLE phone_numbers ADD COLUMN sms_fallback_method TEXT NOT NULL DEFAULT 'POST';
ALTER TABLE phone_numbers ADD COLUMN sms_application_sid TEXT REFERENCES applications (sid);
CREATE INDEX phone_numbers_by_sms_application ON phone_numbers (sms_application_sid);
