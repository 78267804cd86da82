"""The one door into the record: every rating — a terminal's over MQTT, or a phone's through the web pages —
is stored here, where one first rating per (center, case) is enforced, and its side effects are written
in the same transaction (owed to the city, `city_delivery`; a 差评's follow-up opened; a pending SMS
cancelled; for the center's own channels the case published as `rated`, a `notices` row).

It also keeps what the center published (bindings, cases, duty, catalogs) and checks each terminal rating
against it (docs/protocol.md §7). The MQTT intake (`center.ledger.intake`) and the phone desk
(`center.desk`) are its two callers; neither writes the record tables itself.
"""
from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, and_, bindparam, exc, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from center import followup
from center.city import delivery as city
from center.store import Store
from center.store.tables import (bindings, cases, catalogs, notices, ratings, sequences, staff, events,
                                 windows)
from protocol import codec, topics
from protocol.codec import MessageError
from protocol.topics import parse_device_topic

log = logging.getLogger("ledger")

WEB_DEVICE = "center-web"   # the device id of the records the center makes itself (phone channels)
HALL_WINDOW = "HALL"        # the window of a hall rating, and of a staff rating whose window is unknown
WINDOW_TOPIC = re.compile(rf"{re.escape(topics.PREFIX)}/([A-Za-z0-9_-]{{1,32}})/window/([A-Za-z0-9_-]{{1,32}})/"
                          r"(case|duty)")
CATALOG_TOPIC = re.compile(rf"{re.escape(topics.PREFIX)}/([A-Za-z0-9_-]{{1,32}})/catalog")
# Flags that only say where a check's footing came from; every other flag is an alarm.
INFORMATIVE_FLAGS = {"unbound"}
# Errors that belong to one record (a constraint, a value the database cannot hold); any other means the
# database itself is in trouble and the whole batch waits for a re-offer.
RECORD_ERRORS = (exc.IntegrityError, exc.DataError, exc.ProgrammingError, exc.InterfaceError)


# The hot path's statements, built once (SQLAlchemy then reuses their compiled form on every call).
_P = bindparam
# N ledger workers (and the center service) all write what the center published: every worker gets every
# case, duty, catalog and binding message, in the same order but in batches cut differently, among ratings
# of its own. Their transactions would lock the same rows (a staff member's, a window's) in different
# orders and deadlock — PostgreSQL notices only after `deadlock_timeout` (1 s), a stall for each batch. A
# transaction that writes published state first takes this advisory lock, so such transactions take turns.
STATE_LOCK = 0x48435032  # "HCP2"


def state_lock(conn: Connection) -> None:
    """Take the published-state lock until the transaction ends (PostgreSQL; SQLite has one writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": STATE_LOCK})


def is_state(topic: str) -> bool:
    """A message every worker applies (what the center published, a binding), not a device's record."""
    where = parse_device_topic(topic)
    return where is None or where[2] == "binding"


