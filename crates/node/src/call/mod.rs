//! One task per call: the SIP leg, its media stream and its `engine::Call`.
//!
//! An inbound call's task sets the call up here (number lookup, SDP negotiation, RTP ports); an
//! outbound call's task does its own set-up in `outbound.rs` until the far end answers. Both then
//! run [`ActiveCall`]: hand the engine what happened (SIP signals, media events, webhook
//! replies, API updates, its own timeouts) and carry out what it asks (answer, play, record,
//! fetch, hang up). Slow work (HTTP, TTS, audio fetch) runs in spawned tasks whose results come
//! back on the call's own channel, so the loop never blocks.

mod dial;
mod participant;
mod queue;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use engine::{HttpMethod, MediaSource, Output, RecordStop};
use model::records::{CallRecord, NotificationRecord, RecordingRecord};
use model::{CallDirection, CallSid, CallStatus, RecordingSid};
use rand::Rng;
use sip::dialog::Dialog;
use sip::sdp::{Negotiated, SessionDescription};
use sip::transaction::ServerTxId;
use sip::{Method, Request, Response};
use tokio::sync::mpsc;

use crate::calls_registry::{CallControl, Registration};
use crate::media::{MediaEvent, Stream};
pub use crate::signals::{CallSignal, NewCall};
pub(crate) use crate::signals::{Leg, ServerInvite};
use crate::signals::{SipCommand, ALLOW};
use crate::webhook::{WebhookError, WebhookRequest};

use crate::Shared;

/// Status callbacks of one call: Twilio's progress events, posted one after the other (a task
/// per call sends them in order), each with the next `SequenceNumber`.
pub(crate) struct StatusCallbacks {
    queue: Option<mpsc::UnboundedSender<WebhookRequest>>,
    url: String,
    method: HttpMethod,
    events: Vec<String>,
    auth_token: String,
    sequence: u32,
}

impl StatusCallbacks {
    /// `events` among `initiated`, `ringing`, `answered`, `completed`; nothing is sent without a URL.
    pub fn new(
        shared: &Shared,
        url: Option<String>,
        method: HttpMethod,
        events: Vec<String>,
        auth_token: String,
    ) -> Self {
        let queue = url.as_ref().filter(|u| !u.is_empty()).map(|_| {
            let (tx, mut rx) = mpsc::unbounded_channel::<WebhookRequest>();
            let webhooks = shared.webhooks.clone();
            tokio::spawn(async move {
                while let Some(request) = rx.recv().await {
                    let url = request.url.clone();
                    match webhooks.fetch(request).await {
                        Ok(reply) => {
                            tracing::debug!(%url, status = reply.status, "status callback sent")
                        }
                        Err(error) => tracing::warn!(%url, %error, "status callback failed"),
                    }
                }
            });
            tx
        });
        StatusCallbacks {
            queue,
            url: url.unwrap_or_default(),
            method,
            events,
            auth_token,
            sequence: 0,
        }
    }

    /// Posts `event` for the call as `record` now stands, if the app asked for it.
    pub fn post(&mut self, event: &str, record: &CallRecord) {
        let Some(queue) = &self.queue else { return };
        if !self.events.iter().any(|e| e == event) {
            return;
        }
        let status = if event == "initiated" {
            "initiated"
        } else {
            record.status.as_str()
        };
        let mut params = vec![
            ("AccountSid".to_owned(), record.account_sid.to_string()),
            ("ApiVersion".to_owned(), "2010-04-01".to_owned()),
            ("CallSid".to_owned(), record.sid.to_string()),
            ("CallStatus".to_owned(), status.to_owned()),
            ("Called".to_owned(), record.to.clone()),
            ("Caller".to_owned(), record.from.clone()),
            ("Direction".to_owned(), record.direction.to_string()),
            ("From".to_owned(), record.from.clone()),
            ("To".to_owned(), record.to.clone()),
            ("Timestamp".to_owned(), Utc::now().to_rfc2822()),
            (
                "CallbackSource".to_owned(),
                "call-progress-events".to_owned(),
            ),
            ("SequenceNumber".to_owned(), self.sequence.to_string()),
        ];
        if event == "completed" {
            params.push((
                "CallDuration".to_owned(),
                record.duration.unwrap_or(0).to_string(),
            ));
        }
        self.sequence += 1;
        let request = WebhookRequest {
            url: self.url.clone(),
            method: self.method,
            params,
            auth_token: self.auth_token.clone(),
        };
        let _ = queue.send(request);
    }
}

/// Results of work the call spawned.
enum Done {
    Webhook {
        request_id: u64,
        result: Result<crate::webhook::WebhookReply, WebhookError>,
    },
    Audio {
        id: u64,
        loops: u32,
        result: Result<Arc<[i16]>, String>,
    },
}

pub async fn run(shared: Arc<Shared>, sip: mpsc::UnboundedSender<SipCommand>, new: NewCall) {
    let ended = SipCommand::Ended {
        dialog: new.dialog.clone(),
        invite_tx: new.tx,
    };
    // Counted up by the SIP task when it admitted the call (crate::overload); down below.
    let invite = ServerInvite {
        tx: new.tx,
        request: new.request,
        local_tag: new.local_tag,
    };
    let leg = Leg {
        peer: new.source,
        transport: new.transport,
        signals: new.signals,
        self_signals: new.self_signals,
        invite: Some(invite.clone()),
        dialog: None,
        ack: None,
    };
    match setup(&shared, &sip, leg).await {
        Ok(call) => call.run().await,
        Err((status, reason)) => {
            tracing::info!(
                status,
                reason,
                call_id = new.dialog.call_id,
                "INVITE refused"
            );
            let mut response = Response::from_request(&invite.request, status, reason);
            response.set_to_tag(&invite.local_tag);
            let _ = sip.send(SipCommand::Respond {
                tx: invite.tx,
                response,
            });
        }
    }
    shared.metrics.active_calls.fetch_sub(1, Ordering::Relaxed);
    let _ = sip.send(ended);
}

