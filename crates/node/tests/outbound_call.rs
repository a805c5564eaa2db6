//! Outbound calls end to end inside one process: the REST API creates the call, the node sends
//! the INVITE through a trunk to a raw UDP UAS, a real HTTP app serves the TwiML and receives
//! the status callbacks, and the store is a temporary SQLite file.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, State};
use axum::routing::post;
use axum::Router;
use model::{AccountSid, CallSid, CallStatus};
use tokio::net::UdpSocket;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

async fn app(seen: Seen) -> SocketAddr {
    async fn hook(
        State(seen): State<Seen>,
        Path(path): Path<String>,
        Form(p): Form<Vec<(String, String)>>,
    ) -> &'static str {
        seen.lock().unwrap().push((path.clone(), p));
        match path.as_str() {
            "voice" => r#"<Response><Say>Hello from the app.</Say><Pause length="30"/></Response>"#,
            "redirected" => r#"<Response><Pause length="30"/></Response>"#,
            _ => "",
        }
    }
    let app = Router::new().route("/{path}", post(hook)).with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

struct Fixture {
    dir: std::path::PathBuf,
    store: store::Store,
    account: AccountSid,
    node: node::Node,
    uas: UdpSocket,
    hook: SocketAddr,
    seen: Seen,
    http: reqwest::Client,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(rtp_base: u16) -> Fixture {
    let dir = std::env::temp_dir().join(format!("dialtone-outbound-{}", CallSid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = store::Store::open(&format!("sqlite://{}/db.sqlite", dir.display()))
        .await
        .unwrap();
    let account = AccountSid::generate();
    store.ensure_account(&account, TOKEN, "test").await.unwrap();
    let uas = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk = node::outbound::Trunk::from_uri(
        "test",
        &format!("sip:{}", uas.local_addr().unwrap()),
        vec!["+1".into()],
    )
    .unwrap();
    let config = node::NodeConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        sip_addr: "127.0.0.1:0".parse().unwrap(),
        advertise_ip: "127.0.0.1".parse().unwrap(),
        rtp_bind_ip: "127.0.0.1".parse().unwrap(),
        rtp_port_min: rtp_base,
        rtp_port_max: rtp_base + 99,
        recordings_dir: dir.join("recordings"),
        data_dir: dir.clone(),
        public_url: "http://127.0.0.1:1".into(),
        media_workers: 1,
        trunks: vec![trunk],
        console_crm_url: None,
        smscs: Vec::new(),
        pricing: None,
        max_calls: None,
        http_tls: None,
    };
    let node = node::Node::start(config, store.clone()).await.unwrap();
    let seen: Seen = Arc::default();
    let hook = app(seen.clone()).await;
    Fixture {
        dir,
        store,
        account,
        node,
        uas,
        hook,
        seen,
        http: reqwest::Client::new(),
    }
}

impl Fixture {
    async fn api(&self, path: &str, form: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let url = format!(
            "http://{}/2010-04-01/Accounts/{}{path}",
            self.node.http_addr, self.account
        );
        let resp = self
            .http
            .post(url)
            .basic_auth(self.account.as_str(), Some(TOKEN))
            .form(form)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.hook)
    }

    async fn recv(&self, wait: Duration) -> Option<sip::Message> {
        let mut buf = vec![0u8; 65536];
        let (n, _) = tokio::time::timeout(wait, self.uas.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        sip::parse_message(&buf[..n]).ok()
    }

    /// The next request of `method`, skipping retransmissions of others.
    async fn expect(&self, method: sip::Method, wait: Duration) -> sip::Request {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left).await {
                Some(sip::Message::Request(r)) if r.method == method => return r,
                Some(_) => continue,
                None => panic!("no {method:?} within {wait:?}"),
            }
        }
    }

    async fn send(&self, response: sip::Response) {
        self.uas
            .send_to(
                &sip::Message::Response(response).to_bytes(),
                self.node.sip_addr,
            )
            .await
            .unwrap();
    }

    fn reply(&self, request: &sip::Request, status: u16, reason: &str) -> sip::Response {
        let mut r = sip::Response::from_request(request, status, reason);
        r.set_to_tag("uas-tag");
        r
    }

