//! One conference room: `<Dial><Conference>` and the Conferences and Participants REST
//! resources.
//!
//! A [`Conference`] owns the decisions of one room, not its audio: who is in it and in what
//! state (muted, held, coaching, waiting), when the room starts and ends and why, who hears
//! whom ([`Conference::mix_plan`]), when to play wait music, hold music, beeps and
//! announcements, whom to take out, and which status callbacks to send, numbered in order.
//!
//! Driven sans-IO like [`crate::Call`] (str0m, quinn): the runtime feeds events with the
//! `handle_*` methods and REST actions with [`Conference::update_participant`],
//! [`Conference::kick`], [`Conference::end`] and [`Conference::announce`], all taking `now`;
//! then drains [`Conference::poll_output`] until `None` and carries the outputs out in order.
//! The room never reads the clock and has no timer, so there is no `poll_timeout`.
//!
//! # Contract with the runtime
//! - The runtime keeps one `Conference` per account and friendly name while the room lives.
//!   [`ConferenceOutput::Ended`] is the room's last output, exactly once; after it every input
//!   is refused with [`ConferenceError::Ended`]. A later `<Dial><Conference>` with the same
//!   name starts a *new* conference (new `CF` SID, new `Conference`), as on Twilio, where a
//!   completed conference never comes back.
//! - A TwiML join (the call is already answered) is [`Conference::handle_join`]. A participant
//!   added by the Participants REST API is [`Conference::handle_dialing`] when its leg is
//!   created (it holds a seat and its label), then [`Conference::handle_ringing`] and
//!   [`Conference::handle_answered`]; a leg that fails is [`Conference::handle_leave`] with
//!   [`LeaveReason::AddFailed`].
//! - A participant's leg that goes away on its own (hang-up, the call redirected by the Calls
//!   API) is [`Conference::handle_leave`]; no output tells the runtime to remove it. When the
//!   room removes someone (REST delete, or the room ended) it says so with
//!   [`ConferenceOutput::Kick`]: take the leg out of the mixer and end its `<Dial>` (a TwiML
//!   participant goes on with its document, as on Twilio; a REST-created leg is hung up or
//!   canceled).
//! - After [`ConferenceOutput::StartMixing`] and each [`ConferenceOutput::MixChanged`], read
//!   [`Conference::mix_plan`] and apply it to the mixer.
//! - Status callbacks are complete form parameters apart from `Timestamp`, which the runtime
//!   adds from the wall clock when it sends them.
//!
//! # Twilio's rules, as implemented
//! - The room is `init` until it has at least two connected participants, at least one of
//!   them with `startConferenceOnEnter`; then it is `in-progress` (`conference-start`) until
//!   it ends, however many leave. Connected participants of an `init` room hear wait music and
//!   are not heard (the `muted` flag they report is their own, untouched).
//! - The room ends (`completed`) when a connected participant with `endConferenceOnExit`
//!   leaves or is kicked (everyone else is kicked), when the last participant leaves or is
//!   kicked, or by the REST API ([`Conference::end`]). `ReasonConferenceEnded` and
//!   `CallSidEndingConference` say which.
//! - `maxParticipants` (2 to 250, default 250) and `statusCallback`, `statusCallbackMethod`
//!   and `statusCallbackEvent` are taken from the *first* participant to join and ignored on
//!   later ones, as Twilio's `<Conference>` page says. A join beyond `maxParticipants` is
//!   refused with [`ConferenceError::Full`] (Twilio error 16020); a label already in use with
//!   [`ConferenceError::DuplicateLabel`] (16025). Twilio's page says of 16025 that the call is
//!   not added and continues with the next verb: the runtime does the same for both, reporting
//!   the code with `Notify` and ending the `<Dial>` as `failed`.
//! - A muted participant hears the room and is not heard. A held one neither hears nor is
//!   heard and hears hold music. A coach hears the room and is heard only by the participant it
//!   coaches. `participant-modify` reports changes of `BeepOnExit`, `EndConferenceOnExit`,
//!   `Coaching` (with `CallSidToCoach`) and `WaitUrl`.
//!
//! # Behaviour where Twilio's docs are silent (choices)
//! - With no `statusCallback` on the first participant the room sends no status callbacks at
//!   all, even if a later participant sets one. `SequenceNumber` starts at 1 and counts only
//!   the callbacks actually sent, so the app sees no gaps.
//! - Outputs of one input come in this order: the room's commands first (music, mixing,
//!   beeps), then the callbacks in the order things happened: `participant-join` before the
//!   `conference-start` it caused; `participant-leave` of whoever left, then for each other
//!   participant its `Kick` and `participant-leave`, then `conference-end`, then `Ended`. For
//!   one update: `participant-mute`/`-unmute`, then `-hold`/`-unhold`, then `-modify`.
//! - Beeps follow the entering or leaving participant's `beep`, play into the room only while
//!   it is `in-progress` and someone else hears it, so the moderator whose arrival starts the
//!   room makes the beep everyone hears as the music stops.
//! - `endConferenceOnExit` counts only for a participant that was connected: a REST-created leg
//!   that never answered does not end the room.
//! - `ReasonParticipantLeft` for a REST delete (kick) is `participant_updated_via_api`, the
//!   closest of Twilio's values; the others kicked when the room ends get
//!   `moderator_ended_conference` or `conference_ended_via_api`. `ParticipantCallStatus` is
//!   `in-progress` for whoever is taken out alive, `canceled` for a leg that had not answered.
//! - `Reason` on `conference-end` is a plain English sentence.
//! - A coach must coach a connected participant other than itself (Twilio's 13240 otherwise);
//!   if the coached participant later leaves or is held, the coach is heard by nobody until
//!   retargeted.
//! - Updates of a participant whose leg has not answered are refused
//!   ([`ConferenceError::NotConnected`]).
//! - `music: None` in wait and hold music means the server's default playlist; a URL that is
//!   the empty string means silence, as Twilio's `waitUrl=""`.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::BitOr;
use std::time::Instant;

use model::{AccountSid, CallSid, CallStatus};

use crate::HttpMethod;

/// `maxParticipants` when the first participant does not set it; also Twilio's upper bound.
pub const DEFAULT_MAX_PARTICIPANTS: u32 = 250;
/// The smallest `maxParticipants` Twilio accepts.
pub const MIN_MAX_PARTICIPANTS: u32 = 2;
/// The longest participant label Twilio accepts, in characters.
pub const MAX_LABEL_CHARS: usize = 128;

/// Twilio error: the conference is full.
const ERR_FULL: u32 = 16020;
/// Twilio error: the participant label is already in use.
const ERR_DUPLICATE_LABEL: u32 = 16025;
/// Twilio error: the call to coach is not connected to the conference.
const ERR_COACH: u32 = 13240;

pub use model::ConferenceSid;

/// The room's and a participant's status, as Twilio spells them (the records' own types).
pub use model::{ConferenceStatus, ParticipantStatus};

/// Why the room ended: Twilio's `ReasonConferenceEnded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonConferenceEnded {
    ConferenceEndedViaApi,
    ParticipantWithEndConferenceOnExitLeft,
    ParticipantWithEndConferenceOnExitKicked,
    LastParticipantKicked,
    LastParticipantLeft,
}

impl ReasonConferenceEnded {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonConferenceEnded::ConferenceEndedViaApi => "conference-ended-via-api",
            ReasonConferenceEnded::ParticipantWithEndConferenceOnExitLeft => {
                "participant-with-end-conference-on-exit-left"
            }
            ReasonConferenceEnded::ParticipantWithEndConferenceOnExitKicked => {
                "participant-with-end-conference-on-exit-kicked"
            }
            ReasonConferenceEnded::LastParticipantKicked => "last-participant-kicked",
            ReasonConferenceEnded::LastParticipantLeft => "last-participant-left",
        }
    }

    /// The `Reason` sentence of `conference-end`.
    fn sentence(self, by: Option<CallSid>) -> String {
        let who = by.map(|c| format!(" {c}")).unwrap_or_default();
        match self {
            ReasonConferenceEnded::ConferenceEndedViaApi => "Conference ended via API".into(),
            ReasonConferenceEnded::ParticipantWithEndConferenceOnExitLeft => {
                format!("Participant{who} with endConferenceOnExit left the conference")
            }
            ReasonConferenceEnded::ParticipantWithEndConferenceOnExitKicked => {
                format!("Participant{who} with endConferenceOnExit was removed from the conference")
            }
            ReasonConferenceEnded::LastParticipantKicked => {
                "The last participant was removed from the conference".into()
            }
            ReasonConferenceEnded::LastParticipantLeft => {
                "The last participant left the conference".into()
            }
        }
    }
}

impl fmt::Display for ReasonConferenceEnded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a participant left: Twilio's `ReasonParticipantLeft` (sent on `participant-leave`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReasonParticipantLeft {
    ConferenceEndedViaApi,
    ModeratorEndedConference,
    ParticipantUpdatedViaApi,
    ParticipantHungUp,
    ParticipantAddFailed,
}

impl ReasonParticipantLeft {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonParticipantLeft::ConferenceEndedViaApi => "conference_ended_via_api",
            ReasonParticipantLeft::ModeratorEndedConference => "moderator_ended_conference",
            ReasonParticipantLeft::ParticipantUpdatedViaApi => "participant_updated_via_api",
            ReasonParticipantLeft::ParticipantHungUp => "participant_hung_up",
            ReasonParticipantLeft::ParticipantAddFailed => "participant_add_failed",
        }
    }
}

impl fmt::Display for ReasonParticipantLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a participant's leg left the room on its own (the runtime saw it happen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// The participant hung up.
    HungUp,
    /// The call was given new TwiML or a new URL (Calls REST update), which takes it out.
    CallUpdated,
    /// A REST-created leg did not answer; its final call status (`busy`, `no-answer`,
    /// `failed`, `canceled`).
    AddFailed(CallStatus),
}

/// A status callback event: Twilio's `StatusCallbackEvent` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCallbackEvent {
    ConferenceStart,
    ConferenceEnd,
    ParticipantJoin,
    ParticipantLeave,
    ParticipantMute,
    ParticipantUnmute,
    ParticipantHold,
    ParticipantUnhold,
    ParticipantModify,
    ParticipantSpeechStart,
    ParticipantSpeechStop,
    AnnouncementEnd,
    AnnouncementFail,
}

