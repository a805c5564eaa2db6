//! confload: conference mixing load through Dialtone's media plane, with loss, lateness,
//! mouth-to-ear delay and the mixer's CPU cost per participant and frame.
//!
//! `--participants` N far ends in rooms of `--room-size` (N / size rooms), set up through
//! `crates/node/examples/relay_server.rs` (`room A1 .. An` -> `ok P1 .. Pn`: a room on the least
//! loaded media worker, one stream per participant, each joined with `Participation::FULL`).
//! Every participant sends PCMU (160 bytes) every 20 ms, phases spread evenly over the period
//! (the members of one room a fifth of the period apart, for rooms of five); the room sends each
//! participant one mixed packet per 20 ms tick, silent or not. Sends are batched with
//! `sendmmsg` (at least 0.2 ms apart); receivers poll their sockets with `recvmmsg` every
//! 0.5 ms and take the kernel's receive timestamp (`SO_TIMESTAMPNS`), so the generator's own
//! scheduling is not counted as delay. The mixer decodes and re-encodes, so no stamp survives
//! in the payload; a received packet is told apart by its source port (the participant's
//! stream's RTP port) and measured as follows. All counts are over the counted window
//! [`--warmup`, `--warmup` + `--seconds`) by kernel receive time.
//!
//! - **lost**: per participant, `expected` = window / 20 ms packets; `lost` = expected -
//!   received in the window, floored at 0, summed over participants. RTP sequence gaps between
//!   consecutive received packets of each stream are counted apart (`seq_gaps`), as are packets
//!   whose sequence number does not advance (`reordered`: duplicates or late reorders).
//! - **late**: for each received packet, its offset = arrival - seq x 20 ms (extended sequence
//!   number); per participant the reference is the smallest offset of the window (its
//!   earliest, best-case packet). A packet is late when its offset exceeds the reference by more
//!   than `--late-ms` (20 ms, one frame): it came a frame or more after the time its sequence
//!   number says it was due, given the stream's best-case timing. The p99 and max of
//!   offset - reference over all packets are printed as the mixer's output jitter.
//! - **mouth-to-ear added delay**: in each room one participant at a time (rotating) sends a
//!   loud frame, a full-scale 1 kHz tone (160 samples PCMU), every `--burst-every-ms` (500 ms;
//!   the rest of the time everyone sends silence, PCMU 0xFF), stamped with CLOCK_REALTIME as
//!   the packet is built. Each of the other members detects it as the first packet it
//!   receives after the send time whose decoded RMS exceeds 1000 (about -30 dBFS; silence
//!   decodes to 0); delay = kernel receive time - send time; histogram p50/p99/max. A
//!   listener that does not detect a burst within `--burst-timeout-ms` (200 ms) counts a lost
//!   burst. Bursts sent in the window count.
//! - **CPU**: with `--relay-pid`, the relay's user+system CPU time (`/proc/PID/stat`) at the
//!   start and the end of the window; divided by participants x frames in the window: the
//!   microseconds of CPU per participant per 20 ms frame.
//!
//! Pass: the generator sent at least 99 % of the packets due, (lost + late) under
//! `--max-bad-pct` (0.1 %) of expected, delay p99 under `--max-p99-ms` (60 ms), bursts
//! detected and none lost. Prints a human line and one `CONFLOAD_RESULT key=value ...` line.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;

mod udp;
use udp::{bind_socket, kernel_timestamp, realtime_ns, send_batch, sockaddr};

const PAYLOAD: usize = 160;
const PACKET: usize = 12 + PAYLOAD;
const PERIOD_NS: u64 = 20_000_000;
const SEND_BATCH: usize = 32;
const SEND_PAUSE_NS: u64 = 200_000;
const RECV_BATCH: usize = 64;
const RECV_POLL: Duration = Duration::from_micros(500);
/// Histograms (delay, jitter): 10 µs buckets up to 2 s, then one overflow bucket.
const HIST_BUCKET_US: u64 = 10;
const HIST_BUCKETS: usize = 200_000;
/// RMS above which a received frame is the burst (silence decodes to exactly 0).
const BURST_RMS: f64 = 1000.0;
/// The PCMU silence byte (decodes to 0).
const SILENCE: u8 = 0xff;

