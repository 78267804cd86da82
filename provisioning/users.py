"""Staff accounts of the pairing console: scrypt password hashes, sessions, CSRF tokens.

Session tokens and CSRF tokens are 256-bit random; the registry keeps only the SHA-256 of a session
token, so a copy of the database does not let anyone in.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

N, R, P = 2 ** 14, 8, 1
NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
MIN_PASSWORD = 10


def hash_password(password: str, *, n: int = N) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=R, p=P, dklen=32)
    return f"scrypt${n}${R}${P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_password(password: str, stored: str | None) -> bool:
    """Constant-time check; a missing user costs the same work as a wrong password."""
    if not stored:
        hashlib.scrypt(password.encode("utf-8", "replace"), salt=b"0" * 16, n=N, r=R, p=P, dklen=32)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode("utf-8", "replace"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=32)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


# C0 and C1 controls, DEL, and the Unicode line/paragraph separators and bidi overrides that can make one
# audit line look like two, or reorder what a reader sees.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """`text` with every control character shown as an escape (`\\x1b`, `\\n`, `\\u202e`): whatever a
    sign-in form was sent, an audit line stays one line and cannot recolour or rewrite a terminal."""
    def esc(m: re.Match) -> str:
        c = ord(m.group())
        return {10: "\\n", 13: "\\r", 9: "\\t"}.get(c) or (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}")
    # A backslash is doubled first, so a typed "\\x1b" cannot pass for an escaped control character.
    return _CONTROLS.sub(esc, ("" if text is None else str(text)).replace("\\", "\\\\"))
