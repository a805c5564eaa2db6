"""Every field the official twilio-python SDK reads, present in our raw JSON with Twilio's type and
format, for Accounts, Calls, Recordings, IncomingPhoneNumbers, Applications, Keys, Queues and their
Members, Conferences, their Participants and their Recordings.

The field list is not typed by hand: it is read from the installed SDK's instance classes (each
`XInstance.__init__` assigns `self.attr: Annotation = [deserialize.fn(]payload.get("key")[)]`), so
a newer SDK that reads a new field makes this test check it too. The expected JSON type and format
of each field come from Twilio's OpenAPI description (twilio-oai, spec/json/twilio_api_v2010.json)
and are encoded in RULES below; a field the rules do not name is held to the type the SDK's own
annotation and deserializer give it. Every problem of a resource is listed in one failure.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import requests

import audio
from conftest import CALLER, NUMBER, SIGNED_REQUESTS
from peers import PEERS, finish_pjsua2, run_pjsua2
from server import DialtoneServer
from test_sdk_scenarios import WAIT_MUSIC, LiveCalls, enqueue_twiml, room_twiml, wait_until
from webhook import Webhook

# Resource name -> (module, instance class) of twilio-python.
SDK_INSTANCES = {
    "account": ("twilio.rest.api.v2010.account", "AccountInstance"),
    "call": ("twilio.rest.api.v2010.account.call", "CallInstance"),
    "recording": ("twilio.rest.api.v2010.account.recording", "RecordingInstance"),
    "incoming_phone_number": ("twilio.rest.api.v2010.account.incoming_phone_number",
                              "IncomingPhoneNumberInstance"),
    "application": ("twilio.rest.api.v2010.account.application", "ApplicationInstance"),
    "key": ("twilio.rest.api.v2010.account.key", "KeyInstance"),
    "new_key": ("twilio.rest.api.v2010.account.new_key", "NewKeyInstance"),
    "queue": ("twilio.rest.api.v2010.account.queue", "QueueInstance"),
    "member": ("twilio.rest.api.v2010.account.queue.member", "MemberInstance"),
    "conference": ("twilio.rest.api.v2010.account.conference", "ConferenceInstance"),
    "participant": ("twilio.rest.api.v2010.account.conference.participant", "ParticipantInstance"),
    "conference_recording": ("twilio.rest.api.v2010.account.conference.recording", "RecordingInstance"),
    "message": ("twilio.rest.api.v2010.account.message", "MessageInstance"),
}
# What names a resource and when it began: its own SID and date_created, except for the two that
# have no SID of their own (a member and a participant are named by their call).
IDENTITY = {"member": ("call_sid", "date_enqueued"), "participant": ("call_sid", "date_created")}


@dataclass(frozen=True)
class SdkField:
    key: str          # the JSON key, as in payload.get("key")
    annotation: str   # e.g. "Optional[datetime]", "Optional['CallInstance.Status']"
    deserializer: str | None  # e.g. "rfc2822_datetime", "integer"; None when read as is


def sdk_fields(resource: str) -> dict[str, SdkField]:
    """The JSON keys the SDK's instance class reads, from the source of its __init__."""
    module, cls_name = SDK_INSTANCES[resource]
    cls = getattr(importlib.import_module(module), cls_name)
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.__init__)))
    fields: dict[str, SdkField] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.AnnAssign):
            continue
        key = deserializer = None
        for call in (n for n in ast.walk(node.value) if isinstance(n, ast.Call)):
            f = call.func
            if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)):
                continue
            if f.value.id == "payload" and f.attr == "get" and call.args \
                    and isinstance(call.args[0], ast.Constant):
                key = call.args[0].value
            elif f.value.id == "deserialize":
                deserializer = f.attr
        if key is not None:
            fields[key] = SdkField(key, ast.unparse(node.annotation), deserializer)
    return fields


# --- what Twilio sends for each field (twilio-oai) ------------------------------------------------