#[derive(Parser, Debug)]
#[command(about = "Conference mixing load through Dialtone's media plane (relay_server rooms)")]
struct Args {
    /// relay_server control address
    #[arg(long, default_value = "127.0.0.1:7070")]
    control: String,
    /// Participants per room
    #[arg(long, default_value_t = 5)]
    room_size: usize,
    /// Participants in all (a multiple of --room-size)
    #[arg(long)]
    participants: usize,
    /// Counted seconds of traffic
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Uncounted seconds of traffic first
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Generator sockets (one sender and one receiver thread each)
    #[arg(long, default_value_t = 2)]
    sockets: usize,
    /// First local port of the generator's sockets (outside the relay's range and the
    /// ephemeral range)
    #[arg(long, default_value_t = 61000)]
    local_base: u16,
    /// One loud frame per room this often, from each member in turn
    #[arg(long, default_value_t = 500)]
    burst_every_ms: u64,
    /// A listener that has not heard a burst this long after it was sent lost it
    #[arg(long, default_value_t = 200)]
    burst_timeout_ms: u64,
    /// A packet arriving more than this after its due time (by sequence number, against the
    /// stream's earliest packet) is late
    #[arg(long, default_value_t = 20)]
    late_ms: u64,
    /// Pass: (lost + late) under this percentage of the packets expected
    #[arg(long, default_value_t = 0.1)]
    max_bad_pct: f64,
    /// Pass: mouth-to-ear delay p99 under this
    #[arg(long, default_value_t = 60)]
    max_p99_ms: u64,
    /// The relay's process id, for its CPU time over the window
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Diagnosis: every sender stops this long once, `--stall-at-ms` after the media start,
    /// then sends what fell due at once (input jitter, as from a network or a starved sender)
    #[arg(long, default_value_t = 0)]
    stall_ms: u64,
    #[arg(long, default_value_t = 1000)]
    stall_at_ms: u64,
}

/// One participant's far end as its sender thread holds it.
struct Talker {
    /// Participant index.
    id: usize,
    room: usize,
    /// Index in the room.
    member: usize,
    dest: libc::sockaddr_in,
    seq: u16,
    ts: u32,
    next_ns: u64,
    /// Packets sent so far (the burst schedule counts them).
    frames: u64,
}

/// The latest burst of each room: its send time with the talker's member index in the low
/// 8 bits (0: none yet).
type Bursts = Arc<Vec<AtomicU64>>;

#[derive(Clone, Copy)]
struct Window {
    warm_ns: u64,
    end_ns: u64,
}

