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
    /// A Proxy write that breaks one of its rules (see `proxy`).
    #[error(transparent)]
    Proxy(crate::proxy::ProxyError),
    /// A page token that this store did not issue.
    #[error("invalid page token")]
    InvalidPageToken,
    /// A row that does not decode (a bad SID, an unknown status): the database was edited by hand
    /// or by a newer version.
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    /// The server key file cannot be read or created, or is not 32 bytes.
    #[error("server key {}: {reason}", path.display())]
    ServerKey {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A secret must be sealed or opened, and the store was given no server key.
    #[error("no server key: secrets cannot be sealed or opened")]
    NoServerKey,
    /// A sealed secret does not open with this store's server key: the key file was replaced, or
    /// the row was altered or copied from another row.
    #[error("the sealed secret of {0} does not open with this server key")]
    Unseal(String),
}
