//! SMS over SMPP: the node's connections to SMS centres (SMSCs).
//!
//! [`SmscPool`] keeps every configured bind connected: one tokio task per bind (`bind.rs`) owns
//! its TCP connection and drives an `smpp::Session` (bytes in, `poll_output` out, timers from
//! `poll_timeout`), reconnecting with `smpp::Backoff` after a close or a failed connect. The
//! session makes the protocol decisions (window, enquire_link, throttling pauses, TPS cap); the
//! task only queues work for it and carries its outputs.
//!
//! Sending: [`SmscPool::submit`] picks the SMSC whose prefix matches the destination (longest
//! prefix; an SMSC without prefixes takes every number) and one of its binds that is up, cuts
//! the text into parts (`smpp::segment::split`: GSM-7 where it can, else UCS-2, an 8-bit
//! reference UDH) and hands them to that bind, which submits them in order, each part once the
//! one before was accepted. The answer says, part by part, what the SMSC did.
//!
//! Receiving: messages and delivery receipts go out on one bounded channel as [`SmsEvent`]s.
//! Each carries a [`DeliverAck`]; the SMSC gets its deliver_sm_resp only when the consumer
//! calls [`DeliverAck::stored`] (or [`DeliverAck::refuse`]). The parts of a long message are
//! joined per SMSC (`inbox.rs`, an `smpp::Reassembler`) and every part's acknowledgement is held
//! until the whole message has been stored; a set that never completes is refused with
//! ESME_RX_T_APPN, as is anything that finds the channel full, so the SMSC delivers it again.
//!
//! Architecture invariant: no SMPP decision here that `smpp::Session` can make; a deliver_sm
//! is acknowledged OK only after the consumer stored what it carried.

mod bind;
mod inbox;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smpp::{Address, CommandStatus, PeerSeqNo, Sm};
use tokio::sync::{mpsc, oneshot};

pub use smpp::BindMode;

/// The IANA port of SMPP.
pub const DEFAULT_PORT: u16 = 2775;
/// Events waiting for the consumer beyond which deliveries are refused (ESME_RX_T_APPN).
pub const EVENT_QUEUE: usize = 8192;
/// Incomplete long messages held per SMSC; parts of further ones are refused until some
/// complete or expire.
pub const MAX_PART_SETS: usize = 512;
/// How long the parts of a long message wait for the rest.
pub const PART_SET_TIMEOUT: Duration = Duration::from_secs(60);
/// ESME_RTHROTTLED answers one part may get before it is reported [`PartOutcome::Throttled`].
pub const MAX_THROTTLE_RETRIES: u32 = 5;

/// One SMS centre: where it is, how to bind, which numbers it carries.
#[derive(Clone)]
pub struct SmscConfig {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub bind: BindMode,
    /// Connections kept open at once (each its own bind).
    pub binds: usize,
    /// submit_sm per second across all binds; `None`: no cap but the SMSC's throttling.
    pub tps: Option<u32>,
    /// submit_sm awaiting a response, per bind.
    pub window: usize,
    /// Destination prefixes (`"+1"`, `"+33"`) this SMSC carries; empty: every number.
    pub prefixes: Vec<String>,
    pub source_ton: u8,
    pub source_npi: u8,
    pub dest_ton: u8,
    pub dest_npi: u8,
    pub enquire_link: Duration,
    /// The longest wait between reconnect attempts (from 1 s, doubling).
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for SmscConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmscConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("system_id", &self.system_id)
            .field("bind", &self.bind)
            .field("binds", &self.binds)
            .field("tps", &self.tps)
            .field("window", &self.window)
            .field("prefixes", &self.prefixes)
            .finish_non_exhaustive()
    }
}

impl SmscConfig {
    /// A transceiver bind with the defaults: one bind, window 10, no TPS cap, every
    /// destination, E.164 numbers (TON 1, NPI 1), enquire_link every 30 s, reconnects
    /// backing off to 30 s.
    pub fn new(name: &str, host: &str, port: u16, system_id: &str, password: &str) -> SmscConfig {
        SmscConfig {
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            system_id: system_id.to_owned(),
            password: password.to_owned(),
            system_type: String::new(),
            bind: BindMode::Transceiver,
            binds: 1,
            tps: None,
            window: 10,
            prefixes: Vec::new(),
            source_ton: 1,
            source_npi: 1,
            dest_ton: 1,
            dest_npi: 1,
            enquire_link: Duration::from_secs(30),
            reconnect_max: Duration::from_secs(30),
        }
    }

