-- The agent console's CRM link for the account's agents (a Dialtone extension of the Account
-- resource, `ConsoleCrmUrl`): `{Name}` is replaced by the call's parameter `Name`.
ALTER TABLE accounts ADD COLUMN console_crm_url TEXT;
