"""The one door on both databases (a SQLite file, a throwaway PostgreSQL): what the center learns from its
published messages, phone ratings as records of the wire contract, one first rating per case across
channels and across processes, the static codes' limits, the SMS follow-up scheduled with the record."""
from __future__ import annotations

import threading

import pytest
from hypothesis import given, strategies as st
from sqlalchemy import select

from center.contacts import ContactError, normalise, set_contact
from center.desk import Desk, PhoneRating, StaticLimits
from center.ledger.record import Record
from center.sms.schedule import SmsPolicy
from center.store import Store
from center.store.tables import city_delivery, notices, ratings, sms_jobs
from devkit import factories
from protocol import builders, codec, ids, topics

C, W = "C1", "W01"
T = topics.Topics(C, W, "t1")


def publish(record: Record, *messages: tuple[str, dict]) -> dict:
    return record.ingest([(topic, codec.encode(body)) for topic, body in messages])


@pytest.fixture
def record(store: Store) -> Record:
    r = Record(store, sms_policy=SmsPolicy(delay_s=0, start="00:00", end="23:59"))
    publish(r, (T.catalog, factories.catalog(C)), (T.duty, factories.duty(C, W)),
            (T.case, factories.case(C, W, "SH1")))
    return r


def rows(store: Store, *columns):
    with store.read() as conn:
        return [tuple(r) for r in conn.execute(select(*columns).order_by(*columns))]


def test_a_phone_rating_is_a_record_of_the_wire_contract_owing_the_terminal_and_the_city(record):
    desk = Desk(record)
    case = desk.case(C, "SH1")
    assert (case.item_name, case.staff_name, case.window_name, case.rated) == ("居住证办理", "王芳", "一号窗口", False)
    done = desk.rate_case(C, "SH1", "qr", PhoneRating("satisfied"), window=W, staff="S0101")
    assert done.status == "stored" and desk.case(C, "SH1").rated
    owed = {t: codec.decode("case" if t.endswith("/case") else "rating", bytes(p)) for t, p in
            rows(record.store, notices.c.topic, notices.c.payload)}
    rated = owed[T.case]
    assert rated["state"] == "rated" and rated["rated_channel"] == "qr" and rated["case"]["id"] == "SH1"
    assert list(owed) == [T.case]   # the record itself goes to the city by the city delivery
    [(rid, device, seq, channel, applicant)] = rows(record.store, ratings.c.id, ratings.c.device, ratings.c.seq,
                                                    ratings.c.channel, ratings.c.applicant)
    assert (rid, device, seq, channel, applicant) == (done.rating_id, "center-web", 1, "qr",
                                                      factories.APPLICANT["token"])
    assert rows(record.store, city_delivery.c.rating_id, city_delivery.c.state) == [(rid, "pending")]
    again = desk.rate_case(C, "SH1", "qr", PhoneRating("very_satisfied"), window=W, staff="S0101")
    assert again.status == "already_rated"
    assert rows(record.store, ratings.c.channel, ratings.c.first) == [("qr", 1)]


def test_a_token_that_names_another_window_or_staff_member_rates_nothing(record):
    desk = Desk(record)
    assert desk.rate_case(C, "SH1", "qr", PhoneRating("satisfied"), window="W02", staff="S0101").status == "refused"
    assert desk.rate_case(C, "SH1", "qr", PhoneRating("satisfied"), window=W, staff="S9999").status == "refused"
    assert desk.rate_case(C, "NOPE", "qr", PhoneRating("satisfied"), window=W, staff="S0101").status == "refused"
    assert rows(record.store, ratings.c.id) == []


def test_a_bad_rating_needs_reasons_from_the_current_catalog(record):
    desk = Desk(record)
    for reasons in ((), ("nope",), ("501", "501")):
        done = desk.rate_case(C, "SH1", "qr", PhoneRating("dissatisfied", reasons), window=W, staff="S0101")
        assert (done.status, done.reason) == ("refused", "reasons")
    done = desk.rate_case(C, "SH1", "qr", PhoneRating("dissatisfied", ("501",), "等太久"), window=W, staff="S0101")
    assert done.status == "stored"
    assert rows(record.store, ratings.c.reasons, ratings.c.catalog) == [("501", factories.CATALOG_VERSION)]


def test_a_terminal_rating_after_the_phone_is_kept_and_receipted_but_not_first(record):
    Desk(record).rate_case(C, "SH1", "qr", PhoneRating("satisfied"), window=W, staff="S0101")
    late = factories.rating("t1", C, W, kind="case", case=factories.case_model("SH1"), staff=factories.staff(0))
    receipts = publish(record, (T.rating, late))
    assert receipts[T.receipt] == [{"id": late["id"], "status": "stored"}]
    assert rows(record.store, ratings.c.channel, ratings.c.first) == [("qr", 1), ("touch", 0)]


