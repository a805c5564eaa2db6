//! Call queues at run time: `<Enqueue>` (the caller's side), `<Dial><Queue>` (the agent's),
//! and what the REST API asks of live members. Who waits where, positions and averages are
//! [`engine::Queues`]'s; this module keeps it behind one lock, tells waiting calls when an
//! agent takes them, and joins the two calls' media (their streams may be on different
//! workers: the bridge moves one).
//!
//! The two call tasks (see `call::queue`) talk directly once an agent has taken a caller: the
//! caller hears the `<Queue url>` document (if any), then hands its stream to the agent, who
//! bridges to it; whichever hangs up first tells the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::queue::{Departure, LeaveReason, QueueError};
use engine::{HttpMethod, QueueSid, Queues};
use model::{AccountSid, CallSid};
use tokio::sync::{mpsc, Notify};

use crate::media::StreamRef;

/// What an agent (or the API) tells a waiting caller.
#[derive(Debug)]
pub(crate) enum ToCaller {
    /// An agent took the call: play `url` (if any) with `params`, then send
    /// [`ToAgent::Ready`] to `agent`.
    Dequeued {
        agent: mpsc::UnboundedSender<ToAgent>,
        agent_call_sid: CallSid,
        url: Option<(String, HttpMethod)>,
        params: Vec<(String, String)>,
    },
    /// A Members update took the call out of the queue into this document.
    Redirect { url: String, method: HttpMethod },
    /// The agent it was bridged to hung up.
    AgentGone,
}

/// What a taken caller tells its agent.
#[derive(Debug)]
pub(crate) enum ToAgent {
    /// Bridge to this stream now.
    Ready { caller: StreamRef },
    /// The caller hung up (or left) before or during the bridge.
    CallerGone,
    /// Someone was enqueued: try the queue again.
    Wake,
}

#[derive(Default)]
struct State {
    queues: Queues,
    waiters: HashMap<CallSid, mpsc::UnboundedSender<ToCaller>>,
    /// Agents waiting on an empty queue.
    idle_agents: HashMap<QueueSid, Arc<Notify>>,
}

/// The node's queues. Cheap to clone.
#[derive(Default, Clone)]
pub struct QueueRuntime {
    state: Arc<Mutex<State>>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A poisoned lock only means a panic elsewhere; the queues are whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A member as the Members resource shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub call_sid: CallSid,
    pub position: usize,
    pub wait_time: Duration,
    pub enqueued_at: Instant,
}

impl QueueRuntime {
    /// The queue named `name` in `account`, made on demand (Twilio makes queues on first
    /// use). The store keeps the queue (its SID, name and size, which the REST API may have
    /// changed); the runtime follows it. `max_size` (`<Enqueue maxQueueSize>`) overrides the
    /// stored size for the live queue.
    pub(crate) async fn queue_sid(
        &self,
        store: &store::Store,
        account: AccountSid,
        name: &str,
        max_size: Option<u32>,
    ) -> Result<QueueSid, String> {
        let row = store
            .queue_or_create(&account, name)
            .await
            .map_err(|e| e.to_string())?;
        let max = max_size.unwrap_or(row.max_size);
        let mut state = lock(&self.state);
        // A queue deleted and made again through the API has a new SID under the same name.
        if let Some(old) = state.queues.find(account, name).map(|q| q.sid()) {
            if old != row.sid && state.queues.delete(old).is_err() {
                return Ok(old);
            }
        }
        if state.queues.get(account, row.sid).is_some() {
            state
                .queues
                .set_max_size(row.sid, max)
                .map_err(|e| e.to_string())?;
            return Ok(row.sid);
        }
        state
            .queues
            .create(account, name, row.sid, Some(max))
            .map(|q| q.sid())
            .map_err(|e| e.to_string())
    }

    /// Live figures of a queue: current size and average wait.
    pub fn stats(&self, account: AccountSid, sid: QueueSid) -> Option<(usize, Duration)> {
        let state = lock(&self.state);
        let queue = state.queues.get(account, sid)?;
        Some((queue.len(), queue.average_wait_time(Instant::now())))
    }

