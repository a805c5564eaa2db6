//! IncomingPhoneNumbers: create, read, update, delete, list; voice and SMS settings.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use model::{AccountSid, ApplicationSid, PhoneNumberRecord, PhoneNumberSid};
use serde_json::Value;
use store::NumberFilter;

use crate::auth::Ctx;
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError};

const MAX_FRIENDLY_NAME: usize = 64;

/// `+` then 2 to 15 digits, the first not 0 (E.164). Spaces, dashes, dots and brackets that
/// people type are dropped first.
pub(crate) fn e164(raw: &str) -> Option<String> {
    let cleaned: String =
        raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let digits = cleaned.strip_prefix('+')?;
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then_some(cleaned)
}

/// An absolute http(s) URL, or `None` for the empty string (which clears the setting).
pub(crate) fn url_param(name: &str, value: &str) -> Result<Option<String>, AppError> {
    if value.is_empty() {
        return Ok(None);
    }
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(Some(value.to_owned())),
        _ => Err(AppError::bad(21205, format!("{name} is not a valid URL: {value}"))),
    }
}

pub(crate) fn method_param(name: &str, value: &str) -> Result<String, AppError> {
    let upper = value.to_ascii_uppercase();
    match upper.as_str() {
        "GET" | "POST" => Ok(upper),
        _ => Err(AppError::bad(20001, format!("{name} must be GET or POST, not {value:?}"))),
    }
}

pub(crate) fn friendly_name_param(value: &str) -> Result<String, AppError> {
    if value.chars().count() > MAX_FRIENDLY_NAME {
        return Err(AppError::bad(20002, "FriendlyName is longer than 64 characters"));
    }
    Ok(value.to_owned())
}

/// Applies the settable parameters present in `p` to `rec` (absent ones keep their value).
fn apply(rec: &mut PhoneNumberRecord, p: &Params) -> Result<(), AppError> {
    if let Some(v) = p.get("FriendlyName") {
        rec.friendly_name = friendly_name_param(v)?;
    }
    if let Some(v) = p.get("VoiceUrl") {
        rec.voice_url = url_param("VoiceUrl", v)?;
    }
    if let Some(v) = p.get("VoiceMethod") {
        rec.voice_method = method_param("VoiceMethod", v)?;
    }
    if let Some(v) = p.get("VoiceFallbackUrl") {
        rec.voice_fallback_url = url_param("VoiceFallbackUrl", v)?;
    }
    if let Some(v) = p.get("VoiceFallbackMethod") {
        rec.voice_fallback_method = method_param("VoiceFallbackMethod", v)?;
    }
    if let Some(v) = p.get("StatusCallback") {
        rec.status_callback = url_param("StatusCallback", v)?;
    }
    if let Some(v) = p.get("StatusCallbackMethod") {
        rec.status_callback_method = method_param("StatusCallbackMethod", v)?;
    }
    if let Some(v) = p.get("SmsUrl") {
        rec.sms_url = url_param("SmsUrl", v)?;
    }
    if let Some(v) = p.get("SmsMethod") {
        rec.sms_method = method_param("SmsMethod", v)?;
    }
    if let Some(v) = p.get("SmsFallbackUrl") {
        rec.sms_fallback_url = url_param("SmsFallbackUrl", v)?;
    }
    if let Some(v) = p.get("SmsFallbackMethod") {
        rec.sms_fallback_method = method_param("SmsFallbackMethod", v)?;
    }
    Ok(())
}

/// `SmsApplicationSid`: absent leaves it, empty clears it, else an application of `account`
/// (looked up, as `VoiceApplicationSid`; 21218 otherwise).
async fn apply_sms_application(
    state: &ApiState,
    account: &AccountSid,
    rec: &mut PhoneNumberRecord,
    p: &Params,
) -> Result<(), AppError> {
    let Some(raw) = p.get("SmsApplicationSid") else { return Ok(()) };
    if raw.is_empty() {
        rec.sms_application_sid = None;
        return Ok(());
    }
    let invalid = || AppError::bad(21218, format!("SmsApplicationSid {raw} is not an application of this account"));
    let sid: ApplicationSid = raw.parse().map_err(|_| invalid())?;
    state.store.application(account, &sid).await?.ok_or_else(invalid)?;
    rec.sms_application_sid = Some(sid);
    Ok(())
}

