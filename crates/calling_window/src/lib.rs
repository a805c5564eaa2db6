//! Quiet hours: in which time zone a destination number is, and whether a call may ring it now.
//!
//! [`ZoneTable`] maps phone-number prefixes to IANA time zones. The built-in table
//! ([`ZoneTable::builtin`]) is libphonenumber's (`data/number-timezones.txt`, written by
//! `scripts/gen-number-timezones.py` from a pinned `phonenumbers` release), embedded and parsed
//! once; the longest listed prefix of a number gives its zones. [`Overrides`] are an account's
//! own answers (an exact number beats a prefix, a longer prefix beats a shorter one) and are
//! consulted first.
//!
//! [`Window`] is a calling window: local hours per weekday and dates off, in the destination's
//! time. [`Window::decide`] says whether a call may ring now and, if not, when the window next
//! opens. A number with several zones (a country-level fallback such as `+1` alone) may ring only
//! while the window is open in every one of them.
//!
//! Driven like the other sans-IO cores: the caller passes `now` and gets a [`Decision`]; nothing
//! here reads the clock, and the time-zone rules are the tz database bundled with `jiff`.
//!
//! Architecture invariant: no I/O, no clock. Text from the network (hours, dates, zone names,
//! prefixes) is parsed into these types or refused with what is wrong; never a panic.

mod window;
mod zones;

pub use jiff::tz::TimeZone;
pub use jiff::Timestamp;
pub use window::{Decision, Hours, Policy, Window, WindowError, ZoneState};
pub use zones::{resolve, DataError, OverrideKey, Overrides, Resolved, ZoneSource, ZoneTable};

/// A time zone by its IANA name (`America/New_York`), or `None` when the bundled tz database
/// does not know it.
pub fn time_zone(name: &str) -> Option<TimeZone> {
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    TimeZone::get(name).ok()
}
