//! Access Tokens (`Authorization: Bearer` from browsers, the console's Bearer calls): any string
//! parses to a token or an error, never a panic, and a parsed token checks against any key and
//! time without panicking; what is refused carries one of Twilio's codes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(token) = api::access_token::parse(text) else { return };
    let account: model::AccountSid = "AC0123456789abcdef0123456789abcdef".parse().unwrap();
    let key = (account, "secret".to_owned());
    for now in [0, 1_700_000_000, i64::MAX] {
        if let Err(e) = api::access_token::verify(&token, Some(&key), now) {
            assert!((20101..=20157).contains(&e.code()), "{e}");
        }
        assert!(api::access_token::verify(&token, None, now).is_err());
    }
});
