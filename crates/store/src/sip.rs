//! SIP users: domains, credential lists and credentials (Twilio's `/SIP/...` resources), the
//! lookups the registrar makes for a REGISTER, and the registrations mirror the API lists.
//!
//! Passwords are never stored. A credential keeps `H(username:realm:password)` for MD5 and for
//! SHA-256 (RFC 7616's HA1) under one fixed realm, [`SIP_DIGEST_REALM`], which is what a digest
//! check needs for either algorithm. The realm is fixed for the whole server (as Twilio's
//! `sip.twilio.com` is) because a credential list can serve several domains: changing it would
//! invalidate every stored credential.

use chrono::{DateTime, Utc};
use md5::Md5;
use model::{AccountSid, CredentialListSid, CredentialSid, SipDomainSid};
use sha2::{Digest as _, Sha256};
use sqlx::Row;

use crate::{micros, sid_col, time_col, time_of, DbRow, Page, PageRequest, Sql, Store, StoreError};

/// The digest realm of every SIP credential.
pub const SIP_DIGEST_REALM: &str = "dialtone";

/// A SIP domain: REGISTERs whose Request-URI host is `domain_name` belong to `account_sid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipDomainRecord {
    pub sid: SipDomainSid,
    pub account_sid: AccountSid,
    pub domain_name: String,
    pub friendly_name: String,
    pub voice_url: Option<String>,
    pub voice_method: String,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: String,
    pub voice_status_callback_url: Option<String>,
    pub voice_status_callback_method: String,
    pub sip_registration: bool,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialListRecord {
    pub sid: CredentialListSid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// A credential as readable: no password, no digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub sid: CredentialSid,
    pub account_sid: AccountSid,
    pub credential_list_sid: CredentialListSid,
    pub username: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// A credential list allowed to register under a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialListMapping {
    pub account_sid: AccountSid,
    pub domain_sid: SipDomainSid,
    pub credential_list_sid: CredentialListSid,
    pub friendly_name: String,
    pub date_created: DateTime<Utc>,
}

/// The HA1 digests of one credential, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipDigests {
    pub md5: String,
    pub sha256: String,
}

impl SipDigests {
    pub fn new(username: &str, password: &str) -> SipDigests {
        let a1 = format!("{username}:{SIP_DIGEST_REALM}:{password}");
        SipDigests {
            md5: hex::encode(Md5::digest(a1.as_bytes())),
            sha256: hex::encode(Sha256::digest(a1.as_bytes())),
        }
    }
}

/// Which account a REGISTER is for, and which credential lists it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipRealmScope {
    pub account_sid: AccountSid,
    /// `Some` for a SIP domain (its registration mappings apply), `None` for the default
    /// (every credential list of the account applies).
    pub domain_sid: Option<SipDomainSid>,
}

/// One live binding as the registrar mirrors it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipRegistrationRow {
    pub account_sid: AccountSid,
    pub username: String,
    pub contact: String,
    pub source: String,
    pub transport: String,
    pub expires_at: DateTime<Utc>,
    /// `available` or `away` (a browser agent's own word; phones are `available`).
    pub presence: String,
}

/// A user of an account (a username of any of its credential lists) with its live bindings and
/// whether a call of the account is in progress to or from `client:USER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUserState {
    pub username: String,
    pub bindings: Vec<SipRegistrationRow>,
    pub in_call: bool,
}

const DOMAIN_COLUMNS: &str = "SELECT sid, account_sid, domain_name, friendly_name, voice_url, \
    voice_method, voice_fallback_url, voice_fallback_method, voice_status_callback_url, \
    voice_status_callback_method, sip_registration, date_created, date_updated FROM sip_domains";
const LIST_COLUMNS: &str =
    "SELECT sid, account_sid, friendly_name, date_created, date_updated FROM sip_credential_lists";
const CREDENTIAL_COLUMNS: &str = "SELECT sid, account_sid, credential_list_sid, username, \
    date_created, date_updated FROM sip_credentials";

