//! `rtpload --webrtc`: browser-to-SIP calls. Each call's leg A is a browser: a str0m `Rtc` (full
//! ICE agent, controlling, DTLS-SRTP, rtcp-mux, RTP mode, PCMU + telephone-event) that makes the
//! offer, takes the relay's answer and does ICE and DTLS with the relay. Its 20 ms PCMU is then
//! protected with the keys of that handshake by the `srtp` crate and sent to the address the
//! handshake went to, and what comes back is opened the same way: one cipher call a packet, as a
//! browser's libsrtp does, while str0m keeps STUN, DTLS and RTCP. (`--browser-str0m-media` hands
//! the audio to str0m instead: `direct_api().stream_tx_by_mid(..).write_rtp(..)` out and
//! `Event::RtpPacket` in, which costs the generator as much as the relay.) Leg B is plain RTP,
//! played exactly as in the plain mode (`send`, `receive` of rtpload).
//!
//! Sockets: the browsers are spread over `--browser-threads` threads, and the browsers of one
//! thread share its UDP socket. The relay still sees one 5-tuple per call (each call's leg A has
//! its own port on the relay), so for the relay this is the same work as a socket per browser;
//! for the generator it means `recvmmsg`/`sendmmsg` batches instead of a syscall per packet.
//! Datagrams are handed to the browser whose relay address they come from (a hash map; the
//! address is the answer's candidate), which is what `Rtc::accepts` would decide, in O(1).
//!
//! Measurement is rtpload's: every payload carries its sender's endpoint id and the
//! CLOCK_REALTIME time it was built (for a browser, just before it is encrypted, a few µs,
//! and it is sent at once), and every
//! datagram's receive time is the kernel's (SO_TIMESTAMPNS), taken before it is decrypted.
//!
//! Set-up cost: after the signalling of every call (offer/answer through the relay's control
//! protocol, before any packet), all browsers start ICE at once. Each `Event::Connected` (ICE
//! and the DTLS handshake done) is timed: handshakes per second over the whole burst (calls /
//! time until the last one), the best 1-second bin, and per-call set-up p50/max. The media
//! starts when every call is connected.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use super::udp::{bind_socket, kernel_timestamp, realtime_ns, sockaddr};
use super::{Args, Endpoint, HIST_BUCKETS, PAYLOAD, PERIOD_NS};

const TELEPHONE_EVENT_PT: u8 = 101;
const OUT_BATCH: usize = 16;
const IN_BATCH: usize = 64;
const POLL: Duration = Duration::from_micros(500);
/// How long every call may take to connect before the rung is given up.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(60);

/// One DTLS certificate for every browser of the generator (as a browser keeps one per
/// profile): a key pair per call would cost the generator, not the relay.
fn certificate() -> &'static str0m::config::DtlsCert {
    static CERT: OnceLock<str0m::config::DtlsCert> = OnceLock::new();
    CERT.get_or_init(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .expect("the crypto provider makes a DTLS certificate")
    })
}

/// str0m's crypto whose DTLS hands its SRTP keys to the srtp crate.
fn provider() -> Arc<str0m::crypto::CryptoProvider> {
    srtp::capture_provider()
}

/// A browser's half of a call.
struct Browser {
    /// Endpoint id (2c for call c).
    id: u32,
    rtc: Rtc,
    mid: Mid,
    /// The relay's addresses for this call (its answer's candidates).
    relay: Vec<SocketAddr>,
    seq: u64,
    ts: u32,
    next_ns: u64,
    timeout: Instant,
    connected_ns: Option<u64>,
    failed: bool,
    /// The audio's SRTP once the handshake is done (unless str0m keeps the media).
    srtp: Option<srtp::Srtp>,
    /// The SSRC of the browser's offer, and the relay address its DTLS went to.
    ssrc: u32,
    peer: Option<SocketAddr>,
}

