//! Text messages between the store, the SMS centres and the apps.
//!
//! - The **journal** (`journal.rs`) does every store write of this path in batches: a message is
//!   stored before the API answers 201, an accepted submit is recorded, a receipt is stored
//!   before its deliver_sm_resp.
//! - The **outbox** (`queue.rs`) holds the messages waiting to leave, in memory, per destination:
//!   what the journal stored, plus at start what the store still has `queued` or `sending` (a
//!   run that stopped mid-way). The store is not read again to find work, so the cost of a
//!   message does not grow with the backlog. The sender hands messages to the SMSC pool, one at a
//!   time per destination so that a destination's messages leave in order, many destinations at
//!   once. A refusal fails the message with Twilio's code; a throttled or timed-out attempt is
//!   retried after a pause (the message becomes `sending` in the store), until the message's
//!   validity period (if any) runs out; with no bind up the sender pauses. A message whose
//!   submit timed out may have been taken: it is sent again rather than lost (at least once).
//!   The outbox holds at most [`MAX_WAITING`] messages; the API refuses more (429, 20429).
//! - **Receipts**: a delivery receipt finds its message by the SMSC's id of the part, marks the
//!   part, and when the parts decide it the message becomes `delivered` or `undelivered`.
//! - **Incoming messages**: stored (an identical message from the same sender to the same number
//!   within [`DEDUPE_WINDOW`] is taken as the SMSC's retransmission and stored once), only then
//!   acknowledged to the SMSC, then the number's SMS URL is requested with Twilio's parameters
//!   and its MessagingResponse carried out: each `<Message>` is a new outbound message,
//!   `<Redirect>` fetches more.
//!
//! Every status change that has a callback URL posts Twilio's status callback, signed.

mod journal;
mod queue;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use model::{MessageDirection, MessageRecord, MessageSid, MessageStatus};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use self::journal::Write;
use self::queue::OutboxQueue;
use crate::call::http_method;
use crate::sms::{DeliverAck, OutboundSms, PartOutcome, SmsEvent, SmscPool, SubmitOutcome};
use crate::webhook::WebhookRequest;
use crate::wiring::Shared;

/// Messages handed to the SMSC pool and not answered yet, over every SMSC.
const MAX_IN_FLIGHT: usize = 2048;
/// Messages the outbox holds waiting; beyond, the API refuses new ones until it drains.
pub const MAX_WAITING: usize = 500_000;
/// Receipts taken and not written yet; beyond, receipts are refused for the SMSC to resend.
const MAX_RECEIPTS_PENDING: usize = 100_000;
/// How long a destination waits after a throttled or timed-out attempt, and the sender after
/// finding no bind up.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// An identical incoming message (sender, number, text) within this time is a retransmission.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(60);
/// `<Redirect>`s followed for one incoming message.
const MAX_REDIRECTS: usize = 5;
/// How long a receipt may wait for its submit's record (it can overtake it).
const RECEIPT_WAIT: Duration = Duration::from_secs(3);

/// Why [`Outbox::create`] did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the outbox holds {0} messages waiting to be sent")]
    Full(usize),
    #[error("the message was not stored: {0}")]
    Store(String),
}

/// The SMS outbox of the node: what the API hands new messages to, and what receipts said per
/// SMSC. Until [`start`] runs (a node without SMSCs) messages are only stored.
#[derive(Clone, Default)]
pub struct Outbox {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    queue: Mutex<OutboxQueue>,
    wake: Notify,
    journal: OnceLock<Lanes>,
    /// The node's runtime: what the journal (on a thread of its own) starts goes there.
    runtime: OnceLock<tokio::runtime::Handle>,
    receipts_pending: AtomicUsize,
    /// Parts reported delivered and undelivered, by SMSC name.
    outcomes: Mutex<HashMap<String, (u64, u64)>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("waiting", &self.waiting()).finish_non_exhaustive()
    }
}

impl Outbox {
    fn queue(&self) -> std::sync::MutexGuard<'_, OutboxQueue> {
        // A poisoned lock only means a thread panicked holding it; the queue is whole.
        self.inner.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages waiting to be sent (not with an SMSC).
    pub fn waiting(&self) -> usize {
        self.queue().waiting()
    }

