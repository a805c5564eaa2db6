//! SIP users (`/Accounts/{AccountSid}/SIP/...`), in Twilio's shape: Domains, CredentialLists
//! and their Credentials (the password is write-only: it is checked, turned into digests and
//! never returned), and a domain's registration CredentialListMappings.
//!
//! The routes are entries of `crate::routes::OPERATIONS`, like every other resource's, so they
//! are documented and guarded the same way.
//!
//! `GET /Accounts/{AccountSid}/SIP/Registrations.json` is a Dialtone extension (Twilio has no
//! such list): every username of the account's credential lists with its live contacts and its
//! presence, `available`, `busy` (a queued, ringing or in-progress call to or from
//! `client:USER`) or `offline` (no live registration).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use model::{AccountSid, CredentialListSid, CredentialSid, SipDomainSid};
use serde_json::{json, Value};
use store::sip::{CredentialListMapping, CredentialListRecord, CredentialRecord, SipDomainRecord, SipUserState};

use crate::auth::Ctx;
use crate::numbers::{friendly_name_param, method_param, url_param};
use crate::params::{envelope, Paging, Params, Seg};
use crate::render::{account_base, rfc2822, API_VERSION};
use crate::{ApiState, AppError};

fn sid_json<T: std::str::FromStr>(ctx: &Ctx, segment: &str) -> Result<T, AppError> {
    segment.strip_suffix(".json").and_then(|s| s.parse().ok()).ok_or_else(|| ctx.not_found())
}

fn sid_plain<T: std::str::FromStr>(ctx: &Ctx, segment: &str) -> Result<T, AppError> {
    segment.parse().ok().ok_or_else(|| ctx.not_found())
}

/// Twilio's rules for a SIP credential password: at least 12 characters, an upper-case letter,
/// a lower-case letter and a digit.
pub(crate) fn password_param(value: &str) -> Result<String, AppError> {
    let strong = value.chars().count() >= 12
        && value.chars().count() < 256
        && value.chars().any(|c| c.is_ascii_uppercase())
        && value.chars().any(|c| c.is_ascii_lowercase())
        && value.chars().any(|c| c.is_ascii_digit());
    if !strong {
        return Err(AppError::bad(
            20001,
            "Password must be 12 to 255 characters with at least one upper-case letter, one lower-case letter and one digit",
        ));
    }
    Ok(value.to_owned())
}

/// A SIP username: the characters RFC 3261 allows unescaped in a user part, 1 to 255 of them.
pub(crate) fn username_param(value: &str) -> Result<String, AppError> {
    if value.is_empty() || value.len() > 255 {
        return Err(AppError::bad(21221, "Username must be 1 to 255 characters"));
    }
    let ok = value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b));
    if !ok {
        return Err(AppError::bad(21222, "Username contains characters not allowed in SIP"));
    }
    Ok(value.to_owned())
}

/// A host name: letters, digits, dots and hyphens.
fn domain_name_param(value: &str) -> Result<String, AppError> {
    let v = value.to_ascii_lowercase();
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !ok {
        return Err(AppError::bad(20001, format!("Invalid DomainName {value:?}")));
    }
    Ok(v)
}

// --- Rendering ----------------------------------------------------------------------------------

fn sip_base(account: &str) -> String {
    format!("{}/SIP", account_base(account))
}

pub(crate) fn domain_json(d: &SipDomainRecord) -> Value {
    let base = format!("{}/Domains/{}", sip_base(d.account_sid.as_str()), d.sid);
    json!({
        "account_sid": d.account_sid,
        "api_version": API_VERSION,
        "auth_type": "CREDENTIAL_LIST",
        "date_created": rfc2822(d.date_created),
        "date_updated": rfc2822(d.date_updated),
        "domain_name": d.domain_name,
        "friendly_name": d.friendly_name,
        "sid": d.sid,
        "sip_registration": d.sip_registration,
        "subresource_uris": {
            "credential_list_mappings": format!("{base}/CredentialListMappings.json"),
            "auth": format!("{base}/Auth.json"),
        },
        "uri": format!("{base}.json"),
        "voice_fallback_method": d.voice_fallback_method,
        "voice_fallback_url": d.voice_fallback_url,
        "voice_method": d.voice_method,
        "voice_status_callback_method": d.voice_status_callback_method,
        "voice_status_callback_url": d.voice_status_callback_url,
        "voice_url": d.voice_url,
        "emergency_calling_enabled": false,
        "secure": false,
        "byoc_trunk_sid": null,
        "emergency_caller_sid": null,
    })
}

