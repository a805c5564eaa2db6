//! str0mcost: what str0m costs per packet on the side of a relay, as a function of how many
//! sessions share the process. No sockets: pairs of sessions exchange their datagrams in memory.
//!
//! For each of `SESSIONS` pairs, a browser-like session (full ICE, the offerer) and a relay-like
//! one (ICE-lite, RTP mode, PCMU + telephone-event: what Dialtone's `node::media::webrtc` legs
//! negotiate with rtpload's browsers) connect (ICE + DTLS), then every pair in turn, `ROUNDS`
//! times:
//! - relay send: the relay side writes one 160-byte PCMU packet (`stream_tx_by_mid` +
//!   `write_rtp`), `handle_input(Timeout)`, and polls until the timeout, as
//!   `WebRtcTransport::send_rtp` does;
//! - relay receive: one SRTP packet from the browser side in through `handle_input(Receive)`, then
//!   polled to `Event::RtpPacket` and the timeout, as `WebRtcTransport::handle_datagram` does;
//! - relay tick: `handle_input(Timeout)` and poll, as `WebRtcTransport::handle_tick` does every
//!   20 ms (here right after the packets, so warm in the cache, unlike in a media worker).
//!
//! Prints the mean µs of each on the relay side, and how far ahead str0m's next deadline is once
//! the relay side's timers have run (what a caller could wait for instead of every 20 ms). With one pair everything stays in the CPU's
//! caches; with hundreds each step starts on another session's state.
//!
//!   cargo run --release --bin str0mcost -- [SESSIONS] [ROUNDS]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

fn config(lite: bool) -> RtcConfig {
    let mut config = RtcConfig::new()
        .set_ice_lite(lite)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(true, false);
    config.codec_config().add_config(
        101.into(),
        None,
        Codec::Tele,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::parse_line("0-16"),
    );
    // As rtpload's browsers offer (no transport-wide congestion control for PCMU).
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
    let mut exts = str0m::rtp::ExtensionMap::empty();
    exts.set(1, str0m::rtp::Extension::AudioLevel);
    exts.set(2, str0m::rtp::Extension::AbsoluteSendTime);
    exts.set(4, str0m::rtp::Extension::RtpMid);
    config.set_extension_map(exts)
}

struct Peer {
    rtc: Rtc,
    addr: SocketAddr,
    connected: bool,
    out: Vec<Vec<u8>>,
    got: u64,
}

/// Polls until str0m names its next deadline, which it returns.
fn drain(p: &mut Peer) -> Instant {
    loop {
        match p.rtc.poll_output().expect("str0m output") {
            Output::Timeout(t) => return t,
            Output::Transmit(t) => p.out.push(t.contents.to_vec()),
            Output::Event(Event::Connected) => p.connected = true,
            Output::Event(Event::RtpPacket(_)) => p.got += 1,
            Output::Event(_) => {}
        }
    }
}

fn deliver(from: &mut Peer, to: &mut Peer, now: Instant) {
    for data in std::mem::take(&mut from.out) {
        let receive = Receive {
            proto: Protocol::Udp,
            source: from.addr,
            destination: to.addr,
            contents: data.as_slice().try_into().expect("a datagram"),
        };
        to.rtc.handle_input(Input::Receive(now, receive)).expect("str0m input");
        drain(to);
    }
}