    /// Stores a new outbound message and queues it for sending; returns once it is stored.
    pub async fn create(&self, store: &store::Store, message: &MessageRecord) -> Result<(), CreateError> {
        let Some(journal) = self.inner.journal.get() else {
            return store.create_message(message).await.map_err(|e| CreateError::Store(e.to_string()));
        };
        let waiting = self.waiting();
        if waiting >= MAX_WAITING {
            return Err(CreateError::Full(waiting));
        }
        let (done, stored) = oneshot::channel();
        if !journal.send(Write::Create { message: message.clone(), done }) {
            return Err(CreateError::Store("the message writer stopped".to_owned()));
        }
        match stored.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CreateError::Store(e)),
            Err(_) => Err(CreateError::Store("the message writer stopped".to_owned())),
        }
    }

    /// A queued message was canceled: it no longer leaves (unless it is with an SMSC already).
    pub fn cancel(&self, sid: &MessageSid) {
        self.queue().remove(sid);
    }

    /// Parts an SMSC's receipts reported (delivered, undelivered).
    pub fn outcomes(&self, smsc: &str) -> (u64, u64) {
        let outcomes = self.inner.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        outcomes.get(smsc).copied().unwrap_or_default()
    }

    fn count(&self, smsc: &str, delivered: bool) {
        let mut outcomes = self.inner.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let entry = outcomes.entry(smsc.to_owned()).or_default();
        if delivered {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }

    /// Stored messages enter the outbox.
    fn queue_stored(&self, messages: Vec<MessageRecord>) {
        {
            let mut queue = self.queue();
            for m in messages {
                queue.push(m);
            }
        }
        self.inner.wake.notify_one();
    }

    fn write(&self, write: Write) {
        if let Some(journal) = self.inner.journal.get() {
            // The journal runs as long as the process: a send fails only at shutdown.
            journal.send(write);
        }
    }

    /// Runs `task` on the node's runtime (the journal's own thread only writes).
    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.inner.runtime.get() {
            Some(runtime) => drop(runtime.spawn(task)),
            None => drop(tokio::spawn(task)),
        }
    }

    fn write_later(&self, delay: Duration, write: Write) {
        let outbox = self.clone();
        self.spawn(async move {
            tokio::time::sleep(delay).await;
            outbox.write(write);
        });
    }

    fn receipt_done(&self) {
        self.inner.receipts_pending.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where writes go: one journal task, or on a backend with parallel writers (PostgreSQL) a
/// second one for new messages, so that creating messages and recording what became of them
/// are two transactions at once. A message's later writes follow its creation's commit anyway
/// (it is sent only once stored), and a receipt that overtakes its submit's record is looked
/// for again.
struct Lanes {
    all: mpsc::UnboundedSender<Write>,
    creates: Option<mpsc::UnboundedSender<Write>>,
}

impl Lanes {
    /// False when the journal is gone (the process is ending).
    fn send(&self, write: Write) -> bool {
        match (&write, &self.creates) {
            (Write::Create { .. }, Some(creates)) => creates.send(write).is_ok(),
            _ => self.all.send(write).is_ok(),
        }
    }
}

/// Starts the journal, loads the store's unsent messages into the outbox, then starts the
/// sender and the consumer of the pool's events. All run until the process ends.
pub fn start(shared: Arc<Shared>, pool: Arc<SmscPool>, events: mpsc::Receiver<SmsEvent>) {
    let outbox = shared.outbox.clone();
    let (all_tx, all_rx) = mpsc::unbounded_channel();
    let (creates_tx, creates_rx) = mpsc::unbounded_channel();
    let parallel = shared.store.parallel_writes();
    let lanes = Lanes { all: all_tx, creates: parallel.then_some(creates_tx) };
    let mut receivers = vec![all_rx];
    if parallel {
        receivers.push(creates_rx);
    }
    if outbox.inner.journal.set(lanes).is_err() {
        tracing::error!("the SMS outbox was started twice");
        return;
    }
    let _ = outbox.inner.runtime.set(tokio::runtime::Handle::current());
    start_journal(shared.clone(), outbox.clone(), receivers);
    tokio::spawn(async move {
        // Messages created meanwhile are newer: `load` puts these before them.
        match shared.store.outbox(u32::MAX).await {
            Ok(unsent) => {
                let loaded = outbox.queue().load(unsent);
                if loaded > 0 {
                    tracing::info!(loaded, "unsent messages from the store queued");
                }
            }
            Err(e) => tracing::error!(error = %e, "the store's unsent messages could not be read"),
        }
        tokio::spawn(run_events(shared.clone(), events));
        run_sender(shared, outbox, pool).await;
    });
}

/// Runs the journal on a thread of its own, with a single-threaded runtime.
///
/// Each batch is a dozen store round trips in a row, and an answer from SQLite's worker thread
/// wakes the task from outside the runtime: on the node's runtime, busy with thousands of HTTP
/// requests a second, every wake-up waited its turn behind them, and the journal (which every
/// message waits for) spent most of its time waiting to run, not writing. On its own thread it
/// runs as soon as the answer is there. It shares the store's pools with the rest of the node.
fn start_journal(shared: Arc<Shared>, outbox: Outbox, lanes: Vec<mpsc::UnboundedReceiver<Write>>) {
    let (spawn_shared, spawn_outbox) = (shared.clone(), outbox.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let started = std::thread::Builder::new().name("sms-journal".to_owned()).spawn(move || {
        let Ok(lanes) = rx.recv() else { return };
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(journal::run_lanes(spawn_shared, spawn_outbox, lanes)),
            Err(e) => tracing::error!(error = %e, "the SMS journal's runtime did not start"),
        }
    });
    match started {
        Ok(_) => {
            let _ = tx.send(lanes);
        }
        Err(e) => {
            tracing::warn!(error = %e, "no thread for the SMS journal: it runs on the node's runtime");
            tokio::spawn(journal::run_lanes(shared, outbox, lanes));
        }
    }
}

/// What became of one attempt.
enum Next {
    Done,
    /// Throttled or timed out: again after [`RETRY_AFTER`].
    Retry,
    /// No bind up anywhere it could go: again when the sender resumes.
    NoBind,
}

async fn run_sender(shared: Arc<Shared>, outbox: Outbox, pool: Arc<SmscPool>) {
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(MessageRecord, Next)>();
    let mut paused_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if paused_until.is_some_and(|at| at <= now) {
            paused_until = None;
        }
        let mut wake_at = paused_until;
        if paused_until.is_none() {
            let mut queue = outbox.queue();
            while queue.in_flight() < MAX_IN_FLIGHT {
                let Some(message) = queue.next(now) else { break };
                let (shared, pool, done) = (shared.clone(), pool.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let (message, next) = send(&shared, &pool, message).await;
                    let _ = done.send((message, next));
                });
            }
            wake_at = queue.next_release();
        }
        let sleep = tokio::time::sleep_until(wake_at.unwrap_or(now + Duration::from_secs(1)));
        tokio::select! {
            () = outbox.inner.wake.notified() => {}
            Some(first) = done_rx.recv() => {
                let mut queue = outbox.queue();
                let now = Instant::now();
                let mut finish = |(message, next): (MessageRecord, Next)| match next {
                    Next::Done => queue.finish(message, None),
                    Next::Retry => queue.finish(message, Some(now + RETRY_AFTER)),
                    Next::NoBind => {
                        queue.finish(message, Some(now));
                        paused_until = Some(now + RETRY_AFTER);
                    }
                };
                finish(first);
                while let Ok(done) = done_rx.try_recv() {
                    finish(done);
                }
            }
            () = sleep => {}
        }
    }
}