impl StatusCallbackEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCallbackEvent::ConferenceStart => "conference-start",
            StatusCallbackEvent::ConferenceEnd => "conference-end",
            StatusCallbackEvent::ParticipantJoin => "participant-join",
            StatusCallbackEvent::ParticipantLeave => "participant-leave",
            StatusCallbackEvent::ParticipantMute => "participant-mute",
            StatusCallbackEvent::ParticipantUnmute => "participant-unmute",
            StatusCallbackEvent::ParticipantHold => "participant-hold",
            StatusCallbackEvent::ParticipantUnhold => "participant-unhold",
            StatusCallbackEvent::ParticipantModify => "participant-modify",
            StatusCallbackEvent::ParticipantSpeechStart => "participant-speech-start",
            StatusCallbackEvent::ParticipantSpeechStop => "participant-speech-stop",
            StatusCallbackEvent::AnnouncementEnd => "announcement-end",
            StatusCallbackEvent::AnnouncementFail => "announcement-fail",
        }
    }

    /// The `statusCallbackEvent` word that subscribes to this event.
    pub fn subscription(self) -> CallbackEvents {
        match self {
            StatusCallbackEvent::ConferenceStart => CallbackEvents::START,
            StatusCallbackEvent::ConferenceEnd => CallbackEvents::END,
            StatusCallbackEvent::ParticipantJoin => CallbackEvents::JOIN,
            StatusCallbackEvent::ParticipantLeave => CallbackEvents::LEAVE,
            StatusCallbackEvent::ParticipantMute | StatusCallbackEvent::ParticipantUnmute => {
                CallbackEvents::MUTE
            }
            StatusCallbackEvent::ParticipantHold | StatusCallbackEvent::ParticipantUnhold => {
                CallbackEvents::HOLD
            }
            StatusCallbackEvent::ParticipantModify => CallbackEvents::MODIFY,
            StatusCallbackEvent::ParticipantSpeechStart
            | StatusCallbackEvent::ParticipantSpeechStop => CallbackEvents::SPEAKER,
            StatusCallbackEvent::AnnouncementEnd | StatusCallbackEvent::AnnouncementFail => {
                CallbackEvents::ANNOUNCEMENT
            }
        }
    }
}

impl fmt::Display for StatusCallbackEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of `statusCallbackEvent` words: `start`, `end`, `join`, `leave`, `mute`, `hold`,
/// `modify`, `speaker`, `announcement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CallbackEvents(u16);

impl CallbackEvents {
    pub const NONE: CallbackEvents = CallbackEvents(0);
    pub const START: CallbackEvents = CallbackEvents(1);
    pub const END: CallbackEvents = CallbackEvents(1 << 1);
    pub const JOIN: CallbackEvents = CallbackEvents(1 << 2);
    pub const LEAVE: CallbackEvents = CallbackEvents(1 << 3);
    pub const MUTE: CallbackEvents = CallbackEvents(1 << 4);
    pub const HOLD: CallbackEvents = CallbackEvents(1 << 5);
    pub const MODIFY: CallbackEvents = CallbackEvents(1 << 6);
    pub const SPEAKER: CallbackEvents = CallbackEvents(1 << 7);
    pub const ANNOUNCEMENT: CallbackEvents = CallbackEvents(1 << 8);
    pub const ALL: CallbackEvents = CallbackEvents((1 << 9) - 1);
    /// The Participants API's default for `ConferenceStatusCallbackEvent`: `start end`.
    pub const API_DEFAULT: CallbackEvents = CallbackEvents(1 | 1 << 1);

    const WORDS: [(&'static str, CallbackEvents); 9] = [
        ("start", CallbackEvents::START),
        ("end", CallbackEvents::END),
        ("join", CallbackEvents::JOIN),
        ("leave", CallbackEvents::LEAVE),
        ("mute", CallbackEvents::MUTE),
        ("hold", CallbackEvents::HOLD),
        ("modify", CallbackEvents::MODIFY),
        ("speaker", CallbackEvents::SPEAKER),
        ("announcement", CallbackEvents::ANNOUNCEMENT),
    ];

    /// Parse words separated by spaces or commas, as TwiML and the REST API write them.
    pub fn parse(s: &str) -> Result<CallbackEvents, UnknownCallbackEvent> {
        s.split(|c: char| c.is_whitespace() || c == ',')
            .filter(|w| !w.is_empty())
            .try_fold(CallbackEvents::NONE, |set, word| {
                CallbackEvents::WORDS
                    .iter()
                    .find(|(w, _)| *w == word)
                    .map(|&(_, e)| set | e)
                    .ok_or_else(|| UnknownCallbackEvent(word.to_owned()))
            })
    }

    /// Whether this set subscribes to `event`.
    pub fn contains(self, event: StatusCallbackEvent) -> bool {
        self.0 & event.subscription().0 != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for CallbackEvents {
    type Output = CallbackEvents;
    fn bitor(self, rhs: CallbackEvents) -> CallbackEvents {
        CallbackEvents(self.0 | rhs.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown conference status callback event {0:?}")]
pub struct UnknownCallbackEvent(pub String);

/// Where the room's status callbacks go, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallbackConfig {
    pub url: String,
    pub method: HttpMethod,
    pub events: CallbackEvents,
}

/// Audio from a URL (a file or a TwiML document), as `waitUrl`, `holdUrl` and `announceUrl`
/// give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Music {
    pub url: String,
    pub method: HttpMethod,
}

/// `<Conference beep>`: when this participant's arrival and departure beep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Beep {
    #[default]
    True,
    False,
    OnEnter,
    OnExit,
}

impl Beep {
    pub fn as_str(self) -> &'static str {
        match self {
            Beep::True => "true",
            Beep::False => "false",
            Beep::OnEnter => "onEnter",
            Beep::OnExit => "onExit",
        }
    }

    pub fn on_enter(self) -> bool {
        matches!(self, Beep::True | Beep::OnEnter)
    }

    pub fn on_exit(self) -> bool {
        matches!(self, Beep::True | Beep::OnExit)
    }
}

/// Which beep to play into the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BeepKind {
    Enter,
    Exit,
}

/// What the runtime knows when it creates a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceConfig {
    pub sid: ConferenceSid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
}

/// A participant's `<Conference>` attributes (or the Participants API create parameters).
/// `Default` is Twilio's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantOptions {
    /// `participantLabel`: unique in the room, 1 to [`MAX_LABEL_CHARS`] characters.
    pub label: Option<String>,
    pub muted: bool,
    pub beep: Beep,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    /// With `call_sid_to_coach`, Twilio's `coach="CA..."` attribute, or the API's `Coaching`
    /// and `CallSidToCoach`.
    pub coaching: bool,
    pub call_sid_to_coach: Option<CallSid>,
    /// `waitUrl`/`waitMethod`; `None` is the default playlist.
    pub wait_music: Option<Music>,
    /// `maxParticipants`: used only from the room's first participant.
    pub max_participants: Option<u32>,
    /// `statusCallback*`: used only from the room's first participant.
    pub status_callback: Option<StatusCallbackConfig>,
}

impl Default for ParticipantOptions {
    fn default() -> ParticipantOptions {
        ParticipantOptions {
            label: None,
            muted: false,
            beep: Beep::True,
            start_conference_on_enter: true,
            end_conference_on_exit: false,
            coaching: false,
            call_sid_to_coach: None,
            wait_music: None,
            max_participants: None,
            status_callback: None,
        }
    }
}

/// A Participants REST update: each `Some` is a change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantUpdate {
    pub muted: Option<bool>,
    pub hold: Option<bool>,
    /// `HoldUrl`/`HoldMethod`.
    pub hold_music: Option<Music>,
    /// `WaitUrl`/`WaitMethod`.
    pub wait_music: Option<Music>,
    pub beep_on_exit: Option<bool>,
    pub end_conference_on_exit: Option<bool>,
    pub coaching: Option<bool>,
    pub call_sid_to_coach: Option<CallSid>,
}

/// How the Participants REST API names a participant: by CallSid or by label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ParticipantId {
    Call(CallSid),
    Label(String),
}

impl ParticipantId {
    /// A path segment: a CallSid when it is one, a label otherwise.
    pub fn parse(s: &str) -> ParticipantId {
        match s.parse::<CallSid>() {
            Ok(call_sid) => ParticipantId::Call(call_sid),
            Err(_) => ParticipantId::Label(s.to_owned()),
        }
    }
}

impl From<CallSid> for ParticipantId {
    fn from(call_sid: CallSid) -> ParticipantId {
        ParticipantId::Call(call_sid)
    }
}

/// A participant as the Participants resource shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Participant {
    pub call_sid: CallSid,
    pub label: Option<String>,
    pub status: ParticipantStatus,
    pub muted: bool,
    pub hold: bool,
    pub coaching: bool,
    pub call_sid_to_coach: Option<CallSid>,
    pub start_conference_on_enter: bool,
    pub end_conference_on_exit: bool,
    pub beep_on_enter: bool,
    pub beep_on_exit: bool,
    pub wait_music: Option<Music>,
    pub hold_music: Option<Music>,
    /// When it was added to the room (`date_created`).
    pub added_at: Instant,
    /// When its leg joined the room (answered); `None` while it is dialed.
    pub joined_at: Option<Instant>,
}

/// Where a participant's voice goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Audience {
    Nobody,
    /// Everyone who hears the room.
    Room,
    /// Only this participant (a coach's whisper).
    Only(CallSid),
}

/// What the mixer does with one connected participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MixEntry {
    pub call_sid: CallSid,
    /// Whether it hears the room's mix (plus whoever coaches it). False while the room waits
    /// to start and while the participant is held: it hears wait or hold music instead.
    pub hears_room: bool,
    pub speaks_to: Audience,
}

/// Commands the room gives the runtime, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceOutput {
    /// Play wait music to this participant until `StopWaitMusic` (or `Kick`).
    StartWaitMusic {
        call_sid: CallSid,
        music: Option<Music>,
    },
    StopWaitMusic {
        call_sid: CallSid,
    },
    /// Play hold music to this participant until `StopHoldMusic` (or `Kick`); replaces what
    /// was playing to it.
    StartHoldMusic {
        call_sid: CallSid,
        music: Option<Music>,
    },
    StopHoldMusic {
        call_sid: CallSid,
    },
    /// The room started: mix as [`Conference::mix_plan`] says.
    StartMixing,
    /// Who hears whom changed: apply [`Conference::mix_plan`] again.
    MixChanged,
    /// Play a beep into the room's mix.
    PlayBeep {
        beep: BeepKind,
    },
    /// Play an announcement to the room (`call_sid: None`) or to one participant; report
    /// [`Conference::handle_announcement_done`] with `id`.
    Announce {
        id: u64,
        call_sid: Option<CallSid>,
        music: Music,
    },
    /// Take this participant out of the room and end its `<Dial>` (or its REST-created leg).
    Kick {
        call_sid: CallSid,
    },
    /// Send this status callback. `params` lack only `Timestamp`.
    StatusCallback {
        url: String,
        method: HttpMethod,
        event: StatusCallbackEvent,
        call_sid: Option<CallSid>,
        sequence_number: u64,
        params: Vec<(String, String)>,
    },
    /// The room is over. Always the last output, exactly once.
    Ended {
        reason: ReasonConferenceEnded,
        call_sid: Option<CallSid>,
    },
}

/// Why the room refused an input: the app's mistake (`DuplicateLabel`, `InvalidLabel`,
/// `InvalidMaxParticipants`, coaching), the room's state (`Ended`, `Full`, `NotConnected`),
/// or a report that raced another (`UnknownParticipant`, `AlreadyJoined`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConferenceError {
    #[error("the conference is over")]
    Ended,
    #[error("the conference is full ({max} participants)")]
    Full { max: u32 },
    #[error("call {0} is already a participant")]
    AlreadyJoined(CallSid),
    #[error("no such participant")]
    UnknownParticipant,
    #[error("participant {0} has not joined yet")]
    NotConnected(CallSid),
    #[error("participant label {0:?} is already in use")]
    DuplicateLabel(String),
    #[error("a participant label is 1 to {MAX_LABEL_CHARS} characters, got {0}")]
    InvalidLabel(usize),
    #[error("maxParticipants is {MIN_MAX_PARTICIPANTS} to {DEFAULT_MAX_PARTICIPANTS}, got {0}")]
    InvalidMaxParticipants(u32),
    #[error("coaching needs a call to coach")]
    CoachingWithoutTarget,
    #[error("call {0} to coach is not connected to this conference")]
    CoachTargetNotFound(CallSid),
}

