//! Dialtone's Twilio-compatible REST API (`/2010-04-01/...`), on axum.
//!
//! Owns the wire format: JSON field names and shapes, RFC 2822 dates, list envelopes and paging
//! URIs, Twilio error bodies and codes. Driven by `node`, which builds an [`ApiState`] and serves
//! [`router`]; handlers read and write through `store` and tell `node` about routing changes
//! through [`ApiHooks`]; calls are placed and changed through the same hooks, since only the
//! runtime holds live calls. Queues and conferences are stored resources too, but who waits in a
//! queue and who is in a conference is live state: members and participants are read and changed
//! through the hooks, after the handler has found the queue or conference in the path's account.
//! New messages go to [`ApiHooks::create_message`], which stores them and hands them to the
//! runtime's sender; the state of the SMSC links is the runtime's
//! ([`ApiHooks::smsc_status`]). Proxy v1 (`/v1/Services/...`) is stored here too; every write
//! that changes routing is handed to [`ApiHooks::proxy_changed`] before the API answers.
//!
//! Architecture invariant: this is the only crate that knows the REST JSON. Every route
//! authenticates (HTTP Basic: account SID + primary or secondary auth token, or API key SID +
//! secret) before routing is visible, and every handler checks the path's account against the
//! ones the credentials may act on (their own account and, for a main account, its subaccounts;
//! see `auth`), so a request can reach only those accounts' rows. User-supplied path segments
//! are parsed into typed SIDs (junk is a 404) and never used to build file names. The one route
//! without credentials is `GET /openapi.json`, the document generated from the route table.
//!
//! Beside the REST API, [`access_token`] checks and mints Twilio Access Tokens, the credentials
//! browsers present instead of Basic auth.

pub mod access_token;
mod accounts;
mod applications;
mod auth;
mod calls;
mod conferences;
mod error;
mod keys;
mod messages;
mod numbers;
mod openapi;
mod params;
mod proxy;
mod queues;
mod rates;
mod quiet;
mod recordings;
mod render;
mod routes;
mod sip;
mod usage;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Router};
use store::Store;

use crate::auth::Ctx;

pub use crate::auth::constant_time_eq;
pub use crate::error::AppError;
pub use crate::numbers::bulk_line_params;
pub use model::{
    AccountSid, ApplicationRecord, ApplicationSid, CallRecord, CallSid, CallStatus, ConferenceRecord, ConferenceSid, MemberRecord,
    MessageRecord, MessageSid, ParticipantRecord, PhoneNumberRecord, QueueSid,
};

/// Largest accepted request body; larger ones get 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A boxed future, as hook methods return them (the trait stays object-safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Callbacks from the API into the runtime that serves it.
pub trait ApiHooks: Send + Sync {
    /// A phone number was created (it is stored; `voice_application` is the application whose
    /// voice URLs it uses, if any). The API answers once this returns, so a runtime that routes
    /// from memory adds it here and it routes at once.
    fn number_created(&self, number: &PhoneNumberRecord, voice_application: Option<&ApplicationSid>) {
        let _ = (number, voice_application);
    }

    /// An account's rate table was set or removed (`RateTable.json`): prices the runtime cached
    /// are stale.
    fn rates_changed(&self) {}

    /// A phone number's settings changed (stored), as for [`ApiHooks::number_created`].
    fn number_updated(&self, number: &PhoneNumberRecord, voice_application: Option<&ApplicationSid>) {
        let _ = (number, voice_application);
    }

    /// A phone number was deleted: calls to it must fail from the moment this returns.
    fn number_deleted(&self, phone_number: &str) {
        let _ = phone_number;
    }

    /// An application was created or changed: the numbers that name it route by its URLs now.
    fn application_saved(&self, application: &ApplicationRecord) {
        let _ = application;
    }

    /// An application was deleted; the numbers that named it are back on their own URLs (the
    /// store cleared their references).
    fn application_deleted(&self, application: &ApplicationSid) {
        let _ = application;
    }

