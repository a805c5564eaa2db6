//! Incoming phone numbers: tenant CRUD plus the two system-wide routing lookups.
//!
//! A number may name a voice application (`voice_application_sid`); the column lives beside the
//! record rather than in [`PhoneNumberRecord`], which holds the number's own settings. The routing
//! lookups resolve it, so their callers see the URLs that calls must use.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};

use model::{AccountSid, ApplicationSid, PhoneNumberRecord, PhoneNumberSid};

use crate::{micros, opt_sid_col, sid_col, time_col, DbRow, Page, PageRequest, Sql, Store, StoreError};

const COLUMNS: &str = "SELECT sid, account_sid, phone_number, friendly_name, voice_url, voice_method, \
    voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
    sms_url, sms_method, sms_fallback_url, sms_fallback_method, sms_application_sid, \
    date_created, date_updated FROM phone_numbers";

/// The number's own columns and, when it uses applications, their voice and SMS settings.
const ROUTING_COLUMNS: &str = "SELECT p.sid, p.account_sid, p.phone_number, p.friendly_name, \
    p.voice_url, p.voice_method, p.voice_fallback_url, p.voice_fallback_method, \
    p.status_callback, p.status_callback_method, p.sms_url, p.sms_method, p.sms_fallback_url, \
    p.sms_fallback_method, p.sms_application_sid, p.date_created, p.date_updated, \
    a.sid AS app_sid, a.voice_url AS app_voice_url, a.voice_method AS app_voice_method, \
    a.voice_fallback_url AS app_voice_fallback_url, \
    a.voice_fallback_method AS app_voice_fallback_method, \
    a.status_callback AS app_status_callback, \
    a.status_callback_method AS app_status_callback_method, \
    s.sid AS sms_app_sid, s.sms_url AS sms_app_url, s.sms_method AS sms_app_method, \
    s.sms_fallback_url AS sms_app_fallback_url, s.sms_fallback_method AS sms_app_fallback_method \
    FROM phone_numbers p LEFT JOIN applications a \
    ON a.sid = p.voice_application_sid AND a.account_sid = p.account_sid \
    LEFT JOIN applications s \
    ON s.sid = p.sms_application_sid AND s.account_sid = p.account_sid";

/// A routing row with the applications' settings in place of the number's own.
fn decode_effective(r: &DbRow) -> Result<PhoneNumberRecord, StoreError> {
    use sqlx::Row;
    let mut rec = decode(r)?;
    let app: Option<String> = r.try_get("app_sid")?;
    if app.is_some() {
        rec.voice_url = r.try_get("app_voice_url")?;
        rec.voice_method = r.try_get("app_voice_method")?;
        rec.voice_fallback_url = r.try_get("app_voice_fallback_url")?;
        rec.voice_fallback_method = r.try_get("app_voice_fallback_method")?;
        rec.status_callback = r.try_get("app_status_callback")?;
        rec.status_callback_method = r.try_get("app_status_callback_method")?;
    }
    let sms_app: Option<String> = r.try_get("sms_app_sid")?;
    if sms_app.is_some() {
        rec.sms_url = r.try_get("sms_app_url")?;
        rec.sms_method = r.try_get("sms_app_method")?;
        rec.sms_fallback_url = r.try_get("sms_app_fallback_url")?;
        rec.sms_fallback_method = r.try_get("sms_app_fallback_method")?;
    }
    Ok(rec)
}

/// Filters of the IncomingPhoneNumbers list, as Twilio names them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberFilter {
    /// Digits, `+` and `*` (one any-digit wildcard each); matches anywhere in the number, as
    /// Twilio's partial-number filter does. Other characters match nothing.
    pub phone_number: Option<String>,
    /// Exact match.
    pub friendly_name: Option<String>,
}

/// What routing needs of a number: its own settings and the applications it names, without its
/// name and dates. The routing index loads these at start ([`Store::number_routes`]) and resolves
/// the applications itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRoute {
    pub sid: PhoneNumberSid,
    pub account_sid: AccountSid,
    pub phone_number: String,
    pub voice_url: Option<String>,
    pub voice_method: String,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    pub sms_url: Option<String>,
    pub sms_method: String,
    pub sms_fallback_url: Option<String>,
    pub sms_fallback_method: String,
    pub sms_application_sid: Option<ApplicationSid>,
    pub voice_application_sid: Option<ApplicationSid>,
}

