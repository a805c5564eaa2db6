//! Accounts' own rate tables, stored as the JSON text the API checked (the store does not read
//! rates: `billing` does).

use chrono::{DateTime, Utc};
use model::AccountSid;
use sqlx::Row;

use crate::{micros, sid_col, time_col, Store, StoreError};

/// A stored rate table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTableRecord {
    /// The account whose table it is (for an inherited table, the parent).
    pub account_sid: AccountSid,
    /// `billing::RateSheet` as JSON.
    pub rates: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl Store {
    /// The account's own table.
    pub async fn rate_table(&self, account: &AccountSid) -> Result<Option<RateTableRecord>, StoreError> {
        let row = sqlx::query("SELECT account_sid, rates, date_created, date_updated FROM rate_tables WHERE account_sid = $1")
            .bind(account.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The table that prices the account: its own, else its parent's.
    pub async fn effective_rate_table(&self, account: &AccountSid) -> Result<Option<RateTableRecord>, StoreError> {
        // The account's own row sorts first: its owner is itself only for a main account, and
        // then both rows are the same one.
        let row = sqlx::query(
            "SELECT t.account_sid, t.rates, t.date_created, t.date_updated FROM rate_tables t \
             JOIN accounts a ON a.sid = $1 \
             WHERE t.account_sid = a.sid OR t.account_sid = a.owner_account_sid \
             ORDER BY CASE WHEN t.account_sid = a.sid THEN 0 ELSE 1 END LIMIT 1",
        )
        .bind(account.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Sets (creates or replaces) the account's table.
    pub async fn set_rate_table(&self, account: &AccountSid, rates: &str, now: DateTime<Utc>) -> Result<RateTableRecord, StoreError> {
        sqlx::query(
            "INSERT INTO rate_tables (account_sid, rates, date_created, date_updated) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (account_sid) DO UPDATE SET rates = excluded.rates, date_updated = excluded.date_updated",
        )
        .bind(account.as_str())
        .bind(rates)
        .bind(micros(now))
        .execute(self.writer())
        .await?;
        self.rate_table(account)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("rate table of {account} vanished after write")))
    }

    /// Removes the account's table; whether it had one.
    pub async fn delete_rate_table(&self, account: &AccountSid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM rate_tables WHERE account_sid = $1")
            .bind(account.as_str())
            .execute(self.writer())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn decode(r: &crate::DbRow) -> Result<RateTableRecord, StoreError> {
    Ok(RateTableRecord {
        account_sid: sid_col(r, "account_sid")?,
        rates: r.try_get("rates")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

#[cfg(test)]
mod tests {
    use crate::accounts::tests::subaccount;
    use crate::testutil::*;

    #[tokio::test]
    async fn a_subaccount_is_priced_by_its_own_table_else_its_parents() {
        let db = temp_store().await;
        let store = &db.store;
        let parent = account(store).await;
        let child = subaccount(store, &parent, "child").await.sid;
        assert_eq!(store.effective_rate_table(&child).await.unwrap(), None);
        let t0 = now();
        store.set_rate_table(&parent, r#"{"outbound":{"1":"0.01"}}"#, t0).await.unwrap();
        let inherited = store.effective_rate_table(&child).await.unwrap().unwrap();
        assert_eq!((inherited.account_sid, inherited.rates.as_str()), (parent, r#"{"outbound":{"1":"0.01"}}"#));
        assert_eq!(store.rate_table(&child).await.unwrap(), None);
        store.set_rate_table(&child, "{}", t0).await.unwrap();
        let t1 = t0 + chrono::Duration::seconds(5);
        let own = store.set_rate_table(&child, r#"{"rounding":"per-second"}"#, t1).await.unwrap();
        assert_eq!((own.date_created, own.date_updated), (t0, t1));
        assert_eq!(store.effective_rate_table(&child).await.unwrap(), Some(own));
        assert_eq!(store.effective_rate_table(&parent).await.unwrap().unwrap().account_sid, parent);
        assert!(store.delete_rate_table(&child).await.unwrap());
        assert!(!store.delete_rate_table(&child).await.unwrap());
        assert_eq!(store.effective_rate_table(&child).await.unwrap().unwrap().account_sid, parent);
    }
}
