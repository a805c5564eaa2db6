//! API keys (`/Accounts/{AccountSid}/Keys`): the secret is shown once, in the create response.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use model::{ApiKeyRecord, ApiKeySid};
use serde_json::Value;

use crate::accounts::random_token;
use crate::auth::Ctx;
use crate::numbers::friendly_name_param;
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError};

fn key_sid(ctx: &Ctx, segment: &str) -> Result<ApiKeySid, AppError> {
    segment.strip_suffix(".json").and_then(|s| s.parse().ok()).ok_or_else(|| ctx.not_found())
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
    let rec = ApiKeyRecord {
        sid: ApiKeySid::generate(),
        account_sid: account,
        friendly_name: friendly_name_param(p.get("FriendlyName").unwrap_or(""))?,
        date_created: now,
        date_updated: now,
    };
    let secret = random_token();
    state.store.create_api_key(&rec, &secret).await?;
    Ok((StatusCode::CREATED, Json(render::new_api_key(&rec, &secret))))
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state.store.list_api_keys(&account, &paging.request).await?;
    Ok(Json(envelope("keys", &ctx.path, &[], &paging, page, render::api_key)))
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, key)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = key_sid(&ctx, &key)?;
    let rec = state.store.api_key(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::api_key(&rec)))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, key)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = key_sid(&ctx, &key)?;
    let p = Params::from_body(body)?;
    let mut rec = state.store.api_key(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    if let Some(v) = p.get("FriendlyName") {
        rec.friendly_name = friendly_name_param(v)?;
    }
    rec.date_updated = Utc::now();
    if !state.store.update_api_key(&rec).await? {
        return Err(ctx.not_found());
    }
    Ok(Json(render::api_key(&rec)))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, key)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid = key_sid(&ctx, &key)?;
    if !state.store.delete_api_key(&account, &sid).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}
