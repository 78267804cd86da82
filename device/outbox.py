"""The outbox: every rating lives here, durably, from the tap until its receipt.

SQLite in WAL mode with `synchronous=FULL`: `add` returns only after the row is on disk, so the
citizen's "thank you" always follows a durable commit. A row leaves only on an end-to-end receipt;
a broker refusal moves it to quarantine (kept, never deleted). The store is bounded: `add` refuses
with `OutboxFull` at capacity instead of evicting anything, and `level` lets the runtime alarm at 80 %.

Storage faults are told apart by SQLite's result code: only a damaged file is moved aside (and every
readable row salvaged); a full or failing disk makes the store "unavailable" until it opens again.
Files are 0600 in a 0700 directory. Sequence numbers run without holes across restarts.

Schema versions (`PRAGMA user_version`; a file without one is version 1): a release reads its own
schema and the one before it, and never migrates by itself. Only the updater's commit, after the new
release proved healthy, runs `python -m device.outbox migrate DATA_DIR`, so a rollback from a failed
trial finds the schema the old release wrote (image-build/README.md, "Updates (A/B)").
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from protocol import ids
from protocol import codec

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
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);  -- seq: the highest, as of the last deletion
INSERT OR IGNORE INTO meta VALUES ('seq', 0);
"""
RATED_CASES_KEPT_S = 30 * 86400
RETRY_S = (0.5, 30.0)  # backoff while the file cannot be opened (full or failing disk): first, longest
SALVAGED = ".salvaged"  # appended to a moved-aside file once its readable rows are copied
GAP_LOOKUPS = 200_000  # at most this many sequence numbers looked up one by one between damaged pages
MISS_RUN = 2_000  # beyond the last known sequence, this many missing numbers in a row end the lookups
# Forward migrations: MIGRATIONS[i] takes a store from schema i + 1 to i + 2, inside one transaction
# that also sets the new user_version (use `db.execute`, never `executescript`: that would commit).
# None yet: schema 1 is the SCHEMA above.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []
# SQLite primary result codes (the low byte of `sqlite_errorcode`)
SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 11, 13, 26


