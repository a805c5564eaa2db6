//! One RTP/RTCP stream as its worker holds it: sockets, sender and receiver
//! state, what plays, what records, the digits it sends and the stream it is
//! bridged to.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use media::{Codec, FRAME_SAMPLES};
use rtp::dtmf::{DtmfReceiver, DtmfSender};
use rtp::rtcp::{self, SenderInfo};
use rtp::{ReceiverStats, RtpHeader, RtpSender};
use tokio::sync::mpsc::UnboundedSender;

use super::control::StreamCommand;
use super::events::{FeedItem, MediaEvent, Participation, RecordStop, TapFrame, Track};
use super::ports::PortLease;
use super::recording::{CallRecording, Recording, Side};
use super::webrtc::{ClearPacket, WebRtcTransport};

/// Largest datagram read; RTP for G.711 at 20 ms is 172 bytes, anything
/// longer than this is not ours and is cut (then fails to parse or decodes
/// as garbage audio, both harmless).
const MAX_DATAGRAM: usize = 1500;

/// RFC 4733 digits sent by `send_digits`: tone length and the pause after
/// each (Twilio's sendDigits spacing is close to this).
const DIGIT_TONE: Duration = Duration::from_millis(160);
const DIGIT_GAP_TICKS: u32 = 4;
/// `w` in a digit string: half a second.
const PAUSE_TICKS: u32 = 25;
/// In-band DTMF tone length in frames (160 ms).
const INBAND_TONE_MS: u32 = 160;

/// Nominal RTCP interval (RFC 3550 §6.2 minimum of 5 s), randomised by ±50 %
/// (§6.3.1) so streams started together do not report together.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// Buffers shared by all streams of a worker, so the per-packet path never
/// allocates.
#[derive(Debug)]
pub(crate) struct Scratch {
    datagram: Box<[u8]>,
    pcm: Vec<i16>,
    pub(crate) frame: [i16; FRAME_SAMPLES],
    payload: Vec<u8>,
    packet: Vec<u8>,
}

/// A received packet to be relayed to the bridged stream; its bytes stay in
/// [`Scratch`] (`datagram[payload]`).
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) peer_slot: usize,
    header: RtpHeader,
    payload: std::ops::Range<usize>,
    /// The codec of the payload, or `None` for a telephone-event.
    codec: Option<Codec>,
}

/// The mapping from a bridged peer's incoming RTP timestamps to ours: the
/// outgoing stream keeps its own SSRC, sequence and timestamp base, and the
/// spacing of the incoming timestamps.
#[derive(Debug, Clone, Copy)]
struct TimestampMap {
    ssrc: u32,
    offset: u32,
}

/// Digits being sent, one tick at a time.
#[derive(Debug)]
struct Digits {
    id: u64,
    queue: VecDeque<char>,
    current: DigitStep,
}

#[derive(Debug)]
enum DigitStep {
    Next,
    Event(DtmfSender),
    /// In-band tone: samples and how far they were sent.
    Tone(Vec<i16>, usize),
    /// Ticks of pause left (silence while in-band, nothing for RFC 4733).
    Gap(u32),
}

impl Scratch {
    pub(crate) fn new() -> Scratch {
        Scratch {
            datagram: vec![0; MAX_DATAGRAM].into_boxed_slice(),
            pcm: Vec::with_capacity(MAX_DATAGRAM),
            frame: [0; FRAME_SAMPLES],
            payload: Vec::with_capacity(MAX_DATAGRAM),
            packet: Vec::with_capacity(MAX_DATAGRAM),
        }
    }
}

/// The source named for packets a browser leg decrypted (str0m knows the real one).
const WEBRTC_SOURCE: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// The far end as negotiated in SDP (RTP/RTCP addresses replaced by latching).
#[derive(Debug, Clone, Copy)]
struct Remote {
    rtp: SocketAddr,
    rtcp: SocketAddr,
    codec: Codec,
    payload_type: u8,
    telephone_event_pt: Option<u8>,
    /// Symmetric RTP: set once a valid packet came in, from then on `rtp` is
    /// that packet's source and other sources are ignored.
    rtp_latched: bool,
    rtcp_latched: bool,
}

#[derive(Debug)]
pub(crate) struct Playback {
    id: u64,
    samples: Arc<[i16]>,
    position: usize,
    /// 0: until stopped.
    loops: u32,
    /// Completed passes over `samples`.
    passes: u32,
}

