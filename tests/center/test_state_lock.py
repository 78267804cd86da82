"""N ledger workers writing what the center published take turns (PostgreSQL's advisory STATE_LOCK).

Every worker applies every case/duty/catalog/binding message, in batches cut differently among its own
ratings. Without the lock their transactions deadlocked on shared rows (the fleet's steady run: a few a
minute, each a 1-s stall of a batch, the whole p99 tail). Real PostgreSQL, two Records, two threads.
"""
from __future__ import annotations

import random
import threading
import uuid

import pytest
from sqlalchemy import exc, text

from center.ledger.record import STATE_LOCK, Record, in_lock_order, is_state
from center.store import Store
from devkit import factories
from protocol import codec, topics

C = "C1"
STAFF = {"id": "S0101", "name": "王芳", "number": "0101"}  # one member at many windows: a hot row


@pytest.fixture
def pg_url(postgres) -> str:
    return postgres.new_database(f"t_{uuid.uuid4().hex[:16]}")


def published(n: int) -> list[tuple[str, bytes]]:
    """What the center publishes at 20 windows: duty and cases, one staff member everywhere."""
    out = []
    for i in range(n):
        w = f"W{i % 20:02d}"
        t = topics.Topics(C, w, "x")
        if i % 3 == 0:
            out.append((t.duty, codec.encode(factories.duty(C, w, staff=STAFF))))
        else:
            out.append((t.case, codec.encode(factories.case(C, w, f"SH{i:05d}", staff=STAFF))))
    return out


def ratings(device: str, n: int) -> list[tuple[str, bytes]]:
    t = topics.Topics(C, "W01", device)
    return [(t.rating, codec.encode(factories.rating(device, C, "W01", seq=i + 1))) for i in range(n)]


def test_state_and_record_topics_are_told_apart():
    t = topics.Topics(C, "W01", "t1")
    assert is_state(t.case) and is_state(t.duty) and is_state(t.binding) and is_state(f"{topics.PREFIX}/{C}/catalog")
    assert not is_state(t.rating) and not is_state(t.event)


def test_two_workers_applying_the_same_published_state_never_deadlock(pg_url):
    failures: list[BaseException] = []
    state = published(600)

    def worker(name: str, cut: int) -> None:
        rec = Record(Store(pg_url))
        mine = ratings(name, 600)
        batches, i = [], 0
        while i < len(state):  # the same state, cut into batches at other places, each with own ratings
            batches.append(state[i:i + cut] + mine[i:i + cut])
            i += cut
        try:
            for b in batches:
                try:
                    rec.ingest(b)
                except exc.DBAPIError as e:
                    failures.append(e)
        finally:
            rec.store.close()

    Store(pg_url).close()  # the schema, made once
    threads = [threading.Thread(target=worker, args=("a", 7)), threading.Thread(target=worker, args=("b", 11))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    deadlocks = [f for f in failures if "deadlock" in str(f)]
    assert not deadlocks, f"{len(deadlocks)} deadlocks, e.g. {deadlocks[0]}"
    assert not failures


def test_a_batch_with_published_state_waits_for_the_lock_a_batch_of_ratings_does_not(pg_url):
    store = Store(pg_url)
    rec = Record(store)
    done = {"state": threading.Event(), "ratings": threading.Event()}

    def ingest(kind: str, batch) -> None:
        rec.ingest(batch)
        done[kind].set()

    with store.engine.connect() as other:
        other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": STATE_LOCK})  # another worker's turn
        threading.Thread(target=ingest, args=("state", published(3))).start()
        threading.Thread(target=ingest, args=("ratings", ratings("t9", 3))).start()
        assert done["ratings"].wait(30)
        assert not done["state"].is_set()
        other.rollback()  # its transaction ends, and the lock with it
    assert done["state"].wait(30)
    with store.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM cases")).scalar() == 2
    store.close()


def test_first_ratings_of_many_terminals_pin_their_bindings_without_deadlocks(pg_url):
    """The morning storm on a fresh center: every rating is a terminal's first, each pins a binding."""
    failures: list[BaseException] = []
    devices = [f"t{i:03d}" for i in range(300)]
    firsts = {d: ratings(d, 1)[0] for d in devices}

    def worker(order: list[str]) -> None:
        rec = Record(Store(pg_url))
        try:
            for i in range(0, len(order), 50):  # the same first ratings (re-offers reach both), in other orders
                try:
                    rec.ingest([firsts[d] for d in order[i:i + 50]])
                except exc.DBAPIError as e:
                    failures.append(e)
        finally:
            rec.store.close()

    Store(pg_url).close()
    rng = random.Random(7)
    orders = [rng.sample(devices, len(devices)) for _ in range(2)]
    threads = [threading.Thread(target=worker, args=(o,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not failures, f"{len(failures)} failed batches, e.g. {failures[0]}"
    with Store(pg_url).read() as conn:
        assert conn.execute(text("SELECT count(*) FROM bindings")).scalar() == 300
        assert conn.execute(text("SELECT count(*) FROM ratings")).scalar() == 300


def test_lock_order_sorts_records_by_device_between_state_messages_and_keeps_each_devices_order():
    t = {d: topics.Topics(C, "W01", d) for d in ("a", "b", "c")}
    case = (t["a"].case, b"case")
    batch = [(t["c"].rating, b"c1"), (t["a"].rating, b"a1"), (t["c"].event, b"c2"), case,
             (t["b"].rating, b"b1"), (t["a"].event, b"a2"), (t["a"].rating, b"a3")]
    assert [p for _, p in in_lock_order(batch)] == [b"a1", b"c1", b"c2", b"case", b"a2", b"a3", b"b1"]
