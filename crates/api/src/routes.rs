//! The route table: one [`Operation`] per method and path, which builds the router
//! ([`operations_router`]), the OpenAPI document (`crate::openapi`) and the request guard
//! ([`guard`]) that holds every request to what its operation accepts.
//!
//! The guard runs before the handler and answers, with Twilio's error body:
//! - a form body over [`crate::BODY_LIMIT`]: 413, 20001;
//! - a POST body that is not `application/x-www-form-urlencoded`: 415, 20001;
//! - a name or value that does not decode to UTF-8: 400, 20001;
//! - a parameter that is neither one this server reads nor one Twilio defines for the operation:
//!   400, 20001 "Unknown parameter", naming it. Twilio's own parameters that this server does not
//!   act on (`MachineDetection`, `MaxPrice` of a message...) are accepted and ignored, so SDK code
//!   written for Twilio keeps working; a misspelt name is refused instead of silently dropped.
//!
//! Handlers still check the values themselves (types, ranges, formats): they know the codes.

use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;

use crate::{
    accounts, applications, calls, conferences, keys, messages, numbers, proxy, queues, quiet, rates, recordings, sip, usage,
    ApiState, AppError,
    BODY_LIMIT,
};

/// What a parameter holds; the document's type, and the format a handler checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Str,
    Int,
    Bool,
    /// An absolute http(s) URL; the empty string clears a setting.
    Url,
    /// `GET` or `POST`.
    HttpMethod,
    /// E.164, e.g. `+14155550100`.
    Phone,
    /// E.164 or a `sip:` URI.
    Destination,
    /// A SID with this two-letter prefix.
    Sid(&'static str),
    /// A day, `YYYY-MM-DD` (UTC).
    Date,
    /// An ISO 8601 date and time (`2026-12-01T10:00:00Z`).
    DateTime,
    OneOf(&'static [&'static str]),
}

/// A query or form parameter this server reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Param {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// May be given more than once (`StatusCallbackEvent`).
    pub repeated: bool,
    pub doc: &'static str,
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Param {
    Param { name, ty, required: false, repeated: false, doc }
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Param {
    Param { name, ty, required: true, repeated: false, doc }
}

/// The JSON a successful request returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// One resource, with this status (200 or 201).
    One(u16, Shape),
    /// A list envelope whose records are under this key.
    Page(&'static str, Shape),
    /// 204, no body.
    Empty,
    /// The recording's audio, `audio/x-wav`.
    Audio,
}

/// The resource shapes of [`crate::render`]; `crate::openapi` holds their schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Account,
    Key,
    NewKey,
    Application,
    Number,
    Call,
    Recording,
    Notification,
    SecondaryAuthToken,
    PromotedAuthToken,
    SipDomain,
    SipCredentialList,
    SipCredential,
    /// A domain's registration credential list mapping.
    SipCredentialListMapping,
    /// A user of `GET SIP/Registrations.json` (Dialtone extension).
    SipRegistration,
    Queue,
    /// A call waiting in a queue.
    Member,
    Conference,
    Participant,
    /// A recording as a conference's Recordings list gives it (Twilio's own shape for it).
    ConferenceRecording,
    Message,
    /// An SMSC route of `GET /v1/Smsc.json` (Dialtone extension).
    Smsc,
    /// A category's usage over a period.
    UsageRecord,
    /// An account's rates (Dialtone extension).
    RateTable,
    /// An account's calling window (Dialtone extension).
    CallingWindow,
    /// A time-zone override of a number or prefix (Dialtone extension).
    TimeZoneOverride,
    ProxyService,
    /// A number of a Proxy service's pool.
    ProxyPhoneNumber,
    ProxySession,
    ProxyParticipant,
    ProxyInteraction,
    /// An interaction as a participant's MessageInteractions list gives it.
    ProxyMessageInteraction,
    /// The outcome of `POST IncomingPhoneNumbers/Bulk.json` (Dialtone extension).
    NumberBatch,
}

/// One method on one path.
pub(crate) struct Operation {
    pub method: Method,
    /// As Twilio writes it, e.g. `/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json`: the
    /// document's path; the router's is derived from it ([`route_path`]).
    pub path: &'static str,
    pub id: &'static str,
    pub summary: &'static str,
    /// In the query for GET, in the form body for POST.
    pub params: &'static [Param],
    /// Twilio's other parameters for this operation: accepted, not acted on.
    pub ignored: &'static [&'static str],
    pub reply: Reply,
    /// Error statuses beyond the ones every operation has (401, 403, 404).
    pub errors: &'static [u16],
    pub handler: fn() -> MethodRouter<ApiState>,
    /// A POST whose body is lines of text (up to this many bytes) rather than a form: its
    /// parameters are in the query string and the handler reads the body itself.
    pub lines_body: Option<usize>,
}

const PAGING: [Param; 3] = [
    opt("PageSize", Ty::Int, "Records per page, 1 to 1000 (default 50)."),
    opt("Page", Ty::Int, "Page number, from 0."),
    opt("PageToken", Ty::Str, "The cursor from a `next_page_uri`."),
];
const ACCOUNT_STATUS: Ty = Ty::OneOf(&["active", "suspended", "closed"]);
const CALL_STATUS: Ty =
    Ty::OneOf(&["scheduled", "queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled"]);

const FRIENDLY_NAME: [Param; 1] = [opt("FriendlyName", Ty::Str, "Up to 64 characters.")];
const ACCOUNT_UPDATE: [Param; 3] = [
    opt("FriendlyName", Ty::Str, "Up to 64 characters."),
    opt("Status", ACCOUNT_STATUS, "By the parent, on a subaccount; closed is final."),
    opt("ConsoleCrmUrl", Ty::Url, "Dialtone extension: the agent console's CRM link, an http(s) URL in which `{Name}` is replaced by the call's parameter `Name`; empty clears it."),
];

const NUMBER_SETTINGS: [Param; 13] = [
    opt("FriendlyName", Ty::Str, "Up to 64 characters."),
    opt("VoiceUrl", Ty::Url, "Fetched when the number is called."),
    opt("VoiceMethod", Ty::HttpMethod, "Method for VoiceUrl (default POST)."),
    opt("VoiceFallbackUrl", Ty::Url, "Fetched when VoiceUrl fails."),
    opt("VoiceFallbackMethod", Ty::HttpMethod, "Method for VoiceFallbackUrl."),
    opt("StatusCallback", Ty::Url, "Told when a call to the number ends."),
    opt("StatusCallbackMethod", Ty::HttpMethod, "Method for StatusCallback."),
    opt("VoiceApplicationSid", Ty::Sid("AP"), "Use this application's voice URLs instead; empty clears it."),
    opt("SmsUrl", Ty::Url, "Fetched when the number receives a message."),
    opt("SmsMethod", Ty::HttpMethod, "Method for SmsUrl (default POST)."),
    opt("SmsFallbackUrl", Ty::Url, "Fetched when SmsUrl fails."),
    opt("SmsFallbackMethod", Ty::HttpMethod, "Method for SmsFallbackUrl (default POST)."),
    opt("SmsApplicationSid", Ty::Sid("AP"), "Use this application's SMS URLs instead; empty clears it."),
];
const NUMBER_IGNORED: &[&str] = &[
    "AccountSid", "ApiVersion", "VoiceCallerIdLookup", "EmergencyStatus", "EmergencyAddressSid", "TrunkSid", "VoiceReceiveMode", "IdentitySid",
    "AddressSid", "BundleSid", "AreaCode",
];

const APPLICATION_SETTINGS: [Param; 16] = [
    opt("FriendlyName", Ty::Str, "Up to 64 characters."),
    opt("ApiVersion", Ty::OneOf(&["2010-04-01"]), "Only 2010-04-01."),
    opt("VoiceUrl", Ty::Url, "Fetched when a call uses the application."),
    opt("VoiceMethod", Ty::HttpMethod, "Method for VoiceUrl (default POST)."),
    opt("VoiceFallbackUrl", Ty::Url, "Fetched when VoiceUrl fails."),
    opt("VoiceFallbackMethod", Ty::HttpMethod, "Method for VoiceFallbackUrl."),
    opt("StatusCallback", Ty::Url, "Told when a call of the application ends."),
    opt("StatusCallbackMethod", Ty::HttpMethod, "Method for StatusCallback."),
    opt("VoiceCallerIdLookup", Ty::Bool, "Stored; caller names are not looked up."),
    opt("SmsUrl", Ty::Url, "Fetched when a number using the application (SmsApplicationSid) receives a message."),
    opt("SmsMethod", Ty::HttpMethod, "Method for SmsUrl (default POST)."),
    opt("SmsFallbackUrl", Ty::Url, "Fetched when SmsUrl fails."),
    opt("SmsFallbackMethod", Ty::HttpMethod, "Method for SmsFallbackUrl."),
    opt("SmsStatusCallback", Ty::Url, "Stored."),
    opt("MessageStatusCallback", Ty::Url, "Told about messages sent with this ApplicationSid that name no StatusCallback."),
    opt("PublicApplicationConnectEnabled", Ty::Bool, "Stored."),
];

