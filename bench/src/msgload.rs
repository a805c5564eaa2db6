//! `msgload`: creates messages through Dialtone's REST API at a fixed rate, open loop.
//!
//! `POST /2010-04-01/Accounts/{AC}/Messages.json` with Basic auth and a form body
//! `To=..&From=..&Body=t%3D<unix ns>+...`: the Body starts with the time the request was due,
//! so the SMSC sink can tell how long a message took from the API request to its submit_sm.
//! Request i is due at start + i/rate; `--connections` keep-alive HTTP/1.1 connections take the
//! next due request as soon as they are free, and every latency is counted from the due time
//! (a stall is charged to every request it delays). Destinations cycle over `--destinations`
//! numbers (+1555 then 7 digits), as Dialtone sends one message at a time per destination.
//! The requests are templates written by hand on one runtime thread: the generator costs
//! little next to what it measures. Prints a summary and one `MSGLOAD_RESULT key=value ...`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
#[command(about = "Message creation load through Dialtone's REST API")]
struct Args {
    /// host:port of Dialtone's HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    #[arg(long)]
    account: String,
    #[arg(long)]
    token: String,
    /// The sending number, E.164, one of the account's.
    #[arg(long)]
    from: String,
    /// Requests per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Distinct destination numbers.
    #[arg(long, default_value_t = 10000)]
    destinations: u64,
    /// First destination index (so successive runs can use other numbers).
    #[arg(long, default_value_t = 0)]
    dest_base: u64,
    /// Give up on a request after this many seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn b64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Shared {
    next: Cell<u64>,
    total: u64,
    start: Instant,
    start_unix_ns: u64,
    rate: u64,
    lat_us: std::cell::RefCell<Vec<u32>>,
    accepted: Cell<u64>,
    refused: Cell<u64>,
    errors: Cell<u64>,
    first_refusal: std::cell::RefCell<Option<String>>,
}

/// One response: status code and body, reading exactly Content-Length bytes.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, String)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).context("response head")?.to_owned();
            let status: u16 = head.split(' ').nth(1).context("status line")?.parse()?;
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                })
                .context("no Content-Length")?;
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 16384];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..total]).into_owned();
            buf.drain(..total);
            return Ok((status, body));
        }
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn worker(args: Rc<Args>, shared: Rc<Shared>, auth: Rc<String>) {
    let path = format!("/2010-04-01/Accounts/{}/Messages.json", args.account);
    let from = args.from.replace('+', "%2B");
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::new();
    loop {
        let i = shared.next.get();
        if i >= shared.total {
            return;
        }
        shared.next.set(i + 1);
        let due_off = Duration::from_nanos(i * 1_000_000_000 / shared.rate);
        let due = shared.start + due_off;
        tokio::time::sleep_until(due.into()).await;
        let due_unix = shared.start_unix_ns + due_off.as_nanos() as u64;
        let dest = 1_000_000 + (args.dest_base + i) % args.destinations;
        let body = format!("To=%2B1555{dest:07}&From={from}&Body=t%3D{due_unix}+msgload+{i}");
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            args.addr,
            body.len()
        );
        let mut outcome = Err(anyhow::anyhow!("not sent"));
        for _attempt in 0..2 {
            if stream.is_none() {
                match TcpStream::connect(&args.addr).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        stream = Some(s);
                        buf.clear();
                    }
                    Err(e) => {
                        outcome = Err(e.into());
                        continue;
                    }
                }
            }
            let s = stream.as_mut().unwrap();
            let r = tokio::time::timeout(Duration::from_secs(args.timeout), async {
                s.write_all(req.as_bytes()).await?;
                read_response(s, &mut buf).await
            })
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timeout")));
            match r {
                Ok(v) => {
                    outcome = Ok(v);
                    break;
                }
                Err(e) => {
                    stream = None;
                    outcome = Err(e);
                }
            }
        }
        let lat = due.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match outcome {
            Ok((201, _)) => {
                shared.accepted.set(shared.accepted.get() + 1);
                shared.lat_us.borrow_mut().push(lat);
            }
            Ok((code, body)) => {
                shared.refused.set(shared.refused.get() + 1);
                shared.first_refusal.borrow_mut().get_or_insert_with(|| format!("{code} {body}"));
            }
            Err(e) => {
                shared.errors.set(shared.errors.get() + 1);
                shared.first_refusal.borrow_mut().get_or_insert_with(|| format!("error: {e:#}"));
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Rc::new(Args::parse());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    let auth = Rc::new(b64(format!("{}:{}", args.account, args.token).as_bytes()));
    let shared = Rc::new(Shared {
        next: Cell::new(0),
        total: args.rate * args.duration,
        start: Instant::now() + Duration::from_millis(50),
        start_unix_ns: unix_ns() + 50_000_000,
        rate: args.rate.max(1),
        lat_us: Default::default(),
        accepted: Cell::new(0),
        refused: Cell::new(0),
        errors: Cell::new(0),
        first_refusal: Default::default(),
    });
    local.block_on(&rt, async {
        let mut tasks = Vec::new();
        for _ in 0..args.connections {
            tasks.push(tokio::task::spawn_local(worker(args.clone(), shared.clone(), auth.clone())));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = shared.start.elapsed().as_secs_f64();
    let mut lat = shared.lat_us.take();
    lat.sort_unstable();
    let q = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1] as f64 / 1000.0
    };
    let accepted = shared.accepted.get();
    let sent = shared.total;
    if let Some(r) = shared.first_refusal.borrow().as_ref() {
        eprintln!("first refusal: {}", r.chars().take(300).collect::<String>());
    }
    println!(
        "msgload: {sent} requests at {}/s over {:.2} s: {accepted} accepted (201), {} refused, {} errors; \
         latency from due p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        args.rate,
        elapsed,
        shared.refused.get(),
        shared.errors.get(),
        q(0.5),
        q(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    println!(
        "MSGLOAD_RESULT rate={} requests={sent} accepted={accepted} refused={} errors={} seconds={:.3} \
         accepted_per_s={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.rate,
        shared.refused.get(),
        shared.errors.get(),
        elapsed,
        accepted as f64 / elapsed,
        q(0.5),
        q(0.9),
        q(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    Ok(())
}