pub(crate) fn list_json(l: &CredentialListRecord) -> Value {
    let base = format!("{}/CredentialLists/{}", sip_base(l.account_sid.as_str()), l.sid);
    json!({
        "account_sid": l.account_sid,
        "date_created": rfc2822(l.date_created),
        "date_updated": rfc2822(l.date_updated),
        "friendly_name": l.friendly_name,
        "sid": l.sid,
        "subresource_uris": { "credentials": format!("{base}/Credentials.json") },
        "uri": format!("{base}.json"),
    })
}

pub(crate) fn credential_json(c: &CredentialRecord) -> Value {
    json!({
        "account_sid": c.account_sid,
        "credential_list_sid": c.credential_list_sid,
        "date_created": rfc2822(c.date_created),
        "date_updated": rfc2822(c.date_updated),
        "sid": c.sid,
        "uri": format!("{}/CredentialLists/{}/Credentials/{}.json", sip_base(c.account_sid.as_str()), c.credential_list_sid, c.sid),
        "username": c.username,
    })
}

pub(crate) fn mapping_json(m: &CredentialListMapping) -> Value {
    json!({
        "account_sid": m.account_sid,
        "date_created": rfc2822(m.date_created),
        "date_updated": rfc2822(m.date_created),
        "friendly_name": m.friendly_name,
        "sid": m.credential_list_sid,
        "uri": format!(
            "{}/Domains/{}/Auth/Registrations/CredentialListMappings/{}.json",
            sip_base(m.account_sid.as_str()),
            m.domain_sid,
            m.credential_list_sid
        ),
    })
}

/// A list that is not paged in the store (mappings, registrations): Twilio's envelope, one page.
pub(crate) fn single_page(key: &str, path: &str, items: Vec<Value>) -> Value {
    let n = items.len() as u64;
    json!({
        key: items,
        "end": n.saturating_sub(1),
        "first_page_uri": format!("{path}?PageSize=1000&Page=0"),
        "next_page_uri": null,
        "page": 0,
        "page_size": 1000,
        "previous_page_uri": null,
        "start": 0,
        "uri": format!("{path}?PageSize=1000&Page=0"),
    })
}

// --- Domains ------------------------------------------------------------------------------------

fn apply_domain(d: &mut SipDomainRecord, p: &Params) -> Result<(), AppError> {
    if let Some(v) = p.get("FriendlyName") {
        d.friendly_name = friendly_name_param(v)?;
    }
    let urls: [(&str, &mut Option<String>); 3] = [
        ("VoiceUrl", &mut d.voice_url),
        ("VoiceFallbackUrl", &mut d.voice_fallback_url),
        ("VoiceStatusCallbackUrl", &mut d.voice_status_callback_url),
    ];
    for (name, field) in urls {
        if let Some(v) = p.get(name) {
            *field = url_param(name, v)?;
        }
    }
    let methods: [(&str, &mut String); 3] = [
        ("VoiceMethod", &mut d.voice_method),
        ("VoiceFallbackMethod", &mut d.voice_fallback_method),
        ("VoiceStatusCallbackMethod", &mut d.voice_status_callback_method),
    ];
    for (name, field) in methods {
        if let Some(v) = p.get(name) {
            *field = method_param(name, v)?;
        }
    }
    if let Some(v) = p.get("SipRegistration") {
        d.sip_registration = match v.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(AppError::bad(20001, "SipRegistration must be true or false")),
        };
    }
    Ok(())
}