/// Whether the account may place or receive calls. An active main account needs no further read;
/// a subaccount also depends on its main account's status.
pub(crate) async fn may_call(
    shared: &Shared,
    account: &model::records::AccountRecord,
) -> Result<bool, store::StoreError> {
    if account.status == "active" && !account.is_subaccount() {
        return Ok(true);
    }
    Ok(shared.store.account_call_permission(&account.sid).await? == store::CallPermission::Allowed)
}

/// The number part of a Request-URI: `sip:+15551234567@host;user=phone` -> `+15551234567`.
pub fn dialled_number(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .or_else(|| uri.strip_prefix("tel:"))?;
    let user = rest.split(['@', ';', '?']).next()?;
    (!user.is_empty()).then_some(user)
}

/// The number an INVITE calls: the Request-URI's user, else the To header's. A carrier that
/// Dialtone registers with sends calls to the Contact it registered
/// (`sip:<trunk username>@<our address>`), so the Request-URI names the trunk and only To
/// carries the dialled number (Twilio and jambonz route registration-based trunks this way).
/// To is no more trusted than the Request-URI: a caller could have put either number in both.
async fn route(shared: &Shared, request: &Request) -> Option<crate::routing::Route> {
    let by_uri = dialled_number(&request.uri);
    if let Some(user) = by_uri {
        if let Some(number) = shared.routing.lookup(&shared.store, user).await {
            return Some(number);
        }
    }
    let to = request.to()?;
    let user = dialled_number(&to.uri).filter(|u| Some(*u) != by_uri)?;
    let number = shared.routing.lookup(&shared.store, user).await?;
    tracing::info!(request_uri = %request.uri, to = %number.phone_number(), "routed by the To header");
    Some(number)
}

/// What an inbound INVITE calls: a number's webhooks, or (a browser's call with an access token)
/// the token's Application.
struct CallTarget {
    account_sid: model::AccountSid,
    phone_number_sid: Option<model::PhoneNumberSid>,
    from: String,
    to: String,
    voice_url: Option<String>,
    voice_method: String,
    voice_fallback_url: Option<String>,
    voice_fallback_method: String,
    status_callback: Option<String>,
    status_callback_method: String,
    extra_params: Vec<(String, String)>,
}

impl CallTarget {
    fn from_number(number: &crate::routing::Route, request: &Request) -> CallTarget {
        let voice = number.voice();
        CallTarget {
            account_sid: number.account_sid,
            phone_number_sid: Some(number.sid),
            from: request
                .from()
                .map(|f| caller_id(&f.uri))
                .unwrap_or_default(),
            to: number.phone_number(),
            voice_url: voice.url.clone(),
            voice_method: voice.method.clone(),
            voice_fallback_url: voice.fallback_url.clone(),
            voice_fallback_method: voice.fallback_method.clone(),
            status_callback: voice.status_callback.clone(),
            status_callback_method: voice.status_callback_method.clone(),
            extra_params: Vec::new(),
        }
    }
}

