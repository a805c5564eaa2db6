-- The outbox index covers only the messages still to be sent: a status change past `sending`
-- (sent, delivered) then removes the row from it once instead of moving it within it twice,
-- and the index stays as small as the backlog. Both backends read it for the outbox query,
-- whose WHERE is the index's.
DROP INDEX messages_by_status;
CREATE INDEX messages_outbox ON messages (date_created, sid) WHERE status IN ('queued', 'sending');
