"""Who is asking, for the staff pages and APIs: the session cookie (`hcp_s`) → `User`, role checks, CSRF.

Pages depend on `signed_in` (not signed in: 303 to the sign-in page) or `require("admin", ...)` (another
role: 403). POSTs carry the session's CSRF token as the form field `csrf` (`csrf_ok`).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.responses import RedirectResponse, Response

from center import accounts
from center.accounts import User
from provisioning.users import same

SESSION_COOKIE = "hcp_s"
LOGIN = "/console/login"


class SignInRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(303, headers={"Location": LOGIN})


async def sign_in_redirect(_request: Request, exc: Exception) -> Response:
    """The app's handler for `SignInRequired` (mounted by center.web.console.install): a plain 303."""
    return RedirectResponse(LOGIN, 303)


def client_address(request: Request) -> str:
    """The client's address: uvicorn's proxy-headers middleware has already replaced the peer with the
    X-Forwarded-For client when (and only when) the peer is a trusted proxy (`[web] forwarded_allow_ips`)."""
    return request.client.host if request.client else "-"


def same_origin(request: Request, public_base: str = "") -> bool:
    """A browser's Origin must name this site (its Host, or the public base URL); no Origin (tools) is left
    to the CSRF token; `Origin: null` (a sandboxed or privacy-stripped form) is refused."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    netloc = urlsplit(origin).netloc
    return netloc == request.headers.get("host", "") or bool(public_base) and netloc == urlsplit(public_base).netloc


def _store(request: Request):
    return request.app.state.store


def current(request: Request) -> tuple[User, str] | None:
    """(user, csrf token) of the request's session, or None."""
    return accounts.session_user(_store(request), request.cookies.get(SESSION_COOKIE, ""))


def signed_in(request: Request) -> User:
    found = current(request)
    if found is None:
        raise SignInRequired()
    request.state.csrf = found[1]
    return found[0]


def require(*roles: str):
    """A dependency: the signed-in user if their role is one of `roles`, else 403."""
    def dependency(request: Request) -> User:
        u = signed_in(request)
        if u.role not in roles:
            raise HTTPException(403)
        return u
    return dependency


def csrf_ok(request: Request, form) -> bool:
    expected = getattr(request.state, "csrf", "") or (current(request) or (None, ""))[1]
    given = form.get("csrf") if form is not None else None
    return bool(expected) and isinstance(given, str) and same(given, expected)
