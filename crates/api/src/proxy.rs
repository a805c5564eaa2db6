//! Proxy v1 (`/v1/Services/...`), as twilio-python's `client.proxy.v1` calls it: Services, their
//! PhoneNumbers (the pool, from the account's IncomingPhoneNumbers), Sessions, Participants,
//! Interactions and MessageInteractions. The credentials' account owns what it creates; there
//! is no account in these paths. Dates are ISO 8601, `url`s absolute, and lists use the v1
//! envelope (`meta` with `key` and absolute page URLs).
//!
//! Every write that changes what routes (a service's callbacks, its pool, a session's status or
//! participants) is told to the runtime through [`crate::ApiHooks::proxy_changed`] and awaited,
//! so a call placed once the API has answered is routed by it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use model::{
    AccountSid, MessageDirection, MessageRecord, MessageStatus, PhoneNumberSid,
    ProxyInteractionSid, ProxyParticipantSid, ProxyServiceSid, ProxySessionSid,
};
use serde_json::{json, Map, Value};
use store::proxy::{
    NewParticipant, ProxyError, ProxyInteractionRecord, ProxyNumberRecord, ProxyParticipantRecord,
    ProxyServiceRecord, ProxySessionRecord,
};
use store::{Page, StoreError};
use url::form_urlencoded;

use crate::auth::Ctx;
use crate::numbers::url_param;
use crate::params::{Paging, Params, Seg};
use crate::{ApiState, AppError, ProxyChange};

/// Longest unique name, identifier and friendly name, as Twilio's.
const MAX_UNIQUE_NAME: usize = 191;
const MAX_FRIENDLY_NAME: usize = 255;
pub(crate) const SESSION_MODES: &[&str] = &["message-only", "voice-only", "voice-and-message"];
pub(crate) const SESSION_STATUSES: &[&str] =
    &["open", "in-progress", "closed", "failed", "unknown"];
pub(crate) const SELECTION_BEHAVIORS: &[&str] = &["avoid-sticky", "prefer-sticky"];
pub(crate) const GEO_MATCH_LEVELS: &[&str] = &["area-code", "overlay", "radius", "country"];
pub(crate) const RESOURCE_STATUSES: &[&str] = &[
    "accepted",
    "answered",
    "busy",
    "canceled",
    "completed",
    "deleted",
    "delivered",
    "delivery-unknown",
    "failed",
    "in-progress",
    "initiated",
    "no-answer",
    "queued",
    "received",
    "receiving",
    "ringing",
    "scheduled",
    "sending",
    "sent",
    "undelivered",
    "unknown",
];

/// ISO 8601 in UTC, whole seconds: `2015-07-30T20:00:00Z`.
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_iso(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(iso)
}

fn base(public_url: &str) -> String {
    format!("{}/v1/Services", public_url.trim_end_matches('/'))
}

/// The store's refusal as Twilio's error.
fn refused(e: StoreError) -> AppError {
    match e {
        StoreError::Proxy(p) => {
            let code = match &p {
                ProxyError::PoolExhausted(_) | ProxyError::PairInUse { .. } => 80604,
                ProxyError::NotInPool(_) => 80402,
                _ => 20001,
            };
            AppError::bad(code, p.to_string())
        }
        e => e.into(),
    }
}

fn text_param(name: &str, value: &str, max: usize) -> Result<String, AppError> {
    if value.chars().count() > max {
        return Err(AppError::bad(
            20001,
            format!("{name} is longer than {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

fn seconds_param(name: &str, value: &str) -> Result<u32, AppError> {
    value.trim().parse::<u32>().map_err(|_| {
        AppError::bad(
            20001,
            format!("Invalid {name} {value:?}: use whole seconds, 0 or more"),
        )
    })
}

fn one_of(name: &str, value: &str, allowed: &[&str]) -> Result<String, AppError> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(AppError::bad(
            20001,
            format!(
                "Invalid {name} {value:?}: use one of {}",
                allowed.join(", ")
            ),
        ))
    }
}

fn bool_param(name: &str, value: &str) -> Result<bool, AppError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(AppError::bad(
            20001,
            format!("Invalid {name} {value:?}: use true or false"),
        )),
    }
}

fn date_time_param(name: &str, value: &str) -> Result<DateTime<Utc>, AppError> {
    DateTime::parse_from_rfc3339(value.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            AppError::bad(
                20001,
                format!("Invalid {name} {value:?}: use ISO 8601, e.g. 2026-12-01T10:00:00Z"),
            )
        })
}

fn sid_of<K: model::sid::SidKind>(ctx: &Ctx, segment: &str) -> Result<model::Sid<K>, AppError> {
    segment.parse().map_err(|_| ctx.not_found())
}

// --- JSON -----------------------------------------------------------------------------------------

pub(crate) fn service_json(public_url: &str, s: &ProxyServiceRecord) -> Value {
    let url = format!("{}/{}", base(public_url), s.sid);
    json!({
        "sid": s.sid,
        "unique_name": s.unique_name,
        "account_sid": s.account_sid,
        "chat_instance_sid": s.chat_instance_sid,
        "callback_url": s.callback_url,
        "default_ttl": s.default_ttl,
        "number_selection_behavior": s.number_selection_behavior,
        "geo_match_level": s.geo_match_level,
        "intercept_callback_url": s.intercept_callback_url,
        "out_of_session_callback_url": s.out_of_session_callback_url,
        "date_created": iso(s.date_created),
        "date_updated": iso(s.date_updated),
        "links": {
            "sessions": format!("{url}/Sessions"),
            "phone_numbers": format!("{url}/PhoneNumbers"),
        },
        "url": url,
    })
}

