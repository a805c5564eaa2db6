"""Running the real SIP peers from tests: pjsua2 in a child process, baresip as a managed process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PEERS = Path(__file__).resolve().parents[1] / "peers"
sys.path.insert(0, str(PEERS))

from baresip_peer import BaresipPeer  # noqa: E402  (lives beside the peer configs)

__all__ = ["BaresipPeer", "run_pjsua2", "start_pjsua2"]


def _pjsua2_cmd(workdir: Path, uri: str, sip_port: int, rtp_port: int, play: Path | None,
                record: Path | None, dtmf: list[tuple[float, str]], duration: float,
                timeout: float, transport: str, user: str) -> list[str]:
    cmd = [sys.executable, str(PEERS / "pjsua2_caller.py"), "--uri", uri, "--user", user,
           "--sip-port", str(sip_port), "--rtp-port", str(rtp_port), "--transport", transport,
           "--duration", str(duration), "--timeout", str(timeout),
           "--log", str(workdir / "pjsua2.log"), "--result", str(workdir / "pjsua2.json")]
    if play:
        cmd += ["--play", str(play)]
    if record:
        cmd += ["--record", str(record)]
    for at, digits in dtmf:
        cmd += ["--dtmf", f"{at}:{digits}"]
    return cmd


def start_pjsua2(workdir: Path, **kw) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(_pjsua2_cmd(workdir, **kw), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish_pjsua2(proc: subprocess.Popen, workdir: Path, timeout: float) -> dict:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"pjsua2 peer hung; stderr:\n{err[-3000:]}")
    report_file = workdir / "pjsua2.json"
    if not report_file.exists():
        raise AssertionError(f"pjsua2 peer exited {proc.returncode} without a report "
                             f"(crash?); stderr:\n{err[-3000:]}\nstdout:\n{out[-2000:]}")
    report = json.loads(report_file.read_text())
    report["exit_code"] = proc.returncode
    return report


def run_pjsua2(workdir: Path, uri: str, sip_port: int, rtp_port: int, play: Path | None = None,
               record: Path | None = None, dtmf: list[tuple[float, str]] | None = None,
               duration: float = 10.0, timeout: float = 30.0, transport: str = "udp",
               user: str = "+15557654321") -> dict:
    """One pjsua2 call in a child process; returns its JSON report (see pjsua2_caller.py)."""
    proc = start_pjsua2(workdir, uri=uri, sip_port=sip_port, rtp_port=rtp_port, play=play,
                        record=record, dtmf=dtmf or [], duration=duration, timeout=timeout,
                        transport=transport, user=user)
    return finish_pjsua2(proc, workdir, timeout + 15)
