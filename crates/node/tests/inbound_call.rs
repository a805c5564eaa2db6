//! An inbound call end to end inside one process: a SIP caller on a real UDP socket, the node, a
//! real HTTP webhook server, and the store on a temporary SQLite file. The caller listens to the
//! prompt, presses two digits over RFC 4733, and the webhook must receive them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, State};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use model::records::PhoneNumberRecord;
use model::{AccountSid, CallStatus, PhoneNumberSid};
use tokio::net::UdpSocket;

type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

async fn webhook_server(seen: Seen) -> SocketAddr {
    async fn voice(State(seen): State<Seen>, Form(p): Form<Vec<(String, String)>>) -> &'static str {
        seen.lock().unwrap().push(("/voice".into(), p));
        r#"<Response><Gather numDigits="2" timeout="10" action="/gathered"><Say>Hello, please enter two digits.</Say></Gather></Response>"#
    }
    async fn gathered(
        State(seen): State<Seen>,
        Form(p): Form<Vec<(String, String)>>,
    ) -> &'static str {
        seen.lock().unwrap().push(("/gathered".into(), p));
        "<Response><Hangup/></Response>"
    }
    let app = Router::new()
        .route("/voice", post(voice))
        .route("/gathered", post(gathered))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn invite(call_id: &str, node: SocketAddr, local: SocketAddr, rtp_port: u16) -> String {
    let to = format!("<sip:+15550001000@{node}>");
    in_dialog_invite(call_id, node, local, rtp_port, &to, 1, "sendrecv")
}

