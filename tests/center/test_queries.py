"""center/queries.py on SQLite and PostgreSQL: filters, keyset pagination under inserts, summaries against
numbers worked out by hand, the CSV export, and the parsers of outside input (hypothesis)."""
from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import insert

from center.queries import (COLUMNS, Filters, Queries, QueryError, decode_cursor, encode_cursor, parse_filters,
                            parse_limit, parse_month)
from center.store.tables import catalogs, notes, ratings, staff, windows

TZ = ZoneInfo("Asia/Shanghai")
APPLICANT = "APPLICANT-TOKEN-must-never-show"
NOTE = 'slow, "very"\nslow'


def at(day: str, hms: str = "10:00:00") -> float:
    """Epoch seconds of a wall-clock time in the center's zone (+ a quarter second: exact in a float)."""
    return datetime.fromisoformat(f"{day}T{hms}").replace(tzinfo=TZ).timestamp() + 0.25


def row(rid: str, received: float, **over) -> dict:
    r = dict(id=rid, center="C001", window="W01", device="T1", seq=1, ts=datetime.fromtimestamp(received, TZ)
             .isoformat(timespec="milliseconds"), kind="rating", level="satisfied", channel="touch", case_id=None,
             item_code="I1", staff="S1", applicant=APPLICANT, reasons=None, catalog=None, first=1,
             received=received, flags=None)
    r.update(over)
    return r


# The month worked by hand (center C001, November 2026):
#   S1 / W01 / I1: a vs, b vs, c s (00:10 on the 4th: the 3rd in UTC), d dissatisfied (R1,R2),
#                  e very_dissatisfied but a later rating of case K1 (kept, not counted)
#   S2 / W02 / I2: f bs (qr), g vd R2 (qr), h vd R2,R3 (sms, 23:59:59 on the 30th, with a note)
#   not in the month or the center: i (1 December), j (center C002)
MONTH = [
    row("a", at("2026-11-03", "10:00:00"), level="very_satisfied", case_id="K1", seq=1),
    row("b", at("2026-11-03", "23:30:00"), level="very_satisfied", seq=2),
    row("c", at("2026-11-04", "00:10:00"), level="satisfied", seq=3),
    row("d", at("2026-11-05", "09:00:00"), level="dissatisfied", reasons="R1,R2", catalog="v1", seq=4),
    row("e", at("2026-11-05", "09:30:00"), level="very_dissatisfied", case_id="K1", first=0, reasons="R3",
        catalog="v1", seq=5, flags="case_rated"),
    row("f", at("2026-11-04", "08:00:00"), window="W02", staff="S2", item_code="I2", level="basically_satisfied",
        channel="qr", device="center-web", seq=6),
    row("g", at("2026-11-04", "09:00:00"), window="W02", staff="S2", item_code="I2", level="very_dissatisfied",
        channel="qr", reasons="R2", catalog="v1", device="center-web", seq=7),
    row("h", at("2026-11-30", "23:59:59"), window="W02", staff="S2", item_code="I2", level="very_dissatisfied",
        channel="sms", reasons="R2,R3", catalog="v1", device="center-web", seq=8),
    row("i", at("2026-12-01", "00:00:00"), level="satisfied", seq=9),
    row("j", at("2026-11-10"), center="C002", level="satisfied", seq=10),
]
REASONS = [{"code": "R1", "zh": "态度不好"}, {"code": "R2", "zh": "等待时间长"}, {"code": "R3", "zh": "材料反复提交"}]


def seed(store, rows=MONTH) -> None:
    with store.write() as conn:
        conn.execute(insert(ratings), rows)
        conn.execute(insert(notes), [{"rating_id": "h", "text": NOTE}])
        conn.execute(insert(staff), [dict(center="C001", staff_id="S1", name="张三", updated=0),
                                     dict(center="C001", staff_id="S2", name="李四", updated=0)])
        conn.execute(insert(windows), [dict(center="C001", window="W01", name="一号窗口", updated=0)])
        conn.execute(insert(catalogs), [dict(center="C001", version="v1", reasons=json.dumps(REASONS), updated=1)])


@pytest.fixture
def q(store) -> Queries:
    seed(store)
    return Queries(store, "Asia/Shanghai")


def ids(q: Queries, **filters) -> list[str]:
    return [r["id"] for r in q.ratings(Filters(**filters), limit=1000).rows]


def test_rows_come_oldest_first_without_applicant_data(q):
    page = q.ratings(Filters(), limit=1000)
    assert [r["id"] for r in page.rows] == sorted((r["id"] for r in MONTH), key=lambda i: next(
        r["received"] for r in MONTH if r["id"] == i))
    assert page.next is None
    assert all("applicant" not in r for r in page.rows) and APPLICANT not in json.dumps(page.rows)
    h = next(r for r in page.rows if r["id"] == "h")
    assert h["received"] == "2026-11-30T23:59:59.250+08:00"
    assert h["reasons"] == ["R2", "R3"] and h["note"] == NOTE and h["first"] is True
    assert set(h) == {name for name, _ in COLUMNS}


