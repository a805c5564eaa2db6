//! Persistent records: what `store` saves and `api` renders. Plain data, no I/O.
//!
//! Times are UTC (`chrono::DateTime<Utc>`); HTTP methods are the plain strings `"POST"`/`"GET"` as
//! Twilio stores them. The REST JSON shape of these records lives in `api`, not here.

use chrono::{DateTime, Utc};

use crate::call::{CallDirection, CallStatus};
use crate::conference::{ConferenceStatus, ParticipantStatus};
use crate::message::{MessageDirection, MessageStatus};
use crate::sid::{
    AccountSid, ApiKeySid, ApplicationSid, CallSid, ConferenceSid, MessageSid, PhoneNumberSid,
    QueueSid, RecordingSid, Sid, SidKind, TimeZoneOverrideSid,
};

/// A notification (`NO...`): an error or warning recorded against a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Notification;
impl SidKind for Notification {
    const PREFIX: &'static str = "NO";
}
/// A notification (`NO...`).
pub type NotificationSid = Sid<Notification>;

/// An account: the tenant every other row belongs to.
///
/// Accounts form a tree one level deep, as Twilio's: a main account owns itself, a subaccount
/// names its main account in `owner_account_sid`. A parent reads and manages its subaccounts'
/// rows; a subaccount never sees its parent's or a sibling's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    pub sid: AccountSid,
    /// The parent account; equal to `sid` for a main account (Twilio's convention).
    pub owner_account_sid: AccountSid,
    pub friendly_name: String,
    /// Secret for HTTP Basic auth; rendered only to the account itself and its parent, as Twilio
    /// does.
    pub auth_token: String,
    /// A second token that also authenticates until it is promoted to primary or deleted (token
    /// rotation without downtime).
    pub secondary_auth_token: Option<String>,
    /// When the secondary token was made.
    pub secondary_auth_token_created: Option<DateTime<Utc>>,
    /// Twilio's `active`, `suspended` or `closed` (see [`AccountStatus`]).
    pub status: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// Dialtone extension: the agent console's CRM link, `{Name}` replaced by the call's
    /// parameter `Name` (`https://crm.example.com/customers/{CustomerId}`).
    pub console_crm_url: Option<String>,
}

impl AccountRecord {
    /// Whether this is a subaccount (it has a parent other than itself).
    pub fn is_subaccount(&self) -> bool {
        self.owner_account_sid != self.sid
    }
}

/// An account's status, Twilio's spelling. `closed` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountStatus {
    Active,
    /// No calls, no API access with its own credentials; its parent can still read and
    /// reactivate it.
    Suspended,
    /// Permanently shut: its credentials stop working and it cannot be reopened.
    Closed,
}

impl AccountStatus {
    pub const ALL: [AccountStatus; 3] =
        [AccountStatus::Active, AccountStatus::Suspended, AccountStatus::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }
}

impl std::str::FromStr for AccountStatus {
    type Err = crate::call::UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AccountStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| crate::call::UnknownStatus(s.to_owned()))
    }
}

/// An API key (Twilio's Keys resource): a second credential of an account, usable for HTTP Basic
/// auth as `SK...:secret`. The secret is shown once, when the key is made; only a salted hash is
/// kept, so it is not part of this record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub sid: ApiKeySid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// An application: voice (and SMS) URLs kept under one SID, so numbers and calls can share them.
/// A number with a `voice_application_sid` takes its voice URLs from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRecord {
    pub sid: ApplicationSid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
    pub voice_url: Option<String>,
    pub voice_method: String,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    /// Kept and rendered; caller-name lookups are not performed.
    pub voice_caller_id_lookup: bool,
    pub sms_url: Option<String>,
    pub sms_method: String,
    pub sms_fallback_url: Option<String>,
    pub sms_fallback_method: String,
    pub sms_status_callback: Option<String>,
    pub message_status_callback: Option<String>,
    pub public_application_connect_enabled: bool,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// An incoming phone number and where its calls and messages go.
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
    /// Fetched when the number receives a message (Twilio's `SmsUrl`).
    pub sms_url: Option<String>,
    pub sms_method: String,
    /// Fetched when `sms_url` fails.
    pub sms_fallback_url: Option<String>,
    pub sms_fallback_method: String,
    /// When set, the number's messages use this application's SMS URLs instead of its own.
    pub sms_application_sid: Option<ApplicationSid>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// One SMS (Twilio's Message resource), outbound or inbound. A long text travels in several
