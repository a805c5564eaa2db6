//! Any text: TwiML parsing (voice and messaging) never panics, every error maps to a Twilio code
//! and a message, and parsing is deterministic (the engine may re-read a cached document).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match twiml::parse(text) {
        Ok(doc) => {
            for verb in &doc.verbs {
                assert!(!verb.name().is_empty());
            }
            assert_eq!(twiml::parse(text).as_ref(), Ok(&doc));
        }
        Err(e) => {
            assert_eq!(e.code(), 12100);
            assert!(!e.to_string().is_empty());
        }
    }
    match twiml::parse_messaging(text) {
        Ok(doc) => {
            for verb in &doc.verbs {
                assert!(!verb.name().is_empty());
                if let twiml::MessagingVerb::Message(m) = verb {
                    assert!(!m.body.is_empty() || !m.media.is_empty());
                }
            }
            assert_eq!(twiml::parse_messaging(text).as_ref(), Ok(&doc));
        }
        Err(e) => {
            assert_eq!(e.code(), 12100);
            assert!(!e.to_string().is_empty());
        }
    }
});
