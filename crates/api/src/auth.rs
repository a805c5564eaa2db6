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
//!
//! Every request authenticates, so the account rows and verified API keys that authentication
//! reads are cached per router ([`CredentialCache`]): a fetch would otherwise cost two database
//! round trips instead of one. Changes made through this API apply to the next request (the cache
//! is emptied after every request that changes accounts, keys or tokens); a change made elsewhere
//! (another node on the same database) applies within [`CACHE_TTL`]. Failed checks are never
//! cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use model::{AccountRecord, AccountSid, AccountStatus, ApiKeySid};

use crate::{ApiHooks, ApiState, AppError};

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
    let cache = CredentialCache::of(&state);
    match authorize(&state, &cache, header, &method, &path).await {
        Ok(auth) => {
            req.extensions_mut().insert(auth);
            let response = next.run(req).await;
            // After the handler: its write is committed, so what is read next is current.
            if changes_credentials(&method, &path) {
                cache.clear();
            } else if changes_numbers(&method, &path) {
                cache.clear_numbers();
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Whether a request may change what authentication reads: an account's tokens or status, or
/// keys. The cache is emptied after such a request, whatever its outcome.
fn changes_credentials(method: &Method, path: &str) -> bool {
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        return false;
    }
    match target(path) {
        Target::AccountsList | Target::AuthTokens => true,
        Target::Account { rest, .. } => rest.is_empty() || rest == ".json" || rest.starts_with("/Keys"),
        Target::Other => false,
    }
}

/// Whether a request may change whose a phone number is (the From check of `Messages.json`
/// reads that through the cache): a number released.
fn changes_numbers(method: &Method, path: &str) -> bool {
    // Only a deletion changes a cached owner: a number never moves to another account, and a
    // number nobody had is not cached. Creations (thousands a second in bulk provisioning) keep
    // the credentials cached.
    *method == Method::DELETE && path.contains("/IncomingPhoneNumbers")
}

/// How long a cached account row or verified API key is used without reading the database again:
/// the longest a change made outside this node's API (another node sharing the database) takes to
/// apply to requests here.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(1);

/// More entries than this (only valid credentials get in) and the cache starts over.
const CACHE_MAX_ENTRIES: usize = 10_000;

/// Account rows and verified API keys read by authentication, and the owners of phone numbers
/// (the From of a message), for [`CACHE_TTL`].
///
/// One per router, found through the router's `hooks` (`ApiState` is the router's state and its
/// `hooks` the one `Arc` all clones share): two routers on two databases, as in tests, must not
/// see each other's accounts. A fill is dropped when the cache was emptied while its read was in
/// flight (`generation`), so a row read before a change cannot outlive the change.
#[derive(Default)]
pub(crate) struct CredentialCache {
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    generation: u64,
    accounts: HashMap<AccountSid, (Arc<AccountRecord>, Instant)>,
    /// Key SID -> (the secret that matched its stored digest, the key's account, when).
    keys: HashMap<ApiKeySid, (String, AccountSid, Instant)>,
    /// Phone number -> (the account it belongs to, when).
    numbers: HashMap<String, (AccountSid, Instant)>,
}

type Registry = Vec<(Weak<dyn ApiHooks>, Arc<CredentialCache>)>;

/// The caches of the live routers. An entry's `Weak` keeps its `hooks` allocation, and so the
/// address compared, from being reused by another router while the entry exists.
static CACHES: Mutex<Registry> = Mutex::new(Vec::new());

impl CredentialCache {
    fn of(state: &ApiState) -> Arc<CredentialCache> {
        let id = Arc::as_ptr(&state.hooks) as *const ();
        // A poisoned lock only means a thread panicked while holding it; the list is whole.
        let mut all = CACHES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, cache)) = all.iter().find(|(w, _)| w.as_ptr() as *const () == id) {
            return cache.clone();
        }
        all.retain(|(w, _)| w.strong_count() > 0);
        let cache = Arc::new(CredentialCache::default());
        all.push((Arc::downgrade(&state.hooks), cache.clone()));
        cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn generation(&self) -> u64 {
        self.lock().generation
    }

    fn clear_numbers(&self) {
        let mut c = self.lock();
        c.generation += 1;
        c.numbers.clear();
    }

    fn clear(&self) {
        let mut c = self.lock();
        c.generation += 1;
        c.accounts.clear();
        c.keys.clear();
        c.numbers.clear();
    }

    fn number(&self, phone: &str, now: Instant) -> Option<AccountSid> {
        let c = self.lock();
        let (account, at) = c.numbers.get(phone)?;
        (now.saturating_duration_since(*at) < CACHE_TTL).then_some(*account)
    }

    fn put_number(&self, generation: u64, phone: &str, account: AccountSid, now: Instant) {
        let mut c = self.lock();
        if c.generation != generation {
            return;
        }
        if c.numbers.len() >= CACHE_MAX_ENTRIES {
            c.numbers.clear();
        }
        c.numbers.insert(phone.to_owned(), (account, now));
    }

    fn account(&self, sid: &AccountSid, now: Instant) -> Option<Arc<AccountRecord>> {
        let c = self.lock();
        let (rec, at) = c.accounts.get(sid)?;
        (now.saturating_duration_since(*at) < CACHE_TTL).then(|| rec.clone())
    }

    fn put_account(&self, generation: u64, rec: Arc<AccountRecord>, now: Instant) {
        let mut c = self.lock();
        if c.generation != generation {
            return;
        }
        if c.accounts.len() >= CACHE_MAX_ENTRIES {
            c.accounts.clear();
        }
        c.accounts.insert(rec.sid, (rec, now));
    }

    /// The key's account when `secret` is the one last verified for it.
    fn key(&self, sid: &ApiKeySid, secret: &str, now: Instant) -> Option<AccountSid> {
        let c = self.lock();
        let (known, account, at) = c.keys.get(sid)?;
        (now.saturating_duration_since(*at) < CACHE_TTL
            && constant_time_eq(known.as_bytes(), secret.as_bytes()))
        .then_some(*account)
    }

    fn put_key(&self, generation: u64, sid: ApiKeySid, secret: &str, account: AccountSid, now: Instant) {
        let mut c = self.lock();
        if c.generation != generation {
            return;
        }
        if c.keys.len() >= CACHE_MAX_ENTRIES {
            c.keys.clear();
        }
        c.keys.insert(sid, (secret.to_owned(), account, now));
    }
}

/// An account row, from the cache or the database (and then cached).
async fn account_row(
    state: &ApiState,
    cache: &CredentialCache,
    sid: &AccountSid,
) -> Result<Option<Arc<AccountRecord>>, AppError> {
    if let Some(rec) = cache.account(sid, Instant::now()) {
        return Ok(Some(rec));
    }
    let generation = cache.generation();
    let Some(rec) = state.store.account(sid).await? else { return Ok(None) };
    let rec = Arc::new(rec);
    cache.put_account(generation, rec.clone(), Instant::now());
    Ok(Some(rec))
}

/// The account a phone number belongs to (numbers are unique system-wide), from the cache or the
/// store; `None` for a number nobody has.
pub(crate) async fn number_owner(state: &ApiState, phone: &str) -> Result<Option<AccountSid>, AppError> {
    let cache = CredentialCache::of(state);
    if let Some(account) = cache.number(phone, Instant::now()) {
        return Ok(Some(account));
    }
    let generation = cache.generation();
    let Some(number) = state.store.number_by_phone(phone).await? else { return Ok(None) };
    cache.put_number(generation, phone, number.account_sid, Instant::now());
    Ok(Some(number.account_sid))
}

/// The principal account, checked for status (its own and its main account's).
async fn authenticate(
    state: &ApiState,
    cache: &CredentialCache,
    header: Option<HeaderValue>,
) -> Result<(Arc<AccountRecord>, bool), AppError> {
    let header = header.ok_or(AppError::Unauthenticated("No credentials provided"))?;
    let (user, password) = parse_basic(header.as_bytes())
        .ok_or(AppError::Unauthenticated("invalid Authorization header"))?;
    let (account, via_key) = if let Ok(key) = user.parse::<ApiKeySid>() {
        let account_sid = match cache.key(&key, &password, Instant::now()) {
            Some(sid) => sid,
            None => {
                let generation = cache.generation();
                let rec = state
                    .store
                    .authenticate_api_key(&key, &password)
                    .await?
                    .ok_or(AppError::Unauthenticated("invalid username or password"))?;
                cache.put_key(generation, key, &password, rec.account_sid, Instant::now());
                rec.account_sid
            }
        };
        let account = account_row(state, cache, &account_sid)
            .await?
            .ok_or(AppError::Unauthenticated("invalid username"))?;
        (account, true)
    } else {
        let sid: AccountSid =
            user.parse().map_err(|_| AppError::Unauthenticated("invalid username"))?;
        let account = account_row(state, cache, &sid)
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
        let owner = account_row(state, cache, &account.owner_account_sid).await?;
        statuses.push(owner.as_deref().map_or(Ok(AccountStatus::Closed), status_of)?);
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
    cache: &CredentialCache,
    header: Option<HeaderValue>,
    method: &Method,
    path: &str,
) -> Result<Authenticated, AppError> {
    let (principal, via_key) = authenticate(state, cache, header).await?;
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
    let Some(child) = account_row(state, cache, &sid).await? else { return Ok(auth) };
    if child.owner_account_sid != principal.sid || child.sid == child.owner_account_sid {
        return Ok(auth);
    }
    let is_account_itself = rest.is_empty() || rest == ".json";
    match status_of(&child)? {
        AccountStatus::Closed if !is_account_itself => return Ok(auth),
        AccountStatus::Suspended if *method == Method::POST && matches!(rest, "/Calls.json" | "/Messages.json") => {
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
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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

    fn account_record(sid: AccountSid, token: &str) -> AccountRecord {
        let now = chrono::Utc::now();
        AccountRecord {
            sid,
            owner_account_sid: sid,
            friendly_name: "Main".into(),
            auth_token: token.into(),
            secondary_auth_token: None,
            secondary_auth_token_created: None,
            status: "active".into(),
            date_created: now,
            date_updated: now,
            console_crm_url: None,
        }
    }

    #[test]
    fn cached_accounts_expire_and_a_clear_drops_fills_read_before_it() {
        let cache = CredentialCache::default();
        let sid = AccountSid::generate();
        let t0 = Instant::now();
        let g = cache.generation();
        cache.put_account(g, Arc::new(account_record(sid, "tok")), t0);
        assert_eq!(cache.account(&sid, t0 + CACHE_TTL / 2).unwrap().auth_token, "tok");
        assert!(cache.account(&sid, t0 + CACHE_TTL).is_none(), "used past its TTL");
        // A read that started before a clear (a change committed meanwhile) is not kept.
        let before = cache.generation();
        cache.clear();
        assert!(cache.account(&sid, t0).is_none());
        cache.put_account(before, Arc::new(account_record(sid, "old")), t0);
        assert!(cache.account(&sid, t0).is_none(), "a stale fill got in");
        cache.put_account(cache.generation(), Arc::new(account_record(sid, "new")), t0);
        assert_eq!(cache.account(&sid, t0).unwrap().auth_token, "new");
    }

    #[test]
    fn cached_keys_match_only_their_exact_secret() {
        let cache = CredentialCache::default();
        let key = ApiKeySid::generate();
        let account = AccountSid::generate();
        let t0 = Instant::now();
        cache.put_key(cache.generation(), key, "secret", account, t0);
        assert_eq!(cache.key(&key, "secret", t0), Some(account));
        assert_eq!(cache.key(&key, "secreT", t0), None);
        assert_eq!(cache.key(&key, "secret ", t0), None);
        assert_eq!(cache.key(&ApiKeySid::generate(), "secret", t0), None);
        assert_eq!(cache.key(&key, "secret", t0 + CACHE_TTL), None);
        cache.clear();
        assert_eq!(cache.key(&key, "secret", t0), None);
    }

    #[test]
    fn credential_changing_requests_are_recognised() {
        let acc = "/2010-04-01/Accounts/ACx";
        for (m, p) in [
            (Method::POST, "/2010-04-01/Accounts.json".to_owned()),
            (Method::POST, format!("{acc}.json")),
            (Method::POST, format!("{acc}/Keys.json")),
            (Method::DELETE, format!("{acc}/Keys/SKx.json")),
            (Method::POST, "/v1/AuthTokens/Promote".to_owned()),
            (Method::DELETE, "/v1/AuthTokens/Secondary".to_owned()),
        ] {
            assert!(changes_credentials(&m, &p), "{m} {p}");
        }
        for (m, p) in [
            (Method::GET, format!("{acc}.json")),
            (Method::GET, format!("{acc}/Keys.json")),
            (Method::POST, format!("{acc}/Calls.json")),
            (Method::POST, format!("{acc}/IncomingPhoneNumbers.json")),
        ] {
            assert!(!changes_credentials(&m, &p), "{m} {p}");
        }
    }

    struct NoHooks;
    impl ApiHooks for NoHooks {}

    async fn state(dir: &std::path::Path) -> ApiState {
        let store = ::store::testing::open_fresh(&dir.join("db")).await.unwrap();
        ApiState {
            store,
            public_url: "http://127.0.0.1".into(),
            recordings_dir: dir.join("recordings"),
            hooks: Arc::new(NoHooks),
        }
    }

    async fn status_of_request(state: &ApiState, method: Method, uri: &str, user: &str, password: &str, form: &str) -> u16 {
        use tower::ServiceExt;
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, format!("Basic {enc}"))
            .header(axum::http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(axum::body::Body::from(form.to_owned()))
            .unwrap();
        crate::router(state.clone()).oneshot(req).await.unwrap().status().as_u16()
    }

    #[tokio::test]
    async fn changes_through_the_api_apply_at_once_and_others_within_the_ttl() {
        let dir = std::env::temp_dir().join(format!("dialtone-auth-{}", AccountSid::generate()));
        let state = state(&dir).await;
        let main = AccountSid::generate();
        state.store.ensure_account(&main, "main-token-0123456789", "Main").await.unwrap();
        let mut sub = account_record(AccountSid::generate(), "sub-token-0123456789");
        sub.owner_account_sid = main;
        state.store.create_account(&sub).await.unwrap();
        let sub_url = format!("/2010-04-01/Accounts/{}.json", sub.sid);
        let get = |user: AccountSid, token: &'static str| {
            let (state, url) = (state.clone(), sub_url.clone());
            async move { status_of_request(&state, Method::GET, &url, user.as_str(), token, "").await }
        };
        assert_eq!(get(sub.sid, "sub-token-0123456789").await, 200);
        // Suspended by its parent through the API: refused on the very next request (cached
        // as active a moment ago).
        let code = status_of_request(&state, Method::POST, &sub_url, main.as_str(), "main-token-0123456789", "Status=suspended").await;
        assert_eq!(code, 200);
        assert_eq!(get(sub.sid, "sub-token-0123456789").await, 401);
        // Reactivated behind the API's back (as another node would): seen within the TTL.
        let code = status_of_request(&state, Method::POST, &sub_url, main.as_str(), "main-token-0123456789", "Status=active").await;
        assert_eq!(code, 200);
        assert_eq!(get(sub.sid, "sub-token-0123456789").await, 200);
        let mut changed = state.store.account(&sub.sid).await.unwrap().unwrap();
        changed.status = "suspended".into();
        assert!(state.store.update_account(&changed).await.unwrap());
        tokio::time::sleep(CACHE_TTL + Duration::from_millis(50)).await;
        assert_eq!(get(sub.sid, "sub-token-0123456789").await, 401);
        // A wrong token is never let in by a cached row.
        assert_eq!(get(main, "wrong-token-0123456789").await, 401);
        state.store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn routers_on_different_databases_do_not_share_cached_accounts() {
        let (d1, d2) = (
            std::env::temp_dir().join(format!("dialtone-auth-{}", AccountSid::generate())),
            std::env::temp_dir().join(format!("dialtone-auth-{}", AccountSid::generate())),
        );
        let (a, b) = (state(&d1).await, state(&d2).await);
        let sid = AccountSid::generate();
        a.store.ensure_account(&sid, "token-of-database-a", "A").await.unwrap();
        b.store.ensure_account(&sid, "token-of-database-b", "B").await.unwrap();
        let url = format!("/2010-04-01/Accounts/{sid}.json");
        assert_eq!(status_of_request(&a, Method::GET, &url, sid.as_str(), "token-of-database-a", "").await, 200);
        assert_eq!(status_of_request(&b, Method::GET, &url, sid.as_str(), "token-of-database-a", "").await, 401);
        assert_eq!(status_of_request(&b, Method::GET, &url, sid.as_str(), "token-of-database-b", "").await, 200);
        assert_eq!(status_of_request(&a, Method::GET, &url, sid.as_str(), "token-of-database-b", "").await, 401);
        for (s, d) in [(a, d1), (b, d2)] {
            s.store.close().await;
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}
