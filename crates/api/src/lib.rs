//! Dialtone's Twilio-compatible REST API (`/2010-04-01/...`), on axum.
//!
//! Owns the wire format: JSON field names and shapes, RFC 2822 dates, list envelopes and paging
//! URIs, Twilio error bodies and codes. Driven by `node`, which builds an [`ApiState`] and serves
//! [`router`]; handlers read and write through `store` and tell `node` about routing changes
//! through [`ApiHooks`]; calls are placed and changed through the same hooks, since only the
//! runtime holds live calls.
//!
//! Architecture invariant: this is the only crate that knows the REST JSON. Every route
//! authenticates (HTTP Basic: account SID + primary or secondary auth token, or API key SID +
//! secret) before routing is visible, and every handler checks the path's account against the
//! ones the credentials may act on (their own account and, for a main account, its subaccounts;
//! see `auth`), so a request can reach only those accounts' rows. User-supplied path segments
//! are parsed into typed SIDs (junk is a 404) and never used to build file names. The one route
//! without credentials is `GET /openapi.json`, the document generated from the route table.

mod accounts;
mod applications;
mod auth;
mod calls;
mod error;
mod keys;
mod numbers;
mod openapi;
mod params;
mod recordings;
mod render;
mod routes;
mod sip;

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{middleware, Router};
use store::Store;

use crate::auth::Ctx;

pub use crate::error::AppError;
pub use model::{AccountSid, CallRecord, CallSid, CallStatus};

/// Largest accepted request body; larger ones get 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A boxed future, as hook methods return them (the trait stays object-safe).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Callbacks from the API into the runtime that serves it.
pub trait ApiHooks: Send + Sync {
    /// A phone number was updated or deleted, or an application or account that numbers route
    /// through changed: the routing index is stale.
    fn numbers_changed(&self) {}

    /// A phone number was created. Nothing routed is stale (a runtime whose index misses asks
    /// the store), so the default does nothing; creating numbers in bulk costs no reloads.
    fn number_created(&self, phone_number: &str) {
        let _ = phone_number;
    }

    /// Place an outbound call (`POST Calls.json`, already validated). Returns the new call's
    /// record, status `queued`, once it is stored; the call itself proceeds in the background.
    fn create_call(&self, call: CreateCall) -> BoxFuture<'_, Result<CallRecord, HookError>> {
        let _ = call;
        Box::pin(async { Err(HookError::NotSupported("Creating calls")) })
    }

    /// Change a call (`POST Calls/{CallSid}.json`, already validated): redirect a live call or
    /// end it. Returns the call's record as it stands.
    fn update_call(
        &self,
        account: AccountSid,
        sid: CallSid,
        update: CallUpdate,
    ) -> BoxFuture<'_, Result<CallRecord, HookError>> {
        let _ = (account, sid, update);
        Box::pin(async { Err(HookError::NotSupported("Updating calls")) })
    }
}

/// The parameters of a new outbound call, validated; methods are `GET` or `POST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCall {
    pub account_sid: AccountSid,
    /// An E.164 number (through a trunk) or a `sip:`/`sips:` URI (directly).
    pub to: String,
    pub from: String,
    /// Where the first document comes from; `None` when `twiml` is given.
    pub url: Option<String>,
    pub method: String,
    pub twiml: Option<String>,
    pub fallback_url: Option<String>,
    pub fallback_method: String,
    pub status_callback: Option<String>,
    pub status_callback_method: String,
    /// Which progress events go to `status_callback`: `initiated`, `ringing`, `answered`,
    /// `completed` (Twilio's default: only `completed`).
    pub status_callback_events: Vec<String>,
    /// Seconds to let the far end ring before giving up (`no-answer`).
    pub timeout: u32,
    /// Longest the call may last once answered, in seconds.
    pub time_limit: u32,
    /// Keys to press once the call is answered (`0-9`, `A-D`, `*`, `#`; `w` waits 0.5 s, `W` 1 s).
    pub send_digits: Option<String>,
    /// Record the whole call from answer (`Record=true`).
    pub record: bool,
}

/// A change to a call: `redirect` (URL and method) or `twiml` replaces what it runs, `status`
/// (`completed` or `canceled`) ends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallUpdate {
    pub redirect: Option<(String, String)>,
    pub twiml: Option<String>,
    pub status: Option<CallStatus>,
}

/// Why a hook refused; becomes a Twilio error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    /// The server running the API does not do this (HTTP 501, Twilio 20001).
    #[error("{0} is not supported by this server")]
    NotSupported(&'static str),
    /// The request cannot be carried out as asked (HTTP 400 with a Twilio code).
    #[error("rejected ({code}): {message}")]
    Rejected { code: u32, message: String },
    /// No such call for this account.
    #[error("not found")]
    NotFound,
    /// The runtime failed; logged, answered with a generic 500.
    #[error("internal: {0}")]
    Internal(String),
}

/// Hooks that do nothing (tools, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl ApiHooks for NoHooks {}

/// What every handler shares.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// Base URL clients reach this server at (e.g. `https://voice.example.com`), for absolute
    /// links such as a recording's `media_url`.
    pub public_url: String,
    /// Where `RecordingRecord::file_name`s are relative to.
    pub recordings_dir: PathBuf,
    pub hooks: Arc<dyn ApiHooks>,
}

/// The whole API as a router; serve it or drive it with `tower::ServiceExt::oneshot`.
///
/// The routes come from the table in `routes`, which also writes the OpenAPI document served,
/// without credentials, at `/openapi.json`.
pub fn router(state: ApiState) -> Router {
    let api = routes::operations_router()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), auth::require))
        .layer(DefaultBodyLimit::max(BODY_LIMIT));
    Router::new().route("/openapi.json", get(openapi::serve)).merge(api).with_state(state)
}

async fn not_found(ctx: Ctx) -> AppError {
    ctx.not_found()
}

async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tenancy_tests;
