//! Accounts and subaccounts, auth-token rotation, and whether an account may carry calls.

use chrono::{DateTime, Utc};
use model::{AccountRecord, AccountSid, AccountStatus};
use sqlx::Row;

use crate::{
    micros, opt_time_col, sid_col, time_col, DbRow, Page, PageRequest, Sql, Store, StoreError,
};

pub(crate) const COLUMNS: &str = "SELECT sid, owner_account_sid, friendly_name, auth_token, \
    secondary_auth_token, secondary_auth_token_created, status, date_created, date_updated, \
    console_crm_url \
    FROM accounts";

/// Filters of the Accounts list, as Twilio names them (exact matches).
/// How long a cached account is trusted without a write through this store clearing it: a
/// bound on staleness should another process change the database.
const ACCOUNT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Accounts read for calls, so that a call's set-up does not read the database for its account
/// each time. Every account write through the store empties it; a read that raced a write does
/// not keep what it read.
#[derive(Debug, Default)]
pub(crate) struct AccountCache {
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// Bumped by every write; a read keeps its result only under the generation it began in.
    generation: u64,
    entries: std::collections::HashMap<AccountSid, (std::time::Instant, AccountRecord)>,
}

impl AccountCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A poisoned lock only means a holder panicked; the map itself is whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn changed(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    pub friendly_name: Option<String>,
    pub status: Option<AccountStatus>,
}

/// Whether an account may place or receive calls right now; see
/// [`Store::account_call_permission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPermission {
    Allowed,
    /// The account, or the main account above it, is suspended.
    Suspended,
    /// The account, or the main account above it, is closed.
    Closed,
    /// No such account.
    UnknownAccount,
}

impl CallPermission {
    pub fn is_allowed(self) -> bool {
        self == CallPermission::Allowed
    }

    /// The Twilio error to record when a call is refused: 10003 "Incoming call rejected due to
    /// inactive account" for an inbound call, 10001 "Account is not active" for an outbound one.
    /// `None` when the call is allowed.
    pub fn twilio_error_code(self, inbound: bool) -> Option<u32> {
        match (self, inbound) {
            (CallPermission::Allowed, _) => None,
            (_, true) => Some(10003),
            (_, false) => Some(10001),
        }
    }
}

pub(crate) fn decode(r: &DbRow) -> Result<AccountRecord, StoreError> {
    let sid = sid_col(r, "sid")?;
    // Rows from before subaccounts existed have no owner: they are main accounts.
    let owner: Option<String> = r.try_get("owner_account_sid")?;
    let owner_account_sid = match owner {
        Some(s) => s.parse().map_err(|e| StoreError::Corrupt(format!("owner_account_sid {s:?}: {e}")))?,
        None => sid,
    };
    Ok(AccountRecord {
        sid,
        owner_account_sid,
        friendly_name: r.try_get("friendly_name")?,
        auth_token: r.try_get("auth_token")?,
        secondary_auth_token: r.try_get("secondary_auth_token")?,
        secondary_auth_token_created: opt_time_col(r, "secondary_auth_token_created")?,
        status: r.try_get("status")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
        console_crm_url: r.try_get("console_crm_url")?,
    })
}

impl Store {
    /// Adds an account: a subaccount when `rec.owner_account_sid` names another (existing) account,
    /// a main account when it names `rec.sid` itself.
    pub async fn create_account(&self, rec: &AccountRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO accounts (sid, owner_account_sid, friendly_name, auth_token, \
             secondary_auth_token, secondary_auth_token_created, status, date_created, date_updated, \
             console_crm_url) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.owner_account_sid.as_str())
        .bind(&rec.friendly_name)
        .bind(&rec.auth_token)
        .bind(&rec.secondary_auth_token)
        .bind(rec.secondary_auth_token_created.map(micros))
        .bind(&rec.status)
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .bind(&rec.console_crm_url)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// `owner` itself and its subaccounts, newest first (Twilio's Accounts list as seen by
    /// `owner`).
    pub async fn list_accounts(
        &self,
        owner: &AccountSid,
        filter: &AccountFilter,
        page: &PageRequest,
    ) -> Result<Page<AccountRecord>, StoreError> {
        let mut q = Sql::new(COLUMNS);
        q.push(" WHERE (sid = ")
            .push_bind(owner.as_str().to_owned())
            .push(" OR owner_account_sid = ")
            .push_bind(owner.as_str().to_owned())
            .push(")");
        if let Some(name) = &filter.friendly_name {
            q.push(" AND friendly_name = ").push_bind(name.clone());
        }
        if let Some(status) = filter.status {
            q.push(" AND status = ").push_bind(status.as_str());
        }
        self.page_of(q, page, decode).await
    }

