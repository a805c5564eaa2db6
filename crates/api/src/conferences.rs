//! Conferences (`/Accounts/{AccountSid}/Conferences`), their Participants and Recordings.
//!
//! A conference is stored (the runtime writes it as the room opens and ends); its participants
//! are live state of the runtime, read and changed through [`crate::ApiHooks`] once the
//! conference has been found in the path's account. A `completed` conference has nobody in it:
//! its participant routes answer from that alone, without asking the runtime.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use model::{
    AccountSid, CallSid, ConferenceRecord, ConferenceSid, ConferenceStatus, ParticipantRecord,
    RecordingSid,
};
use serde_json::Value;
use store::{ConferenceFilter, RecordingFilter, TimeRange};

use crate::applications::bool_param;
use crate::auth::Ctx;
use crate::numbers::{e164, method_param, url_param};
use crate::params::{envelope, live_page, Paging, Params, Seg};
use crate::{
    render, ApiState, AppError, ConferenceTarget, ConferenceUpdate, CreateParticipant, HookError,
    ParticipantKey, ParticipantUpdate,
};

/// Longest conference name and participant label accepted (Twilio's conference names go to 128).
const MAX_NAME: usize = 128;
/// Twilio's ring time for a participant: 5 to 600 seconds, 60 by default.
const MIN_TIMEOUT: u32 = 5;
const DEFAULT_TIMEOUT: u32 = 60;
const MAX_TIMEOUT: u32 = 600;
/// As for calls: four hours by default, at most 24.
const DEFAULT_TIME_LIMIT: u32 = 14_400;
const MAX_TIME_LIMIT: u32 = 86_400;
/// Twilio's room size: 2 to 250 participants, 250 by default.
const MAX_PARTICIPANTS: u32 = 250;
const CALL_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];
const CONFERENCE_EVENTS: [&str; 9] = [
    "start",
    "end",
    "join",
    "leave",
    "mute",
    "hold",
    "modify",
    "speaker",
    "announcement",
];
const BEEPS: [&str; 4] = ["true", "false", "onEnter", "onExit"];
const CONFERENCE_RECORD: [&str; 4] = ["true", "false", "record-from-start", "do-not-record"];

fn conference_sid(ctx: &Ctx, segment: &str, suffix: &str) -> Result<ConferenceSid, AppError> {
    segment
        .strip_suffix(suffix)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ctx.not_found())
}

/// The path's conference, in the path's account; anything else is a 404.
async fn find(
    state: &ApiState,
    ctx: &Ctx,
    account: &AccountSid,
    segment: &str,
    suffix: &str,
) -> Result<ConferenceRecord, AppError> {
    let sid = conference_sid(ctx, segment, suffix)?;
    state
        .store
        .conference(account, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())
}

/// A boolean parameter, `None` when absent or empty.
fn opt_bool(p: &Params, name: &str) -> Result<Option<bool>, AppError> {
    match p.get(name) {
        None | Some("") => Ok(None),
        Some(v) => bool_param(name, v).map(Some),
    }
}

/// A method parameter, `default` when absent or empty.
fn method(p: &Params, name: &str, default: &str) -> Result<String, AppError> {
    match p.get(name) {
        None | Some("") => Ok(default.to_owned()),
        Some(m) => method_param(name, m),
    }
}

/// A URL parameter with its method: `None` when the URL is absent or empty.
fn url_with_method(
    p: &Params,
    url: &str,
    method_name: &str,
    default: &str,
) -> Result<Option<(String, String)>, AppError> {
    let Some(u) = p.get(url).map(|v| url_param(url, v)).transpose()?.flatten() else {
        return Ok(None);
    };
    Ok(Some((u, method(p, method_name, default)?)))
}

fn optional_url(p: &Params, name: &str) -> Result<Option<String>, AppError> {
    p.get(name)
        .map(|v| url_param(name, v))
        .transpose()
        .map(Option::flatten)
}

fn call_sid_param(p: &Params, name: &str) -> Result<Option<CallSid>, AppError> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| AppError::bad(20001, format!("{name} {v:?} is not a call SID"))),
    }
}

/// A name or label: 1 to [`MAX_NAME`] characters, none of them control characters.
fn name_ok(value: &str) -> bool {
    !value.is_empty() && value.chars().count() <= MAX_NAME && !value.chars().any(char::is_control)
}

// --- Conferences --------------------------------------------------------------------------------

/// `YYYY-MM-DD` as the UTC day it names.
fn day(name: &str, value: &str) -> Result<DateTime<Utc>, AppError> {
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| AppError::bad(20001, format!("Invalid {name} {value:?}: use YYYY-MM-DD")))
}

