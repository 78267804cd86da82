"""Shared test helpers: waiting on conditions, a center-side publisher, terminal configs."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from center.simulator import CATALOG, STAFF
from device import config, ids, messages
from device.link import no_delay


def wait_for(pred: Callable[[], object], timeout: float = 20, what: str = "condition") -> object:
    """Poll until `pred()` is truthy; fail after `timeout` (a hang guard, not a speed assertion)."""
    end = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_terminal(cfg: config.Config, name: str):
    """A Terminal with its network, courier and core threads running."""
    from device.terminal import Terminal
    term = Terminal(cfg, name)
    term.start()
    threading.Thread(target=term.run, name=f"core-{name}", daemon=True).start()
    return term


@contextmanager
def terminals():
    """`with terminals() as start:` — `start(cfg, name)` starts one; all are stopped at the end."""
    started = []

    def start(cfg: config.Config, name: str):
        started.append(start_terminal(cfg, name))
        return started[-1]

    try:
        yield start
    finally:
        for t in started:
            t.stop()


TEST_QR_KEY = "74657374207172206b6579206f6e6c79" * 2  # the test suite's own QR signing key (not the demo key)


def terminal_config(port: int, data_dir, **env: str) -> config.Config:
    base = {"HCP_MQTT_PORT": str(port), "HCP_DEVICE_DATA_DIR": str(data_dir), "HCP_CENTER_ID": "C1",
            "HCP_CENTER_WINDOW": "W01", "HCP_MQTT_RECONNECT_MIN_S": "0.2", "HCP_MQTT_RECONNECT_MAX_S": "1",
            "HCP_OUTBOX_RECEIPT_TIMEOUT_S": "2", "HCP_OUTBOX_RETRY_MAX_S": "4", "HCP_QR_KEY": TEST_QR_KEY,
            "HCP_QR_KEY_ID": "test"}
    base.update({k.upper() if k.startswith("HCP_") else k: v for k, v in env.items()})
    return config.load([], base)


class Center:
    """A test stand-in for the center's systems: publishes catalog, duty and cases; sees everything."""

    def __init__(self, port: int, center: str = "C1", window: str = "W01"):
        self.center, self.window = center, window
        self.topics = messages.Topics(center, window, "+")
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-center-{id(self)}",
                             protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_socket_open = no_delay
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *_: subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"{messages.PREFIX}/#", qos=1)
        self.c.loop_start()
        if not subscribed.wait(10):  # messages published before the SUBACK would be missed
            raise RuntimeError("test center could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.seen.append((msg.topic, msg.payload))

    def messages_on(self, leaf_or_topic: str) -> list[dict]:
        """Everything seen on a whole topic, or on every topic ending in this leaf."""
        import json
        with self._lock:
            return [json.loads(p) for t, p in self.seen
                    if p and (t == leaf_or_topic or t.endswith("/" + leaf_or_topic))]

    def publish(self, topic: str, body: dict | bytes, retain: bool = True) -> None:
        payload = body if isinstance(body, (bytes, bytearray)) else messages.encode(body)
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def catalog(self, version: str = "2026.1") -> None:
        self.publish(self.topics.catalog, {**CATALOG, "center": self.center, "version": version})

    def duty(self, staff: dict | None = STAFF[0]) -> None:
        self.publish(self.topics.duty, {"v": 1, "type": "duty", "center": self.center, "window": self.window,
                                        "window_name": "一号窗口", "staff": staff})

    def case(self, case_id: str, state: str = "open", **extra) -> dict:
        body = {"v": 1, "type": "case", "center": self.center, "window": self.window, "state": state,
                "case": {"id": case_id, "item_code": "310115-001", "item_name": "居住证办理"},
                "staff": STAFF[0], "applicant": {"token": "ap_0123456789abcdef", "display": "张*"},
                "opened_at": ids.wall_time(), **extra}  # now: the terminal refuses cases older than case.max_age_h
        self.publish(self.topics.case, body)
        return body

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def props_expiry(seconds: int) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = seconds
    return p
