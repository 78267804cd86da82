"""The simulated case feed: opens and closes cases on the windows (retained case topic, QoS 1), as the
center's case system does through the center service. One MQTT connection for every window."""
from __future__ import annotations

import heapq
import random
import threading
import time
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devkit import factories
from protocol import codec, topics
from protocol.transport import no_delay

CLOSE_AFTER_S = 20.0  # a case stays open this long (the citizen rates within seconds)
SETUP_PER_S = 200.0   # windows whose duty is published a second before the steady state


class CaseFeed:
    """`run(windows, every=(lo, hi), seconds)` opens a case per window every lo–hi seconds (the first one
    at a random point of the first interval), closes each CLOSE_AFTER_S later; counts what it published."""

    def __init__(self, host: str, port: int, center: str, mqtt_version: str = "5"):
        self.center = center
        v5 = mqtt_version == "5"
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-feed-{random.getrandbits(32):08x}",
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        self.c.on_socket_open = no_delay
        self.c.max_inflight_messages_set(1000)
        up = threading.Event()
        self.c.on_connect = lambda *a: up.set()
        self.c.connect(host, port)
        self.c.loop_start()
        if not up.wait(20):
            raise RuntimeError(f"the case feed could not connect to {host}:{port}")
        self.opened = self.closed = 0
        self._n = 0
        self._stop = threading.Event()

    def publish(self, window: str, body: dict) -> None:
        self.c.publish(topics.Topics(self.center, window, "+").case, codec.encode(body), qos=1, retain=True)

    def setup(self, windows: list[str], per_s: float = SETUP_PER_S) -> None:
        """Catalog once, and duty at every window (retained), as the center publishes them: `per_s` windows
        a second (10 s for 2,000), not all in one go. (Pacing did not stop the start-up collapse it was
        added for — that was the GIL's switch interval, `sim.py` — but it spares the shared CPUs a burst.)"""
        cat = topics.Topics(self.center, "W", "+").catalog
        self.c.publish(cat, codec.encode(factories.catalog(self.center)), qos=1, retain=True)
        t0 = time.monotonic()
        for i, w in enumerate(windows):
            self.c.publish(topics.Topics(self.center, w, "+").duty, codec.encode(factories.duty(self.center, w)),
                           qos=1, retain=True)
            ahead = t0 + (i + 1) / per_s - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)

    def open_case(self, window: str) -> str:
        self._n += 1
        case_id = f"SH{datetime.now():%Y%m%d}{self._n:07d}"
        self.publish(window, factories.case(self.center, window, case_id, item=random.choice(factories.ITEMS)))
        self.opened += 1
        return case_id

    def close_case(self, window: str, case_id: str) -> None:
        self.publish(window, {"v": 1, "type": "case", "center": self.center, "window": window, "state": "closed",
                              "case": {"id": case_id}})
        self.closed += 1

    def run(self, windows: list[str], every: tuple[float, float], seconds: float) -> None:
        """Blocks for `seconds`: each window gets a case every `every` seconds (uniform), closed later."""
        end = time.monotonic() + seconds
        now = time.monotonic()
        heap: list[tuple[float, int, str, str]] = [(now + random.uniform(0, every[1]), i, w, "")
                                                   for i, w in enumerate(windows)]
        heapq.heapify(heap)
        k = len(windows)
        close_after = min(CLOSE_AFTER_S, 0.8 * every[0])  # closed before the window's next case opens
        while heap and not self._stop.is_set():
            when, _, window, case_id = heap[0]
            if when > end and not case_id:
                heapq.heappop(heap)  # no new case after the end; closes still go out
                continue
            wait = when - time.monotonic()
            if wait > 0:
                self._stop.wait(min(wait, 0.5))
                continue
            heapq.heappop(heap)
            k += 1
            if case_id:
                self.close_case(window, case_id)
            else:
                cid = self.open_case(window)
                heapq.heappush(heap, (when + close_after, k, window, cid))
                k += 1
                heapq.heappush(heap, (when + random.uniform(*every), k, window, ""))

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()
