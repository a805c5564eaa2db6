//! Recordings and notifications: the artefacts a call leaves behind.

use model::{AccountSid, CallSid, ConferenceSid, NotificationRecord, RecordingRecord, RecordingSid};
use sqlx::Row;

use crate::{
    micros, Sql, opt_sid_col, sid_col, time_col, u32_col, DbRow, Page, PageRequest, Store,
    StoreError,
};

const RECORDING_COLUMNS: &str = "SELECT sid, account_sid, call_sid, conference_sid, duration, \
    channels, status, source, start_time, date_created, date_updated, file_name FROM recordings";

/// Filters of the Recordings lists (exact matches; both given means both must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingFilter {
    pub call_sid: Option<CallSid>,
    pub conference_sid: Option<ConferenceSid>,
}

const NOTIFICATION_COLUMNS: &str = "SELECT sid, account_sid, call_sid, error_code, log, \
    message_text, message_date, request_url, request_method, response_body, date_created, \
    date_updated FROM notifications";

fn decode_recording(r: &DbRow) -> Result<RecordingRecord, StoreError> {
    Ok(RecordingRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        call_sid: sid_col(r, "call_sid")?,
        conference_sid: opt_sid_col(r, "conference_sid")?,
        duration: u32_col(r, "duration")?,
        channels: u32_col(r, "channels")?,
        status: r.try_get("status")?,
        source: r.try_get("source")?,
        start_time: time_col(r, "start_time")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
        file_name: r.try_get("file_name")?,
    })
}