def test_filters(q):
    # the 4th in the center's zone: c (00:10 local, still the 3rd in UTC), f, g — in received order
    assert ids(q, center="C001", start=date(2026, 11, 4), end=date(2026, 11, 4)) == ["c", "f", "g"]
    assert ids(q, start=date(2026, 11, 30)) == ["h", "i"]
    assert ids(q, end=date(2026, 11, 3)) == ["a", "b"]
    assert ids(q, center="C001", levels=frozenset({"dissatisfied", "very_dissatisfied"})) == ["g", "d", "e", "h"]
    assert ids(q, channels=frozenset({"qr"})) == ["f", "g"]
    assert ids(q, staff=frozenset({"S2"}), items=frozenset({"I2"})) == ["f", "g", "h"]
    assert ids(q, windows=frozenset({"W02"}), channels=frozenset({"sms"})) == ["h"]
    assert ids(q, center="C002") == ["j"]


def test_scope_limits_every_query(q):
    assert ids(q, scope=frozenset({"W02"})) == ["f", "g", "h"]
    # asking for a window outside the scope gives nothing, not the window
    assert ids(q, windows=frozenset({"W01"}), scope=frozenset({"W02"})) == []
    assert ids(q, scope=frozenset()) == []
    assert Filters(scope=frozenset({"W01", "W02"})).within(frozenset({"W02", "W03"})).scope == frozenset({"W02"})
    assert [g["key"] for g in q.summary("staff", Filters(center="C001").within(frozenset({"W02"})))] == ["S2"]
    assert [g["key"] for g in q.monthly_staff_report("C001", "2026-11", frozenset({"W01"}))] == ["S1"]


def test_month_summary_per_staff_matches_the_hand_count(q):
    got = {g["key"]: g for g in q.monthly_staff_report("C001", "2026-11")}
    assert set(got) == {"S1", "S2"}
    s1, s2 = got["S1"], got["S2"]
    assert s1["name"] == "张三" and s2["name"] == "李四"
    assert s1["counts"] == {"very_satisfied": 2, "satisfied": 1, "basically_satisfied": 0, "dissatisfied": 1,
                            "very_dissatisfied": 0}
    assert (s1["total"], s1["satisfaction_rate"], s1["bad_rate"]) == (4, 0.75, 0.25)
    assert s1["top_reasons"] == [{"code": "R1", "zh": "态度不好", "count": 1},
                                 {"code": "R2", "zh": "等待时间长", "count": 1}]   # e's R3 is not counted
    assert s2["counts"] == {"very_satisfied": 0, "satisfied": 0, "basically_satisfied": 1, "dissatisfied": 0,
                            "very_dissatisfied": 2}
    assert (s2["total"], s2["satisfaction_rate"], s2["bad_rate"]) == (3, 0.3333, 0.6667)
    assert s2["top_reasons"] == [{"code": "R2", "zh": "等待时间长", "count": 2},
                                 {"code": "R3", "zh": "材料反复提交", "count": 1}]


def test_summaries_per_window_item_and_local_day(q):
    f = Filters(center="C001", start=date(2026, 11, 1), end=date(2026, 11, 30))
    by_window = {g["key"]: (g["name"], g["total"]) for g in q.summary("window", f)}
    assert by_window == {"W01": ("一号窗口", 4), "W02": ("", 3)}
    assert {g["key"]: g["total"] for g in q.summary("item", f)} == {"I1": 4, "I2": 3}
    days = {g["key"]: g["counts"] for g in q.summary("day", f)}
    assert sorted(days) == ["2026-11-03", "2026-11-04", "2026-11-05", "2026-11-30"]
    assert days["2026-11-03"]["very_satisfied"] == 2 and sum(days["2026-11-03"].values()) == 2
    assert (days["2026-11-04"]["satisfied"], days["2026-11-04"]["basically_satisfied"],
            days["2026-11-04"]["very_dissatisfied"], sum(days["2026-11-04"].values())) == (1, 1, 1, 3)
    assert sum(days["2026-11-05"].values()) == 1 and days["2026-11-05"]["dissatisfied"] == 1
    assert days["2026-11-30"]["very_dissatisfied"] == 1
    with pytest.raises(QueryError):
        q.summary("applicant", f)


def test_today_shows_the_day_in_the_centers_zone(q):
    today = q.today("C001", now=at("2026-11-04", "12:00:00"))
    assert today["day"] == "2026-11-04"
    assert [r["id"] for r in today["latest"]] == ["g", "f", "c"]       # newest first
    assert {g["key"]: g["total"] for g in today["windows"]} == {"W01": 1, "W02": 2}
    assert [r["id"] for r in q.today("C001", scope=frozenset({"W01"}), now=at("2026-11-04"))["latest"]] == ["c"]


