//! SMS messages: the account's Messages resource (API reads and writes, scoped by account), and
//! what the runtime's SMPP side needs, which is not scoped by account because an SMSC names no
//! account: the outbox, status changes by SID, the parts an SMSC accepted (so that a delivery
//! receipt, which carries only the SMSC's message id, finds its message), and the keys that
//! recognise a deliver_sm the SMSC sent again.
//!
//! Status changes follow [`MessageStatus::may_become`]: a final status is never overwritten and
//! none moves back, checked in the `UPDATE` itself so that a cancel racing the sender, or a
//! receipt racing a submit response, cannot undo the other.
//!
//! The sender's writes come in two forms: one message at a time ([`Store::record_part`],
//! [`Store::set_part_status`], ...), and in batches ([`Store::create_messages`],
//! [`Store::record_sent`], [`Store::mark_retrying`], [`Store::apply_receipts`]), which do the same
//! work for many messages in one write transaction with a few statements per batch: multi-row
//! `INSERT`s and `IN` lists of binds, [`MAX_BINDS`] values at most per statement.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Days, NaiveDate, Utc};
use model::{AccountSid, MessageRecord, MessageSid, MessageStatus};
use sqlx::any::AnyArguments;
use sqlx::error::BoxDynError;
use sqlx::{Any, AnyConnection, Arguments, Encode, Row, Type};

use crate::{
    micros, opt_sid_col, opt_time_col, sid_col, time_col, u32_col, DbRow, Page, PageRequest, Sql,
    Store, StoreError,
};

const COLUMNS: &str = "SELECT sid, account_sid, from_address, to_address, body, status, direction, \
    num_segments, num_media, error_code, error_message, price, price_unit, api_version, \
    status_callback, application_sid, validity_period, smsc, attempts, date_created, date_updated, \
    date_sent FROM messages";

/// Followed by one `(...)` per row, as [`push_record`] writes them.
const INSERT: &str = "INSERT INTO messages (sid, account_sid, from_address, to_address, body, \
    status, direction, num_segments, num_media, error_code, error_message, price, price_unit, \
    api_version, status_callback, application_sid, validity_period, smsc, attempts, date_created, \
    date_updated, date_sent) VALUES ";

/// [`INSERT`]'s columns from a JSON array of rows (PostgreSQL), its parameter and `::json)` to
/// follow.
const INSERT_JSON: &str = "INSERT INTO messages (sid, account_sid, from_address, to_address, body, \
    status, direction, num_segments, num_media, error_code, error_message, price, price_unit, \
    api_version, status_callback, application_sid, validity_period, smsc, attempts, date_created, \
    date_updated, date_sent) SELECT sid, account_sid, from_address, to_address, body, \
    status, direction, num_segments, num_media, error_code, error_message, price, price_unit, \
    api_version, status_callback, application_sid, validity_period, smsc, attempts, date_created, \
    date_updated, date_sent FROM json_populate_recordset(NULL::messages, ";

/// One row of [`INSERT_JSON`]: the columns by name.
fn record_json(rec: &MessageRecord) -> serde_json::Value {
    serde_json::json!({
        "sid": rec.sid.as_str(),
        "account_sid": rec.account_sid.as_str(),
        "from_address": rec.from,
        "to_address": rec.to,
        "body": rec.body,
        "status": rec.status.as_str(),
        "direction": rec.direction.as_str(),
        "num_segments": rec.num_segments,
        "num_media": rec.num_media,
        "error_code": rec.error_code,
        "error_message": rec.error_message,
        "price": rec.price,
        "price_unit": rec.price_unit,
        "api_version": rec.api_version,
        "status_callback": rec.status_callback,
        "application_sid": rec.application_sid.as_ref().map(|s| s.as_str()),
        "validity_period": rec.validity_period,
        "smsc": rec.smsc,
        "attempts": rec.attempts,
        "date_created": micros(rec.date_created),
        "date_updated": micros(rec.date_updated),
        "date_sent": rec.date_sent.map(micros),
    })
}

/// The values of one row of [`INSERT`].
const RECORD_BINDS: usize = 22;

/// The most values one statement of the batch methods binds: far under SQLite's limit (32,766)
/// and PostgreSQL's (65,535). A longer list goes in several statements of the same transaction.
const MAX_BINDS: usize = 8000;

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

/// What [`Store::write_messages`] writes in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct MessageWrites<'a> {
    pub create: &'a [MessageRecord],
    pub sent: &'a [SentMessage],
    pub retrying: &'a [MessageSid],
    pub receipts: &'a [ReceiptUpdate],
    pub now: DateTime<Utc>,
}

/// What [`Store::write_messages`] did: the SIDs that became `sent` (as
/// [`Store::record_sent`] returns them) and one outcome per receipt (as
/// [`Store::apply_receipts`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageWritesDone {
    pub sent: Vec<MessageSid>,
    pub receipts: Vec<ReceiptOutcome>,
}

/// A message an SMSC accepted, every part of it: part i has `message_ids[i]` (its submit_sm_resp id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    pub sid: MessageSid,
    pub smsc: String,
    pub message_ids: Vec<String>,
    /// What sending it cost (Twilio's form, `"-0.0079"`), if a rate table priced it: set with
    /// `sent`; `None` leaves the message's price as it is.
    pub price: Option<String>,
}

/// A delivery receipt for one part. `status` is Delivered, Undelivered or Failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptUpdate {
    pub smsc: String,
    pub smsc_message_id: String,
    pub status: MessageStatus,
    /// The Twilio error code the message gets if this receipt makes it undelivered/failed.
    pub error_code: Option<u32>,
}

/// What one receipt did.
// `Applied` carries the message's row when it has one to tell; the outcomes of a batch are one
// vector, so the row stays inline rather than boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ReceiptOutcome {
    /// No part has this SMSC id (yet: the receipt may have overtaken `record_sent`). Nothing written.
    Unknown,
    /// The part was found. `changed`: the receipt changed the part's status (a repeat does not).
    /// `message`: set when this receipt moved the whole message to a final status.
    Applied { message_sid: MessageSid, changed: bool, message: Option<MessageChange> },
}

/// A message whose status a receipt batch changed.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageChange {
    pub status: MessageStatus, // Delivered or Undelivered (or Failed)
    pub error_code: Option<u32>,
    /// The message's row after the change, read only when it has a `status_callback` (the caller
    /// posts one); `None` otherwise, to keep the common case free of row reads.
    pub record: Option<MessageRecord>,
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
    status_list(|s| s.may_become(next))
}

/// The statuses a message (or part) may be in for `next` to change it: [`statuses_before`] but
/// `next` itself, so that a repeat (`sent` again) is not counted as a change.
fn statuses_changing_to(next: MessageStatus) -> String {
    status_list(|s| s != next && s.may_become(next))
}

/// The statuses `keep` accepts, as an SQL list of literals.
fn status_list(keep: impl Fn(MessageStatus) -> bool) -> String {
    let names: Vec<String> = MessageStatus::ALL
        .into_iter()
        .filter(|&s| keep(s))
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

/// Writes `(...)`: the [`RECORD_BINDS`] values of `rec`, in the order of [`INSERT`]'s columns.
fn push_record<'q>(q: &mut Stmt<'q>, rec: &'q MessageRecord) {
    q.push("(").bind(rec.sid.as_str());
    q.push(", ").bind(rec.account_sid.as_str());
    q.push(", ").bind(rec.from.as_str());
    q.push(", ").bind(rec.to.as_str());
    q.push(", ").bind(rec.body.as_str());
    q.push(", ").bind(rec.status.as_str());
    q.push(", ").bind(rec.direction.as_str());
    q.push(", ").bind(i64::from(rec.num_segments));
    q.push(", ").bind(i64::from(rec.num_media));
    q.push(", ").bind(rec.error_code.map(i64::from));
    q.push(", ").bind(rec.error_message.as_deref());
    q.push(", ").bind(rec.price.as_deref());
    q.push(", ").bind(rec.price_unit.as_str());
    q.push(", ").bind(rec.api_version.as_str());
    q.push(", ").bind(rec.status_callback.as_deref());
    q.push(", ").bind(rec.application_sid.as_ref().map(|s| s.as_str()));
    q.push(", ").bind(rec.validity_period.map(i64::from));
    q.push(", ").bind(rec.smsc.as_deref());
    q.push(", ").bind(i64::from(rec.attempts));
    q.push(", ").bind(micros(rec.date_created));
    q.push(", ").bind(micros(rec.date_updated));
    q.push(", ").bind(rec.date_sent.map(micros));
    q.push(")");
}

