"""The follow-ups in the store: open one for a bad rating, take a step, add a note, list, find overdue ones.

Every function takes a SQLAlchemy Connection inside the caller's transaction (`store.write()` or
`store.read()`): a follow-up opens in the same transaction that stores its rating, and a step commits
together with its history line (and the caller's audit line).

What is kept and shown is the rating (level, reasons, text, photo count), the window and the staff
member — never the applicant or the case number, so staff never learn which citizen gave which rating.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping

from sqlalchemy import Connection, and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from center.followup import alerts
from center.followup.clocks import CLOCKS, STOPPED_BY, FollowupPolicy, deadlines, late_clocks, overdue_clocks
from center.followup.states import Entry, Followup, IllegalStep, note_entry, step
from center.store.tables import alerts as alert_rows, catalogs, followup_notes, followups, notes, photos, ratings, staff

BAD_LEVELS = frozenset({"dissatisfied", "very_dissatisfied"})
STATIC_CHANNELS = frozenset({"staff_qr", "hall_qr"})   # ratings of a person or the hall, not of a case
SYSTEM = "system"


class NotFound(LookupError):
    """No follow-up with that rating id."""


def should_open(row: Mapping) -> bool:
    """Whether a stored rating gets a follow-up: a bad level, and either the case's first rating (一事一评:
    a later rating of a rated case is kept but not followed up again), a rating of no case, or a staff or
    hall code's rating (each of those is its own complaint)."""
    if row.get("level") not in BAD_LEVELS:
        return False
    case = row.get("case_id", row.get("case"))
    return bool(row.get("first")) or case is None or row.get("channel") in STATIC_CHANNELS


def open_for_rating(conn: Connection, row: Mapping, now: float, policy: FollowupPolicy | None) -> bool:
    """Open the follow-up of a just-stored rating (`row`: the `ratings` row as stored — id, center, window,
    staff, level, channel, case_id, first) when `should_open`, with its deadlines, its first history line
    and an `opened` alert to the window's supervisors. Nothing when `policy` is None (follow-up off).
    Whether one was opened (False also for a rating that has one already)."""
    if policy is None or not should_open(row):
        return False
    due = deadlines(now, policy)
    values = dict(rating_id=row["id"], center=row["center"], window=row["window"], staff=row.get("staff"),
                  level=row["level"], channel=row["channel"], opened=now, state="open",
                  due_contact=due.contact, due_answer=due.answer, due_rectify=due.rectify,
                  updated=now, updated_by=SYSTEM)
    try:
        with conn.begin_nested():   # the rating id decides, also between concurrent writers on PostgreSQL
            conn.execute(insert(followups).values(**values))
    except IntegrityError:
        return False
    _history(conn, row["id"], Entry(now, SYSTEM, "opened"))
    alerts.enqueue(conn, "opened", values, now)
    return True


def _history(conn: Connection, rating_id: str, e: Entry) -> None:
    conn.execute(insert(followup_notes).values(rating_id=rating_id, at=e.at, who=e.who[:64], action=e.action,
                                               text=e.text))


def _followup(row) -> Followup:
    return Followup(row.state, row.contacted_at, row.answered_at, row.rectified_at, row.closed_at, row.updated,
                    row.updated_by)


def get(conn: Connection, rating_id: str):
    """The `followups` row, or None."""
    return conn.execute(select(followups).where(followups.c.rating_id == rating_id)).first()


def transition(conn: Connection, rating_id: str, action: str, who: str, now: float, note: str = "") -> Followup:
    """Take `action` (states.ACTIONS) on a follow-up; NotFound, or IllegalStep when the state does not allow
    it — also when another writer changed the follow-up since it was read."""
    row = get(conn, rating_id)
    if row is None:
        raise NotFound(rating_id)
    before = _followup(row)
    after, entry = step(before, action, who, now, note)
    done = conn.execute(update(followups)
                        .where(followups.c.rating_id == rating_id, followups.c.state == before.state,
                               followups.c.updated == before.updated)
                        .values(state=after.state, contacted_at=after.contacted_at, answered_at=after.answered_at,
                                rectified_at=after.rectified_at, closed_at=after.closed_at, updated=after.updated,
                                updated_by=after.updated_by[:64]))
    if done.rowcount != 1:
        raise IllegalStep("the follow-up changed meanwhile: reload it")
    _history(conn, rating_id, entry)
    return after


def add_note(conn: Connection, rating_id: str, who: str, text: str, now: float) -> Entry:
    """A free note on a follow-up, in any state; NotFound, IllegalStep (empty or too long)."""
    if get(conn, rating_id) is None:
        raise NotFound(rating_id)
    entry = note_entry(who, now, text)
    _history(conn, rating_id, entry)
    return entry


def history(conn: Connection, rating_id: str) -> list[Entry]:
    rows = conn.execute(select(followup_notes.c.at, followup_notes.c.who, followup_notes.c.action,
                               followup_notes.c.text)
                        .where(followup_notes.c.rating_id == rating_id)
                        .order_by(followup_notes.c.at, followup_notes.c.id))
    return [Entry(r.at, r.who, r.action, r.text) for r in rows]


def _overdue_where(now: float):
    return and_(followups.c.state != "closed",
                or_(and_(followups.c.contacted_at.is_(None), followups.c.due_contact <= now),
                    and_(followups.c.answered_at.is_(None), followups.c.due_answer <= now),
                    and_(followups.c.rectified_at.is_(None), followups.c.due_rectify <= now)))


@dataclass(frozen=True)
class Listed:
    """A follow-up as the list shows it."""
    rating_id: str
    center: str
    window: str
    staff: str | None
    level: str
    channel: str
    state: str
    opened: float
    due_contact: float
    due_answer: float
    due_rectify: float
    overdue: tuple[str, ...]     # the clocks that ran out and are not stopped
    late: tuple[str, ...]        # the clocks stopped after their deadline