impl ConferenceError {
    /// The Twilio error code to report (with `Notify`) for this refusal, when it has one.
    pub fn twilio_code(&self) -> Option<u32> {
        match self {
            ConferenceError::Full { .. } => Some(ERR_FULL),
            ConferenceError::DuplicateLabel(_) => Some(ERR_DUPLICATE_LABEL),
            ConferenceError::CoachTargetNotFound(_) => Some(ERR_COACH),
            _ => None,
        }
    }
}

/// How a participant comes to leave.
#[derive(Debug, Clone, Copy)]
enum Exit {
    Left(LeaveReason),
    /// REST delete.
    Kicked,
}

/// One conference room's state machine. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Conference {
    sid: ConferenceSid,
    account_sid: AccountSid,
    friendly_name: String,
    status: ConferenceStatus,
    created_at: Instant,
    started_at: Option<Instant>,
    ended_at: Option<Instant>,
    reason_ended: Option<ReasonConferenceEnded>,
    call_sid_ending: Option<CallSid>,
    /// Set by the first participant: later ones cannot change the settings below.
    settled: bool,
    max_participants: u32,
    status_callback: Option<StatusCallbackConfig>,
    /// In order of arrival; at most `max_participants`, so linear searches are cheap.
    participants: Vec<Participant>,
    sequence_number: u64,
    next_announcement: u64,
    /// Announcements playing: id -> (participant, URL).
    announcements: HashMap<u64, (Option<CallSid>, String)>,
    outputs: VecDeque<ConferenceOutput>,
}

impl Conference {
    pub fn new(now: Instant, config: ConferenceConfig) -> Conference {
        Conference {
            sid: config.sid,
            account_sid: config.account_sid,
            friendly_name: config.friendly_name,
            status: ConferenceStatus::Init,
            created_at: now,
            started_at: None,
            ended_at: None,
            reason_ended: None,
            call_sid_ending: None,
            settled: false,
            max_participants: DEFAULT_MAX_PARTICIPANTS,
            status_callback: None,
            participants: Vec::new(),
            sequence_number: 0,
            next_announcement: 0,
            announcements: HashMap::new(),
            outputs: VecDeque::new(),
        }
    }

    pub fn sid(&self) -> ConferenceSid {
        self.sid
    }

    pub fn account_sid(&self) -> AccountSid {
        self.account_sid
    }

    pub fn friendly_name(&self) -> &str {
        &self.friendly_name
    }

    pub fn status(&self) -> ConferenceStatus {
        self.status
    }

    pub fn is_ended(&self) -> bool {
        self.status == ConferenceStatus::Completed
    }

    pub fn created_at(&self) -> Instant {
        self.created_at
    }

    pub fn started_at(&self) -> Option<Instant> {
        self.started_at
    }

    pub fn ended_at(&self) -> Option<Instant> {
        self.ended_at
    }

    pub fn reason_ended(&self) -> Option<ReasonConferenceEnded> {
        self.reason_ended
    }

    /// `call_sid_ending_conference`.
    pub fn call_sid_ending(&self) -> Option<CallSid> {
        self.call_sid_ending
    }

    pub fn max_participants(&self) -> u32 {
        self.max_participants
    }

    pub fn status_callback(&self) -> Option<&StatusCallbackConfig> {
        self.status_callback.as_ref()
    }

    /// The participants, in order of arrival.
    pub fn participants(&self) -> &[Participant] {
        &self.participants
    }

    pub fn participant(&self, who: &ParticipantId) -> Option<&Participant> {
        self.index(who).and_then(|i| self.participants.get(i))
    }

    /// The next command, or `None` when all are drained.
    pub fn poll_output(&mut self) -> Option<ConferenceOutput> {
        self.outputs.pop_front()
    }

    /// Who hears whom, for each connected participant in order of arrival.
    pub fn mix_plan(&self) -> Vec<MixEntry> {
        self.participants
            .iter()
            .filter(|p| p.status == ParticipantStatus::Connected)
            .map(|p| {
                let hears_room = self.hears_room(p);
                let speaks_to = if !hears_room || p.muted {
                    Audience::Nobody
                } else if p.coaching {
                    match p.call_sid_to_coach.and_then(|c| self.by_call(c)) {
                        Some(t) if t.call_sid != p.call_sid && self.hears_room(t) => {
                            Audience::Only(t.call_sid)
                        }
                        _ => Audience::Nobody,
                    }
                } else {
                    Audience::Room
                };
                MixEntry {
                    call_sid: p.call_sid,
                    hears_room,
                    speaks_to,
                }
            })
            .collect()
    }

    /// A call executing `<Dial><Conference>` joins (it is answered).
    pub fn handle_join(
        &mut self,
        now: Instant,
        call_sid: CallSid,
        options: ParticipantOptions,
    ) -> Result<(), ConferenceError> {
        self.add(now, call_sid, options, ParticipantStatus::Connected)
    }

    /// A Participants REST create: the runtime is dialing `call_sid`, which takes a seat now
    /// and joins at [`Conference::handle_answered`].
    pub fn handle_dialing(
        &mut self,
        now: Instant,
        call_sid: CallSid,
        options: ParticipantOptions,
    ) -> Result<(), ConferenceError> {
        self.add(now, call_sid, options, ParticipantStatus::Connecting)
    }

    /// The dialed participant's phone rings.
    pub fn handle_ringing(
        &mut self,
        _now: Instant,
        call_sid: CallSid,
    ) -> Result<(), ConferenceError> {
        self.check_live()?;
        let i = self
            .index_of_call(call_sid)
            .ok_or(ConferenceError::UnknownParticipant)?;
        let p = &mut self.participants[i];
        if p.status == ParticipantStatus::Connected {
            return Err(ConferenceError::AlreadyJoined(call_sid));
        }
        p.status = ParticipantStatus::Ringing;
        Ok(())
    }

    /// The dialed participant answered: it joins.
    pub fn handle_answered(
        &mut self,
        now: Instant,
        call_sid: CallSid,
    ) -> Result<(), ConferenceError> {
        self.check_live()?;
        let i = self
            .index_of_call(call_sid)
            .ok_or(ConferenceError::UnknownParticipant)?;
        if self.participants[i].status == ParticipantStatus::Connected {
            return Err(ConferenceError::AlreadyJoined(call_sid));
        }
        self.connect(now, i);
        Ok(())
    }

    /// The participant's leg left on its own.
    pub fn handle_leave(
        &mut self,
        now: Instant,
        call_sid: CallSid,
        reason: LeaveReason,
    ) -> Result<(), ConferenceError> {
        self.check_live()?;
        let i = self
            .index_of_call(call_sid)
            .ok_or(ConferenceError::UnknownParticipant)?;
        self.remove(now, i, Exit::Left(reason));
        Ok(())
    }

    /// The media layer saw the participant start (`true`) or stop speaking.
    pub fn handle_speech(
        &mut self,
        _now: Instant,
        call_sid: CallSid,
        speaking: bool,
    ) -> Result<(), ConferenceError> {
        self.check_live()?;
        let p = self
            .by_call(call_sid)
            .ok_or(ConferenceError::UnknownParticipant)?;
        if p.status != ParticipantStatus::Connected {
            return Err(ConferenceError::NotConnected(call_sid));
        }
        let params = participant_params(p);
        let event = if speaking {
            StatusCallbackEvent::ParticipantSpeechStart
        } else {
            StatusCallbackEvent::ParticipantSpeechStop
        };
        self.emit(event, Some(call_sid), params);
        Ok(())
    }

    /// The announcement `id` finished playing (`Ok`) or could not be played (`Err(reason)`).
    /// Unknown ids (and reports after the room ended) are ignored.
    pub fn handle_announcement_done(&mut self, _now: Instant, id: u64, result: Result<(), String>) {
        if self.is_ended() {
            return;
        }
        let Some((call_sid, url)) = self.announcements.remove(&id) else {
            return;
        };
        // Twilio adds the participant's parameters only while it is still in the room.
        let mut params = call_sid
            .and_then(|c| self.by_call(c))
            .map(participant_params)
            .unwrap_or_default();
        params.push(("AnnounceUrl".into(), url));
        let event = match result {
            Ok(()) => StatusCallbackEvent::AnnouncementEnd,
            Err(reason) => {
                params.push(("ReasonAnnouncementFailed".into(), reason));
                StatusCallbackEvent::AnnouncementFail
            }
        };
        self.emit(event, call_sid, params);
    }

    /// A Participants REST update (by CallSid or label).
    pub fn update_participant(
        &mut self,
        _now: Instant,
        who: &ParticipantId,
        changes: ParticipantUpdate,
    ) -> Result<(), ConferenceError> {
        self.check_live()?;
        let i = self.index(who).ok_or(ConferenceError::UnknownParticipant)?;
        let p = &self.participants[i];
        let call_sid = p.call_sid;
        if p.status != ParticipantStatus::Connected {
            return Err(ConferenceError::NotConnected(call_sid));
        }
        let coaching = changes.coaching.unwrap_or(p.coaching);
        let coach_target = changes.call_sid_to_coach.or(p.call_sid_to_coach);
        let coaching_changed = coaching != p.coaching || coach_target != p.call_sid_to_coach;
        if coaching_changed && coaching {
            self.check_coach_target(call_sid, coach_target)?;
        }

        let init = self.status == ConferenceStatus::Init;
        let in_progress = self.status == ConferenceStatus::InProgress;
        let p = &mut self.participants[i];
        let mut events = Vec::new();
        let mut mix_changed = false;
        let mut modified = false;

        if let Some(muted) = changes.muted.filter(|&m| m != p.muted) {
            p.muted = muted;
            mix_changed = true;
            events.push(if muted {
                StatusCallbackEvent::ParticipantMute
            } else {
                StatusCallbackEvent::ParticipantUnmute
            });
        }

        // New music first, so that a hold change in the same update plays it.
        let new_hold_music = changes.hold_music.is_some();
        if let Some(music) = changes.hold_music {
            p.hold_music = Some(music);
        }
        let new_wait_music = changes
            .wait_music
            .filter(|m| p.wait_music.as_ref() != Some(m));
        let wait_music_changed = new_wait_music.is_some();
        if let Some(music) = new_wait_music {
            p.wait_music = Some(music);
            modified = true;
        }
        if let Some(hold) = changes.hold.filter(|&h| h != p.hold) {
            p.hold = hold;
            mix_changed = true;
            if hold {
                if init {
                    self.outputs
                        .push_back(ConferenceOutput::StopWaitMusic { call_sid });
                }
                self.outputs.push_back(ConferenceOutput::StartHoldMusic {
                    call_sid,
                    music: p.hold_music.clone(),
                });
                events.push(StatusCallbackEvent::ParticipantHold);
            } else {
                self.outputs
                    .push_back(ConferenceOutput::StopHoldMusic { call_sid });
                if init {
                    self.outputs.push_back(ConferenceOutput::StartWaitMusic {
                        call_sid,
                        music: p.wait_music.clone(),
                    });
                }
                events.push(StatusCallbackEvent::ParticipantUnhold);
            }
        } else if new_hold_music && p.hold {
            self.outputs.push_back(ConferenceOutput::StartHoldMusic {
                call_sid,
                music: p.hold_music.clone(),
            });
        } else if wait_music_changed && init && !p.hold {
            self.outputs.push_back(ConferenceOutput::StartWaitMusic {
                call_sid,
                music: p.wait_music.clone(),
            });
        }

        if let Some(beep) = changes.beep_on_exit.filter(|&b| b != p.beep_on_exit) {
            p.beep_on_exit = beep;
            modified = true;
        }
        if let Some(end) = changes
            .end_conference_on_exit
            .filter(|&e| e != p.end_conference_on_exit)
        {
            p.end_conference_on_exit = end;
            modified = true;
        }
        if coaching_changed {
            p.coaching = coaching;
            p.call_sid_to_coach = coach_target;
            modified = true;
            mix_changed = true;
        }
        if modified {
            events.push(StatusCallbackEvent::ParticipantModify);
        }

        if mix_changed && in_progress {
            self.outputs.push_back(ConferenceOutput::MixChanged);
        }
        let params = participant_params(&self.participants[i]);
        for event in events {
            self.emit(event, Some(call_sid), params.clone());
        }
        Ok(())
    }