impl Window {
    fn counts(&self, ns: u64) -> bool {
        ns >= self.warm_ns && ns < self.end_ns
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.participants == 0 || args.sockets == 0 || args.room_size < 2 || args.room_size > 255 {
        bail!("--participants and --sockets must be positive, --room-size 2..=255");
    }
    if args.participants % args.room_size != 0 {
        bail!("--participants {} is not a multiple of --room-size {}", args.participants, args.room_size);
    }
    let burst_frames = args.burst_every_ms * 1_000_000 / PERIOD_NS;
    if burst_frames == 0 || args.burst_timeout_ms >= args.burst_every_ms {
        bail!("--burst-every-ms must be at least 20 and above --burst-timeout-ms");
    }
    let n = args.participants;
    let rooms = n / args.room_size;
    let sockets: Vec<Arc<UdpSocket>> = (0..args.sockets)
        .map(|i| bind_socket(args.local_base + i as u16).map(Arc::new))
        .collect::<Result<_>>()?;
    let local = |p: usize| -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, args.local_base + (p % args.sockets) as u16)
    };

    let setup_started = std::time::Instant::now();
    let (ports, connection, placement) = setup(&args.control, rooms, args.room_size, &local)?;
    eprintln!(
        "confload: {rooms} rooms of {} set up in {:.1} s ({placement})",
        args.room_size,
        setup_started.elapsed().as_secs_f64()
    );
    // A mixed packet comes from its participant's stream: source port -> participant.
    let mut by_port = vec![u32::MAX; 65536];
    for (p, &port) in ports.iter().enumerate() {
        by_port[usize::from(port)] = p as u32;
    }
    let by_port = Arc::new(by_port);

    let start_ns = realtime_ns() + 200_000_000;
    let warm_ns = start_ns + args.warmup * 1_000_000_000;
    let end_ns = warm_ns + args.seconds * 1_000_000_000;
    let window = Window { warm_ns, end_ns };
    let frames = args.seconds * 1_000_000_000 / PERIOD_NS;
    let stop = Arc::new(AtomicBool::new(false));
    let bursts: Bursts = Arc::new((0..rooms).map(|_| AtomicU64::new(0)).collect());

    let mut per_socket: Vec<Vec<Talker>> = (0..args.sockets).map(|_| Vec::new()).collect();
    for p in 0..n {
        let (room, member) = (p / args.room_size, p % args.room_size);
        // Evenly spread over the period, and the members of one room 1/size of it apart.
        let slot = member * rooms + room;
        let phase = PERIOD_NS * slot as u64 / n as u64;
        per_socket[p % args.sockets].push(Talker {
            id: p,
            room,
            member,
            dest: sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, ports[p])),
            seq: (p as u16).wrapping_mul(31),
            ts: (p as u32).wrapping_mul(7919),
            next_ns: start_ns + phase,
            frames: 0,
        });
    }

    let cpu = args.relay_pid.map(|pid| std::thread::spawn(move || relay_cpu(pid, window)));

    let mut receivers = Vec::new();
    for (s, socket) in sockets.iter().enumerate() {
        let socket = Arc::clone(socket);
        let stop = Arc::clone(&stop);
        let by_port = Arc::clone(&by_port);
        let bursts = Arc::clone(&bursts);
        let room_size = args.room_size;
        let config = ReceiveConfig {
            window,
            frames: frames as usize,
            room_size,
            burst_timeout_ns: args.burst_timeout_ms * 1_000_000,
            late_us: args.late_ms * 1000,
        };
        // This socket's participants (those whose far end it is), by index / sockets.
        let mine: Vec<usize> = (s..n).step_by(args.sockets).collect();
        receivers.push(std::thread::spawn(move || {
            receive(&socket, &stop, &by_port, &bursts, &mine, (s, args.sockets), config)
        }));
    }
    let mut senders = Vec::new();
    for (socket, talkers) in sockets.iter().zip(per_socket) {
        let socket = Arc::clone(socket);
        let bursts = Arc::clone(&bursts);
        let room_size = args.room_size as u64;
        let stall = (args.stall_ms > 0).then(|| (start_ns + args.stall_at_ms * 1_000_000, args.stall_ms * 1_000_000));
        senders.push(std::thread::spawn(move || {
            send(&socket, talkers, &bursts, window, (burst_frames, room_size), stall)
        }));
    }
    let mut sent = SendStats::default();
    for s in senders {
        let stats = s.join().map_err(|_| anyhow!("sender panicked"))??;
        sent.counted += stats.counted;
        sent.bursts += stats.bursts;
        sent.late_max_ns = sent.late_max_ns.max(stats.late_max_ns);
        sent.warmup_late_max_ns = sent.warmup_late_max_ns.max(stats.warmup_late_max_ns);
    }
    // Stragglers, and the last bursts' listeners (the rooms keep sending silence).
    std::thread::sleep(Duration::from_millis(args.burst_timeout_ms + 300));
    stop.store(true, Ordering::Relaxed);
    let mut got = RecvStats::new();
    for r in receivers {
        let stats = r.join().map_err(|_| anyhow!("receiver panicked"))??;
        got.merge(&stats);
    }
    let relay_cpu_s = match cpu {
        Some(thread) => thread.join().map_err(|_| anyhow!("cpu thread panicked"))?,
        None => None,
    };
    // Closing the connection ends the rooms.
    drop(connection);

    let due = n as u64 * frames;
    let expected = due;
    let behind = (sent.counted as f64) < due as f64 * 0.99;
    let bad_pct = (got.lost + got.late) as f64 * 100.0 / expected.max(1) as f64;
    let detections_due = sent.bursts * (args.room_size as u64 - 1);
    let lost_bursts = detections_due.saturating_sub(got.detections);
    let delay = |p: f64| percentile(&got.delay_hist, got.detections, p) as f64 / 1000.0;
    let jitter = |p: f64| percentile(&got.jitter_hist, got.received, p) as f64 / 1000.0;
    let (d50, d99, dmax) = (delay(0.5), delay(0.99), got.delay_max_us as f64 / 1000.0);
    let (j99, jmax) = (jitter(0.99), got.jitter_max_us as f64 / 1000.0);
    // Detections by whole frames of delay: 0-20 ms, 20-40, 40-60, 60 and more (a standing
    // frame in a participant's inbox adds 20 ms to everything it says).
    let frame_buckets = (PERIOD_NS / 1000 / HIST_BUCKET_US) as usize;
    let by_frame = (0..4)
        .map(|f| {
            let from = f * frame_buckets;
            let to = if f == 3 { got.delay_hist.len() } else { from + frame_buckets };
            got.delay_hist[from..to].iter().sum::<u64>().to_string()
        })
        .collect::<Vec<_>>()
        .join("/");
    let cpu_us = relay_cpu_s.map(|s| s * 1e6 / (n as f64 * frames as f64));
    let cpu_pct = relay_cpu_s.map(|s| s * 100.0 / args.seconds as f64);
    let pass = got.received > 0
        && !behind
        && bad_pct < args.max_bad_pct
        && got.detections > 0
        && lost_bursts == 0
        && d99 < args.max_p99_ms as f64;
    let fmt_opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    println!(
        "{n} participants in {rooms} rooms of {}: {} packets sent of {due} due{}; received {} of {expected} expected, \
         {} lost, {} late ({:.4}%), {} sequence gaps; mouth-to-ear delay p50 {d50:.2} ms, p99 {d99:.2} ms, max {dmax:.2} ms \
         ({} of {detections_due} bursts heard, {lost_bursts} lost; by 20 ms frames of delay {by_frame}); output jitter p99 {j99:.2} ms, max {jmax:.2} ms; \
         relay CPU {}% ({} us per participant per frame); {}",
        args.room_size,
        sent.counted,
        if behind { " (the generator fell behind)" } else { "" },
        got.received,
        got.lost,
        got.late,
        bad_pct,
        got.seq_gaps,
        got.detections,
        fmt_opt(cpu_pct, 0),
        fmt_opt(cpu_us, 2),
        if pass { "PASS" } else { "FAIL" }
    );
    println!(
        "CONFLOAD_RESULT participants={n} rooms={rooms} room_size={} seconds={} due={due} sent={} behind={} \
         expected={expected} received={} lost={} late={} reordered={} seq_gaps={} bad_pct={bad_pct:.4} \
         delay_p50_ms={d50:.2} delay_p99_ms={d99:.2} delay_max_ms={dmax:.2} bursts={} detections={} lost_bursts={lost_bursts} \
         jitter_p99_ms={j99:.2} jitter_max_ms={jmax:.2} delay_by_frame={} gen_late_max_ms={:.2} gen_warmup_late_max_ms={:.2} relay_cpu_s={} relay_cpu_pct={} \
         cpu_us_per_participant_frame={} rooms_per_worker={} pass={}",
        args.room_size,
        args.seconds,
        sent.counted,
        u8::from(behind),
        got.received,
        got.lost,
        got.late,
        got.reordered,
        got.seq_gaps,
        sent.bursts,
        got.detections,
        by_frame,
        sent.late_max_ns as f64 / 1e6,
        sent.warmup_late_max_ns as f64 / 1e6,
        fmt_opt(relay_cpu_s, 2),
        fmt_opt(cpu_pct, 0),
        fmt_opt(cpu_us, 3),
        placement.split_whitespace().find_map(|w| w.strip_prefix("rooms=")).unwrap_or("-"),
        u8::from(pass)
    );
    Ok(())
}

