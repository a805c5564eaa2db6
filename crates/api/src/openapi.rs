//! The OpenAPI 3.0 document (`GET /openapi.json`), built from the route table
//! ([`crate::routes::OPERATIONS`]) and the resource schemas below. The schemas list the fields of
//! `crate::render` with Twilio's names and types; a test renders every shape and checks it
//! against its schema, so the two cannot drift apart.

use axum::http::Method;
use serde_json::{json, Map, Value};

use crate::routes::{Operation, Param, Reply, Shape, Ty, OPERATIONS};
use crate::BODY_LIMIT;

fn string() -> Value {
    json!({ "type": "string" })
}

fn nullable(mut schema: Value) -> Value {
    schema["nullable"] = json!(true);
    schema
}

fn one_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

/// An RFC 2822 date (`Sat, 21 Nov 2026 19:24:29 +0000`), as Twilio's 2010 API sends them.
fn date() -> Value {
    json!({ "type": "string", "format": "date-time-rfc-2822" })
}

fn sid(prefix: &str) -> Value {
    json!({ "type": "string", "pattern": format!("^{prefix}[0-9a-f]{{32}}$"), "minLength": 34, "maxLength": 34 })
}

fn string_map() -> Value {
    json!({ "type": "object", "additionalProperties": { "type": "string" } })
}

/// A closed object: exactly these fields, all present (null where the type allows).
fn object(fields: Vec<(&str, Value)>) -> Value {
    let required: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
    let properties: Map<String, Value> =
        fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    json!({ "type": "object", "required": required, "properties": properties, "additionalProperties": false })
}

const METHODS: &[&str] = &["GET", "POST"];
const CALL_STATUSES: &[&str] = &[
    "scheduled",
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
];
const MESSAGE_STATUSES: &[&str] = &[
    "queued",
    "sending",
    "sent",
    "failed",
    "delivered",
    "undelivered",
    "receiving",
    "received",
    "accepted",
    "scheduled",
    "read",
    "partially_delivered",
    "canceled",
];
const MESSAGE_DIRECTIONS: &[&str] = &["inbound", "outbound-api", "outbound-call", "outbound-reply"];
const CONFERENCE_ENDED_REASONS: &[&str] = &[
    "conference-ended-via-api",
    "participant-with-end-conference-on-exit-left",
    "participant-with-end-conference-on-exit-kicked",
    "last-participant-kicked",
    "last-participant-left",
];

pub(crate) fn shape_name(shape: Shape) -> &'static str {
    match shape {
        Shape::Account => "Account",
        Shape::Key => "Key",
        Shape::NewKey => "NewKey",
        Shape::Application => "Application",
        Shape::Number => "IncomingPhoneNumber",
        Shape::Call => "Call",
        Shape::Recording => "Recording",
        Shape::Notification => "Notification",
        Shape::SecondaryAuthToken => "SecondaryAuthToken",
        Shape::PromotedAuthToken => "AuthTokenPromotion",
        Shape::SipDomain => "SipDomain",
        Shape::SipCredentialList => "SipCredentialList",
        Shape::SipCredential => "SipCredentialListCredential",
        Shape::SipCredentialListMapping => "SipAuthRegistrationsCredentialListMapping",
        Shape::SipRegistration => "SipRegistration",
        Shape::Queue => "Queue",
        Shape::Member => "QueueMember",
        Shape::Conference => "Conference",
        Shape::Participant => "ConferenceParticipant",
        Shape::ConferenceRecording => "ConferenceRecording",
        Shape::Message => "Message",
        Shape::Smsc => "Smsc",
        Shape::UsageRecord => "UsageRecord",
        Shape::RateTable => "RateTable",
        Shape::CallingWindow => "CallingWindow",
        Shape::TimeZoneOverride => "TimeZoneOverride",
        Shape::ProxyService => "ProxyService",
        Shape::ProxyPhoneNumber => "ProxyPhoneNumber",
        Shape::ProxySession => "ProxySession",
        Shape::ProxyParticipant => "ProxyParticipant",
        Shape::ProxyInteraction => "ProxyInteraction",
        Shape::ProxyMessageInteraction => "ProxyMessageInteraction",
        Shape::NumberBatch => "IncomingPhoneNumberBatch",
    }
}

pub(crate) const SHAPES: [Shape; 33] = [
    Shape::Account,
    Shape::Key,
    Shape::NewKey,
    Shape::Application,
    Shape::Number,
    Shape::Call,
    Shape::Recording,
    Shape::Notification,
    Shape::SecondaryAuthToken,
    Shape::PromotedAuthToken,
    Shape::SipDomain,
    Shape::SipCredentialList,
    Shape::SipCredential,
    Shape::SipCredentialListMapping,
    Shape::SipRegistration,
    Shape::Queue,
    Shape::Member,
    Shape::Conference,
    Shape::Participant,
    Shape::ConferenceRecording,
    Shape::Message,
    Shape::Smsc,
    Shape::UsageRecord,
    Shape::RateTable,
    Shape::CallingWindow,
    Shape::TimeZoneOverride,
    Shape::ProxyService,
    Shape::ProxyPhoneNumber,
    Shape::ProxySession,
    Shape::ProxyParticipant,
    Shape::ProxyInteraction,
    Shape::ProxyMessageInteraction,
    Shape::NumberBatch,
];

