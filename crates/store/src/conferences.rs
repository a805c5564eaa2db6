//! Conferences: one row per run of a room, written by the runtime as the room opens, starts and
//! ends, read by the API. Participants are live state of the runtime, not stored here.

use chrono::{DateTime, Utc};
use model::{AccountSid, ConferenceRecord, ConferenceSid, ConferenceStatus};
use sqlx::Row;

use crate::{
    micros, opt_sid_col, sid_col, time_col, DbRow, Page, PageRequest, Sql, Store, StoreError,
};

const COLUMNS: &str =
    "SELECT sid, account_sid, friendly_name, status, region, reason_conference_ended, \
    call_sid_ending_conference, date_created, date_updated FROM conferences";

/// A span of time, `from` included and `before` excluded; an open end is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
}

/// Filters of the Conferences list, as Twilio's: `FriendlyName` and `Status` match exactly, the
/// `DateCreated` and `DateUpdated` families become time ranges (the API turns days into them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConferenceFilter {
    pub friendly_name: Option<String>,
    pub status: Option<ConferenceStatus>,
    pub created: TimeRange,
    pub updated: TimeRange,
}

fn decode(r: &DbRow) -> Result<ConferenceRecord, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(ConferenceRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        status: status
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
        region: r.try_get("region")?,
        reason_conference_ended: r.try_get("reason_conference_ended")?,
        call_sid_ending_conference: opt_sid_col(r, "call_sid_ending_conference")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

fn push_range(q: &mut Sql, column: &str, range: &TimeRange) {
    if let Some(from) = range.from {
        q.push(&format!(" AND {column} >= "))
            .push_bind(micros(from));
    }
    if let Some(before) = range.before {
        q.push(&format!(" AND {column} < "))
            .push_bind(micros(before));
    }
}

impl Store {
    pub async fn insert_conference(&self, rec: &ConferenceRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conferences (sid, account_sid, friendly_name, status, region, \
             reason_conference_ended, call_sid_ending_conference, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.friendly_name)
        .bind(rec.status.as_str())
        .bind(&rec.region)
        .bind(&rec.reason_conference_ended)
        .bind(rec.call_sid_ending_conference.as_ref().map(|s| s.as_str()))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Saves `status`, `reason_conference_ended`, `call_sid_ending_conference` and
    /// `date_updated` of a conference of `rec.account_sid` (its name, region and creation stay).
    /// Returns whether the conference existed.
    pub async fn update_conference(&self, rec: &ConferenceRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conferences SET status = $1, reason_conference_ended = $2, \
             call_sid_ending_conference = $3, date_updated = $4 WHERE account_sid = $5 AND sid = $6",
        )
        .bind(rec.status.as_str())
        .bind(&rec.reason_conference_ended)
        .bind(rec.call_sid_ending_conference.as_ref().map(|s| s.as_str()))
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn conference(
        &self,
        account: &AccountSid,
        sid: &ConferenceSid,
    ) -> Result<Option<ConferenceRecord>, StoreError> {
        self.fetch_scoped(COLUMNS, account, sid.as_str(), decode)
            .await
    }

    /// The account's conference named `friendly_name` that has not ended (`init` or
    /// `in-progress`), if any: the one a new participant of that room joins. Should two be open
    /// (two nodes racing to open the room), the newest.
    pub async fn open_conference_by_name(
        &self,
        account: &AccountSid,
        friendly_name: &str,
    ) -> Result<Option<ConferenceRecord>, StoreError> {
        let sql = format!(
            "{COLUMNS} WHERE account_sid = $1 AND friendly_name = $2 AND status <> 'completed' \
             ORDER BY date_created DESC, sid DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(friendly_name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Conferences of one account, newest first.
    pub async fn list_conferences(
        &self,
        account: &AccountSid,
        filter: &ConferenceFilter,
        page: &PageRequest,
    ) -> Result<Page<ConferenceRecord>, StoreError> {
        let mut q = Sql::scoped(COLUMNS, account);
        if let Some(name) = &filter.friendly_name {
            q.push(" AND friendly_name = ").push_bind(name.clone());
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        push_range(&mut q, "date_created", &filter.created);
        push_range(&mut q, "date_updated", &filter.updated);
        self.page_of(q, page, decode).await
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use model::CallSid;

    use super::*;
    use crate::testutil::*;

    fn conference(account: &AccountSid, name: &str, created: DateTime<Utc>) -> ConferenceRecord {
        ConferenceRecord {
            sid: ConferenceSid::generate(),
            account_sid: *account,
            friendly_name: name.into(),
            status: ConferenceStatus::Init,
            region: ConferenceRecord::REGION.into(),
            reason_conference_ended: None,
            call_sid_ending_conference: None,
            date_created: created,
            date_updated: created,
        }
    }

    #[tokio::test]
    async fn a_conference_opens_starts_and_ends_within_its_account() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let mut c = conference(&a, "standup", now());
        db.store.insert_conference(&c).await.unwrap();
        assert_eq!(
            db.store.conference(&a, &c.sid).await.unwrap().as_ref(),
            Some(&c)
        );
        assert!(db.store.conference(&b, &c.sid).await.unwrap().is_none());
        assert_eq!(
            db.store
                .open_conference_by_name(&a, "standup")
                .await
                .unwrap()
                .as_ref(),
            Some(&c)
        );
        assert!(db
            .store
            .open_conference_by_name(&b, "standup")
            .await
            .unwrap()
            .is_none());

        c.status = ConferenceStatus::InProgress;
        c.date_updated = c.date_created + Duration::seconds(1);
        assert!(db.store.update_conference(&c).await.unwrap());
        let ender = CallSid::generate();
        c.status = ConferenceStatus::Completed;
        c.reason_conference_ended = Some("participant-with-end-conference-on-exit-left".into());
        c.call_sid_ending_conference = Some(ender);
        c.date_updated = c.date_created + Duration::seconds(60);
        // Fields other than the status ones are not rewritten.
        let mut sent = c.clone();
        sent.friendly_name = "renamed".into();
        assert!(db.store.update_conference(&sent).await.unwrap());
        assert_eq!(
            db.store.conference(&a, &c.sid).await.unwrap().as_ref(),
            Some(&c)
        );
        assert!(
            db.store
                .open_conference_by_name(&a, "standup")
                .await
                .unwrap()
                .is_none(),
            "ended"
        );
        sent.account_sid = b;
        assert!(!db.store.update_conference(&sent).await.unwrap());

        // The room's name opens a new conference.
        let again = conference(&a, "standup", now());
        db.store.insert_conference(&again).await.unwrap();
        assert_eq!(
            db.store
                .open_conference_by_name(&a, "standup")
                .await
                .unwrap()
                .map(|c| c.sid),
            Some(again.sid)
        );
    }

    #[tokio::test]
    async fn conferences_list_with_twilios_filters() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let day = DateTime::parse_from_rfc3339("2026-03-10T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut made = Vec::new();
        for (i, name) in ["alpha", "beta", "alpha", "gamma"].into_iter().enumerate() {
            let mut c = conference(&a, name, day + Duration::hours(20 * i as i64));
            if i < 2 {
                c.status = ConferenceStatus::Completed;
                c.date_updated = c.date_created + Duration::hours(30);
            }
            db.store.insert_conference(&c).await.unwrap();
            made.push(c);
        }
        db.store
            .insert_conference(&conference(&b, "alpha", day))
            .await
            .unwrap();
        let list = |filter: ConferenceFilter| {
            let store = db.store.clone();
            async move {
                let page = store
                    .list_conferences(&a, &filter, &PageRequest::first(50))
                    .await
                    .unwrap();
                page.items.into_iter().map(|c| c.sid).collect::<Vec<_>>()
            }
        };
        let sids = |idx: &[usize]| idx.iter().map(|&i| made[i].sid).collect::<Vec<_>>();
        assert_eq!(list(ConferenceFilter::default()).await, sids(&[3, 2, 1, 0]));
        let alpha = ConferenceFilter {
            friendly_name: Some("alpha".into()),
            ..Default::default()
        };
        assert_eq!(list(alpha).await, sids(&[2, 0]));
        let done = ConferenceFilter {
            status: Some(ConferenceStatus::Completed),
            ..Default::default()
        };
        assert_eq!(list(done).await, sids(&[1, 0]));
        // Created on the first day: 00:00 and 20:00.
        let first_day = TimeRange {
            from: Some(day),
            before: Some(day + Duration::days(1)),
        };
        assert_eq!(
            list(ConferenceFilter {
                created: first_day,
                ..Default::default()
            })
            .await,
            sids(&[1, 0])
        );
        let later = TimeRange {
            from: Some(day + Duration::days(2)),
            before: None,
        };
        assert_eq!(
            list(ConferenceFilter {
                created: later,
                ..Default::default()
            })
            .await,
            sids(&[3])
        );
        // Updated before the second day: only the open one of the first day (updated at creation).
        let updated = TimeRange {
            from: None,
            before: Some(day + Duration::days(1)),
        };
        assert_eq!(
            list(ConferenceFilter {
                updated,
                ..Default::default()
            })
            .await,
            sids(&[])
        );
        let updated = TimeRange {
            from: None,
            before: Some(day + Duration::days(2)),
        };
        assert_eq!(
            list(ConferenceFilter {
                updated,
                ..Default::default()
            })
            .await,
            sids(&[2, 0])
        );
    }
}
