"""The center's record: one Store over SQLite (a hall) or PostgreSQL (a district), through SQLAlchemy.

`Store(url)` opens the database and brings its schema up to date (Alembic, center/store/migrations/).
Writers take `store.write()`: one transaction, serialised inside the process on SQLite (one writer per
file; `BEGIN IMMEDIATE`, WAL, `synchronous=FULL`), plain on PostgreSQL (the unique indexes settle races).
Readers take `store.read()`.

`store.submit(fn)` is the group commit for many small writers (the phone pages under load): `fn(conn)` runs
on one writer thread, in a savepoint, together with whatever else is queued, and the caller gets its result
only after the shared COMMIT — one fsync for the batch instead of one per rating. An exception of `fn` is
re-raised in the caller and undoes only its own savepoint.
"""
from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

from center.store import tables

T = TypeVar("T")
log = logging.getLogger("store")
GROUP_MAX = 64            # writes committed together at most
SUBMIT_TIMEOUT_S = 60


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path)}"


class Store:
    def __init__(self, url: str | Path):
        url = str(url)
        if "://" not in url:  # a plain path is a SQLite file
            url = sqlite_url(url)
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine: Engine = _engine(url, immediate=True)
        self._reader: Engine = _engine(url, immediate=False) if self.is_sqlite else self.engine
        self._lock = threading.RLock() if self.is_sqlite else None
        from center.store.migrations import upgrade
        upgrade(self.engine)
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()

    def submit(self, fn: Callable[..., T]) -> T:
        """Run `fn(conn)` in the next group commit; its result once that is durable (see the module doc)."""
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._group_commits, name="store-writer", daemon=True)
                    self._writer.start()
        future: Future = Future()
        self._q.put((fn, future))
        return future.result(timeout=SUBMIT_TIMEOUT_S)

    def _group_commits(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < GROUP_MAX:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)  # stop after this batch
                    break
                batch.append(nxt)
            results: list[tuple[Future, object, BaseException | None]] = []
            try:
                with self.write() as conn:
                    for fn, future in batch:
                        # Plain SQL savepoints: SQLAlchemy's begin_nested() costs more than the write it wraps.
                        conn.exec_driver_sql("SAVEPOINT group_write")
                        try:
                            value = fn(conn)
                            results.append((future, value, None))
                        except Exception as e:  # noqa: BLE001 - goes back to its caller, the others go on
                            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT group_write")
                            results.append((future, None, e))
                        conn.exec_driver_sql("RELEASE SAVEPOINT group_write")
            except BaseException as e:  # noqa: BLE001 - the COMMIT failed: nobody's write happened
                log.error("a group commit of %d writes failed: %s", len(batch), e)
                for _, future in batch:
                    future.set_exception(e)
                continue
            for future, value, error in results:
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        if self._lock is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn
            conn.rollback()

    def close(self) -> None:
        if self._writer is not None:
            self._q.put(None)
            self._writer.join(timeout=10)
        self.engine.dispose()
        self._reader.dispose()


def _engine(url: str, immediate: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi, _record) -> None:
        dbapi.isolation_level = None  # we say BEGIN ourselves (below): pysqlite's own would be DEFERRED
        cur = dbapi.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        # Writers take the write lock at BEGIN, so two never deadlock upgrading from read to write.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


__all__ = ["Store", "sqlite_url", "tables"]
