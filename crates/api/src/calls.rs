//! Calls (create, read, update, delete) and their notifications. Creating and updating go
//! through [`crate::ApiHooks`]: only the runtime holds live calls.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use model::{ApplicationRecord, ApplicationSid, CallSid, CallStatus};
use serde_json::Value;
use store::CallFilter;

use crate::auth::Ctx;
use crate::applications::bool_param;
use crate::numbers::{e164, method_param, url_param};
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError, CallUpdate, CreateCall, HookError, QuietHours};

/// Twilio's default ring time, and its ceiling (larger values are clamped, as Twilio does).
const DEFAULT_TIMEOUT: u32 = 60;
const MAX_TIMEOUT: u32 = 600;
/// Twilio's default and largest `TimeLimit`: four hours, and 24 hours.
const DEFAULT_TIME_LIMIT: u32 = 14_400;
const MAX_TIME_LIMIT: u32 = 86_400;
/// Twilio's limit on an inline `Twiml` document.
const MAX_TWIML: usize = 4000;
/// Twilio's longest `SendDigits`.
const MAX_SEND_DIGITS: usize = 32;
const EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

/// A destination: E.164 (spaces and dashes allowed) or a SIP URI.
fn destination(raw: &str) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        let ok = raw.len() > 4 && raw.contains(|c: char| c.is_ascii_alphanumeric())
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'));
        return ok.then(|| raw.to_owned());
    }
    e164(raw)
}

fn seconds(p: &Params, name: &str, code: u32, default: u32, max: u32) -> Result<u32, AppError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n.min(max)),
            _ => Err(AppError::bad(code, format!("Invalid {name} {v:?}: use a positive whole number of seconds"))),
        },
    }
}

fn twiml_param(p: &Params) -> Result<Option<String>, AppError> {
    match p.get("Twiml").filter(|t| !t.trim().is_empty()) {
        Some(t) if t.len() > MAX_TWIML => {
            Err(AppError::bad(20001, format!("Twiml is longer than {MAX_TWIML} characters")))
        }
        t => Ok(t.map(str::to_owned)),
    }
}

/// A method parameter of Calls, refused with Twilio's 21209 (Invalid Method).
fn call_method(p: &Params, name: &str) -> Result<String, AppError> {
    match p.get(name) {
        None | Some("") => Ok("POST".into()),
        Some(m) => method_param(name, m).map_err(|_| {
            AppError::bad(21209, format!("Invalid {name} {m:?}: use GET or POST"))
        }),
    }
}

/// `Url` (with `Method`), `Twiml`: what a call runs. Twiml wins when both are given, as Twilio.
fn document_params(p: &Params) -> Result<(Option<String>, String, Option<String>), AppError> {
    let twiml = twiml_param(p)?;
    let url = match p.get("Url") {
        Some(v) if !v.is_empty() => url_param("Url", v)?,
        _ => None,
    };
    Ok((url, call_method(p, "Method")?, twiml))
}

/// `SendDigits`: Twilio's keypad alphabet (`w` waits half a second, `W` a second).
fn send_digits_param(p: &Params) -> Result<Option<String>, AppError> {
    let Some(digits) = p.get("SendDigits").filter(|d| !d.is_empty()) else { return Ok(None) };
    let valid = digits.len() <= MAX_SEND_DIGITS
        && digits.chars().all(|c| c.is_ascii_digit() || "ABCD*#wW".contains(c));
    if !valid {
        return Err(AppError::bad(
            21206,
            format!("Invalid SendDigits {digits:?}: use up to {MAX_SEND_DIGITS} of 0-9, A-D, *, #, w and W"),
        ));
    }
    Ok(Some(digits.to_owned()))
}

/// `QuietHoursPolicy` (`defer`, `refuse`, `ignore`; `defer` only when nobody waits live) and,
/// for Calls create, `CallingWindow` (hours in place of the account window's).
pub(crate) fn quiet_hours_params(p: &Params, live: bool) -> Result<QuietHours, AppError> {
    let policy = match p.get("QuietHoursPolicy").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let policy: calling_window::Policy = v.parse().map_err(|e: calling_window::WindowError| AppError::bad(20001, e.to_string()))?;
            if live && policy == calling_window::Policy::Defer {
                return Err(AppError::bad(20001, "QuietHoursPolicy defer is for Calls create: a participant is refused or placed"));
            }
            Some(policy.as_str().to_owned())
        }
    };
    let hours = match p.get("CallingWindow").filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(v) => Some(
            calling_window::Hours::parse(v)
                .map_err(|e| AppError::bad(20001, format!("Invalid CallingWindow: {e}")))?
                .to_string(),
        ),
    };
    Ok(QuietHours { policy, hours, live })
}

