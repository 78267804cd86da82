"""Signed tokens of the static codes printed on cards: one per staff member (人员评价), one per center
(大厅评价). They never expire (a card stays on the counter for years); a card is revoked by bumping the
generation in the store (`staff.code_gen`, `centers.code_gen`) or marking the person `revoked`, which the
caller checks against the verified claims.

    staff: s1~<key id>~<center>~<staff id>~<gen>~<tag>
    hall:  h1~<key id>~<center>~<gen>~<tag>

`tag` is the first 16 bytes of HMAC-SHA256(center key, b"static:" + everything before "~<tag>"),
base64url without padding. The "static:" prefix separates these tags from the dynamic QR token's
(protocol/qrtoken.py) so that one can never stand in for the other, even under the same key. The exact
grammar is `STAFF`/`HALL`: `sign_*` make nothing else and `verify` accepts nothing else. Errors are
`protocol.qrtoken.TokenError` (malformed | unknown_key | bad_signature), as for the dynamic token.

(The SMS follow-up link is not signed: it is a random token whose hash alone is stored, center/sms/jobs.py.)
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Mapping

from protocol.qrtoken import TokenError, signed_fields

SEP = "~"
TAG_BYTES = 16
DOMAIN = b"static:"
_KEY = r"[A-Za-z0-9_-]{1,16}"
_ID = r"[A-Za-z0-9_-]{1,32}"
_GEN = r"(?:0|[1-9][0-9]{0,5})"   # canonical decimal: one generation has exactly one spelling
_TAG = r"[A-Za-z0-9_-]{22}"
STAFF = re.compile(rf"s1~{_KEY}~{_ID}~{_ID}~{_GEN}~{_TAG}")
HALL = re.compile(rf"h1~{_KEY}~{_ID}~{_GEN}~{_TAG}")


@dataclass(frozen=True)
class StaticClaims:
    kind: str        # staff | hall
    key_id: str
    center: str
    target: str      # the staff id; "" for the hall
    gen: int


def _tag(key: bytes, body: str) -> str:
    digest = hmac.new(key, DOMAIN + body.encode("ascii"), hashlib.sha256).digest()[:TAG_BYTES]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _sign(grammar: re.Pattern[str], key: bytes, fields: list[str]) -> str:
    body = SEP.join(fields)
    if not body.isascii():
        raise ValueError("token fields must be ASCII")
    token = f"{body}{SEP}{_tag(key, body)}"
    if not grammar.fullmatch(token):
        raise ValueError("a field is empty, too long or outside [A-Za-z0-9_-], or gen is not 0..999999")
    return token


def sign_staff(key_id: str, key: bytes, center: str, staff: str, gen: int) -> str:
    """The token of one staff member's printed code (generation `gen`)."""
    return _sign(STAFF, key, ["s1", key_id, center, staff, str(gen)])


def sign_hall(key_id: str, key: bytes, center: str, gen: int) -> str:
    """The token of a center's hall code (generation `gen`)."""
    return _sign(HALL, key, ["h1", key_id, center, str(gen)])


def verify(token: str, keys: Mapping[str, bytes]) -> StaticClaims:
    """Check a static code token; raise TokenError(malformed | unknown_key | bad_signature).
    Revocation (generation, `revoked`) is the caller's check against the store."""
    if STAFF.fullmatch(token):
        kind = "staff"
    elif HALL.fullmatch(token):
        kind = "hall"
    else:
        raise TokenError("malformed")
    parts = signed_fields(token, keys, _tag)
    if kind == "staff":
        return StaticClaims("staff", parts[1], parts[2], parts[3], int(parts[4]))
    return StaticClaims("hall", parts[1], parts[2], "", int(parts[3]))


def staff_url(base: str, token: str) -> str:
    """The printed URL of a staff code: `<public base>/p/s/<token>`."""
    return f"{base.rstrip('/')}/p/s/{token}"


def hall_url(base: str, token: str) -> str:
    """The printed URL of a hall code: `<public base>/p/h/<token>`."""
    return f"{base.rstrip('/')}/p/h/{token}"

