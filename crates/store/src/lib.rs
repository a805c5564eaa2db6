//! Persistence for Dialtone: accounts and subaccounts, API keys, applications, phone numbers,
//! calls, recordings and notifications, SIP users, queues and conferences, SMS messages, Proxy
//! services and sessions, in SQL through `sqlx`.
//!
//! Driven by `api` (REST reads and writes) and `node` (call records as calls progress, the routing
//! index at start and on number changes). Every method is `async` and takes `&self`; `Store` is a
//! cheap clone around a connection pool.
//!
//! Architecture invariant: every query that reads tenant data is scoped by an `AccountSid`; the
//! only system-wide reads are the routing lookups ([`Store::number_by_phone`], and the start-up
//! reads of the routing index [`Store::number_routes`] and [`Store::all_applications`]), the credential checks [`Store::authenticate_api_key`] and
//! [`Store::api_key_signing_secret`], the counter [`Store::active_calls_count`], and the SMS
//! runtime's reads and writes by message SID or SMSC id (the outbox, statuses, parts and the
//! dedupe keys of inbound messages: an SMSC names no account; see `messages`), and the Proxy
//! index's reads at start ([`Store::all_proxy_services`], [`Store::all_proxy_numbers`],
//! [`Store::open_proxy_sessions`]). Which account
//! may act on which (a parent on its subaccounts) is decided by `api` before it names the account
//! a query is scoped by.
//!
//! Backends, chosen by the URL given to [`Store::open`]:
//! - SQLite (the default, one file) in WAL mode with `synchronous=NORMAL`: every committed call or
//!   recording row survives a crash of the process (`kill -9`); an OS crash or power cut may lose
//!   the last commits. FULL would fsync on every commit, and a node writes three rows a call at
//!   up to a thousand calls a second.
//! - PostgreSQL (`postgres://...`), for nodes that share one system of record.
//!
//! Both run through sqlx's `Any` driver, so every query and the one migrations directory are
//! written once in portable SQL: `$n` binds (numbered by `Sql` for built statements), BIGINT
//! microsecond timestamps, TEXT for SIDs and enums, `ON CONFLICT DO NOTHING`. The backend specifics
//! (SQLite pragmas, pool sizes) live in [`Store::open`] only.
//!
//! Tests open their stores through [`testing`]: SQLite by default, PostgreSQL when
//! `DIALTONE_TEST_DATABASE_URL` is set, as `scripts/with-postgres.sh cargo test -p store -p api`
//! does with a throwaway server.

mod accounts;
mod applications;
mod calls;
mod conferences;
mod error;
mod keys;
mod messages;
mod numbers;
mod page;
pub mod proxy;
mod queues;
mod rates;
mod quiet;
mod recordings;
mod sealing;
mod usage;
pub mod sip;
pub mod testing;

use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use model::sid::SidKind;
use model::{AccountRecord, AccountSid, Sid};
use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Arguments, Connection, Row};

pub use accounts::{AccountFilter, CallPermission};
pub use applications::ApplicationFilter;
pub use calls::{CallFilter, CallWrite, ScheduledCall};
pub use conferences::{ConferenceFilter, TimeRange};
pub use error::StoreError;
pub use messages::{
    Incoming, MessageChange, MessageFilter, MessageWrites, MessageWritesDone, PartsSummary, ReceiptOutcome,
    ReceiptUpdate, SentMessage,
};
pub use numbers::{NumberFilter, NumberRoute};
pub use page::{Cursor, Page, PageRequest};
pub use rates::RateTableRecord;
pub use recordings::RecordingFilter;
pub use sealing::SealingKey;
pub use usage::{UsageDay, UsageKind, UsageScope};

type Db = sqlx::Any;
type DbRow = sqlx::any::AnyRow;

