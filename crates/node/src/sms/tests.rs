//! The pool against a tiny SMSC written here with the `smpp` crate's codec: binds, submits with
//! message ids, deliveries and receipts whose answers are watched, throttling, dropped
//! connections. (Independent SMSCs are in the interop suite, `tests/smsc`.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smpp::pdu::esm_class;
use smpp::{Address, Body, BindResp, CommandStatus, Framer, Pdu, Sm, SmResp, Tlvs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;

enum ConnCmd {
    Deliver(Sm),
    Close,
}

#[derive(Default)]
struct SmscState {
    binds: AtomicUsize,
    throttle_next: AtomicUsize,
    reject_next: AtomicUsize,
    submits: Mutex<Vec<Sm>>,
    current: Mutex<Option<mpsc::UnboundedSender<ConnCmd>>>,
}

/// An SMSC on a loopback port that accepts any bind.
struct TestSmsc {
    port: u16,
    state: Arc<SmscState>,
    /// The answers to our deliver_sm: (sequence number, status).
    resps: mpsc::UnboundedReceiver<(u32, CommandStatus)>,
}

impl TestSmsc {
    async fn start() -> TestSmsc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(SmscState::default());
        let (resp_tx, resps) = mpsc::unbounded_channel();
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (tx, rx) = mpsc::unbounded_channel();
                *st.current.lock().unwrap() = Some(tx);
                tokio::spawn(serve(stream, st.clone(), rx, resp_tx.clone()));
            }
        });
        TestSmsc { port, state, resps }
    }

    fn config(&self, name: &str) -> SmscConfig {
        SmscConfig::new(name, "127.0.0.1", self.port, "dialtone", "secret")
    }

    fn send(&self, cmd: ConnCmd) {
        let current = self.state.current.lock().unwrap();
        let _ = current.as_ref().expect("a connection").send(cmd);
    }

    fn submits(&self) -> Vec<Sm> {
        self.state.submits.lock().unwrap().clone()
    }

    async fn next_resp(&mut self) -> (u32, CommandStatus) {
        tokio::time::timeout(Duration::from_secs(5), self.resps.recv()).await.expect("a deliver_sm_resp").unwrap()
    }

    /// No deliver_sm_resp arrives for a while.
    async fn no_resp(&mut self) {
        assert!(tokio::time::timeout(Duration::from_millis(200), self.resps.recv()).await.is_err());
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    st: Arc<SmscState>,
    mut cmds: mpsc::UnboundedReceiver<ConnCmd>,
    resps: mpsc::UnboundedSender<(u32, CommandStatus)>,
) {
    let mut framer = Framer::new();
    let mut buf = vec![0u8; 65536];
    let mut seq = 1000;
    loop {
        tokio::select! {
            n = stream.read(&mut buf) => {
                let n = match n { Ok(0) | Err(_) => return, Ok(n) => n };
                framer.push(&buf[..n]);
                while let Ok(Some(frame)) = framer.pop() {
                    let pdu = Pdu::parse(&frame).unwrap();
                    let s = pdu.sequence_number;
                    let reply = match pdu.body {
                        Body::Bind(b) => {
                            st.binds.fetch_add(1, Ordering::SeqCst);
                            let body = BindResp { mode: b.mode, system_id: "TESTSMSC".into(), tlvs: Tlvs::default() };
                            Some(Pdu::response(s, CommandStatus::ESME_ROK, Body::BindResp(body)))
                        }
                        Body::EnquireLink => Some(Pdu::response(s, CommandStatus::ESME_ROK, Body::EnquireLinkResp)),
                        Body::Unbind => Some(Pdu::response(s, CommandStatus::ESME_ROK, Body::UnbindResp)),
                        Body::SubmitSm(sm) => {
                            let take = |a: &AtomicUsize| a.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                            let (status, id) = if take(&st.throttle_next) {
                                (CommandStatus::ESME_RTHROTTLED, String::new())
                            } else if take(&st.reject_next) {
                                (CommandStatus::ESME_RINVDSTADR, String::new())
                            } else {
                                let mut submits = st.submits.lock().unwrap();
                                submits.push(*sm);
                                (CommandStatus::ESME_ROK, format!("id{}", submits.len()))
                            };
                            let body = SmResp { message_id: id, tlvs: Tlvs::default() };
                            Some(Pdu::response(s, status, Body::SubmitSmResp(body)))
                        }
                        Body::DeliverSmResp(_) => {
                            let _ = resps.send((s, pdu.command_status));
                            None
                        }
                        _ => None,
                    };
                    if let Some(reply) = reply {
                        stream.write_all(&reply.encode().unwrap()).await.unwrap();
                    }
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(ConnCmd::Deliver(sm)) => {
                    seq += 1;
                    let bytes = Pdu::request(seq, Body::DeliverSm(Box::new(sm))).encode().unwrap();
                    stream.write_all(&bytes).await.unwrap();
                }
                Some(ConnCmd::Close) | None => return,
            },
        }
    }
}

/// Waits until `pool` reports `n` binds up on its first SMSC.
async fn binds_up(pool: &SmscPool, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pool.status()[0].binds_up != n {
        assert!(tokio::time::Instant::now() < deadline, "binds_up never {n}: {:?}", pool.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sms(to: &str, text: &str) -> OutboundSms {
    OutboundSms { from: "+15550001111".into(), to: to.into(), text: text.into(), validity: None }
}

fn mo(text: &str) -> Sm {
    Sm {
        source: Address::international("+15550002222"),
        destination: Address::international("+15550001111"),
        short_message: smpp::text::gsm7_encode(text).unwrap(),
        ..Sm::default()
    }
}

async fn next_event(events: &mut mpsc::Receiver<SmsEvent>) -> SmsEvent {
    tokio::time::timeout(Duration::from_secs(5), events.recv()).await.expect("an event").unwrap()
}

#[tokio::test]
async fn submits_in_parts_and_hands_over_deliveries_acked_after_storing() {
    let mut smsc = TestSmsc::start().await;
    let (pool, mut events) = SmscPool::start(vec![smsc.config("sim")]).unwrap();
    binds_up(&pool, 1).await;

    let out = pool.submit(&OutboundSms { validity: Some(Duration::from_secs(3600)), ..sms("+15550002222", "Hi") }).await;
    assert_eq!(
        out,
        SubmitOutcome::Sent { smsc: "sim".into(), parts: vec![PartOutcome::Accepted { message_id: "id1".into() }] }
    );
    let long = "x".repeat(200);
    let out = pool.submit(&sms("+15550002222", &long)).await;
    assert!(out.accepted(), "{out:?}");
    let submits = smsc.submits();
    assert_eq!(submits.len(), 3);
    let first = &submits[0];
    assert_eq!((first.destination.ton, first.destination.npi, first.destination.addr.as_str()), (1, 1, "15550002222"));
    assert_eq!(first.source.addr, "15550001111");
    assert_eq!((first.registered_delivery, first.data_coding), (1, 0));
    assert_eq!(first.validity_period, "000000010000000R");
    // The two parts: in order, one reference, a UDH each.
    assert_eq!(submits[1].esm_class & esm_class::UDHI, esm_class::UDHI);
    assert_eq!(&submits[1].short_message[..6], &[5, 0, 3, submits[1].short_message[3], 2, 1]);
    assert_eq!(&submits[2].short_message[..6], &[5, 0, 3, submits[1].short_message[3], 2, 2]);

    // An incoming message: answered only once the consumer stored it.
    smsc.send(ConnCmd::Deliver(mo("hello there")));
    let SmsEvent::Incoming { smsc: name, from, to, text, segments, ack } = next_event(&mut events).await else {
        panic!("not a message")
    };
    assert_eq!((name.as_str(), from.as_str(), to.as_str()), ("sim", "+15550002222", "+15550001111"));
    assert_eq!((text.as_str(), segments, ack.parts()), ("hello there", 1, 1));
    smsc.no_resp().await;
    ack.stored();
    assert_eq!(smsc.next_resp().await.1, CommandStatus::ESME_ROK);

    // A receipt, refused by the consumer: the SMSC is told to try again.
    let receipt = Sm {
        esm_class: esm_class::DELIVERY_RECEIPT,
        short_message: b"id:id1 sub:001 dlvrd:001 submit date:2401010000 done date:2401010000 stat:DELIVRD err:000 text:".to_vec(),
        ..mo("")
    };
    smsc.send(ConnCmd::Deliver(receipt));
    let SmsEvent::Receipt { receipt, ack, .. } = next_event(&mut events).await else { panic!("not a receipt") };
    assert_eq!(receipt.message_id, "id1");
    assert_eq!(receipt.state, Some(smpp::MessageState::Delivered));
    ack.refuse(CommandStatus::ESME_RX_T_APPN);
    assert_eq!(smsc.next_resp().await.1, CommandStatus::ESME_RX_T_APPN);

    // A dropped ack refuses too.
    smsc.send(ConnCmd::Deliver(mo("dropped")));
    drop(next_event(&mut events).await);
    assert_eq!(smsc.next_resp().await.1, CommandStatus::ESME_RX_T_APPN);

    let s = &pool.status()[0];
    assert_eq!((s.submitted, s.accepted, s.delivered_in, s.receipts_in), (3, 3, 2, 1));
    let mut metrics = String::new();
    pool.write_metrics(&mut metrics);
    assert!(metrics.contains("dialtone_smsc_binds_up{smsc=\"sim\"} 1\n"), "{metrics}");
    assert!(metrics.contains("dialtone_smsc_accepted_total{smsc=\"sim\"} 3\n"), "{metrics}");
}

#[tokio::test]
async fn the_parts_of_a_long_incoming_message_are_acked_together() {
    let mut smsc = TestSmsc::start().await;
    let (pool, mut events) = SmscPool::start(vec![smsc.config("sim")]).unwrap();
    binds_up(&pool, 1).await;
    let part = |seq: u8, text: &str| {
        let mut sm = mo("");
        sm.esm_class = esm_class::UDHI;
        sm.short_message = vec![5, 0, 3, 42, 2, seq];
        sm.short_message.extend_from_slice(&smpp::text::gsm7_encode(text).unwrap());
        sm
    };
    smsc.send(ConnCmd::Deliver(part(2, "world")));
    smsc.no_resp().await;
    smsc.send(ConnCmd::Deliver(part(1, "hello ")));
    let SmsEvent::Incoming { text, segments, ack, .. } = next_event(&mut events).await else { panic!() };
    assert_eq!((text.as_str(), segments, ack.parts()), ("hello world", 2, 2));
    smsc.no_resp().await;
    ack.stored();
    assert_eq!(smsc.next_resp().await.1, CommandStatus::ESME_ROK);
    assert_eq!(smsc.next_resp().await.1, CommandStatus::ESME_ROK);
    assert_eq!(pool.status()[0].delivered_in, 1);
}

#[tokio::test]
async fn reconnects_after_the_smsc_drops_the_connection() {
    let smsc = TestSmsc::start().await;
    let (pool, _events) = SmscPool::start(vec![smsc.config("sim")]).unwrap();
    binds_up(&pool, 1).await;
    smsc.send(ConnCmd::Close);
    binds_up(&pool, 0).await;
    // Back after the first back-off delay (1 s).
    binds_up(&pool, 1).await;
    assert_eq!(smsc.state.binds.load(Ordering::SeqCst), 2);
    assert!(pool.submit(&sms("+15550002222", "again")).await.accepted());
}

#[tokio::test]
async fn throttled_parts_are_sent_again_after_the_pause_and_refusals_are_reported() {
    let smsc = TestSmsc::start().await;
    let (pool, _events) = SmscPool::start(vec![smsc.config("sim")]).unwrap();
    binds_up(&pool, 1).await;
    smsc.state.throttle_next.store(1, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let out = pool.submit(&sms("+15550002222", "patience")).await;
    assert!(out.accepted(), "{out:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "resent before the pause ended");
    let s = &pool.status()[0];
    assert_eq!((s.submitted, s.throttled, s.accepted), (2, 1, 1));

    // A refused first part: the second is never sent.
    smsc.state.reject_next.store(1, Ordering::SeqCst);
    let out = pool.submit(&sms("+15550002222", &"y".repeat(300))).await;
    let SubmitOutcome::Sent { parts, .. } = &out else { panic!("{out:?}") };
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0], PartOutcome::Rejected { status: CommandStatus::ESME_RINVDSTADR });
    assert_eq!(parts[0].twilio_error().map(|e| e.code()), Some(21211));
    assert_eq!(parts[1], PartOutcome::NotSent);
    assert_eq!(smsc.submits().len(), 1);
}

#[tokio::test]
async fn routes_by_longest_prefix_and_says_when_nothing_can_send() {
    let wide = TestSmsc::start().await;
    let narrow = TestSmsc::start().await;
    // A port nothing listens on: that SMSC stays down.
    let dead_port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let mut down = SmscConfig::new("down", "127.0.0.1", dead_port, "x", "y");
    down.prefixes = vec!["+44".into()];
    let mut a = wide.config("wide");
    a.prefixes = vec!["+1".into()];
    let mut b = narrow.config("narrow");
    b.prefixes = vec!["+1555".into(), "+33".into()];
    let (pool, _events) = SmscPool::start(vec![a, b, down]).unwrap();
    binds_up(&pool, 1).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while pool.status()[1].binds_up != 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let smsc_of = |o: SubmitOutcome| match o {
        SubmitOutcome::Sent { smsc, .. } => smsc,
        other => panic!("{other:?}"),
    };
    assert_eq!(smsc_of(pool.submit(&sms("+15550002222", "a")).await), "narrow");
    assert_eq!(smsc_of(pool.submit(&sms("+12125550000", "b")).await), "wide");
    assert_eq!(smsc_of(pool.submit(&sms("+33612345678", "c")).await), "narrow");
    assert_eq!(pool.submit(&sms("+4915100000", "d")).await, SubmitOutcome::NoRoute);
    assert_eq!(pool.submit(&sms("+447700900000", "e")).await, SubmitOutcome::NoBindUp);
    assert_eq!((wide.submits().len(), narrow.submits().len()), (1, 2));
}

#[tokio::test]
async fn a_consumer_that_is_gone_gets_deliveries_refused_for_later() {
    let mut smsc = TestSmsc::start().await;
    let (pool, events) = SmscPool::start(vec![smsc.config("sim")]).unwrap();
    binds_up(&pool, 1).await;
    drop(events);
    smsc.send(ConnCmd::Deliver(mo("nobody home")));
    assert_eq!(smsc.next_resp().await.1, CommandStatus::ESME_RX_T_APPN);
    assert_eq!(pool.status()[0].delivered_in, 0);
}

#[test]
fn config_is_checked_once() {
    let ok = SmscConfig::new("a", "127.0.0.1", 2775, "id", "pw");
    assert_eq!(check(std::slice::from_ref(&ok)), Ok(()));
    assert_eq!(check(&[ok.clone(), ok.clone()]), Err(SmscConfigError::DuplicateName("a".into())));
    assert_eq!(check(&[SmscConfig { port: 0, ..ok.clone() }]), Err(SmscConfigError::PortZero("a".into())));
    assert_eq!(check(&[SmscConfig { binds: 0, ..ok.clone() }]), Err(SmscConfigError::NoBinds("a".into())));
    assert!(matches!(
        check(&[SmscConfig { binds: 3, tps: Some(2), ..ok.clone() }]),
        Err(SmscConfigError::TpsBelowBinds { .. })
    ));
    assert!(!format!("{ok:?}").contains("pw"), "the password stays out of logs");
    assert_eq!(relative_validity(Duration::from_secs(90_061)), "000001010101000R");
    let mut p = ok.clone();
    p.prefixes = vec!["+1".into(), "+1555".into()];
    assert_eq!((p.matches("+15551234"), p.matches("+1212"), p.matches("+33")), (Some(5), Some(2), None));
    // Alphanumeric senders go as TON 5; UCS-2 when GSM-7 cannot carry the text.
    let parts = build_parts(&ok, &OutboundSms { from: "Dialtone".into(), ..sms("+15550002222", "€ ok ✓") }, 1).unwrap();
    assert_eq!((parts[0].source.ton, parts[0].source.addr.as_str(), parts[0].data_coding), (5, "Dialtone", 8));
}
