"""Call queues with real peers: three pjsua2 callers `<Enqueue>` in order and hear the waitUrl's
audio (a tone, measured) while the waitUrl is requested with their QueuePosition; an agent
(baresip) dials `<Queue>` and gets the first caller, with audio crossing both ways (each side's
recording holds the other's tone); the Members API shows the positions, a Member update on `Front`
moves the next caller into other TwiML, a caller who hangs up leaves the queue, and the `action`
of each `<Enqueue>` receives its QueueResult. A second test covers `maxSize` (queue-full),
`<Leave>` (leave) and an unusable waitUrl (error)."""

from __future__ import annotations

import time

import requests

from conftest import NUMBER
import audio
import tones
from peers import BaresipPeer, finish_pjsua2, start_pjsua2
from webhook import Webhook

CALLER_HZ = {"a": 500.0, "b": 900.0, "c": 1300.0}
AGENT_HZ = 1700.0
WAIT_HZ = 2200.0
USERS = {"a": "+15550000001", "b": "+15550000002", "c": "+15550000003"}
AGENT_NUMBER = "+15550003333"
HEARD_DB = -38.0
SILENT_DB = -55.0


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def by_caller(requests_, user: str):
    return [r for r in requests_ if r.params.get("From", "").lstrip("+") == user.lstrip("+")]


