//! Quiet hours from any text: hours, dates off, zone tables and zone names parse or are refused,
//! never a panic; a window that parses prints canonically (and reads back the same), and decides
//! at any instant without panic, an opening it names being open and in the future.
#![no_main]

use calling_window::{time_zone, Decision, Hours, Timestamp, Window, ZoneTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let hours_text = lines.next().unwrap_or_default();
    let dates: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let zones: Vec<&str> = lines.next().unwrap_or_default().split('&').take(4).collect();
    let rest: String = lines.collect::<Vec<_>>().join("\n");
    if let Ok(table) = ZoneTable::parse(&rest) {
        let _ = table.lookup("+12125550100");
        let _ = table.lookup(hours_text);
    }
    let Ok(hours) = Hours::parse(hours_text) else { return };
    assert_eq!(Hours::parse(&hours.to_string()), Ok(hours));
    let Ok(window) = Window::new(hours, &dates) else { return };
    let zones: Vec<(String, calling_window::TimeZone)> =
        zones.iter().filter_map(|z| time_zone(z).map(|tz| (z.to_string(), tz))).collect();
    let seconds = i64::from(u32::from_le_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
        data.get(2).copied().unwrap_or(0),
        data.get(3).copied().unwrap_or(0),
    ])) * 2;
    let Ok(now) = Timestamp::from_second(seconds) else { return };
    if let Decision::Closed { opens_at: Some(at), .. } = window.decide(&zones, now) {
        assert!(at > now);
        assert_eq!(window.decide(&zones, at), Decision::Open);
    }
});
