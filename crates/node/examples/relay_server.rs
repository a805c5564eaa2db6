//! Dialtone's media plane on its own, for the relay, browser-to-SIP and conference benchmarks
//! (bench/relay.sh, bench/webrtc.sh, bench/conference.sh).
//!
//! Starts a [`MediaEngine`] and takes requests over a line protocol on a loopback TCP port, so a
//! load generator can set up thousands of bridged calls or conference rooms without SIP:
//!
//! ```text
//! > pair 127.0.0.1:61000 127.0.0.1:61001      (far end of leg A, far end of leg B)
//! < ok 20000 20002                            (RTP ports to send leg A's and leg B's media to)
//! > pair-apart 127.0.0.1:61000 127.0.0.1:61001
//! < ok 20004 20006                            (the same, the legs allocated on two workers)
//! > pair-webrtc 127.0.0.1:61001 <base64 of a browser's SDP offer>
//! < ok 20010 <base64 of the SDP answer>        (leg B's RTP port; leg A's is in the answer)
//! > room 127.0.0.1:61000 127.0.0.1:61001 127.0.0.1:61002 ...   (two far ends or more)
//! < ok 20008 20010 20012 ...                  (one RTP port per participant, in order)
//! > stats
//! < ok workers=2 streams=10 rooms=0:1,1:0     (live streams; rooms created per worker)
//! ```
//!
//! Every plain stream is PCMU (payload type 0) with telephone-event 101.
//! - `pair`: `allocate` + `allocate_near` + `bridge`, exactly as a `<Dial>` bridges two legs.
//! - `pair-apart`: leg A with `allocate_on_worker(k)`, leg B with `allocate_on_worker(k + 1)`,
//!   then `bridge`, which first moves leg A to leg B's worker (the cross-worker bridge of a
//!   `<Dial>` whose legs were placed apart). `k` counts the connection's `pair-apart`s, so the
//!   first is worker 0 -> 1, the next 1 -> 0 and the calls still spread over the workers (with
//!   a fixed 0 -> 1 every call would end on worker 1). `pair-apart A B WA WB` places the legs on
//!   workers `WA` and `WB` (modulo the count) instead.
//! - `pair-webrtc B OFFER`: a browser-to-SIP call (bench/webrtc.sh). Leg A is a browser leg:
//!   `allocate`, then the offer (standard base64 of the SDP text) answered by
//!   `webrtc::WebRtcSession::answer` with the host candidate 127.0.0.1:<leg A's RTP port> (ICE-lite,
//!   DTLS-SRTP, rtcp-mux), and `Stream::set_webrtc`, exactly as a call from a browser is
//!   answered. Leg B is plain PCMU to the far end `B` (`allocate_near`, `set_remote`); then
//!   `bridge`, as `pair` does. The far end of leg A is whatever ICE selects.
//! - `room`: `create_room(None)` (the least loaded worker), one `allocate` per far end (the
//!   least loaded worker, so participants start on various workers), `set_remote`, and
//!   `join_room(FULL)`, which moves each to the room's worker. The room mixes every 20 ms.
//!
//! The streams and rooms of a connection live until it closes.
//!
//! `cargo run --release -p node --example relay_server -- --control 127.0.0.1:7070 \
//!   --ports 20000-39999 [--workers 2]`

use std::net::SocketAddr;

use base64::Engine as _;
use node::media::webrtc::WebRtcSession;
use node::media::{MediaConfig, MediaEngine, Participation, Room, Stream};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut control: SocketAddr = "127.0.0.1:7070".parse()?;
    let mut ports = (20000u16, 39999u16);
    let mut workers = 0usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--control" => control = value.parse()?,
            "--ports" => {
                let (min, max) = value.split_once('-').ok_or("--ports MIN-MAX")?;
                ports = (min.parse()?, max.parse()?);
            }
            "--workers" => workers = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let engine = MediaEngine::start(MediaConfig {
        bind_ip: [127, 0, 0, 1].into(),
        advertise_ip: [127, 0, 0, 1].into(),
        port_min: ports.0,
        port_max: ports.1,
        workers,
    })?;
    // The control side is light: one thread is plenty, and leaves the cores
    // to the media workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(control).await?;
        println!(
            "relay_server listening on {control}, {} media workers",
            engine.workers()
        );
        loop {
            let (connection, _) = listener.accept().await?;
            tokio::spawn(serve(connection, engine.clone()));
        }
    })
}

/// What a connection keeps alive.
#[derive(Default)]
struct Held {
    pairs: Vec<(Stream, Stream)>,
    /// Rooms with their participants; per worker, how many rooms were created there.
    rooms: Vec<(Room, Vec<Stream>)>,
    rooms_per_worker: Vec<usize>,
    apart: usize,
}

