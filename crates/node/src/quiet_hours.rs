//! Quiet hours in the runtime: whether an outbound call may ring its destination now, and the
//! calls deferred until their calling window opens.
//!
//! [`rules`] reads what applies to an account from the store (its calling window, else its
//! parent's; its time-zone overrides, then its parent's) and [`verdict`] decides with
//! `calling_window` (pure: unit-tested on fixed times). Every outbound path asks before it rings:
//! Calls create ([`crate::outbound::create`]: defers by default), `<Dial><Number>`
//! ([`refused_dial_targets`]: refuses by default, someone waits live) and conference
//! participants (through Calls create, with [`QuietHours::live`]: refuses by default). A future
//! outbound path (task routing's callback) calls [`rules`] and [`verdict`] the same way.
//!
//! Deferred calls are rows with status `scheduled`, `date_scheduled` and the Calls-create request
//! that places them. One [`Scheduler`] task holds them in a min-heap by time and sleeps until the
//! earliest (it does not poll the store); it is loaded from the store at start, so deferred calls
//! survive a restart (crash recovery leaves `scheduled` rows alone). When one is due,
//! [`place_scheduled`] checks the window again, claims the row (`scheduled` -> `queued`, in the
//! `UPDATE`, so a cancel and the scheduler cannot both win) and hands it to the normal outbound
//! path.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use api::{CreateCall, HookError, QuietHours};
use calling_window::{Decision, Hours, OverrideKey, Overrides, Policy, Window, ZoneTable};
use chrono::{DateTime, Utc};
use model::{AccountSid, CallRecord, CallSid, CallStatus, CallingWindowRecord};
use tokio::sync::mpsc;

use crate::Shared;

/// What applies to one account's calls.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    pub window: Option<CallingWindowRecord>,
    /// The account's own overrides, then its parent's.
    pub overrides: Vec<Overrides>,
}

/// The account's window (its own, else its parent's) and overrides. Without a window and
/// without hours of the request's own (`request_hours`) nothing restricts the call: the
/// overrides are not read.
pub(crate) async fn rules(
    shared: &Shared,
    account: &AccountSid,
    request_hours: bool,
) -> Result<Rules, store::StoreError> {
    let parent = shared
        .store
        .account(account)
        .await?
        .map(|a| a.owner_account_sid)
        .filter(|p| p != account);
    let mut window = shared.store.calling_window(account).await?;
    if window.is_none() {
        if let Some(p) = &parent {
            window = shared.store.calling_window(p).await?;
        }
    }
    if window.is_none() && !request_hours {
        return Ok(Rules::default());
    }
    let mut overrides = vec![overrides_of(
        shared.store.all_time_zone_overrides(account).await?,
    )];
    if let Some(p) = &parent {
        overrides.push(overrides_of(shared.store.all_time_zone_overrides(p).await?));
    }
    Ok(Rules { window, overrides })
}

fn overrides_of(records: Vec<model::TimeZoneOverrideRecord>) -> Overrides {
    let mut o = Overrides::default();
    for r in records {
        let key = match (r.phone_number.as_deref(), r.prefix.as_deref()) {
            (Some(n), _) => OverrideKey::number(n),
            (None, Some(p)) => OverrideKey::prefix(p),
            (None, None) => None,
        };
        if let Some(key) = key {
            o.insert(key, r.time_zone);
        }
    }
    o
}

/// What to do with a call now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Place,
    /// Hold it `scheduled` until `at`.
    Defer {
        at: DateTime<Utc>,
        why: String,
    },
    /// Refuse it: the message names the local time and the window.
    Refuse(String),
}

fn to_jiff(t: DateTime<Utc>) -> calling_window::Timestamp {
    calling_window::Timestamp::from_microsecond(t.timestamp_micros())
        .unwrap_or(calling_window::Timestamp::UNIX_EPOCH)
}

fn from_jiff(t: calling_window::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.as_microsecond()).unwrap_or_default()
}