fn iso_country(phone: &str) -> &'static str {
    // Only the North American plan is told apart; Twilio looks the number up.
    if phone.starts_with("+1") {
        "US"
    } else {
        "ZZ"
    }
}

pub(crate) fn number_json(public_url: &str, n: &ProxyNumberRecord) -> Value {
    json!({
        "sid": n.sid,
        "account_sid": n.account_sid,
        "service_sid": n.service_sid,
        "date_created": iso(n.date_created),
        "date_updated": iso(n.date_updated),
        "phone_number": n.phone_number,
        "friendly_name": n.friendly_name,
        "iso_country": iso_country(&n.phone_number),
        "capabilities": { "voice_inbound": true, "voice_outbound": true, "sms_inbound": true, "sms_outbound": true },
        "url": format!("{}/{}/PhoneNumbers/{}", base(public_url), n.service_sid, n.sid),
        "is_reserved": n.is_reserved,
        "in_use": n.in_use,
    })
}

pub(crate) fn session_json(public_url: &str, s: &ProxySessionRecord) -> Value {
    let url = format!("{}/{}/Sessions/{}", base(public_url), s.service_sid, s.sid);
    json!({
        "sid": s.sid,
        "service_sid": s.service_sid,
        "account_sid": s.account_sid,
        "date_started": opt_iso(s.date_started),
        "date_ended": opt_iso(s.date_ended),
        "date_last_interaction": opt_iso(s.date_last_interaction),
        "date_expiry": opt_iso(if s.is_open() { s.expires_at() } else { s.date_expiry }),
        "unique_name": s.unique_name,
        "status": s.status,
        "closed_reason": s.closed_reason,
        "ttl": s.ttl,
        "mode": s.mode,
        "date_created": iso(s.date_created),
        "date_updated": iso(s.date_updated),
        "links": {
            "interactions": format!("{url}/Interactions"),
            "participants": format!("{url}/Participants"),
        },
        "url": url,
    })
}

pub(crate) fn participant_json(public_url: &str, p: &ProxyParticipantRecord) -> Value {
    let url = format!(
        "{}/{}/Sessions/{}/Participants/{}",
        base(public_url),
        p.service_sid,
        p.session_sid,
        p.sid
    );
    json!({
        "sid": p.sid,
        "session_sid": p.session_sid,
        "service_sid": p.service_sid,
        "account_sid": p.account_sid,
        "friendly_name": p.friendly_name,
        "identifier": p.identifier,
        "proxy_identifier": p.proxy_identifier,
        "proxy_identifier_sid": p.proxy_identifier_sid,
        "date_deleted": Value::Null,
        "date_created": iso(p.date_created),
        "date_updated": iso(p.date_updated),
        "links": { "message_interactions": format!("{url}/MessageInteractions") },
        "url": url,
    })
}

fn resource_type(sid: Option<&str>) -> Option<&'static str> {
    match sid.map(|s| s.get(..2).unwrap_or("")) {
        Some("CA") => Some("Call"),
        Some("SM") => Some("Message"),
        _ => None,
    }
}

fn resource_url(public_url: &str, account: &AccountSid, sid: Option<&str>) -> Option<String> {
    let sid = sid?;
    let kind = match resource_type(Some(sid))? {
        "Call" => "Calls",
        _ => "Messages",
    };
    Some(format!(
        "{}/2010-04-01/Accounts/{account}/{kind}/{sid}.json",
        public_url.trim_end_matches('/')
    ))
}

/// A status as the interaction enum has it (`unknown` for anything else).
fn resource_status(s: Option<&str>) -> Option<&str> {
    s.map(|s| {
        if RESOURCE_STATUSES.contains(&s) {
            s
        } else {
            "unknown"
        }
    })
}

/// An Interaction; with `via` (a participant's MessageInteractions), a MessageInteraction.
pub(crate) fn interaction_json(
    public_url: &str,
    i: &ProxyInteractionRecord,
    via: Option<&ProxyParticipantSid>,
) -> Value {
    let session_url = format!(
        "{}/{}/Sessions/{}",
        base(public_url),
        i.service_sid,
        i.session_sid
    );
    let mut out = json!({
        "sid": i.sid,
        "session_sid": i.session_sid,
        "service_sid": i.service_sid,
        "account_sid": i.account_sid,
        "data": i.data,
        "type": if i.kind == "voice" || i.kind == "message" { i.kind.as_str() } else { "unknown" },
        "inbound_participant_sid": i.inbound_participant_sid,
        "inbound_resource_sid": i.inbound_resource_sid,
        "inbound_resource_status": resource_status(i.inbound_resource_status.as_deref()),
        "inbound_resource_type": resource_type(i.inbound_resource_sid.as_deref()),
        "inbound_resource_url": resource_url(public_url, &i.account_sid, i.inbound_resource_sid.as_deref()),
        "outbound_participant_sid": i.outbound_participant_sid,
        "outbound_resource_sid": i.outbound_resource_sid,
        "outbound_resource_status": resource_status(i.outbound_resource_status.as_deref()),
        "outbound_resource_type": resource_type(i.outbound_resource_sid.as_deref()),
        "outbound_resource_url": resource_url(public_url, &i.account_sid, i.outbound_resource_sid.as_deref()),
        "date_created": iso(i.date_created),
        "date_updated": iso(i.date_updated),
        "url": format!("{session_url}/Interactions/{}", i.sid),
    });
    if let Some(p) = via {
        out["participant_sid"] = json!(p);
        out["url"] = json!(format!(
            "{session_url}/Participants/{p}/MessageInteractions/{}",
            i.sid
        ));
    }
    out
}