impl NumberRoute {
    /// The routing part of a number as the API holds it.
    pub fn of(rec: &PhoneNumberRecord, voice_application: Option<&ApplicationSid>) -> NumberRoute {
        NumberRoute {
            sid: rec.sid,
            account_sid: rec.account_sid,
            phone_number: rec.phone_number.clone(),
            voice_url: rec.voice_url.clone(),
            voice_method: rec.voice_method.clone(),
            voice_fallback_url: rec.voice_fallback_url.clone(),
            voice_fallback_method: rec.voice_fallback_method.clone(),
            status_callback: rec.status_callback.clone(),
            status_callback_method: rec.status_callback_method.clone(),
            sms_url: rec.sms_url.clone(),
            sms_method: rec.sms_method.clone(),
            sms_fallback_url: rec.sms_fallback_url.clone(),
            sms_fallback_method: rec.sms_fallback_method.clone(),
            sms_application_sid: rec.sms_application_sid,
            voice_application_sid: voice_application.copied(),
        }
    }
}

const ROUTE_COLUMNS: &str = "SELECT sid, account_sid, phone_number, voice_url, voice_method, \
    voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, \
    sms_url, sms_method, sms_fallback_url, sms_fallback_method, sms_application_sid, \
    voice_application_sid FROM phone_numbers";

fn decode_route(r: &DbRow) -> Result<NumberRoute, StoreError> {
    use sqlx::Row;
    Ok(NumberRoute {
        sid: sid_col(r, "sid")?,
        account_sid: sid_col(r, "account_sid")?,
        phone_number: r.try_get("phone_number")?,
        voice_url: r.try_get("voice_url")?,
        voice_method: r.try_get("voice_method")?,
        voice_fallback_url: r.try_get("voice_fallback_url")?,
        voice_fallback_method: r.try_get("voice_fallback_method")?,
        status_callback: r.try_get("status_callback")?,
        status_callback_method: r.try_get("status_callback_method")?,
        sms_url: r.try_get("sms_url")?,
        sms_method: r.try_get("sms_method")?,
        sms_fallback_url: r.try_get("sms_fallback_url")?,
        sms_fallback_method: r.try_get("sms_fallback_method")?,
        sms_application_sid: opt_sid_col(r, "sms_application_sid")?,
        voice_application_sid: opt_sid_col(r, "voice_application_sid")?,
    })
}

/// The records of [`Store::number_routes`]'s packed page; `None` if a record does not split into
/// its 15 fields or holds an invalid SID (a value with a separator in it: read the page by row).
fn unpack_routes(page: &str) -> Option<Vec<NumberRoute>> {
    let opt = |f: &str| (!f.is_empty()).then(|| f.to_owned());
    page.split('\u{1e}')
        .map(|record| {
            let f: Vec<&str> = record.split('\u{1f}').collect();
            let [phone, sid, account, voice_url, voice_method, voice_fallback_url, voice_fallback_method, status_callback, status_callback_method, sms_url, sms_method, sms_fallback_url, sms_fallback_method, sms_app, voice_app] =
                f.as_slice()
            else {
                return None;
            };
            Some(NumberRoute {
                sid: sid.parse().ok()?,
                account_sid: account.parse().ok()?,
                phone_number: (*phone).to_owned(),
                voice_url: opt(voice_url),
                voice_method: (*voice_method).to_owned(),
                voice_fallback_url: opt(voice_fallback_url),
                voice_fallback_method: (*voice_fallback_method).to_owned(),
                status_callback: opt(status_callback),
                status_callback_method: (*status_callback_method).to_owned(),
                sms_url: opt(sms_url),
                sms_method: (*sms_method).to_owned(),
                sms_fallback_url: opt(sms_fallback_url),
                sms_fallback_method: (*sms_fallback_method).to_owned(),
                sms_application_sid: if sms_app.is_empty() { None } else { Some(sms_app.parse().ok()?) },
                voice_application_sid: if voice_app.is_empty() { None } else { Some(voice_app.parse().ok()?) },
            })
        })
        .collect()
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
        sms_url: r.try_get("sms_url")?,
        sms_method: r.try_get("sms_method")?,
        sms_fallback_url: r.try_get("sms_fallback_url")?,
        sms_fallback_method: r.try_get("sms_fallback_method")?,
        sms_application_sid: opt_sid_col(r, "sms_application_sid")?,
        date_created: time_col(r, "date_created")?,
        date_updated: time_col(r, "date_updated")?,
    })
}

