"""Browsers calling over SIP on WebSocket (RFC 7118) with WebRTC media: headless Chromium runs
SIP.js or JsSIP (two independent stacks), registers at `ws://<http>/sip` as alice of a SIP Domain
with digest credentials (made through the twilio SDK), and calls a number whose app says a prompt
inside `<Gather numDigits="3">`. The page sends RFC 4733 digits after the prompt, and measures
what it hears with WebAudio.

Checked: the digits reach the app's action as `Digits`; the page heard the prompt as speech
(its WAV, through checks.assert_heard_speech) and near silence while the Gather waited; the
server hung up after `<Hangup/>`; the media went over DTLS-SRTP with a G.711 codec; what the page
sent was its microphone (1 kHz); the registrar listed alice while the page was registered.
When the page hangs up first, its BYE over the WebSocket ends the call: `completed`, with the
duration the page was connected.
"""

from __future__ import annotations

import time

import pytest

import audio
import tones
from browser import STACKS, BrowserRun, step
from checks import assert_heard_speech, number_digits
from conftest import NUMBER

PROMPT = "Please enter three digits"
VOICE = f'<Response><Gather numDigits="3" action="/gathered"><Say>{PROMPT}</Say></Gather></Response>'
DOMAIN = "acme.sip.dialtone.local"
PASSWORD = "Browser-Secret-2024"


def make_domain_user(client, username: str, password: str) -> None:
    """A SIP Domain whose registrations are checked against a credential list holding one user."""
    sip = client.api.account.sip
    cl = sip.credential_lists.create(friendly_name="browsers")
    sip.credential_lists(cl.sid).credentials.create(username=username, password=password)
    domain = sip.domains.create(domain_name=DOMAIN, friendly_name="Acme browsers")
    sip.domains(domain.sid).auth.registrations.credential_list_mappings.create(credential_list_sid=cl.sid)


def registrations(dialtone) -> dict:
    r = dialtone.get(dialtone.api("/SIP/Registrations.json"))
    assert r.status_code == 200, r.text
    return {u["username"]: u for u in r.json()["registrations"]}