    /// The length of the longest prefix of this SMSC that `number` starts with (0 for an SMSC
    /// that takes every number), or `None` if it does not carry it.
    pub fn matches(&self, number: &str) -> Option<usize> {
        if self.prefixes.is_empty() {
            return Some(0);
        }
        self.prefixes.iter().filter(|p| number.starts_with(p.as_str())).map(|p| p.len()).max()
    }

    fn session_config(&self) -> smpp::SessionConfig {
        let mut c = smpp::SessionConfig::new(self.bind, &self.system_id, &self.password);
        c.bind.system_type = self.system_type.clone();
        c.window = self.window;
        c.enquire_link_interval = self.enquire_link;
        // The SMSC-wide cap is shared out between the binds (`check` makes it at least 1 each).
        c.max_tps = self.tps.map(|t| (t / self.binds.max(1) as u32).max(1));
        c
    }

    /// The source address of a message from `from`: an alphanumeric sender id, or a number
    /// with the configured TON/NPI (`+` stripped).
    fn source_address(&self, from: &str) -> Address {
        if from.chars().any(|c| c.is_ascii_alphabetic()) {
            Address::alphanumeric(from)
        } else {
            Address {
                ton: self.source_ton,
                npi: self.source_npi,
                addr: from.trim_start_matches('+').to_owned(),
            }
        }
    }

    fn dest_address(&self, to: &str) -> Address {
        Address { ton: self.dest_ton, npi: self.dest_npi, addr: to.trim_start_matches('+').to_owned() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SmscConfigError {
    #[error("two SMSCs are named {0:?}")]
    DuplicateName(String),
    #[error("an SMSC needs a name")]
    NoName,
    #[error("smsc {0}: host is empty")]
    NoHost(String),
    #[error("smsc {0}: port must be 1-65535")]
    PortZero(String),
    #[error("smsc {0}: system_id is empty")]
    NoSystemId(String),
    #[error("smsc {0}: binds must be at least 1")]
    NoBinds(String),
    #[error("smsc {0}: window must be at least 1")]
    NoWindow(String),
    #[error("smsc {name}: tps {tps} is below the number of binds ({binds}); each bind needs at least 1")]
    TpsBelowBinds { name: String, tps: u32, binds: usize },
    #[error("smsc {0}: a receiver bind cannot send; prefixes are for sending")]
    ReceiverWithPrefixes(String),
}

/// Checks a node's SMSC list once, at start.
pub fn check(smscs: &[SmscConfig]) -> Result<(), SmscConfigError> {
    let mut names = std::collections::HashSet::new();
    for s in smscs {
        let name = s.name.clone();
        if name.trim().is_empty() {
            return Err(SmscConfigError::NoName);
        }
        if !names.insert(s.name.as_str()) {
            return Err(SmscConfigError::DuplicateName(name));
        }
        if s.host.trim().is_empty() {
            return Err(SmscConfigError::NoHost(name));
        }
        if s.port == 0 {
            return Err(SmscConfigError::PortZero(name));
        }
        if s.system_id.is_empty() {
            return Err(SmscConfigError::NoSystemId(name));
        }
        if s.binds == 0 {
            return Err(SmscConfigError::NoBinds(name));
        }
        if s.window == 0 {
            return Err(SmscConfigError::NoWindow(name));
        }
        if let Some(tps) = s.tps {
            if (tps as usize) < s.binds {
                return Err(SmscConfigError::TpsBelowBinds { name, tps, binds: s.binds });
            }
        }
        if s.bind == BindMode::Receiver && !s.prefixes.is_empty() {
            return Err(SmscConfigError::ReceiverWithPrefixes(name));
        }
    }
    Ok(())
}

/// A text to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundSms {
    /// E.164 (`+15550001111`) or an alphanumeric sender id.
    pub from: String,
    /// E.164.
    pub to: String,
    pub text: String,
    /// How long the SMSC may keep trying (sent as a relative validity_period).
    pub validity: Option<Duration>,
}

/// What became of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    /// The SMSC took it; its receipt will name `message_id`.
    Accepted { message_id: String },
    /// The SMSC refused it (see [`PartOutcome::twilio_error`]).
    Rejected { status: CommandStatus },
    /// The SMSC kept answering ESME_RTHROTTLED: not taken, try again later.
    Throttled,
    /// No answer in time, or the connection closed first: the SMSC may have taken it.
    TimedOut,
    /// Never sent: an earlier part failed, or the bind closed before its turn.
    NotSent,
}

impl PartOutcome {
    /// The Twilio error a failed part is reported as (`None` for accepted, or unknown yet).
    pub fn twilio_error(&self) -> Option<smpp::TwilioError> {
        match self {
            PartOutcome::Rejected { status } => status.twilio_error(),
            PartOutcome::Throttled => Some(smpp::TwilioError::QueueOverflow),
            _ => None,
        }
    }
}

/// What [`SmscPool::submit`] did with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Handed to `smsc`; one outcome per part, in order.
    Sent { smsc: String, parts: Vec<PartOutcome> },
    /// No SMSC carries this destination.
    NoRoute,
    /// SMSCs carry it, but none has a sending bind up: try again later.
    NoBindUp,
    /// The text cannot be sent as SMS (over 255 parts).
    Invalid(String),
}

