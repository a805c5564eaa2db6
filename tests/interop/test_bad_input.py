"""Bad input against the real binary, over raw HTTP (requests, and a plain socket where requests
would clean the path up): oversized and chunked bodies, wrong Content-Type, invalid UTF-8, unknown
parameters, wrong types, bad phone numbers, bad SIDs and path tricks. Every one is a Twilio-style
4xx JSON error {code, message, more_info, status} with a clear message; never a 5xx. Files: nothing
outside the data dir is read (a canary beside it never comes back) or written, and inside it only
the database changes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import requests

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BODY_LIMIT = 64 * 1024


def files(root: Path) -> dict[str, int]:
    """Every file under root, with its size; SQLite's own files are left out (they change)."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and ".db" not in p.name and not p.name.endswith(("-wal", "-shm", "-journal")):
            out[str(p.relative_to(root))] = p.stat().st_size
    return out


def raw_http(dialtone, request_line: str, headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, dict]:
    """One HTTP/1.1 request exactly as written (no path normalisation); (status, JSON body)."""
    auth = requests.auth._basic_auth_str(dialtone.account_sid, dialtone.auth_token)
    lines = [request_line, f"Host: 127.0.0.1:{dialtone.http_port}", f"Authorization: {auth}", "Connection: close"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    with socket.create_connection(("127.0.0.1", dialtone.http_port), timeout=15) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    reply = b"".join(chunks)
    head, _, payload = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    head_text = head.decode("latin-1").lower()
    if "transfer-encoding: chunked" in head_text:
        decoded, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        payload = decoded
    assert "content-type: application/json" in head_text, reply[:2000]
    return status, json.loads(payload)


def assert_error(status: int, body: dict, want_status: int, code: int, *fragments: str) -> None:
    assert status == want_status, (status, body)
    assert body["status"] == want_status, body
    assert body["code"] == code, body
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}", body
    for fragment in fragments:
        assert fragment in body["message"], (fragment, body)


