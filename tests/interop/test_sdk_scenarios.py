"""Account scenarios with the official SDKs, unmodified and pointed at the server: twilio-python
here and twilio-node (tests/sdk-node/scenarios.js) in a child process. The main account creates a
subaccount and an API key in it; a second client authenticated with that key creates an
application and a number routed to it, receives inbound calls on it, pages through them, and gets
errors as the SDK's own exception type (code and HTTP status).

Queues and conferences with the same SDKs: real SIP calls wait in a queue (`<Enqueue>`) or talk in
a room (`<Dial><Conference>`) while the SDK reads and changes them: queue sizes and waits, members
in order, a member dequeued into a document, participants muted, kicked, a room ended."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from conftest import CALLER, NUMBER, SIGNED_REQUESTS
from sipuac import CallResult, MediaSink, Uac
from webhook import Webhook

HANGUP = "<Response><Hangup/></Response>"
MISSING_CALL = "CA" + "0" * 32
SDK_NODE = Path(__file__).resolve().parents[1] / "sdk-node"


def rest_error(fn) -> TwilioRestException:
    with pytest.raises(TwilioRestException) as info:
        fn()
    return info.value


def place_calls(dialtone, number: str, count: int) -> None:
    sink = MediaSink()
    try:
        for _ in range(count):
            with Uac(dialtone.sip_addr, from_user=CALLER) as uac:
                r = uac.call(number, sink.port, timeout=10)
            assert r.answered and r.bye_from_server and r.error is None, r
    finally:
        sink.close()


def subaccount_hook(token_of) -> Webhook:
    """The subaccount's app: its requests are checked at the end of the session against the
    subaccount's auth token (the one Twilio signs a subaccount's webhooks with)."""
    return Webhook(on_request=lambda req: SIGNED_REQUESTS.append((token_of(), req)))


# --- queues and conferences: live calls -----------------------------------------------------------

WAIT_MUSIC = '<Response><Pause length="5"/></Response>'
DEQUEUED = "<Response><Say>hi</Say><Hangup/></Response>"
ANNOUNCE = "<Response><Say>attention please</Say></Response>"
MISSING_QUEUE = "QU" + "0" * 32
MISSING_CONFERENCE = "CF" + "0" * 32
QUEUE_CALLERS = ["+15557650001", "+15557650002", "+15557650003"]
ROOM_CALLERS = ["+15557650011", "+15557650012", "+15557650013"]


def enqueue_twiml(queue: str) -> str:
    return f'<Response><Enqueue waitUrl="/wait">{queue}</Enqueue></Response>'


def room_twiml(room: str, extra: str = "") -> str:
    return f"<Response><Dial><Conference{extra}>{room}</Conference></Dial></Response>"


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def sid_of_caller(hook: Webhook, path: str, caller: str, timeout: float = 10.0) -> str:
    """The CallSid of the first request to `path` made for a call from `caller`."""
    def find():
        for r in hook.received(path):
            if caller.lstrip("+") in r.params.get("From", ""):
                return r.params["CallSid"]
        return None
    return wait_until(find, timeout, f"a request to {path} for the call from {caller}")


class LiveCalls:
    """Raw-socket SIP callers that stay on the line, one thread each (no audio sent; the server's
    RTP goes to one sink). A call ends when the server hangs up; as a safety net the caller hangs
    up itself `hold` seconds after the answer, which the checks below treat as a failure."""

    def __init__(self, dialtone, hold: float = 45.0):
        self.dialtone = dialtone
        self.hold = hold
        self.sink = MediaSink()
        self.threads: dict[str, threading.Thread] = {}
        self.results: dict[str, CallResult] = {}

    def start(self, number: str, caller: str) -> None:
        def run() -> None:
            with Uac(self.dialtone.sip_addr, from_user=caller) as uac:
                self.results[caller] = uac.call(number, self.sink.port, hold=self.hold,
                                                timeout=self.hold + 15)

        t = threading.Thread(target=run, name=f"call from {caller}", daemon=True)
        self.threads[caller] = t
        t.start()

    def ended_by_server(self, caller: str, timeout: float = 15.0) -> CallResult:
        """Waits for the call from `caller` to end; it must have been answered and hung up by the
        server."""
        self.threads[caller].join(timeout)
        assert not self.threads[caller].is_alive(), f"the call from {caller} is still up"
        r = self.results[caller]
        assert r.answered and r.bye_from_server and not r.bye_sent and r.error is None, r
        return r

    def close(self, client=None, call_sids=()) -> None:
        """Hangs up through the API whatever is still up (after a failed check), waits for the
        callers' threads and closes the sink."""
        if client is not None and any(t.is_alive() for t in self.threads.values()):
            for sid in call_sids:
                try:
                    client.calls(sid).update(status="completed")
                except Exception:  # noqa: BLE001 (best effort: the call may be over)
                    pass
        for t in self.threads.values():
            t.join(10)
        self.sink.close()


