//! `QueueResult=system-error`: when the node cannot make or find the queue (here the database
//! is closed as the caller is enqueued), the caller is not stranded: the `<Enqueue>` ends at once
//! and its `action` hears `system-error`, as Twilio reports a system malfunction.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use model::records::PhoneNumberRecord;
use model::{AccountSid, PhoneNumberSid};
use tokio::net::UdpSocket;

type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

#[derive(Clone)]
struct App {
    store: store::Store,
    seen: Seen,
}

async fn webhook_server(app: App) -> SocketAddr {
    async fn voice(State(app): State<App>, Form(p): Form<Vec<(String, String)>>) -> &'static str {
        app.seen.lock().unwrap().push(("/voice".into(), p));
        // The database goes away before the node looks the queue up.
        app.store.close().await;
        r#"<Response><Enqueue action="/left">support</Enqueue></Response>"#
    }
    async fn left(State(app): State<App>, Form(p): Form<Vec<(String, String)>>) -> &'static str {
        app.seen.lock().unwrap().push(("/left".into(), p));
        "<Response><Hangup/></Response>"
    }
    let router = Router::new()
        .route("/voice", post(voice))
        .route("/left", post(left))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_the_node_cannot_reach_gives_system_error() {
    let dir =
        std::env::temp_dir().join(format!("dialtone-node-test-syserr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = store::Store::open(&format!("sqlite://{}/db.sqlite", dir.display()))
        .await
        .unwrap();
    let account = AccountSid::generate();
    store
        .ensure_account(&account, "0123456789abcdef0123456789abcdef", "test")
        .await
        .unwrap();
    let seen = Arc::default();
    let hook = webhook_server(App {
        store: store.clone(),
        seen: Arc::clone(&seen),
    })
    .await;
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
        rtp_port_min: 46000,
        rtp_port_max: 46099,
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

    let sip_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sip_sock.local_addr().unwrap();
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40998 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let invite = format!(
        "INVITE sip:+15550001000@{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKsyserr;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:+15557654321@127.0.0.1>;tag=c1\r\nTo: <sip:+15550001000@{node}>\r\n\
         Call-ID: syserr\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len(),
        node = node.sip_addr,
    );
    sip_sock
        .send_to(invite.as_bytes(), node.sip_addr)
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let left = loop {
        if let Some(p) = seen
            .lock()
            .unwrap()
            .iter()
            .find(|(path, _)| path == "/left")
            .map(|(_, p)| p.clone())
        {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "no action request");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let result = left
        .iter()
        .find(|(k, _)| k == "QueueResult")
        .map(|(_, v)| v.as_str());
    assert_eq!(result, Some("system-error"), "{left:?}");
    assert!(
        left.iter().all(|(k, _)| k != "QueueSid"),
        "no queue to name: {left:?}"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}