/// parts (segments); this is the whole message, its parts are the store's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub sid: MessageSid,
    pub account_sid: AccountSid,
    /// E.164; for an outbound message a number of the account.
    pub from: String,
    pub to: String,
    /// Up to 1600 characters; empty once redacted.
    pub body: String,
    pub status: MessageStatus,
    pub direction: MessageDirection,
    /// Parts the body takes (GSM-7 160/153 characters, UCS-2 70/67), as Twilio bills them.
    pub num_segments: u32,
    /// Always 0: no MMS.
    pub num_media: u32,
    /// Twilio's error code once `failed` or `undelivered` (30003 unreachable destination...).
    pub error_code: Option<u32>,
    pub error_message: Option<String>,
    /// Dialtone prices nothing: `None`.
    pub price: Option<String>,
    pub price_unit: String,
    pub api_version: String,
    /// Told about the message's progress (`sent`, `delivered`, `undelivered`, `failed`).
    pub status_callback: Option<String>,
    /// The application named at creation; its message status callback was taken when the request
    /// gave none.
    pub application_sid: Option<ApplicationSid>,
    /// Seconds the message may wait to be sent (1 to 36000); past that it fails.
    pub validity_period: Option<u32>,
    /// Internal: the name of the SMSC route that carried (or received) it. Not rendered.
    pub smsc: Option<String>,
    /// Internal: how many times the runtime tried to hand it to an SMSC. Not rendered.
    pub attempts: u32,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// When it was handed to the SMSC (outbound) or received (inbound).
    pub date_sent: Option<DateTime<Utc>>,
}

impl MessageRecord {
    /// Twilio's limit on a message body, in characters.
    pub const MAX_BODY_CHARS: usize = 1600;
    /// Twilio's default and largest `ValidityPeriod`, in seconds (ten hours).
    pub const MAX_VALIDITY_PERIOD: u32 = 36_000;
    pub const PRICE_UNIT: &'static str = "USD";
    pub const API_VERSION: &'static str = "2010-04-01";

    /// A new message with a fresh SID (time-ordered: [`MessageSid::time_ordered`]), created
    /// `now`: no error, price, callback, application,
    /// validity period, SMSC or attempt yet, and not sent.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        account_sid: AccountSid,
        from: String,
        to: String,
        body: String,
        status: MessageStatus,
        direction: MessageDirection,
        num_segments: u32,
        now: DateTime<Utc>,
    ) -> MessageRecord {
        let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        MessageRecord {
            sid: MessageSid::time_ordered(millis, &mut rand::thread_rng()),
            account_sid,
            from,
            to,
            body,
            status,
            direction,
            num_segments,
            num_media: 0,
            error_code: None,
            error_message: None,
            price: None,
            price_unit: MessageRecord::PRICE_UNIT.to_owned(),
            api_version: MessageRecord::API_VERSION.to_owned(),
            status_callback: None,
            application_sid: None,
            validity_period: None,
            smsc: None,
            attempts: 0,
            date_created: now,
            date_updated: now,
            date_sent: None,
        }
    }
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
    /// What the call cost, as Twilio shows it (a negative decimal string, `"-0.1000"`), once it
    /// ended and if a rate table priced it.
    pub price: Option<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// When a `scheduled` call will be placed (its destination's calling window opens).
    pub date_scheduled: Option<DateTime<Utc>>,
}

/// A finished recording: of a call (the `<Record>` verb, `Record=true`, a `<Dial record>`) or of
/// a conference's mixed audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingRecord {
    pub sid: RecordingSid,
    pub account_sid: AccountSid,
    /// The call the recording belongs to. A conference recording names a call too, as Twilio's
    /// do: the participant call whose `<Conference record>` (or `ConferenceRecord`) started it.
    /// A room is only ever recorded because some participant's call asked for it, so there is
    /// always one to name and this stays non-optional.
    pub call_sid: CallSid,
    /// Set for a recording of a conference's mix (Twilio's `conference_sid`), `None` otherwise.
    pub conference_sid: Option<ConferenceSid>,
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

/// A call queue (Twilio's Queue resource): the persistent part. Who waits in it, and for how
/// long, is live state the runtime holds (see [`MemberRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRecord {
    pub sid: QueueSid,
    pub account_sid: AccountSid,
    /// Unique within the account: `<Enqueue>` names a queue by it.
    pub friendly_name: String,
    /// Most calls that may wait at once, 1 to [`QueueRecord::MAX_MAX_SIZE`].
    pub max_size: u32,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl QueueRecord {
    /// Twilio's default `MaxSize` (its documentation once said 100; the 2010 API now creates
    /// queues of 1000).
    pub const DEFAULT_MAX_SIZE: u32 = 1000;
    /// Twilio's largest `MaxSize`.
    pub const MAX_MAX_SIZE: u32 = 5000;
}

const _: () = assert!(QueueRecord::DEFAULT_MAX_SIZE <= QueueRecord::MAX_MAX_SIZE);

