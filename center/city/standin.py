"""The city stand-in: the center's own ledger code in city mode, for the tests and the demo.

It is the MQTT intake of `center.ledger` (`Ledger`: connect, subscribe, batch, commit, then receipt), with
a record in city mode (`CityRecord`) instead of the center's: it takes the city batches of
docs/protocol.md "Delivery to the city" on `<root><center>/records`, stores each city record once by id
(table `city_records`, in a center Store: SQLite or PostgreSQL) and answers on `<root><center>/receipt`
with the receipts of §7 — `stored`, `duplicate`, or `rejected` with a reason — only after the COMMIT.

`python -m center.city.standin --port 1884 --db city.db` (the city's broker on that port).
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import insert, select

from center.city import fields
from center.city.fields import CityError
from center.ledger.intake import Ledger, LedgerError
from center.ledger.record import Record
from center.store import Store
from center.store.tables import city_records

log = logging.getLogger("city")

ROOT = "city/v1/"
IN_CHUNK = 500   # ids per `IN (…)` when looking for records the city already has


class CityRecord(Record):
    """The record in city mode: one row per city record id; receipts on the same contract as the ledger's."""

    def __init__(self, store: Store, root: str = ROOT):
        super().__init__(store)
        self.root = root
        self.topic = re.compile(rf"{re.escape(root)}([A-Za-z0-9_-]{{1,32}})/records")

    def ingest(self, batch: list[tuple[str, bytes]], now: float | None = None) -> dict[str, list[dict]]:
        """Store a batch of city messages in one transaction; the receipt items per topic, after COMMIT."""
        now = time.time() if now is None else now
        answers: list[tuple[str, str, str | None]] = []     # (reply topic, id, refusal reason or None)
        fresh: dict[str, dict] = {}
        for topic, payload in batch:
            m = self.topic.fullmatch(topic)
            if m is None:
                self.bad_topic += 1
                self.throttle("topic", logging.WARNING, "ignored a message on %r: not a city batch", topic[:200])
                continue
            reply = f"{self.root}{m.group(1)}/receipt"
            try:
                center, items = fields.parse_batch(payload)
            except CityError as e:
                self.rejected += 1
                self.throttle("batch", logging.WARNING, "refused a city batch on %r: %s", topic[:200], e)
                continue
            for rid, rec in items:
                if center != m.group(1):
                    rec = f"impersonation: the topic says {m.group(1)}, the batch says {center}"
                if isinstance(rec, str):
                    answers.append((reply, rid, rec))
                    continue
                answers.append((reply, rid, None))
                fresh.setdefault(rid, {"id": rid, "center": center, "device": rec[fields.DEVICE],
                                       "day": fields.record_day(rec), "received": now,
                                       "record": json.dumps(rec, ensure_ascii=False, sort_keys=True)})
        with self.store.write() as conn:
            ids = list(fresh)
            had: set[str] = set()
            for i in range(0, len(ids), IN_CHUNK):
                had.update(conn.execute(select(city_records.c.id)
                                        .where(city_records.c.id.in_(ids[i:i + IN_CHUNK]))).scalars())
            new = [row for rid, row in fresh.items() if rid not in had]
            if new:
                conn.execute(insert(city_records), new)
        receipts: dict[str, list[dict]] = {}
        first = {row["id"] for row in new}
        for reply, rid, reason in answers:
            if reason is not None:
                self.rejected += 1
                item = {"id": rid, "status": "rejected", "reason": reason[:200]}
            elif rid in first:
                first.discard(rid)   # the same id twice in one batch: stored once, then a duplicate
                self.stored += 1
                item = {"id": rid, "status": "stored"}
            else:
                item = {"id": rid, "status": "duplicate"}
            receipts.setdefault(reply, []).append(item)
        return receipts


def stand_in(db: str | Path | Store, host: str = "127.0.0.1", port: int = 1883, root: str = ROOT,
             client_id: str = "city-standin", username: str = "", password: str = "") -> Ledger:
    """The ledger's intake in city mode (not started): `.start()`, `.stop()`, `.record.store`."""
    store = db if isinstance(db, Store) else Store(db)
    ledger = Ledger(CityRecord(store, root), host, port, client_id=client_id, username=username, password=password)
    ledger.topics = [f"{root}+/records"]
    return ledger


def stored_ids(store: Store) -> list[str]:
    """Every city record id the stand-in holds (tests: exactly once each)."""
    with store.read() as conn:
        return list(conn.execute(select(city_records.c.id)).scalars())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m center.city.standin", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="city.db", help="database: a SQLite file or a database URL (default: city.db)")
    ap.add_argument("--host", default="127.0.0.1", help="the city's broker (default: 127.0.0.1)")
    ap.add_argument("--port", type=int, default=1883, help="its port (default: 1883)")
    ap.add_argument("--root", default=ROOT, help=f"the city's topic root, ending in / (default: {ROOT})")
    ap.add_argument("--username", default="", help="MQTT user at the city's broker")
    ap.add_argument("--password-file", help="file holding that user's password")
    ap.add_argument("--ca", help="CA certificate (PEM) of the city's broker: connect with TLS")
    args = ap.parse_args(argv)
    if not args.root.endswith("/"):
        ap.error("--root must end with /")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s city-standin %(levelname)s: %(message)s")
    password = Path(args.password_file).read_text().strip() if args.password_file else ""
    store = Store(args.db)
    ledger = stand_in(store, args.host, args.port, args.root, username=args.username, password=password)
    if args.ca:
        ledger.client.tls_set(ca_certs=args.ca)
    stop = threading.Event()

    def on_signal(*_) -> None:
        stop.set()
        ledger._stop.set()  # also ends a start() still waiting for the broker

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        ledger.start()
    except LedgerError as e:
        log.critical("cannot start: %s", e)
        store.close()
        return 2
    log.info("city stand-in on %s:%d, topics %s, database %s", args.host, args.port, ledger.topics[0], args.db)
    problem = None
    while not stop.wait(0.5):
        problem = ledger.health()
        if problem:
            log.critical("stopping: %s", problem)
            break
    ledger.stop()
    store.close()
    log.info("stored %d city records, rejected %d", ledger.stored, ledger.rejected)
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
