//! API-originated calls: [`create`] is `POST Calls.json`: the call waits in `queued` for the
//! account's calls-per-second slot, then rings through [`crate::originate::originate`], then
//! runs the shared call loop of `call.rs`. Set-up time is never billed: the call's `start_time`
//! and `duration` count from the answer. [`update`] changes a live call.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use api::{CallUpdate, CreateCall, HookError, QUIET_HOURS_CODE};
use chrono::Utc;
use model::records::{CallRecord, RecordingRecord};
use model::{AccountSid, CallDirection, CallSid, CallStatus, RecordingSid};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::call::{apply_leg_media, http_method, ActiveCall, ActiveCallParts, StatusCallbacks};
use crate::calls_registry::{CallControl, Registration};
use crate::media::MediaEvent;
pub use crate::trunk::{Trunk, TrunkError};
use crate::quiet_hours::Verdict;
use crate::{fraud, Shared};

use crate::originate::{internal, originate, rejected, route, LegEvent, LegRequest, LegTarget};

/// `POST Calls.json`: checks the destination and its calling window; stores the call `queued`
/// and starts it in the background, or stores it `scheduled` for the window's opening
/// (`crate::quiet_hours`), or refuses it (99100). Returns the record.
pub async fn create(shared: Arc<Shared>, req: CreateCall) -> Result<CallRecord, HookError> {
    let (account, route) = admit(&shared, &req).await?;
    match crate::quiet_hours::check(&shared, &req.account_sid, &req.to, &req.quiet_hours).await? {
        Verdict::Place => {}
        Verdict::Refuse(why) => {
            tracing::info!(to = %req.to, why, "outbound call refused: outside its calling window");
            return Err(rejected(QUIET_HOURS_CODE, why));
        }
        Verdict::Defer { at, why } => return crate::quiet_hours::defer(&shared, &req, at, &why).await,
    }
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
        price: None,
        date_created: now,
        date_updated: now,
        date_scheduled: None,
    };
    // The API answers with this record and a client may fetch it at once: wait for the write.
    shared.records.insert_call(&record);
    shared.records.flush().await;
    launch(shared, req, record.clone(), account, route);
    Ok(record)
}

/// A `scheduled` call whose window has opened: checked again like a new one, claimed
/// (`scheduled` -> `queued`, unless it was canceled meanwhile) and started. A call that can no
/// longer be placed (account suspended, destination refused) ends `failed`.
pub(crate) async fn place(shared: Arc<Shared>, req: CreateCall, record: &mut CallRecord) -> Result<(), HookError> {
    let admitted = admit(&shared, &req).await;
    let now = Utc::now();
    let status = if admitted.is_ok() { CallStatus::Queued } else { CallStatus::Failed };
    let claimed = shared
        .store
        .leave_scheduled(&record.account_sid, &record.sid, status, now)
        .await
        .map_err(internal)?;
    let (account, route) = admitted?;
    if !claimed {
        return Ok(());
    }
    record.status = CallStatus::Queued;
    record.date_updated = now;
    launch(shared, req, record.clone(), account, route);
    Ok(())
}

/// What every outbound call passes before it may ring: an active account, a destination the
/// fraud rules allow, and a route.
async fn admit(
    shared: &Arc<Shared>,
    req: &CreateCall,
) -> Result<(model::records::AccountRecord, crate::originate::Route), HookError> {
    let account = shared
        .store
        .account(&req.account_sid)
        .await
        .map_err(internal)?
        .ok_or(HookError::NotFound)?;
    if !crate::call::may_call(shared, &account)
        .await
        .map_err(internal)?
    {
        return Err(HookError::Rejected {
            code: 10001,
            message: "Account is not active".into(),
        });
    }
    fraud::check_destination(&req.account_sid, &req.to)
        .map_err(|e| rejected(fraud::NOT_AUTHORIZED_CODE, e.to_string()))?;
    // Refuse what cannot be routed now rather than fail it later.
    let route = route(shared, &LegTarget::Address(req.to.clone())).await?;
    Ok((account, route))
}

