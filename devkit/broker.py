"""Brokers on free loopback ports: a project-configured Mosquitto (`make run`, the tests, the benchmarks),
any Mosquitto from a configuration file, and a nats-server with its MQTT gateway (the 3.1.1 profile)."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from provisioning.brokerconf import fill

TEMPLATE = Path(__file__).with_name("mosquitto.conf")
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("mosquitto not found: `make test` installs it (apt-get install mosquitto)")


def _wait_for_port(proc: subprocess.Popen, port: int, end: float, name: str, log: Path) -> None:
    """Until `port` accepts connections; RuntimeError if the process exits or `end` (monotonic) passes."""
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not open port {port}")


def _stop(proc: subprocess.Popen | None) -> None:
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
            _wait_for_port(self.proc, port, end, "mosquitto", self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def __enter__(self) -> "Mosquitto":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Broker(Mosquitto):
    """One mosquitto process on a loopback port, from the project's template (devkit/mosquitto.conf)."""

    def __init__(self, port: int | None = None, extra: str = "", workdir: str | None = None):
        self.port = port or free_port()
        self.extra = extra
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="hcp-broker-"))
        super().__init__(self.dir / "mosquitto.conf", (self.port,), self.dir / "mosquitto.log")

    def start(self, timeout: float = 10) -> "Broker":
        self.conf.write_text(fill(TEMPLATE.read_text(), port=self.port, user=getpass.getuser(), data_dir=self.dir,
                                  extra=self.extra))
        return super().start(timeout)


class NatsServer:
    """nats-server on free loopback ports with JetStream (NATS's MQTT gateway requires it) and MQTT on;
    optionally TLS on the MQTT port and user accounts (which MQTT clients log in with)."""

    def __init__(self, root: Path, tls: tuple[Path, Path] | None = None, users: dict[str, str] | None = None):
        self.root, self.port, self.mqtt_port = root, free_port(), free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.conf = root / "nats.conf"
        self.log = root / "nats.log"
        mqtt_tls = f', tls: {{ cert_file: "{tls[0]}", key_file: "{tls[1]}" }}' if tls else ""
        text = (f'server_name: "hcp-test"\nlisten: "127.0.0.1:{self.port}"\n'
                f'jetstream {{ store_dir: "{root / "js"}" }}\n'
                f'mqtt {{ host: "127.0.0.1", port: {self.mqtt_port}{mqtt_tls} }}\n')
        if users:
            text += "authorization { users = [" + ", ".join(
                f'{{ user: "{u}", password: "{pw}" }}' for u, pw in users.items()) + "] }\n"
        self.conf.write_text(text)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> "NatsServer":
        self.proc = subprocess.Popen([NATS, "-c", str(self.conf)], stdout=open(self.log, "ab"),
                                     stderr=subprocess.STDOUT)
        _wait_for_port(self.proc, self.mqtt_port, time.monotonic() + timeout, "nats-server", self.log)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None
