//! Applications (`/Accounts/{AccountSid}/Applications`): voice and SMS URLs under one SID.
//! Numbers that use an application route with its URLs, so changing or deleting one tells the
//! runtime that routing is stale.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use model::{ApplicationRecord, ApplicationSid};
use serde_json::Value;
use store::ApplicationFilter;

use crate::auth::Ctx;
use crate::numbers::{friendly_name_param, method_param, url_param};
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError};

fn application_sid(ctx: &Ctx, segment: &str) -> Result<ApplicationSid, AppError> {
    segment.strip_suffix(".json").and_then(|s| s.parse().ok()).ok_or_else(|| ctx.not_found())
}

pub(crate) fn bool_param(name: &str, value: &str) -> Result<bool, AppError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(AppError::bad(20001, format!("{name} must be true or false, not {value:?}"))),
    }
}

/// Applies the settable parameters present in `p` to `rec` (absent ones keep their value).
fn apply(rec: &mut ApplicationRecord, p: &Params) -> Result<(), AppError> {
    if let Some(v) = p.get("FriendlyName") {
        rec.friendly_name = friendly_name_param(v)?;
    }
    if let Some(v) = p.get("ApiVersion") {
        if v != render::API_VERSION {
            return Err(AppError::bad(20001, format!("ApiVersion must be {}", render::API_VERSION)));
        }
    }
    let urls: [(&str, &mut Option<String>); 7] = [
        ("VoiceUrl", &mut rec.voice_url),
        ("VoiceFallbackUrl", &mut rec.voice_fallback_url),
        ("StatusCallback", &mut rec.status_callback),
        ("SmsUrl", &mut rec.sms_url),
        ("SmsFallbackUrl", &mut rec.sms_fallback_url),
        ("SmsStatusCallback", &mut rec.sms_status_callback),
        ("MessageStatusCallback", &mut rec.message_status_callback),
    ];
    for (name, field) in urls {
        if let Some(v) = p.get(name) {
            *field = url_param(name, v)?;
        }
    }
    let methods: [(&str, &mut String); 5] = [
        ("VoiceMethod", &mut rec.voice_method),
        ("VoiceFallbackMethod", &mut rec.voice_fallback_method),
        ("StatusCallbackMethod", &mut rec.status_callback_method),
        ("SmsMethod", &mut rec.sms_method),
        ("SmsFallbackMethod", &mut rec.sms_fallback_method),
    ];
    for (name, field) in methods {
        if let Some(v) = p.get(name) {
            *field = method_param(name, v)?;
        }
    }
    if let Some(v) = p.get("VoiceCallerIdLookup") {
        rec.voice_caller_id_lookup = bool_param("VoiceCallerIdLookup", v)?;
    }
    if let Some(v) = p.get("PublicApplicationConnectEnabled") {
        rec.public_application_connect_enabled = bool_param("PublicApplicationConnectEnabled", v)?;
    }
    Ok(())
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let now = Utc::now();
    let mut rec = ApplicationRecord {
        sid: ApplicationSid::generate(),
        account_sid: account,
        friendly_name: String::new(),
        voice_url: None,
        voice_method: "POST".into(),
        voice_fallback_url: None,
        voice_fallback_method: "POST".into(),
        status_callback: None,
        status_callback_method: "POST".into(),
        voice_caller_id_lookup: false,
        sms_url: None,
        sms_method: "POST".into(),
        sms_fallback_url: None,
        sms_fallback_method: "POST".into(),
        sms_status_callback: None,
        message_status_callback: None,
        public_application_connect_enabled: true,
        date_created: now,
        date_updated: now,
    };
    apply(&mut rec, &p)?;
    state.store.create_application(&rec).await?;
    state.hooks.application_saved(&rec);
    Ok((StatusCode::CREATED, Json(render::application(&rec))))
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
    let filter = ApplicationFilter { friendly_name: p.get("FriendlyName").map(str::to_owned) };
    let filters: Vec<(&str, String)> =
        filter.friendly_name.iter().map(|v| ("FriendlyName", v.clone())).collect();
    let page = state.store.list_applications(&account, &filter, &paging.request).await?;
    Ok(Json(envelope("applications", &ctx.path, &filters, &paging, page, render::application)))
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, application)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = application_sid(&ctx, &application)?;
    let rec = state.store.application(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::application(&rec)))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, application)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = application_sid(&ctx, &application)?;
    let p = Params::from_body(body)?;
    let mut rec = state.store.application(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    apply(&mut rec, &p)?;
    rec.date_updated = Utc::now();
    if !state.store.update_application(&rec).await? {
        return Err(ctx.not_found());
    }
    state.hooks.application_saved(&rec);
    Ok(Json(render::application(&rec)))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, application)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = application_sid(&ctx, &application)?;
    if !state.store.delete_application(&account, &sid).await? {
        return Err(ctx.not_found());
    }
    state.hooks.application_deleted(&sid);
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_are_twilio_spelled() {
        assert!(bool_param("X", "True").unwrap());
        assert!(!bool_param("X", "false").unwrap());
        assert!(bool_param("X", "1").is_err());
    }
}