impl SubmitOutcome {
    /// Whether every part was accepted.
    pub fn accepted(&self) -> bool {
        matches!(self, SubmitOutcome::Sent { parts, .. }
            if parts.iter().all(|p| matches!(p, PartOutcome::Accepted { .. })))
    }
}

/// What arrives from SMSCs, for the consumer to store and then acknowledge.
#[derive(Debug)]
pub enum SmsEvent {
    /// A message (a long one once all its parts are in). `from` and `to` are `+`-prefixed
    /// when the SMSC gave them as international numbers.
    Incoming { smsc: String, from: String, to: String, text: String, segments: usize, ack: DeliverAck },
    /// A delivery receipt for a message an SMSC accepted (its `message_id`).
    Receipt { smsc: String, receipt: smpp::Receipt, ack: DeliverAck },
}

/// One deliver_sm to answer: the bind it came on, which connection of that bind, its
/// sequence number.
#[derive(Debug)]
struct AckTarget {
    bind: mpsc::UnboundedSender<bind::Command>,
    conn: u64,
    seq: PeerSeqNo,
}

/// The answer owed for an [`SmsEvent`]: every deliver_sm it came in. Call
/// [`DeliverAck::stored`] once the event is stored, or [`DeliverAck::refuse`]. Dropped
/// without either, it refuses with ESME_RX_T_APPN, so the SMSC delivers it again.
#[derive(Debug)]
pub struct DeliverAck {
    targets: Vec<AckTarget>,
}

impl DeliverAck {
    /// The deliver_sm PDUs this acknowledges (the parts of a long message).
    pub fn parts(&self) -> usize {
        self.targets.len()
    }

    /// Stored: answer every deliver_sm with ESME_ROK.
    pub fn stored(mut self) {
        self.answer(CommandStatus::ESME_ROK);
    }

    /// Not stored: ESME_RX_T_APPN to be given it again later, ESME_RX_P_APPN never.
    pub fn refuse(mut self, status: CommandStatus) {
        self.answer(status);
    }

    fn answer(&mut self, status: CommandStatus) {
        for t in self.targets.drain(..) {
            // A bind that is gone has nobody to answer: its SMSC will deliver again.
            let _ = t.bind.send(bind::Command::Ack { conn: t.conn, seq: t.seq, status });
        }
    }
}

impl Drop for DeliverAck {
    fn drop(&mut self) {
        self.answer(CommandStatus::ESME_RX_T_APPN);
    }
}

/// Counters and bind states of one SMSC, for `/metrics` and the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmscState {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub binds_configured: usize,
    pub binds_up: usize,
    /// submit_sm sent (parts, retries after ESME_RTHROTTLED included).
    pub submitted: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub throttled: u64,
    pub timeouts: u64,
    /// Messages handed to the consumer (a long message counts once).
    pub delivered_in: u64,
    pub receipts_in: u64,
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    throttled: AtomicU64,
    timeouts: AtomicU64,
    delivered_in: AtomicU64,
    receipts_in: AtomicU64,
}

