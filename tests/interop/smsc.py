"""The test SMSC (tests/smsc/smsc.js, the npm `smpp` package in server mode) as a managed process.

    smsc = Smsc(workdir, ports)      # started: SMPP on smsc.port, control API on smsc.http_port
    smsc.behaviour(throttle_next=1)  # the next submit_sm is answered ESME_RTHROTTLED
    smsc.deliver("+15557654321", "+15550001111", "hello", parts=2)
    smsc.submitted()                 # every submit_sm received (source, dest, udh, text, message_id...)
    smsc.stop(); smsc.start()        # a real process stop, then a restart on the same ports

Every instance is stopped at exit. node and `npm ci` of tests/smsc come from
scripts/install-test-peers.sh; a missing one is an error, never a skip.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

SMSC_DIR = Path(__file__).resolve().parents[1] / "smsc"

_running: set["Smsc"] = set()


@atexit.register
def _stop_all() -> None:
    for smsc in list(_running):
        smsc.stop()


class Smsc:
    def __init__(self, workdir: Path, ports, start: bool = True, system_id: str | None = None):
        if shutil.which("node") is None:
            raise RuntimeError("node is not installed: run scripts/install-test-peers.sh")
        if not (SMSC_DIR / "node_modules" / "smpp").is_dir():
            raise RuntimeError("tests/smsc/node_modules is missing: run scripts/install-test-peers.sh")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "smsc.log"
        self.port = ports.port()
        self.http_port = ports.port()
        self.proc: subprocess.Popen | None = None
        # The system_id of bind responses (the SMSC's default has 18 characters, over SMPP's 16).
        self.system_id = system_id
        if start:
            self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 15.0) -> None:
        """Starts the process (again) on the same ports and waits until both listen."""
        if self.proc is not None and self.proc.poll() is None:
            return
        log = open(self.log_path, "a")
        env = dict(os.environ)
        if self.system_id:
            env["SMSC_SYSTEM_ID"] = self.system_id
        self.proc = subprocess.Popen(
            ["node", str(SMSC_DIR / "smsc.js"), "--smpp-port", str(self.port), "--http-port", str(self.http_port)],
            cwd=SMSC_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _running.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the test SMSC exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self._request("GET", "/binds")
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the test SMSC did not start in {timeout} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """Stops the process (SIGTERM, then SIGKILL); binds drop at once."""
        _running.discard(self)
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"test SMSC {method} {path}: {e.code} {e.read().decode(errors='replace')}")

    def submitted(self) -> list[dict]:
        return self._request("GET", "/submitted")

    def deliveries(self) -> list[dict]:
        """Every deliver_sm sent, with the command_status of its response (None: not answered yet)."""
        return self._request("GET", "/deliveries")

    def binds(self) -> list[dict]:
        return self._request("GET", "/binds")

    def deliver(self, from_: str, to: str, text: str, encoding: str | None = None, parts: int = 1,
                system_id: str | None = None) -> list[dict]:
        body = {"from": from_, "to": to, "text": text, "parts": parts}
        if encoding:
            body["encoding"] = encoding
        if system_id:
            body["system_id"] = system_id
        return self._request("POST", "/deliver", body)["sent"]

    def behaviour(self, **kw) -> dict:
        """throttle_next=n, reject_prefix="+1555", receipt="DELIVRD"|"UNDELIV"|"none", receipt_delay_ms=ms."""
        return self._request("POST", "/behaviour", kw)

    def reset(self) -> None:
        self._request("POST", "/reset", {})

    def wait_for(self, what, timeout: float = 10.0, interval: float = 0.05):
        """Polls `what()` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            value = what()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; SMSC log:\n{self.log_tail()}")
            time.sleep(interval)
