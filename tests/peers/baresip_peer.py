"""A baresip 1.0 process as a test peer: its own config dir, SIP on 127.0.0.1, a WAV as microphone,
both directions recorded by the sndfile module, driven through ctrl_tcp (see baresip_ctl.py).

baresip auto-answers incoming calls (answermode=auto) and hangs up when the prompt WAV ends, so
callers pad the prompt with enough silence for the whole call.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from baresip_ctl import BaresipCtl

HERE = Path(__file__).resolve().parent


class BaresipPeer:
    def __init__(self, workdir: Path, prompt_wav: Path, sip_port: int, ctrl_port: int,
                 rtp_ports: tuple[int, int], user: str = "+15557654321"):
        if shutil.which("baresip") is None:
            raise RuntimeError("baresip is not installed: run scripts/install-test-peers.sh")
        self.workdir = Path(workdir)
        self.confdir = self.workdir / "baresip"
        # baresip's sndfile builds its file names in a 128-byte buffer: under a long test
        # directory the name is cut and loses its ".wav". It records into a short temporary
        # directory; stop() moves the files to <workdir>/baresip-rec.
        self.saved_dir = self.workdir / "baresip-rec"
        self.record_dir = Path(tempfile.mkdtemp(prefix="bsrec-"))
        self.confdir.mkdir(parents=True, exist_ok=True)
        self.saved_dir.mkdir(parents=True, exist_ok=True)
        self.sip_port = sip_port
        self.ctrl_port = ctrl_port
        self.user = user
        fields = {
            "@SIP_PORT@": str(sip_port),
            "@CTRL_PORT@": str(ctrl_port),
            "@RTP_PORTS@": f"{rtp_ports[0]}-{rtp_ports[1]}",
            "@PROMPT_WAV@": str(Path(prompt_wav).resolve()),
            "@RECORD_DIR@": str(self.record_dir),
            "@USER@": user,
        }
        for src, dst in (("baresip.config", "config"), ("baresip.accounts", "accounts")):
            text = (HERE / src).read_text()
            for k, v in fields.items():
                text = text.replace(k, v)
            (self.confdir / dst).write_text(text)
        self.log_path = self.workdir / "baresip.log"
        self.proc: subprocess.Popen | None = None
        self.ctl: BaresipCtl | None = None

    def start(self) -> "BaresipPeer":
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["baresip", "-f", str(self.confdir)], stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        try:
            self.ctl = BaresipCtl(self.ctrl_port, connect_timeout=10.0)
        except OSError:
            self.stop()
            raise RuntimeError(f"baresip did not open ctrl_tcp; log:\n{self.log()}")
        return self

    def dial(self, uri: str) -> dict:
        assert self.ctl is not None
        return self.ctl.command("dial", uri)

    def send_dtmf(self, digits: str, gap: float = 0.3) -> None:
        """One sndcode per digit: baresip sends each as an RFC 4733 telephone-event."""
        assert self.ctl is not None
        for d in digits:
            self.ctl.command("sndcode", d)
            time.sleep(gap)

    def hangup(self) -> dict:
        assert self.ctl is not None
        return self.ctl.command("hangup")

    def wait_event(self, type_: str, timeout: float) -> dict | None:
        assert self.ctl is not None
        return self.ctl.wait_event(type_, timeout)

    def recordings(self, kind: str = "dec") -> list[Path]:
        """sndfile's WAVs: 'dec' is what baresip heard, 'enc' what it sent."""
        return sorted(Path(p) for p in glob.glob(str(self.record_dir / f"*-{kind}.wav")))

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.ctl is not None:
            try:
                self.ctl.command("quit", timeout=1.0)
            except (OSError, TimeoutError):
                pass
            self.ctl.close()
            self.ctl = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
        if self.record_dir != self.saved_dir:
            for f in self.record_dir.iterdir():
                shutil.move(str(f), self.saved_dir / f.name)
            shutil.rmtree(self.record_dir, ignore_errors=True)
            self.record_dir = self.saved_dir
