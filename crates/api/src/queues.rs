//! Queues (`/Accounts/{AccountSid}/Queues`) and their Members. A queue is stored; who waits in
//! it is live state of the runtime, read and changed through [`crate::ApiHooks`] once the queue
//! has been found in the path's account (so the runtime is never asked about another tenant's).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use model::{AccountSid, MemberRecord, QueueRecord, QueueSid};
use serde_json::Value;
use store::StoreError;

use crate::auth::Ctx;
use crate::numbers::{method_param, url_param};
use crate::params::{envelope, live_page, Paging, Params, Seg};
use crate::{render, ApiState, AppError, MemberKey, MemberUpdate};

/// Longest queue name, as Twilio's.
const MAX_FRIENDLY_NAME: usize = 64;

fn queue_sid(ctx: &Ctx, segment: &str, suffix: &str) -> Result<QueueSid, AppError> {
    segment
        .strip_suffix(suffix)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ctx.not_found())
}

/// A queue's name: `<Enqueue>` refers to the queue by it, so it may not be empty.
fn friendly_name(value: &str) -> Result<String, AppError> {
    if value.trim().is_empty() {
        return Err(AppError::bad(
            20002,
            "FriendlyName may not be empty: <Enqueue> names the queue by it",
        ));
    }
    if value.chars().count() > MAX_FRIENDLY_NAME {
        return Err(AppError::bad(
            20002,
            format!("FriendlyName is longer than {MAX_FRIENDLY_NAME} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// `MaxSize`: a whole number from 1 to Twilio's 5000.
fn max_size(value: &str) -> Result<u32, AppError> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=QueueRecord::MAX_MAX_SIZE).contains(&n) => Ok(n),
        _ => Err(AppError::bad(
            20001,
            format!(
                "Invalid MaxSize {value:?}: use a whole number from 1 to {}",
                QueueRecord::MAX_MAX_SIZE
            ),
        )),
    }
}

/// A name another queue of the account has.
fn name_taken(e: AppError) -> AppError {
    match e {
        AppError::Store(StoreError::DuplicateQueueName(name)) => AppError::bad(
            20002,
            format!("A queue named {name:?} already exists in this account"),
        ),
        e => e,
    }
}

/// The path's queue, in the path's account; anything else is a 404.
async fn find(
    state: &ApiState,
    ctx: &Ctx,
    account: &AccountSid,
    segment: &str,
    suffix: &str,
) -> Result<QueueRecord, AppError> {
    let sid = queue_sid(ctx, segment, suffix)?;
    state
        .store
        .queue(account, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())
}

fn json(state: &ApiState, q: &QueueRecord) -> Value {
    render::queue(q, state.hooks.queue_stats(q.account_sid, q.sid))
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let name = p.get("FriendlyName").ok_or_else(|| {
        AppError::bad(
            20001,
            "Missing required parameter FriendlyName in the post body",
        )
    })?;
    let now = Utc::now();
    let rec = QueueRecord {
        sid: QueueSid::generate(),
        account_sid: account,
        friendly_name: friendly_name(name)?,
        max_size: p
            .get("MaxSize")
            .map(max_size)
            .transpose()?
            .unwrap_or(QueueRecord::DEFAULT_MAX_SIZE),
        date_created: now,
        date_updated: now,
    };
    state
        .store
        .create_queue(&rec)
        .await
        .map_err(|e| name_taken(e.into()))?;
    Ok((StatusCode::CREATED, Json(json(&state, &rec))))
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state.store.list_queues(&account, &paging.request).await?;
    Ok(Json(envelope(
        "queues",
        &ctx.path,
        &[],
        &paging,
        page,
        |q| json(&state, q),
    )))
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, queue)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let rec = find(&state, &ctx, &account, &queue, ".json").await?;
    Ok(Json(json(&state, &rec)))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, queue)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let mut rec = find(&state, &ctx, &account, &queue, ".json").await?;
    if let Some(v) = p.get("FriendlyName") {
        rec.friendly_name = friendly_name(v)?;
    }
    if let Some(v) = p.get("MaxSize") {
        // Lowering it below the calls waiting now is allowed, as Twilio: they stay, and new
        // callers are refused until the queue has shrunk.
        rec.max_size = max_size(v)?;
    }
    rec.date_updated = Utc::now();
    if !state
        .store
        .update_queue(&rec)
        .await
        .map_err(|e| name_taken(e.into()))?
    {
        return Err(ctx.not_found());
    }
    Ok(Json(json(&state, &rec)))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, queue)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let rec = find(&state, &ctx, &account, &queue, ".json").await?;
    let waiting = state.hooks.queue_stats(account, rec.sid).current_size;
    if waiting > 0 {
        return Err(AppError::bad(
            20001,
            format!(
                "Queue {} has {waiting} calls waiting: dequeue them before deleting it",
                rec.sid
            ),
        ));
    }
    if !state.store.delete_queue(&account, &rec.sid).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `Front` or a call SID, from `{CallSid}.json`.
fn member_key(ctx: &Ctx, segment: &str) -> Result<MemberKey, AppError> {
    let stem = segment
        .strip_suffix(".json")
        .ok_or_else(|| ctx.not_found())?;
    if stem == "Front" {
        return Ok(MemberKey::Front);
    }
    stem.parse()
        .map(MemberKey::Call)
        .map_err(|_| ctx.not_found())
}

/// The queue's members, front first.
async fn members_of(state: &ApiState, queue: &QueueRecord) -> Result<Vec<MemberRecord>, AppError> {
    let mut members = state
        .hooks
        .queue_members(queue.account_sid, queue.sid)
        .await?;
    members.sort_by_key(|m| (m.date_enqueued, m.call_sid));
    Ok(members)
}

pub(crate) async fn list_members(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, queue)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let queue = find(&state, &ctx, &account, &queue, "").await?;
    let members = members_of(&state, &queue).await?;
    let page = live_page(members, &paging.request, |m| {
        (m.date_enqueued, m.call_sid.to_string())
    });
    Ok(Json(envelope(
        "queue_members",
        &ctx.path,
        &[],
        &paging,
        page,
        |m| render::member(m, &account),
    )))
}

pub(crate) async fn fetch_member(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, queue, member)): Seg<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let key = member_key(&ctx, &member)?;
    let queue = find(&state, &ctx, &account, &queue, "").await?;
    let members = members_of(&state, &queue).await?;
    let found = match key {
        MemberKey::Front => members.first(),
        MemberKey::Call(sid) => members.iter().find(|m| m.call_sid == sid),
    };
    let member = found.ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::member(member, &account)))
}

pub(crate) async fn update_member(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, queue, member)): Seg<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let key = member_key(&ctx, &member)?;
    let p = Params::from_body(body)?;
    let url = match p.get("Url") {
        Some(v) => url_param("Url", v)?,
        None => None,
    };
    let url =
        url.ok_or_else(|| AppError::bad(20001, "Missing required parameter Url in the post body"))?;
    let method = match p.get("Method") {
        None | Some("") => "POST".to_owned(),
        Some(m) => method_param("Method", m)?,
    };
    let queue = find(&state, &ctx, &account, &queue, "").await?;
    let member = state
        .hooks
        .update_member(account, queue.sid, key, MemberUpdate { url, method })
        .await
        .map_err(|e| match e {
            crate::HookError::NotFound => ctx.not_found(),
            e => e.into(),
        })?;
    Ok(Json(render::member(&member, &account)))
}
