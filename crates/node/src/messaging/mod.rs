//! Text messages between the store, the SMS centres and the apps.
//!
//! - The **outbox**: messages the API (or a `<Message>` reply) stored as `queued` are handed to
//!   the SMSC pool oldest first, one at a time per destination so that a destination's messages
//!   leave in order, many destinations at once. A refusal fails the message with Twilio's code;
//!   a throttled, timed-out or bind-less attempt stays `sending` and is retried after a pause,
//!   until the message's validity period (if any) runs out.
//! - **Receipts**: a delivery receipt finds its message by the SMSC's id of the part, marks the
//!   part, and when the parts decide it the message becomes `delivered` or `undelivered`.
//! - **Incoming messages**: stored (an identical message from the same sender to the same number
//!   within [`DEDUPE_WINDOW`] is taken as the SMSC's retransmission and stored once), only then
//!   acknowledged to the SMSC, then the number's SMS URL is requested with Twilio's parameters
//!   and its MessagingResponse carried out: each `<Message>` is a new outbound message,
//!   `<Redirect>` fetches more.
//!
//! Every status change that has a callback URL posts Twilio's status callback, signed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use model::{MessageDirection, MessageRecord, MessageSid, MessageStatus};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::call::http_method;
use crate::sms::{DeliverAck, OutboundSms, PartOutcome, SmsEvent, SmscPool, SubmitOutcome};
use crate::webhook::WebhookRequest;
use crate::wiring::Shared;

/// Messages taken from the store per look at the outbox.
const OUTBOX_BATCH: u32 = 500;
/// Submits in flight at once, over every SMSC.
const MAX_IN_FLIGHT: usize = 512;
/// How long a message waits after a throttled, timed-out or bind-less attempt.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// An identical incoming message (sender, number, text) within this time is a retransmission.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(60);
/// `<Redirect>`s followed for one incoming message.
const MAX_REDIRECTS: usize = 5;
/// How long a receipt may wait for its submit's id to be stored (it can overtake it).
const RECEIPT_WAIT: Duration = Duration::from_secs(3);

/// The handle the API hooks wake the outbox with, and what receipts said per SMSC.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
    /// Parts reported delivered and undelivered, by SMSC name.
    outcomes: Arc<std::sync::Mutex<HashMap<String, (u64, u64)>>>,
}

impl Outbox {
    /// A message was queued: look at the outbox now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Parts an SMSC's receipts reported (delivered, undelivered).
    pub fn outcomes(&self, smsc: &str) -> (u64, u64) {
        let outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        outcomes.get(smsc).copied().unwrap_or_default()
    }

