//! rtpload: bridged-call RTP load through a media relay, with one-way delay and loss.
//!
//! For each of `--calls` N calls the generator plays both far ends: leg A's and leg B's
//! endpoints each send G.711 (PCMU, 160-byte payload) every 20 ms to the relay, which must
//! deliver each packet to the other endpoint. Every payload carries the sending endpoint's id
//! and its send time (CLOCK_REALTIME, taken when the packet is built, just before `sendmmsg`);
//! the receiving side takes the kernel's receive timestamp (SO_TIMESTAMPNS), so the delay is the
//! relay's, not the generator's scheduling, and the receivers can poll their sockets every
//! 0.5 ms instead of being woken per packet. Endpoints are spread evenly over the 20 ms period so
//! the relay sees a steady rate, as with real calls, rather than one burst per period.
//!
//! Bridges are set up through the relay's control protocol before the media starts:
//! - `--target dialtone --control ADDR`: the line protocol of Dialtone's
//!   `crates/node/examples/relay_server.rs` (`pair A B` -> `ok PORT_A PORT_B`). With `--apart`,
//!   `pair-apart A B`: the legs are allocated on two different media workers and the bridge
//!   moves leg A to leg B's worker (the cross-worker path).
//! - `--target rtpengine --ng ADDR`: rtpengine's ng protocol (bencode over UDP): `offer` with
//!   leg A's address, `answer` with leg B's; the SDP rtpengine returns names the ports.
//!
//! With `--webrtc`, each call is browser-to-SIP instead: leg A's far end is a WebRTC browser (a
//! str0m session doing ICE and DTLS-SRTP with the relay), leg B's plain RTP as above; set up
//! with relay_server's `pair-webrtc` or rtpengine's ng offer/answer bridging SRTP and RTP. See
//! `webrtc.rs`, which also times the DTLS handshakes and reports loss per direction.
//!
//! Packets sent during `--warmup` seconds are not counted; then `--seconds` of counted traffic;
//! then the senders stop and the receivers wait 0.5 s for stragglers. Prints one
//! `RTPLOAD_RESULT key=value ...` line: packets due and sent, lost, loss %, delay p50/p99/p999/max
//! in microseconds, and `pass=1` when at least 99 % of the packets due were sent (a generator
//! starved of CPU falls behind), loss < `--max-loss-pct` and p99 < `--max-p99-us`.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

mod udp;
mod webrtc;
use udp::{bind_socket, kernel_timestamp, realtime_ns, send_batch, sockaddr};

const PAYLOAD: usize = 160;
const PACKET: usize = 12 + PAYLOAD;
const PERIOD_NS: u64 = 20_000_000;
const SEND_BATCH: usize = 32;
const SEND_PAUSE_NS: u64 = 200_000;
const RECV_BATCH: usize = 64;
const RECV_POLL: Duration = Duration::from_micros(500);
/// Delay histogram: 1 µs buckets up to 100 ms, then one overflow bucket.
const HIST_BUCKETS: usize = 100_000;