RFC2822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
                     r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
                     r"\d{2}:\d{2}:\d{2} \+0000$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")

# SID fields and their prefixes (the spec's `^XX[0-9a-fA-F]{32}$` patterns).
SID_PREFIX = {
    "account_sid": "AC", "owner_account_sid": "AC", "call_sid": "CA", "parent_call_sid": "CA",
    "phone_number_sid": "PN", "voice_application_sid": "AP", "sms_application_sid": "AP",
    "trunk_sid": "TK", "address_sid": "AD", "emergency_address_sid": "AD", "identity_sid": "RI",
    "bundle_sid": "BU", "group_sid": "GP", "conference_sid": "CF", "queue_sid": "QU",
    "call_sid_to_coach": "CA", "call_sid_ending_conference": "CA", "messaging_service_sid": "MG",
}
OWN_SID_PREFIX = {"account": "AC", "call": "CA", "recording": "RE", "incoming_phone_number": "PN",
                  "application": "AP", "key": "SK", "new_key": "SK", "queue": "QU", "conference": "CF",
                  "conference_recording": "RE", "message": "SM"}

ENUMS = {
    ("account", "status"): {"active", "suspended", "closed"},
    ("account", "type"): {"Trial", "Full"},
    ("call", "status"): {"queued", "ringing", "in-progress", "completed", "busy", "failed",
                         "no-answer", "canceled"},
    ("call", "direction"): {"inbound", "outbound-api", "outbound-dial", "trunking-terminating",
                            "trunking-originating"},
    ("recording", "status"): {"in-progress", "paused", "stopped", "processing", "completed",
                              "absent", "deleted"},
    ("recording", "source"): {"DialVerb", "Conference", "OutboundAPI", "Trunking", "RecordVerb",
                              "StartCallRecordingAPI", "StartConferenceRecordingAPI"},
    ("incoming_phone_number", "address_requirements"): {"none", "any", "local", "foreign"},
    ("incoming_phone_number", "voice_receive_mode"): {"voice", "fax"},
    ("incoming_phone_number", "emergency_status"): {"Active", "Inactive"},
    ("incoming_phone_number", "emergency_address_status"): {
        "registered", "unregistered", "pending-registration", "registration-failure",
        "pending-unregistration", "unregistration-failure"},
    ("conference", "status"): {"init", "in-progress", "completed"},
    ("conference", "reason_conference_ended"): {
        "conference-ended-via-api", "participant-with-end-conference-on-exit-left",
        "participant-with-end-conference-on-exit-kicked", "last-participant-kicked",
        "last-participant-left"},
    # "where the conference audio was mixed. May be us1, ie1, de1, sg1, br1, au1, and jp1."
    ("conference", "region"): {"us1", "ie1", "de1", "sg1", "br1", "au1", "jp1"},
    ("participant", "status"): {"queued", "connecting", "ringing", "connected", "complete", "failed"},
    ("conference_recording", "status"): {"in-progress", "paused", "stopped", "processing", "completed",
                                         "absent"},
    ("conference_recording", "source"): {"DialVerb", "Conference", "OutboundAPI", "Trunking",
                                         "RecordVerb", "StartCallRecordingAPI",
                                         "StartConferenceRecordingAPI"},
    ("message", "status"): {"queued", "sending", "sent", "failed", "delivered", "undelivered",
                            "receiving", "received", "accepted", "scheduled", "read",
                            "partially_delivered", "canceled"},
    ("message", "direction"): {"inbound", "outbound-api", "outbound-call", "outbound-reply"},
}

