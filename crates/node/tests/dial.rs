//! `<Dial>` end to end inside one process: a raw SIP caller calls a number whose app dials
//! phone numbers; the legs go through a trunk to one raw UDP UAS that answers each INVITE as
//! the test decides (busy, ringing, answer). Checks which leg is bridged (RTP relayed both
//! ways), which are cancelled, and what the app's `action` receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, State};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use model::records::PhoneNumberRecord;
use model::{AccountSid, CallDirection, CallSid, CallStatus, PhoneNumberSid};
use tokio::net::UdpSocket;

const NUMBER: &str = "+15550001000";

#[derive(Default)]
struct App {
    documents: HashMap<String, String>,
    seen: Vec<(String, Vec<(String, String)>)>,
}

type Shared = Arc<Mutex<App>>;

async fn app(state: Shared) -> SocketAddr {
    async fn hook(State(state): State<Shared>, Path(path): Path<String>, Form(p): Form<Vec<(String, String)>>) -> String {
        let mut app = state.lock().unwrap();
        app.seen.push((path.clone(), p));
        app.documents.get(&path).cloned().unwrap_or_default()
    }
    let router = Router::new().route("/{path}", post(hook)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

struct Fixture {
    dir: std::path::PathBuf,
    store: store::Store,
    account: AccountSid,
    node: node::Node,
    /// The trunk's far end: every leg's INVITE arrives here.
    uas: UdpSocket,
    caller: UdpSocket,
    caller_rtp: UdpSocket,
    app: Shared,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn fixture(rtp_base: u16, voice: &str, after: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("dialtone-dial-{}", CallSid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = store::Store::open(&format!("sqlite://{}/db.sqlite", dir.display())).await.unwrap();
    let account = AccountSid::generate();
    store.ensure_account(&account, "0123456789abcdef0123456789abcdef", "test").await.unwrap();
    let state: Shared = Arc::default();
    {
        let mut a = state.lock().unwrap();
        a.documents.insert("voice".into(), voice.to_owned());
        a.documents.insert("after".into(), after.to_owned());
    }
    let hook = app(state.clone()).await;
    let now = Utc::now();
    store
        .create_number(&PhoneNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: account,
            phone_number: NUMBER.into(),
            friendly_name: "test".into(),
            voice_url: Some(format!("http://{hook}/voice")),
            voice_method: "POST".into(),
            voice_fallback_url: None,
            voice_fallback_method: "POST".into(),
            status_callback: None,
            status_callback_method: "POST".into(),
            date_created: now,
            date_updated: now,
        })
        .await
        .unwrap();
    let uas = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let trunk = node::outbound::Trunk::from_uri("test", &format!("sip:{}", uas.local_addr().unwrap()), vec!["+1".into()]).unwrap();
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
    };
    let node = node::Node::start(config, store.clone()).await.unwrap();
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    Fixture { dir, store, account, node, uas, caller, caller_rtp, app: state }
}

fn sdp(rtp_port: u16) -> String {
    format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

async fn recv(sock: &UdpSocket, wait: Duration) -> Option<sip::Message> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf)).await.ok()?.ok()?;
    sip::parse_message(&buf[..n]).ok()
}

/// The parent's dialog as the caller sees it.
struct CallerDialog {
    to: String,
    remote_rtp: SocketAddr,
}

const FROM: &str = "<sip:+15557654321@127.0.0.1>;tag=caller1";