const QUIET_HOURS_POLICY: Param = opt(
    "QuietHoursPolicy",
    Ty::OneOf(&["defer", "refuse", "ignore"]),
    "Dialtone extension: outside the destination's calling window, defer the call (status scheduled until the window opens), refuse it (99100) or place it anyway. Default: the window's Policy (defer).",
);
const CALL_CREATE: [Param; 17] = [
    req("To", Ty::Destination, "E.164 number (through a trunk) or a `sip:` URI."),
    req("From", Ty::Destination, "Caller ID: E.164 number or `sip:` URI."),
    opt("Url", Ty::Url, "Where the call's TwiML comes from. One of Url, Twiml, ApplicationSid is required."),
    opt("Method", Ty::HttpMethod, "Method for Url (default POST)."),
    opt("Twiml", Ty::Str, "Inline TwiML, up to 4000 characters; wins over Url and ApplicationSid."),
    opt("ApplicationSid", Ty::Sid("AP"), "Run this application's voice URLs (and its status callback when none is given)."),
    opt("FallbackUrl", Ty::Url, "Fetched when Url fails."),
    opt("FallbackMethod", Ty::HttpMethod, "Method for FallbackUrl."),
    opt("StatusCallback", Ty::Url, "Told about the call's progress."),
    opt("StatusCallbackMethod", Ty::HttpMethod, "Method for StatusCallback."),
    Param {
        name: "StatusCallbackEvent",
        ty: Ty::OneOf(&["initiated", "ringing", "answered", "completed"]),
        required: false,
        repeated: true,
        doc: "Events for StatusCallback (default completed); repeat it or separate with spaces.",
    },
    opt("Timeout", Ty::Int, "Seconds to ring, 1 to 600 (default 60; larger is clamped)."),
    opt("TimeLimit", Ty::Int, "Longest call in seconds once answered (default 14400)."),
    opt("SendDigits", Ty::Str, "Keys to press on answer: 0-9, A-D, *, #, w (0.5 s), W (1 s); up to 32."),
    opt("Record", Ty::Bool, "Record the whole call."),
    QUIET_HOURS_POLICY,
    opt("CallingWindow", Ty::Str, "Dialtone extension: this request's hours in the destination's local time, e.g. `mon-fri 09:00-18:00; sat 10:00-13:00`, in place of the account window's (its dates off still apply)."),
];
const CALL_CREATE_IGNORED: &[&str] = &[
    "RecordingChannels", "RecordingStatusCallback", "RecordingStatusCallbackMethod", "RecordingConfigurationId",
    "SipAuthUsername", "SipAuthPassword", "MachineDetection", "MachineDetectionTimeout",
    "RecordingStatusCallbackEvent", "Trim", "CallerId", "MachineDetectionSpeechThreshold",
    "MachineDetectionSpeechEndThreshold", "MachineDetectionSilenceTimeout", "AsyncAmd", "AsyncAmdStatusCallback",
    "AsyncAmdStatusCallbackMethod", "Passports", "Byoc", "CallReason", "CallToken", "RecordingTrack",
    "ClientNotificationUrl",
];
const CALL_UPDATE: [Param; 4] = [
    opt("Url", Ty::Url, "Redirect the live call to this TwiML."),
    opt("Method", Ty::HttpMethod, "Method for Url."),
    opt("Twiml", Ty::Str, "Replace what the live call runs with this TwiML."),
    opt("Status", Ty::OneOf(&["completed", "canceled"]), "End the call."),
];

