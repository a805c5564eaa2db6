//! The per-call state machine: the TwiML verb interpreter.
//!
//! Owns what one call does between "a SIP INVITE arrived" and "the call is over": which webhook
//! to fetch, which verbs the markup asked for, when to answer, play, gather digits, record,
//! redirect, reject or hang up, and which Twilio error to record when the customer's app fails.
//!
//! Driven sans-IO, like quinn-proto or str0m: the runtime creates a [`Call`] with
//! [`Call::new`], feeds it events with [`Call::handle_input`] and [`Call::handle_timeout`], and
//! drains [`Call::poll_output`] until it returns `None`, then sleeps until
//! [`Call::poll_timeout`]. The engine never reads the clock, touches a socket or spawns; every
//! instant is passed in and randomness (recording SIDs) comes from a seeded RNG.
//!
//! Architecture invariant: no runtime, socket, HTTP or database crate here.
//!
//! # Contract with the runtime
//! - `Finished` is always the last output, exactly once; after it every input is ignored.
//!   After `RemoteHangup` keep feeding the call until `Finished` (mid-`<Record>` it waits up to
//!   [`RECORDING_REPORT_GRACE`] for `RecordingStopped`).
//! - Some `FetchWebhook`s are not waited on (`recordingStatusCallback`, the `<Record>` action
//!   after the caller hung up): send them; their result may be handed in or dropped.
//! - Ids of requests, playbacks, recordings and dials come from one counter per call and never
//!   repeat.
//!   Results for ids the call no longer waits on are ignored.
//!
//! # `<Dial>`
//! The runtime does all leg work (ringing and ringback, whisper `url`, `sendDigits`, bridging,
//! `hangupOnStar`, `timeLimit`, recording both legs) between `Output::Dial { id, dial }` and
//! `Input::DialEnded { id, outcome }`; the engine only decides when to dial and what follows.
//! - `Answer` comes before `Dial` unless `dial.answer_on_bridge`: then the call stays ringing
//!   and the runtime answers it at the bridge. A `DialEnded` whose status is bridged
//!   (`Completed`, `Answered`) then counts as the answer, at `now - outcome.duration`, for the
//!   call's status and `answered_at`. Outbound calls are already answered and never `Answer`.
//! - While dialing, DTMF and playback or recording events are ignored.
//! - On `DialEnded`: with `action`, a `FetchWebhook` with the usual call parameters plus
//!   `DialCallStatus`, `DialCallSid` (when known), `DialCallDuration` (when bridged, rounded
//!   seconds), `DialBridged` (`true`/`false`), and `RecordingUrl`, `RecordingSid`,
//!   `RecordingDuration` when recorded; its document replaces the rest of this one. Without
//!   `action` the document goes on after the `<Dial>` (a bridged call whose callee hung up too).
//!   The runtime, which closes the recording file, sends `recordingStatusCallback` itself.
//! - Caller hang-up during a dial, in either order: `DialEnded` then `RemoteHangup` (the
//!   action is requested as above and the call finishes when the hang-up arrives; its reply is
//!   ignored), or `RemoteHangup` first: the engine emits `CancelDial { id }` and waits up to
//!   [`DIAL_REPORT_GRACE`] for `DialEnded`, then sends the action request without waiting on it
//!   and finishes. No report within the grace: finished without the action request.
//! - A live update (`Input::Redirect`, `Input::Twiml`) during a dial emits `CancelDial { id }`
//!   and runs the new document at once. The dial's later `DialEnded` requests no action; it only
//!   records the answer when an `answerOnBridge` dial had bridged.
//! - `CancelDial` may reach the runtime after it ended the dial itself: ignore it then, but
//!   send `DialEnded` exactly once per `Dial`.
//!
//! # `<Dial><Queue>` and `<Dial><Conference>`
//! Also `Output::Dial`, with `dial.join` set and no targets: the runtime takes the front of
//! the queue or joins the room (its waiting and status decisions are [`queue`]'s and
//! [`conference`]'s) and reports `DialEnded` when the bridge or the participation is over,
//! with `QueueSid`/`QueueTime` or `ConferenceSid` in `outcome.params` for the action.
//!
//! # `<Enqueue>`
//! `Answer`, then `Output::Enqueue { id, enqueue }` (URLs absolute). The runtime puts the call
//! in the queue, plays the `waitUrl` with a [`wait::WaitLoop`] (whose ids and playbacks are
//! its own), bridges the caller when an agent takes it, and reports `EnqueueEnded` once the
//! call is out of the queue and any bridge is over. Then, as for `<Dial>`: the `action` is
//! requested with `QueueResult` (and `QueueSid`, `QueueTime` when the call was in the queue)
//! and its document replaces the rest, or the document goes on. A caller hang-up emits
//! `LeaveQueue` and waits up to [`DIAL_REPORT_GRACE`] for the report (the action is then
//! requested without waiting on it); `<Hangup>` in the wait document (`QueueResult=hangup`)
//! ends the call the same way after the request. A live update emits `LeaveQueue` and runs
//! the new document; the late report requests the action without waiting on it. `<Leave>`
//! outside a wait document does nothing.
//!
//! # Behaviour where Twilio's docs are silent (choices)
//! - Any verb other than `<Reject>` answers first, so an empty `<Response/>` or a first
//!   `<Hangup>` gives `Answer`, `Hangup`, status `completed`. `<Reject>` after the call was
//!   answered hangs up. `<Reject reason="busy">` ends `busy`, `rejected` ends `no-answer`.
//! - A failed document fetch (11200: connect, timeout, non-2xx) or an unreadable document
//!   (12100, including verbs this server does not run yet, such as `<Connect>`) is reported with
//!   `Notify`, then the fallback URL is requested with the failed request's parameters plus
//!   `ErrorCode` and `ErrorUrl`. This applies to every document fetch (voice URL, `action`,
//!   `<Redirect>`), not only the first. When the fallback fails too, or there is none, the call
//!   is answered, hears [`APPLICATION_ERROR_MESSAGE`] and is hung up (`completed`).
//! - More than [`MAX_REDIRECTS_WITHOUT_MEDIA`] `<Redirect>`s in a row with no media verb in
//!   between: `Notify` 12100, then the application-error ending.
//! - `<Gather>` action requests carry `Digits` and `FinishedOnKey` (the key, or empty). Pressing
//!   only the finish key is empty input. A speech-only gather ignores digits and times out.
//! - `RecordingDuration` is rounded to whole seconds; a recording that rounds to 0 s is empty.
//!   `Digits` is sent only when a key (or `hangup`) ended the recording.
//! - A reply whose `Content-Type` is `audio/*` is played as if it were `<Play>` of its URL.
//! - A live update (`Input::Redirect`, `Input::Twiml`) stops playback and a running recording
//!   (whose later report is ignored: no action is requested for it), forgets a pending fetch,
//!   and runs the new document as a `<Redirect>` would. The redirect loop guard starts over.
//!   An unreadable inline document is handled like a failed fetch (fallback, then the
//!   application error).
//! - Values Twilio only warns about (a bad `<Dial timeout>`, `timeLimit` or `record`) are
//!   reported with `Notify` and their Twilio warning code (13212, 13216, 13217); the verb runs
//!   with the default.
//! - `<Play digits>` (sending DTMF) is skipped: there is no output for it yet. A failed
//!   `<Play>` URL is reported as 11200 and the document goes on.

