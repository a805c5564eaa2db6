"""Jasmin (the open-source SMS gateway, PyPI `jasmin`) as a managed SMSC peer.

    jasmin = Jasmin(workdir, ports)   # started and provisioned
    jasmin.port                       # its SMPP server API: Dialtone binds here
    jasmin.username, jasmin.password  # the Jasmin user Dialtone binds with
    jasmin.upstream                   # the Smsc (tests/smsc/smsc.js) behind Jasmin
    jasmin.jcli("smppccm -l")         # any jCli command, its output as text
    jasmin.stop()

Everything runs on free 127.0.0.1 ports with its files under `workdir`: a private redis-server, a
private RabbitMQ node (its own epmd, node name, Mnesia and log dirs), `jasmind.py` from
tests/.jasmin-venv with a jasmin.cfg written here, and the upstream test SMSC. Provisioning goes
through jCli (its telnet console): a group and a user for Dialtone (no throughput cap), an SMPP
client connector to the upstream SMSC, an MT DefaultRoute to that connector and an MO DefaultRoute
to `smpps(<user>)`, i.e. back to Dialtone's bind on the SMPP server API. Jasmin runs its DLR lookup,
DLR thrower and deliver_sm thrower in process (jasmind.py's --enable-* flags), so the upstream's
receipts come back to Dialtone as deliver_sm receipts and the upstream's deliver_sm reach it as MO.

Everything is stopped at exit (process groups). The Debian packages (rabbitmq-server,
redis-server) and the venv come from scripts/install-test-peers.sh; a missing one is an error,
never a skip.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from smsc import Smsc

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "tests" / ".jasmin-venv"
JASMIND = VENV / "bin" / "jasmind.py"
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")

_running: set["Jasmin"] = set()


@atexit.register
def _stop_all() -> None:
    for j in list(_running):
        j.stop()


def _amqp_spec() -> Path:
    """txamqp's AMQP 0-9-1 spec, which Jasmin needs and its wheel does not ship: the config's
    [amqp-broker] spec points at it inside the venv (nothing copied to /etc)."""
    found = sorted(VENV.glob("lib/python3*/site-packages/txamqp/specs/standard/amqp0-9-1.stripped.xml"))
    if not found:
        raise RuntimeError("txamqp's amqp0-9-1.stripped.xml is not in tests/.jasmin-venv: "
                           "run scripts/install-test-peers.sh")
    return found[0]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop_group(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        # The leader may be gone with children left in its group (epmd, beam).
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class JCli:
    """A line-at-a-time client for jCli's telnet console (authentication is off in our config)."""

    PROMPT = re.compile(r"(jcli : |> )$")

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        # The console greets (motd, session ref) without a prompt.
        self._read_until_prompt(re.compile(r"Session ref: \d+\n"))

    @staticmethod
    def _clean(raw: bytes) -> str:
        # Drop telnet negotiation (IAC ...) and terminal escape sequences; keep the text.
        raw = re.sub(rb"\xff[\xfb-\xfe].", b"", raw)
        raw = re.sub(rb"\xff\xfa.*?\xff\xf0", b"", raw, flags=re.S)
        raw = re.sub(rb"\xff.", b"", raw)
        text = raw.decode("utf-8", errors="replace")
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
        return re.sub(r"\x1b[A-Za-z]", "", text).replace("\r", "")

    def _read_until_prompt(self, prompt: re.Pattern | None = None) -> str:
        prompt = prompt or self.PROMPT
        buf = b""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            if prompt.search(self._clean(buf)):
                return self._clean(buf)
        raise RuntimeError(f"jCli: no prompt; got {self._clean(buf)!r}")

    def command(self, line: str) -> str:
        self.sock.sendall(line.encode() + b"\r\n")
        out = self._read_until_prompt()
        # The console echoes what it is sent: drop the echo and the prompt.
        out = self.PROMPT.sub("", out)
        if out.startswith(line):
            out = out[len(line):]
        return out.strip()

    def close(self) -> None:
        try:
            self.sock.sendall(b"quit\r\n")
        except OSError:
            pass
        self.sock.close()


