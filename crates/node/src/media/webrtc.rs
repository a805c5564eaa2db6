//! WebRTC media on a stream: ICE-lite, DTLS-SRTP and rtcp-mux from str0m, in RTP mode.
//!
//! A browser leg is a [`super::Stream`] like any other; only its wire differs. The call task
//! negotiates (the browser's offer answered, or our offer sent to a browser and its answer
//! taken) with a [`WebRtcSession`], then hands the session to the stream, which lives on a media
//! worker. There str0m is driven sans-IO: every datagram of the stream's RTP socket goes in
//! (STUN, DTLS and SRTP share the one port), the RTP packets it decrypts come out and take the
//! plain-RTP path of the stream (relay, decode, record, DTMF), and each packet the stream would
//! send is handed to str0m to be encrypted. str0m keeps its own RTCP; the stream's RTCP socket
//! stays unused.

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use srtp::Srtp;

/// The telephone-event payload type we offer (answers take the offer's).
const TELEPHONE_EVENT_PT: u8 = 101;

/// What was negotiated for a browser leg: how the stream encodes and which payload types it
/// sends and accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebRtcMedia {
    pub codec: media::Codec,
    pub payload_type: u8,
    pub telephone_event_pt: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    #[error("not a WebRTC session description: {0}")]
    Sdp(String),
    #[error("no audio codec in common (PCMU or PCMA)")]
    NoCodec,
    #[error("WebRTC set-up failed: {0}")]
    Rtc(String),
}

/// One certificate for every session of this process: generating a key per call would cost
/// more than the handshake. Browsers pin the fingerprint per session, so sharing it is safe.
fn certificate() -> &'static str0m::config::DtlsCert {
    static CERT: OnceLock<str0m::config::DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        let provider = str0m::crypto::from_feature_flags();
        provider
            .dtls_provider
            .generate_certificate()
            .expect("the crypto provider makes a DTLS certificate")
    })
}

/// str0m's crypto with DTLS instances that hand their SRTP keys to [`srtp`].
fn provider() -> Arc<str0m::crypto::CryptoProvider> {
    srtp::capture_provider()
}

/// Whether an SDP body is a WebRTC one (DTLS-SRTP), which the plain-RTP path cannot take.
pub fn is_webrtc_sdp(sdp: &str) -> bool {
    sdp.lines().any(|l| {
        let l = l.trim();
        l.starts_with("m=audio") && l.contains("UDP/TLS/RTP/SAVP")
    })
}

/// Whether an offer puts us on hold: `sendonly` or `inactive` at session level or on its audio.
pub fn offer_holds(sdp: &str) -> bool {
    // None: the session part, before any m= line; Some(true): an audio section.
    let mut section: Option<bool> = None;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            section = Some(line.starts_with("m=audio"));
        } else if section != Some(false) && (line == "a=sendonly" || line == "a=inactive") {
            return true;
        }
    }
    false
}

/// The `a=mid` of the first audio section of an SDP.
fn first_audio_mid(sdp: &str) -> Option<String> {
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            if in_audio {
                return None;
            }
            in_audio = line.starts_with("m=audio");
        } else if in_audio {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                return Some(mid.trim().to_owned());
            }
        }
    }
    None
}

/// The negotiation side of a browser leg, owned by the call task until it is handed to the
/// stream.
pub struct WebRtcSession {
    rtc: Box<Rtc>,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    mid: Option<Mid>,
}

impl std::fmt::Debug for WebRtcSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcSession")
            .field("local", &self.local)
            .field("mid", &self.mid)
            .finish()
    }
}

