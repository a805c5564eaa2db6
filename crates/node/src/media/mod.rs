//! The media workers: own the RTP/RTCP sockets of every call, relay bridged
//! calls packet by packet, and tick every stream each 20 ms.
//!
//! [`MediaEngine::start`] starts one worker thread per core.
//! [`MediaEngine::allocate`] binds an RTP socket on a free even port of the
//! range and RTCP on the port above it, hands both to the least loaded worker
//! ([`MediaEngine::allocate_near`]: to the worker of another stream, so the two
//! can be bridged) and returns a [`Stream`] handle; its methods are commands
//! sent to that worker, and what the worker learns comes back as
//! [`MediaEvent`]s on the channel given to `allocate`. Dropping the handle
//! closes the sockets and frees the ports.
//!
//! A worker waits on all its sockets at once (epoll, level-triggered) with
//! the next 20 ms tick as the timeout. A packet is handled when it arrives:
//! symmetric RTP latching, RFC 4733 digits, decoding into recordings, and for
//! a bridged stream ([`Stream::bridge`]) the relay to the other leg within the
//! same wake-up, copied as is between legs of one codec. The tick sends one
//! frame of whatever plays or the next step of [`Stream::send_digits`], and
//! RTCP. Nothing is sent while nothing plays (RFC 3551 silence suppression),
//! which keeps a node with thousands of listening calls cheap. RTP and audio
//! logic live in the `rtp` and `media` crates; this module moves bytes and
//! keeps time.
//!
//! Workers are OS threads, not tokio tasks: a relay must not wait behind
//! webhook or SIP work on the runtime's threads, and owning the epoll loop
//! lets one wake-up serve every ready socket. Binding happens synchronously in
//! `allocate`, so a port that fails to bind is skipped before the caller sees
//! it.

mod control;
mod events;
mod ports;
mod recording;
mod room;
mod stream;
pub mod webrtc;
mod worker;

#[cfg(test)]
mod plane_tests;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use control::StreamCommand;
use ports::PortPool;
use room::{RoomCommand, RoomState};
use worker::{Command, Link, WorkerHandle};

pub use events::{
    FeedItem, MediaEvent, Participation, RecordStop, RoomEvent, TapFrame, Track, TAP_QUEUE_FRAMES,
    TICK,
};

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
    #[error("cannot start a media worker: {0}")]
    Worker(#[source] std::io::Error),
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
    next_stream_id: AtomicU64,
    next_room_id: AtomicU64,
}

impl MediaEngine {
    /// Starts the worker threads. They stop once the engine and every
    /// stream handle are dropped.
    pub fn start(config: MediaConfig) -> Result<MediaEngine, MediaError> {
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
        let workers = (0..count)
            .map(worker::spawn)
            .collect::<Result<_, _>>()
            .map_err(MediaError::Worker)?;
        Ok(MediaEngine {
            inner: Arc::new(Inner {
                config,
                ports,
                workers,
                next_stream_id: AtomicU64::new(1),
                next_room_id: AtomicU64::new(1),
            }),
        })
    }

    /// The configuration the engine runs with (for SDP: `advertise_ip`).
    pub fn config(&self) -> &MediaConfig {
        &self.inner.config
    }

