//! The load generator: one thread per local UDP socket, each placing its share of the calls on
//! a fixed schedule and running every call's small state machine off one timer heap.
//!
//! A call: INVITE (retransmitted per Timer A until a provisional arrives) -> 2xx -> ACK ->
//! hold -> BYE (Timer E) -> 2xx. A BYE from the peer during the hold ends the call normally.
//! Calls are matched by the number encoded in the Call-ID, so no map lookup is needed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::msg::{self, DialogInfo, Parsed, StartLine, Templates};

/// Per-run settings shared by every worker.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub target_uri: String,
    pub target_addr: SocketAddr,
    pub from_user: String,
    pub rate: f64,
    pub calls: u64,
    pub hold: Duration,
    /// Per-transaction give-up time, standing in for Timer B / Timer F.
    pub timeout: Duration,
    pub t1: Duration,
    pub t2: Duration,
    /// Across all workers.
    pub max_concurrent: u64,
    pub rtp_addr: SocketAddr,
    pub run_id: u32,
    pub verbose: bool,
}

/// Counters and samples of one worker; merged at the end.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub attempted: u64,
    pub answered: u64,
    pub completed: u64,
    pub failed: u64,
    pub setup_failed_by_code: BTreeMap<u16, u64>,
    pub setup_timeouts: u64,
    pub bye_failed_by_code: BTreeMap<u16, u64>,
    pub bye_timeouts: u64,
    pub remote_byes: u64,
    pub invite_retransmissions: u64,
    pub bye_retransmissions: u64,
    pub ok_retransmissions_seen: u64,
    /// 2xx that arrived after the call had already failed (timed out); ACKed and hung up.
    pub late_answers: u64,
    pub unparsable: u64,
    pub unmatched: u64,
    pub send_errors: u64,
    pub max_active: u64,
    /// INVITE first sent -> 2xx received, in microseconds.
    pub setup_us: Vec<u32>,
    pub first_invite: Option<Instant>,
    pub last_answer: Option<Instant>,
    pub last_invite: Option<Instant>,
}

