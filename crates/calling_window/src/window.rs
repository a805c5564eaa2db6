//! Calling windows: local hours per weekday and dates off, and the decision they give.

use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};

/// The most dates off a window holds.
pub const MAX_DATES_OFF: usize = 400;
/// The longest `hours` text accepted.
const MAX_HOURS_TEXT: usize = 512;
/// How many days past `now` (and past the last date off) the next opening is looked for: a
/// window whose hours never meet in all of a number's zones within that horizon never opens.
const HORIZON_DAYS: i64 = 8;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// What is wrong with a window, as the API says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WindowError {
    #[error("hours {0:?}: use e.g. \"mon-fri 09:00-18:00; sat 10:00-13:00\" (days mon..sun, 24-hour times, start before end)")]
    Hours(String),
    #[error("{0:?} is not a date: use YYYY-MM-DD")]
    Date(String),
    #[error("more than {MAX_DATES_OFF} dates off")]
    TooManyDates,
    #[error("{0:?} is not a policy: use defer, refuse or ignore")]
    Policy(String),
}

/// What happens to a call that would ring outside its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Held as `scheduled` and placed when the window opens.
    Defer,
    /// Refused with an error naming the local time and the window.
    Refuse,
    /// Placed anyway.
    Ignore,
}

impl Policy {
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Defer => "defer",
            Policy::Refuse => "refuse",
            Policy::Ignore => "ignore",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Policy {
    type Err = WindowError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "defer" => Ok(Policy::Defer),
            "refuse" => Ok(Policy::Refuse),
            "ignore" => Ok(Policy::Ignore),
            _ => Err(WindowError::Policy(s.to_owned())),
        }
    }
}

/// Minutes from local midnight: `[start, end)`, `end` up to 24:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u16,
    end: u16,
}

/// Local hours per weekday (Monday first); a day without hours is closed all day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hours {
    days: [Option<Span>; 7],
}

impl Hours {
    /// Reads `mon-fri 09:00-18:00; sat 10:00-13:00`: `;`-separated entries of days (a day, a
    /// range `mon-fri`, or a list `mon,wed`; full names too) and one span. A day named twice is
    /// refused; the empty text is a window that never opens.
    pub fn parse(text: &str) -> Result<Hours, WindowError> {
        let bad = || WindowError::Hours(text.chars().take(80).collect());
        if text.len() > MAX_HOURS_TEXT {
            return Err(bad());
        }
        let mut hours = Hours::default();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (days, span) = entry.rsplit_once(char::is_whitespace).ok_or_else(bad)?;
            let span = parse_span(span.trim()).ok_or_else(bad)?;
            for part in days.split(',').map(str::trim) {
                let (first, last) = match part.split_once('-') {
                    Some((a, b)) => (day(a).ok_or_else(bad)?, day(b).ok_or_else(bad)?),
                    None => {
                        let d = day(part).ok_or_else(bad)?;
                        (d, d)
                    }
                };
                // `fri-mon` wraps round the week.
                let mut d = first;
                loop {
                    if hours.days[d].replace(span).is_some() {
                        return Err(bad());
                    }
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
        }
        Ok(hours)
    }

    /// `HH:MM-HH:MM` for a day (0 = Monday), or `None` when it is closed.
    pub fn day(&self, monday_zero: usize) -> Option<String> {
        self.days
            .get(monday_zero)
            .copied()
            .flatten()
            .map(|s| format!("{}-{}", hhmm(s.start), hhmm(s.end)))
    }

    /// Lower-case English day names, Monday first.
    pub fn day_names() -> [&'static str; 7] {
        DAY_NAMES
    }

    /// Whether no day has hours.
    pub fn is_closed(&self) -> bool {
        self.days.iter().all(Option::is_none)
    }
}

/// The canonical text: runs of days with the same span, e.g. `mon-fri 09:00-18:00; sat 10:00-13:00`.
impl fmt::Display for Hours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut d = 0;
        while d < 7 {
            let Some(span) = self.days[d] else {
                d += 1;
                continue;
            };
            let mut last = d;
            while last + 1 < 7 && self.days[last + 1] == Some(span) {
                last += 1;
            }
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            if last == d {
                write!(f, "{} ", DAYS[d])?;
            } else {
                write!(f, "{}-{} ", DAYS[d], DAYS[last])?;
            }
            write!(f, "{}-{}", hhmm(span.start), hhmm(span.end))?;
            d = last + 1;
        }
        Ok(())
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn day(name: &str) -> Option<usize> {
    let name = name.trim().to_ascii_lowercase();
    DAYS.iter()
        .position(|d| *d == name)
        .or_else(|| DAY_NAMES.iter().position(|d| *d == name))
}

/// `HH:MM-HH:MM`, start before end, end up to `24:00`.
fn parse_span(text: &str) -> Option<Span> {
    let (a, b) = text.split_once('-')?;
    let (start, end) = (minutes(a)?, minutes(b)?);
    (start < end && end <= 24 * 60).then_some(Span { start, end })
}

fn minutes(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty()
        || h.len() > 2
        || m.len() != 2
        || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && (h < 24 || m == 0)).then_some(h * 60 + m)
}

