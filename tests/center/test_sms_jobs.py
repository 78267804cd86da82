"""The SMS outbox and links on a real Store (SQLite file), and the worker end to end with the file
gateway and with a real webhook receiver. Time is passed in (`now`), never waited for."""
from __future__ import annotations

import itertools
import json
import logging
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import insert, select

from center.sms import jobs
from center.sms.gateway import Delivery, FileGateway, Outgoing, WebhookGateway, idempotency_key
from center.sms.schedule import SmsPolicy, due_at
from center.sms.worker import SmsWorker
from center.store import Store
from center.store.tables import cases, centers, contacts, ratings, sms_jobs, sms_links
from devkit.waiting import wait_for
from tests.center.test_sms_gateway import SECRET, Receiver

POLICY = SmsPolicy()
PHONE = "13812345678"
CLOSED = datetime.fromisoformat("2026-11-30T10:00:00+08:00").timestamp()
DUE = CLOSED + 600
BASE = "https://h.gov.cn"


@pytest.fixture
def store(store: Store) -> Store:
    """tests/center/conftest.py's store (a fresh SQLite file, then a fresh PostgreSQL database) with a center."""
    with store.write() as conn:
        conn.execute(insert(centers).values(center="C1", name="浦东新区市民中心", updated=CLOSED))
    return store


def add_case(store: Store, case_id: str = "SH77", phone: str | None = PHONE, item: str | None = "户籍证明") -> None:
    with store.write() as conn:
        conn.execute(insert(cases).values(center="C1", case_id=case_id, window="W01", staff="s1",
                                          state="closed", updated=CLOSED, item_name=item))
        if phone is not None:
            conn.execute(insert(contacts).values(center="C1", case_id=case_id, phone=phone, created=CLOSED))


def rate(store: Store, case_id: str = "SH77") -> None:
    with store.write() as conn:
        conn.execute(insert(ratings).values(id=str(uuid.uuid4()), center="C1", window="W01", device="d1", seq=1,
                                            ts="2026-11-30T10:20:00+08:00", kind="case", level="satisfied",
                                            channel="touch", case_id=case_id, first=1, received=CLOSED))


def schedule(store: Store, case_id: str = "SH77", closed: float = CLOSED) -> bool:
    with store.write() as conn:
        return jobs.schedule(conn, "C1", case_id, closed, closed, POLICY)


def job_row(store: Store, case_id: str = "SH77"):
    with store.read() as conn:
        return conn.execute(select(sms_jobs).where(sms_jobs.c.case_id == case_id)).one()


def token_of(store: Store, case_id: str = "SH77") -> str:
    return job_row(store, case_id).link


# ---- scheduling ---------------------------------------------------------------------------------------

def test_schedule_creates_one_job_due_after_the_delay_with_a_hashed_link(store: Store) -> None:
    add_case(store)
    assert schedule(store)
    row = job_row(store)
    assert (row.state, row.due, row.next_try, row.attempts) == ("pending", DUE, DUE, 0)
    assert len(row.link) == 22
    with store.read() as conn:
        link = conn.execute(select(sms_links)).one()
    assert link.hash == jobs.token_hash(row.link) and row.link not in link.hash
    assert link.expires == DUE + POLICY.link_ttl_s and link.used_at is None

    assert not schedule(store)   # a second unrated event for the case: still one job, one link
    with store.read() as conn:
        assert len(conn.execute(select(sms_jobs)).all()) == 1
        assert len(conn.execute(select(sms_links)).all()) == 1


def test_schedule_in_the_evening_is_due_next_morning(store: Store) -> None:
    add_case(store)
    evening = datetime.fromisoformat("2026-11-30T19:55:00+08:00").timestamp()
    assert schedule(store, closed=evening)
    assert job_row(store).due == datetime.fromisoformat("2026-12-01T08:00:00+08:00").timestamp()


def test_no_job_without_a_phone_number_or_for_a_rated_case(store: Store) -> None:
    add_case(store, "NOPHONE", phone=None)
    assert not schedule(store, "NOPHONE")
    add_case(store, "RATED")
    rate(store, "RATED")
    assert not schedule(store, "RATED")
    with store.read() as conn:
        assert conn.execute(select(sms_jobs)).all() == []


