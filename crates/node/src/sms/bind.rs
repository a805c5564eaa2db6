//! One bind's task: connect, drive an `smpp::Session` until it closes, reconnect with
//! back-off; queue the pool's jobs for the session and answer deliveries when the consumer
//! says so.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smpp::{Backoff, CommandStatus, Event, Output, PeerSeqNo, SeqNo, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::inbox::Delivered;
use super::{display_address, AckTarget, BindState, DeliverAck, Job, PartOutcome, SmsEvent, SmscConfig, SmscShared};

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first reconnect delay (doubling up to `reconnect_max`).
const RECONNECT_INITIAL: Duration = Duration::from_secs(1);

pub(super) enum Command {
    Submit(Job),
    /// Answer a deliver_sm of connection `conn` (ignored if that connection is gone).
    Ack { conn: u64, seq: PeerSeqNo, status: CommandStatus },
    /// Unbind and end the task (the pool was dropped).
    Stop,
}

/// A job the session is working on: the part `next` is queued or in flight.
struct Active {
    job: Job,
    next: usize,
    results: Vec<PartOutcome>,
    throttle_retries: u32,
}

impl Active {
    /// Answers the pool: parts not reached are [`PartOutcome::NotSent`].
    fn finish(mut self) {
        self.results.resize(self.job.parts.len(), PartOutcome::NotSent);
        let _ = self.job.reply.send(self.results);
    }
}

pub(super) struct BindTask {
    config: SmscConfig,
    index: usize,
    smsc: Arc<SmscShared>,
    state: Arc<BindState>,
    /// Given to each [`DeliverAck`] so the consumer's answer finds its way back.
    self_tx: mpsc::UnboundedSender<Command>,
    commands: mpsc::UnboundedReceiver<Command>,
    /// Jobs waiting for the session to take their next part, in order.
    queue: VecDeque<Active>,
    /// Jobs whose current part awaits the SMSC's answer.
    in_flight: HashMap<SeqNo, Active>,
    /// Counts connections, so an answer for a closed one is not given to the next.
    conn: u64,
    stopping: bool,
}

/// Why a connection ended.
enum Ended {
    /// Closed after a successful bind: reconnect from the first delay.
    AfterBind,
    /// Never bound (refused, timed out, connection lost).
    BeforeBind,
    Stopped,
}

impl BindTask {
    pub fn new(
        config: SmscConfig,
        index: usize,
        smsc: Arc<SmscShared>,
        state: Arc<BindState>,
        self_tx: mpsc::UnboundedSender<Command>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> BindTask {
        BindTask {
            config,
            index,
            smsc,
            state,
            self_tx,
            commands,
            queue: VecDeque::new(),
            in_flight: HashMap::new(),
            conn: 0,
            stopping: false,
        }
    }

    pub async fn run(mut self) {
        let mut backoff = Backoff::new(RECONNECT_INITIAL, self.config.reconnect_max);
        while !self.stopping {
            let addr = (self.config.host.clone(), self.config.port);
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await;
            let ended = match connected {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    self.conn += 1;
                    self.connection(stream).await
                }
                Ok(Err(e)) => {
                    tracing::warn!(smsc = %self.config.name, bind = self.index, error = %e, "SMSC connect failed");
                    Ended::BeforeBind
                }
                Err(_) => {
                    tracing::warn!(smsc = %self.config.name, bind = self.index, "SMSC connect timed out");
                    Ended::BeforeBind
                }
            };
            self.down();
            match ended {
                Ended::Stopped => break,
                Ended::AfterBind => backoff.reset(),
                Ended::BeforeBind => {}
            }
            let delay = backoff.next_delay();
            if self.wait(delay).await {
                break;
            }
        }
    }