/// A calling window: hours per weekday and dates off, both in the destination's local time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    pub hours: Hours,
    dates_off: Vec<Date>,
}

/// One zone's local time when a call was refused or deferred, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneState {
    pub zone: String,
    /// `2026-12-07 03:12 Monday`.
    pub local_time: String,
    pub open: bool,
}

/// Whether a call may ring now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Open,
    /// Outside the window in at least one zone; `opens_at` is when the window is next open in
    /// all of them (`None`: not within the horizon, e.g. no hours at all).
    Closed {
        opens_at: Option<Timestamp>,
        zones: Vec<ZoneState>,
    },
}

impl Window {
    pub fn new(hours: Hours, dates_off: &[&str]) -> Result<Window, WindowError> {
        if dates_off.len() > MAX_DATES_OFF {
            return Err(WindowError::TooManyDates);
        }
        let mut dates = Vec::with_capacity(dates_off.len());
        for raw in dates_off {
            let raw = raw.trim();
            let valid = raw.len() == 10 && raw.as_bytes()[4] == b'-' && raw.as_bytes()[7] == b'-';
            let date = valid
                .then(|| raw.parse::<Date>().ok())
                .flatten()
                .ok_or_else(|| WindowError::Date(raw.to_owned()))?;
            dates.push(date);
        }
        dates.sort();
        dates.dedup();
        Ok(Window {
            hours,
            dates_off: dates,
        })
    }

    /// `YYYY-MM-DD`, in order.
    pub fn dates_off(&self) -> Vec<String> {
        self.dates_off.iter().map(|d| d.to_string()).collect()
    }

    fn span_on(&self, date: Date) -> Option<Span> {
        if self.dates_off.binary_search(&date).is_ok() {
            return None;
        }
        self.hours.days[monday_zero(date.weekday())]
    }