/// Starts a stored `queued` call in the background.
fn launch(
    shared: Arc<Shared>,
    req: CreateCall,
    record: CallRecord,
    account: model::records::AccountRecord,
    route: crate::originate::Route,
) {
    // The account's and the trunk's calls-per-second slots, taken now, in the order the calls
    // are started (the call's task may start late on a busy node): until then it stays `queued`.
    let fraud_slot = fraud::reserve_slot(&req.account_sid, std::time::Instant::now());
    let trunk_slot = route.reserve_trunk_slot(fraud_slot);
    let (registration, control) = shared.calls.register(record.account_sid, record.sid);
    tracing::info!(call_sid = %record.sid, to = %record.to, "outbound call");
    let callbacks = StatusCallbacks::new(
        &shared,
        req.status_callback.clone(),
        http_method(&req.status_callback_method),
        req.status_callback_events.clone(),
        account.auth_token.clone(),
    );
    let dialing = Dialing {
        shared,
        req,
        record,
        auth_token: account.auth_token,
        callbacks,
        fraud_slot,
        trunk_slot,
    };
    tokio::spawn(dialing.run(registration, control));
}

/// `POST Calls/{CallSid}.json`: hands the change to the live call, or says why it cannot.
pub async fn update(
    shared: Arc<Shared>,
    account: AccountSid,
    sid: CallSid,
    update: CallUpdate,
) -> Result<CallRecord, HookError> {
    let record = shared
        .store
        .call(&account, &sid)
        .await
        .map_err(internal)?
        .ok_or(HookError::NotFound)?;
    let changes_document = update.twiml.is_some() || update.redirect.is_some();
    if record.status == CallStatus::Scheduled {
        if update.status.is_some() {
            if let Some(canceled) = crate::quiet_hours::cancel(&shared, &account, &sid).await? {
                return Ok(canceled);
            }
        } else if changes_document {
            return Err(rejected(
                21220,
                "Call is scheduled for its calling window: cancel it (Status=canceled) and create it again to change what it runs",
            ));
        }
        return shared.store.call(&account, &sid).await.map_err(internal)?.ok_or(HookError::NotFound);
    }
    if !shared.calls.is_live(&account, &sid) {
        if changes_document {
            return Err(rejected(
                21220,
                format!(
                    "Call is not in-progress. Cannot redirect. (it is {})",
                    record.status
                ),
            ));
        }
        return Ok(record);
    }
    let mut controls = Vec::new();
    if let Some(twiml) = update.twiml {
        controls.push(CallControl::Twiml(twiml));
    } else if let Some((url, method)) = update.redirect {
        controls.push(CallControl::Redirect {
            url,
            method: http_method(&method),
        });
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

/// Media ids of the call-wide recording (`Record=true`) and of `SendDigits`, far above the ids
/// the engine hands out (it counts up from 1).
const CALL_RECORDING_ID: u64 = u64::MAX - 1;
const SEND_DIGITS_ID: u64 = u64::MAX - 2;

/// Passes the stream's events on to the call loop, except those of the call recording (whose
/// row is stored here when it ends, after the call if need be) and of `SendDigits`.
fn forward_media(
    shared: Arc<Shared>,
    call: CallRecord,
    recording: Option<(RecordingSid, chrono::DateTime<Utc>)>,
    mut events: mpsc::UnboundedReceiver<MediaEvent>,
) -> mpsc::UnboundedReceiver<MediaEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                MediaEvent::RecordingStopped {
                    id: CALL_RECORDING_ID,
                    duration,
                    path,
                    ..
                } => {
                    if let Some((sid, started)) = recording {
                        save_call_recording(&shared, &call, sid, started, duration, &path).await;
                    }
                }
                MediaEvent::RecordingFailed {
                    id: CALL_RECORDING_ID,
                    reason,
                } => {
                    tracing::error!(call_sid = %call.sid, reason, "call recording failed");
                }
                MediaEvent::DigitsSent { id: SEND_DIGITS_ID } => {
                    tracing::debug!(call_sid = %call.sid, "SendDigits sent");
                }
                other => {
                    // The call loop is gone once the call ended; the recording may still end after it.
                    let _ = tx.send(other);
                }
            }
        }
    });
    rx
}

