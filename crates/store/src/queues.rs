//! Call queues: the named queues of an account. Who waits in one is live state of the runtime,
//! not stored here.

use chrono::Utc;
use model::{AccountSid, QueueRecord, QueueSid};
use sqlx::Row;

use crate::{micros, sid_col, time_col, u32_col, DbRow, Page, PageRequest, Sql, Store, StoreError};

const COLUMNS: &str =
    "SELECT sid, account_sid, friendly_name, max_size, date_created, date_updated FROM queues";

fn decode(r: &DbRow) -> Result<QueueRecord, StoreError> {
    Ok(QueueRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        max_size: u32_col(r, "max_size")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

/// A unique violation on a queue write can only be the name (SIDs are random): say so.
fn name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::DuplicateQueueName(name.to_owned())
        }
        e => e.into(),
    }
}

impl Store {
    /// Adds a queue to `rec.account_sid`. Fails with [`StoreError::DuplicateQueueName`] when the
    /// account already has a queue of that name.
    pub async fn create_queue(&self, rec: &QueueRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO queues (sid, account_sid, friendly_name, max_size, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.friendly_name)
        .bind(i64::from(rec.max_size))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await
        .map_err(|e| name_taken(e, &rec.friendly_name))?;
        Ok(())
    }

    pub async fn queue(
        &self,
        account: &AccountSid,
        sid: &QueueSid,
    ) -> Result<Option<QueueRecord>, StoreError> {
        self.fetch_scoped(COLUMNS, account, sid.as_str(), decode)
            .await
    }