/// The parameters of `POST Calls.json`, checked. `ApplicationSid` is returned apart: it still has
/// to be looked up (see [`apply_application`]).
fn parse_create(account: model::AccountSid, p: &Params) -> Result<(CreateCall, Option<ApplicationSid>), AppError> {
    let to = p.get_number("To").filter(|s| !s.trim().is_empty());
    let to = to.ok_or_else(|| AppError::bad(21201, "No 'To' number is specified"))?;
    let to = destination(&to).ok_or_else(|| AppError::bad(21211, format!("Invalid 'To' Phone Number: {to}")))?;
    let from = p.get_number("From").filter(|s| !s.trim().is_empty());
    let from = from.ok_or_else(|| AppError::bad(21213, "No 'From' number is specified"))?;
    let from = destination(&from)
        .ok_or_else(|| AppError::bad(21212, format!("Invalid 'From' Phone Number: {from}")))?;
    let application = match p.get("ApplicationSid").filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => Some(raw.parse::<ApplicationSid>().map_err(|_| invalid_application(raw))?),
    };
    let (url, method, twiml) = document_params(p)?;
    if url.is_none() && twiml.is_none() && application.is_none() {
        return Err(AppError::bad(21205, "Url or Twiml or ApplicationSid required"));
    }
    let optional_url = |name: &str| -> Result<Option<String>, AppError> {
        p.get(name).map(|v| url_param(name, v)).transpose().map(Option::flatten)
    };
    let mut events = Vec::new();
    for value in p.get_all("StatusCallbackEvent") {
        // Repeated parameters (the SDKs) or one space-separated value (curl users).
        for event in value.split([' ', ',']).filter(|e| !e.is_empty()) {
            let event = event.to_ascii_lowercase();
            if !EVENTS.contains(&event.as_str()) {
                return Err(AppError::bad(
                    20001,
                    format!("StatusCallbackEvent {event:?} is not one of initiated, ringing, answered, completed"),
                ));
            }
            if !events.contains(&event) {
                events.push(event);
            }
        }
    }
    if events.is_empty() {
        events.push("completed".to_owned());
    }
    let record = match p.get("Record") {
        None | Some("") => false,
        Some(v) => bool_param("Record", v)?,
    };
    let call = CreateCall {
        account_sid: account,
        to,
        from,
        url,
        method,
        twiml,
        fallback_url: optional_url("FallbackUrl")?,
        fallback_method: call_method(p, "FallbackMethod")?,
        status_callback: optional_url("StatusCallback")?,
        status_callback_method: call_method(p, "StatusCallbackMethod")?,
        status_callback_events: events,
        timeout: seconds(p, "Timeout", 21208, DEFAULT_TIMEOUT, MAX_TIMEOUT)?,
        time_limit: seconds(p, "TimeLimit", 20001, DEFAULT_TIME_LIMIT, MAX_TIME_LIMIT)?,
        send_digits: send_digits_param(p)?,
        record,
        quiet_hours: quiet_hours_params(p, false)?,
    };
    Ok((call, application))
}

fn invalid_application(raw: &str) -> AppError {
    AppError::bad(21218, format!("Invalid ApplicationSid {raw}: no such application in this account"))
}

/// Runs the call with `app`'s voice settings instead of `Url`, `Method` and the fallback (as
/// Twilio: an `ApplicationSid` overrides them); its status callback applies when the request
/// names none. Inline `Twiml` still wins over both.
fn apply_application(call: &mut CreateCall, app: &ApplicationRecord, asked_callback: bool) -> Result<(), AppError> {
    if call.twiml.is_none() {
        let url = app.voice_url.clone().ok_or_else(|| {
            AppError::bad(21205, format!("Application {} has no VoiceUrl: set one, or pass Url or Twiml", app.sid))
        })?;
        call.url = Some(url);
        call.method = app.voice_method.clone();
        call.fallback_url = app.voice_fallback_url.clone();
        call.fallback_method = app.voice_fallback_method.clone();
    }
    if !asked_callback && app.status_callback.is_some() {
        call.status_callback = app.status_callback.clone();
        call.status_callback_method = app.status_callback_method.clone();
    }
    Ok(())
}

