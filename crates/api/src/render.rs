//! Records as Twilio's JSON: snake_case fields, RFC 2822 dates, counts as strings where Twilio
//! sends strings, `uri`s relative to the API root and ending in `.json`.

use chrono::{DateTime, Utc};
use model::{
    AccountRecord, AccountSid, ApiKeyRecord, ApplicationRecord, ApplicationSid, CallRecord, ConferenceRecord,
    MemberRecord, MessageRecord, NotificationRecord, ParticipantRecord, PhoneNumberRecord, QueueRecord,
    RecordingRecord, CallingWindowRecord, TimeZoneOverrideRecord,
};
use serde_json::{json, Value};

pub(crate) const API_VERSION: &str = "2010-04-01";

/// `Sat, 21 Nov 2026 19:24:29 +0000`.
pub(crate) fn rfc2822(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S +0000").to_string()
}

fn opt_rfc2822(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(rfc2822)
}

pub(crate) fn account_base(account: &str) -> String {
    format!("/{API_VERSION}/Accounts/{account}")
}

/// The Account resource. `auth_token` is shown only to the account itself and to its parent
/// (`show_token`), as Twilio does; anyone else gets `null`.
pub(crate) fn account(a: &AccountRecord, show_token: bool) -> Value {
    let base = account_base(a.sid.as_str());
    // Twilio's full map, so clients that follow a link find the path they expect; the ones this
    // server does not serve answer 404.
    let subresources = [
        ("addresses", "Addresses"),
        ("conferences", "Conferences"),
        ("signing_keys", "SigningKeys"),
        ("transcriptions", "Transcriptions"),
        ("connect_apps", "ConnectApps"),
        ("sip", "SIP"),
        ("authorized_connect_apps", "AuthorizedConnectApps"),
        ("usage", "Usage"),
        ("keys", "Keys"),
        ("applications", "Applications"),
        ("recordings", "Recordings"),
        ("outgoing_caller_ids", "OutgoingCallerIds"),
        ("available_phone_numbers", "AvailablePhoneNumbers"),
        ("queues", "Queues"),
        ("incoming_phone_numbers", "IncomingPhoneNumbers"),
        ("calls", "Calls"),
        ("notifications", "Notifications"),
        ("short_codes", "SMS/ShortCodes"),
        ("messages", "Messages"),
        ("balance", "Balance"),
    ];
    let uris: serde_json::Map<String, Value> = subresources
        .iter()
        .map(|(k, path)| ((*k).to_owned(), Value::String(format!("{base}/{path}.json"))))
        .collect();
    json!({
        "auth_token": if show_token { Some(&a.auth_token) } else { None },
        "console_crm_url": a.console_crm_url,
        "date_created": rfc2822(a.date_created),
        "date_updated": rfc2822(a.date_updated),
        "friendly_name": a.friendly_name,
        "owner_account_sid": a.owner_account_sid,
        "sid": a.sid,
        "status": a.status,
        "subresource_uris": uris,
        "type": "Full",
        "uri": format!("{base}.json"),
    })
}

