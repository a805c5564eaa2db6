"""Conferences with real peers: three independent SIP phones (two pjsua2, one baresip) call into
one room, each sending a tone of its own frequency, and every peer's own recording is measured
with a Goertzel filter to tell whom it heard, phase by phase, while the room is changed through
the official twilio-python SDK (mute, hold with a HoldUrl, coaching); the room's recording and
its status callbacks are checked at the end."""

from __future__ import annotations

import time

import requests

from conftest import NUMBER
import audio
import tones
from peers import BaresipPeer, finish_pjsua2, start_pjsua2
from webhook import Webhook

FREQ = {"a": 500.0, "b": 900.0, "c": 1300.0}
HOLD_HZ = 2000.0
USERS = {"a": "+15550000001", "b": "+15550000002", "c": "+15550000003"}
# A phase's first and last part are left out of the measurement: a REST change takes a few
# tens of milliseconds to reach the media, and clocks of the peers differ by as much.
MARGIN = 0.8
HEARD_DB = -38.0
SILENT_DB = -55.0


def conference_twiml(extra: str = "") -> str:
    return ('<Response><Dial><Conference statusCallback="/conf-events" '
            'statusCallbackEvent="start end join leave mute hold modify speaker" '
            'recordingStatusCallback="/rec-status" '
            f'record="record-from-start"{extra}>room</Conference></Dial></Response>')


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_three_peers_mix_mute_hold_coach_and_record(dialtone, webhook, provision, twilio_client,
                                                    ports, workdir, audio_tools):
    hold_wav = tones.make_tone(workdir / "hold.wav", HOLD_HZ, 30, volume=0.3)
    hold_bytes = hold_wav.read_bytes()
    # The audio file comes from a plain file server (media fetches are not webhooks); the
    # HoldUrl document that plays it is the app's.
    files = Webhook()
    files.route("/hold.wav", lambda req: (200, hold_bytes, "audio/wav"))
    webhook.route("/hold", f'<Response><Play loop="0">{files.url("/hold.wav")}</Play></Response>')
    webhook.route("/conf-events", "<Response/>")
    webhook.route("/rec-status", "")
    provision({"/voice": conference_twiml()})
    mics = {k: tones.make_tone(workdir / f"tone-{k}.wav", f, 60) for k, f in FREQ.items()}
    uri = f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}"

    procs, started = {}, {}
    for k in ("a", "b"):
        started[k] = time.monotonic()
        procs[k] = start_pjsua2(workdir / f"pjsua2-{k}", uri=uri, sip_port=ports.port(),
                                rtp_port=ports.block(100)[0], play=mics[k],
                                record=workdir / f"heard-{k}.wav", dtmf=[], duration=34,
                                timeout=45, transport="udp", user=USERS[k])
    c = BaresipPeer(workdir / "baresip-c", mics["c"], sip_port=ports.port(), ctrl_port=ports.port(),
                    rtp_ports=ports.block(100), user=USERS["c"]).start()
    try:
        c.dial(f"sip:{NUMBER.lstrip('+')}@127.0.0.1:{dialtone.sip_port}")
        est = c.wait_event("CALL_ESTABLISHED", timeout=10)
        assert est is not None, f"baresip not connected; events: {c.ctl.events()}"
        c_connected = time.monotonic()

        conf = wait_until(lambda: twilio_client.conferences.list(status="in-progress"), 10,
                          "an in-progress conference")[0]
        assert conf.friendly_name == "room"
        room = twilio_client.conferences(conf.sid)
        parts = wait_until(lambda: (lambda ps: ps if len(ps) == 3 else None)(room.participants.list()),
                           10, "three participants")
        by_peer = {}
        for p in parts:
            caller = twilio_client.calls(p.call_sid).fetch()._from
            peer = next(k for k, u in USERS.items() if u.lstrip("+") in caller)
            by_peer[peer] = p.call_sid
        assert set(by_peer) == {"a", "b", "c"}, by_peer

        phases = {}

        def phase(name: str, seconds: float = 4.0):
            t0 = time.monotonic()
            time.sleep(seconds)
            phases[name] = (t0, time.monotonic())

        phase("all")
        room.participants(by_peer["a"]).update(muted=True)
        phase("a-muted")
        room.participants(by_peer["a"]).update(muted=False)
        room.participants(by_peer["b"]).update(hold=True, hold_url=webhook.url("/hold"),
                                               hold_method="GET")
        phase("b-held")
        room.participants(by_peer["b"]).update(hold=False)
        room.participants(by_peer["c"]).update(coaching=True, call_sid_to_coach=by_peer["a"])
        phase("c-coaches-a")
        fetched = room.participants(by_peer["c"]).fetch()
        assert fetched.coaching is True and fetched.call_sid_to_coach == by_peer["a"], fetched
        room.update(status="completed")
        ended = twilio_client.conferences(conf.sid).fetch()
        assert ended.status == "completed", ended.status
        assert ended.reason_conference_ended == "conference-ended-via-api", ended.reason_conference_ended
        closed = c.wait_event("CALL_CLOSED", timeout=10)
        assert closed is not None, "baresip was not hung up when the room ended"
    finally:
        c.stop()
        files.close()
    reports = {k: finish_pjsua2(p, workdir / f"pjsua2-{k}", 60) for k, p in procs.items()}
    for k, r in reports.items():
        assert r["connected"], (k, r)
        # The room ended with the document's <Dial>: the server hung them up, before the peer's
        # own 34 s were over.
        assert r["hangup_by"] == "remote", (k, r)

    heard = {k: audio.samples(workdir / f"heard-{k}.wav") for k in ("a", "b")}
    recs = c.recordings("dec")
    assert recs, "baresip recorded nothing"
    heard["c"] = audio.samples(recs[0])
    # Where each recording starts on the test's clock: at the call's confirmation.
    origin = {k: started[k] + reports[k]["confirmed_at"] for k in ("a", "b")}
    origin["c"] = c_connected
    freqs = dict(FREQ, hold=HOLD_HZ)

    def measured(peer: str, name: str) -> dict[str, float]:
        t0, t1 = phases[name]
        o = origin[peer]
        return tones.levels(tones.window(heard[peer], t0 - o + MARGIN, t1 - o - MARGIN), freqs)

    table = {(p, n): measured(p, n) for p in ("a", "b", "c") for n in phases}
    print("levels (dBFS) by peer and phase:")
    for key, value in table.items():
        print(" ", key, value)

    def hears(peer, name, what):
        level = table[(peer, name)][what]
        assert level > HEARD_DB, f"{peer} should hear {what} in phase {name}: {level} dBFS; {table}"

    def not_hears(peer, name, what):
        level = table[(peer, name)][what]
        assert level < SILENT_DB, f"{peer} should not hear {what} in phase {name}: {level} dBFS; {table}"

    # Everyone hears the two others, never itself.
    for p in "abc":
        for q in "abc":
            (not_hears if p == q else hears)(p, "all", q)
    # Muted: the others stop hearing a; a still hears them.
    not_hears("b", "a-muted", "a")
    not_hears("c", "a-muted", "a")
    hears("a", "a-muted", "b")
    hears("a", "a-muted", "c")
    # Held with a HoldUrl: b hears the hold audio only; the room no longer hears b.
    hears("b", "b-held", "hold")
    not_hears("b", "b-held", "a")
    not_hears("b", "b-held", "c")
    not_hears("a", "b-held", "b")
    not_hears("c", "b-held", "b")
    not_hears("a", "b-held", "hold")
    hears("a", "b-held", "c")
    # c coaches a: a alone hears c; c hears everyone.
    hears("a", "c-coaches-a", "c")
    not_hears("b", "c-coaches-a", "c")
    hears("b", "c-coaches-a", "a")
    hears("c", "c-coaches-a", "a")
    hears("c", "c-coaches-a", "b")

    # Participants that started on other workers than the room's moved to it.
    assert dialtone.log_lines("media stream moves to another worker"), "no participant crossed workers"
    # The room's recording holds all three voices.
    recordings = wait_until(lambda: room.recordings.list(), 10, "the conference recording")
    assert len(recordings) == 1, recordings
    media = f"{dialtone.http_url}/2010-04-01/Accounts/{dialtone.account_sid}/Recordings/{recordings[0].sid}.wav"
    r = requests.get(media, auth=(dialtone.account_sid, dialtone.auth_token), timeout=15)
    assert r.status_code == 200, (r.status_code, r.text[:200])
    (workdir / "room.wav").write_bytes(r.content)
    status = webhook.wait_for("/rec-status", timeout=10)[0].params
    assert status["RecordingSid"] == recordings[0].sid and status["ConferenceSid"] == conf.sid, status
    assert status["RecordingStatus"] == "completed" and status["RecordingSource"] == "DialConference", status
    assert abs(int(status["RecordingDuration"]) - len(audio.samples(workdir / "room.wav")) / audio.RATE) <= 1, status
    room_audio = audio.samples(workdir / "room.wav")
    assert len(room_audio) / audio.RATE > 14, len(room_audio) / audio.RATE
    first = tones.levels(tones.window(room_audio, 1.0, 3.5), FREQ)
    for k, level in first.items():
        assert level > HEARD_DB, f"the room recording lacks {k}: {first}"

    # Status callbacks: numbered 1..n without gaps, the ones asked for, in the order they happened.
    # (The room posts them one after the other; the test app records each once its reply is
    # written, so two neighbours may be recorded swapped: the order is read from SequenceNumber.)
    events = sorted(webhook.received("/conf-events"), key=lambda e: int(e.params["SequenceNumber"]))
    seq = [int(e.params["SequenceNumber"]) for e in events]
    assert seq == list(range(1, len(seq) + 1)), seq
    kinds = [e.params["StatusCallbackEvent"] for e in events]
    assert kinds.count("participant-join") == 3, kinds
    assert kinds.index("conference-start") > kinds.index("participant-join"), kinds
    for expected in ("participant-mute", "participant-unmute", "participant-hold",
                     "participant-unhold", "participant-modify", "conference-end"):
        assert expected in kinds, (expected, kinds)
    assert kinds[-1] == "conference-end", kinds
    assert kinds.index("participant-mute") < kinds.index("participant-unmute") \
        < kinds.index("participant-hold") < kinds.index("participant-unhold"), kinds
    assert all(e.params.get("ConferenceSid") == conf.sid for e in events), events[0].params
    # Each phone's tone is speech to the room's detector: every participant started speaking.
    speakers = {e.params.get("CallSid") for e in events
                if e.params["StatusCallbackEvent"] == "participant-speech-start"}
    assert speakers == set(by_peer.values()), (speakers, by_peer)


