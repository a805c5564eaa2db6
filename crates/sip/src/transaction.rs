//! The transaction layer (RFC 3261 §17) with RFC 6026's Accepted state, as a sans-IO
//! [`Endpoint`]: datagrams and framed TCP messages go in through [`Endpoint::handle_input`],
//! transmissions and events come out of [`Endpoint::poll_output`], and timers are data
//! ([`Timer`] + a per-transaction table) that [`Endpoint::poll_timeout`] reports and
//! [`Endpoint::handle_timeout`] fires.
//!
//! Every armed timer is also queued in one min-heap of deadlines for the whole endpoint, so
//! neither call looks at idle transactions: at R calls/s about 40*R finished transactions
//! wait out Timers J and L, and scanning them per datagram made the cost of a call grow
//! with the call rate. Stopping a timer does not touch the heap; its entry goes stale and is
//! skipped when it reaches the top (see `TimerQueue`).
//!
//! Choices worth knowing:
//! - An INVITE server transaction sends `100 Trying` by itself 200 ms after the request if the
//!   TU has not answered by then (§17.2.1), so fast answers go out without a 100.
//! - After a 2xx to an INVITE the server transaction enters Accepted and retransmits the 2xx
//!   (T1 doubling up to T2, UDP only) until the ACK arrives or 64*T1 passes, which raises
//!   [`Event::AckTimeout`]. The 2xx ACK (a new branch) is matched by Call-ID, CSeq number and
//!   tags.
//! - Retransmission timers (A, E, G) run over UDP only; Timers D, I, J, K are zero on TCP.
//! - Responses go back to the packet's source address (symmetric response routing, RFC 3581)
//!   and the top Via gets `received`/`rport` filled in accordingly.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::message::{parse_message_unchecked, parse_request_for_reply, Message, Method, ParseError, Request, Response, Transport};

/// Timer values and identity of this endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// RTT estimate (RFC 3261 default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Maximum time a message stays in the network (5 s).
    pub t4: Duration,
    /// Sent as User-Agent on requests and Server on responses; empty sends neither.
    pub user_agent: String,
    /// `host[:port]` written in the Via of requests sent over UDP.
    pub via_sent_by_udp: String,
    /// `host[:port]` written in the Via of requests sent over TCP.
    pub via_sent_by_tcp: String,
    /// `host[:port]` written in the Via of requests sent over WebSocket (the HTTP listener's).
    pub via_sent_by_ws: String,
}

impl Default for EndpointConfig {
    fn default() -> EndpointConfig {
        EndpointConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            user_agent: "Dialtone".to_string(),
            via_sent_by_udp: "127.0.0.1:5060".to_string(),
            via_sent_by_tcp: "127.0.0.1:5060".to_string(),
            via_sent_by_ws: "127.0.0.1:8080".to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTxId(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(u64);

#[derive(Debug)]
#[non_exhaustive]
pub enum Input<'a> {
    /// One UDP datagram, or one whole message cut from a TCP stream by
    /// [`crate::StreamFramer`].
    Datagram { source: SocketAddr, transport: Transport, bytes: &'a [u8] },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A new request: a new server transaction to answer with [`Endpoint::send_response`].
    Request { tx: ServerTxId, request: Request, source: SocketAddr, transport: Transport },
    /// An ACK to a 2xx (or an ACK no transaction knows).
    Ack { request: Request, source: SocketAddr, transport: Transport },
    /// A CANCEL matched `invite_tx`, which has no final response yet; the endpoint already
    /// answered the CANCEL with 200. The TU should now send 487 on `invite_tx`.
    Cancel { invite_tx: ServerTxId, request: Request },
    /// A response to a client transaction. 2xx retransmissions to an INVITE are passed up
    /// too, so the TU can re-send its ACK.
    Response { tx: ClientTxId, response: Response },
    /// Timer B or F: no final response.
    Timeout { tx: ClientTxId },
    /// A 2xx to an INVITE was never acknowledged within 64*T1 (RFC 3261 §13.3.1.4).
    AckTimeout { tx: ServerTxId },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Transmit(Transmit),
    Event(Event),
}

/// Counters of what the endpoint dropped or answered on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Unparseable messages, or malformed requests without enough headers to answer.
    pub malformed_dropped: u64,
    /// Malformed requests answered with 400/505.
    pub malformed_rejected: u64,
    /// Malformed responses dropped.
    pub malformed_responses: u64,
    /// Responses that matched no client transaction.
    pub unmatched_responses: u64,
    /// Retransmissions sent (requests and responses).
    pub retransmissions: u64,
    /// INVITE server transactions whose non-2xx final response was never ACKed (Timer H).
    pub ack_missing: u64,
}

/// The RFC 3261 timers, plus L and M of RFC 6026 and the 100 Trying delay.
///
/// | timer | transaction | meaning | value |
/// |---|---|---|---|
/// | A | INVITE client | request retransmit (UDP) | T1, doubling |
/// | B | INVITE client | transaction timeout | 64*T1 |
/// | D | INVITE client | wait for response retransmits | 32 s UDP, 0 TCP |
/// | E | non-INVITE client | request retransmit (UDP) | T1 doubling to T2 |
/// | F | non-INVITE client | transaction timeout | 64*T1 |
/// | K | non-INVITE client | wait for response retransmits | T4 UDP, 0 TCP |
/// | M | INVITE client | Accepted: pass 2xx retransmits | 64*T1 |
/// | G | INVITE server | response retransmit (UDP) | T1 doubling to T2 |
/// | H | INVITE server | wait for ACK to non-2xx | 64*T1 |
/// | I | INVITE server | absorb ACK retransmits | T4 UDP, 0 TCP |
/// | J | non-INVITE server | absorb request retransmits | 64*T1 UDP, 0 TCP |
/// | L | INVITE server | Accepted: wait for 2xx ACK | 64*T1 |
/// | Trying | INVITE server | send 100 if the TU is silent | 200 ms |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    A,
    B,
    D,
    E,
    F,
    K,
    M,
    G,
    H,
    I,
    J,
    L,
    Trying,
}

impl Timer {
    const ALL: [Timer; 13] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::K,
        Timer::M,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::L,
        Timer::Trying,
    ];
}

/// The transaction a queued deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TxRef {
    Client(ClientTxId),
    Server(ServerTxId),
}

/// One arming of one timer, as queued. Ordered by time, then by timer in [`Timer::ALL`]
/// order (so two timers of one transaction due at the same instant fire in the order the
/// per-transaction table always used), then by arming order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at: Instant,
    timer: u8,
    generation: u64,
    tx: TxRef,
}

#[derive(Debug, Clone, Copy)]
struct Armed {
    at: Instant,
    generation: u64,
}

/// The timers of one transaction. Each arming gets a fresh generation from the queue; a
/// queued [`Deadline`] is current only while its slot still holds that generation.
#[derive(Debug, Clone, Copy)]
struct TimerTable {
    owner: TxRef,
    data: [Option<Armed>; 13],
}

impl TimerTable {
    fn new(owner: TxRef) -> TimerTable {
        TimerTable { owner, data: [None; 13] }
    }

    fn set(&mut self, queue: &mut TimerQueue, timer: Timer, at: Instant) {
        let slot = &mut self.data[timer as usize];
        let generation = queue.push(Deadline { at, timer: timer as u8, generation: 0, tx: self.owner }, slot.is_none());
        *slot = Some(Armed { at, generation });
    }

    fn stop(&mut self, queue: &mut TimerQueue, timer: Timer) {
        if self.data[timer as usize].take().is_some() {
            queue.live -= 1;
        }
    }

    fn stop_all(&mut self, queue: &mut TimerQueue) {
        queue.live -= self.armed();
        self.data = [None; 13];
    }

    fn armed(&self) -> usize {
        self.data.iter().flatten().count()
    }

    fn is_current(&self, deadline: &Deadline) -> bool {
        self.data
            .get(usize::from(deadline.timer))
            .copied()
            .flatten()
            .is_some_and(|armed| armed.generation == deadline.generation && armed.at == deadline.at)
    }
}

/// Deadlines of every armed timer of the endpoint, earliest first, with lazy deletion:
/// stopping or re-arming a timer leaves its old entry in the heap, and entries that no
/// longer match their table are dropped when they reach the top or when the heap is
/// rebuilt (once stale entries outnumber twice the live ones).
#[derive(Debug, Default)]
struct TimerQueue {
    heap: BinaryHeap<Reverse<Deadline>>,
    /// Armed timers over all tables (the current entries in `heap`).
    live: usize,
    next_generation: u64,
}

