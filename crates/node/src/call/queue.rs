//! A call's side of queues: waiting in one (`<Enqueue>`, with its waitUrl loop) and taking a
//! caller from one (`<Dial><Queue>`). The queues themselves are [`crate::queues`]'s.

use std::time::{Duration, Instant};

use engine::queue::{Departure, LeaveReason};
use engine::wait::WaitOutput;
use engine::{DialCallStatus, DialOutcome, EnqueueOutcome, HttpMethod, QueueResult, QueueSid};
use model::CallSid;
use tokio::sync::mpsc;

use super::ActiveCall;
use crate::queues::{ToAgent, ToCaller};

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
        let enqueued = runtime.enqueue(sid, call_sid, tx);
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
        let Some(queue_params) =
            self.shared
                .queues
                .wait_url_params(self.record.account_sid, leg.sid, self.record.sid)
        else {
            return params;
        };
        let mut out = self.base_webhook_params();
        out.extend(queue_params);
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
        let departure = self.shared.queues.leave(self.record.sid, reason);
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
        match self.shared.queues.take_front(leg.sid) {
            Ok(Some((departure, waiter))) => {
                let params = departure.queue_url_params(self.record.sid);
                let sent = waiter.send(ToCaller::Dequeued {
                    agent: leg.events_tx.clone(),
                    agent_call_sid: self.record.sid,
                    url: leg.url.clone(),
                    params,
                });
                if sent.is_err() {
                    // Its task ended as it was taken: try the next one.
                    let wake = leg.events_tx.clone();
                    let _ = wake.send(ToAgent::Wake);
                    return;
                }
                tracing::info!(call_sid = %self.record.sid, caller = %departure.call_sid, "dequeued");
                leg.caller = Some((departure.call_sid, waiter, departure));
                leg._waker = None;
            }
            Ok(None) => {
                // Nobody waits: wake up when someone is enqueued, and look again every
                // half second all the same (a wake-up between the look and the wait is not lost).
                let notify = self.shared.queues.idle_agents(leg.sid);
                let wake = leg.events_tx.clone();
                leg._waker = Some(tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(500), notify.notified()).await;
                    let _ = wake.send(ToAgent::Wake);
                }));
            }
            Err(e) => {
                tracing::warn!(call_sid = %self.record.sid, error = %e, "dequeue failed");
                self.end_dequeue(DialCallStatus::Failed);
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
