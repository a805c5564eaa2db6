//! Proxy v1 (number masking): services, the pool of numbers each one draws from, sessions, their
//! two participants, and the interactions (calls and messages) through a session.
//!
//! The one rule the store keeps for routing: a participant's (identifier, proxy number) pair is
//! unique among open sessions (a unique index over `is_open`, which closing a session clears),
//! so a call from that identifier to that number names one session. The runtime keeps the open
//! pairs in memory (`node::proxy`); [`Store::open_proxy_sessions`] and
//! [`Store::all_proxy_services`] are its system-wide reads at start, like the number routing.

use chrono::{DateTime, Duration, Utc};
use model::{
    AccountSid, PhoneNumberSid, ProxyInteractionSid, ProxyParticipantSid, ProxyServiceSid,
    ProxySessionSid,
};
use sqlx::Row;

use crate::{
    micros, opt_sid_col, opt_time_col, sid_col, time_col, u32_col, DbRow, Page, PageRequest, Sql,
    Store, StoreError,
};

/// Why a Proxy write was refused; the API answers each with Twilio's code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// Another service (or session of the service) has this unique name.
    #[error("the unique name {0:?} is already in use")]
    DuplicateUniqueName(String),
    /// The number is not one of the account's IncomingPhoneNumbers.
    #[error("phone number {0} is not a number of this account")]
    UnknownNumber(String),
    /// The number is in a service's pool already (a number serves one service).
    #[error("phone number {0} is already in a Proxy service")]
    NumberInUse(String),
    /// No pool number is free for this identifier: every one is paired with it in an open session.
    #[error("no proxy number is available for {0}: add numbers to the service's pool")]
    PoolExhausted(String),
    /// The requested proxy number is paired with this identifier in another open session.
    #[error("{identifier} already uses proxy number {proxy} in an open session")]
    PairInUse { identifier: String, proxy: String },
    /// The requested proxy identifier is not in the service's pool.
    #[error("proxy identifier {0} is not in the service's pool")]
    NotInPool(String),
    /// A session has two participants at most.
    #[error("the session already has two participants")]
    SessionFull,
    /// The identifier is a participant of this session already.
    #[error("{0} is already a participant of this session")]
    AlreadyParticipant(String),
}