/// The JSON schema of one resource as `crate::render` writes it.
pub(crate) fn shape_schema(shape: Shape) -> Value {
    let s = string;
    let ns = || nullable(string());
    let method = || one_of(METHODS);
    // The URLs a client set come back as sent (checked as http(s) URLs, not normalised).
    let nurl = || nullable(string());
    match shape {
        Shape::Account => object(vec![
            ("auth_token", ns()),
            ("console_crm_url", nurl()),
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            ("owner_account_sid", sid("AC")),
            ("sid", sid("AC")),
            ("status", one_of(&["active", "suspended", "closed"])),
            ("subresource_uris", string_map()),
            ("type", one_of(&["Trial", "Full"])),
            ("uri", s()),
        ]),
        Shape::Key => object(vec![
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            ("sid", sid("SK")),
        ]),
        Shape::NewKey => object(vec![
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            ("secret", s()),
            ("sid", sid("SK")),
        ]),
        Shape::Application => object(vec![
            ("account_sid", sid("AC")),
            ("api_version", s()),
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            ("message_status_callback", nurl()),
            (
                "public_application_connect_enabled",
                json!({ "type": "boolean" }),
            ),
            ("sid", sid("AP")),
            ("sms_fallback_method", method()),
            ("sms_fallback_url", nurl()),
            ("sms_method", method()),
            ("sms_status_callback", nurl()),
            ("sms_url", nurl()),
            ("status_callback", nurl()),
            ("status_callback_method", method()),
            ("uri", s()),
            ("voice_caller_id_lookup", json!({ "type": "boolean" })),
            ("voice_fallback_method", method()),
            ("voice_fallback_url", nurl()),
            ("voice_method", method()),
            ("voice_url", nurl()),
        ]),
        Shape::Number => object(vec![
            ("account_sid", sid("AC")),
            (
                "address_requirements",
                one_of(&["none", "any", "local", "foreign"]),
            ),
            ("address_sid", ns()),
            ("api_version", s()),
            ("beta", json!({ "type": "boolean" })),
            ("bundle_sid", ns()),
            (
                "capabilities",
                object(vec![
                    ("voice", json!({ "type": "boolean" })),
                    ("sms", json!({ "type": "boolean" })),
                    ("mms", json!({ "type": "boolean" })),
                    ("fax", json!({ "type": "boolean" })),
                ]),
            ),
            ("date_created", date()),
            ("date_updated", date()),
            ("emergency_address_sid", ns()),
            ("emergency_address_status", s()),
            ("emergency_status", one_of(&["Active", "Inactive"])),
            ("friendly_name", s()),
            ("identity_sid", ns()),
            ("origin", s()),
            ("phone_number", s()),
            ("sid", sid("PN")),
            ("sms_application_sid", nullable(sid("AP"))),
            ("sms_fallback_method", method()),
            ("sms_fallback_url", nurl()),
            ("sms_method", method()),
            ("sms_url", nurl()),
            ("status", s()),
            ("status_callback", nurl()),
            ("status_callback_method", method()),
            ("subresource_uris", string_map()),
            ("trunk_sid", ns()),
            ("type", s()),
            ("uri", s()),
            ("voice_application_sid", nullable(sid("AP"))),
            ("voice_caller_id_lookup", json!({ "type": "boolean" })),
            ("voice_fallback_method", method()),
            ("voice_fallback_url", nurl()),
            ("voice_method", method()),
            ("voice_receive_mode", one_of(&["voice", "fax"])),
            ("voice_url", nurl()),
        ]),
        Shape::Call => object(vec![
            ("account_sid", sid("AC")),
            ("annotation", ns()),
            ("answered_by", ns()),
            ("api_version", s()),
            ("caller_name", ns()),
            ("date_created", date()),
            ("date_scheduled", nullable(date())),
            ("date_updated", date()),
            (
                "direction",
                one_of(&["inbound", "outbound-api", "outbound-dial"]),
            ),
            (
                "duration",
                nullable(json!({ "type": "string", "pattern": "^[0-9]+$" })),
            ),
            ("end_time", nullable(date())),
            ("forwarded_from", ns()),
            ("from", s()),
            ("from_formatted", s()),
            ("group_sid", ns()),
            ("parent_call_sid", nullable(sid("CA"))),
            ("phone_number_sid", nullable(sid("PN"))),
            ("price", ns()),
            ("price_unit", s()),
            ("queue_time", s()),
            ("sid", sid("CA")),
            ("start_time", nullable(date())),
            ("status", one_of(CALL_STATUSES)),
            ("stir_verstat", ns()),
            ("subresource_uris", string_map()),
            ("to", s()),
            ("to_formatted", s()),
            ("trunk_sid", ns()),
            ("uri", s()),
        ]),
        Shape::Recording => object(vec![
            ("account_sid", sid("AC")),
            ("api_version", s()),
            ("call_sid", sid("CA")),
            ("channels", json!({ "type": "integer" })),
            ("conference_sid", nullable(sid("CF"))),
            ("date_created", date()),
            ("date_updated", date()),
            (
                "duration",
                json!({ "type": "string", "pattern": "^[0-9]+$" }),
            ),
            ("encryption_details", nullable(json!({ "type": "object" }))),
            ("error_code", nullable(json!({ "type": "integer" }))),
            ("media_url", json!({ "type": "string", "format": "uri" })),
            ("price", ns()),
            ("price_unit", s()),
            ("sid", sid("RE")),
            ("source", s()),
            ("start_time", date()),
            ("status", s()),
            ("subresource_uris", string_map()),
            ("track", s()),
            ("uri", s()),
        ]),
        Shape::Notification => object(vec![
            ("account_sid", sid("AC")),
            ("api_version", s()),
            ("call_sid", nullable(sid("CA"))),
            ("date_created", date()),
            ("date_updated", date()),
            ("error_code", s()),
            ("log", s()),
            ("message_date", date()),
            ("message_text", s()),
            ("more_info", s()),
            ("request_method", ns()),
            ("request_url", ns()),
            ("request_variables", ns()),
            ("response_body", ns()),
            ("response_headers", ns()),
            ("sid", sid("NO")),
            ("uri", s()),
        ]),
        Shape::SecondaryAuthToken => object(vec![
            ("account_sid", sid("AC")),
            (
                "date_created",
                json!({ "type": "string", "format": "date-time" }),
            ),
            (
                "date_updated",
                json!({ "type": "string", "format": "date-time" }),
            ),
            ("secondary_auth_token", ns()),
            ("url", json!({ "type": "string", "format": "uri" })),
        ]),
        Shape::PromotedAuthToken => object(vec![
            ("account_sid", sid("AC")),
            ("auth_token", s()),
            (
                "date_created",
                json!({ "type": "string", "format": "date-time" }),
            ),
            (
                "date_updated",
                json!({ "type": "string", "format": "date-time" }),
            ),
            ("url", json!({ "type": "string", "format": "uri" })),
        ]),
        Shape::SipDomain => object(vec![
            ("account_sid", sid("AC")),
            ("api_version", s()),
            ("auth_type", s()),
            ("byoc_trunk_sid", ns()),
            ("date_created", date()),
            ("date_updated", date()),
            ("domain_name", s()),
            ("emergency_caller_sid", ns()),
            ("emergency_calling_enabled", json!({ "type": "boolean" })),
            ("friendly_name", s()),
            ("secure", json!({ "type": "boolean" })),
            ("sid", sid("SD")),
            ("sip_registration", json!({ "type": "boolean" })),
            ("subresource_uris", string_map()),
            ("uri", s()),
            ("voice_fallback_method", method()),
            ("voice_fallback_url", nurl()),
            ("voice_method", method()),
            ("voice_status_callback_method", method()),
            ("voice_status_callback_url", nurl()),
            ("voice_url", nurl()),
        ]),
        Shape::SipCredentialList => object(vec![
            ("account_sid", sid("AC")),
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            ("sid", sid("CL")),
            ("subresource_uris", string_map()),
            ("uri", s()),
        ]),
        Shape::SipCredential => object(vec![
            ("account_sid", sid("AC")),
            ("credential_list_sid", sid("CL")),
            ("date_created", date()),
            ("date_updated", date()),
            ("sid", sid("CR")),
            ("uri", s()),
            ("username", s()),
        ]),
        Shape::SipCredentialListMapping => object(vec![
            ("account_sid", sid("AC")),
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            // The mapped credential list's SID, as Twilio.
            ("sid", sid("CL")),
            ("uri", s()),
        ]),
        Shape::SipRegistration => object(vec![
            ("account_sid", sid("AC")),
            (
                "contacts",
                json!({ "type": "array", "items": object(vec![
                    ("contact", s()),
                    ("date_expires", date()),
                    ("expires", json!({ "type": "integer", "minimum": 0 })),
                    ("source", s()),
                    ("transport", s()),
                ]) }),
            ),
            ("presence", one_of(&["available", "away", "busy", "offline"])),
            ("username", s()),
        ]),
        Shape::Queue => object(vec![
            ("account_sid", sid("AC")),
            (
                "average_wait_time",
                json!({ "type": "integer", "minimum": 0 }),
            ),
            ("current_size", json!({ "type": "integer", "minimum": 0 })),
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            (
                "max_size",
                json!({ "type": "integer", "minimum": 1, "maximum": 5000 }),
            ),
            ("sid", sid("QU")),
            ("subresource_uris", string_map()),
            ("uri", s()),
        ]),
        Shape::Member => object(vec![
            ("call_sid", sid("CA")),
            ("date_enqueued", date()),
            ("position", json!({ "type": "integer", "minimum": 1 })),
            ("queue_sid", sid("QU")),
            ("uri", s()),
            ("wait_time", json!({ "type": "integer", "minimum": 0 })),
        ]),
        Shape::Conference => object(vec![
            ("account_sid", sid("AC")),
            ("api_version", s()),
            ("call_sid_ending_conference", nullable(sid("CA"))),
            ("date_created", date()),
            ("date_updated", date()),
            ("friendly_name", s()),
            (
                "reason_conference_ended",
                nullable(one_of(CONFERENCE_ENDED_REASONS)),
            ),
            ("region", s()),
            ("sid", sid("CF")),
            ("status", one_of(&["init", "in-progress", "completed"])),
            ("subresource_uris", string_map()),
            ("uri", s()),
        ]),
        Shape::Participant => object(vec![
            ("account_sid", sid("AC")),
            ("call_sid", sid("CA")),
            ("call_sid_to_coach", nullable(sid("CA"))),
            ("coaching", json!({ "type": "boolean" })),
            ("conference_sid", sid("CF")),
            ("date_created", date()),
            ("date_updated", date()),
            ("end_conference_on_exit", json!({ "type": "boolean" })),
            ("hold", json!({ "type": "boolean" })),
            ("label", ns()),
            ("muted", json!({ "type": "boolean" })),
            // Milliseconds before the call was placed: only in the reply to a create.
            (
                "queue_time",
                nullable(json!({ "type": "string", "pattern": "^[0-9]+$" })),
            ),
            ("start_conference_on_enter", json!({ "type": "boolean" })),
            (
                "status",
                one_of(&[
                    "queued",
                    "connecting",
                    "ringing",
                    "connected",
                    "complete",
                    "failed",
                ]),
            ),
            ("uri", s()),
        ]),
        Shape::ConferenceRecording => object(vec![
            ("account_sid", sid("AC")),
            ("api_version", s()),
            ("call_sid", sid("CA")),
            ("channels", json!({ "type": "integer" })),
            ("conference_sid", sid("CF")),
            ("date_created", date()),
            ("date_updated", date()),
            (
                "duration",
                json!({ "type": "string", "pattern": "^[0-9]+$" }),
            ),
            ("encryption_details", nullable(json!({ "type": "object" }))),
            ("error_code", nullable(json!({ "type": "integer" }))),
            ("price", ns()),
            ("price_unit", s()),
            ("sid", sid("RE")),
            ("source", s()),
            ("start_time", date()),
            ("status", s()),
            ("uri", s()),
        ]),
        Shape::Message => object(vec![
            ("account_sid", sid("AC")),
            ("api_version", s()),
            ("body", s()),
            ("date_created", date()),
            ("date_sent", nullable(date())),
            ("date_updated", date()),
            ("direction", one_of(MESSAGE_DIRECTIONS)),
            ("error_code", nullable(json!({ "type": "integer" }))),
            ("error_message", ns()),
            ("from", s()),
            ("messaging_service_sid", nullable(sid("MG"))),
            ("num_media", json!({ "type": "string", "pattern": "^[0-9]+$" })),
            ("num_segments", json!({ "type": "string", "pattern": "^[0-9]+$" })),
            ("price", ns()),
            ("price_unit", s()),
            ("sid", sid("SM")),
            ("status", one_of(MESSAGE_STATUSES)),
            ("subresource_uris", string_map()),
            ("to", s()),
            ("uri", s()),
        ]),
        Shape::Smsc => {
            let count = || json!({ "type": "integer", "minimum": 0 });
            object(vec![
                ("binds_configured", count()),
                ("binds_up", count()),
                ("delivered", count()),
                ("failed", count()),
                ("host", s()),
                ("name", s()),
                ("port", json!({ "type": "integer", "minimum": 0, "maximum": 65535 })),
                ("queued", count()),
                ("submitted", count()),
                ("throttled", count()),
            ])
        }
        Shape::RateTable => object(vec![
            ("account_sid", sid("AC")),
            ("date_created", date()),
            ("date_updated", date()),
            ("inbound", string_map()),
            ("inherited_from", nullable(sid("AC"))),
            ("outbound", string_map()),
            ("price_unit", s()),
            ("rounding", one_of(&["per-minute", "per-second"])),
            ("sms_inbound", ns()),
            ("sms_outbound", string_map()),
            ("uri", s()),
        ]),
        Shape::UsageRecord => {
            let digits = || json!({ "type": "string", "pattern": "^[0-9]+$" });
            let day = || json!({ "type": "string", "format": "date" });
            object(vec![
                ("account_sid", sid("AC")),
                ("api_version", s()),
                ("as_of", s()),
                ("category", s()),
                ("count", digits()),
                ("count_unit", s()),
                ("description", s()),
                ("end_date", day()),
                ("price", json!({ "type": "number", "minimum": 0 })),
                ("price_unit", s()),
                ("start_date", day()),
                ("subresource_uris", nullable(string_map())),
                ("uri", s()),
                ("usage", digits()),
                ("usage_unit", s()),
            ])
        }
        Shape::CallingWindow => {
            let span = || nullable(json!({ "type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]-[0-2][0-9]:[0-5][0-9]$" }));
            let days = calling_window::Hours::day_names().iter().map(|d| (*d, span())).collect();
            object(vec![
                ("account_sid", sid("AC")),
                ("inherited", json!({ "type": "boolean" })),
                ("hours", s()),
                ("days", object(days)),
                ("dates_off", json!({ "type": "array", "items": { "type": "string", "format": "date" } })),
                ("policy", one_of(&["defer", "refuse", "ignore"])),
                ("dial_policy", one_of(&["refuse", "ignore"])),
                ("date_created", date()),
                ("date_updated", date()),
                ("uri", s()),
            ])
        }
        Shape::TimeZoneOverride => object(vec![
            ("sid", sid("TZ")),
            ("account_sid", sid("AC")),
            ("phone_number", ns()),
            ("prefix", ns()),
            ("time_zone", s()),
            ("date_created", date()),
            ("date_updated", date()),
            ("uri", s()),
        ]),
        Shape::ProxyService => object(vec![
            ("account_sid", sid("AC")),
            ("callback_url", nullable(uri())),
            ("chat_instance_sid", ns()),
            ("date_created", iso_date()),
            ("date_updated", iso_date()),
            ("default_ttl", json!({ "type": "integer", "minimum": 0 })),
            ("geo_match_level", one_of(crate::proxy::GEO_MATCH_LEVELS)),
            ("intercept_callback_url", nullable(uri())),
            ("links", string_map()),
            ("number_selection_behavior", one_of(crate::proxy::SELECTION_BEHAVIORS)),
            ("out_of_session_callback_url", nullable(uri())),
            ("sid", sid("KS")),
            ("unique_name", s()),
            ("url", uri()),
        ]),
        Shape::ProxyPhoneNumber => object(vec![
            ("account_sid", sid("AC")),
            ("capabilities", json!({ "type": "object", "additionalProperties": { "type": "boolean" } })),
            ("date_created", iso_date()),
            ("date_updated", iso_date()),
            ("friendly_name", s()),
            ("in_use", json!({ "type": "integer", "minimum": 0 })),
            ("is_reserved", json!({ "type": "boolean" })),
            ("iso_country", s()),
            ("phone_number", s()),
            ("service_sid", sid("KS")),
            ("sid", sid("PN")),
            ("url", uri()),
        ]),
        Shape::ProxySession => object(vec![
            ("account_sid", sid("AC")),
            ("closed_reason", ns()),
            ("date_created", iso_date()),
            ("date_ended", nullable(iso_date())),
            ("date_expiry", nullable(iso_date())),
            ("date_last_interaction", nullable(iso_date())),
            ("date_started", nullable(iso_date())),
            ("date_updated", iso_date()),
            ("links", string_map()),
            ("mode", one_of(crate::proxy::SESSION_MODES)),
            ("service_sid", sid("KS")),
            ("sid", sid("KC")),
            ("status", one_of(crate::proxy::SESSION_STATUSES)),
            ("ttl", json!({ "type": "integer", "minimum": 0 })),
            ("unique_name", ns()),
            ("url", uri()),
        ]),
        Shape::ProxyParticipant => object(vec![
            ("account_sid", sid("AC")),
            ("date_created", iso_date()),
            ("date_deleted", nullable(iso_date())),
            ("date_updated", iso_date()),
            ("friendly_name", ns()),
            ("identifier", s()),
            ("links", string_map()),
            ("proxy_identifier", s()),
            ("proxy_identifier_sid", sid("PN")),
            ("service_sid", sid("KS")),
            ("session_sid", sid("KC")),
            ("sid", sid("KP")),
            ("url", uri()),
        ]),
        Shape::ProxyInteraction | Shape::ProxyMessageInteraction => {
            let status = || nullable(one_of(crate::proxy::RESOURCE_STATUSES));
            let resource = || nullable(json!({ "type": "string", "pattern": "^[A-Z]{2}[0-9a-f]{32}$" }));
            let kind = || nullable(one_of(&["Call", "Message"]));
            let mut fields = vec![
                ("account_sid", sid("AC")),
                ("data", ns()),
                ("date_created", iso_date()),
                ("date_updated", iso_date()),
                ("inbound_participant_sid", nullable(sid("KP"))),
                ("inbound_resource_sid", resource()),
                ("inbound_resource_status", status()),
                ("inbound_resource_type", kind()),
                ("inbound_resource_url", nullable(uri())),
                ("outbound_participant_sid", nullable(sid("KP"))),
                ("outbound_resource_sid", resource()),
                ("outbound_resource_status", status()),
                ("outbound_resource_type", kind()),
                ("outbound_resource_url", nullable(uri())),
                ("service_sid", sid("KS")),
                ("session_sid", sid("KC")),
                ("sid", sid("KI")),
                ("type", one_of(&["message", "voice", "unknown"])),
                ("url", uri()),
            ];
            if shape == Shape::ProxyMessageInteraction {
                fields.push(("participant_sid", sid("KP")));
                fields.sort_by_key(|(k, _)| *k);
            }
            object(fields)
        }
        Shape::NumberBatch => {
            let count = || json!({ "type": "integer", "minimum": 0 });
            let error = object(vec![
                ("code", json!({ "type": "integer" })),
                ("line", json!({ "type": "integer", "minimum": 1 })),
                ("message", s()),
                ("phone_number", ns()),
            ]);
            object(vec![
                ("account_sid", sid("AC")),
                ("created", count()),
                ("errors", json!({ "type": "array", "items": error })),
                ("failed", count()),
                ("uri", s()),
            ])
        }
    }
}

