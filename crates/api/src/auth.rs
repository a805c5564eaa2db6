//! HTTP Basic authentication (account SID + primary or secondary auth token, or API key SID +
//! secret) and the tenant scope: which account's rows a request may reach.
//!
//! Rules, as Twilio's:
//! - The credentials name a principal account: the account itself, or the account the API key
//!   belongs to.
//! - A suspended principal (or one whose main account is suspended) is refused with 401 and
//!   Twilio's 20005 "Account not active"; a closed one's credentials no longer exist (401, 20003).
//! - A request may act on the principal's own account and, for a main account, on its
//!   subaccounts. Anything else (a parent, a sibling, an unknown SID) looks exactly like a missing
//!   resource: 404, 20404. A closed subaccount shows only its Account resource to its parent.
//! - A parent may manage a suspended subaccount but not place calls from it (403, 20005).
//! - API keys are Twilio's "standard" keys: they reach every resource under an account but not
//!   the Accounts, Keys or AuthTokens resources (403, 20403), which need the auth token.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use model::{AccountRecord, AccountSid, AccountStatus, ApiKeySid};

use crate::{ApiState, AppError};

/// Who the request authenticated as and which account of the path it may act on; put in the
/// request extensions by [`require`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated {
    pub principal: AccountSid,
    /// The `{AccountSid}` of the path when the principal may act on it.
    pub path_account: Option<AccountSid>,
}

