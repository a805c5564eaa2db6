//! Calls (read and delete) and their notifications.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use model::{CallSid, CallStatus};
use serde_json::Value;
use store::CallFilter;

use crate::auth::Ctx;
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError};

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