fn percentile(hist: &[u64], total: u64, p: f64) -> u64 {
    let target = ((total as f64 * p).ceil() as u64).max(1);
    let mut acc = 0;
    for (bucket, count) in hist.iter().enumerate() {
        acc += count;
        if acc >= target {
            return bucket as u64 * HIST_BUCKET_US;
        }
    }
    HIST_BUCKETS as u64 * HIST_BUCKET_US
}

/// The relay's user+system CPU seconds from the window's start to its end (None when its
/// /proc entry cannot be read).
fn relay_cpu(pid: u32, window: Window) -> Option<f64> {
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command (which may hold spaces) start after the last ')'.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the command.
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // SAFETY: sysconf has no memory arguments.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Some(ticks as f64 / hz)
    };
    let sleep_until = |ns: u64| std::thread::sleep(Duration::from_nanos(ns.saturating_sub(realtime_ns())));
    sleep_until(window.warm_ns);
    let before = read()?;
    sleep_until(window.end_ns);
    let after = read()?;
    Some(after - before)
}

/// Full-scale 1 kHz tone, one 20 ms frame of PCMU.
fn burst_payload() -> [u8; PAYLOAD] {
    let mut out = [0u8; PAYLOAD];
    for (k, byte) in out.iter_mut().enumerate() {
        let sample = 32767.0 * (2.0 * std::f64::consts::PI * 1000.0 * k as f64 / 8000.0).sin();
        *byte = ulaw_encode(sample.round() as i16);
    }
    out
}

