//! The ESME side of one SMPP connection, sans-IO: bind, keep-alive, the submit window with
//! per-PDU timeouts, throttling, inbound messages and receipts, unbind.
//!
//! The driver opens the TCP connection, creates a [`Session`] (which queues the bind), and
//! then loops: bytes read go to [`Session::handle_bytes`], [`Session::poll_output`] is
//! drained (bytes to write, events for the application), and when
//! [`Session::poll_timeout`] is due it calls [`Session::handle_timeout`]. On
//! [`Event::Closed`] it closes the connection; if the connection drops first it calls
//! [`Session::handle_disconnect`].
//!
//! Sending: [`Session::submit`] refuses, with the reason, when the session is not bound, the
//! window is full, the SMSC asked for a pause (ESME_RTHROTTLED) or the TPS cap is reached;
//! [`Session::submit_ready_at`] says when to try again. Every accepted submit ends in exactly
//! one of [`Event::SubmitResponse`], [`Event::Throttled`], [`Event::SubmitTimeout`] or
//! [`Event::SubmitAborted`].
//!
//! Receiving: each deliver_sm becomes [`Event::Deliver`] or [`Event::Receipt`] and is
//! answered only when the application calls [`Session::ack_deliver`], after it has stored
//! it. If the session closes first, the SMSC keeps the message and delivers it again. A
//! part of a long message arrives as one [`Event::Deliver`] per part: the application joins
//! them with a [`crate::Reassembler`] (which outlives sessions), acknowledging each part once
//! it is stored.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::framer::{FrameError, Framer};
use crate::pdu::{command_id, Bind, BindMode, Body, Header, Pdu, PduError, Sm, SmResp, SMPP_V34};
use crate::receipt::Receipt;
use crate::status::CommandStatus;

/// The highest sequence number (SMPP 3.4 §3.2: 0x00000001 to 0x7FFFFFFF).
pub const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;

/// What to bind as, and the session's timers and limits.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The bind PDU's fields: mode, system_id, password, system_type, interface_version,
    /// addr_ton, addr_npi, address_range.
    pub bind: Bind,
    /// No bind response within this: close.
    pub bind_timeout: Duration,
    /// An enquire_link is sent after this long without a PDU from the SMSC.
    pub enquire_link_interval: Duration,
    /// How long to wait for enquire_link_resp and unbind_resp.
    pub response_timeout: Duration,
    /// How long a submit_sm waits for its response before [`Event::SubmitTimeout`].
    pub submit_timeout: Duration,
    /// At most this many submit_sm awaiting a response.
    pub window: usize,
    /// At most this many submit_sm per second (`None`: no cap)...
    pub max_tps: Option<u32>,
    /// ...with bursts of up to this many at once.
    pub tps_burst: u32,
    /// The first pause after ESME_RTHROTTLED, doubled on each further one up to the max,
    /// back to the first after a submit succeeds.
    pub throttle_backoff: Duration,
    pub throttle_backoff_max: Duration,
    /// deliver_sm not yet acknowledged by the application beyond which more are refused
    /// with ESME_RX_T_APPN (the SMSC retries them later).
    pub max_unacked_delivers: usize,
}

impl SessionConfig {
    pub fn new(mode: BindMode, system_id: &str, password: &str) -> SessionConfig {
        SessionConfig {
            bind: Bind {
                mode,
                system_id: system_id.to_string(),
                password: password.to_string(),
                system_type: String::new(),
                interface_version: SMPP_V34,
                addr_ton: 0,
                addr_npi: 0,
                address_range: String::new(),
            },
            bind_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            submit_timeout: Duration::from_secs(30),
            window: 10,
            max_tps: None,
            tps_burst: 1,
            throttle_backoff: Duration::from_secs(1),
            throttle_backoff_max: Duration::from_secs(60),
            max_unacked_delivers: 100,
        }
    }
}

/// A sequence number this ESME gave a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqNo(pub u32);

/// A sequence number the SMSC gave a deliver_sm: what [`Session::ack_deliver`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerSeqNo(pub u32);

/// A submit_sm's body.
pub type SubmitRequest = Sm;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Binding,
    Bound,
    Unbinding,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The SMSC refused the bind.
    BindRejected(CommandStatus),
    BindTimeout,
    /// An enquire_link went unanswered.
    KeepAliveTimeout,
    /// Either side unbound.
    Unbound,
    /// Our unbind went unanswered.
    UnbindTimeout,
    /// The byte stream broke (a command_length out of bounds); cannot resynchronise.
    Framing(FrameError),
    /// The driver reported the connection gone.
    ConnectionLost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    Bound { smsc_system_id: String, sc_interface_version: Option<u8> },
    /// The SMSC answered a submit_sm: its message id, or the status it refused with.
    SubmitResponse { seq: SeqNo, result: Result<String, CommandStatus> },
    /// The SMSC answered ESME_RTHROTTLED: the message was not taken, requeue it. Sending is
    /// paused until `resume_at`.
    Throttled { seq: SeqNo, resume_at: Instant },
    /// No response within the submit timeout. The SMSC may have taken the message anyway:
    /// a retry may send it twice.
    SubmitTimeout { seq: SeqNo },
    /// The session closed before the submit_sm was answered; as with a timeout, the SMSC
    /// may or may not have it.
    SubmitAborted { seq: SeqNo },
    /// A message for us. Store it, then call [`Session::ack_deliver`].
    Deliver { seq: PeerSeqNo, sm: Box<Sm> },
    /// A delivery receipt. Store it, then call [`Session::ack_deliver`].
    Receipt { seq: PeerSeqNo, receipt: Receipt, sm: Box<Sm> },
    /// The bind ended cleanly (either side's unbind); [`Event::Closed`] follows.
    Unbound,
    /// Close the connection now.
    Closed { reason: CloseReason },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes to write to the connection, in order.
    Transmit(Vec<u8>),
    Event(Event),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("not bound")]
    NotBound,
    #[error("bound as a receiver: cannot submit")]
    WrongBindMode,
    #[error("the window of outstanding submit_sm is full")]
    WindowFull,
    #[error("the SMSC asked to pause sending")]
    Throttled { until: Instant },
    #[error("the TPS cap is reached")]
    RateLimited { until: Instant },
    #[error(transparent)]
    Encode(#[from] PduError),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    #[error("no unacknowledged deliver_sm has sequence number {0}")]
    Unknown(u32),
}

