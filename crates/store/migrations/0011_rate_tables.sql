-- An account's own rate table (set through the API by its main account): the rates as JSON
-- (`billing::RateSheet`). Without one an account is priced by its parent's, else by the node's
-- `[pricing]`.
CREATE TABLE rate_tables (
    account_sid  TEXT PRIMARY KEY REFERENCES accounts (sid) ON DELETE CASCADE,
    rates        TEXT NOT NULL,
    date_created BIGINT NOT NULL,
    date_updated BIGINT NOT NULL
);