/// The row of a finished `Record=true` recording (an empty one is removed instead).
async fn save_call_recording(
    shared: &Shared,
    call: &CallRecord,
    sid: RecordingSid,
    started: chrono::DateTime<Utc>,
    duration: Duration,
    path: &std::path::Path,
) {
    if duration.is_zero() {
        let _ = tokio::fs::remove_file(path).await;
        return;
    }
    let now = Utc::now();
    let file_name = path
        .strip_prefix(&shared.config.recordings_dir)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{}/{sid}.wav", call.account_sid));
    let record = RecordingRecord {
        conference_sid: None,
        sid,
        account_sid: call.account_sid,
        call_sid: call.sid,
        duration: duration.as_secs_f64().round() as u32,
        channels: 1,
        status: "completed".into(),
        // Twilio's source for recordings asked for with Calls create.
        source: "OutboundAPI".into(),
        start_time: started,
        date_created: now,
        date_updated: now,
        file_name,
    };
    shared.records.flush().await;
    match shared.store.insert_recording(&record).await {
        Ok(()) => {
            tracing::info!(call_sid = %call.sid, recording_sid = %sid, seconds = record.duration, "call recording stored")
        }
        Err(e) => {
            tracing::error!(error = %e, recording_sid = %sid, "could not write the recording record")
        }
    }
}

/// How often a call waiting for a place under the node's capacity asks again.
const CAPACITY_RETRY: Duration = Duration::from_millis(50);

/// An API-created call until it is answered (or not).
struct Dialing {
    shared: Arc<Shared>,
    req: CreateCall,
    record: CallRecord,
    auth_token: String,
    callbacks: StatusCallbacks,
    /// When the account's calls-per-second limit lets the call go.
    fraud_slot: std::time::Instant,
    /// The trunk's slot, if the route has a paced trunk.
    trunk_slot: Option<std::time::Instant>,
}

impl Dialing {
    async fn run(
        mut self,
        registration: Registration,
        mut control: mpsc::UnboundedReceiver<CallControl>,
    ) {
        let shared = self.shared.clone();
        // Counted in `active_calls` once it has a place (crate::overload), not while queued.
        let mut counted = false;
        self.dial(registration, &mut control, &mut counted).await;
        if counted {
            shared.metrics.active_calls.fetch_sub(1, Ordering::Relaxed);
        }
    }

