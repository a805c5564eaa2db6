//! The typed verbs, with Twilio's defaults.

/// A parsed `<Response>`: its verbs in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    pub verbs: Vec<Verb>,
}

/// One instruction of a `<Response>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verb {
    Say(Say),
    Play(Play),
    Pause(Pause),
    Gather(Gather),
    Record(Record),
    Redirect(Redirect),
    Hangup,
    Reject(Reject),
    /// A real TwiML verb this server does not carry out yet (`Dial`, `Enqueue`, `Connect`...).
    /// Parsed so the document is accepted; the interpreter decides what to do with it.
    Unsupported {
        name: String,
    },
}

impl Verb {
    /// The element name as written in TwiML.
    pub fn name(&self) -> &str {
        match self {
            Verb::Say(_) => "Say",
            Verb::Play(_) => "Play",
            Verb::Pause(_) => "Pause",
            Verb::Gather(_) => "Gather",
            Verb::Record(_) => "Record",
            Verb::Redirect(_) => "Redirect",
            Verb::Hangup => "Hangup",
            Verb::Reject(_) => "Reject",
            Verb::Unsupported { name } => name,
        }
    }
}

/// HTTP method of an `action` or `Redirect` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Method {
    Get,
    #[default]
    Post,
}

/// `<Say>`: speak text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    /// The text, with any SSML elements flattened to their text.
    pub text: String,
    /// Default `man`.
    pub voice: String,
    /// Default `en-US`.
    pub language: String,
    /// Times to speak it; 0 repeats until the verb is interrupted. Default 1.
    pub loop_: u32,
}

/// `<Play>`: play an audio file, or send DTMF digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    /// The URL as written (may be relative); empty when only `digits` is given.
    pub url: String,
    /// Times to play it; 0 repeats until the verb is interrupted. Default 1.
    pub loop_: u32,
    /// DTMF digits to send (`0-9`, `*`, `#`, `w` for half a second of wait).
    pub digits: Option<String>,
}

/// `<Pause>`: silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// Seconds; default 1.
    pub length: u32,
}

/// Which inputs a `<Gather>` listens for (`input="dtmf speech"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatherInput {
    pub dtmf: bool,
    pub speech: bool,
}

impl Default for GatherInput {
    fn default() -> Self {
        GatherInput {
            dtmf: true,
            speech: false,
        }
    }
}

/// `speechTimeout`: seconds of silence, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechTimeout {
    Auto,
    Seconds(u32),
}

/// `<Gather>`: collect digits (or speech) while optionally playing prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gather {
    pub input: GatherInput,
    /// Stop after this many digits; `None` = unlimited (the default).
    pub num_digits: Option<u32>,
    /// Seconds to wait for the next digit; default 5.
    pub timeout: u32,
    /// Key that ends input (not included in the digits); `None` when set to the empty string.
    /// Default `#`.
    pub finish_on_key: Option<char>,
    /// Default: the current document URL.
    pub action: Option<String>,
    pub method: Method,
    /// Request `action` even when nothing was entered. Default false.
    pub action_on_empty_result: bool,
    pub speech_timeout: Option<SpeechTimeout>,
    /// Prompts, only `Say`, `Play` and `Pause`.
    pub children: Vec<Verb>,
}

/// `trim`: whether to cut leading and trailing silence from a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trim {
    #[default]
    TrimSilence,
    DoNotTrim,
}

/// `<Record>`: record the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Default: the current document URL.
    pub action: Option<String>,
    pub method: Method,
    /// Seconds; default 3600.
    pub max_length: u32,
    /// Seconds of silence that end the recording; 0 disables. Default 5.
    pub timeout: u32,
    /// Keys that end the recording. Default `1234567890*#`.
    pub finish_on_key: String,
    /// Default true.
    pub play_beep: bool,
    pub trim: Trim,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: Method,
}

/// `<Redirect>`: continue with the markup at another URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// As written (may be relative).
    pub url: String,
    pub method: Method,
}

/// `reason` of `<Reject>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RejectReason {
    #[default]
    Rejected,
    Busy,
}

/// `<Reject>`: refuse the call without answering it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reject {
    pub reason: RejectReason,
}