# Fields Twilio sends as null (or, for a few number fields, "") on resources like the ones made
# here: nothing priced, no conference, no SMS application, no trunk, no address or bundle; a room
# still in progress has no end reason; a participant that joined by TwiML has no label, one that
# coaches nobody no call to coach, and only the reply to a create has a queue_time. The tests
# below check the ones that must be set where they must (an ended room's reason, a recording's
# conference).
NULLABLE = {
    "call": {"parent_call_sid", "phone_number_sid", "price", "answered_by", "forwarded_from",
             "group_sid", "caller_name", "stir_verstat", "trunk_sid", "annotation"},
    "recording": {"conference_sid", "price", "error_code", "encryption_details"},
    "incoming_phone_number": {"address_sid", "identity_sid", "sms_application_sid", "trunk_sid",
                              "voice_application_sid", "emergency_address_sid", "bundle_sid",
                              "sms_url", "sms_fallback_url", "voice_url", "voice_fallback_url",
                              "status_callback"},
    "application": {"message_status_callback", "sms_fallback_url", "sms_status_callback",
                    "sms_url", "status_callback", "voice_url", "voice_fallback_url"},
    "conference": {"reason_conference_ended", "call_sid_ending_conference"},
    "participant": {"label", "call_sid_to_coach", "queue_time"},
    "conference_recording": {"call_sid", "price", "error_code", "encryption_details"},
    # A message not yet sent: no send date, price or error; no messaging service.
    "message": {"messaging_service_sid", "price", "error_code", "error_message", "date_sent"},
}
EMPTY_STRING_OK = {("incoming_phone_number", k) for k in (
    "sms_application_sid", "voice_application_sid", "sms_url", "sms_fallback_url", "voice_url",
    "voice_fallback_url", "status_callback")}

BOOLEANS = {"beta", "voice_caller_id_lookup", "public_application_connect_enabled"}
INTEGERS = {"channels", "error_code"}
METHODS = {"voice_method", "voice_fallback_method", "status_callback_method", "sms_method",
           "sms_fallback_method"}
URLS = {"voice_url", "voice_fallback_url", "status_callback", "sms_url", "sms_fallback_url",
        "sms_status_callback", "message_status_callback", "media_url"}
DATES = {"date_created", "date_updated", "start_time", "end_time"}
# Counts that Twilio sends as strings of digits ("-1" for a recording still in progress).
DIGIT_STRINGS = {"duration", "queue_time", "num_segments", "num_media"}


def is_url(v) -> bool:
    u = urlparse(v) if isinstance(v, str) else None
    return bool(u and u.scheme in ("http", "https") and u.netloc)