fn new_browser(id: u32, local: SocketAddr, twcc: bool) -> Result<(Browser, String, SdpPendingOffer)> {
    let mut config = RtcConfig::new()
        .set_crypto_provider(provider())
        .set_dtls_cert(certificate().clone())
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(true, false);
    config.codec_config().add_config(
        TELEPHONE_EVENT_PT.into(),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
    if !twcc {
        // str0m offers `a=rtcp-fb:<pt> transport-cc` on every audio payload type; browsers put
        // it on Opus only, never on PCMU or telephone-event. Without it neither end sends
        // transport-wide congestion feedback (every 50 ms while packets arrive).
        let params: Vec<_> = config
            .codec_config()
            .params()
            .iter()
            .map(|p| {
                let mut p = *p;
                p.set_fb_transport_cc(false);
                p
            })
            .collect();
        *config.codec_config() = str0m::format::CodecConfig::new_from_payload_params(params);
        // Nor does a browser stamp transport-wide sequence numbers on audio whose codec has no
        // transport-cc: str0m would on every packet, and the relay's str0m would keep a
        // register of them. The browser's other audio extensions stay.
        let mut exts = str0m::rtp::ExtensionMap::empty();
        exts.set(1, str0m::rtp::Extension::AudioLevel);
        exts.set(2, str0m::rtp::Extension::AbsoluteSendTime);
        exts.set(4, str0m::rtp::Extension::RtpMid);
        config = config.set_extension_map(exts);
    }
    let now = Instant::now();
    let mut rtc = config.build(now);
    rtc.add_local_candidate(Candidate::host(local, "udp").map_err(|e| anyhow!("candidate: {e}"))?);
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().ok_or(anyhow!("str0m made no offer"))?;
    let browser = Browser {
        id,
        rtc,
        mid,
        relay: Vec::new(),
        // A random-looking start, below 2^16 (no rollover counter to signal).
        seq: u64::from((id as u16).wrapping_mul(31) & 0x7fff),
        ts: id.wrapping_mul(7919),
        next_ns: 0,
        timeout: now,
        connected_ns: None,
        failed: false,
        srtp: None,
        ssrc: 0,
        peer: None,
    };
    Ok((browser, offer.to_sdp_string(), pending))
}

/// str0m takes only BUNDLE answers (`a=group:BUNDLE`); rtpengine 10.5 drops the group (bundle
/// support came in its version 14), which a browser accepts for a one-section session. The
/// line naming the answer's one mid is put back; nothing else changes.
fn with_bundle_group(answer: &str) -> String {
    if answer.lines().any(|l| l.starts_with("a=group:BUNDLE")) {
        return answer.to_owned();
    }
    let Some(mid) = answer.lines().find_map(|l| l.trim().strip_prefix("a=mid:")) else {
        return answer.to_owned();
    };
    let mut out = String::with_capacity(answer.len() + 32);
    let mut done = false;
    for line in answer.split_inclusive('\n') {
        if !done && line.starts_with("m=") {
            out.push_str(&format!("a=group:BUNDLE {}\r\n", mid.trim()));
            done = true;
        }
        out.push_str(line);
    }
    out
}

/// The relay's answer goes in; the candidates it names are where its packets will come from.
fn accept_answer(browser: &mut Browser, pending: SdpPendingOffer, answer: &str, leg_b_ssrc: u32) -> Result<()> {
    let answer = &with_bundle_group(answer);
    let parsed = SdpAnswer::from_sdp_string(answer).map_err(|e| anyhow!("answer: {e}\n{answer}"))?;
    browser
        .rtc
        .sdp_api()
        .accept_answer(pending, parsed)
        .map_err(|e| anyhow!("answer refused: {e}\n{answer}"))?;
    browser.relay = answer_addresses(answer);
    if browser.relay.is_empty() {
        bail!("the answer names no address:\n{answer}");
    }
    // A relay that forwards leg B's packets under leg B's SSRC without announcing it (rtpengine
    // passes SSRCs through) would otherwise have them dropped as unknown; a browser plays an
    // unsignalled stream of a one-stream session the same way.
    if !answer.lines().any(|l| l.starts_with("a=ssrc:")) {
        let mid = browser.mid;
        browser.rtc.direct_api().expect_stream_rx(Ssrc::from(leg_b_ssrc), None, mid, None);
    }
    Ok(())
}

/// The component-1 UDP candidates of an SDP, else its c= address and m= port.
fn answer_addresses(sdp: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    let mut c_addr: Option<IpAddr> = None;
    let mut m_port: Option<u16> = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("a=candidate:") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() >= 6 && f[1] == "1" && f[2].eq_ignore_ascii_case("udp") {
                if let (Ok(ip), Ok(port)) = (f[4].parse::<IpAddr>(), f[5].parse::<u16>()) {
                    let a = SocketAddr::new(ip, port);
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        } else if let Some(rest) = line.strip_prefix("c=IN IP4 ") {
            c_addr = rest.trim().parse().ok();
        } else if line.starts_with("m=audio ") {
            m_port = line.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        }
    }
    if out.is_empty() {
        if let (Some(ip), Some(port)) = (c_addr, m_port) {
            out.push(SocketAddr::new(ip, port));
        }
    }
    out
}

// ---- signalling ----

fn b64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(T[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unb64(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => bail!("not base64"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// Dialtone: `pair-webrtc <leg B's far end> <offer>` -> `ok <leg B port> <answer>`, pipelined in
/// chunks. Returns leg B's relay ports; the answers are taken by the browsers.
fn setup_dialtone(
    control: &str,
    browsers: &mut [Browser],
    pendings: &mut [Option<SdpPendingOffer>],
    offers: &[String],
    local_b: &dyn Fn(usize) -> SocketAddrV4,
) -> Result<(Vec<SocketAddrV4>, TcpStream)> {
    let stream = TcpStream::connect(control).with_context(|| format!("connect {control}"))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let calls = browsers.len();
    let mut to_b = Vec::with_capacity(calls);
    for chunk_start in (0..calls).step_by(100) {
        let chunk_end = (chunk_start + 100).min(calls);
        let mut requests = String::new();
        for c in chunk_start..chunk_end {
            requests.push_str(&format!("pair-webrtc {} {}\n", local_b(c), b64(offers[c].as_bytes())));
        }
        writer.write_all(requests.as_bytes())?;
        for c in chunk_start..chunk_end {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let mut words = line.split_whitespace();
            let (Some("ok"), Some(port), Some(answer)) = (words.next(), words.next(), words.next()) else {
                bail!("relay_server: {}", line.trim());
            };
            let answer = String::from_utf8(unb64(answer)?)?;
            let pending = pendings[c].take().ok_or(anyhow!("no pending offer"))?;
            accept_answer(&mut browsers[c], pending, &answer, 2 * c as u32 + 1)?;
            to_b.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port.parse()?));
        }
    }
    Ok((to_b, stream))
}

fn bstr(s: &str) -> String {
    format!("{}:{}", s.len(), s)
}

/// A bencoded dictionary of already-encoded values, keys sorted.
fn bdict(pairs: &[(&str, String)]) -> String {
    let mut sorted: Vec<&(&str, String)> = pairs.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    let mut out = String::from("d");
    for (k, v) in sorted {
        out.push_str(&bstr(k));
        out.push_str(v);
    }
    out.push('e');
    out
}

/// The ng options of the offer: the browser's side answered with ICE-lite and DTLS-SRTP
/// (rtpengine keeps the offerer's UDP/TLS/RTP/SAVPF towards it), the plain side offered
/// RTP/AVP without ICE and without rtcp-mux (as a SIP phone or trunk).
fn rtpengine_offer_options() -> Vec<(&'static str, String)> {
    vec![
        ("transport-protocol", bstr("RTP/AVP")),
        ("ICE", bstr("remove")),
        ("ICE-lite", bstr("backward")),
        ("rtcp-mux", format!("l{}e", bstr("demux"))),
        ("DTLS", bstr("passive")),
    ]
}

fn setup_rtpengine(
    ng: &str,
    browsers: &mut [Browser],
    pendings: &mut [Option<SdpPendingOffer>],
    offers: &[String],
    local_b: &dyn Fn(usize) -> SocketAddrV4,
) -> Result<Vec<SocketAddrV4>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(ng)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let pid = std::process::id();
    let mut to_b = Vec::with_capacity(browsers.len());
    for c in 0..browsers.len() {
        let call_id = format!("webrtcload-{pid}-{c}");
        let (from_tag, to_tag) = (format!("a{c}"), format!("b{c}"));
        let mut offer = rtpengine_offer_options();
        offer.extend([
            ("command", bstr("offer")),
            ("call-id", bstr(&call_id)),
            ("from-tag", bstr(&from_tag)),
            ("sdp", bstr(&offers[c])),
        ]);
        let reply = super::ng_request(&socket, &format!("{pid}wo{c}"), &bdict(&offer))?;
        if super::bencode_string(&reply, "result").as_deref() != Some("ok") {
            bail!("offer {c}: {reply}");
        }
        let port = super::bencode_string(&reply, "sdp")
            .and_then(|s| super::sdp_port(&s))
            .ok_or(anyhow!("offer {c}: no port in {reply}"))?;
        let answer_sdp = super::sdp(2 * c + 1, local_b(c).port());
        let answer = bdict(&[
            // The role is chosen when the browser's answer is made: passive, as Dialtone's
            // str0m answers (the browser, offering actpass, then starts the handshake).
            ("DTLS", bstr("passive")),
            ("command", bstr("answer")),
            ("call-id", bstr(&call_id)),
            ("from-tag", bstr(&from_tag)),
            ("to-tag", bstr(&to_tag)),
            ("sdp", bstr(&answer_sdp)),
        ]);
        let reply = super::ng_request(&socket, &format!("{pid}wa{c}"), &answer)?;
        if super::bencode_string(&reply, "result").as_deref() != Some("ok") {
            bail!("answer {c}: {reply}");
        }
        let sdp = super::bencode_string(&reply, "sdp").ok_or(anyhow!("answer {c}: no SDP in {reply}"))?;
        if c == 0 {
            eprintln!("rtpload: rtpengine's answer to the browser of call 0:\n{sdp}");
        }
        let pending = pendings[c].take().ok_or(anyhow!("no pending offer"))?;
        accept_answer(&mut browsers[c], pending, &sdp, 2 * c as u32 + 1)?;
        to_b.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    }
    Ok(to_b)
}

// ---- the browsers' threads ----

/// Datagrams to send, flushed with `sendmmsg`.
struct OutBatch {
    bufs: Vec<[u8; 1500]>,
    lens: Vec<usize>,
    names: Vec<libc::sockaddr_in>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    n: usize,
    send_errors: u64,
}

impl OutBatch {
    fn new() -> OutBatch {
        OutBatch {
            bufs: vec![[0u8; 1500]; OUT_BATCH],
            lens: vec![0; OUT_BATCH],
            names: vec![sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)); OUT_BATCH],
            iovs: vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; OUT_BATCH],
            // SAFETY: all-zero is a valid mmsghdr.
            msgs: vec![unsafe { std::mem::zeroed() }; OUT_BATCH],
            n: 0,
            send_errors: 0,
        }
    }

    fn push(&mut self, fd: i32, to: SocketAddr, data: &[u8]) {
        let SocketAddr::V4(to) = to else { return };
        if data.len() > 1500 {
            return;
        }
        self.bufs[self.n][..data.len()].copy_from_slice(data);
        self.lens[self.n] = data.len();
        self.names[self.n] = sockaddr(to);
        self.n += 1;
        if self.n == OUT_BATCH {
            self.flush(fd);
        }
    }

    fn flush(&mut self, fd: i32) {
        let n = self.n;
        for i in 0..n {
            self.iovs[i] = libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: self.lens[i] };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = (&mut self.names[i] as *mut libc::sockaddr_in).cast();
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
        }
        let mut done = 0;
        while done < n {
            // SAFETY: msgs[done..n] point at live buffers, names and iovecs set up above.
            let r = unsafe { libc::sendmmsg(fd, self.msgs[done..].as_mut_ptr(), (n - done) as u32, 0) };
            if r <= 0 {
                self.send_errors += (n - done) as u64;
                break;
            }
            done += r as usize;
        }
        self.n = 0;
    }
}