/// What a bind's task and the pool share.
#[derive(Debug, Default)]
struct BindState {
    /// Bound and able to submit now (a transmitter or transceiver).
    up: AtomicBool,
    /// Bound at all (a receiver counts).
    bound: AtomicBool,
    /// Jobs queued or in flight: the pool picks the least loaded bind.
    load: AtomicUsize,
}

struct BindHandle {
    commands: mpsc::UnboundedSender<bind::Command>,
    state: Arc<BindState>,
}

/// One SMSC's runtime: its config, binds, counters and inbox of parts.
struct Smsc {
    config: SmscConfig,
    binds: Vec<BindHandle>,
    counters: Arc<Counters>,
}

/// What the bind tasks of one SMSC share.
struct SmscShared {
    name: String,
    counters: Arc<Counters>,
    inbox: Mutex<inbox::Inbox>,
    events: mpsc::Sender<SmsEvent>,
}

/// Every SMSC connection of the node. Dropping the pool unbinds and stops the tasks.
pub struct SmscPool {
    smscs: Vec<Smsc>,
    /// The 8-bit concatenation reference of the next long message.
    next_reference: AtomicU8,
}

/// A message's parts on their way to a bind, and where its outcome goes.
struct Job {
    parts: Vec<Sm>,
    reply: oneshot::Sender<Vec<PartOutcome>>,
}

impl SmscPool {
    /// Checks the configs and starts one task per bind; events go out on the returned channel
    /// (bounded: [`EVENT_QUEUE`]). Needs a tokio runtime.
    pub fn start(configs: Vec<SmscConfig>) -> Result<(Arc<SmscPool>, mpsc::Receiver<SmsEvent>), SmscConfigError> {
        check(&configs)?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let mut smscs = Vec::new();
        for config in configs {
            let counters = Arc::new(Counters::default());
            let shared = Arc::new(SmscShared {
                name: config.name.clone(),
                counters: counters.clone(),
                inbox: Mutex::new(inbox::Inbox::new(PART_SET_TIMEOUT, MAX_PART_SETS)),
                events: events_tx.clone(),
            });
            let mut binds = Vec::new();
            for index in 0..config.binds {
                let (tx, rx) = mpsc::unbounded_channel();
                let state = Arc::new(BindState::default());
                let task = bind::BindTask::new(config.clone(), index, shared.clone(), state.clone(), tx.clone(), rx);
                tokio::spawn(task.run());
                binds.push(BindHandle { commands: tx, state });
            }
            smscs.push(Smsc { config, binds, counters });
        }
        let pool = SmscPool { smscs, next_reference: AtomicU8::new(rand::random()) };
        Ok((Arc::new(pool), events_rx))
    }

