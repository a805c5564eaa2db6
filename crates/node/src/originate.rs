//! Outbound legs: [`originate`] places one UAC leg (for API-created calls and for `<Dial>`
//! legs): it picks the route (the trunk whose prefix matches a phone number, the host of a `sip:`
//! URI, or a contact given directly), checks the destination against the toll-fraud policy,
//! waits for the trunk's calls-per-second slot, sends the INVITE, answers 401/407 with the
//! trunk's credentials, fails over to the trunk's next gateway on 5xx, 408 or silence, and
//! reports [`LegEvent`]s until the far end answers or the leg fails.
//!
//! Until the answer the leg task owns the INVITE client transaction's view: 180/183 is
//! `Ringing`, a 2xx is ACKed and its SDP answer negotiated, 486/600 is `busy`, 408/480/487 (and
//! no final response) `no-answer`, any other final error `failed`. The leg's `timeout` without
//! an answer, or a cancel, sends CANCEL. Once answered, the [`Leg`] belongs to whoever holds it;
//! the leg task forgets the SIP routes when that `Leg` is dropped.
//!
//! Below the calls: it knows legs, trunks and the registrar's contacts, never a call task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use api::HookError;
use model::{AccountSid, CallSid, CallStatus};
use rand::Rng;
use sip::dialog::Dialog;
use sip::sdp::{Negotiated, SessionDescription};
use sip::{Method, Request, Response, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::media::webrtc::{WebRtcMedia, WebRtcSession};
use crate::signals::{CallSignal, Leg};
use crate::signals::{SipCommand, ALLOW};
use crate::trunk::SipUri;
pub use crate::trunk::{Trunk, TrunkError};
use crate::{fraud, Shared};

/// How long to wait for the final response to a CANCELled INVITE before giving up on it.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Where a leg goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegTarget {
    /// A phone number (through the first trunk whose prefix matches) or a `sip:` URI (to its
    /// host, directly).
    Address(String),
    /// A known contact (a registered user's binding): the Request-URI and where to send it.
    Direct {
        uri: String,
        destination: SocketAddr,
        transport: Transport,
    },
}

impl From<String> for LegTarget {
    fn from(to: String) -> LegTarget {
        LegTarget::Address(to)
    }
}

impl From<&str> for LegTarget {
    fn from(to: &str) -> LegTarget {
        LegTarget::Address(to.to_owned())
    }
}

impl From<crate::registrar::ContactTarget> for LegTarget {
    fn from(c: crate::registrar::ContactTarget) -> LegTarget {
        LegTarget::Direct {
            uri: c.uri,
            destination: c.destination,
            transport: c.transport,
        }
    }
}

/// One leg to place.
#[derive(Debug, Clone)]
pub struct LegRequest {
    pub account_sid: AccountSid,
    pub call_sid: CallSid,
    pub to: LegTarget,
    /// The caller ID: a number (From `sip:NUMBER@our-address`) or a `sip:` URI.
    pub from: String,
    /// How long to let it ring before CANCEL (`no-answer`).
    pub timeout: Duration,
    /// The RTP port our SDP offer names.
    pub local_port: u16,
    /// Extra headers for the INVITE (a browser's `X-Dialtone-*` call parameters).
    pub headers: Vec<(String, String)>,
    /// The trunk's calls-per-second slot, when the caller reserved it already (an API-created
    /// call reserves it as it is created, so calls leave in the order they were made); `None`:
    /// the leg reserves one when its route is known.
    pub trunk_slot: Option<std::time::Instant>,
}

/// What happens to a leg, in order: maybe `Ringing`, then one `Answered` or `Failed`.
// One `Answered` per leg at most: boxing the leg would cost an allocation and change nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum LegEvent {
    Ringing,
    /// ACKed; the leg's dialog, signals and the negotiated media now belong to the receiver.
    Answered {
        leg: Leg,
        negotiated: Negotiated,
        /// A browser leg: the session to hand to the leg's stream (`Stream::set_webrtc`).
        webrtc: Option<Box<(WebRtcSession, WebRtcMedia)>>,
    },
    /// `Busy`, `NoAnswer`, `Failed` or `Canceled`, with the final SIP status when there was one.
    Failed {
        status: CallStatus,
        sip_status: Option<u16>,
    },
}

