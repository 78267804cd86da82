"""The applicant's phone number, from the case system to the center only (for the SMS follow-up).

It is kept in one table (`contacts`), read only by the SMS worker, and never written to a log (a masked
form at most), to MQTT, to a terminal or to an export. When it arrives after the case already closed
unrated, the follow-up is scheduled then.
"""
from __future__ import annotations

import re
import time

from sqlalchemy import Connection, and_, select

from center.ledger.record import Record, upsert
from center.sms import jobs
from center.store.tables import cases, contacts, events

# A mainland mobile number, optionally with +86 / 86 / 0086; spaces and dashes are dropped first.
MOBILE = re.compile(r"(?:\+?86|0086)?(1[3-9][0-9]{9})")
CASE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,50}")
CENTER_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


class ContactError(ValueError):
    """Not a number the SMS can go to, or not a case id: nothing stored."""


def normalise(phone: str) -> str:
    m = MOBILE.fullmatch(re.sub(r"[\s-]", "", phone or ""))
    if not m:
        raise ContactError("phone: not a mainland mobile number (11 digits starting with 1)")
    return m.group(1)


def set_contact(record: Record, center: str, case_id: str, phone: str, now: float | None = None) -> bool:
    """Keep the number for the case; True when this also scheduled the follow-up (the case had already
    closed unrated)."""
    if not CENTER_ID.fullmatch(center or "") or not CASE_ID.fullmatch(case_id or ""):
        raise ContactError("case: not a case id")
    number = normalise(phone)
    now = time.time() if now is None else now
    with record.store.write() as conn:
        return keep_contact(conn, record, center, case_id, number, now)


def keep_contact(conn: Connection, record: Record, center: str, case_id: str, number: str, now: float) -> bool:
    """`set_contact` inside the caller's transaction (the case feed keeps the number with the case), for a
    number already `normalise`d."""
    upsert(conn, contacts, dict(center=center, case_id=case_id, phone=number, created=now), ("center", "case_id"))
    closed = conn.execute(select(cases.c.state).where(and_(cases.c.center == center, cases.c.case_id == case_id))
                          ).scalar() == "closed"
    unrated = conn.execute(select(events.c.id).where(and_(events.c.center == center, events.c.case_id == case_id,
                                                          events.c.event == "unrated"))).first() is not None
    if record.sms_policy is None or not (closed or unrated):
        return False
    return jobs.schedule(conn, center, case_id, now, now, record.sms_policy)


def mask(number: str) -> str:
    """What a log may say about a number: `139****5678`."""
    return f"{number[:3]}****{number[-4:]}" if len(number) >= 7 else "****"