    /// A Participants REST delete: take the participant out of the room.
    pub fn kick(&mut self, now: Instant, who: &ParticipantId) -> Result<(), ConferenceError> {
        self.check_live()?;
        let i = self.index(who).ok_or(ConferenceError::UnknownParticipant)?;
        let call_sid = self.participants[i].call_sid;
        self.outputs.push_back(ConferenceOutput::Kick { call_sid });
        self.remove(now, i, Exit::Kicked);
        Ok(())
    }

    /// A Conferences REST update with `Status=completed`: everyone is taken out.
    pub fn end(&mut self, now: Instant) -> Result<(), ConferenceError> {
        self.check_live()?;
        self.kick_all(ReasonParticipantLeft::ConferenceEndedViaApi);
        self.finish(now, ReasonConferenceEnded::ConferenceEndedViaApi, None);
        Ok(())
    }

    /// Play `music` to the whole room (`to: None`) or to one participant (a Conferences or
    /// Participants REST update with `AnnounceUrl`). Returns the id the runtime reports with.
    pub fn announce(
        &mut self,
        _now: Instant,
        to: Option<&ParticipantId>,
        music: Music,
    ) -> Result<u64, ConferenceError> {
        self.check_live()?;
        let call_sid = match to {
            None => None,
            Some(who) => {
                let p = self
                    .index(who)
                    .and_then(|i| self.participants.get(i))
                    .ok_or(ConferenceError::UnknownParticipant)?;
                if p.status != ParticipantStatus::Connected {
                    return Err(ConferenceError::NotConnected(p.call_sid));
                }
                Some(p.call_sid)
            }
        };
        self.next_announcement += 1;
        let id = self.next_announcement;
        self.announcements.insert(id, (call_sid, music.url.clone()));
        self.outputs.push_back(ConferenceOutput::Announce {
            id,
            call_sid,
            music,
        });
        Ok(id)
    }

    fn check_live(&self) -> Result<(), ConferenceError> {
        if self.is_ended() {
            return Err(ConferenceError::Ended);
        }
        Ok(())
    }

    fn index(&self, who: &ParticipantId) -> Option<usize> {
        match who {
            ParticipantId::Call(call_sid) => self.index_of_call(*call_sid),
            ParticipantId::Label(label) => self
                .participants
                .iter()
                .position(|p| p.label.as_deref() == Some(label.as_str())),
        }
    }

    fn index_of_call(&self, call_sid: CallSid) -> Option<usize> {
        self.participants
            .iter()
            .position(|p| p.call_sid == call_sid)
    }

    fn by_call(&self, call_sid: CallSid) -> Option<&Participant> {
        self.participants.iter().find(|p| p.call_sid == call_sid)
    }

    fn hears_room(&self, p: &Participant) -> bool {
        self.status == ConferenceStatus::InProgress
            && p.status == ParticipantStatus::Connected
            && !p.hold
    }

    fn check_coach_target(
        &self,
        coach: CallSid,
        target: Option<CallSid>,
    ) -> Result<(), ConferenceError> {
        let target = target.ok_or(ConferenceError::CoachingWithoutTarget)?;
        match self.by_call(target) {
            Some(t) if t.call_sid != coach && t.status == ParticipantStatus::Connected => Ok(()),
            _ => Err(ConferenceError::CoachTargetNotFound(target)),
        }
    }

    fn add(
        &mut self,
        now: Instant,
        call_sid: CallSid,
        options: ParticipantOptions,
        status: ParticipantStatus,
    ) -> Result<(), ConferenceError> {
        self.check_live()?;
        if self.index_of_call(call_sid).is_some() {
            return Err(ConferenceError::AlreadyJoined(call_sid));
        }
        if let Some(label) = &options.label {
            let chars = label.chars().count();
            if chars == 0 || chars > MAX_LABEL_CHARS {
                return Err(ConferenceError::InvalidLabel(chars));
            }
            if self.index(&ParticipantId::Label(label.clone())).is_some() {
                return Err(ConferenceError::DuplicateLabel(label.clone()));
            }
        }
        let max = if self.settled {
            self.max_participants
        } else {
            let max = options.max_participants.unwrap_or(DEFAULT_MAX_PARTICIPANTS);
            if !(MIN_MAX_PARTICIPANTS..=DEFAULT_MAX_PARTICIPANTS).contains(&max) {
                return Err(ConferenceError::InvalidMaxParticipants(max));
            }
            max
        };
        // max is at most DEFAULT_MAX_PARTICIPANTS, so the conversion cannot truncate.
        if self.participants.len() >= max as usize {
            return Err(ConferenceError::Full { max });
        }
        if options.coaching {
            self.check_coach_target(call_sid, options.call_sid_to_coach)?;
        }

        if !self.settled {
            self.settled = true;
            self.max_participants = max;
            self.status_callback = options.status_callback;
        }
        self.participants.push(Participant {
            call_sid,
            label: options.label,
            status,
            muted: options.muted,
            hold: false,
            coaching: options.coaching,
            call_sid_to_coach: options.call_sid_to_coach,
            start_conference_on_enter: options.start_conference_on_enter,
            end_conference_on_exit: options.end_conference_on_exit,
            beep_on_enter: options.beep.on_enter(),
            beep_on_exit: options.beep.on_exit(),
            wait_music: options.wait_music,
            hold_music: None,
            added_at: now,
            joined_at: None,
        });
        if status == ParticipantStatus::Connected {
            self.connect(now, self.participants.len() - 1);
        }
        Ok(())
    }

    /// Participant `i` joins the room.
    fn connect(&mut self, now: Instant, i: usize) {
        let p = &mut self.participants[i];
        p.status = ParticipantStatus::Connected;
        p.joined_at = Some(now);
        let call_sid = p.call_sid;
        let beep = p.beep_on_enter;
        let wait_music = p.wait_music.clone();
        let params = participant_params(p);

        match self.status {
            ConferenceStatus::Init if self.may_start() => {
                let waiting: Vec<CallSid> = self
                    .participants
                    .iter()
                    .filter(|p| {
                        p.call_sid != call_sid
                            && p.status == ParticipantStatus::Connected
                            && !p.hold
                    })
                    .map(|p| p.call_sid)
                    .collect();
                for call_sid in waiting {
                    self.outputs
                        .push_back(ConferenceOutput::StopWaitMusic { call_sid });
                }
                self.status = ConferenceStatus::InProgress;
                self.started_at = Some(now);
                self.outputs.push_back(ConferenceOutput::StartMixing);
                if beep {
                    self.beep(BeepKind::Enter, Some(call_sid));
                }
                self.emit(StatusCallbackEvent::ParticipantJoin, Some(call_sid), params);
                self.emit(StatusCallbackEvent::ConferenceStart, None, Vec::new());
            }
            ConferenceStatus::Init => {
                self.outputs.push_back(ConferenceOutput::StartWaitMusic {
                    call_sid,
                    music: wait_music,
                });
                self.emit(StatusCallbackEvent::ParticipantJoin, Some(call_sid), params);
            }
            ConferenceStatus::InProgress => {
                self.outputs.push_back(ConferenceOutput::MixChanged);
                if beep {
                    self.beep(BeepKind::Enter, Some(call_sid));
                }
                self.emit(StatusCallbackEvent::ParticipantJoin, Some(call_sid), params);
            }
            // Inputs are refused once the room is over.
            ConferenceStatus::Completed => {}
        }
    }

    /// Twilio: at least two participants, at least one with `startConferenceOnEnter`.
    fn may_start(&self) -> bool {
        let mut connected = self
            .participants
            .iter()
            .filter(|p| p.status == ParticipantStatus::Connected);
        let count = connected.clone().count();
        count >= 2 && connected.any(|p| p.start_conference_on_enter)
    }

    /// Beep into the room if someone other than `except` hears it.
    fn beep(&mut self, beep: BeepKind, except: Option<CallSid>) {
        let heard = self
            .participants
            .iter()
            .any(|p| Some(p.call_sid) != except && self.hears_room(p));
        if heard {
            self.outputs.push_back(ConferenceOutput::PlayBeep { beep });
        }
    }

    /// Participant `i` goes; the room may end with it.
    fn remove(&mut self, now: Instant, i: usize, exit: Exit) {
        let p = self.participants.remove(i);
        let connected = p.status == ParticipantStatus::Connected;
        let kicked = matches!(exit, Exit::Kicked);
        let (reason, call_status) = match exit {
            Exit::Left(LeaveReason::HungUp) => (
                ReasonParticipantLeft::ParticipantHungUp,
                CallStatus::Completed,
            ),
            Exit::Left(LeaveReason::CallUpdated) => (
                ReasonParticipantLeft::ParticipantUpdatedViaApi,
                CallStatus::InProgress,
            ),
            Exit::Left(LeaveReason::AddFailed(status)) => {
                (ReasonParticipantLeft::ParticipantAddFailed, status)
            }
            Exit::Kicked => (
                ReasonParticipantLeft::ParticipantUpdatedViaApi,
                taken_out_status(&p),
            ),
        };
        let ends_room = connected && p.end_conference_on_exit;
        // The room goes on without it. (A coach whose target left now speaks to nobody:
        // MixChanged covers that too.)
        if connected
            && !ends_room
            && !self.participants.is_empty()
            && self.status == ConferenceStatus::InProgress
        {
            self.outputs.push_back(ConferenceOutput::MixChanged);
            if p.beep_on_exit {
                self.beep(BeepKind::Exit, None);
            }
        }
        self.emit_leave(&p, reason, call_status);

        if ends_room {
            self.kick_all(ReasonParticipantLeft::ModeratorEndedConference);
            let reason = if kicked {
                ReasonConferenceEnded::ParticipantWithEndConferenceOnExitKicked
            } else {
                ReasonConferenceEnded::ParticipantWithEndConferenceOnExitLeft
            };
            self.finish(now, reason, Some(&p));
        } else if self.participants.is_empty() {
            let reason = if kicked {
                ReasonConferenceEnded::LastParticipantKicked
            } else {
                ReasonConferenceEnded::LastParticipantLeft
            };
            self.finish(now, reason, Some(&p));
        }
    }

