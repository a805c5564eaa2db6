"""Calls priced from a `[pricing]` rate table, with real peers: billing starts at answer, so an
outbound call answered after 10 s of ringing (pjsua2 sends 180, then 200) and hung up 65 s later
costs 0.10 at 5 cents a minute with per-minute rounding and 0.0542 with per-second rounding; a
call the callee refuses costs 0; an inbound call of 5 s costs one minute at 1 cent. Read back
through the official twilio SDK (`price`, `price_unit`, `duration`), and summed by the Usage
Records API per category: the outbound calls are a subaccount's, the inbound one its parent's, so
the parent's records include the child's unless asked not to. The subaccount's 5-cent rate comes
from the rate table its parent set through the API (the node's own is 9 cents)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests
from twilio.rest import Client

from conftest import SIGNED_REQUESTS
from peers import PEERS, finish_pjsua2
from server import DialtoneServer
from webhook import Webhook

PAUSE = '<Response><Pause length="120"/></Response>'
NUMBER = "+15550100200"


def uas(workdir: Path, sip_port: int, rtp_port: int, ring: float = 0.0, busy: bool = False,
        duration: float = 65.0) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--listen", "--user", "callee",
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port), "--duration", str(duration),
           "--timeout", "120", "--log", str(workdir / "pjsua2.log"),
           "--result", str(workdir / "pjsua2.json")]
    if ring:
        cmd += ["--ring", str(ring)]
    if busy:
        cmd.append("--busy")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def priced_server(dialtone_binary, workdir: Path, ports, rounding: str,
                  trunks: dict[str, int], outbound: str = "0.05") -> DialtoneServer:
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "dialtone.toml"
    cfg.write_text(
        f'[pricing]\nrounding = "{rounding}"\ninbound = {{ local = "0.01" }}\n'
        f'outbound = {{ "+1" = "0.013", "+1555" = "{outbound}", "+1556" = "0.05" }}\n\n'
        + "".join(f'[[trunks]]\nname = "t{i}"\nuri = "sip:127.0.0.1:{port}"\nprefixes = ["{prefix}"]\n\n'
                  for i, (prefix, port) in enumerate(trunks.items())))
    wrapper = workdir / "dialtone-serve.sh"
    wrapper.write_text(f'#!/bin/sh\nexec "{dialtone_binary}" serve --config "{cfg}"\n')
    wrapper.chmod(0o755)
    return DialtoneServer(wrapper, workdir, ports).start()


def client_of(server: DialtoneServer) -> Client:
    client = Client(server.account_sid, server.auth_token)
    client.api.base_url = server.http_url
    return client


def wait_final(client: Client, sid: str, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        call = client.calls(sid).fetch()
        if call.status in ("completed", "busy", "failed", "no-answer", "canceled"):
            return call
        assert time.monotonic() < deadline, f"call {sid} still {call.status}"
        time.sleep(0.5)


def test_calls_are_billed_from_answer_per_minute_and_per_second(dialtone_binary, workdir, ports):
    answering_a, answering_b, refusing = ports.port(), ports.port(), ports.port()
    peers = [
        uas(workdir / "uas-minute", answering_a, ports.block(20)[0], ring=10),
        uas(workdir / "uas-second", answering_b, ports.block(20)[0], ring=10),
        uas(workdir / "uas-busy", refusing, ports.block(20)[0], busy=True),
    ]
    # The node's own rate to +1555 is 9 cents: the subaccount's 5 come from its rate table.
    per_minute = priced_server(dialtone_binary, workdir / "minute", ports, "per-minute",
                               {"+1555": answering_a, "+1556": refusing}, outbound="0.09")
    per_second = priced_server(dialtone_binary, workdir / "second", ports, "per-second",
                               {"+1555": answering_b})
    caller = None
    hook = Webhook(on_request=lambda r: SIGNED_REQUESTS.append((per_minute.auth_token, r)))
    try:
        time.sleep(1.5)  # the peers bind their ports
        for p in peers:
            assert p.poll() is None, p.communicate()
        a, b = client_of(per_minute), client_of(per_second)
        sub = a.api.accounts.create(friendly_name="child")
        child = Client(sub.sid, sub.auth_token)
        child.api.base_url = per_minute.http_url
        # The parent sets its subaccount's rates (a Dialtone extension); the child may not.
        table_url = f"{per_minute.http_url}/2010-04-01/Accounts/{sub.sid}/RateTable.json"
        rates = {"Rounding": "per-minute", "OutboundRate": ["+1555=0.05", "+1556=0.05"]}
        r = requests.post(table_url, data=rates, auth=(per_minute.account_sid, per_minute.auth_token), timeout=10)
        assert r.status_code == 200 and r.json()["outbound"] == {"+1555": "0.05", "+1556": "0.05"}, r.text
        r = requests.post(table_url, data=rates, auth=(sub.sid, sub.auth_token), timeout=10)
        assert r.status_code == 403 and r.json()["code"] == 20403, r.text
        started = time.monotonic()
        minute_call = child.calls.create(to="+15550009999", from_="+15550001111", twiml=PAUSE)
        second_call = b.calls.create(to="+15550009999", from_="+15550001111", twiml=PAUSE)
        refused = child.calls.create(to="+15560009999", from_="+15550001111", twiml=PAUSE)

        # Inbound: pjsua2 calls one of the account's numbers for 5 s.
        r = requests.post(per_minute.api("/IncomingPhoneNumbers.json"),
                          auth=(per_minute.account_sid, per_minute.auth_token), timeout=10,
                          data={"PhoneNumber": NUMBER, "VoiceUrl": hook.route("/voice", PAUSE)})
        assert r.status_code == 201, r.text
        inbound_dir = workdir / "caller"
        inbound_dir.mkdir()
        caller = subprocess.Popen(
            [sys.executable, str(PEERS / "pjsua2_caller.py"),
             "--uri", f"sip:{NUMBER}@127.0.0.1:{per_minute.sip_port}",
             "--sip-port", str(ports.port()), "--rtp-port", str(ports.block(20)[0]),
             "--duration", "5", "--timeout", "30", "--result", str(inbound_dir / "pjsua2.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        refused = wait_final(child, refused.sid, 30)
        assert refused.status == "busy", refused.status
        assert refused.price == "0.0000" and refused.price_unit == "USD", refused.price

        report = finish_pjsua2(caller, inbound_dir, 40)
        caller = None
        assert report["confirmed_at"] is not None and report["hangup_by"] == "local", report
        inbound = wait_final(a, a.calls.list(to=NUMBER, limit=1)[0].sid, 20)
        assert inbound.direction == "inbound" and inbound.status == "completed", inbound.status
        assert 4 <= int(inbound.duration) <= 6, inbound.duration
        assert inbound.price == "-0.0100", inbound.price

        minute_call = wait_final(child, minute_call.sid, 120)
        second_call = wait_final(b, second_call.sid, 120)
        elapsed = time.monotonic() - started
        for call in (minute_call, second_call):
            assert call.status == "completed", call.status
            # 10 s of ringing are not in the duration (and not billed).
            assert int(call.duration) == 65, call.duration
        assert elapsed >= 74, elapsed
        assert minute_call.price == "-0.1000", minute_call.price
        assert second_call.price == "-0.0542", second_call.price
        for dir_ in ("uas-minute", "uas-second"):
            report = finish_pjsua2(peers.pop(0), workdir / dir_, 20)
            assert report.get("answered_after_ring") == 10, report
            assert report["hangup_by"] == "local", report

        # Usage: since yesterday (UTC), so a run across midnight still sees every call.
        def usage(client, **kw):
            records = client.usage.records.list(start_date="-1days", **kw)
            # The SDK reads the JSON number as a Decimal of the float it parsed.
            return {r.category: (int(r.count), int(r.usage), round(float(r.price), 4)) for r in records}
        mine = usage(child)
        # The refused call was never answered: it is not billed, nor counted.
        assert mine["calls-outbound"] == (1, 2, 0.1), mine
        assert mine["calls"] == (1, 2, 0.1), mine
        assert mine["calls-inbound"] == (0, 0, 0.0), mine
        family = usage(a)
        assert family["calls-outbound"] == (1, 2, 0.1), family
        assert family["calls-inbound"] == (1, 1, 0.01), family
        assert family["calls"] == (2, 3, 0.11), family
        alone = usage(a, include_subaccounts=False)
        assert alone["calls"] == (1, 1, 0.01), alone
        daily = a.usage.records.daily.list(category="calls", start_date="-1days")
        assert len(daily) == 2 and sum(int(r.count) for r in daily) == 2, [r.start_date for r in daily]
        assert [r.category for r in b.usage.records.today.list(category="calls-outbound")] == ["calls-outbound"]
    finally:
        hook.close()
        for p in peers + ([caller] if caller else []):
            if p.poll() is None:
                p.kill()
            p.communicate()
        codes = [per_minute.stop(), per_second.stop()]
    assert codes == [0, 0], f"dialtone exited {codes}:\n{per_minute.log_tail(40)}\n{per_second.log_tail(40)}"