/// `Name`, `Name<` and `Name>` (Twilio's `=`, `<=` and `>=` a day, days in UTC): on that day, on
/// or before it, on or after it. Given together they narrow each other. The filters applied go
/// into `applied`, for the paging links.
fn day_range(
    p: &Params,
    name: &str,
    applied: &mut Vec<(&'static str, String)>,
) -> Result<TimeRange, AppError> {
    let names: [&'static str; 3] = match name {
        "DateCreated" => ["DateCreated", "DateCreated<", "DateCreated>"],
        _ => ["DateUpdated", "DateUpdated<", "DateUpdated>"],
    };
    let mut range = TimeRange::default();
    let mut narrow = |from: Option<DateTime<Utc>>, before: Option<DateTime<Utc>>| {
        range.from = range.from.max(from);
        range.before = match (range.before, before) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    };
    for (i, n) in names.into_iter().enumerate() {
        let Some(v) = p.get(n).filter(|v| !v.is_empty()) else {
            continue;
        };
        let d = day(n, v)?;
        match i {
            0 => narrow(Some(d), Some(d + Duration::days(1))),
            1 => narrow(None, Some(d + Duration::days(1))),
            _ => narrow(Some(d), None),
        }
        applied.push((n, v.to_owned()));
    }
    Ok(range)
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
    let mut applied = Vec::new();
    let friendly_name = p
        .get("FriendlyName")
        .filter(|v| !v.is_empty())
        .map(str::to_owned);
    if let Some(v) = &friendly_name {
        applied.push(("FriendlyName", v.clone()));
    }
    let status = match p.get("Status").filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => {
            let st = v.parse::<ConferenceStatus>().map_err(|_| {
                AppError::bad(
                    20001,
                    format!("Invalid Status {v:?}: use init, in-progress or completed"),
                )
            })?;
            applied.push(("Status", v.to_owned()));
            Some(st)
        }
    };
    let created = day_range(&p, "DateCreated", &mut applied)?;
    let updated = day_range(&p, "DateUpdated", &mut applied)?;
    let filter = ConferenceFilter {
        friendly_name,
        status,
        created,
        updated,
    };
    let page = state
        .store
        .list_conferences(&account, &filter, &paging.request)
        .await?;
    Ok(Json(envelope(
        "conferences",
        &ctx.path,
        &applied,
        &paging,
        page,
        render::conference,
    )))
}

pub(crate) async fn fetch(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference)): Seg<(String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let rec = find(&state, &ctx, &account, &conference, ".json").await?;
    Ok(Json(render::conference(&rec)))
}

pub(crate) async fn update(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_body(body)?;
    let end = match p.get("Status").filter(|v| !v.is_empty()) {
        None => false,
        Some("completed") => true,
        Some(other) => {
            return Err(AppError::bad(
                20001,
                format!("Status must be completed, not {other:?}"),
            ))
        }
    };
    let update = ConferenceUpdate {
        end,
        announce: url_with_method(&p, "AnnounceUrl", "AnnounceMethod", "POST")?,
    };
    let rec = find(&state, &ctx, &account, &conference, ".json").await?;
    if update == ConferenceUpdate::default() {
        return Ok(Json(render::conference(&rec)));
    }
    if rec.status == ConferenceStatus::Completed {
        // Ending an ended conference asks for what already holds; announcing into one cannot be.
        if update.announce.is_none() {
            return Ok(Json(render::conference(&rec)));
        }
        return Err(AppError::bad(
            20001,
            format!(
                "Conference {} is completed: nobody is left to hear the announcement",
                rec.sid
            ),
        ));
    }
    let rec = state
        .hooks
        .update_conference(account, rec.sid, update)
        .await
        .map_err(|e| match e {
            HookError::NotFound => ctx.not_found(),
            e => e.into(),
        })?;
    Ok(Json(render::conference(&rec)))
}

// --- Participants -------------------------------------------------------------------------------

/// `{CallSid}.json` of a participant route: a call SID, or else the participant's label.
fn participant_key(ctx: &Ctx, segment: &str) -> Result<ParticipantKey, AppError> {
    let stem = segment
        .strip_suffix(".json")
        .ok_or_else(|| ctx.not_found())?;
    if let Ok(call) = stem.parse::<CallSid>() {
        return Ok(ParticipantKey::Call(call));
    }
    if !name_ok(stem) {
        return Err(ctx.not_found());
    }
    Ok(ParticipantKey::Label(stem.to_owned()))
}