const SIP_DOMAIN_SETTINGS: [Param; 8] = [
    opt("FriendlyName", Ty::Str, "Up to 64 characters."),
    opt("VoiceUrl", Ty::Url, "Stored; calls are not routed by SIP domain yet."),
    opt("VoiceMethod", Ty::HttpMethod, "Method for VoiceUrl (default POST)."),
    opt("VoiceFallbackUrl", Ty::Url, "Stored."),
    opt("VoiceFallbackMethod", Ty::HttpMethod, "Method for VoiceFallbackUrl."),
    opt("VoiceStatusCallbackUrl", Ty::Url, "Stored."),
    opt("VoiceStatusCallbackMethod", Ty::HttpMethod, "Method for VoiceStatusCallbackUrl."),
    opt("SipRegistration", Ty::Bool, "Whether users of the mapped credential lists may REGISTER (default true)."),
];
const SIP_DOMAIN_IGNORED: &[&str] = &["EmergencyCallingEnabled", "Secure", "ByocTrunkSid", "EmergencyCallerSid"];
const SIP_MAPPING_CREATE: [Param; 1] = [req("CredentialListSid", Ty::Sid("CL"), "A credential list of the same account.")];
const SIP_LIST_CREATE: [Param; 1] = [req("FriendlyName", Ty::Str, "Up to 64 characters.")];
const PASSWORD_RULE: &str = "12 to 255 characters with an upper-case letter, a lower-case letter and a digit; never returned.";
const SIP_CREDENTIAL_CREATE: [Param; 2] = [
    req("Username", Ty::Str, "SIP user part, 1 to 255 characters, unique in the list."),
    req("Password", Ty::Str, PASSWORD_RULE),
];
const SIP_CREDENTIAL_UPDATE: [Param; 1] = [opt("Password", Ty::Str, PASSWORD_RULE)];
const QUEUE_CREATE: [Param; 2] = [
    req("FriendlyName", Ty::Str, "Unique in the account (`<Enqueue>` names the queue by it), 1 to 64 characters."),
    opt("MaxSize", Ty::Int, "Most calls that may wait, 1 to 5000 (default 1000)."),
];
const QUEUE_UPDATE: [Param; 2] = [
    opt("FriendlyName", Ty::Str, "Unique in the account, 1 to 64 characters."),
    opt("MaxSize", Ty::Int, "Most calls that may wait, 1 to 5000."),
];
const MEMBER_UPDATE: [Param; 2] = [
    req("Url", Ty::Url, "The TwiML the dequeued call runs next."),
    opt("Method", Ty::HttpMethod, "Method for Url (default POST)."),
];
const CONFERENCE_STATUS: Ty = Ty::OneOf(&["init", "in-progress", "completed"]);
const CONFERENCE_UPDATE: [Param; 3] = [
    opt("Status", Ty::OneOf(&["completed"]), "End the conference."),
    opt("AnnounceUrl", Ty::Url, "Audio or TwiML (<Say>, <Play>) played to every participant."),
    opt("AnnounceMethod", Ty::HttpMethod, "Method for AnnounceUrl (default POST)."),
];
const PARTICIPANT_CREATE: [Param; 24] = [
    req("From", Ty::Str, "Caller ID: E.164, `client:NAME`, or the user part to present to a `sip:` destination."),
    req("To", Ty::Str, "E.164 number (through a trunk), `sip:` URI or `client:NAME` (a registered user)."),
    opt("Label", Ty::Str, "1 to 128 characters; fetch, update and delete accept it in place of the call SID."),
    opt("Muted", Ty::Bool, "Join muted (default false)."),
    opt("Beep", Ty::OneOf(&["true", "false", "onEnter", "onExit"]), "When the room beeps for this participant (default true)."),
    opt("StartConferenceOnEnter", Ty::Bool, "Start the conference on joining (default true)."),
    opt("EndConferenceOnExit", Ty::Bool, "End the conference on leaving (default false)."),
    opt("Coaching", Ty::Bool, "Be heard by CallSidToCoach only (default: whether CallSidToCoach is given)."),
    opt("CallSidToCoach", Ty::Sid("CA"), "The participant call to coach."),
    opt("WaitUrl", Ty::Url, "Played until the conference starts; empty for silence (default: hold music)."),
    opt("WaitMethod", Ty::HttpMethod, "Method for WaitUrl (default POST)."),
    opt("EarlyMedia", Ty::Bool, "Let the participant hear ringing (default true)."),
    opt("StatusCallback", Ty::Url, "Told about the participant call's progress."),
    opt("StatusCallbackMethod", Ty::HttpMethod, "Method for StatusCallback."),
    Param {
        name: "StatusCallbackEvent",
        ty: Ty::OneOf(&["initiated", "ringing", "answered", "completed"]),
        required: false,
        repeated: true,
        doc: "Events for StatusCallback (default completed); repeat it or separate with spaces.",
    },
    opt("ConferenceStatusCallback", Ty::Url, "Told about the conference's events."),
    opt("ConferenceStatusCallbackMethod", Ty::HttpMethod, "Method for ConferenceStatusCallback."),
    Param {
        name: "ConferenceStatusCallbackEvent",
        ty: Ty::OneOf(&["start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement"]),
        required: false,
        repeated: true,
        doc: "Events for ConferenceStatusCallback (default start end); repeat it or separate with spaces.",
    },
    opt("Record", Ty::Bool, "Record the participant's call."),
    opt("ConferenceRecord", Ty::OneOf(&["true", "false", "record-from-start", "do-not-record"]), "Record the conference (default false)."),
    opt("MaxParticipants", Ty::Int, "Room size when this participant opens the conference, 2 to 250 (default 250)."),
    opt("Timeout", Ty::Int, "Seconds to ring, 5 to 600 (default 60; out of range is clamped)."),
    opt("TimeLimit", Ty::Int, "Longest call in seconds once answered (default 14400)."),
    opt("QuietHoursPolicy", Ty::OneOf(&["refuse", "ignore"]), "Dialtone extension: outside the destination's calling window, refuse the participant (99100) or call anyway. Default: the window's DialPolicy (refuse)."),
];
const CALLING_WINDOW_SET: [Param; 4] = [
    opt("Hours", Ty::Str, "Local hours per weekday in the destination's time, e.g. `mon-fri 09:00-18:00; sat 10:00-13:00` (days mon..sun, ranges and lists, 24-hour HH:MM, end up to 24:00); a day not named is closed; empty: never open. Kept when absent."),
    Param {
        name: "DatesOff",
        ty: Ty::Str,
        required: false,
        repeated: true,
        doc: "Local dates closed all day, YYYY-MM-DD; repeat it or separate with commas (up to 400); empty clears them. Kept when absent.",
    },
    opt("Policy", Ty::OneOf(&["defer", "refuse", "ignore"]), "For Calls create outside the window (default defer)."),
    opt("DialPolicy", Ty::OneOf(&["refuse", "ignore"]), "For <Dial><Number> and conference participants outside the window, where someone waits live (default refuse)."),
];
const TIME_ZONE_OVERRIDE_CREATE: [Param; 3] = [
    opt("PhoneNumber", Ty::Phone, "Exactly this number, E.164 (give this or Prefix)."),
    opt("Prefix", Ty::Str, "Every number starting with it: + and 1 to 15 digits, e.g. +1212 (give this or PhoneNumber)."),
    req("TimeZone", Ty::Str, "An IANA time zone, e.g. America/New_York."),
];
const TIME_ZONE_OVERRIDE_UPDATE: [Param; 1] = [req("TimeZone", Ty::Str, "An IANA time zone, e.g. America/New_York.")];
const PARTICIPANT_CREATE_IGNORED: &[&str] = &[
    "ConferenceTrim", "Region", "RecordingChannels", "RecordingStatusCallback", "RecordingStatusCallbackMethod", "SipAuthUsername",
    "SipAuthPassword", "ConferenceRecordingStatusCallback", "ConferenceRecordingStatusCallbackMethod",
    "RecordingStatusCallbackEvent", "ConferenceRecordingStatusCallbackEvent", "JitterBufferSize", "Byoc", "CallerId",
    "CallReason", "RecordingTrack", "MachineDetection", "MachineDetectionTimeout", "MachineDetectionSpeechThreshold",
    "MachineDetectionSpeechEndThreshold", "MachineDetectionSilenceTimeout", "AmdStatusCallback",
    "AmdStatusCallbackMethod", "Trim", "CallToken", "ClientNotificationUrl", "CallerDisplayName",
];
const PARTICIPANT_UPDATE: [Param; 12] = [
    opt("Muted", Ty::Bool, "Mute or unmute."),
    opt("Hold", Ty::Bool, "Put on hold (hears HoldUrl, is not heard) or take off hold."),
    opt("HoldUrl", Ty::Url, "Music while on hold."),
    opt("HoldMethod", Ty::HttpMethod, "Method for HoldUrl (default GET)."),
    opt("AnnounceUrl", Ty::Url, "Audio or TwiML played to this participant only."),
    opt("AnnounceMethod", Ty::HttpMethod, "Method for AnnounceUrl (default POST)."),
    opt("WaitUrl", Ty::Url, "Music until the conference starts."),
    opt("WaitMethod", Ty::HttpMethod, "Method for WaitUrl (default POST)."),
    opt("BeepOnExit", Ty::Bool, "Beep when this participant leaves."),
    opt("EndConferenceOnExit", Ty::Bool, "End the conference when this participant leaves."),
    opt("Coaching", Ty::Bool, "Coach CallSidToCoach (heard by that call only), or stop."),
    opt("CallSidToCoach", Ty::Sid("CA"), "The participant call to coach."),
];
const MESSAGE_CREATE: [Param; 10] = [
    req("To", Ty::Phone, "The recipient, E.164."),
    opt("From", Ty::Phone, "A number of the account (an IncomingPhoneNumber), E.164. Required."),
    opt("Body", Ty::Str, "The text, 1 to 1600 characters; sent in as many parts as it needs. Required."),
    opt("StatusCallback", Ty::Url, "Told about the message's progress (sent, delivered, undelivered, failed)."),
    opt("ApplicationSid", Ty::Sid("AP"), "An application of the account, whose MessageStatusCallback is used when StatusCallback is absent."),
    opt("ValidityPeriod", Ty::Int, "Seconds the message may wait to be sent, 1 to 36000 (default 36000)."),
    opt("MessagingServiceSid", Ty::Sid("MG"), "Not available: this server has no Messaging Services (21701)."),
    Param {
        name: "MediaUrl",
        ty: Ty::Url,
        required: false,
        repeated: true,
        doc: "Not available: no MMS (21621).",
    },
    opt("SendAt", Ty::Str, "Not available: messages are not scheduled (20001)."),
    opt("ScheduleType", Ty::OneOf(&["fixed"]), "Not available: messages are not scheduled (20001)."),
];
const MESSAGE_CREATE_IGNORED: &[&str] = &[
    "Attempt", "MaxPrice", "ProvideFeedback", "ForceDelivery", "ContentRetention", "AddressRetention", "SmartEncoded",
    "PersistentAction", "TrafficType", "ShortenUrls", "SendAsMms", "ContentVariables", "MessageIntent", "RiskCheck",
    "FallbackFrom", "ContentSid",
];
const MESSAGE_UPDATE: [Param; 2] = [
    opt("Body", Ty::Str, "Only the empty string: redacts the text of a message that has left."),
    opt("Status", Ty::OneOf(&["canceled"]), "Cancel a message not yet picked up for sending (queued)."),
];

const PROXY_SERVICE_SETTINGS: [Param; 8] = [
    opt("UniqueName", Ty::Str, "Unique in the account, 1 to 191 characters. Required on create."),
    opt("DefaultTtl", Ty::Int, "Seconds a new session lives after its creation or last interaction; 0 (default) is no limit."),
    opt("CallbackUrl", Ty::Url, "Stored."),
    opt("GeoMatchLevel", Ty::OneOf(&["area-code", "overlay", "radius", "country"]), "Stored; pool numbers are not chosen by place."),
    opt("NumberSelectionBehavior", Ty::OneOf(&["avoid-sticky", "prefer-sticky"]), "Stored; the pool's oldest free number is chosen."),
    opt("InterceptCallbackUrl", Ty::Url, "Posted before each call is connected; a 403 answer blocks it and its TwiML body is played to the caller."),
    opt("OutOfSessionCallbackUrl", Ty::Url, "A voice webhook for calls to a pool number outside any open session (or its SMS webhook for messages)."),
    opt("ChatInstanceSid", Ty::Str, "Stored."),
];
const PROXY_NUMBER_CREATE: [Param; 3] = [
    opt("Sid", Ty::Sid("PN"), "An IncomingPhoneNumber of the account. Sid or PhoneNumber is required."),
    opt("PhoneNumber", Ty::Phone, "An IncomingPhoneNumber of the account, E.164."),
    opt("IsReserved", Ty::Bool, "Never chosen from the pool, only given as a ProxyIdentifier (default false)."),
];
const PROXY_NUMBER_UPDATE: [Param; 1] = [opt("IsReserved", Ty::Bool, "Never chosen from the pool, only given as a ProxyIdentifier.")];
const PROXY_SESSION_CREATE: [Param; 6] = [
    opt("UniqueName", Ty::Str, "Unique in the service, up to 191 characters."),
    opt("DateExpiry", Ty::DateTime, "When the session closes; wins over Ttl."),
    opt("Ttl", Ty::Int, "Seconds after creation or the last interaction when the session closes; 0 is no limit (default: the service's DefaultTtl)."),
    opt("Mode", Ty::OneOf(&["message-only", "voice-only", "voice-and-message"]), "What goes through the session (default voice-and-message)."),
    opt("Status", Ty::OneOf(&["open", "in-progress", "closed"]), "Initial status (default open)."),
    Param {
        name: "Participants",
        ty: Ty::Str,
        required: false,
        repeated: true,
        doc: "Up to two participants, each a JSON object with Identifier and optionally FriendlyName, ProxyIdentifier, ProxyIdentifierSid.",
    },
];
const PROXY_SESSION_UPDATE: [Param; 3] = [
    opt("DateExpiry", Ty::DateTime, "When the session closes; wins over Ttl; empty clears it."),
    opt("Ttl", Ty::Int, "Seconds after the last interaction when the session closes; 0 is no limit."),
    opt("Status", Ty::OneOf(&["in-progress", "closed"]), "closed ends the session; in-progress re-opens a closed one."),
];
const PROXY_PARTICIPANT_CREATE: [Param; 4] = [
    req("Identifier", Ty::Str, "The participant's phone number, E.164."),
    opt("FriendlyName", Ty::Str, "Up to 255 characters."),
    opt("ProxyIdentifier", Ty::Phone, "A number of the service's pool to use (default: chosen from the pool)."),
    opt("ProxyIdentifierSid", Ty::Sid("PN"), "The PN SID of a number of the service's pool to use."),
];
const PROXY_MESSAGE_CREATE: [Param; 2] = [
    opt("Body", Ty::Str, "The text sent to the participant from its proxy number, 1 to 1600 characters. Required."),
    Param { name: "MediaUrl", ty: Ty::Url, required: false, repeated: true, doc: "Not available: no MMS (21621)." },
];

