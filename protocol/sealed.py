"""Sealed boxes: X25519 + HKDF-SHA256 + ChaCha20-Poly1305, how the center answers one terminal's key.

A box is sealed to the public key a terminal announced in its `hello` and bound to the topic it travels on;
`open_grant` is the terminal's side of an enrolment answer (docs/protocol.md §11). Nothing here logs a key.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from protocol import codec
from protocol.codec import MessageError

_B64 = re.compile(r"[A-Za-z0-9_-]*")
_BOX = re.compile(r"1\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,8000})")
_INFO = b"hcp/v1 sealed box"


class SealError(ValueError):
    """A sealed box could not be opened: malformed, for another key or context, or tampered with."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """Strict base64url without padding; SealError on anything else."""
    if not isinstance(text, str) or not _B64.fullmatch(text) or len(text) % 4 == 1:
        raise SealError("not base64url")
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64(raw) != text:  # non-canonical trailing bits: one value, one spelling
        raise SealError("non-canonical base64url")
    return raw


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def usable_public_key(text: str) -> bytes:
    """An announced public key (base64url) → its 32 raw bytes, only if a box can be sealed to it.

    SealError for anything else: not canonical base64url, not 32 bytes, or a low-order point (all-zero,
    1, the points of order 8 …) whose shared secret would be all zeros (X25519 refuses those)."""
    raw = unb64(text)
    if len(raw) != 32:
        raise SealError(f"not an X25519 public key: {len(raw)} bytes, not 32")
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        raise SealError("not an X25519 public key: low-order point") from None
    return raw


def key_id(public_key: bytes) -> str:
    """A topic-safe name for a public key: 16 characters of base64url(SHA-256(key))."""
    return b64(hashlib.sha256(public_key).digest())[:16]


def _aead_key(shared: bytes, epk: bytes, recipient: bytes, context: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=epk + recipient, info=_INFO + b"|" + context.encode("utf-8")).derive(shared)


def seal(recipient: bytes, plaintext: bytes, context: str, *, _ephemeral: X25519PrivateKey | None = None) -> str:
    """Encrypt to the holder of `recipient` (raw X25519 public key). `context` (the topic) is bound in:
    a box made for one topic does not open on another."""
    eph = _ephemeral or X25519PrivateKey.generate()
    epk = public_bytes(eph)
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient))
    except ValueError as e:
        raise SealError(f"unusable recipient key: {e}") from None
    nonce = secrets.token_bytes(12) if _ephemeral is None else hashlib.sha256(epk + plaintext).digest()[:12]
    box = ChaCha20Poly1305(_aead_key(shared, epk, recipient, context)).encrypt(nonce, plaintext,
                                                                               context.encode("utf-8"))
    return f"1.{b64(epk)}.{b64(nonce)}.{b64(box)}"


def unseal(private: X25519PrivateKey, box: str, context: str) -> bytes:
    """Open a box made by `seal` for this key and context; SealError otherwise (never anything else)."""
    m = _BOX.fullmatch(box) if isinstance(box, str) else None
    if m is None:
        raise SealError("malformed box")
    epk, nonce, body = (unb64(g) for g in m.groups())
    if len(epk) != 32 or len(nonce) != 12:
        raise SealError("malformed box")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
        return ChaCha20Poly1305(_aead_key(shared, epk, public_bytes(private), context)).decrypt(
            nonce, body, context.encode("utf-8"))
    except (InvalidTag, ValueError):
        raise SealError("box does not open with this key and context") from None


def open_grant(key: X25519PrivateKey, topic: str, payload: bytes, center: str, device: str,
               max_bytes: int = codec.MAX_INBOUND_BYTES) -> dict:
    """sealed message → validated grant for this terminal; MessageError with a reason otherwise."""
    env = codec.decode("sealed", payload, max_bytes)
    if env["device"] != device:
        raise MessageError("wrong_device", env["device"])
    try:
        inner = unseal(key, env["box"], topic)
    except SealError as e:
        raise MessageError("unsealable", str(e)) from None
    grant = codec.decode("grant", inner, max_bytes)
    if grant["device"] != device:
        raise MessageError("wrong_device", grant["device"])
    if grant["center"] != center:
        raise MessageError("wrong_center", grant["center"])
    return grant
