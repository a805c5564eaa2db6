//! Any `PageToken` query value: the cursor parser never panics, accepts only what it can bind
//! safely, and a parsed cursor prints back to a token that parses to the same cursor.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::Cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(cursor) = Cursor::from_token(text) {
        assert!(!cursor.sid.is_empty() && cursor.sid.len() <= 64);
        assert!(cursor.sid.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(Cursor::from_token(&cursor.to_token()).ok(), Some(cursor));
    }
});