fn matches(p: &ParticipantRecord, key: &ParticipantKey) -> bool {
    match key {
        ParticipantKey::Call(call) => p.call_sid == *call,
        ParticipantKey::Label(label) => p.label.as_deref() == Some(label.as_str()),
    }
}

/// Who is in the conference now: nobody once it is `completed`.
async fn participants_of(
    state: &ApiState,
    conference: &ConferenceRecord,
) -> Result<Vec<ParticipantRecord>, AppError> {
    if conference.status == ConferenceStatus::Completed {
        return Ok(Vec::new());
    }
    Ok(state
        .hooks
        .conference_participants(conference.account_sid, conference.sid)
        .await?)
}

pub(crate) async fn list_participants(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let p = Params::from_query(query.as_deref());
    let paging = Paging::parse(&p)?;
    let mut applied = Vec::new();
    let mut wanted = [None; 3];
    for (name, want) in ["Muted", "Hold", "Coaching"].into_iter().zip(&mut wanted) {
        *want = opt_bool(&p, name)?;
        if let Some(v) = want {
            applied.push((name, v.to_string()));
        }
    }
    let conference = find(&state, &ctx, &account, &conference, "").await?;
    let mut all = participants_of(&state, &conference).await?;
    all.retain(|p| {
        [p.muted, p.hold, p.coaching]
            .into_iter()
            .zip(wanted)
            .all(|(has, want)| want != Some(!has))
    });
    let page = live_page(all, &paging.request, |p| {
        (p.date_created, p.call_sid.to_string())
    });
    Ok(Json(envelope(
        "participants",
        &ctx.path,
        &applied,
        &paging,
        page,
        |p| render::participant(p, false),
    )))
}

pub(crate) async fn fetch_participant(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference, participant)): Seg<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let key = participant_key(&ctx, &participant)?;
    let conference = find(&state, &ctx, &account, &conference, "").await?;
    let all = participants_of(&state, &conference).await?;
    let found = all
        .iter()
        .find(|p| matches(p, &key))
        .ok_or_else(|| ctx.not_found())?;
    Ok(Json(render::participant(found, false)))
}

fn parse_participant_update(p: &Params) -> Result<ParticipantUpdate, AppError> {
    let coaching = opt_bool(p, "Coaching")?;
    let call_sid_to_coach = call_sid_param(p, "CallSidToCoach")?;
    Ok(ParticipantUpdate {
        muted: opt_bool(p, "Muted")?,
        hold: opt_bool(p, "Hold")?,
        hold_url: url_with_method(p, "HoldUrl", "HoldMethod", "GET")?,
        announce_url: url_with_method(p, "AnnounceUrl", "AnnounceMethod", "POST")?,
        wait_url: url_with_method(p, "WaitUrl", "WaitMethod", "POST")?,
        beep_on_exit: opt_bool(p, "BeepOnExit")?,
        end_conference_on_exit: opt_bool(p, "EndConferenceOnExit")?,
        // Naming a call to coach makes the participant a coach unless told otherwise (Twilio).
        coaching: coaching.or(call_sid_to_coach.map(|_| true)),
        call_sid_to_coach,
    })
}

/// Turns the runtime's "no such participant" into the path's 404.
fn hook_error(ctx: &Ctx, e: HookError) -> AppError {
    match e {
        HookError::NotFound => ctx.not_found(),
        e => e.into(),
    }
}

pub(crate) async fn update_participant(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference, participant)): Seg<(String, String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let key = participant_key(&ctx, &participant)?;
    let update = parse_participant_update(&Params::from_body(body)?)?;
    let conference = find(&state, &ctx, &account, &conference, "").await?;
    if conference.status == ConferenceStatus::Completed {
        return Err(ctx.not_found());
    }
    let rec = state
        .hooks
        .update_participant(account, conference.sid, key, update)
        .await
        .map_err(|e| hook_error(&ctx, e))?;
    Ok(Json(render::participant(&rec, false)))
}

