//! The media plane beyond one bridge: bridges across workers, rooms (mix-minus, mute, hold,
//! coach, announcements, recording), several recordings at once, taps and feeds, against far
//! ends made of real UDP sockets on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use media::level::tone_dbfs;
use media::Codec;
use rtp::RtpSender;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn engine(port_min: u16, port_max: u16) -> MediaEngine {
    MediaEngine::start(MediaConfig {
        bind_ip: LOCALHOST,
        advertise_ip: LOCALHOST,
        port_min,
        port_max,
        workers: 2,
    })
    .expect("engine starts")
}

/// A far end talking to one stream: it sends a tone of its own frequency and keeps what it
/// hears.
struct Party {
    stream: Stream,
    rtp: Arc<UdpSocket>,
    _rtcp: UdpSocket,
    events: UnboundedReceiver<MediaEvent>,
    freq: f64,
}

impl Party {
    async fn new(engine: &MediaEngine, worker: usize, freq: f64, codec: Codec) -> Party {
        let (tx, events) = mpsc::unbounded_channel();
        let stream = engine.allocate_on_worker(worker, tx).expect("allocate");
        let rtp = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        let rtcp = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
        stream.set_remote(
            rtp.local_addr().expect("addr"),
            rtcp.local_addr().expect("addr"),
            codec,
            codec.payload_type(),
            Some(101),
        );
        Party {
            stream,
            rtp: Arc::new(rtp),
            _rtcp: rtcp,
            events,
            freq,
        }
    }

    fn to(&self) -> SocketAddr {
        SocketAddr::new(LOCALHOST, self.stream.local_port)
    }
}