    /// Place an outbound call (`POST Calls.json`, already validated). Returns the new call's
    /// record, status `queued`, once it is stored; the call itself proceeds in the background.
    fn create_call(&self, call: CreateCall) -> BoxFuture<'_, Result<CallRecord, HookError>> {
        let _ = call;
        Box::pin(async { Err(HookError::NotSupported("Creating calls")) })
    }

    /// Change a call (`POST Calls/{CallSid}.json`, already validated): redirect a live call or
    /// end it. Returns the call's record as it stands.
    fn update_call(
        &self,
        account: AccountSid,
        sid: CallSid,
        update: CallUpdate,
    ) -> BoxFuture<'_, Result<CallRecord, HookError>> {
        let _ = (account, sid, update);
        Box::pin(async { Err(HookError::NotSupported("Updating calls")) })
    }

    /// How many calls wait in a queue of `account` now and their average wait: the live half of
    /// a Queue resource. The default, for a server without calls, is an empty queue.
    fn queue_stats(&self, account: AccountSid, queue: QueueSid) -> QueueStats {
        let _ = (account, queue);
        QueueStats::default()
    }

    /// The calls waiting in a queue of `account` (it exists: the handler found it). Any order;
    /// the API lists them by `date_enqueued`. The default is an empty queue.
    fn queue_members(
        &self,
        account: AccountSid,
        queue: QueueSid,
    ) -> BoxFuture<'_, Result<Vec<MemberRecord>, HookError>> {
        let _ = (account, queue);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Dequeues one caller (`POST Queues/{QueueSid}/Members/{CallSid|Front}.json`, validated):
    /// its call leaves the queue and runs the TwiML at `update.url`. Returns the member as it
    /// stood when dequeued; [`HookError::NotFound`] when no such call waits there (or the queue
    /// is empty, for `Front`).
    fn update_member(
        &self,
        account: AccountSid,
        queue: QueueSid,
        member: MemberKey,
        update: MemberUpdate,
    ) -> BoxFuture<'_, Result<MemberRecord, HookError>> {
        let _ = (account, queue, member, update);
        Box::pin(async { Err(HookError::NotSupported("Dequeuing queue members")) })
    }

    /// Changes a live conference of `account` (`POST Conferences/{Sid}.json`, validated): end it,
    /// or play an announcement to everyone in it. Returns the conference as it stands (after an
    /// end, `completed` with its reason, as stored).
    fn update_conference(
        &self,
        account: AccountSid,
        conference: ConferenceSid,
        update: ConferenceUpdate,
    ) -> BoxFuture<'_, Result<ConferenceRecord, HookError>> {
        let _ = (account, conference, update);
        Box::pin(async { Err(HookError::NotSupported("Updating conferences")) })
    }

    /// The participants of a conference of `account` (it exists and has not ended: the handler
    /// checked). Any order; the API lists them by `date_created`. The default is nobody.
    fn conference_participants(
        &self,
        account: AccountSid,
        conference: ConferenceSid,
    ) -> BoxFuture<'_, Result<Vec<ParticipantRecord>, HookError>> {
        let _ = (account, conference);
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Calls someone into a conference (`POST Conferences/{ConferenceSid}/Participants.json`,
    /// validated). Returns the new participant, typically `queued`, once its call record is
    /// stored; the call proceeds in the background. A [`ConferenceTarget::FriendlyName`] joins the
    /// account's open conference of that name, or opens one.
    fn create_participant(
        &self,
        participant: CreateParticipant,
    ) -> BoxFuture<'_, Result<ParticipantRecord, HookError>> {
        let _ = participant;
        Box::pin(async { Err(HookError::NotSupported("Adding conference participants")) })
    }

    /// Changes a participant (`POST .../Participants/{CallSid|Label}.json`, validated): mute,
    /// hold, announce, coach... Returns it as it stands; [`HookError::NotFound`] when the
    /// conference has no such participant.
    fn update_participant(
        &self,
        account: AccountSid,
        conference: ConferenceSid,
        participant: ParticipantKey,
        update: ParticipantUpdate,
    ) -> BoxFuture<'_, Result<ParticipantRecord, HookError>> {
        let _ = (account, conference, participant, update);
        Box::pin(async { Err(HookError::NotSupported("Updating conference participants")) })
    }

    /// Removes (kicks) a participant (`DELETE .../Participants/{CallSid|Label}.json`): its call
    /// leaves the room and goes on with the TwiML after its `<Dial>`, as Twilio's does.
    /// [`HookError::NotFound`] when the conference has no such participant.
    fn remove_participant(
        &self,
        account: AccountSid,
        conference: ConferenceSid,
        participant: ParticipantKey,
    ) -> BoxFuture<'_, Result<(), HookError>> {
        let _ = (account, conference, participant);
        Box::pin(async { Err(HookError::NotSupported("Removing conference participants")) })
    }

    /// Stores a new outbound message (`POST Messages.json`, validated, status `queued`) and hands
    /// it to the runtime's sender; the API answers 201 once this returns `Ok`, so the message must
    /// be stored by then. The default writes it to the store alone (no sender: it waits there for
    /// one). A runtime may refuse it while its outbox is full ([`HookError::Overloaded`]).
    fn create_message<'a>(
        &'a self,
        store: &'a Store,
        message: &'a MessageRecord,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move { store.create_message(message).await.map_err(|e| HookError::Internal(e.to_string())) })
    }

    /// A queued message was canceled (`Status=canceled`): a sender holding it drops it.
    fn message_canceled(&self, sid: &MessageSid) {
        let _ = sid;
    }

    /// The SMSC routes the runtime is configured with and how they are doing, for
    /// `GET /v1/Smsc.json` (a Dialtone extension). The default, for a server without SMPP, is
    /// none.
    fn smsc_status(&self) -> Vec<SmscStatus> {
        Vec::new()
    }

    /// A Proxy service (its settings or pool) or, with `change.session`, one of its sessions
    /// (status, participants, a message interaction) was written: the runtime's index of open
    /// sessions must follow. Awaited before the API answers, so the next call routes by it.
    fn proxy_changed(&self, change: ProxyChange) -> BoxFuture<'_, ()> {
        let _ = change;
        Box::pin(async {})
    }
}