mod call;
pub mod conference;
pub mod dial;
pub mod queue;
pub mod wait;

use std::fmt;
use std::time::{Duration, Instant};

pub use call::{
    Call, APPLICATION_ERROR_MESSAGE, DIAL_REPORT_GRACE, MAX_REDIRECTS_WITHOUT_MEDIA,
    RECORDING_REPORT_GRACE,
};
pub use conference::{Conference, ConferenceOutput, ConferenceSid};
pub use model::{AccountSid, CallDirection, CallSid, CallStatus, RecordingSid};
pub use queue::{QueueResult, QueueSid, Queues};

/// Everything the engine needs to know about a call when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallConfig {
    pub call_sid: CallSid,
    pub account_sid: AccountSid,
    pub from: String,
    pub to: String,
    pub direction: CallDirection,
    pub voice_url: String,
    pub voice_method: HttpMethod,
    pub fallback_url: Option<String>,
    pub fallback_method: HttpMethod,
    /// Base URL of this server's REST API, without a trailing slash; `RecordingUrl` is built on it.
    pub public_url: String,
    /// A first document given inline (the Calls API `Twiml` parameter): run instead of fetching
    /// `voice_url`. Relative URLs in it resolve against `voice_url`, which may then be empty.
    pub twiml: Option<String>,
    /// Parameters added to every webhook request after Twilio's own (a browser call's
    /// `device.connect({params})` and its token's outgoing params), in order. A name that
    /// Twilio's parameters already use is dropped.
    pub extra_params: Vec<(String, String)>,
}

