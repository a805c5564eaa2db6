-- SIP users: domains, credential lists and their credentials (Twilio's SIP resources), and the
-- registrations the node holds, mirrored so the API of any node can list them. Portable SQL, as
-- 0001; flags are BIGINT 0/1, times BIGINT microseconds.

CREATE TABLE sip_domains (
    sid                          TEXT PRIMARY KEY,
    account_sid                  TEXT NOT NULL REFERENCES accounts (sid),
    -- Unique system-wide: a REGISTER or INVITE for this host belongs to this account.
    domain_name                  TEXT NOT NULL UNIQUE,
    friendly_name                TEXT NOT NULL,
    voice_url                    TEXT,
    voice_method                 TEXT NOT NULL,
    voice_fallback_url           TEXT,
    voice_fallback_method        TEXT NOT NULL,
    voice_status_callback_url    TEXT,
    voice_status_callback_method TEXT NOT NULL,
    sip_registration             BIGINT NOT NULL,
    date_created                 BIGINT NOT NULL,
    date_updated                 BIGINT NOT NULL
);
CREATE INDEX sip_domains_by_account ON sip_domains (account_sid, date_created, sid);

CREATE TABLE sip_credential_lists (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL REFERENCES accounts (sid),
    friendly_name TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);
CREATE INDEX sip_credential_lists_by_account ON sip_credential_lists (account_sid, date_created, sid);

CREATE TABLE sip_credentials (
    sid                 TEXT PRIMARY KEY,
    account_sid         TEXT NOT NULL REFERENCES accounts (sid),
    credential_list_sid TEXT NOT NULL REFERENCES sip_credential_lists (sid),
    username            TEXT NOT NULL,
    -- Hex of H(username:realm:password) for MD5 and SHA-256 under the one fixed digest realm:
    -- enough to check both digest algorithms, and the password itself is never stored.
    ha1_md5             TEXT NOT NULL,
    ha1_sha256          TEXT NOT NULL,
    date_created        BIGINT NOT NULL,
    date_updated        BIGINT NOT NULL,
    UNIQUE (credential_list_sid, username)
);
CREATE INDEX sip_credentials_by_account_user ON sip_credentials (account_sid, username);
CREATE INDEX sip_credentials_by_list ON sip_credentials (credential_list_sid, date_created, sid);

-- Which credential lists may REGISTER under a domain (Auth/Registrations/CredentialListMappings).
CREATE TABLE sip_domain_registration_mappings (
    domain_sid          TEXT NOT NULL REFERENCES sip_domains (sid),
    credential_list_sid TEXT NOT NULL REFERENCES sip_credential_lists (sid),
    account_sid         TEXT NOT NULL REFERENCES accounts (sid),
    date_created        BIGINT NOT NULL,
    PRIMARY KEY (domain_sid, credential_list_sid)
);
CREATE INDEX sip_domain_mappings_by_list ON sip_domain_registration_mappings (credential_list_sid);

-- Live bindings, written by the node that holds them in memory. Rows past expires_at are
-- ignored by readers; a node clears the table when it starts (its bindings died with it).
CREATE TABLE sip_registrations (
    account_sid  TEXT NOT NULL REFERENCES accounts (sid),
    username     TEXT NOT NULL,
    contact      TEXT NOT NULL,
    source       TEXT NOT NULL,
    transport    TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (account_sid, username, contact)
);