    async fn dial(
        &mut self,
        registration: Registration,
        control: &mut mpsc::UnboundedReceiver<CallControl>,
        counted: &mut bool,
    ) {
        let mut engine_url = self
            .req
            .url
            .clone()
            .map(|u| (u, http_method(&self.req.method)));
        let mut engine_twiml = self.req.twiml.clone();

        // The account's calls-per-second slot (taken at creation): until then the call stays
        // `queued`.
        let slot = Instant::from_std(self.fraud_slot);
        while Instant::now() < slot {
            tokio::select! {
                () = tokio::time::sleep_until(slot) => {}
                Some(ctl) = control.recv() => match ctl {
                    CallControl::End(_) => return self.end_unanswered(CallStatus::Canceled).await,
                    CallControl::Redirect { url, method } => {
                        engine_url = Some((url, method));
                        engine_twiml = None;
                    }
                    CallControl::Twiml(document) => engine_twiml = Some(document),
                },
            }
        }

        // A place under the node's capacity: past it the call waits in `queued`, as it does for
        // the calls-per-second limit.
        while !self.shared.overload.try_reserve(&self.shared.metrics.active_calls) {
            tokio::select! {
                () = tokio::time::sleep(CAPACITY_RETRY) => {}
                Some(ctl) = control.recv() => match ctl {
                    CallControl::End(_) => return self.end_unanswered(CallStatus::Canceled).await,
                    CallControl::Redirect { url, method } => {
                        engine_url = Some((url, method));
                        engine_twiml = None;
                    }
                    CallControl::Twiml(document) => engine_twiml = Some(document),
                },
            }
        }
        *counted = true;

        let (media_tx, raw_media_rx) = mpsc::unbounded_channel();
        let stream = match self.shared.media.allocate(media_tx) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, call_sid = %self.record.sid, "no RTP ports for an outbound call");
                return self.end_unanswered(CallStatus::Failed).await;
            }
        };
        let mut handle = originate(
            self.shared.clone(),
            LegRequest {
                account_sid: self.record.account_sid,
                call_sid: self.record.sid,
                to: LegTarget::Address(self.req.to.clone()),
                from: self.req.from.clone(),
                timeout: Duration::from_secs(u64::from(self.req.timeout)),
                local_port: stream.local_port,
                headers: Vec::new(),
                trunk_slot: self.trunk_slot,
            },
        );
        self.callbacks.post("initiated", &self.record);

        let (leg, negotiated, webrtc) = loop {
            tokio::select! {
                event = handle.events.recv() => match event {
                    None => return self.end_unanswered(CallStatus::Failed).await,
                    Some(LegEvent::Ringing) => {
                        if self.record.status == CallStatus::Queued {
                            self.record.status = CallStatus::Ringing;
                            self.record.date_updated = Utc::now();
                            self.save();
                            self.callbacks.post("ringing", &self.record);
                        }
                    }
                    Some(LegEvent::Answered { leg, negotiated, webrtc }) => break (leg, negotiated, webrtc),
                    Some(LegEvent::Failed { status, sip_status }) => {
                        tracing::info!(call_sid = %self.record.sid, ?sip_status, status = %status, "outbound call not answered");
                        return self.end_unanswered(status).await;
                    }
                },
                Some(ctl) = control.recv() => match ctl {
                    CallControl::End(_) => handle.cancel(),
                    // Not answered yet: the change applies to what runs once it is.
                    CallControl::Redirect { url, method } => {
                        engine_url = Some((url, method));
                        engine_twiml = None;
                    }
                    CallControl::Twiml(document) => engine_twiml = Some(document),
                },
            }
        };
        apply_leg_media(&stream, &negotiated, webrtc);

        let now = Utc::now();
        self.record.status = CallStatus::InProgress;
        self.record.start_time = Some(now);
        self.record.date_updated = now;
        self.save();
        self.callbacks.post("answered", &self.record);

        // `Record` and `SendDigits` belong to the call, not to its document: their media events
        // are taken here and the rest goes on to the call loop.
        let recording = self.req.record.then(|| {
            let sid = RecordingSid::generate();
            let path = crate::records::recording_path(
                &self.shared.config,
                &self.record.account_sid,
                &self.record.sid,
                &sid,
            );
            stream.start_call_recording(CALL_RECORDING_ID, path, 1);
            (sid, now)
        });
        if let Some(digits) = self.req.send_digits.as_deref().filter(|d| !d.is_empty()) {
            stream.send_digits(SEND_DIGITS_ID, digits);
        }
        let media_rx = forward_media(
            self.shared.clone(),
            self.record.clone(),
            recording,
            raw_media_rx,
        );

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
            extra_params: Vec::new(),
        };
        // The loop takes the control channel over; the sender stays in the registry.
        let control = std::mem::replace(control, mpsc::unbounded_channel::<CallControl>().1);
        let callbacks = std::mem::replace(
            &mut self.callbacks,
            StatusCallbacks::new(
                &self.shared,
                None,
                engine::HttpMethod::Post,
                Vec::new(),
                String::new(),
            ),
        );
        let call = ActiveCall::new(ActiveCallParts {
            shared: self.shared.clone(),
            sip: self.shared.sip.clone(),
            leg,
            config,
            stream,
            media_rx,
            negotiated,
            webrtc_answer: None,
            record: self.record.clone(),
            auth_token: self.auth_token.clone(),
            callbacks,
            control,
            registration,
            answered_at: Some(SystemTime::now()),
            time_limit: Some(Instant::now() + Duration::from_secs(u64::from(self.req.time_limit))),
        });
        call.run().await;
    }

    fn save(&self) {
        self.shared.records.update_call(&self.record);
    }

    async fn end_unanswered(&mut self, status: CallStatus) {
        let now = Utc::now();
        self.record.status = status;
        self.record.end_time = Some(now);
        self.record.duration = Some(0);
        let rates = self.shared.rates.for_account(&self.shared.store, &self.record.account_sid).await;
        self.record.price = crate::pricing::call_price(rates.as_deref(), &self.record, None);
        self.record.date_updated = now;
        self.save();
        self.shared.records.flush().await;
        tracing::info!(call_sid = %self.record.sid, status = %status, "outbound call ended unanswered");
        self.callbacks.post("completed", &self.record);
    }
}