/// A browser's call (`device.connect({params})`): the token names the account, the caller
/// (`client:IDENTITY`) and the Application whose VoiceUrl runs, with the token's outgoing params
/// and then the page's (`X-Dialtone-Params`), as Twilio does for a TwiML App. `To` is the
/// page's `To` param. A bad token is refused here with its code in `X-Dialtone-Error`.
async fn browser_target(
    shared: &Shared,
    sip: &mpsc::UnboundedSender<SipCommand>,
    new: &ServerInvite,
    token: &str,
) -> Result<CallTarget, (u16, &'static str)> {
    let refuse = |code: u16, message: &str| {
        let mut response = crate::registrar::token_refused(&new.request, code, message);
        response.set_to_tag(&new.local_tag);
        let _ = sip.send(SipCommand::Respond {
            tx: new.tx,
            response,
        });
        // Answered already: the caller's own 403 goes nowhere.
        (403, "Forbidden")
    };
    let claims = match crate::registrar::verify_token(shared, token).await {
        Ok(c) => c,
        Err(api::access_token::TokenError::Store(e)) => {
            tracing::error!(error = %e, "API key lookup failed during call set-up");
            return Err((500, "Server Internal Error"));
        }
        Err(e) => {
            tracing::info!(error = %e, "browser call refused: bad access token");
            return Err(refuse(e.code(), e.message()));
        }
    };
    let voice = claims.voice.clone().unwrap_or_default();
    let Some(app_sid) = voice
        .outgoing_application_sid
        .as_deref()
        .and_then(|s| s.parse::<model::ApplicationSid>().ok())
    else {
        tracing::info!(identity = %claims.identity, "browser call refused: the token allows no outgoing calls");
        return Err(refuse(20106, "Access Token has no outgoing voice grant"));
    };
    let app = match shared
        .store
        .application(&claims.account_sid, &app_sid)
        .await
    {
        Ok(Some(app)) => app,
        Ok(None) => {
            tracing::info!(application_sid = %app_sid, "browser call refused: no such Application");
            return Err(refuse(21218, "Invalid ApplicationSid"));
        }
        Err(e) => {
            tracing::error!(error = %e, "store failed during call set-up");
            return Err((500, "Server Internal Error"));
        }
    };
    let page: Vec<(String, String)> = new
        .request
        .headers
        .get("X-Dialtone-Params")
        .map(|v| {
            url::form_urlencoded::parse(v.trim().as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let to = page
        .iter()
        .find(|(n, _)| n == "To")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut extra_params = vec![("ApplicationSid".to_owned(), app_sid.to_string())];
    extra_params.extend(voice.outgoing_params.iter().cloned());
    extra_params.extend(page);
    Ok(CallTarget {
        account_sid: claims.account_sid,
        phone_number_sid: None,
        from: format!("client:{}", claims.identity),
        to,
        voice_url: app.voice_url,
        voice_method: app.voice_method,
        voice_fallback_url: app.voice_fallback_url,
        voice_fallback_method: app.voice_fallback_method,
        status_callback: app.status_callback,
        status_callback_method: app.status_callback_method,
        extra_params,
    })
}

async fn setup(
    shared: &Arc<Shared>,
    sip: &mpsc::UnboundedSender<SipCommand>,
    leg: Leg,
) -> Result<ActiveCall, (u16, &'static str)> {
    // `run` always builds an inbound leg with its INVITE.
    let Some(new) = leg.invite.clone() else {
        return Err((500, "Server Internal Error"));
    };
    // The dialled number, when it may be a Proxy pool number.
    let mut dialled = None;
    let mut target = match crate::registrar::bearer_token(&new.request) {
        Some(token) => browser_target(shared, sip, &new, &token).await?,
        None => {
            let number = route(shared, &new.request)
                .await
                .ok_or((404, "Not Found"))?;
            let target = CallTarget::from_number(&number, &new.request);
            dialled = Some(target.to.clone());
            target
        }
    };
    let account = match shared.store.account_for_call(&target.account_sid).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err((404, "Not Found")),
        Err(e) => {
            tracing::error!(error = %e, "store failed during call set-up");
            return Err((500, "Server Internal Error"));
        }
    };
    match may_call(shared, &account).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(account_sid = %account.sid, "inbound call refused: account not active (10003)");
            return Err((403, "Forbidden"));
        }
        Err(e) => {
            tracing::error!(error = %e, "store failed during call set-up");
            return Err((500, "Server Internal Error"));
        }
    }
    let body = std::str::from_utf8(&new.request.body).map_err(|_| (400, "SDP is not UTF-8"))?;
    if body.trim().is_empty() {
        return Err((488, "Not Acceptable Here: SDP offer required"));
    }
    let (stream, media_rx, negotiated, webrtc_answer) = answer_offer(shared, body)?;

    let call_sid = CallSid::generate();
    let mut ringing = Response::from_request(&new.request, 180, "Ringing");
    ringing.set_to_tag(&new.local_tag);
    ringing
        .headers
        .push("Contact", &shared.config.contact_uri_for(leg.transport));
    // The browser SDK's `call.parameters.CallSid`.
    ringing
        .headers
        .push("X-Dialtone-Call-Sid", call_sid.as_str());
    let _ = sip.send(SipCommand::Respond {
        tx: new.tx,
        response: ringing,
    });
    let mut twiml = None;
    if let Some(dialled) = &dialled {
        match crate::proxy::plan_call(shared, dialled, &target.from, call_sid, &account.auth_token).await {
            Some(crate::proxy::CallPlan::Twiml(markup)) => twiml = Some(markup),
            Some(crate::proxy::CallPlan::Webhook(url)) => {
                target.voice_url = Some(url);
                target.voice_method = "POST".to_owned();
                target.voice_fallback_url = None;
            }
            None => {}
        }
    }
    let now = Utc::now();
    let from = target.from.clone();
    let record = CallRecord {
        sid: call_sid,
        account_sid: target.account_sid,
        parent_call_sid: None,
        phone_number_sid: target.phone_number_sid,
        from: from.clone(),
        to: target.to.clone(),
        status: CallStatus::Ringing,
        direction: CallDirection::Inbound,
        start_time: None,
        end_time: None,
        duration: None,
        answered_by: None,
        price: None,
        date_created: now,
        date_updated: now,
        date_scheduled: None,
    };
    shared.records.insert_call(&record);
    tracing::info!(call_sid = %call_sid, from = %from, to = %target.to, "inbound call");
    let config = engine::CallConfig {
        call_sid,
        account_sid: target.account_sid,
        from,
        to: target.to.clone(),
        direction: CallDirection::Inbound,
        voice_url: target.voice_url.clone().unwrap_or_default(),
        voice_method: http_method(&target.voice_method),
        fallback_url: target.voice_fallback_url.clone().filter(|u| !u.is_empty()),
        fallback_method: http_method(&target.voice_fallback_method),
        public_url: shared.config.public_url.clone(),
        twiml,
        extra_params: target.extra_params.clone(),
    };
    let callbacks = StatusCallbacks::new(
        shared,
        target.status_callback.clone(),
        http_method(&target.status_callback_method),
        vec!["completed".to_owned()],
        account.auth_token.clone(),
    );
    let (registration, control) = shared.calls.register_parties(
        record.account_sid,
        call_sid,
        record.from.clone(),
        record.to.clone(),
    );
    Ok(ActiveCall::new(ActiveCallParts {
        shared: shared.clone(),
        sip: sip.clone(),
        leg,
        config,
        stream,
        media_rx,
        negotiated,
        webrtc_answer,
        record,
        auth_token: account.auth_token,
        callbacks,
        control,
        registration,
        answered_at: None,
        // Twilio's cap on every call: a caller gone without a BYE, on a looping <Play>, would
        // otherwise hold its ports for ever.
        time_limit: Some(tokio::time::Instant::now() + MAX_CALL_DURATION),
    }))
}

/// A browser's re-INVITE with a new offer (hold, resume): the stream holds or resumes as the
/// offer says, its WebRTC session (on the media worker) answers, and `response` (a 200 with our
/// headers) goes out with that answer, or a 488 when the session refuses the offer.
pub(crate) fn answer_webrtc_reinvite(
    shared: &Arc<Shared>,
    tx: ServerTxId,
    stream: &Stream,
    request: &Request,
    mut response: Response,
) {
    let offer = String::from_utf8_lossy(&request.body).into_owned();
    stream.set_hold(crate::media::webrtc::offer_holds(&offer));
    let answer = stream.webrtc_offer(offer);
    let sip = shared.sip.clone();
    let refused = Response::from_request(request, 488, "Not Acceptable Here");
    tokio::spawn(async move {
        let response = match tokio::time::timeout(Duration::from_secs(2), answer).await {
            Ok(Ok(Ok(sdp))) => {
                response.set_body("application/sdp", sdp.into_bytes());
                response
            }
            outcome => {
                tracing::info!(?outcome, "browser re-INVITE refused");
                refused
            }
        };
        let _ = sip.send(SipCommand::Respond { tx, response });
    });
}

