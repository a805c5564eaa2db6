//! Queues, members, conferences and participants through `oneshot`, against a fake runtime
//! ([`FakeRuntime`]) that holds the live parts (who waits, who is in a room) in memory the way
//! `node` does, and a real store.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use http_body_util::BodyExt;
use model::{ConferenceStatus, ParticipantStatus, RecordingRecord, RecordingSid};
use serde_json::{json, Value};
use store::Store;
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Field names the official Python SDK (twilio 9.x) reads from each resource: the
/// `payload.get(...)` keys of the instance classes in twilio/rest/api/v2010/account/queue/
/// (`__init__.py`, `member.py`) and .../account/conference/ (`__init__.py`, `participant.py`,
/// `recording.py`), which are the properties of Twilio's OpenAPI document for them.
const SDK_QUEUE: &[&str] = &[
    "date_updated",
    "current_size",
    "friendly_name",
    "uri",
    "account_sid",
    "average_wait_time",
    "sid",
    "date_created",
    "max_size",
];
const SDK_MEMBER: &[&str] = &[
    "call_sid",
    "date_enqueued",
    "position",
    "uri",
    "wait_time",
    "queue_sid",
];
const SDK_CONFERENCE: &[&str] = &[
    "account_sid",
    "date_created",
    "date_updated",
    "api_version",
    "friendly_name",
    "region",
    "sid",
    "status",
    "uri",
    "subresource_uris",
    "reason_conference_ended",
    "call_sid_ending_conference",
];
const SDK_PARTICIPANT: &[&str] = &[
    "account_sid",
    "call_sid",
    "label",
    "call_sid_to_coach",
    "coaching",
    "conference_sid",
    "date_created",
    "date_updated",
    "end_conference_on_exit",
    "muted",
    "hold",
    "start_conference_on_enter",
    "status",
    "queue_time",
    "uri",
];
const SDK_CONFERENCE_RECORDING: &[&str] = &[
    "account_sid",
    "api_version",
    "call_sid",
    "conference_sid",
    "date_created",
    "date_updated",
    "start_time",
    "duration",
    "sid",
    "price",
    "price_unit",
    "status",
    "channels",
    "source",
    "error_code",
    "encryption_details",
    "uri",
];

/// What the fake runtime holds and was asked.
#[derive(Default)]
struct Live {
    members: HashMap<QueueSid, Vec<MemberRecord>>,
    participants: HashMap<ConferenceSid, Vec<ParticipantRecord>>,
    dequeued: Vec<(QueueSid, MemberKey, MemberUpdate)>,
    conference_updates: Vec<(ConferenceSid, ConferenceUpdate)>,
    created: Vec<CreateParticipant>,
    participant_updates: Vec<(ParticipantKey, ParticipantUpdate)>,
}

/// The live half of queues and conferences, in memory, as `node` keeps it.
struct FakeRuntime {
    store: Store,
    live: Mutex<Live>,
}

impl FakeRuntime {
    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap()
    }
}

fn find_participant(list: &[ParticipantRecord], key: &ParticipantKey) -> Option<usize> {
    list.iter().position(|p| match key {
        ParticipantKey::Call(c) => p.call_sid == *c,
        ParticipantKey::Label(l) => p.label.as_deref() == Some(l.as_str()),
    })
}

impl ApiHooks for FakeRuntime {
    fn queue_stats(&self, _account: AccountSid, queue: QueueSid) -> QueueStats {
        let live = self.live();
        let members = live.members.get(&queue).map(Vec::as_slice).unwrap_or(&[]);
        let total: u32 = members.iter().map(|m| m.wait_time).sum();
        let n = u32::try_from(members.len()).unwrap();
        QueueStats {
            current_size: n,
            average_wait_time: total.checked_div(n).unwrap_or(0),
        }
    }