pub(crate) async fn delete_participant(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference, participant)): Seg<(String, String, String)>,
) -> Result<StatusCode, AppError> {
    let account = ctx.scope(&account, "")?;
    let key = participant_key(&ctx, &participant)?;
    let conference = find(&state, &ctx, &account, &conference, "").await?;
    if conference.status == ConferenceStatus::Completed {
        return Err(ctx.not_found());
    }
    state
        .hooks
        .remove_participant(account, conference.sid, key)
        .await
        .map_err(|e| hook_error(&ctx, e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A participant's destination: E.164, a `sip:`/`sips:` URI or `client:NAME`.
fn destination(raw: &str) -> Option<String> {
    let lower = raw.to_ascii_lowercase();
    if let Some(name) = lower.strip_prefix("client:") {
        let ok = !name.is_empty()
            && name.len() <= 255
            && raw[7..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b));
        return ok.then(|| format!("client:{}", &raw[7..]));
    }
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        let ok = raw.len() > 4
            && raw.contains(|c: char| c.is_ascii_alphanumeric())
            && !raw
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'));
        return ok.then(|| raw.to_owned());
    }
    e164(raw)
}

/// `From`: E.164, `client:NAME`, or (calling a SIP URI) the user part to present.
fn caller(raw: &str) -> Option<String> {
    if raw.starts_with('+') || raw.to_ascii_lowercase().starts_with("client:") {
        return destination(raw);
    }
    let ok = raw.len() <= 255
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/".contains(&b));
    ok.then(|| raw.to_owned())
}

/// Seconds between `min` and `max` (out of range values are clamped, as Twilio does).
fn seconds(
    p: &Params,
    name: &str,
    code: u32,
    min: u32,
    default: u32,
    max: u32,
) -> Result<u32, AppError> {
    match p.get(name) {
        None | Some("") => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n > 0 => Ok(n.clamp(min, max)),
            _ => Err(AppError::bad(
                code,
                format!("Invalid {name} {v:?}: use a positive whole number of seconds"),
            )),
        },
    }
}

/// A repeated or space-separated list of events from `allowed`; `default` when none is given.
fn events(
    p: &Params,
    name: &str,
    allowed: &[&str],
    default: &[&str],
) -> Result<Vec<String>, AppError> {
    let mut out: Vec<String> = Vec::new();
    for value in p.get_all(name) {
        for event in value.split([' ', ',']).filter(|e| !e.is_empty()) {
            if !allowed.contains(&event) {
                return Err(AppError::bad(
                    20001,
                    format!("{name} {event:?} is not one of {}", allowed.join(", ")),
                ));
            }
            if !out.iter().any(|e| e == event) {
                out.push(event.to_owned());
            }
        }
    }
    if out.is_empty() {
        out = default.iter().map(|e| (*e).to_owned()).collect();
    }
    Ok(out)
}

fn one_of(p: &Params, name: &str, allowed: &[&str], default: &str) -> Result<String, AppError> {
    match p.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default.to_owned()),
        Some(v) if allowed.contains(&v) => Ok(v.to_owned()),
        Some(v) => Err(AppError::bad(
            20001,
            format!("Invalid {name} {v:?}: use one of {}", allowed.join(", ")),
        )),
    }
}

fn parse_create(
    account: AccountSid,
    conference: ConferenceTarget,
    p: &Params,
) -> Result<CreateParticipant, AppError> {
    let to = p.get_number("To").filter(|s| !s.trim().is_empty());
    let to = to.ok_or_else(|| AppError::bad(21201, "No 'To' number is specified"))?;
    let to = destination(&to)
        .ok_or_else(|| AppError::bad(21211, format!("Invalid 'To' Phone Number: {to}")))?;
    let from = p.get_number("From").filter(|s| !s.trim().is_empty());
    let from = from.ok_or_else(|| AppError::bad(21213, "No 'From' number is specified"))?;
    let from = caller(&from)
        .ok_or_else(|| AppError::bad(21212, format!("Invalid 'From' Phone Number: {from}")))?;
    let label = match p.get("Label").filter(|v| !v.is_empty()) {
        None => None,
        Some(l) if name_ok(l) => Some(l.to_owned()),
        Some(_) => {
            return Err(AppError::bad(
                20001,
                format!("Label must be 1 to {MAX_NAME} characters without control characters"),
            ))
        }
    };
    let call_sid_to_coach = call_sid_param(p, "CallSidToCoach")?;
    let coaching = opt_bool(p, "Coaching")?.unwrap_or(call_sid_to_coach.is_some());
    if coaching && call_sid_to_coach.is_none() {
        return Err(AppError::bad(
            20001,
            "Coaching=true needs CallSidToCoach: the call to coach",
        ));
    }
    let wait_url = match p.get("WaitUrl") {
        None => None,
        // Given empty: no music at all (Twilio's `WaitUrl=`).
        Some("") => Some(String::new()),
        Some(v) => url_param("WaitUrl", v)?,
    };
    let max_participants = match p.get("MaxParticipants").filter(|v| !v.is_empty()) {
        None => MAX_PARTICIPANTS,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if (2..=MAX_PARTICIPANTS).contains(&n) => n,
            _ => {
                return Err(AppError::bad(
                    20001,
                    format!("Invalid MaxParticipants {v:?}: use 2 to {MAX_PARTICIPANTS}"),
                ))
            }
        },
    };
    Ok(CreateParticipant {
        account_sid: account,
        conference,
        from,
        to,
        label,
        muted: opt_bool(p, "Muted")?.unwrap_or(false),
        beep: one_of(p, "Beep", &BEEPS, "true")?,
        start_conference_on_enter: opt_bool(p, "StartConferenceOnEnter")?.unwrap_or(true),
        end_conference_on_exit: opt_bool(p, "EndConferenceOnExit")?.unwrap_or(false),
        coaching,
        call_sid_to_coach,
        wait_url,
        wait_method: method(p, "WaitMethod", "POST")?,
        early_media: opt_bool(p, "EarlyMedia")?.unwrap_or(true),
        status_callback: optional_url(p, "StatusCallback")?,
        status_callback_method: method(p, "StatusCallbackMethod", "POST")?,
        status_callback_events: events(p, "StatusCallbackEvent", &CALL_EVENTS, &["completed"])?,
        conference_status_callback: optional_url(p, "ConferenceStatusCallback")?,
        conference_status_callback_method: method(p, "ConferenceStatusCallbackMethod", "POST")?,
        conference_status_callback_events: events(
            p,
            "ConferenceStatusCallbackEvent",
            &CONFERENCE_EVENTS,
            &["start", "end"],
        )?,
        record: opt_bool(p, "Record")?.unwrap_or(false),
        conference_record: one_of(p, "ConferenceRecord", &CONFERENCE_RECORD, "false")?,
        max_participants,
        timeout: seconds(
            p,
            "Timeout",
            21208,
            MIN_TIMEOUT,
            DEFAULT_TIMEOUT,
            MAX_TIMEOUT,
        )?,
        time_limit: seconds(p, "TimeLimit", 20001, 1, DEFAULT_TIME_LIMIT, MAX_TIME_LIMIT)?,
        quiet_hours_policy: crate::calls::quiet_hours_params(p, true)?.policy,
    })
}