/// What [`answer_offer`] makes: the stream, its events, what was negotiated, and the answer's
/// SDP when it is a WebRTC one.
pub(crate) type AnsweredOffer = (
    Stream,
    mpsc::UnboundedReceiver<MediaEvent>,
    Negotiated,
    Option<String>,
);

/// A media stream for an INVITE's offer: plain RTP negotiated here, or a browser's WebRTC offer
/// answered by a `WebRtcSession` that the stream then runs. The answer's SDP is built from the
/// `Negotiated` for RTP, and is the returned string for WebRTC.
pub(crate) fn answer_offer(
    shared: &Shared,
    body: &str,
) -> Result<AnsweredOffer, (u16, &'static str)> {
    let allocate = || {
        let (media_tx, media_rx) = mpsc::unbounded_channel();
        let stream = shared.media.allocate(media_tx).map_err(|e| {
            tracing::warn!(error = %e, "no RTP ports for a new call");
            (503, "Service Unavailable")
        })?;
        Ok::<_, (u16, &'static str)>((stream, media_rx))
    };
    if crate::media::webrtc::is_webrtc_sdp(body) {
        let (stream, media_rx) = allocate()?;
        let local = std::net::SocketAddr::new(shared.config.advertise_ip, stream.local_port);
        let (session, answer, media) = crate::media::webrtc::WebRtcSession::answer(body, local)
            .map_err(|e| {
                tracing::info!(error = %e, "WebRTC offer refused");
                (488, "Not Acceptable Here")
            })?;
        stream.set_webrtc(session, media);
        return Ok((
            stream,
            media_rx,
            crate::originate::webrtc_negotiated(media),
            Some(answer),
        ));
    }
    let offer = SessionDescription::parse(body).map_err(|_| (400, "Malformed SDP"))?;
    let negotiated = sip::sdp::negotiate(&offer, &[sip::sdp::Codec::Pcmu, sip::sdp::Codec::Pcma])
        .map_err(|_| (488, "Not Acceptable Here"))?;
    let (stream, media_rx) = allocate()?;
    apply_media(&stream, &negotiated);
    Ok((stream, media_rx, negotiated, None))
}

/// The longest an inbound call may last (Twilio's 4 hours; outbound calls take `TimeLimit`).
pub const MAX_CALL_DURATION: Duration = Duration::from_secs(4 * 60 * 60);

/// Everything an [`ActiveCall`] starts from.
pub(crate) struct ActiveCallParts {
    pub shared: Arc<Shared>,
    pub sip: mpsc::UnboundedSender<SipCommand>,
    pub leg: Leg,
    pub config: engine::CallConfig,
    pub stream: Stream,
    pub media_rx: mpsc::UnboundedReceiver<MediaEvent>,
    pub negotiated: Negotiated,
    /// A browser leg's SDP answer (str0m's), sent instead of one built from `negotiated`.
    pub webrtc_answer: Option<String>,
    pub record: CallRecord,
    pub auth_token: String,
    pub callbacks: StatusCallbacks,
    pub control: mpsc::UnboundedReceiver<CallControl>,
    pub registration: Registration,
    /// Set for a call that reaches the loop already answered (outbound).
    pub answered_at: Option<SystemTime>,
    /// When to hang up at the latest (`TimeLimit`).
    pub time_limit: Option<tokio::time::Instant>,
}

/// An answered leg's media: a browser's WebRTC session, or plain RTP as negotiated.
pub(crate) fn apply_leg_media(
    stream: &Stream,
    n: &Negotiated,
    webrtc: Option<
        Box<(
            crate::media::webrtc::WebRtcSession,
            crate::media::webrtc::WebRtcMedia,
        )>,
    >,
) {
    match webrtc {
        Some(w) => {
            let (session, media) = *w;
            stream.set_webrtc(session, media);
        }
        None => apply_media(stream, n),
    }
}

pub(crate) fn apply_media(stream: &Stream, n: &Negotiated) {
    let codec = match n.codec {
        sip::sdp::Codec::Pcma => media::Codec::Pcma,
        _ => media::Codec::Pcmu,
    };
    stream.set_remote(
        n.remote_rtp,
        n.remote_rtcp,
        codec,
        n.codec.payload_type(),
        n.telephone_event_pt,
    );
    stream.set_hold(n.on_hold);
}

/// The caller as Twilio shows it: the user part for phone-like users, else the whole SIP URI.
fn caller_id(uri: &str) -> String {
    match dialled_number(uri) {
        Some(user)
            if user
                .trim_start_matches('+')
                .chars()
                .all(|c| c.is_ascii_digit()) =>
        {
            user.to_owned()
        }
        _ => uri.to_owned(),
    }
}

pub(crate) fn http_method(m: &str) -> HttpMethod {
    if m.eq_ignore_ascii_case("GET") {
        HttpMethod::Get
    } else {
        HttpMethod::Post
    }
}

pub(crate) struct ActiveCall {
    pub(crate) shared: Arc<Shared>,
    sip: mpsc::UnboundedSender<SipCommand>,
    leg: Leg,
    engine: engine::Call,
    pub(crate) stream: Option<Stream>,
    media_rx: mpsc::UnboundedReceiver<MediaEvent>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    negotiated: Negotiated,
    webrtc_answer: Option<String>,
    sdp_version: u64,
    session_id: u64,
    pub(crate) record: CallRecord,
    pub(crate) auth_token: String,
    callbacks: StatusCallbacks,
    control: mpsc::UnboundedReceiver<CallControl>,
    _registration: Registration,
    time_limit: Option<tokio::time::Instant>,
    pub(crate) answered_at: Option<SystemTime>,
    /// The playback the engine last asked for; a late-loaded file for another id is dropped.
    pub(crate) playing: Option<u64>,
    recordings: Vec<(u64, RecordingSid, DateTime<Utc>)>,
    finished: bool,
    /// The running `<Dial>` (see `dial.rs`).
    pub(crate) dial: Option<dial::Dial>,
    /// A dial that ended and waits for its recording file before the engine hears of it.
    pub(crate) pending_dial_end: Option<dial::PendingDialEnd>,
    /// The conference the call takes part in (`<Dial><Conference>`).
    pub(crate) conference: Option<participant::ConferenceLeg>,
    /// Wait or hold music playing (a queue's or a room's), and the next id it may use.
    pub(crate) waiting: Option<engine::wait::WaitLoop>,
    pub(crate) next_wait_id: u64,
    /// The queue the call waits in (`<Enqueue>`), and the caller an agent's
    /// `<Dial><Queue>` took.
    pub(crate) queued: Option<queue::QueuedLeg>,
    pub(crate) dequeue: Option<queue::DequeueLeg>,
    /// Turns the engine's instants into the wall-clock times stored.
    clock: CallClock,
    /// The rates that price the call and its `<Dial>` legs, as they stood when it started.
    pub(crate) rates: Option<Arc<billing::RateTable>>,
}

/// One clock per call: the engine's instants (answer, end) become wall-clock times by their
/// distance from one moment read on both clocks at the start, so what is stored is what the
/// core decided, not a second reading of another clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallClock {
    instant: std::time::Instant,
    wall: DateTime<Utc>,
}

