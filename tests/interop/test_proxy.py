"""Proxy v1 (number masking) with real peers and the official twilio SDK's `client.proxy.v1`.

Taxi: a driver (pjsua2) and a passenger (baresip) in one session, each reached through a trunk
by their own number prefix. Each calls its proxy number and reaches the other, whose phone shows
the caller's side of the session as the caller (the proxy number the callee would call back),
and audio crosses both ways. The session's Interactions list both calls with both legs. The
intercept callback answering 403 blocks a call and its TwiML is what the caller hears. Once the
session is closed (through the API) or its TTL has run out (the expiry task), a call from the
driver goes to the service's out-of-session callback, which gets the caller and the number.

A second test drives every Proxy resource through the SDK unchanged: shapes, paging, the pool's
80604 when it is exhausted, deletes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

import audio
from conftest import SIGNED_REQUESTS
from peers import PEERS, BaresipPeer, finish_pjsua2, start_pjsua2
from server import DialtoneServer
from test_dial import heard
from webhook import Webhook

DRIVER = "+17770000001"
PASSENGER = "+18880000002"
POOL = ["+15550100901", "+15550100902"]
DRIVER_TEXT = "This is the driver, I am waiting outside the station."
PASSENGER_TEXT = "Hello, the passenger is coming down the stairs now."
BLOCKED_TEXT = "Calls to this passenger are held by the dispatcher, goodbye."
OOS_TEXT = "This ride has ended, please call the support line."


def driver_uas(workdir: Path, sip_port: int, rtp_port: int, play: Path) -> subprocess.Popen:
    """The driver's phone waiting for one call: answers, plays its sentence, records."""
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", DRIVER,
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port), "--duration", "10",
           "--timeout", "40", "--play", str(play), "--record", str(workdir / "heard.wav"),
           "--log", str(workdir / "pjsua2.log"), "--result", str(workdir / "pjsua2.json")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def server_with_trunks(dialtone_binary, workdir: Path, ports, trunks: dict[str, int]) -> DialtoneServer:
    cfg = workdir / "dialtone.toml"
    cfg.write_text("".join(
        f'[[trunks]]\nname = "t{i}"\nuri = "sip:127.0.0.1:{port}"\nprefixes = ["{prefix}"]\n\n'
        for i, (prefix, port) in enumerate(trunks.items())))
    wrapper = workdir / "dialtone-serve.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{dialtone_binary}" serve --config "{cfg}"\n')
    wrapper.chmod(0o755)
    return DialtoneServer(wrapper, workdir, ports).start()


def sdk(server: DialtoneServer) -> Client:
    client = Client(server.account_sid, server.auth_token)
    client.api.base_url = server.http_url
    # The Proxy domain's every URL (page links included) comes from its own base_url.
    client.proxy.base_url = server.http_url
    return client


def pool_service(client: Client, hook: Webhook, name: str):
    service = client.proxy.v1.services.create(
        unique_name=name, out_of_session_callback_url=hook.route("/oos", f"<Response><Say>{OOS_TEXT}</Say></Response>"))
    for n in POOL:
        pn = client.incoming_phone_numbers.create(phone_number=n, voice_url=hook.route("/plain", "<Response><Hangup/></Response>"))
        client.proxy.v1.services(service.sid).phone_numbers.create(sid=pn.sid)
    return service


def open_taxi_session(client: Client, service_sid: str, **kw):
    session = client.proxy.v1.services(service_sid).sessions.create(**kw)
    parts = client.proxy.v1.services(service_sid).sessions(session.sid).participants
    driver = parts.create(identifier=DRIVER, friendly_name="driver")
    passenger = parts.create(identifier=PASSENGER, friendly_name="passenger")
    return session, driver, passenger


def driver_calls(server: DialtoneServer, workdir: Path, ports, number: str, play: Path, duration: float = 10) -> dict:
    caller = start_pjsua2(workdir, uri=f"sip:{number}@127.0.0.1:{server.sip_port}", sip_port=ports.port(),
                          rtp_port=ports.block(20)[0], play=play, record=workdir / "heard.wav", dtmf=[],
                          duration=duration, timeout=40, transport="udp", user=DRIVER)
    return finish_pjsua2(caller, workdir, timeout=60)


def user_of(uri: str) -> str:
    return uri.split("sip:", 1)[-1].split("@", 1)[0]