fn ulaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(32635) + 0x84;
    let exponent = 31 - ((v >> 7) as u32).leading_zeros() as i32;
    let mantissa = (v >> (exponent + 3)) & 0x0f;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

fn ulaw_decode(code: u8) -> i16 {
    let u = !code;
    let exponent = i32::from((u >> 4) & 0x07);
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// The RMS of a PCMU payload.
fn rms(payload: &[u8]) -> f64 {
    if payload.is_empty() {
        return 0.0;
    }
    let sum: f64 = payload.iter().map(|&b| f64::from(ulaw_decode(b)).powi(2)).sum();
    (sum / payload.len() as f64).sqrt()
}

#[derive(Default)]
struct SendStats {
    /// Packets sent in the window.
    counted: u64,
    /// Bursts sent in the window.
    bursts: u64,
    /// Worst lateness of a packet sent in the window, and of one sent before it.
    late_max_ns: u64,
    warmup_late_max_ns: u64,
}

/// Sends every participant's packets on schedule (silence, or the burst when its turn comes).
fn send(
    socket: &UdpSocket,
    mut talkers: Vec<Talker>,
    bursts: &[AtomicU64],
    window: Window,
    (burst_frames, room_size): (u64, u64),
    mut stall: Option<(u64, u64)>,
) -> Result<SendStats> {
    let mut stats = SendStats::default();
    if talkers.is_empty() {
        return Ok(stats);
    }
    // Sorted by first send time, they keep that order (same period): a cursor going round the
    // ring finds the due ones without scanning all.
    talkers.sort_by_key(|t| t.next_ns);
    let loud = burst_payload();
    let fd = socket.as_raw_fd();
    let mut bufs = vec![[0u8; PACKET]; SEND_BATCH];
    let mut names = vec![sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)); SEND_BATCH];
    let mut iovs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; SEND_BATCH];
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths).
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; SEND_BATCH];
    let mut cursor = 0usize;
    loop {
        let now = realtime_ns();
        if now >= window.end_ns {
            break;
        }
        if let Some((at, length)) = stall.filter(|&(at, _)| now >= at) {
            stall = None;
            std::thread::sleep(Duration::from_nanos(at + length - now));
            continue;
        }
        let mut batch = 0usize;
        while talkers[cursor].next_ns <= now {
            let t = &mut talkers[cursor];
            let late = now - t.next_ns;
            let buf = &mut bufs[batch];
            buf[0] = 0x80;
            buf[1] = if t.frames == 0 { 0x80 } else { 0 };
            buf[2..4].copy_from_slice(&t.seq.to_be_bytes());
            buf[4..8].copy_from_slice(&t.ts.to_be_bytes());
            buf[8..12].copy_from_slice(&(t.id as u32).to_be_bytes());
            let turn = t.frames % burst_frames == 0 && (t.frames / burst_frames) % room_size == t.member as u64;
            let stamp = realtime_ns();
            if turn {
                buf[12..].copy_from_slice(&loud);
                bursts[t.room].store((stamp & !0xff) | t.member as u64, Ordering::Release);
                if window.counts(stamp) {
                    stats.bursts += 1;
                }
            } else {
                buf[12..].fill(SILENCE);
            }
            names[batch] = t.dest;
            t.seq = t.seq.wrapping_add(1);
            t.ts = t.ts.wrapping_add(PAYLOAD as u32);
            t.frames += 1;
            if window.counts(stamp) {
                stats.counted += 1;
                stats.late_max_ns = stats.late_max_ns.max(late);
            } else {
                stats.warmup_late_max_ns = stats.warmup_late_max_ns.max(late);
            }
            t.next_ns += PERIOD_NS;
            cursor = (cursor + 1) % talkers.len();
            batch += 1;
            if batch == SEND_BATCH {
                send_batch(fd, &mut bufs, &mut names, &mut iovs, &mut msgs, batch);
                batch = 0;
            }
        }
        if batch > 0 {
            send_batch(fd, &mut bufs, &mut names, &mut iovs, &mut msgs, batch);
        }
        // At least SEND_PAUSE between batches (each packet's stamp is taken as it is built).
        let wait = talkers[cursor].next_ns.saturating_sub(realtime_ns()).max(SEND_PAUSE_NS);
        std::thread::sleep(Duration::from_nanos(wait));
    }
    Ok(stats)
}