class OutboxError(Exception):
    """The rating was not stored. `reason` is a stable code (full, disk_full, corrupt, io, unavailable)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class OutboxFull(OutboxError):
    def __init__(self, capacity: int):
        super().__init__("full", f"{capacity} undelivered records; nothing is evicted")


class _Damaged(Exception):
    """`PRAGMA quick_check` found the file damaged."""


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
    """One SQLite file, one connection, one lock: the core thread adds, the courier thread delivers.

    When the file cannot be opened because the disk is full or failing, the outbox is *unavailable*
    (alarm `outbox_unavailable`, `add` raises OutboxError("unavailable")) and opening is retried with
    backoff, in the background and on each use. Only a damaged file is moved aside.
    """

    def __init__(self, path: str | Path, capacity: int = 100_000,
                 on_alarm: Callable[[str, str], None] | None = None,
                 on_clear: Callable[[str], None] | None = None, retry_s: tuple[float, float] = RETRY_S,
                 migrate: bool = False):
        """`migrate=False` (the runtime's way): an existing store at the schema before this release's is used
        as it is; `migrate=True` moves it forward first. A new store is made at this release's schema."""
        self.path = Path(path)
        self.migrate = migrate
        self.schema = 0  # the open store's schema version
        self.capacity = capacity
        self._on_alarm = on_alarm or (lambda code, detail: None)
        self._on_clear = on_clear or (lambda code: None)
        self._retry_s = retry_s
        self._lock = threading.Lock()
        self._notices: queue.SimpleQueue = queue.SimpleQueue()  # alarms, fired outside the lock
        self._db: sqlite3.Connection | None = None
        self._gone: sqlite3.Connection | None = None
        self._closed = threading.Event()
        self._retrier: threading.Thread | None = None
        self._attempt = 0
        self._next_try = 0.0
        self.unavailable = ""  # why the store cannot be used now; "" when it can
        self._pending = 0
        self._quarantined = 0
        self._rated: set[str] = set()
        self._next_seq = 1
        self.open()

    # ---- opening, integrity, salvage ----------------------------------------------------------

    def open(self) -> bool:
        """Open the store; False when the disk is full or failing (then it is retried in the background)."""
        with self._lock:
            ok = self._open_locked()
        self._fire()
        return ok

    def _open_locked(self) -> bool:
        if self._db is not None:
            return True
        if self._closed.is_set():
            return False
        moved = None
        try:
            try:
                self._db = self._connect()
                self._check()
            except (_Damaged, sqlite3.DatabaseError) as e:
                if isinstance(e, sqlite3.DatabaseError) and not is_corruption(e):
                    raise
                moved = (self._move_aside(str(e)), str(e))
                self._db = self._connect()
                self._schema()
            self._salvage_leftovers(moved)
            moved = None  # reported
            self._prune()
            self._recount()
            self._rated = {r[0] for r in self._db.execute("SELECT case_id FROM rated_cases")}
            self._next_seq = _top(self._db) + 1
            self._gone = self._connect(synchronous="NORMAL")
        except OutboxError:
            self._drop()  # a schema this release cannot read: not a disk problem, nothing to retry
            raise
        except (sqlite3.Error, OSError) as e:
            self._drop()
            if moved is not None:
                self._notices.put(("raise", "outbox_corrupt", f"{moved[1]}; moved to {moved[0].name}; "
                                                              f"salvaged once the store opens"))
            self._became_unavailable(e)
            return False
        self._attempt = 0
        if self.unavailable:
            log.warning("outbox %s is available again", self.path)
            self.unavailable = ""
            self._notices.put(("clear", "outbox_unavailable", ""))
        return True

    def _became_unavailable(self, e: Exception) -> None:
        reason = _classify(e).reason if isinstance(e, sqlite3.Error) else "io"
        first = not self.unavailable
        self.unavailable = f"{reason}: {e}"
        lo, hi = self._retry_s
        self._next_try = time.monotonic() + min(hi, lo * 2 ** min(self._attempt, 20))
        self._attempt += 1
        if first:
            log.error("outbox %s cannot be opened (%s); retrying, ratings cannot be stored meanwhile",
                      self.path, self.unavailable)
            self._notices.put(("raise", "outbox_unavailable", f"{self.path.name}: {self.unavailable}"))
        if self._retrier is None or not self._retrier.is_alive():
            self._retrier = threading.Thread(target=self._retry, name="outbox-retry", daemon=True)
            self._retrier.start()

    def _retry(self) -> None:
        """Background: open again with backoff until it works or the outbox is closed."""
        while not self._closed.is_set():
            with self._lock:
                if self._db is not None:
                    return
                wait = self._next_try - time.monotonic()
                if wait <= 0:
                    self._open_locked()
                    wait = 0.0
            self._fire()
            if wait > 0:
                self._closed.wait(wait)

    def _ready(self) -> None:
        """With the lock held: the store is open (tried again now if it was not), else OutboxError.

        Each use tries (a press, the courier's once-a-second look): space freed is used at once.
        """
        if self._db is None:
            if self._closed.is_set():
                raise OutboxError("unavailable", "closed")
            self._open_locked()
            if self._db is None:
                raise OutboxError("unavailable", self.unavailable)

    def _fire(self) -> None:
        """Hand queued alarm changes to the callbacks, outside the lock (they may ask for counts)."""
        while True:
            try:
                kind, code, detail = self._notices.get_nowait()
            except queue.Empty:
                return
            try:
                self._on_alarm(code, detail) if kind == "raise" else self._on_clear(code)
            except Exception:  # noqa: BLE001 - an alarm sink must not break the store
                log.exception("alarm callback failed for %s", code)

    def _connect(self, synchronous: str = "FULL") -> sqlite3.Connection:
        self._make_private()
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error:
            db.close()
            raise
        return db

    def _make_private(self) -> None:
        """The file (and so its -wal and -shm, which SQLite creates with the file's mode) is 0600."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm"):
            f = Path(str(self.path) + suffix)
            if f.exists() and f.stat().st_mode & 0o777 != 0o600:
                os.chmod(f, 0o600)

    def _drop(self) -> None:
        for db in (self._db, self._gone):
            if db is not None:
                try:
                    db.close()
                except sqlite3.Error:
                    pass
        self._db = self._gone = None

    def _check(self) -> None:
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if rows != [("ok",)]:
            raise _Damaged("; ".join(str(r[0]) for r in rows[:5]))
        self._schema()

    def _schema(self) -> None:
        """Make a new store at this release's schema; check (with `migrate`: move forward) an existing one."""
        db, want = self._db, schema_version()
        if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            db.executescript(f"BEGIN IMMEDIATE; {SCHEMA}; PRAGMA user_version={want}; COMMIT;")
            self.schema = want
            return
        have = stored_version(db)
        if self.migrate and have < want:
            _migrate(db, have, want, self.path)
            have = want
        if have > want:
            raise OutboxError("schema", f"{self.path} is at schema {have}, written by a newer release; "
                                        f"this one reads {want - 1}..{want}")
        if have < want - 1:
            raise OutboxError("schema", f"{self.path} is at schema {have}; this release reads {want - 1}..{want}: "
                                        f"run `python -m device.outbox migrate {self.path.parent}` first")
        if have == want:
            db.executescript(SCHEMA)
        self.schema = have

    def _move_aside(self, why: str) -> Path:
        """Keep the damaged file (and its -wal, -shm) as `<name>.corrupt-<time>`; it is salvaged next."""
        self._drop()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        log.error("outbox %s is damaged (%s); moved to %s", self.path, why, aside)
        return aside

    def _leftovers(self) -> list[Path]:
        """Damaged files moved aside and not yet salvaged (a crash or a full disk may have come between)."""
        return sorted(p for p in self.path.parent.glob(f"{self.path.name}.corrupt-*")
                      if not p.name.endswith(("-wal", "-shm", SALVAGED)))

    def _salvage_leftovers(self, moved: tuple[Path, str] | None) -> None:
        """Copy what is readable out of each leftover, then rename it `….salvaged` (never salvaged twice).

        A leftover that cannot be read now (disk I/O, not damage) stays for the next start.
        """
        for aside in self._leftovers():
            try:
                records, cases = self._salvage(aside)
            except (sqlite3.Error, OutboxError) as e:
                log.error("could not salvage %s now (%s); trying again at the next start", aside, e)
                if moved is not None and aside == moved[0]:
                    self._notices.put(("raise", "outbox_corrupt", f"{moved[1]}; moved to {aside.name}; salvage "
                                                                  f"failed, tried again at the next start: {e}"))
                else:
                    self._notices.put(("raise", "outbox_salvage_failed", f"{aside.name}: {e}"))
                continue
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(aside) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + SALVAGED + suffix))
            news = f"{records} records salvaged, {cases} rated cases"
            log.error("salvaged %s: %s", aside, news)
            if moved is not None and aside == moved[0]:
                self._notices.put(("raise", "outbox_corrupt", f"{moved[1]}; moved to {aside.name}; {news}"))
            else:
                self._notices.put(("raise", "outbox_salvaged", f"{aside.name}: {news}"))

    def _salvage(self, aside: Path) -> tuple[int, int]:
        """Copy every readable record and rated case from a damaged file; (records, rated cases) copied.

        A record whose sequence number is taken in the new store gets the next free one (its payload,
        with the seq it was sent with, is unchanged); a record whose id is already here is skipped.
        """
        old = sqlite3.connect(f"file:{aside}?mode=ro", uri=True)
        db = self._db
        try:
            old.execute("PRAGMA writable_schema=ON")  # reads a truncated file up to where it ends
            have_ids = {r[0] for r in db.execute("SELECT id FROM outbox")}
            have_seqs = {r[0] for r in db.execute("SELECT seq FROM outbox")}
            top = _top(db)
            try:
                row = old.execute("SELECT v FROM meta WHERE k='seq'").fetchone()
                top = max(top, row[0] if row else 0)
            except sqlite3.DatabaseError as e:
                if not is_corruption(e):
                    raise
            records = cases = 0
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = list(_readable(old, "outbox", "seq, id, leaf, payload, created, quarantined, reason", "seq",
                                      top))
                top = max([top] + [r[0] for r in rows if _plausible(r)])
                for row in rows:
                    if not _plausible(row) or row[1] in have_ids:
                        continue
                    if row[0] in have_seqs:
                        top += 1
                        row = (top,) + row[1:]
                    db.execute("INSERT INTO outbox VALUES (?,?,?,?,?,?,?)", row)
                    have_ids.add(row[1])
                    have_seqs.add(row[0])
                    records += 1
                for row in _readable(old, "rated_cases", "case_id, rating_id, at", "case_id"):
                    if isinstance(row[0], str) and isinstance(row[1], str) and isinstance(row[2], float):
                        cases += db.execute("INSERT OR IGNORE INTO rated_cases VALUES (?,?,?)", row).rowcount
                db.execute("UPDATE meta SET v=max(v, ?) WHERE k='seq'", (top,))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        finally:
            old.close()
        return records, cases

    def _prune(self) -> None:
        self._db.execute("DELETE FROM rated_cases WHERE at < ?", (time.time() - RATED_CASES_KEPT_S,))

    def _recount(self) -> None:
        rows = dict(self._db.execute("SELECT quarantined, count(*) FROM outbox GROUP BY quarantined").fetchall())
        self._pending, self._quarantined = rows.get(0, 0), rows.get(1, 0)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._drop()

    # ---- the core thread: adding records -------------------------------------------------------

    def add(self, leaf: str, build: Callable[[str, int, str], dict], case_id: str | None = None) -> Record:
        """Build a record with a fresh id, sequence and wall time, validate it, commit it durably.

        Raises OutboxError: nothing was stored, and the caller must not say "thank you".
        """
        rid, ts = ids.uuid7(), ids.wall_time()
        try:
            with self._lock:
                self._ready()
                if self._pending + self._quarantined >= self.capacity:
                    raise OutboxFull(self.capacity)
                try:
                    return self._add_locked(leaf, build, rid, ts, case_id)
                except BaseException as e:
                    _rollback(self._db)
                    if isinstance(e, sqlite3.Error):
                        raise _classify(e) from e
                    raise
        finally:
            self._fire()

    def _add_locked(self, leaf, build, rid, ts, case_id) -> Record:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        seq = self._next_seq  # taken by the record's own row in its own commit: see `delivered` for the rest
        msg = codec.validate(build(rid, seq, ts))
        payload = codec.encode(msg)
        db.execute("INSERT INTO outbox (seq, id, leaf, payload, created) VALUES (?,?,?,?,?)",
                   (seq, rid, leaf, payload, time.time()))
        if case_id is not None:
            db.execute("INSERT OR REPLACE INTO rated_cases VALUES (?,?,?)", (case_id, rid, time.time()))
        db.execute("COMMIT")
        self._pending += 1
        self._next_seq = seq + 1
        if case_id is not None:
            self._rated.add(case_id)
        return Record(seq, rid, leaf, payload)

    def case_rated(self, case_id: str) -> bool:
        """Was this case rated here (within the last 30 days)? Answered from memory: no disk on the hot path."""
        return case_id in self._rated

    # ---- the courier thread: delivering --------------------------------------------------------

    def due(self, limit: int, after: int = 0) -> list[Record]:
        """Up to `limit` undelivered, unquarantined records with sequence > `after`, oldest first.

        None while the store is unavailable (each call may re-open it).
        """
        try:
            with self._lock:
                self._ready()
                rows = self._db.execute("SELECT seq, id, leaf, payload FROM outbox WHERE quarantined=0 AND seq > ? "
                                    "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        except OutboxError:
            return []
        finally:
            self._fire()
        return [Record(*r) for r in rows]

    def delivered(self, keys: Iterable[tuple[str, int | None]]) -> int:
        """Receipted: the system of record has these (id, seq if known). Only now do they leave the terminal.

        Deletions go through a second connection with synchronous=NORMAL: no fsync on the receipt path.
        A deletion lost to a power cut only means the record is offered again, and the ledger keeps
        one row per id. Every record is still added with synchronous=FULL, and that fsync also makes any
        earlier deletion in the write-ahead log durable.

        Sequence numbers: the next one is always max(seq in the table, meta 'seq') + 1, so numbers stay
        contiguous across restarts and kill -9 (a gap means a record never committed). A deletion first
        raises meta 'seq' to the table's max in the same transaction; a lost deletion loses that too,
        and the rows still hold the max. A rating's commit writes nothing beyond its own row.

        Raises OutboxError when the deletion did not commit (full disk): nothing left, try again later.
        """
        keys = list(keys)
        by_seq = [(seq, rid) for rid, seq in keys if seq is not None]
        by_id = [(rid,) for rid, seq in keys if seq is None]
        try:
            with self._lock:
                self._ready()
                db = self._gone
                try:
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("UPDATE meta SET v = (SELECT max(seq) FROM outbox) WHERE k='seq' "
                               "AND v < (SELECT coalesce(max(seq), 0) FROM outbox)")
                    before = db.total_changes
                    db.executemany(self._by_key("DELETE FROM outbox WHERE quarantined=0", 0), by_seq)
                    db.executemany(self._by_key("DELETE FROM outbox WHERE quarantined=0", None), by_id)
                    n = db.total_changes - before
                    db.execute("COMMIT")
                except sqlite3.Error as e:
                    _rollback(db)
                    raise _classify(e) from e
                self._pending -= n
        finally:
            self._fire()
        return n

    def quarantine(self, rid: str, reason: str, seq: int | None = None) -> bool:
        with self._lock:
            self._ready()
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
            self._ready()
            return self._db.execute("SELECT id, reason FROM outbox WHERE quarantined=1 ORDER BY seq").fetchall()

    def requeue_quarantined(self) -> int:
        """Maintenance: offer quarantined records again (after the center fixed its ACL, say)."""
        with self._lock:
            self._ready()
            n = self._db.execute("UPDATE outbox SET quarantined=0, reason=NULL WHERE quarantined=1").rowcount
            self._pending += n
            self._quarantined -= n
        return n

    def counts(self) -> Counts:
        with self._lock:
            return Counts(self._pending, self._quarantined, self.capacity)


def schema_version() -> int:
    """This release's outbox schema: 1 plus the forward migrations it carries."""
    return 1 + len(MIGRATIONS)


def stored_version(db: sqlite3.Connection) -> int:
    """A store's schema; a file made before versions existed (user_version 0) is schema 1."""
    return db.execute("PRAGMA user_version").fetchone()[0] or 1


def _migrate(db: sqlite3.Connection, have: int, want: int, path: Path) -> None:
    """Each step in its own transaction with its new user_version: a power cut leaves a whole schema."""
    for version in range(have, want):
        db.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](db)
            db.execute(f"PRAGMA user_version={version + 1}")
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        log.warning("outbox %s migrated from schema %d to %d", path, version, version + 1)


