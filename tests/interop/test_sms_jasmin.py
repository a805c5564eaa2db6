"""The car-sharing exchange through Jasmin (PyPI `jasmin` 0.11.1), a second, independently written
SMSC: Dialtone binds to Jasmin's SMPP server API as a Jasmin user; Jasmin routes its submit_sm
(MT DefaultRoute) over its own SMPP client connector to the upstream test SMSC (tests/smsc/smsc.js),
relays the upstream's delivery receipt back to Dialtone as a deliver_sm receipt, and routes what
the upstream delivers (MO DefaultRoute to smpps(<user>)) to Dialtone's bind.

A missing peer (Debian's rabbitmq-server or redis-server, tests/.jasmin-venv) is an error, never a
skip: scripts/install-test-peers.sh installs them."""

from __future__ import annotations

import time

import pytest

from jasmin import Jasmin
from test_sms import OWNER, QUESTION, SITE, booking_reply, serve_with_smsc, site_number, texts_to, wait


@pytest.fixture
def jasmin(workdir, ports):
    t0 = time.monotonic()
    peer = Jasmin(workdir / "jasmin", ports)
    print(f"\nJasmin peer set up in {time.monotonic() - t0:.1f} s: {peer.timings}")
    yield peer
    peer.stop()


@pytest.fixture
def dialtone(dialtone_binary, workdir, ports, jasmin, request):
    def peer_logs() -> str:
        return (f"----- jasmind log tail -----\n{jasmin.log_tail('jasmind', 60)}\n"
                f"----- jasmin messages.log -----\n{jasmin.jasmin_log('messages.log', 60)}\n"
                f"----- upstream smsc log tail -----\n{jasmin.upstream.log_tail(60)}\n-----")

    yield from serve_with_smsc(dialtone_binary, workdir, ports, request,
                               f"smpp://{jasmin.username}:{jasmin.password}@127.0.0.1:{jasmin.port}",
                               peer_logs)


def dialtone_bound(jasmin: Jasmin) -> None:
    """Dialtone's bind as Jasmin's SMPP server API logs it."""
    wait(lambda: f"bind for '{jasmin.username}'" in jasmin.jasmin_log("default-smpps_01.log", 400),
         timeout=20, message=f"Dialtone bound to Jasmin:\n{jasmin.jasmin_log('default-smpps_01.log')}")