#[derive(Clone, Copy)]
struct ReceiveConfig {
    window: Window,
    frames: usize,
    room_size: usize,
    burst_timeout_ns: u64,
    late_us: u64,
}

/// What one receiver knows of one participant's incoming (mixed) stream.
struct Listener {
    room: usize,
    member: usize,
    received: u64,
    last_ext: Option<i64>,
    /// (arrival - ext seq x 20 ms) of the first counted packet, ns.
    first_offset: i64,
    /// Each counted packet's offset less the first's, µs.
    offsets: Vec<i32>,
    seq_gaps: u64,
    reordered: u64,
    /// The burst (room word) last heard or given up on.
    burst_done: u64,
}

struct RecvStats {
    received: u64,
    lost: u64,
    late: u64,
    seq_gaps: u64,
    reordered: u64,
    detections: u64,
    delay_hist: Vec<u64>,
    delay_max_us: u64,
    jitter_hist: Vec<u64>,
    jitter_max_us: u64,
}

impl RecvStats {
    fn new() -> RecvStats {
        RecvStats {
            received: 0,
            lost: 0,
            late: 0,
            seq_gaps: 0,
            reordered: 0,
            detections: 0,
            delay_hist: vec![0; HIST_BUCKETS + 1],
            delay_max_us: 0,
            jitter_hist: vec![0; HIST_BUCKETS + 1],
            jitter_max_us: 0,
        }
    }

    fn merge(&mut self, other: &RecvStats) {
        self.received += other.received;
        self.lost += other.lost;
        self.late += other.late;
        self.seq_gaps += other.seq_gaps;
        self.reordered += other.reordered;
        self.detections += other.detections;
        for (a, b) in self.delay_hist.iter_mut().zip(&other.delay_hist) {
            *a += b;
        }
        for (a, b) in self.jitter_hist.iter_mut().zip(&other.jitter_hist) {
            *a += b;
        }
        self.delay_max_us = self.delay_max_us.max(other.delay_max_us);
        self.jitter_max_us = self.jitter_max_us.max(other.jitter_max_us);
    }
}

fn bucket(us: u64) -> usize {
    ((us / HIST_BUCKET_US) as usize).min(HIST_BUCKETS)
}