pub(crate) async fn create_participant(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference)): Seg<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    let account = ctx.scope(&account, "")?;
    // Twilio takes the room's friendly name in place of the SID here: joining (or opening) the
    // conference of that name.
    let target = match conference.parse::<ConferenceSid>() {
        Ok(sid) => ConferenceTarget::Sid(sid),
        // Shaped like a SID but not one (upper-case hex, say): a bad SID, not a room's name.
        Err(_) if conference.len() == 34 && conference.starts_with("CF") => {
            return Err(ctx.not_found())
        }
        Err(_) if name_ok(&conference) => ConferenceTarget::FriendlyName(conference),
        Err(_) => return Err(ctx.not_found()),
    };
    let create = parse_create(account, target, &Params::from_body(body)?)?;
    if let ConferenceTarget::Sid(sid) = &create.conference {
        let rec = state
            .store
            .conference(&account, sid)
            .await?
            .ok_or_else(|| ctx.not_found())?;
        if rec.status == ConferenceStatus::Completed {
            return Err(AppError::bad(
                20001,
                format!("Conference {sid} is completed: add the participant by the room's name to open a new conference"),
            ));
        }
    }
    let rec = state.hooks.create_participant(create).await?;
    Ok((StatusCode::CREATED, Json(render::participant(&rec, true))))
}

// --- Recordings ---------------------------------------------------------------------------------

pub(crate) async fn list_recordings(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference)): Seg<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let paging = Paging::parse(&Params::from_query(query.as_deref()))?;
    let conference = find(&state, &ctx, &account, &conference, "").await?;
    let filter = RecordingFilter {
        conference_sid: Some(conference.sid),
        ..RecordingFilter::default()
    };
    let page = state
        .store
        .list_recordings(&account, &filter, &paging.request)
        .await?;
    Ok(Json(envelope(
        "recordings",
        &ctx.path,
        &[],
        &paging,
        page,
        |r| render::conference_recording(r, &conference.sid),
    )))
}

pub(crate) async fn fetch_recording(
    State(state): State<ApiState>,
    ctx: Ctx,
    Seg((account, conference, recording)): Seg<(String, String, String)>,
) -> Result<Json<Value>, AppError> {
    let account = ctx.scope(&account, "")?;
    let sid: RecordingSid = recording
        .strip_suffix(".json")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ctx.not_found())?;
    let conference = find(&state, &ctx, &account, &conference, "").await?;
    let rec = state
        .store
        .recording(&account, &sid)
        .await?
        .ok_or_else(|| ctx.not_found())?;
    if rec.conference_sid != Some(conference.sid) {
        return Err(ctx.not_found());
    }
    Ok(Json(render::conference_recording(&rec, &conference.sid)))
}