def migrate(path: str | Path) -> tuple[int, int]:
    """Move an existing store forward to this release's schema: (before, after); (0, 0) when there is none.

    `path` is the store or the data directory holding `outbox.db`. Raises OutboxError("schema") for a
    store newer than this release.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "outbox.db"
    if not path.exists():
        return 0, 0
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA synchronous=FULL")
        have, want = stored_version(db), schema_version()
        if have > want:
            raise OutboxError("schema", f"{path} is at schema {have}, newer than this release's {want}")
        if have < want:
            _migrate(db, have, want, path)
        return have, want
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    """`python -m device.outbox migrate|version DATA_DIR`: what the updater runs at commit."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m device.outbox", description="the outbox's schema version")
    ap.add_argument("command", choices=("migrate", "version"))
    ap.add_argument("data_dir", type=Path, help="the terminal's data directory (or the outbox.db file)")
    args = ap.parse_args(argv)
    path = args.data_dir / "outbox.db" if args.data_dir.is_dir() else args.data_dir
    if args.command == "version":
        if not path.exists():
            print(f"{path}: no outbox yet; this release makes schema {schema_version()}")
            return 0
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            print(f"{path}: schema {stored_version(db)}; this release reads {schema_version() - 1}..{schema_version()}")
        finally:
            db.close()
        return 0
    try:
        before, after = migrate(path)
    except OutboxError as e:
        print(f"outbox: {e}", file=sys.stderr)
        return 1
    print(f"{path}: " + ("no outbox yet" if not before else
                         f"schema {before} -> {after}" if before != after else f"schema {after}, nothing to do"))
    return 0


