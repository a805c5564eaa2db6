//! Prices: what a call or a message costs under a rate table. Sans-IO, exact decimals (no floats).
//!
//! Billing follows what carriers and Twilio's users expect:
//! - a call is billed from answer to hang-up: ringing, early media and an unanswered call cost
//!   nothing ([`billable_seconds`] of no answer is 0);
//! - billable time is the call's duration in whole seconds, rounded to the nearest (half up), as
//!   a Call's `duration` shows it: the price agrees with the duration the user sees;
//! - [`Rounding::PerMinute`] bills every started minute; [`Rounding::PerSecond`] bills the seconds
//!   at a sixtieth of the minute rate;
//! - a price is rounded half away from zero to [`PRICE_DECIMALS`] places;
//! - outbound calls and messages are rated by the longest destination prefix that has a rate,
//!   inbound calls by the type of the number called, messages per segment.
//!
//! A destination without a rate has no price (`None`): the caller leaves the call unpriced, as
//! Twilio leaves `price` null until it knows one, rather than charging 0 as if it were free.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

pub use rust_decimal::Decimal;

/// Decimal places a price keeps.
pub const PRICE_DECIMALS: u32 = 4;

/// The highest rate a table takes (per minute or per segment). Rates come from configuration and
/// from the API; below this bound no duration or segment count can overflow a price.
pub const MAX_RATE: u32 = 1_000_000;

/// How call time turns into billed units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rounding {
    /// Every started minute is billed whole (the common carrier rule, and the default).
    #[default]
    PerMinute,
    /// Seconds are billed at a sixtieth of the minute rate.
    PerSecond,
}

/// Twilio's types of phone number, which inbound calls are rated by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NumberType {
    Local,
    Mobile,
    TollFree,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("prefix {0:?}: digits only, after an optional +")]
    BadPrefix(String),
    #[error("price {0:?} is not a decimal from 0 to {MAX_RATE}")]
    BadPrice(String),
    #[error("prefix {0:?} has two rates")]
    DuplicatePrefix(String),
}

/// Rates by destination prefix (per minute for calls, per segment for messages), looked up by
/// the longest prefix of a number that has one: at most one hash lookup per digit of the
/// longest prefix, whatever the size of the table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefixRates {
    rates: HashMap<String, Decimal>,
    longest: usize,
}

impl PrefixRates {
    /// A table from `(prefix, price)` pairs: prefixes are digits (a leading `+` is dropped, and
    /// `""` or `"+"` is the rate of every destination without a longer one), prices decimals
    /// of at least 0 (`"0.05"`).
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<PrefixRates, RateError> {
        let mut table = PrefixRates::default();
        for (prefix, price) in pairs {
            let digits = prefix.strip_prefix('+').unwrap_or(prefix);
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(RateError::BadPrefix(prefix.to_owned()));
            }
            let price = parse_price(price)?;
            if table.rates.insert(digits.to_owned(), price).is_some() {
                return Err(RateError::DuplicatePrefix(prefix.to_owned()));
            }
            table.longest = table.longest.max(digits.len());
        }
        Ok(table)
    }

    /// The rate of the longest prefix of `number` (E.164 or bare digits; anything but digits
    /// after the `+` matches no prefix but the empty one).
    pub fn rate(&self, number: &str) -> Option<Decimal> {
        let digits = number.strip_prefix('+').unwrap_or(number);
        let usable = digits.bytes().take_while(u8::is_ascii_digit).count();
        let digits = &digits[..usable.min(self.longest)];
        (0..=digits.len()).rev().find_map(|len| self.rates.get(&digits[..len]).copied())
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }
}

fn parse_price(text: &str) -> Result<Decimal, RateError> {
    text.trim()
        .parse::<Decimal>()
        .ok()
        .filter(|d| !d.is_sign_negative() && *d <= Decimal::from(MAX_RATE))
        .ok_or_else(|| RateError::BadPrice(text.to_owned()))
}

/// A rate table as written (decimal strings), in configuration (`[pricing]`) and through the API;
/// [`RateSheet::table`] checks it and makes the [`RateTable`] that prices.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateSheet {
    #[serde(default)]
    pub rounding: Rounding,
    /// Per minute, by the type of the number called.
    #[serde(default)]
    pub inbound: BTreeMap<NumberType, String>,
    /// Per minute, by destination prefix.
    #[serde(default)]
    pub outbound: BTreeMap<String, String>,
    /// Per segment received.
    #[serde(default)]
    pub sms_inbound: Option<String>,
    /// Per segment sent, by destination prefix.
    #[serde(default)]
    pub sms_outbound: BTreeMap<String, String>,
}

/// What is wrong with a [`RateSheet`], and in which of its parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{part}: {error}")]
pub struct SheetError {
    /// `inbound`, `outbound`, `sms_inbound` or `sms_outbound`.
    pub part: &'static str,
    pub error: RateError,
}