/// The HTTP method of a webhook request, as TwiML's `method` attributes spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

impl fmt::Display for HttpMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<twiml::Method> for HttpMethod {
    fn from(m: twiml::Method) -> Self {
        match m {
            twiml::Method::Get => HttpMethod::Get,
            twiml::Method::Post => HttpMethod::Post,
        }
    }
}

/// A 2xx answer to a webhook request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub body: String,
    pub content_type: Option<String>,
}

/// Why a webhook request produced no usable answer. All of these are Twilio error 11200.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookFailure {
    /// DNS, TCP or TLS failure.
    Connect(String),
    /// No complete answer within the deadline.
    Timeout,
    /// The server answered with a status outside 2xx.
    Status(u16),
    /// Anything else (body too large, not UTF-8, ...).
    Other(String),
}

impl fmt::Display for WebhookFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookFailure::Connect(e) => write!(f, "connection failed: {e}"),
            WebhookFailure::Timeout => f.write_str("request timed out"),
            WebhookFailure::Status(s) => write!(f, "HTTP status {s}"),
            WebhookFailure::Other(e) => f.write_str(e),
        }
    }
}

/// What to play.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// An audio file (WAV or MP3) at this absolute URL.
    Url(String),
    /// Text to speak. `voice` and `language` are as written in the markup (defaults filled in).
    Tts {
        text: String,
        voice: String,
        language: String,
    },
    /// The short tone before `<Record>`.
    Beep,
    /// Dialtone's default hold music (`media::tone::hold_music`), for a waiting caller whose
    /// application gave no `waitUrl`.
    HoldMusic,
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStop {
    Silence,
    MaxLength,
    /// The media worker ended it on this DTMF digit (the engine normally ends it itself).
    Key(char),
    /// Ended on the engine's `StopRecording`.
    Stopped,
    Hangup,
}

/// How to refuse an unanswered call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// 486 Busy Here.
    Busy,
    /// 603 Decline.
    Rejected,
}

/// How a `<Dial>` ended, as Twilio's `DialCallStatus` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DialCallStatus {
    /// A target answered and the bridge is over.
    Completed,
    /// A target answered (the bridge ended without the usual completion report).
    Answered,
    Busy,
    NoAnswer,
    Failed,
    /// The dial was ended before anyone answered (caller hang-up, live update).
    Canceled,
}

impl DialCallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DialCallStatus::Completed => "completed",
            DialCallStatus::Answered => "answered",
            DialCallStatus::Busy => "busy",
            DialCallStatus::NoAnswer => "no-answer",
            DialCallStatus::Failed => "failed",
            DialCallStatus::Canceled => "canceled",
        }
    }

    /// A target answered, so the two legs were bridged.
    pub fn is_bridged(self) -> bool {
        matches!(self, DialCallStatus::Completed | DialCallStatus::Answered)
    }
}

impl fmt::Display for DialCallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The recording of a `<Dial record>`, made by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRecording {
    pub sid: RecordingSid,
    /// Its REST URL (`{public_url}/2010-04-01/Accounts/{AC}/Recordings/{RE}`), sent as
    /// `RecordingUrl`.
    pub url: String,
    pub duration: Duration,
}

/// What the runtime reports when a `<Dial>` is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOutcome {
    pub status: DialCallStatus,
    /// The SID of the leg that answered, or of the leg that was tried when there was one
    /// (absent when no leg could be created at all).
    pub dial_call_sid: Option<CallSid>,
    /// How long the legs were bridged; zero when nobody answered.
    pub duration: Duration,
    pub recording: Option<DialRecording>,
    /// More parameters for the `action` request: `QueueSid` and `QueueTime` after a
    /// `<Dial><Queue>`, `ConferenceSid` after a `<Dial><Conference>`.
    pub params: Vec<(String, String)>,
}

