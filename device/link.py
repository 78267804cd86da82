"""The terminal's MQTT session with the center broker (paho-mqtt 2.x; MQTT 5, or the 3.1.1 profile).

Persistent session (v5: clean start off, session expiry set; 3.1.1: clean session off), a retained
online/offline status with the offline one as last will, jittered exponential reconnect. It delivers
nothing by itself: the courier decides what to publish; every PUBACK reason code is handed back to it,
because paho calls a broker refusal (0x87 Not authorized …) "published" too. (Under 3.1.1 a PUBACK
has no reason code: a refused publish looks delivered, and only the missing receipt tells.)

Every failed connection attempt is described in words with host:port (`Link.last_error`) and logged,
rate-limited: the first failure, each change of cause, then once a minute.

Several brokers (`mqtt.hosts`, a cluster): the link stays on the one that works; when a connection attempt
fails or a working connection is lost it moves to the next (after the same jittered delay). Switching is
safe because the courier re-offers whatever has no receipt: a duplicate on the wire is stored once.
"""
from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device.config import MqttSection
from protocol.transport import backoff, no_delay

log = logging.getLogger(__name__)

PubackHandler = Callable[[int, int, str], None]        # mid, reason code value, reason name
MessageHandler = Callable[[str, bytes, bool], None]    # topic, payload, retained
ConnectionHandler = Callable[[bool, str], None]        # up?, reason
PROTOCOLS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
LOG_EVERY_S = 60.0  # a cause that does not change is logged again this often

# CONNACK refusals in words (paho hands 3.1.1 return codes over as the v5 reason codes they map to).
REFUSALS = {
    0x84: "protocol version refused: the broker does not speak MQTT {version} (see mqtt.protocol)",
    0x85: "client id refused",
    0x86: "bad credentials: user name or password refused",
    0x87: "bad credentials or no access: the broker does not authorize this account",  # Mosquitto's wrong password
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
}


class QuietPaho(logging.Filter):
    """Drops paho's ERROR "Client is not connected …", logged after every failed attempt: the link
    reports each attempt itself, with host, port and cause (a later reader takes paho's line for a fault)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


def quiet_paho(logger: logging.Logger) -> logging.Logger:
    """Attach `QuietPaho` once to the logger handed to paho's `enable_logger`."""
    if not any(isinstance(f, QuietPaho) for f in logger.filters):
        logger.addFilter(QuietPaho())
    return logger


def describe_failure(exc: BaseException | None, tls: bool = False) -> str:
    """Why a TCP/TLS connection could not be made, in words."""
    if isinstance(exc, socket.gaierror):
        return f"DNS failure: the host name does not resolve ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing listens on that port (or a firewall rejects it)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS failure: the server certificate is not accepted ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failure: {exc.reason or exc} (is this a TLS port?)"
    if tls and isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "TLS failure: the server hung up during the TLS handshake (is this a TLS port?)"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout: no answer to the TCP connection"
    if isinstance(exc, OSError):
        return f"network error: {exc.strerror or exc}"
    return f"connection failed: {exc}" if exc else "connection failed"


