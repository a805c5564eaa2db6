//! Proxy (number masking) at run time: which dialled numbers are pool numbers, and for each open
//! session which (caller, proxy number) pair leads to which other participant.
//!
//! The index is loaded whole at start ([`ProxyIndex::load`]) and then follows the API's writes
//! one service or session at a time ([`ProxyIndex::apply`], called through
//! `ApiHooks::proxy_changed` before the API answers): never reloaded. A call's lookup is two
//! hash probes under a read lock (pool number -> service, pair -> session), whatever the number
//! of sessions.
//!
//! A call from a participant to its proxy number runs as if its webhook had answered
//! `<Dial callerId="OTHER'S PROXY NUMBER" answerOnBridge="true"><Number>OTHER</Number></Dial>`,
//! so trunks, the fraud policy, pricing and recordings apply to it as to any dial; the
//! interaction (both call SIDs, their statuses read from the calls as they stand) is stored and
//! the session moves to in-progress. The service's intercept callback is posted first when set:
//! a 403 blocks the call and the TwiML in its body (or a short message) is played. Outside an
//! open session the out-of-session callback is the call's voice webhook; without one the caller
//! hears that the number has no session for them, and the call ends.
//!
//! Sessions close by themselves at `date_expiry`, or `ttl` seconds after creation or the last
//! interaction: one task ([`start_expiry`]) sleeps until the earliest deadline in a min-heap,
//! closes what is due in the store and drops it from the index. Heap entries of sessions whose
//! deadline moved are skipped when they come up.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use model::{
    AccountSid, CallSid, ProxyInteractionSid, ProxyParticipantSid, ProxyServiceSid, ProxySessionSid,
};
use store::proxy::{
    ProxyInteractionRecord, ProxyNumberRecord, ProxyParticipantRecord, ProxyServiceRecord,
    ProxySessionRecord,
};

use crate::wiring::Shared;

/// What a service's calls need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub sid: ProxyServiceSid,
    pub account: AccountSid,
    pub intercept_callback_url: Option<String>,
    pub out_of_session_callback_url: Option<String>,
    /// Its pool, to forget the numbers when the pool is read again.
    numbers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub sid: ProxyParticipantSid,
    pub identifier: Box<str>,
    pub proxy: Box<str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionEntry {
    account: AccountSid,
    service: ProxyServiceSid,
    voice: bool,
    messages: bool,
    ttl: u32,
    date_expiry: Option<i64>,
    /// Microseconds since the epoch; `None` never.
    expires_at: Option<i64>,
    parties: Vec<Party>,
}

/// Where a call from `from` to its proxy number goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub account: AccountSid,
    pub service: ProxyServiceSid,
    pub session: ProxySessionSid,
    /// Calls go through (not message-only).
    pub voice: bool,
    /// Messages go through (not voice-only).
    pub messages: bool,
    pub from: Party,
    /// `None` while the session has one participant.
    pub to: Option<Party>,
}

/// The maps themselves, without locks or I/O (tested alone).
#[derive(Debug, Default)]
pub struct Index {
    pools: HashMap<Box<str>, ProxyServiceSid>,
    services: HashMap<ProxyServiceSid, ServiceEntry>,
    pairs: HashMap<Box<str>, ProxySessionSid>,
    sessions: HashMap<ProxySessionSid, SessionEntry>,
    expiries: BinaryHeap<Reverse<(i64, ProxySessionSid)>>,
}

fn pair_key(identifier: &str, proxy: &str) -> Box<str> {
    let mut key = String::with_capacity(identifier.len() + proxy.len() + 1);
    key.push_str(identifier);
    key.push('\n');
    key.push_str(proxy);
    key.into_boxed_str()
}

fn expiry_of(s: &ProxySessionRecord) -> Option<i64> {
    s.expires_at().map(|t| t.timestamp_micros())
}

impl Index {
    pub fn put_service(&mut self, s: &ProxyServiceRecord, pool: &[ProxyNumberRecord]) {
        if let Some(old) = self.services.remove(&s.sid) {
            for n in &old.numbers {
                self.pools.remove(n.as_str());
            }
        }
        let numbers: Vec<String> = pool.iter().map(|n| n.phone_number.clone()).collect();
        for n in &numbers {
            self.pools.insert(n.as_str().into(), s.sid);
        }
        self.services.insert(
            s.sid,
            ServiceEntry {
                sid: s.sid,
                account: s.account_sid,
                intercept_callback_url: s.intercept_callback_url.clone(),
                out_of_session_callback_url: s.out_of_session_callback_url.clone(),
                numbers,
            },
        );
    }