def test_a_record_on_the_center_web_topic_that_the_center_did_not_make_is_refused(record):
    forged = factories.rating("center-web", C, W)
    receipts = publish(record, (topics.Topics(C, W, "center-web").rating, forged))
    [item] = receipts[topics.Topics(C, W, "center-web").receipt]
    assert item["status"] == "rejected" and rows(record.store, ratings.c.id) == []


def test_two_services_racing_on_one_case_store_one_rating(record, store_url):
    """Two processes' worth (a Store each, on the same database) and several phones each: one stored."""
    others = [Record(Store(store_url)) for _ in range(2)]
    desks = [Desk(r) for r in others for _ in range(3)]
    go = threading.Barrier(len(desks))
    outcomes: list[str] = []

    def rate(desk: Desk) -> None:
        go.wait()
        outcomes.append(desk.rate_case(C, "SH1", "qr", PhoneRating("satisfied"), window=W, staff="S0101").status)

    threads = [threading.Thread(target=rate, args=(d,)) for d in desks]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for r in others:
        r.store.close()
    assert sorted(outcomes) == ["already_rated"] * (len(desks) - 1) + ["stored"]
    assert rows(record.store, ratings.c.first) == [(1,)]


def test_static_codes_are_limited_per_phone_and_per_address(record):
    desk = Desk(record, limits=StaticLimits(staff_per_client_s=3600, staff_per_addr_hour=2))
    rate = lambda client, addr: desk.rate_staff(C, "S0101", PhoneRating("satisfied"), client=client, addr=addr,  # noqa: E731
                                                now=1_000_000).status
    assert rate("phone-a", "addr-1") == "stored"
    assert rate("phone-a", "addr-2") == "limited"   # the same phone again
    assert rate("phone-b", "addr-1") == "stored"
    assert rate("phone-c", "addr-1") == "limited"   # a third from one address within the hour
    assert desk.rate_staff(C, "S0101", PhoneRating("satisfied"), client="phone-a", addr="addr-3",
                           now=1_000_000 + 3601).status == "stored"
    assert rows(record.store, ratings.c.kind, ratings.c.channel, ratings.c.window) == [("staff", "staff_qr", W)] * 3


def test_an_unrated_case_with_a_contact_schedules_one_sms_and_a_rating_cancels_it(record):
    set_contact(record, C, "SH1", "+86 139-1234-5678")
    ev = builders.unrated(factories.case_model("SH1"), builders.Origin(C, W, "t1"), ids.uuid7(), 1, ids.wall_time())
    publish(record, (T.event, ev), (T.event, ev))  # offered twice: one event, one job
    assert rows(record.store, sms_jobs.c.state) == [("pending",)]
    Desk(record).rate_case(C, "SH1", "qr", PhoneRating("satisfied"), window=W, staff="S0101")
    assert rows(record.store, sms_jobs.c.state) == [("cancelled",)]


def test_a_contact_given_after_the_case_closed_unrated_still_schedules_the_sms(record):
    publish(record, (T.case, factories.case(C, W, "SH1", "closed")))
    assert rows(record.store, sms_jobs.c.state) == []
    assert set_contact(record, C, "SH1", "13912345678") is True
    assert rows(record.store, sms_jobs.c.state) == [("pending",)]


@given(st.text(max_size=40))
def test_a_phone_number_from_the_feed_is_a_mainland_mobile_or_refused(text):
    try:
        number = normalise(text)
    except ContactError:
        return
    assert len(number) == 11 and number.isdigit() and number[0] == "1" and number[1] in "3456789"


def test_phone_numbers_are_normalised():
    assert {normalise(x) for x in ("13912345678", "+86 139 1234 5678", "0086-139-1234-5678")} == {"13912345678"}
    for bad in ("", "12345678901", "139123456789", "２３９１２３４５６７８", "139１2345678"):
        with pytest.raises(ContactError):
            normalise(bad)


def test_a_rating_offered_twice_is_stored_once_and_owed_to_the_city_once(record):
    """Staff/hall ratings find a duplicate by their insert alone (no case index can conflict); case ratings by
    a look-up first. Both in one batch and across batches."""
    staff_rating = factories.rating("t1", C, W, kind="staff", staff=factories.staff(0))
    case_rating = factories.rating("t1", C, W, kind="case", case=factories.case_model("SH1"), staff=factories.staff(0),
                                   seq=2)
    first = publish(record, (T.rating, staff_rating), (T.rating, case_rating), (T.rating, staff_rating))
    again = publish(record, (T.rating, case_rating), (T.rating, staff_rating))
    assert [i["status"] for i in first[T.receipt]] == ["stored", "stored", "duplicate"]
    assert [i["status"] for i in again[T.receipt]] == ["duplicate", "duplicate"]
    assert len(rows(record.store, ratings.c.id)) == 2
    assert sorted(rows(record.store, city_delivery.c.rating_id)) == sorted([(staff_rating["id"],), (case_rating["id"],)])