def test_taxi_driver_and_passenger_reach_each_other_through_their_proxy_numbers(
        dialtone_binary, workdir, ports, audio_tools):
    driver_port, passenger_port = ports.port(), ports.port()
    server = server_with_trunks(dialtone_binary, workdir, ports, {"+1777": driver_port, "+1888": passenger_port})
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    driver_wav = audio.synthesize(DRIVER_TEXT, workdir / "driver.wav", pad_before=1.0, pad_after=20)
    passenger_wav = audio.synthesize(PASSENGER_TEXT, workdir / "passenger.wav", pad_before=1.0, pad_after=60)
    passenger = BaresipPeer(workdir / "passenger", passenger_wav, sip_port=passenger_port, ctrl_port=ports.port(),
                            rtp_ports=ports.block(100), user=PASSENGER)
    try:
        client = sdk(server)
        service = pool_service(client, hook, "taxi")
        session, d, p = open_taxi_session(client, service.sid, unique_name="ride 42", ttl=3600)
        assert (d.proxy_identifier, p.proxy_identifier) == (POOL[0], POOL[0]), (d, p)
        assert session.status == "open"
        passenger.start()

        # 1. The driver calls its proxy number: the passenger's phone rings, showing the
        #    passenger's own proxy number as the caller, and audio crosses.
        report = driver_calls(server, workdir / "call1", ports, d.proxy_identifier, driver_wav)
        assert report["connected"] and report["media_active"], report
        assert passenger.wait_event("CALL_CLOSED", timeout=15) is not None, "the passenger's leg was not hung up"
        events = passenger.ctl.events()
        shown = [e.get("peeruri", "") for e in events if e.get("type") in ("CALL_INCOMING", "CALL_ESTABLISHED")]
        assert shown and all(user_of(u) == p.proxy_identifier for u in shown), (shown, events)
        passenger_heard = passenger.recordings("dec")
        assert len(passenger_heard) == 1, passenger_heard
        a = heard(workdir / "call1" / "heard.wav", PASSENGER_TEXT, workdir)
        b = heard(passenger_heard[0], DRIVER_TEXT, workdir)
        print(f"call 1: driver heard the passenger {a}; the passenger heard the driver {b}; caller id {shown}")

        # 2. The passenger calls its proxy number: the driver's phone shows the driver's proxy
        #    number as the caller.
        uas = driver_uas(workdir / "call2", driver_port, ports.block(20)[0], driver_wav)
        time.sleep(1.0)
        passenger.dial(f"sip:{p.proxy_identifier}@127.0.0.1:{server.sip_port}")
        assert passenger.wait_event("CALL_ESTABLISHED", timeout=15) is not None, passenger.log()[-2000:]
        time.sleep(6)
        passenger.hangup()
        report2 = finish_pjsua2(uas, workdir / "call2", timeout=40)
        assert report2["connected"] and report2["media_active"], report2
        assert user_of(report2["remote_uri"]) == d.proxy_identifier, report2["remote_uri"]
        c = heard(workdir / "call2" / "heard.wav", PASSENGER_TEXT, workdir)
        print(f"call 2: driver's phone showed {report2['remote_uri']}; the driver heard {c}")

        # 3. Both calls are interactions of the session, each with both legs, completed.
        deadline = time.monotonic() + 15
        while True:
            interactions = client.proxy.v1.services(service.sid).sessions(session.sid).interactions.list()
            done = [i for i in interactions if i.outbound_resource_status == "completed"
                    and i.inbound_resource_status == "completed"]
            if len(done) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(interactions) == 2 and len(done) == 2, [(i.inbound_resource_status, i.outbound_resource_status) for i in interactions]
        by_inbound = {i.inbound_participant_sid: i for i in interactions}
        assert set(by_inbound) == {d.sid, p.sid}
        assert by_inbound[d.sid].outbound_participant_sid == p.sid
        assert by_inbound[p.sid].outbound_participant_sid == d.sid
        for i in interactions:
            assert i.type == "voice" and i.inbound_resource_type == "Call" and i.outbound_resource_type == "Call"
            child = client.calls(i.outbound_resource_sid).fetch()
            assert child.parent_call_sid == i.inbound_resource_sid, (child.parent_call_sid, i.inbound_resource_sid)
        calls = {c.sid: c for c in client.calls.list()}
        assert calls[by_inbound[d.sid].outbound_resource_sid]._from == p.proxy_identifier
        assert calls[by_inbound[d.sid].outbound_resource_sid].to == PASSENGER
        fetched = client.proxy.v1.services(service.sid).sessions(session.sid).fetch()
        assert fetched.status == "in-progress" and fetched.date_last_interaction is not None, fetched.status

        # 4. The intercept callback refuses the next call with 403 and TwiML: the driver hears
        #    that message and the passenger's phone does not ring.
        blocked = f"<Response><Say>{BLOCKED_TEXT}</Say><Hangup/></Response>"
        client.proxy.v1.services(service.sid).update(
            intercept_callback_url=hook.route("/intercept", lambda req: (403, blocked, "application/xml")))
        before = len(passenger.ctl.events())
        report3 = driver_calls(server, workdir / "call3", ports, d.proxy_identifier, driver_wav)
        assert report3["connected"], report3
        req = hook.wait_for("/intercept")[0]
        assert req.params["interactionSessionSid"] == session.sid, req.params
        assert req.params["inboundParticipantIdentifier"] == DRIVER
        assert req.params["outboundParticipantIdentifier"] == PASSENGER
        assert req.signature, "the intercept callback is signed"
        rings = [e for e in passenger.ctl.events()[before:] if e.get("type") == "CALL_INCOMING"]
        assert not rings, rings
        said = heard(workdir / "call3" / "heard.wav", BLOCKED_TEXT, workdir)
        print(f"call 3 blocked by the intercept callback; the driver heard {said}")
        client.proxy.v1.services(service.sid).update(intercept_callback_url="")

        # 5. Closed through the API: the driver's call goes to the out-of-session callback.
        closed = client.proxy.v1.services(service.sid).sessions(session.sid).update(status="closed")
        assert closed.status == "closed" and closed.date_ended is not None
        report4 = driver_calls(server, workdir / "call4", ports, d.proxy_identifier, driver_wav)
        assert report4["connected"], report4
        oos = hook.wait_for("/oos")
        assert oos[0].params["From"] == DRIVER and oos[0].params["To"] == d.proxy_identifier, oos[0].params
        heard_oos = heard(workdir / "call4" / "heard.wav", OOS_TEXT, workdir)
        print(f"call 4 after close: out-of-session callback, the driver heard {heard_oos}")

        # 6. A session whose TTL runs out is closed by the server; then out of session again.
        ttl_session, d2, _ = open_taxi_session(client, service.sid, ttl=2)
        assert d2.proxy_identifier == POOL[0], "the closed session freed the pair"
        time.sleep(3.5)
        expired = client.proxy.v1.services(service.sid).sessions(ttl_session.sid).fetch()
        assert expired.status == "closed" and expired.closed_reason == "ttl", (expired.status, expired.closed_reason)
        report5 = driver_calls(server, workdir / "call5", ports, d2.proxy_identifier, driver_wav, duration=6)
        assert report5["connected"], report5
        assert len(hook.wait_for("/oos", count=2)) == 2
        # No other call reached the passenger.
        rings = [e for e in passenger.ctl.events()[before:] if e.get("type") == "CALL_INCOMING"]
        assert not rings, rings
    finally:
        passenger.stop()
        hook.close()
        code = server.stop()
    assert code == 0, server.log_tail(60)


