//! Persistence for Dialtone: accounts, phone numbers, calls, recordings and notifications, in SQL
//! through `sqlx`.
//!
//! Driven by `api` (REST reads and writes) and `node` (call records as calls progress, the routing
//! index at start and on number changes). Every method is `async` and takes `&self`; `Store` is a
//! cheap clone around a connection pool.
//!
//! Architecture invariant: every query that reads tenant data is scoped by an `AccountSid`; the
//! only system-wide reads are the routing lookups ([`Store::number_by_phone`],
//! [`Store::all_numbers`]) and the counter [`Store::active_calls_count`].
//!
//! Backend: SQLite (the default, one file) in WAL mode with `synchronous=FULL`: every committed
//! call or recording row survives a power cut, at the cost of one fsync per commit, which is cheap
//! at call-signalling rates. The SQL is kept portable (`$n` binds through `QueryBuilder`, BIGINT
//! microsecond timestamps, `ON CONFLICT DO NOTHING`) so a PostgreSQL pool can sit beside the SQLite
//! one; the SQLite specifics live in [`Store::open`] only.

mod calls;
mod error;
mod numbers;
mod page;
mod recordings;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use model::sid::SidKind;
use model::{AccountRecord, AccountSid, Sid};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::Row;

pub use calls::CallFilter;
pub use error::StoreError;
pub use numbers::NumberFilter;
pub use page::{Cursor, Page, PageRequest};

type Db = sqlx::Sqlite;
type DbRow = sqlx::sqlite::SqliteRow;

/// A handle on the database. Clones share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    pool: sqlx::Pool<Db>,
}

impl Store {
    /// Opens (creating if needed, with its parent directory) the database and brings its schema
    /// up to date with the embedded migrations.
    ///
    /// Accepts `sqlite://path/to/file.db`, `sqlite:file.db`, `sqlite::memory:` or a bare file path.
    pub async fn open(database_url: &str) -> Result<Store, StoreError> {
        let lower = database_url.to_ascii_lowercase();
        let options = if lower.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(database_url)?
        } else if lower.contains("://") {
            return Err(StoreError::UnsupportedUrl(scheme_of(database_url)));
        } else {
            SqliteConnectOptions::new().filename(database_url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Writers queue behind each other instead of failing with SQLITE_BUSY.
            .busy_timeout(Duration::from_secs(5));
        let in_memory = options.get_filename() == Path::new(":memory:");
        if !in_memory {
            if let Some(dir) = options.get_filename().parent() {
                if !dir.as_os_str().is_empty() {
                    tokio::fs::create_dir_all(dir).await?;
                }
            }
        }
        // An in-memory database exists per connection, so it must have exactly one.
        let max = if in_memory { 1 } else { 8 };
        let pool = SqlitePoolOptions::new().max_connections(max).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Waits for open connections to finish and closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Creates the account if it does not exist yet (first start). An existing account keeps its
    /// token and name: those are changed through the API, not by restarting.
    pub async fn ensure_account(
        &self,
        sid: &AccountSid,
        auth_token: &str,
        friendly_name: &str,
    ) -> Result<AccountRecord, StoreError> {
        let now = micros(Utc::now());
        sqlx::query(
            "INSERT INTO accounts (sid, friendly_name, auth_token, status, date_created, date_updated) \
             VALUES ($1, $2, $3, 'active', $4, $4) ON CONFLICT (sid) DO NOTHING",
        )
        .bind(sid.as_str())
        .bind(friendly_name)
        .bind(auth_token)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.account(sid)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("account {sid} vanished after insert")))
    }

    /// How many accounts exist: zero on a first start, when the binary creates the main one.
    pub async fn account_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts").fetch_one(&self.pool).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn account(&self, sid: &AccountSid) -> Result<Option<AccountRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT sid, friendly_name, auth_token, status, date_created, date_updated \
             FROM accounts WHERE sid = $1",
        )
        .bind(sid.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(AccountRecord {
                sid: sid_col(&r, "sid")?,
                friendly_name: r.try_get("friendly_name")?,
                auth_token: r.try_get("auth_token")?,
                status: r.try_get("status")?,
                date_created: time_col(&r, "date_created")?,
                date_updated: time_col(&r, "date_updated")?,
            })
        })
        .transpose()
    }
}

