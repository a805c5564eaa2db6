"""The registrar with real phones: baresip registers as `alice` with digest auth (credentials made
through the SIP API), the API lists alice as available with baresip's contact; a second baresip with
a wrong password gets no binding (it sees 401/403); alice unregistering makes her offline."""

from __future__ import annotations

import re
import time

import requests

import audio
from peers import BaresipPeer
from server import DialtoneServer

PASSWORD = "Correct-Horse-9"


def make_user(server: DialtoneServer, username: str, password: str) -> None:
    auth = (server.account_sid, server.auth_token)
    base = server.api("/SIP")
    r = requests.post(f"{base}/CredentialLists.json", auth=auth, data={"FriendlyName": "agents"}, timeout=10)
    assert r.status_code == 201, r.text
    cl = r.json()["sid"]
    r = requests.post(f"{base}/CredentialLists/{cl}/Credentials.json", auth=auth,
                      data={"Username": username, "Password": password}, timeout=10)
    assert r.status_code == 201, r.text
    assert password not in r.text


def registrations(server: DialtoneServer) -> dict[str, dict]:
    r = server.get(server.api("/SIP/Registrations.json"))
    assert r.status_code == 200, r.text
    return {u["username"]: u for u in r.json()["registrations"]}


def wait_for(server: DialtoneServer, pred, timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        regs = registrations(server)
        if pred(regs) or time.monotonic() > deadline:
            return regs
        time.sleep(0.2)


def registering_peer(workdir, server, ports, wav, user: str, password: str, name: str) -> BaresipPeer:
    peer = BaresipPeer(workdir / name, wav, sip_port=ports.port(), ctrl_port=ports.port(),
                       rtp_ports=ports.block(20), user=user)
    # The template does not register; this account does, every 60 s (the registrar's minimum).
    (peer.confdir / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{server.sip_port};transport=udp>;auth_pass={password};regint=60;"
        f"answermode=auto;audio_codecs=PCMU,PCMA\n")
    return peer


def test_registrar_digest_auth_presence_and_unregister(dialtone, ports, workdir, audio_tools):
    make_user(dialtone, "alice", PASSWORD)
    assert registrations(dialtone)["alice"]["presence"] == "offline"
    wav = audio.synthesize("hello", workdir / "prompt.wav", pad_before=0.5, pad_after=60)

    good = registering_peer(workdir, dialtone, ports, wav, "alice", PASSWORD, "good")
    bad = registering_peer(workdir, dialtone, ports, wav, "alice", "Wrong-Password-1", "bad")
    good.start()
    try:
        regs = wait_for(dialtone, lambda r: r["alice"]["presence"] == "available", 10)
        alice = regs["alice"]
        assert alice["presence"] == "available", f"{regs}\n{good.log()[-2000:]}"
        assert len(alice["contacts"]) == 1, alice
        contact = alice["contacts"][0]
        assert f"127.0.0.1:{good.sip_port}" in contact["contact"], contact
        assert contact["source"] == f"127.0.0.1:{good.sip_port}", contact
        assert 0 < contact["expires"] <= 60, contact

        bad.start()
        try:
            # baresip logs the final answer to its REGISTER.
            deadline = time.monotonic() + 10
            while not re.search(r"40[13]", bad.log()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert re.search(r"40[13]", bad.log()), bad.log()[-2000:]
            time.sleep(1)
            regs = registrations(dialtone)
            sources = [c["source"] for c in regs["alice"]["contacts"]]
            assert sources == [f"127.0.0.1:{good.sip_port}"], regs
            assert f"127.0.0.1:{bad.sip_port}" not in str(regs)
        finally:
            bad.stop()
        print("bad peer log tail:", bad.log()[-600:])

        # Unregister (Expires: 0): baresip sends it when it quits. The binding had up to 60 s
        # left, so offline within 10 s is the unregister, not the expiry.
        good.stop()
        regs = wait_for(dialtone, lambda r: r["alice"]["presence"] == "offline", 10)
        assert regs["alice"]["presence"] == "offline", f"{regs}\n{good.log()[-2000:]}"
        assert regs["alice"]["contacts"] == [], regs
    finally:
        good.stop()