def test_car_sharing_booking_yes_and_no_through_jasmin(twilio_client, webhook, jasmin, dialtone):
    upstream = jasmin.upstream
    site_number(twilio_client, webhook, booking_reply)
    status_url = webhook.route("/status", "")
    dialtone_bound(jasmin)

    msg = twilio_client.messages.create(to=OWNER, from_=SITE, body=QUESTION, status_callback=status_url)
    assert msg.status == "queued" and msg.num_segments == "1" and msg.direction == "outbound-api"
    # Jasmin relays the submit_sm to the upstream SMSC over its own bind (system_id "jasmin").
    wait(lambda: QUESTION in texts_to(upstream, OWNER), timeout=20, message="the question at the upstream SMSC")
    submitted = [s for s in upstream.submitted() if s.get("text") == QUESTION]
    assert len(submitted) == 1, submitted
    assert submitted[0]["system_id"] == "jasmin", submitted[0]
    assert submitted[0]["source"] == SITE and submitted[0]["registered_delivery"] & 1, submitted[0]
    # The upstream's DELIVRD receipt, relayed by Jasmin as a deliver_sm receipt, makes it delivered.
    wait(lambda: twilio_client.messages(msg.sid).fetch().status == "delivered", timeout=20,
         message="delivered through Jasmin's relayed receipt")
    statuses = wait(lambda: [r.params["MessageStatus"] for r in webhook.received("/status")]
                    if len(webhook.received("/status")) >= 2 else None, message="two status callbacks")
    assert statuses == ["sent", "delivered"], statuses
    last = webhook.received("/status")[-1].params
    assert last["MessageSid"] == msg.sid and last["SmsStatus"] == "delivered" and last["To"] == OWNER
    fetched = twilio_client.messages(msg.sid).fetch()
    assert fetched.date_sent is not None and fetched.error_code is None
    # The upstream's receipt went to Jasmin's bind and was acknowledged.
    receipts = [d for d in upstream.deliveries() if d["kind"] == "receipt"]
    assert receipts and all(d["system_id"] == "jasmin" for d in receipts), receipts

    # The owner answers YES at the upstream: Jasmin's MO route brings it to Dialtone's bind.
    upstream.deliver(OWNER, SITE, "YES", system_id="jasmin")
    hook = wait(lambda: webhook.received("/sms"), timeout=20, message="the SmsUrl request")[0].params
    assert hook["Body"] == "YES" and hook["From"] == OWNER and hook["To"] == SITE, hook
    assert hook["SmsStatus"] == "received" and hook["NumMedia"] == "0" and hook["NumSegments"] == "1"
    assert hook["MessageSid"].startswith("SM") and hook["SmsSid"] == hook["MessageSid"] == hook["SmsMessageSid"]
    assert hook["AccountSid"] == dialtone.account_sid and hook["ApiVersion"] == "2010-04-01"
    wait(lambda: "Booking confirmed" in texts_to(upstream, OWNER), timeout=20,
         message="the confirmation at the upstream SMSC")
    # Jasmin acknowledged the upstream's deliver_sm (ESME_ROK).
    wait(lambda: [d for d in upstream.deliveries() if d["kind"] == "message"]
         and all(d["command_status"] == 0 for d in upstream.deliveries() if d["kind"] == "message"),
         message="the YES acknowledged by Jasmin")

    # NO takes the other branch.
    upstream.deliver(OWNER, SITE, "no", system_id="jasmin")
    wait(lambda: "Booking declined" in texts_to(upstream, OWNER), timeout=20,
         message="the refusal at the upstream SMSC")
    assert "Booking confirmed" in texts_to(upstream, OWNER)

    inbound = twilio_client.messages.list(from_=OWNER, to=SITE)
    assert sorted(m.body for m in inbound) == ["YES", "no"]
    assert {m.direction for m in inbound} == {"inbound"} and {m.status for m in inbound} == {"received"}
    replies = [m for m in twilio_client.messages.list(to=OWNER) if m.direction == "outbound-reply"]
    assert sorted(m.body for m in replies) == ["Booking confirmed", "Booking declined"]
    wait(lambda: all(twilio_client.messages(m.sid).fetch().status == "delivered" for m in replies),
         timeout=20, message="the replies delivered")


def test_long_messages_through_jasmin(twilio_client, webhook, jasmin, dialtone):
    """A 400-character UCS-2 text (Cyrillic and emoji) and a GSM-7 one with extension characters
    leave in parts that Jasmin carries to the upstream whole, each ends `delivered` once every
    part's receipt came back through Jasmin, and a three-part answer reaches the app as one Body."""
    upstream = jasmin.upstream
    site_number(twilio_client, webhook, "<Response/>")
    dialtone_bound(jasmin)
    ucs2 = ("Привет, мир! 🚗 " * 40)[:400]
    gsm = "Price: 10€ [deposit] {keys} ~ ok | back\\slash ^ " * 5
    sent = [twilio_client.messages.create(to=OWNER, from_=SITE, body=text) for text in (ucs2, gsm)]
    wait(lambda: ucs2 in texts_to(upstream, OWNER) and gsm in texts_to(upstream, OWNER), timeout=30,
         message="both whole at the upstream SMSC")
    for m in sent:
        wait(lambda: twilio_client.messages(m.sid).fetch().status == "delivered", timeout=30,
             message=f"{m.sid} delivered through Jasmin's relayed receipts")
    long_in = "This is a long answer from the owner, " * 6
    upstream.deliver(OWNER, SITE, long_in, parts=3, system_id="jasmin")
    hook = wait(lambda: webhook.received("/sms"), timeout=20, message="the SmsUrl request")[0].params
    assert hook["Body"] == long_in, hook["Body"]
    assert hook["NumSegments"] == "3"
