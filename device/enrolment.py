"""Enrolment: how a terminal with only the center's enrolment file becomes a paired terminal.

1. The terminal keeps an X25519 key pair on its data partition (`enrolment.key`, mode 0600).
2. With the center-wide enrolment account it announces itself (`hello`: device id, model, firmware,
   public key) on `hcp/v1/{center}/enrol/{device}/hello`.
3. The center answers on `hcp/v1/{center}/enrol/{device}/{key id}/answer` with a `sealed` box only the
   holder of that key can open: first a pairing code to show, later (after staff entered the code in
   the console) the terminal's own MQTT account. Any enrolment account may read every answer topic
   (Mosquitto 2.0 ACLs have no %c); without the private key the boxes are noise.
4. The terminal stores the account (`credentials.json`, 0600), reconnects with it, and receives its
   retained `binding` (window, roster, hall QR, QR signing key sealed to it).

Nothing here logs a password or key. See docs/protocol.md §11 and provisioning/README.md (threat model).
"""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from device import messages

log = logging.getLogger(__name__)

KEY_FILE = "enrolment.key"
CREDENTIALS_FILE = "credentials.json"
BINDING_FILE = "binding.json"
_B64 = re.compile(r"[A-Za-z0-9_-]*")
_BOX = re.compile(r"1\.([A-Za-z0-9_-]{43})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,8000})")
_INFO = b"hcp/v1 sealed box"


class SealError(ValueError):
    """A sealed box could not be opened: malformed, for another key or context, or tampered with."""


# ---- sealed boxes (X25519 + HKDF-SHA256 + ChaCha20-Poly1305) -----------------------------------

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


# ---- files on the data partition, readable only by the terminal's user --------------------------

def write_private(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data`, mode 0600 from the first byte, fsynced."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load_or_create_key(data_dir: Path) -> X25519PrivateKey:
    path = data_dir / KEY_FILE
    try:
        raw = path.read_bytes()
        if len(raw) == 32:
            return X25519PrivateKey.from_private_bytes(raw)
        log.warning("%s is damaged; making a new enrolment key (the terminal pairs again)", path)
    except FileNotFoundError:
        pass
    key = X25519PrivateKey.generate()
    write_private(path, key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                          serialization.NoEncryption()))
    return key


@dataclass(frozen=True)
class Credentials:
    """The terminal's own MQTT account. `next_password` is a rotated one not yet in force at the broker."""

    center: str
    device: str
    window: str
    username: str
    password: str
    client_id: str
    cred: int
    next_password: str = ""
    next_cred: int = 0

    def __repr__(self) -> str:  # never print a password, not even by accident in a traceback
        return f"Credentials(device={self.device!r}, username={self.username!r}, cred={self.cred})"

    @property
    def newest(self) -> int:
        return max(self.cred, self.next_cred)

    def swapped(self) -> "Credentials":
        """Try the other password: the broker refused this one (rotation took effect while away)."""
        if not self.next_password:
            return self
        return replace(self, password=self.next_password, cred=self.next_cred, next_password=self.password,
                       next_cred=self.cred)

    def settled(self) -> "Credentials":
        """The broker accepted `password`: forget the other one if it is older."""
        if self.next_password and self.next_cred < self.cred:
            return replace(self, next_password="", next_cred=0)
        return self


def save_credentials(data_dir: Path, c: Credentials) -> None:
    body = {k: getattr(c, k) for k in Credentials.__dataclass_fields__}
    write_private(data_dir / CREDENTIALS_FILE, json.dumps(body).encode("utf-8"))


def load_credentials(data_dir: Path) -> Credentials | None:
    path = data_dir / CREDENTIALS_FILE
    try:
        body = json.loads(path.read_text("utf-8"))
        return Credentials(**{k: body[k] for k in Credentials.__dataclass_fields__ if k in body})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError, OSError) as e:
        log.error("%s is unreadable (%s); the terminal enrols again", path, type(e).__name__)
        return None


def forget(data_dir: Path, *names: str) -> None:
    for name in names:
        try:
            (data_dir / name).unlink()
        except FileNotFoundError:
            pass


def credentials_from_grant(grant: dict) -> Credentials:
    return Credentials(center=grant["center"], device=grant["device"], window=grant.get("window", ""),
                       username=grant["username"], password=grant["password"], client_id=grant["client_id"],
                       cred=grant["cred"])


# ---- what the Unpaired screen shows ------------------------------------------------------------

@dataclass(frozen=True)
class Pairing:
    """The terminal is not (or no longer) rating at a window; the UI shows this instead of the idle screen.

    state:
      - `connecting`: no pairing code yet (no network, or waiting for the center's answer)
      - `code`: show `code` (and `qr_url` as a QR code) until `expires_at` (time.time())
      - `refused`: the broker refuses this terminal's account (revoked, or deleted at the center)
      - `retired`: replaced by another terminal; it still delivers what it holds, takes no cases
      - `unpaired`: unpaired at the center; delivers what it holds, then shows a new code
      - `revoked`: disabled by the center
    """

    state: str
    device: str
    code: str = ""
    qr_url: str = ""
    expires_at: float = 0.0
    detail: str = ""


def pairing_qr_url(console_url: str, device: str, code: str) -> str:
    """The QR shown next to the code: opens the console's pairing form with both filled in."""
    if not console_url:
        return ""
    sep = "&" if "?" in console_url else "?"
    return f"{console_url}{sep}code={code}&device={device}"


def hello(center: str, device: str, key: X25519PrivateKey, model: str, fw: str) -> bytes:
    msg: dict[str, Any] = {"v": 1, "type": "hello", "center": center, "device": device, "key": b64(public_bytes(key))}
    if model:
        msg["model"] = model[:64]
    if fw:
        msg["fw"] = fw[:32]
    return messages.encode(messages.validate(msg))


def open_grant(key: X25519PrivateKey, topic: str, payload: bytes, center: str, device: str,
               max_bytes: int = messages.MAX_INBOUND_BYTES) -> dict:
    """sealed message → validated grant for this terminal; MessageError with a reason otherwise."""
    env = messages.decode("sealed", payload, max_bytes)
    if env["device"] != device:
        raise messages.MessageError("wrong_device", env["device"])
    try:
        inner = unseal(key, env["box"], topic)
    except SealError as e:
        raise messages.MessageError("unsealable", str(e)) from None
    grant = messages.decode("grant", inner, max_bytes)
    if grant["device"] != device:
        raise messages.MessageError("wrong_device", grant["device"])
    if grant["center"] != center:
        raise messages.MessageError("wrong_center", grant["center"])
    return grant
