//! Subaccounts, API keys, token rotation, applications: tenant isolation across parent, child and
//! sibling accounts, and the JSON shapes the official SDKs read. Requests go through `oneshot`.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine;
use chrono::Utc;
use http_body_util::BodyExt;
use model::{
    AccountSid, CallDirection, CallRecord, CallSid, CallStatus, ConferenceRecord, ConferenceSid, ConferenceStatus,
    PhoneNumberRecord, PhoneNumberSid, RecordingRecord, RecordingSid,
};
use serde_json::Value;
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// Field names the official Python SDK (twilio 9.13.0) reads from each resource: the
/// `payload.get(...)` keys in the instance classes' `__init__`, in
/// twilio/rest/api/v2010/account/__init__.py (AccountInstance), .../account/application.py,
/// .../account/key.py, .../account/new_key.py, twilio/rest/accounts/v1/secondary_auth_token.py and
/// auth_token_promotion.py, and .../account/incoming_phone_number.py.
const SDK_ACCOUNT: &[&str] = &[
    "auth_token", "date_created", "date_updated", "friendly_name", "owner_account_sid", "sid",
    "status", "subresource_uris", "type", "uri",
];
const SDK_APPLICATION: &[&str] = &[
    "account_sid", "api_version", "date_created", "date_updated", "friendly_name",
    "message_status_callback", "sid", "sms_fallback_method", "sms_fallback_url", "sms_method",
    "sms_status_callback", "sms_url", "status_callback", "status_callback_method", "uri",
    "voice_caller_id_lookup", "voice_fallback_method", "voice_fallback_url", "voice_method",
    "voice_url", "public_application_connect_enabled",
];
const SDK_KEY: &[&str] = &["sid", "friendly_name", "date_created", "date_updated"];
const SDK_NEW_KEY: &[&str] = &["sid", "friendly_name", "date_created", "date_updated", "secret"];
const SDK_SECONDARY_AUTH_TOKEN: &[&str] =
    &["account_sid", "date_created", "date_updated", "secondary_auth_token", "url"];
const SDK_AUTH_TOKEN_PROMOTION: &[&str] = &["account_sid", "auth_token", "date_created", "date_updated", "url"];
const SDK_INCOMING_PHONE_NUMBER: &[&str] = &[
    "account_sid", "address_sid", "address_requirements", "api_version", "beta", "capabilities",
    "date_created", "date_updated", "friendly_name", "identity_sid", "phone_number", "origin", "sid",
    "sms_application_sid", "sms_fallback_method", "sms_fallback_url", "sms_method", "sms_url",
    "status_callback", "status_callback_method", "trunk_sid", "uri", "voice_receive_mode",
    "voice_application_sid", "voice_caller_id_lookup", "voice_fallback_method", "voice_fallback_url",
    "voice_method", "voice_url", "emergency_status", "emergency_address_sid",
    "emergency_address_status", "bundle_sid", "status", "type",
];

struct Fixture {
    dir: PathBuf,
    state: ApiState,
    main: AccountSid,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Credentials: a user (account or key SID) and its password.
#[derive(Clone)]
struct Cred(String, String);

fn basic(c: &Cred) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.0, c.1));
    format!("Basic {enc}")
}

/// A subaccount made through the API: its SID and credentials.
struct Child {
    sid: AccountSid,
    cred: Cred,
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("dialtone-tenancy-{}", CallSid::generate()));
    let store = ::store::testing::open_fresh(&dir.join("db")).await.unwrap();
    let main = AccountSid::generate();
    store.ensure_account(&main, TOKEN, "Main").await.unwrap();
    let recordings_dir = dir.join("recordings");
    std::fs::create_dir_all(&recordings_dir).unwrap();
    let state = ApiState {
        store,
        public_url: "https://voice.example.com".into(),
        recordings_dir,
        hooks: Arc::new(NoHooks),
    };
    Fixture { dir, state, main }
}

fn base(account: &AccountSid) -> String {
    format!("/2010-04-01/Accounts/{account}")
}

impl Fixture {
    fn main_cred(&self) -> Cred {
        Cred(self.main.to_string(), TOKEN.into())
    }