/// Middleware: every request must authenticate before any routing decision is visible.
pub(crate) async fn require(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    // Only the header crosses the await: a request body is not `Sync`, so `&Request` cannot.
    let header = req.headers().get(AUTHORIZATION).cloned();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    match authorize(&state, header, &method, &path).await {
        Ok(auth) => {
            req.extensions_mut().insert(auth);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// The principal account, checked for status (its own and its main account's).
async fn authenticate(
    state: &ApiState,
    header: Option<HeaderValue>,
) -> Result<(AccountRecord, bool), AppError> {
    let header = header.ok_or(AppError::Unauthenticated("No credentials provided"))?;
    let (user, password) = parse_basic(header.as_bytes())
        .ok_or(AppError::Unauthenticated("invalid Authorization header"))?;
    let (account, via_key) = if let Ok(key) = user.parse::<ApiKeySid>() {
        let key = state
            .store
            .authenticate_api_key(&key, &password)
            .await?
            .ok_or(AppError::Unauthenticated("invalid username or password"))?;
        let account = state
            .store
            .account(&key.account_sid)
            .await?
            .ok_or(AppError::Unauthenticated("invalid username"))?;
        (account, true)
    } else {
        let sid: AccountSid =
            user.parse().map_err(|_| AppError::Unauthenticated("invalid username"))?;
        let account = state
            .store
            .account(&sid)
            .await?
            .ok_or(AppError::Unauthenticated("invalid username"))?;
        let primary = constant_time_eq(account.auth_token.as_bytes(), password.as_bytes());
        let secondary = account
            .secondary_auth_token
            .as_deref()
            .is_some_and(|t| constant_time_eq(t.as_bytes(), password.as_bytes()));
        if !(primary | secondary) {
            return Err(AppError::Unauthenticated("invalid username or password"));
        }
        (account, false)
    };
    let mut statuses = vec![status_of(&account)?];
    if account.is_subaccount() {
        let owner = state.store.account(&account.owner_account_sid).await?;
        statuses.push(owner.as_ref().map_or(Ok(AccountStatus::Closed), status_of)?);
    }
    if statuses.contains(&AccountStatus::Closed) {
        return Err(AppError::Unauthenticated("invalid username"));
    }
    if statuses.contains(&AccountStatus::Suspended) {
        return Err(AppError::AccountNotActive);
    }
    Ok((account, via_key))
}

fn status_of(a: &AccountRecord) -> Result<AccountStatus, AppError> {
    a.status.parse().map_err(|_| {
        AppError::Store(store::StoreError::Corrupt(format!("account {} status {:?}", a.sid, a.status)))
    })
}

const ACCOUNTS_PREFIX: &str = "/2010-04-01/Accounts/";

/// What the path addresses, as far as authorization cares.
#[derive(Debug, PartialEq, Eq)]
enum Target<'a> {
    /// `/2010-04-01/Accounts/{segment}` and the rest after it (empty, `.json`, `/Calls.json`...).
    Account { segment: &'a str, rest: &'a str },
    /// `/2010-04-01/Accounts.json`.
    AccountsList,
    /// `/v1/AuthTokens/...`.
    AuthTokens,
    Other,
}

fn target(path: &str) -> Target<'_> {
    if path == "/2010-04-01/Accounts.json" {
        return Target::AccountsList;
    }
    if path.starts_with("/v1/AuthTokens") {
        return Target::AuthTokens;
    }
    match path.strip_prefix(ACCOUNTS_PREFIX) {
        Some(tail) => {
            let end = tail.find('/').unwrap_or(tail.len());
            let (segment, rest) = tail.split_at(end);
            match segment.strip_suffix(".json") {
                Some(stem) => Target::Account { segment: stem, rest: &segment[stem.len()..] },
                None => Target::Account { segment, rest },
            }
        }
        None => Target::Other,
    }
}

async fn authorize(
    state: &ApiState,
    header: Option<HeaderValue>,
    method: &Method,
    path: &str,
) -> Result<Authenticated, AppError> {
    let (principal, via_key) = authenticate(state, header).await?;
    let target = target(path);
    let key_refused = match &target {
        Target::AccountsList | Target::AuthTokens => true,
        Target::Account { rest, .. } => rest.is_empty() || *rest == ".json" || rest.starts_with("/Keys"),
        Target::Other => false,
    };
    if via_key && key_refused {
        return Err(AppError::Forbidden(
            "API keys cannot manage accounts, keys or auth tokens: use the account's auth token",
        ));
    }
    let mut auth = Authenticated { principal: principal.sid, path_account: None };
    let Target::Account { segment, rest } = target else { return Ok(auth) };
    let Ok(sid) = segment.parse::<AccountSid>() else { return Ok(auth) };
    if sid == principal.sid {
        auth.path_account = Some(sid);
        return Ok(auth);
    }
    if principal.is_subaccount() {
        return Ok(auth);
    }
    let Some(child) = state.store.account(&sid).await? else { return Ok(auth) };
    if child.owner_account_sid != principal.sid || child.sid == child.owner_account_sid {
        return Ok(auth);
    }
    let is_account_itself = rest.is_empty() || rest == ".json";
    match status_of(&child)? {
        AccountStatus::Closed if !is_account_itself => return Ok(auth),
        AccountStatus::Suspended if *method == Method::POST && rest == "/Calls.json" => {
            return Err(AppError::ForbiddenInactive);
        }
        _ => {}
    }
    auth.path_account = Some(sid);
    Ok(auth)
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

/// What every handler needs: who is asking, which account of the path they may act on, and which
/// path they asked for (for 404 messages).
pub(crate) struct Ctx {
    /// The account the credentials belong to.
    pub account: AccountSid,
    pub path_account: Option<AccountSid>,
    pub path: String,
}

impl Ctx {
    pub fn not_found(&self) -> AppError {
        AppError::NotFound(self.path.clone())
    }

    /// Checks the `{AccountSid}` path segment (with `suffix` such as `.json` removed) against the
    /// accounts the principal may act on (itself, its subaccounts). Any other account looks
    /// exactly like a missing one.
    pub fn scope(&self, segment: &str, suffix: &str) -> Result<AccountSid, AppError> {
        let sid: AccountSid = segment
            .strip_suffix(suffix)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.not_found())?;
        if Some(sid) != self.path_account {
            return Err(self.not_found());
        }
        Ok(sid)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        let auth = parts
            .extensions
            .get::<Authenticated>()
            .copied()
            .ok_or(AppError::Unauthenticated("No credentials provided"))?;
        Ok(Ctx { account: auth.principal, path_account: auth.path_account, path: parts.uri.path().to_owned() })
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

    #[test]
    fn targets_split_the_account_segment_from_the_rest() {
        assert_eq!(target("/2010-04-01/Accounts.json"), Target::AccountsList);
        assert_eq!(target("/2010-04-01/Accounts/ACx.json"), Target::Account { segment: "ACx", rest: ".json" });
        assert_eq!(
            target("/2010-04-01/Accounts/ACx/Calls.json"),
            Target::Account { segment: "ACx", rest: "/Calls.json" }
        );
        assert_eq!(target("/2010-04-01/Accounts/ACx"), Target::Account { segment: "ACx", rest: "" });
        assert_eq!(target("/v1/AuthTokens/Promote"), Target::AuthTokens);
        assert_eq!(target("/nope"), Target::Other);
    }
}
