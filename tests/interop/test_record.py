"""Record: a pjsua2 caller leaves a spoken message; the app gets RecordingUrl/RecordingDuration on
the action, and the recording downloaded through the REST API holds the message."""

import requests

from checks import SPEECH_MIN_DBFS
from conftest import CALLER, NUMBER
import audio
from peers import run_pjsua2

MESSAGE = "Hello, this is a test message for the answering machine"
VOICE = ('<Response><Say>Leave a message</Say>'
         '<Record maxLength="10" timeout="2" action="/recorded"/></Response>')


def test_record(dialtone, webhook, provision, twilio_client, ports, workdir):
    provision({"/voice": VOICE, "/recorded": "<Response><Hangup/></Response>"})
    message = audio.reference_speech(MESSAGE, workdir)
    # Start speaking once "Leave a message" and the beep are over; then silence, so the 2 s
    # silence timeout ends the recording.
    mic = audio.synthesize(MESSAGE, workdir / "message.wav", pad_before=2.5, pad_after=15)

    report = run_pjsua2(workdir, uri=f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}",
                        sip_port=ports.port(), rtp_port=ports.block(100)[0], play=mic,
                        record=workdir / "pjsua2-heard.wav", duration=25, timeout=35, user=CALLER)
    assert report["connected"], report
    recorded = webhook.wait_for("/recorded", timeout=5)[0]
    p = recorded.params
    assert report["hangup_by"] == "remote", report
    assert p.get("RecordingUrl"), p
    assert p.get("RecordingSid", "").startswith("RE"), p
    duration = float(p.get("RecordingDuration", "nan"))
    assert message.length - 0.5 <= duration <= message.length + 2.5, (
        f"RecordingDuration {duration} s for {message.length:.2f} s of speech")
    assert 2.5 <= duration <= 5.5, duration

    # The same recording through the SDK, then its media as WAV.
    rec = twilio_client.recordings(p["RecordingSid"]).fetch()
    assert rec.call_sid == p.get("CallSid"), (rec.call_sid, p)
    assert abs(float(rec.duration) - duration) <= 1, (rec.duration, duration)
    wav_url = p["RecordingUrl"] + ".wav"
    r = requests.get(wav_url, auth=(dialtone.account_sid, dialtone.auth_token), timeout=15)
    assert r.status_code == 200, (wav_url, r.status_code, r.text[:300])
    assert r.content[:4] == b"RIFF" and r.content[8:12] == b"WAVE", r.content[:16]
    wav = workdir / "recording.wav"
    wav.write_bytes(r.content)
    assert abs(audio.duration(wav) - duration) <= 0.6, (audio.duration(wav), duration)
    span = audio.speech_span(wav)
    assert span is not None, "the recording is silent"
    assert span.rms_db > SPEECH_MIN_DBFS, f"recorded speech at {span.rms_db:.1f} dBFS"
    assert abs(span.length - message.length) <= 1.0, (span, message)
    # The beep belongs before the recording, not in it: the first sound is the caller's speech.
    assert span.start <= 1.5, span