/// An ISO 8601 date and time, as the v1 APIs send them.
fn iso_date() -> Value {
    json!({ "type": "string", "format": "date-time" })
}

fn uri() -> Value {
    json!({ "type": "string", "format": "uri" })
}

/// Whether a list of `shape` has the v1 envelope (`meta`) rather than the 2010 API's.
fn is_v1(shape: Shape) -> bool {
    matches!(
        shape,
        Shape::ProxyService
            | Shape::ProxyPhoneNumber
            | Shape::ProxySession
            | Shape::ProxyParticipant
            | Shape::ProxyInteraction
            | Shape::ProxyMessageInteraction
    )
}

/// The v1 list envelope: records under `key`, paging in `meta` with absolute URLs.
fn v1_page_schema(key: &str, shape: Shape) -> Value {
    let count = || json!({ "type": "integer", "minimum": 0 });
    object(vec![
        (
            key,
            json!({ "type": "array", "items": { "$ref": format!("#/components/schemas/{}", shape_name(shape)) } }),
        ),
        (
            "meta",
            object(vec![
                ("first_page_url", uri()),
                ("key", one_of(&[key])),
                ("next_page_url", nullable(uri())),
                ("page", count()),
                ("page_size", json!({ "type": "integer", "minimum": 1 })),
                ("previous_page_url", nullable(uri())),
                ("url", uri()),
            ]),
        ),
    ])
}