def test_a_second_schedule_is_refused_by_the_constraint_and_the_transaction_goes_on(store: Store) -> None:
    """The unique constraint decides (as between two writers on PostgreSQL); the savepoint undoes only
    the losing insert, so the rest of the caller's transaction (the `unrated` record) still commits."""
    add_case(store)
    first = schedule(store)
    with store.write() as conn:
        assert jobs.schedule(conn, "C1", "SH77", CLOSED + 5, CLOSED + 5, POLICY) is False
        conn.execute(insert(contacts).values(center="C1", case_id="AFTER", phone=PHONE, created=CLOSED))
    assert first
    with store.read() as conn:
        assert len(conn.execute(select(sms_jobs)).all()) == 1
        assert len(conn.execute(select(sms_links)).all()) == 1
        assert conn.execute(select(contacts.c.case_id).where(contacts.c.case_id == "AFTER")).scalar() == "AFTER"
    assert job_row(store).due == DUE


def test_cancel_stops_a_pending_job_only(store: Store) -> None:
    add_case(store)
    schedule(store)
    with store.write() as conn:
        assert jobs.cancel(conn, "C1", "SH77", DUE)
        assert not jobs.cancel(conn, "C1", "SH77", DUE)
        assert not jobs.cancel(conn, "C1", "NOJOB", DUE)
    row = job_row(store)
    assert (row.state, row.link) == ("cancelled", "")
    with store.read() as conn:
        assert jobs.due(conn, DUE + 86400, 10) == []


# ---- due and mark -------------------------------------------------------------------------------------

def test_due_lists_jobs_whose_time_has_come_with_phone_item_and_center(store: Store) -> None:
    add_case(store, "SH77")
    add_case(store, "SH78", item=None)
    schedule(store, "SH77")
    schedule(store, "SH78", closed=CLOSED + 60)
    with store.read() as conn:
        assert jobs.due(conn, DUE - 1, 10) == []
        first = jobs.due(conn, DUE, 10)
        both = jobs.due(conn, DUE + 60, 10)
        assert len(jobs.due(conn, DUE + 60, 1)) == 1
    assert [(j.case_id, j.phone, j.item_name, j.center_name) for j in first] == \
        [("SH77", PHONE, "户籍证明", "浦东新区市民中心")]
    assert [j.case_id for j in both] == ["SH77", "SH78"] and both[1].item_name == ""


def test_mark_retry_backs_off_then_sent_clears_the_link(store: Store) -> None:
    add_case(store)
    schedule(store)
    with store.write() as conn:
        assert jobs.mark(conn, job_row(store).id, Delivery("retry", error="webhook: adapter answered HTTP 500"),
                         DUE, POLICY) == "pending"
    row = job_row(store)
    assert (row.attempts, row.next_try, row.last_error) == (1, DUE + 30, "webhook: adapter answered HTTP 500")
    with store.read() as conn:
        assert jobs.due(conn, DUE + 29, 10) == [] and len(jobs.due(conn, DUE + 30, 10)) == 1
    with store.write() as conn:
        assert jobs.mark(conn, row.id, Delivery("sent", provider_id="prov-1"), DUE + 30, POLICY) == "sent"
    row = job_row(store)
    assert (row.state, row.sent_at, row.provider_id, row.link, row.attempts) == ("sent", DUE + 30, "prov-1", "", 2)


def test_mark_failed_and_giving_up_after_max_attempts(store: Store) -> None:
    add_case(store, "SH77")
    add_case(store, "SH78")
    schedule(store, "SH77")
    schedule(store, "SH78")
    with store.write() as conn:
        assert jobs.mark(conn, job_row(store, "SH77").id, Delivery("failed", error="HTTP 400"), DUE, POLICY) == "failed"
    assert (job_row(store, "SH77").last_error, job_row(store, "SH77").link) == ("HTTP 400", "")

    policy = SmsPolicy(max_attempts=3)
    job_id, now = job_row(store, "SH78").id, DUE
    states = []
    for _ in range(3):
        with store.write() as conn:
            states.append(jobs.mark(conn, job_id, Delivery("retry", error="down"), now, policy))
        now = job_row(store, "SH78").next_try
    assert states == ["pending", "pending", "failed"]
    assert job_row(store, "SH78").last_error == "gave up after 3 attempts: down"