    fn least_loaded(&self) -> usize {
        self.inner
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.load())
            .map_or(0, |(index, _)| index)
    }

    /// Binds a new stream (RTP on an even port, RTCP on the next) and hands it
    /// to the least loaded worker. Events of the stream go to `events`.
    pub fn allocate(&self, events: UnboundedSender<MediaEvent>) -> Result<Stream, MediaError> {
        self.allocate_on(self.least_loaded(), events)
    }

    /// Like [`MediaEngine::allocate`], on the worker `near` is on now, so a bridge of the two
    /// needs no migration.
    pub fn allocate_near(
        &self,
        near: &Stream,
        events: UnboundedSender<MediaEvent>,
    ) -> Result<Stream, MediaError> {
        self.allocate_on(near.route.worker(), events)
    }

    /// Like [`MediaEngine::allocate`], on worker `index` (modulo the worker count): for tests
    /// and benchmarks that place streams on purpose.
    pub fn allocate_on_worker(
        &self,
        index: usize,
        events: UnboundedSender<MediaEvent>,
    ) -> Result<Stream, MediaError> {
        let count = self.inner.workers.len().max(1);
        self.allocate_on(index % count, events)
    }

    /// Media worker threads.
    pub fn workers(&self) -> usize {
        self.inner.workers.len()
    }

    /// Creates a conference room on the least loaded worker (or on `worker`, modulo the
    /// count). Its participants move to that worker when they join.
    pub fn create_room(
        &self,
        worker: Option<usize>,
        events: UnboundedSender<RoomEvent>,
    ) -> Result<Room, MediaError> {
        let count = self.inner.workers.len().max(1);
        let index = worker.map_or_else(|| self.least_loaded(), |w| w % count);
        let handle = self
            .inner
            .workers
            .get(index)
            .ok_or(MediaError::WorkersStopped)?;
        let id = self.inner.next_room_id.fetch_add(1, Ordering::Relaxed);
        let link = handle.link();
        link.send(Command::AddRoom(Box::new(RoomState::new(id, events))))
            .map_err(|_| MediaError::WorkersStopped)?;
        Ok(Room {
            id,
            worker: index,
            link,
        })
    }

    fn allocate_on(
        &self,
        worker_index: usize,
        events: UnboundedSender<MediaEvent>,
    ) -> Result<Stream, MediaError> {
        let inner = &*self.inner;
        let worker = inner
            .workers
            .get(worker_index)
            .ok_or(MediaError::WorkersStopped)?;
        let (lease, rtp, rtcp) = bind_pair(inner)?;
        let id = inner.next_stream_id.fetch_add(1, Ordering::Relaxed);
        let local_port = lease.port();
        let state = stream::StreamState::new(id, rtp, rtcp, lease, events, worker.load_counter());
        let link = worker.link();
        link.send(Command::Add(Box::new(state)))
            .map_err(|_| MediaError::WorkersStopped)?;
        Ok(Stream {
            local_port,
            route: Arc::new(Route {
                id,
                at: Mutex::new((worker_index, link)),
            }),
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
) -> Result<(ports::PortLease, std::net::UdpSocket, std::net::UdpSocket), MediaError> {
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

fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
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
    route: Arc<Route>,
}

/// Where a stream's commands go: the worker it is on. A stream moves to another worker when
/// it is bridged to a stream there or joins a room there; the move and every command take
/// this lock, so commands reach the stream in the order they were given.
#[derive(Debug)]
struct Route {
    id: u64,
    /// The worker's index and command link.
    at: Mutex<(usize, Arc<Link>)>,
}

type RouteGuard<'a> = std::sync::MutexGuard<'a, (usize, Arc<Link>)>;

impl Route {
    fn lock(&self) -> RouteGuard<'_> {
        // A panic while holding it cannot leave the pair half-written: use it as is.
        self.at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn worker(&self) -> usize {
        self.lock().0
    }

    fn send(&self, command: Command) {
        if self.lock().1.send(command).is_err() {
            tracing::warn!(stream = self.id, "media worker gone; command dropped");
        }
    }

    /// Moves the stream (whose route `at` is) to worker `to`: the new worker is told to hold
    /// back commands naming the stream until it arrives, the old one hands it over.
    fn migrate(id: u64, at: &mut RouteGuard<'_>, to: (usize, Arc<Link>)) {
        if Arc::ptr_eq(&at.1, &to.1) {
            return;
        }
        if to.1.send(Command::Expect(id)).is_err() {
            tracing::warn!(stream = id, "media worker gone; stream not moved");
            return;
        }
        let _ = at.1.send(Command::Migrate {
            id,
            to: Arc::clone(&to.1),
        });
        tracing::info!(
            stream = id,
            from = at.0,
            to = to.0,
            "media stream moves to another worker"
        );
        **at = to;
    }

    /// Bridges two streams, moving `a` to `b`'s worker first when they are apart.
    fn bridge(a: &Route, b: &Route) {
        if a.id == b.id {
            return;
        }
        // Locked in id order, so two bridges of the same pair cannot deadlock.
        let (mut ga, gb) = if a.id < b.id {
            let ga = a.lock();
            (ga, b.lock())
        } else {
            let gb = b.lock();
            (a.lock(), gb)
        };
        let target = (gb.0, Arc::clone(&gb.1));
        drop(gb);
        Route::migrate(a.id, &mut ga, target);
        if ga.1.send(Command::Bridge(a.id, b.id)).is_err() {
            tracing::warn!(a = a.id, b = b.id, "media worker gone; not bridged");
        }
    }

    fn join(&self, room: &Room, part: Participation) {
        let mut at = self.lock();
        Route::migrate(self.id, &mut at, (room.worker, Arc::clone(&room.link)));
        let join = Command::Join {
            room: room.id,
            stream: self.id,
            part,
        };
        if at.1.send(join).is_err() {
            tracing::warn!(
                stream = self.id,
                room = room.id,
                "media worker gone; not joined"
            );
        }
    }
}

/// A cloneable reference to a stream that another task owns, to bridge to it or join it to a
/// room (a queued caller, taken by an agent's call). It does not keep the stream alive.
#[derive(Debug, Clone)]
pub struct StreamRef(Arc<Route>);

impl StreamRef {
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The worker the stream is on now.
    pub fn worker(&self) -> usize {
        self.0.worker()
    }

    /// Joins the stream to `room` (see [`Stream::join_room`]).
    pub fn join_room(&self, room: &Room, part: Participation) {
        self.0.join(room, part);
    }
}

/// Handle on a conference room (a mixer) on one worker. Dropping it ends the room: its
/// participants stay, out of any room, and its recordings end with [`RecordStop::Hangup`].
#[derive(Debug)]
pub struct Room {
    id: u64,
    worker: usize,
    link: Arc<Link>,
}

impl Room {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The worker the room mixes on.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Plays into the room (an announcement, a beep): every participant that hears the room
    /// hears it, and so do the room's recordings. Replaces what played;
    /// [`RoomEvent::PlaybackDone`] follows the last frame.
    pub fn play(&self, id: u64, samples: Arc<[i16]>, loops: u32) {
        self.send(RoomCommand::Play { id, samples, loops });
    }

    pub fn stop_playback(&self) {
        self.send(RoomCommand::StopPlayback);
    }

    /// Records what the room hears (all heard participants and what plays into it), mono, at
    /// `path`. Several may run; each ends with [`RoomEvent::RecordingStopped`].
    pub fn start_recording(&self, id: u64, path: PathBuf) {
        self.send(RoomCommand::StartRecording { id, path });
    }

    pub fn stop_recording(&self, id: u64) {
        self.send(RoomCommand::StopRecording { id });
    }

    fn send(&self, command: RoomCommand) {
        if self.link.send(Command::Room(self.id, command)).is_err() {
            tracing::warn!(room = self.id, "media worker gone; room command dropped");
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        let _ = self.link.send(Command::RemoveRoom(self.id));
    }
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

    /// Makes the stream a browser leg: `session` (negotiated by the caller) takes over the RTP
    /// socket for ICE, DTLS-SRTP and RTCP; `media` says what it sends and accepts.
    pub fn set_webrtc(&self, session: webrtc::WebRtcSession, media: webrtc::WebRtcMedia) {
        self.send(StreamCommand::WebRtc {
            transport: Box::new(session.into_transport()),
            media,
        });
    }

    /// A browser leg's new offer (a re-INVITE) to its session; the answer (or why not) comes on
    /// the receiver.
    pub fn webrtc_offer(
        &self,
        offer: String,
    ) -> tokio::sync::oneshot::Receiver<Result<String, String>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(StreamCommand::WebRtcOffer { offer, reply });
        answer
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

    /// Relays what arrives on each stream to the other's far end, packet by
    /// packet as it arrives: payload copied without decoding when both use one
    /// codec, PCMU<->PCMA transcoded otherwise, RFC 4733 events with the other
    /// leg's payload type (and still reported as [`MediaEvent::Dtmf`] where
    /// they arrive). Each outgoing leg keeps its own SSRC, sequence numbers and
    /// timestamp base. Stops playback on both; a stream on hold receives
    /// nothing. Replaces an earlier bridge (or room) of either stream; dropping
    /// either ends it. Streams on different workers are bridged all the same:
    /// this one moves to the other's worker first (its sockets change threads,
    /// not ports), so the relay itself never crosses a thread or takes a lock.
    pub fn bridge(&self, other: &Stream) {
        Route::bridge(&self.route, &other.route);
    }

    /// Like [`Stream::bridge`], to a stream another task owns.
    pub fn bridge_to(&self, other: &StreamRef) {
        Route::bridge(&self.route, &other.0);
    }

    /// Ends the bridge this stream is in (both directions).
    pub fn unbridge(&self) {
        self.route.send(Command::Unbridge(self.route.id));
    }

    /// This stream's id (for [`Participation::coach_of`]).
    pub fn id(&self) -> u64 {
        self.route.id
    }

    /// A reference another task can bridge to or join to a room.
    pub fn reference(&self) -> StreamRef {
        StreamRef(Arc::clone(&self.route))
    }

    /// The worker the stream is on now.
    pub fn worker(&self) -> usize {
        self.route.worker()
    }

    /// Joins `room` (moving to its worker when elsewhere), leaving a bridge or another room;
    /// called again, changes how the stream takes part (mute, hold, coach). Joining stops
    /// playback; while the stream hears the room its own playback is mixed into what it hears.
    pub fn join_room(&self, room: &Room, part: Participation) {
        self.route.join(room, part);
    }

    /// Leaves the room it is in.
    pub fn leave_room(&self) {
        self.route.send(Command::Leave(self.route.id));
    }

    /// Forks the stream's decoded audio (`track`) to a consumer, at most
    /// [`TAP_QUEUE_FRAMES`] frames behind: frames the consumer is too slow for are dropped and
    /// counted, never waited for. Several taps may run, each with its own `id`.
    pub fn tap(&self, id: u64, track: Track) -> std::sync::mpsc::Receiver<TapFrame> {
        let (sink, frames) = std::sync::mpsc::sync_channel(TAP_QUEUE_FRAMES);
        self.send(StreamCommand::AddTap { id, track, sink });
        frames
    }

    pub fn remove_tap(&self, id: u64) {
        self.send(StreamCommand::RemoveTap { id });
    }

    /// Sends audio that another source produces (a WebSocket's frames, a synthesiser's
    /// output) when nothing else plays: one frame per tick while frames wait, nothing when
    /// none does. Replaces an earlier feed. Returns the sending side, holding up to `capacity`
    /// items; dropping it ends the feed with [`MediaEvent::FeedEnded`] once all was sent.
    pub fn feed(&self, id: u64, capacity: usize) -> std::sync::mpsc::SyncSender<FeedItem> {
        let (tx, source) = std::sync::mpsc::sync_channel(capacity.max(1));
        self.send(StreamCommand::Feed { id, source });
        tx
    }

    pub fn stop_feed(&self) {
        self.send(StreamCommand::StopFeed);
    }

    /// Records the whole call until [`Stream::stop_recording`]`(id)` or drop,
    /// both directions placed by arrival time: `channels` 1 is the mix of what
    /// is received and what is sent, 2 puts what the far end sends us on the
    /// left and what we send the far end (the bridged leg, the room, or
    /// playback) on the right. Several run at once, each complete; one with
    /// the same `id` is replaced (and stops as `Stopped`). Each ends with
    /// [`MediaEvent::RecordingStopped`].
    pub fn start_call_recording(&self, id: u64, path: PathBuf, channels: u16) {
        self.send(StreamCommand::StartCallRecording { id, path, channels });
    }

    /// Sends DTMF digits (`0-9 * # A-D`; `w` pauses 0.5 s, `W` 1 s; others are
    /// skipped): RFC 4733 events of 160 ms with the end packet sent three
    /// times and 80 ms between digits, or in-band tones when no
    /// telephone-event was negotiated. Playback and relayed audio pause
    /// meanwhile. [`MediaEvent::DigitsSent`] follows the last digit; a new
    /// call replaces a running one.
    pub fn send_digits(&self, id: u64, digits: &str) {
        self.send(StreamCommand::SendDigits {
            id,
            digits: digits.to_owned(),
        });
    }

    fn send(&self, command: StreamCommand) {
        self.route.send(Command::Stream(self.route.id, command));
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // If the worker is gone its streams (and their ports) were dropped with it.
        let _ = self.route.lock().1.send(Command::Remove(self.route.id));
    }
}
