"""The MQTT 3.1.1 profile (docs/protocol.md §12) through real brokers: NATS's MQTT gateway (3.1.1 only,
JetStream behind it) and the project's Mosquitto with terminal and ledger at 3.1.1. Receipts are the
only acknowledgement there: a refused publish is "no receipt after N offers" → alarm, never a deletion."""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from center.ledger import Ledger, query
from device.machine import LevelPressed
from devkit import factories
from devkit.broker import NATS, Broker, NatsServer
from devkit.terminals import terminal_config, terminals
from devkit.waiting import wait_for
from protocol import codec, topics
from protocol.values import Channel, Level
from tests.device.test_delivery import rate_cases

V311 = {"HCP_MQTT_PROTOCOL": "3.1.1"}


class Center311:
    """The center's systems at MQTT 3.1.1: publishes retained state and records everything under hcp/."""

    def __init__(self, port: int, topic: str = f"{topics.PREFIX}/#", *, user: str = "", password: str = "",
                 ca: str = ""):
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"center311-{id(self)}", protocol=mqtt.MQTTv311)
        if user:
            self.c.username_pw_set(user, password)
        if ca:
            self.c.tls_set(ca_certs=ca)
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *_: subscribed.set()
        self.c.on_message = self._got
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(topic, qos=1)
        self.c.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the 3.1.1 center could not subscribe")

    def _got(self, client, userdata, msg) -> None:
        with self._lock:
            self.seen.append((msg.topic, msg.payload))

    def on(self, leaf: str) -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p in self.seen if p and t.endswith("/" + leaf)]

    def publish(self, topic: str, body: dict, retain: bool = True) -> None:
        self.c.publish(topic, codec.encode(body), qos=1, retain=retain).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def open_case(center: Center311, case_id: str, window: str = "W01") -> None:
    center.publish(f"{topics.PREFIX}/C1/window/{window}/case", factories.case("C1", window, case_id))


def offered_at_least(t, n: int) -> int:
    """Records the courier has offered n times or more (it raises `no_receipt` in the same cycle)."""
    return sum(1 for offers, _ in (t.courier.sync() or {}).values() if offers >= n)


@pytest.fixture
def nats(tmp_path):
    if not Path(NATS).exists():
        pytest.fail("nats-server is missing: `make test` installs it (Debian package nats-server)")
    n = NatsServer(tmp_path / "nats").start()
    yield n
    n.stop()


def test_a_rating_goes_through_nats_mqtt_to_the_ledger_and_its_receipt_deletes_it(nats, tmp_path):
    """Retained case (topic `hcp/v1/C1/window/W01/case` → NATS subject `hcp.v1.C1.window.W01.case`) reaches a
    terminal that connects later; its rating reaches the 3.1.1 ledger; the receipt comes back."""
    center = Center311(nats.mqtt_port)
    led = Ledger(tmp_path / "ledger.db", port=nats.mqtt_port, mqtt_version="3.1.1").start()
    try:
        open_case(center, "NATS.2026:1")  # a case id with `.` and `:` (payload only; never a topic level)
        with terminals() as start:
            t = start(terminal_config(nats.mqtt_port, tmp_path / "t", HCP_DEVICE_ID="nats1", **V311), "nats1")
            wait_for(lambda: t.online, what="terminal connected to NATS at 3.1.1")
            assert t.connection_problem is None
            wait_for(lambda: t.state.case is not None, what="the retained case through NATS")
            assert t.state.case.id == "NATS.2026:1"
            t.submit(LevelPressed(Level.VERY_SATISFIED, Channel.TOUCH))
            wait_for(lambda: t.state.last_rating_id, what="rating committed")
            wait_for(lambda: t.outbox.counts().pending == 0, what="receipt through NATS deleted the record")
            rows = query(led.db_path, "SELECT case_id, device, level FROM ratings")
            assert rows == [("NATS.2026:1", "nats1", "very_satisfied")]
            status = wait_for(lambda: [m for m in center.on("status") if m["state"] == "online"], what="status")
            assert status[-1]["device"] == "nats1"
    finally:
        led.stop()
        center.close()


