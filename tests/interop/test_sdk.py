"""The official twilio-python SDK against the server: provisioning, paging through calls,
fetching a recording."""

import requests

from conftest import CALLER, NUMBER
import audio
from peers import run_pjsua2
from sipuac import MediaSink, Uac

HANGUP = "<Response><Hangup/></Response>"


def test_sdk_reaches_our_server(dialtone, twilio_client, webhook):
    """client.api.base_url really sends the SDK to the server under test (and not to Twilio)."""
    created = twilio_client.incoming_phone_numbers.create(
        phone_number="+15550002222", voice_url=webhook.route("/voice", HANGUP), voice_method="POST")
    assert created.sid.startswith("PN") and len(created.sid) == 34, created.sid
    assert created.account_sid == dialtone.account_sid
    raw = dialtone.get(dialtone.api("/IncomingPhoneNumbers.json")).json()
    sids = [n["sid"] for n in raw["incoming_phone_numbers"]]
    assert created.sid in sids, raw


def test_sdk_numbers_calls_recordings(dialtone, twilio_client, webhook, ports, workdir):
    voice = webhook.route("/voice", HANGUP)
    created = twilio_client.incoming_phone_numbers.create(
        phone_number=NUMBER, voice_url=voice, voice_method="POST",
        status_callback=webhook.route("/status", ""), status_callback_method="POST")
    fetched = twilio_client.incoming_phone_numbers(created.sid).fetch()
    assert fetched.phone_number == NUMBER
    assert fetched.voice_url == voice
    assert fetched.voice_method == "POST"
    listed = twilio_client.incoming_phone_numbers.list(phone_number=NUMBER)
    assert [n.sid for n in listed] == [created.sid]

    sink = MediaSink()
    try:
        results = []
        for _ in range(5):
            with Uac(dialtone.sip_addr, from_user=CALLER) as uac:
                results.append(uac.call(NUMBER, sink.port, timeout=10))
    finally:
        sink.close()
    for r in results:
        assert r.answered and r.bye_from_server and r.error is None, r
    webhook.wait_for("/voice", count=5)
    call_sids = {r.params["CallSid"] for r in webhook.received("/voice")}
    assert len(call_sids) == 5

    # Paging: page_size=2 must really give pages of 2 that link on to the rest.
    page = twilio_client.calls.page(page_size=2)
    assert page.next_page_url, "a page of 2 out of 5 calls has no next page"
    first = list(page)
    assert len(first) == 2, f"first page has {len(first)} calls"
    calls = twilio_client.calls.list(page_size=2)
    assert {c.sid for c in calls} == call_sids
    assert len(calls) == 5
    for c in calls:
        assert c.status == "completed", (c.sid, c.status)
        assert c.direction == "inbound", c.direction
        assert c.to.lstrip("+") == NUMBER.lstrip("+"), c.to
    one = twilio_client.calls(calls[0].sid).fetch()
    assert one.sid == calls[0].sid and one.account_sid == dialtone.account_sid

    # A recording, fetched through the SDK and downloaded.
    message = "Recording for the SDK test"
    webhook.route("/voice", '<Response><Record maxLength="4" playBeep="false" action="/recorded"/></Response>')
    webhook.route("/recorded", HANGUP)
    mic = audio.synthesize(message, workdir / "mic.wav", pad_before=0.3, pad_after=10)
    report = run_pjsua2(workdir, uri=f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}",
                        sip_port=ports.port(), rtp_port=ports.block(100)[0], play=mic,
                        duration=15, timeout=25, user=CALLER)
    assert report["connected"], report
    rsid = webhook.wait_for("/recorded", timeout=10)[0].params.get("RecordingSid")
    assert rsid and rsid.startswith("RE"), rsid
    recs = twilio_client.recordings.list(page_size=20)
    assert rsid in [r.sid for r in recs]
    rec = twilio_client.recordings(rsid).fetch()
    assert rec.account_sid == dialtone.account_sid
    assert rec.call_sid in {r.params["CallSid"] for r in webhook.received("/recorded")}
    assert 1 <= float(rec.duration) <= 5, rec.duration
    media = requests.get(f"{dialtone.api(f'/Recordings/{rsid}.wav')}",
                         auth=(dialtone.account_sid, dialtone.auth_token), timeout=15)
    assert media.status_code == 200 and media.content[:4] == b"RIFF", media.status_code
    # The status callback carried the final status of each call.
    statuses = [r.params.get("CallStatus") for r in webhook.wait_for("/status", count=6)]
    assert statuses.count("completed") == 6, statuses