impl CallClock {
    pub(crate) fn start() -> CallClock {
        CallClock {
            instant: std::time::Instant::now(),
            wall: Utc::now(),
        }
    }

    pub(crate) fn wall(&self, at: std::time::Instant) -> DateTime<Utc> {
        let since = |d: Duration| {
            chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::zero())
        };
        if at >= self.instant {
            self.wall + since(at - self.instant)
        } else {
            self.wall - since(self.instant - at)
        }
    }
}

impl ActiveCall {
    pub(crate) fn new(p: ActiveCallParts) -> ActiveCall {
        let clock = CallClock::start();
        let engine = engine::Call::new(clock.instant, p.config, rand::thread_rng().gen());
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        ActiveCall {
            shared: p.shared,
            sip: p.sip,
            leg: p.leg,
            engine,
            stream: Some(p.stream),
            media_rx: p.media_rx,
            done_tx,
            done_rx,
            negotiated: p.negotiated,
            webrtc_answer: p.webrtc_answer,
            sdp_version: 1,
            session_id: rand::thread_rng().gen::<u32>() as u64,
            record: p.record,
            auth_token: p.auth_token,
            callbacks: p.callbacks,
            control: p.control,
            _registration: p.registration,
            time_limit: p.time_limit,
            answered_at: p.answered_at,
            playing: None,
            recordings: Vec::new(),
            finished: false,
            dial: None,
            pending_dial_end: None,
            conference: None,
            waiting: None,
            next_wait_id: participant::WAIT_ID_BASE,
            queued: None,
            dequeue: None,
            clock,
            rates: None,
        }
    }

