"""The outbox: every rating lives here, durably, from the tap until its receipt.

SQLite in WAL mode with `synchronous=FULL`: `add` returns only after the row is on disk, so the
citizen's "thank you" always follows a durable commit. A row leaves only on an end-to-end receipt;
a broker refusal moves it to quarantine (kept, never deleted). The store is bounded: `add` refuses
with `OutboxFull` at capacity instead of evicting anything, and `level` lets the runtime alarm at 80 %.
"""
from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from device import ids, messages

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,          -- the record's own monotonic sequence number
    id TEXT NOT NULL,                 -- UUIDv7 made on the terminal (no index: one page less per write)
    leaf TEXT NOT NULL,               -- topic leaf: rating | event
    payload BLOB NOT NULL,
    created REAL NOT NULL,
    quarantined INTEGER NOT NULL DEFAULT 0,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS rated_cases (case_id TEXT PRIMARY KEY, rating_id TEXT NOT NULL, at REAL NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('seq', 0);
"""
RATED_CASES_KEPT_S = 30 * 86400
SEQ_BLOCK = 1000  # sequence numbers are reserved in blocks: one meta write per thousand records


class OutboxError(Exception):
    """The rating was not stored. `reason` is a stable code (full, disk_full, corrupt, io)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class OutboxFull(OutboxError):
    def __init__(self, capacity: int):
        super().__init__("full", f"{capacity} undelivered records; nothing is evicted")


@dataclass(frozen=True)
class Record:
    seq: int
    id: str
    leaf: str
    payload: bytes


@dataclass(frozen=True)
class Counts:
    pending: int
    quarantined: int
    capacity: int

    @property
    def level(self) -> float:
        return (self.pending + self.quarantined) / self.capacity


class Outbox:
    """One SQLite file, one connection, one lock: the core thread adds, the courier thread delivers."""

    def __init__(self, path: str | Path, capacity: int = 100_000,
                 on_alarm: Callable[[str, str], None] | None = None):
        self.path = Path(path)
        self.capacity = capacity
        self._on_alarm = on_alarm or (lambda code, detail: None)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._pending = 0
        self._quarantined = 0
        self._rated: set[str] = set()
        self._next_seq = 1
        self._reserved = 0
        self.open()

    # ---- opening, integrity, salvage ----------------------------------------------------------

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            try:
                self._db = self._connect()
                self._check()
            except sqlite3.DatabaseError as e:
                self._move_aside_and_salvage(str(e))
            self._prune()
            self._recount()
            self._rated = {r[0] for r in self._db.execute("SELECT case_id FROM rated_cases")}
            top = self._db.execute("SELECT max((SELECT v FROM meta WHERE k='seq'), "
                                   "coalesce((SELECT max(seq) FROM outbox), 0))").fetchone()[0]
            self._next_seq, self._reserved = top + 1, top
            self._gone = self._connect(synchronous="NORMAL")

    def _connect(self, synchronous: str = "FULL") -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute("PRAGMA busy_timeout=10000")
        return db

    def _check(self) -> None:
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise sqlite3.DatabaseError("; ".join(str(r[0]) for r in rows[:5]))
        self._db.executescript(SCHEMA)

    def _move_aside_and_salvage(self, why: str) -> None:
        """Keep the damaged file for forensics, start a new one, copy over every row still readable."""
        if self._db is not None:
            self._db.close()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        self._db = self._connect()
        self._db.executescript(SCHEMA)
        salvaged = self._salvage(aside)
        log.error("outbox %s was corrupt (%s); moved to %s, %d records salvaged", self.path, why, aside, salvaged)
        self._on_alarm("outbox_corrupt", f"{why}; moved to {aside.name}; {salvaged} records salvaged")

    def _salvage(self, aside: Path) -> int:
        try:
            old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        except sqlite3.DatabaseError:
            return 0
        saved = 0
        try:
            top = old.execute("SELECT v FROM meta WHERE k='seq'").fetchone()
            self._db.execute("UPDATE meta SET v=max(v, ?) WHERE k='seq'", (top[0] if top else 0,))
        except sqlite3.DatabaseError:
            pass
        # Scan from both ends: a damaged page stops a scan, so rows beyond it are read from the other side.
        self._db.execute("BEGIN")
        for order in ("ASC", "DESC"):
            try:
                for row in old.execute("SELECT seq, id, leaf, payload, created, quarantined, reason FROM outbox "
                                       f"ORDER BY seq {order}"):
                    saved += self._db.execute("INSERT OR IGNORE INTO outbox VALUES (?,?,?,?,?,?,?)", row).rowcount
                    self._db.execute("UPDATE meta SET v=max(v, ?) WHERE k='seq'", (row[0],))
            except sqlite3.DatabaseError as e:
                log.warning("salvage scan %s stopped at a damaged page: %s", order, e)
        self._db.execute("COMMIT")
        old.close()
        return saved

    def _prune(self) -> None:
        self._db.execute("DELETE FROM rated_cases WHERE at < ?", (time.time() - RATED_CASES_KEPT_S,))

    def _recount(self) -> None:
        rows = dict(self._db.execute("SELECT quarantined, count(*) FROM outbox GROUP BY quarantined").fetchall())
        self._pending, self._quarantined = rows.get(0, 0), rows.get(1, 0)

    def close(self) -> None:
        with self._lock:
            for db in (self._db, getattr(self, "_gone", None)):
                if db is not None:
                    db.close()
            self._db = self._gone = None

    # ---- the core thread: adding records -------------------------------------------------------

    def add(self, leaf: str, build: Callable[[str, int, str], dict], case_id: str | None = None) -> Record:
        """Build a record with a fresh id, sequence and wall time, validate it, commit it durably.

        Raises OutboxError: nothing was stored, and the caller must not say "thank you".
        """
        rid, ts = ids.uuid7(), ids.wall_time()
        with self._lock:
            if self._pending + self._quarantined >= self.capacity:
                raise OutboxFull(self.capacity)
            try:
                return self._add_locked(leaf, build, rid, ts, case_id)
            except BaseException as e:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(e, sqlite3.DatabaseError):
                    raise _classify(e) from e
                raise

    def _add_locked(self, leaf, build, rid, ts, case_id) -> Record:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        seq = self._next_seq
        if seq > self._reserved:
            db.execute("UPDATE meta SET v = ? WHERE k='seq'", (seq + SEQ_BLOCK - 1,))
        msg = messages.validate(build(rid, seq, ts))
        payload = messages.encode(msg)
        db.execute("INSERT INTO outbox (seq, id, leaf, payload, created) VALUES (?,?,?,?,?)",
                   (seq, rid, leaf, payload, time.time()))
        if case_id is not None:
            db.execute("INSERT OR REPLACE INTO rated_cases VALUES (?,?,?)", (case_id, rid, time.time()))
        db.execute("COMMIT")
        self._pending += 1
        self._next_seq = seq + 1
        self._reserved = max(self._reserved, seq + SEQ_BLOCK - 1) if seq > self._reserved else self._reserved
        if case_id is not None:
            self._rated.add(case_id)
        return Record(seq, rid, leaf, payload)

    def case_rated(self, case_id: str) -> bool:
        """Was this case rated here (within the last 30 days)? Answered from memory: no disk on the hot path."""
        return case_id in self._rated

    # ---- the courier thread: delivering --------------------------------------------------------

    def due(self, limit: int, after: int = 0) -> list[Record]:
        """Up to `limit` undelivered, unquarantined records with sequence > `after`, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, id, leaf, payload FROM outbox WHERE quarantined=0 AND seq > ? "
                                    "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        return [Record(*r) for r in rows]

    def delivered(self, keys: Iterable[tuple[str, int | None]]) -> int:
        """Receipted: the system of record has these (id, seq if known). Only now do they leave the terminal.

        Deletions go through a second connection with synchronous=NORMAL: no fsync on the receipt path.
        A deletion lost to a power cut only means the record is offered again, and the ledger keeps
        one row per id. Every record is still added with synchronous=FULL, and that fsync also makes any
        earlier deletion in the write-ahead log durable.
        """
        keys = list(keys)
        by_seq = [(seq, rid) for rid, seq in keys if seq is not None]
        by_id = [(rid,) for rid, seq in keys if seq is None]
        with self._lock:
            db = self._gone
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany(self._by_key("DELETE FROM outbox WHERE quarantined=0", 0), by_seq)
            db.executemany(self._by_key("DELETE FROM outbox WHERE quarantined=0", None), by_id)
            n = db.total_changes - before
            db.execute("COMMIT")
            self._pending -= n
        return n

    def quarantine(self, rid: str, reason: str, seq: int | None = None) -> bool:
        with self._lock:
            n = self._db.execute(self._by_key("UPDATE outbox SET quarantined=1, reason=? WHERE quarantined=0", seq),
                                 (reason, rid) if seq is None else (reason, seq, rid)).rowcount
            self._pending -= n
            self._quarantined += n
        return n > 0

    @staticmethod
    def _by_key(sql: str, seq: int | None) -> str:
        # By sequence (the row id) when the caller knows it; by id is a table scan, kept for stray receipts.
        return sql + (" AND id=?" if seq is None else " AND seq=? AND id=?")

    def quarantined(self) -> list[tuple[str, str]]:
        with self._lock:
            return self._db.execute("SELECT id, reason FROM outbox WHERE quarantined=1 ORDER BY seq").fetchall()

    def requeue_quarantined(self) -> int:
        """Maintenance: offer quarantined records again (after the center fixed its ACL, say)."""
        with self._lock:
            n = self._db.execute("UPDATE outbox SET quarantined=0, reason=NULL WHERE quarantined=1").rowcount
            self._pending += n
            self._quarantined -= n
        return n

    def counts(self) -> Counts:
        with self._lock:
            return Counts(self._pending, self._quarantined, self.capacity)


def _classify(e: sqlite3.DatabaseError) -> OutboxError:
    text = str(e)
    if "full" in text:
        return OutboxError("disk_full", text)
    if "malformed" in text or "not a database" in text:
        return OutboxError("corrupt", text)
    return OutboxError("io", text)
