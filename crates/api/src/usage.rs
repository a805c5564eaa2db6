//! Usage Records (`/Usage/Records.json` and its `Daily`, `Monthly`, `Yearly`, `AllTime`,
//! `Today`, `Yesterday`, `ThisMonth`, `LastMonth` lists), as Twilio shapes them: one record per
//! category and period, `count` and `usage` as strings, `price` as a number (what was charged,
//! positive), dates in UTC.
//!
//! Dialtone's categories: `calls`, `calls-inbound`, `calls-outbound` (answered calls; usage in
//! minutes, each call rounded up to the minute), `sms`, `sms-inbound`, `sms-outbound` (messages
//! received or sent; usage in segments) and `recordings` (completed ones; usage in minutes,
//! unpriced). A main account's usage includes its subaccounts' unless `IncludeSubaccounts=false`.
//!
//! Records are ordered by period, oldest first, then by category; a page is computed from the
//! periods it covers, so a list over centuries of days costs no more than one page of it.

use axum::extract::{RawQuery, State};
use axum::Json;
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, Utc};
use serde_json::{json, Value};
use store::{Cursor, Page, UsageDay, UsageKind, UsageScope};
use url::form_urlencoded;

use crate::auth::Ctx;
use crate::params::{envelope, Paging, Params, Seg};
use crate::{ApiState, AppError};

/// A usage category: its name, which kinds of stored rows it sums, and its units.
struct Category {
    name: &'static str,
    description: &'static str,
    kinds: &'static [UsageKind],
    count_unit: &'static str,
    usage_unit: &'static str,
}

/// In the order records of one period are listed (Twilio's names, alphabetical).
const CATEGORIES: [Category; 7] = [
    Category {
        name: "calls",
        description: "Voice Minutes",
        kinds: &[UsageKind::CallsInbound, UsageKind::CallsOutbound],
        count_unit: "calls",
        usage_unit: "minutes",
    },
    Category {
        name: "calls-inbound",
        description: "Inbound Voice Minutes",
        kinds: &[UsageKind::CallsInbound],
        count_unit: "calls",
        usage_unit: "minutes",
    },
    Category {
        name: "calls-outbound",
        description: "Outbound Voice Minutes",
        kinds: &[UsageKind::CallsOutbound],
        count_unit: "calls",
        usage_unit: "minutes",
    },
    Category {
        name: "recordings",
        description: "Recordings",
        kinds: &[UsageKind::Recordings],
        count_unit: "recordings",
        usage_unit: "minutes",
    },
    Category {
        name: "sms",
        description: "SMS Messages",
        kinds: &[UsageKind::SmsInbound, UsageKind::SmsOutbound],
        count_unit: "messages",
        usage_unit: "segments",
    },
    Category {
        name: "sms-inbound",
        description: "Inbound SMS Messages",
        kinds: &[UsageKind::SmsInbound],
        count_unit: "messages",
        usage_unit: "segments",
    },
    Category {
        name: "sms-outbound",
        description: "Outbound SMS Messages",
        kinds: &[UsageKind::SmsOutbound],
        count_unit: "messages",
        usage_unit: "segments",
    },
];

/// Which list: the subresource's name in the path and how it cuts time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Period {
    /// `Records.json`: one record per category over the whole range.
    Records,
    AllTime,
    Daily,
    Monthly,
    Yearly,
    Today,
    Yesterday,
    ThisMonth,
    LastMonth,
}