impl From<ProxyError> for StoreError {
    fn from(e: ProxyError) -> StoreError {
        StoreError::Proxy(e)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyServiceRecord {
    pub sid: ProxyServiceSid,
    pub account_sid: AccountSid,
    pub unique_name: String,
    /// Seconds; 0 is no expiry.
    pub default_ttl: u32,
    pub callback_url: Option<String>,
    pub intercept_callback_url: Option<String>,
    pub out_of_session_callback_url: Option<String>,
    /// `prefer-sticky` or `avoid-sticky`.
    pub number_selection_behavior: String,
    /// `area-code`, `overlay`, `radius` or `country`: stored, numbers are not matched by place.
    pub geo_match_level: String,
    pub chat_instance_sid: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// A number of a service's pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyNumberRecord {
    /// The IncomingPhoneNumber's SID.
    pub sid: PhoneNumberSid,
    pub account_sid: AccountSid,
    pub service_sid: ProxyServiceSid,
    pub phone_number: String,
    pub friendly_name: String,
    /// Never chosen from the pool; only given as a participant's `ProxyIdentifier`.
    pub is_reserved: bool,
    /// Participants of open sessions that use it.
    pub in_use: u32,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySessionRecord {
    pub sid: ProxySessionSid,
    pub account_sid: AccountSid,
    pub service_sid: ProxyServiceSid,
    pub unique_name: Option<String>,
    /// `open`, `in-progress`, `closed`, `failed` (or `unknown`).
    pub status: String,
    pub closed_reason: Option<String>,
    /// Seconds after creation or the last interaction; 0 is no expiry.
    pub ttl: u32,
    /// `voice-and-message`, `voice-only` or `message-only`.
    pub mode: String,
    /// Set by the client; wins over `ttl`.
    pub date_expiry: Option<DateTime<Utc>>,
    pub date_started: Option<DateTime<Utc>>,
    pub date_ended: Option<DateTime<Utc>>,
    pub date_last_interaction: Option<DateTime<Utc>>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl ProxySessionRecord {
    /// Whether calls and messages go through it.
    pub fn is_open(&self) -> bool {
        is_open_status(&self.status)
    }

    /// When it closes by itself: `date_expiry` when set, else `ttl` seconds after the last
    /// interaction (or creation), as Twilio counts it; `None` never.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        if self.date_expiry.is_some() {
            return self.date_expiry;
        }
        (self.ttl > 0).then(|| {
            self.date_last_interaction.unwrap_or(self.date_created)
                + Duration::seconds(i64::from(self.ttl))
        })
    }
}

pub fn is_open_status(status: &str) -> bool {
    matches!(status, "open" | "in-progress")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyParticipantRecord {
    pub sid: ProxyParticipantSid,
    pub account_sid: AccountSid,
    pub service_sid: ProxyServiceSid,
    pub session_sid: ProxySessionSid,
    pub identifier: String,
    pub friendly_name: Option<String>,
    /// The pool number this participant calls and texts to reach the other, and that the other's
    /// calls and texts show as their caller.
    pub proxy_identifier: String,
    pub proxy_identifier_sid: PhoneNumberSid,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// Who joins a session, and with which proxy number when the client names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewParticipant {
    pub identifier: String,
    pub friendly_name: Option<String>,
    /// A pool number (its E.164 or its PN SID); `None` lets the pool choose.
    pub proxy_identifier: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyInteractionRecord {
    pub sid: ProxyInteractionSid,
    pub account_sid: AccountSid,
    pub service_sid: ProxyServiceSid,
    pub session_sid: ProxySessionSid,
    /// `voice` or `message`.
    pub kind: String,
    /// JSON text: `{"body": "..."}` for a message.
    pub data: Option<String>,
    /// The participant whose MessageInteractions made it (a message sent through the API).
    pub participant_sid: Option<ProxyParticipantSid>,
    pub inbound_participant_sid: Option<ProxyParticipantSid>,
    /// A call (`CA`) or message (`SM`) SID.
    pub inbound_resource_sid: Option<String>,
    pub inbound_resource_status: Option<String>,
    pub outbound_participant_sid: Option<ProxyParticipantSid>,
    pub outbound_resource_sid: Option<String>,
    pub outbound_resource_status: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

const SERVICE_COLUMNS: &str = "SELECT sid, account_sid, unique_name, default_ttl, callback_url, \
    intercept_callback_url, out_of_session_callback_url, number_selection_behavior, \
    geo_match_level, chat_instance_sid, date_created, date_updated FROM proxy_services";

fn decode_service(r: &DbRow) -> Result<ProxyServiceRecord, StoreError> {
    Ok(ProxyServiceRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        unique_name: r.try_get("unique_name")?,
        default_ttl: u32_col(r, "default_ttl")?,
        callback_url: r.try_get("callback_url")?,
        intercept_callback_url: r.try_get("intercept_callback_url")?,
        out_of_session_callback_url: r.try_get("out_of_session_callback_url")?,
        number_selection_behavior: r.try_get("number_selection_behavior")?,
        geo_match_level: r.try_get("geo_match_level")?,
        chat_instance_sid: r.try_get("chat_instance_sid")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

/// The pool's rows with the number's own fields and how many open participants use it. A
/// derived table, so the list's keyset condition names its columns without a prefix.
const NUMBER_COLUMNS: &str = "SELECT * FROM (SELECT n.sid, n.account_sid, n.service_sid, \
    p.phone_number, p.friendly_name, n.is_reserved, n.date_created, n.date_updated, \
    (SELECT COUNT(*) FROM proxy_participants x WHERE x.proxy_identifier_sid = n.sid \
     AND x.is_open = 1) AS in_use \
    FROM proxy_numbers n JOIN phone_numbers p ON p.sid = n.sid) AS pool";

fn decode_number(r: &DbRow) -> Result<ProxyNumberRecord, StoreError> {
    let in_use: i64 = r.try_get("in_use")?;
    Ok(ProxyNumberRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        service_sid: sid_col(r, "service_sid")?,
        phone_number: r.try_get("phone_number")?,
        friendly_name: r.try_get("friendly_name")?,
        is_reserved: r.try_get::<i64, _>("is_reserved")? != 0,
        in_use: u32::try_from(in_use).unwrap_or(u32::MAX),
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

const SESSION_COLUMNS: &str = "SELECT sid, account_sid, service_sid, unique_name, status, \
    closed_reason, ttl, mode, date_expiry, date_started, date_ended, date_last_interaction, \
    date_created, date_updated FROM proxy_sessions";

fn decode_session(r: &DbRow) -> Result<ProxySessionRecord, StoreError> {
    Ok(ProxySessionRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        service_sid: sid_col(r, "service_sid")?,
        unique_name: r.try_get("unique_name")?,
        status: r.try_get("status")?,
        closed_reason: r.try_get("closed_reason")?,
        ttl: u32_col(r, "ttl")?,
        mode: r.try_get("mode")?,
        date_expiry: opt_time_col(r, "date_expiry")?,
        date_started: opt_time_col(r, "date_started")?,
        date_ended: opt_time_col(r, "date_ended")?,
        date_last_interaction: opt_time_col(r, "date_last_interaction")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

const PARTICIPANT_COLUMNS: &str = "SELECT sid, account_sid, service_sid, session_sid, identifier, \
    friendly_name, proxy_identifier, proxy_identifier_sid, date_created, date_updated \
    FROM proxy_participants";

fn decode_participant(r: &DbRow) -> Result<ProxyParticipantRecord, StoreError> {
    Ok(ProxyParticipantRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        service_sid: sid_col(r, "service_sid")?,
        session_sid: sid_col(r, "session_sid")?,
        identifier: r.try_get("identifier")?,
        friendly_name: r.try_get("friendly_name")?,
        proxy_identifier: r.try_get("proxy_identifier")?,
        proxy_identifier_sid: sid_col(r, "proxy_identifier_sid")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

const INTERACTION_COLUMNS: &str = "SELECT sid, account_sid, service_sid, session_sid, kind, data, \
    participant_sid, inbound_participant_sid, inbound_resource_sid, inbound_resource_status, \
    outbound_participant_sid, outbound_resource_sid, outbound_resource_status, date_created, \
    date_updated FROM proxy_interactions";

fn decode_interaction(r: &DbRow) -> Result<ProxyInteractionRecord, StoreError> {
    Ok(ProxyInteractionRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        service_sid: sid_col(r, "service_sid")?,
        session_sid: sid_col(r, "session_sid")?,
        kind: r.try_get("kind")?,
        data: r.try_get("data")?,
        participant_sid: opt_sid_col(r, "participant_sid")?,
        inbound_participant_sid: opt_sid_col(r, "inbound_participant_sid")?,
        inbound_resource_sid: r.try_get("inbound_resource_sid")?,
        inbound_resource_status: r.try_get("inbound_resource_status")?,
        outbound_participant_sid: opt_sid_col(r, "outbound_participant_sid")?,
        outbound_resource_sid: r.try_get("outbound_resource_sid")?,
        outbound_resource_status: r.try_get("outbound_resource_status")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn opt_micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(micros)
}

impl Store {
    // --- Services ------------------------------------------------------------------------------

    pub async fn create_proxy_service(&self, rec: &ProxyServiceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO proxy_services (sid, account_sid, unique_name, default_ttl, callback_url, \
             intercept_callback_url, out_of_session_callback_url, number_selection_behavior, \
             geo_match_level, chat_instance_sid, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.unique_name)
        .bind(i64::from(rec.default_ttl))
        .bind(rec.callback_url.clone())
        .bind(rec.intercept_callback_url.clone())
        .bind(rec.out_of_session_callback_url.clone())
        .bind(&rec.number_selection_behavior)
        .bind(&rec.geo_match_level)
        .bind(rec.chat_instance_sid.clone())
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await
        .map_err(|e| match unique_violation(&e) {
            true => ProxyError::DuplicateUniqueName(rec.unique_name.clone()).into(),
            false => StoreError::from(e),
        })?;
        Ok(())
    }

    pub async fn proxy_service(
        &self,
        account: &AccountSid,
        sid: &ProxyServiceSid,
    ) -> Result<Option<ProxyServiceRecord>, StoreError> {
        self.fetch_scoped(SERVICE_COLUMNS, account, sid.as_str(), decode_service)
            .await
    }

    pub async fn list_proxy_services(
        &self,
        account: &AccountSid,
        page: &PageRequest,
    ) -> Result<Page<ProxyServiceRecord>, StoreError> {
        self.page_of(Sql::scoped(SERVICE_COLUMNS, account), page, decode_service)
            .await
    }

    /// Saves every setting of `rec` (its SID and account stay); whether it existed.
    pub async fn update_proxy_service(&self, rec: &ProxyServiceRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE proxy_services SET unique_name = $1, default_ttl = $2, callback_url = $3, \
             intercept_callback_url = $4, out_of_session_callback_url = $5, \
             number_selection_behavior = $6, geo_match_level = $7, chat_instance_sid = $8, \
             date_updated = $9 WHERE account_sid = $10 AND sid = $11",
        )
        .bind(&rec.unique_name)
        .bind(i64::from(rec.default_ttl))
        .bind(rec.callback_url.clone())
        .bind(rec.intercept_callback_url.clone())
        .bind(rec.out_of_session_callback_url.clone())
        .bind(&rec.number_selection_behavior)
        .bind(&rec.geo_match_level)
        .bind(rec.chat_instance_sid.clone())
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await
        .map_err(|e| match unique_violation(&e) {
            true => ProxyError::DuplicateUniqueName(rec.unique_name.clone()).into(),
            false => StoreError::from(e),
        })?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the service with its pool, sessions, participants and interactions.
    pub async fn delete_proxy_service(
        &self,
        account: &AccountSid,
        sid: &ProxyServiceSid,
    ) -> Result<bool, StoreError> {
        self.delete_with_children(
            account,
            sid.as_str(),
            &[
                "DELETE FROM proxy_interactions WHERE account_sid = $1 AND service_sid = $2",
                "DELETE FROM proxy_participants WHERE account_sid = $1 AND service_sid = $2",
                "DELETE FROM proxy_sessions WHERE account_sid = $1 AND service_sid = $2",
                "DELETE FROM proxy_numbers WHERE account_sid = $1 AND service_sid = $2",
            ],
            "DELETE FROM proxy_services WHERE account_sid = $1 AND sid = $2",
        )
        .await
    }

    /// Runs the `children` deletes, then `parent`'s (each binding the account as `$1` and `sid`
    /// as `$2`), in one transaction; whether the parent row existed.
    async fn delete_with_children(
        &self,
        account: &AccountSid,
        sid: &str,
        children: &[&str],
        parent: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        for sql in children {
            sqlx::query(sql).bind(account.as_str()).bind(sid).execute(&mut *tx).await?;
        }
        let done = sqlx::query(parent).bind(account.as_str()).bind(sid).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every service of every account: the runtime's routing data at start (system-wide, like
    /// [`Store::number_routes`]).
    pub async fn all_proxy_services(&self) -> Result<Vec<ProxyServiceRecord>, StoreError> {
        let rows = sqlx::query(SERVICE_COLUMNS).fetch_all(&self.pool).await?;
        rows.iter().map(decode_service).collect()
    }

    // --- The pool ------------------------------------------------------------------------------

    /// Puts a number of the account (by PN SID, or by its E.164 `phone_number`) in the service's
    /// pool.
    pub async fn add_proxy_number(
        &self,
        account: &AccountSid,
        service: &ProxyServiceSid,
        number: &str,
        is_reserved: bool,
        now: DateTime<Utc>,
    ) -> Result<ProxyNumberRecord, StoreError> {
        let row = sqlx::query(
            "SELECT sid FROM phone_numbers WHERE account_sid = $1 AND (sid = $2 OR phone_number = $2)",
        )
        .bind(account.as_str())
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(ProxyError::UnknownNumber(number.to_owned()).into());
        };
        let sid: PhoneNumberSid = sid_col(&row, "sid")?;
        sqlx::query(
            "INSERT INTO proxy_numbers (sid, account_sid, service_sid, is_reserved, date_created, \
             date_updated) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(sid.as_str())
        .bind(account.as_str())
        .bind(service.as_str())
        .bind(i64::from(is_reserved))
        .bind(micros(now))
        .execute(self.writer())
        .await
        .map_err(|e| match unique_violation(&e) {
            true => ProxyError::NumberInUse(number.to_owned()).into(),
            false => StoreError::from(e),
        })?;
        self.proxy_number(account, service, &sid)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("pool number {sid} vanished after insert")))
    }

    pub async fn proxy_number(
        &self,
        account: &AccountSid,
        service: &ProxyServiceSid,
        sid: &PhoneNumberSid,
    ) -> Result<Option<ProxyNumberRecord>, StoreError> {
        let sql =
            format!("{NUMBER_COLUMNS} WHERE account_sid = $1 AND service_sid = $2 AND sid = $3");
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(service.as_str())
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_number).transpose()
    }

    pub async fn list_proxy_numbers(
        &self,
        account: &AccountSid,
        service: &ProxyServiceSid,
        page: &PageRequest,
    ) -> Result<Page<ProxyNumberRecord>, StoreError> {
        let mut q = Sql::scoped(NUMBER_COLUMNS, account);
        q.push(" AND service_sid = ")
            .push_bind(service.as_str().to_owned());
        self.page_of(q, page, decode_number).await
    }

    /// Every pool number of every service: the runtime's routing data at start.
    pub async fn all_proxy_numbers(&self) -> Result<Vec<ProxyNumberRecord>, StoreError> {
        let rows = sqlx::query(NUMBER_COLUMNS).fetch_all(&self.pool).await?;
        rows.iter().map(decode_number).collect()
    }

    pub async fn set_proxy_number_reserved(
        &self,
        account: &AccountSid,
        service: &ProxyServiceSid,
        sid: &PhoneNumberSid,
        is_reserved: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE proxy_numbers SET is_reserved = $1, date_updated = $2 \
             WHERE account_sid = $3 AND service_sid = $4 AND sid = $5",
        )
        .bind(i64::from(is_reserved))
        .bind(micros(now))
        .bind(account.as_str())
        .bind(service.as_str())
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes a number out of the pool; participants that use it keep it until their session ends.
    pub async fn remove_proxy_number(
        &self,
        account: &AccountSid,
        service: &ProxyServiceSid,
        sid: &PhoneNumberSid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM proxy_numbers WHERE account_sid = $1 AND service_sid = $2 AND sid = $3",
        )
        .bind(account.as_str())
        .bind(service.as_str())
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- Sessions ------------------------------------------------------------------------------

    pub async fn create_proxy_session(&self, rec: &ProxySessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO proxy_sessions (sid, account_sid, service_sid, unique_name, status, \
             closed_reason, ttl, mode, date_expiry, date_started, date_ended, \
             date_last_interaction, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(rec.service_sid.as_str())
        .bind(rec.unique_name.clone())
        .bind(&rec.status)
        .bind(rec.closed_reason.clone())
        .bind(i64::from(rec.ttl))
        .bind(&rec.mode)
        .bind(opt_micros(rec.date_expiry))
        .bind(opt_micros(rec.date_started))
        .bind(opt_micros(rec.date_ended))
        .bind(opt_micros(rec.date_last_interaction))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await
        .map_err(|e| match unique_violation(&e) {
            true => {
                ProxyError::DuplicateUniqueName(rec.unique_name.clone().unwrap_or_default()).into()
            }
            false => StoreError::from(e),
        })?;
        Ok(())
    }

    /// A session of the service, by SID or (when `key` is not a KC SID) by unique name, as
    /// Twilio's fetch accepts either.
    pub async fn proxy_session(
        &self,
        account: &AccountSid,
        service: &ProxyServiceSid,
        key: &str,
    ) -> Result<Option<ProxySessionRecord>, StoreError> {
        let by = if key.parse::<ProxySessionSid>().is_ok() {
            "sid"
        } else {
            "unique_name"
        };
        let sql =
            format!("{SESSION_COLUMNS} WHERE account_sid = $1 AND service_sid = $2 AND {by} = $3");
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(service.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_session).transpose()
    }

    pub async fn list_proxy_sessions(
        &self,
        account: &AccountSid,
        service: &ProxyServiceSid,
        page: &PageRequest,
    ) -> Result<Page<ProxySessionRecord>, StoreError> {
        let mut q = Sql::scoped(SESSION_COLUMNS, account);
        q.push(" AND service_sid = ")
            .push_bind(service.as_str().to_owned());
        self.page_of(q, page, decode_session).await
    }

    /// Saves `status`, `closed_reason`, `ttl`, `date_expiry`, `date_ended` and `date_updated`.
    /// Closing frees the participants' pairs; reopening claims them again and fails with
    /// [`ProxyError::PairInUse`] when another open session took one meanwhile.
    pub async fn update_proxy_session(&self, rec: &ProxySessionRecord) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        let done = sqlx::query(
            "UPDATE proxy_sessions SET status = $1, closed_reason = $2, ttl = $3, date_expiry = $4, \
             date_ended = $5, date_updated = $6 WHERE account_sid = $7 AND sid = $8",
        )
        .bind(&rec.status)
        .bind(rec.closed_reason.clone())
        .bind(i64::from(rec.ttl))
        .bind(opt_micros(rec.date_expiry))
        .bind(opt_micros(rec.date_ended))
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let open: Option<i64> = rec.is_open().then_some(1);
        sqlx::query("UPDATE proxy_participants SET is_open = $1 WHERE account_sid = $2 AND session_sid = $3")
            .bind(open)
            .bind(rec.account_sid.as_str())
            .bind(rec.sid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| match unique_violation(&e) {
                true => ProxyError::PairInUse { identifier: "a participant".into(), proxy: "its proxy number".into() }.into(),
                false => StoreError::from(e),
            })?;
        tx.commit().await?;
        Ok(true)
    }

    /// Closes an open session (expiry, or the runtime's decision) with `reason`; whether it was
    /// open. Its pairs are free for other sessions at once.
    pub async fn close_proxy_session(
        &self,
        account: &AccountSid,
        sid: &ProxySessionSid,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        let done = sqlx::query(
            "UPDATE proxy_sessions SET status = 'closed', closed_reason = $1, date_ended = $2, \
             date_updated = $2 WHERE account_sid = $3 AND sid = $4 AND status IN ('open', 'in-progress')",
        )
        .bind(reason)
        .bind(micros(now))
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE proxy_participants SET is_open = NULL WHERE account_sid = $1 AND session_sid = $2")
            .bind(account.as_str())
            .bind(sid.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes the session with its participants and interactions.
    pub async fn delete_proxy_session(
        &self,
        account: &AccountSid,
        sid: &ProxySessionSid,
    ) -> Result<bool, StoreError> {
        self.delete_with_children(
            account,
            sid.as_str(),
            &[
                "DELETE FROM proxy_interactions WHERE account_sid = $1 AND session_sid = $2",
                "DELETE FROM proxy_participants WHERE account_sid = $1 AND session_sid = $2",
            ],
            "DELETE FROM proxy_sessions WHERE account_sid = $1 AND sid = $2",
        )
        .await
    }

    /// Notes an interaction: the session is `in-progress` from its first one, and its TTL counts
    /// from the last one.
    pub async fn touch_proxy_session(
        &self,
        account: &AccountSid,
        sid: &ProxySessionSid,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE proxy_sessions SET status = CASE WHEN status = 'open' THEN 'in-progress' ELSE status END, \
             date_started = COALESCE(date_started, $1), date_last_interaction = $1, date_updated = $1 \
             WHERE account_sid = $2 AND sid = $3",
        )
        .bind(micros(now))
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Every open session with its participants: the runtime's index at start (system-wide).
    pub async fn open_proxy_sessions(
        &self,
    ) -> Result<Vec<(ProxySessionRecord, Vec<ProxyParticipantRecord>)>, StoreError> {
        let sql = format!("{SESSION_COLUMNS} WHERE status IN ('open', 'in-progress')");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        let mut sessions: std::collections::HashMap<
            ProxySessionSid,
            (ProxySessionRecord, Vec<ProxyParticipantRecord>),
        > = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let s = decode_session(r)?;
            sessions.insert(s.sid, (s, Vec::new()));
        }
        drop(rows);
        let sql = format!("{PARTICIPANT_COLUMNS} WHERE is_open = 1");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        for r in &rows {
            let p = decode_participant(r)?;
            if let Some((_, parts)) = sessions.get_mut(&p.session_sid) {
                parts.push(p);
            }
        }
        Ok(sessions.into_values().collect())
    }

    /// One session with its participants, for the runtime after an API write.
    pub async fn proxy_session_with_participants(
        &self,
        account: &AccountSid,
        sid: &ProxySessionSid,
    ) -> Result<Option<(ProxySessionRecord, Vec<ProxyParticipantRecord>)>, StoreError> {
        let Some(session) = self
            .fetch_scoped(SESSION_COLUMNS, account, sid.as_str(), decode_session)
            .await?
        else {
            return Ok(None);
        };
        let sql = format!("{PARTICIPANT_COLUMNS} WHERE account_sid = $1 AND session_sid = $2 ORDER BY date_created, sid");
        let rows = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(sid.as_str())
            .fetch_all(&self.pool)
            .await?;
        let parts = rows
            .iter()
            .map(decode_participant)
            .collect::<Result<_, _>>()?;
        Ok(Some((session, parts)))
    }

    // --- Participants --------------------------------------------------------------------------

    /// Adds a participant to a session, its proxy number given or chosen from the pool: the
    /// first unreserved number (oldest in the pool first) that the identifier does not use in
    /// another open session. One transaction, so two adds cannot take the same pair (the unique
    /// index would refuse the second anyway).
    pub async fn add_proxy_participant(
        &self,
        session: &ProxySessionRecord,
        new: &NewParticipant,
        now: DateTime<Utc>,
    ) -> Result<ProxyParticipantRecord, StoreError> {
        let account = session.account_sid.as_str();
        let mut tx = self.writer().begin().await?;
        let rows = sqlx::query(
            "SELECT identifier FROM proxy_participants WHERE account_sid = $1 AND session_sid = $2",
        )
        .bind(account)
        .bind(session.sid.as_str())
        .fetch_all(&mut *tx)
        .await?;
        if rows.iter().any(|r| {
            r.try_get::<String, _>("identifier").ok().as_deref() == Some(new.identifier.as_str())
        }) {
            return Err(ProxyError::AlreadyParticipant(new.identifier.clone()).into());
        }
        if rows.len() >= 2 {
            return Err(ProxyError::SessionFull.into());
        }
        let open = session.is_open();
        let chosen = match &new.proxy_identifier {
            Some(wanted) => {
                let row = sqlx::query(
                    "SELECT n.sid, p.phone_number FROM proxy_numbers n JOIN phone_numbers p ON p.sid = n.sid \
                     WHERE n.account_sid = $1 AND n.service_sid = $2 AND (n.sid = $3 OR p.phone_number = $3)",
                )
                .bind(account)
                .bind(session.service_sid.as_str())
                .bind(wanted)
                .fetch_optional(&mut *tx)
                .await?;
                row.ok_or_else(|| ProxyError::NotInPool(wanted.clone()))?
            }
            None => {
                let row = sqlx::query(
                    "SELECT n.sid, p.phone_number FROM proxy_numbers n JOIN phone_numbers p ON p.sid = n.sid \
                     WHERE n.account_sid = $1 AND n.service_sid = $2 AND n.is_reserved = 0 AND NOT EXISTS \
                     (SELECT 1 FROM proxy_participants x WHERE x.identifier = $3 \
                      AND x.proxy_identifier = p.phone_number AND x.is_open = 1) \
                     ORDER BY n.date_created, n.sid LIMIT 1",
                )
                .bind(account)
                .bind(session.service_sid.as_str())
                .bind(&new.identifier)
                .fetch_optional(&mut *tx)
                .await?;
                row.ok_or_else(|| ProxyError::PoolExhausted(new.identifier.clone()))?
            }
        };
        let rec = ProxyParticipantRecord {
            sid: ProxyParticipantSid::generate(),
            account_sid: session.account_sid,
            service_sid: session.service_sid,
            session_sid: session.sid,
            identifier: new.identifier.clone(),
            friendly_name: new.friendly_name.clone(),
            proxy_identifier: chosen.try_get("phone_number")?,
            proxy_identifier_sid: sid_col(&chosen, "sid")?,
            date_created: now,
            date_updated: now,
        };
        sqlx::query(
            "INSERT INTO proxy_participants (sid, account_sid, service_sid, session_sid, identifier, \
             friendly_name, proxy_identifier, proxy_identifier_sid, is_open, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
        )
        .bind(rec.sid.as_str())
        .bind(account)
        .bind(rec.service_sid.as_str())
        .bind(rec.session_sid.as_str())
        .bind(&rec.identifier)
        .bind(rec.friendly_name.clone())
        .bind(&rec.proxy_identifier)
        .bind(rec.proxy_identifier_sid.as_str())
        .bind(open.then_some(1i64))
        .bind(micros(now))
        .execute(&mut *tx)
        .await
        .map_err(|e| match unique_violation(&e) {
            true => ProxyError::PairInUse { identifier: rec.identifier.clone(), proxy: rec.proxy_identifier.clone() }.into(),
            false => StoreError::from(e),
        })?;
        tx.commit().await?;
        Ok(rec)
    }

    pub async fn proxy_participant(
        &self,
        account: &AccountSid,
        session: &ProxySessionSid,
        sid: &ProxyParticipantSid,
    ) -> Result<Option<ProxyParticipantRecord>, StoreError> {
        let sql = format!(
            "{PARTICIPANT_COLUMNS} WHERE account_sid = $1 AND session_sid = $2 AND sid = $3"
        );
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(session.as_str())
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_participant).transpose()
    }

    pub async fn list_proxy_participants(
        &self,
        account: &AccountSid,
        session: &ProxySessionSid,
        page: &PageRequest,
    ) -> Result<Page<ProxyParticipantRecord>, StoreError> {
        let mut q = Sql::scoped(PARTICIPANT_COLUMNS, account);
        q.push(" AND session_sid = ")
            .push_bind(session.as_str().to_owned());
        self.page_of(q, page, decode_participant).await
    }

    pub async fn delete_proxy_participant(
        &self,
        account: &AccountSid,
        session: &ProxySessionSid,
        sid: &ProxyParticipantSid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM proxy_participants WHERE account_sid = $1 AND session_sid = $2 AND sid = $3")
            .bind(account.as_str())
            .bind(session.as_str())
            .bind(sid.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- Interactions --------------------------------------------------------------------------

    pub async fn create_proxy_interaction(
        &self,
        rec: &ProxyInteractionRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO proxy_interactions (sid, account_sid, service_sid, session_sid, kind, data, \
             participant_sid, inbound_participant_sid, inbound_resource_sid, inbound_resource_status, \
             outbound_participant_sid, outbound_resource_sid, outbound_resource_status, date_created, \
             date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(rec.service_sid.as_str())
        .bind(rec.session_sid.as_str())
        .bind(&rec.kind)
        .bind(rec.data.clone())
        .bind(rec.participant_sid.map(|s| s.to_string()))
        .bind(rec.inbound_participant_sid.map(|s| s.to_string()))
        .bind(rec.inbound_resource_sid.clone())
        .bind(rec.inbound_resource_status.clone())
        .bind(rec.outbound_participant_sid.map(|s| s.to_string()))
        .bind(rec.outbound_resource_sid.clone())
        .bind(rec.outbound_resource_status.clone())
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Stores a batch of interactions and notes each session's last one, in one transaction (the
    /// runtime's writer for calls: one commit for all the calls of a burst).
    pub async fn record_proxy_interactions(
        &self,
        batch: &[ProxyInteractionRecord],
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer().begin().await?;
        let mut last: std::collections::HashMap<(AccountSid, ProxySessionSid), DateTime<Utc>> =
            std::collections::HashMap::new();
        for rec in batch {
            sqlx::query(
                "INSERT INTO proxy_interactions (sid, account_sid, service_sid, session_sid, kind, data, \
                 participant_sid, inbound_participant_sid, inbound_resource_sid, inbound_resource_status, \
                 outbound_participant_sid, outbound_resource_sid, outbound_resource_status, date_created, \
                 date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(rec.sid.as_str())
            .bind(rec.account_sid.as_str())
            .bind(rec.service_sid.as_str())
            .bind(rec.session_sid.as_str())
            .bind(&rec.kind)
            .bind(rec.data.clone())
            .bind(rec.participant_sid.map(|s| s.to_string()))
            .bind(rec.inbound_participant_sid.map(|s| s.to_string()))
            .bind(rec.inbound_resource_sid.clone())
            .bind(rec.inbound_resource_status.clone())
            .bind(rec.outbound_participant_sid.map(|s| s.to_string()))
            .bind(rec.outbound_resource_sid.clone())
            .bind(rec.outbound_resource_status.clone())
            .bind(micros(rec.date_created))
            .bind(micros(rec.date_updated))
            .execute(&mut *tx)
            .await?;
            let at = last
                .entry((rec.account_sid, rec.session_sid))
                .or_insert(rec.date_created);
            *at = (*at).max(rec.date_created);
        }
        for ((account, session), at) in last {
            sqlx::query(
                "UPDATE proxy_sessions SET status = CASE WHEN status = 'open' THEN 'in-progress' ELSE status END, \
                 date_started = COALESCE(date_started, $1), date_last_interaction = $1, date_updated = $1 \
                 WHERE account_sid = $2 AND sid = $3",
            )
            .bind(micros(at))
            .bind(account.as_str())
            .bind(session.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Fills in what the legs became: a call interaction's outbound call is the child of its
    /// inbound call (the `<Dial>` leg), and both statuses are the calls' own as they stand now;
    /// a message interaction's statuses are its messages'.
    async fn with_resource_statuses(
        &self,
        mut rec: ProxyInteractionRecord,
    ) -> Result<ProxyInteractionRecord, StoreError> {
        let account = rec.account_sid.as_str();
        match (rec.kind.as_str(), rec.inbound_resource_sid.clone()) {
            ("voice", Some(inbound)) => {
                let rows = sqlx::query(
                    "SELECT sid, status, parent_call_sid, date_created FROM calls WHERE account_sid = $1 \
                     AND (sid = $2 OR parent_call_sid = $2) ORDER BY date_created",
                )
                .bind(account)
                .bind(&inbound)
                .fetch_all(&self.pool)
                .await?;
                for r in &rows {
                    let sid: String = r.try_get("sid")?;
                    let status: String = r.try_get("status")?;
                    if sid == inbound {
                        rec.inbound_resource_status = Some(status);
                    } else if rec.outbound_resource_sid.is_none()
                        || rec.outbound_resource_sid.as_deref() == Some(sid.as_str())
                    {
                        rec.outbound_resource_sid = Some(sid);
                        rec.outbound_resource_status = Some(if status == "queued" {
                            "initiated".into()
                        } else {
                            status
                        });
                    }
                }
            }
            _ => {
                for (sid, status) in [
                    (
                        rec.inbound_resource_sid.clone(),
                        &mut rec.inbound_resource_status,
                    ),
                    (
                        rec.outbound_resource_sid.clone(),
                        &mut rec.outbound_resource_status,
                    ),
                ] {
                    let Some(sid) = sid.filter(|s| s.starts_with("SM")) else {
                        continue;
                    };
                    let row = sqlx::query(
                        "SELECT status FROM messages WHERE account_sid = $1 AND sid = $2",
                    )
                    .bind(account)
                    .bind(&sid)
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(r) = row {
                        let s: String = r.try_get("status")?;
                        *status = Some(s.replace('_', "-"));
                    }
                }
            }
        }
        Ok(rec)
    }

    pub async fn proxy_interaction(
        &self,
        account: &AccountSid,
        session: &ProxySessionSid,
        sid: &ProxyInteractionSid,
    ) -> Result<Option<ProxyInteractionRecord>, StoreError> {
        let sql = format!(
            "{INTERACTION_COLUMNS} WHERE account_sid = $1 AND session_sid = $2 AND sid = $3"
        );
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(session.as_str())
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        match row.as_ref().map(decode_interaction).transpose()? {
            Some(rec) => Ok(Some(self.with_resource_statuses(rec).await?)),
            None => Ok(None),
        }
    }

    /// A session's interactions (or, with `participant`, the message interactions made through
    /// that participant), newest first, with their legs' current statuses.
    pub async fn list_proxy_interactions(
        &self,
        account: &AccountSid,
        session: &ProxySessionSid,
        participant: Option<&ProxyParticipantSid>,
        page: &PageRequest,
    ) -> Result<Page<ProxyInteractionRecord>, StoreError> {
        let mut q = Sql::scoped(INTERACTION_COLUMNS, account);
        q.push(" AND session_sid = ")
            .push_bind(session.as_str().to_owned());
        if let Some(p) = participant {
            q.push(" AND participant_sid = ")
                .push_bind(p.as_str().to_owned());
        }
        let page = self.page_of(q, page, decode_interaction).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for rec in page.items {
            items.push(self.with_resource_statuses(rec).await?);
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    pub async fn delete_proxy_interaction(
        &self,
        account: &AccountSid,
        session: &ProxySessionSid,
        sid: &ProxyInteractionSid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM proxy_interactions WHERE account_sid = $1 AND session_sid = $2 AND sid = $3")
            .bind(account.as_str())
            .bind(session.as_str())
            .bind(sid.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Bulk load for the benchmark: `count` open sessions of one service, each with two
    /// participants `+1<2000000000 + 2i>` and `+1<2000000000 + 2i + 1>` using the pool number
    /// `proxy`, written as multi-row statements of `batch` sessions. Not for the API: it checks
    /// nothing, and every value it writes is its own (SIDs, digits), so it is written inline.
    pub async fn bulk_open_proxy_sessions(
        &self,
        service: &ProxyServiceRecord,
        proxy: &ProxyNumberRecord,
        count: u32,
        batch: u32,
    ) -> Result<(), StoreError> {
        let now = micros(Utc::now());
        let (account, svc) = (service.account_sid.as_str(), service.sid.as_str());
        let mut done = 0u32;
        while done < count {
            let n = batch.max(1).min(count - done);
            let mut sessions = String::from(
                "INSERT INTO proxy_sessions (sid, account_sid, service_sid, status, ttl, mode, \
                 date_created, date_updated) VALUES ",
            );
            let mut parts = String::from(
                "INSERT INTO proxy_participants (sid, account_sid, service_sid, session_sid, \
                 identifier, proxy_identifier, proxy_identifier_sid, is_open, date_created, \
                 date_updated) VALUES ",
            );
            for i in done..done + n {
                let session = ProxySessionSid::generate();
                if i > done {
                    sessions.push(',');
                    parts.push(',');
                }
                sessions.push_str(&format!(
                    "('{session}', '{account}', '{svc}', 'open', 0, 'voice-and-message', {now}, {now})"
                ));
                for side in 0..2u64 {
                    if side == 1 {
                        parts.push(',');
                    }
                    parts.push_str(&format!(
                        "('{}', '{account}', '{svc}', '{session}', '+1{}', '{}', '{}', 1, {now}, {now})",
                        ProxyParticipantSid::generate(),
                        u64::from(i) * 2 + side + 2_000_000_000,
                        proxy.phone_number,
                        proxy.sid,
                    ));
                }
            }
            let mut tx = self.writer().begin().await?;
            sqlx::query(&sessions).execute(&mut *tx).await?;
            sqlx::query(&parts).execute(&mut *tx).await?;
            tx.commit().await?;
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use model::PhoneNumberRecord;

    fn service(account: &AccountSid, name: &str) -> ProxyServiceRecord {
        let now = now();
        ProxyServiceRecord {
            sid: ProxyServiceSid::generate(),
            account_sid: *account,
            unique_name: name.into(),
            default_ttl: 0,
            callback_url: None,
            intercept_callback_url: None,
            out_of_session_callback_url: None,
            number_selection_behavior: "prefer-sticky".into(),
            geo_match_level: "country".into(),
            chat_instance_sid: None,
            date_created: now,
            date_updated: now,
        }
    }

    fn session(s: &ProxyServiceRecord) -> ProxySessionRecord {
        let now = now();
        ProxySessionRecord {
            sid: ProxySessionSid::generate(),
            account_sid: s.account_sid,
            service_sid: s.sid,
            unique_name: None,
            status: "open".into(),
            closed_reason: None,
            ttl: 0,
            mode: "voice-and-message".into(),
            date_expiry: None,
            date_started: None,
            date_ended: None,
            date_last_interaction: None,
            date_created: now,
            date_updated: now,
        }
    }

    async fn number(store: &Store, account: &AccountSid, phone: &str) -> PhoneNumberRecord {
        let n = crate::numbers::tests::number(account, phone);
        store.create_number(&n).await.unwrap();
        n
    }

    fn who(identifier: &str) -> NewParticipant {
        NewParticipant {
            identifier: identifier.into(),
            friendly_name: None,
            proxy_identifier: None,
        }
    }

    #[tokio::test]
    async fn pairs_are_unique_among_open_sessions_and_closing_frees_them() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let svc = service(&a, "taxi");
        db.store.create_proxy_service(&svc).await.unwrap();
        let dup = db
            .store
            .create_proxy_service(&service(&a, "taxi"))
            .await
            .unwrap_err();
        assert!(
            matches!(dup, StoreError::Proxy(ProxyError::DuplicateUniqueName(_))),
            "{dup}"
        );
        let n1 = number(&db.store, &a, "+15550000001").await;
        let n2 = number(&db.store, &a, "+15550000002").await;
        db.store
            .add_proxy_number(&a, &svc.sid, n1.sid.as_str(), false, now())
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        db.store
            .add_proxy_number(&a, &svc.sid, "+15550000002", false, now())
            .await
            .unwrap();
        let again = db
            .store
            .add_proxy_number(&a, &svc.sid, "+15550000002", false, now())
            .await
            .unwrap_err();
        assert!(
            matches!(again, StoreError::Proxy(ProxyError::NumberInUse(_))),
            "{again}"
        );

        let s1 = session(&svc);
        db.store.create_proxy_session(&s1).await.unwrap();
        let driver = db
            .store
            .add_proxy_participant(&s1, &who("+14150000001"), now())
            .await
            .unwrap();
        let rider = db
            .store
            .add_proxy_participant(&s1, &who("+14150000002"), now())
            .await
            .unwrap();
        assert_eq!(
            driver.proxy_identifier, "+15550000001",
            "the oldest pool number first"
        );
        assert_eq!(
            rider.proxy_identifier, "+15550000001",
            "a different identifier may share it"
        );
        let third = db
            .store
            .add_proxy_participant(&s1, &who("+14150000003"), now())
            .await
            .unwrap_err();
        assert!(
            matches!(third, StoreError::Proxy(ProxyError::SessionFull)),
            "{third}"
        );

        // The driver in a second open session gets the next number, then the pool is exhausted.
        let s2 = session(&svc);
        db.store.create_proxy_session(&s2).await.unwrap();
        let d2 = db
            .store
            .add_proxy_participant(&s2, &who("+14150000001"), now())
            .await
            .unwrap();
        assert_eq!(d2.proxy_identifier_sid, n2.sid);
        let s3 = session(&svc);
        db.store.create_proxy_session(&s3).await.unwrap();
        let out = db
            .store
            .add_proxy_participant(&s3, &who("+14150000001"), now())
            .await
            .unwrap_err();
        assert!(
            matches!(out, StoreError::Proxy(ProxyError::PoolExhausted(_))),
            "{out}"
        );
        let pinned = NewParticipant {
            proxy_identifier: Some("+15550000001".into()),
            ..who("+14150000001")
        };
        let clash = db
            .store
            .add_proxy_participant(&s3, &pinned, now())
            .await
            .unwrap_err();
        assert!(
            matches!(clash, StoreError::Proxy(ProxyError::PairInUse { .. })),
            "{clash}"
        );
        let pool = db
            .store
            .proxy_number(&a, &svc.sid, &n1.sid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pool.in_use, 2);

        // Closing the first session frees its pairs.
        assert!(db
            .store
            .close_proxy_session(&a, &s1.sid, "ttl", now())
            .await
            .unwrap());
        assert!(!db
            .store
            .close_proxy_session(&a, &s1.sid, "ttl", now())
            .await
            .unwrap());
        let d3 = db
            .store
            .add_proxy_participant(&s3, &who("+14150000001"), now())
            .await
            .unwrap();
        assert_eq!(d3.proxy_identifier_sid, n1.sid);
        // Reopening the first would reuse a pair s3 now holds.
        let mut reopen = db
            .store
            .proxy_session(&a, &svc.sid, s1.sid.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (reopen.status.as_str(), reopen.closed_reason.as_deref()),
            ("closed", Some("ttl"))
        );
        reopen.status = "open".into();
        let err = db.store.update_proxy_session(&reopen).await.unwrap_err();
        assert!(
            matches!(err, StoreError::Proxy(ProxyError::PairInUse { .. })),
            "{err}"
        );

        let open = db.store.open_proxy_sessions().await.unwrap();
        assert_eq!(open.len(), 2);
        assert!(open
            .iter()
            .all(|(s, parts)| s.sid != s1.sid && parts.len() == 1));

        // Another account sees none of it.
        let b = account(&db.store).await;
        assert!(db
            .store
            .proxy_service(&b, &svc.sid)
            .await
            .unwrap()
            .is_none());
        assert!(db
            .store
            .proxy_session(&b, &svc.sid, s2.sid.as_str())
            .await
            .unwrap()
            .is_none());
        assert!(!db.store.delete_proxy_service(&b, &svc.sid).await.unwrap());
        assert!(db.store.delete_proxy_service(&a, &svc.sid).await.unwrap());
        assert!(db.store.open_proxy_sessions().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_bulk_path_writes_open_sessions_the_runtime_loads() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let svc = service(&a, "bulk");
        db.store.create_proxy_service(&svc).await.unwrap();
        number(&db.store, &a, "+15550000009").await;
        let pool = db
            .store
            .add_proxy_number(&a, &svc.sid, "+15550000009", false, now())
            .await
            .unwrap();
        db.store
            .bulk_open_proxy_sessions(&svc, &pool, 7, 3)
            .await
            .unwrap();
        let open = db.store.open_proxy_sessions().await.unwrap();
        assert_eq!(open.len(), 7);
        assert!(open.iter().all(|(_, parts)| parts.len() == 2));
        assert_eq!(
            db.store
                .proxy_number(&a, &svc.sid, &pool.sid)
                .await
                .unwrap()
                .unwrap()
                .in_use,
            14
        );
    }

    #[tokio::test]
    async fn interactions_show_their_calls_statuses_and_touch_the_session() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let svc = service(&a, "s");
        db.store.create_proxy_service(&svc).await.unwrap();
        let mut s = session(&svc);
        s.ttl = 60;
        db.store.create_proxy_session(&s).await.unwrap();
        assert_eq!(s.expires_at(), Some(s.date_created + Duration::seconds(60)));
        let inbound = model::CallSid::generate();
        let rec = ProxyInteractionRecord {
            sid: ProxyInteractionSid::generate(),
            account_sid: a,
            service_sid: svc.sid,
            session_sid: s.sid,
            kind: "voice".into(),
            data: None,
            participant_sid: None,
            inbound_participant_sid: None,
            inbound_resource_sid: Some(inbound.to_string()),
            inbound_resource_status: Some("in-progress".into()),
            outbound_participant_sid: None,
            outbound_resource_sid: None,
            outbound_resource_status: None,
            date_created: now(),
            date_updated: now(),
        };
        db.store.create_proxy_interaction(&rec).await.unwrap();
        let later = now() + Duration::seconds(5);
        db.store
            .touch_proxy_session(&a, &s.sid, later)
            .await
            .unwrap();
        let touched = db
            .store
            .proxy_session(&a, &svc.sid, s.sid.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(touched.status, "in-progress");
        assert_eq!(touched.expires_at(), Some(later + Duration::seconds(60)));
        let got = db
            .store
            .proxy_interaction(&a, &s.sid, &rec.sid)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            got.inbound_resource_status.as_deref(),
            Some("in-progress"),
            "no call row yet: as stored"
        );
        let listed = db
            .store
            .list_proxy_interactions(&a, &s.sid, None, &PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(listed.items.len(), 1);
        assert!(db
            .store
            .delete_proxy_interaction(&a, &s.sid, &rec.sid)
            .await
            .unwrap());
    }
}