pub(crate) async fn create_domain(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let name = p.get("DomainName").ok_or_else(|| AppError::bad(21201, "Missing required parameter DomainName"))?;
    let now = Utc::now();
    let mut d = SipDomainRecord {
        sid: SipDomainSid::generate(),
        account_sid: account,
        domain_name: domain_name_param(name)?,
        friendly_name: String::new(),
        voice_url: None,
        voice_method: "POST".into(),
        voice_fallback_url: None,
        voice_fallback_method: "POST".into(),
        voice_status_callback_url: None,
        voice_status_callback_method: "POST".into(),
        sip_registration: true,
        date_created: now,
        date_updated: now,
    };
    apply_domain(&mut d, &p)?;
    if !state.store.create_sip_domain(&d).await? {
        return Err(AppError::bad(20001, format!("The domain name {} is already in use", d.domain_name)));
    }
    Ok((StatusCode::CREATED, Json(domain_json(&d))))
}

pub(crate) async fn list_domains(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state.store.list_sip_domains(&account, &paging.request).await?;
    Ok(Json(envelope("domains", &ctx.path, &[], &paging, page, domain_json)))
}

pub(crate) async fn fetch_domain(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, domain)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: SipDomainSid = sid_json(&ctx, &domain)?;
    let d = state.store.sip_domain(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(domain_json(&d)))
}

pub(crate) async fn update_domain(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, domain)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: SipDomainSid = sid_json(&ctx, &domain)?;
    let p = Params::from_body(body)?;
    let mut d = state.store.sip_domain(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    apply_domain(&mut d, &p)?;
    d.date_updated = Utc::now();
    if !state.store.update_sip_domain(&d).await? {
        return Err(ctx.not_found());
    }
    Ok(Json(domain_json(&d)))
}

pub(crate) async fn delete_domain(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, domain)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: SipDomainSid = sid_json(&ctx, &domain)?;
    if !state.store.delete_sip_domain(&account, &sid).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

// --- Registration mappings -----------------------------------------------------------------------

pub(crate) async fn list_mappings(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, domain)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: SipDomainSid = sid_plain(&ctx, &domain)?;
    state.store.sip_domain(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    let items = state.store.registration_mappings(&account, &sid).await?.iter().map(mapping_json).collect();
    Ok(Json(single_page("contents", &ctx.path, items)))
}

pub(crate) async fn create_mapping(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, domain)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: SipDomainSid = sid_plain(&ctx, &domain)?;
    state.store.sip_domain(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    let p = Params::from_body(body)?;
    let list: CredentialListSid = p
        .get("CredentialListSid")
        .ok_or_else(|| AppError::bad(21201, "Missing required parameter CredentialListSid"))?
        .parse()
        .map_err(|_| AppError::bad(20001, "Invalid CredentialListSid"))?;
    // A list of another account is "not found" as far as this account can tell.
    if !state.store.create_registration_mapping(&account, &sid, &list, Utc::now()).await? {
        return match state.store.credential_list(&account, &list).await? {
            Some(_) => Err(AppError::bad(20001, "The credential list is already mapped")),
            None => Err(AppError::bad(20404, format!("Credential list {list} was not found"))),
        };
    }
    let m = state
        .store
        .registration_mappings(&account, &sid)
        .await?
        .into_iter()
        .find(|m| m.credential_list_sid == list)
        .ok_or_else(|| ctx.not_found())?;
    Ok((StatusCode::CREATED, Json(mapping_json(&m))))
}

pub(crate) async fn fetch_mapping(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, domain, list)): Seg<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: SipDomainSid = sid_plain(&ctx, &domain)?;
    let list: CredentialListSid = sid_json(&ctx, &list)?;
    let m = state
        .store
        .registration_mappings(&account, &sid)
        .await?
        .into_iter()
        .find(|m| m.credential_list_sid == list)
        .ok_or_else(|| ctx.not_found())?;
    Ok(Json(mapping_json(&m)))
}