impl Period {
    /// The path's name (`Records/Daily.json`), `None` for `Records.json` itself.
    fn segment(self) -> Option<&'static str> {
        Some(match self {
            Period::Records => return None,
            Period::AllTime => "AllTime",
            Period::Daily => "Daily",
            Period::Monthly => "Monthly",
            Period::Yearly => "Yearly",
            Period::Today => "Today",
            Period::Yesterday => "Yesterday",
            Period::ThisMonth => "ThisMonth",
            Period::LastMonth => "LastMonth",
        })
    }

    /// The range this list covers on its own (`None`: from the account's creation to today).
    fn fixed_range(self, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
        let month_start = today.with_day(1)?;
        match self {
            Period::Today => Some((today, today)),
            Period::Yesterday => today.pred_opt().map(|d| (d, d)),
            Period::ThisMonth => Some((month_start, today)),
            Period::LastMonth => {
                let end = month_start.pred_opt()?;
                Some((end.with_day(1)?, end))
            }
            _ => None,
        }
    }

    /// The first and last day of the `index`th period from `start` (clipped to `[start, end]`),
    /// or `None` past `end`.
    fn nth(self, start: NaiveDate, end: NaiveDate, index: u64) -> Option<(NaiveDate, NaiveDate)> {
        let index32 = u32::try_from(index).ok()?;
        let (first, last) = match self {
            Period::Daily => {
                let day = start.checked_add_days(Days::new(index))?;
                (day, day)
            }
            Period::Monthly => {
                let month = start.with_day(1)?.checked_add_months(Months::new(index32))?;
                (month, month.checked_add_months(Months::new(1))?.pred_opt()?)
            }
            Period::Yearly => {
                let year = NaiveDate::from_ymd_opt(start.year().checked_add(i32::try_from(index).ok()?)?, 1, 1)?;
                (year, NaiveDate::from_ymd_opt(year.year(), 12, 31)?)
            }
            _ if index == 0 => (start, end),
            _ => return None,
        };
        (first <= end).then(|| (first.max(start), last.min(end)))
    }
}

/// `YYYY-MM-DD`, or an offset from today as Twilio allows (`-30days`, `+1days`).
fn parse_day(value: &str, today: NaiveDate, name: &str) -> Result<NaiveDate, AppError> {
    let bad = || AppError::bad(20001, format!("Invalid {name} {value:?}: use YYYY-MM-DD or an offset such as -30days"));
    if let Some(offset) = value.strip_suffix("days") {
        let n: i64 = offset.parse().map_err(|_| bad())?;
        let days = Days::new(n.unsigned_abs());
        return if n < 0 { today.checked_sub_days(days) } else { today.checked_add_days(days) }.ok_or_else(bad);
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| bad())
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn days_since_epoch(day: NaiveDate) -> i64 {
    midnight(day).timestamp().div_euclid(86_400)
}

/// One rendered record before paging: the period and the category's sums.
struct Record {
    first: NaiveDate,
    last: NaiveDate,
    category: &'static Category,
    count: u64,
    usage: u64,
    price_e4: i64,
}

pub(crate) async fn list(state: ApiState, ctx: Ctx, account: String, query: Option<String>, period: Period) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let record = state.store.account(&account).await?.ok_or_else(|| ctx.not_found())?;
    let p = Params::from_query(query.as_deref());
    let paging = Paging::parse(&p)?;
    let now = Utc::now();
    let today = now.date_naive();
    let categories: Vec<&'static Category> = match p.get("Category").filter(|c| !c.is_empty()) {
        None => CATEGORIES.iter().collect(),
        Some(name) => {
            // Twilio lists nothing for a category it has no usage in; an unknown one likewise.
            CATEGORIES.iter().filter(|c| c.name == name).collect()
        }
    };
    let scope = match p.get("IncludeSubaccounts") {
        None | Some("true" | "True") => UsageScope::WithSubaccounts,
        Some("false" | "False") => UsageScope::Account,
        Some(other) => return Err(AppError::bad(20001, format!("Invalid IncludeSubaccounts {other:?}: true or false"))),
    };
    let (mut start, mut end) = period.fixed_range(today).unwrap_or((record.date_created.date_naive(), today));
    let mut filters: Vec<(&str, String)> = Vec::new();
    if let Some(c) = p.get("Category").filter(|c| !c.is_empty()) {
        filters.push(("Category", c.to_owned()));
    }
    if let Some(v) = p.get("StartDate").filter(|v| !v.is_empty()) {
        let day = parse_day(v, today, "StartDate")?;
        start = if period.fixed_range(today).is_some() { start.max(day) } else { day };
        filters.push(("StartDate", v.to_owned()));
    }
    if let Some(v) = p.get("EndDate").filter(|v| !v.is_empty()) {
        let day = parse_day(v, today, "EndDate")?;
        end = if period.fixed_range(today).is_some() { end.min(day) } else { day };
        filters.push(("EndDate", v.to_owned()));
    }
    if let Some(v) = p.get("IncludeSubaccounts") {
        filters.push(("IncludeSubaccounts", v.to_owned()));
    }

    // The records of this page: periods in order, each with every chosen category. A cursor
    // from `next_page_uri` carries the offset of the page it opens.
    let per_period = categories.len().max(1) as u64;
    let offset = match &paging.request.after {
        Some(cursor) => u64::try_from(cursor.date_created_micros).map_err(|_| AppError::bad(20001, "Invalid PageToken"))?,
        None => paging.request.offset,
    };
    let size = u64::from(paging.size);
    let mut periods = Vec::new();
    if !categories.is_empty() && start <= end {
        let first_period = offset / per_period;
        // One period more than the page needs, to know whether another page follows.
        let last_period = (offset + size) / per_period + 1;
        for index in first_period..=last_period {
            match period.nth(start, end, index) {
                Some(range) => periods.push(range),
                None => break,
            }
        }
    }
    let days = match (periods.first(), periods.last()) {
        (Some(first), Some(last)) => {
            let until = last.1.succ_opt().map_or(DateTime::<Utc>::MAX_UTC, midnight);
            state.store.usage_by_day(&account, scope, midnight(first.0), until).await?
        }
        _ => Vec::new(),
    };
    let mut records = Vec::new();
    let first_index = (offset / per_period) * per_period;
    for (i, (first, last)) in periods.iter().enumerate() {
        let (from, to) = (days_since_epoch(*first), days_since_epoch(*last));
        for (j, category) in categories.iter().enumerate() {
            let position = first_index + (i as u64) * per_period + j as u64;
            if position < offset {
                continue;
            }
            let mut rec = Record { first: *first, last: *last, category, count: 0, usage: 0, price_e4: 0 };
            for d in days.iter().filter(|d| (from..=to).contains(&d.day) && category.kinds.contains(&d.kind)) {
                add(&mut rec, d);
            }
            records.push(rec);
        }
    }
    let more = records.len() as u64 > size;
    records.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let next = more.then(|| Cursor { date_created_micros: i64::try_from(offset + size).unwrap_or(i64::MAX), sid: "UR".into() });
    let page = Page { items: records, next };
    let base = usage_base(&account);
    let as_of = now.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    let subresources = matches!(period, Period::Records | Period::AllTime);
    Ok(Json(envelope("usage_records", &ctx.path, &filters, &paging, page, |r| {
        render(r, &account, &base, period, &as_of, subresources)
    })))
}

