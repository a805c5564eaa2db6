//! One RTP/RTCP stream as its worker holds it: sockets, sender and receiver
//! state, what plays and what records.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use media::{Codec, FRAME_SAMPLES};
use rtp::dtmf::DtmfReceiver;
use rtp::rtcp::{self, SenderInfo};
use rtp::{ReceiverStats, RtpSender};
use tokio::net::UdpSocket;
use tokio::sync::mpsc::UnboundedSender;

use super::ports::PortLease;
use super::recording::Recording;
use super::worker::StreamCommand;
use super::{MediaEvent, RecordStop};

/// Largest datagram read; RTP for G.711 at 20 ms is 172 bytes, anything
/// longer than this is not ours and is cut (then fails to parse or decodes
/// as garbage audio, both harmless).
const MAX_DATAGRAM: usize = 1500;

/// Datagrams read per socket per tick. A flooded socket cannot starve the other
/// streams of the worker; the excess waits in (or overflows) the kernel buffer.
const MAX_READS_PER_TICK: usize = 32;

/// Nominal RTCP interval (RFC 3550 §6.2 minimum of 5 s), randomised by ±50 %
/// (§6.3.1) so streams started together do not report together.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// Buffers shared by all streams of a worker, so the per-packet path never
/// allocates.
#[derive(Debug)]
pub(crate) struct Scratch {
    datagram: Box<[u8]>,
    pcm: Vec<i16>,
    frame: [i16; FRAME_SAMPLES],
    payload: Vec<u8>,
    packet: Vec<u8>,
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
struct Playback {
    id: u64,
    samples: Arc<[i16]>,
    position: usize,
    /// 0: until stopped.
    loops: u32,
    /// Completed passes over `samples`.
    passes: u32,
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
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
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
            StreamCommand::StopRecording { id } => {
                if self.recording.as_ref().is_some_and(|r| r.id() == id) {
                    self.end_recording(RecordStop::Stopped);
                }
            }
            StreamCommand::SetHold(on) => self.hold = on,
        }
    }

    /// One 20 ms step: take in what arrived, then send what is due.
    pub(crate) fn tick(&mut self, now: Instant, wall: SystemTime, scratch: &mut Scratch) {
        self.receive_rtp(now, scratch);
        self.receive_rtcp(now, scratch);
        if let Some(stop) = self.recording.as_mut().and_then(|r| r.poll_stop(now)) {
            self.end_recording(stop);
        }
        self.send_frame(scratch);
        if now >= self.next_rtcp {
            self.next_rtcp = now + rtcp_interval();
            self.send_rtcp(now, wall, scratch);
        }
    }

    fn receive_rtp(&mut self, now: Instant, scratch: &mut Scratch) {
        for _ in 0..MAX_READS_PER_TICK {
            match self.rtp.try_recv_from(&mut scratch.datagram) {
                Ok((len, source)) => {
                    let datagram = scratch.datagram.get(..len).unwrap_or_default();
                    self.handle_rtp(now, datagram, source, &mut scratch.pcm);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(stream = self.id, error = %e, "RTP receive failed");
                    break;
                }
            }
        }
    }

    fn handle_rtp(
        &mut self,
        now: Instant,
        datagram: &[u8],
        source: SocketAddr,
        pcm: &mut Vec<i16>,
    ) {
        let Some(remote) = self.remote.as_mut() else {
            // Media before the answer was negotiated: nothing to check it against.
            self.counters.ignored += 1;
            return;
        };
        let Ok(packet) = rtp::parse_rtp(datagram) else {
            self.counters.ignored += 1;
            return;
        };
        let pt = packet.header.payload_type;
        let is_audio = pt == remote.payload_type;
        let is_event = Some(pt) == remote.telephone_event_pt;
        if !is_audio && !is_event {
            self.counters.ignored += 1;
            return;
        }
        if !remote.rtp_latched {
            remote.rtp = source;
            remote.rtp_latched = true;
        } else if source != remote.rtp {
            self.counters.ignored += 1;
            return;
        }
        self.counters.rtp_received += 1;
        // Advisory: a packet still on probation (RFC 3550 A.1) is used all the same.
        self.stats.handle_packet(now, &packet.header);
        if is_event {
            if let Some(digit) = self.dtmf.handle_packet(&packet.header, packet.payload) {
                self.emit(MediaEvent::Dtmf { digit });
            }
            return;
        }
        if let Some(recording) = self.recording.as_mut() {
            pcm.clear();
            remote.codec.decode(packet.payload, pcm);
            recording.handle_audio(now, packet.header.ssrc, packet.header.timestamp, pcm);
        }
    }

    fn receive_rtcp(&mut self, now: Instant, scratch: &mut Scratch) {
        for _ in 0..MAX_READS_PER_TICK {
            match self.rtcp.try_recv_from(&mut scratch.datagram) {
                Ok((len, source)) => {
                    let datagram = scratch.datagram.get(..len).unwrap_or_default();
                    self.handle_rtcp(now, datagram, source);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(stream = self.id, error = %e, "RTCP receive failed");
                    break;
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
    fn send_frame(&mut self, scratch: &mut Scratch) {
        let samples = FRAME_SAMPLES as u32;
        let Some(playback) = self.playback.as_mut() else {
            self.sender.advance_timestamp(samples);
            self.talking = false;
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
                match self.rtp.try_send_to(&scratch.packet, remote.rtp) {
                    Ok(_) => self.counters.sent += 1,
                    Err(e) => {
                        // A full socket buffer or an unreachable peer: the frame is
                        // lost like any other RTP loss.
                        self.counters.send_errors += 1;
                        tracing::trace!(stream = self.id, error = %e, "RTP send failed");
                    }
                }
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
        if let Err(e) = self.rtcp.try_send_to(&scratch.packet, remote.rtcp) {
            self.counters.send_errors += 1;
            tracing::trace!(stream = self.id, error = %e, "RTCP send failed");
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
        self.load.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(stream = self.id, counters = ?self.counters, "media stream closed");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    /// Nothing to play (empty samples).
    Empty,
    /// A frame, more follow.
    More,
    /// The last frame of the playback.
    Last,
}

/// Copies the next 160 samples of `playback` into `frame`, wrapping into the
/// next loop mid-frame and padding the very last frame with silence.
fn fill_frame(playback: &mut Playback, frame: &mut [i16; FRAME_SAMPLES]) -> Frame {
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
    fn ntp_timestamp_of_unix_epoch() {
        assert_eq!(ntp_timestamp(SystemTime::UNIX_EPOCH) >> 32, 2_208_988_800);
        let half = SystemTime::UNIX_EPOCH + Duration::from_millis(500);
        assert_eq!(ntp_timestamp(half) & 0xffff_ffff, 1 << 31);
    }
}