# ---- links --------------------------------------------------------------------------------------------

def link_state(store: Store, token: str, now: float) -> str | None:
    with store.read() as conn:
        info = jobs.link(conn, token, now)
    return info and info.state


def test_link_states_ok_used_once_expired_and_rated(store: Store) -> None:
    for case_id in ("A", "B", "C"):
        add_case(store, case_id)
        schedule(store, case_id)
    a, b, c = (token_of(store, x) for x in "ABC")
    expires = DUE + POLICY.link_ttl_s
    with store.read() as conn:
        info = jobs.link(conn, a, DUE)
    assert (info.center, info.case_id, info.expires, info.state) == ("C1", "A", expires, "ok")

    with store.write() as conn:
        assert jobs.use_link(conn, a, DUE)
        assert not jobs.use_link(conn, a, DUE + 1)     # single use
    assert link_state(store, a, DUE + 2) == "used"

    assert link_state(store, b, expires - 0.001) == "ok"
    assert link_state(store, b, expires) == "expired"
    with store.write() as conn:
        assert not jobs.use_link(conn, b, expires)

    rate(store, "C")   # rated on another channel: the link dies at once
    assert link_state(store, c, DUE) == "rated"
    with store.write() as conn:
        assert not jobs.use_link(conn, c, DUE)

    assert link_state(store, "A" * 22, DUE) is None
    assert link_state(store, a + "x", DUE) is None


@pytest.fixture(scope="module")
def one_link_store(tmp_path_factory):
    s = Store(tmp_path_factory.mktemp("links") / "c.db")
    add_case(s)
    schedule(s)
    yield s
    s.close()


@settings(max_examples=100, deadline=None)
@given(token=st.text(max_size=200))
def test_any_string_from_a_url_is_safely_not_a_link(one_link_store: Store, token: str) -> None:
    with one_link_store.read() as conn:
        assert jobs.link(conn, token, DUE) is None
    with one_link_store.write() as conn:
        assert jobs.use_link(conn, token, DUE) is False


# ---- the worker end to end ----------------------------------------------------------------------------

def test_worker_spools_the_sms_with_a_working_link(store: Store, tmp_path: Path, caplog) -> None:
    add_case(store)
    schedule(store)
    token = token_of(store)
    spool = tmp_path / "spool"
    worker = SmsWorker(store, FileGateway(spool), POLICY, BASE + "/", "浦东")
    caplog.set_level(logging.INFO, logger="center.sms")
    assert worker.run_once(DUE - 1) == 0
    assert not list(spool.iterdir())
    assert worker.run_once(DUE) == 1
    files = list(spool.iterdir())
    assert [f.name for f in files] == [idempotency_key("C1", "SH77") + ".json"]
    data = json.loads(files[0].read_text("utf-8"))
    assert data["phone"] == PHONE
    assert data["text"] == f"【浦东】您在浦东新区市民中心办理的户籍证明已办结，请评价：{BASE}/s/{token}"
    row = job_row(store)
    assert (row.state, row.link, row.sent_at, row.provider_id) == ("sent", "", DUE, files[0].name)
    with store.read() as conn:
        assert jobs.link(conn, token, DUE).state == "ok"   # the link in the SMS still works
    assert worker.run_once(DUE + 3600) == 0                 # sent once
    assert "138****5678" in caplog.text and PHONE not in caplog.text


def test_worker_does_not_send_a_job_rated_or_cancelled_after_it_was_read(store: Store, tmp_path: Path) -> None:
    for case_id in ("RATED", "CANCELLED", "TAKEN"):
        add_case(store, case_id)
        schedule(store, case_id)
    with store.read() as conn:
        read = {j.case_id: j for j in jobs.due(conn, DUE, 10)}
    rate(store, "RATED")   # rated between the worker's read and its send; cancel not (yet) run
    with store.write() as conn:
        jobs.cancel(conn, "C1", "CANCELLED", DUE)
        assert jobs.claim(conn, read["TAKEN"], DUE, 300)            # another worker took it
        assert not jobs.claim(conn, read["TAKEN"], DUE, 300)        # ... so this read is stale
        assert not jobs.claim(conn, read["RATED"], DUE, 300)
        assert not jobs.claim(conn, read["CANCELLED"], DUE, 300)
    assert job_row(store, "RATED").state == "cancelled"   # the claim cancelled it

    add_case(store, "LATE")
    schedule(store, "LATE")
    rate(store, "LATE")    # the worker finds it still pending, but the case is rated
    worker = SmsWorker(store, FileGateway(tmp_path / "spool"), POLICY, BASE, "浦东")
    assert worker.run_once(DUE) == 0
    assert list((tmp_path / "spool").iterdir()) == []
    assert job_row(store, "LATE").state == "cancelled"
    assert worker.run_once(DUE + 300) == 1   # TAKEN's lease ran out: due again, sent once
    assert job_row(store, "TAKEN").state == "sent"


