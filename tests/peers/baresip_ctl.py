#!/usr/bin/env python3
"""Client for baresip's ctrl_tcp module: netstring-framed JSON commands, responses and events.

As a command line tool: `baresip_ctl.py [--port 4444] COMMAND [PARAMS] [SECONDS]` sends one command
and prints what baresip says for a while (e.g. `baresip_ctl.py sndcode 1`).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time


class BaresipCtl:
    """One TCP connection to ctrl_tcp. A reader thread collects every message; responses and events
    are kept in arrival order so tests can wait for them."""

    def __init__(self, port: int, host: str = "127.0.0.1", connect_timeout: float = 10.0):
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.sock.settimeout(0.2)
        self.messages: list[dict] = []
        self.cond = threading.Condition()
        self.closed = False
        self._token = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
            while True:
                colon = buf.find(b":")
                if colon < 0:
                    break
                try:
                    n = int(buf[:colon])
                except ValueError:
                    buf = b""  # not netstring: resynchronising is not worth it in a test peer
                    break
                if len(buf) < colon + 1 + n + 1:
                    break
                body = buf[colon + 1: colon + 1 + n]
                buf = buf[colon + 1 + n + 1:]
                try:
                    msg = json.loads(body)
                except ValueError:
                    msg = {"raw": body.decode(errors="replace")}
                msg["_at"] = time.monotonic()
                with self.cond:
                    self.messages.append(msg)
                    self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict:
        """Sends a command and waits for its response (matched by token)."""
        self._token += 1
        token = f"t{self._token}"
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")
        msg = self.wait(lambda m: m.get("response") and m.get("token") == token, timeout)
        if msg is None:
            raise TimeoutError(f"baresip did not answer {command!r} within {timeout}s")
        return msg

    def wait(self, pred, timeout: float, start: int = 0) -> dict | None:
        """First message (from index `start`) that satisfies pred, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.messages[start:]:
                    if pred(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(left)

    def wait_event(self, type_: str, timeout: float, start: int = 0) -> dict | None:
        return self.wait(lambda m: m.get("event") and m.get("type") == type_, timeout, start)

    def events(self) -> list[dict]:
        with self.cond:
            return [m for m in self.messages if m.get("event")]

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=4444)
    ap.add_argument("command")
    ap.add_argument("params", nargs="?", default="")
    ap.add_argument("seconds", nargs="?", type=float, default=1.5)
    a = ap.parse_args()
    ctl = BaresipCtl(a.port)
    print(json.dumps(ctl.command(a.command, a.params)))
    time.sleep(a.seconds)
    for m in ctl.events():
        print(json.dumps(m))
    ctl.close()


if __name__ == "__main__":
    main()
