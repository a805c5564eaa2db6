//! `<Dial>` end to end inside one process: a raw SIP caller calls a number whose app dials
//! phone numbers; the legs go through a trunk to one raw UDP UAS that answers each INVITE as
//! the test decides (busy, ringing, answer). Checks which leg is bridged (RTP relayed both
//! ways), which are cancelled, and what the app's `action` receives; and what each side hears
//! of `hangupOnStar`, `answerOnBridge`, `sendDigits`, a whisper (`<Number url>`) and `timeLimit`.

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
/// The app's `/tone.wav`: a tone no ringback or speech has, so a side that hears it is told apart.
const TONE_HZ: f64 = 1000.0;
const TONE_SECONDS: f64 = 1.0;

/// 8 kHz mono 16-bit WAV of a sine at half of full scale.
fn tone_wav(hz: f64, seconds: f64) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..(seconds * 8000.0) as usize {
        let v = (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin() * 16384.0;
        w.write_sample(v as i16).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

#[derive(Default)]
struct App {
    documents: HashMap<String, String>,
    seen: Vec<(String, Vec<(String, String)>)>,
}

type Shared = Arc<Mutex<App>>;

async fn app(state: Shared) -> SocketAddr {
    async fn hook(
        State(state): State<Shared>,
        Path(path): Path<String>,
        Form(p): Form<Vec<(String, String)>>,
    ) -> String {
        let mut app = state.lock().unwrap();
        app.seen.push((path.clone(), p));
        app.documents.get(&path).cloned().unwrap_or_default()
    }
    async fn tone() -> ([(&'static str, &'static str); 1], Vec<u8>) {
        (
            [("content-type", "audio/wav")],
            tone_wav(TONE_HZ, TONE_SECONDS),
        )
    }
    let router = Router::new()
        .route("/tone.wav", axum::routing::get(tone))
        .route("/{path}", post(hook))
        .with_state(state);
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
    caller_rtp: Arc<UdpSocket>,
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
    let store = store::Store::open(&format!("sqlite://{}/db.sqlite", dir.display()))
        .await
        .unwrap();
    let account = AccountSid::generate();
    store
        .ensure_account(&account, "0123456789abcdef0123456789abcdef", "test")
        .await
        .unwrap();
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
    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let caller_rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    Fixture {
        dir,
        store,
        account,
        node,
        uas,
        caller,
        caller_rtp,
        app: state,
    }
}

fn sdp(rtp_port: u16) -> String {
    format!(
        "v=0\r\no=- 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

async fn recv(sock: &UdpSocket, wait: Duration) -> Option<sip::Message> {
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
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
        self.call_timed().await.0
    }

    /// Calls the number and waits for the 200 OK, then ACKs it; also returns every response
    /// to the INVITE (status, arrival), the 200 last.
    async fn call_timed(&self) -> (CallerDialog, Vec<(u16, Instant)>) {
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
        let mut responses = Vec::new();
        let ok = loop {
            match recv(&self.caller, Duration::from_secs(15)).await {
                Some(sip::Message::Response(r)) => {
                    responses.push((r.status(), Instant::now()));
                    if r.status() >= 200 {
                        break r;
                    }
                }
                Some(_) => continue,
                None => panic!("no final response to the caller's INVITE"),
            }
        };
        assert_eq!(ok.status(), 200, "{ok:?}");
        let to = ok.headers.get("To").unwrap().to_owned();
        let answer =
            sip::sdp::SessionDescription::parse(std::str::from_utf8(&ok.body).unwrap()).unwrap();
        let remote_rtp = sip::sdp::negotiate(&answer, &[sip::sdp::Codec::Pcmu])
            .unwrap()
            .remote_rtp;
        let ack = format!(
            "ACK sip:{node} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKdialack\r\nMax-Forwards: 70\r\n\
             From: {FROM}\r\nTo: {to}\r\nCall-ID: dial-parent\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        self.caller.send_to(ack.as_bytes(), node).await.unwrap();
        (CallerDialog { to, remote_rtp }, responses)
    }

    /// Waits for the node's BYE to the caller and answers it; returns when it came.
    async fn caller_gets_bye(&self, wait: Duration) -> Instant {
        let deadline = Instant::now() + wait;
        loop {
            match recv(
                &self.caller,
                deadline.saturating_duration_since(Instant::now()),
            )
            .await
            {
                Some(sip::Message::Request(r)) if r.method == sip::Method::Bye => {
                    let at = Instant::now();
                    let ok = sip::Response::from_request(&r, 200, "OK");
                    self.caller
                        .send_to(&sip::Message::Response(ok).to_bytes(), self.node.sip_addr)
                        .await
                        .unwrap();
                    return at;
                }
                Some(_) => continue,
                None => panic!("no BYE to the caller within {wait:?}"),
            }
        }
    }

    /// Answers a leg's INVITE with 200 and SDP for a new RTP socket, and waits for its ACK.
    async fn answer(&self, invite: &sip::Request) -> (sip::Response, Arc<UdpSocket>, Instant) {
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let ok = self
            .reply(
                invite,
                200,
                "OK",
                Some(sdp(rtp.local_addr().unwrap().port())),
            )
            .await;
        let at = Instant::now();
        loop {
            let ack = self.expect(sip::Method::Ack, Duration::from_secs(3)).await;
            if ack.call_id() == invite.call_id() {
                break;
            }
        }
        (ok, rtp, at)
    }

    /// Waits for a BYE at the UAS and answers it; returns it and when it came.
    async fn leg_gets_bye(&self, wait: Duration) -> (sip::Request, Instant) {
        let bye = self.expect(sip::Method::Bye, wait).await;
        let at = Instant::now();
        let ok = sip::Response::from_request(&bye, 200, "OK");
        self.uas
            .send_to(&sip::Message::Response(ok).to_bytes(), self.node.sip_addr)
            .await
            .unwrap();
        (bye, at)
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

    async fn reply(
        &self,
        request: &sip::Request,
        status: u16,
        reason: &str,
        body: Option<String>,
    ) -> sip::Response {
        let mut r = sip::Response::from_request(request, status, reason);
        r.set_to_tag(&format!(
            "uas-{}",
            node::call::dialled_number(&request.uri).unwrap_or("x")
        ));
        if let Some(body) = body {
            r.headers.push(
                "Contact",
                &format!("<sip:uas@{}>", self.uas.local_addr().unwrap()),
            );
            r.set_body("application/sdp", body.into_bytes());
        }
        self.uas
            .send_to(
                &sip::Message::Response(r.clone()).to_bytes(),
                self.node.sip_addr,
            )
            .await
            .unwrap();
        r
    }

    async fn after(&self) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((_, p)) = self
                .app
                .lock()
                .unwrap()
                .seen
                .iter()
                .find(|(path, _)| path == "after")
            {
                return p.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no /after request; app saw {:?}",
                self.app.lock().unwrap().seen
            );
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
    let offer =
        sip::sdp::SessionDescription::parse(std::str::from_utf8(&invite.body).unwrap()).unwrap();
    sip::sdp::negotiate(&offer, &[sip::sdp::Codec::Pcmu])
        .unwrap()
        .remote_rtp
}

fn rtp_packet(seq: u16, fill: u8) -> Vec<u8> {
    let header = rtp::RtpHeader {
        payload_type: 0,
        marker: false,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc: 0x0102_0304,
    };
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
        while let Ok(Ok((n, _))) = tokio::time::timeout(
            until.saturating_duration_since(Instant::now()),
            at.recv_from(&mut buf),
        )
        .await
        {
            if let Ok(p) = rtp::parse_rtp(&buf[..n]) {
                if p.payload.len() == 160 && p.payload.iter().all(|&b| b == fill) {
                    return true;
                }
            }
        }
    }
    false
}

/// Every RTP packet arriving on a socket with its arrival time, read by a task so that none is
/// dropped while the test waits on SIP.
type Packets = Vec<(Instant, rtp::RtpHeader, Vec<u8>)>;

struct Capture {
    packets: Arc<Mutex<Packets>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn capture(sock: Arc<UdpSocket>) -> Capture {
    let packets: Arc<Mutex<Packets>> = Arc::default();
    let sink = packets.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, _)) = sock.recv_from(&mut buf).await {
            if let Ok(p) = rtp::parse_rtp(&buf[..n]) {
                sink.lock()
                    .unwrap()
                    .push((Instant::now(), p.header, p.payload.to_vec()));
            }
        }
    });
    Capture { packets, task }
}

impl Capture {
    fn packets(&self) -> Packets {
        self.packets.lock().unwrap().clone()
    }

    /// The PCMU frames that arrived in `[from, to)`, decoded.
    fn frames(&self, from: Instant, to: Instant) -> Vec<(Instant, Vec<i16>)> {
        self.packets()
            .into_iter()
            .filter(|(t, h, _)| *t >= from && *t < to && h.payload_type == 0)
            .map(|(t, _, p)| (t, p.iter().map(|&b| media::g711::ulaw_decode(b)).collect()))
            .collect()
    }

    /// RFC 4733 digits (payload type 101 in both offers), each with its first packet's arrival.
    fn digits(&self) -> Vec<(Instant, char)> {
        let mut rx = rtp::dtmf::DtmfReceiver::new();
        self.packets()
            .iter()
            .filter(|(_, h, _)| h.payload_type == 101)
            .filter_map(|(t, h, p)| rx.handle_packet(h, p).map(|d| (*t, d)))
            .collect()
    }

    /// When the first packet filled with `fill` (a marker sent through the bridge) arrived.
    fn first_fill(&self, fill: u8) -> Option<Instant> {
        self.packets()
            .iter()
            .find(|(_, h, p)| h.payload_type == 0 && p.len() == 160 && p.iter().all(|&b| b == fill))
            .map(|(t, _, _)| *t)
    }
}

/// Sends marked audio every 20 ms until it shows up in `at` (the bridge is up); when it did.
async fn send_until_relayed(
    from: &UdpSocket,
    to: SocketAddr,
    at: &Capture,
    fill: u8,
    wait: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + wait;
    let mut seq = 0u16;
    while Instant::now() < deadline {
        from.send_to(&rtp_packet(seq, fill), to).await.unwrap();
        seq = seq.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Some(t) = at.first_fill(fill) {
            return Some(t);
        }
    }
    None
}

/// One RFC 4733 key press (payload type 101, 100 ms, end packet three times), as a phone sends it.
async fn press(sock: &UdpSocket, to: SocketAddr, digit: char, seq: u16) {
    let event = rtp::dtmf::char_to_event(digit).unwrap();
    let timestamp = u32::from(seq) * 160;
    for i in 0..8u16 {
        let end = i >= 5;
        let duration = if end { 800 } else { (i + 1) * 160 };
        let header = rtp::RtpHeader {
            payload_type: 101,
            marker: i == 0,
            sequence: seq + i,
            timestamp,
            ssrc: 0x0102_0304,
        };
        let payload = rtp::dtmf::TelephoneEvent {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes();
        let mut out = Vec::new();
        rtp::write_rtp(&header, &payload, &mut out);
        sock.send_to(&out, to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn level_dbfs(x: &[i16]) -> f64 {
    let energy: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    if energy == 0.0 {
        return -120.0;
    }
    10.0 * (energy / x.len() as f64 / (32768.0 * 32768.0)).log10()
}

/// Share of the frame's energy at `hz` (Goertzel): 1 for a pure tone at `hz`.
fn tone_share(x: &[i16], hz: f64) -> f64 {
    let total: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    if total == 0.0 {
        return 0.0;
    }
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        (s1, s2) = (f64::from(v) + coeff * s1 - s2, s1);
    }
    2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64 * total)
}

/// A frame of the app's tone: loud, and nearly all of it at `TONE_HZ`.
fn is_tone(x: &[i16]) -> bool {
    level_dbfs(x) > -20.0 && tone_share(x, TONE_HZ) > 0.8
}

/// A frame of ringback: 440 + 480 Hz.
fn is_ringback(x: &[i16]) -> bool {
    level_dbfs(x) > -40.0 && tone_share(x, 440.0) + tone_share(x, 480.0) > 0.6
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_to_answer_is_bridged_while_the_busy_one_is_not() {
    let voice = r#"<Response><Dial action="/after" timeout="10"><Number>+15550002001</Number><Number>+15550002002</Number></Dial></Response>"#;
    let f = fixture(42000, voice, "<Response><Hangup/></Response>").await;
    let dialog = f.call().await;
    let invites = f.invites(2).await;
    let (busy, answering) = (&invites["+15550002001"], &invites["+15550002002"]);
    assert!(
        busy.from().unwrap().uri.contains("+15557654321"),
        "the caller's number is the caller ID"
    );
    f.reply(busy, 486, "Busy Here", None).await;
    f.reply(answering, 180, "Ringing", None).await;

    // Ringback reaches the caller while the leg rings.
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), f.caller_rtp.recv_from(&mut buf))
        .await
        .expect("no ringback")
        .unwrap();
    assert!(rtp::parse_rtp(&buf[..n]).is_ok());

    let uas_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ok = f
        .reply(
            answering,
            200,
            "OK",
            Some(sdp(uas_rtp.local_addr().unwrap().port())),
        )
        .await;
    // The busy leg's 486 is ACKed too (by its transaction): wait for the answer's ACK.
    loop {
        let ack = f.expect(sip::Method::Ack, Duration::from_secs(3)).await;
        if ack.call_id() == answering.call_id() {
            break;
        }
    }

    // Audio crosses the bridge both ways.
    assert!(
        relayed(&f.caller_rtp, dialog.remote_rtp, &uas_rtp, 0x55).await,
        "caller -> callee not relayed"
    );
    assert!(
        relayed(&uas_rtp, offered_rtp(answering), &f.caller_rtp, 0x66).await,
        "callee -> caller not relayed"
    );
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
    f.uas
        .send_to(bye.as_bytes(), f.node.sip_addr)
        .await
        .unwrap();
    let after = f.after().await;
    assert_eq!(
        param(&after, "DialCallStatus"),
        Some("completed"),
        "{after:?}"
    );
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
                f.caller
                    .send_to(&sip::Message::Response(ok).to_bytes(), f.node.sip_addr)
                    .await
                    .unwrap();
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
            assert!(
                rec.duration.is_some_and(|d| (1..=4).contains(&d)),
                "{rec:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "child call still {:?}",
            rec.status
        );
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
    assert!(
        matches!(param(&after, "DialCallDuration"), None | Some("0")),
        "{after:?}"
    );
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
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(7),
        "{waited:?}"
    );
    f.uas
        .send_to(
            &sip::Message::Response(sip::Response::from_request(&cancel, 200, "OK")).to_bytes(),
            f.node.sip_addr,
        )
        .await
        .unwrap();
    f.reply(invite, 487, "Request Terminated", None).await;
    let after = f.after().await;
    assert_eq!(
        param(&after, "DialCallStatus"),
        Some("no-answer"),
        "{after:?}"
    );
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
        f.uas
            .send_to(
                &sip::Message::Response(sip::Response::from_request(&cancel, 200, "OK")).to_bytes(),
                f.node.sip_addr,
            )
            .await
            .unwrap();
        let number = node::call::dialled_number(&cancel.uri).unwrap().to_owned();
        f.reply(&invites[&number], 487, "Request Terminated", None)
            .await;
        cancelled.push(number);
    }
    cancelled.sort();
    assert_eq!(cancelled, ["+15550005001", "+15550005002"]);
    let after = f.after().await;
    assert_eq!(
        param(&after, "DialCallStatus"),
        Some("canceled"),
        "{after:?}"
    );
    f.no_leaks().await;
    assert!(!f.node.shared.calls.has_party(&f.account, "+15550005001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hangup_on_star_ends_the_callee_leg_and_the_caller_goes_on_to_the_action() {
    let voice = r#"<Response><Dial action="/after" hangupOnStar="true"><Number>+15550006001</Number></Dial></Response>"#;
    let f = fixture(
        42800,
        voice,
        "<Response><Play>/tone.wav</Play><Hangup/></Response>",
    )
    .await;
    let dialog = f.call().await;
    let invites = f.invites(1).await;
    let (_ok, uas_rtp, _) = f.answer(&invites["+15550006001"]).await;
    let callee = capture(uas_rtp.clone());
    let caller = capture(f.caller_rtp.clone());
    let bridged = send_until_relayed(
        &f.caller_rtp,
        dialog.remote_rtp,
        &callee,
        0x55,
        Duration::from_secs(3),
    )
    .await
    .expect("not bridged");
    tokio::time::sleep(Duration::from_millis(2000).saturating_sub(bridged.elapsed())).await;

    let star = Instant::now();
    let (_, (_, leg_bye)) = tokio::join!(
        press(&f.caller_rtp, dialog.remote_rtp, '*', 1000),
        f.leg_gets_bye(Duration::from_secs(3))
    );
    let after = f.after().await;
    assert_eq!(
        param(&after, "DialCallStatus"),
        Some("completed"),
        "{after:?}"
    );
    let duration: u32 = param(&after, "DialCallDuration").unwrap().parse().unwrap();
    assert!((1..=3).contains(&duration), "DialCallDuration {duration}");

    // The parent call goes on with the action's document: the caller hears its tone, then BYE.
    let caller_bye = f.caller_gets_bye(Duration::from_secs(10)).await;
    let frames = caller.frames(star, caller_bye);
    let tone = frames.iter().filter(|(_, x)| is_tone(x)).count();
    println!(
        "hangupOnStar: leg BYE {:?} after *, DialCallDuration {duration} s, caller heard {tone} tone frames ({:.2} s) \
         from the action after * and before its BYE",
        leg_bye - star,
        tone as f64 * 0.02
    );
    assert!(
        leg_bye - star < Duration::from_millis(500),
        "the leg ended {:?} after *",
        leg_bye - star
    );
    assert!(
        (45..=55).contains(&tone),
        "the action's 1 s tone: {tone} frames"
    );
    f.no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_on_bridge_answers_the_caller_only_when_the_callee_answers() {
    let voice = r#"<Response><Dial action="/after" answerOnBridge="true"><Number>+15550007001</Number></Dial></Response>"#;
    let f = fixture(43100, voice, "<Response><Hangup/></Response>").await;
    let started = Instant::now();
    let caller = capture(f.caller_rtp.clone());
    let callee_side = async {
        let invites = f.invites(1).await;
        let invite = &invites["+15550007001"];
        f.reply(invite, 180, "Ringing", None).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (ok, rtp, answered) = f.answer(invite).await;
        (invite.clone(), ok, rtp, answered)
    };
    let ((dialog, responses), (invite, _ok, uas_rtp, callee_answered)) =
        tokio::join!(f.call_timed(), callee_side);
    let (_, caller_answered) = *responses.last().unwrap();
    let early: Vec<u16> = responses
        .iter()
        .filter(|(s, _)| *s < 200)
        .map(|(s, _)| *s)
        .collect();
    let ringing_at = responses
        .iter()
        .find(|(s, _)| *s == 180)
        .map(|(_, t)| *t - started);
    let early_rtp = caller
        .packets()
        .iter()
        .filter(|(t, _, _)| *t < caller_answered)
        .count();
    println!(
        "answerOnBridge: caller got {early:?} then 200 {:?} after the INVITE (180 at {ringing_at:?}), \
         {:?} after the callee's 200; {early_rtp} RTP packets before its 200",
        caller_answered - started,
        caller_answered.saturating_duration_since(callee_answered)
    );
    assert!(
        ringing_at.is_some_and(|t| t < Duration::from_millis(1000)),
        "the caller rings at once: {responses:?}"
    );
    assert!(
        caller_answered >= callee_answered,
        "the caller was answered before the callee"
    );
    assert!(
        caller_answered - callee_answered < Duration::from_millis(1000),
        "{:?}",
        caller_answered - callee_answered
    );

    // Bridged: audio both ways.
    let callee = capture(uas_rtp.clone());
    send_until_relayed(
        &f.caller_rtp,
        dialog.remote_rtp,
        &callee,
        0x55,
        Duration::from_secs(3),
    )
    .await
    .expect("caller -> callee not relayed");
    send_until_relayed(
        &uas_rtp,
        offered_rtp(&invite),
        &caller,
        0x66,
        Duration::from_secs(3),
    )
    .await
    .expect("callee -> caller not relayed");
    f.caller_bye(&dialog).await;
    f.leg_gets_bye(Duration::from_secs(3)).await;
    let after = f.after().await;
    assert_eq!(
        param(&after, "DialCallStatus"),
        Some("completed"),
        "{after:?}"
    );
    f.no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn number_send_digits_reach_the_callee_before_the_bridge() {
    let voice = r#"<Response><Dial action="/after"><Number sendDigits="12w34#">+15550008001</Number></Dial></Response>"#;
    let f = fixture(43300, voice, "<Response><Hangup/></Response>").await;
    let dialog = f.call().await;
    let invites = f.invites(1).await;
    let (_ok, uas_rtp, answered) = f.answer(&invites["+15550008001"]).await;
    let callee = capture(uas_rtp.clone());
    // The caller talks from the start; its audio must reach the callee only after the digits.
    let bridged = send_until_relayed(
        &f.caller_rtp,
        dialog.remote_rtp,
        &callee,
        0x55,
        Duration::from_secs(6),
    )
    .await
    .expect("never bridged");
    let digits = callee.digits();
    let text: String = digits.iter().map(|(_, d)| d).collect();
    let at: Vec<Duration> = digits.iter().map(|(t, _)| *t - answered).collect();
    println!(
        "sendDigits: callee received {text:?} at {at:?} after its 200; bridged {:?} after it",
        bridged - answered
    );
    assert_eq!(text, "1234#");
    let gap = |i: usize| at[i + 1] - at[i];
    // `w` is a 0.5 s pause between 2 and 3, on top of the usual gap.
    let pause = gap(1).saturating_sub(gap(0));
    assert!(
        pause >= Duration::from_millis(350) && pause <= Duration::from_millis(800),
        "w pause {pause:?}"
    );
    assert!(
        digits.iter().all(|(t, _)| *t < bridged),
        "audio was relayed before the digits were sent"
    );
    f.caller_bye(&dialog).await;
    f.leg_gets_bye(Duration::from_secs(3)).await;
    assert_eq!(param(&f.after().await, "DialCallStatus"), Some("completed"));
    f.no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whisper_is_heard_by_the_callee_alone_before_the_bridge() {
    let voice = r#"<Response><Dial action="/after"><Number url="/whisper">+15550009001</Number></Dial></Response>"#;
    let f = fixture(43500, voice, "<Response><Hangup/></Response>").await;
    f.app.lock().unwrap().documents.insert(
        "whisper".into(),
        "<Response><Play>/tone.wav</Play></Response>".into(),
    );
    let dialog = f.call().await;
    let caller = capture(f.caller_rtp.clone());
    let invites = f.invites(1).await;
    let invite = &invites["+15550009001"];
    let (_ok, uas_rtp, answered) = f.answer(invite).await;
    let callee = capture(uas_rtp.clone());
    let bridged = send_until_relayed(
        &f.caller_rtp,
        dialog.remote_rtp,
        &callee,
        0x55,
        Duration::from_secs(8),
    )
    .await
    .expect("never bridged");
    send_until_relayed(
        &uas_rtp,
        offered_rtp(invite),
        &caller,
        0x66,
        Duration::from_secs(3),
    )
    .await
    .expect("callee -> caller not relayed");
    let end = Instant::now();

    let callee_before = callee.frames(answered, bridged);
    let whisper: Vec<Instant> = callee_before
        .iter()
        .filter(|(_, x)| is_tone(x))
        .map(|(t, _)| *t)
        .collect();
    let callee_after = callee
        .frames(bridged, end)
        .iter()
        .filter(|(_, x)| is_tone(x))
        .count();
    let caller_frames = caller.frames(answered, end);
    let caller_tone = caller_frames.iter().filter(|(_, x)| is_tone(x)).count();
    let caller_ringback = caller_frames
        .iter()
        .filter(|(t, x)| *t < bridged && is_ringback(x))
        .count();
    let peak = callee_before
        .iter()
        .map(|(_, x)| level_dbfs(x))
        .fold(-120.0, f64::max);
    println!(
        "whisper: callee heard {} tone frames ({:.2} s, peak {peak:.1} dBFS) before the bridge ({:?} after its 200), \
         {callee_after} after; caller heard {caller_tone} tone frames and {caller_ringback} ringback frames meanwhile",
        whisper.len(),
        whisper.len() as f64 * 0.02,
        bridged - answered
    );
    assert!(
        (45..=55).contains(&whisper.len()),
        "the whisper's 1 s tone: {} frames",
        whisper.len()
    );
    assert_eq!(callee_after, 0, "the whisper went on after the bridge");
    assert_eq!(caller_tone, 0, "the caller heard the whisper");
    assert!(
        caller_ringback > 10,
        "the caller hears ringback while the callee hears the whisper"
    );
    // The whisper document was fetched for the child call.
    let seen = f.app.lock().unwrap().seen.clone();
    let (_, params) = seen
        .iter()
        .find(|(p, _)| p == "whisper")
        .expect("whisper not fetched");
    assert_eq!(param(params, "To"), Some("+15550009001"), "{params:?}");

    f.caller_bye(&dialog).await;
    f.leg_gets_bye(Duration::from_secs(3)).await;
    assert_eq!(param(&f.after().await, "DialCallStatus"), Some("completed"));
    f.no_leaks().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_limit_ends_the_bridge() {
    let voice = r#"<Response><Dial action="/after" timeLimit="2"><Number>+15550010001</Number></Dial></Response>"#;
    let f = fixture(43700, voice, "<Response><Hangup/></Response>").await;
    let dialog = f.call().await;
    let invites = f.invites(1).await;
    let (_ok, uas_rtp, answered) = f.answer(&invites["+15550010001"]).await;
    let callee = capture(uas_rtp.clone());
    send_until_relayed(
        &f.caller_rtp,
        dialog.remote_rtp,
        &callee,
        0x55,
        Duration::from_secs(3),
    )
    .await
    .expect("not bridged");
    let (_, leg_bye) = f.leg_gets_bye(Duration::from_secs(6)).await;
    let after = f.after().await;
    let caller_bye = f.caller_gets_bye(Duration::from_secs(5)).await;
    println!(
        "timeLimit=2: leg BYE {:?} after its 200, DialCallDuration {:?}, caller BYE (action <Hangup/>) {:?} after",
        leg_bye - answered,
        param(&after, "DialCallDuration"),
        caller_bye - answered
    );
    assert!(
        leg_bye - answered >= Duration::from_millis(1900),
        "{:?}",
        leg_bye - answered
    );
    assert!(
        leg_bye - answered <= Duration::from_millis(3000),
        "{:?}",
        leg_bye - answered
    );
    assert_eq!(
        param(&after, "DialCallStatus"),
        Some("completed"),
        "{after:?}"
    );
    assert_eq!(param(&after, "DialCallDuration"), Some("2"), "{after:?}");
    f.no_leaks().await;
}