async fn insert<'c, E>(exec: E, rec: &MessageRecord) -> Result<(), StoreError>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    // One row: `$n` costs nothing here (see `Binds`), and the text is the same on every executor.
    let mut q = Stmt::new(Binds::Numbered, INSERT);
    push_record(&mut q, rec);
    q.execute(exec).await?;
    Ok(())
}

/// How many list values a statement with `fixed` other values may bind.
fn room(max_binds: usize, fixed: usize) -> usize {
    max_binds.saturating_sub(fixed).max(1)
}

/// How a statement writes its binds' placeholders.
///
/// `$n` is what both backends read, but SQLite takes `$n` (and `?n`) for a named (numbered)
/// parameter, which it looks up among those before it as it prepares the statement: preparing
/// costs the square of the binds. An `IN` list of 8,000 `$n` took 174 ms to prepare, of 8,000
/// anonymous `?` 3 ms, and 3,000 messages went in 1.8 s in INSERTs of 8,000 `$n` against 53 ms
/// with `?` (a debug build). So the batch statements write `?` on SQLite (each value bound where
/// it appears, in order) and `$n` on PostgreSQL; the SQL is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binds {
    /// `$1, $2, ...`: either backend.
    Numbered,
    /// `?, ?, ...`, bound in the order they appear: SQLite.
    InOrder,
}

impl Binds {
    /// The placeholders for statements on `conn`.
    fn of(conn: &sqlx::AnyConnection) -> Binds {
        if conn.backend_name() == "SQLite" {
            Binds::InOrder
        } else {
            Binds::Numbered
        }
    }
}

/// A statement of the batch methods, its values bound as its text is written (as [`crate::Sql`]
/// does, with the placeholders of [`Binds`]), over values borrowed from the batch instead of
/// copied, run on any executor (the batch's transaction).
struct Stmt<'q> {
    sql: String,
    binds: Binds,
    args: AnyArguments<'q>,
    /// A value that failed to encode; reported when the statement runs.
    error: Option<BoxDynError>,
    /// Whether the connection keeps the statement prepared (sqlx's statement cache).
    persistent: bool,
}

impl<'q> Stmt<'q> {
    fn new(binds: Binds, sql: &str) -> Stmt<'q> {
        Stmt { sql: sql.to_owned(), binds, args: AnyArguments::default(), error: None, persistent: true }
    }

    /// A statement whose text grows with its batch (a multi-row `INSERT`): not kept prepared, so
    /// that batches of every size do not crowd the other statements out of the connection's cache.
    fn one_off(binds: Binds, sql: &str) -> Stmt<'q> {
        Stmt { persistent: false, ..Stmt::new(binds, sql) }
    }

    fn push(&mut self, text: &str) -> &mut Stmt<'q> {
        self.sql.push_str(text);
        self
    }

    /// Adds a value and writes its placeholder. A value used twice is bound twice.
    fn bind<T>(&mut self, value: T) -> &mut Stmt<'q>
    where
        T: 'q + Encode<'q, Any> + Type<Any>,
    {
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        match self.binds {
            Binds::Numbered => {
                let n = self.args.len().to_string();
                self.push("$").push(&n)
            }
            Binds::InOrder => self.push("?"),
        }
    }

    /// Writes `(?, ...)`, the right side of an `IN` with `values` (a chunk of at most `max`).
    /// The list is filled up to the next power of two (never past `max`) with the last value
    /// again, which matches nothing more: batches of every size then share a few statement texts,
    /// each prepared once per connection, instead of one text per size.
    ///
    /// On PostgreSQL the list is one parameter instead, a JSON array of the values, unnested
    /// (`IN (SELECT json_array_elements_text($n::json))`): the statement text and its plan are
    /// the same for every batch, nothing is planned per value, and the planner joins the list
    /// (estimated at 100 rows, whatever the table's statistics say) to the table's index. With
    /// a list of `$n`, each statement was planned anew for its values, and on tables that grew
    /// faster than autovacuum analysed them (every bench from an empty database) the plans
    /// scanned whole tables.
    fn list(&mut self, values: &[&'q str], max: usize) -> &mut Stmt<'q> {
        if self.binds == Binds::Numbered {
            let json = serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned());
            return self.push("(SELECT json_array_elements_text(").bind(json).push("::json))");
        }
        let Some(&last) = values.last() else {
            // `IN ()` is not SQL; an empty list matches no row.
            return self.push("(NULL)");
        };
        let len = values.len().next_power_of_two().min(max).max(values.len());
        self.push("(");
        for (i, &v) in values.iter().chain(std::iter::repeat_n(&last, len - values.len())).enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v);
        }
        self.push(")")
    }

    async fn fetch_all<'c, E>(self, exec: E) -> Result<Vec<DbRow>, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        if let Some(e) = self.error {
            return Err(sqlx::Error::Encode(e).into());
        }
        Ok(sqlx::query_with(&self.sql, self.args).persistent(self.persistent).fetch_all(exec).await?)
    }

    /// Runs the statement; how many rows it changed.
    async fn execute<'c, E>(self, exec: E) -> Result<u64, StoreError>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        if let Some(e) = self.error {
            return Err(sqlx::Error::Encode(e).into());
        }
        let done = sqlx::query_with(&self.sql, self.args).persistent(self.persistent).execute(exec).await?;
        Ok(done.rows_affected())
    }
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

/// The statements of [`Store::create_messages`], in the caller's transaction.
async fn create_messages_on(tx: &mut AnyConnection, recs: &[MessageRecord], max_binds: usize) -> Result<(), StoreError> {
    let binds = Binds::of(tx);
    if binds == Binds::Numbered {
        // PostgreSQL: the rows as one JSON parameter, unnested into the table's row type: one
        // statement text, planned once, instead of 22 parameters a row parsed and planned anew.
        let rows: Vec<serde_json::Value> = recs.iter().map(record_json).collect();
        let json = serde_json::Value::Array(rows).to_string();
        let mut q = Stmt::new(binds, INSERT_JSON);
        q.bind(json).push("::json)");
        q.execute(&mut *tx).await?;
        return Ok(());
    }
    for chunk in recs.chunks((max_binds / RECORD_BINDS).max(1)) {
        let mut q = Stmt::one_off(binds, INSERT);
        for (i, rec) in chunk.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            push_record(&mut q, rec);
        }
        q.execute(&mut *tx).await?;
    }

    Ok(())
}

/// The batch forms of the sender's writes. Each runs in one write transaction, all or nothing,
/// with a few statements per chunk of [`MAX_BINDS`] values (the counts are on each method), and
/// keeps the status rule of the single-message methods inside its SQL.
///
/// Keys go into `IN` lists sorted, so that on PostgreSQL two batches lock the rows they share in
/// the same order.
impl Store {
    /// PostgreSQL: refreshes the planner's statistics of the SMS tables (`ANALYZE`); SQLite:
    /// nothing (it plans without statistics unless told to gather them).
    ///
    /// These tables can grow by thousands of rows a second from empty, far faster than
    /// autovacuum (once a minute by default) analyses them; plans made for a table taken to be
    /// nearly empty read whole indexes for each batch (32 ms a statement at 5,000 messages/s).
    /// The sender calls this as the tables grow; `ANALYZE` samples rows and blocks no writer.
    pub async fn analyze_messages(&self) -> Result<(), StoreError> {
        if !self.parallel_writes() {
            return Ok(());
        }
        sqlx::query("ANALYZE messages, message_parts").execute(&self.pool).await?;
        Ok(())
    }