    /// Forgets a deleted service, its pool and its sessions.
    pub fn remove_service(&mut self, sid: &ProxyServiceSid) {
        if let Some(old) = self.services.remove(sid) {
            for n in &old.numbers {
                self.pools.remove(n.as_str());
            }
        }
        let gone: Vec<ProxySessionSid> = self
            .sessions
            .iter()
            .filter(|(_, e)| e.service == *sid)
            .map(|(k, _)| *k)
            .collect();
        for s in gone {
            self.remove_session(&s);
        }
    }

    /// Puts a session as the store has it: an open one with its pairs, a closed one not at all.
    pub fn put_session(&mut self, s: &ProxySessionRecord, parts: &[ProxyParticipantRecord]) {
        self.remove_session(&s.sid);
        if !s.is_open() {
            return;
        }
        let parties: Vec<Party> = parts
            .iter()
            .map(|p| Party {
                sid: p.sid,
                identifier: p.identifier.as_str().into(),
                proxy: p.proxy_identifier.as_str().into(),
            })
            .collect();
        for p in &parties {
            self.pairs.insert(pair_key(&p.identifier, &p.proxy), s.sid);
        }
        let expires_at = expiry_of(s);
        if let Some(at) = expires_at {
            self.expiries.push(Reverse((at, s.sid)));
        }
        self.sessions.insert(
            s.sid,
            SessionEntry {
                account: s.account_sid,
                service: s.service_sid,
                voice: s.mode != "message-only",
                messages: s.mode != "voice-only",
                ttl: s.ttl,
                date_expiry: s.date_expiry.map(|t| t.timestamp_micros()),
                expires_at,
                parties,
            },
        );
    }

    pub fn remove_session(&mut self, sid: &ProxySessionSid) {
        if let Some(old) = self.sessions.remove(sid) {
            for p in &old.parties {
                let key = pair_key(&p.identifier, &p.proxy);
                if self.pairs.get(&key) == Some(sid) {
                    self.pairs.remove(&key);
                }
            }
        }
    }

    /// The service whose pool holds `number`.
    pub fn pool_service(&self, number: &str) -> Option<&ServiceEntry> {
        self.services.get(self.pools.get(number)?)
    }

    /// The open session in which `caller` uses `proxy`, and who is on its other side.
    pub fn route(&self, caller: &str, proxy: &str) -> Option<Route> {
        let session = *self.pairs.get(&pair_key(caller, proxy))?;
        let entry = self.sessions.get(&session)?;
        let from = entry
            .parties
            .iter()
            .find(|p| &*p.identifier == caller && &*p.proxy == proxy)?
            .clone();
        let to = entry.parties.iter().find(|p| p.sid != from.sid).cloned();
        Some(Route {
            account: entry.account,
            service: entry.service,
            session,
            voice: entry.voice,
            messages: entry.messages,
            from,
            to,
        })
    }

    /// An interaction at `now`: a TTL counts from it (an explicit expiry date stays).
    pub fn touch(&mut self, session: &ProxySessionSid, now: i64) {
        let Some(e) = self.sessions.get_mut(session) else {
            return;
        };
        if e.date_expiry.is_some() || e.ttl == 0 {
            return;
        }
        let at = now + i64::from(e.ttl) * 1_000_000;
        e.expires_at = Some(at);
        self.expiries.push(Reverse((at, *session)));
    }

    /// The earliest deadline in the heap (perhaps of a session whose deadline moved since).
    pub fn next_expiry(&self) -> Option<i64> {
        self.expiries.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the sessions due at `now` out of the index: the store must close them.
    pub fn pop_expired(&mut self, now: i64) -> Vec<(AccountSid, ProxySessionSid)> {
        let mut out = Vec::new();
        while let Some(Reverse((at, sid))) = self.expiries.peek().copied() {
            if at > now {
                break;
            }
            self.expiries.pop();
            let current = self.sessions.get(&sid).and_then(|e| e.expires_at);
            if current == Some(at) {
                let account = self.sessions[&sid].account;
                self.remove_session(&sid);
                out.push((account, sid));
            }
        }
        out
    }

    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }
}

