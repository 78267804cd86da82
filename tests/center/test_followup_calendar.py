"""The working-day calendar and the Shanghai clocks (center/followup/calendar.py, clocks.py): examples from
the 2026 calendar and hypothesis properties — deadlines end working days, skip holidays, honour make-up
working days (调休), and never move backwards when the opening time or the day count grows."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings, strategies as st

from center.followup.calendar import (Calendar, CalendarError, add_working_days, parse_calendar,
                                      working_days_after)
from center.followup.clocks import (FollowupPolicy, deadlines, late_clocks, overdue_clocks, policy_from_config)

SH = ZoneInfo("Asia/Shanghai")
# An illustrative National Day week: 10-01..10-07 off, Sunday 09-27 and Saturday 10-10 worked instead.
NATIONAL = parse_calendar(["2026-10-01..2026-10-07"], ["2026-09-27", "2026-10-10"])


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=SH).timestamp()


def local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, SH)


def test_friday_afternoon_runs_to_the_end_of_monday() -> None:
    assert local(add_working_days(at("2026-11-27T15:00"), 1, Calendar(), SH)) == datetime(2026, 12, 1, tzinfo=SH)
    # and the opening day never counts, even on a working day at 00:00:01
    assert local(add_working_days(at("2026-11-30T00:00:01"), 1, Calendar(), SH)).date() == date(2026, 12, 2)


def test_a_weekend_rating_counts_from_the_next_working_day() -> None:
    assert local(add_working_days(at("2026-11-28T10:00"), 1, Calendar(), "Asia/Shanghai")).date() == date(2026, 12, 1)


def test_holidays_are_skipped_and_make_up_days_count() -> None:
    # Wednesday 09-30: the next working day is Thursday 10-08 (10-01..07 off)
    assert local(add_working_days(at("2026-09-30T09:00"), 1, NATIONAL, SH)).date() == date(2026, 10, 9)
    # Friday 10-09 → Saturday 10-10 is a make-up working day
    assert local(add_working_days(at("2026-10-09T09:00"), 1, NATIONAL, SH)).date() == date(2026, 10, 11)
    # Saturday 09-26 → Sunday 09-27 is worked
    assert local(add_working_days(at("2026-09-26T09:00"), 1, NATIONAL, SH)).date() == date(2026, 9, 28)
    # 5 working days from 09-29: 09-30, 10-08, 10-09, 10-10, 10-12
    assert local(add_working_days(at("2026-09-29T09:00"), 5, NATIONAL, SH)).date() == date(2026, 10, 13)


def test_the_three_clocks_default_to_1_5_15_working_days() -> None:
    due = deadlines(at("2026-11-30T10:00"), FollowupPolicy())
    assert [local(x).date() for x in (due.contact, due.answer, due.rectify)] == [
        date(2026, 12, 2), date(2026, 12, 8), date(2026, 12, 22)]


def test_calendar_configuration_is_checked() -> None:
    with pytest.raises(CalendarError):
        parse_calendar(["2026-13-01"])
    with pytest.raises(CalendarError):
        parse_calendar(["2026-10-07..2026-10-01"])
    with pytest.raises(CalendarError):
        parse_calendar(["2026-10-01"], ["2026-10-01"])
    with pytest.raises(CalendarError):
        parse_calendar([20261001])   # type: ignore[list-item]
    with pytest.raises(ValueError):
        add_working_days(0, 0, Calendar(), SH)
    with pytest.raises(ValueError):
        FollowupPolicy(contact_days=5, answer_days=1)
    with pytest.raises(ValueError):
        FollowupPolicy(tz="Mars/Olympus")
    with pytest.raises(ValueError):
        policy_from_config({"contact_day": 1})
    with pytest.raises(ValueError):
        policy_from_config({"answer_days": "5"})
    p = policy_from_config({"answer_days": 3, "holidays": ["2026-12-01"], "workdays": ["2026-12-05"]})
    assert (p.contact_days, p.answer_days, p.rectify_days) == (1, 3, 15)
    assert not p.calendar.is_working(date(2026, 12, 1)) and p.calendar.is_working(date(2026, 12, 5))


def test_overdue_and_late_clocks() -> None:
    row = {"due_contact": 100.0, "due_answer": 200.0, "due_rectify": 300.0, "contacted_at": None,
           "answered_at": None, "rectified_at": None, "closed_at": None}
    assert overdue_clocks(row, 99) == []
    assert overdue_clocks(row, 100) == ["contact"]
    assert overdue_clocks({**row, "contacted_at": 150.0}, 250) == ["answer"]
    assert overdue_clocks({**row, "contacted_at": 1.0, "answered_at": 2.0, "closed_at": 3.0}, 1e9) == []
    assert late_clocks({**row, "contacted_at": 150.0, "answered_at": 150.0}) == ["contact"]
    assert late_clocks({**row, "closed_at": 301.0}) == ["rectify"]


# ---- properties -------------------------------------------------------------------------------------

days = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
calendars = st.builds(lambda hol, work: Calendar(frozenset(hol), frozenset(work) - frozenset(hol)),
                      st.sets(days, max_size=40), st.sets(days, max_size=10))
instants = st.floats(min_value=at("2020-01-01T00:00"), max_value=at("2035-06-30T00:00"), allow_nan=False)
counts = st.integers(min_value=1, max_value=30)
zones = st.sampled_from(["Asia/Shanghai", "Asia/Urumqi", "Europe/Berlin", "America/New_York"])


@settings(max_examples=300, deadline=None)
@given(ts=instants, n=counts, cal=calendars, tz=zones)
def test_deadline_is_the_end_of_the_nth_working_day(ts: float, n: int, cal: Calendar, tz: str) -> None:
    zone = ZoneInfo(tz)
    due = add_working_days(ts, n, cal, tz)
    end = datetime.fromtimestamp(due, zone)
    last = end.date() - timedelta(days=1)
    assert due > ts
    assert (end.hour, end.minute) in ((0, 0), (1, 0))      # a local midnight (01:00 where DST skips it)
    assert cal.is_working(last)                             # the deadline ends a working day ...
    assert working_days_after(datetime.fromtimestamp(ts, zone).date(), last, cal) == n   # ... the n-th
    for d in cal.holidays - cal.workdays:                   # a holiday never counts
        assert not cal.is_working(d)


@settings(max_examples=300, deadline=None)
@given(a=instants, b=instants, n=counts, m=counts, cal=calendars)
def test_deadlines_are_monotonic(a: float, b: float, n: int, m: int, cal: Calendar) -> None:
    (a, b), (n, m) = sorted((a, b)), sorted((n, m))
    assert add_working_days(a, n, cal, SH) <= add_working_days(b, n, cal, SH)
    assert add_working_days(a, n, cal, SH) <= add_working_days(a, m, cal, SH)
    if n < m:
        assert add_working_days(a, n, cal, SH) < add_working_days(a, m, cal, SH)


@settings(max_examples=200, deadline=None)
@given(ts=instants, n=counts, cal=calendars, extra=days)
def test_an_added_holiday_never_brings_a_deadline_closer(ts: float, n: int, cal: Calendar, extra: date) -> None:
    more = Calendar(cal.holidays | {extra}, cal.workdays - {extra})
    assert add_working_days(ts, n, more, SH) >= add_working_days(ts, n, cal, SH)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.text(max_size=30), max_size=5))
def test_parse_calendar_accepts_dates_or_says_why(items: list[str]) -> None:
    try:
        cal = parse_calendar(items)
    except CalendarError as e:
        assert str(e).startswith("holidays:")
    else:
        assert all(isinstance(d, date) for d in cal.holidays)
