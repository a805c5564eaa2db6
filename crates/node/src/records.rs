//! Call-record writes through one task, in order.
//!
//! SQLite takes one writer at a time: call tasks writing at once make the losers sleep in its busy
//! handler, and under load those sleeps land in call set-up. So one task takes every call-record
//! write from a queue: all that waits goes in one transaction (one commit, and on SQLite each
//! touched page written to the WAL once rather than once per write), a call's later writes folded
//! into its first. A call enqueues and goes on; its writes keep their order because the queue is
//! FIFO. [`RecordWriter::flush`] waits until everything queued before it is written: a call's end
//! and the REST API's create wait, so what they hand on is in the store.
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

/// Writes taken into one transaction at most.
const MAX_BATCH: usize = 1024;
// No lingering for company: what the REST API reads (a call's status once its webhook has
// been asked) must be written as soon as the writer is free, and batches form on their own
// while it is busy.

impl RecordWriter {
    /// Starts the writer task on the current runtime.
    pub fn start(store: store::Store) -> RecordWriter {
        let (queue, mut writes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut taken = Vec::new();
            while writes.recv_many(&mut taken, MAX_BATCH).await > 0 {
                let (batch, flushes) = coalesce(taken.drain(..));
                write_batch(&store, &batch).await;
                for done in flushes {
                    let _ = done.send(());
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

/// One call's writes in a batch: inserted (then the latest state) or only updated.
struct Pending {
    insert: bool,
    record: Box<CallRecord>,
}

/// The batch's writes in order, a call's later writes folded into its first: an update saves
/// every field an insert or an earlier update wrote, so a call inserted and updated twice while
/// the last batch was written costs one INSERT of its latest state. The flushes are answered once
/// the batch is written.
fn coalesce(writes: impl Iterator<Item = Write>) -> (Vec<Pending>, Vec<oneshot::Sender<()>>) {
    let mut batch: Vec<Pending> = Vec::new();
    let mut at: std::collections::HashMap<CallSid, usize> = std::collections::HashMap::new();
    let mut flushes = Vec::new();
    for write in writes {
        let (insert, record) = match write {
            Write::Insert(record) => (true, record),
            Write::Update(record) => (false, record),
            Write::Flush(done) => {
                flushes.push(done);
                continue;
            }
        };
        match at.get(&record.sid) {
            Some(&i) if !insert => batch[i].record = record,
            // A second insert of one call is an error the store reports: kept apart, and the
            // call's updates still fold into its first write.
            Some(_) => batch.push(Pending { insert, record }),
            None => {
                at.insert(record.sid, batch.len());
                batch.push(Pending { insert, record });
            }
        }
    }
    (batch, flushes)
}

/// Writes a batch in one transaction; if that fails, each write alone, so one bad write (its
/// error logged) costs no other.
async fn write_batch(store: &store::Store, batch: &[Pending]) {
    let writes: Vec<store::CallWrite<'_>> = batch
        .iter()
        .map(|p| if p.insert { store::CallWrite::Insert(&p.record) } else { store::CallWrite::Update(&p.record) })
        .collect();
    if batch.len() > 1 && store.write_calls(&writes).await.is_ok() {
        return;
    }
    // Alone (no transaction around one statement), or each write of a batch that failed.
    for write in &writes {
        let result = match write {
            store::CallWrite::Insert(rec) => store.insert_call(rec).await,
            store::CallWrite::Update(rec) => store.update_call(rec).await.map(|_| ()),
        };
        if let Err(e) = result {
            let what = if matches!(write, store::CallWrite::Insert(_)) { "insert" } else { "update" };
            tracing::error!(error = %e, what, "could not write a call record");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{CallDirection, CallStatus};

    fn call(status: CallStatus) -> CallRecord {
        let now = chrono::Utc::now();
        CallRecord {
            sid: CallSid::generate(),
            account_sid: AccountSid::generate(),
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+15550000001".into(),
            to: "+15550000002".into(),
            status,
            direction: CallDirection::Inbound,
            start_time: None,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: None,
        }
    }

    #[test]
    fn a_calls_later_writes_fold_into_its_first_and_flushes_wait_for_the_batch() {
        let a = call(CallStatus::Ringing);
        let b = call(CallStatus::InProgress);
        let with = |c: &CallRecord, status| Box::new(CallRecord { status, ..c.clone() });
        let (done, _) = oneshot::channel();
        let writes = vec![
            Write::Insert(Box::new(a.clone())),
            Write::Update(with(&b, CallStatus::Completed)),
            Write::Update(with(&a, CallStatus::InProgress)),
            Write::Flush(done),
            Write::Update(with(&a, CallStatus::Completed)),
            Write::Update(with(&b, CallStatus::Busy)),
            Write::Insert(Box::new(a.clone())),
        ];
        let (batch, flushes) = coalesce(writes.into_iter());
        let seen: Vec<_> = batch.iter().map(|p| (p.insert, p.record.sid, p.record.status)).collect();
        assert_eq!(
            seen,
            vec![
                (true, a.sid, CallStatus::Completed),
                (false, b.sid, CallStatus::Busy),
                (true, a.sid, CallStatus::Ringing),
            ]
        );
        assert_eq!(flushes.len(), 1);
    }

    #[tokio::test]
    async fn a_batch_is_written_and_a_bad_write_costs_no_other() {
        let store = store::Store::open("sqlite::memory:").await.unwrap();
        let a = call(CallStatus::Ringing);
        store.ensure_account(&a.account_sid, "token", "test").await.unwrap();
        let b = CallRecord { sid: CallSid::generate(), ..a.clone() };
        let writer = RecordWriter::start(store.clone());
        writer.insert_call(&a);
        writer.insert_call(&b);
        writer.update_call(&CallRecord { status: CallStatus::Completed, ..a.clone() });
        // Inserted twice: the second fails alone.
        writer.insert_call(&b);
        writer.update_call(&CallRecord { status: CallStatus::Busy, ..b.clone() });
        writer.flush().await;
        let a_now = store.call(&a.account_sid, &a.sid).await.unwrap().unwrap();
        let b_now = store.call(&b.account_sid, &b.sid).await.unwrap().unwrap();
        assert_eq!((a_now.status, b_now.status), (CallStatus::Completed, CallStatus::Busy));
    }
}
