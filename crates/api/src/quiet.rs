//! Quiet hours, two Dialtone resources: an account's calling window
//! (`/Accounts/{AccountSid}/CallingWindow.json`: local hours per weekday and dates off in the
//! destination's time, and the default policies) and its time-zone overrides
//! (`/Accounts/{AccountSid}/TimeZoneOverrides.json`: the zone of a number or prefix, in place of
//! libphonenumber's). The runtime reads both from the store when it places a call.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use calling_window::{Hours, OverrideKey, Policy, Window};
use chrono::Utc;
use model::{AccountSid, CallingWindowRecord, TimeZoneOverrideRecord, TimeZoneOverrideSid};
use serde_json::Value;

use crate::auth::Ctx;
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError};

/// The window that applies to `account`: its own, else its parent's (a subaccount inherits).
pub(crate) async fn effective_window(
    state: &ApiState,
    account: &AccountSid,
) -> Result<Option<CallingWindowRecord>, AppError> {
    if let Some(w) = state.store.calling_window(account).await? {
        return Ok(Some(w));
    }
    let Some(rec) = state.store.account(account).await? else {
        return Ok(None);
    };
    if rec.owner_account_sid == *account {
        return Ok(None);
    }
    Ok(state.store.calling_window(&rec.owner_account_sid).await?)
}

pub(crate) async fn fetch_window(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let window = effective_window(&state, &account)
        .await?
        .ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::calling_window(&window, &account)))
}

fn dates_param(p: &Params) -> Vec<String> {
    p.get_all("DatesOff")
        .flat_map(|v| v.split([',', ' ']))
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `POST CallingWindow.json`: sets the account's own window; what the request leaves out keeps
/// its value (or its default on a first write: no hours, no dates off, `defer`, `refuse`).
pub(crate) async fn set_window(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let now = Utc::now();
    let mut rec = state
        .store
        .calling_window(&account)
        .await?
        .unwrap_or(CallingWindowRecord {
            account_sid: account,
            hours: String::new(),
            dates_off: Vec::new(),
            policy: Policy::Defer.as_str().into(),
            dial_policy: Policy::Refuse.as_str().into(),
            date_created: now,
            date_updated: now,
        });
    if let Some(h) = p.get("Hours") {
        rec.hours = Hours::parse(h)
            .map_err(|e| AppError::bad(20001, format!("Invalid Hours: {e}")))?
            .to_string();
    }
    if p.get("DatesOff").is_some() {
        let dates = dates_param(&p);
        let refs: Vec<&str> = dates.iter().map(String::as_str).collect();
        let window = Window::new(Hours::default(), &refs)
            .map_err(|e| AppError::bad(20001, format!("Invalid DatesOff: {e}")))?;
        rec.dates_off = window.dates_off();
    }
    if let Some(v) = p.get("Policy") {
        rec.policy = v
            .parse::<Policy>()
            .map_err(|e| AppError::bad(20001, format!("Invalid Policy: {e}")))?
            .as_str()
            .into();
    }
    if let Some(v) = p.get("DialPolicy") {
        match v.parse::<Policy>() {
            Ok(Policy::Defer) | Err(_) => {
                return Err(AppError::bad(
                    20001,
                    format!("Invalid DialPolicy {v:?}: use refuse or ignore (someone waits live)"),
                ))
            }
            Ok(policy) => rec.dial_policy = policy.as_str().into(),
        }
    }
    rec.date_updated = now;
    state.store.set_calling_window(&rec).await?;
    Ok(Json(render::calling_window(&rec, &account)))
}

pub(crate) async fn delete_window(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    if !state.store.delete_calling_window(&account).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

fn zone_param(p: &Params) -> Result<String, AppError> {
    let zone = p
        .get("TimeZone")
        .filter(|z| !z.is_empty())
        .ok_or_else(|| AppError::bad(20001, "TimeZone is required"))?;
    calling_window::time_zone(zone).ok_or_else(|| {
        AppError::bad(
            20001,
            format!("Invalid TimeZone {zone:?}: use an IANA name such as America/New_York"),
        )
    })?;
    Ok(zone.to_owned())
}

fn override_sid(ctx: &Ctx, segment: &str) -> Result<TimeZoneOverrideSid, AppError> {
    segment
        .strip_suffix(".json")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ctx.not_found())
}

pub(crate) async fn create_override(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let number = p.get_number("PhoneNumber").filter(|n| !n.is_empty());
    let prefix = p.get_number("Prefix").filter(|n| !n.is_empty());
    let key = match (&number, &prefix) {
        (Some(n), None) => OverrideKey::number(n).ok_or_else(|| {
            AppError::bad(
                21211,
                format!("Invalid PhoneNumber {n:?}: use E.164, + and up to 15 digits"),
            )
        })?,
        (None, Some(n)) => OverrideKey::prefix(n).ok_or_else(|| {
            AppError::bad(
                20001,
                format!("Invalid Prefix {n:?}: use + and 1 to 15 digits, e.g. +1212"),
            )
        })?,
        _ => {
            return Err(AppError::bad(
                20001,
                "Give exactly one of PhoneNumber and Prefix",
            ))
        }
    };
    let now = Utc::now();
    let (phone_number, prefix) = match key {
        OverrideKey::Number(n) => (Some(n), None),
        OverrideKey::Prefix(n) => (None, Some(n)),
    };
    let rec = TimeZoneOverrideRecord {
        sid: TimeZoneOverrideSid::generate(),
        account_sid: account,
        phone_number,
        prefix,
        time_zone: zone_param(&p)?,
        date_created: now,
        date_updated: now,
    };
    if !state.store.insert_time_zone_override(&rec).await? {
        let what = rec
            .phone_number
            .as_deref()
            .or(rec.prefix.as_deref())
            .unwrap_or_default();
        return Err(AppError::bad(
            20001,
            format!("{what} already has a time-zone override in this account: update or delete it"),
        ));
    }
    Ok((StatusCode::CREATED, Json(render::time_zone_override(&rec))))
}

pub(crate) async fn list_overrides(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state
        .store
        .list_time_zone_overrides(&account, &paging.request)
        .await?;
    Ok(Json(envelope(
        "time_zone_overrides",
        &ctx.path,
        &[],
        &paging,
        page,
        render::time_zone_override,
    )))
}

pub(crate) async fn fetch_override(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, sid)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = override_sid(&ctx, &sid)?;
    let rec = state
        .store
        .time_zone_override(&account, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::time_zone_override(&rec)))
}

pub(crate) async fn update_override(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, sid)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = override_sid(&ctx, &sid)?;
    let p = Params::from_body(body)?;
    let mut rec = state
        .store
        .time_zone_override(&account, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())?;
    rec.time_zone = zone_param(&p)?;
    rec.date_updated = Utc::now();
    if !state.store.update_time_zone_override(&rec).await? {
        return Err(ctx.not_found());
    }
    Ok(Json(render::time_zone_override(&rec)))
}

pub(crate) async fn delete_override(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, sid)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = override_sid(&ctx, &sid)?;
    if !state
        .store
        .delete_time_zone_override(&account, &sid)
        .await?
    {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