/// A leg being placed. Dropping it cancels the leg unless it was answered.
pub(crate) struct LegHandle {
    pub events: mpsc::UnboundedReceiver<LegEvent>,
    cancel: mpsc::UnboundedSender<()>,
}

impl LegHandle {
    /// CANCELs the leg if it is not answered yet; it then ends with `Failed { Canceled }`.
    pub fn cancel(&self) {
        let _ = self.cancel.send(());
    }
}

/// Places one leg in the background and returns its event stream at once.
pub(crate) fn originate(shared: Arc<Shared>, leg: LegRequest) -> LegHandle {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (cancel, cancel_rx) = mpsc::unbounded_channel();
    let local_tag = format!("{:016x}", rand::thread_rng().gen::<u64>());
    let task = LegTask {
        shared,
        req: leg,
        events: events_tx,
        cancel: cancel_rx,
        cancel_open: true,
        local_tag,
        ringing: false,
        webrtc: std::sync::Mutex::new(None),
    };
    tokio::spawn(task.run());
    LegHandle { events, cancel }
}

/// Where one INVITE goes.
#[derive(Debug, Clone)]
struct Attempt {
    request_uri: String,
    destination: SocketAddr,
    transport: Transport,
}

/// Every INVITE to try, in order, and the trunk they belong to.
pub(crate) struct Route {
    attempts: Vec<Attempt>,
    trunk: Option<Trunk>,
}

impl Route {
    /// Reserves the route's trunk slot at `earliest` or later (`None`: no trunk, no pace).
    pub(crate) fn reserve_trunk_slot(&self, earliest: std::time::Instant) -> Option<std::time::Instant> {
        self.trunk.as_ref().map(|t| t.reserve_slot(earliest))
    }
}

pub(crate) fn rejected(code: u32, message: impl Into<String>) -> HookError {
    HookError::Rejected {
        code,
        message: message.into(),
    }
}

pub(crate) async fn route(shared: &Shared, to: &LegTarget) -> Result<Route, HookError> {
    let to = match to {
        LegTarget::Direct {
            uri,
            destination,
            transport,
        } => {
            let attempt = Attempt {
                request_uri: uri.clone(),
                destination: *destination,
                transport: *transport,
            };
            return Ok(Route {
                attempts: vec![attempt],
                trunk: None,
            });
        }
        LegTarget::Address(to) => to,
    };
    if to.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:")) {
        let uri = SipUri::parse(to)
            .ok_or_else(|| rejected(21211, format!("Invalid 'To' SIP URI: {to}")))?;
        let destination = match uri.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, uri.port),
            Err(_) => tokio::net::lookup_host((uri.host.as_str(), uri.port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| rejected(21211, format!("Cannot resolve the host of {to}")))?,
        };
        let attempt = Attempt {
            request_uri: to.to_owned(),
            destination,
            transport: uri.transport,
        };
        return Ok(Route {
            attempts: vec![attempt],
            trunk: None,
        });
    }
    if to.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")) {
        return Err(rejected(
            21211,
            "sips: destinations are not supported (no TLS transport)",
        ));
    }
    let trunk = shared
        .config
        .trunks
        .iter()
        .find(|t| t.takes(to) && !t.gateways.is_empty())
        .ok_or_else(|| {
            rejected(
                21215,
                format!("No trunk is configured for {to} (set DIALTONE_TRUNK)"),
            )
        })?;
    let attempts = trunk
        .gateways
        .iter()
        .map(|g| Attempt {
            request_uri: format!("sip:{to}@{};user=phone", g.host),
            destination: g.address,
            transport: g.transport,
        })
        .collect();
    Ok(Route {
        attempts,
        trunk: Some(trunk.clone()),
    })
}

pub(crate) fn internal(e: impl std::fmt::Display) -> HookError {
    HookError::Internal(e.to_string())
}