    fn queue_members(
        &self,
        _account: AccountSid,
        queue: QueueSid,
    ) -> BoxFuture<'_, Result<Vec<MemberRecord>, HookError>> {
        let members = self.live().members.get(&queue).cloned().unwrap_or_default();
        Box::pin(async move { Ok(members) })
    }

    fn update_member(
        &self,
        _account: AccountSid,
        queue: QueueSid,
        member: MemberKey,
        update: MemberUpdate,
    ) -> BoxFuture<'_, Result<MemberRecord, HookError>> {
        let mut live = self.live();
        live.dequeued.push((queue, member, update));
        let members = live.members.entry(queue).or_default();
        let at = match member {
            MemberKey::Front => members
                .iter()
                .enumerate()
                .min_by_key(|(_, m)| m.position)
                .map(|(i, _)| i),
            MemberKey::Call(call) => members.iter().position(|m| m.call_sid == call),
        };
        let result = at.map(|i| members.remove(i)).ok_or(HookError::NotFound);
        Box::pin(async move { result })
    }

    fn update_conference(
        &self,
        account: AccountSid,
        conference: ConferenceSid,
        update: ConferenceUpdate,
    ) -> BoxFuture<'_, Result<ConferenceRecord, HookError>> {
        self.live()
            .conference_updates
            .push((conference, update.clone()));
        Box::pin(async move {
            let mut rec = self
                .store
                .conference(&account, &conference)
                .await
                .unwrap()
                .ok_or(HookError::NotFound)?;
            if update.end {
                rec.status = ConferenceStatus::Completed;
                rec.reason_conference_ended = Some("conference-ended-via-api".into());
                rec.date_updated = Utc::now();
                self.store.update_conference(&rec).await.unwrap();
                self.live().participants.remove(&conference);
            }
            Ok(rec)
        })
    }

    fn conference_participants(
        &self,
        _account: AccountSid,
        conference: ConferenceSid,
    ) -> BoxFuture<'_, Result<Vec<ParticipantRecord>, HookError>> {
        let all = self
            .live()
            .participants
            .get(&conference)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(all) })
    }

    fn create_participant(
        &self,
        create: CreateParticipant,
    ) -> BoxFuture<'_, Result<ParticipantRecord, HookError>> {
        Box::pin(async move {
            let account = create.account_sid;
            let conference = match &create.conference {
                ConferenceTarget::Sid(sid) => *sid,
                ConferenceTarget::FriendlyName(name) => match self
                    .store
                    .open_conference_by_name(&account, name)
                    .await
                    .unwrap()
                {
                    Some(open) => open.sid,
                    None => {
                        insert_conference(&self.store, &account, name, Utc::now())
                            .await
                            .sid
                    }
                },
            };
            let now = Utc::now();
            let rec = ParticipantRecord {
                account_sid: account,
                conference_sid: conference,
                call_sid: CallSid::generate(),
                label: create.label.clone(),
                muted: create.muted,
                hold: false,
                coaching: create.coaching,
                call_sid_to_coach: create.call_sid_to_coach,
                end_conference_on_exit: create.end_conference_on_exit,
                start_conference_on_enter: create.start_conference_on_enter,
                status: ParticipantStatus::Queued,
                date_created: now,
                date_updated: now,
            };
            let mut live = self.live();
            live.participants
                .entry(conference)
                .or_default()
                .push(rec.clone());
            live.created.push(create);
            Ok(rec)
        })
    }

    fn update_participant(
        &self,
        _account: AccountSid,
        conference: ConferenceSid,
        participant: ParticipantKey,
        update: ParticipantUpdate,
    ) -> BoxFuture<'_, Result<ParticipantRecord, HookError>> {
        let mut live = self.live();
        live.participant_updates
            .push((participant.clone(), update.clone()));
        let list = live.participants.entry(conference).or_default();
        let result = match find_participant(list, &participant) {
            None => Err(HookError::NotFound),
            Some(i) => {
                let p = &mut list[i];
                p.muted = update.muted.unwrap_or(p.muted);
                p.hold = update.hold.unwrap_or(p.hold);
                p.coaching = update.coaching.unwrap_or(p.coaching);
                p.call_sid_to_coach = update.call_sid_to_coach.or(p.call_sid_to_coach);
                p.end_conference_on_exit = update
                    .end_conference_on_exit
                    .unwrap_or(p.end_conference_on_exit);
                Ok(p.clone())
            }
        };
        Box::pin(async move { result })
    }

    fn remove_participant(
        &self,
        _account: AccountSid,
        conference: ConferenceSid,
        participant: ParticipantKey,
    ) -> BoxFuture<'_, Result<(), HookError>> {
        let mut live = self.live();
        let list = live.participants.entry(conference).or_default();
        let result = find_participant(list, &participant)
            .map(|i| drop(list.remove(i)))
            .ok_or(HookError::NotFound);
        Box::pin(async move { result })
    }
}

async fn insert_conference(
    store: &Store,
    account: &AccountSid,
    name: &str,
    created: DateTime<Utc>,
) -> ConferenceRecord {
    let rec = ConferenceRecord {
        sid: ConferenceSid::generate(),
        account_sid: *account,
        friendly_name: name.into(),
        status: ConferenceStatus::Init,
        region: ConferenceRecord::REGION.into(),
        reason_conference_ended: None,
        call_sid_ending_conference: None,
        date_created: created,
        date_updated: created,
    };
    store.insert_conference(&rec).await.unwrap();
    rec
}

struct Fixture {
    dir: PathBuf,
    state: ApiState,
    runtime: Arc<FakeRuntime>,
    account: AccountSid,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("dialtone-live-{}", CallSid::generate()));
    let store = ::store::testing::open_fresh(&dir.join("db")).await.unwrap();
    let account = AccountSid::generate();
    store.ensure_account(&account, TOKEN, "Main").await.unwrap();
    let recordings_dir = dir.join("recordings");
    std::fs::create_dir_all(&recordings_dir).unwrap();
    let runtime = Arc::new(FakeRuntime {
        store: store.clone(),
        live: Mutex::new(Live::default()),
    });
    let state = ApiState {
        store,
        public_url: "https://voice.example.com".into(),
        recordings_dir,
        hooks: runtime.clone(),
    };
    Fixture {
        dir,
        state,
        runtime,
        account,
    }
}

impl Fixture {
    fn base(&self) -> String {
        format!("/2010-04-01/Accounts/{}", self.account)
    }