def test_a_v5_terminal_against_nats_says_the_protocol_version_is_refused(nats, tmp_path):
    with terminals() as start:
        t = start(terminal_config(nats.mqtt_port, tmp_path / "t", HCP_DEVICE_ID="v5"), "v5")
        wait_for(lambda: t.connection_problem, what="a connection problem")
        assert t.connection_problem.startswith(f"127.0.0.1:{nats.mqtt_port}: protocol version refused: the broker "
                                               "does not speak MQTT 5 (see mqtt.protocol)")


def test_mosquitto_at_3_1_1_delivers_end_to_end_and_the_will_still_works(broker, tmp_path):
    center = Center311(broker.port)
    led = Ledger(tmp_path / "ledger.db", port=broker.port, mqtt_version="3.1.1").start()
    try:
        with terminals() as start:
            t = start(terminal_config(broker.port, tmp_path / "t", HCP_DEVICE_ID="m311", **V311), "m311")
            wait_for(lambda: t.online, what="online at 3.1.1")
            rate_cases(t, 5, "M311-")
            wait_for(lambda: led.stored == 5 and t.outbox.counts().pending == 0, what="5 receipted and deleted")
            assert query(led.db_path, "SELECT count(*) FROM ratings") == [(5,)]
            # The will (no properties under 3.1.1): a connection that drops without DISCONNECT → offline.
            socket.socket.shutdown(t.link.client.socket(), socket.SHUT_RDWR)
            wait_for(lambda: [m for m in center.on("status") if m["state"] == "offline"], what="the last will")
            wait_for(lambda: t.online, what="back online")
    finally:
        led.stop()
        center.close()


def test_a_publish_refused_under_3_1_1_raises_no_receipt_and_keeps_the_record(tmp_path):
    """3.1.1 has no PUBACK reason code: Mosquitto acknowledges a publish its ACL denies and drops it."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite hcp/#\ntopic deny hcp/v1/C1/device/denied/rating\n")
    (tmp_path / "b").mkdir()
    with Broker(extra=f"acl_file {acl}", workdir=str(tmp_path / "b")) as b, terminals() as start:
        led = Ledger(tmp_path / "l.db", port=b.port, mqtt_version="3.1.1").start()
        try:
            t = start(terminal_config(b.port, tmp_path / "t", HCP_DEVICE_ID="denied", HCP_OUTBOX_RECEIPT_TIMEOUT_S="1",
                                      HCP_OUTBOX_RETRY_MAX_S="1", HCP_OUTBOX_ALARM_AFTER_OFFERS="3", **V311),
                      "denied")
            wait_for(lambda: t.online, what="online")
            rate_cases(t, 2, "DENY")
            wait_for(lambda: offered_at_least(t, 3) == 2, what="both offered three times")
            assert "no_receipt" in t.alarms.active(), "3 offers without a receipt: the alarm is up"
            assert t.outbox.counts().pending == 2 and t.outbox.counts().quarantined == 0
            assert query(led.db_path, "SELECT count(*) FROM ratings") == [(0,)]
        finally:
            led.stop()


def test_no_receipt_alarm_under_v5_too_and_it_clears_when_receipts_come(broker, tmp_path):
    """The ledger is down: PUBACKs come, receipts do not. After N offers the alarm; the records stay."""
    with terminals() as start:
        t = start(terminal_config(broker.port, tmp_path / "t", HCP_DEVICE_ID="late", HCP_OUTBOX_RECEIPT_TIMEOUT_S="1",
                                  HCP_OUTBOX_RETRY_MAX_S="1", HCP_OUTBOX_ALARM_AFTER_OFFERS="2"), "late")
        wait_for(lambda: t.online, what="online")
        rate_cases(t, 3, "LATE")
        wait_for(lambda: offered_at_least(t, 2) == 3, what="all three offered twice")
        assert "no_receipt" in t.alarms.active(), "2 offers without a receipt: the alarm is up"
        assert t.outbox.counts().pending == 3
        led = Ledger(tmp_path / "l.db", port=broker.port).start()
        try:
            wait_for(lambda: t.outbox.counts().pending == 0, what="receipted after all")
            t.courier.sync()
            assert "no_receipt" not in t.alarms.active()
        finally:
            led.stop()