/// One call waiting in a queue (Twilio's Member resource). Live: the runtime builds these from
/// the calls it holds; nothing of a member is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub call_sid: CallSid,
    pub queue_sid: QueueSid,
    /// 1 for the front of the queue.
    pub position: u32,
    /// Whole seconds since the call was enqueued.
    pub wait_time: u32,
    pub date_enqueued: DateTime<Utc>,
}

/// A conference (Twilio's Conference resource): one run of a named room, from the moment its
/// first participant arrives until it ends. The same name opens a new conference, with a new SID,
/// once the previous one is `completed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceRecord {
    pub sid: ConferenceSid,
    pub account_sid: AccountSid,
    /// The room's name as `<Dial><Conference>` gave it.
    pub friendly_name: String,
    pub status: ConferenceStatus,
    /// Where the audio was mixed; Dialtone reports Twilio's default, `us1`.
    pub region: String,
    /// Twilio's reason once `completed`: `conference-ended-via-api`,
    /// `participant-with-end-conference-on-exit-left`,
    /// `participant-with-end-conference-on-exit-kicked`, `last-participant-kicked` or
    /// `last-participant-left`.
    pub reason_conference_ended: Option<String>,
    /// The participant call whose leaving (or kicking) ended the conference.
    pub call_sid_ending_conference: Option<CallSid>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl ConferenceRecord {
    /// The region every Dialtone conference reports.
    pub const REGION: &'static str = "us1";
}

/// One call in a conference (Twilio's Participant resource). Live: the runtime builds these from
/// the rooms it holds; nothing of a participant is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantRecord {
    pub account_sid: AccountSid,
    pub conference_sid: ConferenceSid,
    pub call_sid: CallSid,
    /// A name given when the participant was added through the API; fetch, update and delete
    /// accept it in place of the call SID.
    pub label: Option<String>,
    pub muted: bool,
    pub hold: bool,
    /// Whether it is coaching `call_sid_to_coach` (heard by that participant only).
    pub coaching: bool,
    pub call_sid_to_coach: Option<CallSid>,
    pub end_conference_on_exit: bool,
    pub start_conference_on_enter: bool,
    pub status: ParticipantStatus,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
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
    fn account_statuses_round_trip_and_main_accounts_own_themselves() {
        for st in AccountStatus::ALL {
            assert_eq!(st.as_str().parse::<AccountStatus>().unwrap(), st);
        }
        assert!("Active".parse::<AccountStatus>().is_err());
        let sid = AccountSid::generate();
        let now = Utc::now();
        let mut a = AccountRecord {
            sid,
            owner_account_sid: sid,
            friendly_name: "Main".into(),
            auth_token: "t".into(),
            secondary_auth_token: None,
            secondary_auth_token_created: None,
            status: "active".into(),
            date_created: now,
            date_updated: now,
            console_crm_url: None,
        };
        assert!(!a.is_subaccount());
        a.owner_account_sid = AccountSid::generate();
        assert!(a.is_subaccount());
    }

    #[test]
    fn application_and_key_sids_use_twilio_prefixes() {
        assert!(ApplicationSid::generate().as_str().starts_with("AP"));
        assert!(ApiKeySid::generate().as_str().starts_with("SK"));
        let key = ApiKeySid::generate().to_string();
        assert!(key.parse::<ApplicationSid>().is_err());
    }

    #[test]
    fn notification_sids_use_the_no_prefix() {
        let sid = NotificationSid::generate();
        assert!(sid.as_str().starts_with("NO"));
        assert_eq!(sid.as_str().parse::<NotificationSid>().unwrap(), sid);
        assert!(CallSid::generate().as_str().parse::<NotificationSid>().is_err());
    }
}

/// An account's answer to "what time is it there" for one number or a prefix of numbers
/// (a Dialtone resource, `TimeZoneOverrides`): it beats libphonenumber's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeZoneOverrideRecord {
    pub sid: TimeZoneOverrideSid,
    pub account_sid: AccountSid,
    /// E.164: exactly this number (`PhoneNumber`), or every number it starts (`Prefix`, `+1212`).
    pub phone_number: Option<String>,
    pub prefix: Option<String>,
    /// An IANA name, `America/New_York`.
    pub time_zone: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

/// An account's calling window (a Dialtone resource, `CallingWindow`): local hours per weekday
/// and dates off in the destination's time, and what happens to a call outside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallingWindowRecord {
    pub account_sid: AccountSid,
    /// Canonical text, `mon-fri 09:00-18:00; sat 10:00-13:00` (`calling_window::Hours`).
    pub hours: String,
    /// `YYYY-MM-DD`, in order.
    pub dates_off: Vec<String>,
    /// For Calls create: `defer` (default), `refuse` or `ignore`.
    pub policy: String,
    /// For `<Dial><Number>` and conference participants, where someone waits live: `refuse`
    /// (default) or `ignore`.
    pub dial_policy: String,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}