/// The media schedule, known once every call is connected (0 until then).
struct Schedule {
    start_ns: AtomicU64,
    warm_ns: AtomicU64,
    end_ns: AtomicU64,
    connected: AtomicUsize,
    failed: AtomicUsize,
    stop: AtomicBool,
    /// Browsers do their audio's SRTP with the srtp crate (false: str0m does it).
    own_srtp: bool,
}

#[derive(Default)]
struct BrowserStats {
    /// Realtime ns of each `Event::Connected`.
    connected_ns: Vec<u64>,
    sent: u64,
    late_max_ns: u64,
    received: u64,
    hist: Vec<u64>,
    max_us: u64,
    unknown_source: u64,
    /// Datagrams from the relay by kind: RTP (SRTP), RTCP (SRTCP), STUN, DTLS.
    in_kinds: [u64; 4],
    send_errors: u64,
    disconnected: u64,
    /// Thread CPU in the counted window (ns).
    cpu_ns: u64,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a browser's str0m has to say: datagrams to send, events. `rx_ns` is the kernel receive
/// time of the datagram just handed in (for the delay of the packets it decrypts).
#[allow(clippy::too_many_arguments)]
fn drain(
    b: &mut Browser,
    fd: i32,
    out: &mut OutBatch,
    stats: &mut BrowserStats,
    sched: &Schedule,
    rx_ns: Option<u64>,
    endpoints: usize,
) {
    loop {
        match b.rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                b.timeout = t;
                return;
            }
            Ok(Output::Transmit(t)) => {
                b.peer = Some(t.destination);
                out.push(fd, t.destination, &t.contents)
            }
            Ok(Output::Event(event)) => match event {
                Event::Connected if b.connected_ns.is_none() => {
                    if let Some(keys) = srtp::take_captured_keys().filter(|_| sched.own_srtp) {
                        b.srtp = srtp::Srtp::new(&provider(), &keys);
                        let mid = b.mid;
                        if let Some(tx) = b.rtc.direct_api().stream_tx_by_mid(mid, None) {
                            b.ssrc = *tx.ssrc();
                        }
                    }
                    let now = realtime_ns();
                    b.connected_ns = Some(now);
                    stats.connected_ns.push(now);
                    sched.connected.fetch_add(1, Ordering::Relaxed);
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => stats.disconnected += 1,
                Event::RtpPacket(p) => record(stats, sched, &p.payload, rx_ns, endpoints),
                _ => {}
            },
            Err(e) => {
                if !b.failed {
                    eprintln!("rtpload: browser {}: {e}", b.id);
                    b.failed = true;
                    sched.failed.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
    }
}

/// A packet of leg B a browser received: its one-way delay, if it was sent in the counted window.
fn record(stats: &mut BrowserStats, sched: &Schedule, payload: &[u8], rx_ns: Option<u64>, endpoints: usize) {
    let (Some(rx), Some((id, sent_ns))) = (rx_ns, stamp(payload)) else { return };
    let warm = sched.warm_ns.load(Ordering::Relaxed);
    let end = sched.end_ns.load(Ordering::Relaxed);
    if warm == 0 || (id as usize) >= endpoints || sent_ns < warm || sent_ns >= end {
        return;
    }
    stats.received += 1;
    let us = rx.saturating_sub(sent_ns) / 1000;
    stats.max_us = stats.max_us.max(us);
    stats.hist[(us as usize).min(HIST_BUCKETS)] += 1;
}

fn stamp(payload: &[u8]) -> Option<(u32, u64)> {
    let id = u32::from_be_bytes(payload.get(0..4)?.try_into().ok()?);
    let sent = u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?);
    Some((id, sent))
}

fn browser_thread(socket: UdpSocket, mut browsers: Vec<Browser>, sched: Arc<Schedule>, endpoints: usize) -> BrowserStats {
    let fd = socket.as_raw_fd();
    let local = socket.local_addr().expect("bound");
    let mut stats = BrowserStats { hist: vec![0; HIST_BUCKETS + 1], ..BrowserStats::default() };
    let mut by_addr: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, b) in browsers.iter().enumerate() {
        for a in &b.relay {
            by_addr.insert(*a, i);
        }
    }
    let mut out = OutBatch::new();
    // Receive buffers.
    let mut bufs = vec![[0u8; 2048]; IN_BATCH];
    let mut names = vec![sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)); IN_BATCH];
    let mut controls = vec![[0u64; 8]; IN_BATCH];
    let mut iovs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; IN_BATCH];
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; IN_BATCH];
    for i in 0..IN_BATCH {
        iovs[i] = libc::iovec { iov_base: bufs[i].as_mut_ptr().cast(), iov_len: 2048 };
    }

    // Every browser starts ICE now.
    let now = Instant::now();
    for b in browsers.iter_mut() {
        let _ = b.rtc.handle_input(Input::Timeout(now));
        drain(b, fd, &mut out, &mut stats, &sched, None, endpoints);
    }
    out.flush(fd);

    let mut order: Vec<usize> = Vec::new(); // browsers by send phase, once the media starts
    let mut cursor = 0usize;
    let mut media = false;
    let mut cpu_at_warm: Option<u64> = None;
    let mut next_scan = Instant::now();
    let payload_fill = [0xffu8; PAYLOAD];
    let (mut clear, mut sealed) = (Vec::with_capacity(2048), Vec::with_capacity(2048));
    while !sched.stop.load(Ordering::Relaxed) {
        let mut busy = false;
        // 1. What came in.
        loop {
            for i in 0..IN_BATCH {
                let hdr = &mut msgs[i].msg_hdr;
                hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_in).cast();
                hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                hdr.msg_iov = &mut iovs[i];
                hdr.msg_iovlen = 1;
                hdr.msg_control = controls[i].as_mut_ptr().cast();
                hdr.msg_controllen = 64;
                hdr.msg_flags = 0;
            }
            // SAFETY: every message points at live buffers of the stated sizes.
            let n = unsafe {
                libc::recvmmsg(fd, msgs.as_mut_ptr(), IN_BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
            };
            if n <= 0 {
                break;
            }
            busy = true;
            let now = Instant::now();
            for i in 0..n as usize {
                let len = msgs[i].msg_len as usize;
                let rx_ns = kernel_timestamp(&msgs[i].msg_hdr);
                let source = SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(names[i].sin_addr.s_addr)),
                    u16::from_be(names[i].sin_port),
                ));
                let Some(&k) = by_addr.get(&source) else {
                    stats.unknown_source += 1;
                    continue;
                };
                let kind = match bufs[i][0] {
                    0..=3 => 2,
                    20..=63 => 3,
                    128..=191 if (200..=207).contains(&bufs[i][1]) => 1,
                    _ => 0,
                };
                stats.in_kinds[kind] += 1;
                let b = &mut browsers[k];
                if let (0, Some(srtp)) = (kind, b.srtp.as_mut()) {
                    if srtp.unprotect(&bufs[i][..len.min(2048)], &mut clear) {
                        let at = srtp::rtp_header_len(&clear).unwrap_or(clear.len());
                        record(&mut stats, &sched, &clear[at..], rx_ns, endpoints);
                    }
                    continue;
                }
                if kind == 3 {
                    // The keys this handshake may export are the next ones noted on this thread.
                    srtp::clear_captured_keys();
                }
                let Ok(contents) = bufs[i][..len.min(2048)].try_into() else { continue };
                let input = Input::Receive(now, Receive { proto: Protocol::Udp, source, destination: local, contents });
                if b.rtc.handle_input(input).is_ok() {
                    drain(b, fd, &mut out, &mut stats, &sched, rx_ns, endpoints);
                }
            }
            if (n as usize) < IN_BATCH {
                break;
            }
        }
        // 2. Timers (ICE checks and consent, DTLS retransmissions, RTCP), every millisecond.
        let now = Instant::now();
        if now >= next_scan {
            next_scan = now + Duration::from_millis(1);
            for b in browsers.iter_mut() {
                if b.timeout <= now {
                    let _ = b.rtc.handle_input(Input::Timeout(now));
                    drain(b, fd, &mut out, &mut stats, &sched, None, endpoints);
                }
            }
        }
        // 3. Media, once every call is connected.
        let start = sched.start_ns.load(Ordering::Relaxed);
        if !media && start != 0 {
            media = true;
            for b in browsers.iter_mut() {
                b.next_ns = start + PERIOD_NS * u64::from(b.id) / endpoints as u64;
            }
            order = (0..browsers.len()).collect();
            order.sort_by_key(|&i| browsers[i].next_ns);
        }
        let (warm, end) = (sched.warm_ns.load(Ordering::Relaxed), sched.end_ns.load(Ordering::Relaxed));
        let mut now_ns = realtime_ns();
        if media && cpu_at_warm.is_none() && now_ns >= warm {
            cpu_at_warm = Some(thread_cpu_ns());
        }
        if media && now_ns < end && !order.is_empty() {
            let now = Instant::now();
            // At most a batch's worth between two looks at the socket: a thread that falls
            // behind keeps receiving (and its lateness shows in gen_late_max_ms).
            let mut budget = 4 * OUT_BATCH;
            while budget > 0 && now_ns < end && browsers[order[cursor]].next_ns <= now_ns {
                budget -= 1;
                let b = &mut browsers[order[cursor]];
                stats.late_max_ns = stats.late_max_ns.max(now_ns - b.next_ns);
                let mut payload = payload_fill;
                payload[0..4].copy_from_slice(&b.id.to_be_bytes());
                let stamp = realtime_ns();
                payload[4..12].copy_from_slice(&stamp.to_be_bytes());
                if let (Some(srtp), Some(peer)) = (b.srtp.as_mut(), b.peer) {
                    clear.clear();
                    clear.extend_from_slice(&[0x80, if b.seq == 0 { 0x80 } else { 0 }]);
                    clear.extend_from_slice(&(b.seq as u16).to_be_bytes());
                    clear.extend_from_slice(&b.ts.to_be_bytes());
                    clear.extend_from_slice(&b.ssrc.to_be_bytes());
                    clear.extend_from_slice(&payload);
                    if srtp.protect(&clear, &mut sealed) {
                        out.push(fd, peer, &sealed);
                    }
                } else {
                    let write = RtpWrite::new(0.into(), b.seq.into(), b.ts, now, payload.to_vec())
                        .marker(b.seq == 0);
                    let mid = b.mid;
                    if let Some(tx) = b.rtc.direct_api().stream_tx_by_mid(mid, None) {
                        tx.write_rtp(write);
                    }
                    let _ = b.rtc.handle_input(Input::Timeout(now));
                    drain(b, fd, &mut out, &mut stats, &sched, None, endpoints);
                }
                // Out at once: the stamp is taken before str0m encrypts, so anything between
                // it and the send (more packets' encryption, or being preempted by the relay
                // meanwhile) would count as relay delay.
                out.flush(fd);
                b.seq += 1;
                b.ts = b.ts.wrapping_add(160);
                if stamp >= warm && stamp < end {
                    stats.sent += 1;
                }
                b.next_ns += PERIOD_NS;
                cursor = (cursor + 1) % order.len();
                busy = true;
                now_ns = realtime_ns();
            }
        }
        out.flush(fd);
        if media && now_ns >= end && stats.cpu_ns == 0 {
            stats.cpu_ns = thread_cpu_ns().saturating_sub(cpu_at_warm.unwrap_or(0)).max(1);
        }
        if !busy {
            let mut wait = POLL;
            if media && now_ns < end && !order.is_empty() {
                let due = browsers[order[cursor]].next_ns.saturating_sub(realtime_ns());
                wait = wait.min(Duration::from_nanos(due.max(200_000)));
            }
            std::thread::sleep(wait);
        }
    }
    stats.send_errors = out.send_errors;
    stats
}

