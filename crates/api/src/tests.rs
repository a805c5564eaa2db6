//! Router tests: requests go through `oneshot`, no socket; the store is a real SQLite file.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine;
use chrono::{Duration, Utc};
use http_body_util::BodyExt;
use model::{
    AccountSid, ApplicationSid, CallDirection, CallRecord, CallSid, CallStatus, MessageStatus,
    NotificationRecord, NotificationSid, RecordingRecord, RecordingSid,
};
use serde_json::Value;
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct CountingHooks(
    AtomicUsize,
    std::sync::Mutex<Vec<CreateCall>>,
    std::sync::Mutex<Vec<(CallSid, CallUpdate)>>,
    std::sync::Mutex<Vec<MessageSid>>,
);

impl ApiHooks for CountingHooks {
    fn number_updated(&self, _number: &model::PhoneNumberRecord, _app: Option<&model::ApplicationSid>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn number_deleted(&self, _phone_number: &str) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn create_message<'a>(
        &'a self,
        store: &'a store::Store,
        message: &'a model::MessageRecord,
    ) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            store.create_message(message).await.map_err(|e| HookError::Internal(e.to_string()))?;
            self.3.lock().unwrap().push(message.sid);
            Ok(())
        })
    }

    fn number_created(&self, _number: &model::PhoneNumberRecord, _app: Option<&model::ApplicationSid>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn create_call(&self, call: CreateCall) -> BoxFuture<'_, Result<CallRecord, HookError>> {
        let now = Utc::now();
        let rec = CallRecord {
            sid: CallSid::generate(),
            account_sid: call.account_sid,
            parent_call_sid: None,
            phone_number_sid: None,
            from: call.from.clone(),
            to: call.to.clone(),
            status: CallStatus::Queued,
            direction: CallDirection::OutboundApi,
            start_time: None,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: None,
        };
        self.1.lock().unwrap().push(call);
        Box::pin(async move { Ok(rec) })
    }

    fn update_call(
        &self,
        account: AccountSid,
        sid: CallSid,
        update: CallUpdate,
    ) -> BoxFuture<'_, Result<CallRecord, HookError>> {
        self.2.lock().unwrap().push((sid, update));
        let _ = account;
        Box::pin(async { Err(HookError::NotFound) })
    }
}

struct Fixture {
    dir: PathBuf,
    state: ApiState,
    hooks: Arc<CountingHooks>,
    account: AccountSid,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("dialtone-api-{}", CallSid::generate()));
    let store = ::store::testing::open_fresh(&dir.join("db")).await.unwrap();
    let account = AccountSid::generate();
    store.ensure_account(&account, TOKEN, "Main").await.unwrap();
    let recordings_dir = dir.join("recordings");
    std::fs::create_dir_all(&recordings_dir).unwrap();
    let hooks = Arc::new(CountingHooks::default());
    let state = ApiState {
        store,
        public_url: "https://voice.example.com/".into(),
        recordings_dir,
        hooks: hooks.clone(),
    };
    Fixture {
        dir,
        state,
        hooks,
        account,
    }
}

fn basic(user: &str, password: &str) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {enc}")
}

impl Fixture {
    fn base(&self) -> String {
        format!("/2010-04-01/Accounts/{}", self.account)
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = router(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, body)
    }

    async fn request(&self, method: Method, uri: &str, form: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, basic(self.account.as_str(), TOKEN));
        let body = match form {
            Some(f) => {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                Body::from(f.to_owned())
            }
            None => Body::empty(),
        };
        let (status, _, bytes) = self.send(req.body(body).unwrap()).await;
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

    async fn insert_call(&self, created: chrono::DateTime<Utc>, to: &str) -> CallRecord {
        let c = CallRecord {
            sid: CallSid::generate(),
            account_sid: self.account,
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+15005550006".into(),
            to: to.into(),
            status: CallStatus::Completed,
            direction: CallDirection::Inbound,
            start_time: Some(created),
            end_time: Some(created + Duration::seconds(12)),
            duration: Some(12),
            answered_by: None,
            price: None,
            date_created: created,
            date_updated: created,
            date_scheduled: None,
        };
        self.state.store.insert_call(&c).await.unwrap();
        c
    }
}