def is_corruption(e: BaseException) -> bool:
    """SQLite says the file itself is damaged (CORRUPT, NOTADB), as opposed to a full or failing disk."""
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def _classify(e: sqlite3.Error) -> OutboxError:
    """By SQLite's result code, never by the message text."""
    code = getattr(e, "sqlite_errorcode", None)
    if code is not None and code & 0xFF == SQLITE_FULL:
        return OutboxError("disk_full", str(e))
    if is_corruption(e):
        return OutboxError("corrupt", str(e))
    return OutboxError("io", str(e))


def _top(db: sqlite3.Connection) -> int:
    """The highest sequence number taken: the table's, or meta 'seq' (as of the last deletion) if higher."""
    return db.execute("SELECT max((SELECT v FROM meta WHERE k='seq'), "
                      "coalesce((SELECT max(seq) FROM outbox), 0))").fetchone()[0]


def _plausible(row: tuple) -> bool:
    """A salvaged outbox row that has what a record needs (a damaged page can read as garbage)."""
    seq, rid, leaf, payload, created, quarantined, _ = row
    return (isinstance(seq, int) and seq >= 1 and isinstance(rid, str) and isinstance(leaf, str)
            and isinstance(payload, bytes) and isinstance(created, float) and quarantined in (0, 1))


