"""The browser peer itself, without Dialtone: what test_browser_sip and the dialtone.js tests rely
on, each measured so that it can fail.

- Both SIP stacks (SIP.js, JsSIP) load in the page at the pinned versions.
- Each browser's fake microphone is its own WAV: one browser hears 1 kHz, another 440 Hz.
- The page's WebAudio measurements are right: the microphone, sent through two RTCPeerConnections
  in the page (PCMU, DTLS-SRTP, ICE over 127.0.0.1), is measured at the tone's frequency and
  level, window by window through a level step; the WAV the page returns reads the same through
  tones.py.
- Both stacks register over WebSocket (subprotocol `sip`, Via WS) answering a digest challenge with
  the right hash, offer WebRTC audio (ICE, DTLS fingerprint, PCMU, telephone-event/8000) in an
  INVITE that answers a 407, and report a 486 as a failed call; a wrong password is refused.
"""

from __future__ import annotations

import math
import re
import subprocess

import pytest

import audio
import tones
from browser import STACKS, package_version, run_browser, step
from wssip import WsSipServer

TONE_DB = 20 * math.log10(0.3 / math.sqrt(2))  # a sine at 0.3 of full scale: -13.5 dBFS


def mostly(windows, pred, share: float = 0.9) -> bool:
    return bool(windows) and sum(1 for w in windows if pred(w)) >= share * len(windows)


