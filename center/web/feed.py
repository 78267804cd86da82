"""The case and duty feed: the HTTP door for queue (叫号) and case-handling (受办理) systems.

JSON under `/api/v1`, documented in the OpenAPI schema (`/api/openapi.json`), `Authorization: Bearer <key>`
(center/apikeys.py: a center-wide key, or a business system's key limited to its windows):

| call | does |
|---|---|
| `PUT /api/v1/windows/{window}/case` | open or update the window's case → the retained `case` message (200) |
| `POST /api/v1/windows/{window}/case/close` | closed at the center (unrated → the SMS follow-up, given a number) |
| `DELETE /api/v1/windows/{window}/case` | clear the window (empty retained payload: not a close, no follow-up; 204) |
| `PUT /api/v1/windows/{window}/duty` | who is on duty (a staff member or null) and the window's name |
| `PUT /api/v1/cases/{case}/contact` | the applicant's phone number alone (204) |

Every change is written in one transaction with what it owes: the center's own `cases` / `staff` / `windows`
rows (the same rules as a case system publishing on MQTT, `Record`), and the MQTT message as a `notices` row
that `center.notices.NoticeSender` publishes retained after the commit — so the phone pages know the case
the moment the call answers, and the terminal within the sender's round trip.

**Idempotent**: a call that would publish what the window already shows (the newest message the center
published on the topic) publishes nothing and answers 200 with that same message; the header
`HCP-Published: no` says so (`yes` when a new message went out). An open case without `opened_at` keeps the
time it was first opened at this window.

**Refusals**: 401 no or unknown key; 403 a window (or a case) outside the key's windows, audited; 404 a
window not among the center's; 409 opening a case that is already rated, closing a case that is not the
window's current one; 413 a body over 16 KiB; 422 a body that is not a valid message (`detail[].loc` names
the field; the same checks the terminals make, e.g. no ID or phone numbers in display text). Nothing a
refused call sent is stored or published.

The phone number (`phone` in a case, or the contact call) goes to `contacts` only: never into the
message, the response, a log line (masked at most) or MQTT.
"""
from __future__ import annotations

import json
import logging
import re
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Callable, Iterator, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, and_, bindparam, func, insert, select

from center import apikeys
from center.apikeys import ApiKey
from center.contacts import CASE_ID, ContactError, keep_contact, normalise
from center.ledger.record import Record, notice
from center.store.tables import cases, centers, notices
from protocol import codec, topics
from protocol.codec import MessageError

log = logging.getLogger("feed")

MAX_BODY = 16 * 1024
WINDOW_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
LEGACY_KEY = "feed_key_file"   # the name the center file's `[web] feed_key_file` key acts under
PUBLISHED = "HCP-Published"

# Patterns are anchored with \A…\z semantics by pydantic (Rust regex): "W01\n" is not an id.
_ID = r"^[A-Za-z0-9_-]{1,32}$"


Window = Annotated[str, Path(description="the window id, e.g. W01", examples=["W01"])]
CaseId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,50}$", description="办件编号")]


class Staff(BaseModel):
    """A staff member as the terminal shows them."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"id": "S0101", "name": "王芳", "number": "0101"}]})
    id: str = Field(pattern=_ID, description="工号 / staff id")
    name: str = Field(min_length=1, max_length=32)
    number: str | None = Field(None, max_length=16, description="the work number shown on screen")
    photo: str | None = Field(None, pattern=r"^https://\S+$", max_length=512)


class Applicant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(pattern=r"^[A-Za-z0-9_-]{8,128}$", description="opaque applicant reference (never a "
                                                                      "phone or ID number)")
    display: str = Field(min_length=1, max_length=16, description="masked name for the screen, e.g. 张*")


CASE_EXAMPLE = {"id": "SH20260302000017", "item_code": "310115-001", "item_name": "居住证办理",
                "staff": {"id": "S0101", "name": "王芳", "number": "0101"},
                "applicant": {"token": "ap_5f0c2a9e71b3d846", "display": "张*"},
                "phone": "13912345678", "opened_at": "2026-03-02T09:12:05+08:00"}


class CaseIn(BaseModel):
    """A case opened (or updated) at a window."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [CASE_EXAMPLE]})
    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,50}$", description="办件编号")
    item_code: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="事项编码")
    item_name: str = Field(min_length=1, max_length=64, description="事项名称, shown on screen")
    staff: Staff
    applicant: Applicant
    phone: str | None = Field(None, max_length=32, description="the applicant's mobile number for the SMS "
                                                               "follow-up; kept at the center, never published")
    rating_url: str | None = Field(None, pattern=r"^https://\S{1,500}$",
                                   description="the platform's own rating link for this case (the QR code)")
    opened_at: datetime | None = Field(None, description="default: now (or when this case opened here)")


