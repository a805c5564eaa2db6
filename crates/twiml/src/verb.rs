//! The typed verbs, with Twilio's defaults.

/// A parsed `<Response>`: its verbs in document order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Document {
    pub verbs: Vec<Verb>,
    /// Values Twilio reports as warnings and replaces by their default (e.g. 13212, an invalid
    /// `<Dial timeout>`): the document still runs.
    pub warnings: Vec<Warning>,
}

/// A value that was not used as written; the verb runs with the default instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Twilio's warning code (13212 invalid Dial timeout, 13216 timeLimit, 13217 record;
    /// 13230 invalid Conference muted, 13232 startConferenceOnEnter, 13234 waitMethod,
    /// 13235 beep).
    pub code: u32,
    pub message: String,
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
    Dial(Dial),
    Enqueue(Enqueue),
    /// `<Leave>`: take the call out of the queue it waits in; only meaningful in the markup of
    /// an `<Enqueue waitUrl>`, where the caller then goes on after its `<Enqueue>`.
    Leave,
    /// A real TwiML verb this server does not carry out yet (`Connect`, `Refer`, `Pay`...).
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
            Verb::Dial(_) => "Dial",
            Verb::Enqueue(_) => "Enqueue",
            Verb::Leave => "Leave",
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

/// Most targets one `<Dial>` may ring at once, as on Twilio.
pub const MAX_DIAL_TARGETS: usize = 10;

/// `record` of `<Dial>`: whether and from when both legs are recorded, and in how many channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DialRecord {
    #[default]
    DoNotRecord,
    /// From the bridge on; `record="true"` means this.
    RecordFromAnswer,
    /// From the start of the dial, ringback included.
    RecordFromRinging,
    /// As `RecordFromAnswer`, one channel per leg.
    RecordFromAnswerDual,
    /// As `RecordFromRinging`, one channel per leg.
    RecordFromRingingDual,
}

impl DialRecord {
    /// The attribute value as Twilio spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DialRecord::DoNotRecord => "do-not-record",
            DialRecord::RecordFromAnswer => "record-from-answer",
            DialRecord::RecordFromRinging => "record-from-ringing",
            DialRecord::RecordFromAnswerDual => "record-from-answer-dual",
            DialRecord::RecordFromRingingDual => "record-from-ringing-dual",
        }
    }

    pub fn is_recording(self) -> bool {
        self != DialRecord::DoNotRecord
    }

    /// Two channels (one per leg) rather than one mixed channel.
    pub fn is_dual(self) -> bool {
        matches!(
            self,
            DialRecord::RecordFromAnswerDual | DialRecord::RecordFromRingingDual
        )
    }

    /// Recording starts when the dial starts (ringing), not at the bridge.
    pub fn from_ringing(self) -> bool {
        matches!(
            self,
            DialRecord::RecordFromRinging | DialRecord::RecordFromRingingDual
        )
    }
}

/// Who a `<Dial>` target is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialKind {
    /// `<Number>`, or bare text in `<Dial>`: the number as written (trimmed).
    Number(String),
    /// `<Sip>`: a `sip:` or `sips:` URI.
    Sip(String),
    /// `<Client>`: the identity (its text, or its `<Identity>` child), without a `client:` prefix.
    Client(String),
}

/// One noun of a `<Dial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTarget {
    pub kind: DialKind,
    /// `<Number sendDigits>`: DTMF sent to the callee once it answers (`0-9`, `*`, `#`, `w`).
    pub send_digits: Option<String>,
    /// Markup (or audio) run for the callee before the bridge: the "whisper". As written
    /// in the markup; the engine resolves it to an absolute URL in `Output::Dial`.
    pub url: Option<String>,
    /// Method for `url`. Default POST.
    pub method: Method,
    pub status_callback: Option<String>,
    /// `statusCallbackEvent`, lowercased: among `initiated`, `ringing`, `answered`,
    /// `completed`. Empty when the attribute is absent (Twilio then posts `completed` only).
    pub status_callback_events: Vec<String>,
    /// `<Sip username>`: digest credentials for the far end.
    pub username: Option<String>,
    pub password: Option<String>,
    /// `<Client><Parameter name value/>`: custom parameters handed to the client SDK, in order.
    pub parameters: Vec<(String, String)>,
}

