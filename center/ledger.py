"""A minimal center ledger: the system of record that closes the loop for the terminals.

Subscribes to every device's ratings and events, stores each record once (keyed by its id; one
first rating per case), commits, and only then publishes receipts to the device that sent it.
A later issue grows this into the center's services; the receipt contract stays.
"""
from __future__ import annotations

import argparse
import logging
import queue
import signal
import sqlite3
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from device import messages
from device.link import no_delay
from device.messages import MessageError, parse_device_topic

log = logging.getLogger("ledger")

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS ratings (
    id TEXT PRIMARY KEY, center TEXT NOT NULL, window TEXT NOT NULL, device TEXT NOT NULL,
    seq INTEGER NOT NULL, ts TEXT NOT NULL, kind TEXT NOT NULL, level TEXT NOT NULL, channel TEXT NOT NULL,
    case_id TEXT, item_code TEXT, staff TEXT, applicant TEXT, reasons TEXT, catalog TEXT,
    first INTEGER NOT NULL,            -- 1: the case's first rating (一事一评); 0: a later one, kept, flagged
    received REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_first_rating_per_case ON ratings(case_id) WHERE first = 1;
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, center TEXT NOT NULL, window TEXT NOT NULL, device TEXT NOT NULL,
    ts TEXT NOT NULL, event TEXT NOT NULL, case_id TEXT, staff TEXT, applicant TEXT, received REAL NOT NULL
);
"""
BATCH = 1000


class Ledger:
    def __init__(self, db_path: str | Path, host: str = "127.0.0.1", port: int = 1883, center: str = "+",
                 client_id: str = "center-ledger", username: str = "", password: str = ""):
        self.db_path = Path(db_path)
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA synchronous=FULL")
        self.host, self.port = host, port
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self.stored = 0
        self.rejected = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if username:
            c.username_pw_set(username, password)
        c.max_inflight_messages_set(1000)
        c.on_socket_open = no_delay
        c.suppress_exceptions = True
        self.subscribed = threading.Event()
        c.on_connect = lambda cl, *_: cl.subscribe([(f"{messages.PREFIX}/{center}/device/+/rating", 1),
                                                    (f"{messages.PREFIX}/{center}/device/+/event", 1)])
        c.on_subscribe = lambda *_: self.subscribed.set()
        c.on_message = lambda cl, ud, m: self._q.put((m.topic, m.payload))
        self.client = c
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)

    def start(self) -> "Ledger":
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 86400  # receive what arrived while the ledger was down
        self.client.connect(self.host, self.port, clean_start=False, properties=props)
        self.client.loop_start()
        self._writer.start()
        if not self.subscribed.wait(10):  # (a record published before the SUBACK would miss a new session)
            log.warning("no SUBACK from the broker yet; carrying on")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._writer.join(timeout=5)
        self.client.disconnect()
        self.client.loop_stop()
        self.db.close()

    # ---- the writer thread ----------------------------------------------------------------------

    def _write_loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = [self._q.get(timeout=0.2)]
            except queue.Empty:
                continue
            while len(batch) < BATCH:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            try:
                self._store(batch)
            except sqlite3.Error:
                log.exception("could not store a batch; no receipts sent, the terminals will offer again")

    def _store(self, batch: list[tuple[str, bytes]]) -> None:
        receipts: dict[str, list[dict]] = defaultdict(list)
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        for topic, payload in batch:
            where = parse_device_topic(topic)
            if where is None:
                continue
            center, device, leaf = where
            reply = f"{messages.PREFIX}/{center}/device/{device}/receipt"
            try:
                msg = messages.decode(leaf, payload)
                if msg["device"] != device or msg["center"] != center:
                    raise MessageError("impersonation", f"topic says {center}/{device}, payload says "
                                                        f"{msg['center']}/{msg['device']}")
            except MessageError as e:
                self.rejected += 1
                log.warning("rejected a %s from %s: %s", leaf, device, e)
                rid = _id_of(payload)
                if rid:
                    receipts[reply].append({"id": rid, "status": "rejected", "reason": str(e)[:200]})
                continue
            status = self._insert_rating(msg, now) if leaf == "rating" else self._insert_event(msg, now)
            receipts[reply].append({"id": msg["id"], "status": status})
        self.db.execute("COMMIT")  # durable first, receipts after
        for topic, items in receipts.items():
            for chunk in receipt_chunks(items):
                self.client.publish(topic, chunk, qos=1)

    def _insert_rating(self, m: dict, now: float) -> str:
        first = m.get("case") is not None and self.db.execute(
            "SELECT 1 FROM ratings WHERE case_id=? AND first=1", (m["case"],)).fetchone() is None
        reasons = m.get("reasons", {})
        n = self.db.execute(
            "INSERT OR IGNORE INTO ratings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (m["id"], m["center"], m["window"], m["device"], m["seq"], m["ts"], m["kind"], m["level"],
             m["channel"], m.get("case"), m.get("item_code"), m.get("staff"), m.get("applicant"),
             ",".join(reasons.get("codes", [])) or None, reasons.get("catalog"), int(first), now)).rowcount
        if n:
            self.stored += 1
        return "stored" if n else "duplicate"

    def _insert_event(self, m: dict, now: float) -> str:
        n = self.db.execute("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (m["id"], m["center"], m["window"], m["device"], m["ts"], m["event"], m.get("case"),
                             m.get("staff"), m.get("applicant"), now)).rowcount
        return "stored" if n else "duplicate"


RECEIPT_BUDGET = 12_000  # bytes: well inside the terminals' 16 KiB inbound limit
RECEIPT_MAX_ITEMS = 250  # the schema's maxItems


def receipt_chunks(items: list[dict]) -> list[bytes]:
    """Encoded receipt messages, each under RECEIPT_BUDGET bytes and RECEIPT_MAX_ITEMS items."""
    out: list[bytes] = []
    batch: list[dict] = []
    size = 40  # the envelope
    for item in items:
        n = len(messages.encode(item)) + 1
        if batch and (size + n > RECEIPT_BUDGET or len(batch) >= RECEIPT_MAX_ITEMS):
            out.append(messages.encode({"v": 1, "type": "receipt", "items": batch}))
            batch, size = [], 40
        batch.append(item)
        size += n
    if batch:
        out.append(messages.encode({"v": 1, "type": "receipt", "items": batch}))
    return out


def query(db_path: str | Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the ledger from another connection (tests, reports) while the service writes."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def _id_of(payload: bytes) -> str | None:
    """Best effort: the id of a record we refuse, so its sender can quarantine it."""
    import json
    import re
    try:
        rid = json.loads(payload).get("id")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return rid if isinstance(rid, str) and re.fullmatch(r"[0-9a-f-]{36}", rid) else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="rating-ledger", description=__doc__)
    ap.add_argument("--db", default="ledger.db")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--center", default="+", help="center id, or + for all")
    ap.add_argument("--username", default="", help="MQTT user (the center broker has no anonymous access)")
    ap.add_argument("--password-file", default="", help="file holding that user's password")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ledger %(levelname)s: %(message)s")
    password = Path(args.password_file).read_text().strip() if args.password_file else ""
    ledger = Ledger(args.db, args.host, args.port, args.center, username=args.username, password=password).start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("ledger on %s:%d, database %s", args.host, args.port, args.db)
    while not stop.wait(1):
        pass
    ledger.stop()
    log.info("stored %d ratings, rejected %d", ledger.stored, ledger.rejected)
    return 0


if __name__ == "__main__":
    sys.exit(main())
