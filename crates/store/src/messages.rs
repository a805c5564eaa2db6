//! SMS messages: the account's Messages resource (API reads and writes, scoped by account), and
//! what the runtime's SMPP side needs, which is not scoped by account because an SMSC names no
//! account: the outbox, status changes by SID, the parts an SMSC accepted (so that a delivery
//! receipt, which carries only the SMSC's message id, finds its message), and the keys that
//! recognise a deliver_sm the SMSC sent again.
//!
//! Status changes follow [`MessageStatus::may_become`]: a final status is never overwritten and
//! none moves back, checked in the `UPDATE` itself so that a cancel racing the sender, or a
//! receipt racing a submit response, cannot undo the other.

use chrono::{DateTime, Days, NaiveDate, Utc};
use model::{AccountSid, MessageRecord, MessageSid, MessageStatus};
use sqlx::Row;

use crate::{
    micros, opt_sid_col, opt_time_col, sid_col, time_col, u32_col, DbRow, Page, PageRequest, Sql,
    Store, StoreError,
};

const COLUMNS: &str = "SELECT sid, account_sid, from_address, to_address, body, status, direction, \
    num_segments, num_media, error_code, error_message, price, price_unit, api_version, \
    status_callback, application_sid, validity_period, smsc, attempts, date_created, date_updated, \
    date_sent FROM messages";

const INSERT: &str = "INSERT INTO messages (sid, account_sid, from_address, to_address, body, \
    status, direction, num_segments, num_media, error_code, error_message, price, price_unit, \
    api_version, status_callback, application_sid, validity_period, smsc, attempts, date_created, \
    date_updated, date_sent) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
    $20, $21, $22)";

/// Filters of the Messages list, as Twilio names them: `To` and `From` match exactly; the
/// `DateSent` family are UTC days, `date_sent` that day, `date_sent_before` that day or earlier
/// (Twilio's `DateSent<`), `date_sent_after` that day or later (`DateSent>`). A message not sent
/// yet has no `date_sent` and matches no date filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFilter {
    pub to: Option<String>,
    pub from: Option<String>,
    pub date_sent: Option<NaiveDate>,
    pub date_sent_before: Option<NaiveDate>,
    pub date_sent_after: Option<NaiveDate>,
}

/// What [`Store::store_incoming`] did with an inbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A new message: its row and its key were written.
    Stored,
    /// The SMSC sent this one before, and it was stored as this message; nothing was written.
    /// The SID may name a message deleted since.
    Duplicate(MessageSid),
}

/// Where the parts of a message stand after [`Store::set_part_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartsSummary {
    pub message_sid: MessageSid,
    /// The part the receipt was for, from 0.
    pub part_index: u32,
    /// Whether the receipt changed that part (a repeated or late receipt does not).
    pub changed: bool,
    /// Parts the message has: its `num_segments`, or more if more were recorded.
    pub total: u32,
    pub delivered: u32,
    /// Parts `undelivered` or `failed`.
    pub failed: u32,
}

impl PartsSummary {
    /// The status the whole message takes now, if any: `undelivered` as soon as one part failed,
    /// `delivered` once every part was; `None` while parts are still on their way.
    pub fn outcome(&self) -> Option<MessageStatus> {
        if self.failed > 0 {
            Some(MessageStatus::Undelivered)
        } else if self.delivered >= self.total {
            Some(MessageStatus::Delivered)
        } else {
            None
        }
    }
}

fn decode(r: &DbRow) -> Result<MessageRecord, StoreError> {
    let status: String = r.try_get("status")?;
    let direction: String = r.try_get("direction")?;
    let opt_u32 = |col: &str| -> Result<Option<u32>, StoreError> {
        let v: Option<i64> = r.try_get(col)?;
        v.map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} {v} out of range"))))
            .transpose()
    };
    Ok(MessageRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        from: r.try_get("from_address")?,
        to: r.try_get("to_address")?,
        body: r.try_get("body")?,
        status: status.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        direction: direction.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        num_segments: u32_col(r, "num_segments")?,
        num_media: u32_col(r, "num_media")?,
        error_code: opt_u32("error_code")?,
        error_message: r.try_get("error_message")?,
        price: r.try_get("price")?,
        price_unit: r.try_get("price_unit")?,
        api_version: r.try_get("api_version")?,
        status_callback: r.try_get("status_callback")?,
        application_sid: opt_sid_col(r, "application_sid")?,
        validity_period: opt_u32("validity_period")?,
        smsc: r.try_get("smsc")?,
        attempts: u32_col(r, "attempts")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
        date_sent: opt_time_col(r, "date_sent")?,
    })
}