    async fn wait_status(&self, sid: &CallSid, status: CallStatus) -> model::CallRecord {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let rec = self.store.call(&self.account, sid).await.unwrap().unwrap();
            if rec.status == status {
                return rec;
            }
            assert!(
                Instant::now() < deadline,
                "call is {:?}, not {status:?}",
                rec.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn wait_seen(&self, path: &str, count: usize) -> Vec<Vec<(String, String)>> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got: Vec<_> = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| p == path)
                .map(|(_, v)| v.clone())
                .collect();
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "/{path} seen {} times; all: {:?}",
                got.len(),
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn no_ports_leaked(&self) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.node.shared.media.ports_in_use() != 0 || !self.node.shared.calls.is_empty() {
            assert!(
                Instant::now() < deadline,
                "ports {} calls {}",
                self.node.shared.media.ports_in_use(),
                self.node.shared.calls.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn uas_sdp(rtp_port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_runs_its_twiml_reports_progress_in_order_and_follows_updates() {
    let f = fixture(41200).await;
    let (voice, status_cb) = (f.url("voice"), f.url("status"));
    let (code, body) = f
        .api(
            "/Calls.json",
            &[
                ("To", "+15550002222"),
                ("From", "+15550001111"),
                ("Url", &voice),
                ("StatusCallback", &status_cb),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "ringing"),
                ("StatusCallbackEvent", "answered"),
                ("StatusCallbackEvent", "completed"),
            ],
        )
        .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"], "queued");
    let sid: CallSid = body["sid"].as_str().unwrap().parse().unwrap();

    let invite = f.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    assert!(
        invite.uri.starts_with("sip:+15550002222@"),
        "{}",
        invite.uri
    );
    let offer =
        sip::sdp::SessionDescription::parse(std::str::from_utf8(&invite.body).unwrap()).unwrap();
    let offered = sip::sdp::negotiate(&offer, &[sip::sdp::Codec::Pcmu]).unwrap();
    assert_eq!(offered.telephone_event_pt, Some(101));
    assert!(invite.from().unwrap().uri.contains("+15550001111"));

    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    f.send(f.reply(&invite, 180, "Ringing")).await;
    f.wait_status(&sid, CallStatus::Ringing).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut ok = f.reply(&invite, 200, "OK");
    ok.headers.push(
        "Contact",
        &format!("<sip:uas@{}>", f.uas.local_addr().unwrap()),
    );
    ok.set_body("application/sdp", uas_sdp(rtp.local_addr().unwrap().port()));
    f.send(ok.clone()).await;
    let ack = f.expect(sip::Method::Ack, Duration::from_secs(3)).await;
    assert_eq!(ack.cseq().map(|c| c.0), invite.cseq().map(|c| c.0));
    // A retransmitted 2xx is ACKed again.
    f.send(ok).await;
    f.expect(sip::Method::Ack, Duration::from_secs(3)).await;

    // The app's document runs: its prompt reaches our RTP socket.
    let voice_req = f.wait_seen("voice", 1).await;
    assert_eq!(param(&voice_req[0], "CallStatus"), Some("in-progress"));
    assert_eq!(param(&voice_req[0], "Direction"), Some("outbound-api"));
    let mut buf = vec![0u8; 2048];
    tokio::time::timeout(Duration::from_secs(5), rtp.recv_from(&mut buf))
        .await
        .expect("no RTP from the prompt")
        .unwrap();
    let rec = f.wait_status(&sid, CallStatus::InProgress).await;
    assert!(rec.start_time.is_some());

    // A live redirect, then an end through the API.
    let redirected = f.url("redirected");
    let (code, body) = f
        .api(
            &format!("/Calls/{sid}.json"),
            &[("Url", &redirected), ("Method", "POST")],
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let r = f.wait_seen("redirected", 1).await;
    assert_eq!(param(&r[0], "CallSid"), Some(sid.as_str()));
    let (code, _) = f
        .api(&format!("/Calls/{sid}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(code, 200);
    let bye = f.expect(sip::Method::Bye, Duration::from_secs(3)).await;
    f.send(sip::Response::from_request(&bye, 200, "OK")).await;

    let rec = f.wait_status(&sid, CallStatus::Completed).await;
    let (start, end) = (rec.start_time.unwrap(), rec.end_time.unwrap());
    assert!(end >= start && rec.duration.is_some());
    // The second of ringing before the answer is not in the duration.
    assert!(rec.duration.unwrap() <= ((end - rec.date_created).num_milliseconds() / 1000) as u32);

    let callbacks = f.wait_seen("status", 4).await;
    let statuses: Vec<_> = callbacks
        .iter()
        .map(|p| param(p, "CallStatus").unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    for (i, p) in callbacks.iter().enumerate() {
        assert_eq!(param(p, "SequenceNumber"), Some(i.to_string().as_str()));
        assert_eq!(param(p, "CallbackSource"), Some("call-progress-events"));
        assert_eq!(param(p, "Direction"), Some("outbound-api"));
        assert_eq!(param(p, "To"), Some("+15550002222"));
        assert_eq!(param(p, "Caller"), Some("+15550001111"));
        assert_eq!(param(p, "AccountSid"), Some(f.account.as_str()));
        assert!(param(p, "Timestamp").is_some());
    }
    assert_eq!(
        param(&callbacks[3], "CallDuration"),
        Some(rec.duration.unwrap().to_string().as_str())
    );
    assert!(param(&callbacks[2], "CallDuration").is_none());

    // Finished: a redirect is refused, the record can be deleted.
    let (code, body) = f
        .api(&format!("/Calls/{sid}.json"), &[("Url", &redirected)])
        .await;
    assert_eq!((code, body["code"].as_u64()), (400, Some(21220)));
    f.no_ports_leaked().await;
    let url = format!(
        "http://{}/2010-04-01/Accounts/{}/Calls/{sid}.json",
        f.node.http_addr, f.account
    );
    let resp = f
        .http
        .delete(url)
        .basic_auth(f.account.as_str(), Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_callee_ends_busy_with_a_completed_callback() {
    let f = fixture(41400).await;
    let (twiml, status_cb) = ("<Response><Say>unheard</Say></Response>", f.url("status"));
    let (code, body) = f
        .api(
            "/Calls.json",
            &[
                ("To", "+15550003333"),
                ("From", "+15550001111"),
                ("Twiml", twiml),
                ("StatusCallback", &status_cb),
            ],
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let sid: CallSid = body["sid"].as_str().unwrap().parse().unwrap();
    let invite = f.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    f.send(f.reply(&invite, 486, "Busy Here")).await;
    // The transaction layer ACKs the error response.
    f.expect(sip::Method::Ack, Duration::from_secs(3)).await;
    let rec = f.wait_status(&sid, CallStatus::Busy).await;
    assert_eq!((rec.duration, rec.start_time.is_some()), (Some(0), false));
    // Only `completed` by default, as Twilio.
    let callbacks = f.wait_seen("status", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(f.seen.lock().unwrap().len(), 1);
    assert_eq!(param(&callbacks[0], "CallStatus"), Some("busy"));
    assert_eq!(param(&callbacks[0], "CallDuration"), Some("0"));
    assert_eq!(param(&callbacks[0], "SequenceNumber"), Some("0"));
    f.no_ports_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_call_is_cancelled_after_its_timeout() {
    let f = fixture(41600).await;
    let voice = f.url("voice");
    let started = Instant::now();
    let (code, body) = f
        .api(
            "/Calls.json",
            &[
                ("To", "+15550004444"),
                ("From", "+15550001111"),
                ("Url", &voice),
                ("Timeout", "2"),
            ],
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let sid: CallSid = body["sid"].as_str().unwrap().parse().unwrap();
    let invite = f.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    f.send(f.reply(&invite, 180, "Ringing")).await;
    let cancel = f.expect(sip::Method::Cancel, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(cancel.call_id(), invite.call_id());
    f.send(sip::Response::from_request(&cancel, 200, "OK"))
        .await;
    f.send(f.reply(&invite, 487, "Request Terminated")).await;
    let rec = f.wait_status(&sid, CallStatus::NoAnswer).await;
    assert_eq!(rec.duration, Some(0));
    assert!(f.seen.lock().unwrap().iter().all(|(p, _)| p != "voice"));
    f.no_ports_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_sip_uris_go_directly_and_the_far_end_can_hang_up() {
    let f = fixture(41800).await;
    let to = format!("sip:alice@{}", f.uas.local_addr().unwrap());
    let (code, body) = f
        .api(
            "/Calls.json",
            &[
                ("To", &to),
                ("From", "+15550001111"),
                ("Twiml", "<Response><Pause length=\"30\"/></Response>"),
            ],
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let sid: CallSid = body["sid"].as_str().unwrap().parse().unwrap();
    let invite = f.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    assert_eq!(invite.uri, to);
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ok = f.reply(&invite, 200, "OK");
    ok.headers.push(
        "Contact",
        &format!("<sip:alice@{}>", f.uas.local_addr().unwrap()),
    );
    ok.set_body("application/sdp", uas_sdp(rtp.local_addr().unwrap().port()));
    f.send(ok).await;
    let ack = f.expect(sip::Method::Ack, Duration::from_secs(3)).await;
    f.wait_status(&sid, CallStatus::InProgress).await;
    // Our BYE, in the dialog the 2xx made (tags swapped).
    let from = ack.headers.get("To").unwrap().to_owned();
    let to_hdr = ack.headers.get("From").unwrap().to_owned();
    let bye = format!(
        "BYE sip:x@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKbye1\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to_hdr}\r\n\
         Call-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        f.node.sip_addr,
        f.uas.local_addr().unwrap(),
        invite.call_id().unwrap()
    );
    f.uas
        .send_to(bye.as_bytes(), f.node.sip_addr)
        .await
        .unwrap();
    match f.recv(Duration::from_secs(3)).await {
        Some(sip::Message::Response(r)) => assert_eq!(r.status(), 200),
        other => panic!("no 200 for the BYE: {other:?}"),
    }
    f.wait_status(&sid, CallStatus::Completed).await;
    f.no_ports_leaked().await;
}
