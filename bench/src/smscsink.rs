//! `smscsink`: a fast SMSC on 127.0.0.1 for the SMS benchmark (`sms.sh`), built on Dialtone's
//! `smpp` codec (`Framer`, `Pdu::parse/encode`).
//!
//! Accepts any bind (transmitter, receiver or transceiver), answers each submit_sm at once
//! with a message id, and, when the submit asked for a receipt (registered_delivery) and the
//! bind can receive, sends a DELIVRD delivery receipt (deliver_sm, esm_class 0x04, `id:..
//! stat:DELIVRD` text plus the receipted_message_id and message_state TLVs) on the same
//! connection, at once or `--receipt-delay-ms` later; a receipt refused (a deliver_sm_resp with
//! an error: the ESME could not store it) is sent again a second later, as SMSCs do. Answers
//! enquire_link and unbind. What one
//! read brings is answered with one write.
//!
//! Counts submits, receipts sent and deliver_sm_resp received (OK, and refused: `receipt_errors`,
//! each refusal once), and, for each
//! submit whose text starts with `t=<unix ns>` (the time the load generator sent the API request
//! or the submit), the latency now - t. A stats line goes to stdout every second. A control
//! port (`--control`) answers line commands: `peek` (counters since the last report) and
//! `report` (the same, then starts a new interval), each one line:
//!   `SINK submits=.. receipts=.. receipt_resps=.. receipt_errors=.. binds=.. lat_n=.. p50_ms=..
//!    p90_ms=.. p99_ms=.. max_ms=.. first_s=.. last_s=.. span_s=.. peak_per_s=..`
//! (`first_s`/`last_s`: unix seconds of the first and last submit of the interval.)
//! One thread (a current-thread tokio runtime), so it takes one core at most.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use clap::Parser;
use smpp::pdu::{esm_class, tag};
use smpp::{Body, BindResp, CommandStatus, Framer, Pdu, Sm, SmResp, Tlvs};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, AsyncBufReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

#[derive(Parser)]
#[command(about = "A fast SMSC sink for the SMS benchmark")]
struct Args {
    /// SMPP address to listen on.
    #[arg(long, default_value = "127.0.0.1:2775")]
    listen: String,
    /// Control address (line commands `peek`, `report`).
    #[arg(long, default_value = "127.0.0.1:2776")]
    control: String,
    /// Delay before each delivery receipt, in milliseconds (0: with the submit_sm_resp).
    #[arg(long, default_value_t = 0)]
    receipt_delay_ms: u64,
    /// No stats line every second.
    #[arg(long)]
    quiet: bool,
}

/// Latencies in microseconds, log-linear buckets (~1.5 % wide) up to ~100 s.
struct Hist {
    buckets: Vec<u64>,
    n: u64,
    max_us: u64,
}

const SUB: u64 = 64;

