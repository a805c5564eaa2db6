//! Bytes real SMSCs sent, fed to a session.

use std::time::Instant;

use smpp::{BindMode, Event, Output, Session, SessionConfig, SessionState};

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The npm `smpp` package (0.5.1) in server mode names itself as the test SMSC does, with 18
/// characters: more than the spec's 15, as SMSCs in the wild do. The bind still succeeds.
#[test]
fn a_bind_response_with_a_long_system_id_binds() {
    let now = Instant::now();
    let config = SessionConfig::new(BindMode::Transceiver, "dialtone", "secret");
    let mut session = Session::new(now, config).unwrap();
    while session.poll_output().is_some() {}
    // bind_transceiver_resp, sequence 1, system_id "DIALTONE-TEST-SMSC".
    session.handle_bytes(
        now,
        &hex("000000238000000900000000000000014449414c544f4e452d544553542d534d534300"),
    );
    let mut bound = None;
    while let Some(out) = session.poll_output() {
        if let Output::Event(Event::Bound { smsc_system_id, .. }) = out {
            bound = Some(smsc_system_id);
        }
    }
    assert_eq!(bound.as_deref(), Some("DIALTONE-TEST-SMSC"));
    assert_eq!(session.state(), SessionState::Bound);
}