impl Stats {
    pub fn merge(&mut self, o: Stats) {
        self.attempted += o.attempted;
        self.answered += o.answered;
        self.completed += o.completed;
        self.failed += o.failed;
        for (k, v) in o.setup_failed_by_code {
            *self.setup_failed_by_code.entry(k).or_default() += v;
        }
        for (k, v) in o.bye_failed_by_code {
            *self.bye_failed_by_code.entry(k).or_default() += v;
        }
        self.setup_timeouts += o.setup_timeouts;
        self.bye_timeouts += o.bye_timeouts;
        self.remote_byes += o.remote_byes;
        self.invite_retransmissions += o.invite_retransmissions;
        self.bye_retransmissions += o.bye_retransmissions;
        self.ok_retransmissions_seen += o.ok_retransmissions_seen;
        self.late_answers += o.late_answers;
        self.unparsable += o.unparsable;
        self.unmatched += o.unmatched;
        self.send_errors += o.send_errors;
        self.max_active += o.max_active;
        self.setup_us.extend(o.setup_us);
        self.first_invite = min_opt(self.first_invite, o.first_invite);
        self.last_answer = self.last_answer.max(o.last_answer);
        self.last_invite = self.last_invite.max(o.last_invite);
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[derive(Debug)]
enum State {
    Inviting { provisional: bool },
    Held { bye_at: Instant },
    Byeing { provisional: bool },
    Done,
    Failed,
}

#[derive(Debug)]
struct Call {
    state: State,
    invite_at: Instant,
    /// Give-up time of the running client transaction.
    timeout_at: Instant,
    next_retx: Instant,
    retx_interval: Duration,
    /// Bytes of the running client transaction's request, resent on its timer.
    request: Vec<u8>,
    /// ACK for the 2xx, resent when the 2xx is retransmitted.
    ack: Vec<u8>,
    next_hop: SocketAddr,
    /// The deadline currently in the heap; older heap entries are stale.
    deadline: Option<Instant>,
}

/// One socket and the calls numbered `index + k * workers`.
pub struct Worker {
    cfg: LoadConfig,
    sock: UdpSocket,
    tpl: Templates,
    index: u64,
    workers: u64,
    calls: Vec<Option<Call>>,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    active: u64,
    max_active: u64,
    stats: Stats,
}

impl Worker {
    pub fn new(cfg: LoadConfig, sock: UdpSocket, index: u64, workers: u64) -> std::io::Result<Self> {
        let local = sock.local_addr()?;
        let tpl = Templates {
            target_uri: cfg.target_uri.clone(),
            local,
            from_user: cfg.from_user.clone(),
            rtp_addr: cfg.rtp_addr,
            run_id: cfg.run_id,
        };
        let mine = cfg.calls.saturating_sub(index).div_ceil(workers);
        let max_active = (cfg.max_concurrent / workers).max(1);
        Ok(Worker {
            cfg,
            sock,
            tpl,
            index,
            workers,
            calls: (0..mine).map(|_| None).collect(),
            heap: BinaryHeap::new(),
            active: 0,
            max_active,
            stats: Stats::default(),
        })
    }

    /// Places this worker's calls on schedule from `start`, runs them to the end, returns stats.
    pub fn run(mut self, start: Instant) -> Stats {
        let mut buf = vec![0u8; 65536];
        let mut next_local: u64 = 0;
        let total_local = self.calls.len() as u64;
        let mut last_report = start;
        loop {
            let now = Instant::now();
            // Place every call whose slot has come, as long as the concurrency cap allows.
            while next_local < total_local && self.active < self.max_active {
                let global = self.index + next_local * self.workers;
                let slot = start + Duration::from_secs_f64(global as f64 / self.cfg.rate);
                if slot > now {
                    break;
                }
                self.place(next_local, now);
                next_local += 1;
            }
            // Fire due timers.
            while let Some(&Reverse((at, local))) = self.heap.peek() {
                if at > now {
                    break;
                }
                self.heap.pop();
                self.on_timer(local, at, now);
            }
            if next_local >= total_local && self.active == 0 {
                break;
            }
            if self.cfg.verbose && self.index == 0 && now.duration_since(last_report) >= Duration::from_secs(1) {
                last_report = now;
                eprintln!(
                    "[{:>6.1}s] worker0 placed={} active={} completed={} failed={} retx={}",
                    now.duration_since(start).as_secs_f64(),
                    self.stats.attempted,
                    self.active,
                    self.stats.completed,
                    self.stats.failed,
                    self.stats.invite_retransmissions + self.stats.bye_retransmissions
                );
            }
            // Sleep in recv until the next slot or timer, whichever comes first.
            let mut wake = self.heap.peek().map(|r| r.0 .0);
            if next_local < total_local && self.active < self.max_active {
                let global = self.index + next_local * self.workers;
                let slot = start + Duration::from_secs_f64(global as f64 / self.cfg.rate);
                wake = Some(wake.map_or(slot, |w| w.min(slot)));
            }
            let wait = wake.map_or(Duration::from_millis(100), |w| w.saturating_duration_since(now));
            // A zero timeout means "block forever" to the OS, so keep a small floor.
            let wait = wait.clamp(Duration::from_micros(50), Duration::from_millis(100));
            if self.sock.set_read_timeout(Some(wait)).is_err() {
                self.stats.send_errors += 1;
            }
            // Drain whatever is queued, then go round again.
            loop {
                match self.sock.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        let now = Instant::now();
                        self.on_datagram(&buf[..n], from, now);
                        if self.sock.set_nonblocking(true).is_err() {
                            break;
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                    // ICMP errors from a previous send surface here; they are not fatal.
                    Err(_) => break,
                }
            }
            let _ = self.sock.set_nonblocking(false);
        }
        self.stats
    }

    fn send(&mut self, bytes: &[u8], to: SocketAddr) {
        if self.sock.send_to(bytes, to).is_err() {
            self.stats.send_errors += 1;
        }
    }

    fn arm(&mut self, local: u64, at: Instant) {
        if let Some(Some(call)) = self.calls.get_mut(local as usize) {
            call.deadline = Some(at);
            self.heap.push(Reverse((at, local)));
        }
    }

    fn place(&mut self, local: u64, now: Instant) {
        let global = self.index + local * self.workers;
        let invite = self.tpl.invite(global);
        self.send(&invite, self.cfg.target_addr);
        self.stats.attempted += 1;
        self.stats.first_invite.get_or_insert(now);
        self.stats.last_invite = Some(now);
        self.active += 1;
        self.stats.max_active = self.stats.max_active.max(self.active);
        let call = Call {
            state: State::Inviting { provisional: false },
            invite_at: now,
            timeout_at: now + self.cfg.timeout,
            next_retx: now + self.cfg.t1,
            retx_interval: self.cfg.t1,
            request: invite,
            ack: Vec::new(),
            next_hop: self.cfg.target_addr,
            deadline: None,
        };
        self.calls[local as usize] = Some(call);
        let at = (now + self.cfg.t1).min(now + self.cfg.timeout);
        self.arm(local, at);
    }

    fn finish(&mut self, local: u64, ok: bool) {
        if let Some(Some(call)) = self.calls.get_mut(local as usize) {
            call.state = if ok { State::Done } else { State::Failed };
            call.deadline = None;
            call.request = Vec::new();
            self.active -= 1;
            if ok {
                self.stats.completed += 1;
            } else {
                self.stats.failed += 1;
            }
        }
    }

    fn on_timer(&mut self, local: u64, at: Instant, now: Instant) {
        let (t1, t2, timeout) = (self.cfg.t1, self.cfg.t2, self.cfg.timeout);
        let Some(Some(call)) = self.calls.get_mut(local as usize) else { return };
        if call.deadline != Some(at) {
            return; // superseded
        }
        call.deadline = None;
        match call.state {
            State::Inviting { provisional } => {
                if now >= call.timeout_at {
                    self.stats.setup_timeouts += 1;
                    self.finish(local, false);
                    return;
                }
                if !provisional && now >= call.next_retx {
                    // Timer A: doubles without cap for INVITE (RFC 3261 17.1.1.2).
                    call.retx_interval *= 2;
                    call.next_retx = now + call.retx_interval;
                    let (bytes, to) = (call.request.clone(), call.next_hop);
                    self.send(&bytes, to);
                    self.stats.invite_retransmissions += 1;
                }
                self.rearm(local);
            }
            State::Held { bye_at } => {
                if now < bye_at {
                    self.arm(local, bye_at);
                    return;
                }
                // The BYE bytes were built when the 2xx arrived; send them now.
                call.state = State::Byeing { provisional: false };
                call.timeout_at = now + timeout;
                call.retx_interval = t1;
                call.next_retx = now + t1;
                let (bytes, to) = (call.request.clone(), call.next_hop);
                self.send(&bytes, to);
                self.rearm(local);
            }
            State::Byeing { provisional } => {
                if now >= call.timeout_at {
                    self.stats.bye_timeouts += 1;
                    self.finish(local, false);
                    return;
                }
                if now >= call.next_retx {
                    // Timer E: doubles up to T2, and sits at T2 once a provisional arrived.
                    call.retx_interval = if provisional { t2 } else { (call.retx_interval * 2).min(t2) };
                    call.next_retx = now + call.retx_interval;
                    let (bytes, to) = (call.request.clone(), call.next_hop);
                    self.send(&bytes, to);
                    self.stats.bye_retransmissions += 1;
                }
                self.rearm(local);
            }
            State::Done | State::Failed => {}
        }
    }

    /// Re-arms the call's timer from its state.
    fn rearm(&mut self, local: u64) {
        let Some(Some(call)) = self.calls.get(local as usize) else { return };
        let at = match call.state {
            State::Inviting { provisional: true } => call.timeout_at,
            State::Inviting { provisional: false } | State::Byeing { .. } => call.next_retx.min(call.timeout_at),
            State::Held { bye_at } => bye_at,
            State::Done | State::Failed => return,
        };
        self.arm(local, at);
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let p = match msg::parse(bytes) {
            Ok(p) => p,
            Err(_) => {
                self.stats.unparsable += 1;
                return;
            }
        };
        let local = msg::call_number(p.call_id, self.cfg.run_id)
            .filter(|g| g % self.workers == self.index)
            .map(|g| g / self.workers)
            .filter(|l| (*l as usize) < self.calls.len() && self.calls[*l as usize].is_some());
        match p.start {
            StartLine::Response { code } => match local {
                Some(local) => self.on_response(local, code, &p, now),
                None => self.stats.unmatched += 1,
            },
            StartLine::Request { method } => self.on_request(local, method, &p, from),
        }
    }

    fn on_response(&mut self, local: u64, code: u16, p: &Parsed<'_>, now: Instant) {
        let global = self.index + local * self.workers;
        let Some(Some(call)) = self.calls.get_mut(local as usize) else { return };
        match (p.cseq_method, &call.state) {
            ("INVITE", State::Inviting { .. }) if code < 200 => {
                call.state = State::Inviting { provisional: true };
                self.rearm(local);
            }
            ("INVITE", State::Inviting { .. }) if code < 300 => {
                let setup = now.duration_since(call.invite_at);
                self.stats.setup_us.push(setup.as_micros().min(u32::MAX as u128) as u32);
                self.stats.answered += 1;
                self.stats.last_answer = Some(now);
                let dialog = DialogInfo::from_2xx(p, &self.cfg.target_uri, self.cfg.target_addr);
                call.ack = self.tpl.in_dialog(global, "ACK", 1, &dialog);
                call.request = self.tpl.in_dialog(global, "BYE", 2, &dialog);
                call.next_hop = dialog.next_hop;
                call.state = State::Held { bye_at: now + self.cfg.hold };
                let (ack, to) = (call.ack.clone(), call.next_hop);
                self.send(&ack, to);
                self.rearm(local);
            }
            ("INVITE", State::Inviting { .. }) => {
                let ack = self.tpl.ack_non2xx(global, p.to);
                let to = call.next_hop;
                *self.stats.setup_failed_by_code.entry(code).or_default() += 1;
                self.send(&ack, to);
                self.finish(local, false);
            }
            ("INVITE", _) if (200..300).contains(&code) => {
                if call.ack.is_empty() {
                    // Answered after we gave up on it: ACK and hang up at once, so the peer
                    // does not carry a call nobody holds into the next rung of the ladder.
                    self.stats.late_answers += 1;
                    let dialog = DialogInfo::from_2xx(p, &self.cfg.target_uri, self.cfg.target_addr);
                    call.ack = self.tpl.in_dialog(global, "ACK", 1, &dialog);
                    call.next_hop = dialog.next_hop;
                    let bye = self.tpl.in_dialog(global, "BYE", 2, &dialog);
                    let (ack, to) = (call.ack.clone(), call.next_hop);
                    self.send(&ack, to);
                    self.send(&bye, to);
                } else {
                    // The peer did not see our ACK (or crossed it): ACK again, as a UAC must.
                    self.stats.ok_retransmissions_seen += 1;
                    let (ack, to) = (call.ack.clone(), call.next_hop);
                    self.send(&ack, to);
                }
            }
            ("INVITE", State::Failed) if code >= 300 => {
                let ack = self.tpl.ack_non2xx(global, p.to);
                let to = call.next_hop;
                self.send(&ack, to);
            }
            ("BYE", State::Byeing { .. }) if code < 200 => {
                call.state = State::Byeing { provisional: true };
                self.rearm(local);
            }
            ("BYE", State::Byeing { .. }) if code < 300 => self.finish(local, true),
            ("BYE", State::Byeing { .. }) => {
                *self.stats.bye_failed_by_code.entry(code).or_default() += 1;
                self.finish(local, false);
            }
            _ => {} // late or duplicate response for a finished transaction
        }
    }

    fn on_request(&mut self, local: Option<u64>, method: &str, p: &Parsed<'_>, from: SocketAddr) {
        // Responses go back to the source, which is where the top Via's rport points on loopback.
        match method {
            "ACK" => {}
            "BYE" => {
                let Some(local) = local else {
                    let r = msg::response_to(p, 481, "Call/Transaction Does Not Exist");
                    self.send(&r, from);
                    return;
                };
                let r = msg::response_to(p, 200, "OK");
                self.send(&r, from);
                if let Some(Some(call)) = self.calls.get(local as usize) {
                    // The peer hung up first: that ends the call normally, whether or not our
                    // own BYE is already on its way.
                    if matches!(call.state, State::Held { .. } | State::Byeing { .. }) {
                        self.stats.remote_byes += 1;
                        self.finish(local, true);
                    }
                }
            }
            "OPTIONS" => {
                let r = msg::response_to(p, 200, "OK");
                self.send(&r, from);
            }
            _ => {
                let r = msg::response_to(p, 501, "Not Implemented");
                self.send(&r, from);
            }
        }
    }
}

/// Nearest-rank percentile of sorted microsecond samples, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted_us.len()) - 1;
    sorted_us[i] as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;

    /// How the loopback test UAS behaves.
    #[derive(Clone, Copy)]
    enum Uas {
        Answer,
        /// Ignore the first transmission of every INVITE.
        DropFirstInvite,
        Reject486,
        Silent,
        /// Answer, then send its own BYE after this many ms.
        HangUpAfter(u64),
    }

    struct Peer {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        acks: Arc<AtomicU64>,
        byes: Arc<AtomicU64>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Peer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn with_tag(resp: Vec<u8>) -> Vec<u8> {
        let text = String::from_utf8(resp).unwrap();
        let mut out = String::new();
        for line in text.split_inclusive("\r\n") {
            if line.starts_with("To: ") && !line.contains("tag=") {
                out.push_str(&line.replace("\r\n", ";tag=uas\r\n"));
            } else {
                out.push_str(line);
            }
        }
        out.into_bytes()
    }

    /// A small real UAS on a loopback socket, enough to drive every branch of the UAC.
    fn peer(mode: Uas) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (acks, byes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s2, a2, b2) = (stop.clone(), acks.clone(), byes.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = std::collections::HashSet::new();
            let mut pending_byes: Vec<(Instant, Vec<u8>, SocketAddr)> = Vec::new();
            let mut buf = [0u8; 4096];
            while !s2.load(Ordering::Relaxed) {
                let now = Instant::now();
                pending_byes.retain(|(at, bye, to)| {
                    if *at <= now {
                        sock.send_to(bye, *to).unwrap();
                        false
                    } else {
                        true
                    }
                });
                let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
                let Ok(p) = msg::parse(&buf[..n]) else { continue };
                let StartLine::Request { method } = p.start else { continue };
                match (method, mode) {
                    ("ACK", _) => {
                        a2.fetch_add(1, Ordering::Relaxed);
                    }
                    ("BYE", _) => {
                        b2.fetch_add(1, Ordering::Relaxed);
                        sock.send_to(&msg::response_to(&p, 200, "OK"), from).unwrap();
                    }
                    ("INVITE", Uas::Silent) => {}
                    ("INVITE", Uas::DropFirstInvite) if seen.insert(p.call_id.to_string()) => {}
                    ("INVITE", Uas::Reject486) => {
                        sock.send_to(&with_tag(msg::response_to(&p, 486, "Busy Here")), from).unwrap();
                    }
                    ("INVITE", _) => {
                        sock.send_to(&msg::response_to(&p, 100, "Trying"), from).unwrap();
                        let ok = String::from_utf8(with_tag(msg::response_to(&p, 200, "OK")))
                            .unwrap()
                            .replacen("Content-Length", &format!("Contact: <sip:uas@{addr}>\r\nContent-Length"), 1);
                        sock.send_to(ok.as_bytes(), from).unwrap();
                        if let Uas::HangUpAfter(ms) = mode {
                            let bye = format!(
                                "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKuas\r\nFrom: {};tag=uas\r\n\
                                 To: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
                                msg::uri_of(p.contact.unwrap()),
                                p.to,
                                p.from,
                                p.call_id
                            );
                            pending_byes.push((now + Duration::from_millis(ms), bye.into_bytes(), from));
                        }
                    }
                    _ => {}
                }
            }
        });
        Peer { addr, stop, acks, byes, thread: Some(thread) }
    }