// ---- the run ----

fn pct(hist: &[u64], received: u64, p: f64) -> u64 {
    let target = ((received as f64 * p).ceil() as u64).max(1);
    let mut acc = 0;
    for (us, n) in hist.iter().enumerate() {
        acc += n;
        if acc >= target {
            return us as u64;
        }
    }
    HIST_BUCKETS as u64
}

fn process_cpu_ns() -> u64 {
    // SAFETY: getrusage writes into a live rusage.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// utime + stime of a process, in ns (USER_HZ = 100).
fn pid_cpu_ns(pid: Option<u32>) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000_000)
}

fn cpu_pct(a: Option<u64>, b: Option<u64>, wall_ns: u64) -> String {
    match (a, b) {
        (Some(a), Some(b)) if wall_ns > 0 => format!("{:.0}", b.saturating_sub(a) as f64 * 100.0 / wall_ns as f64),
        _ => "-".into(),
    }
}

pub fn run(args: &Args) -> Result<()> {
    let calls = args.calls;
    let endpoints = 2 * calls;
    let threads = args.browser_threads.max(1);
    let b_sockets = args.sockets.max(1);
    // Leg B's sockets first (as in the plain mode), then a gap (leg B's RTCP goes to the port
    // above each), then one socket per browser thread.
    let b_port = |k: usize| args.local_base + k as u16;
    let a_port = |k: usize| args.local_base + b_sockets as u16 + 1 + k as u16;
    let local_b = |c: usize| SocketAddrV4::new(Ipv4Addr::LOCALHOST, b_port(c % b_sockets));
    let b_socks: Vec<Arc<UdpSocket>> = (0..b_sockets).map(|k| bind_socket(b_port(k)).map(Arc::new)).collect::<Result<_>>()?;
    let a_socks: Vec<UdpSocket> = (0..threads)
        .map(|k| {
            let s = bind_socket(a_port(k))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect::<Result<_>>()?;

    // The browsers' offers, then the signalling through the relay.
    let t_sig = Instant::now();
    let mut browsers = Vec::with_capacity(calls);
    let mut offers = Vec::with_capacity(calls);
    let mut pendings = Vec::with_capacity(calls);
    for c in 0..calls {
        let local = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, a_port(c % threads)));
        let (b, offer, pending) = new_browser(2 * c as u32, local, args.browser_twcc)?;
        browsers.push(b);
        offers.push(offer);
        pendings.push(Some(pending));
    }
    let mut keep_alive = None;
    let to_b = match args.target.as_str() {
        "dialtone" => {
            let (to_b, conn) = setup_dialtone(&args.control, &mut browsers, &mut pendings, &offers, &local_b)?;
            keep_alive = Some(conn);
            to_b
        }
        "rtpengine" => setup_rtpengine(&args.ng, &mut browsers, &mut pendings, &offers, &local_b)?,
        other => bail!("unknown target {other}"),
    };
    eprintln!(
        "rtpload: {calls} browser-to-SIP calls signalled on {} in {:.1} s; ICE + DTLS next",
        args.target,
        t_sig.elapsed().as_secs_f64()
    );

    // ICE and DTLS, every call at once.
    let sched = Arc::new(Schedule {
        start_ns: AtomicU64::new(0),
        warm_ns: AtomicU64::new(0),
        end_ns: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        own_srtp: !args.browser_str0m_media,
    });
    let mut per_thread: Vec<Vec<Browser>> = (0..threads).map(|_| Vec::new()).collect();
    for (c, b) in browsers.into_iter().enumerate() {
        per_thread[c % threads].push(b);
    }
    let relay_hs0 = pid_cpu_ns(args.relay_pid);
    let gen_hs0 = process_cpu_ns();
    let hs_start_ns = realtime_ns();
    let mut browser_threads = Vec::new();
    for (socket, bs) in a_socks.into_iter().zip(per_thread) {
        let sched = Arc::clone(&sched);
        browser_threads.push(std::thread::spawn(move || browser_thread(socket, bs, sched, endpoints)));
    }
    let limit = Instant::now() + HANDSHAKE_LIMIT;
    while sched.connected.load(Ordering::Relaxed) + sched.failed.load(Ordering::Relaxed) < calls && Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(2));
    }
    let hs_end_ns = realtime_ns();
    let relay_hs1 = pid_cpu_ns(args.relay_pid);
    let gen_hs1 = process_cpu_ns();
    let connected = sched.connected.load(Ordering::Relaxed);
    eprintln!(
        "rtpload: {connected} of {calls} calls connected (ICE + DTLS) in {:.2} s",
        (hs_end_ns - hs_start_ns) as f64 / 1e9
    );

    // The media: both sides spread over the period, after every call is up.
    let start_ns = realtime_ns() + 200_000_000;
    let warm_ns = start_ns + args.warmup * 1_000_000_000;
    let end_ns = warm_ns + args.seconds * 1_000_000_000;
    sched.warm_ns.store(warm_ns, Ordering::Relaxed);
    sched.end_ns.store(end_ns, Ordering::Relaxed);
    sched.start_ns.store(start_ns, Ordering::Relaxed);
    let mut per_socket: Vec<Vec<Endpoint>> = (0..b_sockets).map(|_| Vec::new()).collect();
    for c in 0..calls {
        let e = 2 * c + 1;
        per_socket[c % b_sockets].push(Endpoint {
            id: e as u32,
            dest: sockaddr(to_b[c]),
            seq: (e as u16).wrapping_mul(31),
            ts: (e as u32).wrapping_mul(7919),
            next_ns: start_ns + PERIOD_NS * e as u64 / endpoints as u64,
            counted: 0,
        });
    }
    let stop_b = Arc::new(AtomicBool::new(false));
    let mut receivers = Vec::new();
    for socket in &b_socks {
        let socket = Arc::clone(socket);
        let stop = Arc::clone(&stop_b);
        receivers.push(std::thread::spawn(move || super::receive(&socket, &stop, warm_ns, end_ns, endpoints)));
    }
    let mut senders = Vec::new();
    for (socket, eps) in b_socks.iter().zip(per_socket) {
        let socket = Arc::clone(socket);
        senders.push(std::thread::spawn(move || super::send(&socket, eps, warm_ns, end_ns)));
    }
    // CPU over the counted window.
    let sleep_until = |t: u64| {
        let now = realtime_ns();
        if t > now {
            std::thread::sleep(Duration::from_nanos(t - now));
        }
    };
    sleep_until(warm_ns);
    let (gen_w0, relay_w0) = (process_cpu_ns(), pid_cpu_ns(args.relay_pid));
    sleep_until(end_ns);
    let (gen_w1, relay_w1) = (process_cpu_ns(), pid_cpu_ns(args.relay_pid));
    let mut b_sent = 0u64;
    let mut late_ns_max = 0u64;
    for s in senders {
        let (count, late) = s.join().map_err(|_| anyhow!("sender panicked"))??;
        b_sent += count;
        late_ns_max = late_ns_max.max(late);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_b.store(true, Ordering::Relaxed);
    sched.stop.store(true, Ordering::Relaxed);
    let mut a2b_hist = vec![0u64; HIST_BUCKETS + 1];
    let (mut a2b_received, mut a2b_max) = (0u64, 0u64);
    for r in receivers {
        let s = r.join().map_err(|_| anyhow!("receiver panicked"))??;
        for (h, x) in a2b_hist.iter_mut().zip(&s.hist) {
            *h += x;
        }
        a2b_received += s.received;
        a2b_max = a2b_max.max(s.max_us);
    }
    let mut b2a_hist = vec![0u64; HIST_BUCKETS + 1];
    let (mut b2a_received, mut b2a_max, mut a_sent) = (0u64, 0u64, 0u64);
    let (mut unknown, mut send_errors, mut disconnected, mut a_cpu_ns) = (0u64, 0u64, 0u64, 0u64);
    let mut connected_at: Vec<u64> = Vec::new();
    let mut in_kinds = [0u64; 4];
    for t in browser_threads {
        let s = t.join().map_err(|_| anyhow!("browser thread panicked"))?;
        for (h, x) in b2a_hist.iter_mut().zip(&s.hist) {
            *h += x;
        }
        b2a_received += s.received;
        b2a_max = b2a_max.max(s.max_us);
        a_sent += s.sent;
        late_ns_max = late_ns_max.max(s.late_max_ns);
        unknown += s.unknown_source;
        for (k, n) in in_kinds.iter_mut().zip(s.in_kinds) {
            *k += n;
        }
        send_errors += s.send_errors;
        disconnected += s.disconnected;
        a_cpu_ns += s.cpu_ns;
        connected_at.extend(s.connected_ns);
    }
    drop(keep_alive);

    // Set-up: handshakes per second over the burst, the best second, per-call time.
    connected_at.sort_unstable();
    let hs_last = connected_at.last().copied().unwrap_or(hs_start_ns);
    let hs_span_s = (hs_last.saturating_sub(hs_start_ns)) as f64 / 1e9;
    let hs_per_s = if hs_span_s > 0.0 { connected_at.len() as f64 / hs_span_s } else { 0.0 };
    let mut bins: HashMap<u64, u64> = HashMap::new();
    for t in &connected_at {
        *bins.entry((t - hs_start_ns) / 1_000_000_000).or_default() += 1;
    }
    let hs_peak = bins.values().copied().max().unwrap_or(0);
    let setup_ms = |p: f64| -> f64 {
        if connected_at.is_empty() {
            return 0.0;
        }
        let i = (((connected_at.len() as f64) * p).ceil() as usize).clamp(1, connected_at.len()) - 1;
        (connected_at[i] - hs_start_ns) as f64 / 1e6
    };

    let offered = calls as u64 * args.seconds * 1_000_000_000 / PERIOD_NS;
    let a2b_lost = a_sent.saturating_sub(a2b_received);
    let b2a_lost = b_sent.saturating_sub(b2a_received);
    let loss = |lost: u64, sent: u64| if sent == 0 { 100.0 } else { lost as f64 * 100.0 / sent as f64 };
    let (a2b_loss, b2a_loss) = (loss(a2b_lost, a_sent), loss(b2a_lost, b_sent));
    let sent = a_sent + b_sent;
    let received = a2b_received + b2a_received;
    let lost = a2b_lost + b2a_lost;
    let loss_pct = loss(lost, sent);
    let mut hist = a2b_hist.clone();
    for (h, x) in hist.iter_mut().zip(&b2a_hist) {
        *h += x;
    }
    let (p50, p99, p999) = (pct(&hist, received, 0.50), pct(&hist, received, 0.99), pct(&hist, received, 0.999));
    let a2b_p99 = pct(&a2b_hist, a2b_received, 0.99);
    let b2a_p99 = pct(&b2a_hist, b2a_received, 0.99);
    let max_us = a2b_max.max(b2a_max);
    let behind = (a_sent as f64) < offered as f64 * 0.99 || (b_sent as f64) < offered as f64 * 0.99;
    let all_up = connected == calls;
    let pass = all_up
        && received > 0
        && !behind
        && a2b_loss < args.max_loss_pct
        && b2a_loss < args.max_loss_pct
        && p99 < args.max_p99_us;
    let window_ns = end_ns - warm_ns;
    let hs_wall = hs_end_ns - hs_start_ns;
    let gen_cpu = cpu_pct(Some(gen_w0), Some(gen_w1), window_ns);
    let gen_a_cpu = format!("{:.0}", a_cpu_ns as f64 * 100.0 / window_ns as f64);
    let relay_cpu = cpu_pct(relay_w0, relay_w1, window_ns);
    let gen_hs_cpu = cpu_pct(Some(gen_hs0), Some(gen_hs1), hs_wall);
    let relay_hs_cpu = cpu_pct(relay_hs0, relay_hs1, hs_wall);
    // CPU per handshake (ICE + DTLS, with the burst's datagrams), from /proc's 10 ms ticks.
    let per_hs = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if connected > 0 => format!("{:.3}", b.saturating_sub(a) as f64 / 1e6 / connected as f64),
        _ => "-".into(),
    };
    let relay_ms_per_hs = per_hs(relay_hs0, relay_hs1);
    let gen_ms_per_hs = per_hs(Some(gen_hs0), Some(gen_hs1));
    println!(
        "{calls} browser-to-SIP calls through {}: {connected} connected, {:.0} DTLS handshakes/s (best second {hs_peak}, set-up p50 {:.0} ms, last {:.0} ms; CPU generator {gen_hs_cpu} %, relay {relay_hs_cpu} %, relay {relay_ms_per_hs} ms a handshake); \
         browser->SIP {a_sent} sent of {offered} due, {a2b_lost} lost ({a2b_loss:.4}%), p99 {a2b_p99} us; SIP->browser {b_sent} sent, {b2a_lost} lost ({b2a_loss:.4}%), p99 {b2a_p99} us; \
         delay p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max_us} us; CPU generator {gen_cpu} % (browsers {gen_a_cpu} %), relay {relay_cpu} %; lateness max {:.2} ms: {}",
        args.target,
        hs_per_s,
        setup_ms(0.5),
        setup_ms(1.0),
        late_ns_max as f64 / 1e6,
        if pass { "PASS" } else { "FAIL" }
    );
    println!(
        "RTPLOAD_RESULT target={} webrtc=1 calls={calls} seconds={} connected={connected} offered={} sent={sent} behind={} received={received} lost={lost} loss_pct={loss_pct:.4} \
         browser_twcc={} a2b_sent={a_sent} a2b_lost={a2b_lost} a2b_loss_pct={a2b_loss:.4} a2b_p99_us={a2b_p99} b2a_sent={b_sent} b2a_lost={b2a_lost} b2a_loss_pct={b2a_loss:.4} b2a_p99_us={b2a_p99} \
         p50_us={p50} p99_us={p99} p999_us={p999} max_us={max_us} gen_late_max_ms={:.2} dtls_hs_per_s={hs_per_s:.0} dtls_peak_per_s={hs_peak} setup_p50_ms={:.0} setup_max_ms={:.0} \
         hs_gen_cpu_pct={gen_hs_cpu} hs_relay_cpu_pct={relay_hs_cpu} hs_relay_cpu_ms={relay_ms_per_hs} hs_gen_cpu_ms={gen_ms_per_hs} gen_cpu_pct={gen_cpu} gen_browser_cpu_pct={gen_a_cpu} relay_window_cpu_pct={relay_cpu} \
         relay_in_srtp={} relay_in_srtcp={} relay_in_stun={} relay_in_dtls={} unknown_source={unknown} send_errors={send_errors} disconnected={disconnected} pass={}",
        args.target,
        args.seconds,
        2 * offered,
        u8::from(behind),
        u8::from(args.browser_twcc),
        late_ns_max as f64 / 1e6,
        setup_ms(0.5),
        setup_ms(1.0),
        in_kinds[0],
        in_kinds[1],
        in_kinds[2],
        in_kinds[3],
        u8::from(pass)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for text in ["", "a", "ab", "abc", "abcd", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"] {
            assert_eq!(unb64(&b64(text.as_bytes())).unwrap(), text.as_bytes());
        }
        assert_eq!(b64(b"abcd"), "YWJjZA==");
    }

    #[test]
    fn answer_addresses_from_candidates_or_lines() {
        let sdp = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\n\
                   a=candidate:1 1 udp 2130706431 127.0.0.1 30000 typ host\r\n\
                   a=candidate:1 2 udp 2130706430 127.0.0.1 30001 typ host\r\n";
        assert_eq!(answer_addresses(sdp), vec!["127.0.0.1:30000".parse().unwrap()]);
        let plain = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(answer_addresses(plain), vec!["127.0.0.1:4000".parse().unwrap()]);
    }

    #[test]
    fn a_bundle_group_is_added_only_when_missing() {
        let sdp = "v=0\r\nt=0 0\r\na=ice-lite\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=mid:Gdb\r\n";
        let fixed = with_bundle_group(sdp);
        assert_eq!(fixed, "v=0\r\nt=0 0\r\na=ice-lite\r\na=group:BUNDLE Gdb\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 0\r\na=mid:Gdb\r\n");
        assert_eq!(with_bundle_group(&fixed), fixed);
    }

    #[test]
    fn bencode_lists_and_sorted_keys() {
        let d = bdict(&[("rtcp-mux", format!("l{}e", bstr("demux"))), ("ICE", bstr("remove"))]);
        assert_eq!(d, "d3:ICE6:remove8:rtcp-muxl5:demuxee");
    }

    #[test]
    fn a_browser_offers_dtls_srtp_pcmu_and_telephone_event() {
        let (_b, offer, _p) = new_browser(0, "127.0.0.1:40000".parse().unwrap(), false).unwrap();
        assert!(offer.contains("UDP/TLS/RTP/SAVPF"), "{offer}");
        assert!(!offer.contains("transport-cc"), "{offer}");
        assert!(offer.contains("urn:ietf:params:rtp-hdrext:sdes:mid"), "{offer}");
        let (_b, offer, _p) = new_browser(0, "127.0.0.1:40000".parse().unwrap(), true).unwrap();
        assert!(offer.contains("a=rtcp-fb:0 transport-cc"), "{offer}");
        assert!(offer.contains("PCMU/8000"), "{offer}");
        assert!(offer.contains("telephone-event/8000"), "{offer}");
        assert!(offer.contains("a=setup:actpass"), "{offer}");
        assert!(!offer.contains("ice-lite"), "{offer}");
    }
}
