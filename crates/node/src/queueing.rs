//! Call queues at run time: `<Enqueue>` (the caller's side), `<Dial><Queue>` (the agent's),
//! and what the REST API asks of live members. Who waits where, positions and averages are
//! [`engine::Queues`]'s; this module keeps it behind one lock, tells waiting calls when an
//! agent takes them, and joins the two calls' media (their streams may be on different
//! workers: the bridge moves one).
//!
//! The two call tasks talk directly once an agent has taken a caller: the caller hears the
//! `<Queue url>` document (if any), then hands its stream to the agent, who bridges to it;
//! whichever hangs up first tells the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::queue::{Departure, LeaveReason};
use engine::wait::WaitOutput;
use engine::{
    DialCallStatus, DialOutcome, EnqueueOutcome, HttpMethod, QueueResult, QueueSid, Queues,
};
use model::{AccountSid, CallSid};
use tokio::sync::{mpsc, Notify};

use crate::call::ActiveCall;
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
    async fn queue_sid(
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

/// The caller's side of `<Enqueue>`.
pub(crate) struct QueuedLeg {
    id: u64,
    sid: QueueSid,
    events: mpsc::UnboundedReceiver<ToCaller>,
    enqueued_at: Instant,
    /// Taken by an agent: its channel, once the bridge is asked for.
    agent: Option<mpsc::UnboundedSender<ToAgent>>,
    /// Playing the `<Queue url>` document before the bridge.
    announcing: bool,
    bridged: bool,
    /// How long it waited (fixed when it left the queue).
    waited: Option<Duration>,
}

/// The agent's side of `<Dial><Queue>`.
pub(crate) struct DequeueLeg {
    id: u64,
    sid: QueueSid,
    url: Option<(String, HttpMethod)>,
    events_tx: mpsc::UnboundedSender<ToAgent>,
    events: mpsc::UnboundedReceiver<ToAgent>,
    deadline: tokio::time::Instant,
    caller: Option<(CallSid, mpsc::UnboundedSender<ToCaller>, Departure)>,
    bridged_at: Option<Instant>,
    /// The task that waits for a caller on an empty queue.
    _waker: Option<tokio::task::JoinHandle<()>>,
}

pub(crate) async fn queue_event(leg: &mut Option<QueuedLeg>) -> Option<ToCaller> {
    match leg {
        Some(leg) => leg.events.recv().await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn agent_event(leg: &mut Option<DequeueLeg>) -> Option<ToAgent> {
    match leg {
        Some(leg) => {
            tokio::select! {
                event = leg.events.recv() => event,
                () = tokio::time::sleep_until(leg.deadline), if leg.caller.is_none() => None,
            }
        }
        None => std::future::pending().await,
    }
}

impl ActiveCall {
    // ---- the caller ----

    pub(crate) async fn start_enqueue(&mut self, id: u64, enqueue: twiml::Enqueue) {
        let account = self.record.account_sid;
        let call_sid = self.record.sid;
        let runtime = self.shared.queues.clone();
        let store = self.shared.store.clone();
        let sid = match runtime
            .queue_sid(&store, account, &enqueue.name, enqueue.max_queue_size)
            .await
        {
            Ok(sid) => sid,
            Err(e) => {
                tracing::warn!(%call_sid, error = %e, "cannot make the queue");
                return self.report_enqueue(id, QueueResult::SystemError, None, Duration::ZERO);
            }
        };
        let (tx, events) = mpsc::unbounded_channel();
        let enqueued = {
            let mut state = lock(&runtime.state);
            let result = state.queues.enqueue(Instant::now(), sid, call_sid);
            if result.is_ok() {
                state.waiters.insert(call_sid, tx);
                if let Some(idle) = state.idle_agents.get(&sid) {
                    idle.notify_waiters();
                }
            }
            result
        };
        match enqueued {
            Ok(position) => {
                tracing::info!(%call_sid, queue_sid = %sid, position, "enqueued");
                self.queued = Some(QueuedLeg {
                    id,
                    sid,
                    events,
                    enqueued_at: Instant::now(),
                    agent: None,
                    announcing: false,
                    bridged: false,
                    waited: None,
                });
                let params = self.fresh_wait_params(Vec::new());
                let method = enqueue.wait_url_method.into();
                self.start_waiting(enqueue.wait_url.clone(), method, params, true);
            }
            Err(e) => {
                tracing::info!(%call_sid, queue_sid = %sid, error = %e, "not enqueued");
                let result = e.queue_result();
                let sid = (result != QueueResult::QueueFull).then_some(sid);
                self.report_enqueue(id, result, sid, Duration::ZERO);
            }
        }
    }

    /// The waitUrl parameters as they stand now (the position moves while the call waits).
    pub(crate) fn fresh_wait_params(&self, params: Vec<(String, String)>) -> Vec<(String, String)> {
        // Only while the call waits: the `<Queue url>` request carries its own parameters.
        let Some(leg) = self.queued.as_ref().filter(|leg| leg.agent.is_none()) else {
            return params;
        };
        let state = lock(&self.shared.queues.state);
        let Some(queue) = state.queues.get(self.record.account_sid, leg.sid) else {
            return params;
        };
        let mut out = self.base_webhook_params();
        out.extend(
            queue
                .wait_url_params(Instant::now(), self.record.sid)
                .unwrap_or_default(),
        );
        out
    }

    /// `<Leave>` or `<Hangup>` in the wait document.
    pub(crate) fn handle_wait_signal(&mut self, signal: WaitOutput) {
        let reason = match signal {
            WaitOutput::Leave => LeaveReason::Leave,
            WaitOutput::Hangup => LeaveReason::Hangup,
            WaitOutput::Failed => LeaveReason::Error,
            WaitOutput::Done => return self.after_queue_url(),
            _ => return,
        };
        self.leave_queue_now(reason);
    }

    /// `LeaveQueue` from the engine: the caller hung up or a live update took the call.
    pub(crate) fn leave_queue(&mut self, id: u64) {
        if self.queued.as_ref().is_some_and(|leg| leg.id == id) {
            let reason = if self.finished_by_caller() {
                LeaveReason::Hangup
            } else {
                LeaveReason::Redirected
            };
            self.leave_queue_now(reason);
        }
    }

    fn finished_by_caller(&self) -> bool {
        matches!(
            self.engine_status(),
            model::CallStatus::Completed | model::CallStatus::Canceled
        )
    }

    fn leave_queue_now(&mut self, reason: LeaveReason) {
        let Some(leg) = self.queued.take() else {
            return;
        };
        self.stop_waiting();
        let runtime = self.shared.queues.clone();
        let departure = {
            let mut state = lock(&runtime.state);
            state.waiters.remove(&self.record.sid);
            state.queues.leave(Instant::now(), self.record.sid, reason)
        };
        if let Some(agent) = &leg.agent {
            let _ = agent.send(ToAgent::CallerGone);
        }
        if leg.bridged {
            if let Some(s) = &self.stream {
                s.unbridge();
            }
        }
        let waited = leg
            .waited
            .or(departure.as_ref().map(|d| d.wait_time))
            .unwrap_or_else(|| leg.enqueued_at.elapsed());
        let result = if leg.bridged || leg.agent.is_some() {
            QueueResult::Bridged
        } else {
            reason.queue_result()
        };
        self.report_enqueue(leg.id, result, Some(leg.sid), waited);
    }

    pub(crate) fn handle_queue_event(&mut self, event: Option<ToCaller>) {
        match event {
            Some(ToCaller::Dequeued {
                agent,
                agent_call_sid,
                url,
                params,
            }) => {
                let Some(leg) = self.queued.as_mut() else {
                    let _ = agent.send(ToAgent::CallerGone);
                    return;
                };
                tracing::info!(call_sid = %self.record.sid, agent = %agent_call_sid, "taken from the queue");
                leg.waited = Some(leg.enqueued_at.elapsed());
                leg.agent = Some(agent);
                self.stop_waiting();
                match url {
                    Some((url, method)) => {
                        let mut all = self.base_webhook_params();
                        all.extend(params);
                        let first = self.next_wait_id;
                        self.waiting = Some(engine::wait::WaitLoop::once(
                            Instant::now(),
                            url,
                            method,
                            all,
                            first,
                        ));
                        if let Some(leg) = self.queued.as_mut() {
                            leg.announcing = true;
                        }
                    }
                    None => self.after_queue_url(),
                }
            }
            Some(ToCaller::Redirect { url, method }) => {
                // Out of the queue already; the engine's LeaveQueue then reports `redirected`.
                self.input(engine::Input::Redirect { url, method });
            }
            Some(ToCaller::AgentGone) => self.leave_queue_now(LeaveReason::Leave),
            None => {}
        }
    }

    /// The `<Queue url>` document is over (or there was none): hand the stream to the agent.
    fn after_queue_url(&mut self) {
        let Some(leg) = self.queued.as_mut() else {
            return;
        };
        leg.announcing = false;
        self.waiting = None;
        let (Some(agent), Some(stream)) = (&leg.agent, &self.stream) else {
            return;
        };
        leg.bridged = true;
        let _ = agent.send(ToAgent::Ready {
            caller: stream.reference(),
        });
    }

    fn report_enqueue(
        &mut self,
        id: u64,
        result: QueueResult,
        sid: Option<QueueSid>,
        waited: Duration,
    ) {
        let outcome = EnqueueOutcome {
            result,
            queue_sid: sid,
            queue_time: waited,
        };
        self.input(engine::Input::EnqueueEnded { id, outcome });
    }

    // ---- the agent ----

    pub(crate) fn dequeue_bridged_at(&self) -> Option<Instant> {
        self.dequeue.as_ref().and_then(|l| l.bridged_at)
    }

    pub(crate) async fn start_dequeue(&mut self, id: u64, dial: twiml::Dial) {
        let Some(twiml::DialJoin::Queue(noun)) = dial.join else {
            return;
        };
        let runtime = self.shared.queues.clone();
        let store = self.shared.store.clone();
        let queue = runtime
            .queue_sid(&store, self.record.account_sid, &noun.name, None)
            .await;
        let sid = match queue {
            Ok(sid) => sid,
            Err(e) => {
                tracing::warn!(call_sid = %self.record.sid, error = %e, "no such queue");
                return self.report_dequeue(
                    id,
                    DialCallStatus::Failed,
                    None,
                    Duration::ZERO,
                    Vec::new(),
                );
            }
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        self.dequeue = Some(DequeueLeg {
            id,
            sid,
            url: noun.url.map(|u| (u, noun.method.into())),
            events_tx,
            events,
            deadline: tokio::time::Instant::now() + Duration::from_secs(u64::from(dial.timeout)),
            caller: None,
            bridged_at: None,
            _waker: None,
        });
        self.try_dequeue();
    }

    /// Takes the front caller, or waits for one.
    fn try_dequeue(&mut self) {
        let Some(leg) = self.dequeue.as_mut() else {
            return;
        };
        if leg.caller.is_some() {
            return;
        }
        let runtime = self.shared.queues.clone();
        let mut state = lock(&runtime.state);
        loop {
            match state.queues.dequeue_front(Instant::now(), leg.sid) {
                Ok(Some(departure)) => {
                    let Some(waiter) = state.waiters.remove(&departure.call_sid) else {
                        continue;
                    };
                    let params = departure.queue_url_params(self.record.sid);
                    let sent = waiter.send(ToCaller::Dequeued {
                        agent: leg.events_tx.clone(),
                        agent_call_sid: self.record.sid,
                        url: leg.url.clone(),
                        params,
                    });
                    if sent.is_err() {
                        continue;
                    }
                    tracing::info!(call_sid = %self.record.sid, caller = %departure.call_sid, "dequeued");
                    leg.caller = Some((departure.call_sid, waiter, departure));
                    leg._waker = None;
                    return;
                }
                Ok(None) => {
                    // Nobody waits: wake up when someone is enqueued (or at the timeout).
                    let notify = Arc::clone(state.idle_agents.entry(leg.sid).or_default());
                    let wake = leg.events_tx.clone();
                    leg._waker = Some(tokio::spawn(async move {
                        notify.notified().await;
                        let _ = wake.send(ToAgent::Wake);
                    }));
                    return;
                }
                Err(e) => {
                    tracing::warn!(call_sid = %self.record.sid, error = %e, "dequeue failed");
                    drop(state);
                    return self.end_dequeue(DialCallStatus::Failed);
                }
            }
        }
    }

    pub(crate) fn handle_agent_event(&mut self, event: Option<ToAgent>) {
        match event {
            Some(ToAgent::Wake) => self.try_dequeue(),
            Some(ToAgent::Ready { caller }) => {
                if let (Some(leg), Some(stream)) = (self.dequeue.as_mut(), &self.stream) {
                    stream.bridge_to(&caller);
                    leg.bridged_at = Some(Instant::now());
                    tracing::info!(call_sid = %self.record.sid, "bridged to the queued caller");
                }
            }
            Some(ToAgent::CallerGone) => {
                let bridged = self
                    .dequeue
                    .as_ref()
                    .is_some_and(|l| l.bridged_at.is_some());
                self.end_dequeue(if bridged {
                    DialCallStatus::Completed
                } else {
                    DialCallStatus::Failed
                });
            }
            // The timeout on an empty queue.
            None => self.end_dequeue(DialCallStatus::NoAnswer),
        }
    }

    /// Ends the agent's `<Dial><Queue>` (either side hung up, or nobody came).
    pub(crate) fn end_dequeue(&mut self, status: DialCallStatus) {
        let Some(leg) = self.dequeue.take() else {
            return;
        };
        if let Some((_, caller, _)) = &leg.caller {
            let _ = caller.send(ToCaller::AgentGone);
        }
        if leg.bridged_at.is_some() {
            if let Some(s) = &self.stream {
                s.unbridge();
            }
        }
        let duration = leg.bridged_at.map_or(Duration::ZERO, |t| t.elapsed());
        let (caller, params) = match &leg.caller {
            Some((sid, _, departure)) => (
                Some(*sid),
                vec![
                    ("QueueSid".to_owned(), leg.sid.to_string()),
                    (
                        "QueueTime".to_owned(),
                        departure.wait_time.as_secs().to_string(),
                    ),
                ],
            ),
            None => (None, vec![("QueueSid".to_owned(), leg.sid.to_string())]),
        };
        self.report_dequeue(leg.id, status, caller, duration, params);
    }

    pub(crate) fn cancel_dequeue(&mut self, id: u64) -> bool {
        if self.dequeue.as_ref().is_some_and(|l| l.id == id) {
            let bridged = self
                .dequeue
                .as_ref()
                .is_some_and(|l| l.bridged_at.is_some());
            self.end_dequeue(if bridged {
                DialCallStatus::Completed
            } else {
                DialCallStatus::Canceled
            });
            return true;
        }
        false
    }

    fn report_dequeue(
        &mut self,
        id: u64,
        status: DialCallStatus,
        caller: Option<CallSid>,
        duration: Duration,
        params: Vec<(String, String)>,
    ) {
        let outcome = DialOutcome {
            status,
            dial_call_sid: caller,
            duration,
            recording: None,
            params,
        };
        self.input(engine::Input::DialEnded { id, outcome });
    }
}
