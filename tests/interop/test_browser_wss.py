"""Browsers over TLS: with DIALTONE_TLS_CERT/KEY the HTTP listener serves HTTPS, and SIP.js in
headless Chromium registers at `wss://127.0.0.1:<http>/sip` (RFC 7118 over TLS) with a SIP Domain
user's digest credentials and calls a `<Gather>` number.

Checked: the certificate the server presents is the configured one (requests verifies against
it, and a plain-HTTP request to the same port gets no HTTP answer); the registrar lists the
user's binding with transport `wss`; the page's RFC 4733 digits reach the action; the media went
over DTLS-SRTP with G.711 and the page heard the prompt; the SDK file and the pages are served
over HTTPS. The certificate is self-signed for IP 127.0.0.1 (openssl), and Chromium is told to
accept it.
"""

from __future__ import annotations

import subprocess
import time

import requests

import tones
from browser import BrowserRun, step
from conftest import NUMBER
from server import DialtoneServer

DOMAIN = "tls.sip.dialtone.local"
PASSWORD = "Tls-Browser-Secret-1"
VOICE = ('<Response><Gather numDigits="2" action="/gathered"><Say>Enter two digits</Say>'
         '</Gather></Response>')


def self_signed(workdir):
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_browser_registers_and_calls_over_wss(dialtone_binary, ports, webhook, workdir, audio_tools):
    cert, key = self_signed(workdir)
    server = DialtoneServer(dialtone_binary, workdir, ports, extra_env={
        "DIALTONE_TLS_CERT": str(cert), "DIALTONE_TLS_KEY": str(key)}).start()
    try:
        auth = (server.account_sid, server.auth_token)
        post = lambda path, data: requests.post(server.api(path), data=data, auth=auth, timeout=10,
                                                verify=str(cert))
        # HTTPS only: the API answers over TLS with the configured certificate, not in clear.
        assert server.http_url.startswith("https://")
        try:
            plain = requests.get(f"http://127.0.0.1:{server.http_port}/health", timeout=3)
            assert plain.status_code >= 400, "plain HTTP was answered on the TLS port"
        except requests.RequestException:
            pass
        sdk = requests.get(server.http_url + "/js/dialtone.js", timeout=10, verify=str(cert))
        assert sdk.status_code == 200 and "Device" in sdk.text[:600_000], sdk.status_code
        assert requests.get(server.http_url + "/console", timeout=10, verify=str(cert)).status_code == 200

        r = post("/IncomingPhoneNumbers.json", {"PhoneNumber": NUMBER,
                                                "VoiceUrl": webhook.route("/voice", VOICE)})
        assert r.status_code == 201, r.text
        webhook.route("/gathered", "<Response><Hangup/></Response>")
        cl = post("/SIP/CredentialLists.json", {"FriendlyName": "tls"}).json()["sid"]
        assert post(f"/SIP/CredentialLists/{cl}/Credentials.json",
                    {"Username": "bob", "Password": PASSWORD}).status_code == 201
        domain = post("/SIP/Domains.json", {"DomainName": DOMAIN}).json()["sid"]
        assert post(f"/SIP/Domains/{domain}/Auth/Registrations/CredentialListMappings.json",
                    {"CredentialListSid": cl}).status_code == 201

        mic = tones.make_tone(workdir / "mic-800.wav", 800, 10)
        config = {
            "wsUrl": f"wss://127.0.0.1:{server.http_port}/sip",
            "sipUri": f"sip:bob@{DOMAIN}",
            "username": "bob",
            "password": PASSWORD,
            "target": f"sip:{NUMBER}@{DOMAIN}",
            "dtmf": [{"at_ms": 4500, "digits": "58"}],
            "hangup_after_ms": 12000,
            "answer_timeout_ms": 15000,
            "freqs": [800],
        }
        run = BrowserRun(workdir, {"sipjs": mic}, [
            {"do": "open", "page": "sipjs"},
            {"do": "peer_run", "config": config, "wav": "heard.wav", "name": "run", "timeout_ms": 45000},
        ], timeout=70, name="wss", chromium_args=["--ignore-certificate-errors"]).start()
        transports = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and run.proc.poll() is None and not transports:
            regs = server.get(server.api("/SIP/Registrations.json")).json()["registrations"]
            transports = [c["transport"] for u in regs if u["username"] == "bob" for c in u["contacts"]]
            time.sleep(0.3)
        report = run.finish()
        res = step(report, "run")
        print("register", res["register"], "call", res["call"], "stats", res["stats"])
        assert res["registered"] and res["register"]["status"] == 200, res
        assert transports == ["wss"], transports
        assert res["call"]["status"] == 200 and res["call"]["answered_ms"] is not None, res["call"]
        gathered = webhook.wait_for("/gathered", timeout=10)[0].params
        assert gathered.get("Digits") == "58", gathered
        stats = res["stats"]
        assert stats["dtls"]["state"] == "connected", stats
        assert stats["inbound"]["codec"] in ("audio/PCMU", "audio/PCMA"), stats
        heard = [w for w in res["heard"]["windows"] if w["t_ms"] < 4000]
        loud = sum(1 for w in heard if w["rms_dbfs"] > -40)
        assert loud >= 5, [w["rms_dbfs"] for w in heard]
        assert not server.log_lines(r"panicked"), server.log_lines(r"panicked")
    finally:
        code = server.stop()
    assert code == 0, server.log_tail(60)