    async fn req(&self, cred: &Cred, method: Method, uri: &str, form: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri).header(header::AUTHORIZATION, basic(cred));
        let body = match form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.to_owned())
            }
            None => Body::empty(),
        };
        let resp = router(self.state.clone()).oneshot(req.body(body).unwrap()).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        // Recording audio is not JSON: kept as a marker string.
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(format!("{} bytes", bytes.len())))
        };
        (status, json)
    }

    async fn get(&self, cred: &Cred, uri: &str) -> (StatusCode, Value) {
        self.req(cred, Method::GET, uri, None).await
    }

    async fn child(&self, name: &str) -> Child {
        let (status, body) = self
            .req(&self.main_cred(), Method::POST, "/2010-04-01/Accounts.json", Some(&format!("FriendlyName={name}")))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let sid: AccountSid = body["sid"].as_str().unwrap().parse().unwrap();
        assert_eq!(body["owner_account_sid"], self.main.as_str());
        let token = body["auth_token"].as_str().unwrap().to_owned();
        Child { sid, cred: Cred(sid.to_string(), token) }
    }

    /// One of each resource in `account`; returns their paths, relative to the account's base.
    async fn populate(&self, account: &AccountSid, cred: &Cred, phone: &str) -> Vec<String> {
        let now = Utc::now();
        let number = PhoneNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: *account,
            phone_number: phone.into(),
            friendly_name: "line".into(),
            voice_url: Some("https://app.example/v".into()),
            voice_method: "POST".into(),
            voice_fallback_url: None,
            voice_fallback_method: "POST".into(),
            status_callback: None,
            status_callback_method: "POST".into(),
            sms_url: None,
            sms_method: "POST".into(),
            sms_fallback_url: None,
            sms_fallback_method: "POST".into(),
            sms_application_sid: None,
            date_created: now,
            date_updated: now,
        };
        self.state.store.create_number(&number).await.unwrap();
        let call = CallRecord {
            sid: CallSid::generate(),
            account_sid: *account,
            parent_call_sid: None,
            phone_number_sid: Some(number.sid),
            from: "+15005550006".into(),
            to: phone.into(),
            status: CallStatus::Completed,
            direction: CallDirection::Inbound,
            start_time: Some(now),
            end_time: Some(now),
            duration: Some(0),
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: None,
        };
        self.state.store.insert_call(&call).await.unwrap();
        let recording = RecordingSid::generate();
        std::fs::write(self.state.recordings_dir.join(format!("{recording}.wav")), b"RIFF").unwrap();
        self.state
            .store
            .insert_recording(&RecordingRecord {
                sid: recording,
                account_sid: *account,
                call_sid: call.sid,
                conference_sid: None,
                duration: 1,
                channels: 1,
                status: "completed".into(),
                source: "RecordVerb".into(),
                start_time: now,
                date_created: now,
                date_updated: now,
                file_name: format!("{recording}.wav"),
            })
            .await
            .unwrap();
        let b = base(account);
        let (status, app) = self.req(cred, Method::POST, &format!("{b}/Applications.json"), Some("FriendlyName=ivr")).await;
        assert_eq!(status, StatusCode::CREATED, "{app}");
        let (status, key) = self.req(cred, Method::POST, &format!("{b}/Keys.json"), Some("FriendlyName=ci")).await;
        assert_eq!(status, StatusCode::CREATED, "{key}");
        // Every account names its queue and room alike: names are per account.
        let (status, queue) = self.req(cred, Method::POST, &format!("{b}/Queues.json"), Some("FriendlyName=support")).await;
        assert_eq!(status, StatusCode::CREATED, "{queue}");
        let conference = ConferenceRecord {
            sid: ConferenceSid::generate(),
            account_sid: *account,
            friendly_name: "standup".into(),
            status: ConferenceStatus::InProgress,
            region: ConferenceRecord::REGION.into(),
            reason_conference_ended: None,
            call_sid_ending_conference: None,
            date_created: now,
            date_updated: now,
        };
        self.state.store.insert_conference(&conference).await.unwrap();
        let mix = RecordingSid::generate();
        self.state
            .store
            .insert_recording(&RecordingRecord {
                sid: mix,
                account_sid: *account,
                call_sid: call.sid,
                conference_sid: Some(conference.sid),
                duration: 1,
                channels: 1,
                status: "completed".into(),
                source: "Conference".into(),
                start_time: now,
                date_created: now,
                date_updated: now,
                file_name: format!("{mix}.wav"),
            })
            .await
            .unwrap();
        let (queue, room) = (queue["sid"].as_str().unwrap().to_owned(), conference.sid);
        vec![
            format!("/Queues/{queue}.json"),
            format!("/Queues/{queue}/Members.json"),
            format!("/Conferences/{room}.json"),
            format!("/Conferences/{room}/Participants.json"),
            format!("/Conferences/{room}/Recordings.json"),
            format!("/Conferences/{room}/Recordings/{mix}.json"),
            format!("/IncomingPhoneNumbers/{}.json", number.sid),
            format!("/Calls/{}.json", call.sid),
            format!("/Recordings/{recording}.json"),
            format!("/Recordings/{recording}.wav"),
            format!("/Calls/{}/Recordings.json", call.sid),
            format!("/Applications/{}.json", app["sid"].as_str().unwrap()),
            format!("/Keys/{}.json", key["sid"].as_str().unwrap()),
        ]
    }
}

