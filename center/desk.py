"""The phone channels' service: what the web pages may ask and do. Handlers call this, never SQL or paho.

Every rating made here goes through the same door as the terminals' (`center.ledger.record`): one first
rating per (center, case), then the side effects as rows in the same transaction (the case published as
`rated` for the terminal, owed to the city, pending SMS cancelled).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import and_, bindparam, exists, func, insert, select

from center.ledger.record import HALL_WINDOW, WEB_DEVICE, Record
from center.sms import jobs
from center.store.tables import cases, catalogs, centers, notes, photos, ratings, staff, static_uses, windows
from protocol import codec, ids
from protocol.values import Level

log = logging.getLogger("desk")

MAX_TEXT = 500
MAX_PHOTOS = 3
UNKNOWN_APPLICANT = "unknown-applicant"  # a case published without an applicant token (never from a terminal)
CACHE_S = 5.0

# The pages' reads, built once.
_P = bindparam
_FIRST = exists().where(ratings.c.center == cases.c.center, ratings.c.case_id == cases.c.case_id, ratings.c.first == 1)
CASE_VIEW = (select(cases.c.window, cases.c.staff, cases.c.state, cases.c.item_name, cases.c.staff_name,
                    cases.c.staff_number, cases.c.opened_at, windows.c.name.label("window_name"),
                    _FIRST.label("rated"))
             .select_from(cases.outerjoin(windows, and_(windows.c.center == cases.c.center,
                                                        windows.c.window == cases.c.window)))
             .where(cases.c.center == _P("center"), cases.c.case_id == _P("case")))
CASE_FOR_RATING = select(cases.c.window, cases.c.staff, cases.c.item_code, cases.c.applicant).where(
    cases.c.center == _P("center"), cases.c.case_id == _P("case"))
STAFF_VIEW = (select(staff, windows.c.name.label("window_name"))
              .select_from(staff.outerjoin(windows, and_(windows.c.center == staff.c.center,
                                                         windows.c.window == staff.c.window)))
              .where(staff.c.center == _P("center"), staff.c.staff_id == _P("staff")))
CURRENT_CATALOG = (select(catalogs.c.version, catalogs.c.reasons).where(catalogs.c.center == _P("center"))
                   .order_by(catalogs.c.updated.desc()).limit(1))


@dataclass(frozen=True)
class Reason:
    code: str
    zh: str
    group: str = ""


@dataclass(frozen=True)
class Catalog:
    version: str
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class CaseInfo:
    """A case as the phone page shows it: never the applicant's data."""
    center: str
    case_id: str
    window: str
    window_name: str          # "" when unknown
    item_name: str            # "" when unknown
    staff_id: str
    staff_name: str
    staff_number: str
    opened_at: str            # ISO 8601, "" when unknown
    rated: bool               # already rated on any channel: the page says 已评价 and accepts nothing


@dataclass(frozen=True)
class StaffInfo:
    center: str
    staff_id: str
    name: str
    number: str
    window: str
    window_name: str
    title: str
    code_gen: int
    revoked: bool


@dataclass(frozen=True)
class HallInfo:
    center: str
    name: str
    code_gen: int


@dataclass(frozen=True)
class StoredPhoto:
    """A photo already re-encoded and written (center/web/photos.py)."""
    name: str
    bytes: int
    width: int
    height: int


@dataclass(frozen=True)
class PhoneRating:
    """What the citizen submitted on a phone page, already checked for form (level name, ≤ 500 chars)."""
    level: str
    reasons: tuple[str, ...] = ()
    text: str = ""
    photos: tuple[StoredPhoto, ...] = field(default=())


@dataclass(frozen=True)
class Outcome:
    """`stored` (thank you), `already_rated` (已评价: another channel was first), `limited` (a static
    code used too often from this phone or address), `refused` (reason: not in the catalog, no reasons
    for a bad level, the case is unknown or belongs elsewhere)."""
    status: str
    rating_id: str = ""
    reason: str = ""


@dataclass(frozen=True)
class LinkInfo:
    """An SMS link: `state` is ok | used | expired | rated."""
    center: str
    case_id: str
    expires: float
    state: str


@dataclass(frozen=True)
class StaticLimits:
    """How often one static code (staff or hall) takes a rating: per phone (cookie) and per address."""
    staff_per_client_s: int = 12 * 3600   # one rating of a staff member per phone in this time
    staff_per_addr_hour: int = 20         # ratings of a staff member from one address per hour
    hall_per_client_s: int = 24 * 3600
    hall_per_addr_hour: int = 60