impl Hist {
    fn new() -> Hist {
        Hist { buckets: vec![0; 64 * SUB as usize], n: 0, max_us: 0 }
    }
    fn index(us: u64) -> usize {
        if us < SUB {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros() as u64; // >= 6
        let shift = exp - 6;
        let mant = (us >> shift) - SUB; // 0..63
        ((exp - 5) * SUB + mant) as usize
    }
    fn lower(index: usize) -> u64 {
        let index = index as u64;
        if index < SUB {
            return index;
        }
        let exp = index / SUB + 5;
        let mant = index % SUB;
        (SUB + mant) << (exp - 6)
    }
    fn add(&mut self, us: u64) {
        let i = Self::index(us).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let want = ((self.n as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::lower(i) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }
}

struct Stats {
    submits: u64,
    receipts: u64,
    receipt_resps: u64,
    receipt_errors: u64,
    binds: u64,
    hist: Hist,
    first_ns: u64,
    last_ns: u64,
    // Submits per whole second of the interval, for the peak.
    this_second: u64,
    this_second_n: u64,
    peak_per_s: u64,
    // Totals for the per-second stdout line.
    total_submits: u64,
    total_receipts: u64,
    total_resps: u64,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            submits: 0,
            receipts: 0,
            receipt_resps: 0,
            receipt_errors: 0,
            binds: 0,
            hist: Hist::new(),
            first_ns: 0,
            last_ns: 0,
            this_second: 0,
            this_second_n: 0,
            peak_per_s: 0,
            total_submits: 0,
            total_receipts: 0,
            total_resps: 0,
        }
    }
    fn submit(&mut self, now_ns: u64, sent_ns: Option<u64>) {
        self.submits += 1;
        self.total_submits += 1;
        if self.first_ns == 0 {
            self.first_ns = now_ns;
        }
        self.last_ns = now_ns;
        let sec = now_ns / 1_000_000_000;
        if sec != self.this_second {
            self.this_second = sec;
            self.this_second_n = 0;
        }
        self.this_second_n += 1;
        self.peak_per_s = self.peak_per_s.max(self.this_second_n);
        if let Some(t) = sent_ns {
            self.hist.add(now_ns.saturating_sub(t) / 1000);
        }
    }
    fn line(&self) -> String {
        let span = if self.submits > 1 { (self.last_ns - self.first_ns) as f64 / 1e9 } else { 0.0 };
        format!(
            "SINK submits={} receipts={} receipt_resps={} receipt_errors={} binds={} lat_n={} p50_ms={:.2} \
             p90_ms={:.2} p99_ms={:.2} max_ms={:.2} first_s={:.3} last_s={:.3} span_s={:.3} peak_per_s={}",
            self.submits,
            self.receipts,
            self.receipt_resps,
            self.receipt_errors,
            self.binds,
            self.hist.n,
            self.hist.quantile_ms(0.5),
            self.hist.quantile_ms(0.9),
            self.hist.quantile_ms(0.99),
            self.hist.max_us as f64 / 1000.0,
            self.first_ns as f64 / 1e9,
            self.last_ns as f64 / 1e9,
            span,
            self.peak_per_s,
        )
    }
    fn reset(&mut self) {
        let (ts, tr, tp) = (self.total_submits, self.total_receipts, self.total_resps);
        *self = Stats::new();
        self.total_submits = ts;
        self.total_receipts = tr;
        self.total_resps = tp;
    }
}

type Shared = Rc<RefCell<Stats>>;

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// `t=<digits>` at the start of the text.
fn sent_time(text: &[u8]) -> Option<u64> {
    let rest = text.strip_prefix(b"t=")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

fn receipt(seq: u32, id: &str, submit: &Sm) -> Pdu {
    let now = chrono_like_date();
    let text = format!("id:{id} sub:001 dlvrd:001 submit date:{now} done date:{now} stat:DELIVRD err:000 text:");
    let mut tlvs = Tlvs::default();
    let mut rid = id.as_bytes().to_vec();
    rid.push(0);
    tlvs.set(tag::RECEIPTED_MESSAGE_ID, rid);
    tlvs.set(tag::MESSAGE_STATE, vec![2]); // DELIVERED
    let sm = Sm {
        source: submit.destination.clone(),
        destination: submit.source.clone(),
        esm_class: esm_class::DELIVERY_RECEIPT,
        short_message: text.into_bytes(),
        tlvs,
        ..Sm::default()
    };
    Pdu::request(seq, Body::DeliverSm(Box::new(sm)))
}

/// YYMMDDhhmm in UTC, as receipts carry it.
fn chrono_like_date() -> String {
    let secs = unix_ns() / 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{:02}{:02}{:02}{:02}{:02}", y % 100, m, d, rem / 3600, (rem % 3600) / 60)
}

async fn connection(stream: TcpStream, stats: Shared, conn_no: u64, delay: Duration) -> Result<()> {
    stream.set_nodelay(true)?;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    // The writer: coalesces whatever is queued into one write.
    let writer = tokio::task::spawn_local(async move {
        while let Some(mut buf) = rx.recv().await {
            while let Ok(more) = rx.try_recv() {
                buf.extend_from_slice(&more);
                if buf.len() > 256 * 1024 {
                    break;
                }
            }
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    // Delayed receipts: (due, bytes), in order (one fixed delay keeps them sorted).
    let delayed: Rc<RefCell<VecDeque<(tokio::time::Instant, Vec<u8>)>>> = Rc::default();
    let delayed_notify = Rc::new(tokio::sync::Notify::new());
    if !delay.is_zero() {
        let (delayed, notify, tx) = (delayed.clone(), delayed_notify.clone(), tx.clone());
        tokio::task::spawn_local(async move {
            loop {
                let next = delayed.borrow().front().map(|(due, _)| *due);
                match next {
                    None => notify.notified().await,
                    Some(due) => {
                        tokio::time::sleep_until(due).await;
                        let now = tokio::time::Instant::now();
                        let mut out = Vec::new();
                        let mut q = delayed.borrow_mut();
                        while q.front().is_some_and(|(d, _)| *d <= now) {
                            out.extend_from_slice(&q.pop_front().unwrap().1);
                        }
                        drop(q);
                        if tx.send(out).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    // Receipts awaiting their deliver_sm_resp, by sequence number: one refused (the ESME could
    // not store it) is sent again a second later, as an SMSC would.
    let mut unanswered: std::collections::HashMap<u32, Vec<u8>> = std::collections::HashMap::new();
    let mut retry: Vec<u8> = Vec::new();
    let mut framer = Framer::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut can_receive = false;
    let mut next_seq: u32 = 1;
    let mut next_id: u64 = 0;
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        framer.push(&buf[..n]);
        let mut out = Vec::with_capacity(n * 2);
        let mut late = Vec::new();
        let now_ns = unix_ns();
        let mut st = stats.borrow_mut();
        loop {
            let frame = match framer.pop() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => anyhow::bail!("framing: {:?}", e.error),
            };
            let pdu = match Pdu::parse(&frame) {
                Ok(p) => p,
                Err(e) => {
                    let seq = u32::from_be_bytes([frame[12], frame[13], frame[14], frame[15]]);
                    out.extend(Pdu::response(seq, e.command_status(), Body::GenericNack).encode()?);
                    continue;
                }
            };
            let seq = pdu.sequence_number;
            match pdu.body {
                Body::Bind(b) => {
                    can_receive = b.mode.can_receive();
                    st.binds += 1;
                    let resp = BindResp { mode: b.mode, system_id: "smscsink".into(), tlvs: Tlvs::default() };
                    out.extend(Pdu::response(seq, CommandStatus::ESME_ROK, Body::BindResp(resp)).encode()?);
                }
                Body::EnquireLink => {
                    out.extend(Pdu::response(seq, CommandStatus::ESME_ROK, Body::EnquireLinkResp).encode()?)
                }
                Body::Unbind => out.extend(Pdu::response(seq, CommandStatus::ESME_ROK, Body::UnbindResp).encode()?),
                Body::SubmitSm(sm) => {
                    st.submits_at(now_ns, sent_time(sm.payload()));
                    next_id += 1;
                    let id = format!("{conn_no:x}{next_id:08x}");
                    let resp = SmResp { message_id: id.clone(), tlvs: Tlvs::default() };
                    out.extend(Pdu::response(seq, CommandStatus::ESME_ROK, Body::SubmitSmResp(resp)).encode()?);
                    if can_receive && sm.registered_delivery & 0x03 != 0 {
                        let r = receipt(next_seq, &id, &sm).encode()?;
                        unanswered.insert(next_seq, r.clone());
                        next_seq = next_seq.wrapping_add(1).max(1);
                        st.receipts += 1;
                        st.total_receipts += 1;
                        if delay.is_zero() {
                            out.extend(r);
                        } else {
                            late.extend(r);
                        }
                    }
                }
                Body::DeliverSmResp(_) => {
                    let sent = unanswered.remove(&seq);
                    if pdu.command_status == CommandStatus::ESME_ROK {
                        st.receipt_resps += 1;
                        st.total_resps += 1;
                    } else {
                        st.receipt_errors += 1;
                        if let Some(bytes) = sent {
                            // Again under a new sequence number.
                            let mut again = bytes;
                            again[12..16].copy_from_slice(&next_seq.to_be_bytes());
                            unanswered.insert(next_seq, again.clone());
                            next_seq = next_seq.wrapping_add(1).max(1);
                            retry.extend(again);
                        }
                    }
                }
                Body::UnbindResp | Body::EnquireLinkResp | Body::GenericNack => {}
                _ => out.extend(
                    Pdu::response(seq, CommandStatus::ESME_RINVCMDID, Body::GenericNack).encode()?,
                ),
            }
        }
        drop(st);
        if !retry.is_empty() {
            let again = std::mem::take(&mut retry);
            let tx = tx.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = tx.send(again);
            });
        }
        if !late.is_empty() {
            delayed.borrow_mut().push_back((tokio::time::Instant::now() + delay, late));
            delayed_notify.notify_one();
        }
        if !out.is_empty() && tx.send(out).is_err() {
            break;
        }
    }
    drop(tx);
    writer.abort();
    Ok(())
}

impl Stats {
    fn submits_at(&mut self, now_ns: u64, sent: Option<u64>) {
        self.submit(now_ns, sent);
    }
}

async fn control(listener: TcpListener, stats: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let stats = stats.clone();
        tokio::task::spawn_local(async move {
            let (rd, mut wr) = stream.into_split();
            let mut lines = BufReader::new(rd).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = {
                    let mut st = stats.borrow_mut();
                    let l = st.line();
                    match line.trim() {
                        "peek" => l,
                        "report" => {
                            st.reset();
                            l
                        }
                        other => format!("ERR unknown command {other:?}"),
                    }
                };
                if wr.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(&args.listen).await?;
        let ctl = TcpListener::bind(&args.control).await?;
        println!("READY smpp={} control={}", listener.local_addr()?, ctl.local_addr()?);
        let stats: Shared = Rc::new(RefCell::new(Stats::new()));
        tokio::task::spawn_local(control(ctl, stats.clone()));
        if !args.quiet {
            let stats = stats.clone();
            tokio::task::spawn_local(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                let (mut s0, mut r0, mut p0) = (0, 0, 0);
                loop {
                    tick.tick().await;
                    let st = stats.borrow();
                    let (s, r, p) = (st.total_submits, st.total_receipts, st.total_resps);
                    if s != s0 || p != p0 {
                        println!(
                            "STAT unix={} submits/s={} receipts/s={} receipt_resps/s={} total_submits={} total_resps={}",
                            unix_ns() / 1_000_000_000,
                            s - s0,
                            r - r0,
                            p - p0,
                            s,
                            p
                        );
                    }
                    (s0, r0, p0) = (s, r, p);
                }
            });
        }
        let delay = Duration::from_millis(args.receipt_delay_ms);
        let mut conn_no = 0u64;
        loop {
            let (stream, _) = listener.accept().await?;
            conn_no += 1;
            let stats = stats.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = connection(stream, stats, conn_no, delay).await {
                    eprintln!("connection {conn_no}: {e:#}");
                }
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), anyhow::Error>(())
    })
}