def test_bad_input_gets_twilio_errors_and_touches_no_file(dialtone, workdir):
    auth = (dialtone.account_sid, dialtone.auth_token)
    numbers = dialtone.api("/IncomingPhoneNumbers.json")
    calls = dialtone.api("/Calls.json")
    canary = workdir / "canary.wav"
    canary.write_bytes(b"RIFF-canary-outside-the-data-dir")
    before_data = files(dialtone.data_dir)
    before_work = sorted(p.name for p in workdir.iterdir())

    def post(url, data, headers=FORM):
        r = requests.post(url, data=data, headers=headers, auth=auth, timeout=15)
        assert r.headers["Content-Type"] == "application/json", (r.status_code, r.text[:500])
        return r.status_code, r.json()

    # Oversized bodies: with a Content-Length, and chunked with none.
    big = b"PhoneNumber=%2B14155550100&FriendlyName=" + b"x" * BODY_LIMIT
    assert_error(*post(numbers, big), 413, 20001, "larger than 65536 bytes")
    chunked = iter([b"PhoneNumber=%2B14155550100&FriendlyName="] + [b"y" * 8192] * 10)
    assert_error(*post(numbers, chunked), 413, 20001, "larger than 65536 bytes")

    # Wrong Content-Type, invalid UTF-8 (percent-encoded and raw).
    assert_error(*post(numbers, b'{"PhoneNumber": "+14155550100"}', {"Content-Type": "application/json"}),
                 415, 20001, "application/x-www-form-urlencoded", "application/json")
    assert_error(*post(numbers, b"PhoneNumber=%2B14155550100&FriendlyName=%C3%28"), 400, 20001,
                 "FriendlyName is not valid UTF-8")
    assert_error(*post(numbers, b"PhoneNumber=%2B14155550100&FriendlyName=\xfe\xff"), 400, 20001,
                 "FriendlyName is not valid UTF-8")

    # Unknown parameters are named; Twilio's parameters this server does not act on are accepted.
    assert_error(*post(numbers, {"PhoneNumber": "+14155550100", "VoiceURL": "http://127.0.0.1:9/"}),
                 400, 20001, 'Unknown parameter "VoiceURL"')
    r = requests.get(calls, params={"PageSize": 5, "Sort": "asc"}, auth=auth, timeout=15)
    assert_error(r.status_code, r.json(), 400, 20001, 'Unknown parameter "Sort"')
    r = requests.get(calls, params={"PageSize": 5, "StartTime>": "2020-01-01"}, auth=auth, timeout=15)
    assert r.status_code == 200, r.text

    # Wrong types and bad phone numbers.
    call = {"To": "+15550002222", "From": "+15550001111", "Url": "http://127.0.0.1:9/v"}
    assert_error(*post(calls, {**call, "Timeout": "abc"}), 400, 21208, 'Invalid Timeout "abc"')
    assert_error(*post(calls, {**call, "Method": "PUT"}), 400, 21209, 'Invalid Method "PUT"')
    assert_error(*post(calls, {**call, "SendDigits": "12;rm"}), 400, 21206, "Invalid SendDigits")
    assert_error(*post(calls, {**call, "To": "call me maybe"}), 400, 21211, "Invalid 'To' Phone Number")
    assert_error(*post(calls, {"To": "+15550002222", "From": "+15550001111"}), 400, 21205,
                 "Url or Twiml or ApplicationSid required")
    assert_error(*post(calls, {**call, "ApplicationSid": "AP" + "0" * 32}), 400, 21218, "Invalid ApplicationSid")
    assert_error(*post(numbers, {"PhoneNumber": "555-CALL-NOW"}), 400, 21421, "PhoneNumber 555-CALL-NOW is invalid")
    assert_error(*post(numbers, {"FriendlyName": "no number"}), 400, 21452, "PhoneNumber is required")
    r = requests.get(calls, params={"PageSize": "many"}, auth=auth, timeout=15)
    assert_error(r.status_code, r.json(), 400, 20001, 'Invalid PageSize "many"')

    # Bad SIDs and path tricks, sent byte for byte.
    base = f"/2010-04-01/Accounts/{dialtone.account_sid}"
    tricks = [
        f"{base}/Calls/CA123.json",
        f"{base}/Calls/{'CA' + 'F' * 32}.json",
        f"{base}/Calls/../../../../etc/passwd",
        f"{base}/Recordings/../../canary.wav",
        f"{base}/Recordings/..%2F..%2F..%2Fcanary.wav",
        f"{base}/Recordings/%2e%2e%2f%2e%2e%2fcanary",
        f"{base}/Recordings/RE{'0' * 32}%2F..%2F..%2F..%2Fcanary.wav",
        f"{base}/Recordings/{'..%5C' * 4}canary.wav",
        f"{base}/IncomingPhoneNumbers/PN%00{'0' * 32}.json",
        f"/2010-04-01/Accounts/{dialtone.account_sid}%2FCalls.json",
        f"{base}/Applications/{'A' * 20000}.json",
        "/" + "a/" * 10000,
    ]
    for path in tricks:
        status, body = raw_http(dialtone, f"GET {path} HTTP/1.1")
        assert_error(status, body, 404, 20404, "was not found")
        assert len(body["message"]) < 400, path
        assert "RIFF" not in json.dumps(body)
    status, body = raw_http(dialtone, f"POST {base}/Calls/CA123.json HTTP/1.1",
                            {"Content-Type": FORM["Content-Type"]}, b"Status=completed")
    assert_error(status, body, 404, 20404)

    assert dialtone.alive()
    assert not dialtone.log_lines(r"panicked|ERROR"), dialtone.log_lines(r"panicked|ERROR")
    assert files(dialtone.data_dir) == before_data
    assert sorted(p.name for p in workdir.iterdir()) == before_work
    assert canary.read_bytes() == b"RIFF-canary-outside-the-data-dir"