class Desk:
    """The phone channels over the record. Signatures are the contract with center/web/."""

    def __init__(self, record: Record, *, limits: StaticLimits = StaticLimits(), clock=time.time,
                 on_stored: Callable[[], None] = lambda: None, cache_s: float = CACHE_S):
        """`on_stored` runs after each stored rating committed (the service wakes its notices sender)."""
        self.record, self.store, self.limits, self.clock = record, record.store, limits, clock
        self.on_stored = on_stored
        self._cache = _Cache(cache_s)

    # ---- what the pages show --------------------------------------------------------------------

    def catalog(self, center: str) -> Catalog | None:
        """The center's current reason catalog (kept a few seconds: it changes a few times a year)."""
        return self._cache.get(("catalog", center), lambda: self._catalog(center))

    def _catalog(self, center: str) -> Catalog | None:
        with self.store.read() as conn:
            row = conn.execute(CURRENT_CATALOG, {"center": center}).first()
        if row is None:
            return None
        reasons = tuple(Reason(r["code"], r["zh"], r.get("group", "")) for r in json.loads(row.reasons))
        return Catalog(row.version, reasons)

    def case(self, center: str, case_id: str) -> CaseInfo | None:
        with self.store.read() as conn:
            c = conn.execute(CASE_VIEW, {"center": center, "case": case_id}).first()
        if c is None:
            return None
        return CaseInfo(center, case_id, c.window, c.window_name or "", c.item_name or "", c.staff or "",
                        c.staff_name or "", c.staff_number or "", c.opened_at or "", c.state == "rated" or c.rated)

    def staff(self, center: str, staff_id: str) -> StaffInfo | None:
        with self.store.read() as conn:
            s = conn.execute(STAFF_VIEW, {"center": center, "staff": staff_id}).first()
        if s is None:
            return None
        return StaffInfo(center, staff_id, s.name, s.number or "", s.window or "", s.window_name or "",
                         s.title or "", s.code_gen, bool(s.revoked))

    def hall(self, center: str) -> HallInfo | None:
        return self._cache.get(("hall", center), lambda: self._hall(center))

    def _hall(self, center: str) -> HallInfo | None:
        with self.store.read() as conn:
            h = conn.execute(select(centers).where(centers.c.center == center)).first()
        return None if h is None else HallInfo(center, h.name or "", h.code_gen)

    def sms_link(self, token: str, now: float | None = None) -> LinkInfo | None:
        with self.store.read() as conn:
            return jobs.link(conn, token, self.clock() if now is None else now)

    # ---- ratings: checked here, stored in the store's next group commit ---------------------------

    def rate_case(self, center: str, case_id: str, channel: str, rating: PhoneRating, *, window: str,
                  staff: str, link_token: str | None = None, now: float | None = None) -> Outcome:
        if channel not in ("qr", "sms"):
            raise ValueError(f"not a case channel: {channel}")
        now = self.clock() if now is None else now

        def write(conn, reasons: dict | None) -> Outcome:
            c = conn.execute(CASE_FOR_RATING, {"center": center, "case": case_id}).first()
            if c is None or c.window != window or (c.staff or "") != staff:
                return Outcome("refused", reason="unknown_case")
            if self.record.is_rated(conn, center, case_id):
                return Outcome("already_rated")
            if channel == "sms" and not jobs.use_link(conn, link_token or "", now):
                return Outcome("already_rated")  # spent, expired or rated meanwhile: the page says so
            m = self._record(conn, center, window, "case", channel, rating, reasons, now, case=case_id, staff=staff,
                             item_code=c.item_code, applicant=c.applicant or UNKNOWN_APPLICANT)
            return self._store(conn, m, rating, now)
        return self._rate(center, rating, write)

    def rate_staff(self, center: str, staff_id: str, rating: PhoneRating, *, client: str, addr: str,
                   now: float | None = None) -> Outcome:
        now = self.clock() if now is None else now

        def write(conn, reasons: dict | None) -> Outcome:
            s = conn.execute(select(staff.c.window, staff.c.revoked)
                             .where(staff.c.center == center, staff.c.staff_id == staff_id)).first()
            if s is None or s.revoked:
                return Outcome("refused", reason="unknown_staff")
            if self._limited(conn, "staff", center, staff_id, client, addr, now, self.limits.staff_per_client_s,
                             self.limits.staff_per_addr_hour):
                return Outcome("limited")
            m = self._record(conn, center, s.window or HALL_WINDOW, "staff", "staff_qr", rating, reasons, now,
                             staff=staff_id)
            return self._store(conn, m, rating, now)
        return self._rate(center, rating, write)

    def rate_hall(self, center: str, rating: PhoneRating, *, client: str, addr: str,
                  now: float | None = None) -> Outcome:
        now = self.clock() if now is None else now

        def write(conn, reasons: dict | None) -> Outcome:
            if conn.execute(select(centers.c.center).where(centers.c.center == center)).first() is None:
                return Outcome("refused", reason="unknown_center")
            if self._limited(conn, "hall", center, "", client, addr, now, self.limits.hall_per_client_s,
                             self.limits.hall_per_addr_hour):
                return Outcome("limited")
            m = self._record(conn, center, HALL_WINDOW, "hall", "hall_qr", rating, reasons, now)
            return self._store(conn, m, rating, now)
        return self._rate(center, rating, write)

    def _rate(self, center: str, rating: PhoneRating, write: Callable) -> Outcome:
        """The form's rules checked here; `write(conn, reasons)` in the store's next group commit."""
        reasons, problem = self._check(center, rating)
        if problem:
            return Outcome("refused", reason=problem)
        outcome = self.store.submit(lambda conn: write(conn, reasons))
        if outcome.status == "stored":
            self.on_stored()  # committed: the notices sender may publish at once
        return outcome

    # ---- inside ---------------------------------------------------------------------------------

    def _check(self, center: str, rating: PhoneRating) -> tuple[dict | None, str]:
        """The form's rules again, on the service side: a level by name; a bad one needs reasons from the
        current catalog; text ≤ 500 characters. (The record's `reasons`, or None; a problem, or "".)"""
        try:
            level = Level(rating.level)
        except ValueError:
            return None, "bad_level"
        if len(rating.text) > MAX_TEXT or len(rating.photos) > MAX_PHOTOS:
            return None, "too_long"
        if not rating.reasons and not level.is_bad:
            return None, ""
        catalog = self.catalog(center)
        known = {r.code for r in catalog.reasons} if catalog else set()
        if not rating.reasons or not set(rating.reasons) <= known or len(set(rating.reasons)) != len(rating.reasons):
            return None, "reasons"
        return {"catalog": catalog.version, "codes": list(rating.reasons)}, ""

    def _record(self, conn, center: str, window: str, kind: str, channel: str, rating: PhoneRating,
                reasons: dict | None, now: float, **fields) -> dict:
        """The rating as a record of the wire contract, made by the center's own device."""
        m = {"v": 1, "type": "rating", "id": ids.uuid7(int(now * 1000)), "device": WEB_DEVICE, "center": center,
             "window": window, "seq": self.record.next_seq(conn, center), "ts": self.record.wall_time(now),
             "kind": kind, "level": rating.level, "channel": channel}
        m.update({k: v for k, v in fields.items() if v})
        if reasons:
            m["reasons"] = reasons
        return codec.validate(m)

    def _store(self, conn, m: dict, rating: PhoneRating, now: float) -> Outcome:
        done = self.record.accept(conn, m, now, terminal=False)
        if done.status == "already_rated":
            return Outcome("already_rated")
        if rating.text:
            conn.execute(insert(notes).values(rating_id=m["id"], text=rating.text))
        for p in rating.photos:
            conn.execute(insert(photos).values(name=p.name, rating_id=m["id"], bytes=p.bytes, width=p.width,
                                               height=p.height, created=now))
        log.info("%s rating %s stored (%s%s)", m["channel"], m["id"], m["center"],
                 f"/{m['case']}" if "case" in m else "")
        return Outcome("stored", rating_id=m["id"])

    def _limited(self, conn, kind: str, center: str, target: str, client: str, addr: str, now: float,
                 per_client_s: int, per_addr_hour: int) -> bool:
        """A static code's limits; a use within them is counted in the same transaction as the rating."""
        mine = and_(static_uses.c.kind == kind, static_uses.c.center == center, static_uses.c.target == target)
        by_client = conn.execute(select(func.count()).where(mine, static_uses.c.client == client,
                                                            static_uses.c.ts > now - per_client_s)).scalar()
        by_addr = conn.execute(select(func.count()).where(mine, static_uses.c.addr == addr,
                                                          static_uses.c.ts > now - 3600)).scalar()
        if by_client or by_addr >= per_addr_hour:
            return True
        conn.execute(insert(static_uses).values(kind=kind, center=center, target=target, client=client, addr=addr,
                                                ts=now))
        return False


class _Cache:
    """Values that change a few times a year (catalog, the center's name), kept `ttl` seconds."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._values: dict = {}

    def get(self, key, load: Callable[[], object]):
        now = time.monotonic()
        hit = self._values.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        self._values[key] = (now + self.ttl, value)
        return value