impl Fixture {
    /// Calls the number and waits for the 200 OK (Dial answers first), then ACKs it.
    async fn call(&self) -> CallerDialog {
        let local = self.caller.local_addr().unwrap();
        let node = self.node.sip_addr;
        let body = sdp(self.caller_rtp.local_addr().unwrap().port());
        let invite = format!(
            "INVITE sip:{NUMBER}@{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdialinv;rport\r\n\
             Max-Forwards: 70\r\nFrom: {FROM}\r\nTo: <sip:{NUMBER}@{node}>\r\nCall-ID: dial-parent\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.caller.send_to(invite.as_bytes(), node).await.unwrap();
        let ok = loop {
            match recv(&self.caller, Duration::from_secs(10)).await {
                Some(sip::Message::Response(r)) if r.status() >= 200 => break r,
                Some(_) => continue,
                None => panic!("no final response to the caller's INVITE"),
            }
        };
        assert_eq!(ok.status(), 200, "{ok:?}");
        let to = ok.headers.get("To").unwrap().to_owned();
        let answer = sip::sdp::SessionDescription::parse(std::str::from_utf8(&ok.body).unwrap()).unwrap();
        let remote_rtp = sip::sdp::negotiate(&answer, &[sip::sdp::Codec::Pcmu]).unwrap().remote_rtp;
        let ack = format!(
            "ACK sip:{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdialack\r\nMax-Forwards: 70\r\n\
             From: {FROM}\r\nTo: {to}\r\nCall-ID: dial-parent\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        self.caller.send_to(ack.as_bytes(), node).await.unwrap();
        CallerDialog { to, remote_rtp }
    }

    async fn caller_bye(&self, dialog: &CallerDialog) {
        let local = self.caller.local_addr().unwrap();
        let node = self.node.sip_addr;
        let bye = format!(
            "BYE sip:{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdialbye\r\nMax-Forwards: 70\r\n\
             From: {FROM}\r\nTo: {}\r\nCall-ID: dial-parent\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            dialog.to
        );
        self.caller.send_to(bye.as_bytes(), node).await.unwrap();
    }

    /// The next `count` INVITEs at the UAS, by dialled number.
    async fn invites(&self, count: usize) -> HashMap<String, sip::Request> {
        let mut got = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match recv(&self.uas, left).await {
                Some(sip::Message::Request(r)) if r.method == sip::Method::Invite => {
                    let number = node::call::dialled_number(&r.uri).unwrap().to_owned();
                    got.insert(number, r);
                }
                Some(_) => continue,
                None => panic!("only {} of {count} INVITEs arrived", got.len()),
            }
        }
        got
    }

    /// The next request of `method` at the UAS.
    async fn expect(&self, method: sip::Method, wait: Duration) -> sip::Request {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match recv(&self.uas, left).await {
                Some(sip::Message::Request(r)) if r.method == method => return r,
                Some(_) => continue,
                None => panic!("no {method:?} at the UAS within {wait:?}"),
            }
        }
    }

    async fn reply(&self, request: &sip::Request, status: u16, reason: &str, body: Option<String>) -> sip::Response {
        let mut r = sip::Response::from_request(request, status, reason);
        r.set_to_tag(&format!("uas-{}", node::call::dialled_number(&request.uri).unwrap_or("x")));
        if let Some(body) = body {
            r.headers.push("Contact", &format!("<sip:uas@{}>", self.uas.local_addr().unwrap()));
            r.set_body("application/sdp", body.into_bytes());
        }
        self.uas.send_to(&sip::Message::Response(r.clone()).to_bytes(), self.node.sip_addr).await.unwrap();
        r
    }