def test_sdk_scenarios_python(dialtone, twilio_client):
    main = twilio_client
    sub = main.api.v2010.accounts.create(friendly_name="SDK scenarios (python)")
    assert sub.sid.startswith("AC") and len(sub.sid) == 34, sub.sid
    assert sub.sid != dialtone.account_sid
    assert sub.owner_account_sid == dialtone.account_sid, sub.owner_account_sid
    assert sub.status == "active" and sub.auth_token, (sub.status, sub.auth_token)

    key = main.api.v2010.accounts(sub.sid).new_keys.create(friendly_name="scenario key")
    assert key.sid.startswith("SK") and len(key.sid) == 34, key.sid
    assert key.secret, "a new key carries its secret"

    child = Client(key.sid, key.secret, sub.sid)
    child.api.base_url = dialtone.http_url
    # As on Twilio, a standard API key cannot read or manage the Accounts resource; the parent's
    # auth token can.
    e = rest_error(lambda: child.api.v2010.account.fetch())
    assert e.status == 403, (e.code, e.status, e.msg)
    fetched = main.api.v2010.accounts(sub.sid).fetch()
    assert fetched.friendly_name == "SDK scenarios (python)", fetched.friendly_name
    assert fetched.owner_account_sid == dialtone.account_sid

    hook = subaccount_hook(lambda: sub.auth_token)
    try:
        voice = hook.route("/voice", HANGUP)
        app = child.applications.create(friendly_name="scenario app", voice_url=voice,
                                        voice_method="POST")
        assert app.sid.startswith("AP") and app.account_sid == sub.sid, (app.sid, app.account_sid)
        assert child.applications(app.sid).fetch().voice_url == voice

        number = "+15550003331"
        pn = child.incoming_phone_numbers.create(phone_number=number, voice_application_sid=app.sid)
        assert pn.account_sid == sub.sid and pn.voice_application_sid == app.sid, pn
        assert [n.sid for n in child.incoming_phone_numbers.list()] == [pn.sid]
        # The number belongs to the subaccount: the main account does not list it among its own.
        assert pn.sid not in [n.sid for n in main.incoming_phone_numbers.list()]

        place_calls(dialtone, number, 3)
        received = hook.wait_for("/voice", count=3)
        assert {r.params.get("AccountSid") for r in received} == {sub.sid}
        call_sids = {r.params["CallSid"] for r in received}
        assert len(call_sids) == 3

        page = child.calls.page(page_size=2)
        assert len(list(page)) == 2 and page.next_page_url, page.next_page_url
        rest = page.next_page()
        assert len(list(rest)) == 1 and rest.next_page_url is None
        calls = child.calls.list(page_size=2)
        assert {c.sid for c in calls} == call_sids and len(calls) == 3
        for c in calls:
            assert c.account_sid == sub.sid and c.direction == "inbound", (c.sid, c.direction)
            assert c.status == "completed", (c.sid, c.status)
        assert child.recordings.list() == []

        # Errors arrive as the SDK's own exception, with Twilio's code and status.
        e = rest_error(lambda: child.calls(MISSING_CALL).fetch())
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)
        bad = Client(dialtone.account_sid, "0" * 32)
        bad.api.base_url = dialtone.http_url
        # (twilio-python raises its plain TwilioException for a failed list page, so a fetch.)
        e = rest_error(lambda: bad.calls(MISSING_CALL).fetch())
        assert (e.code, e.status) == (20003, 401), (e.code, e.status, e.msg)
        bad_key = Client(key.sid, "wrong-secret", sub.sid)
        bad_key.api.base_url = dialtone.http_url
        e = rest_error(lambda: bad_key.calls(MISSING_CALL).fetch())
        assert (e.code, e.status) == (20003, 401), (e.code, e.status, e.msg)
        parents = main.incoming_phone_numbers.create(phone_number="+15550003332", voice_url=voice)
        e = rest_error(lambda: child.incoming_phone_numbers(parents.sid).fetch())
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)
    finally:
        hook.close()