    fn count(&self, smsc: &str, delivered: bool) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = outcomes.entry(smsc.to_owned()).or_default();
        if delivered {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
}

/// Starts the outbox and the consumer of the pool's events (`shared.outbox` wakes the first).
/// Both run until the process ends.
pub fn start(shared: Arc<Shared>, pool: Arc<SmscPool>, events: mpsc::Receiver<SmsEvent>) {
    tokio::spawn(run_outbox(shared.clone(), pool));
    tokio::spawn(run_events(shared, events));
}

/// What the outbox knows between two looks: which destinations have a message in flight and
/// which messages wait for a retry.
#[derive(Default)]
struct OutboxState {
    busy: HashSet<String>,
    in_flight: HashSet<MessageSid>,
    retry_at: HashMap<MessageSid, Instant>,
}

impl OutboxState {
    /// A send finished: its destination is free again, and the message waits if it is retried.
    fn finished(&mut self, (sid, to, retry): (MessageSid, String, bool)) {
        self.busy.remove(&to);
        self.in_flight.remove(&sid);
        if retry {
            self.retry_at.insert(sid, Instant::now() + RETRY_AFTER);
        }
    }
}

async fn run_outbox(shared: Arc<Shared>, pool: Arc<SmscPool>) {
    let outbox = shared.outbox.clone();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(MessageSid, String, bool)>();
    let mut state = OutboxState::default();
    loop {
        // What finished since the last look.
        while let Ok(done) = done_rx.try_recv() {
            state.finished(done);
        }
        let batch = match shared.store.outbox(OUTBOX_BATCH).await {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "outbox read failed");
                Vec::new()
            }
        };
        let now = Instant::now();
        // A destination whose oldest message cannot go now holds back its later ones.
        let mut held: HashSet<&str> = HashSet::new();
        let mut started = 0usize;
        let mut next_retry: Option<Instant> = None;
        for message in &batch {
            let to = message.to.as_str();
            if state.in_flight.contains(&message.sid) || held.contains(to) {
                held.insert(to);
                continue;
            }
            if state.busy.contains(to) || state.in_flight.len() >= MAX_IN_FLIGHT {
                held.insert(to);
                continue;
            }
            if let Some(&at) = state.retry_at.get(&message.sid) {
                if at > now {
                    next_retry = Some(next_retry.map_or(at, |n| n.min(at)));
                    held.insert(to);
                    continue;
                }
                state.retry_at.remove(&message.sid);
            }
            state.busy.insert(message.to.clone());
            state.in_flight.insert(message.sid);
            started += 1;
            let (shared, pool, done) = (shared.clone(), pool.clone(), done_tx.clone());
            let message = message.clone();
            tokio::spawn(async move {
                let (sid, to) = (message.sid, message.to.clone());
                let retry = send(&shared, &pool, message).await;
                let _ = done.send((sid, to, retry));
            });
        }
        // Forget retries of messages no longer in the outbox.
        if state.retry_at.len() > 4 * OUTBOX_BATCH as usize {
            let live: HashSet<&MessageSid> = batch.iter().map(|m| &m.sid).collect();
            state.retry_at.retain(|sid, _| live.contains(sid));
        }
        if started > 0 && batch.len() as u32 == OUTBOX_BATCH {
            // More may wait behind this batch: look again as soon as some finish.
            tokio::select! {
                _ = outbox.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            continue;
        }
        let pause = next_retry
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            _ = outbox.wake.notified() => {}
            Some(done) = done_rx.recv() => state.finished(done),
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// One attempt at a message. Returns true when it should be tried again later.
async fn send(shared: &Shared, pool: &SmscPool, message: MessageRecord) -> bool {
    let store = &shared.store;
    if expired(&message, Utc::now()) {
        finish(
            shared,
            &message,
            MessageStatus::Failed,
            Some(30001),
            Some("The message's validity period ran out before it could be sent"),
        )
        .await;
        return false;
    }
    if let Err(e) = store.bump_attempts(&message.sid).await {
        tracing::warn!(sid = %message.sid, error = %e, "message attempt not recorded");
        return true;
    }
    if message.status == MessageStatus::Queued {
        let _ = store
            .set_message_status(&message.sid, MessageStatus::Sending, None, None, None)
            .await;
    }
    let sms = OutboundSms {
        from: message.from.clone(),
        to: message.to.clone(),
        text: message.body.clone(),
        validity: message
            .validity_period
            .map(|secs| Duration::from_secs(u64::from(secs))),
    };
    match pool.submit(&sms).await {
        SubmitOutcome::Sent { smsc, parts } => {
            if let Some(refused) = parts
                .iter()
                .find(|p| matches!(p, PartOutcome::Rejected { .. }))
            {
                let code = refused
                    .twilio_error()
                    .map_or(30008, |e| u32::from(e.code()));
                let reason = match refused {
                    PartOutcome::Rejected { status } => format!("refused by the SMSC: {status}"),
                    _ => "refused by the SMSC".to_owned(),
                };
                finish(
                    shared,
                    &message,
                    MessageStatus::Failed,
                    Some(code),
                    Some(&reason),
                )
                .await;
                return false;
            }
            if !parts
                .iter()
                .all(|p| matches!(p, PartOutcome::Accepted { .. }))
            {
                // Throttled, timed out or not sent: the whole message again later. A part
                // that timed out may have been taken: sent twice rather than lost.
                tracing::debug!(sid = %message.sid, smsc, ?parts, "message to be retried");
                return true;
            }
            for (index, part) in parts.iter().enumerate() {
                let PartOutcome::Accepted { message_id } = part else {
                    continue;
                };
                if let Err(e) = store
                    .record_part(&message.sid, index as u32, &smsc, message_id)
                    .await
                {
                    tracing::warn!(sid = %message.sid, error = %e, "message part not recorded");
                }
            }
            let changed = store
                .set_message_status(
                    &message.sid,
                    MessageStatus::Sent,
                    None,
                    None,
                    Some(Utc::now()),
                )
                .await
                .unwrap_or(false);
            if changed {
                callback(shared, &message, MessageStatus::Sent, None).await;
            }
            false
        }
        SubmitOutcome::NoRoute => {
            finish(
                shared,
                &message,
                MessageStatus::Failed,
                Some(30006),
                Some("No SMSC carries this destination"),
            )
            .await;
            false
        }
        SubmitOutcome::Invalid(reason) => {
            finish(
                shared,
                &message,
                MessageStatus::Failed,
                Some(30008),
                Some(&reason),
            )
            .await;
            false
        }
        SubmitOutcome::NoBindUp => true,
    }
}

fn expired(message: &MessageRecord, now: DateTime<Utc>) -> bool {
    message
        .validity_period
        .is_some_and(|secs| (now - message.date_created).num_seconds() > i64::from(secs))
}

/// Puts a message in a final state and tells its callback.
async fn finish(
    shared: &Shared,
    message: &MessageRecord,
    status: MessageStatus,
    error_code: Option<u32>,
    error_message: Option<&str>,
) {
    let changed = shared
        .store
        .set_message_status(&message.sid, status, error_code, error_message, None)
        .await
        .unwrap_or(false);
    if changed {
        callback(shared, message, status, error_code).await;
    }
}

/// Twilio's message status callback: signed, in the background, failures only logged.
async fn callback(
    shared: &Shared,
    message: &MessageRecord,
    status: MessageStatus,
    error_code: Option<u32>,
) {
    let Some(url) = message.status_callback.clone() else {
        return;
    };
    let Ok(Some(account)) = shared.store.account(&message.account_sid).await else {
        return;
    };
    let mut params = vec![
        ("AccountSid".to_owned(), message.account_sid.to_string()),
        ("ApiVersion".to_owned(), message.api_version.clone()),
        ("From".to_owned(), message.from.clone()),
        ("MessageSid".to_owned(), message.sid.to_string()),
        ("MessageStatus".to_owned(), status.as_str().to_owned()),
        ("SmsSid".to_owned(), message.sid.to_string()),
        ("SmsStatus".to_owned(), status.as_str().to_owned()),
        ("To".to_owned(), message.to.clone()),
    ];
    if let Some(code) = error_code {
        params.push(("ErrorCode".to_owned(), code.to_string()));
    }
    shared.webhooks.post_status_callback(WebhookRequest {
        url,
        method: http_method("POST"),
        params,
        auth_token: account.auth_token,
    });
}

async fn run_events(shared: Arc<Shared>, mut events: mpsc::Receiver<SmsEvent>) {
    let outbox = shared.outbox.clone();
    let mut last_prune = Instant::now();
    while let Some(event) = events.recv().await {
        match event {
            SmsEvent::Receipt { smsc, receipt, ack } => {
                let shared = shared.clone();
                tokio::spawn(async move { receipt_in(&shared, &smsc, receipt, ack).await });
            }
            SmsEvent::Incoming {
                smsc,
                from,
                to,
                text,
                segments,
                ack,
            } => {
                let (shared, outbox) = (shared.clone(), outbox.clone());
                tokio::spawn(async move {
                    incoming(&shared, &outbox, &smsc, from, to, text, segments, ack).await
                });
            }
        }
        if last_prune.elapsed() > DEDUPE_WINDOW / 4 {
            last_prune = Instant::now();
            let older = Utc::now() - chrono::Duration::from_std(DEDUPE_WINDOW).unwrap_or_default();
            if let Err(e) = shared.store.prune_incoming_keys(older).await {
                tracing::debug!(error = %e, "incoming keys not pruned");
            }
        }
    }
}

async fn receipt_in(shared: &Shared, smsc: &str, receipt: smpp::Receipt, ack: DeliverAck) {
    let Some(status) = receipt_status(&receipt) else {
        ack.stored();
        return;
    };
    shared
        .outbox
        .count(smsc, status == MessageStatus::Delivered);
    let id = receipt.message_id.clone();
    // The receipt can overtake the store's record of the submit it answers.
    let deadline = Instant::now() + RECEIPT_WAIT;
    let summary = loop {
        match shared.store.set_part_status(smsc, &id, status).await {
            Ok(Some(summary)) => break Some(summary),
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(None) => {
                tracing::info!(smsc, id, "a receipt for no message of ours");
                break None;
            }
            Err(e) => {
                // Not stored: the SMSC keeps it and tries again.
                tracing::warn!(smsc, error = %e, "receipt not stored");
                ack.refuse(smpp::CommandStatus::ESME_RX_T_APPN);
                return;
            }
        }
    };
    // A repeated receipt changes no part and tells nobody again.
    let decided = summary
        .filter(|s| s.changed)
        .and_then(|s| Some((s, s.outcome()?)));
    if let Some((summary, outcome)) = decided {
        if let Ok(Some(message)) = shared.store.message_by_sid(&summary.message_sid).await {
            let error = (outcome == MessageStatus::Undelivered).then(|| receipt_error(&receipt));
            let changed = shared
                .store
                .set_message_status(&message.sid, outcome, error, None, None)
                .await
                .unwrap_or(false);
            if changed {
                callback(shared, &message, outcome, error).await;
            }
        }
    }
    ack.stored();
}

/// What a receipt says of its part, or `None` for a state on the way (accepted, en route).
fn receipt_status(receipt: &smpp::Receipt) -> Option<MessageStatus> {
    use smpp::MessageState as S;
    match receipt.state? {
        S::Delivered => Some(MessageStatus::Delivered),
        S::Enroute | S::Accepted => None,
        _ => Some(MessageStatus::Undelivered),
    }
}

fn receipt_error(receipt: &smpp::Receipt) -> u32 {
    let err = receipt
        .error
        .as_deref()
        .and_then(|e| e.trim().parse::<u16>().ok());
    receipt
        .state
        .and_then(|state| smpp::TwilioError::from_receipt(state, err))
        .map_or(30008, |e| u32::from(e.code()))
}

#[allow(clippy::too_many_arguments)]
async fn incoming(
    shared: &Shared,
    outbox: &Outbox,
    smsc: &str,
    from: String,
    to: String,
    text: String,
    segments: usize,
    ack: DeliverAck,
) {
    let number = match shared.store.number_by_phone(&to).await {
        Ok(Some(number)) => number,
        Ok(None) => {
            tracing::info!(smsc, %to, "an incoming message for no number of ours: refused");
            ack.refuse(smpp::CommandStatus::ESME_RINVDSTADR);
            return;
        }
        Err(e) => {
            tracing::warn!(smsc, error = %e, "incoming message not routed");
            ack.refuse(smpp::CommandStatus::ESME_RX_T_APPN);
            return;
        }
    };
    let now = Utc::now();
    let mut message = MessageRecord::new(
        number.account_sid,
        from,
        to,
        text,
        MessageStatus::Received,
        MessageDirection::Inbound,
        u32::try_from(segments).unwrap_or(u32::MAX),
        now,
    );
    message.application_sid = number.sms_application_sid;
    message.smsc = Some(smsc.to_owned());
    message.date_sent = Some(now);
    let key = dedupe_key(&message.from, &message.to, &message.body);
    match shared.store.store_incoming(&message, smsc, &key).await {
        Ok(store::Incoming::Stored) => ack.stored(),
        Ok(store::Incoming::Duplicate(sid)) => {
            tracing::info!(smsc, %sid, "an incoming message again: taken as a retransmission");
            ack.stored();
            return;
        }
        Err(e) => {
            tracing::warn!(smsc, error = %e, "incoming message not stored: the SMSC keeps it");
            ack.refuse(smpp::CommandStatus::ESME_RX_T_APPN);
            return;
        }
    }
    let Ok(Some(account)) = shared.store.account(&message.account_sid).await else {
        return;
    };
    let Some(url) = number.sms_url.clone() else {
        return;
    };
    let params = incoming_params(&message);
    let mut request = WebhookRequest {
        url,
        method: http_method(&number.sms_method),
        params: params.clone(),
        auth_token: account.auth_token.clone(),
    };
    for _ in 0..=MAX_REDIRECTS {
        let reply = match shared.webhooks.fetch(request.clone()).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::info!(sid = %message.sid, error = %e, "SMS URL failed");
                let Some(fallback) = number.sms_fallback_url.clone() else {
                    return;
                };
                request.url = fallback;
                request.method = http_method(&number.sms_fallback_method);
                match shared.webhooks.fetch(request.clone()).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        tracing::info!(sid = %message.sid, error = %e, "SMS fallback URL failed");
                        return;
                    }
                }
            }
        };
        let document = match twiml::parse_messaging(&reply.body) {
            Ok(document) => document,
            Err(e) => {
                tracing::info!(sid = %message.sid, error = %e, "the SMS URL's answer is not MessagingResponse");
                return;
            }
        };
        let mut redirect = None;
        for verb in document.verbs {
            match verb {
                twiml::MessagingVerb::Message(reply) => {
                    queue_reply(shared, &message, reply).await;
                    outbox.wake();
                }
                twiml::MessagingVerb::Redirect(r) => {
                    redirect = Some(r);
                    break;
                }
                _ => {}
            }
        }
        let Some(redirect) = redirect else { return };
        request.url = resolve(&request.url, &redirect.url);
        request.method = twiml_method(redirect.method);
    }
}

