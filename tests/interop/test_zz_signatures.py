"""Every webhook request the apps of this session received carries a valid X-Twilio-Signature, as
the official SDK's RequestValidator computes it. Runs last (file order), over all tests' requests;
run alone, it makes a call of its own first."""

from twilio.request_validator import RequestValidator

import conftest
from conftest import CALLER, NUMBER
from sipuac import MediaSink, Uac


def test_every_webhook_request_is_signed(dialtone, webhook, provision):
    provision({"/voice": '<Response><Pause length="1"/><Redirect>/next</Redirect></Response>',
               "/next": "<Response><Hangup/></Response>"})
    sink = MediaSink()
    try:
        with Uac(dialtone.sip_addr, from_user=CALLER) as uac:
            r = uac.call(NUMBER, sink.port, timeout=15)
    finally:
        sink.close()
    assert r.answered, r
    webhook.wait_for("/next", timeout=5)

    checked, bad = 0, []
    for token, req in conftest.SIGNED_REQUESTS:
        if req.signature is None:
            bad.append((req.method, req.url, "no X-Twilio-Signature"))
            continue
        if not RequestValidator(token).validate(req.url, req.signed_params(), req.signature):
            bad.append((req.method, req.url, req.signature, req.signed_params()))
        checked += 1
    assert checked >= 2, conftest.SIGNED_REQUESTS
    assert not bad, f"{len(bad)} of {len(conftest.SIGNED_REQUESTS)} requests badly signed: {bad[:5]}"
    print(f"{checked} webhook requests carried valid signatures")