/// The v1 list envelope: the records under `key`, and `meta` with absolute page URLs.
fn v1_page<T>(
    state: &ApiState,
    key: &str,
    ctx: &Ctx,
    paging: &Paging,
    page: Page<T>,
    render: impl Fn(&T) -> Value,
) -> Value {
    let root = state.public_url.trim_end_matches('/');
    let url = |page_no: u64, token: Option<&str>| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("PageSize", &paging.size.to_string());
        q.append_pair("Page", &page_no.to_string());
        if let Some(t) = token {
            q.append_pair("PageToken", t);
        }
        format!("{root}{}?{}", ctx.path, q.finish())
    };
    let next = page
        .next
        .as_ref()
        .map(|c| url(paging.page + 1, Some(&c.to_token())));
    let previous = (paging.page > 0).then(|| url(paging.page - 1, None));
    let mut out = Map::new();
    out.insert(
        key.to_owned(),
        Value::Array(page.items.iter().map(render).collect()),
    );
    out.insert(
        "meta".into(),
        json!({
            "first_page_url": url(0, None),
            "key": key,
            "next_page_url": next,
            "page": paging.page,
            "page_size": paging.size,
            "previous_page_url": previous,
            "url": url(paging.page, paging.token.as_deref()),
        }),
    );
    Value::Object(out)
}

// --- Lookups ----------------------------------------------------------------------------------

async fn find_service(
    state: &ApiState,
    ctx: &Ctx,
    segment: &str,
) -> Result<ProxyServiceRecord, AppError> {
    let sid: ProxyServiceSid = sid_of(ctx, segment)?;
    state
        .store
        .proxy_service(&ctx.account, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())
}

async fn find_session(
    state: &ApiState,
    ctx: &Ctx,
    service: &str,
    session: &str,
) -> Result<ProxySessionRecord, AppError> {
    let service = find_service(state, ctx, service).await?;
    state
        .store
        .proxy_session(&ctx.account, &service.sid, session)
        .await?
        .ok_or_else(|| ctx.not_found())
}

async fn find_participant(
    state: &ApiState,
    ctx: &Ctx,
    service: &str,
    session: &str,
    participant: &str,
) -> Result<(ProxySessionRecord, ProxyParticipantRecord), AppError> {
    let session = find_session(state, ctx, service, session).await?;
    let sid: ProxyParticipantSid = sid_of(ctx, participant)?;
    let p = state
        .store
        .proxy_participant(&ctx.account, &session.sid, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())?;
    Ok((session, p))
}

async fn changed(
    state: &ApiState,
    account: AccountSid,
    service: ProxyServiceSid,
    session: Option<ProxySessionSid>,
) {
    state
        .hooks
        .proxy_changed(ProxyChange {
            account,
            service,
            session,
        })
        .await;
}

// --- Services ---------------------------------------------------------------------------------

fn apply_service(s: &mut ProxyServiceRecord, p: &Params) -> Result<(), AppError> {
    if let Some(v) = p.get("UniqueName") {
        if v.trim().is_empty() {
            return Err(AppError::bad(20001, "UniqueName may not be empty"));
        }
        s.unique_name = text_param("UniqueName", v, MAX_UNIQUE_NAME)?;
    }
    if let Some(v) = p.get("DefaultTtl") {
        s.default_ttl = seconds_param("DefaultTtl", v)?;
    }
    for (name, field) in [
        ("CallbackUrl", &mut s.callback_url),
        ("InterceptCallbackUrl", &mut s.intercept_callback_url),
        (
            "OutOfSessionCallbackUrl",
            &mut s.out_of_session_callback_url,
        ),
    ] {
        if let Some(v) = p.get(name) {
            *field = url_param(name, v)?;
        }
    }
    if let Some(v) = p.get("NumberSelectionBehavior") {
        s.number_selection_behavior = one_of("NumberSelectionBehavior", v, SELECTION_BEHAVIORS)?;
    }
    if let Some(v) = p.get("GeoMatchLevel") {
        s.geo_match_level = one_of("GeoMatchLevel", v, GEO_MATCH_LEVELS)?;
    }
    if let Some(v) = p.get("ChatInstanceSid") {
        s.chat_instance_sid = (!v.is_empty()).then(|| v.chars().take(64).collect());
    }
    Ok(())
}