#[derive(Parser, Debug)]
#[command(about = "Bridged-call RTP load through a media relay (Dialtone or rtpengine)")]
struct Args {
    /// dialtone or rtpengine
    #[arg(long)]
    target: String,
    /// Dialtone relay_server control address
    #[arg(long, default_value = "127.0.0.1:7070")]
    control: String,
    /// rtpengine ng address
    #[arg(long, default_value = "127.0.0.1:22222")]
    ng: String,
    /// Bridged calls (two endpoints each)
    #[arg(long)]
    calls: usize,
    /// Counted seconds of traffic
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Uncounted seconds of traffic first
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Generator sockets (one sender and one receiver thread each)
    #[arg(long, default_value_t = 2)]
    sockets: usize,
    /// First local port of the generator's sockets (outside the relays' ranges and the
    /// ephemeral range)
    #[arg(long, default_value_t = 61000)]
    local_base: u16,
    #[arg(long, default_value_t = 0.1)]
    max_loss_pct: f64,
    #[arg(long, default_value_t = 2000)]
    max_p99_us: u64,
    /// Dialtone only: set each call up with `pair-apart` (its legs allocated on two different
    /// media workers, then bridged, which moves leg A to leg B's worker) instead of `pair`
    #[arg(long)]
    apart: bool,
    /// Browser-to-SIP calls: each call's leg A is a WebRTC browser (str0m: ICE, DTLS-SRTP), leg
    /// B plain RTP (see src/webrtc.rs). Dialtone: relay_server's `pair-webrtc`; rtpengine: ng
    /// offer/answer bridging SRTP and RTP.
    #[arg(long)]
    webrtc: bool,
    /// With --webrtc: threads (each with one UDP socket) the browsers are spread over
    #[arg(long, default_value_t = 2)]
    browser_threads: usize,
    /// With --webrtc: the relay's pid, for its CPU during the handshakes and the counted window
    #[arg(long)]
    relay_pid: Option<u32>,
    /// With --webrtc: offer str0m's defaults, `transport-cc` feedback on PCMU and the
    /// transport-wide sequence number extension (browsers do neither for PCMU), so both ends
    /// stamp every packet and send transport-wide congestion feedback every 50 ms
    #[arg(long)]
    browser_twcc: bool,
    /// With --webrtc: the browsers send and receive their audio through str0m (its SRTP and
    /// per-stream work) instead of the srtp crate after str0m's handshake
    #[arg(long)]
    browser_str0m_media: bool,
}

