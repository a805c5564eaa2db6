"""Outbound calls placed with the official twilio SDK through a SIP trunk (DIALTONE_TRUNK) to a
pjsua2 UAS: the call is answered, its TwiML is heard, status callbacks arrive in order with
Twilio's parameters, a live update redirects it and status="completed" ends it. SendDigits reach
the UAS as DTMF once answered, and Record=true leaves one recording of the whole call."""

from __future__ import annotations

import subprocess
import sys
import time

from twilio.rest import Client

import audio
from conftest import SIGNED_REQUESTS
from peers import PEERS, finish_pjsua2
from server import DialtoneServer
from webhook import Webhook

SAY = '<Response><Say>Hello, this is an outbound call.</Say><Pause length="30"/></Response>'
REDIRECTED = '<Response><Say>You were redirected.</Say><Pause length="30"/></Response>'
ORDER = ["initiated", "ringing", "in-progress", "completed"]


def start_uas(workdir, sip_port: int, rtp_port: int) -> subprocess.Popen:
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", "callee",
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port), "--duration", "60",
           "--timeout", "60", "--record", str(workdir / "heard.wav"),
           "--log", str(workdir / "pjsua2.log"), "--result", str(workdir / "pjsua2.json")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sdk_call_through_trunk_answered_redirected_and_completed(dialtone_binary, workdir, ports,
                                                                   audio_tools):
    uas_sip = ports.port()
    uas_rtp, _ = ports.block(20)
    server = DialtoneServer(dialtone_binary, workdir, ports,
                            extra_env={"DIALTONE_TRUNK": f"sip:127.0.0.1:{uas_sip}"})
    server.start()
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    uas = start_uas(workdir, uas_sip, uas_rtp)
    try:
        time.sleep(1.5)  # the UAS binds its port
        assert uas.poll() is None, uas.communicate()
        client = Client(server.account_sid, server.auth_token)
        client.api.base_url = server.http_url

        call = client.calls.create(
            to="+15550009999", from_="+15550001111", url=hook.route("/voice", SAY),
            status_callback=hook.route("/status", ""), status_callback_method="POST",
            status_callback_event=["initiated", "ringing", "answered", "completed"], timeout=20,
            send_digits="w1234#", record=True)
        assert call.sid.startswith("CA") and call.status == "queued", (call.sid, call.status)
        assert call.direction == "outbound-api"

        voice = hook.wait_for("/voice", timeout=15)[0]
        assert voice.params["CallSid"] == call.sid
        assert voice.params["CallStatus"] == "in-progress"
        assert voice.params["Direction"] == "outbound-api"
        assert client.calls(call.sid).fetch().status == "in-progress"
        time.sleep(4)  # the UAS hears the prompt

        updated = client.calls(call.sid).update(url=hook.route("/redirected", REDIRECTED),
                                                method="POST")
        assert updated.sid == call.sid
        redirected = hook.wait_for("/redirected", timeout=10)[0]
        assert redirected.params["CallSid"] == call.sid
        time.sleep(3)

        client.calls(call.sid).update(status="completed")
        report = finish_pjsua2(uas, workdir, timeout=20)
        uas = None
        assert report["hangup_by"] in (None, "remote"), report
        assert report["media_active"], report
        digits = "".join(d for _, d in report["dtmf_received"])
        assert digits == "1234#", report["dtmf_received"]

        deadline = time.monotonic() + 10
        while True:
            statuses = [r.params.get("CallStatus") for r in hook.received("/status")]
            if "completed" in statuses or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        callbacks = hook.received("/status")
        statuses = [r.params["CallStatus"] for r in callbacks]
        # pjsua2 answers at once (no 180), so `ringing` may be absent; the order is Twilio's.
        assert statuses in (ORDER, [s for s in ORDER if s != "ringing"]), statuses
        for i, cb in enumerate(callbacks):
            p = cb.params
            assert p["SequenceNumber"] == str(i), p
            assert p["CallSid"] == call.sid and p["AccountSid"] == server.account_sid
            assert p["CallbackSource"] == "call-progress-events"
            assert p["Direction"] == "outbound-api" and p["ApiVersion"] == "2010-04-01"
            assert p["To"] == p["Called"] == "+15550009999"
            assert p["From"] == p["Caller"] == "+15550001111"
            assert p["Timestamp"]
        final = client.calls(call.sid).fetch()
        assert final.status == "completed"
        assert callbacks[-1].params["CallDuration"] == final.duration
        assert int(final.duration) >= 6, final.duration
        assert final.start_time is not None and final.end_time is not None

        heard = audio.speech_span(workdir / "heard.wav")
        assert heard is not None, "the UAS heard no speech"

        # Record=true: one recording of the whole call (from answer), listed with the call.
        deadline = time.monotonic() + 10
        recordings = []
        while not recordings and time.monotonic() < deadline:
            recordings = client.recordings.list(call_sid=call.sid)
            time.sleep(0.2)
        assert len(recordings) == 1, recordings
        rec = recordings[0]
        assert rec.call_sid == call.sid and rec.channels == 1 and rec.status == "completed"
        assert abs(int(rec.duration) - int(final.duration)) <= 2, (rec.duration, final.duration)

        # Finished: the record can be deleted.
        resp = server.get(server.api(f"/Calls/{call.sid}.json"))
        assert resp.json()["status"] == "completed"
        assert client.calls(call.sid).delete()
    finally:
        if uas is not None:
            uas.kill()
            uas.communicate()
        hook.close()
        code = server.stop()
    assert code == 0, f"dialtone exited with {code}:\n{server.log_tail(60)}"