fn assert_404(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
    if body.is_object() {
        assert_eq!(body["code"], 20404, "{what}");
    }
}

#[tokio::test]
async fn children_never_reach_their_parent_or_siblings_and_parents_reach_children() {
    let f = fixture().await;
    let (a, b) = (f.child("a").await, f.child("b").await);
    let main = f.main_cred();
    let main_paths = f.populate(&f.main, &main, "+14155550100").await;
    let a_paths = f.populate(&a.sid, &a.cred, "+14155550101").await;
    let b_paths = f.populate(&b.sid, &b.cred, "+14155550102").await;
    let lists = [
        "/IncomingPhoneNumbers.json", "/Calls.json", "/Recordings.json", "/Applications.json", "/Keys.json",
        "/Notifications.json", "/Queues.json", "/Conferences.json",
    ];

    // Everyone reads their own.
    for (sid, cred, paths) in [(&f.main, &main, &main_paths), (&a.sid, &a.cred, &a_paths), (&b.sid, &b.cred, &b_paths)] {
        for p in paths.iter() {
            let (status, body) = f.get(cred, &format!("{}{p}", base(sid))).await;
            assert_eq!(status, StatusCode::OK, "{p}: {body}");
        }
    }
    // A child reaches neither its parent's nor its sibling's rows: not through their paths, not
    // through its own path with their SIDs, not their lists or Account resources.
    for (victim, paths) in [(&f.main, &main_paths), (&b.sid, &b_paths)] {
        for p in paths {
            let (status, body) = f.get(&a.cred, &format!("{}{p}", base(victim))).await;
            assert_404(status, &body, p);
            let (status, body) = f.get(&a.cred, &format!("{}{p}", base(&a.sid))).await;
            if p.starts_with("/Calls/") && p.ends_with("/Recordings.json") {
                // A per-call list under one's own account, naming someone else's call: empty.
                assert_eq!((status, &body["recordings"]), (StatusCode::OK, &serde_json::json!([])), "{p}");
            } else {
                assert_404(status, &body, p);
            }
            let (status, body) = f.req(&a.cred, Method::DELETE, &format!("{}{p}", base(victim)), None).await;
            assert!(matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED), "{p}: {body}");
        }
        for l in lists {
            let (status, body) = f.get(&a.cred, &format!("{}{l}", base(victim))).await;
            assert_404(status, &body, l);
        }
        let (status, body) = f.get(&a.cred, &format!("{}.json", base(victim))).await;
        assert_404(status, &body, "account");
        let (status, body) = f.req(&a.cred, Method::POST, &format!("{}.json", base(victim)), Some("FriendlyName=x")).await;
        assert_404(status, &body, "account update");
    }
    // The parent reads and manages its children's rows.
    for (child, paths) in [(&a, &a_paths), (&b, &b_paths)] {
        for p in paths {
            let (status, body) = f.get(&main, &format!("{}{p}", base(&child.sid))).await;
            assert_eq!(status, StatusCode::OK, "{p}: {body}");
        }
        for l in lists {
            let (status, body) = f.get(&main, &format!("{}{l}", base(&child.sid))).await;
            assert_eq!(status, StatusCode::OK, "{l}: {body}");
        }
        let (_, account) = f.get(&main, &format!("{}.json", base(&child.sid))).await;
        assert_eq!(account["auth_token"], child.cred.1.as_str(), "a parent sees its child's token");
    }
    // Lists: the parent sees itself and both children, a child only itself.
    let (_, all) = f.get(&main, "/2010-04-01/Accounts.json").await;
    assert_eq!(all["accounts"].as_array().unwrap().len(), 3);
    let (_, mine) = f.get(&a.cred, "/2010-04-01/Accounts.json").await;
    let sids: Vec<&str> = mine["accounts"].as_array().unwrap().iter().map(|x| x["sid"].as_str().unwrap()).collect();
    assert_eq!(sids, [a.sid.as_str()]);
    let (_, named) = f.get(&main, "/2010-04-01/Accounts.json?FriendlyName=b").await;
    assert_eq!(named["accounts"][0]["sid"], b.sid.as_str());
    assert_eq!(named["accounts"].as_array().unwrap().len(), 1);
    // A child cannot make children of its own.
    let (status, body) = f.req(&a.cred, Method::POST, "/2010-04-01/Accounts.json", Some("FriendlyName=c")).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::FORBIDDEN, Some(20403)));
    // A child cannot change its own status; the parent can.
    let (status, _) = f.req(&a.cred, Method::POST, &format!("{}.json", base(&a.sid)), Some("Status=closed")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = f.req(&a.cred, Method::POST, &format!("{}.json", base(&a.sid)), Some("FriendlyName=renamed")).await;
    assert_eq!((status, body["friendly_name"].as_str()), (StatusCode::OK, Some("renamed")));
}

