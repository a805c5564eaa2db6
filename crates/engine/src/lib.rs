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

mod call;

use std::fmt;
use std::time::{Duration, Instant};

pub use call::{
    Call, APPLICATION_ERROR_MESSAGE, MAX_REDIRECTS_WITHOUT_MEDIA, RECORDING_REPORT_GRACE,
};
pub use model::{AccountSid, CallDirection, CallSid, CallStatus, RecordingSid};

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