/// Whether a call to `to` may ring at `now` under `rules` and the request's own choices. No
/// window (neither the account's nor the request's) or an unknown local time (a SIP URI, a
/// client, a number no prefix covers): placed. The default policy is the window's `policy`
/// (Calls create, `defer`) or, when someone waits live, its `dial_policy` (`refuse`).
pub(crate) fn verdict(rules: &Rules, to: &str, req: &QuietHours, now: DateTime<Utc>) -> Verdict {
    let hours_text = match (&req.hours, &rules.window) {
        (Some(h), _) => h.clone(),
        (None, Some(w)) => w.hours.clone(),
        (None, None) => return Verdict::Place,
    };
    let Ok(hours) = Hours::parse(&hours_text) else {
        return Verdict::Place;
    };
    let dates: Vec<&str> = rules
        .window
        .iter()
        .flat_map(|w| w.dates_off.iter().map(String::as_str))
        .collect();
    let window =
        Window::new(hours, &dates).unwrap_or_else(|_| Window::new(hours, &[]).unwrap_or_default());
    let sets: Vec<&Overrides> = rules.overrides.iter().collect();
    let Some(resolved) = calling_window::resolve(to, &sets, ZoneTable::builtin()) else {
        return Verdict::Place;
    };
    let zones: Vec<(String, calling_window::TimeZone)> = resolved
        .zones
        .iter()
        .filter_map(|z| calling_window::time_zone(z).map(|tz| (z.clone(), tz)))
        .collect();
    let (opens_at, states) = match window.decide(&zones, to_jiff(now)) {
        Decision::Open => return Verdict::Place,
        Decision::Closed { opens_at, zones } => (opens_at, zones),
    };
    let default_policy = match (&rules.window, req.live) {
        (Some(w), false) => w.policy.parse().unwrap_or(Policy::Defer),
        (Some(w), true) => w.dial_policy.parse().unwrap_or(Policy::Refuse),
        (None, false) => Policy::Defer,
        (None, true) => Policy::Refuse,
    };
    let mut policy = req
        .policy
        .as_deref()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default_policy);
    if req.live && policy == Policy::Defer {
        policy = Policy::Refuse;
    }
    let local: Vec<String> = states
        .iter()
        .filter(|s| !s.open)
        .map(|s| format!("{} in {}", s.local_time, s.zone))
        .collect();
    let shown = if hours_text.is_empty() {
        "no hours".to_owned()
    } else {
        hours_text
    };
    let mut why = format!(
        "{to} is outside its calling window ({shown}, local time): it is {}",
        local.join(", ")
    );
    if local.len() < states.len() || states.len() > 1 {
        why.push_str(&format!(
            " (the number has {} time zones; all must be in the window)",
            states.len()
        ));
    }
    match (policy, opens_at) {
        (Policy::Ignore, _) => Verdict::Place,
        (Policy::Defer, Some(at)) => {
            let at = from_jiff(at);
            why.push_str(&format!(
                "; the window opens at {}",
                at.format("%Y-%m-%dT%H:%M:%SZ")
            ));
            Verdict::Defer { at, why }
        }
        (_, Some(at)) => {
            why.push_str(&format!(
                "; the window opens at {}",
                from_jiff(at).format("%Y-%m-%dT%H:%M:%SZ")
            ));
            Verdict::Refuse(why)
        }
        (_, None) => {
            why.push_str("; the window does not open in the coming week");
            Verdict::Refuse(why)
        }
    }
}

/// The request's verdict now, reading the rules.
pub(crate) async fn check(
    shared: &Shared,
    account: &AccountSid,
    to: &str,
    req: &QuietHours,
) -> Result<Verdict, HookError> {
    let rules = rules(shared, account, req.hours.is_some())
        .await
        .map_err(crate::originate::internal)?;
    Ok(verdict(&rules, to, req, Utc::now()))
}

/// The `<Dial><Number>` targets (indexes into `dial.targets`) outside their window under the
/// account's `dial_policy` (refuse by default), each with the message that says why.
pub(crate) async fn refused_dial_targets(
    shared: &Shared,
    account: &AccountSid,
    dial: &twiml::Dial,
) -> Vec<(usize, String)> {
    let numbers: Vec<(usize, &str)> = dial
        .targets
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match &t.kind {
            twiml::DialKind::Number(n) => Some((i, n.as_str())),
            _ => None,
        })
        .collect();
    if numbers.is_empty() {
        return Vec::new();
    }
    let rules = match rules(shared, account, false).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not read the calling window; the dial goes ahead");
            return Vec::new();
        }
    };
    let live = QuietHours {
        live: true,
        ..QuietHours::default()
    };
    let now = Utc::now();
    numbers
        .into_iter()
        .filter_map(|(i, n)| match verdict(&rules, n, &live, now) {
            Verdict::Place => None,
            Verdict::Defer { why, .. } | Verdict::Refuse(why) => Some((i, why)),
        })
        .collect()
}

