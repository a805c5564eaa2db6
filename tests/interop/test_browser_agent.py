"""Browser calling end to end, with Dialtone's own pages and dialtone.js: a customer on the "call us"
page (`/call`) reaches an agent on the console (`/console`), both in headless Chromium.

- Customer to agent: the API key and the Application come from twilio-python, the customer's token
  from its `AccessToken` + `VoiceGrant`. The app gathers a 4-digit customer number (typed on the
  page's keypad after the prompt) and dials `<Client>agent` with it as a `<Parameter>`. The agent
  signs in on the console with a SIP credential (a credential list on a SIP Domain, made through
  the SDK) and is listed `available`; the console rings with the screen pop (CustomerId) and the
  CRM link of the account's ConsoleCrmUrl (over the node's DIALTONE_CONSOLE_CRM_URL); once accepted each side hears the other's microphone (600 Hz
  customer, 1100 Hz agent), the agent's keypad digit reaches the customer as the DTMF pair, the
  dual-channel recording holds one voice per channel, and the console's recent calls list the call.
- Bad tokens: a dialtone.js Device's `register()` and `connect()` fail with Twilio's codes for an
  expired (20104), not yet valid (20105), forged (20107), wrong-account (20103) and deleted-key
  (20103) token, while a good token registers.
- updateToken during a call: a 40 s token is replaced on `tokenWillExpire`; the Device re-REGISTERs
  with the new token, and the call is still `in-progress`, with its audio arriving, 10 s after the
  first token expired.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import time
import types
import urllib.parse

import pytest
import requests
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

import audio
import tones
from webhook import Webhook
from browser import BrowserRun, run_browser, step

DOMAIN = "support.sip.dialtone.local"
AGENT = "agent"
AGENT_PASSWORD = "Agent-Secret-2024"
CRM = "https://crm.example.com/customers/{CustomerId}"
PROMPT = "Please enter your customer number"
CUSTOMER_HZ, AGENT_HZ = 600, 1100
DTMF_9 = (852, 1477)  # the row and column tones of 9
# Each microphone is a steady sine at 0.3 of full scale (-13.5 dBFS). The pages capture with the
# browser's default processing (dialtone.js asks for `audio: true`), whose gain control and noise
# suppression bring a steady tone down to about -33 dBFS within 2 s; what is absent reads below
# -75 dBFS. "Heard" is above -40, "absent" below -50.
HEARD_DB, ABSENT_DB = -40.0, -50.0


def make_agent(client) -> None:
    """A SIP Domain whose credential list holds the agent: the console signs in with it."""
    sip = client.api.account.sip
    cl = sip.credential_lists.create(friendly_name="agents")
    sip.credential_lists(cl.sid).credentials.create(username=AGENT, password=AGENT_PASSWORD)
    domain = sip.domains.create(domain_name=DOMAIN, friendly_name="Support agents")
    sip.domains(domain.sid).auth.registrations.credential_list_mappings.create(credential_list_sid=cl.sid)


def mint(account_sid: str, key, identity: str, app_sid: str | None = None, incoming: bool = False,
         **kw) -> str:
    token = AccessToken(account_sid, key.sid, key.secret, identity=identity, **kw)
    token.add_grant(VoiceGrant(outgoing_application_sid=app_sid, incoming_allow=incoming))
    return token.to_jwt()


def registrations(dialtone) -> dict:
    r = dialtone.get(dialtone.api("/SIP/Registrations.json"))
    assert r.status_code == 200, r.text
    return {u["username"]: u for u in r.json()["registrations"]}


def wait_file(run: BrowserRun, path, timeout: float):
    """Waits for a file the scenario writes (write_file); fails when the driver ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if run.proc.poll() is not None:
            report = run.finish()
            raise AssertionError(f"the browsers stopped before writing {path.name}: {report['error']}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the browsers did not reach {path.name} within {timeout} s")
        time.sleep(0.1)
    return json.loads(path.read_text() or "null")