async fn serve(connection: TcpStream, engine: MediaEngine) {
    let (read, mut write) = connection.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut held = Held {
        rooms_per_worker: vec![0; engine.workers()],
        ..Held::default()
    };
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match handle(&engine, &mut held, &line) {
            Ok(reply) => format!("ok {reply}\n"),
            Err(e) => format!("error {e}\n"),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    let participants: usize = held.rooms.iter().map(|(_, s)| s.len()).sum();
    println!(
        "connection closed, {} bridges and {} rooms ({participants} participants; rooms per worker {:?}) ended",
        held.pairs.len(),
        held.rooms.len(),
        held.rooms_per_worker
    );
}

fn handle(engine: &MediaEngine, held: &mut Held, line: &str) -> Result<String, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["pair", a, b] => {
            let (far_a, far_b) = (address(a)?, address(b)?);
            let leg_a = engine.allocate(no_events()).map_err(|e| e.to_string())?;
            let leg_b = engine
                .allocate_near(&leg_a, no_events())
                .map_err(|e| e.to_string())?;
            Ok(bridge(held, leg_a, far_a, leg_b, far_b))
        }
        ["pair-apart", a, b, rest @ ..] => {
            let (far_a, far_b) = (address(a)?, address(b)?);
            let (worker_a, worker_b) = match rest {
                [] => {
                    let k = held.apart;
                    held.apart += 1;
                    (k, k + 1)
                }
                [wa, wb] => (
                    wa.parse()
                        .map_err(|_| format!("{wa}: not a worker index"))?,
                    wb.parse()
                        .map_err(|_| format!("{wb}: not a worker index"))?,
                ),
                _ => return Err("expected: pair-apart ADDR_A ADDR_B [WORKER_A WORKER_B]".into()),
            };
            let leg_a = engine
                .allocate_on_worker(worker_a, no_events())
                .map_err(|e| e.to_string())?;
            let leg_b = engine
                .allocate_on_worker(worker_b, no_events())
                .map_err(|e| e.to_string())?;
            Ok(bridge(held, leg_a, far_a, leg_b, far_b))
        }
        ["pair-webrtc", b, offer] => {
            let far_b = address(b)?;
            let offer = base64::engine::general_purpose::STANDARD
                .decode(offer)
                .map_err(|e| format!("offer: not base64: {e}"))?;
            let offer = String::from_utf8(offer).map_err(|_| "offer: not UTF-8".to_string())?;
            let leg_a = engine.allocate(no_events()).map_err(|e| e.to_string())?;
            let local = SocketAddr::new([127, 0, 0, 1].into(), leg_a.local_port);
            let (session, answer, media) =
                WebRtcSession::answer(&offer, local).map_err(|e| e.to_string())?;
            leg_a.set_webrtc(session, media);
            let leg_b = engine
                .allocate_near(&leg_a, no_events())
                .map_err(|e| e.to_string())?;
            set_pcmu(&leg_b, far_b);
            leg_a.bridge(&leg_b);
            let reply = format!(
                "{} {}",
                leg_b.local_port,
                base64::engine::general_purpose::STANDARD.encode(answer)
            );
            held.pairs.push((leg_a, leg_b));
            Ok(reply)
        }
        ["room", fars @ ..] if fars.len() >= 2 => {
            let fars = fars
                .iter()
                .map(|f| address(f))
                .collect::<Result<Vec<_>, _>>()?;
            // Room events (playback done, recordings) are dropped: none are started.
            let events = tokio::sync::mpsc::unbounded_channel().0;
            let room = engine
                .create_room(None, events)
                .map_err(|e| e.to_string())?;
            let mut streams = Vec::with_capacity(fars.len());
            for far in fars {
                let stream = engine.allocate(no_events()).map_err(|e| e.to_string())?;
                set_pcmu(&stream, far);
                stream.join_room(&room, Participation::FULL);
                streams.push(stream);
            }
            let ports: Vec<String> = streams.iter().map(|s| s.local_port.to_string()).collect();
            if let Some(count) = held.rooms_per_worker.get_mut(room.worker()) {
                *count += 1;
            }
            held.rooms.push((room, streams));
            Ok(ports.join(" "))
        }
        ["stats"] => {
            let rooms: Vec<String> = held
                .rooms_per_worker
                .iter()
                .enumerate()
                .map(|(w, n)| format!("{w}:{n}"))
                .collect();
            Ok(format!(
                "workers={} streams={} rooms={}",
                engine.workers(),
                engine.active_streams(),
                rooms.join(",")
            ))
        }
        _ => {
            Err("expected: pair A B | pair-apart A B [WA WB] | pair-webrtc B OFFER_BASE64 | room A1 A2 [A3 ...] | stats".into())
        }
    }
}

fn address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|e| format!("{text}: {e}"))
}

/// Stream events (none expected: no playback, recording or digits) are dropped.
fn no_events() -> tokio::sync::mpsc::UnboundedSender<node::media::MediaEvent> {
    tokio::sync::mpsc::unbounded_channel().0
}

/// PCMU (payload type 0) with telephone-event 101, RTCP on the port above the far end's RTP.
fn set_pcmu(stream: &Stream, far: SocketAddr) {
    let rtcp = SocketAddr::new(far.ip(), far.port().wrapping_add(1));
    stream.set_remote(far, rtcp, media::Codec::Pcmu, 0, Some(101));
}

fn bridge(
    held: &mut Held,
    leg_a: Stream,
    far_a: SocketAddr,
    leg_b: Stream,
    far_b: SocketAddr,
) -> String {
    set_pcmu(&leg_a, far_a);
    set_pcmu(&leg_b, far_b);
    leg_a.bridge(&leg_b);
    let reply = format!("{} {}", leg_a.local_port, leg_b.local_port);
    held.pairs.push((leg_a, leg_b));
    reply
}