const DATE_CREATED_IGNORED: &[&str] = &["DateCreated", "DateCreated<", "DateCreated>"];

/// One page holds all of these lists; Twilio's paging parameters are accepted and ignored.
const SINGLE_PAGE_IGNORED: &[&str] = &["PageSize", "Page", "PageToken"];

const RATE_TABLE: [Param; 5] = [
    opt("Rounding", Ty::OneOf(&["per-minute", "per-second"]), "How call time is billed (default per-minute: every started minute)."),
    Param { name: "InboundRate", ty: Ty::Str, required: false, repeated: true,
        doc: "Per minute of an inbound call, by the type of number called: `local=0.01`, `mobile=...`, `toll-free=...`." },
    Param { name: "OutboundRate", ty: Ty::Str, required: false, repeated: true,
        doc: "Per minute of an outbound call, by destination prefix (longest wins): `+1555=0.05`." },
    opt("SmsInboundRate", Ty::Str, "Per segment received, e.g. `0.0075`."),
    Param { name: "SmsOutboundRate", ty: Ty::Str, required: false, repeated: true,
        doc: "Per segment sent, by destination prefix (longest wins): `+44=0.04`." },
];

/// The Usage Records lists' parameters (each list takes them all).
static USAGE_PARAMS: LazyLock<&'static [Param]> = LazyLock::new(|| {
    page_params([
        opt("Category", Ty::OneOf(&["calls", "calls-inbound", "calls-outbound", "recordings", "sms", "sms-inbound", "sms-outbound"]),
            "Only this category."),
        opt("StartDate", Ty::Str, "First day (UTC), `YYYY-MM-DD` or an offset from today such as `-30days`."),
        opt("EndDate", Ty::Str, "Last day (UTC), `YYYY-MM-DD` or an offset from today such as `+0days`."),
        opt("IncludeSubaccounts", Ty::Bool, "Whether a main account's usage includes its subaccounts' (default true)."),
    ])
});

fn page_params<const N: usize>(extra: [Param; N]) -> &'static [Param] {
    let mut all = extra.to_vec();
    all.extend_from_slice(&PAGING);
    all.leak()
}