    /// Saves `friendly_name`, `status` and `date_updated`. Returns whether the account existed.
    pub async fn update_account(&self, rec: &AccountRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET friendly_name = $1, status = $2, date_updated = $3, \
             console_crm_url = $4 WHERE sid = $5",
        )
        .bind(&rec.friendly_name)
        .bind(&rec.status)
        .bind(micros(rec.date_updated))
        .bind(&rec.console_crm_url)
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        self.accounts.changed();
        Ok(done.rows_affected() > 0)
    }

    /// Sets (or with `None` removes) the account's secondary auth token. Returns the account as
    /// it now stands, `None` if it does not exist.
    pub async fn set_secondary_auth_token(
        &self,
        sid: &AccountSid,
        token: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<AccountRecord>, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET secondary_auth_token = $1, secondary_auth_token_created = $2, \
             date_updated = $3 WHERE sid = $4",
        )
        .bind(token)
        .bind(token.map(|_| micros(now)))
        .bind(micros(now))
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        self.accounts.changed();
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.account(sid).await
    }

    /// Makes the secondary auth token the primary one in one statement: the old primary stops
    /// authenticating at once and there is no secondary afterwards. Returns the account as it now
    /// stands, or `None` if it does not exist or has no secondary token.
    pub async fn promote_secondary_auth_token(
        &self,
        sid: &AccountSid,
        now: DateTime<Utc>,
    ) -> Result<Option<AccountRecord>, StoreError> {
        let done = sqlx::query(
            "UPDATE accounts SET auth_token = secondary_auth_token, secondary_auth_token = NULL, \
             secondary_auth_token_created = NULL, date_updated = $1 \
             WHERE sid = $2 AND secondary_auth_token IS NOT NULL",
        )
        .bind(micros(now))
        .bind(sid.as_str())
        .execute(self.writer())
        .await?;
        self.accounts.changed();
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.account(sid).await
    }

    /// The account, for a call's set-up: as [`Store::account`], from memory when read in the
    /// last few seconds and not written since.
    pub async fn account_for_call(&self, sid: &AccountSid) -> Result<Option<AccountRecord>, StoreError> {
        let generation = {
            let inner = self.accounts.lock();
            if let Some((at, rec)) = inner.entries.get(sid) {
                if at.elapsed() < ACCOUNT_CACHE_TTL {
                    return Ok(Some(rec.clone()));
                }
            }
            inner.generation
        };
        let read_at = std::time::Instant::now();
        let found = self.account(sid).await?;
        if let Some(rec) = &found {
            let mut inner = self.accounts.lock();
            if inner.generation == generation {
                inner.entries.insert(*sid, (read_at, rec.clone()));
            }
        }
        Ok(found)
    }

    /// Whether `sid` may place or receive calls: its own status and its main account's both count
    /// (suspending or closing a main account stops its subaccounts too, as on Twilio).
    ///
    /// For `node`: ask this before answering an inbound call (refuse and record
    /// [`CallPermission::twilio_error_code`] `(true)`, 10003) and before dialling an outbound one
    /// (10001). The REST API already refuses a suspended or closed account's own credentials.
    pub async fn account_call_permission(&self, sid: &AccountSid) -> Result<CallPermission, StoreError> {
        let Some(account) = self.account(sid).await? else {
            return Ok(CallPermission::UnknownAccount);
        };
        let mut statuses = vec![account.status.clone()];
        if account.is_subaccount() {
            match self.account(&account.owner_account_sid).await? {
                Some(owner) => statuses.push(owner.status),
                None => return Ok(CallPermission::UnknownAccount),
            }
        }
        let parsed = statuses
            .iter()
            .map(|s| s.parse::<AccountStatus>().map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(if parsed.contains(&AccountStatus::Closed) {
            CallPermission::Closed
        } else if parsed.contains(&AccountStatus::Suspended) {
            CallPermission::Suspended
        } else {
            CallPermission::Allowed
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::*;

    pub async fn subaccount(store: &Store, parent: &AccountSid, name: &str) -> AccountRecord {
        let now = now();
        let sid = AccountSid::generate();
        let rec = AccountRecord {
            sid,
            owner_account_sid: *parent,
            friendly_name: name.into(),
            auth_token: format!("token-{sid}"),
            secondary_auth_token: None,
            secondary_auth_token_created: None,
            status: "active".into(),
            date_created: now,
            date_updated: now,
            console_crm_url: None,
        };
        store.create_account(&rec).await.unwrap();
        rec
    }

    #[tokio::test]
    async fn a_call_sees_every_account_write_at_once() {
        let db = temp_store().await;
        let main = account(&db.store).await;
        let a = subaccount(&db.store, &main, "a").await;
        assert_eq!(db.store.account_for_call(&a.sid).await.unwrap().as_ref(), Some(&a));
        let mut suspended = a.clone();
        suspended.status = "suspended".into();
        assert!(db.store.update_account(&suspended).await.unwrap());
        assert_eq!(db.store.account_for_call(&a.sid).await.unwrap().unwrap().status, "suspended");
        db.store.set_secondary_auth_token(&a.sid, Some("second"), now()).await.unwrap();
        db.store.promote_secondary_auth_token(&a.sid, now()).await.unwrap();
        assert_eq!(db.store.account_for_call(&a.sid).await.unwrap().unwrap().auth_token, "second");
        // A clone of the store shares the cache and what clears it.
        let clone = db.store.clone();
        suspended.status = "active".into();
        assert!(clone.update_account(&suspended).await.unwrap());
        assert_eq!(db.store.account_for_call(&a.sid).await.unwrap().unwrap().status, "active");
        assert_eq!(db.store.account_for_call(&AccountSid::generate()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn main_accounts_own_themselves_and_list_their_subaccounts_only() {
        let db = temp_store().await;
        let (main, other) = (account(&db.store).await, account(&db.store).await);
        let rec = db.store.account(&main).await.unwrap().unwrap();
        assert_eq!(rec.owner_account_sid, main);
        assert!(!rec.is_subaccount());
        let a = subaccount(&db.store, &main, "a").await;
        let b = subaccount(&db.store, &main, "b").await;
        subaccount(&db.store, &other, "foreign").await;
        assert_eq!(db.store.account(&a.sid).await.unwrap().as_ref(), Some(&a));

        let all = |f: AccountFilter, who: AccountSid| {
            let store = db.store.clone();
            async move {
                let page = store.list_accounts(&who, &f, &PageRequest::first(50)).await.unwrap();
                let mut sids: Vec<AccountSid> = page.items.iter().map(|a| a.sid).collect();
                sids.sort();
                sids
            }
        };
        let mut want = vec![main, a.sid, b.sid];
        want.sort();
        assert_eq!(all(AccountFilter::default(), main).await, want);
        // A subaccount sees itself only, never its parent or sibling.
        assert_eq!(all(AccountFilter::default(), a.sid).await, vec![a.sid]);
        let by_name = AccountFilter { friendly_name: Some("b".into()), status: None };
        assert_eq!(all(by_name, main).await, vec![b.sid]);

        let mut suspended = b.clone();
        suspended.status = "suspended".into();
        suspended.friendly_name = "b2".into();
        assert!(db.store.update_account(&suspended).await.unwrap());
        let by_status = AccountFilter { friendly_name: None, status: Some(AccountStatus::Suspended) };
        assert_eq!(all(by_status, main).await, vec![b.sid]);
        assert_eq!(db.store.account(&b.sid).await.unwrap().unwrap().friendly_name, "b2");
    }

    #[tokio::test]
    async fn secondary_token_is_promoted_atomically_or_removed() {
        let db = temp_store().await;
        let sid = account(&db.store).await;
        let t = now();
        assert_eq!(db.store.promote_secondary_auth_token(&sid, t).await.unwrap(), None);
        let rec = db.store.set_secondary_auth_token(&sid, Some("second"), t).await.unwrap().unwrap();
        assert_eq!(rec.secondary_auth_token.as_deref(), Some("second"));
        assert_eq!(rec.secondary_auth_token_created, Some(t));
        assert_eq!(rec.auth_token, "token");
        let rec = db.store.promote_secondary_auth_token(&sid, t).await.unwrap().unwrap();
        assert_eq!((rec.auth_token.as_str(), rec.secondary_auth_token), ("second", None));
        db.store.set_secondary_auth_token(&sid, Some("third"), t).await.unwrap();
        let rec = db.store.set_secondary_auth_token(&sid, None, t).await.unwrap().unwrap();
        assert_eq!((rec.secondary_auth_token, rec.secondary_auth_token_created), (None, None));
        let missing = AccountSid::generate();
        assert_eq!(db.store.set_secondary_auth_token(&missing, Some("x"), t).await.unwrap(), None);
    }

    #[tokio::test]
    async fn call_permission_follows_the_account_and_its_parent() {
        let db = temp_store().await;
        let main = account(&db.store).await;
        let child = subaccount(&db.store, &main, "child").await;
        let perm = |sid: AccountSid| {
            let store = db.store.clone();
            async move { store.account_call_permission(&sid).await.unwrap() }
        };
        assert_eq!(perm(child.sid).await, CallPermission::Allowed);
        assert_eq!(perm(AccountSid::generate()).await, CallPermission::UnknownAccount);

        let mut c = child.clone();
        c.status = "suspended".into();
        db.store.update_account(&c).await.unwrap();
        assert_eq!(perm(child.sid).await, CallPermission::Suspended);
        assert_eq!(perm(main).await, CallPermission::Allowed);
        assert_eq!(CallPermission::Suspended.twilio_error_code(true), Some(10003));
        assert_eq!(CallPermission::Closed.twilio_error_code(false), Some(10001));
        assert_eq!(CallPermission::Allowed.twilio_error_code(true), None);

        c.status = "active".into();
        db.store.update_account(&c).await.unwrap();
        let mut m = db.store.account(&main).await.unwrap().unwrap();
        m.status = "closed".into();
        db.store.update_account(&m).await.unwrap();
        assert_eq!(perm(child.sid).await, CallPermission::Closed, "a closed parent stops its children");
        assert_eq!(perm(main).await, CallPermission::Closed);
    }
}