/// What a Proxy write touched (see [`ApiHooks::proxy_changed`]); the runtime reads it back from
/// the store. A service or session that is gone from the store has been deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyChange {
    pub account: AccountSid,
    pub service: model::ProxyServiceSid,
    pub session: Option<model::ProxySessionSid>,
}

/// One SMSC route as the runtime reports it: where it connects, how many of its binds are up,
/// and its counters since the node started.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SmscStatus {
    /// The route's name in the configuration (what a message's internal `smsc` names).
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Binds (SMPP sessions) the configuration asks for, and how many are bound now.
    pub binds_configured: u32,
    pub binds_up: u32,
    /// Messages waiting for this route now.
    pub queued: u64,
    /// Parts the SMSC accepted (submit_sm_resp OK).
    pub submitted: u64,
    /// Delivery receipts that said delivered.
    pub delivered: u64,
    /// Parts refused or reported undelivered.
    pub failed: u64,
    /// Times the SMSC answered ESME_RTHROTTLED.
    pub throttled: u64,
}

/// The live numbers of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Calls waiting now (Twilio's `current_size`).
    pub current_size: u32,
    /// Mean wait of those calls so far, whole seconds (Twilio's `average_wait_time`).
    pub average_wait_time: u32,
}

/// Which member of a queue: the one at the front, or a call by its SID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberKey {
    Front,
    Call(CallSid),
}

/// Dequeue a member into this TwiML: `url` (absolute http(s)) fetched with `method`
/// (`GET` or `POST`, default `POST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberUpdate {
    pub url: String,
    pub method: String,
}

/// A change to a live conference; at least one field is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConferenceUpdate {
    /// `Status=completed`: end the conference (Twilio's reason `conference-ended-via-api`).
    pub end: bool,
    /// `AnnounceUrl` and `AnnounceMethod` (default `POST`): audio or TwiML (`<Say>`, `<Play>`)
    /// played to every participant.
    pub announce: Option<(String, String)>,
}

