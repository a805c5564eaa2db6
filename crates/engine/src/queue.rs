//! Call queues: `<Enqueue>`, `<Dial><Queue>`, `<Leave>` and the Queues and Members REST
//! resources.
//!
//! Owns the live state of every queue on this node: which calls wait in which queue, in what
//! order and since when, and the figures Twilio reports about them (`QueuePosition`,
//! `AvgQueueTime`, `average_wait_time`, `QueueResult`...). The store keeps the queue rows (SID,
//! friendly name, max size, dates); [`Queues`] keeps the members, which exist only while calls
//! wait.
//!
//! Driven sans-IO like [`crate::Call`]: plain methods that take `now` and say what happened. No
//! clock, no timer (a queue has nothing to wake up for: the wait music is the waiting call's own
//! `waitUrl` document), no I/O. SIDs come from the caller, since the store mints them.
//!
//! # How the runtime drives it
//! - `<Enqueue>name</Enqueue>`: [`Queues::find`] the queue by account and name; when there is
//!   none, [`Queues::create`] it with a SID from the store (Twilio creates queues on demand);
//!   then [`Queues::enqueue`]. On [`QueueError::Full`] the call is not enqueued: request
//!   `action` with [`QueueResult::QueueFull`] only ([`QueueResult::action_params`]; no
//!   `QueueSid` or `QueueTime`, which Twilio sends only for calls that were enqueued). While
//!   the call waits, every `waitUrl` request carries [`Queue::wait_url_params`].
//! - `<Dial><Queue>name</Queue>`: [`Queues::dequeue_front`]. `Ok(None)` means nobody waits:
//!   Twilio's `<Dial>` then waits for the next caller, so the runtime tries again when someone
//!   is enqueued (or gives up at the `<Dial>` timeout). The dequeued caller's `<Queue url>`
//!   request carries [`Departure::queue_url_params`]; its `action` is requested when the bridge
//!   is over, with [`Departure::action_params`] (`bridged`).
//! - `<Leave>`, hang-up, a live update of the waiting call (Calls API `Url`/`Twiml`), an
//!   unusable `waitUrl` document: [`Queues::leave`] with the [`LeaveReason`]; the `action` is
//!   requested at once with [`Departure::action_params`].
//! - Members REST update (`Front` or a CallSid, with `Url`): Twilio calls this `redirected`:
//!   find the member ([`Queue::front`] or [`Queue::member`]), [`Queues::leave`] it with
//!   [`LeaveReason::Redirected`], and run the document at `Url` on that call.
//! - Queues REST: create ([`Queues::create`]), update ([`Queues::rename`],
//!   [`Queues::set_max_size`]), delete ([`Queues::delete`]), fetch and list (`current_size` is
//!   [`Queue::len`], `average_wait_time` is [`Queue::average_wait_time`]). Lookups by SID are
//!   scoped by account ([`Queues::get`]), like every query in the store.
//!
//! # Behaviour where Twilio's docs are silent (choices)
//! - `AvgQueueTime` and the REST `average_wait_time` are the same figure, as both Twilio pages
//!   describe it: the mean time the calls *now in the queue* have been waiting, computed at
//!   `now` ("calculated at the time of the request"), truncated to whole seconds; `0` for an
//!   empty queue. Callers who already left do not count.
//! - `QueueTime` and the Members `wait_time` are whole seconds, truncated.
//! - The default `max_size` is [`DEFAULT_MAX_SIZE`] (1000, as Twilio's current `<Enqueue>`
//!   and Queue pages say; older pages said 100); it ranges over `1..=`[`MAX_SIZE_LIMIT`].
//!   Lowering it below the current size keeps the calls already waiting; new ones are refused
//!   until the queue is below the new size.
//! - Deleting a queue that still has members is refused ([`QueueError::NotEmpty`]): Twilio's
//!   page only says inactive queues should be deleted; a compatible provider (SignalWire)
//!   documents "only empty queues can be deleted", and deleting under waiting callers would
//!   strand them.
//! - A call waits in at most one queue at a time (a call runs one verb at a time), so
//!   enqueueing a call that already waits anywhere is [`QueueError::AlreadyQueued`].
//! - Queue names are 1 to [`MAX_NAME_CHARS`] characters, compared exactly (case-sensitive),
//!   and unique per account.
//! - [`QueueResult`] is spelled as Twilio's `<Enqueue>` page spells it, including
//!   `bridging-in-process` and `redirected-from-bridged`; there is no `currently-full` value
//!   in Twilio's list (a full queue is `queue-full`).
//! - [`Departure::queue_url_params`] leaves out `CallSid`: the dequeued call's standard
//!   request parameters already carry it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use model::{AccountSid, CallSid};

/// `max_size` of a queue created without one.
pub const DEFAULT_MAX_SIZE: u32 = 1000;
/// The largest `max_size` Twilio accepts.
pub const MAX_SIZE_LIMIT: u32 = 5000;
/// The longest queue name `<Enqueue>` accepts, in characters.
pub const MAX_NAME_CHARS: usize = 64;

