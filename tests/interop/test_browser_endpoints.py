"""The browser-facing HTTP endpoints without a browser: the agent console's sign-in (a SIP
credential made through the SDK; a token that works for `/console/calls`; wrong passwords refused
and, after the registrar's limit, the source blocked for the right password too), the recent-calls
endpoint's refusals, the files served, and the SIP WebSocket's refusal of an upgrade without the
`sip` subprotocol.
"""

from __future__ import annotations

import base64
import json
import socket

import requests

DOMAIN = "console.sip.dialtone.local"


def make_agent(client, username: str, password: str) -> None:
    sip = client.api.account.sip
    cl = sip.credential_lists.create(friendly_name="agents")
    sip.credential_lists(cl.sid).credentials.create(username=username, password=password)
    domain = sip.domains.create(domain_name=DOMAIN, friendly_name="agents")
    sip.domains(domain.sid).auth.registrations.credential_list_mappings.create(credential_list_sid=cl.sid)


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_console_sign_in_calls_and_guessing(dialtone, twilio_client):
    make_agent(twilio_client, "ann", "Agent-Secret-77")
    login = dialtone.http_url + "/console/login"

    ok = requests.post(login, data={"username": "ann", "password": "Agent-Secret-77", "domain": DOMAIN},
                       timeout=10)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["identity"] == "ann" and body["account_sid"] == dialtone.account_sid, body
    c = claims(body["token"])
    assert c["sub"] == dialtone.account_sid and c["grants"]["identity"] == "ann", c
    assert c["grants"]["voice"]["incoming"]["allow"] is True, c
    assert 3500 <= c["exp"] - c["nbf"] <= 3600, c
    # The console's signing key is a real API key of the account, listed with the others.
    keys = [k.friendly_name for k in twilio_client.api.v2010.account.keys.list()]
    assert keys.count("Dialtone agent console") == 1, keys
    # A second sign-in reuses it.
    again = requests.post(login, data={"username": "ann", "password": "Agent-Secret-77", "domain": DOMAIN},
                          timeout=10)
    assert again.status_code == 200
    assert [k.friendly_name for k in twilio_client.api.v2010.account.keys.list()].count(
        "Dialtone agent console") == 1

    calls = requests.get(dialtone.http_url + "/console/calls",
                         headers={"Authorization": f"Bearer {body['token']}"}, timeout=10)
    assert calls.status_code == 200 and calls.json()["calls"] == [], calls.text
    for bad, code in (("not.a.token", 20101), ("", 20101)):
        r = requests.get(dialtone.http_url + "/console/calls", headers={"Authorization": f"Bearer {bad}"},
                         timeout=10)
        assert r.status_code == 401 and r.json()["code"] == code, (bad, r.status_code, r.text)

    # Wrong passwords: 401 each time, then the source is blocked (429) even for the right one.
    statuses = [requests.post(login, data={"username": "ann", "password": f"guess-{i}", "domain": DOMAIN},
                              timeout=10).status_code for i in range(12)]
    print("wrong-password statuses:", statuses)
    assert statuses[0] == 401 and statuses[-1] == 429, statuses
    blocked = requests.post(login, data={"username": "ann", "password": "Agent-Secret-77", "domain": DOMAIN},
                            timeout=10)
    assert blocked.status_code == 429 and blocked.json()["code"] == 20429, blocked.text
    # Malformed sign-ins get a 4xx, not a crash.
    assert 400 <= requests.post(login, data={"username": "ann"}, timeout=10).status_code < 500
    assert not dialtone.log_lines(r"panicked")


def test_files_and_the_websocket_upgrade(dialtone):
    for path, kind in (("/js/dialtone.js", "javascript"), ("/call", "html"), ("/console", "html"),
                       ("/web/style.css", "css"), ("/web/console.js", "javascript")):
        r = requests.get(dialtone.http_url + path, timeout=10)
        assert r.status_code == 200 and kind in r.headers["content-type"], (path, r.status_code, r.headers)
    assert "Dialtone" in requests.get(dialtone.http_url + "/js/dialtone.js", timeout=10).text
    # Unknown paths fall to the API, which asks for credentials first.
    assert requests.get(dialtone.http_url + "/web/nope.js", timeout=10).status_code in (401, 404)

    def upgrade(protocol: str | None) -> str:
        with socket.create_connection(("127.0.0.1", dialtone.http_port), timeout=5) as s:
            lines = ["GET /sip HTTP/1.1", f"Host: 127.0.0.1:{dialtone.http_port}", "Upgrade: websocket",
                     "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                     "Sec-WebSocket-Version: 13"]
            if protocol:
                lines.append(f"Sec-WebSocket-Protocol: {protocol}")
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            return s.recv(4096).decode(errors="replace")

    refused = upgrade(None)
    assert refused.startswith("HTTP/1.1 400"), refused
    accepted = upgrade("sip")
    assert accepted.startswith("HTTP/1.1 101") and "sec-websocket-protocol: sip" in accepted.lower(), accepted
