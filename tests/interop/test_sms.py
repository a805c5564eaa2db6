"""Two-way SMS through a real SMSC: the npm `smpp` package in server mode (tests/smsc/smsc.js),
bound by Dialtone over SMPP 3.4, driven here with the official twilio-python SDK.

The car-sharing exchange end to end: the site sends the owner a question through the Messages
API; the SMSC receives it whole and reports it delivered; the owner's YES (or NO) comes back as
a deliver_sm, reaches the number's SmsUrl, whose MessagingResponse answer is sent back to the
owner. Then what the SMS network does to messages: long ones in parts both ways (UCS-2 with
emoji, GSM-7 with its extension table), throttling, refusals, an SMSC outage and a crash of
Dialtone with messages queued: nothing lost, nothing twice."""

from __future__ import annotations

import os
import signal
import time
from decimal import Decimal

import pytest

from server import DialtoneServer
from smsc import Smsc

SITE = "+15550001000"   # the car-sharing site's number on Dialtone
OWNER = "+15550002000"  # the car owner's phone, behind the SMSC
QUESTION = "Can Marie use your car on Saturday? Reply YES or NO"


@pytest.fixture
def smsc(workdir, ports):
    peer = Smsc(workdir / "smsc", ports)
    yield peer
    peer.stop()


# Messages to +1 numbers cost 0.79 cents a segment, set when they are sent; received ones 0.75.
PRICING = '[pricing]\nsms_outbound = { "+1" = "0.0079" }\nsms_inbound = "0.0075"\n'


def serve_with_smsc(dialtone_binary, workdir, ports, request, smsc_url: str, peer_logs):
    """Dialtone bound to `smsc_url`, with the `PRICING` rate table; on a failed test its log and
    `peer_logs()` are printed."""
    cfg = workdir / "dialtone.toml"
    cfg.write_text(PRICING)
    wrapper = workdir / "dialtone-serve.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{dialtone_binary}" serve --config "{cfg}"\n')
    wrapper.chmod(0o755)
    server = DialtoneServer(wrapper, workdir, ports, extra_env={"DIALTONE_SMSC": smsc_url})
    server.start()
    yield server
    code = server.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n----- dialtone log tail ({server.log_path}) -----\n{server.log_tail(150)}\n-----")
        print(peer_logs())
    assert code == 0, f"dialtone exited with {code}:\n{server.log_tail(60)}"


@pytest.fixture
def dialtone(dialtone_binary, workdir, ports, smsc, request):
    yield from serve_with_smsc(dialtone_binary, workdir, ports, request,
                               f"smpp://dialtone:secret@127.0.0.1:{smsc.port}",
                               lambda: f"----- smsc log tail -----\n{smsc.log_tail(60)}\n-----")