def windows_between(heard: dict, start_ms: float, end_ms: float) -> list[dict]:
    return [w for w in heard["windows"] if start_ms <= w["t_ms"] and w["t_ms"] + heard["window_ms"] <= end_ms]


def median_tone(ws: list[dict], freq: int) -> float:
    return statistics.median(w["tones"][str(freq)] for w in ws)


POP_JS = """({
  params: Object.fromEntries([...document.querySelectorAll('#pop-params [data-param]')]
                             .map((e) => [e.dataset.param, e.textContent])),
  crm: document.querySelector('#crm').hidden ? null : document.querySelector('#crm-link').href,
  caller: document.querySelector('#caller').textContent,
  ringing: !document.querySelector('#ring-actions').hidden,
})"""

HISTORY_JS = """[...document.querySelectorAll('#calls-body tr')].map((tr) =>
  Object.fromEntries([...tr.querySelectorAll('td')].map((td) => [td.dataset.label, td.textContent])))"""

# Clicks Refresh at most once a second until a completed call is listed.
HISTORY_READY_JS = """(() => {
  const rows = [...document.querySelectorAll('#calls-body tr')];
  if (rows.some((tr) => tr.textContent.includes('completed'))) return true;
  if (!window.__refreshed || Date.now() - window.__refreshed > 1000) {
    window.__refreshed = Date.now();
    document.querySelector('#refresh').click();
  }
  return false;
})()"""