/// A handle on the database. Clones share its pools.
#[derive(Clone, Debug)]
pub struct Store {
    /// Reads, and on PostgreSQL writes too.
    pool: sqlx::AnyPool,
    /// Writes (see [`Store::writer`]): on SQLite a pool of one connection, else `pool` itself.
    writes: sqlx::AnyPool,
    /// Seals the secrets that are read back (API key secrets); see [`Store::with_sealing_key`].
    sealing: Option<std::sync::Arc<SealingKey>>,
    /// PostgreSQL (writers in parallel) rather than SQLite (one writer at a time).
    postgres: bool,
    /// The task that commits single number creations together ([`Store::create_number`]),
    /// started by the first.
    number_writes: std::sync::Arc<std::sync::OnceLock<numbers::NumberWrites>>,
    /// Accounts as calls read them ([`Store::account_for_call`]), emptied by every account write.
    accounts: std::sync::Arc<accounts::AccountCache>,
}

/// Per-connection SQLite settings. WAL lets readers run beside the one writer; `synchronous=NORMAL`
/// keeps commits across a process crash without an fsync per commit; foreign keys are off by default in SQLite; `busy_timeout` makes
/// writers queue behind each other instead of failing with SQLITE_BUSY. `busy_timeout` comes
/// first so that switching the journal mode, which needs a lock, waits for it too.
/// `temp_store = MEMORY` keeps statement journals (a multi-row statement inside a transaction
/// saves the pages it changes, to undo itself alone) in memory instead of in a temporary file;
/// `cache_size` lets a connection keep 32 MiB of pages instead of 2 MiB, so that the indexes the
/// SMS path writes stay read.
const SQLITE_PRAGMAS: [&str; 6] = [
    "PRAGMA busy_timeout = 5000",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -32768",
];

impl Store {
    /// Opens the database and brings its schema up to date with the embedded migrations.
    ///
    /// Accepts `postgres://...` / `postgresql://...` (the database must exist), or for SQLite
    /// `sqlite://path/to/file.db`, `sqlite:file.db`, `sqlite::memory:` or a bare file path (the
    /// file and its parent directory are created if missing).
    pub async fn open(database_url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let lower = database_url.to_ascii_lowercase();
        let postgres = lower.starts_with("postgres://") || lower.starts_with("postgresql://");
        let (pool, writes) = if postgres {
            let options = AnyConnectOptions::from_str(database_url)?;
            // A pool retries a refused connection until its acquire timeout (30 s) and then
            // reports only the timeout; one direct connection first fails at once, with the cause.
            sqlx::AnyConnection::connect_with(&options).await?.close().await?;
            let pool = AnyPoolOptions::new().max_connections(8).connect_with(options).await?;
            (pool.clone(), pool)
        } else if lower.starts_with("sqlite:") || !lower.contains("://") {
            open_sqlite(database_url).await?
        } else {
            return Err(StoreError::UnsupportedUrl(scheme_of(database_url)));
        };
        sqlx::migrate!("./migrations").run(&writes).await?;
        Ok(Store { pool, writes, sealing: None, postgres, number_writes: Default::default(), accounts: Default::default() })
    }

    /// The store, sealing and opening API key secrets with `key` (the server key, see
    /// [`SealingKey::load_or_create`]). Without one, creating an API key and looking up its
    /// signing secret fail with [`StoreError::NoServerKey`]; everything else works.
    pub fn with_sealing_key(mut self, key: SealingKey) -> Store {
        self.sealing = Some(std::sync::Arc::new(key));
        self
    }

    fn sealing_key(&self) -> Result<&SealingKey, StoreError> {
        self.sealing.as_deref().ok_or(StoreError::NoServerKey)
    }

    /// Whether write transactions run side by side (PostgreSQL) rather than one at a time
    /// (SQLite): a writer may then split its work over several transactions at once.
    pub fn parallel_writes(&self) -> bool {
        self.postgres
    }

    /// The pool every INSERT, UPDATE, DELETE and write transaction goes through.
    ///
    /// SQLite lets one writer at a time hold the file; writers on several connections meet
    /// SQLITE_BUSY and sleep in its busy handler (1, 2, 5, 10 ... ms), which made the p99 of a
    /// burst of creations 44 ms. With one write connection they queue in the pool instead and
    /// wake as soon as it is free, while reads go on beside them on the other pool (WAL).
    /// PostgreSQL locks rows, not the database: one pool serves both.
    fn writer(&self) -> &sqlx::AnyPool {
        &self.writes
    }