def test_sdk_queue_scenarios_python(dialtone, twilio_client, webhook, provision):
    """Queues CRUD with twilio-python, three real callers waiting in one (`<Enqueue>`): sizes and
    waits, members in order of arrival, one fetched by CallSid and `Front`, dequeued into a
    document by `Front` and by CallSid; a queue with callers cannot be deleted, an empty one can."""
    client = twilio_client
    acc = dialtone.account_sid
    q = client.queues.create(friendly_name="support", max_size=10)
    assert q.sid.startswith("QU") and len(q.sid) == 34, q.sid
    assert (q.account_sid, q.friendly_name, q.max_size) == (acc, "support", 10), q
    assert (q.current_size, q.average_wait_time) == (0, 0), (q.current_size, q.average_wait_time)
    assert q.uri == f"/2010-04-01/Accounts/{acc}/Queues/{q.sid}.json", q.uri
    other = client.queues.create(friendly_name="sales")
    assert other.max_size == 1000, other.max_size  # Twilio's default
    assert {x.sid: x.friendly_name for x in client.queues.list()} == {q.sid: "support", other.sid: "sales"}
    fetched = client.queues(q.sid).fetch()
    assert (fetched.sid, fetched.friendly_name, fetched.max_size) == (q.sid, "support", 10), fetched
    updated = client.queues(q.sid).update(max_size=5)
    assert (updated.friendly_name, updated.max_size) == ("support", 5), updated
    assert client.queues(q.sid).fetch().max_size == 5
    renamed = client.queues(other.sid).update(friendly_name="sales-2")
    assert (renamed.friendly_name, renamed.max_size) == ("sales-2", 1000), renamed
    assert client.queues(other.sid).fetch().friendly_name == "sales-2"
    e = rest_error(lambda: client.queues.create(friendly_name="support"))
    assert e.status == 400, (e.code, e.status, e.msg)  # names are unique in an account

    provision({"/voice": enqueue_twiml("support"), "/wait": WAIT_MUSIC, "/dequeued": DEQUEUED})
    calls = LiveCalls(dialtone)
    sids: list[str] = []
    try:
        for n, caller in enumerate(QUEUE_CALLERS, start=1):
            calls.start(NUMBER, caller)
            wait_until(lambda: client.queues(q.sid).fetch().current_size == n, 10,
                       f"{n} callers in the queue")
            sids.append(sid_of_caller(webhook, "/voice", caller))
        time.sleep(2.2)
        members = client.queues(q.sid).members.list()
        queue = client.queues(q.sid).fetch()
        assert queue.current_size == 3, queue.current_size
        assert [m.call_sid for m in members] == sids, ([m.call_sid for m in members], sids)
        assert [m.position for m in members] == [1, 2, 3], [m.position for m in members]
        assert {m.queue_sid for m in members} == {q.sid}
        waits = [m.wait_time for m in members]
        assert waits == sorted(waits, reverse=True) and waits[-1] >= 2 and waits[0] <= 15, waits
        # The mean wait of the callers waiting now, in whole seconds.
        assert queue.average_wait_time >= 2, queue.average_wait_time
        assert min(waits) - 1 <= queue.average_wait_time <= max(waits) + 1, (queue.average_wait_time, waits)
        enqueued = [m.date_enqueued for m in members]
        assert enqueued == sorted(enqueued), enqueued
        now = datetime.now(timezone.utc)
        assert all(now - timedelta(seconds=30) < d <= now + timedelta(seconds=2) for d in enqueued), enqueued
        # The wait music was asked for with the queue's figures.
        first_wait = next(r for r in webhook.received("/wait") if r.params.get("CallSid") == sids[0])
        assert first_wait.params.get("QueueSid") == q.sid, first_wait.params
        assert first_wait.params.get("QueuePosition") == "1", first_wait.params
        assert first_wait.params.get("MaxQueueSize") == "5", first_wait.params

        # Pages of the live list keep the order.
        page = client.queues(q.sid).members.page(page_size=2)
        assert [m.call_sid for m in page] == sids[:2] and page.next_page_url, page.next_page_url
        rest = page.next_page()
        assert [(m.call_sid, m.position) for m in rest] == [(sids[2], 3)] and rest.next_page_url is None

        second = client.queues(q.sid).members(sids[1]).fetch()
        assert (second.call_sid, second.position, second.queue_sid) == (sids[1], 2, q.sid), second
        front = client.queues(q.sid).members("Front").fetch()
        assert (front.call_sid, front.position) == (sids[0], 1), front

        # Callers are waiting: the queue is not deleted.
        e = rest_error(lambda: client.queues(q.sid).delete())
        assert (e.code, e.status) == (20001, 400), (e.code, e.status, e.msg)
        assert client.queues(q.sid).fetch().current_size == 3

        # Dequeue the front caller into a document (GET), then the last one by CallSid (POST).
        gone = client.queues(q.sid).members("Front").update(url=webhook.url("/dequeued"), method="GET")
        assert (gone.call_sid, gone.position) == (sids[0], 1), gone
        req = webhook.wait_for("/dequeued")[0]
        assert (req.method, req.params.get("CallSid")) == ("GET", sids[0]), (req.method, req.params)
        calls.ended_by_server(QUEUE_CALLERS[0])
        members = client.queues(q.sid).members.list()
        assert [(m.call_sid, m.position) for m in members] == [(sids[1], 1), (sids[2], 2)], \
            [(m.call_sid, m.position) for m in members]
        assert client.queues(q.sid).fetch().current_size == 2
        e = rest_error(lambda: client.queues(q.sid).members(sids[0]).fetch())
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)

        gone = client.queues(q.sid).members(sids[2]).update(url=webhook.url("/dequeued"))
        assert (gone.call_sid, gone.position) == (sids[2], 2), gone
        req = webhook.wait_for("/dequeued", count=2)[1]
        assert (req.method, req.params.get("CallSid")) == ("POST", sids[2]), (req.method, req.params)
        calls.ended_by_server(QUEUE_CALLERS[2])
        front = client.queues(q.sid).members("Front").fetch()
        assert (front.call_sid, front.position) == (sids[1], 1), front

        # The last caller is hung up through the Calls API: it leaves the queue.
        client.calls(sids[1]).update(status="completed")
        calls.ended_by_server(QUEUE_CALLERS[1])
        wait_until(lambda: client.queues(q.sid).fetch().current_size == 0, 10, "an empty queue")
        assert client.queues(q.sid).members.list() == []
        assert client.queues(q.sid).fetch().average_wait_time == 0
        e = rest_error(lambda: client.queues(q.sid).members("Front").fetch())
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)
        e = rest_error(lambda: client.queues(q.sid).members("Front").update(url=webhook.url("/dequeued")))
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)

        # Empty now: deleted.
        assert client.queues(q.sid).delete() is True
        e = rest_error(lambda: client.queues(q.sid).fetch())
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)
        assert [x.sid for x in client.queues.list()] == [other.sid]
        assert client.queues(other.sid).delete() is True
        assert client.queues.list() == []

        for fn in (lambda: client.queues(MISSING_QUEUE).fetch(),
                   lambda: client.queues(MISSING_QUEUE).update(max_size=3),
                   lambda: client.queues(MISSING_QUEUE).delete(),
                   lambda: client.queues(MISSING_QUEUE).members("Front").fetch()):
            e = rest_error(fn)
            assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)
    finally:
        calls.close(client, sids)