pub(crate) async fn create_service(
    State(state): State<ApiState>,
    ctx: Ctx,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let p = Params::from_body(body)?;
    if p.get("UniqueName").is_none() {
        return Err(AppError::bad(
            20001,
            "Missing required parameter UniqueName in the post body",
        ));
    }
    let now = Utc::now();
    let mut s = ProxyServiceRecord {
        sid: ProxyServiceSid::generate(),
        account_sid: ctx.account,
        unique_name: String::new(),
        default_ttl: 0,
        callback_url: None,
        intercept_callback_url: None,
        out_of_session_callback_url: None,
        number_selection_behavior: "prefer-sticky".into(),
        geo_match_level: "country".into(),
        chat_instance_sid: None,
        date_created: now,
        date_updated: now,
    };
    apply_service(&mut s, &p)?;
    state
        .store
        .create_proxy_service(&s)
        .await
        .map_err(refused)?;
    changed(&state, s.account_sid, s.sid, None).await;
    Ok((
        StatusCode::CREATED,
        Json(service_json(&state.public_url, &s)),
    ))
}

pub(crate) async fn list_services(
    State(state): State<ApiState>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state
        .store
        .list_proxy_services(&ctx.account, &paging.request)
        .await?;
    Ok(Json(v1_page(
        &state,
        "services",
        &ctx,
        &paging,
        page,
        |s| service_json(&state.public_url, s),
    )))
}

pub(crate) async fn fetch_service(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(service): Seg<String>,
) -> Result<Json<Value>, AppError> {
    let s = find_service(&state, &ctx, &service).await?;
    Ok(Json(service_json(&state.public_url, &s)))
}

pub(crate) async fn update_service(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(service): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let p = Params::from_body(body)?;
    let mut s = find_service(&state, &ctx, &service).await?;
    apply_service(&mut s, &p)?;
    s.date_updated = Utc::now();
    if !state
        .store
        .update_proxy_service(&s)
        .await
        .map_err(refused)?
    {
        return Err(ctx.not_found());
    }
    changed(&state, s.account_sid, s.sid, None).await;
    Ok(Json(service_json(&state.public_url, &s)))
}

pub(crate) async fn delete_service(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(service): Seg<String>,
) -> Result<StatusCode, AppError> {
    let s = find_service(&state, &ctx, &service).await?;
    if !state
        .store
        .delete_proxy_service(&ctx.account, &s.sid)
        .await?
    {
        return Err(ctx.not_found());
    }
    changed(&state, s.account_sid, s.sid, None).await;
    Ok(StatusCode::NO_CONTENT)
}

// --- The pool ---------------------------------------------------------------------------------

pub(crate) async fn create_number(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(service): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let p = Params::from_body(body)?;
    let s = find_service(&state, &ctx, &service).await?;
    let reserved = p
        .get("IsReserved")
        .map(|v| bool_param("IsReserved", v))
        .transpose()?
        .unwrap_or(false);
    let number = match (
        p.get("Sid").filter(|v| !v.is_empty()),
        p.get_number("PhoneNumber").filter(|v| !v.is_empty()),
    ) {
        (Some(sid), _) => {
            sid.parse::<PhoneNumberSid>()
                .map_err(|_| AppError::bad(20001, format!("Invalid Sid {sid:?}: a PN SID")))?;
            sid.to_owned()
        }
        (None, Some(phone)) => phone,
        (None, None) => {
            return Err(AppError::bad(
                20001,
                "Either Sid or PhoneNumber is required",
            ))
        }
    };
    let n = state
        .store
        .add_proxy_number(&ctx.account, &s.sid, &number, reserved, Utc::now())
        .await
        .map_err(refused)?;
    changed(&state, s.account_sid, s.sid, None).await;
    Ok((
        StatusCode::CREATED,
        Json(number_json(&state.public_url, &n)),
    ))
}

pub(crate) async fn list_numbers(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(service): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let s = find_service(&state, &ctx, &service).await?;
    let page = state
        .store
        .list_proxy_numbers(&ctx.account, &s.sid, &paging.request)
        .await?;
    Ok(Json(v1_page(
        &state,
        "phone_numbers",
        &ctx,
        &paging,
        page,
        |n| number_json(&state.public_url, n),
    )))
}

async fn find_number(
    state: &ApiState,
    ctx: &Ctx,
    service: &str,
    number: &str,
) -> Result<ProxyNumberRecord, AppError> {
    let s = find_service(state, ctx, service).await?;
    let sid: PhoneNumberSid = sid_of(ctx, number)?;
    state
        .store
        .proxy_number(&ctx.account, &s.sid, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())
}

pub(crate) async fn fetch_number(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, number)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let n = find_number(&state, &ctx, &service, &number).await?;
    Ok(Json(number_json(&state.public_url, &n)))
}

pub(crate) async fn update_number(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, number)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let p = Params::from_body(body)?;
    let n = find_number(&state, &ctx, &service, &number).await?;
    if let Some(v) = p.get("IsReserved") {
        let reserved = bool_param("IsReserved", v)?;
        state
            .store
            .set_proxy_number_reserved(&ctx.account, &n.service_sid, &n.sid, reserved, Utc::now())
            .await?;
    }
    let n = find_number(&state, &ctx, &service, &number).await?;
    Ok(Json(number_json(&state.public_url, &n)))
}