pub use model::QueueSid;

/// Why a call left (or never entered) a queue: Twilio's `QueueResult` action parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueResult {
    /// Dequeued and bridged to the dequeuer.
    Bridged,
    /// The bridge to the dequeuer was under way (e.g. the caller hung up during `<Queue url>`).
    BridgingInProcess,
    /// The `<Enqueue>` or the `waitUrl` document was in error.
    Error,
    /// The caller hung up while waiting.
    Hangup,
    /// The caller left with `<Leave>`.
    Leave,
    /// The waiting call was redirected out of the queue (Members or Calls REST update).
    Redirected,
    /// The bridged call was then transferred out.
    RedirectedFromBridged,
    /// The queue was full: the call was not enqueued.
    QueueFull,
    /// This server failed while enqueueing.
    SystemError,
}

impl QueueResult {
    pub const ALL: [QueueResult; 9] = [
        QueueResult::Bridged,
        QueueResult::BridgingInProcess,
        QueueResult::Error,
        QueueResult::Hangup,
        QueueResult::Leave,
        QueueResult::Redirected,
        QueueResult::RedirectedFromBridged,
        QueueResult::QueueFull,
        QueueResult::SystemError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueResult::Bridged => "bridged",
            QueueResult::BridgingInProcess => "bridging-in-process",
            QueueResult::Error => "error",
            QueueResult::Hangup => "hangup",
            QueueResult::Leave => "leave",
            QueueResult::Redirected => "redirected",
            QueueResult::RedirectedFromBridged => "redirected-from-bridged",
            QueueResult::QueueFull => "queue-full",
            QueueResult::SystemError => "system-error",
        }
    }

    /// The `action` parameters for a call that was never enqueued (`queue-full`, `error`,
    /// `system-error`): only `QueueResult`, as on Twilio.
    pub fn action_params(self) -> Vec<(String, String)> {
        vec![("QueueResult".into(), self.as_str().into())]
    }
}

impl fmt::Display for QueueResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a waiting call leaves its queue other than by being dequeued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// The caller hung up.
    Hangup,
    /// `<Leave>` ran in the `waitUrl` document.
    Leave,
    /// A REST update (Members or Calls) took the call out of the queue.
    Redirected,
    /// The `waitUrl` document could not be fetched or run.
    Error,
    /// This server failed.
    SystemError,
}

impl LeaveReason {
    pub fn queue_result(self) -> QueueResult {
        match self {
            LeaveReason::Hangup => QueueResult::Hangup,
            LeaveReason::Leave => QueueResult::Leave,
            LeaveReason::Redirected => QueueResult::Redirected,
            LeaveReason::Error => QueueResult::Error,
            LeaveReason::SystemError => QueueResult::SystemError,
        }
    }
}

/// What went wrong, by who is at fault: the app (`InvalidName`, `InvalidMaxSize`,
/// `NameTaken`, `NotEmpty`), the queue's state (`Full`), or the runtime (the rest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("no such queue")]
    UnknownQueue,
    #[error("the queue is full ({max_size} calls)")]
    Full { max_size: u32 },
    #[error("call {call_sid} already waits in queue {queue_sid}")]
    AlreadyQueued {
        call_sid: CallSid,
        queue_sid: QueueSid,
    },
    #[error("call {0} is not waiting in this queue")]
    NotQueued(CallSid),
    #[error("the queue still has {len} members")]
    NotEmpty { len: usize },
    #[error("the account already has a queue named {0:?}")]
    NameTaken(String),
    #[error("queue SID {0} is already in use")]
    SidTaken(QueueSid),
    #[error("a queue name is 1 to {MAX_NAME_CHARS} characters, got {0}")]
    InvalidName(usize),
    #[error("a queue's max size is 1 to {MAX_SIZE_LIMIT}, got {0}")]
    InvalidMaxSize(u32),
}

impl QueueError {
    /// The `QueueResult` to report when `<Enqueue>` fails with this error.
    pub fn queue_result(&self) -> QueueResult {
        match self {
            QueueError::Full { .. } => QueueResult::QueueFull,
            QueueError::InvalidName(_) => QueueResult::Error,
            _ => QueueResult::SystemError,
        }
    }
}

/// A call waiting in a queue, as the Members resource shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub call_sid: CallSid,
    /// 1 is the front.
    pub position: usize,
    pub enqueued_at: Instant,
    pub wait_time: Duration,
}

/// A call that left its queue, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Departure {
    pub queue_sid: QueueSid,
    pub call_sid: CallSid,
    pub result: QueueResult,
    /// Its position just before it left (1 is the front).
    pub position: usize,
    pub enqueued_at: Instant,
    pub wait_time: Duration,
}

impl Departure {
    /// The `<Enqueue action>` parameters: `QueueResult`, `QueueSid`, `QueueTime`.
    pub fn action_params(&self) -> Vec<(String, String)> {
        vec![
            ("QueueResult".into(), self.result.as_str().into()),
            ("QueueSid".into(), self.queue_sid.to_string()),
            ("QueueTime".into(), self.wait_time.as_secs().to_string()),
        ]
    }

