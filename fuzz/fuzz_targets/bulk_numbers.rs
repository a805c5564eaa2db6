//! Lines of `POST IncomingPhoneNumbers/Bulk.json`: any text splits into lines that each give a
//! number's settings or a Twilio 20001, never a panic; the settings a line gives are only the
//! ones a line may set, and a bare line is its own `PhoneNumber`.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ALLOWED: [&str; 12] = [
    "PhoneNumber", "FriendlyName", "VoiceUrl", "VoiceMethod", "VoiceFallbackUrl", "VoiceFallbackMethod",
    "StatusCallback", "StatusCallbackMethod", "SmsUrl", "SmsMethod", "SmsFallbackUrl", "SmsFallbackMethod",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines().take(1000) {
        let line = line.trim();
        match api::bulk_line_params(line) {
            Ok(pairs) => {
                assert!(pairs.iter().all(|(name, _)| ALLOWED.contains(&name.as_str())), "{pairs:?}");
                if !line.starts_with('{') {
                    assert_eq!(pairs, vec![("PhoneNumber".to_owned(), line.to_owned())]);
                }
            }
            Err((code, message)) => assert!(code == 20001 && !message.is_empty()),
        }
    }
});