pub(crate) async fn delete_number(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, number)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let n = find_number(&state, &ctx, &service, &number).await?;
    if !state
        .store
        .remove_proxy_number(&ctx.account, &n.service_sid, &n.sid)
        .await?
    {
        return Err(ctx.not_found());
    }
    changed(&state, n.account_sid, n.service_sid, None).await;
    Ok(StatusCode::NO_CONTENT)
}

// --- Sessions ---------------------------------------------------------------------------------

/// One element of a create's `Participants`: twilio-python sends each as a JSON object.
fn participant_param(value: &str) -> Result<NewParticipant, AppError> {
    let bad = || {
        AppError::bad(
            20001,
            format!(
                "Invalid Participants entry {:?}: a JSON object with Identifier",
                value.chars().take(64).collect::<String>()
            ),
        )
    };
    let v: Value = serde_json::from_str(value).map_err(|_| bad())?;
    let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_owned);
    let identifier = field("Identifier").ok_or_else(bad)?;
    Ok(NewParticipant {
        identifier: identifier_param(&identifier)?,
        friendly_name: field("FriendlyName")
            .map(|f| text_param("FriendlyName", &f, MAX_FRIENDLY_NAME))
            .transpose()?,
        proxy_identifier: field("ProxyIdentifierSid").or_else(|| field("ProxyIdentifier")),
    })
}

fn identifier_param(value: &str) -> Result<String, AppError> {
    let v = match value.strip_prefix(' ') {
        Some(rest) => format!("+{rest}"),
        None => value.to_owned(),
    };
    if v.trim().is_empty() {
        return Err(AppError::bad(20001, "Identifier may not be empty"));
    }
    text_param("Identifier", &v, MAX_UNIQUE_NAME)
}

pub(crate) async fn create_session(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(service): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let p = Params::from_body(body)?;
    let svc = find_service(&state, &ctx, &service).await?;
    let participants = p
        .get_all("Participants")
        .map(participant_param)
        .collect::<Result<Vec<_>, _>>()?;
    if participants.len() > 2 {
        return Err(AppError::bad(
            20001,
            "A session has two participants at most",
        ));
    }
    let now = Utc::now();
    let status = match p.get("Status") {
        None => "open".to_owned(),
        Some(v) => one_of("Status", v, &["open", "in-progress", "closed"])?,
    };
    let mut s = ProxySessionRecord {
        sid: ProxySessionSid::generate(),
        account_sid: ctx.account,
        service_sid: svc.sid,
        unique_name: p
            .get("UniqueName")
            .filter(|v| !v.is_empty())
            .map(|v| text_param("UniqueName", v, MAX_UNIQUE_NAME))
            .transpose()?,
        closed_reason: None,
        ttl: p
            .get("Ttl")
            .map(|v| seconds_param("Ttl", v))
            .transpose()?
            .unwrap_or(svc.default_ttl),
        mode: p
            .get("Mode")
            .map(|v| one_of("Mode", v, SESSION_MODES))
            .transpose()?
            .unwrap_or_else(|| "voice-and-message".into()),
        date_expiry: p
            .get("DateExpiry")
            .filter(|v| !v.is_empty())
            .map(|v| date_time_param("DateExpiry", v))
            .transpose()?,
        date_started: None,
        date_ended: (status == "closed").then_some(now),
        date_last_interaction: None,
        date_created: now,
        date_updated: now,
        status,
    };
    if s.status == "in-progress" {
        s.date_started = Some(now);
    }
    state
        .store
        .create_proxy_session(&s)
        .await
        .map_err(refused)?;
    for new in &participants {
        if let Err(e) = state.store.add_proxy_participant(&s, new, Utc::now()).await {
            // All or nothing, as a create with participants is one request.
            let _ = state.store.delete_proxy_session(&ctx.account, &s.sid).await;
            return Err(refused(e));
        }
    }
    changed(&state, s.account_sid, s.service_sid, Some(s.sid)).await;
    Ok((
        StatusCode::CREATED,
        Json(session_json(&state.public_url, &s)),
    ))
}

pub(crate) async fn list_sessions(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(service): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let svc = find_service(&state, &ctx, &service).await?;
    let page = state
        .store
        .list_proxy_sessions(&ctx.account, &svc.sid, &paging.request)
        .await?;
    Ok(Json(v1_page(
        &state,
        "sessions",
        &ctx,
        &paging,
        page,
        |s| session_json(&state.public_url, s),
    )))
}

pub(crate) async fn fetch_session(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let s = find_session(&state, &ctx, &service, &session).await?;
    Ok(Json(session_json(&state.public_url, &s)))
}

pub(crate) async fn update_session(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let p = Params::from_body(body)?;
    let mut s = find_session(&state, &ctx, &service, &session).await?;
    let now = Utc::now();
    if let Some(v) = p.get("Ttl") {
        s.ttl = seconds_param("Ttl", v)?;
    }
    if let Some(v) = p.get("DateExpiry") {
        s.date_expiry = (!v.is_empty())
            .then(|| date_time_param("DateExpiry", v))
            .transpose()?;
    }
    if let Some(v) = p.get("Status") {
        match one_of("Status", v, &["in-progress", "closed"])?.as_str() {
            "closed" if s.is_open() => {
                s.status = "closed".into();
                s.closed_reason = Some("api".into());
                s.date_ended = Some(now);
            }
            "in-progress" if !s.is_open() => {
                // Re-opened: its participants claim their pairs again (or it fails with 80604).
                s.status = "in-progress".into();
                s.closed_reason = None;
                s.date_ended = None;
                s.date_last_interaction = Some(now);
            }
            _ => {}
        }
    }
    s.date_updated = now;
    if !state
        .store
        .update_proxy_session(&s)
        .await
        .map_err(refused)?
    {
        return Err(ctx.not_found());
    }
    changed(&state, s.account_sid, s.service_sid, Some(s.sid)).await;
    let s = find_session(&state, &ctx, &service, s.sid.as_str()).await?;
    Ok(Json(session_json(&state.public_url, &s)))
}