fn decode_notification(r: &DbRow) -> Result<NotificationRecord, StoreError> {
    let log = u32_col(r, "log")?;
    Ok(NotificationRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        call_sid: opt_sid_col(r, "call_sid")?,
        error_code: u32_col(r, "error_code")?,
        log: u8::try_from(log).map_err(|_| StoreError::Corrupt(format!("log {log}")))?,
        message_text: r.try_get("message_text")?,
        message_date: time_col(r, "message_date")?,
        request_url: r.try_get("request_url")?,
        request_method: r.try_get("request_method")?,
        response_body: r.try_get("response_body")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

impl Store {
    pub async fn insert_recording(&self, rec: &RecordingRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO recordings (sid, account_sid, call_sid, duration, channels, status, source, \
             start_time, date_created, date_updated, file_name, conference_sid) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(rec.call_sid.as_str())
        .bind(i64::from(rec.duration))
        .bind(i64::from(rec.channels))
        .bind(&rec.status)
        .bind(&rec.source)
        .bind(micros(rec.start_time))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .bind(&rec.file_name)
        .bind(rec.conference_sid.as_ref().map(|s| s.as_str()))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Inserts the recording, or saves every field but `sid`, `account_sid` and `date_created`
    /// over an existing row of the same sid and account. Crash recovery finalizes a file and
    /// writes its row this way, so running it again after it was itself interrupted is harmless.
    /// A row of the same sid in another account is left alone and counts as not written:
    /// returns whether the recording row of `rec.account_sid` now holds `rec`.
    pub async fn upsert_recording(&self, rec: &RecordingRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO recordings (sid, account_sid, call_sid, duration, channels, status, source, \
             start_time, date_created, date_updated, file_name, conference_sid) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (sid) DO UPDATE SET call_sid = excluded.call_sid, \
             conference_sid = excluded.conference_sid, \
             duration = excluded.duration, channels = excluded.channels, status = excluded.status, \
             source = excluded.source, start_time = excluded.start_time, \
             date_updated = excluded.date_updated, file_name = excluded.file_name \
             WHERE recordings.account_sid = excluded.account_sid",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(rec.call_sid.as_str())
        .bind(i64::from(rec.duration))
        .bind(i64::from(rec.channels))
        .bind(&rec.status)
        .bind(&rec.source)
        .bind(micros(rec.start_time))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .bind(&rec.file_name)
        .bind(rec.conference_sid.as_ref().map(|s| s.as_str()))
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn recording(
        &self,
        account: &AccountSid,
        sid: &RecordingSid,
    ) -> Result<Option<RecordingRecord>, StoreError> {
        self.fetch_scoped(RECORDING_COLUMNS, account, sid.as_str(), decode_recording).await
    }

    /// Recordings of one account, newest first: all of them, or those of one call (Twilio's
    /// `Calls/{CallSid}/Recordings`, `Recordings?CallSid=`) and/or of one conference
    /// (`Conferences/{ConferenceSid}/Recordings`, `Recordings?ConferenceSid=`).
    pub async fn list_recordings(
        &self,
        account: &AccountSid,
        filter: &RecordingFilter,
        page: &PageRequest,
    ) -> Result<Page<RecordingRecord>, StoreError> {
        let mut q = Sql::scoped(RECORDING_COLUMNS, account);
        if let Some(call) = &filter.call_sid {
            q.push(" AND call_sid = ").push_bind(call.as_str().to_owned());
        }
        if let Some(conference) = &filter.conference_sid {
            q.push(" AND conference_sid = ").push_bind(conference.as_str().to_owned());
        }
        self.page_of(q, page, decode_recording).await
    }

    pub async fn insert_notification(&self, rec: &NotificationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notifications (sid, account_sid, call_sid, error_code, log, message_text, \
             message_date, request_url, request_method, response_body, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(rec.call_sid.as_ref().map(|s| s.as_str()))
        .bind(i64::from(rec.error_code))
        .bind(i64::from(rec.log))
        .bind(&rec.message_text)
        .bind(micros(rec.message_date))
        .bind(&rec.request_url)
        .bind(&rec.request_method)
        .bind(&rec.response_body)
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Notifications of one account (optionally of one call), newest first.
    pub async fn list_notifications(
        &self,
        account: &AccountSid,
        call_sid: Option<&CallSid>,
        page: &PageRequest,
    ) -> Result<Page<NotificationRecord>, StoreError> {
        let mut q = Sql::scoped(NOTIFICATION_COLUMNS, account);
        if let Some(call) = call_sid {
            q.push(" AND call_sid = ").push_bind(call.as_str().to_owned());
        }
        self.page_of(q, page, decode_notification).await
    }
}

#[cfg(test)]
mod tests {
    use model::NotificationSid;

    use super::*;
    use crate::testutil::*;

    fn recording(account: &AccountSid, call: &CallSid) -> RecordingRecord {
        let now = now();
        let sid = RecordingSid::generate();
        RecordingRecord {
            sid,
            account_sid: *account,
            call_sid: *call,
            conference_sid: None,
            duration: 7,
            channels: 1,
            status: "completed".into(),
            source: "RecordVerb".into(),
            start_time: now,
            date_created: now,
            date_updated: now,
            file_name: format!("{sid}.wav"),
        }
    }

    #[tokio::test]
    async fn recordings_by_account_and_call() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let (c1, c2) = (CallSid::generate(), CallSid::generate());
        let r1 = recording(&a, &c1);
        db.store.insert_recording(&r1).await.unwrap();
        db.store.insert_recording(&recording(&a, &c2)).await.unwrap();
        db.store.insert_recording(&recording(&b, &c1)).await.unwrap();

        assert_eq!(db.store.recording(&a, &r1.sid).await.unwrap().as_ref(), Some(&r1));
        assert!(db.store.recording(&b, &r1.sid).await.unwrap().is_none());
        let all = db.store.list_recordings(&a, &RecordingFilter::default(), &PageRequest::first(50)).await.unwrap();
        assert_eq!(all.items.len(), 2);
        let by_call = RecordingFilter { call_sid: Some(c1), ..RecordingFilter::default() };
        let one = db.store.list_recordings(&a, &by_call, &PageRequest::first(50)).await.unwrap();
        assert_eq!(one.items, vec![r1]);
    }

    #[tokio::test]
    async fn conference_recordings_keep_their_conference_and_list_by_it() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let (call, room) = (CallSid::generate(), ConferenceSid::generate());
        let mut mix = recording(&a, &call);
        mix.conference_sid = Some(room);
        mix.source = "Conference".into();
        db.store.insert_recording(&mix).await.unwrap();
        db.store.insert_recording(&recording(&a, &call)).await.unwrap();
        let mut foreign = recording(&b, &call);
        foreign.conference_sid = Some(room);
        db.store.insert_recording(&foreign).await.unwrap();

        assert_eq!(db.store.recording(&a, &mix.sid).await.unwrap().as_ref(), Some(&mix));
        let by_room = RecordingFilter { conference_sid: Some(room), ..RecordingFilter::default() };
        let page = db.store.list_recordings(&a, &by_room, &PageRequest::first(50)).await.unwrap();
        assert_eq!(page.items, vec![mix.clone()]);
        let both = RecordingFilter { call_sid: Some(call), conference_sid: Some(room) };
        assert_eq!(db.store.list_recordings(&a, &both, &PageRequest::first(50)).await.unwrap().items, vec![mix.clone()]);
        let by_call = RecordingFilter { call_sid: Some(call), ..RecordingFilter::default() };
        assert_eq!(db.store.list_recordings(&a, &by_call, &PageRequest::first(50)).await.unwrap().items.len(), 2);
        let other = RecordingFilter { conference_sid: Some(ConferenceSid::generate()), ..RecordingFilter::default() };
        assert!(db.store.list_recordings(&a, &other, &PageRequest::first(50)).await.unwrap().items.is_empty());

        // The upsert of crash recovery keeps (and can set) the conference.
        mix.duration = 30;
        assert!(db.store.upsert_recording(&mix).await.unwrap());
        assert_eq!(db.store.recording(&a, &mix.sid).await.unwrap().unwrap().conference_sid, Some(room));
    }

    #[tokio::test]
    async fn notifications_by_account_and_call() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let call = CallSid::generate();
        let now = now();
        let n = NotificationRecord {
            sid: NotificationSid::generate(),
            account_sid: a,
            call_sid: Some(call),
            error_code: 12100,
            log: NotificationRecord::LOG_ERROR,
            message_text: "Document parse failure".into(),
            message_date: now,
            request_url: Some("https://app.example/voice".into()),
            request_method: Some("POST".into()),
            response_body: Some("<Response><Say>".into()),
            date_created: now,
            date_updated: now,
        };
        db.store.insert_notification(&n).await.unwrap();
        let page = db.store.list_notifications(&a, Some(&call), &PageRequest::first(50)).await.unwrap();
        assert_eq!(page.items, vec![n]);
        assert!(db.store.list_notifications(&b, None, &PageRequest::first(50)).await.unwrap().items.is_empty());
        let other = CallSid::generate();
        assert!(db.store.list_notifications(&a, Some(&other), &PageRequest::first(50)).await.unwrap().items.is_empty());
    }

    #[tokio::test]
    async fn upsert_inserts_then_updates_within_its_account_only() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let call = CallSid::generate();
        let mut r = recording(&a, &call);
        r.status = "processing".into();
        assert!(db.store.upsert_recording(&r).await.unwrap());
        assert_eq!(db.store.recording(&a, &r.sid).await.unwrap().as_ref(), Some(&r));

        let created = r.date_created;
        r.status = "completed".into();
        r.duration = 3;
        r.file_name = format!("{a}/{call}/{}.wav", r.sid);
        r.date_created = created + chrono::Duration::seconds(5);
        assert!(db.store.upsert_recording(&r).await.unwrap());
        let stored = db.store.recording(&a, &r.sid).await.unwrap().unwrap();
        assert_eq!((stored.status.as_str(), stored.duration, stored.file_name.as_str()), ("completed", 3, r.file_name.as_str()));
        assert_eq!(stored.date_created, created, "date_created is the first write's");

        // Same sid, other account: the row stays the first account's.
        let mut foreign = r.clone();
        foreign.account_sid = b;
        foreign.duration = 99;
        assert!(!db.store.upsert_recording(&foreign).await.unwrap());
        assert!(db.store.recording(&b, &r.sid).await.unwrap().is_none());
        assert_eq!(db.store.recording(&a, &r.sid).await.unwrap().unwrap().duration, 3);
    }
}