@pytest.mark.dialtone_env(DIALTONE_CONSOLE_CRM_URL="https://node-default.example.com/{CustomerId}")
def test_customer_calls_agent_with_screen_pop(dialtone, webhook, twilio_client, workdir, audio_tools):
    # The account's own CRM link (Dialtone's ConsoleCrmUrl on the Account) beats the node's.
    r = requests.post(dialtone.api(".json"), data={"ConsoleCrmUrl": CRM},
                      auth=(dialtone.account_sid, dialtone.auth_token), timeout=10)
    assert r.status_code == 200 and r.json()["console_crm_url"] == CRM, r.text
    account = twilio_client.api.v2010.account
    key = account.new_keys.create(friendly_name="call-us page")
    assert key.sid.startswith("SK") and key.secret, key.sid

    def identify(req):
        digits = req.params.get("Digits", "")
        return ('<Response><Dial record="record-from-answer-dual" action="/after" timeout="20">'
                f'<Client><Identity>{AGENT}</Identity><Parameter name="CustomerId" value="{digits}"/>'
                '</Client></Dial></Response>')

    voice = webhook.route("/voice", f'<Response><Gather numDigits="4" action="/id"><Say>{PROMPT}</Say>'
                                    '</Gather><Say>We did not get your number.</Say></Response>')
    webhook.route("/id", identify)
    webhook.route("/after", "<Response><Hangup/></Response>")
    app = account.applications.create(friendly_name="call us", voice_url=voice, voice_method="POST")
    make_agent(twilio_client)
    token = mint(dialtone.account_sid, key, "customer", app_sid=app.sid, incoming=False, ttl=600)

    prompt = audio.reference_speech(PROMPT, workdir)
    mics = {"agent": tones.make_tone(workdir / f"mic-{AGENT_HZ}.wav", AGENT_HZ, 30),
            "customer": tones.make_tone(workdir / f"mic-{CUSTOMER_HZ}.wav", CUSTOMER_HZ, 30)}
    base = dialtone.http_url
    freqs = [CUSTOMER_HZ, AGENT_HZ, *DTMF_9]
    a, c = {"browser": "agent"}, {"browser": "customer"}
    steps = [
        {"do": "open", **a, "url": f"{base}/console"},
        {"do": "fill", **a, "selector": "#username", "value": AGENT},
        {"do": "fill", **a, "selector": "#password", "value": AGENT_PASSWORD},
        {"do": "click", **a, "selector": "#login-submit"},
        {"do": "wait_state", **a, "state": "ready"},
        {"do": "wait_for", **a, "timeout_ms": 15000,
         "js": "window.dialtonePage.device && window.dialtonePage.device.state === 'registered'"},
        {"do": "eval", **a, "name": "signed-in",
         "js": "({identity: document.querySelector('#identity').textContent, "
               "presence: document.querySelector('#presence').value})"},
        {"do": "write_file", **a, "file": "agent-ready"},
        {"do": "wait_file", **a, "file": "go", "timeout_ms": 20000},
        {"do": "open", **c, "url": f"{base}/call?token={urllib.parse.quote(token)}"},
        {"do": "wait_for", **c, "selector": "#call:not([disabled])"},
        {"do": "click", **c, "selector": "#call"},
        {"do": "wait_state", **c, "state": "in-call", "timeout_ms": 15000},
        {"do": "record_start", **c, "name": "customer-rec", "freqs": freqs,
         "expr": "window.dialtonePage.call.getRemoteStream()"},
        {"do": "sleep", "ms": int((prompt.length + 1.0) * 1000)},
        *[{"do": "click", **c, "selector": f'#keypad [data-digit="{d}"]'} for d in "1234"],
        {"do": "eval", **c, "name": "customer-digits", "js": "document.querySelector('#digits').value"},
        {"do": "wait_state", **a, "state": "ringing", "timeout_ms": 20000},
        {"do": "eval", **a, "name": "pop", "js": POP_JS},
        {"do": "screenshot", **a, "file": "agent-ringing.png"},
        {"do": "click", **a, "selector": "#accept"},
        {"do": "wait_state", **a, "state": "in-call", "timeout_ms": 15000},
        {"do": "record_start", **a, "name": "agent-rec", "freqs": freqs,
         "expr": "window.dialtonePage.call.getRemoteStream()"},
        {"do": "eval", **c, "name": "customer-bridged-at", "js": "performance.now()"},
        {"do": "write_file", **a, "file": "bridged"},
        {"do": "sleep", "ms": 3500},
        {"do": "screenshot", **a, "file": "agent-in-call.png"},
        {"do": "screenshot", **c, "file": "customer-in-call.png"},
        {"do": "eval", **c, "name": "customer-dtmf-at", "js": "performance.now()"},
        {"do": "click", **a, "selector": '#call-controls [data-digit="9"]'},
        {"do": "sleep", "ms": 1500},
        # Hold (a re-INVITE with a=sendonly over the WebSocket, answered by the server's WebRTC
        # session) and resume: the customer hears nothing of the agent in between.
        {"do": "eval", **c, "name": "customer-hold-at", "js": "performance.now()"},
        {"do": "click", **a, "selector": "#hold"},
        {"do": "wait_for", **a, "timeout_ms": 8000,
         "js": "document.querySelector('#hold').getAttribute('aria-pressed') === 'true' && "
               "!document.querySelector('#hold').disabled"},
        {"do": "sleep", "ms": 2500},
        {"do": "eval", **c, "name": "customer-resume-at", "js": "performance.now()"},
        {"do": "click", **a, "selector": "#hold"},
        {"do": "wait_for", **a, "timeout_ms": 8000,
         "js": "document.querySelector('#hold').getAttribute('aria-pressed') === 'false' && "
               "!document.querySelector('#hold').disabled"},
        {"do": "sleep", "ms": 2500},
        {"do": "record_stop", **a, "of": "agent-rec", "wav": "agent-heard.wav", "name": "agent-heard"},
        {"do": "record_stop", **c, "of": "customer-rec", "wav": "customer-heard.wav",
         "name": "customer-heard"},
        {"do": "eval", **a, "name": "agent-digits", "js": "document.querySelector('#digits').value"},
        {"do": "click", **a, "selector": "#hangup"},
        {"do": "wait_state", **a, "state": "ready", "timeout_ms": 10000},
        {"do": "wait_state", **c, "state": "ended", "timeout_ms": 10000},
        {"do": "wait_for", **a, "js": HISTORY_READY_JS, "timeout_ms": 10000},
        {"do": "eval", **a, "name": "history", "js": HISTORY_JS},
        {"do": "screenshot", **a, "file": "agent-after-call.png"},
        {"do": "screenshot", **c, "file": "customer-after-call.png"},
    ]
    run = BrowserRun(workdir, mics, steps, timeout=120, name="agent").start()
    # The console signed in and registered: the registrar lists the agent as available.
    wait_file(run, workdir / "agent-ready", 30)
    presence = registrations(dialtone).get(AGENT, {})
    print("registration of the signed-in agent:", presence)
    (workdir / "go").write_text("null")
    # Bridged: both legs are live in the Calls API.
    wait_file(run, workdir / "bridged", 45)
    live = {x.sid: x for x in twilio_client.calls.list()}
    report = run.finish()
    print("live calls:", {k: (v.status, v._from, v.to) for k, v in live.items()})

    signed_in = step(report, "signed-in")
    assert signed_in == {"identity": AGENT, "presence": "available"}, signed_in
    assert presence.get("presence") == "available", presence
    assert step(report, "customer-digits") == "1234"

    first = webhook.wait_for("/voice")[0].params
    assert first.get("From") == "client:customer" and first.get("ApplicationSid") == app.sid, first
    assert first.get("Direction") == "inbound", first
    ident = webhook.wait_for("/id")[0].params
    assert ident.get("Digits") == "1234", ident
    parent_sid = ident["CallSid"]

    pop = step(report, "pop")
    print("screen pop:", pop)
    assert pop["ringing"], pop
    assert pop["params"].get("CustomerId") == "1234", pop
    assert pop["params"].get("From") == "client:customer", pop
    assert pop["params"].get("To") == f"client:{AGENT}", pop
    assert pop["params"].get("AccountSid") == dialtone.account_sid, pop
    child_sid = pop["params"].get("CallSid", "")
    assert child_sid.startswith("CA") and child_sid != parent_sid, pop
    assert pop["crm"] == "https://crm.example.com/customers/1234", pop

    assert {k: v.status for k, v in live.items()} == {parent_sid: "in-progress", child_sid: "in-progress"}, live

    # Each side hears the other's microphone, and not its own.
    agent_heard = step(report, "agent-heard")
    customer_heard = step(report, "customer-heard")
    bridged_at = step(report, "customer-bridged-at") - customer_heard["started_at"]
    dtmf_at = step(report, "customer-dtmf-at") - customer_heard["started_at"]
    aw = windows_between(agent_heard, 1000, agent_heard["seconds"] * 1000)
    cw = windows_between(customer_heard, bridged_at + 1000, dtmf_at)
    agent_levels = {f: median_tone(aw, f) for f in (CUSTOMER_HZ, AGENT_HZ)}
    customer_levels = {f: median_tone(cw, f) for f in (CUSTOMER_HZ, AGENT_HZ)}
    print(f"agent heard over {len(aw)} windows: {agent_levels} dBFS; customer heard over {len(cw)} "
          f"windows: {customer_levels} dBFS")
    assert len(aw) >= 30 and len(cw) >= 15, (len(aw), len(cw))
    assert agent_levels[CUSTOMER_HZ] > HEARD_DB and agent_levels[AGENT_HZ] < ABSENT_DB, agent_levels
    assert customer_levels[AGENT_HZ] > HEARD_DB and customer_levels[CUSTOMER_HZ] < ABSENT_DB, customer_levels

    # The prompt played before the digits: speech-level audio in its first seconds.
    pw = windows_between(customer_heard, 0, prompt.length * 1000 + 500)
    loud = sum(1 for w in pw if w["rms_dbfs"] > -40) / max(len(pw), 1)
    print(f"customer heard the prompt: {loud:.0%} of {len(pw)} windows above -40 dBFS")
    assert loud >= 0.4, [w["rms_dbfs"] for w in pw]

    # The agent's keypad 9 went out as RFC 4733 and the server relayed it to the customer, whose
    # browser plays received telephone-events as the tone pair.
    assert step(report, "agent-digits") == "9"
    dw = windows_between(customer_heard, dtmf_at, customer_heard["seconds"] * 1000)
    pair = max((min(w["tones"][str(f)] for f in DTMF_9) for w in dw), default=-120)
    before = max(min(w["tones"][str(f)] for f in DTMF_9) for w in cw)
    print(f"customer heard the agent's 9: strongest 852+1477 Hz window {pair} dBFS "
          f"(before the digit: {before} dBFS)")
    assert pair > -35 and before < ABSENT_DB, (pair, before)

    # Hold and resume: the server answered both re-INVITEs with 200 and an SDP (the agent's SIP
    # trace), the customer heard no agent while held and the agent again once resumed.
    trace = (workdir / "agent-ws.log").read_text(errors="replace")
    frames = re.split(r"^\d+ ms \[\w+\] (?=>>> sent|<<< received)", trace, flags=re.M)
    sent_invites = [f for f in frames if f.startswith(">>> sent\nINVITE ")]
    held_offer = [f for f in sent_invites if "a=sendonly" in f]
    answers = [f for f in frames if f.startswith("<<< received\nSIP/2.0 200 OK")
               and re.search(r"^CSeq: \d+ INVITE", f, flags=re.M) and "\nv=0" in f]
    print(f"agent trace: {len(sent_invites)} re-INVITEs sent, {len(held_offer)} with a=sendonly, "
          f"{len(answers)} 200 OK with SDP to them ({sum('a=recvonly' in f for f in answers)} recvonly)")
    assert len(sent_invites) == 2 and len(held_offer) == 1 and len(answers) == 2, (
        len(sent_invites), len(held_offer), len(answers))
    assert sum("a=recvonly" in f for f in answers) == 1, answers
    hold_at = step(report, "customer-hold-at") - customer_heard["started_at"]
    resume_at = step(report, "customer-resume-at") - customer_heard["started_at"]
    held = windows_between(customer_heard, hold_at + 1000, resume_at)
    resumed = windows_between(customer_heard, resume_at + 1200, customer_heard["seconds"] * 1000)
    held_level, resumed_level = median_tone(held, AGENT_HZ), median_tone(resumed, AGENT_HZ)
    print(f"customer heard the agent at {held_level} dBFS on hold ({len(held)} windows), "
          f"{resumed_level} dBFS resumed ({len(resumed)} windows)")
    assert len(held) >= 8 and len(resumed) >= 8, (len(held), len(resumed))
    assert held_level < ABSENT_DB and resumed_level > HEARD_DB, (held_level, resumed_level)

    # The calls ended (the agent hung up, the app's action hung up the customer) and the
    # dual-channel recording holds the customer on the left, the agent on the right.
    parent = twilio_client.calls(parent_sid).fetch()
    child = twilio_client.calls(child_sid).fetch()
    print("calls:", (parent.sid, parent.status, parent.duration), (child.sid, child.status, child.duration,
                                                                   child._from, child.to))
    assert parent.status == "completed" and child.status == "completed", (parent.status, child.status)
    assert child.to == f"client:{AGENT}" and child.parent_call_sid == parent_sid, (child.to, child.parent_call_sid)
    after = webhook.wait_for("/after")[0].params
    assert after.get("DialCallStatus") == "completed" and after.get("DialCallSid") == child_sid, after
    recs = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recs = [r for r in twilio_client.calls(parent_sid).recordings.list() if r.status == "completed"]
        if recs:
            break
        time.sleep(0.3)
    assert len(recs) == 1 and recs[0].channels == 2 and recs[0].source == "DialVerb", \
        [(r.sid, r.status, r.channels, r.source) for r in recs]
    wav = dialtone.get(dialtone.api(f"/Recordings/{recs[0].sid}.wav"))
    assert wav.status_code == 200, wav.status_code
    (workdir / "dial-recording.wav").write_bytes(wav.content)
    channel_levels = {}
    for channel in (1, 2):
        mono = workdir / f"recording-channel{channel}.wav"
        subprocess.run(["sox", str(workdir / "dial-recording.wav"), str(mono), "remix", str(channel)],
                       check=True)
        samples = audio.samples(mono)
        # From 1 s after the answer until the hold (3.5 s bridged, the digit, then hold).
        channel_levels[channel] = tones.levels(tones.window(samples, 1.0, 4.5),
                                               {"customer": CUSTOMER_HZ, "agent": AGENT_HZ})
    print(f"recording {recs[0].sid}: {recs[0].duration} s, channel levels {channel_levels}")
    assert int(recs[0].duration) >= 4, recs[0].duration
    assert channel_levels[1]["customer"] > HEARD_DB and channel_levels[1]["agent"] < ABSENT_DB, channel_levels
    assert channel_levels[2]["agent"] > HEARD_DB and channel_levels[2]["customer"] < ABSENT_DB, channel_levels

    # The console lists the call it took.
    history = step(report, "history")
    print("recent calls on the console:", history)
    assert any(r.get("To") == f"client:{AGENT}" and r.get("Status") == "completed" for r in history), history
    for shot in ("agent-ringing.png", "agent-in-call.png", "customer-in-call.png", "agent-after-call.png"):
        assert (workdir / shot).stat().st_size > 1000, shot
    assert report["ok"], report["error"]


