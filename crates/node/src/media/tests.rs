//! The media engine against a far end made of real UDP sockets on 127.0.0.1.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use media::Codec;
use rtp::dtmf::DtmfSender;
use rtp::RtpSender;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const TE_PT: u8 = 101;

/// Each test gets its own slice of ports so tests can run in parallel.
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

/// The far end: an RTP and an RTCP socket.
struct FarEnd {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl FarEnd {
    async fn new() -> FarEnd {
        FarEnd {
            rtp: UdpSocket::bind((LOCALHOST, 0)).await.expect("bind far RTP"),
            rtcp: UdpSocket::bind((LOCALHOST, 0))
                .await
                .expect("bind far RTCP"),
        }
    }

    fn connect(&self, stream: &Stream, codec: Codec, pt: u8) {
        stream.set_remote(
            self.rtp.local_addr().expect("addr"),
            self.rtcp.local_addr().expect("addr"),
            codec,
            pt,
            Some(TE_PT),
        );
    }

    /// Sends `samples` as 20 ms packets in real time.
    async fn send_audio(
        &self,
        to: SocketAddr,
        sender: &mut RtpSender,
        codec: Codec,
        pt: u8,
        samples: &[i16],
    ) {
        let mut interval = tokio::time::interval(TICK);
        let mut payload = Vec::new();
        let mut packet = Vec::new();
        for (n, frame) in samples.chunks(media::FRAME_SAMPLES).enumerate() {
            interval.tick().await;
            payload.clear();
            codec.encode(frame, &mut payload);
            sender.write_packet(pt, frame.len() as u32, n == 0, &payload, &mut packet);
            self.rtp.send_to(&packet, to).await.expect("send");
        }
    }
}

fn tone(seconds: f64, amplitude: f64) -> Vec<i16> {
    let n = (seconds * 8000.0) as usize;
    (0..n)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 8000.0).sin()) as i16
        })
        .collect()
}

async fn next_event(
    events: &mut UnboundedReceiver<MediaEvent>,
    within: Duration,
) -> Option<MediaEvent> {
    tokio::time::timeout(within, events.recv())
        .await
        .ok()
        .flatten()
}

fn rms_dbfs(samples: &[i16]) -> f32 {
    media::level::rms_dbfs(samples)
}

fn to_local(stream: &Stream) -> SocketAddr {
    SocketAddr::new(LOCALHOST, stream.local_port)
}

