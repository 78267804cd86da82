"""The SMS follow-up in the store: jobs (the outbox the worker drains) and their single-use links.

Every function takes a SQLAlchemy Connection inside the caller's transaction (`store.write()` or
`store.read()`), so scheduling happens in the same transaction as the `unrated` record, and using a
link in the same transaction as the rating it carries.

The link token is kept raw in `sms_jobs.link` only until the SMS is sent (the text needs it), then
cleared; `sms_links` holds only its sha256.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Connection, and_, bindparam, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from center.sms.gateway import Delivery
from center.sms.schedule import SmsPolicy, due_at, retry_at
from center.store.tables import cases, centers, contacts, ratings, sms_jobs, sms_links

if TYPE_CHECKING:
    from center.desk import LinkInfo

_MAX_TOKEN = 64   # a real token is 22 characters; anything much longer is not one of ours


@dataclass(frozen=True)
class DueJob:
    """A pending job whose time has come, with what the message needs."""
    id: int
    center: str
    case_id: str
    link: str            # the raw link token
    phone: str
    item_name: str       # "" when the case system did not say
    center_name: str     # "" when unknown
    attempts: int
    next_try: float


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def is_rated(conn: Connection, center: str, case_id: str) -> bool:
    """Whether (center, case) has its first rating, from any channel."""
    return conn.execute(select(_rated(center, case_id))).scalar_one()


def _rated(center, case_id):
    return exists().where(ratings.c.center == center, ratings.c.case_id == case_id, ratings.c.first == 1)


def schedule(conn: Connection, center: str, case_id: str, closed_at: float, now: float,
             policy: SmsPolicy) -> bool:
    """Plan the follow-up SMS of a case that closed unrated: only when the case system gave a phone
    number, the case is still unrated and no SMS was planned before. Whether a job was created."""
    if conn.execute(select(contacts.c.phone).where(contacts.c.center == center,
                                                   contacts.c.case_id == case_id)).first() is None:
        return False
    if is_rated(conn, center, case_id):
        return False
    token = secrets.token_urlsafe(16)
    due = due_at(closed_at, policy)
    try:
        # One job per case: the unique constraint decides (also between concurrent writers on PostgreSQL);
        # the savepoint undoes only this attempt, the caller's transaction goes on.
        with conn.begin_nested():
            conn.execute(insert(sms_jobs).values(center=center, case_id=case_id, link=token, due=due,
                                                 state="pending", attempts=0, next_try=due, created=now))
            conn.execute(insert(sms_links).values(hash=token_hash(token), center=center, case_id=case_id,
                                                  expires=due + policy.link_ttl_s, created=now))
    except IntegrityError:
        return False
    return True


_CANCEL = (update(sms_jobs).where(sms_jobs.c.center == bindparam("c"), sms_jobs.c.case_id == bindparam("k"),
                                  sms_jobs.c.state == "pending")
           .values(state="cancelled", link="", last_error=None))   # built once: it runs with every rating


def cancel(conn: Connection, center: str, case_id: str, now: float) -> bool:
    """The case was rated: its pending SMS is not sent. Whether one was pending."""
    return conn.execute(_CANCEL, {"c": center, "k": case_id}).rowcount == 1


def due(conn: Connection, now: float, limit: int = 50) -> list[DueJob]:
    """Pending jobs whose next try has come, oldest first."""
    q = (select(sms_jobs.c.id, sms_jobs.c.center, sms_jobs.c.case_id, sms_jobs.c.link, contacts.c.phone,
                cases.c.item_name, centers.c.name, sms_jobs.c.attempts, sms_jobs.c.next_try)
         .select_from(sms_jobs
                      .join(contacts, and_(contacts.c.center == sms_jobs.c.center,
                                           contacts.c.case_id == sms_jobs.c.case_id))
                      .outerjoin(cases, and_(cases.c.center == sms_jobs.c.center,
                                             cases.c.case_id == sms_jobs.c.case_id))
                      .outerjoin(centers, centers.c.center == sms_jobs.c.center))
         .where(sms_jobs.c.state == "pending", sms_jobs.c.next_try <= now)
         .order_by(sms_jobs.c.next_try, sms_jobs.c.id).limit(limit))
    return [DueJob(r.id, r.center, r.case_id, r.link, r.phone, r.item_name or "", r.name or "", r.attempts,
                   r.next_try) for r in conn.execute(q)]


def claim(conn: Connection, job: DueJob, now: float, lease_s: float) -> bool:
    """Take a due job for sending, right before the gateway call: False when it is no longer pending
    (cancelled since it was read), another worker took it, or its case has been rated meanwhile (the
    job is then cancelled here). The lease makes it due again should this worker die before recording
    the result (the idempotency key keeps that from sending twice)."""
    if is_rated(conn, job.center, job.case_id):
        cancel(conn, job.center, job.case_id, now)
        return False
    done = conn.execute(update(sms_jobs)
                        .where(sms_jobs.c.id == job.id, sms_jobs.c.state == "pending",
                               sms_jobs.c.next_try == job.next_try, sms_jobs.c.attempts == job.attempts)
                        .values(next_try=now + lease_s))
    return done.rowcount == 1


def mark(conn: Connection, job_id: int, delivery: Delivery, now: float, policy: SmsPolicy) -> str:
    """Record what the gateway said. Returns the job's new state ('' if the job is unknown)."""
    row = conn.execute(select(sms_jobs.c.state, sms_jobs.c.attempts).where(sms_jobs.c.id == job_id)).first()
    if row is None:
        return ""
    attempts = row.attempts + 1
    if delivery.status == "sent":
        # Recorded even if the case was rated meanwhile: the SMS did go out.
        values = dict(state="sent", sent_at=now, provider_id=delivery.provider_id[:128], link="",
                      attempts=attempts, last_error=None)
    elif row.state != "pending":
        return row.state
    elif delivery.status == "retry" and attempts < policy.max_attempts:
        values = dict(attempts=attempts, next_try=retry_at(attempts, now, policy), last_error=delivery.error)
    else:
        error = delivery.error if delivery.status == "failed" else \
            f"gave up after {attempts} attempts: {delivery.error}"
        values = dict(state="failed", attempts=attempts, link="", last_error=error)
    conn.execute(update(sms_jobs).where(sms_jobs.c.id == job_id).values(**values))
    return values.get("state", row.state)


def link(conn: Connection, token: str, now: float) -> LinkInfo | None:
    """What a link token from a URL is: None when it is not one of ours; else its state, `rated` (the
    case has its first rating, on any channel), `used`, `expired` or `ok`."""
    from center.desk import LinkInfo   # here: center.desk itself uses this module
    if not token or len(token) > _MAX_TOKEN:
        return None
    row = conn.execute(select(sms_links).where(sms_links.c.hash == token_hash(token))).first()
    if row is None:
        return None
    if is_rated(conn, row.center, row.case_id):
        state = "rated"
    elif row.used_at is not None:
        state = "used"
    elif now >= row.expires:
        state = "expired"
    else:
        state = "ok"
    return LinkInfo(row.center, row.case_id, row.expires, state)


def use_link(conn: Connection, token: str, now: float) -> bool:
    """Spend a link (in the transaction that stores the rating it carries): True once, for a link that
    is ok; False when it is unknown, used, expired or its case is rated."""
    if not token or len(token) > _MAX_TOKEN:
        return False
    done = conn.execute(update(sms_links)
                        .where(sms_links.c.hash == token_hash(token), sms_links.c.used_at.is_(None),
                               sms_links.c.expires > now, ~_rated(sms_links.c.center, sms_links.c.case_id))
                        .values(used_at=now))
    return done.rowcount == 1