impl DialTarget {
    /// A target with no attributes.
    pub fn new(kind: DialKind) -> DialTarget {
        DialTarget {
            kind,
            send_digits: None,
            url: None,
            method: Method::Post,
            status_callback: None,
            status_callback_events: Vec::new(),
            username: None,
            password: None,
            parameters: Vec::new(),
        }
    }
}

/// `<Dial>`: ring one or more targets, bridge the first that answers with this call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// Requested when the dial ends; without it the document goes on.
    pub action: Option<String>,
    pub method: Method,
    /// Seconds to ring before giving up. Default 30, kept within 5..=600.
    pub timeout: u32,
    /// Most seconds the bridged call may last. Default 14400 (4 hours), at most 86400.
    pub time_limit: u32,
    pub caller_id: Option<String>,
    /// Leave this call ringing until a target answers (the runtime answers at the bridge).
    pub answer_on_bridge: bool,
    pub record: DialRecord,
    /// The caller can end the bridge by pressing `*`.
    pub hangup_on_star: bool,
    /// Ringback tone country code (`us`, `uk`, ...), as written.
    pub ring_tone: Option<String>,
    pub recording_status_callback: Option<String>,
    /// One to [`MAX_DIAL_TARGETS`], rung at once; the first to answer wins. Empty when `join`
    /// is set.
    pub targets: Vec<DialTarget>,
    /// `<Queue>` or `<Conference>`: the call joins a queue's caller or a room instead of
    /// ringing anyone. Such a noun is the only one of its `<Dial>`.
    pub join: Option<DialJoin>,
}

impl Default for Dial {
    fn default() -> Dial {
        Dial {
            action: None,
            method: Method::Post,
            timeout: 30,
            time_limit: 14400,
            caller_id: None,
            answer_on_bridge: false,
            record: DialRecord::DoNotRecord,
            hangup_on_star: false,
            ring_tone: None,
            recording_status_callback: None,
            targets: Vec::new(),
            join: None,
        }
    }
}

/// What a `<Dial>` joins when it rings no one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialJoin {
    Queue(DialQueue),
    /// Boxed: its twenty-odd attributes would otherwise make every [`Dial`] and [`Verb`]
    /// several times larger.
    Conference(Box<DialConference>),
}

/// `<Dial><Queue>`: bridge this call with the caller who has waited longest in the queue.
/// With nobody waiting, the dial waits for one until its `timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialQueue {
    /// The queue name (trimmed, not empty).
    pub name: String,
    /// Markup run for the dequeued caller before the bridge (e.g. "you are being connected").
    pub url: Option<String>,
    /// Method for `url`. Default POST.
    pub method: Method,
    /// TaskRouter: the reservation this dial accepts. Kept, not acted on.
    pub reservation_sid: Option<String>,
    /// TaskRouter: the worker's activity once the call ends. Kept, not acted on.
    pub post_work_activity_sid: Option<String>,
}

/// `beep` of `<Conference>`: when the room hears a tone for a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConferenceBeep {
    /// On both entry and exit.
    #[default]
    True,
    False,
    OnEnter,
    OnExit,
}

impl ConferenceBeep {
    /// The attribute value as Twilio spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ConferenceBeep::True => "true",
            ConferenceBeep::False => "false",
            ConferenceBeep::OnEnter => "onEnter",
            ConferenceBeep::OnExit => "onExit",
        }
    }
}

/// `record` of `<Conference>`: the whole room is recorded (one mixed channel), or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConferenceRecord {
    #[default]
    DoNotRecord,
    RecordFromStart,
}

/// Most participants one conference room holds, and the default of `maxParticipants`.
pub const MAX_CONFERENCE_PARTICIPANTS: u32 = 250;