/// `2015-07-31T04:00:00Z`: the accounts.twilio.com (v1) APIs use ISO 8601, not RFC 2822.
pub(crate) fn iso8601(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A Key as listed and fetched: never its secret.
pub(crate) fn api_key(k: &ApiKeyRecord) -> Value {
    json!({
        "date_created": rfc2822(k.date_created),
        "date_updated": rfc2822(k.date_updated),
        "friendly_name": k.friendly_name,
        "sid": k.sid,
    })
}

/// A Key as created: the one time its secret is shown.
pub(crate) fn new_api_key(k: &ApiKeyRecord, secret: &str) -> Value {
    let mut v = api_key(k);
    v["secret"] = json!(secret);
    v
}

pub(crate) fn application(a: &ApplicationRecord) -> Value {
    json!({
        "account_sid": a.account_sid,
        "api_version": API_VERSION,
        "date_created": rfc2822(a.date_created),
        "date_updated": rfc2822(a.date_updated),
        "friendly_name": a.friendly_name,
        "message_status_callback": a.message_status_callback,
        "public_application_connect_enabled": a.public_application_connect_enabled,
        "sid": a.sid,
        "sms_fallback_method": a.sms_fallback_method,
        "sms_fallback_url": a.sms_fallback_url,
        "sms_method": a.sms_method,
        "sms_status_callback": a.sms_status_callback,
        "sms_url": a.sms_url,
        "status_callback": a.status_callback,
        "status_callback_method": a.status_callback_method,
        "uri": format!("{}/Applications/{}.json", account_base(a.account_sid.as_str()), a.sid),
        "voice_caller_id_lookup": a.voice_caller_id_lookup,
        "voice_fallback_method": a.voice_fallback_method,
        "voice_fallback_url": a.voice_fallback_url,
        "voice_method": a.voice_method,
        "voice_url": a.voice_url,
    })
}

/// `POST/DELETE /v1/AuthTokens/Secondary` (accounts.twilio.com).
pub(crate) fn secondary_auth_token(a: &AccountRecord, public_url: &str) -> Value {
    let created = a.secondary_auth_token_created.unwrap_or(a.date_updated);
    json!({
        "account_sid": a.sid,
        "date_created": iso8601(created),
        "date_updated": iso8601(created),
        "secondary_auth_token": a.secondary_auth_token,
        "url": format!("{}/v1/AuthTokens/Secondary", public_url.trim_end_matches('/')),
    })
}

/// `POST /v1/AuthTokens/Promote`: the new primary token; `created` is when it was made.
pub(crate) fn promoted_auth_token(a: &AccountRecord, created: DateTime<Utc>, public_url: &str) -> Value {
    json!({
        "account_sid": a.sid,
        "auth_token": a.auth_token,
        "date_created": iso8601(created),
        "date_updated": iso8601(a.date_updated),
        "url": format!("{}/v1/AuthTokens/Promote", public_url.trim_end_matches('/')),
    })
}

/// A number with its own settings; `voice_application_sid` is the application its calls use
/// instead, if any.
pub(crate) fn number(n: &PhoneNumberRecord, voice_application_sid: Option<&ApplicationSid>) -> Value {
    let base = format!("{}/IncomingPhoneNumbers/{}", account_base(n.account_sid.as_str()), n.sid);
    json!({
        "account_sid": n.account_sid,
        "address_requirements": "none",
        "address_sid": null,
        "api_version": API_VERSION,
        "beta": false,
        "bundle_sid": null,
        "capabilities": { "voice": true, "sms": true, "mms": false, "fax": false },
        "date_created": rfc2822(n.date_created),
        "date_updated": rfc2822(n.date_updated),
        "emergency_address_sid": null,
        "emergency_address_status": "unregistered",
        "emergency_status": "Inactive",
        "friendly_name": n.friendly_name,
        "identity_sid": null,
        "origin": "hosted",
        "phone_number": n.phone_number,
        "sid": n.sid,
        "sms_application_sid": n.sms_application_sid,
        "sms_fallback_method": n.sms_fallback_method,
        "sms_fallback_url": n.sms_fallback_url,
        "sms_method": n.sms_method,
        "sms_url": n.sms_url,
        "status": "in-use",
        "status_callback": n.status_callback,
        "status_callback_method": n.status_callback_method,
        "subresource_uris": { "assigned_add_ons": format!("{base}/AssignedAddOns.json") },
        "trunk_sid": null,
        "type": "local",
        "uri": format!("{base}.json"),
        "voice_application_sid": voice_application_sid,
        "voice_caller_id_lookup": false,
        "voice_fallback_method": n.voice_fallback_method,
        "voice_fallback_url": n.voice_fallback_url,
        "voice_method": n.voice_method,
        "voice_receive_mode": "voice",
        "voice_url": n.voice_url,
    })
}

pub(crate) fn call(c: &CallRecord) -> Value {
    let base = format!("{}/Calls/{}", account_base(c.account_sid.as_str()), c.sid);
    json!({
        "account_sid": c.account_sid,
        "annotation": null,
        "answered_by": c.answered_by,
        "api_version": API_VERSION,
        "caller_name": null,
        "date_created": rfc2822(c.date_created),
        // Dialtone extension: when a call deferred by its calling window is (or was) placed.
        "date_scheduled": opt_rfc2822(c.date_scheduled),
        "date_updated": rfc2822(c.date_updated),
        "direction": c.direction.as_str(),
        "duration": c.duration.map(|d| d.to_string()),
        "end_time": opt_rfc2822(c.end_time),
        "forwarded_from": null,
        "from": c.from,
        "from_formatted": c.from,
        "group_sid": null,
        "parent_call_sid": c.parent_call_sid,
        "phone_number_sid": c.phone_number_sid,
        "price": c.price,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": c.sid,
        "start_time": opt_rfc2822(c.start_time),
        "status": c.status.as_str(),
        // Twilio's STIR/SHAKEN verification result of an inbound call; Dialtone verifies none.
        "stir_verstat": null,
        "subresource_uris": {
            "notifications": format!("{base}/Notifications.json"),
            "recordings": format!("{base}/Recordings.json"),
        },
        "to": c.to,
        "to_formatted": c.to,
        "trunk_sid": null,
        "uri": format!("{base}.json"),
    })
}

/// A message as twilio-python's `MessageInstance` reads it: counts as strings, `error_code` a
/// number. The SMSC route and the attempts are internal and not shown.
pub(crate) fn message(m: &MessageRecord) -> Value {
    let base = format!("{}/Messages/{}", account_base(m.account_sid.as_str()), m.sid);
    json!({
        "account_sid": m.account_sid,
        "api_version": m.api_version,
        "body": m.body,
        "date_created": rfc2822(m.date_created),
        "date_sent": opt_rfc2822(m.date_sent),
        "date_updated": rfc2822(m.date_updated),
        "direction": m.direction.as_str(),
        "error_code": m.error_code,
        "error_message": m.error_message,
        "from": m.from,
        "messaging_service_sid": null,
        "num_media": m.num_media.to_string(),
        "num_segments": m.num_segments.to_string(),
        "price": m.price,
        "price_unit": m.price_unit,
        "sid": m.sid,
        "status": m.status.as_str(),
        "subresource_uris": {
            "feedback": format!("{base}/Feedback.json"),
            "media": format!("{base}/Media.json"),
        },
        "to": m.to,
        "uri": format!("{base}.json"),
    })
}

/// One SMSC route of the node, as `GET /v1/Smsc.json` (a Dialtone extension) lists it.
pub(crate) fn smsc(s: &crate::SmscStatus) -> Value {
    json!({
        "binds_configured": s.binds_configured,
        "binds_up": s.binds_up,
        "delivered": s.delivered,
        "failed": s.failed,
        "host": s.host,
        "name": s.name,
        "port": s.port,
        "queued": s.queued,
        "submitted": s.submitted,
        "throttled": s.throttled,
    })
}

pub(crate) fn recording(r: &RecordingRecord, public_url: &str) -> Value {
    let base = format!("{}/Recordings/{}", account_base(r.account_sid.as_str()), r.sid);
    json!({
        "account_sid": r.account_sid,
        "api_version": API_VERSION,
        "call_sid": r.call_sid,
        "channels": r.channels,
        "conference_sid": r.conference_sid,
        "date_created": rfc2822(r.date_created),
        "date_updated": rfc2822(r.date_updated),
        "duration": r.duration.to_string(),
        "encryption_details": null,
        "error_code": null,
        "media_url": format!("{}{base}", public_url.trim_end_matches('/')),
        "price": null,
        "price_unit": "USD",
        "sid": r.sid,
        "source": r.source,
        "start_time": rfc2822(r.start_time),
        "status": r.status,
        "subresource_uris": {
            "add_on_results": format!("{base}/AddOnResults.json"),
            "transcriptions": format!("{base}/Transcriptions.json"),
        },
        "track": "both",
        "uri": format!("{base}.json"),
    })
}

/// A recording of a conference as `Conferences/{ConferenceSid}/Recordings` lists it: Twilio's
/// Conference Recording resource, which has no `media_url`, `track` or subresources (the audio
/// is at the recording's own `Recordings/{Sid}`). `conference` is the path's, the recording's own.
pub(crate) fn conference_recording(r: &RecordingRecord, conference: &model::ConferenceSid) -> Value {
    let base = account_base(r.account_sid.as_str());
    json!({
        "account_sid": r.account_sid,
        "api_version": API_VERSION,
        "call_sid": r.call_sid,
        "channels": r.channels,
        "conference_sid": conference,
        "date_created": rfc2822(r.date_created),
        "date_updated": rfc2822(r.date_updated),
        "duration": r.duration.to_string(),
        "encryption_details": null,
        "error_code": null,
        "price": null,
        "price_unit": "USD",
        "sid": r.sid,
        "source": r.source,
        "start_time": rfc2822(r.start_time),
        "status": r.status,
        "uri": format!("{base}/Conferences/{conference}/Recordings/{}.json", r.sid),
    })
}

/// A queue with its live numbers (from the runtime).
pub(crate) fn queue(q: &QueueRecord, stats: crate::QueueStats) -> Value {
    let base = format!("{}/Queues/{}", account_base(q.account_sid.as_str()), q.sid);
    json!({
        "account_sid": q.account_sid,
        "average_wait_time": stats.average_wait_time,
        "current_size": stats.current_size,
        "date_created": rfc2822(q.date_created),
        "date_updated": rfc2822(q.date_updated),
        "friendly_name": q.friendly_name,
        "max_size": q.max_size,
        "sid": q.sid,
        "subresource_uris": { "members": format!("{base}/Members.json") },
        "uri": format!("{base}.json"),
    })
}

/// A queue member; `account` is the queue's (a member does not carry it).
pub(crate) fn member(m: &MemberRecord, account: &AccountSid) -> Value {
    json!({
        "call_sid": m.call_sid,
        "date_enqueued": rfc2822(m.date_enqueued),
        "position": m.position,
        "queue_sid": m.queue_sid,
        "uri": format!("{}/Queues/{}/Members/{}.json", account_base(account.as_str()), m.queue_sid, m.call_sid),
        "wait_time": m.wait_time,
    })
}

pub(crate) fn conference(c: &ConferenceRecord) -> Value {
    let base = format!("{}/Conferences/{}", account_base(c.account_sid.as_str()), c.sid);
    json!({
        "account_sid": c.account_sid,
        "api_version": API_VERSION,
        "call_sid_ending_conference": c.call_sid_ending_conference,
        "date_created": rfc2822(c.date_created),
        "date_updated": rfc2822(c.date_updated),
        "friendly_name": c.friendly_name,
        "reason_conference_ended": c.reason_conference_ended,
        "region": c.region,
        "sid": c.sid,
        "status": c.status.as_str(),
        "subresource_uris": {
            "participants": format!("{base}/Participants.json"),
            "recordings": format!("{base}/Recordings.json"),
        },
        "uri": format!("{base}.json"),
    })
}

/// A participant. `queue_time` (milliseconds before its call was placed) is Twilio's only in the
/// reply to a create: `"0"` there, since calls are placed at once, and null elsewhere.
pub(crate) fn participant(p: &ParticipantRecord, created: bool) -> Value {
    json!({
        "account_sid": p.account_sid,
        "call_sid": p.call_sid,
        "call_sid_to_coach": p.call_sid_to_coach,
        "coaching": p.coaching,
        "conference_sid": p.conference_sid,
        "date_created": rfc2822(p.date_created),
        "date_updated": rfc2822(p.date_updated),
        "end_conference_on_exit": p.end_conference_on_exit,
        "hold": p.hold,
        "label": p.label,
        "muted": p.muted,
        "queue_time": created.then_some("0"),
        "start_conference_on_enter": p.start_conference_on_enter,
        "status": p.status.as_str(),
        "uri": format!(
            "{}/Conferences/{}/Participants/{}.json",
            account_base(p.account_sid.as_str()),
            p.conference_sid,
            p.call_sid
        ),
    })
}

pub(crate) fn notification(n: &NotificationRecord) -> Value {
    let account = account_base(n.account_sid.as_str());
    let uri = match &n.call_sid {
        Some(call) => format!("{account}/Calls/{call}/Notifications/{}.json", n.sid),
        None => format!("{account}/Notifications/{}.json", n.sid),
    };
    json!({
        "account_sid": n.account_sid,
        "api_version": API_VERSION,
        "call_sid": n.call_sid,
        "date_created": rfc2822(n.date_created),
        "date_updated": rfc2822(n.date_updated),
        "error_code": n.error_code.to_string(),
        "log": n.log.to_string(),
        "message_date": rfc2822(n.message_date),
        "message_text": n.message_text,
        "more_info": format!("https://www.twilio.com/docs/errors/{}", n.error_code),
        "request_method": n.request_method,
        "request_url": n.request_url,
        "request_variables": null,
        "response_body": n.response_body,
        "response_headers": null,
        "sid": n.sid,
        "uri": uri,
    })
}

/// An account's calling window (Dialtone extension). `inherited`: `viewer` has none of its own
/// and this is its parent's.
pub(crate) fn calling_window(w: &CallingWindowRecord, viewer: &AccountSid) -> Value {
    let hours = calling_window::Hours::parse(&w.hours).unwrap_or_default();
    let days: serde_json::Map<String, Value> = calling_window::Hours::day_names()
        .iter()
        .enumerate()
        .map(|(i, name)| ((*name).to_owned(), json!(hours.day(i))))
        .collect();
    json!({
        "account_sid": w.account_sid,
        "inherited": w.account_sid != *viewer,
        "hours": w.hours,
        "days": days,
        "dates_off": w.dates_off,
        "policy": w.policy,
        "dial_policy": w.dial_policy,
        "date_created": rfc2822(w.date_created),
        "date_updated": rfc2822(w.date_updated),
        "uri": format!("{}/CallingWindow.json", account_base(viewer.as_str())),
    })
}

/// A time-zone override (Dialtone extension).
pub(crate) fn time_zone_override(o: &TimeZoneOverrideRecord) -> Value {
    json!({
        "sid": o.sid,
        "account_sid": o.account_sid,
        "phone_number": o.phone_number,
        "prefix": o.prefix,
        "time_zone": o.time_zone,
        "date_created": rfc2822(o.date_created),
        "date_updated": rfc2822(o.date_updated),
        "uri": format!("{}/TimeZoneOverrides/{}.json", account_base(o.account_sid.as_str()), o.sid),
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn dates_are_rfc_2822_in_gmt() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 19, 24, 29).unwrap();
        assert_eq!(rfc2822(t), "Sat, 21 Nov 2026 19:24:29 +0000");
        let t = Utc.with_ymd_and_hms(2025, 1, 5, 3, 4, 5).unwrap();
        assert_eq!(rfc2822(t), "Sun, 05 Jan 2025 03:04:05 +0000");
    }
}

/// The outcome of a bulk number creation (Dialtone extension).
pub(crate) fn number_batch(
    account: &AccountSid,
    created: usize,
    errors: &[crate::numbers::BatchError],
    uri: &str,
) -> Value {
    json!({
        "account_sid": account,
        "created": created,
        "failed": errors.len(),
        "errors": errors.iter().map(|e| json!({
            "line": e.line,
            "phone_number": e.phone_number,
            "code": e.code,
            "message": e.message,
        })).collect::<Vec<_>>(),
        "uri": uri,
    })
}
