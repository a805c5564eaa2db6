//! Trunks and toll-fraud limits end to end in one process: the REST API creates calls, the node
//! sends INVITEs and REGISTERs over real loopback UDP to small hand-written gateways (one that
//! refuses with 503, one that stays silent, one that challenges with digest auth through the
//! `sip` crate's own challenger), and the store is a temporary SQLite file.
//!
//! The fraud policy is process-wide, so only `fraud_limits_refuse_and_queue` installs one, and
//! only with entries for its own accounts.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use model::{AccountSid, CallSid, CallStatus};
use tokio::net::UdpSocket;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

struct Fixture {
    dir: std::path::PathBuf,
    store: store::Store,
    account: AccountSid,
    node: node::Node,
    http: reqwest::Client,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(rtp_base: u16, trunks: Vec<node::trunk::Trunk>) -> Fixture {
    fixture_for(rtp_base, trunks, AccountSid::generate()).await
}

async fn fixture_for(
    rtp_base: u16,
    trunks: Vec<node::trunk::Trunk>,
    account: AccountSid,
) -> Fixture {
    let dir = std::env::temp_dir().join(format!("dialtone-trunks-{}", CallSid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = store::Store::open(&format!("sqlite://{}/db.sqlite", dir.display()))
        .await
        .unwrap();
    store.ensure_account(&account, TOKEN, "test").await.unwrap();
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
        trunks,
        console_crm_url: None,
        smscs: Vec::new(),
        pricing: None,
        max_calls: None,
        http_tls: None,
    };
    let node = node::Node::start(config, store.clone()).await.unwrap();
    Fixture {
        dir,
        store,
        account,
        node,
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

    async fn call(&self, to: &str) -> CallSid {
        let twiml = "<Response><Pause length=\"30\"/></Response>";
        let (code, body) = self
            .api(
                "/Calls.json",
                &[("To", to), ("From", "+15550001111"), ("Twiml", twiml)],
            )
            .await;
        assert_eq!(code, 201, "{body}");
        body["sid"].as_str().unwrap().parse().unwrap()
    }

    async fn status(&self, sid: &CallSid) -> CallStatus {
        self.store
            .call(&self.account, sid)
            .await
            .unwrap()
            .unwrap()
            .status
    }

    async fn wait_status(&self, sid: &CallSid, status: CallStatus) {
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let now = self.status(sid).await;
            if now == status {
                return;
            }
            assert!(Instant::now() < deadline, "call is {now:?}, not {status:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A hand-written gateway on a loopback UDP socket.
struct Gateway {
    socket: UdpSocket,
    /// (Call-ID, CSeq number, method) of the requests returned already: a retransmission is not
    /// a new request (an ACK shares its INVITE's CSeq number, hence the method).
    seen: std::sync::Mutex<std::collections::HashSet<(String, u32, String)>>,
}

impl Gateway {
    async fn bind() -> Gateway {
        Gateway {
            socket: UdpSocket::bind("127.0.0.1:0").await.unwrap(),
            seen: Default::default(),
        }
    }

    fn uri(&self) -> String {
        format!("sip:{}", self.socket.local_addr().unwrap())
    }

    /// The next request of `method` and where it came from, skipping others (ACKs, retransmissions).
    async fn expect(&self, method: sip::Method, wait: Duration) -> (sip::Request, SocketAddr) {
        let what = format!("{method:?}");
        self.try_expect(method, wait)
            .await
            .unwrap_or_else(|| panic!("no {what} within {wait:?}"))
    }

    async fn try_expect(
        &self,
        method: sip::Method,
        wait: Duration,
    ) -> Option<(sip::Request, SocketAddr)> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (n, from) = tokio::time::timeout(left, self.socket.recv_from(&mut buf))
                .await
                .ok()?
                .ok()?;
            if let Ok(sip::Message::Request(r)) = sip::parse_message(&buf[..n]) {
                let key = (
                    r.call_id().unwrap_or_default().to_owned(),
                    r.cseq().map_or(0, |(n, _)| n),
                    format!("{:?}", r.method),
                );
                // A node whose first copy was slow to be answered (a loaded machine) sends it
                // again: that is not the next request.
                if r.method == method && self.seen.lock().unwrap().insert(key) {
                    return Some((r, from));
                }
            }
        }
    }

    async fn send(&self, response: sip::Response, to: SocketAddr) {
        self.socket
            .send_to(&sip::Message::Response(response).to_bytes(), to)
            .await
            .unwrap();
    }

    async fn reply(&self, request: &sip::Request, to: SocketAddr, status: u16, reason: &str) {
        let mut r = sip::Response::from_request(request, status, reason);
        r.set_to_tag("gw-tag");
        self.send(r, to).await;
    }

    /// 200 OK with an SDP answer.
    async fn answer(&self, request: &sip::Request, to: SocketAddr) {
        let mut ok = sip::Response::from_request(request, 200, "OK");
        ok.set_to_tag("gw-tag");
        ok.headers.push(
            "Contact",
            &format!("<sip:gw@{}>", self.socket.local_addr().unwrap()),
        );
        let sdp = "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40999 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
        ok.set_body("application/sdp", sdp.as_bytes().to_vec());
        self.send(ok, to).await;
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_after_503_then_digest_auth_on_the_second_gateway() {
    let (gw1, gw2) = (Gateway::bind().await, Gateway::bind().await);
    let trunk = node::trunk::Trunk::from_uri("carrier", &gw1.uri(), vec!["+1".into()])
        .unwrap()
        .with_gateway(&gw2.uri())
        .unwrap()
        .with_credentials("acme", "s3cret", None);
    let f = fixture(42000, vec![trunk]).await;
    let sid = f.call("+15550002222").await;

    let (invite1, node_addr) = gw1
        .expect(sip::Method::Invite, Duration::from_secs(5))
        .await;
    assert!(
        invite1.uri.starts_with("sip:+15550002222@"),
        "{}",
        invite1.uri
    );
    gw1.reply(&invite1, node_addr, 503, "Service Unavailable")
        .await;

    let (invite2, node_addr) = gw2
        .expect(sip::Method::Invite, Duration::from_secs(5))
        .await;
    assert_ne!(
        invite2.call_id(),
        invite1.call_id(),
        "a new call to the next gateway"
    );
    assert!(invite2.headers.get("Authorization").is_none());
    let challenger = sip::auth::DigestChallenger::new("carrier.example", [7; 32]);
    let mut challenge = challenger.challenge(unix_now(), &invite2, false);
    challenge.set_to_tag("gw-tag");
    gw2.send(challenge, node_addr).await;

    let (authed, node_addr) = gw2
        .expect(sip::Method::Invite, Duration::from_secs(5))
        .await;
    assert_eq!(authed.call_id(), invite2.call_id());
    assert_eq!(authed.cseq().map(|c| c.0), invite2.cseq().map(|c| c.0 + 1));
    let lookup = |user: &str, _realm: &str| {
        (user == "acme").then(|| sip::auth::Credential::Password("s3cret".into()))
    };
    let ok = challenger
        .verify(unix_now(), &authed, lookup)
        .expect("the retried INVITE carries valid credentials");
    assert_eq!(ok.username, "acme");
    gw2.reply(&authed, node_addr, 180, "Ringing").await;
    f.wait_status(&sid, CallStatus::Ringing).await;
    gw2.answer(&authed, node_addr).await;
    let (ack, _) = gw2.expect(sip::Method::Ack, Duration::from_secs(3)).await;
    assert_eq!(ack.cseq().map(|c| c.0), authed.cseq().map(|c| c.0));
    f.wait_status(&sid, CallStatus::InProgress).await;

    let (code, _) = f
        .api(&format!("/Calls/{sid}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(code, 200);
    let (bye, node_addr) = gw2.expect(sip::Method::Bye, Duration::from_secs(3)).await;
    gw2.reply(&bye, node_addr, 200, "OK").await;
    f.wait_status(&sid, CallStatus::Completed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_gateway_is_given_up_after_the_failover_timeout() {
    let (silent, gw2) = (Gateway::bind().await, Gateway::bind().await);
    let trunk = node::trunk::Trunk::from_uri("carrier", &silent.uri(), vec![])
        .unwrap()
        .with_gateway(&gw2.uri())
        .unwrap()
        .with_gateway_timeout(Duration::from_millis(600));
    let f = fixture(42200, vec![trunk]).await;
    let sid = f.call("+15550003333").await;
    silent
        .expect(sip::Method::Invite, Duration::from_secs(5))
        .await;
    let started = Instant::now();
    let (invite, node_addr) = gw2
        .expect(sip::Method::Invite, Duration::from_secs(5))
        .await;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_millis(2000),
        "{waited:?}"
    );
    gw2.reply(&invite, node_addr, 486, "Busy Here").await;
    // Busy is an answer from the callee, not a gateway fault: no more failover, the call is busy.
    f.wait_status(&sid, CallStatus::Busy).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gateway_failing_fails_the_call_and_a_wrong_password_is_not_retried_forever() {
    let gw = Gateway::bind().await;
    let trunk = node::trunk::Trunk::from_uri("carrier", &gw.uri(), vec![])
        .unwrap()
        .with_credentials("acme", "wrong", None);
    let f = fixture(42400, vec![trunk]).await;
    let sid = f.call("+15550004444").await;
    let challenger = sip::auth::DigestChallenger::new("carrier.example", [9; 32]);
    for _ in 0..2 {
        let (invite, node_addr) = gw.expect(sip::Method::Invite, Duration::from_secs(5)).await;
        let mut challenge = challenger.challenge(unix_now(), &invite, false);
        challenge.set_to_tag("gw-tag");
        gw.send(challenge, node_addr).await;
    }
    f.wait_status(&sid, CallStatus::Failed).await;
    assert!(
        gw.try_expect(sip::Method::Invite, Duration::from_millis(500))
            .await
            .is_none(),
        "one retry per challenge only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trunk_calls_per_second_spaces_invites_in_order() {
    let gw = Gateway::bind().await;
    let trunk = node::trunk::Trunk::from_uri("carrier", &gw.uri(), vec![])
        .unwrap()
        .with_calls_per_second(2.0)
        .unwrap();
    let f = fixture(42600, vec![trunk]).await;
    let numbers = ["+15550005001", "+15550005002", "+15550005003"];
    for n in numbers {
        f.call(n).await;
    }
    let mut seen = Vec::new();
    for _ in numbers {
        let (invite, node_addr) = gw.expect(sip::Method::Invite, Duration::from_secs(5)).await;
        seen.push((Instant::now(), invite.uri.clone()));
        gw.reply(&invite, node_addr, 486, "Busy Here").await;
    }
    for (i, n) in numbers.iter().enumerate() {
        assert!(
            seen[i].1.starts_with(&format!("sip:{n}@")),
            "in order: {seen:?}"
        );
    }
    let spread = seen[2].0 - seen[0].0;
    assert!(
        spread >= Duration::from_millis(850),
        "3 calls at 2 per second take about 1 s, took {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_with_the_carrier_answers_the_challenge_and_refreshes() {
    let registrar = Gateway::bind().await;
    let trunk = node::trunk::Trunk::from_uri("carrier", &registrar.uri(), vec![])
        .unwrap()
        .with_credentials("acme", "s3cret", Some("carrier.example"))
        .with_register(600, Duration::from_millis(500))
        .unwrap();
    let f = fixture(42800, vec![trunk]).await;
    let challenger = sip::auth::DigestChallenger::new("carrier.example", [3; 32]);
    let lookup = |user: &str, _realm: &str| {
        (user == "acme").then(|| sip::auth::Credential::Password("s3cret".into()))
    };

    let (first, node_addr) = registrar
        .expect(sip::Method::Register, Duration::from_secs(5))
        .await;
    assert_eq!(first.headers.get("Expires"), Some("600"));
    assert!(first.to().unwrap().uri.starts_with("sip:acme@"));
    let contact = first.headers.get("Contact").unwrap().to_owned();
    assert!(
        contact.contains(&f.node.sip_addr.port().to_string()),
        "{contact}"
    );
    registrar
        .send(challenger.challenge(unix_now(), &first, false), node_addr)
        .await;

    let (authed, node_addr) = registrar
        .expect(sip::Method::Register, Duration::from_secs(5))
        .await;
    challenger
        .verify(unix_now(), &authed, lookup)
        .expect("valid REGISTER credentials");
    assert_eq!(authed.call_id(), first.call_id());
    let mut ok = sip::Response::from_request(&authed, 200, "OK");
    // The carrier grants 2 s only: we must come back well before it runs out.
    ok.headers.push("Contact", &format!("{contact};expires=2"));
    registrar.send(ok, node_addr).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while !matches!(
        f.node.shared.config.trunks[0].registration(),
        node::trunk::RegistrationState::Registered { .. }
    ) {
        assert!(Instant::now() < deadline, "registration state not updated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let (refresh, node_addr) = registrar
        .expect(sip::Method::Register, Duration::from_secs(3))
        .await;
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "refresh before expiry"
    );
    assert_eq!(refresh.call_id(), first.call_id());
    assert!(refresh.cseq().unwrap().0 > authed.cseq().unwrap().0);

    // A failure is retried after the retry delay.
    registrar
        .reply(&refresh, node_addr, 503, "Service Unavailable")
        .await;
    let (retry, _) = registrar
        .expect(sip::Method::Register, Duration::from_secs(3))
        .await;
    assert_eq!(retry.call_id(), first.call_id());
    assert!(matches!(
        f.node.shared.config.trunks[0].registration(),
        node::trunk::RegistrationState::Failed { status: Some(503) }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_invites_only_from_the_acl_once_one_is_set() {
    let invite_from = |socket: &UdpSocket, node: SocketAddr| {
        let local = socket.local_addr().unwrap();
        format!(
            "INVITE sip:+15559990000@{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKacl{}\r\nMax-Forwards: 70\r\n\
             From: <sip:caller@{local}>;tag=a1\r\nTo: <sip:+15559990000@{node}>\r\nCall-ID: acl-{}@test\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:caller@{local}>\r\nContent-Length: 0\r\n\r\n",
            local.port(),
            local.port()
        )
    };
    async fn final_status(socket: &UdpSocket) -> u16 {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
            if let Ok(sip::Message::Response(r)) = sip::parse_message(&buf[..n]) {
                if r.status() >= 200 {
                    return r.status();
                }
            }
        }
    }
    // The gateway's address is not ours (nothing is sent to it): only the ACL can let us in.
    let closed = node::trunk::Trunk::from_uri("carrier", "sip:127.0.0.2:5999", vec![])
        .unwrap()
        .with_inbound_acl(&["192.0.2.0/24".into()])
        .unwrap();
    let f = fixture(43000, vec![closed]).await;
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    caller
        .send_to(
            invite_from(&caller, f.node.sip_addr).as_bytes(),
            f.node.sip_addr,
        )
        .await
        .unwrap();
    assert_eq!(final_status(&caller).await, 403);

    let open = node::trunk::Trunk::from_uri("carrier", "sip:127.0.0.2:5999", vec![])
        .unwrap()
        .with_inbound_acl(&["127.0.0.0/8".into()])
        .unwrap();
    let f = fixture(43200, vec![open]).await;
    caller
        .send_to(
            invite_from(&caller, f.node.sip_addr).as_bytes(),
            f.node.sip_addr,
        )
        .await
        .unwrap();
    // Let in, then refused by routing: nobody owns the number.
    assert_eq!(final_status(&caller).await, 404);
}

/// Adds SIP user `username` to the fixture's account (its default domain takes any host).
async fn sip_user(f: &Fixture, username: &str, password: &str) {
    let now = chrono::Utc::now();
    let list = store::sip::CredentialListRecord {
        sid: model::CredentialListSid::generate(),
        account_sid: f.account,
        friendly_name: "agents".into(),
        date_created: now,
        date_updated: now,
    };
    f.store.create_credential_list(&list).await.unwrap();
    let cred = store::sip::CredentialRecord {
        sid: model::CredentialSid::generate(),
        account_sid: f.account,
        credential_list_sid: list.sid,
        username: username.into(),
        date_created: now,
        date_updated: now,
    };
    assert!(f.store.create_credential(&cred, password).await.unwrap());
}

/// The final response `socket` gets next.
async fn final_response(socket: &UdpSocket) -> sip::Response {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf))
            .await
            .expect("no final response")
            .unwrap();
        if let Ok(sip::Message::Response(r)) = sip::parse_message(&buf[..n]) {
            if r.status() >= 200 {
                return r;
            }
        }
    }
}

/// REGISTERs `user` from `socket` with digest auth (challenge, then credentials); the final status.
async fn register(
    socket: &UdpSocket,
    node: SocketAddr,
    user: &str,
    password: &str,
    expires: u32,
    cseq: u32,
) -> u16 {
    let local = socket.local_addr().unwrap();
    let uri = format!("sip:{node}");
    let request = |cseq: u32, auth: Option<&str>| {
        format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{node}>;tag=r1\r\nTo: <sip:{user}@{node}>\r\nCall-ID: reg-{}@test\r\nCSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@{local}>\r\nExpires: {expires}\r\n{}Content-Length: 0\r\n\r\n",
            local.port(),
            auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default()
        )
    };
    socket
        .send_to(request(cseq, None).as_bytes(), node)
        .await
        .unwrap();
    let challenge = final_response(socket).await;
    assert_eq!(challenge.status(), 401);
    let value = challenge
        .headers
        .get("WWW-Authenticate")
        .unwrap()
        .to_owned();
    let auth = sip::auth::authorize(
        &value,
        &sip::Method::Register,
        &uri,
        user,
        password,
        "c0ffee",
        1,
    )
    .unwrap();
    socket
        .send_to(request(cseq + 1, Some(&auth)).as_bytes(), node)
        .await
        .unwrap();
    final_response(socket).await.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_phone_is_let_in_past_the_inbound_acl_while_its_binding_lives() {
    let closed = node::trunk::Trunk::from_uri("carrier", "sip:127.0.0.2:5999", vec![])
        .unwrap()
        .with_inbound_acl(&["192.0.2.0/24".into()])
        .unwrap();
    let f = fixture(44000, vec![closed]).await;
    sip_user(&f, "alice", "Correct-Horse-9").await;
    let node = f.node.sip_addr;
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let invite = |n: u32| {
        let local = phone.local_addr().unwrap();
        format!(
            "INVITE sip:+15559990000@{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreginv{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:alice@{node}>;tag=i{n}\r\nTo: <sip:+15559990000@{node}>\r\nCall-ID: reginv-{n}@test\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:alice@{local}>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    phone.send_to(invite(1).as_bytes(), node).await.unwrap();
    assert_eq!(
        final_response(&phone).await.status(),
        403,
        "not registered: the ACL refuses"
    );

    assert_eq!(
        register(&phone, node, "alice", "Correct-Horse-9", 600, 1).await,
        200
    );
    phone.send_to(invite(2).as_bytes(), node).await.unwrap();
    // Let in, then refused by routing: nobody owns the number.
    assert_eq!(
        final_response(&phone).await.status(),
        404,
        "registered: let in"
    );

    // Unregistered (Expires: 0): refused again.
    assert_eq!(
        register(&phone, node, "alice", "Correct-Horse-9", 0, 3).await,
        200
    );
    phone.send_to(invite(3).as_bytes(), node).await.unwrap();
    assert_eq!(
        final_response(&phone).await.status(),
        403,
        "unregistered: the ACL refuses again"
    );
}

/// The form parameters of each webhook request an app received.
type Seen = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// An app that refuses every call as busy and remembers what each webhook request carried.
async fn busy_app(seen: Seen) -> SocketAddr {
    use axum::extract::{Form, State};
    async fn voice(State(seen): State<Seen>, Form(p): Form<Vec<(String, String)>>) -> &'static str {
        seen.lock().unwrap().push(p);
        r#"<Response><Reject reason="busy"/></Response>"#
    }
    let router = axum::Router::new()
        .route("/voice", axum::routing::post(voice))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_call_to_our_registered_contact_is_routed_by_the_to_number() {
    let carrier = Gateway::bind().await;
    let trunk = node::trunk::Trunk::from_uri("carrier", &carrier.uri(), vec![])
        .unwrap()
        .with_credentials("acme", "s3cret", Some("carrier.example"))
        .with_register(600, Duration::from_millis(500))
        .unwrap()
        .with_inbound_acl(&["127.0.0.1/32".into()])
        .unwrap();
    let f = fixture(44200, vec![trunk]).await;
    let seen: Seen = Arc::default();
    let hook = busy_app(seen.clone()).await;
    // Through the API, as numbers reach the running node's routing index.
    let voice_url = format!("http://{hook}/voice");
    let (status, body) = f
        .api(
            "/IncomingPhoneNumbers.json",
            &[("PhoneNumber", "+15550007777"), ("FriendlyName", "ours"), ("VoiceUrl", &voice_url)],
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Dialtone registers with the carrier: the carrier keeps its Contact.
    let (register, node_addr) = carrier
        .expect(sip::Method::Register, Duration::from_secs(5))
        .await;
    let contact = register.contact().expect("REGISTER without Contact").uri;
    assert!(contact.starts_with("sip:acme@"), "{contact}");
    let mut ok = sip::Response::from_request(&register, 200, "OK");
    ok.headers
        .push("Contact", &format!("<{contact}>;expires=600"));
    carrier.send(ok, node_addr).await;

    // The carrier calls that Contact; only To holds the number the caller dialled. `+` may be
    // missing there (carriers write national or bare E.164).
    let invite = |n: u32, to: &str| {
        let local = carrier.socket.local_addr().unwrap();
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40998 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
        format!(
            "INVITE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcarrier{n}\r\nMax-Forwards: 70\r\n\
             From: <sip:+15557654321@carrier.example>;tag=c{n}\r\nTo: <sip:{to}@carrier.example>\r\n\
             Call-ID: carrier-{n}@test\r\nCSeq: 1 INVITE\r\nContact: <sip:gw@{local}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    async fn final_status(gw: &Gateway) -> u16 {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(5), gw.socket.recv_from(&mut buf))
                    .await
                    .expect("no final response")
                    .unwrap();
            if let Ok(sip::Message::Response(r)) = sip::parse_message(&buf[..n]) {
                if r.status() >= 200 && r.cseq().is_some_and(|(_, m)| m == sip::Method::Invite) {
                    return r.status();
                }
            }
        }
    }
    carrier
        .socket
        .send_to(invite(1, "15550007777").as_bytes(), f.node.sip_addr)
        .await
        .unwrap();
    // Routed to the number's app, whose <Reject reason="busy"/> answers 486.
    assert_eq!(final_status(&carrier).await, 486);
    let params = seen
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("the app was not asked");
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("To").as_deref(), Some("+15550007777"), "{params:?}");
    assert_eq!(get("From").as_deref(), Some("+15557654321"), "{params:?}");

    // A To number nobody owns is not found, like any unknown number.
    carrier
        .socket
        .send_to(invite(2, "+15550008888").as_bytes(), f.node.sip_addr)
        .await
        .unwrap();
    assert_eq!(final_status(&carrier).await, 404);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fraud_limits_refuse_and_queue() {
    let gw = Gateway::bind().await;
    let (limited, paced) = (AccountSid::generate(), AccountSid::generate());
    let mut policy = node::fraud::Policy::default();
    policy.accounts.insert(
        limited,
        node::fraud::AccountLimits {
            allowed_prefixes: Some(vec!["+44".into()]),
            calls_per_second: None,
        },
    );
    policy.accounts.insert(
        paced,
        node::fraud::AccountLimits {
            allowed_prefixes: None,
            calls_per_second: Some(1.0),
        },
    );
    node::fraud::configure(policy);
    let trunk = || node::trunk::Trunk::from_uri("carrier", &gw.uri(), vec![]).unwrap();

    let f = fixture_for(43400, vec![trunk()], limited).await;
    let (code, body) = f
        .api(
            "/Calls.json",
            &[
                ("To", "+15550006666"),
                ("From", "+15550001111"),
                ("Twiml", "<Response/>"),
            ],
        )
        .await;
    assert_eq!((code, body["code"].as_u64()), (400, Some(21215)), "{body}");
    assert_eq!(
        body["message"],
        "Account not authorized to call +15550006666. Perhaps you need to enable some international permissions."
    );
    assert!(gw
        .try_expect(sip::Method::Invite, Duration::from_millis(300))
        .await
        .is_none());
    let sid = f.call("+447700900123").await;
    let (invite, node_addr) = gw.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    gw.reply(&invite, node_addr, 486, "Busy Here").await;
    f.wait_status(&sid, CallStatus::Busy).await;

    // One call per second: the second and third wait in `queued` and go out in order.
    let f = fixture_for(43600, vec![trunk()], paced).await;
    let started = Instant::now();
    let sids = [
        f.call("+15550007001").await,
        f.call("+15550007002").await,
        f.call("+15550007003").await,
    ];
    let (first, node_addr) = gw.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    gw.reply(&first, node_addr, 180, "Ringing").await;
    f.wait_status(&sids[0], CallStatus::Ringing).await;
    assert_eq!(f.status(&sids[2]).await, CallStatus::Queued);
    let mut order = vec![first.uri.clone()];
    for _ in 0..2 {
        let (invite, node_addr) = gw.expect(sip::Method::Invite, Duration::from_secs(5)).await;
        order.push(invite.uri.clone());
        gw.reply(&invite, node_addr, 486, "Busy Here").await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    for (uri, n) in order
        .iter()
        .zip(["+15550007001", "+15550007002", "+15550007003"])
    {
        assert!(uri.starts_with(&format!("sip:{n}@")), "{order:?}");
    }
    // A queued call can be cancelled before it goes out.
    let queued = [f.call("+15550007004").await, f.call("+15550007005").await];
    let (code, _) = f
        .api(
            &format!("/Calls/{}.json", queued[1]),
            &[("Status", "canceled")],
        )
        .await;
    assert_eq!(code, 200);
    f.wait_status(&queued[1], CallStatus::Canceled).await;
    let (invite, node_addr) = gw.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    assert!(invite.uri.starts_with("sip:+15550007004@"));
    gw.reply(&invite, node_addr, 486, "Busy Here").await;
    assert!(
        gw.try_expect(sip::Method::Invite, Duration::from_millis(1500))
            .await
            .is_none(),
        "the cancelled call never went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_digits_after_answer_and_the_whole_call_recorded() {
    let gw = Gateway::bind().await;
    let trunk = node::trunk::Trunk::from_uri("carrier", &gw.uri(), vec![]).unwrap();
    let f = fixture(43800, vec![trunk]).await;
    let twiml = "<Response><Say>Recorded call.</Say><Pause length=\"30\"/></Response>";
    let (code, body) = f
        .api(
            "/Calls.json",
            &[
                ("To", "+15550008888"),
                ("From", "+15550001111"),
                ("Twiml", twiml),
                ("SendDigits", "19#"),
                ("Record", "true"),
            ],
        )
        .await;
    assert_eq!(code, 201, "{body}");
    let sid: CallSid = body["sid"].as_str().unwrap().parse().unwrap();
    let (invite, node_addr) = gw.expect(sip::Method::Invite, Duration::from_secs(5)).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut ok = sip::Response::from_request(&invite, 200, "OK");
    ok.set_to_tag("gw-tag");
    ok.headers.push(
        "Contact",
        &format!("<sip:gw@{}>", gw.socket.local_addr().unwrap()),
    );
    let sdp = format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n",
        rtp.local_addr().unwrap().port()
    );
    ok.set_body("application/sdp", sdp.into_bytes());
    gw.send(ok, node_addr).await;
    gw.expect(sip::Method::Ack, Duration::from_secs(3)).await;

    // The digits arrive as RFC 4733 events, in order, once each.
    let mut receiver = rtp::dtmf::DtmfReceiver::new();
    let mut digits = String::new();
    let mut buf = vec![0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(5);
    while digits.len() < 3 && Instant::now() < deadline {
        let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_secs(1), rtp.recv_from(&mut buf)).await
        else {
            continue;
        };
        if let Ok(packet) = rtp::parse_rtp(&buf[..n]) {
            if packet.header.payload_type == 101 {
                if let Some(d) = receiver.handle_packet(&packet.header, packet.payload) {
                    digits.push(d);
                }
            }
        }
    }
    assert_eq!(digits, "19#");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, _) = f
        .api(&format!("/Calls/{sid}.json"), &[("Status", "completed")])
        .await;
    assert_eq!(code, 200);
    let (bye, node_addr) = gw.expect(sip::Method::Bye, Duration::from_secs(3)).await;
    gw.reply(&bye, node_addr, 200, "OK").await;
    f.wait_status(&sid, CallStatus::Completed).await;

    // One mono recording of the call, about as long as the call was up.
    let url = format!(
        "http://{}/2010-04-01/Accounts/{}/Calls/{sid}/Recordings.json",
        f.node.http_addr, f.account
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let recordings = loop {
        let text = f
            .http
            .get(&url)
            .basic_auth(f.account.as_str(), Some(TOKEN))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        let list = body["recordings"].as_array().cloned().unwrap_or_default();
        if !list.is_empty() || Instant::now() > deadline {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let r = &recordings[0];
    let duration: u32 = r["duration"]
        .as_str()
        .map(|d| d.parse().unwrap())
        .or(r["duration"].as_u64().map(|d| d as u32))
        .unwrap();
    assert!((2..=5).contains(&duration), "{r}");
    assert_eq!(r["channels"].as_u64(), Some(1), "{r}");
    assert_eq!(r["source"], "OutboundAPI", "{r}");
    let rec_sid = r["sid"].as_str().unwrap();
    let wav = f
        .dir
        .join("recordings")
        .join(f.account.as_str())
        .join(sid.as_str())
        .join(format!("{rec_sid}.wav"));
    assert!(
        std::fs::metadata(&wav)
            .map(|m| m.len() > 8000 * 2)
            .unwrap_or(false),
        "{wav:?}"
    );
}
