"""Starting a project-configured Mosquitto (used by `make run`, the tests and the benchmarks)."""
from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TEMPLATE = Path(__file__).with_name("dev.conf")
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


def fill(template: str, **values: object) -> str:
    """Substitute exactly the named `{placeholders}` of a configuration template, in one pass.

    Any other brace (in a comment, or in a substituted value) stays as it is. A value with a line break
    may only stand where a whole line is expected: inside a comment its later lines would become
    configuration, so that is a ValueError rather than a broker that does not start."""
    out = []
    for line in template.splitlines(keepends=True):
        comment = line.lstrip().startswith("#")

        def put(m: re.Match) -> str:
            if m.group(1) not in values:
                return m.group(0)
            text = str(values[m.group(1)])
            if comment and "\n" in text:
                raise ValueError(f"{{{m.group(1)}}} has several lines and stands in a comment: {line.strip()!r}")
            return text

        out.append(_PLACEHOLDER.sub(put, line))
    return "".join(out)


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
        self.conf.write_text(fill(TEMPLATE.read_text(), port=self.port, user=getpass.getuser(), data_dir=self.dir,
                                  extra=self.extra))
        return super().start(timeout)
