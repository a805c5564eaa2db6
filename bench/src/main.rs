//! `sipload`: a SIP UAC call-rate generator for loopback benchmarks, and `sipload webhook`, a
//! TwiML server fast enough never to be the bottleneck of a Dialtone run.
//!
//! The generator places full calls (INVITE with a PCMU offer, ACK, hold, BYE) at a fixed rate,
//! retransmits over UDP per RFC 3261 timers, and prints one `SIPLOAD_RESULT key=value ...` line
//! for scripts plus a human summary.

mod msg;
mod uac;
mod webhook;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use socket2::{Domain, Protocol, Socket, Type};

#[derive(Parser, Debug)]
#[command(name = "sipload", version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve `<Response><Pause length="N"/></Response>` (or --twiml) to every HTTP request.
    Webhook(webhook::WebhookArgs),
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// Request-URI of every INVITE, e.g. sip:+15550001000@127.0.0.1:5080 (host must be an IP).
    #[arg(long)]
    target: Option<String>,
    /// Calls placed per second.
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Total calls to place (overrides --duration).
    #[arg(long)]
    calls: Option<u64>,
    /// Seconds of placing calls at --rate, when --calls is not given.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Milliseconds between the 2xx and our BYE (a BYE from the peer ends the call earlier).
    #[arg(long, default_value_t = 2000)]
    hold: u64,
    /// Cap on calls in progress; calls wait for a free slot (and the achieved rate drops).
    #[arg(long, default_value_t = 100_000)]
    max_concurrent: u64,
    /// Local address; a port range (127.0.0.1:5070-5073) gives one socket and thread per port.
    #[arg(long, default_value = "127.0.0.1:0")]
    local: String,
    /// With port 0 in --local: how many ephemeral sockets (threads) to use.
    #[arg(long, default_value_t = 1)]
    sockets: u16,
    /// Give-up time of each INVITE and BYE transaction, in ms (stands in for Timer B/F).
    #[arg(long, default_value_t = 5000)]
    timeout: u64,
    /// RFC 3261 T1, ms.
    #[arg(long, default_value_t = 500)]
    t1: u64,
    /// RFC 3261 T2, ms.
    #[arg(long, default_value_t = 4000)]
    t2: u64,
    /// User part of From.
    #[arg(long, default_value = "+15550002000")]
    from: String,
    /// Where the SDP says to send RTP; default: a socket sipload binds and never reads.
    #[arg(long)]
    rtp: Option<SocketAddr>,
    /// Progress once a second on stderr.
    #[arg(short, long)]
    verbose: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Webhook(args)) => webhook::serve(args),
        None => load(cli.load),
    }
}

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Bursts of responses must not be dropped by our own socket: that would be counted
    // against the system under test. The kernel caps this at net.core.rmem_max.
    let _ = sock.set_recv_buffer_size(8 << 20);
    let _ = sock.set_send_buffer_size(8 << 20);
    sock.bind(&addr.into()).with_context(|| format!("bind {addr}"))?;
    Ok(sock.into())
}

fn local_addrs(local: &str, sockets: u16) -> Result<Vec<SocketAddr>> {
    let (host, ports) = local.rsplit_once(':').context("--local needs host:port")?;
    let ip: std::net::IpAddr = host.trim_matches(['[', ']']).parse().context("--local host must be an IP")?;
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (a.parse::<u16>()?, b.parse::<u16>()?),
        None => {
            let p = ports.parse::<u16>()?;
            if p == 0 {
                return Ok((0..sockets.max(1)).map(|_| SocketAddr::new(ip, 0)).collect());
            }
            (p, p)
        }
    };
    if hi < lo {
        bail!("--local port range is reversed");
    }
    Ok((lo..=hi).map(|p| SocketAddr::new(ip, p)).collect())
}

