"""Crash safety: `kill -9` during 100 live calls, each recording the sine its caller sends; after a
restart on the same data dir and database, every call has a closed record (answered ones
`completed`, with an end time and a duration up to the crash) and every recording is finalized: listed,
downloadable, a valid WAV as long as its row says and as the audio sent before the kill, and not
silent. On SQLite (the default) and on a real PostgreSQL server."""

from __future__ import annotations

import array
import io
import math
import os
import signal
import time
import wave

import pytest
import requests

from conftest import NUMBER
from livecalls import LiveCalls
from pgserver import PostgresServer
from server import DialtoneServer
from webhook import Webhook

CALLS = 100
RECORD_SECONDS = 3.0
VOICE = '<Response><Record maxLength="120" playBeep="false"/></Response>'


@pytest.fixture
def postgres(ports):
    server = PostgresServer(ports.port()).start()
    yield server
    server.stop()


def kill9(server: DialtoneServer) -> None:
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.ports.release(server.http_port, server.sip_port, server.rtp_ports)


def list_all(server: DialtoneServer, path: str, key: str) -> list[dict]:
    items, url = [], server.api(f"{path}?PageSize=1000")
    while url:
        r = server.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        body = r.json()
        items += body[key]
        url = body.get("next_page_uri")
    return items


def rms_dbfs(frames: bytes) -> float:
    samples = array.array("h", frames)
    if not samples:
        return -120.0
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    return 20 * math.log10(max(rms, 1e-9) / 32768)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_kill9_during_live_recorded_calls(backend, request, dialtone_binary, workdir, ports):
    t_start = time.monotonic()
    env = {}
    if backend == "postgres":
        env["DIALTONE_DATABASE_URL"] = request.getfixturevalue("postgres").create_database("crash")
    first = DialtoneServer(dialtone_binary, workdir, ports, rtp_size=4 * CALLS, extra_env=env).start()
    hook = Webhook()
    calls = None
    second = None
    try:
        r = requests.post(first.api("/IncomingPhoneNumbers.json"), auth=(first.account_sid, first.auth_token),
                          data={"PhoneNumber": NUMBER, "VoiceUrl": hook.route("/voice", VOICE)}, timeout=10)
        assert r.status_code == 201, r.text
        calls = LiveCalls(first.sip_addr, NUMBER)
        placed = calls.place(CALLS, timeout=30)
        answered = {c.caller: c for c in placed if c.status == 200 and c.remote_rtp}
        assert len(answered) == CALLS, f"{len(answered)} of {CALLS} calls answered: " \
            f"{sorted({c.status for c in placed}, key=str)}"
        # Every call records from its answer; the last one answered gets RECORD_SECONDS too.
        last = max(c.first_rtp or time.monotonic() for c in answered.values())
        time.sleep(max(0.0, last + RECORD_SECONDS - time.monotonic()))
        assert first.alive(), first.log_tail(60)
        kill9(first)
        killed_at = calls.stop_audio()
        # Per caller: audio sent, and time since the 200 OK, when the server died.
        sent = {k: killed_at - c.first_rtp for k, c in answered.items()}
        talk = {k: killed_at - c.answered_at for k, c in answered.items()}

        second = DialtoneServer(dialtone_binary, workdir, ports, rtp_size=20, extra_env=env)
        second.log_path = workdir / "dialtone-restart.log"
        restarted = time.monotonic()
        second.start()
        restart_s = time.monotonic() - restarted

        rows = list_all(second, "/Calls.json", "calls")
        assert len(rows) == CALLS, f"{len(rows)} call records after the crash, {CALLS} calls reached the server"
        statuses = {}
        for c in rows:
            statuses[c["status"]] = statuses.get(c["status"], 0) + 1
        assert statuses == {"completed": CALLS}, statuses
        assert {c["from"] for c in rows} == set(answered), "one record per call placed"
        caller_of = {c["sid"]: c["from"] for c in rows}
        for c in rows:
            assert c["end_time"] and c["start_time"], c
            # The end is the last heartbeat: at most a second (plus rounding) before the kill.
            t = talk[c["from"]]
            assert t - 1.6 <= int(c["duration"]) <= t + 0.6, (c["from"], c["duration"], t)

        recs = list_all(second, "/Recordings.json", "recordings")
        assert len(recs) == CALLS, f"{len(recs)} recordings listed after the crash, {CALLS} were recording"
        assert {r["call_sid"] for r in recs} == set(caller_of), "one recording per call"
        lost = []
        for rec in recs:
            assert rec["status"] == "completed", rec
            media = second.get(second.api(f"/Recordings/{rec['sid']}.wav"))
            assert media.status_code == 200, (rec["sid"], media.status_code, media.text[:200])
            with wave.open(io.BytesIO(media.content)) as w:
                assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
                nframes = w.getnframes()
                frames = w.readframes(nframes)
            seconds = nframes / 8000
            assert len(frames) == 2 * nframes and len(media.content) == 44 + 2 * nframes, \
                "RIFF and data sizes match the file"
            # The row keeps whole seconds, as Twilio's RecordingDuration does.
            assert abs(int(rec["duration"]) - seconds) <= 0.5 + 1e-3, (rec["duration"], seconds)
            # What a kill loses is what the recorder had not yet written out.
            s = sent[caller_of[rec["call_sid"]]]
            assert s - 1.0 <= seconds <= s + 0.1, (rec["sid"], seconds, s)
            lost.append(s - seconds)
            level = rms_dbfs(frames)
            assert level > -30.0, f"recording {rec['sid']} at {level:.1f} dBFS: silent"
        print(f"{backend}: {len(rows)} calls completed, {len(recs)} recordings; audio sent "
              f"{min(sent.values()):.2f}-{max(sent.values()):.2f} s, lost by the kill "
              f"{min(lost):.2f}-{max(lost):.2f} s (mean {sum(lost) / len(lost):.2f}); restart with "
              f"recovery {restart_s:.2f} s; test {time.monotonic() - t_start:.1f} s")
    finally:
        if calls is not None:
            calls.close()
        hook.close()
        if first.alive():
            first.stop()
        if second is not None:
            code = second.stop()
            assert code == 0, f"restarted dialtone exited with {code}:\n{second.log_tail(60)}"