/// The task behind a [`LegHandle`].
struct LegTask {
    shared: Arc<Shared>,
    req: LegRequest,
    events: mpsc::UnboundedSender<LegEvent>,
    cancel: mpsc::UnboundedReceiver<()>,
    /// False once the handle is gone (a closed channel would wake `select!` forever).
    cancel_open: bool,
    local_tag: String,
    /// Whether `Ringing` was reported.
    ringing: bool,
    /// The WebRTC offer of the INVITE in flight to a browser (a WebSocket contact).
    webrtc: std::sync::Mutex<Option<WebRtcSession>>,
}

/// How one gateway's INVITE ended.
enum Tried {
    /// Answered or finally refused: the events are sent.
    Done,
    /// Try the next gateway; the SIP status that made us move on, if any.
    Next(Option<u16>),
}

impl LegTask {
    async fn run(mut self) {
        let route = match route(&self.shared, &self.req.to).await {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(call_sid = %self.req.call_sid, error = ?e, "no route for the leg");
                return self.fail(CallStatus::Failed, None);
            }
        };
        if let LegTarget::Address(to) = &self.req.to {
            if let Err(e) = fraud::check_destination(&self.req.account_sid, to) {
                tracing::warn!(call_sid = %self.req.call_sid, %e, "destination refused");
                return self.fail(CallStatus::Failed, None);
            }
        }
        if let Some(trunk) = &route.trunk {
            let slot = self.req.trunk_slot.unwrap_or_else(|| trunk.reserve_slot(std::time::Instant::now()));
            let slot = Instant::from_std(slot);
            if slot > Instant::now() {
                tracing::debug!(call_sid = %self.req.call_sid, trunk = %trunk.name, "waiting for the trunk's calls-per-second slot");
                tokio::select! {
                    () = tokio::time::sleep_until(slot) => {}
                    _ = self.cancel.recv() => return self.fail(CallStatus::Canceled, None),
                }
            }
        }
        let deadline = Instant::now() + self.req.timeout;
        let gateway_timeout = route.trunk.as_ref().map(|t| t.gateway_timeout);
        let credentials = route.trunk.as_ref().and_then(|t| t.credentials.clone());
        let mut last = None;
        for (i, attempt) in route.attempts.iter().enumerate() {
            // Only a gateway with a next one behind it is given up early.
            let failover = gateway_timeout.filter(|_| i + 1 < route.attempts.len());
            match self
                .try_gateway(attempt, deadline, failover, credentials.as_ref())
                .await
            {
                Tried::Done => return,
                Tried::Next(status) => {
                    tracing::info!(call_sid = %self.req.call_sid, gateway = %attempt.destination, ?status, "gateway failed: trying the next");
                    last = status;
                }
            }
        }
        let status = if last == Some(408) {
            CallStatus::NoAnswer
        } else {
            CallStatus::Failed
        };
        self.fail(status, last)
    }

    fn fail(&self, status: CallStatus, sip_status: Option<u16>) {
        let _ = self.events.send(LegEvent::Failed { status, sip_status });
    }

    fn caller_uri(&self) -> String {
        let from = &self.req.from;
        if from
            .get(..4)
            .is_some_and(|s| s.eq_ignore_ascii_case("sip:"))
        {
            from.clone()
        } else {
            format!("sip:{from}@{}", self.shared.config.advertise_ip_for_uri())
        }
    }

    fn invite(&self, attempt: &Attempt, call_id: &str, cseq: u32) -> Request {
        let config = &self.shared.config;
        let session_id = rand::thread_rng().gen::<u32>() as u64;
        let mut sdp = sip::sdp::offer(config.advertise_ip, self.req.local_port, session_id, 1);
        if attempt.transport.is_websocket() {
            // A browser: DTLS-SRTP and ICE, offered by a WebRTC session on the leg's port.
            let local = SocketAddr::new(config.advertise_ip, self.req.local_port);
            match WebRtcSession::offer(local) {
                Ok((session, offer)) => {
                    sdp = offer;
                    *self.webrtc.lock().unwrap_or_else(|e| e.into_inner()) = Some(session);
                }
                Err(e) => tracing::warn!(error = %e, "no WebRTC offer for a browser leg"),
            }
        }
        let mut invite = Request::new(Method::Invite, &attempt.request_uri);
        invite.headers.push(
            "From",
            &format!("<{}>;tag={}", self.caller_uri(), self.local_tag),
        );
        invite
            .headers
            .push("To", &format!("<{}>", attempt.request_uri));
        invite.headers.push("Call-ID", call_id);
        invite.headers.push("CSeq", &format!("{cseq} INVITE"));
        invite
            .headers
            .push("Contact", &config.contact_uri_for(attempt.transport));
        invite.headers.push("Allow", ALLOW);
        for (name, value) in &self.req.headers {
            invite.headers.push(name, value);
        }
        invite.set_body("application/sdp", sdp.into_bytes());
        invite
    }

    fn forget(&self, call_id: &str) {
        let _ = self.shared.sip.send(SipCommand::OutboundEnded {
            call_id: call_id.to_owned(),
        });
    }

    /// One gateway: INVITE (again with credentials after a challenge) until an answer, a final
    /// refusal, or a reason to try the next gateway.
    async fn try_gateway(
        &mut self,
        attempt: &Attempt,
        deadline: Instant,
        failover: Option<Duration>,
        credentials: Option<&crate::trunk::Credentials>,
    ) -> Tried {
        let call_id = format!("{:032x}@dialtone", rand::thread_rng().gen::<u128>());
        let mut cseq = 1;
        let mut invite = self.invite(attempt, &call_id, cseq);
        let (signal_tx, mut signals) = mpsc::unbounded_channel();
        let (destination, transport) = (attempt.destination, attempt.transport);
        let send = |invite: &Request| {
            let _ = self.shared.sip.send(SipCommand::Request {
                request: invite.clone(),
                destination,
                transport,
                reply: Some(signal_tx.clone()),
            });
        };
        send(&invite);
        let silence_deadline = failover.map(|t| Instant::now() + t);
        let mut heard = false;
        let mut challenged = false;
        // Set once we sent CANCEL: the status to end with, and how long we wait for the final response.
        let mut cancelled: Option<(CallStatus, Instant)> = None;
        loop {
            let wake = match (cancelled, silence_deadline) {
                (Some((_, t)), _) => t,
                (None, Some(s)) if !heard => s.min(deadline),
                (None, _) => deadline,
            };
            let cancel_open = self.cancel_open && cancelled.is_none();
            tokio::select! {
                signal = signals.recv() => match signal {
                    None => {
                        self.forget(&call_id);
                        self.fail(CallStatus::Failed, None);
                        return Tried::Done;
                    }
                    Some(CallSignal::Response { response }) => {
                        let code = response.status();
                        heard = true;
                        if code < 200 {
                            if matches!(code, 180 | 183) && !self.ringing && cancelled.is_none() {
                                self.ringing = true;
                                let _ = self.events.send(LegEvent::Ringing);
                            }
                            continue;
                        }
                        if code < 300 {
                            if let Some((status, _)) = cancelled {
                                // The answer crossed our CANCEL: take the call and end it at once.
                                hang_up_answered(&self.shared, &invite, &response, destination, transport);
                                self.forget(&call_id);
                                self.fail(status, Some(code));
                                return Tried::Done;
                            }
                            self.answered(&invite, response, destination, transport, signal_tx, signals, call_id).await;
                            return Tried::Done;
                        }
                        if matches!(code, 401 | 407) && !challenged && cancelled.is_none() {
                            if let Some(auth) = credentials.and_then(|c| crate::trunk::authorization(c, &response, &Method::Invite, &attempt.request_uri)) {
                                challenged = true;
                                cseq += 1;
                                invite = self.invite(attempt, &call_id, cseq);
                                invite.headers.push(auth.0, &auth.1);
                                // The challenged transaction is over: drop its routes before the retry takes the Call-ID.
                                self.forget(&call_id);
                                send(&invite);
                                continue;
                            }
                        }
                        self.forget(&call_id);
                        if let Some((status, _)) = cancelled {
                            self.fail(status, Some(code));
                            return Tried::Done;
                        }
                        if failover.is_some() && is_gateway_fault(code) {
                            return Tried::Next(Some(code));
                        }
                        let status = unanswered_status(code);
                        tracing::info!(call_sid = %self.req.call_sid, code, status = %status, "leg not answered");
                        self.fail(status, Some(code));
                        return Tried::Done;
                    }
                    Some(CallSignal::RequestTimeout) => {
                        self.forget(&call_id);
                        if cancelled.is_none() && failover.is_some() {
                            return Tried::Next(Some(408));
                        }
                        self.fail(cancelled.map_or(CallStatus::NoAnswer, |(s, _)| s), Some(408));
                        return Tried::Done;
                    }
                    Some(CallSignal::Request { tx, request }) => {
                        // Nothing is established before the 2xx.
                        let response = Response::from_request(&request, 481, "Call/Transaction Does Not Exist");
                        let _ = self.shared.sip.send(SipCommand::Respond { tx, response });
                    }
                    Some(_) => {}
                },
                cancel = self.cancel.recv(), if cancel_open => {
                    if cancel.is_none() {
                        // The handle is gone: nobody wants this leg any more.
                        self.cancel_open = false;
                    }
                    let _ = self.shared.sip.send(SipCommand::Cancel { call_id: call_id.clone() });
                    cancelled = Some((CallStatus::Canceled, Instant::now() + CANCEL_GRACE));
                }
                () = tokio::time::sleep_until(wake) => {
                    if let Some((status, _)) = cancelled {
                        self.forget(&call_id);
                        self.fail(status, None);
                        return Tried::Done;
                    }
                    if Instant::now() >= deadline {
                        tracing::info!(call_sid = %self.req.call_sid, "no answer within the timeout: CANCEL");
                        let _ = self.shared.sip.send(SipCommand::Cancel { call_id: call_id.clone() });
                        cancelled = Some((CallStatus::NoAnswer, Instant::now() + CANCEL_GRACE));
                    } else {
                        // Not a word from this gateway: give it up (its transaction ends on its own).
                        self.forget(&call_id);
                        return Tried::Next(None);
                    }
                }
            }
        }
    }

    /// ACKs the 2xx, negotiates its SDP answer and hands the leg over; forgets the SIP routes
    /// once the new owner drops the leg.
    #[allow(clippy::too_many_arguments)]
    async fn answered(
        &self,
        invite: &Request,
        response: Response,
        destination: SocketAddr,
        transport: Transport,
        signal_tx: mpsc::UnboundedSender<CallSignal>,
        signals: mpsc::UnboundedReceiver<CallSignal>,
        call_id: String,
    ) {
        let code = response.status();
        let mut dialog = match Dialog::uac(invite, &response) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, call_sid = %self.req.call_sid, "2xx without a usable dialog");
                self.forget(&call_id);
                return self.fail(CallStatus::Failed, Some(code));
            }
        };
        let ack = dialog.ack_for(&response);
        let _ = self.shared.sip.send(SipCommand::Stateless {
            message: sip::Message::Request(ack.clone()),
            destination,
            transport,
        });
        let body = std::str::from_utf8(&response.body).ok();
        let session = self.webrtc.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut webrtc = None;
        let negotiated = match session {
            Some(mut session) => body
                .and_then(|b| session.accept_answer(b).ok())
                .map(|media| {
                    webrtc = Some(Box::new((session, media)));
                    webrtc_negotiated(media)
                }),
            None => body
                .and_then(|b| SessionDescription::parse(b).ok())
                .and_then(|answer| {
                    sip::sdp::negotiate(&answer, &[sip::sdp::Codec::Pcmu, sip::sdp::Codec::Pcma])
                        .ok()
                }),
        };
        let Some(negotiated) = negotiated else {
            tracing::warn!(call_sid = %self.req.call_sid, "answer without a usable SDP: hanging up");
            let bye = dialog.request(Method::Bye);
            let _ = self.shared.sip.send(SipCommand::Request {
                request: bye,
                destination,
                transport,
                reply: None,
            });
            self.forget(&call_id);
            return self.fail(CallStatus::Failed, Some(code));
        };
        let leg = Leg {
            peer: destination,
            transport,
            signals,
            self_signals: signal_tx.clone(),
            invite: None,
            dialog: Some(dialog),
            ack: Some(ack),
        };
        let event = LegEvent::Answered {
            leg,
            negotiated,
            webrtc,
        };
        // Nobody took the answer: end the call we just made.
        if let Err(mpsc::error::SendError(LegEvent::Answered {
            leg: Leg {
                dialog: Some(mut dialog),
                ..
            },
            ..
        })) = self.events.send(event)
        {
            let bye = dialog.request(Method::Bye);
            let _ = self.shared.sip.send(SipCommand::Request {
                request: bye,
                destination,
                transport,
                reply: None,
            });
        }
        signal_tx.closed().await;
        self.forget(&call_id);
    }
}

