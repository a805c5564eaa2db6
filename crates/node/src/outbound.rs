//! API-originated calls: where a destination goes (a trunk for phone numbers, the URI's host for
//! `sip:` URIs), the UAC leg until the far end answers, then the shared call loop of `call.rs`.
//!
//! Until the answer the task owns the INVITE client transaction's view: 180/183 is `ringing`,
//! a 2xx is ACKed and its SDP answer sets up the media stream, 486/600 is `busy`,
//! 408/480/487 (and no final response) `no-answer`, any other final error `failed`. `Timeout`
//! seconds without an answer, or an API cancel, send CANCEL. Set-up time is never billed: the
//! call's `start_time` and `duration` count from the answer.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api::{CallUpdate, CreateCall, HookError};
use chrono::Utc;
use model::records::CallRecord;
use model::{AccountSid, CallDirection, CallSid, CallStatus};
use rand::Rng;
use sip::dialog::Dialog;
use sip::sdp::SessionDescription;
use sip::{Method, Request, Response, Transport};
use tokio::sync::mpsc;

use crate::call::{apply_media, http_method, ActiveCall, ActiveCallParts, CallSignal, Leg, StatusCallbacks};
use crate::calls_registry::{CallControl, Registration};
use crate::sip_task::{SipCommand, ALLOW};
use crate::Shared;

/// How long to wait for the final response to a CANCELled INVITE before giving up on it.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// An outbound SIP gateway for calls to phone numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    pub name: String,
    /// `host[:port]` as it goes in Request-URIs.
    pub host: String,
    /// Where requests are sent, resolved at start-up.
    pub address: SocketAddr,
    pub transport: Transport,
    /// Numbers starting with one of these go through this trunk; empty means every number.
    pub prefixes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrunkError {
    #[error("{0:?} is not a SIP URI like sip:host:port (transport udp or tcp)")]
    BadUri(String),
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
}

impl Trunk {
    /// A trunk from `sip:host[:port][;transport=tcp]`; the host is resolved now (start-up).
    pub fn from_uri(name: &str, uri: &str, prefixes: Vec<String>) -> Result<Trunk, TrunkError> {
        let t = SipUri::parse(uri).ok_or_else(|| TrunkError::BadUri(uri.to_owned()))?;
        let address = (t.host.as_str(), t.port)
            .to_socket_addrs()
            .map_err(|e| TrunkError::Resolve { host: t.host.clone(), reason: e.to_string() })?
            .next()
            .ok_or_else(|| TrunkError::Resolve { host: t.host.clone(), reason: "no address".into() })?;
        Ok(Trunk { name: name.to_owned(), host: t.hostport, address, transport: t.transport, prefixes })
    }
}

/// The parts of a `sip:` URI we route on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SipUri {
    hostport: String,
    host: String,
    port: u16,
    transport: Transport,
}

impl SipUri {
    /// `sip:[user@]host[:port][;params]`. `sips:` is refused: there is no TLS transport.
    fn parse(uri: &str) -> Option<SipUri> {
        let rest = uri.get(..4).filter(|s| s.eq_ignore_ascii_case("sip:")).and(uri.get(4..))?;
        let (main, params) = rest.split_once(';').unwrap_or((rest, ""));
        let main = main.split('?').next()?;
        let hostport = main.rsplit_once('@').map_or(main, |(_, h)| h);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None if after.is_empty() => 5060,
                None => return None,
            };
            (host.to_owned(), port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_owned(), p.parse().ok()?),
                None => (hostport.to_owned(), 5060),
            }
        };
        if host.is_empty() || port == 0 {
            return None;
        }
        let mut transport = Transport::Udp;
        for param in params.split(';') {
            if let Some((k, v)) = param.split_once('=') {
                if k.eq_ignore_ascii_case("transport") {
                    transport = match v.to_ascii_lowercase().as_str() {
                        "udp" => Transport::Udp,
                        "tcp" => Transport::Tcp,
                        _ => return None,
                    };
                }
            }
        }
        Some(SipUri { hostport: hostport.to_owned(), host, port, transport })
    }
}

/// Where the INVITE goes.
#[derive(Debug, Clone)]
struct Target {
    request_uri: String,
    destination: SocketAddr,
    transport: Transport,
}

