"""Fixtures from the development kit (devkit/): real Mosquitto brokers (the project's template, free loopback
ports), a real ledger, a fake center, in-process terminals with their own SQLite outbox."""
from __future__ import annotations

import pytest

from center.ledger import Ledger
from devkit.broker import Broker
from devkit.center import Center
from devkit.terminals import terminal_config, terminals


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
    with terminals() as start:
        yield lambda name="t1", port=None, **env: start(
            terminal_config(port or broker.port, tmp_path / name, HCP_DEVICE_ID=name, **env), name)