    /// Sleeps `delay` while answering commands (no bind is up: jobs come back unsent).
    /// True when told to stop.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = tokio::time::Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return false,
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Submit(job)) => self.unsent(job),
                    Some(Command::Ack { .. }) => {}
                    Some(Command::Stop) | None => return true,
                },
            }
        }
    }

    fn unsent(&self, job: Job) {
        self.state.load.fetch_sub(1, Ordering::Relaxed);
        Active { job, next: 0, results: Vec::new(), throttle_retries: 0 }.finish();
    }

    /// Marks the bind down and answers every job it held.
    fn down(&mut self) {
        self.state.up.store(false, Ordering::Relaxed);
        self.state.bound.store(false, Ordering::Relaxed);
        // In-flight jobs were answered by SubmitAborted; queued ones never reached the SMSC.
        for active in self.queue.drain(..).chain(self.in_flight.drain().map(|(_, a)| a)) {
            self.state.load.fetch_sub(1, Ordering::Relaxed);
            active.finish();
        }
    }

    async fn connection(&mut self, stream: TcpStream) -> Ended {
        let (mut reader, mut writer) = stream.into_split();
        let mut session = match Session::new(Instant::now(), self.config.session_config()) {
            Ok(s) => s,
            Err(e) => {
                // The bind fields are checked at start; an over-long system_id ends here.
                tracing::error!(smsc = %self.config.name, error = %e, "cannot encode the bind");
                self.stopping = true;
                return Ended::Stopped;
            }
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut bound = false;
        loop {
            // Hand queued parts to the session while it takes them, then carry its outputs.
            let now = Instant::now();
            while !self.queue.is_empty() && session.can_submit(now) {
                self.submit_next(&mut session, now);
            }
            let mut closed = false;
            // What the session has to send goes out in one write.
            let mut pending = Vec::new();
            loop {
                let out = match session.poll_output() {
                    Some(out) => out,
                    None if pending.is_empty() => break,
                    None => {
                        if let Err(e) = writer.write_all(&pending).await {
                            tracing::warn!(smsc = %self.config.name, bind = self.index, error = %e, "SMSC write failed");
                            session.handle_disconnect();
                        }
                        pending.clear();
                        continue;
                    }
                };
                match out {
                    Output::Transmit(bytes) => pending.extend_from_slice(&bytes),
                    Output::Event(Event::Bound { smsc_system_id, .. }) => {
                        bound = true;
                        tracing::info!(smsc = %self.config.name, bind = self.index, %smsc_system_id, "SMSC bound");
                        self.state.bound.store(true, Ordering::Relaxed);
                        self.state.up.store(self.config.bind.can_submit(), Ordering::Relaxed);
                    }
                    Output::Event(Event::Closed { reason }) => {
                        tracing::warn!(smsc = %self.config.name, bind = self.index, ?reason, "SMSC connection closed");
                        closed = true;
                    }
                    Output::Event(e) => self.handle_event(e),
                }
            }
            if closed {
                return if self.stopping {
                    Ended::Stopped
                } else if bound {
                    Ended::AfterBind
                } else {
                    Ended::BeforeBind
                };
            }
            if !self.queue.is_empty() && session.can_submit(Instant::now()) {
                continue;
            }
            let wake = [
                session.poll_timeout(),
                // Throttled or rate-capped with work waiting: wake when sending may resume.
                (!self.queue.is_empty()).then(|| session.submit_ready_at(now)).flatten(),
                self.smsc.inbox.lock().unwrap_or_else(|e| e.into_inner()).poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = reader.read(&mut buf) => match read {
                    Ok(0) | Err(_) => session.handle_disconnect(),
                    Ok(n) => session.handle_bytes(Instant::now(), &buf[..n]),
                },
                cmd = self.commands.recv() => {
                    self.command(&mut session, cmd);
                    // Take what else waits, so its output leaves in one write.
                    while let Ok(cmd) = self.commands.try_recv() {
                        self.command(&mut session, Some(cmd));
                    }
                }
                () = sleep => {
                    let now = Instant::now();
                    session.handle_timeout(now);
                    let expired = self.smsc.inbox.lock().unwrap_or_else(|e| e.into_inner()).handle_timeout(now);
                    refuse(expired);
                }
            }
        }
    }

    fn command(&mut self, session: &mut Session, cmd: Option<Command>) {
        match cmd {
            Some(Command::Submit(job)) => {
                self.queue.push_back(Active { job, next: 0, results: Vec::new(), throttle_retries: 0 });
            }
            Some(Command::Ack { conn, seq, status }) => {
                if conn == self.conn {
                    // Unknown: the session closed, or answered it already.
                    let _ = session.ack_deliver(seq, status);
                }
            }
            Some(Command::Stop) | None => {
                if !self.stopping {
                    self.stopping = true;
                    session.unbind(Instant::now());
                }
            }
        }
    }

    fn submit_next(&mut self, session: &mut Session, now: Instant) {
        let Some(active) = self.queue.pop_front() else { return };
        let sm = active.job.parts[active.next].clone();
        match session.submit(now, sm) {
            Ok(seq) => {
                self.smsc.counters.submitted.fetch_add(1, Ordering::Relaxed);
                self.in_flight.insert(seq, active);
            }
            Err(smpp::SubmitError::Encode(e)) => {
                // A field over its SMPP limit (an address too long): the SMSC could not take it.
                tracing::warn!(smsc = %self.config.name, error = %e, "cannot encode submit_sm");
                let mut active = active;
                active.results.push(PartOutcome::Rejected { status: e.command_status() });
                self.done(active);
            }
            // `can_submit` said yes; a refusal now waits for the next turn.
            Err(_) => self.queue.push_front(active),
        }
    }

    fn handle_event(&mut self, event: Event) {
        let counters = &self.smsc.counters;
        match event {
            Event::SubmitResponse { seq, result } => {
                let Some(mut active) = self.in_flight.remove(&seq) else { return };
                match result {
                    Ok(message_id) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                        active.results.push(PartOutcome::Accepted { message_id });
                        active.next += 1;
                        active.throttle_retries = 0;
                        if active.next < active.job.parts.len() {
                            // The rest of a started message goes before new ones.
                            self.queue.push_front(active);
                        } else {
                            self.done(active);
                        }
                    }
                    Err(status) => {
                        counters.rejected.fetch_add(1, Ordering::Relaxed);
                        active.results.push(PartOutcome::Rejected { status });
                        self.done(active);
                    }
                }
            }
            Event::Throttled { seq, .. } => {
                counters.throttled.fetch_add(1, Ordering::Relaxed);
                let Some(mut active) = self.in_flight.remove(&seq) else { return };
                active.throttle_retries += 1;
                if active.throttle_retries > super::MAX_THROTTLE_RETRIES {
                    active.results.push(PartOutcome::Throttled);
                    self.done(active);
                } else {
                    // The session pauses sending until the SMSC's back-off is over.
                    self.queue.push_front(active);
                }
            }
            Event::SubmitTimeout { seq } | Event::SubmitAborted { seq } => {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
                let Some(mut active) = self.in_flight.remove(&seq) else { return };
                active.results.push(PartOutcome::TimedOut);
                self.done(active);
            }
            Event::Deliver { seq, sm } => {
                let target = self.target(seq);
                let delivered = self
                    .smsc
                    .inbox
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .handle_deliver(Instant::now(), &sm, target);
                match delivered {
                    Delivered::Held => {}
                    Delivered::Refuse(target) => refuse(vec![target]),
                    Delivered::Message { from, to, text, segments, targets } => {
                        let event = SmsEvent::Incoming {
                            smsc: self.smsc.name.clone(),
                            from: display_address(&from),
                            to: display_address(&to),
                            text,
                            segments,
                            ack: DeliverAck { targets },
                        };
                        if self.hand_over(event) {
                            counters.delivered_in.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Event::Receipt { seq, receipt, .. } => {
                let event = SmsEvent::Receipt {
                    smsc: self.smsc.name.clone(),
                    receipt,
                    ack: DeliverAck { targets: vec![self.target(seq)] },
                };
                if self.hand_over(event) {
                    counters.receipts_in.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
    }

    /// Gives the consumer an event, or refuses it (dropping its ack) when the queue is full.
    fn hand_over(&self, event: SmsEvent) -> bool {
        match self.smsc.events.try_send(event) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(smsc = %self.config.name, "SMS consumer behind or gone: delivery refused for later");
                // Dropping the event's DeliverAck answers ESME_RX_T_APPN.
                drop(e.into_inner());
                false
            }
        }
    }

    fn target(&self, seq: PeerSeqNo) -> AckTarget {
        AckTarget { bind: self.self_tx.clone(), conn: self.conn, seq }
    }

    fn done(&self, active: Active) {
        self.state.load.fetch_sub(1, Ordering::Relaxed);
        active.finish();
    }
}

fn refuse(targets: Vec<AckTarget>) {
    if !targets.is_empty() {
        DeliverAck { targets }.refuse(CommandStatus::ESME_RX_T_APPN);
    }
}
