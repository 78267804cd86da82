"""Sends the MQTT messages the center owes (`notices` rows, written with the change that owes them): a case
rated on a phone published `rated` (retained) so the terminal at its window shows "rated on the phone",
and the windows' cases and duty from the case feed (retained).

A row is marked sent only when the broker acknowledged it (PUBACK; under MQTT 5 with a reason code below
0x80). Until then it is offered again, in order, after any outage or restart: duplicates on the wire are
fine, a lost `rated` is not.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select, update

from center.store import Store
from center.store.tables import notices
from protocol.transport import no_delay

log = logging.getLogger("notices")

BATCH = 100
ACK_TIMEOUT_S = 10


class NoticeSender:
    """Drains `notices` over its own MQTT connection (so every acknowledgement on it is one of ours)."""

    def __init__(self, store: Store, host: str = "127.0.0.1", port: int = 1883, *, username: str = "",
                 password: str = "", ca: str | None = None, mqtt_version: str = "5",
                 client_id: str = "center-notices", poll_s: float = 0.05,
                 on_connect: Callable[[], object] | None = None):
        self.store, self.poll_s = store, poll_s
        v5 = mqtt_version == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        if username:
            client.username_pw_set(username, password)
        if ca:
            client.tls_set(ca_certs=ca)
        client.on_socket_open = no_delay
        client.reconnect_delay_set(0.5, 10)
        client.max_inflight_messages_set(BATCH)
        self.client, self.host, self.port = client, host, port
        self.sent = 0
        self.refused = 0
        self._refused_last = False
        # mid → reason code of the acks of this round. (Never hold a lock of ours while calling paho: its
        # network thread calls on_publish holding paho's own lock, which publish() needs.)
        self._acks: dict[int, int] = {}
        self._cv = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notices", daemon=True)
        client.on_publish = self._on_publish
        self.on_connect = on_connect
        client.on_connect = self._connected

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            return
        if self.on_connect is not None:  # on paho's thread: a short write of rows, then the loop sends them
            try:
                self.on_connect()
            except Exception:  # noqa: BLE001 - a failed re-publish must not break the connection
                log.exception("could not queue the re-publish after connecting")
        self._wake.set()

    def wake(self) -> None:
        """Something was just written: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> "NoticeSender":
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._cv:
            self._acks[mid] = getattr(reason_code, "value", 0)
            self._cv.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the sender; rows wait
                log.exception("could not send notices; trying again")
                busy = False
                self._stop.wait(1)
            if not busy:
                # Refused rows wait longer before they are offered again (an ACL, not a hiccup).
                self._wake.wait(5 if self._refused_last else self.poll_s)
                self._wake.clear()

    def run_once(self) -> bool:
        """Send the oldest unsent notices; True if any went out."""
        with self.store.read() as conn:
            rows = conn.execute(select(notices.c.id, notices.c.topic, notices.c.payload, notices.c.retain)
                                .where(notices.c.sent_at.is_(None)).order_by(notices.c.id).limit(BATCH)).all()
        if not rows or not self.client.is_connected():
            return False
        with self._cv:
            self._acks.clear()  # a late ack of a round given up on is not this round's
        pending: dict[int, int] = {}
        done: list[int] = []
        refused = False
        deadline = time.monotonic() + ACK_TIMEOUT_S
        for row in rows:
            info = self.client.publish(row.topic, bytes(row.payload), qos=1, retain=bool(row.retain))
            if info.rc != 0:
                break  # not connected (any more): the rest waits for the next round
            pending[info.mid] = row.id
        with self._cv:
            while pending and time.monotonic() < deadline and not self._stop.is_set():
                for mid in [m for m in pending if m in self._acks]:
                    code = self._acks.pop(mid)
                    if code >= 0x80:
                        self.refused += 1
                        refused = True
                        log.error("the broker refused notice %d (reason code 0x%02x); it is offered again",
                                  pending[mid], code)
                    else:
                        done.append(pending[mid])
                    del pending[mid]
                if pending:
                    self._cv.wait(0.2)
        self._refused_last = refused and not done
        if done:
            with self.store.write() as conn:
                conn.execute(update(notices).where(notices.c.id.in_(done)).values(sent_at=time.time()))
            self.sent += len(done)
        return bool(done)
