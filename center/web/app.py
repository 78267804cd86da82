"""The phone pages' web application: `create_app(desk, settings)` → a FastAPI app (serve it with uvicorn).

Around every route (center/web/rate.py) sits one guard: security headers on every response and a cap on
the request body, refused with 413 before it is read when its length is announced, cut off when a chunked
body grows past it. No OpenAPI or docs pages here: these are HTML pages for citizens.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from center.desk import Desk
from center.web.rate import Pages, Phone, router
from center.web.settings import WebSettings

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")


def security_headers(https: bool) -> list[tuple[str, str]]:
    headers = [
        ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        # same-origin, not no-referrer: the token in the URL still never leaves this site (the pages link
        # nowhere else and load nothing from elsewhere), and with no-referrer browsers send `Origin: null`
        # on our own form posts, which would defeat the Origin check.
        ("Referrer-Policy", "same-origin"),
        ("Cache-Control", "no-store"),     # token pages must not sit in a shared phone's cache
    ]
    if https:
        headers.append(("Strict-Transport-Security", "max-age=31536000"))
    return headers


class _TooBig(Exception):
    pass


class Guard:
    """Pure ASGI middleware: headers on every response; request bodies above `max_body` refused (413)."""

    def __init__(self, app: ASGIApp, *, pages: Pages, max_body: int, https: bool):
        self.app, self.pages, self.max_body = app, pages, max_body
        self.headers = security_headers(https)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_guarded(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in self.headers:
                    headers[name] = value
            await send(message)

        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self.pages.notice("too_big")(scope, receive, send_guarded)
            return
        seen = 0

        async def receive_capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooBig()
            return message

        try:
            await self.app(scope, receive_capped, send_guarded)
        except _TooBig:
            if not started:
                await self.pages.notice("too_big")(scope, receive, send_guarded)


def create_app(desk: Desk, settings: WebSettings) -> FastAPI:
    """The phone pages over `desk`, for the centers and keys in `settings`."""
    # The JSON APIs are documented at /api/openapi.json (no Swagger page: it would load scripts from a CDN).
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  title="好差评 center service API")
    ph = Phone(desk, settings)
    app.state.phone = ph
    app.state.store = desk.store
    app.add_middleware(Guard, pages=ph.pages, max_body=settings.max_body, https=settings.https)
    app.include_router(router)

    @app.get("/healthz")
    def healthz() -> Response:
        return PlainTextResponse("ok")

    async def http_error(_request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 400)
        kind = {404: "not_found", 405: "not_found", 403: "forbidden", 413: "too_big"}.get(status, "bad_request")
        response = ph.pages.notice(kind)
        response.status_code = status
        return response

    async def validation_error(_request: Request, _exc: Exception) -> Response:
        return ph.pages.notice("bad_request")

    async def server_error(_request: Request, _exc: Exception) -> Response:
        return ph.pages.notice("busy")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, server_error)
    return app
