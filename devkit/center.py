"""A fake center for tests and benchmarks: publishes catalog, duty, cases and bindings (retained, QoS 1)
and records everything under `hcp/`, as the center's systems would see it."""
from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devkit import factories
from protocol import codec, topics
from protocol.transport import no_delay


class Center:
    """Stands in for the center's systems at one window: publishes its state; sees every message."""

    def __init__(self, port: int, center: str = "C1", window: str = "W01"):
        self.center, self.window = center, window
        self.topics = topics.Topics(center, window, "+")
        self.seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-center-{id(self)}",
                             protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_socket_open = no_delay
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *_: subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(f"{topics.PREFIX}/#", qos=1)
        self.c.loop_start()
        if not subscribed.wait(10):  # messages published before the SUBACK would be missed
            raise RuntimeError("test center could not subscribe")

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.seen.append((msg.topic, msg.payload))

    def messages_on(self, leaf_or_topic: str) -> list[dict]:
        """Everything seen on a whole topic, or on every topic ending in this leaf."""
        with self._lock:
            return [json.loads(p) for t, p in self.seen
                    if p and (t == leaf_or_topic or t.endswith("/" + leaf_or_topic))]

    def publish(self, topic: str, body: dict | bytes, retain: bool = True) -> None:
        payload = body if isinstance(body, (bytes, bytearray)) else codec.encode(body)
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def catalog(self, version: str = factories.CATALOG_VERSION) -> None:
        self.publish(self.topics.catalog, factories.catalog(self.center, version))

    def duty(self, staff: dict | None = factories.STAFF[0]) -> None:
        self.publish(self.topics.duty, factories.duty(self.center, self.window, staff))

    def case(self, case_id: str, state: str = "open", **extra) -> dict:
        body = factories.case(self.center, self.window, case_id, state, **extra)
        self.publish(self.topics.case, body)
        return body

    def bind(self, device: str, state: str = "active", window: str | None = None, **extra) -> dict:
        """The binding provisioning would publish for `device` (retained)."""
        body = factories.binding(self.center, device, state, window, **extra)
        self.publish(topics.Topics(self.center, window or self.window, device).binding, body)
        return body

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