#[tokio::test]
async fn api_keys_authenticate_for_their_account_until_deleted() {
    let f = fixture().await;
    let main = f.main_cred();
    let child = f.child("child").await;
    let sibling = f.child("sibling").await;
    let keys = format!("{}/Keys.json", base(&f.main));
    let (status, created) = f.req(&main, Method::POST, &keys, Some("FriendlyName=deploy")).await;
    assert_eq!(status, StatusCode::CREATED);
    let sid = created["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("SK") && sid.len() == 34);
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 32);
    let key = Cred(sid.clone(), secret.clone());

    // The secret is never shown again.
    let (_, fetched) = f.get(&main, &format!("{}/Keys/{sid}.json", base(&f.main))).await;
    assert!(fetched.get("secret").is_none(), "{fetched}");
    assert_eq!(fetched["friendly_name"], "deploy");
    let (_, listed) = f.get(&main, &keys).await;
    assert!(listed["keys"][0].get("secret").is_none());

    // The key works for its account and the account's children, not for anything else.
    assert_eq!(f.get(&key, &format!("{}/Calls.json", base(&f.main))).await.0, StatusCode::OK);
    assert_eq!(f.get(&key, &format!("{}/Calls.json", base(&child.sid))).await.0, StatusCode::OK);
    assert_eq!(f.get(&Cred(sid.clone(), "wrong".into()), &keys).await.0, StatusCode::UNAUTHORIZED);
    // A child's key does not reach its sibling or parent.
    let (_, ck) = f.req(&child.cred, Method::POST, &format!("{}/Keys.json", base(&child.sid)), Some("")).await;
    let child_key = Cred(ck["sid"].as_str().unwrap().into(), ck["secret"].as_str().unwrap().into());
    assert_eq!(f.get(&child_key, &format!("{}/Calls.json", base(&child.sid))).await.0, StatusCode::OK);
    for other in [&f.main, &sibling.sid] {
        let (status, body) = f.get(&child_key, &format!("{}/Calls.json", base(other))).await;
        assert_404(status, &body, "child key");
    }
    // Keys are standard keys: no Accounts, Keys or AuthTokens with them.
    for uri in [keys.clone(), "/2010-04-01/Accounts.json".into(), format!("{}.json", base(&f.main))] {
        let (status, body) = f.get(&key, &uri).await;
        assert_eq!((status, body["code"].as_u64()), (StatusCode::FORBIDDEN, Some(20403)), "{uri}");
    }
    assert_eq!(f.req(&key, Method::POST, "/v1/AuthTokens/Secondary", None).await.0, StatusCode::FORBIDDEN);

    let (status, renamed) = f.req(&main, Method::POST, &format!("{}/Keys/{sid}.json", base(&f.main)), Some("FriendlyName=ops")).await;
    assert_eq!((status, renamed["friendly_name"].as_str()), (StatusCode::OK, Some("ops")));
    let (status, _) = f.req(&main, Method::DELETE, &format!("{}/Keys/{sid}.json", base(&f.main)), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = f.get(&key, &format!("{}/Calls.json", base(&f.main))).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::UNAUTHORIZED, Some(20003)));
}