fn receive(
    socket: &UdpSocket,
    stop: &AtomicBool,
    by_port: &[u32],
    bursts: &[AtomicU64],
    mine: &[usize],
    (index, sockets): (usize, usize),
    config: ReceiveConfig,
) -> Result<RecvStats> {
    let fd = socket.as_raw_fd();
    let mut stats = RecvStats::new();
    let mut listeners: Vec<Listener> = mine
        .iter()
        .map(|&p| Listener {
            room: p / config.room_size,
            member: p % config.room_size,
            received: 0,
            last_ext: None,
            first_offset: 0,
            offsets: Vec::with_capacity(config.frames + 16),
            seq_gaps: 0,
            reordered: 0,
            burst_done: 0,
        })
        .collect();
    let mut bufs = vec![[0u8; 256]; RECV_BATCH];
    let mut controls = vec![[0u64; 8]; RECV_BATCH];
    let mut names = vec![sockaddr(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)); RECV_BATCH];
    let mut iovs: Vec<libc::iovec> = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; RECV_BATCH];
    // SAFETY: all-zero is a valid mmsghdr.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; RECV_BATCH];
    for i in 0..RECV_BATCH {
        iovs[i] = libc::iovec { iov_base: bufs[i].as_mut_ptr().cast(), iov_len: 256 };
    }
    while !stop.load(Ordering::Relaxed) {
        for i in 0..RECV_BATCH {
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
        let got = unsafe {
            libc::recvmmsg(fd, msgs.as_mut_ptr(), RECV_BATCH as u32, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if got <= 0 {
            // Drained: poll again shortly (the kernel's timestamps keep the times exact, and
            // the relay's sends never wake a sleeping generator thread).
            std::thread::sleep(RECV_POLL);
            continue;
        }
        for i in 0..got as usize {
            let Some(rx_ns) = kernel_timestamp(&msgs[i].msg_hdr) else { continue };
            let port = u16::from_be(names[i].sin_port);
            let p = by_port[usize::from(port)];
            // Not a participant's stream, or one whose far end is another socket.
            if p == u32::MAX || p as usize % sockets != index {
                continue;
            }
            let len = (msgs[i].msg_len as usize).min(256);
            let Some((seq, payload)) = rtp_pcmu(&bufs[i][..len]) else { continue };
            let listener = &mut listeners[p as usize / sockets];
            if config.window.counts(rx_ns) {
                count_packet(listener, seq, rx_ns, &mut stats);
            }
            hear_burst(listener, &bursts[listener.room], rx_ns, payload, config, &mut stats);
        }
    }
    // Lateness and loss, per participant, now that each stream's best case is known.
    for listener in &listeners {
        finish(listener, config, &mut stats);
    }
    Ok(stats)
}

/// A participant's loss (expected - received, floored at 0) and late packets (more than
/// `late_us` behind the stream's best offset), into `stats`.
fn finish(listener: &Listener, config: ReceiveConfig, stats: &mut RecvStats) {
    stats.lost += (config.frames as u64).saturating_sub(listener.received);
    stats.seq_gaps += listener.seq_gaps;
    stats.reordered += listener.reordered;
    let Some(&best) = listener.offsets.iter().min() else { return };
    for &offset in &listener.offsets {
        let behind = (i64::from(offset) - i64::from(best)) as u64;
        if behind > config.late_us {
            stats.late += 1;
        }
        stats.jitter_hist[bucket(behind)] += 1;
        stats.jitter_max_us = stats.jitter_max_us.max(behind);
    }
}

/// Counts a packet received in the window: sequence tracking and its timing offset.
fn count_packet(listener: &mut Listener, seq: u16, rx_ns: u64, stats: &mut RecvStats) {
    let ext = match listener.last_ext {
        None => i64::from(seq),
        Some(last) => {
            let delta = i64::from(seq.wrapping_sub(last as u16) as i16);
            if delta <= 0 {
                listener.reordered += 1;
                stats.received += 1;
                listener.received += 1;
                return;
            }
            listener.seq_gaps += (delta - 1) as u64;
            last + delta
        }
    };
    listener.last_ext = Some(ext);
    let offset = rx_ns as i64 - ext * PERIOD_NS as i64;
    if listener.offsets.is_empty() {
        listener.first_offset = offset;
    }
    let relative_us = (offset - listener.first_offset) / 1000;
    listener.offsets.push(relative_us.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32);
    listener.received += 1;
    stats.received += 1;
}

/// Detects the room's latest burst in a listener's packet (see the module's definition).
fn hear_burst(
    listener: &mut Listener,
    burst: &AtomicU64,
    rx_ns: u64,
    payload: &[u8],
    config: ReceiveConfig,
    stats: &mut RecvStats,
) {
    let word = burst.load(Ordering::Acquire);
    if word == 0 || word == listener.burst_done {
        return;
    }
    let (sent_ns, talker) = (word & !0xff, (word & 0xff) as usize);
    if talker == listener.member {
        // A participant never hears itself.
        listener.burst_done = word;
        return;
    }
    if rx_ns <= sent_ns {
        return;
    }
    if rx_ns - sent_ns > config.burst_timeout_ns {
        // Not heard in time: lost (counted from the bursts sent, less those heard).
        listener.burst_done = word;
        return;
    }
    if rms(payload) < BURST_RMS {
        return;
    }
    listener.burst_done = word;
    if config.window.counts(sent_ns) {
        let us = (rx_ns - sent_ns) / 1000;
        stats.detections += 1;
        stats.delay_hist[bucket(us)] += 1;
        stats.delay_max_us = stats.delay_max_us.max(us);
    }
}

/// The sequence number and payload of an RTP packet of payload type 0 (PCMU); RTCP and
/// anything else is None.
fn rtp_pcmu(buf: &[u8]) -> Option<(u16, &[u8])> {
    let b0 = *buf.first()?;
    if b0 >> 6 != 2 || *buf.get(1)? & 0x7f != 0 {
        return None;
    }
    let seq = u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]);
    let mut offset = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = u16::from_be_bytes([*buf.get(offset + 2)?, *buf.get(offset + 3)?]);
        offset += 4 + 4 * usize::from(words);
    }
    let mut end = buf.len();
    if b0 & 0x20 != 0 {
        end = end.checked_sub(usize::from(*buf.last()?))?;
    }
    Some((seq, buf.get(offset..end)?))
}