/// Stores `req` as a `scheduled` call placed at `at`, and hands it to the scheduler.
pub(crate) async fn defer(
    shared: &Arc<Shared>,
    req: &CreateCall,
    at: DateTime<Utc>,
    why: &str,
) -> Result<CallRecord, HookError> {
    let now = Utc::now();
    let record = CallRecord {
        sid: CallSid::generate(),
        account_sid: req.account_sid,
        parent_call_sid: None,
        phone_number_sid: None,
        from: req.from.clone(),
        to: req.to.clone(),
        status: CallStatus::Scheduled,
        direction: model::CallDirection::OutboundApi,
        start_time: None,
        end_time: None,
        duration: None,
        answered_by: None,
        price: None,
        date_created: now,
        date_updated: now,
        date_scheduled: Some(at),
    };
    let request = serde_json::to_string(req).map_err(crate::originate::internal)?;
    shared
        .store
        .insert_scheduled_call(&record, &request)
        .await
        .map_err(crate::originate::internal)?;
    tracing::info!(call_sid = %record.sid, to = %record.to, at = %at, why, "outbound call deferred to its calling window");
    shared.scheduler.add(at, record.account_sid, record.sid);
    Ok(record)
}

/// A due call: placed if its window is open (and it was not canceled meanwhile), deferred
/// again if the window moved, failed if it can no longer be placed.
pub(crate) async fn place_scheduled(shared: Arc<Shared>, account: AccountSid, sid: CallSid) {
    let scheduled = match shared.store.scheduled_call(&account, &sid).await {
        Ok(Some(s)) => s,
        // Canceled (or placed) meanwhile.
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, call_sid = %sid, "could not read a scheduled call; retrying in 5 s");
            shared
                .scheduler
                .add(Utc::now() + chrono::Duration::seconds(5), account, sid);
            return;
        }
    };
    let mut req: CreateCall = match serde_json::from_str(&scheduled.request) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, call_sid = %sid, "a scheduled call's request does not read back; failing it");
            let _ = shared
                .store
                .leave_scheduled(&account, &sid, CallStatus::Failed, Utc::now())
                .await;
            return;
        }
    };
    let verdict = match check(&shared, &account, &req.to, &req.quiet_hours).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, call_sid = %sid, "could not check a scheduled call's window; retrying in 5 s");
            shared
                .scheduler
                .add(Utc::now() + chrono::Duration::seconds(5), account, sid);
            return;
        }
    };
    match verdict {
        Verdict::Place => {}
        Verdict::Defer { at, why } => {
            tracing::info!(call_sid = %sid, at = %at, why, "the calling window moved; the call waits again");
            match shared
                .store
                .reschedule_call(&account, &sid, at, Utc::now())
                .await
            {
                Ok(true) => shared.scheduler.add(at, account, sid),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, call_sid = %sid, "could not reschedule a call")
                }
            }
            return;
        }
        Verdict::Refuse(why) => {
            tracing::warn!(call_sid = %sid, why, "a scheduled call can no longer be placed");
            let _ = shared
                .store
                .leave_scheduled(&account, &sid, CallStatus::Failed, Utc::now())
                .await;
            return;
        }
    }
    // It is placed now, whatever the window does next.
    req.quiet_hours.policy = Some(Policy::Ignore.as_str().to_owned());
    let mut record = scheduled.call;
    if let Err(e) = crate::outbound::place(shared.clone(), req, &mut record).await {
        tracing::warn!(call_sid = %sid, error = %e, "a scheduled call could not be placed");
    }
}