    /// The account's queue of that name (names are unique within an account).
    pub async fn queue_by_name(
        &self,
        account: &AccountSid,
        friendly_name: &str,
    ) -> Result<Option<QueueRecord>, StoreError> {
        let sql = format!("{COLUMNS} WHERE account_sid = $1 AND friendly_name = $2");
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(friendly_name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Queues of one account, newest first.
    pub async fn list_queues(
        &self,
        account: &AccountSid,
        page: &PageRequest,
    ) -> Result<Page<QueueRecord>, StoreError> {
        self.page_of(Sql::scoped(COLUMNS, account), page, decode)
            .await
    }

    /// Saves `friendly_name`, `max_size` and `date_updated` of a queue of `rec.account_sid`.
    /// Returns whether the queue existed; fails with [`StoreError::DuplicateQueueName`] when
    /// another queue of the account has the new name.
    pub async fn update_queue(&self, rec: &QueueRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE queues SET friendly_name = $1, max_size = $2, date_updated = $3 \
             WHERE account_sid = $4 AND sid = $5",
        )
        .bind(&rec.friendly_name)
        .bind(i64::from(rec.max_size))
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await
        .map_err(|e| name_taken(e, &rec.friendly_name))?;
        Ok(done.rows_affected() > 0)
    }

    /// Returns whether the queue existed in that account. Whether it may go (Twilio keeps a
    /// queue that calls wait in) is the caller's decision: the store does not see live calls.
    pub async fn delete_queue(
        &self,
        account: &AccountSid,
        sid: &QueueSid,
    ) -> Result<bool, StoreError> {
        self.delete_scoped("queues", account, sid.as_str()).await
    }

    /// The account's queue named `friendly_name`, created with Twilio's default size
    /// ([`QueueRecord::DEFAULT_MAX_SIZE`]) when there is none: `<Enqueue>` naming a queue that
    /// does not exist yet makes it, as Twilio does. Safe to race: concurrent callers get the
    /// same queue.
    pub async fn queue_or_create(
        &self,
        account: &AccountSid,
        friendly_name: &str,
    ) -> Result<QueueRecord, StoreError> {
        // A concurrent delete can remove the row between the insert and the read; then go again.
        for _ in 0..3 {
            let now = micros(Utc::now());
            sqlx::query(
                "INSERT INTO queues (sid, account_sid, friendly_name, max_size, date_created, date_updated) \
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (account_sid, friendly_name) DO NOTHING",
            )
            .bind(QueueSid::generate().as_str())
            .bind(account.as_str())
            .bind(friendly_name)
            .bind(i64::from(QueueRecord::DEFAULT_MAX_SIZE))
            .bind(now)
            .execute(self.writer())
            .await?;
            if let Some(queue) = self.queue_by_name(account, friendly_name).await? {
                return Ok(queue);
            }
        }
        Err(StoreError::Corrupt(format!(
            "queue {friendly_name:?} vanished as it was created, three times"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::testutil::*;

    fn queue(account: &AccountSid, name: &str) -> QueueRecord {
        let now = now();
        QueueRecord {
            sid: QueueSid::generate(),
            account_sid: *account,
            friendly_name: name.into(),
            max_size: 100,
            date_created: now,
            date_updated: now,
        }
    }

    #[tokio::test]
    async fn queue_lifecycle_is_scoped_by_account_and_names_are_unique_per_account() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let mut q = queue(&a, "support");
        db.store.create_queue(&q).await.unwrap();
        let dup = db
            .store
            .create_queue(&queue(&a, "support"))
            .await
            .unwrap_err();
        assert!(
            matches!(dup, StoreError::DuplicateQueueName(ref n) if n == "support"),
            "{dup}"
        );
        // Another account may use the name.
        db.store.create_queue(&queue(&b, "support")).await.unwrap();

        assert_eq!(db.store.queue(&a, &q.sid).await.unwrap().as_ref(), Some(&q));
        assert!(db.store.queue(&b, &q.sid).await.unwrap().is_none());
        assert_eq!(
            db.store
                .queue_by_name(&a, "support")
                .await
                .unwrap()
                .as_ref(),
            Some(&q)
        );
        assert!(db.store.queue_by_name(&a, "sales").await.unwrap().is_none());

        q.friendly_name = "help".into();
        q.max_size = 5000;
        q.date_updated = q.date_created + chrono::Duration::seconds(3);
        assert!(db.store.update_queue(&q).await.unwrap());
        assert_eq!(db.store.queue(&a, &q.sid).await.unwrap().as_ref(), Some(&q));
        let sales = queue(&a, "sales");
        db.store.create_queue(&sales).await.unwrap();
        let mut clash = sales.clone();
        clash.friendly_name = "help".into();
        assert!(matches!(
            db.store.update_queue(&clash).await,
            Err(StoreError::DuplicateQueueName(_))
        ));
        let mut foreign = q.clone();
        foreign.account_sid = b;
        assert!(!db.store.update_queue(&foreign).await.unwrap());

        assert!(!db.store.delete_queue(&b, &q.sid).await.unwrap());
        assert!(db.store.delete_queue(&a, &q.sid).await.unwrap());
        assert!(db.store.queue(&a, &q.sid).await.unwrap().is_none());
        assert!(!db.store.delete_queue(&a, &q.sid).await.unwrap());
    }

    #[tokio::test]
    async fn queues_page_newest_first() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let base = now();
        for i in 0..7 {
            let mut q = queue(&a, &format!("q{i}"));
            q.date_created = base + chrono::Duration::seconds(i);
            db.store.create_queue(&q).await.unwrap();
        }
        db.store.create_queue(&queue(&b, "other")).await.unwrap();
        let first = db
            .store
            .list_queues(&a, &PageRequest::first(5))
            .await
            .unwrap();
        let names: Vec<&str> = first
            .items
            .iter()
            .map(|q| q.friendly_name.as_str())
            .collect();
        assert_eq!(names, ["q6", "q5", "q4", "q3", "q2"]);
        let rest = PageRequest {
            size: 5,
            after: first.next,
            offset: 0,
        };
        let second = db.store.list_queues(&a, &rest).await.unwrap();
        let names: Vec<&str> = second
            .items
            .iter()
            .map(|q| q.friendly_name.as_str())
            .collect();
        assert_eq!((names, second.next), (vec!["q1", "q0"], None));
    }

    #[tokio::test]
    async fn enqueue_to_an_unknown_name_creates_the_queue_once_even_when_racing() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let made = (0..8).map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move { store.queue_or_create(&a, "overflow").await })
        });
        let mut sids = HashSet::new();
        for m in made.collect::<Vec<_>>() {
            let q = m.await.unwrap().unwrap();
            assert_eq!(
                (q.friendly_name.as_str(), q.max_size, q.account_sid),
                ("overflow", QueueRecord::DEFAULT_MAX_SIZE, a)
            );
            sids.insert(q.sid);
        }
        assert_eq!(sids.len(), 1, "one queue for all");
        // An existing queue keeps its settings.
        let mut q = db
            .store
            .queue_by_name(&a, "overflow")
            .await
            .unwrap()
            .unwrap();
        q.max_size = 7;
        db.store.update_queue(&q).await.unwrap();
        assert_eq!(
            db.store
                .queue_or_create(&a, "overflow")
                .await
                .unwrap()
                .max_size,
            7
        );
        // The same name in another account is another queue.
        assert_ne!(
            db.store.queue_or_create(&b, "overflow").await.unwrap().sid,
            q.sid
        );
    }
}