def test_proxy_resources_through_the_sdk(dialtone, twilio_client, webhook):
    client = twilio_client
    client.proxy.base_url = dialtone.http_url
    proxy = client.proxy.v1
    svc = proxy.services.create(unique_name="shapes", default_ttl=600, callback_url="https://app.example/cb",
                                number_selection_behavior="avoid-sticky")
    assert svc.sid.startswith("KS") and svc.default_ttl == 600 and svc.number_selection_behavior == "avoid-sticky"
    assert svc.links["sessions"].endswith(f"/v1/Services/{svc.sid}/Sessions")
    with pytest.raises(TwilioRestException) as dup:
        proxy.services.create(unique_name="shapes")
    assert dup.value.status == 400
    assert proxy.services(svc.sid).fetch().unique_name == "shapes"
    assert proxy.services(svc.sid).update(default_ttl=0).default_ttl == 0

    numbers = [client.incoming_phone_numbers.create(phone_number=f"+1555020{i:04d}", voice_url=webhook.url("/v"))
               for i in range(3)]
    pool = proxy.services(svc.sid).phone_numbers
    first = pool.create(sid=numbers[0].sid)
    assert (first.sid, first.phone_number, first.is_reserved, first.in_use) == (numbers[0].sid, "+15550200000", False, 0)
    pool.create(phone_number="+15550200001")
    reserved = pool.create(sid=numbers[2].sid, is_reserved=True)
    assert reserved.is_reserved
    assert pool(reserved.sid).update(is_reserved=True).is_reserved
    assert len(pool.list()) == 3
    # Paging through the v1 envelope, one record a page.
    assert sorted(n.phone_number for n in pool.stream(page_size=1)) == ["+15550200000", "+15550200001", "+15550200002"]
    with pytest.raises(TwilioRestException) as taken:
        proxy.services.create(unique_name="other").phone_numbers.create(sid=numbers[0].sid)
    assert taken.value.status == 400

    # Sessions with their participants in the create, as the SDK serialises them.
    sessions = []
    for i in range(2):
        s = proxy.services(svc.sid).sessions.create(
            unique_name=f"order {i}", mode="voice-only" if i else "voice-and-message", ttl=0,
            participants=[{"Identifier": "+14155550100", "FriendlyName": "Alice"}, {"Identifier": f"+1415555020{i}"}])
        assert (s.sid[:2], s.status, s.unique_name) == ("KC", "open", f"order {i}")
        assert s.mode == ("voice-only" if i else "voice-and-message")
        sessions.append(s)
    parts = proxy.services(svc.sid).sessions(sessions[0].sid).participants.list()
    assert len(parts) == 2 and {p.sid[:2] for p in parts} == {"KP"}
    alice = [p for p in proxy.services(svc.sid).sessions(sessions[1].sid).participants.list()
             if p.identifier == "+14155550100"][0]
    # Alice is in two open sessions: two numbers; the reserved one is never chosen.
    alice0 = [p for p in parts if p.identifier == "+14155550100"][0]
    assert {alice0.proxy_identifier, alice.proxy_identifier} == {"+15550200000", "+15550200001"}
    assert alice.friendly_name == "Alice" and alice.proxy_identifier_sid.startswith("PN")
    assert pool(first.sid).fetch().in_use >= 1
    # A third open session for Alice: the unreserved pool is exhausted (80604)...
    third = proxy.services(svc.sid).sessions.create()
    with pytest.raises(TwilioRestException) as exhausted:
        third.participants.create(identifier="+14155550100")
    assert (exhausted.value.status, exhausted.value.code) == (400, 80604), exhausted.value
    # ...but the reserved number may be given.
    given = third.participants.create(identifier="+14155550100", proxy_identifier="+15550200002")
    assert given.proxy_identifier == "+15550200002"
    with pytest.raises(TwilioRestException) as full:
        for n in ("+14155550301", "+14155550302"):
            third.participants.create(identifier=n)
    assert full.value.status == 400

    # A message to a participant from its proxy number, as a MessageInteraction.
    mi = proxy.services(svc.sid).sessions(sessions[0].sid).participants(alice0.sid).message_interactions.create(body="Your driver is here")
    assert mi.sid.startswith("KI") and mi.type == "message" and mi.outbound_resource_type == "Message"
    assert json.loads(mi.data) == {"body": "Your driver is here"}
    msg = client.messages(mi.outbound_resource_sid).fetch()
    assert (msg.from_, msg.to, msg.body) == (alice0.proxy_identifier, "+14155550100", "Your driver is here")
    listed = proxy.services(svc.sid).sessions(sessions[0].sid).participants(alice0.sid).message_interactions.list()
    assert [m.sid for m in listed] == [mi.sid]
    assert proxy.services(svc.sid).sessions(sessions[0].sid).interactions(mi.sid).fetch().sid == mi.sid
    assert len(proxy.services(svc.sid).sessions(sessions[0].sid).interactions.list()) == 1

    # Close and reopen; delete what was made.
    s0 = proxy.services(svc.sid).sessions(sessions[0].sid)
    assert s0.update(status="closed").status == "closed"
    assert s0.update(status="in-progress").status == "in-progress"
    assert s0.participants(alice0.sid).delete()
    assert s0.interactions(mi.sid).delete()
    assert s0.delete()
    with pytest.raises(TwilioRestException) as gone:
        s0.fetch()
    assert gone.value.status == 404
    assert pool(reserved.sid).delete()
    assert len(proxy.services.list()) == 2
    assert proxy.services(svc.sid).delete()
    assert [s.unique_name for s in proxy.services.list()] == ["other"]