def wait(what, timeout: float = 15.0, interval: float = 0.05, message: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {message or what}")
        time.sleep(interval)


def bound(smsc: Smsc) -> None:
    wait(lambda: any(b.get("system_id") == "dialtone" for b in smsc.binds()), message="Dialtone's bind")


def texts_to(smsc: Smsc, number: str) -> list[str]:
    """Every whole message the SMSC got for `number`, parts joined by their UDH (in order)."""
    out: list[str] = []
    sets: dict[tuple, dict[int, str]] = {}
    for s in smsc.submitted():
        if s.get("dest") != number or s.get("command_status", 0) != 0:
            continue
        concat = (s.get("udh") or {}).get("concat")
        if not concat:
            out.append(s["text"])
            continue
        key = (concat["reference"], concat["total"])
        sets.setdefault(key, {})[concat["seq"]] = s["text"]
        if len(sets[key]) == concat["total"]:
            out.append("".join(sets[key][i] for i in sorted(sets[key])))
            del sets[key]
    return out


def site_number(twilio_client, webhook, sms_route):
    url = webhook.route("/sms", sms_route)
    return twilio_client.incoming_phone_numbers.create(phone_number=SITE, sms_url=url, sms_method="POST")


def booking_reply(req) -> str:
    """The site's SmsUrl: a YES confirms the booking, a NO declines it."""
    answers = {"YES": "Booking confirmed", "NO": "Booking declined"}
    body = req.params.get("Body", "").strip().upper()
    return f"<Response><Message>{answers.get(body, 'Please reply YES or NO')}</Message></Response>"


def test_car_sharing_booking_yes_and_no(twilio_client, webhook, smsc, dialtone):
    site_number(twilio_client, webhook, booking_reply)
    status_url = webhook.route("/status", "")
    bound(smsc)

    msg = twilio_client.messages.create(to=OWNER, from_=SITE, body=QUESTION, status_callback=status_url)
    assert msg.status == "queued" and msg.num_segments == "1" and msg.direction == "outbound-api"
    wait(lambda: QUESTION in texts_to(smsc, OWNER), message="the question at the SMSC")
    submitted = [s for s in smsc.submitted() if s.get("text") == QUESTION]
    assert len(submitted) == 1, submitted
    assert submitted[0]["source"] == SITE and submitted[0]["registered_delivery"] & 1
    # The SMSC's receipt (DELIVRD) makes it delivered, and the callback says sent then delivered.
    wait(lambda: twilio_client.messages(msg.sid).fetch().status == "delivered", message="delivered")
    statuses = wait(lambda: [r.params["MessageStatus"] for r in webhook.received("/status")]
                    if len(webhook.received("/status")) >= 2 else None, message="two status callbacks")
    assert statuses == ["sent", "delivered"], statuses
    last = webhook.received("/status")[-1].params
    assert last["MessageSid"] == msg.sid and last["SmsStatus"] == "delivered" and last["To"] == OWNER
    fetched = twilio_client.messages(msg.sid).fetch()
    assert fetched.date_sent is not None and fetched.error_code is None
    assert fetched.price == "-0.0079" and fetched.price_unit == "USD", fetched.price

    # The owner answers YES: the app hears it and its <Message> goes back to the owner.
    smsc.deliver(OWNER, SITE, "YES")
    hook = wait(lambda: webhook.received("/sms"), message="the SmsUrl request")[0].params
    assert hook["Body"] == "YES" and hook["From"] == OWNER and hook["To"] == SITE, hook
    assert hook["SmsStatus"] == "received" and hook["NumMedia"] == "0" and hook["NumSegments"] == "1"
    assert hook["MessageSid"].startswith("SM") and hook["SmsSid"] == hook["MessageSid"] == hook["SmsMessageSid"]
    assert hook["AccountSid"] == dialtone.account_sid and hook["ApiVersion"] == "2010-04-01"
    wait(lambda: "Booking confirmed" in texts_to(smsc, OWNER), message="the confirmation at the SMSC")
    # The deliver_sm was acknowledged (ESME_ROK) once stored.
    wait(lambda: [d for d in smsc.deliveries() if d["kind"] == "message"]
         and all(d["command_status"] == 0 for d in smsc.deliveries() if d["kind"] == "message"),
         message="the YES acknowledged")

    # NO takes the other branch.
    smsc.deliver(OWNER, SITE, "no")
    wait(lambda: "Booking declined" in texts_to(smsc, OWNER), message="the refusal at the SMSC")
    assert "Booking confirmed" in texts_to(smsc, OWNER)

    inbound = twilio_client.messages.list(from_=OWNER, to=SITE)
    assert sorted(m.body for m in inbound) == ["YES", "no"]
    assert {m.direction for m in inbound} == {"inbound"} and {m.status for m in inbound} == {"received"}
    assert {m.price for m in inbound} == {"-0.0075"}, [m.price for m in inbound]
    replies = [m for m in twilio_client.messages.list(to=OWNER) if m.direction == "outbound-reply"]
    assert sorted(m.body for m in replies) == ["Booking confirmed", "Booking declined"]
    wait(lambda: all(twilio_client.messages(m.sid).fetch().status == "delivered" for m in replies),
         message="the replies delivered")


def sms_usage(client) -> dict[str, tuple[int, int, Decimal]]:
    """The account's SMS usage since yesterday (UTC): category -> (messages, segments, price)."""
    records = client.usage.records.list(start_date="-1days")
    return {r.category: (int(r.count), int(r.usage), round(Decimal(r.price), 4))
            for r in records if r.category.startswith("sms")}


def test_long_messages_arrive_whole_both_ways(twilio_client, webhook, smsc, dialtone):
    site_number(twilio_client, webhook, "<Response/>")
    bound(smsc)
    before = sms_usage(twilio_client)
    # 400 characters of Cyrillic and emoji: UCS-2, split in parts of 67 units.
    unit = "Привет, мир! 🚗 "
    ucs2 = (unit * 40)[:400]
    gsm = "Price: 10€ [deposit] {keys} ~ ok | back\\slash ^ " * 5
    sent_ucs2 = twilio_client.messages.create(to=OWNER, from_=SITE, body=ucs2)
    sent_gsm = twilio_client.messages.create(to=OWNER, from_=SITE, body=gsm)
    assert int(sent_ucs2.num_segments) >= 7, sent_ucs2.num_segments
    wait(lambda: ucs2 in texts_to(smsc, OWNER) and gsm in texts_to(smsc, OWNER), message="both whole")
    parts = [s for s in smsc.submitted() if (s.get("udh") or {}).get("concat")]
    codings = {s["data_coding"] for s in parts}
    assert codings == {0, 8}, codings  # GSM-7 for one, UCS-2 for the other
    for m in (sent_ucs2, sent_gsm):
        wait(lambda: twilio_client.messages(m.sid).fetch().status == "delivered", message=f"{m.sid} delivered")
        # Priced per segment: 0.0079 times the parts the SMSC received.
        fetched = twilio_client.messages(m.sid).fetch()
        expected = f"-{Decimal('0.0079') * int(fetched.num_segments):.4f}"
        assert fetched.price == expected, (fetched.num_segments, fetched.price)

    # A long incoming message in three parts reaches the app as one Body.
    long_in = "This is a long answer from the owner, " * 6
    smsc.deliver(OWNER, SITE, long_in, parts=3)
    hook = wait(lambda: webhook.received("/sms"), message="the SmsUrl request")[0].params
    assert hook["Body"] == long_in.strip() or hook["Body"] == long_in, hook["Body"]
    assert hook["NumSegments"] == "3"

    # Usage Records count the messages, their segments and their prices.
    segments = int(twilio_client.messages(sent_ucs2.sid).fetch().num_segments) + int(
        twilio_client.messages(sent_gsm.sid).fetch().num_segments)
    after = sms_usage(twilio_client)
    delta = {k: tuple(a - b for a, b in zip(after[k], before[k])) for k in after}
    assert delta["sms-outbound"] == (2, segments, Decimal("0.0079") * segments), delta
    assert delta["sms-inbound"] == (1, 3, Decimal("0.0225")), delta
    assert delta["sms"] == (3, segments + 3, Decimal("0.0079") * segments + Decimal("0.0225")), delta


def test_throttling_slows_down_and_refusals_fail_with_twilio_codes(twilio_client, webhook, smsc, dialtone):
    site_number(twilio_client, webhook, "<Response/>")
    status_url = webhook.route("/status", "")
    bound(smsc)
    smsc.behaviour(throttle_next=3)
    throttled = [twilio_client.messages.create(to=OWNER, from_=SITE, body=f"throttled {i}") for i in range(3)]
    for m in throttled:
        wait(lambda: twilio_client.messages(m.sid).fetch().status == "delivered", timeout=30,
             message=f"{m.body} delivered despite ESME_RTHROTTLED")
    assert sum(1 for s in smsc.submitted() if s.get("command_status") == 0x58) >= 3

    smsc.behaviour(reject_prefix="+1555999")
    refused = twilio_client.messages.create(to="+15559990000", from_=SITE, body="to a bad number",
                                            status_callback=status_url)
    failed = wait(lambda: (lambda m: m if m.status == "failed" else None)(twilio_client.messages(refused.sid).fetch()),
                  message="the refused message failed")
    assert failed.error_code == 21211, failed.error_code  # ESME_RINVDSTADR: invalid 'To' number
    cb = wait(lambda: [r.params for r in webhook.received("/status") if r.params.get("MessageStatus") == "failed"],
              message="the failed callback")[0]
    assert cb["ErrorCode"] == str(failed.error_code) and cb["MessageSid"] == refused.sid


def test_an_smsc_outage_loses_nothing(twilio_client, webhook, smsc, dialtone):
    site_number(twilio_client, webhook, "<Response/>")
    bound(smsc)
    smsc.stop()
    bodies = [f"outage {i:03d}" for i in range(500)]
    for body in bodies:
        twilio_client.messages.create(to=OWNER, from_=SITE, body=body)
    time.sleep(1)
    smsc.start()
    got = wait(lambda: (lambda t: t if set(bodies) <= set(t) else None)(texts_to(smsc, OWNER)),
               timeout=90, message="all 500 after the SMSC came back")
    assert sorted(t for t in got if t.startswith("outage")) == bodies, "each exactly once"
    # In order for the one destination.
    order = [t for t in got if t.startswith("outage")]
    assert order == bodies


def test_kill_9_with_messages_queued_loses_nothing(twilio_client, webhook, smsc, dialtone):
    site_number(twilio_client, webhook, "<Response/>")
    bound(smsc)
    smsc.stop()
    bodies = [f"queued {i:04d}" for i in range(1000)]
    for body in bodies:
        twilio_client.messages.create(to=OWNER, from_=SITE, body=body)
    os.killpg(dialtone.proc.pid, signal.SIGKILL)
    dialtone.proc.wait(timeout=10)
    smsc.start()
    dialtone.start()
    got = wait(lambda: (lambda t: t if set(bodies) <= set(t) else None)(texts_to(smsc, OWNER)),
               timeout=120, message="all 1000 after the restart")
    assert sorted(t for t in got if t.startswith("queued")) == bodies, "each exactly once"


def test_twilio_node_sends_follows_and_removes_a_message(webhook, smsc, dialtone):
    """tests/sdk-node/sms.js with twilio-node: a number with an SmsUrl, a message followed to
    `delivered`, the list filters, redaction, deletion and refusals with Twilio's codes. Here:
    the text reached the SMSC once."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    assert node, "node is not installed: run scripts/install-test-peers.sh"
    sdk = Path(__file__).resolve().parents[1] / "sdk-node"
    text = "Your booking starts Saturday at 9:00. Reply STOP to opt out."
    bound(smsc)
    env = dict(os.environ, DIALTONE_URL=dialtone.http_url, DIALTONE_ACCOUNT_SID=dialtone.account_sid,
               DIALTONE_AUTH_TOKEN=dialtone.auth_token, SMS_URL=webhook.route("/sms", "<Response/>"),
               SITE=SITE, OWNER=OWNER, TEXT=text)
    run = subprocess.run([node, str(sdk / "sms.js")], cwd=sdk, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, f"sms.js exited {run.returncode}:\n{run.stdout}\n{run.stderr}"
    summary = json.loads(run.stdout.strip().splitlines()[-1])["summary"]
    assert not summary["failed"] and len(summary["passed"]) >= 12, summary
    assert texts_to(smsc, OWNER) == [text]