/// `Status=canceled` (or `completed`) on a `scheduled` call: it will not be placed. Returns the
/// call as it is now, or `None` when it was no longer scheduled.
pub(crate) async fn cancel(
    shared: &Shared,
    account: &AccountSid,
    sid: &CallSid,
) -> Result<Option<CallRecord>, HookError> {
    let scheduled = shared
        .store
        .scheduled_call(account, sid)
        .await
        .map_err(crate::originate::internal)?;
    let Some(scheduled) = scheduled else {
        return Ok(None);
    };
    let now = Utc::now();
    if !shared
        .store
        .leave_scheduled(account, sid, CallStatus::Canceled, now)
        .await
        .map_err(crate::originate::internal)?
    {
        return Ok(None);
    }
    let record = shared
        .store
        .call(account, sid)
        .await
        .map_err(crate::originate::internal)?;
    if let (Some(record), Ok(req)) = (
        &record,
        serde_json::from_str::<CreateCall>(&scheduled.request),
    ) {
        let token = shared
            .store
            .account(account)
            .await
            .ok()
            .flatten()
            .map(|a| a.auth_token)
            .unwrap_or_default();
        let mut callbacks = crate::call::StatusCallbacks::new(
            shared,
            req.status_callback.clone(),
            crate::call::http_method(&req.status_callback_method),
            req.status_callback_events.clone(),
            token,
        );
        callbacks.post("completed", record);
    }
    tracing::info!(call_sid = %sid, "scheduled call canceled");
    Ok(record)
}

/// The longest the scheduler sleeps before it looks at the wall clock again.
const MAX_SLEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// The deferred calls by time: one task, a min-heap, one timer for the earliest.
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::UnboundedSender<(DateTime<Utc>, AccountSid, CallSid)>,
}

pub(crate) type SchedulerInbox = mpsc::UnboundedReceiver<(DateTime<Utc>, AccountSid, CallSid)>;

impl Scheduler {
    pub(crate) fn new() -> (Scheduler, SchedulerInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Scheduler { tx }, rx)
    }

    /// Place `sid` at `at` (now, if `at` is past).
    pub(crate) fn add(&self, at: DateTime<Utc>, account: AccountSid, sid: CallSid) {
        let _ = self.tx.send((at, account, sid));
    }

    /// Loads the `scheduled` calls from the store and runs the timer.
    pub(crate) async fn start(
        shared: Arc<Shared>,
        mut inbox: SchedulerInbox,
    ) -> Result<usize, store::StoreError> {
        let mut heap = BinaryHeap::new();
        for s in shared.store.scheduled_calls().await? {
            let at = s.call.date_scheduled.unwrap_or_else(Utc::now);
            heap.push(Reverse((at, s.call.account_sid, s.call.sid)));
        }
        let loaded = heap.len();
        tokio::spawn(async move {
            loop {
                // The timer runs on the monotonic clock and the times are wall-clock ones: a long
                // wait is cut into minutes, so a wall-clock step is caught within one.
                let wait = heap.peek().map(|Reverse((at, _, _))| {
                    (*at - Utc::now()).to_std().unwrap_or_default().min(MAX_SLEEP)
                });
                tokio::select! {
                    item = inbox.recv() => match item {
                        Some((at, account, sid)) => heap.push(Reverse((at, account, sid))),
                        None => return,
                    },
                    () = sleep_or_forever(wait) => {
                        let now = Utc::now();
                        while let Some(Reverse((at, account, sid))) = heap.peek().cloned() {
                            if at > now {
                                break;
                            }
                            heap.pop();
                            tokio::spawn(place_scheduled(shared.clone(), account, sid));
                        }
                    }
                }
            }
        });
        Ok(loaded)
    }
}