impl TimerQueue {
    /// Queues `deadline` under a fresh generation and returns it.
    fn push(&mut self, mut deadline: Deadline, newly_armed: bool) -> u64 {
        self.next_generation += 1;
        deadline.generation = self.next_generation;
        self.heap.push(Reverse(deadline));
        if newly_armed {
            self.live += 1;
        }
        deadline.generation
    }

    fn peek(&self) -> Option<Deadline> {
        self.heap.peek().map(|Reverse(d)| *d)
    }

    fn stale(&self) -> usize {
        self.heap.len().saturating_sub(self.live)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Calling (INVITE) or Trying (non-INVITE).
    Initial,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// Non-INVITE only, before any response.
    Trying,
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

struct ClientTx {
    invite: bool,
    state: ClientState,
    request: Request,
    bytes: Vec<u8>,
    destination: SocketAddr,
    transport: Transport,
    timers: TimerTable,
    interval: Duration,
    ack: Option<Vec<u8>>,
    key: (String, Method),
}

struct ServerTx {
    invite: bool,
    state: ServerState,
    request: Request,
    source: SocketAddr,
    transport: Transport,
    last_response: Option<Vec<u8>>,
    to_tag: Option<String>,
    acked: bool,
    timers: TimerTable,
    interval: Duration,
    key: ServerKey,
    /// Set while indexed in `Endpoint::accepted` (from entering Accepted until removal).
    ack_key: Option<AckKey>,
}

/// How a request finds its server transaction (§17.2.3): by branch when it carries the
/// magic cookie, else by the RFC 2543 fields. ACK is keyed as the INVITE it acknowledges.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    Branch { branch: String, sent_by: String, method: Method },
    Legacy { uri: String, from_tag: String, call_id: String, cseq: u32, via: String, method: Method },
}

fn server_key(req: &Request, method: &Method) -> Option<ServerKey> {
    let via = req.top_via()?;
    let method = if *method == Method::Ack { Method::Invite } else { method.clone() };
    if via.has_rfc3261_branch() {
        return Some(ServerKey::Branch {
            branch: via.branch().unwrap_or_default().to_string(),
            sent_by: via.sent_by().to_ascii_lowercase(),
            method,
        });
    }
    Some(ServerKey::Legacy {
        uri: req.uri.clone(),
        from_tag: req.from()?.tag().unwrap_or_default().to_string(),
        call_id: req.call_id()?.to_string(),
        cseq: req.cseq()?.0,
        via: format!("{}|{}", via.sent_by().to_ascii_lowercase(), via.branch().unwrap_or_default()),
        method,
    })
}

/// The sans-IO SIP endpoint: every client and server transaction of one SIP node.
pub struct Endpoint {
    config: EndpointConfig,
    rng: SmallRng,
    next_id: u64,
    clients: HashMap<ClientTxId, ClientTx>,
    client_index: HashMap<(String, Method), ClientTxId>,
    servers: HashMap<ServerTxId, ServerTx>,
    server_index: HashMap<ServerKey, ServerTxId>,
    /// INVITE server transactions in Accepted, by what a 2xx ACK (a new branch) carries.
    accepted: HashMap<AckKey, Vec<ServerTxId>>,
    timers: TimerQueue,
    outputs: VecDeque<Output>,
    stats: EndpointStats,
}

/// Call-ID, CSeq number and From tag: how an ACK to a 2xx finds its INVITE (§17.2.3 does
/// not apply, the ACK has a branch of its own). The To tag is checked on the candidates.
type AckKey = (String, u32, Option<String>);

fn ack_key(request: &Request) -> Option<AckKey> {
    Some((request.call_id()?.to_string(), request.cseq()?.0, request.from().and_then(|f| f.tag().map(str::to_string))))
}

impl Endpoint {
    pub fn new(config: EndpointConfig, seed: u64) -> Endpoint {
        Endpoint {
            config,
            rng: SmallRng::seed_from_u64(seed),
            next_id: 0,
            clients: HashMap::new(),
            client_index: HashMap::new(),
            servers: HashMap::new(),
            server_index: HashMap::new(),
            accepted: HashMap::new(),
            timers: TimerQueue::default(),
            outputs: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// A fresh RFC 3261 branch (magic cookie + 16 random hex digits).
    pub fn new_branch(&mut self) -> String {
        format!("z9hG4bK{:016x}", self.rng.gen::<u64>())
    }

    /// A fresh tag for From/To.
    pub fn new_tag(&mut self) -> String {
        format!("{:016x}", self.rng.gen::<u64>())
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest armed timer. O(1): every public method leaves a current deadline (or
    /// nothing) at the top of the queue.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|d| d.at)
    }

    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Datagram { source, transport, bytes } => self.handle_datagram(now, source, transport, bytes),
        }
        // Zero-length timers (D, I, J, K over TCP) fire right away.
        self.handle_timeout(now);
    }

    /// Starts a client transaction. Adds a top Via with a new branch if the request has no
    /// Via (or a branch if its top Via has none), and Max-Forwards/User-Agent if absent.
    pub fn send_request(&mut self, now: Instant, mut request: Request, destination: SocketAddr, transport: Transport) -> ClientTxId {
        self.prepare_request(&mut request, transport);
        let id = ClientTxId(self.alloc_id());
        let bytes = request.to_bytes();
        self.transmit(destination, transport, bytes.clone());
        if request.method == Method::Ack {
            // ACK has no transaction (§17.1.1.3); the id never sees an event.
            return id;
        }
        let invite = request.method == Method::Invite;
        let branch = request.top_via().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let key = (branch, request.method.clone());
        let mut timers = TimerTable::new(TxRef::Client(id));
        let t1 = self.config.t1;
        if transport == Transport::Udp {
            timers.set(&mut self.timers, if invite { Timer::A } else { Timer::E }, now + t1);
        }
        timers.set(&mut self.timers, if invite { Timer::B } else { Timer::F }, now + 64 * t1);
        self.client_index.insert(key.clone(), id);
        self.clients.insert(
            id,
            ClientTx {
                invite,
                state: ClientState::Initial,
                request,
                bytes,
                destination,
                transport,
                timers,
                interval: t1,
                ack: None,
                key,
            },
        );
        id
    }

    /// Cancels an INVITE client transaction that has no final response yet (§9.1): sends a
    /// CANCEL with the INVITE's branch as a new non-INVITE transaction.
    pub fn send_cancel(&mut self, now: Instant, invite_tx: ClientTxId) -> Option<ClientTxId> {
        let tx = self.clients.get(&invite_tx)?;
        if !tx.invite || !matches!(tx.state, ClientState::Initial | ClientState::Proceeding) {
            return None;
        }
        let invite = &tx.request;
        let mut cancel = Request::new(Method::Cancel, &invite.uri);
        cancel.headers.push("Via", &invite.top_via()?.to_string());
        for name in ["From", "To", "Call-ID", "Route"] {
            for value in invite.headers.get_all(name) {
                cancel.headers.push(name, value);
            }
        }
        cancel.headers.push("CSeq", &format!("{} CANCEL", invite.cseq()?.0));
        cancel.headers.push("Max-Forwards", "70");
        let (destination, transport) = (tx.destination, tx.transport);
        Some(self.send_request(now, cancel, destination, transport))
    }

    /// Sends a response on a server transaction. Returns false if the transaction is gone
    /// or already has its final response.
    pub fn send_response(&mut self, now: Instant, tx_id: ServerTxId, mut response: Response) -> bool {
        if !self.config.user_agent.is_empty() && response.headers.get("Server").is_none() {
            response.headers.push("Server", &self.config.user_agent);
        }
        let t1 = self.config.t1;
        let Some(tx) = self.servers.get_mut(&tx_id) else {
            return false;
        };
        let code = response.status();
        let provisional = code < 200;
        let allowed = match tx.state {
            ServerState::Trying | ServerState::Proceeding => true,
            // The TU may hand over the same 2xx again; pass it on (RFC 6026 §7.1).
            ServerState::Accepted => (200..300).contains(&code),
            _ => false,
        };
        if !allowed {
            return false;
        }
        let bytes = response.to_bytes();
        let udp = tx.transport == Transport::Udp;
        tx.timers.stop(&mut self.timers, Timer::Trying);
        tx.last_response = Some(bytes.clone());
        if !provisional {
            tx.to_tag = response.to().and_then(|to| to.tag().map(str::to_string));
        }
        match (tx.invite, provisional, code < 300) {
            (_, true, _) => {
                if tx.state == ServerState::Trying {
                    tx.state = ServerState::Proceeding;
                }
            }
            (true, false, true) => {
                if tx.state != ServerState::Accepted {
                    tx.state = ServerState::Accepted;
                    tx.interval = t1;
                    if udp {
                        tx.timers.set(&mut self.timers, Timer::G, now + t1);
                    }
                    tx.timers.set(&mut self.timers, Timer::L, now + 64 * t1);
                    tx.ack_key = ack_key(&tx.request);
                    if let Some(key) = &tx.ack_key {
                        self.accepted.entry(key.clone()).or_default().push(tx_id);
                    }
                }
            }
            (true, false, false) => {
                tx.state = ServerState::Completed;
                tx.interval = t1;
                if udp {
                    tx.timers.set(&mut self.timers, Timer::G, now + t1);
                }
                tx.timers.set(&mut self.timers, Timer::H, now + 64 * t1);
            }
            (false, false, _) => {
                tx.state = ServerState::Completed;
                tx.timers.set(&mut self.timers, Timer::J, if udp { now + 64 * t1 } else { now });
            }
        }
        let (destination, transport) = (tx.source, tx.transport);
        self.transmit(destination, transport, bytes);
        self.handle_timeout(now);
        true
    }

    /// Sends outside any transaction (ACK to a 2xx, a stateless reply). A request without Via
    /// gets one with a new branch.
    pub fn send_stateless(&mut self, _now: Instant, message: Message, destination: SocketAddr, transport: Transport) {
        let message = match message {
            Message::Request(mut request) => {
                self.prepare_request(&mut request, transport);
                Message::Request(request)
            }
            response => response,
        };
        self.transmit(destination, transport, message.to_bytes());
    }

    /// Fires every timer due at `now`, earliest first, and drops the transactions they end.
    /// Costs O(log n) per due or stale deadline, nothing per idle transaction.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(deadline) = self.timers.peek().filter(|d| d.at <= now) {
            self.timers.heap.pop();
            // `timer` indexes Timer::ALL by construction (TimerTable::set stores `timer as u8`).
            let Some(&timer) = Timer::ALL.get(usize::from(deadline.timer)) else { continue };
            match deadline.tx {
                TxRef::Client(id) => {
                    let Some(tx) = self.clients.get_mut(&id).filter(|tx| tx.timers.is_current(&deadline)) else {
                        continue;
                    };
                    tx.timers.stop(&mut self.timers, timer);
                    self.client_timer(now, id, timer);
                    if self.clients.get(&id).is_some_and(|tx| tx.state == ClientState::Terminated) {
                        self.remove_client(id);
                    }
                }
                TxRef::Server(id) => {
                    let Some(tx) = self.servers.get_mut(&id).filter(|tx| tx.timers.is_current(&deadline)) else {
                        continue;
                    };
                    tx.timers.stop(&mut self.timers, timer);
                    self.server_timer(now, id, timer);
                    if self.servers.get(&id).is_some_and(|tx| tx.state == ServerState::Terminated) {
                        self.remove_server(id);
                    }
                }
            }
        }
        self.tidy_timers();
    }

