//! The one error type of the API and its Twilio-shaped body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use store::StoreError;

/// How much of a request path a 404 message repeats.
const MAX_ECHOED_PATH: usize = 256;

/// Everything a handler can fail with. Client faults carry a Twilio error code and a message meant
/// for the client; server faults are logged and answered with a generic 500.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// Missing or wrong credentials (Twilio 20003).
    #[error("authentication failed: {0}")]
    Unauthenticated(&'static str),
    /// The credentials are right but their account (or its main account) is suspended: 401 with
    /// Twilio's 20005 "Account not active".
    #[error("account not active")]
    AccountNotActive,
    /// A parent tried to place a call or send a message from its suspended subaccount (403, 20005).
    #[error("subaccount not active")]
    ForbiddenInactive,
    /// Authenticated, but these credentials may not do this (403, Twilio 20403).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// No such resource for this account (Twilio 20404). Holds the request path.
    #[error("not found: {0}")]
    NotFound(String),
    /// Route exists, method does not (Twilio 20004).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A parameter the client sent is wrong (Twilio 21xxx / 20001).
    #[error("bad request ({code}): {message}")]
    BadRequest { code: u32, message: String },
    /// A body over a route's own limit (413, 20001); holds the limit in bytes.
    #[error("body over {0} bytes")]
    BodyOverLimit(usize),
    /// A POST body that is not a form; holds the Content-Type sent (415, 20001).
    #[error("unsupported content type {0:?}")]
    UnsupportedMediaType(String),
    /// The body is larger than [`crate::BODY_LIMIT`].
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("i/o failed: {0}")]
    Io(#[from] std::io::Error),
    /// The runtime refused or failed an action (placing or changing a call).
    #[error("runtime: {0}")]
    Hook(#[from] crate::HookError),
}

impl AppError {
    pub(crate) fn bad(code: u32, message: impl Into<String>) -> AppError {
        AppError::BadRequest { code, message: message.into() }
    }

    fn parts(&self) -> (StatusCode, u32, String) {
        match self {
            AppError::Unauthenticated(why) => {
                (StatusCode::UNAUTHORIZED, 20003, format!("Authentication Error - {why}"))
            }
            AppError::AccountNotActive => {
                (StatusCode::UNAUTHORIZED, 20005, "Account not active".to_owned())
            }
            AppError::ForbiddenInactive => {
                (StatusCode::FORBIDDEN, 20005, "Account not active: a suspended account cannot place calls or send messages".to_owned())
            }
            AppError::Forbidden(why) => (StatusCode::FORBIDDEN, 20403, format!("Forbidden - {why}")),
            AppError::NotFound(path) => {
                // The path is the client's own input: echo a bounded part of it.
                let shown: String = path.chars().take(MAX_ECHOED_PATH).collect();
                let more = if shown.len() < path.len() { "..." } else { "" };
                (StatusCode::NOT_FOUND, 20404, format!("The requested resource {shown}{more} was not found"))
            }
            AppError::UnsupportedMediaType(sent) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                20001,
                format!("Content-Type must be application/x-www-form-urlencoded, not {sent:?}"),
            ),
            AppError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, 20004, "Method not allowed".to_owned())
            }
            AppError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, *code, message.clone()),
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                20001,
                format!("Request body is larger than {} bytes", crate::BODY_LIMIT),
            ),
            AppError::BodyOverLimit(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                20001,
                format!("Request body is larger than {limit} bytes"),
            ),
            AppError::Store(StoreError::DuplicatePhoneNumber(number)) => (
                StatusCode::BAD_REQUEST,
                21422,
                format!("PhoneNumber {number} is not available"),
            ),
            AppError::Hook(crate::HookError::NotSupported(what)) => (
                StatusCode::NOT_IMPLEMENTED,
                20001,
                format!("{what} is not supported by this server"),
            ),
            AppError::Hook(crate::HookError::Rejected { code, message }) => {
                (StatusCode::BAD_REQUEST, *code, message.clone())
            }
            AppError::Hook(crate::HookError::Overloaded { code, message }) => {
                (StatusCode::TOO_MANY_REQUESTS, *code, message.clone())
            }
            AppError::Hook(crate::HookError::NotFound) => {
                (StatusCode::NOT_FOUND, 20404, "The requested resource was not found".to_owned())
            }
            AppError::Store(_) | AppError::Io(_) | AppError::Hook(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, 20500, "Internal Server Error".to_owned())
            }
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status.is_server_error() {
            // The details stay in the log; the client gets the generic message above.
            tracing::error!(error = %self, "api request failed");
        }
        let body = serde_json::json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"Twilio API\""));
        }
        response
    }
}
