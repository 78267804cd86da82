"""The terminal's MQTT session with the center broker (paho-mqtt 2.x, MQTT v5 only).

Persistent session (clean start off, session expiry set), a retained online/offline status with
the offline one as last will, jittered exponential reconnect. It delivers nothing by itself: the
courier decides what to publish; every PUBACK reason code is handed back to it, because paho calls a
broker refusal (0x87 Not authorized …) "published" too.
"""
from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.config import MqttSection

log = logging.getLogger(__name__)

PubackHandler = Callable[[int, int, str], None]        # mid, reason code value, reason name
MessageHandler = Callable[[str, bytes, bool], None]    # topic, payload, retained
ConnectionHandler = Callable[[bool, str], None]        # up?, reason


def no_delay(client, userdata, sock) -> None:
    """Ratings and acks are small: send them now, not after Nagle's wait for the previous ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # not a TCP socket (a test double, a proxy): nothing to tune


def backoff(attempt: int, low: float, high: float) -> float:
    """Exponential backoff with jitter: uniformly between half and all of low·2^attempt, capped."""
    cap = min(high, low * (2 ** min(attempt, 30)))
    return random.uniform(cap / 2, cap)


class Link:
    def __init__(self, cfg: MqttSection, client_id: str, *, will_topic: str | None, will_payload: bytes,
                 subscriptions: list[str], on_message: MessageHandler, on_puback: PubackHandler,
                 on_connection: ConnectionHandler, on_connected_publish: Callable[[], None] = lambda: None,
                 on_refused: Callable[[int], None] = lambda code: None, persistent: bool = True):
        self.cfg = cfg
        self.connected = threading.Event()
        self._subs = list(subscriptions)
        self._subs_lock = threading.Lock()
        self._on_message = on_message
        self._on_puback = on_puback
        self._on_connection = on_connection
        self._on_connected_publish = on_connected_publish
        self._on_refused = on_refused
        self._persistent = persistent
        self._attempt = 0
        self._stopping = False
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        c.enable_logger(logging.getLogger("paho"))
        c.suppress_exceptions = True   # a bug in a handler must not kill the network thread
        c.max_inflight_messages_set(cfg.max_inflight)
        c.max_queued_messages_set(0)
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password or None)
        if cfg.tls:
            if cfg.ca_pem:  # the CA came inline (the center's enrolment file), not as a file
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=cfg.ca_pem)
                if cfg.cert_file:
                    ctx.load_cert_chain(cfg.cert_file, cfg.key_file or None)
                c.tls_set_context(ctx)
            else:
                c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None,
                          keyfile=cfg.key_file or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if will_topic:
            will_props = Properties(PacketTypes.WILLMESSAGE)
            c.will_set(will_topic, will_payload, qos=1, retain=True, properties=will_props)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_connect_fail = self._connect_failed
        c.on_message = self._message
        c.on_publish = self._published
        c.on_socket_open = no_delay
        c.reconnect_delay_set(backoff(0, cfg.reconnect_min_s, cfg.reconnect_max_s), cfg.reconnect_max_s)
        self.client = c

    def set_credentials(self, username: str, password: str) -> None:
        """Used from the next connection attempt on (a rotated password, an account just granted)."""
        self.client.username_pw_set(username, password)

    def set_subscriptions(self, topics: list[str]) -> None:
        """Subscribe to what is new, unsubscribe from what is gone; kept for every reconnect."""
        with self._subs_lock:
            old, self._subs = self._subs, list(topics)
        gone = [t for t in old if t not in topics]
        new = [t for t in topics if t not in old]
        if self.connected.is_set():
            if gone:
                self.client.unsubscribe(gone)
            for topic in new:
                self.client.subscribe(topic, qos=1)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s if self._persistent else 0
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s,
                                  clean_start=not self._persistent, properties=props)
        self.client.loop_start()

    def stop(self, final: tuple[str, bytes] | None = None) -> None:
        """Disconnect cleanly; `final` (topic, payload) is published retained first (e.g. offline)."""
        if final and self.connected.is_set():
            info = self.client.publish(final[0], final[1], qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self._stopping = True
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                expiry_s: int | None = None) -> int | None:
        """Queue one message; its mid, or None when paho refused it.

        Not being connected is no refusal: paho keeps a QoS 1 message and sends it on reconnect.
        """
        props = None
        if expiry_s:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry_s
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return None
        return info.mid

    # ---- paho callbacks (network thread) --------------------------------------------------------

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            self._on_connection(False, f"refused: {reason}")
            self._next_delay()
            self._on_refused(reason.value)
            return
        self._attempt = 0
        self.client.reconnect_delay_set(backoff(0, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s),
                                        self.cfg.reconnect_max_s)
        log.info("connected to %s:%s (session present: %s)", self.cfg.host, self.cfg.port, flags.session_present)
        with self._subs_lock:
            subs = list(self._subs)
        for topic in subs:
            client.subscribe(topic, qos=1)
        self.connected.set()
        self._on_connected_publish()
        self._on_connection(True, "connected")

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        self._next_delay()
        if was_up:
            (log.info if self._stopping else log.warning)("disconnected: %s", reason)
        self._on_connection(False, str(reason))

    def _connect_failed(self, client, userdata) -> None:
        self._next_delay()
        self._on_connection(False, "connect failed")

    def _next_delay(self) -> None:
        self._attempt += 1
        d = backoff(self._attempt, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        self.client.reconnect_delay_set(d, d)  # paho waits exactly d before its next attempt

    def _message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_message(msg.topic, msg.payload, msg.retain)
        except Exception:  # noqa: BLE001 - never let one message stop the session
            log.exception("handler failed for a message on %s", msg.topic)

    def _published(self, client, userdata, mid, reason, properties) -> None:
        self._on_puback(mid, reason.value, reason.getName())