    async fn request(&self, method: Method, uri: &str, form: Option<&str>) -> (StatusCode, Value) {
        let enc =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{TOKEN}", self.account));
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Basic {enc}"));
        let body = match form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.to_owned())
            }
            None => Body::empty(),
        };
        let resp = router(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, json)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.request(Method::GET, uri, None).await
    }

    async fn post(&self, uri: &str, form: &str) -> (StatusCode, Value) {
        self.request(Method::POST, uri, Some(form)).await
    }

    /// `count` callers waiting in `queue`, the first enqueued `count` minutes ago.
    fn enqueue(&self, queue: QueueSid, count: u32) -> Vec<MemberRecord> {
        let now = Utc::now();
        let members: Vec<MemberRecord> = (0..count)
            .map(|i| {
                let waited = 60 * (count - i);
                MemberRecord {
                    call_sid: CallSid::generate(),
                    queue_sid: queue,
                    position: i + 1,
                    wait_time: waited,
                    date_enqueued: now - Duration::seconds(i64::from(waited)),
                }
            })
            .collect();
        // The runtime hands them over in any order.
        self.runtime
            .live()
            .members
            .insert(queue, members.iter().rev().cloned().collect());
        members
    }
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: u64) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], want.as_u16(), "{body}");
}

fn assert_fields(what: &str, body: &Value, fields: &[&str]) {
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object: {body}"));
    for field in fields {
        assert!(obj.contains_key(*field), "{what} lacks {field}: {body}");
    }
}

#[tokio::test]
async fn queues_are_created_read_renamed_resized_and_deleted_like_twilios() {
    let f = fixture().await;
    let list = format!("{}/Queues.json", f.base());
    let (status, q) = f.post(&list, "FriendlyName=support").await;
    assert_eq!(status, StatusCode::CREATED, "{q}");
    assert_fields("queue", &q, SDK_QUEUE);
    let sid = q["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("QU") && sid.len() == 34);
    assert_eq!(
        (
            q["max_size"].as_u64(),
            q["current_size"].as_u64(),
            q["average_wait_time"].as_u64()
        ),
        (Some(1000), Some(0), Some(0))
    );
    let one = format!("{}/Queues/{sid}.json", f.base());
    assert_eq!(q["uri"], one.as_str());
    assert_eq!(
        q["subresource_uris"]["members"],
        format!("{}/Queues/{sid}/Members.json", f.base())
    );
    assert!(chrono::DateTime::parse_from_rfc2822(q["date_created"].as_str().unwrap()).is_ok());

    // Twilio's refusals: no name, a taken name, a bad size.
    for (form, code) in [
        ("MaxSize=10", 20001),
        ("FriendlyName=support", 20002),
        ("FriendlyName=", 20002),
        (&*format!("FriendlyName={}", "x".repeat(65)), 20002),
        ("FriendlyName=big&MaxSize=5001", 20001),
        ("FriendlyName=none&MaxSize=0", 20001),
        ("FriendlyName=odd&MaxSize=ten", 20001),
    ] {
        let (status, body) = f.post(&list, form).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    let (status, sales) = f.post(&list, "FriendlyName=sales&MaxSize=5000").await;
    assert_eq!(
        (status, sales["max_size"].as_u64()),
        (StatusCode::CREATED, Some(5000))
    );

    let (status, fetched) = f.get(&one).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &q));
    let (_, page) = f.get(&list).await;
    let names: Vec<&str> = page["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["friendly_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sales", "support"]);

    // Live numbers come from the runtime.
    let sid: QueueSid = sid.parse().unwrap();
    f.enqueue(sid, 3);
    let (_, live) = f.get(&one).await;
    assert_eq!(
        (
            live["current_size"].as_u64(),
            live["average_wait_time"].as_u64()
        ),
        (Some(3), Some(120))
    );

    let (status, renamed) = f.post(&one, "FriendlyName=help&MaxSize=2").await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (
            renamed["friendly_name"].as_str(),
            renamed["max_size"].as_u64()
        ),
        (Some("help"), Some(2))
    );
    let (status, body) = f.post(&one, "FriendlyName=sales").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20002);
    let (status, body) = f.post(&one, "MaxSize=-1").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);

    // Not while calls wait in it.
    let (status, body) = f.request(Method::DELETE, &one, None).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("3 calls waiting"),
        "{body}"
    );
    f.runtime.live().members.clear();
    assert_eq!(
        f.request(Method::DELETE, &one, None).await.0,
        StatusCode::NO_CONTENT
    );
    for uri in [
        one.clone(),
        format!("{}/Queues/{}.json", f.base(), QueueSid::generate()),
        format!("{}/Queues/QUjunk.json", f.base()),
    ] {
        let (status, body) = f.get(&uri).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, 20404);
        let (status, _) = f.post(&uri, "MaxSize=3").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // Its name is free again, and <Enqueue> to a new name makes a queue the API then lists.
    assert_eq!(
        f.post(&list, "FriendlyName=help").await.0,
        StatusCode::CREATED
    );
    f.state
        .store
        .queue_or_create(&f.account, "overflow")
        .await
        .unwrap();
    let (_, page) = f.get(&list).await;
    assert_eq!(page["queues"][0]["friendly_name"], "overflow");
}