/// The runtime's index behind its lock, and the expiry task's wake-up.
#[derive(Debug, Default, Clone)]
pub struct ProxyIndex {
    index: Arc<RwLock<Index>>,
    wake: Arc<tokio::sync::Notify>,
    /// The writer of call interactions (see [`ProxyIndex::start_writer`]).
    writes: Arc<std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<ProxyInteractionRecord>>>,
}

/// Most interactions one transaction of the writer holds.
const WRITE_BATCH: usize = 500;

/// A pool of up to Twilio's 5,500 numbers is read in one page.
const POOL_PAGE: u32 = 10_000;

impl ProxyIndex {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        // A poisoned lock only means a writer panicked; the maps are whole between statements.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Every service, pool number and open session, at start.
    pub async fn load(&self, store: &store::Store) -> Result<(), store::StoreError> {
        let services = store.all_proxy_services().await?;
        let numbers = store.all_proxy_numbers().await?;
        let sessions = store.open_proxy_sessions().await?;
        let mut by_service: HashMap<ProxyServiceSid, Vec<ProxyNumberRecord>> = HashMap::new();
        for n in numbers {
            by_service.entry(n.service_sid).or_default().push(n);
        }
        let mut index = Index::default();
        for s in &services {
            index.put_service(s, by_service.get(&s.sid).map(Vec::as_slice).unwrap_or(&[]));
        }
        for (s, parts) in &sessions {
            index.put_session(s, parts);
        }
        *self.write() = index;
        self.wake.notify_one();
        Ok(())
    }

    /// Follows one API write (see `api::ProxyChange`), read back from the store.
    pub async fn apply(&self, store: &store::Store, change: api::ProxyChange) {
        let result = match change.session {
            Some(sid) => match store
                .proxy_session_with_participants(&change.account, &sid)
                .await
            {
                Ok(Some((s, parts))) => {
                    self.write().put_session(&s, &parts);
                    Ok(())
                }
                Ok(None) => {
                    self.write().remove_session(&sid);
                    Ok(())
                }
                Err(e) => Err(e),
            },
            None => match store.proxy_service(&change.account, &change.service).await {
                Ok(Some(s)) => {
                    let pool = store
                        .list_proxy_numbers(
                            &change.account,
                            &s.sid,
                            &store::PageRequest::first(POOL_PAGE),
                        )
                        .await;
                    pool.map(|pool| self.write().put_service(&s, &pool.items))
                }
                Ok(None) => {
                    self.write().remove_service(&change.service);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        if let Err(e) = result {
            tracing::error!(error = %e, ?change, "Proxy index not updated after an API write");
        }
        self.wake.notify_one();
    }

    /// Starts the task that stores call interactions and notes their sessions' last
    /// interaction, whatever waits in one transaction: a burst of calls costs a few commits of
    /// the one SQLite writer, not two each.
    pub fn start_writer(&self, store: store::Store) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProxyInteractionRecord>();
        if self.writes.set(tx).is_err() {
            return;
        }
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(WRITE_BATCH);
            while rx.recv_many(&mut batch, WRITE_BATCH).await > 0 {
                if let Err(e) = store.record_proxy_interactions(&batch).await {
                    tracing::error!(error = %e, count = batch.len(), "storing Proxy interactions failed");
                }
                batch.clear();
            }
        });
    }

    /// Queues a call's interaction for the writer (or, with none started, stores it in a task
    /// of its own).
    fn record(&self, store: &store::Store, rec: ProxyInteractionRecord) {
        let rec = match self.writes.get() {
            Some(tx) => match tx.send(rec) {
                Ok(()) => return,
                Err(e) => e.0,
            },
            None => rec,
        };
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(e) = store
                .record_proxy_interactions(std::slice::from_ref(&rec))
                .await
            {
                tracing::error!(error = %e, "storing a Proxy interaction failed");
            }
        });
    }

    pub fn pool_service(&self, number: &str) -> Option<ServiceEntry> {
        self.read().pool_service(number).cloned()
    }

    pub fn route(&self, caller: &str, proxy: &str) -> Option<Route> {
        self.read().route(caller, proxy)
    }

    pub fn touch(&self, session: &ProxySessionSid, now: DateTime<Utc>) {
        self.write().touch(session, now.timestamp_micros());
        self.wake.notify_one();
    }

    pub fn open_sessions(&self) -> usize {
        self.read().open_sessions()
    }

    /// Direct access for the benchmark, which fills the index without a store.
    pub fn with_index<T>(&self, f: impl FnOnce(&mut Index) -> T) -> T {
        f(&mut self.write())
    }
}