struct Endpoint {
    id: u32,
    dest: libc::sockaddr_in,
    seq: u16,
    ts: u32,
    next_ns: u64,
    counted: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.calls == 0 || args.sockets == 0 {
        bail!("--calls and --sockets must be positive");
    }
    if args.webrtc {
        if args.apart {
            bail!("--apart and --webrtc do not go together");
        }
        return webrtc::run(&args);
    }
    let sockets: Vec<Arc<UdpSocket>> = (0..args.sockets)
        .map(|i| bind_socket(args.local_base + i as u16).map(Arc::new))
        .collect::<Result<_>>()?;
    let local = |endpoint: usize| -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, args.local_base + (endpoint % args.sockets) as u16)
    };

    // Bridges: for call c, endpoint 2c is leg A's far end, 2c+1 leg B's. `dests[e]` is where
    // endpoint e sends (the relay port of its own leg).
    let setup_started = std::time::Instant::now();
    let mut keep_alive = None;
    let dests: Vec<SocketAddrV4> = match args.target.as_str() {
        "dialtone" => {
            let (dests, connection) = setup_dialtone(&args.control, args.calls, args.apart, &local)?;
            keep_alive = Some(connection);
            dests
        }
        "rtpengine" if args.apart => bail!("--apart is for --target dialtone"),
        "rtpengine" => setup_rtpengine(&args.ng, args.calls, &local)?,
        other => bail!("unknown target {other}"),
    };
    eprintln!(
        "rtpload: {} bridges set up on {}{} in {:.1} s",
        args.calls,
        args.target,
        if args.apart { " (legs on different workers, then bridged)" } else { "" },
        setup_started.elapsed().as_secs_f64()
    );

    let endpoints = 2 * args.calls;
    let start_ns = realtime_ns() + 100_000_000;
    let warm_ns = start_ns + args.warmup * 1_000_000_000;
    let end_ns = warm_ns + args.seconds * 1_000_000_000;
    let stop = Arc::new(AtomicBool::new(false));

    let mut per_socket: Vec<Vec<Endpoint>> = (0..args.sockets).map(|_| Vec::new()).collect();
    for e in 0..endpoints {
        // Evenly spread phases over the period, interleaved across sockets.
        let phase = PERIOD_NS * e as u64 / endpoints as u64;
        per_socket[e % args.sockets].push(Endpoint {
            id: e as u32,
            dest: sockaddr(dests[e]),
            seq: (e as u16).wrapping_mul(31),
            ts: (e as u32).wrapping_mul(7919),
            next_ns: start_ns + phase,
            counted: 0,
        });
    }

    let mut receivers = Vec::new();
    for socket in &sockets {
        let socket = Arc::clone(socket);
        let stop = Arc::clone(&stop);
        receivers.push(std::thread::spawn(move || receive(&socket, &stop, warm_ns, end_ns, endpoints)));
    }
    let mut senders = Vec::new();
    for (socket, eps) in sockets.iter().zip(per_socket) {
        let socket = Arc::clone(socket);
        senders.push(std::thread::spawn(move || send(&socket, eps, warm_ns, end_ns)));
    }
    let mut sent = 0u64;
    let mut late_ns_max = 0u64;
    for s in senders {
        let (count, late) = s.join().map_err(|_| anyhow!("sender panicked"))??;
        sent += count;
        late_ns_max = late_ns_max.max(late);
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mut hist = vec![0u64; HIST_BUCKETS + 1];
    let mut received = 0u64;
    let mut max_us = 0u64;
    for r in receivers {
        let stats = r.join().map_err(|_| anyhow!("receiver panicked"))??;
        for (h, s) in hist.iter_mut().zip(&stats.hist) {
            *h += s;
        }
        received += stats.received;
        max_us = max_us.max(stats.max_us);
    }
    drop(keep_alive);

    let lost = sent.saturating_sub(received);
    let loss_pct = if sent == 0 { 100.0 } else { lost as f64 * 100.0 / sent as f64 };
    let pct = |p: f64| -> u64 {
        let target = (received as f64 * p).ceil() as u64;
        let mut acc = 0;
        for (us, n) in hist.iter().enumerate() {
            acc += n;
            if acc >= target.max(1) {
                return us as u64;
            }
        }
        HIST_BUCKETS as u64
    };
    let (p50, p99, p999) = (pct(0.50), pct(0.99), pct(0.999));
    // What the calls should have sent in the counted window. A generator starved of CPU (by a
    // relay that takes the cores) falls behind, sends less and would make the rung look easy:
    // under 99 % of it, the rung fails whatever the loss and delay.
    let offered = (2 * args.calls) as u64 * args.seconds * 1_000_000_000 / PERIOD_NS;
    let behind = (sent as f64) < offered as f64 * 0.99;
    let pass = received > 0 && !behind && loss_pct < args.max_loss_pct && p99 < args.max_p99_us;
    println!(
        "{} calls through {}: {} packets sent of {} due{}, {} lost ({:.4}%), delay p50 {} us, p99 {} us, p99.9 {} us, max {} us, generator lateness max {:.2} ms: {}",
        args.calls,
        args.target,
        sent,
        offered,
        if behind { " (the generator fell behind)" } else { "" },
        lost,
        loss_pct,
        p50,
        p99,
        p999,
        max_us,
        late_ns_max as f64 / 1e6,
        if pass { "PASS" } else { "FAIL" }
    );
    println!(
        "RTPLOAD_RESULT target={} apart={} calls={} seconds={} offered={} sent={} behind={} received={} lost={} loss_pct={:.4} p50_us={} p99_us={} p999_us={} max_us={} gen_late_max_ms={:.2} pass={}",
        args.target,
        u8::from(args.apart),
        args.calls,
        args.seconds,
        offered,
        sent,
        u8::from(behind),
        received,
        lost,
        loss_pct,
        p50,
        p99,
        p999,
        max_us,
        late_ns_max as f64 / 1e6,
        u8::from(pass)
    );
    Ok(())
}