fn add(rec: &mut Record, day: &UsageDay) {
    rec.count = rec.count.saturating_add(day.count);
    rec.usage = rec.usage.saturating_add(day.usage);
    rec.price_e4 = rec.price_e4.saturating_add(day.price_e4);
}

fn usage_base(account: &model::AccountSid) -> String {
    format!("/2010-04-01/Accounts/{account}/Usage/Records")
}

fn record_uri(base: &str, segment: Option<&str>, category: &str, range: Option<(NaiveDate, NaiveDate)>) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("Category", category);
    if let Some((first, last)) = range {
        q.append_pair("StartDate", &first.to_string());
        q.append_pair("EndDate", &last.to_string());
    }
    match segment {
        Some(s) => format!("{base}/{s}.json?{}", q.finish()),
        None => format!("{base}.json?{}", q.finish()),
    }
}

fn render(r: &Record, account: &model::AccountSid, base: &str, period: Period, as_of: &str, subresources: bool) -> Value {
    let name = r.category.name;
    let subresource_uris = subresources.then(|| {
        let lists = [
            ("all_time", "AllTime"),
            ("today", "Today"),
            ("yesterday", "Yesterday"),
            ("this_month", "ThisMonth"),
            ("last_month", "LastMonth"),
            ("daily", "Daily"),
            ("monthly", "Monthly"),
            ("yearly", "Yearly"),
        ];
        lists
            .iter()
            .map(|(key, segment)| ((*key).to_owned(), json!(record_uri(base, Some(segment), name, None))))
            .collect::<serde_json::Map<_, _>>()
    });
    // What was charged, as Twilio's usage shows it: a positive number.
    let price = serde_json::Number::from_f64(r.price_e4 as f64 / 10_000.0).map_or(Value::Null, Value::Number);
    json!({
        "account_sid": account,
        "api_version": "2010-04-01",
        "as_of": as_of,
        "category": name,
        "count": r.count.to_string(),
        "count_unit": r.category.count_unit,
        "description": r.category.description,
        "end_date": r.last.to_string(),
        "price": price,
        "price_unit": "USD",
        "start_date": r.first.to_string(),
        "subresource_uris": subresource_uris,
        "uri": record_uri(base, period.segment(), name, Some((r.first, r.last))),
        "usage": r.usage.to_string(),
        "usage_unit": r.category.usage_unit,
    })
}