async fn sleep_or_forever(wait: Option<std::time::Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn window(hours: &str, policy: &str, dial_policy: &str) -> CallingWindowRecord {
        CallingWindowRecord {
            account_sid: AccountSid::generate(),
            hours: hours.into(),
            dates_off: vec!["2026-12-25".into()],
            policy: policy.into(),
            dial_policy: dial_policy.into(),
            date_created: Utc::now(),
            date_updated: Utc::now(),
        }
    }

    fn rules(w: Option<CallingWindowRecord>) -> Rules {
        Rules {
            window: w,
            overrides: Vec::new(),
        }
    }

    const PARIS: &str = "+33142685300";

    #[test]
    fn no_window_never_restricts() {
        assert_eq!(
            verdict(
                &rules(None),
                PARIS,
                &QuietHours::default(),
                at("2026-12-07T02:00:00Z")
            ),
            Verdict::Place
        );
    }

    #[test]
    fn calls_create_defers_by_default_until_the_local_opening() {
        let r = rules(Some(window("mon-fri 09:00-18:00", "defer", "refuse")));
        // 03:00 in Paris on Monday.
        match verdict(
            &r,
            PARIS,
            &QuietHours::default(),
            at("2026-12-07T02:00:00Z"),
        ) {
            Verdict::Defer { at: t, why } => {
                assert_eq!(t, at("2026-12-07T08:00:00Z"));
                assert!(
                    why.contains("it is 2026-12-07 03:00 Monday in Europe/Paris"),
                    "{why}"
                );
                assert!(why.contains("mon-fri 09:00-18:00"), "{why}");
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            verdict(
                &r,
                PARIS,
                &QuietHours::default(),
                at("2026-12-07T09:00:00Z")
            ),
            Verdict::Place
        );
        // A date off (Christmas, a Friday) pushes it to Monday.
        let v = verdict(
            &r,
            PARIS,
            &QuietHours::default(),
            at("2026-12-24T20:00:00Z"),
        );
        assert!(
            matches!(v, Verdict::Defer { at: t, .. } if t == at("2026-12-28T08:00:00Z")),
            "{v:?}"
        );
    }

    #[test]
    fn the_request_chooses_the_policy_and_the_hours() {
        let r = rules(Some(window("mon-fri 09:00-18:00", "defer", "refuse")));
        let night = at("2026-12-07T02:00:00Z");
        let refuse = QuietHours {
            policy: Some("refuse".into()),
            ..QuietHours::default()
        };
        let v = verdict(&r, PARIS, &refuse, night);
        assert!(
            matches!(&v, Verdict::Refuse(why) if why.contains("opens at 2026-12-07T08:00:00Z")),
            "{v:?}"
        );
        let ignore = QuietHours {
            policy: Some("ignore".into()),
            ..QuietHours::default()
        };
        assert_eq!(verdict(&r, PARIS, &ignore, night), Verdict::Place);
        let all_night = QuietHours {
            hours: Some("mon-sun 00:00-24:00".into()),
            ..QuietHours::default()
        };
        assert_eq!(verdict(&r, PARIS, &all_night, night), Verdict::Place);
        // A request's own hours apply without an account window too.
        let v = verdict(
            &rules(None),
            PARIS,
            &QuietHours {
                hours: Some("mon 10:00-11:00".into()),
                ..QuietHours::default()
            },
            night,
        );
        assert!(
            matches!(v, Verdict::Defer { at: t, .. } if t == at("2026-12-07T09:00:00Z")),
            "{v:?}"
        );
    }

    #[test]
    fn live_calls_are_refused_by_default_and_never_deferred() {
        let r = rules(Some(window("mon-fri 09:00-18:00", "defer", "refuse")));
        let night = at("2026-12-07T02:00:00Z");
        let live = QuietHours {
            live: true,
            ..QuietHours::default()
        };
        assert!(matches!(
            verdict(&r, PARIS, &live, night),
            Verdict::Refuse(_)
        ));
        let asked = QuietHours {
            live: true,
            policy: Some("defer".into()),
            ..QuietHours::default()
        };
        assert!(matches!(
            verdict(&r, PARIS, &asked, night),
            Verdict::Refuse(_)
        ));
        let r = rules(Some(window("mon-fri 09:00-18:00", "defer", "ignore")));
        assert_eq!(verdict(&r, PARIS, &live, night), Verdict::Place);
    }

    #[test]
    fn overrides_decide_the_zone_and_unknown_zones_are_not_restricted() {
        let mut o = Overrides::default();
        o.insert(OverrideKey::number(PARIS).unwrap(), "Asia/Tokyo".into());
        let r = Rules {
            window: Some(window("mon-fri 09:00-18:00", "defer", "refuse")),
            overrides: vec![o],
        };
        // 02:00 UTC is 11:00 in Tokyo.
        assert_eq!(
            verdict(
                &r,
                PARIS,
                &QuietHours::default(),
                at("2026-12-07T02:00:00Z")
            ),
            Verdict::Place
        );
        assert_eq!(
            verdict(
                &r,
                "sip:alice@example.com",
                &QuietHours::default(),
                at("2026-12-07T20:00:00Z")
            ),
            Verdict::Place
        );
    }

    #[test]
    fn a_window_without_hours_refuses_even_when_deferring() {
        let r = rules(Some(window("", "defer", "refuse")));
        let v = verdict(
            &r,
            PARIS,
            &QuietHours::default(),
            at("2026-12-07T10:00:00Z"),
        );
        assert!(
            matches!(&v, Verdict::Refuse(why) if why.contains("does not open")),
            "{v:?}"
        );
    }
}