def _rollback(db: sqlite3.Connection) -> None:
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error as e:  # SQLite rolls back by itself when it cannot go on
        log.warning("rollback failed: %s", e)


def _readable(old: sqlite3.Connection, table: str, cols: str, key: str, top: int | None = None) -> Iterator[tuple]:
    """Every row of `table` still readable, by `key` (the first of `cols`): from both ends, then between.

    Each row is a query of its own (a seek from the root), so a damaged page loses only its own rows:
    a cursor would read one row ahead and lose the last good row before the damage. For an integer key
    with a known `top`, the keys between where the two scans stopped are looked up one by one (the
    pages of a table need not lie in key order, so good pages may sit beyond a damaged one).
    """
    ends: list[int | None] = []
    for op, order in ((">", "ASC"), ("<", "DESC")):
        last = None
        while True:
            where, args = ("", ()) if last is None else (f"WHERE {key} {op} ?", (last,))
            try:
                row = _one(old, f"SELECT {cols} FROM {table} {where} ORDER BY {key} {order} LIMIT 1", args)
            except sqlite3.DatabaseError as e:
                log.warning("salvage of %s (%s) stopped at a damaged page: %s", table, order, e)
                break
            if row is None and order == "ASC":
                return  # read to the end: nothing is left for the other direction
            if row is None or (order == "DESC" and ends[0] is not None and row[0] <= ends[0]):
                break
            if last is not None and (row[0] <= last if order == "ASC" else row[0] >= last):
                log.warning("salvage of %s (%s) stopped at a damaged page: keys out of order", table, order)
                break  # a damaged page read as garbage: the keys go backwards
            yield row
            last = row[0]
        ends.append(last)
    if top is None:
        return
    # Above `top` (the sequence as of the last deletion) records were never deleted: their keys run
    # without holes, so a long run of misses there means the end. Below it, every key is looked up.
    lo = ends[0] or 0
    hi = ends[1] if ends[1] is not None else lo + 1 + GAP_LOOKUPS
    misses = 0
    for k in range(lo + 1, min(hi, lo + 1 + GAP_LOOKUPS)):
        try:
            row = _one(old, f"SELECT {cols} FROM {table} WHERE {key} = ?", (k,))
        except sqlite3.DatabaseError:
            row = None
        if row is not None and row[0] == k:
            misses = 0
            yield row
        elif k > top:
            misses += 1
            if misses >= MISS_RUN:
                return


def _one(old: sqlite3.Connection, sql: str, args: tuple) -> tuple | None:
    """One row; corruption raises sqlite3.DatabaseError, any other failure (a failing disk) OutboxError."""
    try:
        return old.execute(sql, args).fetchone()
    except sqlite3.DatabaseError as e:
        if is_corruption(e):
            raise
        raise _classify(e) from e


if __name__ == "__main__":
    sys.exit(main())
