//! Incoming phone numbers: tenant CRUD plus the two system-wide routing lookups.

use model::{AccountSid, PhoneNumberRecord, PhoneNumberSid};

use crate::{
    finish_page, micros, Sql, push_page, sid_col, time_col, Cursor, DbRow, Page,
    PageRequest, Store, StoreError,
};

const COLUMNS: &str = "SELECT sid, account_sid, phone_number, friendly_name, voice_url, voice_method, \
    voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
    date_created, date_updated FROM phone_numbers";

/// Filters of the IncomingPhoneNumbers list, as Twilio names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberFilter {
    /// Digits, `+` and `*` (one any-digit wildcard each); matches anywhere in the number, as
    /// Twilio's partial-number filter does. Other characters match nothing.
    pub phone_number: Option<String>,
    /// Exact match.
    pub friendly_name: Option<String>,
}

fn decode(r: &DbRow) -> Result<PhoneNumberRecord, StoreError> {
    use sqlx::Row;
    Ok(PhoneNumberRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        phone_number: r.try_get("phone_number")?,
        friendly_name: r.try_get("friendly_name")?,
        voice_url: r.try_get("voice_url")?,
        voice_method: r.try_get("voice_method")?,
        voice_fallback_url: r.try_get("voice_fallback_url")?,
        voice_fallback_method: r.try_get("voice_fallback_method")?,
        status_callback: r.try_get("status_callback")?,
        status_callback_method: r.try_get("status_callback_method")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

/// Twilio's `*` wildcard and partial match as a LIKE pattern; `None` if the filter can match
/// nothing (so no user text ever reaches LIKE's own `%`/`_`).
fn like_pattern(filter: &str) -> Option<String> {
    let mut p = String::from("%");
    for c in filter.chars() {
        match c {
            '0'..='9' | '+' => p.push(c),
            '*' => p.push('_'),
            _ => return None,
        }
    }
    p.push('%');
    Some(p)
}

impl Store {
    /// Adds a number to `rec.account_sid`. Fails with [`StoreError::DuplicatePhoneNumber`] if any
    /// account already has the same `phone_number`.
    pub async fn create_number(&self, rec: &PhoneNumberRecord) -> Result<(), StoreError> {
        let result = sqlx::query(
            "INSERT INTO phone_numbers (sid, account_sid, phone_number, friendly_name, voice_url, \
             voice_method, voice_fallback_url, voice_fallback_method, status_callback, \
             status_callback_method, date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.phone_number)
        .bind(&rec.friendly_name)
        .bind(&rec.voice_url)
        .bind(&rec.voice_method)
        .bind(&rec.voice_fallback_url)
        .bind(&rec.voice_fallback_method)
        .bind(&rec.status_callback)
        .bind(&rec.status_callback_method)
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::DuplicatePhoneNumber(rec.phone_number.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn number(
        &self,
        account: &AccountSid,
        sid: &PhoneNumberSid,
    ) -> Result<Option<PhoneNumberRecord>, StoreError> {
        let sql = format!("{COLUMNS} WHERE account_sid = $1 AND sid = $2");
        let row = sqlx::query(&sql)
            .bind(account.as_str())
            .bind(sid.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn list_numbers(
        &self,
        account: &AccountSid,
        filter: &NumberFilter,
        page: &PageRequest,
    ) -> Result<Page<PhoneNumberRecord>, StoreError> {
        let mut q = Sql::new(COLUMNS);
        q.push(" WHERE account_sid = ").push_bind(account.as_str().to_owned());
        if let Some(pn) = &filter.phone_number {
            match like_pattern(pn) {
                Some(p) => q.push(" AND phone_number LIKE ").push_bind(p),
                None => return Ok(Page { items: Vec::new(), next: None }),
            };
        }
        if let Some(name) = &filter.friendly_name {
            q.push(" AND friendly_name = ").push_bind(name.clone());
        }
        push_page(&mut q, page);
        let rows = q.fetch_all(&self.pool).await?;
        let items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        Ok(finish_page(items, page, |n| Cursor::new(n.date_created, n.sid.as_str())))
    }

    /// Saves the mutable fields (names, URLs, methods, `date_updated`) of a number of
    /// `rec.account_sid`. The phone number itself never changes. Returns whether it existed.
    pub async fn update_number(&self, rec: &PhoneNumberRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET friendly_name = $1, voice_url = $2, voice_method = $3, \
             voice_fallback_url = $4, voice_fallback_method = $5, status_callback = $6, \
             status_callback_method = $7, date_updated = $8 \
             WHERE account_sid = $9 AND sid = $10",
        )
        .bind(&rec.friendly_name)
        .bind(&rec.voice_url)
        .bind(&rec.voice_method)
        .bind(&rec.voice_fallback_url)
        .bind(&rec.voice_fallback_method)
        .bind(&rec.status_callback)
        .bind(&rec.status_callback_method)
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Returns whether the number existed in that account.
    pub async fn delete_number(
        &self,
        account: &AccountSid,
        sid: &PhoneNumberSid,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM phone_numbers WHERE account_sid = $1 AND sid = $2")
            .bind(account.as_str())
            .bind(sid.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Routing lookup (system-wide, not scoped by account): who owns the dialled number.
    pub async fn number_by_phone(
        &self,
        phone_number: &str,
    ) -> Result<Option<PhoneNumberRecord>, StoreError> {
        let sql = format!("{COLUMNS} WHERE phone_number = $1");
        let row = sqlx::query(&sql).bind(phone_number).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every number of every account, for the in-memory routing index (system-wide).
    pub async fn all_numbers(&self) -> Result<Vec<PhoneNumberRecord>, StoreError> {
        let sql = format!("{COLUMNS} ORDER BY phone_number");
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {

    use super::*;
    use crate::testutil::*;

    pub fn number(account: &AccountSid, phone: &str) -> PhoneNumberRecord {
        let now = now();
        PhoneNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: *account,
            phone_number: phone.to_owned(),
            friendly_name: format!("line {phone}"),
            voice_url: Some("https://app.example/voice".into()),
            voice_method: "POST".into(),
            voice_fallback_url: None,
            voice_fallback_method: "POST".into(),
            status_callback: None,
            status_callback_method: "POST".into(),
            date_created: now,
            date_updated: now,
        }
    }

    #[tokio::test]
    async fn numbers_are_unique_system_wide_and_scoped_per_account() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let n = number(&a, "+14155550100");
        db.store.create_number(&n).await.unwrap();
        let dup = db.store.create_number(&number(&b, "+14155550100")).await.unwrap_err();
        assert!(matches!(dup, StoreError::DuplicatePhoneNumber(p) if p == "+14155550100"));

        assert_eq!(db.store.number(&a, &n.sid).await.unwrap().as_ref(), Some(&n));
        assert_eq!(db.store.number(&b, &n.sid).await.unwrap(), None, "other tenant must not see it");
        assert!(!db.store.delete_number(&b, &n.sid).await.unwrap());
        let mut stolen = n.clone();
        stolen.account_sid = b;
        stolen.friendly_name = "mine now".into();
        assert!(!db.store.update_number(&stolen).await.unwrap());

        assert_eq!(db.store.number_by_phone("+14155550100").await.unwrap().map(|r| r.sid), Some(n.sid));
        assert_eq!(db.store.all_numbers().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn update_filter_and_delete() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        let mut n = number(&a, "+14155550100");
        db.store.create_number(&n).await.unwrap();
        db.store.create_number(&number(&a, "+442071838750")).await.unwrap();

        n.voice_url = Some("https://other.example/v".into());
        n.voice_method = "GET".into();
        assert!(db.store.update_number(&n).await.unwrap());
        assert_eq!(db.store.number(&a, &n.sid).await.unwrap().unwrap().voice_method, "GET");

        let by = |pn: &str| NumberFilter { phone_number: Some(pn.into()), friendly_name: None };
        let list = |f: NumberFilter| {
            let store = db.store.clone();
            async move { store.list_numbers(&a, &f, &PageRequest::first(50)).await.unwrap().items.len() }
        };
        assert_eq!(list(NumberFilter::default()).await, 2);
        assert_eq!(list(by("+1415")).await, 1);
        assert_eq!(list(by("555*01")).await, 1);
        assert_eq!(list(by("%")).await, 0);
        assert_eq!(
            list(NumberFilter { phone_number: None, friendly_name: Some("line +442071838750".into()) }).await,
            1
        );

        assert!(db.store.delete_number(&a, &n.sid).await.unwrap());
        assert!(db.store.number_by_phone("+14155550100").await.unwrap().is_none());
    }
}