/// What a browser leg negotiated, in the shape the plain-RTP code keeps (no addresses: str0m
/// sends where ICE found the browser).
pub(crate) fn webrtc_negotiated(media: WebRtcMedia) -> Negotiated {
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    Negotiated {
        remote_rtp: unspecified,
        remote_rtcp: unspecified,
        codec: match media.codec {
            ::media::Codec::Pcma => sip::sdp::Codec::Pcma,
            _ => sip::sdp::Codec::Pcmu,
        },
        telephone_event_pt: media.telephone_event_pt,
        ptime_ms: 20,
        direction: sip::sdp::Direction::SendRecv,
        on_hold: false,
        payload_type: media.payload_type,
        media_index: 0,
        offer_media: Vec::new(),
    }
}

/// A final response that says the gateway, not the callee, failed: worth the next gateway.
fn is_gateway_fault(code: u16) -> bool {
    (500..600).contains(&code) || code == 408
}

/// The call status a final error response leaves an unanswered leg in.
fn unanswered_status(code: u16) -> CallStatus {
    match code {
        486 | 600 => CallStatus::Busy,
        408 | 480 | 487 => CallStatus::NoAnswer,
        _ => CallStatus::Failed,
    }
}

/// ACK and BYE for a 2xx that arrived after we gave up on the call.
fn hang_up_answered(
    shared: &Shared,
    invite: &Request,
    response: &Response,
    destination: SocketAddr,
    transport: Transport,
) {
    let Ok(mut dialog) = Dialog::uac(invite, response) else {
        return;
    };
    let ack = sip::Message::Request(dialog.ack_for(response));
    let _ = shared.sip.send(SipCommand::Stateless {
        message: ack,
        destination,
        transport,
    });
    let bye = dialog.request(Method::Bye);
    let _ = shared.sip.send(SipCommand::Request {
        request: bye,
        destination,
        transport,
        reply: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_responses_map_to_twilio_statuses_and_failover() {
        assert_eq!(unanswered_status(486), CallStatus::Busy);
        assert_eq!(unanswered_status(600), CallStatus::Busy);
        assert_eq!(unanswered_status(480), CallStatus::NoAnswer);
        assert_eq!(unanswered_status(487), CallStatus::NoAnswer);
        assert_eq!(unanswered_status(404), CallStatus::Failed);
        assert_eq!(unanswered_status(503), CallStatus::Failed);
        for code in [500, 502, 503, 504, 408] {
            assert!(is_gateway_fault(code), "{code}");
        }
        // The callee's answers are final: no other gateway would change them.
        for code in [404, 480, 486, 487, 600, 603] {
            assert!(!is_gateway_fault(code), "{code}");
        }
    }

    #[test]
    fn leg_targets_from_strings_and_contacts() {
        assert_eq!(
            LegTarget::from("+15550001111"),
            LegTarget::Address("+15550001111".into())
        );
        let contact = crate::registrar::ContactTarget {
            uri: "sip:alice@192.0.2.7:5062".into(),
            destination: "192.0.2.7:5062".parse().unwrap(),
            transport: Transport::Tcp,
        };
        assert_eq!(
            LegTarget::from(contact),
            LegTarget::Direct {
                uri: "sip:alice@192.0.2.7:5062".into(),
                destination: "192.0.2.7:5062".parse().unwrap(),
                transport: Transport::Tcp
            }
        );
    }
}
