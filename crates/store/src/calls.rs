//! Call records.

use model::{AccountSid, CallRecord, CallSid, CallStatus};
use sqlx::Row;

use crate::{
    micros, Sql, opt_sid_col, opt_time_col, sid_col, time_col, DbRow, Page, PageRequest, Store,
    StoreError,
};

const COLUMNS: &str = "SELECT sid, account_sid, parent_call_sid, phone_number_sid, from_address, \
    to_address, status, direction, start_time, end_time, duration, answered_by, price, date_created, \
    date_updated, date_scheduled FROM calls";

/// Filters of the Calls list, as Twilio names them (exact matches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub to: Option<String>,
    pub from: Option<String>,
    pub status: Option<CallStatus>,
    pub parent_call_sid: Option<CallSid>,
}

/// One write of [`Store::write_calls`].
#[derive(Debug, Clone, Copy)]
pub enum CallWrite<'a> {
    Insert(&'a CallRecord),
    Update(&'a CallRecord),
}

async fn insert_call_on<'e, E>(db: E, rec: &CallRecord, request: Option<&str>) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO calls (sid, account_sid, parent_call_sid, phone_number_sid, from_address, \
         to_address, status, direction, start_time, end_time, duration, answered_by, \
         date_created, date_updated, price, date_scheduled, scheduled_request) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(rec.sid.as_str())
    .bind(rec.account_sid.as_str())
    .bind(rec.parent_call_sid.as_ref().map(|s| s.as_str()))
    .bind(rec.phone_number_sid.as_ref().map(|s| s.as_str()))
    .bind(&rec.from)
    .bind(&rec.to)
    .bind(rec.status.as_str())
    .bind(rec.direction.as_str())
    .bind(rec.start_time.map(micros))
    .bind(rec.end_time.map(micros))
    .bind(rec.duration.map(i64::from))
    .bind(&rec.answered_by)
    .bind(micros(rec.date_created))
    .bind(micros(rec.date_updated))
    .bind(&rec.price)
    .bind(rec.date_scheduled.map(micros))
    .bind(request)
    .execute(db)
    .await?;
    Ok(())
}

/// Saves every field but `sid`, `account_sid` and `date_created`; whether the call existed.
async fn update_call_on<'e, E>(db: E, rec: &CallRecord) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "UPDATE calls SET parent_call_sid = $1, phone_number_sid = $2, from_address = $3, \
         to_address = $4, status = $5, direction = $6, start_time = $7, end_time = $8, \
         duration = $9, answered_by = $10, date_updated = $11, price = $14, date_scheduled = $15 \
         WHERE account_sid = $12 AND sid = $13",
    )
    .bind(rec.parent_call_sid.as_ref().map(|s| s.as_str()))
    .bind(rec.phone_number_sid.as_ref().map(|s| s.as_str()))
    .bind(&rec.from)
    .bind(&rec.to)
    .bind(rec.status.as_str())
    .bind(rec.direction.as_str())
    .bind(rec.start_time.map(micros))
    .bind(rec.end_time.map(micros))
    .bind(rec.duration.map(i64::from))
    .bind(&rec.answered_by)
    .bind(micros(rec.date_updated))
    .bind(rec.account_sid.as_str())
    .bind(rec.sid.as_str())
    .bind(&rec.price)
    .bind(rec.date_scheduled.map(micros))
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

fn decode(r: &DbRow) -> Result<CallRecord, StoreError> {
    let status: String = r.try_get("status")?;
    let direction: String = r.try_get("direction")?;
    let duration: Option<i64> = r.try_get("duration")?;
    Ok(CallRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        parent_call_sid: opt_sid_col(r, "parent_call_sid")?,
        phone_number_sid: opt_sid_col(r, "phone_number_sid")?,
        from: r.try_get("from_address")?,
        to: r.try_get("to_address")?,
        status: status.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        direction: direction.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        start_time: opt_time_col(r, "start_time")?,
        end_time: opt_time_col(r, "end_time")?,
        duration: duration
            .map(|d| u32::try_from(d).map_err(|_| StoreError::Corrupt(format!("duration {d}"))))
            .transpose()?,
        answered_by: r.try_get("answered_by")?,
        price: r.try_get("price")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
        date_scheduled: opt_time_col(r, "date_scheduled")?,
    })
}

impl Store {
    pub async fn insert_call(&self, rec: &CallRecord) -> Result<(), StoreError> {
        self.insert_call_with(rec, None).await
    }

    /// One `INSERT`, with the Calls-create request of a `scheduled` call.
    async fn insert_call_with(&self, rec: &CallRecord, request: Option<&str>) -> Result<(), StoreError> {
        insert_call_on(self.writer(), rec, request).await
    }

    /// Saves every field but `sid`, `account_sid` and `date_created` of a call of
    /// `rec.account_sid`. Returns whether the call existed.
    pub async fn update_call(&self, rec: &CallRecord) -> Result<bool, StoreError> {
        update_call_on(self.writer(), rec).await
    }