fn sine_frame(freq: f64, n: usize, amplitude: f64) -> Vec<i16> {
    (0..media::FRAME_SAMPLES)
        .map(|i| {
            let t = (n * media::FRAME_SAMPLES + i) as f64 / 8000.0;
            (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
        })
        .collect()
}

/// Every party with `Some(codec)` talks for `seconds` (20 ms packets, real time) while every
/// party listens; returns what each heard, decoded (`codecs[i]` is party i's codec).
async fn converse(
    parties: &[&Party],
    talking: &[bool],
    codecs: &[Codec],
    seconds: f64,
) -> Vec<Vec<i16>> {
    let frames = (seconds * 50.0) as usize;
    let mut senders = Vec::new();
    for (i, party) in parties.iter().enumerate() {
        if !talking[i] {
            continue;
        }
        let socket = Arc::clone(&party.rtp);
        let to = party.to();
        let freq = party.freq;
        let codec = codecs[i];
        senders.push(tokio::spawn(async move {
            let mut sender = RtpSender::new(rand::random(), rand::random(), rand::random());
            let mut interval = tokio::time::interval(TICK);
            let (mut payload, mut packet) = (Vec::new(), Vec::new());
            for n in 0..frames {
                interval.tick().await;
                codec.encode(&sine_frame(freq, n, 6000.0), &mut payload);
                sender.write_packet(codec.payload_type(), 160, n == 0, &payload, &mut packet);
                socket.send_to(&packet, to).await.expect("send");
            }
        }));
    }
    let mut listeners = Vec::new();
    for (i, party) in parties.iter().enumerate() {
        let socket = Arc::clone(&party.rtp);
        let codec = codecs[i];
        let window = Duration::from_secs_f64(seconds + 0.1);
        listeners.push(tokio::spawn(async move {
            let mut heard = Vec::new();
            let mut pcm = Vec::new();
            let mut buf = [0u8; 2048];
            let deadline = tokio::time::Instant::now() + window;
            while let Ok(Ok((len, _))) =
                tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await
            {
                if let Ok(packet) = rtp::parse_rtp(&buf[..len]) {
                    if packet.header.payload_type == codec.payload_type() {
                        pcm.clear();
                        codec.decode(packet.payload, &mut pcm);
                        heard.extend_from_slice(&pcm);
                    }
                }
            }
            heard
        }));
    }
    for s in senders {
        s.await.expect("sender");
    }
    let mut out = Vec::new();
    for l in listeners {
        out.push(l.await.expect("listener"));
    }
    out
}

/// The level of `freq` in the steady part of `heard` (the first 200 ms skipped).
fn level(heard: &[i16], freq: f64) -> f32 {
    let steady = heard.get(1600..).unwrap_or_default();
    tone_dbfs(steady, freq, 8000)
}

fn assert_hears(heard: &[i16], freq: f64, what: &str) {
    let l = level(heard, freq);
    assert!(
        l > -35.0,
        "{what}: {freq} Hz should be heard, level {l:.1} dBFS over {} samples",
        heard.len()
    );
}

fn assert_not_hears(heard: &[i16], freq: f64, what: &str) {
    let l = level(heard, freq);
    assert!(
        l < -55.0,
        "{what}: {freq} Hz should not be heard, level {l:.1} dBFS"
    );
}

/// The next room event other than speech detection, within a second.
async fn next_room_event(events: &mut UnboundedReceiver<RoomEvent>) -> Option<RoomEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(RoomEvent::Speaking { .. })) => continue,
            Ok(event) => return event,
            Err(_) => return None,
        }
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_different_workers_are_bridged_undone_and_redone() {
    let engine = engine(45000, 45099);
    let a = Party::new(&engine, 0, 500.0, Codec::Pcmu).await;
    let b = Party::new(&engine, 1, 1300.0, Codec::Pcma).await;
    assert_ne!(
        a.stream.worker(),
        b.stream.worker(),
        "placed apart on purpose"
    );
    a.stream.bridge(&b.stream);
    assert_eq!(
        a.stream.worker(),
        b.stream.worker(),
        "a moved to b's worker"
    );
    settle().await;
    assert_eq!(engine.active_streams(), 2, "the move keeps the load count");
    let codecs = [Codec::Pcmu, Codec::Pcma];
    let heard = converse(&[&a, &b], &[true, true], &codecs, 1.0).await;
    assert_hears(&heard[0], 1300.0, "a");
    assert_hears(&heard[1], 500.0, "b");
    assert_not_hears(&heard[0], 500.0, "a (own voice)");

    // Undone: nothing crosses; redone from the other side, through a reference.
    a.stream.unbridge();
    settle().await;
    let heard = converse(&[&a, &b], &[true, true], &codecs, 0.6).await;
    assert!(
        heard[0].is_empty() && heard[1].is_empty(),
        "unbridged legs hear nothing"
    );
    b.stream.bridge_to(&a.stream.reference());
    settle().await;
    let heard = converse(&[&a, &b], &[true, true], &codecs, 1.0).await;
    assert_hears(&heard[0], 1300.0, "a after the new bridge");
    assert_hears(&heard[1], 500.0, "b after the new bridge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_given_while_a_stream_moves_arrive_in_order() {
    let engine = engine(45100, 45199);
    let a = Party::new(&engine, 0, 500.0, Codec::Pcmu).await;
    let mut b = Party::new(&engine, 1, 1300.0, Codec::Pcmu).await;
    // The bridge moves a; the play right after is for b (no move), and a's digits follow
    // its move: they must reach a wherever it is by then.
    a.stream.bridge(&b.stream);
    a.stream.send_digits(7, "1");
    b.stream.play(3, vec![1000i16; 1600].into(), 1);
    let mut a_events = a.events;
    let sent = tokio::time::timeout(Duration::from_secs(2), a_events.recv()).await;
    assert!(
        matches!(sent, Ok(Some(MediaEvent::DigitsSent { id: 7 }))),
        "{sent:?}"
    );
    let played = tokio::time::timeout(Duration::from_secs(2), b.events.recv()).await;
    assert!(
        matches!(played, Ok(Some(MediaEvent::PlaybackDone { id: 3 }))),
        "{played:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_mixes_each_participant_the_others_never_itself() {
    let engine = engine(45200, 45299);
    let (room_tx, mut room_events) = mpsc::unbounded_channel();
    let room = engine.create_room(Some(1), room_tx).expect("room");
    // Participants start on both workers; codecs differ, so the mix transcodes too.
    let p1 = Party::new(&engine, 0, 500.0, Codec::Pcmu).await;
    let p2 = Party::new(&engine, 1, 900.0, Codec::Pcma).await;
    let p3 = Party::new(&engine, 0, 1300.0, Codec::Pcmu).await;
    let codecs = [Codec::Pcmu, Codec::Pcma, Codec::Pcmu];
    let recording = std::env::temp_dir()
        .join(format!("dialtone-room-test-{}", std::process::id()))
        .join("room.wav");
    room.start_recording(9, recording.clone());
    for p in [&p1, &p2, &p3] {
        p.stream.join_room(&room, Participation::FULL);
    }
    for p in [&p1, &p2, &p3] {
        assert_eq!(
            p.stream.worker(),
            room.worker(),
            "participants move to the room"
        );
    }
    settle().await;
    let parties = [&p1, &p2, &p3];
    let heard = converse(&parties, &[true, true, true], &codecs, 1.2).await;
    for (i, p) in parties.iter().enumerate() {
        for (j, other) in parties.iter().enumerate() {
            if i == j {
                assert_not_hears(&heard[i], p.freq, &format!("p{} (itself)", i + 1));
            } else {
                assert_hears(
                    &heard[i],
                    other.freq,
                    &format!("p{} hears p{}", i + 1, j + 1),
                );
            }
        }
    }

    // Mute p1: nobody hears it, it still hears the others.
    p1.stream.join_room(
        &room,
        Participation {
            heard: false,
            ..Participation::FULL
        },
    );
    settle().await;
    let heard = converse(&parties, &[true, true, true], &codecs, 1.0).await;
    assert_not_hears(&heard[1], 500.0, "p2 (p1 muted)");
    assert_not_hears(&heard[2], 500.0, "p3 (p1 muted)");
    assert_hears(&heard[0], 900.0, "muted p1 still hears p2");

    // Hold p2 with hold audio: it hears only that, the room no longer hears it.
    p1.stream.join_room(&room, Participation::FULL);
    p2.stream.join_room(&room, Participation::APART);
    let hold: Vec<i16> = (0..8000)
        .flat_map(|n| sine_frame(2000.0, n, 6000.0))
        .take(8000)
        .collect();
    p2.stream.play(1, hold.into(), 0);
    settle().await;
    let heard = converse(&parties, &[true, true, true], &codecs, 1.0).await;
    assert_hears(&heard[1], 2000.0, "held p2 hears the hold audio");
    assert_not_hears(&heard[1], 500.0, "held p2 does not hear the room");
    assert_not_hears(&heard[0], 900.0, "p1 (p2 held)");
    assert_not_hears(&heard[0], 2000.0, "p1 (p2's hold audio is p2's alone)");

    // Back from hold; p3 coaches p1: only p1 hears p3.
    p2.stream.stop_playback();
    p2.stream.join_room(&room, Participation::FULL);
    p3.stream.join_room(
        &room,
        Participation {
            coach_of: Some(p1.stream.id()),
            ..Participation::FULL
        },
    );
    settle().await;
    let heard = converse(&parties, &[true, true, true], &codecs, 1.0).await;
    assert_hears(&heard[0], 1300.0, "coached p1 hears the coach");
    assert_not_hears(&heard[1], 1300.0, "p2 does not hear the coach");
    assert_hears(&heard[2], 500.0, "the coach hears p1");
    assert_hears(&heard[2], 900.0, "the coach hears p2");
    assert_hears(&heard[1], 500.0, "p2 hears p1 again");

    // An announcement into the room: everyone hears it.
    let tone: Vec<i16> = (0..50)
        .flat_map(|n| sine_frame(1700.0, n, 6000.0))
        .collect();
    room.play(4, tone.into(), 1);
    let heard = converse(&parties, &[false, false, false], &codecs, 1.0).await;
    for (i, h) in heard.iter().enumerate() {
        assert_hears(h, 1700.0, &format!("p{} hears the announcement", i + 1));
    }
    let done = next_room_event(&mut room_events).await;
    assert!(
        matches!(done, Some(RoomEvent::PlaybackDone { id: 4 })),
        "{done:?}"
    );

    room.stop_recording(9);
    let stopped = next_room_event(&mut room_events).await;
    let Some(RoomEvent::RecordingStopped { path, duration, .. }) = stopped else {
        panic!("room recording did not stop: {stopped:?}");
    };
    assert!(duration > Duration::from_secs(4), "{duration:?}");
    let samples: Vec<i16> = hound::WavReader::open(&path)
        .expect("wav")
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    // The first phase (everyone talking): all three voices are in the room's recording.
    let first = samples.get(2400..9600).unwrap_or_default();
    for f in [500.0, 900.0, 1300.0] {
        assert!(
            tone_dbfs(first, f, 8000) > -35.0,
            "{f} Hz in the room recording"
        );
    }
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_recordings_and_taps_run_at_once_each_complete() {
    let engine = engine(45300, 45399);
    let a = Party::new(&engine, 0, 500.0, Codec::Pcmu).await;
    let b = Party::new(&engine, 1, 1300.0, Codec::Pcmu).await;
    let dir = std::env::temp_dir().join(format!("dialtone-multirec-{}", std::process::id()));
    a.stream.start_call_recording(1, dir.join("call.wav"), 2);
    let inbound = a.stream.tap(5, Track::Inbound);
    let both = a.stream.tap(6, Track::Both);
    a.stream.bridge(&b.stream);
    settle().await;
    let codecs = [Codec::Pcmu, Codec::Pcmu];
    let _ = converse(&[&a, &b], &[true, true], &codecs, 0.6).await;
    // A second recording starts while the first runs (a <Dial record> during a recorded call).
    a.stream.start_call_recording(2, dir.join("dial.wav"), 1);
    let _ = converse(&[&a, &b], &[true, true], &codecs, 0.6).await;
    a.stream.stop_recording(2);
    a.stream.stop_recording(1);
    let mut a_events = a.events;
    let mut stopped = Vec::new();
    while stopped.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(2), a_events.recv()).await {
            Ok(Some(MediaEvent::RecordingStopped {
                id, duration, path, ..
            })) => stopped.push((id, duration, path)),
            Ok(Some(_)) => {}
            other => panic!("recordings did not both stop: {other:?}"),
        }
    }
    stopped.sort_by_key(|s| s.0);
    let (_, call_duration, call_path) = &stopped[0];
    let (_, dial_duration, dial_path) = &stopped[1];
    assert!(
        *call_duration >= Duration::from_millis(1100),
        "{call_duration:?}"
    );
    assert!(
        *dial_duration >= Duration::from_millis(500) && dial_duration < call_duration,
        "{dial_duration:?}"
    );
    let call = hound::WavReader::open(call_path).expect("wav");
    assert_eq!(call.spec().channels, 2);
    let interleaved: Vec<i16> = call
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let left: Vec<i16> = interleaved.iter().step_by(2).copied().collect();
    let right: Vec<i16> = interleaved.iter().skip(1).step_by(2).copied().collect();
    assert!(
        tone_dbfs(&left, 500.0, 8000) > -35.0,
        "received side holds a's voice"
    );
    assert!(
        tone_dbfs(&right, 1300.0, 8000) > -35.0,
        "sent side holds b's voice"
    );
    let dial: Vec<i16> = hound::WavReader::open(dial_path)
        .expect("wav")
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    assert!(tone_dbfs(&dial, 500.0, 8000) > -35.0 && tone_dbfs(&dial, 1300.0, 8000) > -35.0);

    let inbound: Vec<TapFrame> = inbound.try_iter().collect();
    let both: Vec<TapFrame> = both.try_iter().collect();
    assert!(inbound.iter().all(|f| f.track == Track::Inbound));
    assert!(
        inbound.len() >= 40,
        "inbound tap got {} frames (up to 50 queued)",
        inbound.len()
    );
    assert!(
        both.iter().any(|f| f.track == Track::Outbound)
            && both.iter().any(|f| f.track == Track::Inbound)
    );
    let pcm: Vec<i16> = inbound.iter().flat_map(|f| f.pcm().to_vec()).collect();
    assert!(tone_dbfs(&pcm, 500.0, 8000) > -35.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_is_sent_frame_by_frame_with_its_marks() {
    let engine = engine(45400, 45499);
    let mut a = Party::new(&engine, 0, 500.0, Codec::Pcmu).await;
    let feed = a.stream.feed(3, 100);
    for n in 0..25 {
        let frame: [i16; media::FRAME_SAMPLES] =
            sine_frame(700.0, n, 6000.0).try_into().expect("160");
        feed.send(FeedItem::Audio(frame)).expect("feed");
    }
    feed.send(FeedItem::Mark(42)).expect("mark");
    drop(feed);
    let heard = converse(&[&a], &[false], &[Codec::Pcmu], 0.8)
        .await
        .remove(0);
    assert_eq!(heard.len(), 25 * 160, "every fed frame sent once");
    assert!(tone_dbfs(&heard, 700.0, 8000) > -35.0);
    let mut seen = Vec::new();
    while let Ok(event) = a.events.try_recv() {
        seen.push(event);
    }
    assert_eq!(
        seen,
        vec![
            MediaEvent::FeedMark { id: 3, mark: 42 },
            MediaEvent::FeedEnded { id: 3 }
        ]
    );
}
