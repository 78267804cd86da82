"""What the phone pages need to know besides the Desk: which centers they answer for and the keys."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from center.web.photos import PhotoLimits

MAX_BODY = 35 * 2**20   # three photos of 10 MiB and the form; bigger requests are refused unread (413)


@dataclass(frozen=True)
class WebSettings:
    centers: frozenset[str]          # the centers this service answers for: another center's token is invalid
    qr_keys: Mapping[str, bytes]     # key id → key, for protocol.qrtoken.verify (dynamic QR)
    static_keys: Mapping[str, bytes]  # key id → key, for center.web.links.verify (staff and hall codes)
    photo_dir: Path                  # where re-encoded photos are written: outside any served path
    cookie_secret: bytes             # signs the phone cookie and hashes cookie ids and addresses
    public_base: str = ""            # e.g. https://hcp.example.gov.cn (links on cards; a trusted Origin)
    https: bool = False              # served over TLS (directly or behind a proxy): Secure cookies, HSTS
    photo_limits: PhotoLimits = field(default_factory=PhotoLimits)
    max_body: int = MAX_BODY
