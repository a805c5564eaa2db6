//! Usage: what an account (and, rolled up, its subaccounts) used per UTC day, summed in SQL
//! from the rows calls, messages and recordings leave, for the Usage Records API.
//!
//! Nothing is kept beside those rows: a price set when a call ends is counted as soon as it is
//! stored, and a deleted call no longer counts (Twilio's usage does not shrink that way, but a
//! second ledger that can disagree with the calls is worse than one that follows them).

use chrono::{DateTime, Utc};
use model::AccountSid;
use sqlx::Row;

use crate::{micros, Sql, Store, StoreError};

const DAY_MICROS: i64 = 86_400_000_000;

/// What the day's rows of one kind add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum UsageKind {
    /// Answered calls to the account's numbers.
    CallsInbound,
    /// Answered calls the account placed (API and `<Dial>` legs).
    CallsOutbound,
    /// Messages received.
    SmsInbound,
    /// Messages that left (sent, delivered or undelivered).
    SmsOutbound,
    /// Completed recordings.
    Recordings,
}

/// One kind's total on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageDay {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    pub kind: UsageKind,
    /// Calls, messages or recordings.
    pub count: u64,
    /// Minutes (each call or recording rounded up to the minute) or message segments.
    pub usage: u64,
    /// The charge in ten-thousandths (a call's `price` of `-0.1000` adds 1000).
    pub price_e4: i64,
}

/// Whose rows to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageScope {
    /// The account alone.
    Account,
    /// The account and every subaccount it owns (a subaccount owns none).
    WithSubaccounts,
}