/// `VoiceApplicationSid`: absent -> `None` (unchanged), empty -> `Some(None)` (use the number's
/// own URLs), else an application of `account`.
async fn voice_application_param(
    state: &ApiState,
    account: &AccountSid,
    p: &Params,
) -> Result<Option<Option<ApplicationSid>>, AppError> {
    let Some(raw) = p.get("VoiceApplicationSid") else { return Ok(None) };
    if raw.is_empty() {
        return Ok(Some(None));
    }
    let invalid = || AppError::bad(21218, format!("VoiceApplicationSid {raw} is not an application of this account"));
    let sid: ApplicationSid = raw.parse().map_err(|_| invalid())?;
    state.store.application(account, &sid).await?.ok_or_else(invalid)?;
    Ok(Some(Some(sid)))
}

/// Saves a `VoiceApplicationSid` change, if any; returns the number's application afterwards.
async fn save_voice_application(
    state: &ApiState,
    ctx: &Ctx,
    rec: &PhoneNumberRecord,
    change: Option<Option<ApplicationSid>>,
) -> Result<Option<ApplicationSid>, AppError> {
    if let Some(app) = change {
        if !state.store.set_number_voice_application(&rec.account_sid, &rec.sid, app.as_ref()).await? {
            // The number or the application went away since they were read.
            return Err(ctx.not_found());
        }
    }
    let apps = state.store.number_voice_applications(&rec.account_sid, &[rec.sid]).await?;
    Ok(apps.get(&rec.sid).copied())
}

fn number_sid(ctx: &Ctx, segment: &str) -> Result<PhoneNumberSid, AppError> {
    segment.strip_suffix(".json").and_then(|s| s.parse().ok()).ok_or_else(|| ctx.not_found())
}

/// A new number with Twilio's defaults: named after itself, no URLs, POST everywhere.
fn blank(account: AccountSid, phone_number: String, now: chrono::DateTime<Utc>) -> PhoneNumberRecord {
    PhoneNumberRecord {
        sid: PhoneNumberSid::generate(),
        account_sid: account,
        friendly_name: phone_number.clone(),
        phone_number,
        voice_url: None,
        voice_method: "POST".into(),
        voice_fallback_url: None,
        voice_fallback_method: "POST".into(),
        status_callback: None,
        status_callback_method: "POST".into(),
        sms_url: None,
        sms_method: "POST".into(),
        sms_fallback_url: None,
        sms_fallback_method: "POST".into(),
        sms_application_sid: None,
        date_created: now,
        date_updated: now,
    }
}

/// The largest body of `POST IncomingPhoneNumbers/Bulk.json`, and its most lines.
pub(crate) const BULK_BODY_LIMIT: usize = 16 * 1024 * 1024;
const BULK_MAX_LINES: usize = 100_000;

/// The settings a line of a bulk creation may give its number.
const LINE_SETTINGS: [&str; 12] = [
    "PhoneNumber", "FriendlyName", "VoiceUrl", "VoiceMethod", "VoiceFallbackUrl", "VoiceFallbackMethod",
    "StatusCallback", "StatusCallbackMethod", "SmsUrl", "SmsMethod", "SmsFallbackUrl", "SmsFallbackMethod",
];

/// A line of a bulk creation that added no number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchError {
    /// From 1, counting every line of the body.
    pub line: usize,
    pub phone_number: Option<String>,
    pub code: u32,
    pub message: String,
}