def check_field(resource: str, f: SdkField, present: bool, value) -> str | None:
    """None when `value` is what Twilio would send for this field, else what is wrong."""
    key = f.key
    if not present:
        return f"missing (the SDK reads payload.get({key!r}) into {f.annotation})"
    if value is None:
        if key in NULLABLE.get(resource, set()):
            return None
        return "null, but Twilio always sends a value here"
    if value == "" and (resource, key) in EMPTY_STRING_OK:
        return None
    got = f"{type(value).__name__} {value!r}"
    if key == "sid":
        prefix = OWN_SID_PREFIX[resource]
        ok = isinstance(value, str) and re.fullmatch(prefix + r"[0-9a-fA-F]{32}", value)
        return None if ok else f"{got}: not a {prefix} SID"
    if key in SID_PREFIX:
        ok = isinstance(value, str) and re.fullmatch(SID_PREFIX[key] + r"[0-9a-fA-F]{32}", value)
        return None if ok else f"{got}: not a {SID_PREFIX[key]} SID"
    if key in DATES or f.deserializer == "rfc2822_datetime":
        from twilio.base import deserialize
        ok = isinstance(value, str) and RFC2822.match(value) \
            and not isinstance(deserialize.rfc2822_datetime(value), str)
        return None if ok else f"{got}: not an RFC 2822 date in GMT ('Tue, 31 Aug 2010 20:36:28 +0000')"
    if (resource, key) in ENUMS:
        allowed = ENUMS[(resource, key)]
        return None if value in allowed else f"{got}: not one of {sorted(allowed)}"
    if key == "uri":
        ok = isinstance(value, str) and value.startswith("/2010-04-01/") and value.endswith(".json")
        return None if ok else f"{got}: not a /2010-04-01/... path ending in .json"
    if key == "subresource_uris":
        if not isinstance(value, dict) or not value:
            return f"{got}: not a non-empty object of URIs"
        bad = {k: v for k, v in value.items()
               if not (isinstance(v, str) and v.startswith("/2010-04-01/") and v.endswith(".json"))}
        return None if not bad else f"entries that are not /2010-04-01/....json paths: {bad}"
    if key == "capabilities":
        # The spec's phone-number-capabilities object, whatever the SDK's annotation says.
        ok = isinstance(value, dict) and all(isinstance(value.get(k), bool)
                                             for k in ("voice", "sms", "mms", "fax"))
        return None if ok else f"{got}: not an object of booleans voice, sms, mms, fax"
    if key in BOOLEANS or f.annotation == "Optional[bool]":
        return None if isinstance(value, bool) else f"{got}: not a boolean"
    if key in INTEGERS or f.deserializer == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else f"{got}: not an integer"
    if key in METHODS:
        return None if value in ("GET", "POST") else f"{got}: not GET or POST"
    if key in URLS:
        return None if is_url(value) else f"{got}: not an absolute http(s) URL"
    if key == "phone_number":
        return None if isinstance(value, str) and E164.match(value) else f"{got}: not E.164"
    if key in DIGIT_STRINGS:
        ok = isinstance(value, str) and re.fullmatch(r"-?\d+", value)
        return None if ok else f"{got}: not a string of digits"
    if key == "api_version":
        return None if value == "2010-04-01" else f"{got}: not '2010-04-01'"
    if key == "encryption_details" or f.annotation.startswith("Optional[Dict"):
        return None if isinstance(value, dict) else f"{got}: not an object"
    if f.annotation.startswith("Optional[List"):
        return None if isinstance(value, list) else f"{got}: not an array"
    # Plain strings (names, tokens, formatted numbers, price units, open enums).
    return None if isinstance(value, str) and (value or key == "friendly_name") \
        else f"{got}: not a non-empty string"


def problems_of(resource: str, body: dict, where: str) -> list[str]:
    out = []
    for f in sdk_fields(resource).values():
        why = check_field(resource, f, f.key in body, body.get(f.key))
        if why:
            out.append(f"{where}: {f.key}: {why}")
    return out


def assert_shapes(checks: list[tuple[str, dict, str]]) -> None:
    problems = [p for resource, body, where in checks for p in problems_of(resource, body, where)]
    assert not problems, "fields the SDK reads that differ from Twilio's:\n  " + "\n  ".join(problems)


# --- the tests -----------------------------------------------------------------------------------

class Api:
    """Raw HTTP against the server (the SDK would hide missing or mistyped fields)."""

    def __init__(self, dialtone, account_sid: str | None = None, token: str | None = None):
        self.base = dialtone.http_url
        self.auth = (account_sid or dialtone.account_sid, token or dialtone.auth_token)

    def get(self, path: str) -> dict:
        r = requests.get(self.base + path, auth=self.auth, timeout=15)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def post(self, path: str, data: dict) -> dict:
        r = requests.post(self.base + path, data=data, auth=self.auth, timeout=15)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
        return r.json()


