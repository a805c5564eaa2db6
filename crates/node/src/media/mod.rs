//! The media worker: owns the RTP/RTCP sockets of every call and ticks them
//! every 20 ms.
//!
//! [`MediaEngine::start`] spawns one worker task per core. [`MediaEngine::allocate`]
//! binds an RTP socket on a free even port of the range and RTCP on the port
//! above it, hands both to the least loaded worker and returns a [`Stream`]
//! handle; its methods are commands sent to that worker over a channel, and
//! what the worker learns comes back as [`MediaEvent`]s on the channel given to
//! `allocate`. Dropping the handle closes the sockets and frees the ports.
//!
//! Each worker ticks all its streams in one pass every 20 ms (instead of a task
//! or a timer per stream): drain the sockets, hand packets to the `rtp` and
//! `media` cores (symmetric RTP latching, RFC 4733 digits, decoding into the
//! recording), then send one frame of whatever is playing. Nothing is sent
//! while nothing plays (RFC 3551 silence suppression), which is what keeps a
//! node with thousands of listening calls cheap. RTP and audio logic live in
//! the `rtp` and `media` crates; this module only moves bytes and keeps time.
//!
//! Sockets are `tokio::net::UdpSocket`s read with `try_recv_from` in the tick:
//! tokio caches readiness, so polling a socket that received nothing (most
//! RTCP sockets, most of the time) costs no system call, while the tick keeps
//! the single-pass cadence. Binding happens synchronously in `allocate`, so a
//! port that fails to bind is skipped before the caller sees it.

mod ports;
mod recording;
mod stream;
mod worker;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use ports::PortPool;
use worker::{Command, StreamCommand, WorkerHandle};

/// Why a recording ended (the engine's own type, so events pass through
/// unchanged).
pub use engine::RecordStop;

/// Packetisation interval: one frame of [`media::FRAME_SAMPLES`] every 20 ms.
pub const TICK: Duration = Duration::from_millis(20);

/// Where the media engine binds and which ports it may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Address the RTP/RTCP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address written into SDP (differs from `bind_ip` behind 1:1 NAT or when
    /// binding the wildcard address).
    pub advertise_ip: IpAddr,
    /// Lowest port of the range (inclusive).
    pub port_min: u16,
    /// Highest port of the range (inclusive); RTCP may use it.
    pub port_max: u16,
    /// Worker tasks; 0 means one per available core.
    pub workers: usize,
}

impl Default for MediaConfig {
    fn default() -> MediaConfig {
        MediaConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 10000,
            port_max: 20000,
            workers: 0,
        }
    }
}

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
}

/// Media layer failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("no free RTP port pair left in the configured range")]
    PortsExhausted,
    #[error("invalid media configuration: {0}")]
    InvalidConfig(&'static str),
    #[error("cannot bind RTP/RTCP socket: {0}")]
    Bind(#[source] std::io::Error),
    #[error("the media engine must be started inside a tokio runtime")]
    NoRuntime,
    #[error("media workers have stopped")]
    WorkersStopped,
}

/// Cheap, cloneable handle on the media workers and the port range.
#[derive(Debug, Clone)]
pub struct MediaEngine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: MediaConfig,
    ports: Arc<PortPool>,
    workers: Vec<WorkerHandle>,
    runtime: tokio::runtime::Handle,
    next_stream_id: AtomicU64,
}

impl MediaEngine {
    /// Spawns the worker tasks on the current tokio runtime.
    pub fn start(config: MediaConfig) -> Result<MediaEngine, MediaError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MediaError::NoRuntime)?;
        if config.port_min > config.port_max {
            return Err(MediaError::InvalidConfig("port_min is above port_max"));
        }
        let ports = Arc::new(PortPool::new(config.port_min, config.port_max));
        if ports.free_pairs() == 0 {
            return Err(MediaError::InvalidConfig(
                "the port range holds no even/odd port pair",
            ));
        }
        let count = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let workers = (0..count).map(|_| worker::spawn(&runtime)).collect();
        Ok(MediaEngine {
            inner: Arc::new(Inner {
                config,
                ports,
                workers,
                runtime,
                next_stream_id: AtomicU64::new(1),
            }),
        })
    }

    /// The configuration the engine runs with (for SDP: `advertise_ip`).
    pub fn config(&self) -> &MediaConfig {
        &self.inner.config
    }

    /// Binds a new stream (RTP on an even port, RTCP on the next) and hands it
    /// to the least loaded worker. Events of the stream go to `events`.
    pub fn allocate(&self, events: UnboundedSender<MediaEvent>) -> Result<Stream, MediaError> {
        let inner = &*self.inner;
        // `from_std` registers with the reactor of the runtime the workers run on,
        // whichever thread calls us.
        let _runtime = inner.runtime.enter();
        let (lease, rtp, rtcp) = bind_pair(inner)?;
        let worker = inner
            .workers
            .iter()
            .min_by_key(|w| w.load())
            // `start` spawns at least one worker.
            .expect("at least one media worker");
        let id = inner.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let local_port = lease.port();
        let state = stream::StreamState::new(id, rtp, rtcp, lease, events, worker.load_counter());
        worker
            .send(Command::Add(Box::new(state)))
            .map_err(|_| MediaError::WorkersStopped)?;
        Ok(Stream {
            local_port,
            id,
            commands: worker.sender(),
        })
    }

    /// Ports bound by live streams (two per stream: RTP and RTCP). A dropped
    /// stream's ports count until its worker has closed the sockets, which it
    /// does as soon as it reads the drop (normally within microseconds).
    pub fn ports_in_use(&self) -> usize {
        self.inner.ports.leased_pairs() * 2
    }

    /// Streams the workers are ticking.
    pub fn active_streams(&self) -> usize {
        self.inner.workers.iter().map(WorkerHandle::load).sum()
    }
}