/// The statuses a message (or part) may be in to be set to `next`, as an SQL list of literals.
/// Only our own status names go in, never input.
fn statuses_before(next: MessageStatus) -> String {
    let names: Vec<String> = MessageStatus::ALL
        .into_iter()
        .filter(|s| s.may_become(next))
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    if names.is_empty() {
        // `IN ()` is not SQL; a status nothing may become matches no row.
        "NULL".to_owned()
    } else {
        names.join(", ")
    }
}

/// The first microsecond of a UTC day.
fn day_start(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).map_or(i64::MIN, |t| micros(t.and_utc()))
}

/// The first microsecond after a UTC day.
fn day_end(d: NaiveDate) -> i64 {
    d.checked_add_days(Days::new(1)).map_or(i64::MAX, day_start)
}

async fn insert<'c, E>(exec: E, rec: &MessageRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(INSERT)
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.from)
        .bind(&rec.to)
        .bind(&rec.body)
        .bind(rec.status.as_str())
        .bind(rec.direction.as_str())
        .bind(i64::from(rec.num_segments))
        .bind(i64::from(rec.num_media))
        .bind(rec.error_code.map(i64::from))
        .bind(&rec.error_message)
        .bind(&rec.price)
        .bind(&rec.price_unit)
        .bind(&rec.api_version)
        .bind(&rec.status_callback)
        .bind(rec.application_sid.as_ref().map(|s| s.as_str()))
        .bind(rec.validity_period.map(i64::from))
        .bind(&rec.smsc)
        .bind(i64::from(rec.attempts))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .bind(rec.date_sent.map(micros))
        .execute(exec)
        .await?;
    Ok(())
}

impl Store {
    /// Adds a message to `rec.account_sid` (an outbound one, `queued`, from the API).
    pub async fn create_message(&self, rec: &MessageRecord) -> Result<(), StoreError> {
        insert(self.writer(), rec).await
    }

    pub async fn message(
        &self,
        account: &AccountSid,
        sid: &MessageSid,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.fetch_scoped(COLUMNS, account, sid.as_str(), decode).await
    }

    /// Messages of one account, newest first (by creation, as every list pages).
    pub async fn list_messages(
        &self,
        account: &AccountSid,
        filter: &MessageFilter,
        page: &PageRequest,
    ) -> Result<Page<MessageRecord>, StoreError> {
        let mut q = Sql::scoped(COLUMNS, account);
        if let Some(to) = &filter.to {
            q.push(" AND to_address = ").push_bind(to.clone());
        }
        if let Some(from) = &filter.from {
            q.push(" AND from_address = ").push_bind(from.clone());
        }
        if let Some(d) = filter.date_sent {
            q.push(" AND date_sent >= ").push_bind(day_start(d));
            q.push(" AND date_sent < ").push_bind(day_end(d));
        }
        if let Some(d) = filter.date_sent_before {
            q.push(" AND date_sent < ").push_bind(day_end(d));
        }
        if let Some(d) = filter.date_sent_after {
            q.push(" AND date_sent >= ").push_bind(day_start(d));
        }
        self.page_of(q, page, decode).await
    }

