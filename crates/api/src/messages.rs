//! Messages (SMS): send, read, list, redact, cancel, delete; and `GET /v1/Smsc.json`, the state
//! of the node's SMSC routes (a Dialtone extension).
//!
//! Sending hands the new `queued` message to [`crate::ApiHooks::create_message`], which stores it
//! (the runtime's sender, in batches) and gives it to the sender; that carries the message
//! through `sent` and its delivery receipt (`sending` while it waits for a retry). A full outbox
//! answers 429 (20429).
//!
//! Error codes, as Twilio's where it has one:
//! - 21604 no `To`, 21211 a `To` that is not E.164;
//! - 21603 no `From`, 21212 a `From` that is not E.164, 21606 a `From` that is not a number of the
//!   account; 21701 `MessagingServiceSid` (this server has no Messaging Services);
//! - 21602 no `Body` (or an empty one), 21617 a `Body` over 1600 characters;
//! - 21621 `MediaUrl` (no MMS); 20001 `SendAt`/`ScheduleType` (no scheduling);
//! - 21609 a `StatusCallback` that is not an http(s) URL, 21218 an `ApplicationSid` not of the
//!   account, 21624 a `ValidityPeriod` outside 1..=36000;
//! - update: 20001 a `Body` other than "" (only redaction is possible), 30409 `Status=canceled`
//!   on a message no longer `queued`/`scheduled`;
//! - redact or delete a message still being sent (queued, sending...): 20009.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{NaiveDate, Utc};
use model::{AccountSid, ApplicationSid, MessageDirection, MessageRecord, MessageSid, MessageStatus};
use serde_json::Value;
use store::MessageFilter;

use crate::auth::Ctx;
use crate::numbers::{e164, url_param};
use crate::params::{envelope, Paging, Params, Seg};
use crate::{render, sip, ApiState, AppError};

/// The checked parameters of `POST Messages.json`, before the store is asked anything.
#[derive(Debug, PartialEq, Eq)]
struct CreateMessage {
    to: String,
    from: String,
    body: String,
    status_callback: Option<String>,
    application: Option<ApplicationSid>,
    validity_period: Option<u32>,
}

fn parse_create(p: &Params) -> Result<CreateMessage, AppError> {
    let to = p.get_number("To").filter(|s| !s.trim().is_empty());
    let to = to.ok_or_else(|| AppError::bad(21604, "A 'To' phone number is required"))?;
    let to = e164(&to).ok_or_else(|| AppError::bad(21211, format!("Invalid 'To' Phone Number: {to}")))?;
    if p.get("MessagingServiceSid").is_some_and(|v| !v.is_empty()) {
        return Err(AppError::bad(
            21701,
            "Messaging Services are not available on this server: send From a number of the account",
        ));
    }
    let from = p.get_number("From").filter(|s| !s.trim().is_empty());
    let from = from.ok_or_else(|| AppError::bad(21603, "A 'From' phone number is required"))?;
    let from =
        e164(&from).ok_or_else(|| AppError::bad(21212, format!("Invalid 'From' Phone Number: {from}")))?;
    if p.get_all("MediaUrl").any(|v| !v.is_empty()) {
        return Err(AppError::bad(21621, "MMS is not available on this server: MediaUrl cannot be sent"));
    }
    if p.get("SendAt").is_some_and(|v| !v.is_empty()) || p.get("ScheduleType").is_some_and(|v| !v.is_empty()) {
        return Err(AppError::bad(20001, "Scheduling messages (SendAt, ScheduleType) is not available on this server"));
    }
    let body = p.get("Body").filter(|b| !b.is_empty());
    let body = body.ok_or_else(|| AppError::bad(21602, "Message body is required"))?;
    if body.chars().count() > MessageRecord::MAX_BODY_CHARS {
        return Err(AppError::bad(
            21617,
            format!("The concatenated message body exceeds the {} character limit", MessageRecord::MAX_BODY_CHARS),
        ));
    }
    let status_callback = match p.get("StatusCallback") {
        None | Some("") => None,
        Some(v) => url_param("StatusCallback", v)
            .map_err(|_| AppError::bad(21609, format!("Invalid StatusCallback url: {v}")))?,
    };
    let application = match p.get("ApplicationSid").filter(|a| !a.is_empty()) {
        None => None,
        Some(raw) => Some(raw.parse::<ApplicationSid>().map_err(|_| invalid_application(raw))?),
    };
    let validity_period = match p.get("ValidityPeriod").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (1..=MessageRecord::MAX_VALIDITY_PERIOD).contains(&n) => Some(n),
            _ => {
                return Err(AppError::bad(
                    21624,
                    format!("Invalid ValidityPeriod {v:?}: use 1 to {} seconds", MessageRecord::MAX_VALIDITY_PERIOD),
                ))
            }
        },
    };
    Ok(CreateMessage { to, from, body: body.to_owned(), status_callback, application, validity_period })
}