impl Store {
    /// Every kind's daily totals from `from` (inclusive) to `until` (exclusive), in no order.
    /// Days without rows are absent.
    pub async fn usage_by_day(
        &self,
        account: &AccountSid,
        scope: UsageScope,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<UsageDay>, StoreError> {
        let (from, until) = (micros(from), micros(until));
        let accounts = |q: &mut Sql| {
            match scope {
                UsageScope::Account => q.push(" WHERE account_sid = ").push_bind(account.as_str().to_owned()),
                UsageScope::WithSubaccounts => q
                    .push(" WHERE account_sid IN (SELECT sid FROM accounts WHERE sid = ")
                    .push_bind(account.as_str().to_owned())
                    .push(" OR owner_account_sid = ")
                    .push_bind(account.as_str().to_owned())
                    .push(")"),
            };
        };
        // Prices are decimal strings of at most four places: summed as exact integers of
        // ten-thousandths (NUMERIC is exact on PostgreSQL; on SQLite each price is a double whose
        // ROUND is exact at this size). Sums are cast back to BIGINT: PostgreSQL's SUM of a
        // BIGINT is a NUMERIC, which the portable driver does not read.
        const PRICE: &str = "CAST(COALESCE(SUM(ROUND(CAST(price AS NUMERIC) * 10000)), 0) AS BIGINT)";
        let mut out = Vec::new();

        // Calls: answered ones (`completed`), on the day they were answered, minutes rounded up
        // per call as carriers and Twilio count them.
        let mut q = Sql::new(&format!(
            "SELECT CASE WHEN direction = 'inbound' THEN 0 ELSE 1 END AS way, \
             start_time / {DAY_MICROS} AS day, COUNT(*) AS n, \
             CAST(COALESCE(SUM((COALESCE(duration, 0) + 59) / 60), 0) AS BIGINT) AS used, {PRICE} AS price \
             FROM calls"
        ));
        accounts(&mut q);
        q.push(" AND status = 'completed' AND start_time >= ").push_bind(from);
        q.push(" AND start_time < ").push_bind(until);
        q.push(" GROUP BY way, day");
        for r in q.fetch_all(&self.pool).await? {
            let kind = if r.try_get::<i64, _>("way")? == 0 { UsageKind::CallsInbound } else { UsageKind::CallsOutbound };
            out.push(decode(&r, kind)?);
        }

        // Messages: received ones on the day they arrived, sent ones on the day they left;
        // queued, canceled and failed ones never left and cost nothing.
        let mut q = Sql::new(&format!(
            "SELECT CASE WHEN direction = 'inbound' THEN 0 ELSE 1 END AS way, \
             COALESCE(date_sent, date_created) / {DAY_MICROS} AS day, COUNT(*) AS n, \
             CAST(COALESCE(SUM(num_segments), 0) AS BIGINT) AS used, {PRICE} AS price \
             FROM messages"
        ));
        accounts(&mut q);
        q.push(" AND status IN ('received', 'sent', 'delivered', 'undelivered')");
        q.push(" AND COALESCE(date_sent, date_created) >= ").push_bind(from);
        q.push(" AND COALESCE(date_sent, date_created) < ").push_bind(until);
        q.push(" GROUP BY way, day");
        for r in q.fetch_all(&self.pool).await? {
            let kind = if r.try_get::<i64, _>("way")? == 0 { UsageKind::SmsInbound } else { UsageKind::SmsOutbound };
            out.push(decode(&r, kind)?);
        }

        // Recordings: completed ones, minutes rounded up per recording; not priced.
        let mut q = Sql::new(&format!(
            "SELECT start_time / {DAY_MICROS} AS day, COUNT(*) AS n, \
             CAST(COALESCE(SUM((duration + 59) / 60), 0) AS BIGINT) AS used, 0 AS price FROM recordings"
        ));
        accounts(&mut q);
        q.push(" AND status = 'completed' AND start_time >= ").push_bind(from);
        q.push(" AND start_time < ").push_bind(until);
        q.push(" GROUP BY day");
        for r in q.fetch_all(&self.pool).await? {
            out.push(decode(&r, UsageKind::Recordings)?);
        }
        Ok(out)
    }
}

fn decode(r: &crate::DbRow, kind: UsageKind) -> Result<UsageDay, StoreError> {
    let count: i64 = r.try_get("n")?;
    let usage: i64 = r.try_get("used")?;
    // A charge is stored negative (`-0.1000`): the usage price is what was charged.
    let price: i64 = r.try_get("price")?;
    let non_negative = |v: i64, col: &str| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("usage {col} {v} is negative")))
    };
    Ok(UsageDay {
        day: r.try_get("day")?,
        kind,
        count: non_negative(count, "count")?,
        usage: non_negative(usage, "usage")?,
        price_e4: -price,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use model::{CallDirection, CallRecord, CallSid, CallStatus};

    use super::*;
    use crate::accounts::tests::subaccount;
    use crate::testutil::*;

    fn call(account: AccountSid, direction: CallDirection, status: CallStatus, start: DateTime<Utc>, secs: u32, price: Option<&str>) -> CallRecord {
        CallRecord {
            sid: CallSid::generate(),
            account_sid: account,
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            status,
            direction,
            start_time: Some(start),
            end_time: Some(start + chrono::Duration::seconds(i64::from(secs))),
            duration: Some(secs),
            answered_by: None,
            price: price.map(str::to_owned),
            date_scheduled: None,
            date_created: start,
            date_updated: start,
        }
    }

    #[tokio::test]
    async fn calls_sum_per_day_and_kind_and_roll_up_to_the_parent() {
        let db = temp_store().await;
        let store = &db.store;
        let parent = account(store).await;
        let child = subaccount(store, &parent, "child").await;
        let day1 = Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 0).unwrap();
        let day2 = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 30).unwrap();
        for rec in [
            call(child.sid, CallDirection::OutboundApi, CallStatus::Completed, day1, 65, Some("-0.1000")),
            call(child.sid, CallDirection::OutboundDial, CallStatus::Completed, day1, 1, Some("-0.0500")),
            call(child.sid, CallDirection::OutboundApi, CallStatus::NoAnswer, day1, 0, Some("0.0000")),
            call(child.sid, CallDirection::Inbound, CallStatus::Completed, day2, 300, Some("-0.0500")),
            call(parent, CallDirection::Inbound, CallStatus::Completed, day2, 59, None),
        ] {
            store.insert_call(&rec).await.unwrap();
        }
        let from = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let until = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let mut child_days = store.usage_by_day(&child.sid, UsageScope::WithSubaccounts, from, until).await.unwrap();
        child_days.sort_by_key(|d| (d.day, d.kind));
        let d1 = day1.timestamp().div_euclid(86_400);
        assert_eq!(
            child_days,
            [
                UsageDay { day: d1, kind: UsageKind::CallsOutbound, count: 2, usage: 3, price_e4: 1500 },
                UsageDay { day: d1 + 1, kind: UsageKind::CallsInbound, count: 1, usage: 5, price_e4: 500 },
            ]
        );
        let parent_all = store.usage_by_day(&parent, UsageScope::WithSubaccounts, from, until).await.unwrap();
        let inbound: Vec<_> = parent_all.iter().filter(|d| d.kind == UsageKind::CallsInbound).collect();
        assert_eq!((inbound.len(), inbound[0].count, inbound[0].usage, inbound[0].price_e4), (1, 2, 6, 500));
        let parent_alone = store.usage_by_day(&parent, UsageScope::Account, from, until).await.unwrap();
        assert_eq!(
            parent_alone,
            [UsageDay { day: d1 + 1, kind: UsageKind::CallsInbound, count: 1, usage: 1, price_e4: 0 }]
        );
        // The range is half-open.
        assert!(store.usage_by_day(&child.sid, UsageScope::Account, from, day1).await.unwrap().is_empty());
    }
}
