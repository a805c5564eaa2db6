"""A browser bridged to SIP phones: headless Chromium runs the SIP.js page, registered over
WebSocket as alice of a SIP Domain (digest credentials, as in test_browser_sip), with a fake
microphone sine of its own frequency; pjsua2 peers send sines of theirs. The browser's leg is
WebRTC (ICE-lite, DTLS-SRTP, G.711), the phones' plain RTP.

- The browser calls a number whose app dials another number through the trunk, answered by a
  pjsua2 UAS; and pjsua2 calls a number whose app is `<Dial><Client>alice</Client></Dial>`, which
  the page answers (the INVITE over its WebSocket carrying the X-Dialtone-* headers).
- The browser waits in a queue (`<Enqueue>` with a waitUrl playing a tone) until a pjsua2 agent
  calls a number whose app is `<Dial><Queue>`.
- The browser and two pjsua2 callers meet in one `<Conference>`.

Checked each time, by measuring the recordings (the page's WAV of its remote track, pjsua2's own
recording) with the Goertzel filter of tones.py over a time window on a common clock: each side
hears the other's frequency (and the room's two others), never its own; the queued browser heard
the wait tone before it was bridged and no longer once bridged.
"""

from __future__ import annotations

import math
import time

import pytest

import audio
import tones
from browser import BrowserRun, step
from conftest import CALLER, NUMBER, SIGNED_REQUESTS
from peers import finish_pjsua2, start_pjsua2
from server import DialtoneServer
from test_browser_sip import DOMAIN, PASSWORD, make_domain_user, registrations
from test_dial import uas
from webhook import Webhook

BROWSER_HZ = 1000.0
PHONE_HZ = 600.0
OTHER_HZ = 1400.0  # the second pjsua2 of the conference
WAIT_HZ = 1700.0
HEARD_DB = -38.0
SILENT_DB = -55.0
REMOTE_NUMBER = "+15550009999"
AGENT_NUMBER = "+15550002222"
CONF_USERS = ("+15550000001", "+15550000002")


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def page_config(server: DialtoneServer, **kw) -> dict:
    return {"wsUrl": f"ws://127.0.0.1:{server.http_port}/sip", "sipUri": f"sip:alice@{DOMAIN}",
            "username": "alice", "password": PASSWORD, "answer_timeout_ms": 15000,
            "freqs": [BROWSER_HZ, PHONE_HZ, OTHER_HZ, WAIT_HZ], **kw}


def start_page(workdir, mic, config: dict, timeout: float = 60) -> BrowserRun:
    return BrowserRun(workdir, {"sipjs": mic}, [
        {"do": "open", "page": "sipjs"},
        {"do": "peer_run", "config": config, "wav": "browser-heard.wav", "name": "run",
         "timeout_ms": int((timeout - 10) * 1000)},
    ], timeout=timeout, name="sipjs").start()


class PageAudio:
    """What the page heard, on the wall clock: its remote track's WAV starts when the page's
    probe started (epoch_ms of the page plus the probe's started_ms)."""

    def __init__(self, r: dict, workdir):
        assert r["heard"], f"the page measured nothing: {r['call']}"
        self.samples = audio.samples(workdir / "browser-heard.wav")
        self.origin = (r["epoch_ms"] + r["heard"]["started_ms"]) / 1000
        self.t0 = r["epoch_ms"] / 1000

    def at(self, page_ms: float) -> float:
        """A time of the page's event list, on the wall clock."""
        return self.t0 + page_ms / 1000

    def levels(self, t0: float, t1: float, freqs: dict[str, float]) -> dict[str, float]:
        w = tones.window(self.samples, t0 - self.origin, t1 - self.origin)
        assert len(w) >= (t1 - t0) * audio.RATE * 0.9, f"the page's WAV does not cover {t0}-{t1}"
        return tones.levels(w, freqs)

    def rms_db(self, t0: float, t1: float) -> float:
        w = tones.window(self.samples, t0 - self.origin, t1 - self.origin)
        return audio_rms_db(w)


def audio_rms_db(samples) -> float:
    if not samples:
        return -120.0
    acc = sum((x / 32768.0) ** 2 for x in samples) / len(samples)
    return round(10 * math.log10(acc), 1) if acc > 0 else -120.0


class PhoneAudio:
    """What a pjsua2 peer recorded: its WAV starts at the call's confirmation."""

    def __init__(self, report: dict, started_wall: float, wav):
        assert report["connected"] and report["media_active"], report
        self.report = report
        self.samples = audio.samples(wav)
        self.origin = started_wall + report["confirmed_at"]
        self.end = started_wall + (report["disconnected_at"] or report["confirmed_at"])

    def levels(self, t0: float, t1: float, freqs: dict[str, float]) -> dict[str, float]:
        w = tones.window(self.samples, t0 - self.origin, t1 - self.origin)
        assert len(w) >= (t1 - t0) * audio.RATE * 0.9, f"the recording does not cover {t0}-{t1}"
        return tones.levels(w, freqs)