/// Twilio's list envelope around records of `shape` under `key`.
fn page_schema(key: &str, shape: Shape) -> Value {
    if is_v1(shape) {
        return v1_page_schema(key, shape);
    }
    let count = || json!({ "type": "integer", "minimum": 0 });
    object(vec![
        (
            key,
            json!({ "type": "array", "items": { "$ref": format!("#/components/schemas/{}", shape_name(shape)) } }),
        ),
        ("end", count()),
        ("first_page_uri", string()),
        ("next_page_uri", nullable(string())),
        ("page", count()),
        ("page_size", json!({ "type": "integer", "minimum": 1 })),
        ("previous_page_uri", nullable(string())),
        ("start", count()),
        ("uri", string()),
    ])
}

fn error_schema() -> Value {
    object(vec![
        ("code", json!({ "type": "integer" })),
        ("message", string()),
        ("more_info", json!({ "type": "string", "format": "uri" })),
        (
            "status",
            json!({ "type": "integer", "minimum": 400, "maximum": 599 }),
        ),
    ])
}

fn param_schema(p: &Param) -> Value {
    let one = match p.ty {
        Ty::Str => string(),
        // Page counts from 0; the other numbers (PageSize, seconds) from 1.
        Ty::Int if p.name == "Page" => json!({ "type": "integer", "minimum": 0 }),
        Ty::Int if matches!(p.name, "Ttl" | "DefaultTtl") => json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX }),
        Ty::Int => json!({ "type": "integer", "minimum": 1, "maximum": u32::MAX }),
        Ty::Bool => json!({ "type": "boolean" }),
        Ty::Url => json!({ "type": "string", "format": "uri" }),
        Ty::HttpMethod => one_of(METHODS),
        Ty::Phone => json!({ "type": "string", "pattern": "^\\+[1-9][0-9]{1,14}$" }),
        Ty::Destination => {
            json!({ "type": "string", "pattern": "^(\\+[1-9][0-9]{1,14}|sips?:[^\\s<>\"]+)$" })
        }
        Ty::Sid(prefix) => sid(prefix),
        Ty::Date => json!({ "type": "string", "format": "date" }),
        Ty::DateTime => json!({ "type": "string", "format": "date-time" }),
        Ty::OneOf(values) => one_of(values),
    };
    let mut one = one;
    match p.name {
        "FriendlyName" => one["maxLength"] = json!(64),
        "Twiml" => one["maxLength"] = json!(4000),
        "Label" => one["maxLength"] = json!(128),
        "MaxSize" => one["maximum"] = json!(5000),
        "MaxParticipants" => {
            one["minimum"] = json!(2);
            one["maximum"] = json!(250);
        }
        "SendDigits" => one["pattern"] = json!("^[0-9A-D*#wW]{1,32}$"),
        "DomainName" => {
            one["pattern"] = json!(r"^[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*$");
            one["maxLength"] = json!(253);
        }
        // The characters RFC 3261 allows unescaped in a user part.
        "Username" => one["pattern"] = json!(r"^[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,255}$"),
        // The strength rule (upper, lower, digit) is the handler's; JSON Schema has no "and".
        "Password" => {
            one["minLength"] = json!(12);
            one["maxLength"] = json!(255);
        }
        _ => {}
    }
    let mut schema = if p.repeated {
        json!({ "type": "array", "items": one })
    } else {
        one
    };
    schema["description"] = json!(p.doc);
    schema
}

/// The SID prefix of a path parameter, from its name and the collection before it.
fn path_param_prefix(path: &str, name: &str) -> &'static str {
    if name == "AccountSid" {
        return "AC";
    }
    match name {
        "CallSid" => return "CA",
        "DomainSid" => return "SD",
        "CredentialListSid" => return "CL",
        "ServiceSid" => return "KS",
        "SessionSid" => return "KC",
        "ParticipantSid" => return "KP",
        _ => {}
    }
    let before = path.split(&format!("/{{{name}}}")).next().unwrap_or("");
    match before.rsplit('/').next().unwrap_or("") {
        "Accounts" => "AC",
        "Keys" => "SK",
        "Applications" => "AP",
        "IncomingPhoneNumbers" => "PN",
        "Calls" => "CA",
        "Recordings" => "RE",
        "Domains" => "SD",
        "CredentialLists" => "CL",
        "Credentials" => "CR",
        // A mapping is named by the SID of the list it maps.
        "CredentialListMappings" => "CL",
        "Queues" => "QU",
        "Conferences" => "CF",
        "Messages" => "SM",
        "TimeZoneOverrides" => "TZ",
        "Services" => "KS",
        "Sessions" => "KC",
        "Participants" => "KP",
        "Interactions" | "MessageInteractions" => "KI",
        "PhoneNumbers" => "PN",
        _ => "",
    }
}

/// The schema of a path parameter. Mostly a SID; three take something else in its place, as
/// Twilio's: a queue member is a call SID or `Front`, a participant a call SID or its label, and
/// a new participant's conference a SID or the room's friendly name.
fn path_param_schema(op: &Operation, name: &str) -> Value {
    // A label or room name: 1 to 128 characters, no control characters.
    const NAME: &str = "[^\\u0000-\\u001f]{1,128}";
    match (name, op.id) {
        ("CallSid", "FetchMember" | "UpdateMember") => {
            json!({ "type": "string", "pattern": "^(CA[0-9a-f]{32}|Front)$" })
        }
        ("CallSid", "FetchParticipant" | "UpdateParticipant" | "DeleteParticipant") => {
            json!({ "type": "string", "pattern": format!("^(CA[0-9a-f]{{32}}|{NAME})$") })
        }
        ("ConferenceSid", "CreateParticipant") => {
            json!({ "type": "string", "pattern": format!("^(CF[0-9a-f]{{32}}|{NAME})$") })
        }
        _ => sid(path_param_prefix(op.path, name)),
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
    })
}