    /// Whether a queued deadline still matches its transaction's table.
    fn is_current(&self, deadline: &Deadline) -> bool {
        match deadline.tx {
            TxRef::Client(id) => self.clients.get(&id).is_some_and(|tx| tx.timers.is_current(deadline)),
            TxRef::Server(id) => self.servers.get(&id).is_some_and(|tx| tx.timers.is_current(deadline)),
        }
    }

    /// Drops stale deadlines from the top (so [`Endpoint::poll_timeout`] is exact), and
    /// rebuilds the heap once stale entries exceed twice the live ones, which bounds its size
    /// and costs O(1) amortized per arming.
    fn tidy_timers(&mut self) {
        while let Some(deadline) = self.timers.peek() {
            if self.is_current(&deadline) {
                break;
            }
            self.timers.heap.pop();
        }
        if self.timers.stale() > 2 * self.timers.live + 64 {
            let heap = std::mem::take(&mut self.timers.heap);
            let current: Vec<Reverse<Deadline>> = heap.into_vec().into_iter().filter(|Reverse(d)| self.is_current(d)).collect();
            self.timers.heap = BinaryHeap::from(current);
            debug_assert_eq!(self.timers.heap.len(), self.timers.live);
        }
    }

    fn remove_client(&mut self, id: ClientTxId) {
        if let Some(tx) = self.clients.remove(&id) {
            self.timers.live -= tx.timers.armed();
            if self.client_index.get(&tx.key) == Some(&id) {
                self.client_index.remove(&tx.key);
            }
        }
    }

    fn remove_server(&mut self, id: ServerTxId) {
        let Some(tx) = self.servers.remove(&id) else { return };
        self.timers.live -= tx.timers.armed();
        if self.server_index.get(&tx.key) == Some(&id) {
            self.server_index.remove(&tx.key);
        }
        if let Some(key) = tx.ack_key {
            if let Some(ids) = self.accepted.get_mut(&key) {
                ids.retain(|&other| other != id);
                if ids.is_empty() {
                    self.accepted.remove(&key);
                }
            }
        }
    }

    fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn transmit(&mut self, destination: SocketAddr, transport: Transport, bytes: Vec<u8>) {
        self.outputs.push_back(Output::Transmit(Transmit { destination, transport, bytes }));
    }

