"""A terminal with a list of brokers (`mqtt.hosts`): it moves to the next when one dies, stays on one
that works, and the outbox and receipts make the switch safe — every rating once in the record."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from center.ledger import Ledger, Record, query
from center.store import Store
from device import config
from devkit.broker import Broker, free_port
from devkit.terminals import terminal_config, terminals
from devkit.waiting import wait_for
from tests.device.test_delivery import rate_cases


def hosts(*ports: int) -> str:
    return ",".join(f"127.0.0.1:{p}" for p in ports)


@pytest.fixture
def two_brokers(tmp_path):
    (tmp_path / "b1").mkdir()
    (tmp_path / "b2").mkdir()
    b1 = Broker(workdir=str(tmp_path / "b1")).start()
    b2 = Broker(workdir=str(tmp_path / "b2")).start()
    yield b1, b2
    b1.stop()
    b2.stop()


@pytest.fixture
def record(tmp_path):
    store = Store(tmp_path / "ledger.db")
    yield Record(store)
    store.close()


def test_the_terminal_moves_to_the_second_broker_when_the_first_is_killed(two_brokers, record, tmp_path):
    b1, b2 = two_brokers
    # One ledger per broker, both writing one record: the two brokers are not bridged.
    ledgers = [Ledger(record, port=b.port, client_id=f"ledger-{i}").start() for i, b in enumerate((b1, b2))]
    try:
        with terminals() as start:
            t = start(terminal_config(b1.port, tmp_path / "t", HCP_DEVICE_ID="fo1",
                                      HCP_MQTT_HOSTS=hosts(b1.port, b2.port)), "fo1")
            wait_for(lambda: t.online, what="online")
            assert t.link.address == f"127.0.0.1:{b1.port}", "the first broker of the list comes first"
            rate_cases(t, 5, "FO-A")
            # rate_cases only queues on the core: "nothing pending" alone can hold before anything is committed.
            wait_for(lambda: record.stored == 5 and t.outbox.counts().pending == 0,
                     what="the first 5 receipted through broker 1")
            b1.proc.kill()  # SIGKILL: no DISCONNECT, no clean shutdown
            b1.proc.wait()
            rate_cases(t, 20, "FO-B")  # offered while the link notices and moves over
            wait_for(lambda: t.online and t.link.address == f"127.0.0.1:{b2.port}", what="online at broker 2")
            wait_for(lambda: record.stored == 25 and t.outbox.counts().pending == 0, timeout=60, what="all 25 receipted")
            rows = query(tmp_path / "ledger.db", "SELECT count(*), count(DISTINCT id) FROM ratings")
            assert rows == [(25, 25)]
            assert record.stored == 25
            assert t.outbox.counts().quarantined == 0
            # Sticky: broker 1 back does not pull the terminal away from the one that works.
            b1.start()
            rate_cases(t, 3, "FO-C")
            wait_for(lambda: record.stored == 28 and t.outbox.counts().pending == 0, what="3 more receipted")
            assert t.link.address == f"127.0.0.1:{b2.port}"
            assert query(tmp_path / "ledger.db", "SELECT count(DISTINCT id) FROM ratings") == [(28,)]
    finally:
        for led in ledgers:
            led.stop()


def test_a_dead_first_broker_is_named_and_skipped(two_brokers, record, tmp_path):
    _, b2 = two_brokers
    dead = free_port()
    led = Ledger(record, port=b2.port).start()
    try:
        with terminals() as start:
            t = start(terminal_config(b2.port, tmp_path / "t", HCP_DEVICE_ID="fo2",
                                      HCP_MQTT_HOSTS=hosts(dead, b2.port)), "fo2")
            wait_for(lambda: t.online, what="online at the second broker")
            assert t.link.address == f"127.0.0.1:{b2.port}"
            rate_cases(t, 3, "FO-D")
            wait_for(lambda: record.stored == 3 and t.outbox.counts().pending == 0, what="receipted")
    finally:
        led.stop()


def test_a_lost_broker_is_named_in_last_error(two_brokers, tmp_path):
    b1, _ = two_brokers
    dead = free_port()
    with terminals() as start:
        t = start(terminal_config(b1.port, tmp_path / "t", HCP_DEVICE_ID="fo3",
                                  HCP_MQTT_HOSTS=hosts(b1.port, dead)), "fo3")
        wait_for(lambda: t.online, what="online")
        b1.proc.kill()
        b1.proc.wait()
        problem = wait_for(lambda: t.link.last_error and str(dead) in t.link.last_error and t.link.last_error,
                           what="the second broker's failure named")
        assert problem.startswith(f"127.0.0.1:{dead}: connection refused")


@pytest.mark.parametrize("text, part", [
    ("a:1,b", "'b' is not host:port"),
    ("a:1,,b:2", "'' is not host:port"),
    ("a:0", "'a:0': the port must be a number from 1 to 65535"),
    ("a:x", "'a:x': the port must be a number"),
    ("a b:1", "'a b:1' is not host:port"),
])
def test_a_wrong_hosts_entry_is_named(text, part):
    with pytest.raises(config.ConfigError) as e:
        config.load([], {"HCP_MQTT_HOSTS": text})
    assert e.value.problems[0].startswith("mqtt.hosts (environment): ") and part in e.value.problems[0]


def test_without_hosts_the_single_host_and_port_are_the_list():
    cfg = config.load([], {"HCP_MQTT_HOST": "broker.example", "HCP_MQTT_PORT": "8883"})
    assert cfg.mqtt.brokers() == [("broker.example", 8883)]


NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,30}", fullmatch=True)


@given(st.lists(st.tuples(NAME, st.integers(1, 65535)), min_size=1, max_size=5), st.sampled_from([",", ", ", " ,"]))
def test_hosts_round_trip(entries, sep):
    assert config.parse_hosts(sep.join(f"{h}:{p}" for h, p in entries)) == entries


@given(st.text(max_size=60))
def test_any_hosts_text_parses_or_names_the_entry(text):
    try:
        got = config.parse_hosts(text)
    except ValueError as e:
        assert "host:port" in str(e) or "the port must be" in str(e)
    else:
        assert all(isinstance(h, str) and h and 1 <= p <= 65535 for h, p in got)