def check_page_media(r: dict) -> None:
    stats = r["stats"]
    assert stats and stats["dtls"]["state"] == "connected", stats
    assert stats["inbound"]["codec"] in ("audio/PCMU", "audio/PCMA"), stats
    assert stats["pair"]["remote"].startswith("127.0.0.1:"), stats


def assert_hears(who: str, levels: dict, hears: list[str], not_hears: list[str]) -> None:
    for k in hears:
        assert levels[k] > HEARD_DB, f"{who} should hear {k}: {levels}"
    for k in not_hears:
        assert levels[k] < SILENT_DB, f"{who} should not hear {k}: {levels}"


@pytest.fixture
def trunked(dialtone_binary, workdir, ports):
    """A server whose trunk (DIALTONE_TRUNK) is a pjsua2 UAS on 127.0.0.1 answering with a
    PHONE_HZ tone; yields (server, uas process, app)."""
    uas_sip = ports.port()
    uas_rtp, _ = ports.block(20)
    server = DialtoneServer(dialtone_binary, workdir, ports,
                            extra_env={"DIALTONE_TRUNK": f"sip:127.0.0.1:{uas_sip}"}).start()
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    tone = tones.make_tone(workdir / "phone-600.wav", PHONE_HZ, 40)
    proc = uas(workdir, "callee", uas_sip, uas_rtp, play=tone, duration=60)
    try:
        yield server, proc, hook
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        hook.close()
        code = server.stop()
        assert code == 0, f"dialtone exited with {code}:\n{server.log_tail(60)}"


def test_browser_dials_a_number_through_the_trunk(trunked, workdir, audio_tools):
    from twilio.rest import Client

    server, callee, hook = trunked
    client = Client(server.account_sid, server.auth_token)
    client.api.base_url = server.http_url
    client.incoming_phone_numbers.create(
        phone_number=NUMBER, voice_method="POST",
        voice_url=hook.route("/voice", f"<Response><Dial>{REMOTE_NUMBER}</Dial></Response>"))
    make_domain_user(client, "alice", PASSWORD)
    mic = tones.make_tone(workdir / "mic-1000.wav", BROWSER_HZ, 30)
    assert callee.poll() is None, callee.communicate()
    run = start_page(workdir, mic, page_config(server, target=f"sip:{NUMBER}@{DOMAIN}",
                                               hangup_after_ms=9000))
    report = run.finish()
    r = step(report, "run")
    print("page events:", [(e["t_ms"], e["event"]) for e in r["events"]])
    c = r["call"]
    assert r["registered"] and c["status"] == 200 and c["ended_by"] == "local", c
    check_page_media(r)
    phone = finish_pjsua2(callee, workdir / "callee", 20)
    print("callee:", {k: phone[k] for k in ("connected", "codec", "confirmed_at", "hangup_by", "states")})
    # The browser's BYE ended the trunk leg too.
    assert phone["hangup_by"] == "remote", phone

    voice = hook.received("/voice")[0].params
    assert voice["From"] == f"sip:alice@{DOMAIN}", voice

    page = PageAudio(r, workdir)
    # pjsua2's start on the wall clock: the callee process was started by the fixture before
    # the page; its report's times count from its own start, so its end (the BYE) is lined up
    # with the page's hang-up instead.
    hangup_wall = page.at(next(e["t_ms"] for e in r["events"] if e["event"] == "hangup"))
    start_wall = hangup_wall - phone["disconnected_at"]
    heard = PhoneAudio(phone, start_wall, workdir / "callee" / "heard.wav")
    t0, t1 = heard.origin + 1.0, hangup_wall - 0.7
    assert t1 - t0 >= 3, (t0, t1, phone, c)
    freqs = {"browser": BROWSER_HZ, "phone": PHONE_HZ}
    at_page = page.levels(t0, t1, freqs)
    at_phone = heard.levels(t0, t1, freqs)
    print(f"bridged {t1 - t0:.1f} s: the page heard {at_page}, pjsua2 heard {at_phone}")
    assert_hears("the page", at_page, ["phone"], ["browser"])
    assert_hears("pjsua2", at_phone, ["browser"], ["phone"])
    assert not server.log_lines(r"panicked"), server.log_lines(r"panicked")


