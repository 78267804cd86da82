"""A working-day calendar: Monday–Friday, minus configured public holidays, plus configured make-up working
days (调休: a Saturday or Sunday worked in exchange for a longer holiday). Pure: no clock, no store.

`add_working_days(ts, n, cal, tz)` is the end of the n-th working day after the day `ts` falls on (local
time in `tz`), as an epoch: the midnight that ends that working day. The opening day itself never counts,
even when it is a working day: "within 1 working day" of a rating made on Friday afternoon runs to the end
of Monday (or of the next working day after a holiday).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Iterable
from zoneinfo import ZoneInfo

MAX_DAYS = 366   # more working days than a year's worth is a configuration mistake, not a deadline


class CalendarError(ValueError):
    """A calendar configuration that cannot be right (a bad date, a day both holiday and working day)."""


@dataclass(frozen=True)
class Calendar:
    """Weekends and `holidays` are days off; `workdays` (调休) are working days even on a weekend."""
    holidays: frozenset[date] = field(default_factory=frozenset)
    workdays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        both = self.holidays & self.workdays
        if both:
            raise CalendarError(f"both a holiday and a working day: {min(both).isoformat()}")

    def is_working(self, d: date) -> bool:
        if d in self.workdays:
            return True
        return d.weekday() < 5 and d not in self.holidays

    def next_working(self, d: date) -> date:
        """The first working day strictly after `d`."""
        d += timedelta(days=1)
        while not self.is_working(d):   # ends: weekends are 2 of 7 days and holidays a finite set
            d += timedelta(days=1)
        return d


def parse_calendar(holidays: Iterable[str] = (), workdays: Iterable[str] = ()) -> Calendar:
    """A calendar from configuration: ISO dates (`2026-10-01`); ranges `2026-10-01..2026-10-07` inclusive."""
    return Calendar(frozenset(_dates(holidays, "holidays")), frozenset(_dates(workdays, "workdays")))


def _dates(items: Iterable[str], what: str) -> Iterable[date]:
    for item in items:
        if not isinstance(item, str):
            raise CalendarError(f"{what}: expected a date as text, got {type(item).__name__}")
        first, sep, last = item.strip().partition("..")
        try:
            lo = date.fromisoformat(first.strip())
            hi = date.fromisoformat(last.strip()) if sep else lo
        except ValueError:
            raise CalendarError(f"{what}: not a date or date range: {item[:40]!r}") from None
        if hi < lo or (hi - lo).days > MAX_DAYS:
            raise CalendarError(f"{what}: bad range {item[:40]!r}")
        for k in range((hi - lo).days + 1):
            yield lo + timedelta(days=k)


def add_working_days(ts: float, n: int, cal: Calendar, tz: str | ZoneInfo) -> float:
    """The end (next local midnight) of the n-th working day after the local day of `ts`; n ≥ 1."""
    if not 1 <= n <= MAX_DAYS:
        raise ValueError(f"n must be 1..{MAX_DAYS}, got {n}")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    d = datetime.fromtimestamp(ts, zone).date()
    for _ in range(n):
        d = cal.next_working(d)
    return midnight(d + timedelta(days=1), zone)


def midnight(d: date, zone: ZoneInfo) -> float:
    """The epoch of `d` 00:00 local (the first valid instant of that day, should a clock change skip it)."""
    local = datetime.combine(d, time(0), zone)
    # A zone that skips midnight (a spring-forward at 00:00) makes 00:00 not exist: fold it forward.
    back = datetime.fromtimestamp(local.timestamp(), zone)
    return local.timestamp() if back.date() == d else datetime.combine(d, time(1), zone).timestamp()


def working_days_after(start: date, end: date, cal: Calendar) -> int:
    """How many working days lie in (start, end]: after `start`, up to and including `end`."""
    count, d = 0, start
    while d < end:
        d += timedelta(days=1)
        count += cal.is_working(d)
    return count
