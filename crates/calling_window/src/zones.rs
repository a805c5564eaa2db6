//! Phone-number prefix -> time zones: libphonenumber's table and an account's overrides.

use std::collections::HashMap;
use std::sync::OnceLock;

/// libphonenumber's map, as `scripts/gen-number-timezones.py` writes it.
const BUILTIN: &str = include_str!("../data/number-timezones.txt");

/// Prefixes are country code and national digits; no E.164 number is longer than 15 digits.
const MAX_DIGITS: usize = 15;

/// A line of the data that is not `PREFIX|ZONE&ZONE...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct DataError {
    pub line: usize,
    pub reason: String,
}

/// Where a number's zones came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneSource {
    /// The account's override for exactly this number.
    Number,
    /// The account's override for this prefix (`+1212`).
    OverridePrefix(String),
    /// libphonenumber's data for this prefix (`+1212`).
    Data(String),
}

/// A number's zones, by IANA name, and where they came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub zones: Vec<String>,
    pub source: ZoneSource,
}

/// Prefix -> zone names, looked up by the longest listed prefix (one hash lookup per digit).
#[derive(Debug, Clone, Default)]
pub struct ZoneTable {
    names: Vec<String>,
    prefixes: HashMap<String, Vec<u16>>,
    longest: usize,
}

impl ZoneTable {
    /// The embedded libphonenumber table, parsed on first use.
    pub fn builtin() -> &'static ZoneTable {
        static TABLE: OnceLock<ZoneTable> = OnceLock::new();
        // The embedded file is checked by this crate's tests (it parses, every zone is known).
        TABLE
            .get_or_init(|| ZoneTable::parse(BUILTIN).expect("the embedded time-zone table parses"))
    }

    /// Reads `PREFIX|ZONE&ZONE...` lines; `#` lines and blank lines are skipped. A zone name must
    /// look like one (`Area/Location`, letters, digits, `_`, `-`, `+`); whether the tz database
    /// knows it is checked where it is used.
    pub fn parse(text: &str) -> Result<ZoneTable, DataError> {
        let mut table = ZoneTable::default();
        let mut index: HashMap<&str, u16> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let err = |reason: &str| DataError {
                line: n + 1,
                reason: reason.to_owned(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (prefix, zones) = line.split_once('|').ok_or_else(|| err("no '|'"))?;
            if prefix.is_empty()
                || prefix.len() > MAX_DIGITS
                || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(err("the prefix is not 1 to 15 digits"));
            }
            let mut ids = Vec::new();
            for zone in zones.split('&') {
                if !plausible_zone_name(zone) {
                    return Err(err("a zone name is malformed"));
                }
                let id = match index.get(zone) {
                    Some(id) => *id,
                    None => {
                        let id =
                            u16::try_from(table.names.len()).map_err(|_| err("too many zones"))?;
                        table.names.push(zone.to_owned());
                        index.insert(zone, id);
                        id
                    }
                };
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            if table.prefixes.insert(prefix.to_owned(), ids).is_some() {
                return Err(err("the prefix is listed twice"));
            }
            table.longest = table.longest.max(prefix.len());
        }
        Ok(table)
    }

    /// The zones of `number` (E.164, `+` and digits) by its longest listed prefix, with that
    /// prefix; `None` for a number no prefix covers (or not E.164).
    pub fn lookup(&self, number: &str) -> Option<(String, Vec<&str>)> {
        let digits = e164_digits(number)?;
        (1..=digits.len().min(self.longest)).rev().find_map(|len| {
            let ids = self.prefixes.get(&digits[..len])?;
            Some((
                format!("+{}", &digits[..len]),
                ids.iter()
                    .map(|&i| self.names[usize::from(i)].as_str())
                    .collect(),
            ))
        })
    }

    /// Every zone name the table uses.
    pub fn zone_names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

/// `Area/Location[/More]`, or a bare name such as `UTC`: ASCII letters, digits, `_`, `-`, `+`.
fn plausible_zone_name(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 64
        && !zone.starts_with('/')
        && !zone.ends_with('/')
        && !zone.contains("//")
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
}

/// The digits of an E.164 number (`+` then 1 to 15 digits).
fn e164_digits(number: &str) -> Option<&str> {
    let digits = number.strip_prefix('+')?;
    (!digits.is_empty() && digits.len() <= MAX_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(digits)
}

/// What an override applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OverrideKey {
    /// Exactly this number (E.164).
    Number(String),
    /// Every number starting with these digits (`+1212`).
    Prefix(String),
}

impl OverrideKey {
    /// `+` and 1 to 15 digits, for either kind.
    pub fn number(raw: &str) -> Option<OverrideKey> {
        e164_digits(raw).map(|_| OverrideKey::Number(raw.to_owned()))
    }

    pub fn prefix(raw: &str) -> Option<OverrideKey> {
        e164_digits(raw).map(|_| OverrideKey::Prefix(raw.to_owned()))
    }
}

/// An account's overrides: an exact number beats any prefix, the longest prefix wins.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    entries: HashMap<OverrideKey, String>,
}

