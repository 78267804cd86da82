"""Starting a project-configured Mosquitto (used by `make run`, the tests and the benchmarks)."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).with_name("dev.conf")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("mosquitto not found: `make test` installs it (apt-get install mosquitto)")


class Broker:
    """One mosquitto process on a loopback port, from the project's template."""

    def __init__(self, port: int | None = None, extra: str = "", workdir: str | None = None):
        self.port = port or free_port()
        self.extra = extra
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="hcp-broker-"))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10) -> "Broker":
        conf = self.dir / "mosquitto.conf"
        conf.write_text(TEMPLATE.read_text().format(port=self.port, user=getpass.getuser(), data_dir=self.dir,
                                                  extra=self.extra))
        self.log = open(self.dir / "mosquitto.log", "ab")
        # Its own session: Ctrl-C at the demo must not kill the broker before the terminal said goodbye.
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not open its port")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