fn invalid_application(raw: &str) -> AppError {
    AppError::bad(21218, format!("Invalid ApplicationSid {raw}: no such application in this account"))
}

fn message_sid(ctx: &Ctx, segment: &str) -> Result<MessageSid, AppError> {
    segment.strip_suffix(".json").and_then(|s| s.parse().ok()).ok_or_else(|| ctx.not_found())
}

/// Refuses to change a message that has not left yet (Twilio: "being sent").
fn not_in_flight(rec: &MessageRecord, what: &str) -> Result<(), AppError> {
    if rec.status.is_in_flight() {
        return Err(AppError::bad(
            20009,
            format!("Cannot {what} message {} because it is being sent (status {})", rec.sid, rec.status),
        ));
    }
    Ok(())
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let req = parse_create(&p)?;
    let owned = crate::auth::number_owner(&state, &req.from).await? == Some(account);
    if !owned {
        return Err(AppError::bad(
            21606,
            format!(
                "The From phone number {} is not a valid, SMS-capable inbound phone number or short code for your account",
                req.from
            ),
        ));
    }
    let mut status_callback = req.status_callback;
    if let Some(sid) = &req.application {
        let app = state.store.application(&account, sid).await?.ok_or_else(|| invalid_application(sid.as_str()))?;
        // A StatusCallback of the request wins over the application's, as on Twilio.
        if status_callback.is_none() {
            status_callback = app.message_status_callback;
        }
    }
    let now = Utc::now();
    let segments = smpp::count_segments(&req.body).segments;
    let mut rec = MessageRecord::new(
        account,
        req.from,
        req.to,
        req.body,
        MessageStatus::Queued,
        MessageDirection::OutboundApi,
        u32::try_from(segments).unwrap_or(u32::MAX),
        now,
    );
    rec.status_callback = status_callback;
    rec.application_sid = req.application;
    rec.validity_period = req.validity_period;
    state.hooks.create_message(&state.store, &rec).await?;
    Ok((StatusCode::CREATED, Json(render::message(&rec))))
}

/// A `DateSent` value: `YYYY-MM-DD`, or a full `YYYY-MM-DDThh:mm:ssZ` as twilio-python sends a
/// `date` or `datetime`, of which the day counts.
fn day_param(name: &str, value: &str) -> Result<NaiveDate, AppError> {
    let day = value.get(..10).filter(|_| value.len() == 10 || value.as_bytes().get(10) == Some(&b'T'));
    day.and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .ok_or_else(|| AppError::bad(20001, format!("Invalid {name} {value:?}: use YYYY-MM-DD")))
}

pub(crate) async fn list(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg(account): Seg<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_query(query.as_deref());
    let paging = Paging::parse(&p)?;
    let mut applied: Vec<(&str, String)> = Vec::new();
    let mut text = |name: &'static str| {
        let v = p.get_number(name).filter(|v| !v.is_empty());
        if let Some(v) = &v {
            applied.push((name, v.clone()));
        }
        v
    };
    let (to, from) = (text("To"), text("From"));
    let mut day = |name: &'static str| -> Result<Option<NaiveDate>, AppError> {
        let Some(v) = p.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
        let d = day_param(name, v)?;
        applied.push((name, v.to_owned()));
        Ok(Some(d))
    };
    let filter = MessageFilter {
        to,
        from,
        date_sent: day("DateSent")?,
        date_sent_before: day("DateSent<")?,
        date_sent_after: day("DateSent>")?,
    };
    let page = state.store.list_messages(&account, &filter, &paging.request).await?;
    Ok(Json(envelope("messages", &ctx.path, &applied, &paging, page, render::message)))
}

async fn find(state: &ApiState, ctx: &Ctx, account: &AccountSid, segment: &str) -> Result<MessageRecord, AppError> {
    let sid = message_sid(ctx, segment)?;
    state.store.message(account, &sid).await?.ok_or_else(|| ctx.not_found())
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, message)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let rec = find(&state, &ctx, &account, &message).await?;
    Ok(Json(render::message(&rec)))
}

