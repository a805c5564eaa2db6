//! Persistent records: what `store` saves and `api` renders. Plain data, no I/O.
//!
//! Times are UTC (`chrono::DateTime<Utc>`); HTTP methods are the plain strings `"POST"`/`"GET"` as
//! Twilio stores them. The REST JSON shape of these records lives in `api`, not here.

use chrono::{DateTime, Utc};

use crate::call::{CallDirection, CallStatus};
use crate::sid::{AccountSid, CallSid, PhoneNumberSid, RecordingSid, Sid, SidKind};

/// A notification (`NO...`): an error or warning recorded against a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Notification;
impl SidKind for Notification {
    const PREFIX: &'static str = "NO";
}
/// A notification (`NO...`).
pub type NotificationSid = Sid<Notification>;

/// An account: the tenant every other row belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub sid: AccountSid,
    pub friendly_name: String,
    /// Secret for HTTP Basic auth; rendered only to the account itself, as Twilio does.
    pub auth_token: String,
    /// Twilio's `active`, `suspended` or `closed`.
    pub status: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// An incoming phone number and where its calls go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumberRecord {
    pub sid: PhoneNumberSid,
    pub account_sid: AccountSid,
    /// E.164, e.g. `+14155550100`; unique across all accounts (it is the routing key).
    pub phone_number: String,
    pub friendly_name: String,
    pub voice_url: Option<String>,
    pub voice_method: String,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// One call leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub sid: CallSid,
    pub account_sid: AccountSid,
    /// The leg that created this one (a `<Dial>`ed leg names its parent).
    pub parent_call_sid: Option<CallSid>,
    /// The number the call came in on, for inbound calls.
    pub phone_number_sid: Option<PhoneNumberSid>,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    pub direction: CallDirection,
    /// When the call was answered (Twilio's `start_time`).
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Seconds from answer to hang-up, once the call is over.
    pub duration: Option<u32>,
    pub answered_by: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// A finished recording made by the `<Record>` verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    pub sid: RecordingSid,
    pub account_sid: AccountSid,
    pub call_sid: CallSid,
    /// Whole seconds.
    pub duration: u32,
    pub channels: u32,
    /// `completed` for a finished file.
    pub status: String,
    /// `RecordVerb` for `<Record>`.
    pub source: String,
    pub start_time: DateTime<Utc>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// Path relative to the recordings directory (e.g. `RE....wav`); never user-supplied.
    pub file_name: String,
}

/// An error or warning about a call (Twilio's Notifications resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub sid: NotificationSid,
    pub account_sid: AccountSid,
    pub call_sid: Option<CallSid>,
    /// Twilio error code, e.g. 12100 (document parse failure), 11200 (HTTP retrieval failure).
    pub error_code: u32,
    /// 0 = error, 1 = warning.
    pub log: u8,
    pub message_text: String,
    pub message_date: DateTime<Utc>,
    /// The webhook request that led to the notification, if any.
    pub request_url: Option<String>,
    pub request_method: Option<String>,
    pub response_body: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl NotificationRecord {
    pub const LOG_ERROR: u8 = 0;
    pub const LOG_WARNING: u8 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_sids_use_the_no_prefix() {
        let sid = NotificationSid::generate();
        assert!(sid.as_str().starts_with("NO"));
        assert_eq!(sid.as_str().parse::<NotificationSid>().unwrap(), sid);
        assert!(CallSid::generate().as_str().parse::<NotificationSid>().is_err());
    }
}