fn assert_twilio_error(body: &Value, code: u64, status: u64) {
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert_eq!(
        body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401_20003() {
    let f = fixture().await;
    let uri = format!("{}/Calls.json", f.base());
    let cases = [
        None,
        Some(basic(f.account.as_str(), "wrong")),
        Some(basic(AccountSid::generate().as_str(), TOKEN)),
        Some(basic("not-a-sid", TOKEN)),
        Some("Bearer xyz".to_owned()),
    ];
    for auth in cases {
        let mut req = Request::builder().uri(&uri);
        if let Some(a) = &auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let (status, headers, body) = f.send(req.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            "Basic realm=\"Twilio API\""
        );
        assert_twilio_error(&serde_json::from_slice(&body).unwrap(), 20003, 401);
    }
    // Unknown routes do not reveal themselves before authentication either.
    let req = Request::builder().uri("/nope").body(Body::empty()).unwrap();
    assert_eq!(f.send(req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unknown_foreign_and_junk_resources_are_404_20404() {
    let f = fixture().await;
    let other = AccountSid::generate();
    f.state
        .store
        .ensure_account(&other, "other-token", "Other")
        .await
        .unwrap();
    let call = f.insert_call(Utc::now(), "+14155550100").await;
    let base = f.base();
    let unknown = [
        format!("{base}/Calls/{}.json", CallSid::generate()),
        format!("{base}/Calls/junk.json"),
        format!("{base}/Calls/{}", call.sid), // a call has no extension-less form
        format!("{base}/Recordings/{}.json", RecordingSid::generate()),
        format!("{base}/Recordings/../../etc/passwd"),
        format!("{base}/Recordings/%2e%2e%2Fetc.wav"),
        format!("/2010-04-01/Accounts/{other}/Calls.json"),
        format!("/2010-04-01/Accounts/{other}.json"),
        format!("/2010-04-01/Accounts/{other}/Calls/{}.json", call.sid),
        "/2010-04-01/Accounts/ACjunk/Calls.json".to_owned(),
        format!("{base}/Messages/{}.json", MessageSid::generate()),
        format!("{base}/Messages/{}.json", call.sid),
        format!("{base}/SMS/ShortCodes.json"),
        "/".to_owned(),
    ];
    for uri in unknown {
        let (status, body) = f.get(&uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_twilio_error(&body, 20404, 404);
    }
    let (_, body) = f.get(&format!("{base}/Calls/junk.json")).await;
    assert_eq!(
        body["message"],
        format!("The requested resource {base}/Calls/junk.json was not found")
    );

    // The other tenant, with its own credentials, cannot see our call either.
    let req = Request::builder()
        .uri(format!(
            "/2010-04-01/Accounts/{other}/Calls/{}.json",
            call.sid
        ))
        .header(header::AUTHORIZATION, basic(other.as_str(), "other-token"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(req).await.0, StatusCode::NOT_FOUND);
    // ...but does see its own (empty) list.
    let req = Request::builder()
        .uri(format!("/2010-04-01/Accounts/{other}/Calls.json"))
        .header(header::AUTHORIZATION, basic(other.as_str(), "other-token"))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["calls"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn account_fetch_shape() {
    let f = fixture().await;
    let (status, body) = f.get(&format!("{}.json", f.base())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sid"], f.account.as_str());
    assert_eq!(body["status"], "active");
    assert_eq!(body["uri"], format!("{}.json", f.base()));
    assert_eq!(
        body["subresource_uris"]["calls"],
        format!("{}/Calls.json", f.base())
    );
    assert!(body["date_created"].as_str().unwrap().ends_with(" +0000"));
}

#[tokio::test]
async fn number_crud_shapes_errors_and_hooks() {
    let f = fixture().await;
    let list = format!("{}/IncomingPhoneNumbers.json", f.base());
    let (status, created) = f
        .request(
            Method::POST,
            &list,
            Some("PhoneNumber=%2B14155550100&FriendlyName=Front+desk&VoiceUrl=https%3A%2F%2Fapp.example%2Fvoice&VoiceMethod=get"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let sid = created["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("PN") && sid.len() == 34);
    assert_eq!(created["phone_number"], "+14155550100");
    assert_eq!(created["friendly_name"], "Front desk");
    assert_eq!(created["voice_url"], "https://app.example/voice");
    assert_eq!(created["voice_method"], "GET");
    assert_eq!(created["voice_fallback_method"], "POST");
    assert_eq!(created["account_sid"], f.account.as_str());
    assert_eq!(created["api_version"], "2010-04-01");
    assert_eq!(created["capabilities"]["voice"], true);
    assert_eq!(
        created["uri"],
        format!("{}/IncomingPhoneNumbers/{sid}.json", f.base())
    );
    assert_eq!(f.hooks.0.load(Ordering::SeqCst), 1);

    // Same number again (from any account) is refused; bad input is a 400 with a clear message.
    let (status, body) = f
        .request(Method::POST, &list, Some("PhoneNumber=%2B14155550100"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21422, 400);
    assert!(body["message"].as_str().unwrap().contains("+14155550100"));
    for (form, code) in [
        ("FriendlyName=x", 21452),
        ("PhoneNumber=4155550100", 21421),
        (
            "PhoneNumber=%2B14155550101&VoiceUrl=javascript%3Aalert(1)",
            21205,
        ),
        ("PhoneNumber=%2B14155550101&VoiceMethod=PUT", 20001),
    ] {
        let (status, body) = f.request(Method::POST, &list, Some(form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert_twilio_error(&body, code, 400);
    }
    assert_eq!(f.hooks.0.load(Ordering::SeqCst), 1);

    let one = format!("{}/IncomingPhoneNumbers/{sid}.json", f.base());
    let (status, fetched) = f.get(&one).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched, created);

    let (status, updated) = f
        .request(
            Method::POST,
            &one,
            Some("VoiceUrl=&StatusCallback=https%3A%2F%2Fapp.example%2Fs"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["voice_url"], Value::Null);
    assert_eq!(updated["status_callback"], "https://app.example/s");
    assert_eq!(updated["friendly_name"], "Front desk");
    assert_eq!(f.hooks.0.load(Ordering::SeqCst), 2);

    f.request(Method::POST, &list, Some("PhoneNumber=%2B442071838750"))
        .await;
    let (_, page) = f.get(&list).await;
    assert_eq!(page["incoming_phone_numbers"].as_array().unwrap().len(), 2);
    let (_, page) = f.get(&format!("{list}?PhoneNumber=%2B1415")).await;
    assert_eq!(page["incoming_phone_numbers"].as_array().unwrap().len(), 1);
    let (_, page) = f.get(&format!("{list}?FriendlyName=Front%20desk")).await;
    assert_eq!(page["incoming_phone_numbers"][0]["sid"], sid.as_str());

    let (status, body) = f.request(Method::DELETE, &one, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    assert_eq!(f.get(&one).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        f.request(Method::DELETE, &one, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(f.hooks.0.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn calls_list_pages_follow_next_page_uri_without_duplicates() {
    let f = fixture().await;
    let base_time = Utc::now();
    let mut expected = HashSet::new();
    for i in 0..120 {
        // Some share a timestamp so the tie-break on sid is exercised.
        let c = f
            .insert_call(base_time + Duration::milliseconds(i / 3), "+14155550100")
            .await;
        expected.insert(c.sid.to_string());
    }
    let meta: HashSet<&str> = [
        "end",
        "first_page_uri",
        "next_page_uri",
        "page",
        "page_size",
        "previous_page_uri",
        "start",
        "uri",
    ]
    .into_iter()
    .collect();

    let mut seen = HashSet::new();
    let mut next = Some(format!("{}/Calls.json?PageSize=50", f.base()));
    let mut pages = Vec::new();
    while let Some(uri) = next {
        let (status, body) = f.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let obj = body.as_object().unwrap();
        // The SDKs take the one non-meta key as the records.
        let keys: Vec<&str> = obj
            .keys()
            .map(String::as_str)
            .filter(|k| !meta.contains(k))
            .collect();
        assert_eq!(keys, ["calls"]);
        for k in &meta {
            assert!(obj.contains_key(*k), "missing {k}");
        }
        for call in body["calls"].as_array().unwrap() {
            assert!(
                seen.insert(call["sid"].as_str().unwrap().to_owned()),
                "duplicate"
            );
        }
        pages.push((
            body["page"].as_u64().unwrap(),
            body["start"].as_u64().unwrap(),
            body["end"].as_u64().unwrap(),
        ));
        assert_eq!(body["page_size"], 50);
        next = body["next_page_uri"].as_str().map(str::to_owned);
        if let Some(n) = &next {
            assert!(n.starts_with(&format!("{}/Calls.json?", f.base())));
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, [(0, 0, 49), (1, 50, 99), (2, 100, 119)]);

    // Shapes of one call.
    let (_, body) = f
        .get(&format!(
            "{}/Calls.json?PageSize=1&To=%2B14155550100&Status=completed",
            f.base()
        ))
        .await;
    let call = &body["calls"][0];
    assert_eq!(call["duration"], "12");
    assert_eq!(call["price"], Value::Null);
    assert_eq!(call["status"], "completed");
    assert_eq!(call["direction"], "inbound");
    assert_eq!(call["api_version"], "2010-04-01");
    let sid = call["sid"].as_str().unwrap();
    assert_eq!(call["uri"], format!("{}/Calls/{sid}.json", f.base()));
    assert_eq!(
        call["subresource_uris"]["recordings"],
        format!("{}/Calls/{sid}/Recordings.json", f.base())
    );
    // Filters are carried into the paging links.
    assert!(body["next_page_uri"]
        .as_str()
        .unwrap()
        .contains("To=%2B14155550100&Status=completed"));
    let (status, fetched) = f.get(call["uri"].as_str().unwrap()).await;
    assert_eq!((status, &fetched), (StatusCode::OK, call));

    let (_, none) = f.get(&format!("{}/Calls.json?Status=busy", f.base())).await;
    assert_eq!(none["calls"], serde_json::json!([]));
    assert_eq!(none["next_page_uri"], Value::Null);
    let (status, body) = f
        .get(&format!("{}/Calls.json?Status=sleeping", f.base()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    let (status, _) = f
        .get(&format!("{}/Calls.json?PageToken=PTnope", f.base()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn recording_media_and_metadata_are_served() {
    let f = fixture().await;
    let call = f.insert_call(Utc::now(), "+14155550100").await;
    let sid = RecordingSid::generate();
    let wav: Vec<u8> = b"RIFF\x24\x00\x00\x00WAVE"
        .iter()
        .copied()
        .chain((0..200_000u32).map(|i| i as u8))
        .collect();
    std::fs::write(f.state.recordings_dir.join(format!("{sid}.wav")), &wav).unwrap();
    let now = Utc::now();
    f.state
        .store
        .insert_recording(&RecordingRecord {
            sid,
            account_sid: f.account,
            call_sid: call.sid,
            conference_sid: None,
            duration: 7,
            channels: 1,
            status: "completed".into(),
            source: "RecordVerb".into(),
            start_time: now,
            date_created: now,
            date_updated: now,
            file_name: format!("{sid}.wav"),
        })
        .await
        .unwrap();

    for uri in [
        format!("{}/Recordings/{sid}.wav", f.base()),
        format!("{}/Recordings/{sid}", f.base()),
    ] {
        let req = Request::builder()
            .uri(&uri)
            .header(header::AUTHORIZATION, basic(f.account.as_str(), TOKEN))
            .body(Body::empty())
            .unwrap();
        let (status, headers, body) = f.send(req).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(headers[header::CONTENT_TYPE], "audio/x-wav");
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            wav.len().to_string().as_str()
        );
        assert!(body == wav, "{uri}: body differs");
    }
    assert_eq!(
        f.get(&format!("{}/Recordings/{sid}.mp3", f.base())).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, meta) = f.get(&format!("{}/Recordings/{sid}.json", f.base())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["duration"], "7");
    assert_eq!(meta["channels"], 1);
    assert_eq!(meta["call_sid"], call.sid.as_str());
    assert_eq!(meta["source"], "RecordVerb");
    assert_eq!(
        meta["media_url"],
        format!("https://voice.example.com{}/Recordings/{sid}", f.base())
    );

    let (_, by_call) = f
        .get(&format!("{}/Calls/{}/Recordings.json", f.base(), call.sid))
        .await;
    assert_eq!(by_call["recordings"][0]["sid"], sid.as_str());
    let (_, filtered) = f
        .get(&format!(
            "{}/Recordings.json?CallSid={}",
            f.base(),
            CallSid::generate()
        ))
        .await;
    assert_eq!(filtered["recordings"], serde_json::json!([]));

    // A row whose file is gone is a 404, not a 500.
    std::fs::remove_file(f.state.recordings_dir.join(format!("{sid}.wav"))).unwrap();
    assert_eq!(
        f.get(&format!("{}/Recordings/{sid}.wav", f.base())).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn notifications_are_listed_per_call() {
    let f = fixture().await;
    let call = f.insert_call(Utc::now(), "+14155550100").await;
    let now = Utc::now();
    let n = NotificationRecord {
        sid: NotificationSid::generate(),
        account_sid: f.account,
        call_sid: Some(call.sid),
        error_code: 12100,
        log: NotificationRecord::LOG_ERROR,
        message_text: "Document parse failure".into(),
        message_date: now,
        request_url: Some("https://app.example/voice".into()),
        request_method: Some("POST".into()),
        response_body: None,
        date_created: now,
        date_updated: now,
    };
    f.state.store.insert_notification(&n).await.unwrap();
    let (status, body) = f
        .get(&format!(
            "{}/Calls/{}/Notifications.json",
            f.base(),
            call.sid
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let item = &body["notifications"][0];
    assert_eq!(item["sid"], n.sid.as_str());
    assert_eq!(item["error_code"], "12100");
    assert_eq!(item["log"], "0");
    assert_eq!(
        item["more_info"],
        "https://www.twilio.com/docs/errors/12100"
    );
    let (_, all) = f.get(&format!("{}/Notifications.json", f.base())).await;
    assert_eq!(all["notifications"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn oversized_bodies_are_413_and_wrong_methods_405() {
    let f = fixture().await;
    let list = format!("{}/IncomingPhoneNumbers.json", f.base());
    let big = format!(
        "PhoneNumber=%2B14155550100&FriendlyName={}",
        "x".repeat(BODY_LIMIT + 1)
    );
    let (status, body) = f.request(Method::POST, &list, Some(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["status"], 413);

    let (status, body) = f.request(Method::PUT, &list, Some("")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_twilio_error(&body, 20004, 405);
}

#[tokio::test]
async fn call_create_validates_like_twilio_then_asks_the_runtime() {
    let f = fixture().await;
    let uri = format!("{}/Calls.json", f.base());
    let cases = [
        ("From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv", 21201),
        ("To=%2B15550002222&Url=http%3A%2F%2Fa.test%2Fv", 21213),
        ("To=%2B15550002222&From=%2B15550001111", 21205),
        ("To=%2B15550002222&From=%2B15550001111&Url=ftp%3A%2F%2Fa.test%2Fv", 21205),
        ("To=hello&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv", 21211),
        ("To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv&Method=PUT", 21209),
        ("To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv&Timeout=x", 21208),
        ("To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv&SendDigits=12x", 21206),
        ("To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv&Record=maybe", 20001),
        ("To=%2B15550002222&From=%2B15550001111&ApplicationSid=AP123", 21218),
        ("To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv&StatusCallbackEvent=bogus", 20001),
    ];
    for (form, code) in cases {
        let (status, body) = f.request(Method::POST, &uri, Some(form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert_twilio_error(&body, code, 400);
    }
    assert!(f.hooks.1.lock().unwrap().is_empty());

    let form = "To=%2B1%20555%20000%202222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv&Method=get\
                &StatusCallback=http%3A%2F%2Fa.test%2Fs&StatusCallbackEvent=initiated&StatusCallbackEvent=ringing%20answered\
                &Timeout=900&TimeLimit=30&Twiml=%3CResponse%2F%3E";
    let (status, body) = f.request(Method::POST, &uri, Some(form)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["direction"], "outbound-api");
    assert_eq!(body["to"], "+15550002222");
    let call = f.hooks.1.lock().unwrap().pop().unwrap();
    assert_eq!(
        call.status_callback_events,
        ["initiated", "ringing", "answered"]
    );
    assert_eq!((call.timeout, call.time_limit), (600, 30));
    assert_eq!(call.method, "GET");
    assert_eq!(call.twiml.as_deref(), Some("<Response/>"));

    let form = "To=sip%3Abob%40127.0.0.1%3A5070&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv";
    let (status, _) = f.request(Method::POST, &uri, Some(form)).await;
    assert_eq!(status, StatusCode::CREATED);
    let call = f.hooks.1.lock().unwrap().pop().unwrap();
    assert_eq!(call.to, "sip:bob@127.0.0.1:5070");
    assert_eq!(call.status_callback_events, ["completed"]);
    assert_eq!(
        (call.timeout, call.method.as_str(), call.twiml),
        (60, "POST", None)
    );
}

#[tokio::test]
async fn calls_are_not_supported_without_a_runtime() {
    let mut f = fixture().await;
    f.state.hooks = Arc::new(NoHooks);
    let form = "To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv";
    let (status, body) = f
        .request(
            Method::POST,
            &format!("{}/Calls.json", f.base()),
            Some(form),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_twilio_error(&body, 20001, 501);
}

#[tokio::test]
async fn call_update_parses_and_delete_refuses_live_calls() {
    let f = fixture().await;
    let sid = CallSid::generate();
    let uri = format!("{}/Calls/{sid}.json", f.base());
    let (status, body) = f.request(Method::POST, &uri, Some("Status=busy")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    let (status, body) = f
        .request(
            Method::POST,
            &uri,
            Some("Url=http%3A%2F%2Fa.test%2Fn&Method=GET&Status=completed"),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_twilio_error(&body, 20404, 404);
    let updates = f.hooks.2.lock().unwrap().clone();
    assert_eq!(
        updates,
        [(
            sid,
            CallUpdate {
                redirect: Some(("http://a.test/n".into(), "GET".into())),
                twiml: None,
                status: Some(CallStatus::Completed)
            }
        )]
    );

    let mut live = f.insert_call(Utc::now(), "+14155550100").await;
    live.status = CallStatus::InProgress;
    f.state.store.update_call(&live).await.unwrap();
    let uri = format!("{}/Calls/{}.json", f.base(), live.sid);
    let (status, body) = f.request(Method::DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21220, 400);
    live.status = CallStatus::Completed;
    f.state.store.update_call(&live).await.unwrap();
    assert_eq!(
        f.request(Method::DELETE, &uri, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(f.get(&uri).await.0, StatusCode::NOT_FOUND);
}

impl Fixture {
    /// Any body with any Content-Type, authenticated; the JSON reply (`Null` when empty).
    async fn raw(
        &self,
        method: Method,
        uri: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, basic(self.account.as_str(), TOKEN));
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let (status, headers, bytes) = self.send(req.body(Body::from(body)).unwrap()).await;
        if !bytes.is_empty() {
            assert_eq!(headers[header::CONTENT_TYPE], "application/json", "{uri}");
        }
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, json)
    }
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or("")
}

#[tokio::test]
async fn bad_bodies_get_twilio_errors_naming_the_fault() {
    let f = fixture().await;
    let numbers = format!("{}/IncomingPhoneNumbers.json", f.base());
    let form = Some("application/x-www-form-urlencoded");

    // Over the limit: 413 whatever the Content-Length says.
    let big = format!(
        "PhoneNumber=%2B14155550100&FriendlyName={}",
        "x".repeat(BODY_LIMIT)
    );
    let (status, body) = f.raw(Method::POST, &numbers, form, big.into_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_twilio_error(&body, 20001, 413);
    assert!(message(&body).contains("65536 bytes"), "{body}");

    // Not a form.
    for ct in [
        Some("application/json"),
        Some("text/plain; charset=utf-8"),
        None,
    ] {
        let (status, body) = f
            .raw(
                Method::POST,
                &numbers,
                ct,
                br#"{"PhoneNumber":"+14155550100"}"#.to_vec(),
            )
            .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_twilio_error(&body, 20001, 415);
        assert!(
            message(&body).contains("application/x-www-form-urlencoded"),
            "{body}"
        );
    }
    // The charset parameter and upper case are fine.
    let (status, _) = f
        .raw(
            Method::POST,
            &numbers,
            Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            b"PhoneNumber=%2B14155550100".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Invalid UTF-8, percent-encoded or raw, in a value or a name.
    for raw in [
        &b"PhoneNumber=%2B14155550101&FriendlyName=%FF%FE"[..],
        b"PhoneNumber=%2B14155550101&FriendlyName=\xff",
        b"Friendly%C3Name=x",
    ] {
        let (status, body) = f.raw(Method::POST, &numbers, form, raw.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_twilio_error(&body, 20001, 400);
        assert!(message(&body).contains("UTF-8"), "{body}");
    }

    // Unknown parameters are named; Twilio's own that we do not act on are accepted.
    let (status, body) = f
        .raw(
            Method::POST,
            &numbers,
            form,
            b"PhoneNumber=%2B14155550102&VoiceUlr=http%3A%2F%2Fa.test".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    assert!(
        message(&body).contains("Unknown parameter \"VoiceUlr\""),
        "{body}"
    );
    let (status, body) = f
        .raw(
            Method::POST,
            &numbers,
            form,
            b"PhoneNumber=%2B14155550102&SmsUrl=http%3A%2F%2Fa.test&AreaCode=415".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = f.get(&format!("{numbers}?PageSize=2&Colour=red")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("\"Colour\""), "{body}");
    let (status, body) = f
        .get(&format!(
            "{}/Recordings.json?DateCreated%3E=2020-01-01",
            f.base()
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Wrong types and bad numbers.
    let (status, body) = f
        .raw(
            Method::POST,
            &numbers,
            form,
            b"PhoneNumber=call-me".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21421, 400);
    assert!(
        message(&body).contains("PhoneNumber call-me is invalid"),
        "{body}"
    );
    let (status, body) = f
        .raw(Method::POST, &numbers, form, b"FriendlyName=x".to_vec())
        .await;
    assert_twilio_error(&body, 21452, 400);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let calls = format!("{}/Calls.json", f.base());
    let (status, body) = f
        .raw(
            Method::POST,
            &calls,
            form,
            b"To=%2B15550002222&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv&Timeout=abc"
                .to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 21208, 400);
    assert!(message(&body).contains("Invalid Timeout \"abc\""), "{body}");
    let (status, body) = f.get(&format!("{calls}?PageSize=ten")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("PageSize"), "{body}");
    let (status, body) = f
        .raw(
            Method::POST,
            &format!("{}/Applications.json", f.base()),
            form,
            b"VoiceCallerIdLookup=perhaps".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).contains("VoiceCallerIdLookup must be true or false"),
        "{body}"
    );
    assert!(f.hooks.1.lock().unwrap().is_empty());
}

#[tokio::test]
async fn path_tricks_and_bad_sids_are_404_and_read_nothing() {
    let f = fixture().await;
    // A file beside the recordings directory that a traversal would reach.
    std::fs::write(f.dir.join("secret.wav"), b"RIFF-secret").unwrap();
    let base = f.base();
    let paths = [
        format!("{base}/Calls/CA123.json"),
        format!(
            "{base}/Calls/{}.json",
            CallSid::generate().as_str().to_uppercase()
        ),
        format!("{base}/Calls/../../../etc/passwd"),
        format!("{base}/Recordings/..%2Fsecret.wav"),
        format!("{base}/Recordings/..%2F..%2Fsecret"),
        format!("{base}/Recordings/%2e%2e%2fsecret.wav"),
        format!("{base}/Recordings/RE0123456789abcdef0123456789abcdef%2F..%2F..%2Fsecret.wav"),
        format!("{base}/IncomingPhoneNumbers/PN%00.json"),
        format!("{base}/Keys/%C0%AF.json"),
        format!("{base}/Applications/{}.json", "A".repeat(10_000)),
        format!("/2010-04-01/Accounts/{}%2FCalls.json", f.account),
        format!("/{}", "x/".repeat(4000)),
    ];
    for path in &paths {
        let (status, body) = f.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_twilio_error(&body, 20404, 404);
        assert!(
            message(&body).len() < 400,
            "{path}: the message echoes a bounded part of the path"
        );
        assert!(!body.to_string().contains("RIFF"));
    }
    // Nothing was written beside the store and the one file put there.
    let mut names: Vec<String> = std::fs::read_dir(&f.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n == "secret.wav" || n == "recordings" || n.starts_with("db")),
        "{names:?}"
    );
    assert_eq!(
        std::fs::read_dir(f.dir.join("recordings")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_without_credentials() {
    let f = fixture().await;
    let req = Request::builder()
        .uri("/openapi.json")
        .body(Body::empty())
        .unwrap();
    let (status, headers, bytes) = f.send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["servers"][0]["url"], "https://voice.example.com");
    for path in [
        "/2010-04-01/Accounts/{AccountSid}/Calls.json",
        "/2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.wav",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    // Every documented path answers through its handler: an unknown SID of the right shape is
    // the handler's 404 naming that path, and a list is a list.
    let calls = f.get(&format!("{}/Calls.json", f.base())).await;
    assert_eq!(calls.0, StatusCode::OK);
    assert!(calls.1["calls"].is_array());
}

/// Regression: the document was cached process-wide, so a second router (another server in the
/// same process) served the first one's public URL.
#[tokio::test]
async fn each_router_serves_its_own_public_url_in_the_openapi_document() {
    let mut f = fixture().await;
    let first = f
        .send(
            Request::builder()
                .uri("/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let first: Value = serde_json::from_slice(&first.2).unwrap();
    assert_eq!(first["servers"][0]["url"], "https://voice.example.com");
    f.state.public_url = "https://other.example.net".into();
    let second = f
        .send(
            Request::builder()
                .uri("/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let second: Value = serde_json::from_slice(&second.2).unwrap();
    assert_eq!(second["servers"][0]["url"], "https://other.example.net");
}

#[tokio::test]
async fn calls_run_an_application_of_their_own_account() {
    let f = fixture().await;
    let form = Some("application/x-www-form-urlencoded");
    let apps = format!("{}/Applications.json", f.base());
    let (status, app) = f
        .raw(Method::POST, &apps, form,
            b"VoiceUrl=http%3A%2F%2Fapp.test%2Fv&VoiceMethod=GET&VoiceFallbackUrl=http%3A%2F%2Fapp.test%2Ff&StatusCallback=http%3A%2F%2Fapp.test%2Fs&StatusCallbackMethod=GET".to_vec())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let app_sid = app["sid"].as_str().unwrap().to_owned();
    let calls = format!("{}/Calls.json", f.base());

    let body = format!("To=%2B15550002222&From=%2B15550001111&ApplicationSid={app_sid}");
    let (status, rec) = f.raw(Method::POST, &calls, form, body.into_bytes()).await;
    assert_eq!(status, StatusCode::CREATED, "{rec}");
    let call = f.hooks.1.lock().unwrap().pop().unwrap();
    assert_eq!(
        (call.url.as_deref(), call.method.as_str()),
        (Some("http://app.test/v"), "GET")
    );
    assert_eq!(call.fallback_url.as_deref(), Some("http://app.test/f"));
    assert_eq!(
        (
            call.status_callback.as_deref(),
            call.status_callback_method.as_str()
        ),
        (Some("http://app.test/s"), "GET")
    );
    assert_eq!((call.send_digits, call.record), (None, false));

    // The request's own status callback wins; the application's Url wins over the request's.
    let body = format!(
        "To=%2B15550002222&From=%2B15550001111&ApplicationSid={app_sid}&Url=http%3A%2F%2Fother.test%2F\
         &StatusCallback=http%3A%2F%2Fmine.test%2Fs&SendDigits=1234w%23&Record=true"
    );
    let (status, _) = f.raw(Method::POST, &calls, form, body.into_bytes()).await;
    assert_eq!(status, StatusCode::CREATED);
    let call = f.hooks.1.lock().unwrap().pop().unwrap();
    assert_eq!(call.url.as_deref(), Some("http://app.test/v"));
    assert_eq!(
        (
            call.status_callback.as_deref(),
            call.status_callback_method.as_str()
        ),
        (Some("http://mine.test/s"), "POST")
    );
    assert_eq!(
        (call.send_digits.as_deref(), call.record),
        (Some("1234w#"), true)
    );

    // Another account's application is an invalid one (21218); so is an unknown one.
    let other = AccountSid::generate();
    f.state
        .store
        .ensure_account(&other, "other-token-0123456789abcdef0123", "Other")
        .await
        .unwrap();
    let mut foreign = f
        .state
        .store
        .application(&f.account, &app_sid.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    foreign.sid = model::ApplicationSid::generate();
    foreign.account_sid = other;
    f.state.store.create_application(&foreign).await.unwrap();
    for sid in [foreign.sid, model::ApplicationSid::generate()] {
        let body = format!("To=%2B15550002222&From=%2B15550001111&ApplicationSid={sid}");
        let (status, err) = f.raw(Method::POST, &calls, form, body.into_bytes()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_twilio_error(&err, 21218, 400);
        assert!(message(&err).contains(sid.as_str()), "{err}");
    }
    // An application without a VoiceUrl cannot run a call.
    let (_, bare) = f
        .raw(Method::POST, &apps, form, b"FriendlyName=bare".to_vec())
        .await;
    let body = format!(
        "To=%2B15550002222&From=%2B15550001111&ApplicationSid={}",
        bare["sid"].as_str().unwrap()
    );
    let (status, err) = f.raw(Method::POST, &calls, form, body.into_bytes()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&err, 21205, 400);
    assert!(f.hooks.1.lock().unwrap().is_empty());
}

// --- Messages ------------------------------------------------------------------------------------

impl Fixture {
    /// A number of the fixture's account, so that it may send from it.
    async fn own_number(&self, phone: &str) {
        let (status, body) = self
            .request(
                Method::POST,
                &format!("{}/IncomingPhoneNumbers.json", self.base()),
                Some(&format!("PhoneNumber={}", phone.replace('+', "%2B"))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    async fn send_sms(&self, form: &str) -> (StatusCode, Value) {
        self.request(Method::POST, &format!("{}/Messages.json", self.base()), Some(form)).await
    }
}

#[tokio::test]
async fn messages_are_sent_fetched_listed_redacted_canceled_and_deleted() {
    let f = fixture().await;
    f.own_number("+14155550100").await;
    let (status, sent) = f.send_sms("To=%2B15005550006&From=%2B14155550100&Body=Hello+there").await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    let sid = sent["sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("SM") && sid.len() == 34);
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["direction"], "outbound-api");
    assert_eq!(sent["body"], "Hello there");
    assert_eq!((sent["from"].as_str(), sent["to"].as_str()), (Some("+14155550100"), Some("+15005550006")));
    assert_eq!((sent["num_segments"].as_str(), sent["num_media"].as_str()), (Some("1"), Some("0")));
    assert_eq!(sent["messaging_service_sid"], Value::Null);
    assert_eq!((sent["error_code"].clone(), sent["date_sent"].clone()), (Value::Null, Value::Null));
    assert_eq!((sent["price"].clone(), sent["price_unit"].as_str()), (Value::Null, Some("USD")));
    assert_eq!(sent["api_version"], "2010-04-01");
    let one = format!("{}/Messages/{sid}.json", f.base());
    assert_eq!(sent["uri"], one);
    assert_eq!(sent["subresource_uris"]["media"], format!("{}/Messages/{sid}/Media.json", f.base()));
    assert!(sent["date_created"].as_str().unwrap().ends_with(" +0000"));
    let queued: Vec<String> = f.hooks.3.lock().unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(queued, [sid.as_str()]);

    // Segments as Twilio bills them: GSM-7 160/153, UCS-2 70/67.
    for (body, segments) in [
        ("a".repeat(160), "1"),
        ("a".repeat(161), "2"),
        ("\u{436}".repeat(70), "1"),
        ("\u{436}".repeat(71), "2"),
        ("a".repeat(1600), "11"),
    ] {
        let form = format!("To=%2B15005550007&From=%2B14155550100&Body={}", body);
        let (status, m) = f.send_sms(&form).await;
        assert_eq!(status, StatusCode::CREATED, "{m}");
        assert_eq!(m["num_segments"], segments, "{} characters", body.chars().count());
    }
    let stored = f.state.store.message(&f.account, &sid.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((stored.attempts, stored.smsc.as_deref()), (0, None));

    let (status, fetched) = f.get(&one).await;
    assert_eq!((status, &fetched), (StatusCode::OK, &sent));

    // The list: newest first, filtered by number and by the day sent, paged by next_page_uri.
    let list = format!("{}/Messages.json", f.base());
    let (_, page) = f.get(&list).await;
    let all = page["messages"].as_array().unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[5]["sid"], sid.as_str(), "oldest last");
    let (_, page) = f.get(&format!("{list}?To=%2B15005550006")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    let (_, page) = f.get(&format!("{list}?To=+15005550007&From=+14155550100")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 5, "an unencoded + is read back");
    let today = Utc::now().date_naive();
    let msid: MessageSid = sid.parse().unwrap();
    assert!(f.state.store.set_message_status(&msid, MessageStatus::Sending, None, None, None).await.unwrap());
    assert!(f.state.store.set_message_status(&msid, MessageStatus::Sent, None, None, Some(Utc::now())).await.unwrap());
    for (query, n) in [
        (format!("DateSent={today}"), 1),
        (format!("DateSent={today}T00:00:00Z"), 1),
        (format!("DateSent%3C={today}"), 1),
        (format!("DateSent%3E={today}"), 1),
        (format!("DateSent%3C={}", today.pred_opt().unwrap()), 0),
        (format!("DateSent%3E={}", today.succ_opt().unwrap()), 0),
    ] {
        let (status, page) = f.get(&format!("{list}?{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert_eq!(page["messages"].as_array().unwrap().len(), n, "{query}");
    }
    let (status, body) = f.get(&format!("{list}?DateSent=03/04/2026")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    let mut next = Some(format!("{list}?PageSize=4"));
    let mut seen = HashSet::new();
    while let Some(uri) = next {
        let (_, page) = f.get(&uri).await;
        for m in page["messages"].as_array().unwrap() {
            assert!(seen.insert(m["sid"].as_str().unwrap().to_owned()));
        }
        next = page["next_page_uri"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 6);

    // A message on its way is neither redacted nor deleted; once it has left, its text goes.
    let (_, queued) = f.send_sms("To=%2B15005550008&From=%2B14155550100&Body=Later").await;
    let queued_uri = queued["uri"].as_str().unwrap().to_owned();
    let (status, body) = f.request(Method::POST, &queued_uri, Some("Body=")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20009, 400);
    let (status, body) = f.request(Method::DELETE, &queued_uri, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20009, 400);
    let (status, body) = f.request(Method::POST, &one, Some("Body=new+text")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    let (status, redacted) = f.request(Method::POST, &one, Some("Body=")).await;
    assert_eq!(status, StatusCode::OK, "{redacted}");
    assert_eq!((redacted["body"].as_str(), redacted["status"].as_str()), (Some(""), Some("sent")));
    assert_eq!(f.get(&one).await.1["body"], "");

    // Cancel: only while queued.
    let (status, canceled) = f.request(Method::POST, &queued_uri, Some("Status=canceled")).await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    let (status, body) = f.request(Method::POST, &queued_uri, Some("Status=canceled")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 30409, 400);
    let (status, body) = f.request(Method::POST, &one, Some("Status=delivered")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    for uri in [&queued_uri, &one] {
        let (status, body) = f.request(Method::DELETE, uri, None).await;
        assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
        assert_eq!(f.get(uri).await.0, StatusCode::NOT_FOUND);
        assert_eq!(f.request(Method::DELETE, uri, None).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn message_sends_are_refused_with_twilio_codes() {
    let f = fixture().await;
    f.own_number("+14155550100").await;
    // A number of another account is not ours to send from.
    let other = AccountSid::generate();
    f.state.store.ensure_account(&other, "other-token", "Other").await.unwrap();
    let mut theirs = f.state.store.list_numbers(&f.account, &Default::default(), &::store::PageRequest::first(1)).await.unwrap().items[0].clone();
    theirs.sid = model::PhoneNumberSid::generate();
    theirs.account_sid = other;
    theirs.phone_number = "+14155550199".into();
    f.state.store.create_number(&theirs).await.unwrap();
    let long = format!("To=%2B15005550006&From=%2B14155550100&Body={}", "a".repeat(1601));
    for (form, code) in [
        ("From=%2B14155550100&Body=Hi", 21604),
        ("To=5550006&From=%2B14155550100&Body=Hi", 21211),
        ("To=%2B15005550006&Body=Hi", 21603),
        ("To=%2B15005550006&From=%2B14155550199&Body=Hi", 21606),
        ("To=%2B15005550006&From=%2B14155550123&Body=Hi", 21606),
        ("To=%2B15005550006&From=%2B14155550100", 21602),
        (long.as_str(), 21617),
        ("To=%2B15005550006&From=%2B14155550100&Body=Hi&ValidityPeriod=36001", 21624),
        ("To=%2B15005550006&From=%2B14155550100&Body=Hi&StatusCallback=nope", 21609),
        (&format!("To=%2B15005550006&From=%2B14155550100&Body=Hi&ApplicationSid={}", ApplicationSid::generate()), 21218),
        (&format!("To=%2B15005550006&MessagingServiceSid=MG{}&Body=Hi", "0".repeat(32)), 21701),
        ("To=%2B15005550006&From=%2B14155550100&Body=Hi&MediaUrl=https%3A%2F%2Fa.example%2Fcat.png", 21621),
        ("To=%2B15005550006&From=%2B14155550100&Body=Hi&Colour=blue", 20001),
    ] {
        let (status, body) = f.send_sms(form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert_twilio_error(&body, code, 400);
    }
    assert!(f.hooks.3.lock().unwrap().is_empty(), "nothing was queued");

    // Twilio's parameters this server does not act on are accepted.
    let (status, body) = f.send_sms("To=%2B15005550006&From=%2B14155550100&Body=Hi&MaxPrice=0.5&ProvideFeedback=true&SmartEncoded=true&Attempt=1").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An application's MessageStatusCallback applies when the request names none.
    let (status, app) = f
        .request(
            Method::POST,
            &format!("{}/Applications.json", f.base()),
            Some("FriendlyName=sms&MessageStatusCallback=https%3A%2F%2Fapp.example%2Fmsg-status"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{app}");
    let app_sid = app["sid"].as_str().unwrap();
    let stored = |body: Value| {
        let store = f.state.store.clone();
        let account = f.account;
        async move {
            let sid: MessageSid = body["sid"].as_str().unwrap().parse().unwrap();
            store.message(&account, &sid).await.unwrap().unwrap()
        }
    };
    let (_, m) = f.send_sms(&format!("To=%2B15005550006&From=%2B14155550100&Body=Hi&ApplicationSid={app_sid}&ValidityPeriod=60")).await;
    let m = stored(m).await;
    assert_eq!(m.status_callback.as_deref(), Some("https://app.example/msg-status"));
    assert_eq!((m.application_sid.map(|a| a.to_string()), m.validity_period), (Some(app_sid.to_owned()), Some(60)));
    let (_, m) = f
        .send_sms(&format!(
            "To=%2B15005550006&From=%2B14155550100&Body=Hi&ApplicationSid={app_sid}&StatusCallback=https%3A%2F%2Fmine.example%2Fs"
        ))
        .await;
    assert_eq!(stored(m).await.status_callback.as_deref(), Some("https://mine.example/s"));
}

#[tokio::test]
async fn numbers_keep_their_sms_settings_and_sms_application() {
    let f = fixture().await;
    let (_, app) = f
        .request(Method::POST, &format!("{}/Applications.json", f.base()), Some("FriendlyName=sms"))
        .await;
    let app_sid = app["sid"].as_str().unwrap().to_owned();
    let list = format!("{}/IncomingPhoneNumbers.json", f.base());
    let (status, created) = f
        .request(
            Method::POST,
            &list,
            Some(&format!(
                "PhoneNumber=%2B14155550100&SmsUrl=https%3A%2F%2Fapp.example%2Fsms&SmsMethod=get&SmsApplicationSid={app_sid}"
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["sms_url"], "https://app.example/sms");
    assert_eq!(created["sms_method"], "GET");
    assert_eq!(created["sms_fallback_method"], "POST");
    assert_eq!(created["sms_fallback_url"], Value::Null);
    assert_eq!(created["sms_application_sid"], app_sid.as_str());
    assert_eq!(created["capabilities"]["sms"], true);
    let one = created["uri"].as_str().unwrap().to_owned();
    let (status, updated) = f
        .request(Method::POST, &one, Some("SmsApplicationSid=&SmsFallbackUrl=https%3A%2F%2Fapp.example%2Ffb&SmsFallbackMethod=GET"))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["sms_application_sid"], Value::Null);
    assert_eq!((updated["sms_fallback_url"].as_str(), updated["sms_fallback_method"].as_str()), (Some("https://app.example/fb"), Some("GET")));
    assert_eq!(updated["sms_url"], "https://app.example/sms", "absent parameters keep their value");
    assert_eq!(f.get(&one).await.1, updated);
    for (form, code) in [
        (format!("SmsApplicationSid={}", ApplicationSid::generate()), 21218),
        ("SmsApplicationSid=junk".to_owned(), 21218),
        ("SmsUrl=ftp%3A%2F%2Fx".to_owned(), 21205),
        ("SmsMethod=PUT".to_owned(), 20001),
    ] {
        let (status, body) = f.request(Method::POST, &one, Some(&form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
        assert_twilio_error(&body, code, 400);
    }
}

#[derive(Default)]
struct SmscHooks;

impl ApiHooks for SmscHooks {
    fn smsc_status(&self) -> Vec<SmscStatus> {
        vec![SmscStatus {
            name: "main".into(),
            host: "smsc.example".into(),
            port: 2775,
            binds_configured: 2,
            binds_up: 1,
            queued: 4,
            submitted: 10,
            delivered: 7,
            failed: 2,
            throttled: 1,
        }]
    }
}

#[tokio::test]
async fn smsc_routes_are_listed_to_main_accounts() {
    let mut f = fixture().await;
    let (status, page) = f.get("/v1/Smsc.json").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["smscs"], serde_json::json!([]), "no SMPP: no routes");
    assert_eq!(page["next_page_uri"], Value::Null);

    f.state.hooks = Arc::new(SmscHooks);
    let (_, page) = f.get("/v1/Smsc.json").await;
    assert_eq!(
        page["smscs"],
        serde_json::json!([{
            "binds_configured": 2, "binds_up": 1, "delivered": 7, "failed": 2, "host": "smsc.example",
            "name": "main", "port": 2775, "queued": 4, "submitted": 10, "throttled": 1,
        }])
    );

    // A subaccount shares the routes but is not shown them.
    let (status, sub) = f.request(Method::POST, "/2010-04-01/Accounts.json", Some("FriendlyName=sub")).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    let req = Request::builder()
        .uri("/v1/Smsc.json")
        .header(header::AUTHORIZATION, basic(sub["sid"].as_str().unwrap(), sub["auth_token"].as_str().unwrap()))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_twilio_error(&serde_json::from_slice(&body).unwrap(), 20403, 403);
    // And it needs credentials like any route.
    let req = Request::builder().uri("/v1/Smsc.json").body(Body::empty()).unwrap();
    assert_eq!(f.send(req).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn usage_records_sum_calls_per_category_for_the_child_and_the_parent() {
    let f = fixture().await;
    let (status, sub) = f.request(Method::POST, "/2010-04-01/Accounts.json", Some("FriendlyName=child")).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    let child: AccountSid = sub["sid"].as_str().unwrap().parse().unwrap();
    let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 20).unwrap().and_hms_opt(12, 0, 0).unwrap().and_utc();
    let mut calls = Vec::new();
    // The child: an outbound call of 65 s at 5 cents per started minute, an unanswered one, and a
    // 5 s inbound call at 1 cent; the parent: one 30 s inbound call at 1 cent.
    for (account, direction, status, secs, price) in [
        (child, CallDirection::OutboundApi, CallStatus::Completed, 65, "-0.1000"),
        (child, CallDirection::OutboundApi, CallStatus::NoAnswer, 0, "0.0000"),
        (child, CallDirection::Inbound, CallStatus::Completed, 5, "-0.0100"),
        (f.account, CallDirection::Inbound, CallStatus::Completed, 30, "-0.0100"),
    ] {
        let mut c = f.insert_call(day, "+15005550006").await;
        f.state.store.delete_call(&c.account_sid, &c.sid).await.unwrap();
        c.account_sid = account;
        c.direction = direction;
        c.status = status;
        c.duration = Some(secs);
        c.price = Some(price.into());
        f.state.store.insert_call(&c).await.unwrap();
        calls.push(c);
    }
    let range = "StartDate=2026-11-01&EndDate=2026-11-30";
    let pick = |page: &Value, category: &str| -> (String, String, f64) {
        let records = page["usage_records"].as_array().unwrap();
        let r = records.iter().find(|r| r["category"] == category).unwrap_or_else(|| panic!("{category} in {page}"));
        (r["count"].as_str().unwrap().into(), r["usage"].as_str().unwrap().into(), r["price"].as_f64().unwrap())
    };
    // The parent sees its own and its child's usage, unless it asks for its own alone.
    let (status, page) = f.get(&format!("{}/Usage/Records.json?{range}", f.base())).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["usage_records"].as_array().unwrap().len(), 7, "{page}");
    assert_eq!(pick(&page, "calls"), ("3".into(), "4".into(), 0.12));
    assert_eq!(pick(&page, "calls-inbound"), ("2".into(), "2".into(), 0.02));
    assert_eq!(pick(&page, "calls-outbound"), ("1".into(), "2".into(), 0.1));
    assert_eq!(pick(&page, "sms"), ("0".into(), "0".into(), 0.0));
    assert_eq!(page["usage_records"][0]["start_date"], "2026-11-01");
    assert_eq!(page["usage_records"][0]["end_date"], "2026-11-30");
    assert!(page["usage_records"][0]["subresource_uris"]["daily"].as_str().unwrap().ends_with("/Usage/Records/Daily.json?Category=calls"));
    let (_, alone) = f.get(&format!("{}/Usage/Records.json?{range}&IncludeSubaccounts=false", f.base())).await;
    assert_eq!(pick(&alone, "calls"), ("1".into(), "1".into(), 0.01));
    // The child, with its own credentials, sees its own.
    let req = Request::builder()
        .uri(format!("/2010-04-01/Accounts/{child}/Usage/Records/Monthly.json?Category=calls-outbound&{range}"))
        .header(header::AUTHORIZATION, basic(child.as_str(), sub["auth_token"].as_str().unwrap()))
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::OK);
    let monthly: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(monthly["usage_records"].as_array().unwrap().len(), 1, "{monthly}");
    assert_eq!(pick(&monthly, "calls-outbound"), ("1".into(), "2".into(), 0.1));
    // Daily: one record per day and category, and the days are paged in order.
    let (_, daily) = f.get(&format!("{}/Usage/Records/Daily.json?Category=calls&{range}&PageSize=7", f.base())).await;
    let records = daily["usage_records"].as_array().unwrap();
    assert_eq!(records.len(), 7);
    assert_eq!((records[0]["start_date"].as_str(), records[6]["start_date"].as_str()), (Some("2026-11-01"), Some("2026-11-07")));
    let next = daily["next_page_uri"].as_str().expect("more days follow");
    let (_, page2) = f.get(next).await;
    assert_eq!(page2["usage_records"][0]["start_date"], "2026-11-08");
    let (_, later) = f.get(&format!("{}/Usage/Records/Daily.json?Category=calls&{range}&PageSize=7&Page=2", f.base())).await;
    let records = later["usage_records"].as_array().unwrap();
    assert_eq!(records[5]["start_date"], "2026-11-20");
    assert_eq!((records[5]["count"].as_str(), records[5]["price"].as_f64()), (Some("3"), Some(0.12)));
    let (_, last) = f.get(&format!("{}/Usage/Records/Daily.json?Category=calls&{range}&PageSize=7&Page=4", f.base())).await;
    assert_eq!(last["usage_records"].as_array().unwrap().len(), 2);
    assert!(last["next_page_uri"].is_null());
    // Bad dates are refused with Twilio's error body.
    let (status, body) = f.get(&format!("{}/Usage/Records/Daily.json?StartDate=tomorrow", f.base())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&body, 20001, 400);
    // Another account's usage is a 404, as any of its resources.
    let (status, _) = f.get(&format!("/2010-04-01/Accounts/{}/Usage/Records.json", AccountSid::generate())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rate_tables_are_set_by_the_main_account_and_inherited_by_subaccounts() {
    let f = fixture().await;
    let (_, sub) = f.request(Method::POST, "/2010-04-01/Accounts.json", Some("FriendlyName=child")).await;
    let child = sub["sid"].as_str().unwrap().to_owned();
    let child_token = sub["auth_token"].as_str().unwrap().to_owned();
    let (status, _) = f.get(&format!("{}/RateTable.json", f.base())).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no table: the node's [pricing] applies");
    let form = "Rounding=per-second&InboundRate=local%3D0.01&OutboundRate=%2B1555%3D0.05&OutboundRate=+44%3D0.03&SmsInboundRate=0.0075";
    let (status, table) = f.request(Method::POST, &format!("{}/RateTable.json", f.base()), Some(form)).await;
    assert_eq!(status, StatusCode::OK, "{table}");
    assert_eq!(table["rounding"], "per-second");
    assert_eq!(table["outbound"], serde_json::json!({ "+1555": "0.05", "+44": "0.03" }));
    assert_eq!(table["inbound"], serde_json::json!({ "local": "0.01" }));
    assert!(table["inherited_from"].is_null());
    // The child inherits it, and says from whom.
    let child_get = |path: String| {
        Request::builder()
            .uri(path)
            .header(header::AUTHORIZATION, basic(&child, &child_token))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = f.send(child_get(format!("/2010-04-01/Accounts/{child}/RateTable.json"))).await;
    let inherited: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, inherited["inherited_from"].as_str()), (StatusCode::OK, Some(f.account.as_str())), "{inherited}");
    // The parent gives the child its own; a second POST replaces it whole.
    let child_table = format!("/2010-04-01/Accounts/{child}/RateTable.json");
    let (status, _) = f.request(Method::POST, &child_table, Some("OutboundRate=%2B1%3D0.02")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, own) = f.request(Method::POST, &child_table, Some("SmsOutboundRate=%3D0.04")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((own["outbound"].clone(), own["sms_outbound"].clone()), (serde_json::json!({}), serde_json::json!({ "": "0.04" })));
    assert_eq!(own["rounding"], "per-minute");
    // The child may not set its own prices.
    let req = Request::builder()
        .method(Method::POST)
        .uri(&child_table)
        .header(header::AUTHORIZATION, basic(&child, &child_token))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("OutboundRate=%2B1%3D0"))
        .unwrap();
    let (status, _, body) = f.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_twilio_error(&serde_json::from_slice(&body).unwrap(), 20403, 403);
    // Bad rates are refused whole, naming what is wrong.
    for bad in ["OutboundRate=%2B1x%3D1", "OutboundRate=%2B1%3D-1", "OutboundRate=%2B1", "InboundRate=landline%3D1",
                "OutboundRate=%2B1%3D1&OutboundRate=%2B1%3D2", "Rounding=hourly", "SmsInboundRate=1000001"] {
        let (status, body) = f.request(Method::POST, &child_table, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_twilio_error(&body, 20001, 400);
    }
    // Removing the child's own table brings back the parent's.
    assert_eq!(f.request(Method::DELETE, &child_table, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(f.request(Method::DELETE, &child_table, None).await.0, StatusCode::NOT_FOUND);
    let (_, back) = f.get(&child_table).await;
    assert_eq!(back["inherited_from"], f.account.as_str());
}

#[tokio::test]
async fn calling_window_is_set_kept_inherited_and_removed() {
    let f = fixture().await;
    let uri = format!("{}/CallingWindow.json", f.base());
    let (status, body) = f.get(&uri).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = f.request(Method::POST, &uri, Some("Hours=Mon-Fri%2009%3A00-18%3A00&DatesOff=2026-12-25&DatesOff=2027-01-01%2C2026-12-25")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hours"], "mon-fri 09:00-18:00");
    assert_eq!(body["days"]["monday"], "09:00-18:00");
    assert_eq!(body["days"]["sunday"], Value::Null);
    assert_eq!(body["dates_off"], serde_json::json!(["2026-12-25", "2027-01-01"]));
    assert_eq!((body["policy"].as_str(), body["dial_policy"].as_str()), (Some("defer"), Some("refuse")));
    assert_eq!(body["inherited"], false);
    assert_eq!(body["uri"], format!("{}/CallingWindow.json", f.base()));

    // What a request leaves out keeps its value.
    let (status, body) = f.request(Method::POST, &uri, Some("Policy=refuse&DialPolicy=ignore")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hours"], "mon-fri 09:00-18:00");
    assert_eq!((body["policy"].as_str(), body["dial_policy"].as_str()), (Some("refuse"), Some("ignore")));
    let (_, fetched) = f.get(&uri).await;
    assert_eq!(fetched, body);

    for form in ["Hours=mon%2018%3A00-09%3A00", "DatesOff=2026-02-30", "Policy=later", "DialPolicy=defer"] {
        let (status, body) = f.request(Method::POST, &uri, Some(form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert_twilio_error(&body, 20001, 400);
    }

    // A subaccount inherits its parent's window until it sets its own.
    let (status, sub) = f.request(Method::POST, "/2010-04-01/Accounts.json", Some("FriendlyName=sub")).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    let sub_uri = format!("/2010-04-01/Accounts/{}/CallingWindow.json", sub["sid"].as_str().unwrap());
    let (status, inherited) = f.get(&sub_uri).await;
    assert_eq!(status, StatusCode::OK, "{inherited}");
    assert_eq!((inherited["inherited"].as_bool(), inherited["account_sid"].as_str()), (Some(true), Some(f.account.as_str())));
    let (_, own) = f.request(Method::POST, &sub_uri, Some("Hours=sat%2010%3A00-12%3A00")).await;
    assert_eq!((own["inherited"].as_bool(), own["hours"].as_str(), own["policy"].as_str()), (Some(false), Some("sat 10:00-12:00"), Some("defer")));

    let (status, _) = f.request(Method::DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = f.request(Method::DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(f.get(&uri).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn time_zone_overrides_are_created_listed_changed_and_deleted() {
    let f = fixture().await;
    let uri = format!("{}/TimeZoneOverrides.json", f.base());
    let (status, number) = f.request(Method::POST, &uri, Some("PhoneNumber=%2B12125550100&TimeZone=Asia%2FTokyo")).await;
    assert_eq!(status, StatusCode::CREATED, "{number}");
    assert!(number["sid"].as_str().unwrap().starts_with("TZ"));
    assert_eq!((number["phone_number"].as_str(), number["prefix"].clone()), (Some("+12125550100"), Value::Null));
    let (status, prefix) = f.request(Method::POST, &uri, Some("Prefix=%2B1212&TimeZone=Europe%2FParis")).await;
    assert_eq!(status, StatusCode::CREATED, "{prefix}");
    assert_eq!(prefix["prefix"], "+1212");

    for (form, code) in [
        ("Prefix=%2B1212&TimeZone=UTC", 20001),
        ("PhoneNumber=%2B12125550100&Prefix=%2B1&TimeZone=UTC", 20001),
        ("TimeZone=UTC", 20001),
        ("Prefix=1212&TimeZone=UTC", 20001),
        ("PhoneNumber=12&TimeZone=UTC", 21211),
        ("Prefix=%2B44&TimeZone=Mars%2FOlympus", 20001),
        ("Prefix=%2B44", 20001),
    ] {
        let (status, body) = f.request(Method::POST, &uri, Some(form)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {body}");
        assert_twilio_error(&body, code, 400);
    }

    let (status, list) = f.get(&uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["time_zone_overrides"].as_array().unwrap().len(), 2);
    let one = format!("{}/TimeZoneOverrides/{}.json", f.base(), prefix["sid"].as_str().unwrap());
    let (status, changed) = f.request(Method::POST, &one, Some("TimeZone=America%2FChicago")).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!((changed["time_zone"].as_str(), changed["prefix"].as_str()), (Some("America/Chicago"), Some("+1212")));
    assert_eq!(f.get(&one).await.1["time_zone"], "America/Chicago");
    assert_eq!(f.request(Method::DELETE, &one, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(f.get(&one).await.0, StatusCode::NOT_FOUND);
    let missing = format!("{}/TimeZoneOverrides/TZ{}.json", f.base(), "0".repeat(32));
    assert_eq!(f.request(Method::DELETE, &missing, None).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn calls_create_takes_the_quiet_hours_of_the_request() {
    let f = fixture().await;
    let uri = format!("{}/Calls.json", f.base());
    let base = "To=%2B33142685300&From=%2B15550001111&Url=http%3A%2F%2Fa.test%2Fv";
    let form = format!("{base}&QuietHoursPolicy=Refuse&CallingWindow=mon-fri%2008%3A00-20%3A00");
    let (status, body) = f.request(Method::POST, &uri, Some(&form)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let call = f.hooks.1.lock().unwrap().pop().unwrap();
    assert_eq!(
        call.quiet_hours,
        QuietHours { policy: Some("refuse".into()), hours: Some("mon-fri 08:00-20:00".into()), live: false }
    );
    let (_, _) = f.request(Method::POST, &uri, Some(base)).await;
    assert_eq!(f.hooks.1.lock().unwrap().pop().unwrap().quiet_hours, QuietHours::default());
    for extra in ["&QuietHoursPolicy=later", "&CallingWindow=mon%2009%3A00"] {
        let (status, body) = f.request(Method::POST, &uri, Some(&format!("{base}{extra}"))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_twilio_error(&body, 20001, 400);
    }
    // Stored with a deferred call and read back when it is placed.
    let json = serde_json::to_string(&call).unwrap();
    assert_eq!(serde_json::from_str::<CreateCall>(&json).unwrap(), call);
}

impl Fixture {
    async fn bulk(&self, query: &str, content_type: &str, body: String) -> (StatusCode, Value) {
        let uri = format!("{}/IncomingPhoneNumbers/Bulk.json{query}", self.base());
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::AUTHORIZATION, basic(self.account.as_str(), TOKEN))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let (status, _, bytes) = self.send(req).await;
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

#[tokio::test]
async fn bulk_numbers_are_added_with_shared_and_own_settings_and_bad_lines_reported() {
    let f = fixture().await;
    let list = format!("{}/IncomingPhoneNumbers.json", f.base());
    f.request(Method::POST, &list, Some("PhoneNumber=%2B14155550003")).await;
    let created_before = f.hooks.0.load(Ordering::SeqCst);

    // Over 64 KiB, the form limit: this route has its own.
    let mut body = String::from("PhoneNumber\n");
    for i in 0..6000 {
        body.push_str(&format!("+1555100{i:04}\n"));
    }
    body.push_str("{\"PhoneNumber\": \"+14155550001\", \"VoiceUrl\": \"https://app.example/own\", \"FriendlyName\": \"Ad 1\"}\n");
    body.push_str("+14155550003\n"); // exists already
    body.push_str("not a number\n");
    body.push_str("\n");
    body.push_str("{\"PhoneNumber\": \"+14155550002\", \"Colour\": \"red\"}\n");
    body.push_str("+1 (555) 100-0000\n"); // twice in the request
    body.push_str("{\"PhoneNumber\": \"+14155550004\", \"VoiceMethod\": \"PUT\"}\n");
    assert!(body.len() > crate::BODY_LIMIT);
    let (status, out) = f
        .bulk("?VoiceUrl=https%3A%2F%2Fapp.example%2Fvoice&VoiceMethod=GET", "text/plain", body)
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["created"], 6001);
    assert_eq!(out["failed"], 5);
    let errors: Vec<(u64, u64)> = out["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["line"].as_u64().unwrap(), e["code"].as_u64().unwrap()))
        .collect();
    assert_eq!(errors, vec![(6003, 21422), (6004, 21421), (6006, 20001), (6007, 21422), (6008, 20001)]);
    assert_eq!(out["errors"][0]["phone_number"], "+14155550003");
    assert_eq!(f.hooks.0.load(Ordering::SeqCst), created_before + 6001, "one hook call per added number");

    let (_, page) = f.get(&format!("{list}?PhoneNumber=%2B15551000042")).await;
    let n = &page["incoming_phone_numbers"][0];
    assert_eq!((n["voice_url"].as_str(), n["voice_method"].as_str()), (Some("https://app.example/voice"), Some("GET")));
    assert_eq!(n["friendly_name"], "+15551000042");
    let (_, page) = f.get(&format!("{list}?PhoneNumber=%2B14155550001")).await;
    let n = &page["incoming_phone_numbers"][0];
    assert_eq!((n["voice_url"].as_str(), n["friendly_name"].as_str()), (Some("https://app.example/own"), Some("Ad 1")));

    // Refused as a whole: a bad shared setting, an unknown one, a form body, too many lines.
    let (status, out) = f.bulk("?VoiceUrl=ftp%3A%2F%2Fx", "text/plain", "+15552000000\n".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&out, 21205, 400);
    let (status, out) = f.bulk("?Colour=red", "text/plain", "+15552000000\n".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&out, 20001, 400);
    let (status, _) = f.bulk("", "application/x-www-form-urlencoded", "PhoneNumber=%2B15552000000".into()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let many: String = (0..100_001).map(|i| format!("+1556{i:07}\n")).collect();
    let (status, out) = f.bulk("", "text/plain", many).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_twilio_error(&out, 20001, 400);
    assert_eq!(f.get(&format!("{list}?PhoneNumber=%2B15552000000")).await.1["incoming_phone_numbers"], serde_json::json!([]));
}