/// What the session answered or dropped on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// PDUs that did not parse (answered, or dropped if they were responses).
    pub malformed: u64,
    pub generic_nacks_sent: u64,
    /// Responses that matched no request (late, after a timeout, or bogus).
    pub unmatched_responses: u64,
    /// alert_notification, outbind and other PDUs with nothing to do.
    pub ignored: u64,
    /// deliver_sm refused because too many awaited the application.
    pub delivers_refused: u64,
}

pub struct Session {
    config: SessionConfig,
    state: SessionState,
    framer: Framer,
    out: VecDeque<Output>,
    next_seq: u32,
    /// Deadline of the bind (while Binding) or of the unbind (while Unbinding).
    state_deadline: Option<Instant>,
    /// Sequence number of our bind or unbind request.
    state_seq: u32,
    /// submit_sm awaiting a response, and when they time out.
    outstanding: HashMap<u32, Instant>,
    /// Our enquire_link awaiting its response.
    enquire: Option<(u32, Instant)>,
    /// The last PDU from the SMSC: keep-alive counts from here.
    last_received: Instant,
    /// deliver_sm the application has not yet acknowledged.
    unacked: HashSet<u32>,
    throttle: Backoff,
    throttled_until: Option<Instant>,
    /// GCRA's theoretical arrival time for the TPS cap.
    tat: Option<Instant>,
    stats: SessionStats,
}