    /// Take everyone out, each with its `Kick` and `participant-leave`.
    fn kick_all(&mut self, reason: ReasonParticipantLeft) {
        for p in std::mem::take(&mut self.participants) {
            self.outputs.push_back(ConferenceOutput::Kick {
                call_sid: p.call_sid,
            });
            self.emit_leave(&p, reason, taken_out_status(&p));
        }
    }

    fn emit_leave(&mut self, p: &Participant, reason: ReasonParticipantLeft, status: CallStatus) {
        let mut params = participant_params(p);
        params.push(("ParticipantCallStatus".into(), status.as_str().into()));
        params.push(("ReasonParticipantLeft".into(), reason.as_str().into()));
        self.emit(
            StatusCallbackEvent::ParticipantLeave,
            Some(p.call_sid),
            params,
        );
    }

    fn finish(&mut self, now: Instant, reason: ReasonConferenceEnded, by: Option<&Participant>) {
        let call_sid = by.map(|p| p.call_sid);
        self.status = ConferenceStatus::Completed;
        self.ended_at = Some(now);
        self.reason_ended = Some(reason);
        self.call_sid_ending = call_sid;
        self.announcements.clear();
        let mut params = Vec::new();
        if let Some(p) = by {
            params.push(("CallSidEndingConference".into(), p.call_sid.to_string()));
            if let Some(label) = &p.label {
                params.push(("ParticipantLabelEndingConference".into(), label.clone()));
            }
        }
        params.push(("ReasonConferenceEnded".into(), reason.as_str().into()));
        params.push(("Reason".into(), reason.sentence(call_sid)));
        self.emit(StatusCallbackEvent::ConferenceEnd, None, params);
        self.outputs
            .push_back(ConferenceOutput::Ended { reason, call_sid });
    }

    /// Queue a status callback if the room's subscription asks for `event`.
    fn emit(
        &mut self,
        event: StatusCallbackEvent,
        call_sid: Option<CallSid>,
        tail: Vec<(String, String)>,
    ) {
        let Some(callback) = &self.status_callback else {
            return;
        };
        if !callback.events.contains(event) {
            return;
        }
        self.sequence_number += 1;
        let mut params = vec![
            ("ConferenceSid".to_string(), self.sid.to_string()),
            ("FriendlyName".to_string(), self.friendly_name.clone()),
            ("AccountSid".to_string(), self.account_sid.to_string()),
            (
                "SequenceNumber".to_string(),
                self.sequence_number.to_string(),
            ),
            (
                "StatusCallbackEvent".to_string(),
                event.as_str().to_string(),
            ),
        ];
        params.extend(tail);
        self.outputs.push_back(ConferenceOutput::StatusCallback {
            url: callback.url.clone(),
            method: callback.method,
            event,
            call_sid,
            sequence_number: self.sequence_number,
            params,
        });
    }
}

/// `ParticipantCallStatus` of a participant the room takes out: its call goes on, or its
/// unanswered leg is canceled.
fn taken_out_status(p: &Participant) -> CallStatus {
    if p.status == ParticipantStatus::Connected {
        CallStatus::InProgress
    } else {
        CallStatus::Canceled
    }
}

fn flag(b: bool) -> String {
    if b { "true" } else { "false" }.to_string()
}