/// Sends every endpoint's packets on schedule; returns (counted packets, worst lateness in ns).
fn send(socket: &UdpSocket, mut eps: Vec<Endpoint>, warm_ns: u64, end_ns: u64) -> Result<(u64, u64)> {
    // Endpoints sorted by their first send time keep that order forever (same period), so a
    // cursor going round the ring finds the due ones without scanning all.
    eps.sort_by_key(|e| e.next_ns);
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; PACKET]; SEND_BATCH];
    let mut names = vec![sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)); SEND_BATCH];
    let mut iovs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; SEND_BATCH];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; SEND_BATCH];
    let mut cursor = 0usize;
    let mut late_max = 0u64;
    let mut counted = 0u64;
    if eps.is_empty() {
        return Ok((0, 0));
    }
    loop {
        let now = realtime_ns();
        if now >= end_ns {
            break;
        }
        let mut batch = 0usize;
        while eps[cursor].next_ns <= now {
            let ep = &mut eps[cursor];
            late_max = late_max.max(now - ep.next_ns);
            let buf = &mut bufs[batch];
            buf[0] = 0x80;
            buf[1] = if ep.seq == 0 { 0x80 } else { 0 };
            buf[2..4].copy_from_slice(&ep.seq.to_be_bytes());
            buf[4..8].copy_from_slice(&ep.ts.to_be_bytes());
            buf[8..12].copy_from_slice(&ep.id.to_be_bytes());
            buf[12..16].copy_from_slice(&ep.id.to_be_bytes());
            let stamp = realtime_ns();
            buf[16..24].copy_from_slice(&stamp.to_be_bytes());
            buf[24..].fill(0xff);
            names[batch] = ep.dest;
            ep.seq = ep.seq.wrapping_add(1);
            ep.ts = ep.ts.wrapping_add(160);
            if stamp >= warm_ns && stamp < end_ns {
                ep.counted += 1;
                counted += 1;
            }
            ep.next_ns += PERIOD_NS;
            cursor = (cursor + 1) % eps.len();
            batch += 1;
            if batch == SEND_BATCH {
                send_batch(fd, &mut bufs, &mut names, &mut iovs, &mut msgs, batch);
                batch = 0;
            }
        }
        if batch > 0 {
            send_batch(fd, &mut bufs, &mut names, &mut iovs, &mut msgs, batch);
        }
        // At least SEND_PAUSE between batches: thousands of endpoints are due every few
        // microseconds, and a wake-up per packet would cost more than the sends. Each packet's
        // stamp is taken as it is built, so this lateness is not counted as relay delay.
        let wait = eps[cursor].next_ns.saturating_sub(realtime_ns()).max(SEND_PAUSE_NS);
        std::thread::sleep(Duration::from_nanos(wait));
    }
    Ok((counted, late_max))
}

struct RecvStats {
    hist: Vec<u64>,
    received: u64,
    max_us: u64,
}

fn receive(socket: &UdpSocket, stop: &AtomicBool, warm_ns: u64, end_ns: u64, endpoints: usize) -> Result<RecvStats> {
    let fd = socket.as_raw_fd();
    let mut hist = vec![0u64; HIST_BUCKETS + 1];
    let mut received = 0u64;
    let mut max_us = 0u64;
    let mut bufs = vec![[0u8; 256]; RECV_BATCH];
    let mut controls = vec![[0u64; 8]; RECV_BATCH];
    let mut iovs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; RECV_BATCH];
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; RECV_BATCH];
    for i in 0..RECV_BATCH {
        iovs[i] = libc::iovec { iov_base: bufs[i].as_mut_ptr().cast(), iov_len: 256 };
    }
    while !stop.load(Ordering::Relaxed) {
        for i in 0..RECV_BATCH {
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_name = std::ptr::null_mut();
            hdr.msg_namelen = 0;
            hdr.msg_iov = &mut iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = controls[i].as_mut_ptr().cast();
            hdr.msg_controllen = 64;
            hdr.msg_flags = 0;
        }
        // SAFETY: every message points at live buffers of the stated sizes.
        let n = unsafe {
            libc::recvmmsg(fd, msgs.as_mut_ptr(), RECV_BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if n <= 0 {
            // Drained. Polling every RECV_POLL instead of blocking: the kernel's receive
            // timestamps make the delay exact anyway, and a relay's send then never has to wake
            // a sleeping generator thread (which would cost the relay, and the machine, a
            // context switch per packet).
            std::thread::sleep(RECV_POLL);
            continue;
        }
        for i in 0..n as usize {
            let len = msgs[i].msg_len as usize;
            let Some(rx_ns) = kernel_timestamp(&msgs[i].msg_hdr) else { continue };
            let buf = &bufs[i][..len.min(256)];
            let Some((id, sent_ns)) = parse(buf) else { continue };
            if (id as usize) >= endpoints || sent_ns < warm_ns || sent_ns >= end_ns {
                continue;
            }
            received += 1;
            let us = rx_ns.saturating_sub(sent_ns) / 1000;
            max_us = max_us.max(us);
            hist[(us as usize).min(HIST_BUCKETS)] += 1;
        }
    }
    Ok(RecvStats { hist, received, max_us })
}

/// The sending endpoint and send time from a relayed packet's payload.
fn parse(buf: &[u8]) -> Option<(u32, u64)> {
    let b0 = *buf.first()?;
    if *buf.get(1)? & 0x7f != 0 {
        // Not PCMU: RTCP from the relay, or anything else.
        return None;
    }
    let mut offset = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = u16::from_be_bytes([*buf.get(offset + 2)?, *buf.get(offset + 3)?]);
        offset += 4 + 4 * usize::from(words);
    }
    let payload = buf.get(offset..offset + 12)?;
    let id = u32::from_be_bytes(payload[0..4].try_into().ok()?);
    let sent = u64::from_be_bytes(payload[4..12].try_into().ok()?);
    Some((id, sent))
}