    fn run(peer: &Peer, calls: u64, hold_ms: u64, timeout_ms: u64) -> Stats {
        let cfg = LoadConfig {
            target_uri: format!("sip:+15550001000@{}", peer.addr),
            target_addr: peer.addr,
            from_user: "+15550002000".into(),
            rate: 500.0,
            calls,
            hold: Duration::from_millis(hold_ms),
            timeout: Duration::from_millis(timeout_ms),
            t1: Duration::from_millis(20),
            t2: Duration::from_millis(160),
            max_concurrent: 1000,
            rtp_addr: "127.0.0.1:9".parse().unwrap(),
            run_id: 7,
            verbose: false,
        };
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        Worker::new(cfg, sock, 0, 1).unwrap().run(Instant::now())
    }

    #[test]
    fn full_calls_complete_without_retransmissions() {
        let p = peer(Uas::Answer);
        let s = run(&p, 20, 10, 2000);
        assert_eq!((s.attempted, s.answered, s.completed, s.failed), (20, 20, 20, 0));
        assert_eq!(s.setup_us.len(), 20);
        assert_eq!(s.invite_retransmissions + s.bye_retransmissions, 0);
        assert_eq!(p.acks.load(Ordering::Relaxed), 20);
        assert_eq!(p.byes.load(Ordering::Relaxed), 20);
    }