/// Every operation of the API, in the document's order.
pub(crate) static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| {
    let op = |method: Method, path, id, summary, params, ignored, reply, errors, handler| Operation {
        method,
        path,
        id,
        summary,
        params,
        ignored,
        reply,
        errors,
        handler,
        lines_body: None,
    };
    const A: &str = "/2010-04-01/Accounts/{AccountSid}";
    const BAD: &[u16] = &[400];
    const FORM: &[u16] = &[400, 413, 415];
    let mut ops = vec![
        op(Method::GET, "/2010-04-01/Accounts.json", "ListAccount", "The account and its subaccounts",
            page_params([opt("FriendlyName", Ty::Str, "Only accounts with this name."), opt("Status", ACCOUNT_STATUS, "Only accounts with this status.")]),
            &[], Reply::Page("accounts", Shape::Account), BAD, || get(accounts::list)),
        op(Method::POST, "/2010-04-01/Accounts.json", "CreateAccount", "Create a subaccount",
            &FRIENDLY_NAME, &[], Reply::One(201, Shape::Account), FORM,
            || post(accounts::create)),
        op(Method::GET, "/2010-04-01/Accounts/{Sid}.json", "FetchAccount", "An account", &[], &[],
            Reply::One(200, Shape::Account), &[], || get(accounts::fetch)),
        op(Method::POST, "/2010-04-01/Accounts/{Sid}.json", "UpdateAccount", "Rename an account or change a subaccount's status",
            &ACCOUNT_UPDATE,
            &[], Reply::One(200, Shape::Account), FORM, || post(accounts::update)),
        op(Method::POST, "/v1/AuthTokens/Secondary", "CreateSecondaryAuthToken", "A new secondary auth token", &[], &[],
            Reply::One(201, Shape::SecondaryAuthToken), FORM, || post(accounts::create_secondary)),
        op(Method::DELETE, "/v1/AuthTokens/Secondary", "DeleteSecondaryAuthToken", "Remove the secondary auth token", &[], &[],
            Reply::Empty, &[], || delete(accounts::delete_secondary)),
        op(Method::POST, "/v1/AuthTokens/Promote", "UpdateAuthTokenPromotion", "Make the secondary auth token the primary", &[], &[],
            Reply::One(200, Shape::PromotedAuthToken), FORM, || post(accounts::promote)),
        op(Method::GET, concat_path(A, "/Keys.json"), "ListKey", "API keys", page_params([]), &[],
            Reply::Page("keys", Shape::Key), BAD, || get(keys::list)),
        op(Method::POST, concat_path(A, "/Keys.json"), "CreateNewKey", "Create an API key (its secret is shown once)",
            &FRIENDLY_NAME, &[], Reply::One(201, Shape::NewKey), FORM, || post(keys::create)),
        op(Method::GET, concat_path(A, "/Keys/{Sid}.json"), "FetchKey", "An API key", &[], &[], Reply::One(200, Shape::Key), &[],
            || get(keys::fetch)),
        op(Method::POST, concat_path(A, "/Keys/{Sid}.json"), "UpdateKey", "Rename an API key",
            &FRIENDLY_NAME, &[], Reply::One(200, Shape::Key), FORM, || post(keys::update)),
        op(Method::DELETE, concat_path(A, "/Keys/{Sid}.json"), "DeleteKey", "Delete an API key", &[], &[], Reply::Empty, &[],
            || delete(keys::delete)),
        op(Method::GET, concat_path(A, "/Applications.json"), "ListApplication", "Applications",
            page_params([opt("FriendlyName", Ty::Str, "Only applications with this name.")]), &[],
            Reply::Page("applications", Shape::Application), BAD, || get(applications::list)),
        op(Method::POST, concat_path(A, "/Applications.json"), "CreateApplication", "Create an application",
            &APPLICATION_SETTINGS, &[], Reply::One(201, Shape::Application), FORM, || post(applications::create)),
        op(Method::GET, concat_path(A, "/Applications/{Sid}.json"), "FetchApplication", "An application", &[], &[],
            Reply::One(200, Shape::Application), &[], || get(applications::fetch)),
        op(Method::POST, concat_path(A, "/Applications/{Sid}.json"), "UpdateApplication", "Change an application",
            &APPLICATION_SETTINGS, &[], Reply::One(200, Shape::Application), FORM, || post(applications::update)),
        op(Method::DELETE, concat_path(A, "/Applications/{Sid}.json"), "DeleteApplication", "Delete an application", &[], &[],
            Reply::Empty, &[], || delete(applications::delete)),
        op(Method::GET, concat_path(A, "/IncomingPhoneNumbers.json"), "ListIncomingPhoneNumber", "Phone numbers",
            page_params([opt("PhoneNumber", Ty::Str, "Only this number."), opt("FriendlyName", Ty::Str, "Only numbers with this name.")]),
            &["Beta", "Origin"], Reply::Page("incoming_phone_numbers", Shape::Number), BAD, || get(numbers::list)),
        op(Method::POST, concat_path(A, "/IncomingPhoneNumbers.json"), "CreateIncomingPhoneNumber", "Add a phone number",
            {
                let mut all = vec![req("PhoneNumber", Ty::Phone, "The number, E.164.")];
                all.extend_from_slice(&NUMBER_SETTINGS);
                all.leak()
            },
            NUMBER_IGNORED, Reply::One(201, Shape::Number), FORM, || post(numbers::create)),
        Operation {
            lines_body: Some(numbers::BULK_BODY_LIMIT),
            ..op(Method::POST, concat_path(A, "/IncomingPhoneNumbers/Bulk.json"), "CreateIncomingPhoneNumberBulk",
                "Dialtone extension: add many phone numbers in one request. The body (text/plain, text/csv or \
                 application/x-ndjson, up to 16 MiB and 100,000 lines) has one number per line: an E.164 number, or \
                 a JSON object with `PhoneNumber` and any of `FriendlyName`, `VoiceUrl`, `VoiceMethod`, \
                 `VoiceFallbackUrl`, `VoiceFallbackMethod`, `StatusCallback`, `StatusCallbackMethod`, `SmsUrl`, \
                 `SmsMethod`, `SmsFallbackUrl`, `SmsFallbackMethod` for that number. The query string holds the \
                 settings every number shares (a line's own win). Numbers are added in one transaction; a line that \
                 is invalid or names a number that exists is reported with its Twilio code and the rest are added.",
                &NUMBER_SETTINGS, &[], Reply::One(200, Shape::NumberBatch), FORM, || post(numbers::create_bulk))
        },
        op(Method::GET, concat_path(A, "/IncomingPhoneNumbers/{Sid}.json"), "FetchIncomingPhoneNumber", "A phone number", &[], &[],
            Reply::One(200, Shape::Number), &[], || get(numbers::fetch)),
        op(Method::POST, concat_path(A, "/IncomingPhoneNumbers/{Sid}.json"), "UpdateIncomingPhoneNumber", "Change a phone number",
            &NUMBER_SETTINGS, NUMBER_IGNORED, Reply::One(200, Shape::Number), FORM, || post(numbers::update)),
        op(Method::DELETE, concat_path(A, "/IncomingPhoneNumbers/{Sid}.json"), "DeleteIncomingPhoneNumber", "Release a phone number",
            &[], &[], Reply::Empty, &[], || delete(numbers::delete)),
        op(Method::GET, concat_path(A, "/Calls.json"), "ListCall", "Calls, newest first",
            page_params([
                opt("To", Ty::Str, "Only calls to this number or URI."),
                opt("From", Ty::Str, "Only calls from this number or URI."),
                opt("ParentCallSid", Ty::Sid("CA"), "Only legs of this call."),
                opt("Status", CALL_STATUS, "Only calls with this status."),
            ]),
            &["StartTime", "StartTime<", "StartTime>", "EndTime", "EndTime<", "EndTime>"],
            Reply::Page("calls", Shape::Call), BAD, || get(calls::list)),
        op(Method::POST, concat_path(A, "/Calls.json"), "CreateCall", "Place an outbound call", &CALL_CREATE, CALL_CREATE_IGNORED,
            Reply::One(201, Shape::Call), FORM, || post(calls::create)),
        op(Method::GET, concat_path(A, "/Calls/{Sid}.json"), "FetchCall", "A call", &[], &[], Reply::One(200, Shape::Call), &[],
            || get(calls::fetch)),
        op(Method::POST, concat_path(A, "/Calls/{Sid}.json"), "UpdateCall", "Redirect or end a live call, or cancel a queued or scheduled one", &CALL_UPDATE,
            &["FallbackUrl", "FallbackMethod", "StatusCallback", "StatusCallbackMethod", "TimeLimit"],
            Reply::One(200, Shape::Call), FORM, || post(calls::update)),
        op(Method::DELETE, concat_path(A, "/Calls/{Sid}.json"), "DeleteCall", "Delete a finished call's record", &[], &[],
            Reply::Empty, BAD, || delete(calls::delete)),
        op(Method::GET, concat_path(A, "/CallingWindow.json"), "FetchCallingWindow",
            "Dialtone extension: the account's calling window (its parent's when it has none)", &[], &[],
            Reply::One(200, Shape::CallingWindow), &[], || get(quiet::fetch_window)),
        op(Method::POST, concat_path(A, "/CallingWindow.json"), "UpdateCallingWindow",
            "Dialtone extension: set the account's calling window (quiet hours)", &CALLING_WINDOW_SET, &[],
            Reply::One(200, Shape::CallingWindow), FORM, || post(quiet::set_window)),
        op(Method::DELETE, concat_path(A, "/CallingWindow.json"), "DeleteCallingWindow",
            "Dialtone extension: remove the account's own calling window", &[], &[], Reply::Empty, &[],
            || delete(quiet::delete_window)),
        op(Method::GET, concat_path(A, "/TimeZoneOverrides.json"), "ListTimeZoneOverride",
            "Dialtone extension: the account's time-zone overrides, newest first", page_params([]), &[],
            Reply::Page("time_zone_overrides", Shape::TimeZoneOverride), BAD, || get(quiet::list_overrides)),
        op(Method::POST, concat_path(A, "/TimeZoneOverrides.json"), "CreateTimeZoneOverride",
            "Dialtone extension: the time zone of a number or a prefix (an exact number beats a prefix, the longest prefix wins)",
            &TIME_ZONE_OVERRIDE_CREATE, &[], Reply::One(201, Shape::TimeZoneOverride), FORM, || post(quiet::create_override)),
        op(Method::GET, concat_path(A, "/TimeZoneOverrides/{Sid}.json"), "FetchTimeZoneOverride",
            "Dialtone extension: a time-zone override", &[], &[], Reply::One(200, Shape::TimeZoneOverride), &[],
            || get(quiet::fetch_override)),
        op(Method::POST, concat_path(A, "/TimeZoneOverrides/{Sid}.json"), "UpdateTimeZoneOverride",
            "Dialtone extension: change a time-zone override's zone", &TIME_ZONE_OVERRIDE_UPDATE, &[],
            Reply::One(200, Shape::TimeZoneOverride), FORM, || post(quiet::update_override)),
        op(Method::DELETE, concat_path(A, "/TimeZoneOverrides/{Sid}.json"), "DeleteTimeZoneOverride",
            "Dialtone extension: remove a time-zone override", &[], &[], Reply::Empty, &[], || delete(quiet::delete_override)),
        op(Method::GET, concat_path(A, "/Calls/{CallSid}/Notifications.json"), "ListCallNotification", "A call's errors and warnings",
            page_params([]), &["Log", "MessageDate", "MessageDate<", "MessageDate>"],
            Reply::Page("notifications", Shape::Notification), BAD, || get(calls::call_notifications)),
        op(Method::GET, concat_path(A, "/Calls/{CallSid}/Recordings.json"), "ListCallRecording", "A call's recordings",
            page_params([]), &["DateCreated", "DateCreated<", "DateCreated>"],
            Reply::Page("recordings", Shape::Recording), BAD, || get(recordings::list_for_call)),
        op(Method::GET, concat_path(A, "/Notifications.json"), "ListNotification", "The account's errors and warnings",
            page_params([]), &["Log", "MessageDate", "MessageDate<", "MessageDate>"],
            Reply::Page("notifications", Shape::Notification), BAD, || get(calls::account_notifications)),
        op(Method::GET, concat_path(A, "/Recordings.json"), "ListRecording", "Recordings",
            page_params([
                opt("CallSid", Ty::Sid("CA"), "Only this call's recordings."),
                opt("ConferenceSid", Ty::Sid("CF"), "Only this conference's recordings."),
            ]),
            &["DateCreated", "DateCreated<", "DateCreated>", "IncludeSoftDeleted"],
            Reply::Page("recordings", Shape::Recording), BAD, || get(recordings::list)),
        op(Method::GET, concat_path(A, "/Recordings/{Sid}.json"), "FetchRecording", "A recording's metadata", &[], &[],
            Reply::One(200, Shape::Recording), &[], || get(recordings::fetch)),
        // The same route as the metadata: the handler tells them apart by the suffix (the bare
        // SID serves the audio too, as Twilio).
        op(Method::GET, concat_path(A, "/Recordings/{Sid}.wav"), "FetchRecordingMedia", "A recording's audio (WAV)", &[], &[],
            Reply::Audio, &[], || get(recordings::fetch)),
        op(Method::GET, concat_path(A, "/Queues.json"), "ListQueue", "Call queues, newest first", page_params([]), &[],
            Reply::Page("queues", Shape::Queue), BAD, || get(queues::list)),
        op(Method::POST, concat_path(A, "/Queues.json"), "CreateQueue", "Create a call queue", &QUEUE_CREATE, &[],
            Reply::One(201, Shape::Queue), FORM, || post(queues::create)),
        op(Method::GET, concat_path(A, "/Queues/{Sid}.json"), "FetchQueue", "A call queue, with its live size and wait", &[], &[],
            Reply::One(200, Shape::Queue), &[], || get(queues::fetch)),
        op(Method::POST, concat_path(A, "/Queues/{Sid}.json"), "UpdateQueue", "Rename or resize a call queue", &QUEUE_UPDATE, &[],
            Reply::One(200, Shape::Queue), FORM, || post(queues::update)),
        op(Method::DELETE, concat_path(A, "/Queues/{Sid}.json"), "DeleteQueue", "Delete a call queue nobody waits in", &[], &[],
            Reply::Empty, BAD, || delete(queues::delete)),
        op(Method::GET, concat_path(A, "/Queues/{QueueSid}/Members.json"), "ListMember", "The calls waiting in a queue, front first",
            page_params([]), &[], Reply::Page("queue_members", Shape::Member), BAD, || get(queues::list_members)),
        op(Method::GET, concat_path(A, "/Queues/{QueueSid}/Members/{CallSid}.json"), "FetchMember",
            "A waiting call, by its SID or `Front`", &[], &[], Reply::One(200, Shape::Member), &[], || get(queues::fetch_member)),
        op(Method::POST, concat_path(A, "/Queues/{QueueSid}/Members/{CallSid}.json"), "UpdateMember",
            "Dequeue a call (by its SID or `Front`) into the TwiML at Url", &MEMBER_UPDATE, &[],
            Reply::One(200, Shape::Member), FORM, || post(queues::update_member)),
        op(Method::GET, concat_path(A, "/Conferences.json"), "ListConference", "Conferences, newest first",
            page_params([
                opt("FriendlyName", Ty::Str, "Only conferences of this room."),
                opt("Status", CONFERENCE_STATUS, "Only conferences with this status."),
                opt("DateCreated", Ty::Date, "Only conferences created on this day (UTC)."),
                opt("DateCreated<", Ty::Date, "Only conferences created on or before this day."),
                opt("DateCreated>", Ty::Date, "Only conferences created on or after this day."),
                opt("DateUpdated", Ty::Date, "Only conferences last updated on this day (UTC)."),
                opt("DateUpdated<", Ty::Date, "Only conferences last updated on or before this day."),
                opt("DateUpdated>", Ty::Date, "Only conferences last updated on or after this day."),
            ]),
            &[], Reply::Page("conferences", Shape::Conference), BAD, || get(conferences::list)),
        op(Method::GET, concat_path(A, "/Conferences/{Sid}.json"), "FetchConference", "A conference", &[], &[],
            Reply::One(200, Shape::Conference), &[], || get(conferences::fetch)),
        op(Method::POST, concat_path(A, "/Conferences/{Sid}.json"), "UpdateConference", "End a conference or announce into it",
            &CONFERENCE_UPDATE, &[], Reply::One(200, Shape::Conference), FORM, || post(conferences::update)),
        op(Method::GET, concat_path(A, "/Conferences/{ConferenceSid}/Participants.json"), "ListParticipant",
            "Who is in a conference",
            page_params([
                opt("Muted", Ty::Bool, "Only muted (or unmuted) participants."),
                opt("Hold", Ty::Bool, "Only participants on (or off) hold."),
                opt("Coaching", Ty::Bool, "Only coaching (or not coaching) participants."),
            ]),
            &[], Reply::Page("participants", Shape::Participant), BAD, || get(conferences::list_participants)),
        op(Method::POST, concat_path(A, "/Conferences/{ConferenceSid}/Participants.json"), "CreateParticipant",
            "Call someone into a conference (by its SID, or the room's name to join or open it)",
            &PARTICIPANT_CREATE, PARTICIPANT_CREATE_IGNORED,
            Reply::One(201, Shape::Participant), FORM, || post(conferences::create_participant)),
        op(Method::GET, concat_path(A, "/Conferences/{ConferenceSid}/Participants/{CallSid}.json"), "FetchParticipant",
            "A participant, by its call SID or label", &[], &[], Reply::One(200, Shape::Participant), &[],
            || get(conferences::fetch_participant)),
        op(Method::POST, concat_path(A, "/Conferences/{ConferenceSid}/Participants/{CallSid}.json"), "UpdateParticipant",
            "Mute, hold, announce to or coach with a participant", &PARTICIPANT_UPDATE, &[],
            Reply::One(200, Shape::Participant), FORM, || post(conferences::update_participant)),
        op(Method::DELETE, concat_path(A, "/Conferences/{ConferenceSid}/Participants/{CallSid}.json"), "DeleteParticipant",
            "Remove a participant from the conference", &[], &[], Reply::Empty, &[], || delete(conferences::delete_participant)),
        op(Method::GET, concat_path(A, "/Conferences/{ConferenceSid}/Recordings.json"), "ListConferenceRecording",
            "A conference's recordings", page_params([]), DATE_CREATED_IGNORED,
            Reply::Page("recordings", Shape::ConferenceRecording), BAD, || get(conferences::list_recordings)),
        op(Method::GET, concat_path(A, "/Conferences/{ConferenceSid}/Recordings/{Sid}.json"), "FetchConferenceRecording",
            "A recording of a conference", &[], &[], Reply::One(200, Shape::ConferenceRecording), &[],
            || get(conferences::fetch_recording)),
        op(Method::GET, concat_path(A, "/SIP/Domains.json"), "ListSipDomain", "SIP domains", page_params([]), &[],
            Reply::Page("domains", Shape::SipDomain), BAD, || get(sip::list_domains)),
        op(Method::POST, concat_path(A, "/SIP/Domains.json"), "CreateSipDomain", "Create a SIP domain (REGISTERs to its name belong to the account)",
            {
                let mut all = vec![req("DomainName", Ty::Str, "Host name, unique on this server: letters, digits, dots, hyphens; stored lower-case.")];
                all.extend_from_slice(&SIP_DOMAIN_SETTINGS);
                all.leak()
            },
            SIP_DOMAIN_IGNORED, Reply::One(201, Shape::SipDomain), FORM, || post(sip::create_domain)),
        op(Method::GET, concat_path(A, "/SIP/Domains/{Sid}.json"), "FetchSipDomain", "A SIP domain", &[], &[],
            Reply::One(200, Shape::SipDomain), &[], || get(sip::fetch_domain)),
        op(Method::POST, concat_path(A, "/SIP/Domains/{Sid}.json"), "UpdateSipDomain", "Change a SIP domain (its name stays)",
            &SIP_DOMAIN_SETTINGS,
            {
                let mut all = vec!["DomainName"];
                all.extend_from_slice(SIP_DOMAIN_IGNORED);
                all.leak()
            },
            Reply::One(200, Shape::SipDomain), FORM, || post(sip::update_domain)),
        op(Method::DELETE, concat_path(A, "/SIP/Domains/{Sid}.json"), "DeleteSipDomain", "Delete a SIP domain and its mappings", &[], &[],
            Reply::Empty, &[], || delete(sip::delete_domain)),
        op(Method::GET, concat_path(A, "/SIP/Domains/{DomainSid}/Auth/Registrations/CredentialListMappings.json"),
            "ListSipAuthRegistrationsCredentialListMapping", "Credential lists whose users may register to the domain",
            &[], SINGLE_PAGE_IGNORED, Reply::Page("contents", Shape::SipCredentialListMapping), BAD, || get(sip::list_mappings)),
        op(Method::POST, concat_path(A, "/SIP/Domains/{DomainSid}/Auth/Registrations/CredentialListMappings.json"),
            "CreateSipAuthRegistrationsCredentialListMapping", "Let a credential list's users register to the domain",
            &SIP_MAPPING_CREATE, &[],
            Reply::One(201, Shape::SipCredentialListMapping), FORM, || post(sip::create_mapping)),
        op(Method::GET, concat_path(A, "/SIP/Domains/{DomainSid}/Auth/Registrations/CredentialListMappings/{Sid}.json"),
            "FetchSipAuthRegistrationsCredentialListMapping", "A registration credential list mapping (its SID is the list's)",
            &[], &[], Reply::One(200, Shape::SipCredentialListMapping), &[], || get(sip::fetch_mapping)),
        op(Method::DELETE, concat_path(A, "/SIP/Domains/{DomainSid}/Auth/Registrations/CredentialListMappings/{Sid}.json"),
            "DeleteSipAuthRegistrationsCredentialListMapping", "Stop a credential list's users registering to the domain",
            &[], &[], Reply::Empty, &[], || delete(sip::delete_mapping)),
        op(Method::GET, concat_path(A, "/SIP/CredentialLists.json"), "ListSipCredentialList", "SIP credential lists", page_params([]), &[],
            Reply::Page("credential_lists", Shape::SipCredentialList), BAD, || get(sip::list_lists)),
        op(Method::POST, concat_path(A, "/SIP/CredentialLists.json"), "CreateSipCredentialList", "Create a SIP credential list",
            &SIP_LIST_CREATE, &[],
            Reply::One(201, Shape::SipCredentialList), FORM, || post(sip::create_list)),
        op(Method::GET, concat_path(A, "/SIP/CredentialLists/{Sid}.json"), "FetchSipCredentialList", "A SIP credential list", &[], &[],
            Reply::One(200, Shape::SipCredentialList), &[], || get(sip::fetch_list)),
        op(Method::POST, concat_path(A, "/SIP/CredentialLists/{Sid}.json"), "UpdateSipCredentialList", "Rename a SIP credential list",
            &FRIENDLY_NAME, &[], Reply::One(200, Shape::SipCredentialList), FORM, || post(sip::update_list)),
        op(Method::DELETE, concat_path(A, "/SIP/CredentialLists/{Sid}.json"), "DeleteSipCredentialList",
            "Delete a SIP credential list, its credentials and mappings", &[], &[], Reply::Empty, &[], || delete(sip::delete_list)),
        op(Method::GET, concat_path(A, "/SIP/CredentialLists/{CredentialListSid}/Credentials.json"), "ListSipCredential",
            "A credential list's credentials (usernames; passwords are never returned)", page_params([]), &[],
            Reply::Page("credentials", Shape::SipCredential), BAD, || get(sip::list_credentials)),
        op(Method::POST, concat_path(A, "/SIP/CredentialLists/{CredentialListSid}/Credentials.json"), "CreateSipCredential",
            "Add a SIP user to a credential list",
            &SIP_CREDENTIAL_CREATE,
            &[], Reply::One(201, Shape::SipCredential), FORM, || post(sip::create_credential)),
        op(Method::GET, concat_path(A, "/SIP/CredentialLists/{CredentialListSid}/Credentials/{Sid}.json"), "FetchSipCredential",
            "A SIP credential", &[], &[], Reply::One(200, Shape::SipCredential), &[], || get(sip::fetch_credential)),
        op(Method::POST, concat_path(A, "/SIP/CredentialLists/{CredentialListSid}/Credentials/{Sid}.json"), "UpdateSipCredential",
            "Change a SIP credential's password",
            &SIP_CREDENTIAL_UPDATE, &[],
            Reply::One(200, Shape::SipCredential), FORM, || post(sip::update_credential)),
        op(Method::DELETE, concat_path(A, "/SIP/CredentialLists/{CredentialListSid}/Credentials/{Sid}.json"), "DeleteSipCredential",
            "Remove a SIP user", &[], &[], Reply::Empty, &[], || delete(sip::delete_credential)),
        op(Method::GET, concat_path(A, "/Messages.json"), "ListMessage", "Messages, newest first",
            page_params([
                opt("To", Ty::Str, "Only messages to this number."),
                opt("From", Ty::Str, "Only messages from this number."),
                opt("DateSent", Ty::Date, "Only messages sent on this day (UTC); a YYYY-MM-DDThh:mm:ssZ counts by its day."),
                opt("DateSent<", Ty::Date, "Only messages sent on or before this day."),
                opt("DateSent>", Ty::Date, "Only messages sent on or after this day."),
            ]),
            &[], Reply::Page("messages", Shape::Message), BAD, || get(messages::list)),
        op(Method::POST, concat_path(A, "/Messages.json"), "CreateMessage", "Send an SMS", &MESSAGE_CREATE,
            MESSAGE_CREATE_IGNORED, Reply::One(201, Shape::Message), FORM, || post(messages::create)),
        op(Method::GET, concat_path(A, "/Messages/{Sid}.json"), "FetchMessage", "A message", &[], &[],
            Reply::One(200, Shape::Message), &[], || get(messages::fetch)),
        op(Method::POST, concat_path(A, "/Messages/{Sid}.json"), "UpdateMessage",
            "Redact a message's text (Body empty) or cancel a queued message", &MESSAGE_UPDATE, &[],
            Reply::One(200, Shape::Message), FORM, || post(messages::update)),
        op(Method::DELETE, concat_path(A, "/Messages/{Sid}.json"), "DeleteMessage",
            "Delete a message that is not being sent", &[], &[], Reply::Empty, BAD, || delete(messages::delete)),
        // A Dialtone extension: Twilio's prices are its own.
        op(Method::GET, concat_path(A, "/RateTable.json"), "FetchRateTable",
            "Dialtone extension: the rates that price the account's calls and messages (its own, else its parent's)",
            &[], &[], Reply::One(200, Shape::RateTable), &[], || get(rates::fetch)),
        op(Method::POST, concat_path(A, "/RateTable.json"), "UpdateRateTable",
            "Dialtone extension: set (replace) the account's rates; main accounts only",
            &RATE_TABLE, &[], Reply::One(200, Shape::RateTable), &[400, 413, 415], || post(rates::update)),
        op(Method::DELETE, concat_path(A, "/RateTable.json"), "DeleteRateTable",
            "Dialtone extension: remove the account's rates (its parent's, else the node's, apply)",
            &[], &[], Reply::Empty, &[], || delete(rates::delete)),
        op(Method::GET, "/v1/Services", "ListProxyService", "Proxy services", page_params([]), &[],
            Reply::Page("services", Shape::ProxyService), BAD, || get(proxy::list_services)),
        op(Method::POST, "/v1/Services", "CreateProxyService", "Create a Proxy service",
            {
                let mut all = vec![req("UniqueName", Ty::Str, "Unique in the account, 1 to 191 characters.")];
                all.extend_from_slice(&PROXY_SERVICE_SETTINGS[1..]);
                all.leak()
            },
            &[],
            Reply::One(201, Shape::ProxyService), FORM, || post(proxy::create_service)),
        op(Method::GET, "/v1/Services/{Sid}", "FetchProxyService", "A Proxy service", &[], &[],
            Reply::One(200, Shape::ProxyService), &[], || get(proxy::fetch_service)),
        op(Method::POST, "/v1/Services/{Sid}", "UpdateProxyService", "Change a Proxy service", &PROXY_SERVICE_SETTINGS, &[],
            Reply::One(200, Shape::ProxyService), FORM, || post(proxy::update_service)),
        op(Method::DELETE, "/v1/Services/{Sid}", "DeleteProxyService", "Delete a Proxy service, its pool and sessions", &[], &[],
            Reply::Empty, &[], || delete(proxy::delete_service)),
        op(Method::GET, "/v1/Services/{ServiceSid}/PhoneNumbers", "ListProxyPhoneNumber", "The numbers of a service's pool",
            page_params([]), &[], Reply::Page("phone_numbers", Shape::ProxyPhoneNumber), BAD, || get(proxy::list_numbers)),
        op(Method::POST, "/v1/Services/{ServiceSid}/PhoneNumbers", "CreateProxyPhoneNumber", "Add a number of the account to the pool",
            &PROXY_NUMBER_CREATE, &[], Reply::One(201, Shape::ProxyPhoneNumber), FORM, || post(proxy::create_number)),
        op(Method::GET, "/v1/Services/{ServiceSid}/PhoneNumbers/{Sid}", "FetchProxyPhoneNumber", "A number of the pool", &[], &[],
            Reply::One(200, Shape::ProxyPhoneNumber), &[], || get(proxy::fetch_number)),
        op(Method::POST, "/v1/Services/{ServiceSid}/PhoneNumbers/{Sid}", "UpdateProxyPhoneNumber", "Reserve or release a number of the pool",
            &PROXY_NUMBER_UPDATE, &[], Reply::One(200, Shape::ProxyPhoneNumber), FORM, || post(proxy::update_number)),
        op(Method::DELETE, "/v1/Services/{ServiceSid}/PhoneNumbers/{Sid}", "DeleteProxyPhoneNumber", "Take a number out of the pool",
            &[], &[], Reply::Empty, &[], || delete(proxy::delete_number)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions", "ListProxySession", "A service's sessions", page_params([]), &[],
            Reply::Page("sessions", Shape::ProxySession), BAD, || get(proxy::list_sessions)),
        op(Method::POST, "/v1/Services/{ServiceSid}/Sessions", "CreateProxySession", "Open a session, with up to two participants",
            &PROXY_SESSION_CREATE, &["FailOnParticipantConflict"], Reply::One(201, Shape::ProxySession), FORM, || post(proxy::create_session)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions/{Sid}", "FetchProxySession", "A session", &[], &[],
            Reply::One(200, Shape::ProxySession), &[], || get(proxy::fetch_session)),
        op(Method::POST, "/v1/Services/{ServiceSid}/Sessions/{Sid}", "UpdateProxySession", "Close, re-open or change a session's expiry",
            &PROXY_SESSION_UPDATE, &["FailOnParticipantConflict"], Reply::One(200, Shape::ProxySession), FORM, || post(proxy::update_session)),
        op(Method::DELETE, "/v1/Services/{ServiceSid}/Sessions/{Sid}", "DeleteProxySession", "Delete a session, its participants and interactions",
            &[], &[], Reply::Empty, &[], || delete(proxy::delete_session)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants", "ListProxyParticipant", "A session's participants",
            page_params([]), &[], Reply::Page("participants", Shape::ProxyParticipant), BAD, || get(proxy::list_participants)),
        op(Method::POST, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants", "CreateProxyParticipant",
            "Add a participant; its proxy number comes from the pool unless given", &PROXY_PARTICIPANT_CREATE, &["FailOnParticipantConflict"],
            Reply::One(201, Shape::ProxyParticipant), FORM, || post(proxy::create_participant)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants/{Sid}", "FetchProxyParticipant", "A participant",
            &[], &[], Reply::One(200, Shape::ProxyParticipant), &[], || get(proxy::fetch_participant)),
        op(Method::DELETE, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants/{Sid}", "DeleteProxyParticipant",
            "Remove a participant from its session", &[], &[], Reply::Empty, &[], || delete(proxy::delete_participant)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Interactions", "ListProxyInteraction",
            "The calls and messages through a session, with their legs' statuses", page_params([]), &[],
            Reply::Page("interactions", Shape::ProxyInteraction), BAD, || get(proxy::list_interactions)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Interactions/{Sid}", "FetchProxyInteraction", "An interaction",
            &[], &[], Reply::One(200, Shape::ProxyInteraction), &[], || get(proxy::fetch_interaction)),
        op(Method::DELETE, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Interactions/{Sid}", "DeleteProxyInteraction",
            "Delete an interaction (its calls and messages stay)", &[], &[], Reply::Empty, &[], || delete(proxy::delete_interaction)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants/{ParticipantSid}/MessageInteractions",
            "ListProxyMessageInteraction", "Messages sent to a participant through the API", page_params([]), &[],
            Reply::Page("interactions", Shape::ProxyMessageInteraction), BAD, || get(proxy::list_message_interactions)),
        op(Method::POST, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants/{ParticipantSid}/MessageInteractions",
            "CreateProxyMessageInteraction", "Send a message to a participant from its proxy number", &PROXY_MESSAGE_CREATE, &[],
            Reply::One(201, Shape::ProxyMessageInteraction), FORM, || post(proxy::create_message_interaction)),
        op(Method::GET, "/v1/Services/{ServiceSid}/Sessions/{SessionSid}/Participants/{ParticipantSid}/MessageInteractions/{Sid}",
            "FetchProxyMessageInteraction", "A message sent to a participant through the API", &[], &[],
            Reply::One(200, Shape::ProxyMessageInteraction), &[], || get(proxy::fetch_message_interaction)),
        // A Dialtone extension: Twilio has no such list.
        op(Method::GET, "/v1/Smsc.json", "ListSmsc",
            "Dialtone extension: the node's SMSC routes, their binds and counters (main accounts only)",
            &[], SINGLE_PAGE_IGNORED, Reply::Page("smscs", Shape::Smsc), BAD, || get(messages::smsc_status)),
        // A Dialtone extension: Twilio has no such list.
        op(Method::GET, concat_path(A, "/SIP/Registrations.json"), "ListSipRegistration",
            "Dialtone extension: every SIP user of the account with its live contacts and presence",
            &[], SINGLE_PAGE_IGNORED, Reply::Page("registrations", Shape::SipRegistration), BAD, || get(sip::registrations)),
    ];
    // The Usage Records lists: one shape and the same parameters, each its own period.
    type Handler = fn() -> MethodRouter<ApiState>;
    let usage: [(&str, &str, Handler); 9] = [
        ("", "Usage per category from StartDate to EndDate (default: since the account was created)", || get(usage::records)),
        ("/AllTime", "Usage per category since the account was created", || get(usage::all_time)),
        ("/Daily", "Usage per category and UTC day, oldest first", || get(usage::daily)),
        ("/Monthly", "Usage per category and month, oldest first", || get(usage::monthly)),
        ("/Yearly", "Usage per category and year, oldest first", || get(usage::yearly)),
        ("/Today", "Usage per category today (UTC)", || get(usage::today)),
        ("/Yesterday", "Usage per category yesterday (UTC)", || get(usage::yesterday)),
        ("/ThisMonth", "Usage per category this month (UTC)", || get(usage::this_month)),
        ("/LastMonth", "Usage per category last month (UTC)", || get(usage::last_month)),
    ];
    for (period, summary, handler) in usage {
        ops.push(op(Method::GET, concat_path(A, &format!("/Usage/Records{period}.json")),
            format!("ListUsageRecord{}", period.trim_start_matches('/')).leak(), summary, *USAGE_PARAMS, &[],
            Reply::Page("usage_records", Shape::UsageRecord), BAD, handler));
    }
    ops
});