#[tokio::test]
async fn members_are_listed_front_first_fetched_and_dequeued_through_the_runtime() {
    let f = fixture().await;
    let (_, q) = f
        .post(&format!("{}/Queues.json", f.base()), "FriendlyName=support")
        .await;
    let queue: QueueSid = q["sid"].as_str().unwrap().parse().unwrap();
    let members = f.enqueue(queue, 5);
    let base = format!("{}/Queues/{queue}/Members", f.base());

    // Paged front first, following next_page_uri.
    let mut seen = Vec::new();
    let mut next = Some(format!("{base}.json?PageSize=2"));
    while let Some(uri) = next {
        let (status, page) = f.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for m in page["queue_members"].as_array().unwrap() {
            assert_fields("member", m, SDK_MEMBER);
            seen.push(m["call_sid"].as_str().unwrap().to_owned());
        }
        next = page["next_page_uri"].as_str().map(str::to_owned);
    }
    let want: Vec<String> = members.iter().map(|m| m.call_sid.to_string()).collect();
    assert_eq!(seen, want);

    let front = &members[0];
    let (status, m) = f.get(&format!("{base}/Front.json")).await;
    assert_eq!(status, StatusCode::OK, "{m}");
    assert_eq!(
        (
            m["call_sid"].as_str(),
            m["position"].as_u64(),
            m["wait_time"].as_u64()
        ),
        (Some(front.call_sid.as_str()), Some(1), Some(300))
    );
    assert_eq!(m["queue_sid"], queue.as_str());
    assert_eq!(m["uri"], format!("{base}/{}.json", front.call_sid));
    let (status, m) = f.get(&format!("{base}/{}.json", members[2].call_sid)).await;
    assert_eq!((status, m["position"].as_u64()), (StatusCode::OK, Some(3)));
    for missing in [
        format!("{base}/{}.json", CallSid::generate()),
        format!("{base}/Back.json"),
        format!("{base}/front.json"),
    ] {
        let (status, body) = f.get(&missing).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, 20404);
    }

    // Dequeue: Url required, Method GET or POST.
    let (status, body) = f.post(&format!("{base}/Front.json"), "Method=GET").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    let (status, body) = f
        .post(
            &format!("{base}/Front.json"),
            "Url=http%3A%2F%2Fa.test%2Fagent&Method=PUT",
        )
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    assert!(f.runtime.live().dequeued.is_empty());
    let (status, m) = f
        .post(
            &format!("{base}/Front.json"),
            "Url=http%3A%2F%2Fa.test%2Fagent",
        )
        .await;
    assert_eq!(
        (status, m["call_sid"].as_str()),
        (StatusCode::OK, Some(front.call_sid.as_str())),
        "{m}"
    );
    let third = members[2].call_sid;
    let (status, _) = f
        .post(
            &format!("{base}/{third}.json"),
            "Url=http%3A%2F%2Fa.test%2Fb&Method=get",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let dequeued = f.runtime.live().dequeued.clone();
    assert_eq!(
        dequeued,
        [
            (
                queue,
                MemberKey::Front,
                MemberUpdate {
                    url: "http://a.test/agent".into(),
                    method: "POST".into()
                }
            ),
            (
                queue,
                MemberKey::Call(third),
                MemberUpdate {
                    url: "http://a.test/b".into(),
                    method: "GET".into()
                }
            ),
        ]
    );
    // A second dequeue of the same call finds nobody.
    let (status, body) = f
        .post(
            &format!("{base}/{third}.json"),
            "Url=http%3A%2F%2Fa.test%2Fb",
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, 20404);
    let (_, q) = f.get(&format!("{}/Queues/{queue}.json", f.base())).await;
    assert_eq!(q["current_size"], 3);
    // Members of a queue that does not exist (or is another's) are not asked for.
    let (status, _) = f
        .get(&format!(
            "{}/Queues/{}/Members.json",
            f.base(),
            QueueSid::generate()
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn conferences_list_with_twilios_filters_and_end_through_the_runtime() {
    let f = fixture().await;
    let day = DateTime::parse_from_rfc3339("2026-03-10T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let standup = insert_conference(&f.state.store, &f.account, "standup", day).await;
    let mut old = insert_conference(
        &f.state.store,
        &f.account,
        "standup",
        day - Duration::days(2),
    )
    .await;
    old.status = ConferenceStatus::Completed;
    old.reason_conference_ended = Some("last-participant-left".into());
    old.call_sid_ending_conference = Some(CallSid::generate());
    old.date_updated = old.date_created + Duration::hours(1);
    f.state.store.update_conference(&old).await.unwrap();
    let sales =
        insert_conference(&f.state.store, &f.account, "sales", day + Duration::days(1)).await;

    let list = format!("{}/Conferences.json", f.base());
    let sids = |page: &Value| -> Vec<String> {
        page["conferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["sid"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = f.get(&list).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(
        sids(&all),
        [
            sales.sid.to_string(),
            standup.sid.to_string(),
            old.sid.to_string()
        ]
    );
    for c in all["conferences"].as_array().unwrap() {
        assert_fields("conference", c, SDK_CONFERENCE);
    }
    let done = &all["conferences"][2];
    assert_eq!(
        (
            done["status"].as_str(),
            done["reason_conference_ended"].as_str()
        ),
        (Some("completed"), Some("last-participant-left"))
    );
    assert_eq!(
        done["call_sid_ending_conference"],
        old.call_sid_ending_conference.unwrap().as_str()
    );
    assert_eq!(
        (done["region"].as_str(), done["api_version"].as_str()),
        (Some("us1"), Some("2010-04-01"))
    );
    let live = &all["conferences"][1];
    assert_eq!(
        (live["status"].as_str(), &live["reason_conference_ended"]),
        (Some("init"), &Value::Null)
    );
    assert_eq!(
        live["subresource_uris"]["participants"],
        format!("{}/Conferences/{}/Participants.json", f.base(), standup.sid)
    );

    for (query, want) in [
        ("FriendlyName=standup", vec![standup.sid, old.sid]),
        ("Status=completed", vec![old.sid]),
        ("Status=init&FriendlyName=standup", vec![standup.sid]),
        ("DateCreated=2026-03-10", vec![standup.sid]),
        ("DateCreated%3C=2026-03-10", vec![standup.sid, old.sid]),
        ("DateCreated%3E=2026-03-10", vec![sales.sid, standup.sid]),
        (
            "DateCreated%3E=2026-03-09&DateCreated%3C=2026-03-10",
            vec![standup.sid],
        ),
        ("DateUpdated%3C=2026-03-08", vec![old.sid]),
        ("DateUpdated=2026-03-11", vec![sales.sid]),
    ] {
        let (status, page) = f.get(&format!("{list}?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        let want: Vec<String> = want.iter().map(ToString::to_string).collect();
        assert_eq!(sids(&page), want, "{query}");
    }
    // Filters are carried into the paging links.
    let (_, page) = f
        .get(&format!(
            "{list}?FriendlyName=standup&DateCreated%3C=2026-03-10&PageSize=1"
        ))
        .await;
    let next = page["next_page_uri"].as_str().unwrap();
    assert!(
        next.contains("FriendlyName=standup&DateCreated%3C=2026-03-10"),
        "{next}"
    );
    assert_eq!(sids(&f.get(next).await.1), [old.sid.to_string()]);
    for bad in [
        "Status=ended",
        "DateCreated=10%2F03%2F2026",
        "DateUpdated%3E=2026-13-01",
    ] {
        let (status, body) = f.get(&format!("{list}?{bad}")).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    }

    let one = format!("{}/Conferences/{}.json", f.base(), standup.sid);
    let (status, fetched) = f.get(&one).await;
    assert_eq!((status, &fetched), (StatusCode::OK, live));
    let (status, body) = f.post(&one, "Status=in-progress").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    let (status, body) = f.post(&one, "AnnounceUrl=ftp%3A%2F%2Fa.test%2F").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 21205);
    let (status, ended) = f
        .post(
            &one,
            "Status=completed&AnnounceUrl=http%3A%2F%2Fa.test%2Fbye",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(
        (
            ended["status"].as_str(),
            ended["reason_conference_ended"].as_str()
        ),
        (Some("completed"), Some("conference-ended-via-api"))
    );
    let updates = f.runtime.live().conference_updates.clone();
    assert_eq!(
        updates,
        [(
            standup.sid,
            ConferenceUpdate {
                end: true,
                announce: Some(("http://a.test/bye".into(), "POST".into()))
            }
        )]
    );
    // Ending it again holds already; announcing into it cannot be. Neither reaches the runtime.
    let (status, again) = f.post(&one, "Status=completed").await;
    assert_eq!(
        (status, again["status"].as_str()),
        (StatusCode::OK, Some("completed"))
    );
    let (status, body) = f.post(&one, "AnnounceUrl=http%3A%2F%2Fa.test%2Fhi").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    assert_eq!(f.runtime.live().conference_updates.len(), 1);
    for uri in [
        format!(
            "{}/Conferences/{}.json",
            f.base(),
            ConferenceSid::generate()
        ),
        format!("{}/Conferences/standup.json", f.base()),
    ] {
        let (status, body) = f.get(&uri).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, 20404);
    }
}

#[tokio::test]
async fn participants_are_called_in_listed_changed_and_kicked_through_the_runtime() {
    let f = fixture().await;
    let room = insert_conference(&f.state.store, &f.account, "standup", Utc::now()).await;
    let list = format!("{}/Conferences/{}/Participants.json", f.base(), room.sid);

    for (form, code) in [
        ("From=%2B15550001111", 21201),
        ("To=%2B15550002222", 21213),
        ("To=hello&From=%2B15550001111", 21211),
        ("To=client%3A&From=%2B15550001111", 21211),
        ("To=%2B15550002222&From=a%20b", 21212),
        ("To=%2B15550002222&From=%2B15550001111&Coaching=true", 20001),
        (
            "To=%2B15550002222&From=%2B15550001111&CallSidToCoach=CA123",
            20001,
        ),
        ("To=%2B15550002222&From=%2B15550001111&Beep=loud", 20001),
        (
            "To=%2B15550002222&From=%2B15550001111&ConferenceRecord=maybe",
            20001,
        ),
        (
            "To=%2B15550002222&From=%2B15550001111&MaxParticipants=251",
            20001,
        ),
        ("To=%2B15550002222&From=%2B15550001111&Timeout=soon", 21208),
        (
            "To=%2B15550002222&From=%2B15550001111&StatusCallbackEvent=bogus",
            20001,
        ),
        (
            "To=%2B15550002222&From=%2B15550001111&ConferenceStatusCallbackEvent=start%20explode",
            20001,
        ),
        (
            "To=%2B15550002222&From=%2B15550001111&WaitUrl=javascript%3Ax",
            21205,
        ),
        (
            "To=%2B15550002222&From=%2B15550001111&Muted=sometimes",
            20001,
        ),
    ] {
        let (status, body) = f.post(&list, form).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, code);
    }
    // The guard takes Twilio's other parameters and refuses unknown ones.
    let (status, body) = f
        .post(&list, "To=%2B15550002222&From=%2B15550001111&Colour=red")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    assert!(f.runtime.live().created.is_empty());

    let form = "To=%2B1%20555%20000%202222&From=%2B15550001111&Label=agent%207&Muted=true&Beep=onExit\
                &EndConferenceOnExit=true&WaitUrl=&Timeout=3&StatusCallback=http%3A%2F%2Fa.test%2Fs\
                &StatusCallbackEvent=ringing&StatusCallbackEvent=answered%20completed\
                &ConferenceStatusCallback=http%3A%2F%2Fa.test%2Fc&ConferenceStatusCallbackEvent=join%20leave\
                &Region=ie1&Trim=trim-silence&MachineDetection=Enable";
    let (status, agent) = f.post(&list, form).await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    assert_fields("participant", &agent, SDK_PARTICIPANT);
    assert_eq!(
        (agent["queue_time"].as_str(), agent["status"].as_str()),
        (Some("0"), Some("queued"))
    );
    assert_eq!(
        (
            agent["label"].as_str(),
            agent["muted"].as_bool(),
            agent["coaching"].as_bool()
        ),
        (Some("agent 7"), Some(true), Some(false))
    );
    assert_eq!(agent["conference_sid"], room.sid.as_str());
    let agent_call = agent["call_sid"].as_str().unwrap().to_owned();
    assert_eq!(
        agent["uri"],
        format!(
            "{}/Conferences/{}/Participants/{agent_call}.json",
            f.base(),
            room.sid
        )
    );
    let asked = f.runtime.live().created.pop().unwrap();
    assert_eq!(asked.conference, ConferenceTarget::Sid(room.sid));
    assert_eq!(
        (asked.to.as_str(), asked.from.as_str()),
        ("+15550002222", "+15550001111")
    );
    assert_eq!(
        (
            asked.beep.as_str(),
            asked.end_conference_on_exit,
            asked.start_conference_on_enter
        ),
        ("onExit", true, true)
    );
    assert_eq!(
        (asked.wait_url.as_deref(), asked.timeout, asked.early_media),
        (Some(""), 5, true)
    );
    assert_eq!(
        asked.status_callback_events,
        ["ringing", "answered", "completed"]
    );
    assert_eq!(asked.conference_status_callback_events, ["join", "leave"]);
    assert_eq!(
        (asked.conference_record.as_str(), asked.max_participants),
        ("false", 250)
    );

    // A coach, to a SIP user; defaults otherwise.
    let form = format!("To=client%3Asupervisor&From=client%3Aqueue&CallSidToCoach={agent_call}");
    let (status, coach) = f.post(&list, &form).await;
    assert_eq!(status, StatusCode::CREATED, "{coach}");
    assert_eq!(
        (
            coach["coaching"].as_bool(),
            coach["call_sid_to_coach"].as_str()
        ),
        (Some(true), Some(agent_call.as_str()))
    );
    let asked = f.runtime.live().created.pop().unwrap();
    assert_eq!(
        (
            asked.to.as_str(),
            asked.wait_url,
            asked.conference_status_callback_events.len()
        ),
        ("client:supervisor", None, 2)
    );

    // Listing, with Twilio's filters; fetching by call SID or label.
    let (_, page) = f.get(&list).await;
    assert_eq!(page["participants"].as_array().unwrap().len(), 2);
    assert_eq!(page["participants"][0]["call_sid"], agent_call.as_str());
    assert_fields(
        "listed participant",
        &page["participants"][0],
        SDK_PARTICIPANT,
    );
    assert_eq!(page["participants"][0]["queue_time"], Value::Null);
    let (_, muted) = f.get(&format!("{list}?Muted=true")).await;
    assert_eq!(muted["participants"].as_array().unwrap().len(), 1);
    let (_, coaching) = f.get(&format!("{list}?Coaching=true&Hold=false")).await;
    assert_eq!(coaching["participants"][0]["call_sid"], coach["call_sid"]);
    let (status, body) = f.get(&format!("{list}?Hold=maybe")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    let by_call = format!(
        "{}/Conferences/{}/Participants/{agent_call}.json",
        f.base(),
        room.sid
    );
    let by_label = format!(
        "{}/Conferences/{}/Participants/agent%207.json",
        f.base(),
        room.sid
    );
    for uri in [&by_call, &by_label] {
        let (status, p) = f.get(uri).await;
        assert_eq!(
            (status, p["call_sid"].as_str()),
            (StatusCode::OK, Some(agent_call.as_str())),
            "{uri}"
        );
    }

    let (status, p) = f
        .post(
            &by_label,
            "Muted=false&Hold=true&HoldUrl=http%3A%2F%2Fa.test%2Fmusic",
        )
        .await;
    assert_eq!(
        (status, p["muted"].as_bool(), p["hold"].as_bool()),
        (StatusCode::OK, Some(false), Some(true)),
        "{p}"
    );
    let (key, update) = f.runtime.live().participant_updates.pop().unwrap();
    assert_eq!(key, ParticipantKey::Label("agent 7".into()));
    assert_eq!(
        update.hold_url,
        Some(("http://a.test/music".into(), "GET".into()))
    );
    assert_eq!((update.announce_url, update.coaching), (None, None));
    let (status, body) = f
        .post(&by_call, "HoldMethod=PATCH&HoldUrl=http%3A%2F%2Fa.test%2Fm")
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);

    // Kicked: gone.
    assert_eq!(
        f.request(Method::DELETE, &by_call, None).await.0,
        StatusCode::NO_CONTENT
    );
    for (method, form) in [
        (Method::GET, None),
        (Method::POST, Some("Muted=true")),
        (Method::DELETE, None),
    ] {
        let (status, body) = f.request(method.clone(), &by_call, form).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, 20404);
    }

    // By the room's name: the open conference of that name, or a new one.
    let by_name = format!("{}/Conferences/standup/Participants.json", f.base());
    let (status, p) = f
        .post(&by_name, "To=%2B15550002222&From=%2B15550001111")
        .await;
    assert_eq!(
        (status, p["conference_sid"].as_str()),
        (StatusCode::CREATED, Some(room.sid.as_str())),
        "{p}"
    );
    let (status, p) = f
        .post(
            &format!("{}/Conferences/retro%20room/Participants.json", f.base()),
            "To=%2B15550002222&From=%2B15550001111",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    let opened: ConferenceSid = p["conference_sid"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        f.state
            .store
            .conference(&f.account, &opened)
            .await
            .unwrap()
            .unwrap()
            .friendly_name,
        "retro room"
    );
    // ...but a SID must name a conference of this account that has not ended.
    let (status, _) = f
        .post(
            &format!(
                "{}/Conferences/{}/Participants.json",
                f.base(),
                ConferenceSid::generate()
            ),
            "To=%2B15550002222&From=%2B15550001111",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f
        .post(
            &format!(
                "{}/Conferences/CF{}/Participants.json",
                f.base(),
                "A".repeat(32)
            ),
            "To=%2B15550002222&From=%2B15550001111",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut ended = room.clone();
    ended.status = ConferenceStatus::Completed;
    f.state.store.update_conference(&ended).await.unwrap();
    let (status, body) = f.post(&list, "To=%2B15550002222&From=%2B15550001111").await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
    // A completed conference has nobody in it, whatever the runtime still holds.
    let (_, page) = f.get(&list).await;
    assert_eq!(page["participants"], json!([]));
    let (status, _) = f
        .get(&by_label.replace("agent%207", coach["call_sid"].as_str().unwrap()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn without_a_runtime_live_lists_are_empty_and_changes_501() {
    let mut f = fixture().await;
    f.state.hooks = Arc::new(NoHooks);
    let (_, q) = f
        .post(&format!("{}/Queues.json", f.base()), "FriendlyName=support")
        .await;
    assert_eq!(
        (q["current_size"].as_u64(), q["average_wait_time"].as_u64()),
        (Some(0), Some(0))
    );
    let members = format!("{}/Queues/{}/Members", f.base(), q["sid"].as_str().unwrap());
    let (status, page) = f.get(&format!("{members}.json")).await;
    assert_eq!(
        (status, &page["queue_members"]),
        (StatusCode::OK, &json!([]))
    );
    assert_eq!(
        f.get(&format!("{members}/Front.json")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = f
        .post(
            &format!("{members}/Front.json"),
            "Url=http%3A%2F%2Fa.test%2F",
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_IMPLEMENTED, 20001);

    let room = insert_conference(&f.state.store, &f.account, "standup", Utc::now()).await;
    let conf = format!("{}/Conferences/{}", f.base(), room.sid);
    let (status, page) = f.get(&format!("{conf}/Participants.json")).await;
    assert_eq!(
        (status, &page["participants"]),
        (StatusCode::OK, &json!([]))
    );
    for (uri, form) in [
        (format!("{conf}.json"), "Status=completed"),
        (
            format!("{conf}/Participants.json"),
            "To=%2B15550002222&From=%2B15550001111",
        ),
        (
            format!("{conf}/Participants/{}.json", CallSid::generate()),
            "Muted=true",
        ),
    ] {
        let (status, body) = f.post(&uri, form).await;
        assert_error(status, &body, StatusCode::NOT_IMPLEMENTED, 20001);
    }
    let (status, body) = f
        .request(
            Method::DELETE,
            &format!("{conf}/Participants/{}.json", CallSid::generate()),
            None,
        )
        .await;
    assert_error(status, &body, StatusCode::NOT_IMPLEMENTED, 20001);
}

#[tokio::test]
async fn conference_recordings_list_under_their_conference_and_carry_it() {
    let f = fixture().await;
    let room = insert_conference(&f.state.store, &f.account, "standup", Utc::now()).await;
    let other = insert_conference(&f.state.store, &f.account, "retro", Utc::now()).await;
    let call = CallSid::generate();
    let now = Utc::now();
    let recording = |conference: Option<ConferenceSid>| RecordingRecord {
        sid: RecordingSid::generate(),
        account_sid: f.account,
        call_sid: call,
        conference_sid: conference,
        duration: 42,
        channels: 1,
        status: "completed".into(),
        source: if conference.is_some() {
            "Conference"
        } else {
            "RecordVerb"
        }
        .into(),
        start_time: now,
        date_created: now,
        date_updated: now,
        file_name: "x.wav".into(),
    };
    let (mix, plain, elsewhere) = (
        recording(Some(room.sid)),
        recording(None),
        recording(Some(other.sid)),
    );
    for r in [&mix, &plain, &elsewhere] {
        f.state.store.insert_recording(r).await.unwrap();
    }
    let conf = format!("{}/Conferences/{}", f.base(), room.sid);
    let (status, page) = f.get(&format!("{conf}/Recordings.json")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["recordings"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_fields("conference recording", &items[0], SDK_CONFERENCE_RECORDING);
    assert_eq!(
        (
            items[0]["sid"].as_str(),
            items[0]["conference_sid"].as_str()
        ),
        (Some(mix.sid.as_str()), Some(room.sid.as_str()))
    );
    assert_eq!(
        (items[0]["call_sid"].as_str(), items[0]["duration"].as_str()),
        (Some(call.as_str()), Some("42"))
    );
    let uri = format!("{conf}/Recordings/{}.json", mix.sid);
    assert_eq!(items[0]["uri"], uri.as_str());
    let (status, fetched) = f.get(&uri).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &items[0]));
    // Another conference's (or no conference's) recording is not this one's.
    for sid in [elsewhere.sid, plain.sid, RecordingSid::generate()] {
        let (status, body) = f.get(&format!("{conf}/Recordings/{sid}.json")).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, 20404);
    }
    assert_eq!(
        f.get(&format!(
            "{}/Conferences/{}/Recordings.json",
            f.base(),
            ConferenceSid::generate()
        ))
        .await
        .0,
        StatusCode::NOT_FOUND
    );

    // The Recording resource says which conference, or null.
    let (_, meta) = f
        .get(&format!("{}/Recordings/{}.json", f.base(), mix.sid))
        .await;
    assert_eq!(
        (meta["conference_sid"].as_str(), meta["source"].as_str()),
        (Some(room.sid.as_str()), Some("Conference"))
    );
    let (_, meta) = f
        .get(&format!("{}/Recordings/{}.json", f.base(), plain.sid))
        .await;
    assert_eq!(meta["conference_sid"], Value::Null);
    let (status, filtered) = f
        .get(&format!(
            "{}/Recordings.json?ConferenceSid={}",
            f.base(),
            other.sid
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let sids: Vec<&str> = filtered["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sid"].as_str().unwrap())
        .collect();
    assert_eq!(sids, [elsewhere.sid.as_str()]);
    assert!(filtered["first_page_uri"]
        .as_str()
        .unwrap()
        .contains(&format!("ConferenceSid={}", other.sid)));
    let (status, body) = f
        .get(&format!("{}/Recordings.json?ConferenceSid=CA1", f.base()))
        .await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, 20001);
}

#[tokio::test]
async fn the_document_describes_the_new_paths_and_their_odd_path_parameters() {
    let doc = crate::openapi::document("https://voice.example");
    let a = "/2010-04-01/Accounts/{AccountSid}";
    let param = |path: &str, method: &str, name: &str| -> Value {
        let op = &doc["paths"][format!("{a}{path}")][method];
        let found = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned();
        found.unwrap_or_else(|| panic!("{path} {method} has no {name}"))
    };
    let pattern = |v: Value| v["schema"]["pattern"].as_str().unwrap().to_owned();
    assert_eq!(
        pattern(param("/Queues/{Sid}.json", "get", "Sid")),
        "^QU[0-9a-f]{32}$"
    );
    assert_eq!(
        pattern(param(
            "/Queues/{QueueSid}/Members/{CallSid}.json",
            "post",
            "CallSid"
        )),
        "^(CA[0-9a-f]{32}|Front)$"
    );
    assert!(pattern(param(
        "/Conferences/{ConferenceSid}/Participants/{CallSid}.json",
        "delete",
        "CallSid"
    ))
    .starts_with("^(CA[0-9a-f]{32}|"));
    assert!(pattern(param(
        "/Conferences/{ConferenceSid}/Participants.json",
        "post",
        "ConferenceSid"
    ))
    .starts_with("^(CF[0-9a-f]{32}|"));
    assert_eq!(
        pattern(param(
            "/Conferences/{ConferenceSid}/Participants.json",
            "get",
            "ConferenceSid"
        )),
        "^CF[0-9a-f]{32}$"
    );
    assert_eq!(
        param("/Conferences.json", "get", "DateCreated<")["schema"]["format"],
        "date"
    );
    let create =
        &doc["paths"][format!("{a}/Conferences/{{ConferenceSid}}/Participants.json")]["post"];
    let form = &create["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    assert_eq!(form["required"], json!(["From", "To"]));
    assert_eq!(
        form["properties"]["ConferenceStatusCallbackEvent"]["type"],
        "array"
    );
    // A participant is named by its call SID: the links say so.
    let link = &create["responses"]["201"]["links"]["FetchParticipant"]["parameters"];
    assert_eq!(link["CallSid"], "$response.body#/call_sid");
    let queue_links =
        &doc["paths"][format!("{a}/Queues.json")]["post"]["responses"]["201"]["links"];
    assert_eq!(
        queue_links["ListMember"]["parameters"]["QueueSid"],
        "$response.body#/sid"
    );
    assert!(
        queue_links["FetchMember"].is_null(),
        "needs a call SID the create does not give"
    );
    assert_eq!(
        doc["components"]["schemas"]["QueueMemberList"]["properties"]["queue_members"]["items"]
            ["$ref"],
        "#/components/schemas/QueueMember"
    );
}