/// Takes free ports until one pair binds. A port already bound by someone else
/// is skipped (and goes back to the pool for later); any other error means no
/// port could bind (bad `bind_ip`), so it is returned at once.
fn bind_pair(
    inner: &Inner,
) -> Result<
    (
        ports::PortLease,
        tokio::net::UdpSocket,
        tokio::net::UdpSocket,
    ),
    MediaError,
> {
    let attempts = inner.ports.free_pairs();
    for _ in 0..attempts {
        let Some(lease) = inner.ports.take() else {
            break;
        };
        let rtp_addr = SocketAddr::new(inner.config.bind_ip, lease.port());
        let rtcp_addr = SocketAddr::new(inner.config.bind_ip, lease.port() + 1);
        let bound = bind_udp(rtp_addr).and_then(|rtp| Ok((rtp, bind_udp(rtcp_addr)?)));
        match bound {
            Ok((rtp, rtcp)) => return Ok((lease, rtp, rtcp)),
            Err(e) if is_port_taken(&e) => {
                tracing::debug!(port = lease.port(), error = %e, "RTP port busy, skipped");
                continue;
            }
            Err(e) => return Err(MediaError::Bind(e)),
        }
    }
    Err(MediaError::PortsExhausted)
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    tokio::net::UdpSocket::from_std(socket)
}

fn is_port_taken(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied
    )
}

/// Handle on one RTP/RTCP stream. Commands are queued to the stream's worker
/// and applied before its next tick. Dropping the handle stops the stream
/// (a running recording ends with [`RecordStop::Hangup`]), closes its sockets
/// and returns the ports to the range.
#[derive(Debug)]
pub struct Stream {
    /// The local RTP port (RTCP is `local_port + 1`).
    pub local_port: u16,
    id: u64,
    commands: UnboundedSender<Command>,
}

impl Stream {
    /// Where to send media: the far end's RTP and RTCP addresses and what was
    /// negotiated. Resets symmetric-RTP latching to the new address.
    pub fn set_remote(
        &self,
        remote_rtp: SocketAddr,
        remote_rtcp: SocketAddr,
        codec: media::Codec,
        payload_type: u8,
        telephone_event_pt: Option<u8>,
    ) {
        self.send(StreamCommand::SetRemote {
            remote_rtp,
            remote_rtcp,
            codec,
            payload_type,
            telephone_event_pt,
        });
    }

    /// Plays 8 kHz mono samples `loops` times (0: until stopped), replacing
    /// whatever was playing. [`MediaEvent::PlaybackDone`] follows the last frame.
    /// Playback keeps wall-clock pace even when nothing can be sent (on hold,
    /// or before [`Stream::set_remote`]), so its end is always reported.
    pub fn play(&self, id: u64, samples: Arc<[i16]>, loops: u32) {
        self.send(StreamCommand::Play { id, samples, loops });
    }

    /// Stops playback without a `PlaybackDone` event.
    pub fn stop_playback(&self) {
        self.send(StreamCommand::StopPlayback);
    }

    /// Records what the far end sends into a WAV file (8 kHz mono 16-bit) at
    /// `path`, replacing a running recording (which stops as `Stopped`).
    pub fn start_recording(
        &self,
        id: u64,
        path: PathBuf,
        max_length: Duration,
        silence_timeout: Option<Duration>,
    ) {
        self.send(StreamCommand::StartRecording {
            id,
            path,
            max_length,
            silence_timeout,
        });
    }

    /// Ends recording `id` (ignored if another recording is running).
    pub fn stop_recording(&self, id: u64) {
        self.send(StreamCommand::StopRecording { id });
    }

    /// On hold nothing is sent on RTP (playback keeps its pace, so its end is
    /// still reported on time); RTCP continues as RFC 3264 §5.1 asks.
    pub fn set_hold(&self, on: bool) {
        self.send(StreamCommand::SetHold(on));
    }

    fn send(&self, command: StreamCommand) {
        if self
            .commands
            .send(Command::Stream(self.id, command))
            .is_err()
        {
            tracing::warn!(stream = self.id, "media worker gone; command dropped");
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // If the worker is gone its streams (and their ports) were dropped with it.
        let _ = self.commands.send(Command::Remove(self.id));
    }
}
