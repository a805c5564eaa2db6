"""A throwaway PostgreSQL server for a test, as scripts/with-postgres.sh starts one: Debian's
initdb + pg_ctl in a temporary directory, listening on 127.0.0.1 only at a free port, password auth
over TCP, fsync off (test data). As root the server runs as the `postgres` system user."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path


def find_bindir() -> Path:
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in d.split("/")[4].split(".")
                                                                         if x.isdigit()])
    for d in reversed(dirs):
        if os.access(f"{d}/initdb", os.X_OK):
            return Path(d)
    raise RuntimeError("PostgreSQL is not installed (initdb not found): run scripts/install-test-peers.sh")


class PostgresServer:
    def __init__(self, port: int):
        self.bin = find_bindir()
        self.port = port
        self.tmp = Path(tempfile.mkdtemp(prefix="dialtone-pg-"))
        self.data = self.tmp / "data"
        self.sock = self.tmp / "sock"
        self.password = secrets.token_hex(16)
        self.root = os.getuid() == 0
        self.started = False

    def _as_server(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        if self.root:
            args = ["runuser", "-u", "postgres", "--"] + args
        return subprocess.run(args, cwd=self.tmp, capture_output=True, text=True, **kw)

    def start(self) -> "PostgresServer":
        self.sock.mkdir()
        pwfile = self.tmp / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.root:
            if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--system", "--user-group", "--home-dir", "/nonexistent",
                                "--shell", "/usr/sbin/nologin", "postgres"], check=True)
            shutil.chown(self.tmp, "postgres", "postgres")
            for p in (self.sock, pwfile):
                shutil.chown(p, "postgres", "postgres")
        r = self._as_server([str(self.bin / "initdb"), "-D", str(self.data), "--username=dialtone",
                             f"--pwfile={pwfile}", "--auth-host=md5", "--auth-local=peer",
                             "--encoding=UTF8", "--locale=C", "--no-sync"])
        pwfile.unlink()
        if r.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{r.stdout}\n{r.stderr}")
        r = self._as_server([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.tmp / "server.log"),
                             "-w", "-t", "60", "-o",
                             f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off "
                             f"-c full_page_writes=off -c max_connections=200", "start"])
        if r.returncode != 0:
            log = (self.tmp / "server.log").read_text(errors="replace") if (self.tmp / "server.log").exists() else ""
            self.stop()
            raise RuntimeError(f"pg_ctl start failed:\n{r.stdout}\n{r.stderr}\n{log}")
        self.started = True
        # md5, not SCRAM: SCRAM's hash rounds cost tens of ms per connection in a debug build.
        env = dict(os.environ, PGPASSWORD=self.password)
        r = subprocess.run([str(self.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "dialtone", "-d", "postgres",
                            "-c", "SET password_encryption = 'md5'",
                            "-c", f"ALTER ROLE dialtone PASSWORD '{self.password}'"],
                           cwd=self.tmp, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            self.stop()
            raise RuntimeError(f"psql failed: {r.stderr}")
        return self

    def create_database(self, name: str) -> str:
        """Creates database `name` (letters, digits, underscores) and returns its URL."""
        env = dict(os.environ, PGPASSWORD=self.password)
        subprocess.run([str(self.bin / "psql"), "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-p", str(self.port), "-U", "dialtone", "-d", "postgres",
                        "-c", f"CREATE DATABASE {name}"], cwd=self.tmp, env=env, check=True,
                       capture_output=True)
        return f"postgres://dialtone:{self.password}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_server([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])
        self.started = False
        shutil.rmtree(self.tmp, ignore_errors=True)