fn twiml_method(method: twiml::Method) -> engine::HttpMethod {
    http_method(if matches!(method, twiml::Method::Get) {
        "GET"
    } else {
        "POST"
    })
}

/// Twilio's parameters for a number's SMS URL.
fn incoming_params(message: &MessageRecord) -> Vec<(String, String)> {
    vec![
        ("MessageSid".to_owned(), message.sid.to_string()),
        ("SmsSid".to_owned(), message.sid.to_string()),
        ("SmsMessageSid".to_owned(), message.sid.to_string()),
        ("AccountSid".to_owned(), message.account_sid.to_string()),
        ("From".to_owned(), message.from.clone()),
        ("To".to_owned(), message.to.clone()),
        ("Body".to_owned(), message.body.clone()),
        ("NumMedia".to_owned(), "0".to_owned()),
        ("NumSegments".to_owned(), message.num_segments.to_string()),
        ("SmsStatus".to_owned(), "received".to_owned()),
        ("ApiVersion".to_owned(), message.api_version.clone()),
    ]
}

/// A `<Message>` in answer to `incoming`: from the number that received it, to the sender,
/// unless the verb says otherwise.
async fn queue_reply(shared: &Shared, incoming: &MessageRecord, verb: twiml::Message) {
    let now = Utc::now();
    let segments = smpp::count_segments(&verb.body).segments;
    let mut reply = MessageRecord::new(
        incoming.account_sid,
        verb.from.unwrap_or_else(|| incoming.to.clone()),
        verb.to.unwrap_or_else(|| incoming.from.clone()),
        verb.body,
        MessageStatus::Queued,
        MessageDirection::OutboundReply,
        u32::try_from(segments).unwrap_or(u32::MAX),
        now,
    );
    reply.status_callback = verb.status_callback.or(verb.action);
    reply.application_sid = incoming.application_sid;
    if let Err(e) = shared.store.create_message(&reply).await {
        tracing::warn!(sid = %incoming.sid, error = %e, "a <Message> reply was not stored");
    }
}

/// A `<Redirect>` URL, relative ones resolved against the document's own.
fn resolve(base: &str, url: &str) -> String {
    match reqwest::Url::parse(base).and_then(|b| b.join(url)) {
        Ok(u) => u.to_string(),
        Err(_) => url.to_owned(),
    }
}

/// The key under which an incoming message counts once within [`DEDUPE_WINDOW`].
fn dedupe_key(from: &str, to: &str, body: &str) -> String {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    for part in [from, to, body] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