    fn open_at(&self, local: &Zoned) -> bool {
        let minute = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute()))
            .unwrap_or(u16::MAX);
        self.span_on(local.date())
            .is_some_and(|s| s.start <= minute && minute < s.end)
    }

    /// Whether a call may ring now in every one of `zones`, and if not when it next may. No
    /// zones (an unknown local time) is never restricted.
    pub fn decide(&self, zones: &[(String, TimeZone)], now: Timestamp) -> Decision {
        let open_everywhere = |t: Timestamp| {
            zones
                .iter()
                .all(|(_, tz)| self.open_at(&t.to_zoned(tz.clone())))
        };
        if open_everywhere(now) {
            return Decision::Open;
        }
        let states = zones
            .iter()
            .map(|(name, tz)| {
                let local = now.to_zoned(tz.clone());
                ZoneState {
                    zone: name.clone(),
                    local_time: format!(
                        "{} {:?}",
                        local.strftime("%Y-%m-%d %H:%M"),
                        local.weekday()
                    ),
                    open: self.open_at(&local),
                }
            })
            .collect();
        Decision::Closed {
            opens_at: self.next_opening(zones, now, open_everywhere),
            zones: states,
        }
    }

    /// The earliest instant after `now` that is open in every zone: the intersection of the
    /// zones' open spans starts at one of the spans' starts, so only those are tried, in order.
    fn next_opening(
        &self,
        zones: &[(String, TimeZone)],
        now: Timestamp,
        open_everywhere: impl Fn(Timestamp) -> bool,
    ) -> Option<Timestamp> {
        let mut candidates = Vec::new();
        for (_, tz) in zones {
            let today = now.to_zoned(tz.clone()).date();
            let last_off = self.dates_off.last().copied().filter(|d| *d > today);
            let days = last_off.map_or(0, |d| i64::from((d - today).get_days())) + HORIZON_DAYS;
            for offset in -1..=days {
                let Ok(date) = today.checked_add(offset.days()) else {
                    continue;
                };
                let Some(span) = self.span_on(date) else {
                    continue;
                };
                let (h, m) = (
                    i8::try_from(span.start / 60).unwrap_or(0),
                    i8::try_from(span.start % 60).unwrap_or(0),
                );
                // A start inside a DST gap moves forward, as clocks do.
                let Ok(start) = date.at(h, m, 0, 0).to_zoned(tz.clone()) else {
                    continue;
                };
                let t = start.timestamp();
                if t > now {
                    candidates.push(t);
                }
            }
        }
        candidates.sort();
        candidates.dedup();
        candidates.into_iter().find(|t| open_everywhere(*t))
    }
}

