"""<Dial> with real peers.

- baresip registers as agent `alice` (digest auth, credentials made through the SIP API); pjsua2
  calls a number whose app dials <Client>alice</Client>; each side plays its own speech and
  records what it hears; each recording holds the other side's speech.
- <Dial> of two numbers through two trunks (prefix routing) to two pjsua2 UASes, one answering
  486: the other is bridged (speech both ways, RFC 4733 digits cross), the action gets
  DialCallStatus=completed with the answering leg's DialCallSid and DialCallDuration; the
  dual-channel recording holds the caller on the left and the callee on the right. Every leg
  busy gives `busy`; nobody answering within timeout gives `no-answer`.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import requests

import audio
from conftest import CALLER, NUMBER, SIGNED_REQUESTS
from peers import PEERS, BaresipPeer, finish_pjsua2, start_pjsua2
from server import DialtoneServer
from webhook import Webhook

CALLER_TEXT = "This is the caller speaking through the bridge."
CALLEE_TEXT = "Hello, the agent answers the call now."
PASSWORD = "Alice-Secret-2024"
AFTER = "<Response><Hangup/></Response>"


def uas(workdir: Path, name: str, sip_port: int, rtp_port: int, busy: bool = False,
        play: Path | None = None, duration: float = 60) -> subprocess.Popen:
    d = workdir / name
    d.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", name,
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port), "--duration", str(duration),
           "--timeout", "60", "--record", str(d / "heard.wav"), "--log", str(d / "pjsua2.log"),
           "--result", str(d / "pjsua2.json")]
    if busy:
        cmd.append("--busy")
    if play:
        cmd += ["--play", str(play)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def trunk_server(dialtone_binary, workdir, ports, trunks: dict[str, int]) -> DialtoneServer:
    """A server whose config file routes each number prefix to its own local UAS."""
    cfg = workdir / "dialtone.toml"
    cfg.write_text("".join(
        f'[[trunks]]\nname = "t{i}"\nuri = "sip:127.0.0.1:{port}"\nprefixes = ["{prefix}"]\n\n'
        for i, (prefix, port) in enumerate(trunks.items())))
    wrapper = workdir / "dialtone-serve.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{dialtone_binary}" serve --config "{cfg}"\n')
    wrapper.chmod(0o755)
    return DialtoneServer(wrapper, workdir, ports).start()


def provision_number(server: DialtoneServer, hook: Webhook, voice: str) -> None:
    r = requests.post(server.api("/IncomingPhoneNumbers.json"), auth=(server.account_sid, server.auth_token),
                      data={"PhoneNumber": NUMBER, "VoiceUrl": hook.route("/voice", voice)}, timeout=10)
    assert r.status_code == 201, r.text


def make_alice(server: DialtoneServer) -> None:
    auth = (server.account_sid, server.auth_token)
    base = server.api("/SIP")
    r = requests.post(f"{base}/CredentialLists.json", auth=auth, data={"FriendlyName": "agents"}, timeout=10)
    assert r.status_code == 201, r.text
    cl = r.json()["sid"]
    r = requests.post(f"{base}/CredentialLists/{cl}/Credentials.json", auth=auth,
                      data={"Username": "alice", "Password": PASSWORD}, timeout=10)
    assert r.status_code == 201, r.text


WINDOW = 800  # 100 ms: fine enough to tell 440 Hz from 480 Hz
RINGBACK_HZ = (440.0, 480.0)


def tone_share(x, freqs=RINGBACK_HZ) -> float:
    """Share of the samples' energy at `freqs` (Goertzel at exactly those frequencies): about 1
    for the ringback tone, well under 0.3 for speech."""
    n, total = len(x), sum(v * v for v in x)
    if n == 0 or total == 0:
        return 0.0
    share = 0.0
    for f in freqs:
        coeff = 2 * math.cos(2 * math.pi * f / audio.RATE)
        s1 = s2 = 0.0
        for v in x:
            s1, s2 = v + coeff * s1 - s2, s1
        share += 2 * (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * total)
    return share


def windows(path: Path, threshold_db: float = -45.0) -> list[str]:
    """Each 100 ms of the file as 'speech', 'ringback' (440 + 480 Hz) or 'silence'."""
    s = audio.samples(path)
    out = []
    for i in range(0, len(s) - WINDOW + 1, WINDOW):
        x = s[i:i + WINDOW]
        rms = math.sqrt(sum(v * v for v in x) / WINDOW)
        if rms == 0 or 20 * math.log10(rms / 32768) <= threshold_db:
            out.append("silence")
            continue
        # Measured over the sound alone: a 20 ms burst of ringback cut by the bridge, in a
        # window of silence, is still all tone.
        loud = [j for j, v in enumerate(x) if abs(v) > 300]
        out.append("ringback" if tone_share(x[loud[0]:loud[-1] + 1]) > 0.6 else "speech")
    return out


def runs(kinds: list[str], kind: str, min_gap: float = 0.8) -> list[tuple[float, float]]:
    """(start, end) seconds of the runs of `kind`, joined across gaps up to min_gap."""
    step = WINDOW / audio.RATE
    out: list[list[int]] = []
    for i, k in enumerate(kinds):
        if k != kind:
            continue
        if out and (i - out[-1][1]) * step <= min_gap:
            out[-1][1] = i
        else:
            out.append([i, i])
    return [(a * step, (b + 1) * step) for a, b in out]


def heard(path: Path, text: str, workdir: Path) -> audio.Speech:
    """The first run of speech in `path`, checked to be `text`'s length and level.

    The caller may hear ringback while the callee's phone rings (from tens of milliseconds to
    seconds, depending on how fast the callee answers). It is told apart by its 440 + 480 Hz
    tone, not by where it is: taking the first sound in the file as the callee's speech made a
    slow answer fail (a 0.12 s ringback burst came first)."""
    kinds = windows(path)
    spans = runs(kinds, "speech")
    assert spans, f"{path} holds no speech (ringback: {runs(kinds, 'ringback')})"
    start, end = spans[0]
    span = audio.Speech(start=start, end=end, rms_db=audio.sox_stats(path, (start, end)).get("RMS lev dB", -120.0),
                        total=len(kinds) * WINDOW / audio.RATE)
    refdir = workdir / f"ref-{path.parent.name}-{path.stem}"
    refdir.mkdir(parents=True, exist_ok=True)
    ref = audio.reference_speech(text, refdir)
    # The other side's sentence, not a click: most of its length, at speech level.
    assert span.length >= 0.5 * ref.length, (span, ref)
    assert span.rms_db > -40, span
    return span


def test_dial_client_reaches_registered_baresip_and_audio_crosses(dialtone, webhook, ports, workdir,
                                                                   audio_tools):
    make_alice(dialtone)
    provision_number(dialtone, webhook, "<Response><Dial><Client>alice</Client></Dial></Response>")
    caller_wav = audio.synthesize(CALLER_TEXT, workdir / "caller.wav", pad_before=1.0, pad_after=20)
    callee_wav = audio.synthesize(CALLEE_TEXT, workdir / "callee.wav", pad_before=1.0, pad_after=30)
    peer = BaresipPeer(workdir, callee_wav, sip_port=ports.port(), ctrl_port=ports.port(),
                       rtp_ports=ports.block(100), user="alice")
    # Register to the server as alice with digest auth (the peer's template does not register).
    (peer.confdir / "accounts").write_text(
        f"<sip:alice@127.0.0.1:{dialtone.sip_port};transport=udp>;auth_pass={PASSWORD};regint=60;"
        f"answermode=auto;audio_codecs=PCMU,PCMA\n")
    peer.start()
    try:
        # ctrl_tcp may connect after REGISTER_OK went out: ask the server instead.
        deadline = time.monotonic() + 10
        while True:
            pres = dialtone.get(dialtone.api("/SIP/Registrations.json")).json()
            if "available" in str(pres) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "available" in str(pres), f"alice did not register: {pres}\n{peer.log()[-1500:]}"
        report = None
        caller = start_pjsua2(workdir / "caller", uri=f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}",
                              sip_port=ports.port(), rtp_port=ports.block(20)[0], play=caller_wav,
                              record=workdir / "heard.wav", dtmf=[], duration=12, timeout=40,
                              transport="udp", user=CALLER)
        est = peer.wait_event("CALL_ESTABLISHED", timeout=15)
        assert est is not None, f"baresip got no call; events {peer.ctl.events()}"
        time.sleep(4)
        # While bridged alice is busy.
        during = dialtone.get(dialtone.api("/SIP/Registrations.json")).json()
        report = finish_pjsua2(caller, workdir / "caller", timeout=40)
        assert peer.wait_event("CALL_CLOSED", timeout=10) is not None, "alice's leg was not hung up"
    finally:
        peer.stop()
    assert report["connected"] and report["media_active"], report
    print("registrations before/during:", pres, during)
    assert "busy" in str(during), during
    callee_heard = peer.recordings("dec")
    assert len(callee_heard) == 1, callee_heard
    a = heard(workdir / "heard.wav", CALLEE_TEXT, workdir)
    b = heard(callee_heard[0], CALLER_TEXT, workdir)
    print(f"caller heard callee: {a}; callee heard caller: {b}; "
          f"caller heard ringback: {runs(windows(workdir / 'heard.wav'), 'ringback')}")
    calls = dialtone.get(dialtone.api("/Calls.json")).json()["calls"]
    child = [c for c in calls if c["direction"] == "outbound-dial"]
    assert len(child) == 1 and child[0]["to"] == "client:alice", calls
    assert child[0]["parent_call_sid"] and child[0]["status"] == "completed", child


def test_dial_two_numbers_busy_one_bridged_recorded_dual(dialtone_binary, ports, workdir, audio_tools):
    busy_sip, ok_sip = ports.port(), ports.port()
    server = trunk_server(dialtone_binary, workdir, ports, {"+1555000": busy_sip, "+1555111": ok_sip})
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    caller_wav = audio.synthesize(CALLER_TEXT, workdir / "caller.wav", pad_before=1.0, pad_after=20)
    callee_wav = audio.synthesize(CALLEE_TEXT, workdir / "callee.wav", pad_before=1.0, pad_after=30)
    busy = uas(workdir, "busy", busy_sip, ports.block(20)[0], busy=True)
    answering = uas(workdir, "answering", ok_sip, ports.block(20)[0], play=callee_wav)
    try:
        time.sleep(1.5)
        provision_number(server, hook, '<Response><Dial action="/after" record="record-from-answer-dual">'
                                       '<Number>+15550000001</Number><Number>+15551110002</Number>'
                                       '</Dial></Response>')
        hook.route("/after", AFTER)
        caller = start_pjsua2(workdir / "caller", uri=f"sip:{NUMBER}@127.0.0.1:{server.sip_port}",
                              sip_port=ports.port(), rtp_port=ports.block(20)[0], play=caller_wav,
                              record=workdir / "heard.wav", dtmf=[(7.0, "1234")], duration=10,
                              timeout=40, transport="udp", user=CALLER)
        report = finish_pjsua2(caller, workdir / "caller", timeout=50)
        after = hook.wait_for("/after", timeout=15)[0].params
        callee = finish_pjsua2(answering, workdir / "answering", timeout=20)
        answering = None
        busy_report = finish_pjsua2(busy, workdir / "busy", timeout=20)
        busy = None
        print("action:", after)
        assert after["DialCallStatus"] == "completed", after
        assert 7 <= int(after["DialCallDuration"]) <= 12, after
        child = server.get(server.api(f"/Calls/{after['DialCallSid']}.json")).json()
        assert child["to"] == "+15551110002" and child["direction"] == "outbound-dial", child
        assert child["parent_call_sid"] == after["CallSid"], child
        assert busy_report["last_status"] == 486 and not busy_report["connected"], busy_report
        assert report["connected"] and callee["connected"], (report, callee)
        digits = "".join(d for _, d in callee["dtmf_received"])
        print("digits the callee received:", digits)
        assert digits == "1234", callee
        a = heard(workdir / "heard.wav", CALLEE_TEXT, workdir)
        b = heard(workdir / "answering" / "heard.wav", CALLER_TEXT, workdir)
        print(f"caller heard callee: {a}; callee heard caller: {b}")
        # The dual recording: caller left, callee right.
        # The caller hung up, so the action came before the file was closed: find it by call.
        time.sleep(1)
        recs = server.get(server.api(f"/Calls/{after['CallSid']}/Recordings.json")).json()["recordings"]
        assert len(recs) == 1 and recs[0]["channels"] == 2 and recs[0]["source"] == "DialVerb", recs
        print("dial recording:", recs[0]["sid"], recs[0]["duration"], "s")
        wav = server.get(server.api(f"/Recordings/{recs[0]['sid']}.wav"))
        assert wav.status_code == 200, wav.status_code
        path = workdir / "dial-recording.wav"
        path.write_bytes(wav.content)
        for channel, text in ((1, CALLER_TEXT), (2, CALLEE_TEXT)):
            mono = workdir / f"channel{channel}.wav"
            subprocess.run(["sox", str(path), str(mono), "remix", str(channel)], check=True)
            span = heard(mono, text, workdir)
            print(f"recording channel {channel}: {span}")
    finally:
        for p in (busy, answering):
            if p is not None:
                p.kill()
                p.communicate()
        hook.close()
        code = server.stop()
    assert code == 0, server.log_tail(60)


def _dial_outcome(dialtone_binary, ports, workdir, voice: str, busy: bool) -> dict:
    a_sip, b_sip = ports.port(), ports.port()
    server = trunk_server(dialtone_binary, workdir, ports, {"+1555000": a_sip, "+1555111": b_sip})
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    peers = []
    if busy:
        peers = [uas(workdir, "a", a_sip, ports.block(20)[0], busy=True),
                 uas(workdir, "b", b_sip, ports.block(20)[0], busy=True)]
    try:
        time.sleep(1.5)
        provision_number(server, hook, voice)
        hook.route("/after", AFTER)
        caller = start_pjsua2(workdir / "caller", uri=f"sip:{NUMBER}@127.0.0.1:{server.sip_port}",
                              sip_port=ports.port(), rtp_port=ports.block(20)[0], play=None,
                              record=None, dtmf=[], duration=30, timeout=40, transport="udp",
                              user=CALLER)
        started = time.monotonic()
        after = hook.wait_for("/after", timeout=30)[0]
        after_at = time.monotonic() - started
        finish_pjsua2(caller, workdir / "caller", timeout=40)
        return {"params": after.params, "after_s": after_at}
    finally:
        for p in peers:
            p.kill()
            p.communicate()
        hook.close()
        server.stop()


def test_dial_every_number_busy_is_busy(dialtone_binary, ports, workdir):
    out = _dial_outcome(dialtone_binary, ports, workdir,
                        '<Response><Dial action="/after"><Number>+15550000001</Number>'
                        '<Number>+15551110002</Number></Dial></Response>', busy=True)
    print(out)
    assert out["params"]["DialCallStatus"] == "busy", out


def test_dial_nobody_answering_is_no_answer(dialtone_binary, ports, workdir):
    # No UAS listens: the legs get no response at all, and timeout (5 s, TwiML's minimum) ends them.
    out = _dial_outcome(dialtone_binary, ports, workdir,
                        '<Response><Dial action="/after" timeout="3"><Number>+15550000001</Number>'
                        '</Dial></Response>', busy=False)
    print(out)
    assert out["params"]["DialCallStatus"] == "no-answer", out
    assert 4 <= out["after_s"] <= 12, out
