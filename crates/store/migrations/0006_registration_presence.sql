-- What a registered user said of itself on REGISTER (a browser agent's `X-Dialtone-Presence`):
-- 'available' (rung by <Dial><Client>) or 'away' (registered, not rung). SIP phones say nothing
-- and count as available.
ALTER TABLE sip_registrations ADD COLUMN presence TEXT NOT NULL DEFAULT 'available';
