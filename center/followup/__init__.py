"""Bad-rating follow-up (差评整改): every followed-up bad rating gets the Shanghai clocks, states, notes and
alerts to its window's supervisors. `open` is what the record's door calls for each stored rating.
(The pure modules — calendar, clocks, states — import nothing from the store.)"""
from __future__ import annotations

_BAD = frozenset({"dissatisfied", "very_dissatisfied"})


def open(conn, row, now: float, policy) -> bool:   # noqa: A001 - `followup.open(...)` reads as intended
    """`center.followup.store.open_for_rating`: open the follow-up of a just-stored bad rating (a good
    rating returns at once: this runs on the record's hot path)."""
    if policy is None or row.get("level") not in _BAD:
        return False
    from center.followup.store import open_for_rating
    return open_for_rating(conn, row, now, policy)