/// `Status=canceled` cancels a message not yet picked up for sending; `Body=""` redacts one that
/// has left. Both may come together (cancel, then redact).
pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, message)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let cancel = match p.get("Status") {
        None => false,
        Some("canceled") => true,
        Some(other) => return Err(AppError::bad(20001, format!("Status must be canceled, not {other:?}"))),
    };
    let redact = match p.get("Body") {
        None => false,
        Some("") => true,
        Some(_) => {
            return Err(AppError::bad(20001, "Body can only be set to the empty string, which redacts the message"))
        }
    };
    let mut rec = find(&state, &ctx, &account, &message).await?;
    let canceled = cancel && state.store.cancel_message(&account, &rec.sid).await?;
    if canceled {
        state.hooks.message_canceled(&rec.sid);
    } else if cancel {
        let now = state.store.message(&account, &rec.sid).await?.ok_or_else(|| ctx.not_found())?;
        return Err(AppError::bad(
            30409,
            format!("Message {} cannot be canceled: it is {}, and only a queued or scheduled message can be", now.sid, now.status),
        ));
    }
    if redact {
        let now = state.store.message(&account, &rec.sid).await?.ok_or_else(|| ctx.not_found())?;
        not_in_flight(&now, "redact")?;
        if !state.store.redact_message_body(&account, &rec.sid).await? {
            return Err(ctx.not_found());
        }
    }
    if cancel || redact {
        rec = state.store.message(&account, &rec.sid).await?.ok_or_else(|| ctx.not_found())?;
    }
    Ok(Json(render::message(&rec)))
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, message)): Seg<(String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let rec = find(&state, &ctx, &account, &message).await?;
    not_in_flight(&rec, "delete")?;
    if !state.store.delete_message(&account, &rec.sid).await? {
        return Err(ctx.not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/Smsc.json` (Dialtone extension): the node's SMSC routes, for main accounts only (a
/// route is the operator's, shared by every account; a subaccount gets 403).
pub(crate) async fn smsc_status(State(state): State<ApiState>, ctx: Ctx) -> Result<Json<Value>, AppError> {
    let principal = state.store.account(&ctx.account).await?.ok_or_else(|| ctx.not_found())?;
    if principal.is_subaccount() {
        return Err(AppError::Forbidden("the SMSC routes are shown to main accounts only"));
    }
    let items = state.hooks.smsc_status().iter().map(render::smsc).collect();
    Ok(Json(sip::single_page("smscs", &ctx.path, items)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<CreateMessage, AppError> {
        parse_create(&Params::from_query(Some(query)))
    }

    fn code(r: Result<CreateMessage, AppError>) -> u32 {
        match r {
            Err(AppError::BadRequest { code, .. }) => code,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn create_parameters_get_twilio_codes() {
        let ok = parse("To=%2B15005550006&From=%2B14155550100&Body=Hi&ValidityPeriod=60").unwrap();
        assert_eq!((ok.to.as_str(), ok.from.as_str(), ok.validity_period), ("+15005550006", "+14155550100", Some(60)));
        // An unencoded + arrives as a space and is read back.
        assert_eq!(parse("To=+15005550006&From=+14155550100&Body=Hi").unwrap().to, "+15005550006");
        assert_eq!(code(parse("From=%2B14155550100&Body=Hi")), 21604);
        assert_eq!(code(parse("To=12345&From=%2B14155550100&Body=Hi")), 21211);
        assert_eq!(code(parse("To=%2B15005550006&Body=Hi")), 21603);
        assert_eq!(code(parse("To=%2B15005550006&MessagingServiceSid=MG1&Body=Hi")), 21701);
        assert_eq!(code(parse("To=%2B15005550006&From=Dialtone&Body=Hi")), 21212);
        assert_eq!(code(parse("To=%2B15005550006&From=%2B14155550100")), 21602);
        assert_eq!(code(parse("To=%2B15005550006&From=%2B14155550100&Body=")), 21602);
        let long = format!("To=%2B15005550006&From=%2B14155550100&Body={}", "a".repeat(1601));
        assert_eq!(code(parse(&long)), 21617);
        let full = format!("To=%2B15005550006&From=%2B14155550100&Body={}", "é".repeat(1600));
        assert!(parse(&full).is_ok(), "1600 characters, however many bytes");
        for bad in ["0", "36001", "x", "-1"] {
            let q = format!("To=%2B15005550006&From=%2B14155550100&Body=Hi&ValidityPeriod={bad}");
            assert_eq!(code(parse(&q)), 21624, "{bad}");
        }
        assert_eq!(code(parse("To=%2B15005550006&From=%2B14155550100&Body=Hi&StatusCallback=ftp://x")), 21609);
        assert_eq!(code(parse("To=%2B15005550006&From=%2B14155550100&Body=Hi&ApplicationSid=AP1")), 21218);
        assert_eq!(code(parse("To=%2B15005550006&From=%2B14155550100&Body=Hi&MediaUrl=https://a.example/x.png")), 21621);
        assert_eq!(code(parse("To=%2B15005550006&From=%2B14155550100&Body=Hi&SendAt=2030-01-01T00:00:00Z")), 20001);
    }

    #[test]
    fn date_sent_takes_a_day_or_the_day_of_a_timestamp() {
        let d = NaiveDate::from_ymd_opt(2026, 3, 4).unwrap();
        assert_eq!(day_param("DateSent", "2026-03-04").unwrap(), d);
        assert_eq!(day_param("DateSent", "2026-03-04T00:00:00Z").unwrap(), d);
        for bad in ["2026-3-4", "2026-03-04x", "yesterday", "", "2026-02-30"] {
            assert!(day_param("DateSent", bad).is_err(), "{bad}");
        }
    }
}
