"""Delivery to the city: the ledger is the source of truth for what the city platform has.

Each stored rating gets a `city_delivery` row in the transaction that stores it (`enqueue`, called by
`Record.accept`): `pending`. The worker (`CityDelivery`) offers every rating the city has not receipted, in
batches over MQTT (QoS 1) straight to the city's broker ([bridge] address, TLS and account), and marks a
rating `receipted` only when the city's receipt says `stored` or `duplicate` (`rejected`: kept with the
city's reason, never offered again). An offer without a receipt is offered again after `receipt_timeout_s`,
then with a growing delay up to `retry_max_s`; after every (re)connection to the city — an outage of the
city, of the network, a restart of this process after a crash — everything offered and not receipted is
offered again at once. Nothing lives only in a broker's queue: a broker may lose what it holds (kill -9, a
full queue), the rows stay. The city keeps one record per id, so a repeated offer costs a `duplicate`.

This is the terminal → center contract of docs/protocol.md §7, one level up (the center is the terminal).
Topics and messages: docs/protocol.md, "Delivery to the city".
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Connection, and_, bindparam, case, exc, func, insert, or_, select, update

from center.city import fields
from center.store import Store
from center.store.tables import city_delivery as cd, ratings
from protocol import codec
from protocol.codec import MessageError
from protocol.codes import CodeMap
from protocol.transport import no_delay

log = logging.getLogger("city")

PENDING, OFFERED, RECEIPTED, REJECTED = "pending", "offered", "receipted", "rejected"
OPEN_STATES = (PENDING, OFFERED)

_P = bindparam
DUE = (select(ratings, cd.c.attempts).join(cd, cd.c.rating_id == ratings.c.id)
       .where(cd.c.center == _P("center"), cd.c.state.in_(OPEN_STATES), cd.c.next_try <= _P("now"))
       .order_by(cd.c.next_try).limit(_P("n")))
# A repeated offer waits longer each time: timeout, 2×timeout, … up to the longest wait.
MARK_OFFERED = (update(cd).where(cd.c.rating_id == _P("b_id"))
                .values(state=OFFERED, attempts=cd.c.attempts + 1, offered_at=_P("b_now"),
                        next_try=_P("b_now") + case((cd.c.attempts * _P("b_timeout") >= _P("b_max"), _P("b_max")),
                                                    else_=(cd.c.attempts + 1) * _P("b_timeout"))))
MARK_RECEIPTED = (update(cd).where(and_(cd.c.rating_id == _P("b_id"), cd.c.state != RECEIPTED))
                  .values(state=RECEIPTED, receipted_at=_P("b_now"), reason=None))
MARK_REJECTED = (update(cd).where(and_(cd.c.rating_id == _P("b_id"), or_(cd.c.state == PENDING,
                                                                          cd.c.state == OFFERED)))
                 .values(state=REJECTED, receipted_at=_P("b_now"), reason=_P("b_reason")))
OFFER_AGAIN_NOW = (update(cd).where(and_(cd.c.center == _P("b_center"), cd.c.state == OFFERED))
                   .values(next_try=_P("b_now")))
OFFER_AGAIN_AT = (update(cd).where(and_(cd.c.rating_id == _P("b_id"), cd.c.state == OFFERED))
                  .values(next_try=_P("b_at")))
NO_MATCHING_SUBSCRIBERS = 0x10   # MQTT v5 PUBACK: taken, but nobody at the city is listening (yet)


def enqueue(conn: Connection, record: Mapping[str, Any], now: float) -> None:
    """Owe the city this rating (a `ratings` row as just inserted): inside the transaction that stored it."""
    enqueue_all(conn, [record], now)


def enqueue_all(conn: Connection, records: list[Mapping[str, Any]], now: float) -> None:
    """The same for many ratings in one statement (the intake's batch)."""
    if records:
        conn.execute(insert(cd), [{"rating_id": r["id"], "center": r["center"], "device": r["device"],
                                   "day": fields.day_of(r["ts"]), "state": PENDING, "attempts": 0,
                                   "next_try": now, "created": now} for r in records])


def backfill(conn: Connection, now: float) -> int:
    """Owe the city every stored rating that has no delivery row (a ledger from before city delivery);
    the number added."""
    missing = (select(ratings.c.id, ratings.c.center, ratings.c.device, func.substr(ratings.c.ts, 1, 10),
                      _P("state", PENDING), _P("zero", 0), _P("now", now), _P("now2", now))
               .where(~select(cd.c.rating_id).where(cd.c.rating_id == ratings.c.id).exists()))
    got = conn.execute(insert(cd).from_select(["rating_id", "center", "device", "day", "state", "attempts",
                                               "next_try", "created"], missing))
    return got.rowcount or 0


def states(conn: Connection) -> dict[str, int]:
    """How many ratings are in each delivery state."""
    return {s: n for s, n in conn.execute(select(cd.c.state, func.count()).group_by(cd.c.state))}


@dataclass(frozen=True)
class CityLink:
    """Where and how to reach the city's broker (from [bridge]: the same address, TLS and account)."""
    host: str
    port: int
    prefix: str                   # the city's topic prefix for this center, ending in /: `city/v1/<center>/`
    client_id: str = ""
    username: str = ""
    password: str = ""
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    mqtt_version: str = "5"
    keepalive_s: int = 60
    reconnect_min_s: float = 1
    reconnect_max_s: float = 30

    @property
    def records_topic(self) -> str:
        return f"{self.prefix}records"

    @property
    def receipt_topic(self) -> str:
        return f"{self.prefix}receipt"

    @classmethod
    def from_center_file(cls, cfg) -> "CityLink":
        """The link of a center file's [bridge] section (provisioning.config.CenterConfig)."""
        b = cfg.bridge
        host, _, port = b.address.rpartition(":")
        password = b.remote_password_file.read_text().strip() if b.remote_password_file else ""
        return cls(host=host.strip("[]"), port=int(port), prefix=b.remote_prefix,
                   client_id=f"{cfg.center.id}-city-delivery", username=b.remote_username, password=password,
                   cafile=b.cafile, certfile=b.certfile, keyfile=b.keyfile, mqtt_version=b.protocol,
                   keepalive_s=b.keepalive_s, reconnect_min_s=b.restart_timeout_min_s,
                   reconnect_max_s=b.restart_timeout_max_s)


class CityDelivery:
    """The worker for one center (a district's store holds several: one worker each, each with its own
    link): offers what the city has not receipted, marks what it receipts. `start()`, `stop()`."""

    def __init__(self, store: Store, link: CityLink, center: str, codes: CodeMap | None = None, *, area: str = "",
                 batch: int = 200, window: int = 5000, receipt_timeout_s: float = 30, retry_max_s: float = 600,
                 unheard_retry_s: float = 2, backfill_at_start: bool = True):
        if not link.prefix.endswith("/"):
            raise ValueError("the city topic prefix must end with /")
        self.store, self.link, self.center = store, link, center
        self.codes = codes or CodeMap.create()
        self.area = area
        self.batch = max(1, min(batch, fields.MAX_BATCH))
        self.window = window
        self.receipt_timeout_s, self.retry_max_s = receipt_timeout_s, retry_max_s
        self.unheard_retry_s = min(unheard_retry_s, receipt_timeout_s)
        self.backfill_at_start = backfill_at_start
        self.offered = 0        # records offered (again included)
        self.receipted = 0      # receipts that marked a rating receipted
        self.rejected = 0       # ratings the city refused for good
        self.refused = 0        # batches the city's broker refused (PUBACK ≥ 0x80): its ACL, not the record
        self.fatal: str | None = None
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._ready = False     # connected and subscribed to the receipts
        self._inflight: dict[str, float] = {}   # offered by this run, not answered: id → when it falls due
        self._mids: dict[int, list[str]] = {}   # publish mid → the ids in it (for the PUBACK)
        v5 = link.mqtt_version == "5"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=link.client_id or f"{center}-city-delivery",
                        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
        if link.username:
            c.username_pw_set(link.username, link.password)
        if link.cafile:
            c.tls_set(ca_certs=str(link.cafile), certfile=str(link.certfile) if link.certfile else None,
                      keyfile=str(link.keyfile) if link.keyfile else None)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(link.reconnect_min_s, link.reconnect_max_s)
        c.on_socket_open = no_delay
        c.suppress_exceptions = True
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._subacked
        c.on_publish = self._puback
        c.on_message = lambda cl, ud, m: self._inbox.put(("receipt", m.payload))
        self.client = c
        self._thread = threading.Thread(target=self._run, name="city-delivery", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "CityDelivery":
        now = time.time()
        with self.store.write() as conn:
            added = backfill(conn, now) if self.backfill_at_start else 0
            # After a crash or restart: whatever was offered and not receipted is offered again at once.
            conn.execute(OFFER_AGAIN_NOW, {"b_center": self.center, "b_now": now})
        if added:
            log.info("%d stored ratings had no city delivery state: now pending", added)
        self.client.connect_async(self.link.host, self.link.port, keepalive=self.link.keepalive_s)
        self.client.loop_start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._inbox.put(("stop",))
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def health(self) -> str | None:
        """None while it works; else why it cannot (the service stops and says so)."""
        if self.fatal:
            return self.fatal
        if self._thread.ident is not None and not self._thread.is_alive() and not self._stop.is_set():
            return "the city-delivery thread died; nothing would reach the city"
        return None

    def counts(self) -> dict[str, int]:
        return {"offered": self.offered, "receipted": self.receipted, "rejected": self.rejected,
                "refused": self.refused, "in_flight": len(self._inflight)}

    # ---- paho's thread: only hands over ---------------------------------------------------------

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("the city's broker at %s:%d refused the connection: %s", self.link.host, self.link.port, reason)
            return
        log.info("connected to the city's broker at %s:%d", self.link.host, self.link.port)
        client.subscribe(self.link.receipt_topic, qos=1)

    def _subacked(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            self.fatal = (f"the city's broker refused the subscription to {self.link.receipt_topic} "
                          f"({reason_codes[0]}): check the account's ACL and [bridge] remote_prefix")
            log.critical("%s", self.fatal)
            return
        self._inbox.put(("ready",))

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        self._inbox.put(("down",))
        if not self._stop.is_set():
            log.warning("lost the city's broker at %s:%d (%s); reconnecting", self.link.host, self.link.port, reason)

    def _puback(self, client, userdata, mid, reason, properties) -> None:
        self._inbox.put(("puback", mid, reason.value if reason is not None else 0, str(reason)))

    # ---- the worker thread: all state changes happen here ----------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    busy = self._step()
                    try:
                        item = self._inbox.get(timeout=0.01 if busy else 0.25)
                    except queue.Empty:
                        continue
                    self._handle([item] + self._drain())
                except exc.DBAPIError as e:   # the database (busy, down, full): nothing was marked; try again
                    log.warning("city delivery could not use the database (%s); trying again", str(e)[:200])
                    self._stop.wait(1)
        except BaseException as e:  # noqa: BLE001 - a dead worker must show in health(), not idle silently
            self.fatal = f"the city-delivery thread died: {e!r}"
            log.critical("%s", self.fatal, exc_info=True)

    def _drain(self) -> list[tuple]:
        items = []
        while True:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                return items

    def _handle(self, items: list[tuple]) -> None:
        receipts: list[dict] = []
        unheard: list[str] = []     # taken by the broker with nobody to store them: offered again soon
        for item in items:
            kind = item[0]
            if kind == "ready":
                self._ready = True
                self._inflight.clear()
                self._mids.clear()
                with self.store.write() as conn:
                    conn.execute(OFFER_AGAIN_NOW, {"b_center": self.center, "b_now": time.time()})
            elif kind == "down":
                self._ready = False
            elif kind == "receipt":
                try:
                    receipts.extend(codec.decode("receipt", item[1])["items"])
                except MessageError as e:
                    log.warning("ignored a receipt from the city: %s", e)
            elif kind == "puback":
                sent = self._mids.pop(item[1], [])
                if item[2] >= 0x80:
                    self.refused += 1
                    log.error("the city's broker refused a batch of %d records (%s): offered again later; check "
                              "the account's ACL", len(sent), item[3])
                elif item[2] == NO_MATCHING_SUBSCRIBERS and sent:
                    unheard.extend(sent)
        if receipts:
            self._apply(receipts)
        if unheard:
            self._unheard(unheard)

    def _unheard(self, sent: list[str]) -> None:
        """Nobody at the city subscribes (its consumer is down, or restarting after its broker lost the
        session): these are lost, so they are offered again after a short wait, not the receipt timeout."""
        at = time.time() + self.unheard_retry_s
        due = time.monotonic() + self.unheard_retry_s
        with self.store.write() as conn:
            conn.execute(OFFER_AGAIN_AT, [{"b_id": rid, "b_at": at} for rid in sent])
        for rid in sent:
            if rid in self._inflight:
                self._inflight[rid] = due

    def _apply(self, items: list[dict]) -> None:
        now = time.time()
        done = [{"b_id": i["id"], "b_now": now} for i in items if i["status"] in ("stored", "duplicate")]
        refused = [{"b_id": i["id"], "b_now": now, "b_reason": str(i.get("reason", ""))[:200]}
                   for i in items if i["status"] == "rejected"]
        with self.store.write() as conn:
            marked = conn.execute(MARK_RECEIPTED, done).rowcount if done else 0
            rejected = conn.execute(MARK_REJECTED, refused).rowcount if refused else 0
        self.receipted += max(marked, 0)
        self.rejected += max(rejected, 0)
        for i in refused:
            log.error("the city rejected rating %s: %s", i["b_id"], i["b_reason"])
        for i in items:
            self._inflight.pop(i["id"], None)

    def _step(self) -> bool:
        """Offer what is due, within the window; True when more may be due at once."""
        if not self._ready:
            return False
        now = time.monotonic()
        for rid in [r for r, due in self._inflight.items() if due <= now]:
            del self._inflight[rid]   # its row is due again by now: offered with the next pick
        room = self.window - len(self._inflight)
        if room < self.batch:
            return False
        wall = time.time()
        with self.store.read() as conn:   # idle most of the time: look without taking the write lock
            if conn.execute(DUE, {"center": self.center, "now": wall, "n": 1}).first() is None:
                return False
        with self.store.write() as conn:
            rows = conn.execute(DUE, {"center": self.center, "now": wall, "n": room}).mappings().all()
            if not rows:
                return False
            conn.execute(MARK_OFFERED, [{"b_id": r["id"], "b_now": wall, "b_timeout": self.receipt_timeout_s,
                                         "b_max": self.retry_max_s} for r in rows])
        deadline = now + self.receipt_timeout_s
        records = [fields.city_record(r, self.codes, self.area) for r in rows]
        for chunk in self._chunks(records):
            info = self.client.publish(self.link.records_topic, fields.encode_batch(self.center, chunk), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return False  # not connected: offered again when the link is back
            self._mids[info.mid] = [r[fields.ID] for r in chunk]
            for r in chunk:
                self._inflight[r[fields.ID]] = deadline
            self.offered += len(chunk)
        return len(rows) == room

    def _chunks(self, records: list[dict]) -> list[list[dict]]:
        out: list[list[dict]] = []
        for i in range(0, len(records), self.batch):
            chunk = records[i:i + self.batch]
            while len(fields.encode_batch(self.center, chunk)) > fields.MAX_BATCH_BYTES and len(chunk) > 1:
                half = len(chunk) // 2
                out.append(chunk[:half])
                chunk = chunk[half:]
            out.append(chunk)
        return out


__all__ = ["CityDelivery", "CityLink", "enqueue", "backfill", "states", "PENDING", "OFFERED", "RECEIPTED",
           "REJECTED"]