class Link:
    def __init__(self, cfg: MqttSection, client_id: str, *, will_topic: str | None, will_payload: bytes,
                 subscriptions: list[str], on_message: MessageHandler, on_puback: PubackHandler,
                 on_connection: ConnectionHandler, on_connected_publish: Callable[[], None] = lambda: None,
                 on_refused: Callable[[int], None] = lambda code: None, persistent: bool = True):
        self.cfg = cfg
        self.brokers = cfg.brokers()
        self._current = 0                    # index into `brokers` of the one in use (or being tried)
        self.connected = threading.Event()
        self._subs = list(subscriptions)
        self._subs_lock = threading.Lock()
        self._on_message = on_message
        self._on_puback = on_puback
        self._on_connection = on_connection
        self._on_connected_publish = on_connected_publish
        self._on_refused = on_refused
        self._persistent = persistent
        self._v5 = cfg.protocol == "5"
        self._attempt = 0
        self._stopping = False
        self.last_error: str | None = None   # the latest connection problem in words; None while connected
        self._failures = 0                   # failed attempts since the last connection
        self._logged: tuple[str, float] = ("", -1e18)  # (problem, when) last logged
        self._awaiting_connack = False
        # 3.1.1 has no clean start or session expiry: clean session off keeps subscriptions and queued messages
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=PROTOCOLS[cfg.protocol],
                        clean_session=None if self._v5 else not persistent)
        c.enable_logger(quiet_paho(logging.getLogger("paho")))
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
            will_props = Properties(PacketTypes.WILLMESSAGE) if self._v5 else None
            c.will_set(will_topic, will_payload, qos=1, retain=True, properties=will_props)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_connect_fail = self._connect_failed
        c.on_message = self._message
        c.on_publish = self._published
        c.on_subscribe = self._subacked
        self._pending_subs: dict[int, str] = {}  # SUBSCRIBE mid → topic, until its SUBACK
        self._pending_lock = threading.Lock()
        c.on_socket_open = self._socket_open
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
                self._subscribe(topic)

    def _subscribe(self, topic: str) -> None:
        # From a timer thread the SUBACK may be handled before subscribe() returns: the lock makes
        # _subacked wait until the mid is known, or a refusal would pass unseen and no receipt arrive.
        with self._pending_lock:
            rc, mid = self.client.subscribe(topic, qos=1)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._pending_subs[mid] = topic

    def _subacked(self, client, userdata, mid, reason_codes, properties) -> None:
        """A refused subscription is tried again later: without it no receipt arrives. (A NATS node whose
        JetStream is re-electing its leaders answers 0x80 for a while.)"""
        with self._pending_lock:
            topic = self._pending_subs.pop(mid, None)
        if topic is None or not any(rc.is_failure for rc in reason_codes):
            return
        delay = backoff(self._attempt + 1, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        log.warning("the broker at %s refused the subscription to %s (%s); trying again in %.1f s", self.address,
                    topic, reason_codes[0], delay)
        timer = threading.Timer(delay, self._resubscribe, args=(topic,))
        timer.daemon = True
        timer.start()

    def _resubscribe(self, topic: str) -> None:
        with self._subs_lock:
            wanted = topic in self._subs
        if wanted and self.connected.is_set() and not self._stopping:
            self._subscribe(topic)

    # ---- lifecycle ------------------------------------------------------------------------------

    @property
    def broker(self) -> tuple[str, int]:
        """(host, port) of the broker in use, or being tried."""
        return self.brokers[self._current]

    @property
    def address(self) -> str:
        """host:port of the broker in use, or being tried."""
        host, port = self.broker
        return f"{host}:{port}"

    def start(self) -> None:
        host, port = self.brokers[self._current]
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s if self._persistent else 0
            self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s,
                                      clean_start=not self._persistent, properties=props)
        else:
            self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def _move_on(self) -> None:
        """Aim paho's next attempt at the next broker of the list (no-op with one broker)."""
        if len(self.brokers) < 2 or self._stopping:
            return
        self._current = (self._current + 1) % len(self.brokers)
        # paho's public host/port setters refuse while its reconnect loop owns the connection state; the
        # loop reads these two fields at its next attempt (paho-mqtt 2.x).
        self.client._host, self.client._port = self.brokers[self._current]
        log.info("next connection attempt: %s", self.address)

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
        Under 3.1.1 there are no properties: `expiry_s` is dropped.
        """
        props = None
        if expiry_s and self._v5:
            props = Properties(PacketTypes.PUBLISH)
            props.MessageExpiryInterval = expiry_s
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return None
        return info.mid

    # ---- paho callbacks (network thread) --------------------------------------------------------

    def _socket_open(self, client, userdata, sock) -> None:
        self._awaiting_connack = True
        no_delay(client, userdata, sock)

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        self._awaiting_connack = False
        if reason.is_failure:
            words = REFUSALS.get(reason.value, "refused by the broker")
            self._failed(f"{words.format(version=self.cfg.protocol)} (CONNACK 0x{reason.value:02x} {reason})",
                         logging.ERROR)
            self._on_connection(False, f"refused: {reason}")
            self._next_delay()
            self._on_refused(reason.value)
            return
        self._attempt = 0
        self.client.reconnect_delay_set(backoff(0, self.cfg.reconnect_min_s, self.cfg.reconnect_max_s),
                                        self.cfg.reconnect_max_s)
        after = f" after {self._failures} failed attempts" if self._failures else ""
        log.info("connected to %s (MQTT %s, session present: %s)%s", self.address, self.cfg.protocol,
                 flags.session_present, after)
        self.last_error, self._failures, self._logged = None, 0, ("", -1e18)
        with self._subs_lock:
            subs = list(self._subs)
        self._pending_subs.clear()  # SUBACKs of a lost connection never come
        for topic in subs:
            self._subscribe(topic)
        self.connected.set()
        self._on_connected_publish()
        self._on_connection(True, "connected")

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        was_up = self.connected.is_set()
        self.connected.clear()
        self._next_delay()
        if was_up:
            (log.info if self._stopping else log.warning)("disconnected from %s: %s", self.address, reason)
            if not self._stopping:
                self.last_error = f"connection lost at {self.address}: {reason}"
        elif self._awaiting_connack and not self._stopping:  # TCP (and TLS) worked, MQTT did not
            self._failed(self._before_connack(str(reason)))
        self._awaiting_connack = False
        self._move_on()  # (a CONNACK refusal ends here too)
        self._on_connection(False, str(reason))

    def _before_connack(self, reason: str) -> str:
        if reason == "Keep alive timeout":
            return f"timeout: no MQTT answer within {self.cfg.keepalive_s} s (not an MQTT broker?)"
        if reason == "Protocol error":
            return "not an MQTT broker: it answered with something that is not MQTT"
        return (f"not an MQTT broker, or one that does not speak MQTT {self.cfg.protocol}: "
                "it closed the connection without a CONNACK")

    def _connect_failed(self, client, userdata) -> None:
        # paho calls this from inside its `except OSError`: the exception is still current here.
        self._failed(describe_failure(sys.exc_info()[1], self.cfg.tls))
        self._next_delay()
        self._move_on()
        self._on_connection(False, "connect failed")

    def _failed(self, problem: str, level: int = logging.WARNING) -> None:
        """One failed attempt: remembered for the maintenance screen, logged when new or once a minute."""
        self.last_error = f"{self.address}: {problem}"
        self._failures += 1
        now = time.monotonic()
        if problem != self._logged[0] or now - self._logged[1] >= LOG_EVERY_S:
            self._logged = (problem, now)
            log.log(level, "cannot connect to %s (attempt %d): %s", self.address, self._failures, problem)

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