def test_the_field_lists_come_from_the_sdk():
    """The introspection finds each class's fields (an SDK that changed its code layout would
    otherwise make every other test here check nothing)."""
    for resource in SDK_INSTANCES:
        fields = sdk_fields(resource)
        name, date = IDENTITY.get(resource, ("sid", "date_created"))
        assert name in fields and date in fields, (resource, sorted(fields))
        assert fields[date].deserializer == "rfc2822_datetime", (resource, fields[date])
    call = sdk_fields("call")
    assert {"from", "to", "status", "start_time", "end_time", "subresource_uris"} <= set(call)
    assert len(call) >= 25, sorted(call)
    assert sdk_fields("recording")["channels"].deserializer == "integer"
    assert "secret" in sdk_fields("new_key") and "secret" not in sdk_fields("key")
    assert {"current_size", "average_wait_time", "max_size"} <= set(sdk_fields("queue"))
    assert sdk_fields("queue")["current_size"].deserializer == "integer"
    assert {"position", "wait_time", "queue_sid"} <= set(sdk_fields("member"))
    assert {"reason_conference_ended", "status", "region"} <= set(sdk_fields("conference"))
    assert {"muted", "hold", "coaching", "label", "status"} <= set(sdk_fields("participant"))
    assert sdk_fields("participant")["muted"].annotation == "Optional[bool]"
    assert "conference_sid" in sdk_fields("conference_recording")
    assert "media_url" not in sdk_fields("conference_recording")
    # A wrong value is caught, so the checks below can fail.
    f = sdk_fields("call")["start_time"]
    assert check_field("call", f, True, "2024-01-01T00:00:00Z")
    assert check_field("call", f, False, None)
    assert check_field("call", f, True, "Mon, 01 Jan 2024 00:00:00 +0000") is None


def test_account_and_key_shapes(dialtone):
    api = Api(dialtone)
    sid = dialtone.account_sid
    main = api.get(f"/2010-04-01/Accounts/{sid}.json")
    sub = api.post("/2010-04-01/Accounts.json", {"FriendlyName": "shapes"})
    listed = api.get("/2010-04-01/Accounts.json")["accounts"]
    new_key = api.post(f"/2010-04-01/Accounts/{sid}/Keys.json", {"FriendlyName": "shapes key"})
    key = api.get(f"/2010-04-01/Accounts/{sid}/Keys/{new_key['sid']}.json")
    keys = api.get(f"/2010-04-01/Accounts/{sid}/Keys.json")["keys"]
    assert listed and keys
    assert_shapes([
        ("account", main, "GET Accounts/{AC}.json"),
        ("account", sub, "POST Accounts.json"),
        ("account", listed[0], "GET Accounts.json accounts[0]"),
        ("new_key", new_key, "POST Keys.json"),
        ("key", key, "GET Keys/{SK}.json"),
        ("key", keys[0], "GET Keys.json keys[0]"),
    ])


def test_application_and_number_shapes(dialtone, webhook):
    api = Api(dialtone)
    acc = f"/2010-04-01/Accounts/{dialtone.account_sid}"
    voice = webhook.route("/voice", "<Response><Hangup/></Response>")
    app = api.post(f"{acc}/Applications.json", {"FriendlyName": "shapes", "VoiceUrl": voice})
    app_fetched = api.get(f"{acc}/Applications/{app['sid']}.json")
    apps = api.get(f"{acc}/Applications.json")["applications"]
    number = api.post(f"{acc}/IncomingPhoneNumbers.json",
                      {"PhoneNumber": "+15550003333", "VoiceUrl": voice})
    with_app = api.post(f"{acc}/IncomingPhoneNumbers.json",
                        {"PhoneNumber": "+15550003334", "VoiceApplicationSid": app["sid"]})
    number_fetched = api.get(f"{acc}/IncomingPhoneNumbers/{number['sid']}.json")
    numbers = api.get(f"{acc}/IncomingPhoneNumbers.json")["incoming_phone_numbers"]
    assert apps and len(numbers) == 2
    assert with_app.get("voice_application_sid") == app["sid"], with_app
    assert_shapes([
        ("application", app, "POST Applications.json"),
        ("application", app_fetched, "GET Applications/{AP}.json"),
        ("application", apps[0], "GET Applications.json applications[0]"),
        ("incoming_phone_number", number, "POST IncomingPhoneNumbers.json"),
        ("incoming_phone_number", with_app, "POST IncomingPhoneNumbers.json (VoiceApplicationSid)"),
        ("incoming_phone_number", number_fetched, "GET IncomingPhoneNumbers/{PN}.json"),
        ("incoming_phone_number", numbers[0], "GET IncomingPhoneNumbers.json [0]"),
    ])


