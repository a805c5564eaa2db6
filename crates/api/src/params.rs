//! Request parameters (query strings and form bodies) and the paged list envelope.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use store::{Cursor, Page, PageRequest};
use url::form_urlencoded;

use crate::AppError;

pub(crate) const DEFAULT_PAGE_SIZE: u32 = 50;
pub(crate) const MAX_PAGE_SIZE: u32 = 1000;

/// Path parameters; a path that does not decode (bad percent-encoding) is a missing resource,
/// answered like any other 404 rather than with axum's plain-text rejection.
pub(crate) struct Seg<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Seg<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(Seg(t)),
            Err(_) => Err(AppError::NotFound(parts.uri.path().to_owned())),
        }
    }
}

/// Decoded `name=value` pairs in the order sent.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Params {
        Params(pairs)
    }

    pub fn from_query(query: Option<&str>) -> Params {
        Params(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// A form body; an over-long body becomes 413, any other read failure 400.
    pub fn from_body(body: Result<Bytes, BytesRejection>) -> Result<Params, AppError> {
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge
            } else {
                AppError::bad(20001, "Could not read the request body")
            }
        })?;
        Ok(Params(form_urlencoded::parse(&body).into_owned().collect()))
    }

    /// The first value of `name` (Twilio names are case-sensitive: `PhoneNumber`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in the order sent (repeated list parameters).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Like [`Params::get`] for E.164-ish values: an unencoded `+` arrives as a space, so a
    /// leading space is read back as `+`.
    pub fn get_number(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| match v.strip_prefix(' ') {
            Some(rest) => format!("+{rest}"),
            None => v.to_owned(),
        })
    }
}

/// `PageSize`, `Page` and `PageToken`, validated.
#[derive(Debug)]
pub(crate) struct Paging {
    pub size: u32,
    pub page: u64,
    pub token: Option<String>,
    pub request: PageRequest,
}

impl Paging {
    pub fn parse(p: &Params) -> Result<Paging, AppError> {
        let size = match p.get("PageSize") {
            None => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<u32>() {
                Ok(0) | Err(_) => {
                    return Err(AppError::bad(20001, format!("Invalid PageSize {s:?}: use 1 to 1000")))
                }
                Ok(n) => n.min(MAX_PAGE_SIZE),
            },
        };
        let page = match p.get("Page") {
            None => 0,
            Some(s) => s
                .parse::<u64>()
                .map_err(|_| AppError::bad(20001, format!("Invalid Page {s:?}")))?,
        };
        let token = p.get("PageToken").filter(|t| !t.is_empty()).map(str::to_owned);
        let after = token
            .as_deref()
            .map(Cursor::from_token)
            .transpose()
            .map_err(|_| AppError::bad(20001, "Invalid PageToken"))?;
        let offset = if after.is_some() { 0 } else { page.saturating_mul(u64::from(size)) };
        Ok(Paging { size, page, token, request: PageRequest { size, after, offset } })
    }
}

/// One page of a live list (queue members, participants) that the runtime hands over whole:
/// sorted oldest first by `key` (a time and a SID), then cut like a stored list, with a cursor
/// naming the last row kept so the next page starts after it even if rows left meanwhile.
pub(crate) fn live_page<T>(
    mut items: Vec<T>,
    request: &PageRequest,
    key: impl Fn(&T) -> (chrono::DateTime<chrono::Utc>, String),
) -> Page<T> {
    let keyed = |t: &T| {
        let (at, sid) = key(t);
        (at.timestamp_micros(), sid)
    };
    items.sort_by_key(|t| keyed(t));
    let start = match &request.after {
        Some(c) => {
            let after = (c.date_created_micros, c.sid.clone());
            items.iter().position(|t| keyed(t) > after).unwrap_or(items.len())
        }
        None => usize::try_from(request.offset).unwrap_or(usize::MAX).min(items.len()),
    };
    let size = request.size.max(1) as usize;
    let more = items.len() - start > size;
    let items: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = if more {
        items.last().map(|t| {
            let (micros, sid) = keyed(t);
            Cursor { date_created_micros: micros, sid }
        })
    } else {
        None
    };
    Page { items, next }
}