fn rejected(code: u32, message: impl Into<String>) -> HookError {
    HookError::Rejected { code, message: message.into() }
}

async fn target(shared: &Shared, to: &str) -> Result<Target, HookError> {
    if to.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:")) {
        let uri = SipUri::parse(to).ok_or_else(|| rejected(21211, format!("Invalid 'To' SIP URI: {to}")))?;
        let destination = match uri.host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, uri.port),
            Err(_) => tokio::net::lookup_host((uri.host.as_str(), uri.port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| rejected(21211, format!("Cannot resolve the host of {to}")))?,
        };
        return Ok(Target { request_uri: to.to_owned(), destination, transport: uri.transport });
    }
    if to.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:")) {
        return Err(rejected(21211, "sips: destinations are not supported (no TLS transport)"));
    }
    let trunk = shared
        .config
        .trunks
        .iter()
        .find(|t| t.prefixes.is_empty() || t.prefixes.iter().any(|p| to.starts_with(p.as_str())))
        .ok_or_else(|| rejected(21215, format!("No trunk is configured for {to} (set DIALTONE_TRUNK)")))?;
    Ok(Target {
        request_uri: format!("sip:{to}@{};user=phone", trunk.host),
        destination: trunk.address,
        transport: trunk.transport,
    })
}

fn internal(e: impl std::fmt::Display) -> HookError {
    HookError::Internal(e.to_string())
}

/// `POST Calls.json`: stores the call `queued`, starts it in the background, returns the record.
pub async fn create(shared: Arc<Shared>, req: CreateCall) -> Result<CallRecord, HookError> {
    let account = shared.store.account(&req.account_sid).await.map_err(internal)?.ok_or(HookError::NotFound)?;
    if !crate::call::may_call(&shared, &account).await.map_err(internal)? {
        return Err(HookError::Rejected { code: 10001, message: "Account is not active".into() });
    }
    let target = target(&shared, &req.to).await?;
    let now = Utc::now();
    let record = CallRecord {
        sid: CallSid::generate(),
        account_sid: req.account_sid,
        parent_call_sid: None,
        phone_number_sid: None,
        from: req.from.clone(),
        to: req.to.clone(),
        status: CallStatus::Queued,
        direction: CallDirection::OutboundApi,
        start_time: None,
        end_time: None,
        duration: None,
        answered_by: None,
        date_created: now,
        date_updated: now,
    };
    // The API answers with this record and a client may fetch it at once: wait for the write.
    shared.records.insert_call(&record);
    shared.records.flush().await;
    let (registration, control) = shared.calls.register(record.account_sid, record.sid);
    tracing::info!(call_sid = %record.sid, to = %record.to, destination = %target.destination, "outbound call");
    let callbacks = StatusCallbacks::new(
        &shared,
        req.status_callback.clone(),
        http_method(&req.status_callback_method),
        req.status_callback_events.clone(),
        account.auth_token.clone(),
    );
    let dialing = Dialing { shared, req, target, record: record.clone(), auth_token: account.auth_token, callbacks };
    tokio::spawn(dialing.run(registration, control));
    Ok(record)
}

/// `POST Calls/{CallSid}.json`: hands the change to the live call, or says why it cannot.
pub async fn update(shared: Arc<Shared>, account: AccountSid, sid: CallSid, update: CallUpdate) -> Result<CallRecord, HookError> {
    let record = shared.store.call(&account, &sid).await.map_err(internal)?.ok_or(HookError::NotFound)?;
    let changes_document = update.twiml.is_some() || update.redirect.is_some();
    if !shared.calls.is_live(&account, &sid) {
        if changes_document {
            return Err(rejected(21220, format!("Call is not in-progress. Cannot redirect. (it is {})", record.status)));
        }
        return Ok(record);
    }
    let mut controls = Vec::new();
    if let Some(twiml) = update.twiml {
        controls.push(CallControl::Twiml(twiml));
    } else if let Some((url, method)) = update.redirect {
        controls.push(CallControl::Redirect { url, method: http_method(&method) });
    }
    if let Some(status) = update.status {
        controls.push(CallControl::End(status));
    }
    for control in controls {
        if !shared.calls.send(&account, &sid, control) {
            return Err(rejected(21220, "Call is not in-progress. Cannot redirect."));
        }
    }
    Ok(record)
}

