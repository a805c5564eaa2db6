//! Rate tables from any text: prefix/price pairs (as `[pricing]` and `RateTable.json` give them)
//! make a table or are refused with an error, never a panic; a table that is made prices any
//! number, any duration and any segment count without overflow or panic, and never charges less
//! for more seconds.
#![no_main]

use billing::{charge, Direction, NumberType, RateSheet, Rounding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let number = lines.next().unwrap_or_default().to_owned();
    let pairs: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once('=')).map(|(p, r)| (p.to_owned(), r.to_owned())).collect();
    let first = data.first().copied().unwrap_or(0);
    let seconds = if first & 1 == 1 { u64::MAX - u64::from(first) } else { u64::from(first) * 977 };
    for rounding in [Rounding::PerMinute, Rounding::PerSecond] {
        let sheet = RateSheet {
            rounding,
            inbound: pairs.first().map(|(_, r)| (NumberType::Local, r.clone())).into_iter().collect(),
            outbound: pairs.iter().cloned().collect(),
            sms_inbound: pairs.last().map(|(_, r)| r.clone()),
            sms_outbound: pairs.iter().cloned().collect(),
        };
        let Ok(table) = sheet.table() else { continue };
        let _ = table.call_price(Direction::Inbound(NumberType::Local), seconds);
        let _ = table.sms_price(Direction::Inbound(NumberType::Local), u32::MAX);
        let _ = table.sms_price(Direction::Outbound(&number), u32::MAX);
        let Some(rate) = table.outbound.rate(&number) else { continue };
        let price = table.call_price(Direction::Outbound(&number), seconds).expect("rated");
        assert!(price >= charge(rate, seconds / 2, rounding));
    }
});
