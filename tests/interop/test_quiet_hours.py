"""Quiet hours with the official twilio SDK and a pjsua2 UAS behind a SIP trunk.

The destination's time zone is set through a per-number override (TimeZoneOverrides) to a zone
where it is night now, computed from the current UTC time; the account's calling window opens
at the next whole minute + 1 there. A call created with the SDK is `scheduled` with
`date_scheduled` at that opening; the server is killed (-9) and restarted on the same data dir;
the call is still scheduled, is placed at the opening (within a few seconds) and pjsua2 answers
it. Meanwhile: a refused-policy call gets Dialtone's 99100 through the SDK's exception, a call to
a number without the override gets its zone from libphonenumber's data (the message names it), a
scheduled call is canceled with the SDK and never rings, and the new resources answer as
documented. A `<Dial><Number>` outside its window is refused (someone waits live): the action
gets DialCallStatus=failed at once, the leg never reaches the UAS, and the call's notification
names the rule (99100)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from conftest import CALLER, NUMBER, SIGNED_REQUESTS
from peers import PEERS, finish_pjsua2, start_pjsua2
from server import DialtoneServer
from webhook import Webhook

TO = "+15550009999"
OTHER = "+33142685300"  # Paris by libphonenumber's data
FROM = "+15550001111"
SAY = '<Response><Say>Good morning, the window is open.</Say><Pause length="3"/></Response>'
QUIET_HOURS_CODE = 99100


def night_zone(now: dt.datetime) -> tuple[str, int]:
    """An `Etc/GMT±N` zone (no DST) where it is 02:xx-03:xx now, and its UTC offset in hours."""
    offset = (3 - now.hour) % 24
    if offset > 14:
        offset -= 24
    # POSIX sign: Etc/GMT-8 is UTC+8.
    name = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"
    return name, offset


def wall(req) -> float:
    """A webhook request's arrival as wall-clock seconds."""
    return time.time() - (time.monotonic() - req.at)


def start_uas(workdir, sip_port: int, rtp_port: int) -> subprocess.Popen:
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", "callee",
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port), "--duration", "4",
           "--timeout", "240", "--log", str(workdir / "pjsua2.log"),
           "--result", str(workdir / "pjsua2.json")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill9(server: DialtoneServer) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.ports.release(server.http_port, server.sip_port, server.rtp_ports)


def post(server: DialtoneServer, path: str, data) -> requests.Response:
    return requests.post(server.api(path), auth=(server.account_sid, server.auth_token), data=data,
                         timeout=10)


def sdk(server: DialtoneServer) -> Client:
    client = Client(server.account_sid, server.auth_token)
    client.api.base_url = server.http_url
    return client