/// Closes sessions as their deadlines pass (see the module comment).
pub fn start_expiry(shared: Arc<Shared>) {
    tokio::spawn(async move {
        loop {
            let next = shared.proxy.read().next_expiry();
            let now = Utc::now().timestamp_micros();
            let wait = match next {
                Some(at) if at <= now => std::time::Duration::ZERO,
                Some(at) => std::time::Duration::from_micros(u64::try_from(at - now).unwrap_or(0)),
                None => std::time::Duration::from_secs(3600),
            };
            if !wait.is_zero() {
                // A write that brings a deadline forward wakes us early.
                let _ = tokio::time::timeout(wait, shared.proxy.wake.notified()).await;
                continue;
            }
            let due = shared
                .proxy
                .write()
                .pop_expired(Utc::now().timestamp_micros());
            for (account, session) in due {
                match shared
                    .store
                    .close_proxy_session(&account, &session, "ttl", Utc::now())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(session_sid = %session, "Proxy session expired and closed")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, session_sid = %session, "closing an expired Proxy session failed")
                    }
                }
            }
        }
    });
}

/// What an inbound call to a pool number runs instead of the number's own webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallPlan {
    /// This markup, inline.
    Twiml(String),
    /// The out-of-session callback, as the call's voice webhook (POST).
    Webhook(String),
}

const NO_SESSION: &str = "<Response><Say>This number has no open session for your call. Goodbye.</Say><Hangup/></Response>";
const BLOCKED: &str =
    "<Response><Say>This call was not allowed. Goodbye.</Say><Hangup/></Response>";
const MESSAGES_ONLY: &str =
    "<Response><Say>This session takes messages only. Goodbye.</Say><Hangup/></Response>";

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `<Dial>` that connects a participant's call to the other participant.
pub fn connect_twiml(to: &Party) -> String {
    format!(
        "<Response><Dial callerId=\"{}\" answerOnBridge=\"true\"><Number>{}</Number></Dial></Response>",
        xml_escape(&to.proxy),
        xml_escape(&to.identifier)
    )
}

/// The plan for an inbound call from `from` to `dialled` (the number's E.164), or `None` when
/// `dialled` is in no pool (the number routes as usual).
pub async fn plan_call(
    shared: &Shared,
    dialled: &str,
    from: &str,
    call_sid: CallSid,
    auth_token: &str,
) -> Option<CallPlan> {
    let service = shared.proxy.pool_service(dialled)?;
    let Some(route) = shared.proxy.route(from, dialled) else {
        tracing::info!(call_sid = %call_sid, from, to = dialled, "Proxy call outside any open session");
        return Some(match service.out_of_session_callback_url {
            Some(url) => CallPlan::Webhook(url),
            None => CallPlan::Twiml(NO_SESSION.to_owned()),
        });
    };
    if !route.voice {
        return Some(CallPlan::Twiml(MESSAGES_ONLY.to_owned()));
    }
    let Some(to) = route.to.clone() else {
        return Some(CallPlan::Twiml(NO_SESSION.to_owned()));
    };
    let now = Utc::now();
    let interaction = ProxyInteractionRecord {
        sid: ProxyInteractionSid::generate(),
        account_sid: route.account,
        service_sid: route.service,
        session_sid: route.session,
        kind: "voice".into(),
        data: None,
        participant_sid: None,
        inbound_participant_sid: Some(route.from.sid),
        inbound_resource_sid: Some(call_sid.to_string()),
        inbound_resource_status: Some("in-progress".into()),
        outbound_participant_sid: Some(to.sid),
        outbound_resource_sid: None,
        outbound_resource_status: None,
        date_created: now,
        date_updated: now,
    };
    shared.proxy.touch(&route.session, now);
    // Off the call's path: the call needs neither row, and the statuses are read from the calls.
    shared.proxy.record(&shared.store, interaction.clone());
    if let Some(url) = &service.intercept_callback_url {
        let params = intercept_params(&interaction, &route, &to);
        let request = crate::webhook::WebhookRequest {
            url: url.clone(),
            method: engine::HttpMethod::Post,
            params,
            auth_token: auth_token.to_owned(),
        };
        match shared.webhooks.fetch_any_status(request).await {
            Ok(reply) if reply.status == 403 => {
                tracing::info!(call_sid = %call_sid, session_sid = %route.session, "Proxy intercept callback blocked the call");
                let body = reply.body.trim();
                let twiml = if body.contains("<Response") {
                    body.to_owned()
                } else {
                    BLOCKED.to_owned()
                };
                return Some(CallPlan::Twiml(twiml));
            }
            Ok(_) => {}
            // Twilio goes on unless the answer is a 403.
            Err(e) => {
                tracing::warn!(error = %e, "Proxy intercept callback failed; the call goes on")
            }
        }
    }
    tracing::info!(call_sid = %call_sid, session_sid = %route.session, to = %to.identifier, "Proxy call connects");
    Some(CallPlan::Twiml(connect_twiml(&to)))
}

