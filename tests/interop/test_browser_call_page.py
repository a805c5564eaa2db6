"""Dialtone's own "call us" page (`GET /call`, dialtone.js) in headless Chromium, driven by the
browser driver's generic steps: the page gets an Access Token minted with twilio-python
(`AccessToken` + `VoiceGrant` for a TwiML App, signed with an API key made through the SDK), the
visitor clicks Call, hears the app's `<Gather>` prompt (recorded from
`window.dialtonePage.call.getRemoteStream()`), types 4, 2, 7 on the page's keypad; the digits
reach the action and the page shows the call ended after `<Hangup/>`.
"""

from __future__ import annotations

from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

import audio
import tones
from browser import BrowserRun, step
from checks import assert_heard_speech

PROMPT = "Please enter three digits"
VOICE = f'<Response><Gather numDigits="3" action="/gathered"><Say>{PROMPT}</Say></Gather></Response>'


def test_call_page_hears_the_prompt_and_its_keypad_reaches_gather(dialtone, webhook, twilio_client,
                                                                   workdir, audio_tools):
    app = twilio_client.applications.create(friendly_name="call us", voice_url=webhook.route("/voice", VOICE),
                                            voice_method="POST")
    webhook.route("/gathered", "<Response><Hangup/></Response>")
    key = twilio_client.new_keys.create(friendly_name="call page")
    token = AccessToken(dialtone.account_sid, key.sid, key.secret, identity="visitor", ttl=600)
    token.add_grant(VoiceGrant(outgoing_application_sid=app.sid))
    ref = audio.reference_speech(PROMPT, workdir)
    mic = tones.make_tone(workdir / "mic-1000.wav", 1000, 20)
    url = f"{dialtone.http_url}/call?token={token.to_jwt()}&to=%2B15550001111"
    keys = [{"do": "click", "selector": f'#keypad [data-digit="{d}"]'} for d in "427"]
    report = BrowserRun(workdir, {"visitor": mic}, [
        {"do": "open", "url": url},
        {"do": "click", "selector": "#call", "timeout_ms": 15000},
        {"do": "wait_state", "state": "in-call", "timeout_ms": 15000},
        {"do": "record_start", "expr": "window.dialtonePage.call.getRemoteStream()", "freqs": [1000],
         "name": "rec"},
        {"do": "screenshot", "file": "call-page-in-call.png"},
        {"do": "sleep", "ms": int((ref.length + 1.5) * 1000)},
        *keys,
        {"do": "wait_state", "state": "ended", "timeout_ms": 15000},
        {"do": "record_stop", "of": "rec", "wav": "call-page-heard.wav", "name": "heard"},
        {"do": "eval", "js": "document.getElementById('digits').value", "name": "typed"},
        {"do": "screenshot", "file": "call-page-ended.png"},
    ], timeout=90, name="call-page").run()
    heard = step(report, "heard")
    print("typed:", step(report, "typed"), "heard:", heard["seconds"], "s,", heard["summary"])
    gathered = webhook.wait_for("/gathered", timeout=10)[0].params
    print("gathered:", {k: gathered.get(k) for k in ("Digits", "From", "To", "Direction")})
    assert gathered.get("Digits") == "427", gathered
    assert gathered.get("From") == "client:visitor", gathered
    voice = webhook.received("/voice")[0].params
    assert voice.get("ApplicationSid") == app.sid and voice.get("To") == "+15550001111", voice
    span = assert_heard_speech(workdir / "call-page-heard.wav", PROMPT, workdir)
    print(f"speech {span.start:.2f}-{span.end:.2f} s at {span.rms_db:.1f} dBFS (espeak-ng {ref.length:.2f} s)")
