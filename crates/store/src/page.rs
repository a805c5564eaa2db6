//! Keyset pagination: lists are ordered newest first by `(date_created, sid)` and a page ends with
//! a cursor naming its last row, so the next page is stable while rows are inserted.

use chrono::{DateTime, Utc};

use crate::StoreError;

/// Where the previous page stopped. Opaque to clients: [`Cursor::to_token`] / [`Cursor::from_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub date_created_micros: i64,
    pub sid: String,
}

impl Cursor {
    pub fn new(date_created: DateTime<Utc>, sid: &str) -> Cursor {
        Cursor { date_created_micros: date_created.timestamp_micros(), sid: sid.to_owned() }
    }

    /// `PT<micros>_<sid>`: URL-safe (digits, letters, `_`, `-`) so it needs no escaping.
    pub fn to_token(&self) -> String {
        format!("PT{}_{}", self.date_created_micros, self.sid)
    }

    pub fn from_token(token: &str) -> Result<Cursor, StoreError> {
        let rest = token.strip_prefix("PT").ok_or(StoreError::InvalidPageToken)?;
        let (micros, sid) = rest.split_once('_').ok_or(StoreError::InvalidPageToken)?;
        let date_created_micros = micros.parse().map_err(|_| StoreError::InvalidPageToken)?;
        // SIDs are short ASCII alphanumerics; refuse anything else rather than bind it.
        if sid.is_empty() || sid.len() > 64 || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StoreError::InvalidPageToken);
        }
        Ok(Cursor { date_created_micros, sid: sid.to_owned() })
    }
}

/// Which page to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, at least 1 (the API clamps to Twilio's 1..=1000).
    pub size: u32,
    /// Continue after this row (from `PageToken`).
    pub after: Option<Cursor>,
    /// Rows to skip when no cursor is given (Twilio's bare `Page=N` means `N * size`).
    pub offset: u64,
}

impl PageRequest {
    pub fn first(size: u32) -> PageRequest {
        PageRequest { size, after: None, offset: 0 }
    }
}

/// One page of rows, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Set when more rows follow this page.
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_refuses_junk() {
        let c = Cursor { date_created_micros: 1_700_000_000_123_456, sid: "CAabc123".into() };
        assert_eq!(Cursor::from_token(&c.to_token()).unwrap(), c);
        for junk in ["", "PT", "PT12", "PTx_CA1", "PT1_", "PT1_CA'--", "XX1_CA1"] {
            assert!(Cursor::from_token(junk).is_err(), "{junk}");
        }
    }
}
