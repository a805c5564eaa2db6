//! Recordings: metadata as JSON and the audio itself.

use std::path::{Component, Path as FsPath};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::channel::Channel;
use model::{CallSid, ConferenceSid, RecordingSid};
use serde_json::Value;
use store::RecordingFilter;
use tokio::io::AsyncReadExt;

use crate::auth::Ctx;
use crate::calls::call_sid;
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, ApiState, AppError};

const CHUNK: usize = 64 * 1024;

async fn list_for(
    state: ApiState,
    ctx: Ctx,
    account: String,
    call: Option<CallSid>,
    query: Option<String>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_query(query.as_deref());
    let paging = Paging::parse(&p)?;
    // The account-wide list takes `CallSid` and `ConferenceSid` filters; the per-call list has
    // the call in the path.
    let mut filters: Vec<(&str, String)> = Vec::new();
    let mut filter = RecordingFilter { call_sid: call, conference_sid: None };
    if call.is_none() {
        if let Some(s) = p.get("CallSid").filter(|s| !s.is_empty()) {
            let c = s.parse::<CallSid>().map_err(|_| AppError::bad(20001, "Invalid CallSid"))?;
            filters.push(("CallSid", c.to_string()));
            filter.call_sid = Some(c);
        }
        if let Some(s) = p.get("ConferenceSid").filter(|s| !s.is_empty()) {
            let c = s.parse::<ConferenceSid>().map_err(|_| AppError::bad(20001, "Invalid ConferenceSid"))?;
            filters.push(("ConferenceSid", c.to_string()));
            filter.conference_sid = Some(c);
        }
    }
    let page = state.store.list_recordings(&account, &filter, &paging.request).await?;
    let public_url = state.public_url.clone();
    Ok(Json(envelope("recordings", &ctx.path, &filters, &paging, page, |r| {
        render::recording(r, &public_url)
    })))
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    list_for(state, ctx, account, None, query).await
}

pub(crate) async fn list_for_call(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, call)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let call = call_sid(&ctx, &call, "")?;
    list_for(state, ctx, account, Some(call), query).await
}

/// `Recordings/{Sid}.json` is the metadata; `Recordings/{Sid}.wav` and bare `Recordings/{Sid}`
/// are the audio, as Twilio serves them.
pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, recording)): Seg<(String, String)>,
) -> Result<Response, AppError> {
    let account = ctx.scope(&account, "")?;
    let (stem, json) = match recording.strip_suffix(".json") {
        Some(stem) => (stem, true),
        None => (recording.strip_suffix(".wav").unwrap_or(&recording), false),
    };
    let sid: RecordingSid = stem.parse().map_err(|_| ctx.not_found())?;
    let rec = state.store.recording(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    if json {
        return Ok(Json(render::recording(&rec, &state.public_url)).into_response());
    }
    // The file name comes from our own row, but a hand-edited row must still not escape the
    // recordings directory.
    let relative = FsPath::new(&rec.file_name);
    if rec.file_name.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        tracing::error!(recording = %rec.sid, file = %rec.file_name, "recording file name is not a plain relative path");
        return Err(ctx.not_found());
    }
    let file = match tokio::fs::File::open(state.recordings_dir.join(relative)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(recording = %rec.sid, "recording row without its file");
            return Err(ctx.not_found());
        }
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata().await?.len();
    let mut response = Body::new(stream_file(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/x-wav"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(response)
}

/// Sends the file in chunks from a task, so a long recording is never held in memory whole.
fn stream_file(mut file: tokio::fs::File) -> Channel<Bytes, std::io::Error> {
    let (mut tx, body) = Channel::new(2);
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    // `read` returns at most `buf.len()`, so the slice is in bounds.
                    if tx.send_data(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                        break; // client went away
                    }
                }
                Err(e) => {
                    tx.abort(e);
                    break;
                }
            }
        }
    });
    body
}