def test_sdk_conference_scenarios_python(dialtone, twilio_client, webhook, provision):
    """Three real callers in one room (`<Dial><Conference>`) while twilio-python lists the
    conferences with filters, fetches the room, lists its participants, mutes one and reads it
    back, announces into the room, kicks one and ends the room for the two left."""
    client = twilio_client
    provision({"/voice": room_twiml("room"), "/announce": ANNOUNCE})
    calls = LiveCalls(dialtone)
    sids: dict[str, str] = {}
    try:
        for caller in ROOM_CALLERS:
            calls.start(NUMBER, caller)
            sids[caller] = sid_of_caller(webhook, "/voice", caller)
        a, b, c = (sids[x] for x in ROOM_CALLERS)
        conf = wait_until(lambda: client.conferences.list(status="in-progress"), 10,
                          "an in-progress conference")[0]
        room = client.conferences(conf.sid)
        parts = wait_until(lambda: (lambda ps: ps if len(ps) == 3 else None)(room.participants.list()),
                           10, "three participants")
        assert {p.call_sid for p in parts} == {a, b, c}, [p.call_sid for p in parts]
        for p in parts:
            assert (p.conference_sid, p.account_sid) == (conf.sid, dialtone.account_sid), p
            assert (p.muted, p.hold, p.coaching) == (False, False, False), p
            assert (p.status, p.label, p.call_sid_to_coach) == ("connected", None, None), p
            assert p.start_conference_on_enter is True and p.end_conference_on_exit is False, p

        page = room.participants.page(page_size=2)
        first_page = [p.call_sid for p in page]
        rest = page.next_page()
        paged = first_page + [p.call_sid for p in rest]
        assert len(first_page) == 2 and rest.next_page_url is None, paged
        assert sorted(paged) == sorted([a, b, c]), paged

        fetched = room.fetch()
        assert (fetched.sid, fetched.friendly_name, fetched.status) == (conf.sid, "room", "in-progress")
        assert fetched.account_sid == dialtone.account_sid and fetched.api_version == "2010-04-01"
        assert fetched.reason_conference_ended is None and fetched.call_sid_ending_conference is None
        assert set(fetched.subresource_uris) >= {"participants", "recordings"}, fetched.subresource_uris
        day = fetched.date_created.date()
        assert abs(datetime.now(timezone.utc) - fetched.date_created) < timedelta(seconds=30)

        # Filters: name, status, creation day, and together.
        def listed(**kw):
            return [x.sid for x in client.conferences.list(**kw)]
        assert listed(friendly_name="room") == [conf.sid]
        assert listed(friendly_name="another room") == []
        assert listed(status="completed") == []
        assert listed(status="init") == []
        assert listed(status="in-progress", friendly_name="room") == [conf.sid]
        assert listed(date_created=day) == [conf.sid]
        assert listed(date_created_after=day) == [conf.sid]
        assert listed(date_created_before=day - timedelta(days=1)) == []
        assert listed(date_created_after=day + timedelta(days=1)) == []

        # Mute one and read it back.
        muted = room.participants(a).update(muted=True)
        assert (muted.call_sid, muted.muted, muted.conference_sid) == (a, True, conf.sid), muted
        assert room.participants(a).fetch().muted is True
        assert room.participants(b).fetch().muted is False
        assert [p.call_sid for p in room.participants.list(muted=True)] == [a]
        assert sorted(p.call_sid for p in room.participants.list(muted=False)) == sorted([b, c])
        assert room.participants(a).update(muted=False).muted is False
        assert room.participants.list(muted=True) == []

        # An announcement into the room asks for its document.
        announced = room.update(announce_url=webhook.url("/announce"), announce_method="POST")
        assert (announced.sid, announced.status) == (conf.sid, "in-progress"), announced
        req = webhook.wait_for("/announce")[0]
        assert req.method == "POST", req.method

        # Kick one: its call is hung up, the two others stay.
        assert room.participants(c).delete() is True
        calls.ended_by_server(ROOM_CALLERS[2])
        wait_until(lambda: {p.call_sid for p in room.participants.list()} == {a, b}, 10,
                   "the kicked participant to leave")
        e = rest_error(lambda: room.participants(c).fetch())
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)

        # End the room: everyone left is hung up.
        ended = room.update(status="completed")
        assert (ended.sid, ended.status) == (conf.sid, "completed"), ended.status
        fetched = room.fetch()
        assert fetched.status == "completed", fetched.status
        assert fetched.reason_conference_ended == "conference-ended-via-api", fetched.reason_conference_ended
        assert fetched.call_sid_ending_conference is None, fetched.call_sid_ending_conference
        calls.ended_by_server(ROOM_CALLERS[0])
        calls.ended_by_server(ROOM_CALLERS[1])
        assert room.participants.list() == []
        assert listed(status="completed") == [conf.sid]
        assert listed(status="in-progress") == []
        assert listed(status="completed", friendly_name="room") == [conf.sid]
        for call_sid in (a, b, c):
            assert client.calls(call_sid).fetch().status == "completed", call_sid
        # An ended room has no one left to change.
        e = rest_error(lambda: room.participants(a).update(muted=True))
        assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)

        for fn in (lambda: client.conferences(MISSING_CONFERENCE).fetch(),
                   lambda: client.conferences(MISSING_CONFERENCE).update(status="completed"),
                   lambda: client.conferences(MISSING_CONFERENCE).participants(a).fetch(),
                   lambda: client.conferences(MISSING_CONFERENCE).participants(a).delete()):
            e = rest_error(fn)
            assert (e.code, e.status) == (20404, 404), (e.code, e.status, e.msg)
    finally:
        calls.close(client, list(sids.values()))