class Exploding:
    """A gateway whose provider library raises (with the number in its message, as some do)."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, job: Outgoing) -> Delivery:
        self.calls += 1
        raise RuntimeError(f"provider rejected {job.phone}")


def test_a_raising_gateway_is_a_retry_and_the_number_stays_out_of_the_record(store: Store, caplog) -> None:
    add_case(store)
    schedule(store)
    gateway = Exploding()
    caplog.set_level(logging.INFO, logger="center.sms")
    worker = SmsWorker(store, gateway, POLICY, BASE, "浦东")
    assert worker.run_once(DUE) == 1
    row = job_row(store)
    assert (row.state, row.attempts, row.next_try) == ("pending", 1, DUE + 30)
    assert row.last_error == "gateway raised RuntimeError: provider rejected 138****5678"
    assert PHONE not in caplog.text


def test_the_worker_thread_survives_a_raising_gateway(store: Store) -> None:
    add_case(store)
    schedule(store)
    gateway = Exploding()
    minutes = itertools.count(DUE, 60)   # each round a minute later: every retry (30 s, 60 s) is due
    worker = SmsWorker(store, gateway, SmsPolicy(max_attempts=3), BASE, "浦东", clock=lambda: next(minutes),
                       poll_s=0.01)
    worker.start()
    try:
        wait_for(lambda: job_row(store).state == "failed", timeout=30, what="the job to give up")
    finally:
        worker.stop()
    assert gateway.calls == 3
    assert job_row(store).last_error.startswith("gave up after 3 attempts: gateway raised RuntimeError")


def test_worker_with_the_webhook_retries_then_records_sent(store: Store) -> None:
    add_case(store)
    schedule(store)
    token = token_of(store)
    with Receiver([500, 503, 200]) as rx:
        gateway = WebhookGateway(rx.url, SECRET)
        worker = SmsWorker(store, gateway, POLICY, BASE, "浦东")
        now, states = DUE, []
        for _ in range(3):
            assert worker.run_once(now) == 1
            row = job_row(store)
            states.append((row.state, row.attempts, row.last_error))
            now = row.next_try
        assert worker.run_once(now + 3600) == 0
        gateway.close()
    assert states == [("pending", 1, "webhook: adapter answered HTTP 500"),
                      ("pending", 2, "webhook: adapter answered HTTP 503"), ("sent", 3, None)]
    row = job_row(store)
    assert (row.provider_id, row.sent_at, row.link) == ("prov-3", DUE + 30 + 60, "")
    assert len(rx.requests) == 3 and all(r["valid"] for r in rx.requests)
    assert {r["key"] for r in rx.requests} == {idempotency_key("C1", "SH77")}
    assert rx.requests[-1]["body"]["phone"] == PHONE
    assert rx.requests[-1]["body"]["text"].endswith(f"{BASE}/s/{token}")


def test_a_message_that_cannot_be_built_fails_the_job(store: Store, tmp_path: Path) -> None:
    add_case(store)
    schedule(store)
    worker = SmsWorker(store, FileGateway(tmp_path / "spool"), POLICY, "https://example.org/" + "x" * 60, "浦东")
    assert worker.run_once(DUE) == 0
    row = job_row(store)
    assert row.state == "failed" and "cannot be built" in row.last_error
    assert list((tmp_path / "spool").iterdir()) == []


def test_due_at_used_for_the_job_is_the_schedule_one(store: Store) -> None:
    add_case(store)
    closed = datetime.fromisoformat("2026-11-30T02:00:00+08:00").timestamp()
    schedule(store, closed=closed)
    assert job_row(store).due == due_at(closed, POLICY)