/// Twilio's list envelope: exactly one records key beside the paging meta keys (the SDKs find
/// the records as the one key that is not meta), `next_page_uri` null on the last page.
pub(crate) fn envelope<T>(
    key: &str,
    path: &str,
    filters: &[(&str, String)],
    paging: &Paging,
    page: Page<T>,
    render: impl Fn(&T) -> Value,
) -> Value {
    let uri = |page_no: u64, token: Option<&str>| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in filters {
            q.append_pair(k, v);
        }
        q.append_pair("PageSize", &paging.size.to_string());
        q.append_pair("Page", &page_no.to_string());
        if let Some(t) = token {
            q.append_pair("PageToken", t);
        }
        format!("{path}?{}", q.finish())
    };
    let count = page.items.len() as u64;
    let start = paging.page.saturating_mul(u64::from(paging.size));
    let end = (start + count).saturating_sub(1).max(start);
    let next = page.next.as_ref().map(|c| uri(paging.page + 1, Some(&c.to_token())));
    // Going back is offset-based (the cursor only runs forwards); exact unless rows were added.
    let previous = (paging.page > 0).then(|| uri(paging.page - 1, None));
    let mut out = Map::new();
    out.insert(key.to_owned(), Value::Array(page.items.iter().map(render).collect()));
    out.insert("end".into(), json!(end));
    out.insert("first_page_uri".into(), json!(uri(0, None)));
    out.insert("next_page_uri".into(), json!(next));
    out.insert("page".into(), json!(paging.page));
    out.insert("page_size".into(), json!(paging.size));
    out.insert("previous_page_uri".into(), json!(previous));
    out.insert("start".into(), json!(start));
    out.insert("uri".into(), json!(uri(paging.page, paging.token.as_deref())));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_clamps_and_refuses() {
        let p = Paging::parse(&Params::from_query(None)).unwrap();
        assert_eq!((p.size, p.page, p.request.offset), (50, 0, 0));
        let p = Paging::parse(&Params::from_query(Some("PageSize=5000&Page=2"))).unwrap();
        assert_eq!((p.size, p.page, p.request.offset), (1000, 2, 2000));
        for bad in ["PageSize=0", "PageSize=-1", "PageSize=x", "Page=-3", "PageToken=nope"] {
            assert!(Paging::parse(&Params::from_query(Some(bad))).is_err(), "{bad}");
        }
    }

    #[test]
    fn live_pages_walk_oldest_first_and_survive_rows_leaving() {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let rows: Vec<(i64, String)> = (0..5).rev().map(|i| (i, format!("CA{i}"))).collect();
        let key = |r: &(i64, String)| (t0 + chrono::Duration::seconds(r.0 / 2), r.1.clone());
        let first = live_page(rows.clone(), &PageRequest::first(2), key);
        assert_eq!(first.items.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1]);
        // Row 2 leaves before the next page is read: the cursor still knows where to go on.
        let left: Vec<_> = rows.iter().filter(|r| r.0 != 2).cloned().collect();
        let second = live_page(left, &PageRequest { size: 2, after: first.next, offset: 0 }, key);
        assert_eq!(second.items.iter().map(|r| r.0).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(second.next, None);
        let by_offset = live_page(rows.clone(), &PageRequest { size: 2, after: None, offset: 4 }, key);
        assert_eq!((by_offset.items.len(), by_offset.next), (1, None));
        assert!(live_page(rows, &PageRequest { size: 2, after: None, offset: 10 }, key).items.is_empty());
    }

    #[test]
    fn unencoded_plus_is_recovered() {
        let p = Params::from_query(Some("To=+14155550100&From=%2B1555"));
        assert_eq!(p.get_number("To").as_deref(), Some("+14155550100"));
        assert_eq!(p.get_number("From").as_deref(), Some("+1555"));
    }
}