fn status_description(status: u16) -> &'static str {
    match status {
        400 => "A parameter is missing, unknown or invalid (Twilio code in the body)",
        401 => "Missing or wrong credentials (20003), or the account is suspended (20005)",
        403 => "These credentials may not do this (20403), or the subaccount is suspended (20005)",
        404 => "No such resource for this account (20404)",
        413 => "The form body is larger than the limit",
        415 => "The body is not application/x-www-form-urlencoded",
        _ => "Error",
    }
}

/// The `{Name}`s of a document path, in order.
fn path_param_names(path: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        names.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    names
}

fn operation(op: &Operation) -> Value {
    let mut parameters: Vec<Value> = path_param_names(op.path)
        .into_iter()
        .map(|name| {
            json!({
                "name": name,
                "in": "path",
                "required": true,
                "schema": path_param_schema(op, name),
            })
        })
        .collect();
    let mut out = json!({
        "operationId": op.id,
        "summary": op.summary,
        "tags": [op.path.split('/').rfind(|s| !s.is_empty() && !s.contains('{')).unwrap_or("").trim_end_matches(".json")],
    });
    if let Some(limit) = op.lines_body {
        for p in op.params {
            parameters.push(json!({ "name": p.name, "in": "query", "required": p.required, "schema": param_schema(p) }));
        }
        let lines = json!({ "schema": { "type": "string", "maxLength": limit } });
        out["requestBody"] = json!({
            "required": true,
            "content": { "text/plain": lines.clone(), "text/csv": lines.clone(), "application/x-ndjson": lines },
        });
    } else if op.method == Method::POST {
        let properties: Map<String, Value> = op
            .params
            .iter()
            .map(|p| (p.name.to_owned(), param_schema(p)))
            .collect();
        let required: Vec<&str> = op
            .params
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect();
        let mut schema =
            json!({ "type": "object", "properties": properties, "additionalProperties": false });
        if !required.is_empty() {
            schema["required"] = json!(required);
        }
        let mut media = json!({ "schema": schema });
        let repeated: Map<String, Value> = op
            .params
            .iter()
            .filter(|p| p.repeated)
            .map(|p| {
                (
                    p.name.to_owned(),
                    json!({ "style": "form", "explode": true }),
                )
            })
            .collect();
        if !repeated.is_empty() {
            media["encoding"] = Value::Object(repeated);
        }
        out["requestBody"] = json!({
            "required": op.params.iter().any(|p| p.required),
            "content": { "application/x-www-form-urlencoded": media },
        });
    } else {
        for p in op.params {
            parameters.push(json!({ "name": p.name, "in": "query", "required": p.required, "schema": param_schema(p) }));
        }
    }
    if !parameters.is_empty() {
        out["parameters"] = json!(parameters);
    }
    if !op.ignored.is_empty() {
        out["x-twilio-ignored-parameters"] = json!(op.ignored);
    }
    let mut responses = Map::new();
    let (status, success) = match op.reply {
        Reply::One(status, shape) => (
            status,
            json!({
                "description": "The resource",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}", shape_name(shape)) } } },
            }),
        ),
        Reply::Page(_, shape) => (
            200,
            json!({
                "description": "One page of the list",
                "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}List", shape_name(shape)) } } },
            }),
        ),
        Reply::Empty => (204, json!({ "description": "Deleted" })),
        Reply::Audio => (
            200,
            json!({
                "description": "The audio, WAV",
                "content": { "audio/x-wav": { "schema": { "type": "string", "format": "binary" } } },
            }),
        ),
    };
    let mut success = success;
    if let Reply::One(201, _) = op.reply {
        let links = links_from_create(op);
        if !links.is_empty() {
            success["links"] = Value::Object(links);
        }
    }
    responses.insert(status.to_string(), success);
    let mut errors: Vec<u16> = op.errors.to_vec();
    // 400: the guard refuses unknown parameters on every operation.
    errors.extend([400, 401, 403, 404]);
    errors.sort_unstable();
    errors.dedup();
    for e in errors {
        responses.insert(e.to_string(), error_response(status_description(e)));
    }
    out["responses"] = Value::Object(responses);
    out
}

/// OpenAPI links from a create (`.../Things.json`) to the operations on what it made
/// (`.../Things/{Sid}.json`) and under it (`.../Things/{ThingSid}/Parts.json`), so that generated
/// tests reach real resources. The create's own path parameters carry over; an operation that
/// needs any other SID is left out.
fn links_from_create(create: &Operation) -> Map<String, Value> {
    let Some(collection) = create.path.strip_suffix(".json") else {
        return Map::new();
    };
    let parent = path_param_names(create.path);
    OPERATIONS
        .iter()
        .filter_map(|op| {
            let rest = op.path.strip_prefix(collection)?.strip_prefix("/{")?;
            let made = &rest[..rest.find('}')?];
            // A new subaccount would link to every account-scoped operation and reach nothing
            // new: those are tested on the credentials' own account.
            if made == "AccountSid"
                || !path_param_names(op.path)
                    .iter()
                    .all(|n| *n == made || parent.contains(n))
            {
                return None;
            }
            let mut parameters = Map::new();
            // A participant is named by its call: it has no `sid` of its own.
            let id = if made == "CallSid" { "call_sid" } else { "sid" };
            parameters.insert(made.to_owned(), json!(format!("$response.body#/{id}")));
            for name in &parent {
                parameters.insert((*name).to_owned(), json!(format!("$request.path.{name}")));
            }
            Some((
                op.id.to_owned(),
                json!({ "operationId": op.id, "parameters": parameters }),
            ))
        })
        .collect()
}