    pub(crate) async fn run(mut self) {
        self.rates = self.shared.rates.for_account(&self.shared.store, &self.record.account_sid).await;
        loop {
            self.drain().await;
            if self.finished {
                break;
            }
            let deadline = [self.engine.poll_timeout(), self.wait_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let time_limit = self.time_limit;
            let limit = async {
                match time_limit {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(signal) = self.leg.signals.recv() => self.handle_signal(signal),
                Some(event) = self.media_rx.recv() => self.handle_media(event).await,
                Some(done) = self.done_rx.recv() => self.handle_done(done),
                Some(control) = self.control.recv() => self.handle_control(control),
                wake = dial::wait(&mut self.dial) => self.handle_dial(wake).await,
                event = participant::room_event(&mut self.conference) => self.handle_room_event(event),
                event = queue::queue_event(&mut self.queued) => self.handle_queue_event(event),
                event = queue::agent_event(&mut self.dequeue) => self.handle_agent_event(event),
                () = dial::wait_pending(&self.pending_dial_end) => self.handle_pending_dial_timeout(),
                () = sleep => {
                    let now = std::time::Instant::now();
                    if let Some(wait) = self.waiting.as_mut() {
                        wait.handle_timeout(now);
                    }
                    self.engine.handle_timeout(now);
                }
                () = limit => {
                    tracing::info!(call_sid = %self.record.sid, "time limit reached: hanging up");
                    self.time_limit = None;
                    self.hang_up_now();
                }
            }
        }
        // A dial recording stopped as the caller hung up still gets its row once its file closes.
        if self.pending_dial_end.is_some() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while self.pending_dial_end.is_some() {
                match tokio::time::timeout_at(deadline, self.media_rx.recv()).await {
                    Ok(Some(event)) => {
                        self.handle_dial_media(&event).await;
                    }
                    _ => break,
                }
            }
        }
        // Dropping the stream releases its sockets and ports.
        self.stream.take();
    }

    pub(crate) fn input(&mut self, input: engine::Input) {
        if input == engine::Input::RemoteHangup && self.dial.is_some() {
            // The engine hears of the dial's end before the hang-up (Twilio still requests `action`).
            self.end_dial(dial::EndCause::ParentGone);
        }
        if input == engine::Input::RemoteHangup && self.conference.is_some() {
            self.end_conference(Some(engine::conference::LeaveReason::HungUp));
        }
        if input == engine::Input::RemoteHangup && self.dequeue.is_some() {
            let bridged = self.dequeue_bridged();
            self.end_dequeue(if bridged {
                engine::DialCallStatus::Completed
            } else {
                engine::DialCallStatus::Canceled
            });
        }
        self.engine.handle_input(std::time::Instant::now(), input);
    }

    pub(crate) fn engine_status(&self) -> CallStatus {
        self.engine.status()
    }

    /// An API update: redirect the running document, or end the call.
    fn handle_control(&mut self, control: CallControl) {
        match control {
            CallControl::Redirect { url, method } => {
                self.input(engine::Input::Redirect { url, method })
            }
            CallControl::Twiml(document) => self.input(engine::Input::Twiml { document }),
            // Twilio: `canceled` only ends calls not yet answered.
            CallControl::End(CallStatus::Canceled) if self.answered_at.is_some() => {}
            CallControl::End(_) => self.hang_up_now(),
        }
    }

    /// Ends the call from our side outside the markup (API update, time limit), as `<Hangup>`
    /// would: BYE once answered, 487 before.
    fn hang_up_now(&mut self) {
        if self.answered_at.is_some() {
            self.send_bye();
        } else {
            self.respond_invite(487, "Request Terminated");
        }
        if let Some(s) = &self.stream {
            s.stop_playback();
        }
        self.input(engine::Input::RemoteHangup);
    }

    fn handle_signal(&mut self, signal: CallSignal) {
        match signal {
            CallSignal::Ack { .. } | CallSignal::RequestTimeout => {}
            CallSignal::Response { response } => {
                // A retransmitted 2xx to our INVITE: its ACK was lost, send it again.
                let to_invite = response.cseq().is_some_and(|(_, m)| m == Method::Invite);
                if to_invite && (200..300).contains(&response.status()) {
                    if let Some(ack) = self.leg.ack.clone() {
                        let message = sip::Message::Request(ack);
                        let _ = self.sip.send(SipCommand::Stateless {
                            message,
                            destination: self.leg.peer,
                            transport: self.leg.transport,
                        });
                    }
                }
            }
            CallSignal::Cancel => {
                if self.answered_at.is_none() {
                    self.respond_invite(487, "Request Terminated");
                    self.input(engine::Input::RemoteHangup);
                }
            }
            CallSignal::AckTimeout => {
                tracing::info!(call_sid = %self.record.sid, "no ACK for our 200 OK: hanging up");
                self.send_bye();
                self.input(engine::Input::RemoteHangup);
            }
            CallSignal::Request { tx, request } => match request.method {
                Method::Bye => {
                    self.respond(tx, &request, 200, "OK");
                    self.input(engine::Input::RemoteHangup);
                }
                Method::Invite => self.handle_reinvite(tx, &request),
                Method::Info => {
                    self.respond(tx, &request, 200, "OK");
                    if let Some(digit) = dtmf_relay_digit(&request) {
                        self.input(engine::Input::Dtmf { digit });
                    }
                }
                _ => self.respond(tx, &request, 405, "Method Not Allowed"),
            },
        }
    }

    fn handle_reinvite(&mut self, tx: ServerTxId, request: &Request) {
        if self.webrtc_answer.is_some() {
            let response = self.answer_response(request);
            let offer = std::str::from_utf8(&request.body).unwrap_or_default();
            match &self.stream {
                Some(stream) if crate::media::webrtc::is_webrtc_sdp(offer) => {
                    answer_webrtc_reinvite(&self.shared, tx, stream, request, response);
                }
                // No new offer (a session refresh): the answer it already has.
                _ => {
                    let _ = self.sip.send(SipCommand::Respond { tx, response });
                }
            }
            return;
        }
        let negotiated = std::str::from_utf8(&request.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| SessionDescription::parse(b).ok())
            .and_then(|offer| {
                sip::sdp::negotiate(&offer, &[sip::sdp::Codec::Pcmu, sip::sdp::Codec::Pcma]).ok()
            });
        match negotiated {
            Some(n) => {
                if let Some(stream) = &self.stream {
                    apply_media(stream, &n);
                }
                self.negotiated = n;
                self.sdp_version += 1;
                let response = self.answer_response(request);
                let _ = self.sip.send(SipCommand::Respond { tx, response });
            }
            None if request.body.is_empty() => {
                // An offerless re-INVITE (session refresh): offer our current session again.
                self.sdp_version += 1;
                let response = self.answer_response(request);
                let _ = self.sip.send(SipCommand::Respond { tx, response });
            }
            None => self.respond(tx, request, 488, "Not Acceptable Here"),
        }
    }

    fn respond(&self, tx: ServerTxId, request: &Request, status: u16, reason: &str) {
        let response = Response::from_request(request, status, reason);
        let _ = self.sip.send(SipCommand::Respond { tx, response });
    }

    fn respond_invite(&self, status: u16, reason: &str) {
        let Some(new) = &self.leg.invite else { return };
        let mut response = Response::from_request(&new.request, status, reason);
        response.set_to_tag(&new.local_tag);
        let _ = self.sip.send(SipCommand::Respond {
            tx: new.tx,
            response,
        });
    }

    /// A 200 OK carrying our SDP answer for `request` (the INVITE or a re-INVITE).
    fn answer_response(&self, request: &Request) -> Response {
        let mut response = Response::from_request(request, 200, "OK");
        if let Some(dialog) = &self.leg.dialog {
            response.set_to_tag(&dialog.id().local_tag);
        }
        let config = &self.shared.config;
        response
            .headers
            .push("Contact", &config.contact_uri_for(self.leg.transport));
        response.headers.push("Allow", ALLOW);
        response
            .headers
            .push("X-Dialtone-Call-Sid", self.record.sid.as_str());
        if let Some(sdp) = &self.webrtc_answer {
            response.set_body("application/sdp", sdp.clone().into_bytes());
            return response;
        }
        let port = self.stream.as_ref().map_or(0, |s| s.local_port);
        let sdp = sip::sdp::answer(
            &self.negotiated,
            config.advertise_ip,
            port,
            self.session_id,
            self.sdp_version,
        );
        response.set_body("application/sdp", sdp.into_bytes());
        response
    }

    fn send_bye(&mut self) {
        let Some(dialog) = self.leg.dialog.as_mut() else {
            return;
        };
        let bye = dialog.request(Method::Bye);
        let _ = self.sip.send(SipCommand::Request {
            request: bye,
            destination: self.leg.peer,
            transport: self.leg.transport,
            reply: Some(self.leg.self_signals.clone()),
        });
    }

    async fn drain(&mut self) {
        loop {
            if let Some(signal) = self.drain_waiting() {
                self.handle_wait_signal(signal);
            }
            let Some(output) = self.engine.poll_output() else {
                break;
            };
            match output {
                Output::FetchWebhook {
                    request_id,
                    url,
                    method,
                    params,
                } => self.fetch(request_id, url, method, params),
                Output::Answer => self.answer().await,
                Output::Reject { reason } => {
                    let (status, text) = match reason {
                        engine::RejectReason::Busy => (486, "Busy Here"),
                        _ => (603, "Decline"),
                    };
                    self.respond_invite(status, text);
                }
                Output::Play { id, source, loops } => self.play(id, source, loops),
                Output::StopPlayback => {
                    self.playing = None;
                    if let Some(s) = &self.stream {
                        s.stop_playback();
                    }
                }
                Output::StartRecording {
                    id,
                    recording_sid,
                    max_length,
                    silence_timeout,
                } => {
                    let path = self.recording_path(recording_sid);
                    if let Some(parent) = path.parent() {
                        let _ = tokio::fs::create_dir_all(parent).await;
                    }
                    self.recordings.push((id, recording_sid, Utc::now()));
                    if let Some(s) = &self.stream {
                        s.start_recording(id, path, max_length, silence_timeout);
                    }
                }
                Output::StopRecording { id } => {
                    if let Some(s) = &self.stream {
                        s.stop_recording(id);
                    }
                }
                Output::Hangup => {
                    if self.answered_at.is_some() {
                        self.send_bye();
                    } else {
                        self.respond_invite(603, "Decline");
                    }
                    if let Some(s) = &self.stream {
                        s.stop_playback();
                    }
                }
                Output::Notify { code, message } => self.notify(code, message).await,
                Output::Finished {
                    status,
                    answered_at,
                    ended_at,
                } => {
                    self.finish(status, answered_at, ended_at).await;
                    self.finished = true;
                }
                Output::Dial { id, dial } => match dial.join {
                    Some(twiml::DialJoin::Conference(_)) => self.start_conference(id, dial).await,
                    Some(twiml::DialJoin::Queue(_)) => self.start_dequeue(id, dial).await,
                    None => {
                        // `<Dial><Number>` outside its calling window: someone waits live, so
                        // the leg is refused (by default) rather than deferred.
                        let refused = crate::quiet_hours::refused_dial_targets(&self.shared, &self.record.account_sid, &dial).await;
                        for (_, why) in &refused {
                            self.notify(api::QUIET_HOURS_CODE, why.clone()).await;
                        }
                        let refused: Vec<usize> = refused.into_iter().map(|(i, _)| i).collect();
                        self.start_dial(id, dial, &refused)
                    }
                },
                Output::CancelDial { id } => {
                    if !self.cancel_conference(id) && !self.cancel_dequeue(id) {
                        self.cancel_dial(id);
                    }
                }
                Output::Enqueue { id, enqueue } => self.start_enqueue(id, enqueue).await,
                Output::LeaveQueue { id } => self.leave_queue(id),
            }
        }
    }

    fn recording_path(&self, sid: RecordingSid) -> std::path::PathBuf {
        crate::records::recording_path(
            &self.shared.config,
            &self.record.account_sid,
            &self.record.sid,
            &sid,
        )
    }

    pub(crate) async fn answer(&mut self) {
        if self.answered_at.is_some() {
            return;
        }
        let Some(new) = self.leg.invite.clone() else {
            return;
        };
        let contact = self.shared.config.contact_uri_for(self.leg.transport);
        self.leg.dialog = Dialog::uas(&new.request, &new.local_tag, &contact).ok();
        let response = self.answer_response(&new.request);
        let _ = self.sip.send(SipCommand::Respond {
            tx: new.tx,
            response,
        });
        self.answered_at = Some(SystemTime::now());
        self.record.status = CallStatus::InProgress;
        self.record.start_time = Some(Utc::now());
        self.record.date_updated = Utc::now();
        self.shared.records.update_call(&self.record);
    }

    fn fetch(
        &self,
        request_id: u64,
        url: String,
        method: HttpMethod,
        params: Vec<(String, String)>,
    ) {
        let request = WebhookRequest {
            url,
            method,
            params,
            auth_token: self.auth_token.clone(),
        };
        self.spawn_fetch(request_id, request);
    }

    /// Requests a document in the background; the reply comes back as `Done::Webhook`.
    pub(crate) fn spawn_fetch(&self, request_id: u64, request: WebhookRequest) {
        let webhooks = self.shared.webhooks.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = webhooks.fetch(request).await;
            let _ = done.send(Done::Webhook { request_id, result });
        });
    }

    pub(crate) fn play(&mut self, id: u64, source: MediaSource, loops: u32) {
        self.playing = Some(id);
        let shared = self.shared.clone();
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let result = shared.load_source(source).await;
            let _ = done.send(Done::Audio { id, loops, result });
        });
    }

    fn handle_done(&mut self, done: Done) {
        match done {
            Done::Webhook { request_id, result } => {
                let result = result
                    .map(engine::WebhookReply::from)
                    .map_err(engine::WebhookFailure::from);
                if Self::is_wait_id(request_id) {
                    if let Some(wait) = self.waiting.as_mut() {
                        wait.handle_webhook(std::time::Instant::now(), request_id, result);
                    }
                    return;
                }
                self.input(engine::Input::WebhookResult { request_id, result });
            }
            Done::Audio { id, loops, result } => {
                if self.playing != Some(id) {
                    return;
                }
                match result {
                    Ok(samples) => {
                        if let Some(s) = &self.stream {
                            s.play(id, samples, loops);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(call_sid = %self.record.sid, reason, "playback failed");
                        if Self::is_wait_id(id) {
                            if let Some(wait) = self.waiting.as_mut() {
                                wait.handle_playback_done(std::time::Instant::now(), id);
                            }
                            return;
                        }
                        self.input(engine::Input::PlaybackFailed { id, reason });
                    }
                }
            }
        }
    }

    async fn handle_media(&mut self, event: MediaEvent) {
        if self.handle_dial_media(&event).await {
            return;
        }
        match event {
            MediaEvent::PlaybackDone { id } => {
                if self.playing == Some(id) {
                    self.playing = None;
                }
                if self.announcement_played(id) {
                    return;
                }
                if Self::is_wait_id(id) {
                    if let Some(wait) = self.waiting.as_mut() {
                        wait.handle_playback_done(std::time::Instant::now(), id);
                    }
                    return;
                }
                self.input(engine::Input::PlaybackDone { id });
            }
            MediaEvent::Dtmf { digit } if !self.handle_dial_digit(digit) => {
                self.input(engine::Input::Dtmf { digit });
            }
            MediaEvent::Dtmf { .. } => {}
            MediaEvent::RecordingStopped {
                id,
                duration,
                stop,
                path,
            } => {
                self.save_recording(id, duration, &path).await;
                self.input(engine::Input::RecordingStopped { id, duration, stop });
            }
            MediaEvent::RecordingFailed { id, reason } => {
                // The engine knows no failed recording: an empty one makes it go on to the next verb.
                tracing::error!(call_sid = %self.record.sid, reason, "recording failed");
                self.notify(12400, format!("recording failed: {reason}"))
                    .await;
                self.input(engine::Input::RecordingStopped {
                    id,
                    duration: Duration::ZERO,
                    stop: RecordStop::Stopped,
                });
            }
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    async fn save_recording(&mut self, id: u64, duration: Duration, path: &std::path::Path) {
        let Some(&(_, sid, started)) = self.recordings.iter().find(|(rid, _, _)| *rid == id) else {
            return;
        };
        if duration.is_zero() {
            let _ = tokio::fs::remove_file(path).await;
            return;
        }
        let now = Utc::now();
        let file_name = path
            .strip_prefix(&self.shared.config.recordings_dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| format!("{}/{sid}.wav", self.record.account_sid));
        let record = RecordingRecord {
            conference_sid: None,
            sid,
            account_sid: self.record.account_sid,
            call_sid: self.record.sid,
            duration: duration.as_secs_f64().round() as u32,
            channels: 1,
            status: "completed".into(),
            source: "RecordVerb".into(),
            start_time: started,
            date_created: now,
            date_updated: now,
            file_name,
        };
        // The call's row goes first: the recording refers to it.
        self.shared.records.flush().await;
        if let Err(e) = self.shared.store.insert_recording(&record).await {
            tracing::error!(error = %e, recording_sid = %sid, "could not write the recording record");
        }
    }

    pub(crate) async fn notify(&self, code: u32, message: String) {
        tracing::warn!(call_sid = %self.record.sid, code, message, "call error");
        let now = Utc::now();
        let notification = NotificationRecord {
            sid: model::records::NotificationSid::generate(),
            account_sid: self.record.account_sid,
            call_sid: Some(self.record.sid),
            error_code: code,
            log: NotificationRecord::LOG_ERROR,
            message_text: message,
            message_date: now,
            request_url: None,
            request_method: None,
            response_body: None,
            date_created: now,
            date_updated: now,
        };
        self.shared.records.flush().await;
        if let Err(e) = self.shared.store.insert_notification(&notification).await {
            tracing::error!(error = %e, "could not write the notification");
        }
    }

    /// Closes the call's record with the times the engine reports.
    async fn finish(
        &mut self,
        status: CallStatus,
        answered_at: Option<std::time::Instant>,
        ended_at: std::time::Instant,
    ) {
        let end = self.clock.wall(ended_at);
        self.record.status = status;
        self.record.end_time = Some(end);
        self.record.date_updated = Utc::now().max(end);
        self.record.start_time = match answered_at {
            Some(t) => Some(self.clock.wall(t)),
            None => self.record.start_time.or(Some(self.record.date_created)),
        };
        self.record.duration = Some(match answered_at {
            Some(t) => ended_at.saturating_duration_since(t).as_secs_f64().round() as u32,
            None => 0,
        });
        let answered = answered_at.map(|t| ended_at.saturating_duration_since(t));
        self.record.price = crate::pricing::call_price(self.rates.as_deref(), &self.record, answered);
        self.shared.records.update_call(&self.record);
        self.shared.records.flush().await;
        tracing::info!(call_sid = %self.record.sid, status = %status, duration = self.record.duration, "call ended");
        self.callbacks.post("completed", &self.record);
    }
}

/// The digit of an `application/dtmf-relay` INFO body (`Signal=5`).
fn dtmf_relay_digit(request: &Request) -> Option<char> {
    let body = std::str::from_utf8(&request.body).ok()?;
    let line = body
        .lines()
        .find(|l| l.trim_start().to_ascii_lowercase().starts_with("signal"))?;
    let value = line.split_once('=')?.1.trim();
    let c = value.chars().next()?;
    matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_instants_become_wall_times_by_their_distance() {
        let clock = CallClock::start();
        let later = clock.instant + Duration::from_millis(61_500);
        assert_eq!(
            clock.wall(later) - clock.wall,
            chrono::Duration::milliseconds(61_500)
        );
        assert_eq!(clock.wall(clock.instant), clock.wall);
        if let Some(earlier) = clock.instant.checked_sub(Duration::from_secs(2)) {
            assert_eq!(
                clock.wall - clock.wall(earlier),
                chrono::Duration::seconds(2)
            );
        }
    }

    #[test]
    fn dialled_number_takes_the_user_part() {
        assert_eq!(
            dialled_number("sip:+15551234567@127.0.0.1;user=phone"),
            Some("+15551234567")
        );
        assert_eq!(dialled_number("sip:100@example.com:5060"), Some("100"));
        assert_eq!(dialled_number("tel:+15551234567"), Some("+15551234567"));
        assert_eq!(dialled_number("sip:example.com"), Some("example.com"));
        assert_eq!(dialled_number("http://x"), None);
    }

    #[test]
    fn caller_id_is_the_number_or_the_uri() {
        assert_eq!(caller_id("sip:+15550001111@10.0.0.1"), "+15550001111");
        assert_eq!(caller_id("sip:alice@example.com"), "sip:alice@example.com");
    }
}