/// One attempt at a message; the message comes back as the outbox should keep it.
async fn send(shared: &Shared, pool: &SmscPool, mut message: MessageRecord) -> (MessageRecord, Next) {
    let outbox = &shared.outbox;
    if expired(&message, Utc::now()) {
        let reason = "The message's validity period ran out before it could be sent".to_owned();
        outbox.write(Write::Final { message: message.clone(), status: MessageStatus::Failed, error_code: 30001, reason });
        return (message, Next::Done);
    }
    let sms = OutboundSms {
        from: message.from.clone(),
        to: message.to.clone(),
        text: message.body.clone(),
        validity: message.validity_period.map(|secs| Duration::from_secs(u64::from(secs))),
    };
    let rates = shared.rates.for_account(&shared.store, &message.account_sid).await;
    let outcome = pool.submit(&sms).await;
    let next = match outcome {
        SubmitOutcome::Sent { smsc, parts } => {
            if let Some(refused) = parts.iter().find(|p| matches!(p, PartOutcome::Rejected { .. })) {
                let error_code = refused.twilio_error().map_or(30008, |e| u32::from(e.code()));
                let reason = match refused {
                    PartOutcome::Rejected { status } => format!("refused by the SMSC: {status}"),
                    _ => "refused by the SMSC".to_owned(),
                };
                let status = MessageStatus::Failed;
                outbox.write(Write::Final { message: message.clone(), status, error_code, reason });
                Next::Done
            } else {
                let ids: Vec<String> = parts
                    .iter()
                    .filter_map(|p| match p {
                        PartOutcome::Accepted { message_id } => Some(message_id.clone()),
                        _ => None,
                    })
                    .collect();
                if ids.len() == parts.len() {
                    let price = crate::pricing::message_price(rates.as_deref(), &message);
                    outbox.write(Write::Sent { message: message.clone(), smsc, ids, price });
                    Next::Done
                } else {
                    // Throttled, timed out or not sent: the whole message again later.
                    tracing::debug!(sid = %message.sid, smsc, ?parts, "message to be retried");
                    Next::Retry
                }
            }
        }
        SubmitOutcome::NoRoute => {
            let reason = "No SMSC carries this destination".to_owned();
            outbox.write(Write::Final { message: message.clone(), status: MessageStatus::Failed, error_code: 30006, reason });
            Next::Done
        }
        SubmitOutcome::Invalid(reason) => {
            outbox.write(Write::Final { message: message.clone(), status: MessageStatus::Failed, error_code: 30008, reason });
            Next::Done
        }
        SubmitOutcome::NoBindUp => Next::NoBind,
    };
    if !matches!(next, Next::Done) && message.status == MessageStatus::Queued {
        // Waiting for a retry is `sending` (written once: later retries change nothing shown).
        outbox.write(Write::Retrying { message: message.clone() });
        message.status = MessageStatus::Sending;
    }
    (message, next)
}