/// Which conference a new participant joins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceTarget {
    /// A conference the handler found in the account, not `completed`.
    Sid(ConferenceSid),
    /// A room by name (Twilio accepts the friendly name in place of the SID when adding a
    /// participant): the account's open conference of that name, or a new one.
    FriendlyName(String),
}

/// Which participant: by its call, or by the label it was given when added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantKey {
    Call(CallSid),
    Label(String),
}

/// The parameters of a new participant: an outbound call that joins a conference once answered.
/// Validated; methods are `GET` or `POST`; the defaults are Twilio's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateParticipant {
    pub account_sid: AccountSid,
    pub conference: ConferenceTarget,
    /// E.164, or the user part given for a `sip:` destination, or `client:NAME`.
    pub from: String,
    /// E.164 (through a trunk), a `sip:`/`sips:` URI, or `client:NAME` (a registered user).
    pub to: String,
    /// 1 to 128 characters; fetch, update and delete accept it in place of the call SID.
    pub label: Option<String>,
    pub muted: bool,
    /// `true`, `false`, `onEnter` or `onExit` (default `true`).
    pub beep: String,
    /// Default `true`.
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    /// Whisper to `call_sid_to_coach` only; set when a coached call is named (Twilio's rule).
    pub coaching: bool,
    pub call_sid_to_coach: Option<CallSid>,
    /// What plays while the conference has not started: `None` for the server's default
    /// music, `Some("")` for silence (Twilio's `WaitUrl=`), else an http(s) URL.
    pub wait_url: Option<String>,
    pub wait_method: String,
    /// Let the participant hear ringing before the call is answered (default `true`).
    pub early_media: bool,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    /// `initiated`, `ringing`, `answered`, `completed` (default `completed`).
    pub status_callback_events: Vec<String>,
    pub conference_status_callback: Option<String>,
    pub conference_status_callback_method: String,
    /// `start`, `end`, `join`, `leave`, `mute`, `hold`, `modify`, `speaker`, `announcement`
    /// (default `start`, `end`).
    pub conference_status_callback_events: Vec<String>,
    /// Record the participant's call.
    pub record: bool,
    /// `true`, `false`, `record-from-start` or `do-not-record` (default `false`): record the
    /// conference's mix.
    pub conference_record: String,
    /// 2 to 250 (default 250): applies when this participant opens the conference.
    pub max_participants: u32,
    /// Seconds to ring, 5 to 600 (default 60).
    pub timeout: u32,
    /// Longest the call may last once answered, in seconds (default 14400).
    pub time_limit: u32,
    /// `refuse` or `ignore` outside the destination's calling window (`None`: the account
    /// window's `dial_policy`).
    pub quiet_hours_policy: Option<String>,
}

/// A change to a participant; `None` leaves a setting as it is. URLs come with their method.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantUpdate {
    pub muted: Option<bool>,
    pub hold: Option<bool>,
    /// Music while on hold (`HoldUrl`, `HoldMethod` default `GET`).
    pub hold_url: Option<(String, String)>,
    /// Played to this participant only (`AnnounceUrl`, `AnnounceMethod` default `POST`).
    pub announce_url: Option<(String, String)>,
    /// Music until the conference starts (`WaitUrl`, `WaitMethod` default `POST`).
    pub wait_url: Option<(String, String)>,
    pub beep_on_exit: Option<bool>,
    pub end_conference_on_exit: Option<bool>,
    pub coaching: Option<bool>,
    pub call_sid_to_coach: Option<CallSid>,
}

/// The Dialtone code of a call refused for its destination's calling window (quiet hours), or
/// whose window never opens: outside the ranges Twilio's error dictionary uses.
pub const QUIET_HOURS_CODE: u32 = 99100;

