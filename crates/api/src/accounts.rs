//! Accounts and subaccounts (`/2010-04-01/Accounts`), and auth-token rotation
//! (`/v1/AuthTokens/...`, Twilio's accounts.twilio.com API, served here on the same root).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use model::{AccountRecord, AccountSid, AccountStatus};
use rand::Rng;
use serde_json::Value;
use store::AccountFilter;

use crate::auth::Ctx;
use crate::numbers::friendly_name_param;
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError};

/// 32 lower-case hex digits, as Twilio's auth tokens and key secrets look.
pub(crate) fn random_token() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut rng = rand::thread_rng();
    (0..32).map(|_| char::from(HEX[rng.gen_range(0..16)])).collect()
}

/// Whether `viewer` may see `a`'s auth token: the account itself and its parent only.
fn shows_token(viewer: &AccountSid, a: &AccountRecord) -> bool {
    *viewer == a.sid || *viewer == a.owner_account_sid
}

fn status_param(value: &str) -> Result<AccountStatus, AppError> {
    value
        .parse()
        .map_err(|_| AppError::bad(20001, format!("Status must be active, suspended or closed, not {value:?}")))
}

/// `GET /Accounts.json`: the authenticated account and its subaccounts.
pub(crate) async fn list(
    State(state): State<ApiState>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let p = Params::from_query(query.as_deref());
    let paging = Paging::parse(&p)?;
    let filter = AccountFilter {
        friendly_name: p.get("FriendlyName").map(str::to_owned),
        status: p.get("Status").map(status_param).transpose()?,
    };
    let mut filters = Vec::new();
    if let Some(v) = &filter.friendly_name {
        filters.push(("FriendlyName", v.clone()));
    }
    if let Some(v) = filter.status {
        filters.push(("Status", v.as_str().to_owned()));
    }
    let page = state.store.list_accounts(&ctx.account, &filter, &paging.request).await?;
    let viewer = ctx.account;
    Ok(Json(envelope("accounts", &ctx.path, &filters, &paging, page, |a| {
        render::account(a, shows_token(&viewer, a))
    })))
}

/// `POST /Accounts.json`: a new subaccount of the authenticated (main) account.
pub(crate) async fn create(
    State(state): State<ApiState>,
    ctx: Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let p = Params::from_body(body)?;
    let parent = state.store.account(&ctx.account).await?.ok_or_else(|| ctx.not_found())?;
    if parent.is_subaccount() {
        return Err(AppError::Forbidden("a subaccount cannot create subaccounts"));
    }
    let now = Utc::now();
    let friendly_name = match p.get("FriendlyName") {
        Some(v) if !v.is_empty() => friendly_name_param(v)?,
        // Twilio's default name.
        _ => format!("SubAccount Created at {}", now.format("%Y-%m-%d %I:%M %P")),
    };
    let rec = AccountRecord {
        sid: AccountSid::generate(),
        owner_account_sid: parent.sid,
        friendly_name,
        auth_token: random_token(),
        secondary_auth_token: None,
        secondary_auth_token_created: None,
        status: AccountStatus::Active.as_str().to_owned(),
        date_created: now,
        date_updated: now,
        console_crm_url: None,
    };
    state.store.create_account(&rec).await?;
    Ok((StatusCode::CREATED, Json(render::account(&rec, true))))
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
) -> Result<Json<Value>, AppError> {
    let sid = ctx.scope(&account, ".json")?;
    let rec = state.store.account(&sid).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::account(&rec, shows_token(&ctx.account, &rec))))
}

/// `POST /Accounts/{Sid}.json`: `FriendlyName`, `ConsoleCrmUrl` (Dialtone's), and (by the
/// parent, on a subaccount) `Status`.
/// `closed` is final.
pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let sid = ctx.scope(&account, ".json")?;
    let p = Params::from_body(body)?;
    let mut rec = state.store.account(&sid).await?.ok_or_else(|| ctx.not_found())?;
    if rec.status == AccountStatus::Closed.as_str() {
        return Err(AppError::bad(20001, "A closed account cannot be changed or reopened"));
    }
    if let Some(v) = p.get("FriendlyName") {
        rec.friendly_name = friendly_name_param(v)?;
    }
    if let Some(v) = p.get("ConsoleCrmUrl") {
        rec.console_crm_url = crate::numbers::url_param("ConsoleCrmUrl", v)?;
    }
    if let Some(v) = p.get("Status") {
        let status = status_param(v)?;
        if status.as_str() != rec.status {
            if !(rec.is_subaccount() && rec.owner_account_sid == ctx.account) {
                return Err(AppError::Forbidden("only the parent account can change a subaccount's status"));
            }
            rec.status = status.as_str().to_owned();
        }
    }
    rec.date_updated = Utc::now();
    if !state.store.update_account(&rec).await? {
        return Err(ctx.not_found());
    }
    // Closing or suspending a subaccount stops its numbers from taking calls: a call checks its
    // account's status when it arrives, so nothing routed changes here.
    Ok(Json(render::account(&rec, shows_token(&ctx.account, &rec))))
}

/// `POST /v1/AuthTokens/Secondary`: a new secondary token (replacing any previous one); both
/// tokens authenticate until one is promoted or the secondary is deleted.
pub(crate) async fn create_secondary(
    State(state): State<ApiState>,
    ctx: Ctx,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let token = random_token();
    let rec = state
        .store
        .set_secondary_auth_token(&ctx.account, Some(&token), Utc::now())
        .await?
        .ok_or_else(|| ctx.not_found())?;
    Ok((StatusCode::CREATED, Json(render::secondary_auth_token(&rec, &state.public_url))))
}

/// `DELETE /v1/AuthTokens/Secondary`.
pub(crate) async fn delete_secondary(
    State(state): State<ApiState>,
    ctx: Ctx,
) -> Result<StatusCode, AppError> {
    let rec = state.store.account(&ctx.account).await?.ok_or_else(|| ctx.not_found())?;
    if rec.secondary_auth_token.is_none() {
        return Err(ctx.not_found());
    }
    state.store.set_secondary_auth_token(&ctx.account, None, Utc::now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/AuthTokens/Promote`: the secondary token becomes the primary; the old primary stops
/// working at once.
pub(crate) async fn promote(State(state): State<ApiState>, ctx: Ctx) -> Result<Json<Value>, AppError> {
    let before = state.store.account(&ctx.account).await?.ok_or_else(|| ctx.not_found())?;
    let created = before.secondary_auth_token_created.unwrap_or(before.date_updated);
    let rec = state
        .store
        .promote_secondary_auth_token(&ctx.account, Utc::now())
        .await?
        .ok_or_else(|| AppError::bad(20001, "There is no secondary auth token to promote"))?;
    Ok(Json(render::promoted_auth_token(&rec, created, &state.public_url)))
}