impl Playback {
    pub(crate) fn new(id: u64, samples: Arc<[i16]>, loops: u32) -> Playback {
        Playback {
            id,
            samples,
            position: 0,
            loops,
            passes: 0,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

/// Most decoded audio a participant's inbox holds for its room: three frames. Beyond it the
/// oldest is dropped, so a far end whose clock runs fast (or a burst after a stall) never adds
/// delay that stays.
const INBOX_MAX_SAMPLES: usize = 3 * FRAME_SAMPLES;

/// Ticks in a row a spare frame may wait in an inbox before one is dropped: half a second.
const SPARE_TICKS: u32 = 25;

/// A frame under this level is a pause, which an inbox may drop to give back delay.
const PAUSE_DBFS: f32 = -45.0;

/// A room participant's received audio, decoded, waiting for the room's next tick.
///
/// The room takes one frame per tick. A burst (two packets between two ticks, after a stall
/// of the far end or of the network) leaves a spare frame that would otherwise delay everything
/// after it for the rest of the call; once a spare frame has waited [`SPARE_TICKS`] ticks in a
/// row, the oldest frame is dropped, so the added delay goes back to under one frame. Jitter
/// (a spare frame one tick, none the next) drops nothing.
#[derive(Debug, Default)]
struct Inbox {
    samples: VecDeque<i16>,
    /// Samples dropped because the inbox was full.
    dropped: u64,
    /// Frames dropped because a spare one waited too long.
    trimmed: u64,
    /// Ticks that found less than a frame (silence was used).
    underruns: u64,
    /// Consecutive ticks that left a spare frame behind.
    spare_ticks: u32,
}

impl Inbox {
    fn push(&mut self, pcm: &[i16]) {
        self.samples.extend(pcm);
        if self.samples.len() > INBOX_MAX_SAMPLES {
            let excess = self.samples.len() - INBOX_MAX_SAMPLES;
            self.samples.drain(..excess);
            self.dropped += excess as u64;
        }
    }

    /// Drops the quieter of the next two frames (the next one if only one waits) if it is a
    /// pause (under [`PAUSE_DBFS`]); false when both hold sound.
    fn drop_quiet_frame(&mut self) -> bool {
        let level = |start: usize| -> f32 {
            let power: f64 = self
                .samples
                .range(start..start + FRAME_SAMPLES)
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                / FRAME_SAMPLES as f64;
            let rms = power.sqrt() / 32768.0;
            if rms > 0.0 {
                (20.0 * rms.log10()) as f32
            } else {
                media::level::FLOOR_DBFS
            }
        };
        let first = level(0);
        let candidate = if self.samples.len() >= 2 * FRAME_SAMPLES {
            let second = level(FRAME_SAMPLES);
            if second < first {
                (FRAME_SAMPLES, second)
            } else {
                (0, first)
            }
        } else {
            (0, first)
        };
        if candidate.1 >= PAUSE_DBFS {
            return false;
        }
        self.samples.drain(candidate.0..candidate.0 + FRAME_SAMPLES);
        true
    }

    /// This tick's frame; false (and silence) when less than a frame waits.
    fn pull(&mut self, frame: &mut [i16; FRAME_SAMPLES]) -> bool {
        if self.samples.len() < FRAME_SAMPLES {
            self.spare_ticks = 0;
            frame.fill(0);
            return false;
        }
        for (out, sample) in frame.iter_mut().zip(self.samples.drain(..FRAME_SAMPLES)) {
            *out = sample;
        }
        if self.samples.len() >= FRAME_SAMPLES {
            self.spare_ticks += 1;
            // Given back in a pause: a waiting frame that holds sound is kept, and the next
            // ticks try again (speech has a pause every few hundred milliseconds).
            if self.spare_ticks >= SPARE_TICKS && self.drop_quiet_frame() {
                self.trimmed += 1;
                self.spare_ticks = 0;
            }
        } else {
            self.spare_ticks = 0;
        }
        true
    }
}

/// A consumer of a stream's audio ([`super::Stream::tap`]).
#[derive(Debug)]
struct Tap {
    id: u64,
    track: Track,
    sink: SyncSender<TapFrame>,
    /// Frames the consumer was too slow to take.
    dropped: u64,
}

impl Tap {
    fn offer(&mut self, track: Track, now: Instant, pcm: &[i16]) {
        if self.track != track && self.track != Track::Both {
            return;
        }
        for chunk in pcm.chunks(FRAME_SAMPLES) {
            let mut samples = [0; FRAME_SAMPLES];
            samples[..chunk.len()].copy_from_slice(chunk);
            let frame = TapFrame {
                track,
                at: now,
                len: chunk.len(),
                samples,
            };
            if let Err(TrySendError::Full(_)) = self.sink.try_send(frame) {
                self.dropped += 1;
            }
        }
    }
}

/// Audio fed into the stream from elsewhere ([`super::Stream::feed`]).
#[derive(Debug)]
struct Feed {
    id: u64,
    source: Receiver<FeedItem>,
}

/// Counters kept per stream (logged when the stream closes).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) rtp_received: u64,
    pub(crate) rtcp_received: u64,
    /// Datagrams that were not RTP, came from an unexpected source or carried
    /// a payload type that was not negotiated.
    pub(crate) ignored: u64,
    pub(crate) sent: u64,
    pub(crate) send_errors: u64,
}

#[derive(Debug)]
pub(crate) struct StreamState {
    id: u64,
    /// The worker slot of the stream this one is bridged to.
    bridge: Option<usize>,
    relay_map: Option<TimestampMap>,
    /// Whole-call recordings, each complete on its own (the call's, a dial's, ...).
    call_recordings: Vec<CallRecording>,
    taps: Vec<Tap>,
    feed: Option<Feed>,
    /// The room this stream takes part in, and how.
    room: Option<(u64, Participation)>,
    inbox: Inbox,
    digits: Option<Digits>,
    // Field order matters: the sockets close before the lease gives the ports back.
    rtp: UdpSocket,
    rtcp: UdpSocket,
    _lease: PortLease,
    load: Arc<AtomicUsize>,
    events: UnboundedSender<MediaEvent>,
    remote: Option<Remote>,
    sender: RtpSender,
    /// A packet went out on the previous tick; the next one after a pause
    /// starts a talkspurt and carries the marker bit (RFC 3551 §4.1).
    talking: bool,
    hold: bool,
    playback: Option<Playback>,
    recording: Option<Recording>,
    dtmf: DtmfReceiver,
    stats: ReceiverStats,
    next_rtcp: Instant,
    /// Sender packet count at the last report: SR only if we sent since.
    packets_at_last_report: u32,
    /// RTCP CNAME: random per stream (RFC 7022), so it reveals nothing.
    cname: String,
    counters: Counters,
    /// A browser leg: DTLS-SRTP and ICE on the RTP socket (RTCP goes with it).
    webrtc: Option<Box<WebRtcTransport>>,
    /// Packets the WebRTC transport decrypted, waiting to take the plain-RTP path.
    clear: Vec<ClearPacket>,
}

impl StreamState {
    pub(crate) fn new(
        id: u64,
        rtp: UdpSocket,
        rtcp: UdpSocket,
        lease: PortLease,
        events: UnboundedSender<MediaEvent>,
        load: Arc<AtomicUsize>,
    ) -> StreamState {
        load.fetch_add(1, Ordering::Relaxed);
        // RFC 3550 §5.1: random SSRC, initial sequence number and timestamp.
        let sender = RtpSender::new(rand::random(), rand::random(), rand::random());
        StreamState {
            id,
            bridge: None,
            relay_map: None,
            call_recordings: Vec::new(),
            taps: Vec::new(),
            feed: None,
            room: None,
            inbox: Inbox::default(),
            digits: None,
            rtp,
            rtcp,
            _lease: lease,
            load,
            events,
            remote: None,
            sender,
            talking: false,
            hold: false,
            playback: None,
            recording: None,
            dtmf: DtmfReceiver::new(),
            stats: ReceiverStats::new(8000),
            // RFC 3550 §6.2: the first report may go after half the minimum interval.
            next_rtcp: Instant::now() + rtcp_interval() / 2,
            packets_at_last_report: 0,
            cname: format!("{:016x}@dialtone", rand::random::<u64>()),
            counters: Counters::default(),
            webrtc: None,
            clear: Vec::new(),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn rtp_fd(&self) -> RawFd {
        self.rtp.as_raw_fd()
    }

    pub(crate) fn rtcp_fd(&self) -> RawFd {
        self.rtcp.as_raw_fd()
    }

    /// Counts the stream on another worker's load (after a migration).
    pub(crate) fn set_load(&mut self, load: Arc<AtomicUsize>) {
        self.load.fetch_sub(1, Ordering::Relaxed);
        load.fetch_add(1, Ordering::Relaxed);
        self.load = load;
    }

    pub(crate) fn room(&self) -> Option<u64> {
        self.room.map(|(id, _)| id)
    }

    /// Joins (or, with `None`, leaves) a room. Joining stops playback, like a bridge; leaving
    /// empties the inbox.
    pub(crate) fn set_room(&mut self, room: Option<(u64, Participation)>) {
        let joining = room.is_some_and(|(id, _)| self.room() != Some(id));
        if joining {
            self.playback = None;
        }
        if room.is_none() {
            self.inbox.samples.clear();
        }
        self.room = room;
    }

    /// This tick's frame of what the far end said, for the room (silence when none came).
    pub(crate) fn pull_room_frame(&mut self, frame: &mut [i16; FRAME_SAMPLES]) {
        let started = self.counters.rtp_received > 0;
        if !self.inbox.pull(frame) && started {
            self.inbox.underruns += 1;
        }
    }

    /// Whether the room sends this stream its mix this tick: it hears the room, has a far end
    /// to send to, is not on hold and sends no digits.
    pub(crate) fn takes_mix(&self) -> bool {
        self.room.is_some_and(|(_, part)| part.hears)
            && self.remote.is_some()
            && !self.hold
            && self.digits.is_none()
    }

    /// The stream's own next frame (playback, else a feed) for mixing into what it hears;
    /// false when nothing plays. Reports a finished playback as `send_frame` does.
    pub(crate) fn own_frame(&mut self, frame: &mut [i16; FRAME_SAMPLES]) -> bool {
        if let Some(playback) = self.playback.as_mut() {
            let last = fill_frame(playback, frame);
            if matches!(last, Frame::Last | Frame::Empty) {
                if let Some(done) = self.playback.take() {
                    self.emit(MediaEvent::PlaybackDone { id: done.id });
                }
            }
            return last != Frame::Empty;
        }
        self.feed_frame(frame)
    }

    /// Sends a frame the room mixed for this stream.
    pub(crate) fn send_mixed(
        &mut self,
        now: Instant,
        frame: &[i16; FRAME_SAMPLES],
        scratch: &mut Scratch,
    ) {
        let Some(remote) = self.remote.filter(|_| !self.hold) else {
            self.sender.advance_timestamp(FRAME_SAMPLES as u32);
            return;
        };
        remote.codec.encode(frame, &mut scratch.payload);
        let marker = !self.talking;
        self.talking = true;
        self.sender.write_packet(
            remote.payload_type,
            FRAME_SAMPLES as u32,
            marker,
            &scratch.payload,
            &mut scratch.packet,
        );
        self.handle_sent_audio(now, frame);
        self.send_rtp(remote.rtp, &scratch.packet);
    }

    /// The next frame of the feed into `frame`; false when the feed has none now.
    fn feed_frame(&mut self, frame: &mut [i16; FRAME_SAMPLES]) -> bool {
        loop {
            let Some(feed) = self.feed.as_mut() else {
                return false;
            };
            match feed.source.try_recv() {
                Ok(FeedItem::Audio(samples)) => {
                    *frame = samples;
                    return true;
                }
                Ok(FeedItem::Mark(mark)) => {
                    let id = feed.id;
                    self.emit(MediaEvent::FeedMark { id, mark });
                }
                Err(TryRecvError::Empty) => return false,
                Err(TryRecvError::Disconnected) => {
                    let id = feed.id;
                    self.feed = None;
                    self.emit(MediaEvent::FeedEnded { id });
                    return false;
                }
            }
        }
    }

    /// What the far end sent, decoded: to the recordings, the taps and the room.
    fn handle_received_audio(&mut self, now: Instant, pcm: &[i16]) {
        for recording in &mut self.call_recordings {
            recording.handle_audio(now, Side::Received, pcm);
        }
        for tap in &mut self.taps {
            tap.offer(Track::Inbound, now, pcm);
        }
        if self.room.is_some() {
            self.inbox.push(pcm);
        }
    }

    /// What we sent the far end, decoded: to the recordings and the taps.
    fn handle_sent_audio(&mut self, now: Instant, pcm: &[i16]) {
        for recording in &mut self.call_recordings {
            recording.handle_audio(now, Side::Sent, pcm);
        }
        for tap in &mut self.taps {
            tap.offer(Track::Outbound, now, pcm);
        }
    }

    /// Whether received audio must be decoded (someone consumes it as PCM).
    fn wants_pcm(&self) -> bool {
        self.recording.is_some()
            || !self.call_recordings.is_empty()
            || !self.taps.is_empty()
            || self.room.is_some()
    }

    /// Bridges to (or, with `None`, unbridges from) the stream in `slot`;
    /// returns the previous peer. A new bridge stops playback, and either way
    /// the next relayed packet starts a new timestamp mapping.
    pub(crate) fn set_bridge(&mut self, slot: Option<usize>) -> Option<usize> {
        if slot.is_some() {
            self.playback = None;
        }
        self.relay_map = None;
        std::mem::replace(&mut self.bridge, slot)
    }

    pub(crate) fn handle_command(&mut self, command: StreamCommand, now: Instant) {
        match command {
            StreamCommand::SetRemote {
                remote_rtp,
                remote_rtcp,
                codec,
                payload_type,
                telephone_event_pt,
            } => {
                self.remote = Some(Remote {
                    rtp: remote_rtp,
                    rtcp: remote_rtcp,
                    codec,
                    payload_type,
                    telephone_event_pt,
                    rtp_latched: false,
                    rtcp_latched: false,
                });
            }
            StreamCommand::WebRtc { transport, media } => {
                self.webrtc = Some(transport);
                self.remote = Some(Remote {
                    // str0m sends to the address ICE chose; this one only names the source of
                    // the packets it decrypts.
                    rtp: WEBRTC_SOURCE,
                    rtcp: WEBRTC_SOURCE,
                    codec: media.codec,
                    payload_type: media.payload_type,
                    telephone_event_pt: media.telephone_event_pt,
                    rtp_latched: true,
                    rtcp_latched: true,
                });
            }
            StreamCommand::WebRtcOffer { offer, reply } => {
                let answer = match self.webrtc.as_mut() {
                    Some(webrtc) => webrtc.accept_offer(&offer),
                    None => Err("not a browser leg".to_owned()),
                };
                let _ = reply.send(answer);
            }
            StreamCommand::Play { id, samples, loops } => {
                self.playback = Some(Playback {
                    id,
                    samples,
                    position: 0,
                    loops,
                    passes: 0,
                });
            }
            StreamCommand::StopPlayback => self.playback = None,
            StreamCommand::StartRecording {
                id,
                path,
                max_length,
                silence_timeout,
            } => {
                self.end_recording(RecordStop::Stopped);
                match Recording::start(id, path, max_length, silence_timeout, now) {
                    Ok(recording) => self.recording = Some(recording),
                    Err(e) => {
                        tracing::warn!(stream = self.id, recording = id, error = %e, "cannot start recording");
                        self.emit(MediaEvent::RecordingFailed {
                            id,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            StreamCommand::StartCallRecording { id, path, channels } => {
                self.end_call_recording(id, RecordStop::Stopped);
                match CallRecording::start(id, path, channels, now) {
                    Ok(recording) => self.call_recordings.push(recording),
                    Err(e) => {
                        tracing::warn!(stream = self.id, recording = id, error = %e, "cannot start call recording");
                        self.emit(MediaEvent::RecordingFailed {
                            id,
                            reason: e.to_string(),
                        });
                    }
                }
            }
            StreamCommand::StopRecording { id } => {
                if self.recording.as_ref().is_some_and(|r| r.id() == id) {
                    self.end_recording(RecordStop::Stopped);
                }
                self.end_call_recording(id, RecordStop::Stopped);
            }
            StreamCommand::SetHold(on) => self.hold = on,
            StreamCommand::SendDigits { id, digits } => {
                self.digits = Some(Digits {
                    id,
                    queue: digits.chars().collect(),
                    current: DigitStep::Next,
                });
            }
            StreamCommand::AddTap { id, track, sink } => {
                self.taps.retain(|t| t.id != id);
                self.taps.push(Tap {
                    id,
                    track,
                    sink,
                    dropped: 0,
                });
            }
            StreamCommand::RemoveTap { id } => self.taps.retain(|t| t.id != id),
            StreamCommand::Feed { id, source } => self.feed = Some(Feed { id, source }),
            StreamCommand::StopFeed => self.feed = None,
        }
    }

    /// One 20 ms step: send what is due (digits first, else playback) and
    /// keep the recordings and RTCP going. Receiving is not part of it: the
    /// worker reads each socket when it has data.
    pub(crate) fn tick(&mut self, now: Instant, wall: SystemTime, scratch: &mut Scratch) {
        if let Some(stop) = self.recording.as_mut().and_then(|r| r.poll_stop(now)) {
            self.end_recording(stop);
        }
        if self.digits.is_some() {
            self.send_digit_step(now, scratch);
        } else if !self.takes_mix() {
            // (A stream that takes its room's mix was sent it by the room this tick.)
            self.send_frame(now, scratch);
        }
        for recording in &mut self.call_recordings {
            recording.handle_tick(now);
        }
        if let Some(failed) = self
            .call_recordings
            .iter()
            .find(|r| r.failed())
            .map(CallRecording::id)
        {
            self.end_call_recording(failed, RecordStop::Stopped);
        }
        if let Some(webrtc) = self.webrtc.as_mut() {
            // str0m keeps its own RTCP, multiplexed on the RTP port.
            webrtc.handle_tick(now, &self.rtp, &mut self.clear);
            self.clear.clear();
        } else if now >= self.next_rtcp {
            self.next_rtcp = now + rtcp_interval();
            self.send_rtcp(now, wall, scratch);
        }
    }

    /// Reads one datagram from the RTP socket (the worker calls this when
    /// epoll says it is readable; more waiting datagrams make it readable
    /// again). Returns what to relay when the stream is bridged.
    pub(crate) fn receive_rtp(&mut self, now: Instant, scratch: &mut Scratch) -> Option<Relay> {
        match self.rtp.recv_from(&mut scratch.datagram) {
            Ok((len, source)) if self.webrtc.is_some() => {
                self.receive_webrtc(now, len, source, scratch)
            }
            Ok((len, source)) => {
                let datagram = scratch.datagram.get(..len).unwrap_or_default();
                self.handle_rtp(now, datagram, source, &mut scratch.pcm)
            }
            Err(e) => {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(stream = self.id, error = %e, "RTP receive failed");
                }
                None
            }
        }
    }

    /// A datagram of a browser leg. SRTP audio is opened by the leg's own SRTP into
    /// `scratch.packet` and takes the plain path, relay included; str0m takes the rest (STUN,
    /// DTLS, RTCP, and the audio until the handshake keyed our SRTP), and what it decrypts is
    /// rebuilt as a plain RTP packet and takes the same path.
    fn receive_webrtc(
        &mut self,
        now: Instant,
        len: usize,
        source: SocketAddr,
        scratch: &mut Scratch,
    ) -> Option<Relay> {
        let webrtc = self.webrtc.as_mut()?;
        let datagram = scratch.datagram.get(..len).unwrap_or_default();
        if webrtc.handle_datagram(
            now,
            source,
            datagram,
            &self.rtp,
            &mut self.clear,
            &mut scratch.packet,
        ) {
            return self.handle_clear(now, scratch);
        }
        let mut relay = None;
        let clear = std::mem::take(&mut self.clear);
        for packet in &clear {
            rtp::write_rtp(&packet.header, &packet.payload, &mut scratch.packet);
            relay = relay.or(self.handle_clear(now, scratch));
        }
        self.clear = clear;
        self.clear.clear();
        relay
    }

    /// The clear RTP packet in `scratch.packet` of a browser leg, moved to `scratch.datagram`
    /// where a relay reads its payload.
    fn handle_clear(&mut self, now: Instant, scratch: &mut Scratch) -> Option<Relay> {
        let n = scratch.packet.len();
        let slot = scratch.datagram.get_mut(..n)?;
        slot.copy_from_slice(&scratch.packet);
        let datagram = scratch.datagram.get(..n).unwrap_or_default();
        self.handle_rtp(now, datagram, WEBRTC_SOURCE, &mut scratch.pcm)
    }

    fn handle_rtp(
        &mut self,
        now: Instant,
        datagram: &[u8],
        source: SocketAddr,
        pcm: &mut Vec<i16>,
    ) -> Option<Relay> {
        let Some(remote) = self.remote.as_mut() else {
            // Media before the answer was negotiated: nothing to check it against.
            self.counters.ignored += 1;
            return None;
        };
        let Ok(packet) = rtp::parse_rtp(datagram) else {
            self.counters.ignored += 1;
            return None;
        };
        let pt = packet.header.payload_type;
        let is_audio = pt == remote.payload_type;
        let is_event = Some(pt) == remote.telephone_event_pt;
        if !is_audio && !is_event {
            self.counters.ignored += 1;
            return None;
        }
        if !remote.rtp_latched {
            remote.rtp = source;
            remote.rtp_latched = true;
        } else if source != remote.rtp {
            self.counters.ignored += 1;
            return None;
        }
        let codec = remote.codec;
        self.counters.rtp_received += 1;
        // Advisory: a packet still on probation (RFC 3550 A.1) is used all the same.
        self.stats.handle_packet(now, &packet.header);
        // The payload's place in the datagram, for the relay (parse_rtp
        // returns a subslice of `datagram`).
        let start = packet.payload.as_ptr() as usize - datagram.as_ptr() as usize;
        let payload = start..start + packet.payload.len();
        if is_event {
            if let Some(digit) = self.dtmf.handle_packet(&packet.header, packet.payload) {
                self.emit(MediaEvent::Dtmf { digit });
            }
        } else if self.wants_pcm() {
            pcm.clear();
            codec.decode(packet.payload, pcm);
            if let Some(recording) = self.recording.as_mut() {
                recording.handle_audio(now, packet.header.ssrc, packet.header.timestamp, pcm);
            }
            self.handle_received_audio(now, pcm);
        }
        Some(Relay {
            peer_slot: self.bridge?,
            header: packet.header,
            payload,
            codec: (!is_event).then_some(codec),
        })
    }

    /// Sends a packet that arrived on the bridged stream to this stream's far
    /// end, right away: audio copied as is when both legs use the same codec
    /// and transcoded otherwise, telephone-events with our payload type,
    /// under our SSRC and sequence numbers, timestamps shifted onto ours.
    pub(crate) fn relay_in(&mut self, now: Instant, relay: &Relay, scratch: &mut Scratch) {
        let Some(remote) = self.remote.filter(|_| !self.hold) else {
            return;
        };
        if self.digits.is_some() {
            // Our own digits are on the wire; the peer's audio would interleave.
            return;
        }
        let Scratch {
            datagram,
            pcm,
            payload: converted,
            packet,
            ..
        } = scratch;
        let Some(payload) = datagram.get(relay.payload.clone()) else {
            return;
        };
        let (payload_type, body) = match relay.codec {
            None => match remote.telephone_event_pt {
                Some(pt) => (pt, payload),
                // The far end takes no telephone-events (the digit was
                // reported on the receiving stream all the same).
                None => return,
            },
            Some(codec) => {
                let tapped = !self.call_recordings.is_empty() || !self.taps.is_empty();
                if codec != remote.codec || tapped {
                    pcm.clear();
                    codec.decode(payload, pcm);
                }
                if tapped {
                    for recording in &mut self.call_recordings {
                        recording.handle_audio(now, Side::Sent, pcm);
                    }
                    for tap in &mut self.taps {
                        tap.offer(Track::Outbound, now, pcm);
                    }
                }
                if codec == remote.codec {
                    (remote.payload_type, payload)
                } else {
                    remote.codec.encode(pcm, converted);
                    (remote.payload_type, &converted[..])
                }
            }
        };
        let incoming = relay.header;
        let mut marker = incoming.marker;
        let map = match self.relay_map {
            Some(map) if map.ssrc == incoming.ssrc => map,
            _ => {
                // A new source (or a new bridge): continue our own timeline
                // and mark the discontinuity.
                marker = true;
                let map = TimestampMap {
                    ssrc: incoming.ssrc,
                    offset: self.sender.timestamp().wrapping_sub(incoming.timestamp),
                };
                self.relay_map = Some(map);
                map
            }
        };
        let header = self.sender.next_header_at(
            payload_type,
            incoming.timestamp.wrapping_add(map.offset),
            marker,
        );
        self.sender.count_payload(body.len());
        rtp::write_rtp(&header, body, packet);
        self.send_rtp(remote.rtp, packet);
    }

    fn send_rtp(&mut self, to: SocketAddr, packet: &[u8]) {
        if let Some(webrtc) = self.webrtc.as_mut() {
            if webrtc.send_rtp(Instant::now(), packet, &self.rtp) {
                self.counters.sent += 1;
            }
            return;
        }
        match self.rtp.send_to(packet, to) {
            Ok(_) => self.counters.sent += 1,
            Err(e) => {
                // A full socket buffer or an unreachable peer: the packet is
                // lost like any other RTP loss.
                self.counters.send_errors += 1;
                tracing::trace!(stream = self.id, error = %e, "RTP send failed");
            }
        }
    }

    /// Reads one RTCP datagram (see [`StreamState::receive_rtp`]).
    pub(crate) fn receive_rtcp(&mut self, now: Instant, scratch: &mut Scratch) {
        match self.rtcp.recv_from(&mut scratch.datagram) {
            Ok((len, source)) => {
                let datagram = scratch.datagram.get(..len).unwrap_or_default();
                self.handle_rtcp(now, datagram, source);
            }
            Err(e) => {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(stream = self.id, error = %e, "RTCP receive failed");
                }
            }
        }
    }

    /// Reports from the far end are counted, and an SR feeds LSR/DLSR of our
    /// next report; nothing else in them changes what we do. The RTCP address
    /// latches to the first valid report's source, like RTP's.
    fn handle_rtcp(&mut self, now: Instant, datagram: &[u8], source: SocketAddr) {
        let Some(remote) = self.remote.as_mut() else {
            self.counters.ignored += 1;
            return;
        };
        // Allocates, but reports arrive once every few seconds, not per frame.
        let Ok(packets) = rtcp::parse_compound(datagram) else {
            self.counters.ignored += 1;
            return;
        };
        if !remote.rtcp_latched {
            remote.rtcp = source;
            remote.rtcp_latched = true;
        }
        self.counters.rtcp_received += 1;
        for packet in packets {
            if let rtcp::RtcpPacket::SenderReport { ssrc, info, .. } = packet {
                if self.stats.ssrc() == Some(ssrc) {
                    self.stats.handle_sender_report(now, info.ntp_timestamp);
                }
            }
        }
    }

    /// Sends the next frame of the playback, or nothing.
    fn send_frame(&mut self, now: Instant, scratch: &mut Scratch) {
        let samples = FRAME_SAMPLES as u32;
        let Some(playback) = self.playback.as_mut() else {
            if self.feed_frame(&mut scratch.frame) {
                let sendable = self.remote.filter(|_| !self.hold);
                self.send_audio_frame(now, sendable, scratch);
            } else {
                self.sender.advance_timestamp(samples);
                self.talking = false;
            }
            return;
        };
        let last = fill_frame(playback, &mut scratch.frame);
        let sendable = self.remote.filter(|_| !self.hold);
        match (last, sendable) {
            (Frame::Empty, _) => {
                self.sender.advance_timestamp(samples);
                self.talking = false;
            }
            (_, None) => {
                self.sender.advance_timestamp(samples);
                self.talking = false;
            }
            (_, Some(remote)) => {
                scratch.payload.clear();
                remote.codec.encode(&scratch.frame, &mut scratch.payload);
                let marker = !self.talking;
                self.sender.write_packet(
                    remote.payload_type,
                    samples,
                    marker,
                    &scratch.payload,
                    &mut scratch.packet,
                );
                self.talking = true;
                self.handle_sent_audio(now, &scratch.frame);
                self.send_rtp(remote.rtp, &scratch.packet);
            }
        }
        if matches!(last, Frame::Last | Frame::Empty) {
            if let Some(done) = self.playback.take() {
                self.emit(MediaEvent::PlaybackDone { id: done.id });
            }
        }
    }

    fn send_rtcp(&mut self, now: Instant, wall: SystemTime, scratch: &mut Scratch) {
        let Some(remote) = self.remote else { return };
        let sent_since = self.sender.packet_count() != self.packets_at_last_report;
        self.packets_at_last_report = self.sender.packet_count();
        let report = self.stats.report_block(now);
        if sent_since {
            let info = SenderInfo {
                ntp_timestamp: ntp_timestamp(wall),
                // The next packet's timestamp is the media clock at this tick.
                rtp_timestamp: self.sender.timestamp(),
                packet_count: self.sender.packet_count(),
                octet_count: self.sender.octet_count(),
            };
            rtcp::build_sender_report(
                self.sender.ssrc,
                &info,
                report.as_ref(),
                &self.cname,
                &mut scratch.packet,
            );
        } else {
            rtcp::build_receiver_report(
                self.sender.ssrc,
                report.as_ref(),
                &self.cname,
                &mut scratch.packet,
            );
        }
        if let Err(e) = self.rtcp.send_to(&scratch.packet, remote.rtcp) {
            self.counters.send_errors += 1;
            tracing::trace!(stream = self.id, error = %e, "RTCP send failed");
        }
    }

    /// One tick of `send_digits`: an RFC 4733 packet, a frame of in-band
    /// tone, or a tick of pause. Keeps wall-clock pace when nothing can be
    /// sent, like playback, so `DigitsSent` always comes.
    fn send_digit_step(&mut self, now: Instant, scratch: &mut Scratch) {
        let samples = FRAME_SAMPLES as u32;
        // Taken out while it runs, so sending can borrow the stream.
        let Some(mut digits) = self.digits.take() else {
            return;
        };
        let sendable = self.remote.filter(|_| !self.hold);
        if matches!(digits.current, DigitStep::Next) {
            digits.current = match digits.queue.pop_front() {
                None => {
                    self.sender.advance_timestamp(samples);
                    self.talking = false;
                    self.emit(MediaEvent::DigitsSent { id: digits.id });
                    return;
                }
                Some('w') => DigitStep::Gap(PAUSE_TICKS),
                Some('W') => DigitStep::Gap(2 * PAUSE_TICKS),
                Some(c) => match self.remote.and_then(|r| r.telephone_event_pt) {
                    Some(pt) => {
                        DtmfSender::new(c, pt, DIGIT_TONE).map_or(DigitStep::Next, DigitStep::Event)
                    }
                    None => media::tone::dtmf(c, INBAND_TONE_MS)
                        .map_or(DigitStep::Next, |tone| DigitStep::Tone(tone, 0)),
                },
            };
        }
        match &mut digits.current {
            // A character that is no digit: skipped, the tick passes.
            DigitStep::Next => self.sender.advance_timestamp(samples),
            DigitStep::Event(event) => {
                // poll_packet moves the media clock on by one packet itself.
                if let Some((header, payload)) = event.poll_packet(&mut self.sender) {
                    if let Some(remote) = sendable {
                        rtp::write_rtp(&header, &payload, &mut scratch.packet);
                        self.send_rtp(remote.rtp, &scratch.packet);
                    }
                }
                if event.is_done() {
                    digits.current = DigitStep::Gap(DIGIT_GAP_TICKS);
                }
            }
            DigitStep::Tone(tone, sent) => {
                let end = (*sent + FRAME_SAMPLES).min(tone.len());
                let frame = tone.get(*sent..end).unwrap_or_default();
                scratch.frame[..frame.len()].copy_from_slice(frame);
                scratch.frame[frame.len()..].fill(0);
                *sent = end;
                if end >= tone.len() {
                    digits.current = DigitStep::Gap(DIGIT_GAP_TICKS);
                }
                self.send_audio_frame(now, sendable, scratch);
            }
            DigitStep::Gap(left) => {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    digits.current = DigitStep::Next;
                }
                let inband = self.remote.is_some_and(|r| r.telephone_event_pt.is_none());
                if inband {
                    // Silence, so an in-band detector hears the key released.
                    scratch.frame.fill(0);
                    self.send_audio_frame(now, sendable, scratch);
                } else {
                    self.sender.advance_timestamp(samples);
                    self.talking = false;
                }
            }
        }
        self.digits = Some(digits);
    }

    /// Encodes and sends `scratch.frame` (or only moves the clock on when it
    /// cannot be sent).
    fn send_audio_frame(&mut self, now: Instant, sendable: Option<Remote>, scratch: &mut Scratch) {
        let samples = FRAME_SAMPLES as u32;
        let Some(remote) = sendable else {
            self.sender.advance_timestamp(samples);
            return;
        };
        remote.codec.encode(&scratch.frame, &mut scratch.payload);
        let marker = !self.talking;
        self.talking = true;
        self.sender.write_packet(
            remote.payload_type,
            samples,
            marker,
            &scratch.payload,
            &mut scratch.packet,
        );
        self.handle_sent_audio(now, &scratch.frame);
        self.send_rtp(remote.rtp, &scratch.packet);
    }

    /// Ends call recording `id`, if it runs.
    fn end_call_recording(&mut self, id: u64, stop: RecordStop) {
        let Some(index) = self.call_recordings.iter().position(|r| r.id() == id) else {
            return;
        };
        let recording = self.call_recordings.swap_remove(index);
        match recording.finish() {
            Ok((duration, path)) => self.emit(MediaEvent::RecordingStopped {
                id,
                duration,
                stop,
                path,
            }),
            Err(e) => {
                tracing::warn!(stream = self.id, recording = id, error = %e, "call recording failed");
                self.emit(MediaEvent::RecordingFailed {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn end_recording(&mut self, stop: RecordStop) {
        let Some(recording) = self.recording.take() else {
            return;
        };
        let id = recording.id();
        match recording.finish() {
            Ok((duration, path)) => {
                self.emit(MediaEvent::RecordingStopped {
                    id,
                    duration,
                    stop,
                    path,
                });
            }
            Err(e) => {
                tracing::warn!(stream = self.id, recording = id, error = %e, "recording failed");
                self.emit(MediaEvent::RecordingFailed {
                    id,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn emit(&self, event: MediaEvent) {
        // The owner may have gone (call torn down); the event has no one to tell.
        let _ = self.events.send(event);
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        self.end_recording(RecordStop::Hangup);
        for id in self
            .call_recordings
            .iter()
            .map(CallRecording::id)
            .collect::<Vec<_>>()
        {
            self.end_call_recording(id, RecordStop::Hangup);
        }
        self.load.fetch_sub(1, Ordering::Relaxed);
        let taps_dropped: u64 = self.taps.iter().map(|t| t.dropped).sum();
        tracing::debug!(
            stream = self.id,
            counters = ?self.counters,
            inbox_dropped = self.inbox.dropped,
            inbox_trimmed = self.inbox.trimmed,
            inbox_underruns = self.inbox.underruns,
            taps_dropped,
            "media stream closed"
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Nothing to play (empty samples).
    Empty,
    /// A frame, more follow.
    More,
    /// The last frame of the playback.
    Last,
}

/// Copies the next 160 samples of `playback` into `frame`, wrapping into the
/// next loop mid-frame and padding the very last frame with silence.
pub(crate) fn fill_frame(playback: &mut Playback, frame: &mut [i16; FRAME_SAMPLES]) -> Frame {
    let samples = &playback.samples;
    if samples.is_empty() {
        return Frame::Empty;
    }
    let mut filled = 0;
    while filled < FRAME_SAMPLES {
        if playback.position >= samples.len() {
            playback.passes = playback.passes.saturating_add(1);
            if playback.loops != 0 && playback.passes >= playback.loops {
                break;
            }
            playback.position = 0;
        }
        let take = (FRAME_SAMPLES - filled).min(samples.len() - playback.position);
        frame[filled..filled + take]
            .copy_from_slice(&samples[playback.position..playback.position + take]);
        filled += take;
        playback.position += take;
    }
    frame[filled..].fill(0);
    let last_pass = playback.loops != 0 && playback.passes.saturating_add(1) >= playback.loops;
    if playback.position >= samples.len() && last_pass {
        Frame::Last
    } else {
        Frame::More
    }
}

fn rtcp_interval() -> Duration {
    RTCP_INTERVAL.mul_f64(rand::random::<f64>() + 0.5)
}

/// 64-bit NTP timestamp (seconds since 1900 in the high word) for SRs.
fn ntp_timestamp(wall: SystemTime) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let since_unix = wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

#[cfg(test)]
mod tests {
    use super::*;

    fn playback(samples: Vec<i16>, loops: u32) -> Playback {
        Playback {
            id: 1,
            samples: samples.into(),
            position: 0,
            loops,
            passes: 0,
        }
    }

    fn frames_until_last(p: &mut Playback, limit: usize) -> Vec<[i16; FRAME_SAMPLES]> {
        let mut out = Vec::new();
        let mut frame = [0; FRAME_SAMPLES];
        for _ in 0..limit {
            let kind = fill_frame(p, &mut frame);
            out.push(frame);
            if kind != Frame::More {
                break;
            }
        }
        out
    }

    #[test]
    fn single_pass_pads_the_last_frame() {
        let mut p = playback((1..=400).collect(), 1);
        let frames = frames_until_last(&mut p, 10);
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2][79], 400);
        assert_eq!(frames[2][80], 0);
    }

    #[test]
    fn exact_multiple_ends_on_the_full_frame() {
        let mut p = playback(vec![7; 320], 1);
        assert_eq!(frames_until_last(&mut p, 10).len(), 2);
    }

    #[test]
    fn loops_wrap_mid_frame() {
        let mut p = playback((1..=100).collect(), 3);
        let frames = frames_until_last(&mut p, 10);
        assert_eq!(frames.len(), 2); // 300 samples
        assert_eq!(frames[0][99], 100);
        assert_eq!(frames[0][100], 1);
        assert_eq!(frames[1][139], 100);
        assert_eq!(frames[1][140], 0);
    }

    #[test]
    fn zero_loops_never_ends() {
        let mut p = playback(vec![1; 50], 0);
        assert_eq!(frames_until_last(&mut p, 100).len(), 100);
    }

    #[test]
    fn empty_playback_ends_at_once() {
        let mut p = playback(Vec::new(), 0);
        let mut frame = [0; FRAME_SAMPLES];
        assert_eq!(fill_frame(&mut p, &mut frame), Frame::Empty);
    }

    #[test]
    fn an_inbox_gives_back_the_delay_a_burst_added_but_rides_out_jitter() {
        let mut inbox = Inbox::default();
        let mut frame = [0; FRAME_SAMPLES];
        let packet = [1i16; FRAME_SAMPLES];
        // Jitter: two packets one tick, none the next; nothing is dropped.
        for _ in 0..100 {
            inbox.push(&packet);
            inbox.push(&packet);
            assert!(inbox.pull(&mut frame));
            assert!(inbox.pull(&mut frame));
        }
        assert_eq!(inbox.trimmed, 0);
        // A burst leaves a spare frame for good: it goes after SPARE_TICKS ticks.
        inbox.push(&packet);
        for tick in 1..=SPARE_TICKS {
            inbox.push(&packet);
            assert!(inbox.pull(&mut frame));
            let spare = inbox.samples.len() / FRAME_SAMPLES;
            if tick < SPARE_TICKS {
                assert_eq!(spare, 1, "tick {tick}");
            }
        }
        assert_eq!(inbox.trimmed, 1);
        assert!(inbox.samples.is_empty(), "back to no added delay");
        // Of two waiting frames, the quieter goes, and only if it is a pause.
        let loud = [9000i16; FRAME_SAMPLES];
        let quiet = [10i16; FRAME_SAMPLES];
        inbox.push(&loud);
        inbox.push(&quiet);
        assert!(inbox.drop_quiet_frame());
        assert_eq!(inbox.samples.front(), Some(&9000));
        assert_eq!(inbox.samples.len(), FRAME_SAMPLES);
        assert!(!inbox.drop_quiet_frame(), "a loud frame is never dropped");
        inbox.samples.clear();
        // A full inbox drops the oldest beyond three frames.
        for _ in 0..5 {
            inbox.push(&packet);
        }
        assert_eq!(inbox.samples.len(), INBOX_MAX_SAMPLES);
        assert_eq!(inbox.dropped, 2 * FRAME_SAMPLES as u64);
    }

    #[test]
    fn ntp_timestamp_of_unix_epoch() {
        assert_eq!(ntp_timestamp(SystemTime::UNIX_EPOCH) >> 32, 2_208_988_800);
        let half = SystemTime::UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(ntp_timestamp(half) & 0xffff_ffff, 1 << 31);
    }
}