    #[test]
    fn a_lost_invite_is_retransmitted_on_timer_a() {
        let p = peer(Uas::DropFirstInvite);
        let s = run(&p, 10, 10, 2000);
        assert_eq!((s.completed, s.failed), (10, 0));
        assert_eq!(s.invite_retransmissions, 10);
        // Set-up counts from the first transmission, so it includes T1.
        assert!(s.setup_us.iter().all(|&us| us >= 20_000), "{:?}", s.setup_us);
    }

    #[test]
    fn a_final_error_fails_the_call_and_is_acked() {
        let p = peer(Uas::Reject486);
        let s = run(&p, 5, 10, 2000);
        assert_eq!((s.completed, s.failed, s.answered), (0, 5, 0));
        assert_eq!(s.setup_failed_by_code.get(&486), Some(&5));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(p.acks.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn silence_is_a_setup_timeout_after_retransmissions() {
        let p = peer(Uas::Silent);
        let s = run(&p, 3, 10, 200);
        assert_eq!((s.failed, s.setup_timeouts), (3, 3));
        // T1 = 20 ms doubling: sends at 20, 60, 140 ms before the 200 ms timeout.
        assert_eq!(s.invite_retransmissions, 9);
    }

    #[test]
    fn a_bye_from_the_peer_ends_the_call_normally() {
        let p = peer(Uas::HangUpAfter(30));
        let started = Instant::now();
        let s = run(&p, 5, 10_000, 2000);
        assert!(started.elapsed() < Duration::from_secs(5), "held for the full hold time");
        assert_eq!((s.completed, s.failed, s.remote_byes), (5, 0, 5));
        assert_eq!(p.byes.load(Ordering::Relaxed), 0, "no BYE of ours after the peer's");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50.0), 50.0);
        assert_eq!(percentile_ms(&v, 99.0), 99.0);
        assert_eq!(percentile_ms(&v, 100.0), 100.0);
        assert_eq!(percentile_ms(&[], 99.0), 0.0);
        assert_eq!(percentile_ms(&[7000], 90.0), 7.0);
    }
}
