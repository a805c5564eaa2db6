//! Parse-and-look-up cost of one INVITE, as the transaction layer sees it: parse, validate,
//! then the header look-ups a server transaction does. Prints ns per message, both wall-clock
//! and on-CPU time of this thread (Linux `/proc/thread-self/schedstat`), because on a shared,
//! loaded machine the wall-clock figure mostly measures the neighbours.
//!
//!     cargo run --release -p sip --example parse_bench [ITERATIONS]

use std::hint::black_box;
use std::time::Instant;

use sip::{parse_message, Message};

const HEAD: &str = "INVITE sip:+15550001000@127.0.0.1:15080 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1-123456;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:+15551230000@127.0.0.1:5070>;tag=1-123456\r\n\
To: <sip:+15550001000@127.0.0.1:15080>\r\n\
Call-ID: 1-123456@127.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:sipload@127.0.0.1:5070>\r\n\
User-Agent: sipload\r\n\
Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n\
Content-Type: application/sdp\r\n";

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn main() {
    let iterations: u32 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let invite = format!("{HEAD}Content-Length: {}\r\n\r\n{SDP}", SDP.len());
    let bytes = invite.as_bytes();
    // Warm-up, and a check that the message is what the benchmark claims to parse.
    let Ok(Message::Request(req)) = parse_message(bytes) else { panic!("benchmark INVITE does not parse") };
    assert_eq!(req.call_id(), Some("1-123456@127.0.0.1"));
    for (label, lookups) in [("parse+validate", false), ("parse+validate+look-ups", true)] {
        // Batches of 10,000: the fastest batch is the figure least disturbed by other
        // processes; the mean over all of them is printed too.
        let (start, cpu_start) = (Instant::now(), cpu_ns());
        let mut best = f64::INFINITY;
        let mut done = 0u32;
        while done < iterations {
            let batch = (iterations - done).min(10_000);
            let batch_start = cpu_ns();
            black_box(run(bytes, batch, lookups));
            if let (Some(end), Some(begin)) = (cpu_ns(), batch_start) {
                best = best.min((end - begin) as f64 / f64::from(batch));
            }
            done += batch;
        }
        let (elapsed, cpu) = (start.elapsed(), cpu_ns().zip(cpu_start).map(|(end, start)| end - start));
        let per = |ns: f64| ns / f64::from(iterations);
        let cpu = cpu.map_or("n/a".to_string(), |ns| format!("{:.0}", per(ns as f64)));
        println!(
            "{label}: best batch {best:.0} ns/message on CPU; mean {cpu} ns on CPU, {:.0} ns wall ({iterations} messages)",
            per(elapsed.as_nanos() as f64)
        );
    }
}

fn run(bytes: &[u8], iterations: u32, lookups: bool) -> usize {
    let mut sink = 0usize;
    for _ in 0..iterations {
        if let Ok(Message::Request(req)) = parse_message(black_box(bytes)) {
            if lookups {
                sink += req.top_via().map_or(0, |v| v.params.len());
                sink += req.call_id().map_or(0, str::len);
                sink += req.cseq().map_or(0, |c| c.0 as usize);
                sink += req.from().map_or(0, |f| f.params.len());
                sink += req.to().map_or(0, |t| t.params.len());
                sink += req.headers.get("Content-Type").map_or(0, str::len);
                sink += req.headers.get("Max-Forwards").map_or(0, str::len);
                sink += req.headers.get("X-Not-There").map_or(0, str::len);
            }
            sink += req.headers.len();
        }
    }
    sink
}

/// Nanoseconds this thread has run on a CPU, if the kernel reports it.
fn cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
