"""The center's own data over HTTP (`data_router(queries)`), documented at /api/openapi.json:

- `GET /api/v1/ratings` — one page of rows, oldest first: `{"rows": [...], "next": <cursor> | null}`;
  ask again with `cursor=<next>` for the next page (stable while ratings arrive);
- `GET /api/v1/ratings.csv` — every matching row, streamed: UTF-8 with a BOM (Excel opens it as is),
  `headers=zh` for Chinese column names and levels;
- `GET /api/v1/ratings.json` — every matching row, streamed as one JSON array;
- `GET /api/v1/summary?by=staff|window|item|day` — counts per level, satisfaction rate, bad rate, top reasons.

Filters (all optional): `from`, `to` (YYYY-MM-DD, the center's time zone, inclusive), `center`, and
comma-separated `window`, `staff`, `item`, `level`, `channel`. Anything unacceptable: 400 `{"error": ...}`.

Who may read: an API key (`Authorization: Bearer <key>`, center/apikeys.py: center-wide or limited to
its windows) or a signed-in staff session (cookie `hcp_s`; a supervisor sees their windows only). No one
gets applicant data: rows never carry the applicant token (center/queries.py selects it nowhere).
Exports are audited (who, what, the query).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import AsyncIterator, Iterator

import anyio

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from center import accounts
from center.queries import QueryError, Queries, decode_cursor, parse_filters, parse_limit
from center.web import auth


@dataclass(frozen=True)
class Reader:
    """Who reads: a staff member (`user:<name>`) or an API key (`key:<name>`), and the windows they see."""
    who: str
    windows: frozenset[str] | None


def reader(request: Request) -> Reader | None:
    """The request's reader from its bearer key or its session; None when it has neither (or a wrong one)."""
    store = request.app.state.store
    if request.headers.get("authorization", "").partition(" ")[0].lower() == "bearer":
        try:
            from center import apikeys   # helper F's module; until it exists no key is valid
        except ImportError:
            return None
        key = apikeys.api_key(request, store)
        return None if key is None else Reader(f"key:{key.name}", key.windows)
    found = auth.current(request)
    if found is None:
        return None
    user = found[0]
    return Reader(f"user:{user.name}", user.windows)


def _filter_params(
        from_: str | None = Query(None, alias="from", description="first day, YYYY-MM-DD (center time zone)"),
        to: str | None = Query(None, description="last day, YYYY-MM-DD, inclusive"),
        center: str | None = Query(None, description="one center id"),
        window: str | None = Query(None, description="window ids, comma-separated"),
        staff: str | None = Query(None, description="staff ids, comma-separated"),
        item: str | None = Query(None, description="item codes, comma-separated"),
        level: str | None = Query(None, description="levels: very_satisfied, satisfied, basically_satisfied, "
                                                    "dissatisfied, very_dissatisfied; comma-separated"),
        channel: str | None = Query(None, description="channels: touch, keys, qr, sms, staff_qr, hall_qr, other"),
) -> dict[str, str | None]:
    # Declared for the OpenAPI document only: the values are parsed by center.queries.parse_filters, so a
    # wrong one gets this API's JSON 400, not the phone pages' HTML error page.
    return {"from": from_, "to": to, "center": center, "window": window, "staff": staff, "item": item,
            "level": level, "channel": channel}


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _unauthorized() -> JSONResponse:
    return JSONResponse({"error": "unauthorized: an API key (Bearer) or a staff session is needed"},
                        status_code=401, headers={"WWW-Authenticate": "Bearer"})


def data_router(queries: Queries, centers: frozenset[str] | None = None) -> APIRouter:
    """The data API over `queries`; `centers`: the centers this service answers for (a district store may
    hold others), None for every center in the store."""
    router = APIRouter(tags=["data"])

    def begin(request: Request, params: dict) -> tuple[Reader, object] | JSONResponse:
        who = reader(request)
        if who is None:
            return _unauthorized()
        try:
            filters = parse_filters({k: v for k, v in params.items() if v is not None}).within(who.windows)
            return who, replace(filters, centers=centers)
        except QueryError as e:
            return _error(str(e))

    def audited(who: Reader, what: str, request: Request) -> None:
        with queries.store.write() as conn:
            accounts.audit(conn, who.who, "export", what, request.url.query[:500])

    @router.get("/api/v1/ratings", summary="Ratings, one page at a time (cursor pagination)")
    def list_ratings(request: Request, params: dict = Depends(_filter_params),
                     cursor: str | None = Query(None, description="`next` of the previous page"),
                     limit: str | None = Query(None, description="rows per page, 1–1000 (default 100)")) -> Response:
        begun = begin(request, params)
        if isinstance(begun, JSONResponse):
            return begun
        _, filters = begun
        try:
            if cursor:
                decode_cursor(cursor)
            page = queries.ratings(filters, cursor or None, parse_limit(limit))
        except QueryError as e:
            return _error(str(e))
        return JSONResponse({"rows": page.rows, "next": page.next})

    @router.get("/api/v1/ratings.csv", summary="Every matching rating as CSV (UTF-8 with BOM, streamed)",
                response_class=StreamingResponse)
    def export_csv(request: Request, params: dict = Depends(_filter_params),
                   headers: str | None = Query(None, description="`zh`: Chinese column names and levels")) -> Response:
        begun = begin(request, params)
        if isinstance(begun, JSONResponse):
            return begun
        who, filters = begun
        if headers not in (None, "", "en", "zh"):
            return _error("headers: en or zh")
        audited(who, "ratings.csv", request)
        return StreamingResponse(closing(queries.export_csv(filters, zh=headers == "zh")),
                                 media_type="text/csv; charset=utf-8",
                                 headers={"Content-Disposition": 'attachment; filename="ratings.csv"'})

    @router.get("/api/v1/ratings.json", summary="Every matching rating as one JSON array (streamed)",
                response_class=StreamingResponse)
    def export_json(request: Request, params: dict = Depends(_filter_params)) -> Response:
        begun = begin(request, params)
        if isinstance(begun, JSONResponse):
            return begun
        who, filters = begun
        audited(who, "ratings.json", request)
        return StreamingResponse(closing(_json_array(queries, filters)), media_type="application/json",
                                 headers={"Content-Disposition": 'attachment; filename="ratings.json"'})

    @router.get("/api/v1/summary", summary="Counts per level, satisfaction and bad-rating rates, top reasons")
    def summary(request: Request, params: dict = Depends(_filter_params),
                by: str = Query("staff", description="staff | window | item | day")) -> Response:
        begun = begin(request, params)
        if isinstance(begun, JSONResponse):
            return begun
        _, filters = begun
        try:
            groups = queries.summary(by, filters)
        except QueryError as e:
            return _error(str(e))
        return JSONResponse({"by": by, "groups": groups})

    return router


async def closing(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Stream a blocking generator (it holds a database connection, mid-COPY on PostgreSQL) chunk by chunk
    in the thread pool, and close it there as soon as the response ends — also when the client hangs up.
    Left to the garbage collector, it would be finalised in some other thread, which then blocks on the
    connection's lock (held by the suspended COPY) while rolling it back."""
    try:
        while True:
            chunk = await run_in_threadpool(next, chunks, None)
            if chunk is None:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(chunks.close)


def _json_array(queries: Queries, filters) -> Iterator[bytes]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    yield b"["
    sep = "\n"
    for part in queries.export(filters):
        if part:
            yield (sep + ",\n".join(dumps(row) for row in part)).encode()
            sep = ",\n"
    yield b"\n]\n"
