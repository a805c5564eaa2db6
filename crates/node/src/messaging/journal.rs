//! The messages' writer: every store write of the SMS path, grouped.
//!
//! New messages, accepted submits, retries, final statuses and delivery receipts arrive on one
//! channel; the task takes all that waits (up to [`MAX_BATCH`]) and writes it in one transaction
//! (`Store::write_messages`: a few statements per kind, one commit), so the statements and
//! commits per message fall as the rate rises, on SQLite's single writer as on PostgreSQL. Only once a write is committed does its effect leave: the API's 201, the
//! message entering the outbox, the deliver_sm_resp, the status callback.
//!
//! Within a batch, receipts are written after accepted submits: a receipt that arrives with the
//! submit it answers finds its part recorded.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use model::{MessageRecord, MessageStatus};
use store::{MessageWrites, ReceiptOutcome, ReceiptUpdate, SentMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{callback, Outbox};
use crate::sms::DeliverAck;
use crate::wiring::Shared;

/// Writes taken in one batch at most.
const MAX_BATCH: usize = 4096;
/// How long a receipt that finds no part waits between looks (its submit's record may be
/// behind it).
const RECEIPT_RETRY: Duration = Duration::from_millis(50);
/// How long an accepted submit whose record failed waits before it is written again.
const SENT_RETRY: Duration = Duration::from_secs(1);

/// One write for the journal.
pub(super) enum Write {
    /// A new outbound message: stored, then queued in the outbox, then `done`.
    Create { message: MessageRecord, done: oneshot::Sender<Result<(), String>> },
    /// Every part of `message` was accepted by `smsc` under `ids`; it cost `price`, if priced.
    Sent { message: MessageRecord, smsc: String, ids: Vec<String>, price: Option<String> },
    /// `message` is to be tried again later: `queued` becomes `sending`.
    Retrying { message: MessageRecord },
    /// `message` ended without reaching an SMSC (refused, expired, no route).
    Final { message: MessageRecord, status: MessageStatus, error_code: u32, reason: String },
    /// A delivery receipt; answered once written, or once `until` passed without its part.
    Receipt { update: ReceiptUpdate, ack: DeliverAck, until: Instant },
}

#[derive(Default)]
struct Batch {
    /// New messages, and beside them (same order) whom to tell once they are stored: the
    /// store takes the messages as they are, with no copy.
    creates: Vec<MessageRecord>,
    created: Vec<oneshot::Sender<Result<(), String>>>,
    /// Accepted submits, and beside them (same order) their messages, for the callbacks.
    sent: Vec<SentMessage>,
    sent_messages: Vec<MessageRecord>,
    retrying: Vec<MessageRecord>,
    finals: Vec<(MessageRecord, MessageStatus, u32, String)>,
    receipts: Vec<(ReceiptUpdate, DeliverAck, Instant)>,
    len: usize,
}

impl Batch {
    fn add(&mut self, write: Write) {
        self.len += 1;
        match write {
            Write::Create { message, done } => {
                self.creates.push(message);
                self.created.push(done);
            }
            Write::Sent { message, smsc, ids, price } => {
                self.sent.push(SentMessage { sid: message.sid, smsc, message_ids: ids, price });
                self.sent_messages.push(message);
            }
            Write::Retrying { message } => self.retrying.push(message),
            Write::Final { message, status, error_code, reason } => {
                self.finals.push((message, status, error_code, reason))
            }
            Write::Receipt { update, ack, until } => self.receipts.push((update, ack, until)),
        }
    }
}

/// Rows written before the first `Store::analyze_messages`; each later one waits for twice as
/// many, up to [`ANALYZE_MAX_ROWS`].
const ANALYZE_FIRST_ROWS: usize = 1_000;
const ANALYZE_MAX_ROWS: usize = 1_000_000;

/// Runs one journal task per lane, side by side, until every lane closes.
pub(super) async fn run_lanes(shared: Arc<Shared>, outbox: Outbox, lanes: Vec<mpsc::UnboundedReceiver<Write>>) {
    let analyzing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| tokio::spawn(run(shared.clone(), outbox.clone(), lane, analyzing.clone())))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

async fn run(
    shared: Arc<Shared>,
    outbox: Outbox,
    mut writes: mpsc::UnboundedReceiver<Write>,
    analyzing: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut analyze = Analyze { written: 0, next: ANALYZE_FIRST_ROWS, running: analyzing };
    while let Some(first) = writes.recv().await {
        let mut batch = Batch::default();
        batch.add(first);
        while batch.len < MAX_BATCH {
            match writes.try_recv() {
                Ok(w) => batch.add(w),
                Err(_) => break,
            }
        }
        let rows = batch.creates.len() + batch.sent.len();
        write(&shared, &outbox, batch).await;
        analyze.wrote(&shared, &outbox, rows);
    }
}

/// When the SMS tables' planner statistics are refreshed: after 1,000 rows, 2,000 more, 4,000
/// more... (a table growing from empty), then every million, one refresh at a time, on the
/// node's runtime so that the journal does not wait for it.
struct Analyze {
    written: usize,
    next: usize,
    running: Arc<std::sync::atomic::AtomicBool>,
}

impl Analyze {
    fn wrote(&mut self, shared: &Arc<Shared>, outbox: &Outbox, rows: usize) {
        use std::sync::atomic::Ordering;
        self.written += rows;
        if self.written < self.next || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.written = 0;
        self.next = (self.next * 2).min(ANALYZE_MAX_ROWS);
        let (store, running) = (shared.store.clone(), self.running.clone());
        outbox.spawn(async move {
            if let Err(e) = store.analyze_messages().await {
                tracing::warn!(error = %e, "the message tables' statistics were not refreshed");
            }
            running.store(false, Ordering::Release);
        });
    }
}

async fn write(shared: &Arc<Shared>, outbox: &Outbox, batch: Batch) {
    let store = &shared.store;
    // Final statuses are rare (refusals, expiries): one statement each, outside the batch.
    for (message, status, code, reason) in &batch.finals {
        match store.set_message_status(&message.sid, *status, Some(*code), Some(reason), None).await {
            Ok(true) => callback(shared, message, *status, Some(*code)),
            Ok(false) => {}
            Err(e) => tracing::warn!(sid = %message.sid, error = %e, "message status not stored"),
        }
    }
    let (create, sent) = (batch.creates, batch.sent);
    let retrying: Vec<_> = batch.retrying.iter().map(|m| m.sid).collect();
    let receipts: Vec<ReceiptUpdate> = batch.receipts.iter().map(|(u, _, _)| u.clone()).collect();
    let writes = MessageWrites { create: &create, sent: &sent, retrying: &retrying, receipts: &receipts, now: Utc::now() };
    let started = Instant::now();
    let written = store.write_messages(&writes).await;
    tracing::debug!(
        created = create.len(),
        sent = sent.len(),
        receipts = receipts.len(),
        micros = started.elapsed().as_micros() as u64,
        "message batch written"
    );
    match written {
        Ok(done) => {
            if !create.is_empty() {
                outbox.queue_stored(create);
            }
            for stored in batch.created {
                let _ = stored.send(Ok(()));
            }
            if !done.sent.is_empty() {
                let changed: HashSet<_> = done.sent.into_iter().collect();
                for message in &batch.sent_messages {
                    if changed.contains(&message.sid) {
                        callback(shared, message, MessageStatus::Sent, None);
                    }
                }
            }
            receipts_written(shared, outbox, batch.receipts, done.receipts);
        }
        Err(e) => {
            tracing::warn!(
                messages = create.len(),
                sent = sent.len(),
                receipts = receipts.len(),
                error = %e,
                "message writes failed"
            );
            for stored in batch.created {
                let _ = stored.send(Err(e.to_string()));
            }
            // The SMSC has these: recording them must not be given up, or a restart would send
            // them again.
            for (message, s) in batch.sent_messages.into_iter().zip(sent) {
                let write = Write::Sent { message, smsc: s.smsc, ids: s.message_ids, price: s.price };
                outbox.write_later(SENT_RETRY, write);
            }
            // Not stored: each SMSC keeps its receipts and delivers them again.
            for (_, ack, _) in batch.receipts {
                outbox.receipt_done();
                ack.refuse(smpp::CommandStatus::ESME_RX_T_APPN);
            }
        }
    }
}

fn receipts_written(
    shared: &Arc<Shared>,
    outbox: &Outbox,
    receipts: Vec<(ReceiptUpdate, DeliverAck, Instant)>,
    outcomes: Vec<ReceiptOutcome>,
) {
    let now = Instant::now();
    for ((update, ack, until), outcome) in receipts.into_iter().zip(outcomes) {
        match outcome {
            ReceiptOutcome::Unknown if now < until => {
                outbox.write_later(RECEIPT_RETRY, Write::Receipt { update, ack, until });
            }
            ReceiptOutcome::Unknown => {
                tracing::info!(smsc = %update.smsc, id = %update.smsc_message_id, "a receipt for no message of ours");
                outbox.receipt_done();
                ack.stored();
            }
            ReceiptOutcome::Applied { changed, message, .. } => {
                if changed {
                    outbox.count(&update.smsc, update.status == MessageStatus::Delivered);
                }
                outbox.receipt_done();
                ack.stored();
                if let Some(change) = message {
                    if let Some(record) = &change.record {
                        callback(shared, record, change.status, change.error_code);
                    }
                }
            }
        }
    }
}
