"""Starting and watching a `dialtone serve` process for one test, and finding free local ports."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "interop-test-token-0123456789abcdef"


def find_binary() -> Path:
    """DIALTONE_BIN, else the newest built `dialtone` in the usual target dirs."""
    env = os.environ.get("DIALTONE_BIN")
    if env:
        p = Path(env)
        if not p.is_file():
            raise FileNotFoundError(f"DIALTONE_BIN={env} does not exist")
        return p
    candidates = []
    dirs = [os.environ.get("CARGO_TARGET_DIR"), str(REPO / "target")]
    for d in filter(None, dirs):
        for profile in ("release", "debug"):
            p = Path(d) / profile / "dialtone"
            if p.is_file():
                candidates.append(p)
    if not candidates:
        raise FileNotFoundError("no dialtone binary: build it (cargo build --release -p dialtone) "
                                "or set DIALTONE_BIN")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def _bindable(port: int, kinds=(socket.SOCK_DGRAM, socket.SOCK_STREAM)) -> bool:
    socks = []
    try:
        for kind in kinds:
            s = socket.socket(socket.AF_INET, kind)
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            socks.append(s)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


class Ports:
    """Hands out ports below the kernel's ephemeral range (so outgoing sockets do not take them
    between the check and the use): single ports free for both UDP and TCP, and blocks for RTP."""

    def __init__(self, low: int = 10000, high: int = 32000):
        self.rng = random.Random(os.getpid() ^ int(time.time()))
        self.low, self.high = low, high
        self.taken: set[int] = set()

    def port(self) -> int:
        for _ in range(1000):
            p = self.rng.randrange(self.low, self.high)
            if p not in self.taken and _bindable(p):
                self.taken.add(p)
                return p
        raise RuntimeError("no free port")

    def block(self, size: int) -> tuple[int, int]:
        for _ in range(200):
            base = self.rng.randrange(self.low // 100, (self.high - size) // 100) * 100
            span = range(base, base + size)
            if self.taken.intersection(span):
                continue
            # Spot checks: a fully busy block is the failure that matters.
            if all(_bindable(p, (socket.SOCK_DGRAM,)) for p in (base, base + 1, base + size // 2,
                                                                 base + size - 1)):
                self.taken.update(span)
                return base, base + size - 1
        raise RuntimeError("no free port block")

    def release(self, *ports_or_blocks) -> None:
        """Gives ports (ints) or blocks ((low, high) tuples) back once their user is gone."""
        for p in ports_or_blocks:
            if isinstance(p, tuple):
                self.taken.difference_update(range(p[0], p[1] + 1))
            else:
                self.taken.discard(p)


class DialtoneServer:
    def __init__(self, binary: Path, workdir: Path, ports: Ports, rtp_size: int = 200,
                 extra_env: dict[str, str] | None = None):
        self.binary = binary
        self.ports = ports
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.http_port = ports.port()
        self.sip_port = ports.port()
        self.rtp_ports = ports.block(rtp_size)
        self.account_sid = ACCOUNT_SID
        self.auth_token = AUTH_TOKEN
        # With DIALTONE_TLS_CERT the HTTP listener speaks TLS only; requests check its certificate.
        self.tls_cert = (extra_env or {}).get("DIALTONE_TLS_CERT")
        scheme = "https" if self.tls_cert else "http"
        self.http_url = f"{scheme}://127.0.0.1:{self.http_port}"
        self.sip_addr = ("127.0.0.1", self.sip_port)
        self.log_path = workdir / "dialtone.log"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DIALTONE_HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "DIALTONE_SIP_ADDR": f"127.0.0.1:{self.sip_port}",
            "DIALTONE_RTP_PORTS": f"{self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "DIALTONE_DATA_DIR": str(self.data_dir),
            "DIALTONE_PUBLIC_URL": self.http_url,
            "DIALTONE_ACCOUNT_SID": self.account_sid,
            "DIALTONE_AUTH_TOKEN": self.auth_token,
            "DIALTONE_LOG": os.environ.get("DIALTONE_TEST_LOG", "info"),
        })
        env.pop("DIALTONE_DATABASE_URL", None)  # default: SQLite in the data dir
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> "DialtoneServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(self.binary), "serve"], env=self.env(), cwd=self.workdir,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dialtone exited with {self.proc.returncode} at start-up:\n"
                                   f"{self.log_tail(80)}")
            try:
                requests.get(self.http_url + "/metrics", timeout=1, verify=self.tls_cert or True)
                break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dialtone did not answer HTTP on {self.http_url} within "
                                   f"{timeout}s:\n{self.log_tail(80)}")
            time.sleep(0.1)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 10 s. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        code = self.proc.returncode
        self.ports.release(self.http_port, self.sip_port, self.rtp_ports)
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 150) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def log_lines(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        return [line for line in self.log().splitlines() if rx.search(line)]

    # REST helpers that do not go through the SDK (metrics, raw JSON, media downloads).
    def api(self, path: str) -> str:
        return f"{self.http_url}/2010-04-01/Accounts/{self.account_sid}{path}"

    def get(self, url: str, **kw) -> requests.Response:
        if url.startswith("/"):
            url = self.http_url + url
        kw.setdefault("verify", self.tls_cert or True)
        return requests.get(url, auth=(self.account_sid, self.auth_token), timeout=15, **kw)

    def metrics(self) -> dict[str, float]:
        """GET /metrics as {name: value}, summing a metric's labelled series."""
        r = requests.get(self.http_url + "/metrics", timeout=5)
        r.raise_for_status()
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if m:
                try:
                    out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
                except ValueError:
                    pass
        return out


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"{tool} is not installed: run scripts/install-test-peers.sh")
    return path