def test_phone_dials_the_browser_client(dialtone, webhook, provision, twilio_client, ports, workdir,
                                        audio_tools):
    provision({"/voice": "<Response><Dial><Client>alice</Client></Dial></Response>"})
    make_domain_user(twilio_client, "alice", PASSWORD)
    mic = tones.make_tone(workdir / "mic-1000.wav", BROWSER_HZ, 30)
    tone = tones.make_tone(workdir / "phone-600.wav", PHONE_HZ, 30)
    run = start_page(workdir, mic, page_config(dialtone, answer=True, incoming_timeout_ms=25000,
                                               hangup_after_ms=20000))
    try:
        wait_until(lambda: registrations(dialtone).get("alice", {}).get("presence") == "available",
                   20, "alice's registration from the page")
        started = time.time()
        caller = start_pjsua2(workdir / "caller", uri=f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}",
                              sip_port=ports.port(), rtp_port=ports.block(20)[0], play=tone,
                              record=workdir / "caller" / "heard.wav", dtmf=[], duration=9,
                              timeout=30, transport="udp", user=CALLER)
        phone = finish_pjsua2(caller, workdir / "caller", 40)
    finally:
        report = run.finish()
    r = step(report, "run")
    print("page events:", [(e["t_ms"], e["event"]) for e in r["events"]])
    c = r["call"]
    print("incoming:", c["from"], c["to"], c["headers"])
    assert r["registered"] and c["answered_ms"] is not None, c
    # pjsua2 hung up after its 9 s: the BYE reached the page over its WebSocket.
    assert phone["hangup_by"] == "local" and c["ended_by"] == "remote", (phone, c)
    headers = {k.lower(): v for k, v in c["headers"].items()}
    assert headers.get("x-dialtone-call-sid", "").startswith("CA"), headers
    assert headers.get("x-dialtone-to") == "client:alice", headers
    assert CALLER.lstrip("+") in headers.get("x-dialtone-from", ""), headers
    parent = headers.get("x-dialtone-parent-call-sid")
    assert parent == twilio_client.calls.list(to=NUMBER)[0].sid, (parent, headers)
    check_page_media(r)

    page = PageAudio(r, workdir)
    heard = PhoneAudio(phone, started, workdir / "caller" / "heard.wav")
    t0 = max(page.at(c["answered_ms"]), heard.origin) + 1.0
    t1 = min(page.at(c["ended_ms"]), heard.end) - 0.7
    assert t1 - t0 >= 3, (t0, t1, phone, c)
    freqs = {"browser": BROWSER_HZ, "phone": PHONE_HZ}
    at_page = page.levels(t0, t1, freqs)
    at_phone = heard.levels(t0, t1, freqs)
    print(f"bridged {t1 - t0:.1f} s: the page heard {at_page}, pjsua2 heard {at_phone}")
    assert_hears("the page", at_page, ["phone"], ["browser"])
    assert_hears("pjsua2", at_phone, ["browser"], ["phone"])
    assert not dialtone.log_lines(r"panicked"), dialtone.log_lines(r"panicked")


def test_browser_waits_in_a_queue_until_a_phone_agent_takes_it(dialtone, webhook, provision,
                                                               twilio_client, ports, workdir,
                                                               audio_tools):
    wait_tone = tones.make_tone(workdir / "wait.wav", WAIT_HZ, 2).read_bytes()
    files = Webhook()
    files.route("/wait.wav", lambda req: (200, wait_tone, "audio/wav"))
    provision({
        "/voice": '<Response><Enqueue waitUrl="/wait">support</Enqueue></Response>',
        "/wait": f'<Response><Play>{files.url("/wait.wav")}</Play></Response>',
    })
    twilio_client.incoming_phone_numbers.create(
        phone_number=AGENT_NUMBER, voice_method="POST",
        voice_url=webhook.route("/agent", "<Response><Dial><Queue>support</Queue></Dial></Response>"))
    make_domain_user(twilio_client, "alice", PASSWORD)
    mic = tones.make_tone(workdir / "mic-1000.wav", BROWSER_HZ, 40)
    tone = tones.make_tone(workdir / "agent-600.wav", PHONE_HZ, 30)
    run = start_page(workdir, mic, page_config(dialtone, target=f"sip:{NUMBER}@{DOMAIN}",
                                               hangup_after_ms=30000))
    try:
        first_wait = webhook.wait_for("/wait", timeout=25)[0]
        queued_at = time.time()
        assert first_wait.params["QueuePosition"] == "1", first_wait.params
        time.sleep(4)  # the browser hears the wait audio
        started = time.time()
        agent = start_pjsua2(workdir / "agent", uri=f"sip:{AGENT_NUMBER}@127.0.0.1:{dialtone.sip_port}",
                             sip_port=ports.port(), rtp_port=ports.block(20)[0], play=tone,
                             record=workdir / "agent" / "heard.wav", dtmf=[], duration=8,
                             timeout=30, transport="udp", user="+15550003333")
        phone = finish_pjsua2(agent, workdir / "agent", 40)
    finally:
        report = run.finish()
        files.close()
    r = step(report, "run")
    print("page events:", [(e["t_ms"], e["event"]) for e in r["events"]])
    c = r["call"]
    assert r["registered"] and c["status"] == 200, c
    # After the bridge the <Enqueue> document has nothing more: the server hangs the page up.
    assert phone["hangup_by"] == "local" and c["ended_by"] == "remote", (phone, c)
    check_page_media(r)

    page = PageAudio(r, workdir)
    heard = PhoneAudio(phone, started, workdir / "agent" / "heard.wav")
    freqs = {"browser": BROWSER_HZ, "agent": PHONE_HZ, "wait": WAIT_HZ}
    waiting = page.levels(queued_at + 0.5, started - 0.2, freqs)
    wait_rms = page.rms_db(queued_at + 0.5, started - 0.2)
    t0, t1 = heard.origin + 1.0, heard.end - 0.7
    assert t1 - t0 >= 4, (t0, t1, phone)
    bridged = page.levels(t0, t1, freqs)
    at_agent = heard.levels(t0, t1, freqs)
    print(f"waiting {started - queued_at - 0.7:.1f} s: the page heard {waiting} ({wait_rms} dBFS); "
          f"bridged {t1 - t0:.1f} s: the page heard {bridged}, the agent heard {at_agent}")
    assert wait_rms > -30, wait_rms
    assert_hears("the page while queued", waiting, ["wait"], ["agent"])
    assert_hears("the page once bridged", bridged, ["agent"], ["wait", "browser"])
    assert_hears("the agent", at_agent, ["browser"], ["wait", "agent"])
    assert not dialtone.log_lines(r"panicked"), dialtone.log_lines(r"panicked")