def test_queue_positions_wait_audio_agent_bridge_members_and_results(
        dialtone, webhook, provision, twilio_client, ports, workdir, audio_tools):
    wait_tone = tones.make_tone(workdir / "wait.wav", WAIT_HZ, 2, volume=0.3).read_bytes()
    # The audio file comes from a plain file server (media fetches are not webhooks).
    files = Webhook()
    files.route("/wait.wav", lambda req: (200, wait_tone, "audio/wav"))
    provision({
        "/enqueue": '<Response><Enqueue waitUrl="/wait" action="/left">support</Enqueue></Response>',
        "/wait": f'<Response><Play>{files.url("/wait.wav")}</Play></Response>',
        "/left": "<Response><Hangup/></Response>",
        "/moved": "<Response><Say>You were moved</Say><Hangup/></Response>",
    })
    twilio_client.incoming_phone_numbers.create(
        phone_number=AGENT_NUMBER,
        voice_url=webhook.route("/agent", '<Response><Dial><Queue url="/whisper">support</Queue></Dial></Response>'))
    webhook.route("/whisper", "<Response><Say>Connecting you now</Say></Response>")
    mics = {k: tones.make_tone(workdir / f"tone-{k}.wav", f, 60) for k, f in CALLER_HZ.items()}
    agent_mic = tones.make_tone(workdir / "agent.wav", AGENT_HZ, 60)
    uri = f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}"

    procs, started = {}, {}
    # c hangs up by itself while it still waits.
    durations = {"a": 30, "b": 30, "c": 9}
    for k in ("a", "b", "c"):
        started[k] = time.monotonic()
        procs[k] = start_pjsua2(workdir / f"pjsua2-{k}", uri=uri, sip_port=ports.port(),
                                rtp_port=ports.block(100)[0], play=mics[k],
                                record=workdir / f"heard-{k}.wav", dtmf=[], duration=durations[k],
                                timeout=40, transport="udp", user=USERS[k])
        # In this order: each is enqueued before the next calls.
        wait_until(lambda: by_caller(webhook.received("/wait"), USERS[k]), 10, f"{k}'s waitUrl")

    queue = wait_until(lambda: [q for q in twilio_client.queues.list() if q.friendly_name == "support"],
                       5, "the queue")[0]
    members = twilio_client.queues(queue.sid).members.list()
    assert [m.position for m in members] == [1, 2, 3], [(m.call_sid, m.position) for m in members]
    sids = {}
    for m in members:
        caller = twilio_client.calls(m.call_sid).fetch()._from
        sids[next(k for k, u in USERS.items() if u.lstrip("+") in caller)] = m.call_sid
    assert [sids[k] for k in "abc"] == [m.call_sid for m in members], (sids, members)
    fetched = twilio_client.queues(queue.sid).fetch()
    assert fetched.current_size == 3, fetched.current_size
    for k, position in (("a", "1"), ("b", "2"), ("c", "3")):
        first = by_caller(webhook.received("/wait"), USERS[k])[0].params
        assert first["QueuePosition"] == position, (k, first)
        assert first["QueueSid"] == queue.sid and first["CurrentQueueSize"] == position, (k, first)
        assert first["MaxQueueSize"] == str(fetched.max_size), first

    time.sleep(3)  # everyone hears the wait audio for a while
    wait_phase = time.monotonic()

    # The agent is a registered phone (digest credentials made through the SIP API).
    auth = (dialtone.account_sid, dialtone.auth_token)
    sip_api = dialtone.api("/SIP")
    r = requests.post(f"{sip_api}/CredentialLists.json", auth=auth, data={"FriendlyName": "agents"}, timeout=10)
    assert r.status_code == 201, r.text
    r = requests.post(f"{sip_api}/CredentialLists/{r.json()['sid']}/Credentials.json", auth=auth,
                      data={"Username": "agent", "Password": "Agent-Pass-1234"}, timeout=10)
    assert r.status_code == 201, r.text
    agent = BaresipPeer(workdir / "baresip-agent", agent_mic, sip_port=ports.port(),
                        ctrl_port=ports.port(), rtp_ports=ports.block(100), user="agent")
    (agent.confdir / "accounts").write_text(
        f"<sip:agent@127.0.0.1:{dialtone.sip_port};transport=udp>;auth_pass=Agent-Pass-1234;regint=60;"
        f"answermode=auto;audio_codecs=PCMU,PCMA\n")
    agent.start()
    try:
        wait_until(lambda: "available" in str(dialtone.get(dialtone.api("/SIP/Registrations.json")).json()),
                   10, "the agent's registration")
        agent.dial(f"sip:{AGENT_NUMBER.lstrip('+')}@127.0.0.1:{dialtone.sip_port}")
        assert agent.wait_event("CALL_ESTABLISHED", timeout=10) is not None, agent.ctl.events()
        agent_connected = time.monotonic()
        whisper = webhook.wait_for("/whisper", timeout=10)[0].params
        assert whisper["DequeingCallSid"] == twilio_client.calls.list(to=AGENT_NUMBER)[0].sid, whisper
        assert whisper["QueueSid"] == queue.sid and whisper["CallSid"] == sids["a"], whisper
        wait_until(lambda: [m.position for m in twilio_client.queues(queue.sid).members.list()] == [1, 2],
                   5, "a taken from the queue")
        time.sleep(5)  # the bridge: a and the agent hear each other
        bridge_phase = (time.monotonic() - 3.5, time.monotonic() - 0.5)

        # The Members API moves the front caller (b) into other TwiML.
        moved = twilio_client.queues(queue.sid).members("Front").update(
            url=webhook.url("/moved"), method="POST")
        assert moved.call_sid == sids["b"], (moved.call_sid, sids)
        moved_req = webhook.wait_for("/moved", timeout=10)[0]
        assert moved_req.params["CallSid"] == sids["b"]
        # c gives up while waiting (its own hang-up at 9 s).
        report_c = finish_pjsua2(procs.pop("c"), workdir / "pjsua2-c", 20)
        assert report_c["hangup_by"] == "local", report_c
        wait_until(lambda: not twilio_client.queues(queue.sid).members.list(), 10, "an empty queue")
        assert twilio_client.queues(queue.sid).fetch().current_size == 0
        agent.hangup()
    finally:
        agent.stop()
        files.close()
    reports = {k: finish_pjsua2(p, workdir / f"pjsua2-{k}", 40) for k, p in procs.items()}
    assert reports["a"]["hangup_by"] == "remote", reports["a"]  # /left hangs up after the bridge
    assert reports["b"]["hangup_by"] == "remote", reports["b"]  # /moved hangs up

    left = {r.params["CallSid"]: r.params for r in webhook.wait_for("/left", timeout=10, count=3)}
    assert left[sids["a"]]["QueueResult"] == "bridged", left[sids["a"]]
    assert left[sids["b"]]["QueueResult"] == "redirected", left[sids["b"]]
    assert left[sids["c"]]["QueueResult"] == "hangup", left[sids["c"]]
    assert int(left[sids["a"]]["QueueTime"]) >= 3, left[sids["a"]]
    assert all(p["QueueSid"] == queue.sid for p in left.values())
    # The two legs of the dequeue started on different media workers: one moved to the other's.
    assert dialtone.log_lines("media stream moves to another worker"), "no leg crossed workers"

    # What was heard: the wait tone while waiting; across the bridge each other's tone.
    heard_a = audio.samples(workdir / "heard-a.wav")
    origin_a = started["a"] + reports["a"]["confirmed_at"]
    waiting = tones.window(heard_a, wait_phase - origin_a - 2.5, wait_phase - origin_a - 0.5)
    assert tones.level_db(waiting, WAIT_HZ) > HEARD_DB, tones.levels(waiting, {"wait": WAIT_HZ})
    bridged = tones.window(heard_a, bridge_phase[0] - origin_a, bridge_phase[1] - origin_a)
    levels_a = tones.levels(bridged, {"agent": AGENT_HZ, "wait": WAIT_HZ})
    assert levels_a["agent"] > HEARD_DB and levels_a["wait"] < SILENT_DB, levels_a
    heard_agent = audio.samples(agent.recordings("dec")[0])
    at = tones.window(heard_agent, bridge_phase[0] - agent_connected, bridge_phase[1] - agent_connected)
    levels_agent = tones.levels(at, {"a": CALLER_HZ["a"], "b": CALLER_HZ["b"]})
    assert levels_agent["a"] > HEARD_DB and levels_agent["b"] < SILENT_DB, levels_agent
    heard_b = audio.samples(workdir / "heard-b.wav")
    origin_b = started["b"] + reports["b"]["confirmed_at"]
    b_waiting = tones.window(heard_b, wait_phase - origin_b - 2.5, wait_phase - origin_b - 0.5)
    assert tones.level_db(b_waiting, WAIT_HZ) > HEARD_DB, "b did not hear the wait audio"