def test_call_and_recording_shapes(dialtone, webhook, ports, workdir, audio_tools):
    """A real inbound call that leaves a recording: the completed call and the recording."""
    api = Api(dialtone)
    acc = f"/2010-04-01/Accounts/{dialtone.account_sid}"
    number = "+15550004444"
    voice = webhook.route("/voice", '<Response><Record maxLength="3" playBeep="false" '
                                    'action="/recorded"/></Response>')
    webhook.route("/recorded", "<Response><Hangup/></Response>")
    api.post(f"{acc}/IncomingPhoneNumbers.json", {"PhoneNumber": number, "VoiceUrl": voice})
    mic = audio.synthesize("Shapes of a call and its recording", workdir / "mic.wav",
                           pad_before=0.3, pad_after=6)
    report = run_pjsua2(workdir, uri=f"sip:{number}@127.0.0.1:{dialtone.sip_port}",
                        sip_port=ports.port(), rtp_port=ports.block(100)[0], play=mic,
                        duration=10, timeout=20, user=CALLER)
    assert report["connected"], report
    recorded = webhook.wait_for("/recorded", timeout=15)[0].params
    call_sid, rec_sid = recorded["CallSid"], recorded["RecordingSid"]

    call = None
    for _ in range(50):  # the call record is closed once the BYE is through
        call = api.get(f"{acc}/Calls/{call_sid}.json")
        if call.get("status") == "completed":
            break
        time.sleep(0.2)
    assert call and call.get("status") == "completed", call
    calls = api.get(f"{acc}/Calls.json")["calls"]
    recording = api.get(f"{acc}/Recordings/{rec_sid}.json")
    recordings = api.get(f"{acc}/Recordings.json")["recordings"]
    call_recordings = api.get(f"{acc}/Calls/{call_sid}/Recordings.json")["recordings"]
    assert calls and recordings and call_recordings
    assert_shapes([
        ("call", call, "GET Calls/{CA}.json (completed)"),
        ("call", calls[0], "GET Calls.json calls[0]"),
        ("recording", recording, "GET Recordings/{RE}.json"),
        ("recording", recordings[0], "GET Recordings.json recordings[0]"),
        ("recording", call_recordings[0], "GET Calls/{CA}/Recordings.json recordings[0]"),
    ])