fn temp_wav(name: &str) -> PathBuf {
    std::env::temp_dir()
        .join(format!("dialtone-media-test-{}", std::process::id()))
        .join(format!("{name}.wav"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_second_tone_is_fifty_paced_packets() {
    let engine = engine(41000, 41099);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    assert_eq!(stream.local_port % 2, 0);
    let far = FarEnd::new().await;
    far.connect(&stream, Codec::Pcmu, 0);
    let samples = tone(1.0, 8000.0);
    stream.play(7, samples.into(), 1);

    let mut received = Vec::new();
    let mut buf = [0u8; 2048];
    let mut done_at = None;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        tokio::select! {
            r = far.rtp.recv_from(&mut buf) => {
                let (len, from) = r.expect("recv");
                assert_eq!(from.port(), stream.local_port, "symmetric RTP: sent from the RTP port");
                let packet = rtp::parse_rtp(&buf[..len]).expect("valid RTP");
                let mut pcm = Vec::new();
                Codec::Pcmu.decode(packet.payload, &mut pcm);
                received.push((Instant::now(), packet.header, pcm));
            }
            e = events.recv() => {
                assert_eq!(e, Some(MediaEvent::PlaybackDone { id: 7 }));
                done_at = Some(Instant::now());
                break;
            }
            _ = tokio::time::sleep_until(deadline.into()) => break,
        }
    }
    assert!(done_at.is_some(), "PlaybackDone arrives");
    // The last packet may still be in the socket when the event is seen; after
    // it nothing more comes (silence suppression).
    while let Ok(r) =
        tokio::time::timeout(Duration::from_millis(200), far.rtp.recv_from(&mut buf)).await
    {
        let (len, _) = r.expect("recv");
        let packet = rtp::parse_rtp(&buf[..len]).expect("valid RTP");
        let mut pcm = Vec::new();
        Codec::Pcmu.decode(packet.payload, &mut pcm);
        received.push((Instant::now(), packet.header, pcm));
        assert!(
            received.len() <= 60,
            "packets keep coming after PlaybackDone"
        );
    }

    assert!(
        (49..=51).contains(&received.len()),
        "{} packets",
        received.len()
    );
    let first = received[0].1;
    assert!(first.marker, "marker on the first packet of the talkspurt");
    assert_eq!(first.payload_type, 0);
    for (n, (_, header, pcm)) in received.iter().enumerate() {
        assert_eq!(header.sequence, first.sequence.wrapping_add(n as u16));
        assert_eq!(
            header.timestamp,
            first.timestamp.wrapping_add(160 * n as u32)
        );
        assert_eq!(header.ssrc, first.ssrc);
        assert_eq!(header.marker, n == 0);
        assert_eq!(pcm.len(), 160);
    }
    let span = received.last().expect("packets").0 - received[0].0;
    let spacing = span / (received.len() as u32 - 1);
    assert!(
        spacing > Duration::from_millis(17) && spacing < Duration::from_millis(23),
        "average spacing {spacing:?}"
    );
    let all: Vec<i16> = received
        .iter()
        .flat_map(|(_, _, pcm)| pcm.iter().copied())
        .collect();
    // A sine of amplitude 8000: RMS 8000/sqrt(2), about -15.3 dBFS.
    let level = rms_dbfs(&all);
    assert!((level - -15.3).abs() < 1.0, "level {level} dBFS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playback_is_replaced_stopped_and_silent_on_hold() {
    let engine = engine(41100, 41199);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = FarEnd::new().await;
    far.connect(&stream, Codec::Pcma, 8);
    let mut buf = [0u8; 2048];

    // Looping forever, then replaced by a short one: only the short one is reported.
    stream.play(1, tone(0.1, 4000.0).into(), 0);
    let (len, _) = far.rtp.recv_from(&mut buf).await.expect("recv");
    assert_eq!(
        rtp::parse_rtp(&buf[..len])
            .expect("RTP")
            .header
            .payload_type,
        8
    );
    stream.play(2, tone(0.1, 4000.0).into(), 2);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(2)).await,
        Some(MediaEvent::PlaybackDone { id: 2 })
    );

    // Stopped: no event, no more packets.
    stream.play(3, tone(5.0, 4000.0).into(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.stop_playback();
    tokio::time::sleep(Duration::from_millis(60)).await;
    while far.rtp.try_recv_from(&mut buf).is_ok() {}
    assert!(
        tokio::time::timeout(Duration::from_millis(200), far.rtp.recv_from(&mut buf))
            .await
            .is_err()
    );
    assert_eq!(
        next_event(&mut events, Duration::from_millis(100)).await,
        None
    );

    // On hold: nothing is sent, and the playback still ends on time.
    stream.set_hold(true);
    stream.play(4, tone(0.2, 4000.0).into(), 1);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(2)).await,
        Some(MediaEvent::PlaybackDone { id: 4 })
    );
    assert!(
        far.rtp.try_recv_from(&mut buf).is_err(),
        "nothing sent on hold"
    );
    // Off hold: the next talkspurt starts with the marker bit.
    stream.set_hold(false);
    stream.play(5, tone(0.1, 4000.0).into(), 1);
    let (len, _) = far.rtp.recv_from(&mut buf).await.expect("recv");
    assert!(rtp::parse_rtp(&buf[..len]).expect("RTP").header.marker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rfc4733_digit_is_one_event() {
    let engine = engine(41200, 41299);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = FarEnd::new().await;
    far.connect(&stream, Codec::Pcmu, 0);
    let to = to_local(&stream);

    let mut sender = RtpSender::new(0xfeed, 100, 5000);
    let mut packet = Vec::new();
    let mut interval = tokio::time::interval(TICK);
    for digit in ['1', '5', '#', '9'] {
        let mut dtmf = DtmfSender::new(digit, TE_PT, Duration::from_millis(100)).expect("digit");
        while let Some((header, payload)) = dtmf.poll_packet(&mut sender) {
            interval.tick().await;
            rtp::write_rtp(&header, &payload, &mut packet);
            far.rtp.send_to(&packet, to).await.expect("send");
            // Some far ends send every packet twice.
            far.rtp.send_to(&packet, to).await.expect("send");
        }
        // A gap of audio between digits.
        far.send_audio(to, &mut sender, Codec::Pcmu, 0, &tone(0.06, 1000.0))
            .await;
    }
    let mut digits = String::new();
    while let Some(event) = next_event(&mut events, Duration::from_millis(300)).await {
        match event {
            MediaEvent::Dtmf { digit } => digits.push(digit),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(digits, "15#9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_stops_on_silence_with_the_tone_kept() {
    let engine = engine(41300, 41399);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = FarEnd::new().await;
    far.connect(&stream, Codec::Pcmu, 0);
    let path = temp_wav("silence");
    let _ = std::fs::remove_file(&path);
    stream.start_recording(
        11,
        path.clone(),
        Duration::from_secs(30),
        Some(Duration::from_secs(1)),
    );
    // Let the command reach the worker before the audio does.
    tokio::time::sleep(Duration::from_millis(40)).await;

    let to = to_local(&stream);
    let mut sender = RtpSender::new(0xabc, 1, 1);
    far.send_audio(to, &mut sender, Codec::Pcmu, 0, &tone(2.0, 8000.0))
        .await;
    // Then silence packets (as a far end without silence suppression sends),
    // until the recording ends.
    let silence = vec![0i16; media::FRAME_SAMPLES];
    let mut event = None;
    for _ in 0..150 {
        far.send_audio(to, &mut sender, Codec::Pcmu, 0, &silence)
            .await;
        if let Ok(e) = events.try_recv() {
            event = Some(e);
            break;
        }
    }
    let Some(MediaEvent::RecordingStopped {
        id,
        duration,
        stop,
        path: done,
    }) = event
    else {
        panic!("recording did not stop on silence: {event:?}");
    };
    assert_eq!((id, stop, &done), (11, RecordStop::Silence, &path));
    assert!(
        duration >= Duration::from_millis(1900) && duration <= Duration::from_millis(2100),
        "kept {duration:?}"
    );
    let mut reader = hound::WavReader::open(&path).expect("a complete WAV");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    assert_eq!(samples.len() as f64 / 8000.0, duration.as_secs_f64());
    let level = rms_dbfs(&samples);
    assert!((level - -15.3).abs() < 1.0, "level {level} dBFS");
    assert!(
        !super::recording::temp_path_of(&path).exists(),
        "no temporary file left"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_stops_at_max_length_on_stop_and_on_drop() {
    let engine = engine(41400, 41499);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = FarEnd::new().await;
    far.connect(&stream, Codec::Pcmu, 0);
    let to = to_local(&stream);
    let mut sender = RtpSender::new(0xdef, 1, 1);

    let path = temp_wav("max");
    stream.start_recording(1, path.clone(), Duration::from_millis(500), None);
    tokio::time::sleep(Duration::from_millis(40)).await;
    far.send_audio(to, &mut sender, Codec::Pcmu, 0, &tone(0.8, 8000.0))
        .await;
    match next_event(&mut events, Duration::from_secs(1)).await {
        Some(MediaEvent::RecordingStopped {
            id: 1,
            duration,
            stop: RecordStop::MaxLength,
            ..
        }) => {
            assert!(
                duration <= Duration::from_millis(500) && duration >= Duration::from_millis(400),
                "{duration:?}"
            );
        }
        other => panic!("expected MaxLength, got {other:?}"),
    }
    let _ = std::fs::remove_file(&path);

    let path = temp_wav("stopped");
    stream.start_recording(2, path.clone(), Duration::from_secs(60), None);
    tokio::time::sleep(Duration::from_millis(40)).await;
    far.send_audio(to, &mut sender, Codec::Pcmu, 0, &tone(0.3, 8000.0))
        .await;
    stream.stop_recording(99); // not the running one: ignored
    stream.stop_recording(2);
    match next_event(&mut events, Duration::from_secs(1)).await {
        Some(MediaEvent::RecordingStopped {
            id: 2,
            duration,
            stop: RecordStop::Stopped,
            ..
        }) => {
            assert!(duration >= Duration::from_millis(200), "{duration:?}");
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert!(hound::WavReader::open(&path).is_ok());
    let _ = std::fs::remove_file(&path);

    let path = temp_wav("hangup");
    stream.start_recording(3, path.clone(), Duration::from_secs(60), None);
    tokio::time::sleep(Duration::from_millis(40)).await;
    far.send_audio(to, &mut sender, Codec::Pcmu, 0, &tone(0.2, 8000.0))
        .await;
    drop(stream);
    match next_event(&mut events, Duration::from_secs(1)).await {
        Some(MediaEvent::RecordingStopped {
            id: 3,
            stop: RecordStop::Hangup,
            ..
        }) => {}
        other => panic!("expected Hangup, got {other:?}"),
    }
    assert!(hound::WavReader::open(&path).is_ok());
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_streams_leave_no_port_behind() {
    let engine = engine(42000, 42999);
    for _ in 0..10 {
        let streams: Vec<Stream> = (0..100)
            .map(|_| {
                engine
                    .allocate(mpsc::unbounded_channel().0)
                    .expect("allocate")
            })
            .collect();
        assert!(engine.ports_in_use() >= 200);
        let mut ports: Vec<u16> = streams.iter().map(|s| s.local_port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 100, "ports are not shared");
        drop(streams);
        wait_until_released(&engine).await;
    }
    assert_eq!(engine.ports_in_use(), 0);
    assert_eq!(engine.active_streams(), 0);
}

async fn wait_until_released(engine: &MediaEngine) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.ports_in_use() != 0 || engine.active_streams() != 0 {
        assert!(
            Instant::now() < deadline,
            "ports still in use: {}",
            engine.ports_in_use()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_ports_are_skipped_and_exhaustion_is_reported() {
    // Someone else holds the first port of the range.
    let squatter = std::net::UdpSocket::bind((LOCALHOST, 43000)).expect("bind squatter");
    let engine = engine(43000, 43005);
    let (tx, _events) = mpsc::unbounded_channel();
    let a = engine.allocate(tx.clone()).expect("second pair");
    let b = engine.allocate(tx.clone()).expect("third pair");
    assert_eq!((a.local_port, b.local_port), (43002, 43004));
    assert!(matches!(
        engine.allocate(tx.clone()),
        Err(MediaError::PortsExhausted)
    ));
    drop(squatter);
    let c = engine.allocate(tx.clone()).expect("the freed pair");
    assert_eq!(c.local_port, 43000);
    drop((a, b, c));
    wait_until_released(&engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_ignored_and_the_stream_keeps_working() {
    let engine = engine(41500, 41599);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = FarEnd::new().await;
    let to = to_local(&stream);
    let rtcp_to = SocketAddr::new(LOCALHOST, stream.local_port + 1);
    let garbage: [&[u8]; 6] = [
        b"",
        b"\x80",
        b"hello, this is not RTP",
        &[0x80, 0x00, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1], // valid RTP, no remote set yet
        &[
            0xbf, 0xe5, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
        &[
            0x90, 0x00, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff,
        ],
    ];
    for bytes in garbage {
        far.rtp.send_to(bytes, to).await.expect("send");
        far.rtp.send_to(bytes, rtcp_to).await.expect("send");
    }
    far.connect(&stream, Codec::Pcmu, 0);
    tokio::time::sleep(Duration::from_millis(60)).await;
    for bytes in garbage {
        far.rtp.send_to(bytes, to).await.expect("send");
        far.rtp.send_to(bytes, rtcp_to).await.expect("send");
    }
    // Telephone-event with a payload too short to be one, and a wrong payload type.
    let mut packet = Vec::new();
    let mut sender = RtpSender::new(1, 1, 1);
    rtp::write_rtp(&sender.next_header(TE_PT, 160, true), &[1, 2], &mut packet);
    far.rtp.send_to(&packet, to).await.expect("send");
    rtp::write_rtp(&sender.next_header(96, 160, false), &[0; 160], &mut packet);
    far.rtp.send_to(&packet, to).await.expect("send");
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(
        next_event(&mut events, Duration::from_millis(50)).await,
        None
    );

    // Still alive: it plays and hears digits.
    stream.play(1, tone(0.1, 4000.0).into(), 1);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1)).await,
        Some(MediaEvent::PlaybackDone { id: 1 })
    );
    let mut dtmf = DtmfSender::new('7', TE_PT, Duration::from_millis(60)).expect("digit");
    while let Some((header, payload)) = dtmf.poll_packet(&mut sender) {
        rtp::write_rtp(&header, &payload, &mut packet);
        far.rtp.send_to(&packet, to).await.expect("send");
        tokio::time::sleep(TICK).await;
    }
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1)).await,
        Some(MediaEvent::Dtmf { digit: '7' })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_latches_to_the_source_of_the_first_valid_packet() {
    let engine = engine(41600, 41699);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    // SDP said one address (a private one behind NAT, say); media comes from another.
    let signalled = UdpSocket::bind((LOCALHOST, 0)).await.expect("bind");
    let far = FarEnd::new().await;
    stream.set_remote(
        signalled.local_addr().expect("addr"),
        far.rtcp.local_addr().expect("addr"),
        Codec::Pcmu,
        0,
        Some(TE_PT),
    );
    let mut sender = RtpSender::new(9, 9, 9);
    far.send_audio(
        to_local(&stream),
        &mut sender,
        Codec::Pcmu,
        0,
        &tone(0.04, 1000.0),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(60)).await;
    stream.play(1, tone(0.1, 4000.0).into(), 1);
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1)).await,
        Some(MediaEvent::PlaybackDone { id: 1 })
    );
    let mut buf = [0u8; 2048];
    assert!(
        far.rtp.try_recv_from(&mut buf).is_ok(),
        "media goes to where it came from"
    );
    assert!(
        signalled.try_recv_from(&mut buf).is_err(),
        "not to the signalled address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_report_while_sending_with_a_block_about_the_far_end() {
    let engine = engine(41700, 41799);
    let (tx, _events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = Arc::new(FarEnd::new().await);
    far.connect(&stream, Codec::Pcmu, 0);
    stream.play(1, tone(0.5, 4000.0).into(), 0);
    let to = to_local(&stream);
    let talker = Arc::clone(&far);
    let talking = tokio::spawn(async move {
        let mut sender = RtpSender::new(0x5eed, 1, 1);
        talker
            .send_audio(to, &mut sender, Codec::Pcmu, 0, &tone(4.5, 4000.0))
            .await;
    });
    let mut buf = [0u8; 2048];
    // The first report goes within 3.75 s (half of 5 s, randomised by ±50 %).
    let (len, from) = tokio::time::timeout(Duration::from_secs(5), far.rtcp.recv_from(&mut buf))
        .await
        .expect("an RTCP report")
        .expect("recv");
    talking.abort();
    assert_eq!(from.port(), stream.local_port + 1);
    let packets = rtp::rtcp::parse_compound(&buf[..len]).expect("valid compound RTCP");
    let (len, _) = far.rtp.recv_from(&mut buf).await.expect("recv");
    let rtp_ssrc = rtp::parse_rtp(&buf[..len]).expect("RTP").header.ssrc;
    match packets.first() {
        Some(rtp::rtcp::RtcpPacket::SenderReport {
            ssrc,
            info,
            reports,
        }) => {
            assert_eq!(*ssrc, rtp_ssrc);
            assert!(info.packet_count > 50, "{info:?}");
            assert_eq!(info.octet_count, info.packet_count * 160);
            assert_eq!(reports.first().map(|r| r.ssrc), Some(0x5eed));
        }
        other => panic!("expected an SR first, got {other:?}"),
    }
    assert!(
        packets
            .iter()
            .any(|p| matches!(p, rtp::rtcp::RtcpPacket::SourceDescription { .. })),
        "SDES CNAME follows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_needs_a_usable_range() {
    let bad = |port_min, port_max| {
        MediaEngine::start(MediaConfig {
            port_min,
            port_max,
            ..MediaConfig::default()
        })
    };
    assert!(matches!(bad(5000, 4000), Err(MediaError::InvalidConfig(_))));
    assert!(matches!(bad(5001, 5002), Err(MediaError::InvalidConfig(_))));
    assert!(bad(5000, 5001).is_ok());
}

#[test]
fn workers_are_threads_and_need_no_runtime() {
    let engine = MediaEngine::start(MediaConfig {
        bind_ip: LOCALHOST,
        port_min: 43100,
        port_max: 43109,
        ..MediaConfig::default()
    })
    .expect("starts outside a runtime");
    let stream = engine
        .allocate(mpsc::unbounded_channel().0)
        .expect("allocate");
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    while engine.ports_in_use() != 0 {
        assert!(Instant::now() < deadline, "ports not released");
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- bridging, call recording, digits ----

/// Two far ends, each talking to one stream of a bridged pair.
struct Bridged {
    a: Stream,
    b: Stream,
    far_a: FarEnd,
    far_b: FarEnd,
    events_a: UnboundedReceiver<MediaEvent>,
    events_b: UnboundedReceiver<MediaEvent>,
}

impl Bridged {
    /// `a` and `b` are each far end's (codec, payload type, telephone-event pt).
    async fn new(
        engine: &MediaEngine,
        a: (Codec, u8, Option<u8>),
        b: (Codec, u8, Option<u8>),
    ) -> Bridged {
        let (tx_a, events_a) = mpsc::unbounded_channel();
        let (tx_b, events_b) = mpsc::unbounded_channel();
        let stream_a = engine.allocate(tx_a).expect("allocate");
        let stream_b = engine
            .allocate_near(&stream_a, tx_b)
            .expect("allocate near");
        let far_a = FarEnd::new().await;
        let far_b = FarEnd::new().await;
        for (stream, far, (codec, pt, te)) in [(&stream_a, &far_a, a), (&stream_b, &far_b, b)] {
            stream.set_remote(
                far.rtp.local_addr().expect("addr"),
                far.rtcp.local_addr().expect("addr"),
                codec,
                pt,
                te,
            );
        }
        stream_a.bridge(&stream_b);
        // Let the commands reach the worker before media does.
        tokio::time::sleep(Duration::from_millis(20)).await;
        Bridged {
            a: stream_a,
            b: stream_b,
            far_a,
            far_b,
            events_a,
            events_b,
        }
    }
}

/// Receives RTP packets until `quiet` passes without one.
async fn collect(socket: &UdpSocket, quiet: Duration) -> Vec<(Instant, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(r) = tokio::time::timeout(quiet, socket.recv_from(&mut buf)).await {
        let (len, _) = r.expect("recv");
        out.push((Instant::now(), buf[..len].to_vec()));
    }
    out
}

/// Sends `count` packets of distinct payloads, 20 ms apart; returns them.
async fn send_numbered(
    far: &FarEnd,
    to: SocketAddr,
    sender: &mut RtpSender,
    pt: u8,
    count: u8,
) -> Vec<(Instant, Vec<u8>)> {
    let mut sent = Vec::new();
    let mut packet = Vec::new();
    let mut interval = tokio::time::interval(TICK);
    for n in 0..count {
        interval.tick().await;
        let payload: Vec<u8> = (0..160)
            .map(|i| n.wrapping_mul(7).wrapping_add(i as u8))
            .collect();
        sender.write_packet(pt, 160, n == 0, &payload, &mut packet);
        sent.push((Instant::now(), payload));
        far.rtp.send_to(&packet, to).await.expect("send");
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_relays_both_ways_payload_untouched_with_own_headers() {
    let engine = engine(44000, 44099);
    let pair = Bridged::new(
        &engine,
        (Codec::Pcmu, 0, Some(TE_PT)),
        (Codec::Pcmu, 0, Some(TE_PT)),
    )
    .await;
    for (from, to, to_stream) in [
        (&pair.far_a, &pair.far_b, &pair.a),
        (&pair.far_b, &pair.far_a, &pair.b),
    ] {
        let mut sender = RtpSender::new(0x1234, 65530, u32::MAX - 500);
        let (sent, got) = tokio::join!(
            send_numbered(from, to_local(to_stream), &mut sender, 0, 20),
            collect(&to.rtp, Duration::from_millis(150)),
        );
        assert_eq!(got.len(), sent.len(), "every packet relayed");
        let first = rtp::parse_rtp(&got[0].1).expect("RTP").header;
        assert_ne!(first.ssrc, 0x1234, "the outgoing leg has its own SSRC");
        assert!(first.marker);
        for (n, ((sent_at, payload), (got_at, bytes))) in sent.iter().zip(&got).enumerate() {
            let packet = rtp::parse_rtp(bytes).expect("RTP");
            assert_eq!(packet.payload, &payload[..], "payload copied byte for byte");
            assert_eq!(packet.header.payload_type, 0);
            assert_eq!(packet.header.ssrc, first.ssrc);
            assert_eq!(
                packet.header.sequence,
                first.sequence.wrapping_add(n as u16)
            );
            assert_eq!(
                packet.header.timestamp,
                first.timestamp.wrapping_add(160 * n as u32)
            );
            let delay = *got_at - *sent_at;
            assert!(
                delay < Duration::from_millis(10),
                "relayed on receipt, not on a tick: {delay:?}"
            );
        }
    }
}

/// Frequency from rising zero crossings.
fn frequency(samples: &[i16]) -> f64 {
    let rising = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    rising as f64 * 8000.0 / samples.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_transcodes_pcmu_to_pcma_and_back() {
    let engine = engine(44100, 44199);
    let pair = Bridged::new(
        &engine,
        (Codec::Pcmu, 0, Some(TE_PT)),
        (Codec::Pcma, 8, Some(TE_PT)),
    )
    .await;
    for (from, from_codec, to, to_codec, to_stream) in [
        (&pair.far_a, Codec::Pcmu, &pair.far_b, Codec::Pcma, &pair.a),
        (&pair.far_b, Codec::Pcma, &pair.far_a, Codec::Pcmu, &pair.b),
    ] {
        let mut sender = RtpSender::new(77, 1, 1);
        let pt = from_codec.payload_type();
        from.send_audio(
            to_local(to_stream),
            &mut sender,
            from_codec,
            pt,
            &tone(0.5, 8000.0),
        )
        .await;
        let got = collect(&to.rtp, Duration::from_millis(150)).await;
        assert_eq!(got.len(), 25);
        let mut pcm = Vec::new();
        for (_, bytes) in &got {
            let packet = rtp::parse_rtp(bytes).expect("RTP");
            assert_eq!(packet.header.payload_type, to_codec.payload_type());
            let mut frame = Vec::new();
            to_codec.decode(packet.payload, &mut frame);
            pcm.extend(frame);
        }
        let level = rms_dbfs(&pcm);
        assert!((level - -15.3).abs() < 1.0, "level {level} dBFS");
        let hz = frequency(&pcm);
        assert!((hz - 1000.0).abs() < 20.0, "{hz} Hz");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_relays_digits_with_the_other_legs_payload_type_and_reports_them() {
    let engine = engine(44200, 44299);
    let mut pair = Bridged::new(
        &engine,
        (Codec::Pcmu, 0, Some(101)),
        (Codec::Pcmu, 0, Some(96)),
    )
    .await;
    let mut sender = RtpSender::new(5, 5, 5);
    let mut packet = Vec::new();
    let to = to_local(&pair.a);
    for digit in ['4', '#'] {
        let mut dtmf = DtmfSender::new(digit, 101, Duration::from_millis(100)).expect("digit");
        while let Some((header, payload)) = dtmf.poll_packet(&mut sender) {
            rtp::write_rtp(&header, &payload, &mut packet);
            pair.far_a.rtp.send_to(&packet, to).await.expect("send");
            tokio::time::sleep(TICK).await;
        }
    }
    let got = collect(&pair.far_b.rtp, Duration::from_millis(150)).await;
    assert_eq!(
        got.len(),
        2 * 7,
        "4 updates + the end packet 3 times per digit"
    );
    let mut receiver = rtp::dtmf::DtmfReceiver::new();
    let mut digits = String::new();
    for (_, bytes) in &got {
        let packet = rtp::parse_rtp(bytes).expect("RTP");
        assert_eq!(
            packet.header.payload_type, 96,
            "mapped to the other leg's payload type"
        );
        digits.extend(receiver.handle_packet(&packet.header, packet.payload));
    }
    assert_eq!(digits, "4#");
    let mut reported = String::new();
    while let Some(event) = next_event(&mut pair.events_a, Duration::from_millis(100)).await {
        if let MediaEvent::Dtmf { digit } = event {
            reported.push(digit);
        }
    }
    assert_eq!(
        reported, "4#",
        "still reported once per digit on the receiving stream"
    );
    assert_eq!(
        next_event(&mut pair.events_b, Duration::from_millis(20)).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_and_unbridge_stop_the_relay_and_dropping_a_leg_frees_its_ports() {
    let engine = engine(44300, 44399);
    let pair = Bridged::new(
        &engine,
        (Codec::Pcmu, 0, Some(TE_PT)),
        (Codec::Pcmu, 0, Some(TE_PT)),
    )
    .await;
    let mut sender = RtpSender::new(9, 9, 9);
    let to_a = to_local(&pair.a);

    pair.b.set_hold(true);
    tokio::time::sleep(Duration::from_millis(20)).await;
    send_numbered(&pair.far_a, to_a, &mut sender, 0, 5).await;
    assert!(
        collect(&pair.far_b.rtp, Duration::from_millis(100))
            .await
            .is_empty(),
        "a leg on hold receives nothing"
    );
    pair.b.set_hold(false);
    tokio::time::sleep(Duration::from_millis(20)).await;
    send_numbered(&pair.far_a, to_a, &mut sender, 0, 5).await;
    assert_eq!(
        collect(&pair.far_b.rtp, Duration::from_millis(100))
            .await
            .len(),
        5
    );

    pair.b.unbridge();
    tokio::time::sleep(Duration::from_millis(20)).await;
    send_numbered(&pair.far_a, to_a, &mut sender, 0, 5).await;
    assert!(
        collect(&pair.far_b.rtp, Duration::from_millis(100))
            .await
            .is_empty(),
        "unbridged"
    );
    let mut s2 = RtpSender::new(10, 10, 10);
    send_numbered(&pair.far_b, to_local(&pair.b), &mut s2, 0, 5).await;
    assert!(
        collect(&pair.far_a.rtp, Duration::from_millis(100))
            .await
            .is_empty(),
        "unbridged both ways"
    );

    // Bridged again, then one leg hangs up: the other lives on, unbridged.
    pair.a.bridge(&pair.b);
    tokio::time::sleep(Duration::from_millis(20)).await;
    send_numbered(&pair.far_b, to_local(&pair.b), &mut s2, 0, 3).await;
    assert_eq!(
        collect(&pair.far_a.rtp, Duration::from_millis(100))
            .await
            .len(),
        3
    );
    let Bridged {
        a, b, far_a, far_b, ..
    } = pair;
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(2);
    while engine.ports_in_use() != 2 {
        assert!(
            Instant::now() < deadline,
            "ports of the dropped leg still in use"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send_numbered(&far_b, to_local(&b), &mut s2, 0, 3).await;
    assert!(collect(&far_a.rtp, Duration::from_millis(100))
        .await
        .is_empty());
    // The survivor still works on its own.
    b.play(1, tone(0.1, 4000.0).into(), 1);
    assert_eq!(
        collect(&far_b.rtp, Duration::from_millis(150)).await.len(),
        5
    );
    drop(b);
    wait_until_released(&engine).await;
}

fn read_stereo(path: &std::path::Path) -> (Vec<i16>, Vec<i16>) {
    let mut reader = hound::WavReader::open(path).expect("a complete WAV");
    assert_eq!(reader.spec().channels, 2);
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    (
        samples.iter().step_by(2).copied().collect(),
        samples.iter().skip(1).step_by(2).copied().collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_channel_call_recording_holds_both_sides_aligned() {
    let engine = engine(44400, 44499);
    let pair = Bridged::new(
        &engine,
        (Codec::Pcmu, 0, Some(TE_PT)),
        (Codec::Pcma, 8, Some(TE_PT)),
    )
    .await;
    let path = temp_wav("dual");
    let _ = std::fs::remove_file(&path);
    let (tx, mut events) = mpsc::unbounded_channel::<MediaEvent>();
    drop(tx);
    let mut events_a = pair.events_a;
    pair.a.start_call_recording(21, path.clone(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Both far ends talk at once for a second: A's far end loud, B's quiet.
    let (to_a, to_b) = (to_local(&pair.a), to_local(&pair.b));
    let far_a = &pair.far_a;
    let far_b = &pair.far_b;
    let mut sa = RtpSender::new(1, 1, 1);
    let mut sb = RtpSender::new(2, 2, 2);
    let (loud, quiet) = (tone(1.0, 8000.0), tone(1.0, 2000.0));
    tokio::join!(
        far_a.send_audio(to_a, &mut sa, Codec::Pcmu, 0, &loud),
        far_b.send_audio(to_b, &mut sb, Codec::Pcma, 8, &quiet),
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    pair.a.stop_recording(21);
    let event = next_event(&mut events_a, Duration::from_secs(1)).await;
    let Some(MediaEvent::RecordingStopped {
        id: 21,
        stop: RecordStop::Stopped,
        duration,
        ..
    }) = event
    else {
        panic!("expected the call recording to stop, got {event:?}");
    };
    assert!(
        duration >= Duration::from_millis(1000) && duration < Duration::from_millis(1400),
        "{duration:?}"
    );
    let (left, right) = read_stereo(&path);
    // Where the far ends spoke (skip the edges): left -15.3 dBFS, right -27.3 dBFS.
    let speaking = |ch: &[i16]| -> (usize, usize) {
        let first = ch
            .iter()
            .position(|s| s.abs() > 500)
            .expect("audio in the channel");
        let last = ch
            .iter()
            .rposition(|s| s.abs() > 500)
            .expect("audio in the channel");
        (first, last)
    };
    let (la, lb) = speaking(&left);
    let quiet_right: Vec<i16> = right.iter().map(|&s| s.saturating_mul(4)).collect();
    let (ra, rb) = speaking(&quiet_right);
    let l = rms_dbfs(&left[la + 400..lb - 400]);
    let r = rms_dbfs(&right[ra + 400..rb - 400]);
    assert!((l - -15.3).abs() < 1.0, "left {l} dBFS");
    assert!((r - -27.3).abs() < 1.0, "right {r} dBFS");
    // Time-aligned by arrival: both sides start within a few frames of each other.
    assert!(
        la.abs_diff(ra) < 4 * media::FRAME_SAMPLES,
        "left starts at {la}, right at {ra}"
    );
    assert!((lb - la).abs_diff(rb - ra) < 4 * media::FRAME_SAMPLES);
    assert!(events.try_recv().is_err());
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_digits_arrive_as_rfc4733_events_with_pauses() {
    let engine = engine(44500, 44599);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = FarEnd::new().await;
    far.connect(&stream, Codec::Pcmu, 0);
    let started = Instant::now();
    stream.send_digits(4, "1w2#x");
    let mut receiver = rtp::dtmf::DtmfReceiver::new();
    let mut digits = Vec::new();
    let mut buf = [0u8; 2048];
    let mut packets = 0;
    let done = loop {
        tokio::select! {
            r = far.rtp.recv_from(&mut buf) => {
                let (len, _) = r.expect("recv");
                let packet = rtp::parse_rtp(&buf[..len]).expect("RTP");
                assert_eq!(packet.header.payload_type, TE_PT);
                packets += 1;
                if let Some(d) = receiver.handle_packet(&packet.header, packet.payload) {
                    digits.push((d, started.elapsed()));
                }
            }
            e = next_event(&mut events, Duration::from_secs(3)) => break e,
        }
    };
    assert_eq!(done, Some(MediaEvent::DigitsSent { id: 4 }));
    let text: String = digits.iter().map(|(d, _)| *d).collect();
    assert_eq!(text, "12#");
    // 160 ms of event = 8 packets, the end one sent 3 times: 10 per digit.
    assert_eq!(packets, 30);
    let pause = digits[1].1 - digits[0].1;
    assert!(
        pause >= Duration::from_millis(700) && pause < Duration::from_millis(900),
        "{pause:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_digits_are_inband_tones_without_telephone_event() {
    let engine = engine(44600, 44699);
    let (tx, mut events) = mpsc::unbounded_channel();
    let stream = engine.allocate(tx).expect("allocate");
    let far = FarEnd::new().await;
    stream.set_remote(
        far.rtp.local_addr().expect("addr"),
        far.rtcp.local_addr().expect("addr"),
        Codec::Pcma,
        8,
        None,
    );
    stream.send_digits(5, "90*");
    let mut detector = media::dtmf::InbandDetector::new();
    let mut digits = String::new();
    let mut buf = [0u8; 2048];
    let done = loop {
        tokio::select! {
            r = far.rtp.recv_from(&mut buf) => {
                let (len, _) = r.expect("recv");
                let packet = rtp::parse_rtp(&buf[..len]).expect("RTP");
                assert_eq!(packet.header.payload_type, 8);
                let mut pcm = Vec::new();
                Codec::Pcma.decode(packet.payload, &mut pcm);
                digits.extend(detector.handle_frame(&pcm));
            }
            e = next_event(&mut events, Duration::from_secs(3)) => break e,
        }
    };
    assert_eq!(done, Some(MediaEvent::DigitsSent { id: 5 }));
    assert_eq!(digits, "90*");
}

#[test]
fn ringback_is_one_cadence_to_loop() {
    assert_eq!(media::tone::ringback().len(), 6 * 8000);
}