/// The participant parameters of a status callback.
fn participant_params(p: &Participant) -> Vec<(String, String)> {
    let mut params = vec![
        ("CallSid".to_string(), p.call_sid.to_string()),
        ("Muted".to_string(), flag(p.muted)),
        ("Hold".to_string(), flag(p.hold)),
        ("Coaching".to_string(), flag(p.coaching)),
        (
            "EndConferenceOnExit".to_string(),
            flag(p.end_conference_on_exit),
        ),
        (
            "StartConferenceOnEnter".to_string(),
            flag(p.start_conference_on_enter),
        ),
    ];
    if let Some(label) = &p.label {
        params.push(("ParticipantLabel".to_string(), label.clone()));
    }
    params
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    use ConferenceOutput as Out;
    use StatusCallbackEvent as Ev;

    const CALLBACK_URL: &str = "https://app.test/conference-events";

    fn call(n: u8) -> CallSid {
        format!("CA{n:032x}").parse().expect("valid SID")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn subscribed(events: CallbackEvents) -> Option<StatusCallbackConfig> {
        Some(StatusCallbackConfig {
            url: CALLBACK_URL.into(),
            method: HttpMethod::Post,
            events,
        })
    }

    /// The options of a room's first participant: default attributes, all events subscribed.
    fn first() -> ParticipantOptions {
        ParticipantOptions {
            status_callback: subscribed(CallbackEvents::ALL),
            ..ParticipantOptions::default()
        }
    }

    fn waiting() -> ParticipantOptions {
        ParticipantOptions {
            start_conference_on_enter: false,
            ..ParticipantOptions::default()
        }
    }

    fn labeled(label: &str) -> ParticipantOptions {
        ParticipantOptions {
            label: Some(label.into()),
            ..ParticipantOptions::default()
        }
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A room on a simulated clock.
    struct Room {
        conf: Conference,
        t0: Instant,
    }

    impl Room {
        fn new() -> Room {
            let t0 = Instant::now();
            let conf = Conference::new(
                t0,
                ConferenceConfig {
                    sid: format!("CF{:032x}", 1).parse().expect("valid SID"),
                    account_sid: format!("AC{:032x}", 1).parse().expect("valid SID"),
                    friendly_name: "Room 1234".into(),
                },
            );
            Room { conf, t0 }
        }

        fn at(&self, s: u64) -> Instant {
            self.t0 + secs(s)
        }

        fn drain(&mut self) -> Vec<ConferenceOutput> {
            std::iter::from_fn(|| self.conf.poll_output()).collect()
        }

        /// Join at second `s` and forget the outputs.
        fn join(&mut self, s: u64, n: u8, options: ParticipantOptions) {
            let now = self.at(s);
            self.conf
                .handle_join(now, call(n), options)
                .expect("joined");
            self.drain();
        }
    }

    /// The status callbacks among `outputs`, as (event, call, sequence number).
    fn callbacks(outputs: &[ConferenceOutput]) -> Vec<(StatusCallbackEvent, Option<CallSid>, u64)> {
        outputs
            .iter()
            .filter_map(|o| match o {
                Out::StatusCallback {
                    event,
                    call_sid,
                    sequence_number,
                    ..
                } => Some((*event, *call_sid, *sequence_number)),
                _ => None,
            })
            .collect()
    }

    /// The outputs that are not status callbacks.
    fn commands(outputs: &[ConferenceOutput]) -> Vec<ConferenceOutput> {
        outputs
            .iter()
            .filter(|o| !matches!(o, Out::StatusCallback { .. }))
            .cloned()
            .collect()
    }

    fn params_of(
        outputs: &[ConferenceOutput],
        wanted: StatusCallbackEvent,
    ) -> Vec<(String, String)> {
        outputs
            .iter()
            .find_map(|o| match o {
                Out::StatusCallback { event, params, .. } if *event == wanted => {
                    Some(params.clone())
                }
                _ => None,
            })
            .expect("callback sent")
    }

    #[test]
    fn a_moderated_room_waits_for_the_moderator_then_starts() {
        let mut room = Room::new();
        let now = room.at(0);
        room.conf
            .handle_join(
                now,
                call(1),
                ParticipantOptions {
                    start_conference_on_enter: false,
                    ..first()
                },
            )
            .expect("joined");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![Out::StartWaitMusic {
                call_sid: call(1),
                music: None
            }]
        );
        assert_eq!(
            callbacks(&out),
            vec![(Ev::ParticipantJoin, Some(call(1)), 1)]
        );

        let music = Music {
            url: "https://app.test/wait.xml".into(),
            method: HttpMethod::Get,
        };
        let now = room.at(5);
        room.conf
            .handle_join(
                now,
                call(2),
                ParticipantOptions {
                    wait_music: Some(music.clone()),
                    ..waiting()
                },
            )
            .expect("joined");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![Out::StartWaitMusic {
                call_sid: call(2),
                music: Some(music)
            }]
        );
        assert_eq!(room.conf.status(), ConferenceStatus::Init);
        assert!(room
            .conf
            .mix_plan()
            .iter()
            .all(|m| !m.hears_room && m.speaks_to == Audience::Nobody));

        let now = room.at(30);
        room.conf
            .handle_join(now, call(3), ParticipantOptions::default())
            .expect("moderator joined");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::StopWaitMusic { call_sid: call(1) },
                Out::StopWaitMusic { call_sid: call(2) },
                Out::StartMixing,
                Out::PlayBeep {
                    beep: BeepKind::Enter
                },
            ]
        );
        assert_eq!(
            callbacks(&out),
            vec![
                (Ev::ParticipantJoin, Some(call(3)), 3),
                (Ev::ConferenceStart, None, 4)
            ]
        );
        assert_eq!(room.conf.status(), ConferenceStatus::InProgress);
        assert_eq!(room.conf.started_at(), Some(room.at(30)));
        assert!(room
            .conf
            .mix_plan()
            .iter()
            .all(|m| m.hears_room && m.speaks_to == Audience::Room));
        let start = params_of(&out, Ev::ConferenceStart);
        assert_eq!(param(&start, "FriendlyName"), Some("Room 1234"));
        assert_eq!(
            param(&start, "StatusCallbackEvent"),
            Some("conference-start")
        );
        assert_eq!(param(&start, "SequenceNumber"), Some("4"));
        assert_eq!(param(&start, "CallSid"), None);
    }

    #[test]
    fn a_lone_participant_waits_until_a_second_one_joins() {
        let mut room = Room::new();
        room.join(0, 1, first());
        assert_eq!(room.conf.status(), ConferenceStatus::Init);
        let now = room.at(3);
        room.conf
            .handle_join(now, call(2), ParticipantOptions::default())
            .expect("joined");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::StopWaitMusic { call_sid: call(1) },
                Out::StartMixing,
                Out::PlayBeep {
                    beep: BeepKind::Enter
                }
            ]
        );
        assert_eq!(room.conf.status(), ConferenceStatus::InProgress);
    }

    #[test]
    fn waiting_participants_alone_never_start_the_room() {
        let mut room = Room::new();
        room.join(0, 1, ParticipantOptions { ..waiting() });
        room.join(1, 2, waiting());
        room.join(2, 3, waiting());
        assert_eq!(room.conf.status(), ConferenceStatus::Init);
        assert_eq!(room.conf.participants().len(), 3);
    }

    #[test]
    fn end_conference_on_exit_ends_it_for_everyone_with_the_reason_and_who() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(
            1,
            2,
            ParticipantOptions {
                end_conference_on_exit: true,
                label: Some("agent".into()),
                ..ParticipantOptions::default()
            },
        );
        room.join(2, 3, ParticipantOptions::default());
        let now = room.at(60);
        room.conf
            .handle_leave(now, call(2), LeaveReason::HungUp)
            .expect("was in the room");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::Kick { call_sid: call(1) },
                Out::Kick { call_sid: call(3) },
                Out::Ended {
                    reason: ReasonConferenceEnded::ParticipantWithEndConferenceOnExitLeft,
                    call_sid: Some(call(2))
                }
            ]
        );
        assert_eq!(
            out.last(),
            Some(&Out::Ended {
                reason: ReasonConferenceEnded::ParticipantWithEndConferenceOnExitLeft,
                call_sid: Some(call(2))
            })
        );
        let cbs = callbacks(&out);
        let events: Vec<_> = cbs.iter().map(|(e, c, _)| (*e, *c)).collect();
        assert_eq!(
            events,
            vec![
                (Ev::ParticipantLeave, Some(call(2))),
                (Ev::ParticipantLeave, Some(call(1))),
                (Ev::ParticipantLeave, Some(call(3))),
                (Ev::ConferenceEnd, None),
            ]
        );
        let end = params_of(&out, Ev::ConferenceEnd);
        assert_eq!(
            param(&end, "ReasonConferenceEnded"),
            Some("participant-with-end-conference-on-exit-left")
        );
        assert_eq!(
            param(&end, "CallSidEndingConference"),
            Some(call(2).as_str())
        );
        assert_eq!(
            param(&end, "ParticipantLabelEndingConference"),
            Some("agent")
        );
        assert!(param(&end, "Reason").is_some_and(|r| r.contains("endConferenceOnExit")));
        let leaves: Vec<(Option<&str>, Option<&str>)> = out
            .iter()
            .filter_map(|o| match o {
                Out::StatusCallback {
                    event: Ev::ParticipantLeave,
                    params,
                    ..
                } => Some((
                    param(params, "ReasonParticipantLeft"),
                    param(params, "ParticipantCallStatus"),
                )),
                _ => None,
            })
            .collect();
        assert_eq!(
            leaves,
            vec![
                (Some("participant_hung_up"), Some("completed")),
                (Some("moderator_ended_conference"), Some("in-progress")),
                (Some("moderator_ended_conference"), Some("in-progress")),
            ]
        );

        assert_eq!(room.conf.status(), ConferenceStatus::Completed);
        assert_eq!(room.conf.ended_at(), Some(room.at(60)));
        assert_eq!(
            room.conf.reason_ended(),
            Some(ReasonConferenceEnded::ParticipantWithEndConferenceOnExitLeft)
        );
        assert_eq!(room.conf.call_sid_ending(), Some(call(2)));
        assert!(room.conf.participants().is_empty());
    }

    #[test]
    fn the_last_participant_leaving_ends_the_room() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(1, 2, ParticipantOptions::default());
        let now = room.at(10);
        room.conf
            .handle_leave(now, call(1), LeaveReason::HungUp)
            .expect("in the room");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::MixChanged,
                Out::PlayBeep {
                    beep: BeepKind::Exit
                }
            ]
        );
        assert_eq!(
            room.conf.status(),
            ConferenceStatus::InProgress,
            "one left, still on"
        );

        let now = room.at(20);
        room.conf
            .handle_leave(now, call(2), LeaveReason::CallUpdated)
            .expect("in the room");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![Out::Ended {
                reason: ReasonConferenceEnded::LastParticipantLeft,
                call_sid: Some(call(2))
            }]
        );
        let end = params_of(&out, Ev::ConferenceEnd);
        assert_eq!(
            param(&end, "ReasonConferenceEnded"),
            Some("last-participant-left")
        );
        let leave = params_of(&out, Ev::ParticipantLeave);
        assert_eq!(
            param(&leave, "ReasonParticipantLeft"),
            Some("participant_updated_via_api")
        );
        assert_eq!(
            room.conf.reason_ended(),
            Some(ReasonConferenceEnded::LastParticipantLeft)
        );
    }

    #[test]
    fn kicking_the_last_participant_ends_with_last_participant_kicked() {
        let mut room = Room::new();
        room.join(0, 1, first());
        let now = room.at(4);
        room.conf
            .kick(now, &ParticipantId::Call(call(1)))
            .expect("in the room");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::Kick { call_sid: call(1) },
                Out::Ended {
                    reason: ReasonConferenceEnded::LastParticipantKicked,
                    call_sid: Some(call(1))
                }
            ]
        );
        assert_eq!(
            room.conf.kick(now, &ParticipantId::Call(call(1))),
            Err(ConferenceError::Ended)
        );
    }

    #[test]
    fn kicking_an_end_conference_on_exit_participant_ends_the_room() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(
            1,
            2,
            ParticipantOptions {
                end_conference_on_exit: true,
                ..labeled("host")
            },
        );
        let now = room.at(9);
        room.conf
            .kick(now, &ParticipantId::Label("host".into()))
            .expect("in the room");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::Kick { call_sid: call(2) },
                Out::Kick { call_sid: call(1) },
                Out::Ended {
                    reason: ReasonConferenceEnded::ParticipantWithEndConferenceOnExitKicked,
                    call_sid: Some(call(2))
                }
            ]
        );
    }

    #[test]
    fn ending_via_the_api_takes_everyone_out() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(1, 2, ParticipantOptions::default());
        let now = room.at(100);
        room.conf.end(now).expect("live");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::Kick { call_sid: call(1) },
                Out::Kick { call_sid: call(2) },
                Out::Ended {
                    reason: ReasonConferenceEnded::ConferenceEndedViaApi,
                    call_sid: None
                }
            ]
        );
        let end = params_of(&out, Ev::ConferenceEnd);
        assert_eq!(
            param(&end, "ReasonConferenceEnded"),
            Some("conference-ended-via-api")
        );
        assert_eq!(param(&end, "CallSidEndingConference"), None);
        let leave = params_of(&out, Ev::ParticipantLeave);
        assert_eq!(
            param(&leave, "ReasonParticipantLeft"),
            Some("conference_ended_via_api")
        );
        assert_eq!(room.conf.end(now), Err(ConferenceError::Ended));
        assert_eq!(room.conf.poll_output(), None, "Ended was the last output");
    }

    #[test]
    fn max_participants_comes_from_the_first_participant_and_refuses_extra_joins() {
        let mut room = Room::new();
        room.join(
            0,
            1,
            ParticipantOptions {
                max_participants: Some(2),
                ..first()
            },
        );
        room.join(
            1,
            2,
            ParticipantOptions {
                max_participants: Some(10),
                ..ParticipantOptions::default()
            },
        );
        assert_eq!(room.conf.max_participants(), 2);
        let now = room.at(2);
        let err = room
            .conf
            .handle_join(now, call(3), ParticipantOptions::default())
            .expect_err("full");
        assert_eq!(err, ConferenceError::Full { max: 2 });
        assert_eq!(err.twilio_code(), Some(16020));
        assert_eq!(room.drain(), vec![], "a refused join changes nothing");
        assert_eq!(room.conf.participants().len(), 2);

        // A seat frees up when someone leaves.
        let now = room.at(3);
        room.conf
            .handle_leave(now, call(2), LeaveReason::HungUp)
            .expect("in the room");
        assert!(room
            .conf
            .handle_join(now, call(3), ParticipantOptions::default())
            .is_ok());
    }

    #[test]
    fn max_participants_is_two_to_two_hundred_fifty() {
        for bad in [0, 1, 251] {
            let mut room = Room::new();
            let now = room.at(0);
            assert_eq!(
                room.conf.handle_join(
                    now,
                    call(1),
                    ParticipantOptions {
                        max_participants: Some(bad),
                        ..first()
                    }
                ),
                Err(ConferenceError::InvalidMaxParticipants(bad))
            );
            assert!(room.conf.participants().is_empty());
            assert!(room.conf.status_callback().is_none(), "nothing was settled");
        }
        let room = Room::new();
        assert_eq!(room.conf.max_participants(), 250);
    }

    #[test]
    fn mute_and_hold_updates_emit_callbacks_in_order_with_increasing_sequence_numbers() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(1, 2, ParticipantOptions::default());
        let who = ParticipantId::Call(call(2));
        let hold_music = Music {
            url: "https://app.test/hold.mp3".into(),
            method: HttpMethod::Get,
        };

        let mut seen = Vec::new();
        let steps = [
            ParticipantUpdate {
                muted: Some(true),
                ..ParticipantUpdate::default()
            },
            ParticipantUpdate {
                hold: Some(true),
                hold_music: Some(hold_music.clone()),
                ..ParticipantUpdate::default()
            },
            ParticipantUpdate {
                muted: Some(false),
                hold: Some(false),
                ..ParticipantUpdate::default()
            },
            // No change: no callback, no command.
            ParticipantUpdate {
                muted: Some(false),
                ..ParticipantUpdate::default()
            },
        ];
        let mut all_commands = Vec::new();
        for (s, step) in steps.into_iter().enumerate() {
            let now = room.at(10 + s as u64);
            room.conf
                .update_participant(now, &who, step)
                .expect("connected");
            let out = room.drain();
            seen.extend(callbacks(&out));
            all_commands.push(commands(&out));
        }
        let events: Vec<StatusCallbackEvent> = seen.iter().map(|(e, _, _)| *e).collect();
        assert_eq!(
            events,
            vec![
                Ev::ParticipantMute,
                Ev::ParticipantHold,
                Ev::ParticipantUnmute,
                Ev::ParticipantUnhold
            ]
        );
        assert!(seen.iter().all(|(_, c, _)| *c == Some(call(2))));
        let numbers: Vec<u64> = seen.iter().map(|(_, _, n)| *n).collect();
        // 1-3 went to two joins and the start.
        assert_eq!(numbers, vec![4, 5, 6, 7]);
        assert_eq!(
            all_commands,
            vec![
                vec![Out::MixChanged],
                vec![
                    Out::StartHoldMusic {
                        call_sid: call(2),
                        music: Some(hold_music)
                    },
                    Out::MixChanged
                ],
                vec![Out::StopHoldMusic { call_sid: call(2) }, Out::MixChanged],
                vec![],
            ]
        );
        let p = room.conf.participant(&who).expect("present");
        assert!(!p.muted && !p.hold);
    }

    #[test]
    fn mute_and_hold_shape_the_mix() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(1, 2, ParticipantOptions::default());
        room.join(2, 3, ParticipantOptions::default());
        let now = room.at(3);
        room.conf
            .update_participant(
                now,
                &ParticipantId::Call(call(2)),
                ParticipantUpdate {
                    muted: Some(true),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        room.conf
            .update_participant(
                now,
                &ParticipantId::Call(call(3)),
                ParticipantUpdate {
                    hold: Some(true),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        let plan = room.conf.mix_plan();
        assert_eq!(
            plan,
            vec![
                MixEntry {
                    call_sid: call(1),
                    hears_room: true,
                    speaks_to: Audience::Room
                },
                MixEntry {
                    call_sid: call(2),
                    hears_room: true,
                    speaks_to: Audience::Nobody
                },
                MixEntry {
                    call_sid: call(3),
                    hears_room: false,
                    speaks_to: Audience::Nobody
                },
            ]
        );
    }

    #[test]
    fn participants_are_found_and_updated_by_label_and_labels_are_unique() {
        let mut room = Room::new();
        room.join(0, 1, ParticipantOptions { ..first() });
        room.join(1, 2, labeled("customer"));
        let now = room.at(2);
        let err = room
            .conf
            .handle_join(now, call(3), labeled("customer"))
            .expect_err("label taken");
        assert_eq!(err, ConferenceError::DuplicateLabel("customer".into()));
        assert_eq!(err.twilio_code(), Some(16025));
        assert!(room
            .conf
            .participant(&ParticipantId::Call(call(3)))
            .is_none());

        let by_label = ParticipantId::parse("customer");
        assert_eq!(by_label, ParticipantId::Label("customer".into()));
        assert_eq!(
            ParticipantId::parse(call(2).as_str()),
            ParticipantId::Call(call(2))
        );
        assert_eq!(
            room.conf.participant(&by_label).map(|p| p.call_sid),
            Some(call(2))
        );
        room.conf
            .update_participant(
                now,
                &by_label,
                ParticipantUpdate {
                    muted: Some(true),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        let out = room.drain();
        let mute = params_of(&out, Ev::ParticipantMute);
        assert_eq!(param(&mute, "CallSid"), Some(call(2).as_str()));
        assert_eq!(param(&mute, "ParticipantLabel"), Some("customer"));
        assert_eq!(param(&mute, "Muted"), Some("true"));
        assert_eq!(
            room.conf.update_participant(
                now,
                &ParticipantId::Label("nobody".into()),
                ParticipantUpdate::default()
            ),
            Err(ConferenceError::UnknownParticipant)
        );
        assert_eq!(
            room.conf
                .handle_join(now, call(4), labeled(&"x".repeat(129))),
            Err(ConferenceError::InvalidLabel(129))
        );

        // The label is free once its participant left.
        room.conf
            .handle_leave(now, call(2), LeaveReason::HungUp)
            .expect("in the room");
        assert!(room
            .conf
            .handle_join(now, call(3), labeled("customer"))
            .is_ok());
    }

    #[test]
    fn a_coach_is_heard_only_by_the_participant_it_coaches() {
        let mut room = Room::new();
        room.join(0, 1, labeled("customer"));
        room.join(1, 2, labeled("agent"));
        let now = room.at(2);
        assert_eq!(
            room.conf.handle_join(
                now,
                call(3),
                ParticipantOptions {
                    coaching: true,
                    call_sid_to_coach: Some(call(9)),
                    ..ParticipantOptions::default()
                }
            ),
            Err(ConferenceError::CoachTargetNotFound(call(9)))
        );
        assert_eq!(
            ConferenceError::CoachTargetNotFound(call(9)).twilio_code(),
            Some(13240)
        );
        assert_eq!(
            room.conf.handle_join(
                now,
                call(3),
                ParticipantOptions {
                    coaching: true,
                    ..ParticipantOptions::default()
                }
            ),
            Err(ConferenceError::CoachingWithoutTarget)
        );
        room.conf
            .handle_join(
                now,
                call(3),
                ParticipantOptions {
                    coaching: true,
                    call_sid_to_coach: Some(call(2)),
                    ..labeled("supervisor")
                },
            )
            .expect("coach joined");
        room.drain();
        let plan = room.conf.mix_plan();
        assert_eq!(
            plan.last(),
            Some(&MixEntry {
                call_sid: call(3),
                hears_room: true,
                speaks_to: Audience::Only(call(2))
            })
        );
        assert!(plan[..2].iter().all(|m| m.speaks_to == Audience::Room));

        // Barge: coaching off, the supervisor speaks to the room.
        let now = room.at(3);
        let supervisor = ParticipantId::Label("supervisor".into());
        room.conf
            .update_participant(
                now,
                &supervisor,
                ParticipantUpdate {
                    coaching: Some(false),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        let out = room.drain();
        assert_eq!(commands(&out), vec![Out::MixChanged]);
        assert_eq!(
            callbacks(&out).iter().map(|c| c.0).collect::<Vec<_>>(),
            Vec::<StatusCallbackEvent>::new(),
            "no status callback configured"
        );
        assert_eq!(room.conf.mix_plan()[2].speaks_to, Audience::Room);

        // Retarget to the customer, then the customer leaves: the whisper reaches nobody.
        room.conf
            .update_participant(
                now,
                &supervisor,
                ParticipantUpdate {
                    coaching: Some(true),
                    call_sid_to_coach: Some(call(1)),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        assert_eq!(room.conf.mix_plan()[2].speaks_to, Audience::Only(call(1)));
        assert_eq!(
            room.conf.update_participant(
                now,
                &supervisor,
                ParticipantUpdate {
                    call_sid_to_coach: Some(call(3)),
                    ..ParticipantUpdate::default()
                },
            ),
            Err(ConferenceError::CoachTargetNotFound(call(3))),
            "no coaching oneself"
        );
        room.conf
            .handle_leave(now, call(1), LeaveReason::HungUp)
            .expect("in the room");
        let plan = room.conf.mix_plan();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].speaks_to, Audience::Nobody);
    }

    #[test]
    fn coaching_changes_are_participant_modify() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(1, 2, ParticipantOptions::default());
        let now = room.at(2);
        room.conf
            .update_participant(
                now,
                &ParticipantId::Call(call(2)),
                ParticipantUpdate {
                    coaching: Some(true),
                    call_sid_to_coach: Some(call(1)),
                    end_conference_on_exit: Some(true),
                    beep_on_exit: Some(false),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        let out = room.drain();
        assert_eq!(
            callbacks(&out).iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![Ev::ParticipantModify]
        );
        let modify = params_of(&out, Ev::ParticipantModify);
        assert_eq!(param(&modify, "Coaching"), Some("true"));
        assert_eq!(param(&modify, "EndConferenceOnExit"), Some("true"));
        let p = room
            .conf
            .participant(&ParticipantId::Call(call(2)))
            .expect("present");
        assert!(p.end_conference_on_exit && !p.beep_on_exit);

        // Its exit now ends the room, and beeps no more (there is nobody left to hear anyway).
        let now = room.at(3);
        room.conf
            .handle_leave(now, call(2), LeaveReason::HungUp)
            .expect("in the room");
        assert!(room.conf.is_ended());
    }

    #[test]
    fn a_join_after_the_room_ended_is_refused() {
        let mut room = Room::new();
        room.join(0, 1, first());
        let now = room.at(1);
        room.conf
            .handle_leave(now, call(1), LeaveReason::HungUp)
            .expect("in the room");
        room.drain();
        assert!(room.conf.is_ended());
        let now = room.at(2);
        assert_eq!(
            room.conf.handle_join(now, call(2), first()),
            Err(ConferenceError::Ended)
        );
        assert_eq!(
            room.conf.handle_join(now, call(1), first()),
            Err(ConferenceError::Ended)
        );
        assert_eq!(
            room.conf.announce(
                now,
                None,
                Music {
                    url: "https://app.test/a.mp3".into(),
                    method: HttpMethod::Post
                }
            ),
            Err(ConferenceError::Ended)
        );
        assert_eq!(room.drain(), vec![]);
    }

    #[test]
    fn the_same_call_cannot_join_twice() {
        let mut room = Room::new();
        room.join(0, 1, first());
        let now = room.at(1);
        assert_eq!(
            room.conf
                .handle_join(now, call(1), ParticipantOptions::default()),
            Err(ConferenceError::AlreadyJoined(call(1)))
        );
    }

    #[test]
    fn only_the_first_participants_subscription_counts() {
        let mut room = Room::new();
        room.join(
            0,
            1,
            ParticipantOptions {
                status_callback: subscribed(CallbackEvents::START | CallbackEvents::END),
                ..ParticipantOptions::default()
            },
        );
        let now = room.at(1);
        room.conf
            .handle_join(
                now,
                call(2),
                ParticipantOptions {
                    status_callback: Some(StatusCallbackConfig {
                        url: "https://other.test/".into(),
                        method: HttpMethod::Get,
                        events: CallbackEvents::ALL,
                    }),
                    ..ParticipantOptions::default()
                },
            )
            .expect("joined");
        let out = room.drain();
        assert_eq!(callbacks(&out), vec![(Ev::ConferenceStart, None, 1)]);
        match out.iter().find(|o| matches!(o, Out::StatusCallback { .. })) {
            Some(Out::StatusCallback { url, method, .. }) => {
                assert_eq!((url.as_str(), *method), (CALLBACK_URL, HttpMethod::Post));
            }
            other => panic!("expected a status callback, got {other:?}"),
        }
        let now = room.at(2);
        room.conf
            .update_participant(
                now,
                &ParticipantId::Call(call(2)),
                ParticipantUpdate {
                    muted: Some(true),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        assert_eq!(callbacks(&room.drain()), vec![], "mute is not subscribed");
        room.conf.end(now).expect("live");
        assert_eq!(callbacks(&room.drain()), vec![(Ev::ConferenceEnd, None, 2)]);
    }

    #[test]
    fn a_first_participant_without_callback_means_no_callbacks() {
        let mut room = Room::new();
        room.join(0, 1, ParticipantOptions::default());
        let now = room.at(1);
        room.conf
            .handle_join(now, call(2), first())
            .expect("joined");
        assert_eq!(callbacks(&room.drain()), vec![]);
        assert!(room.conf.status_callback().is_none());
    }

    #[test]
    fn callback_event_words_parse() {
        assert_eq!(
            CallbackEvents::parse("start end"),
            Ok(CallbackEvents::API_DEFAULT)
        );
        assert_eq!(
            CallbackEvents::parse(" start,end join leave mute hold modify speaker announcement "),
            Ok(CallbackEvents::ALL)
        );
        assert_eq!(CallbackEvents::parse(""), Ok(CallbackEvents::NONE));
        assert_eq!(
            CallbackEvents::parse("start talk"),
            Err(UnknownCallbackEvent("talk".into()))
        );
        let mute = CallbackEvents::MUTE;
        assert!(mute.contains(Ev::ParticipantMute) && mute.contains(Ev::ParticipantUnmute));
        assert!(!mute.contains(Ev::ParticipantHold));
        assert!(CallbackEvents::SPEAKER.contains(Ev::ParticipantSpeechStop));
        assert!(CallbackEvents::ANNOUNCEMENT.contains(Ev::AnnouncementFail));
        assert_eq!(Ev::AnnouncementFail.as_str(), "announcement-fail");
    }

    #[test]
    fn speech_is_reported_to_speaker_subscribers() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(1, 2, ParticipantOptions::default());
        let now = room.at(2);
        room.conf
            .handle_speech(now, call(2), true)
            .expect("connected");
        room.conf
            .handle_speech(now + secs(3), call(2), false)
            .expect("connected");
        let events: Vec<_> = callbacks(&room.drain())
            .iter()
            .map(|c| (c.0, c.1))
            .collect();
        assert_eq!(
            events,
            vec![
                (Ev::ParticipantSpeechStart, Some(call(2))),
                (Ev::ParticipantSpeechStop, Some(call(2)))
            ]
        );
        assert_eq!(
            room.conf.handle_speech(now, call(7), true),
            Err(ConferenceError::UnknownParticipant)
        );
    }

    #[test]
    fn announcements_report_end_and_fail() {
        let mut room = Room::new();
        room.join(0, 1, first());
        room.join(1, 2, labeled("customer"));
        let music = Music {
            url: "https://app.test/notice.mp3".into(),
            method: HttpMethod::Get,
        };
        let now = room.at(5);
        let to_room = room.conf.announce(now, None, music.clone()).expect("live");
        let to_one = room
            .conf
            .announce(
                now,
                Some(&ParticipantId::Label("customer".into())),
                music.clone(),
            )
            .expect("live");
        assert_ne!(to_room, to_one);
        assert_eq!(
            room.drain(),
            vec![
                Out::Announce {
                    id: to_room,
                    call_sid: None,
                    music: music.clone()
                },
                Out::Announce {
                    id: to_one,
                    call_sid: Some(call(2)),
                    music: music.clone()
                },
            ]
        );
        room.conf
            .handle_announcement_done(room.at(8), to_room, Ok(()));
        room.conf
            .handle_announcement_done(room.at(9), to_one, Err("could not fetch".into()));
        // A stale or repeated report is ignored.
        room.conf
            .handle_announcement_done(room.at(9), to_one, Ok(()));
        let out = room.drain();
        assert_eq!(
            callbacks(&out)
                .iter()
                .map(|c| (c.0, c.1))
                .collect::<Vec<_>>(),
            vec![
                (Ev::AnnouncementEnd, None),
                (Ev::AnnouncementFail, Some(call(2)))
            ]
        );
        let end = params_of(&out, Ev::AnnouncementEnd);
        assert_eq!(param(&end, "AnnounceUrl"), Some(music.url.as_str()));
        assert_eq!(param(&end, "CallSid"), None);
        let fail = params_of(&out, Ev::AnnouncementFail);
        assert_eq!(
            param(&fail, "ReasonAnnouncementFailed"),
            Some("could not fetch")
        );
        assert_eq!(param(&fail, "ParticipantLabel"), Some("customer"));
    }

    #[test]
    fn a_rest_created_participant_holds_a_seat_until_it_answers() {
        let mut room = Room::new();
        room.join(
            0,
            1,
            ParticipantOptions {
                max_participants: Some(3),
                ..first()
            },
        );
        let now = room.at(1);
        room.conf
            .handle_dialing(now, call(2), labeled("expert"))
            .expect("seat taken");
        room.conf
            .handle_dialing(now, call(3), ParticipantOptions::default())
            .expect("seat taken");
        assert_eq!(
            room.conf
                .handle_join(now, call(4), ParticipantOptions::default()),
            Err(ConferenceError::Full { max: 3 })
        );
        assert_eq!(room.drain(), vec![], "nobody joined yet");
        assert_eq!(room.conf.status(), ConferenceStatus::Init);
        assert_eq!(
            room.conf.update_participant(
                now,
                &ParticipantId::Label("expert".into()),
                ParticipantUpdate::default()
            ),
            Err(ConferenceError::NotConnected(call(2)))
        );

        room.conf
            .handle_ringing(room.at(2), call(2))
            .expect("dialing");
        assert_eq!(
            room.conf
                .participant(&ParticipantId::Call(call(2)))
                .map(|p| p.status),
            Some(ParticipantStatus::Ringing)
        );
        room.conf
            .handle_answered(room.at(6), call(2))
            .expect("dialing");
        let out = room.drain();
        assert_eq!(room.conf.status(), ConferenceStatus::InProgress);
        assert_eq!(
            callbacks(&out)
                .iter()
                .map(|c| (c.0, c.1))
                .collect::<Vec<_>>(),
            vec![
                (Ev::ParticipantJoin, Some(call(2))),
                (Ev::ConferenceStart, None)
            ]
        );
        let p = room
            .conf
            .participant(&ParticipantId::Call(call(2)))
            .expect("present");
        assert_eq!((p.added_at, p.joined_at), (room.at(1), Some(room.at(6))));
        assert_eq!(
            room.conf.handle_answered(room.at(7), call(2)),
            Err(ConferenceError::AlreadyJoined(call(2)))
        );

        // The other leg is busy: it leaves without ever joining, and the room goes on.
        room.conf
            .handle_leave(
                room.at(8),
                call(3),
                LeaveReason::AddFailed(CallStatus::Busy),
            )
            .expect("dialing");
        let out = room.drain();
        assert_eq!(commands(&out), vec![], "it was never mixed");
        let leave = params_of(&out, Ev::ParticipantLeave);
        assert_eq!(
            param(&leave, "ReasonParticipantLeft"),
            Some("participant_add_failed")
        );
        assert_eq!(param(&leave, "ParticipantCallStatus"), Some("busy"));
        assert_eq!(room.conf.participants().len(), 2);
    }

    #[test]
    fn a_waiting_room_swaps_wait_music_for_hold_music_and_back() {
        let mut room = Room::new();
        room.join(0, 1, ParticipantOptions { ..first() });
        let who = ParticipantId::Call(call(1));
        let now = room.at(1);
        room.conf
            .update_participant(
                now,
                &who,
                ParticipantUpdate {
                    hold: Some(true),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        assert_eq!(
            commands(&room.drain()),
            vec![
                Out::StopWaitMusic { call_sid: call(1) },
                Out::StartHoldMusic {
                    call_sid: call(1),
                    music: None
                }
            ]
        );
        let wait = Music {
            url: String::new(),
            method: HttpMethod::Post,
        };
        room.conf
            .update_participant(
                now,
                &who,
                ParticipantUpdate {
                    hold: Some(false),
                    wait_music: Some(wait.clone()),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        let out = room.drain();
        assert_eq!(
            commands(&out),
            vec![
                Out::StopHoldMusic { call_sid: call(1) },
                Out::StartWaitMusic {
                    call_sid: call(1),
                    music: Some(wait)
                },
            ]
        );
        assert_eq!(
            callbacks(&out).iter().map(|c| c.0).collect::<Vec<_>>(),
            vec![Ev::ParticipantUnhold, Ev::ParticipantModify]
        );
    }

    #[test]
    fn a_held_participant_is_not_sent_back_to_wait_music_when_the_room_starts() {
        let mut room = Room::new();
        room.join(0, 1, ParticipantOptions { ..waiting() });
        let now = room.at(1);
        room.conf
            .update_participant(
                now,
                &ParticipantId::Call(call(1)),
                ParticipantUpdate {
                    hold: Some(true),
                    ..ParticipantUpdate::default()
                },
            )
            .expect("connected");
        room.drain();
        room.conf
            .handle_join(room.at(2), call(2), ParticipantOptions::default())
            .expect("joined");
        // call 1 is held (hold music, no StopWaitMusic); call 2 alone hears the room, so no beep.
        assert_eq!(commands(&room.drain()), vec![Out::StartMixing]);
    }

    #[test]
    fn beep_follows_the_participants_setting() {
        let mut room = Room::new();
        room.join(0, 1, ParticipantOptions { ..first() });
        room.join(
            1,
            2,
            ParticipantOptions {
                beep: Beep::False,
                ..ParticipantOptions::default()
            },
        );
        let now = room.at(2);
        room.conf
            .handle_join(
                now,
                call(3),
                ParticipantOptions {
                    beep: Beep::OnExit,
                    ..ParticipantOptions::default()
                },
            )
            .expect("joined");
        assert_eq!(commands(&room.drain()), vec![Out::MixChanged]);
        room.conf
            .handle_leave(now, call(3), LeaveReason::HungUp)
            .expect("in the room");
        assert_eq!(
            commands(&room.drain()),
            vec![
                Out::MixChanged,
                Out::PlayBeep {
                    beep: BeepKind::Exit
                }
            ]
        );
        room.conf
            .handle_join(
                now,
                call(4),
                ParticipantOptions {
                    beep: Beep::OnEnter,
                    ..ParticipantOptions::default()
                },
            )
            .expect("joined");
        assert_eq!(
            commands(&room.drain()),
            vec![
                Out::MixChanged,
                Out::PlayBeep {
                    beep: BeepKind::Enter
                }
            ]
        );
        room.conf
            .handle_leave(now, call(4), LeaveReason::HungUp)
            .expect("in the room");
        assert_eq!(commands(&room.drain()), vec![Out::MixChanged]);
        assert_eq!(Beep::OnExit.as_str(), "onExit");
    }

    #[test]
    fn join_and_leave_callbacks_carry_the_participant() {
        let mut room = Room::new();
        let now = room.at(0);
        room.conf
            .handle_join(
                now,
                call(1),
                ParticipantOptions {
                    muted: true,
                    end_conference_on_exit: true,
                    ..ParticipantOptions {
                        label: Some("boss".into()),
                        ..first()
                    }
                },
            )
            .expect("joined");
        let out = room.drain();
        let join = params_of(&out, Ev::ParticipantJoin);
        let names: Vec<&str> = join.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "ConferenceSid",
                "FriendlyName",
                "AccountSid",
                "SequenceNumber",
                "StatusCallbackEvent",
                "CallSid",
                "Muted",
                "Hold",
                "Coaching",
                "EndConferenceOnExit",
                "StartConferenceOnEnter",
                "ParticipantLabel"
            ]
        );
        assert_eq!(
            param(&join, "ConferenceSid"),
            Some(room.conf.sid().as_str())
        );
        assert_eq!(
            param(&join, "AccountSid"),
            Some(room.conf.account_sid().as_str())
        );
        assert_eq!(param(&join, "Muted"), Some("true"));
        assert_eq!(param(&join, "EndConferenceOnExit"), Some("true"));
        assert_eq!(param(&join, "StartConferenceOnEnter"), Some("true"));
    }

    #[test]
    fn reports_about_unknown_participants_are_refused_without_effect() {
        let mut room = Room::new();
        room.join(0, 1, first());
        let now = room.at(1);
        assert_eq!(
            room.conf.handle_leave(now, call(5), LeaveReason::HungUp),
            Err(ConferenceError::UnknownParticipant)
        );
        assert_eq!(
            room.conf.handle_answered(now, call(5)),
            Err(ConferenceError::UnknownParticipant)
        );
        assert_eq!(
            room.conf.kick(now, &ParticipantId::Label("x".into())),
            Err(ConferenceError::UnknownParticipant)
        );
        assert_eq!(room.drain(), vec![]);
        assert_eq!(room.conf.status(), ConferenceStatus::Init);
    }

    #[test]
    fn statuses_are_spelled_as_twilio_does() {
        assert_eq!(ConferenceStatus::InProgress.as_str(), "in-progress");
        assert_eq!(ParticipantStatus::Connected.as_str(), "connected");
        assert_eq!(
            ReasonConferenceEnded::ParticipantWithEndConferenceOnExitKicked.as_str(),
            "participant-with-end-conference-on-exit-kicked"
        );
        assert!(ConferenceSid::generate().as_str().starts_with("CF"));
    }
}
