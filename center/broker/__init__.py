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


class Mosquitto:
    """A mosquitto process from a configuration file, ready once every one of its ports accepts connections."""

    def __init__(self, conf: Path, ports: tuple[int, ...], log: Path):
        self.conf, self.ports, self.log = conf, ports, log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 15) -> "Mosquitto":
        out = open(self.log, "ab")
        # Its own session: Ctrl-C at the demo must not kill the broker before the terminal said goodbye.
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=out, stderr=out,
                                     start_new_session=True)
        end = time.monotonic() + timeout
        for port in self.ports:
            self._wait(port, end)
        return self

    def _wait(self, port: int, end: float) -> None:
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not open port {port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Broker(Mosquitto):
    """One mosquitto process on a loopback port, from the project's template."""

    def __init__(self, port: int | None = None, extra: str = "", workdir: str | None = None):
        self.port = port or free_port()
        self.extra = extra
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="hcp-broker-"))
        super().__init__(self.dir / "mosquitto.conf", (self.port,), self.dir / "mosquitto.log")

    def start(self, timeout: float = 10) -> "Broker":
        self.conf.write_text(TEMPLATE.read_text().format(port=self.port, user=getpass.getuser(), data_dir=self.dir,
                                                       extra=self.extra))
        return super().start(timeout)