fn scheme_of(url: &str) -> String {
    // Only the scheme: the rest of a URL may carry a password.
    url.split_once("://").map_or("", |(s, _)| s).to_owned()
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn time_of(v: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| StoreError::Corrupt(format!("time {v} out of range")))
}

fn time_col(row: &DbRow, col: &str) -> Result<DateTime<Utc>, StoreError> {
    time_of(row.try_get(col)?)
}

fn opt_time_col(row: &DbRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    row.try_get::<Option<i64>, _>(col)?.map(time_of).transpose()
}

fn sid_col<K: SidKind>(row: &DbRow, col: &str) -> Result<Sid<K>, StoreError> {
    let s: String = row.try_get(col)?;
    s.parse().map_err(|e| StoreError::Corrupt(format!("{col} {s:?}: {e}")))
}

fn opt_sid_col<K: SidKind>(row: &DbRow, col: &str) -> Result<Option<Sid<K>>, StoreError> {
    let s: Option<String> = row.try_get(col)?;
    s.map(|s| s.parse().map_err(|e| StoreError::Corrupt(format!("{col} {s:?}: {e}")))).transpose()
}

fn u32_col(row: &DbRow, col: &str) -> Result<u32, StoreError> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{col} {v} out of range")))
}

/// Appends the keyset condition, order and limit (one extra row, to learn whether more follow).
fn push_page(q: &mut sqlx::QueryBuilder<'_, Db>, page: &PageRequest) {
    if let Some(c) = &page.after {
        q.push(" AND (date_created < ")
            .push_bind(c.date_created_micros)
            .push(" OR (date_created = ")
            .push_bind(c.date_created_micros)
            .push(" AND sid < ")
            .push_bind(c.sid.clone())
            .push("))");
    }
    q.push(" ORDER BY date_created DESC, sid DESC LIMIT ").push_bind(i64::from(page.size.max(1)) + 1);
    if page.after.is_none() && page.offset > 0 {
        q.push(" OFFSET ").push_bind(i64::try_from(page.offset).unwrap_or(i64::MAX));
    }
}

/// Cuts the extra row off and turns the last kept row into the next cursor.
fn finish_page<T>(
    mut items: Vec<T>,
    page: &PageRequest,
    key: impl Fn(&T) -> Cursor,
) -> Page<T> {
    let size = page.size.max(1) as usize;
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next }
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    pub struct TempDb {
        pub dir: std::path::PathBuf,
        pub store: Store,
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    pub async fn temp_store() -> TempDb {
        let dir = std::env::temp_dir().join(format!("dialtone-store-{}", rand::random::<u64>()));
        // A nested, missing directory: `open` must create it.
        let url = format!("sqlite://{}/nested/dialtone.db", dir.display());
        let store = Store::open(&url).await.expect("open temp store");
        TempDb { dir, store }
    }

    /// The current time at the microsecond precision the store keeps.
    pub fn now() -> DateTime<Utc> {
        let micros = Utc::now().timestamp_micros();
        DateTime::from_timestamp_micros(micros).expect("the current time is in range")
    }

    pub async fn account(store: &Store) -> AccountSid {
        let sid = AccountSid::generate();
        store.ensure_account(&sid, "token", "test").await.expect("ensure account");
        sid
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[tokio::test]
    async fn ensure_account_creates_once_and_keeps_the_first_token() {
        let db = temp_store().await;
        let sid = AccountSid::generate();
        let a = db.store.ensure_account(&sid, "first", "Main").await.unwrap();
        assert_eq!(a.auth_token, "first");
        assert_eq!(a.status, "active");
        let b = db.store.ensure_account(&sid, "second", "Other").await.unwrap();
        assert_eq!(b.auth_token, "first");
        assert_eq!(b.friendly_name, "Main");
        assert!(db.store.account(&AccountSid::generate()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_reruns_migrations_idempotently() {
        let db = temp_store().await;
        let sid = account(&db.store).await;
        db.store.close().await;
        let url = format!("sqlite://{}/nested/dialtone.db", db.dir.display());
        let again = Store::open(&url).await.unwrap();
        assert!(again.account(&sid).await.unwrap().is_some());
        again.close().await;
    }

    #[tokio::test]
    async fn postgres_urls_are_refused_without_leaking_credentials() {
        let err = Store::open("postgres://user:secret@db/dialtone").await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)));
        assert!(!err.to_string().contains("secret"));
    }
}
