//! Dialtone's media relay on its own, for the relay benchmark (bench/relay.sh).
//!
//! Starts a [`MediaEngine`] and takes bridge requests over a line protocol on
//! a loopback TCP port, so a load generator can set up thousands of bridged
//! calls without SIP:
//!
//! ```text
//! > pair 127.0.0.1:61000 127.0.0.1:61001      (far end of leg A, far end of leg B)
//! < ok 20000 20002                            (RTP ports to send leg A's and leg B's media to)
//! ```
//!
//! Both legs are PCMU (payload type 0) with telephone-event 101, bridged with
//! `allocate_near` + `bridge`, exactly as a `<Dial>` bridges two legs. The
//! streams of a connection live until it closes.
//!
//! `cargo run --release -p node --example relay_server -- --control 127.0.0.1:7070 \
//!   --ports 20000-39999 [--workers 2]`

use std::net::SocketAddr;

use node::media::{MediaConfig, MediaEngine, Stream};
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
        println!("relay_server listening on {control}");
        loop {
            let (connection, _) = listener.accept().await?;
            tokio::spawn(serve(connection, engine.clone()));
        }
    })
}

async fn serve(connection: TcpStream, engine: MediaEngine) {
    let (read, mut write) = connection.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut held: Vec<(Stream, Stream)> = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let reply = match pair(&engine, &line) {
            Ok((a, b)) => {
                let reply = format!("ok {} {}\n", a.local_port, b.local_port);
                held.push((a, b));
                reply
            }
            Err(e) => format!("error {e}\n"),
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    println!("connection closed, {} bridges ended", held.len());
}

fn pair(engine: &MediaEngine, line: &str) -> Result<(Stream, Stream), String> {
    let mut words = line.split_whitespace();
    let (Some("pair"), Some(a), Some(b)) = (words.next(), words.next(), words.next()) else {
        return Err("expected: pair ADDR_A ADDR_B".into());
    };
    let far_a: SocketAddr = a.parse().map_err(|e| format!("{a}: {e}"))?;
    let far_b: SocketAddr = b.parse().map_err(|e| format!("{b}: {e}"))?;
    // Events (none expected: no playback, recording or digits) are dropped.
    let events = tokio::sync::mpsc::unbounded_channel().0;
    let leg_a = engine.allocate(events.clone()).map_err(|e| e.to_string())?;
    let leg_b = engine
        .allocate_near(&leg_a, events)
        .map_err(|e| e.to_string())?;
    for (leg, far) in [(&leg_a, far_a), (&leg_b, far_b)] {
        let rtcp = SocketAddr::new(far.ip(), far.port().wrapping_add(1));
        leg.set_remote(far, rtcp, media::Codec::Pcmu, 0, Some(101));
    }
    leg_a.bridge(&leg_b);
    Ok((leg_a, leg_b))
}