    /// Everything the SMS sender has to write at one time, in one transaction (one commit): the
    /// new messages, then the accepted submits, the retries and the receipts, each as its own
    /// method does it, in that order (a receipt finds the part recorded in the same batch). All
    /// or none.
    pub async fn write_messages(&self, writes: &MessageWrites<'_>) -> Result<MessageWritesDone, StoreError> {
        let mut tx = self.writer().begin().await?;
        if !writes.create.is_empty() {
            create_messages_on(&mut tx, writes.create, MAX_BINDS).await?;
        }
        let sent = Self::record_sent_on(&mut tx, writes.sent, writes.now, MAX_BINDS).await?;
        Self::mark_retrying_on(&mut tx, writes.retrying, writes.now, MAX_BINDS).await?;
        let receipts = Self::apply_receipts_on(&mut tx, writes.receipts, writes.now, MAX_BINDS).await?;
        tx.commit().await?;
        Ok(MessageWritesDone { sent, receipts })
    }

    /// Inserts new messages (any status) in one transaction: multi-row INSERTs. All or none.
    ///
    /// Statements: one `INSERT` per 363 messages ([`MAX_BINDS`] / 22 values a row); on
    /// PostgreSQL one in all, its rows one JSON parameter.
    pub async fn create_messages(&self, recs: &[MessageRecord]) -> Result<(), StoreError> {
        self.create_messages_in_chunks(recs, MAX_BINDS).await
    }