    /// The `<Dial><Queue url>` parameters, requested on the dequeued call before the bridge:
    /// `QueueSid`, `QueueTime`, `DequeingCallSid` (Twilio's spelling). `CallSid` (the dequeued
    /// call) is among the call's standard parameters.
    pub fn queue_url_params(&self, dequeuing_call: CallSid) -> Vec<(String, String)> {
        vec![
            ("QueueSid".into(), self.queue_sid.to_string()),
            ("QueueTime".into(), self.wait_time.as_secs().to_string()),
            ("DequeingCallSid".into(), dequeuing_call.to_string()),
        ]
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    call_sid: CallSid,
    enqueued_at: Instant,
}

/// One named queue of an account: its settings and its members in FIFO order.
#[derive(Debug, Clone)]
pub struct Queue {
    sid: QueueSid,
    account_sid: AccountSid,
    name: String,
    max_size: u32,
    members: VecDeque<Entry>,
}

impl Queue {
    pub fn sid(&self) -> QueueSid {
        self.sid
    }

    pub fn account_sid(&self) -> AccountSid {
        self.account_sid
    }

    /// The friendly name, which `<Enqueue>` and `<Dial><Queue>` use.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn max_size(&self) -> u32 {
        self.max_size
    }

    /// How many calls wait: Twilio's `current_size` and `CurrentQueueSize`.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// No call can be enqueued now.
    pub fn is_full(&self) -> bool {
        // max_size is at most MAX_SIZE_LIMIT, so the conversion cannot truncate.
        self.members.len() >= self.max_size as usize
    }

    /// The call's 1-based position, if it waits here.
    pub fn position(&self, call_sid: CallSid) -> Option<usize> {
        self.index_of(call_sid).map(|i| i + 1)
    }

    pub fn member(&self, now: Instant, call_sid: CallSid) -> Option<Member> {
        let i = self.index_of(call_sid)?;
        self.members.get(i).map(|e| member(now, i, e))
    }

    /// The member Twilio's Members resource calls `Front`.
    pub fn front(&self, now: Instant) -> Option<Member> {
        self.members.front().map(|e| member(now, 0, e))
    }

    /// All members, front first.
    pub fn members(&self, now: Instant) -> impl Iterator<Item = Member> + '_ {
        self.members
            .iter()
            .enumerate()
            .map(move |(i, e)| member(now, i, e))
    }

    /// The mean wait of the calls now waiting, at `now`; zero when nobody waits. See the
    /// module docs for why this is the figure.
    pub fn average_wait_time(&self, now: Instant) -> Duration {
        let Ok(count) = u32::try_from(self.members.len()) else {
            // Unreachable: max_size caps the members at MAX_SIZE_LIMIT.
            return Duration::ZERO;
        };
        if count == 0 {
            return Duration::ZERO;
        }
        let total: Duration = self
            .members
            .iter()
            .map(|e| now.saturating_duration_since(e.enqueued_at))
            .sum();
        total / count
    }

    /// The parameters of a `waitUrl` request for `call_sid` at `now`: `QueuePosition`,
    /// `QueueSid`, `QueueTime`, `AvgQueueTime`, `CurrentQueueSize`, `MaxQueueSize`. `None`
    /// when the call does not wait here.
    pub fn wait_url_params(
        &self,
        now: Instant,
        call_sid: CallSid,
    ) -> Option<Vec<(String, String)>> {
        let m = self.member(now, call_sid)?;
        Some(vec![
            ("QueuePosition".into(), m.position.to_string()),
            ("QueueSid".into(), self.sid.to_string()),
            ("QueueTime".into(), m.wait_time.as_secs().to_string()),
            (
                "AvgQueueTime".into(),
                self.average_wait_time(now).as_secs().to_string(),
            ),
            ("CurrentQueueSize".into(), self.len().to_string()),
            ("MaxQueueSize".into(), self.max_size.to_string()),
        ])
    }

    fn index_of(&self, call_sid: CallSid) -> Option<usize> {
        self.members.iter().position(|e| e.call_sid == call_sid)
    }

    fn remove(&mut self, now: Instant, index: usize, result: QueueResult) -> Option<Departure> {
        let e = self.members.remove(index)?;
        Some(Departure {
            queue_sid: self.sid,
            call_sid: e.call_sid,
            result,
            position: index + 1,
            enqueued_at: e.enqueued_at,
            wait_time: now.saturating_duration_since(e.enqueued_at),
        })
    }
}

fn member(now: Instant, index: usize, e: &Entry) -> Member {
    Member {
        call_sid: e.call_sid,
        position: index + 1,
        enqueued_at: e.enqueued_at,
        wait_time: now.saturating_duration_since(e.enqueued_at),
    }
}

