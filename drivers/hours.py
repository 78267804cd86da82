"""Opening hours, e.g. ``mon-fri 08:30-12:00,13:00-17:30; sat 09:00-12:00`` (empty text = always open).

Grammar: rules separated by ``;``; a rule is day items (``mon`` or ``mon-fri``, comma separated; a range may
wrap, ``sat-mon``) then whitespace then time ranges ``HH:MM-HH:MM`` (comma separated, start before end,
``24:00`` allowed as an end). Overnight ranges are not supported: write two rules.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = "(?:mon|tue|wed|thu|fri|sat|sun)"
_DAYITEM = rf"{_DAY}(?:-{_DAY})?"
_TIME = r"(?:[01]\d|2[0-3]):[0-5]\d"
_RANGE = rf"{_TIME}-(?:{_TIME}|24:00)"
_RULE = rf"{_DAYITEM}(?:,{_DAYITEM})*\s+{_RANGE}(?:,{_RANGE})*"
PATTERN = rf"^(?:\s*{_RULE}\s*(?:;\s*{_RULE}\s*)*)?$"  # syntax only; `OpeningHours.parse` also checks start < end


class HoursError(ValueError):
    """The opening hours text is wrong; the message says where."""


@dataclass(frozen=True)
class OpeningHours:
    """Per weekday (0 = Monday), the open minute ranges [start, end)."""

    week: tuple[tuple[tuple[int, int], ...], ...] = ()  # empty = always open

    @property
    def always(self) -> bool:
        return not self.week

    @classmethod
    def parse(cls, text: str) -> "OpeningHours":
        text = text.strip()
        if not text:
            return cls()
        week: list[set[tuple[int, int]]] = [set() for _ in DAYS]
        for n, rule in enumerate(text.split(";"), 1):
            rule = rule.strip()
            m = re.fullmatch(r"(\S+)\s+(\S+)", rule)
            if not m:
                raise HoursError(f"rule {n} {rule!r}: expected 'DAYS HH:MM-HH:MM', e.g. 'mon-fri 08:30-17:30'")
            days = _days(m.group(1), n)
            for span in m.group(2).split(","):
                start, end = _span(span, n)
                for d in days:
                    week[d].add((start, end))
        return cls(tuple(tuple(sorted(spans)) for spans in week))

    def is_open(self, when: datetime) -> bool:
        if self.always:
            return True
        minute = when.hour * 60 + when.minute
        return any(a <= minute < b for a, b in self.week[when.weekday()])

    def __str__(self) -> str:
        """Canonical text: one rule per weekday that has hours (parses back to an equal value)."""
        return "; ".join(f"{DAYS[d]} " + ",".join(f"{_hm(a)}-{_hm(b)}" for a, b in spans)
                         for d, spans in enumerate(self.week) if spans)


def _hm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _days(text: str, n: int) -> list[int]:
    out: list[int] = []
    for item in text.split(","):
        parts = item.split("-")
        if len(parts) > 2 or any(p not in DAYS for p in parts):
            raise HoursError(f"rule {n}: {item!r} is not a day or day range (days: {', '.join(DAYS)})")
        a = DAYS.index(parts[0])
        b = DAYS.index(parts[-1])
        out += [(a + i) % 7 for i in range((b - a) % 7 + 1)]
    return out


def _minute(text: str, n: int, end: bool) -> int:
    m = re.fullmatch(r"(\d\d):(\d\d)", text)
    if not m or int(m.group(2)) > 59 or int(m.group(1)) > 24 or (int(m.group(1)) == 24 and (not end or m.group(2) != "00")):
        raise HoursError(f"rule {n}: {text!r} is not a time HH:MM")
    return int(m.group(1)) * 60 + int(m.group(2))


def _span(text: str, n: int) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) != 2:
        raise HoursError(f"rule {n}: {text!r} is not a range HH:MM-HH:MM")
    start, end = _minute(parts[0], n, False), _minute(parts[1], n, True)
    if start >= end:
        raise HoursError(f"rule {n}: {text!r} ends before it starts (overnight: write two rules)")
    return start, end