/// What an incoming message to a pool number does instead of the number's SMS URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessagePlan {
    /// Not a pool number: the number's own SMS URL.
    NotProxied,
    /// Sent on to the other participant (or dropped: see the log).
    Done,
    /// Outside an open session: the out-of-session callback is the message's SMS URL.
    Webhook(String),
}

/// An incoming message (stored already) from a participant to its proxy number goes on to the
/// other participant from the other's proxy number, as Twilio's Proxy does, and is an
/// interaction of the session.
pub async fn route_message(shared: &Shared, message: &model::MessageRecord) -> MessagePlan {
    let Some(service) = shared.proxy.pool_service(&message.to) else {
        return MessagePlan::NotProxied;
    };
    let routed = shared
        .proxy
        .route(&message.from, &message.to)
        .filter(|r| r.messages);
    let Some((route, to)) = routed.and_then(|r| r.to.clone().map(|to| (r, to))) else {
        return match service.out_of_session_callback_url {
            Some(url) => MessagePlan::Webhook(url),
            None => {
                tracing::info!(sid = %message.sid, from = %message.from, to = %message.to, "a message to a pool number outside any open session: dropped");
                MessagePlan::Done
            }
        };
    };
    let now = Utc::now();
    let mut interaction = ProxyInteractionRecord {
        sid: ProxyInteractionSid::generate(),
        account_sid: route.account,
        service_sid: route.service,
        session_sid: route.session,
        kind: "message".into(),
        data: Some(serde_json::json!({ "body": message.body }).to_string()),
        participant_sid: None,
        inbound_participant_sid: Some(route.from.sid),
        inbound_resource_sid: Some(message.sid.to_string()),
        inbound_resource_status: Some("received".into()),
        outbound_participant_sid: Some(to.sid),
        outbound_resource_sid: None,
        outbound_resource_status: None,
        date_created: now,
        date_updated: now,
    };
    let blocked = match &service.intercept_callback_url {
        Some(url) => intercepted(shared, url, &interaction, &route, &to, &message.account_sid)
            .await
            .is_some(),
        None => false,
    };
    if blocked {
        tracing::info!(sid = %message.sid, session_sid = %route.session, "Proxy intercept callback blocked the message");
    } else {
        let segments = smpp::count_segments(&message.body).segments;
        let forward = model::MessageRecord::new(
            message.account_sid,
            to.proxy.to_string(),
            to.identifier.to_string(),
            message.body.clone(),
            model::MessageStatus::Queued,
            model::MessageDirection::OutboundApi,
            u32::try_from(segments).unwrap_or(u32::MAX),
            now,
        );
        if let Err(e) = shared.outbox.create(&shared.store, &forward).await {
            tracing::warn!(sid = %message.sid, error = %e, "a Proxy message was not sent on");
            return MessagePlan::Done;
        }
        interaction.outbound_resource_sid = Some(forward.sid.to_string());
        interaction.outbound_resource_status = Some("queued".into());
        tracing::info!(sid = %message.sid, session_sid = %route.session, forwarded = %forward.sid, "Proxy message sent on");
    }
    shared.proxy.touch(&route.session, now);
    if let Err(e) = shared.store.create_proxy_interaction(&interaction).await {
        tracing::error!(error = %e, "storing a Proxy interaction failed");
    }
    if let Err(e) = shared
        .store
        .touch_proxy_session(&route.account, &route.session, now)
        .await
    {
        tracing::error!(error = %e, "noting a Proxy session's interaction failed");
    }
    MessagePlan::Done
}