/// `<Dial><Conference>`: put this call into a named room with everyone else who dialed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialConference {
    /// The room name (trimmed, not empty); rooms are scoped to the account.
    pub name: String,
    /// Join unable to speak. Default false.
    pub muted: bool,
    pub beep: ConferenceBeep,
    /// The room starts (hold music stops, participants hear each other) when this participant
    /// joins. Default true; with false the participant waits on `wait_url` until one with true
    /// arrives.
    pub start_conference_on_enter: bool,
    /// The room ends, and every participant leaves it, when this participant does.
    /// Default false.
    pub end_conference_on_exit: bool,
    /// What to play while the room has not started. `None`: the attribute is absent and
    /// Twilio's default hold music plays; `Some("")`: written empty, which means silence.
    pub wait_url: Option<String>,
    /// Method for `wait_url`. Default POST.
    pub wait_method: Method,
    /// Set by the participant that creates the room. Default and most
    /// [`MAX_CONFERENCE_PARTICIPANTS`], at least 2.
    pub max_participants: u32,
    pub record: ConferenceRecord,
    /// Where the room's media is mixed (`us1`, `ie1`...), as written. Kept, not acted on.
    pub region: Option<String>,
    /// The CallSid of a participant this one coaches: heard by that participant only.
    pub coach: Option<String>,
    /// Applies to the room's recording. Default trim-silence.
    pub trim: Trim,
    pub status_callback: Option<String>,
    pub status_callback_method: Method,
    /// `statusCallbackEvent`, lowercased, among `start`, `end`, `join`, `leave`, `mute`,
    /// `hold`, `modify`, `speaker` and `announcement`, each once, in the order written. Empty
    /// when the attribute is absent.
    pub status_callback_events: Vec<String>,
    pub recording_status_callback: Option<String>,
    pub recording_status_callback_method: Method,
    /// `recordingStatusCallbackEvent`, lowercased, among `in-progress`, `completed` and
    /// `absent`, each once. Empty when absent (Twilio then posts `completed` only).
    pub recording_status_callback_events: Vec<String>,
    /// Deprecated by Twilio in favour of `recording_status_callback`. Kept as written.
    pub event_callback_url: Option<String>,
    /// `large` (Twilio's default), `medium`, `small` or `off`, as written.
    pub jitter_buffer_size: Option<String>,
    /// A name for this participant, unique in the room, usable in place of its CallSid.
    pub participant_label: Option<String>,
}

impl DialConference {
    /// A conference noun with no attributes: Twilio's defaults.
    pub fn new(name: impl Into<String>) -> DialConference {
        DialConference {
            name: name.into(),
            muted: false,
            beep: ConferenceBeep::True,
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            wait_url: None,
            wait_method: Method::Post,
            max_participants: MAX_CONFERENCE_PARTICIPANTS,
            record: ConferenceRecord::DoNotRecord,
            region: None,
            coach: None,
            trim: Trim::TrimSilence,
            status_callback: None,
            status_callback_method: Method::Post,
            status_callback_events: Vec::new(),
            recording_status_callback: None,
            recording_status_callback_method: Method::Post,
            recording_status_callback_events: Vec::new(),
            event_callback_url: None,
            jitter_buffer_size: None,
            participant_label: None,
        }
    }
}

/// Most characters in a queue name, as on Twilio (error 14205 beyond).
pub const MAX_QUEUE_NAME_LEN: usize = 64;

/// Largest `maxQueueSize` Twilio allows a queue.
pub const MAX_QUEUE_SIZE: u32 = 5000;

/// `<Enqueue>`: put the caller in a named queue, where it waits (on `wait_url`) until a
/// `<Dial><Queue>` takes it, a `<Leave>` in the wait markup, or a hang-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueue {
    /// The queue name (trimmed, not empty, at most [`MAX_QUEUE_NAME_LEN`] characters); the
    /// queue is created on first use.
    pub name: String,
    /// Requested when the call leaves the queue (with `QueueResult`); without it the document
    /// goes on.
    pub action: Option<String>,
    pub method: Method,
    /// Markup run, and rerun, while the caller waits. `None`: Twilio's default hold music.
    pub wait_url: Option<String>,
    pub wait_url_method: Method,
    /// Size limit for a queue this verb creates, 1 to [`MAX_QUEUE_SIZE`]. `None`: the queue's
    /// own limit (100 for a new queue).
    pub max_queue_size: Option<u32>,
    /// TaskRouter workflow the call would be handed to. Kept, not acted on.
    pub workflow_sid: Option<String>,
    /// The text of a `<Task>` child: TaskRouter task attributes as JSON, trimmed, not checked.
    pub task: Option<String>,
}