BAD_TOKEN_JS = """(async () => {
  const tokens = %s;
  const out = {};
  const settle = (p, ms) => Promise.race([p, new Promise((r) => setTimeout(() => r('timeout'), ms))]);
  for (const [name, token] of Object.entries(tokens)) {
    const result = {};
    // register()
    let device = new Dialtone.Device(token);
    let errors = [];
    device.on('error', (e) => errors.push(e.code));
    result.register = await settle(device.register().then(() => 'registered', (e) => e.code), 8000);
    result.register_errors = errors;
    result.state = device.state;
    device.destroy();
    // connect()
    device = new Dialtone.Device(token);
    errors = [];
    device.on('error', (e) => errors.push(e.code));
    try {
      const call = await device.connect({ params: {} });
      result.connect = await settle(new Promise((resolve) => {
        call.on('error', (e) => resolve(e.code));
        call.on('accept', () => { result.accepted = true; });
        call.on('disconnect', () => resolve('disconnected'));
      }), 8000);
    } catch (e) {
      result.connect = 'threw ' + e.code;
    }
    result.connect_errors = errors;
    result.accepted = !!result.accepted;
    device.destroy();
    out[name] = result;
  }
  return out;
})()"""


def test_bad_tokens_are_refused_with_their_codes(dialtone, webhook, twilio_client, workdir):
    account = twilio_client.api.v2010.account
    key = account.new_keys.create(friendly_name="tokens")
    voice = webhook.route("/voice", "<Response><Say>Goodbye.</Say><Hangup/></Response>")
    app = account.applications.create(friendly_name="call us", voice_url=voice, voice_method="POST")
    sub = twilio_client.api.v2010.accounts.create(friendly_name="another account")
    sub_key = twilio_client.api.v2010.accounts(sub.sid).new_keys.create(friendly_name="sub key")
    gone = account.new_keys.create(friendly_name="deleted key")

    sid, now = dialtone.account_sid, int(time.time())
    good = {"identity": "visitor", "app_sid": app.sid, "incoming": True}

    forged = types.SimpleNamespace(sid=key.sid, secret="not-the-secret-" + key.secret[::-1])

    tokens = {
        "good": mint(sid, key, **good),
        "expired": mint(sid, key, **good, nbf=now - 7200, ttl=-3600),
        "not-yet-valid": mint(sid, key, **good, nbf=now + 3600, ttl=7200),
        "forged": mint(sid, forged, **good),
        # Another account's key speaking for this account, and a made-up account.
        "sub-key-for-parent": mint(sid, sub_key, **good),
        "made-up-account": mint("AC" + "fe" * 16, key, **good),
        "deleted-key": mint(sid, gone, **good),
    }
    assert account.keys(gone.sid).delete()
    expected = {"expired": 20104, "not-yet-valid": 20105, "forged": 20107, "sub-key-for-parent": 20103,
                "made-up-account": 20103, "deleted-key": 20103}
    report = run_browser(workdir, {"page": None}, [
        {"do": "open", "url": f"{dialtone.http_url}/call"},
        {"do": "wait_for", "js": "window.Dialtone && window.Dialtone.Device"},
        {"do": "eval", "name": "tokens", "js": BAD_TOKEN_JS % json.dumps(tokens), "timeout_ms": 90000},
    ], timeout=110, name="tokens")
    results = step(report, "tokens")
    for name, r in results.items():
        print(f"{name:20} {r}")
    assert results["good"]["register"] == "registered" and results["good"]["register_errors"] == [], results["good"]
    # The good token's call reached the app, which hung up.
    assert results["good"]["connect"] == "disconnected" and results["good"]["accepted"], results["good"]
    assert len(webhook.received("/voice")) == 1, [r.params for r in webhook.received("/voice")]
    for name, code in expected.items():
        r = results[name]
        assert r["register"] == code and r["register_errors"] == [code] and r["state"] == "unregistered", (name, r)
        assert r["connect"] == code and r["connect_errors"] == [code] and not r["accepted"], (name, r)
    # Each refusal on the wire: a 403 with X-Dialtone-Error, twice per bad token.
    trace = (workdir / "page-ws.log").read_text()
    for code in set(expected.values()):
        n = trace.count(f"X-Dialtone-Error: {code} ")
        assert n == 2 * sum(1 for c in expected.values() if c == code), (code, n)