/// Posts the service's intercept callback (signed with the account's token); the body of a 403
/// answer, which blocks the interaction. Any other answer, or none, lets it go on, as Twilio.
async fn intercepted(
    shared: &Shared,
    url: &str,
    interaction: &ProxyInteractionRecord,
    route: &Route,
    to: &Party,
    account: &AccountSid,
) -> Option<String> {
    let auth_token = match shared.store.account(account).await {
        Ok(Some(a)) => a.auth_token,
        _ => return None,
    };
    let request = crate::webhook::WebhookRequest {
        url: url.to_owned(),
        method: engine::HttpMethod::Post,
        params: intercept_params(interaction, route, to),
        auth_token,
    };
    match shared.webhooks.fetch_any_status(request).await {
        Ok(reply) if reply.status == 403 => Some(reply.body),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "Proxy intercept callback failed; the interaction goes on");
            None
        }
    }
}

/// Twilio's intercept callback parameters.
fn intercept_params(
    i: &ProxyInteractionRecord,
    route: &Route,
    to: &Party,
) -> Vec<(String, String)> {
    let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    vec![
        p("interactionSid", i.sid.as_str()),
        p(
            "interactionType",
            if i.kind == "message" {
                "Message"
            } else {
                "Voice"
            },
        ),
        p("interactionServiceSid", i.service_sid.as_str()),
        p("interactionSessionSid", i.session_sid.as_str()),
        p("interactionAccountSid", i.account_sid.as_str()),
        p("interactionData", i.data.as_deref().unwrap_or("{}")),
        p("inboundParticipantSid", route.from.sid.as_str()),
        p("inboundParticipantIdentifier", &route.from.identifier),
        p("inboundParticipantProxyIdentifier", &route.from.proxy),
        p("outboundParticipantSid", to.sid.as_str()),
        p("outboundParticipantIdentifier", &to.identifier),
        p("outboundParticipantProxyIdentifier", &to.proxy),
        p(
            "inboundResourceSid",
            i.inbound_resource_sid.as_deref().unwrap_or(""),
        ),
        p(
            "inboundResourceStatus",
            if i.kind == "message" {
                "received"
            } else {
                "in-progress"
            },
        ),
        p(
            "inboundResourceType",
            if i.kind == "message" {
                "Message"
            } else {
                "Call"
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::PhoneNumberSid;

    fn service() -> ProxyServiceRecord {
        let now = Utc::now();
        ProxyServiceRecord {
            sid: ProxyServiceSid::generate(),
            account_sid: AccountSid::generate(),
            unique_name: "taxi".into(),
            default_ttl: 0,
            callback_url: None,
            intercept_callback_url: None,
            out_of_session_callback_url: Some("https://app.example/oos".into()),
            number_selection_behavior: "prefer-sticky".into(),
            geo_match_level: "country".into(),
            chat_instance_sid: None,
            date_created: now,
            date_updated: now,
        }
    }

    fn pool_number(s: &ProxyServiceRecord, phone: &str) -> ProxyNumberRecord {
        ProxyNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: s.account_sid,
            service_sid: s.sid,
            phone_number: phone.into(),
            friendly_name: String::new(),
            is_reserved: false,
            in_use: 0,
            date_created: s.date_created,
            date_updated: s.date_created,
        }
    }

    fn session(s: &ProxyServiceRecord, ttl: u32) -> ProxySessionRecord {
        ProxySessionRecord {
            sid: ProxySessionSid::generate(),
            account_sid: s.account_sid,
            service_sid: s.sid,
            unique_name: None,
            status: "open".into(),
            closed_reason: None,
            ttl,
            mode: "voice-and-message".into(),
            date_expiry: None,
            date_started: None,
            date_ended: None,
            date_last_interaction: None,
            date_created: DateTime::from_timestamp(1_000, 0).unwrap(),
            date_updated: DateTime::from_timestamp(1_000, 0).unwrap(),
        }
    }

    fn party(
        s: &ProxySessionRecord,
        who: &str,
        proxy: &ProxyNumberRecord,
    ) -> ProxyParticipantRecord {
        ProxyParticipantRecord {
            sid: ProxyParticipantSid::generate(),
            account_sid: s.account_sid,
            service_sid: s.service_sid,
            session_sid: s.sid,
            identifier: who.into(),
            friendly_name: None,
            proxy_identifier: proxy.phone_number.clone(),
            proxy_identifier_sid: proxy.sid,
            date_created: s.date_created,
            date_updated: s.date_created,
        }
    }

    #[test]
    fn a_participant_calling_its_proxy_number_reaches_the_other_side() {
        let svc = service();
        let (n1, n2) = (
            pool_number(&svc, "+15550001"),
            pool_number(&svc, "+15550002"),
        );
        let mut index = Index::default();
        index.put_service(&svc, &[n1.clone(), n2.clone()]);
        let s = session(&svc, 0);
        let (driver, rider) = (party(&s, "+1777", &n1), party(&s, "+1888", &n2));
        index.put_session(&s, &[driver.clone(), rider.clone()]);
        assert_eq!(
            index.pool_service("+15550002").map(|e| e.sid),
            Some(svc.sid)
        );
        assert!(index.pool_service("+15559999").is_none());
        let r = index.route("+1777", "+15550001").unwrap();
        assert_eq!((r.session, r.from.sid), (s.sid, driver.sid));
        let to = r.to.unwrap();
        assert_eq!((&*to.identifier, &*to.proxy), ("+1888", "+15550002"));
        assert_eq!(
            connect_twiml(&to),
            "<Response><Dial callerId=\"+15550002\" answerOnBridge=\"true\"><Number>+1888</Number></Dial></Response>"
        );
        // The rider's pair is the other number; the driver's number means nothing for the rider.
        assert_eq!(
            index.route("+1888", "+15550002").unwrap().to.unwrap().sid,
            driver.sid
        );
        assert!(index.route("+1888", "+15550001").is_none());

        // Closed: gone. Service deleted: pool gone.
        let mut closed = s.clone();
        closed.status = "closed".into();
        index.put_session(&closed, &[driver, rider]);
        assert!(index.route("+1777", "+15550001").is_none());
        assert_eq!((index.open_sessions(), index.pairs()), (0, 0));
        index.remove_service(&svc.sid);
        assert!(index.pool_service("+15550001").is_none());
    }

    #[test]
    fn ttl_counts_from_the_last_interaction_and_stale_deadlines_are_skipped() {
        let svc = service();
        let n1 = pool_number(&svc, "+15550001");
        let mut index = Index::default();
        index.put_service(&svc, std::slice::from_ref(&n1));
        let s = session(&svc, 60);
        index.put_session(&s, &[party(&s, "+1777", &n1)]);
        let created = s.date_created.timestamp_micros();
        assert_eq!(index.next_expiry(), Some(created + 60_000_000));
        index.touch(&s.sid, created + 30_000_000);
        // The first deadline comes up, but the session's moved: nothing closes.
        assert!(index.pop_expired(created + 60_000_000).is_empty());
        assert_eq!(index.open_sessions(), 1);
        assert_eq!(
            index.pop_expired(created + 90_000_000),
            vec![(s.account_sid, s.sid)]
        );
        assert!(index.route("+1777", "+15550001").is_none());
        assert_eq!(index.next_expiry(), None);
    }

    #[test]
    fn an_explicit_expiry_date_is_not_moved_by_interactions() {
        let svc = service();
        let n1 = pool_number(&svc, "+15550001");
        let mut index = Index::default();
        let mut s = session(&svc, 60);
        s.date_expiry = Some(s.date_created + chrono::Duration::seconds(10));
        index.put_session(&s, &[party(&s, "+1777", &n1)]);
        let created = s.date_created.timestamp_micros();
        index.touch(&s.sid, created + 5_000_000);
        assert_eq!(index.pop_expired(created + 10_000_000).len(), 1);
    }

    #[test]
    fn markup_values_are_escaped() {
        let p = Party {
            sid: ProxyParticipantSid::generate(),
            identifier: "a&b".into(),
            proxy: "\"x\"".into(),
        };
        assert!(
            connect_twiml(&p).contains("callerId=\"&quot;x&quot;\"")
                && connect_twiml(&p).contains("a&amp;b")
        );
    }
}