fn concat_path(base: &str, tail: &str) -> &'static str {
    format!("{base}{tail}").leak()
}

/// The router's path for a document path: each segment holding a `{Name}` (and perhaps a
/// suffix such as `.json`, which the router cannot split off) becomes one parameter named by
/// its position, so that routes sharing a prefix agree on the names.
pub(crate) fn route_path(path: &str) -> String {
    path.split('/')
        .enumerate()
        .map(|(i, segment)| if segment.contains('{') { format!("{{p{i}}}") } else { segment.to_owned() })
        .collect::<Vec<_>>()
        .join("/")
}

/// Every operation on its route, each behind the [`guard`] of its parameters.
pub(crate) fn operations_router() -> Router<ApiState> {
    let mut router = Router::new();
    let mut seen: Vec<(String, Method)> = Vec::new();
    for op in OPERATIONS.iter() {
        let route = route_path(op.path);
        if seen.iter().any(|(r, m)| *r == route && *m == op.method) {
            // A second document path served by the same route and handler (recording media).
            continue;
        }
        seen.push((route.clone(), op.method.clone()));
        let handler = (op.handler)().route_layer(middleware::from_fn_with_state(op, guard));
        router = router.route(&route, handler);
    }
    router
}

/// Checks a request against its operation before the handler runs (see the module comment).
async fn guard(State(op): State<&'static Operation>, req: Request, next: Next) -> Response {
    match check(op, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(op: &'static Operation, req: Request) -> Result<Request, AppError> {
    let query = req.uri().query().map(|q| q.as_bytes().to_vec());
    if op.method != Method::POST {
        if let Some(q) = query {
            check_names(op, &decode_form(&q)?)?;
        }
        return Ok(req);
    }
    if op.lines_body.is_some() {
        // The handler reads and limits the body; its settings are in the query string.
        if let Some(q) = query {
            check_names(op, &decode_form(&q)?)?;
        }
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if !matches!(essence.as_str(), "text/plain" | "text/csv" | "application/x-ndjson" | "") {
            return Err(AppError::UnsupportedMediaType(content_type.chars().take(100).collect()));
        }
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        // `to_bytes` reports the limit through a boxed error; anything else is a broken upload.
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit")
        {
            AppError::PayloadTooLarge
        } else {
            AppError::bad(20001, "Could not read the request body")
        }
    })?;
    if !bytes.is_empty() {
        let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            return Err(AppError::UnsupportedMediaType(content_type.chars().take(100).collect()));
        }
        check_names(op, &decode_form(&bytes)?)?;
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn check_names(op: &Operation, pairs: &[(String, String)]) -> Result<(), AppError> {
    for (name, _) in pairs {
        let known = op.params.iter().any(|p| p.name == name) || op.ignored.contains(&name.as_str());
        if !known {
            let shown: String = name.chars().take(64).collect();
            return Err(AppError::bad(20001, format!("Unknown parameter {shown:?} for {} {}", op.method, op.path)));
        }
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` pairs, refusing names and values that are not UTF-8 once
/// decoded (the lenient decoder would turn them into U+FFFD silently).
pub(crate) fn decode_form(raw: &[u8]) -> Result<Vec<(String, String)>, AppError> {
    let decode = |part: &[u8]| -> Result<String, ()> {
        let plus_as_space: Vec<u8> = part.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
        percent_encoding::percent_decode(&plus_as_space).decode_utf8().map(|s| s.into_owned()).map_err(|_| ())
    };
    let mut out = Vec::new();
    for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        let name = decode(name).map_err(|_| AppError::bad(20001, "A parameter name is not valid UTF-8"))?;
        let value = decode(value).map_err(|_| {
            let shown: String = name.chars().take(64).collect();
            AppError::bad(20001, format!("The value of {shown} is not valid UTF-8"))
        })?;
        out.push((name, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_paths_name_parameters_by_position() {
        assert_eq!(
            route_path("/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"),
            "/2010-04-01/Accounts/{p3}/Calls/{p5}"
        );
        assert_eq!(route_path("/2010-04-01/Accounts/{Sid}.json"), "/2010-04-01/Accounts/{p3}");
        assert_eq!(route_path("/v1/AuthTokens/Promote"), "/v1/AuthTokens/Promote");
    }

    #[test]
    fn every_operation_is_unique_and_documents_its_own_names() {
        let ops = &*OPERATIONS;
        for (i, a) in ops.iter().enumerate() {
            assert!(ops[i + 1..].iter().all(|b| (a.method.clone(), a.path) != (b.method.clone(), b.path)), "{}", a.id);
            assert!(ops[i + 1..].iter().all(|b| a.id != b.id), "{}", a.id);
            for p in a.params {
                assert!(!a.ignored.contains(&p.name), "{} lists {} twice", a.id, p.name);
            }
        }
    }

    #[test]
    fn forms_decode_strictly() {
        assert_eq!(
            decode_form(b"To=%2B1555&Body=a+b&&Empty=&Flag").unwrap(),
            [("To", "+1555"), ("Body", "a b"), ("Empty", ""), ("Flag", "")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert!(decode_form(b"FriendlyName=%FF%FE").is_err());
        assert!(decode_form(b"%C3=x").is_err());
        assert!(decode_form(b"FriendlyName=\xff").is_err());
        assert_eq!(decode_form("FriendlyName=caf%C3%A9".as_bytes()).unwrap()[0].1, "café");
    }
}