pub(crate) async fn delete_session(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let s = find_session(&state, &ctx, &service, &session).await?;
    if !state
        .store
        .delete_proxy_session(&ctx.account, &s.sid)
        .await?
    {
        return Err(ctx.not_found());
    }
    changed(&state, s.account_sid, s.service_sid, Some(s.sid)).await;
    Ok(StatusCode::NO_CONTENT)
}

// --- Participants -----------------------------------------------------------------------------

pub(crate) async fn create_participant(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let p = Params::from_body(body)?;
    let s = find_session(&state, &ctx, &service, &session).await?;
    let identifier = p.get("Identifier").ok_or_else(|| {
        AppError::bad(
            20001,
            "Missing required parameter Identifier in the post body",
        )
    })?;
    let new = NewParticipant {
        identifier: identifier_param(identifier)?,
        friendly_name: p
            .get("FriendlyName")
            .map(|v| text_param("FriendlyName", v, MAX_FRIENDLY_NAME))
            .transpose()?,
        proxy_identifier: p
            .get("ProxyIdentifierSid")
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .or_else(|| p.get_number("ProxyIdentifier").filter(|v| !v.is_empty())),
    };
    let rec = state
        .store
        .add_proxy_participant(&s, &new, Utc::now())
        .await
        .map_err(refused)?;
    changed(&state, s.account_sid, s.service_sid, Some(s.sid)).await;
    Ok((
        StatusCode::CREATED,
        Json(participant_json(&state.public_url, &rec)),
    ))
}

pub(crate) async fn list_participants(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let s = find_session(&state, &ctx, &service, &session).await?;
    let page = state
        .store
        .list_proxy_participants(&ctx.account, &s.sid, &paging.request)
        .await?;
    Ok(Json(v1_page(
        &state,
        "participants",
        &ctx,
        &paging,
        page,
        |p| participant_json(&state.public_url, p),
    )))
}

pub(crate) async fn fetch_participant(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session, participant)): Seg<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let (_, p) = find_participant(&state, &ctx, &service, &session, &participant).await?;
    Ok(Json(participant_json(&state.public_url, &p)))
}

pub(crate) async fn delete_participant(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session, participant)): Seg<(String, String, String)>,
) -> Result<StatusCode, AppError> {
    let (s, p) = find_participant(&state, &ctx, &service, &session, &participant).await?;
    if !state
        .store
        .delete_proxy_participant(&ctx.account, &s.sid, &p.sid)
        .await?
    {
        return Err(ctx.not_found());
    }
    changed(&state, s.account_sid, s.service_sid, Some(s.sid)).await;
    Ok(StatusCode::NO_CONTENT)
}

// --- Interactions -----------------------------------------------------------------------------

pub(crate) async fn list_interactions(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let s = find_session(&state, &ctx, &service, &session).await?;
    let page = state
        .store
        .list_proxy_interactions(&ctx.account, &s.sid, None, &paging.request)
        .await?;
    Ok(Json(v1_page(
        &state,
        "interactions",
        &ctx,
        &paging,
        page,
        |i| interaction_json(&state.public_url, i, None),
    )))
}

async fn find_interaction(
    state: &ApiState,
    ctx: &Ctx,
    session: &ProxySessionRecord,
    interaction: &str,
) -> Result<ProxyInteractionRecord, AppError> {
    let sid: ProxyInteractionSid = sid_of(ctx, interaction)?;
    state
        .store
        .proxy_interaction(&ctx.account, &session.sid, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())
}

pub(crate) async fn fetch_interaction(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session, interaction)): Seg<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let s = find_session(&state, &ctx, &service, &session).await?;
    let i = find_interaction(&state, &ctx, &s, &interaction).await?;
    Ok(Json(interaction_json(&state.public_url, &i, None)))
}

