"""A throwaway PostgreSQL cluster on a free loopback port (the center store's tests, the benchmarks).

`Postgres().start()` runs Debian's `initdb` and `pg_ctl` (the newest /usr/lib/postgresql/<ver>/bin) into a
fresh directory: trust authentication on 127.0.0.1 only, its unix socket in that directory, nothing
shared with a server the machine may already run. `.url` is a SQLAlchemy URL; `.new_database(name)` gives
each test its own database; `.stop()` stops the server and removes the directory.

PostgreSQL refuses to run as root. When we are root (the tests in CI and in the sandbox), the cluster is
made and run as the `postgres` system user (Debian's package creates it), in a directory that user owns.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from devkit.broker import free_port

PG_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # the system user Debian's postgresql package creates, for when we are root
SUPERUSER = "hcp"         # the cluster's own superuser name (what the URL logs in as)
DATABASE = "hcp"


def pg_bin() -> Path:
    """The bin directory of the newest PostgreSQL installed the Debian way."""
    versions = []
    for d in PG_ROOT.glob("*/bin"):
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file() and re.fullmatch(r"\d+(\.\d+)?", d.parent.name):
            versions.append((float(d.parent.name), d))
    if not versions:
        raise RuntimeError(f"PostgreSQL's initdb/pg_ctl not found under {PG_ROOT}/<version>/bin: install Debian's "
                           "postgresql package (apt-get install postgresql; tools/bootstrap does it)")
    return max(versions)[1]


class Postgres:
    """One PostgreSQL server in its own directory: `start()`, `url`, `new_database()`, `restart()`, `stop()`.

    `workdir`, if given, must be a new or empty directory the server's user can reach (when we are root,
    every parent must be traversable by `postgres`: pytest's tmp_path is not); by default a fresh one is
    made in the system temp directory and removed by `stop()`.
    """

    def __init__(self, workdir: str | Path | None = None, port: int | None = None, max_connections: int = 200):
        self.port = port or free_port()
        self.max_connections = max_connections
        self._own_dir = workdir is None
        self.dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="hcp-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.bin = pg_bin()
        self.root = os.geteuid() == 0
        self.running = False

    @property
    def url(self) -> str:
        return self.url_for(DATABASE)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _dsn(self, database: str) -> str:  # psycopg's own form (no driver name)
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd = list(args)
        if self.root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        # cwd: the server's user may not be allowed into ours (e.g. /root), and initdb looks at it.
        proc = subprocess.run(cmd, cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{log}")
        return proc

    def _prepare_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.root:
            return
        try:
            user = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise RuntimeError(f"running as root, PostgreSQL needs the '{SERVER_USER}' system user: install "
                               "Debian's postgresql package (apt-get install postgresql)") from None
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        os.chmod(self.dir, 0o700)
        if subprocess.run(["runuser", "-u", SERVER_USER, "--", "test", "-w", str(self.dir)], cwd="/").returncode:
            raise RuntimeError(f"the '{SERVER_USER}' user cannot reach {self.dir}: give Postgres a directory "
                               "whose parents it may traverse, or none (a fresh one in the temp directory)")

    def start(self, timeout: float = 30) -> "Postgres":
        self._prepare_dir()
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions")
        self._start(timeout)
        import psycopg  # only the callers that start a cluster need the driver
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        return self

    def _start(self, timeout: float) -> None:
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.dir} "
                   f"-c max_connections={self.max_connections}")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", str(int(timeout)), "start")
        self.running = True  # pg_ctl -w returned: the server accepts connections

    def restart(self, mode: str = "fast", timeout: float = 30) -> None:
        """Stop (`fast`: clean; `immediate`: no checkpoint, as a crash) and start again on the same port."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False
        self._start(timeout)

    def new_database(self, name: str) -> str:
        """CREATE DATABASE `name` (letters, digits, underscores) → its SQLAlchemy URL."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
            raise ValueError(f"not a plain database name: {name!r}")
        import psycopg
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def stop(self) -> None:
        """Stop the server (fast: open sessions are cut) and remove the directory if we made it."""
        try:
            if self.running:
                self.running = False
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Postgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