    pub fn members(&self, account: AccountSid, sid: QueueSid) -> Option<Vec<MemberView>> {
        let state = lock(&self.state);
        let queue = state.queues.get(account, sid)?;
        let now = Instant::now();
        Some(
            queue
                .members(now)
                .map(|m| MemberView {
                    call_sid: m.call_sid,
                    position: m.position,
                    wait_time: m.wait_time,
                    enqueued_at: m.enqueued_at,
                })
                .collect(),
        )
    }

    /// Puts `call_sid` in the queue (its task hears of agents through `tx`) and wakes the
    /// agents waiting on an empty queue. Returns its position.
    pub(crate) fn enqueue(
        &self,
        sid: QueueSid,
        call_sid: CallSid,
        tx: mpsc::UnboundedSender<ToCaller>,
    ) -> Result<usize, QueueError> {
        let mut state = lock(&self.state);
        let position = state.queues.enqueue(Instant::now(), sid, call_sid)?;
        state.waiters.insert(call_sid, tx);
        if let Some(idle) = state.idle_agents.get(&sid) {
            idle.notify_waiters();
        }
        Ok(position)
    }

    /// The waitUrl parameters of a waiting call, as they stand now.
    pub(crate) fn wait_url_params(
        &self,
        account: AccountSid,
        sid: QueueSid,
        call_sid: CallSid,
    ) -> Option<Vec<(String, String)>> {
        let state = lock(&self.state);
        state
            .queues
            .get(account, sid)?
            .wait_url_params(Instant::now(), call_sid)
    }

    /// Takes `call_sid` out of its queue (hang-up, `<Leave>`, a live update...).
    pub(crate) fn leave(&self, call_sid: CallSid, reason: LeaveReason) -> Option<Departure> {
        let mut state = lock(&self.state);
        state.waiters.remove(&call_sid);
        state.queues.leave(Instant::now(), call_sid, reason)
    }

    /// Takes the front caller whose task is still there, or `None` when nobody waits.
    pub(crate) fn take_front(
        &self,
        sid: QueueSid,
    ) -> Result<Option<(Departure, mpsc::UnboundedSender<ToCaller>)>, QueueError> {
        let mut state = lock(&self.state);
        loop {
            let Some(departure) = state.queues.dequeue_front(Instant::now(), sid)? else {
                return Ok(None);
            };
            // A caller whose task is gone is skipped (it is leaving anyway).
            if let Some(waiter) = state.waiters.remove(&departure.call_sid) {
                return Ok(Some((departure, waiter)));
            }
        }
    }

    /// What wakes the agents waiting on an empty queue when a caller arrives.
    pub(crate) fn idle_agents(&self, sid: QueueSid) -> Arc<Notify> {
        let mut state = lock(&self.state);
        Arc::clone(state.idle_agents.entry(sid).or_default())
    }

    /// Members update: takes the front (`None`) or `call_sid` out of the queue and runs
    /// `url` on it (Twilio's `redirected`). Returns the member as it was.
    pub fn redirect_member(
        &self,
        account: AccountSid,
        sid: QueueSid,
        call_sid: Option<CallSid>,
        url: String,
        method: HttpMethod,
    ) -> Option<MemberView> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let queue = state.queues.get(account, sid)?;
        let member = match call_sid {
            Some(c) => queue.member(now, c)?,
            None => queue.front(now)?,
        };
        let view = MemberView {
            call_sid: member.call_sid,
            position: member.position,
            wait_time: member.wait_time,
            enqueued_at: member.enqueued_at,
        };
        state
            .queues
            .leave(now, member.call_sid, LeaveReason::Redirected);
        if let Some(waiter) = state.waiters.remove(&member.call_sid) {
            let _ = waiter.send(ToCaller::Redirect { url, method });
        }
        Some(view)
    }
}
