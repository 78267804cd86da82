"""Fixtures: real Mosquitto brokers (the project's template, free loopback ports), a real ledger,
in-process terminals with their own SQLite outbox."""
from __future__ import annotations

import threading

import pytest

from center.broker import Broker
from center.ledger import Ledger
from device.terminal import Terminal
from tests.helpers import Center, terminal_config, wait_for


@pytest.fixture
def broker(tmp_path):
    (tmp_path / "broker").mkdir()
    b = Broker(workdir=str(tmp_path / "broker")).start()
    yield b
    b.stop()


@pytest.fixture
def ledger(broker, tmp_path):
    led = Ledger(tmp_path / "ledger.db", port=broker.port).start()
    yield led
    led.stop()


@pytest.fixture
def center(broker):
    c = Center(broker.port)
    yield c
    c.close()


@pytest.fixture
def make_terminal(broker, tmp_path):
    """`make_terminal(name="t1", **HCP_env)` → a started Terminal with its core thread running."""
    started: list[Terminal] = []

    def make(name: str = "t1", port: int | None = None, **env: str) -> Terminal:
        cfg = terminal_config(port or broker.port, tmp_path / name, HCP_DEVICE_ID=name, **env)
        term = Terminal(cfg, name)
        term.start()
        threading.Thread(target=term.run, name=f"core-{name}", daemon=True).start()
        started.append(term)
        return term

    yield make
    for t in started:
        t.stop()


__all__ = ["wait_for"]