impl Session {
    /// A session on a freshly opened connection; the bind is the first output.
    pub fn new(now: Instant, config: SessionConfig) -> Result<Session, PduError> {
        let bind = Pdu::request(1, Body::Bind(config.bind.clone())).encode()?;
        Ok(Session {
            throttle: Backoff::new(config.throttle_backoff, config.throttle_backoff_max),
            state: SessionState::Binding,
            framer: Framer::new(),
            out: VecDeque::from([Output::Transmit(bind)]),
            next_seq: 2,
            state_deadline: Some(now + config.bind_timeout),
            state_seq: 1,
            outstanding: HashMap::new(),
            enquire: None,
            last_received: now,
            unacked: HashSet::new(),
            throttled_until: None,
            tat: None,
            stats: SessionStats::default(),
            config,
        })
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn is_bound(&self) -> bool {
        self.state == SessionState::Bound
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// submit_sm awaiting a response.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Session::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == SessionState::Closed {
            return None;
        }
        let keep_alive = match (self.state, self.enquire) {
            (_, Some((_, deadline))) => Some(deadline),
            (SessionState::Bound, None) => Some(self.last_received + self.config.enquire_link_interval),
            _ => None,
        };
        [self.state_deadline, keep_alive, self.throttled_until, self.outstanding.values().min().copied()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == SessionState::Closed {
            return;
        }
        if self.state_deadline.is_some_and(|d| now >= d) {
            let reason = match self.state {
                SessionState::Binding => CloseReason::BindTimeout,
                _ => CloseReason::UnbindTimeout,
            };
            return self.close(reason);
        }
        if let Some((_, deadline)) = self.enquire {
            if now >= deadline {
                return self.close(CloseReason::KeepAliveTimeout);
            }
        } else if self.state == SessionState::Bound && now >= self.last_received + self.config.enquire_link_interval {
            let seq = self.take_seq();
            self.enquire = Some((seq, now + self.config.response_timeout));
            self.send(Pdu::request(seq, Body::EnquireLink));
        }
        if self.throttled_until.is_some_and(|t| now >= t) {
            self.throttled_until = None;
        }
        let mut expired: Vec<u32> =
            self.outstanding.iter().filter(|(_, &deadline)| now >= deadline).map(|(&seq, _)| seq).collect();
        expired.sort_unstable();
        for seq in expired {
            self.outstanding.remove(&seq);
            self.event(Event::SubmitTimeout { seq: SeqNo(seq) });
        }
    }

    /// Bytes read from the connection, in any chunks.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if self.state == SessionState::Closed {
            return;
        }
        self.framer.push(bytes);
        while self.state != SessionState::Closed {
            match self.framer.pop() {
                Ok(Some(frame)) => self.handle_frame(now, &frame),
                Ok(None) => break,
                Err(err) => {
                    self.stats.malformed += 1;
                    self.generic_nack(err.header.sequence_number, err.error.command_status());
                    self.close(CloseReason::Framing(err));
                }
            }
        }
    }

    /// The connection is gone (read error, EOF): outstanding submits are aborted.
    pub fn handle_disconnect(&mut self) {
        if self.state != SessionState::Closed {
            self.close(CloseReason::ConnectionLost);
        }
    }

    /// Whether [`Session::submit`] would take a message now.
    pub fn can_submit(&self, now: Instant) -> bool {
        self.check_submit(now).is_ok()
    }

    /// When a submit can next go out: `now` if at once, a later instant while throttled or
    /// rate-capped, `None` while that depends on an event (not bound, window full).
    pub fn submit_ready_at(&self, now: Instant) -> Option<Instant> {
        match self.check_submit(now) {
            Ok(()) => Some(now),
            Err(SubmitError::Throttled { until } | SubmitError::RateLimited { until }) => Some(until),
            Err(_) => None,
        }
    }

    /// Sends a submit_sm; its outcome comes later as an event naming the returned [`SeqNo`].
    pub fn submit(&mut self, now: Instant, sm: SubmitRequest) -> Result<SeqNo, SubmitError> {
        self.check_submit(now)?;
        let seq = self.peek_seq();
        let bytes = Pdu::request(seq, Body::SubmitSm(Box::new(sm))).encode()?;
        self.take_seq();
        self.outstanding.insert(seq, now + self.config.submit_timeout);
        if let Some(interval) = self.tps_interval() {
            self.tat = Some(self.tat.map_or(now, |t| t.max(now)) + interval);
        }
        self.out.push_back(Output::Transmit(bytes));
        Ok(SeqNo(seq))
    }

    /// Answers a deliver_sm the application has stored (`ESME_ROK`) or refuses it
    /// (`ESME_RX_T_APPN` to have it redelivered later, `ESME_RX_P_APPN` never).
    pub fn ack_deliver(&mut self, seq: PeerSeqNo, status: CommandStatus) -> Result<(), AckError> {
        if !self.unacked.remove(&seq.0) {
            return Err(AckError::Unknown(seq.0));
        }
        self.send(Pdu::response(seq.0, status, Body::DeliverSmResp(SmResp::default())));
        Ok(())
    }

    /// Ends the bind: unbind, then close on its response (or after the response timeout).
    /// Submits still outstanding may yet be answered.
    pub fn unbind(&mut self, now: Instant) {
        if matches!(self.state, SessionState::Binding | SessionState::Bound) {
            let seq = self.take_seq();
            self.state = SessionState::Unbinding;
            self.state_seq = seq;
            self.state_deadline = Some(now + self.config.response_timeout);
            self.enquire = None;
            self.send(Pdu::request(seq, Body::Unbind));
        }
    }

    fn check_submit(&self, now: Instant) -> Result<(), SubmitError> {
        if self.state != SessionState::Bound {
            return Err(SubmitError::NotBound);
        }
        if !self.config.bind.mode.can_submit() {
            return Err(SubmitError::WrongBindMode);
        }
        if self.outstanding.len() >= self.config.window.max(1) {
            return Err(SubmitError::WindowFull);
        }
        if let Some(until) = self.throttled_until.filter(|&t| now < t) {
            return Err(SubmitError::Throttled { until });
        }
        if let (Some(interval), Some(tat)) = (self.tps_interval(), self.tat) {
            let tolerance = interval * self.config.tps_burst.max(1).saturating_sub(1);
            let allowed_from = tat.checked_sub(tolerance).unwrap_or(tat);
            if now < allowed_from {
                return Err(SubmitError::RateLimited { until: allowed_from });
            }
        }
        Ok(())
    }

    fn tps_interval(&self) -> Option<Duration> {
        self.config.max_tps.filter(|&t| t > 0).map(|tps| Duration::from_secs(1) / tps)
    }

    fn handle_frame(&mut self, now: Instant, frame: &[u8]) {
        self.last_received = now;
        // The framer hands over only frames of at least HEADER_LEN octets.
        let Some(header) = Header::parse(frame) else { return };
        match Pdu::parse(frame) {
            Ok(pdu) => self.handle_pdu(now, pdu),
            Err(err) => {
                self.stats.malformed += 1;
                if header.is_response() {
                    // Nothing to answer; the request it answers will time out.
                } else if header.command_id == command_id::DELIVER_SM {
                    self.send(Pdu::response(
                        header.sequence_number,
                        err.command_status(),
                        Body::DeliverSmResp(SmResp::default()),
                    ));
                } else {
                    self.generic_nack(header.sequence_number, err.command_status());
                }
            }
        }
    }

    fn handle_pdu(&mut self, now: Instant, pdu: Pdu) {
        let seq = pdu.sequence_number;
        let status = pdu.command_status;
        match pdu.body {
            Body::EnquireLink => self.send(Pdu::response(seq, CommandStatus::ESME_ROK, Body::EnquireLinkResp)),
            Body::EnquireLinkResp => {
                if self.enquire.is_some_and(|(s, _)| s == seq) {
                    self.enquire = None;
                } else {
                    self.stats.unmatched_responses += 1;
                }
            }
            Body::BindResp(resp) => {
                if self.state == SessionState::Binding && seq == self.state_seq {
                    self.bind_answered(status, resp.system_id, resp.tlvs.sc_interface_version());
                } else {
                    self.stats.unmatched_responses += 1;
                }
            }
            Body::Unbind => {
                self.send(Pdu::response(seq, CommandStatus::ESME_ROK, Body::UnbindResp));
                self.event(Event::Unbound);
                self.close(CloseReason::Unbound);
            }
            Body::UnbindResp => {
                if self.state == SessionState::Unbinding && seq == self.state_seq {
                    self.event(Event::Unbound);
                    self.close(CloseReason::Unbound);
                } else {
                    self.stats.unmatched_responses += 1;
                }
            }
            Body::SubmitSmResp(resp) => self.submit_answered(now, seq, status, resp.message_id),
            Body::GenericNack => self.nacked(now, seq, status),
            Body::DeliverSm(sm) => self.delivered(seq, sm),
            Body::AlertNotification(_) | Body::Outbind(_) | Body::DeliverSmResp(_) | Body::QuerySmResp(_) => {
                self.stats.ignored += 1;
            }
            // Requests an SMSC does not send to an ESME.
            Body::Bind(_) | Body::SubmitSm(_) | Body::QuerySm(_) => {
                self.generic_nack(seq, CommandStatus::ESME_RINVBNDSTS);
            }
        }
    }

    fn bind_answered(&mut self, status: CommandStatus, smsc_system_id: String, sc_interface_version: Option<u8>) {
        if status.is_ok() {
            self.state = SessionState::Bound;
            self.state_deadline = None;
            self.event(Event::Bound { smsc_system_id, sc_interface_version });
        } else {
            self.close(CloseReason::BindRejected(status));
        }
    }

    fn submit_answered(&mut self, now: Instant, seq: u32, status: CommandStatus, message_id: String) {
        if self.outstanding.remove(&seq).is_none() {
            self.stats.unmatched_responses += 1;
            return;
        }
        if status == CommandStatus::ESME_RTHROTTLED {
            let resume_at = now + self.throttle.next_delay();
            self.throttled_until = Some(self.throttled_until.map_or(resume_at, |t| t.max(resume_at)));
            self.event(Event::Throttled { seq: SeqNo(seq), resume_at });
            return;
        }
        let result = if status.is_ok() {
            self.throttle.reset();
            Ok(message_id)
        } else {
            Err(status)
        };
        self.event(Event::SubmitResponse { seq: SeqNo(seq), result });
    }

    fn nacked(&mut self, now: Instant, seq: u32, status: CommandStatus) {
        // A generic_nack with status 0 would be nonsense; treat it as a system error.
        let status = if status.is_ok() { CommandStatus::ESME_RSYSERR } else { status };
        if self.outstanding.contains_key(&seq) {
            self.submit_answered(now, seq, status, String::new());
        } else if self.enquire.is_some_and(|(s, _)| s == seq) {
            // The SMSC is there, even if it does not like our enquire_link.
            self.enquire = None;
        } else if seq == self.state_seq && self.state == SessionState::Binding {
            self.close(CloseReason::BindRejected(status));
        } else if seq == self.state_seq && self.state == SessionState::Unbinding {
            self.event(Event::Unbound);
            self.close(CloseReason::Unbound);
        } else {
            self.stats.unmatched_responses += 1;
        }
    }

    fn delivered(&mut self, seq: u32, sm: Box<Sm>) {
        let respond = |status| Pdu::response(seq, status, Body::DeliverSmResp(SmResp::default()));
        if self.state != SessionState::Bound || !self.config.bind.mode.can_receive() {
            return self.send(respond(CommandStatus::ESME_RINVBNDSTS));
        }
        if !self.unacked.contains(&seq) && self.unacked.len() >= self.config.max_unacked_delivers {
            self.stats.delivers_refused += 1;
            return self.send(respond(CommandStatus::ESME_RX_T_APPN));
        }
        self.unacked.insert(seq);
        let event = match Receipt::from_sm(&sm) {
            Some(receipt) => Event::Receipt { seq: PeerSeqNo(seq), receipt, sm },
            None => Event::Deliver { seq: PeerSeqNo(seq), sm },
        };
        self.event(event);
    }

    fn close(&mut self, reason: CloseReason) {
        let mut aborted: Vec<u32> = self.outstanding.drain().map(|(seq, _)| seq).collect();
        aborted.sort_unstable();
        for seq in aborted {
            self.event(Event::SubmitAborted { seq: SeqNo(seq) });
        }
        self.unacked.clear();
        self.enquire = None;
        self.state_deadline = None;
        self.throttled_until = None;
        self.state = SessionState::Closed;
        self.event(Event::Closed { reason });
    }

    fn generic_nack(&mut self, seq: u32, status: CommandStatus) {
        self.stats.generic_nacks_sent += 1;
        self.send(Pdu::response(seq, status, Body::GenericNack));
    }

    fn send(&mut self, pdu: Pdu) {
        // Only PDUs built here from checked or empty fields reach this: they encode.
        if let Ok(bytes) = pdu.encode() {
            self.out.push_back(Output::Transmit(bytes));
        }
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    fn peek_seq(&self) -> u32 {
        let mut seq = self.next_seq;
        // Skip numbers still in use (only possible after 2^31 requests with one stuck).
        let in_use = |seq: u32| {
            self.outstanding.contains_key(&seq)
                || (seq == self.state_seq && self.state_deadline.is_some())
                || self.enquire.is_some_and(|(s, _)| s == seq)
        };
        while in_use(seq) {
            seq = if seq >= MAX_SEQUENCE { 1 } else { seq + 1 };
        }
        seq
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.peek_seq();
        self.next_seq = if seq >= MAX_SEQUENCE { 1 } else { seq + 1 };
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{esm_class, Address, BindResp, Tlvs};

    const SEC: Duration = Duration::from_secs(1);

    fn config() -> SessionConfig {
        SessionConfig { window: 2, ..SessionConfig::new(BindMode::Transceiver, "dialtone", "secret") }
    }

    /// Everything queued: PDUs written and events.
    fn drain(s: &mut Session) -> (Vec<Pdu>, Vec<Event>) {
        let (mut pdus, mut events) = (Vec::new(), Vec::new());
        while let Some(out) = s.poll_output() {
            match out {
                Output::Transmit(bytes) => pdus.push(Pdu::parse(&bytes).unwrap()),
                Output::Event(e) => events.push(e),
            }
        }
        (pdus, events)
    }

    fn wire(pdu: Pdu) -> Vec<u8> {
        pdu.encode().unwrap()
    }

    fn bind_resp(seq: u32, status: CommandStatus) -> Vec<u8> {
        let body = BindResp { mode: BindMode::Transceiver, system_id: "SMSC".into(), tlvs: Tlvs::default() };
        wire(Pdu::response(seq, status, Body::BindResp(body)))
    }

    fn submit_resp(seq: SeqNo, status: CommandStatus, id: &str) -> Vec<u8> {
        wire(Pdu::response(seq.0, status, Body::SubmitSmResp(SmResp { message_id: id.into(), tlvs: Tlvs::default() })))
    }

    fn message() -> Sm {
        Sm {
            source: Address::international("15550001"),
            destination: Address::international("15550002"),
            short_message: b"hi".to_vec(),
            ..Sm::default()
        }
    }

    fn bound(t0: Instant, config: SessionConfig) -> Session {
        let mut s = Session::new(t0, config).unwrap();
        let (pdus, _) = drain(&mut s);
        let Body::Bind(bind) = &pdus[0].body else { panic!("bind first") };
        assert_eq!((bind.mode, bind.system_id.as_str(), bind.password.as_str()), (BindMode::Transceiver, "dialtone", "secret"));
        s.handle_bytes(t0, &bind_resp(pdus[0].sequence_number, CommandStatus::ESME_ROK));
        let (_, events) = drain(&mut s);
        assert_eq!(events, [Event::Bound { smsc_system_id: "SMSC".into(), sc_interface_version: None }]);
        s
    }

    #[test]
    fn bind_then_fill_the_window() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        assert!(s.can_submit(t0));
        let a = s.submit(t0, message()).unwrap();
        let b = s.submit(t0, message()).unwrap();
        assert_ne!(a, b);
        assert_eq!(s.submit(t0, message()), Err(SubmitError::WindowFull));
        assert_eq!(s.submit_ready_at(t0), None);
        let (pdus, _) = drain(&mut s);
        assert_eq!(pdus.len(), 2);
        assert!(matches!(&pdus[0].body, Body::SubmitSm(sm) if sm.short_message == b"hi"));
        s.handle_bytes(t0, &submit_resp(b, CommandStatus::ESME_ROK, "m-2"));
        s.handle_bytes(t0, &submit_resp(a, CommandStatus::ESME_RINVDSTADR, ""));
        let (_, events) = drain(&mut s);
        assert_eq!(
            events,
            [
                Event::SubmitResponse { seq: b, result: Ok("m-2".into()) },
                Event::SubmitResponse { seq: a, result: Err(CommandStatus::ESME_RINVDSTADR) },
            ]
        );
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.submit_ready_at(t0), Some(t0));
    }

    #[test]
    fn bind_rejected_or_unanswered() {
        let t0 = Instant::now();
        let mut s = Session::new(t0, config()).unwrap();
        drain(&mut s);
        assert_eq!(s.submit(t0, message()), Err(SubmitError::NotBound));
        s.handle_bytes(t0, &bind_resp(1, CommandStatus::ESME_RINVPASWD));
        let (_, events) = drain(&mut s);
        assert_eq!(events, [Event::Closed { reason: CloseReason::BindRejected(CommandStatus::ESME_RINVPASWD) }]);
        assert_eq!(s.poll_timeout(), None);

        let mut s = Session::new(t0, config()).unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + 10 * SEC));
        s.handle_timeout(t0 + 9 * SEC);
        assert_eq!(drain(&mut s).1, []);
        s.handle_timeout(t0 + 10 * SEC);
        assert_eq!(drain(&mut s).1, [Event::Closed { reason: CloseReason::BindTimeout }]);
    }

    #[test]
    fn receiver_cannot_submit() {
        let t0 = Instant::now();
        let mut cfg = config();
        cfg.bind.mode = BindMode::Receiver;
        let mut s = Session::new(t0, cfg).unwrap();
        drain(&mut s);
        let body = BindResp { mode: BindMode::Receiver, system_id: "SMSC".into(), tlvs: Tlvs::default() };
        s.handle_bytes(t0, &wire(Pdu::response(1, CommandStatus::ESME_ROK, Body::BindResp(body))));
        assert!(s.is_bound());
        assert_eq!(s.submit(t0, message()), Err(SubmitError::WrongBindMode));
    }

    #[test]
    fn submit_timeout_then_late_response() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        let a = s.submit(t0, message()).unwrap();
        let b = s.submit(t0 + SEC, message()).unwrap();
        drain(&mut s);
        assert_eq!(s.poll_timeout(), Some(t0 + 30 * SEC));
        s.handle_timeout(t0 + 30 * SEC);
        assert_eq!(drain(&mut s).1, [Event::SubmitTimeout { seq: a }]);
        assert_eq!(s.poll_timeout(), Some(t0 + 31 * SEC));
        s.handle_bytes(t0 + 30 * SEC, &submit_resp(a, CommandStatus::ESME_ROK, "late"));
        assert_eq!(drain(&mut s).1, []);
        assert_eq!(s.stats().unmatched_responses, 1);
        // A generic_nack answers a submit too.
        s.handle_bytes(t0 + 30 * SEC, &wire(Pdu::response(b.0, CommandStatus::ESME_RINVCMDID, Body::GenericNack)));
        assert_eq!(drain(&mut s).1, [Event::SubmitResponse { seq: b, result: Err(CommandStatus::ESME_RINVCMDID) }]);
    }

    #[test]
    fn throttled_backs_off_exponentially() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        let a = s.submit(t0, message()).unwrap();
        drain(&mut s);
        s.handle_bytes(t0, &submit_resp(a, CommandStatus::ESME_RTHROTTLED, ""));
        assert_eq!(drain(&mut s).1, [Event::Throttled { seq: a, resume_at: t0 + SEC }]);
        assert!(!s.can_submit(t0));
        assert_eq!(s.submit(t0, message()), Err(SubmitError::Throttled { until: t0 + SEC }));
        assert_eq!(s.submit_ready_at(t0), Some(t0 + SEC));
        assert_eq!(s.poll_timeout(), Some(t0 + SEC));
        s.handle_timeout(t0 + SEC);
        assert!(s.poll_timeout() > Some(t0 + SEC), "the pause is over: no busy wake-up");
        // Throttled again: twice as long.
        let t1 = t0 + SEC;
        let b = s.submit(t1, message()).unwrap();
        s.handle_bytes(t1, &submit_resp(b, CommandStatus::ESME_RTHROTTLED, ""));
        assert_eq!(drain(&mut s).1, [Event::Throttled { seq: b, resume_at: t1 + 2 * SEC }]);
        // A success resets the back-off.
        let t2 = t1 + 2 * SEC;
        let c = s.submit(t2, message()).unwrap();
        s.handle_bytes(t2, &submit_resp(c, CommandStatus::ESME_ROK, "ok"));
        let d = s.submit(t2, message()).unwrap();
        s.handle_bytes(t2, &submit_resp(d, CommandStatus::ESME_RTHROTTLED, ""));
        assert_eq!(drain(&mut s).1.last(), Some(&Event::Throttled { seq: d, resume_at: t2 + SEC }));
    }

    #[test]
    fn tps_cap() {
        let t0 = Instant::now();
        let cfg = SessionConfig { max_tps: Some(10), tps_burst: 2, window: 100, ..config() };
        let mut s = bound(t0, cfg);
        s.submit(t0, message()).unwrap();
        s.submit(t0, message()).unwrap();
        let until = t0 + Duration::from_millis(100);
        assert_eq!(s.submit(t0, message()), Err(SubmitError::RateLimited { until }));
        assert_eq!(s.submit_ready_at(t0), Some(until));
        s.submit(until, message()).unwrap();
        assert!(!s.can_submit(until));
        // Over 10 s at most 10/s go out (plus the burst).
        let mut sent = 3;
        let mut t = until;
        while t < t0 + 10 * SEC {
            t += Duration::from_millis(10);
            if s.submit(t, message()).is_ok() {
                sent += 1;
            }
            drain(&mut s);
            // Keep the window empty.
            let seqs: Vec<u32> = s.outstanding.keys().copied().collect();
            for seq in seqs {
                s.handle_bytes(t, &submit_resp(SeqNo(seq), CommandStatus::ESME_ROK, "x"));
            }
        }
        assert!((100..=102).contains(&sent), "{sent}");
    }

    #[test]
    fn enquire_link_answered_and_sent() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        s.handle_bytes(t0 + SEC, &wire(Pdu::request(77, Body::EnquireLink)));
        let (pdus, _) = drain(&mut s);
        assert_eq!(pdus, [Pdu::response(77, CommandStatus::ESME_ROK, Body::EnquireLinkResp)]);
        // 30 s after the last PDU from the SMSC, ours goes out.
        assert_eq!(s.poll_timeout(), Some(t0 + 31 * SEC));
        s.handle_timeout(t0 + 31 * SEC);
        let (pdus, _) = drain(&mut s);
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].body, Body::EnquireLink);
        assert_eq!(s.poll_timeout(), Some(t0 + 41 * SEC));
        s.handle_bytes(t0 + 32 * SEC, &wire(Pdu::response(pdus[0].sequence_number, CommandStatus::ESME_ROK, Body::EnquireLinkResp)));
        assert_eq!(s.poll_timeout(), Some(t0 + 62 * SEC));
        assert!(s.is_bound());
    }

    #[test]
    fn enquire_link_timeout_closes() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        let a = s.submit(t0, message()).unwrap();
        s.handle_timeout(t0 + 30 * SEC);
        let (pdus, events) = drain(&mut s);
        assert_eq!(pdus.last().map(|p| &p.body), Some(&Body::EnquireLink));
        assert_eq!(events, [Event::SubmitTimeout { seq: a }]);
        let b = s.submit(t0 + 35 * SEC, message()).unwrap();
        assert_eq!(s.poll_timeout(), Some(t0 + 40 * SEC));
        s.handle_timeout(t0 + 40 * SEC);
        let (_, events) = drain(&mut s);
        assert_eq!(
            events,
            [Event::SubmitAborted { seq: b }, Event::Closed { reason: CloseReason::KeepAliveTimeout }]
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn unbind_from_either_side() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        let a = s.submit(t0, message()).unwrap();
        drain(&mut s);
        s.handle_bytes(t0, &wire(Pdu::request(5, Body::Unbind)));
        let (pdus, events) = drain(&mut s);
        assert_eq!(pdus, [Pdu::response(5, CommandStatus::ESME_ROK, Body::UnbindResp)]);
        assert_eq!(
            events,
            [Event::Unbound, Event::SubmitAborted { seq: a }, Event::Closed { reason: CloseReason::Unbound }]
        );
        assert_eq!(s.state(), SessionState::Closed);
        s.handle_bytes(t0, &wire(Pdu::request(6, Body::EnquireLink)));
        assert_eq!(s.poll_output(), None);

        let mut s = bound(t0, config());
        s.unbind(t0);
        let (pdus, _) = drain(&mut s);
        assert_eq!(pdus[0].body, Body::Unbind);
        assert_eq!(s.submit(t0, message()), Err(SubmitError::NotBound));
        s.handle_bytes(t0, &wire(Pdu::response(pdus[0].sequence_number, CommandStatus::ESME_ROK, Body::UnbindResp)));
        assert_eq!(drain(&mut s).1, [Event::Unbound, Event::Closed { reason: CloseReason::Unbound }]);

        let mut s = bound(t0, config());
        s.unbind(t0);
        s.handle_timeout(t0 + 10 * SEC);
        assert_eq!(drain(&mut s).1.last(), Some(&Event::Closed { reason: CloseReason::UnbindTimeout }));
    }

    #[test]
    fn unknown_commands_get_generic_nack() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        // A well-framed PDU with a command_id SMPP does not have.
        let mut unknown = wire(Pdu::request(42, Body::EnquireLink));
        unknown[4..8].copy_from_slice(&0x0000_0999u32.to_be_bytes());
        s.handle_bytes(t0, &unknown);
        // A response nobody asked for, unparseable: dropped.
        let mut bad_resp = wire(Pdu::request(43, Body::EnquireLink));
        bad_resp[4..8].copy_from_slice(&0x8000_0999u32.to_be_bytes());
        s.handle_bytes(t0, &bad_resp);
        // A request an SMSC does not send.
        s.handle_bytes(t0, &wire(Pdu::request(44, Body::SubmitSm(Box::new(message())))));
        let (pdus, events) = drain(&mut s);
        assert_eq!(
            pdus,
            [
                Pdu::response(42, CommandStatus::ESME_RINVCMDID, Body::GenericNack),
                Pdu::response(44, CommandStatus::ESME_RINVBNDSTS, Body::GenericNack),
            ]
        );
        assert_eq!(events, []);
        assert!(s.is_bound());
        assert_eq!(s.stats().generic_nacks_sent, 2);
    }

    #[test]
    fn garbage_and_absurd_lengths_close_with_generic_nack() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        let a = s.submit(t0, message()).unwrap();
        drain(&mut s);
        // "GARBAGE!..." reads as command_length 0x47415242: over a gigabyte.
        s.handle_bytes(t0, b"GARBAGE! not smpp at all");
        let (pdus, events) = drain(&mut s);
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].body, Body::GenericNack);
        assert_eq!(pdus[0].command_status, CommandStatus::ESME_RINVCMDLEN);
        assert_eq!(events[0], Event::SubmitAborted { seq: a });
        assert!(matches!(
            &events[1],
            Event::Closed { reason: CloseReason::Framing(FrameError { error: PduError::BadCommandLength(0x4741_5242), .. }) }
        ));
        assert_eq!(s.framer.buffered(), 0);

        let mut s = bound(t0, config());
        let mut header = u32::MAX.to_be_bytes().to_vec();
        header.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9]);
        s.handle_bytes(t0, &header);
        let (pdus, _) = drain(&mut s);
        assert_eq!(pdus, [Pdu::response(9, CommandStatus::ESME_RINVCMDLEN, Body::GenericNack)]);
        assert_eq!(s.state(), SessionState::Closed);
        assert_eq!(s.framer.buffered(), 0);
    }

    fn deliver(seq: u32, sm: Sm) -> Vec<u8> {
        wire(Pdu::request(seq, Body::DeliverSm(Box::new(sm))))
    }

    #[test]
    fn deliver_is_acked_only_by_the_application() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        // Split in one-byte chunks: nothing is lost.
        for b in deliver(900, message()) {
            s.handle_bytes(t0, &[b]);
        }
        let (pdus, events) = drain(&mut s);
        assert_eq!(pdus, []);
        assert_eq!(events, [Event::Deliver { seq: PeerSeqNo(900), sm: Box::new(message()) }]);
        s.ack_deliver(PeerSeqNo(900), CommandStatus::ESME_ROK).unwrap();
        let (pdus, _) = drain(&mut s);
        assert_eq!(pdus, [Pdu::response(900, CommandStatus::ESME_ROK, Body::DeliverSmResp(SmResp::default()))]);
        assert_eq!(s.ack_deliver(PeerSeqNo(900), CommandStatus::ESME_ROK), Err(AckError::Unknown(900)));

        let receipt = Sm {
            esm_class: esm_class::DELIVERY_RECEIPT,
            short_message: b"id:msg1 sub:001 dlvrd:001 submit date:2401010000 done date:2401010000 stat:DELIVRD err:000 text:".to_vec(),
            ..message()
        };
        s.handle_bytes(t0, &deliver(901, receipt));
        let (pdus, events) = drain(&mut s);
        assert_eq!(pdus, []);
        let [Event::Receipt { seq, receipt, .. }] = &events[..] else { panic!("{events:?}") };
        assert_eq!((*seq, receipt.message_id.as_str()), (PeerSeqNo(901), "msg1"));
        assert_eq!(receipt.state, Some(crate::MessageState::Delivered));
        s.ack_deliver(*seq, CommandStatus::ESME_RX_T_APPN).unwrap();
        assert_eq!(drain(&mut s).0[0].command_status, CommandStatus::ESME_RX_T_APPN);
    }

    #[test]
    fn deliver_refusals() {
        let t0 = Instant::now();
        let mut s = bound(t0, SessionConfig { max_unacked_delivers: 1, ..config() });
        s.handle_bytes(t0, &deliver(1, message()));
        s.handle_bytes(t0, &deliver(2, message()));
        let (pdus, events) = drain(&mut s);
        assert_eq!(events.len(), 1);
        assert_eq!(pdus, [Pdu::response(2, CommandStatus::ESME_RX_T_APPN, Body::DeliverSmResp(SmResp::default()))]);
        // A malformed deliver_sm is refused with the status its fault names.
        let mut bad = deliver(3, message());
        bad.truncate(bad.len() - 1);
        let len = bad.len() as u32;
        bad[..4].copy_from_slice(&len.to_be_bytes());
        s.handle_bytes(t0, &bad);
        let (pdus, _) = drain(&mut s);
        assert_eq!(pdus, [Pdu::response(3, CommandStatus::ESME_RINVMSGLEN, Body::DeliverSmResp(SmResp::default()))]);
        // A transmitter gets none.
        let mut cfg = config();
        cfg.bind.mode = BindMode::Transmitter;
        let mut s = Session::new(t0, cfg).unwrap();
        drain(&mut s);
        let body = BindResp { mode: BindMode::Transmitter, system_id: "SMSC".into(), tlvs: Tlvs::default() };
        s.handle_bytes(t0, &wire(Pdu::response(1, CommandStatus::ESME_ROK, Body::BindResp(body))));
        drain(&mut s);
        s.handle_bytes(t0, &deliver(4, message()));
        assert_eq!(drain(&mut s).0[0].command_status, CommandStatus::ESME_RINVBNDSTS);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let t0 = Instant::now();
        let mut s = bound(t0, SessionConfig { window: 3, ..config() });
        s.next_seq = MAX_SEQUENCE - 1;
        let seqs: Vec<u32> = (0..3).map(|_| s.submit(t0, message()).unwrap().0).collect();
        assert_eq!(seqs, [MAX_SEQUENCE - 1, MAX_SEQUENCE, 1]);
        // A number still awaiting its response is skipped.
        s.handle_bytes(t0, &submit_resp(SeqNo(MAX_SEQUENCE - 1), CommandStatus::ESME_ROK, "a"));
        s.handle_bytes(t0, &submit_resp(SeqNo(MAX_SEQUENCE), CommandStatus::ESME_ROK, "b"));
        s.next_seq = 1;
        assert_eq!(s.submit(t0, message()).unwrap(), SeqNo(2));
    }

    #[test]
    fn disconnect_aborts_outstanding() {
        let t0 = Instant::now();
        let mut s = bound(t0, config());
        let a = s.submit(t0, message()).unwrap();
        s.handle_bytes(t0, &deliver(1, message()));
        drain(&mut s);
        s.handle_disconnect();
        assert_eq!(
            drain(&mut s).1,
            [Event::SubmitAborted { seq: a }, Event::Closed { reason: CloseReason::ConnectionLost }]
        );
        assert_eq!(s.ack_deliver(PeerSeqNo(1), CommandStatus::ESME_ROK), Err(AckError::Unknown(1)));
        s.handle_disconnect();
        assert_eq!(s.poll_output(), None);
    }
}