/// An outbound call until it is answered (or not).
struct Dialing {
    shared: Arc<Shared>,
    req: CreateCall,
    target: Target,
    record: CallRecord,
    auth_token: String,
    callbacks: StatusCallbacks,
}

/// How the ringing phase ended.
enum Rung {
    Answered { response: Response },
    Ended(CallStatus),
}

impl Dialing {
    async fn run(mut self, registration: Registration, mut control: mpsc::UnboundedReceiver<CallControl>) {
        let shared = self.shared.clone();
        shared.metrics.active_calls.fetch_add(1, Ordering::Relaxed);
        let call_id = format!("{:032x}@dialtone", rand::thread_rng().gen::<u128>());
        self.dial(&call_id, registration, &mut control).await;
        let _ = shared.sip.send(SipCommand::OutboundEnded { call_id });
        shared.metrics.active_calls.fetch_sub(1, Ordering::Relaxed);
    }

    fn caller_uri(&self) -> String {
        let from = &self.req.from;
        if from.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:")) {
            from.clone()
        } else {
            format!("sip:{from}@{}", self.shared.config.advertise_ip_for_uri())
        }
    }

    async fn dial(&mut self, call_id: &str, registration: Registration, control: &mut mpsc::UnboundedReceiver<CallControl>) {
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let stream = match self.shared.media.allocate(media_tx) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, call_sid = %self.record.sid, "no RTP ports for an outbound call");
                return self.end_unanswered(CallStatus::Failed).await;
            }
        };
        let config = &self.shared.config;
        let session_id = rand::thread_rng().gen::<u32>() as u64;
        let sdp = sip::sdp::offer(config.advertise_ip, stream.local_port, session_id, 1);
        let local_tag = format!("{:016x}", rand::thread_rng().gen::<u64>());
        let mut invite = Request::new(Method::Invite, &self.target.request_uri);
        invite.headers.push("From", &format!("<{}>;tag={local_tag}", self.caller_uri()));
        invite.headers.push("To", &format!("<{}>", self.target.request_uri));
        invite.headers.push("Call-ID", call_id);
        invite.headers.push("CSeq", "1 INVITE");
        invite.headers.push("Contact", &config.contact_uri());
        invite.headers.push("Allow", ALLOW);
        invite.set_body("application/sdp", sdp.into_bytes());

        let (signal_tx, mut signals) = mpsc::unbounded_channel();
        let (destination, transport) = (self.target.destination, self.target.transport);
        let _ = self.shared.sip.send(SipCommand::Request {
            request: invite.clone(),
            destination,
            transport,
            reply: Some(signal_tx.clone()),
        });
        self.callbacks.post("initiated", &self.record);

        let mut engine_url = self.req.url.clone().map(|u| (u, http_method(&self.req.method)));
        let mut engine_twiml = self.req.twiml.clone();
        let rung = self.ring(call_id, &mut signals, control, &mut engine_url, &mut engine_twiml).await;
        let response = match rung {
            Rung::Answered { response } => response,
            Rung::Ended(status) => return self.end_unanswered(status).await,
        };
        let dialog = match Dialog::uac(&invite, &response) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, call_sid = %self.record.sid, "2xx without a usable dialog");
                return self.end_unanswered(CallStatus::Failed).await;
            }
        };
        let ack = dialog.ack_for(&response);
        let _ = self.shared.sip.send(SipCommand::Stateless { message: sip::Message::Request(ack.clone()), destination, transport });
        let negotiated = std::str::from_utf8(&response.body)
            .ok()
            .and_then(|b| SessionDescription::parse(b).ok())
            .and_then(|answer| sip::sdp::negotiate(&answer, &[sip::sdp::Codec::Pcmu, sip::sdp::Codec::Pcma]).ok());
        let mut leg = Leg {
            peer: destination,
            transport,
            signals,
            self_signals: signal_tx,
            invite: None,
            dialog: Some(dialog),
            ack: Some(ack),
        };
        let Some(negotiated) = negotiated else {
            tracing::warn!(call_sid = %self.record.sid, "answer without a usable SDP: hanging up");
            if let Some(dialog) = leg.dialog.as_mut() {
                let bye = dialog.request(Method::Bye);
                let _ = self.shared.sip.send(SipCommand::Request { request: bye, destination, transport, reply: None });
            }
            return self.end_unanswered(CallStatus::Failed).await;
        };
        apply_media(&stream, &negotiated);

        let now = Utc::now();
        self.record.status = CallStatus::InProgress;
        self.record.start_time = Some(now);
        self.record.date_updated = now;
        self.save().await;
        self.callbacks.post("answered", &self.record);

        let (voice_url, voice_method) = engine_url.unwrap_or_default();
        let config = engine::CallConfig {
            call_sid: self.record.sid,
            account_sid: self.record.account_sid,
            from: self.record.from.clone(),
            to: self.record.to.clone(),
            direction: CallDirection::OutboundApi,
            voice_url,
            voice_method,
            fallback_url: self.req.fallback_url.clone(),
            fallback_method: http_method(&self.req.fallback_method),
            public_url: self.shared.config.public_url.clone(),
            twiml: engine_twiml,
        };
        // The loop takes the control channel over; the sender stays in the registry.
        let control = std::mem::replace(control, mpsc::unbounded_channel::<CallControl>().1);
        let callbacks = std::mem::replace(
            &mut self.callbacks,
            StatusCallbacks::new(&self.shared, None, engine::HttpMethod::Post, Vec::new(), String::new()),
        );
        let call = ActiveCall::new(ActiveCallParts {
            shared: self.shared.clone(),
            sip: self.shared.sip.clone(),
            leg,
            config,
            stream,
            media_rx,
            negotiated,
            record: self.record.clone(),
            auth_token: self.auth_token.clone(),
            callbacks,
            control,
            registration,
            answered_at: Some(SystemTime::now()),
            time_limit: Some(tokio::time::Instant::now() + Duration::from_secs(u64::from(self.req.time_limit))),
        });
        call.run().await;
    }

    /// Waits for the answer; CANCELs on `Timeout` or an API cancel.
    async fn ring(
        &mut self,
        call_id: &str,
        signals: &mut mpsc::UnboundedReceiver<CallSignal>,
        control: &mut mpsc::UnboundedReceiver<CallControl>,
        engine_url: &mut Option<(String, engine::HttpMethod)>,
        engine_twiml: &mut Option<String>,
    ) -> Rung {
        let ring_deadline = tokio::time::Instant::now() + Duration::from_secs(u64::from(self.req.timeout));
        // Set once we sent CANCEL: the status to end with, and how long we wait for the 487.
        let mut cancelled: Option<(CallStatus, tokio::time::Instant)> = None;
        loop {
            let wake = cancelled.map_or(ring_deadline, |(_, t)| t);
            tokio::select! {
                signal = signals.recv() => match signal {
                    None => return Rung::Ended(CallStatus::Failed),
                    Some(CallSignal::Response { response }) => {
                        let code = response.status();
                        if code < 200 {
                            if matches!(code, 180 | 183) && self.record.status == CallStatus::Queued && cancelled.is_none() {
                                self.record.status = CallStatus::Ringing;
                                self.record.date_updated = Utc::now();
                                self.save().await;
                                self.callbacks.post("ringing", &self.record);
                            }
                        } else if code < 300 {
                            if let Some((status, _)) = cancelled {
                                // The answer crossed our CANCEL: take the call and end it at once.
                                self.hang_up_answered(&response);
                                return Rung::Ended(status);
                            }
                            return Rung::Answered { response };
                        } else {
                            let status = cancelled.map(|(s, _)| s).unwrap_or(match code {
                                486 | 600 => CallStatus::Busy,
                                408 | 480 | 487 => CallStatus::NoAnswer,
                                _ => CallStatus::Failed,
                            });
                            tracing::info!(call_sid = %self.record.sid, code, status = %status, "outbound call not answered");
                            return Rung::Ended(status);
                        }
                    }
                    Some(CallSignal::RequestTimeout) => {
                        return Rung::Ended(cancelled.map_or(CallStatus::NoAnswer, |(s, _)| s));
                    }
                    Some(CallSignal::Request { tx, request }) => {
                        // Nothing is established before the 2xx.
                        let response = Response::from_request(&request, 481, "Call/Transaction Does Not Exist");
                        let _ = self.shared.sip.send(SipCommand::Respond { tx, response });
                    }
                    Some(_) => {}
                },
                Some(ctl) = control.recv() => match ctl {
                    CallControl::End(_) => {
                        if cancelled.is_none() {
                            let _ = self.shared.sip.send(SipCommand::Cancel { call_id: call_id.to_owned() });
                            cancelled = Some((CallStatus::Canceled, tokio::time::Instant::now() + CANCEL_GRACE));
                        }
                    }
                    // Not answered yet: the change applies to what runs once it is.
                    CallControl::Redirect { url, method } => {
                        *engine_url = Some((url, method));
                        *engine_twiml = None;
                    }
                    CallControl::Twiml(document) => *engine_twiml = Some(document),
                },
                () = tokio::time::sleep_until(wake) => match cancelled {
                    Some((status, _)) => return Rung::Ended(status),
                    None => {
                        tracing::info!(call_sid = %self.record.sid, "no answer within Timeout: CANCEL");
                        let _ = self.shared.sip.send(SipCommand::Cancel { call_id: call_id.to_owned() });
                        cancelled = Some((CallStatus::NoAnswer, tokio::time::Instant::now() + CANCEL_GRACE));
                    }
                },
            }
        }
    }

    /// ACK and BYE for a 2xx that arrived after we gave up on the call.
    fn hang_up_answered(&self, response: &Response) {
        let Some(invite) = self.rebuild_invite_for(response) else { return };
        let Ok(mut dialog) = Dialog::uac(&invite, response) else { return };
        let (destination, transport) = (self.target.destination, self.target.transport);
        let ack = sip::Message::Request(dialog.ack_for(response));
        let _ = self.shared.sip.send(SipCommand::Stateless { message: ack, destination, transport });
        let bye = dialog.request(Method::Bye);
        let _ = self.shared.sip.send(SipCommand::Request { request: bye, destination, transport, reply: None });
    }

    /// The parts of our INVITE a UAC dialog needs, read back from its response.
    fn rebuild_invite_for(&self, response: &Response) -> Option<Request> {
        let mut invite = Request::new(Method::Invite, &self.target.request_uri);
        invite.headers.push("From", response.headers.get("From")?);
        invite.headers.push("Call-ID", response.call_id()?);
        invite.headers.push("CSeq", response.headers.get("CSeq")?);
        invite.headers.push("Contact", &self.shared.config.contact_uri());
        Some(invite)
    }

    async fn save(&self) {
        self.shared.records.update_call(&self.record);
    }

    async fn end_unanswered(&mut self, status: CallStatus) {
        let now = Utc::now();
        self.record.status = status;
        self.record.end_time = Some(now);
        self.record.duration = Some(0);
        self.record.date_updated = now;
        self.save().await;
        tracing::info!(call_sid = %self.record.sid, status = %status, "outbound call ended unanswered");
        self.callbacks.post("completed", &self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uris_give_host_port_and_transport() {
        let u = SipUri::parse("sip:bob@127.0.0.1:5070").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.transport, u.hostport.as_str()), ("127.0.0.1", 5070, Transport::Udp, "127.0.0.1:5070"));
        let u = SipUri::parse("sip:gw.example.com;transport=TCP").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.transport), ("gw.example.com", 5060, Transport::Tcp));
        let u = SipUri::parse("SIP:+1555@[::1]:5080").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 5080));
        for bad in ["sips:a@b", "http://x", "sip:", "sip:a@b:notaport", "sip:h;transport=sctp", "sip:[::1", "sip:h:0"] {
            assert_eq!(SipUri::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn trunk_from_uri_resolves_at_once() {
        let t = Trunk::from_uri("default", "sip:127.0.0.1:5099", vec![]).unwrap();
        assert_eq!(t.address, "127.0.0.1:5099".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:5099");
        assert!(Trunk::from_uri("x", "127.0.0.1", vec![]).is_err());
    }
}
