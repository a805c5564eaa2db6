//! Throwaway databases for tests, of this crate and of the crates that drive it (`api`).
//!
//! Tests run on SQLite unless [`DATABASE_URL_VAR`] names a PostgreSQL database, as
//! `scripts/with-postgres.sh` does. Then every store gets a schema of its own in that database, so
//! tests stay independent of each other and can run in parallel. The schemas are not dropped
//! afterwards: point the variable at a database that is thrown away after the run.

use std::path::Path;

use sqlx::Connection;

use crate::{scheme_of, SealingKey, Store, StoreError};

/// The environment variable naming the PostgreSQL database that tests run against.
pub const DATABASE_URL_VAR: &str = "DIALTONE_TEST_DATABASE_URL";

/// The URL of a new, empty database: a new schema in the PostgreSQL test database, or else an
/// SQLite file in `dir` (created by [`Store::open`]; removing `dir` is the caller's job).
pub async fn fresh_url(dir: &Path) -> Result<String, StoreError> {
    let base = std::env::var(DATABASE_URL_VAR).unwrap_or_default();
    if base.is_empty() {
        return Ok(format!("sqlite://{}/dialtone.db", dir.display()));
    }
    let lower = base.to_ascii_lowercase();
    if !lower.starts_with("postgres://") && !lower.starts_with("postgresql://") {
        return Err(StoreError::UnsupportedUrl(scheme_of(&base)));
    }
    // Letters and digits only: the name goes into SQL and a URL unquoted.
    let schema = format!("test_{:016x}", rand::random::<u64>());
    let mut conn = sqlx::postgres::PgConnection::connect(&base).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&mut conn).await?;
    conn.close().await?;
    // `options` is handed to the server at connect: every connection of the pool, the migrations'
    // included, then creates and finds its tables in that schema.
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

/// Opens a store on [`fresh_url`], with a new random server key.
pub async fn open_fresh(dir: &Path) -> Result<Store, StoreError> {
    Ok(Store::open(&fresh_url(dir).await?).await?.with_sealing_key(SealingKey::generate()))
}
