"""Say inside Gather to a baresip caller (dialling the number without '+'): baresip hears the
prompt, its sndcode digits reach the app as Digits."""

import time

from checks import assert_heard_speech, number_digits
from conftest import CALLER, NUMBER
import audio
from peers import BaresipPeer

PROMPT = "Please enter three digits"
VOICE = f'<Response><Gather numDigits="3" action="/gathered"><Say>{PROMPT}</Say></Gather></Response>'


def test_baresip_say_gather(dialtone, webhook, provision, ports, workdir):
    provision({"/voice": VOICE, "/gathered": "<Response><Hangup/></Response>"})
    ref = audio.reference_speech(PROMPT, workdir)
    # baresip's microphone is this file and it hangs up when the file ends: make it outlast the call.
    mic = audio.silence(workdir / "baresip-mic.wav", 30)
    peer = BaresipPeer(workdir, mic, sip_port=ports.port(), ctrl_port=ports.port(),
                       rtp_ports=ports.block(100), user=CALLER).start()
    try:
        peer.dial(f"sip:{NUMBER.lstrip('+')}@127.0.0.1:{dialtone.sip_port}")
        est = peer.wait_event("CALL_ESTABLISHED", timeout=10)
        assert est is not None, f"baresip call not established; events: {peer.ctl.events()}"
        time.sleep(ref.length + 2.0)
        peer.send_dtmf("427")
        gathered = webhook.wait_for("/gathered", timeout=10)[0]
        closed = peer.wait_event("CALL_CLOSED", timeout=10)
        assert closed is not None, "the server did not hang up after <Hangup/>"
    finally:
        peer.stop()
    p = gathered.params
    assert p.get("Digits") == "427", p
    assert p.get("CallStatus") == "in-progress", p
    assert p.get("Direction") == "inbound", p
    assert number_digits(p.get("From")) == number_digits(CALLER), p
    assert number_digits(p.get("To")) == number_digits(NUMBER), p
    heard = peer.recordings("dec")
    assert len(heard) == 1, f"baresip recordings: {heard}; log:\n{peer.log()[-2000:]}"
    assert_heard_speech(heard[0], PROMPT, workdir)