    /// Call-record writes in one transaction, in order: one commit for all of them (the node's
    /// record writer hands in everything that waits). A write of a call that does not exist is
    /// no error, as with [`Store::update_call`].
    pub async fn write_calls(&self, writes: &[CallWrite<'_>]) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        for write in writes {
            match write {
                CallWrite::Insert(rec) => insert_call_on(&mut *tx, rec, None).await?,
                CallWrite::Update(rec) => {
                    update_call_on(&mut *tx, rec).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn call(
        &self,
        account: &AccountSid,
        sid: &CallSid,
    ) -> Result<Option<CallRecord>, StoreError> {
        self.fetch_scoped(COLUMNS, account, sid.as_str(), decode).await
    }

    /// Calls of one account, newest first.
    pub async fn list_calls(
        &self,
        account: &AccountSid,
        filter: &CallFilter,
        page: &PageRequest,
    ) -> Result<Page<CallRecord>, StoreError> {
        let mut q = Sql::scoped(COLUMNS, account);
        if let Some(to) = &filter.to {
            q.push(" AND to_address = ").push_bind(to.clone());
        }
        if let Some(from) = &filter.from {
            q.push(" AND from_address = ").push_bind(from.clone());
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(parent) = &filter.parent_call_sid {
            q.push(" AND parent_call_sid = ").push_bind(parent.as_str().to_owned());
        }
        self.page_of(q, page, decode).await
    }

    /// Returns whether the call existed in that account.
    pub async fn delete_call(&self, account: &AccountSid, sid: &CallSid) -> Result<bool, StoreError> {
        self.delete_scoped("calls", account, sid.as_str()).await
    }

    /// Calls not yet over (queued, ringing, in progress), across all accounts: a gauge and a
    /// capacity check, it reads no tenant rows.
    pub async fn active_calls_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM calls WHERE status IN ('queued', 'ringing', 'in-progress')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Every call not yet over (queued, ringing, in progress), across all accounts, oldest first.
    /// Read once at start-up, before the node takes calls: these are the calls a previous run
    /// left open when it died, which crash recovery then closes. A system-wide read like
    /// [`Store::active_calls_count`]; it hands the rows to no tenant.
    pub async fn unfinished_calls(&self) -> Result<Vec<CallRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "{COLUMNS} WHERE status IN ('queued', 'ringing', 'in-progress') ORDER BY date_created, sid"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }
}

/// A `scheduled` call and the request that places it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledCall {
    pub call: CallRecord,
    /// The Calls-create request, as the runtime wrote it (JSON).
    pub request: String,
}

impl Store {
    /// Stores a call held for its calling window: `rec.status` is `scheduled` and
    /// `rec.date_scheduled` says when it will be placed; `request` places it then.
    pub async fn insert_scheduled_call(&self, rec: &CallRecord, request: &str) -> Result<(), StoreError> {
        self.insert_call_with(rec, Some(request)).await
    }

    /// Every `scheduled` call, across all accounts, soonest first: read once at start by the
    /// node's scheduler (a system-wide read like [`Store::unfinished_calls`]; no tenant sees it).
    pub async fn scheduled_calls(&self) -> Result<Vec<ScheduledCall>, StoreError> {
        let rows = sqlx::query(&format!(
            "{}, scheduled_request FROM calls WHERE status = 'scheduled' ORDER BY date_scheduled, sid",
            COLUMNS.trim_end_matches(" FROM calls")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(ScheduledCall { call: decode(r)?, request: r.try_get::<Option<String>, _>("scheduled_request")?.unwrap_or_default() }))
            .collect()
    }

    /// One `scheduled` call of an account with its request, if it is still scheduled.
    pub async fn scheduled_call(&self, account: &AccountSid, sid: &CallSid) -> Result<Option<ScheduledCall>, StoreError> {
        let row = sqlx::query(&format!(
            "{}, scheduled_request FROM calls WHERE account_sid = $1 AND sid = $2 AND status = 'scheduled'",
            COLUMNS.trim_end_matches(" FROM calls")
        ))
        .bind(account.as_str())
        .bind(sid.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| Ok(ScheduledCall { call: decode(r)?, request: r.try_get::<Option<String>, _>("scheduled_request")?.unwrap_or_default() }))
            .transpose()
    }

    /// Moves a `scheduled` call on (to `queued` when it is placed, `canceled`, or `failed`), in
    /// the `UPDATE` itself, so a cancel and the scheduler cannot both win. Returns whether it was
    /// still scheduled. `date_scheduled` stays: it says when the call was placed.
    pub async fn leave_scheduled(
        &self,
        account: &AccountSid,
        sid: &CallSid,
        status: CallStatus,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let end = status.is_final().then(|| micros(now));
        let done = sqlx::query(
            "UPDATE calls SET status = $1, date_updated = $2, end_time = $3, duration = $4, scheduled_request = NULL \
             WHERE account_sid = $5 AND sid = $6 AND status = 'scheduled'",
        )
        .bind(status.as_str())
        .bind(micros(now))
        .bind(end)
        .bind(status.is_final().then_some(0_i64))
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A `scheduled` call's new placing time (its window changed). Whether it was still scheduled.
    pub async fn reschedule_call(
        &self,
        account: &AccountSid,
        sid: &CallSid,
        at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE calls SET date_scheduled = $1, date_updated = $2 \
             WHERE account_sid = $3 AND sid = $4 AND status = 'scheduled'",
        )
        .bind(micros(at))
        .bind(micros(now))
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashSet;

    use chrono::Duration;
    use model::CallDirection;

    use super::*;
    use crate::testutil::*;

    pub fn call(account: &AccountSid, to: &str) -> CallRecord {
        let now = now();
        CallRecord {
            sid: CallSid::generate(),
            account_sid: *account,
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+15005550006".into(),
            to: to.into(),
            status: CallStatus::Ringing,
            direction: CallDirection::Inbound,
            start_time: None,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: None,
        }
    }

    #[tokio::test]
    async fn call_lifecycle_is_scoped_by_account() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let mut c = call(&a, "+14155550100");
        db.store.insert_call(&c).await.unwrap();
        assert_eq!(db.store.active_calls_count().await.unwrap(), 1);

        c.status = CallStatus::Completed;
        c.start_time = Some(c.date_created);
        c.end_time = Some(c.date_created + Duration::seconds(12));
        c.duration = Some(12);
        assert!(db.store.update_call(&c).await.unwrap());
        let stored = db.store.call(&a, &c.sid).await.unwrap().unwrap();
        assert_eq!(stored.status, CallStatus::Completed);
        assert_eq!(stored.duration, Some(12));
        // Microsecond precision is what we keep.
        assert_eq!(stored.end_time.map(|t| t.timestamp_micros()), c.end_time.map(|t| t.timestamp_micros()));
        assert_eq!(db.store.active_calls_count().await.unwrap(), 0);

        assert!(db.store.call(&b, &c.sid).await.unwrap().is_none());
        assert!(!db.store.delete_call(&b, &c.sid).await.unwrap());
        let mut foreign = c.clone();
        foreign.account_sid = b;
        assert!(!db.store.update_call(&foreign).await.unwrap());
        assert!(db.store.delete_call(&a, &c.sid).await.unwrap());
        assert!(db.store.call(&a, &c.sid).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn paging_walks_every_call_once_newest_first_with_filters() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let base = now();
        for i in 0..45 {
            let mut c = call(&a, if i % 3 == 0 { "+111" } else { "+222" });
            // Equal timestamps in pairs: the sid breaks the tie.
            c.date_created = base + Duration::seconds(i / 2);
            db.store.insert_call(&c).await.unwrap();
        }
        db.store.insert_call(&call(&b, "+111")).await.unwrap();

        let mut seen = HashSet::new();
        let mut last: Option<(i64, String)> = None;
        let mut req = PageRequest::first(10);
        let mut pages = 0;
        loop {
            let page = db.store.list_calls(&a, &CallFilter::default(), &req).await.unwrap();
            pages += 1;
            for c in &page.items {
                let key = (c.date_created.timestamp_micros(), c.sid.to_string());
                if let Some(prev) = &last {
                    assert!(key < *prev, "newest first");
                }
                last = Some(key);
                assert!(seen.insert(c.sid), "duplicate {}", c.sid);
            }
            match page.next {
                Some(cursor) => req = PageRequest { size: 10, after: Some(cursor), offset: 0 },
                None => break,
            }
        }
        assert_eq!((seen.len(), pages), (45, 5));

        let to = CallFilter { to: Some("+111".into()), ..CallFilter::default() };
        assert_eq!(db.store.list_calls(&a, &to, &PageRequest::first(100)).await.unwrap().items.len(), 15);
        let st = CallFilter { status: Some(CallStatus::Completed), ..CallFilter::default() };
        assert!(db.store.list_calls(&a, &st, &PageRequest::first(100)).await.unwrap().items.is_empty());
        let by_offset = PageRequest { size: 10, after: None, offset: 40 };
        assert_eq!(db.store.list_calls(&a, &CallFilter::default(), &by_offset).await.unwrap().items.len(), 5);
    }

    #[tokio::test]
    async fn unfinished_calls_span_accounts_and_skip_ended_ones() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let base = now();
        let mut ringing = call(&a, "+1");
        ringing.date_created = base;
        let mut queued = call(&b, "+2");
        queued.status = CallStatus::Queued;
        queued.date_created = base + Duration::seconds(1);
        let mut answered = call(&a, "+3");
        answered.status = CallStatus::InProgress;
        answered.start_time = Some(base + Duration::seconds(3));
        answered.date_created = base + Duration::seconds(2);
        let mut done = call(&b, "+4");
        done.status = CallStatus::Completed;
        let mut failed = call(&a, "+5");
        failed.status = CallStatus::Failed;
        for c in [&ringing, &queued, &answered, &done, &failed] {
            db.store.insert_call(c).await.unwrap();
        }
        let open = db.store.unfinished_calls().await.unwrap();
        assert_eq!(open, vec![ringing, queued, answered.clone()]);

        answered.status = CallStatus::Completed;
        db.store.update_call(&answered).await.unwrap();
        let tos: Vec<_> = db.store.unfinished_calls().await.unwrap().into_iter().map(|c| c.to).collect();
        assert_eq!(tos, vec!["+1", "+2"]);
    }
}
