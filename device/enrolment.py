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

This module keeps the terminal's files (key, credentials, binding) and what the Unpaired screen shows; the
messages and the sealed boxes are `protocol.builders.hello` and `protocol.sealed`. Nothing here logs a password
or key. See docs/protocol.md §11 and provisioning/README.md (threat model).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # loaded by load_or_create_key only: a terminal configured by hand never needs it
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

log = logging.getLogger(__name__)

KEY_FILE = "enrolment.key"
CREDENTIALS_FILE = "credentials.json"
BINDING_FILE = "binding.json"


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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
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
    """The QR shown next to the code: opens the console's pairing form for this terminal. The code itself is
    never in a URL (it would sit in histories and access logs): staff type it from the screen."""
    if not console_url:
        return ""
    sep = "&" if "?" in console_url else "?"
    return f"{console_url}{sep}device={device}"