/// What the runtime reports when an `<Enqueue>` is over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnqueueOutcome {
    pub result: QueueResult,
    /// The queue, when the call was in it (not for `queue-full`).
    pub queue_sid: Option<QueueSid>,
    /// How long the call waited.
    pub queue_time: Duration,
}

/// Events the runtime hands to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    WebhookResult {
        request_id: u64,
        result: Result<WebhookReply, WebhookFailure>,
    },
    PlaybackDone {
        id: u64,
    },
    PlaybackFailed {
        id: u64,
        reason: String,
    },
    Dtmf {
        digit: char,
    },
    RecordingStopped {
        id: u64,
        duration: Duration,
        stop: RecordStop,
    },
    RemoteHangup,
    /// A live update (Calls API `Url`/`Method`): stop what the call is doing and run the
    /// document fetched from `url` instead of the rest of the current one.
    Redirect {
        url: String,
        method: HttpMethod,
    },
    /// A live update (Calls API `Twiml`): stop what the call is doing and run this document.
    Twiml {
        document: String,
    },
    /// The `<Dial>` started with `Output::Dial { id, .. }` is over (every leg ended).
    DialEnded {
        id: u64,
        outcome: DialOutcome,
    },
    /// The `<Enqueue>` started with `Output::Enqueue { id, .. }` is over: the caller was
    /// bridged to an agent and that bridge ended, left (`<Leave>`), hung up, was refused
    /// (`queue-full`), ...
    EnqueueEnded {
        id: u64,
        outcome: EnqueueOutcome,
    },
}

/// Commands a [`Call`] gives the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Request the customer's app. `params` are the form fields (POST) or query (GET).
    FetchWebhook {
        request_id: u64,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    },
    /// Send 200 OK with SDP, if not answered yet.
    Answer,
    Reject {
        reason: RejectReason,
    },
    /// Start playing; report `PlaybackDone { id }` when all loops are done. `loops == 0` means
    /// until stopped.
    Play {
        id: u64,
        source: MediaSource,
        loops: u32,
    },
    /// Stop whatever is playing; no `PlaybackDone` is expected for it.
    StopPlayback,
    StartRecording {
        id: u64,
        recording_sid: RecordingSid,
        max_length: Duration,
        silence_timeout: Option<Duration>,
    },
    /// End the recording; the runtime answers with `RecordingStopped { id, .. }`.
    StopRecording {
        id: u64,
    },
    /// Send BYE (or a final error response if not answered).
    Hangup,
    /// Ring `dial.targets` and bridge the first that answers; report `DialEnded { id, .. }` when
    /// the dial is over. URLs in `dial` (`action`, targets' `url` and `status_callback`,
    /// `recording_status_callback`) are absolute. Follows `Answer` unless
    /// `dial.answer_on_bridge`, in which case the runtime answers this call at the bridge.
    Dial {
        id: u64,
        dial: twiml::Dial,
    },
    /// End the dial `id` now (its legs are hung up or canceled); the runtime still reports
    /// `DialEnded { id, .. }`, which the engine may ignore. Safe to receive after the runtime
    /// already ended the dial on its own.
    CancelDial {
        id: u64,
    },
    /// Put this call in the queue `enqueue.name` (URLs absolute) and play it the `waitUrl`
    /// (an [`wait::WaitLoop`], with `<Leave>` and `<Hangup>` allowed) until an agent takes it;
    /// report `EnqueueEnded { id, .. }` when it is out of the queue and any bridge is over.
    Enqueue {
        id: u64,
        enqueue: twiml::Enqueue,
    },
    /// Take this call out of queue `id` (caller hung up, live update); the runtime still
    /// reports `EnqueueEnded`, which the engine may ignore.
    LeaveQueue {
        id: u64,
    },
    /// A Twilio error (e.g. 11200, 12100) to record for the call.
    Notify {
        code: u32,
        message: String,
    },
    /// The call is over. Always the last output, emitted exactly once.
    Finished {
        status: CallStatus,
        answered_at: Option<Instant>,
        ended_at: Instant,
    },
}