def test_queue_full_leave_and_unusable_wait_url(dialtone, webhook, provision, twilio_client, ports,
                                                workdir, audio_tools):
    tiny = twilio_client.queues.create(friendly_name="tiny", max_size=1)
    assert tiny.max_size == 1
    provision({
        "/voice": '<Response><Enqueue waitUrl="/hold" action="/result">tiny</Enqueue></Response>',
        "/hold": '<Response><Pause length="20"/></Response>',
        "/result": "<Response><Hangup/></Response>",
    })
    twilio_client.incoming_phone_numbers.create(
        phone_number="+15550004444",
        voice_url=webhook.route("/leaving", '<Response><Enqueue waitUrl="/leave-now" action="/result">other</Enqueue></Response>'))
    webhook.route("/leave-now", "<Response><Leave/></Response>")
    twilio_client.incoming_phone_numbers.create(
        phone_number="+15550005555",
        voice_url=webhook.route("/broken", '<Response><Enqueue waitUrl="/not-xml" action="/result">third</Enqueue></Response>'))
    webhook.route("/not-xml", "<Response><Say>unclosed")
    silence = audio.silence(workdir / "silence.wav", 20)

    def call(number: str, user: str, name: str, duration: float):
        return start_pjsua2(workdir / name, uri=f"sip:{number}@127.0.0.1:{dialtone.sip_port}",
                            sip_port=ports.port(), rtp_port=ports.block(100)[0], play=silence,
                            record=None, dtmf=[], duration=duration, timeout=30, transport="udp",
                            user=user)

    first = call(NUMBER, "+15550000001", "first", 8)
    wait_until(lambda: webhook.received("/hold"), 10, "the first caller waiting")
    second = call(NUMBER, "+15550000002", "second", 8)
    leaver = call("+15550004444", "+15550000003", "leaver", 8)
    broken = call("+15550005555", "+15550000004", "broken", 8)
    results = webhook.wait_for("/result", timeout=15, count=3)
    by_from = {r.params["From"].lstrip("+"): r.params for r in results}
    assert by_from["15550000002"]["QueueResult"] == "queue-full", by_from
    assert "QueueSid" not in by_from["15550000002"], by_from["15550000002"]
    assert by_from["15550000003"]["QueueResult"] == "leave", by_from
    assert by_from["15550000004"]["QueueResult"] == "error", by_from
    for name, proc in (("second", second), ("leaver", leaver), ("broken", broken)):
        r = finish_pjsua2(proc, workdir / name, 30)
        assert r["connected"] and r["hangup_by"] == "remote", (name, r)
    r = finish_pjsua2(first, workdir / "first", 30)
    assert r["connected"], r
    final = webhook.wait_for("/result", timeout=10, count=4)
    first_result = [p.params for p in final if p.params["From"].lstrip("+") == "15550000001"]
    assert first_result and first_result[0]["QueueResult"] == "hangup", first_result
