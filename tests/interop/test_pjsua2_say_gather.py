"""Say inside Gather to a pjsua2 caller: the caller hears the prompt and its RFC 4733 digits come
back to the app as Digits on the Gather action."""

from checks import assert_heard_speech, number_digits
from conftest import CALLER, NUMBER
import audio
from peers import run_pjsua2

PROMPT = "Please enter three digits"
VOICE = f'<Response><Gather numDigits="3" action="/gathered"><Say>{PROMPT}</Say></Gather></Response>'


def test_pjsua2_say_gather(dialtone, webhook, provision, ports, workdir):
    number = provision({"/voice": VOICE, "/gathered": "<Response><Hangup/></Response>"})
    assert number.phone_number == NUMBER
    ref = audio.reference_speech(PROMPT, workdir)
    dtmf_at = round(ref.length + 2.0, 1)  # the prompt is over, the Gather is listening
    recording = workdir / "pjsua2-heard.wav"

    report = run_pjsua2(workdir, uri=f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}",
                        sip_port=ports.port(), rtp_port=ports.block(100)[0], record=recording,
                        dtmf=[(dtmf_at, "427")], duration=dtmf_at + 10, timeout=dtmf_at + 20,
                        user=CALLER)

    assert report["connected"], f"call not answered: {report}"
    assert report["codec"] in ("PCMU/8000", "PCMA/8000"), report
    assert report["dtmf_sent"], report
    voice = webhook.wait_for("/voice")[0]
    gathered = webhook.wait_for("/gathered", timeout=5)[0]
    p = gathered.params
    assert gathered.method == "POST"
    assert p.get("Digits") == "427", p
    assert p.get("CallStatus") == "in-progress", p
    assert p.get("Direction") == "inbound", p
    assert number_digits(p.get("From")) == number_digits(CALLER), p
    assert number_digits(p.get("To")) == number_digits(NUMBER), p
    assert p.get("AccountSid") == dialtone.account_sid, p
    assert p.get("CallSid", "").startswith("CA") and p["CallSid"] == voice.params.get("CallSid"), p
    assert voice.params.get("CallStatus") == "ringing", voice.params
    # <Hangup/> on the action: the server ends the call, not our timer.
    assert report["hangup_by"] == "remote", report
    assert_heard_speech(recording, PROMPT, workdir)