    /// Empties the body of a message of `account` (Twilio's redaction: `Body=""`). Returns
    /// whether the message exists there. Whether it may be redacted yet is the caller's call.
    pub async fn redact_message_body(
        &self,
        account: &AccountSid,
        sid: &MessageSid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET body = '', date_updated = $1 WHERE account_sid = $2 AND sid = $3",
        )
        .bind(micros(Utc::now()))
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Cancels a message of `account` that has not been picked up for sending (`queued`,
    /// `accepted` or `scheduled`). Returns false when there is no such message or it is past
    /// that; the runtime's move to `sending` and this cancel cannot both win.
    pub async fn cancel_message(
        &self,
        account: &AccountSid,
        sid: &MessageSid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE messages SET status = 'canceled', date_updated = $1 \
             WHERE account_sid = $2 AND sid = $3 AND status IN ('queued', 'accepted', 'scheduled')",
        )
        .bind(micros(Utc::now()))
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a message of `account` and its parts. Returns whether it existed there. Whether
    /// it may go (Twilio keeps one that is being sent) is the caller's call.
    pub async fn delete_message(
        &self,
        account: &AccountSid,
        sid: &MessageSid,
    ) -> Result<bool, StoreError> {
        // The parts go with it (ON DELETE CASCADE).
        self.delete_scoped("messages", account, sid.as_str()).await
    }

    /// Runtime lookup (system-wide, not scoped by account): a message by its SID alone, as the
    /// sender and the receipt handler know it.
    pub async fn message_by_sid(&self, sid: &MessageSid) -> Result<Option<MessageRecord>, StoreError> {
        let sql = format!("{COLUMNS} WHERE sid = $1");
        let row = sqlx::query(&sql).bind(sid.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode).transpose()
    }

    /// Runtime read (system-wide): up to `limit` messages waiting to be sent (`queued`) or being
    /// handed to an SMSC (`sending`: a run that stopped mid-way left them so), oldest first by
    /// creation then SID. Sending in this order keeps each destination's messages in order.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<MessageRecord>, StoreError> {
        let sql = format!(
            "{COLUMNS} WHERE status IN ('queued', 'sending') ORDER BY date_created, sid LIMIT $1"
        );
        let rows = sqlx::query(&sql).bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// Runtime write (system-wide): sets a message's status, its error (`None` clears it) and,
    /// when given, `date_sent`. Returns false and changes nothing when the message is missing or
    /// its current status may not become `status` ([`MessageStatus::may_become`]: final statuses
    /// stay, none moves back), so a sender that finds its message canceled skips it.
    pub async fn set_message_status(
        &self,
        sid: &MessageSid,
        status: MessageStatus,
        error_code: Option<u32>,
        error_message: Option<&str>,
        date_sent: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE messages SET status = $1, error_code = $2, error_message = $3, \
             date_sent = COALESCE($4, date_sent), date_updated = $5 \
             WHERE sid = $6 AND status IN ({})",
            statuses_before(status)
        );
        let done = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(error_code.map(i64::from))
            .bind(error_message)
            .bind(date_sent.map(micros))
            .bind(micros(Utc::now()))
            .bind(sid.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Runtime write (system-wide): counts one more attempt to hand the message to an SMSC.
    /// Returns the new count, or `None` when there is no such message.
    pub async fn bump_attempts(&self, sid: &MessageSid) -> Result<Option<u32>, StoreError> {
        let row = sqlx::query(
            "UPDATE messages SET attempts = attempts + 1 WHERE sid = $1 RETURNING attempts",
        )
        .bind(sid.as_str())
        .fetch_optional(self.writer())
        .await?;
        row.as_ref().map(|r| u32_col(r, "attempts")).transpose()
    }

    /// Runtime write (system-wide): records that `smsc` accepted part `part_index` (from 0) of a
    /// message under `smsc_message_id` (its submit_sm_resp), status `sent`. A part submitted
    /// again replaces its row; an id the SMSC hands out again (SMSCs recycle them) now names
    /// this part only.
    pub async fn record_part(
        &self,
        sid: &MessageSid,
        part_index: u32,
        smsc: &str,
        smsc_message_id: &str,
    ) -> Result<(), StoreError> {
        let now = micros(Utc::now());
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "DELETE FROM message_parts WHERE smsc = $1 AND smsc_message_id = $2 \
             AND NOT (message_sid = $3 AND part_index = $4)",
        )
        .bind(smsc)
        .bind(smsc_message_id)
        .bind(sid.as_str())
        .bind(i64::from(part_index))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO message_parts (message_sid, part_index, smsc, smsc_message_id, status, \
             date_created, date_updated) VALUES ($1, $2, $3, $4, 'sent', $5, $5) \
             ON CONFLICT (message_sid, part_index) DO UPDATE SET smsc = excluded.smsc, \
             smsc_message_id = excluded.smsc_message_id, status = 'sent', \
             date_updated = excluded.date_updated",
        )
        .bind(sid.as_str())
        .bind(i64::from(part_index))
        .bind(smsc)
        .bind(smsc_message_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Runtime lookup (system-wide): the message, part index and number of parts that `smsc`'s
    /// `smsc_message_id` names, for a delivery receipt.
    pub async fn message_by_part(
        &self,
        smsc: &str,
        smsc_message_id: &str,
    ) -> Result<Option<(MessageSid, u32, u32)>, StoreError> {
        let row = sqlx::query(
            "SELECT p.message_sid, p.part_index, m.num_segments, \
             (SELECT COUNT(*) FROM message_parts q WHERE q.message_sid = p.message_sid) AS recorded \
             FROM message_parts p JOIN messages m ON m.sid = p.message_sid \
             WHERE p.smsc = $1 AND p.smsc_message_id = $2",
        )
        .bind(smsc)
        .bind(smsc_message_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let recorded: i64 = r.try_get("recorded")?;
        let total = u32_col(&r, "num_segments")?.max(u32::try_from(recorded).unwrap_or(u32::MAX));
        Ok(Some((sid_col(&r, "message_sid")?, u32_col(&r, "part_index")?, total)))
    }

    /// Runtime write (system-wide): a delivery receipt's status for the part `smsc` knows as
    /// `smsc_message_id` (`delivered`, `undelivered` or `failed`; a part's status follows the
    /// message rule, so a repeated receipt changes nothing), and where the message's parts stand
    /// now ([`PartsSummary::outcome`] says what the message becomes). `None` when no part has that
    /// id. The caller sets the message's own status.
    pub async fn set_part_status(
        &self,
        smsc: &str,
        smsc_message_id: &str,
        status: MessageStatus,
    ) -> Result<Option<PartsSummary>, StoreError> {
        let mut tx = self.writer().begin().await?;
        // The part first, then its update: a part recorded between the two statements (its
        // submit's record racing the receipt, under PostgreSQL's read committed) is then either
        // not seen at all (`None`: the caller tries again) or seen and updated, never seen but
        // left unchanged.
        let part = sqlx::query(
            "SELECT p.message_sid, p.part_index, m.num_segments \
             FROM message_parts p JOIN messages m ON m.sid = p.message_sid \
             WHERE p.smsc = $1 AND p.smsc_message_id = $2",
        )
        .bind(smsc)
        .bind(smsc_message_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(part) = part else {
            tx.rollback().await?;
            return Ok(None);
        };
        let sql = format!(
            "UPDATE message_parts SET status = $1, date_updated = $2 \
             WHERE smsc = $3 AND smsc_message_id = $4 AND status IN ({})",
            statuses_before(status)
        );
        let changed = sqlx::query(&sql)
            .bind(status.as_str())
            .bind(micros(Utc::now()))
            .bind(smsc)
            .bind(smsc_message_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let message_sid: MessageSid = sid_col(&part, "message_sid")?;
        let counts = sqlx::query(
            "SELECT COUNT(*) AS recorded, \
             COALESCE(SUM(CASE WHEN status = 'delivered' THEN 1 ELSE 0 END), 0) AS delivered, \
             COALESCE(SUM(CASE WHEN status IN ('undelivered', 'failed') THEN 1 ELSE 0 END), 0) AS failed \
             FROM message_parts WHERE message_sid = $1",
        )
        .bind(message_sid.as_str())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        let count = |col: &str| -> Result<u32, StoreError> {
            let v: i64 = counts.try_get(col)?;
            u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} {v} out of range")))
        };
        Ok(Some(PartsSummary {
            message_sid,
            part_index: u32_col(&part, "part_index")?,
            changed,
            total: u32_col(&part, "num_segments")?.max(count("recorded")?),
            delivered: count("delivered")?,
            failed: count("failed")?,
        }))
    }

    /// Runtime write (system-wide): stores an inbound message once. `dedupe_key` is what makes
    /// the SMSC's deliver_sm unique to it (its message id, or the source, destination, time and
    /// text); in one transaction the key is claimed and the message row inserted, so a
    /// retransmission (the SMSC missed our deliver_sm_resp) is [`Incoming::Duplicate`] and
    /// writes nothing, while two racing copies store one message.
    pub async fn store_incoming(
        &self,
        rec: &MessageRecord,
        smsc: &str,
        dedupe_key: &str,
    ) -> Result<Incoming, StoreError> {
        let mut tx = self.writer().begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO incoming_keys (smsc, dedupe_key, message_sid, date_created) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (smsc, dedupe_key) DO NOTHING",
        )
        .bind(smsc)
        .bind(dedupe_key)
        .bind(rec.sid.as_str())
        .bind(micros(rec.date_created))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !claimed {
            let row = sqlx::query(
                "SELECT message_sid FROM incoming_keys WHERE smsc = $1 AND dedupe_key = $2",
            )
            .bind(smsc)
            .bind(dedupe_key)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(Incoming::Duplicate(sid_col(&row, "message_sid")?));
        }
        insert(&mut *tx, rec).await?;
        tx.commit().await?;
        Ok(Incoming::Stored)
    }

    /// Runtime write (system-wide): forgets the dedupe keys made before `older_than` (an SMSC
    /// retransmits within minutes, not days). Returns how many went.
    pub async fn prune_incoming_keys(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM incoming_keys WHERE date_created < $1")
            .bind(micros(older_than))
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use chrono::Duration;
    use model::MessageDirection;

    use super::*;
    use crate::testutil::*;

    pub fn message(account: &AccountSid, to: &str) -> MessageRecord {
        let now = now();
        MessageRecord {
            sid: MessageSid::generate(),
            account_sid: *account,
            from: "+14155550100".into(),
            to: to.into(),
            body: "Hello".into(),
            status: MessageStatus::Queued,
            direction: MessageDirection::OutboundApi,
            num_segments: 1,
            num_media: 0,
            error_code: None,
            error_message: None,
            price: None,
            price_unit: MessageRecord::PRICE_UNIT.into(),
            api_version: MessageRecord::API_VERSION.into(),
            status_callback: Some("https://app.example/status".into()),
            application_sid: None,
            validity_period: Some(600),
            smsc: None,
            attempts: 0,
            date_created: now,
            date_updated: now,
            date_sent: None,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[tokio::test]
    async fn messages_are_scoped_by_account_redacted_and_deleted() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let m = message(&a, "+15005550006");
        db.store.create_message(&m).await.unwrap();
        assert_eq!(db.store.message(&a, &m.sid).await.unwrap().as_ref(), Some(&m));
        assert_eq!(db.store.message(&b, &m.sid).await.unwrap(), None, "other tenant must not see it");
        assert_eq!(db.store.message_by_sid(&m.sid).await.unwrap().as_ref(), Some(&m));

        assert!(!db.store.redact_message_body(&b, &m.sid).await.unwrap());
        assert!(db.store.redact_message_body(&a, &m.sid).await.unwrap());
        assert_eq!(db.store.message(&a, &m.sid).await.unwrap().unwrap().body, "");

        assert!(!db.store.cancel_message(&b, &m.sid).await.unwrap());
        assert!(db.store.cancel_message(&a, &m.sid).await.unwrap());
        assert!(!db.store.cancel_message(&a, &m.sid).await.unwrap(), "already canceled");
        assert_eq!(db.store.message(&a, &m.sid).await.unwrap().unwrap().status, MessageStatus::Canceled);

        assert!(!db.store.delete_message(&b, &m.sid).await.unwrap());
        assert!(db.store.delete_message(&a, &m.sid).await.unwrap());
        assert_eq!(db.store.message(&a, &m.sid).await.unwrap(), None);
    }

    #[tokio::test]
    async fn lists_page_newest_first_and_filter_by_number_and_day_sent() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let base = now();
        // Sent at noon on 1..=5 March 2026; one not sent yet.
        for d in 1..=5u32 {
            let mut m = message(&a, if d % 2 == 0 { "+111" } else { "+222" });
            m.date_created = base + Duration::seconds(i64::from(d));
            m.status = MessageStatus::Sent;
            m.date_sent = Some(day(2026, 3, d).and_hms_opt(12, 0, 0).unwrap().and_utc());
            db.store.create_message(&m).await.unwrap();
        }
        let mut unsent = message(&a, "+111");
        unsent.date_created = base + Duration::seconds(10);
        db.store.create_message(&unsent).await.unwrap();
        db.store.create_message(&message(&b, "+111")).await.unwrap();

        let all = db.store.list_messages(&a, &MessageFilter::default(), &PageRequest::first(100)).await.unwrap();
        assert_eq!(all.items.len(), 6);
        assert_eq!(all.items[0].sid, unsent.sid, "newest first");

        let mut seen = HashSet::new();
        let mut req = PageRequest::first(4);
        loop {
            let page = db.store.list_messages(&a, &MessageFilter::default(), &req).await.unwrap();
            seen.extend(page.items.iter().map(|m| m.sid));
            match page.next {
                Some(c) => req = PageRequest { size: 4, after: Some(c), offset: 0 },
                None => break,
            }
        }
        assert_eq!(seen.len(), 6);

        let count = |f: MessageFilter| {
            let store = db.store.clone();
            async move { store.list_messages(&a, &f, &PageRequest::first(100)).await.unwrap().items.len() }
        };
        assert_eq!(count(MessageFilter { to: Some("+111".into()), ..Default::default() }).await, 3);
        assert_eq!(count(MessageFilter { from: Some("+1999".into()), ..Default::default() }).await, 0);
        assert_eq!(count(MessageFilter { date_sent: Some(day(2026, 3, 3)), ..Default::default() }).await, 1);
        // Both ends include their day.
        assert_eq!(count(MessageFilter { date_sent_before: Some(day(2026, 3, 2)), ..Default::default() }).await, 2);
        assert_eq!(count(MessageFilter { date_sent_after: Some(day(2026, 3, 4)), ..Default::default() }).await, 2);
        let between = MessageFilter {
            date_sent_after: Some(day(2026, 3, 2)),
            date_sent_before: Some(day(2026, 3, 4)),
            to: Some("+111".into()),
            ..Default::default()
        };
        assert_eq!(count(between).await, 2);
        assert_eq!(count(MessageFilter { date_sent: Some(day(2026, 4, 1)), ..Default::default() }).await, 0);
    }

    #[tokio::test]
    async fn the_outbox_is_oldest_first_and_statuses_never_go_back() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let base = now();
        let mut first = message(&a, "+1");
        first.date_created = base;
        let mut second = message(&b, "+1");
        second.date_created = base + Duration::seconds(1);
        let mut done = message(&a, "+1");
        done.status = MessageStatus::Delivered;
        for m in [&second, &done, &first] {
            db.store.create_message(m).await.unwrap();
        }
        let sids = |v: Vec<MessageRecord>| v.into_iter().map(|m| m.sid).collect::<Vec<_>>();
        assert_eq!(sids(db.store.outbox(10).await.unwrap()), vec![first.sid, second.sid]);
        assert_eq!(sids(db.store.outbox(1).await.unwrap()), vec![first.sid]);

        let set = |sid, st, sent| {
            let store = db.store.clone();
            async move { store.set_message_status(&sid, st, None, None, sent).await.unwrap() }
        };
        assert!(set(first.sid, MessageStatus::Sending, None).await);
        assert_eq!(db.store.bump_attempts(&first.sid).await.unwrap(), Some(1));
        assert_eq!(db.store.bump_attempts(&first.sid).await.unwrap(), Some(2));
        assert_eq!(db.store.bump_attempts(&MessageSid::generate()).await.unwrap(), None);
        // Still in the outbox while sending: a restart picks it up again.
        assert_eq!(sids(db.store.outbox(10).await.unwrap()), vec![first.sid, second.sid]);
        let at = now();
        assert!(set(first.sid, MessageStatus::Sent, Some(at)).await);
        assert!(!set(first.sid, MessageStatus::Sending, None).await, "no way back");
        assert!(set(first.sid, MessageStatus::Delivered, None).await);
        assert!(!set(first.sid, MessageStatus::Undelivered, None).await, "final");
        let stored = db.store.message_by_sid(&first.sid).await.unwrap().unwrap();
        assert_eq!((stored.status, stored.date_sent, stored.attempts), (MessageStatus::Delivered, Some(at), 2));

        // A cancel beats the sender, and then the sender cannot have it.
        assert!(db.store.cancel_message(&b, &second.sid).await.unwrap());
        assert!(!set(second.sid, MessageStatus::Sending, None).await);
        assert!(db.store.outbox(10).await.unwrap().is_empty());

        let mut failing = message(&a, "+2");
        failing.status = MessageStatus::Sending;
        db.store.create_message(&failing).await.unwrap();
        assert!(db
            .store
            .set_message_status(&failing.sid, MessageStatus::Failed, Some(30008), Some("Unknown error"), None)
            .await
            .unwrap());
        let stored = db.store.message_by_sid(&failing.sid).await.unwrap().unwrap();
        assert_eq!((stored.error_code, stored.error_message.as_deref()), (Some(30008), Some("Unknown error")));
        assert!(!set(MessageSid::generate(), MessageStatus::Sent, None).await);
    }

    #[tokio::test]
    async fn receipts_find_their_part_and_decide_the_message() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let mut m = message(&a, "+1");
        m.num_segments = 3;
        m.status = MessageStatus::Sent;
        db.store.create_message(&m).await.unwrap();
        for (i, id) in ["id-0", "id-1", "id-2"].into_iter().enumerate() {
            db.store.record_part(&m.sid, i as u32, "smsc-a", id).await.unwrap();
        }
        assert_eq!(db.store.message_by_part("smsc-a", "id-1").await.unwrap(), Some((m.sid, 1, 3)));
        assert_eq!(db.store.message_by_part("smsc-b", "id-1").await.unwrap(), None, "ids are per SMSC");

        let s = db.store.set_part_status("smsc-a", "id-0", MessageStatus::Delivered).await.unwrap().unwrap();
        assert_eq!((s.message_sid, s.part_index, s.changed, s.total, s.delivered, s.failed), (m.sid, 0, true, 3, 1, 0));
        assert_eq!(s.outcome(), None);
        let again = db.store.set_part_status("smsc-a", "id-0", MessageStatus::Undelivered).await.unwrap().unwrap();
        assert!(!again.changed, "a delivered part stays delivered");
        db.store.set_part_status("smsc-a", "id-1", MessageStatus::Delivered).await.unwrap();
        let s = db.store.set_part_status("smsc-a", "id-2", MessageStatus::Delivered).await.unwrap().unwrap();
        assert_eq!(s.outcome(), Some(MessageStatus::Delivered));
        assert_eq!(db.store.set_part_status("smsc-a", "nope", MessageStatus::Delivered).await.unwrap(), None);

        // One failed part makes the message undelivered at once.
        let mut long = message(&a, "+1");
        long.num_segments = 2;
        db.store.create_message(&long).await.unwrap();
        db.store.record_part(&long.sid, 0, "smsc-a", "x-0").await.unwrap();
        let s = db.store.set_part_status("smsc-a", "x-0", MessageStatus::Undelivered).await.unwrap().unwrap();
        assert_eq!(s.outcome(), Some(MessageStatus::Undelivered));

        // A part submitted again gets its new id; an id the SMSC recycles moves to the new part.
        db.store.record_part(&long.sid, 0, "smsc-a", "x-0b").await.unwrap();
        assert_eq!(db.store.message_by_part("smsc-a", "x-0").await.unwrap(), None);
        db.store.record_part(&long.sid, 1, "smsc-a", "id-0").await.unwrap();
        assert_eq!(db.store.message_by_part("smsc-a", "id-0").await.unwrap(), Some((long.sid, 1, 2)));

        // Deleting a message takes its parts.
        assert!(db.store.delete_message(&a, &long.sid).await.unwrap());
        assert_eq!(db.store.message_by_part("smsc-a", "x-0b").await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_incoming_message_is_stored_once_per_smsc_key() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let mut m = message(&a, "+14155550100");
        m.direction = MessageDirection::Inbound;
        m.status = MessageStatus::Received;
        m.smsc = Some("smsc-a".into());
        m.date_sent = Some(m.date_created);
        assert_eq!(db.store.store_incoming(&m, "smsc-a", "k1").await.unwrap(), Incoming::Stored);
        let mut copy = m.clone();
        copy.sid = MessageSid::generate();
        assert_eq!(db.store.store_incoming(&copy, "smsc-a", "k1").await.unwrap(), Incoming::Duplicate(m.sid));
        assert_eq!(db.store.message(&a, &copy.sid).await.unwrap(), None, "nothing written");
        assert_eq!(db.store.message(&a, &m.sid).await.unwrap().as_ref(), Some(&m));
        // The same key from another SMSC is another message.
        assert_eq!(db.store.store_incoming(&copy, "smsc-b", "k1").await.unwrap(), Incoming::Stored);

        // Racing copies: exactly one is stored.
        let tries = (0..8).map(|_| {
            let store = db.store.clone();
            let mut c = m.clone();
            c.sid = MessageSid::generate();
            tokio::spawn(async move { store.store_incoming(&c, "smsc-a", "race").await.unwrap() })
        });
        let mut stored = 0;
        for t in tries.collect::<Vec<_>>() {
            if t.await.unwrap() == Incoming::Stored {
                stored += 1;
            }
        }
        assert_eq!(stored, 1);

        assert_eq!(db.store.prune_incoming_keys(m.date_created).await.unwrap(), 0);
        assert_eq!(db.store.prune_incoming_keys(now() + Duration::seconds(1)).await.unwrap(), 3);
        // Once pruned, the key is free again.
        let mut later = m.clone();
        later.sid = MessageSid::generate();
        assert_eq!(db.store.store_incoming(&later, "smsc-a", "k1").await.unwrap(), Incoming::Stored);
    }
}