impl WebRtcSession {
    /// A session whose one host candidate is `local`: the stream's RTP port at the address
    /// browsers reach.
    fn new(local: SocketAddr) -> Result<WebRtcSession, WebRtcError> {
        let mut config = RtcConfig::new()
            .set_crypto_provider(provider())
            .set_dtls_cert(certificate().clone())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_pcma(true, false);
        config.codec_config().add_config(
            TELEPHONE_EVENT_PT.into(),
            None,
            Codec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::parse_line("0-16"),
        );
        let mut rtc = config.build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| WebRtcError::Rtc(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        Ok(WebRtcSession {
            rtc: Box::new(rtc),
            local,
            pending: None,
            mid: None,
        })
    }

    /// Answers a browser's offer: the answer's SDP and what the stream will use.
    pub fn answer(
        offer: &str,
        local: SocketAddr,
    ) -> Result<(WebRtcSession, String, WebRtcMedia), WebRtcError> {
        let mut session = WebRtcSession::new(local)?;
        let offer_text = offer;
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        let answer = session
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        session.mid = Some(Mid::from(
            first_audio_mid(offer_text)
                .ok_or(WebRtcError::NoCodec)?
                .as_str(),
        ));
        let media = session.negotiated()?;
        Ok((session, answer.to_sdp_string(), media))
    }

    /// An offer to a browser (a call to a `client:`): its SDP. [`WebRtcSession::accept_answer`]
    /// takes the browser's answer.
    pub fn offer(local: SocketAddr) -> Result<(WebRtcSession, String), WebRtcError> {
        let mut session = WebRtcSession::new(local)?;
        let mut change = session.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change
            .apply()
            .ok_or_else(|| WebRtcError::Rtc("no offer to make".into()))?;
        session.pending = Some(pending);
        session.mid = Some(mid);
        Ok((session, offer.to_sdp_string()))
    }

    pub fn accept_answer(&mut self, answer: &str) -> Result<WebRtcMedia, WebRtcError> {
        let pending = self
            .pending
            .take()
            .ok_or_else(|| WebRtcError::Rtc("no offer is pending".into()))?;
        let answer =
            SdpAnswer::from_sdp_string(answer).map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| WebRtcError::Sdp(e.to_string()))?;
        self.negotiated()
    }

    /// The audio codec both sides have, PCMU first, and the 8 kHz telephone-event.
    fn negotiated(&mut self) -> Result<WebRtcMedia, WebRtcError> {
        let mid = self.mid.ok_or(WebRtcError::NoCodec)?;
        let remote_pts = self
            .rtc
            .media(mid)
            .map(|m| m.remote_pts().to_vec())
            .ok_or(WebRtcError::NoCodec)?;
        let params = self.rtc.codec_config().params().to_vec();
        let has = |codec: Codec| {
            params
                .iter()
                .find(|p| {
                    p.spec().codec == codec
                        && p.spec().clock_rate == Frequency::EIGHT_KHZ
                        && remote_pts.contains(&p.pt())
                })
                .map(|p| *p.pt())
        };
        let (codec, payload_type) = match (has(Codec::PCMU), has(Codec::PCMA)) {
            (Some(pt), _) => (media::Codec::Pcmu, pt),
            (None, Some(pt)) => (media::Codec::Pcma, pt),
            (None, None) => return Err(WebRtcError::NoCodec),
        };
        Ok(WebRtcMedia {
            codec,
            payload_type,
            telephone_event_pt: has(Codec::Tele),
        })
    }

    /// What the stream runs once negotiation is over.
    pub(crate) fn into_transport(self) -> WebRtcTransport {
        WebRtcTransport {
            rtc: self.rtc,
            local: self.local,
            mid: self.mid,
            next_seq: None,
            connected: false,
            next_timeout: None,
            srtp: None,
            tx_ssrc: None,
            peer: None,
            sealed: Vec::new(),
            refused: 0,
        }
    }
}

/// Whether a datagram on the shared port is RTP (RFC 7983 §7, RFC 5761 §4): neither STUN, DTLS
/// nor RTCP.
fn is_rtp(datagram: &[u8]) -> bool {
    matches!(datagram, [128..=191, second, ..] if !(192..=223).contains(second))
}

/// One RTP packet str0m decrypted: the header fields the stream needs and the payload.
#[derive(Debug)]
pub(crate) struct ClearPacket {
    pub(crate) header: rtp::RtpHeader,
    pub(crate) payload: Arc<[u8]>,
}

