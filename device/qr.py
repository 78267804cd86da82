"""Dynamic QR codes: signed, expiring rating tokens and a fast QR matrix.

Token (all URL-safe, readable, no padding):

    1~<key id>~<center>~<case>~<window>~<staff>~<device>~<expiry unix s>~<nonce>~<tag>

`tag` is the first 16 bytes of HMAC-SHA256(center key, everything before "~<tag>"), base64url.
A verifier splits on "~", looks the key up by id, recomputes the tag, compares in constant time and
checks the expiry (docs/protocol.md, "Verifying a QR token").
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Mapping

import qrcode
from qrcode.constants import ERROR_CORRECT_M

TOKEN_VERSION = "1"
TAG_BYTES = 16
SEP = "~"


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
    return f"{body}{SEP}{_tag(key, body)}"


def verify(token: str, keys: Mapping[str, bytes], now: float | None = None) -> Claims:
    """Check a token; raise TokenError(malformed | unknown_key | bad_signature | expired)."""
    parts = token.split(SEP)
    if len(parts) != 10 or parts[0] != TOKEN_VERSION or not all(parts):
        raise TokenError("malformed")
    body, tag = token.rsplit(SEP, 1)
    key = keys.get(parts[1])
    if key is None:
        raise TokenError("unknown_key")
    try:
        expected = _tag(key, body)
    except UnicodeEncodeError:
        raise TokenError("malformed") from None
    if not hmac.compare_digest(expected, tag):
        raise TokenError("bad_signature")
    try:
        expires = int(parts[7])
    except ValueError:
        raise TokenError("malformed") from None
    if (time.time() if now is None else now) >= expires:
        raise TokenError("expired")
    return Claims(parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], expires, parts[8])


def rating_url(template: str, token: str) -> str:
    return template.replace("{token}", token)


def matrix(data: str) -> list[list[bool]]:
    """The QR modules (no quiet zone), error correction M.

    Faster than `qrcode.make()`: no image is drawn and the mask is fixed instead of trying all eight
    (any mask is valid; scanners handle all of them). The caller scales it to pixels.
    """
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, mask_pattern=0, border=0)
    code.add_data(data)
    code.make(fit=True)
    return code.get_matrix()


@dataclass(frozen=True)
class DynamicQr:
    url: str
    modules: tuple[tuple[bool, ...], ...]
    expires: int  # 0 when the platform issued the URL (its own expiry rules apply)
