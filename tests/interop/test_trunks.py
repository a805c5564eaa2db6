"""A carrier trunk with real peers: Kamailio plays the carrier (digest-challenged REGISTER and
INVITE, plus a broken gateway socket that answers 503) in front of a pjsua2 UAS. Dialtone
registers with the carrier (seen in Kamailio's location table), and a call created with the
twilio SDK fails over from the 503 gateway to the working one, answers the 407 with the trunk's
credentials, is answered by pjsua2, runs its TwiML, and ends with status="completed"."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

from twilio.rest import Client

import audio
from conftest import SIGNED_REQUESTS
from peers import PEERS, finish_pjsua2
from server import DialtoneServer
from webhook import Webhook

SAY = '<Response><Say>Hello through the carrier.</Say><Pause length="30"/></Response>'
USER, PASSWORD = "acme", "trunk-secret"


def start_carrier(workdir, carrier_port: int, failing_port: int, callee_port: int):
    kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
    ctl = workdir / "kamailio.ctl"
    cmd = [kamailio, "-f", str(PEERS / "kamailio-carrier.cfg"), "-DD", "-E", "-m", "64", "-M", "8",
           "-A", f"CARRIER_LISTEN=udp:127.0.0.1:{carrier_port}",
           "-A", f"FAILING_LISTEN=udp:127.0.0.1:{failing_port}",
           "-A", f"FAILING_PORT={failing_port}",
           "-A", f'CALLEE_URI="sip:127.0.0.1:{callee_port}"',
           "-A", f'CTL_SOCKET="unix:{ctl}"',
           "-A", f'TRUNK_USER="{USER}"', "-A", f'TRUNK_PASSWORD="{PASSWORD}"']
    log = open(workdir / "kamailio.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    return proc, ctl


def ul_dump(ctl) -> str:
    kamcmd = shutil.which("kamcmd") or "/usr/sbin/kamcmd"
    r = subprocess.run([kamcmd, "-s", f"unix:{ctl}", "ul.dump"], capture_output=True, text=True,
                       timeout=10)
    return r.stdout + r.stderr


def start_uas(workdir, sip_port: int, rtp_port: int) -> subprocess.Popen:
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", "callee",
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port), "--duration", "60",
           "--timeout", "60", "--record", str(workdir / "heard.wav"),
           "--log", str(workdir / "pjsua2.log"), "--result", str(workdir / "pjsua2.json")]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_register_failover_and_digest_auth_through_kamailio(dialtone_binary, workdir, ports,
                                                            audio_tools):
    carrier_port, failing_port, uas_sip = ports.port(), ports.port(), ports.port()
    uas_rtp, _ = ports.block(20)
    carrier, ctl = start_carrier(workdir, carrier_port, failing_port, uas_sip)
    uas = start_uas(workdir, uas_sip, uas_rtp)
    server = DialtoneServer(dialtone_binary, workdir, ports, extra_env={
        # The broken gateway first: every call and the first REGISTER must fail over.
        "DIALTONE_TRUNK": f"sip:127.0.0.1:{failing_port},sip:127.0.0.1:{carrier_port}",
        "DIALTONE_TRUNK_USERNAME": USER,
        "DIALTONE_TRUNK_PASSWORD": PASSWORD,
        "DIALTONE_TRUNK_REGISTER": "true",
    })
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    try:
        time.sleep(1.0)  # Kamailio and the UAS bind their ports
        assert carrier.poll() is None, (workdir / "kamailio.log").read_text()[-3000:]
        assert uas.poll() is None, uas.communicate()
        server.start()

        # The REGISTER reaches the carrier's location table, authenticated.
        deadline = time.monotonic() + 15
        dump = ""
        while time.monotonic() < deadline:
            dump = ul_dump(ctl)
            if USER in dump and str(server.sip_port) in dump:
                break
            time.sleep(0.3)
        assert USER in dump and str(server.sip_port) in dump, dump
        kam_log = (workdir / "kamailio.log").read_text()
        assert "REGISTER challenge for acme" in kam_log, kam_log[-3000:]
        assert "REGISTERED acme expires=3600" in kam_log, kam_log[-3000:]

        client = Client(server.account_sid, server.auth_token)
        client.api.base_url = server.http_url
        call = client.calls.create(
            to="+15550009999", from_="+15550001111", url=hook.route("/voice", SAY),
            status_callback=hook.route("/status", ""), status_callback_method="POST",
            status_callback_event=["initiated", "answered", "completed"], timeout=20)
        assert call.status == "queued"

        voice = hook.wait_for("/voice", timeout=15)[0]
        assert voice.params["CallSid"] == call.sid
        assert voice.params["CallStatus"] == "in-progress"
        kam_log = (workdir / "kamailio.log").read_text()
        assert "FAILING gateway: 503 to INVITE sip:+15550009999@" in kam_log, kam_log[-3000:]
        assert "INVITE challenge for sip:+15550009999@" in kam_log, kam_log[-3000:]
        assert "INVITE authenticated as acme" in kam_log, kam_log[-3000:]
        time.sleep(4)  # the UAS hears the prompt

        client.calls(call.sid).update(status="completed")
        report = finish_pjsua2(uas, workdir, timeout=20)
        uas = None
        assert report["media_active"], report
        deadline = time.monotonic() + 10
        while client.calls(call.sid).fetch().status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
        final = client.calls(call.sid).fetch()
        assert final.status == "completed"
        assert int(final.duration) >= 3, final.duration
        statuses = [r.params["CallStatus"] for r in hook.wait_for("/status", timeout=10, count=3)]
        assert statuses == ["initiated", "in-progress", "completed"], statuses
        assert audio.speech_span(workdir / "heard.wav") is not None, "the UAS heard no speech"
    finally:
        if uas is not None:
            uas.kill()
            uas.communicate()
        hook.close()
        code = server.stop() if server.proc is not None else None
        stop(carrier)
    assert code == 0, f"dialtone exited with {code}:\n{server.log_tail(60)}"