class Jasmin:
    def __init__(self, workdir: Path, ports, username: str = "dialtone", password: str = "secret",
                 start: bool = True):
        for need, hint in ((JASMIND, "tests/.jasmin-venv (jasmin)"),
                           (RABBITMQ_SERVER, "Debian's rabbitmq-server"),
                           (shutil.which("redis-server"), "Debian's redis-server"),
                           (shutil.which("epmd"), "epmd (erlang-base, with rabbitmq-server)")):
            if not need or not Path(need).exists():
                raise RuntimeError(f"{hint} is not installed: run scripts/install-test-peers.sh")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = ports
        self.username, self.password = username, password
        self.port = ports.port()             # SMPP server API
        self.jcli_port = ports.port()
        self.http_port = ports.port()        # HTTP API (unused by the tests, but loopback)
        self.smpps_pb_port = ports.port()
        self.router_pb_port = ports.port()
        self.cm_pb_port = ports.port()
        self.redis_port = ports.port()
        self.amqp_port = ports.port()
        self.dist_port = ports.port()
        self.epmd_port = ports.port()
        self.upstream: Smsc | None = None
        self.procs: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}
        if start:
            self.start()

    # ---- processes -------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict | None = None, cwd: Path | None = None):
        log = open(self.workdir / f"{name}.log", "ab")
        proc = subprocess.Popen(argv, env=env, cwd=cwd or self.workdir, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def _wait_port(self, name: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = self.procs.get(name)
        while time.monotonic() < deadline:
            if _listening(port):
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} in {timeout} s:\n{self.log_tail(name)}")

    def _start_redis(self) -> None:
        d = self.workdir / "redis"
        d.mkdir(exist_ok=True)
        self._spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(d),
                              "--daemonize", "no", "--protected-mode", "yes"])

    def _start_rabbitmq(self) -> None:
        d = self.workdir / "rabbitmq"
        d.mkdir(exist_ok=True)
        (d / "enabled_plugins").write_text("[].\n")
        (d / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            "loopback_users.guest = true\n")
        node = f"jasmin{self.amqp_port}@localhost"
        env = dict(os.environ)
        env.update({
            "HOME": str(d),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_LOGS": "-",
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(d / "rabbitmq.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        })
        # A private epmd in the node's process group (erl would otherwise start a detached one on
        # the shared port 4369 that outlives the test).
        script = f"epmd -port {self.epmd_port} & exec {RABBITMQ_SERVER}"
        self._spawn("rabbitmq", ["/bin/sh", "-c", script], env=env, cwd=d)

    def _write_config(self) -> Path:
        root = self.workdir / "jasmin"
        for sub in ("etc", "store", "log"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        log = root / "log"
        cfg = root / "etc" / "jasmin.cfg"
        sections = {
            "smpp-server": {"id": "smpps_01", "bind": "127.0.0.1", "port": self.port,
                            "billing_feature": "False", "log_level": "DEBUG"},
            "smpp-server-pb": {"bind": "127.0.0.1", "port": self.smpps_pb_port},
            "smpp-server-pb-client": {"host": "127.0.0.1", "port": self.smpps_pb_port},
            "client-management": {"bind": "127.0.0.1", "port": self.cm_pb_port,
                                  "store_path": root / "store"},
            "router": {"bind": "127.0.0.1", "port": self.router_pb_port, "store_path": root / "store"},
            "http-api": {"bind": "127.0.0.1", "port": self.http_port},
            "jcli": {"bind": "127.0.0.1", "port": self.jcli_port, "authentication": "False"},
            "amqp-broker": {"host": "127.0.0.1", "port": self.amqp_port, "spec": _amqp_spec(),
                            "connect_timeout": 10},
            "redis-client": {"host": "127.0.0.1", "port": self.redis_port, "dbid": 0},
            "sm-listener": {"log_level": "DEBUG"},
            "dlr-thrower": {"retry_delay": 1, "max_retries": 3},
            "deliversm-thrower": {"retry_delay": 1, "max_retries": 3},
        }
        text = "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                       for name, keys in sections.items())
        cfg.write_text(text)
        return cfg

    def _start_jasmind(self) -> None:
        cfg = self._write_config()
        root = self.workdir / "jasmin"
        env = dict(os.environ)
        env.update({
            "ROOT_PATH": str(root), "CONFIG_PATH": str(root / "etc"), "STORE_PATH": str(root / "store"),
            "LOG_PATH": str(root / "log"), "RESOURCE_PATH": str(_amqp_spec().parent),
        })
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self._spawn("jasmind", [str(VENV / "bin" / "python"), str(JASMIND), "-c", str(cfg),
                                "--enable-dlr-thrower", "--enable-dlr-lookup", "--enable-deliver-thrower"],
                    env=env, cwd=root)

    def start(self, timeout: float = 60.0) -> None:
        t0 = time.monotonic()
        _running.add(self)
        try:
            self._start_redis()
            self._start_rabbitmq()
            self.upstream = Smsc(self.workdir / "upstream", self.ports, system_id="UPSTREAM-SMSC")
            self._wait_port("redis", self.redis_port, 10)
            self._wait_port("rabbitmq", self.amqp_port, timeout)
            self.timings["rabbitmq"] = time.monotonic() - t0
            self._start_jasmind()
            self._wait_port("jasmind", self.jcli_port, timeout)
            self._wait_port("jasmind", self.port, timeout)
            self.timings["jasmind"] = time.monotonic() - t0
            self.provision()
            self.timings["provisioned"] = time.monotonic() - t0
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        _running.discard(self)
        for name in ("jasmind", "rabbitmq", "redis"):
            _stop_group(self.procs.pop(name, None))
        if self.upstream is not None:
            self.upstream.stop()

    # ---- jCli --------------------------------------------------------------------------------
    def jcli(self, *lines: str) -> str:
        cli = JCli(self.jcli_port)
        try:
            return "\n".join(cli.command(line) for line in lines)
        finally:
            cli.close()

    def _session(self, cli: JCli, opener: str, keys: dict) -> str:
        out = [cli.command(opener)]
        for k, v in keys.items():
            out.append(cli.command(f"{k} {v}"))
        out.append(cli.command("ok"))
        text = "\n".join(out)
        if not re.search(r"Successfully added|successfully added", text):
            raise RuntimeError(f"jCli {opener} failed:\n{text}")
        return text

    def provision(self) -> None:
        up = self.upstream
        cli = JCli(self.jcli_port)
        try:
            self._session(cli, "group -a", {"gid": "dialtone_g"})
            self._session(cli, "user -a", {"username": self.username, "password": self.password,
                                           "gid": "dialtone_g", "uid": "dialtone_u"})
            self._session(cli, "smppccm -a", {
                "cid": "upstream", "host": "127.0.0.1", "port": up.port,
                "username": "jasmin", "password": "secret", "bind": "transceiver",
                "submit_throughput": 0, "con_fail_delay": 1, "con_loss_delay": 1,
                # International/ISDN numbers, as Dialtone sends them (E.164 without the '+').
                "src_ton": 1, "src_npi": 1, "dst_ton": 1, "dst_npi": 1,
            })
            self._session(cli, "mtrouter -a", {"type": "DefaultRoute", "connector": "smppc(upstream)",
                                               "rate": "0.00"})
            self._session(cli, "morouter -a", {"type": "DefaultRoute",
                                               "connector": f"smpps({self.username})"})
            started = cli.command("smppccm -1 upstream")
            if "Successfully started" not in started:
                raise RuntimeError(f"jCli smppccm -1 upstream: {started}")
        finally:
            cli.close()
        # Jasmin's connector binds to the upstream SMSC (system_id "jasmin").
        deadline = time.monotonic() + 20
        while not any(b.get("system_id") == "jasmin" for b in up.binds()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Jasmin's connector did not bind to the upstream SMSC:\n"
                                   f"{self.log_tail('jasmind')}\n{up.log_tail()}")
            time.sleep(0.1)

    # ---- logs --------------------------------------------------------------------------------
    def log_tail(self, name: str = "jasmind", lines: int = 60) -> str:
        path = self.workdir / f"{name}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def jasmin_log(self, name: str, lines: int = 60) -> str:
        """A log file of Jasmin's own (messages.log, default-smpps_01.log, router.log, ...)."""
        path = self.workdir / "jasmin" / "log" / name
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
