"""sipvicious against the server on loopback, with a real user `alice` registered: svmap finds the
server, svwar learns no extension, svcrack with a wordlist that lacks the password finds nothing,
and a pjsua2 call with Say/Gather in progress during the attack completes with the right digits."""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import threading

from conftest import CALLER, NUMBER
import audio
from peers import run_pjsua2
from server import require
from test_registrar import PASSWORD, make_user, registrations

VOICE = '<Response><Gather numDigits="3" action="/gathered"><Say>Please enter three digits</Say></Gather></Response>'


def run(cmd: list[str], timeout: float = 120) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.stdout + p.stderr


def guess(sock: socket.socket, port: int, user: str, password: str, seq: int) -> int:
    """One REGISTER answered with an MD5 digest of `password` (what svcrack does for MD5
    challenges, which this svcrack cannot reach: it dies on the SHA-256 challenge offered first).
    Returns the final status."""
    uri = f"sip:127.0.0.1:{port}"
    local = sock.getsockname()[1]

    def send(extra: str) -> tuple[int, str]:
        msg = (f"REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{seq}x{len(extra)}\r\n"
               f"From: <sip:{user}@127.0.0.1>;tag=g{seq}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
               f"Call-ID: guess-{seq}\r\nCSeq: {1 + len(extra) % 7} REGISTER\r\n"
               f"Contact: <sip:{user}@127.0.0.1:{local}>\r\n{extra}Content-Length: 0\r\n\r\n")
        sock.sendto(msg.encode(), ("127.0.0.1", port))
        data = sock.recv(65535).decode(errors="replace")
        return int(data.split(" ", 2)[1]), data

    status, resp = send("")
    if status != 401:
        return status
    md5 = [l for l in resp.split("\r\n") if l.startswith("WWW-Authenticate") and "MD5" in l][0]
    nonce = re.search(r'nonce="([^"]+)"', md5).group(1)
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1, ha2 = h(f"{user}:dialtone:{password}"), h(f"REGISTER:{uri}")
    response = h(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")
    auth = (f'Authorization: Digest username="{user}", realm="dialtone", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, cnonce="c0ffee", qop=auth, nc=00000001\r\n')
    return send(auth)[0]


def test_sipvicious_learns_nothing_and_calls_go_on(dialtone, webhook, provision, ports, workdir, audio_tools):
    for tool in ("svmap", "svwar", "svcrack"):
        require(tool)
    make_user(dialtone, "alice", PASSWORD)
    target = f"udp://127.0.0.1:{dialtone.sip_port}"
    provision({"/voice": VOICE, "/gathered": "<Response><Hangup/></Response>"})

    # svmap: finding a SIP server on a port is fine.
    out = run(["svmap", "-p", str(dialtone.sip_port), "127.0.0.1"])
    print("svmap:", out)
    assert "Dialtone" in out, out

    # A call in progress while the extension scan and the password guessing run.
    ref = audio.reference_speech("Please enter three digits", workdir)
    dtmf_at = round(ref.length + 2.0, 1)
    report: dict = {}

    def call() -> None:
        report.update(run_pjsua2(workdir / "call", uri=f"sip:{NUMBER}@127.0.0.1:{dialtone.sip_port}",
                                 sip_port=ports.port(), rtp_port=ports.block(100)[0],
                                 dtmf=[(dtmf_at, "427")], duration=dtmf_at + 10, timeout=dtmf_at + 20,
                                 user=CALLER))

    caller = threading.Thread(target=call)
    caller.start()

    names = workdir / "names.txt"
    names.write_text("\n".join(["100", "101", "admin", "bob", "alice", "carol", "1000", "test"]) + "\n")
    war = run(["svwar", "-d", str(names), target])
    print("svwar:", war)
    forced = run(["svwar", "--force", "-d", str(names), target])
    print("svwar --force:", forced)
    words = workdir / "words.txt"
    words.write_text("\n".join(["123456", "password", "alice", "Password123", "Correct-Horse-8",
                                "letmein", "qwerty", "1234", "secret", "alice123", "admin",
                                "Welcome1", "changeme", "Correct-Horse-10"]) + "\n")
    crack = run(["svcrack", "-u", "alice", "-d", str(words), target])
    print("svcrack:", crack)

    # Grinding passwords by hand (svcrack's method with MD5): 401 twice, then 403, and after ten
    # failures in a minute the source is refused even with the right password.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    statuses = [guess(sock, dialtone.sip_port, "alice", w, i) for i, w in enumerate(words.read_text().split())]
    unknown = guess(sock, dialtone.sip_port, "nobody", "Whatever-123", 100)
    right = guess(sock, dialtone.sip_port, "alice", PASSWORD, 101)
    sock.close()
    print("guesses:", statuses, "unknown user:", unknown, "right password while blocked:", right)
    assert statuses[:2] == [401, 401] and set(statuses[2:]) == {403}, statuses
    assert unknown == 403 and right == 403

    caller.join(timeout=dtmf_at + 40)
    assert not caller.is_alive(), "the pjsua2 call hung"

    # svwar: no extension learned. Without --force it stops at the sanity check (a made-up name
    # gets the same challenge as any other); with --force every name answers alike.
    assert not re.search(r"\|\s*alice\s*\|", war), war
    rows = dict(re.findall(r"\|\s*(\S+)\s*\|\s*(\S+)\s*\|", forced))
    rows.pop("Extension", None)
    assert len(set(rows.values())) <= 1, f"names answered differently: {rows}"
    # svcrack: nothing cracked, and the password never appears.
    assert not re.search(r"\|\s*alice\s*\|\s*\S+\s*\|", crack), crack
    assert PASSWORD not in crack
    assert "alice" in registrations(dialtone) and registrations(dialtone)["alice"]["contacts"] == []

    # The call went on undisturbed.
    assert report.get("connected"), report
    gathered = webhook.wait_for("/gathered", timeout=5)[0]
    assert gathered.params.get("Digits") == "427", gathered.params
    assert report["hangup_by"] == "remote", report
    blocked = dialtone.log_lines("REGISTER authentication failed")
    print(f"failed REGISTER attempts logged: {len(blocked)}")