pub(crate) async fn delete_interaction(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session, interaction)): Seg<(String, String, String)>,
) -> Result<StatusCode, AppError> {
    let s = find_session(&state, &ctx, &service, &session).await?;
    let i = find_interaction(&state, &ctx, &s, &interaction).await?;
    if !state
        .store
        .delete_proxy_interaction(&ctx.account, &s.sid, &i.sid)
        .await?
    {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a message to the participant from its proxy number (Twilio's MessageInteraction).
pub(crate) async fn create_message_interaction(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session, participant)): Seg<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let p = Params::from_body(body)?;
    let (s, to) = find_participant(&state, &ctx, &service, &session, &participant).await?;
    if p.get_all("MediaUrl").next().is_some() {
        return Err(AppError::bad(
            21621,
            "MediaUrl is not available: this server sends no MMS",
        ));
    }
    let text = p
        .get("Body")
        .filter(|b| !b.is_empty())
        .ok_or_else(|| AppError::bad(21602, "Message body is required"))?;
    if text.chars().count() > 1600 {
        return Err(AppError::bad(
            21617,
            "The concatenated message body exceeds the 1600 character limit",
        ));
    }
    if !s.is_open() {
        return Err(AppError::bad(
            20001,
            format!(
                "Session {} is {}: messages go through open sessions only",
                s.sid, s.status
            ),
        ));
    }
    if s.mode == "voice-only" {
        return Err(AppError::bad(
            20001,
            format!("Session {} is voice-only", s.sid),
        ));
    }
    let now = Utc::now();
    let segments = smpp::count_segments(text).segments;
    let message = MessageRecord::new(
        ctx.account,
        to.proxy_identifier.clone(),
        to.identifier.clone(),
        text.to_owned(),
        MessageStatus::Queued,
        MessageDirection::OutboundApi,
        u32::try_from(segments).unwrap_or(u32::MAX),
        now,
    );
    state.hooks.create_message(&state.store, &message).await?;
    let rec = ProxyInteractionRecord {
        sid: ProxyInteractionSid::generate(),
        account_sid: ctx.account,
        service_sid: s.service_sid,
        session_sid: s.sid,
        kind: "message".into(),
        data: Some(json!({ "body": text }).to_string()),
        participant_sid: Some(to.sid),
        inbound_participant_sid: None,
        inbound_resource_sid: None,
        inbound_resource_status: None,
        outbound_participant_sid: Some(to.sid),
        outbound_resource_sid: Some(message.sid.to_string()),
        outbound_resource_status: Some(message.status.as_str().replace('_', "-")),
        date_created: now,
        date_updated: now,
    };
    state.store.create_proxy_interaction(&rec).await?;
    state
        .store
        .touch_proxy_session(&ctx.account, &s.sid, now)
        .await?;
    changed(&state, s.account_sid, s.service_sid, Some(s.sid)).await;
    Ok((
        StatusCode::CREATED,
        Json(interaction_json(&state.public_url, &rec, Some(&to.sid))),
    ))
}

pub(crate) async fn list_message_interactions(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session, participant)): Seg<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let (s, p) = find_participant(&state, &ctx, &service, &session, &participant).await?;
    let page = state
        .store
        .list_proxy_interactions(&ctx.account, &s.sid, Some(&p.sid), &paging.request)
        .await?;
    Ok(Json(v1_page(
        &state,
        "interactions",
        &ctx,
        &paging,
        page,
        |i| interaction_json(&state.public_url, i, Some(&p.sid)),
    )))
}