/// A request's own quiet-hours choices (Calls create: `QuietHoursPolicy`, `CallingWindow`;
/// Participants create: `QuietHoursPolicy`), validated. `None` takes the account's window.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct QuietHours {
    /// `defer`, `refuse` or `ignore`.
    pub policy: Option<String>,
    /// Hours in `calling_window::Hours` text, in place of the account window's.
    pub hours: Option<String>,
    /// Someone waits live for this call (a conference participant): `defer` is not offered and
    /// the window's `dial_policy` is the default.
    pub live: bool,
}

/// The parameters of a new outbound call, validated; methods are `GET` or `POST`. Serializable:
/// a call deferred by its calling window is stored with it and placed from it later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreateCall {
    pub account_sid: AccountSid,
    /// An E.164 number (through a trunk) or a `sip:`/`sips:` URI (directly).
    pub to: String,
    pub from: String,
    /// Where the first document comes from; `None` when `twiml` is given.
    pub url: Option<String>,
    pub method: String,
    pub twiml: Option<String>,
    pub fallback_url: Option<String>,
    pub fallback_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    /// Which progress events go to `status_callback`: `initiated`, `ringing`, `answered`,
    /// `completed` (Twilio's default: only `completed`).
    pub status_callback_events: Vec<String>,
    /// Seconds to let the far end ring before giving up (`no-answer`).
    pub timeout: u32,
    /// Longest the call may last once answered, in seconds.
    pub time_limit: u32,
    /// Keys to press once the call is answered (`0-9`, `A-D`, `*`, `#`; `w` waits 0.5 s, `W` 1 s).
    pub send_digits: Option<String>,
    /// Record the whole call from answer (`Record=true`).
    pub record: bool,
    /// What happens when the destination is outside its calling window.
    #[serde(default)]
    pub quiet_hours: QuietHours,
}

/// A change to a call: `redirect` (URL and method) or `twiml` replaces what it runs, `status`
/// (`completed` or `canceled`) ends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallUpdate {
    pub redirect: Option<(String, String)>,
    pub twiml: Option<String>,
    pub status: Option<CallStatus>,
}

/// Why a hook refused; becomes a Twilio error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The server running the API does not do this (HTTP 501, Twilio 20001).
    #[error("{0} is not supported by this server")]
    NotSupported(&'static str),
    /// The request cannot be carried out as asked (HTTP 400 with a Twilio code).
    #[error("rejected ({code}): {message}")]
    Rejected { code: u32, message: String },
    /// No such call (member, participant) for this account.
    #[error("not found")]
    NotFound,
    /// Too much is waiting already: try again later (HTTP 429 with a Twilio code).
    #[error("overloaded ({code}): {message}")]
    Overloaded { code: u32, message: String },
    /// The runtime failed; logged, answered with a generic 500.
    #[error("internal: {0}")]
    Internal(String),
}

/// Hooks that do nothing (tools, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl ApiHooks for NoHooks {}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// Base URL clients reach this server at (e.g. `https://voice.example.com`), for absolute
    /// links such as a recording's `media_url`.
    pub public_url: String,
    /// Where `RecordingRecord::file_name`s are relative to.
    pub recordings_dir: PathBuf,
    pub hooks: Arc<dyn ApiHooks>,
}

/// The whole API as a router; serve it or drive it with `tower::ServiceExt::oneshot`.
///
/// The routes come from the table in `routes`, which also writes the OpenAPI document served,
/// without credentials, at `/openapi.json`.
pub fn router(state: ApiState) -> Router {
    let api = routes::operations_router()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    // Built once per router: it depends on the code and this router's public URL only.
    let document = Arc::new(openapi::document(&state.public_url));
    let serve = move || {
        let document = Arc::clone(&document);
        async move { axum::Json(document.as_ref().clone()) }
    };
    Router::new()
        .route("/openapi.json", get(serve))
        .merge(api)
        .with_state(state)
}

async fn not_found(ctx: Ctx) -> AppError {
    ctx.not_found()
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tenancy_tests;
#[cfg(test)]
mod tests;

/// A call as the Calls API renders it (for the agent console's recent calls).
pub fn call_json(c: &model::CallRecord) -> serde_json::Value {
    render::call(c)
}