fn parse_update(p: &Params) -> Result<CallUpdate, AppError> {
    let (url, method, twiml) = document_params(p)?;
    let status = match p.get("Status").filter(|s| !s.is_empty()) {
        None => None,
        Some("completed") => Some(CallStatus::Completed),
        Some("canceled") => Some(CallStatus::Canceled),
        Some(other) => {
            return Err(AppError::bad(20001, format!("Status must be completed or canceled, not {other:?}")))
        }
    };
    Ok(CallUpdate { redirect: if twiml.is_some() { None } else { url.map(|u| (u, method)) }, twiml, status })
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let (mut call, application) = parse_create(account, &p)?;
    if let Some(sid) = application {
        // Another account's application looks exactly like a missing one.
        let app = state.store.application(&account, &sid).await?.ok_or_else(|| invalid_application(sid.as_str()))?;
        apply_application(&mut call, &app, p.get("StatusCallback").is_some_and(|v| !v.is_empty()))?;
    }
    let rec = state.hooks.create_call(call).await?;
    Ok((StatusCode::CREATED, Json(render::call(&rec))))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, call)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = call_sid(&ctx, &call, ".json")?;
    let update = parse_update(&Params::from_body(body)?)?;
    match state.hooks.update_call(account, sid, update).await {
        Ok(rec) => Ok(Json(render::call(&rec))),
        Err(HookError::NotFound) => Err(ctx.not_found()),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn call_sid(ctx: &Ctx, segment: &str, suffix: &str) -> Result<CallSid, AppError> {
    segment.strip_suffix(suffix).and_then(|s| s.parse().ok()).ok_or_else(|| ctx.not_found())
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_query(query.as_deref());
    let paging = Paging::parse(&p)?;
    let status = p
        .get("Status")
        .map(|s| {
            s.parse::<CallStatus>()
                .map_err(|_| AppError::bad(20001, format!("Invalid Status {s:?}")))
        })
        .transpose()?;
    let parent_call_sid = p
        .get("ParentCallSid")
        .map(|s| s.parse::<CallSid>().map_err(|_| AppError::bad(20001, "Invalid ParentCallSid")))
        .transpose()?;
    let filter = CallFilter { to: p.get_number("To"), from: p.get_number("From"), status, parent_call_sid };
    let mut filters = Vec::new();
    if let Some(v) = &filter.to {
        filters.push(("To", v.clone()));
    }
    if let Some(v) = &filter.from {
        filters.push(("From", v.clone()));
    }
    if let Some(v) = filter.status {
        filters.push(("Status", v.as_str().to_owned()));
    }
    if let Some(v) = &filter.parent_call_sid {
        filters.push(("ParentCallSid", v.to_string()));
    }
    let page = state.store.list_calls(&account, &filter, &paging.request).await?;
    Ok(Json(envelope("calls", &ctx.path, &filters, &paging, page, render::call)))
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, call)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = call_sid(&ctx, &call, ".json")?;
    let rec = state.store.call(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::call(&rec)))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, call)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = call_sid(&ctx, &call, ".json")?;
    let rec = state.store.call(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    if !rec.status.is_final() {
        return Err(AppError::bad(
            21220,
            format!("Call {sid} is {}: end it (Status=completed) before deleting it", rec.status),
        ));
    }
    if !state.store.delete_call(&account, &sid).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `Calls/{CallSid}/Notifications.json` (with a call) and `Notifications.json` (without).
async fn notifications(
    state: ApiState,
    ctx: Ctx,
    account: String,
    call: Option<String>,
    query: Option<String>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let call = call.map(|c| call_sid(&ctx, &c, "")).transpose()?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state.store.list_notifications(&account, call.as_ref(), &paging.request).await?;
    Ok(Json(envelope("notifications", &ctx.path, &[], &paging, page, render::notification)))
}

pub(crate) async fn call_notifications(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, call)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    notifications(state, ctx, account, Some(call), query).await
}

pub(crate) async fn account_notifications(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    notifications(state, ctx, account, None, query).await
}