#[tokio::test]
async fn secondary_token_authenticates_until_promoted_then_replaces_the_primary() {
    let f = fixture().await;
    let calls = format!("{}/Calls.json", base(&f.main));
    let (status, body) = f.req(&f.main_cred(), Method::POST, "/v1/AuthTokens/Promote", None).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(20001)));
    let (status, second) = f.req(&f.main_cred(), Method::POST, "/v1/AuthTokens/Secondary", None).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["url"], "https://voice.example.com/v1/AuthTokens/Secondary");
    assert!(second["date_created"].as_str().unwrap().ends_with('Z'));
    let token = second["secondary_auth_token"].as_str().unwrap().to_owned();
    let secondary = Cred(f.main.to_string(), token.clone());
    assert_eq!(f.get(&f.main_cred(), &calls).await.0, StatusCode::OK);
    assert_eq!(f.get(&secondary, &calls).await.0, StatusCode::OK);

    let (status, promoted) = f.req(&secondary, Method::POST, "/v1/AuthTokens/Promote", None).await;
    assert_eq!(status, StatusCode::OK, "{promoted}");
    assert_eq!(promoted["auth_token"], token.as_str());
    assert_eq!(promoted["account_sid"], f.main.as_str());
    let (status, body) = f.get(&f.main_cred(), &calls).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::UNAUTHORIZED, Some(20003)), "old primary");
    assert_eq!(f.get(&secondary, &calls).await.0, StatusCode::OK);
    let (_, account) = f.get(&secondary, &format!("{}.json", base(&f.main))).await;
    assert_eq!(account["auth_token"], token.as_str());

    // A new secondary, deleted: it stops working, the primary goes on.
    let (_, again) = f.req(&secondary, Method::POST, "/v1/AuthTokens/Secondary", None).await;
    let third = Cred(f.main.to_string(), again["secondary_auth_token"].as_str().unwrap().into());
    assert_eq!(f.get(&third, &calls).await.0, StatusCode::OK);
    assert_eq!(f.req(&secondary, Method::DELETE, "/v1/AuthTokens/Secondary", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(f.get(&third, &calls).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(f.get(&secondary, &calls).await.0, StatusCode::OK);
    assert_eq!(f.req(&secondary, Method::DELETE, "/v1/AuthTokens/Secondary", None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn suspended_and_closed_accounts_are_refused_with_twilio_codes() {
    let f = fixture().await;
    let main = f.main_cred();
    let child = f.child("child").await;
    let child_calls = format!("{}/Calls.json", base(&child.sid));
    let child_account = format!("{}.json", base(&child.sid));
    let (_, ck) = f.req(&child.cred, Method::POST, &format!("{}/Keys.json", base(&child.sid)), Some("")).await;
    let child_key = Cred(ck["sid"].as_str().unwrap().into(), ck["secret"].as_str().unwrap().into());

    let (status, body) = f.req(&main, Method::POST, &child_account, Some("Status=suspended")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("suspended")));
    assert!(!f.state.store.account_call_permission(&child.sid).await.unwrap().is_allowed());
    for cred in [&child.cred, &child_key] {
        let (status, body) = f.get(cred, &child_calls).await;
        assert_eq!((status, body["code"].as_u64()), (StatusCode::UNAUTHORIZED, Some(20005)), "{body}");
    }
    // The parent still reads it, but cannot place calls from it.
    assert_eq!(f.get(&main, &child_calls).await.0, StatusCode::OK);
    let form = "To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv";
    let (status, body) = f.req(&main, Method::POST, &child_calls, Some(form)).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::FORBIDDEN, Some(20005)));
    // Nor send messages from it; it still reads them.
    let child_messages = format!("{}/Messages.json", base(&child.sid));
    let sms = "To=%2B15550002222&From=%2B15550001111&Body=hi";
    let (status, body) = f.req(&main, Method::POST, &child_messages, Some(sms)).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::FORBIDDEN, Some(20005)));
    assert_eq!(f.get(&main, &child_messages).await.0, StatusCode::OK);
    let (status, body) = f.req(&main, Method::POST, &child_account, Some("Status=sleeping")).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(20001)));

    // Reactivated, it works again.
    f.req(&main, Method::POST, &child_account, Some("Status=active")).await;
    assert_eq!(f.get(&child.cred, &child_calls).await.0, StatusCode::OK);
    assert!(f.state.store.account_call_permission(&child.sid).await.unwrap().is_allowed());

    // Closed: its credentials are gone, its rows hidden, only its Account resource remains.
    let (status, body) = f.req(&main, Method::POST, &child_account, Some("Status=closed")).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("closed")));
    let (status, body) = f.get(&child.cred, &child_calls).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::UNAUTHORIZED, Some(20003)));
    let (status, body) = f.get(&main, &child_calls).await;
    assert_404(status, &body, "closed child's calls");
    let (status, body) = f.get(&main, &child_account).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("closed")));
    let (_, closed) = f.get(&main, "/2010-04-01/Accounts.json?Status=closed").await;
    assert_eq!(closed["accounts"][0]["sid"], child.sid.as_str());
    let (status, body) = f.req(&main, Method::POST, &child_account, Some("Status=active")).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(20001)));
}