/// The whole document, for a server reached at `public_url`.
pub(crate) fn document(public_url: &str) -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS.iter() {
        let item = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        item[op.method.as_str().to_ascii_lowercase()] = operation(op);
    }
    paths.insert(
        "/openapi.json".to_owned(),
        json!({ "get": {
            "operationId": "FetchOpenApi",
            "summary": "This document",
            "tags": ["OpenAPI"],
            "security": [],
            "responses": { "200": {
                "description": "The OpenAPI document",
                "content": { "application/json": { "schema": { "type": "object" } } },
            } },
        } }),
    );
    let mut schemas = Map::new();
    for shape in SHAPES {
        schemas.insert(shape_name(shape).to_owned(), shape_schema(shape));
    }
    for op in OPERATIONS.iter() {
        if let Reply::Page(key, shape) = op.reply {
            schemas.insert(
                format!("{}List", shape_name(shape)),
                page_schema(key, shape),
            );
        }
    }
    schemas.insert("Error".to_owned(), error_schema());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Dialtone REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!(
                "Twilio's 2010-04-01 voice and SMS API as served by Dialtone. Requests authenticate with HTTP \
                 Basic: the account SID and its auth token (primary or secondary), or an API key SID and \
                 secret. Request bodies are application/x-www-form-urlencoded, at most {BODY_LIMIT} bytes. \
                 A parameter that is neither in an operation's list nor one of Twilio's parameters for it \
                 (x-twilio-ignored-parameters: accepted, not acted on) is refused with 400, code 20001. \
                 Errors are JSON: code (Twilio's), message, more_info, status."
            ),
        },
        "servers": [{ "url": public_url.trim_end_matches('/') }],
        "security": [{ "basicAuth": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "basicAuth": { "type": "http", "scheme": "basic" } },
            "schemas": schemas,
        },
    })
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use model::{
        AccountRecord, AccountSid, ApiKeyRecord, ApiKeySid, ApplicationRecord, ApplicationSid,
        CallDirection, CallRecord, CallSid, CallStatus, NotificationRecord, NotificationSid,
        PhoneNumberRecord, PhoneNumberSid, RecordingRecord, RecordingSid,
    };

    use model::{
        ConferenceRecord, ConferenceSid, ConferenceStatus, CredentialListSid, CredentialSid,
        MemberRecord, ParticipantRecord, ParticipantStatus, QueueRecord, QueueSid, SipDomainSid,
    };
    use model::{MessageDirection, MessageRecord, MessageSid, MessageStatus};
    use store::sip::{
        CredentialListMapping, CredentialListRecord, CredentialRecord, SipDomainRecord,
        SipRegistrationRow, SipUserState,
    };

    use super::*;
    use crate::{render, sip};

    /// A small validator for the subset of JSON Schema the document uses; `schemas` resolves `$ref`s.
    fn check(value: &Value, schema: &Value, schemas: &Map<String, Value>, at: &str) {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/schemas/");
            return check(value, &schemas[name], schemas, at);
        }
        if value.is_null() {
            assert_eq!(
                schema["nullable"],
                json!(true),
                "{at} is null but not nullable"
            );
            return;
        }
        let ty = schema["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: no type in {schema}"));
        let ok = match ty {
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            other => panic!("{at}: type {other}"),
        };
        assert!(ok, "{at}: {value} is not a {ty}");
        if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
            assert!(n >= min, "{at}: {n} is below {min}");
        }
        if let Some(values) = schema["enum"].as_array() {
            assert!(values.contains(value), "{at}: {value} not in {values:?}");
        }
        if let Some(items) = value.as_array() {
            for (i, v) in items.iter().enumerate() {
                check(v, &schema["items"], schemas, &format!("{at}[{i}]"));
            }
        }
        if let (Some(obj), Some(props)) = (value.as_object(), schema["properties"].as_object()) {
            let have: Vec<&String> = obj.keys().collect();
            let want: Vec<&String> = props.keys().collect();
            assert_eq!(have, want, "{at}: fields differ from the schema");
            for (k, v) in obj {
                check(v, &props[k], schemas, &format!("{at}.{k}"));
            }
        }
    }

    fn samples() -> Vec<(Shape, Value)> {
        let now = Utc::now();
        let account = AccountRecord {
            sid: AccountSid::generate(),
            owner_account_sid: AccountSid::generate(),
            friendly_name: "A".into(),
            auth_token: "t".into(),
            secondary_auth_token: Some("s".into()),
            secondary_auth_token_created: Some(now),
            status: "active".into(),
            date_created: now,
            date_updated: now,
            console_crm_url: None,
        };
        let key = ApiKeyRecord {
            sid: ApiKeySid::generate(),
            account_sid: account.sid,
            friendly_name: "k".into(),
            date_created: now,
            date_updated: now,
        };
        let app = ApplicationRecord {
            sid: ApplicationSid::generate(),
            account_sid: account.sid,
            friendly_name: String::new(),
            voice_url: Some("https://a.example/v".into()),
            voice_method: "POST".into(),
            voice_fallback_url: None,
            voice_fallback_method: "GET".into(),
            status_callback: None,
            status_callback_method: "POST".into(),
            voice_caller_id_lookup: false,
            sms_url: None,
            sms_method: "POST".into(),
            sms_fallback_url: None,
            sms_fallback_method: "POST".into(),
            sms_status_callback: None,
            message_status_callback: None,
            public_application_connect_enabled: true,
            date_created: now,
            date_updated: now,
        };
        let number = PhoneNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: account.sid,
            friendly_name: "n".into(),
            phone_number: "+14155550100".into(),
            voice_url: None,
            voice_method: "POST".into(),
            voice_fallback_url: None,
            voice_fallback_method: "POST".into(),
            status_callback: Some("https://a.example/s".into()),
            status_callback_method: "POST".into(),
            sms_url: None,
            sms_method: "POST".into(),
            sms_fallback_url: None,
            sms_fallback_method: "POST".into(),
            sms_application_sid: None,
            date_created: now,
            date_updated: now,
        };
        let mut call = CallRecord {
            sid: CallSid::generate(),
            account_sid: account.sid,
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+1555".into(),
            to: "sip:a@b".into(),
            status: CallStatus::Queued,
            direction: CallDirection::OutboundApi,
            start_time: None,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: None,
        };
        let recording = RecordingRecord {
            sid: RecordingSid::generate(),
            account_sid: account.sid,
            call_sid: call.sid,
            conference_sid: None,
            duration: 3,
            channels: 1,
            status: "completed".into(),
            source: "RecordVerb".into(),
            start_time: now,
            date_created: now,
            date_updated: now,
            file_name: "x.wav".into(),
        };
        let notification = NotificationRecord {
            sid: NotificationSid::generate(),
            account_sid: account.sid,
            call_sid: Some(call.sid),
            error_code: 12100,
            log: 0,
            message_text: "m".into(),
            message_date: now,
            request_url: Some("https://a.example/v".into()),
            request_method: None,
            response_body: None,
            date_created: now,
            date_updated: now,
        };
        let mut out = vec![
            (Shape::Account, render::account(&account, true)),
            (Shape::Account, render::account(&account, false)),
            (Shape::Key, render::api_key(&key)),
            (Shape::NewKey, render::new_api_key(&key, "secret")),
            (Shape::Application, render::application(&app)),
            (Shape::Number, render::number(&number, None)),
            (Shape::Number, render::number(&number, Some(&app.sid))),
            (Shape::Call, render::call(&call)),
            (
                Shape::Recording,
                render::recording(&recording, "https://voice.example"),
            ),
            (Shape::Notification, render::notification(&notification)),
            (
                Shape::SecondaryAuthToken,
                render::secondary_auth_token(&account, "https://voice.example"),
            ),
            (
                Shape::PromotedAuthToken,
                render::promoted_auth_token(&account, now, "https://voice.example"),
            ),
        ];
        out.extend(sip_samples(account.sid));
        out.extend(queue_and_conference_samples(account.sid, recording.clone()));
        call.parent_call_sid = Some(CallSid::generate());
        call.phone_number_sid = Some(number.sid);
        call.status = CallStatus::Completed;
        call.start_time = Some(now);
        call.end_time = Some(now);
        call.duration = Some(12);
        call.answered_by = Some("human".into());
        out.push((Shape::Call, render::call(&call)));
        let mut sms_number = number.clone();
        sms_number.sms_url = Some("https://a.example/sms".into());
        sms_number.sms_fallback_url = Some("https://a.example/sms-fallback".into());
        sms_number.sms_application_sid = Some(app.sid);
        out.push((Shape::Number, render::number(&sms_number, None)));
        out.extend(message_samples(account.sid));
        out.extend(crate::usage::samples(account.sid).into_iter().map(|v| (Shape::UsageRecord, v)));
        let rates = store::RateTableRecord {
            account_sid: account.sid,
            rates: r#"{"rounding":"per-second","inbound":{"local":"0.01"},"outbound":{"+1555":"0.05"},"sms_inbound":"0.0075"}"#.into(),
            date_created: now,
            date_updated: now,
        };
        out.push((Shape::RateTable, crate::rates::render(&account.sid, &rates).unwrap()));
        out.push((Shape::RateTable, crate::rates::render(&AccountSid::generate(), &rates).unwrap()));
        out.extend(proxy_samples(account.sid));
        out
    }

    /// Messages queued and finished (optional fields unset and set), and SMSC routes.
    fn message_samples(account: AccountSid) -> Vec<(Shape, Value)> {
        let now = Utc::now();
        let mut message = MessageRecord {
            sid: MessageSid::generate(),
            account_sid: account,
            from: "+14155550100".into(),
            to: "+15005550006".into(),
            body: "Hello".into(),
            status: MessageStatus::Queued,
            direction: MessageDirection::OutboundApi,
            num_segments: 1,
            num_media: 0,
            error_code: None,
            error_message: None,
            price: None,
            price_unit: "USD".into(),
            api_version: "2010-04-01".into(),
            status_callback: None,
            application_sid: None,
            validity_period: None,
            smsc: None,
            attempts: 0,
            date_created: now,
            date_updated: now,
            date_sent: None,
        };
        let mut out = vec![(Shape::Message, render::message(&message))];
        message.status = MessageStatus::Undelivered;
        message.direction = MessageDirection::Inbound;
        message.error_code = Some(30003);
        message.error_message = Some("Unreachable destination handset".into());
        message.price = Some("-0.0075".into());
        message.date_sent = Some(now);
        message.smsc = Some("main".into());
        out.push((Shape::Message, render::message(&message)));
        let smsc = crate::SmscStatus {
            name: "main".into(),
            host: "smsc.example".into(),
            port: 2775,
            binds_configured: 2,
            binds_up: 1,
            queued: 3,
            submitted: 10,
            delivered: 8,
            failed: 1,
            throttled: 0,
        };
        out.push((Shape::Smsc, render::smsc(&smsc)));
        out.extend(quiet_hours_samples(account));
        out
    }

    /// A calling window (own and inherited, with and without hours and dates), overrides of a
    /// number and of a prefix, and a scheduled call.
    fn quiet_hours_samples(account: AccountSid) -> Vec<(Shape, Value)> {
        let now = Utc::now();
        let mut window = model::CallingWindowRecord {
            account_sid: account,
            hours: "mon-fri 09:00-18:00; sat 10:00-13:00".into(),
            dates_off: vec!["2026-12-25".into()],
            policy: "defer".into(),
            dial_policy: "refuse".into(),
            date_created: now,
            date_updated: now,
        };
        let mut out = vec![(Shape::CallingWindow, render::calling_window(&window, &account))];
        window.hours.clear();
        window.dates_off.clear();
        out.push((Shape::CallingWindow, render::calling_window(&window, &AccountSid::generate())));
        let mut o = model::TimeZoneOverrideRecord {
            sid: model::TimeZoneOverrideSid::generate(),
            account_sid: account,
            phone_number: Some("+14155550100".into()),
            prefix: None,
            time_zone: "America/Los_Angeles".into(),
            date_created: now,
            date_updated: now,
        };
        out.push((Shape::TimeZoneOverride, render::time_zone_override(&o)));
        o.phone_number = None;
        o.prefix = Some("+1212".into());
        out.push((Shape::TimeZoneOverride, render::time_zone_override(&o)));
        let call = model::CallRecord {
            sid: CallSid::generate(),
            account_sid: account,
            parent_call_sid: None,
            phone_number_sid: None,
            from: "+14155550100".into(),
            to: "+33142685300".into(),
            status: CallStatus::Scheduled,
            direction: model::CallDirection::OutboundApi,
            start_time: None,
            end_time: None,
            duration: None,
            answered_by: None,
            price: None,
            date_created: now,
            date_updated: now,
            date_scheduled: Some(now),
        };
        out.push((Shape::Call, render::call(&call)));
        let errors = [crate::numbers::BatchError {
            line: 2,
            phone_number: Some("+14155550100".into()),
            code: 21422,
            message: "PhoneNumber +14155550100 already exists".into(),
        }, crate::numbers::BatchError { line: 3, phone_number: None, code: 21421, message: "bad".into() }];
        out.push((Shape::NumberBatch, render::number_batch(&account, 5, &errors, "/x")));
        out.push((Shape::NumberBatch, render::number_batch(&account, 0, &[], "/x")));
        out
    }

    /// Queues, members, conferences, participants and conference recordings, with the optional
    /// fields both set and unset.
    fn queue_and_conference_samples(
        account: AccountSid,
        mut recording: RecordingRecord,
    ) -> Vec<(Shape, Value)> {
        let now = Utc::now();
        let queue = QueueRecord {
            sid: QueueSid::generate(),
            account_sid: account,
            friendly_name: "support".into(),
            max_size: QueueRecord::DEFAULT_MAX_SIZE,
            date_created: now,
            date_updated: now,
        };
        let member = MemberRecord {
            call_sid: CallSid::generate(),
            queue_sid: queue.sid,
            position: 1,
            wait_time: 0,
            date_enqueued: now,
        };
        let mut conference = ConferenceRecord {
            sid: ConferenceSid::generate(),
            account_sid: account,
            friendly_name: "standup".into(),
            status: ConferenceStatus::Init,
            region: ConferenceRecord::REGION.into(),
            reason_conference_ended: None,
            call_sid_ending_conference: None,
            date_created: now,
            date_updated: now,
        };
        let mut participant = ParticipantRecord {
            account_sid: account,
            conference_sid: conference.sid,
            call_sid: CallSid::generate(),
            label: None,
            muted: false,
            hold: false,
            coaching: false,
            call_sid_to_coach: None,
            end_conference_on_exit: false,
            start_conference_on_enter: true,
            status: ParticipantStatus::Queued,
            date_created: now,
            date_updated: now,
        };
        let mut out = vec![
            (
                Shape::Queue,
                render::queue(&queue, crate::QueueStats::default()),
            ),
            (
                Shape::Queue,
                render::queue(
                    &queue,
                    crate::QueueStats {
                        current_size: 3,
                        average_wait_time: 41,
                    },
                ),
            ),
            (Shape::Member, render::member(&member, &account)),
            (Shape::Conference, render::conference(&conference)),
            (Shape::Participant, render::participant(&participant, true)),
            (Shape::Participant, render::participant(&participant, false)),
        ];
        conference.status = ConferenceStatus::Completed;
        conference.reason_conference_ended = Some("last-participant-left".into());
        conference.call_sid_ending_conference = Some(participant.call_sid);
        participant.label = Some("agent 7".into());
        participant.coaching = true;
        participant.call_sid_to_coach = Some(CallSid::generate());
        participant.status = ParticipantStatus::Connected;
        recording.conference_sid = Some(conference.sid);
        recording.source = "Conference".into();
        out.extend([
            (Shape::Conference, render::conference(&conference)),
            (Shape::Participant, render::participant(&participant, false)),
            (
                Shape::Recording,
                render::recording(&recording, "https://voice.example"),
            ),
            (
                Shape::ConferenceRecording,
                render::conference_recording(&recording, &conference.sid),
            ),
        ]);
        out
    }

    /// Every SIP shape `crate::sip` renders, with the optional fields both set and unset.
    fn sip_samples(account: AccountSid) -> Vec<(Shape, Value)> {
        let now = Utc::now();
        let mut domain = SipDomainRecord {
            sid: SipDomainSid::generate(),
            account_sid: account,
            domain_name: "acme.sip.example".into(),
            friendly_name: String::new(),
            voice_url: None,
            voice_method: "POST".into(),
            voice_fallback_url: None,
            voice_fallback_method: "POST".into(),
            voice_status_callback_url: None,
            voice_status_callback_method: "GET".into(),
            sip_registration: true,
            date_created: now,
            date_updated: now,
        };
        let list = CredentialListRecord {
            sid: CredentialListSid::generate(),
            account_sid: account,
            friendly_name: "agents".into(),
            date_created: now,
            date_updated: now,
        };
        let credential = CredentialRecord {
            sid: CredentialSid::generate(),
            account_sid: account,
            credential_list_sid: list.sid,
            username: "alice".into(),
            date_created: now,
            date_updated: now,
        };
        let mapping = CredentialListMapping {
            account_sid: account,
            domain_sid: domain.sid,
            credential_list_sid: list.sid,
            friendly_name: "agents".into(),
            date_created: now,
        };
        let binding = |contact: &str, secs| SipRegistrationRow {
            account_sid: account,
            username: "alice".into(),
            contact: contact.into(),
            source: "127.0.0.1:5062".into(),
            transport: "udp".into(),
            expires_at: now + chrono::Duration::seconds(secs),
            presence: "available".into(),
        };
        let offline = SipUserState {
            username: "bob".into(),
            bindings: vec![],
            in_call: false,
        };
        let busy = SipUserState {
            username: "alice".into(),
            // One binding past its expiry: `expires` stays at 0, never negative.
            bindings: vec![
                binding("<sip:alice@127.0.0.1:5062>", 300),
                binding("<sip:alice@127.0.0.1:5064>", -5),
            ],
            in_call: true,
        };
        let mut out = vec![(Shape::SipDomain, sip::domain_json(&domain))];
        domain.voice_url = Some("https://a.example/v".into());
        domain.voice_fallback_url = Some("https://a.example/f".into());
        domain.voice_status_callback_url = Some("https://a.example/s".into());
        domain.sip_registration = false;
        out.extend([
            (Shape::SipDomain, sip::domain_json(&domain)),
            (Shape::SipCredentialList, sip::list_json(&list)),
            (Shape::SipCredential, sip::credential_json(&credential)),
            (Shape::SipCredentialListMapping, sip::mapping_json(&mapping)),
            (
                Shape::SipRegistration,
                sip::registration_json(&account, &offline, now),
            ),
            (
                Shape::SipRegistration,
                sip::registration_json(&account, &busy, now),
            ),
        ]);
        out
    }

    /// Every Proxy shape, with the optional fields both set and unset.
    fn proxy_samples(account: AccountSid) -> Vec<(Shape, Value)> {
        use model::{ProxyInteractionSid, ProxyParticipantSid, ProxyServiceSid, ProxySessionSid};
        use store::proxy::*;
        let now = Utc::now();
        let url = "https://voice.example";
        let mut service = ProxyServiceRecord {
            sid: ProxyServiceSid::generate(),
            account_sid: account,
            unique_name: "taxi".into(),
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
        let mut out = vec![(Shape::ProxyService, crate::proxy::service_json(url, &service))];
        service.callback_url = Some("https://app.example/cb".into());
        service.intercept_callback_url = Some("https://app.example/i".into());
        service.out_of_session_callback_url = Some("https://app.example/o".into());
        service.chat_instance_sid = Some("IS1".into());
        out.push((Shape::ProxyService, crate::proxy::service_json(url, &service)));
        let number = ProxyNumberRecord {
            sid: PhoneNumberSid::generate(),
            account_sid: account,
            service_sid: service.sid,
            phone_number: "+15005550006".into(),
            friendly_name: "pool".into(),
            is_reserved: false,
            in_use: 3,
            date_created: now,
            date_updated: now,
        };
        out.push((Shape::ProxyPhoneNumber, crate::proxy::number_json(url, &number)));
        let mut session = ProxySessionRecord {
            sid: ProxySessionSid::generate(),
            account_sid: account,
            service_sid: service.sid,
            unique_name: None,
            status: "open".into(),
            closed_reason: None,
            ttl: 0,
            mode: "voice-and-message".into(),
            date_expiry: None,
            date_started: None,
            date_ended: None,
            date_last_interaction: None,
            date_created: now,
            date_updated: now,
        };
        out.push((Shape::ProxySession, crate::proxy::session_json(url, &session)));
        session.unique_name = Some("ride 7".into());
        session.status = "closed".into();
        session.closed_reason = Some("ttl".into());
        session.ttl = 60;
        session.date_started = Some(now);
        session.date_ended = Some(now);
        session.date_last_interaction = Some(now);
        session.date_expiry = Some(now);
        out.push((Shape::ProxySession, crate::proxy::session_json(url, &session)));
        let mut participant = ProxyParticipantRecord {
            sid: ProxyParticipantSid::generate(),
            account_sid: account,
            service_sid: service.sid,
            session_sid: session.sid,
            identifier: "+14155550100".into(),
            friendly_name: None,
            proxy_identifier: number.phone_number.clone(),
            proxy_identifier_sid: number.sid,
            date_created: now,
            date_updated: now,
        };
        out.push((Shape::ProxyParticipant, crate::proxy::participant_json(url, &participant)));
        participant.friendly_name = Some("Alice".into());
        out.push((Shape::ProxyParticipant, crate::proxy::participant_json(url, &participant)));
        let mut interaction = ProxyInteractionRecord {
            sid: ProxyInteractionSid::generate(),
            account_sid: account,
            service_sid: service.sid,
            session_sid: session.sid,
            kind: "voice".into(),
            data: None,
            participant_sid: None,
            inbound_participant_sid: None,
            inbound_resource_sid: None,
            inbound_resource_status: None,
            outbound_participant_sid: None,
            outbound_resource_sid: None,
            outbound_resource_status: None,
            date_created: now,
            date_updated: now,
        };
        out.push((Shape::ProxyInteraction, crate::proxy::interaction_json(url, &interaction, None)));
        interaction.inbound_participant_sid = Some(participant.sid);
        interaction.inbound_resource_sid = Some(CallSid::generate().to_string());
        interaction.inbound_resource_status = Some("completed".into());
        interaction.outbound_participant_sid = Some(participant.sid);
        interaction.outbound_resource_sid = Some(CallSid::generate().to_string());
        interaction.outbound_resource_status = Some("queued-ish".into());
        out.push((Shape::ProxyInteraction, crate::proxy::interaction_json(url, &interaction, None)));
        interaction.kind = "message".into();
        interaction.data = Some("{\"body\":\"hi\"}".into());
        interaction.outbound_resource_sid = Some(MessageSid::generate().to_string());
        out.push((Shape::ProxyMessageInteraction, crate::proxy::interaction_json(url, &interaction, Some(&participant.sid))));
        out
    }

    #[test]
    fn every_rendered_shape_matches_its_schema() {
        let doc = document("https://voice.example");
        let schemas = doc["components"]["schemas"].as_object().unwrap().clone();
        let samples = samples();
        for shape in SHAPES {
            assert!(
                samples.iter().any(|(s, _)| *s == shape),
                "no sample of {shape:?}"
            );
        }
        for (shape, value) in samples {
            check(&value, &shape_schema(shape), &schemas, shape_name(shape));
        }
        let err = json!({ "code": 20404, "message": "m", "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404 });
        check(&err, &schemas["Error"], &schemas, "Error");
    }

    #[test]
    fn schema_names_are_distinct() {
        // A resource's name and another's list name (`SipCredentialList`) once collided, and the
        // document silently served one schema for both.
        let mut pages: Vec<Shape> = Vec::new();
        for op in OPERATIONS.iter() {
            if let Reply::Page(_, shape) = op.reply {
                if !pages.contains(&shape) {
                    pages.push(shape);
                }
            }
        }
        let mut names: Vec<String> = SHAPES.iter().map(|s| shape_name(*s).to_owned()).collect();
        names.extend(pages.iter().map(|s| format!("{}List", shape_name(*s))));
        names.push("Error".to_owned());
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all, "{names:?}");
        assert_eq!(
            document("https://voice.example")["components"]["schemas"]
                .as_object()
                .unwrap()
                .len(),
            all
        );
    }

    #[test]
    fn the_document_covers_every_operation_with_auth_and_errors() {
        let doc = document("https://voice.example/");
        assert_eq!(doc["servers"][0]["url"], "https://voice.example");
        assert_eq!(
            doc["components"]["securitySchemes"]["basicAuth"]["scheme"],
            "basic"
        );
        for op in OPERATIONS.iter() {
            let o = &doc["paths"][op.path][op.method.as_str().to_ascii_lowercase()];
            assert_eq!(o["operationId"], op.id);
            for status in ["401", "404"] {
                assert_eq!(
                    o["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{} {status}",
                    op.id
                );
            }
            for p in o["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert!(
                        p["schema"]["pattern"]
                            .as_str()
                            .is_some_and(|s| s.len() > 15),
                        "{} {}",
                        op.id,
                        p["name"]
                    );
                }
            }
        }
        let create = &doc["paths"]["/2010-04-01/Accounts/{AccountSid}/Calls.json"]["post"];
        let form = &create["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
        assert_eq!(form["required"], json!(["To", "From"]));
        assert_eq!(form["properties"]["Timeout"]["type"], "integer");
        assert_eq!(form["properties"]["StatusCallbackEvent"]["type"], "array");
        assert!(create["responses"]["201"].is_object());
        assert!(create["responses"]["413"].is_object());
        assert_eq!(
            create["responses"]["201"]["links"]["FetchCall"]["parameters"]["Sid"],
            "$response.body#/sid"
        );
        // A nested create links to its item with the parent's SIDs carried over.
        let credentials = "/2010-04-01/Accounts/{AccountSid}/SIP/CredentialLists/{CredentialListSid}/Credentials.json";
        let link = &doc["paths"][credentials]["post"]["responses"]["201"]["links"]
            ["FetchSipCredential"]["parameters"];
        assert_eq!(link["CredentialListSid"], "$request.path.CredentialListSid");
        assert_eq!(link["AccountSid"], "$request.path.AccountSid");
        let registrations =
            &doc["paths"]["/2010-04-01/Accounts/{AccountSid}/SIP/Registrations.json"]["get"];
        assert_eq!(
            registrations["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/SipRegistrationList"
        );
        let list_create = &doc["paths"]
            ["/2010-04-01/Accounts/{AccountSid}/SIP/CredentialLists.json"]["post"]["responses"]
            ["201"];
        assert_eq!(
            list_create["links"]["CreateSipCredential"]["parameters"]["CredentialListSid"],
            "$response.body#/sid"
        );
        assert!(
            list_create["links"]["FetchSipCredential"].is_null(),
            "needs a credential SID the create does not give"
        );
        let list = &doc["components"]["schemas"]["CallList"];
        assert!(list["required"]
            .as_array()
            .unwrap()
            .contains(&json!("next_page_uri")));
    }
}