fn load(a: LoadArgs) -> Result<()> {
    let target = a.target.context("--target sip:NUMBER@IP:PORT is required")?;
    let target_addr = msg::uri_addr(&target).context("--target must be sip:user@IP[:port]")?;
    if !(a.rate > 0.0 && a.rate.is_finite()) {
        bail!("--rate must be > 0");
    }
    let calls = a.calls.unwrap_or((a.rate * a.duration).round() as u64);
    if calls == 0 {
        bail!("nothing to do: 0 calls");
    }
    let addrs = local_addrs(&a.local, a.sockets)?;
    let socks: Vec<UdpSocket> = addrs.iter().map(|&addr| bind_udp(addr)).collect::<Result<_>>()?;
    // Kept open for the whole run so RTP sent to it is silently queued and dropped by the
    // kernel instead of drawing ICMP errors back at the peer.
    let _rtp_sink;
    let rtp_addr = match a.rtp {
        Some(r) => r,
        None => {
            let s = UdpSocket::bind("127.0.0.1:0")?;
            let addr = s.local_addr()?;
            _rtp_sink = s;
            addr
        }
    };
    let run_id = {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        nanos ^ std::process::id().rotate_left(16)
    };
    let cfg = uac::LoadConfig {
        target_uri: target.clone(),
        target_addr,
        from_user: a.from,
        rate: a.rate,
        calls,
        hold: Duration::from_millis(a.hold),
        timeout: Duration::from_millis(a.timeout),
        t1: Duration::from_millis(a.t1),
        t2: Duration::from_millis(a.t2),
        max_concurrent: a.max_concurrent,
        rtp_addr,
        run_id,
        verbose: a.verbose,
    };
    let workers = socks.len() as u64;
    let start = Instant::now() + Duration::from_millis(20);
    let handles: Vec<_> = socks
        .into_iter()
        .enumerate()
        .map(|(i, sock)| {
            let w = uac::Worker::new(cfg.clone(), sock, i as u64, workers)?;
            Ok(std::thread::Builder::new().name(format!("uac{i}")).spawn(move || w.run(start))?)
        })
        .collect::<Result<_>>()?;
    let mut stats = uac::Stats::default();
    for h in handles {
        stats.merge(h.join().map_err(|_| anyhow::anyhow!("worker panicked"))?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    report(&cfg, &target, &stats, elapsed);
    Ok(())
}

fn fmt_codes(m: &std::collections::BTreeMap<u16, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter().map(|(k, v)| format!("{k}x{v}")).collect::<Vec<_>>().join(",")
}

fn report(cfg: &uac::LoadConfig, target: &str, s: &uac::Stats, elapsed: f64) {
    let mut setup = s.setup_us.clone();
    setup.sort_unstable();
    let (p50, p90, p99, max) = (
        uac::percentile_ms(&setup, 50.0),
        uac::percentile_ms(&setup, 90.0),
        uac::percentile_ms(&setup, 99.0),
        uac::percentile_ms(&setup, 100.0),
    );
    // Calls answered per second over the window from the first INVITE to the last 2xx: equals
    // the offered rate when the peer keeps up, and drops when set-ups queue.
    let cps = match (s.first_invite, s.last_answer) {
        (Some(f), Some(l)) if s.answered > 1 && l > f => (s.answered - 1) as f64 / l.duration_since(f).as_secs_f64(),
        _ => 0.0,
    };
    let retx = s.invite_retransmissions + s.bye_retransmissions;
    let nonok: u64 = s.setup_failed_by_code.values().sum::<u64>() + s.bye_failed_by_code.values().sum::<u64>();
    println!("sipload: {target}, offered {:.0} cps, {} calls, hold {} ms, timeout {} ms", cfg.rate, cfg.calls, cfg.hold.as_millis(), cfg.timeout.as_millis());
    println!(
        "  attempted {}  answered {}  completed {}  failed {}  (setup: timeouts {}, non-2xx {}; BYE: timeouts {}, non-2xx {})",
        s.attempted,
        s.answered,
        s.completed,
        s.failed,
        s.setup_timeouts,
        fmt_codes(&s.setup_failed_by_code),
        s.bye_timeouts,
        fmt_codes(&s.bye_failed_by_code)
    );
    println!("  achieved {cps:.1} cps; set-up ms p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}");
    println!(
        "  retransmissions {retx} (INVITE {}, BYE {}); 2xx retransmissions seen {}; late answers {}; BYEs from peer {}; peak concurrent {}; unparsable {}, unmatched {}, send errors {}; {elapsed:.1} s",
        s.invite_retransmissions, s.bye_retransmissions, s.ok_retransmissions_seen, s.late_answers, s.remote_byes, s.max_active, s.unparsable, s.unmatched, s.send_errors
    );
    println!(
        "SIPLOAD_RESULT offered_cps={:.0} attempted={} answered={} completed={} failed={} cps={cps:.1} setup_p50_ms={p50:.2} setup_p90_ms={p90:.2} setup_p99_ms={p99:.2} setup_max_ms={max:.2} retransmissions={retx} setup_timeouts={} bye_timeouts={} nonok={nonok} remote_byes={} late_answers={} peak_concurrent={} elapsed_s={elapsed:.1}",
        cfg.rate, s.attempted, s.answered, s.completed, s.failed, s.setup_timeouts, s.bye_timeouts, s.remote_byes, s.late_answers, s.max_active
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ranges_and_ephemeral_counts() {
        assert_eq!(local_addrs("127.0.0.1:5070-5072", 1).unwrap().len(), 3);
        assert_eq!(local_addrs("127.0.0.1:0", 4).unwrap().len(), 4);
        assert_eq!(local_addrs("127.0.0.1:5070", 4).unwrap(), vec!["127.0.0.1:5070".parse().unwrap()]);
        assert!(local_addrs("127.0.0.1:5072-5070", 1).is_err());
        assert!(local_addrs("localhost:5070", 1).is_err());
    }
}