def test_update_token_during_a_call(dialtone, webhook, twilio_client, workdir, audio_tools, request):
    account = twilio_client.api.v2010.account
    key = account.new_keys.create(friendly_name="short tokens")
    tone = tones.make_tone(workdir / "hold-800.wav", 800, 5)
    # The audio comes from a plain file server: media fetches are not webhooks (not signed).
    files = Webhook()
    request.addfinalizer(files.close)
    files.route("/hold.wav", lambda req: (200, tone.read_bytes(), "audio/wav"))
    voice = webhook.route("/voice", '<Response><Say>Please hold.</Say>'
                                    f'<Play loop="0">{files.url("/hold.wav")}</Play></Response>')
    app = account.applications.create(friendly_name="hold line", voice_url=voice, voice_method="POST")
    mic = tones.make_tone(workdir / f"mic-{CUSTOMER_HZ}.wav", CUSTOMER_HZ, 30)
    # The customer's Device registers too (incoming allowed), so the new token's re-REGISTER shows.
    first = mint(dialtone.account_sid, key, "customer", app_sid=app.sid, incoming=True, ttl=40)
    first_exp = json.loads(_b64(first.split(".")[1]))["exp"]
    second = mint(dialtone.account_sid, key, "customer", app_sid=app.sid, incoming=True, ttl=600)
    watch = """(() => {
      const d = window.dialtonePage.device;
      window.__events = [];
      for (const e of ['tokenWillExpire', 'tokenExpired', 'error', 'unregistered', 'registered'])
        d.on(e, (x) => window.__events.push({e, code: x && x.code, at: Date.now()}));
      d.on('tokenWillExpire', () => {
        window.__events.push({e: 'updateToken', at: Date.now(),
                              result: String(d.updateToken(%s))});
      });
      return d.register().then(() => d.state);
    })()""" % json.dumps(second)
    steps = [
        {"do": "open", "url": f"{dialtone.http_url}/call?token={urllib.parse.quote(first)}"},
        {"do": "wait_for", "selector": "#call:not([disabled])"},
        {"do": "eval", "name": "registered", "js": watch},
        {"do": "click", "selector": "#call"},
        {"do": "wait_state", "state": "in-call", "timeout_ms": 15000},
        {"do": "eval", "name": "call-sid", "js": "window.dialtonePage.call.parameters.CallSid"},
        {"do": "record_start", "name": "rec", "freqs": [800, CUSTOMER_HZ],
         "expr": "window.dialtonePage.call.getRemoteStream()"},
        # Until 12 s past the first token's expiry (tokenWillExpire comes 10 s before it).
        {"do": "wait_for", "js": f"Date.now() / 1000 > {first_exp + 12}", "timeout_ms": 55000},
        {"do": "eval", "name": "state", "js": "({call: window.dialtonePage.call && window.dialtonePage.call.status(), "
                                              "device: window.dialtonePage.device.state, "
                                              "page: document.body.dataset.state, events: window.__events, "
                                              "token_is_new: window.dialtonePage.device.token === %s})"
                                              % json.dumps(second)},
        {"do": "record_stop", "of": "rec", "wav": "heard.wav", "name": "heard"},
        {"do": "screenshot", "file": "customer-after-expiry.png"},
        {"do": "click", "selector": "#hangup"},
        {"do": "wait_state", "state": "ended", "timeout_ms": 10000},
    ]
    run = BrowserRun(workdir, {"customer": mic}, steps, timeout=80, name="customer").start()
    # 10 s after the first token expired, the call is still up in the Calls API.
    while time.time() < first_exp + 10:
        if run.proc.poll() is not None:
            break
        time.sleep(0.5)
    calls = twilio_client.calls.list()
    registered = registrations(dialtone).get("customer", {})
    report = run.finish()
    print("at exp+10 s:", [(x.sid, x.status, x._from) for x in calls], "registration:", registered)
    assert step(report, "registered") == "registered"
    sid = step(report, "call-sid")
    assert [(x.sid, x.status) for x in calls] == [(sid, "in-progress")], [(x.sid, x.status) for x in calls]
    assert registered, "the customer's registration was gone after the first token expired"

    state = step(report, "state")
    events = state["events"]
    print("page at exp+12 s:", {k: v for k, v in state.items() if k != "events"})
    for e in events:
        print(f"  {e['e']:16} {e.get('code')} at exp{(e['at'] / 1000 - first_exp):+.1f} s {e.get('result', '')}")
    names = [e["e"] for e in events]
    assert names.count("tokenWillExpire") == 1 and "updateToken" in names, names
    will = next(e for e in events if e["e"] == "tokenWillExpire")
    assert -12 < will["at"] / 1000 - first_exp < -8, will
    assert "tokenExpired" not in names and "error" not in names and "unregistered" not in names, events
    assert state == {**state, "call": "open", "device": "registered", "page": "in-call", "token_is_new": True}, state

    # The re-REGISTER carried the new token and was accepted.
    frames = re.split(r"^\d+ ms \[\w+\] (>>> sent|<<< received)\n", (workdir / "customer-ws.log").read_text(),
                      flags=re.M)
    frames = list(zip(frames[1::2], frames[2::2]))
    registers = [m for way, m in frames if way == ">>> sent" and m.startswith("REGISTER ")]
    with_new = [m for m in registers if f"Authorization: Bearer {second}" in m]
    assert len(registers) >= 2 and with_new, [m.splitlines()[0] for m in registers]
    accepted = [m for way, m in frames if way == "<<< received" and m.startswith("SIP/2.0 200")
                and re.search(r"^CSeq: \d+ REGISTER", m, re.M)]
    print(f"{len(registers)} REGISTERs, {len(with_new)} with the new token; {len(accepted)} answered 200")
    assert len(accepted) == len(registers), (len(accepted), len(registers))

    # The hold music kept arriving past the first token's expiry.
    heard = step(report, "heard")
    last = heard["windows"][-50:]
    level = median_tone(last, 800)
    print(f"the last {len(last)} windows (to exp+12 s): 800 Hz at {level} dBFS median")
    assert level > HEARD_DB, [w["tones"]["800"] for w in last]
    call = twilio_client.calls(sid).fetch()
    assert call.status == "completed" and int(call.duration) >= 40 - 5, (call.status, call.duration)


def _b64(part: str) -> str:
    import base64
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode()
