//! Commands a [`super::Stream`] handle queues for its stream. Its own module so the stream
//! (which applies them) and the worker (which carries them) need not import each other.

use std::sync::Arc;
use std::time::Duration;

use super::events::{FeedItem, TapFrame, Track};

/// What a stream handle asks of its stream.
#[derive(Debug)]
pub(crate) enum StreamCommand {
    SetRemote {
        remote_rtp: std::net::SocketAddr,
        remote_rtcp: std::net::SocketAddr,
        codec: media::Codec,
        payload_type: u8,
        telephone_event_pt: Option<u8>,
    },
    /// The stream becomes a browser leg (see `webrtc`).
    WebRtc {
        transport: Box<super::webrtc::WebRtcTransport>,
        media: super::webrtc::WebRtcMedia,
    },
    /// A browser leg's new offer (a re-INVITE): its answer goes back on `reply`.
    WebRtcOffer {
        offer: String,
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
    Play {
        id: u64,
        samples: Arc<[i16]>,
        loops: u32,
    },
    StopPlayback,
    StartRecording {
        id: u64,
        path: std::path::PathBuf,
        max_length: Duration,
        silence_timeout: Option<Duration>,
    },
    StartCallRecording {
        id: u64,
        path: std::path::PathBuf,
        channels: u16,
    },
    StopRecording {
        id: u64,
    },
    SetHold(bool),
    SendDigits {
        id: u64,
        digits: String,
    },
    AddTap {
        id: u64,
        track: Track,
        sink: std::sync::mpsc::SyncSender<TapFrame>,
    },
    RemoveTap {
        id: u64,
    },
    Feed {
        id: u64,
        source: std::sync::mpsc::Receiver<FeedItem>,
    },
    StopFeed,
}