impl RateSheet {
    pub fn table(&self) -> Result<RateTable, SheetError> {
        let prefixes = |rates: &BTreeMap<String, String>, part| {
            PrefixRates::new(rates.iter().map(|(p, r)| (p.as_str(), r.as_str()))).map_err(|error| SheetError { part, error })
        };
        let mut inbound = HashMap::new();
        for (kind, rate) in &self.inbound {
            inbound.insert(*kind, parse_price(rate).map_err(|error| SheetError { part: "inbound", error })?);
        }
        Ok(RateTable {
            rounding: self.rounding,
            inbound,
            outbound: prefixes(&self.outbound, "outbound")?,
            sms_inbound: self
                .sms_inbound
                .as_deref()
                .map(parse_price)
                .transpose()
                .map_err(|error| SheetError { part: "sms_inbound", error })?,
            sms_outbound: prefixes(&self.sms_outbound, "sms_outbound")?,
        })
    }
}

/// Which way a call or message went, and what rates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction<'a> {
    /// To one of our numbers, of this type.
    Inbound(NumberType),
    /// To this destination number.
    Outbound(&'a str),
}

/// An account's prices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateTable {
    pub rounding: Rounding,
    /// Per minute, by the type of the number called.
    pub inbound: HashMap<NumberType, Decimal>,
    /// Per minute, by destination prefix.
    pub outbound: PrefixRates,
    /// Per segment received.
    pub sms_inbound: Option<Decimal>,
    /// Per segment sent, by destination prefix.
    pub sms_outbound: PrefixRates,
}

impl RateTable {
    /// What a call costs for `seconds` billable seconds ([`billable_seconds`]), or `None` when
    /// nothing rates it.
    pub fn call_price(&self, direction: Direction<'_>, seconds: u64) -> Option<Decimal> {
        let per_minute = match direction {
            Direction::Inbound(kind) => self.inbound.get(&kind).copied()?,
            Direction::Outbound(to) => self.outbound.rate(to)?,
        };
        Some(charge(per_minute, seconds, self.rounding))
    }

    /// What a message of `segments` parts costs, or `None` when nothing rates it.
    pub fn sms_price(&self, direction: Direction<'_>, segments: u32) -> Option<Decimal> {
        let per_segment = match direction {
            Direction::Inbound(_) => self.sms_inbound?,
            Direction::Outbound(to) => self.sms_outbound.rate(to)?,
        };
        Some(round(per_segment * Decimal::from(segments)))
    }
}

/// The seconds billed for a call that was answered for `answered` (`None`: never answered,
/// nothing billed): rounded to the nearest second, half up, as the call's `duration`.
pub fn billable_seconds(answered: Option<Duration>) -> u64 {
    answered.map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() >= 500_000_000))
}

/// `seconds` of call at `per_minute`, rounded as `rounding` says, to [`PRICE_DECIMALS`] places.
pub fn charge(per_minute: Decimal, seconds: u64, rounding: Rounding) -> Decimal {
    let price = match rounding {
        Rounding::PerMinute => per_minute * Decimal::from(seconds.div_ceil(60)),
        Rounding::PerSecond => per_minute * Decimal::from(seconds) / Decimal::from(60),
    };
    round(price)
}