pub(crate) async fn fetch_message_interaction(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((service, session, participant, interaction)): Seg<(String, String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let (s, p) = find_participant(&state, &ctx, &service, &session, &participant).await?;
    let i = find_interaction(&state, &ctx, &s, &interaction).await?;
    if i.participant_sid != Some(p.sid) {
        return Err(ctx.not_found());
    }
    Ok(Json(interaction_json(&state.public_url, &i, Some(&p.sid))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participants_of_a_create_are_json_objects() {
        let p = participant_param(r#"{"Identifier": "+14155550100", "FriendlyName": "Alice", "ProxyIdentifier": "+15550001"}"#).unwrap();
        assert_eq!(
            (
                p.identifier.as_str(),
                p.friendly_name.as_deref(),
                p.proxy_identifier.as_deref()
            ),
            ("+14155550100", Some("Alice"), Some("+15550001"))
        );
        for bad in [
            "",
            "{}",
            "[1]",
            "+14155550100",
            r#"{"Identifier": 5}"#,
            r#"{"Identifier": ""}"#,
        ] {
            assert!(participant_param(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_are_iso_8601_in_utc() {
        let t = DateTime::from_timestamp(1_438_286_400, 0).unwrap();
        assert_eq!(iso(t), "2015-07-30T20:00:00Z");
        assert_eq!(
            date_time_param("DateExpiry", "2015-07-30T22:00:00+02:00").unwrap(),
            t
        );
        assert!(date_time_param("DateExpiry", "tomorrow").is_err());
    }

    #[test]
    fn pool_refusals_carry_twilio_codes() {
        let code = |e: ProxyError| match refused(StoreError::Proxy(e)) {
            AppError::BadRequest { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(ProxyError::PoolExhausted("+1".into())), 80604);
        assert_eq!(
            code(ProxyError::PairInUse {
                identifier: "+1".into(),
                proxy: "+2".into()
            }),
            80604
        );
        assert_eq!(code(ProxyError::NotInPool("+2".into())), 80402);
    }

    mod router {
        use std::sync::{Arc, Mutex};

        use axum::body::Body;
        use axum::http::{header, Method, Request, StatusCode};
        use base64::Engine;
        use http_body_util::BodyExt;
        use serde_json::Value;
        use tower::ServiceExt;

        use crate::{router, ApiHooks, ApiState, BoxFuture, ProxyChange};
        use model::AccountSid;

        const TOKEN: &str = "0123456789abcdef0123456789abcdef";

        #[derive(Default)]
        struct Changes(Mutex<Vec<ProxyChange>>);

        impl ApiHooks for Changes {
            fn proxy_changed(&self, change: ProxyChange) -> BoxFuture<'_, ()> {
                self.0.lock().unwrap().push(change);
                Box::pin(async {})
            }
        }

        async fn call(
            state: &ApiState,
            account: &AccountSid,
            method: Method,
            uri: &str,
            form: Option<&str>,
        ) -> (StatusCode, Value) {
            let auth =
                base64::engine::general_purpose::STANDARD.encode(format!("{account}:{TOKEN}"));
            let mut req = Request::builder()
                .method(method)
                .uri(uri)
                .header(header::AUTHORIZATION, format!("Basic {auth}"));
            let body = match form {
                Some(f) => {
                    req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                    Body::from(f.to_owned())
                }
                None => Body::empty(),
            };
            let resp = router(state.clone())
                .oneshot(req.body(body).unwrap())
                .await
                .unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (
                status,
                if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                },
            )
        }

        #[tokio::test]
        async fn services_are_the_credentials_accounts_and_writes_reach_the_runtime() {
            let dir = std::env::temp_dir()
                .join(format!("dialtone-api-proxy-{}", model::CallSid::generate()));
            let store = ::store::testing::open_fresh(&dir.join("db")).await.unwrap();
            let (a, b) = (AccountSid::generate(), AccountSid::generate());
            store.ensure_account(&a, TOKEN, "A").await.unwrap();
            store.ensure_account(&b, TOKEN, "B").await.unwrap();
            let hooks = Arc::new(Changes::default());
            let state = ApiState {
                store,
                public_url: "https://voice.example.com/".into(),
                recordings_dir: dir.join("rec"),
                hooks: hooks.clone(),
            };
            let mut made = Vec::new();
            for name in ["one", "two", "three"] {
                let (status, svc) = call(
                    &state,
                    &a,
                    Method::POST,
                    "/v1/Services",
                    Some(&format!("UniqueName={name}&DefaultTtl=60")),
                )
                .await;
                assert_eq!(status, StatusCode::CREATED, "{svc}");
                assert_eq!(
                    svc["url"],
                    format!(
                        "https://voice.example.com/v1/Services/{}",
                        svc["sid"].as_str().unwrap()
                    )
                );
                made.push(svc["sid"].as_str().unwrap().to_owned());
            }
            assert_eq!(hooks.0.lock().unwrap().len(), 3);
            let (status, dup) = call(
                &state,
                &a,
                Method::POST,
                "/v1/Services",
                Some("UniqueName=one"),
            )
            .await;
            assert_eq!(
                (status, dup["code"].as_u64()),
                (StatusCode::BAD_REQUEST, Some(20001)),
                "{dup}"
            );
            // Another account sees none of them.
            let (status, _) = call(
                &state,
                &b,
                Method::GET,
                &format!("/v1/Services/{}", made[0]),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (_, theirs) = call(&state, &b, Method::GET, "/v1/Services", None).await;
            assert_eq!(theirs["services"].as_array().unwrap().len(), 0);
            // Pages in the v1 envelope, with absolute URLs to follow.
            let (_, page) = call(&state, &a, Method::GET, "/v1/Services?PageSize=2", None).await;
            assert_eq!(
                (
                    page["meta"]["key"].as_str(),
                    page["services"].as_array().unwrap().len()
                ),
                (Some("services"), 2)
            );
            let next = page["meta"]["next_page_url"].as_str().unwrap();
            let rest = next.strip_prefix("https://voice.example.com").unwrap();
            let (_, page2) = call(&state, &a, Method::GET, rest, None).await;
            assert_eq!(page2["services"].as_array().unwrap().len(), 1);
            assert!(page2["meta"]["next_page_url"].is_null());
            // A session of a foreign service is a 404; junk SIDs too.
            let (status, _) = call(
                &state,
                &b,
                Method::POST,
                &format!("/v1/Services/{}/Sessions", made[0]),
                Some(""),
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (status, _) = call(
                &state,
                &a,
                Method::GET,
                "/v1/Services/KSnothex/Sessions",
                None,
            )
            .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            let (status, s) = call(
                &state,
                &a,
                Method::POST,
                &format!("/v1/Services/{}/Sessions", made[0]),
                Some("Ttl=30&Mode=voice-only"),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{s}");
            assert_eq!(
                (s["ttl"].as_u64(), s["mode"].as_str(), s["status"].as_str()),
                (Some(30), Some("voice-only"), Some("open"))
            );
            assert!(
                s["date_expiry"].as_str().is_some(),
                "an open session with a TTL shows when it expires: {s}"
            );
            let last = *hooks.0.lock().unwrap().last().unwrap();
            assert_eq!(
                (last.account, last.session.map(|x| x.to_string())),
                (a, s["sid"].as_str().map(str::to_owned))
            );
            let (status, bad) = call(
                &state,
                &a,
                Method::POST,
                &format!("/v1/Services/{}/Sessions", made[0]),
                Some("DateExpiry=tomorrow"),
            )
            .await;
            assert_eq!(
                (status, bad["code"].as_u64()),
                (StatusCode::BAD_REQUEST, Some(20001))
            );
            let (status, _) = call(
                &state,
                &a,
                Method::DELETE,
                &format!("/v1/Services/{}", made[0]),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::NO_CONTENT);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