/// Sets the rooms up; returns each participant's relay port (in participant order), the
/// connection (the rooms live while it is open) and where the rooms went.
fn setup(
    control: &str,
    rooms: usize,
    room_size: usize,
    local: &dyn Fn(usize) -> SocketAddrV4,
) -> Result<(Vec<u16>, TcpStream, String)> {
    let stream = TcpStream::connect(control).with_context(|| format!("connect {control}"))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut ports = Vec::with_capacity(rooms * room_size);
    // In chunks: requests pipelined, answers read back.
    for chunk_start in (0..rooms).step_by(50) {
        let chunk_end = (chunk_start + 50).min(rooms);
        let mut requests = String::new();
        for r in chunk_start..chunk_end {
            requests.push_str("room");
            for m in 0..room_size {
                requests.push_str(&format!(" {}", local(r * room_size + m)));
            }
            requests.push('\n');
        }
        writer.write_all(requests.as_bytes())?;
        for _ in chunk_start..chunk_end {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let mut words = line.split_whitespace();
            if words.next() != Some("ok") {
                bail!("relay_server: {}", line.trim());
            }
            let room_ports: Vec<u16> = words.map(str::parse).collect::<Result<_, _>>()?;
            if room_ports.len() != room_size {
                bail!("relay_server: {} ports for a room of {room_size}", room_ports.len());
            }
            ports.extend(room_ports);
        }
    }
    writer.write_all(b"stats\n")?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let placement = line.trim().strip_prefix("ok ").unwrap_or("stats unknown").to_owned();
    Ok((ports, stream, placement))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_round_trip_and_silence() {
        assert_eq!(ulaw_decode(SILENCE), 0);
        assert_eq!(ulaw_encode(0), SILENCE);
        for s in [-32000i16, -1000, -10, 10, 1000, 32000] {
            let back = ulaw_decode(ulaw_encode(s));
            assert!((i32::from(back) - i32::from(s)).abs() <= i32::from(s).abs() / 16 + 8, "{s} -> {back}");
        }
    }

    #[test]
    fn burst_is_loud_and_silence_is_not() {
        assert!(rms(&burst_payload()) > 20_000.0);
        assert_eq!(rms(&[SILENCE; PAYLOAD]), 0.0);
    }

    #[test]
    fn rtp_payload_after_csrcs() {
        let mut buf = vec![0x81u8, 0, 0x12, 0x34, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9];
        buf.extend_from_slice(&[0xff; 160]);
        let (seq, payload) = rtp_pcmu(&buf).unwrap();
        assert_eq!(seq, 0x1234);
        assert_eq!(payload.len(), 160);
        buf[1] = 200;
        assert!(rtp_pcmu(&buf).is_none());
    }

    #[test]
    fn late_and_gaps_are_counted_against_the_best_packet() {
        let mut stats = RecvStats::new();
        let mut l = Listener {
            room: 0,
            member: 0,
            received: 0,
            last_ext: None,
            first_offset: 0,
            offsets: Vec::new(),
            seq_gaps: 0,
            reordered: 0,
            burst_done: 0,
        };
        let t0 = 1_000_000_000u64;
        count_packet(&mut l, 65535, t0 + 5_000_000, &mut stats); // 5 ms behind its best
        count_packet(&mut l, 0, t0 + PERIOD_NS, &mut stats); // the best
        count_packet(&mut l, 2, t0 + 3 * PERIOD_NS + 21_000_000, &mut stats); // gap of 1, 21 ms late
        assert_eq!(l.seq_gaps, 1);
        assert_eq!(l.received, 3);
        assert_eq!(l.offsets, vec![0, -5000, 16000]);
        let config = ReceiveConfig {
            window: Window { warm_ns: 0, end_ns: u64::MAX },
            frames: 5,
            room_size: 5,
            burst_timeout_ns: 0,
            late_us: 20_000,
        };
        finish(&l, config, &mut stats);
        assert_eq!((stats.lost, stats.late, stats.seq_gaps, stats.jitter_max_us), (2, 1, 1, 21_000));
    }
}