    fn event(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    fn prepare_request(&mut self, request: &mut Request, transport: Transport) {
        match request.top_via() {
            None => {
                let sent_by = match transport {
                    Transport::Udp => self.config.via_sent_by_udp.clone(),
                    Transport::Tcp => self.config.via_sent_by_tcp.clone(),
                    Transport::Ws | Transport::Wss => self.config.via_sent_by_ws.clone(),
                };
                let branch = self.new_branch();
                request.headers.push_front("Via", &format!("SIP/2.0/{} {sent_by};branch={branch};rport", transport.as_str()));
            }
            Some(mut via) if via.branch().is_none() => {
                via.set_param("branch", Some(&self.new_branch()));
                request.headers.set_top_via(&via);
            }
            Some(_) => {}
        }
        if request.headers.get("Max-Forwards").is_none() {
            request.headers.push("Max-Forwards", "70");
        }
        if !self.config.user_agent.is_empty() && request.headers.get("User-Agent").is_none() {
            request.headers.push("User-Agent", &self.config.user_agent);
        }
    }

    fn client_timer(&mut self, now: Instant, id: ClientTxId, timer: Timer) {
        let t2 = self.config.t2;
        let Some(tx) = self.clients.get_mut(&id) else { return };
        match timer {
            Timer::A if tx.state == ClientState::Initial => {
                tx.interval *= 2;
                tx.timers.set(&mut self.timers, Timer::A, now + tx.interval);
                let (d, t, b) = (tx.destination, tx.transport, tx.bytes.clone());
                self.stats.retransmissions += 1;
                self.transmit(d, t, b);
            }
            Timer::E if matches!(tx.state, ClientState::Initial | ClientState::Proceeding) => {
                tx.interval = if tx.state == ClientState::Proceeding { t2 } else { (tx.interval * 2).min(t2) };
                tx.timers.set(&mut self.timers, Timer::E, now + tx.interval);
                let (d, t, b) = (tx.destination, tx.transport, tx.bytes.clone());
                self.stats.retransmissions += 1;
                self.transmit(d, t, b);
            }
            Timer::B | Timer::F if matches!(tx.state, ClientState::Initial | ClientState::Proceeding) => {
                tx.state = ClientState::Terminated;
                tx.timers.stop_all(&mut self.timers);
                self.event(Event::Timeout { tx: id });
            }
            Timer::D | Timer::K | Timer::M => tx.state = ClientState::Terminated,
            _ => {}
        }
    }

    fn server_timer(&mut self, now: Instant, id: ServerTxId, timer: Timer) {
        let t2 = self.config.t2;
        let Some(tx) = self.servers.get_mut(&id) else { return };
        match timer {
            Timer::Trying if tx.state == ServerState::Proceeding && tx.last_response.is_none() => {
                let trying = Response::from_request(&tx.request, 100, "Trying");
                let bytes = trying.to_bytes();
                tx.last_response = Some(bytes.clone());
                let (d, t) = (tx.source, tx.transport);
                self.transmit(d, t, bytes);
            }
            Timer::G if tx.state == ServerState::Completed || (tx.state == ServerState::Accepted && !tx.acked) => {
                tx.interval = (tx.interval * 2).min(t2);
                tx.timers.set(&mut self.timers, Timer::G, now + tx.interval);
                if let Some(bytes) = tx.last_response.clone() {
                    let (d, t) = (tx.source, tx.transport);
                    self.stats.retransmissions += 1;
                    self.transmit(d, t, bytes);
                }
            }
            Timer::H if tx.state == ServerState::Completed => {
                tx.state = ServerState::Terminated;
                self.stats.ack_missing += 1;
            }
            Timer::I | Timer::J => tx.state = ServerState::Terminated,
            Timer::L => {
                let acked = tx.acked;
                tx.state = ServerState::Terminated;
                if !acked {
                    self.event(Event::AckTimeout { tx: id });
                }
            }
            _ => {}
        }
    }

    fn handle_datagram(&mut self, now: Instant, source: SocketAddr, transport: Transport, bytes: &[u8]) {
        match parse_message_unchecked(bytes) {
            // A request that cannot be parsed whole is answered when its headers can address a
            // response: 505 for another version (RFC 4475 3.1.2.16), 400 for bad framing such
            // as a Content-Length beyond the datagram or negative (3.1.2.2, 3.1.2.3).
            Err(error) => match parse_request_for_reply(bytes) {
                Some(request) => self.reject_malformed(request, error, source, transport),
                None => self.stats.malformed_dropped += 1,
            },
            Ok(Message::Response(response)) => {
                if response.validate().is_err() {
                    self.stats.malformed_responses += 1;
                } else {
                    self.handle_response(now, response);
                }
            }
            Ok(Message::Request(request)) => self.handle_request(now, request, source, transport),
        }
    }

    fn handle_response(&mut self, now: Instant, response: Response) {
        let branch = response.top_via().and_then(|v| v.branch().map(str::to_string)).unwrap_or_default();
        let Some((_, method)) = response.cseq() else { return };
        let Some(&id) = self.client_index.get(&(branch, method)) else {
            self.stats.unmatched_responses += 1;
            return;
        };
        let (t1, t4) = (self.config.t1, self.config.t4);
        let Some(tx) = self.clients.get_mut(&id) else { return };
        let code = response.status();
        let udp = tx.transport == Transport::Udp;
        let pending = matches!(tx.state, ClientState::Initial | ClientState::Proceeding);
        let pass_up = match (tx.invite, code) {
            (_, 100..=199) if pending => {
                tx.state = ClientState::Proceeding;
                if tx.invite {
                    tx.timers.stop(&mut self.timers, Timer::A);
                    tx.timers.stop(&mut self.timers, Timer::B);
                }
                true
            }
            (true, 200..=299) if pending => {
                tx.state = ClientState::Accepted;
                tx.timers.stop_all(&mut self.timers);
                tx.timers.set(&mut self.timers, Timer::M, now + 64 * t1);
                true
            }
            (true, 200..=299) => tx.state == ClientState::Accepted,
            (true, _) if pending && code >= 300 => {
                let ack = build_ack(&tx.request, &response);
                tx.ack = Some(ack.to_bytes());
                tx.state = ClientState::Completed;
                tx.timers.stop_all(&mut self.timers);
                tx.timers.set(&mut self.timers, Timer::D, if udp { now + Duration::from_secs(32) } else { now });
                let (d, t) = (tx.destination, tx.transport);
                self.transmit(d, t, ack.to_bytes());
                true
            }
            (true, _) if tx.state == ClientState::Completed && code >= 300 => {
                // Retransmitted final response: the ACK was lost, send it again.
                if let Some(ack) = tx.ack.clone() {
                    let (d, t) = (tx.destination, tx.transport);
                    self.stats.retransmissions += 1;
                    self.transmit(d, t, ack);
                }
                false
            }
            (false, 200..) if pending => {
                tx.state = ClientState::Completed;
                tx.timers.stop_all(&mut self.timers);
                tx.timers.set(&mut self.timers, Timer::K, if udp { now + t4 } else { now });
                true
            }
            _ => false,
        };
        if pass_up {
            self.event(Event::Response { tx: id, response });
        }
    }

    fn handle_request(&mut self, now: Instant, mut request: Request, source: SocketAddr, transport: Transport) {
        if let Err(err) = request.validate() {
            self.reject_malformed(request, err, source, transport);
            return;
        }
        // validate() guarantees a top Via, From, Call-ID and CSeq, so a key always exists.
        let Some(key) = server_key(&request, &request.method) else {
            self.stats.malformed_dropped += 1;
            return;
        };
        stamp_via(&mut request, source);

        if let Some(&id) = self.server_index.get(&key) {
            self.handle_retransmission(now, id, request, source, transport);
            return;
        }
        match request.method {
            Method::Ack => self.handle_ack_2xx(request, source, transport),
            Method::Cancel => self.handle_cancel(now, request, source, transport, key),
            _ => {
                let id = self.new_server_tx(now, &request, source, transport, key);
                self.event(Event::Request { tx: id, request, source, transport });
            }
        }
    }

    /// 400 (or 505) with the fault as reason phrase when the request carries what a
    /// response needs; otherwise dropped and counted.
    fn reject_malformed(&mut self, request: Request, err: ParseError, source: SocketAddr, transport: Transport) {
        {
            let answerable = request.method != Method::Ack
                && ["Via", "From", "To", "Call-ID", "CSeq"].iter().all(|h| request.headers.get(h).is_some());
            if answerable {
                let mut response = Response::from_request(&request, err.status_code(), &err.to_string());
                if response.to().is_some_and(|to| to.tag().is_none()) {
                    let tag = self.new_tag();
                    response.set_to_tag(&tag);
                }
                self.stats.malformed_rejected += 1;
                self.transmit(source, transport, response.to_bytes());
            } else {
                self.stats.malformed_dropped += 1;
            }
        }
    }

    fn new_server_tx(&mut self, now: Instant, request: &Request, source: SocketAddr, transport: Transport, key: ServerKey) -> ServerTxId {
        let id = ServerTxId(self.alloc_id());
        let invite = request.method == Method::Invite;
        let mut timers = TimerTable::new(TxRef::Server(id));
        if invite {
            timers.set(&mut self.timers, Timer::Trying, now + Duration::from_millis(200));
        }
        self.server_index.insert(key.clone(), id);
        self.servers.insert(
            id,
            ServerTx {
                invite,
                state: if invite { ServerState::Proceeding } else { ServerState::Trying },
                request: request.clone(),
                source,
                transport,
                last_response: None,
                to_tag: None,
                acked: false,
                timers,
                interval: self.config.t1,
                key,
                ack_key: None,
            },
        );
        id
    }

    fn handle_retransmission(&mut self, now: Instant, id: ServerTxId, request: Request, source: SocketAddr, transport: Transport) {
        let t4 = self.config.t4;
        let Some(tx) = self.servers.get_mut(&id) else { return };
        if request.method == Method::Ack {
            match tx.state {
                ServerState::Completed => {
                    tx.state = ServerState::Confirmed;
                    tx.timers.stop(&mut self.timers, Timer::G);
                    tx.timers.stop(&mut self.timers, Timer::H);
                    tx.timers.set(&mut self.timers, Timer::I, if tx.transport == Transport::Udp { now + t4 } else { now });
                }
                // An ACK for the 2xx reusing the INVITE's branch (RFC 2543 peers).
                ServerState::Accepted if !tx.acked => {
                    tx.acked = true;
                    tx.timers.stop(&mut self.timers, Timer::G);
                    self.event(Event::Ack { request, source, transport });
                }
                _ => {}
            }
            return;
        }
        let resend = match tx.state {
            ServerState::Proceeding | ServerState::Completed => tx.last_response.clone(),
            ServerState::Accepted if !tx.acked => tx.last_response.clone(),
            _ => None,
        };
        if let Some(bytes) = resend {
            let (d, t) = (tx.source, tx.transport);
            self.stats.retransmissions += 1;
            self.transmit(d, t, bytes);
        }
    }

    fn handle_ack_2xx(&mut self, request: Request, source: SocketAddr, transport: Transport) {
        let to_tag = request.to().and_then(|t| t.tag().map(str::to_string));
        let candidates = ack_key(&request).and_then(|key| self.accepted.get(&key));
        let found = candidates.into_iter().flatten().find(|id| {
            self.servers.get(id).is_some_and(|tx| {
                tx.invite && tx.state == ServerState::Accepted && (tx.to_tag.is_none() || tx.to_tag == to_tag)
            })
        });
        match found.copied().and_then(|id| self.servers.get_mut(&id)) {
            Some(tx) if tx.acked => {} // ACK retransmission, absorbed
            Some(tx) => {
                tx.acked = true;
                tx.timers.stop(&mut self.timers, Timer::G);
                self.event(Event::Ack { request, source, transport });
            }
            // No transaction knows it (e.g. after 64*T1): the TU decides.
            None => self.event(Event::Ack { request, source, transport }),
        }
    }

    fn handle_cancel(&mut self, now: Instant, request: Request, source: SocketAddr, transport: Transport, key: ServerKey) {
        let invite_key = server_key(&request, &Method::Invite);
        let invite_id = invite_key.and_then(|k| self.server_index.get(&k).copied());
        let cancel_tx = self.new_server_tx(now, &request, source, transport, key);
        let Some(invite_id) = invite_id.filter(|id| self.servers.get(id).is_some_and(|tx| tx.invite)) else {
            let response = Response::from_request(&request, 481, "Call/Transaction Does Not Exist");
            self.send_response(now, cancel_tx, response);
            return;
        };
        let (pending, to_tag) = match self.servers.get(&invite_id) {
            Some(tx) => (tx.state == ServerState::Proceeding, tx.to_tag.clone()),
            None => (false, None),
        };
        let mut ok = Response::from_request(&request, 200, "OK");
        if let Some(tag) = to_tag {
            ok.set_to_tag(&tag);
        }
        self.send_response(now, cancel_tx, ok);
        if pending {
            self.event(Event::Cancel { invite_tx: invite_id, request });
        }
    }
}

/// Fills in `received` and `rport` on the top Via (RFC 3261 §18.2.1, RFC 3581 §4) so that
/// responses built from the request record where it really came from.
fn stamp_via(request: &mut Request, source: SocketAddr) {
    let Some(mut via) = request.top_via() else { return };
    let ip = source.ip().to_string();
    let mut changed = false;
    if via.host != ip {
        via.set_param("received", Some(&ip));
        changed = true;
    }
    if via.rport() == Some(None) {
        via.set_param("rport", Some(&source.port().to_string()));
        changed = true;
    }
    if changed {
        request.headers.set_top_via(&via);
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): same branch, To from the response.
fn build_ack(invite: &Request, response: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, &invite.uri);
    if let Some(via) = invite.top_via() {
        ack.headers.push("Via", &via.to_string());
    }
    for (name, value) in [("From", invite.headers.get("From")), ("To", response.headers.get("To")), ("Call-ID", invite.call_id())] {
        if let Some(value) = value {
            ack.headers.push(name, value);
        }
    }
    if let Some((seq, _)) = invite.cseq() {
        ack.headers.push("CSeq", &format!("{seq} ACK"));
    }
    for route in invite.headers.get_all("Route") {
        ack.headers.push("Route", route);
    }
    ack.headers.push("Max-Forwards", "70");
    ack
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_message;

    const UAC: &str = "192.0.2.10:5060";
    const ME: &str = "192.0.2.1:5060";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn endpoint() -> Endpoint {
        Endpoint::new(EndpointConfig { via_sent_by_udp: ME.into(), via_sent_by_tcp: ME.into(), via_sent_by_ws: ME.into(), ..Default::default() }, 7)
    }

    fn request_text(method: &str, branch: &str, cseq_method: &str, to_tag: &str) -> String {
        format!(
            "{method} sip:svc@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:svc@example.com>{to_tag}\r\nCall-ID: call-1\r\n\
CSeq: 1 {cseq_method}\r\nMax-Forwards: 70\r\nContact: <sip:alice@192.0.2.10>\r\nContent-Length: 0\r\n\r\n"
        )
    }

    /// A request as a TU would build it, without Via (the endpoint adds it).
    fn outgoing(method: Method) -> Request {
        let mut req = Request::new(method.clone(), "sip:bob@example.com");
        req.headers.push("From", "<sip:svc@example.com>;tag=me");
        req.headers.push("To", "<sip:bob@example.com>");
        req.headers.push("Call-ID", "out-1");
        req.headers.push("CSeq", &format!("1 {method}"));
        req
    }

    fn invite(branch: &str) -> String {
        request_text("INVITE", branch, "INVITE", "")
    }

    fn deliver(ep: &mut Endpoint, now: Instant, text: &str) {
        ep.handle_input(now, Input::Datagram { source: addr(UAC), transport: Transport::Udp, bytes: text.as_bytes() });
    }

    fn drain(ep: &mut Endpoint) -> (Vec<Message>, Vec<Event>) {
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        while let Some(out) = ep.poll_output() {
            match out {
                Output::Transmit(t) => sent.push(parse_message(&t.bytes).expect("endpoint sends valid SIP")),
                Output::Event(e) => events.push(e),
            }
        }
        (sent, events)
    }

    fn status(m: &Message) -> u16 {
        match m {
            Message::Response(r) => r.status(),
            Message::Request(_) => 0,
        }
    }

    /// Jumps from timeout to timeout until `until`, recording when each transmission left.
    type Timeline = (Vec<(Duration, Message)>, Vec<(Duration, Event)>);

    fn run_until(ep: &mut Endpoint, start: Instant, until: Instant) -> Timeline {
        let (mut sent, mut events) = (Vec::new(), Vec::new());
        while let Some(at) = ep.poll_timeout().filter(|&t| t <= until) {
            ep.handle_timeout(at);
            let (s, e) = drain(ep);
            sent.extend(s.into_iter().map(|m| (at - start, m)));
            events.extend(e.into_iter().map(|e| (at - start, e)));
        }
        (sent, events)
    }

    fn new_invite(ep: &mut Endpoint, now: Instant) -> (ServerTxId, Request) {
        deliver(ep, now, &invite("z9hG4bKinv1"));
        let (sent, events) = drain(ep);
        assert!(sent.is_empty(), "no automatic 100 before 200 ms");
        match events.as_slice() {
            [Event::Request { tx, request, .. }] => (*tx, request.clone()),
            other => panic!("expected one request event, got {other:?}"),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn trying_sent_after_200ms_and_repeated_for_retransmitted_invite() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let (_, request) = new_invite(&mut ep, t0);
        assert_eq!(request.top_via().unwrap().received(), None, "source matches sent-by");
        assert_eq!(ep.poll_timeout(), Some(t0 + ms(200)));
        ep.handle_timeout(t0 + ms(200));
        let (sent, _) = drain(&mut ep);
        assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![100]);
        // The retransmitted INVITE gets the last provisional again and no new event.
        deliver(&mut ep, t0 + ms(500), &invite("z9hG4bKinv1"));
        let (sent, events) = drain(&mut ep);
        assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![100]);
        assert!(events.is_empty());
    }