    /// `"SQLite"` or `"PostgreSQL"`: which backend this store talks to.
    #[cfg(test)]
    pub(crate) async fn backend_name(&self) -> Result<String, StoreError> {
        let conn = self.pool.acquire().await?;
        Ok(conn.backend_name().to_owned())
    }

    /// Waits for open connections to finish and closes the pool.
    pub async fn close(&self) {
        self.writes.close().await;
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
            "INSERT INTO accounts (sid, owner_account_sid, friendly_name, auth_token, status, \
             date_created, date_updated) \
             VALUES ($1, $1, $2, $3, 'active', $4, $4) ON CONFLICT (sid) DO NOTHING",
        )
        .bind(sid.as_str())
        .bind(friendly_name)
        .bind(auth_token)
        .bind(now)
        .execute(self.writer())
        .await?;
        self.accounts.changed();
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
        let sql = format!("{} WHERE sid = $1", accounts::COLUMNS);
        let row = sqlx::query(&sql).bind(sid.as_str()).fetch_optional(&self.pool).await?;
        row.as_ref().map(accounts::decode).transpose()
    }
}

/// Builds the SQLite pools, for reads and for writes (see [`Store::writer`]). sqlx's `Any` driver
/// opens SQLite from a URL, which carries only the file and its open mode, so the settings go in
/// as pragmas on every new connection.
async fn open_sqlite(database_url: &str) -> Result<(sqlx::AnyPool, sqlx::AnyPool), StoreError> {
    let (options, params) = if database_url.to_ascii_lowercase().starts_with("sqlite:") {
        // Parsed here first so that a bad URL fails before anything is created.
        let params = database_url.split_once('?').map_or("", |(_, q)| q);
        (SqliteConnectOptions::from_str(database_url)?, params)
    } else {
        (SqliteConnectOptions::new().filename(database_url), "")
    };
    let file = options.get_filename();
    let in_memory = file == Path::new(":memory:")
        || file.to_string_lossy().starts_with("file:sqlx-in-memory-")
        || params.split('&').any(|p| p == "mode=memory");
    // Every connection gets SQLITE_PRAGMAS, then its own `extra` ones.
    let pool = |extra: &'static [&'static str]| {
        AnyPoolOptions::new().after_connect(move |conn, _meta| {
            Box::pin(async move {
                for pragma in SQLITE_PRAGMAS.iter().chain(extra) {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
    };
    if in_memory {
        // A private in-memory database lives as long as the one connection that holds it: keep
        // exactly one, forever, for reads and writes alike.
        let pool = pool(&[]).max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
        let pool = pool.connect_with(AnyConnectOptions::from_str("sqlite::memory:")?).await?;
        return Ok((pool.clone(), pool));
    }
    let name = file.file_name().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "the database path names no file")
    })?;
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tokio::fs::create_dir_all(dir).await?;
    // An absolute path without `.` or `..`: a URL parser would fold those segments, or read a
    // relative path's first segment as a host.
    let path = tokio::fs::canonicalize(dir).await?.join(name);
    let mut url = format!("sqlite://{}?mode=rwc", url_path(&path));
    for param in params.split('&').filter(|p| !p.is_empty() && !p.starts_with("mode=")) {
        url.push('&');
        url.push_str(param);
    }
    let options = AnyConnectOptions::from_str(&url)?;
    // The writer first: it creates the file and switches it to WAL before any reader opens it.
    let writes = pool(&[SQLITE_WRITER_AUTOCHECKPOINT]).max_connections(1).connect_with(options.clone()).await?;
    let reads = pool(&[]).max_connections(8).connect_with(options).await?;
    tokio::spawn(checkpoint_wal(reads.clone()));
    Ok((reads, writes))
}

/// The writer's automatic checkpoint, as a backstop only: [`checkpoint_wal`] keeps the WAL far
/// below it. SQLite's default (1,000 pages) runs the checkpoint, two fsyncs included, inside the
/// commit that crosses it, and every write queued behind that commit waits for the disk: on a
/// burst of number creations that was the whole p99.
const SQLITE_WRITER_AUTOCHECKPOINT: &str = "PRAGMA wal_autocheckpoint = 16384";

/// How often [`checkpoint_wal`] copies the WAL back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Copies committed WAL frames into the database file from a read connection, off the write path:
/// a PASSIVE checkpoint takes no lock that a reader or the writer waits on, and once it has
/// caught up the writer starts the WAL again from its beginning. Ends when the pool is closed.
async fn checkpoint_wal(reads: sqlx::AnyPool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if reads.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&reads).await {
            if reads.is_closed() {
                return;
            }
            tracing::warn!(error = %e, "SQLite WAL checkpoint failed; retrying");
        }
    }
}