fn write(p: &mut Peer, mid: Mid, seq: u64, now: Instant) {
    let mut api = p.rtc.direct_api();
    let tx = api.stream_tx_by_mid(mid, None).expect("a send stream");
    tx.write_rtp(RtpWrite::new(0.into(), seq.into(), (seq as u32).wrapping_mul(160), now, vec![0xffu8; 160]));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: usize = args.next().map(|s| s.parse().expect("SESSIONS")).unwrap_or(1);
    let rounds: usize = args.next().map(|s| s.parse().expect("ROUNDS")).unwrap_or(200_000 / sessions.max(1));
    let mut now = Instant::now();
    let mut pairs = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let port = 1000 + i as u16;
        let browser_addr = SocketAddr::from(([127, 0, 0, 1], port));
        let relay_addr = SocketAddr::from(([127, 0, 0, 2], port));
        let new = |lite, addr| {
            let mut rtc = config(lite).build(now);
            rtc.add_local_candidate(Candidate::host(addr, "udp").expect("a candidate"));
            Peer { rtc, addr, connected: false, out: Vec::new(), got: 0 }
        };
        let (mut browser, mut relay) = (new(false, browser_addr), new(true, relay_addr));
        let mut change = browser.rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().expect("an offer");
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).expect("offer");
        let answer = relay.rtc.sdp_api().accept_offer(offer).expect("answer");
        let answer = SdpAnswer::from_sdp_string(&answer.to_sdp_string()).expect("answer");
        browser.rtc.sdp_api().accept_answer(pending, answer).expect("answer taken");
        for _ in 0..2000 {
            now += Duration::from_millis(5);
            for p in [&mut browser, &mut relay] {
                p.rtc.handle_input(Input::Timeout(now)).expect("timeout");
                drain(p);
            }
            deliver(&mut browser, &mut relay, now);
            deliver(&mut relay, &mut browser, now);
            if browser.connected && relay.connected {
                break;
            }
        }
        assert!(browser.connected && relay.connected, "pair {i} did not connect");
        browser.out.clear();
        relay.out.clear();
        pairs.push((browser, relay, mid));
    }
    let (mut t_send, mut t_receive, mut t_tick) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut n = 0u64;
    // How far ahead str0m's next deadline is after the relay side's timers ran.
    let (mut horizon_sum, mut horizon_min) = (Duration::ZERO, Duration::MAX);
    let step = Duration::from_micros(20_000 / sessions.max(1) as u64);
    for r in 0..rounds {
        let seq = 1000 + r as u64;
        for (browser, relay, mid) in pairs.iter_mut() {
            now += step;
            let t = Instant::now();
            write(relay, *mid, seq, now);
            relay.rtc.handle_input(Input::Timeout(now)).expect("timeout");
            drain(relay);
            t_send += t.elapsed();
            deliver(relay, browser, now);
            write(browser, *mid, seq, now);
            browser.rtc.handle_input(Input::Timeout(now)).expect("timeout");
            drain(browser);
            let t = Instant::now();
            deliver(browser, relay, now);
            t_receive += t.elapsed();
            let t = Instant::now();
            relay.rtc.handle_input(Input::Timeout(now)).expect("timeout");
            let deadline = drain(relay);
            t_tick += t.elapsed();
            let horizon = deadline.saturating_duration_since(now);
            horizon_sum += horizon;
            horizon_min = horizon_min.min(horizon);
            relay.out.clear();
            n += 1;
        }
    }
    let got: u64 = pairs.iter().map(|p| p.1.got).sum();
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
    println!(
        "{sessions} session pairs, {n} packets each way ({got} decrypted on the relay side): relay send {:.2} us, receive {:.2} us, tick {:.2} us a packet",
        us(t_send),
        us(t_receive),
        us(t_tick)
    );
    let horizon_mean_ms = horizon_sum.as_secs_f64() * 1e3 / n.max(1) as f64;
    println!(
        "relay side's next str0m deadline after its timers ran: mean {horizon_mean_ms:.0} ms ahead, least {:.1} ms",
        horizon_min.as_secs_f64() * 1e3
    );
    println!(
        "STR0MCOST_RESULT sessions={sessions} packets={n} send_us={:.3} receive_us={:.3} tick_us={:.3} deadline_mean_ms={horizon_mean_ms:.1} deadline_min_ms={:.1}",
        us(t_send),
        us(t_receive),
        us(t_tick),
        horizon_min.as_secs_f64() * 1e3
    );
}