    #[test]
    fn retransmitted_invite_gets_last_provisional() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let (tx, request) = new_invite(&mut ep, t0);
        let mut ringing = Response::from_request(&request, 180, "Ringing");
        ringing.set_to_tag("srv");
        assert!(ep.send_response(t0 + ms(10), tx, ringing));
        let (sent, _) = drain(&mut ep);
        assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![180]);
        ep.handle_timeout(t0 + ms(300));
        assert!(drain(&mut ep).0.is_empty(), "no 100 after the TU answered");
        deliver(&mut ep, t0 + ms(500), &invite("z9hG4bKinv1"));
        let (sent, events) = drain(&mut ep);
        assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![180]);
        assert!(events.is_empty());
    }

    #[test]
    fn lost_ack_retransmits_2xx_until_ack() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let (tx, request) = new_invite(&mut ep, t0);
        let mut ok = Response::from_request(&request, 200, "OK");
        ok.set_to_tag("srv");
        assert!(ep.send_response(t0, tx, ok));
        assert_eq!(drain(&mut ep).0.len(), 1);
        let (sent, events) = run_until(&mut ep, t0, t0 + ms(3600));
        let times: Vec<Duration> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, vec![ms(500), ms(1500), ms(3500)]);
        assert!(sent.iter().all(|(_, m)| status(m) == 200));
        assert!(events.is_empty());
        // The ACK for the 2xx has its own branch and To tag.
        deliver(&mut ep, t0 + ms(3600), &request_text("ACK", "z9hG4bKack1", "ACK", ";tag=srv"));
        let (_, events) = drain(&mut ep);
        assert!(matches!(events.as_slice(), [Event::Ack { .. }]), "{events:?}");
        let (sent, events) = run_until(&mut ep, t0, t0 + Duration::from_secs(60));
        assert!(sent.is_empty(), "no 2xx after the ACK");
        assert!(events.is_empty(), "no AckTimeout once ACKed");
        assert_eq!(ep.poll_timeout(), None, "transaction ended");
    }

    #[test]
    fn unacked_2xx_raises_ack_timeout_at_64_t1() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let (tx, request) = new_invite(&mut ep, t0);
        ep.send_response(t0, tx, Response::from_request(&request, 200, "OK"));
        drain(&mut ep);
        let (sent, events) = run_until(&mut ep, t0, t0 + Duration::from_secs(40));
        let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
        // T1 doubling, capped at T2 = 4 s.
        assert_eq!(&times[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert!(times.iter().all(|&t| t < 32000));
        assert_eq!(events, vec![(Duration::from_secs(32), Event::AckTimeout { tx })]);
    }

    #[test]
    fn cancel_answered_200_then_487_and_ack_absorbed() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let (tx, request) = new_invite(&mut ep, t0);
        deliver(&mut ep, t0 + ms(100), &request_text("CANCEL", "z9hG4bKinv1", "CANCEL", ""));
        let (sent, events) = drain(&mut ep);
        assert_eq!(sent.len(), 1);
        let Message::Response(ok) = &sent[0] else { panic!("response") };
        assert_eq!((ok.status(), ok.cseq().unwrap().1), (200, Method::Cancel));
        match events.as_slice() {
            [Event::Cancel { invite_tx, request }] => {
                assert_eq!(*invite_tx, tx);
                assert_eq!(request.method, Method::Cancel);
            }
            other => panic!("{other:?}"),
        }
        let mut terminated = Response::from_request(&request, 487, "Request Terminated");
        terminated.set_to_tag("srv");
        assert!(ep.send_response(t0 + ms(110), tx, terminated));
        assert_eq!(drain(&mut ep).0.iter().map(status).collect::<Vec<_>>(), vec![487]);
        // Timer G retransmits the 487 until the ACK (same branch) arrives.
        let (sent, _) = run_until(&mut ep, t0, t0 + ms(700));
        assert_eq!(sent.len(), 1);
        deliver(&mut ep, t0 + ms(800), &request_text("ACK", "z9hG4bKinv1", "ACK", ";tag=srv"));
        let (sent, events) = drain(&mut ep);
        assert!(sent.is_empty() && events.is_empty(), "ACK to non-2xx absorbed");
        let (sent, events) = run_until(&mut ep, t0, t0 + Duration::from_secs(6));
        assert!(sent.is_empty() && events.is_empty());
        assert_eq!(ep.servers.len(), 1, "Timer I (T4) ended the INVITE transaction");
        run_until(&mut ep, t0, t0 + Duration::from_secs(40));
        assert_eq!(ep.poll_timeout(), None, "Timer J ended the CANCEL transaction");
    }

    #[test]
    fn unmatched_cancel_gets_481() {
        let mut ep = endpoint();
        deliver(&mut ep, Instant::now(), &request_text("CANCEL", "z9hG4bKnone", "CANCEL", ""));
        let (sent, events) = drain(&mut ep);
        assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![481]);
        assert!(events.is_empty());
    }

    #[test]
    fn invite_client_retransmits_then_timer_b() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let tx = ep.send_request(t0, outgoing(Method::Invite), addr(UAC), Transport::Udp);
        let (sent, _) = drain(&mut ep);
        let Message::Request(first) = &sent[0] else { panic!("request") };
        assert!(first.top_via().unwrap().has_rfc3261_branch());
        let (sent, events) = run_until(&mut ep, t0, t0 + Duration::from_secs(40));
        let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
        assert_eq!(times, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(events, vec![(Duration::from_secs(32), Event::Timeout { tx })]);
    }

    #[test]
    fn no_retransmission_over_tcp() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let tx = ep.send_request(t0, outgoing(Method::Invite), addr(UAC), Transport::Tcp);
        assert_eq!(drain(&mut ep).0.len(), 1);
        let (sent, events) = run_until(&mut ep, t0, t0 + Duration::from_secs(40));
        assert!(sent.is_empty());
        assert_eq!(events, vec![(Duration::from_secs(32), Event::Timeout { tx })]);
        let tx = ep.send_request(t0, outgoing(Method::Options), addr(UAC), Transport::Tcp);
        drain(&mut ep);
        let (sent, events) = run_until(&mut ep, t0, t0 + Duration::from_secs(40));
        assert!(sent.is_empty());
        assert_eq!(events, vec![(Duration::from_secs(32), Event::Timeout { tx })]);
    }

    fn response_to(req: &Message, code: u16) -> String {
        let Message::Request(req) = req else { panic!("request") };
        let mut resp = Response::from_request(req, code, "X");
        resp.set_to_tag("far");
        String::from_utf8(resp.to_bytes()).unwrap()
    }

    #[test]
    fn non_invite_client_timers_e_f_k() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let tx = ep.send_request(t0, outgoing(Method::Options), addr(UAC), Transport::Udp);
        drain(&mut ep);
        let (sent, events) = run_until(&mut ep, t0, t0 + Duration::from_secs(40));
        let times: Vec<u64> = sent.iter().map(|(t, _)| t.as_millis() as u64).collect();
        assert_eq!(&times[..6], &[500, 1500, 3500, 7500, 11500, 15500]);
        assert_eq!(events, vec![(Duration::from_secs(32), Event::Timeout { tx })]);

        // Second transaction: a 180 puts E at T2, a final response starts K (T4).
        let tx = ep.send_request(t0, outgoing(Method::Options), addr(UAC), Transport::Udp);
        let (sent, _) = drain(&mut ep);
        deliver(&mut ep, t0 + ms(100), &response_to(&sent[0], 180));
        let (_, events) = drain(&mut ep);
        assert!(matches!(events.as_slice(), [Event::Response { tx: t, .. }] if *t == tx));
        let (sent2, _) = run_until(&mut ep, t0, t0 + ms(600));
        assert_eq!(sent2.len(), 1, "still retransmitting in Proceeding");
        assert_eq!(ep.poll_timeout(), Some(t0 + ms(500) + Duration::from_secs(4)));
        deliver(&mut ep, t0 + ms(700), &response_to(&sent[0], 200));
        let (_, events) = drain(&mut ep);
        assert_eq!(events.len(), 1);
        // Retransmitted final absorbed in Completed.
        deliver(&mut ep, t0 + ms(800), &response_to(&sent[0], 200));
        assert!(drain(&mut ep).1.is_empty());
        assert_eq!(ep.poll_timeout(), Some(t0 + ms(700) + Duration::from_secs(5)), "Timer K = T4");
        ep.handle_timeout(t0 + ms(5700));
        assert_eq!(ep.poll_timeout(), None);
        deliver(&mut ep, t0 + ms(5800), &response_to(&sent[0], 200));
        assert_eq!(ep.stats().unmatched_responses, 1);
    }

    #[test]
    fn invite_client_acks_non_2xx_and_repeats_ack() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let tx = ep.send_request(t0, outgoing(Method::Invite), addr(UAC), Transport::Udp);
        let (sent, _) = drain(&mut ep);
        deliver(&mut ep, t0 + ms(50), &response_to(&sent[0], 486));
        let (acks, events) = drain(&mut ep);
        assert!(matches!(events.as_slice(), [Event::Response { tx: t, response }] if *t == tx && response.status() == 486));
        let Message::Request(ack) = &acks[0] else { panic!("ACK") };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.to().unwrap().tag(), Some("far"));
        let Message::Request(inv) = &sent[0] else { panic!("INVITE") };
        assert_eq!(ack.top_via().unwrap().branch(), inv.top_via().unwrap().branch());
        deliver(&mut ep, t0 + ms(600), &response_to(&sent[0], 486));
        let (again, events) = drain(&mut ep);
        assert_eq!(again.len(), 1, "ACK re-sent");
        assert!(events.is_empty());
        let (sent, _) = run_until(&mut ep, t0, t0 + Duration::from_secs(40));
        assert!(sent.is_empty(), "no INVITE retransmission after the final response");
        assert_eq!(ep.poll_timeout(), None, "Timer D ended it");
    }

    #[test]
    fn invite_client_2xx_and_retransmissions_reach_tu() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let tx = ep.send_request(t0, outgoing(Method::Invite), addr(UAC), Transport::Udp);
        let (sent, _) = drain(&mut ep);
        deliver(&mut ep, t0 + ms(50), &response_to(&sent[0], 200));
        deliver(&mut ep, t0 + ms(550), &response_to(&sent[0], 200));
        let (acks, events) = drain(&mut ep);
        assert!(acks.is_empty(), "the TU acknowledges a 2xx");
        assert_eq!(events.len(), 2);
        assert!(events.iter().all(|e| matches!(e, Event::Response { tx: t, .. } if *t == tx)));
        ep.send_stateless(t0 + ms(60), Message::Request(outgoing(Method::Ack)), addr(UAC), Transport::Udp);
        let (acks, _) = drain(&mut ep);
        let Message::Request(ack) = &acks[0] else { panic!("ACK") };
        assert!(ack.top_via().unwrap().has_rfc3261_branch());
    }

    #[test]
    fn send_cancel_uses_invite_branch() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let inv = ep.send_request(t0, outgoing(Method::Invite), addr(UAC), Transport::Udp);
        drain(&mut ep);
        let cancel = ep.send_cancel(t0 + ms(100), inv).expect("pending INVITE can be cancelled");
        let (sent, _) = drain(&mut ep);
        let Message::Request(c) = &sent[0] else { panic!("CANCEL") };
        assert_eq!(c.method, Method::Cancel);
        deliver(&mut ep, t0 + ms(150), &response_to(&sent[0], 200));
        let (_, events) = drain(&mut ep);
        assert!(matches!(events.as_slice(), [Event::Response { tx, .. }] if *tx == cancel));
    }

    #[test]
    fn malformed_requests_get_400_or_are_counted() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let bad = invite("z9hG4bKbad").replace("CSeq: 1 INVITE", "CSeq: 1 OPTIONS");
        deliver(&mut ep, t0, &bad);
        let (sent, events) = drain(&mut ep);
        assert!(events.is_empty());
        let Message::Response(resp) = &sent[0] else { panic!("400") };
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.reason, "CSeq method does not match request method");
        assert!(resp.to().unwrap().tag().is_some());
        deliver(&mut ep, t0, &invite("z9hG4bKbad").replace("Call-ID: call-1\r\n", ""));
        let (sent, events) = drain(&mut ep);
        assert!(sent.is_empty() && events.is_empty());
        deliver(&mut ep, t0, "garbage\r\n\r\n");
        assert_eq!(ep.stats().malformed_dropped, 2);
        assert_eq!(ep.stats().malformed_rejected, 1);
        let v = invite("z9hG4bKv").replace("INVITE sip:svc@192.0.2.1 SIP/2.0", "INVITE sip:svc@192.0.2.1 SIP/3.0");
        deliver(&mut ep, t0, &v);
        let (sent, _) = drain(&mut ep);
        assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![505]);
    }

    #[test]
    fn rfc2543_requests_match_without_branch() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        // badbranch (RFC 4475 3.2.1): the cookie alone is not a transaction id.
        let text = request_text("OPTIONS", "z9hG4bK", "OPTIONS", "");
        deliver(&mut ep, t0, &text);
        let (_, events) = drain(&mut ep);
        let [Event::Request { tx, request, .. }] = events.as_slice() else { panic!("{events:?}") };
        ep.send_response(t0, *tx, Response::from_request(request, 200, "OK"));
        drain(&mut ep);
        deliver(&mut ep, t0 + ms(500), &text);
        let (sent, events) = drain(&mut ep);
        assert_eq!(sent.iter().map(status).collect::<Vec<_>>(), vec![200], "last response re-sent");
        assert!(events.is_empty());
    }

    #[test]
    fn via_gets_received_and_rport() {
        let mut ep = endpoint();
        let text = invite("z9hG4bKnat").replace("192.0.2.10:5060;branch", "10.0.0.5:5060;rport;branch");
        deliver(&mut ep, Instant::now(), &text);
        let (_, events) = drain(&mut ep);
        let [Event::Request { request, .. }] = events.as_slice() else { panic!("{events:?}") };
        let via = request.top_via().unwrap();
        assert_eq!(via.received(), Some("192.0.2.10"));
        assert_eq!(via.rport(), Some(Some(5060)));
    }

    /// Two endpoints on a lossy virtual link: the first 200 OK is lost, the UAS
    /// retransmits it, the UAC's TU ACKs it, and both sides settle.
    #[test]
    fn pair_with_lost_2xx() {
        let t0 = Instant::now();
        let uac_addr = addr(UAC);
        let uas_addr = addr(ME);
        let mut uac = Endpoint::new(EndpointConfig { via_sent_by_udp: UAC.into(), ..Default::default() }, 1);
        let mut uas = Endpoint::new(EndpointConfig { via_sent_by_udp: ME.into(), ..Default::default() }, 2);
        let mut invite = Request::new(Method::Invite, "sip:svc@192.0.2.1");
        for (n, v) in [("From", "<sip:alice@example.com>;tag=a1"), ("To", "<sip:svc@example.com>"), ("Call-ID", "pair-1"), ("CSeq", "1 INVITE")] {
            invite.headers.push(n, v);
        }
        uac.send_request(t0, invite.clone(), uas_addr, Transport::Udp);
        let mut now = t0;
        let mut dropped_2xx = false;
        let (mut acked, mut uac_2xx) = (false, 0);
        for _ in 0..200 {
            let mut progressed = false;
            while let Some(out) = uac.poll_output() {
                progressed = true;
                match out {
                    Output::Transmit(t) => uas.handle_input(now, Input::Datagram { source: uac_addr, transport: t.transport, bytes: &t.bytes }),
                    Output::Event(Event::Response { response, .. }) if response.status() == 200 => {
                        uac_2xx += 1;
                        let mut ack = Request::new(Method::Ack, "sip:svc@192.0.2.1");
                        for n in ["From", "To", "Call-ID"] {
                            ack.headers.push(n, response.headers.get(n).unwrap());
                        }
                        ack.headers.push("CSeq", "1 ACK");
                        uac.send_stateless(now, ack.into(), uas_addr, Transport::Udp);
                    }
                    Output::Event(_) => {}
                }
            }
            while let Some(out) = uas.poll_output() {
                progressed = true;
                match out {
                    Output::Transmit(t) => {
                        let is_2xx = t.bytes.starts_with(b"SIP/2.0 200");
                        if is_2xx && !dropped_2xx {
                            dropped_2xx = true;
                            continue;
                        }
                        uac.handle_input(now, Input::Datagram { source: uas_addr, transport: t.transport, bytes: &t.bytes });
                    }
                    Output::Event(Event::Request { tx, request, .. }) => {
                        let mut ok = Response::from_request(&request, 200, "OK");
                        ok.set_to_tag("b1");
                        uas.send_response(now, tx, ok);
                    }
                    Output::Event(Event::Ack { .. }) => acked = true,
                    Output::Event(e) => panic!("unexpected {e:?}"),
                }
            }
            if !progressed {
                let next = [uac.poll_timeout(), uas.poll_timeout()].into_iter().flatten().min();
                let Some(next) = next else { break };
                now = next;
                uac.handle_timeout(now);
                uas.handle_timeout(now);
            }
        }
        assert!(dropped_2xx && acked);
        assert!(uac_2xx >= 1, "a retransmitted 2xx reached the UAC");
        assert_eq!((uac.poll_timeout(), uas.poll_timeout()), (None, None));
        assert!(now - t0 >= Duration::from_secs(32), "UAS held Accepted for 64*T1");
    }

    /// The timer queue on a large population: 100,000 transactions of five kinds started at
    /// random milliseconds over 20 s, driven only by `poll_timeout`/`handle_timeout` on a
    /// virtual clock. Every retransmission and timeout must happen at exactly its RFC 3261
    /// time (a late or missed deadline shifts or drops one), the queue must stay bounded by
    /// its live timers, and everything must end with nothing armed.
    #[test]
    fn hundred_thousand_transactions_fire_on_time() {
        const N: usize = 100_000;
        let t0 = Instant::now();
        let mut ep = endpoint();
        let mut rng = SmallRng::seed_from_u64(42);
        // Kind by index: 0 INVITE client UDP, 1 OPTIONS client UDP, 2 INVITE client TCP,
        // 3 INVITE server never ACKed, 4 INVITE server ACKed after 100 ms.
        let mut starts: Vec<(u64, usize)> = (0..N).map(|i| (rng.gen_range(0..20_000), i)).collect();
        starts.sort_unstable();
        let peer = |i: usize| SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 5060));
        let expected = |kind: usize| -> (Vec<u64>, Option<u64>) {
            // The first transmission (request or 200) at 0, then Timer A (doubling) or
            // Timer E/G (doubling, capped at T2 = 4 s), then Timer B/F/L at 64*T1.
            let doubling = vec![0, 500, 1500, 3500, 7500, 15500, 31500];
            let capped: Vec<u64> = [0, 500, 1500, 3500].into_iter().chain((0..7).map(|k| 7500 + 4000 * k)).collect();
            match kind {
                0 => (doubling, Some(32_000)),
                1 | 3 => (capped, Some(32_000)),
                2 => (vec![0], Some(32_000)),
                _ => (vec![0], None),
            }
        };
        let mut start_of = vec![0u64; N];
        let mut sent: Vec<Vec<u64>> = vec![Vec::new(); N];
        let mut ended: Vec<Option<u64>> = vec![None; N];
        let mut by_peer: HashMap<SocketAddr, usize> = HashMap::new();
        let mut clients: HashMap<ClientTxId, usize> = HashMap::new();
        let mut servers: HashMap<ServerTxId, usize> = HashMap::new();
        let mut acks: Vec<(u64, usize)> = Vec::new();
        let mut last_wakeup = None;
        let (mut next_start, mut next_ack) = (0, 0);
        let mut now_ms = 0u64;
        loop {
            let timeout = ep.poll_timeout().map(|at| (at - t0).as_millis() as u64);
            if let Some(at) = timeout {
                assert!(at >= now_ms, "poll_timeout went back in time");
            }
            let candidates = [timeout, starts.get(next_start).map(|s| s.0), acks.get(next_ack).map(|a| a.0)];
            let Some(at) = candidates.into_iter().flatten().min() else { break };
            now_ms = at;
            let now = t0 + ms(at);
            if timeout == Some(at) {
                // handle_timeout(now) leaves nothing due at `now`: each wake-up is a new instant.
                assert!(last_wakeup < Some(at), "woken twice at {at} ms");
                last_wakeup = Some(at);
                ep.handle_timeout(now);
            } else if starts.get(next_start).is_some_and(|s| s.0 == at) {
                let i = starts[next_start].1;
                next_start += 1;
                start_of[i] = at;
                by_peer.insert(peer(i), i);
                match i % 5 {
                    kind @ 0..=2 => {
                        let method = if kind == 1 { Method::Options } else { Method::Invite };
                        let transport = if kind == 2 { Transport::Tcp } else { Transport::Udp };
                        let tx = ep.send_request(now, outgoing(method), peer(i), transport);
                        clients.insert(tx, i);
                    }
                    kind => {
                        let text = invite(&format!("z9hG4bKbulk{i}")).replace("call-1", &format!("bulk-{i}"));
                        ep.handle_input(now, Input::Datagram { source: peer(i), transport: Transport::Udp, bytes: text.as_bytes() });
                        if kind == 4 {
                            // In time order: starts are visited in order and every delay is 100 ms.
                            acks.push((at + 100, i));
                        }
                    }
                }
            } else {
                let i = acks[next_ack].1;
                next_ack += 1;
                let text = request_text("ACK", &format!("z9hG4bKack{i}"), "ACK", ";tag=srv").replace("call-1", &format!("bulk-{i}"));
                ep.handle_input(now, Input::Datagram { source: peer(i), transport: Transport::Udp, bytes: text.as_bytes() });
            }
            // The first 200 OK of a server transaction is the TU's, sent as soon as the
            // request is seen; the transmissions are recorded as they leave.
            let mut answers = Vec::new();
            while let Some(out) = ep.poll_output() {
                match out {
                    Output::Transmit(t) => {
                        let i = by_peer[&t.destination];
                        sent[i].push(at - start_of[i]);
                    }
                    Output::Event(Event::Request { tx, request, .. }) => answers.push((tx, request)),
                    Output::Event(Event::Timeout { tx }) => {
                        let i = clients[&tx];
                        assert_eq!(ended[i].replace(at - start_of[i]), None);
                    }
                    Output::Event(Event::AckTimeout { tx }) => {
                        let i = servers[&tx];
                        assert_eq!(ended[i].replace(at - start_of[i]), None);
                    }
                    Output::Event(Event::Ack { request, .. }) => {
                        let i = by_peer[&addr(&format!("{}:5060", request.top_via().unwrap().received().unwrap_or("192.0.2.10")))];
                        assert_eq!(i % 5, 4, "only ACKed transactions see an ACK");
                    }
                    Output::Event(other) => panic!("unexpected {other:?}"),
                }
            }
            for (tx, request) in answers {
                let i = by_peer[&request.top_via().and_then(|v| v.received().map(str::to_string)).map(|ip| addr(&format!("{ip}:5060"))).unwrap()];
                servers.insert(tx, i);
                let mut ok = Response::from_request(&request, 200, "OK");
                ok.set_to_tag("srv");
                assert!(ep.send_response(now, tx, ok));
                while let Some(out) = ep.poll_output() {
                    let Output::Transmit(t) = out else { panic!("only the 200 leaves") };
                    sent[by_peer[&t.destination]].push(0);
                }
            }
            let queue = &ep.timers;
            assert!(queue.heap.len() <= 3 * queue.live + 64 + 2, "stale deadlines are bounded: {} for {} live", queue.heap.len(), queue.live);
        }
        for i in 0..N {
            let (times, end) = expected(i % 5);
            assert_eq!((&sent[i], ended[i]), (&times, end), "transaction {i} of kind {} started at {} ms", i % 5, start_of[i]);
        }
        assert_eq!(ep.poll_timeout(), None);
        assert!(ep.clients.is_empty() && ep.servers.is_empty() && ep.accepted.is_empty());
        assert!(ep.client_index.is_empty() && ep.server_index.is_empty());
        assert_eq!((ep.timers.live, ep.timers.heap.len()), (0, 0));
    }

    /// A final response to a non-INVITE client transaction stops Timer F 32 s early, leaving
    /// a stale deadline behind each time, while Timer K (T4 = 5 s) ends the transaction: once
    /// stale entries outnumber twice the live ones the heap is rebuilt, and every Timer K
    /// still fires at T4.
    #[test]
    fn stale_deadlines_are_compacted() {
        let mut ep = endpoint();
        let t0 = Instant::now();
        let (mut rebuilds, mut last_stale, mut ended) = (0, 0, 0);
        for i in 0..4_000u64 {
            let now = t0 + ms(10 * i);
            let tx = ep.send_request(now, outgoing(Method::Options), addr(UAC), Transport::Udp);
            let (sent, _) = drain(&mut ep);
            deliver(&mut ep, now, &response_to(&sent[0], 200));
            assert!(matches!(drain(&mut ep).1.as_slice(), [Event::Response { tx: t, .. }] if *t == tx));
            let queue = &ep.timers;
            assert!(queue.stale() <= 2 * queue.live + 64, "{} stale for {} live", queue.stale(), queue.live);
            if queue.stale() < last_stale {
                rebuilds += 1;
            }
            last_stale = queue.stale();
            // Transactions answered 5 s ago or more are gone, the others are not.
            let alive = ep.clients.len() as u64;
            assert_eq!(alive, i.min(499) + 1, "at {} ms", 10 * i);
            ended = i + 1 - alive;
        }
        assert!(rebuilds > 0, "the heap was rebuilt");
        assert_eq!(ended, 3_500);
        ep.handle_timeout(t0 + ms(39_990 + 4_999));
        assert_eq!((ep.clients.len(), ep.poll_timeout()), (1, Some(t0 + ms(39_990 + 5_000))));
        ep.handle_timeout(t0 + ms(39_990 + 5_000));
        assert_eq!((ep.poll_timeout(), ep.clients.len(), ep.client_index.len(), ep.timers.live), (None, 0, 0, 0));
    }
}
