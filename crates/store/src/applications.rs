//! Applications: voice and SMS URLs under one SID, which numbers refer to.

use model::{AccountSid, ApplicationRecord, ApplicationSid};
use sqlx::Row;

use crate::{micros, sid_col, time_col, DbRow, Page, PageRequest, Sql, Store, StoreError};

const COLUMNS: &str = "SELECT sid, account_sid, friendly_name, voice_url, voice_method, \
    voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
    voice_caller_id_lookup, sms_url, sms_method, sms_fallback_url, sms_fallback_method, \
    sms_status_callback, message_status_callback, public_application_connect_enabled, \
    date_created, date_updated FROM applications";

/// Filters of the Applications list, as Twilio names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationFilter {
    /// Exact match.
    pub friendly_name: Option<String>,
}

fn flag(r: &DbRow, col: &str) -> Result<bool, StoreError> {
    Ok(r.try_get::<i64, _>(col)? != 0)
}

fn decode(r: &DbRow) -> Result<ApplicationRecord, StoreError> {
    Ok(ApplicationRecord {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        friendly_name: r.try_get("friendly_name")?,
        voice_url: r.try_get("voice_url")?,
        voice_method: r.try_get("voice_method")?,
        voice_fallback_url: r.try_get("voice_fallback_url")?,
        voice_fallback_method: r.try_get("voice_fallback_method")?,
        status_callback: r.try_get("status_callback")?,
        status_callback_method: r.try_get("status_callback_method")?,
        voice_caller_id_lookup: flag(r, "voice_caller_id_lookup")?,
        sms_url: r.try_get("sms_url")?,
        sms_method: r.try_get("sms_method")?,
        sms_fallback_url: r.try_get("sms_fallback_url")?,
        sms_fallback_method: r.try_get("sms_fallback_method")?,
        sms_status_callback: r.try_get("sms_status_callback")?,
        message_status_callback: r.try_get("message_status_callback")?,
        public_application_connect_enabled: flag(r, "public_application_connect_enabled")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

impl Store {
    pub async fn create_application(&self, rec: &ApplicationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO applications (sid, account_sid, friendly_name, voice_url, voice_method, \
             voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
             voice_caller_id_lookup, sms_url, sms_method, sms_fallback_url, sms_fallback_method, \
             sms_status_callback, message_status_callback, public_application_connect_enabled, \
             date_created, date_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)",
        )
        .bind(rec.sid.as_str())
        .bind(rec.account_sid.as_str())
        .bind(&rec.friendly_name)
        .bind(&rec.voice_url)
        .bind(&rec.voice_method)
        .bind(&rec.voice_fallback_url)
        .bind(&rec.voice_fallback_method)
        .bind(&rec.status_callback)
        .bind(&rec.status_callback_method)
        .bind(i64::from(rec.voice_caller_id_lookup))
        .bind(&rec.sms_url)
        .bind(&rec.sms_method)
        .bind(&rec.sms_fallback_url)
        .bind(&rec.sms_fallback_method)
        .bind(&rec.sms_status_callback)
        .bind(&rec.message_status_callback)
        .bind(i64::from(rec.public_application_connect_enabled))
        .bind(micros(rec.date_created))
        .bind(micros(rec.date_updated))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub async fn application(
        &self,
        account: &AccountSid,
        sid: &ApplicationSid,
    ) -> Result<Option<ApplicationRecord>, StoreError> {
        self.fetch_scoped(COLUMNS, account, sid.as_str(), decode).await
    }

    /// Every application of every account (system-wide: the routing index resolves the numbers
    /// that name one).
    pub(crate) async fn applications_system_wide(&self) -> Result<Vec<ApplicationRecord>, StoreError> {
        let rows = sqlx::query(COLUMNS).fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// Applications of one account, newest first.
    pub async fn list_applications(
        &self,
        account: &AccountSid,
        filter: &ApplicationFilter,
        page: &PageRequest,
    ) -> Result<Page<ApplicationRecord>, StoreError> {
        let mut q = Sql::scoped(COLUMNS, account);
        if let Some(name) = &filter.friendly_name {
            q.push(" AND friendly_name = ").push_bind(name.clone());
        }
        self.page_of(q, page, decode).await
    }

    /// Saves every field but `sid`, `account_sid` and `date_created` of an application of
    /// `rec.account_sid`. Returns whether it existed.
    pub async fn update_application(&self, rec: &ApplicationRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE applications SET friendly_name = $1, voice_url = $2, voice_method = $3, \
             voice_fallback_url = $4, voice_fallback_method = $5, status_callback = $6, \
             status_callback_method = $7, voice_caller_id_lookup = $8, sms_url = $9, \
             sms_method = $10, sms_fallback_url = $11, sms_fallback_method = $12, \
             sms_status_callback = $13, message_status_callback = $14, \
             public_application_connect_enabled = $15, date_updated = $16 \
             WHERE account_sid = $17 AND sid = $18",
        )
        .bind(&rec.friendly_name)
        .bind(&rec.voice_url)
        .bind(&rec.voice_method)
        .bind(&rec.voice_fallback_url)
        .bind(&rec.voice_fallback_method)
        .bind(&rec.status_callback)
        .bind(&rec.status_callback_method)
        .bind(i64::from(rec.voice_caller_id_lookup))
        .bind(&rec.sms_url)
        .bind(&rec.sms_method)
        .bind(&rec.sms_fallback_url)
        .bind(&rec.sms_fallback_method)
        .bind(&rec.sms_status_callback)
        .bind(&rec.message_status_callback)
        .bind(i64::from(rec.public_application_connect_enabled))
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes an application of `account`; numbers that used it go back to their own URLs (in
    /// the same transaction). Returns whether it existed.
    pub async fn delete_application(
        &self,
        account: &AccountSid,
        sid: &ApplicationSid,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "UPDATE phone_numbers SET voice_application_sid = NULL \
             WHERE account_sid = $1 AND voice_application_sid = $2",
        )
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE phone_numbers SET sms_application_sid = NULL \
             WHERE account_sid = $1 AND sms_application_sid = $2",
        )
        .bind(account.as_str())
        .bind(sid.as_str())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM applications WHERE account_sid = $1 AND sid = $2")
            .bind(account.as_str())
            .bind(sid.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::*;

    pub fn application(account: &AccountSid, voice_url: &str) -> ApplicationRecord {
        let now = now();
        ApplicationRecord {
            sid: ApplicationSid::generate(),
            account_sid: *account,
            friendly_name: "ivr".into(),
            voice_url: Some(voice_url.into()),
            voice_method: "GET".into(),
            voice_fallback_url: Some("https://app.example/fallback".into()),
            voice_fallback_method: "POST".into(),
            status_callback: Some("https://app.example/status".into()),
            status_callback_method: "GET".into(),
            voice_caller_id_lookup: true,
            sms_url: None,
            sms_method: "POST".into(),
            sms_fallback_url: None,
            sms_fallback_method: "POST".into(),
            sms_status_callback: None,
            message_status_callback: Some("https://app.example/msg".into()),
            public_application_connect_enabled: false,
            date_created: now,
            date_updated: now,
        }
    }

    #[tokio::test]
    async fn application_crud_is_scoped_by_account() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let mut app = application(&a, "https://app.example/voice");
        db.store.create_application(&app).await.unwrap();
        assert_eq!(db.store.application(&a, &app.sid).await.unwrap().as_ref(), Some(&app));
        assert_eq!(db.store.application(&b, &app.sid).await.unwrap(), None);

        app.friendly_name = "renamed".into();
        app.voice_caller_id_lookup = false;
        app.public_application_connect_enabled = true;
        assert!(db.store.update_application(&app).await.unwrap());
        assert_eq!(db.store.application(&a, &app.sid).await.unwrap().as_ref(), Some(&app));
        let mut foreign = app.clone();
        foreign.account_sid = b;
        assert!(!db.store.update_application(&foreign).await.unwrap());

        let list = |f: ApplicationFilter, who: AccountSid| {
            let store = db.store.clone();
            async move { store.list_applications(&who, &f, &PageRequest::first(10)).await.unwrap().items.len() }
        };
        assert_eq!(list(ApplicationFilter::default(), a).await, 1);
        assert_eq!(list(ApplicationFilter::default(), b).await, 0);
        assert_eq!(list(ApplicationFilter { friendly_name: Some("renamed".into()) }, a).await, 1);
        assert_eq!(list(ApplicationFilter { friendly_name: Some("ivr".into()) }, a).await, 0);

        assert!(!db.store.delete_application(&b, &app.sid).await.unwrap());
        assert!(db.store.delete_application(&a, &app.sid).await.unwrap());
        assert_eq!(db.store.application(&a, &app.sid).await.unwrap(), None);
    }
}