SHOW = ("active", "overdue", "closed", "all")


def listing(conn: Connection, now: float, windows: frozenset[str] | None = None, show: str = "active",
            center: str | None = None, limit: int = 200,
            after: tuple[float, str] | None = None) -> list[Listed]:
    """Follow-ups newest first: `active` (not closed), `overdue`, `closed` or `all`; only `windows` (None:
    every window) and `center` (None: every center); `after`: the (opened, rating_id) of the last one of
    the previous page."""
    if show not in SHOW:
        raise ValueError(f"show: one of {', '.join(SHOW)}")
    q = select(followups)
    if windows is not None:
        if not windows:
            return []
        q = q.where(followups.c.window.in_(sorted(windows)))
    if center is not None:
        q = q.where(followups.c.center == center)
    if show == "active":
        q = q.where(followups.c.state != "closed")
    elif show == "closed":
        q = q.where(followups.c.state == "closed")
    elif show == "overdue":
        q = q.where(_overdue_where(now))
    if after is not None:
        q = q.where(or_(followups.c.opened < after[0],
                        and_(followups.c.opened == after[0], followups.c.rating_id > after[1])))
    q = q.order_by(followups.c.opened.desc(), followups.c.rating_id).limit(limit)
    return [_listed(r, now) for r in conn.execute(q)]


def _listed(r, now: float) -> Listed:
    m = r._mapping
    return Listed(r.rating_id, r.center, r.window, r.staff, r.level, r.channel, r.state, r.opened, r.due_contact,
                  r.due_answer, r.due_rectify, tuple(overdue_clocks(m, now)) if r.state != "closed" else (),
                  tuple(late_clocks(m)))


def overdue(conn: Connection, now: float, windows: frozenset[str] | None = None,
            limit: int = 1000) -> list[Listed]:
    """Follow-ups with a clock that ran out at `now`, oldest first."""
    q = select(followups).where(_overdue_where(now))
    if windows is not None:
        q = q.where(followups.c.window.in_(sorted(windows)))
    return [_listed(r, now) for r in conn.execute(q.order_by(followups.c.opened, followups.c.rating_id).limit(limit))]


def sweep_overdue(conn: Connection, now: float, limit: int = 1000) -> int:
    """Queue an `overdue` alert for each clock that ran out (once per follow-up and clock: only those
    without one are read, so a backlog never hides newer ones). How many were queued."""
    queued = 0
    for clock in CLOCKS:
        stops = [followups.c[k].is_(None) for k in STOPPED_BY[clock]]
        key = literal(alerts.alert_key("overdue", "", clock)) + followups.c.rating_id
        q = (select(followups)
             .where(followups.c.state != "closed", followups.c[f"due_{clock}"] <= now, *stops,
                    ~exists().where(alert_rows.c.key == key))
             .order_by(followups.c.opened, followups.c.rating_id).limit(limit))
        for row in conn.execute(q).all():
            queued += alerts.enqueue(conn, "overdue", row._mapping, now, clock=clock)
    return queued


@dataclass(frozen=True)
class Detail:
    """A follow-up with its rating as a supervisor may see it: never the applicant or the case."""
    row: Mapping
    rated_at: str                  # the rating's own ISO 8601 time
    item_code: str | None
    staff_name: str | None
    reasons: list[tuple[str, str]]  # (code, Chinese name; the code again when the catalog does not say)
    text: str                      # the citizen's words on a phone rating, "" when none
    photos: int
    history: list[Entry]
    overdue: tuple[str, ...]
    late: tuple[str, ...]


def detail(conn: Connection, rating_id: str, now: float) -> Detail | None:
    row = get(conn, rating_id)
    if row is None:
        return None
    r = conn.execute(select(ratings.c.ts, ratings.c.item_code, ratings.c.reasons, ratings.c.catalog)
                     .where(ratings.c.id == rating_id)).first()
    codes = (r.reasons or "").split(",") if r is not None and r.reasons else []
    names: dict[str, str] = {}
    if codes and r.catalog:
        cat = conn.execute(select(catalogs.c.reasons).where(catalogs.c.center == row.center,
                                                            catalogs.c.version == r.catalog)).scalar()
        names = _reason_names(cat)
    staff_name = None
    if row.staff:
        staff_name = conn.execute(select(staff.c.name).where(staff.c.center == row.center,
                                                             staff.c.staff_id == row.staff)).scalar()
    text = conn.execute(select(notes.c.text).where(notes.c.rating_id == rating_id)).scalar() or ""
    count = conn.execute(select(func.count()).select_from(photos).where(photos.c.rating_id == rating_id)).scalar()
    m = row._mapping
    return Detail(m, r.ts if r is not None else "", r.item_code if r is not None else None, staff_name,
                  [(c, names.get(c, c)) for c in codes], text, int(count or 0), history(conn, rating_id),
                  tuple(overdue_clocks(m, now)) if row.state != "closed" else (), tuple(late_clocks(m)))


def _reason_names(raw: str | None) -> dict[str, str]:
    try:
        items = json.loads(raw or "[]")
    except ValueError:
        return {}
    return {str(i["code"]): str(i.get("zh") or i["code"]) for i in items
            if isinstance(i, dict) and isinstance(i.get("code"), str)} if isinstance(items, list) else {}


__all__ = ["BAD_LEVELS", "CLOCKS", "Detail", "Listed", "NotFound", "add_note", "detail", "get", "history",
           "listing", "open_for_rating", "overdue", "should_open", "sweep_overdue", "transition"]