fn setup_dialtone(
    control: &str,
    calls: usize,
    apart: bool,
    local: &dyn Fn(usize) -> SocketAddrV4,
) -> Result<(Vec<SocketAddrV4>, TcpStream)> {
    let stream = TcpStream::connect(control).with_context(|| format!("connect {control}"))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut dests = Vec::with_capacity(2 * calls);
    // In chunks: requests pipelined, answers read back.
    for chunk_start in (0..calls).step_by(200) {
        let chunk_end = (chunk_start + 200).min(calls);
        let mut requests = String::new();
        for c in chunk_start..chunk_end {
            let command = if apart { "pair-apart" } else { "pair" };
            requests.push_str(&format!("{command} {} {}\n", local(2 * c), local(2 * c + 1)));
        }
        writer.write_all(requests.as_bytes())?;
        for _ in chunk_start..chunk_end {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let mut words = line.split_whitespace();
            let (Some("ok"), Some(a), Some(b)) = (words.next(), words.next(), words.next()) else {
                bail!("relay_server: {}", line.trim());
            };
            dests.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, a.parse()?));
            dests.push(SocketAddrV4::new(Ipv4Addr::LOCALHOST, b.parse()?));
        }
    }
    Ok((dests, stream))
}

// ---- rtpengine's ng protocol: "<cookie> <bencoded dict>" over UDP ----

