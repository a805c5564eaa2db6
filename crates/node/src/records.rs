//! Call-record writes through one task, in order.
//!
//! SQLite takes one writer at a time: call tasks writing at once make the losers sleep in its busy
//! handler, and under load those sleeps land in call set-up. So one task takes every call-record
//! write from a queue and runs them back to back. A call enqueues and goes on; its writes keep
//! their order because the queue is FIFO. [`RecordWriter::flush`] waits until everything queued
//! before it is written: a call's end and the REST API's create wait, so what they hand on is in
//! the store.
//!
//! Crash window: a call's insert is queued when its INVITE is accepted, before the webhook fetch
//! that must come back before the 200 OK, and the writer commits it within milliseconds unless the
//! store stalls. A committed row survives `kill -9` (SQLite in WAL with `synchronous=NORMAL`, or
//! PostgreSQL); what a crash can lose is what sits in this queue, so a call whose INVITE arrived in
//! the last few milliseconds before the crash (not yet answered) may have no row. Calls left open
//! are closed at the next start by [`crate::recovery`].

use std::path::PathBuf;

use model::records::CallRecord;
use model::{AccountSid, CallSid, RecordingSid};
use tokio::sync::{mpsc, oneshot};

use crate::NodeConfig;

/// Where a recording's WAV lives: `<recordings_dir>/<AC>/<CA>/<RE>.wav`. Every recording (the
/// `<Record>` verb, `<Dial record>`, API recordings) goes here, so a restart after a crash can
/// finalize a file and give it a row from its path alone.
pub fn recording_path(
    config: &NodeConfig,
    account: &AccountSid,
    call: &CallSid,
    recording: &RecordingSid,
) -> PathBuf {
    config
        .recordings_dir
        .join(account.as_str())
        .join(call.as_str())
        .join(format!("{}.wav", recording.as_str()))
}

/// Where a conference's recording is written: `<recordings_dir>/<AC>/<CF>/<RE>.wav`, beside the
/// calls' folders (a conference SID never names a call's folder).
pub fn conference_recording_path(
    config: &NodeConfig,
    account: &AccountSid,
    conference: &engine::ConferenceSid,
    recording: &RecordingSid,
) -> PathBuf {
    config
        .recordings_dir
        .join(account.as_str())
        .join(conference.as_str())
        .join(format!("{}.wav", recording.as_str()))
}

enum Write {
    Insert(Box<CallRecord>),
    Update(Box<CallRecord>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct RecordWriter {
    queue: mpsc::UnboundedSender<Write>,
}

impl RecordWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: store::Store) -> RecordWriter {
        let (queue, mut writes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(write) = writes.recv().await {
                let (what, result) = match write {
                    Write::Insert(record) => {
                        ("insert", store.insert_call(&record).await.map(|_| record))
                    }
                    Write::Update(record) => {
                        ("update", store.update_call(&record).await.map(|_| record))
                    }
                    Write::Flush(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, what, "could not write a call record");
                }
            }
        });
        RecordWriter { queue }
    }

    pub fn insert_call(&self, record: &CallRecord) {
        let _ = self.queue.send(Write::Insert(Box::new(record.clone())));
    }

    pub fn update_call(&self, record: &CallRecord) {
        let _ = self.queue.send(Write::Update(Box::new(record.clone())));
    }

    /// Waits until every write queued before this call is done.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.queue.send(Write::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}