macro_rules! period_handler {
    ($($name:ident => $period:expr),* $(,)?) => {$(
        pub(crate) async fn $name(
            State(state): State<ApiState>,
            ctx: Ctx,
            Seg(account): Seg<String>,
            RawQuery(query): RawQuery,
        ) -> Result<Json<Value>, AppError> {
            list(state, ctx, account, query, $period).await
        }
    )*};
}

period_handler! {
    records => Period::Records,
    all_time => Period::AllTime,
    daily => Period::Daily,
    monthly => Period::Monthly,
    yearly => Period::Yearly,
    today => Period::Today,
    yesterday => Period::Yesterday,
    this_month => Period::ThisMonth,
    last_month => Period::LastMonth,
}

/// Records as the lists render them, with and without their subresources (for the schema test).
#[cfg(test)]
pub(crate) fn samples(account: model::AccountSid) -> Vec<Value> {
    let day = NaiveDate::from_ymd_opt(2026, 12, 1).expect("a real day");
    let rec = Record { first: day, last: day, category: &CATEGORIES[0], count: 2, usage: 3, price_e4: 1500 };
    let base = usage_base(&account);
    vec![
        render(&rec, &account, &base, Period::Records, "2026-12-07T10:00:00+00:00", true),
        render(&rec, &account, &base, Period::Daily, "2026-12-07T10:00:00+00:00", false),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn periods_are_cut_and_clipped_to_the_range() {
        let (start, end) = (d("2026-01-15"), d("2026-03-10"));
        assert_eq!(Period::Daily.nth(start, end, 0), Some((start, start)));
        assert_eq!(Period::Daily.nth(start, end, 54), Some((end, end)));
        assert_eq!(Period::Daily.nth(start, end, 55), None);
        assert_eq!(Period::Monthly.nth(start, end, 0), Some((start, d("2026-01-31"))));
        assert_eq!(Period::Monthly.nth(start, end, 1), Some((d("2026-02-01"), d("2026-02-28"))));
        assert_eq!(Period::Monthly.nth(start, end, 2), Some((d("2026-03-01"), end)));
        assert_eq!(Period::Monthly.nth(start, end, 3), None);
        assert_eq!(Period::Yearly.nth(start, d("2027-02-01"), 1), Some((d("2027-01-01"), d("2027-02-01"))));
        assert_eq!(Period::AllTime.nth(start, end, 0), Some((start, end)));
        assert_eq!(Period::AllTime.nth(start, end, 1), None);
        // Past any calendar: no period, no panic.
        assert_eq!(Period::Daily.nth(start, end, u64::MAX), None);
        assert_eq!(Period::Yearly.nth(start, NaiveDate::MAX, u64::MAX), None);
    }

    #[test]
    fn fixed_ranges_follow_the_calendar() {
        let today = d("2026-03-01");
        assert_eq!(Period::Today.fixed_range(today), Some((today, today)));
        assert_eq!(Period::Yesterday.fixed_range(today), Some((d("2026-02-28"), d("2026-02-28"))));
        assert_eq!(Period::ThisMonth.fixed_range(today), Some((today, today)));
        assert_eq!(Period::LastMonth.fixed_range(today), Some((d("2026-02-01"), d("2026-02-28"))));
        assert_eq!(Period::Daily.fixed_range(today), None);
    }

    #[test]
    fn days_and_offsets_parse_and_junk_is_refused() {
        let today = d("2026-12-07");
        assert_eq!(parse_day("2026-11-30", today, "StartDate").unwrap(), d("2026-11-30"));
        assert_eq!(parse_day("-30days", today, "StartDate").unwrap(), d("2026-11-07"));
        assert_eq!(parse_day("+1days", today, "EndDate").unwrap(), d("2026-12-08"));
        for bad in ["", "2026-13-01", "yesterday", "-days", "99999999999999999999days", "-9223372036854775808days"] {
            assert!(parse_day(bad, today, "StartDate").is_err(), "{bad}");
        }
    }
}
