//! Any byte stream as an SMSC's side of an SMPP connection: the framer cuts it the same way
//! however it is chunked and never holds more than one PDU's bound; whatever parses
//! re-encodes to bytes that parse to the same PDU; and a bound session fed the stream never
//! panics and writes only PDUs that parse.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use smpp::{Body, BindMode, BindResp, CommandStatus, Framer, Output, Pdu, Session, SessionConfig, Tlvs};

fn frame(data: &[u8], chunk: usize) -> (Vec<Vec<u8>>, bool) {
    let mut framer = Framer::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        framer.push(piece);
        loop {
            match framer.pop() {
                Ok(Some(pdu)) => out.push(pdu),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
        assert!(framer.buffered() < smpp::MAX_PDU_LEN + piece.len());
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let (whole, whole_failed) = frame(rest, rest.len());
    let (pieces, pieces_failed) = frame(rest, usize::from(first % 17) + 1);
    let n = whole.len().min(pieces.len());
    assert_eq!(whole[..n], pieces[..n]);
    if !whole_failed && !pieces_failed {
        assert_eq!(whole, pieces);
    }
    // The bytes alone, unframed, as one PDU.
    let _ = Pdu::parse(rest);
    for bytes in &whole {
        match Pdu::parse(bytes) {
            Ok(pdu) => {
                let again = pdu.encode().expect("a parsed PDU encodes");
                assert_eq!(Pdu::parse(&again).as_ref(), Ok(&pdu));
            }
            Err(e) => {
                let _ = e.command_status();
            }
        }
    }

    // A transceiver session, bound, then fed the stream in the same chunks.
    let t0 = Instant::now();
    let config = SessionConfig { max_unacked_delivers: 4, ..SessionConfig::new(BindMode::Transceiver, "fuzz", "pw") };
    let mut session = Session::new(t0, config).expect("valid bind");
    let bind_resp = BindResp { mode: BindMode::Transceiver, system_id: "SMSC".into(), tlvs: Tlvs::default() };
    session.handle_bytes(t0, &Pdu::response(1, CommandStatus::ESME_ROK, Body::BindResp(bind_resp)).encode().unwrap());
    let mut now = t0;
    for piece in rest.chunks(usize::from(first % 17) + 1) {
        now += Duration::from_millis(u64::from(piece[0]) * 100);
        let _ = session.submit(now, smpp::Sm::default());
        session.handle_bytes(now, piece);
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        while let Some(out) = session.poll_output() {
            match out {
                Output::Transmit(bytes) => {
                    Pdu::parse(&bytes).expect("the session writes valid PDUs");
                }
                Output::Event(smpp::Event::Deliver { seq, .. } | smpp::Event::Receipt { seq, .. }) => {
                    // May fail: a later PDU in the same chunk can have closed the session.
                    if piece[0] & 1 == 0 {
                        let _ = session.ack_deliver(seq, CommandStatus::ESME_ROK);
                    }
                }
                Output::Event(_) => {}
            }
        }
    }
});