    async fn after(&self) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((_, p)) = self.app.lock().unwrap().seen.iter().find(|(path, _)| path == "after") {
                return p.clone();
            }
            assert!(Instant::now() < deadline, "no /after request; app saw {:?}", self.app.lock().unwrap().seen);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn no_leaks(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
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

/// Where our SDP offer in `invite` asks for media.
fn offered_rtp(invite: &sip::Request) -> SocketAddr {
    let offer = sip::sdp::SessionDescription::parse(std::str::from_utf8(&invite.body).unwrap()).unwrap();
    sip::sdp::negotiate(&offer, &[sip::sdp::Codec::Pcmu]).unwrap().remote_rtp
}

fn rtp_packet(seq: u16, fill: u8) -> Vec<u8> {
    let header = rtp::RtpHeader { payload_type: 0, marker: false, sequence: seq, timestamp: u32::from(seq) * 160, ssrc: 0x0102_0304 };
    let mut out = Vec::new();
    rtp::write_rtp(&header, &[fill; 160], &mut out);
    out
}

/// Sends marked packets from `from` to `to` until one with the mark arrives at `at`.
async fn relayed(from: &UdpSocket, to: SocketAddr, at: &UdpSocket, fill: u8) -> bool {
    let mut buf = vec![0u8; 2048];
    for seq in 0..100u16 {
        from.send_to(&rtp_packet(seq, fill), to).await.unwrap();
        let until = Instant::now() + Duration::from_millis(20);
        while let Ok(Ok((n, _))) = tokio::time::timeout(until.saturating_duration_since(Instant::now()), at.recv_from(&mut buf)).await {
            if let Ok(p) = rtp::parse_rtp(&buf[..n]) {
                if p.payload.len() == 160 && p.payload.iter().all(|&b| b == fill) {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_to_answer_is_bridged_while_the_busy_one_is_not() {
    let voice = r#"<Response><Dial action="/after" timeout="10"><Number>+15550002001</Number><Number>+15550002002</Number></Dial></Response>"#;
    let f = fixture(42000, voice, "<Response><Hangup/></Response>").await;
    let dialog = f.call().await;
    let invites = f.invites(2).await;
    let (busy, answering) = (&invites["+15550002001"], &invites["+15550002002"]);
    assert!(busy.from().unwrap().uri.contains("+15557654321"), "the caller's number is the caller ID");
    f.reply(busy, 486, "Busy Here", None).await;
    f.reply(answering, 180, "Ringing", None).await;

    // Ringback reaches the caller while the leg rings.
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), f.caller_rtp.recv_from(&mut buf)).await.expect("no ringback").unwrap();
    assert!(rtp::parse_rtp(&buf[..n]).is_ok());

    let uas_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = f.reply(answering, 200, "OK", Some(sdp(uas_rtp.local_addr().unwrap().port()))).await;
    // The busy leg's 486 is ACKed too (by its transaction): wait for the answer's ACK.
    loop {
        let ack = f.expect(sip::Method::Ack, Duration::from_secs(3)).await;
        if ack.call_id() == answering.call_id() {
            break;
        }
    }

    // Audio crosses the bridge both ways.
    assert!(relayed(&f.caller_rtp, dialog.remote_rtp, &uas_rtp, 0x55).await, "caller -> callee not relayed");
    assert!(relayed(&uas_rtp, offered_rtp(answering), &f.caller_rtp, 0x66).await, "callee -> caller not relayed");
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // The callee hangs up: the dial is over and the app's action is asked.
    let bye = format!(
        "BYE sip:x@{} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKlegbye\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\n\
         Call-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        f.node.sip_addr,
        f.uas.local_addr().unwrap(),
        ok.headers.get("To").unwrap(),
        ok.headers.get("From").unwrap(),
        answering.call_id().unwrap()
    );
    f.uas.send_to(bye.as_bytes(), f.node.sip_addr).await.unwrap();
    let after = f.after().await;
    assert_eq!(param(&after, "DialCallStatus"), Some("completed"), "{after:?}");
    let duration: u32 = param(&after, "DialCallDuration").unwrap().parse().unwrap();
    assert!((1..=4).contains(&duration), "DialCallDuration {duration}");
    let child: CallSid = param(&after, "DialCallSid").unwrap().parse().unwrap();
    let parent: CallSid = param(&after, "CallSid").unwrap().parse().unwrap();
    let rec = f.store.call(&f.account, &child).await.unwrap().unwrap();
    assert_eq!(rec.to, "+15550002002");
    assert_eq!(rec.parent_call_sid, Some(parent));
    assert_eq!(rec.direction, CallDirection::OutboundDial);

    // The action hangs the caller up.
    loop {
        match recv(&f.caller, Duration::from_secs(5)).await {
            Some(sip::Message::Request(r)) if r.method == sip::Method::Bye => {
                let ok = sip::Response::from_request(&r, 200, "OK");
                f.caller.send_to(&sip::Message::Response(ok).to_bytes(), f.node.sip_addr).await.unwrap();
                break;
            }
            Some(_) => continue,
            None => panic!("no BYE to the caller"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let rec = f.store.call(&f.account, &child).await.unwrap().unwrap();
        if rec.status == CallStatus::Completed {
            assert!(rec.duration.is_some_and(|d| (1..=4).contains(&d)), "{rec:?}");
            break;
        }
        assert!(Instant::now() < deadline, "child call still {:?}", rec.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_leg_busy_makes_the_dial_busy() {
    let voice = r#"<Response><Dial action="/after"><Number>+15550003001</Number><Number>+15550003002</Number></Dial></Response>"#;
    let f = fixture(42200, voice, "<Response><Hangup/></Response>").await;
    let _dialog = f.call().await;
    let invites = f.invites(2).await;
    for invite in invites.values() {
        f.reply(invite, 486, "Busy Here", None).await;
    }
    let after = f.after().await;
    assert_eq!(param(&after, "DialCallStatus"), Some("busy"), "{after:?}");
    // Twilio reports a duration only for a bridged dial.
    assert!(matches!(param(&after, "DialCallDuration"), None | Some("0")), "{after:?}");
    let child: CallSid = param(&after, "DialCallSid").unwrap().parse().unwrap();
    let rec = f.store.call(&f.account, &child).await.unwrap().unwrap();
    assert_eq!(rec.status, CallStatus::Busy);
    f.no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_answering_within_timeout_is_no_answer_and_the_legs_are_cancelled() {
    let voice = r#"<Response><Dial action="/after" timeout="5"><Number>+15550004001</Number></Dial></Response>"#;
    let f = fixture(42400, voice, "<Response><Hangup/></Response>").await;
    let _dialog = f.call().await;
    let started = Instant::now();
    let invites = f.invites(1).await;
    let invite = &invites["+15550004001"];
    f.reply(invite, 180, "Ringing", None).await;
    let cancel = f.expect(sip::Method::Cancel, Duration::from_secs(8)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(4500) && waited < Duration::from_secs(7), "{waited:?}");
    f.uas.send_to(&sip::Message::Response(sip::Response::from_request(&cancel, 200, "OK")).to_bytes(), f.node.sip_addr).await.unwrap();
    f.reply(invite, 487, "Request Terminated", None).await;
    let after = f.after().await;
    assert_eq!(param(&after, "DialCallStatus"), Some("no-answer"), "{after:?}");
    f.no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hanging_up_cancels_the_ringing_legs() {
    let voice = r#"<Response><Dial action="/after"><Number>+15550005001</Number><Number>+15550005002</Number></Dial></Response>"#;
    let f = fixture(42600, voice, "<Response><Say>unheard</Say></Response>").await;
    let dialog = f.call().await;
    let invites = f.invites(2).await;
    for invite in invites.values() {
        f.reply(invite, 180, "Ringing", None).await;
    }
    // Both legs ring, and a child call to a phone counts for presence by its number.
    assert!(f.node.shared.calls.has_party(&f.account, "+15550005001"));
    f.caller_bye(&dialog).await;
    let mut cancelled = Vec::new();
    while cancelled.len() < 2 {
        let cancel = f.expect(sip::Method::Cancel, Duration::from_secs(5)).await;
        f.uas.send_to(&sip::Message::Response(sip::Response::from_request(&cancel, 200, "OK")).to_bytes(), f.node.sip_addr).await.unwrap();
        let number = node::call::dialled_number(&cancel.uri).unwrap().to_owned();
        f.reply(&invites[&number], 487, "Request Terminated", None).await;
        cancelled.push(number);
    }
    cancelled.sort();
    assert_eq!(cancelled, ["+15550005001", "+15550005002"]);
    let after = f.after().await;
    assert_eq!(param(&after, "DialCallStatus"), Some("canceled"), "{after:?}");
    f.no_leaks().await;
    assert!(!f.node.shared.calls.has_party(&f.account, "+15550005001"));
}
