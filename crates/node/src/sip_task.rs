//! The SIP task: drives the sans-IO `sip::transaction::Endpoint` over the transports and acts as
//! the UA core, routing each event to the call it belongs to.
//!
//! One task owns the endpoint, so transactions need no locks. It reads datagrams and framed TCP
//! messages, hands them in with the time, drains the outputs, and sleeps until the endpoint's next
//! timeout. Calls live in their own tasks (`call.rs`) and talk to this one through `SipCommand`s;
//! new calls, registrations and the inbound ACL are handed up through [`Upcalls`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use sip::dialog::DialogId;
use sip::transaction::{ClientTxId, Endpoint, EndpointConfig, Event, Input, Output, ServerTxId};
use sip::{Method, Request, Response, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::signals::{CallSignal, NewCall};
pub use crate::signals::{SipCommand, ALLOW};
use crate::transport::{StreamEvent, Transports};
use crate::Shared;

struct Route {
    signals: mpsc::UnboundedSender<CallSignal>,
}

pub struct SipTask {
    endpoint: Endpoint,
    transports: Transports,
    stream_events: mpsc::UnboundedReceiver<StreamEvent>,
    commands: mpsc::UnboundedReceiver<SipCommand>,
    command_tx: mpsc::UnboundedSender<SipCommand>,
    dialogs: HashMap<DialogId, Route>,
    invites: HashMap<ServerTxId, Route>,
    client_txs: HashMap<ClientTxId, mpsc::UnboundedSender<CallSignal>>,
    /// INVITEs we sent, by Call-ID: their responses (2xx retransmissions included) keep going
    /// to the call until it ends, and a 2xx opens the dialog route.
    outgoing: HashMap<String, ClientTxId>,
    outgoing_txs: HashMap<ClientTxId, String>,
    shared: Arc<Shared>,
    rng: rand::rngs::SmallRng,
    upcalls: Upcalls,
}

/// What the SIP task hands up to the layers above it. It routes messages and answers what
/// needs no decision; what a call, a registration or a trunk's ACL is, it does not know (so it
/// imports none of them): the node's wiring fills these in.
#[derive(Clone, Copy)]
pub struct Upcalls {
    /// A new INVITE that may come in: start its call.
    pub new_call: fn(Arc<Shared>, mpsc::UnboundedSender<SipCommand>, NewCall),
    /// An out-of-dialog REGISTER.
    pub register: fn(&Arc<Shared>, ServerTxId, Request, SocketAddr, Transport),
    /// Whether an INVITE from this source is let in (the trunks' inbound ACL).
    pub inbound_allowed: fn(&Shared, SocketAddr) -> bool,
}

impl SipTask {
    pub fn new(
        transports: Transports,
        stream_events: mpsc::UnboundedReceiver<StreamEvent>,
        commands: mpsc::UnboundedReceiver<SipCommand>,
        command_tx: mpsc::UnboundedSender<SipCommand>,
        shared: Arc<Shared>,
        upcalls: Upcalls,
    ) -> SipTask {
        let sent_by = format!(
            "{}:{}",
            shared.config.advertise_ip_for_uri(),
            transports.local.port()
        );
        let config = EndpointConfig {
            user_agent: format!("Dialtone/{}", env!("CARGO_PKG_VERSION")),
            via_sent_by_udp: sent_by.clone(),
            via_sent_by_tcp: sent_by,
            via_sent_by_ws: format!(
                "{}:{}",
                shared.config.advertise_ip_for_uri(),
                shared.config.http_addr.port()
            ),
            ..EndpointConfig::default()
        };
        let seed = rand::thread_rng().gen();
        SipTask {
            endpoint: Endpoint::new(config, seed),
            transports,
            stream_events,
            commands,
            command_tx,
            dialogs: HashMap::new(),
            invites: HashMap::new(),
            client_txs: HashMap::new(),
            outgoing: HashMap::new(),
            outgoing_txs: HashMap::new(),
            upcalls,
            shared,
            rng: rand::rngs::SmallRng::seed_from_u64(seed ^ 0x5eed),
        }
    }

    pub async fn run(mut self) {
        let udp = self.transports.udp.clone();
        let mut buf = vec![0u8; 65_536];
        loop {
            self.drain();
            let deadline = self.endpoint.poll_timeout().map(Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(cmd) = self.commands.recv() => {
                    self.handle_command(cmd);
                    while let Ok(cmd) = self.commands.try_recv() {
                        self.handle_command(cmd);
                    }
                }
                r = udp.recv_from(&mut buf) => {
                    match r {
                        Ok((n, source)) => self.handle_datagram(source, Transport::Udp, n, &buf),
                        Err(e) => tracing::debug!(error = %e, "SIP UDP receive failed"),
                    }
                    // Drain what else is queued before going round the select again.
                    for _ in 0..64 {
                        match udp.try_recv_from(&mut buf) {
                            Ok((n, source)) => self.handle_datagram(source, Transport::Udp, n, &buf),
                            Err(_) => break,
                        }
                    }
                }
                Some(ev) = self.stream_events.recv() => match ev {
                    StreamEvent::Message { transport, peer, bytes } => {
                        self.handle_datagram(peer, transport, bytes.len(), &bytes);
                    }
                    StreamEvent::Opened { transport, peer, writer } => self.transports.handle_opened(transport, peer, writer),
                    StreamEvent::Closed { transport, peer } => self.transports.handle_closed(transport, peer),
                },
                () = sleep => self.endpoint.handle_timeout(std::time::Instant::now()),
            }
        }
    }

    fn handle_datagram(&mut self, source: SocketAddr, transport: Transport, n: usize, buf: &[u8]) {
        let bytes = &buf[..n];
        // Keep-alives (CRLF pings) carry no message.
        if bytes.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return;
        }
        self.endpoint.handle_input(
            std::time::Instant::now(),
            Input::Datagram {
                source,
                transport,
                bytes,
            },
        );
    }

    fn drain(&mut self) {
        while let Some(out) = self.endpoint.poll_output() {
            match out {
                Output::Transmit(t) => self.transports.send(t),
                Output::Event(ev) => self.handle_event(ev),
            }
        }
    }

    fn handle_command(&mut self, cmd: SipCommand) {
        let now = std::time::Instant::now();
        match cmd {
            SipCommand::Respond { tx, response } => {
                // False when the transaction already ended (a late answer after CANCEL): nothing to do.
                let _ = self.endpoint.send_response(now, tx, response);
            }
            SipCommand::Request {
                request,
                destination,
                transport,
                reply,
            } => {
                let invite_call_id = (request.method == Method::Invite)
                    .then(|| request.call_id().map(str::to_owned))
                    .flatten();
                let tx = self
                    .endpoint
                    .send_request(now, request, destination, transport);
                if let Some(reply) = reply {
                    self.client_txs.insert(tx, reply);
                    if let Some(call_id) = invite_call_id {
                        self.outgoing.insert(call_id.clone(), tx);
                        self.outgoing_txs.insert(tx, call_id);
                    }
                }
            }
            SipCommand::Cancel { call_id } => {
                if let Some(&tx) = self.outgoing.get(&call_id) {
                    // None once the INVITE has its final response: the caller sees that response.
                    let _ = self.endpoint.send_cancel(now, tx);
                }
            }
            SipCommand::OutboundEnded { call_id } => {
                if let Some(tx) = self.outgoing.remove(&call_id) {
                    self.outgoing_txs.remove(&tx);
                    self.client_txs.remove(&tx);
                }
                self.dialogs.retain(|id, _| id.call_id != call_id);
            }
            SipCommand::Stateless {
                message,
                destination,
                transport,
            } => self
                .endpoint
                .send_stateless(now, message, destination, transport),
            SipCommand::Ended { dialog, invite_tx } => {
                self.dialogs.remove(&dialog);
                self.invites.remove(&invite_tx);
            }
        }
    }

    fn respond(&mut self, tx: ServerTxId, request: &Request, status: u16, reason: &str) {
        let mut response = Response::from_request(request, status, reason);
        if matches!(status, 405 | 200) {
            response.headers.push("Allow", ALLOW);
        }
        if status == 200 && request.method == Method::Options {
            response.headers.push("Accept", "application/sdp");
        }
        self.endpoint
            .send_response(std::time::Instant::now(), tx, response);
    }

    fn handle_event(&mut self, ev: Event) {
        match ev {
            Event::Request {
                tx,
                request,
                source,
                transport,
            } => self.handle_request(tx, request, source, transport),
            Event::Ack { request, .. } => {
                if let Some(route) =
                    DialogId::for_incoming(&request).and_then(|id| self.dialogs.get(&id))
                {
                    let _ = route.signals.send(CallSignal::Ack { request });
                }
            }
            Event::Cancel { invite_tx, .. } => {
                if let Some(route) = self.invites.get(&invite_tx) {
                    let _ = route.signals.send(CallSignal::Cancel);
                }
            }
            Event::AckTimeout { tx } => {
                if let Some(route) = self.invites.get(&tx) {
                    let _ = route.signals.send(CallSignal::AckTimeout);
                }
            }
            Event::Response { tx, response } if self.outgoing_txs.contains_key(&tx) => {
                let Some(reply) = self.client_txs.get(&tx).cloned() else {
                    return;
                };
                if (200..300).contains(&response.status()) {
                    let local_tag = response.from().and_then(|f| f.tag().map(str::to_owned));
                    let remote_tag = response.to().and_then(|t| t.tag().map(str::to_owned));
                    if let (Some(call_id), Some(local_tag), Some(remote_tag)) =
                        (response.call_id().map(str::to_owned), local_tag, remote_tag)
                    {
                        let id = DialogId {
                            call_id,
                            local_tag,
                            remote_tag,
                        };
                        self.dialogs.entry(id).or_insert_with(|| Route {
                            signals: reply.clone(),
                        });
                    }
                }
                let _ = reply.send(CallSignal::Response { response });
            }
            Event::Response { tx, response } => {
                let last = response.status() >= 200;
                if let Some(reply) = if last {
                    self.client_txs.remove(&tx)
                } else {
                    self.client_txs.get(&tx).cloned()
                } {
                    let _ = reply.send(CallSignal::Response { response });
                }
            }
            Event::Timeout { tx } => {
                if let Some(call_id) = self.outgoing_txs.remove(&tx) {
                    self.outgoing.remove(&call_id);
                }
                if let Some(reply) = self.client_txs.remove(&tx) {
                    let _ = reply.send(CallSignal::RequestTimeout);
                }
            }
            other => tracing::debug!(event = ?other, "SIP event ignored"),
        }
    }

    fn handle_request(
        &mut self,
        tx: ServerTxId,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        // RFC 3261 §8.2.2.1: a scheme the UAS does not serve is refused before anything else.
        if !request.has_supported_uri_scheme() {
            tracing::info!(uri = %request.uri, method = %request.method, %source, "request refused: unsupported URI scheme");
            self.respond(tx, &request, 416, "Unsupported URI Scheme");
            return;
        }
        let in_dialog = request.to().is_some_and(|to| to.tag().is_some());
        if in_dialog {
            let route = DialogId::for_incoming(&request).and_then(|id| self.dialogs.get(&id));
            match (route, &request.method) {
                (Some(route), Method::Bye | Method::Invite | Method::Info) => {
                    let _ = route.signals.send(CallSignal::Request { tx, request });
                }
                (Some(_), Method::Options) => self.respond(tx, &request, 200, "OK"),
                (Some(_), Method::Extension(_)) => {
                    self.respond(tx, &request, 501, "Not Implemented")
                }
                (Some(_), _) => self.respond(tx, &request, 405, "Method Not Allowed"),
                (None, _) => self.respond(tx, &request, 481, "Call/Transaction Does Not Exist"),
            }
            return;
        }
        match request.method {
            Method::Invite => self.handle_new_invite(tx, request, source, transport),
            Method::Register => {
                (self.upcalls.register)(&self.shared, tx, request, source, transport)
            }
            Method::Options => self.respond(tx, &request, 200, "OK"),
            Method::Bye | Method::Info => {
                self.respond(tx, &request, 481, "Call/Transaction Does Not Exist")
            }
            Method::Extension(_) => self.respond(tx, &request, 501, "Not Implemented"),
            _ => self.respond(tx, &request, 405, "Method Not Allowed"),
        }
    }

    fn handle_new_invite(
        &mut self,
        tx: ServerTxId,
        request: Request,
        source: SocketAddr,
        transport: Transport,
    ) {
        if !(self.upcalls.inbound_allowed)(&self.shared, source)
            && !self
                .shared
                .registrar
                .has_binding_from(std::time::Instant::now(), source.ip())
        {
            tracing::info!(%source, "INVITE from outside the trunks' inbound ACL refused");
            self.respond(tx, &request, 403, "Forbidden");
            return;
        }
        // Past capacity: 503 at once, before any per-call work (crate::overload).
        let calls = u64::try_from(self.shared.metrics.active_calls.load(Ordering::Relaxed)).unwrap_or(0);
        if let crate::overload::Verdict::Refuse(_) = self.shared.overload.admit(calls) {
            let mut response = Response::from_request(&request, 503, "Service Unavailable");
            response.headers.push("Retry-After", &self.shared.overload.capacity.retry_after_s.to_string());
            self.endpoint.send_response(std::time::Instant::now(), tx, response);
            return;
        }
        let local_tag = format!("{:016x}", self.rng.gen::<u64>());
        let Some(call_id) = request.call_id().map(str::to_owned) else {
            self.respond(tx, &request, 400, "Missing Call-ID");
            return;
        };
        let Some(remote_tag) = request.from().and_then(|f| f.tag().map(str::to_owned)) else {
            self.respond(tx, &request, 400, "Missing From tag");
            return;
        };
        let dialog = DialogId {
            call_id,
            local_tag: local_tag.clone(),
            remote_tag,
        };
        let (signals, signal_rx) = mpsc::unbounded_channel();
        self.dialogs.insert(
            dialog.clone(),
            Route {
                signals: signals.clone(),
            },
        );
        self.invites.insert(
            tx,
            Route {
                signals: signals.clone(),
            },
        );
        let new = NewCall {
            tx,
            request,
            source,
            transport,
            local_tag,
            dialog,
            signals: signal_rx,
            self_signals: signals,
        };
        // Counted here, not in the call's task, so that a burst of INVITEs sees each call it
        // admitted before the next is decided; the task counts it down when it ends.
        self.shared.metrics.active_calls.fetch_add(1, Ordering::Relaxed);
        (self.upcalls.new_call)(self.shared.clone(), self.command_tx.clone(), new);
    }
}