/// The stream's side: str0m on the stream's RTP socket.
pub(crate) struct WebRtcTransport {
    rtc: Box<Rtc>,
    local: SocketAddr,
    mid: Option<Mid>,
    /// The extended sequence number of our next packet (its low 16 bits are the stream's own).
    next_seq: Option<u64>,
    connected: bool,
    /// When str0m last said it next needs the time (`Output::Timeout`): it is given the time
    /// then and not before, so a tick of a quiet session costs a comparison.
    next_timeout: Option<Instant>,
    /// Once DTLS is up: the audio's SRTP, done here rather than by str0m (see [`srtp`]).
    srtp: Option<Srtp>,
    /// The SSRC our answer or offer announced, which str0m's sender would use.
    tx_ssrc: Option<u32>,
    /// Where the browser's audio comes from (the ICE-selected pair), where ours goes.
    peer: Option<SocketAddr>,
    sealed: Vec<u8>,
    /// SRTP packets that did not open.
    refused: u64,
}

impl std::fmt::Debug for WebRtcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcTransport")
            .field("local", &self.local)
            .field("connected", &self.connected)
            .finish()
    }
}

impl WebRtcTransport {
    /// A datagram that came in on the stream's socket. Returns true when it was SRTP audio,
    /// now in the clear in `clear`; RTP that str0m decrypted (before our SRTP is keyed) goes to
    /// `packets`.
    pub(crate) fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
        socket: &UdpSocket,
        packets: &mut Vec<ClearPacket>,
        clear: &mut Vec<u8>,
    ) -> bool {
        if let Some(srtp) = self.srtp.as_mut() {
            if is_rtp(datagram) {
                if !srtp.unprotect(datagram, clear) {
                    // Forged, replayed, damaged or from before a re-key: dropped, and said in
                    // the log at 1, 2, 4, 8... of them.
                    self.refused += 1;
                    if self.refused.is_power_of_two() {
                        tracing::debug!(local = %self.local, %source, refused = self.refused, "SRTP packet refused");
                    }
                    return false;
                }
                self.peer = Some(source);
                return true;
            }
        }
        let Ok(contents) = datagram.try_into() else {
            return false;
        };
        // Keys a handshake exports are noted on this thread: none left from another session.
        srtp::clear_captured_keys();
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(error = %e, "WebRTC input refused");
        }
        // An input can move str0m's next timeout earlier: it says so on this drain.
        self.next_timeout = None;
        self.drain(socket, packets);
        if self.connected && srtp::has_captured_keys() {
            // A new handshake in a session already up (a re-offer that changed the DTLS
            // role): its keys replace the old ones.
            self.key_srtp();
        }
        false
    }

    /// A new offer in the same session (a re-INVITE: hold, resume, an ICE restart): the answer.
    pub(crate) fn accept_offer(&mut self, offer: &str) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| e.to_string())?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?;
        self.next_timeout = None;
        Ok(answer.to_sdp_string())
    }

    /// Timers: ICE consent, DTLS retransmissions, RTCP. Called every tick; str0m hears of the
    /// time only once its own next timeout has come.
    pub(crate) fn handle_tick(
        &mut self,
        now: Instant,
        socket: &UdpSocket,
        packets: &mut Vec<ClearPacket>,
    ) {
        if self.next_timeout.is_some_and(|t| t > now) {
            return;
        }
        if self.rtc.handle_input(Input::Timeout(now)).is_ok() {
            self.drain(socket, packets);
        }
    }

    /// Sends one RTP packet the stream built in the clear.
    pub(crate) fn send_rtp(&mut self, now: Instant, packet: &[u8], socket: &UdpSocket) -> bool {
        if !self.connected {
            return false;
        }
        if let (Some(srtp), Some(peer)) = (self.srtp.as_mut(), self.peer) {
            if !srtp.protect_as(packet, self.tx_ssrc, &mut self.sealed) {
                return false;
            }
            return match socket.send_to(&self.sealed, peer) {
                Ok(_) => true,
                Err(e) => {
                    tracing::trace!(error = %e, "SRTP send failed");
                    false
                }
            };
        }
        let Ok(parsed) = rtp::parse_rtp(packet) else {
            return false;
        };
        let header = parsed.header;
        let seq = match self.next_seq {
            // Extend the 16-bit sequence number: it only ever moves forward by one here.
            Some(next) => {
                let low = next as u16;
                next + u64::from(header.sequence.wrapping_sub(low))
            }
            None => u64::from(header.sequence),
        };
        self.next_seq = Some(seq + 1);
        let Some(mid) = self.mid else { return false };
        let mut api = self.rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            return false;
        };
        let write = RtpWrite::new(
            header.payload_type.into(),
            seq.into(),
            header.timestamp,
            now,
            Arc::<[u8]>::from(parsed.payload),
        )
        .marker(header.marker);
        tx.write_rtp(write);
        // The packet goes out on this poll unless str0m wants the time first (its pacer).
        let mut none = Vec::new();
        self.drain(socket, &mut none);
        if self.next_timeout.is_none_or(|t| t <= now) {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(error = %e, "WebRTC send failed");
            }
            self.drain(socket, &mut none);
        }
        true
    }

    /// Takes the keys the handshake just exported: the audio's SRTP is ours from now on, and
    /// str0m keeps STUN, DTLS and RTCP. Without keys str0m keeps the audio too.
    fn key_srtp(&mut self) {
        let Some(keys) = srtp::take_captured_keys() else {
            tracing::debug!(local = %self.local, "no SRTP keys from the handshake: str0m keeps the audio");
            return;
        };
        self.srtp = Srtp::new(&provider(), &keys);
        tracing::debug!(local = %self.local, profile = %keys.profile, "SRTP keyed");
        if let Some(mid) = self.mid {
            self.tx_ssrc = self
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map(|tx| *tx.ssrc());
        }
    }

    fn drain(&mut self, socket: &UdpSocket, packets: &mut Vec<ClearPacket>) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.next_timeout = Some(at);
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if self.srtp.is_none() {
                        // The browser's side of the selected pair, until its audio says.
                        self.peer = Some(t.destination);
                    }
                    if let Err(e) = socket.send_to(&t.contents, t.destination) {
                        tracing::trace!(error = %e, "WebRTC send failed");
                    }
                }
                Ok(Output::Event(event)) => match event {
                    Event::Connected => {
                        self.connected = true;
                        self.key_srtp();
                        tracing::debug!(
                            local = %self.local,
                            srtp = self.srtp.is_some(),
                            "WebRTC leg connected (ICE + DTLS)"
                        );
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        tracing::debug!(local = %self.local, "WebRTC leg disconnected");
                    }
                    Event::RtpPacket(p) => packets.push(ClearPacket {
                        header: rtp::RtpHeader {
                            marker: p.header.marker,
                            payload_type: *p.header.payload_type,
                            sequence: p.header.sequence_number,
                            timestamp: p.header.timestamp,
                            ssrc: *p.header.ssrc,
                        },
                        payload: p.payload,
                    }),
                    _ => {}
                },
                Err(e) => {
                    tracing::debug!(error = %e, "WebRTC session failed");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser-like peer: a full (not lite) str0m session offering Opus, PCMA and PCMU with
    /// telephone-event, as Chromium does.
    fn browser() -> Rtc {
        let mut config = RtcConfig::new()
            .set_crypto_provider(provider())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcma(true, false)
            .enable_pcmu(true, false);
        config.codec_config().add_config(
            126.into(),
            None,
            Codec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::parse_line("0-16"),
        );
        let mut rtc = config.build(Instant::now());
        rtc.add_local_candidate(
            Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap(),
        );
        rtc
    }

    #[test]
    fn a_browser_offer_is_answered_with_pcmu_and_its_telephone_event() {
        let mut peer = browser();
        let mut change = peer.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, _pending) = change.apply().unwrap();
        let offer = offer.to_sdp_string();
        assert!(is_webrtc_sdp(&offer), "{offer}");
        let local: SocketAddr = "127.0.0.1:30000".parse().unwrap();
        let (_session, answer, media) = WebRtcSession::answer(&offer, local).unwrap();
        assert_eq!(media.codec, media::Codec::Pcmu);
        assert_eq!(media.payload_type, 0);
        assert_eq!(media.telephone_event_pt, Some(126));
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains("127.0.0.1 30000"), "{answer}");
        assert!(answer.contains("a=fingerprint:sha-256"), "{answer}");
        assert!(!is_webrtc_sdp("v=0\r\nm=audio 4000 RTP/AVP 0\r\n"));
    }

    #[test]
    fn our_offer_takes_a_browser_answer() {
        let local: SocketAddr = "127.0.0.1:30002".parse().unwrap();
        let (mut session, offer) = WebRtcSession::offer(local).unwrap();
        assert!(offer.contains("UDP/TLS/RTP/SAVPF"), "{offer}");
        let mut peer = browser();
        let answer = peer
            .sdp_api()
            .accept_offer(SdpOffer::from_sdp_string(&offer).unwrap())
            .unwrap()
            .to_sdp_string();
        let media = session.accept_answer(&answer).unwrap();
        assert_eq!(media.codec, media::Codec::Pcmu);
        assert_eq!(media.telephone_event_pt, Some(TELEPHONE_EVENT_PT));
        // Only one answer per offer.
        assert!(session.accept_answer(&answer).is_err());
    }

    #[test]
    fn offers_without_g711_or_garbage_are_refused() {
        let local: SocketAddr = "127.0.0.1:30004".parse().unwrap();
        assert!(WebRtcSession::answer("not sdp", local).is_err());
        let mut config = RtcConfig::new()
            .set_crypto_provider(provider())
            .clear_codecs()
            .enable_opus(true, false);
        let _ = config.codec_config();
        let mut opus_only = config.build(Instant::now());
        let mut change = opus_only.sdp_api();
        change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, _) = change.apply().unwrap();
        assert!(matches!(
            WebRtcSession::answer(&offer.to_sdp_string(), local),
            Err(WebRtcError::NoCodec) | Err(WebRtcError::Sdp(_))
        ));
    }

    #[test]
    fn hold_is_read_from_the_audio_section_or_the_session() {
        assert!(offer_holds("v=0\r\nm=audio 9 X 0\r\na=sendonly\r\n"));
        assert!(offer_holds("v=0\r\na=inactive\r\nm=audio 9 X 0\r\n"));
        assert!(!offer_holds(
            "v=0\r\nm=audio 9 X 0\r\na=sendrecv\r\nm=video 9 X 96\r\na=sendonly\r\n"
        ));
        assert!(!offer_holds("v=0\r\nm=audio 9 X 0\r\na=recvonly\r\n"));
    }

    #[test]
    fn a_new_offer_in_the_session_is_answered() {
        let mut peer = browser();
        let mut change = peer.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let local: SocketAddr = "127.0.0.1:30006".parse().unwrap();
        let (session, answer, _) = WebRtcSession::answer(&offer.to_sdp_string(), local).unwrap();
        peer.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let mut transport = session.into_transport();
        // The browser holds: its audio goes sendonly.
        let mut change = peer.sdp_api();
        change.set_direction(mid, Direction::SendOnly);
        let (offer, _) = change.apply().unwrap();
        let offer = offer.to_sdp_string();
        assert!(offer_holds(&offer), "{offer}");
        let answer = transport.accept_offer(&offer).unwrap();
        assert!(answer.contains("a=recvonly"), "{answer}");
        assert!(transport.accept_offer("garbage").is_err());
    }

    /// A browser (str0m, its own SRTP) and our transport (our SRTP after the handshake) over
    /// loopback sockets: audio opens both ways, and the keys came from the handshake.
    #[test]
    fn audio_flows_both_ways_through_our_srtp() {
        use std::time::Duration;
        let browser_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let our_socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&browser_socket, &our_socket] {
            s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        }
        let browser_addr = browser_socket.local_addr().unwrap();
        let our_addr = our_socket.local_addr().unwrap();
        // The browser's crypto is str0m's plain provider: its keys are its own business.
        let mut peer = RtcConfig::new()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_pcmu(true, false)
            .build(Instant::now());
        peer.add_local_candidate(Candidate::host(browser_addr, "udp").unwrap());
        let mut change = peer.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let (session, answer, media) =
            WebRtcSession::answer(&offer.to_sdp_string(), our_addr).unwrap();
        assert_eq!(media.payload_type, 0);
        peer.sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();
        let mut ours = session.into_transport();

        let mut buf = vec![0u8; 2000];
        let mut clear = Vec::new();
        let mut str0m_clear = Vec::new();
        let mut heard_by_us: Vec<Vec<u8>> = Vec::new();
        let mut heard_by_browser: Vec<Vec<u8>> = Vec::new();
        let mut browser_connected = false;
        let (mut seq, mut sent) = (0u64, 0u32);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && (heard_by_us.len() < 5 || heard_by_browser.len() < 5) {
            let now = Instant::now();
            // The browser: its output, then what reached its socket.
            loop {
                match peer.poll_output().unwrap() {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) => {
                        browser_socket.send_to(&t.contents, t.destination).unwrap();
                    }
                    Output::Event(Event::Connected) => browser_connected = true,
                    Output::Event(Event::RtpPacket(p)) => heard_by_browser.push(p.payload.to_vec()),
                    Output::Event(_) => {}
                }
            }
            if let Ok((n, from)) = browser_socket.recv_from(&mut buf) {
                let input = Input::Receive(
                    now,
                    Receive {
                        proto: Protocol::Udp,
                        source: from,
                        destination: browser_addr,
                        contents: buf[..n].try_into().unwrap(),
                    },
                );
                peer.handle_input(input).unwrap();
            }
            peer.handle_input(Input::Timeout(Instant::now())).unwrap();
            // Ours.
            if let Ok((n, from)) = our_socket.recv_from(&mut buf) {
                if ours.handle_datagram(
                    now,
                    from,
                    &buf[..n],
                    &our_socket,
                    &mut str0m_clear,
                    &mut clear,
                ) {
                    let packet = rtp::parse_rtp(&clear).unwrap();
                    heard_by_us.push(packet.payload.to_vec());
                }
            }
            ours.handle_tick(Instant::now(), &our_socket, &mut str0m_clear);
            assert!(
                str0m_clear.is_empty(),
                "str0m decrypted no audio once our SRTP was keyed"
            );
            // Audio both ways once both ends are up.
            if browser_connected && ours.connected && sent < 20 {
                sent += 1;
                let payload = vec![sent as u8; 160];
                let write =
                    RtpWrite::new(0.into(), seq.into(), sent * 160, now, payload).marker(sent == 1);
                peer.direct_api()
                    .stream_tx_by_mid(mid, None)
                    .unwrap()
                    .write_rtp(write);
                seq += 1;
                let header = rtp::RtpHeader {
                    marker: false,
                    payload_type: 0,
                    sequence: 100 + sent as u16,
                    timestamp: sent * 160,
                    ssrc: 0x1234_5678,
                };
                let mut packet = Vec::new();
                rtp::write_rtp(&header, &[0x40 + sent as u8; 160], &mut packet);
                assert!(ours.send_rtp(now, &packet, &our_socket));
            }
        }
        assert!(ours.srtp.is_some(), "our SRTP was keyed by the handshake");
        assert!(
            heard_by_us.len() >= 5,
            "we heard {} packets",
            heard_by_us.len()
        );
        assert!(heard_by_us
            .iter()
            .all(|p| p.len() == 160 && p.iter().all(|&b| b == p[0] && b >= 1)));
        assert!(
            heard_by_browser.len() >= 5,
            "the browser heard {} packets",
            heard_by_browser.len()
        );
        assert!(heard_by_browser
            .iter()
            .all(|p| p.len() == 160 && p[0] > 0x40));
    }

    #[test]
    fn the_first_audio_mid_is_found() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\n";
        assert_eq!(first_audio_mid(sdp).as_deref(), Some("a1"));
        assert_eq!(first_audio_mid("m=video 9 X 96\r\na=mid:v\r\n"), None);
    }
}