fn monday_zero(w: Weekday) -> usize {
    usize::try_from(w.to_monday_zero_offset()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(name: &str) -> (String, TimeZone) {
        (name.to_owned(), TimeZone::get(name).unwrap())
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn hours_parse_and_print_canonically() {
        let h = Hours::parse("Mon-Fri 09:00-18:00; saturday 10:00-13:00").unwrap();
        assert_eq!(h.to_string(), "mon-fri 09:00-18:00; sat 10:00-13:00");
        assert_eq!(h.day(0).as_deref(), Some("09:00-18:00"));
        assert_eq!(h.day(6), None);
        let h = Hours::parse("fri-mon 08:30-24:00").unwrap();
        assert_eq!(h.to_string(), "mon 08:30-24:00; fri-sun 08:30-24:00");
        let h = Hours::parse("mon,wed 9:00-12:00;").unwrap();
        assert_eq!(h.to_string(), "mon 09:00-12:00; wed 09:00-12:00");
        assert!(Hours::parse("").unwrap().is_closed());
        for bad in [
            "mon 18:00-09:00",
            "mon 09:00-09:00",
            "mon 09:00-24:30",
            "mon 9-17",
            "funday 09:00-10:00",
            "mon 09:00-10:00; mon 11:00-12:00",
            "mon-fri",
            "09:00-10:00",
            "mon 25:00-26:00",
            "mon 09:60-10:00",
            "mon 09:00-10:00-11:00",
            "mon +9:00-10:00",
        ] {
            assert!(Hours::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates_off_are_checked_and_sorted() {
        let w = Window::new(
            Hours::default(),
            &["2026-12-25", "2026-01-01", "2026-12-25"],
        )
        .unwrap();
        assert_eq!(w.dates_off(), vec!["2026-01-01", "2026-12-25"]);
        for bad in ["2026-13-01", "2026-02-30", "26-01-01", "2026-1-1", "x"] {
            assert_eq!(
                Window::new(Hours::default(), &[bad]),
                Err(WindowError::Date(bad.to_owned()))
            );
        }
    }

    #[test]
    fn open_inside_the_local_hours_and_closed_outside() {
        let w = Window::new(Hours::parse("mon-fri 09:00-18:00").unwrap(), &[]).unwrap();
        let paris = [tz("Europe/Paris")];
        // Monday 2026-12-07 10:00 in Paris is 09:00 UTC.
        assert_eq!(w.decide(&paris, at("2026-12-07T09:00:00Z")), Decision::Open);
        // 07:59 local: opens at 09:00 local the same day.
        match w.decide(&paris, at("2026-12-07T06:59:00Z")) {
            Decision::Closed { opens_at, zones } => {
                assert_eq!(opens_at, Some(at("2026-12-07T08:00:00Z")));
                assert_eq!(zones[0].local_time, "2026-12-07 07:59 Monday");
                assert!(!zones[0].open);
            }
            d => panic!("{d:?}"),
        }
        // Friday 18:00 local: closed until Monday 09:00.
        let d = w.decide(&paris, at("2026-12-11T17:00:00Z"));
        assert!(
            matches!(d, Decision::Closed { opens_at: Some(t), .. } if t == at("2026-12-14T08:00:00Z")),
            "{d:?}"
        );
        // No zones: the local time is unknown, never restricted.
        assert_eq!(w.decide(&[], at("2026-12-07T02:00:00Z")), Decision::Open);
    }

    #[test]
    fn dates_off_push_the_opening_to_the_next_working_day() {
        let w = Window::new(
            Hours::parse("mon-sun 09:00-17:00").unwrap(),
            &["2026-12-25", "2026-12-26"],
        )
        .unwrap();
        let ny = [tz("America/New_York")];
        let d = w.decide(&ny, at("2026-12-24T23:00:00Z"));
        assert!(
            matches!(d, Decision::Closed { opens_at: Some(t), .. } if t == at("2026-12-27T14:00:00Z")),
            "{d:?}"
        );
    }

    #[test]
    fn several_zones_must_all_be_open() {
        let w = Window::new(Hours::parse("mon-sun 09:00-18:00").unwrap(), &[]).unwrap();
        let zones = [tz("America/New_York"), tz("America/Los_Angeles")];
        // 09:30 in New York is 06:30 in Los Angeles: closed until 09:00 there (12:00 in New York).
        let d = w.decide(&zones, at("2026-12-07T14:30:00Z"));
        match d {
            Decision::Closed { opens_at, zones } => {
                assert_eq!(opens_at, Some(at("2026-12-07T17:00:00Z")));
                assert_eq!(
                    zones.iter().map(|z| z.open).collect::<Vec<_>>(),
                    vec![true, false]
                );
            }
            d => panic!("{d:?}"),
        }
        // Zones too far apart for the hours to meet: never opens.
        let far = [tz("Pacific/Guam"), tz("America/Adak")];
        let w = Window::new(Hours::parse("mon-sun 09:00-12:00").unwrap(), &[]).unwrap();
        assert!(matches!(
            w.decide(&far, at("2026-12-07T00:00:00Z")),
            Decision::Closed { opens_at: None, .. }
        ));
    }

    #[test]
    fn an_opening_in_a_dst_gap_moves_forward() {
        // 2026-03-08 02:00-03:00 does not exist in New York.
        let w = Window::new(Hours::parse("sun 02:30-05:00").unwrap(), &[]).unwrap();
        let d = w.decide(&[tz("America/New_York")], at("2026-03-08T05:00:00Z"));
        assert!(
            matches!(d, Decision::Closed { opens_at: Some(t), .. } if t == at("2026-03-08T07:30:00Z")),
            "{d:?}"
        );
    }

    #[test]
    fn no_hours_never_open() {
        let w = Window::default();
        assert!(matches!(
            w.decide(&[tz("UTC")], at("2026-12-07T12:00:00Z")),
            Decision::Closed { opens_at: None, .. }
        ));
    }

    #[test]
    fn policies_parse() {
        assert_eq!("Defer".parse::<Policy>(), Ok(Policy::Defer));
        assert_eq!("refuse".parse::<Policy>(), Ok(Policy::Refuse));
        assert_eq!("ignore".parse::<Policy>(), Ok(Policy::Ignore));
        assert!("later".parse::<Policy>().is_err());
    }
}