fn check_name(name: &str) -> Result<(), QueueError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(QueueError::InvalidName(chars));
    }
    Ok(())
}

fn check_max_size(max_size: u32) -> Result<(), QueueError> {
    if !(1..=MAX_SIZE_LIMIT).contains(&max_size) {
        return Err(QueueError::InvalidMaxSize(max_size));
    }
    Ok(())
}

/// Every queue on this node, with an index of which call waits where. One per node.
#[derive(Debug, Default)]
pub struct Queues {
    queues: HashMap<QueueSid, Queue>,
    by_name: HashMap<(AccountSid, String), QueueSid>,
    by_call: HashMap<CallSid, QueueSid>,
}

impl Queues {
    pub fn new() -> Queues {
        Queues::default()
    }

    /// Add an empty queue (`<Enqueue>` on demand, or the Queues REST create). `max_size`
    /// defaults to [`DEFAULT_MAX_SIZE`].
    pub fn create(
        &mut self,
        account_sid: AccountSid,
        name: &str,
        sid: QueueSid,
        max_size: Option<u32>,
    ) -> Result<&Queue, QueueError> {
        check_name(name)?;
        let max_size = max_size.unwrap_or(DEFAULT_MAX_SIZE);
        check_max_size(max_size)?;
        if self.queues.contains_key(&sid) {
            return Err(QueueError::SidTaken(sid));
        }
        let key = (account_sid, name.to_owned());
        if self.by_name.contains_key(&key) {
            return Err(QueueError::NameTaken(key.1));
        }
        self.by_name.insert(key, sid);
        let queue = self.queues.entry(sid).or_insert(Queue {
            sid,
            account_sid,
            name: name.to_owned(),
            max_size,
            members: VecDeque::new(),
        });
        Ok(queue)
    }

    /// The queue with this SID, if it belongs to `account_sid`.
    pub fn get(&self, account_sid: AccountSid, sid: QueueSid) -> Option<&Queue> {
        self.queues
            .get(&sid)
            .filter(|q| q.account_sid == account_sid)
    }

    /// The account's queue with this friendly name.
    pub fn find(&self, account_sid: AccountSid, name: &str) -> Option<&Queue> {
        let sid = self.by_name.get(&(account_sid, name.to_owned()))?;
        self.queues.get(sid)
    }

    /// The queue `call_sid` waits in.
    pub fn queue_of(&self, call_sid: CallSid) -> Option<&Queue> {
        self.queues.get(self.by_call.get(&call_sid)?)
    }