fn expired(message: &MessageRecord, now: DateTime<Utc>) -> bool {
    message
        .validity_period
        .is_some_and(|secs| (now - message.date_created).num_seconds() > i64::from(secs))
}

/// Twilio's message status callback: signed, in the background, failures only logged.
fn callback(shared: &Arc<Shared>, message: &MessageRecord, status: MessageStatus, error_code: Option<u32>) {
    let Some(url) = message.status_callback.clone() else {
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
    let (runner, account) = (shared.clone(), message.account_sid);
    shared.outbox.spawn(async move {
        let shared = runner;
        let Ok(Some(account)) = shared.store.account(&account).await else {
            return;
        };
        shared.webhooks.post_status_callback(WebhookRequest {
            url,
            method: http_method("POST"),
            params,
            auth_token: account.auth_token,
        });
    });
}

async fn run_events(shared: Arc<Shared>, mut events: mpsc::Receiver<SmsEvent>) {
    let outbox = shared.outbox.clone();
    let mut last_prune = Instant::now();
    while let Some(event) = events.recv().await {
        match event {
            SmsEvent::Receipt { smsc, receipt, ack } => receipt_in(&outbox, smsc, receipt, ack),
            SmsEvent::Incoming { smsc, from, to, text, segments, ack } => {
                let shared = shared.clone();
                tokio::spawn(async move { incoming(&shared, &smsc, from, to, text, segments, ack).await });
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

/// Hands a receipt to the journal, which answers it once stored.
fn receipt_in(outbox: &Outbox, smsc: String, receipt: smpp::Receipt, ack: DeliverAck) {
    let Some(status) = receipt_status(&receipt) else {
        ack.stored();
        return;
    };
    if outbox.inner.receipts_pending.fetch_add(1, Ordering::Relaxed) >= MAX_RECEIPTS_PENDING {
        outbox.receipt_done();
        tracing::warn!(smsc, "receipts are not being stored fast enough: refused for later");
        ack.refuse(smpp::CommandStatus::ESME_RX_T_APPN);
        return;
    }
    let error_code = (status != MessageStatus::Delivered).then(|| receipt_error(&receipt));
    let update = store::ReceiptUpdate { smsc, smsc_message_id: receipt.message_id, status, error_code };
    outbox.write(Write::Receipt { update, ack, until: Instant::now() + RECEIPT_WAIT });
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

async fn incoming(
    shared: &Shared,
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
    let rates = shared.rates.for_account(&shared.store, &message.account_sid).await;
    message.price = crate::pricing::message_price(rates.as_deref(), &message);
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
    let mut sms_url = number.sms_url.clone();
    match crate::proxy::route_message(shared, &message).await {
        crate::proxy::MessagePlan::NotProxied => {}
        crate::proxy::MessagePlan::Done => return,
        crate::proxy::MessagePlan::Webhook(url) => sms_url = Some(url),
    }
    let Some(url) = sms_url else {
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
                twiml::MessagingVerb::Message(reply) => queue_reply(shared, &message, reply).await,
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
    if let Err(e) = shared.outbox.create(&shared.store, &reply).await {
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
