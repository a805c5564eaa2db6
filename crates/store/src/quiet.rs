//! Quiet hours: an account's time-zone overrides and its calling window.

use model::{AccountSid, CallingWindowRecord, TimeZoneOverrideRecord, TimeZoneOverrideSid};
use sqlx::Row;

use crate::{micros, sid_col, time_col, DbRow, Page, PageRequest, Sql, Store, StoreError};

const OVERRIDE_COLUMNS: &str =
    "SELECT sid, account_sid, phone_number, prefix, time_zone, date_created, date_updated FROM time_zone_overrides";
const WINDOW_COLUMNS: &str =
    "SELECT account_sid, hours, dates_off, policy, dial_policy, date_created, date_updated FROM calling_windows";

fn decode_override(r: &DbRow) -> Result<TimeZoneOverrideRecord, StoreError> {
    Ok(TimeZoneOverrideRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        phone_number: r.try_get("phone_number")?,
        prefix: r.try_get("prefix")?,
        time_zone: r.try_get("time_zone")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

fn decode_window(r: &DbRow) -> Result<CallingWindowRecord, StoreError> {
    let dates: String = r.try_get("dates_off")?;
    Ok(CallingWindowRecord {
        account_sid: sid_col(r, "account_sid")?,
        hours: r.try_get("hours")?,
        dates_off: dates
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        policy: r.try_get("policy")?,
        dial_policy: r.try_get("dial_policy")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

impl Store {
    /// Adds an override; `Ok(false)` when the account already has one for that number or prefix.
    pub async fn insert_time_zone_override(
        &self,
        rec: &TimeZoneOverrideRecord,
    ) -> Result<bool, StoreError> {
        let mut q = Sql::scoped("SELECT sid FROM time_zone_overrides", &rec.account_sid);
        match (&rec.phone_number, &rec.prefix) {
            (Some(n), _) => q.push(" AND phone_number = ").push_bind(n.clone()),
            (None, Some(p)) => q.push(" AND prefix = ").push_bind(p.clone()),
            (None, None) => {
                return Err(StoreError::Corrupt(
                    "an override names a number or a prefix".into(),
                ))
            }
        };
        if !q.fetch_all(&self.pool).await?.is_empty() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO time_zone_overrides (sid, account_sid, phone_number, prefix, time_zone, date_created, \
             date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(rec.phone_number.as_deref())
        .bind(rec.prefix.as_deref())
        .bind(&rec.time_zone)
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(true)
    }

    pub async fn time_zone_override(
        &self,
        account: &AccountSid,
        sid: &TimeZoneOverrideSid,
    ) -> Result<Option<TimeZoneOverrideRecord>, StoreError> {
        self.fetch_scoped(OVERRIDE_COLUMNS, account, sid.as_str(), decode_override)
            .await
    }

    /// Changes an override's zone; whether it existed in that account.
    pub async fn update_time_zone_override(
        &self,
        rec: &TimeZoneOverrideRecord,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE time_zone_overrides SET time_zone = $1, date_updated = $2 WHERE account_sid = $3 AND sid = $4",
        )
        .bind(&rec.time_zone)
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_time_zone_override(
        &self,
        account: &AccountSid,
        sid: &TimeZoneOverrideSid,
    ) -> Result<bool, StoreError> {
        self.delete_scoped("time_zone_overrides", account, sid.as_str())
            .await
    }

    /// One page of an account's overrides, newest first.
    pub async fn list_time_zone_overrides(
        &self,
        account: &AccountSid,
        page: &PageRequest,
    ) -> Result<Page<TimeZoneOverrideRecord>, StoreError> {
        self.page_of(
            Sql::scoped(OVERRIDE_COLUMNS, account),
            page,
            decode_override,
        )
        .await
    }

    /// Every override of an account (what a call's zone is resolved against).
    pub async fn all_time_zone_overrides(
        &self,
        account: &AccountSid,
    ) -> Result<Vec<TimeZoneOverrideRecord>, StoreError> {
        let rows = Sql::scoped(OVERRIDE_COLUMNS, account)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_override).collect()
    }

    /// The account's own calling window, if it set one.
    pub async fn calling_window(
        &self,
        account: &AccountSid,
    ) -> Result<Option<CallingWindowRecord>, StoreError> {
        let rows = Sql::scoped(WINDOW_COLUMNS, account)
            .fetch_all(&self.pool)
            .await?;
        rows.first().map(decode_window).transpose()
    }

    /// Sets (or replaces) the account's calling window; `date_created` is kept on a replace.
    pub async fn set_calling_window(&self, rec: &CallingWindowRecord) -> Result<(), StoreError> {
        let dates = rec.dates_off.join(",");
        let done = sqlx::query(
            "UPDATE calling_windows SET hours = $1, dates_off = $2, policy = $3, dial_policy = $4, date_updated = $5 \
             WHERE account_sid = $6",
        )
        .bind(&rec.hours)
        .bind(&dates)
        .bind(&rec.policy)
        .bind(&rec.dial_policy)
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .execute(self.writer())
        .await?;
        if done.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO calling_windows (account_sid, hours, dates_off, policy, dial_policy, date_created, \
                 date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(rec.account_sid.as_str())
            .bind(&rec.hours)
            .bind(&dates)
            .bind(&rec.policy)
            .bind(&rec.dial_policy)
            .bind(micros(rec.date_created))
            .bind(micros(rec.date_updated))
            .execute(self.writer())
            .await?;
        }
        Ok(())
    }

    /// Removes the account's calling window (it inherits its parent's again, or has none);
    /// whether it had one.
    pub async fn delete_calling_window(&self, account: &AccountSid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM calling_windows WHERE account_sid = $1")
            .bind(account.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use model::{CallRecord, CallSid, CallStatus};

    use super::*;
    use crate::testutil::*;

    fn tz_override(
        account: &AccountSid,
        number: Option<&str>,
        prefix: Option<&str>,
        zone: &str,
    ) -> TimeZoneOverrideRecord {
        let now = now();
        TimeZoneOverrideRecord {
            sid: TimeZoneOverrideSid::generate(),
            account_sid: *account,
            phone_number: number.map(str::to_owned),
            prefix: prefix.map(str::to_owned),
            time_zone: zone.into(),
            date_created: now,
            date_updated: now,
        }
    }

    #[tokio::test]
    async fn overrides_are_scoped_and_unique_per_key() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let o = tz_override(&a, None, Some("+1212"), "Asia/Tokyo");
        assert!(db.store.insert_time_zone_override(&o).await.unwrap());
        assert!(!db
            .store
            .insert_time_zone_override(&tz_override(&a, None, Some("+1212"), "UTC"))
            .await
            .unwrap());
        assert!(db
            .store
            .insert_time_zone_override(&tz_override(&b, None, Some("+1212"), "UTC"))
            .await
            .unwrap());
        assert!(db
            .store
            .insert_time_zone_override(&tz_override(&a, Some("+12125550100"), None, "UTC"))
            .await
            .unwrap());
        assert_eq!(
            db.store.time_zone_override(&a, &o.sid).await.unwrap(),
            Some(o.clone())
        );
        assert_eq!(db.store.time_zone_override(&b, &o.sid).await.unwrap(), None);
        assert_eq!(db.store.all_time_zone_overrides(&a).await.unwrap().len(), 2);
        let page = db
            .store
            .list_time_zone_overrides(&a, &PageRequest::first(1))
            .await
            .unwrap();
        assert_eq!((page.items.len(), page.next.is_some()), (1, true));
        let mut changed = o.clone();
        changed.time_zone = "Europe/Paris".into();
        assert!(db.store.update_time_zone_override(&changed).await.unwrap());
        assert_eq!(
            db.store
                .time_zone_override(&a, &o.sid)
                .await
                .unwrap()
                .unwrap()
                .time_zone,
            "Europe/Paris"
        );
        assert!(!db
            .store
            .delete_time_zone_override(&b, &o.sid)
            .await
            .unwrap());
        assert!(db
            .store
            .delete_time_zone_override(&a, &o.sid)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_window_is_set_replaced_and_removed() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        assert_eq!(db.store.calling_window(&a).await.unwrap(), None);
        let now = now();
        let mut w = CallingWindowRecord {
            account_sid: a,
            hours: "mon-fri 09:00-18:00".into(),
            dates_off: vec!["2026-12-25".into(), "2027-01-01".into()],
            policy: "defer".into(),
            dial_policy: "refuse".into(),
            date_created: now,
            date_updated: now,
        };
        db.store.set_calling_window(&w).await.unwrap();
        assert_eq!(db.store.calling_window(&a).await.unwrap(), Some(w.clone()));
        w.hours = "sat 10:00-12:00".into();
        w.dates_off.clear();
        w.date_updated = now + Duration::seconds(5);
        let mut replace = w.clone();
        replace.date_created = now + Duration::seconds(5);
        db.store.set_calling_window(&replace).await.unwrap();
        assert_eq!(db.store.calling_window(&a).await.unwrap(), Some(w));
        assert!(db.store.delete_calling_window(&a).await.unwrap());
        assert!(!db.store.delete_calling_window(&a).await.unwrap());
    }

    #[tokio::test]
    async fn a_scheduled_call_leaves_scheduled_once() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let mut call: CallRecord = crate::calls::tests::call(&a, "+33142685300");
        call.status = CallStatus::Scheduled;
        call.date_scheduled = Some(now() + Duration::minutes(3));
        db.store
            .insert_scheduled_call(&call, "{\"to\":\"+33142685300\"}")
            .await
            .unwrap();
        let listed = db.store.scheduled_calls().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].call, call);
        assert_eq!(listed[0].request, "{\"to\":\"+33142685300\"}");
        assert!(
            db.store.unfinished_calls().await.unwrap().is_empty(),
            "recovery leaves scheduled calls alone"
        );
        let later = now() + Duration::minutes(10);
        assert!(db
            .store
            .reschedule_call(&a, &call.sid, later, now())
            .await
            .unwrap());
        assert_eq!(
            db.store
                .scheduled_call(&a, &call.sid)
                .await
                .unwrap()
                .unwrap()
                .call
                .date_scheduled,
            Some(later)
        );
        assert!(db
            .store
            .leave_scheduled(&a, &call.sid, CallStatus::Canceled, now())
            .await
            .unwrap());
        assert!(!db
            .store
            .leave_scheduled(&a, &call.sid, CallStatus::Queued, now())
            .await
            .unwrap());
        let stored = db.store.call(&a, &call.sid).await.unwrap().unwrap();
        assert_eq!(
            (stored.status, stored.duration),
            (CallStatus::Canceled, Some(0))
        );
        assert!(db.store.scheduled_calls().await.unwrap().is_empty());
        let other = account(&db.store).await;
        assert!(!db
            .store
            .leave_scheduled(&other, &CallSid::generate(), CallStatus::Queued, now())
            .await
            .unwrap());
    }
}