pub(crate) async fn delete_mapping(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, domain, list)): Seg<(String, String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: SipDomainSid = sid_plain(&ctx, &domain)?;
    let list: CredentialListSid = sid_json(&ctx, &list)?;
    if !state.store.delete_registration_mapping(&account, &sid, &list).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

// --- Credential lists ----------------------------------------------------------------------------

pub(crate) async fn create_list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let name = p.get("FriendlyName").ok_or_else(|| AppError::bad(21201, "Missing required parameter FriendlyName"))?;
    let now = Utc::now();
    let l = CredentialListRecord {
        sid: CredentialListSid::generate(),
        account_sid: account,
        friendly_name: friendly_name_param(name)?,
        date_created: now,
        date_updated: now,
    };
    state.store.create_credential_list(&l).await?;
    Ok((StatusCode::CREATED, Json(list_json(&l))))
}

pub(crate) async fn list_lists(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state.store.list_credential_lists(&account, &paging.request).await?;
    Ok(Json(envelope("credential_lists", &ctx.path, &[], &paging, page, list_json)))
}

pub(crate) async fn fetch_list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: CredentialListSid = sid_json(&ctx, &list)?;
    let l = state.store.credential_list(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(list_json(&l)))
}

pub(crate) async fn update_list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: CredentialListSid = sid_json(&ctx, &list)?;
    let p = Params::from_body(body)?;
    let mut l = state.store.credential_list(&account, &sid).await?.ok_or_else(|| ctx.not_found())?;
    if let Some(v) = p.get("FriendlyName") {
        l.friendly_name = friendly_name_param(v)?;
    }
    l.date_updated = Utc::now();
    if !state.store.update_credential_list(&l).await? {
        return Err(ctx.not_found());
    }
    Ok(Json(list_json(&l)))
}

pub(crate) async fn delete_list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: CredentialListSid = sid_json(&ctx, &list)?;
    if !state.store.delete_credential_list(&account, &sid).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

// --- Credentials ---------------------------------------------------------------------------------

pub(crate) async fn create_credential(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let list: CredentialListSid = sid_plain(&ctx, &list)?;
    state.store.credential_list(&account, &list).await?.ok_or_else(|| ctx.not_found())?;
    let p = Params::from_body(body)?;
    let username = username_param(
        p.get("Username").ok_or_else(|| AppError::bad(21201, "Missing required parameter Username"))?,
    )?;
    let password = password_param(
        p.get("Password").ok_or_else(|| AppError::bad(21201, "Missing required parameter Password"))?,
    )?;
    let now = Utc::now();
    let c = CredentialRecord {
        sid: CredentialSid::generate(),
        account_sid: account,
        credential_list_sid: list,
        username,
        date_created: now,
        date_updated: now,
    };
    if !state.store.create_credential(&c, &password).await? {
        return Err(AppError::bad(20001, format!("The username {} is already in this credential list", c.username)));
    }
    Ok((StatusCode::CREATED, Json(credential_json(&c))))
}

pub(crate) async fn list_credentials(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let list: CredentialListSid = sid_plain(&ctx, &list)?;
    state.store.credential_list(&account, &list).await?.ok_or_else(|| ctx.not_found())?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let page = state.store.list_credentials(&account, &list, &paging.request).await?;
    Ok(Json(envelope("credentials", &ctx.path, &[], &paging, page, credential_json)))
}

pub(crate) async fn fetch_credential(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list, credential)): Seg<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let list: CredentialListSid = sid_plain(&ctx, &list)?;
    let sid: CredentialSid = sid_json(&ctx, &credential)?;
    let c = state.store.credential(&account, &list, &sid).await?.ok_or_else(|| ctx.not_found())?;
    Ok(Json(credential_json(&c)))
}

pub(crate) async fn update_credential(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list, credential)): Seg<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let list: CredentialListSid = sid_plain(&ctx, &list)?;
    let sid: CredentialSid = sid_json(&ctx, &credential)?;
    let p = Params::from_body(body)?;
    let mut c = state.store.credential(&account, &list, &sid).await?.ok_or_else(|| ctx.not_found())?;
    if let Some(v) = p.get("Password") {
        let password = password_param(v)?;
        c.date_updated = Utc::now();
        if !state.store.update_credential_password(&c, &password).await? {
            return Err(ctx.not_found());
        }
    }
    Ok(Json(credential_json(&c)))
}