    async fn create_messages_in_chunks(&self, recs: &[MessageRecord], max_binds: usize) -> Result<(), StoreError> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer().begin().await?;
        create_messages_on(&mut tx, recs, max_binds).await?;
        tx.commit().await?;
        Ok(())
    }

    /// In one transaction, for every message: deletes the parts it had from earlier attempts and any
    /// part (of any message) that has the same (smsc, smsc_message_id) as one of the new ones (SMSCs
    /// recycle ids), inserts its parts (status 'sent', part_index = position in message_ids), and sets
    /// the message `sent` with `attempts = attempts + 1`, `smsc`, `date_sent = now`, `date_updated = now`,
    /// error cleared — only where its current status may become Sent (a canceled or already
    /// delivered message keeps its status, but its parts are still recorded so receipts find it).
    /// Returns the SIDs whose status changed to sent.
    ///
    /// The SIDs come back in the order of `sent`. A message already `sent` is updated (attempts,
    /// SMSC, `date_sent`) but not returned: its status did not change. A message given twice
    /// counts once, as its last entry says; an id given twice names the last part it was given
    /// for. A message deleted since (its parts would have no message) gets no parts and is not
    /// an error.
    ///
    /// Statements, per chunk of 8,000 messages or ids: one `DELETE` of the messages' earlier
    /// parts, one `DELETE` of the recycled ids per SMSC, one `INSERT` of the parts per 1,999
    /// parts (on PostgreSQL one in all, from a JSON parameter), one `UPDATE ... RETURNING` of the
    /// messages per SMSC, and a second `UPDATE` only for those the first did not change
    /// (canceled, already sent: rare).
    pub async fn record_sent(
        &self,
        sent: &[SentMessage],
        now: DateTime<Utc>,
    ) -> Result<Vec<MessageSid>, StoreError> {
        self.record_sent_in_chunks(sent, now, MAX_BINDS).await
    }

    async fn record_sent_in_chunks(
        &self,
        sent: &[SentMessage],
        now: DateTime<Utc>,
        max_binds: usize,
    ) -> Result<Vec<MessageSid>, StoreError> {
        let mut tx = self.writer().begin().await?;
        let changed = Self::record_sent_on(&mut tx, sent, now, max_binds).await?;
        tx.commit().await?;
        Ok(changed)
    }

    async fn record_sent_on<'a>(
        tx: &mut AnyConnection,
        sent: &'a [SentMessage],
        now: DateTime<Utc>,
        max_binds: usize,
    ) -> Result<Vec<MessageSid>, StoreError> {
        // A message given twice: its last entry.
        let last: HashMap<MessageSid, usize> = sent.iter().enumerate().map(|(i, s)| (s.sid, i)).collect();
        let sent: Vec<&SentMessage> =
            sent.iter().enumerate().filter(|&(i, s)| last[&s.sid] == i).map(|(_, s)| s).collect();
        if sent.is_empty() {
            return Ok(Vec::new());
        }
        // (message, part index, smsc, id); an id given twice names its last part only, as two
        // record_part calls would leave it.
        let mut parts: Vec<Option<(&str, i64, &str, &str)>> = Vec::new();
        let mut part_by_id: HashMap<(&str, &str), usize> = HashMap::new();
        for s in &sent {
            for (index, id) in s.message_ids.iter().enumerate() {
                if let Some(earlier) = part_by_id.insert((s.smsc.as_str(), id.as_str()), parts.len()) {
                    parts[earlier] = None;
                }
                let index = i64::try_from(index).unwrap_or(i64::MAX);
                parts.push(Some((s.sid.as_str(), index, s.smsc.as_str(), id.as_str())));
            }
        }
        let parts: Vec<_> = parts.into_iter().flatten().collect();
        let now = micros(now);
        let binds = Binds::of(tx);

        // The parts of earlier attempts.
        let mut sids: Vec<&str> = sent.iter().map(|s| s.sid.as_str()).collect();
        sids.sort_unstable();
        let per = room(max_binds, 0);
        for chunk in sids.chunks(per) {
            let mut q = Stmt::new(binds, "DELETE FROM message_parts WHERE message_sid IN ");
            q.list(chunk, per);
            q.execute(&mut *tx).await?;
        }

        // Ids the SMSC hands out again: they name the new parts only.
        let mut ids_by_smsc: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for &(_, _, smsc, id) in &parts {
            ids_by_smsc.entry(smsc).or_default().push(id);
        }
        let per = room(max_binds, 1);
        for (&smsc, ids) in &mut ids_by_smsc {
            ids.sort_unstable();
            for chunk in ids.chunks(per) {
                let mut q = Stmt::new(binds, "DELETE FROM message_parts WHERE smsc = ");
                q.bind(smsc).push(" AND smsc_message_id IN ").list(chunk, per);
                q.execute(&mut *tx).await?;
            }
        }

        // The new parts, of the messages that still exist: a message deleted since it was
        // handed to the SMSC would fail the whole batch on the foreign key.
        if binds == Binds::Numbered && !parts.is_empty() {
            // PostgreSQL: one JSON parameter, as in `create_messages_on`.
            let json = serde_json::to_string(&parts).unwrap_or_else(|_| "[]".to_owned());
            let mut q = Stmt::new(
                binds,
                "INSERT INTO message_parts (message_sid, part_index, smsc, smsc_message_id, status, \
                 date_created, date_updated) SELECT v->>0, (v->>1)::bigint, v->>2, v->>3, 'sent', ",
            );
            q.bind(now).push(", ").bind(now).push(" FROM json_array_elements(").bind(json);
            q.push("::json) AS v WHERE EXISTS (SELECT 1 FROM messages m WHERE m.sid = v->>0)");
            q.execute(&mut *tx).await?;
        }
        for chunk in parts.chunks((room(max_binds, 2) / 4).max(1)).filter(|_| binds == Binds::InOrder) {
            let mut q = Stmt::one_off(
                binds,
                "INSERT INTO message_parts (message_sid, part_index, smsc, smsc_message_id, status, \
                 date_created, date_updated) SELECT column1, column2, column3, column4, 'sent', ",
            );
            q.bind(now).push(", ").bind(now).push(" FROM (VALUES ");
            for (i, &(sid, index, smsc, id)) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.push("(").bind(sid).push(", ").bind(index).push(", ").bind(smsc).push(", ").bind(id).push(")");
            }
            q.push(") AS v WHERE EXISTS (SELECT 1 FROM messages m WHERE m.sid = v.column1)");
            q.execute(&mut *tx).await?;
        }

        // The messages, where their status may become sent: one statement for those that change
        // status (their SIDs come back), one for those already sent (rare: sent twice).
        // Grouped by SMSC and price (a few prices: destination prefixes times segment counts).
        let mut sids_by_smsc: BTreeMap<(&str, Option<&str>), Vec<&str>> = BTreeMap::new();
        for s in &sent {
            sids_by_smsc.entry((s.smsc.as_str(), s.price.as_deref())).or_default().push(s.sid.as_str());
        }
        let update = |(smsc, price): (&'a str, Option<&'a str>), chunk: &[&'a str], per: usize, condition: &str| {
            let mut q = Stmt::new(
                binds,
                "UPDATE messages SET status = 'sent', attempts = attempts + 1, error_code = NULL, \
                 error_message = NULL, smsc = ",
            );
            q.bind(smsc).push(", price = COALESCE(").bind(price).push(", price)");
            q.push(", date_sent = ").bind(now).push(", date_updated = ").bind(now);
            q.push(" WHERE sid IN ").list(chunk, per).push(" AND ").push(condition);
            q
        };
        let to_sent = format!("status IN ({}) RETURNING sid", statuses_changing_to(MessageStatus::Sent));
        let mut changed: HashSet<&str> = HashSet::with_capacity(sent.len());
        let per = room(max_binds, 4);
        for (&group, sids) in &mut sids_by_smsc {
            sids.sort_unstable();
            for chunk in sids.chunks(per) {
                let rows = update(group, chunk, per, &to_sent).fetch_all(&mut *tx).await?;
                let mut now_sent = HashSet::with_capacity(rows.len());
                for row in &rows {
                    let sid: &str = row.try_get("sid")?;
                    if let Ok(i) = chunk.binary_search(&sid) {
                        now_sent.insert(chunk[i]);
                    }
                }
                let rest: Vec<&str> = chunk.iter().copied().filter(|sid| !now_sent.contains(sid)).collect();
                if !rest.is_empty() {
                    update(group, &rest, per, "status = 'sent'").execute(&mut *tx).await?;
                }
                changed.extend(now_sent);
            }
        }
        Ok(sent.iter().filter(|s| changed.contains(s.sid.as_str())).map(|s| s.sid).collect())
    }

    /// Messages whose attempt is to be retried later: `queued` ones become `sending`; every one
    /// gets `attempts + 1`. Others (final, sending) keep their status. One transaction.
    ///
    /// `date_updated` becomes `now` where the status changes. A SID given twice counts once; an
    /// unknown one is skipped. Statements: one `UPDATE` per 8,000 messages.
    pub async fn mark_retrying(&self, sids: &[MessageSid], now: DateTime<Utc>) -> Result<(), StoreError> {
        self.mark_retrying_in_chunks(sids, now, MAX_BINDS).await
    }

    async fn mark_retrying_in_chunks(
        &self,
        sids: &[MessageSid],
        now: DateTime<Utc>,
        max_binds: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        Self::mark_retrying_on(&mut tx, sids, now, max_binds).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn mark_retrying_on(
        tx: &mut AnyConnection,
        sids: &[MessageSid],
        now: DateTime<Utc>,
        max_binds: usize,
    ) -> Result<(), StoreError> {
        let mut sids: Vec<&str> = sids.iter().map(|s| s.as_str()).collect();
        sids.sort_unstable();
        sids.dedup();
        if sids.is_empty() {
            return Ok(());
        }
        let binds = Binds::of(tx);
        let per = room(max_binds, 1);
        for chunk in sids.chunks(per) {
            let mut q = Stmt::new(
                binds,
                "UPDATE messages SET status = CASE WHEN status = 'queued' THEN 'sending' ELSE status END, \
                 date_updated = CASE WHEN status = 'queued' THEN ",
            );
            q.bind(micros(now)).push(" ELSE date_updated END, attempts = attempts + 1 WHERE sid IN ");
            q.list(chunk, per);
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Applies delivery receipts in one transaction; the result has one outcome per input, in
    /// order. Per receipt: finds the part by (smsc, smsc_message_id) (Unknown if none); sets the part
    /// status where `may_become` allows (repeats and late receipts change nothing); then, for every
    /// message whose parts changed, counts its parts (total = max(num_segments, parts recorded)):
    /// any part undelivered/failed -> the message becomes Undelivered (error_code from the receipt
    /// that failed it), all parts delivered -> Delivered (error cleared); set only where the message's
    /// status may become that (so a final message is never overwritten); only receipts whose batch
    /// actually changed the message's status carry `message: Some(..)` (the receipt that completed it;
    /// if several receipts of one message are in one batch, put it on the last of them).
    /// The same (smsc, id) twice in one batch: the second is applied after the first (it is a
    /// repeat, so normally `changed: false`).
    ///
    /// Precisely: `message` is on the last receipt of the batch that changed one of the message's
    /// parts (a repeat never carries it), and an Undelivered message's `error_code` is that of
    /// the first receipt of the batch that failed one of its parts.
    ///
    /// As in [`Store::set_part_status`], parts are read before they are updated, and only the
    /// parts read are updated: a part recorded meanwhile (its `record_sent` racing the receipt
    /// on PostgreSQL) is `Unknown` to this batch, to be tried again, never found and left
    /// unchanged. On PostgreSQL the messages whose parts changed are locked before their parts
    /// are counted, so that two batches completing the parts of one message at once cannot each
    /// count the other's part as still on its way (SQLite has one writer: batches never overlap).
    ///
    /// Statements, per chunk of 8,000 ids or messages: one `SELECT` of the parts per SMSC; one
    /// `UPDATE ... RETURNING` of the parts per SMSC and receipt status (again for the second
    /// receipt of one part in the batch, if any); on PostgreSQL one `SELECT ... FOR NO KEY
    /// UPDATE` of the messages; one `SELECT ... GROUP BY` counting their parts; one `UPDATE ...
    /// RETURNING` of the delivered messages and one of the undelivered per error code; one
    /// `SELECT` of the rows of the changed messages that have a `status_callback`, if any.
    pub async fn apply_receipts(
        &self,
        receipts: &[ReceiptUpdate],
        now: DateTime<Utc>,
    ) -> Result<Vec<ReceiptOutcome>, StoreError> {
        self.apply_receipts_in_chunks(receipts, now, MAX_BINDS).await
    }

    async fn apply_receipts_in_chunks(
        &self,
        receipts: &[ReceiptUpdate],
        now: DateTime<Utc>,
        max_binds: usize,
    ) -> Result<Vec<ReceiptOutcome>, StoreError> {
        let mut tx = self.writer().begin().await?;
        let outcomes = Self::apply_receipts_on(&mut tx, receipts, now, max_binds).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    async fn apply_receipts_on(
        tx: &mut AnyConnection,
        receipts: &[ReceiptUpdate],
        now: DateTime<Utc>,
        max_binds: usize,
    ) -> Result<Vec<ReceiptOutcome>, StoreError> {
        if receipts.is_empty() {
            return Ok(Vec::new());
        }
        let now = micros(now);
        fn key(r: &ReceiptUpdate) -> (&str, &str) {
            (r.smsc.as_str(), r.smsc_message_id.as_str())
        }
        // The k-th receipt for one part is applied in round k, after the earlier ones.
        let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(receipts.len());
        let round: Vec<usize> = receipts
            .iter()
            .map(|r| {
                let n = seen.entry(key(r)).or_insert(0);
                *n += 1;
                *n - 1
            })
            .collect();
        let rounds = round.iter().max().map_or(0, |&k| k + 1);
        let binds = Binds::of(tx);

        // The parts, read before any is updated.
        let mut ids_by_smsc: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for &(smsc, id) in seen.keys() {
            ids_by_smsc.entry(smsc).or_default().push(id);
        }
        let mut found: HashMap<(&str, &str), MessageSid> = HashMap::with_capacity(seen.len());
        let per = room(max_binds, 1);
        for (&smsc, ids) in &mut ids_by_smsc {
            ids.sort_unstable();
            for chunk in ids.chunks(per) {
                let mut q = Stmt::new(binds, "SELECT message_sid, smsc_message_id FROM message_parts WHERE smsc = ");
                q.bind(smsc).push(" AND smsc_message_id IN ").list(chunk, per);
                for row in q.fetch_all(&mut *tx).await? {
                    let id: &str = row.try_get("smsc_message_id")?;
                    if let Ok(i) = chunk.binary_search(&id) {
                        found.insert((smsc, chunk[i]), sid_col(&row, "message_sid")?);
                    }
                }
            }
        }

        // The parts' statuses, the parts read only. `changed[i]`: the message whose part receipt
        // i changed, as the update found it.
        let mut changed: Vec<Option<MessageSid>> = vec![None; receipts.len()];
        let per = room(max_binds, 3);
        for k in 0..rounds {
            // (smsc, status) -> (id, receipt)
            let mut groups: BTreeMap<(&str, &str), Vec<(&str, usize)>> = BTreeMap::new();
            for (i, r) in receipts.iter().enumerate() {
                if round[i] == k && found.contains_key(&key(r)) {
                    let group = groups.entry((r.smsc.as_str(), r.status.as_str())).or_default();
                    group.push((r.smsc_message_id.as_str(), i));
                }
            }
            for ((smsc, _), mut items) in groups {
                let status = receipts[items[0].1].status;
                // One receipt per id in a round: sorted by id, and found by it below.
                items.sort_unstable();
                let tail = format!(
                    " AND status IN ({}) RETURNING message_sid, smsc_message_id",
                    statuses_changing_to(status)
                );
                for chunk in items.chunks(per) {
                    let ids: Vec<&str> = chunk.iter().map(|&(id, _)| id).collect();
                    let mut q = Stmt::new(binds, "UPDATE message_parts SET status = ");
                    q.bind(status.as_str()).push(", date_updated = ").bind(now);
                    q.push(" WHERE smsc = ").bind(smsc).push(" AND smsc_message_id IN ").list(&ids, per).push(&tail);
                    for row in q.fetch_all(&mut *tx).await? {
                        let id: &str = row.try_get("smsc_message_id")?;
                        if let Ok(j) = ids.binary_search(&id) {
                            changed[chunk[j].1] = Some(sid_col(&row, "message_sid")?);
                        }
                    }
                }
            }
        }

        // The messages whose parts changed: what their parts say now, and their statuses.
        let mut touched: Vec<MessageSid> = changed.iter().flatten().copied().collect();
        touched.sort_unstable();
        touched.dedup();
        let mut changes: HashMap<MessageSid, (MessageStatus, Option<u32>)> = HashMap::new();
        let mut records: HashMap<MessageSid, MessageRecord> = HashMap::new();
        if !touched.is_empty() {
            // The error of a message that becomes undelivered: the first receipt that failed a part.
            let mut failed_by: HashMap<MessageSid, Option<u32>> = HashMap::new();
            for (r, sid) in receipts.iter().zip(&changed) {
                if let (Some(sid), MessageStatus::Undelivered | MessageStatus::Failed) = (sid, r.status) {
                    failed_by.entry(*sid).or_insert(r.error_code);
                }
            }
            let touched_ids: Vec<&str> = touched.iter().map(|s| s.as_str()).collect();
            let per = room(max_binds, 0);
            if tx.backend_name() == "PostgreSQL" {
                // Read committed: a batch that completed another part of one of these messages
                // and committed while this one waited for the lock is seen by the count below.
                for chunk in touched_ids.chunks(per) {
                    let mut q = Stmt::new(binds, "SELECT sid FROM messages WHERE sid IN ");
                    q.list(chunk, per).push(" ORDER BY sid FOR NO KEY UPDATE");
                    q.fetch_all(&mut *tx).await?;
                }
            }
            let mut delivered: Vec<&str> = Vec::new();
            let mut undelivered: BTreeMap<Option<u32>, Vec<&str>> = BTreeMap::new();
            for chunk in touched_ids.chunks(per) {
                let mut q = Stmt::new(
                    binds,
                    "SELECT p.message_sid, m.num_segments, COUNT(*) AS recorded, \
                     SUM(CASE WHEN p.status = 'delivered' THEN 1 ELSE 0 END) AS delivered, \
                     SUM(CASE WHEN p.status IN ('undelivered', 'failed') THEN 1 ELSE 0 END) AS failed \
                     FROM message_parts p JOIN messages m ON m.sid = p.message_sid \
                     WHERE p.message_sid IN ",
                );
                q.list(chunk, per).push(" GROUP BY p.message_sid, m.num_segments");
                for row in q.fetch_all(&mut *tx).await? {
                    let sid: &str = row.try_get("message_sid")?;
                    let Ok(j) = touched_ids.binary_search(&sid) else { continue };
                    let total = u32_col(&row, "num_segments")?.max(u32_col(&row, "recorded")?);
                    if u32_col(&row, "failed")? > 0 {
                        let code = failed_by.get(&touched[j]).copied().flatten();
                        undelivered.entry(code).or_default().push(touched_ids[j]);
                    } else if u32_col(&row, "delivered")? >= total {
                        delivered.push(touched_ids[j]);
                    }
                }
            }

            // Where the status may become that; the changed ones come back, with whether they
            // have a status callback (whose row is read below).
            let mut with_callback: Vec<MessageSid> = Vec::new();
            let mut set = |rows: Vec<DbRow>, status: MessageStatus, code: Option<u32>| -> Result<(), StoreError> {
                for row in rows {
                    let sid: MessageSid = sid_col(&row, "sid")?;
                    if row.try_get::<Option<&str>, _>("status_callback")?.is_some() {
                        with_callback.push(sid);
                    }
                    changes.insert(sid, (status, code));
                }
                Ok(())
            };
            let per = room(max_binds, 1);
            let tail = format!(
                " AND status IN ({}) RETURNING sid, status_callback",
                statuses_changing_to(MessageStatus::Delivered)
            );
            for chunk in delivered.chunks(per) {
                let mut q = Stmt::new(
                    binds,
                    "UPDATE messages SET status = 'delivered', error_code = NULL, error_message = NULL, \
                     date_updated = ",
                );
                q.bind(now).push(" WHERE sid IN ").list(chunk, per).push(&tail);
                set(q.fetch_all(&mut *tx).await?, MessageStatus::Delivered, None)?;
            }
            let per = room(max_binds, 2);
            let tail = format!(
                " AND status IN ({}) RETURNING sid, status_callback",
                statuses_changing_to(MessageStatus::Undelivered)
            );
            for (&code, sids) in &undelivered {
                for chunk in sids.chunks(per) {
                    let mut q = Stmt::new(binds, "UPDATE messages SET status = 'undelivered', error_code = ");
                    q.bind(code.map(i64::from)).push(", error_message = NULL, date_updated = ").bind(now);
                    q.push(" WHERE sid IN ").list(chunk, per).push(&tail);
                    set(q.fetch_all(&mut *tx).await?, MessageStatus::Undelivered, code)?;
                }
            }

            // The rows the caller's status callbacks are made of, after the change.
            with_callback.sort_unstable();
            let ids: Vec<&str> = with_callback.iter().map(|s| s.as_str()).collect();
            let per = room(max_binds, 0);
            for chunk in ids.chunks(per) {
                let mut q = Stmt::new(binds, &format!("{COLUMNS} WHERE sid IN "));
                q.list(chunk, per);
                for row in q.fetch_all(&mut *tx).await? {
                    let rec = decode(&row)?;
                    records.insert(rec.sid, rec);
                }
            }
        }

        // A changed message is told on the last receipt of the batch that changed one of its parts.
        let mut last_of: HashMap<MessageSid, usize> = HashMap::with_capacity(changes.len());
        for (i, sid) in changed.iter().enumerate() {
            if let Some(sid) = sid.filter(|sid| changes.contains_key(sid)) {
                last_of.insert(sid, i);
            }
        }
        let mut outcomes = Vec::with_capacity(receipts.len());
        for (i, r) in receipts.iter().enumerate() {
            let Some(&read) = found.get(&key(r)) else {
                outcomes.push(ReceiptOutcome::Unknown);
                continue;
            };
            let message_sid = changed[i].unwrap_or(read);
            let message = if last_of.get(&message_sid) == Some(&i) {
                changes.remove(&message_sid).map(|(status, error_code)| MessageChange {
                    status,
                    error_code,
                    record: records.remove(&message_sid),
                })
            } else {
                None
            };
            outcomes.push(ReceiptOutcome::Applied { message_sid, changed: changed[i].is_some(), message });
        }
        Ok(outcomes)
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

    fn sent(m: &MessageRecord, smsc: &str, ids: &[&str]) -> SentMessage {
        SentMessage { sid: m.sid, smsc: smsc.into(), message_ids: ids.iter().map(|&id| id.into()).collect(), price: None }
    }

    #[tokio::test]
    async fn one_batch_creates_records_and_delivers_in_one_transaction() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let mut old = message(&a, "+1");
        old.status_callback = None;
        db.store.create_message(&old).await.unwrap();
        let (new, retried) = (message(&a, "+2"), message(&a, "+3"));
        db.store.create_message(&retried).await.unwrap();
        let at = now();
        let sent = [SentMessage {
            sid: old.sid,
            smsc: "smsc-a".into(),
            message_ids: vec!["b-1".into()],
            price: Some("-0.0079".into()),
        }];
        let writes = MessageWrites {
            create: std::slice::from_ref(&new),
            sent: &sent,
            retrying: &[retried.sid],
            // The receipt of a submit recorded in the same batch finds its part.
            receipts: &[delivered("b-1"), delivered("nobody")],
            now: at,
        };
        let done = db.store.write_messages(&writes).await.unwrap();
        assert_eq!(done.sent, vec![old.sid]);
        assert!(matches!(
            &done.receipts[0],
            ReceiptOutcome::Applied { message_sid, changed: true, message: Some(MessageChange { status: MessageStatus::Delivered, record: None, .. }) }
                if *message_sid == old.sid
        ), "{:?}", done.receipts);
        assert_eq!(done.receipts[1], ReceiptOutcome::Unknown);
        let get = |sid| {
            let store = db.store.clone();
            async move { store.message_by_sid(&sid).await.unwrap().unwrap() }
        };
        assert_eq!(get(new.sid).await.status, MessageStatus::Queued);
        let old = get(old.sid).await;
        assert_eq!((old.status, old.attempts, old.date_sent.is_some()), (MessageStatus::Delivered, 1, true));
        assert_eq!(old.price.as_deref(), Some("-0.0079"), "priced when sent");
        assert_eq!(get(retried.sid).await.status, MessageStatus::Sending);

        // A failing batch writes nothing of it: the new message is not there.
        let again = [new.clone()];
        let failing = MessageWrites { create: &again, sent: &[], retrying: &[], receipts: &[], now: at };
        assert!(db.store.write_messages(&failing).await.is_err(), "the same SID twice");
        db.store.analyze_messages().await.unwrap();
    }

    fn receipt(smsc: &str, id: &str, status: MessageStatus, error_code: Option<u32>) -> ReceiptUpdate {
        ReceiptUpdate { smsc: smsc.into(), smsc_message_id: id.into(), status, error_code }
    }

    fn delivered(id: &str) -> ReceiptUpdate {
        receipt("smsc-a", id, MessageStatus::Delivered, None)
    }

    fn applied(sid: MessageSid, changed: bool) -> ReceiptOutcome {
        ReceiptOutcome::Applied { message_sid: sid, changed, message: None }
    }

    /// The message's status after the receipts, if one of them changed it, and on which receipts.
    fn changes(outcomes: &[ReceiptOutcome]) -> Vec<(usize, MessageStatus, Option<u32>)> {
        outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                ReceiptOutcome::Applied { message: Some(m), .. } => Some((i, m.status, m.error_code)),
                _ => None,
            })
            .collect()
    }

    /// A message, `sent` through `smsc-a` in `parts` parts with ids `{prefix}-{i}`.
    async fn sent_message(db: &TempDb, a: &AccountSid, prefix: &str, parts: u32) -> MessageRecord {
        let mut m = message(a, "+1");
        m.num_segments = parts;
        db.store.create_messages(std::slice::from_ref(&m)).await.unwrap();
        let ids: Vec<String> = (0..parts).map(|i| format!("{prefix}-{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(db.store.record_sent(&[sent(&m, "smsc-a", &ids)], now()).await.unwrap(), vec![m.sid]);
        m
    }

    async fn status_of(db: &TempDb, sid: &MessageSid) -> MessageStatus {
        db.store.message_by_sid(sid).await.unwrap().unwrap().status
    }

    #[tokio::test]
    async fn messages_are_created_in_batches_all_or_none() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        db.store.create_messages(&[]).await.unwrap();
        let mut batch: Vec<MessageRecord> = (0..5).map(|i| message(&a, &format!("+{i}"))).collect();
        batch[1].status = MessageStatus::Sent;
        batch[1].error_code = Some(30003);
        batch[1].date_sent = Some(now());
        batch[2].status_callback = None;
        batch[3].application_sid = Some(model::ApplicationSid::generate());
        db.store.create_messages(&batch).await.unwrap();
        for m in &batch {
            assert_eq!(db.store.message(&a, &m.sid).await.unwrap().as_ref(), Some(m));
        }

        // One message of an account that does not exist: none of the batch is written.
        let good = message(&a, "+9");
        let orphan = message(&AccountSid::generate(), "+9");
        assert!(db.store.create_messages(&[good.clone(), orphan]).await.is_err());
        assert_eq!(db.store.message(&a, &good.sid).await.unwrap(), None);
    }

    #[tokio::test]
    async fn record_sent_sets_the_messages_sent_and_records_their_parts() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        assert!(db.store.record_sent(&[], now()).await.unwrap().is_empty());
        let mut long = message(&a, "+1");
        long.num_segments = 2;
        let mut retried = message(&a, "+2");
        retried.status = MessageStatus::Sending;
        retried.attempts = 1;
        retried.error_code = Some(30008);
        retried.error_message = Some("throttled".into());
        let mut canceled = message(&a, "+3");
        canceled.status = MessageStatus::Canceled;
        db.store.create_messages(&[long.clone(), retried.clone(), canceled.clone()]).await.unwrap();

        let at = now() - Duration::seconds(5);
        let batch = [
            sent(&canceled, "smsc-a", &["c-0"]),
            sent(&long, "smsc-a", &["a-0", "a-1"]),
            sent(&retried, "smsc-b", &["b-0"]),
        ];
        assert_eq!(db.store.record_sent(&batch, at).await.unwrap(), vec![long.sid, retried.sid], "in input order");
        let row = db.store.message_by_sid(&long.sid).await.unwrap().unwrap();
        assert_eq!(
            (row.status, row.attempts, row.smsc.as_deref(), row.date_sent, row.date_updated),
            (MessageStatus::Sent, 1, Some("smsc-a"), Some(at), at)
        );
        let row = db.store.message_by_sid(&retried.sid).await.unwrap().unwrap();
        assert_eq!((row.status, row.attempts, row.smsc.as_deref()), (MessageStatus::Sent, 2, Some("smsc-b")));
        assert_eq!((row.error_code, row.error_message), (None, None), "error cleared");
        assert_eq!(db.store.message_by_part("smsc-a", "a-0").await.unwrap(), Some((long.sid, 0, 2)));
        assert_eq!(db.store.message_by_part("smsc-a", "a-1").await.unwrap(), Some((long.sid, 1, 2)));
        assert_eq!(db.store.message_by_part("smsc-b", "b-0").await.unwrap(), Some((retried.sid, 0, 1)));
        // Canceled stays canceled, untouched, but its part is recorded for its receipt.
        let row = db.store.message_by_sid(&canceled.sid).await.unwrap().unwrap();
        assert_eq!(row, canceled);
        assert_eq!(db.store.message_by_part("smsc-a", "c-0").await.unwrap(), Some((canceled.sid, 0, 1)));

        // Sent again (another attempt): the new parts replace the old ones; the status did not
        // change, so the SID is not returned, but the attempt is counted.
        let later = now();
        assert!(db.store.record_sent(&[sent(&long, "smsc-b", &["n-0"])], later).await.unwrap().is_empty());
        assert_eq!(db.store.message_by_part("smsc-a", "a-0").await.unwrap(), None);
        assert_eq!(db.store.message_by_part("smsc-a", "a-1").await.unwrap(), None);
        assert_eq!(db.store.message_by_part("smsc-b", "n-0").await.unwrap(), Some((long.sid, 0, 2)));
        let row = db.store.message_by_sid(&long.sid).await.unwrap().unwrap();
        assert_eq!((row.attempts, row.smsc.as_deref(), row.date_sent), (2, Some("smsc-b"), Some(later)));

        // An id the SMSC recycles moves to the new part; one given twice in a batch names its last
        // part; a message given twice counts once with its last parts; a deleted message is skipped.
        let fresh = message(&a, "+4");
        let twice = message(&a, "+5");
        let gone = message(&a, "+6");
        db.store.create_messages(&[fresh.clone(), twice.clone(), gone.clone()]).await.unwrap();
        assert!(db.store.delete_message(&a, &gone.sid).await.unwrap());
        let batch = [
            sent(&twice, "smsc-a", &["t-0"]),
            sent(&gone, "smsc-a", &["g-0"]),
            sent(&fresh, "smsc-b", &["b-0", "dup", "dup"]),
            sent(&twice, "smsc-a", &["t-1", "t-2"]),
        ];
        assert_eq!(db.store.record_sent(&batch, now()).await.unwrap(), vec![fresh.sid, twice.sid]);
        // Of the three ids given, one went: two parts.
        assert_eq!(db.store.message_by_part("smsc-b", "b-0").await.unwrap(), Some((fresh.sid, 0, 2)));
        assert_eq!(db.store.message_by_part("smsc-b", "dup").await.unwrap(), Some((fresh.sid, 2, 2)));
        assert_eq!(db.store.message_by_part("smsc-a", "t-0").await.unwrap(), None);
        assert_eq!(db.store.message_by_part("smsc-a", "t-2").await.unwrap(), Some((twice.sid, 1, 2)));
        assert_eq!(db.store.message_by_part("smsc-a", "g-0").await.unwrap(), None);
        assert_eq!(db.store.message_by_sid(&twice.sid).await.unwrap().unwrap().attempts, 1);
        // The message that had b-0 before keeps its status; it has no part left.
        assert_eq!(status_of(&db, &retried.sid).await, MessageStatus::Sent);
    }

    #[tokio::test]
    async fn mark_retrying_moves_queued_to_sending_and_counts_every_attempt() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let queued = message(&a, "+1");
        let mut sending = message(&a, "+2");
        sending.status = MessageStatus::Sending;
        sending.attempts = 3;
        let mut done = message(&a, "+3");
        done.status = MessageStatus::Delivered;
        let untouched = message(&a, "+4");
        db.store.create_messages(&[queued.clone(), sending.clone(), done.clone(), untouched.clone()]).await.unwrap();
        db.store.mark_retrying(&[], now()).await.unwrap();
        let at = now() + Duration::seconds(1);
        let sids = [queued.sid, sending.sid, done.sid, queued.sid, MessageSid::generate()];
        db.store.mark_retrying(&sids, at).await.unwrap();
        let row = |sid| {
            let store = db.store.clone();
            async move {
                let m = store.message_by_sid(&sid).await.unwrap().unwrap();
                (m.status, m.attempts, m.date_updated)
            }
        };
        assert_eq!(row(queued.sid).await, (MessageStatus::Sending, 1, at), "a SID given twice counts once");
        assert_eq!(row(sending.sid).await, (MessageStatus::Sending, 4, sending.date_updated));
        assert_eq!(row(done.sid).await, (MessageStatus::Delivered, 1, done.date_updated));
        assert_eq!(row(untouched.sid).await, (MessageStatus::Queued, 0, untouched.date_updated));
    }

    #[tokio::test]
    async fn a_receipt_delivers_a_single_part_message_with_its_row_when_it_has_a_callback() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let with = sent_message(&db, &a, "w", 1).await;
        let mut without = message(&a, "+1");
        without.status_callback = None;
        db.store.create_messages(std::slice::from_ref(&without)).await.unwrap();
        db.store.record_sent(&[sent(&without, "smsc-a", &["n-0"])], now()).await.unwrap();

        let at = now() + Duration::seconds(2);
        let out = db.store.apply_receipts(&[delivered("w-0"), delivered("n-0"), delivered("nope")], at).await.unwrap();
        let row = db.store.message_by_sid(&with.sid).await.unwrap().unwrap();
        assert_eq!((row.status, row.error_code, row.date_updated), (MessageStatus::Delivered, None, at));
        let change = |record| Some(MessageChange { status: MessageStatus::Delivered, error_code: None, record });
        assert_eq!(
            out,
            vec![
                ReceiptOutcome::Applied { message_sid: with.sid, changed: true, message: change(Some(row)) },
                ReceiptOutcome::Applied { message_sid: without.sid, changed: true, message: change(None) },
                ReceiptOutcome::Unknown,
            ]
        );
        assert_eq!(status_of(&db, &without.sid).await, MessageStatus::Delivered);

        // Repeats, and a late receipt that contradicts the first, change nothing.
        let late = receipt("smsc-a", "n-0", MessageStatus::Undelivered, Some(30003));
        let out = db.store.apply_receipts(&[delivered("w-0"), late], now()).await.unwrap();
        assert_eq!(out, vec![applied(with.sid, false), applied(without.sid, false)]);
        assert_eq!(status_of(&db, &without.sid).await, MessageStatus::Delivered);
        assert!(db.store.apply_receipts(&[], now()).await.unwrap().is_empty());
        // Ids are per SMSC.
        assert_eq!(
            db.store.apply_receipts(&[receipt("smsc-b", "w-0", MessageStatus::Delivered, None)], now()).await.unwrap(),
            vec![ReceiptOutcome::Unknown]
        );
    }

    #[tokio::test]
    async fn a_multi_part_message_is_delivered_once_every_part_is() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        // Across batches.
        let m = sent_message(&db, &a, "m", 3).await;
        let out = db.store.apply_receipts(&[delivered("m-0"), delivered("m-2")], now()).await.unwrap();
        assert_eq!(out, vec![applied(m.sid, true), applied(m.sid, true)]);
        assert_eq!(status_of(&db, &m.sid).await, MessageStatus::Sent);
        let out = db.store.apply_receipts(&[delivered("m-1")], now()).await.unwrap();
        assert_eq!(changes(&out), vec![(0, MessageStatus::Delivered, None)]);
        assert_eq!(status_of(&db, &m.sid).await, MessageStatus::Delivered);

        // Within one batch, among other messages' receipts: told once, on its last receipt.
        let n = sent_message(&db, &a, "n", 2).await;
        let o = sent_message(&db, &a, "o", 2).await;
        let batch = [delivered("n-1"), delivered("o-0"), delivered("n-0")];
        let out = db.store.apply_receipts(&batch, now()).await.unwrap();
        assert_eq!(changes(&out), vec![(2, MessageStatus::Delivered, None)]);
        let ReceiptOutcome::Applied { message: Some(change), .. } = &out[2] else { unreachable!() };
        assert_eq!(change.record.as_ref().map(|r| (r.sid, r.status)), Some((n.sid, MessageStatus::Delivered)));
        assert_eq!(status_of(&db, &o.sid).await, MessageStatus::Sent);

        // Fewer parts recorded than the message has segments: not all of it is delivered yet.
        let mut short = message(&a, "+1");
        short.num_segments = 2;
        db.store.create_messages(std::slice::from_ref(&short)).await.unwrap();
        db.store.record_sent(&[sent(&short, "smsc-a", &["s-0"])], now()).await.unwrap();
        let out = db.store.apply_receipts(&[delivered("s-0")], now()).await.unwrap();
        assert_eq!(out, vec![applied(short.sid, true)]);
        assert_eq!(status_of(&db, &short.sid).await, MessageStatus::Sent);
    }

    #[tokio::test]
    async fn one_failed_part_makes_the_message_undelivered_with_that_receipts_error() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let m = sent_message(&db, &a, "m", 3).await;
        let batch = [
            delivered("m-0"),
            receipt("smsc-a", "m-1", MessageStatus::Undelivered, Some(30003)),
            receipt("smsc-a", "m-2", MessageStatus::Failed, Some(30005)),
        ];
        let out = db.store.apply_receipts(&batch, now()).await.unwrap();
        assert_eq!(changes(&out), vec![(2, MessageStatus::Undelivered, Some(30003))]);
        let row = db.store.message_by_sid(&m.sid).await.unwrap().unwrap();
        assert_eq!((row.status, row.error_code), (MessageStatus::Undelivered, Some(30003)));
        let ReceiptOutcome::Applied { message: Some(change), .. } = &out[2] else { unreachable!() };
        assert_eq!(change.record.as_ref(), Some(&row));

        // Across batches: the part that fails decides, whatever came before.
        let n = sent_message(&db, &a, "n", 2).await;
        db.store.apply_receipts(&[delivered("n-0")], now()).await.unwrap();
        let failed = receipt("smsc-a", "n-1", MessageStatus::Failed, None);
        let out = db.store.apply_receipts(&[failed], now()).await.unwrap();
        assert_eq!(changes(&out), vec![(0, MessageStatus::Undelivered, None)]);
        assert_eq!(status_of(&db, &n.sid).await, MessageStatus::Undelivered);
    }

    #[tokio::test]
    async fn receipts_never_overwrite_a_final_message() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        // Canceled while its submit was on its way: the part is recorded, the status stays.
        let mut canceled = message(&a, "+1");
        canceled.status = MessageStatus::Canceled;
        let failed = message(&a, "+2");
        db.store.create_messages(&[canceled.clone(), failed.clone()]).await.unwrap();
        db.store
            .record_sent(&[sent(&canceled, "smsc-a", &["c-0"]), sent(&failed, "smsc-a", &["f-0", "f-1"])], now())
            .await
            .unwrap();
        assert!(db
            .store
            .set_message_status(&failed.sid, MessageStatus::Failed, Some(30008), None, None)
            .await
            .unwrap());
        let out = db
            .store
            .apply_receipts(&[delivered("c-0"), delivered("f-0"), delivered("f-1")], now())
            .await
            .unwrap();
        assert_eq!(out, vec![applied(canceled.sid, true), applied(failed.sid, true), applied(failed.sid, true)]);
        assert_eq!(status_of(&db, &canceled.sid).await, MessageStatus::Canceled);
        let row = db.store.message_by_sid(&failed.sid).await.unwrap().unwrap();
        assert_eq!((row.status, row.error_code), (MessageStatus::Failed, Some(30008)));
    }

    #[tokio::test]
    async fn the_same_part_twice_in_one_batch_is_applied_in_order() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let m = sent_message(&db, &a, "m", 1).await;
        let n = sent_message(&db, &a, "n", 1).await;
        let batch = [
            receipt("smsc-a", "m-0", MessageStatus::Undelivered, Some(30003)),
            delivered("m-0"),
            delivered("n-0"),
            delivered("x"),
            receipt("smsc-a", "m-0", MessageStatus::Failed, Some(30005)),
            delivered("n-0"),
            delivered("x"),
        ];
        let out = db.store.apply_receipts(&batch, now()).await.unwrap();
        assert_eq!(
            changes(&out),
            vec![(0, MessageStatus::Undelivered, Some(30003)), (2, MessageStatus::Delivered, None)]
        );
        let unchanged: Vec<bool> = out
            .iter()
            .map(|o| matches!(o, ReceiptOutcome::Applied { changed: false, message: None, .. }))
            .collect();
        assert_eq!(unchanged, vec![false, true, false, false, true, true, false]);
        assert_eq!((out[3].clone(), out[6].clone()), (ReceiptOutcome::Unknown, ReceiptOutcome::Unknown));
        let row = db.store.message_by_sid(&m.sid).await.unwrap().unwrap();
        assert_eq!((row.status, row.error_code), (MessageStatus::Undelivered, Some(30003)));
        assert_eq!(status_of(&db, &n.sid).await, MessageStatus::Delivered);
    }

    /// The whole way of `count` messages of `parts` parts each, through the batch methods with at
    /// most `max_binds` values a statement; receipts come back part by part, in two batches.
    async fn send_and_deliver(count: usize, parts: u32, max_binds: usize) {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let batch: Vec<MessageRecord> = (0..count)
            .map(|i| {
                let mut m = message(&a, &format!("+{i}"));
                m.num_segments = parts;
                // Every other message without a callback: no row read for it.
                if i % 2 == 1 {
                    m.status_callback = None;
                }
                m
            })
            .collect();
        db.store.create_messages_in_chunks(&batch, max_binds).await.unwrap();
        let sids: Vec<MessageSid> = batch.iter().map(|m| m.sid).collect();
        db.store.mark_retrying_in_chunks(&sids, now(), max_binds).await.unwrap();
        // Half through each SMSC.
        let smsc = |i: usize| ["smsc-a", "smsc-b"][i % 2];
        let sent: Vec<SentMessage> = batch
            .iter()
            .enumerate()
            .map(|(i, m)| SentMessage {
                sid: m.sid,
                smsc: smsc(i).into(),
                message_ids: (0..parts).map(|p| format!("{i}-{p}")).collect(),
                price: None,
            })
            .collect();
        let changed = db.store.record_sent_in_chunks(&sent, now(), max_binds).await.unwrap();
        assert_eq!(changed, sids);

        // Every part but the last first (and one unknown id), then the last parts, the first of
        // them failed.
        let mut first: Vec<ReceiptUpdate> = Vec::new();
        let mut last: Vec<ReceiptUpdate> = Vec::new();
        for i in 0..count {
            for p in 0..parts {
                let r = receipt(smsc(i), &format!("{i}-{p}"), MessageStatus::Delivered, None);
                if p + 1 < parts {
                    first.push(r);
                } else {
                    last.push(r);
                }
            }
        }
        first.push(delivered("unknown"));
        last[0].status = MessageStatus::Undelivered;
        last[0].error_code = Some(30005);
        let out = db.store.apply_receipts_in_chunks(&first, now(), max_binds).await.unwrap();
        assert_eq!(out.len(), first.len());
        assert_eq!(out.last(), Some(&ReceiptOutcome::Unknown));
        let parts_only = |o: &ReceiptOutcome| matches!(o, ReceiptOutcome::Applied { changed: true, message: None, .. });
        assert!(out[..out.len() - 1].iter().all(parts_only));
        let out = db.store.apply_receipts_in_chunks(&last, now(), max_binds).await.unwrap();
        for (i, (o, m)) in out.iter().zip(&batch).enumerate() {
            let ReceiptOutcome::Applied { message_sid, changed: true, message: Some(change) } = o else {
                panic!("receipt {i}: {o:?}");
            };
            assert_eq!(*message_sid, m.sid);
            let want =
                if i == 0 { (MessageStatus::Undelivered, Some(30005)) } else { (MessageStatus::Delivered, None) };
            assert_eq!((change.status, change.error_code), want, "message {i}");
            match &change.record {
                Some(rec) => {
                    assert!(i % 2 == 0, "message {i} has no callback: no row");
                    assert_eq!((rec.sid, rec.status), (m.sid, want.0));
                }
                None => assert!(i % 2 == 1, "message {i} has a callback: its row"),
            }
        }
        let rows = db.store.list_messages(&a, &MessageFilter::default(), &PageRequest::first(1000)).await.unwrap();
        assert!(rows.items.iter().all(|m| m.attempts == 2));
    }

    #[tokio::test]
    async fn batches_larger_than_a_statement_are_chunked() {
        // 3,000 messages and 9,000 parts: the INSERTs of both and the parts' id lists go in
        // several statements at the real limit.
        send_and_deliver(3000, 3, MAX_BINDS).await;
    }

    #[tokio::test]
    async fn every_list_is_chunked_when_the_limit_is_small() {
        // Every statement of every method in several chunks, the last one padded.
        send_and_deliver(23, 3, 9).await;
        send_and_deliver(10, 1, 3).await;
    }

    #[tokio::test]
    async fn concurrent_batches_that_finish_one_message_agree_on_who_completed_it() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let mut messages = Vec::new();
        for i in 0..20 {
            messages.push(sent_message(&db, &a, &format!("m{i}"), 2).await);
        }
        // Part 0 of every message in one batch, part 1 in another, at the same time.
        let tasks: Vec<_> = (0..2)
            .map(|p| {
                let store = db.store.clone();
                let batch: Vec<ReceiptUpdate> = (0..20).map(|i| delivered(&format!("m{i}-{p}"))).collect();
                tokio::spawn(async move { store.apply_receipts(&batch, now()).await.unwrap() })
            })
            .collect();
        let mut told = 0;
        for t in tasks {
            told += changes(&t.await.unwrap()).len();
        }
        assert_eq!(told, 20, "each message told exactly once");
        for m in &messages {
            assert_eq!(status_of(&db, &m.sid).await, MessageStatus::Delivered);
        }
    }
}
