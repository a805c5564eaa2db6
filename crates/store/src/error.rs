//! The store's one error type.

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL names a backend this build cannot open (only SQLite and PostgreSQL are built in).
    #[error("unsupported database URL scheme in {0:?}")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A phone number is unique system-wide; someone (maybe another account) already has it.
    #[error("phone number {0} is already in use")]
    DuplicatePhoneNumber(String),
    /// A queue's name is unique within its account; another queue of the account has it.
    #[error("a queue named {0:?} already exists in this account")]
    DuplicateQueueName(String),
    /// A page token that this store did not issue.
    #[error("invalid page token")]
    InvalidPageToken,
    /// A row that does not decode (a bad SID, an unknown status): the database was edited by hand
    /// or by a newer version.
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}
