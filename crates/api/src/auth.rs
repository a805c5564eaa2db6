//! HTTP Basic authentication with the account SID and auth token, and the tenant scope check.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use model::AccountSid;

use crate::{ApiState, AppError};

/// The account whose credentials the request carried; put in the request extensions by
/// [`require`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated(pub AccountSid);

/// Middleware: every request must authenticate before any routing decision is visible.
pub(crate) async fn require(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    // Only the header crosses the await: a request body is not `Sync`, so `&Request` cannot.
    let header = req.headers().get(AUTHORIZATION).cloned();
    match authenticate(&state, header).await {
        Ok(account) => {
            req.extensions_mut().insert(Authenticated(account));
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn authenticate(
    state: &ApiState,
    header: Option<HeaderValue>,
) -> Result<AccountSid, AppError> {
    let header = header.ok_or(AppError::Unauthenticated("No credentials provided"))?;
    let (user, password) = parse_basic(header.as_bytes())
        .ok_or(AppError::Unauthenticated("invalid Authorization header"))?;
    let sid: AccountSid =
        user.parse().map_err(|_| AppError::Unauthenticated("invalid username"))?;
    let account = state
        .store
        .account(&sid)
        .await?
        .ok_or(AppError::Unauthenticated("invalid username"))?;
    if !constant_time_eq(account.auth_token.as_bytes(), password.as_bytes()) {
        return Err(AppError::Unauthenticated("invalid username or password"));
    }
    if account.status != "active" {
        return Err(AppError::Unauthenticated("account is not active"));
    }
    Ok(sid)
}

/// `Basic base64(user:password)` -> (user, password).
fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Compares without an early exit, so response timing does not reveal how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What every handler needs: who is asking and which path they asked for (for 404 messages).
pub(crate) struct Ctx {
    pub account: AccountSid,
    pub path: String,
}

impl Ctx {
    pub fn not_found(&self) -> AppError {
        AppError::NotFound(self.path.clone())
    }

    /// Checks the `{AccountSid}` path segment (with `suffix` such as `.json` removed) against the
    /// authenticated account. Another tenant's account looks exactly like a missing one.
    pub fn scope(&self, segment: &str, suffix: &str) -> Result<AccountSid, AppError> {
        let sid: AccountSid = segment
            .strip_suffix(suffix)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.not_found())?;
        if sid != self.account {
            return Err(self.not_found());
        }
        Ok(sid)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let Authenticated(account) = parts
            .extensions
            .get::<Authenticated>()
            .copied()
            .ok_or(AppError::Unauthenticated("No credentials provided"))?;
        Ok(Ctx { account, path: parts.uri.path().to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_parsing() {
        let enc = base64::engine::general_purpose::STANDARD.encode("ACx:tok:en");
        assert_eq!(
            parse_basic(format!("basic {enc}").as_bytes()),
            Some(("ACx".to_owned(), "tok:en".to_owned()))
        );
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic"), None);
        assert_eq!(parse_basic(&[0xff, 0xfe]), None);
    }

    #[test]
    fn constant_time_eq_matches_only_equal_inputs() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