fn round(price: Decimal) -> Decimal {
    price.round_dp_with_strategy(PRICE_DECIMALS, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn table(rounding: Rounding) -> RateTable {
        RateTable {
            rounding,
            inbound: HashMap::from([(NumberType::Local, d("0.01")), (NumberType::TollFree, d("0.022"))]),
            outbound: PrefixRates::new([("+1", "0.013"), ("+1555", "0.05"), ("+44", "0.03"), ("+447", "0.09")]).unwrap(),
            sms_inbound: Some(d("0.0079")),
            sms_outbound: PrefixRates::new([("", "0.04"), ("+1", "0.0079")]).unwrap(),
        }
    }

    #[test]
    fn the_issue_example_65_seconds_after_10_of_ringing_at_5_cents() {
        // Ringing is not billed: the call was answered for 65 s.
        let seconds = billable_seconds(Some(Duration::from_secs(65)));
        let to = Direction::Outbound("+15550001234");
        assert_eq!(table(Rounding::PerMinute).call_price(to, seconds), Some(d("0.10")));
        // 65 * 0.05 / 60 = 0.054166...
        assert_eq!(table(Rounding::PerSecond).call_price(to, seconds), Some(d("0.0542")));
        // Unanswered: nothing, at either rounding.
        assert_eq!(table(Rounding::PerMinute).call_price(to, billable_seconds(None)), Some(d("0")));
        assert_eq!(table(Rounding::PerSecond).call_price(to, billable_seconds(None)), Some(d("0")));
    }

    #[test]
    fn inbound_calls_by_number_type_a_started_minute_counts() {
        let t = table(Rounding::PerMinute);
        let local = Direction::Inbound(NumberType::Local);
        assert_eq!(t.call_price(local, 1), Some(d("0.01")));
        assert_eq!(t.call_price(local, 60), Some(d("0.01")));
        assert_eq!(t.call_price(local, 61), Some(d("0.02")));
        assert_eq!(t.call_price(Direction::Inbound(NumberType::TollFree), 125), Some(d("0.066")));
        assert_eq!(t.call_price(Direction::Inbound(NumberType::Mobile), 60), None, "no rate: unpriced");
    }

    #[test]
    fn the_longest_prefix_rates_a_destination() {
        let t = table(Rounding::PerMinute);
        let rate = |to| t.outbound.rate(to);
        assert_eq!(rate("+15550001234"), Some(d("0.05")));
        assert_eq!(rate("+12125550000"), Some(d("0.013")));
        assert_eq!(rate("447700900123"), Some(d("0.09")), "bare digits too");
        assert_eq!(rate("+442079460000"), Some(d("0.03")));
        assert_eq!(rate("+33123456789"), None);
        assert_eq!(rate("client:alice"), None);
        assert_eq!(t.sms_outbound.rate("+33123456789"), Some(d("0.04")), "the empty prefix takes the rest");
        assert_eq!(t.sms_outbound.rate("sip:x@y"), Some(d("0.04")));
    }

    #[test]
    fn a_sheet_makes_its_table_or_names_what_is_wrong() {
        let sheet = RateSheet {
            rounding: Rounding::PerSecond,
            inbound: BTreeMap::from([(NumberType::Local, "0.01".into())]),
            outbound: BTreeMap::from([("+1555".into(), "0.05".into())]),
            sms_inbound: Some("0.0075".into()),
            sms_outbound: BTreeMap::from([("".into(), "0.04".into())]),
        };
        let t = sheet.table().unwrap();
        assert_eq!(t.call_price(Direction::Outbound("+15550001234"), 65), Some(d("0.0542")));
        assert_eq!(t.sms_price(Direction::Inbound(NumberType::Local), 2), Some(d("0.015")));
        let mut bad = sheet.clone();
        bad.sms_inbound = Some("-1".into());
        assert_eq!(bad.table().unwrap_err().part, "sms_inbound");
        let mut bad = sheet.clone();
        bad.outbound.insert("+44x".into(), "1".into());
        assert_eq!(bad.table().unwrap_err().to_string(), "outbound: prefix \"+44x\": digits only, after an optional +");
        // A rate too high to price every duration is refused, so pricing never overflows.
        let mut bad = sheet;
        bad.inbound.insert(NumberType::Mobile, "1000000.0001".into());
        assert_eq!(bad.table().unwrap_err().part, "inbound");
        let top = PrefixRates::new([("", "1000000")]).unwrap();
        let table = RateTable { outbound: top, ..RateTable::default() };
        assert!(table.call_price(Direction::Outbound("+1"), u64::MAX).is_some());
    }

    #[test]
    fn messages_per_segment() {
        let t = table(Rounding::PerMinute);
        assert_eq!(t.sms_price(Direction::Outbound("+15550001234"), 3), Some(d("0.0237")));
        assert_eq!(t.sms_price(Direction::Outbound("+33123456789"), 1), Some(d("0.04")));
        assert_eq!(t.sms_price(Direction::Inbound(NumberType::Local), 2), Some(d("0.0158")));
        assert_eq!(RateTable::default().sms_price(Direction::Inbound(NumberType::Local), 1), None);
    }

    #[test]
    fn billable_seconds_are_the_duration_rounded_to_the_nearest_second() {
        // The BYE of a 65 s call arrives a few milliseconds after 65 s: still 65.
        assert_eq!(billable_seconds(Some(Duration::from_millis(65_004))), 65);
        assert_eq!(billable_seconds(Some(Duration::from_millis(64_500))), 65);
        assert_eq!(billable_seconds(Some(Duration::from_millis(64_499))), 64);
        assert_eq!(billable_seconds(Some(Duration::ZERO)), 0);
        assert_eq!(charge(d("0.05"), 0, Rounding::PerMinute), d("0"));
        // Half away from zero at the fourth place: 1 s at 0.0003/min is 0.000005.
        assert_eq!(charge(d("0.0003"), 1, Rounding::PerSecond), d("0"));
        assert_eq!(charge(d("0.003"), 1, Rounding::PerSecond), d("0.0001"));
    }

    #[test]
    fn bad_rates_are_refused_with_what_is_wrong() {
        assert_eq!(PrefixRates::new([("+1a", "0.1")]), Err(RateError::BadPrefix("+1a".into())));
        assert_eq!(PrefixRates::new([("+1", "-0.1")]), Err(RateError::BadPrice("-0.1".into())));
        assert_eq!(PrefixRates::new([("+1", "cheap")]), Err(RateError::BadPrice("cheap".into())));
        assert_eq!(PrefixRates::new([("+1", "0.1"), ("1", "0.2")]), Err(RateError::DuplicatePrefix("1".into())));
        assert!(PrefixRates::new([]).unwrap().is_empty());
    }
}