@pytest.fixture
def smsc(workdir, ports):
    from smsc import Smsc

    peer = Smsc(workdir / "smsc", ports)
    yield peer
    peer.stop()


@pytest.fixture
def sms_dialtone(dialtone_binary, workdir, ports, smsc, request):
    from test_sms import serve_with_smsc

    yield from serve_with_smsc(dialtone_binary, workdir, ports, request,
                               f"smpp://dialtone:secret@127.0.0.1:{smsc.port}",
                               lambda: f"----- smsc log tail -----\n{smsc.log_tail(60)}\n-----")


def test_taxi_messages_cross_through_the_session_from_the_proxy_numbers(sms_dialtone, smsc):
    from test_sms import bound, texts_to, wait

    server = sms_dialtone
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    try:
        client = sdk(server)
        oos_reply = "<Response><Message>This ride has ended.</Message></Response>"
        service = client.proxy.v1.services.create(unique_name="texts", out_of_session_callback_url=hook.route("/oos-sms", oos_reply))
        for n in POOL:
            pn = client.incoming_phone_numbers.create(phone_number=n, sms_url=hook.route("/plain-sms", "<Response/>"))
            client.proxy.v1.services(service.sid).phone_numbers.create(sid=pn.sid)
        session, d, p = open_taxi_session(client, service.sid)
        bound(smsc)

        smsc.deliver(DRIVER, d.proxy_identifier, "I am outside, blue car")
        wait(lambda: "I am outside, blue car" in texts_to(smsc, PASSENGER), message="the driver's text at the passenger")
        smsc.deliver(PASSENGER, p.proxy_identifier, "Coming down now")
        wait(lambda: "Coming down now" in texts_to(smsc, DRIVER), message="the passenger's text at the driver")
        sources = {(s["dest"], s["source"]) for s in smsc.submitted() if s.get("command_status", 0) == 0}
        # Each side sees the other's texts come from its own proxy number, never the other's phone.
        assert (PASSENGER, p.proxy_identifier) in sources and (DRIVER, d.proxy_identifier) in sources, sources
        assert not any(src in (DRIVER, PASSENGER) for _, src in sources), sources
        assert not hook.received("/plain-sms"), "a pool number's own SmsUrl is not used in a session"

        interactions = client.proxy.v1.services(service.sid).sessions(session.sid).interactions.list()
        assert len(interactions) == 2 and {i.type for i in interactions} == {"message"}, interactions
        by_inbound = {i.inbound_participant_sid: i for i in interactions}
        assert json.loads(by_inbound[d.sid].data) == {"body": "I am outside, blue car"}
        assert by_inbound[d.sid].outbound_participant_sid == p.sid
        assert by_inbound[d.sid].inbound_resource_type == "Message" == by_inbound[d.sid].outbound_resource_type
        sent = client.messages(by_inbound[p.sid].outbound_resource_sid).fetch()
        assert (sent.from_, sent.to, sent.body) == (d.proxy_identifier, DRIVER, "Coming down now")

        # The intercept callback's 403 stops a text: it never reaches the passenger.
        client.proxy.v1.services(service.sid).update(
            intercept_callback_url=hook.route("/intercept-sms", lambda req: (403, "", "text/plain")))
        smsc.deliver(DRIVER, d.proxy_identifier, "Meet me at gate 9")
        req = hook.wait_for("/intercept-sms")[0]
        assert req.params["interactionType"] == "Message" and json.loads(req.params["interactionData"]) == {
            "body": "Meet me at gate 9"}, req.params
        wait(lambda: len(client.proxy.v1.services(service.sid).sessions(session.sid).interactions.list()) == 3,
             message="the blocked text's interaction")
        time.sleep(1.0)
        assert "Meet me at gate 9" not in texts_to(smsc, PASSENGER)
        client.proxy.v1.services(service.sid).update(intercept_callback_url="")

        # Closed: the out-of-session callback answers the text.
        client.proxy.v1.services(service.sid).sessions(session.sid).update(status="closed")
        smsc.deliver(DRIVER, d.proxy_identifier, "Did I forget my umbrella?")
        req = hook.wait_for("/oos-sms")[0]
        assert req.params["From"] == DRIVER and req.params["Body"] == "Did I forget my umbrella?", req.params
        wait(lambda: "This ride has ended." in texts_to(smsc, DRIVER), message="the out-of-session answer")
        assert texts_to(smsc, PASSENGER).count("Did I forget my umbrella?") == 0
    finally:
        hook.close()
