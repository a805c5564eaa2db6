//! API keys: a salted digest of each secret, to check HTTP Basic credentials, and the secret
//! sealed with the server key, to check the signatures of the access tokens a key signs.

use model::{AccountSid, ApiKeyRecord, ApiKeySid};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{micros, sid_col, time_col, DbRow, Page, PageRequest, Sql, Store, StoreError};

const COLUMNS: &str =
    "SELECT sid, account_sid, friendly_name, date_created, date_updated FROM api_keys";

fn decode(r: &DbRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

/// SHA-256 over the salt then the secret. The secrets are long random strings, so a fast digest
/// is enough; the salt keeps equal secrets from having equal digests.
fn digest(salt: &[u8], secret: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().into()
}

/// What a sealed secret is bound to: opened with any other key SID or account it fails.
fn seal_context(account: &AccountSid, sid: &ApiKeySid) -> String {
    format!("api_keys/{account}/{sid}")
}

/// Compares without an early exit, so timing does not reveal how much of a digest matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Store {
    /// Adds a key of `rec.account_sid`; keeps a salted digest of `secret` and `secret` sealed
    /// with the server key ([`StoreError::NoServerKey`] without one).
    pub async fn create_api_key(&self, rec: &ApiKeyRecord, secret: &str) -> Result<(), StoreError> {
        let sealed = self.sealing_key()?.seal(
            secret.as_bytes(),
            seal_context(&rec.account_sid, &rec.sid).as_bytes(),
        );
        let salt: [u8; 16] = rand::random();
        sqlx::query(
            "INSERT INTO api_keys (sid, account_sid, friendly_name, secret_salt, secret_hash, \
             secret_sealed, date_created, date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.friendly_name)
        .bind(hex::encode(salt))
        .bind(hex::encode(digest(&salt, secret)))
        .bind(hex::encode(sealed))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn api_key(
        &self,
        account: &AccountSid,
        sid: &ApiKeySid,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.fetch_scoped(COLUMNS, account, sid.as_str(), decode).await
    }

    /// Keys of one account, newest first.
    pub async fn list_api_keys(
        &self,
        account: &AccountSid,
        page: &PageRequest,
    ) -> Result<Page<ApiKeyRecord>, StoreError> {
        self.page_of(Sql::scoped(COLUMNS, account), page, decode).await
    }

    /// Saves `friendly_name` and `date_updated`. Returns whether the key existed in that account.
    pub async fn update_api_key(&self, rec: &ApiKeyRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET friendly_name = $1, date_updated = $2 \
             WHERE account_sid = $3 AND sid = $4",
        )
        .bind(&rec.friendly_name)
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Returns whether the key existed in that account. A deleted key stops authenticating at
    /// once: nothing caches it.
    pub async fn delete_api_key(&self, account: &AccountSid, sid: &ApiKeySid) -> Result<bool, StoreError> {
        self.delete_scoped("api_keys", account, sid.as_str()).await
    }

    /// Credential check (system-wide: the key names its account): the key if `secret` is its
    /// secret, else `None`.
    pub async fn authenticate_api_key(
        &self,
        sid: &ApiKeySid,
        secret: &str,
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT sid, account_sid, friendly_name, date_created, date_updated, secret_salt, \
             secret_hash FROM api_keys WHERE sid = $1",
        )
        .bind(sid.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let salt: String = row.try_get("secret_salt")?;
        let hash: String = row.try_get("secret_hash")?;
        let salt = hex::decode(&salt).map_err(|_| StoreError::Corrupt(format!("key {sid} salt")))?;
        let hash = hex::decode(&hash).map_err(|_| StoreError::Corrupt(format!("key {sid} digest")))?;
        if !constant_time_eq(&digest(&salt, secret), &hash) {
            return Ok(None);
        }
        decode(&row).map(Some)
    }

    /// Credential lookup (system-wide: the key names its account) for checking an access token's
    /// signature: the key's account and its secret, or `None` for an unknown or deleted key and
    /// for a key made before secrets were sealed. A deleted key is gone at once: nothing caches
    /// it. [`StoreError::Unseal`] when the secret does not open with this store's server key.
    pub async fn api_key_signing_secret(
        &self,
        sid: &ApiKeySid,
    ) -> Result<Option<(AccountSid, String)>, StoreError> {
        let key = self.sealing_key()?;
        let row = sqlx::query("SELECT account_sid, secret_sealed FROM api_keys WHERE sid = $1")
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let account: AccountSid = sid_col(&row, "account_sid")?;
        let Some(sealed) = row.try_get::<Option<String>, _>("secret_sealed")? else {
            return Ok(None);
        };
        let sealed = hex::decode(&sealed)
            .map_err(|_| StoreError::Corrupt(format!("key {sid} sealed secret")))?;
        let secret = key
            .open(&sealed, seal_context(&account, sid).as_bytes())
            .ok_or_else(|| StoreError::Unseal(format!("key {sid}")))?;
        let secret = String::from_utf8(secret)
            .map_err(|_| StoreError::Corrupt(format!("key {sid} secret")))?;
        Ok(Some((account, secret)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use crate::SealingKey;

    fn key(account: &AccountSid) -> ApiKeyRecord {
        let now = now();
        ApiKeyRecord {
            sid: ApiKeySid::generate(),
            account_sid: *account,
            friendly_name: "ci".into(),
            date_created: now,
            date_updated: now,
        }
    }

    #[tokio::test]
    async fn keys_authenticate_by_secret_and_stop_when_deleted() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let k = key(&a);
        db.store.create_api_key(&k, "s3cret").await.unwrap();
        assert_eq!(db.store.authenticate_api_key(&k.sid, "s3cret").await.unwrap().as_ref(), Some(&k));
        assert_eq!(db.store.authenticate_api_key(&k.sid, "s3cres").await.unwrap(), None);
        assert_eq!(db.store.authenticate_api_key(&k.sid, "").await.unwrap(), None);
        assert_eq!(db.store.authenticate_api_key(&ApiKeySid::generate(), "s3cret").await.unwrap(), None);

        // The secret is not stored, and two keys with one secret have different digests.
        let k2 = key(&a);
        db.store.create_api_key(&k2, "s3cret").await.unwrap();
        let rows = sqlx::query("SELECT secret_hash, secret_salt FROM api_keys").fetch_all(&db.store.pool).await.unwrap();
        let hashes: Vec<String> = rows.iter().map(|r| r.try_get("secret_hash").unwrap()).collect();
        assert_ne!(hashes[0], hashes[1]);
        assert!(rows.iter().all(|r| !r.try_get::<String, _>("secret_hash").unwrap().contains("s3cret")));

        assert_eq!(db.store.api_key(&b, &k.sid).await.unwrap(), None, "other tenant");
        assert!(!db.store.delete_api_key(&b, &k.sid).await.unwrap());
        let mut renamed = k.clone();
        renamed.friendly_name = "deploy".into();
        assert!(db.store.update_api_key(&renamed).await.unwrap());
        renamed.account_sid = b;
        assert!(!db.store.update_api_key(&renamed).await.unwrap());
        assert_eq!(db.store.api_key(&a, &k.sid).await.unwrap().unwrap().friendly_name, "deploy");
        assert_eq!(db.store.list_api_keys(&a, &PageRequest::first(10)).await.unwrap().items.len(), 2);
        assert!(db.store.list_api_keys(&b, &PageRequest::first(10)).await.unwrap().items.is_empty());

        assert!(db.store.delete_api_key(&a, &k.sid).await.unwrap());
        assert_eq!(db.store.authenticate_api_key(&k.sid, "s3cret").await.unwrap(), None);
    }

    #[tokio::test]
    async fn signing_secrets_are_sealed_and_open_only_with_the_server_key() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let k = key(&a);
        let secret = "7fP0qYv3b9KcX2mWd8RtZ1nLs4HgJ6eA";
        db.store.create_api_key(&k, secret).await.unwrap();
        assert_eq!(
            db.store.api_key_signing_secret(&k.sid).await.unwrap(),
            Some((a, secret.to_owned()))
        );
        assert_eq!(
            db.store
                .authenticate_api_key(&k.sid, secret)
                .await
                .unwrap()
                .as_ref(),
            Some(&k),
            "Basic auth as before"
        );
        assert_eq!(
            db.store
                .api_key_signing_secret(&ApiKeySid::generate())
                .await
                .unwrap(),
            None
        );

        // Not in clear in any column of the row, nor as hex.
        let row = sqlx::query("SELECT * FROM api_keys WHERE sid = $1")
            .bind(k.sid.as_str())
            .fetch_one(&db.store.pool)
            .await
            .unwrap();
        let sealed: String = row.try_get("secret_sealed").unwrap();
        assert!(!sealed.contains(secret) && !sealed.contains(&hex::encode(secret)));
        for col in [
            "sid",
            "account_sid",
            "friendly_name",
            "secret_salt",
            "secret_hash",
        ] {
            assert!(
                !row.try_get::<String, _>(col).unwrap().contains(secret),
                "{col}"
            );
        }

        // The same database with another server key, or none: an error, no panic, no secret.
        let other = Store::open(&db.url).await.unwrap();
        assert!(matches!(
            other.api_key_signing_secret(&k.sid).await,
            Err(StoreError::NoServerKey)
        ));
        assert!(matches!(
            other.create_api_key(&key(&a), "x").await,
            Err(StoreError::NoServerKey)
        ));
        let other = other.with_sealing_key(SealingKey::generate());
        let err = other.api_key_signing_secret(&k.sid).await.unwrap_err();
        assert!(matches!(err, StoreError::Unseal(_)), "{err}");
        assert!(!err.to_string().contains(secret));
        other.close().await;

        // A sealed secret moved to another key's row does not open there.
        let k2 = key(&a);
        db.store.create_api_key(&k2, "another").await.unwrap();
        sqlx::query("UPDATE api_keys SET secret_sealed = $1 WHERE sid = $2")
            .bind(&sealed)
            .bind(k2.sid.as_str())
            .execute(db.store.writer())
            .await
            .unwrap();
        assert!(matches!(
            db.store.api_key_signing_secret(&k2.sid).await,
            Err(StoreError::Unseal(_))
        ));

        // Keys made before the column existed, and deleted keys, have no signing secret.
        sqlx::query("UPDATE api_keys SET secret_sealed = NULL WHERE sid = $1")
            .bind(k2.sid.as_str())
            .execute(db.store.writer())
            .await
            .unwrap();
        assert_eq!(
            db.store.api_key_signing_secret(&k2.sid).await.unwrap(),
            None
        );
        assert!(db.store.delete_api_key(&a, &k.sid).await.unwrap());
        assert_eq!(db.store.api_key_signing_secret(&k.sid).await.unwrap(), None);
    }
}