/// An INVITE, or with a tagged `to` and a higher `cseq` a re-INVITE (hold is `sendonly`).
fn in_dialog_invite(
    call_id: &str,
    node: SocketAddr,
    local: SocketAddr,
    rtp_port: u16,
    to: &str,
    cseq: u32,
    direction: &str,
) -> String {
    let sdp = format!(
        "v=0\r\no=- 1 {cseq} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n"
    );
    format!(
        "INVITE sip:+15550001000@{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{call_id}{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15557654321@127.0.0.1>;tag=caller1\r\nTo: {to}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:caller@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

fn ack(call_id: &str, node: SocketAddr, local: SocketAddr, to: &str, cseq: u32) -> String {
    format!(
        "ACK sip:{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKack{cseq}\r\nMax-Forwards: 70\r\n\
         From: <sip:+15557654321@127.0.0.1>;tag=caller1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Waits for the final response, skipping provisional ones.
async fn final_response(sock: &UdpSocket) -> sip::Response {
    loop {
        match recv_sip(sock, Duration::from_secs(5)).await {
            Some(sip::Message::Response(r)) if r.status() >= 200 => return r,
            Some(_) => continue,
            None => panic!("no final response"),
        }
    }
}

async fn recv_sip(sock: &UdpSocket, wait: Duration) -> Option<sip::Message> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    sip::parse_message(&buf[..n]).ok()
}

/// A store with one account and the number +15550001000 pointing at `hook`, and a node on it.
async fn start(
    name: &str,
    hook: SocketAddr,
    rtp_ports: (u16, u16),
) -> (std::path::PathBuf, store::Store, AccountSid, node::Node) {
    let dir =
        std::env::temp_dir().join(format!("dialtone-node-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = store::Store::open(&format!("sqlite://{}/db.sqlite", dir.display()))
        .await
        .unwrap();
    let account: AccountSid = AccountSid::generate();
    store
        .ensure_account(&account, "0123456789abcdef0123456789abcdef", "test")
        .await
        .unwrap();
    let now = Utc::now();
    store
        .create_number(&PhoneNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: account,
            phone_number: "+15550001000".into(),
            friendly_name: "test".into(),
            voice_url: Some(format!("http://{hook}/voice")),
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
        })
        .await
        .unwrap();
    let config = node::NodeConfig {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        sip_addr: "127.0.0.1:0".parse().unwrap(),
        advertise_ip: "127.0.0.1".parse().unwrap(),
        rtp_bind_ip: "127.0.0.1".parse().unwrap(),
        rtp_port_min: rtp_ports.0,
        rtp_port_max: rtp_ports.1,
        recordings_dir: dir.join("recordings"),
        data_dir: dir.clone(),
        public_url: "http://127.0.0.1:1".into(),
        media_workers: 1,
        trunks: Vec::new(),
        console_crm_url: None,
        smscs: Vec::new(),
        pricing: None,
        max_calls: None,
        http_tls: None,
    };
    let node = node::Node::start(config, store.clone()).await.unwrap();

    (dir, store, account, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hears_the_prompt_and_its_digits_reach_the_webhook() {
    let seen: Seen = Arc::default();
    let hook = webhook_server(seen.clone()).await;
    let (dir, store, account, node) = start("prompt", hook, (41000, 41099)).await;

    let sip_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sip_sock.local_addr().unwrap();
    let msg = invite(
        "call-one",
        node.sip_addr,
        local,
        rtp_sock.local_addr().unwrap().port(),
    );
    sip_sock
        .send_to(msg.as_bytes(), node.sip_addr)
        .await
        .unwrap();

    // Provisional responses, then the 200 OK with the SDP answer.
    let ok = loop {
        let Some(sip::Message::Response(r)) = recv_sip(&sip_sock, Duration::from_secs(5)).await
        else {
            panic!("no final response to the INVITE");
        };
        if r.status() >= 200 {
            break r;
        }
    };
    assert_eq!(ok.status(), 200, "{ok:?}");
    let answer =
        sip::sdp::SessionDescription::parse(std::str::from_utf8(&ok.body).unwrap()).unwrap();
    let remote_rtp = sip::sdp::negotiate(&answer, &[sip::sdp::Codec::Pcmu])
        .unwrap()
        .remote_rtp;
    let to = ok.headers.get("To").unwrap().to_owned();
    sip_sock
        .send_to(
            ack("call-one", node.sip_addr, local, &to, 1).as_bytes(),
            node.sip_addr,
        )
        .await
        .unwrap();

    // Listen to a second of the prompt: PCMU packets with speech energy.
    let mut buf = vec![0u8; 2048];
    let mut pcm = Vec::new();
    let listen_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < listen_until && pcm.len() < 8000 {
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(200), rtp_sock.recv_from(&mut buf)).await
        {
            let p = rtp::parse_rtp(&buf[..n]).unwrap();
            assert_eq!(p.header.payload_type, 0);
            let mut frame = Vec::new();
            media::Codec::Pcmu.decode(p.payload, &mut frame);
            pcm.extend(frame);
        }
    }
    assert!(
        pcm.len() >= 8000,
        "heard only {} samples of the prompt",
        pcm.len()
    );
    let level = media::level::rms_dbfs(&pcm);
    assert!(
        level > -35.0,
        "the prompt is too quiet to be speech: {level} dBFS"
    );

    // Hold (re-INVITE sendonly): the answer says recvonly and the rest of the prompt is not sent.
    let rtp_port = rtp_sock.local_addr().unwrap().port();
    let hold = in_dialog_invite(
        "call-one",
        node.sip_addr,
        local,
        rtp_port,
        &to,
        2,
        "sendonly",
    );
    sip_sock
        .send_to(hold.as_bytes(), node.sip_addr)
        .await
        .unwrap();
    let held = final_response(&sip_sock).await;
    assert_eq!(held.status(), 200);
    assert!(
        std::str::from_utf8(&held.body)
            .unwrap()
            .contains("a=recvonly"),
        "{held:?}"
    );
    sip_sock
        .send_to(
            ack("call-one", node.sip_addr, local, &to, 2).as_bytes(),
            node.sip_addr,
        )
        .await
        .unwrap();
    let mut while_held = 0;
    let hold_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < hold_until {
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(50), rtp_sock.recv_from(&mut buf)).await
        {
            // Packets sent before the re-INVITE arrived may still be in flight: count the rest.
            if n > 0 && Instant::now() > hold_until - Duration::from_millis(400) {
                while_held += 1;
            }
        }
    }
    assert!(
        while_held <= 1,
        "{while_held} RTP packets sent while on hold"
    );
    let unhold = in_dialog_invite(
        "call-one",
        node.sip_addr,
        local,
        rtp_port,
        &to,
        3,
        "sendrecv",
    );
    sip_sock
        .send_to(unhold.as_bytes(), node.sip_addr)
        .await
        .unwrap();
    let resumed = final_response(&sip_sock).await;
    assert_eq!(resumed.status(), 200);
    assert!(
        std::str::from_utf8(&resumed.body)
            .unwrap()
            .contains("a=sendrecv"),
        "{resumed:?}"
    );
    sip_sock
        .send_to(
            ack("call-one", node.sip_addr, local, &to, 3).as_bytes(),
            node.sip_addr,
        )
        .await
        .unwrap();

    // Press 4 then 2 (RFC 4733), paced at 20 ms.
    let mut sender = rtp::RtpSender::new(0x1234_5678, 100, 1000);
    let mut out = Vec::new();
    for digit in ['4', '2'] {
        let mut dtmf = rtp::dtmf::DtmfSender::new(digit, 101, Duration::from_millis(100)).unwrap();
        while let Some((header, payload)) = dtmf.poll_packet(&mut sender) {
            rtp::write_rtp(&header, &payload, &mut out);
            rtp_sock.send_to(&out, remote_rtp).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The app hangs up: a BYE comes; answer it.
    let bye = loop {
        match recv_sip(&sip_sock, Duration::from_secs(5)).await {
            Some(sip::Message::Request(r)) if r.method == sip::Method::Bye => break r,
            Some(_) => continue,
            None => panic!(
                "no BYE after the gather; webhook saw {:?}",
                seen.lock().unwrap()
            ),
        }
    };
    let ok = sip::Response::from_request(&bye, 200, "OK");
    sip_sock
        .send_to(&sip::Message::Response(ok).to_bytes(), node.sip_addr)
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let param = |i: usize, k: &str| {
        seen[i]
            .1
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(param(0, "CallStatus").as_deref(), Some("ringing"));
    assert_eq!(param(0, "From").as_deref(), Some("+15557654321"));
    assert_eq!(param(0, "To").as_deref(), Some("+15550001000"));
    assert_eq!(param(1, "Digits").as_deref(), Some("42"));
    assert_eq!(param(1, "CallStatus").as_deref(), Some("in-progress"));

    // The record is closed and nothing stays allocated.
    let call_sid = param(0, "CallSid").unwrap().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let rec = store.call(&account, &call_sid).await.unwrap().unwrap();
        if rec.status == CallStatus::Completed {
            assert!(rec.end_time.is_some() && rec.duration.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "call still {:?}", rec.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while node.shared.media.ports_in_use() != 0 {
        assert!(
            Instant::now() < deadline,
            "RTP ports leaked: {}",
            node.shared.media.ports_in_use()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_accounts_number_refuses_calls() {
    let seen: Seen = Arc::default();
    let hook = webhook_server(seen.clone()).await;
    let (dir, store, account, node) = start("suspended", hook, (41100, 41199)).await;
    let mut record = store.account(&account).await.unwrap().unwrap();
    record.status = "suspended".into();
    assert!(store.update_account(&record).await.unwrap());

    let sip_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sip_sock.local_addr().unwrap();
    sip_sock
        .send_to(
            invite("call-two", node.sip_addr, local, 4000).as_bytes(),
            node.sip_addr,
        )
        .await
        .unwrap();
    let status = loop {
        match recv_sip(&sip_sock, Duration::from_secs(5)).await {
            Some(sip::Message::Response(r)) if r.status() >= 200 => break r.status(),
            Some(_) => continue,
            None => panic!("no final response to the INVITE"),
        }
    };
    assert_eq!(status, 403);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the app was asked about a refused call"
    );
    assert_eq!(node.shared.media.ports_in_use(), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