/// The settings one line of a bulk body gives its number, as `(name, value)` pairs: a bare line
/// is a `PhoneNumber`, a line starting with `{` a JSON object of [`LINE_SETTINGS`] to strings.
/// Anything else is Twilio's 20001 with a message for the client. Values are not checked here.
pub fn bulk_line_params(line: &str) -> Result<Vec<(String, String)>, (u32, String)> {
    if !line.starts_with('{') {
        return Ok(vec![("PhoneNumber".to_owned(), line.to_owned())]);
    }
    let object: serde_json::Map<String, Value> = serde_json::from_str(line)
        .map_err(|_| (20001, "The line is neither a phone number nor a JSON object".to_owned()))?;
    let mut pairs = Vec::with_capacity(object.len());
    for (name, value) in object {
        if !LINE_SETTINGS.contains(&name.as_str()) {
            let shown: String = name.chars().take(64).collect();
            return Err((20001, format!("Unknown parameter {shown:?} in the line")));
        }
        let Value::String(value) = value else {
            return Err((20001, format!("{name} must be a string")));
        };
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// One line of a bulk body as a number: `template` (the shared settings) with the line's own.
/// Errors carry the number when the line named one.
fn bulk_line(line: &str, template: &PhoneNumberRecord, shared_name: bool) -> Result<PhoneNumberRecord, (Option<String>, AppError)> {
    let params = Params::from_pairs(
        bulk_line_params(line).map_err(|(code, message)| (None, AppError::bad(code, message)))?,
    );
    let raw = params
        .get("PhoneNumber")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| (None, AppError::bad(21452, "A PhoneNumber is required")))?;
    let shown: String = raw.chars().take(32).collect();
    let phone_number = e164(raw).ok_or_else(|| {
        (Some(shown.clone()), AppError::bad(21421, format!("PhoneNumber {shown} is invalid: use E.164, e.g. +14155550100")))
    })?;
    let mut rec = template.clone();
    rec.sid = PhoneNumberSid::generate();
    if !shared_name {
        rec.friendly_name = phone_number.clone();
    }
    rec.phone_number = phone_number;
    apply(&mut rec, &params).map_err(|e| (Some(rec.phone_number.clone()), e))?;
    Ok(rec)
}

/// `POST IncomingPhoneNumbers/Bulk.json` (Dialtone extension): many numbers in one request and
/// one transaction; see its operation in `routes` for the body. Answers 200 with how many were
/// added and why the other lines were not.
pub(crate) async fn create_bulk(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
    body: axum::body::Body,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let shared = Params::from_query(query.as_deref());
    let bytes = axum::body::to_bytes(body, BULK_BODY_LIMIT).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            AppError::BodyOverLimit(BULK_BODY_LIMIT)
        } else {
            AppError::bad(20001, "Could not read the request body")
        }
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|_| AppError::bad(20001, "The body is not UTF-8 text"))?;
    let mut template = blank(account, String::new(), Utc::now());
    apply(&mut template, &shared)?;
    apply_sms_application(&state, &account, &mut template, &shared).await?;
    let app = voice_application_param(&state, &account, &shared).await?.flatten();
    let shared_name = shared.get("FriendlyName").is_some();

    let mut recs = Vec::new();
    let mut rec_lines = Vec::new();
    let mut errors = Vec::new();
    let mut count = 0usize;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        // Blank lines and a CSV header are not numbers.
        if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("PhoneNumber")) {
            continue;
        }
        count += 1;
        if count > BULK_MAX_LINES {
            return Err(AppError::bad(20001, format!("At most {BULK_MAX_LINES} numbers per request")));
        }
        match bulk_line(line, &template, shared_name) {
            Ok(rec) => {
                recs.push(rec);
                rec_lines.push(i + 1);
            }
            Err((phone_number, AppError::BadRequest { code, message })) => {
                errors.push(BatchError { line: i + 1, phone_number, code, message });
            }
            Err((_, e)) => return Err(e),
        }
    }
    let added = state.store.create_numbers(&recs, app.as_ref()).await?;
    let mut created = 0;
    for ((rec, added), line) in recs.iter().zip(added).zip(rec_lines) {
        if added {
            state.hooks.number_created(rec, app.as_ref());
            created += 1;
        } else {
            errors.push(BatchError {
                line,
                phone_number: Some(rec.phone_number.clone()),
                code: 21422,
                message: format!("PhoneNumber {} is not available", rec.phone_number),
            });
        }
    }
    errors.sort_by_key(|e| e.line);
    if created > 0 {
        // Plans for a table that grew by thousands of rows; sampled, so cheap.
        if let Err(e) = state.store.analyze_numbers().await {
            tracing::warn!(error = %e, "refreshing the numbers' statistics failed");
        }
    }
    Ok(Json(render::number_batch(&account, created, &errors, &ctx.path)))
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let raw = p
        .get_number("PhoneNumber")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::bad(21452, "A PhoneNumber is required"))?;
    let phone_number = e164(&raw).ok_or_else(|| {
        AppError::bad(21421, format!("PhoneNumber {raw} is invalid: use E.164, e.g. +14155550100"))
    })?;
    let mut rec = blank(account, phone_number, Utc::now());
    apply(&mut rec, &p)?;
    apply_sms_application(&state, &account, &mut rec, &p).await?;
    let app = voice_application_param(&state, &account, &p).await?;
    state.store.create_number(&rec).await?;
    // A new number has no application until this request gives it one.
    let app = match app {
        Some(_) => save_voice_application(&state, &ctx, &rec, app).await,
        None => Ok(None),
    };
    let app = app?;
    state.hooks.number_created(&rec, app.as_ref());
    Ok((StatusCode::CREATED, Json(render::number(&rec, app.as_ref()))))
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
    let filter = NumberFilter {
        phone_number: p.get_number("PhoneNumber"),
        friendly_name: p.get("FriendlyName").map(str::to_owned),
    };
    let mut filters = Vec::new();
    if let Some(v) = &filter.phone_number {
        filters.push(("PhoneNumber", v.clone()));
    }
    if let Some(v) = &filter.friendly_name {
        filters.push(("FriendlyName", v.clone()));
    }
    let page = state.store.list_numbers(&account, &filter, &paging.request).await?;
    let sids: Vec<PhoneNumberSid> = page.items.iter().map(|n| n.sid).collect();
    let apps = state.store.number_voice_applications(&account, &sids).await?;
    Ok(Json(envelope("incoming_phone_numbers", &ctx.path, &filters, &paging, page, |n| {
        render::number(n, apps.get(&n.sid))
    })))
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, number)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = number_sid(&ctx, &number)?;
    let rec = state.store.number(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    let app = save_voice_application(&state, &ctx, &rec, None).await?;
    Ok(Json(render::number(&rec, app.as_ref())))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, number)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = number_sid(&ctx, &number)?;
    let p = Params::from_body(body)?;
    let mut rec = state.store.number(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    apply(&mut rec, &p)?;
    apply_sms_application(&state, &account, &mut rec, &p).await?;
    let app = voice_application_param(&state, &account, &p).await?;
    rec.date_updated = Utc::now();
    if !state.store.update_number(&rec).await? {
        // Deleted between the read and the write.
        return Err(ctx.not_found());
    }
    let app = save_voice_application(&state, &ctx, &rec, app).await?;
    state.hooks.number_updated(&rec, app.as_ref());
    Ok(Json(render::number(&rec, app.as_ref())))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, number)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = number_sid(&ctx, &number)?;
    let phone_number = state.store.delete_number(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    state.hooks.number_deleted(&phone_number);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_normalises_and_refuses() {
        assert_eq!(e164("+1 (415) 555-0100").as_deref(), Some("+14155550100"));
        assert_eq!(e164("+442071838750").as_deref(), Some("+442071838750"));
        for bad in ["4155550100", "+0123", "+1", "+1234567890123456", "+1415abc", "", "+"] {
            assert_eq!(e164(bad), None, "{bad}");
        }
    }

    #[test]
    fn urls_and_methods() {
        assert_eq!(url_param("VoiceUrl", "").unwrap(), None);
        assert!(url_param("VoiceUrl", "https://app.example/v?x=1").unwrap().is_some());
        assert!(url_param("VoiceUrl", "ftp://app.example/").is_err());
        assert!(url_param("VoiceUrl", "not a url").is_err());
        assert_eq!(method_param("VoiceMethod", "get").unwrap(), "GET");
        assert!(method_param("VoiceMethod", "PUT").is_err());
    }
}
