-- What a call cost (a decimal string, the charge as Twilio shows it: negative, e.g. "-0.1000"),
-- set when the call ends if a rate table prices it; NULL otherwise.
ALTER TABLE calls ADD COLUMN price TEXT;