#[tokio::test]
async fn numbers_route_with_their_voice_application() {
    let f = fixture().await;
    let main = f.main_cred();
    let sibling = f.child("sibling").await;
    let b = base(&f.main);
    let form = "FriendlyName=ivr&VoiceUrl=https%3A%2F%2Fapp.example%2Fivr&VoiceMethod=GET\
                &StatusCallback=https%3A%2F%2Fapp.example%2Fst&VoiceCallerIdLookup=true";
    let (status, app) = f.req(&main, Method::POST, &format!("{b}/Applications.json"), Some(form)).await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let app_sid = app["sid"].as_str().unwrap().to_owned();
    assert!(app_sid.starts_with("AP"));
    assert_eq!(app["voice_caller_id_lookup"], true);
    assert_eq!(app["uri"], format!("{b}/Applications/{app_sid}.json"));
    let (_, foreign) = f.req(&sibling.cred, Method::POST, &format!("{}/Applications.json", base(&sibling.sid)), Some("")).await;

    let numbers = format!("{b}/IncomingPhoneNumbers.json");
    for bad in ["APnope".to_owned(), foreign["sid"].as_str().unwrap().to_owned()] {
        let (status, body) = f.req(&main, Method::POST, &numbers, Some(&format!("PhoneNumber=%2B14155550100&VoiceApplicationSid={bad}"))).await;
        assert_eq!((status, body["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(21218)), "{bad}");
    }
    let (status, number) = f
        .req(&main, Method::POST, &numbers, Some(&format!("PhoneNumber=%2B14155550100&VoiceUrl=https%3A%2F%2Fown.example%2F&VoiceApplicationSid={app_sid}")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{number}");
    assert_eq!(number["voice_application_sid"], app_sid.as_str());
    assert_eq!(number["voice_url"], "https://own.example/");
    let routed = f.state.store.number_by_phone("+14155550100").await.unwrap().unwrap();
    assert_eq!((routed.voice_url.as_deref(), routed.voice_method.as_str()), (Some("https://app.example/ivr"), "GET"));
    assert_eq!(routed.status_callback.as_deref(), Some("https://app.example/st"));

    let (_, listed) = f.get(&main, &numbers).await;
    assert_eq!(listed["incoming_phone_numbers"][0]["voice_application_sid"], app_sid.as_str());
    // Changing the application changes where the number's calls go.
    let one_app = format!("{b}/Applications/{app_sid}.json");
    let (status, _) = f.req(&main, Method::POST, &one_app, Some("VoiceUrl=https%3A%2F%2Fapp.example%2Fv2")).await;
    assert_eq!(status, StatusCode::OK);
    let routed = f.state.store.number_by_phone("+14155550100").await.unwrap().unwrap();
    assert_eq!(routed.voice_url.as_deref(), Some("https://app.example/v2"));
    // Clearing it puts the number back on its own URL.
    let one = number["uri"].as_str().unwrap();
    let (_, cleared) = f.req(&main, Method::POST, one, Some("VoiceApplicationSid=")).await;
    assert_eq!(cleared["voice_application_sid"], Value::Null);
    let routed = f.state.store.number_by_phone("+14155550100").await.unwrap().unwrap();
    assert_eq!(routed.voice_url.as_deref(), Some("https://own.example/"));

    let (_, page) = f.get(&main, &format!("{b}/Applications.json?FriendlyName=ivr")).await;
    assert_eq!(page["applications"].as_array().unwrap().len(), 1);
    assert_eq!(f.req(&main, Method::DELETE, &one_app, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(f.get(&main, &one_app).await.0, StatusCode::NOT_FOUND);
    let (status, body) = f.req(&main, Method::POST, &format!("{b}/Applications.json"), Some("VoiceMethod=PUT")).await;
    assert_eq!((status, body["code"].as_u64()), (StatusCode::BAD_REQUEST, Some(20001)));
}

fn assert_fields(what: &str, body: &Value, fields: &[&str]) {
    let obj = body.as_object().unwrap_or_else(|| panic!("{what}: not an object: {body}"));
    for field in fields {
        assert!(obj.contains_key(*field), "{what} lacks {field}: {body}");
    }
}

/// RFC 2822 as the SDK's `deserialize.rfc2822_datetime` parses it.
fn assert_rfc2822(what: &str, v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("{what}: {v}"));
    assert!(chrono::DateTime::parse_from_rfc2822(s).is_ok(), "{what}: {s}");
}

#[tokio::test]
async fn shapes_have_every_field_the_sdk_reads_with_twilio_types() {
    let f = fixture().await;
    let main = f.main_cred();
    let b = base(&f.main);
    let (_, account) = f.get(&main, &format!("{b}.json")).await;
    assert_fields("account", &account, SDK_ACCOUNT);
    assert_eq!((account["type"].as_str(), account["status"].as_str()), (Some("Full"), Some("active")));
    assert_eq!(account["owner_account_sid"], f.main.as_str());
    assert_rfc2822("account.date_created", &account["date_created"]);
    for sub in ["calls", "incoming_phone_numbers", "applications", "keys", "recordings", "notifications"] {
        assert!(account["subresource_uris"][sub].as_str().unwrap().starts_with(&b), "{sub}");
    }
    let child = f.child("kid").await;
    let (_, listed) = f.get(&main, "/2010-04-01/Accounts.json").await;
    for a in listed["accounts"].as_array().unwrap() {
        assert_fields("listed account", a, SDK_ACCOUNT);
    }
    let (_, kid) = f.get(&child.cred, &format!("{}.json", base(&child.sid))).await;
    assert_eq!(kid["owner_account_sid"], f.main.as_str());

    let (_, app) = f.req(&main, Method::POST, &format!("{b}/Applications.json"), Some("FriendlyName=x")).await;
    assert_fields("application", &app, SDK_APPLICATION);
    assert_eq!(app["api_version"], "2010-04-01");
    assert!(app["voice_caller_id_lookup"].is_boolean() && app["public_application_connect_enabled"].is_boolean());
    assert_eq!((app["voice_method"].as_str(), app["sms_method"].as_str()), (Some("POST"), Some("POST")));
    assert_rfc2822("application.date_updated", &app["date_updated"]);
    let (_, apps) = f.get(&main, &format!("{b}/Applications.json")).await;
    assert_fields("listed application", &apps["applications"][0], SDK_APPLICATION);

    let (_, key) = f.req(&main, Method::POST, &format!("{b}/Keys.json"), Some("FriendlyName=k")).await;
    assert_fields("new key", &key, SDK_NEW_KEY);
    assert_rfc2822("key.date_created", &key["date_created"]);
    let (_, fetched) = f.get(&main, &format!("{b}/Keys/{}.json", key["sid"].as_str().unwrap())).await;
    assert_fields("key", &fetched, SDK_KEY);

    let (_, second) = f.req(&main, Method::POST, "/v1/AuthTokens/Secondary", None).await;
    assert_fields("secondary auth token", &second, SDK_SECONDARY_AUTH_TOKEN);
    let (_, promoted) = f.req(&main, Method::POST, "/v1/AuthTokens/Promote", None).await;
    assert_fields("auth token promotion", &promoted, SDK_AUTH_TOKEN_PROMOTION);
    for v in [&second["date_created"], &promoted["date_updated"]] {
        assert!(chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).is_ok(), "{v}");
    }

    let new_main = Cred(f.main.to_string(), promoted["auth_token"].as_str().unwrap().into());
    let (_, number) = f.req(&new_main, Method::POST, &format!("{b}/IncomingPhoneNumbers.json"), Some("PhoneNumber=%2B14155550100")).await;
    assert_fields("incoming phone number", &number, SDK_INCOMING_PHONE_NUMBER);
}

#[tokio::test]
async fn queues_and_conferences_of_another_account_cannot_be_changed_or_joined() {
    let f = fixture().await;
    let main = f.main_cred();
    let (a, b) = (f.child("a").await, f.child("b").await);
    let (status, queue) = f.req(&b.cred, Method::POST, &format!("{}/Queues.json", base(&b.sid)), Some("FriendlyName=support")).await;
    assert_eq!(status, StatusCode::CREATED, "{queue}");
    let queue = queue["sid"].as_str().unwrap().to_owned();
    let now = Utc::now();
    let room = ConferenceRecord {
        sid: ConferenceSid::generate(),
        account_sid: b.sid,
        friendly_name: "standup".into(),
        status: ConferenceStatus::InProgress,
        region: ConferenceRecord::REGION.into(),
        reason_conference_ended: None,
        call_sid_ending_conference: None,
        date_created: now,
        date_updated: now,
    };
    f.state.store.insert_conference(&room).await.unwrap();
    let call = CallSid::generate();
    let writes = [
        (Method::POST, format!("/Queues/{queue}.json"), Some("FriendlyName=mine")),
        (Method::DELETE, format!("/Queues/{queue}.json"), None),
        (Method::POST, format!("/Queues/{queue}/Members/Front.json"), Some("Url=http%3A%2F%2Fa.test%2F")),
        (Method::GET, format!("/Queues/{queue}/Members/{call}.json"), None),
        (Method::POST, format!("/Conferences/{}.json", room.sid), Some("Status=completed")),
        (Method::POST, format!("/Conferences/{}/Participants.json", room.sid), Some("To=%2B15550002222&From=%2B15550001111")),
        (Method::POST, format!("/Conferences/{}/Participants/{call}.json", room.sid), Some("Muted=true")),
        (Method::DELETE, format!("/Conferences/{}/Participants/{call}.json", room.sid), None),
    ];
    // Neither through the owner's path nor through one's own path with the owner's SIDs: a 404
    // before the runtime is asked (which here would answer 501).
    for (method, path, form) in &writes {
        for account in [&b.sid, &a.sid] {
            let (status, body) = f.req(&a.cred, method.clone(), &format!("{}{path}", base(account)), *form).await;
            assert_404(status, &body, path);
        }
    }
    let (_, kept) = f.get(&b.cred, &format!("{}/Queues/{queue}.json", base(&b.sid))).await;
    assert_eq!(kept["friendly_name"], "support");
    // The same names are free in every other account: a's own queue and room are its own.
    let (status, own) = f.req(&a.cred, Method::POST, &format!("{}/Queues.json", base(&a.sid)), Some("FriendlyName=support")).await;
    assert_eq!(status, StatusCode::CREATED, "{own}");
    let (_, listed) = f.get(&a.cred, &format!("{}/Conferences.json?FriendlyName=standup", base(&a.sid))).await;
    assert_eq!(listed["conferences"], serde_json::json!([]));
    // The parent manages its child's.
    let (status, renamed) = f.req(&main, Method::POST, &format!("{}/Queues/{queue}.json", base(&b.sid)), Some("MaxSize=10")).await;
    assert_eq!((status, renamed["max_size"].as_u64()), (StatusCode::OK, Some(10)));
}
