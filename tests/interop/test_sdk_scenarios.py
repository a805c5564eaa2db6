"""Account scenarios with the official SDKs, unmodified and pointed at the server: twilio-python
here and twilio-node (tests/sdk-node/scenarios.js) in a child process. The main account creates a
subaccount and an API key in it; a second client authenticated with that key creates an
application and a number routed to it, receives inbound calls on it, pages through them, and gets
errors as the SDK's own exception type (code and HTTP status)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from conftest import CALLER, SIGNED_REQUESTS
from sipuac import MediaSink, Uac
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


def node_binary() -> str:
    node = shutil.which("node")
    assert node, "node is not installed (scripts/install-test-peers.sh needs it)"
    assert (SDK_NODE / "node_modules" / "twilio").is_dir(), \
        "the twilio Node SDK is not installed: run scripts/install-test-peers.sh"
    return node


def test_sdk_scenarios_node(dialtone, workdir):
    """tests/sdk-node/scenarios.js does the same with twilio-node. It prints one JSON line
    {"ready": ...} once the subaccount's number exists, waits for a line on stdin while this test
    places the calls, then finishes and prints {"summary": ...}; any failed check exits non-zero."""
    node = node_binary()
    sub_token: list[str] = []
    hook = subaccount_hook(lambda: sub_token[0])
    env = dict(os.environ, DIALTONE_URL=dialtone.http_url, DIALTONE_ACCOUNT_SID=dialtone.account_sid,
               DIALTONE_AUTH_TOKEN=dialtone.auth_token, VOICE_URL=hook.route("/voice", HANGUP))
    for var in ("TWILIO_EDGE", "TWILIO_REGION", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
        env.pop(var, None)
    stderr = open(workdir / "node.stderr", "w")
    proc = subprocess.Popen([node, str(SDK_NODE / "scenarios.js")], cwd=SDK_NODE, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines: list[str] = []
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
        proc.stdin.write(json.dumps(sorted(r.params["CallSid"] for r in received)) + "\n")
        proc.stdin.flush()
        out, _ = proc.communicate(timeout=60)
        lines.extend(out.splitlines(keepends=True))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
        hook.close()
    (workdir / "node.stdout").write_text("".join(lines))
    err = (workdir / "node.stderr").read_text()
    assert proc.returncode == 0, f"node exited {proc.returncode}:\n{''.join(lines)}\n{err}"
    summary = [json.loads(l)["summary"] for l in lines if l.startswith('{"summary"')]
    assert summary, lines
    s = summary[-1]
    assert s["failed"] == [] and s["passed"] >= 20, s
    assert s["requests_to_server"] > 0 and s["requests_elsewhere"] == 0, s