    /// Every queue, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Queue> {
        self.queues.values()
    }

    /// Change the friendly name (Queues REST update `FriendlyName`).
    pub fn rename(&mut self, sid: QueueSid, name: &str) -> Result<(), QueueError> {
        check_name(name)?;
        let queue = self.queues.get_mut(&sid).ok_or(QueueError::UnknownQueue)?;
        if queue.name == name {
            return Ok(());
        }
        let key = (queue.account_sid, name.to_owned());
        if self.by_name.contains_key(&key) {
            return Err(QueueError::NameTaken(key.1));
        }
        self.by_name
            .remove(&(queue.account_sid, queue.name.clone()));
        self.by_name.insert(key, sid);
        queue.name = name.to_owned();
        Ok(())
    }

    /// Change `max_size` (Queues REST update `MaxSize`). Calls already waiting stay.
    pub fn set_max_size(&mut self, sid: QueueSid, max_size: u32) -> Result<(), QueueError> {
        check_max_size(max_size)?;
        let queue = self.queues.get_mut(&sid).ok_or(QueueError::UnknownQueue)?;
        queue.max_size = max_size;
        Ok(())
    }

    /// Remove an empty queue (Queues REST delete).
    pub fn delete(&mut self, sid: QueueSid) -> Result<(), QueueError> {
        let queue = self.queues.get(&sid).ok_or(QueueError::UnknownQueue)?;
        if !queue.is_empty() {
            return Err(QueueError::NotEmpty { len: queue.len() });
        }
        self.by_name
            .remove(&(queue.account_sid, queue.name.clone()));
        self.queues.remove(&sid);
        Ok(())
    }

    /// Put `call_sid` at the back of the queue; returns its position.
    pub fn enqueue(
        &mut self,
        now: Instant,
        sid: QueueSid,
        call_sid: CallSid,
    ) -> Result<usize, QueueError> {
        if let Some(&queue_sid) = self.by_call.get(&call_sid) {
            return Err(QueueError::AlreadyQueued {
                call_sid,
                queue_sid,
            });
        }
        let queue = self.queues.get_mut(&sid).ok_or(QueueError::UnknownQueue)?;
        if queue.is_full() {
            return Err(QueueError::Full {
                max_size: queue.max_size,
            });
        }
        queue.members.push_back(Entry {
            call_sid,
            enqueued_at: now,
        });
        self.by_call.insert(call_sid, sid);
        Ok(queue.members.len())
    }

    /// Take the front call out to bridge it (`<Dial><Queue>`); `Ok(None)` when nobody waits.
    pub fn dequeue_front(
        &mut self,
        now: Instant,
        sid: QueueSid,
    ) -> Result<Option<Departure>, QueueError> {
        let queue = self.queues.get_mut(&sid).ok_or(QueueError::UnknownQueue)?;
        let departure = queue.remove(now, 0, QueueResult::Bridged);
        if let Some(d) = &departure {
            self.by_call.remove(&d.call_sid);
        }
        Ok(departure)
    }

    /// Take a given call out to bridge it.
    pub fn dequeue(
        &mut self,
        now: Instant,
        sid: QueueSid,
        call_sid: CallSid,
    ) -> Result<Departure, QueueError> {
        let queue = self.queues.get_mut(&sid).ok_or(QueueError::UnknownQueue)?;
        let index = queue
            .index_of(call_sid)
            .ok_or(QueueError::NotQueued(call_sid))?;
        let departure = queue
            .remove(now, index, QueueResult::Bridged)
            .ok_or(QueueError::NotQueued(call_sid))?;
        self.by_call.remove(&call_sid);
        Ok(departure)
    }

    /// Take `call_sid` out of whatever queue it waits in; `None` when it waits nowhere (a
    /// hang-up of a call that was not queued, or a report that raced a dequeue).
    pub fn leave(
        &mut self,
        now: Instant,
        call_sid: CallSid,
        reason: LeaveReason,
    ) -> Option<Departure> {
        let sid = self.by_call.remove(&call_sid)?;
        let queue = self.queues.get_mut(&sid)?;
        let index = queue.index_of(call_sid)?;
        queue.remove(now, index, reason.queue_result())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u8) -> AccountSid {
        format!("AC{n:032x}").parse().expect("valid SID")
    }

    fn call(n: u8) -> CallSid {
        format!("CA{n:032x}").parse().expect("valid SID")
    }

    fn qsid(n: u8) -> QueueSid {
        format!("QU{n:032x}").parse().expect("valid SID")
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A registry with one queue "support" of account 1.
    fn support(max_size: Option<u32>) -> (Queues, QueueSid) {
        let mut queues = Queues::new();
        let sid = queues
            .create(account(1), "support", qsid(1), max_size)
            .expect("created")
            .sid();
        (queues, sid)
    }

    fn positions(queues: &Queues, sid: QueueSid, now: Instant) -> Vec<(CallSid, usize)> {
        queues
            .get(account(1), sid)
            .expect("queue")
            .members(now)
            .map(|m| (m.call_sid, m.position))
            .collect()
    }

    #[test]
    fn three_callers_get_positions_one_two_three() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        assert_eq!(queues.enqueue(t0, q, call(1)), Ok(1));
        assert_eq!(queues.enqueue(t0 + secs(5), q, call(2)), Ok(2));
        assert_eq!(queues.enqueue(t0 + secs(9), q, call(3)), Ok(3));
        let queue = queues.get(account(1), q).expect("queue");
        assert_eq!(queue.len(), 3);
        assert_eq!(queue.position(call(1)), Some(1));
        assert_eq!(queue.position(call(2)), Some(2));
        assert_eq!(queue.position(call(3)), Some(3));
        assert_eq!(
            queue.front(t0 + secs(10)).map(|m| m.call_sid),
            Some(call(1))
        );
        assert_eq!(queues.queue_of(call(2)).map(Queue::sid), Some(q));
    }

    #[test]
    fn dequeue_front_bridges_the_longest_waiting_and_positions_shift() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        for (i, n) in [1u8, 2, 3].into_iter().enumerate() {
            queues
                .enqueue(t0 + secs(i as u64 * 10), q, call(n))
                .expect("enqueued");
        }
        let d = queues
            .dequeue_front(t0 + secs(42), q)
            .expect("queue exists")
            .expect("someone waits");
        assert_eq!(d.call_sid, call(1));
        assert_eq!(d.result, QueueResult::Bridged);
        assert_eq!(d.position, 1);
        assert_eq!(d.wait_time, secs(42));
        assert_eq!(
            positions(&queues, q, t0 + secs(42)),
            vec![(call(2), 1), (call(3), 2)]
        );
        assert!(queues.queue_of(call(1)).is_none());

        let action = d.action_params();
        assert_eq!(param(&action, "QueueResult"), Some("bridged"));
        assert_eq!(param(&action, "QueueSid"), Some(q.as_str()));
        assert_eq!(param(&action, "QueueTime"), Some("42"));
        let url = d.queue_url_params(call(9));
        assert_eq!(param(&url, "DequeingCallSid"), Some(call(9).as_str()));
        assert_eq!(param(&url, "QueueTime"), Some("42"));
        assert_eq!(param(&url, "CallSid"), None);
    }

    #[test]
    fn dequeue_front_of_an_empty_queue_is_none_and_of_an_unknown_queue_an_error() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        assert_eq!(queues.dequeue_front(t0, q), Ok(None));
        assert_eq!(
            queues.dequeue_front(t0, qsid(2)),
            Err(QueueError::UnknownQueue)
        );
    }

    #[test]
    fn a_middle_caller_hanging_up_moves_those_behind_it_forward() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        for n in 1..=4 {
            queues.enqueue(t0, q, call(n)).expect("enqueued");
        }
        let d = queues
            .leave(t0 + secs(30), call(2), LeaveReason::Hangup)
            .expect("was queued");
        assert_eq!(d.result, QueueResult::Hangup);
        assert_eq!(d.position, 2);
        assert_eq!(param(&d.action_params(), "QueueResult"), Some("hangup"));
        assert_eq!(
            positions(&queues, q, t0 + secs(30)),
            vec![(call(1), 1), (call(3), 2), (call(4), 3)]
        );
        // A second report for the same call (or a call that never queued) changes nothing.
        assert_eq!(
            queues.leave(t0 + secs(31), call(2), LeaveReason::Hangup),
            None
        );
        assert_eq!(
            queues.leave(t0 + secs(31), call(9), LeaveReason::Leave),
            None
        );
    }

    #[test]
    fn leave_reasons_map_to_twilio_queue_results() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        let cases = [
            (LeaveReason::Hangup, "hangup"),
            (LeaveReason::Leave, "leave"),
            (LeaveReason::Redirected, "redirected"),
            (LeaveReason::Error, "error"),
            (LeaveReason::SystemError, "system-error"),
        ];
        for (reason, spelled) in cases {
            queues.enqueue(t0, q, call(1)).expect("enqueued");
            let d = queues.leave(t0, call(1), reason).expect("queued");
            assert_eq!(d.result.as_str(), spelled);
        }
        let all: Vec<&str> = QueueResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            all,
            [
                "bridged",
                "bridging-in-process",
                "error",
                "hangup",
                "leave",
                "redirected",
                "redirected-from-bridged",
                "queue-full",
                "system-error"
            ]
        );
    }

    #[test]
    fn a_full_queue_refuses_with_queue_full() {
        let t0 = Instant::now();
        let (mut queues, q) = support(Some(2));
        queues.enqueue(t0, q, call(1)).expect("enqueued");
        queues.enqueue(t0, q, call(2)).expect("enqueued");
        let err = queues.enqueue(t0, q, call(3)).expect_err("full");
        assert_eq!(err, QueueError::Full { max_size: 2 });
        assert_eq!(err.queue_result(), QueueResult::QueueFull);
        assert_eq!(
            err.queue_result().action_params(),
            vec![("QueueResult".to_string(), "queue-full".to_string())]
        );
        assert!(queues.queue_of(call(3)).is_none());

        // Room again once someone leaves.
        queues.dequeue_front(t0 + secs(1), q).expect("known");
        assert_eq!(queues.enqueue(t0 + secs(2), q, call(3)), Ok(2));
    }

    #[test]
    fn lowering_max_size_keeps_waiting_calls_but_refuses_new_ones() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        for n in 1..=3 {
            queues.enqueue(t0, q, call(n)).expect("enqueued");
        }
        queues.set_max_size(q, 2).expect("valid size");
        let queue = queues.get(account(1), q).expect("queue");
        assert_eq!((queue.len(), queue.max_size()), (3, 2));
        assert_eq!(
            queues.enqueue(t0, q, call(4)),
            Err(QueueError::Full { max_size: 2 })
        );
        queues.leave(t0, call(1), LeaveReason::Hangup);
        assert!(queues.enqueue(t0, q, call(4)).is_err(), "still at 2 of 2");
        queues.leave(t0, call(2), LeaveReason::Hangup);
        assert_eq!(queues.enqueue(t0, q, call(4)), Ok(2));
    }

    #[test]
    fn max_size_is_checked_against_twilio_limits() {
        let (mut queues, q) = support(None);
        assert_eq!(
            queues.get(account(1), q).map(Queue::max_size),
            Some(DEFAULT_MAX_SIZE)
        );
        assert_eq!(
            queues.set_max_size(q, 0),
            Err(QueueError::InvalidMaxSize(0))
        );
        assert_eq!(
            queues.set_max_size(q, 5001),
            Err(QueueError::InvalidMaxSize(5001))
        );
        assert_eq!(queues.set_max_size(q, 5000), Ok(()));
        assert_eq!(
            queues
                .create(account(1), "big", qsid(2), Some(6000))
                .map(|q| q.sid()),
            Err(QueueError::InvalidMaxSize(6000))
        );
        assert_eq!(
            queues.set_max_size(qsid(3), 10),
            Err(QueueError::UnknownQueue)
        );
    }

    #[test]
    fn average_wait_is_the_mean_wait_of_current_members_in_whole_seconds() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        let queue = queues.get(account(1), q).expect("queue");
        assert_eq!(queue.average_wait_time(t0), Duration::ZERO);

        queues.enqueue(t0, q, call(1)).expect("enqueued");
        queues.enqueue(t0 + secs(10), q, call(2)).expect("enqueued");
        queues.enqueue(t0 + secs(25), q, call(3)).expect("enqueued");
        // At t0+31: waits of 31, 21 and 6 seconds, mean 19.33.. s.
        let now = t0 + secs(31);
        let queue = queues.get(account(1), q).expect("queue");
        assert_eq!(queue.average_wait_time(now).as_secs(), 19);
        let params = queue.wait_url_params(now, call(2)).expect("member");
        assert_eq!(param(&params, "AvgQueueTime"), Some("19"));

        // Whoever leaves no longer counts, however they left: waits of 21 and 6 at t0+31.
        queues.dequeue_front(now, q).expect("known");
        let queue = queues.get(account(1), q).expect("queue");
        assert_eq!(queue.average_wait_time(now), Duration::from_millis(13_500));
        let params = queue.wait_url_params(now, call(3)).expect("member");
        assert_eq!(param(&params, "AvgQueueTime"), Some("13"));

        queues.leave(now, call(2), LeaveReason::Hangup);
        queues.leave(now, call(3), LeaveReason::Leave);
        let queue = queues.get(account(1), q).expect("queue");
        assert_eq!(queue.average_wait_time(now), Duration::ZERO);
    }

    #[test]
    fn wait_url_params_describe_the_member_at_now() {
        let t0 = Instant::now();
        let (mut queues, q) = support(Some(50));
        queues.enqueue(t0, q, call(1)).expect("enqueued");
        queues.enqueue(t0 + secs(4), q, call(2)).expect("enqueued");
        let queue = queues.get(account(1), q).expect("queue");
        let params = queue
            .wait_url_params(t0 + Duration::from_millis(10_500), call(2))
            .expect("member");
        let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "QueuePosition",
                "QueueSid",
                "QueueTime",
                "AvgQueueTime",
                "CurrentQueueSize",
                "MaxQueueSize"
            ]
        );
        assert_eq!(param(&params, "QueuePosition"), Some("2"));
        assert_eq!(param(&params, "QueueSid"), Some(q.as_str()));
        // 10.5 s since t0: call 2 waited 6.5 s, call 1 10.5 s, mean 8.5 s.
        assert_eq!(param(&params, "QueueTime"), Some("6"));
        assert_eq!(param(&params, "AvgQueueTime"), Some("8"));
        assert_eq!(param(&params, "CurrentQueueSize"), Some("2"));
        assert_eq!(param(&params, "MaxQueueSize"), Some("50"));
        assert_eq!(queue.wait_url_params(t0, call(7)), None);
    }

    #[test]
    fn members_list_is_fifo_with_wait_times() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        queues.enqueue(t0 + secs(3), q, call(5)).expect("enqueued");
        queues.enqueue(t0 + secs(7), q, call(2)).expect("enqueued");
        queues.enqueue(t0 + secs(8), q, call(9)).expect("enqueued");
        let now = t0 + secs(20);
        let members: Vec<Member> = queues
            .get(account(1), q)
            .expect("queue")
            .members(now)
            .collect();
        assert_eq!(
            members,
            vec![
                Member {
                    call_sid: call(5),
                    position: 1,
                    enqueued_at: t0 + secs(3),
                    wait_time: secs(17)
                },
                Member {
                    call_sid: call(2),
                    position: 2,
                    enqueued_at: t0 + secs(7),
                    wait_time: secs(13)
                },
                Member {
                    call_sid: call(9),
                    position: 3,
                    enqueued_at: t0 + secs(8),
                    wait_time: secs(12)
                },
            ]
        );
        let queue = queues.get(account(1), q).expect("queue");
        assert_eq!(queue.member(now, call(2)), Some(members[1]));
        assert_eq!(queue.member(now, call(4)), None);
        // A `now` before the enqueue (a caller's clock mix-up) is a zero wait, not a panic.
        assert_eq!(
            queue.member(t0, call(9)).map(|m| m.wait_time),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn dequeue_of_a_call_that_does_not_wait_there_is_an_error() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        queues
            .create(account(1), "sales", qsid(2), None)
            .expect("created");
        queues.enqueue(t0, q, call(1)).expect("enqueued");
        queues.enqueue(t0, qsid(2), call(2)).expect("enqueued");
        assert_eq!(
            queues.dequeue(t0, q, call(7)),
            Err(QueueError::NotQueued(call(7)))
        );
        assert_eq!(
            queues.dequeue(t0, q, call(2)),
            Err(QueueError::NotQueued(call(2))),
            "waits in another queue"
        );
        assert_eq!(
            queues.dequeue(t0, qsid(3), call(1)),
            Err(QueueError::UnknownQueue)
        );
        let d = queues.dequeue(t0 + secs(3), q, call(1)).expect("member");
        assert_eq!(
            (d.call_sid, d.result, d.wait_time),
            (call(1), QueueResult::Bridged, secs(3))
        );
        assert_eq!(
            queues.get(account(1), qsid(2)).map(Queue::len),
            Some(1),
            "the other queue is untouched"
        );
    }

    #[test]
    fn the_same_call_cannot_wait_twice() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        queues
            .create(account(1), "sales", qsid(2), None)
            .expect("created");
        queues.enqueue(t0, q, call(1)).expect("enqueued");
        let again = QueueError::AlreadyQueued {
            call_sid: call(1),
            queue_sid: q,
        };
        assert_eq!(queues.enqueue(t0 + secs(1), q, call(1)), Err(again.clone()));
        assert_eq!(queues.enqueue(t0 + secs(1), qsid(2), call(1)), Err(again));
        assert_eq!(queues.get(account(1), q).map(Queue::len), Some(1));
        // After leaving it may queue again, at the back.
        queues.enqueue(t0, q, call(2)).expect("enqueued");
        queues.leave(t0 + secs(2), call(1), LeaveReason::Leave);
        assert_eq!(queues.enqueue(t0 + secs(3), q, call(1)), Ok(2));
    }

    #[test]
    fn members_update_on_front_redirects_the_front_call() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        queues.enqueue(t0, q, call(1)).expect("enqueued");
        queues.enqueue(t0, q, call(2)).expect("enqueued");
        let front = queues
            .get(account(1), q)
            .and_then(|queue| queue.front(t0))
            .expect("front");
        let d = queues
            .leave(t0 + secs(8), front.call_sid, LeaveReason::Redirected)
            .expect("queued");
        assert_eq!(param(&d.action_params(), "QueueResult"), Some("redirected"));
        assert_eq!(param(&d.action_params(), "QueueTime"), Some("8"));
        assert_eq!(positions(&queues, q, t0), vec![(call(2), 1)]);
    }

    #[test]
    fn queues_are_named_per_account_and_looked_up_within_it() {
        let (mut queues, q) = support(None);
        assert_eq!(
            queues
                .create(account(1), "support", qsid(2), None)
                .map(|q| q.sid()),
            Err(QueueError::NameTaken("support".into()))
        );
        assert_eq!(
            queues
                .create(account(1), "other", qsid(1), None)
                .map(|q| q.sid()),
            Err(QueueError::SidTaken(qsid(1)))
        );
        let other = queues
            .create(account(2), "support", qsid(2), None)
            .expect("another account may use the name")
            .sid();
        assert_eq!(queues.find(account(1), "support").map(Queue::sid), Some(q));
        assert_eq!(
            queues.find(account(2), "support").map(Queue::sid),
            Some(other)
        );
        assert!(
            queues.find(account(1), "Support").is_none(),
            "case-sensitive"
        );
        assert!(queues.get(account(2), q).is_none(), "scoped by account");
        assert_eq!(queues.iter().count(), 2);
    }

    #[test]
    fn names_are_one_to_sixty_four_characters() {
        let mut queues = Queues::new();
        assert_eq!(
            queues
                .create(account(1), "", qsid(1), None)
                .map(|q| q.sid()),
            Err(QueueError::InvalidName(0))
        );
        let long = "é".repeat(65);
        assert_eq!(
            queues
                .create(account(1), &long, qsid(1), None)
                .map(|q| q.sid()),
            Err(QueueError::InvalidName(65))
        );
        assert!(queues
            .create(account(1), &"é".repeat(64), qsid(1), None)
            .is_ok());
        assert_eq!(
            QueueError::InvalidName(65).queue_result(),
            QueueResult::Error
        );
    }

    #[test]
    fn rename_moves_the_name_index() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        queues
            .create(account(1), "sales", qsid(2), None)
            .expect("created");
        assert_eq!(
            queues.rename(q, "sales"),
            Err(QueueError::NameTaken("sales".into()))
        );
        queues.enqueue(t0, q, call(1)).expect("enqueued");
        queues.rename(q, "help").expect("renamed");
        assert!(queues.find(account(1), "support").is_none());
        let queue = queues.find(account(1), "help").expect("found");
        assert_eq!((queue.sid(), queue.name(), queue.len()), (q, "help", 1));
        assert_eq!(queues.rename(q, "help"), Ok(()));
    }

    #[test]
    fn only_an_empty_queue_can_be_deleted() {
        let t0 = Instant::now();
        let (mut queues, q) = support(None);
        queues.enqueue(t0, q, call(1)).expect("enqueued");
        assert_eq!(queues.delete(q), Err(QueueError::NotEmpty { len: 1 }));
        queues.leave(t0, call(1), LeaveReason::Hangup);
        assert_eq!(queues.delete(q), Ok(()));
        assert!(queues.find(account(1), "support").is_none());
        assert_eq!(queues.delete(q), Err(QueueError::UnknownQueue));
        // The name is free again.
        assert!(queues.create(account(1), "support", qsid(2), None).is_ok());
    }

    #[test]
    fn queue_sids_have_the_qu_prefix() {
        let sid = QueueSid::generate();
        assert!(sid.as_str().starts_with("QU"));
        assert!(call(1).to_string().parse::<QueueSid>().is_err());
    }
}