def in_lock_order(batch: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The batch with the device records between two published-state messages sorted by device (stable).

    Workers' batches then lock the rows the records need — a first rating's pinned binding, a rating id
    two workers got — in one order, and cannot deadlock on them (the morning storm: 2,000 terminals never
    bound, each worker pinning a binding for hundreds in a batch). A device's records keep their order,
    and every record stays on its side of the state messages around it.
    """
    out: list[tuple[str, bytes]] = []
    run: list[tuple[str, bytes]] = []
    for item in batch:
        if is_state(item[0]):
            out += sorted(run, key=_device_key)
            run = []
            out.append(item)
        else:
            run.append(item)
    return out + sorted(run, key=_device_key)


def _device_key(item: tuple[str, bytes]) -> tuple[str, str]:
    where = parse_device_topic(item[0])
    return (where[0], where[1]) if where else ("", "")


RATING_EXISTS = select(ratings.c.id).where(ratings.c.id == _P("id"))
CASE_RATED = select(ratings.c.id).where(and_(ratings.c.center == _P("center"), ratings.c.case_id == _P("case"),
                                             ratings.c.first == 1))
INSERT_RATING = insert(ratings)
# Several writers (N ledger workers) may get the same record at once: ON CONFLICT on the id turns the
# second insert into a duplicate instead of an error that would refuse it.
_IF_NEW = {name: d.insert(ratings).on_conflict_do_nothing(index_elements=["id"]).returning(ratings.c.id)
           for name, d in (("sqlite", sqlite), ("postgresql", postgresql))}
_EVENT_IF_NEW = {name: d.insert(events).on_conflict_do_nothing(index_elements=["id"]).returning(events.c.id)
                 for name, d in (("sqlite", sqlite), ("postgresql", postgresql))}
_PIN_IF_NEW = {name: d.insert(bindings).on_conflict_do_nothing(index_elements=["center", "device"])
               .returning(bindings.c.device) for name, d in (("sqlite", sqlite), ("postgresql", postgresql))}


def INSERT_RATING_IF_NEW(conn: Connection):  # noqa: N802 - a statement, chosen by the connection's dialect
    return _IF_NEW[conn.dialect.name]
BINDING = select(bindings.c.state, bindings.c.window, bindings.c.prev_window, bindings.c.since,
                 bindings.c.source).where(and_(bindings.c.center == _P("center"), bindings.c.device == _P("device")))
INSERT_BINDING = insert(bindings)
CASE_AS_PUBLISHED = select(cases.c.window, cases.c.staff).where(and_(cases.c.center == _P("center"),
                                                                     cases.c.case_id == _P("case")))
EVENT_EXISTS = select(events.c.id).where(events.c.id == _P("id"))
# (an UPDATE's own columns are reserved bind names: hence b_…)
CASE_NOW_RATED = (update(cases).where(cases.c.center == _P("b_center"), cases.c.case_id == _P("b_case"))
                  .values(state="rated", updated=_P("b_now")))
_SEQ = and_(sequences.c.center == _P("b_center"), sequences.c.device == _P("b_device"))
NEXT_SEQ = update(sequences).where(_SEQ).values(last=sequences.c.last + 1).returning(sequences.c.last)
INSERT_SEQ = insert(sequences)
INSERT_NOTICE = insert(notices)
INSERT_EVENT = insert(events)


@dataclass(frozen=True)
class Stored:
    """What the door did with a rating: `stored` | `duplicate` | `already_rated` (a center channel's
    rating of a case another channel rated first: nothing stored)."""
    status: str
    first: bool = False


class _RecordFailed(Exception):
    """One message of a batch failed: do the batch again with a savepoint around each message."""


class Throttle:
    """At most one log line per key every `every` seconds; says how many were left out."""

    def __init__(self, every: float = 30):
        self.every = every
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, key: str, level: int, fmt: str, *args) -> None:
        now = time.monotonic()
        last, skipped = self._last.get(key, (-1e9, 0))
        if now - last < self.every:
            self._last[key] = (last, skipped + 1)
            return
        self._last[key] = (now, 0)
        log.log(level, fmt + (f" ({skipped} more like this not logged)" if skipped else ""), *args)


class Record:
    """The record's rules over a Store. Counters are per process, for the operator and the tests."""

    def __init__(self, store: Store, *, sms_policy=None, tz: str = "Asia/Shanghai", followup_policy=None):
        self.store = store
        self.sms_policy = sms_policy   # center.sms.schedule.SmsPolicy; None: no SMS follow-up
        self.followup_policy = followup_policy  # center.followup.FollowupPolicy; None: no 差评 follow-ups
        # Each device's binding as last read or written by this process (bindings change only through
        # messages every intake receives); dropped with any batch that is rolled back.
        self._bindings: dict[tuple[str, str], tuple] = {}
        # During an intake batch, on its thread: the ratings owed to the city, written in one statement at its end.
        self._batch = threading.local()
        self.tz = ZoneInfo(tz)
        self.throttle = Throttle()
        self.stored = 0      # ratings stored (not duplicates)
        self.rejected = 0    # records refused with a `rejected` receipt, or without one when they had no id
        self.failed = 0      # records refused because storing them failed (a ledger bug or bad data)
        self.flagged = 0     # ratings kept with an alarm flag (window/case mismatch, unknown case)
        self.bad_topic = 0   # messages on topics the ledger cannot parse

    def counts(self) -> dict[str, int]:
        return {"stored": self.stored, "rejected": self.rejected, "failed": self.failed,
                "flagged": self.flagged, "bad_topic": self.bad_topic}

    # ---- the MQTT intake's batch ----------------------------------------------------------------

    def ingest(self, batch: list[tuple[str, bytes]], now: float | None = None) -> dict[str, list[dict]]:
        """Store a batch of broker messages in one transaction; the receipt items to publish per topic,
        only after it committed. A message that fails to store is refused alone (`rejected`,
        `ledger_error: …`): the batch is then done again with a savepoint around each message (the common
        case, nothing failing, pays for no savepoints). A database-level error propagates (the counters
        are restored: nothing of the batch happened)."""
        now = time.time() if now is None else now
        batch = in_lock_order(batch)
        try:
            return self._ingest(batch, now, savepoints=False)
        except _RecordFailed:
            return self._ingest(batch, now, savepoints=True)

    def _ingest(self, batch: list[tuple[str, bytes]], now: float, savepoints: bool) -> dict[str, list[dict]]:
        before = self.counts()
        receipts: dict[str, list[dict]] = {}
        self._batch.owed = owed_all = []
        try:
            with self.store.write() as conn:
                if any(is_state(topic) for topic, _ in batch):
                    state_lock(conn)  # first, before any row is locked
                for topic, payload in batch:
                    sp = conn.begin_nested() if savepoints else None
                    owed = len(owed_all)
                    try:
                        reply, item = self._one(conn, topic, payload, now)
                        if sp is not None:
                            sp.commit()
                    except Exception as e:  # noqa: BLE001 - one record must never stop the others
                        if isinstance(e, exc.DBAPIError) and not isinstance(e, RECORD_ERRORS):
                            raise  # the database itself (disk full, I/O): the whole batch waits for a re-offer
                        if sp is None:
                            raise _RecordFailed() from e
                        sp.rollback()
                        del owed_all[owed:]
                        self._bindings.clear()  # a binding pinned by this record is gone again
                        self.failed += 1
                        log.exception("could not store a message on %r; refused it", topic[:200])
                        reply, item = self._refusal(topic, payload, f"ledger_error: {type(e).__name__}: "
                                                                    f"{_first_line(e)}")
                    if reply and item:
                        receipts.setdefault(reply, []).append(item)
                city.enqueue_all(conn, owed_all, now)
        except BaseException:
            for name, value in before.items():  # rolled back: nothing of it happened
                setattr(self, name, value)
            self._bindings.clear()
            raise
        finally:
            self._batch.owed = None
        return receipts

    def _one(self, conn: Connection, topic: str, payload: bytes, now: float) -> tuple[str | None, dict | None]:
        where = parse_device_topic(topic)
        if where is None:
            self.apply_published(conn, topic, payload, now)
            return None, None
        center, device, leaf = where
        if leaf == "binding":
            self._binding(conn, center, device, payload, now)
            return None, None
        if leaf not in ("rating", "event"):
            self.bad_topic += 1
            self.throttle("topic", logging.WARNING, "ignored a message on %r: not a record", topic[:200])
            return None, None
        try:
            msg = codec.decode(leaf, payload)
            if msg["device"] != device or msg["center"] != center:
                raise MessageError("impersonation", f"topic says {center}/{device}, payload says "
                                                    f"{msg['center']}/{msg['device']}")
        except MessageError as e:
            return self._refusal(topic, payload, str(e))
        reply = topics.Topics(center, msg["window"], device).receipt
        if device == WEB_DEVICE:  # the center's own records come back from the broker: already stored
            if leaf == "rating" and conn.execute(RATING_EXISTS, {"id": msg["id"]}).first():
                return reply, {"id": msg["id"], "status": "duplicate"}
            return self._refusal(topic, payload, f"{WEB_DEVICE} records are made by the center itself")
        if leaf == "rating":
            status = self.accept(conn, msg, now).status
        else:
            status = self._event(conn, msg, now)
        return reply, {"id": msg["id"], "status": status}

    def _refusal(self, topic: str, payload: bytes, reason: str) -> tuple[str | None, dict | None]:
        self.rejected += 1
        where = parse_device_topic(topic)
        log.warning("rejected a message on %r: %s", topic[:200], reason[:200])
        rid = _id_of(payload)
        if where is None or rid is None:
            return None, None
        return (f"{topics.PREFIX}/{where[0]}/device/{where[1]}/receipt",
                {"id": rid, "status": "rejected", "reason": reason[:200]})

    # ---- the door -------------------------------------------------------------------------------

    def accept(self, conn: Connection, m: dict, now: float, *, terminal: bool = True) -> Stored:
        """Store one schema-valid rating inside the caller's transaction.

        A terminal's rating is always kept (flagged when it disagrees with what the center published; a
        later rating of a rated case is kept with first=0). A center channel's rating (`terminal=False`)
        of a case already rated is not stored at all: `already_rated`."""
        case = m.get("case")
        if case is not None and conn.execute(RATING_EXISTS, {"id": m["id"]}).first():
            return Stored("duplicate")  # (without a case, the insert below finds out by itself)
        flags = self._check(conn, m, now) if terminal else []
        alarms = [f for f in flags if f not in INFORMATIVE_FLAGS]
        first = case is not None and not alarms and not self.is_rated(conn, m["center"], case)
        if case is not None and not terminal and not first:
            return Stored("already_rated")
        reasons = m.get("reasons", {})
        row = dict(id=m["id"], center=m["center"], window=m["window"], device=m["device"], seq=m["seq"], ts=m["ts"],
                   kind=m["kind"], level=m["level"], channel=m["channel"], case_id=case,
                   item_code=m.get("item_code"), staff=m.get("staff"), applicant=m.get("applicant"),
                   reasons=",".join(reasons.get("codes", [])) or None, catalog=reasons.get("catalog"),
                   first=int(first), received=now, flags=",".join(flags) or None)
        if first and conn.dialect.name != "sqlite":
            # Another writer may have taken the case meanwhile (SQLite has one writer at a time, under the
            # store's lock): the unique index settles it.
            sp = conn.begin_nested()
            try:
                new = conn.execute(INSERT_RATING_IF_NEW(conn), row).first()
                sp.commit()
            except exc.IntegrityError:
                sp.rollback()
                if not terminal:
                    return Stored("already_rated")
                first, row["first"] = False, 0
                new = conn.execute(INSERT_RATING_IF_NEW(conn), row).first()
            if new is None:
                return Stored("duplicate")  # another worker stored this very rating meanwhile
        elif case is None or conn.dialect.name != "sqlite":
            # One statement also tells a duplicate: a staff or hall rating, or one another worker stored
            # since the check above.
            if conn.execute(INSERT_RATING_IF_NEW(conn), row).first() is None:
                return Stored("duplicate")
        else:
            conn.execute(INSERT_RATING, row)
        owed = getattr(self._batch, "owed", None)
        if owed is not None:  # the intake's batch: owed to the city in one statement at its end
            owed.append(row)
        else:
            city.enqueue(conn, row, now)  # owed to the city from the moment it is stored (docs/protocol.md §14)
        self.stored += 1
        if self.followup_policy is not None:  # a 差评 opens its follow-up (整改) with the rating
            followup.open(conn, row, now, self.followup_policy)
        if alarms:
            self.flagged += 1
            log.warning("ALARM rating %s from %s/%s at %s (case %s, staff %s) kept but flagged: %s", m["id"],
                        m["center"], m["device"], m["window"], case, m.get("staff"), ",".join(alarms))
        if first:
            self._rated(conn, m, now, announce=not terminal)
        return Stored("stored", first)

    def is_rated(self, conn: Connection, center: str, case_id: str) -> bool:
        return conn.execute(CASE_RATED, {"center": center, "case": case_id}).first() is not None

    def _rated(self, conn: Connection, m: dict, now: float, announce: bool) -> None:
        """A case's first rating: no SMS owed any more; a center channel's also tells the terminal."""
        from center.sms import jobs
        jobs.cancel(conn, m["center"], m["case"], now)
        conn.execute(CASE_NOW_RATED, {"b_center": m["center"], "b_case": m["case"], "b_now": now})
        if announce:
            body = {"v": 1, "type": "case", "center": m["center"], "window": m["window"], "state": "rated",
                    "case": {"id": m["case"]}, "rated_channel": m["channel"]}
            notice(conn, topics.Topics(m["center"], m["window"], WEB_DEVICE).case, codec.validate(body), now,
                   retain=True)

    def next_seq(self, conn: Connection, center: str, device: str = WEB_DEVICE) -> int:
        """The next number of the center's own records (one sequence per center, like a terminal's)."""
        key = {"b_center": center, "b_device": device}
        got = conn.execute(NEXT_SEQ, key).scalar()
        if got is None:
            sp = conn.begin_nested()
            try:
                conn.execute(INSERT_SEQ, {"center": center, "device": device, "last": 1})
                sp.commit()
                return 1
            except exc.IntegrityError:  # another writer made the row first
                sp.rollback()
                got = conn.execute(NEXT_SEQ, key).scalar()
        return int(got)

    def wall_time(self, now: float) -> str:
        return datetime.fromtimestamp(now, self.tz).isoformat(timespec="milliseconds")

    # ---- terminal checks ------------------------------------------------------------------------

    def _check(self, conn: Connection, m: dict, now: float) -> list[str]:
        """How a rating agrees with the device's binding and the case as published (docs/protocol.md §7)."""
        flags: list[str] = []
        center, device, window = m["center"], m["device"], m["window"]
        b = self._bindings.get((center, device))
        if b is None:
            b = conn.execute(BINDING, {"center": center, "device": device}).first()
            if b is not None:
                self._bindings[(center, device)] = tuple(b)
        if b is None:  # no provisioning: pin the window of the device's first rating
            pinned = conn.execute(_PIN_IF_NEW[conn.dialect.name], dict(
                center=center, device=device, state="pinned", window=window, prev_window=None, since=now,
                source="first_use", updated=now)).first()
            if pinned is None:  # another worker pinned it meanwhile: use what it wrote
                b = conn.execute(BINDING, {"center": center, "device": device}).first()
            else:
                self._bindings[(center, device)] = ("pinned", window, None, now, "first_use")
                log.info("no binding known for %s/%s: pinned it to window %s (its first rating)", center, device,
                         window)
                flags.append("unbound")
        if b is not None:
            state, bound, prev, since, source = b
            if source == "first_use":
                flags.append("unbound")
            if state == "revoked":
                flags.append("device_revoked")
            elif window != bound and not (window == prev and (_epoch(m["ts"]) or now) < since):
                flags.append("window_mismatch")
        if m["kind"] == "case":
            c = conn.execute(CASE_AS_PUBLISHED, {"center": center, "case": m["case"]}).first()
            if c is None:
                flags.append("unknown_case")
            else:
                if c[0] != window:
                    flags.append("case_window_mismatch")
                if c[1] is not None and c[1] != m.get("staff"):
                    flags.append("case_staff_mismatch")
        return flags

    def _event(self, conn: Connection, m: dict, now: float) -> str:
        if conn.execute(EVENT_EXISTS, {"id": m["id"]}).first():
            return "duplicate"
        new = conn.execute(_EVENT_IF_NEW[conn.dialect.name], dict(
            id=m["id"], center=m["center"], window=m["window"], device=m["device"], ts=m["ts"], event=m["event"],
            case_id=m.get("case"), staff=m.get("staff"), applicant=m.get("applicant"), received=now,
            seq=m.get("seq"), alarm=m.get("alarm"), detail=m.get("detail"))).first()
        if new is None:
            return "duplicate"  # another worker stored it since the check above
        if m["event"] == "unrated" and m.get("case"):
            self._unrated(conn, m["center"], m["case"], now)
        return "stored"

    def _unrated(self, conn: Connection, center: str, case_id: str, now: float) -> None:
        """A case closed without a rating: the SMS follow-up, if the case system gave a number."""
        if self.sms_policy is None:
            return
        from center.sms import jobs
        if jobs.schedule(conn, center, case_id, now, now, self.sms_policy):
            log.info("SMS follow-up scheduled for %s/%s", center, case_id)

    # ---- what the center published --------------------------------------------------------------

    def apply_published(self, conn: Connection, topic: str, payload: bytes, now: float) -> None:
        """What the center published on a window's case/duty or the catalog topic, kept (also called by the
        case feed in the transaction that owes the message, so the phone pages know the case at once)."""
        state_lock(conn)  # (a ledger batch took it first already: it is re-entrant)
        m = WINDOW_TOPIC.fullmatch(topic)
        if m and m.group(3) == "case":
            self._case(conn, m.group(1), m.group(2), payload, now)
        elif m:
            self._duty(conn, m.group(1), m.group(2), payload, now)
        elif (c := CATALOG_TOPIC.fullmatch(topic)):
            self._catalog(conn, c.group(1), payload, now)
        else:
            self.bad_topic += 1
            self.throttle("topic", logging.WARNING, "ignored a message on a topic the ledger cannot parse: %r",
                          topic[:200])

    def _binding(self, conn: Connection, center: str, device: str, payload: bytes, now: float) -> None:
        b = _decoded("binding", payload, center=center, device=device)
        if b is None:
            return  # refused, or a cleared retained binding: keep the last one known
        old = conn.execute(select(bindings.c.window, bindings.c.prev_window, bindings.c.since)
                           .where(and_(bindings.c.center == center, bindings.c.device == device))).first()
        window = b.get("window") or (old[0] if old else None)
        moved = old is not None and old[0] is not None and old[0] != window
        since = _epoch(b.get("issued")) or now
        row = dict(center=center, device=device, state=b["state"], window=window, source="binding", updated=now,
                   prev_window=old[0] if moved else (old[1] if old else None),
                   since=since if (moved or old is None) else old[2])
        upsert(conn, bindings, row, ("center", "device"))
        self._bindings.pop((center, device), None)  # read again, as stored, at the next rating
        log.info("binding of %s/%s: %s at %s", center, device, b["state"], window)

    def _case(self, conn: Connection, center: str, window: str, payload: bytes, now: float) -> None:
        c = _decoded("case", payload, center=center, window=window)
        if c is None:
            return  # refused, or a cleared retained case: what the ledger learned stays
        case_id, st = c["case"]["id"], c.get("staff") or {}
        row = dict(center=center, case_id=case_id, window=window, state=c["state"], updated=now)
        details = dict(staff=st.get("id"), item_code=c["case"].get("item_code"), item_name=c["case"].get("item_name"),
                       staff_name=st.get("name"), staff_number=st.get("number"),
                       applicant=(c.get("applicant") or {}).get("token"), opened_at=c.get("opened_at"))
        row.update({k: v for k, v in details.items() if v is not None})  # a `closed` keeps what `open` said
        if c["state"] != "rated" and self.is_rated(conn, center, case_id):
            row["state"] = "rated"  # the record knows better than a re-published `open`
        upsert(conn, cases, row, ("center", "case_id"))
        if st.get("id") and st.get("name"):
            self._staff(conn, center, st, window, now)
        if c["state"] == "closed" and row["state"] == "closed":
            self._unrated(conn, center, case_id, now)  # the case system says it closed unrated

    def _duty(self, conn: Connection, center: str, window: str, payload: bytes, now: float) -> None:
        d = _decoded("duty", payload, center=center, window=window)
        if d is None:
            return
        if d.get("window_name"):
            upsert(conn, windows, dict(center=center, window=window, name=d["window_name"], updated=now),
                   ("center", "window"))
        if d.get("staff"):
            self._staff(conn, center, d["staff"], window, now)

    def _staff(self, conn: Connection, center: str, st: dict, window: str, now: float) -> None:
        row = dict(center=center, staff_id=st["id"], name=st["name"], window=window, updated=now)
        if st.get("number"):
            row["number"] = st["number"]
        upsert(conn, staff, row, ("center", "staff_id"))

    def _catalog(self, conn: Connection, center: str, payload: bytes, now: float) -> None:
        c = _decoded("catalog", payload, center=center)
        if c is None:
            return
        upsert(conn, catalogs, dict(center=center, version=c["version"], updated=now,
                                    reasons=json.dumps(c["reasons"], ensure_ascii=False)), ("center", "version"))


def notice(conn: Connection, topic: str, body: dict, now: float, retain: bool) -> None:
    """An MQTT message the center owes, written with the change that owes it (center/notices.py sends it)."""
    conn.execute(INSERT_NOTICE, {"topic": topic, "payload": codec.encode(body), "retain": int(retain), "created": now})


def upsert(conn: Connection, table, row: dict, keys: tuple[str, ...]) -> None:
    """INSERT, or UPDATE the given columns of the row with these keys (SQLite and PostgreSQL)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table).values(row)
    changes = {k: stmt.excluded[k] for k in row if k not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changes) if changes
                 else stmt.on_conflict_do_nothing(index_elements=list(keys)))


def _decoded(kind: str, payload: bytes, **topic: str) -> dict | None:
    """A center message decoded and checked against the ids its topic names; None (logged) if refused,
    None (silently) for an empty payload: a cleared retained message."""
    if not payload:
        return None
    try:
        msg = codec.decode(kind, payload)
        wrong = [k for k, v in topic.items() if msg.get(k) != v]
        if wrong:
            raise MessageError("wrong_topic", f"the {kind} names another {'/'.join(wrong)} than its topic")
        return msg
    except MessageError as e:
        log.warning("ignored a %s on %s: %s", kind, "/".join(topic.values()), e)
        return None


def _epoch(ts: str | None) -> float | None:
    try:
        return datetime.fromisoformat(ts).timestamp() if ts else None
    except ValueError:
        return None


def _id_of(payload: bytes) -> str | None:
    """Best effort: the id of a record we refuse, so its sender can quarantine it."""
    try:
        rid = json.loads(payload).get("id")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return rid if isinstance(rid, str) and re.fullmatch(r"[0-9a-f-]{36}", rid) else None


def _first_line(e: BaseException) -> str:
    return (str(getattr(e, "orig", None) or e).splitlines() or [""])[0][:150]


__all__ = ["Record", "Stored", "WEB_DEVICE", "HALL_WINDOW", "notice", "upsert"]
