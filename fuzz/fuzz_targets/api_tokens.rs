//! Any string a client can put in a REST path or query that the API reads without serde:
//! resource SIDs (path segments) and call status/direction values. None of them panics, and
//! whatever parses prints back to text that parses to the same value. (`PageToken` cursors are
//! in `page_token`, which needs the `store` feature.)
#![no_main]

use std::fmt::Display;
use std::str::FromStr;

use libfuzzer_sys::fuzz_target;
use model::{
    AccountSid, CallDirection, CallSid, CallStatus, NotificationSid, PhoneNumberSid, RecordingSid,
};

fn round_trip<T: FromStr + Display + PartialEq + std::fmt::Debug>(text: &str) {
    if let Ok(value) = text.parse::<T>() {
        let printed = value.to_string();
        assert_eq!(printed.parse::<T>().ok(), Some(value));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };

    round_trip::<AccountSid>(text);
    round_trip::<CallSid>(text);
    round_trip::<PhoneNumberSid>(text);
    round_trip::<RecordingSid>(text);
    round_trip::<NotificationSid>(text);
    if let Ok(sid) = text.parse::<CallSid>() {
        // Only exact, canonical SIDs are accepted: no case folding, trimming or prefixes.
        assert_eq!(sid.as_str(), text);
    }

    if let Ok(status) = text.parse::<CallStatus>() {
        assert_eq!(status.as_str(), text);
    }
    if let Ok(direction) = text.parse::<CallDirection>() {
        assert_eq!(direction.as_str(), text);
    }
});