/// The numbers a filter `+` and digits matches (those that start with it): from the filter to the
/// next prefix (`+1555` -> `+1556`, `+1559` -> `+156`; `None` above `+99...`). Both bounds are `+`
/// and digits, which every collation orders digit by digit, so PostgreSQL's default collation
/// gives the same range as SQLite's bytes.
fn prefix_range(filter: &str) -> Option<(String, Option<String>)> {
    let digits = filter.strip_prefix('+')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut next = digits.as_bytes().to_vec();
    while let Some(last) = next.pop() {
        if last != b'9' {
            next.push(last + 1);
            break;
        }
    }
    let high = (!next.is_empty()).then(|| format!("+{}", String::from_utf8_lossy(&next)));
    Some((filter.to_owned(), high))
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
    ///
    /// Creations that arrive together are committed together: one task takes every creation
    /// waiting (up to [`GROUP_MAX`]) and writes them as one transaction of multi-row INSERTs
    /// ([`Store::create_numbers`]), so the commits per number, and on SQLite the WAL pages
    /// written per number, fall as the rate rises. Each caller still learns its own outcome, and
    /// only once its number is committed.
    pub async fn create_number(&self, rec: &PhoneNumberRecord) -> Result<(), StoreError> {
        let writes = self.number_writes.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            // The task's own handle has no way in to it, so it ends once every handle that can
            // send to it is dropped.
            let store = Store { number_writes: Default::default(), ..self.clone() };
            tokio::spawn(write_numbers(store, rx));
            NumberWrites(tx)
        });
        let (done, answer) = oneshot::channel();
        if writes.0.send((rec.clone(), done)).is_err() {
            return self.insert_number(rec).await;
        }
        match answer.await {
            Ok(result) => result,
            // The task ended (its runtime is shutting down): write it alone.
            Err(_) => self.insert_number(rec).await,
        }
    }

    /// One number, in a transaction of its own.
    async fn insert_number(&self, rec: &PhoneNumberRecord) -> Result<(), StoreError> {
        match self.create_numbers(std::slice::from_ref(rec), None).await?.as_slice() {
            [true] => Ok(()),
            _ => Err(StoreError::DuplicatePhoneNumber(rec.phone_number.clone())),
        }
    }

    pub async fn number(
        &self,
        account: &AccountSid,
        sid: &PhoneNumberSid,
    ) -> Result<Option<PhoneNumberRecord>, StoreError> {
        self.fetch_scoped(COLUMNS, account, sid.as_str(), decode).await
    }

    pub async fn list_numbers(
        &self,
        account: &AccountSid,
        filter: &NumberFilter,
        page: &PageRequest,
    ) -> Result<Page<PhoneNumberRecord>, StoreError> {
        let range = filter.phone_number.as_deref().and_then(prefix_range);
        let mut q = if range.is_some() && !self.postgres {
            // The account's index would give the page's order for free, and SQLite (without
            // statistics) walks it, testing every number of the account (7.5 s at 10 million);
            // `+` keeps the account test off that index, so the number's own index is used.
            let mut q = Sql::new(COLUMNS);
            q.push(" WHERE +account_sid = ").push_bind(account.as_str().to_owned());
            q
        } else {
            Sql::scoped(COLUMNS, account)
        };
        if let Some((low, high)) = range {
            // A leading `+` anchors the match: a range of the unique index, not a scan of the
            // account's numbers (the SDK's `list(phone_number=...)` of one number among millions).
            q.push(" AND phone_number >= ").push_bind(low);
            if let Some(high) = high {
                q.push(" AND phone_number < ").push_bind(high);
            }
        } else if let Some(pn) = &filter.phone_number {
            match like_pattern(pn) {
                Some(p) => q.push(" AND phone_number LIKE ").push_bind(p),
                None => return Ok(Page { items: Vec::new(), next: None }),
            };
        }
        if let Some(name) = &filter.friendly_name {
            q.push(" AND friendly_name = ").push_bind(name.clone());
        }
        self.page_of(q, page, decode).await
    }

    /// Saves the mutable fields (names, URLs, methods, the SMS application, `date_updated`) of
    /// a number of `rec.account_sid`. The phone number itself never changes. Returns whether it
    /// existed. The caller checks that `sms_application_sid` is an application of the account.
    pub async fn update_number(&self, rec: &PhoneNumberRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET friendly_name = $1, voice_url = $2, voice_method = $3, \
             voice_fallback_url = $4, voice_fallback_method = $5, status_callback = $6, \
             status_callback_method = $7, sms_url = $8, sms_method = $9, sms_fallback_url = $10, \
             sms_fallback_method = $11, sms_application_sid = $12, date_updated = $13 \
             WHERE account_sid = $14 AND sid = $15",
        )
        .bind(&rec.friendly_name)
        .bind(&rec.voice_url)
        .bind(&rec.voice_method)
        .bind(&rec.voice_fallback_url)
        .bind(&rec.voice_fallback_method)
        .bind(&rec.status_callback)
        .bind(&rec.status_callback_method)
        .bind(&rec.sms_url)
        .bind(&rec.sms_method)
        .bind(&rec.sms_fallback_url)
        .bind(&rec.sms_fallback_method)
        .bind(rec.sms_application_sid.as_ref().map(|s| s.as_str()))
        .bind(micros(rec.date_updated))
        .bind(rec.account_sid.as_str())
        .bind(rec.sid.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes a number of `account`; its phone number if it existed there.
    pub async fn delete_number(
        &self,
        account: &AccountSid,
        sid: &PhoneNumberSid,
    ) -> Result<Option<String>, StoreError> {
        use sqlx::Row;
        let row = sqlx::query(
            "DELETE FROM phone_numbers WHERE account_sid = $1 AND sid = $2 RETURNING phone_number",
        )
        .bind(account.as_str())
        .bind(sid.as_str())
        .fetch_optional(self.writer())
        .await?;
        row.map(|r| r.try_get("phone_number")).transpose().map_err(Into::into)
    }

    /// Routing lookup (system-wide, not scoped by account): who owns the dialled number, with its
    /// effective voice settings. When the number uses a voice application, `voice_url`,
    /// `voice_method`, `voice_fallback_url`, `voice_fallback_method`, `status_callback` and
    /// `status_callback_method` are the application's (Twilio ignores the number's own then), so
    /// a call can be routed from the record alone. Likewise, with an `sms_application_sid`,
    /// `sms_url`, `sms_method`, `sms_fallback_url` and `sms_fallback_method` are that
    /// application's. [`Store::number`] returns the number's own.
    pub async fn number_by_phone(
        &self,
        phone_number: &str,
    ) -> Result<Option<PhoneNumberRecord>, StoreError> {
        let sql = format!("{ROUTING_COLUMNS} WHERE p.phone_number = $1");
        let row = sqlx::query(&sql).bind(phone_number).fetch_optional(&self.pool).await?;
        row.as_ref().map(decode_effective).transpose()
    }

    /// Up to `limit` numbers of every account (system-wide, for the routing index), ordered by
    /// `phone_number` and starting after `after`: pages by key, so each page is an index range
    /// scan of the `phone_number` unique index and a start reads every row once.
    ///
    /// The database joins a page's rows into one text value (fields and rows split by the ASCII
    /// unit and record separators), so a page crosses from the database as one row: row by row,
    /// the per-row hand-off between the driver's thread and the caller cost 8 us a number (80 s
    /// for 10 million). A page with a value holding a separator is read again row by row.
    pub async fn number_routes(&self, after: Option<&str>, limit: u32) -> Result<Vec<NumberRoute>, StoreError> {
        use sqlx::Row;
        let (chr, agg) = if self.postgres { ("chr", "string_agg") } else { ("char", "group_concat") };
        let opt = |c: &str| format!("coalesce({c}, '')");
        let fields = [
            "phone_number".to_owned(), "sid".to_owned(), "account_sid".to_owned(), opt("voice_url"),
            "voice_method".to_owned(), opt("voice_fallback_url"), "voice_fallback_method".to_owned(),
            opt("status_callback"), "status_callback_method".to_owned(), opt("sms_url"), "sms_method".to_owned(),
            opt("sms_fallback_url"), "sms_fallback_method".to_owned(), opt("sms_application_sid"),
            opt("voice_application_sid"),
        ];
        let record = fields.join(&format!(" || {chr}(31) || "));
        let sql = format!(
            "SELECT {agg}(r, {chr}(30)) AS page FROM (SELECT {record} AS r FROM phone_numbers \
             WHERE phone_number > $1 ORDER BY phone_number LIMIT $2) t"
        );
        let row = sqlx::query(&sql)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await?;
        let page: Option<String> = row.try_get("page")?;
        let Some(page) = page else { return Ok(Vec::new()) };
        match unpack_routes(&page) {
            Some(mut routes) => {
                // An aggregate's order is not promised: the keyset needs the page in key order.
                routes.sort_unstable_by(|a, b| a.phone_number.cmp(&b.phone_number));
                Ok(routes)
            }
            None => self.number_routes_by_row(after, limit).await,
        }
    }

    /// [`Store::number_routes`], a row per number.
    async fn number_routes_by_row(&self, after: Option<&str>, limit: u32) -> Result<Vec<NumberRoute>, StoreError> {
        let sql = format!("{ROUTE_COLUMNS} WHERE phone_number > $1 ORDER BY phone_number LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(after.unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode_route).collect()
    }

    /// PostgreSQL: refreshes the planner's statistics of the numbers table (`ANALYZE`), which
    /// bulk creations grow faster than autovacuum looks; SQLite: nothing (sampled statistics
    /// misled its planner more than none; `list_numbers` steers it instead). Called after the
    /// routing load and after bulk creations.
    pub async fn analyze_numbers(&self) -> Result<(), StoreError> {
        if self.postgres {
            sqlx::query("ANALYZE phone_numbers").execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Adds many numbers in one transaction, all to the account of the first (the caller gives
    /// them one account) and with one voice application (already checked to be the account's).
    /// A number that any account already has, or that appears twice in `recs`, is skipped, not
    /// an error: the answer says, per record, whether it was added.
    pub async fn create_numbers(
        &self,
        recs: &[PhoneNumberRecord],
        voice_application: Option<&ApplicationSid>,
    ) -> Result<Vec<bool>, StoreError> {
        use sqlx::Row;
        // 18 binds a row. SQLite (through sqlx) looks each bind's name up in a list of them all,
        // so a statement's binding costs the square of its binds: 1,000 rows a statement ran at
        // 900 rows/s and 32 rows at 5,000 rows/s (debug build). PostgreSQL binds by position.
        let rows_per_statement = if self.postgres { 1000 } else { 32 };
        let mut added = std::collections::HashSet::new();
        let mut tx = self.writer().begin().await?;
        for chunk in recs.chunks(rows_per_statement) {
            let mut q = Sql::new(
                "INSERT INTO phone_numbers (sid, account_sid, phone_number, friendly_name, voice_url, \
                 voice_method, voice_fallback_url, voice_fallback_method, status_callback, \
                 status_callback_method, sms_url, sms_method, sms_fallback_url, sms_fallback_method, \
                 sms_application_sid, voice_application_sid, date_created, date_updated) VALUES ",
            );
            for (i, rec) in chunk.iter().enumerate() {
                q.push(if i == 0 { "(" } else { ", (" });
                q.push_bind(rec.sid.as_str().to_owned()).push(", ");
                q.push_bind(rec.account_sid.as_str().to_owned()).push(", ");
                q.push_bind(rec.phone_number.clone()).push(", ");
                q.push_bind(rec.friendly_name.clone()).push(", ");
                q.push_bind(rec.voice_url.clone()).push(", ");
                q.push_bind(rec.voice_method.clone()).push(", ");
                q.push_bind(rec.voice_fallback_url.clone()).push(", ");
                q.push_bind(rec.voice_fallback_method.clone()).push(", ");
                q.push_bind(rec.status_callback.clone()).push(", ");
                q.push_bind(rec.status_callback_method.clone()).push(", ");
                q.push_bind(rec.sms_url.clone()).push(", ");
                q.push_bind(rec.sms_method.clone()).push(", ");
                q.push_bind(rec.sms_fallback_url.clone()).push(", ");
                q.push_bind(rec.sms_fallback_method.clone()).push(", ");
                q.push_bind(rec.sms_application_sid.map(|s| s.as_str().to_owned())).push(", ");
                q.push_bind(voice_application.map(|s| s.as_str().to_owned())).push(", ");
                q.push_bind(micros(rec.date_created)).push(", ");
                q.push_bind(micros(rec.date_updated)).push(")");
            }
            q.push(" ON CONFLICT (phone_number) DO NOTHING RETURNING sid");
            for row in q.fetch_all(&mut *tx).await? {
                let sid: String = row.try_get("sid")?;
                added.insert(sid);
            }
        }
        tx.commit().await?;
        Ok(recs.iter().map(|r| added.contains(r.sid.as_str())).collect())
    }

    /// Every application of every account, for the routing index (system-wide): numbers that
    /// name one route by its URLs.
    pub async fn all_applications(&self) -> Result<Vec<model::ApplicationRecord>, StoreError> {
        self.applications_system_wide().await
    }

    /// Which of these numbers of `account` use a voice application, and which one.
    pub async fn number_voice_applications(
        &self,
        account: &AccountSid,
        numbers: &[PhoneNumberSid],
    ) -> Result<HashMap<PhoneNumberSid, ApplicationSid>, StoreError> {
        use sqlx::Row;
        if numbers.is_empty() {
            return Ok(HashMap::new());
        }
        // The SIDs name the rows: SQLite (without statistics) would rather walk the account's
        // index for 50 of them, testing every number of the account (2 s a page at 10 million);
        // `+` keeps the other tests off their indexes, so the SID's own index is used.
        let (account_col, app_col) =
            if self.postgres { ("account_sid", "voice_application_sid") } else { ("+account_sid", "+voice_application_sid") };
        let mut q = Sql::new(&format!("SELECT sid, voice_application_sid FROM phone_numbers WHERE {account_col} = "));
        q.push_bind(account.as_str().to_owned()).push(&format!(" AND {app_col} IS NOT NULL AND sid IN ("));
        for (i, n) in numbers.iter().enumerate() {
            if i > 0 {
                q.push(", ");
            }
            q.push_bind(n.as_str().to_owned());
        }
        q.push(")");
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let app: Option<String> = r.try_get("voice_application_sid")?;
                let app = app.unwrap_or_default();
                let app = app.parse().map_err(|e| StoreError::Corrupt(format!("voice_application_sid {app:?}: {e}")))?;
                Ok((sid_col(r, "sid")?, app))
            })
            .collect()
    }

    /// Points a number of `account` at one of its voice applications, or (`None`) back at its own
    /// URLs. Returns `false` when the number is not the account's, or the application is not.
    pub async fn set_number_voice_application(
        &self,
        account: &AccountSid,
        number: &PhoneNumberSid,
        application: Option<&ApplicationSid>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET voice_application_sid = $1 \
             WHERE account_sid = $2 AND sid = $3 AND ($1 IS NULL OR EXISTS \
             (SELECT 1 FROM applications a WHERE a.sid = $1 AND a.account_sid = $2))",
        )
        .bind(application.map(|a| a.as_str().to_owned()))
        .bind(account.as_str())
        .bind(number.as_str())
        .execute(self.writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

/// Creations taken into one transaction at most.
const GROUP_MAX: usize = 1024;

type PendingNumber = (PhoneNumberRecord, oneshot::Sender<Result<(), StoreError>>);

/// The way to the task that commits single creations together.
#[derive(Debug)]
pub(crate) struct NumberWrites(mpsc::UnboundedSender<PendingNumber>);

/// Commits the creations that wait, together, until every sender is gone.
async fn write_numbers(store: Store, mut rx: mpsc::UnboundedReceiver<PendingNumber>) {
    let mut group: Vec<PendingNumber> = Vec::new();
    while rx.recv_many(&mut group, GROUP_MAX).await > 0 {
        let recs: Vec<PhoneNumberRecord> = group.iter().map(|(rec, _)| rec.clone()).collect();
        match store.create_numbers(&recs, None).await {
            Ok(added) => {
                for ((rec, done), added) in group.drain(..).zip(added) {
                    let result = if added {
                        Ok(())
                    } else {
                        Err(StoreError::DuplicatePhoneNumber(rec.phone_number))
                    };
                    let _ = done.send(result);
                }
            }
            // The group failed as a whole (a SID taken twice, the database gone): each is
            // written alone, so each gets its own error and the others are kept.
            Err(e) => {
                tracing::warn!(error = %e, numbers = group.len(), "a group of number creations failed; writing them one by one");
                for (rec, done) in group.drain(..) {
                    let _ = done.send(store.insert_number(&rec).await);
                }
            }
        }
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
            sms_url: None,
            sms_method: "POST".into(),
            sms_fallback_url: None,
            sms_fallback_method: "POST".into(),
            sms_application_sid: None,
            date_created: now,
            date_updated: now,
        }
    }

    #[tokio::test]
    async fn creations_at_once_are_committed_together_each_with_its_own_outcome() {
        let db = temp_store().await;
        let a = account(&db.store).await;
        db.store.create_number(&number(&a, "+14155550000")).await.unwrap();
        // 200 at once, the taken number among them twice and one new number twice: every
        // other creation is kept, and exactly one of the two new twins wins.
        let mut recs: Vec<_> = (1..=200).map(|i| number(&a, &format!("+1415555{i:04}"))).collect();
        recs.push(number(&a, "+14155550000"));
        recs.push(number(&a, "+14155550000"));
        recs.push(number(&a, "+14155559999"));
        recs.push(number(&a, "+14155559999"));
        let tasks: Vec<_> = recs
            .iter()
            .map(|r| {
                let (store, r) = (db.store.clone(), r.clone());
                tokio::spawn(async move { store.create_number(&r).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        for r in &results[..200] {
            assert!(r.is_ok(), "{r:?}");
        }
        for r in &results[200..202] {
            assert!(matches!(r, Err(StoreError::DuplicatePhoneNumber(p)) if p == "+14155550000"), "{r:?}");
        }
        let twins: Vec<_> = results[202..].iter().map(|r| r.is_ok()).collect();
        assert_eq!(twins.iter().filter(|ok| **ok).count(), 1, "{:?}", &results[202..]);
        for rec in &recs[..200] {
            let found = db.store.number(&a, &rec.sid).await.unwrap().expect("committed");
            assert_eq!(found.phone_number, rec.phone_number);
        }
        let winner = if twins[0] { &recs[202] } else { &recs[203] };
        assert!(db.store.number(&a, &winner.sid).await.unwrap().is_some());
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
        assert_eq!(db.store.delete_number(&b, &n.sid).await.unwrap(), None);
        let mut stolen = n.clone();
        stolen.account_sid = b;
        stolen.friendly_name = "mine now".into();
        assert!(!db.store.update_number(&stolen).await.unwrap());

        assert_eq!(db.store.number_by_phone("+14155550100").await.unwrap().map(|r| r.sid), Some(n.sid));
        assert_eq!(db.store.number_routes(None, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn routing_uses_the_voice_application_of_the_same_account_only() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let n = number(&a, "+14155550100");
        db.store.create_number(&n).await.unwrap();
        let app = crate::applications::tests::application(&a, "https://app.example/ivr");
        let foreign = crate::applications::tests::application(&b, "https://evil.example/");
        db.store.create_application(&app).await.unwrap();
        db.store.create_application(&foreign).await.unwrap();

        assert!(!db.store.set_number_voice_application(&a, &n.sid, Some(&foreign.sid)).await.unwrap());
        assert!(!db.store.set_number_voice_application(&b, &n.sid, Some(&foreign.sid)).await.unwrap());
        assert!(db.store.set_number_voice_application(&a, &n.sid, Some(&app.sid)).await.unwrap());
        let apps = db.store.number_voice_applications(&a, &[n.sid, PhoneNumberSid::generate()]).await.unwrap();
        assert_eq!(apps.get(&n.sid), Some(&app.sid));
        assert!(db.store.number_voice_applications(&b, &[n.sid]).await.unwrap().is_empty());

        let routed = db.store.number_by_phone("+14155550100").await.unwrap().unwrap();
        assert_eq!(routed.voice_url.as_deref(), Some("https://app.example/ivr"));
        assert_eq!(routed.voice_method, "GET");
        assert_eq!(routed.voice_fallback_url, app.voice_fallback_url);
        assert_eq!(routed.status_callback, app.status_callback);
        assert_eq!(routed.status_callback_method, "GET");
        assert_eq!(db.store.number_routes(None, 10).await.unwrap()[0].voice_application_sid, Some(app.sid));
        // The number's own settings are kept and shown through the tenant read.
        assert_eq!(db.store.number(&a, &n.sid).await.unwrap().unwrap().voice_url, n.voice_url);

        // Deleting the application puts the number back on its own URLs.
        assert!(db.store.delete_application(&a, &app.sid).await.unwrap());
        assert_eq!(db.store.number_by_phone("+14155550100").await.unwrap().unwrap(), n);
        assert!(db.store.number_voice_applications(&a, &[n.sid]).await.unwrap().is_empty());
        assert!(db.store.set_number_voice_application(&a, &n.sid, None).await.unwrap());
    }

    #[tokio::test]
    async fn sms_settings_are_kept_and_routing_uses_the_sms_application() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        let mut n = number(&a, "+14155550100");
        n.sms_url = Some("https://app.example/sms".into());
        n.sms_method = "GET".into();
        n.sms_fallback_url = Some("https://app.example/sms-fallback".into());
        db.store.create_number(&n).await.unwrap();
        assert_eq!(db.store.number(&a, &n.sid).await.unwrap().as_ref(), Some(&n));
        assert_eq!(db.store.number_by_phone("+14155550100").await.unwrap().as_ref(), Some(&n));

        let mut app = crate::applications::tests::application(&a, "https://app.example/ivr");
        app.sms_url = Some("https://app.example/app-sms".into());
        app.sms_method = "POST".into();
        let mut foreign = crate::applications::tests::application(&b, "https://evil.example/");
        foreign.sms_url = Some("https://evil.example/sms".into());
        db.store.create_application(&app).await.unwrap();
        db.store.create_application(&foreign).await.unwrap();

        // Another account's application is never followed, even if a row names it.
        n.sms_application_sid = Some(foreign.sid);
        assert!(db.store.update_number(&n).await.unwrap());
        let routed = db.store.number_by_phone("+14155550100").await.unwrap().unwrap();
        assert_eq!(routed.sms_url.as_deref(), Some("https://app.example/sms"));

        n.sms_application_sid = Some(app.sid);
        assert!(db.store.update_number(&n).await.unwrap());
        let routed = db.store.number_by_phone("+14155550100").await.unwrap().unwrap();
        assert_eq!(routed.sms_url.as_deref(), Some("https://app.example/app-sms"));
        assert_eq!(routed.sms_method, "POST");
        assert_eq!(routed.sms_fallback_url, app.sms_fallback_url);
        assert_eq!(routed.sms_application_sid, Some(app.sid));
        // The voice side is untouched by an SMS application.
        assert_eq!(routed.voice_url, n.voice_url);
        assert_eq!(db.store.number(&a, &n.sid).await.unwrap().unwrap().sms_url, n.sms_url);

        // Deleting the application puts the number back on its own SMS URLs.
        assert!(db.store.delete_application(&a, &app.sid).await.unwrap());
        let own = db.store.number(&a, &n.sid).await.unwrap().unwrap();
        assert_eq!(own.sms_application_sid, None);
        assert_eq!(db.store.number_by_phone("+14155550100").await.unwrap().unwrap().sms_url, n.sms_url);
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
        assert_eq!(list(by("+14155550100")).await, 1);
        assert_eq!(list(by("+14155550101")).await, 0);
        assert_eq!(list(by("+4")).await, 1);
        assert_eq!(list(by("+9")).await, 0);
        assert_eq!(list(by("4155")).await, 1);
        db.store.analyze_numbers().await.unwrap();
        assert_eq!(list(by("+14155550100")).await, 1);
        let other = account(&db.store).await;
        let theirs = db.store.list_numbers(&other, &by("+1415"), &PageRequest::first(50)).await.unwrap();
        assert!(theirs.items.is_empty(), "a prefix filter stays within the account");
        assert_eq!(list(by("555*01")).await, 1);
        assert_eq!(list(by("%")).await, 0);
        assert_eq!(
            list(NumberFilter { phone_number: None, friendly_name: Some("line +442071838750".into()) }).await,
            1
        );

        assert_eq!(db.store.delete_number(&a, &n.sid).await.unwrap().as_deref(), Some("+14155550100"));
        assert!(db.store.number_by_phone("+14155550100").await.unwrap().is_none());
    }

    #[test]
    fn prefix_ranges() {
        let r = |f: &str| prefix_range(f);
        assert_eq!(r("+1555"), Some(("+1555".into(), Some("+1556".into()))));
        assert_eq!(r("+1559"), Some(("+1559".into(), Some("+156".into()))));
        assert_eq!(r("+99"), Some(("+99".into(), None)));
        assert_eq!(r("1555"), None);
        assert_eq!(r("+15*5"), None);
        assert_eq!(r("+"), None);
    }

    #[tokio::test]
    async fn bulk_creation_skips_duplicates_and_keeps_the_rest() {
        let db = temp_store().await;
        let (a, b) = (account(&db.store).await, account(&db.store).await);
        db.store.create_number(&number(&b, "+14155550001")).await.unwrap();
        let app = crate::applications::tests::application(&a, "https://app.example/ivr");
        db.store.create_application(&app).await.unwrap();
        let mut recs: Vec<_> = (0..2500).map(|i| number(&a, &format!("+1415556{i:04}"))).collect();
        recs.push(number(&a, "+14155550001")); // another account's
        recs.push(number(&a, "+14155560007")); // twice in the request
        let added = db.store.create_numbers(&recs, Some(&app.sid)).await.unwrap();
        assert_eq!(added.len(), recs.len());
        assert!(added[..2500].iter().all(|a| *a));
        assert_eq!(&added[2500..], &[false, false]);

        // Routes page by key, every number once, with their application.
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = db.store.number_routes(after.as_deref(), 1000).await.unwrap();
            seen.extend(page.iter().map(|r| r.phone_number.clone()));
            if page.len() < 1000 {
                break;
            }
            after = page.last().map(|r| r.phone_number.clone());
        }
        assert_eq!(seen.len(), 2501);
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        let first = db.store.number_routes(Some("+1415556"), 1).await.unwrap().remove(0);
        assert_eq!(first.phone_number, "+14155560000");
        assert_eq!(first.voice_application_sid, Some(app.sid));
        assert_eq!(first, NumberRoute::of(&recs[0], Some(&app.sid)));
        assert_eq!(db.store.number_by_phone("+14155560000").await.unwrap().unwrap().voice_url.as_deref(), Some("https://app.example/ivr"));

        // A value holding a separator of the packed pages: that page is read row by row.
        let mut odd = number(&a, "+14155570000");
        odd.voice_url = Some("https://app.example/a\u{1f}b\u{1e}c".into());
        db.store.create_number(&odd).await.unwrap();
        let page = db.store.number_routes(Some("+1415556"), 5000).await.unwrap();
        assert_eq!(page.len(), 2501);
        assert_eq!(page.last().unwrap(), &NumberRoute::of(&odd, None));
    }
}