fn decode_domain(r: &DbRow) -> Result<SipDomainRecord, StoreError> {
    Ok(SipDomainRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        domain_name: r.try_get("domain_name")?,
        friendly_name: r.try_get("friendly_name")?,
        voice_url: r.try_get("voice_url")?,
        voice_method: r.try_get("voice_method")?,
        voice_fallback_url: r.try_get("voice_fallback_url")?,
        voice_fallback_method: r.try_get("voice_fallback_method")?,
        voice_status_callback_url: r.try_get("voice_status_callback_url")?,
        voice_status_callback_method: r.try_get("voice_status_callback_method")?,
        sip_registration: r.try_get::<i64, _>("sip_registration")? != 0,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

fn decode_list(r: &DbRow) -> Result<CredentialListRecord, StoreError> {
    Ok(CredentialListRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

fn decode_credential(r: &DbRow) -> Result<CredentialRecord, StoreError> {
    Ok(CredentialRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        credential_list_sid: sid_col(r, "credential_list_sid")?,
        username: r.try_get("username")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

fn decode_registration(r: &DbRow) -> Result<SipRegistrationRow, StoreError> {
    Ok(SipRegistrationRow {
        account_sid: sid_col(r, "account_sid")?,
        username: r.try_get("username")?,
        contact: r.try_get("contact")?,
        source: r.try_get("source")?,
        transport: r.try_get("transport")?,
        expires_at: time_of(r.try_get("expires_at")?)?,
        presence: r.try_get("presence")?,
    })
}

impl Store {
    // --- Domains -------------------------------------------------------------------------

    /// Creates a domain. `Ok(false)` when the domain name is taken (by any account).
    pub async fn create_sip_domain(&self, rec: &SipDomainRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO sip_domains (sid, account_sid, domain_name, friendly_name, voice_url, \
             voice_method, voice_fallback_url, voice_fallback_method, voice_status_callback_url, \
             voice_status_callback_method, sip_registration, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
             ON CONFLICT (domain_name) DO NOTHING",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.domain_name)
        .bind(&rec.friendly_name)
        .bind(&rec.voice_url)
        .bind(&rec.voice_method)
        .bind(&rec.voice_fallback_url)
        .bind(&rec.voice_fallback_method)
        .bind(&rec.voice_status_callback_url)
        .bind(&rec.voice_status_callback_method)
        .bind(i64::from(rec.sip_registration))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn sip_domain(
        &self,
        account: &AccountSid,
        sid: &SipDomainSid,
    ) -> Result<Option<SipDomainRecord>, StoreError> {
        self.fetch_scoped(DOMAIN_COLUMNS, account, sid.as_str(), decode_domain).await
    }

    pub async fn list_sip_domains(
        &self,
        account: &AccountSid,
        page: &PageRequest,
    ) -> Result<Page<SipDomainRecord>, StoreError> {
        self.page_of(Sql::scoped(DOMAIN_COLUMNS, account), page, decode_domain).await
    }

    /// Saves the settable fields (not the domain name). Whether it existed in that account.
    pub async fn update_sip_domain(&self, rec: &SipDomainRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sip_domains SET friendly_name = $1, voice_url = $2, voice_method = $3, \
             voice_fallback_url = $4, voice_fallback_method = $5, voice_status_callback_url = $6, \
             voice_status_callback_method = $7, sip_registration = $8, date_updated = $9 \
             WHERE account_sid = $10 AND sid = $11",
        )
        .bind(&rec.friendly_name)
        .bind(&rec.voice_url)
        .bind(&rec.voice_method)
        .bind(&rec.voice_fallback_url)
        .bind(&rec.voice_fallback_method)
        .bind(&rec.voice_status_callback_url)
        .bind(&rec.voice_status_callback_method)
        .bind(i64::from(rec.sip_registration))
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a domain and its mappings. Whether it existed in that account.
    pub async fn delete_sip_domain(&self, account: &AccountSid, sid: &SipDomainSid) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM sip_domain_registration_mappings WHERE account_sid = $1 AND domain_sid = $2")
            .bind(account.as_str())
            .bind(sid.as_str())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM sip_domains WHERE account_sid = $1 AND sid = $2")
            .bind(account.as_str())
            .bind(sid.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    // --- Credential lists and credentials --------------------------------------------------

    pub async fn create_credential_list(&self, rec: &CredentialListRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sip_credential_lists (sid, account_sid, friendly_name, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.friendly_name)
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn credential_list(
        &self,
        account: &AccountSid,
        sid: &CredentialListSid,
    ) -> Result<Option<CredentialListRecord>, StoreError> {
        self.fetch_scoped(LIST_COLUMNS, account, sid.as_str(), decode_list).await
    }

    pub async fn list_credential_lists(
        &self,
        account: &AccountSid,
        page: &PageRequest,
    ) -> Result<Page<CredentialListRecord>, StoreError> {
        self.page_of(Sql::scoped(LIST_COLUMNS, account), page, decode_list).await
    }

    pub async fn update_credential_list(&self, rec: &CredentialListRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sip_credential_lists SET friendly_name = $1, date_updated = $2 \
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

    /// Deletes a list with its credentials and mappings. Whether it existed in that account.
    pub async fn delete_credential_list(
        &self,
        account: &AccountSid,
        sid: &CredentialListSid,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        for table in ["sip_credentials", "sip_domain_registration_mappings"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account_sid = $1 AND credential_list_sid = $2"))
                .bind(account.as_str())
                .bind(sid.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let done = sqlx::query("DELETE FROM sip_credential_lists WHERE account_sid = $1 AND sid = $2")
            .bind(account.as_str())
            .bind(sid.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds a credential to a list of `rec.account_sid` with the digests of `password`.
    /// `Ok(false)` when the list already has that username.
    pub async fn create_credential(&self, rec: &CredentialRecord, password: &str) -> Result<bool, StoreError> {
        let digests = SipDigests::new(&rec.username, password);
        let done = sqlx::query(
            "INSERT INTO sip_credentials (sid, account_sid, credential_list_sid, username, ha1_md5, \
             ha1_sha256, date_created, date_updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (credential_list_sid, username) DO NOTHING",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(rec.credential_list_sid.as_str())
        .bind(&rec.username)
        .bind(&digests.md5)
        .bind(&digests.sha256)
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn credential(
        &self,
        account: &AccountSid,
        list: &CredentialListSid,
        sid: &CredentialSid,
    ) -> Result<Option<CredentialRecord>, StoreError> {
        let sql = format!("{CREDENTIAL_COLUMNS} WHERE account_sid = $1 AND credential_list_sid = $2 AND sid = $3");
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(list.as_str())
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode_credential).transpose()
    }

    pub async fn list_credentials(
        &self,
        account: &AccountSid,
        list: &CredentialListSid,
        page: &PageRequest,
    ) -> Result<Page<CredentialRecord>, StoreError> {
        let mut q = Sql::scoped(CREDENTIAL_COLUMNS, account);
        q.push(" AND credential_list_sid = ").push_bind(list.as_str().to_owned());
        self.page_of(q, page, decode_credential).await
    }

    /// Sets a new password. Whether the credential existed in that account and list.
    pub async fn update_credential_password(
        &self,
        rec: &CredentialRecord,
        password: &str,
    ) -> Result<bool, StoreError> {
        let digests = SipDigests::new(&rec.username, password);
        let done = sqlx::query(
            "UPDATE sip_credentials SET ha1_md5 = $1, ha1_sha256 = $2, date_updated = $3 \
             WHERE account_sid = $4 AND credential_list_sid = $5 AND sid = $6",
        )
        .bind(&digests.md5)
        .bind(&digests.sha256)
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.credential_list_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_credential(
        &self,
        account: &AccountSid,
        list: &CredentialListSid,
        sid: &CredentialSid,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM sip_credentials WHERE account_sid = $1 AND credential_list_sid = $2 AND sid = $3")
                .bind(account.as_str())
                .bind(list.as_str())
                .bind(sid.as_str())
                .execute(self.writer())
                .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- Domain registration mappings ----------------------------------------------------------

    /// Maps a list of `account` to a domain of `account`. `Ok(false)` when either is not the
    /// account's or the mapping exists.
    pub async fn create_registration_mapping(
        &self,
        account: &AccountSid,
        domain: &SipDomainSid,
        list: &CredentialListSid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        if self.sip_domain(account, domain).await?.is_none() || self.credential_list(account, list).await?.is_none() {
            return Ok(false);
        }
        let done = sqlx::query(
            "INSERT INTO sip_domain_registration_mappings (domain_sid, credential_list_sid, account_sid, date_created) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (domain_sid, credential_list_sid) DO NOTHING",
        )
        .bind(domain.as_str())
        .bind(list.as_str())
        .bind(account.as_str())
        .bind(micros(now))
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn registration_mappings(
        &self,
        account: &AccountSid,
        domain: &SipDomainSid,
    ) -> Result<Vec<CredentialListMapping>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.domain_sid, m.credential_list_sid, m.account_sid, m.date_created, l.friendly_name \
             FROM sip_domain_registration_mappings m JOIN sip_credential_lists l ON l.sid = m.credential_list_sid \
             WHERE m.account_sid = $1 AND m.domain_sid = $2 ORDER BY m.date_created DESC, m.credential_list_sid DESC",
        )
        .bind(account.as_str())
        .bind(domain.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CredentialListMapping {
                    account_sid: sid_col(r, "account_sid")?,
                    domain_sid: sid_col(r, "domain_sid")?,
                    credential_list_sid: sid_col(r, "credential_list_sid")?,
                    friendly_name: r.try_get("friendly_name")?,
                    date_created: time_col(r, "date_created")?,
                })
            })
            .collect()
    }

    pub async fn delete_registration_mapping(
        &self,
        account: &AccountSid,
        domain: &SipDomainSid,
        list: &CredentialListSid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sip_domain_registration_mappings \
             WHERE account_sid = $1 AND domain_sid = $2 AND credential_list_sid = $3",
        )
        .bind(account.as_str())
        .bind(domain.as_str())
        .bind(list.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    // --- What the registrar asks ----------------------------------------------------------------

    /// Routing lookup (system-wide, as domain names are unique): the account a REGISTER for
    /// `host` belongs to. A domain with registration disabled is not found. Any other host is
    /// the default domain of the first main account (the one the server created on its first
    /// start), whose every credential list applies.
    pub async fn sip_realm_scope(&self, host: &str) -> Result<Option<SipRealmScope>, StoreError> {
        let row = sqlx::query("SELECT sid, account_sid, sip_registration FROM sip_domains WHERE domain_name = $1")
            .bind(host.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(r) = row {
            if r.try_get::<i64, _>("sip_registration")? == 0 {
                return Ok(None);
            }
            return Ok(Some(SipRealmScope { account_sid: sid_col(&r, "account_sid")?, domain_sid: Some(sid_col(&r, "sid")?) }));
        }
        let row = sqlx::query(
            "SELECT sid FROM accounts WHERE owner_account_sid = sid ORDER BY date_created, sid LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(SipRealmScope { account_sid: sid_col(&r, "sid")?, domain_sid: None })).transpose()
    }

    /// The digests of `username` within `scope` (the first credential by age if several lists
    /// hold the name). The same query runs whether or not the user exists.
    pub async fn sip_digests(&self, scope: &SipRealmScope, username: &str) -> Result<Option<SipDigests>, StoreError> {
        let row = match &scope.domain_sid {
            Some(domain) => {
                sqlx::query(
                    "SELECT c.ha1_md5, c.ha1_sha256 FROM sip_credentials c \
                     JOIN sip_domain_registration_mappings m ON m.credential_list_sid = c.credential_list_sid \
                     WHERE c.account_sid = $1 AND c.username = $2 AND m.domain_sid = $3 \
                     ORDER BY c.date_created, c.sid LIMIT 1",
                )
                .bind(scope.account_sid.as_str())
                .bind(username)
                .bind(domain.as_str())
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT ha1_md5, ha1_sha256 FROM sip_credentials WHERE account_sid = $1 AND username = $2 \
                     ORDER BY date_created, sid LIMIT 1",
                )
                .bind(scope.account_sid.as_str())
                .bind(username)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        row.map(|r| Ok(SipDigests { md5: r.try_get("ha1_md5")?, sha256: r.try_get("ha1_sha256")? })).transpose()
    }

    /// Replaces the mirrored bindings of one user with `rows` (empty: unregistered).
    pub async fn replace_sip_registrations(
        &self,
        account: &AccountSid,
        username: &str,
        rows: &[SipRegistrationRow],
    ) -> Result<(), StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query("DELETE FROM sip_registrations WHERE account_sid = $1 AND username = $2")
            .bind(account.as_str())
            .bind(username)
            .execute(&mut *tx)
            .await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO sip_registrations (account_sid, username, contact, source, transport, expires_at, presence) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_sid, username, contact) DO NOTHING",
            )
            .bind(account.as_str())
            .bind(username)
            .bind(&r.contact)
            .bind(&r.source)
            .bind(&r.transport)
            .bind(micros(r.expires_at))
            .bind(&r.presence)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Forgets every mirrored binding: a node starting holds none.
    pub async fn clear_sip_registrations(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sip_registrations").execute(self.writer()).await?;
        Ok(())
    }

    /// Every user of `account` (distinct usernames of its credential lists, sorted), with the
    /// bindings live at `now` and whether a call of the account is queued, ringing or in progress
    /// to or from `client:USER`.
    pub async fn sip_users(&self, account: &AccountSid, now: DateTime<Utc>) -> Result<Vec<SipUserState>, StoreError> {
        let names = sqlx::query("SELECT DISTINCT username FROM sip_credentials WHERE account_sid = $1 ORDER BY username")
            .bind(account.as_str())
            .fetch_all(&self.pool)
            .await?;
        let regs = sqlx::query(
            "SELECT account_sid, username, contact, source, transport, expires_at, presence FROM sip_registrations \
             WHERE account_sid = $1 AND expires_at > $2 ORDER BY username, expires_at",
        )
        .bind(account.as_str())
        .bind(micros(now))
        .fetch_all(&self.pool)
        .await?;
        let regs = regs.iter().map(decode_registration).collect::<Result<Vec<_>, _>>()?;
        let busy = sqlx::query(
            "SELECT from_address, to_address FROM calls WHERE account_sid = $1 \
             AND status IN ('queued', 'ringing', 'in-progress') \
             AND (from_address LIKE 'client:%' OR to_address LIKE 'client:%')",
        )
        .bind(account.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut clients = Vec::new();
        for r in &busy {
            for col in ["from_address", "to_address"] {
                let v: String = r.try_get(col)?;
                if let Some(user) = v.strip_prefix("client:") {
                    clients.push(user.to_owned());
                }
            }
        }
        // Credential users, and the browser identities (access tokens) that registered.
        let mut usernames = Vec::new();
        for r in &names {
            usernames.push(r.try_get::<String, _>("username")?);
        }
        for b in &regs {
            if !usernames.contains(&b.username) {
                usernames.push(b.username.clone());
            }
        }
        usernames.sort();
        let mut out = Vec::new();
        for username in usernames {
            let bindings = regs.iter().filter(|b| b.username == username).cloned().collect();
            let in_call = clients.contains(&username);
            out.push(SipUserState { username, bindings, in_call });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn list(account: &AccountSid, name: &str) -> CredentialListRecord {
        let now = now();
        CredentialListRecord { sid: CredentialListSid::generate(), account_sid: *account, friendly_name: name.into(), date_created: now, date_updated: now }
    }

    fn cred(list: &CredentialListRecord, username: &str) -> CredentialRecord {
        let now = now();
        CredentialRecord {
            sid: CredentialSid::generate(),
            account_sid: list.account_sid,
            credential_list_sid: list.sid,
            username: username.into(),
            date_created: now,
            date_updated: now,
        }
    }

    fn domain(account: &AccountSid, name: &str) -> SipDomainRecord {
        let now = now();
        SipDomainRecord {
            sid: SipDomainSid::generate(),
            account_sid: *account,
            domain_name: name.into(),
            friendly_name: name.into(),
            voice_url: Some("https://app.example/voice".into()),
            voice_method: "POST".into(),
            voice_fallback_url: None,
            voice_fallback_method: "POST".into(),
            voice_status_callback_url: None,
            voice_status_callback_method: "POST".into(),
            sip_registration: true,
            date_created: now,
            date_updated: now,
        }
    }

    #[test]
    fn digests_are_rfc_ha1() {
        // RFC 2617 §3.5's example user, under our realm: H("Mufasa:dialtone:Circle Of Life").
        let d = SipDigests::new("Mufasa", "Circle Of Life");
        assert_eq!(d.md5, hex::encode(Md5::digest(b"Mufasa:dialtone:Circle Of Life")));
        assert_eq!(d.sha256.len(), 64);
        assert_ne!(d, SipDigests::new("Mufasa", "Circle of Life"));
    }

    #[tokio::test]
    async fn credentials_are_scoped_and_passwords_are_not_stored() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let l = list(&a, "agents");
        db.store.create_credential_list(&l).await.unwrap();
        let c = cred(&l, "alice");
        assert!(db.store.create_credential(&c, "Correct-Horse-9").await.unwrap());
        assert!(!db.store.create_credential(&cred(&l, "alice"), "Other-Password-1").await.unwrap(), "duplicate username");
        assert_eq!(db.store.credential(&a, &l.sid, &c.sid).await.unwrap().as_ref(), Some(&c));
        assert_eq!(db.store.credential(&b, &l.sid, &c.sid).await.unwrap(), None);
        assert_eq!(db.store.credential_list(&b, &l.sid).await.unwrap(), None);
        assert_eq!(db.store.list_credentials(&a, &l.sid, &PageRequest::first(10)).await.unwrap().items, vec![c.clone()]);
        assert!(db.store.list_credentials(&b, &l.sid, &PageRequest::first(10)).await.unwrap().items.is_empty());
        let raw = sqlx::query("SELECT * FROM sip_credentials").fetch_all(&db.store.pool).await.unwrap();
        for col in ["ha1_md5", "ha1_sha256", "username"] {
            let v: String = raw[0].try_get(col).unwrap();
            assert!(!v.contains("Correct-Horse"), "{col}");
        }

        // The default domain (any host that is no SIP domain) is the first main account's.
        let scope = db.store.sip_realm_scope("127.0.0.1").await.unwrap().unwrap();
        assert_eq!(scope, SipRealmScope { account_sid: a, domain_sid: None });
        assert_eq!(db.store.sip_digests(&scope, "alice").await.unwrap(), Some(SipDigests::new("alice", "Correct-Horse-9")));
        assert_eq!(db.store.sip_digests(&scope, "mallory").await.unwrap(), None);

        let mut changed = c.clone();
        changed.date_updated = now();
        assert!(db.store.update_credential_password(&changed, "New-Password-42").await.unwrap());
        assert_eq!(db.store.sip_digests(&scope, "alice").await.unwrap(), Some(SipDigests::new("alice", "New-Password-42")));
        changed.account_sid = b;
        assert!(!db.store.update_credential_password(&changed, "x").await.unwrap());

        assert!(!db.store.delete_credential_list(&b, &l.sid).await.unwrap());
        assert!(db.store.delete_credential_list(&a, &l.sid).await.unwrap());
        assert_eq!(db.store.sip_digests(&scope, "alice").await.unwrap(), None);
    }

    #[tokio::test]
    async fn domains_route_registrations_through_their_mappings() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let d = domain(&b, "acme.sip.example");
        assert!(db.store.create_sip_domain(&d).await.unwrap());
        assert!(!db.store.create_sip_domain(&domain(&a, "acme.sip.example")).await.unwrap(), "names are unique");
        let l = list(&b, "acme");
        db.store.create_credential_list(&l).await.unwrap();
        db.store.create_credential(&cred(&l, "bob"), "Bob-Password-1").await.unwrap();
        let foreign = list(&a, "other");
        db.store.create_credential_list(&foreign).await.unwrap();

        let scope = db.store.sip_realm_scope("ACME.sip.example").await.unwrap().unwrap();
        assert_eq!(scope, SipRealmScope { account_sid: b, domain_sid: Some(d.sid) });
        assert_eq!(db.store.sip_digests(&scope, "bob").await.unwrap(), None, "no mapping yet");
        assert!(!db.store.create_registration_mapping(&b, &d.sid, &foreign.sid, now()).await.unwrap());
        assert!(!db.store.create_registration_mapping(&a, &d.sid, &l.sid, now()).await.unwrap());
        assert!(db.store.create_registration_mapping(&b, &d.sid, &l.sid, now()).await.unwrap());
        assert!(db.store.sip_digests(&scope, "bob").await.unwrap().is_some());
        let maps = db.store.registration_mappings(&b, &d.sid).await.unwrap();
        assert_eq!(maps.len(), 1);
        assert_eq!(maps[0].friendly_name, "acme");
        assert!(db.store.registration_mappings(&a, &d.sid).await.unwrap().is_empty());

        let mut off = d.clone();
        off.sip_registration = false;
        assert!(db.store.update_sip_domain(&off).await.unwrap());
        assert_eq!(db.store.sip_realm_scope("acme.sip.example").await.unwrap(), None);
        assert!(!db.store.delete_sip_domain(&a, &d.sid).await.unwrap());
        assert!(db.store.delete_sip_domain(&b, &d.sid).await.unwrap());
        assert_eq!(db.store.list_sip_domains(&b, &PageRequest::first(5)).await.unwrap().items.len(), 0);
    }

    #[tokio::test]
    async fn users_show_live_bindings_only() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let l = list(&a, "agents");
        db.store.create_credential_list(&l).await.unwrap();
        for u in ["alice", "bob"] {
            db.store.create_credential(&cred(&l, u), "Password-1234").await.unwrap();
        }
        let t = now();
        let row = |contact: &str, secs: i64| SipRegistrationRow {
            account_sid: a,
            username: "alice".into(),
            contact: contact.into(),
            source: "127.0.0.1:5062".into(),
            transport: "udp".into(),
            expires_at: t + chrono::Duration::seconds(secs),
            presence: "available".into(),
        };
        db.store.replace_sip_registrations(&a, "alice", &[row("<sip:alice@10.0.0.1>", 60), row("<sip:alice@10.0.0.2>", -1)]).await.unwrap();
        let users = db.store.sip_users(&a, t).await.unwrap();
        assert_eq!(users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(users[0].bindings, vec![row("<sip:alice@10.0.0.1>", 60)]);
        assert!(users[1].bindings.is_empty());
        assert!(!users[0].in_call);
        assert!(db.store.sip_users(&b, t).await.unwrap().is_empty());
        db.store.replace_sip_registrations(&a, "alice", &[]).await.unwrap();
        assert!(db.store.sip_users(&a, t).await.unwrap()[0].bindings.is_empty());
        db.store.replace_sip_registrations(&a, "alice", &[row("<sip:alice@10.0.0.1>", 60)]).await.unwrap();
        db.store.clear_sip_registrations().await.unwrap();
        assert!(db.store.sip_users(&a, t).await.unwrap()[0].bindings.is_empty());
    }
}