    /// Sends `sms` through the SMSC that carries its destination (longest matching prefix, the
    /// next one if that SMSC has no bind up). All parts go through one bind, in order.
    pub async fn submit(&self, sms: &OutboundSms) -> SubmitOutcome {
        let mut candidates: Vec<(usize, usize)> = self
            .smscs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.config.bind.can_submit())
            .filter_map(|(i, s)| s.config.matches(&sms.to).map(|len| (i, len)))
            .collect();
        if candidates.is_empty() {
            return SubmitOutcome::NoRoute;
        }
        // Longest prefix first; equal ones in configuration order (the sort is stable).
        candidates.sort_by_key(|&(_, len)| std::cmp::Reverse(len));
        for (i, _) in candidates {
            let smsc = &self.smscs[i];
            let Some(bind) = smsc
                .binds
                .iter()
                .filter(|b| b.state.up.load(Ordering::Relaxed))
                .min_by_key(|b| b.state.load.load(Ordering::Relaxed))
            else {
                continue;
            };
            let reference = self.next_reference.fetch_add(1, Ordering::Relaxed);
            let parts = match build_parts(&smsc.config, sms, reference) {
                Ok(parts) => parts,
                Err(e) => return SubmitOutcome::Invalid(e.to_string()),
            };
            let count = parts.len();
            let (reply, outcome) = oneshot::channel();
            bind.state.load.fetch_add(1, Ordering::Relaxed);
            if bind.commands.send(bind::Command::Submit(Job { parts, reply })).is_err() {
                bind.state.load.fetch_sub(1, Ordering::Relaxed);
                continue;
            }
            // The task answers every job it takes; a task gone mid-way sent nothing more.
            let parts = outcome.await.unwrap_or_else(|_| vec![PartOutcome::NotSent; count]);
            return SubmitOutcome::Sent { smsc: smsc.config.name.clone(), parts };
        }
        SubmitOutcome::NoBindUp
    }

    /// Each SMSC's binds and counters.
    pub fn status(&self) -> Vec<SmscState> {
        self.smscs
            .iter()
            .map(|s| {
                let c = &s.counters;
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                SmscState {
                    name: s.config.name.clone(),
                    host: s.config.host.clone(),
                    port: s.config.port,
                    binds_configured: s.binds.len(),
                    binds_up: s.binds.iter().filter(|b| b.state.bound.load(Ordering::Relaxed)).count(),
                    submitted: get(&c.submitted),
                    accepted: get(&c.accepted),
                    rejected: get(&c.rejected),
                    throttled: get(&c.throttled),
                    timeouts: get(&c.timeouts),
                    delivered_in: get(&c.delivered_in),
                    receipts_in: get(&c.receipts_in),
                }
            })
            .collect()
    }

    /// Prometheus text lines for `/metrics`.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let states = self.status();
        let series: [Series; 9] = [
            ("dialtone_smsc_binds_up", "gauge", "SMPP binds up.", |s| s.binds_up as u64),
            ("dialtone_smsc_binds_configured", "gauge", "SMPP binds configured.", |s| s.binds_configured as u64),
            ("dialtone_smsc_submitted_total", "counter", "submit_sm sent.", |s| s.submitted),
            ("dialtone_smsc_accepted_total", "counter", "submit_sm accepted.", |s| s.accepted),
            ("dialtone_smsc_rejected_total", "counter", "submit_sm refused.", |s| s.rejected),
            ("dialtone_smsc_throttled_total", "counter", "submit_sm answered ESME_RTHROTTLED.", |s| s.throttled),
            ("dialtone_smsc_timeouts_total", "counter", "submit_sm unanswered or aborted.", |s| s.timeouts),
            ("dialtone_smsc_delivered_in_total", "counter", "Incoming messages handed over.", |s| s.delivered_in),
            ("dialtone_smsc_receipts_in_total", "counter", "Delivery receipts handed over.", |s| s.receipts_in),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &states {
                let _ = writeln!(out, "{name}{{smsc=\"{}\"}} {}", label(&s.name), value(s));
            }
        }
    }
}

impl Drop for SmscPool {
    fn drop(&mut self) {
        for s in &self.smscs {
            for b in &s.binds {
                let _ = b.commands.send(bind::Command::Stop);
            }
        }
    }
}

/// A metric's name, type, help text, and its value for an SMSC.
type Series = (&'static str, &'static str, &'static str, fn(&SmscState) -> u64);

/// A Prometheus label value: `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The submit_sm of each part of `sms` for `smsc`: addresses with the SMSC's TON/NPI, a
/// receipt asked for, the validity as a relative time.
pub fn build_parts(smsc: &SmscConfig, sms: &OutboundSms, reference: u8) -> Result<Vec<Sm>, smpp::segment::SplitError> {
    let options = smpp::SplitOptions::new(smpp::Concat::Udh8 { reference });
    let parts = smpp::split(&sms.text, &options)?;
    let base = Sm {
        source: smsc.source_address(&sms.from),
        destination: smsc.dest_address(&sms.to),
        registered_delivery: smpp::pdu::REGISTERED_DELIVERY_RECEIPT,
        validity_period: sms.validity.map(relative_validity).unwrap_or_default(),
        ..Sm::default()
    };
    Ok(parts.iter().map(|p| p.to_sm(&base)).collect())
}

/// SMPP's relative time format (§7.1.1): `YYMMDDhhmmss000R`, here in days, hours, minutes
/// and seconds (at most 99 days).
pub fn relative_validity(d: Duration) -> String {
    let secs = d.as_secs().min(99 * 86_400 + 86_399);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    format!("0000{days:02}{:02}{:02}{:02}000R", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// An address as the API shows it: `+` before an international number.
fn display_address(a: &Address) -> String {
    if a.ton == 1 && !a.addr.starts_with('+') && !a.addr.is_empty() {
        format!("+{}", a.addr)
    } else {
        a.addr.clone()
    }
}
