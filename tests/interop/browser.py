"""Headless Chromium as a test peer: runs tests/browser/driver.mjs (playwright-core driving Debian's
/usr/bin/chromium) as a child process with a JSON scenario, and returns its JSON report.

A scenario is a set of browsers (one Chromium each, with its own fake microphone WAV and a fresh
profile directory) and a list of steps (see driver.mjs). The driver's stderr, the scenario, the
report, each browser's console and WebSocket frames (the SIP trace), screenshots and the WAVs of
what the pages heard all land in the test's workdir.

Every Chromium the run started is gone when `finish` returns: the driver closes its browsers, and
any process still running with one of this run's profile directories on its command line is
killed by pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
DRIVER = BROWSER_DIR / "driver.mjs"
CHROMIUM = "/usr/bin/chromium"
STACKS = ("sipjs", "jssip")


def require_browser() -> None:
    """Chromium, node and the tests/browser packages, or an error naming the install script."""
    problems = []
    if not Path(CHROMIUM).is_file():
        problems.append(f"{CHROMIUM} is missing")
    if shutil.which("node") is None:
        problems.append("node is missing")
    for pkg in ("playwright-core", "sip.js", "jssip", "esbuild"):
        if not (BROWSER_DIR / "node_modules" / pkg / "package.json").is_file():
            problems.append(f"tests/browser/node_modules/{pkg} is missing")
    if problems:
        raise RuntimeError("browser peers not installed (" + "; ".join(problems) +
                           "): run scripts/install-test-peers.sh")


def package_version(pkg: str) -> str:
    return json.loads((BROWSER_DIR / "node_modules" / pkg / "package.json").read_text())["version"]


def _pids_with(text: str) -> list[int]:
    """Processes whose command line contains `text` (a profile path unique to one run)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            out.append(int(entry.name))
    return out


class BrowserRun:
    """One run of the driver. `browsers` maps a peer name to its fake microphone WAV (None: the
    browser's own fake device)."""

    def __init__(self, workdir: Path, browsers: dict[str, Path | None], steps: list[dict],
                 timeout: float = 120.0, name: str = "browser", chromium_args: list[str] | None = None):
        require_browser()
        self.workdir = Path(workdir)
        self.name = name
        self.timeout = timeout
        self.profiles = {b: Path(tempfile.mkdtemp(prefix=f"dialtone-chromium-{b}-")) for b in browsers}
        self.scenario = {
            "workdir": str(self.workdir),
            "timeout_ms": int(timeout * 1000),
            "chromium": CHROMIUM,
            "result": str(self.workdir / f"{name}-report.json"),
            "browsers": {b: {"mic": str(Path(mic).resolve()) if mic else None,
                             "profile": str(self.profiles[b]),
                             "args": list(chromium_args or [])} for b, mic in browsers.items()},
            "steps": steps,
        }
        self.proc: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> "BrowserRun":
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / f"{self.name}-scenario.json"
        path.write_text(json.dumps(self.scenario, indent=1))
        self.stderr = open(self.workdir / f"{self.name}-driver.log", "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(["node", str(DRIVER), str(path)], cwd=BROWSER_DIR,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self.stderr, start_new_session=True)
        return self

    def finish(self, timeout: float | None = None) -> dict:
        """Waits for the driver (its own timeout plus a margin), returns the report with
        `exit_code` added. Fails when the driver hung or died without a report."""
        assert self.proc is not None
        left = (timeout if timeout is not None else self.timeout + 30) - (time.monotonic() - self.started)
        hung = False
        try:
            out, _ = self.proc.communicate(timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            hung = True
            os.killpg(self.proc.pid, signal.SIGTERM)  # the driver closes its browsers on SIGTERM
            try:
                out, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                out, _ = self.proc.communicate()
        finally:
            self.stderr.close()
            self._cleanup()
        log = (self.workdir / f"{self.name}-driver.log").read_text(errors="replace")
        if hung:
            raise AssertionError(f"browser driver hung past {self.timeout} s; log:\n{log[-3000:]}")
        lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.strip()]
        try:
            report = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            raise AssertionError(f"browser driver exited {self.proc.returncode} without a report; "
                                 f"log:\n{log[-3000:]}") from None
        report["exit_code"] = self.proc.returncode
        report["driver_log"] = str(self.workdir / f"{self.name}-driver.log")
        return report

    def _cleanup(self) -> None:
        for profile in self.profiles.values():
            for pid in _pids_with(str(profile)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            shutil.rmtree(profile, ignore_errors=True)

    def run(self) -> dict:
        return self.start().finish()


def run_browser(workdir: Path, browsers: dict[str, Path | None], steps: list[dict],
                timeout: float = 120.0, name: str = "browser") -> dict:
    return BrowserRun(workdir, browsers, steps, timeout, name).run()


def step(report: dict, name: str) -> dict:
    """The result of the step called `name`, failing with the driver's error when it has none."""
    for s in report["steps"]:
        if s.get("name") == name:
            assert s["ok"], f"browser step {name} failed: {s['error']} (driver: {report['error']})"
            return s["result"]
    raise AssertionError(f"browser step {name} did not run: {report['error']}\n"
                         f"steps: {[(s['i'], s['do'], s['ok'], s['error']) for s in report['steps']]}")


def stack_call(workdir: Path, stack: str, mic: Path, config: dict, timeout: float = 90.0,
               wav: str = "heard.wav") -> tuple[dict, dict]:
    """One SIP stack page (sipjs or jssip) runs `config` (pages/peer.js `run`): register over
    WebSocket, call, DTMF, hang up. Returns (the page's result, the whole report)."""
    assert stack in STACKS, stack
    steps = [
        {"do": "open", "page": stack, "name": "open"},
        {"do": "peer_run", "config": config, "wav": wav, "name": "run",
         "timeout_ms": int((timeout - 15) * 1000)},
        {"do": "screenshot", "file": f"{stack}-after-call.png"},
    ]
    report = run_browser(workdir, {stack: mic}, steps, timeout=timeout, name=stack)
    return step(report, "run"), report


def speech_windows(heard: dict, from_ms: float, to_ms: float, threshold_db: float = -40.0) -> float:
    """Share of the page's 100 ms level windows in [from_ms, to_ms) (time since the probe
    started) above threshold_db."""
    ws = [w for w in heard["windows"] if from_ms <= w["t_ms"] < to_ms]
    return sum(1 for w in ws if w["rms_dbfs"] > threshold_db) / len(ws) if ws else 0.0