def test_browser_stacks_load_and_microphones_are_each_browsers_own_wav(workdir, audio_tools):
    mic_a = tones.make_tone(workdir / "mic-1000.wav", 1000, 5)
    mic_b = tones.make_tone(workdir / "mic-440.wav", 440, 5)
    steps = []
    for stack in STACKS:
        steps += [{"do": "open", "browser": "a", "page": stack},
                  {"do": "eval", "browser": "a", "js": "[window.peer.stack, window.peer.version]",
                   "name": f"version-{stack}"}]
    steps += [{"do": "open", "browser": "a", "page": "sipjs"},
              {"do": "peer_mic", "browser": "a", "config": {"ms": 1500, "freqs": [1000, 440]},
               "wav": "mic-a-heard.wav", "name": "mic-a"},
              {"do": "open", "browser": "b", "page": "jssip"},
              {"do": "peer_mic", "browser": "b", "config": {"ms": 1500, "freqs": [1000, 440]},
               "wav": "mic-b-heard.wav", "name": "mic-b"}]
    report = run_browser(workdir, {"a": mic_a, "b": mic_b}, steps, timeout=60)
    print("chromium:", report["chromium"])
    # sip.js 0.21.2 still calls itself 0.21.1 in its version export.
    assert step(report, "version-sipjs") == ["sipjs", "0.21.1"], package_version("sip.js")
    assert step(report, "version-jssip") == ["jssip", package_version("jssip")]
    for name, freq, other in (("mic-a", 1000, 440), ("mic-b", 440, 1000)):
        r = step(report, name)
        steady = r["windows"][2:]
        peaks = sorted(w["peak_hz"] for w in steady)
        print(name, r["settings"].get("sampleRate"), "Hz capture; peak", peaks[len(peaks) // 2], "Hz;",
              "levels", {f: steady[0]["tones"][str(f)] for f in (freq, other)})
        assert len(steady) >= 10, r["windows"]
        # Nearly every window: with two browsers busy on two cores, a capture glitch can bend one.
        assert mostly(steady, lambda w: abs(w["peak_hz"] - freq) < 5), peaks
        assert mostly(steady, lambda w: abs(w["tones"][str(freq)] - TONE_DB) < 1.0), steady
        assert all(w["tones"][str(other)] < -50 for w in steady), steady


def test_browser_webaudio_measures_a_tone_sent_through_a_loopback_call(workdir, audio_tools):
    # 1 s of 1 kHz at 0.3, 1 s of silence, 1 s of 1 kHz at 0.03 (-33.5 dBFS): the file loops.
    parts = [tones.make_tone(workdir / "loud.wav", 1000, 1, 0.3),
             audio.silence(workdir / "gap.wav", 1),
             tones.make_tone(workdir / "quiet.wav", 1000, 1, 0.03)]
    mic = workdir / "mic-steps.wav"
    subprocess.run(["sox", *map(str, parts), str(mic)], check=True)
    steps = [{"do": "open", "page": "sipjs"},
             {"do": "peer_loopback", "config": {"ms": 4000, "freqs": [1000, 440], "codec": "PCMU"},
              "wav": "loopback-heard.wav", "name": "loop"},
             {"do": "screenshot", "file": "loopback.png"}]
    report = run_browser(workdir, {"page": mic}, steps, timeout=60)
    r = step(report, "loop")
    print("loopback stats:", r["stats"])
    assert r["stats"]["inbound"]["codec"] == "audio/PCMU", r["stats"]
    assert r["stats"]["inbound"]["packets"] > 100, r["stats"]
    assert r["stats"]["dtls"]["state"] == "connected", r["stats"]
    assert any(" 127.0.0.1 " in c for c in r["candidates"]["a"]), r["candidates"]
    assert r["stats"]["pair"]["local"].startswith("127.0.0.1:"), r["stats"]["pair"]
    # Each 100 ms window falls in one of the three levels, or straddles two of them.
    kinds = {"loud": 0, "quiet": 0, "silent": 0}
    for w in r["windows"][1:]:
        db = w["tones"]["1000"]
        if abs(db - TONE_DB) < 1.0 and abs(w["peak_hz"] - 1000) < 5:
            kinds["loud"] += 1
        elif abs(db - (TONE_DB - 20)) < 1.5 and abs(w["peak_hz"] - 1000) < 5:
            kinds["quiet"] += 1
        elif w["rms_dbfs"] < -60:
            kinds["silent"] += 1
    print("windows by level:", kinds, "of", len(r["windows"]) - 1)
    for kind, n in kinds.items():
        assert n >= 6, (kind, kinds, [(w["rms_dbfs"], w["peak_hz"]) for w in r["windows"]])
    # The page's WAV, read by the suite's own tools, says the same.
    wav = workdir / "loopback-heard.wav"
    s = audio.samples(wav)
    loud = [tones.level_db(tones.window(s, t, t + 0.1), 1000) for t in
            (i / 10 for i in range(int(audio.duration(wav) * 10) - 1))]
    page = [w["tones"]["1000"] for w in r["windows"][:len(loud)]]
    print("tones.py vs page, first 10 windows:", list(zip(loud, page))[:10])
    assert sum(1 for db in loud if abs(db - TONE_DB) < 1.0) >= 6, loud
    assert sum(1 for db in loud if abs(db - (TONE_DB - 20)) < 1.5) >= 6, loud
    # Window by window, the two measures agree where the level is steady (resampled to 8 kHz
    # for tones.py: a window's edges move by a few samples).
    agree = sum(1 for a, b in zip(loud, page) if abs(a - b) < 1.0)
    assert agree >= 0.7 * len(loud), list(zip(loud, page))


@pytest.mark.parametrize("stack", STACKS)
def test_browser_stack_registers_and_invites_over_websocket_with_digest(stack, workdir, audio_tools):
    mic = tones.make_tone(workdir / "mic.wav", 1000, 5)
    server = WsSipServer({"alice": "Right-Password-1"})
    domain = "acme.sip.dialtone.local"
    try:
        base = {"wsUrl": server.url, "sipUri": f"sip:alice@{domain}", "username": "alice"}
        steps = [{"do": "open", "page": stack},
                 {"do": "peer_run", "name": "good", "config": {
                     **base, "password": "Right-Password-1", "target": f"sip:+15550001111@{domain}",
                     "answer_timeout_ms": 8000}},
                 {"do": "open", "page": stack},
                 {"do": "peer_run", "name": "bad", "config": {**base, "password": "Wrong-Password-1"}}]
        report = run_browser(workdir, {stack: mic}, steps, timeout=60)
    finally:
        server.close()
    good, bad = step(report, "good"), step(report, "bad")
    print("good:", good["register"], good["call"]["status"], good["call"]["reason"], "bad:", bad["register"])
    assert good["registered"] and good["register"]["status"] == 200, good
    assert not bad["registered"] and bad["register"]["status"] == 403, bad
    assert all(c.subprotocol == "sip" for c in server.connections), [c.request_line for c in server.connections]

    regs = server.messages("REGISTER")
    assert len(regs) >= 4, [m.first_line for m in regs]  # each run: one challenged, one answered
    first, answered = regs[0], regs[1]
    assert first.get("via").upper().startswith("SIP/2.0/WS "), first.get("via")
    assert f"sip:alice@{domain}" in first.get("from"), first.get("from")
    assert first.uri == f"sip:{domain}", first.first_line
    assert "transport=ws" in (first.get("contact") or "").lower(), first.get("contact")
    assert 'realm="dialtone"' in answered.get("authorization"), answered.get("authorization")

    invites = server.messages("INVITE")
    assert len(invites) == 2, [m.first_line for m in invites]
    assert invites[0].get("proxy-authorization") is None and invites[1].get("proxy-authorization")
    assert invites[1].uri == f"sip:+15550001111@{domain}", invites[1].first_line
    sdp = invites[1].body
    for line in ("a=fingerprint:sha-256 ", "a=ice-ufrag:", "a=setup:actpass", "a=rtcp-mux",
                 "PCMU/8000", "telephone-event/8000"):
        assert line in sdp, (line, sdp)
    assert re.search(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host", sdp), sdp
    assert good["call"]["status"] == 486 and good["call"]["answered_ms"] is None, good["call"]


def test_browser_generic_steps_drive_a_page_shaped_like_dialtones(workdir, audio_tools):
    """fill, click, wait_state, eval, record_start/stop on pages/steps.html (a stand-in with
    Dialtone's page conventions), while a second browser measures its microphone at the same
    time (async + await); then a state that never comes fails the run at that step, with a
    screenshot."""
    mic_a = tones.make_tone(workdir / "mic-1000.wav", 1000, 5)
    mic_b = tones.make_tone(workdir / "mic-440.wav", 440, 5)
    steps = [
        {"do": "open", "browser": "b", "page": "jssip"},
        {"do": "peer_mic", "browser": "b", "config": {"ms": 3000, "freqs": [440]}, "async": True, "name": "b-mic"},
        {"do": "open", "browser": "a", "url": "/pages/steps.html"},
        {"do": "fill", "browser": "a", "selector": "#to", "value": "+15550001111"},
        {"do": "click", "browser": "a", "selector": "#call"},
        {"do": "wait_state", "browser": "a", "state": "in-call", "timeout_ms": 10000},
        {"do": "eval", "browser": "a", "js": "window.dialtonePage.call.parameters", "name": "params"},
        {"do": "record_start", "browser": "a", "expr": "window.dialtonePage.call.getRemoteStream()",
         "freqs": [1000, 440], "name": "rec"},
        {"do": "sleep", "ms": 2000},
        {"do": "record_stop", "browser": "a", "of": "rec", "wav": "page-heard.wav", "name": "heard"},
        {"do": "screenshot", "browser": "a", "file": "in-call.png"},
        {"do": "click", "browser": "a", "selector": "#hangup"},
        {"do": "wait_state", "browser": "a", "state": "idle", "timeout_ms": 5000},
        {"do": "await", "name": "b-mic", "timeout_ms": 10000},
        {"do": "wait_state", "browser": "a", "state": "never", "timeout_ms": 1000},
        {"do": "eval", "browser": "a", "js": "1", "name": "not-reached"},
    ]
    report = run_browser(workdir, {"a": mic_a, "b": mic_b}, steps, timeout=60)
    assert step(report, "params") == {"To": "+15550001111"}
    heard = step(report, "heard")
    assert heard["seconds"] >= 1.8, heard["seconds"]
    s = audio.samples(workdir / "page-heard.wav")
    levels = tones.levels(tones.window(s, 0.3, 1.8), {"1k": 1000, "440": 440})
    print("recorded from dialtonePage.call.getRemoteStream():", levels)
    assert abs(levels["1k"] - TONE_DB) < 1.0 and levels["440"] < -50, levels
    b = step(report, "b-mic")
    assert mostly(b["windows"][2:], lambda w: abs(w["peak_hz"] - 440) < 5), b["windows"]
    assert (workdir / "in-call.png").stat().st_size > 1000
    # The last wait fails the run there, and nothing after it runs.
    assert not report["ok"] and report["exit_code"] == 2, report["error"]
    assert report["error"].startswith("step 14 (wait_state)"), report["error"]
    assert [s["i"] for s in report["steps"]][-1] == 14
    assert (workdir / "a-failed-step14.png").exists()