fn bencode_dict(pairs: &[(&str, &str)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort_by_key(|(k, _)| *k);
    let mut out = String::from("d");
    for (k, v) in sorted {
        out.push_str(&format!("{}:{}{}:{}", k.len(), k, v.len(), v));
    }
    out.push('e');
    out
}

/// The string value of `key` in a flat bencoded dictionary (enough for ng replies: result,
/// sdp, error-reason are strings at the top level).
fn bencode_string(reply: &str, key: &str) -> Option<String> {
    let needle = format!("{}:{}", key.len(), key);
    let at = reply.find(&needle)? + needle.len();
    let rest = &reply[at..];
    let colon = rest.find(':')?;
    let len: usize = rest[..colon].parse().ok()?;
    rest.get(colon + 1..colon + 1 + len).map(str::to_owned)
}

fn sdp(session: usize, port: u16) -> String {
    format!(
        "v=0\r\no=- {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=ptime:20\r\na=sendrecv\r\n"
    )
}

fn sdp_port(sdp: &str) -> Option<u16> {
    let line = sdp.lines().find(|l| l.starts_with("m=audio "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ng_request(socket: &UdpSocket, cookie: &str, body: &str) -> Result<String> {
    let message = format!("{cookie} {body}");
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        socket.send(message.as_bytes())?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
                if let Some(rest) = reply.strip_prefix(cookie).and_then(|r| r.strip_prefix(' ')) {
                    return Ok(rest.to_owned());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no answer from rtpengine for {cookie}")
}

fn setup_rtpengine(ng: &str, calls: usize, local: &dyn Fn(usize) -> SocketAddrV4) -> Result<Vec<SocketAddrV4>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.connect(ng)?;
    socket.set_read_timeout(Some(Duration::from_secs(1)))?;
    let pid = std::process::id();
    let mut dests = vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0); 2 * calls];
    for c in 0..calls {
        // rtpengine now and then answers an answer with "Unknown call-id" right after its
        // start; the call is set up again under a new call-id.
        let mut attempt = 0;
        let (to_a, to_b) = loop {
            match rtpengine_call(&socket, pid, c, attempt, local) {
                Ok(ports) => break ports,
                Err(e) if attempt < 3 => {
                    eprintln!("rtpload: call {c} again after: {e}");
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        };
        dests[2 * c] = SocketAddrV4::new(Ipv4Addr::LOCALHOST, to_a);
        dests[2 * c + 1] = SocketAddrV4::new(Ipv4Addr::LOCALHOST, to_b);
    }
    Ok(dests)
}

/// One offer/answer; returns (port leg A sends to, port leg B sends to).
fn rtpengine_call(
    socket: &UdpSocket,
    pid: u32,
    c: usize,
    attempt: u32,
    local: &dyn Fn(usize) -> SocketAddrV4,
) -> Result<(u16, u16)> {
    {
        let call_id = format!("rtpload-{pid}-{c}-{attempt}");
        let (from_tag, to_tag) = (format!("a{c}"), format!("b{c}"));
        let offer_sdp = sdp(2 * c, local(2 * c).port());
        let offer = bencode_dict(&[
            ("command", "offer"),
            ("call-id", &call_id),
            ("from-tag", &from_tag),
            ("sdp", &offer_sdp),
        ]);
        let reply = ng_request(socket, &format!("{pid}o{c}-{attempt}"), &offer)?;
        if bencode_string(&reply, "result").as_deref() != Some("ok") {
            bail!("offer {c}: {reply}");
        }
        // The offer as forwarded to leg B names the port leg B sends to.
        let to_b = bencode_string(&reply, "sdp").and_then(|s| sdp_port(&s)).ok_or(anyhow!("offer {c}: no port"))?;
        let answer_sdp = sdp(2 * c + 1, local(2 * c + 1).port());
        let answer = bencode_dict(&[
            ("command", "answer"),
            ("call-id", &call_id),
            ("from-tag", &from_tag),
            ("to-tag", &to_tag),
            ("sdp", &answer_sdp),
        ]);
        let reply = ng_request(socket, &format!("{pid}a{c}-{attempt}"), &answer)?;
        if bencode_string(&reply, "result").as_deref() != Some("ok") {
            bail!("answer {c}: {reply}");
        }
        let to_a = bencode_string(&reply, "sdp").and_then(|s| sdp_port(&s)).ok_or(anyhow!("answer {c}: no port"))?;
        Ok((to_a, to_b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bencode_round_trip_of_the_fields_used() {
        let d = bencode_dict(&[("sdp", "v=0"), ("command", "offer")]);
        assert_eq!(d, "d7:command5:offer3:sdp3:v=0e");
        assert_eq!(bencode_string("d6:result2:ok3:sdp3:v=0e", "sdp").as_deref(), Some("v=0"));
        assert_eq!(sdp_port(&sdp(1, 4242)), Some(4242));
    }

    #[test]
    fn payload_stamp_is_found_after_csrcs() {
        let mut buf = vec![0x81u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9];
        buf.extend_from_slice(&7u32.to_be_bytes());
        buf.extend_from_slice(&99u64.to_be_bytes());
        assert_eq!(parse(&buf), Some((7, 99)));
    }
}