@pytest.mark.parametrize("stack", STACKS)
def test_browser_registers_over_websocket_and_gathers_digits(stack, dialtone, webhook, provision,
                                                              twilio_client, workdir, audio_tools):
    provision({"/voice": VOICE, "/gathered": "<Response><Hangup/></Response>"})
    make_domain_user(twilio_client, "alice", PASSWORD)
    ref = audio.reference_speech(PROMPT, workdir)
    mic = tones.make_tone(workdir / "mic-1000.wav", 1000, 10)
    dtmf_at = ref.length + 2.5
    config = {
        "wsUrl": f"ws://127.0.0.1:{dialtone.http_port}/sip",
        "sipUri": f"sip:alice@{DOMAIN}",
        "username": "alice",
        "password": PASSWORD,
        "target": f"sip:{NUMBER}@{DOMAIN}",
        "dtmf": [{"at_ms": int(dtmf_at * 1000), "digits": "427"}],
        "hangup_after_ms": int((dtmf_at + 8) * 1000),
        "answer_timeout_ms": 15000,
        "freqs": [1000],
    }
    run = BrowserRun(workdir, {stack: mic}, [
        {"do": "open", "page": stack},
        {"do": "peer_run", "config": config, "wav": "heard.wav", "name": "run", "timeout_ms": 60000},
        {"do": "screenshot", "file": f"{stack}-after-call.png"},
    ], timeout=90, name=stack).start()
    # While the page is registered (and then in its call), the registrar lists alice.
    seen = {}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and run.proc.poll() is None:
        seen = registrations(dialtone).get("alice", {})
        if seen.get("presence") in ("available", "busy"):
            break
        time.sleep(0.3)
    report = run.finish()
    r = step(report, "run")
    print(f"{stack} {r['version']}: register {r['register']}, call {r['call']}, dtmf {r['dtmf_sent']}")
    print("stats:", r["stats"])
    assert r["registered"] and r["register"]["status"] == 200, r
    assert seen.get("presence") in ("available", "busy"), f"registrar never listed alice: {seen}"

    c = r["call"]
    assert c["answered_ms"] is not None and c["status"] == 200, c
    assert [d["sent"] for d in r["dtmf_sent"]] == [True], r["dtmf_sent"]
    gathered = webhook.wait_for("/gathered", timeout=10)[0].params
    print("gathered:", {k: gathered.get(k) for k in ("Digits", "From", "To", "CallStatus", "Direction")})
    assert gathered.get("Digits") == "427", gathered
    assert number_digits(gathered.get("To")) == number_digits(NUMBER), gathered
    assert gathered.get("Direction") == "inbound", gathered
    assert c["ended_by"] == "remote", f"the server did not hang up after <Hangup/>: {c}"

    stats = r["stats"]
    assert stats["dtls"]["state"] == "connected", stats
    assert stats["inbound"]["codec"] in ("audio/PCMU", "audio/PCMA"), stats
    assert stats["pair"]["remote"].startswith("127.0.0.1:"), stats

    # What the page sent: its microphone, the 1 kHz tone.
    sent = [w for w in r["sent"]["windows"][2:] if w["t_ms"] < dtmf_at * 1000]
    good = sum(1 for w in sent if abs(w["peak_hz"] - 1000) < 5 and w["tones"]["1000"] > -16)
    assert sent and good >= 0.9 * len(sent), sent

    # What the page heard: the prompt, as speech of the reference's length, then near silence
    # while the Gather waited for digits.
    heard = r["heard"]
    wav = workdir / "heard.wav"
    span = assert_heard_speech(wav, PROMPT, workdir)
    print(f"heard {heard['seconds']} s at {heard['sample_rate']} Hz: speech {span.start:.2f}-"
          f"{span.end:.2f} s at {span.rms_db:.1f} dBFS (espeak-ng: {ref.length:.2f} s)")
    in_prompt = [w for w in heard["windows"] if span.start * 1000 <= w["t_ms"] < span.end * 1000 - 100]
    loud = sum(1 for w in in_prompt if w["rms_dbfs"] > -40) / max(len(in_prompt), 1)
    waiting = [w for w in heard["windows"] if span.end * 1000 + 300 <= w["t_ms"] < dtmf_at * 1000]
    print(f"page trace: {loud:.0%} of the prompt's windows above -40 dBFS; while waiting, loudest "
          f"{max((w['rms_dbfs'] for w in waiting), default=None)} dBFS over {len(waiting)} windows")
    assert loud >= 0.5, [w["rms_dbfs"] for w in in_prompt]
    assert len(waiting) >= 5 and all(w["rms_dbfs"] < -50 for w in waiting), [w["rms_dbfs"] for w in waiting]
    assert not dialtone.log_lines(r"panicked"), dialtone.log_lines(r"panicked")


@pytest.mark.parametrize("stack", STACKS)
def test_browser_hangs_up_and_the_call_completes(stack, dialtone, webhook, provision, twilio_client,
                                                 workdir, audio_tools):
    provision({"/voice": "<Response><Say>This message plays until the caller hangs up.</Say>"
                         '<Pause length="20"/></Response>'})
    make_domain_user(twilio_client, "alice", PASSWORD)
    mic = tones.make_tone(workdir / "mic-1000.wav", 1000, 10)
    config = {"wsUrl": f"ws://127.0.0.1:{dialtone.http_port}/sip", "sipUri": f"sip:alice@{DOMAIN}",
              "username": "alice", "password": PASSWORD, "target": f"sip:{NUMBER}@{DOMAIN}",
              "hangup_after_ms": 3000, "answer_timeout_ms": 15000, "record": False}
    run = BrowserRun(workdir, {stack: mic}, [
        {"do": "open", "page": stack},
        {"do": "peer_run", "config": config, "name": "run", "timeout_ms": 40000},
    ], timeout=60, name=stack)
    r = step(run.run(), "run")
    c = r["call"]
    print(f"{stack}: call {c}")
    assert c["answered_ms"] is not None and c["ended_by"] == "local", c
    # The BYE's 200 came back (the stack saw the session end) within the 3 s the page waits.
    assert c["ended_ms"] - c["answered_ms"] < 3000 + 2500, c
    deadline = time.monotonic() + 10
    while True:
        calls = twilio_client.calls.list()
        if (calls and calls[0].status == "completed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(calls) == 1, [(x.sid, x.status) for x in calls]
    call = calls[0]
    print("call:", call.sid, call.status, call.duration, call._from, call.to)
    assert call.status == "completed", (call.status, dialtone.log_tail(30))
    assert 2 <= int(call.duration) <= 5, call.duration
    assert call._from == f"sip:alice@{DOMAIN}", call._from