/// Percent-encodes a path for a URL, keeping `/` and the unreserved characters.
fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

impl Store {
    /// One row by its SID, within one account: the single-row read every resource shares, so the
    /// account scope of the tenancy invariant is written once. `select` is `SELECT ... FROM table`.
    async fn fetch_scoped<T>(
        &self,
        select: &str,
        account: &AccountSid,
        sid: &str,
        decode: fn(&DbRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let sql = format!("{select} WHERE account_sid = $1 AND sid = $2");
        let row = sqlx::query(&sql).bind(account.as_str()).bind(sid).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode).transpose()
    }

    /// One page of a list (a [`Sql::scoped`] select plus its filters): the keyset condition,
    /// order and limit, the rows decoded, and the cursor after the last one kept when more follow.
    async fn page_of<T>(
        &self,
        mut q: Sql,
        page: &PageRequest,
        decode: fn(&DbRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError> {
        push_page(&mut q, page);
        let mut rows = q.fetch_all(&self.pool).await?;
        // push_page asked for one row more than the page, to learn whether more follow.
        let size = page.size.max(1) as usize;
        let next = if rows.len() > size {
            rows.truncate(size);
            rows.last().map(cursor_of).transpose()?
        } else {
            None
        };
        let items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next })
    }

    /// Deletes one row by its SID within one account; whether it existed there.
    async fn delete_scoped(&self, table: &str, account: &AccountSid, sid: &str) -> Result<bool, StoreError> {
        let sql = format!("DELETE FROM {table} WHERE account_sid = $1 AND sid = $2");
        let done = sqlx::query(&sql).bind(account.as_str()).bind(sid).execute(self.writer()).await?;
        Ok(done.rows_affected() > 0)
    }
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

/// A statement assembled from pieces, its binds numbered `$1, $2, ...` as both backends read them.
/// sqlx's own `QueryBuilder` writes `?` for the `Any` driver, which PostgreSQL refuses.
struct Sql {
    text: String,
    args: AnyArguments<'static>,
    /// A value that failed to encode; reported when the statement runs.
    error: Option<sqlx::error::BoxDynError>,
}

impl Sql {
    fn new(text: &str) -> Sql {
        Sql { text: text.to_owned(), args: AnyArguments::default(), error: None }
    }

    /// `select` (`SELECT ... FROM table`) within one account: where every list starts, so the
    /// account scope of the tenancy invariant is written once.
    fn scoped(select: &str, account: &AccountSid) -> Sql {
        let mut q = Sql::new(select);
        q.push(" WHERE account_sid = ").push_bind(account.as_str().to_owned());
        q
    }

    fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    fn push_bind<T>(&mut self, value: T) -> &mut Sql
    where
        T: 'static + sqlx::Encode<'static, Db> + sqlx::Type<Db>,
    {
        if let Err(e) = self.args.add(value) {
            self.error.get_or_insert(e);
        }
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    async fn fetch_all<'e, E>(self, executor: E) -> Result<Vec<DbRow>, StoreError>
    where
        E: sqlx::Executor<'e, Database = Db>,
    {
        if let Some(e) = self.error {
            return Err(sqlx::Error::Encode(e).into());
        }
        Ok(sqlx::query_with(&self.text, self.args).fetch_all(executor).await?)
    }
}

/// Appends the keyset condition, order and limit (one extra row, to learn whether more follow;
/// [`Store::page_of`] cuts it off).
///
/// The condition is a row-value comparison because both databases turn that into a range on the
/// `(account_sid, date_created, sid)` index every paged table has; the equivalent
/// `date_created < a OR (date_created = a AND sid < b)` is not, so page N scanned N pages of index.
fn push_page(q: &mut Sql, page: &PageRequest) {
    if let Some(c) = &page.after {
        q.push(" AND (date_created, sid) < (")
            .push_bind(c.date_created_micros)
            .push(", ")
            .push_bind(c.sid.clone())
            .push(")");
    }
    q.push(" ORDER BY date_created DESC, sid DESC LIMIT ").push_bind(i64::from(page.size.max(1)) + 1);
    if page.after.is_none() && page.offset > 0 {
        q.push(" OFFSET ").push_bind(i64::try_from(page.offset).unwrap_or(i64::MAX));
    }
}

/// The cursor after `row`: every paged table has `date_created` (micros) and `sid` columns.
fn cursor_of(row: &DbRow) -> Result<Cursor, StoreError> {
    Ok(Cursor { date_created_micros: row.try_get("date_created")?, sid: row.try_get("sid")? })
}

#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A fresh store (see [`crate::testing`]) and the URL it was opened with.
    pub struct TempDb {
        pub dir: std::path::PathBuf,
        pub url: String,
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
        let url = testing::fresh_url(&dir.join("nested")).await.expect("a fresh database");
        let store = Store::open(&url)
            .await
            .expect("open temp store")
            .with_sealing_key(SealingKey::generate());
        TempDb { dir, url, store }
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
    use std::time::Duration;

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
        assert_eq!(db.store.account_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_reruns_migrations_idempotently() {
        let db = temp_store().await;
        let sid = account(&db.store).await;
        db.store.close().await;
        let again = Store::open(&db.url).await.unwrap();
        assert!(again.account(&sid).await.unwrap().is_some());
        again.close().await;
    }

    #[tokio::test]
    async fn tests_run_on_the_backend_the_environment_names() {
        let db = temp_store().await;
        let want = match std::env::var(testing::DATABASE_URL_VAR) {
            Ok(url) if !url.is_empty() => "PostgreSQL",
            _ => "SQLite",
        };
        assert_eq!(db.store.backend_name().await.unwrap(), want);
    }

    #[tokio::test]
    async fn sqlite_connections_are_durable_wal_with_foreign_keys() {
        let dir = std::env::temp_dir().join(format!("dialtone-store-{}", rand::random::<u64>()));
        let store = Store::open(&dir.join("plain.db").display().to_string()).await.unwrap();
        assert_eq!(store.backend_name().await.unwrap(), "SQLite");
        // More than one pooled connection: each must have been set up, not just the first.
        let mut conns = Vec::new();
        for _ in 0..3 {
            let mut c = store.pool.acquire().await.unwrap();
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut *c).await.unwrap();
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *c).await.unwrap();
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut *c).await.unwrap();
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut *c).await.unwrap();
            assert_eq!((mode.as_str(), sync, fk, busy), ("wal", 1, 1, 5000));
            conns.push(c);
        }
        drop(conns);
        // foreign_keys = ON in practice: a number of an account that does not exist is refused.
        let err = sqlx::query(
            "INSERT INTO phone_numbers (sid, account_sid, phone_number, friendly_name, voice_method, \
             voice_fallback_method, status_callback_method, date_created, date_updated) \
             VALUES ('PN1', 'ACnone', '+1', 'x', 'POST', 'POST', 'POST', 0, 0)",
        )
        .execute(store.writer())
        .await
        .unwrap_err();
        assert!(err.to_string().to_lowercase().contains("foreign key"), "{err}");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_in_the_background_not_by_the_writer() {
        let dir = std::env::temp_dir().join(format!("dialtone-store-{}", rand::random::<u64>()));
        let file = dir.join("ckpt.db");
        let store = Store::open(&file.display().to_string()).await.unwrap();
        let mut w = store.writer().acquire().await.unwrap();
        let every: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint").fetch_one(&mut *w).await.unwrap();
        assert_eq!(every, 16384, "the writer's own checkpoint is only a backstop");
        drop(w);
        // Enough rows for a few hundred WAL pages, far below the writer's threshold.
        tokio::time::sleep(CHECKPOINT_EVERY * 2).await;
        let before = std::fs::metadata(&file).unwrap().len();
        for _ in 0..300 {
            store.ensure_account(&AccountSid::generate(), &"t".repeat(2000), "filler").await.unwrap();
        }
        // Only a checkpoint copies pages into the database file itself.
        let deadline = std::time::Instant::now() + CHECKPOINT_EVERY * 6;
        while std::fs::metadata(&file).unwrap().len() <= before {
            assert!(std::time::Instant::now() < deadline, "no checkpoint within {:?}", CHECKPOINT_EVERY * 6);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn sqlite_paths_with_url_syntax_and_dot_dot_open_the_named_file() {
        let dir = std::env::temp_dir().join(format!("dialtone-store-{}", rand::random::<u64>()));
        let path = dir.join("a b").join("sub").join("..").join("odd #?%:name.db");
        let sid = {
            let store = Store::open(&path.display().to_string()).await.unwrap();
            let sid = account(&store).await;
            store.close().await;
            sid
        };
        assert!(dir.join("a b").join("odd #?%:name.db").is_file());
        // The same file through a `sqlite:` URL (percent-encoded, as such URLs are).
        let url = format!("sqlite://{}", url_path(&dir.join("a b").join("odd #?%:name.db")));
        let store = Store::open(&url).await.unwrap();
        assert!(store.account(&sid).await.unwrap().is_some());
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_deep_page_is_an_index_range_not_a_scan() {
        // SQLite always (its planner is the one in the binary); PostgreSQL's plan depends on the
        // table's statistics, so the bench's list-deep figures stand for it.
        let store = Store::open("sqlite::memory:").await.unwrap();
        let mut q = Sql::new("EXPLAIN QUERY PLAN SELECT sid FROM calls WHERE account_sid = ");
        q.push_bind("AC1".to_owned());
        let after = Cursor { date_created_micros: 1_000, sid: "CA1".into() };
        push_page(&mut q, &PageRequest { size: 50, after: Some(after), offset: 0 });
        let rows = q.fetch_all(&store.pool).await.unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.try_get("detail").unwrap()).collect();
        let plan = plan.join("; ");
        assert!(plan.contains("calls_by_account (account_sid=? AND (date_created,sid)<(?,?))"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "sorted by the index, not afterwards: {plan}");
    }

    #[tokio::test]
    async fn concurrent_writes_all_land_and_are_read_back_at_once() {
        let db = temp_store().await;
        if db.store.backend_name().await.unwrap() == "SQLite" {
            assert_eq!(db.store.writer().options().get_max_connections(), 1);
            assert!(db.store.pool.options().get_max_connections() > 1);
        }
        let writes = (0..64).map(|_| {
            let store = db.store.clone();
            tokio::spawn(async move {
                let sid = AccountSid::generate();
                store.ensure_account(&sid, "token", "burst").await?;
                // Read back on the read pool right after the commit.
                store.account(&sid).await
            })
        });
        for w in writes.collect::<Vec<_>>() {
            assert!(w.await.unwrap().unwrap().is_some(), "a committed account was not read back");
        }
        assert_eq!(db.store.account_count().await.unwrap(), 64);
    }

    #[tokio::test]
    async fn in_memory_sqlite_keeps_its_data_across_queries() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let sid = account(&store).await;
        assert!(store.account(&sid).await.unwrap().is_some());
        assert_eq!(store.account_count().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn unknown_or_malformed_urls_are_refused_without_leaking_credentials() {
        let err = Store::open("mysql://user:secret@db/dialtone").await.unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(ref s) if s == "mysql"), "{err}");
        assert!(!err.to_string().contains("secret"));
        let err = Store::open("postgres://user:secret@db:notaport/dialtone").await.unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_postgres_fails_at_once_with_the_cause_and_no_password() {
        let started = std::time::Instant::now();
        // Port 1 on loopback: nothing listens there, the connection is refused.
        let err = Store::open("postgres://user:secret@127.0.0.1:1/dialtone").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
        assert!(matches!(err, StoreError::Database(_)), "{err}");
        assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