def test_queue_and_member_shapes(dialtone, webhook):
    """Queues made, listed, fetched and updated; two real callers waiting in one: the queue with
    its live figures, the members listed, fetched by CallSid and Front, and the one dequeued."""
    api = Api(dialtone)
    acc = f"/2010-04-01/Accounts/{dialtone.account_sid}"
    created = api.post(f"{acc}/Queues.json", {"FriendlyName": "shapes", "MaxSize": "7"})
    sid = created["sid"]
    listed = api.get(f"{acc}/Queues.json")["queues"]
    updated = api.post(f"{acc}/Queues/{sid}.json", {"MaxSize": "8"})
    assert listed and updated.get("max_size") == 8, (listed, updated)

    voice = webhook.route("/voice", enqueue_twiml("shapes"))
    webhook.route("/wait", WAIT_MUSIC)
    webhook.route("/dequeued", "<Response><Hangup/></Response>")
    api.post(f"{acc}/IncomingPhoneNumbers.json", {"PhoneNumber": NUMBER, "VoiceUrl": voice})
    calls = LiveCalls(dialtone)
    callers = ["+15557650021", "+15557650022"]
    try:
        for n, caller in enumerate(callers, start=1):
            calls.start(NUMBER, caller)
            wait_until(lambda: api.get(f"{acc}/Queues/{sid}.json").get("current_size") == n, 10,
                       f"{n} callers in the queue")
        time.sleep(1.1)
        waiting = api.get(f"{acc}/Queues/{sid}.json")
        members = api.get(f"{acc}/Queues/{sid}/Members.json")["queue_members"]
        assert len(members) == 2, members
        by_sid = api.get(f"{acc}/Queues/{sid}/Members/{members[1]['call_sid']}.json")
        front = api.get(f"{acc}/Queues/{sid}/Members/Front.json")
        dequeued = api.post(f"{acc}/Queues/{sid}/Members/Front.json", {"Url": webhook.url("/dequeued")})
        api.post(f"{acc}/Queues/{sid}/Members/{members[1]['call_sid']}.json",
                 {"Url": webhook.url("/dequeued"), "Method": "GET"})
        for caller in callers:
            calls.ended_by_server(caller)
    finally:
        calls.close()
    assert waiting.get("current_size") == 2 and waiting.get("average_wait_time", 0) >= 1, waiting
    assert dequeued.get("call_sid") == front.get("call_sid") == members[0]["call_sid"], (dequeued, front)
    assert_shapes([
        ("queue", created, "POST Queues.json"),
        ("queue", listed[0], "GET Queues.json queues[0]"),
        ("queue", updated, "POST Queues/{QU}.json"),
        ("queue", waiting, "GET Queues/{QU}.json (two waiting)"),
        ("member", members[0], "GET Members.json queue_members[0]"),
        ("member", members[1], "GET Members.json queue_members[1]"),
        ("member", by_sid, "GET Members/{CA}.json"),
        ("member", front, "GET Members/Front.json"),
        ("member", dequeued, "POST Members/Front.json (dequeued)"),
    ])