pub(crate) async fn delete_credential(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, list, credential)): Seg<(String, String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let list: CredentialListSid = sid_plain(&ctx, &list)?;
    let sid: CredentialSid = sid_json(&ctx, &credential)?;
    if !state.store.delete_credential(&account, &list, &sid).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

// --- Registrations (Dialtone extension) ----------------------------------------------------------

/// One user with its live contacts and its presence at `now`.
pub(crate) fn registration_json(account: &AccountSid, u: &SipUserState, now: DateTime<Utc>) -> Value {
    let presence = if u.bindings.is_empty() {
        "offline"
    } else if u.in_call {
        "busy"
    } else if u.bindings.iter().all(|b| b.presence == "away") {
        "away"
    } else {
        "available"
    };
    let contacts: Vec<Value> = u
        .bindings
        .iter()
        .map(|b| {
            json!({
                "contact": b.contact,
                "source": b.source,
                "transport": b.transport,
                "expires": (b.expires_at - now).num_seconds().max(0),
                "date_expires": rfc2822(b.expires_at),
            })
        })
        .collect();
    json!({
        "account_sid": account,
        "username": u.username,
        "presence": presence,
        "contacts": contacts,
    })
}

pub(crate) async fn registrations(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let now = Utc::now();
    let users = state.store.sip_users(&account, now).await?;
    let items = users.iter().map(|u| registration_json(&account, u, now)).collect();
    Ok(Json(single_page("registrations", &ctx.path, items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_follow_twilios_rules() {
        assert!(password_param("Correct-Horse-9").is_ok());
        for weak in ["short1A", "alllowercase123", "ALLUPPERCASE123", "NoDigitsAtAllHere", ""] {
            assert!(password_param(weak).is_err(), "{weak}");
        }
    }

    #[test]
    fn usernames_and_domains_are_checked() {
        assert!(username_param("alice.smith-2").is_ok());
        for bad in ["", "al ice", "al@ice", "al:ice", "<x>"] {
            assert!(username_param(bad).is_err(), "{bad}");
        }
        assert_eq!(domain_name_param("Acme.SIP.example").unwrap(), "acme.sip.example");
        for bad in ["", "a..b", "a b", "x/y", ".a"] {
            assert!(domain_name_param(bad).is_err(), "{bad}");
        }
    }

    mod http {
        use std::sync::Arc;

        use axum::body::Body;
        use axum::http::{header, Method, Request, StatusCode};
        use base64::Engine;
        use http_body_util::BodyExt;
        use model::{AccountSid, CallDirection, CallRecord, CallSid, CallStatus};
        use serde_json::Value;
        use store::sip::SipRegistrationRow;
        use tower::ServiceExt;

        use crate::{router, ApiState, NoHooks};

        const TOKEN: &str = "0123456789abcdef0123456789abcdef";

        struct Fx {
            dir: std::path::PathBuf,
            state: ApiState,
            main: AccountSid,
        }

        impl Drop for Fx {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
        }

        async fn fx() -> Fx {
            let dir = std::env::temp_dir().join(format!("dialtone-api-sip-{}", CallSid::generate()));
            let store = store::testing::open_fresh(&dir.join("db")).await.unwrap();
            let main = AccountSid::generate();
            store.ensure_account(&main, TOKEN, "Main").await.unwrap();
            let state =
                ApiState { store, public_url: "https://voice.example.com".into(), recordings_dir: dir.clone(), hooks: Arc::new(NoHooks) };
            Fx { dir, state, main }
        }

        type Cred = (String, String);

        impl Fx {
            fn main_cred(&self) -> Cred {
                (self.main.to_string(), TOKEN.into())
            }

            async fn req(&self, cred: &Cred, method: Method, path: &str, form: Option<&str>) -> (StatusCode, Value) {
                let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", cred.0, cred.1));
                let mut req = Request::builder().method(method).uri(path).header(header::AUTHORIZATION, format!("Basic {auth}"));
                let body = match form {
                    Some(f) => {
                        req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
                        Body::from(f.to_owned())
                    }
                    None => Body::empty(),
                };
                let resp = router(self.state.clone()).oneshot(req.body(body).unwrap()).await.unwrap();
                let status = resp.status();
                let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
            }

            async fn child(&self) -> (AccountSid, Cred) {
                let (s, b) = self.req(&self.main_cred(), Method::POST, "/2010-04-01/Accounts.json", Some("FriendlyName=kid")).await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
                let sid: AccountSid = b["sid"].as_str().unwrap().parse().unwrap();
                (sid, (sid.to_string(), b["auth_token"].as_str().unwrap().to_owned()))
            }
        }

        fn sip(account: &AccountSid, tail: &str) -> String {
            format!("/2010-04-01/Accounts/{account}/SIP{tail}")
        }

        #[tokio::test]
        async fn credentials_are_write_only_and_tenant_scoped() {
            let f = fx().await;
            let main = f.main_cred();
            let (s, list) = f.req(&main, Method::POST, &sip(&f.main, "/CredentialLists.json"), Some("FriendlyName=agents")).await;
            assert_eq!(s, StatusCode::CREATED, "{list}");
            let cl = list["sid"].as_str().unwrap().to_owned();
            assert!(cl.starts_with("CL"));
            let creds = sip(&f.main, &format!("/CredentialLists/{cl}/Credentials.json"));
            let (s, weak) = f.req(&main, Method::POST, &creds, Some("Username=alice&Password=short")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{weak}");
            let (s, cred) = f.req(&main, Method::POST, &creds, Some("Username=alice&Password=Correct-Horse-9")).await;
            assert_eq!(s, StatusCode::CREATED, "{cred}");
            assert_eq!(cred["username"], "alice");
            assert!(cred["sid"].as_str().unwrap().starts_with("CR"));
            assert!(!cred.to_string().contains("Correct-Horse"), "{cred}");
            assert!(cred.get("password").is_none());
            let (s, _) = f.req(&main, Method::POST, &creds, Some("Username=alice&Password=Correct-Horse-9")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "duplicate username");
            let (s, page) = f.req(&main, Method::GET, &creds, None).await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(page["credentials"].as_array().unwrap().len(), 1);
            assert!(!page.to_string().contains("Correct-Horse"));
            let cr = cred["sid"].as_str().unwrap();
            let one = sip(&f.main, &format!("/CredentialLists/{cl}/Credentials/{cr}.json"));
            let (s, _) = f.req(&main, Method::POST, &one, Some("Password=Another-Secret-7")).await;
            assert_eq!(s, StatusCode::OK);

            // A subaccount's list is readable by its parent, never the reverse; siblings see 404.
            let (kid, kid_cred) = f.child().await;
            let (sib, sib_cred) = f.child().await;
            let (s, kid_list) =
                f.req(&kid_cred, Method::POST, &sip(&kid, "/CredentialLists.json"), Some("FriendlyName=kids")).await;
            assert_eq!(s, StatusCode::CREATED);
            let kid_path = sip(&kid, &format!("/CredentialLists/{}.json", kid_list["sid"].as_str().unwrap()));
            assert_eq!(f.req(&main, Method::GET, &kid_path, None).await.0, StatusCode::OK);
            assert_eq!(f.req(&sib_cred, Method::GET, &kid_path, None).await.0, StatusCode::NOT_FOUND);
            let main_path = sip(&f.main, &format!("/CredentialLists/{cl}.json"));
            assert_eq!(f.req(&kid_cred, Method::GET, &main_path, None).await.0, StatusCode::NOT_FOUND);
            // The list SID under another account's path is not found either.
            let wrong = sip(&sib, &format!("/CredentialLists/{cl}.json"));
            assert_eq!(f.req(&sib_cred, Method::GET, &wrong, None).await.0, StatusCode::NOT_FOUND);
            assert_eq!(f.req(&kid_cred, Method::DELETE, &main_path, None).await.0, StatusCode::NOT_FOUND);
            assert_eq!(f.req(&main, Method::DELETE, &one, None).await.0, StatusCode::NO_CONTENT);
            assert_eq!(f.req(&main, Method::DELETE, &main_path, None).await.0, StatusCode::NO_CONTENT);
            assert_eq!(f.req(&main, Method::GET, &main_path, None).await.0, StatusCode::NOT_FOUND);
        }

        #[tokio::test]
        async fn domains_and_registration_mappings() {
            let f = fx().await;
            let main = f.main_cred();
            let (s, d) = f
                .req(&main, Method::POST, &sip(&f.main, "/Domains.json"), Some("DomainName=Acme.sip.example&FriendlyName=Acme"))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{d}");
            assert_eq!(d["domain_name"], "acme.sip.example");
            assert_eq!(d["sip_registration"], true);
            let sd = d["sid"].as_str().unwrap().to_owned();
            let (kid, kid_cred) = f.child().await;
            let (s, _) = f.req(&kid_cred, Method::POST, &sip(&kid, "/Domains.json"), Some("DomainName=acme.sip.example")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "domain names are unique");
            let (_, list) = f.req(&main, Method::POST, &sip(&f.main, "/CredentialLists.json"), Some("FriendlyName=agents")).await;
            let cl = list["sid"].as_str().unwrap().to_owned();
            let (_, kid_list) = f.req(&kid_cred, Method::POST, &sip(&kid, "/CredentialLists.json"), Some("FriendlyName=k")).await;
            let maps = sip(&f.main, &format!("/Domains/{sd}/Auth/Registrations/CredentialListMappings.json"));
            let (s, m) = f.req(&main, Method::POST, &maps, Some(&format!("CredentialListSid={cl}"))).await;
            assert_eq!(s, StatusCode::CREATED, "{m}");
            assert_eq!(m["sid"], cl.as_str());
            let other = format!("CredentialListSid={}", kid_list["sid"].as_str().unwrap());
            assert_eq!(f.req(&main, Method::POST, &maps, Some(&other)).await.0, StatusCode::BAD_REQUEST);
            let (_, page) = f.req(&main, Method::GET, &maps, None).await;
            assert_eq!(page["contents"].as_array().unwrap().len(), 1);
            let kid_maps = sip(&kid, &format!("/Domains/{sd}/Auth/Registrations/CredentialListMappings.json"));
            assert_eq!(f.req(&kid_cred, Method::GET, &kid_maps, None).await.0, StatusCode::NOT_FOUND);
            let one = sip(&f.main, &format!("/Domains/{sd}/Auth/Registrations/CredentialListMappings/{cl}.json"));
            assert_eq!(f.req(&main, Method::GET, &one, None).await.0, StatusCode::OK);
            assert_eq!(f.req(&main, Method::DELETE, &one, None).await.0, StatusCode::NO_CONTENT);
            let dpath = sip(&f.main, &format!("/Domains/{sd}.json"));
            let (s, d) = f.req(&main, Method::POST, &dpath, Some("SipRegistration=false")).await;
            assert_eq!((s, &d["sip_registration"]), (StatusCode::OK, &Value::Bool(false)));
            assert_eq!(f.req(&main, Method::DELETE, &dpath, None).await.0, StatusCode::NO_CONTENT);
        }

        #[tokio::test]
        async fn the_route_table_guards_sip_routes() {
            let f = fx().await;
            let main = f.main_cred();
            let domains = sip(&f.main, "/Domains.json");
            let (s, e) = f.req(&main, Method::POST, &domains, Some("DomainName=a.example&Bogus=1")).await;
            assert_eq!((s, &e["code"]), (StatusCode::BAD_REQUEST, &Value::from(20001)), "{e}");
            assert!(e["message"].as_str().unwrap().contains("Bogus"), "{e}");
            // Twilio's own parameters are accepted and not acted on.
            let (s, d) =
                f.req(&main, Method::POST, &domains, Some("DomainName=a.example&Secure=true&ByocTrunkSid=BY1")).await;
            assert_eq!(s, StatusCode::CREATED, "{d}");
            assert_eq!(d["secure"], false);
            let one = sip(&f.main, &format!("/Domains/{}.json", d["sid"].as_str().unwrap()));
            let (s, d) = f.req(&main, Method::POST, &one, Some("DomainName=b.example&FriendlyName=A")).await;
            assert_eq!((s, &d["domain_name"], &d["friendly_name"]), (StatusCode::OK, &Value::from("a.example"), &Value::from("A")));
            // The single-page lists take the paging names their own page URIs carry, nothing else.
            let regs = sip(&f.main, "/Registrations.json");
            let (s, page) = f.req(&main, Method::GET, &regs, None).await;
            assert_eq!(s, StatusCode::OK);
            let first = page["first_page_uri"].as_str().unwrap();
            assert_eq!(f.req(&main, Method::GET, first, None).await.0, StatusCode::OK);
            assert_eq!(f.req(&main, Method::GET, &format!("{regs}?Presence=busy"), None).await.0, StatusCode::BAD_REQUEST);
            let (s, _) = f.req(&main, Method::POST, &sip(&f.main, "/CredentialLists.json"), Some("FriendlyName=x&Username=y")).await;
            assert_eq!(s, StatusCode::BAD_REQUEST);
        }

        #[tokio::test]
        async fn registrations_show_presence() {
            let f = fx().await;
            let main = f.main_cred();
            let (_, list) = f.req(&main, Method::POST, &sip(&f.main, "/CredentialLists.json"), Some("FriendlyName=agents")).await;
            let creds = sip(&f.main, &format!("/CredentialLists/{}/Credentials.json", list["sid"].as_str().unwrap()));
            for u in ["alice", "bob"] {
                let (s, _) = f.req(&main, Method::POST, &creds, Some(&format!("Username={u}&Password=Correct-Horse-9"))).await;
                assert_eq!(s, StatusCode::CREATED);
            }
            let now = chrono::Utc::now();
            let row = SipRegistrationRow {
                account_sid: f.main,
                username: "alice".into(),
                contact: "<sip:alice@127.0.0.1:5062>".into(),
                source: "127.0.0.1:5062".into(),
                transport: "udp".into(),
                expires_at: now + chrono::Duration::seconds(300),
                presence: "available".into(),
            };
            f.state.store.replace_sip_registrations(&f.main, "alice", &[row]).await.unwrap();
            let path = sip(&f.main, "/Registrations.json");
            let (s, page) = f.req(&main, Method::GET, &path, None).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            let regs = page["registrations"].as_array().unwrap();
            assert_eq!(regs[0]["username"], "alice");
            assert_eq!(regs[0]["presence"], "available");
            assert_eq!(regs[0]["contacts"][0]["contact"], "<sip:alice@127.0.0.1:5062>");
            assert!(regs[0]["contacts"][0]["expires"].as_i64().unwrap() > 290);
            assert_eq!(regs[1]["username"], "bob");
            assert_eq!(regs[1]["presence"], "offline");

            let call = CallRecord {
                sid: CallSid::generate(),
                account_sid: f.main,
                parent_call_sid: None,
                phone_number_sid: None,
                from: "+15005550006".into(),
                to: "client:alice".into(),
                status: CallStatus::InProgress,
                direction: CallDirection::OutboundDial,
                start_time: Some(now),
                end_time: None,
                duration: None,
                answered_by: None,
                price: None,
                date_created: now,
                date_updated: now,
                date_scheduled: None,
            };
            f.state.store.insert_call(&call).await.unwrap();
            let (_, page) = f.req(&main, Method::GET, &path, None).await;
            assert_eq!(page["registrations"][0]["presence"], "busy");

            // Another account sees none of it.
            let (kid, kid_cred) = f.child().await;
            let (_, page) = f.req(&kid_cred, Method::GET, &sip(&kid, "/Registrations.json"), None).await;
            assert!(page["registrations"].as_array().unwrap().is_empty());
            assert_eq!(f.req(&kid_cred, Method::GET, &path, None).await.0, StatusCode::NOT_FOUND);
        }
    }
}