def node_binary() -> str:
    node = shutil.which("node")
    assert node, "node is not installed (scripts/install-test-peers.sh needs it)"
    assert (SDK_NODE / "node_modules" / "twilio").is_dir(), \
        "the twilio Node SDK is not installed: run scripts/install-test-peers.sh"
    return node


def test_sdk_scenarios_node(dialtone, workdir, webhook, twilio_client):
    """tests/sdk-node/scenarios.js does the same with twilio-node. It prints one JSON line
    {"ready": ...} once the subaccount's number, a queue and the main account's queue and room
    numbers exist, waits for a line on stdin while this test places the calls (three to the
    subaccount, three that wait in the queue, in order, three into the room, the last six still up),
    then checks the queue and the room, finishes and prints {"summary": ...}; any failed check exits
    non-zero. Here: the members it dequeued asked for the document, and every live call was hung up
    by the server."""
    node = node_binary()
    sub_token: list[str] = []
    hook = subaccount_hook(lambda: sub_token[0])
    env = dict(os.environ, DIALTONE_URL=dialtone.http_url, DIALTONE_ACCOUNT_SID=dialtone.account_sid,
               DIALTONE_AUTH_TOKEN=dialtone.auth_token, VOICE_URL=hook.route("/voice", HANGUP),
               QUEUE_NAME="node-support", ROOM_NAME="node-room",
               QUEUE_VOICE_URL=webhook.route("/queue-voice", enqueue_twiml("node-support")),
               ROOM_VOICE_URL=webhook.route("/room-voice", room_twiml("node-room")),
               DEQUEUE_URL=webhook.route("/dequeued", DEQUEUED))
    webhook.route("/wait", WAIT_MUSIC)
    for var in ("TWILIO_EDGE", "TWILIO_REGION", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        env.pop(var, None)
    stderr = open(workdir / "node.stderr", "w")
    proc = subprocess.Popen([node, str(SDK_NODE / "scenarios.js")], cwd=SDK_NODE, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: list[str] = []
    live = LiveCalls(dialtone)
    waiting: list[str] = []
    in_room: list[str] = []
    try:
        assert proc.stdout is not None and proc.stdin is not None
        ready = None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith('{"ready"'):
                ready = json.loads(line)["ready"]
                break
        assert ready, f"node did not get ready: {lines} {(workdir / 'node.stderr').read_text()}"
        sub_token.append(ready["sub_token"])
        place_calls(dialtone, ready["number"], 3)
        received = hook.wait_for("/voice", count=3)
        assert {r.params.get("AccountSid") for r in received} == {ready["sub_sid"]}

        queue = twilio_client.queues(ready["queue_sid"])
        for n, caller in enumerate(QUEUE_CALLERS, start=1):
            live.start(ready["queue_number"], caller)
            wait_until(lambda: queue.fetch().current_size == n, 10, f"{n} callers in the queue")
            waiting.append(sid_of_caller(webhook, "/queue-voice", caller))
        for caller in ROOM_CALLERS:
            live.start(ready["room_number"], caller)
            in_room.append(sid_of_caller(webhook, "/room-voice", caller))
        time.sleep(1.2)  # every member has waited a whole second
        proc.stdin.write(json.dumps({"calls": sorted(r.params["CallSid"] for r in received),
                                     "queue": waiting, "room": in_room}) + "\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=90)
        lines.extend(out.splitlines(keepends=True))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
        hook.close()
        live.close(twilio_client, waiting + in_room)
    (workdir / "node.stdout").write_text("".join(lines))
    err = (workdir / "node.stderr").read_text()
    assert proc.returncode == 0, f"node exited {proc.returncode}:\n{''.join(lines)}\n{err}"
    summary = [json.loads(l)["summary"] for l in lines if l.startswith('{"summary"')]
    assert summary, lines
    s = summary[-1]
    assert s["failed"] == [] and s["passed"] >= 76, s
    assert s["requests_to_server"] > 0 and s["requests_elsewhere"] == 0, s

    # What twilio-node did reached the calls: the three members it dequeued asked for the
    # document (the front one with GET), and every queued or conference call was hung up by the
    # server (a dequeued caller by the document's <Hangup/>, the room's by the kick and the end).
    # (The last two were dequeued back to back: their requests may arrive in either order.)
    dequeued = [(r.method, r.params.get("CallSid")) for r in webhook.received("/dequeued")]
    assert len(dequeued) == 3 and dequeued[0] == ("GET", waiting[0]), dequeued
    assert sorted(dequeued[1:]) == sorted([("POST", waiting[1]), ("POST", waiting[2])]), dequeued
    for caller in QUEUE_CALLERS + ROOM_CALLERS:
        live.ended_by_server(caller, timeout=0)
    for sid in waiting + in_room:
        assert twilio_client.calls(sid).fetch().status == "completed", sid