impl Overrides {
    pub fn insert(&mut self, key: OverrideKey, zone: String) {
        self.entries.insert(key, zone);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The override that applies to `number`, if any: `(zone, source)`.
    pub fn lookup(&self, number: &str) -> Option<(&str, ZoneSource)> {
        let digits = e164_digits(number)?;
        if let Some(zone) = self.entries.get(&OverrideKey::Number(number.to_owned())) {
            return Some((zone, ZoneSource::Number));
        }
        (1..=digits.len()).rev().find_map(|len| {
            let prefix = format!("+{}", &digits[..len]);
            let zone = self.entries.get(&OverrideKey::Prefix(prefix.clone()))?;
            Some((zone.as_str(), ZoneSource::OverridePrefix(prefix)))
        })
    }
}

/// A number's zones: the first of `overrides` that has one (an account's own, then its
/// parent's), else the table. `None` for a SIP URI, a client or a number no prefix covers: its
/// local time is unknown.
pub fn resolve(number: &str, overrides: &[&Overrides], table: &ZoneTable) -> Option<Resolved> {
    for o in overrides {
        if let Some((zone, source)) = o.lookup(number) {
            return Some(Resolved {
                zones: vec![zone.to_owned()],
                source,
            });
        }
    }
    let (prefix, zones) = table.lookup(number)?;
    Some(Resolved {
        zones: zones.into_iter().map(str::to_owned).collect(),
        source: ZoneSource::Data(prefix),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_every_zone_is_known_to_the_tz_database() {
        let table = ZoneTable::builtin();
        assert!(table.len() > 3000, "{}", table.len());
        for name in table.zone_names() {
            assert!(
                crate::time_zone(name).is_some(),
                "{name} is not in the bundled tz database"
            );
        }
    }

    #[test]
    fn longest_prefix_gives_the_zones() {
        let t = ZoneTable::builtin();
        assert_eq!(
            t.lookup("+12125550100"),
            Some(("+1212".to_owned(), vec!["America/New_York"]))
        );
        assert_eq!(t.lookup("+33142685300").unwrap().1, vec!["Europe/Paris"]);
        assert_eq!(t.lookup("+81312345678").unwrap().1, vec!["Asia/Tokyo"]);
        // +1 with an unlisted area code falls back to the country's many zones.
        let (prefix, zones) = t.lookup("+19995550100").unwrap();
        assert_eq!(prefix, "+1");
        assert!(zones.len() > 10 && zones.contains(&"America/Los_Angeles"));
        assert_eq!(t.lookup("12125550100"), None);
        assert_eq!(t.lookup("sip:alice@example.com"), None);
        assert_eq!(t.lookup("+"), None);
    }

    #[test]
    fn an_exact_number_beats_a_prefix_and_the_longest_prefix_wins() {
        let mut o = Overrides::default();
        o.insert(OverrideKey::prefix("+1").unwrap(), "America/Chicago".into());
        o.insert(OverrideKey::prefix("+1212").unwrap(), "Asia/Tokyo".into());
        o.insert(
            OverrideKey::number("+12125550100").unwrap(),
            "Europe/Paris".into(),
        );
        let t = ZoneTable::builtin();
        let r = resolve("+12125550100", &[&o], t).unwrap();
        assert_eq!(
            (r.zones, r.source),
            (vec!["Europe/Paris".to_owned()], ZoneSource::Number)
        );
        let r = resolve("+12125550101", &[&o], t).unwrap();
        assert_eq!(
            (r.zones, r.source),
            (
                vec!["Asia/Tokyo".to_owned()],
                ZoneSource::OverridePrefix("+1212".into())
            )
        );
        let r = resolve("+13125550101", &[&o], t).unwrap();
        assert_eq!(r.zones, vec!["America/Chicago".to_owned()]);
        let r = resolve("+33142685300", &[&o], t).unwrap();
        assert_eq!(r.source, ZoneSource::Data("+33".into()));
        // The first set that has an answer wins (an account's own before its parent's).
        let mut own = Overrides::default();
        own.insert(
            OverrideKey::prefix("+1").unwrap(),
            "Pacific/Honolulu".into(),
        );
        assert_eq!(
            resolve("+12125550100", &[&own, &o], t).unwrap().zones,
            vec!["Pacific/Honolulu".to_owned()]
        );
        assert_eq!(resolve("sip:bob@example.com", &[&o], t), None);
    }

    #[test]
    fn malformed_data_is_refused_with_its_line() {
        for (text, line) in [
            ("1|America/New_York\nx|Europe/Paris", 2),
            ("1America/New_York", 1),
            ("# c\n\n1|", 3),
            ("1|America//York", 1),
            ("1|A\n1|B", 2),
            ("1234567890123456|UTC", 1),
            ("1|Europe/Paris&../etc", 1),
        ] {
            assert_eq!(ZoneTable::parse(text).unwrap_err().line, line, "{text:?}");
        }
        let t =
            ZoneTable::parse("# header\n44|Europe/London&Europe/Jersey&Europe/London\n").unwrap();
        assert_eq!(
            t.lookup("+447700900000").unwrap().1,
            vec!["Europe/London", "Europe/Jersey"]
        );
    }
}