def test_participant_added_by_rest_is_heard_removed_and_end_on_exit_ends_the_room(
        dialtone_binary, workdir, ports, audio_tools):
    """A participant called in through the trunk with the SDK (a pjsua2 UAS) joins and is
    heard; deleting it (by label) takes it out; then the participant with endConferenceOnExit
    hangs up and the room ends for the one left."""
    from twilio.rest import Client

    from conftest import SIGNED_REQUESTS
    from peers import PEERS
    from server import DialtoneServer
    from webhook import Webhook
    import subprocess
    import sys

    freq = {"a": 500.0, "b": 900.0, "x": 1700.0}
    uas_sip = ports.port()
    uas_rtp, _ = ports.block(20)
    server = DialtoneServer(dialtone_binary, workdir, ports,
                            extra_env={"DIALTONE_TRUNK": f"sip:127.0.0.1:{uas_sip}"})
    server.start()
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((server.auth_token, r)))
    mics = {k: tones.make_tone(workdir / f"tone-{k}.wav", f, 60) for k, f in freq.items()}
    uas = subprocess.Popen(
        [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", "expert",
         "--sip-port", str(uas_sip), "--rtp-port", str(uas_rtp), "--duration", "60",
         "--timeout", "60", "--play", str(mics["x"]), "--record", str(workdir / "heard-x.wav"),
         "--log", str(workdir / "uas.log"), "--result", str(workdir / "pjsua2.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = None
    procs = {}
    try:
        client = Client(server.account_sid, server.auth_token)
        client.api.base_url = server.http_url
        plain = ('<Response><Dial><Conference statusCallback="/events" '
                 'statusCallbackEvent="start end join leave">room2</Conference></Dial></Response>')
        ending = ('<Response><Dial><Conference endConferenceOnExit="true">room2</Conference>'
                  '</Dial></Response>')
        client.incoming_phone_numbers.create(phone_number=NUMBER, voice_url=hook.route("/plain", plain))
        client.incoming_phone_numbers.create(phone_number="+15550002222",
                                             voice_url=hook.route("/ending", ending))
        hook.route("/events", "<Response/>")
        time.sleep(1.0)  # the UAS binds its port
        assert uas.poll() is None, uas.communicate()

        started_a = time.monotonic()
        procs["a"] = start_pjsua2(workdir / "pjsua2-a", uri=f"sip:{NUMBER}@127.0.0.1:{server.sip_port}",
                                  sip_port=ports.port(), rtp_port=ports.block(100)[0], play=mics["a"],
                                  record=workdir / "heard-a.wav", dtmf=[], duration=40, timeout=50,
                                  transport="udp", user=USERS["a"])
        b = BaresipPeer(workdir / "baresip-b", mics["b"], sip_port=ports.port(), ctrl_port=ports.port(),
                        rtp_ports=ports.block(100), user=USERS["b"]).start()
        b.dial(f"sip:15550002222@127.0.0.1:{server.sip_port}")
        assert b.wait_event("CALL_ESTABLISHED", timeout=10) is not None, b.ctl.events()
        b_connected = time.monotonic()
        conf = wait_until(lambda: client.conferences.list(status="in-progress"), 10, "the room")[0]
        room = client.conferences(conf.sid)
        wait_until(lambda: len(room.participants.list()) == 2, 10, "two participants")

        added = room.participants.create(from_="+15550001111", to="+15550009999", label="expert")
        assert added.call_sid.startswith("CA") and added.label == "expert", added
        assert added.conference_sid == conf.sid, (added.conference_sid, conf.sid)
        wait_until(lambda: len(room.participants.list()) == 3, 15, "the added participant")
        assert room.participants("expert").fetch().call_sid == added.call_sid
        phases = {}
        t0 = time.monotonic()
        time.sleep(4)
        phases["x-in"] = (t0, time.monotonic())
        room.participants("expert").delete()
        wait_until(lambda: len(room.participants.list()) == 2, 10, "the removal")
        t0 = time.monotonic()
        time.sleep(3)
        phases["x-out"] = (t0, time.monotonic())
        # The participant with endConferenceOnExit leaves: the room ends for a too.
        b.hangup()
        report_a = finish_pjsua2(procs.pop("a"), workdir / "pjsua2-a", 30)
        ended = wait_until(lambda: (lambda c: c if c.status == "completed" else None)(room.fetch()),
                           10, "the end of the room")
        b_sid = [c.sid for c in client.calls.list(from_=USERS["b"])]
        assert ended.reason_conference_ended == "participant-with-end-conference-on-exit-left", ended
        assert ended.call_sid_ending_conference in b_sid, (ended.call_sid_ending_conference, b_sid)
        assert report_a["hangup_by"] == "remote", report_a
        assert report_a["disconnected_at"] - report_a["confirmed_at"] < 35, report_a
        report_x = finish_pjsua2(uas, workdir, 20)
        uas = None
        assert report_x["media_active"] and report_x["hangup_by"] == "remote", report_x
    finally:
        if b is not None:
            b.stop()
        for p in procs.values():
            p.kill()
        if uas is not None:
            uas.kill()
        hook.close()
        code = server.stop()
    # SIGTERM is handled: the server shuts down cleanly.
    assert code == 0, f"dialtone exited with {code}:\n{server.log_tail(60)}"

    heard_a = audio.samples(workdir / "heard-a.wav")
    heard_x = audio.samples(workdir / "heard-x.wav")
    origin_a = started_a + report_a["confirmed_at"]

    def level(samples, origin, name, f):
        t0, t1 = phases[name]
        return tones.level_db(tones.window(samples, t0 - origin + MARGIN, t1 - origin - MARGIN), f)

    assert level(heard_a, origin_a, "x-in", freq["x"]) > HEARD_DB, "a does not hear the added participant"
    assert level(heard_a, origin_a, "x-out", freq["x"]) < SILENT_DB, "a still hears the removed participant"
    assert level(heard_a, origin_a, "x-out", freq["b"]) > HEARD_DB, "a stopped hearing b"
    # The UAS heard the room while it was in: both a and b (its recording starts at its answer).
    x_levels = tones.levels(heard_x[len(heard_x) // 4: len(heard_x) * 3 // 4], {"a": 500.0, "b": 900.0})
    assert all(v > HEARD_DB for v in x_levels.values()), x_levels
    print("a hears x in/out, b out:", level(heard_a, origin_a, "x-in", freq["x"]), level(heard_a, origin_a, "x-out", freq["x"]), level(heard_a, origin_a, "x-out", freq["b"]), "x hears", x_levels)
    _ = b_connected