def test_browser_in_a_conference_with_two_phones(dialtone, webhook, provision, twilio_client, ports,
                                                 workdir, audio_tools):
    provision({"/voice": '<Response><Dial><Conference startConferenceOnEnter="true" beep="false">'
                         "room</Conference></Dial></Response>"})
    make_domain_user(twilio_client, "alice", PASSWORD)
    mic = tones.make_tone(workdir / "mic-1000.wav", BROWSER_HZ, 40)
    phone_hz = {"a": PHONE_HZ, "b": OTHER_HZ}
    run = start_page(workdir, mic, page_config(dialtone, target=f"sip:{NUMBER}@{DOMAIN}",
                                               hangup_after_ms=16000))
    procs, started = {}, {}
    try:
        # One participant: the room exists (Twilio's "init" until a second one joins).
        conf = wait_until(lambda: twilio_client.conferences.list(friendly_name="room"), 25,
                          "the room opened by the page")[0]
        print("room with the page alone:", conf.sid, conf.status)
        for i, k in enumerate("ab"):
            tone = tones.make_tone(workdir / f"phone-{k}.wav", phone_hz[k], 30)
            started[k] = time.time()
            procs[k] = start_pjsua2(workdir / f"pjsua2-{k}", uri=f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}",
                                    sip_port=ports.port(), rtp_port=ports.block(20)[0], play=tone,
                                    record=workdir / f"pjsua2-{k}" / "heard.wav", dtmf=[],
                                    duration=9, timeout=30, transport="udp", user=CONF_USERS[i])
        room = twilio_client.conferences(conf.sid)
        wait_until(lambda: len(room.participants.list()) == 3, 10, "three participants")
        together = time.time()
        assert room.fetch().status == "in-progress", room.fetch().status
        phones = {k: finish_pjsua2(p, workdir / f"pjsua2-{k}", 40) for k, p in procs.items()}
        procs = {}
    finally:
        for p in procs.values():
            p.kill()
            p.communicate()
        report = run.finish()
    r = step(report, "run")
    print("page events:", [(e["t_ms"], e["event"]) for e in r["events"]])
    c = r["call"]
    assert r["registered"] and c["status"] == 200, c
    check_page_media(r)

    page = PageAudio(r, workdir)
    heard = {k: PhoneAudio(phones[k], started[k], workdir / f"pjsua2-{k}" / "heard.wav") for k in "ab"}
    t0 = together + 0.8
    t1 = min(min(h.end for h in heard.values()), page.at(c["ended_ms"])) - 0.7
    assert t1 - t0 >= 3, (t0, t1, phones, c)
    freqs = {"browser": BROWSER_HZ, "a": PHONE_HZ, "b": OTHER_HZ}
    levels = {"browser": page.levels(t0, t1, freqs), **{k: heard[k].levels(t0, t1, freqs) for k in "ab"}}
    print(f"all three in the room for {t1 - t0:.1f} s, levels (dBFS):", levels)
    for who in ("browser", "a", "b"):
        assert_hears(who, levels[who], [k for k in freqs if k != who], [who])
    assert not dialtone.log_lines(r"panicked"), dialtone.log_lines(r"panicked")
