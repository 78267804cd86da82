"""Fixtures for the driver tests: gpiozero's MockFactory, a temp sysfs tree, a file-backed framebuffer,
a local TCP "printer", a fake clock, sample states and an offline Terminal."""
from __future__ import annotations

import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import Callable

import pytest
from gpiozero.pins.mock import MockFactory

from device.machine import Phase, State
from device.qr import DynamicQr, matrix
from devkit import factories
from devkit.broker import free_port  # noqa: F401 - also used by the printer tests
from devkit.clock import FakeClock
from devkit.terminals import terminal_config, terminals

URL = "https://hcp.example.gov.cn/r?t=1~demo~C1~SH0001~W01~S0101~t1~1790000000~AbCdEfGh~0123456789abcdefABCDEF"
STAFF = factories.staff()
CATALOG = factories.catalog_model()


def make_qr(url: str = URL, expires: int = 1790000000) -> DynamicQr:
    return DynamicQr(url, tuple(map(tuple, matrix(url))), expires)


def case_state(case_id: str = "SH0001", **changes) -> State:
    case = factories.case_model(case_id)
    base = dict(phase=Phase.CASE, case=case, qr=make_qr(), staff=STAFF, window_name="一号窗口", catalog=CATALOG)
    base.update(changes)
    return State(**base)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory():
    f = MockFactory()
    yield f
    f.reset()


@pytest.fixture
def sysfs(tmp_path) -> Callable[..., Path]:
    """`sysfs(name, max_brightness, type=None, bl_power=True)` → the node dir under tmp/sys/class/backlight."""
    root = tmp_path / "sys"

    def node(name: str, max_brightness: int = 255, type: str | None = None, bl_power: bool = True,
             brightness: int | None = None) -> Path:
        d = root / "class" / "backlight" / name
        d.mkdir(parents=True)
        (d / "max_brightness").write_text(f"{max_brightness}\n")
        (d / "brightness").write_text(f"{max_brightness if brightness is None else brightness}\n")
        (d / "actual_brightness").write_text(f"{max_brightness}\n")
        if bl_power:
            (d / "bl_power").write_text("0\n")
        if type:
            (d / "type").write_text(type + "\n")
        return d

    node.root = root  # type: ignore[attr-defined]
    return node


@pytest.fixture
def fb_file(tmp_path) -> Callable[[int, int], Path]:
    def make(width: int = 240, height: int = 240) -> Path:
        path = tmp_path / f"fb-{width}x{height}"
        path.write_bytes(bytes(width * height * 2))
        return path
    return make


class TcpPrinter:
    """A loopback 'network printer': records bytes; answers DLE EOT n with `status[n]` unless silent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.status: dict[int, int] = {1: 0x12, 2: 0x12, 4: 0x12}
        self.silent = False
        self.received = bytearray()
        self.connections = 0
        self.hold = threading.Event()  # while set and silent, the printer sits on the connection
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def data(self) -> bytes:
        with self._lock:
            return bytes(self.received)

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        pending = b""
        with conn:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                with self._lock:
                    self.received += chunk
                pending = (pending + chunk)[-3:] if not self.silent else b""
                if not self.silent and len(pending) == 3 and pending[:2] == b"\x10\x04":
                    conn.sendall(bytes([self.status.get(pending[2], 0x12)]))
                    pending = b""

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(timeout=2)


@pytest.fixture
def tcp_printer():
    p = TcpPrinter()
    yield p
    p.close()


@pytest.fixture
def offline_terminal(tmp_path):
    """`offline_terminal(**HCP_env)` → a started Terminal whose broker is not there (offline, as at night)."""
    with terminals() as start:
        yield lambda name="t1", **env: start(terminal_config(
            free_port(), tmp_path / name, HCP_DEVICE_ID=name, HCP_MQTT_RECONNECT_MIN_S="5",
            HCP_MQTT_RECONNECT_MAX_S="10", **env), name)


def local(h: int, m: int = 0, weekday: int = 0) -> datetime:
    """A local time on a given weekday (0 = Monday) of a fixed week."""
    return datetime(2026, 11, 23 + weekday, h, m)