def test_deferred_call_survives_a_restart_and_rings_at_the_window_opening(
        dialtone_binary, workdir, ports):
    uas_sip = ports.port()
    uas_rtp, _ = ports.block(20)
    env = {"DIALTONE_TRUNK": f"sip:127.0.0.1:{uas_sip}"}
    first = DialtoneServer(dialtone_binary, workdir, ports, extra_env=env).start()
    second = None
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((first.auth_token, r)))
    uas = start_uas(workdir, uas_sip, uas_rtp)
    try:
        time.sleep(1.5)  # the UAS binds its port
        assert uas.poll() is None, uas.communicate()
        client = sdk(first)

        now = dt.datetime.now(dt.timezone.utc)
        zone, offset = night_zone(now)
        local_now = now + dt.timedelta(hours=offset)
        assert 2 <= local_now.hour <= 3, (zone, local_now)
        # The window opens at the next whole minute + 1, local time, and lasts an hour.
        opens_local = local_now.replace(second=0, microsecond=0) + dt.timedelta(minutes=2)
        closes_local = opens_local + dt.timedelta(hours=1)
        opens_utc = opens_local - dt.timedelta(hours=offset)
        hours = f"mon-sun {opens_local:%H:%M}-{closes_local:%H:%M}"

        r = post(first, "/TimeZoneOverrides.json", {"PhoneNumber": TO, "TimeZone": zone})
        assert r.status_code == 201, r.text
        override = r.json()
        assert override["sid"].startswith("TZ") and override["phone_number"] == TO
        assert override["time_zone"] == zone and override["prefix"] is None
        r = post(first, "/TimeZoneOverrides.json", {"PhoneNumber": TO, "TimeZone": "Europe/Paris"})
        assert r.status_code == 400 and r.json()["code"] == 20001, r.text
        r = post(first, "/TimeZoneOverrides.json", {"Prefix": "+1555", "TimeZone": "Mars/Olympus"})
        assert r.status_code == 400 and "TimeZone" in r.json()["message"], r.text

        r = post(first, "/CallingWindow.json", {"Hours": hours, "DatesOff": "2030-12-25"})
        assert r.status_code == 200, r.text
        window = r.json()
        assert window["hours"] == hours and window["policy"] == "defer"
        assert window["dial_policy"] == "refuse" and window["dates_off"] == ["2030-12-25"]
        assert window["days"]["monday"] == f"{opens_local:%H:%M}-{closes_local:%H:%M}"
        assert window["inherited"] is False

        # Deferred (the window's default policy), with the SDK.
        call = client.calls.create(to=TO, from_=FROM, url=hook.route("/voice", SAY),
                                   status_callback=hook.route("/status", ""),
                                   status_callback_event=["initiated", "answered", "completed"])
        assert call.status == "scheduled", call.status
        raw = first.get(first.api(f"/Calls/{call.sid}.json")).json()
        scheduled_at = dt.datetime.strptime(raw["date_scheduled"], "%a, %d %b %Y %H:%M:%S %z")
        assert scheduled_at == opens_utc, (raw["date_scheduled"], opens_utc)
        assert [c.sid for c in client.calls.list(status="scheduled")] == [call.sid]

        # Refused by policy: the SDK raises Dialtone's code, the message names the local time.
        r = post(first, "/CallingWindow.json", {"Policy": "refuse"})
        assert r.status_code == 200 and r.json()["hours"] == hours, r.text
        with pytest.raises(TwilioRestException) as refused:
            client.calls.create(to=TO, from_=FROM, url=hook.route("/voice", SAY))
        assert refused.value.status == 400 and refused.value.code == QUIET_HOURS_CODE
        message = refused.value.msg
        assert f"{TO} is outside its calling window ({hours}" in message, message
        assert f"{local_now:%Y-%m-%d %H}:" in message and f"in {zone}" in message, message
        assert f"opens at {opens_utc:%Y-%m-%dT%H:%M:%S}Z" in message, message
        # Without the override the number's zone comes from libphonenumber: Paris for +33.
        r = post(first, "/Calls.json", {"To": OTHER, "From": FROM, "Url": hook.url("/voice"),
                                        "CallingWindow": "mon-sun 00:00-00:01",
                                        "QuietHoursPolicy": "refuse"})
        assert r.status_code == 400 and r.json()["code"] == QUIET_HOURS_CODE, r.text
        assert "in Europe/Paris" in r.json()["message"], r.text
        # A request's own window that does not parse is a 400.
        r = post(first, "/Calls.json", {"To": TO, "From": FROM, "Url": hook.url("/voice"),
                                        "CallingWindow": "mon 18:00-09:00"})
        assert r.status_code == 400 and "CallingWindow" in r.json()["message"], r.text
        r = post(first, "/CallingWindow.json", {"Policy": "defer"})
        assert r.status_code == 200, r.text

        # A second deferred call, canceled with the SDK: it never rings.
        canceled = client.calls.create(to=TO, from_=FROM, url=hook.route("/voice", SAY),
                                       status_callback=hook.route("/canceled", ""))
        assert canceled.status == "scheduled"
        assert client.calls(canceled.sid).update(status="canceled").status == "canceled"
        assert hook.wait_for("/canceled")[0].params["CallStatus"] == "canceled"

        # Killed and restarted on the same data dir before the window opens.
        assert dt.datetime.now(dt.timezone.utc) < opens_utc - dt.timedelta(seconds=10), \
            "too slow: the window opened before the restart"
        kill9(first)
        second = DialtoneServer(dialtone_binary, workdir, ports, extra_env=env).start()
        client = sdk(second)
        assert client.calls(call.sid).fetch().status == "scheduled"
        assert not hook.received("/voice") and not hook.received("/status")

        # Placed at the opening, answered by pjsua2.
        wait = (opens_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()
        initiated = hook.wait_for("/status", timeout=wait + 15)[0]
        late = wall(initiated) - opens_utc.timestamp()
        print(f"placed {late:.2f} s after the window opened ({zone}, {hours})")
        assert -0.5 <= late <= 3.0, late
        assert initiated.params["CallSid"] == call.sid
        assert initiated.params["CallStatus"] == "initiated"
        voice = hook.wait_for("/voice", timeout=15)[0]
        assert voice.params["CallSid"] == call.sid and voice.params["CallStatus"] == "in-progress"
        report = finish_pjsua2(uas, workdir, timeout=30)
        uas = None
        assert report["connected"] and report["media_active"], report
        deadline = time.monotonic() + 15
        while client.calls(call.sid).fetch().status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
        final = client.calls(call.sid).fetch()
        assert final.status == "completed" and int(final.duration) >= 3, (final.status, final.duration)
        raw = second.get(second.api(f"/Calls/{call.sid}.json")).json()
        assert raw["date_scheduled"] is not None
        assert client.calls(canceled.sid).fetch().status == "canceled"
        assert len(hook.received("/voice")) == 1
        assert client.calls.list(status="scheduled") == []

        # The resources outlive the restart; deleting the window lifts the restriction.
        r = second.get(second.api(f"/TimeZoneOverrides/{override['sid']}.json"))
        assert r.status_code == 200 and r.json()["time_zone"] == zone
        assert requests.delete(second.api("/CallingWindow.json"),
                               auth=(second.account_sid, second.auth_token), timeout=10).status_code == 204
        assert second.get(second.api("/CallingWindow.json")).status_code == 404
        assert requests.delete(second.api(f"/TimeZoneOverrides/{override['sid']}.json"),
                               auth=(second.account_sid, second.auth_token), timeout=10).status_code == 204
    finally:
        if uas is not None:
            uas.kill()
            uas.communicate()
        hook.close()
        if first.alive():
            first.stop()
        code = second.stop() if second is not None else None
    assert code == 0, f"dialtone exited with {code}:\n{second.log_tail(60) if second else ''}"


def test_dial_number_outside_its_window_is_refused_and_never_rings(dialtone_binary, workdir,
                                                                  ports):
    uas_sip = ports.port()
    uas_rtp, _ = ports.block(20)
    server = DialtoneServer(dialtone_binary, workdir, ports,
                            extra_env={"DIALTONE_TRUNK": f"sip:127.0.0.1:{uas_sip}"}).start()
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    # A UAS that would answer at once: the refused leg must never reach it.
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", "callee",
           "--sip-port", str(uas_sip), "--rtp-port", str(uas_rtp), "--duration", "2",
           "--timeout", "15", "--result", str(workdir / "uas.json")]
    uas = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caller = None
    try:
        zone, _ = night_zone(dt.datetime.now(dt.timezone.utc))
        assert post(server, "/TimeZoneOverrides.json", {"Prefix": "+1555000", "TimeZone": zone}).status_code == 201
        r = post(server, "/CallingWindow.json", {"Hours": "mon-sun 09:00-17:00"})
        assert r.status_code == 200 and r.json()["dial_policy"] == "refuse", r.text
        voice = f'<Response><Dial action="/after" timeout="10"><Number>{TO}</Number></Dial></Response>'
        r = post(server, "/IncomingPhoneNumbers.json", {"PhoneNumber": NUMBER, "VoiceUrl": hook.route("/voice", voice)})
        assert r.status_code == 201, r.text
        hook.route("/after", "<Response><Hangup/></Response>")
        time.sleep(1.0)  # the UAS binds its port
        caller = start_pjsua2(workdir / "caller", uri=f"sip:{NUMBER}@127.0.0.1:{server.sip_port}",
                              sip_port=ports.port(), rtp_port=ports.block(20)[0], play=None,
                              record=None, dtmf=[], duration=20, timeout=30, transport="udp",
                              user=CALLER)
        started = time.monotonic()
        after = hook.wait_for("/after", timeout=20)[0]
        elapsed = time.monotonic() - started
        print(f"DialCallStatus={after.params['DialCallStatus']} after {elapsed:.2f} s")
        assert after.params["DialCallStatus"] == "failed", after.params
        assert elapsed < 5, elapsed
        parent = after.params["CallSid"]
        finish_pjsua2(caller, workdir / "caller", timeout=40)
        caller = None

        client = sdk(server)
        legs = client.calls.list(parent_call_sid=parent)
        assert [(leg.to, leg.status) for leg in legs] == [(TO, "failed")], legs
        notes = server.get(server.api(f"/Calls/{parent}/Notifications.json")).json()["notifications"]
        assert [str(n["error_code"]) for n in notes] == [str(QUIET_HOURS_CODE)], notes
        text = notes[0]["message_text"]
        assert f"{TO} is outside its calling window (mon-sun 09:00-17:00" in text, text
        assert f"in {zone}" in text, text

        # A conference participant created through the API is refused the same way.
        with pytest.raises(TwilioRestException) as refused:
            client.conferences("room").participants.create(from_=FROM, to=TO)
        assert refused.value.status == 400 and refused.value.code == QUIET_HOURS_CODE
        assert f"in {zone}" in refused.value.msg, refused.value.msg

        out, err = uas.communicate(timeout=30)
        report = json.loads((workdir / "uas.json").read_text())
        assert not report["connected"] and report["states"] == [], report
        uas = None
    finally:
        for p in (caller, uas):
            if p is not None:
                p.kill()
                p.communicate()
        hook.close()
        code = server.stop()
    assert code == 0, server.log_tail(60)
