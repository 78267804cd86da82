"""The store on SQLite and PostgreSQL alike: schema creation, reopening, and the one-first-rating rule
enforced by the database itself (the partial unique index), also under concurrent writers."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import func, insert, inspect, select
from sqlalchemy.exc import IntegrityError

from center.store import Store, tables

R = tables.ratings


def rating(center: str, case_id: str | None, first: int, **over) -> dict:
    row = dict(id=str(uuid.uuid4()), center=center, window="W01", device="d1", seq=1,
               ts="2026-11-30T08:00:00+08:00", kind="case", level="satisfied", channel="qr",
               case_id=case_id, first=first, received=time.time())
    return {**row, **over}


def add(store: Store, row: dict) -> None:
    with store.write() as conn:
        conn.execute(insert(R), row)


def firsts(store: Store, center: str, case_id: str) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(R).where(
            R.c.center == center, R.c.case_id == case_id, R.c.first == 1)).scalar_one()


def schema(store: Store) -> dict[str, list[str]]:
    insp = inspect(store.engine)
    return {t: sorted(c["name"] for c in insp.get_columns(t)) for t in sorted(insp.get_table_names())}


def test_every_table_exists_with_its_columns(store):
    found = schema(store)
    for name, table in tables.metadata.tables.items():
        assert name in found, name
        assert found[name] == sorted(c.name for c in table.columns), name


def test_the_one_first_rating_index_exists(store):
    indexes = {i["name"]: i for i in inspect(store.engine).get_indexes("ratings")}
    assert indexes["one_first_rating_per_center_case"]["unique"]


def test_opening_the_same_database_again_changes_nothing(store, store_url):
    add(store, rating("C1", "K1", 1))
    before = schema(store)
    again = Store(store_url)
    try:
        assert schema(again) == before
        assert firsts(again, "C1", "K1") == 1
        with pytest.raises(IntegrityError):  # the index is still there
            add(again, rating("C1", "K1", 1))
    finally:
        again.close()


def test_a_second_first_rating_for_a_case_is_refused(store):
    add(store, rating("C1", "K1", 1))
    with pytest.raises(IntegrityError):
        add(store, rating("C1", "K1", 1, channel="sms"))
    assert firsts(store, "C1", "K1") == 1


def test_later_ratings_and_other_centers_are_allowed(store):
    add(store, rating("C1", "K1", 1))
    add(store, rating("C1", "K1", 0))
    add(store, rating("C1", "K1", 0))
    add(store, rating("C2", "K1", 1))   # the same case number at another center is another case
    add(store, rating("C1", "K2", 1))
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(R)).scalar_one() == 5
    assert (firsts(store, "C1", "K1"), firsts(store, "C2", "K1"), firsts(store, "C1", "K2")) == (1, 1, 1)


def test_ratings_without_a_case_are_not_limited_by_the_index(store):
    add(store, rating("C1", None, 1, kind="staff"))
    add(store, rating("C1", None, 1, kind="staff"))
    with store.read() as conn:
        assert conn.execute(select(func.count()).select_from(R).where(R.c.case_id.is_(None))).scalar_one() == 2


def test_a_failed_write_leaves_nothing_half_stored(store):
    add(store, rating("C1", "K1", 1))
    other = rating("C1", "K9", 1)
    with pytest.raises(IntegrityError):
        with store.write() as conn:
            conn.execute(insert(R), other)              # fine on its own ...
            conn.execute(insert(R), rating("C1", "K1", 1))  # ... but this one breaks the rule
    with store.read() as conn:
        assert conn.execute(select(R.c.id).where(R.c.id == other["id"])).first() is None


def test_concurrent_first_ratings_leave_exactly_one(store):
    n = 8
    start = threading.Barrier(n)
    outcome: list[str] = []
    lock = threading.Lock()

    def writer(i: int) -> None:
        start.wait()
        try:
            add(store, rating("C1", "RACE", 1, device=f"d{i}", seq=i))
            result = "stored"
        except IntegrityError:
            result = "refused"
        with lock:
            outcome.append(result)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcome) == ["refused"] * (n - 1) + ["stored"]
    assert firsts(store, "C1", "RACE") == 1
