"""The ledger's records from a NATS JetStream stream: N workers share the load on a NATS cluster.

NATS's MQTT gateway speaks 3.1.1 only and has no shared subscriptions (nats-server 2.9 grants a
`$share/…` filter but takes it literally: nothing arrives). What a terminal publishes on
`hcp/v1/C1/device/t1/rating` is a NATS message on `hcp.v1.C1.device.t1.rating`, so a stream on those
subjects keeps every record (replicated over the cluster), and one durable pull consumer hands each to one
of the workers pulling from it. A worker acknowledges a message only once the record committed it and its
receipt is on its way; a worker killed before that leaves it to be delivered again (to any worker) after
`ack_wait`. Exactly once in effect: the record's unique id turns a second delivery into a `duplicate`.

The worker's MQTT session (3.1.1, to any node) still carries what the center publishes (retained cases,
duty, catalog, bindings) and the receipts back to the terminals.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

import nats
from nats.js import api
from nats.js.errors import NotFoundError

from center.ledger.record import Throttle
from protocol import topics
from protocol.transport import backoff

if TYPE_CHECKING:
    from center.ledger.intake import Ledger

log = logging.getLogger("ledger")

STREAM = "HCP_RECORDS"
CONSUMER = "ledger"
ACK_WAIT_S = 30.0   # a record fetched by a worker that died is offered to the workers again after this
BATCH = 500         # messages fetched at once
IN_HAND = 2000      # fetched but not yet stored and acknowledged, at most (back-pressure on a slow database)
RETAIN_S = 7 * 86400


def topic_of(subject: str) -> str:
    """The MQTT topic of a NATS subject, as NATS's MQTT gateway maps them (topic `/` is subject `.`,
    topic `.` is subject `//`)."""
    out, i = [], 0
    while i < len(subject):
        if subject.startswith("//", i):
            out.append(".")
            i += 2
        else:
            out.append("/" if subject[i] == "." else subject[i])
            i += 1
    return "".join(out)


def record_subjects(center: str = "*") -> list[str]:
    """The subjects of the device records the stream keeps (`*`: every center)."""
    prefix = topics.PREFIX.replace("/", ".")
    c = "*" if center in ("+", "*") else center
    return [f"{prefix}.{c}.device.*.{leaf}" for leaf in ("rating", "event")]


class JetStreamFeed:
    """Pulls records from the shared durable consumer into a Ledger (`records=False`); `start()`, `stop()`,
    `health()` like the Ledger's."""

    def __init__(self, servers: list[str], ledger: "Ledger", *, center: str = "+", replicas: int = 1,
                 ack_wait_s: float = ACK_WAIT_S, name: str = "center-ledger"):
        self.servers, self.ledger, self.center = servers, ledger, center
        self.replicas, self.ack_wait_s, self.name = replicas, ack_wait_s, name
        self.ready = threading.Event()   # the stream and the consumer exist, fetching has begun
        self.fatal: str | None = None
        self.fetched = 0
        self._in_hand = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._throttle = Throttle()
        self._thread = threading.Thread(target=self._run, name="ledger-jetstream", daemon=True)

    def start(self, timeout: float = 60) -> "JetStreamFeed":
        self._thread.start()
        if not self.ready.wait(timeout) and self.fatal is None:
            log.warning("the JetStream consumer is not ready after %.0f s; still trying", timeout)
        return self

    def health(self) -> str | None:
        if self.fatal:
            return self.fatal
        if self._thread.ident is not None and not self._thread.is_alive() and self._stopping is not None \
                and not self._stopping.is_set():
            return "the ledger-jetstream thread died; no record would arrive"
        return None

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=10)

    # ---- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - without it nothing arrives: stop the process loudly
            self.fatal = f"the ledger-jetstream thread died: {e!r}"
            log.critical("%s", self.fatal, exc_info=True)
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        nc = await self._connect()
        if nc is None:
            return
        try:
            sub = await self._bind(nc)
            if sub is not None:
                await self._pull(sub)
        finally:
            try:
                await nc.drain()
            except Exception:  # noqa: BLE001 - closing anyway
                await nc.close()

    async def _connect(self):
        attempt = 0
        while not self._stopping.is_set():
            try:
                return await nats.connect(servers=self.servers, name=self.name, connect_timeout=2,
                                          max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                          error_cb=self._error, disconnected_cb=self._gone,
                                          reconnected_cb=self._back)
            except Exception as e:  # noqa: BLE001 - no server reachable yet: keep trying, say so
                attempt += 1
                self._throttle("nats-connect", logging.WARNING, "cannot reach NATS at %s: %s (attempt %d; "
                               "retrying)", ",".join(self.servers), e or type(e).__name__, attempt)
                await self._pause(backoff(attempt, 0.5, 10))
        return None

    async def _bind(self, nc):
        """Make the stream and the durable consumer (the same config from every worker: idempotent), bind."""
        js = nc.jetstream()
        stream = api.StreamConfig(name=STREAM, subjects=record_subjects(self.center),
                                  retention=api.RetentionPolicy.WORK_QUEUE, storage=api.StorageType.FILE,
                                  num_replicas=self.replicas, max_age=RETAIN_S)
        consumer = api.ConsumerConfig(durable_name=CONSUMER, ack_policy=api.AckPolicy.EXPLICIT,
                                      ack_wait=self.ack_wait_s, max_ack_pending=20_000, max_deliver=-1)
        attempt = 0
        while not self._stopping.is_set():
            try:
                try:
                    await js.stream_info(STREAM)
                except NotFoundError:
                    await js.add_stream(stream)
                    log.info("made the JetStream stream %s on %s (%d replicas)", STREAM,
                             ", ".join(stream.subjects), self.replicas)
                try:
                    await js.consumer_info(STREAM, CONSUMER)
                except NotFoundError:
                    await js.add_consumer(STREAM, consumer)
                sub = await js.pull_subscribe_bind(durable=CONSUMER, stream=STREAM)
                self.ready.set()
                log.info("pulling records from JetStream %s/%s", STREAM, CONSUMER)
                return sub
            except Exception as e:  # noqa: BLE001 - the cluster may still be electing its leaders
                attempt += 1
                self._throttle("nats-bind", logging.WARNING, "cannot set up the JetStream consumer %s/%s: %r "
                               "(attempt %d; retrying)", STREAM, CONSUMER, e, attempt)
                await self._pause(backoff(attempt, 0.5, 5))
        return None

    async def _pull(self, sub) -> None:
        attempt = 0
        while not self._stopping.is_set():
            with self._lock:
                room = IN_HAND - self._in_hand
            if room < BATCH // 4:
                await self._pause(0.02)  # the database is behind: fetch no more than it can take
                continue
            try:
                msgs = await sub.fetch(batch=min(BATCH, room), timeout=1)
            except nats.errors.TimeoutError:
                continue  # nothing to do
            except Exception as e:  # noqa: BLE001 - a node gone, a leader moving: fetch again
                attempt += 1
                self._throttle("nats-fetch", logging.WARNING, "cannot fetch from JetStream: %r (retrying)", e)
                await self._pause(backoff(attempt, 0.2, 5))
                continue
            attempt = 0
            with self._lock:
                self._in_hand += len(msgs)
            self.fetched += len(msgs)
            for msg in msgs:
                self.ledger.feed(topic_of(msg.subject), msg.data, self._acker(msg))

    def _acker(self, msg):
        def done() -> None:  # on the ledger's writer thread, after commit and receipts
            with self._lock:
                self._in_hand -= 1
            if not self._loop.is_closed():
                asyncio.run_coroutine_threadsafe(msg.ack(), self._loop)
        return done

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _error(self, e: Exception) -> None:
        self._throttle("nats-error", logging.WARNING, "NATS: %r", e)

    async def _gone(self) -> None:
        log.warning("lost the NATS connection; reconnecting")

    async def _back(self) -> None:
        log.info("NATS connection back")
