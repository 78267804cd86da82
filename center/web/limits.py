"""Who is rating through a static code, as far as the limits need to know: the phone cookie and the address.

The phone cookie `hcp_c` holds a random 128-bit id and its HMAC (cookie secret), so a phone cannot pick
its own id. It is set when a static (staff or hall) page is first opened, HttpOnly, SameSite=Lax, Secure
over TLS, for a year. The store never sees the id or the address itself, only `client_key` / `addr_key`:
HMAC-SHA256 hex under the cookie secret (no raw IPs are stored).

Clearing cookies (or a private tab) evades the per-phone limit: such a POST gets a fresh cookie and counts
as a new phone. The per-address limit remains.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "hcp_c"
COOKIE_AGE_S = 365 * 86400
_VALUE = re.compile(r"[0-9a-f]{32}\.[0-9a-f]{32}")


class PhoneCookie:
    """Issue and read the signed phone cookie; derive the keys the limits count by."""

    def __init__(self, secret: bytes, secure: bool):
        if len(secret) < 16:
            raise ValueError("the cookie secret must be at least 16 bytes")
        self.secret, self.secure = secret, secure

    def _mac(self, domain: bytes, value: str) -> str:
        return hmac.new(self.secret, domain + b"\x00" + value.encode("utf-8", "surrogatepass"),
                        hashlib.sha256).hexdigest()

    def _sign(self, cid: str) -> str:
        return f"{cid}.{self._mac(b'cookie', cid)[:32]}"

    def read(self, request: Request) -> str | None:
        """The cookie's id when it is present and ours, else None."""
        value = request.cookies.get(COOKIE, "")
        if not _VALUE.fullmatch(value):
            return None
        cid = value.split(".", 1)[0]
        return cid if hmac.compare_digest(self._sign(cid), value) else None

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(16)

    def set(self, response: Response, cid: str) -> None:
        response.set_cookie(COOKIE, self._sign(cid), max_age=COOKIE_AGE_S, path="/", httponly=True,
                            samesite="lax", secure=self.secure)

    def client_key(self, cid: str) -> str:
        """What the store keeps for a phone: 64 hex characters."""
        return self._mac(b"client", cid)

    def addr_key(self, request: Request) -> str:
        """What the store keeps for the client address (behind a proxy: uvicorn's --proxy-headers)."""
        host = request.client.host if request.client else "unknown"
        return self._mac(b"addr", host)
