//! What the media plane's handles and workers say to each other and to their owners: the
//! events a stream or room reports, how a stream takes part in a room, tap frames and feed
//! items. Plain data, so the workers' modules and the handles share it without importing
//! each other.

use std::path::PathBuf;
use std::time::Duration;

/// Why a recording ended (the engine's own type, so events pass through unchanged).
pub use engine::RecordStop;

/// Packetisation interval: one frame of [`media::FRAME_SAMPLES`] every 20 ms.
pub const TICK: Duration = Duration::from_millis(20);

/// What a stream reports to its owner.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// The last frame of playback `id` was sent (not sent for playbacks that
    /// were replaced or stopped).
    PlaybackDone { id: u64 },
    /// One RFC 4733 digit from the far end (one per key press).
    Dtmf { digit: char },
    /// Recording `id` ended and its WAV file is complete at `path`.
    RecordingStopped {
        id: u64,
        duration: Duration,
        stop: RecordStop,
        path: PathBuf,
    },
    /// Recording `id` could not be written (file system error); nothing is
    /// left at its path.
    RecordingFailed { id: u64, reason: String },
    /// Every digit of `send_digits` call `id` has been sent (not sent when a
    /// later call replaced it).
    DigitsSent { id: u64 },
    /// Feed `id` reached `mark`: every frame fed before it has been sent.
    FeedMark { id: u64, mark: u64 },
    /// Feed `id`'s sender is gone and all it fed was sent.
    FeedEnded { id: u64 },
}

/// What a room reports to its owner.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum RoomEvent {
    /// The last frame of room playback `id` was mixed in.
    PlaybackDone {
        id: u64,
    },
    RecordingStopped {
        id: u64,
        duration: Duration,
        stop: RecordStop,
        path: PathBuf,
    },
    RecordingFailed {
        id: u64,
        reason: String,
    },
    /// A participant (a [`super::Stream::id`]) started or stopped speaking.
    Speaking {
        stream: u64,
        speaking: bool,
    },
}

/// How a stream takes part in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Participation {
    /// The room hears it (false: muted, on hold, waiting for the start).
    pub heard: bool,
    /// It hears the room (false: on hold or waiting; its own playback, the hold music, goes
    /// out instead).
    pub hears: bool,
    /// It whispers to this participant (a [`super::Stream::id`]) alone: nobody else hears it.
    pub coach_of: Option<u64>,
}

impl Participation {
    /// Talks and listens.
    pub const FULL: Participation = Participation {
        heard: true,
        hears: true,
        coach_of: None,
    };
    /// Neither: on hold, or waiting for the conference to start.
    pub const APART: Participation = Participation {
        heard: false,
        hears: false,
        coach_of: None,
    };
}

/// Which of a stream's audio a tap takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// What the far end sends us.
    Inbound,
    /// What we send the far end.
    Outbound,
    Both,
}

/// Frames a tap's channel holds before the worker drops what the consumer is too slow for.
pub const TAP_QUEUE_FRAMES: usize = 50;

/// One frame of a stream's audio given to a tap (decoded 8 kHz PCM). Fixed-size, so handing
/// it over never allocates.
#[derive(Debug, Clone, Copy)]
pub struct TapFrame {
    /// `Inbound` or `Outbound`.
    pub track: Track,
    /// When the worker had it (arrival, or sending).
    pub at: std::time::Instant,
    /// Valid samples in `samples` (160 but for odd packet sizes).
    pub len: usize,
    pub samples: [i16; media::FRAME_SAMPLES],
}

impl TapFrame {
    pub fn pcm(&self) -> &[i16] {
        self.samples.get(..self.len).unwrap_or(&self.samples)
    }
}

/// What a feed carries ([`super::Stream::feed`]). Fixed-size on purpose, like [`TapFrame`]: feeding
/// never allocates.
#[derive(Debug, Clone, Copy)]
#[allow(clippy::large_enum_variant)]
pub enum FeedItem {
    /// A 20 ms frame, sent on the next free tick.
    Audio([i16; media::FRAME_SAMPLES]),
    /// Reported as [`MediaEvent::FeedMark`] once the audio fed before it has been sent.
    Mark(u64),
}
