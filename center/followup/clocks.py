"""The Shanghai clocks of a bad-rating follow-up (差评整改): contact the citizen and verify the complaint
within 1 working day, answer within 5, rectify within 15 — counted in working days from the day the
rating was stored (`calendar.add_working_days`). The numbers, the zone and the calendar are configurable.
Pure: no clock, no store.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from center.followup.calendar import Calendar, add_working_days, parse_calendar

CLOCKS = ("contact", "answer", "rectify")
# The timestamp that stops each clock (closing a follow-up without a rectification stops `rectify` too).
STOPPED_BY = {"contact": ("contacted_at",), "answer": ("answered_at",), "rectify": ("rectified_at", "closed_at")}


@dataclass(frozen=True)
class FollowupPolicy:
    contact_days: int = 1
    answer_days: int = 5
    rectify_days: int = 15
    tz: str = "Asia/Shanghai"
    calendar: Calendar = field(default_factory=Calendar)

    def __post_init__(self) -> None:
        if not 1 <= self.contact_days <= self.answer_days <= self.rectify_days <= 366:
            raise ValueError("follow-up days: need 1 ≤ contact ≤ answer ≤ rectify ≤ 366")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"follow-up tz: unknown time zone {self.tz[:60]!r}") from None


def policy_from_config(section: Mapping) -> FollowupPolicy:
    """A policy from a `[followup]` configuration section: contact_days, answer_days, rectify_days, tz,
    holidays and workdays (lists of ISO dates or `a..b` ranges). Missing keys keep the defaults."""
    known = {"contact_days", "answer_days", "rectify_days", "tz", "holidays", "workdays"}
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"[followup]: unknown keys {', '.join(sorted(unknown))}")
    kwargs = {k: section[k] for k in ("contact_days", "answer_days", "rectify_days", "tz") if k in section}
    for k in ("contact_days", "answer_days", "rectify_days"):
        if k in kwargs and (not isinstance(kwargs[k], int) or isinstance(kwargs[k], bool)):
            raise ValueError(f"[followup] {k}: a whole number of working days")
    return FollowupPolicy(**kwargs, calendar=parse_calendar(section.get("holidays", ()), section.get("workdays", ())))


@dataclass(frozen=True)
class Deadlines:
    contact: float
    answer: float
    rectify: float

    def of(self, clock: str) -> float:
        return getattr(self, clock)


def deadlines(opened: float, policy: FollowupPolicy) -> Deadlines:
    """When each clock runs out for a follow-up opened at `opened` (epoch seconds)."""
    at = lambda n: add_working_days(opened, n, policy.calendar, policy.tz)   # noqa: E731
    return Deadlines(at(policy.contact_days), at(policy.answer_days), at(policy.rectify_days))


def overdue_clocks(row: Mapping, now: float) -> list[str]:
    """The clocks of a follow-up (a `followups` row as a mapping) that ran out at `now` and are not stopped."""
    return [c for c in CLOCKS
            if not any(row.get(k) is not None for k in STOPPED_BY[c]) and row[f"due_{c}"] <= now]


def late_clocks(row: Mapping) -> list[str]:
    """The clocks that were stopped, but after their deadline."""
    late = []
    for c in CLOCKS:
        stops = [row.get(k) for k in STOPPED_BY[c] if row.get(k) is not None]
        if stops and min(stops) > row[f"due_{c}"]:
            late.append(c)
    return late
