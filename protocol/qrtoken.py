"""Signed, expiring rating tokens for the dynamic QR code (the wire contract of a scanned rating).

Token (all URL-safe, readable, no padding):

    1~<key id>~<center>~<case>~<window>~<staff>~<device>~<expiry unix s>~<nonce>~<tag>

Ids are [A-Za-z0-9_-] (case ids also '.' and ':'), the expiry is decimal digits, the nonce 6 random
bytes and `tag` the first 16 bytes of HMAC-SHA256(center key, everything before "~<tag>"), both base64url.
The exact grammar is `TOKEN`; `sign` makes nothing else and `verify` accepts nothing else.
A verifier splits on "~", looks the key up by id, recomputes the tag, compares in constant time and
checks the expiry (docs/protocol.md, "Verifying a QR token").
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Mapping
TOKEN_VERSION = "1"
# The published demo key (ASCII "demo-only-not-for-production-use", key id `demo`): `make run` signs and
# verifies with it when asked explicitly (terminal `qr.demo = true`, center service `--demo`). Never in production.
DEMO_KEY_ID = "demo"
DEMO_KEY = bytes.fromhex("64656d6f2d6f6e6c792d6e6f742d666f722d70726f64756374696f6e2d757365")
TAG_BYTES = 16
SEP = "~"
_ID = r"[A-Za-z0-9_-]{1,32}"
# The whole grammar: every token `sign` makes matches it, and `verify` refuses anything else before it
# computes a tag (so odd input never reaches int() or hmac.compare_digest, which fails on non-ASCII str).
TOKEN = re.compile(rf"1~[A-Za-z0-9_-]{{1,16}}~{_ID}~[A-Za-z0-9_.:-]{{1,50}}~{_ID}~{_ID}~{_ID}~[0-9]{{1,12}}"
                   rf"~[A-Za-z0-9_-]{{8}}~[A-Za-z0-9_-]{{22}}")


class TokenError(ValueError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Claims:
    key_id: str
    center: str
    case: str
    window: str
    staff: str
    device: str
    expires: int
    nonce: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _tag(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:TAG_BYTES])


def sign(key_id: str, key: bytes, *, center: str, case: str, window: str, staff: str, device: str,
         ttl_s: int, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + ttl_s)
    body = SEP.join([TOKEN_VERSION, key_id, center, case, window, staff, device, str(expires),
                     _b64(os.urandom(6))])
    if not body.isascii():
        raise ValueError("token fields must be ASCII")
    token = f"{body}{SEP}{_tag(key, body)}"
    if not TOKEN.fullmatch(token):
        raise ValueError("a token field is empty, too long or outside [A-Za-z0-9_-] (case ids also '.:')")
    return token


def verify(token: str, keys: Mapping[str, bytes], now: float | None = None) -> Claims:
    """Check a token; raise TokenError(malformed | unknown_key | bad_signature | expired)."""
    if not TOKEN.fullmatch(token):
        raise TokenError("malformed")
    parts = signed_fields(token, keys)
    expires = int(parts[7])
    if (time.time() if now is None else now) >= expires:
        raise TokenError("expired")
    return Claims(parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], expires, parts[8])


def signed_fields(token: str, keys: Mapping[str, bytes], tag: Callable[[bytes, str], str] | None = None) -> list[str]:
    """The `~`-separated fields of a token whose grammar the caller has checked (field 1 is the key id), once
    its tag (the last field) is the one `tag(key, body)` computes: compared in constant time.
    TokenError(unknown_key | bad_signature). Shared by the center's static codes (center/web/links.py)."""
    parts = token.split(SEP)
    body, given = token.rsplit(SEP, 1)
    key = keys.get(parts[1])
    if key is None:
        raise TokenError("unknown_key")
    if not hmac.compare_digest((tag or _tag)(key, body), given):
        raise TokenError("bad_signature")
    return parts


def rating_url(template: str, token: str) -> str:
    return template.replace("{token}", token)