class CloseIn(BaseModel):
    """Which case closed (default: the window's current one) and when (default: now)."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"id": "SH20260302000017"}]})
    id: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,50}$")
    closed_at: datetime | None = None


class DutyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"staff": {"id": "S0101", "name": "王芳", "number": "0101"}, "window_name": "W01 综合受理"},
        {"staff": None}]})
    staff: Staff | None = Field(description="who is on duty; null: nobody")
    window_name: str | None = Field(None, min_length=1, max_length=32)


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"phone": "13912345678"}]})
    phone: str = Field(max_length=32, description="a mainland mobile number (+86 / spaces / dashes allowed)")


class StaffOut(BaseModel):
    id: str
    name: str
    number: str | None = None
    photo: str | None = None


class CaseOut(BaseModel):
    """The `case` message as published (docs/protocol.md §4)."""
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "v": 1, "type": "case", "center": "pudong", "window": "W01", "state": "open",
        "case": {"id": "SH20260302000017", "item_code": "310115-001", "item_name": "居住证办理"},
        "staff": {"id": "S0101", "name": "王芳", "number": "0101"},
        "applicant": {"token": "ap_5f0c2a9e71b3d846", "display": "张*"}, "opened_at": "2026-03-02T09:12:05+08:00"}]})
    v: int
    type: Literal["case"]
    center: str
    window: str
    state: Literal["open", "closed", "rated"]
    case: dict[str, str]
    staff: StaffOut | None = None
    applicant: dict[str, str] | None = None
    rating_url: str | None = None
    rated_channel: str | None = None
    opened_at: str | None = None
    closed_at: str | None = None


class DutyOut(BaseModel):
    """The `duty` message as published (docs/protocol.md §4)."""
    v: int
    type: Literal["duty"]
    center: str
    window: str
    window_name: str | None = None
    staff: StaffOut | None


class Refused(BaseModel):
    detail: str


ERRORS = {401: {"model": Refused, "description": "no valid API key"},
          403: {"model": Refused, "description": "the window or case is not among the key's windows (audited)"},
          404: {"model": Refused, "description": "not one of the center's windows / no such case"},
          413: {"model": Refused, "description": "body over 16 KiB"}}


def feed_router(record: Record, legacy_key: bytes = b"", *, center: str | None = None,
                windows: frozenset[str] | None = None, wake: Callable[[], None] | None = None) -> APIRouter:
    """The feed's routes. `center`: the center id (default: the one center in the store's `centers`
    table); `windows`: the center file's windows (None: any well-formed window id); `legacy_key`: the
    `[web] feed_key_file` key, accepted as a center-wide key named `feed_key_file`; `wake`: called after
    a commit that owes a message (NoticeSender.wake)."""
    store = record.store
    extra = {legacy_key.hex(): ApiKey(LEGACY_KEY, None)} if legacy_key else {}
    caller = Depends(apikeys.key_dependency(store, extra))
    router = APIRouter(prefix="/api/v1", tags=["case feed"], responses=ERRORS, route_class=FeedRoute)
    here: list[str] = [center] if center else []

    def center_id() -> str:
        if not here:
            with store.read() as conn:
                found = conn.execute(select(centers.c.center)).scalars().all()
            if len(found) != 1:
                raise HTTPException(503, "the feed does not know which center it serves")
            here.append(found[0])
        return here[0]

    def window_for(window: str, key: ApiKey) -> str:
        if not WINDOW_ID.fullmatch(window) or (windows is not None and window not in windows):
            raise HTTPException(404, "no such window at this center")
        if not key.allows(window):
            deny(key, f"window/{window}")
        return window

    def deny(key: ApiKey, target: str) -> None:
        from center.accounts import audit
        with store.write() as conn:
            audit(conn, key.who, "api_denied", target[:128], "outside the key's windows")
        log.warning("API key %s refused for %s (outside its windows)", key.name, target)
        raise HTTPException(403, "this key may not act on that window")

    @contextmanager
    def denials(key: ApiKey) -> Iterator[None]:
        """A denial found inside a transaction: audited (and answered 403) after it rolled back."""
        try:
            yield
        except _Denied as d:
            deny(key, d.target)

    def case_elsewhere(conn: Connection, c: str, case_id: str, key: ApiKey) -> str | None:
        """The window the center knows the case at, when the key may not act there."""
        at = conn.execute(CASE_WINDOW, {"center": c, "case": case_id}).scalar()
        return at if at is not None and not key.allows(at) else None

    def done(msg: dict | None, published: bool, status: int = 200) -> Response:
        if published and wake is not None:
            wake()
        headers = {PUBLISHED: "yes" if published else "no"}
        return JSONResponse(msg, status_code=status, headers=headers) if msg is not None else \
            Response(status_code=204, headers=headers)

    @router.put("/windows/{window}/case", response_model=CaseOut, summary="Open or update the window's case",
                responses={409: {"model": Refused, "description": "the case is already rated"}},
                dependencies=[Depends(body_cap)])
    def put_case(window: Window, body: CaseIn, key: ApiKey = caller) -> Response:
        c, w = center_id(), window_for(window, key)
        number = _phone(body.phone)
        now = time.time()
        with denials(key), store.write() as conn:
            if (other := case_elsewhere(conn, c, body.id, key)) is not None:
                raise _Denied(f"case/{body.id}@{other}")
            if record.is_rated(conn, c, body.id):
                raise HTTPException(409, "this case is already rated")
            topic = topics.Topics(c, w, "-").case
            current = _current(conn, topic)
            opened = body.opened_at and _iso(body.opened_at, record)
            if opened is None and current and current.get("state") == "open" and current["case"]["id"] == body.id:
                opened = current.get("opened_at")
            msg = {"v": 1, "type": "case", "center": c, "window": w, "state": "open",
                   "case": {"id": body.id, "item_code": body.item_code, "item_name": body.item_name},
                   "staff": body.staff.model_dump(exclude_none=True), "applicant": body.applicant.model_dump(),
                   "opened_at": opened or record.wall_time(now)}
            if body.rating_url:
                msg["rating_url"] = body.rating_url
            msg = _checked("case", msg)
            published = msg != current
            if published:
                _publish(conn, record, topic, msg, now)
            if number is not None:
                keep_contact(conn, record, c, body.id, number, now)
        log.info("case %s %s at %s by key %s", body.id, "opened" if published else "unchanged", w, key.name)
        return done(msg, published)

    @router.post("/windows/{window}/case/close", response_model=CaseOut, summary="Close the window's case",
                 responses={409: {"model": Refused, "description": "not the window's current case"}},
                 dependencies=[Depends(body_cap)])
    def close_case(window: Window, body: CloseIn | None = None, key: ApiKey = caller) -> Response:
        c, w = center_id(), window_for(window, key)
        body = body or CloseIn()
        now = time.time()
        with store.write() as conn:
            topic = topics.Topics(c, w, "-").case
            current = _current(conn, topic)
            case_id = current["case"]["id"] if current else _open_case_at(conn, c, w)
            if case_id is None or (body.id is not None and body.id != case_id):
                raise HTTPException(409, "that is not the window's current case")
            if current and current.get("state") in ("closed", "rated"):
                return done(current, False)   # already closed (or rated): nothing more to say
            msg = _checked("case", {"v": 1, "type": "case", "center": c, "window": w, "state": "closed",
                                    "case": {"id": case_id},
                                    "closed_at": _iso(body.closed_at, record) or record.wall_time(now)})
            _publish(conn, record, topic, msg, now)
        log.info("case %s closed at %s by key %s", case_id, w, key.name)
        return done(msg, True)

    @router.delete("/windows/{window}/case", status_code=204, summary="Clear the window (not a close)",
                   response_class=Response)
    def clear_case(window: Window, key: ApiKey = caller) -> Response:
        c, w = center_id(), window_for(window, key)
        now = time.time()
        with store.write() as conn:
            topic = topics.Topics(c, w, "-").case
            raw = _newest(conn, topic)
            published = raw is None or raw != b""
            if published:
                conn.execute(insert(notices).values(topic=topic, payload=b"", retain=1, created=now))
        log.info("window %s cleared by key %s", w, key.name)
        return done(None, published)

    @router.put("/windows/{window}/duty", response_model=DutyOut, summary="Set who is on duty",
                dependencies=[Depends(body_cap)])
    def put_duty(window: Window, body: DutyIn, key: ApiKey = caller) -> Response:
        c, w = center_id(), window_for(window, key)
        now = time.time()
        msg = {"v": 1, "type": "duty", "center": c, "window": w,
               "staff": body.staff.model_dump(exclude_none=True) if body.staff else None}
        if body.window_name:
            msg["window_name"] = body.window_name
        msg = _checked("duty", msg)
        with store.write() as conn:
            topic = topics.Topics(c, w, "-").duty
            published = msg != _current(conn, topic)
            if published:
                _publish(conn, record, topic, msg, now)
        return done(msg, published)

    @router.put("/cases/{case_id}/contact", status_code=204, summary="The applicant's phone number",
                response_class=Response, dependencies=[Depends(body_cap)],
                responses={422: {"description": "not a mainland mobile number, or not a case id"}})
    def put_contact(case_id: CaseId, body: ContactIn,
                    key: ApiKey = caller) -> Response:
        c = center_id()
        number = _phone(body.phone)
        with denials(key), store.write() as conn:
            if key.windows is not None:
                at = conn.execute(CASE_WINDOW, {"center": c, "case": case_id}).scalar()
                if at is None:  # a limited key may only speak of cases opened at its windows
                    raise HTTPException(404, "no such case at the key's windows")
                if not key.allows(at):
                    raise _Denied(f"case/{case_id}@{at}")
            scheduled = keep_contact(conn, record, c, case_id, number, time.time())
        log.info("contact kept for %s/%s%s", c, case_id, " (follow-up scheduled)" if scheduled else "")
        return Response(status_code=204)

    # The first feed's path (issue 10), for case systems not moved yet: 400 with a reason, not 422.
    @router.put("/contacts/{center_path}/{case_id}", include_in_schema=False)
    async def put_contact_v0(center_path: str, case_id: str, request: Request, key: ApiKey = caller) -> Response:
        raw = await request.body()
        if len(raw) > 1024:
            return JSONResponse({"error": "too_big"}, status_code=413)
        try:
            phone = json.loads(raw).get("phone")
            if not isinstance(phone, str):
                raise ContactError("phone: a string is needed")
            if center_path != center_id() or not CASE_ID.fullmatch(case_id):
                raise ContactError("case: not a case id")
            number = normalise(phone)
        except (ValueError, AttributeError) as e:
            reason = str(e) if isinstance(e, ContactError) else "body: JSON object with a phone string expected"
            return JSONResponse({"error": reason}, status_code=400)
        if key.windows is not None:
            return JSONResponse({"error": "this path needs a center-wide key"}, status_code=403)
        await run_in_threadpool(keep, center_path, case_id, number)
        return Response(status_code=204)

    def keep(c: str, case_id: str, number: str) -> None:
        with store.write() as conn:
            keep_contact(conn, record, c, case_id, number, time.time())

    return router


class FeedRoute(APIRoute):
    """422s name the field and the rule, never echo the input (it may hold the applicant's phone number)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as e:
                return JSONResponse({"detail": [{"loc": list(err.get("loc", ())), "msg": err.get("msg", ""),
                                                 "type": err.get("type", "")} for err in e.errors()]},
                                    status_code=422)
        return route


class _Denied(Exception):
    def __init__(self, target: str):
        super().__init__(target)
        self.target = target


async def body_cap(request: Request) -> None:
    """413 before the body is parsed when it is announced too big; 413 after reading it otherwise."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
        raise HTTPException(413, "body over 16 KiB")
    if len(await request.body()) > MAX_BODY:
        raise HTTPException(413, "body over 16 KiB")


def _phone(phone: str | None) -> str | None:
    if phone is None:
        return None
    try:
        return normalise(phone)
    except ContactError as e:
        raise HTTPException(422, [{"loc": ["body", "phone"], "msg": str(e), "type": "value_error"}]) from None


def _checked(kind: str, msg: dict) -> dict:
    """The message through the terminals' own decoder (schema and personal-data checks), or 422."""
    try:
        return codec.decode(kind, codec.encode(msg))
    except (MessageError, UnicodeError) as e:
        raise HTTPException(422, [{"loc": ["body"], "msg": f"not a valid {kind} message: {e}"[:300],
                                   "type": getattr(e, "reason", "unicode")}]) from None


def _iso(t: datetime | None, record: Record) -> str | None:
    """A time as the protocol writes it; a time without a zone is the center's."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=record.tz)
    return t.isoformat(timespec="seconds")


# The hot path's statements, built once (SQLAlchemy reuses their compiled form).
NEWEST = select(notices.c.payload).where(notices.c.topic == bindparam("topic")).order_by(notices.c.id.desc()).limit(1)
CASE_WINDOW = select(cases.c.window).where(and_(cases.c.center == bindparam("center"),
                                                cases.c.case_id == bindparam("case")))


def _newest(conn: Connection, topic: str) -> bytes | None:
    """The payload the center last published on a topic (b"": cleared), None if never."""
    row = conn.execute(NEWEST, {"topic": topic}).first()
    return None if row is None else bytes(row[0])


def _current(conn: Connection, topic: str) -> dict | None:
    raw = _newest(conn, topic)
    if not raw:
        return None
    return json.loads(raw)


def _open_case_at(conn: Connection, center: str, window: str) -> str | None:
    """The case the record last saw opened at a window (the notices of it may have been pruned)."""
    return conn.execute(select(cases.c.case_id).where(and_(cases.c.center == center, cases.c.window == window,
                                                           cases.c.state == "open"))
                        .order_by(cases.c.updated.desc()).limit(1)).scalar()


def _publish(conn: Connection, record: Record, topic: str, msg: dict, now: float) -> None:
    """What the record learns from the message (as if it came over MQTT) and the message itself, owed."""
    record.apply_published(conn, topic, codec.encode(msg), now)
    notice(conn, topic, msg, now, retain=True)


def _moved_on(conn, center: str, row) -> bool:
    """A case system on MQTT published a later case at that window than our newest message (e.g. our `rated`
    of the previous case): re-publishing ours would bring the old case back."""
    if not row.topic.endswith("/case") or not row.payload:
        return False
    try:
        ours = json.loads(bytes(row.payload))["case"]["id"]
    except (ValueError, KeyError, TypeError):
        return False
    window = row.topic.rsplit("/", 2)[1]
    later = conn.execute(select(cases.c.case_id).where(cases.c.center == center, cases.c.window == window,
                                                       cases.c.case_id != ours, cases.c.updated > row.created)
                         .limit(1)).first()
    return later is not None


def republish(store, center: str, now: float | None = None) -> int:
    """Owe again what every window of `center` shows (the newest `case` and `duty` the center published,
    a cleared one included): docs/protocol.md §4 wants them published again on every (re)connect, since a
    broker restored from an older snapshot may hold older retained cases. Topics whose newest message is
    still unsent are skipped (it is on its way). The number of messages owed again."""
    now = time.time() if now is None else now
    base = f"{topics.PREFIX}/{center}/window/"
    with store.write() as conn:
        ours = notices.c.topic.like(base.replace("_", r"\_") + "%", escape="\\")
        newest = select(func.max(notices.c.id)).where(ours).group_by(notices.c.topic)
        rows = conn.execute(select(notices.c.topic, notices.c.payload, notices.c.sent_at, notices.c.created)
                            .where(notices.c.id.in_(newest)).order_by(notices.c.id)).all()
        again = [dict(topic=r.topic, payload=bytes(r.payload), retain=1, created=now) for r in rows
                 if r.sent_at is not None and r.topic.rsplit("/", 1)[1] in ("case", "duty")
                 and not _moved_on(conn, center, r)]
        if again:
            conn.execute(insert(notices), again)
    return len(again)