def test_cursor_pagination_is_stable_while_ratings_arrive(store):
    base = at("2026-11-10")
    # 30 ratings, in groups of three sharing one received time: the id breaks the ties
    first = [row(f"r{n:03d}", base + (n // 3), seq=n) for n in range(30)]
    seed(store, first)
    q = Queries(store)
    seen: list[str] = []
    cursor, pages, added = None, 0, 0
    while True:
        page = q.ratings(Filters(center="C001"), cursor, limit=7)
        seen += [r["id"] for r in page.rows]
        pages += 1
        with store.write() as conn:   # ratings keep arriving between the pages (later received times)
            conn.execute(insert(ratings), [row(f"new{added:03d}", base + 1000 + added, seq=100 + added)])
            added += 1
        if page.next is None:
            break
        cursor = page.next
        assert pages < 50
    old = [i for i in seen if i.startswith("r")]
    assert old == [r["id"] for r in first]          # every one, once, in order
    assert len(seen) == len(set(seen))
    assert seen[len(old):] == [f"new{n:03d}" for n in range(len(seen) - len(old))]


def test_csv_export_has_the_same_rows_as_the_api(q):
    body = b"".join(q.export_csv(Filters(center="C001"), chunk=64))
    assert body.startswith(b"\xef\xbb\xbf")
    got = list(csv.reader(io.StringIO(body[3:].decode("utf-8"), newline="")))
    assert got[0] == [name for name, _ in COLUMNS]
    api = q.ratings(Filters(center="C001"), limit=1000).rows
    assert len(got) == len(api) + 1
    for line, r in zip(got[1:], api):
        expected = {**{k: "" if v is None else str(v) for k, v in r.items()},
                    "reasons": ",".join(r["reasons"]), "flags": ",".join(r["flags"]), "first": str(int(r["first"]))}
        assert dict(zip([name for name, _ in COLUMNS], line)) == expected
    assert APPLICANT.encode() not in body


def test_csv_export_in_chinese(q):
    body = b"".join(q.export_csv(Filters(center="C001", staff=frozenset({"S2"})), zh=True)).decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(body, newline="")))
    assert lines[0][:3] == ["评价编号", "中心", "窗口"] and "评价等级" in lines[0]
    level = lines[0].index("评价等级")
    assert [line[level] for line in lines[1:]] == ["基本满意", "非常不满意", "非常不满意"]


def test_export_streams_every_row_in_batches(q):
    parts = list(q.export(Filters(), batch=3))
    assert [len(p) for p in parts] == [3, 3, 3, 1]
    assert [r["id"] for p in parts for r in p] == [r["id"] for r in q.ratings(Filters(), limit=1000).rows]


# ---- the parsers of outside input ------------------------------------------------------------------------

def test_parse_filters_accepts_the_documented_forms():
    f = parse_filters({"from": "2026-11-01", "to": "2026-11-30", "window": "W01,W02", "level": "dissatisfied",
                       "channel": "qr,sms", "staff": "S1", "item": "I-1.2", "center": "C001"})
    assert f == Filters(start=date(2026, 11, 1), end=date(2026, 11, 30), center="C001",
                        windows=frozenset({"W01", "W02"}), staff=frozenset({"S1"}), items=frozenset({"I-1.2"}),
                        levels=frozenset({"dissatisfied"}), channels=frozenset({"qr", "sms"}))
    assert parse_filters({}) == Filters()
    for bad in ({"from": "2026-02-30"}, {"from": "2026-11-02", "to": "2026-11-01"}, {"level": "good"},
                {"window": "W01;drop"}, {"window": ",".join(["W"] * 51)}, {"center": "A,B"}, {"to": "１２"}):
        with pytest.raises(QueryError):
            parse_filters(bad)
    assert parse_limit(None) == 100 and parse_limit("1000") == 1000
    for bad in ("0", "1001", "-1", "x", "１"):
        with pytest.raises(QueryError):
            parse_limit(bad)
    assert parse_month("2026-02") == (2026, 2)
    for bad in ("2026-13", "2026-1", "", "26-01"):
        with pytest.raises(QueryError):
            parse_month(bad)


KEYS = ("from", "to", "center", "window", "staff", "item", "level", "channel", "other")


@hsettings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), st.text(max_size=80)))
def test_parse_filters_never_fails_otherwise(params):
    try:
        f = parse_filters(params)
    except QueryError:
        return
    assert isinstance(f, Filters)
    for values in (f.windows, f.staff, f.items):
        assert values is None or all(0 < len(v) <= 64 and v.isascii() for v in values)


@hsettings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=120).map(
    lambda b: __import__("base64").urlsafe_b64encode(b).decode().rstrip("="))))
def test_decode_cursor_refuses_anything_not_made_here(text):
    try:
        received, rid = decode_cursor(text)
    except QueryError:
        return
    assert isinstance(received, float) and isinstance(rid, str) and 0 < len(rid) <= 36


@hsettings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.text(min_size=1, max_size=36))
def test_cursor_round_trip(received, rid):
    assert decode_cursor(encode_cursor(received, rid)) == (received, rid)


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), st.text(alphabet="W0129SI,-:._abcdefqrstuvy", max_size=20)))
def test_any_accepted_filter_runs_on_the_database(q, params):
    try:
        f = parse_filters(params)
    except QueryError:
        return
    page = q.ratings(f, limit=1000)
    assert all(r["center"] == f.center for r in page.rows) or f.center is None