def test_conference_participant_and_recording_shapes(dialtone_binary, workdir, ports):
    """A recorded room with two real callers and a third participant called in through the trunk
    (a pjsua2 UAS) with a label: the participant as created, listed, fetched by CallSid and by
    label, and updated; the room listed, fetched, ended and fetched ended; its recording as the
    Conference Recording resource and as the account's Recording (with its conference_sid)."""
    uas_sip = ports.port()
    uas_rtp, _ = ports.block(20)
    server = DialtoneServer(dialtone_binary, workdir, ports,
                            extra_env={"DIALTONE_TRUNK": f"sip:127.0.0.1:{uas_sip}"})
    server.start()
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    uas = subprocess.Popen(
        [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", "expert",
         "--sip-port", str(uas_sip), "--rtp-port", str(uas_rtp), "--duration", "40",
         "--timeout", "45", "--log", str(workdir / "uas.log"), "--result", str(workdir / "pjsua2.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    calls = LiveCalls(server)
    callers = ["+15557650031", "+15557650032"]
    api = Api(server)
    acc = f"/2010-04-01/Accounts/{server.account_sid}"
    try:
        voice = hook.route("/voice", room_twiml("shapes-room", ' record="record-from-start"'))
        api.post(f"{acc}/IncomingPhoneNumbers.json", {"PhoneNumber": NUMBER, "VoiceUrl": voice})
        time.sleep(1.0)  # the UAS binds its port
        assert uas.poll() is None, uas.communicate()
        for caller in callers:
            calls.start(NUMBER, caller)
        conf_sid = wait_until(lambda: [c["sid"] for c in api.get(
            f"{acc}/Conferences.json?Status=in-progress")["conferences"]], 10, "the room")[0]
        room = f"{acc}/Conferences/{conf_sid}"
        wait_until(lambda: len(api.get(f"{room}/Participants.json")["participants"]) == 2, 10,
                   "two participants")
        created = api.post(f"{room}/Participants.json",
                           {"From": NUMBER, "To": "+15550009999", "Label": "expert"})
        assert created.get("label") == "expert" and created.get("queue_time") == "0", created
        wait_until(lambda: [p for p in api.get(f"{room}/Participants.json")["participants"]
                            if p.get("label") == "expert" and p.get("status") == "connected"],
                   15, "the participant called in to connect")
        participants = api.get(f"{room}/Participants.json")["participants"]
        assert len(participants) == 3, participants
        by_call = api.get(f"{room}/Participants/{participants[0]['call_sid']}.json")
        by_label = api.get(f"{room}/Participants/expert.json")
        muted = api.post(f"{room}/Participants/{participants[0]['call_sid']}.json", {"Muted": "true"})
        assert muted.get("muted") is True, muted
        conferences = api.get(f"{acc}/Conferences.json")["conferences"]
        live = api.get(f"{room}.json")
        ended = api.post(f"{room}.json", {"Status": "completed"})
        after = api.get(f"{room}.json")
        for caller in callers:
            calls.ended_by_server(caller)
        report = finish_pjsua2(uas, workdir, 20)
        uas = None
        assert report["hangup_by"] == "remote", report
        recordings = wait_until(lambda: [r for r in api.get(f"{room}/Recordings.json")["recordings"]
                                         if r.get("status") == "completed"], 15, "the room's recording")
        rec_sid = recordings[0]["sid"]
        recording = api.get(f"{room}/Recordings/{rec_sid}.json")
        account_recording = api.get(f"{acc}/Recordings/{rec_sid}.json")
    finally:
        calls.close()
        if uas is not None:
            uas.kill()
            uas.communicate()
        hook.close()
        code = server.stop()
    assert code == 0, f"dialtone exited with {code}:\n{server.log_tail(60)}"
    # Set where they must be: an ended room says why; a room's recording names its room.
    assert after.get("status") == "completed", after
    assert after.get("reason_conference_ended") == "conference-ended-via-api", after
    assert recording.get("conference_sid") == conf_sid, recording
    assert account_recording.get("conference_sid") == conf_sid, account_recording
    assert_shapes([
        ("participant", created, "POST Participants.json"),
        *[("participant", p, f"GET Participants.json participants[{i}]")
          for i, p in enumerate(participants)],
        ("participant", by_call, "GET Participants/{CA}.json"),
        ("participant", by_label, "GET Participants/{Label}.json"),
        ("participant", muted, "POST Participants/{CA}.json (Muted)"),
        ("conference", conferences[0], "GET Conferences.json conferences[0]"),
        ("conference", live, "GET Conferences/{CF}.json (in-progress)"),
        ("conference", ended, "POST Conferences/{CF}.json (Status=completed)"),
        ("conference", after, "GET Conferences/{CF}.json (completed)"),
        ("conference_recording", recordings[0], "GET Conferences/{CF}/Recordings.json recordings[0]"),
        ("conference_recording", recording, "GET Conferences/{CF}/Recordings/{RE}.json"),
        ("recording", account_recording, "GET Recordings/{RE}.json (a conference's)"),
    ])


def test_message_shapes(dialtone, webhook):
    """A message created, fetched and listed (no SMSC here: it stays queued)."""
    api = Api(dialtone)
    acc = f"/2010-04-01/Accounts/{dialtone.account_sid}"
    api.post(f"{acc}/IncomingPhoneNumbers.json",
             {"PhoneNumber": "+15550003335", "SmsUrl": webhook.route("/sms", "<Response/>")})
    created = api.post(f"{acc}/Messages.json",
                       {"To": "+15550003336", "From": "+15550003335", "Body": "Привет 🚗 " * 20})
    fetched = api.get(f"{acc}/Messages/{created['sid']}.json")
    listed = api.get(f"{acc}/Messages.json")["messages"]
    assert created["status"] == "queued" and int(created["num_segments"]) == 3, created
    assert [m["sid"] for m in listed] == [created["sid"]]
    assert_shapes([
        ("message", created, "POST Messages.json"),
        ("message", fetched, "GET Messages/{SM}.json"),
        ("message", listed[0], "GET Messages.json messages[0]"),
    ])
